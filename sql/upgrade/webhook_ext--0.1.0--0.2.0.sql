-- webhook_ext 0.1.0 → 0.2.0 (ALTER EXTENSION webhook_ext UPDATE).
--
-- Every change to tables, functions, grants or settings made after 0.1.0
-- goes here, in the order it was made, so that an installation updated from
-- 0.1.0 ends with the same catalog as a fresh CREATE EXTENSION at 0.2.0
-- (tests/e2e/test_upgrade.py compares the two). The 0.1.0 install script is
-- frozen in sql/versions/webhook_ext--0.1.0.sql and never edited.
\echo Use "ALTER EXTENSION webhook_ext UPDATE" to load this file. \quit

-- The securing of every function (privileges, pinned search_path) is one
-- function, which this and every later update script call last
-- (sql/api.sql has its definition).
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

-- A verification restored from a dump keeps its updated_at (0.1.0 set it to
-- the time of the restore).
CREATE OR REPLACE FUNCTION webhook._verifications_check()
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

-- An attempt cut short by a crash restart is recorded after it, as 'crashed'
-- (src/execution/running_file.rs).
ALTER TABLE webhook.attempts
    DROP CONSTRAINT attempts_outcome_check,
    ADD CONSTRAINT attempts_outcome_check
        CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'crashed'));

-- A queue with churn: every event is inserted, updated once or more, and
-- deleted by retention, at up to the rate the listeners store them. Vacuum
-- must free the space as fast as retention empties it, or the tables grow
-- however much retention deletes (bench/README.md, history.sh): so their
-- autovacuum runs unthrottled, after 5 % of their rows changed.
ALTER TABLE webhook.events SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                                autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE webhook.attempts SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                                  autovacuum_analyze_scale_factor = 0.05);

-- Retention of finished events: per-workflow overrides of the server's
-- webhook.retain_succeeded and webhook.retain_dead, and a bound on the
-- number of events a workflow keeps.
ALTER TABLE webhook.workflows
    ADD COLUMN retain_succeeded interval,
    ADD COLUMN retain_dead interval,
    ADD COLUMN max_events bigint,
    ADD CONSTRAINT workflows_retention_check
        CHECK (retain_succeeded > interval '0' AND retain_succeeded <= interval '1000 years'
               AND retain_dead > interval '0' AND retain_dead <= interval '1000 years'),
    ADD CONSTRAINT workflows_max_events_check CHECK (max_events BETWEEN 1 AND 1000000);
GRANT UPDATE (retain_succeeded, retain_dead, max_events) ON webhook.workflows TO webhook_admin;

-- Retention: how long the workflow's finished events are kept, succeeded and
-- dead ones apart, from when their last attempt ended (NULL: the server's
-- webhook.retain_succeeded and webhook.retain_dead), and how many events it
-- keeps at most (NULL: no bound; past it, its oldest finished events go
-- whatever their age). What is past either is deleted, with its attempts,
-- a bounded number at a time by the retention process. Pending and failed
-- events are never removed by retention.
CREATE FUNCTION @extschema@.webhook_set_retention(workflow uuid, succeeded interval, dead interval,
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
COMMENT ON FUNCTION @extschema@.webhook_set_retention(uuid, interval, interval, bigint) IS
    'How long the workflow''s succeeded and dead events are kept after their last attempt (NULL: webhook.retain_succeeded, webhook.retain_dead), and how many events it keeps at most (NULL: no bound; its oldest finished events go past it); pending and failed events are never removed';

-- Statistics per workflow: counters that outlive retention, and the view
-- that sums them with the queue and the recent handler times.
-- Counts per workflow that no table row keeps once retention deleted it:
-- requests accepted (an event stored) and redelivered (answered from an
-- earlier event), and handler outcomes (attempts that did not succeed,
-- events that succeeded, events that went dead). One row per workflow and
-- writer, the PostgreSQL process number (PGPROC) of the process that
-- counted, so that no two running processes ever update the same row: a
-- listener adds its requests once a second and when it stops; whoever
-- records attempts (an executor, a listener, a webhook_trigger session)
-- adds their outcomes in the same statement. Rows are summed by
-- webhook.workflow_stats. No foreign key to webhook.workflows: its check
-- would lock the workflow's row from inside an executor's batch, which
-- deadlocks with a deletion of the workflow waiting for that batch's
-- events; the rows of a deleted workflow go a minute later
-- (src/ingest/listener_main.rs).
CREATE TABLE webhook.workflow_counters (
    workflow_id     uuid        NOT NULL,
    writer          integer     NOT NULL,
    accepted        bigint      NOT NULL DEFAULT 0,
    redelivered     bigint      NOT NULL DEFAULT 0,
    succeeded       bigint      NOT NULL DEFAULT 0,
    failed_attempts bigint      NOT NULL DEFAULT 0,
    dead            bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, writer)
);
COMMENT ON TABLE webhook.workflow_counters IS
    'Requests accepted and redelivered, and handler outcomes, per workflow (summed by webhook.workflow_stats)';
SELECT pg_catalog.pg_extension_config_dump('webhook.workflow_counters', '');
ALTER TABLE webhook.workflow_counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_counters_owner ON webhook.workflow_counters
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = workflow_counters.workflow_id));
GRANT SELECT ON webhook.workflow_counters TO webhook_admin;

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

