#!/usr/bin/env bash
# What reading events from applications costs: events consumed per second by
# CONSUMERS (1 and 4) readers of a queued workflow with webhook_read and
# webhook_ack, reading BATCHES (1 and 100) at a time, against pgbench doing
# the same queue work on a plain table of its own (pgmq is not packaged for
# Debian 12): SELECT … FOR UPDATE SKIP LOCKED with an UPDATE that hides the
# rows, then an UPDATE that finishes each.
#
# Each reader is a pgbench client running a script: read a batch (one
# transaction, committed, as an application does before its work), then ack
# it (one transaction). Before each run the queue holds QUEUE_ROWS due
# events with the ~300-byte JSON of bench/run.sh; runs alternate between
# ours and the plain table, ROUNDS rounds; reported: events acked a second,
# medians with their range, and the median of the rounds' ratios.
#
#   SECONDS_PER_RUN (10)  ROUNDS (3)  CONSUMERS ("1 4")  BATCHES ("1 100")
#   QUEUE_ROWS (1000000)  SKIP_INSTALL=1: use the installed extension
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONSUMERS=${CONSUMERS:-"1 4"}
BATCHES=${BATCHES:-"1 100"}
QUEUE_ROWS=${QUEUE_ROWS:-1000000}
PG_PORT=${BENCH_PG_PORT:-5495}
HTTP_PORT=${BENCH_HTTP_PORT:-8795}
DATA="$REPO_ROOT/target/bench-queue-data"
OUT="$REPO_ROOT/bench/results"
RESULTS="$OUT/queue-$(date +%Y%m%d-%H%M%S).txt"
WORK=$(mktemp -d)
chmod 755 "$WORK"
mkdir -p "$OUT"
trap 'as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true; rm -rf "$DATA" "$WORK"' EXIT

ensure_toolchain
install_extension

start_fresh_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = 1
shared_buffers = '512MB'
max_connections = 200
max_wal_size = '4GB'
webhook.notify = off" >/dev/null
bench_psql <<'SQL'
CREATE EXTENSION webhook_ext;
CREATE FUNCTION bench_unused(e webhook.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT FROM webhook_create_workflow('bench-queue', 'bench_unused');
SELECT count(webhook_set_queue(id)) FROM webhook.workflows WHERE name = 'bench-queue';
-- pgbench's queue: the same work on a plain table (pgmq's shape: a due time
-- that hides a read row, a read count, a finished flag).
CREATE TABLE bench_queue (id bigserial PRIMARY KEY, params jsonb NOT NULL,
                          vt timestamptz NOT NULL DEFAULT now(), read_ct int NOT NULL DEFAULT 0,
                          done boolean NOT NULL DEFAULT false);
CREATE INDEX bench_queue_vt_idx ON bench_queue (vt) WHERE NOT done;
SQL
WF=$(bench_psql -At -c "SELECT id FROM webhook.workflows WHERE name = 'bench-queue'")
BODY='{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}'

# Fills both queues afresh: QUEUE_ROWS due events each.
refill() {
    bench_psql >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE webhook.events CASCADE;
TRUNCATE bench_queue;
INSERT INTO webhook.events (workflow_id, method, params, body, status, attempts, next_attempt_at, received_at)
SELECT '$WF', 'POST', '$BODY', '$BODY', 'pending', 0, now(), now() FROM generate_series(1, $QUEUE_ROWS);
INSERT INTO bench_queue (params) SELECT '$BODY' FROM generate_series(1, $QUEUE_ROWS);
VACUUM ANALYZE webhook.events, webhook.attempts, bench_queue;
SQL
}

# The readers' scripts, by batch size: read (committed), then ack, two
# transactions; the plain table's batch is finished in one statement. The
# ids go from one to the other as pgbench variables (a list: "1,2,3").
for b in $BATCHES; do
    cat > "$WORK/ours-$b.sql" <<SQL
