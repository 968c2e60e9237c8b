"""NOTIFY webhook_events when an event is stored and when an
attempt of its handler is recorded, so applications LISTEN instead of
polling (with `webhook.notify = on`; off by default, because PostgreSQL
serializes the commits of notifying transactions). The payload is {"event_id": N, "status": "pending"|"succeeded"|
"failed"|"dead"}: nothing secret (any role may
LISTEN on any channel; the workflow id is the URL), the row tells the rest to
whoever row-level security lets read it.
"""

import json

import pytest

from hookkit import event, post, ready, recording_handler  # noqa: F401  (fixture)


@pytest.fixture
def notifying(ready):
    """webhook.notify on (it is off by default), for the duration of a test."""
    ready.alter_system("webhook.notify", "on")
    try:
        yield ready
    finally:
        ready.alter_system("webhook.notify", None, shown="off")


def test_nothing_is_announced_by_default(ready, new_workflow, uniq):
    c = ready
    assert c.scalar("SHOW webhook.notify") == "off"
    fn, _ = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    with c.connect() as listener:
        listener.execute("LISTEN webhook_events")
        ev = post(c, wf, json_body={"n": 1}).json()["event_id"]
        assert event(c, ev)["status"] == "succeeded"
        assert list(listener.notifies(timeout=0.5)) == []


def test_events_are_announced_when_they_commit(notifying, new_workflow, uniq):
    c = notifying
    fn, _ = recording_handler(c, uniq, extra="IF e.params ? 'fail' THEN RAISE EXCEPTION 'no'; END IF;")
    wf = new_workflow(handler=fn)["id"]
    with c.connect() as listener:
        listener.execute("LISTEN webhook_events")
        ok = post(c, wf, json_body={"n": 1}, headers={"webhook-id": "n-1"}).json()["event_id"]
        failed = post(c, wf, json_body={"fail": True}).json()["event_id"]
        # Neither a redelivery nor a refused request is an event.
        assert post(c, wf, json_body={"n": 1}, headers={"webhook-id": "n-1"}).json()["event_id"] == ok
        assert post(c, wf, b"{broken", headers={"Content-Type": "application/json"}).status_code == 400
        got = []
        for note in listener.notifies(timeout=5, stop_after=4):
            assert note.channel == "webhook_events"
            got.append(json.loads(note.payload))
        assert sorted(g["event_id"] for g in got) == sorted([ok, ok, failed, failed]), got
        assert [g["status"] for g in got if g["event_id"] == ok] == ["pending", "succeeded"]
        assert [g["status"] for g in got if g["event_id"] == failed] == ["pending", "failed"]
        assert list(listener.notifies(timeout=0.5)) == []
