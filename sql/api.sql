-- webhook_ext: the SQL API (docs/sql-api.md).
--
-- Runs last in the extension script (pgrx "finalize"), after the Rust helper
-- functions in schema webhook exist. Every function here is SECURITY INVOKER:
-- row-level security on the tables decides what a role can see and change, so
-- "workflow does not exist" is also what another role's workflow looks like.

-- ---------------------------------------------------------------------------
-- Workflows as users see them: the row plus its URL.
-- ---------------------------------------------------------------------------
CREATE VIEW webhook.workflow_overview WITH (security_invoker = true) AS
SELECT w.id,
       w.name,
       webhook._workflow_url(w.id) AS url,
       w.handler,
       w.owner,
       w.enabled,
       w.response_method,
       w.full_body,
       w.allowed_methods,
       w.created_at,
       w.updated_at,
       w.record_type
FROM webhook.workflows w;
COMMENT ON VIEW webhook.workflow_overview IS 'Workflows visible to the current role, with their URLs';
GRANT SELECT ON webhook.workflow_overview TO webhook_admin;

-- ---------------------------------------------------------------------------
-- Internal helpers
-- ---------------------------------------------------------------------------

-- The workflow row, or a clear error. Locks it when the caller will change it,
-- FOR NO KEY UPDATE: the listener's event inserts (FOR KEY SHARE through the
-- foreign key) go on while an owner edits its workflow.
CREATE FUNCTION webhook._workflow(workflow uuid, for_update boolean DEFAULT false)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    found_row webhook.workflows;
BEGIN
    IF workflow IS NULL THEN
        RAISE EXCEPTION 'workflow id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF for_update THEN
        SELECT * INTO found_row FROM webhook.workflows w WHERE w.id = workflow FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO found_row FROM webhook.workflows w WHERE w.id = workflow;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % does not exist', workflow
            USING ERRCODE = 'undefined_object',
                  HINT = 'Find workflows with webhook_find_workflow(''<id, URL or part of the id>''); '
                      || 'a role sees only the workflows it owns.';
    END IF;
    RETURN found_row;
END
$$;

-- Checks that a handler can be called with one event: a function or procedure
-- taking webhook.events or jsonb, or the workflow's record type alone or after
-- webhook.events (webhook_set_record_type), not returning a set, that the
-- workflow's owner may call: USAGE on its schema and EXECUTE on it (a handler
-- given by OID would otherwise let a role run another's SECURITY DEFINER
-- function).
CREATE FUNCTION webhook._check_handler(handler regproc, owner regrole, record_type regtype DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    proc record;
    example constant text :=
        'For example: CREATE FUNCTION my_handler(event webhook.events) RETURNS jsonb '
        'LANGUAGE sql AS $h$ SELECT event.params $h$; then pass ''my_handler''::regproc.';
    takes_one boolean;
    takes_two boolean;
BEGIN
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = example;
    END IF;
    SELECT p.prokind, p.pronargs, p.proargtypes, p.proretset, p.pronamespace
      INTO proc
      FROM pg_catalog.pg_proc p
     WHERE p.oid = handler;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'handler function with OID % does not exist', handler::oid
            USING ERRCODE = 'undefined_function', HINT = example;
    END IF;
    IF proc.prokind NOT IN ('f', 'p') THEN
        RAISE EXCEPTION 'handler % is an aggregate or window function', handler::regprocedure
            USING ERRCODE = 'wrong_object_type', HINT = example;
    END IF;
    takes_one := proc.pronargs = 1
                 AND (proc.proargtypes[0] IN ('webhook.events'::regtype, 'jsonb'::regtype)
                      OR proc.proargtypes[0] = coalesce(record_type, 0));
    takes_two := proc.pronargs = 2
                 AND proc.proargtypes[0] = 'webhook.events'::regtype
                 AND proc.proargtypes[1] = coalesce(record_type, 0);
    IF NOT (takes_one OR takes_two) AND record_type IS NULL THEN
        RAISE EXCEPTION 'handler % must take exactly one argument of type webhook.events or jsonb',
                        handler::regprocedure
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = format('It takes (%s).', pg_catalog.pg_get_function_arguments(handler)),
                  HINT = example;
    ELSIF NOT (takes_one OR takes_two) THEN
        RAISE EXCEPTION 'handler % must take webhook.events, jsonb, the workflow''s record type %, '
                        'or webhook.events and %', handler::regprocedure, record_type, record_type
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = format('It takes (%s).', pg_catalog.pg_get_function_arguments(handler)),
                  HINT = format('For example: CREATE FUNCTION my_handler(p %s) ...', record_type);
    END IF;
    IF proc.proretset THEN
        RAISE EXCEPTION 'handler % must not return a set', handler::regprocedure
            USING ERRCODE = 'invalid_function_definition', HINT = example;
    END IF;
    IF NOT pg_catalog.has_schema_privilege(owner::oid, proc.pronamespace, 'USAGE')
       OR NOT pg_catalog.has_function_privilege(owner::oid, handler::oid, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied to use % as a handler', handler::regprocedure
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s cannot execute it (it needs USAGE on schema %I and EXECUTE on the function), '
                                  'and handlers run as the workflow owner.',
                                  owner, proc.pronamespace::regnamespace),
                  HINT = 'Use a function in a schema the owner can use.';
    END IF;
END
$$;

-- A workflow's record type is a composite type of its own (CREATE TYPE … AS,
-- not a table's row type) that belongs to the workflow's owner: the extension
-- alters it as the owner whenever the parameter list changes.
CREATE FUNCTION webhook._check_record_type(record_type regtype, owner regrole)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found_type record;
BEGIN
    SELECT t.typtype, t.typowner, c.relkind INTO found_type
      FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
     WHERE t.oid = record_type;
    IF NOT FOUND OR found_type.typtype <> 'c' OR found_type.relkind <> 'c' THEN
        RAISE EXCEPTION 'type % is not a composite type of its own', record_type
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'webhook_set_record_type(workflow, ''schema.name'') creates one.';
    END IF;
    IF found_type.typowner <> owner::oid THEN
        RAISE EXCEPTION 'type % does not belong to the workflow''s owner %', record_type, owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'webhook_set_record_type(workflow, ''schema.name'') creates one that does.';
    END IF;
END
$$;

-- Every rule the API checks holds however workflows are written (API or plain
-- DML): ids, handlers, response settings, capture windows; and updated_at.
CREATE FUNCTION webhook._workflows_before_write()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    may_choose_id boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- Only the tables' owner (and superusers), e.g. restoring a dump, may
        -- choose an id; anyone else would learn from a duplicate-key error
        -- that another owner's workflow exists.
        IF NEW.id IS NOT NULL THEN
            SELECT pg_has_role(current_user, c.relowner, 'USAGE') INTO may_choose_id
              FROM pg_class c WHERE c.oid = TG_RELID;
            IF NOT may_choose_id THEN
                RAISE EXCEPTION 'workflow ids are assigned by webhook_ext'
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Leave the id out; webhook_create_workflow() returns the new one.';
            END IF;
        END IF;
        NEW.id := coalesce(NEW.id, gen_random_uuid());
    ELSE
        IF NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'the id of a workflow cannot change'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        NEW.updated_at := now();
    END IF;
    IF NEW.record_type IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.record_type IS DISTINCT FROM OLD.record_type
            OR NEW.owner IS DISTINCT FROM OLD.owner) THEN
        PERFORM webhook._check_record_type(NEW.record_type, NEW.owner);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.handler IS DISTINCT FROM OLD.handler OR NEW.owner IS DISTINCT FROM OLD.owner
       OR NEW.record_type IS DISTINCT FROM OLD.record_type THEN
        PERFORM webhook._check_handler(NEW.handler, NEW.owner, NEW.record_type);
    END IF;
    PERFORM webhook._check_response_headers(NEW.response_headers);
    IF NEW.response_method = 'custom' THEN
        PERFORM webhook._check_response_template(coalesce(NEW.response_content_type, 'application/json'),
                                                 coalesce(NEW.response_body, ''));
    END IF;
    IF NEW.failure_content_type IS NOT NULL OR NEW.failure_body IS NOT NULL THEN
        PERFORM webhook._check_response_template(coalesce(NEW.failure_content_type, 'application/json'),
                                                 coalesce(NEW.failure_body, ''));
    END IF;
    IF NEW.capture_until IS DISTINCT FROM (CASE WHEN TG_OP = 'UPDATE' THEN OLD.capture_until END)
       AND NEW.capture_until > now() + interval '1 day' THEN
        RAISE EXCEPTION 'capture window must be positive and at most 1 day'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER workflows_before_write
    BEFORE INSERT OR UPDATE ON webhook.workflows
    FOR EACH ROW EXECUTE FUNCTION webhook._workflows_before_write();

-- Tells the listeners and executors which cached workflows to reload once
-- the change commits: the workflows the statement wrote (their rows, their
-- parameters or their verification) are noted in webhook.workflow_changes,
-- and an invalidation message for that table (it locks nothing, so an open
-- tenant transaction cannot hold anyone up) makes every process look there.
-- TRUNCATE names no rows: every cached workflow goes (an invalidation of
-- webhook.config_version). SECURITY DEFINER so that tenants need no EXECUTE on
-- webhook._signal_config_change, which would let them make every listener
-- look at will, nor any privilege on webhook.workflow_changes; a trigger
-- function cannot be called directly.
CREATE FUNCTION webhook._config_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    changed uuid[] := '{}';
    -- The workflow's id: webhook.workflows.id, else the workflow_id column.
    id_column text := CASE WHEN TG_TABLE_NAME OPERATOR(pg_catalog.=) 'workflows' THEN 'id' ELSE 'workflow_id' END;
