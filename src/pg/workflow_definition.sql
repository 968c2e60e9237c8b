-- One workflow's definition as the listener and executors need it, as one
-- jsonb object whose keys are the fields of `WorkflowDefinition` in
-- src/pg/catalog.rs (read by name: a key added here or a column added to a
-- table can never shift another).
--
-- It runs as a superuser (a listener) or as an executor's privileged role:
-- every name is schema-qualified, every operator is OPERATOR(pg_catalog.…),
-- and the session pins search_path = pg_catalog, pg_temp, so nothing here
-- can resolve to an object a tenant created.
--
-- owner_search_path is the owner's own `ALTER ROLE … SET search_path`, if
-- any (its handler runs with it); handler_callable says whether the owner
-- may still call the handler.
SELECT pg_catalog.jsonb_build_object(
       'enabled', w.enabled,
       'allowed_methods', w.allowed_methods,
       'full_body', w.full_body,
       'full_body_param', w.full_body_param,
       'response_method', w.response_method,
       'response_status', w.response_status,
       'response_content_type', w.response_content_type,
       'response_body', w.response_body,
       'response_headers', w.response_headers,
       'response_timeout_ms',
           (extract(epoch FROM w.response_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,
       'failure_status', w.failure_status,
       'failure_content_type', w.failure_content_type,
       'failure_body', w.failure_body,
       'capture_until',
           CASE WHEN w.captured_at IS NULL
                THEN extract(epoch FROM w.capture_until)::pg_catalog.float8 END,
       'owner', r.oid::pg_catalog.int8,
       'handler_name',
           pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
               OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p.proname::pg_catalog.text),
       'handler_kind', p.prokind::pg_catalog.text,
       'handler_returns', t.typname::pg_catalog.text,
       -- What the handler takes: the event (webhook.events), its jsonb, the
       -- workflow's record type, or the event and the record.
       'handler_takes',
           CASE WHEN p.pronargs OPERATOR(pg_catalog.=) 2 THEN 'event_record'
                WHEN p.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.jsonb'::pg_catalog.regtype::pg_catalog.oid
                    THEN 'jsonb'
                WHEN p.proargtypes[0] OPERATOR(pg_catalog.=) w.record_type::pg_catalog.oid THEN 'record'
                ELSE 'event' END,
       'record_type', pg_catalog.format_type(rt.oid, NULL),
       'parameters',
           (SELECT COALESCE(
                       pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                           'name', q.name, 'source', q.source, 'type', q.type, 'required', q.required,
                           'strict', COALESCE(q.strict, w.strict_types), 'nullable', q.nullable,
                           'required_for', q.required_for, 'depth', q.depth)
                         ORDER BY q.source, q.position, q.name),
                       '[]')
              FROM webhook.parameters q WHERE q.workflow_id OPERATOR(pg_catalog.=) w.id),
       'owner_search_path',
           (SELECT pg_catalog.substr(c.setting, 13)
              FROM pg_catalog.pg_db_role_setting s,
                   pg_catalog.unnest(s.setconfig) AS c (setting)
             WHERE s.setrole OPERATOR(pg_catalog.=) r.oid
               AND s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[d.oid, 0::pg_catalog.oid])
               AND c.setting OPERATOR(pg_catalog.~~) 'search\_path=%'
             ORDER BY s.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid
             LIMIT 1),
       'handler_callable',
           pg_catalog.has_schema_privilege(r.oid, p.pronamespace, 'USAGE')
               AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE'),
       'discriminator_source', w.discriminator_source,
       'discriminator_name', w.discriminator_name,
       'delivery_key_source', w.delivery_key_source,
       'delivery_key_name', w.delivery_key_name,
       'delivery_key_window_secs', extract(epoch FROM w.delivery_key_window)::pg_catalog.float8,
       'max_attempts', w.max_attempts,
       'retry_delay_secs', extract(epoch FROM w.retry_delay)::pg_catalog.float8,
       'retry_max_delay_secs', extract(epoch FROM w.retry_max_delay)::pg_catalog.float8,
       'redact_headers', w.redact_headers,
       'allowed_networks', w.allowed_networks::pg_catalog.text[],
       'rate_limit', w.rate_limit,
       'rate_burst', w.rate_burst,
       'client_rate_limit', w.client_rate_limit,
       'client_rate_burst', w.client_rate_burst,
       'verifications',
           (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'method', v.method, 'scheme', v.scheme, 'secrets', v.secrets, 'options', v.options))
              FROM webhook.verifications v
             WHERE v.workflow_id OPERATOR(pg_catalog.=) w.id),
       'handshake', w.handshake,
       'storage_quota', w.storage_quota,
       'keep_body', w.keep_body,
       'queued', w.queued)
  FROM webhook.workflows w
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) w.owner::pg_catalog.oid
  LEFT JOIN pg_catalog.pg_database d ON d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
  LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) w.handler
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
  LEFT JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) p.prorettype
  LEFT JOIN pg_catalog.pg_type rt ON rt.oid OPERATOR(pg_catalog.=) w.record_type::pg_catalog.oid
 WHERE w.id OPERATOR(pg_catalog.=) $1