SELECT COALESCE(string_agg(id::text, ','), '') AS ids FROM webhook_read('$WF', $b, '5 minutes') \gset
SELECT count(webhook_ack(x)) FROM unnest(ARRAY[:ids]::bigint[]) x;
SQL
    cat > "$WORK/plain-$b.sql" <<SQL
WITH c AS (SELECT id FROM bench_queue WHERE vt <= now() AND NOT done ORDER BY vt LIMIT $b FOR UPDATE SKIP LOCKED),
     r AS (UPDATE bench_queue q SET vt = now() + interval '5 minutes', read_ct = q.read_ct + 1 FROM c WHERE q.id = c.id RETURNING q.id)
SELECT COALESCE(string_agg(id::text, ','), '') AS ids FROM r \gset
UPDATE bench_queue SET done = true WHERE id = ANY (ARRAY[:ids]::bigint[]);
SQL
done

# Events finished a second in a run: the rows acked, over the run's time
# (the queue must not run dry: checked below).
acked() { bench_psql -At -c "SELECT (SELECT count(*) FROM webhook.events WHERE status = 'succeeded')
                                    + (SELECT count(*) FROM bench_queue WHERE done)"; }
run() { local clients=$1 script=$2 before after
    before=$(acked)
    as_postgres "$PG_BIN/pgbench" -n -h "$DATA" -p "$PG_PORT" -U postgres -c "$clients" -j "$clients" \
        -T "$SECONDS_PER_RUN" -f "$script" postgres >/dev/null 2>&1
    after=$(acked)
    [ $((after - before)) -lt "$QUEUE_ROWS" ] || { echo "the queue ran dry: raise QUEUE_ROWS" >&2; exit 1; }
    echo $(( (after - before) / SECONDS_PER_RUN )); }

log() { echo "$*" | tee -a "$RESULTS"; }
log "bench/queue.sh $(date +%Y%m%d-%H%M%S) on $(nproc) cores; ${SECONDS_PER_RUN}s runs, $ROUNDS rounds, $QUEUE_ROWS events queued before each run"
log "$(printf '%-9s %5s %6s %10s %10s %7s' round readers batch ours/s plain/s ratio)"
declare -A OURS PLAIN RATIO
for r in $(seq "$ROUNDS"); do
    for c in $CONSUMERS; do
        for b in $BATCHES; do
            refill
            if (( r % 2 )); then
                ours=$(run "$c" "$WORK/ours-$b.sql"); plain=$(run "$c" "$WORK/plain-$b.sql")
            else
                plain=$(run "$c" "$WORK/plain-$b.sql"); ours=$(run "$c" "$WORK/ours-$b.sql")
            fi
            ratio=$(python3 -c "print('%.2f' % ($ours / $plain))")
            OURS[$c-$b]+="$ours "; PLAIN[$c-$b]+="$plain "; RATIO[$c-$b]+="$ratio "
            log "$(printf '%-9s %5s %6s %10s %10s %7s' "$r" "$c" "$b" "$ours" "$plain" "$ratio")"
        done
    done
done
median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print('%s (%s-%s)' % (('%.2f' if max(v) < 10 else '%.0f') % statistics.median(v), ('%.2f' if max(v) < 10 else '%.0f') % min(v), ('%.2f' if max(v) < 10 else '%.0f') % max(v)))" "$@"; }
log ""
log "medians (range) of events consumed a second:"
log "$(printf '%-7s %6s  %-22s %-22s %s' readers batch ours plain ratio)"
for c in $CONSUMERS; do
    for b in $BATCHES; do
        # shellcheck disable=SC2086
        log "$(printf '%-7s %6s  %-22s %-22s %s' "$c" "$b" "$(median ${OURS[$c-$b]})" "$(median ${PLAIN[$c-$b]})" "$(median ${RATIO[$c-$b]})")"
    done
done
log "results in $RESULTS"