BEGIN
    -- Only as the triggers below: attached to any other table, it would let
    -- its owner note changes, or empty every cache, at will.
    IF TG_RELID OPERATOR(pg_catalog.<>) ALL (ARRAY['webhook.workflows'::pg_catalog.regclass,
                                                   'webhook.parameters'::pg_catalog.regclass,
                                                   'webhook.verifications'::pg_catalog.regclass]::pg_catalog.oid[]) THEN
        RAISE EXCEPTION 'webhook._config_changed() is a trigger of webhook.workflows, webhook.parameters and webhook.verifications only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM webhook._signal_config_change('webhook.config_version'::pg_catalog.regclass);
        RETURN NULL;
    END IF;
    -- Each query is planned only when it runs: the transition tables it
    -- names exist for that event's trigger.
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        changed := ARRAY(SELECT (pg_catalog.to_jsonb(n) OPERATOR(pg_catalog.->>) id_column)::uuid
                           FROM new_rows n);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        changed := changed OPERATOR(pg_catalog.||)
                   ARRAY(SELECT (pg_catalog.to_jsonb(o) OPERATOR(pg_catalog.->>) id_column)::uuid
                           FROM old_rows o);
    END IF;
    IF pg_catalog.cardinality(changed) OPERATOR(pg_catalog.=) 0 THEN
        RETURN NULL;
    END IF;
    -- A role changing definitions faster than
    -- webhook.max_config_changes_per_second waits its turn here.
    PERFORM webhook._pace_config_change();
    -- In id order, so two statements never wait on each other in a cycle.
    INSERT INTO webhook.workflow_changes AS c (workflow_id, changed_xid, changed_at)
    SELECT DISTINCT u.id, pg_catalog.pg_current_xact_id(), pg_catalog.now()
      FROM pg_catalog.unnest(changed) AS u(id)
     ORDER BY u.id
    ON CONFLICT (workflow_id) DO UPDATE
       SET changed_xid = EXCLUDED.changed_xid, changed_at = EXCLUDED.changed_at, gone_at = NULL;
    -- Signalled on webhook.workflow_changes, which only the look for changes
    -- reads: an invalidation of webhook.workflows would also make every
    -- process plan again each statement that reads it (the event insert's
    -- foreign-key check, the executors' claim).
    PERFORM webhook._signal_config_change('webhook.workflow_changes'::pg_catalog.regclass);
    RETURN NULL;
END
$$;
-- One trigger per table and event: a trigger with transition tables fires
-- for one event only.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['workflows', 'parameters', 'verifications'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON webhook.%I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()', t || '_inserted', t);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON webhook.%I '
                       'REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()', t || '_updated', t);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON webhook.%I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()', t || '_deleted', t);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON webhook.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()', t || '_truncated', t);
    END LOOP;
END
$$;

-- Every row of webhook.verifications is checked here, not by constraints
-- (see sql/schema.sql): webhook._check_verification's errors name the
-- problem and never a secret.
CREATE FUNCTION webhook._verifications_check()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.method IS NULL OR NEW.method NOT IN ('*', 'GET', 'POST') THEN
        RAISE EXCEPTION 'invalid verification: the method is GET or POST (or * for every method)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM webhook._check_verification(NEW.scheme, NEW.secrets, NEW.options);
    -- A restored row keeps the time it was last changed; a new one gets now.
    IF TG_OP = 'INSERT' THEN
        NEW.updated_at := coalesce(NEW.updated_at, now());
    ELSE
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER verifications_check
    BEFORE INSERT OR UPDATE ON webhook.verifications
    FOR EACH ROW EXECUTE FUNCTION webhook._verifications_check();

-- ---------------------------------------------------------------------------
-- Limits of a parameter list
-- ---------------------------------------------------------------------------
-- The listener checks every request against its workflow's whole parameter
-- list on the one thread that stores every tenant's requests, so the list is
-- bounded: at most 1000 parameters per workflow (body, query and header
-- together), names of at most 256 bytes (a dotted name costs a lookup per
-- dot), and at most 100 event types of at most 256 bytes in a parameter's
-- required_for. The API functions check before they change anything, and the
-- triggers below hold direct writes to webhook.parameters to the same limits,
-- with the same errors (SQLSTATE 54000). webhook_core's MAX_PARAMETERS and
-- MAX_NAME_BYTES are the same numbers (a captured sample over them is refused
-- with 413).

CREATE FUNCTION webhook._check_parameter_count(workflow uuid, total bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF total > 1000 THEN
        RAISE EXCEPTION 'a workflow may have at most 1000 parameters'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('Workflow %s would have %s (body, query and header parameters together).',
                                  workflow, total),
                  HINT = 'Drop parameters it does not need with webhook_drop_parameter(), or derive the list '
                      || 'from a smaller sample: each top-level key and each nested leaf is a parameter.';
    END IF;
END
$$;

CREATE FUNCTION webhook._check_parameter_name(name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF octet_length(name) > 256 THEN
        RAISE EXCEPTION 'parameter names may be at most 256 bytes'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('The name beginning %L is %s bytes long.', left(name, 32), octet_length(name)),
                  HINT = 'A nested leaf is named by its whole dotted path, e.g. customer.address.zip.';
    END IF;
END
$$;

CREATE FUNCTION webhook._check_event_types(events text[])
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    too_long text;
    advice constant text := 'A pattern ending in * matches every event type that begins with it, '
                            'e.g. ''payment_intent.*''.';
BEGIN
    IF cardinality(events) > 100 THEN
        RAISE EXCEPTION 'a parameter may be required for at most 100 event types'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('%s were given.', cardinality(events)), HINT = advice;
    END IF;
    SELECT e INTO too_long FROM unnest(events) e WHERE octet_length(e) > 256 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event types may be at most 256 bytes'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('The one beginning %L is %s bytes long.', left(too_long, 32),
                                  octet_length(too_long)),
                  HINT = advice;
    END IF;
END
$$;

-- Per row, so cheap: the checks run only when a value is near a limit.
CREATE FUNCTION webhook._parameters_before_write()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(NEW.name) > 256 THEN
        PERFORM webhook._check_parameter_name(NEW.name);
    END IF;
    IF NEW.required_for IS NOT NULL THEN
        PERFORM webhook._check_event_types(NEW.required_for);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER parameters_before_write
    BEFORE INSERT OR UPDATE ON webhook.parameters
    FOR EACH ROW EXECUTE FUNCTION webhook._parameters_before_write();

-- Once per statement: one count per workflow that got rows, whatever their
-- number (a row-level count would make a 1000-row sample cost a million).
--
-- Two transactions adding parameters to one workflow at once would each count
-- without the other's rows, so the workflow row serializes them first. For
-- tenants that is a write of the row (updated_at, as the API functions do
-- anyway): a plain FOR NO KEY UPDATE lock only orders READ COMMITTED
-- transactions, whose count statement then sees what the other committed,
-- while a REPEATABLE READ one would still count from its older snapshot; a
-- write makes it fail with a serialization error instead (40001). The
-- extension's owner and superusers (the listener storing a capture, a
-- restore, which must keep updated_at as dumped) only take the lock. An
-- UPDATE can add rows to a workflow only by moving them (workflow_id, which
-- tenants cannot change).
CREATE FUNCTION webhook._parameters_count_check()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    grown uuid[];
    wf uuid;
    trusted boolean;
    total bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        grown := ARRAY(SELECT DISTINCT n.workflow_id FROM new_rows n ORDER BY 1);
    ELSE
        grown := ARRAY(SELECT n.workflow_id
                         FROM (SELECT workflow_id, count(*) AS c FROM new_rows GROUP BY 1) n
                         LEFT JOIN (SELECT workflow_id, count(*) AS c FROM old_rows GROUP BY 1) o
                                ON o.workflow_id = n.workflow_id
                        WHERE n.c > coalesce(o.c, 0)
                        ORDER BY 1);
    END IF;
    IF cardinality(grown) = 0 THEN
        RETURN NULL;
    END IF;
    SELECT pg_has_role(current_user, c.relowner, 'USAGE') INTO trusted
      FROM pg_class c WHERE c.oid = TG_RELID;
    FOREACH wf IN ARRAY grown LOOP
        IF trusted THEN
            PERFORM 1 FROM webhook.workflows w WHERE w.id = wf FOR NO KEY UPDATE;
        ELSE
            UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = wf;
        END IF;
        SELECT count(*) INTO total FROM webhook.parameters p WHERE p.workflow_id = wf;
        PERFORM webhook._check_parameter_count(wf, total);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER parameters_count_after_insert
    AFTER INSERT ON webhook.parameters
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._parameters_count_check();
CREATE TRIGGER parameters_count_after_update
    AFTER UPDATE ON webhook.parameters
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook._parameters_count_check();

-- A workflow's parameter list in list order: what the parameter functions return.
CREATE FUNCTION webhook._parameter_list(workflow uuid)
RETURNS SETOF webhook.parameters
LANGUAGE sql STABLE AS $$
    SELECT p.* FROM webhook.parameters p
     WHERE p.workflow_id = $1
     ORDER BY p.source, p.position
$$;

-- Replaces the parameters of one source with an inferred list
-- (webhook._infer_parameters format), keeping the required flags (and
-- strictness, nullability and event scopes) of the parameters that remain.
-- Only the parameters missing from the new list are deleted; the others are
-- updated in place. Then the workflow's record type (webhook_set_record_type)
-- is brought to the new list (unless sync_record is false: a captured sample
-- replaces several sources, then brings the type to the whole new list once),
-- so a sample with the same parameters changes no attribute, even while a
-- handler takes the type.
CREATE FUNCTION webhook._replace_parameters(workflow uuid, param_source text, inferred jsonb,
                                            sync_record boolean DEFAULT true)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    others bigint;
    gone text[];
