"""Deadlines hold, and a runaway handler never delays another owner.

Handlers run in executor processes (one owner each). Past its deadline a
handler is cancelled (57014), and again every 100 ms; one that traps every
cancel is ended 1 s after its deadline by its executor's watchdog (the
executor exits; a listener records the attempt as a timeout). The listener
is never involved: other owners' requests are answered at once throughout,
and their handlers run in their own executors.

alice's handler swallows cancels for up to 8 s (bounded so the test ends).
"""

import threading
import time

import psycopg
import pytest
import requests

from hookkit import events, handler_rows, post, ready, recording_handler, set_response, settle, wait_until  # noqa: F401
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)

STUBBORN = """
CREATE FUNCTION {s}.stubborn(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t0 + interval '8 s' LOOP
        BEGIN
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
    RETURN '{{"finished": true}}';
END $h$"""

SLEEPY = """
CREATE FUNCTION {s}.sleepy(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$
    SELECT pg_sleep(8); SELECT '{{"finished": true}}'::jsonb $h$"""


tenants = tenants_fixture('alice', 'bob')


def wait_for(check, timeout: float, what: str):
    return wait_until(check, timeout=timeout, interval=0.02, what=what)


def attempts(private, wf):
    return private.rows("SELECT a.attempt, a.outcome, a.sqlstate, a.message, "
                        "extract(epoch FROM a.ended_at - a.started_at) AS took "
                        "FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id "
                        "WHERE e.workflow_id = %s ORDER BY a.event_id, a.attempt", (wf,))


def test_a_handler_swallowing_its_cancel_is_ended_and_does_not_stall_other_owners(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    alice.sql(STUBBORN.format(s=alice.name))
    wf_a = alice.create_workflow(handler=f"{alice.name}.stubborn")
    set_response(private, wf_a, "workflow", user=alice.name, timeout="300 ms")
    alice.sql("SELECT webhook_set_retry(%s, 1)", (wf_a,))
    wf_b = bob.create_workflow()
    listeners = private.listener_pids()

    # Positive control: called directly under a 300 ms statement_timeout, the
    # handler traps the cancel and runs to its end instead of failing 57014.
    with alice.connect() as conn:
        conn.execute("SET statement_timeout = '300ms'")
        assert conn.execute(f"SELECT {alice.name}.stubborn(NULL::webhook.events)").fetchone()[0] == {
            "finished": True}

    result = {}

    def alice_request():
        t = time.monotonic()
        r = requests.post(private.hook_url(wf_a), json={}, timeout=20)
        result["alice"] = (r.status_code, r.json(), time.monotonic() - t)

    thread = threading.Thread(target=alice_request)
    thread.start()
    executor = wait_for(lambda: private.row(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext executor' "
        "AND application_name = %s AND wait_event = 'PgSleep'", (f"webhook_ext executor for {alice.name}",)),
        5, "alice's handler running")["pid"]
    # While it loops, bob is answered at once and his handler runs.
    for i in range(5):
        t = time.monotonic()
        r = requests.post(private.hook_url(wf_b), json={"i": i}, timeout=5)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t < 0.5
    thread.join(timeout=20)
    status, body, took = result["alice"]
    # The caller gets the failure response by the deadline plus 1.5 s.
    ev_id = private.scalar("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf_a,))
    assert (status, body) == (500, {"msg": "Workflow failed", "event_id": ev_id}), body
    assert took < 4, took
    # The executor was ended within deadline + 1 s (plus the watchdog's tick).
    wait_for(lambda: not private.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (executor,)),
             3, "alice's executor gone")
    # A listener records the terminated attempt in its once-a-second round.
    ev = wait_for(lambda: private.row("SELECT * FROM webhook.events WHERE workflow_id = %s AND status <> 'pending'",
                                      (wf_a,)), 3, "the terminated attempt recorded")
    assert (ev["status"], ev["error"]) == (
        "dead", "57014: handler exceeded its deadline of 300 ms and did not stop: its executor was terminated"), ev
    (attempt,) = attempts(private, wf_a)
    assert (attempt["attempt"], attempt["outcome"], attempt["sqlstate"]) == (1, "timeout", "57014")
    assert 1.0 <= float(attempt["took"]) < 3.0, attempt
    bobs = private.rows("SELECT status FROM webhook.events WHERE workflow_id = %s", (wf_b,))
    wait_for(lambda: private.scalar("SELECT bool_and(status = 'succeeded') FROM webhook.events "
                                    "WHERE workflow_id = %s", (wf_b,)), 5, "bob's handlers ran")
    assert len(bobs) == 5
    assert private.listener_pids() == listeners, "the listener restarted"


def test_a_cancellable_handler_past_its_deadline_records_a_timeout(private, tenants):
    alice = tenants["alice"]
    alice.sql(SLEEPY.format(s=alice.name))
    wf = alice.create_workflow(handler=f"{alice.name}.sleepy")
    # Positive control: called directly, it does not finish within 300 ms.
    with alice.connect() as conn:
        conn.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute(f"SELECT {alice.name}.sleepy(NULL::webhook.events)")
        assert caught.value.diag.message_primary == "canceling statement due to statement timeout"
    set_response(private, wf, "workflow", user=alice.name, timeout="300 ms")
    alice.sql("SELECT webhook_set_retry(%s, 2, '200 ms')", (wf,))
    t = time.monotonic()
    r = requests.post(private.hook_url(wf), json={}, timeout=20)
    assert time.monotonic() - t < 1.5
    ev_id = private.scalar("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": ev_id}), r.text
    wait_for(lambda: private.scalar("SELECT status = 'dead' FROM webhook.events WHERE workflow_id = %s", (wf,)),
             5, "event dead after two attempts")
    rows = attempts(private, wf)
    assert [(a["attempt"], a["outcome"], a["sqlstate"]) for a in rows] == [(1, "timeout", "57014"),
                                                                          (2, "timeout", "57014")], rows
    assert all(0.3 <= float(a["took"]) < 2.0 for a in rows), rows


