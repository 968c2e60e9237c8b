"""The end-to-end tests' kit: HTTP to the listener and SQL around it.

Everything here builds on the ``Cluster`` of conftest.py: real HTTP over
127.0.0.1 to the listener, and SQL through fresh sessions. Two HTTP clients:

* ``post``/``get`` (cluster, workflow id) send with ``requests`` and return
  its Response;
* ``request``/``post_url``/``get_url``/``KeepAlive`` (a URL) send with plain
  ``http.client`` and return a ``Reply``, and the raw-socket helpers
  (``raw_exchange``, ``raw_read``, ...) send malformed requests byte by byte.

Every network call has a timeout, every loop a bound in count and time, and
every wait raises with what it last saw when its time is up.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from conftest import uniq as make_uniq

HTTP_TIMEOUT = 10  # seconds; every request is bounded


# -------------------------- HTTP with requests (a cluster and a workflow id)
def wait_ready(cluster, timeout: float = 30) -> None:
    """Waits until the listener answers an unknown workflow with 404 (it answers
    503 while it has not yet seen the extension)."""
    cluster.wait_for_http(timeout=timeout)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(cluster.hook_url(uuid.uuid4()), timeout=HTTP_TIMEOUT)
            last = (r.status_code, r.text)
            if r.status_code == 404:
                return
        except requests.RequestException as e:  # listener restarting
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError(f"listener not ready after {timeout}s: last answer {last!r}; "
                         f"log tail:\n{cluster.log()[-3000:]}")


def post(cluster, wf_id, data: Any = None, *, json_body: Any = None, headers: dict | None = None,
         params: Any = None, session: requests.Session | None = None, **kw) -> requests.Response:
    """POSTs to the workflow's URL. ``json_body`` is sent as application/json
    (serialised here, so the exact bytes are known); ``data`` as given."""
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    sender = session or requests
    return sender.post(cluster.hook_url(wf_id), data=data, headers=headers, params=params,
                       timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)


def get(cluster, wf_id, params: Any = None, headers: dict | None = None,
        session: requests.Session | None = None, **kw) -> requests.Response:
    sender = session or requests
    return sender.get(cluster.hook_url(wf_id), params=params, headers=headers,
                      timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)


def response_json(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"response is not JSON: {r.status_code} {r.headers} {r.text!r}")


def sent_behind_a_stopped_listener(cluster, sends: list, gap: float = 0.0) -> None:
    """Stops the cluster's one listener process, starts each of ``sends`` (a
    callable sending one request) on a thread, ``gap`` seconds apart so that
    they connect in this order, lets them arrive, resumes the listener and
    waits for them: the requests were waiting together, as under load."""
    [pid] = cluster.listener_pids()
    threads = [threading.Thread(target=send) for send in sends]
    os.kill(pid, signal.SIGSTOP)
    try:
        for t in threads:
            t.start()
            time.sleep(gap)
        time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    for t in threads:
        t.join(20)


# --------------------------------------------- HTTP with http.client (a URL)
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
            timeout: float = HTTP_TIMEOUT) -> Reply:
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


def get_url(url: str, **kw) -> Reply:
    return request("GET", url, **kw)


def post_url(url: str, body: Any = None, **kw) -> Reply:
    return request("POST", url, body=body, **kw)


def try_request(method: str, url: str, body: Any = None, timeout: float = 2.0) -> Reply | None:
    """A request that returns None instead of raising on connection errors."""
    try:
        return request(method, url, body=body, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None


class KeepAlive:
    """Several requests on one HTTP/1.1 connection; notices if the server
    closed it or if a new TCP connection had to be opened."""

    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT):
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


# --------------------------------------------------------------- raw sockets
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


def raw_connect(port: int, timeout: float = HTTP_TIMEOUT) -> socket.socket:
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


def raw_exchange(port: int, payload: bytes | list[bytes], timeout: float = HTTP_TIMEOUT,
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


# ------------------------------------------------------------------- waiting
def wait_until(fn: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition", until: Callable[[Any], Any] | None = None) -> Any:
    """Calls ``fn`` until it returns a truthy value, or one that ``until``
    accepts (exceptions count as not yet); returns that value, or raises
    AssertionError with the last error/value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    attempts = 0
    while True:
        attempts += 1
        try:
            value = fn()
            if (until(value) if until is not None else value):
                return value
            last = value
        except Exception as e:  # noqa: BLE001  (polling: any failure means "not yet")
            last = e
        if time.monotonic() >= deadline or attempts > 100_000:
            raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")
        time.sleep(interval)


