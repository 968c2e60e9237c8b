"""``/healthz`` on the listener's port, for load balancers: 200 ``{"msg":"ok"}``
while the listener accepts events, 503 with ``Retry-After: 1`` and the reason
otherwise (the extension missing or at another version than the library,
the main thread stalled); GET and HEAD only; answered by the network thread,
never counted as a request of any workflow, never subject to body limits."""

from __future__ import annotations

import threading
import time

import requests

import hookkit as hk
from test_https import cert_dir, make_certificate  # noqa: F401  (cert_dir is a fixture)

FIRST_RELEASE = "0.1.0"
OK = {"msg": "ok"}
NOT_INSTALLED = {"msg": "webhook_ext is not installed in the listener's database"}
STALLED = {"msg": "Listener stalled: its main loop has not checked in for 3 s"}


def healthz(c, method: str = "GET", **kw) -> hk.Reply:
    return hk.request(method, f"{c.base_url}/healthz", **kw)


def wait_for_health(c, status: int, body: dict, timeout: float = 10) -> hk.Reply:
    """The first /healthz answer with this status and JSON body."""
    return hk.wait_until(lambda: healthz(c), timeout=timeout, interval=0.05,
                         what=f"/healthz answered {status} {body}",
                         until=lambda r: (r.status, r.json()) == (status, body))


def assert_unavailable(reply: hk.Reply, body: dict) -> None:
    assert (reply.status, reply.json()) == (503, body), reply
    assert reply.headers["retry-after"] == "1", reply
    assert reply.headers["content-type"] == "application/json", reply
    assert reply.headers["cache-control"] == "no-store", reply


def test_healthz_follows_the_extension_and_its_version(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.wait_for_http()
    assert_unavailable(wait_for_health(c, 503, NOT_INSTALLED), NOT_INSTALLED)
    head = healthz(c, "HEAD")
    assert (head.status, head.body, head.headers["retry-after"]) == (503, b"", "1"), head

    # The version the library is not: the message requests get.
    c.sql(f"CREATE EXTENSION webhook_ext VERSION '{FIRST_RELEASE}'")
    current = c.scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'webhook_ext'")
    mismatch = {"msg": f"webhook_ext {FIRST_RELEASE} is installed but the library is {current}: "
                       "run ALTER EXTENSION webhook_ext UPDATE"}
    assert_unavailable(wait_for_health(c, 503, mismatch), mismatch)

    c.sql("ALTER EXTENSION webhook_ext UPDATE")
    ok = wait_for_health(c, 200, OK)
    assert ok.body == b'{"msg":"ok"}', ok
    assert ok.headers["content-type"] == "application/json", ok
    assert ok.headers["cache-control"] == "no-store", ok
    assert "retry-after" not in ok.headers, ok
    head = healthz(c, "HEAD")
    assert (head.status, head.body, head.headers["content-type"]) == (200, b"", "application/json"), head
    # A query string is fine; other spellings of the path are not it.
    assert hk.get_url(f"{c.base_url}/healthz?from=lb").json() == OK
    for path in ("/healthz/", "/Healthz", "/healthz/x"):
        reply = hk.get_url(f"{c.base_url}{path}")
        assert (reply.status, reply.json()) == (404, {"msg": "Not found"}), (path, reply)


def test_healthz_takes_get_and_head_only_and_never_reads_a_body(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.max_body_size": "1kB"})
    c.sql("CREATE EXTENSION webhook_ext")
    wf = hk.create_workflow(c)
    hk.wait_ready(c)
    wait_for_health(c, 200, OK)
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "get"):
        reply = healthz(c, method)
        assert (reply.status, reply.json()) == (405, {"msg": "Method not allowed", "allowed": ["GET", "HEAD"]}), \
            (method, reply)
        assert reply.headers["allow"] == "GET, HEAD", reply
    # A body over webhook.max_body_size is neither read nor refused as too
    # large: the probe's answer, then the connection closes (its body was
    # not read).
    for method, status in (("GET", 200), ("POST", 405)):
        result = hk.raw_exchange(c.http_port, hk.http_request_bytes(
            method, "/healthz", c.http_port, body=b"x" * 2048), timeout=5)
        reply = result.reply()
        assert reply is not None and reply.status == status, (method, result)
        assert reply.headers["connection"] == "close", result
        assert result.closed and not result.timed_out, result
    # No workflow counted any of it.
    assert c.scalar("SELECT count(*) FROM webhook.rejection_counts") == 0
    assert c.scalar("SELECT count(*) FROM webhook.rejections") == 0
    assert hk.count_events(c) == 0
    assert hk.assert_success(hk.post_url(c.hook_url(wf), {"n": 1}), wf)


def test_healthz_over_https(make_cluster, cert_dir):  # noqa: F811  (the imported fixture)
    cert, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": cert, "webhook.tls_key_file": key,
                           "webhook.workers": 1})
    c.wait_for_http()
    url = f"https://127.0.0.1:{c.http_port}/healthz"

    def probe(method: str = "GET") -> requests.Response:
        return requests.request(method, url, verify=cert, timeout=10)

    r = hk.wait_until(probe, timeout=10, what="503 over HTTPS",
                      until=lambda r: (r.status_code, r.json()) == (503, NOT_INSTALLED))
    assert r.headers["retry-after"] == "1"
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_until(probe, timeout=10, what="200 over HTTPS",
                  until=lambda r: (r.status_code, r.json()) == (200, OK))
    r = probe("POST")
    assert (r.status_code, r.json(), r.headers["allow"]) == (
        405, {"msg": "Method not allowed", "allowed": ["GET", "HEAD"]}, "GET, HEAD")


