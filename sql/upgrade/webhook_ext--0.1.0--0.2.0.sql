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

-- webhook_processes(): the executors a caller may see are chosen by
-- webhook._processes() itself (a webhook_admin member may call it directly).
CREATE OR REPLACE FUNCTION @extschema@.webhook_processes()
RETURNS TABLE (pid integer, kind text, owner regrole, state text, event_id bigint,
               settings_loaded_at timestamptz)
LANGUAGE sql VOLATILE AS $$
    SELECT (p.value OPERATOR(pg_catalog.->>) 'pid')::pg_catalog.int4,
           p.value OPERATOR(pg_catalog.->>) 'kind',
           (p.value OPERATOR(pg_catalog.->>) 'owner')::pg_catalog.oid::pg_catalog.regrole,
           p.value OPERATOR(pg_catalog.->>) 'state',
           (p.value OPERATOR(pg_catalog.->>) 'event')::pg_catalog.int8,
           pg_catalog.to_timestamp(
               (p.value OPERATOR(pg_catalog.->>) 'settings_loaded_unix_ms')::pg_catalog.float8
               OPERATOR(pg_catalog./) 1000)
      FROM pg_catalog.jsonb_array_elements(webhook._processes()) p
$$;

-- An attempt cut short by a crash restart is recorded after it, as 'crashed'
-- (src/execution/running_file.rs).
ALTER TABLE webhook.attempts
    DROP CONSTRAINT attempts_outcome_check,
    ADD CONSTRAINT attempts_outcome_check
        CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'crashed'));

-- Retention of finished events: per-workflow overrides of the server's
-- webhook.retain_succeeded and webhook.retain_dead.
ALTER TABLE webhook.workflows
    ADD COLUMN retain_succeeded interval,
    ADD COLUMN retain_dead interval,
    ADD CONSTRAINT workflows_retention_check
        CHECK (retain_succeeded > interval '0' AND retain_dead > interval '0');
GRANT UPDATE (retain_succeeded, retain_dead) ON webhook.workflows TO webhook_admin;

-- Retention: how long the workflow's finished events are kept, succeeded and
-- dead ones apart, from when their last attempt ended (NULL: the server's
-- webhook.retain_succeeded and webhook.retain_dead). Older ones are deleted,
-- with their attempts, a bounded number at a time by the first listener.
-- Pending and failed events are never removed by retention.
CREATE FUNCTION @extschema@.webhook_set_retention(workflow uuid, succeeded interval, dead interval)
RETURNS webhook.workflows
LANGUAGE plpgsql AS $$
DECLARE
    w webhook.workflows;
BEGIN
    PERFORM webhook._workflow(workflow, true);
    IF succeeded <= interval '0' OR dead <= interval '0' THEN
        RAISE EXCEPTION 'retention must be a positive interval, or NULL for the server''s default'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'webhook.retain_succeeded and webhook.retain_dead are the defaults.';
    END IF;
    UPDATE webhook.workflows x
       SET retain_succeeded = succeeded, retain_dead = dead
     WHERE x.id = workflow
    RETURNING * INTO w;
    RETURN w;
END
$$;
COMMENT ON FUNCTION @extschema@.webhook_set_retention(uuid, interval, interval) IS
    'How long the workflow''s succeeded and dead events are kept after their last attempt (NULL: webhook.retain_succeeded, webhook.retain_dead); pending and failed events are never removed';

SELECT webhook._secure_functions();
