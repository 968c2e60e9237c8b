#!/usr/bin/env bash
# Sets everything up and runs webhook_ext: installs what is missing, builds and
# installs the extension, starts a private cluster with the listener, creates an
# example workflow and prints a curl that fires it. Safe to run again.
#
#   PG_PORT (default 5488)     PostgreSQL port of the private cluster
#   HTTP_PORT (default 8787)   webhook listener port
#   PGDATA_DIR (default .pgdata) data directory
source "$(dirname "$0")/common.sh"

PG_PORT=${PG_PORT:-5488}
HTTP_PORT=${HTTP_PORT:-8787}
PGDATA_DIR=${PGDATA_DIR:-$REPO_ROOT/.pgdata}

ensure_toolchain
install_extension
start_cluster "$PGDATA_DIR" "$PG_PORT" "$HTTP_PORT"

psql_run() { as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDATA_DIR" -p "$PG_PORT" -U postgres -d postgres "$@"; }

say "creating the extension and an example workflow"
psql_run <<'SQL'
CREATE EXTENSION IF NOT EXISTS webhook_ext;
CREATE TABLE IF NOT EXISTS public.example_orders (
    event_id   bigint PRIMARY KEY,
    order_id   text,
    amount     numeric,
    received   timestamptz DEFAULT now()
);
CREATE OR REPLACE FUNCTION public.example_order_handler(e webhook.events)
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO public.example_orders (event_id, order_id, amount)
    VALUES (e.id, e.params->>'order_id', (e.params->>'amount')::numeric)
    RETURNING jsonb_build_object('stored', event_id)
$$;
DO $$
DECLARE wf uuid;
BEGIN
    SELECT id INTO wf FROM webhook.workflows WHERE name = 'example-orders';
    IF wf IS NULL THEN
        SELECT id INTO wf FROM webhook_create_workflow('example-orders', 'public.example_order_handler');
        PERFORM webhook_sample_from_json(wf, '{"order_id": "A-1001", "amount": 19.99}');
        PERFORM webhook_set_required(wf, ARRAY['order_id']);
    END IF;
END
$$;
SQL
URL=$(psql_run -At -c "SELECT webhook_url(id) FROM webhook.workflows WHERE name = 'example-orders'")

cat <<MSG

webhook_ext is running.
  PostgreSQL:  psql -h $PGDATA_DIR -p $PG_PORT -U postgres postgres
  Workflow:    $URL

Fire it:
  curl -s -X POST '$URL' -H 'Content-Type: application/json' -d '{"order_id":"A-1001","amount":19.99}'

Then look at the rows (the handler runs in an executor right after the answer):
  psql -h $PGDATA_DIR -p $PG_PORT -U postgres -c 'SELECT id, status, params FROM webhook.events' -c 'SELECT * FROM example_orders' postgres

Stop the cluster:
  runuser -u postgres -- $PG_BIN/pg_ctl -D $PGDATA_DIR stop    (without runuser when not root)
MSG
