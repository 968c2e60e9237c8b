"""Who may send.

* webhook_set_allowed_networks: requests from other client networks get 403
  {"msg":"Address not allowed"} and store nothing.
* webhook.trusted_proxies: X-Forwarded-For / Forwarded name the client only
  when the connecting peer is a trusted proxy; otherwise they are the client's
  own claim and ignored. The address recorded in the event is the one checked.
* webhook_set_rate_limit: token buckets for the workflow as a whole and per
  client address, shared by the listener processes (shared memory): beyond
  them 429 {"msg":"Too many requests"} with Retry-After. Forged requests are
  refused before the workflow's bucket, so they cannot use up its limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests

from hookkit import (assert_rejection_counts, count_events, events, login_role, post, ready,  # noqa: F401
                     wait_until)

FORBIDDEN = (403, {"msg": "Address not allowed"})


def status_body(r):
    return r.status_code, r.json()


def fresh_post(c, wf, body, headers=None):
    """One request on its own connection (so the kernel picks any listener)."""
    with requests.Session() as s:
        return post(c, wf, json_body=body, headers=headers, session=s)





@pytest.fixture
def trusting_localhost(ready):
    """webhook.trusted_proxies = 127.0.0.1 for one test (the test client is the proxy)."""
    c = ready
    c.sql("ALTER SYSTEM SET webhook.trusted_proxies = '127.0.0.1'")
    c.sql("SELECT pg_reload_conf()")
    try:
        yield c
    finally:
        c.sql("ALTER SYSTEM RESET webhook.trusted_proxies")
        c.sql("SELECT pg_reload_conf()")


def wait_for_forwarded_client(c, wf, address: str, timeout: float = 10.0) -> None:
    """Waits until every listener process took in the reloaded setting: a
    request claiming ``address`` is recorded with it, on fresh connections."""
    deadline = time.monotonic() + timeout
    hits, stored = 0, None
    while hits < 8:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the listeners did not take in webhook.trusted_proxies within {timeout}s: "
                                 f"the last request was recorded from {stored!r}, {hits} in a row from {address}")
        r = fresh_post(c, wf, {"probe": True}, headers={"X-Forwarded-For": address})
        assert r.status_code == 200, r.text
        stored = c.scalar("SELECT host(remote_addr) FROM webhook.events WHERE id = %s", (r.json()["event_id"],))
        hits = hits + 1 if stored == address else 0
        time.sleep(0.02)
    c.sql("SELECT webhook_delete_events(%s)", (wf,))


def test_allow_list(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    # Positive control: the test client (127.0.0.1) is accepted by default.
    assert post(c, wf, json_body={"n": 1}).status_code == 200
    c.sql("SELECT webhook_set_allowed_networks(%s, '{10.0.0.0/8, 2001:db8::/32}')", (wf,))
    assert status_body(post(c, wf, json_body={"n": 2})) == FORBIDDEN
    c.sql("SELECT webhook_set_allowed_networks(%s, '{10.0.0.0/8, 127.0.0.0/8}')", (wf,))
    assert post(c, wf, json_body={"n": 3}).status_code == 200
    c.sql("SELECT webhook_set_allowed_networks(%s, NULL)", (wf,))
    assert post(c, wf, json_body={"n": 4}).status_code == 200
    assert [e["params"]["n"] for e in events(c, wf)] == [1, 3, 4]
    assert_rejection_counts(c, wf, {(403, "Address not allowed"): 1})
    err = c.sql_error("SELECT webhook_set_allowed_networks(%s, '{}')", (wf,), sqlstate="22023")
    assert err["message"] == "networks must be an array of 1 to 1000 networks, or NULL for any address"
    # The rule holds on the table too.
    c.sql_error("UPDATE webhook.workflows SET allowed_networks = '{}' WHERE id = %s", (wf,), sqlstate="23514")


def test_forwarded_headers_are_ignored_from_untrusted_peers(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_set_allowed_networks(%s, '{203.0.113.0/24}')", (wf,))
    # The attack: claim an allowed address. 127.0.0.1 is no trusted proxy.
    r = post(c, wf, json_body={}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert status_body(r) == FORBIDDEN
    r = post(c, wf, json_body={}, headers={"Forwarded": "for=203.0.113.7"})
    assert status_body(r) == FORBIDDEN
    assert count_events(c, wf) == 0
    [rejected, _] = c.rows("SELECT host(remote_addr) AS addr FROM webhook.rejections WHERE workflow_id = %s "
                           "ORDER BY id", (wf,))
    assert rejected["addr"] == "127.0.0.1"


def test_trusted_proxy_names_the_client(trusting_localhost, new_workflow):
    c = trusting_localhost
    wf = new_workflow()["id"]
    wait_for_forwarded_client(c, wf, "198.51.100.200")
    c.sql("SELECT webhook_set_allowed_networks(%s, '{203.0.113.0/24, 2001:db8::/32}')", (wf,))
    r = post(c, wf, json_body={"n": 1}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 200, r.text
    # The nearest untrusted hop is the client: a client cannot prepend an allowed one.
    r = post(c, wf, json_body={"n": 2}, headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
    assert status_body(r) == FORBIDDEN
    # No forwarding header: the proxy itself is the client.
    assert status_body(post(c, wf, json_body={"n": 3})) == FORBIDDEN
    stored = c.rows("SELECT params->>'n' AS n, host(remote_addr) AS addr FROM webhook.events "
                    "WHERE workflow_id = %s ORDER BY id", (wf,))
    assert stored == [{"n": "1", "addr": "203.0.113.7"}]
    refused = c.rows("SELECT host(remote_addr) AS addr FROM webhook.rejections WHERE workflow_id = %s "
                     "ORDER BY id", (wf,))
    assert [r["addr"] for r in refused] == ["198.51.100.1", "127.0.0.1"]
    err = c.sql_error("ALTER SYSTEM SET webhook.trusted_proxies = '10.0.0.0/8, proxy.local'", sqlstate="22023")
    assert err["message"] == 'invalid value for parameter "webhook.trusted_proxies": "10.0.0.0/8, proxy.local"'
    assert err["detail"] == '"proxy.local" is not an IP address or CIDR network.'


def test_only_the_configured_forwarded_header_is_believed(trusting_localhost, new_workflow):
    """An X-Forwarded-For proxy appends to X-Forwarded-For and passes a
    client's own Forwarded header through: that one must not name the client
    (and the other way round with webhook.forwarded_header = forwarded)."""
    c = trusting_localhost
    wf = new_workflow()["id"]
    wait_for_forwarded_client(c, wf, "198.51.100.202")
    c.sql("SELECT webhook_set_allowed_networks(%s, '{203.0.113.0/24, 127.0.0.0/8}')", (wf,))
    smuggled = {"Forwarded": "for=203.0.113.7", "X-Forwarded-For": "198.51.100.9"}
    assert status_body(post(c, wf, json_body={"n": 1}, headers=smuggled)) == FORBIDDEN
    # A hop that cannot be read leaves the client unknown, not the proxy.
    assert status_body(post(c, wf, json_body={"n": 2}, headers={"X-Forwarded-For": "unknown"})) == FORBIDDEN
    c.alter_system("webhook.forwarded_header", "forwarded")
    try:
        def forwarded_believed():
            r = fresh_post(c, wf, {"n": 3}, headers={"Forwarded": 'for="[2001:db8::7]:4711";proto=https',
                                                   "X-Forwarded-For": "203.0.113.8"})
            return r.status_code == 403 or None
        # Now Forwarded names the client (2001:db8::7, not allowed) and a
        # smuggled X-Forwarded-For is ignored.
        wait_until(forwarded_believed, timeout=10, what="Forwarded believed after the reload")
        assert status_body(post(c, wf, json_body={"n": 4}, headers={"Forwarded": "for=203.0.113.9"}))[0] == 200
        assert status_body(post(c, wf, json_body={"n": 5}, headers={"Forwarded": "for=unknown"})) == FORBIDDEN
        r = post(c, wf, json_body={"n": 6}, headers={"X-Forwarded-For": "203.0.113.10"})
        assert r.status_code == 200  # the proxy itself (127.0.0.1), X-Forwarded-For unread
    finally:
        c.alter_system("webhook.forwarded_header", None, shown="x-forwarded-for")
    stored = c.rows("SELECT params->>'n' AS n, host(remote_addr) AS addr FROM webhook.events "
                    "WHERE workflow_id = %s ORDER BY id", (wf,))
    assert stored == [{"n": "4", "addr": "203.0.113.9"}, {"n": "6", "addr": "127.0.0.1"}]
    unknown = c.rows("SELECT params_count FROM (SELECT count(*) AS params_count FROM webhook.rejections "
                     "WHERE workflow_id = %s AND remote_addr IS NULL) x", (wf,))
    assert unknown == [{"params_count": 2}]


def test_rate_limits_refuse_nan_and_infinity_on_the_table(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    for column, value in (("rate_limit", "NaN"), ("rate_limit", "Infinity"), ("client_rate_limit", "NaN")):
        burst = column.replace("limit", "burst")
        c.sql_error(f"UPDATE webhook.workflows SET {column} = %s::float8, {burst} = 1 WHERE id = %s",
                    (value, wf), sqlstate="23514")
    err = c.sql_error("SELECT webhook_set_rate_limit(%s, 'Infinity')", (wf,), sqlstate="22023")
    assert err["message"] == "rates must be positive (requests per second) and bursts at least 1"


def test_a_disabled_workflow_is_404_whatever_guards_it(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_set_verification(%s, 'bearer', secret => 't')", (wf,))
    c.sql("SELECT webhook_set_allowed_networks(%s, '{10.0.0.0/8}')", (wf,))
    c.sql("SELECT webhook_set_rate_limit(%s, 0.001, 1)", (wf,))
    # Positive control: enabled, the guards answer.
    assert status_body(post(c, wf, json_body={})) == FORBIDDEN
    c.sql("SELECT webhook_disable_workflow(%s)", (wf,))
    for _ in range(3):
        assert status_body(post(c, wf, json_body={})) == (404, {"msg": "Workflow not found"})


def test_workflow_rate_limit_holds_across_listener_processes(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    # Positive control: without a limit, 40 quick requests all pass.
    replies = [fresh_post(c, wf, {"n": n}).status_code for n in range(40)]
    assert replies == [200] * 40
    c.sql("SELECT webhook_delete_events(%s)", (wf,))

    c.sql("SELECT webhook_set_rate_limit(%s, 0.001, 20)", (wf,))
    replies = [fresh_post(c, wf, {"n": n}) for n in range(40)]
    assert [r.status_code for r in replies] == [200] * 20 + [429] * 20
    for r in replies[20:]:
        assert r.json() == {"msg": "Too many requests"}
        assert int(r.headers["Retry-After"]) >= 1
    # Both listener processes served them, and together they let 20 through.
    pids = {e["listener_pid"] for e in events(c, wf)}
    assert len(pids) == 2, pids
    assert count_events(c, wf) == 20
    assert_rejection_counts(c, wf, {(429, "Too many requests: workflow over its rate"): 20})


def test_retry_after_and_refill(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    c.sql("SELECT webhook_set_rate_limit(%s, 1, 1)", (wf,))
    assert post(c, wf, json_body={}).status_code == 200
    r = post(c, wf, json_body={})
    assert (r.status_code, r.headers["Retry-After"]) == (429, "1")
    time.sleep(1.1)
    assert post(c, wf, json_body={}).status_code == 200
    c.sql("SELECT webhook_set_rate_limit(%s, NULL)", (wf,))
    assert [post(c, wf, json_body={}).status_code for _ in range(5)] == [200] * 5
    err = c.sql_error("SELECT webhook_set_rate_limit(%s, 0)", (wf,), sqlstate="22023")
    assert err["message"] == "rates must be positive (requests per second) and bursts at least 1"


def test_per_client_limit(trusting_localhost, new_workflow):
    c = trusting_localhost
    wf = new_workflow()["id"]
    wait_for_forwarded_client(c, wf, "198.51.100.201")
    c.sql("SELECT webhook_set_rate_limit(%s, NULL, per_client_rate => 0.001, per_client_burst => 3)", (wf,))
    as_client = lambda ip: fresh_post(c, wf, {"ip": ip}, headers={"X-Forwarded-For": ip}).status_code  # noqa: E731
    assert [as_client("203.0.113.1") for _ in range(5)] == [200, 200, 200, 429, 429]
    # Another client has its own bucket.
    assert [as_client("203.0.113.2") for _ in range(4)] == [200, 200, 200, 429]
    assert_rejection_counts(c, wf, {(429, "Too many requests: client over its rate"): 3})


def test_forged_requests_do_not_use_up_the_workflow_limit(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    secret = b"limit-secret"
    c.sql("SELECT webhook_set_verification(%s, 'github', secret => %s)", (wf, secret.decode()))
    c.sql("SELECT webhook_set_rate_limit(%s, 0.001, 3)", (wf,))
    body = json.dumps({"ok": True}).encode()
    forged = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    signed = {"Content-Type": "application/json",
              "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}
    url = c.hook_url(wf)
    assert [requests.post(url, data=body, headers=forged, timeout=10).status_code for _ in range(10)] == [401] * 10
    assert [requests.post(url, data=body, headers=signed, timeout=10).status_code for _ in range(4)] == \
        [200, 200, 200, 429]
    assert count_events(c, wf) == 3


def test_lists_are_bounded_on_the_table_too(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    def networks(count: int) -> str:
        return (f"ARRAY(SELECT ('10.0.' || (i / 256) || '.' || mod(i, 256))::cidr "
                f"FROM generate_series(1, {count}) i)")

    # Positive control: 1000 networks are accepted, through the API and on the table.
    c.sql(f"SELECT webhook_set_allowed_networks(%s, {networks(1000)})", (wf,))
    c.sql(f"UPDATE webhook.workflows SET allowed_networks = {networks(1000)} WHERE id = %s", (wf,))
    err = c.sql_error(f"SELECT webhook_set_allowed_networks(%s, {networks(1001)})", (wf,), sqlstate="22023")
    assert err["message"] == "networks must be an array of 1 to 1000 networks, or NULL for any address"
    c.sql_error(f"UPDATE webhook.workflows SET allowed_networks = {networks(1001)} WHERE id = %s", (wf,),
                sqlstate="23514")
    assert c.scalar("SELECT cardinality(allowed_networks) FROM webhook.workflows WHERE id = %s", (wf,)) == 1000


def test_tenants_cannot_set_guards_on_others_workflows_or_the_server(ready, login_role):
    from tenantkit import TENANT_HANDLER, Tenant
    c = ready
    alice, bob = (Tenant(c, login_role()) for _ in range(2))
    for t in (alice, bob):
        c.sql(TENANT_HANDLER.format(schema=f'"{t.name}"'), user=t.name)
    wf = alice.create_workflow()
    calls = [
        ("SELECT id FROM webhook_set_allowed_networks(%s, '{10.0.0.0/8}')", (wf,)),
        ("SELECT id FROM webhook_set_rate_limit(%s, 1, 1)", (wf,)),
        ("SELECT id FROM webhook_set_redacted_headers(%s, '{x-shop-token}')", (wf,)),
        ("SELECT id FROM webhook_set_verification(%s, 'bearer', secret => 'mine')", (wf,)),
    ]
    # Positive control: the owner may make each call.
    for query, args in calls:
        assert str(alice.scalar(query, args)) == wf
    before = c.row("SELECT allowed_networks::text[], rate_limit, rate_burst, redact_headers FROM webhook.workflows "
                   "WHERE id = %s", (wf,))
    # Another tenant: the workflow does not exist for it, and direct writes reach no row.
    for query, args in calls:
        err = bob.error(query, args, sqlstate="42704")
        assert err["message"] == f"workflow {wf} does not exist"
    assert bob.rows("UPDATE webhook.workflows SET allowed_networks = NULL, rate_limit = NULL, rate_burst = NULL, "
                    "redact_headers = '{}' WHERE id = %s RETURNING id", (wf,)) == []
    assert c.row("SELECT allowed_networks::text[], rate_limit, rate_burst, redact_headers FROM webhook.workflows "
                 "WHERE id = %s", (wf,)) == before
    # The server-wide settings are the DBA's: a tenant can neither set them
    # for its session nor for the server.
    for setting, value in (("webhook.trusted_proxies", "0.0.0.0/0"), ("webhook.forwarded_header", "forwarded")):
        err = bob.error(f"SET {setting} = '{value}'", sqlstate="55P02")
        assert err["message"] == f'parameter "{setting}" cannot be changed now'
        err = bob.error(f"ALTER SYSTEM SET {setting} = '{value}'", sqlstate="42501")
        assert err["message"] == f'permission denied to set parameter "{setting}"'
    assert c.scalar("SHOW webhook.trusted_proxies") == ""
