"""Issue 7 item 9 (found in review): one client with a handful of idle
connections announcing large bodies cannot exhaust the listener's 256 MiB body
budget: memory is reserved as body bytes arrive, and one client address holds
at most its share."""

import socket
import time

import requests

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
    assert requests.post(private.hook_url(wb), json={"x": 1}, timeout=10).status_code == 200
    port = private.http_port
    socks = []
    try:
        for _ in range(10):   # 10 x 25 MB reserved (chunked: max_body_size)
            socks.append(hold(port, f"/hooks/{wa}", "Transfer-Encoding: chunked\r\n"))
        # The remaining 6 MiB (256 MiB - 10 x 25 MiB), as one declared length.
        socks.append(hold(port, f"/hooks/{wa}", "Content-Length: 6291456\r\n"))
        time.sleep(0.5)
        r = requests.post(private.hook_url(wb), json={"x": 1}, timeout=10)
        print(len(socks), r.status_code, r.text)
        assert r.status_code == 200, f"{len(socks)} idle connections of one client: bob gets {r.status_code} {r.text}"
    finally:
        for s in socks:
            s.close()