def wait_for_value(fn: Callable[[], Any], expected: Any, timeout: float, interval: float = 0.1,
                   what: str = "value") -> Any:
    """Calls ``fn`` until it returns ``expected`` (exceptions count as not
    yet); returns it, or raises AssertionError with the last value or error
    next to the expected one."""
    return wait_until(fn, timeout, interval, what=f"{what} == {expected!r}", until=lambda v: v == expected)


def wait_for_status(cluster, event_id: int, status: str, timeout: float = 10, **kw) -> dict:
    """The event row once its status is ``status``; raises with the row (and
    its attempts) as last seen when the time is up."""
    query = "SELECT * FROM webhook.events WHERE id = %s"
    deadline = time.monotonic() + timeout
    while True:
        row = cluster.row(query, (event_id,), **kw)
        if row is not None and row["status"] == status:
            return row
        if time.monotonic() >= deadline:
            tried = cluster.rows("SELECT attempt, outcome, sqlstate, message FROM webhook.attempts "
                                 "WHERE event_id = %s ORDER BY attempt", (event_id,), **kw)
            raise AssertionError(f"event {event_id} not {status} within {timeout}s; last: {row!r}; "
                                 f"attempts: {tried!r}")
        time.sleep(0.02)


SETTLE_TIMEOUT = 15  # seconds an executor gets to run the first attempt of what is pending


def settle(cluster, where: str = "true", args: tuple = (), timeout: float = SETTLE_TIMEOUT) -> None:
    """Waits until no matching event is still ``pending`` (handlers run in
    executors after the caller got its answer). Events whose first attempt
    failed are ``failed`` (a retry is scheduled) and count as settled. Raises
    with the events still pending when the time is up."""
    deadline = time.monotonic() + timeout
    query = f"SELECT count(*) FROM webhook.events WHERE status = 'pending' AND ({where})"
    while cluster.scalar(query, args):
        if time.monotonic() > deadline:
            pending = cluster.rows("SELECT id, workflow_id, attempts, next_attempt_at FROM webhook.events "
                                   f"WHERE status = 'pending' AND ({where}) ORDER BY id LIMIT 5", args)
            raise AssertionError(f"events still pending after {timeout} s ({where} {args!r}): {pending!r}")
        time.sleep(0.02)


