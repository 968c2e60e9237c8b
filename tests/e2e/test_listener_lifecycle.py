"""The listener's life cycle: answering soon after start, several listener
processes, DROP/CREATE EXTENSION, reloadable settings, prompt shutdown with a
request in flight, recovery after kill -9 and pg_terminate_backend, disabled
workflows. Handlers run in executor processes: an event stored before a stop
or a crash still gets its handler run, exactly once, afterwards.

Destructive tests use clusters of their own (``make_cluster``).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

import hookkit as hk
from conftest import uniq

CRASH = re.compile(r"PANIC|panicked")


def serving(c, wf_id: str, timeout: float = 1.0):
    """The GET reply if it is a 200 for ``wf_id``; raises with what answered
    instead (None: nothing), which ``wait_until`` reports when its time is up."""
    r = hk.try_request("GET", c.hook_url(wf_id), timeout=timeout)
    if r is not None and r.status == 200 and r.json()["workflow_id"] == wf_id:
        return r
    raise AssertionError(f"GET {wf_id} answered {r!r}")


def ready_cluster(make_cluster, conf: dict | None = None, workers: int = 2):
    """A started cluster with the extension, a side-table workflow, and the
    listener serving it. Returns (cluster, workflow id, side table)."""
    conf = dict(conf or {})
    conf.setdefault("webhook.workers", workers)
    c = make_cluster(conf=conf)
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler)
    c.wait_for_listeners(conf["webhook.workers"])
    hk.wait_until(lambda: serving(c, wf), timeout=15, what="listener serving")
    return c, wf, table


# --------------------------------------------------------------------------
# Start
# --------------------------------------------------------------------------
def test_listener_answers_within_2s_of_start(make_cluster):
    c, wf, table = ready_cluster(make_cluster)
    c.stop("fast")
    assert hk.try_request("GET", c.hook_url(wf), timeout=1) is None, "something answers while stopped"

    c.start()  # pg_ctl start -w returned: the server accepts connections
    t0 = time.monotonic()
    replies = 0
    r = last = None
    while r is None:
        elapsed = time.monotonic() - t0
        if elapsed >= 2.0 or replies >= 200:
            raise AssertionError(f"no 200 within 2 s of pg_ctl start returning ({elapsed:.2f}s, {replies} tries; "
                                 f"last: {last}); log tail:\n{c.log()[-2000:]}")
        replies += 1
        try:
            r = serving(c, wf, timeout=0.5)
        except AssertionError as e:
            last = e
            time.sleep(0.02)
    ev = r.json()["event_id"]
    assert c.scalar("SELECT workflow_id::text FROM webhook.events WHERE id = %s", (ev,)) == wf
    hk.wait_handled(c, table, ev)


def test_two_workers_are_two_listener_processes_both_serving(make_cluster):
    c, wf, table = ready_cluster(make_cluster, workers=2)
    pids = c.wait_for_listeners(2)
    assert len(set(pids)) == 2
    rows = c.rows("SELECT pid, datname, backend_type FROM pg_stat_activity "
                  "WHERE backend_type = 'webhook_ext listener'")
    assert {r["pid"] for r in rows} == set(pids) and all(r["datname"] == "postgres" for r in rows), rows

    # Fresh connections: SO_REUSEPORT spreads them over both processes; each
    # event records the listener that stored it.
    ids = []
    for i in range(40):
        r = hk.post_url(c.hook_url(wf), {"i": i})
        ids.append(hk.assert_success(r, wf)["event_id"])
    assert len(set(ids)) == 40
    assert hk.count_events(c, wf) == 40 + 1  # + the readiness probe
    served_by = {r[0] for r in c.sql("SELECT DISTINCT listener_pid FROM webhook.events WHERE id = ANY(%s)", (ids,))}
    assert served_by == set(pids), f"requests served by {served_by}, listener pids {pids}"
    # The handlers ran in an executor, never in a listener.
    for ev in ids:
        hk.wait_handled(c, table, ev)
    ran_in = {r[0] for r in c.sql(f"SELECT DISTINCT pid FROM {table} WHERE event_id = ANY(%s)", (ids,))}
    assert not ran_in & set(pids), (ran_in, pids)


# --------------------------------------------------------------------------
# DROP / CREATE EXTENSION
# --------------------------------------------------------------------------
def assert_not_installed(r) -> None:
    """README: extension not installed in webhook.database → 503 + Retry-After."""
    assert r.status == 503 and r.headers["retry-after"] == "1", r
    assert r.json() == {"msg": "webhook_ext is not installed in the listener's database"}, r


def test_503_until_create_extension(make_cluster):
    c = make_cluster(conf={"webhook.workers": 2})
    c.wait_for_listeners(2)
    c.wait_for_http()
    some_id = "00000000-0000-4000-8000-000000000001"
    for _ in range(4):
        r = hk.post_url(c.hook_url(some_id), {"a": 1})
        assert_not_installed(r)
    hk.assert_error(hk.get_url(c.base_url + "/nowhere"), 404, "Not found")
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler)
    r = hk.wait_until(lambda: serving(c, wf), timeout=5, what="serving after CREATE EXTENSION")
    ev = r.json()["event_id"]
    hk.wait_handled(c, table, ev)
    # The 503s stored nothing: the one event is the 200's.
    assert [x[0] for x in c.sql("SELECT id FROM webhook.events")] == [ev]


def test_keeps_running_across_drop_and_create_extension(make_cluster):
    # One listener process: each one answers "could not be stored" until it
    # notices the extension is gone, so with two the answers would interleave.
    c, wf, table = ready_cluster(make_cluster, workers=1)
    pids = c.wait_for_listeners(1)
    url = c.hook_url(wf)

    # CASCADE: the handler takes a webhook.events row, so it depends on the extension.
    c.sql("DROP EXTENSION webhook_ext CASCADE")
    t_drop = time.monotonic()
    msgs = []
    for i in range(8):  # over more than one of the listener's 1 s checks
        r = hk.try_request("POST", url, body={"i": i}, timeout=5)
        assert r is not None, "no answer while the extension is dropped"
        # README: "the batch could not be committed" or "extension not
        # installed": 503 + Retry-After either way.
        assert r.status == 503 and r.headers["retry-after"] == "1", r
        msgs.append(r.json())
        time.sleep(0.3)
    # The first batch after the drop fails to store (unless the listener's
    # once-a-second check came first), and makes the listener check: from
    # then on it knows the extension is gone.
    stored_failed = {"msg": "Event could not be stored, retry later"}
    not_installed = {"msg": "webhook_ext is not installed in the listener's database"}
    k = next((i for i, m in enumerate(msgs) if m != stored_failed), 8)
    assert msgs == [stored_failed] * k + [not_installed] * (8 - k) and k <= 1, msgs
    # Unknown paths still answer normally, without the database.
    hk.assert_error(hk.get_url(c.base_url + "/nowhere"), 404, "Not found")
    assert time.monotonic() - t_drop >= 2.0
    assert c.listener_pids() == pids, "listener processes restarted while the extension was dropped"

    c.sql("CREATE EXTENSION webhook_ext")
    handler, table2 = hk.create_side_handler(c)
    wf2 = hk.create_workflow(c, handler)
    t0 = time.monotonic()
    r = hk.wait_until(lambda: serving(c, wf2), timeout=5, interval=0.1,
                      what="requests succeed after CREATE EXTENSION")
    assert time.monotonic() - t0 < 5
    ev = r.json()["event_id"]
    assert [x[0] for x in c.sql("SELECT id FROM webhook.events WHERE workflow_id = %s::uuid", (wf2,))] == [ev]
    hk.wait_handled(c, table2, ev)
    # The old workflow went with the extension.
    hk.assert_error(hk.get_url(url), 404, "Workflow not found")
    assert c.listener_pids() == pids
    assert not CRASH.search(c.log()), c.log()[-3000:]


# --------------------------------------------------------------------------
# Reload
# --------------------------------------------------------------------------
def test_reload_applies_reloadable_settings(make_cluster):
    c, wf, table = ready_cluster(make_cluster, conf={"webhook.max_body_size": 64})
    pids = c.wait_for_listeners(2)
    url = c.hook_url(wf)
    body = b"x" * (20 * 1024)
    text = {"Content-Type": "text/plain"}
    before = hk.count_events(c, wf)
    accepted = []  # event ids of every 200 this test gets

    def post(data):
        r = hk.post_url(url, data, headers=text)
        if r.status == 200:
            accepted.append(hk.assert_success(r, wf)["event_id"])
        return r

    hk.assert_success(post(body), wf)

    # ALTER SYSTEM + pg_reload_conf(): the 20 kB body is now too large.
    c.sql("ALTER SYSTEM SET webhook.max_body_size = '8kB'")
    c.sql("SELECT pg_reload_conf()")
    c.wait_for_setting("webhook.max_body_size", "8kB")

    def rejected():
        # Fresh connections: each may land on either listener process.
        replies = [post(body) for _ in range(6)]
        return replies if all(r.status == 413 for r in replies) else None

    replies = hk.wait_until(rejected, timeout=5, interval=0.2, what="413 after lowering max_body_size")
    for r in replies:
        assert r.json() == {"msg": "Request body too large", "limit_bytes": 8192}, r
    # A body under the new limit still passes.
    hk.assert_success(post(b"y" * 4000), wf)

    # pg_ctl reload with the setting back in the file: accepted again.
    c.sql("ALTER SYSTEM RESET webhook.max_body_size")
    c.reload()
    c.wait_for_setting("webhook.max_body_size", "64kB")
    hk.wait_until(lambda: all(post(body).status == 200 for _ in range(4)),
                  timeout=5, interval=0.2, what="200 after raising max_body_size again")

    # webhook.public_base_url through pg_ctl reload: visible in webhook_url().
    assert c.scalar("SELECT webhook_url(%s::uuid)", (wf,)).endswith(f"/hooks/{wf}")
    c.set_conf(**{"webhook.public_base_url": "https://hooks.example.com/pg"})
    c.reload()
    c.wait_for_setting("webhook.public_base_url", "https://hooks.example.com/pg")
    assert c.scalar("SELECT webhook_url(%s::uuid)", (wf,)) == f"https://hooks.example.com/pg/hooks/{wf}"
    assert c.scalar("SELECT url FROM webhook_find_workflow(%s)", (wf,)) == \
        f"https://hooks.example.com/pg/hooks/{wf}"

    # webhook.header_timeout (default 10 s) lowered: idle connections now close after ~1 s.
    c.sql("ALTER SYSTEM SET webhook.header_timeout = 1000")
    c.sql("SELECT pg_reload_conf()")
    c.wait_for_setting("webhook.header_timeout", "1s")

    def idle_closed_fast():
        with hk.raw_connect(c.http_port) as s:
            return hk.raw_read(s, 4).elapsed < 3

    hk.wait_until(lambda: all(idle_closed_fast() for _ in range(3)), timeout=15, interval=0.1,
                  what="idle connections closed within the lowered header_timeout")

    # Postmaster-level settings do not change on reload: same port, same processes.
    hk.assert_success(post(b"z"), wf)
    assert c.listener_pids() == pids
    # Exactly the accepted requests were stored; no 413 left a row.
    assert hk.count_events(c, wf) == before + len(accepted)
    stored = [r[0] for r in c.sql("SELECT id FROM webhook.events WHERE id = ANY(%s) ORDER BY id", (accepted,))]
    assert stored == sorted(accepted)
    # Handlers run after the answer: every accepted event's, once.
    hk.wait_for_value(lambda: c.scalar(f"SELECT count(*) FROM {table} WHERE event_id = ANY(%s)",
                                       (accepted,)), len(accepted),
                      timeout=15, what="the handler of every accepted event ran")


# --------------------------------------------------------------------------
# Shutdown with a request in flight
# --------------------------------------------------------------------------
def once_slow_handler(c, sleep: float) -> tuple[str, str]:
    """A handler that sleeps ``sleep`` seconds the first time it runs (a
    sequence counts runs, and is not rolled back with the run), then records
    the event in its side table. Returns (handler, side table)."""
    table = "public." + uniq("side")
    name = "public." + uniq("h")
    c.sql(f"CREATE TABLE {table} (event_id bigint PRIMARY KEY, pid int DEFAULT pg_backend_pid())")
    c.sql(f"CREATE SEQUENCE {name}_runs")
    c.sql(f"""CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            IF nextval('{name}_runs') = 1 THEN PERFORM pg_sleep({sleep}); END IF;
            INSERT INTO {table}(event_id) VALUES (e.id);
            RETURN jsonb_build_object('id', e.id);
        END $h$""")
    return name, table


def executor_sleeping(c):
    return c.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext executor' "
                    "AND wait_event = 'PgSleep'")


@pytest.mark.parametrize("mode", ["fast", "smart"])
def test_stop_with_request_in_flight(make_cluster, mode):
    """A `workflow`-method caller waits in the listener while the handler runs
    in an executor. README (Execution, response methods): "A caller waiting
    while the server shuts down gets 503 (its event is stored and will run)";
    README (HTTP contract): on pg_ctl stop a listener "answers the requests in
    flight". So the caller gets exactly that 503, within seconds; idle and
    half-sent connections are closed without an answer; after the restart the
    stored event's handler runs exactly once."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = once_slow_handler(c, sleep=LONG_HANDLER_S)
    wf = hk.create_workflow(c, handler)
    c.sql("SELECT webhook_set_response(%s::uuid, 'workflow')", (wf,))
    fast = hk.create_workflow(c)
    c.wait_for_listeners(1)
    hk.wait_until(lambda: serving(c, fast, timeout=5), timeout=15, what="listener serving")

    # Clients that must not hold the shutdown up: an idle keep-alive connection
    # and one that sent half a request line.
    idle = hk.KeepAlive(c.base_url)
    hk.assert_success(idle.request("GET", c.hook_url(fast)), fast)
    partial = hk.raw_connect(c.http_port)
    partial.sendall(b"POST /hooks/")

    caller, outcome = _start_inflight(c, wf, timeout=30)
    hk.wait_until(lambda: executor_sleeping(c), timeout=10, interval=0.02, what="handler sleeping")
    elapsed = c.stop(mode, timeout=30)
    caller.join(20)
    assert not caller.is_alive(), "the in-flight request hangs after the server stopped"
    assert elapsed < 5, f"pg_ctl stop -m {mode} took {elapsed:.1f}s"
    assert outcome["elapsed"] < 10, outcome
    assert not idle.still_open(), "idle keep-alive connection still open after the server stopped"
    idle.close()
    left = hk.raw_read(partial, 2)
    partial.close()
    # Half a request line is no request: closed, nothing answered.
    assert left.closed and not left.reset and left.data == b"", left

    assert "error" not in outcome, f"the in-flight caller saw the connection close: {outcome}"
    reply = outcome["reply"]
    assert reply.status == 503 and reply.headers["retry-after"] == "1", reply
    assert reply.json() == {"msg": "Server shutting down; the event is stored and its handler will run"}, reply
    c.start()
    # Stored before the stop: it runs after the restart, once.
    ev = c.scalar("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf,))
    hk.wait_handled(c, table, ev, timeout=15)
    assert c.scalar("SELECT status FROM webhook.events WHERE id = %s", (ev,)) == "succeeded"
    assert c.scalar(f"SELECT count(*) FROM {table}") == 1
    assert not CRASH.search(c.log()), c.log()[-3000:]


def _start_inflight(c, wf: str, timeout: float = 40) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call():
        t0 = time.monotonic()
        try:
            outcome["reply"] = hk.post_url(c.hook_url(wf), {"inflight": True}, timeout=timeout)
        except Exception as e:  # noqa: BLE001  (a closed connection is an allowed outcome)
            outcome["error"] = e
        outcome["elapsed"] = time.monotonic() - t0

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    return caller, outcome


LONG_HANDLER_S = 15


def test_fast_stop_interrupts_a_long_running_handler(make_cluster):
    """Fast shutdown does not wait for a handler busy for LONG_HANDLER_S
    seconds: pg_ctl stop -m fast returns within 5 s, nothing of the handler
    is committed, and after the restart the event runs again, once."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = once_slow_handler(c, sleep=LONG_HANDLER_S)
    wf = hk.create_workflow(c, handler)
    c.wait_for_listeners(1)
    ev = hk.wait_until(lambda: serving(c, wf), timeout=15, what="listener serving").json()["event_id"]
    executor = hk.wait_until(lambda: executor_sleeping(c), timeout=10, interval=0.02, what="handler sleeping")
    elapsed = c.stop("fast", timeout=60)
    assert elapsed < 5, (f"pg_ctl stop -m fast took {elapsed:.1f}s: the executor waited for a "
                         f"{LONG_HANDLER_S}s handler instead of aborting it")
    c.start()
    row = hk.wait_handled(c, table, ev, timeout=15)
    assert row["pid"] != executor
    assert c.scalar("SELECT status FROM webhook.events WHERE id = %s", (ev,)) == "succeeded"
    assert c.scalar(f"SELECT count(*) FROM {table}") == 1


def test_pg_terminate_backend_interrupts_a_long_running_handler(make_cluster):
    """pg_terminate_backend() of an executor busy in a handler ends it within
    seconds (like any backend); the attempt is recorded as failed, the
    listener keeps serving, and the retry runs the handler once."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = once_slow_handler(c, sleep=LONG_HANDLER_S)
    slow = hk.create_workflow(c, handler)
    c.sql("SELECT webhook_set_retry(%s::uuid, 3, '1 second')", (slow,))
    fast = hk.create_workflow(c)
    (pid,) = c.wait_for_listeners(1)
    hk.wait_until(lambda: serving(c, fast), timeout=10, what="listener serving")
    ev = hk.assert_success(hk.post_url(c.hook_url(slow), {"slow": 1}), slow)["event_id"]
    executor = hk.wait_until(lambda: executor_sleeping(c), timeout=10, interval=0.02, what="handler sleeping")
    t0 = time.monotonic()
    # Waits up to 5 s for the process to exit; false if it is still there.
    terminated = c.scalar("SELECT pg_terminate_backend(%s, 5000)", (executor,))
    waited = time.monotonic() - t0
    assert terminated is True, f"executor {executor} still running {waited:.1f}s after pg_terminate_backend"
    hk.wait_until(lambda: serving(c, fast), timeout=5, what="listener serving")
    assert c.listener_pids() == [pid]
    row = hk.wait_handled(c, table, ev, timeout=15)
    assert row["pid"] != executor
    attempts = c.rows("SELECT attempt, outcome, sqlstate FROM webhook.attempts WHERE event_id = %s "
                      "ORDER BY attempt", (ev,))
    assert attempts == [{"attempt": 1, "outcome": "failed", "sqlstate": "57P01"},
                        {"attempt": 2, "outcome": "succeeded", "sqlstate": None}], attempts
    assert c.scalar(f"SELECT count(*) FROM {table}") == 1


# --------------------------------------------------------------------------
# Crash and termination recovery
# --------------------------------------------------------------------------
def test_recovers_after_kill_9_of_a_listener(make_cluster):
    """kill -9 of a listener restarts every backend (crash recovery): what was
    committed survives, and an event whose handler was running in an executor
    at the time runs again afterwards, once."""
    c, wf, table = ready_cluster(make_cluster, workers=2)
    pids = c.wait_for_listeners(2)
    hk.assert_success(hk.post_url(c.hook_url(wf), {"before": 1}), wf)
    before = hk.count_events(c, wf)
    slow_handler, slow_table = once_slow_handler(c, sleep=LONG_HANDLER_S)
    slow = hk.create_workflow(c, slow_handler)
    stored = hk.assert_success(hk.post_url(c.hook_url(slow), {"inflight": 1}), slow)["event_id"]
    hk.wait_until(lambda: executor_sleeping(c), timeout=10, interval=0.02, what="handler sleeping")

    victim = pids[0]
    pos = c.log_position()
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    # PostgreSQL restarts every backend (crash recovery), then the listeners.
    c.wait_for_log(r"terminated by signal 9", timeout=5, since=pos)

    def new_listeners():
        now = c.listener_pids()  # fails while the server recovers
        return now if len(now) == 2 and victim not in now and not set(now) & set(pids) else None

    new_pids = hk.wait_until(new_listeners, timeout=10, interval=0.2, what="new listeners after kill -9")
    r = hk.wait_until(lambda: serving(c, wf), timeout=10, interval=0.2,
                      what="listener answering after kill -9")
    recovered = time.monotonic() - t0
    assert recovered < 10, recovered
    assert victim not in new_pids, (pids, new_pids)
    ev = hk.assert_success(r, wf)["event_id"]
    assert hk.count_events(c, wf) == before + 1
    hk.wait_handled(c, table, ev)
    # The event stored before the crash: its handler ran once, afterwards.
    hk.wait_handled(c, slow_table, stored, timeout=15)
    assert c.scalar(f"SELECT count(*) FROM {slow_table}") == 1
    assert c.scalar("SELECT status FROM webhook.events WHERE id = %s", (stored,)) == "succeeded"
    for i in range(10):
        hk.assert_success(hk.post_url(c.hook_url(wf), {"after": i}), wf)
    assert hk.count_events(c, wf) == before + 11


def test_comes_back_after_pg_terminate_backend(make_cluster):
    c, wf, table = ready_cluster(make_cluster, workers=1)
    (pid,) = c.wait_for_listeners(1)
    pos = c.log_position()
    assert c.scalar("SELECT pg_terminate_backend(%s)", (pid,)) is True
    t0 = time.monotonic()

    def new_listener():
        pids = c.listener_pids()
        return pids if len(pids) == 1 and pids[0] != pid else None

    (new_pid,) = hk.wait_until(new_listener, timeout=5, what="a new listener process")
    r = hk.wait_until(lambda: serving(c, wf), timeout=5, interval=0.1,
                      what="listener answering after pg_terminate_backend")
    assert time.monotonic() - t0 < 6
    ev = r.json()["event_id"]
    assert c.scalar("SELECT listener_pid FROM webhook.events WHERE id = %s", (ev,)) == new_pid
    hk.wait_handled(c, table, ev)
    # A clean exit and a restart, not a crash of the whole server.
    assert "terminated by signal" not in c.log()[pos:], c.log()[pos:]
    assert not CRASH.search(c.log()[pos:]), c.log()[pos:]


# --------------------------------------------------------------------------
# Disabled workflows
# --------------------------------------------------------------------------
def test_disabled_workflow_is_404_until_enabled(cluster):
    handler, table = hk.create_side_handler(cluster)
    wf = hk.create_workflow(cluster, handler)
    url = cluster.hook_url(wf)
    try:
        hk.wait_until(lambda: serving(cluster, wf), timeout=5, what="new workflow served")
        count = hk.count_events(cluster, wf)
        cluster.sql("SELECT webhook_disable_workflow(%s::uuid)", (wf,))
        for method in ("GET", "POST"):
            r = hk.request(method, url, body={"a": 1} if method == "POST" else None)
            hk.assert_error(r, 404, "Workflow not found")
        assert hk.count_events(cluster, wf) == count

        cluster.sql("SELECT webhook_enable_workflow(%s::uuid)", (wf,))
        hk.assert_success(hk.post_url(url, {"a": 2}), wf)
        hk.assert_success(hk.get_url(url), wf)
        assert hk.count_events(cluster, wf) == count + 2
        assert cluster.scalar(f"SELECT count(*) FROM {table}") == count + 2

        # A workflow created disabled is 404 from the start.
        wf_off = hk.create_workflow(cluster, handler, enabled=False)
        hk.assert_error(hk.post_url(cluster.hook_url(wf_off), {"a": 3}), 404, "Workflow not found")
        assert hk.count_events(cluster, wf_off) == 0
    finally:
        cluster.sql("DELETE FROM webhook.workflows WHERE handler = %s::regproc", (handler,))
