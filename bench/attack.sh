#!/usr/bin/env bash
# The legitimate sender's latency while the listener is under attack. Starts
# its own cluster (one listener process, so it takes the whole attack),
# secures a workflow with the github scheme, then runs
# tests/e2e/attackkit.py against 127.0.0.1 only: first the signed sender alone
# (baseline), then the same sender during slowloris, header floods, forged
# signatures at full rate and gzip bombs. Prints and saves the p50/p99 of the
# signed requests and what every kind of traffic got.
#
# Then the heavy phase, on a cluster with the default body limit (25 MB):
# another tenant sends 24 MB `[0,0,…]` bodies, 24 MB bodies with forged
# HMAC-SHA512 signatures to a workflow with 10 secrets, and `{}` to a
# workflow with 1,000 required parameters, two connections each, while the
# signed sender goes on; reports the signed sender's p50/p99 alone and
# during the phase (goal: p99 under 50 ms).
#
#   SECONDS_PER_RUN (default 10)
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PG_PORT=${BENCH_PG_PORT:-5498}
HTTP_PORT=${BENCH_HTTP_PORT:-8798}
DATA="$REPO_ROOT/target/attack-data"
OUT="$REPO_ROOT/bench/results"
mkdir -p "$OUT"

ensure_toolchain
install_extension
start_fresh_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = 1
webhook.header_timeout = '2s'
webhook.max_body_size = '1MB'"

psql_a() { bench_psql "$@"; }
SECRET=attack-bench-secret
psql_a <<SQL
CREATE EXTENSION webhook_ext;
CREATE TABLE attack_orders (event_id bigint, order_id text);
CREATE FUNCTION attack_handler(e webhook.events) RETURNS void LANGUAGE sql
    AS \$\$ INSERT INTO attack_orders VALUES (e.id, e.params->>'order_id') \$\$;
SELECT FROM webhook_create_workflow('under-attack', 'attack_handler');
SQL
WF=$(psql_a -At -c "SELECT id FROM webhook.workflows WHERE name = 'under-attack'")
psql_a -c "SELECT webhook_set_verification('$WF', 'github', secret => '$SECRET')" >/dev/null

RESULTS="$OUT/attack-$(date +%Y%m%d-%H%M%S).json"
say "attack for ${SECONDS_PER_RUN}s (after a quiet baseline)"
python3 tests/e2e/attackkit.py --port "$HTTP_PORT" --workflow "$WF" --secret "$SECRET" \
    --seconds "$SECONDS_PER_RUN" | tee "$RESULTS"
say "stored events: $(psql_a -At -c "SELECT count(*) FROM webhook.events") (the signed ones only)"
say "results in $RESULTS"

say "heavy phase: restarting with the default body limit"
start_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = 1"
psql_a <<'SQL'
CREATE ROLE mallory LOGIN IN ROLE webhook_admin;
CREATE SCHEMA mallory AUTHORIZATION mallory;
SET ROLE mallory;
CREATE FUNCTION mallory.handler(e webhook.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT FROM webhook_create_workflow('zeros', 'mallory.handler');
SELECT FROM webhook_create_workflow('sha512', 'mallory.handler');
SELECT FROM webhook_create_workflow('required', 'mallory.handler');
SELECT webhook_set_verification(id, 'hmac', header => 'X-Signature', algorithm => 'sha512', prefix => 'sha512=',
                                secrets => ARRAY(SELECT 'secret-' || n FROM generate_series(1, 10) n))
  FROM webhook.workflows WHERE name = 'sha512';
SELECT webhook_sample_from_json(id, (SELECT jsonb_object_agg('p' || n, 'x') FROM generate_series(1, 1000) n))
  FROM webhook.workflows WHERE name = 'required';
SELECT webhook_set_required(id, ARRAY(SELECT 'p' || n FROM generate_series(1, 1000) n))
  FROM webhook.workflows WHERE name = 'required';
SQL
wf_of() { psql_a -At -c "SELECT id FROM webhook.workflows WHERE name = '$1'"; }
HEAVY_RESULTS="$OUT/attack-heavy-$(date +%Y%m%d-%H%M%S).json"
python3 tests/e2e/attackkit.py --port "$HTTP_PORT" --workflow "$WF" --secret "$SECRET" \
    --seconds "$SECONDS_PER_RUN" --heavy "$(wf_of zeros)" "$(wf_of sha512)" "$(wf_of required)" | tee "$HEAVY_RESULTS"
say "results in $HEAVY_RESULTS; stopping the cluster"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null
