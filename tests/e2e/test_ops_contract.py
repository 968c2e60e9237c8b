"""Parts of the operational contract no other test held.

* A handler's deadline holds under every response method.
* Capture across listener processes: of many concurrent requests exactly one
  becomes the sample; the capture functions' error paths.
* webhook.listen_addresses with `*`, `localhost`, an IPv6 address and several
  addresses.
* webhook_set_handler takes effect in the listener at once.
* webhook_trigger and webhook_replay called by another role (a superuser)
  still run the handler as the workflow's owner.
* CREATE EXTENSION in a schema of its own: the API lives there and the
  listener serves as usual.
* HTTPS: TLS 1.2 and 1.3 both work; an unreadable certificate keeps the
  listener down with a log line. (Older versions are not offered by rustls,
  and Debian's OpenSSL would not try them either, so no test can show it.)
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time

import pytest
import requests

import hookkit as hk
from hookkit import events, handler_rows, login_role, post, ready, recording_handler, settle  # noqa: F401


# ------------------------------------------------------------- deadlines
@pytest.fixture
def short_handler_timeout(ready):
    """webhook.handler_timeout = 300ms for one test (listeners and executors)."""
    ready.alter_system("webhook.handler_timeout", "300ms")
    try:
        yield ready
    finally:
        ready.alter_system("webhook.handler_timeout", None, shown="30s")


@pytest.mark.parametrize("method", ["default", "custom", "workflow"])
def test_the_handler_deadline_holds_under_every_response_method(short_handler_timeout, new_workflow, uniq,
                                                                method):
    c = short_handler_timeout
    fn, table = recording_handler(c, uniq, extra="PERFORM pg_sleep(5);")
    wf = new_workflow(handler=fn)["id"]
    c.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    if method == "custom":
        c.sql("SELECT webhook_set_response(%s, 'custom', body => 'ok {{n}}', content_type => 'text/plain')",
              (wf,))
    else:
        c.sql("SELECT webhook_set_response(%s, %s)", (wf, method))
    r = post(c, wf, json_body={"n": 1})
    if method == "workflow":
        event_id = r.json()["event_id"]
        assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": event_id})
    elif method == "custom":
        assert (r.status_code, r.text) == (200, "ok 1")
        event_id = events(c, wf)[0]["id"]
    else:
        event_id = r.json()["event_id"]
        assert r.json() == {"msg": "success", "event_id": event_id, "workflow_id": wf}
    settle(c, "id = %s", (event_id,))
    attempt = c.row("SELECT outcome, sqlstate, extract(epoch FROM ended_at - started_at) AS secs "
                    "FROM webhook.attempts WHERE event_id = %s", (event_id,))
    assert (attempt["outcome"], attempt["sqlstate"]) == ("timeout", "57014")
    assert attempt["secs"] < 4  # cancelled, not run for its 5 s
    assert c.row("SELECT status, error FROM webhook.events WHERE id = %s", (event_id,)) == {
        "status": "dead", "error": "57014: canceling statement due to user request"}
    assert handler_rows(c, table) == []  # its insert was rolled back with it


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


# ------------------------------------------------------- listen addresses
def serving(c, host: str, family=socket.AF_INET) -> bool:
    """Whether the listener answers a GET on ``host`` (404 for an unknown workflow)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect((host, c.http_port))
            s.sendall(b"GET /hooks/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 404")
    except OSError:
        return False


