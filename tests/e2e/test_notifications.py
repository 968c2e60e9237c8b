"""Issue 8 item 7: NOTIFY webhook_events when an event is stored and when an
attempt of its handler is recorded, so applications LISTEN instead of
polling. The payload is {"event_id": N, "status": "pending"|"succeeded"|
"failed"|"dead"}: nothing secret (any role may
LISTEN on any channel; the workflow id is the URL), the row tells the rest to
whoever row-level security lets read it.
"""

import json

from hookkit import post, ready, recording_handler  # noqa: F401  (fixture)


def test_events_are_announced_when_they_commit(ready, new_workflow, uniq):
    c = ready
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
