"""Connection limits: idle sockets from one client cannot
starve the listener of file descriptors or of connection slots, connections
over webhook.max_connections / webhook.max_connections_per_client are refused
at once with 503 ``{"msg":"Too many connections"}``, ``Retry-After: 1`` and
``connection: close``, a closed connection frees its slot, and idle
connections are closed after webhook.header_timeout.

All clusters run one listener process (the caps are per process). Every
client here is on loopback; 127.0.0.2 acts as a second client address.
"""

from __future__ import annotations

import http.client
import resource
import socket
import time

import pytest

import hookkit as hk
from hookkit import still_silent, wait_ready

OTHER_CLIENT = "127.0.0.2"
FLOOD = 3000
REFUSED = {"msg": "Too many connections"}


@pytest.fixture(autouse=True, scope="module")
def enough_file_descriptors():
    """This process holds thousands of sockets: raise its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def serving_cluster(make_cluster, **conf):
    c = make_cluster(conf={"webhook.workers": 1, **conf})
    c.sql("CREATE EXTENSION webhook_ext")
    wait_ready(c)
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler)
    hk.wait_for_value(lambda: getattr(hk.try_request("GET", c.hook_url(wf)), "status", None), 200,
                      timeout=15, what="workflow served")
    return c, wf


def idle_socket(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        try:
            s.close()
        except OSError:
            pass


def post_from(cluster, wf: str, source: str, body: dict, timeout: float = 10) -> hk.Reply:
    """A POST on a fresh connection from the given local address."""
    conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=timeout,
                                      source_address=(source, 0))
    headers: dict[str, str] = {}
    data = hk.encode_body(body, headers)  # sets Content-Type: application/json
    try:
        conn.request("POST", f"/hooks/{wf}", body=data, headers=headers)
        return hk.read_reply(conn.getresponse())
    finally:
        conn.close()


def raw_post_from(cluster, wf: str, source: str) -> hk.RawResult:
    """A POST over a raw socket, read until the server closes."""
    port = cluster.http_port
    with idle_socket(port, source) as s:
        try:
            s.sendall(hk.http_request_bytes("POST", f"/hooks/{wf}", port, b'{"refused": true}',
                                            {"Content-Type": "application/json"}))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return hk.raw_read(s, 5.0)


def assert_refused(result: hk.RawResult) -> None:
    assert result.status == 503 and result.closed and not result.timed_out, result
    reply = result.reply()
    assert reply.json() == REFUSED, result
    assert reply.headers["retry-after"] == "1", result
    assert reply.headers["connection"] == "close", result


def test_3000_idle_sockets_do_not_delay_another_client(make_cluster):
    """Defaults: max_connections 1000, max_connections_per_client 100."""
    c, wf = serving_cluster(make_cluster)
    # Positive control: before the flood, the flooding client is served.
    hk.assert_success(post_from(c, wf, "127.0.0.1", {"before": 1}), wf)
    before = hk.count_events(c, wf)
    sockets: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            sockets.append(idle_socket(c.http_port))
        # Another client is served at once, and its event is stored.
        t0 = time.monotonic()
        reply = post_from(c, wf, OTHER_CLIENT, {"good": 1})
        elapsed = time.monotonic() - t0
        answer = hk.assert_success(reply, wf)
        assert elapsed < 1.0, f"good request took {elapsed:.2f}s"
        assert c.scalar("SELECT params FROM webhook.events WHERE id = %s", (answer["event_id"],)) == {"good": 1}
        # Exactly 100 of the flood hold a slot; the others were answered and closed.
        time.sleep(2.0)
        silent = sum(1 for s in sockets if still_silent(s))
        assert silent == 100, f"{silent} idle sockets kept open, expected the per-client cap of 100"
        # The flooding client itself is refused while it holds its 100.
        assert_refused(raw_post_from(c, wf, "127.0.0.1"))
    finally:
        close_all(sockets)
    assert hk.count_events(c, wf) == before + 1  # the good POST; the refused one stored nothing


def test_per_client_cap_refuses_that_client_only_and_frees_slots(make_cluster):
    c, wf = serving_cluster(make_cluster, **{
        "webhook.max_connections_per_client": 5,
        "webhook.max_connections": 50,
        "webhook.header_timeout": 60_000,
    })
    before = hk.count_events(c, wf)
    held = [idle_socket(c.http_port) for _ in range(4)]
    try:
        # Positive control: with four idle connections held, the client's
        # fifth connection is still served.
        time.sleep(0.5)  # all four accepted before the fifth arrives
        hk.assert_success(post_from(c, wf, "127.0.0.1", {"fifth": 1}), wf)
        assert hk.count_events(c, wf) == before + 1
        held.append(idle_socket(c.http_port))
        time.sleep(0.5)  # all five accepted (in order) before the sixth arrives
        assert_refused(raw_post_from(c, wf, "127.0.0.1"))
        hk.assert_success(post_from(c, wf, OTHER_CLIENT, {"other": 1}), wf)
        assert hk.count_events(c, wf) == before + 2
        # Closing one idle connection frees its slot for the same client.
        held.pop().close()
        hk.wait_for_value(lambda: post_from(c, wf, "127.0.0.1", {"again": 1}).status, 200, timeout=5,
                          what="slot freed after close")
    finally:
        close_all(held)
    assert hk.count_events(c, wf) == before + 3  # the refused POST stored nothing
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE params ? 'refused'") == 0


def test_global_cap_refuses_every_client_until_a_slot_frees(make_cluster):
    c, wf = serving_cluster(make_cluster, **{
        "webhook.max_connections": 10,
        "webhook.max_connections_per_client": 100,
        "webhook.header_timeout": 60_000,
    })
    before = hk.count_events(c, wf)
    held = [idle_socket(c.http_port) for _ in range(9)]
    try:
        # Positive control: with nine connections held, the tenth is served.
        time.sleep(0.5)
        hk.assert_success(post_from(c, wf, OTHER_CLIENT, {"tenth": 1}), wf)
        held.append(idle_socket(c.http_port))
        time.sleep(0.5)
        assert_refused(raw_post_from(c, wf, OTHER_CLIENT))
        assert_refused(raw_post_from(c, wf, "127.0.0.1"))
        assert hk.count_events(c, wf) == before + 1
    finally:
        close_all(held)
    hk.wait_for_value(lambda: post_from(c, wf, OTHER_CLIENT, {"after": 1}).status, 200, timeout=5,
                      what="slots freed after closing the idle connections")
    assert hk.count_events(c, wf) == before + 2


def test_idle_connections_are_closed_after_header_timeout(make_cluster):
    """A connection that never sends a request, and a keep-alive connection
    idle after its request, are both closed after webhook.header_timeout."""
    c, wf = serving_cluster(make_cluster, **{"webhook.header_timeout": 1000})
    silent = idle_socket(c.http_port)
    try:
        # Positive control: both are open to begin with.
        assert still_silent(silent)
        silent.setblocking(True)
        with hk.KeepAlive(c.base_url) as ka:
            hk.assert_success(ka.request("POST", c.hook_url(wf), {"ka": 1}), wf)
            assert ka.still_open()
            hk.wait_until(lambda: not ka.still_open(), timeout=5, what="idle keep-alive connection closed")
        result = hk.raw_read(silent, 5.0)
        assert result.closed and not result.timed_out, result
    finally:
        silent.close()
