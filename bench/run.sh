#!/usr/bin/env bash
# One-command benchmark: webhook_ext vs pgbench doing the same SQL work.
#
# Starts its own cluster and POSTs a ~300-byte JSON to a workflow whose
# handler inserts one row, at 1, 16 and 64 connections (bench/loadgen: closed
# loop, keep-alive, exact counts). Handlers run in executors after the
# acknowledgement, so each run reports:
#
# * ack/s: acknowledgements of the default response per second, against
#   pgbench inserting the event row (the listener's whole SQL work), and the
#   ratio;
# * done/s: handler completions per second (from the first event received to
#   the last handler committed, backlog included), against pgbench inserting
#   the event and the handler's row in one transaction, and the ratio;
# * lag p50/p99: from the event's receipt to its handler's commit
#   (track_commit_timestamp of the handler's row);
# * the largest private memory (RssAnon) of a listener and of an executor;
# * rows == 2xx: events stored and handler rows written equal the 2xx count.
#
# Then `workflow`-method requests at 16 connections (the caller waits for the
# handler's result from its executor): requests/s, p50 and p99.
#
#   SECONDS_PER_RUN (default 10)  CLIENTS (default "1 16 64")  WORKERS (default 1)
#   ROUNDS (default 3): rounds per connection count; each figure is reported
#   per round and as the median of the rounds
#
# One listener process by default: on a 2-core machine its main thread, its
# network thread, the executors and the load generator already share the
# cores, and one listener makes batches twice as large as two would (fewer
# commits and flushes): 16 connections went from about 7,400 to 9,000 ack/s,
# 64 stayed the same, and the `workflow` p99 at 16 went from about 8 to 6-7 ms
# (bench/README.md).
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-"1 16 64"}
WORKERS=${WORKERS:-1}
PG_PORT=${BENCH_PG_PORT:-5499}
HTTP_PORT=${BENCH_HTTP_PORT:-8799}
DATA="$REPO_ROOT/target/bench-data"
OUT="$REPO_ROOT/bench/results"
mkdir -p "$OUT"

ensure_toolchain
install_extension
build_loadgen

start_fresh_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = $WORKERS
shared_buffers = '512MB'
max_connections = 200
track_commit_timestamp = on"

