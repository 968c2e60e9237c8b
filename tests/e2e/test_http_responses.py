"""The three response methods over real HTTP: default,
custom (templated JSON / text / XML / HTML with status and headers) and
workflow (the handler's return value, with a deadline and a configurable
failure response); webhook.events.response records what was sent."""

import json
import time
import xml.etree.ElementTree as ET

from hookkit import (create_workflow, events, post, ready, response_json, sample_json,  # noqa: F401
                     set_response, solo, wait_ready)

CUSTOM_JSON = '{"order": "{{order_id}}", "n": {{amount}}, "email": "{{customer.email}}"}'


def one_event(c, wf) -> dict:
    rows = events(c, wf)
    assert len(rows) == 1, rows
    return rows[0]


def handler_fn(new_handler, returns: str, expr: str, lang: str = "sql") -> str:
    expr = expr.replace("{", "{{").replace("}", "}}")  # new_handler formats {name}
    if lang == "sql":
        return new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS " + returns +
                                " LANGUAGE sql AS $h$ SELECT " + expr + " $h$")
    return new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS " + returns +
                            " LANGUAGE plpgsql AS $h$ BEGIN " + expr + " END $h$")


def test_default_response_exact_body(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, json_body={"a": 1})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert r.headers["content-type"] == "application/json"
    assert r.text == f'{{"msg":"success","event_id":{ev["id"]},"workflow_id":"{wf}"}}'
    assert ev["response"]["status"] == 200
    assert ev["response"]["body"] == {"msg": "success", "event_id": ev["id"], "workflow_id": wf}
    assert ev["response"]["headers"]["content-type"] == "application/json"
    assert str(ev["remote_addr"]) == "127.0.0.1"
    assert ev["origin"] == "http"
    assert ev["handled_at"] >= ev["received_at"]