NESTING = """
CREATE FUNCTION {s}.nesting(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
DECLARE t0 timestamptz;
BEGIN
    PERFORM webhook_trigger('{inner}');
    t0 := clock_timestamp();
    WHILE clock_timestamp() < t0 + interval '6 s' LOOP
        BEGIN
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
    RETURN '{{"finished": true}}';
END $h$"""


def test_a_handler_calling_webhook_trigger_keeps_its_own_deadline(private, tenants):
    alice = tenants["alice"]
    inner = alice.create_workflow(name="inner")
    alice.sql(NESTING.format(s=alice.name, inner=inner))
    wf = alice.create_workflow(handler=f"{alice.name}.nesting", name="nesting")
    set_response(private, wf, "workflow", user=alice.name, timeout="1 s")
    alice.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    # Positive control: under no deadline the handler finishes (inner trigger
    # included), swallowing nothing, after 6 s.
    with alice.connect() as conn:
        t = time.monotonic()
        assert conn.execute(f"SELECT {alice.name}.nesting(NULL::webhook.events)").fetchone()[0] == {
            "finished": True}
        assert time.monotonic() - t >= 6
    r = requests.post(private.hook_url(wf), json={}, timeout=20)
    ev_id = private.scalar("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": ev_id}), r.text
    wait_for(lambda: private.scalar("SELECT status = 'dead' FROM webhook.events WHERE id = %s", (ev_id,)),
             15, "the nesting handler's event dead")
    rows = attempts(private, wf)
    # It swallows every cancel, so only the watchdog ends it, 1 s past its
    # deadline: the inner call's cleanup used to disarm the watchdog, and
    # the handler kept its executor for its whole 6 s.
    assert [(a["attempt"], a["outcome"], a["sqlstate"]) for a in rows] == [(1, "timeout", "57014")], rows
    assert float(rows[0]["took"]) < 4.0, rows


# ------------------------------------------------------------- deadlines
@pytest.fixture
def short_handler_timeout(ready):
    """webhook.handler_timeout = 300ms for one test (listeners and executors)."""
    ready.alter_system("webhook.handler_timeout", "300ms")
    try:
        yield ready
    finally:
        ready.alter_system("webhook.handler_timeout", None, shown="30s")


@pytest.mark.parametrize("method", ["default", "custom", "workflow"])
def test_the_handler_deadline_holds_under_every_response_method(short_handler_timeout, new_workflow, uniq,
                                                                method):
    c = short_handler_timeout
    fn, table = recording_handler(c, uniq, extra="PERFORM pg_sleep(5);")
    wf = new_workflow(handler=fn)["id"]
    c.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    if method == "custom":
        c.sql("SELECT webhook_set_response(%s, 'custom', body => 'ok {{n}}', content_type => 'text/plain')",
              (wf,))
    else:
        c.sql("SELECT webhook_set_response(%s, %s)", (wf, method))
    r = post(c, wf, json_body={"n": 1})
    if method == "workflow":
        event_id = r.json()["event_id"]
        assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": event_id})
    elif method == "custom":
        assert (r.status_code, r.text) == (200, "ok 1")
        event_id = events(c, wf)[0]["id"]
    else:
        event_id = r.json()["event_id"]
        assert r.json() == {"msg": "success", "event_id": event_id, "workflow_id": wf}
    settle(c, "id = %s", (event_id,))
    attempt = c.row("SELECT outcome, sqlstate, extract(epoch FROM ended_at - started_at) AS secs "
                    "FROM webhook.attempts WHERE event_id = %s", (event_id,))
    assert (attempt["outcome"], attempt["sqlstate"]) == ("timeout", "57014")
    assert attempt["secs"] < 4  # cancelled, not run for its 5 s
    assert c.row("SELECT status, error FROM webhook.events WHERE id = %s", (event_id,)) == {
        "status": "dead", "error": "57014: canceling statement due to user request"}
    assert handler_rows(c, table) == []  # its insert was rolled back with it