BEGIN
    -- The limits first: nothing is deleted for a list that cannot be stored.
    SELECT count(*) INTO others
      FROM webhook.parameters p WHERE p.workflow_id = workflow AND p.source <> param_source;
    PERFORM webhook._check_parameter_count(workflow, others + jsonb_array_length(inferred));
    PERFORM webhook._check_parameter_name(i.name)
       FROM jsonb_to_recordset(inferred) AS i (name text)
      WHERE octet_length(i.name) > 256;
    gone := ARRAY(SELECT p.name FROM webhook.parameters p
                   WHERE p.workflow_id = workflow AND p.source = param_source
                     AND NOT EXISTS (SELECT FROM jsonb_to_recordset(inferred) AS i (name text)
                                      WHERE i.name = p.name));
    IF cardinality(gone) > 0 THEN
        PERFORM webhook._delete_parameters(workflow, param_source, gone);
    END IF;
    INSERT INTO webhook.parameters AS p (workflow_id, name, source, type, sample, position, depth)
    SELECT workflow, i.name, param_source, i.type, i.sample, i.ord, i.depth
      FROM ROWS FROM (jsonb_to_recordset(inferred) AS (name text, type text, sample jsonb, depth integer))
           WITH ORDINALITY AS i (name, type, sample, depth, ord)
    ON CONFLICT (workflow_id, source, name) DO UPDATE
       SET type = EXCLUDED.type, sample = EXCLUDED.sample, position = EXCLUDED.position,
           depth = EXCLUDED.depth
     WHERE (p.type, p.sample, p.position, p.depth)
           IS DISTINCT FROM (EXCLUDED.type, EXCLUDED.sample, EXCLUDED.position, EXCLUDED.depth);
    UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    IF sync_record THEN
        PERFORM webhook._sync_record_type(workflow);
    END IF;
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;

