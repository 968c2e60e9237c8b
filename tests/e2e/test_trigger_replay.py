"""webhook_trigger and webhook_replay: the listener's pipeline run from
SQL (validation, event, handler, response), returning the response HTTP would
have sent; replay fires the handler again as a new event pointing at the
original."""

import json

from hookkit import (count_events, event, events, handler_rows, login_role, post,  # noqa: F401
                     ready, recording_handler, response_json, sample_json, set_required, set_response)

MISSING = {"msg": "Missing required parameter(s)", "missing": ["order_id"]}


def trigger(c, wf, user="postgres", **kw) -> dict:
    args, values = ["%s"], [wf]
    for key, value in kw.items():
        if key in ("body", "query", "headers"):
            args.append(f"{key} => %s::jsonb")
            values.append(value if isinstance(value, str) else json.dumps(value))
        else:
            args.append(f"{key} => %s")
            values.append(value)
    return c.scalar(f"SELECT webhook_trigger({', '.join(args)})", values, user=user)


def test_trigger_stores_event_and_fires_handler(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    sample_json(c, wf, {"order_id": "x"})
    set_required(c, wf, ["order_id"])
    out = c.scalar("SELECT webhook_trigger(%s, body => '{\"order_id\": \"x\"}')", (wf,))
    assert out["status"] == 200, out
    n = out["event_id"]
    assert isinstance(n, int)
    assert out["body"] == {"msg": "success", "event_id": n, "workflow_id": wf}
    ev = event(c, n)
    assert str(ev["workflow_id"]) == wf
    assert ev["origin"] == "trigger"
    assert ev["method"] == "POST"
    assert ev["params"] == {"order_id": "x"}
    assert ev["status"] == "succeeded" and ev["error"] is None
    assert ev["response"]["status"] == 200
    rows = handler_rows(c, table)
    assert [(x["event_id"], x["params"]) for x in rows] == [(n, {"order_id": "x"})]


def test_trigger_query_headers_method(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    out = trigger(c, wf, body={"a": 1}, query={"src": "sql"}, headers={"X-Sig": "abc"}, method="get")
    assert out["status"] == 200, out
    ev = event(c, out["event_id"])
    assert ev["method"] == "GET"
    assert ev["query"] == {"src": "sql"}
    assert ev["headers"] == {"x-sig": "abc"}
    assert ev["params"] == {"src": "sql", "a": 1}


def test_trigger_missing_required_stores_nothing(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    sample_json(c, wf, {"order_id": "x", "n": 1})
    set_required(c, wf, ["order_id"])
    out = trigger(c, wf, body={"n": 2})
    assert out["status"] == 400, out
    assert out["body"] == MISSING
    assert list(out["body"]) == ["msg", "missing"]
    assert out["event_id"] is None
    assert count_events(c, wf) == 0
    assert handler_rows(c, table) == []
    # Wrong type, in strict mode: 400 naming the parameter.
    c.sql("SELECT count(*) FROM webhook_set_strict(%s, true)", (wf,))
    out = trigger(c, wf, body={"order_id": "x", "n": "lots"})
    assert out["status"] == 400 and out["body"]["parameter"] == "n", out
    assert count_events(c, wf) == 0


def test_trigger_workflow_method_returns_handler_value(ready, new_workflow, new_handler):
    c = ready
    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ "
                          "SELECT jsonb_build_object('echo', e.params->'order_id', 'id', e.id) $h$")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    out = trigger(c, wf, body={"order_id": "w-1"})
    assert out["status"] == 200, out
    assert out["body"] == {"echo": "w-1", "id": out["event_id"]}
    assert event(c, out["event_id"])["response"]["body"] == out["body"]

    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS text LANGUAGE sql AS $h$ "
                          "SELECT 'hello ' || (e.params->>'who') $h$")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    out = trigger(c, wf, body={"who": "sql"})
    assert out["status"] == 200 and out["body"] == "hello sql", out

    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$ "
                          "BEGIN RAISE EXCEPTION 'broken' USING ERRCODE = '22023'; END $h$")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    out = trigger(c, wf, body={})
    assert out["status"] == 500, out
    assert out["body"] == {"msg": "Workflow failed", "event_id": out["event_id"]}
    ev = event(c, out["event_id"])
    assert ev["status"] == "failed" and ev["error"].startswith("22023")


