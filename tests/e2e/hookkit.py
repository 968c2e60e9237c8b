"""Shared helpers for the HTTP end-to-end tests (test_http_*.py, test_trigger_replay.py).

Everything here builds on the ``Cluster`` of conftest.py: real HTTP over
127.0.0.1 to the listener, and SQL through fresh sessions.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
import requests

HTTP_TIMEOUT = 10  # seconds; every request is bounded


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


def events(cluster, wf_id) -> list[dict]:
    """All event rows of a workflow, oldest first, once their handlers ran."""
    settle(cluster, "workflow_id = %s", (wf_id,))
    return cluster.rows("SELECT * FROM webhook.events WHERE workflow_id = %s ORDER BY id", (wf_id,))


def event(cluster, event_id: int) -> dict | None:
    """The event row, once its handler ran."""
    settle(cluster, "id = %s", (event_id,))
    return cluster.row("SELECT * FROM webhook.events WHERE id = %s", (event_id,))


def count_events(cluster, wf_id) -> int:
    return cluster.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf_id,))


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


def create_workflow(cluster, handler: str, uniq, user: str = "postgres", dbname: str = "postgres") -> str:
    """Creates a workflow as ``user`` (without the new_workflow fixture's cleanup)."""
    row = cluster.row("SELECT * FROM webhook_create_workflow(%s, %s::regproc)", (uniq("wf"), handler),
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


@pytest.fixture(scope="module")
def solo(e2e_root):
    """A private preloaded cluster with one listener process, for tests that could
    disturb the shared session cluster (or need all requests in one process)."""
    from conftest import Cluster, uniq as make_uniq
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


def rejection_counts(cluster, wf_id) -> dict:
    """webhook.rejection_counts of a workflow: {(status, reason): count}."""
    rows = cluster.rows("SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s",
                        (wf_id,))
    return {(r["status"], r["reason"]): r["count"] for r in rows}


def assert_rejection_counts(cluster, wf_id, expected: dict, timeout: float = 5.0) -> None:
    """The refusals counted for the workflow are exactly ``expected`` (counts
    are written with the batch that answered them, so polled briefly)."""
    deadline = time.monotonic() + timeout
    while rejection_counts(cluster, wf_id) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rejection_counts(cluster, wf_id) == expected


def response_json(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"response is not JSON: {r.status_code} {r.headers} {r.text!r}")
