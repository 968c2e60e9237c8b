"""Events read by applications: a queued workflow's events are never run by
its handler; webhook_read hides them for a visibility timeout and records an
attempt, webhook_ack and webhook_nack finish it, the retry policy and dead
apply as for a handler, and only the owner reads or finishes them."""

import threading
import time

import psycopg
import pytest

import hookkit as hk
from tenantkit import make_tenant, drop_tenants


@pytest.fixture
def queued(cluster):
    """A queued workflow whose handler records what it runs (it must run
    nothing), and that handler's side table."""
    handler, side = hk.create_side_handler(cluster)
    wf = hk.create_workflow(cluster, handler)
    row = cluster.row("SELECT queued FROM webhook_set_queue(%s)", (wf,))
    assert row == {"queued": True}
    yield wf, side
    cluster.sql("SELECT webhook_drop_workflow(%s)", (wf,))


def post_events(c, wf, n: int) -> list[int]:
    ids = []
    for k in range(n):
        r = hk.post(c, wf, json_body={"n": k})
        assert r.status_code == 200, r.text
        ids.append(r.json()["event_id"])
    return ids


def read(c, wf, qty: int = 1, vt: str = "30 seconds") -> list[dict]:
    return c.rows("SELECT id, params, status, attempts FROM webhook_read(%s, %s, %s::interval)", (wf, qty, vt))


def attempts(c, event_id: int) -> list[tuple]:
    return [(r["attempt"], r["outcome"], r["message"]) for r in c.rows(
        "SELECT attempt, outcome, message FROM webhook.attempts WHERE event_id = %s ORDER BY attempt", (event_id,))]


def test_a_queued_workflows_events_are_read_in_order_acked_once_and_never_run_by_its_handler(cluster, queued):
    wf, side = queued
    ids = post_events(cluster, wf, 3)
    time.sleep(1.5)  # executors had time to run them, if they were to
    assert cluster.scalar(f"SELECT count(*) FROM {side}") == 0
    assert cluster.scalar("SELECT array_agg(status ORDER BY id) FROM webhook.events WHERE workflow_id = %s", (wf,)) == ["pending"] * 3

    first = read(cluster, wf, 2)
    assert [(e["id"], e["params"], e["attempts"]) for e in first] == [(ids[0], {"n": 0}, 1), (ids[1], {"n": 1}, 1)]
    assert [e["id"] for e in read(cluster, wf, 5)] == [ids[2]]
    assert read(cluster, wf, 5) == []  # all hidden now
    # The read is an attempt, recorded at once as ending with the timeout.
    assert attempts(cluster, ids[0]) == [(1, "timeout", "no acknowledgement within the visibility timeout")]

    assert cluster.scalar("SELECT webhook_ack(%s)", (ids[0],)) is True
    assert cluster.scalar("SELECT webhook_ack(%s)", (ids[0],)) is False  # once
    assert cluster.row("SELECT status, next_attempt_at, error FROM webhook.events WHERE id = %s", (ids[0],)) == \
        {"status": "succeeded", "next_attempt_at": None, "error": None}
    assert attempts(cluster, ids[0]) == [(1, "succeeded", None)]
    stats = cluster.row("SELECT succeeded, failed_attempts, dead, pending FROM webhook.workflow_stats "
                        "WHERE workflow_id = %s", (wf,))
    assert stats == {"succeeded": 1, "failed_attempts": 0, "dead": 0, "pending": 2}
    assert cluster.scalar(f"SELECT count(*) FROM {side}") == 0


def test_an_event_not_acked_in_time_is_read_again_then_dead_after_its_last_attempt(cluster, queued):
    wf, _ = queued
    cluster.sql("SELECT webhook_set_retry(%s, 2, '1 second', '1 second')", (wf,))
    [event] = post_events(cluster, wf, 1)
    assert [e["id"] for e in read(cluster, wf, 1, "0.5 seconds")] == [event]
    assert read(cluster, wf) == []
    time.sleep(0.7)
    again = read(cluster, wf, 1, "0.5 seconds")
    assert [(e["id"], e["attempts"]) for e in again] == [(event, 2)]
    time.sleep(0.7)
    # Its second (last) attempt timed out too: dead, read by nobody.
    assert read(cluster, wf) == []
    assert cluster.row("SELECT status, next_attempt_at, error FROM webhook.events WHERE id = %s", (event,)) == \
        {"status": "dead", "next_attempt_at": None,
         "error": "no acknowledgement within the visibility timeout of the last attempt"}
    assert [a[:2] for a in attempts(cluster, event)] == [(1, "timeout"), (2, "timeout")]
    assert cluster.scalar("SELECT webhook_ack(%s)", (event,)) is False
    stats = cluster.row("SELECT succeeded, failed_attempts, dead FROM webhook.workflow_stats WHERE workflow_id = %s",
                        (wf,))
    assert stats == {"succeeded": 0, "failed_attempts": 2, "dead": 1}