def local_ipv4_other_than_loopback() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("setting, reachable, unreachable", [
    ("*", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
    ("localhost", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
    ("::1", [("::1", socket.AF_INET6)], [("127.0.0.1", socket.AF_INET)]),
    ("127.0.0.1, ::1", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
])
def test_listen_addresses(make_cluster, setting, reachable, unreachable):
    c = make_cluster(conf={"webhook.listen_addresses": setting, "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    for host, family in reachable:
        hk.wait_until(lambda: serving(c, host, family), timeout=10, what=f"listener on {host}")
    for host, family in unreachable:
        assert not serving(c, host, family), host
    if setting in ("::1", "localhost", "127.0.0.1, ::1"):
        other = local_ipv4_other_than_loopback()
        if other is not None:
            assert not serving(c, other), other
    if setting == "*":
        other = local_ipv4_other_than_loopback()
        if other is not None:
            assert serving(c, other), other


# -------------------------------------------------------------- handlers
def test_set_handler_takes_effect_in_the_listener_at_once(ready, new_workflow, uniq):
    c = ready
    first, first_table = recording_handler(c, uniq)
    second, second_table = recording_handler(c, uniq)
    wf = new_workflow(handler=first)["id"]
    one = post(c, wf, json_body={"n": 1}).json()["event_id"]
    settle(c, "id = %s", (one,))
    c.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, second))
    two = post(c, wf, json_body={"n": 2}).json()["event_id"]
    assert [r["event_id"] for r in handler_rows(c, first_table)] == [one]
    assert [r["event_id"] for r in handler_rows(c, second_table)] == [two]


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


# ------------------------------------------------------ extension schema
def test_create_extension_in_a_schema_of_its_own(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE SCHEMA webhook_api")
    c.sql("CREATE EXTENSION webhook_ext SCHEMA webhook_api")
    assert c.scalar("SELECT count(*) FROM pg_proc WHERE proname = 'webhook_create_workflow' "
                    "AND pronamespace = 'webhook_api'::regnamespace") == 1
    assert c.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'webhook\\_%' "
                    "AND pronamespace = 'public'::regnamespace") == 0
    c.sql("CREATE FUNCTION public.h(e webhook.events) RETURNS jsonb LANGUAGE sql AS 'SELECT e.params'")
    wf = str(c.scalar("SELECT id FROM webhook_api.webhook_create_workflow('api-schema', 'public.h')"))
    url = c.scalar("SELECT webhook_api.webhook_url(%s)", (wf,))
    c.wait_for_http()
    r = hk.post_url(url, {"order": "A-1"})
    assert r.status == 200, r
    assert c.scalar("SELECT params FROM webhook.events WHERE workflow_id = %s", (wf,)) == {"order": "A-1"}
    assert [str(row["id"]) for row in c.rows("SELECT id FROM webhook_api.webhook_find_workflow(%s)", (wf,))] == \
        [wf]


# ------------------------------------------------------------------ HTTPS
from test_https import assert_listener_down, cert_dir, make_certificate  # noqa: E402,F401  (cert_dir: a fixture)


@pytest.fixture
def tls_cluster(make_cluster, cert_dir):
    cert, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": cert, "webhook.tls_key_file": key, "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    c.wait_for_http()
    return c, cert


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_1_2_and_1_3(tls_cluster, version):
    c, cert = tls_cluster
    wf = hk.create_workflow(c)
    context = ssl.create_default_context(cafile=cert)
    context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    with socket.create_connection(("127.0.0.1", c.http_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version() == version.replace("_", ".")
            body = json.dumps({"tls": version}).encode()
            s.sendall(hk.http_request_bytes("POST", f"/hooks/{wf}", c.http_port, body=body,
                                            headers={"Content-Type": "application/json", "Connection": "close"}))
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert c.scalar("SELECT params->>'tls' FROM webhook.events WHERE workflow_id = %s::uuid", (wf,)) == version


def test_unreadable_certificate_keeps_the_listener_down(make_cluster, cert_dir):
    _, key = make_certificate(cert_dir)
    c = make_cluster(conf={"webhook.tls_cert_file": os.path.join(cert_dir, "missing.crt"),
                           "webhook.tls_key_file": key})
    c.wait_for_log(r"webhook_ext listener cannot start: cannot read webhook.tls_cert_file "
                   r"\"[^\"]*missing.crt\"", timeout=10)
    assert_listener_down(c)
