"""Executors and retries are shared fairly between owners: another owner's
backlog never hides a due retry, and slow handlers of some owners never
hold up another owner's events for longer than an executor takes to start.

The module's cluster has 4 executor slots, at most 2 per owner, executors
that leave after 2 s without work, and 10 retries per second per owner.
"""

import threading
import time

import requests

from hookkit import wait_for_value, wait_until
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.max_executors": 4, "webhook.max_executors_per_owner": 2,
                                     "webhook.max_retries_per_second": 10})
tenants = tenants_fixture("alice", "bob", "carol")


def post(c, wf, body=None):
    r = requests.post(c.hook_url(wf), json=body if body is not None else {}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def event(c, event_id):
    return c.row("SELECT status, attempts FROM webhook.events WHERE id = %s", (event_id,))


def fails_once(t) -> str:
    """A handler whose first run fails and every later one succeeds."""
    t.sql(f"CREATE SEQUENCE {t.name}.runs")
    t.sql(f"""CREATE FUNCTION {t.name}.fails_once(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              BEGIN
                  IF nextval('{t.name}.runs') = 1 THEN RAISE EXCEPTION 'first run fails'; END IF;
                  RETURN '{{}}';
              END $h$""")
    return f"{t.name}.fails_once"


def test_another_owners_backlog_does_not_hide_a_due_retry(private, tenants):
    """alice's ordered workflow has a failing head (retried in an hour) and
    1,100 followers that cannot run before it, all due before bob's retry.
    bob's executor has left (idle 2 s) when his retry falls due: the
    listener's once-a-second round must find bob. It used to read only the
    first 1,000 due events, all alice's followers, and bob's retry stayed
    pending."""
    alice, bob = tenants["alice"], tenants["bob"]
    alice.sql(f"""CREATE FUNCTION {alice.name}.head_fails(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                  BEGIN RAISE EXCEPTION 'the head fails'; END $h$""")
    ordered = alice.create_workflow(handler=f"{alice.name}.head_fails", name="ordered")
    alice.sql("SELECT webhook_set_ordered(%s, true)", (ordered,))
    alice.sql("SELECT webhook_set_retry(%s, 5, '1 hour', '1 hour')", (ordered,))
    head = post(private, ordered)
    wait_for_value(lambda: event(private, head), {"status": "failed", "attempts": 1}, timeout=10,
                   what="the head failed once")
    with requests.Session() as session:
        for n in range(1, 1101):
            r = session.post(private.hook_url(ordered), json={"n": n}, timeout=10)
            assert r.status_code == 200, r.text
    followers = "SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND status = 'pending' " \
                "AND attempts = 0 AND next_attempt_at <= now()"
    assert private.scalar(followers, (ordered,)) == 1100

    retried = bob.create_workflow(handler=fails_once(bob), name="retried")
    # The retry comes 3-6 s after the first attempt (jitter): after bob's
    # executor left.
    bob.sql("SELECT webhook_set_retry(%s, 3, '6 s', '6 s')", (retried,))
    ev = post(private, retried)
    wait_for_value(lambda: event(private, ev), {"status": "failed", "attempts": 1}, timeout=10,
                   what="bob's first attempt failed")
    wait_for_value(lambda: event(private, ev)["status"], "succeeded", timeout=15, what="bob's retry ran")
    assert event(private, ev) == {"status": "succeeded", "attempts": 2}
    # alice's followers are still waiting for their head, untouched.
    assert private.scalar(followers, (ordered,)) == 1100
    assert event(private, head) == {"status": "failed", "attempts": 1}


def sleeping(t, seconds: float) -> str:
    t.sql(f"CREATE TABLE {t.name}.ran (event_id bigint, ended timestamptz DEFAULT clock_timestamp())")
    t.sql(f"""CREATE FUNCTION {t.name}.sleepy(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              BEGIN
                  PERFORM pg_sleep({seconds});
                  INSERT INTO {t.name}.ran (event_id) VALUES (e.id);
                  RETURN '{{}}';
              END $h$""")
    return f"{t.name}.sleepy"


def running_handlers(c, owner: str) -> int:
    return c.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event = 'PgSleep'", (f"webhook_ext executor for {owner}",))


def test_slow_handlers_of_two_owners_leave_a_slot_for_a_third(private, tenants):
    """alice and bob each send two events to handlers that sleep 15 s (under
    the 30 s default deadline); each could have two executors, enough to fill
    the 4 slots. carol's event then used to wait for a slow handler to end
    (15 s). An owner's second executor now starts only while another slot
    stays free, so carol's event runs at once."""
    alice, bob, carol = tenants["alice"], tenants["bob"], tenants["carol"]
    slow = {t.name: t.create_workflow(handler=sleeping(t, 15), name="slow") for t in (alice, bob)}
    for t in (alice, bob):
        for n in range(2):
            post(private, slow[t.name], {"n": n})
    # Positive control: the slow handlers took executors; three of them run
    # at once (the fourth slot is the reserve).
    wait_for_value(lambda: running_handlers(private, alice.name) + running_handlers(private, bob.name), 3,
                   timeout=5, what="three slow handlers running")
    quick = carol.create_workflow(name="quick")
    t0 = time.monotonic()
    ev = post(private, quick)
    wait_for_value(lambda: event(private, ev)["status"], "succeeded", timeout=5, what="carol's event ran")
    waited = time.monotonic() - t0
    assert waited < 3, waited
    # The slow handlers were still running meanwhile.
    assert private.scalar(f"SELECT count(*) FROM {alice.name}.ran") == 0
    assert private.scalar(f"SELECT count(*) FROM {bob.name}.ran") == 0
    # Every slow event still runs, within a handler's time of the others.
    for t in (alice, bob):
        wait_for_value(lambda: private.scalar(f"SELECT count(*) FROM {t.name}.ran"), 2, timeout=40,
                       what=f"{t.name}'s slow events ran")


PARALLEL = ("SET max_parallel_workers_per_gather = 8; SET max_parallel_workers = 8; "
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0")


def test_a_parallel_query_cannot_take_the_executors_background_worker_slots(make_cluster):
    """Executors are background workers, and so are parallel query workers:
    any role may raise max_parallel_workers in its session and take every
    free slot (max_worker_processes = 8 here). mallory, a role without
    webhook_admin, runs a 12 s parallel query that does; alice's event used
    to wait for it ("no background worker slot is free"). The executor pool
    holds its slots from server start, so the event runs at once."""
    from conftest import uniq
    from hookkit import wait_ready
    from tenantkit import make_tenant
    c = make_cluster(conf={"webhook.workers": 1, "webhook.max_executors": 4, "max_worker_processes": 8})
    c.sql("CREATE EXTENSION webhook_ext")
    wait_ready(c)
    alice = make_tenant(c, uniq("alice"))
    mallory = make_tenant(c, uniq("mallory"), admin=False)
    assert not c.scalar("SELECT pg_has_role(%s, 'webhook_admin', 'member')", (mallory.name,))
    wf = alice.create_workflow()
    table = f"{mallory.name}.t"
    mallory.sql(f"CREATE TABLE {table} WITH (parallel_workers = 8, fillfactor = 10) AS "
                "SELECT i FROM generate_series(1, 4000) i")
    mallory.sql(f"""CREATE FUNCTION {mallory.name}.slow(i int) RETURNS int LANGUAGE plpgsql PARALLEL SAFE AS
                    $f$ BEGIN PERFORM pg_sleep(0.02); RETURN i; END $f$""")
    outcome = {}

    def hog():
        with mallory.connect() as conn:
            for setting in PARALLEL.split("; "):
                conn.execute(setting)
            conn.execute("SET statement_timeout = '12s'")
            try:
                conn.execute(f"SELECT sum({mallory.name}.slow(i)) FROM {table}")
                outcome["result"] = "finished"
            except Exception as e:  # noqa: BLE001  (the statement timeout is the expected end)
                outcome["result"] = type(e).__name__

    thread = threading.Thread(target=hog)
    thread.start()
    try:
        wait_until(lambda: c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'"),
                   timeout=10, what="mallory's parallel workers running")
        # Positive control: mallory's query took every free slot, so another
        # parallel query gets no worker at all.
        with c.connect() as conn:
            for setting in PARALLEL.split("; "):
                conn.execute(setting)
            plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM {table}").fetchone()[0]
        gather = plan[0]["Plan"]
        while gather["Node Type"] != "Gather":
            gather = gather["Plans"][0]
        assert (gather["Workers Planned"] > 0, gather["Workers Launched"]) == (True, 0), gather
        t0 = time.monotonic()
        ev = post(c, wf)
        wait_for_value(lambda: event(c, ev)["status"], "succeeded", timeout=15, what="alice's event ran")
        waited = time.monotonic() - t0
        assert waited < 3, waited
        assert thread.is_alive()  # mallory's query was running all along
    finally:
        thread.join(30)
    assert outcome == {"result": "QueryCanceled"}, outcome


def test_an_owners_retries_are_bounded_per_second(private, tenants):
    """50 events whose handler always fails, with a policy of a thousand
    attempts a microsecond apart (clamped to webhook.min_retry_delay, 100 ms):
    500 retries a second, over 2,000 in 5 s before. The owner's executors
    now start at most webhook.max_retries_per_second (10 here) however many
    are due (the others are postponed at that rate); first attempts do not
    count, nor wait behind them."""
    alice = tenants["alice"]
    alice.sql(f"""CREATE FUNCTION {alice.name}.failing(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS
                  $h$ BEGIN RAISE EXCEPTION 'always'; END $h$""")
    wf = alice.create_workflow(handler=f"{alice.name}.failing", name="failing")
    alice.sql("SELECT webhook_set_retry(%s, 1000, '1 microsecond', '1 microsecond')", (wf,))
    with requests.Session() as session:
        for n in range(50):
            assert session.post(private.hook_url(wf), json={"n": n}, timeout=10).status_code == 200
    # Every first attempt runs at once, budget or not.
    first = "SELECT count(*) FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id " \
            "WHERE e.workflow_id = %s AND a.attempt = 1"
    wait_for_value(lambda: private.scalar(first, (wf,)), 50, timeout=10, what="50 first attempts")
    time.sleep(1)
    window = "SELECT count(*) FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id " \
             "WHERE e.workflow_id = %s AND a.attempt > 1 AND a.started_at >= %s AND a.started_at < %s"
    start = private.scalar("SELECT clock_timestamp()")
    time.sleep(5)
    end = private.scalar("SELECT clock_timestamp()")
    retries = private.scalar(window, (wf, start, end))
    # 10 a second, plus a second's burst; and they do run.
    assert 30 <= retries <= 60, retries
    # Positive control: the workflow asked for far more: every event is
    # still failing, with hundreds of attempts left.
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND status = 'failed'",
                          (wf,)) == 50
    # The owner's first attempts do not wait behind the retries.
    other = alice.create_workflow(name="healthy")
    t0 = time.monotonic()
    ev = post(private, other)
    wait_for_value(lambda: event(private, ev)["status"], "succeeded", timeout=5, what="a first attempt ran")
    assert time.monotonic() - t0 < 1.5
