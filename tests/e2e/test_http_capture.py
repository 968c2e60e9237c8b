"""Sample capture over HTTP: webhook_capture_sample arms a window; the
next GET/POST becomes the sample (parameters by source, types inferred, the
handler not fired, no event); afterwards, or once the window expired, the URL
behaves normally; required flags of parameters that remain are kept."""

import threading
import time

import requests

from hookkit import (add_parameter, count_events, events, get, handler_rows, login_role, parameters,  # noqa: F401
                     post, ready, recording_handler, response_json, sample_json, set_required)


def capture_state(c, wf) -> str:
    state = c.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,))
    view = c.scalar("SELECT state FROM webhook.capture_status WHERE workflow_id = %s", (wf,))
    assert state == view, (state, view)
    return state


def by_source(params: list[dict], source: str) -> dict:
    return {p["name"]: p for p in params if p["source"] == source}


def test_capture_post_json_query_and_headers(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    assert capture_state(c, wf) == "idle"
    armed = c.row("SELECT *, capture_until - now() AS left FROM webhook_capture_sample(%s)", (wf,))
    assert armed["state"] == "waiting"
    assert 170 <= armed["left"].total_seconds() <= 181  # default window: 3 minutes
    assert capture_state(c, wf) == "waiting"

    sample = {"order_id": "A1", "amount": 12.5, "paid": True, "customer": {"email": "a@b.c"}, "tags": ["x"]}
    r = post(c, wf, json_body=sample, params={"src": "web", "n": "3"},
             headers={"X-Shop-Id": "Berlin", "X-Retry": "0"})
    assert r.status_code == 200, r.text
    body = response_json(r)
    # Captured, not processed: no event, handler not fired.
    assert count_events(c, wf) == 0
    assert handler_rows(c, table) == []
    assert capture_state(c, wf) == "captured"

    params = parameters(c, wf)
    body_p, query_p, header_p = by_source(params, "body"), by_source(params, "query"), by_source(params, "header")
    assert {n: p["type"] for n, p in body_p.items()} == {
        "order_id": "text", "amount": "number", "paid": "boolean", "customer": "object",
        "customer.email": "text", "tags": "array"}
    assert body_p["amount"]["sample"] == 12.5
    assert body_p["customer.email"]["sample"] == "a@b.c"
    # Strings from the wire are text: "5" today may be "" tomorrow.
    assert {n: p["type"] for n, p in query_p.items()} == {"src": "text", "n": "text"}
    assert all(n == n.lower() for n in header_p), header_p.keys()
    assert header_p["x-shop-id"]["type"] == "text" and header_p["x-shop-id"]["sample"] == "Berlin"
    assert "x-retry" in header_p and "content-type" in header_p
    for transport in ("host", "content-length", "connection"):
        assert transport not in header_p, header_p.keys()
    assert not any(p["required"] for p in params)
    # The answer counts the captured parameters by source (README: 200
    # {"msg":"Sample captured","workflow_id":…,"parameters":{…}}).
    assert body == {"msg": "Sample captured", "workflow_id": wf,
                    "parameters": {"body": 6, "query": 2, "header": len(header_p)}}, body

    # The next request is processed normally.
    r = post(c, wf, json_body={"order_id": "A2", "amount": 3}, params={"src": "app"})
    assert r.status_code == 200, r.text
    assert response_json(r)["msg"] == "success"
    evs = events(c, wf)
    assert len(evs) == 1
    assert evs[0]["params"]["order_id"] == "A2"
    assert [x["event_id"] for x in handler_rows(c, table)] == [evs[0]["id"]]
    assert capture_state(c, wf) == "captured"
    # The captured types guide (a value of another type is stored as sent)...
    r = post(c, wf, json_body={"order_id": "A3", "amount": "many"})
    assert r.status_code == 200, r.text
    assert events(c, wf)[-1]["params"]["amount"] == "many"
    # ...and validate requests in strict mode.
    c.sql("SELECT count(*) FROM webhook_set_strict(%s, true)", (wf,))
    r = post(c, wf, json_body={"order_id": "A4", "amount": "many"})
    assert r.status_code == 400 and response_json(r)["parameter"] == "amount", r.text


def test_capture_window_expires(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    assert c.scalar("SELECT state FROM webhook_capture_sample(%s, '1 second')", (wf,)) == "waiting"
    time.sleep(1.5)
    assert capture_state(c, wf) == "expired"
    r = post(c, wf, json_body={"order_id": "late"}, headers={"X-Late": "1"})
    assert r.status_code == 200, r.text
    assert response_json(r)["msg"] == "success"
    evs = events(c, wf)
    assert len(evs) == 1 and evs[0]["params"] == {"order_id": "late"}
    assert [x["event_id"] for x in handler_rows(c, table)] == [evs[0]["id"]]
    assert parameters(c, wf) == []
    assert capture_state(c, wf) == "expired"


def test_capture_keeps_required_flags(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 1, "note": "n"})
    set_required(c, wf, ["order_id", "amount", "note"])
    add_parameter(c, wf, "x-sig", "header", "text", required=True)
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    # The sample drops "note" and adds "extra"; it still satisfies the current required list.
    r = post(c, wf, json_body={"order_id": "B1", "amount": 2, "extra": True, "note": None},
             headers={"X-Sig": "s1"})
    assert r.status_code == 200, r.text
    assert response_json(r)["msg"] == "Sample captured"
    params = {(p["source"], p["name"]): p for p in parameters(c, wf)}
    assert params[("body", "order_id")]["required"] is True
    assert params[("body", "amount")]["required"] is True
    assert params[("body", "extra")]["required"] is False
    assert params[("body", "extra")]["type"] == "boolean"
    assert params[("header", "x-sig")]["required"] is True
    # "note" was null in the sample: kept, as type any (README: a null sample
    # value becomes type any), with its required flag.
    note = params[("body", "note")]
    assert (note["type"], note["sample"], note["required"]) == ("any", None, True), note

    r = post(c, wf, json_body={"order_id": "B2"}, headers={"X-Sig": "s2"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Missing required parameter(s)", "missing": ["amount", "note"]}
    r = post(c, wf, json_body={"order_id": "B3", "amount": 5, "note": "x"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Missing required parameter(s)", "missing": ["x-sig"]}
    assert count_events(c, wf) == 0


def test_capture_drops_parameters_not_in_sample(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"old_field": "x", "kept": 1})
    set_required(c, wf, ["old_field", "kept"])
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    assert post(c, wf, json_body={"kept": 2, "new_field": "y"}).status_code == 200
    body = {p["name"]: p["required"] for p in parameters(c, wf) if p["source"] == "body"}
    assert body == {"kept": True, "new_field": False}
    # old_field is no longer required.
    r = post(c, wf, json_body={"kept": 3})
    assert r.status_code == 200, r.text
    assert count_events(c, wf) == 1


def test_capture_with_get_query_only(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    c.sql("SELECT webhook_capture_sample(%s, '1 minute')", (wf,))
    r = get(c, wf, params={"event": "ping", "count": "2", "ok": "true"})
    assert r.status_code == 200, r.text
    assert response_json(r)["msg"] == "Sample captured"
    assert count_events(c, wf) == 0
    assert handler_rows(c, table) == []
    params = parameters(c, wf)
    assert {p["name"]: p["type"] for p in params if p["source"] == "query"} == {
        "event": "text", "count": "text", "ok": "text"}
    assert [p for p in params if p["source"] == "body"] == []
    assert capture_state(c, wf) == "captured"

    r = get(c, wf, params={"event": "push", "count": "7"})
    assert r.status_code == 200, r.text
    ev = events(c, wf)[0]
    assert ev["method"] == "GET"
    # Query values are kept as sent (text); the captured header parameters
    # (user-agent, accept, ...) are declared now, so they are in params too.
    assert ev["params"]["event"] == "push" and ev["params"]["count"] == "7"
    assert ev["params"]["user-agent"] == ev["headers"]["user-agent"]
    assert "host" not in ev["params"]
    assert len(handler_rows(c, table)) == 1


def test_capture_form_body_types_inferred(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = post(c, wf, b"order_id=A%201&qty=3&gift=false",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and response_json(r)["msg"] == "Sample captured", r.text
    body = {p["name"]: (p["type"], p["sample"]) for p in parameters(c, wf) if p["source"] == "body"}
    # Form fields are strings on the wire: text, sampled as sent.
    assert body == {"order_id": ("text", "A 1"), "qty": ("text", "3"), "gift": ("text", "false")}


def test_rearming_capture(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    assert post(c, wf, json_body={"first": 1}).status_code == 200
    assert capture_state(c, wf) == "captured"
    assert c.scalar("SELECT state FROM webhook_capture_sample(%s)", (wf,)) == "waiting"
    r = post(c, wf, json_body={"second": "x"})
    assert response_json(r)["msg"] == "Sample captured", r.text
    assert [p["name"] for p in parameters(c, wf) if p["source"] == "body"] == ["second"]
    assert count_events(c, wf) == 0


def test_capture_rejects_bad_body_and_stays_armed(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = post(c, wf, b'{"broken": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert response_json(r)["msg"].startswith("Invalid JSON body")
    assert capture_state(c, wf) == "waiting"
    assert parameters(c, wf) == []
    r = post(c, wf, json_body={"good": 1})
    assert response_json(r)["msg"] == "Sample captured", r.text
    assert capture_state(c, wf) == "captured"
    assert count_events(c, wf) == 0


def test_capture_does_not_fire_workflow_method_handler(ready, new_workflow, new_handler, uniq):
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    c.sql("SELECT webhook_set_response(%s, 'workflow')", (wf,))
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = post(c, wf, json_body={"a": 1})
    assert r.status_code == 200 and response_json(r)["msg"] == "Sample captured", r.text
    assert handler_rows(c, table) == []
    r = post(c, wf, json_body={"a": 2})
    assert r.status_code == 200 and response_json(r)["a"] == 2, r.text
    assert len(handler_rows(c, table)) == 1


# --------------------------------------------------------------- capture
def test_of_concurrent_requests_across_listeners_exactly_one_is_the_sample(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    replies = []
    lock = threading.Lock()

    def send(n):
        with requests.Session() as s:  # own connection: either listener
            r = post(c, wf, json_body={f"field_{n}": n}, session=s)
        with lock:
            replies.append(r)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    captured = [r for r in replies if r.json()["msg"] == "Sample captured"]
    accepted = [r for r in replies if r.json()["msg"] == "success"]
    assert (len(captured), len(accepted)) == (1, 15), [r.text for r in replies]
    # The sample is the captured request's body, and the others are events.
    [sample_field] = [p["name"] for p in c.rows("SELECT name FROM webhook.parameters WHERE workflow_id = %s "
                                                "AND source = 'body'", (wf,))]
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 15
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND params ? %s",
                    (wf, sample_field)) == 0
    # Both listener processes took part.
    assert len({e["listener_pid"] for e in events(c, wf)}) == 2
    assert c.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,)) == "captured"


def test_capture_functions_error_paths(ready, new_workflow, login_role):
    c = ready
    wf = new_workflow()["id"]
    for window, message in (("0 seconds", "capture window must be positive and at most 1 day"),
                            ("2 days", "capture window must be positive and at most 1 day")):
        err = c.sql_error("SELECT webhook_capture_sample(%s, %s::interval)", (wf, window), sqlstate="22023")
        assert err["message"] == message
    err = c.sql_error("SELECT webhook_capture_sample(%s)", ("00000000-0000-0000-0000-000000000000",),
                      sqlstate="42704")
    assert err["message"] == "workflow 00000000-0000-0000-0000-000000000000 does not exist"
    c.sql_error("SELECT webhook_capture_sample(NULL)", sqlstate="22004")
    c.sql_error("SELECT webhook_capture_status(%s)", ("00000000-0000-0000-0000-000000000000",),
                sqlstate="42704")
    # Another role's workflow looks like one that does not exist.
    other = login_role()
    err = c.sql_error("SELECT webhook_capture_sample(%s)", (wf,), sqlstate="42704", user=other)
    assert err["message"] == f"workflow {wf} does not exist"
    assert c.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,)) == "idle"
