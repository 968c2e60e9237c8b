"""One client with a handful of idle connections announcing large bodies
cannot exhaust the listener's 256 MiB body budget: memory is reserved as body
bytes arrive, and one client address holds at most its share."""

import socket
import time

import requests

from hookkit import still_silent
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.body_timeout": "10s"})
tenants = tenants_fixture("alice", "bob")


def hold(port, path, extra):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n").encode())
    return s


def test_one_client_cannot_exhaust_the_body_budget(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wa, wb = alice.create_workflow(), bob.create_workflow()
    # Positive control.
    r = requests.post(private.hook_url(wb), json={"x": 1}, timeout=10)
    assert r.status_code == 200, r.text
    port = private.http_port
    # Positive control: body bytes that do arrive are what the budget counts.
    # One client's share is 50 MB here (two bodies of max_body_size, 25 MB):
    # with 48 MB of two unfinished bodies held, its third body is refused
    # once it passes the share.
    MB = 1000 * 1000
    held = [hold(port, f"/hooks/{wa}", f"Content-Length: {25 * MB}\r\n") for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"0" * (24 * MB))
        time.sleep(0.5)
        third = hold(port, f"/hooks/{wa}", f"Content-Length: {25 * MB}\r\n")
        held.append(third)
        try:
            third.sendall(b"0" * (5 * MB))
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = third.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert (lines[0], headers["retry-after"], headers["connection"], body) == (
            "HTTP/1.1 503 Service Unavailable", "1", "close", b'{"msg":"Listener busy, retry later"}'), answer
    finally:
        for s in held:
            s.close()
    socks = []
    try:
        for _ in range(10):   # 10 x 25 MB reserved (chunked: max_body_size)
            socks.append(hold(port, f"/hooks/{wa}", "Transfer-Encoding: chunked\r\n"))
        # The remaining 6 MiB (256 MiB - 10 x 25 MiB), as one declared length.
        socks.append(hold(port, f"/hooks/{wa}", "Content-Length: 6291456\r\n"))
        time.sleep(0.5)
        r = requests.post(private.hook_url(wb), json={"x": 2}, timeout=10)
        assert r.status_code == 200, f"{len(socks)} idle connections of one client: bob gets {r.status_code} {r.text}"
        event_id = r.json()["event_id"]
        assert r.json() == {"msg": "success", "event_id": event_id, "workflow_id": wb}
        assert private.scalar("SELECT params FROM webhook.events WHERE id = %s", (event_id,)) == {"x": 2}
        # Positive control: the attack stood while bob was served. Every
        # connection is still open and waiting for its body, and each is a
        # live request: the first, finished, is stored for alice.
        assert [still_silent(s) for s in socks] == [True] * 11
        socks[0].sendall(b'7\r\n{"a":1}\r\n0\r\n\r\n')
        head = socks[0].recv(65536)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wa,)) == 1
    finally:
        for s in socks:
            s.close()
