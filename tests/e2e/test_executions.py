"""Handlers leave the listener. They run in executor processes, one
owner's handlers per executor, after the caller got its answer (default and
custom methods); failed attempts are retried with backoff and end `dead`;
every attempt is recorded; ordered workflows run one event at a time.

Each test uses the module's private cluster and its own tenants.
"""

import threading
import time

import pytest
import requests

from hookkit import wait_for_status, wait_for_value, wait_until

from conftest import uniq
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.max_executors": 6, "webhook.max_executors_per_owner": 2})
tenants = tenants_fixture("alice", "bob")


def post(c, wf, body=None, timeout=10):
    return requests.post(c.hook_url(wf), json=body if body is not None else {}, timeout=timeout)


def wait_for(fn, expected, timeout: float, what: str):
    """Polls ``fn`` until it returns ``expected``; raises with its last value."""
    return wait_for_value(fn, expected, timeout, interval=0.02, what=what)


def event(c, event_id):
    return c.row("SELECT * FROM webhook.events WHERE id = %s", (event_id,))


def attempts(c, event_id):
    return c.rows("SELECT attempt, outcome, sqlstate, message, started_at, ended_at FROM webhook.attempts "
                  "WHERE event_id = %s ORDER BY attempt", (event_id,))


def side_table(t) -> str:
    """A table the tenant's handlers record into: event id, run number, pid,
    start and end of the run."""
    table = f"{t.name}.ran"
    t.sql(f"CREATE TABLE {table} (event_id bigint, n int, pid int DEFAULT pg_backend_pid(), "
          f"started timestamptz, ended timestamptz DEFAULT clock_timestamp(), who text DEFAULT current_user, "
          f"session_user_name text DEFAULT session_user)")
    return table


def sleeping_handler(t, table: str, seconds: float, name: str = "sleepy") -> str:
    t.sql(f"""CREATE FUNCTION {t.name}.{name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              DECLARE t0 timestamptz := clock_timestamp();
              BEGIN
                  PERFORM pg_sleep({seconds});
                  INSERT INTO {table} (event_id, n, started) VALUES (e.id, (e.params->>'n')::int, t0);
                  RETURN e.params;
              END $h$""")
    return f"{t.name}.{name}"


