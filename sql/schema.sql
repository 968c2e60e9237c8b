-- webhook_ext: tables, roles and row-level security.
--
-- Runs first in the extension script (pgrx "bootstrap"), before the Rust
-- functions and the SQL API in api.sql.

CREATE SCHEMA IF NOT EXISTS webhook;
COMMENT ON SCHEMA webhook IS 'webhook_ext: workflows, their parameters and received events';

-- The one role a DBA grants to let a non-superuser manage its own workflows:
--   GRANT webhook_admin TO alice;
-- Roles are cluster-wide, so it may already exist from another database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'webhook_admin') THEN
        CREATE ROLE webhook_admin NOLOGIN;
    END IF;
END
$$;

-- The role a row-level-security policy compares owners with: current_user's
-- OID (a Rust function, so that it is cheap per row and usable in an index scan).
CREATE FUNCTION webhook._current_role_id() RETURNS pg_catalog.oid
    LANGUAGE c STABLE PARALLEL SAFE STRICT AS 'MODULE_PATHNAME', '_current_role_id_wrapper';

CREATE TABLE webhook.workflows (
    -- Assigned by the _workflows_before_write trigger (webhook_ext's owner and
    -- superusers may supply one, for restores): a tenant that could choose an
    -- id would learn from a duplicate-key error that another owner's exists.
    id                    uuid        PRIMARY KEY,
    name                  text        NOT NULL,
    handler               regproc     NOT NULL,
    -- A role OID, never a name: a role created later with a dropped owner's
    -- name must not inherit its workflows and events.
    owner                 regrole     NOT NULL DEFAULT webhook._current_role_id()::pg_catalog.regrole,
    enabled               boolean     NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- "full text in Body": the raw body becomes the single text parameter below.
    full_body             boolean     NOT NULL DEFAULT false,
    full_body_param       text        NOT NULL DEFAULT 'body',
    -- HTTP methods the URL answers; anything else is 405.
    allowed_methods       text[]      NOT NULL DEFAULT '{GET,POST}',
    -- Response configuration: the default, custom or workflow method (docs/http.md).
    response_method       text        NOT NULL DEFAULT 'default',
    response_status       integer     NOT NULL DEFAULT 200,
    response_content_type text,
    response_body         text,
    response_headers      jsonb       NOT NULL DEFAULT '{}',
    -- "workflow" method: deadline for the handler (NULL: the webhook.handler_timeout GUC)
    -- and the response sent when the handler fails or is late.
    response_timeout      interval,
    failure_status        integer     NOT NULL DEFAULT 500,
    failure_content_type  text,
    failure_body          text,
    -- Sample capture over HTTP: armed until capture_until, done at captured_at.
    capture_until         timestamptz,
    captured_at           timestamptz,
    -- Types guide, they don't block: only strict parameters refuse a value of
    -- another type (a parameter's own `strict` overrides this).
    strict_types          boolean     NOT NULL DEFAULT false,
    -- Where the event type is read from, for parameters required only for some
    -- event types (parameters.required_for): e.g. header x-github-event.
    discriminator_source  text,
    discriminator_name    text,
    -- Where a request's delivery key is (NULL: the first of the headers
    -- webhook-id, x-github-delivery, idempotency-key; 'none': no key), and
    -- how long a key is remembered: a redelivery within it fires nothing.
    delivery_key_source   text,
    delivery_key_name     text,
    delivery_key_window   interval    NOT NULL DEFAULT '24 hours',
    -- Retry policy (webhook_set_retry): attempts in all, and the backoff
    -- before the second one, doubling up to retry_max_delay (with jitter).
    max_attempts          integer     NOT NULL DEFAULT 5,
    retry_delay           interval    NOT NULL DEFAULT '10 seconds',
    retry_max_delay       interval    NOT NULL DEFAULT '1 hour',
    -- Run events one at a time in arrival order (webhook_set_ordered): an
    -- event waits until every earlier one succeeded or is dead.
    ordered               boolean     NOT NULL DEFAULT false,
    -- Headers stored redacted besides the credential headers every workflow
    -- redacts (authorization, cookie, x-gitlab-token, ...): lower-case names.
    redact_headers        text[]      NOT NULL DEFAULT '{}',
    -- Who may send (webhook_set_allowed_networks, webhook_set_rate_limit):
    -- the client networks requests are accepted from (NULL: any), and
    -- token-bucket limits (requests per second, burst) for the workflow as a
    -- whole and per client address (NULL: none).
    allowed_networks      cidr[],
    rate_limit            double precision,
    rate_burst            integer,
    client_rate_limit     double precision,
    client_rate_burst     integer,
    -- Storage (webhook_set_storage): bytes of events stored per
    -- webhook.storage_quota_window at most (NULL: the server's
    -- webhook.storage_quota; never more than it), and whether events keep the
    -- raw body text besides the parameters parsed from it.
    storage_quota         bigint,
    keep_body             boolean     NOT NULL DEFAULT true,
    -- The provider's endpoint check answered without the handler and without
    -- storing an event (webhook_set_handshake; NULL: none).
    handshake             text,
    -- How long finished events are kept (webhook_set_retention): succeeded
    -- ones and dead ones, counted from when their last attempt ended (NULL:
    -- the server's webhook.retain_succeeded and webhook.retain_dead). Pending
    -- and failed events are never removed by retention.
    retain_succeeded      interval,
    retain_dead           interval,
    -- At most this many events are kept: past it, retention deletes the
    -- oldest finished ones whatever their age (NULL: no such bound).
    max_events            bigint,
    -- Its events are read by applications (webhook_read, webhook_ack,
    -- webhook_nack) instead of run by its handler (webhook_set_queue).
    queued                boolean     NOT NULL DEFAULT false,
    -- The composite type the extension keeps to the parameter list
    -- (webhook_set_record_type): owned by the workflow's owner, one
    -- attribute per top-level parameter; NULL: none.
    record_type           regtype,
    CONSTRAINT workflows_retention_check
        CHECK (retain_succeeded > interval '0' AND retain_succeeded <= interval '1000 years'
               AND retain_dead > interval '0' AND retain_dead <= interval '1000 years'),
    CONSTRAINT workflows_max_events_check CHECK (max_events BETWEEN 1 AND 1000000),
    CONSTRAINT workflows_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT workflows_retry_delay_check
        CHECK (retry_delay > interval '0' AND retry_max_delay >= retry_delay
               AND retry_max_delay <= interval '30 days'),
    CONSTRAINT workflows_name_not_blank CHECK (btrim(name) <> ''),
    -- Bounded: the listener checks them for every request.
    CONSTRAINT workflows_redact_headers_check CHECK (cardinality(redact_headers) <= 100),
    CONSTRAINT workflows_allowed_networks_check
        CHECK (cardinality(allowed_networks) BETWEEN 1 AND 1000
               AND array_position(allowed_networks, NULL) IS NULL),
    -- 'NaN' and 'Infinity' compare greater than every number in PostgreSQL.
    CONSTRAINT workflows_rate_limit_check
        CHECK ((rate_limit IS NULL) = (rate_burst IS NULL)
               AND rate_limit > 0 AND rate_limit < 'Infinity' AND rate_burst >= 1),
    CONSTRAINT workflows_client_rate_limit_check
        CHECK ((client_rate_limit IS NULL) = (client_rate_burst IS NULL)
               AND client_rate_limit > 0 AND client_rate_limit < 'Infinity' AND client_rate_burst >= 1),
    CONSTRAINT workflows_storage_quota_check CHECK (storage_quota > 0),
    CONSTRAINT workflows_handshake_check
        CHECK (handshake IN ('slack', 'meta', 'msgraph', 'dropbox', 'twitch', 'zoom', 'discord')),
    CONSTRAINT workflows_owner_name_key UNIQUE (owner, name),
    CONSTRAINT workflows_response_method_check
        CHECK (response_method IN ('default', 'custom', 'workflow')),
    -- The workflow method answers with the handler's result: not when
    -- applications read the events instead (webhook_set_queue).
    CONSTRAINT workflows_queue_check CHECK (NOT (queued AND response_method = 'workflow')),
    CONSTRAINT workflows_response_status_check CHECK (response_status BETWEEN 200 AND 599),
    CONSTRAINT workflows_failure_status_check CHECK (failure_status BETWEEN 200 AND 599),
    CONSTRAINT workflows_response_headers_check
        CHECK (jsonb_typeof(response_headers) = 'object'),
    CONSTRAINT workflows_allowed_methods_check
        CHECK (allowed_methods <@ '{GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS}'
               AND cardinality(allowed_methods) > 0),
    CONSTRAINT workflows_full_body_param_check CHECK (btrim(full_body_param) <> ''),
    CONSTRAINT workflows_response_timeout_check
        CHECK (response_timeout IS NULL OR response_timeout > interval '0'),
    CONSTRAINT workflows_delivery_key_check
        CHECK (delivery_key_source IS NULL AND delivery_key_name IS NULL
               OR delivery_key_source = 'none' AND delivery_key_name IS NULL
               OR delivery_key_source IN ('header', 'body') AND btrim(delivery_key_name) <> ''),
    CONSTRAINT workflows_delivery_key_window_check CHECK (delivery_key_window > interval '0'),
    CONSTRAINT workflows_discriminator_check
        CHECK ((discriminator_source IS NULL) = (discriminator_name IS NULL)
               AND discriminator_source IN ('body', 'query', 'header')
               AND btrim(discriminator_name) <> '')
);
COMMENT ON TABLE webhook.workflows IS
    'One row per webhook URL ({base}/hooks/{id}); see webhook_create_workflow()';
CREATE INDEX workflows_owner_idx ON webhook.workflows (owner);

CREATE TABLE webhook.parameters (
    workflow_id uuid    NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    name        text    NOT NULL,
    source      text    NOT NULL,
    type        text    NOT NULL,
    sample      jsonb,
    required    boolean NOT NULL DEFAULT false,
    -- Order of the parameter in its sample; nested leaves follow their parent.
    position    integer NOT NULL,
    -- 0 for top-level keys; n for a leaf n levels down, named by its dotted path.
    depth       integer NOT NULL DEFAULT 0,
    -- NULL: the workflow's strict_types decides.
    strict      boolean,
    -- In strict mode, whether null is an acceptable value (absent and null
    -- still count as missing for a required parameter).
    nullable    boolean NOT NULL DEFAULT true,
    -- Required only for these event types (exact, or a prefix ending in '*'),
    -- read through the workflow's discriminator; NULL: for every event.
    required_for text[],
    PRIMARY KEY (workflow_id, source, name),
    CONSTRAINT parameters_source_check CHECK (source IN ('body', 'query', 'header')),
    CONSTRAINT parameters_type_check
        CHECK (type IN ('text', 'number', 'boolean', 'object', 'array', 'any')),
    CONSTRAINT parameters_name_not_blank CHECK (name <> ''),
    CONSTRAINT parameters_depth_check CHECK (depth >= 0)
);
COMMENT ON TABLE webhook.parameters IS
    'The parameter list of each workflow, derived from a sample; required ones are checked on every request';

-- A workflow's events are deleted only with webhook_delete_events() or with
-- the workflow (tenants hold no DELETE privilege: it would let them LOCK the
-- table the listener writes to).
CREATE TABLE webhook.events (
    id          bigserial   PRIMARY KEY,
    workflow_id uuid        NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    method      text        NOT NULL,
    query       jsonb       NOT NULL DEFAULT '{}',
    headers     jsonb       NOT NULL DEFAULT '{}',
    params      jsonb       NOT NULL DEFAULT '{}',
    body        text,
    -- pending (stored, the handler has not run yet) → succeeded; a failed
    -- attempt makes it failed (retried at next_attempt_at) and, after the
    -- workflow's last attempt, dead. error is the last attempt's.
    status      text        NOT NULL DEFAULT 'pending',
    error       text,
    response    jsonb,
    -- How the event arrived: 'http', 'trigger' (webhook_trigger) or 'replay'.
    origin      text        NOT NULL DEFAULT 'http',
    remote_addr inet,
    -- When the listener (or webhook_trigger/webhook_replay) processed it.
    handled_at  timestamptz,
    -- For origin 'replay': the event whose handler run this repeats.
    replay_of   bigint,
    -- The request target as received (path, and query string in its original
    -- order), for signatures computed over the URL (Twilio).
    raw_path    text,
    raw_query   text,
    -- Handler attempts so far (each one is a row of webhook.attempts), and
    -- when the next is due: NULL once the event succeeded or is dead.
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT now(),
    -- The listener process that stored it (NULL: webhook_trigger, replay).
    listener_pid    integer,
    CONSTRAINT events_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'dead')),
    CONSTRAINT events_next_attempt_check
        CHECK ((next_attempt_at IS NULL) = (status IN ('succeeded', 'dead'))),
    CONSTRAINT events_origin_check CHECK (origin IN ('http', 'trigger', 'replay'))
);
COMMENT ON TABLE webhook.events IS
    'Every accepted request, stored before the caller gets its 2xx; error is NULL unless the handler failed';
