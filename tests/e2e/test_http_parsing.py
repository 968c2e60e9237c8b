"""Parsing and validation over real HTTP: every Content-Type fills
webhook.events.params / body and passes validation; query string and headers
are always recorded; Content-Encoding and charsets are decoded; bad bodies and
contradicting types are rejected with a 4xx and store nothing."""

import base64
import gzip
import http.client
import json
import zlib

import pytest
import requests

from hookkit import (add_parameter, count_events, create_workflow, events, login_role, parameters,  # noqa: F401
                     post, get, ready, response_json, sample_json, sent_behind_a_stopped_listener, set_required,
                     solo, wait_ready)

MISSING_MSG = "Missing required parameter(s)"


def only_event(cluster, wf_id) -> dict:
    rows = events(cluster, wf_id)
    assert len(rows) == 1, f"expected exactly one event, got {rows!r}"
    return rows[0]


def test_json_nested_and_dotted_required(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 10, "customer": {"email": "a@b.c", "name": "Ann"}})
    set_required(c, wf, ["customer.email"])

    payload = {"order_id": "A-7", "amount": 12.5,
               "customer": {"email": "eve@example.com", "name": "Eve", "address": {"city": "Köln"}},
               "items": [{"sku": "x", "qty": 2}]}
    raw = json.dumps(payload)
    r = post(c, wf, raw.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = response_json(r)
    ev = only_event(c, wf)
    assert body == {"msg": "success", "event_id": ev["id"], "workflow_id": wf}
    assert ev["method"] == "POST"
    assert ev["params"] == payload
    assert ev["body"] == raw
    assert ev["query"] == {}
    assert ev["status"] == "succeeded" and ev["error"] is None

    # The nested required leaf is absent: 400 with the exact contract body, nothing stored.
    r = post(c, wf, json_body={"order_id": "A-8", "customer": {"name": "No Mail"}})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.text == '{"msg":"Missing required parameter(s)","missing":["customer.email"]}'
    # A null counts as missing too.
    r = post(c, wf, json_body={"order_id": "A-9", "customer": {"email": None}})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["customer.email"]}
    assert count_events(c, wf) == 1


def test_missing_params_exact_body_lists_all_in_parameter_order(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 10, "customer": {"email": "a@b.c"}, "note": "x"})
    set_required(c, wf, ["customer.email", "order_id", "amount"])
    # Parameter-list order is webhook.parameters.position (jsonb orders a sample's
    # keys by length, then bytes: amount, customer(.email), order_id).
    order = [p["name"] for p in parameters(c, wf) if p["required"]]
    assert order == ["amount", "customer.email", "order_id"]
    r = post(c, wf, json_body={"note": "only a note"})
    assert r.status_code == 400, r.text
    assert r.text == ('{"msg":"Missing required parameter(s)",'
                      '"missing":["amount","customer.email","order_id"]}')
    # An empty body (no Content-Type at all) misses them too.
    r = post(c, wf, b"")
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": order}
    assert count_events(c, wf) == 0
    # Supplying them all is accepted.
    r = post(c, wf, json_body={"order_id": "A2", "amount": 3, "customer": {"email": "x@y.z"}})
    assert r.status_code == 200, r.text
    assert count_events(c, wf) == 1


