"""HTTP helpers for the listener end-to-end tests.

Plain standard library on purpose: ``http.client`` for well-formed requests
(keep-alive included) and raw sockets for the malformed ones. Every network
call has a timeout, every loop a bound in count and time.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

# How long any single HTTP exchange may take before a test calls it a hang.
DEFAULT_TIMEOUT = 10.0


def uniq(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------- responses
@dataclass
class Reply:
    status: int
    headers: dict[str, str]          # lower-cased names, repeated ones joined with ", "
    body: bytes
    reason: str = ""
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"response {self.status} is not JSON: {self.body[:500]!r}") from e

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers} {self.body[:300]!r}>"


def _headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def read_reply(resp: http.client.HTTPResponse) -> Reply:
    body = resp.read()
    pairs = list(resp.getheaders())
    return Reply(resp.status, _headers(pairs), body, resp.reason, pairs)


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode()


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Reply:
    """One request on a fresh connection (closed afterwards). ``body`` may be
    bytes, str, or a JSON-able object (sent as application/json)."""
    host, port, path = _target(url)
    headers = dict(headers or {})
    data = encode_body(body, headers)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        return read_reply(conn.getresponse())
    finally:
        conn.close()


def get(url: str, **kw) -> Reply:
    return request("GET", url, **kw)


def post(url: str, body: Any = None, **kw) -> Reply:
    return request("POST", url, body=body, **kw)


class KeepAlive:
    """Several requests on one HTTP/1.1 connection; notices if the server
    closed it or if a new TCP connection had to be opened."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT):
        host, port, _ = _target(base_url)
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.conn.connect()
        self.local_port = self.conn.sock.getsockname()[1]

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Reply:
        if path.startswith("http"):
            path = _target(path)[2]
        headers = dict(headers or {})
        data = encode_body(body, headers)
        sock_before = self.conn.sock
        self.conn.request(method, path, body=data, headers=headers)
        reply = read_reply(self.conn.getresponse())
        # http.client silently reconnects when the previous response closed the
        # connection; a keep-alive test must see that.
        if self.conn.sock is None or self.conn.sock is not sock_before:
            raise AssertionError(f"keep-alive connection was not reused for {method} {path}: {reply!r}")
        return reply

    def still_open(self) -> bool:
        """True if the server has not closed the connection (no EOF pending)."""
        sock = self.conn.sock
        if sock is None:
            return False
        sock.setblocking(False)
        try:
            data = sock.recv(1, socket.MSG_PEEK)
            return data != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            sock.setblocking(True)
            sock.settimeout(self.conn.timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "KeepAlive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------- raw sockets
@dataclass
class RawResult:
    data: bytes               # everything the server sent
    closed: bool              # the server closed (EOF or reset)
    reset: bool               # ... by a connection reset
    timed_out: bool           # we gave up waiting (the server neither answered nor closed)
    elapsed: float            # seconds from the last byte sent to EOF/timeout

    @property
    def status(self) -> int | None:
        """Status code of the first response in ``data``, if any."""
        if not self.data.startswith(b"HTTP/"):
            return None
        try:
            return int(self.data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None

    def reply(self) -> Reply | None:
        """The first response parsed (headers and a Content-Length body)."""
        if self.status is None or b"\r\n\r\n" not in self.data:
            return None
        head, _, rest = self.data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        pairs = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            pairs.append((name.strip(), value.strip()))
        headers = _headers(pairs)
        length = int(headers.get("content-length", len(rest)))
        return Reply(self.status, headers, rest[:length], lines[0], pairs)

    def __repr__(self) -> str:
        return (f"<RawResult status={self.status} closed={self.closed} reset={self.reset} "
                f"timed_out={self.timed_out} elapsed={self.elapsed:.2f}s data={self.data[:300]!r}>")


def raw_connect(port: int, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def still_silent(s: socket.socket) -> bool:
    """Open, and the server has sent nothing (neither an answer nor EOF)."""
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def raw_read(sock: socket.socket, timeout: float, t0: float | None = None,
             until_close: bool = True) -> RawResult:
    """Reads until the server closes or ``timeout`` seconds pass. With
    ``until_close=False`` stops after one complete response head+body."""
    t0 = time.monotonic() if t0 is None else t0
    deadline = t0 + timeout
    data = b""
    closed = reset = timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        sock.settimeout(min(left, 1.0))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            closed = reset = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if not until_close and _complete(data):
            break
    return RawResult(data, closed, reset, timed_out, time.monotonic() - t0)


def _complete(data: bytes) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(rest) >= int(value.strip())
            except ValueError:
                return True
    return True


def raw_exchange(port: int, payload: bytes | list[bytes], timeout: float = DEFAULT_TIMEOUT,
                 gap: float = 0.0, until_close: bool = True,
                 shut_write: bool = False) -> RawResult:
    """Connects, sends ``payload`` (pieces separated by ``gap`` seconds), then
    reads until close/timeout. Sending errors (the server closed early) count
    as a close."""
    pieces = payload if isinstance(payload, list) else [payload]
    with raw_connect(port, timeout) as s:
        for i, piece in enumerate(pieces):
            if i and gap:
                time.sleep(gap)
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                res = raw_read(s, 1.0)
                res.closed = True
                return res
        if shut_write:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return raw_read(s, timeout, until_close=until_close)


def http_request_bytes(method: str, path: str, port: int, body: bytes = b"",
                       headers: dict[str, str] | None = None, content_length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if content_length and body and not any(k.lower() == "content-length" for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------ SQL side
def create_side_handler(cluster, dbname: str = "postgres", sleep: float = 0) -> tuple[str, str]:
    """A handler that records each event id, and the pid of the process that
    ran it (an executor), in its own side table. Returns (handler, side table)."""
    table = "public." + uniq("side")
    name = "public." + uniq("h")
    cluster.sql(f"CREATE TABLE {table} (event_id bigint PRIMARY KEY, pid int DEFAULT pg_backend_pid(), "
                f"at timestamptz DEFAULT now())",
                dbname=dbname)
    sleep_sql = f"SELECT pg_sleep({sleep});" if sleep else ""
    cluster.sql(f"CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ "
                f"{sleep_sql} INSERT INTO {table}(event_id) VALUES (e.id); "
                f"SELECT jsonb_build_object('id', e.id) $h$", dbname=dbname)
    return name, table


def wait_handled(cluster, table: str, event_id: int, timeout: float = 10) -> dict:
    """The side-table row of ``event_id`` once an executor ran its handler
    (handlers run after the caller got its answer)."""
    return wait_until(lambda: cluster.row(f"SELECT * FROM {table} WHERE event_id = %s", (event_id,)),
                      timeout=timeout, interval=0.02, what=f"handler of event {event_id} ran")


def create_workflow(cluster, handler: str | None = None, dbname: str = "postgres",
                    name: str | None = None, **kw) -> str:
    """Creates a workflow (with a fresh side-table handler unless ``handler``
    is given) and returns its id as str."""
    if handler is None:
        handler, _ = create_side_handler(cluster, dbname)
    args = ["%s", "%s::regproc"]
    params: list[Any] = [name or uniq("wf"), handler]
    for key, value in kw.items():
        args.append(f"{key} => %s")
        params.append(value)
    wf_id = cluster.scalar(f"SELECT id FROM webhook_create_workflow({', '.join(args)})", params,
                           dbname=dbname)
    return str(wf_id)


def event_count(cluster, workflow_id: str | None = None, dbname: str = "postgres") -> int:
    if workflow_id is None:
        return cluster.scalar("SELECT count(*) FROM webhook.events", dbname=dbname)
    return cluster.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s::uuid",
                          (workflow_id,), dbname=dbname)


def assert_success(reply: Reply, workflow_id: str) -> dict:
    """The default response: 200 {"msg":"success","event_id":N,"workflow_id":...}."""
    assert reply.status == 200, reply
    body = reply.json()
    assert body.get("msg") == "success", body
    assert body.get("workflow_id") == str(workflow_id), body
    assert isinstance(body.get("event_id"), int), body
    return body


def assert_error(reply: Reply, status: int, msg: str | None = None, msg_prefix: str | None = None) -> dict:
    assert reply.status == status, reply
    assert "json" in reply.headers.get("content-type", ""), reply
    body = reply.json()
    assert isinstance(body.get("msg"), str) and body["msg"], body
    if msg is not None:
        assert body["msg"] == msg, body
    if msg_prefix is not None:
        assert body["msg"].startswith(msg_prefix), body
    return body


def wait_until(fn: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    """Calls ``fn`` until it returns a truthy value (exceptions count as false);
    returns that value, or raises AssertionError with the last error/value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    attempts = 0
    while True:
        attempts += 1
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001  (polling: any failure means "not yet")
            last = e
        if time.monotonic() >= deadline or attempts > 100_000:
            raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")
        time.sleep(interval)


def try_request(method: str, url: str, body: Any = None, timeout: float = 2.0) -> Reply | None:
    """A request that returns None instead of raising on connection errors."""
    try:
        return request(method, url, body=body, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