CREATE INDEX events_workflow_received_idx ON webhook.events (workflow_id, received_at);
-- The executors' queue: events whose handler still has to run.
CREATE INDEX events_due_idx ON webhook.events (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- An ordered workflow's event is due only when no earlier one is unfinished:
-- a probe of this (small) index, not of every event the workflow ever had.
CREATE INDEX events_unfinished_idx ON webhook.events (workflow_id, id)
    WHERE next_attempt_at IS NOT NULL;
-- A workflow's retries by when they are due: one probe per workflow, so the
-- listeners find every owner with a due retry however long others' queues
-- are (src/execution/pool.rs DUE_OWNERS). Only retries (an event whose first
-- attempt failed): a new event adds no entry, so it costs ingest nothing.
CREATE INDEX events_retry_due_idx ON webhook.events (workflow_id, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL AND attempts > 0;

-- Every handler attempt of every event: when, and how it ended.
CREATE TABLE webhook.attempts (
    event_id    bigint      NOT NULL REFERENCES webhook.events (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    workflow_id uuid        NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    -- succeeded, failed (an error, 'sqlstate' and 'message'), timeout (past
    -- the deadline, cancelled or, if it would not stop, its executor ended),
    -- or crashed (its executor died abruptly and the server restarted every
    -- backend; recorded after the restart).
    outcome     text        NOT NULL,
    sqlstate    text,
    message     text,
    PRIMARY KEY (event_id, attempt),
    CONSTRAINT attempts_outcome_check CHECK (outcome IN ('succeeded', 'failed', 'timeout', 'crashed'))
);
COMMENT ON TABLE webhook.attempts IS
    'Each run of a handler for an event: start, end, outcome and error';

-- A queue with churn: every event is inserted, updated once or more, and
-- deleted by retention, at up to the rate the listeners store them. Vacuum
-- must free the space as fast as retention empties it, or the tables grow
-- however much retention deletes (bench/README.md, history.sh): so their
-- autovacuum runs unthrottled, after 5 % of their rows changed.
ALTER TABLE webhook.events SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                                autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE webhook.attempts SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                                  autovacuum_analyze_scale_factor = 0.05);

-- Refused requests to a workflow (400, 404 while disabled, 405, 408, 413,
-- 415, ...), so an owner can see why a sender's deliveries fail: the last
-- webhook.rejections_kept per workflow, with at most 4 kB of each body, and a
-- count per reason that is never trimmed.
CREATE TABLE webhook.rejections (
    id          bigserial   PRIMARY KEY,
    workflow_id uuid        NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL,
    status      integer     NOT NULL,
    reason      text        NOT NULL,
    method      text        NOT NULL,
    query       jsonb       NOT NULL DEFAULT '{}',
    headers     jsonb       NOT NULL DEFAULT '{}',
    -- The first 4 kB of the body as text (not cut inside a character).
    body_prefix text,
    remote_addr inet
);
CREATE INDEX rejections_workflow_idx ON webhook.rejections (workflow_id, id);
COMMENT ON TABLE webhook.rejections IS
    'The most recent refused requests per workflow (webhook.rejections_kept), visible to its owner';

CREATE TABLE webhook.rejection_counts (
    workflow_id uuid        NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    status      integer     NOT NULL,
    reason      text        NOT NULL,
    count       bigint      NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, status, reason)
);
COMMENT ON TABLE webhook.rejection_counts IS
    'How many requests to each workflow were refused, by status and reason';

-- Provider endpoint checks answered per workflow (webhook_set_handshake),
-- and the last one: written by the listener, best effort.
CREATE TABLE webhook.handshakes (
    workflow_id uuid        PRIMARY KEY REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    kind        text        NOT NULL,
    answered    bigint      NOT NULL,
    last_at     timestamptz NOT NULL,
    last_method text        NOT NULL,
    last_query  text
);
COMMENT ON TABLE webhook.handshakes IS
    'How many provider endpoint checks each workflow answered (webhook_set_handshake), and the last one';

-- Delivery keys seen per workflow (webhook_set_delivery_key): a request
-- whose key is here, received within the workflow's window, is a redelivery
-- of event_id and gets its response; nothing new is stored.
CREATE TABLE webhook.deliveries (
    workflow_id uuid        NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    key         text        NOT NULL,
    event_id    bigint      NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, key)
);
COMMENT ON TABLE webhook.deliveries IS
    'Delivery keys (webhook-id, X-GitHub-Delivery, Idempotency-Key, ...) and the event each delivered';