def test_a_main_thread_held_up_in_a_commit_is_reported_stalled(make_cluster):
    """A commit waiting for a synchronous standby that is not there holds the
    listener's main thread: no event is answered, and /healthz says so
    within the stall bound (3 s) plus a check; once the wait ends, 200 again."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    wf = hk.create_workflow(c)
    hk.wait_ready(c)
    wait_for_health(c, 200, OK)
    c.alter_system("synchronous_standby_names", "nobody")

    answers: list = []
    sender = threading.Thread(target=lambda: answers.append(
        hk.post_url(c.hook_url(wf), {"held": True}, timeout=60)))
    sent = time.monotonic()
    sender.start()
    stalled = wait_for_health(c, 503, STALLED, timeout=10)
    waited = time.monotonic() - sent
    assert_unavailable(stalled, STALLED)
    # The last check before the commit was at most a second before it.
    assert 1.5 <= waited < 8, waited
    assert answers == [], answers

    # Nothing to wait for any more: the commit completes, the caller gets
    # its 200, and so does the probe.
    c.sql("ALTER SYSTEM RESET synchronous_standby_names")
    c.sql("SELECT pg_reload_conf()")
    sender.join(30)
    assert len(answers) == 1
    body = hk.assert_success(answers[0], wf)
    assert hk.event(c, body["event_id"])["workflow_id"] is not None
    wait_for_health(c, 200, OK)


READ_ONLY = {"msg": "This server is read-only: it does not take events now"}


def test_a_read_only_server_is_not_healthy_and_stores_nothing(make_cluster):
    """pg_auto_failover keeps a promoted node read-only (default_transaction_read_only)
    until it is sure the old primary is gone: a load balancer must not send
    events there, and requests get 503 instead of failing batches."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    # Positive control: healthy and storing.
    assert (healthz(c).status, hk.post_url(c.hook_url(wf), {"n": 1}).status) == (200, 200)

    c.alter_system("default_transaction_read_only", "on")
    assert_unavailable(wait_for_health(c, 503, READ_ONLY), READ_ONLY)
    refused = hk.post_url(c.hook_url(wf), {"n": 2})
    assert (refused.status, refused.json(), refused.headers["retry-after"]) == (503, READ_ONLY, "1"), refused
    assert hk.count_events(c, wf) == 1
    c.wait_for_log("webhook_ext listener does not serve: the server is read-only")

    c.alter_system("default_transaction_read_only", None, shown="off")
    wait_for_health(c, 200, OK)
    assert hk.post_url(c.hook_url(wf), {"n": 3}).status == 200
    assert hk.count_events(c, wf) == 2
    assert "could not store a batch" not in c.log()