-- webhook_processes(): the executors a caller may see are chosen by
-- webhook._processes() itself (a webhook_admin member may call it
-- directly), and it says since when each process is in its state (a new
-- column, so the function is made again).
DROP FUNCTION @extschema@.webhook_processes();
-- The listener and executor processes running now. Listeners are shown to
-- every caller; an executor only to members of the role whose handlers it
-- runs (as its events are). since says when each entered its state (a
-- listener: when it started); settings_loaded_at when each last read the
-- configuration: after pg_reload_conf(), a setting is in effect everywhere
-- once every row is later than the reload.
CREATE FUNCTION @extschema@.webhook_processes()
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
COMMENT ON FUNCTION @extschema@.webhook_processes() IS
    'The listener and executor processes running now: what each does, since when, and when it last read the configuration (executors only of roles the caller is a member of)';

-- Events read by applications: the workflow setting, the functions, and
-- webhook_set_response refusing the workflow method for a queued workflow.
ALTER TABLE webhook.workflows
    ADD COLUMN queued boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT workflows_queue_check CHECK (NOT (queued AND response_method = 'workflow'));
GRANT UPDATE (queued) ON webhook.workflows TO webhook_admin;

CREATE FUNCTION webhook."_finish_event"(
	"event" bigint,
	"ok" bool,
	"delay_s" double precision,
	"error" TEXT,
	"attempt" INT
) RETURNS bool
VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', '_finish_event_wrapper';
CREATE FUNCTION webhook."_read_events"(
	"workflow" uuid,
	"qty" INT,
	"visibility_s" double precision
) RETURNS bigint[]
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', '_read_events_wrapper';

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
CREATE FUNCTION @extschema@.webhook_set_queue(workflow uuid, enabled boolean DEFAULT true)
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
COMMENT ON FUNCTION @extschema@.webhook_set_queue(uuid, boolean) IS
    'Whether applications read the workflow''s events (webhook_read, webhook_ack, webhook_nack) instead of its handler running them';

CREATE FUNCTION @extschema@.webhook_read(workflow uuid, qty integer DEFAULT 1,
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
COMMENT ON FUNCTION @extschema@.webhook_read(uuid, integer, interval) IS
    'Up to qty due events of a queued workflow, hidden from other readers for the visibility timeout; each read is an attempt';

CREATE FUNCTION @extschema@.webhook_ack(event bigint, attempt integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF event IS NULL THEN
        RAISE EXCEPTION 'event must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN webhook._finish_event(event, true, NULL, NULL, attempt);
END
$$;
COMMENT ON FUNCTION @extschema@.webhook_ack(bigint, integer) IS
    'Finishes a read event: succeeded; false when no read of it (of that attempt, if given) is in flight';

CREATE FUNCTION @extschema@.webhook_nack(event bigint, delay interval DEFAULT NULL, error text DEFAULT NULL,
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
COMMENT ON FUNCTION @extschema@.webhook_nack(bigint, interval, text, integer) IS
    'Fails a read event: read again after delay (NULL: the retry policy''s backoff), or dead after its last attempt; false when no read of it (of that attempt, if given) is in flight within its visibility timeout';

CREATE OR REPLACE FUNCTION @extschema@.webhook_set_response(
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

-- Typed records: a composite type per workflow kept to its parameter list
-- (webhook_set_record_type), handlers that take it, webhook_params; a
-- re-sample now updates the parameters it keeps in place, and the parameter
-- functions bring the record type up to date.
ALTER TABLE webhook.workflows ADD COLUMN record_type regtype;
GRANT UPDATE (record_type) ON webhook.workflows TO webhook_admin;

CREATE OR REPLACE VIEW webhook.workflow_overview WITH (security_invoker = true) AS
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

DROP FUNCTION webhook._check_handler(regproc, regrole);
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

CREATE OR REPLACE FUNCTION webhook._workflows_before_write()
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

DROP FUNCTION webhook._replace_parameters(uuid, text, jsonb);
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

CREATE FUNCTION webhook."_record_attributes_of"(
	"names" TEXT[],
	"sources" TEXT[],
	"types" TEXT[]
) RETURNS TABLE (
	"name" TEXT, 
	"attribute" TEXT, 
	"type" TEXT 
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', '_record_attributes_of_wrapper';
CREATE FUNCTION webhook."_create_record_type"(
	"workflow" uuid,
	"schema" TEXT,
	"name" TEXT
) RETURNS oid
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', '_create_record_type_wrapper';
CREATE FUNCTION webhook."_sync_record_type"(
	"workflow" uuid
) RETURNS void
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', '_sync_record_type_wrapper';

CREATE OR REPLACE FUNCTION @extschema@.webhook_add_parameter(workflow uuid, name text, source text DEFAULT 'body',
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

CREATE OR REPLACE FUNCTION @extschema@.webhook_drop_parameter(workflow uuid, name text, source text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION @extschema@.webhook_alter_parameter(workflow uuid, name text, type text DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION @extschema@.webhook_set_full_body(workflow uuid, enabled boolean, param_name text DEFAULT 'body')
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

CREATE FUNCTION @extschema@.webhook_set_record_type(workflow uuid, type_name text)
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
COMMENT ON FUNCTION @extschema@.webhook_set_record_type(uuid, text) IS
    'Creates a composite type with one attribute per top-level parameter and keeps it to the parameter list';

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

CREATE FUNCTION @extschema@.webhook_params(event webhook.events, as_type anyelement)
RETURNS anyelement
LANGUAGE sql STABLE AS $$
    SELECT webhook._event_params($1, $2)
$$;
COMMENT ON FUNCTION @extschema@.webhook_params(webhook.events, anyelement) IS
    'The event''s parameters as the given record type, e.g. webhook_params(e, NULL::public.orders_hook)';

CREATE OR REPLACE FUNCTION @extschema@.webhook_reassign_workflows(from_role regrole, to_role regrole)
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

SELECT webhook._secure_functions();