-- How requests to a workflow are authenticated (webhook_set_verification):
-- the scheme ('none': not at all), its active secrets (several during a
-- rotation) and the scheme's options. Readable only by the workflow's owner
-- and superusers. No constraint here may fail, because PostgreSQL would print
-- the failing row, secrets included, in the error and the server log: the
-- _verifications_check trigger (api.sql) checks every row instead, with
-- errors that never contain a secret.
CREATE TABLE webhook.verifications (
    workflow_id uuid        NOT NULL REFERENCES webhook.workflows (id) ON DELETE CASCADE,
    -- The request method this verification is for ('GET', 'POST'), or '*':
    -- every method without its own.
    method      text        NOT NULL DEFAULT '*',
    scheme      text,
    secrets     text[],
    options     jsonb,
    updated_at  timestamptz,
    PRIMARY KEY (workflow_id, method)
);
COMMENT ON TABLE webhook.verifications IS
    'How requests to each workflow are verified (webhook_set_verification); secrets visible to the owner only';

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

-- Listeners and executors cache workflow definitions (see
-- webhook.workflow_changes below). A relcache invalidation of this table,
-- sent at commit by a TRUNCATE of workflows, parameters or verifications,
-- or by a superuser with webhook._signal_config_change, makes them reload
-- everything: nothing is locked, so no open tenant transaction can hold a
-- listener up. The random epoch tells a re-created extension apart; this row
-- is never updated.
CREATE TABLE webhook.config_version (
    epoch   uuid   NOT NULL DEFAULT gen_random_uuid(),
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO webhook.config_version DEFAULT VALUES;

-- Which workflows changed, so that listeners and executors reload just those
-- (src/pg/catalog.rs `Catalog::forget_changed`): per workflow, the last
-- transaction that wrote it, its parameters or its verification (the
-- _config_changed triggers in api.sql). A process reads the rows written
-- since the oldest transaction still running at its last look. Rows of
-- deleted workflows go an hour after a listener first finds them gone
-- (src/ingest/listener_main.rs); a process that has not looked for half an hour reloads
-- everything instead.
CREATE TABLE webhook.workflow_changes (
    workflow_id uuid        PRIMARY KEY,
    changed_xid xid8        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    -- When a listener first found the workflow gone (its deletion committed).
    gone_at     timestamptz
);
CREATE INDEX workflow_changes_xid_idx ON webhook.workflow_changes (changed_xid);
COMMENT ON TABLE webhook.workflow_changes IS
    'Internal: the last transaction that changed each workflow, for the listeners'' and executors'' caches';

-- pg_dump keeps the users' data of these extension tables.
SELECT pg_catalog.pg_extension_config_dump('webhook.workflows', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.parameters', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.events', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.rejections', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.rejections_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.rejection_counts', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.verifications', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.handshakes', '');
SELECT pg_catalog.pg_extension_config_dump('webhook.workflow_counters', '');

-- Row-level security: a role sees and changes only the workflows it owns, and
-- their parameters and events. Superusers (and so the listener) bypass it.
ALTER TABLE webhook.workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.parameters ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.rejections ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.rejection_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.verifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.handshakes ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook.workflow_counters ENABLE ROW LEVEL SECURITY;

CREATE POLICY workflows_owner ON webhook.workflows
    USING (owner::pg_catalog.oid OPERATOR(pg_catalog.=) webhook._current_role_id())
    WITH CHECK (owner::pg_catalog.oid OPERATOR(pg_catalog.=) webhook._current_role_id());
-- Correlated EXISTS (not IN): the planner turns it into an index probe on the
-- workflows primary key instead of hashing every workflow the role owns.
CREATE POLICY parameters_owner ON webhook.parameters
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = parameters.workflow_id))
    WITH CHECK (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = parameters.workflow_id));
