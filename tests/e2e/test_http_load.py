"""Load: 1,000 sequential requests on one keep-alive
connection, and 16 concurrent keep-alive clients x 100 requests. Exactly as
many 2xx as requests, exactly as many events and handler rows, unique ids.
"""

from __future__ import annotations

import threading
import time

import pytest

import hookkit as hk
from hookkit import settle


@pytest.fixture
def load_wf(cluster):
    handler, table = hk.create_side_handler(cluster)
    wf = hk.create_workflow(cluster, handler)
    hk.wait_for_value(lambda: getattr(hk.try_request("GET", cluster.hook_url(wf)), "status", None), 200,
                      timeout=10, what="workflow served")
    # Start from zero rows: the probe above is not part of the count.
    cluster.sql("DELETE FROM webhook.events WHERE workflow_id = %s::uuid", (wf,))
    cluster.sql(f"DELETE FROM {table}")
    yield {"id": wf, "table": table, "url": cluster.hook_url(wf)}
    cluster.sql("DELETE FROM webhook.workflows WHERE id = %s::uuid", (wf,))


def check_rows(cluster, wf, event_ids: list[int], expected: int) -> None:
    assert len(event_ids) == expected
    assert len(set(event_ids)) == expected, "duplicate event ids in the responses"
    assert hk.count_events(cluster, wf["id"]) == expected
    stored = [r[0] for r in cluster.sql("SELECT id FROM webhook.events WHERE workflow_id = %s::uuid ORDER BY id",
                                        (wf["id"],))]
    assert stored == sorted(event_ids), "the stored events are not the ones the responses named"
    assert cluster.scalar("SELECT count(DISTINCT id) FROM webhook.events WHERE workflow_id = %s::uuid",
                          (wf["id"],)) == expected
    settle(cluster)  # handlers run in executors after the answers
    assert cluster.scalar(f"SELECT count(*) FROM {wf['table']}") == expected
    assert cluster.scalar(
        f"SELECT count(*) FROM {wf['table']} s JOIN webhook.events e ON e.id = s.event_id "
        "WHERE e.workflow_id = %s::uuid", (wf["id"],)) == expected
    assert cluster.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s::uuid "
                          "AND (status <> 'succeeded' OR error IS NOT NULL)", (wf["id"],)) == 0



def run_threads(target, count: int, limit: float = 120) -> float:
    """Runs ``target(n)`` for n in range(count) on threads, waits at most
    ``limit`` seconds for all of them, and returns the elapsed time."""
    threads = [threading.Thread(target=target, args=(n,), daemon=True) for n in range(count)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, limit - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads), f"clients still running after {limit:.0f} s"
    return time.monotonic() - t0

def test_1000_sequential_requests_on_one_keep_alive_connection(cluster, load_wf):
    pids = cluster.listener_pids()
    ids: list[int] = []
    statuses: dict[int, int] = {}
    t0 = time.monotonic()
    with hk.KeepAlive(cluster.base_url, timeout=10) as ka:
        for i in range(1000):
            r = ka.request("POST", load_wf["url"], {"seq": i, "pad": "p" * 200})
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if 200 <= r.status < 300:
                ids.append(r.json()["event_id"])
            assert time.monotonic() - t0 < 90, f"too slow: {i} requests in 90 s"
    elapsed = time.monotonic() - t0
    assert statuses == {200: 1000}, statuses
    check_rows(cluster, load_wf, ids, 1000)
    # Sequential on one connection: the events are in request order.
    seqs = [r[0] for r in cluster.sql("SELECT (params->>'seq')::int FROM webhook.events "
                                      "WHERE workflow_id = %s::uuid ORDER BY id", (load_wf["id"],))]
    assert seqs == list(range(1000))
    assert cluster.listener_pids() == pids
    print(f"1000 sequential requests in {elapsed:.2f}s ({1000 / elapsed:.0f}/s)")


def test_16_concurrent_keep_alive_clients_x_100(cluster, load_wf):
    pids = cluster.listener_pids()
    clients, per_client = 16, 100
    results: list[list[tuple[int, int | None]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients, timeout=30)

    def client(n: int) -> None:
        try:
            with hk.KeepAlive(cluster.base_url, timeout=20) as ka:
                start.wait()
                for i in range(per_client):
                    r = ka.request("POST", load_wf["url"], {"client": n, "i": i})
                    ev = r.json().get("event_id") if r.status == 200 else None
                    results[n].append((r.status, ev))
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(f"client {n}: {e!r}")

    elapsed = run_threads(client, clients)
    assert not errors, errors

    statuses: dict[int, int] = {}
    ids = []
    for per in results:
        assert len(per) == per_client
        for status, ev in per:
            statuses[status] = statuses.get(status, 0) + 1
            if ev is not None:
                ids.append(ev)
    assert statuses == {200: clients * per_client}, statuses
    check_rows(cluster, load_wf, ids, clients * per_client)
    # Every (client, i) pair stored exactly once.
    pairs = cluster.scalar("SELECT count(DISTINCT (params->>'client', params->>'i')) FROM webhook.events "
                           "WHERE workflow_id = %s::uuid", (load_wf["id"],))
    assert pairs == clients * per_client
    assert cluster.listener_pids() == pids
    print(f"{clients}x{per_client} concurrent requests in {elapsed:.2f}s ({clients * per_client / elapsed:.0f}/s)")


def test_concurrent_fresh_connections(cluster, load_wf):
    """8 threads x 40 requests, each on a new TCP connection (no keep-alive):
    accepting connections under load loses nothing either."""
    threads_n, per_thread = 8, 40
    results: list[tuple[int, int | None]] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            for i in range(per_thread):
                r = hk.post_url(load_wf["url"], {"t": n, "i": i}, headers={"Connection": "close"}, timeout=20)
                with lock:
                    results.append((r.status, r.json().get("event_id") if r.status == 200 else None))
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(f"thread {n}: {e!r}")

    run_threads(worker, threads_n)
    assert not errors, errors
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses == {200: threads_n * per_thread}, statuses
    check_rows(cluster, load_wf, [ev for _, ev in results], threads_n * per_thread)
