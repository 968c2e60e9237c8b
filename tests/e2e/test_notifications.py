"""Issue 8 item 7: NOTIFY webhook_events when an event commits, so
applications LISTEN instead of polling. The payload is
{"event_id": N, "status": "succeeded"|"failed"}: nothing secret (any role may
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
        for note in listener.notifies(timeout=5, stop_after=2):
            assert note.channel == "webhook_events"
            got.append(json.loads(note.payload))
        mine = [g for g in got if g["event_id"] in (ok, failed)]
        assert mine == [{"event_id": ok, "status": "succeeded"}, {"event_id": failed, "status": "failed"}]
        assert list(listener.notifies(timeout=0.5)) == []
