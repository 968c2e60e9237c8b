#!/usr/bin/env bash
# Another tenant's throughput while one tenant changes its own workflow as
# fast as it can.
#
# Starts its own cluster (one listener process) with two tenant roles: alice
# has a workflow whose handler inserts a row; mallory commits
#   UPDATE webhook.workflows SET enabled = true WHERE id = <her workflow>
# in a loop (pgbench, one connection, one statement per transaction). Each
# round runs bench/loadgen against alice's workflow twice, alternating which
# goes first: once quiet, once while mallory's loop runs. Prints every round,
# the medians of alice's acknowledgements per second and p99, and the
# commits per second of mallory's loop.
#
#   SECONDS_PER_RUN (default 5)  ROUNDS (default 5)  CLIENTS (default 16)
#   PACE: webhook.max_config_changes_per_second (default: the server's, 50;
#     100000 lets the loop commit as fast as it can)
#   CHURN=table: mallory's loop updates a row of her own table instead, the
#     same commits without touching any workflow (what the commits alone cost)
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-16}
CHURN=${CHURN:-workflow}
PACE_SETTING=""
[ -z "${PACE:-}" ] || PACE_SETTING="webhook.max_config_changes_per_second = $PACE"
PG_PORT=${BENCH_PG_PORT:-5497}
HTTP_PORT=${BENCH_HTTP_PORT:-8797}
DATA="$REPO_ROOT/target/reload-data"
OUT="$REPO_ROOT/bench/results"
mkdir -p "$OUT"

ensure_toolchain
install_extension
build_loadgen

start_fresh_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = 1
shared_buffers = '512MB'
max_connections = 200
$PACE_SETTING"

psql_r() { bench_psql "$@"; }
psql_r <<'SQL'
CREATE EXTENSION webhook_ext;
CREATE ROLE alice LOGIN IN ROLE webhook_admin;
CREATE ROLE mallory LOGIN IN ROLE webhook_admin;
CREATE SCHEMA alice AUTHORIZATION alice;
CREATE SCHEMA mallory AUTHORIZATION mallory;
SQL
ROLE=alice psql_r <<'SQL'
CREATE TABLE alice.orders (event_id bigint, order_id text);
CREATE FUNCTION alice.handler(e webhook.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alice.orders VALUES (e.id, e.params->>'order_id');
END
$$;
SELECT FROM webhook_create_workflow('steady', 'alice.handler');
SQL
ROLE=mallory psql_r <<'SQL'
CREATE FUNCTION mallory.handler(e webhook.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE TABLE mallory.counter (n bigint);
INSERT INTO mallory.counter VALUES (0);
SELECT FROM webhook_create_workflow('churn', 'mallory.handler');
SQL
WF=$(psql_r -At -c "SELECT id FROM webhook.workflows WHERE name = 'steady'")
WF_CHURN=$(psql_r -At -c "SELECT id FROM webhook.workflows WHERE name = 'churn'")
URL="http://127.0.0.1:$HTTP_PORT/hooks/$WF"
BODY="$OUT/body.json"
printf '%s' '{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}' > "$BODY"
CHURN_SQL=$(mktemp)
if [ "$CHURN" = table ]; then
    echo "UPDATE mallory.counter SET n = n + 1;" > "$CHURN_SQL"
else
    echo "UPDATE webhook.workflows SET enabled = true WHERE id = '$WF_CHURN';" > "$CHURN_SQL"
fi
chmod 644 "$CHURN_SQL"

field() { python3 -c "import json,sys; print('%.${2:-0}f' % json.load(sys.stdin)['$1'])"; }
quiet_run() { "$LOADGEN" "$URL" "$CLIENTS" "$SECONDS_PER_RUN" "$BODY"; }
churn_run() {
    local tps_file=$1
    as_postgres "$PG_BIN/pgbench" -n -h "$DATA" -p "$PG_PORT" -U mallory -c 1 -T "$SECONDS_PER_RUN" \
        -f "$CHURN_SQL" postgres 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}' > "$tps_file" &
    local pgb=$!
    quiet_run
    wait "$pgb"
}

say "warm-up"
quiet_run >/dev/null

RESULTS="$OUT/reload-$(date +%Y%m%d-%H%M%S).txt"
{
    echo "alice's workflow at $CLIENTS connections, $SECONDS_PER_RUN s per run; mallory's loop: one UPDATE of her own $CHURN per transaction${PACE:+, webhook.max_config_changes_per_second = $PACE}"
    printf '%-6s %10s %10s %12s %12s %14s\n' round quiet_ack/s quiet_p99 churn_ack/s churn_p99 churn_commits/s
} | tee "$RESULTS"
rows=$(mktemp)
for r in $(seq "$ROUNDS"); do
    tps_file=$(mktemp)
    if [ $((r % 2)) -eq 1 ]; then
        quiet=$(quiet_run); churn=$(churn_run "$tps_file")
    else
        churn=$(churn_run "$tps_file"); quiet=$(quiet_run)
    fi
    line=$(printf '%-6s %10s %10s %12s %12s %14s' "$r" \
        "$(echo "$quiet" | field rps)" "$(echo "$quiet" | field p99_ms 2)" \
        "$(echo "$churn" | field rps)" "$(echo "$churn" | field p99_ms 2)" "$(cat "$tps_file")")
    echo "$line" | tee -a "$RESULTS"
    echo "$line" >> "$rows"
    rm -f "$tps_file"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
{
    printf '%-6s %10s %10s %12s %12s %14s\n' median \
        "$(awk '{print $2}' "$rows" | median)" "$(awk '{print $3}' "$rows" | median)" \
        "$(awk '{print $4}' "$rows" | median)" "$(awk '{print $5}' "$rows" | median)" \
        "$(awk '{print $6}' "$rows" | median)"
    sleep 2
    echo "events stored: $(psql_r -At -c "SELECT count(*) FROM webhook.events WHERE workflow_id = '$WF'"), handler rows: $(psql_r -At -c "SELECT count(*) FROM alice.orders")"
} | tee -a "$RESULTS"
rm -f "$rows" "$CHURN_SQL"
say "results in $RESULTS; stopping the cluster"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null