psql_b() { bench_psql "$@"; }
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
CREATE FUNCTION bench_handler_result(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_orders VALUES (e.id, e.params->>'order_id', (e.params->>'amount')::numeric,
                                     e.params #>> '{customer,email}');
    RETURN jsonb_build_object('accepted', e.params->>'order_id');
END
$$;
SELECT id FROM webhook_create_workflow('bench-workflow', 'bench_handler_result');
SELECT webhook_set_response(id, 'workflow') FROM webhook.workflows WHERE name = 'bench-workflow';
SQL
WF=$(psql_b -At -c "SELECT id FROM webhook.workflows WHERE name = 'bench'")
URL="http://127.0.0.1:$HTTP_PORT/hooks/$WF"
WF_RESULT=$(psql_b -At -c "SELECT id FROM webhook.workflows WHERE name = 'bench-workflow'")
URL_RESULT="http://127.0.0.1:$HTTP_PORT/hooks/$WF_RESULT"
BODY="$OUT/body.json"
printf '%s' '{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}' > "$BODY"
say "payload: $(wc -c < "$BODY") bytes"

# The same SQL work per transaction: the event row the listener writes (with
# the request's params, headers and body), and with it the handler's row.
PGB_ACK="$OUT/pgbench-event.sql"
PGB_DONE="$OUT/pgbench-event-and-handler.sql"
BODY_SQL=$(sed "s/'/''/g" "$BODY")
EVENT_INSERT="INSERT INTO webhook.events (workflow_id, received_at, method, query, headers, params, body, status, response, origin, remote_addr, handled_at, next_attempt_at, listener_pid)
  VALUES ('$WF', now(), 'POST', '{}', '{\"host\":\"127.0.0.1:$HTTP_PORT\",\"content-type\":\"application/json\",\"content-length\":\"300\"}',
          '$BODY_SQL', '$BODY_SQL', 'succeeded',
          '{\"status\":200,\"headers\":{\"content-type\":\"application/json\"},\"body\":{\"msg\":\"success\"}}', 'http', '127.0.0.1', now(), NULL, 1)"
printf '%s;\n' "$EVENT_INSERT" > "$PGB_ACK"
cat > "$PGB_DONE" <<SQL
WITH e AS ($EVENT_INSERT
  RETURNING id, params)
INSERT INTO bench_orders SELECT id, params->>'order_id', (params->>'amount')::numeric, params #>> '{customer,email}' FROM e;
SQL

pids_of() { psql_b -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext $1'"; }
# Largest private memory (RssAnon, MB) of a listener or of an executor now.
max_anon_mb() { local max=0 kb; for pid in $(pids_of "$1"); do
    kb=$(awk '$1 == "RssAnon:" {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$max" ] && max=${kb:-0}; done; echo $(( max / 1024 )); }
last_event() { psql_b -At -c "SELECT COALESCE(max(id), 0) FROM webhook.events"; }
pgbench_tps() { as_postgres "$PG_BIN/pgbench" -n -h "$DATA" -p "$PG_PORT" -U postgres -M prepared -c "$1" \
    -j "$(( $1 < 2 ? 1 : 2 ))" -T "$SECONDS_PER_RUN" -f "$2" postgres 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'; }
field() { python3 -c "import json,sys; print('%.${2:-0}f' % json.load(sys.stdin)['$1'])"; }
# Waits until the events after $1 are all handled (at most 120 s).
drain() { for _ in $(seq 1200); do
    [ "$(psql_b -At -c "SELECT count(*) FROM webhook.events WHERE id > $1 AND status <> 'succeeded'")" = 0 ] && return
    sleep 0.1; done; }

say "warm-up"
"$LOADGEN" "$URL" 16 2 "$BODY" >/dev/null
drain 0

RESULTS="$OUT/results-$(date +%Y%m%d-%H%M%S).txt"
ROUND_LINE='%-7s %5s %8s %8s %6s %7s %8s %8s %6s %8s %8s %7s %7s %8s\n'
SUMMARY_LINE='%-7s %8s %8s %-16s %7s %8s %8s %-16s %8s %8s %7s %7s\n'
# One round: our run (drained), then pgbench's two runs right after it, so
# that each ratio compares runs seconds apart: this machine's speed drifts by
# up to a fifth within minutes, for pgbench as much as for us.
echo "rounds ($ROUNDS per connection count, $SECONDS_PER_RUN s each run)" | tee "$RESULTS"
printf "$ROUND_LINE" clients round ack/s pgb_ins ratio p99_ms done/s pgb_both ratio lag_p50 lag_p99 lis_MB exe_MB 2xx=rows | tee -a "$RESULTS"
all_equal=1
SUMMARY=""
for c in $CLIENTS; do
    rounds_file=$(mktemp)
    for r in $(seq "$ROUNDS"); do
        before=$(last_event)
        json=$("$LOADGEN" "$URL" "$c" "$SECONDS_PER_RUN" "$BODY")
        lis_mb=$(max_anon_mb listener); exe_mb=$(max_anon_mb executor)
        drain "$before"
        ok=$(echo "$json" | field ok); rps=$(echo "$json" | field rps); p99=$(echo "$json" | field p99_ms 2)
        IFS='|' read -r events handled done_rps lag50 lag99 < <(psql_b -At -c "
          WITH e AS (SELECT id, received_at, handled_at FROM webhook.events WHERE id > $before),
               h AS (SELECT e.received_at, pg_xact_commit_timestamp(o.xmin) AS committed
                       FROM e JOIN bench_orders o ON o.event_id = e.id)
          SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM h),
                 round((SELECT count(*) FROM e) / extract(epoch FROM (SELECT max(handled_at) - min(received_at) FROM e))),
                 round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY committed - received_at)))::numeric(10,1),
                 round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY committed - received_at)))::numeric(10,1)
            FROM h")
        rows="NO:$events/$handled"
        if [ "$events" -eq "$ok" ] && [ "$handled" -eq "$ok" ]; then rows=yes; else all_equal=0; fi
        tps_ack=$(pgbench_tps "$c" "$PGB_ACK"); tps_done=$(pgbench_tps "$c" "$PGB_DONE")
        ratio_ack=$(python3 -c "print('%.2f' % ($rps / max($tps_ack, 1)))")
        ratio_done=$(python3 -c "print('%.2f' % ($done_rps / max($tps_done, 1)))")
        printf "$ROUND_LINE" "$c" "$r" "$rps" "$tps_ack" "$ratio_ack" "$p99" "$done_rps" "$tps_done" "$ratio_done" \
            "$lag50" "$lag99" "$lis_mb" "$exe_mb" "$rows" | tee -a "$RESULTS"
        echo "$rps $tps_ack $ratio_ack $p99 $done_rps $tps_done $ratio_done $lag50 $lag99 $lis_mb $exe_mb" >> "$rounds_file"
    done
    # Per connection count: medians of the rounds (ratios: the median of
    # the rounds' own ratios, with their range), the worst lag p99 and the
    # largest memory.
    IFS='|' read -r -a summary < <(python3 - "$rounds_file" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
col = lambda i: [row[i] for row in rows]
med = lambda i: statistics.median(col(i))
ratio = lambda i: "%.2f (%.2f-%.2f)" % (med(i), min(col(i)), max(col(i)))
print("|".join(["%.0f" % med(0), "%.0f" % med(1), ratio(2), "%.2f" % med(3),
                "%.0f" % med(4), "%.0f" % med(5), ratio(6), "%.1f" % med(7),
                "%.1f" % max(col(8)), "%.0f" % max(col(9)), "%.0f" % max(col(10))]))
PY
)
    SUMMARY+=$(printf "$SUMMARY_LINE" "$c" "${summary[@]}")$'\n'
    rm -f "$rounds_file"
done
echo | tee -a "$RESULTS"
echo "medians of $ROUNDS rounds (ratio: median of the rounds' ratios, with their range; lag p99: the worst round)" | tee -a "$RESULTS"
printf "$SUMMARY_LINE" clients ack/s pgb_ins ratio p99_ms done/s pgb_both ratio lag_p50 lag_p99 lis_MB exe_MB | tee -a "$RESULTS"
printf '%s' "$SUMMARY" | tee -a "$RESULTS"
before=$(last_event)
json=$("$LOADGEN" "$URL_RESULT" 16 "$SECONDS_PER_RUN" "$BODY")
drain "$before"
ok=$(echo "$json" | field ok)
events=$(psql_b -At -c "SELECT count(*) FROM webhook.events WHERE id > $before AND status = 'succeeded'")
[ "$events" -eq "$ok" ] || all_equal=0
echo "workflow method, 16 connections: $(echo "$json" | field rps) req/s, p50 $(echo "$json" | field p50_ms 2) ms, p99 $(echo "$json" | field p99_ms 2) ms, $ok 2xx, $events events" | tee -a "$RESULTS"
if [ "$all_equal" -eq 1 ]; then echo "rows == 2xx in every run" | tee -a "$RESULTS"; else echo "MISMATCH: rows != 2xx" | tee -a "$RESULTS"; fi
say "results in $RESULTS; stopping the benchmark cluster"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null
