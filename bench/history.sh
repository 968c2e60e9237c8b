#!/usr/bin/env bash
# What a growing history costs: two measurements in one command, and a third
# for comparison.
#
# * history: acknowledgements per second at CLIENTS connections (bench/loadgen,
#   the ~300-byte JSON of bench/run.sh, a handler inserting one row) on two
#   clusters started alike, one holding HISTORY_ROWS succeeded events (each
#   with its webhook.attempts row) received over the past HISTORY_DAYS days,
#   the other none (both keep the events of their 2-second warm-up). Rounds alternate between the two (which goes first
#   alternates too), seconds apart; reports each round, the medians with their
#   range, and the median of the rounds' ratios (goal: at least 0.9).
# * retention: DURATION seconds at RETENTION_CLIENTS connections with
#   webhook.retain_succeeded = RETAIN, load generated in SLICE-second runs back
#   to back (loadgen prints only totals), and a sample every SAMPLE seconds of
#   the sizes of webhook.events and webhook.attempts (with each index), the
#   private memory of every listener, executor and retention process (RssAnon, Pss_Anon;
#   Pss and Private_Dirty as well, which count shared buffers too), the
#   oldest event's age, the handler backlog, the machine's load and the
#   processor time of the benchmark, of other processes and of the kernel
#   (the machine may be shared: other work is reported, not prevented).
#   Compares the first and the last minute of the steady part (after SETTLE
#   seconds), goal: within 10 %, and checks rows == 2xx: after the backlog
#   drained, the handler's rows (never deleted) equal the 2xx count, each
#   event once, every kept event has one and none is left unfinished, so
#   every stored event was either kept or deleted by retention after its
#   handler ran.
# * plain (not run unless named in PARTS): the retention part's work done by
#   pgbench in plain SQL on a table shaped like webhook.events, measured and
#   reported alike: what PostgreSQL itself keeps flat on this machine (see
#   the part's own comment below).
#
# Two clusters rather than one loaded and emptied again: loading 10 million
# events takes minutes and emptying them leaves a table nothing like a new
# one, while two clusters with the same settings, only one of them taking load
# at a time, can be compared in runs seconds apart.
#
#   HISTORY_ROWS (10000000)  CHUNK_ROWS (1000000)  HISTORY_DAYS (7)
#   SECONDS_PER_RUN (10)  ROUNDS (10)  CLIENTS (16)
#   DURATION (600)  RETENTION_CLIENTS (64)  RETAIN (1min)  SLICE (10)
#   SAMPLE (10)  SETTLE (120)
#   PARTS ("history retention"; "plain" as well): which measurements to run
#   EXTRA_SETTINGS: postgresql.conf lines added to every cluster's
#   SKIP_INSTALL=1: use the installed extension (scripts/common.sh)
#   KEEP_DATA=1: keep the clusters' data directories (some 15 GB with the
#   default history), removed at the end otherwise
#   BENCH_PG_PORT (5493), BENCH_HTTP_PORT (8793): the empty cluster takes the
#   next port of each
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

HISTORY_ROWS=${HISTORY_ROWS:-10000000}
CHUNK_ROWS=${CHUNK_ROWS:-1000000}
HISTORY_DAYS=${HISTORY_DAYS:-7}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-10}
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-600}
RETENTION_CLIENTS=${RETENTION_CLIENTS:-64}
RETAIN=${RETAIN:-1min}
SLICE=${SLICE:-10}
SAMPLE=${SAMPLE:-10}
SETTLE=${SETTLE:-120}
PARTS=${PARTS:-"history retention"}
PG_PORT=${BENCH_PG_PORT:-5493}
HTTP_PORT=${BENCH_HTTP_PORT:-8793}
FULL="$REPO_ROOT/target/history-full-data"
EMPTY="$REPO_ROOT/target/history-empty-data"
RET="$REPO_ROOT/target/history-retention-data"
PLAIN="$REPO_ROOT/target/history-plain-data"
OUT="$REPO_ROOT/bench/results"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS="$OUT/history-$STAMP.txt"
WORK=$(mktemp -d)
chmod 755 "$WORK"
mkdir -p "$OUT"