CREATE POLICY rejections_owner ON webhook.rejections
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = rejections.workflow_id));
CREATE POLICY rejection_counts_owner ON webhook.rejection_counts
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = rejection_counts.workflow_id));
CREATE POLICY handshakes_owner ON webhook.handshakes
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = handshakes.workflow_id));
CREATE POLICY workflow_counters_owner ON webhook.workflow_counters
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = workflow_counters.workflow_id));
CREATE POLICY deliveries_owner ON webhook.deliveries
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = deliveries.workflow_id));
CREATE POLICY attempts_owner ON webhook.attempts
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = attempts.workflow_id));
CREATE POLICY verifications_owner ON webhook.verifications
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = verifications.workflow_id))
    WITH CHECK (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = verifications.workflow_id));
CREATE POLICY events_owner ON webhook.events
    USING (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = events.workflow_id))
    WITH CHECK (EXISTS (SELECT FROM webhook.workflows w WHERE w.id = events.workflow_id));

-- Tenants get no privilege that lets them LOCK a table the listener writes
-- (PostgreSQL allows LOCK ... IN ACCESS EXCLUSIVE MODE to any holder of
-- table-level UPDATE, DELETE or TRUNCATE): SELECT, INSERT (which allows only
-- ROW EXCLUSIVE, compatible with the listener's writes) and column-level
-- UPDATE. Deleting goes through webhook_drop_workflow, webhook_delete_events
-- and the parameter functions, which check ownership as the caller.
GRANT USAGE ON SCHEMA webhook TO webhook_admin;
GRANT SELECT, INSERT ON webhook.workflows, webhook.parameters TO webhook_admin;
GRANT UPDATE (name, handler, enabled, full_body, full_body_param, allowed_methods,
              response_method, response_status, response_content_type, response_body,
              response_headers, response_timeout, failure_status, failure_content_type,
              failure_body, capture_until, captured_at, updated_at, strict_types,
              discriminator_source, discriminator_name, delivery_key_source, delivery_key_name,
              delivery_key_window, max_attempts, retry_delay, retry_max_delay, ordered,
              redact_headers, allowed_networks, rate_limit, rate_burst, client_rate_limit,
              client_rate_burst, storage_quota, keep_body, handshake, retain_succeeded, retain_dead,
              max_events, queued, record_type)
    ON webhook.workflows TO webhook_admin;
GRANT SELECT, INSERT, UPDATE (scheme, secrets, options, updated_at)
    ON webhook.verifications TO webhook_admin;
GRANT UPDATE (type, sample, required, position, depth, strict, nullable, required_for)
    ON webhook.parameters TO webhook_admin;
GRANT SELECT ON webhook.events, webhook.rejections, webhook.rejection_counts, webhook.deliveries,
                webhook.attempts, webhook.handshakes, webhook.workflow_counters
    TO webhook_admin;