def test_acknowledgement_does_not_wait_for_handlers(private, tenants):
    """Before: four requests to a handler sleeping 2 s held another
    workflow's acknowledgement for 5.8 s. Now both acknowledge at once and
    the handlers run afterwards."""
    alice, bob = tenants["alice"], tenants["bob"]
    table = side_table(alice)
    slow = alice.create_workflow(handler=sleeping_handler(alice, table, 2), name="slow")
    quick = bob.create_workflow()
    timings = {}

    def send(key, wf):
        t0 = time.monotonic()
        r = post(private, wf, {"n": 1})
        timings[key] = (r.status_code, time.monotonic() - t0, r.json()["event_id"])

    threads = [threading.Thread(target=send, args=(f"slow{i}", slow)) for i in range(4)]
    threads += [threading.Thread(target=send, args=(f"quick{i}", quick)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(status == 200 for status, _, _ in timings.values()), timings
    assert max(took for _, took, _ in timings.values()) < 0.5, timings
    slow_ids = [timings[f"slow{i}"][2] for i in range(4)]
    assert all(event(private, ev)["status"] == "pending" for ev in slow_ids)
    wait_for(lambda: private.scalar(f"SELECT count(*) FROM {table}"), 4, 15, "slow handlers ran")
    assert all(event(private, ev)["status"] == "succeeded" for ev in slow_ids)
    # Two executors for alice (webhook.max_executors_per_owner = 2): the
    # sleeps overlapped.
    pids = {r["pid"] for r in private.rows(f"SELECT pid FROM {table}")}
    assert len(pids) == 2, pids


def test_failed_attempts_are_retried_with_backoff_then_succeed_once(private, tenants):
    alice = tenants["alice"]
    table = side_table(alice)
    # Fails twice (a sequence counts the runs; it is not rolled back), then
    # succeeds; each run writes before failing, which must not survive.
    alice.sql(f"CREATE SEQUENCE {alice.name}.runs")
    alice.sql(f"""CREATE FUNCTION {alice.name}.flaky(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                  DECLARE n int := nextval('{alice.name}.runs');
                  BEGIN
                      INSERT INTO {table} (event_id, n, started) VALUES (e.id, n, clock_timestamp());
                      IF n < 3 THEN
                          RAISE EXCEPTION 'try % of event %', n, e.id USING ERRCODE = '40001';
                      END IF;
                      RETURN jsonb_build_object('attempt', e.attempts);
                  END $h$""")
    wf = alice.create_workflow(handler=f"{alice.name}.flaky")
    alice.sql("SELECT webhook_set_retry(%s, 5, '300 ms', '10 s')", (wf,))
    ev = post(private, wf).json()["event_id"]
    wait_for_status(private, ev, "succeeded", 15)
    rows = attempts(private, ev)
    assert [(a["attempt"], a["outcome"], a["sqlstate"]) for a in rows] == [
        (1, "failed", "40001"), (2, "failed", "40001"), (3, "succeeded", None)]
    assert rows[0]["message"] == f"try 1 of event {ev}"
    # Exponential backoff with jitter: [d/2, d) after attempt 1, [d, 2d) after attempt 2.
    gap1 = (rows[1]["started_at"] - rows[0]["ended_at"]).total_seconds()
    gap2 = (rows[2]["started_at"] - rows[1]["ended_at"]).total_seconds()
    assert 0.15 <= gap1 < 3.0, gap1
    assert 0.3 <= gap2 < 3.0, gap2
    final = event(private, ev)
    assert (final["attempts"], final["error"], final["next_attempt_at"]) == (3, None, None)
    # The failed runs' writes were rolled back with them: one effect.
    assert private.rows(f"SELECT event_id, n FROM {table}") == [{"event_id": ev, "n": 3}]


def test_last_failed_attempt_makes_the_event_dead_and_replay_runs_it_again(private, tenants):
    alice = tenants["alice"]
    table = side_table(alice)
    alice.sql(f"CREATE TABLE {alice.name}.switch (broken boolean)")
    alice.sql(f"INSERT INTO {alice.name}.switch VALUES (true)")
    alice.sql(f"""CREATE FUNCTION {alice.name}.fragile(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                  BEGIN
                      IF (SELECT broken FROM {alice.name}.switch) THEN
                          RAISE EXCEPTION 'downstream unavailable' USING ERRCODE = '08006';
                      END IF;
                      INSERT INTO {table} (event_id, started) VALUES (e.id, clock_timestamp());
                      RETURN '{{}}';
                  END $h$""")
    wf = alice.create_workflow(handler=f"{alice.name}.fragile")
    alice.sql("SELECT webhook_set_retry(%s, 3, '100 ms', '200 ms')", (wf,))
    ev = post(private, wf).json()["event_id"]
    wait_for_status(private, ev, "dead", 10)
    dead = event(private, ev)
    assert (dead["attempts"], dead["next_attempt_at"], dead["error"]) == (3, None, "08006: downstream unavailable")
    assert [(a["attempt"], a["outcome"]) for a in attempts(private, ev)] == [(1, "failed"), (2, "failed"),
                                                                           (3, "failed")]
    # The owner sees its attempts; another tenant does not.
    assert alice.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = %s", (ev,)) == 3
    assert tenants["bob"].scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = %s", (ev,)) == 0
    # Fixed downstream: a replay of the dead event runs the handler once.
    alice.sql(f"UPDATE {alice.name}.switch SET broken = false")
    replayed = alice.scalar("SELECT webhook_replay(%s)", (ev,))
    assert replayed["status"] == 200
    new = event(private, replayed["event_id"])
    assert (new["status"], new["origin"], new["replay_of"], new["attempts"]) == ("succeeded", "replay", ev, 1)
    assert private.scalar(f"SELECT count(*) FROM {table}") == 1
    assert event(private, ev)["status"] == "dead"


def test_ordered_workflow_runs_events_one_at_a_time_in_arrival_order(private, tenants):
    alice = tenants["alice"]
    table = side_table(alice)
    wf = alice.create_workflow(handler=sleeping_handler(alice, table, 0.1), name="ordered")
    alice.sql("SELECT webhook_set_ordered(%s, true)", (wf,))
    ids = []
    lock = threading.Lock()

    def send(n):
        r = post(private, wf, {"n": n})
        with lock:
            ids.append(r.json()["event_id"])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    wait_for(lambda: private.scalar(f"SELECT count(*) FROM {table}"), 8, 15, "ordered handlers ran")
    runs = private.rows(f"SELECT event_id, started, ended FROM {table} ORDER BY started")
    assert [r["event_id"] for r in runs] == sorted(ids)
    for before, after in zip(runs, runs[1:]):
        assert after["started"] >= before["ended"], (before, after)


def test_unordered_workflow_runs_events_in_parallel(private, tenants):
    """Positive control for the ordered test: the same handler overlaps by default."""
    alice = tenants["alice"]
    table = side_table(alice)
    wf = alice.create_workflow(handler=sleeping_handler(alice, table, 1.0), name="parallel")
    first = post(private, wf, {"n": 1}).json()["event_id"]
    wait_until(lambda: (event(private, first)["attempts"], private.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook_ext executor' "
        "AND wait_event = 'PgSleep'")), until=lambda seen: seen[0] == 0 and seen[1] >= 1, timeout=5,
        interval=0.02, what="first handler sleeping (attempts, sleeping executors)")
    post(private, wf, {"n": 2})
    wait_for(lambda: private.scalar(f"SELECT count(*) FROM {table}"), 2, 10, "handlers ran")
    a, b = private.rows(f"SELECT started, ended FROM {table} ORDER BY started")
    assert b["started"] < a["ended"], (a, b)


def test_handlers_of_a_nologin_owner_run_as_that_owner_and_cannot_get_back_to_the_superuser(private, tenants):
    """Executors connect as the bootstrap superuser and make the owner the
    session user: NOLOGIN owners are served, and a handler cannot reset its
    way back to the connecting superuser."""
    alice = tenants["alice"]
    table = side_table(alice)
    attempts_sql = {
        "reset_session_authorization": "RESET SESSION AUTHORIZATION",
        "session_authorization_default": "SET SESSION AUTHORIZATION DEFAULT",
        "set_config": "PERFORM set_config('session_authorization', 'postgres', false)",
        "reset_role": "RESET ROLE",
        "set_role": "SET ROLE postgres",
    }
    wfs = {}
    for label, stmt in attempts_sql.items():
        alice.sql(f"""CREATE FUNCTION {alice.name}.{label}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                      BEGIN
                          {stmt};
                          INSERT INTO {table} (event_id, started) VALUES (e.id, clock_timestamp());
                          RETURN '{{}}';
                      END $h$""")
        wfs[label] = alice.create_workflow(handler=f"{alice.name}.{label}", name=label)
        alice.sql("SELECT webhook_set_retry(%s, 1)", (wfs[label],))
    plain = alice.create_workflow(handler=sleeping_handler(alice, table, 0), name="plain")
    # Positive control: in a session the superuser opened and handed to alice
    # (as an executor's is), each way back to the session's authorization
    # makes it the superuser again.
    for label in ("reset_session_authorization", "session_authorization_default", "set_config"):
        with private.connect() as conn:
            conn.execute(f'SET SESSION AUTHORIZATION "{alice.name}"')
            assert conn.execute("SELECT current_user, session_user").fetchone() == (alice.name, alice.name)
            conn.execute(attempts_sql[label].replace("PERFORM", "SELECT"))
            assert conn.execute("SELECT current_user, session_user").fetchone() == ("postgres", "postgres"), label
    private.sql(f'ALTER ROLE "{alice.name}" NOLOGIN')
    try:
        ok = post(private, plain, {"n": 1}).json()["event_id"]
        wait_for_status(private, ok, "succeeded", 10)
        run = private.row(f"SELECT who, session_user_name, pid FROM {table} WHERE event_id = %s", (ok,))
        assert (run["who"], run["session_user_name"]) == (alice.name, alice.name)
        # Positive control: the executor's connection is the superuser's.
        assert private.scalar("SELECT usename FROM pg_stat_activity WHERE pid = %s", (run["pid"],)) == "postgres"
        for label, wf in wfs.items():
            ev = post(private, wf).json()["event_id"]
            wait_for_status(private, ev, "dead", 10)
            param = "role" if label.endswith("role") else "session_authorization"
            assert event(private, ev)["error"] == (
                f'42501: cannot set parameter "{param}" within security-definer function'), label
        assert private.scalar(f"SELECT count(*) FROM {table}") == 1
    finally:
        private.sql(f'ALTER ROLE "{alice.name}" LOGIN')


def test_a_full_pool_still_serves_every_owner(private, tenants):
    """With one executor slot for many owners, idle executors give way."""
    alice, bob = tenants["alice"], tenants["bob"]
    private.sql("ALTER SYSTEM SET webhook.max_executors = 1")
    private.sql("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        ids = []
        for t in (alice, bob, alice, bob):
            wf = t.create_workflow(name="pool" + str(len(ids)))
            ids.append(post(private, wf).json()["event_id"])
        for ev in ids:
            wait_for_status(private, ev, "succeeded", 15)
    finally:
        private.sql("ALTER SYSTEM RESET webhook.max_executors")
        private.sql("SELECT pg_reload_conf()")


def test_retry_policy_is_checked(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="policy")
    attempts = "max_attempts must be between 1 and 1000 (1: never retried)"
    delays = "delay must be positive, and max_delay at least delay and at most 30 days"
    for args, message in [((0, "1 second", "1 hour"), attempts), ((1001, "1 second", "1 hour"), attempts),
                          ((3, "0 seconds", "1 hour"), delays), ((3, "2 hours", "1 hour"), delays),
                          ((3, "1 second", "1000000 years"), delays), ((None, "1 second", "1 hour"), attempts)]:
        err = alice.error("SELECT webhook_set_retry(%s, %s, %s::interval, %s::interval)", (wf, *args),
                          sqlstate="22023")
        assert err["message"] == message, err
    # The table holds the same rules for direct writes.
    alice.error("UPDATE webhook.workflows SET retry_max_delay = '1000 years' WHERE id = %s", (wf,),
                sqlstate="23514")
    row = alice.row("SELECT max_attempts, retry_delay::text, retry_max_delay::text FROM "
                    "webhook_set_retry(%s, 7, '2 seconds', '30 days')", (wf,))
    assert row == {"max_attempts": 7, "retry_delay": "00:00:02", "retry_max_delay": "30 days"}
    assert alice.row("SELECT ordered FROM webhook_set_ordered(%s, true)", (wf,)) == {"ordered": True}
    tenants["bob"].error("SELECT webhook_set_retry(%s, 3)", (wf,), sqlstate="42704")
    tenants["bob"].error("SELECT webhook_set_ordered(%s, true)", (wf,), sqlstate="42704")


def test_a_busy_pool_gives_way_to_a_waiting_owner(private, tenants):
    """With one executor slot, an owner whose handlers keep it busy does not
    starve another owner: the busy executor finishes its current handler and
    exits, the waiting owner's events run in an executor of its own, and the
    busy owner's work goes on afterwards in a new executor."""
    alice, bob = tenants["alice"], tenants["bob"]
    table, bob_table = side_table(alice), side_table(bob)
    slow = alice.create_workflow(handler=sleeping_handler(alice, table, 0.3), name="busy")
    quick = bob.create_workflow(handler=sleeping_handler(bob, bob_table, 0, name="quick"), name="waiting")

    def executors_of(t) -> list[int]:
        return [r["pid"] for r in private.rows("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                               "ORDER BY pid", (f"webhook_ext executor for {t.name}",))]

    private.sql("ALTER SYSTEM SET webhook.max_executors = 1")
    private.sql("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        for n in range(20):  # about 6 s of alice's work
            post(private, slow, {"n": n})
        running = wait_until(lambda: private.rows(f"SELECT DISTINCT pid FROM {table}"), timeout=5, interval=0.02,
                             what="alice's handlers running")
        # One executor, alice's, named for her in pg_stat_activity.
        [busy] = [r["pid"] for r in running]
        assert executors_of(alice) == [busy]
        t0 = time.monotonic()
        bob_events = [post(private, quick, {"n": n}).json()["event_id"] for n in range(3)]
        for ev in bob_events:
            wait_for_status(private, ev, "succeeded", 10)
        waited = time.monotonic() - t0
        assert waited < 3, waited
        # alice's executor gave way: its process exited.
        wait_for(lambda: private.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (busy,)), 0, 5,
                 f"alice's executor {busy} exited")
        # bob's handlers ran as bob, in processes other than alice's, after
        # her last handler in that executor ended.
        bob_runs = private.rows(f"SELECT event_id, n, pid, started, ended, who, session_user_name FROM {bob_table} "
                                "ORDER BY event_id")
        assert [(r["event_id"], r["n"], r["who"], r["session_user_name"]) for r in bob_runs] == [
            (ev, n, bob.name, bob.name) for n, ev in enumerate(bob_events)], bob_runs
        assert busy not in {r["pid"] for r in bob_runs}, bob_runs
        in_busy = private.row(f"SELECT count(*) AS n, max(ended) AS last FROM {table} WHERE pid = %s", (busy,))
        assert bob_runs[0]["started"] >= in_busy["last"], (bob_runs, in_busy)
        # alice still had work left when bob got his turn; it all runs
        # afterwards, in a new executor.
        assert 1 <= in_busy["n"] < 20, in_busy
        wait_for(lambda: private.scalar(f"SELECT count(*) FROM {table}"), 20, 20, "alice's remaining handlers ran")
        later = private.rows(f"SELECT DISTINCT pid FROM {table} WHERE started > %s", (bob_runs[-1]["ended"],))
        assert later and busy not in {r["pid"] for r in later}, later
        assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND status = 'succeeded'",
                              (slow,)) == 20
    finally:
        private.sql("ALTER SYSTEM RESET webhook.max_executors")
        private.sql("SELECT pg_reload_conf()")


def test_a_failing_head_holds_back_an_ordered_workflow_until_it_is_dead(private, tenants):
    alice = tenants["alice"]
    table = side_table(alice)
    alice.sql(f"""CREATE FUNCTION {alice.name}.head_fails(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                  BEGIN
                      IF (e.params->>'n')::int = 0 THEN RAISE EXCEPTION 'head fails'; END IF;
                      INSERT INTO {table} (event_id, n, started) VALUES (e.id, (e.params->>'n')::int,
                                                                         clock_timestamp());
                      RETURN e.params;
                  END $h$""")
    wf = alice.create_workflow(handler=f"{alice.name}.head_fails", name="ordered-head")
    alice.sql("SELECT webhook_set_ordered(%s, true)", (wf,))
    alice.sql("SELECT webhook_set_retry(%s, 3, '300 ms', '300 ms')", (wf,))
    ids = [post(private, wf, {"n": n}).json()["event_id"] for n in range(3)]
    wait_for(lambda: private.scalar(f"SELECT count(*) FROM {table}"), 2, 15, "followers ran")
    head = event(private, ids[0])
    assert (head["status"], head["attempts"]) == ("dead", 3)
    last_attempt = attempts(private, ids[0])[-1]
    runs = private.rows(f"SELECT event_id, started FROM {table} ORDER BY started")
    assert [r["event_id"] for r in runs] == ids[1:]
    assert runs[0]["started"] >= last_attempt["ended_at"], (runs, last_attempt)


def test_an_idle_executor_exits(private, tenants):
    """webhook.executor_idle_timeout (2 s in the test clusters)."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="idle")
    ev = post(private, wf).json()["event_id"]
    wait_for_status(private, ev, "succeeded", 10)
    name = f"webhook_ext executor for {alice.name}"
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    assert private.scalar(count, (name,)) == 1  # positive control: it ran there
    wait_for(lambda: private.scalar(count, (name,)), 0, 6, "alice's executors gone")


def test_tenants_cannot_write_attempts_or_change_the_executor_settings(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="attempts")
    ev = post(private, wf).json()["event_id"]
    wait_for_status(private, ev, "succeeded", 10)
    # Positive control: the owner reads its attempt and its event.
    assert alice.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = %s", (ev,)) == 1
    assert alice.scalar("SELECT count(*) FROM webhook.events WHERE id = %s", (ev,)) == 1
    writes = [
        ("INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome) "
         "VALUES (%s, 9, %s, now(), now(), 'succeeded')", (ev, wf), "attempts"),
        ("UPDATE webhook.attempts SET outcome = 'failed' WHERE event_id = %s", (ev,), "attempts"),
        ("DELETE FROM webhook.attempts WHERE event_id = %s", (ev,), "attempts"),
        ("UPDATE webhook.events SET status = 'pending', next_attempt_at = now() WHERE id = %s", (ev,), "events"),
    ]
    # Positive control: each write is valid and hits one row (a superuser's,
    # rolled back).
    with private.connect() as conn:
        for query, params, _ in writes:
            with conn.transaction(force_rollback=True):
                assert conn.execute(query, params).rowcount == 1, query
    for query, params, table in writes:
        err = alice.error(query, params, sqlstate="42501")
        assert err["message"] == f"permission denied for table {table}", err
    assert private.rows("SELECT attempt, outcome FROM webhook.attempts WHERE event_id = %s", (ev,)) == [
        {"attempt": 1, "outcome": "succeeded"}]
    settings = {"webhook.max_executors": "4", "webhook.max_executors_per_owner": "1",
                "webhook.executor_idle_timeout": "'10s'", "webhook.notify": "on"}
    for setting, value in settings.items():
        # Positive control: the value is valid (a superuser may write it).
        private.sql(f"ALTER SYSTEM SET {setting} = {value}")
        private.sql(f"ALTER SYSTEM RESET {setting}")
        err = alice.error(f"SET {setting} = {value}", sqlstate="55P02")
        assert err["message"] == f'parameter "{setting}" cannot be changed now', err
        err = alice.error(f"ALTER SYSTEM SET {setting} = {value}", sqlstate="42501")
        assert err["message"] == f'permission denied to set parameter "{setting}"', err


@pytest.mark.parametrize("setting, value, message", [
    ("webhook.max_executors", "0", '0 is outside the valid range for parameter "webhook.max_executors" (1 .. 128)'),
    ("webhook.max_executors", "129",
     '129 is outside the valid range for parameter "webhook.max_executors" (1 .. 128)'),
    ("webhook.max_executors_per_owner", "0",
     '0 is outside the valid range for parameter "webhook.max_executors_per_owner" (1 .. 128)'),
    ("webhook.executor_idle_timeout", "'5ms'",
     '5 ms is outside the valid range for parameter "webhook.executor_idle_timeout" (10 .. 3600000)'),
    ("webhook.notify", "'maybe'", 'parameter "webhook.notify" requires a Boolean value'),
])
def test_invalid_executor_settings_are_refused(private, setting, value, message):
    auto_conf = private.datadir + "/postgresql.auto.conf"
    with open(auto_conf) as f:
        before = f.read()
    err = private.sql_error(f"ALTER SYSTEM SET {setting} = {value}", sqlstate="22023")
    assert err["message"] == message, err
    with open(auto_conf) as f:
        assert f.read() == before


def test_no_free_worker_slot_leaves_events_pending_with_a_warning(make_cluster):
    """Executors are background workers: with no slot left in
    max_worker_processes (2 listeners and the logical replication launcher
    take all 3), events are stored and wait, a WARNING says why, and they run
    once there is room (after a restart with more)."""
    c = make_cluster(conf={"webhook.workers": 2, "max_worker_processes": 3})
    c.sql("CREATE EXTENSION webhook_ext")
    table = "public." + uniq("ran")
    c.sql(f"CREATE TABLE {table} (event_id bigint)")
    c.sql(f"CREATE FUNCTION public.{table[7:]}_h(e webhook.events) RETURNS void LANGUAGE sql "
          f"AS $h$ INSERT INTO {table} VALUES (e.id) $h$")
    wf = str(c.row(f"SELECT id FROM webhook_create_workflow('slots', 'public.{table[7:]}_h'::regproc)")["id"])
    c.wait_for_listeners(2)
    ev = wait_until(lambda: post(c, wf).json()["event_id"], timeout=15, what="listener serving")
    c.wait_for_log(r"could not start an executor: no background worker slot is free", timeout=10)
    time.sleep(1.5)
    assert event(c, ev)["status"] == "pending"
    assert c.scalar(f"SELECT count(*) FROM {table}") == 0
    c.set_conf(max_worker_processes=8)
    c.restart()
    wait_for(lambda: c.scalar(f"SELECT count(*) FROM {table} WHERE event_id = %s", (ev,)), 1, 15,
             "event ran after the restart")
    assert event(c, ev)["status"] == "succeeded"