def test_custom_json_response_with_hostile_values(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 10, "customer": {"email": "a@b.c"}})
    set_response(c, wf, "custom", content_type="application/json", body=CUSTOM_JSON, status=201,
                  headers={"X-Hook": "yes"})
    hostile = 'He said "hi" \\ back\\slash\nnew line\ttab </script> {{amount}} \u2028 ✓'
    r = post(c, wf, json_body={"order_id": hostile, "amount": 12.5, "customer": {"email": "e\"@x.y"}})
    assert r.status_code == 201, r.text
    assert r.headers["x-hook"] == "yes"
    assert r.headers["content-type"].startswith("application/json")
    assert response_json(r) == {"order": hostile, "n": 12.5, "email": 'e"@x.y'}
    ev = one_event(c, wf)
    assert ev["status"] == "succeeded"
    assert ev["response"]["status"] == 201
    assert ev["response"]["body"] == {"order": hostile, "n": 12.5, "email": 'e"@x.y'}
    assert {k.lower(): v for k, v in ev["response"]["headers"].items()}["x-hook"] == "yes"

    # A form body: the number is typed by the parameter list; a missing optional value is null.
    r = post(c, wf, b"order_id=F%22orm&amount=7", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 201, r.text
    assert response_json(r) == {"order": 'F"orm', "n": 7, "email": ""}


def test_custom_json_value_outside_string_cannot_inject(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", body='{"raw": {{raw}}, "id": {{event_id}}, "wf": "{{workflow_id}}"}')
    r = post(c, wf, json_body={"raw": '1, "evil": true'})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert response_json(r) == {"raw": '1, "evil": true', "id": ev["id"], "wf": wf}
    r = post(c, wf, json_body={"raw": {"obj": [1, "x"]}})
    assert response_json(r)["raw"] == {"obj": [1, "x"]}
    r = post(c, wf, json_body={})
    assert response_json(r)["raw"] is None


def test_custom_text_xml_html(ready, new_workflow):
    c = ready
    # text/plain: values verbatim.
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", content_type="text/plain", body="Thanks {{name}}, order {{order_id}} <ok>!",
                 status=202)
    r = post(c, wf, json_body={"name": "Tom & <Jerry>", "order_id": 'A"1'})
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == 'Thanks Tom & <Jerry>, order A"1 <ok>!'
    assert one_event(c, wf)["response"]["body"] == 'Thanks Tom & <Jerry>, order A"1 <ok>!'

    # XML: values escaped; the document parses back to the raw values.
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", content_type="application/xml",
                 body='<ack id="{{order_id}}"><who>{{name}}</who></ack>')
    name, order = "<b>Tom</b> & 'Jerry'", 'A"1<'
    r = post(c, wf, json_body={"name": name, "order_id": order})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert "<b>" not in r.text and "&lt;b&gt;Tom&lt;/b&gt; &amp;" in r.text
    doc = ET.fromstring(r.text)
    assert doc.get("id") == order
    assert doc.find("who").text == name

    # HTML: escaped too.
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", content_type="text/html", body="<p>Hello {{name}}</p>")
    r = post(c, wf, json_body={"name": "<script>alert('x')</script> & co"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.text == "<p>Hello &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</p>"


def test_workflow_method_jsonb_text_xml(ready, new_workflow, new_handler):
    c = ready
    fn = handler_fn(new_handler, "jsonb",
                    "jsonb_build_object('order', e.params->>'order_id', 'event', e.id, 'who', current_user)")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={"order_id": "W1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    ev = one_event(c, wf)
    assert response_json(r) == {"order": "W1", "event": ev["id"], "who": "postgres"}
    assert ev["status"] == "succeeded"
    assert ev["response"]["status"] == 200
    assert ev["response"]["body"] == {"order": "W1", "event": ev["id"], "who": "postgres"}

    fn = handler_fn(new_handler, "text", "'order ' || (e.params->>'order_id') || ' ok'")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={"order_id": "T1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "order T1 ok"
    assert one_event(c, wf)["response"]["body"] == "order T1 ok"

    fn = handler_fn(new_handler, "xml", "xmlelement(name ack, xmlattributes(e.id AS id), e.params->>'order_id')")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={"order_id": "X<1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    ev = one_event(c, wf)
    assert r.text == f'<ack id="{ev["id"]}">X&lt;1</ack>'

    # A NULL result: 204 No Content.
    fn = handler_fn(new_handler, "jsonb", "NULL::jsonb")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={})
    assert r.status_code == 204 and r.content == b"", (r.status_code, r.text)
    assert one_event(c, wf)["status"] == "succeeded"

    # json (not jsonb) is JSON too.
    fn = handler_fn(new_handler, "json", "json_build_object('n', 1)")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert response_json(r) == {"n": 1}


def test_workflow_handler_failure_gives_500(ready, new_workflow, new_handler):
    c = ready
    fn = handler_fn(new_handler, "jsonb",
                    "RAISE EXCEPTION 'cannot process %', e.params->>'order_id' USING ERRCODE = '22023';",
                    lang="plpgsql")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow")
    r = post(c, wf, json_body={"order_id": "F1"})
    assert r.status_code == 500, r.text
    ev = one_event(c, wf)
    assert response_json(r) == {"msg": "Workflow failed", "event_id": ev["id"]}
    assert r.text == f'{{"msg":"Workflow failed","event_id":{ev["id"]}}}'
    # The error is recorded, not sent.
    assert "cannot process" not in r.text
    assert ev["status"] == "failed"
    assert ev["error"].startswith("22023") and "cannot process F1" in ev["error"]
    assert ev["response"]["status"] == 500
    assert ev["response"]["body"] == {"msg": "Workflow failed", "event_id": ev["id"]}


def test_workflow_deadline(ready, new_workflow, new_handler):
    c = ready
    fn = handler_fn(new_handler, "jsonb", "PERFORM pg_sleep(5); RETURN '{}'::jsonb;", lang="plpgsql")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow", timeout="200 ms")
    t0 = time.monotonic()
    r = post(c, wf, json_body={"order_id": "slow"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 500, r.text
    assert elapsed < 1.5, f"failure response took {elapsed:.2f}s with a 200 ms deadline"
    ev = one_event(c, wf)
    assert response_json(r) == {"msg": "Workflow failed", "event_id": ev["id"]}
    assert ev["status"] == "failed"
    assert ev["error"].startswith("57014"), ev["error"]

    # A fast handler on another workflow is answered right after (the deadline
    # does not linger on the listener).
    fast = handler_fn(new_handler, "jsonb", "jsonb_build_object('fast', true)")
    wf2 = new_workflow(handler=fast)["id"]
    set_response(c, wf2, "workflow", timeout="200 ms")
    for _ in range(3):
        r = post(c, wf2, json_body={})
        assert r.status_code == 200 and response_json(r) == {"fast": True}, r.text
    # The deadline is per handler call: a handler just under it succeeds.
    under = handler_fn(new_handler, "jsonb", "PERFORM pg_sleep(0.05); RETURN '{\"ok\": 1}'::jsonb;", lang="plpgsql")
    wf3 = new_workflow(handler=under)["id"]
    set_response(c, wf3, "workflow", timeout="2 s")
    r = post(c, wf3, json_body={})
    assert r.status_code == 200 and response_json(r) == {"ok": 1}, r.text


def test_configured_failure_response(ready, new_workflow, new_handler):
    c = ready
    fn = handler_fn(new_handler, "jsonb", "RAISE EXCEPTION 'nope';", lang="plpgsql")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "workflow", failure_status=503, failure_content_type="text/plain",
                 failure_body="retry order {{order_id}} (event {{event_id}})")
    r = post(c, wf, json_body={"order_id": "R1"})
    ev = one_event(c, wf)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == f"retry order R1 (event {ev['id']})"
    assert ev["status"] == "failed" and ev["error"].startswith("P0001")
    assert ev["response"]["status"] == 503
    assert ev["response"]["body"] == f"retry order R1 (event {ev['id']})"

    wf2 = new_workflow(handler=fn)["id"]
    set_response(c, wf2, "workflow", failure_status=502,
                 failure_body='{"error": "failed", "order": "{{order_id}}", "id": {{event_id}}}')
    r = post(c, wf2, json_body={"order_id": 'q"uote'})
    ev = one_event(c, wf2)
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert response_json(r) == {"error": "failed", "order": 'q"uote', "id": ev["id"]}

    # Only the status changed: the default failure body.
    wf3 = new_workflow(handler=fn)["id"]
    set_response(c, wf3, "workflow", failure_status=422)
    r = post(c, wf3, json_body={})
    ev = one_event(c, wf3)
    assert r.status_code == 422, r.text
    assert response_json(r) == {"msg": "Workflow failed", "event_id": ev["id"]}


def test_custom_method_handler_failure_still_custom(ready, new_workflow, new_handler):
    """Under custom (like default) the response is sent whatever the handler does;
    the event records the failure."""
    c = ready
    fn = handler_fn(new_handler, "jsonb", "RAISE EXCEPTION 'bad';", lang="plpgsql")
    wf = new_workflow(handler=fn)["id"]
    set_response(c, wf, "custom", body='{"got": "{{order_id}}"}', status=202)
    r = post(c, wf, json_body={"order_id": "C1"})
    assert r.status_code == 202, r.text
    assert response_json(r) == {"got": "C1"}
    ev = one_event(c, wf)
    assert ev["status"] == "failed" and ev["error"].startswith("P0001")
    assert ev["response"]["status"] == 202


def test_switching_back_to_default(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", content_type="text/plain", body="custom!")
    assert post(c, wf, json_body={}).text == "custom!"
    set_response(c, wf, "default")
    r = post(c, wf, json_body={})
    assert r.status_code == 200
    assert response_json(r)["msg"] == "success"


def test_workflow_deadline_from_guc(make_cluster, uniq):
    """Without a per-workflow timeout, webhook.handler_timeout is the deadline."""
    c = make_cluster(conf={"webhook.handler_timeout": "300ms", "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    wait_ready(c)
    c.sql("CREATE FUNCTION public.slow(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$ "
          "BEGIN PERFORM pg_sleep((e.params->>'s')::float8); RETURN '{\"done\": true}'; END $h$")
    wf = create_workflow(c, "public.slow", uniq)
    set_response(c, wf, "workflow")
    t0 = time.monotonic()
    r = post(c, wf, json_body={"s": 5})
    elapsed = time.monotonic() - t0
    assert r.status_code == 500, r.text
    assert elapsed < 2, f"{elapsed:.2f}s"
    assert events(c, wf)[0]["error"].startswith("57014")
    assert post(c, wf, json_body={"s": 0}).json() == {"done": True}
    # The workflow's own timeout overrides the GUC.
    set_response(c, wf, "workflow", timeout="3 s")
    r = post(c, wf, json_body={"s": 0.6})
    assert r.status_code == 200 and r.json() == {"done": True}, r.text


def test_late_handler_that_swallows_the_cancel_still_fails(solo, uniq):
    """A handler that catches query_canceled and keeps going past its deadline
    (but less than the 1 s grace after which the listener ends it, see
    test_handler_deadlines.py) is late: the caller must get the failure
    response, and the event the error."""
    c = solo
    c.sql("""CREATE OR REPLACE FUNCTION public.stubborn(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        DECLARE t0 timestamptz := clock_timestamp();
        BEGIN
            WHILE clock_timestamp() < t0 + interval '0.7 s' LOOP
                BEGIN
                    PERFORM pg_sleep(0.05);
                EXCEPTION WHEN query_canceled THEN
                    NULL;
                END;
            END LOOP;
            RETURN '{"finished": true}';
        END $h$""")
    wf = create_workflow(c, "public.stubborn", uniq)
    set_response(c, wf, "workflow", timeout="200 ms")
    r = post(c, wf, json_body={})
    ev = events(c, wf)[0]
    assert r.status_code == 500, (
        f"handler ran 0.5 s past a 200 ms deadline and the caller got {r.status_code} {r.text}")
    assert response_json(r) == {"msg": "Workflow failed", "event_id": ev["id"]}
    assert ev["status"] == "failed" and ev["error"].startswith("57014"), ev


def test_a_custom_response_like_the_listeners_own_503_is_stored_once(ready, new_workflow):
    """The listener's main thread answers a request checked against rules
    that changed meanwhile with 503 "Workflow changed, retry later", and the
    network thread then checks it again. A workflow whose custom response is
    that same 503, byte for byte, used to be taken for it: every request was
    stored again (two events for one request)."""
    c = ready
    wf = new_workflow()["id"]
    set_response(c, wf, "custom", status=503, content_type="application/json",
                 body='{"msg":"Workflow changed, retry later"}', headers={"retry-after": "1"})
    r = post(c, wf, json_body={"a": 1})
    assert (r.status_code, r.headers["retry-after"], r.json()) == (
        503, "1", {"msg": "Workflow changed, retry later"})
    assert [e["params"] for e in events(c, wf)] == [{"a": 1}]