def wait_for_rows(cluster, query: str, params: Any, count: int, timeout: float = 5.0) -> list[dict]:
    """Polls ``query`` until it returns at least ``count`` rows, and raises
    with what it last saw when the time is up; for what the listener records
    after it has answered (refusals)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.rows(query, params)
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rows)} of {count} rows after {timeout} s: {query} {params!r}: {rows!r}")
        time.sleep(0.05)


def wait_handled(cluster, table: str, event_id: int, timeout: float = 10) -> dict:
    """The side-table row of ``event_id`` once an executor ran its handler
    (handlers run after the caller got its answer)."""
    return wait_until(lambda: cluster.row(f"SELECT * FROM {table} WHERE event_id = %s", (event_id,)),
                      timeout=timeout, interval=0.02, what=f"handler of event {event_id} ran")


# --------------------------------------------- events, parameters, responses
def events(cluster, wf_id) -> list[dict]:
    """All event rows of a workflow, oldest first, once their handlers ran."""
    settle(cluster, "workflow_id = %s", (wf_id,))
    return cluster.rows("SELECT * FROM webhook.events WHERE workflow_id = %s ORDER BY id", (wf_id,))


def event(cluster, event_id: int) -> dict | None:
    """The event row, once its handler ran."""
    settle(cluster, "id = %s", (event_id,))
    return cluster.row("SELECT * FROM webhook.events WHERE id = %s", (event_id,))


def count_events(cluster, wf_id: str | None = None, dbname: str = "postgres") -> int:
    """The number of event rows of a workflow (of all workflows for None)."""
    if wf_id is None:
        return cluster.scalar("SELECT count(*) FROM webhook.events", dbname=dbname)
    return cluster.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s::uuid",
                          (wf_id,), dbname=dbname)


def parameters(cluster, wf_id) -> list[dict]:
    return cluster.rows("SELECT name, source, type, sample, required FROM webhook.parameters "
                        "WHERE workflow_id = %s ORDER BY source, position", (wf_id,))


def sample_json(cluster, wf_id, sample: dict, user: str = "postgres") -> None:
    cluster.sql("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)",
                (wf_id, json.dumps(sample)), user=user)


def set_required(cluster, wf_id, names: list[str], required: bool = True, user: str = "postgres") -> None:
    cluster.sql("SELECT count(*) FROM webhook_set_required(%s, %s, %s)", (wf_id, names, required),
                user=user)


def add_parameter(cluster, wf_id, name: str, source: str, type_: str = "text",
                  required: bool = True, sample: Any = "") -> None:
    """Declares one parameter with a direct insert into webhook.parameters."""
    cluster.sql("INSERT INTO webhook.parameters (workflow_id, name, source, type, sample, required, position) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, %s, "
                "  (SELECT coalesce(max(position), 0) + 1 FROM webhook.parameters WHERE workflow_id = %s))",
                (wf_id, name, source, type_, json.dumps(sample), required, wf_id))


def set_response(cluster, wf_id, method: str, user: str = "postgres", **kw) -> dict:
    """webhook_set_response(id, method, name => value, ...); jsonb/interval values
    are passed as text and cast by PostgreSQL."""
    casts = {"headers": "jsonb", "timeout": "interval", "status": "int", "failure_status": "int"}
    args, values = ["%s", "%s"], [wf_id, method]
    for key, value in kw.items():
        if key == "headers" and not isinstance(value, str):
            value = json.dumps(value)
        args.append(f"{key} => %s::{casts.get(key, 'text')}")
        values.append(value)
    return cluster.row(f"SELECT * FROM webhook_set_response({', '.join(args)})", values, user=user)


def rejection_counts(cluster, wf_id) -> dict:
    """webhook.rejection_counts of a workflow: {(status, reason): count}."""
    rows = cluster.rows("SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s",
                        (wf_id,))
    return {(r["status"], r["reason"]): r["count"] for r in rows}


def assert_rejection_counts(cluster, wf_id, expected: dict, timeout: float = 5.0) -> None:
    """The refusals counted for the workflow are exactly ``expected`` (counts
    are written with the batch that answered them, so polled briefly)."""
    wait_for_value(lambda: rejection_counts(cluster, wf_id), expected, timeout, interval=0.05,
                   what=f"rejection counts of {wf_id}")


# ------------------------------------------------ handlers, workflows, roles
def recording_handler(cluster, uniq, returns: str = "jsonb", extra: str = "",
                      result: str = "e.params", schema: str = "public",
                      user: str = "postgres") -> tuple[str, str]:
    """A handler function ``(e webhook.events) RETURNS <returns>`` that inserts
    (event id, current_user, params, search_path) into its own table, runs the
    PL/pgSQL in ``extra`` and returns ``result``. Returns (function, table)."""
    table = f"{schema}.{uniq('log')}"
    fn = f"{schema}.{uniq('h')}"
    cluster.sql(f"CREATE TABLE {table} (event_id bigint, who text, params jsonb, search_path text, "
                f"at timestamptz DEFAULT clock_timestamp())", user=user)
    cluster.sql(f"""
        CREATE FUNCTION {fn}(e webhook.events) RETURNS {returns} LANGUAGE plpgsql AS $h$
        BEGIN
            INSERT INTO {table} (event_id, who, params, search_path)
            VALUES (e.id, current_user, e.params, current_setting('search_path'));
            {extra}
            RETURN {result};
        END
        $h$""", user=user)
    return fn, table


def handler_rows(cluster, table: str) -> list[dict]:
    """What a recording handler wrote, once every pending event's handler ran."""
    settle(cluster)
    return cluster.rows(f"SELECT * FROM {table} ORDER BY at")