CREATE FUNCTION webhook._normalize_methods(methods text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    normalized text[];
    bad text[];
BEGIN
    IF methods IS NULL OR cardinality(methods) = 0 THEN
        RAISE EXCEPTION 'a workflow must allow at least one HTTP method'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: ''{GET,POST}''.';
    END IF;
    SELECT array_agg(DISTINCT upper(btrim(m))) INTO normalized FROM unnest(methods) m;
    bad := ARRAY(SELECT m FROM unnest(normalized) m
                 WHERE m IS NULL OR m NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'));
    IF cardinality(bad) > 0 THEN
        RAISE EXCEPTION 'unsupported HTTP method(s): %', array_to_string(bad, ', ', 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Allowed: GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS.';
    END IF;
    RETURN normalized;
END
$$;

-- ---------------------------------------------------------------------------
-- Creating, finding and managing workflows
-- ---------------------------------------------------------------------------

CREATE FUNCTION webhook_create_workflow(
    name text,
    handler regproc,
    enabled boolean DEFAULT true,
    methods text[] DEFAULT '{GET,POST}')
RETURNS webhook.workflow_overview
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
    result webhook.workflow_overview;
BEGIN
    IF webhook_create_workflow.name IS NULL OR btrim(webhook_create_workflow.name) = '' THEN
        RAISE EXCEPTION 'workflow name must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the workflow a descriptive name, e.g. ''orders''.';
    END IF;
    IF webhook_create_workflow.enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    BEGIN
        INSERT INTO webhook.workflows (name, handler, enabled, allowed_methods)
        VALUES (webhook_create_workflow.name, webhook_create_workflow.handler,
                webhook_create_workflow.enabled, webhook._normalize_methods(methods))
        RETURNING id INTO new_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'workflow "%" already exists', webhook_create_workflow.name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('Role %I already owns a workflow with this name.', current_user),
                  HINT = 'Choose another name, or rename the existing one with webhook_rename_workflow().';
    END;
    SELECT * INTO result FROM webhook.workflow_overview o WHERE o.id = new_id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION webhook_create_workflow(text, regproc, boolean, text[]) IS
    'Creates a workflow owned by the current role; its URL is {base}/hooks/{id}';

-- Full id (index lookup), any URL containing it, or a fragment of at least 4
-- hex digits (any case, hyphens optional). No match is zero rows. Written as a
-- single SQL query so the planner inlines it and a full id uses the primary key;
-- inlining rules out a SET search_path clause, so every name in it is qualified.
CREATE FUNCTION webhook_find_workflow(id text)
RETURNS SETOF webhook.workflow_overview
LANGUAGE sql STABLE AS $$
    SELECT o.* FROM webhook.workflow_overview o
     WHERE o.id OPERATOR(pg_catalog.=) webhook._full_id($1)
    UNION ALL
    SELECT o.* FROM webhook.workflow_overview o
     WHERE webhook._full_id($1) IS NULL
       AND pg_catalog.replace(o.id::pg_catalog.text, '-', '') OPERATOR(pg_catalog.~~)
           ('%' OPERATOR(pg_catalog.||) webhook._id_fragment($1) OPERATOR(pg_catalog.||) '%')
$$;
COMMENT ON FUNCTION webhook_find_workflow(text) IS
    'Workflows whose id matches a full id, a URL containing it, or a fragment of at least 4 hex digits';

CREATE FUNCTION webhook_url(workflow uuid)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM webhook._workflow(workflow);
    RETURN webhook._workflow_url(workflow);
END
$$;
COMMENT ON FUNCTION webhook_url(uuid) IS 'The URL external systems call: {webhook.public_base_url}/hooks/{id}';

CREATE FUNCTION webhook_rename_workflow(workflow uuid, new_name text)
RETURNS webhook.workflow_overview
LANGUAGE plpgsql AS $$
DECLARE
    result webhook.workflow_overview;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF new_name IS NULL OR btrim(new_name) = '' THEN
        RAISE EXCEPTION 'workflow name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        UPDATE webhook.workflows w SET name = new_name WHERE w.id = workflow;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'workflow "%" already exists', new_name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('Role %I already owns a workflow with this name.', current_user),
                  HINT = 'Choose another name.';
    END;
    SELECT * INTO result FROM webhook.workflow_overview o WHERE o.id = workflow;
    RETURN result;
END
$$;

CREATE FUNCTION webhook._set_enabled(workflow uuid, enabled boolean)
RETURNS webhook.workflow_overview
LANGUAGE plpgsql AS $$
DECLARE
    result webhook.workflow_overview;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    UPDATE webhook.workflows w SET enabled = _set_enabled.enabled WHERE w.id = workflow;
    SELECT * INTO result FROM webhook.workflow_overview o WHERE o.id = workflow;
    RETURN result;
END
$$;

CREATE FUNCTION webhook_enable_workflow(workflow uuid)
RETURNS webhook.workflow_overview
LANGUAGE sql AS $$ SELECT * FROM webhook._set_enabled($1, true) $$;
COMMENT ON FUNCTION webhook_enable_workflow(uuid) IS 'The URL accepts requests again';

CREATE FUNCTION webhook_disable_workflow(workflow uuid)
RETURNS webhook.workflow_overview
LANGUAGE sql AS $$ SELECT * FROM webhook._set_enabled($1, false) $$;
COMMENT ON FUNCTION webhook_disable_workflow(uuid) IS 'The URL answers 404 until the workflow is enabled again';

CREATE FUNCTION webhook_set_handler(workflow uuid, handler regproc)
RETURNS webhook.workflow_overview
LANGUAGE plpgsql AS $$
DECLARE
    result webhook.workflow_overview;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    UPDATE webhook.workflows w SET handler = webhook_set_handler.handler WHERE w.id = workflow;
    SELECT * INTO result FROM webhook.workflow_overview o WHERE o.id = workflow;
    RETURN result;
END
$$;

CREATE FUNCTION webhook_drop_workflow(workflow uuid, if_exists boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF if_exists AND workflow IS NOT NULL
       AND NOT EXISTS (SELECT FROM webhook.workflows w WHERE w.id = workflow) THEN
        RAISE NOTICE 'workflow % does not exist, skipping', workflow;
        RETURN false;
    END IF;
    PERFORM webhook._workflow(workflow, true);
    RETURN webhook._delete_workflow(workflow);
END
$$;
COMMENT ON FUNCTION webhook_drop_workflow(uuid, boolean) IS
    'Deletes a workflow with its parameters and events';

-- ---------------------------------------------------------------------------
-- Parameter lists
-- ---------------------------------------------------------------------------

-- Replaces the body parameters with an inferred list, unless the workflow
-- takes its whole body as one parameter.
CREATE FUNCTION webhook._sample_body(workflow uuid, inferred jsonb)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    w := webhook._workflow(workflow, true);
    IF w.full_body THEN
        RAISE EXCEPTION 'workflow % takes its whole body as parameter "%"', workflow, w.full_body_param
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Turn that off first with webhook_set_full_body(%L, false).', workflow);
    END IF;
    RETURN QUERY SELECT * FROM webhook._replace_parameters(workflow, 'body', inferred);
END
$$;

CREATE FUNCTION webhook_sample_from_json(workflow uuid, sample jsonb)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook._workflow(workflow);
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'sample must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass a JSON object such as ''{"order_id": 42}''.';
    END IF;
    RETURN QUERY SELECT * FROM webhook._sample_body(workflow, webhook._infer_parameters($2));
END
$$;
COMMENT ON FUNCTION webhook_sample_from_json(uuid, jsonb) IS
    'Derives the body parameters from a JSON object sample; keeps required flags of parameters that remain';

CREATE FUNCTION webhook_sample_from_kv(workflow uuid, pairs text)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook._workflow(workflow);
    IF pairs IS NULL THEN
        RAISE EXCEPTION 'pairs must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass text such as ''order_id=42''.';
    END IF;
    -- Straight from the text to the parameter list, so parameters keep the
    -- order of the lines (a jsonb object would sort its keys).
    RETURN QUERY SELECT * FROM webhook._sample_body(workflow, webhook._infer_kv(pairs));
END
$$;
COMMENT ON FUNCTION webhook_sample_from_kv(uuid, text) IS
    'Derives the body parameters from key=value / key: value lines or a query string a=1&b=2';

CREATE FUNCTION webhook_set_required(workflow uuid, params text[], required boolean DEFAULT true,
                                     for_events text[] DEFAULT NULL)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    unknown text[];
    known text;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF params IS NULL OR cardinality(params) = 0 THEN
        RAISE EXCEPTION 'no parameter names given'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: ARRAY[''order_id'', ''customer.email''].';
    END IF;
    IF $3 IS NULL THEN
        RAISE EXCEPTION 'required must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    unknown := ARRAY(
        SELECT DISTINCT u FROM unnest(params) u
         WHERE u IS NULL
            OR NOT EXISTS (SELECT FROM webhook.parameters p WHERE p.workflow_id = workflow AND p.name = u));
    IF cardinality(unknown) > 0 THEN
        SELECT string_agg(DISTINCT p.name, ', ') INTO known
          FROM webhook.parameters p WHERE p.workflow_id = workflow;
        RAISE EXCEPTION 'unknown parameter(s) for workflow %: %', workflow, array_to_string(unknown, ', ', 'NULL')
            USING ERRCODE = 'undefined_object',
                  DETAIL = CASE WHEN known IS NULL THEN 'The workflow has no parameters yet.'
                                ELSE format('Known parameters: %s.', known) END,
                  HINT = 'Derive the parameter list first with webhook_sample_from_json(), '
                      || 'webhook_sample_from_kv() or webhook_capture_sample().';
    END IF;
    IF for_events IS NOT NULL AND (cardinality(for_events) = 0 OR array_position(for_events, NULL) IS NOT NULL
                                   OR EXISTS (SELECT FROM unnest(for_events) e WHERE btrim(e) = '')) THEN
        RAISE EXCEPTION 'for_events must list event types'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: ARRAY[''push''] or ARRAY[''payment_intent.*''].';
    END IF;
    IF for_events IS NOT NULL THEN
        PERFORM webhook._check_event_types(for_events);
    END IF;
    IF for_events IS NOT NULL AND NOT EXISTS (
           SELECT FROM webhook.workflows w WHERE w.id = workflow AND w.discriminator_source IS NOT NULL) THEN
        RAISE EXCEPTION 'workflow % has no event discriminator', workflow
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Say where the event type is first, e.g. '
                                'webhook_set_discriminator(%L, ''header'', ''x-github-event'').', workflow);
    END IF;
    UPDATE webhook.parameters p SET required = $3, required_for = CASE WHEN $3 THEN for_events END
     WHERE p.workflow_id = workflow AND p.name = ANY (params);
    UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_set_required(uuid, text[], boolean, text[]) IS
    'Marks parameters (dotted paths for nested leaves) required or optional, optionally only for some event types';

-- Parameter editing (what a sample editor does): add, drop, alter.
CREATE FUNCTION webhook._check_parameter_args(source text, type text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF source IS NOT NULL AND source NOT IN ('body', 'query', 'header') THEN
        RAISE EXCEPTION 'invalid parameter source "%"', source
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use body, query or header.';
    END IF;
    IF type IS NOT NULL AND type NOT IN ('text', 'number', 'boolean', 'object', 'array', 'any') THEN
        RAISE EXCEPTION 'invalid parameter type "%"', type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use text, number, boolean, object, array or any.';
    END IF;
END
$$;

CREATE FUNCTION webhook_add_parameter(workflow uuid, name text, source text DEFAULT 'body',
                                      type text DEFAULT 'any', required boolean DEFAULT false)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF name IS NULL OR btrim(name) = '' OR source IS NULL OR type IS NULL OR required IS NULL THEN
        RAISE EXCEPTION 'name, source, type and required must not be NULL or empty'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM webhook._check_parameter_args(lower(source), lower(type));
    PERFORM webhook._check_parameter_name($2);
    IF EXISTS (SELECT FROM webhook.parameters p WHERE p.workflow_id = workflow
                  AND p.source = lower($3) AND p.name = $2) THEN
        RAISE EXCEPTION 'parameter "%" (%) already exists', $2, lower($3)
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Change it with webhook_alter_parameter().';
    END IF;
    SELECT count(*) + 1 INTO total FROM webhook.parameters p WHERE p.workflow_id = workflow;
    PERFORM webhook._check_parameter_count(workflow, total);
    INSERT INTO webhook.parameters (workflow_id, name, source, type, sample, required, position, depth)
    SELECT workflow, $2, lower($3), lower($4), NULL, $5,
           coalesce(max(p.position), 0) + 1,
           CASE WHEN lower($3) = 'header' THEN 0
                ELSE array_length(string_to_array($2, '.'), 1) - 1 END
      FROM webhook.parameters p WHERE p.workflow_id = workflow;
    UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    PERFORM webhook._sync_record_type(workflow);
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_add_parameter(uuid, text, text, text, boolean) IS
    'Declares one parameter (e.g. a header) without a sample';

-- The parameter's source when the caller left it out: the only one by that
-- name, or an error naming the candidates.
CREATE FUNCTION webhook._parameter_source(workflow uuid, name text, source text)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found text[];
BEGIN
    found := ARRAY(SELECT p.source FROM webhook.parameters p
                    WHERE p.workflow_id = workflow AND p.name = $2
                      AND ($3 IS NULL OR p.source = lower($3)) ORDER BY p.source);
    IF cardinality(found) = 0 THEN
        RAISE EXCEPTION 'unknown parameter "%" for workflow %', $2, workflow
            USING ERRCODE = 'undefined_object', HINT = 'Add it with webhook_add_parameter().';
    ELSIF cardinality(found) > 1 THEN
        RAISE EXCEPTION 'parameter "%" exists in several sources (%)', $2, array_to_string(found, ', ')
            USING ERRCODE = 'ambiguous_parameter', HINT = 'Pass source => ''body'', ''query'' or ''header''.';
    END IF;
    RETURN found[1];
END
$$;

CREATE FUNCTION webhook_drop_parameter(workflow uuid, name text, source text DEFAULT NULL)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    src text;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    src := webhook._parameter_source(workflow, $2, $3);
    PERFORM webhook._delete_parameters(workflow, src, ARRAY[$2]);
    UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    PERFORM webhook._sync_record_type(workflow);
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_drop_parameter(uuid, text, text) IS 'Removes one parameter from the list';

CREATE FUNCTION webhook_alter_parameter(workflow uuid, name text, type text DEFAULT NULL,
                                        required boolean DEFAULT NULL, nullable boolean DEFAULT NULL,
                                        source text DEFAULT NULL, strict boolean DEFAULT NULL)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
DECLARE
    src text;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    PERFORM webhook._check_parameter_args(NULL, lower($3));
    src := webhook._parameter_source(workflow, $2, $6);
    UPDATE webhook.parameters p
       SET type = coalesce(lower($3), p.type),
           required = coalesce($4, p.required),
           required_for = CASE WHEN coalesce($4, p.required) THEN p.required_for END,
           nullable = coalesce($5, p.nullable),
           strict = coalesce($7, p.strict)
     WHERE p.workflow_id = workflow AND p.source = src AND p.name = $2;
    UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    PERFORM webhook._sync_record_type(workflow);
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_alter_parameter(uuid, text, text, boolean, boolean, text, boolean) IS
    'Changes a parameter''s type, required flag, nullability (strict mode) or strictness';

CREATE FUNCTION webhook_set_strict(workflow uuid, strict boolean, params text[] DEFAULT NULL)
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'strict must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF params IS NULL THEN
        UPDATE webhook.workflows w SET strict_types = $2 WHERE w.id = workflow;
    ELSE
        IF EXISTS (SELECT FROM unnest(params) u WHERE NOT EXISTS (
                       SELECT FROM webhook.parameters p WHERE p.workflow_id = workflow AND p.name = u)) THEN
            RAISE EXCEPTION 'unknown parameter(s) for workflow %', workflow USING ERRCODE = 'undefined_object';
        END IF;
        UPDATE webhook.parameters p SET strict = $2 WHERE p.workflow_id = workflow AND p.name = ANY (params);
        UPDATE webhook.workflows w SET updated_at = now() WHERE w.id = workflow;
    END IF;
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_set_strict(uuid, boolean, text[]) IS
    'Strict typing (400 for a value of another type) for the whole workflow, or for the given parameters';

CREATE FUNCTION webhook_set_delivery_key(workflow uuid, source text, name text DEFAULT NULL,
                                         "window" interval DEFAULT '24 hours')
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
    src text := lower(btrim(source));
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF src IS NULL OR src NOT IN ('default', 'header', 'body', 'none') THEN
        RAISE EXCEPTION 'invalid delivery key source "%"', source
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''default'' (webhook-id, X-GitHub-Delivery, Idempotency-Key), '
                      || '''header'' or ''body'' with a name, or ''none''.';
    END IF;
    IF (src IN ('header', 'body')) <> (name IS NOT NULL AND btrim(name) <> '') THEN
        RAISE EXCEPTION 'a name is needed for header and body keys, and only for them'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: webhook_set_delivery_key(id, ''body'', ''id'') for Stripe events.';
    END IF;
    IF $4 IS NULL OR $4 <= interval '0' THEN
        RAISE EXCEPTION 'window must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET delivery_key_source = CASE WHEN src = 'default' THEN NULL ELSE src END,
           delivery_key_name = CASE WHEN src = 'header' THEN lower($3)
                                    WHEN src = 'body' THEN $3 END,
           delivery_key_window = $4
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_delivery_key(uuid, text, text, interval) IS
    'Where a redelivery is recognised (default headers, a header, a body path, or none) and for how long';

CREATE FUNCTION webhook_set_retry(workflow uuid, max_attempts integer,
                                  delay interval DEFAULT '10 seconds',
                                  max_delay interval DEFAULT '1 hour')
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF $2 IS NULL OR $2 NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000 (1: never retried)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $3 IS NULL OR $3 <= interval '0' OR $4 IS NULL OR $4 < $3 OR $4 > interval '30 days' THEN
        RAISE EXCEPTION 'delay must be positive, and max_delay at least delay and at most 30 days'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET max_attempts = $2, retry_delay = $3, retry_max_delay = $4
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_retry(uuid, integer, interval, interval) IS
    'How often a failed handler is retried: attempts in all, first delay (doubling, with jitter), longest delay';

CREATE FUNCTION webhook_set_ordered(workflow uuid, enabled boolean)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'enabled must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE webhook.workflows x SET ordered = $2 WHERE x.id = workflow RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_ordered(uuid, boolean) IS
    'Run the workflow''s events one at a time, in arrival order (a failing event holds back the later ones until it succeeds or is dead)';

-- Authenticates the workflow's requests (docs/verification.md). `secret` and `secrets` together are the active secrets (more
-- than one during a rotation); scheme 'none' (or NULL) turns verification
-- off. Pass secrets as bind parameters: a literal in a failing statement
-- may reach the server log with the statement text.
CREATE FUNCTION webhook_set_verification(workflow uuid, scheme text,
                                         secret text DEFAULT NULL,
                                         secrets text[] DEFAULT NULL,
                                         tolerance interval DEFAULT NULL,
                                         header text DEFAULT NULL,
                                         algorithm text DEFAULT NULL,
                                         encoding text DEFAULT NULL,
                                         prefix text DEFAULT NULL,
                                         timestamp_header text DEFAULT NULL,
                                         separator text DEFAULT NULL,
                                         username text DEFAULT NULL,
                                         definition jsonb DEFAULT NULL,
                                         for_method text DEFAULT NULL)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
    active text[];
    opts jsonb;
    m text := coalesce(pg_catalog.upper(for_method), '*');
BEGIN
    w := webhook._workflow(workflow, true);
    IF for_method IS NOT NULL AND scheme IS NULL THEN
        -- The method goes back to the workflow's own verification.
        DELETE FROM webhook.verifications v WHERE v.workflow_id = w.id AND v.method = m;
        RETURN w;
    END IF;
    IF (scheme IS NOT DISTINCT FROM 'custom') <> (definition IS NOT NULL) THEN
        RAISE EXCEPTION 'invalid verification: definition => … goes with the custom scheme, and only with it'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Start from a preset: SELECT definition FROM webhook_verification_presets() WHERE name = ''zoom''.';
    END IF;
    IF scheme IS NULL OR scheme = 'none' THEN
        active := '{}';
        opts := '{}';
        scheme := 'none';
    ELSE
        active := CASE WHEN secret IS NULL THEN '{}'::text[] ELSE ARRAY[secret] END
                  || coalesce(secrets, '{}');
        opts := pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'tolerance_secs', pg_catalog.ceil(extract(epoch FROM tolerance))::bigint,
            'header', header, 'algorithm', algorithm, 'encoding', encoding, 'prefix', prefix,
            'timestamp_header', timestamp_header, 'separator', separator, 'username', username));
        IF scheme = 'custom' THEN
            IF pg_catalog.jsonb_typeof(definition) <> 'object' OR opts - 'tolerance_secs' <> '{}' THEN
                RAISE EXCEPTION 'invalid verification: a custom scheme is its definition (a JSON object), with tolerance => … at most'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            opts := definition || opts;
        END IF;
    END IF;
    INSERT INTO webhook.verifications AS v (workflow_id, method, scheme, secrets, options)
    VALUES (w.id, m, scheme, active, opts)
    ON CONFLICT (workflow_id, method) DO UPDATE
       SET scheme = EXCLUDED.scheme, secrets = EXCLUDED.secrets, options = EXCLUDED.options;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_verification(uuid, text, text, text[], interval, text, text, text, text, text, text, text, jsonb, text) IS
    'How the workflow''s requests are authenticated: a preset (standard-webhooks, github, stripe, slack, shopify, twilio, gitlab, bearer, basic, and the providers'' in webhook_verification_presets()), hmac with its options, custom with a definition, or none';

-- The provider's endpoint check the workflow answers itself, without its
-- handler and without storing an event (NULL: none). See
-- crates/webhook_core/src/handshake.rs for what each kind answers.
CREATE FUNCTION webhook_set_handshake(workflow uuid, kind text)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF kind IS NOT NULL AND kind NOT IN ('slack', 'meta', 'msgraph', 'dropbox', 'twitch', 'zoom', 'discord') THEN
        RAISE EXCEPTION 'unknown handshake (one of slack, meta, msgraph, dropbox, twitch, zoom, discord)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x SET handshake = kind WHERE x.id = workflow RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_handshake(uuid, text) IS
    'The provider endpoint check (slack, meta, msgraph, dropbox, twitch, zoom, discord) the workflow answers without its handler, or NULL';

-- The listener and executor processes running now. Listeners are shown to
-- every caller; an executor only to members of the role whose handlers it
-- runs (as its events are). since says when each entered its state (a
-- listener: when it started); settings_loaded_at when each last read the
-- configuration: after pg_reload_conf(), a setting is in effect everywhere
-- once every row is later than the reload.
CREATE FUNCTION webhook_processes()
RETURNS TABLE (pid integer, kind text, owner regrole, state text, event_id bigint,
               since timestamptz, settings_loaded_at timestamptz)
LANGUAGE sql VOLATILE AS $$
    SELECT (p.value OPERATOR(pg_catalog.->>) 'pid')::pg_catalog.int4,
           p.value OPERATOR(pg_catalog.->>) 'kind',
           (p.value OPERATOR(pg_catalog.->>) 'owner')::pg_catalog.oid::pg_catalog.regrole,
           p.value OPERATOR(pg_catalog.->>) 'state',
           (p.value OPERATOR(pg_catalog.->>) 'event')::pg_catalog.int8,
           pg_catalog.to_timestamp(
               (p.value OPERATOR(pg_catalog.->>) 'since_unix_ms')::pg_catalog.float8
               OPERATOR(pg_catalog./) 1000),
           pg_catalog.to_timestamp(
               (p.value OPERATOR(pg_catalog.->>) 'settings_loaded_unix_ms')::pg_catalog.float8
               OPERATOR(pg_catalog./) 1000)
      FROM pg_catalog.jsonb_array_elements(webhook._processes()) p
$$;
COMMENT ON FUNCTION webhook_processes() IS
    'The listener and executor processes running now: what each does, since when, and when it last read the configuration (executors only of roles the caller is a member of)';

-- The presets: each is a definition of the custom scheme, to
-- copy and adjust when a provider changes (docs/verification.md).
CREATE FUNCTION webhook_verification_presets()
RETURNS TABLE (name text, definition jsonb)
LANGUAGE sql STABLE AS $$
    SELECT p.value OPERATOR(pg_catalog.->>) 'name', p.value OPERATOR(pg_catalog.->) 'definition'
      FROM pg_catalog.jsonb_array_elements(webhook._verification_presets()) WITH ORDINALITY p
     ORDER BY p.ordinality
$$;
COMMENT ON FUNCTION webhook_verification_presets() IS
    'The verification presets by name, each a definition for webhook_set_verification(…, ''custom'', definition => …)';

-- Headers stored redacted in this workflow's events, rejections and samples,
-- besides authorization, proxy-authorization, cookie, x-gitlab-token and
-- x-api-key, which every workflow redacts.
CREATE FUNCTION webhook_set_redacted_headers(workflow uuid, headers text[])
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF headers IS NULL OR cardinality(headers) > 100
       OR EXISTS (SELECT FROM pg_catalog.unnest(headers) h
                   WHERE h IS NULL OR h !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$') THEN
        RAISE EXCEPTION 'headers must be an array of at most 100 header names'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET redact_headers = ARRAY(SELECT DISTINCT pg_catalog.lower(h) FROM pg_catalog.unnest(headers) h ORDER BY 1)
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_redacted_headers(uuid, text[]) IS
    'Headers to store redacted in the workflow''s events, rejections and samples (credential headers always are)';

-- The client networks the workflow accepts requests from; NULL: any. The
-- client is the connecting address, or the one a proxy in
-- webhook.trusted_proxies reports (X-Forwarded-For, Forwarded).
CREATE FUNCTION webhook_set_allowed_networks(workflow uuid, networks cidr[])
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF networks IS NOT NULL AND (cardinality(networks) NOT BETWEEN 1 AND 1000
                                 OR array_position(networks, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'networks must be an array of 1 to 1000 networks, or NULL for any address'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x SET allowed_networks = networks WHERE x.id = workflow RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_allowed_networks(uuid, cidr[]) IS
    'Client networks (IPv4/IPv6 CIDR) allowed to send to the workflow; others get 403. NULL: any';

-- Token-bucket rate limits: `rate` requests per second for the workflow as
-- a whole (up to `burst` at once), and per client address. NULL turns a
-- limit off. Over it: 429 with Retry-After.
CREATE FUNCTION webhook_set_rate_limit(workflow uuid, rate double precision,
                                       burst integer DEFAULT NULL,
                                       per_client_rate double precision DEFAULT NULL,
                                       per_client_burst integer DEFAULT NULL)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF rate <= 0 OR per_client_rate <= 0 OR burst < 1 OR per_client_burst < 1
       OR rate >= 'Infinity' OR per_client_rate >= 'Infinity'
       OR (rate IS NULL AND burst IS NOT NULL) OR (per_client_rate IS NULL AND per_client_burst IS NOT NULL) THEN
        RAISE EXCEPTION 'rates must be positive (requests per second) and bursts at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET rate_limit = rate,
           rate_burst = CASE WHEN rate IS NOT NULL THEN coalesce(burst, greatest(1, pg_catalog.ceil(rate)::integer)) END,
           client_rate_limit = per_client_rate,
           client_rate_burst = CASE WHEN per_client_rate IS NOT NULL
                                    THEN coalesce(per_client_burst, greatest(1, pg_catalog.ceil(per_client_rate)::integer)) END
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_rate_limit(uuid, double precision, integer, double precision, integer) IS
    'Requests per second (and burst) the workflow accepts in all and per client address; 429 beyond. NULL: no limit';

-- Storage: `quota` bytes of events stored per webhook.storage_quota_window at
-- most (NULL: the server's webhook.storage_quota, which is also the most any
-- workflow gets), and whether events keep the raw body text besides the
-- parameters parsed from it. Over the quota: 429 with Retry-After until the
-- window ends.
CREATE FUNCTION webhook_set_storage(workflow uuid, quota bigint, keep_body boolean DEFAULT true)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF quota <= 0 OR keep_body IS NULL THEN
        RAISE EXCEPTION 'quota must be positive (bytes per webhook.storage_quota_window) or NULL, and keep_body true or false'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET storage_quota = quota, keep_body = webhook_set_storage.keep_body
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_storage(uuid, bigint, boolean) IS
    'Bytes of events the workflow may store per webhook.storage_quota_window (NULL: the server''s quota, also the most any workflow gets; 429 beyond), and whether events keep the raw body besides the parameters';

-- Retention: how long the workflow's finished events are kept, succeeded and
-- dead ones apart, from when their last attempt ended (NULL: the server's
-- webhook.retain_succeeded and webhook.retain_dead), and how many events it
-- keeps at most (NULL: no bound; past it, its oldest finished events go
-- whatever their age). What is past either is deleted, with its attempts,
-- a bounded number at a time by the retention process. Pending and failed
-- events are never removed by retention.
CREATE FUNCTION webhook_set_retention(workflow uuid, succeeded interval, dead interval,
                                      max_events bigint DEFAULT NULL)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF succeeded <= interval '0' OR dead <= interval '0'
       OR succeeded > interval '1000 years' OR dead > interval '1000 years' THEN
        RAISE EXCEPTION 'retention must be a positive interval of at most 1000 years, or NULL for the server''s default'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'webhook.retain_succeeded and webhook.retain_dead are the defaults.';
    END IF;
    IF max_events NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 1000000, or NULL for no bound'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE webhook.workflows x
       SET retain_succeeded = succeeded, retain_dead = dead,
           max_events = webhook_set_retention.max_events
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_retention(uuid, interval, interval, bigint) IS
    'How long the workflow''s succeeded and dead events are kept after their last attempt (NULL: webhook.retain_succeeded, webhook.retain_dead), and how many events it keeps at most (NULL: no bound; its oldest finished events go past it); pending and failed events are never removed';

CREATE FUNCTION webhook_set_discriminator(workflow uuid, source text, name text)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF (source IS NULL) <> (name IS NULL) OR btrim(name) = '' THEN
        RAISE EXCEPTION 'give both source and name, or neither to turn the discriminator off'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: webhook_set_discriminator(id, ''header'', ''x-github-event'').';
    END IF;
    PERFORM webhook._check_parameter_args(lower(source), NULL);
    UPDATE webhook.workflows x
       SET discriminator_source = lower($2),
           discriminator_name = CASE WHEN lower($2) = 'header' THEN lower($3) ELSE $3 END
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_discriminator(uuid, text, text) IS
    'Where the event type is read from (header x-github-event, body type, ...), for webhook_set_required(..., for_events)';

CREATE FUNCTION webhook_set_full_body(workflow uuid, enabled boolean, param_name text DEFAULT 'body')
RETURNS SETOF webhook.parameters
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'enabled must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF param_name IS NULL OR btrim(param_name) = '' THEN
        RAISE EXCEPTION 'param_name must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is ''body''.';
    END IF;
    IF $2 THEN
        PERFORM webhook._replace_parameters(workflow, 'body',
            jsonb_build_array(jsonb_build_object('name', param_name, 'type', 'text', 'sample', '', 'depth', 0)));
        UPDATE webhook.workflows w SET full_body = true, full_body_param = param_name WHERE w.id = workflow;
    ELSE
        PERFORM webhook._delete_parameters(workflow, 'body', ARRAY[w.full_body_param])
           FROM webhook.workflows w WHERE w.id = workflow AND w.full_body;
        UPDATE webhook.workflows w SET full_body = false WHERE w.id = workflow;
        PERFORM webhook._sync_record_type(workflow);
    END IF;
    RETURN QUERY SELECT * FROM webhook._parameter_list(workflow);
END
$$;
COMMENT ON FUNCTION webhook_set_full_body(uuid, boolean, text) IS
    '"Full text in Body": the raw request body becomes the single text parameter param_name';

-- ---------------------------------------------------------------------------
-- Typed records: a composite type per workflow, kept to its parameter list
-- ---------------------------------------------------------------------------

-- Creates the composite type schema.name for the workflow (as its owner,
-- who needs CREATE on the schema, and to whom it belongs; no other role may
-- use it unless the owner grants USAGE) and keeps it to the parameter list
-- from now on: one attribute per top-level parameter, named and typed by the
-- rules of docs/sql-api.md (*Typed records*). The parameter functions bring
-- it up to date in their own transaction (webhook._sync_record_type); plain
-- DML on webhook.parameters does not, nor does a restore. The workflow's own
-- type again: brought up to date. NULL: no record type (the type stays, the
-- extension no longer changes it).
CREATE FUNCTION webhook_set_record_type(workflow uuid, type_name text)
RETURNS regtype
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
    parts text[];
    target regtype;
BEGIN
    w := webhook._workflow(workflow, true);
    IF type_name IS NULL THEN
        UPDATE webhook.workflows x SET record_type = NULL WHERE x.id = workflow;
        RETURN NULL;
    END IF;
    parts := parse_ident(type_name);
    IF cardinality(parts) <> 2 THEN
        RAISE EXCEPTION 'type name % must be schema-qualified', quote_literal(type_name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: ''public.orders_hook'' (a schema where the workflow''s owner may create types).';
    END IF;
    IF parts[1] LIKE 'pg\_temp%' OR parts[1] LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'a record type cannot be in schema %', parts[1]
            USING ERRCODE = 'invalid_schema_name',
                  HINT = 'It outlives the session: use a schema of the workflow''s owner.';
    END IF;
    target := to_regtype(format('%I.%I', parts[1], parts[2]));
    IF target IS NULL OR target IS DISTINCT FROM w.record_type THEN
        target := webhook._create_record_type(workflow, parts[1], parts[2])::regtype;
    END IF;
    UPDATE webhook.workflows x SET record_type = target WHERE x.id = workflow;
    PERFORM webhook._sync_record_type(workflow);
    RETURN target;
END
$$;
COMMENT ON FUNCTION webhook_set_record_type(uuid, text) IS
    'Creates a composite type with one attribute per top-level parameter and keeps it to the parameter list';

-- A record of rec's type from values by attribute ({attribute: value}; keys
-- names the parameter of each, {attribute: key}). A value that is not of the
-- attribute's type raises an error naming the parameter, the attribute and
-- the event, with the SQLSTATE of the failed conversion: in a handler, the
-- event's attempt fails and the retry policy decides. The executors call it
-- with values they mapped from the event's params (src/execution/handler_call.rs).
CREATE FUNCTION webhook._params_record(rec anyelement, vals jsonb, keys jsonb, event_id bigint)
RETURNS anyelement
LANGUAGE plpgsql STABLE AS $$
DECLARE
    item record;
    state text;
    msg text;
BEGIN
    BEGIN
        RETURN jsonb_populate_record(rec, coalesce(vals, '{}'));
    EXCEPTION WHEN data_exception THEN
        -- Which attribute: each alone.
        FOR item IN SELECT v.key, v.value FROM jsonb_each(vals) v ORDER BY v.key LOOP
            BEGIN
                PERFORM jsonb_populate_record(rec, jsonb_build_object(item.key, item.value));
            EXCEPTION WHEN data_exception THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
                RAISE EXCEPTION 'parameter "%" of event % cannot be attribute "%" of type %: %',
                                keys->>item.key, event_id, item.key, pg_typeof(rec), msg
                    USING ERRCODE = state,
                          DETAIL = format('Its value is %s.', left(item.value::text, 200)),
                          HINT = 'webhook_set_strict() makes requests whose parameter has another type '
                              || 'get 400 instead of being stored; webhook_alter_parameter() changes its type.';
            END;
        END LOOP;
        RAISE;
    END;
END
$$;

-- The event's parameters as a record of rec's type: each attribute holds the
-- params key it stands for (the workflow's parameter list says which), so
-- attributes of other names stay NULL.
CREATE FUNCTION webhook._event_params(e webhook.events, rec anyelement)
RETURNS anyelement
LANGUAGE plpgsql STABLE AS $$
DECLARE
    vals jsonb;
    keys jsonb;
BEGIN
    IF e.id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_object_agg(a.attribute, e.params -> a.name), jsonb_object_agg(a.attribute, a.name)
      INTO vals, keys
      FROM (SELECT array_agg(p.name ORDER BY p.source, p.position, p.name) AS names,
                   array_agg(p.source ORDER BY p.source, p.position, p.name) AS sources,
                   array_agg(p.type ORDER BY p.source, p.position, p.name) AS types
              FROM webhook.parameters p
             WHERE p.workflow_id = e.workflow_id AND p.depth = 0) l,
           webhook._record_attributes_of(l.names, l.sources, l.types) a
     WHERE e.params ? a.name;
    RETURN webhook._params_record(rec, vals, keys, e.id);
END
$$;

CREATE FUNCTION webhook_params(event webhook.events, as_type anyelement)
RETURNS anyelement
LANGUAGE sql STABLE AS $$
    SELECT webhook._event_params($1, $2)
$$;
COMMENT ON FUNCTION webhook_params(webhook.events, anyelement) IS
    'The event''s parameters as the given record type, e.g. webhook_params(e, NULL::public.orders_hook)';

-- ---------------------------------------------------------------------------
-- Responses
-- ---------------------------------------------------------------------------

CREATE FUNCTION webhook_set_response(
    workflow uuid,
    method text,
    content_type text DEFAULT NULL,
    body text DEFAULT NULL,
    status integer DEFAULT NULL,
    headers jsonb DEFAULT NULL,
    timeout interval DEFAULT NULL,
    failure_status integer DEFAULT NULL,
    failure_content_type text DEFAULT NULL,
    failure_body text DEFAULT NULL)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
    m text := lower(btrim(method));
    ct text;
    failure_ct text;
    ret regtype;
BEGIN
    w := webhook._workflow(workflow, true);
    IF m IS NULL OR m NOT IN ('default', 'custom', 'workflow') THEN
        RAISE EXCEPTION 'invalid response method "%"', method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''default'' (200 JSON after commit), ''custom'' (your template) '
                      || 'or ''workflow'' (the handler''s return value).';
    END IF;
    IF m <> 'custom' AND (content_type IS NOT NULL OR body IS NOT NULL
                          OR status IS NOT NULL OR headers IS NOT NULL) THEN
        RAISE EXCEPTION 'content_type, body, status and headers apply only to the custom response method'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Use webhook_set_response(%L, ''custom'', body => ...).', workflow);
    END IF;
    IF m <> 'workflow' AND (timeout IS NOT NULL OR failure_status IS NOT NULL
                            OR failure_content_type IS NOT NULL OR failure_body IS NOT NULL) THEN
        RAISE EXCEPTION 'timeout and failure_* apply only to the workflow response method'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF m = 'custom' THEN
        IF body IS NULL THEN
            RAISE EXCEPTION 'the custom response method needs a body'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example: body => ''{"received": "{{order_id}}"}''; '
                          || '{{name}} placeholders take request parameters.';
        END IF;
        ct := webhook._check_response_template(coalesce(content_type, 'application/json'), body);
        PERFORM webhook._check_status(coalesce(status, 200));
        PERFORM webhook._check_response_headers(coalesce(headers, '{}'));
    ELSIF m = 'workflow' THEN
        IF w.queued THEN
            RAISE EXCEPTION 'the workflow response method needs the workflow''s handler, and applications read this workflow''s events'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('webhook_set_queue(%L, false) gives its events back to its handler.', workflow);
        END IF;
        SELECT p.prorettype::regtype INTO ret
          FROM pg_catalog.pg_proc p WHERE p.oid = w.handler AND p.prokind = 'f';
        IF ret IS NULL OR ret NOT IN ('jsonb'::regtype, 'json'::regtype, 'text'::regtype, 'xml'::regtype) THEN
            RAISE EXCEPTION 'handler % cannot produce the response', w.handler::regprocedure
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = CASE WHEN ret IS NULL THEN 'It is a procedure.'
                                    ELSE format('It returns %s.', ret) END,
                      HINT = 'The workflow method sends the handler''s return value: '
                          || 'use a function returning jsonb, json, text or xml.';
        END IF;
        IF timeout IS NOT NULL AND timeout <= interval '0' THEN
            RAISE EXCEPTION 'timeout must be positive' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM webhook._check_status(coalesce(failure_status, 500));
        IF failure_body IS NOT NULL OR failure_content_type IS NOT NULL THEN
            failure_ct := webhook._check_response_template(
                coalesce(failure_content_type, 'application/json'), coalesce(failure_body, ''));
        END IF;
    END IF;

    UPDATE webhook.workflows x
       SET response_method = m,
           response_status = coalesce($5, 200),
           response_content_type = ct,
           response_body = $4,
           response_headers = coalesce($6, '{}'),
           response_timeout = $7,
           failure_status = coalesce($8, 500),
           failure_content_type = failure_ct,
           failure_body = $10
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_response(uuid, text, text, text, integer, jsonb, interval, integer, text, text) IS
    'Chooses the response method: default, custom (status, headers, templated body) or workflow (handler result)';

CREATE FUNCTION webhook._check_status(status integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF status IS NULL OR status NOT BETWEEN 200 AND 599 THEN
        RAISE EXCEPTION 'invalid HTTP status %', coalesce(status::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a status between 200 and 599.';
    END IF;
END
$$;

CREATE FUNCTION webhook._check_response_headers(headers jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    bad text;
BEGIN
    IF jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object of strings'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example: ''{"X-Request-Source": "webhook_ext"}''.';
    END IF;
    SELECT h.key INTO bad FROM jsonb_each(headers) h
     WHERE jsonb_typeof(h.value) <> 'string'
        OR h.key !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$'
        OR h.value->>0 ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f\x7f]'
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'invalid response header "%"', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Header names must be HTTP tokens and values single-line strings.';
    END IF;
    SELECT h.key INTO bad FROM jsonb_each(headers) h
     WHERE lower(h.key) IN ('content-length', 'transfer-encoding', 'connection', 'content-type',
                            'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection')
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'response header "%" is set by the listener', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set the content type with content_type => ...; framing headers cannot be overridden.';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Statistics per workflow
-- ---------------------------------------------------------------------------

-- One row per workflow the caller may see (row-level security on every table
-- it reads). Counts that outlive the rows they count come from
-- webhook.workflow_counters (a listener adds its requests once a second),
-- webhook.rejection_counts and webhook.handshakes; the queue (pending,
-- running, failed, the oldest pending event) is read from the unfinished
-- events as they are now; handler duration and lag (from receipt to the
-- first attempt's start) are over the events received in the last 5 minutes,
-- at most the newest 10,000 of them, so a query costs the same however long
-- the history.
CREATE VIEW webhook.workflow_stats WITH (security_invoker = true) AS
SELECT w.id AS workflow_id,
       w.name,
       c.accepted + c.redelivered + r.refused + h.handshakes AS received,
       c.accepted,
       c.redelivered,
       r.refused,
       r.refused_by_reason,
       h.handshakes,
       q.pending,
       q.running,
       q.failed,
       c.succeeded,
       c.failed_attempts,
       c.dead,
       pg_catalog.now() - q.oldest_pending AS oldest_pending_age,
       t.handler_p50,
       t.handler_p99,
       t.lag_p50,
       t.lag_p99
  FROM webhook.workflows w
 CROSS JOIN (
       SELECT COALESCE(pg_catalog.array_agg((p.value ->> 'event')::pg_catalog.int8)
                           FILTER (WHERE p.value ->> 'event' IS NOT NULL),
                       '{}') AS events
         FROM pg_catalog.jsonb_array_elements(webhook._processes()) p) running
 CROSS JOIN LATERAL (
       SELECT COALESCE(pg_catalog.sum(k.accepted), 0)::pg_catalog.int8 AS accepted,
              COALESCE(pg_catalog.sum(k.redelivered), 0)::pg_catalog.int8 AS redelivered,
              COALESCE(pg_catalog.sum(k.succeeded), 0)::pg_catalog.int8 AS succeeded,
              COALESCE(pg_catalog.sum(k.failed_attempts), 0)::pg_catalog.int8 AS failed_attempts,
              COALESCE(pg_catalog.sum(k.dead), 0)::pg_catalog.int8 AS dead
         FROM webhook.workflow_counters k
        WHERE k.workflow_id = w.id) c
 CROSS JOIN LATERAL (
       SELECT COALESCE(pg_catalog.sum(x.count), 0)::pg_catalog.int8 AS refused,
              COALESCE(pg_catalog.jsonb_object_agg(x.status || ' ' || x.reason, x.count),
                       '{}') AS refused_by_reason
         FROM webhook.rejection_counts x
        WHERE x.workflow_id = w.id) r
 CROSS JOIN LATERAL (
       SELECT COALESCE(pg_catalog.sum(s.answered), 0)::pg_catalog.int8 AS handshakes
         FROM webhook.handshakes s
        WHERE s.workflow_id = w.id) h
 CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*) FILTER (WHERE u.status = 'pending'
                                            AND u.id <> ALL (running.events)) AS pending,
              pg_catalog.count(*) FILTER (WHERE u.id = ANY (running.events)) AS running,
              pg_catalog.count(*) FILTER (WHERE u.status = 'failed'
                                            AND u.id <> ALL (running.events)) AS failed,
              pg_catalog.min(u.received_at) FILTER (WHERE u.status = 'pending') AS oldest_pending
         FROM webhook.events u
        WHERE u.workflow_id = w.id AND u.next_attempt_at IS NOT NULL) q
 CROSS JOIN LATERAL (
       SELECT pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY a.ended_at - a.started_at)
                  AS handler_p50,
              pg_catalog.percentile_cont(0.99) WITHIN GROUP (ORDER BY a.ended_at - a.started_at)
                  AS handler_p99,
              pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY a.started_at - e.received_at)
                  FILTER (WHERE a.attempt = 1) AS lag_p50,
              pg_catalog.percentile_cont(0.99) WITHIN GROUP (ORDER BY a.started_at - e.received_at)
                  FILTER (WHERE a.attempt = 1) AS lag_p99
         FROM (SELECT v.id, v.received_at
                 FROM webhook.events v
                WHERE v.workflow_id = w.id
                  AND v.received_at >= pg_catalog.now() - interval '5 minutes'
                ORDER BY v.received_at DESC
                LIMIT 10000) e
         JOIN webhook.attempts a ON a.event_id = e.id) t;
COMMENT ON VIEW webhook.workflow_stats IS
    'Per workflow: requests received, accepted, redelivered and refused (by reason), handshakes, the queue now, handler outcomes, and handler duration and lag percentiles over the last 5 minutes';
GRANT SELECT ON webhook.workflow_stats TO webhook_admin;

-- ---------------------------------------------------------------------------
-- Capturing a sample over HTTP
-- ---------------------------------------------------------------------------

CREATE VIEW webhook.capture_status WITH (security_invoker = true) AS
SELECT w.id AS workflow_id,
       CASE WHEN w.captured_at IS NOT NULL THEN 'captured'
            WHEN w.capture_until IS NULL THEN 'idle'
            WHEN w.capture_until > now() THEN 'waiting'
            ELSE 'expired' END AS state,
       w.capture_until,
       w.captured_at
FROM webhook.workflows w;
COMMENT ON VIEW webhook.capture_status IS
    'Sample capture per workflow: idle, waiting (armed), captured or expired';
GRANT SELECT ON webhook.capture_status TO webhook_admin;

CREATE FUNCTION webhook_capture_sample(workflow uuid, "window" interval DEFAULT '3 minutes')
RETURNS webhook.capture_status
LANGUAGE plpgsql AS $$
DECLARE
    result webhook.capture_status;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF $2 IS NULL OR $2 <= interval '0' OR $2 > interval '1 day' THEN
        RAISE EXCEPTION 'capture window must be positive and at most 1 day'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 3 minutes.';
    END IF;
    UPDATE webhook.workflows w
       SET capture_until = now() + $2, captured_at = NULL
     WHERE w.id = workflow;
    SELECT * INTO result FROM webhook.capture_status c WHERE c.workflow_id = workflow;
    RETURN result;
END
$$;
COMMENT ON FUNCTION webhook_capture_sample(uuid, interval) IS
    'Arms capture: the next GET/POST to the URL within the window becomes the sample (handler not fired)';

CREATE FUNCTION webhook_capture_status(workflow uuid)
RETURNS webhook.capture_status
LANGUAGE plpgsql STABLE AS $$
DECLARE
    result webhook.capture_status;
BEGIN
    PERFORM webhook._workflow(workflow);
    SELECT * INTO result FROM webhook.capture_status c WHERE c.workflow_id = workflow;
    RETURN result;
END
$$;

-- ---------------------------------------------------------------------------
-- Events and owners
-- ---------------------------------------------------------------------------

CREATE FUNCTION webhook_delete_events(workflow uuid, received_before timestamptz DEFAULT 'infinity')
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF received_before IS NULL THEN
        RAISE EXCEPTION 'received_before must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN webhook._delete_events(workflow, received_before);
END
$$;
COMMENT ON FUNCTION webhook_delete_events(uuid, timestamptz) IS
    'Deletes the workflow''s events received before the given time (all by default); returns how many';

-- ---------------------------------------------------------------------------
-- Events read by applications
-- ---------------------------------------------------------------------------

-- A queued workflow's events are read by applications instead of run by its
-- handler: webhook_read hides up to qty due events for the visibility timeout
-- and records the attempt, webhook_ack finishes one, webhook_nack fails it
-- (retried by the workflow's retry policy, or dead after its last attempt);
-- an event not acked or nacked in time is read again, or goes dead if that
-- was its last attempt. Events stored meanwhile are announced on the
-- webhook_events channel whatever webhook.notify says. The writes run in
-- src/queue.rs, after the workflow or event is found as the caller.
CREATE FUNCTION webhook_set_queue(workflow uuid, enabled boolean DEFAULT true)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    w := webhook._workflow(workflow, true);
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF enabled AND w.response_method = 'workflow' THEN
        RAISE EXCEPTION 'a workflow that answers with its handler''s result cannot have its events read by applications'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('webhook_set_response(%L, ''default'') first.', workflow);
    END IF;
    UPDATE webhook.workflows x SET queued = webhook_set_queue.enabled WHERE x.id = workflow RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION webhook_set_queue(uuid, boolean) IS
    'Whether applications read the workflow''s events (webhook_read, webhook_ack, webhook_nack) instead of its handler running them';

CREATE FUNCTION webhook_read(workflow uuid, qty integer DEFAULT 1,
                             visibility_timeout interval DEFAULT '30 seconds')
RETURNS SETOF webhook.events
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
    ids bigint[];
BEGIN
    w := webhook._workflow(workflow);
    IF NOT w.queued THEN
        RAISE EXCEPTION 'workflow % is not read by applications: its handler runs its events', workflow
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('webhook_set_queue(%L) makes applications read its events.', workflow);
    END IF;
    IF qty IS NULL OR qty NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'qty must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF visibility_timeout IS NULL OR visibility_timeout <= interval '0'
       OR visibility_timeout > interval '12 hours' THEN
        RAISE EXCEPTION 'visibility_timeout must be positive and at most 12 hours'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ids := webhook._read_events(workflow, qty, extract(epoch FROM visibility_timeout)::float8);
    RETURN QUERY SELECT * FROM webhook.events e WHERE e.id = ANY (ids) ORDER BY e.id;
END
$$;
COMMENT ON FUNCTION webhook_read(uuid, integer, interval) IS
    'Up to qty due events of a queued workflow, hidden from other readers for the visibility timeout; each read is an attempt';

CREATE FUNCTION webhook_ack(event bigint, attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF event IS NULL THEN
        RAISE EXCEPTION 'event must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN webhook._finish_event(event, true, NULL, NULL, attempt);
END
$$;
COMMENT ON FUNCTION webhook_ack(bigint, integer) IS
    'Finishes a read event: succeeded; false when no read of it (of that attempt, if given) is in flight';

CREATE FUNCTION webhook_nack(event bigint, delay interval DEFAULT NULL, error text DEFAULT NULL,
                             attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF event IS NULL THEN
        RAISE EXCEPTION 'event must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF delay < interval '0' THEN
        RAISE EXCEPTION 'delay must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN webhook._finish_event(event, false, extract(epoch FROM delay)::float8, error, attempt);
END
$$;
COMMENT ON FUNCTION webhook_nack(bigint, interval, text, integer) IS
    'Fails a read event: read again after delay (NULL: the retry policy''s backoff), or dead after its last attempt; false when no read of it (of that attempt, if given) is in flight within its visibility timeout';

-- Workflows belong to a role OID. After DROP ROLE their owner is gone: they
-- stay in the table, unreachable over HTTP (404) and invisible to every
-- tenant, until a superuser hands them to another role with this function
-- (or drops them). Like REASSIGN OWNED, for superusers.
CREATE FUNCTION webhook_reassign_workflows(from_role regrole, to_role regrole)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
    rt regtype;
BEGIN
    IF from_role IS NULL OR to_role IS NULL THEN
        RAISE EXCEPTION 'roles must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = current_user AND r.rolsuper) THEN
        RAISE EXCEPTION 'permission denied to reassign workflows'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Only a superuser may hand workflows to another role.';
    END IF;
    -- Their record types go with them (a record type belongs to its
    -- workflow's owner), whoever owns them now (REASSIGN OWNED may have moved
    -- them already); one that was dropped is no longer the workflow's.
    UPDATE webhook.workflows w SET record_type = NULL
     WHERE w.owner = from_role AND w.record_type IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_type t WHERE t.oid = w.record_type);
    FOR rt IN
        SELECT DISTINCT w.record_type FROM webhook.workflows w
          JOIN pg_catalog.pg_type t ON t.oid = w.record_type
         WHERE w.owner = from_role AND t.typowner <> to_role::oid
    LOOP
        EXECUTE format('ALTER TYPE %s OWNER TO %s', rt, to_role);
    END LOOP;
    UPDATE webhook.workflows w SET owner = to_role WHERE w.owner = from_role;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION webhook_reassign_workflows(regrole, regrole) IS
    'Hands every workflow of one role (also one already dropped, by OID) to another; superusers only';

-- ---------------------------------------------------------------------------
-- Privileges and search_path of every function, set by one function that the
-- install script and every update script (sql/upgrade/) call last, so that no
-- version can leave a function of the extension unsecured.
-- ---------------------------------------------------------------------------
CREATE FUNCTION webhook._secure_functions()
RETURNS void
LANGUAGE plpgsql
-- Update scripts run with the extension's schema on the path, where a tenant
-- may have planted an overload of format() or of `=`.
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f regprocedure;
BEGIN
    -- The management API is for webhook_admin members (and superusers).
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = '@extschema@'::regnamespace AND p.proname LIKE 'webhook\_%'
            OR p.pronamespace = 'webhook'::regnamespace
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO webhook_admin', f);
    END LOOP;
    -- Only the _config_changed trigger (as the extension's owner) calls them.
    REVOKE EXECUTE ON FUNCTION webhook._signal_config_change(pg_catalog.oid) FROM webhook_admin;
    REVOKE EXECUTE ON FUNCTION webhook._pace_config_change() FROM webhook_admin;
    -- CREATE TRIGGER needs EXECUTE on the function: nobody may attach this
    -- SECURITY DEFINER trigger function to a table of their own.
    REVOKE EXECUTE ON FUNCTION webhook._config_changed() FROM webhook_admin;
    -- Only the extension's scripts run this.
    REVOKE EXECUTE ON FUNCTION webhook._secure_functions() FROM webhook_admin;

    -- Every function of the extension runs with search_path pinned: a
    -- superuser (or the listener) calling them must not resolve a function or
    -- operator that a tenant created in a schema on the caller's path. Their
    -- bodies name the extension's own objects with the schema `webhook.`
    -- prefix.
    FOR f IN
        SELECT d.objid::regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND p.pronamespace IN ('webhook'::pg_catalog.regnamespace, '@extschema@'::pg_catalog.regnamespace)
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'webhook_ext')
           AND d.deptype = 'e'
           -- inlined into the caller's query: qualified throughout instead
           AND d.objid <> '@extschema@.webhook_find_workflow(text)'::pg_catalog.regprocedure
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
    END LOOP;
END
$$;
SELECT webhook._secure_functions();

-- The API functions are called by name: a role that may CREATE in their
-- schema can plant an overload (webhook_url(text), …) that a superuser's call
-- with an untyped literal resolves to. Say so when that is the case.
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_catalog.pg_namespace n
         CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
          LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
         WHERE n.oid = '@extschema@'::pg_catalog.regnamespace
           AND a.privilege_type = 'CREATE'
           AND (a.grantee = 0
                OR (r.rolname = 'pg_database_owner'
                    AND NOT (SELECT o.rolsuper FROM pg_catalog.pg_database d
                               JOIN pg_catalog.pg_roles o ON o.oid = d.datdba
                              WHERE d.datname = pg_catalog.current_database()))
                OR (r.rolname <> 'pg_database_owner' AND NOT r.rolsuper))) THEN
        RAISE WARNING 'roles that are not superusers may create objects in schema %, which holds the webhook_* functions',
                      '@extschema@'
            USING DETAIL = 'Such a role can plant an overload of an API function that a superuser''s call resolves to.',
                  HINT = 'Revoke CREATE on that schema from them, or install the extension into a schema of its own: '
                      || 'CREATE EXTENSION webhook_ext SCHEMA webhook_api.';
    END IF;
END
$$;

-- Tell the DBA when nothing will listen. WARNING, not NOTICE: PostgreSQL
-- raises client_min_messages to WARNING while an extension script runs, so a
-- NOTICE would never be seen.
DO $$
DECLARE
    cfg jsonb := webhook._listener_config();
BEGIN
    IF NOT (cfg->>'preloaded')::boolean THEN
        RAISE WARNING 'webhook_ext listener is not running'
            USING DETAIL = 'The SQL API works, but no HTTP requests are received.',
                  HINT = 'Add webhook_ext to shared_preload_libraries in postgresql.conf and restart PostgreSQL.';
    ELSIF cfg->>'database' <> current_database() THEN
        RAISE WARNING 'webhook_ext listener serves database "%", not "%"', cfg->>'database', current_database()
            USING HINT = format('Set webhook.database = %L and restart PostgreSQL to receive webhooks here.',
                                current_database());
    END IF;
END
$$;
