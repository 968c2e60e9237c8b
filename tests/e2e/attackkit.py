"""A bounded attack on one listener (127.0.0.1 only), while a legitimate sender
keeps delivering signed requests (test_listener_under_attack.py, bench/attack.sh).

The attacks, each on its own threads, for ``seconds``:

* slowloris: connections that send a request head one byte at a time and
  never finish it;
* header floods: requests whose head is larger than webhook.max_header_size
  (431), and requests with hundreds of small headers;
* forged signatures at the highest rate a few keep-alive connections reach
  (401 each);
* decompression bombs: 10 kB of gzip that inflates past webhook.max_body_size
  (413).

The legitimate sender signs each request (GitHub scheme) and sends it on its
own keep-alive connection at a steady pace; its latencies are reported.

With ``--heavy``, a second phase: another tenant's heavy requests to its own
workflows, each a finding of the budget review, while the legitimate sender
goes on: 24 MB bodies of ``[0,0,…]`` (parsed values would take ~90 times
their size: 413 after the cost check), 24 MB bodies with forged signatures to
a workflow checking HMAC-SHA512 against 10 secrets (401), and ``{}`` to a
workflow with 1,000 required parameters (400 listing them).

Used by tests/e2e/test_listener_under_attack.py (which asserts what every request got)
and by bench/attack.sh (which reports the legitimate p99 during the attack).
Only the standard library, so ``python3 tests/e2e/attackkit.py`` runs anywhere.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Outcome:
    """What happened: statuses per kind of traffic, and legitimate latencies (ms)."""
    statuses: dict[str, Counter] = field(default_factory=dict)
    legit_ms: list[float] = field(default_factory=list)
    legit_event_ids: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str, status) -> None:
        with self.lock:
            self.statuses.setdefault(kind, Counter())[status] += 1

    def percentile(self, q: float) -> float:
        values = sorted(self.legit_ms)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _connection(port: int, source: str | None = None, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)


def legitimate(port: int, path: str, secret: bytes, until: float, out: Outcome, pace: float,
               source: str | None = None, stop: threading.Event | None = None) -> None:
    """``source``: the local address to send from (another 127.x address
    is another client to the listener); ``stop``: sends on past ``until``
    until it is set."""
    conn = _connection(port, source)
    n = 0
    while time.monotonic() < until or (stop is not None and not stop.is_set()):
        n += 1
        body = json.dumps({"order_id": f"legit-{n}", "amount": n}).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)}
        started = time.monotonic()
        try:
            conn.request("POST", path, body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            status = reply.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = _connection(port, source)
            status, data = "error", b""
        elapsed = (time.monotonic() - started) * 1000
        out.count("legitimate", status)
        if status == 200:
            with out.lock:
                out.legit_ms.append(elapsed)
                out.legit_event_ids.append(json.loads(data)["event_id"])
        time.sleep(max(0.0, pace - elapsed / 1000))
    conn.close()


def forged(port: int, path: str, until: float, out: Outcome) -> None:
    conn = _connection(port)
    body = json.dumps({"order_id": "forged"}).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    while time.monotonic() < until:
        try:
            conn.request("POST", path, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            out.count("forged", reply.status)
        except (OSError, http.client.HTTPException):
            out.count("forged", "error")
            conn.close()
            conn = _connection(port)
    conn.close()


def slowloris(port: int, path: str, until: float, out: Outcome, connections: int) -> None:
    socks = []
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
    sent = 0
    while time.monotonic() < until:
        while len(socks) < connections:
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                out.count("slowloris", "opened")
            except OSError:
                out.count("slowloris", "refused")
                break
        for s in list(socks):
            try:
                s.send(head[sent % len(head):sent % len(head) + 1])
            except OSError:
                out.count("slowloris", "closed by listener")
                socks.remove(s)
                s.close()
        sent += 1
        time.sleep(0.2)
    for s in socks:
        s.close()


def header_flood(port: int, path: str, until: float, out: Outcome) -> None:
    # Just over the default webhook.max_header_size (16 kB), and more headers
    # than the listener takes (100), both without a body: the listener reads
    # all that was sent before it answers 431 and closes, so the client always
    # gets to read the answer (unread bytes would make the close a reset).
    big = {"X-Big": "a" * (16 * 1024 + 200)}
    many = {f"X-H{i}": "v" * 20 for i in range(400)}
    while time.monotonic() < until:
        for kind, headers in (("header flood (one huge header)", big), ("header flood (400 headers)", many)):
            conn = _connection(port)
            try:
                conn.request("GET", path, headers=headers)
                reply = conn.getresponse()
                reply.read()
                out.count(kind, reply.status)
            except (OSError, http.client.HTTPException):
                out.count(kind, "closed")
            finally:
                conn.close()


def decompression_bomb(port: int, path: str, until: float, out: Outcome, inflated_bytes: int) -> None:
    bomb = gzip.compress(b"{\"a\":\"" + b"0" * inflated_bytes + b"\"}", compresslevel=9)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
               "X-Hub-Signature-256": "sha256=" + "0" * 64}
    while time.monotonic() < until:
        conn = _connection(port)
        try:
            conn.request("POST", path, body=bomb, headers=headers)
            reply = conn.getresponse()
            reply.read()
            out.count("decompression bomb", reply.status)
        except (OSError, http.client.HTTPException):
            out.count("decompression bomb", "closed")
        finally:
            conn.close()


def heavy(port: int, path: str, until: float, out: Outcome, kind: str, body: bytes,
          headers: dict[str, str], source: str) -> None:
    """Sends the same heavy request over and over on one connection from
    ``source``, waiting as long as each answer takes (a heavy request's cost
    lands when it is processed, however long after it was sent)."""
    conn = _connection(port, source, timeout=HEAVY_ANSWER_TIMEOUT)
    while time.monotonic() < until:
        try:
            conn.request("POST", path, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            out.count(kind, reply.status)
        except (OSError, http.client.HTTPException):
            out.count(kind, "error")
            conn.close()
            conn = _connection(port, source, timeout=HEAVY_ANSWER_TIMEOUT)
    conn.close()


# Long enough for a 24 MB body parsed and stored the slow way (about 20 s).
HEAVY_ANSWER_TIMEOUT = 90


def run_heavy(port: int, workflow_id: str, secret: bytes, seconds: float, zeros_workflow: str,
              sha512_workflow: str, required_workflow: str, *, pace: float = 0.01) -> Outcome:
    """The heavy phase (see the module's comment): two threads of each heavy
    request for ``seconds``, and the legitimate sender from another address
    (127.0.0.2: another tenant's sender is another client), starting first
    and stopping half a second after the last heavy request was answered, so
    that it is there whenever a heavy request is processed. Each heavy thread
    sends from its own address (127.0.0.10 and on): no client's share of the
    listener's body memory holds the heavy bodies back, the point is what
    they cost once admitted."""
    out = Outcome()
    until = time.monotonic() + seconds
    zeros = b"[" + b"0," * (12 * 1024 * 1024 - 1) + b"0]"
    json_type = {"Content-Type": "application/json"}
    forged_sha512 = {**json_type, "X-Signature": "sha512=" + "0" * 128}
    attacks = [
        ("24 MB [0,0,...]", f"/hooks/{zeros_workflow}", zeros, json_type),
        ("24 MB forged HMAC-SHA512, 10 secrets", f"/hooks/{sha512_workflow}", zeros, forged_sha512),
        ("{} to 1,000 required parameters", f"/hooks/{required_workflow}", b"{}", json_type),
    ]
    heavy_done = threading.Event()
    sender = threading.Thread(target=legitimate, args=(port, f"/hooks/{workflow_id}", secret, until, out, pace,
                                                       "127.0.0.2", heavy_done))
    heavies = [threading.Thread(target=heavy, args=(port, path, until, out, kind, body, headers,
                                                    f"127.0.0.{10 + 2 * n + i}"))
               for n, (kind, path, body, headers) in enumerate(attacks) for i in range(2)]
    sender.start()
    for t in heavies:
        t.start()
    for t in heavies:
        t.join(seconds + 2 * HEAVY_ANSWER_TIMEOUT)
    time.sleep(0.5)
    heavy_done.set()
    sender.join(30)
    return out


def run(port: int, workflow_id: str, secret: bytes, seconds: float, *, forgers: int = 4,
        slow_connections: int = 50, bomb_bytes: int = 64 * 1024 * 1024, pace: float = 0.01) -> Outcome:
    """Runs every attack and the legitimate sender for ``seconds``; returns
    what each got. The legitimate sender starts first and stops last."""
    out = Outcome()
    path = f"/hooks/{workflow_id}"
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=legitimate, args=(port, path, secret, until + 0.5, out, pace))]
    threads += [threading.Thread(target=forged, args=(port, path, until, out)) for _ in range(forgers)]
    threads += [threading.Thread(target=slowloris, args=(port, path, until, out, slow_connections)),
                threading.Thread(target=header_flood, args=(port, path, until, out)),
                threading.Thread(target=decompression_bomb, args=(port, path, until, out, bomb_bytes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workflow", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--heavy", nargs=3, metavar=("ZEROS_WF", "SHA512_WF", "REQUIRED_WF"),
                        help="run the heavy phase instead, against these workflows of another tenant")
    args = parser.parse_args()
    if args.heavy:
        quiet = Outcome()
        path = f"/hooks/{args.workflow}"
        legitimate(args.port, path, args.secret.encode(), time.monotonic() + min(args.seconds, 5), quiet, 0.01,
                   "127.0.0.2")
        out = run_heavy(args.port, args.workflow, args.secret.encode(), args.seconds, *args.heavy)
        print(json.dumps({
            "seconds": args.seconds,
            "other_tenant_alone": {"ok": len(quiet.legit_ms), "p50_ms": round(quiet.percentile(0.5), 2),
                                   "p99_ms": round(quiet.percentile(0.99), 2)},
            "other_tenant_during_heavy_requests": {
                "ok": len(out.legit_ms), "p50_ms": round(out.percentile(0.5), 2),
                "p99_ms": round(out.percentile(0.99), 2), "max_ms": round(max(out.legit_ms, default=0), 2)},
            "statuses": {kind: {str(k): v for k, v in counts.items()} for kind, counts in out.statuses.items()},
        }, indent=2))
        return
    # Baseline: the legitimate sender alone.
    quiet = Outcome()
    path = f"/hooks/{args.workflow}"
    legitimate(args.port, path, args.secret.encode(), time.monotonic() + min(args.seconds, 5), quiet, 0.01)
    out = run(args.port, args.workflow, args.secret.encode(), args.seconds)
    report = {
        "seconds": args.seconds,
        "legitimate_alone": {"ok": len(quiet.legit_ms), "p50_ms": round(quiet.percentile(0.5), 2),
                             "p99_ms": round(quiet.percentile(0.99), 2)},
        "legitimate_under_attack": {"ok": len(out.legit_ms), "p50_ms": round(out.percentile(0.5), 2),
                                    "p99_ms": round(out.percentile(0.99), 2)},
        "statuses": {kind: {str(k): v for k, v in counts.items()} for kind, counts in out.statuses.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