def create_side_handler(cluster, dbname: str = "postgres", sleep: float = 0) -> tuple[str, str]:
    """A handler that records each event id, and the pid of the process that
    ran it (an executor), in its own side table. Returns (handler, side table)."""
    table = "public." + make_uniq("side")
    name = "public." + make_uniq("h")
    cluster.sql(f"CREATE TABLE {table} (event_id bigint PRIMARY KEY, pid int DEFAULT pg_backend_pid(), "
                f"at timestamptz DEFAULT now())",
                dbname=dbname)
    sleep_sql = f"SELECT pg_sleep({sleep});" if sleep else ""
    cluster.sql(f"CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ "
                f"{sleep_sql} INSERT INTO {table}(event_id) VALUES (e.id); "
                f"SELECT jsonb_build_object('id', e.id) $h$", dbname=dbname)
    return name, table


def create_workflow(cluster, handler: str | None = None, uniq: Callable[[str], str] = make_uniq,
                    user: str = "postgres", dbname: str = "postgres", name: str | None = None,
                    **options) -> str:
    """Creates a workflow as ``user`` (without the new_workflow fixture's
    cleanup) and returns its id as str: named ``name`` or ``uniq("wf")``,
    with a fresh side-table handler (``create_side_handler``) unless
    ``handler`` is given, and ``options`` passed as named arguments of
    webhook_create_workflow (``methods``, ``enabled``)."""
    if handler is None:
        handler, _ = create_side_handler(cluster, dbname)
    args = ["%s", "%s::regproc"]
    params: list[Any] = [name or uniq("wf"), handler]
    for key, value in options.items():
        args.append(f"{key} => %s")
        params.append(value)
    row = cluster.row(f"SELECT * FROM webhook_create_workflow({', '.join(args)})", params,
                      user=user, dbname=dbname)
    return str(row["id"])


def make_login_role(cluster, uniq) -> str:
    """A LOGIN role granted webhook_admin, with its own schema ``<role>``."""
    role = uniq("owner")
    cluster.sql(f'CREATE ROLE "{role}" LOGIN')
    cluster.sql(f'GRANT webhook_admin TO "{role}"')
    cluster.sql(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    return role


def drop_login_role(cluster, role: str) -> None:
    try:
        cluster.sql("DELETE FROM webhook.workflows WHERE owner = %s::regrole", (role,))
        cluster.sql(f'DROP SCHEMA IF EXISTS "{role}" CASCADE')
        cluster.sql(f'DROP OWNED BY "{role}" CASCADE')
        cluster.sql(f'DROP ROLE IF EXISTS "{role}"')
    except psycopg.Error:
        pass


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def solo(e2e_root):
    """A private preloaded cluster with one listener process, for tests that could
    disturb the shared session cluster (or need all requests in one process)."""
    from conftest import Cluster
    c = Cluster(e2e_root, preload=True, conf={"webhook.workers": 1}, name=make_uniq("solo"))
    try:
        c.start()
        c.sql("CREATE EXTENSION webhook_ext")
        c.sql("CREATE FUNCTION public.params_handler(e webhook.events) RETURNS jsonb "
              "LANGUAGE sql AS $h$ SELECT e.params $h$")
        wait_ready(c)
        yield c
    finally:
        c.destroy()


@pytest.fixture
def ready(cluster):
    """The session cluster with its listener answering."""
    wait_ready(cluster)
    return cluster


@pytest.fixture
def login_role(cluster, uniq):
    """Factory for LOGIN roles granted webhook_admin (dropped after the test)."""
    made: list[str] = []

    def factory() -> str:
        role = make_login_role(cluster, uniq)
        made.append(role)
        return role

    yield factory
    for role in made:
        drop_login_role(cluster, role)