def test_a_nack_retries_after_its_delay_and_the_last_one_makes_the_event_dead(cluster, queued):
    wf, _ = queued
    cluster.sql("SELECT webhook_set_retry(%s, 2, '1 hour', '1 hour')", (wf,))
    [event] = post_events(cluster, wf, 1)
    read(cluster, wf)
    assert cluster.scalar("SELECT webhook_nack(%s, '0 seconds', 'upstream said 503')", (event,)) is True
    assert cluster.row("SELECT status, error FROM webhook.events WHERE id = %s", (event,)) == \
        {"status": "failed", "error": "upstream said 503"}
    assert [(e["id"], e["attempts"], e["status"]) for e in read(cluster, wf)] == [(event, 2, "failed")]
    # The last attempt: dead, whatever the delay.
    assert cluster.scalar("SELECT webhook_nack(%s, '0 seconds')", (event,)) is True
    assert cluster.row("SELECT status, next_attempt_at, error FROM webhook.events WHERE id = %s", (event,)) == \
        {"status": "dead", "next_attempt_at": None, "error": "returned by webhook_nack"}
    assert attempts(cluster, event) == [(1, "failed", "upstream said 503"), (2, "failed", "returned by webhook_nack")]
    assert cluster.scalar("SELECT webhook_nack(%s)", (event,)) is False

    # Without a delay: the retry policy's backoff (an hour here).
    [other] = post_events(cluster, wf, 1)
    read(cluster, wf)
    assert cluster.scalar("SELECT webhook_nack(%s)", (other,)) is True
    due_in = cluster.scalar("SELECT extract(epoch FROM next_attempt_at - now()) FROM webhook.events WHERE id = %s",
                            (other,))
    assert 1800 - 5 <= due_in <= 3600, due_in  # the upper half of the first step
    assert read(cluster, wf) == []


