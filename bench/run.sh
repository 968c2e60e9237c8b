#!/usr/bin/env bash
# One-command benchmark: webhook_ext vs pgbench doing the same SQL work.
#
# Starts its own cluster, POSTs a ~300-byte JSON to a workflow whose handler
# inserts one row, at 1, 16 and 64 connections (bench/loadgen: closed loop,
# keep-alive, exact counts), then runs pgbench with a script doing the same SQL
# per transaction (the event insert and the handler's insert) at the same
# client counts on the same cluster. Prints requests/s, p50/p99, peak RSS of
# the listener processes, rows vs 2xx, and the ratio to pgbench.
#
#   SECONDS_PER_RUN (default 10)  CLIENTS (default "1 16 64")  WORKERS (default 2)
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-"1 16 64"}
WORKERS=${WORKERS:-2}
PG_PORT=${BENCH_PG_PORT:-5499}
HTTP_PORT=${BENCH_HTTP_PORT:-8799}
DATA="$REPO_ROOT/target/bench-data"
OUT="$REPO_ROOT/bench/results"
mkdir -p "$OUT"

ensure_toolchain
install_extension
say "building the load generator"
cargo build --release -q -p loadgen
LOADGEN="$REPO_ROOT/target/release/loadgen"

if [ -d "$DATA" ]; then as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DATA"; fi
start_cluster "$DATA" "$PG_PORT" "$HTTP_PORT"
cat >> "$DATA/webhook_ext.conf" <<CONF
webhook.workers = $WORKERS
shared_buffers = '512MB'
max_connections = 200
CONF
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -m fast restart >/dev/null

psql_b() { as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PG_PORT" -U postgres -d postgres "$@"; }
psql_b <<'SQL'
CREATE EXTENSION webhook_ext;
CREATE TABLE bench_orders (event_id bigint, order_id text, amount numeric, email text);
-- PL/pgSQL caches the INSERT's plan across calls (a LANGUAGE sql function
-- is planned again on every call).
CREATE FUNCTION bench_handler(e webhook.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_orders VALUES (e.id, e.params->>'order_id', (e.params->>'amount')::numeric,
                                     e.params #>> '{customer,email}');
END
$$;
SELECT id FROM webhook_create_workflow('bench', 'bench_handler');
SQL
WF=$(psql_b -At -c "SELECT id FROM webhook.workflows WHERE name = 'bench'")
URL="http://127.0.0.1:$HTTP_PORT/hooks/$WF"
BODY="$OUT/body.json"
printf '%s' '{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}' > "$BODY"
say "payload: $(wc -c < "$BODY") bytes"

# The same SQL work per transaction: the event row the listener writes (with
# the request's params, headers and body) and the handler's row.
PGB="$OUT/pgbench.sql"
BODY_SQL=$(sed "s/'/''/g" "$BODY")
cat > "$PGB" <<SQL
WITH e AS (
  INSERT INTO webhook.events (workflow_id, received_at, method, query, headers, params, body, status, response, origin, remote_addr, handled_at)
  VALUES ('$WF', now(), 'POST', '{}', '{"host":"127.0.0.1:$HTTP_PORT","content-type":"application/json","content-length":"300"}',
          '$BODY_SQL', '$BODY_SQL', 'succeeded',
          '{"status":200,"headers":{"content-type":"application/json"},"body":{"msg":"success"}}', 'http', '127.0.0.1', now())
  RETURNING id, params)
INSERT INTO bench_orders SELECT id, params->>'order_id', (params->>'amount')::numeric, params #>> '{customer,email}' FROM e;
SQL

listener_pids() { psql_b -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener'"; }
# proc_kb FIELD: summed over the listener processes. VmHWM (peak RSS) counts
# the shared_buffers pages a process touched; RssAnon is its private memory.
proc_kb() { local total=0 kb; for pid in $(listener_pids); do
    kb=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0); total=$((total + ${kb:-0})); done; echo $total; }
count_rows() { psql_b -At -c "SELECT (SELECT count(*) FROM webhook.events WHERE origin = 'http'), (SELECT count(*) FROM bench_orders WHERE event_id IN (SELECT id FROM webhook.events WHERE origin = 'http'))"; }

say "warm-up"
"$LOADGEN" "$URL" 16 2 "$BODY" >/dev/null

RESULTS="$OUT/results-$(date +%Y%m%d-%H%M%S).txt"
printf '%-8s %12s %9s %9s %10s %10s %12s %12s %8s %12s %12s\n' clients webhook_rps p50_ms p99_ms 2xx events handler_rows pgbench_tps ratio peak_rss_mb anon_rss_mb | tee "$RESULTS"
all_equal=1
for c in $CLIENTS; do
    before=$(count_rows)
    json=$("$LOADGEN" "$URL" "$c" "$SECONDS_PER_RUN" "$BODY")
    sleep 0.5
    after=$(count_rows)
    ok=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ok"])')
    rps=$(echo "$json" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["rps"])')
    p50=$(echo "$json" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["p50_ms"])')
    p99=$(echo "$json" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["p99_ms"])')
    events=$(( ${after%%|*} - ${before%%|*} ))
    handler_rows=$(( ${after##*|} - ${before##*|} ))
    [ "$events" -eq "$ok" ] && [ "$handler_rows" -eq "$ok" ] || all_equal=0
    tps=$(as_postgres "$PG_BIN/pgbench" -n -h "$DATA" -p "$PG_PORT" -U postgres -M prepared -c "$c" -j "$(( c < 2 ? 1 : 2 ))" \
          -T "$SECONDS_PER_RUN" -f "$PGB" postgres 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}')
    ratio=$(python3 -c "print('%.2f' % ($rps / max($tps, 1)))")
    rss=$(( $(proc_kb VmHWM) / 1024 )); anon=$(( $(proc_kb RssAnon) / 1024 ))
    printf '%-8s %12s %9s %9s %10s %10s %12s %12s %8s %12s %12s\n' "$c" "$rps" "$p50" "$p99" "$ok" "$events" "$handler_rows" "$tps" "$ratio" "$rss" "$anon" | tee -a "$RESULTS"
done
if [ "$all_equal" -eq 1 ]; then echo "rows == 2xx in every run" | tee -a "$RESULTS"; else echo "MISMATCH: rows != 2xx" | tee -a "$RESULTS"; fi
say "results in $RESULTS; stopping the benchmark cluster"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null