def test_form_urlencoded_duplicates_plus_and_percent(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    raw = "tag=a&tag=b&tag=c&name=J%C3%BCrgen+M%C3%BCller&note=a%2Bb%26c%3Dd&empty=&flag"
    r = post(c, wf, raw.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["params"] == {"tag": ["a", "b", "c"], "name": "Jürgen Müller", "note": "a+b&c=d",
                            "empty": "", "flag": ""}
    assert ev["body"] == raw


def test_form_values_are_validated_and_coerced_to_declared_types(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 10, "paid": True})
    set_required(c, wf, ["order_id", "amount"])
    r = post(c, wf, b"order_id=42&amount=19.5&paid=TRUE",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    # Declared types convert what converts losslessly: a text order id stays
    # text, "19.5" becomes a number, "TRUE" is not spelled like a JSON boolean
    # and is kept as sent.
    assert ev["params"] == {"order_id": "42", "amount": 19.5, "paid": "TRUE"}
    r = post(c, wf, b"order_id=43", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["amount"]}
    assert count_events(c, wf) == 1


def test_multipart_fields_and_file(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    content = b"\x00\x01binary\xff\xfe" + bytes(range(256))
    r = post(c, wf, data={"field": "value ü", "other": "2"},
             files={"upload": ("report.bin", content, "application/octet-stream"),
                    "notes": ("notes.txt", b"plain file\n", "text/plain")})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    p = ev["params"]
    assert p["field"] == "value ü"
    assert p["other"] == "2"
    assert p["upload"] == {"filename": "report.bin", "content_type": "application/octet-stream",
                           "size": len(content),
                           "content_base64": base64.b64encode(content).decode()}
    assert base64.b64decode(p["upload"]["content_base64"]) == content
    assert p["notes"] == {"filename": "notes.txt", "content_type": "text/plain", "size": 11,
                          "content_base64": base64.b64encode(b"plain file\n").decode()}
    assert set(p) == {"field", "other", "upload", "notes"}


def test_multipart_required_field_checked(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "doc": {"filename": "x"}})
    set_required(c, wf, ["order_id", "doc"])
    r = post(c, wf, data={"order_id": "7"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["doc"]}
    r = post(c, wf, data={"order_id": "7"}, files={"doc": ("a.txt", b"abc", "text/plain")})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["params"]["doc"]["filename"] == "a.txt"
    assert ev["params"]["doc"]["size"] == 3


def test_text_plain_body_column(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    text = "hello world\nsecond line with ünïcode ✓\n"
    r = post(c, wf, text.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["body"] == text
    assert ev["params"] == {}


def test_xml_elements_and_attributes(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<order id="7" source="shop">\n'
           '  <customer><email>a@b.c</email><name>Ann &amp; Bob</name></customer>\n'
           '  <total currency="EUR">12.50</total>\n'
           '  <item>x</item><item>y</item>\n'
           '</order>')
    r = post(c, wf, xml.encode(), headers={"Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["params"] == {
        "@id": "7", "@source": "shop",
        "customer": {"email": "a@b.c", "name": "Ann & Bob"},
        "total": {"@currency": "EUR", "#text": "12.50"},
        "item": ["x", "y"],
    }
    assert ev["body"] == xml

    # text/xml too, and dotted required paths reach into XML objects.
    wf2 = new_workflow()["id"]
    sample_json(c, wf2, {"customer": {"email": "x"}})
    set_required(c, wf2, ["customer.email"])
    r = post(c, wf2, b"<r><customer><name>n</name></customer></r>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["customer.email"]}
    r = post(c, wf2, b"<r><customer><email>e@x</email></customer></r>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 200, r.text
    assert only_event(c, wf2)["params"] == {"customer": {"email": "e@x"}}


def test_invalid_xml_is_400_nothing_stored(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, b"<a><b></a>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 400, r.text
    assert response_json(r)["msg"].startswith("Invalid XML body")
    assert count_events(c, wf) == 0


def test_query_string_always_recorded(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, json_body={"order_id": "body-wins", "x": 1},
             params=[("src", "web"), ("n", "1"), ("n", "2"), ("order_id", "from-query"), ("sp", "a b")])
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["query"] == {"src": "web", "n": ["1", "2"], "order_id": "from-query", "sp": "a b"}
    # Query parameters are parameters too; a body value wins over a query value.
    assert ev["params"] == {"src": "web", "n": ["1", "2"], "order_id": "body-wins", "x": 1, "sp": "a b"}

    # GET: query only.
    r = get(c, wf, params={"event": "ping", "id": "5"})
    assert r.status_code == 200, r.text
    ev = events(c, wf)[-1]
    assert ev["method"] == "GET"
    assert ev["query"] == {"event": "ping", "id": "5"}
    assert ev["params"] == {"event": "ping", "id": "5"}
    assert ev["body"] is None  # no body: the column is NULL, not ""


def test_required_query_parameter(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    add_parameter(c, wf, "token", "query", "text", required=True)
    r = get(c, wf, params={"other": "1"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["token"]}
    # The same name in the body satisfies it too (senders deliver the same
    # fields by GET or POST); a header of that name does not.
    r = post(c, wf, json_body={"token": "in-body"})
    assert r.status_code == 200, r.text
    r = get(c, wf, headers={"token": "in-header"})
    assert r.status_code == 400, r.text
    c.sql("DELETE FROM webhook.events WHERE workflow_id = %s", (wf,))
    r = get(c, wf, params={"token": "t0k"})
    assert r.status_code == 200, r.text
    assert only_event(c, wf)["params"]["token"] == "t0k"


def test_headers_lower_cased_and_declared_header_required(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    add_parameter(c, wf, "x-signature", "header", "text", required=True)
    assert [(p["name"], p["source"], p["required"]) for p in parameters(c, wf)] == \
        [("x-signature", "header", True)]

    r = post(c, wf, json_body={"a": 1}, headers={"X-Other": "1"})
    assert r.status_code == 400, r.text
    assert r.text == '{"msg":"Missing required parameter(s)","missing":["x-signature"]}'
    assert count_events(c, wf) == 0

    r = post(c, wf, json_body={"a": 1}, headers={"X-Signature": "sha256=abc", "X-Custom-Thing": "Mixed Case",
                                                 "User-Agent": "hookkit/1"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    h = ev["headers"]
    assert all(k == k.lower() for k in h), h
    assert h["x-signature"] == "sha256=abc"
    assert h["x-custom-thing"] == "Mixed Case"
    assert h["user-agent"] == "hookkit/1"
    assert h["content-type"] == "application/json"
    # The declared header parameter is in params; undeclared headers are not.
    assert ev["params"] == {"a": 1, "x-signature": "sha256=abc"}


def test_gzip_and_deflate_bodies(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "x", "n": 1})
    set_required(c, wf, ["order_id"])
    raw = json.dumps({"order_id": "gz", "n": 1, "pad": "z" * 2000})
    r = post(c, wf, gzip.compress(raw.encode()),
             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    raw2 = json.dumps({"order_id": "df", "n": 2})
    r = post(c, wf, zlib.compress(raw2.encode()),
             headers={"Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert r.status_code == 200, r.text
    # Raw deflate (no zlib wrapper), as many clients send it.
    co = zlib.compressobj(wbits=-15)
    raw3 = "order_id=raw&n=3"
    r = post(c, wf, co.compress(raw3.encode()) + co.flush(),
             headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "deflate"})
    assert r.status_code == 200, r.text
    evs = events(c, wf)
    assert [e["params"]["order_id"] for e in evs] == ["gz", "df", "raw"]
    assert evs[0]["body"] == raw and evs[1]["body"] == raw2 and evs[2]["body"] == raw3
    assert evs[0]["params"]["pad"] == "z" * 2000
    assert evs[2]["params"]["n"] == 3

    # A gzip body missing the required field is still validated after decoding.
    r = post(c, wf, gzip.compress(b'{"n": 5}'),
             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["order_id"]}
    # Corrupt gzip: 400, nothing stored.
    r = post(c, wf, b"\x1f\x8b\x08\x00garbage", headers={"Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.text
    assert "gzip" in response_json(r)["msg"]
    assert count_events(c, wf) == 3


def test_unsupported_content_encoding_is_415(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, b'{"a": 1}', headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 415, r.text
    assert response_json(r)["msg"] == "Unsupported Content-Encoding: br"
    assert count_events(c, wf) == 0


def test_iso_8859_1_charset(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, "café crème".encode("iso-8859-1"), headers={"Content-Type": "text/plain; charset=iso-8859-1"})
    assert r.status_code == 200, r.text
    r = post(c, wf, b"name=caf%E9&city=M\xfcnchen",
             headers={"Content-Type": "application/x-www-form-urlencoded; charset=ISO-8859-1"})
    assert r.status_code == 200, r.text
    r = post(c, wf, '{"name": "café"}'.encode("iso-8859-1"),
             headers={"Content-Type": "application/json; charset=iso-8859-1"})
    assert r.status_code == 200, r.text
    evs = events(c, wf)
    assert evs[0]["body"] == "café crème"
    assert evs[1]["params"] == {"name": "café", "city": "München"}
    assert evs[1]["body"] == "name=caf%E9&city=München"
    assert evs[2]["params"] == {"name": "café"}
    assert evs[2]["body"] == '{"name": "café"}'


def test_full_body_accepts_invalid_json_as_text(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT count(*) FROM webhook_set_full_body(%s, true)", (wf,))
    assert [(p["name"], p["source"], p["type"]) for p in parameters(c, wf)] == [("body", "body", "text")]
    raw = '{"not": json at all,,'
    r = post(c, wf, raw.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["params"] == {"body": raw}
    assert ev["body"] == raw
    # Valid JSON is also kept verbatim as the one text parameter.
    raw2 = '{"a": 1}'
    r = post(c, wf, raw2.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert events(c, wf)[-1]["params"] == {"body": raw2}


def test_full_body_custom_param_name_required(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT count(*) FROM webhook_set_full_body(%s, true, 'payload')", (wf,))
    set_required(c, wf, ["payload"])
    r = post(c, wf, b"<<raw text>>", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert only_event(c, wf)["params"] == {"payload": "<<raw text>>"}


def test_bad_json_without_full_body_is_400(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, b'{"order_id": "x",', headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    msg = response_json(r)["msg"]
    assert msg.startswith("Invalid JSON body"), msg
    r = post(c, wf, b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert response_json(r)["msg"].startswith("Invalid JSON body")
    assert count_events(c, wf) == 0
    # The listener still accepts good requests afterwards.
    assert post(c, wf, json_body={"ok": True}).status_code == 200
    assert count_events(c, wf) == 1


def test_value_contradicting_sample_type_is_400(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    sample_json(c, wf, {"order_id": "A1", "amount": 10})
    # Types guide, they don't block: stored as received...
    r = post(c, wf, json_body={"order_id": "A2", "amount": "lots"})
    assert r.status_code == 200, r.text
    assert only_event(c, wf)["params"]["amount"] == "lots"
    c.sql("DELETE FROM webhook.events WHERE workflow_id = %s", (wf,))
    # ...unless the workflow opts into strict typing.
    c.sql("SELECT count(*) FROM webhook_set_strict(%s, true)", (wf,))
    r = post(c, wf, json_body={"order_id": "A2", "amount": "lots"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Parameter 'amount' must be a number", "parameter": "amount",
                                "expected": "number", "found": "string"}
    assert count_events(c, wf) == 0
    # Same in a form body.
    r = post(c, wf, b"order_id=A3&amount=lots", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Parameter 'amount' must be a number", "parameter": "amount",
                                "expected": "number", "found": "string"}
    # An object where text is expected.
    r = post(c, wf, json_body={"order_id": {"nested": 1}, "amount": 1})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Parameter 'order_id' must be text", "parameter": "order_id",
                                "expected": "text", "found": "object"}
    assert count_events(c, wf) == 0
    # A numeric string is fine for a number.
    r = post(c, wf, json_body={"order_id": "A4", "amount": "42"})
    assert r.status_code == 200, r.text
    assert only_event(c, wf)["params"] == {"order_id": "A4", "amount": 42}


def test_json_variants(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    # Media type and parameters are case-insensitive.
    r = post(c, wf, b'{"a": "x"}', headers={"Content-Type": "Application/JSON; Charset=UTF-8"})
    assert r.status_code == 200, r.text
    # +json suffix.
    r = post(c, wf, b'{"b": 2}', headers={"Content-Type": "application/vnd.api+json"})
    assert r.status_code == 200, r.text
    # No Content-Type at all: a JSON body is recognised.
    r = requests_post_raw(c, wf, b'{"c": true}')
    assert r[0] == 200, r
    # A top-level array is the one parameter "items".
    r = post(c, wf, b'[1, {"d": 4}]', headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    evs = events(c, wf)
    assert [e["params"] for e in evs] == [{"a": "x"}, {"b": 2}, {"c": True}, {"items": [1, {"d": 4}]}]


def requests_post_raw(c, wf, body: bytes, headers: dict | None = None) -> tuple[int, str]:
    """A POST with exactly these headers (requests would add a Content-Type)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=10)
    try:
        conn.putrequest("POST", f"/hooks/{wf}", skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_repeated_headers_joined(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=10)
    try:
        conn.putrequest("POST", f"/hooks/{wf}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("X-Multi", "one")
        conn.putheader("x-multi", "two")
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
    finally:
        conn.close()
    assert events(c, wf)[-1]["headers"]["x-multi"] == "one, two"


def test_multipart_repeated_fields(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, data=[("tag", "a"), ("tag", "b")],
             files=[("doc", ("1.txt", b"one", "text/plain")), ("doc", ("2.txt", b"two", "text/plain"))])
    assert r.status_code == 200, r.text
    p = only_event(c, wf)["params"]
    assert p["tag"] == ["a", "b"]
    assert [d["filename"] for d in p["doc"]] == ["1.txt", "2.txt"]
    assert [base64.b64decode(d["content_base64"]) for d in p["doc"]] == [b"one", b"two"]


def test_xml_declared_encoding(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    body = b'<?xml version="1.0" encoding="ISO-8859-1"?><r><name>caf\xe9</name></r>'
    r = post(c, wf, body, headers={"Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["params"] == {"name": "café"}
    assert "café" in ev["body"]


def test_big_integers_keep_their_digits(ready, new_workflow):
    """jsonb holds arbitrary-precision numbers; params must not round them through f64."""
    c = ready
    wf = new_workflow()["id"]
    raw = b'{"big": 123456789012345678901234567890, "u64max1": 18446744073709551616, "i64": 9223372036854775807}'
    r = post(c, wf, raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    p = only_event(c, wf)["params"]
    assert p["i64"] == 9223372036854775807
    assert p["u64max1"] == 18446744073709551616, p
    assert p["big"] == 123456789012345678901234567890, p


NUL_REFUSED = {"msg": "Request contains a NUL character (\\u0000), which PostgreSQL text cannot store"}


def test_nul_byte_in_body_is_refused_and_binary_uploads_accepted(ready, new_workflow):
    """README: PostgreSQL text cannot hold U+0000: a request with a NUL in a
    text body gets 400 and nothing is stored; a multipart body with binary
    file parts is accepted, its parts in params and the body column NULL."""
    c = ready
    wf = new_workflow()["id"]
    r = post(c, wf, b"abc\x00def", headers={"Content-Type": "text/plain"})
    assert (r.status_code, response_json(r)) == (400, NUL_REFUSED), r.text
    assert count_events(c, wf) == 0
    # Positive control: the same body without the NUL is stored whole.
    r = post(c, wf, b"abcdef", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert [e["body"] for e in events(c, wf)] == ["abcdef"]

    wf2 = new_workflow()["id"]
    r = post(c, wf2, data={"f": "v"}, files={"x": ("a.bin", b"AB\x00CD", "application/octet-stream")})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf2)
    assert ev["params"]["f"] == "v"
    assert ev["params"]["x"] == {"filename": "a.bin", "content_type": "application/octet-stream", "size": 5,
                                 "content_base64": base64.b64encode(b"AB\x00CD").decode()}
    assert ev["body"] is None, f"binary multipart body stored as text: {ev['body']!r}"


def test_nul_in_parameter_values_is_a_client_error(solo, uniq):
    """README: a NUL character in a value, key or text body → 400, nothing stored."""
    c = solo
    wf = create_workflow(c, "public.params_handler", uniq)
    cases = [
        ("json value", lambda: post(c, wf, b'{"a": "x\\u0000y"}', headers={"Content-Type": "application/json"})),
        ("json key", lambda: post(c, wf, b'{"x\\u0000y": 1}', headers={"Content-Type": "application/json"})),
        ("query", lambda: requests.get(c.hook_url(wf) + "?a=%00", timeout=10)),
        ("form", lambda: post(c, wf, b"a=x%00y", headers={"Content-Type": "application/x-www-form-urlencoded"})),
        ("multipart field", lambda: post(c, wf, files={"a": (None, b"x\x00y")})),
    ]
    outcomes = {}
    for label, send in cases:
        r = send()
        outcomes[label] = (r.status_code, response_json(r))
    assert outcomes == {label: (400, NUL_REFUSED) for label, _ in cases}, outcomes
    assert count_events(c, wf) == 0
    # Positive control: the same requests without the NUL are stored.
    assert post(c, wf, json_body={"a": "xy"}).status_code == 200
    assert requests.get(c.hook_url(wf) + "?a=0", timeout=10).status_code == 200
    assert [e["params"] for e in events(c, wf)] == [{"a": "xy"}, {"a": "0"}]


@pytest.fixture
def xact_trace(solo, uniq):
    """Records, for every row inserted into webhook.events or webhook.rejections,
    the top-level transaction id that inserted it (an AFTER INSERT trigger; an
    event's own xmin changes when its executor updates it, and a request's rows
    may be written in subtransactions). Yields the trace table's name."""
    c = solo
    table, fn, trig = f"public.{uniq('xacts')}", f"public.{uniq('trace')}", uniq("trace")
    c.sql(f"CREATE TABLE {table} (tbl text, id bigint, xid xid8)")
    c.sql(f"""CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
              SET search_path = pg_catalog AS $t$
              BEGIN INSERT INTO {table} VALUES (TG_TABLE_NAME, NEW.id, pg_current_xact_id()); RETURN NULL; END $t$""")
    for tbl in ("events", "rejections"):
        c.sql(f"CREATE TRIGGER {trig} AFTER INSERT ON webhook.{tbl} FOR EACH ROW EXECUTE FUNCTION {fn}()")
    try:
        yield table
    finally:
        for tbl in ("events", "rejections"):
            c.sql(f"DROP TRIGGER IF EXISTS {trig} ON webhook.{tbl}")
        c.sql(f"DROP FUNCTION IF EXISTS {fn}()")
        c.sql(f"DROP TABLE IF EXISTS {table}")


def sent_around_a_bad_one(c, wf: str, attempt: int, goods: int, bad_body: bytes) -> dict:
    """Sends ``goods`` good JSON requests with ``bad_body`` in the middle, all
    waiting behind a stopped listener (so that they can share a batch), each
    tagged with the attempt; returns {label: (status, answer)}."""
    results: dict = {}

    def send(label, body):
        r = post(c, wf, body, headers={"Content-Type": "application/json"},
                 params={"try": str(attempt), "who": label})
        results[label] = (r.status_code, r.json())

    sends = [lambda i=i: send(f"good{i}", json.dumps({"n": i}).encode()) for i in range(goods)]
    sends.insert(goods // 2, lambda: send("bad", bad_body))
    sent_behind_a_stopped_listener(c, sends)
    return results


def test_bad_request_does_not_fail_its_batch(solo, uniq, xact_trace):
    """Requests are committed in batches; one request refused inside a batch
    (a NUL: 400, recorded in webhook.rejections by the batch's transaction)
    must not turn its neighbours into 503s. Proof that they shared the batch:
    the rejection row and stored neighbours were inserted by one transaction."""
    c = solo
    wf = create_workflow(c, "public.params_handler", uniq)
    seen = []
    for attempt in range(5):
        results = sent_around_a_bad_one(c, wf, attempt, 20, b'{"n": "\\u0000"}')
        assert results.pop("bad") == (400, NUL_REFUSED), results
        assert sorted(results) == sorted(f"good{i}" for i in range(20))
        ids = {}
        for label, (status, body) in results.items():
            assert status == 200 and body["msg"] == "success", (label, status, body)
            ids[label] = body["event_id"]
        rows = c.rows("SELECT e.id, e.params, t.xid::text AS xid FROM webhook.events e "
                      f"JOIN {xact_trace} t ON t.tbl = 'events' AND t.id = e.id "
                      "WHERE e.workflow_id = %s AND e.query->>'try' = %s ORDER BY e.id", (wf, str(attempt)))
        assert [r["id"] for r in rows] == sorted(ids.values())
        assert {r["params"]["who"]: r["params"]["n"] for r in rows} == {f"good{i}": i for i in range(20)}
        rejected = c.rows("SELECT r.status, r.reason, t.xid::text AS xid FROM webhook.rejections r "
                          f"JOIN {xact_trace} t ON t.tbl = 'rejections' AND t.id = r.id "
                          "WHERE r.workflow_id = %s AND r.query->>'try' = %s", (wf, str(attempt)))
        assert [(x["status"], x["reason"]) for x in rejected] == [(400, NUL_REFUSED["msg"])], rejected
        if rejected[0]["xid"] in {r["xid"] for r in rows}:
            return  # the refused request and at least one stored neighbour: one transaction
        seen.append((rejected[0]["xid"], sorted({r["xid"] for r in rows})))
    pytest.fail(f"the refused request never shared a batch with a stored one in 5 tries "
                f"(its transaction, the stored ones'): {seen}")


def test_a_number_postgresql_cannot_store_fails_only_its_own_request(solo, uniq, xact_trace):
    """jsonb keeps numbers as numerics: 0e1073741823 passes the body parser,
    but numeric_in refuses it. Sent among other requests that wait for the
    same batch, it gets its own 400 and its neighbours are stored (a build
    that wrote the batch's jsonb before the statement's subtransaction
    answered all of them 503). Proof that they shared the batch: the
    neighbours sent before and after it behind a stopped listener were stored
    by one transaction (the network thread may hand them over in two
    batches, hence the tries)."""
    c = solo
    wf = create_workflow(c, "public.params_handler", uniq)
    seen = []
    for attempt in range(5):
        results = sent_around_a_bad_one(c, wf, attempt, 10, b'{"n": 0e1073741823}')
        assert results.pop("bad") == (400, {"msg": "Request cannot be stored: value overflows numeric format"})
        assert {label: status for label, (status, _) in results.items()} == {f"good{i}": 200 for i in range(10)}
        rows = c.rows("SELECT e.params, t.xid::text AS xid FROM webhook.events e "
                      f"JOIN {xact_trace} t ON t.tbl = 'events' AND t.id = e.id "
                      "WHERE e.workflow_id = %s AND e.query->>'try' = %s", (wf, str(attempt)))
        assert sorted(r["params"]["who"] for r in rows) == sorted(f"good{i}" for i in range(10))
        if len({r["xid"] for r in rows}) == 1:
            return
        seen.append(sorted({r["xid"] for r in rows}))
    pytest.fail(f"the requests around the refused one never shared a batch in 5 tries (their transactions): {seen}")


def test_declared_header_parameter_name_is_case_insensitive(ready, new_workflow):
    """Header names are case-insensitive: a header parameter declared as
    'X-Shop-Id' is checked and recorded whatever case the caller uses."""
    c = ready
    wf = new_workflow()["id"]
    add_parameter(c, wf, "X-Shop-Id", "header", "text", required=True)
    r = post(c, wf, json_body={"a": 1})
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": MISSING_MSG, "missing": ["X-Shop-Id"]}
    r = post(c, wf, json_body={"a": 1}, headers={"x-shop-id": "berlin"})
    assert r.status_code == 200, r.text
    ev = only_event(c, wf)
    assert ev["headers"]["x-shop-id"] == "berlin"
    assert ev["params"] == {"a": 1, "X-Shop-Id": "berlin"}, ev["params"]
