"""Canonical routes: only ``/hooks/{id}`` with the id in its
canonical form (8-4-4-4-12 lower-case hex) reaches a workflow, and method names
are case-sensitive. Any other spelling of a real workflow's URL is 404
``{"msg":"Workflow not found"}`` (or 405 for a lower-case method) and stores
nothing, so a proxy rule on the canonical path cannot be sidestepped.

Every case first proves the workflow works at its canonical URL (positive
control), then sends the variant and counts the workflow's rows.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

import hookkit as hk

NOT_FOUND = b'{"msg":"Workflow not found"}'
METHOD_NOT_ALLOWED = {"msg": "Method not allowed", "allowed": ["GET", "POST"]}


@pytest.fixture(scope="module")
def route_wf(cluster):
    handler, table = hk.create_side_handler(cluster)
    wf = hk.create_workflow(cluster, handler)
    hk.wait_for_value(lambda: getattr(hk.try_request("GET", cluster.hook_url(wf)), "status", None), 200,
                      timeout=15, what="workflow served")
    yield {"id": wf, "table": table}
    cluster.sql("DELETE FROM webhook.workflows WHERE id = %s::uuid", (wf,))


def one_upper(wf_id: str) -> str:
    """The id with only its first hex letter in upper case (ids of uuid4 always
    have one: the variant nibble is 8, 9, a or b, and 31 more random digits)."""
    for i, c in enumerate(wf_id):
        if c in "abcdef":
            return wf_id[:i] + c.upper() + wf_id[i + 1:]
    pytest.skip("id without a hex letter")


PATH_VARIANTS = {
    "upper_case_id": lambda i: f"/hooks/{i.upper()}",
    "one_upper_case_letter": lambda i: f"/hooks/{one_upper(i)}",
    "urn_uuid": lambda i: f"/hooks/urn:uuid:{i}",
    "braces_percent_encoded": lambda i: f"/hooks/%7B{i}%7D",
    "32_hex_digits": lambda i: f"/hooks/{i.replace('-', '')}",
    "32_hex_digits_upper": lambda i: f"/hooks/{i.replace('-', '').upper()}",
    "trailing_slash": lambda i: f"/hooks/{i}/",
    "trailing_slash_and_query": lambda i: f"/hooks/{i}/?a=1",
    "extra_segment": lambda i: f"/hooks/{i}/extra",
    "double_slash": lambda i: f"/hooks//{i}",
    "percent_encoded_first_digit": lambda i: f"/hooks/%{ord(i[0]):02X}{i[1:]}",
    "encoded_slash_after": lambda i: f"/hooks/{i}%2F",
    "semicolon_parameter": lambda i: f"/hooks/{i};x=1",
    "trailing_dot": lambda i: f"/hooks/{i}.",
    "trailing_space_encoded": lambda i: f"/hooks/{i}%20",
    "dot_segment": lambda i: f"/hooks/./{i}",
}


def control(cluster, wf: dict, method: str) -> None:
    """The canonical URL answers 200 and stores exactly one event."""
    before = hk.count_events(cluster, wf["id"])
    body = {"control": 1} if method == "POST" else None
    r = hk.request(method, cluster.hook_url(wf["id"]), body=body)
    answer = hk.assert_success(r, wf["id"])
    assert cluster.scalar("SELECT count(*) FROM webhook.events WHERE id = %s AND workflow_id = %s::uuid",
                          (answer["event_id"], wf["id"])) == 1
    assert hk.count_events(cluster, wf["id"]) == before + 1


@pytest.mark.parametrize("variant", sorted(PATH_VARIANTS))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_non_canonical_path_is_workflow_not_found(cluster, route_wf, variant, method):
    control(cluster, route_wf, method)
    before = hk.count_events(cluster, route_wf["id"])
    path = PATH_VARIANTS[variant](route_wf["id"])
    body = {"a": 1} if method == "POST" else None
    r = hk.request(method, cluster.base_url + path, body=body)
    assert r.status == 404, (path, r)
    assert r.body == NOT_FOUND, (path, r)
    assert r.headers["content-type"] == "application/json", r
    assert hk.count_events(cluster, route_wf["id"]) == before, path
    assert cluster.scalar(f"SELECT count(*) FROM {route_wf['table']}") == before


@pytest.mark.parametrize("method", ["get", "post", "Get", "pOST"])
def test_method_names_are_case_sensitive(cluster, route_wf, method):
    control(cluster, route_wf, method.upper())
    before = hk.count_events(cluster, route_wf["id"])
    body = b'{"a": 1}' if method.upper() == "POST" else None
    r = hk.request(method, cluster.hook_url(route_wf["id"]), body=body,
                   headers={"Content-Type": "application/json"})
    assert r.status == 405, r
    assert r.json() == METHOD_NOT_ALLOWED, r
    assert r.headers["allow"] == "GET, POST", r
    assert hk.count_events(cluster, route_wf["id"]) == before


def test_upper_case_prefix_is_not_found(cluster, route_wf):
    """Only /hooks/ is the workflow prefix: /HOOKS/ is any other path."""
    control(cluster, route_wf, "GET")
    before = hk.count_events(cluster, route_wf["id"])
    r = hk.get_url(cluster.base_url + f"/HOOKS/{route_wf['id']}")
    assert r.status == 404 and r.body == b'{"msg":"Not found"}', r
    assert hk.count_events(cluster, route_wf["id"]) == before


def test_query_string_and_percent_decoding_do_not_rescue_a_variant(cluster, route_wf):
    """A query string is fine on the canonical path; the id is compared as sent,
    never percent-decoded (so %61 is not 'a')."""
    r = hk.get_url(cluster.hook_url(route_wf["id"]) + "?x=1")
    hk.assert_success(r, route_wf["id"])
    before = hk.count_events(cluster, route_wf["id"])
    encoded = "".join(f"%{ord(c):02x}" for c in route_wf["id"])
    for path in (f"/hooks/{encoded}", f"/hooks/{quote(route_wf['id'].upper())}"):
        r = hk.get_url(cluster.base_url + path)
        assert r.status == 404 and r.body == NOT_FOUND, (path, r)
    assert hk.count_events(cluster, route_wf["id"]) == before