def test_two_consumers_never_get_the_same_event(cluster, queued):
    wf, _ = queued
    ids = post_events(cluster, wf, 10)
    got: dict[str, list[int]] = {}
    both_reading = threading.Barrier(2)

    def consume(name: str):
        with cluster.connect() as conn:
            with conn.transaction():
                both_reading.wait()
                rows = conn.execute("SELECT id FROM webhook_read(%s, 6)", (wf,)).fetchall()
                got[name] = [r[0] for r in rows]
                time.sleep(0.3)  # both hold their reads at once

    threads = [threading.Thread(target=consume, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(got["a"]).isdisjoint(got["b"]), got
    assert sorted(got["a"] + got["b"]) == ids, got
    assert sorted(len(v) for v in got.values()) == [4, 6]


def test_only_the_owner_reads_and_finishes_its_events(cluster, uniq):
    names = [uniq("alice"), uniq("mallory")]
    alice, mallory = (make_tenant(cluster, n) for n in names)
    try:
        wf = alice.create_workflow()
        alice.sql("SELECT webhook_set_queue(%s)", (wf,))
        [event] = post_events(cluster, wf, 1)
        # Positive control: the owner reads it.
        assert [r["id"] for r in alice.rows("SELECT id FROM webhook_read(%s, 1, '1 second')", (wf,))] == [event]
        time.sleep(1.2)
        err = mallory.error("SELECT * FROM webhook_read(%s)", (wf,), sqlstate="42704")
        assert err["message"] == f"workflow {wf} does not exist"
        err = mallory.error("SELECT webhook_ack(%s)", (event,), sqlstate="42704")
        assert err["message"] == f"event {event} does not exist"
        mallory.error("SELECT webhook_nack(%s)", (event,), sqlstate="42704")
        # Nor may a tenant write the events itself.
        alice.error("UPDATE webhook.events SET status = 'succeeded' WHERE id = %s", (event,), sqlstate="42501")
        assert cluster.row("SELECT status, attempts FROM webhook.events WHERE id = %s", (event,)) == \
            {"status": "pending", "attempts": 1}
        assert [r["id"] for r in alice.rows("SELECT id FROM webhook_read(%s)", (wf,))] == [event]
        assert alice.scalar("SELECT webhook_ack(%s)", (event,)) is True

        # An application's login role that is a member of the owner role
        # reads as the owner after SET ROLE, as it would query the tables.
        [second] = post_events(cluster, wf, 1)
        cluster.sql(f'CREATE ROLE "{names[0]}_app" LOGIN IN ROLE "{names[0]}"')
        with cluster.connect(user=f"{names[0]}_app") as app:
            with pytest.raises(psycopg.errors.UndefinedObject):
                app.execute("SELECT * FROM webhook_read(%s)", (wf,))
            app.execute(f'SET ROLE "{names[0]}"')
            assert [r[0] for r in app.execute("SELECT id FROM webhook_read(%s)", (wf,))] == [second]
            assert app.execute("SELECT webhook_ack(%s)", (second,)).fetchone()[0] is True
    finally:
        cluster.sql(f'DROP ROLE IF EXISTS "{names[0]}_app"')
        drop_tenants(cluster, names)


def test_consumers_hear_of_new_events_whatever_webhook_notify_says(cluster, queued):
    wf, _ = queued
    assert cluster.scalar("SHOW webhook.notify") == "off"
    plain = hk.create_workflow(cluster)
    with cluster.connect(autocommit=True) as conn:
        conn.execute("LISTEN webhook_events")
        # Positive control: a workflow run by its handler announces nothing
        # while webhook.notify is off.
        hk.post(cluster, plain, json_body={"n": 1})
        assert list(conn.notifies(timeout=1.0, stop_after=1)) == []
        [event] = post_events(cluster, wf, 1)
        heard = list(conn.notifies(timeout=5.0, stop_after=1))
    assert [(n.channel, n.payload) for n in heard] == [("webhook_events", f'{{"event_id":{event},"status":"pending"}}')]


def test_webhook_trigger_stores_a_queued_workflows_event_for_its_readers(cluster, queued):
    wf, side = queued
    event = cluster.scalar("SELECT (webhook_trigger(%s, '{\"n\": 7}'::jsonb)->>'event_id')::bigint", (wf,))
    time.sleep(1)
    assert cluster.scalar(f"SELECT count(*) FROM {side}") == 0
    assert [(e["id"], e["params"]) for e in read(cluster, wf)] == [(event, {"n": 7})]


def test_reading_needs_a_queued_workflow_and_sane_arguments(cluster):
    wf = hk.create_workflow(cluster)
    err = cluster.sql_error("SELECT * FROM webhook_read(%s)", (wf,), sqlstate="55000")
    assert err["message"] == f"workflow {wf} is not read by applications: its handler runs its events"
    cluster.sql("SELECT webhook_set_queue(%s)", (wf,))
    for qty, vt in ((0, "1 second"), (1001, "1 second"), (1, "0 seconds"), (1, "13 hours")):
        cluster.sql_error("SELECT * FROM webhook_read(%s, %s, %s::interval)", (wf, qty, vt), sqlstate="22023")
    cluster.sql_error("SELECT webhook_nack(1, '-1 second')", sqlstate="22023")
    cluster.sql_error("SELECT webhook_ack(NULL)", sqlstate="22004")
    # The workflow response method waits for the handler: not with readers.
    err = cluster.sql_error("SELECT webhook_set_response(%s, 'workflow')", (wf,), sqlstate="55000")
    assert err["hint"] == f"webhook_set_queue('{wf}', false) gives its events back to its handler."
    cluster.sql("SELECT webhook_set_queue(%s, false)", (wf,))
    cluster.sql("SELECT webhook_set_response(%s, 'workflow')", (wf,))
    cluster.sql_error("SELECT webhook_set_queue(%s)", (wf,), sqlstate="55000")


# --------------------------------------------------------------- held under attack
def stats_of(c, wf) -> dict:
    return c.row("SELECT succeeded, failed_attempts, dead FROM webhook.workflow_stats WHERE workflow_id = %s", (wf,))


def test_a_failed_attempt_counts_once_however_it_failed(cluster, queued):
    wf, _ = queued
    cluster.sql("SELECT webhook_set_retry(%s, 3, '1 hour', '1 hour')", (wf,))
    [nacked] = post_events(cluster, wf, 1)
    read(cluster, wf)
    assert cluster.scalar("SELECT webhook_nack(%s, '0 seconds', 'boom')", (nacked,)) is True
    assert [e["id"] for e in read(cluster, wf)] == [nacked]  # read again after a nack, not a timeout
    assert cluster.scalar("SELECT webhook_ack(%s)", (nacked,)) is True
    assert attempts(cluster, nacked) == [(1, "failed", "boom"), (2, "succeeded", None)]
    assert stats_of(cluster, wf) == {"succeeded": 1, "failed_attempts": 1, "dead": 0}
    # A nacked event whose attempts the workflow then lowers goes dead with
    # the nack's error, its failure counted once.
    [lowered] = post_events(cluster, wf, 1)
    read(cluster, wf)
    assert cluster.scalar("SELECT webhook_nack(%s, '0 seconds', 'upstream 503')", (lowered,)) is True
    cluster.sql("SELECT webhook_set_retry(%s, 1, '1 hour', '1 hour')", (wf,))
    assert read(cluster, wf) == []
    assert cluster.row("SELECT status, error FROM webhook.events WHERE id = %s", (lowered,)) == \
        {"status": "dead", "error": "upstream 503"}
    assert stats_of(cluster, wf) == {"succeeded": 1, "failed_attempts": 2, "dead": 1}


def test_a_reader_whose_timeout_passed_cannot_finish_another_readers_read(cluster, queued):
    wf, _ = queued
    cluster.sql("SELECT webhook_set_retry(%s, 5, '1 hour', '1 hour')", (wf,))
    [event] = post_events(cluster, wf, 1)
    [first] = read(cluster, wf, 1, "0.5 seconds")
    time.sleep(0.8)
    [second] = read(cluster, wf, 1, "1 hour")
    assert (first["attempts"], second["attempts"]) == (1, 2)
    # The first reader, late, naming the attempt it read: its nack and its
    # ack are refused; the second reader keeps the event hidden.
    assert cluster.scalar("SELECT webhook_nack(%s, '0 seconds', 'reader 1 gave up', 1)", (event,)) is False
    assert cluster.scalar("SELECT webhook_ack(%s, 1)", (event,)) is False
    assert read(cluster, wf, 1, "1 hour") == []
    assert cluster.scalar("SELECT webhook_ack(%s, 2)", (event,)) is True
    assert [a[:2] for a in attempts(cluster, event)] == [(1, "timeout"), (2, "succeeded")]
    # A nack after its own read's timeout, before anyone read the event
    # again, is refused too: the event is due again.
    [other] = post_events(cluster, wf, 1)
    read(cluster, wf, 1, "0.3 seconds")
    time.sleep(0.5)
    assert cluster.scalar("SELECT webhook_nack(%s)", (other,)) is False
    assert cluster.row("SELECT status, attempts FROM webhook.events WHERE id = %s", (other,)) == \
        {"status": "pending", "attempts": 1}


def test_events_read_before_the_queue_is_turned_off_stay_with_their_readers(cluster, queued):
    wf, side = queued
    [event] = post_events(cluster, wf, 1)
    [got] = read(cluster, wf, 1, "2 seconds")
    cluster.sql("SELECT webhook_set_queue(%s, false)", (wf,))
    assert cluster.scalar("SELECT webhook_ack(%s, %s)", (event, got["attempts"])) is True
    time.sleep(3)  # past the timeout: the handler would have run it
    assert cluster.scalar(f"SELECT count(*) FROM {side}") == 0
    assert cluster.scalar("SELECT status FROM webhook.events WHERE id = %s", (event,)) == "succeeded"


def test_a_handlers_timed_out_attempt_is_not_a_read_to_ack(cluster):
    handler, _ = hk.create_side_handler(cluster, sleep=2)
    wf = hk.create_workflow(cluster, handler)
    try:
        cluster.sql("SELECT webhook_set_retry(%s, 3, '1 hour', '1 hour')", (wf,))
        cluster.sql("UPDATE webhook.workflows SET response_timeout = '300 ms' WHERE id = %s", (wf,))
        [event] = post_events(cluster, wf, 1)
        hk.wait_for_status(cluster, event, "failed", timeout=15)
        [(attempt, outcome, _)] = attempts(cluster, event)
        assert (attempt, outcome) == (1, "timeout")  # positive control
        cluster.sql("SELECT webhook_set_queue(%s)", (wf,))
        assert cluster.scalar("SELECT webhook_ack(%s)", (event,)) is False
        assert cluster.scalar("SELECT status FROM webhook.events WHERE id = %s", (event,)) == "failed"
    finally:
        cluster.sql("SELECT webhook_drop_workflow(%s)", (wf,))


def test_an_ordered_queued_workflow_hands_out_one_event_at_a_time(cluster, queued):
    wf, _ = queued
    cluster.sql("SELECT webhook_set_ordered(%s, true)", (wf,))
    ids = post_events(cluster, wf, 3)
    assert [e["id"] for e in read(cluster, wf, 3)] == ids[:1]
    assert read(cluster, wf, 3) == []
    assert cluster.scalar("SELECT webhook_ack(%s)", (ids[0],)) is True
    assert [e["id"] for e in read(cluster, wf, 3)] == ids[1:2]


def test_a_tenant_cannot_get_round_the_queues_checks(cluster, uniq):
    name, other_name = uniq("tenant"), uniq("tenant")
    tenant, other = make_tenant(cluster, name), make_tenant(cluster, other_name)
    try:
        wf = tenant.create_workflow()
        tenant.sql("SELECT webhook_set_response(%s, 'workflow')", (wf,))
        # Not through the column it may update either.
        tenant.error("UPDATE webhook.workflows SET queued = true WHERE id = %s", (wf,), sqlstate="23514")
        tenant.sql("SELECT webhook_set_response(%s, 'default')", (wf,))
        # The internal read checks what webhook_read checks.
        err = tenant.error("SELECT webhook._read_events(%s, 1, 30)", (wf,), sqlstate="55000")
        assert err["message"] == f"workflow {wf} is not read by applications: its handler runs its events"
        tenant.sql("SELECT webhook_set_queue(%s)", (wf,))
        [event] = post_events(cluster, wf, 1)
        for qty, vt in ((1, -3600), (2147483647, 1e-6), (1, float("nan")), (1, 43201)):
            tenant.error("SELECT webhook._read_events(%s, %s, %s)", (wf, qty, vt), sqlstate="22023")
        assert tenant.scalar("SELECT webhook._read_events(%s, 1, 30)", (wf,)) == [event]  # positive control
        # The internal finish: another tenant's event does not exist for it;
        # the owner's own call is held to what webhook_nack does (a negative
        # delay is none, not a due time in the past that jumps the queue).
        err = other.error("SELECT webhook._finish_event(%s, true, NULL, NULL, NULL)", (event,), sqlstate="42704")
        assert err["message"] == f"event {event} does not exist"
        assert cluster.scalar("SELECT status FROM webhook.events WHERE id = %s", (event,)) == "pending"
        assert tenant.scalar("SELECT webhook._finish_event(%s, false, -86400, 'x', NULL)", (event,)) is True
        row = cluster.row("SELECT status, next_attempt_at >= now() - interval '1 second' AS not_in_the_past "
                          "FROM webhook.events WHERE id = %s", (event,))
        assert row == {"status": "failed", "not_in_the_past": True}
        assert tenant.scalar("SELECT webhook._finish_event(%s, true, NULL, NULL, NULL)", (event,)) is False
    finally:
        drop_tenants(cluster, [name, other_name])


def test_a_snapshot_from_before_an_owner_change_finishes_nothing(cluster, uniq):
    names = [uniq("alice"), uniq("bob")]
    alice, bob = (make_tenant(cluster, n) for n in names)
    try:
        shared, _ = hk.create_side_handler(cluster)
        wf = bob.create_workflow(shared)
        bob.sql("SELECT webhook_set_queue(%s)", (wf,))
        [event] = post_events(cluster, wf, 1)
        assert [r["id"] for r in bob.rows("SELECT id FROM webhook_read(%s, 1, '1 hour')", (wf,))] == [event]
        with bob.connect() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT 1").fetchall()  # bob's snapshot, from before
            assert cluster.scalar("SELECT webhook_reassign_workflows(%s, %s)", (names[1], names[0])) == 1
            with pytest.raises(psycopg.errors.SerializationFailure):
                conn.execute("SELECT webhook_nack(%s, '0 s', 'bob was here')", (event,))
        assert alice.row("SELECT status, error FROM webhook.events WHERE id = %s", (event,)) == \
            {"status": "pending", "error": None}
        assert alice.scalar("SELECT webhook_ack(%s)", (event,)) is True
    finally:
        drop_tenants(cluster, names)
