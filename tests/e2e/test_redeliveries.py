"""A redelivered request (same delivery key) fires its handler
once: it gets the original event's id and response, and stores nothing new.

Keys come by default from the first present of webhook-id, X-GitHub-Delivery
and Idempotency-Key; webhook_set_delivery_key picks another header, a body
path (Stripe: id) or none, and how long keys are remembered.
"""

import threading
import time

from hookkit import (count_events, events, handler_rows, post, ready, recording_handler, set_response,  # noqa: F401
                     wait_for_value)


def deliveries(c, wf):
    return c.rows("SELECT key, event_id FROM webhook.deliveries WHERE workflow_id = %s ORDER BY key", (wf,))


def test_a_redelivery_gets_the_original_answer_and_fires_nothing(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    # Positive control: without a key every request is a new event.
    assert post(c, wf, json_body={"n": 1}).status_code == 200
    assert post(c, wf, json_body={"n": 1}).status_code == 200
    assert count_events(c, wf) == 2

    first = post(c, wf, json_body={"n": 2}, headers={"X-GitHub-Delivery": "72d3162e-cc78-11e3"})
    again = post(c, wf, json_body={"n": 3}, headers={"X-GitHub-Delivery": "72d3162e-cc78-11e3"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert count_events(c, wf) == 3
    assert len(handler_rows(c, table)) == 3
    assert deliveries(c, wf) == [{"key": "72d3162e-cc78-11e3", "event_id": first.json()["event_id"]}]

    # webhook-id comes before X-GitHub-Delivery; Idempotency-Key is the last resort.
    a = post(c, wf, json_body={}, headers={"webhook-id": "msg_1", "X-GitHub-Delivery": "72d3162e-cc78-11e3"})
    assert a.json()["event_id"] != first.json()["event_id"]
    b = post(c, wf, json_body={}, headers={"Idempotency-Key": "msg_1"})
    assert b.json() == a.json()
    assert count_events(c, wf) == 4


def test_custom_and_failed_responses_are_repeated_not_rerun(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq, extra="IF e.params ? 'fail' THEN RAISE EXCEPTION 'no'; END IF;")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "custom", body="got {{order_id}}", content_type="text/plain", status=201)
    r1 = post(c, wf, json_body={"order_id": "A-1"}, headers={"Idempotency-Key": "k1"})
    r2 = post(c, wf, json_body={"order_id": "B-2"}, headers={"Idempotency-Key": "k1"})
    assert (r1.status_code, r1.text) == (201, "got A-1")
    assert (r2.status_code, r2.text) == (201, "got A-1")
    # A failed handler run is not retried by a redelivery either.
    r3 = post(c, wf, json_body={"order_id": "C-3", "fail": True}, headers={"Idempotency-Key": "k2"})
    r4 = post(c, wf, json_body={"order_id": "C-3", "fail": True}, headers={"Idempotency-Key": "k2"})
    assert (r3.status_code, r3.text) == (r4.status_code, r4.text) == (201, "got C-3")
    rows = events(c, wf)
    assert [r["status"] for r in rows] == ["succeeded", "failed"]
    assert len(handler_rows(c, table)) == 1  # the failed run rolled its insert back


def test_concurrent_redeliveries_store_one_event(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq, extra="PERFORM pg_sleep(0.05);")
    wf = new_workflow(handler=fn)["id"]
    replies = []
    lock = threading.Lock()

    def send():
        r = post(c, wf, json_body={"x": 1}, headers={"webhook-id": "msg_concurrent"}, timeout=15)
        with lock:
            replies.append((r.status_code, r.text))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    ok = [text for status, text in replies if status == 200]
    retry = [status for status, _ in replies if status != 200]
    # Every caller gets the one event's answer, or (while the first delivery's
    # transaction holds the key longer than webhook.lock_timeout) a 503 to retry.
    assert len(replies) == 12 and set(retry) <= {503}, replies
    assert len(set(ok)) == 1 and ok, replies
    assert count_events(c, wf) == 1
    assert len(handler_rows(c, table)) == 1


def test_body_keys_windows_and_none(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_set_delivery_key(%s, 'body', 'id', \"window\" => '1 second')", (wf,))
    event = {"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "customer.created"}
    r1 = post(c, wf, json_body=event)
    r2 = post(c, wf, json_body=event, headers={"Idempotency-Key": "ignored-now"})
    assert r1.json() == r2.json()
    assert post(c, wf, json_body={**event, "id": "evt_other"}).json() != r1.json()
    assert count_events(c, wf) == 2
    time.sleep(1.2)
    r3 = post(c, wf, json_body=event)
    assert r3.json()["event_id"] != r1.json()["event_id"]
    assert count_events(c, wf) == 3
    # Expired keys are deleted while the listener is idle.
    wait_for_value(lambda: deliveries(c, wf), [], timeout=8, interval=0.2, what="expired delivery keys deleted")

    c.sql("SELECT webhook_set_delivery_key(%s, 'none')", (wf,))
    post(c, wf, json_body=event, headers={"webhook-id": "w"})
    post(c, wf, json_body=event, headers={"webhook-id": "w"})
    assert count_events(c, wf) == 5
    err = c.sql_error("SELECT webhook_set_delivery_key(%s, 'header')", (wf,), sqlstate="22023")
    assert err["message"] == "a name is needed for header and body keys, and only for them"


def test_trigger_dedupes_replay_does_not(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    one = c.scalar("SELECT webhook_trigger(%s, headers => '{\"webhook-id\": \"t1\"}')", (wf,))
    two = c.scalar("SELECT webhook_trigger(%s, headers => '{\"webhook-id\": \"t1\"}')", (wf,))
    assert one["event_id"] == two["event_id"]
    replayed = c.scalar("SELECT webhook_replay(%s)", (one["event_id"],))
    assert replayed["event_id"] != one["event_id"]
    assert count_events(c, wf) == 2
    assert len(handler_rows(c, table)) == 2


def test_a_redacted_header_is_never_a_delivery_key(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    # Positive control: Idempotency-Key is a default key, so a second request
    # with the same value is a redelivery.
    first = post(c, wf, json_body={"n": 1}, headers={"Idempotency-Key": "same"})
    again = post(c, wf, json_body={"n": 2}, headers={"Idempotency-Key": "same"})
    assert again.json() == first.json()
    assert count_events(c, wf) == 1
    # Redacted, its value is gone: distinct deliveries are distinct events
    # (they used to share the key "[redacted]", so the second got the first's
    # answer and was never stored).
    c.scalar("SELECT id FROM webhook_set_redacted_headers(%s, '{idempotency-key}')", (wf,))
    a = post(c, wf, json_body={"n": 3}, headers={"Idempotency-Key": "first"})
    b = post(c, wf, json_body={"n": 4}, headers={"Idempotency-Key": "second"})
    assert a.status_code == b.status_code == 200
    assert a.json()["event_id"] != b.json()["event_id"]
    rows = c.rows("SELECT params->>'n' AS n, headers->>'idempotency-key' AS key FROM webhook.events "
                  "WHERE workflow_id = %s ORDER BY id", (wf,))
    assert rows == [{"n": "1", "key": "same"}, {"n": "3", "key": "[redacted]"}, {"n": "4", "key": "[redacted]"}]
    assert deliveries(c, wf) == [{"key": "same", "event_id": first.json()["event_id"]}]