stop_clusters() {
    for d in "$FULL" "$EMPTY" "$RET" "$PLAIN"; do
        [ -d "$d" ] && as_postgres "$PG_BIN/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1 || true
    done
}
cleanup() {
    [ -z "${SAMPLER_PID:-}" ] || kill "$SAMPLER_PID" 2>/dev/null || true
    stop_clusters
    [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$FULL" "$EMPTY" "$RET" "$PLAIN"
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_toolchain
install_extension
build_loadgen

# The settings of bench/run.sh, and: room for the checkpoints of a large
# load, no storage quota in the way (10 minutes at 64 connections store more
# than the default 10 GB an hour) and room for the load generator's new
# connections at the start of each slice while the previous slice's close.
SETTINGS="webhook.workers = 1
shared_buffers = '512MB'
max_connections = 200
max_wal_size = '4GB'
webhook.storage_quota = '100GB'
webhook.max_connections_per_client = 1000
${EXTRA_SETTINGS:-}"

BODY="$WORK/body.json"
printf '%s' '{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}' > "$BODY"

# pg DATADIR PORT psql-args...
pg() { local data=$1 port=$2; shift 2
    as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$data" -p "$port" -U postgres -d postgres "$@"; }
field() { python3 -c "import json,sys; print('%.${2:-0}f' % json.load(sys.stdin)['$1'])"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
log() { echo "$*" | tee -a "$RESULTS"; }

# setup DATADIR PG_PORT HTTP_PORT EXTRA_SETTINGS: a fresh cluster with the
# benchmark's workflow, warmed up; prints the workflow's id.
setup() {
    local data=$1 pgp=$2 httpp=$3 wf
    start_fresh_cluster "$data" "$pgp" "$httpp" "$SETTINGS
$4" >&2
    pg "$data" "$pgp" >/dev/null <<'SQL'
CREATE EXTENSION webhook_ext;
CREATE TABLE bench_orders (event_id bigint, order_id text, amount numeric, email text);
CREATE FUNCTION bench_handler(e webhook.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_orders VALUES (e.id, e.params->>'order_id', (e.params->>'amount')::numeric,
                                     e.params #>> '{customer,email}');
END
$$;
SELECT FROM webhook_create_workflow('bench', 'bench_handler');
SQL
    wf=$(pg "$data" "$pgp" -At -c "SELECT id FROM webhook.workflows WHERE name = 'bench'")
    "$LOADGEN" "http://127.0.0.1:$httpp/hooks/$wf" 16 2 "$BODY" >/dev/null
    drain "$data" "$pgp" 120
    echo "$wf"
}
# drain DATADIR PORT SECONDS: waits until no event is left unfinished.
drain() { local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(pg "$1" "$2" -At -c "SELECT count(*) FROM webhook.events WHERE next_attempt_at IS NOT NULL")" = 0 ] && return 0
        sleep 0.1
    done
    echo "backlog not drained after $3 s" >&2; return 1; }

# probe.py cpu ROOT...: the machine's processor ticks (busy, idle, steal),
# those of all processes and those of the processes under the ROOT pids (this
# script, the postmasters), reaped children included, as one JSON line;
# probe.py cores A B: the cores used between two such readings.
# probe.py sample T0 EVERY DATADIR PORT WORKFLOW EVENTS ATTEMPTS ROOT...: from T0, every
# EVERY seconds, one JSON line of table and index sizes, table statistics,
# the backlog, the oldest event's age, the machine's load, the cores used
# since the last sample, and each listener's and executor's memory (kB).
cat > "$WORK/probe.py" <<'PY'
import json, os, subprocess, sys, time

def cpu(roots):
    procs, children = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = open("/proc/%s/stat" % d).read()
        except OSError:
            continue
        f = raw[raw.rindex(")") + 2:].split()
        if d != "2" and f[1] != "2":  # not a kernel thread
            procs[int(d)] = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
            children.setdefault(int(f[1]), []).append(int(d))
    seen, stack = set(), [r for r in roots if r in procs]
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(children.get(p, []))
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    reading = {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "idle": v[3] + v[4], "steal": v[7],
               "ours": sum(procs[p] for p in seen), "processes": sum(procs.values()), "at": time.time()}
    for kind in ("cpu", "io"):  # pressure stall information: µs some task waited
        try:
            reading["psi_" + kind] = int(open("/proc/pressure/" + kind).readline().split("total=")[1])
        except (OSError, IndexError):
            reading["psi_" + kind] = 0
    return reading

# Cores used between two readings: by the benchmark's processes, by other
# processes, by the kernel outside any process (interrupts, the loopback
# network's softirqs, writeback: mostly on the benchmark's behalf), stolen by
# the hypervisor; busy: the machine's busy fraction; cpu_pressure and
# io_pressure: the share of the time some task (ours or not) waited for a
# processor, for the disk.
def cores(a, b):
    hz = os.sysconf("SC_CLK_TCK") * max(b["at"] - a["at"], 1e-3)
    ours, procs, busy = b["ours"] - a["ours"], b["processes"] - a["processes"], b["busy"] - a["busy"]
    wall = max(b["at"] - a["at"], 1e-3) * 1e6
    return {"ours": ours / hz, "others": max(0, procs - ours) / hz, "kernel": max(0, busy - procs) / hz,
            "steal": (b["steal"] - a["steal"]) / hz,
            "busy": busy / max(busy + b["idle"] - a["idle"] + b["steal"] - a["steal"], 1),
            "cpu_pressure": (b["psi_cpu"] - a["psi_cpu"]) / wall, "io_pressure": (b["psi_io"] - a["psi_io"]) / wall}

def memory(pid):
    m = {}
    try:
        for line in open("/proc/%d/smaps_rollup" % pid):
            k, _, rest = line.partition(":")
            if k in ("Rss", "Pss", "Pss_Anon", "Private_Dirty"):
                m[k] = int(rest.split()[0])
        for line in open("/proc/%d/status" % pid):
            if line.startswith("RssAnon:"):
                m["RssAnon"] = int(line.split()[1])
    except OSError:
        pass
    return m

# EVENTS and ATTEMPTS: the tables sampled (webhook.events and
# webhook.attempts, or the plain part's tables shaped like them).
SQL = """
SELECT json_build_object(
  'events_total', pg_total_relation_size('%(events)s'),
  'events_heap', pg_relation_size('%(events)s'),
  'attempts_total', pg_total_relation_size('%(attempts)s'),
  'attempts_heap', pg_relation_size('%(attempts)s'),
  'indexes', (SELECT json_object_agg(c.relname, pg_relation_size(c.oid))
                FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid IN ('%(events)s'::regclass, '%(attempts)s'::regclass)),
  'live', s.n_live_tup, 'dead', s.n_dead_tup, 'inserted', s.n_tup_ins, 'deleted', s.n_tup_del,
  'vacuums', s.autovacuum_count + s.vacuum_count,
  'pending', (SELECT count(*) FROM %(events)s WHERE next_attempt_at IS NOT NULL),
  'oldest_s', (SELECT extract(epoch FROM now() - min(received_at)) FROM %(events)s WHERE workflow_id = '%(wf)s'),
  'procs', (SELECT json_agg(json_build_object('pid', pid, 'type', backend_type))
              FROM pg_stat_activity WHERE backend_type IN ('webhook_ext listener', 'webhook_ext executor', 'webhook_ext retention')
               AND '%(events)s' = 'webhook.events'))
  FROM pg_stat_user_tables s WHERE s.relid = '%(events)s'::regclass"""

if sys.argv[1] == "cpu":
    print(json.dumps(cpu([int(r) for r in sys.argv[2:]])))
elif sys.argv[1] == "cores":
    print(json.dumps(cores(json.loads(sys.argv[2]), json.loads(sys.argv[3]))))
else:
    t0, every, data, port = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    names = {"wf": sys.argv[6], "events": sys.argv[7], "attempts": sys.argv[8]}
    roots = [int(r) for r in sys.argv[9:]]
    psql = ([] if os.geteuid() else ["runuser", "-u", "postgres", "--"]) + [
        "/usr/lib/postgresql/15/bin/psql", "-X", "-At", "-h", data, "-p", port, "-U", "postgres", "-d", "postgres", "-c"]
    last, k = cpu(roots), 0
    while True:
        time.sleep(max(0.0, t0 + k * every - time.time()))
        t = time.time() - t0
        try:
            s = json.loads(subprocess.run(psql + [SQL % names], capture_output=True, text=True, timeout=30).stdout)
        except Exception as e:
            s = {"error": str(e)}
        now = cpu(roots)
        s["cpu"], last = cores(last, now), now
        s["t"] = round(t, 2)
        s["loadavg"] = open("/proc/loadavg").read().split()[:3]
        for p in s.get("procs") or []:
            p.update(memory(p["pid"]))
        print(json.dumps(s), flush=True)
        k += 1
PY
# report.py SAMPLES SLICES DURATION SETTLE TITLE EVENTS ATTEMPTS ACKED [RATIOS]:
# per minute, then the first minute of the steady part (after SETTLE) against
# the last; ACKED names what a slice's "ok" counts; RATIOS: a file for the
# last-to-first ratios, by name without the tables' prefixes.
cat > "$WORK/report.py" <<'PY'
import json, statistics, sys
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
samples = [s for s in samples if "error" not in s]
slices = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
duration, settle = float(sys.argv[3]), float(sys.argv[4])
title, events, attempts, acked = sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
if settle >= duration / 2:
    settle = duration / 3
span = min(60.0, (duration - settle) / 2)
first, last = (settle, settle + span), (duration - span, duration + 1)
MB = 1 / 1048576

def within(t, w): return w[0] <= t < w[1]
def runs(w): return [s for s in slices if within((s["start"] + s["end"]) / 2, w)]
def ack(w):
    r = runs(w)
    return sum(s["run"]["ok"] for s in r) / sum(s["end"] - s["start"] for s in r) if r else None
def mean(w, f):
    v = [f(s) for s in samples if within(s["t"], w)]
    v = [x for x in v if x is not None]
    return statistics.mean(v) if v else None
def rate(w, key):
    ws = [s for s in samples if within(s["t"], w)]
    return (ws[-1][key] - ws[0][key]) / (ws[-1]["t"] - ws[0]["t"]) if len(ws) > 1 else None
def procmax(w, kind, key="RssAnon"):
    return mean(w, lambda s: max([p.get(key, 0) for p in s["procs"] or [] if p["type"].endswith(kind)] or [0]) / 1024)
z = lambda x: 0 if x is None else x

print()
print("%s; %d slices, %d samples" % (title, len(slices), len(samples)))
print("per minute: ack/s (%s over the slices' time), the slices' worst p99, inserted and deleted rows a second" % acked)
print("(table statistics), then means of the samples: sizes, rows, backlog, oldest event, largest RssAnon of a")
print("listener and of an executor, load average, processor cores used by the benchmark's processes, by other")
print("processes, and by the kernel outside any process (interrupts, loopback network, writeback), and the share")
print("of the time some task (ours or not) waited for a processor")
H = "%4s %7s %7s %7s %7s %6s %9s %9s %9s %7s %6s %7s %7s %5s %5s %6s %6s %6s"
print(H % ("min", "ack/s", "p99ms", "ins/s", "del/s", "bad", "events_MB", "attem_MB", "rows", "backlog",
           "oldest", "lis_MB", "exe_MB", "load", "ours", "others", "kernel", "cpu_ps"))
minutes = int((duration + 59) // 60)
for m in range(minutes):
    w = (m * 60, (m + 1) * 60 if m + 1 < minutes else duration + 1)
    r = runs(w)
    print("%4d %7.0f %7.1f %7.0f %7.0f %6d %9.0f %9.0f %9.0f %7.0f %6.0f %7.1f %7.1f %5.2f %5.2f %6.2f %6.2f %6.2f" % (
        m + 1, z(ack(w)), max([s["run"]["p99_ms"] for s in r] or [0]), z(rate(w, "inserted")), z(rate(w, "deleted")),
        sum(s["run"]["non_2xx"] + s["run"]["errors"] for s in r),
        z(mean(w, lambda s: s["events_total"] * MB)), z(mean(w, lambda s: s["attempts_total"] * MB)),
        z(mean(w, lambda s: s["live"])), z(mean(w, lambda s: s["pending"])), z(mean(w, lambda s: s["oldest_s"])),
        z(procmax(w, "listener")), z(procmax(w, "executor")), z(mean(w, lambda s: float(s["loadavg"][0]))),
        z(mean(w, lambda s: s["cpu"]["ours"])), z(mean(w, lambda s: s["cpu"]["others"])),
        z(mean(w, lambda s: s["cpu"]["kernel"])), z(mean(w, lambda s: s["cpu"]["cpu_pressure"]))))

print()
print("first minute of the steady part (%.0f-%.0f s) against its last (%.0f-%.0f s), means; goal: within 10 %%"
      % (first[0], first[1], last[0], duration))
print("%-50s %11s %11s %7s  %s" % ("", "first", "last", "ratio", "within 10 %"))
verdicts, ratios = [], {}
def row(name, f, goal=True):
    a, b = f(first), f(last)
    if a is None or b is None:
        print("%-50s %11s %11s" % (name, "-" if a is None else "%.1f" % a, "-" if b is None else "%.1f" % b))
        return
    r = b / a if a else (float("inf") if b else 1.0)
    good = abs(r - 1) <= 0.10
    if goal:
        verdicts.append(good)
        ratios[name.strip().replace("webhook.", "").replace("plain_", "")] = r
    print("%-50s %11.1f %11.1f %7.2f  %s" % (name, a, b, r, ("yes" if good else "NO") if goal else "(not a goal)"))
row("ack/s", ack)
row("%s, with indexes and TOAST (MB)" % events, lambda w: mean(w, lambda s: s["events_total"] * MB))
row("%s, heap (MB)" % events, lambda w: mean(w, lambda s: s["events_heap"] * MB))
row("%s, with indexes (MB)" % attempts, lambda w: mean(w, lambda s: s["attempts_total"] * MB))
row("%s, heap (MB)" % attempts, lambda w: mean(w, lambda s: s["attempts_heap"] * MB))
for n in sorted({n for s in samples for n in (s.get("indexes") or {})}):
    row("  index %s (MB)" % n, lambda w, n=n: mean(w, lambda s: (s.get("indexes") or {}).get(n, 0) * MB))
pids = {}
for s in samples:
    for p in s.get("procs") or []:
        pids.setdefault(p["pid"], p["type"].replace("webhook_ext ", ""))
for pid, kind in sorted(pids.items(), key=lambda x: (x[1] != "listener", x[0])):
    for key in ("RssAnon", "Pss_Anon", "Private_Dirty", "Pss"):
        row("%s %d %s (MB)" % (kind, pid, key),
            lambda w, pid=pid, key=key: mean(w, lambda s: next((p.get(key, 0) / 1024 for p in s.get("procs") or [] if p["pid"] == pid), None)),
            goal=key in ("RssAnon", "Pss_Anon"))
print("all within 10 %%: %s (Pss and Private_Dirty count the shared buffers a process touched: not goals)"
      % ("yes" if verdicts and all(verdicts) else "NO"))
if len(sys.argv) > 9:
    json.dump(ratios, open(sys.argv[9], "w"))
print("besides: events inserted %.0f -> %.0f a second, deleted %.0f -> %.0f; oldest event %.0f -> %.0f s old; backlog %.0f -> %.0f;"
      % tuple(map(z, (rate(first, "inserted"), rate(last, "inserted"), rate(first, "deleted"), rate(last, "deleted"),
                      mean(first, lambda s: s["oldest_s"]), mean(last, lambda s: s["oldest_s"]),
                      mean(first, lambda s: s["pending"]), mean(last, lambda s: s["pending"])))))
print("  load average %.2f -> %.2f; cores used by the benchmark %.2f -> %.2f, by other work %.2f -> %.2f"
      % tuple(map(z, (mean(first, lambda s: float(s["loadavg"][0])), mean(last, lambda s: float(s["loadavg"][0])),
                      mean(first, lambda s: s["cpu"]["ours"]), mean(last, lambda s: s["cpu"]["ours"]),
                      mean(first, lambda s: s["cpu"]["others"]), mean(last, lambda s: s["cpu"]["others"])))))
PY
: > "$RESULTS"
log "bench/history.sh $STAMP on $(nproc) cores; load average at the start: $(loadavg)"

# ---------------------------------------------------------------------------
# history: acknowledgements with HISTORY_ROWS finished events against none
# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" history "* ]]; then
    FULL_PG=$PG_PORT; FULL_HTTP=$HTTP_PORT; EMPTY_PG=$((PG_PORT + 1)); EMPTY_HTTP=$((HTTP_PORT + 1))
    # Long enough that retention deletes nothing of the history while we
    # measure (its rounds still run and find nothing to delete).
    KEEP="SELECT FROM webhook_set_retention((SELECT id FROM webhook.workflows WHERE name = 'bench'), '30 days', '30 days')"
    say "cluster with history ($FULL)"
    WF_FULL=$(setup "$FULL" "$FULL_PG" "$FULL_HTTP" "")
    say "cluster without ($EMPTY)"
    WF_EMPTY=$(setup "$EMPTY" "$EMPTY_PG" "$EMPTY_HTTP" "")
    pg "$FULL" "$FULL_PG" -c "$KEEP" >/dev/null; pg "$EMPTY" "$EMPTY_PG" -c "$KEEP" >/dev/null

    # The history copies a real event and its attempt (the warm-up's last),
    # each with its own order id, received evenly over HISTORY_DAYS days up to
    # now, handled and attempted as long after receipt as that one. Both
    # clusters keep their warm-up's events (some 20,000): emptied and vacuumed,
    # a table the statistics call empty gets kept plans that read it whole
    # (the listener's once-a-second look for due events scanned the table
    # every second, 25 ms growing to 250 ms, until autovacuum analyzed it).
    pg "$FULL" "$FULL_PG" <<'SQL'
CREATE TABLE bench_template AS
SELECT e.*, e.handled_at - e.received_at AS handled_after,
       a.started_at - e.received_at AS started_after, a.ended_at - e.received_at AS ended_after
  FROM webhook.events e JOIN webhook.attempts a ON a.event_id = e.id
 WHERE e.id = (SELECT max(id) FROM webhook.events WHERE status = 'succeeded');
SQL
    ANCHOR=$(pg "$FULL" "$FULL_PG" -At -c "SELECT now()")
    say "inserting $HISTORY_ROWS succeeded events with their attempts, $CHUNK_ROWS a statement"
    load_started=$(date +%s)
    for ((from = 1; from <= HISTORY_ROWS; from += CHUNK_ROWS)); do
        to=$((from + CHUNK_ROWS - 1)); ((to <= HISTORY_ROWS)) || to=$HISTORY_ROWS
        pg "$FULL" "$FULL_PG" <<SQL
WITH e AS (
    INSERT INTO webhook.events (workflow_id, received_at, method, query, headers, params, body, status,
                                error, response, origin, remote_addr, handled_at, replay_of, raw_path,
                                raw_query, attempts, next_attempt_at, listener_pid)
    SELECT t.workflow_id, r.at, t.method, t.query, t.headers,
           jsonb_set(t.params, '{order_id}', to_jsonb('H-' || g)),
           replace(t.body, '"A-1001"', '"H-' || g || '"'), 'succeeded',
           NULL, t.response, t.origin, t.remote_addr, r.at + t.handled_after, NULL, t.raw_path,
           t.raw_query, 1, NULL, t.listener_pid
      FROM bench_template t, generate_series($from, $to) g,
           LATERAL (SELECT timestamptz '$ANCHOR' - interval '$HISTORY_DAYS days'
                           + (g - 1) * (interval '$HISTORY_DAYS days' / $HISTORY_ROWS) AS at) r
    RETURNING id, workflow_id, received_at)
INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome)
SELECT e.id, 1, e.workflow_id, e.received_at + t.started_after, e.received_at + t.ended_after, 'succeeded'
  FROM e, bench_template t;
SQL
        printf '\r%s rows' "$to" >&2
    done
    echo >&2
    load_seconds=$(( $(date +%s) - load_started ))
    say "VACUUM ANALYZE and CHECKPOINT on both clusters"
    vacuum_started=$(date +%s)
    pg "$FULL" "$FULL_PG" -c "DROP TABLE bench_template"
    for d in "$FULL:$FULL_PG" "$EMPTY:$EMPTY_PG"; do
        pg "${d%:*}" "${d##*:}" -c "VACUUM ANALYZE" -c "CHECKPOINT"
    done
    vacuum_seconds=$(( $(date +%s) - vacuum_started ))
    sizes() { pg "$1" "$2" -At -c "
        SELECT format('%s events, %s attempts; webhook.events %s in all (heap %s), webhook.attempts %s in all (heap %s); indexes: %s',
               (SELECT count(*) FROM webhook.events), (SELECT count(*) FROM webhook.attempts),
               pg_size_pretty(pg_total_relation_size('webhook.events')), pg_size_pretty(pg_relation_size('webhook.events')),
               pg_size_pretty(pg_total_relation_size('webhook.attempts')), pg_size_pretty(pg_relation_size('webhook.attempts')),
               (SELECT string_agg(c.relname || ' ' || pg_size_pretty(pg_relation_size(c.oid)), ', ' ORDER BY c.relname)
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid IN ('webhook.events'::regclass, 'webhook.attempts'::regclass)))"; }
    log "history: $(sizes "$FULL" "$FULL_PG")"
    log "loaded in $load_seconds s, VACUUM ANALYZE and CHECKPOINT in $vacuum_seconds s"

    # run DATADIR PG_PORT HTTP_PORT WF: one run, drained; prints "ack/s p99
    # ok rows_ok others" (others: processor cores other work took meanwhile).
    ROOTS="$$ $(head -1 "$FULL/postmaster.pid") $(head -1 "$EMPTY/postmaster.pid")"
    run() {
        local before json ok events handled cpu0 cpu1 others
        before=$(pg "$1" "$2" -At -c "SELECT last_value FROM webhook.events_id_seq")
        cpu0=$(python3 "$WORK/probe.py" cpu $ROOTS)
        json=$("$LOADGEN" "http://127.0.0.1:$3/hooks/$4" "$CLIENTS" "$SECONDS_PER_RUN" "$BODY")
        cpu1=$(python3 "$WORK/probe.py" cpu $ROOTS)
        others=$(python3 "$WORK/probe.py" cores "$cpu0" "$cpu1" | python3 -c "
import json, sys; c = json.load(sys.stdin); print('%.2f,%.2f,%.2f' % (c['others'], c['cpu_pressure'], c['io_pressure']))")
        drain "$1" "$2" 300
        ok=$(echo "$json" | field ok)
        events=$(pg "$1" "$2" -At -c "SELECT count(*) FROM webhook.events WHERE id > $before AND status = 'succeeded'")
        handled=$(pg "$1" "$2" -At -c "SELECT count(DISTINCT event_id) FROM bench_orders WHERE event_id > $before")
        local rows=yes; { [ "$events" -eq "$ok" ] && [ "$handled" -eq "$ok" ]; } || rows="NO:$ok/$events/$handled"
        echo "$(echo "$json" | field rps) $(echo "$json" | field p99_ms 2) $ok $rows $others"
    }
    log ""
    log "history: $CLIENTS connections, $ROUNDS rounds of $SECONDS_PER_RUN s per cluster (others: during the run with"
    log "history / without, processor cores other processes took, share of time some task waited for a processor,"
    log "share of time some task waited for the disk)"
    LINE='%-6s %-7s %10s %9s %10s %9s %7s %-5s %-5s %s\n'
    printf "$LINE" round first full_ack/s full_p99 empty_ack/s empty_p99 ratio rows rows others | tee -a "$RESULTS"
    ROUNDS_FILE="$WORK/rounds"
    for r in $(seq "$ROUNDS"); do
        if ((r % 2)); then
            full=$(run "$FULL" "$FULL_PG" "$FULL_HTTP" "$WF_FULL"); empty=$(run "$EMPTY" "$EMPTY_PG" "$EMPTY_HTTP" "$WF_EMPTY"); first=full
        else
            empty=$(run "$EMPTY" "$EMPTY_PG" "$EMPTY_HTTP" "$WF_EMPTY"); full=$(run "$FULL" "$FULL_PG" "$FULL_HTTP" "$WF_FULL"); first=empty
        fi
        read -r f_rps f_p99 _ f_rows f_others <<<"$full"
        read -r e_rps e_p99 _ e_rows e_others <<<"$empty"
        ratio=$(python3 -c "print('%.2f' % ($f_rps / max($e_rps, 1)))")
        printf "$LINE" "$r" "$first" "$f_rps" "$f_p99" "$e_rps" "$e_p99" "$ratio" "$f_rows" "$e_rows" "$f_others/$e_others" | tee -a "$RESULTS"
        echo "$f_rps $f_p99 $e_rps $e_p99 $ratio ${f_others//,/ } ${e_others//,/ }" >> "$ROUNDS_FILE"
    done
    python3 - "$ROUNDS_FILE" <<'PY' | tee -a "$RESULTS"
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
col = lambda i: [r[i] for r in rows]
fmt = lambda i, f: (f + " (" + f + "-" + f + ")") % (statistics.median(col(i)), min(col(i)), max(col(i)))
print("medians (range): with history %s ack/s, p99 %s ms; empty %s ack/s, p99 %s ms"
      % (fmt(0, "%.0f"), fmt(1, "%.2f"), fmt(2, "%.0f"), fmt(3, "%.2f")))
ratio = statistics.median(col(4))
print("ratio with history / empty: %s, goal >= 0.9: %s" % (fmt(4, "%.2f"), "met" if ratio >= 0.9 else "NOT met"))
print("other processes took %s cores during the runs with history, %s during the others;" % (fmt(5, "%.2f"), fmt(8, "%.2f")))
print("some task waited for a processor %s of the time, %s; for the disk %s, %s"
      % (fmt(6, "%.2f"), fmt(9, "%.2f"), fmt(7, "%.2f"), fmt(10, "%.2f")))
PY
    log "after the rounds, with history: $(sizes "$FULL" "$FULL_PG")"
    log "after the rounds, empty: $(sizes "$EMPTY" "$EMPTY_PG")"
    say "stopping the two clusters"
    stop_clusters
fi

# ---------------------------------------------------------------------------
# retention: a long run at RETENTION_CLIENTS connections, retention RETAIN
# ---------------------------------------------------------------------------
if [[ " $PARTS " == *" retention "* ]]; then
    say "cluster with webhook.retain_succeeded = '$RETAIN' ($RET)"
    WF_RET=$(setup "$RET" "$PG_PORT" "$HTTP_PORT" "webhook.retain_succeeded = '$RETAIN'")
    before=$(pg "$RET" "$PG_PORT" -At -c "SELECT last_value FROM webhook.events_id_seq")
    SAMPLES="$OUT/history-$STAMP-samples.jsonl"
    SLICES="$OUT/history-$STAMP-slices.jsonl"
    : > "$SLICES"
    say "$DURATION s at $RETENTION_CLIENTS connections in $SLICE s slices, a sample every $SAMPLE s"
    T0=$(date +%s.%N)
    python3 "$WORK/probe.py" sample "$T0" "$SAMPLE" "$RET" "$PG_PORT" "$WF_RET" webhook.events webhook.attempts $$ "$(head -1 "$RET/postmaster.pid")" > "$SAMPLES" &
    SAMPLER_PID=$!
    slices=$((DURATION / SLICE))
    for ((i = 0; i < slices; i++)); do
        s=$(date +%s.%N)
        json=$("$LOADGEN" "http://127.0.0.1:$HTTP_PORT/hooks/$WF_RET" "$RETENTION_CLIENTS" "$SLICE" "$BODY")
        e=$(date +%s.%N)
        echo "{\"start\": $(python3 -c "print($s - $T0)"), \"end\": $(python3 -c "print($e - $T0)"), \"run\": $json}" >> "$SLICES"
        printf '\r%s s: %s ack/s ' "$(python3 -c "print(int($e - $T0))")" "$(echo "$json" | field rps)" >&2
    done
    echo >&2
    kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
    say "draining the backlog"
    drain_started=$(date +%s)
    drain "$RET" "$PG_PORT" 1800 || true
    drain_seconds=$(( $(date +%s) - drain_started ))
    # rows == 2xx: the handler's rows are never deleted; with nothing left
    # unfinished, every stored event ran its handler once (so each appears
    # there once), and each is either kept or was deleted by retention.
    sleep 2
    read -r handled distinct kept unhandled unfinished ins del < <(pg "$RET" "$PG_PORT" -At -F' ' -c "
        SELECT (SELECT count(*) FROM bench_orders WHERE event_id > $before),
               (SELECT count(DISTINCT event_id) FROM bench_orders WHERE event_id > $before),
               (SELECT count(*) FROM webhook.events WHERE id > $before),
               (SELECT count(*) FROM webhook.events e WHERE id > $before
                   AND NOT EXISTS (SELECT FROM bench_orders o WHERE o.event_id = e.id)),
               (SELECT count(*) FROM webhook.events WHERE id > $before AND status <> 'succeeded'),
               n_tup_ins, n_tup_del
          FROM pg_stat_user_tables WHERE relid = 'webhook.events'::regclass")
    python3 "$WORK/report.py" "$SAMPLES" "$SLICES" "$DURATION" "$SETTLE" \
        "retention: $DURATION s at $RETENTION_CLIENTS connections, webhook.retain_succeeded = $RETAIN" \
        webhook.events webhook.attempts 2xx "$WORK/ratios-retention.json" | tee -a "$RESULTS"
    python3 - "$SLICES" "$handled" "$distinct" "$kept" "$unhandled" "$unfinished" "$drain_seconds" "$ins" "$del" \
        <<'PY' | tee -a "$RESULTS"
import json, sys
slices = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
handled, distinct, kept, unhandled, unfinished, drain_s = map(int, sys.argv[2:8])
ins, dele = sys.argv[8], sys.argv[9]
total_ok = sum(s["run"]["ok"] for s in slices)
bad = sum(s["run"]["non_2xx"] + s["run"]["errors"] for s in slices)
print()
print("rows == 2xx: %d 2xx (%d non-2xx or errors); after the backlog drained (%d s): %d handler rows for %d distinct"
      % (total_ok, bad, drain_s, handled, distinct))
print("  events, %d events kept and %d deleted by retention, %d kept without a handler row, %d unfinished"
      % (kept, handled - kept, unhandled, unfinished))
print("  (webhook.events statistics since the cluster started: %s inserted, %s deleted)" % (ins, dele))
good = handled == total_ok and distinct == handled and unhandled == 0 and unfinished == 0
print("rows == 2xx: %s" % ("yes" if good else "NO"))
PY
    say "stopping the cluster"
    stop_clusters
fi

# ---------------------------------------------------------------------------
# plain: the same queue work in plain SQL, pgbench instead of the extension
# ---------------------------------------------------------------------------
# What PostgreSQL itself does with this work on this machine, measured as the
# retention part is: RETENTION_CLIENTS pgbench clients insert one event a
# transaction into a table shaped like webhook.events (its partial indexes of
# unfinished events included, the same storage parameters); two "executors"
# claim up to 64 due events a transaction (FOR UPDATE SKIP LOCKED, starting
# a quarter second before the oldest the last claim took, from the beginning
# now and then, as src/execution/executor.rs does), insert the handler's row
# and an attempt row and finish them; one "retention" client deletes up to
# 1,000 events finished more than RETAIN ago a transaction, and sleeps a
# second when fewer were left. pgbench logs each SLICE seconds' transactions
# (the p99 column holds the slice's worst latency).
if [[ " $PARTS " == *" plain "* ]]; then
    say "cluster for the same work in plain SQL ($PLAIN)"
    start_fresh_cluster "$PLAIN" "$PG_PORT" "$HTTP_PORT" "$SETTINGS" >&2
    WF_PLAIN=00000000-0000-4000-8000-000000000001
    # pgbench runs as postgres and writes its logs here.
    PW="$WORK/plain"; mkdir "$PW"
    pg "$PLAIN" "$PG_PORT" >/dev/null <<'SQL'
CREATE TABLE plain_events (
    id bigserial PRIMARY KEY,
    workflow_id uuid NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'pending',
    params jsonb NOT NULL,
    headers jsonb NOT NULL,
    body text,
    attempts integer NOT NULL DEFAULT 0,
    handled_at timestamptz,
    next_attempt_at timestamptz DEFAULT now());
CREATE INDEX plain_events_workflow_received_idx ON plain_events (workflow_id, received_at);
CREATE INDEX plain_events_due_idx ON plain_events (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX plain_events_unfinished_idx ON plain_events (workflow_id, id) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE plain_attempts (
    event_id bigint NOT NULL REFERENCES plain_events (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    outcome text NOT NULL,
    PRIMARY KEY (event_id, attempt));
ALTER TABLE plain_events SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                              autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE plain_attempts SET (autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_scale_factor = 0.05,
                                autovacuum_analyze_scale_factor = 0.05);
CREATE TABLE plain_orders (event_id bigint, order_id text, amount numeric, email text);
SQL
    cat > "$PW/insert.sql" <<SQL
INSERT INTO plain_events (workflow_id, params, headers, body)
VALUES ('$WF_PLAIN', '$(cat "$BODY")',
        '{"host": "127.0.0.1", "content-type": "application/json", "user-agent": "loadgen", "content-length": "$(wc -c < "$BODY")"}',
        '$(cat "$BODY")');
SQL
    cat > "$PW/execute.sql" <<'SQL'
\set r random(1, 100)
\if :r = 1
\set floor 0
\endif
WITH c AS (SELECT id, params, next_attempt_at FROM plain_events
            WHERE next_attempt_at <= now() AND next_attempt_at >= to_timestamp(:floor)
            ORDER BY next_attempt_at LIMIT 64 FOR UPDATE SKIP LOCKED),
     h AS (INSERT INTO plain_orders
           SELECT id, params->>'order_id', (params->>'amount')::numeric, params #>> '{customer,email}' FROM c),
     a AS (INSERT INTO plain_attempts SELECT id, 1, now(), clock_timestamp(), 'succeeded' FROM c),
     u AS (UPDATE plain_events e SET status = 'succeeded', attempts = 1, handled_at = clock_timestamp(),
                  next_attempt_at = NULL FROM c WHERE e.id = c.id)
SELECT count(*) AS claimed,
       coalesce(extract(epoch FROM min(c.next_attempt_at)) - 0.25, :floor) AS floor FROM c \gset
\if :claimed < 64
\sleep 10 ms
\endif
SQL
    cat > "$PW/retain.sql" <<SQL
WITH d AS (
    DELETE FROM plain_events WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM plain_events
         WHERE workflow_id = '$WF_PLAIN' AND received_at <= now() - interval '$RETAIN'
           AND next_attempt_at IS NULL AND handled_at < now() - interval '$RETAIN'
         ORDER BY received_at LIMIT 1000 FOR UPDATE SKIP LOCKED))
    RETURNING 1)
SELECT count(*) AS deleted FROM d \gset
\if :deleted < 1000
\sleep 1 s
\endif
SQL
    bench() { as_postgres env PGOPTIONS="-c enable_bitmapscan=off -c enable_sort=off" \
        "$PG_BIN/pgbench" -n -h "$PLAIN" -p "$PG_PORT" -U postgres "$@" postgres; }
    chown -R postgres "$PW"
    SAMPLES="$OUT/history-$STAMP-plain-samples.jsonl"
    SLICES="$OUT/history-$STAMP-plain-slices.jsonl"
    say "$DURATION s at $RETENTION_CLIENTS pgbench clients, a sample every $SAMPLE s"
    T0=$(date +%s.%N)
    python3 "$WORK/probe.py" sample "$T0" "$SAMPLE" "$PLAIN" "$PG_PORT" "$WF_PLAIN" public.plain_events \
        public.plain_attempts $$ "$(head -1 "$PLAIN/postmaster.pid")" > "$SAMPLES" &
    SAMPLER_PID=$!
    (cd "$PW" && bench -c 2 -j 2 -T $((DURATION + 10)) -D floor=0 -f execute.sql > execute.out 2>&1) &
    EXECUTORS=$!
    (cd "$PW" && bench -c 1 -T "$DURATION" -f retain.sql > retain.out 2>&1) &
    RETAINER=$!
    (cd "$PW" && bench -c "$RETENTION_CLIENTS" -j 2 -T "$DURATION" -l --aggregate-interval="$SLICE" \
        --log-prefix=slices -f insert.sql > insert.out 2>&1)
    wait "$RETAINER" "$EXECUTORS"
    kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
    # One line per slice: transactions (all threads' logs) and the worst latency.
    python3 - "$T0" "$PW"/slices.* > "$SLICES" <<'PY'
import json, sys
t0, slices = float(sys.argv[1]), {}
for f in sys.argv[2:]:
    for line in open(f):
        v = line.split()  # interval_start, transactions, sum, sum of squares, min, max (µs), failures
        s = slices.setdefault(int(v[0]), {"ok": 0, "p99_ms": 0.0, "non_2xx": 0, "errors": 0})
        s["ok"] += int(v[1])
        s["p99_ms"] = max(s["p99_ms"], int(v[5]) / 1000)
        s["errors"] += int(v[6]) if len(v) > 6 else 0
starts = sorted(slices)
for i, start in enumerate(starts):
    end = starts[i + 1] if i + 1 < len(starts) else start + (starts[1] - starts[0] if len(starts) > 1 else 10)
    print(json.dumps({"start": start - t0, "end": end - t0, "run": slices[start]}))
PY
    read -r committed < <(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$PW/insert.out")
    read -r handled distinct kept unhandled unfinished ins del < <(pg "$PLAIN" "$PG_PORT" -At -F' ' -c "
        SELECT (SELECT count(*) FROM plain_orders), (SELECT count(DISTINCT event_id) FROM plain_orders),
               (SELECT count(*) FROM plain_events),
               (SELECT count(*) FROM plain_events e WHERE NOT EXISTS (SELECT FROM plain_orders o WHERE o.event_id = e.id)),
               (SELECT count(*) FROM plain_events WHERE status <> 'succeeded'),
               n_tup_ins, n_tup_del
          FROM pg_stat_user_tables WHERE relid = 'plain_events'::regclass")
    python3 "$WORK/report.py" "$SAMPLES" "$SLICES" "$DURATION" "$SETTLE" \
        "plain: $DURATION s at $RETENTION_CLIENTS pgbench clients, events finished over $RETAIN ago deleted" \
        plain_events plain_attempts "committed inserts" "$WORK/ratios-plain.json" | tee -a "$RESULTS"
    log ""
    log "rows == commits: $committed inserts committed; $handled handler rows for $distinct distinct events, $kept events kept,"
    log "  $unhandled kept without a handler row, $unfinished unfinished (executors ran 10 s past the inserts)"
    [ "$handled" = "$committed" ] && [ "$distinct" = "$handled" ] && [ "$unhandled" = 0 ] && [ "$unfinished" = 0 ] \
        && log "rows == commits: yes" || log "rows == commits: NO"
    if [ -f "$WORK/ratios-retention.json" ]; then
        python3 - "$WORK/ratios-retention.json" "$WORK/ratios-plain.json" <<'PY' | tee -a "$RESULTS"
import json, sys
ours, plain = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print()
print("last minute against the first of the steady part, the extension (retention) and plain SQL (plain)")
print("%-50s %9s %9s" % ("", "extension", "plain"))
for name in ours:
    if name in plain:
        print("%-50s %9.2f %9.2f" % (name, ours[name], plain[name]))
PY
    fi
    say "stopping the cluster"
    stop_clusters
fi
say "results in $RESULTS"