def test_trigger_custom_response(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", body='{"got": "{{order_id}}"}', status=201, headers={"X-Hook": "yes"})
    out = trigger(c, wf, body={"order_id": 'q"1'})
    assert out["status"] == 201 and out["body"] == {"got": 'q"1'}, out
    assert {k.lower(): v for k, v in out["headers"].items()}["x-hook"] == "yes"


def test_trigger_unknown_workflow(ready):
    c = ready
    missing = "00000000-0000-4000-8000-000000000000"
    before = c.scalar("SELECT count(*) FROM webhook.events")
    d = c.sql_error("SELECT webhook_trigger(%s, body => '{}')", (missing,), sqlstate="42704")
    assert (d["message"], d["hint"]) == (
        f"workflow {missing} does not exist",
        "Find workflows with webhook_find_workflow('<id, URL or part of the id>'); "
        "a role sees only the workflows it owns."), d
    assert c.scalar("SELECT count(*) FROM webhook.events") == before


def test_trigger_other_roles_workflow(ready, login_role, uniq):
    c = ready
    alice, bob = login_role(), login_role()
    fn, table = recording_handler(c, uniq, schema=alice, user=alice)
    wf = str(c.row("SELECT * FROM webhook_create_workflow(%s, %s::regproc)", (uniq("wf"), fn), user=alice)["id"])
    c.sql_error("SELECT webhook_trigger(%s, body => '{}')", (wf,), sqlstate="42704", user=bob)
    assert count_events(c, wf) == 0
    # The owner may trigger it; the handler runs as the owner.
    out = trigger(c, wf, user=alice, body={"k": "v"})
    assert out["status"] == 200, out
    assert [(x["event_id"], x["who"]) for x in handler_rows(c, table)] == [(out["event_id"], alice)]
    assert c.scalar("SELECT origin FROM webhook.events WHERE id = %s", (out["event_id"],), user=alice) == "trigger"
    # Nor can bob replay alice's event; alice can.
    c.sql_error("SELECT webhook_replay(%s)", (out["event_id"],), sqlstate="42704", user=bob)
    again = c.scalar("SELECT webhook_replay(%s)", (out["event_id"],), user=alice)
    assert again["status"] == 200, again
    assert [x["who"] for x in handler_rows(c, table)] == [alice, alice]
    assert event(c, again["event_id"])["replay_of"] == out["event_id"]


def test_replay_http_event(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "R-1", "n": 2}, params={"src": "web"}, headers={"X-Trace": "t"})
    assert r.status_code == 200, r.text
    original = response_json(r)["event_id"]
    assert event(c, original)["status"] == "succeeded"  # its executor ran it

    out = c.scalar("SELECT webhook_replay(%s)", (original,))
    assert out["status"] == 200, out
    new_id = out["event_id"]
    assert new_id != original
    assert out["body"] == {"msg": "success", "event_id": new_id, "workflow_id": wf}
    orig_ev, replay = event(c, original), event(c, new_id)
    assert replay["origin"] == "replay"
    assert replay["replay_of"] == original
    assert orig_ev["origin"] == "http" and orig_ev["replay_of"] is None
    assert str(replay["workflow_id"]) == wf
    assert replay["params"] == orig_ev["params"]
    assert replay["query"] == orig_ev["query"]
    assert replay["headers"] == orig_ev["headers"]
    assert replay["body"] == orig_ev["body"]
    assert replay["method"] == orig_ev["method"]
    assert replay["status"] == "succeeded"
    rows = handler_rows(c, table)
    assert [x["event_id"] for x in rows] == [original, new_id]
    assert rows[0]["params"] == rows[1]["params"] == {"src": "web", "order_id": "R-1", "n": 2}

    # Replaying a replay points at the event replayed.
    out2 = c.scalar("SELECT webhook_replay(%s)", (new_id,))
    assert event(c, out2["event_id"])["replay_of"] == new_id
    assert len(handler_rows(c, table)) == 3
    assert count_events(c, wf) == 3


def test_replay_failed_event_after_fixing_handler(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq, extra="""
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relname = 'hookkit_fixed_flag') THEN
            RAISE EXCEPTION 'not fixed yet';
        END IF;""")
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "F-1"})
    assert r.status_code == 200
    first = events(c, wf)[0]
    assert first["status"] == "failed"
    c.sql("CREATE TABLE IF NOT EXISTS public.hookkit_fixed_flag ()")
    try:
        out = c.scalar("SELECT webhook_replay(%s)", (first["id"],))
    finally:
        c.sql("DROP TABLE IF EXISTS public.hookkit_fixed_flag")
    again = event(c, out["event_id"])
    assert again["status"] == "succeeded", again["error"]
    assert again["replay_of"] == first["id"]
    assert [x["event_id"] for x in handler_rows(c, table)] == [again["id"]]
    # The original keeps its failure.
    assert event(c, first["id"])["status"] == "failed"


def test_replay_unknown_event(ready):
    c = ready
    before = c.scalar("SELECT count(*) FROM webhook.events")
    d = c.sql_error("SELECT webhook_replay(-12345)", sqlstate="42704")
    assert (d["message"], d["hint"]) == (
        "event -12345 does not exist", "A role sees only the events of the workflows it owns."), d
    assert c.scalar("SELECT count(*) FROM webhook.events") == before


def test_trigger_and_replay_by_a_superuser_run_the_handler_as_the_owner(ready, login_role, uniq):
    c = ready
    owner = login_role()
    fn, table = recording_handler(c, uniq, schema=owner, user=owner)
    wf = str(c.scalar("SELECT id FROM webhook_create_workflow(%s, %s::regproc)", (uniq("wf"), fn), user=owner))
    # Positive control: the recorded role is whoever runs the handler.
    c.sql(f"SELECT {fn}(e) FROM (SELECT NULL::webhook.events AS e) x")
    assert [r["who"] for r in c.rows(f"SELECT who FROM {table}")] == ["postgres"]
    c.sql(f"TRUNCATE {table}")
    triggered = c.scalar("SELECT webhook_trigger(%s, '{\"n\": 1}'::jsonb)", (wf,))
    assert triggered["status"] == 200, triggered
    replayed = c.scalar("SELECT webhook_replay(%s)", (triggered["event_id"],))
    assert replayed["status"] == 200, replayed
    rows = c.rows(f"SELECT event_id, who FROM {table} ORDER BY at")
    assert rows == [{"event_id": triggered["event_id"], "who": owner},
                    {"event_id": replayed["event_id"], "who": owner}]
