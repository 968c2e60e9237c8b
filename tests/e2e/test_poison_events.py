"""Poison events: a handler that ends its own executor every time it runs
ends `dead` after its workflow's retry policy's attempts, each one recorded,
instead of being run for ever.

* A handler that terminates its own backend (`pg_terminate_backend`, which
  only a superuser-owned handler may do to an executor) is recorded by a
  listener as a failed attempt (57P01) each time.
* A handler that crashes its backend (here `COPY … TO PROGRAM` sends SIGKILL
  to the backend, and the postmaster restarts every backend) is recorded
  after each restart as a `crashed` attempt (57P02), from the file the
  executor wrote before the handler ran (src/execution/running_file.rs); a
  handler of another owner running at the time of the crash is not charged.

Each handler appends its event id to a file through `COPY … TO PROGRAM`
before it dies: the file outlives the rolled-back transactions and the
crashes, so it counts the runs exactly.
"""

from __future__ import annotations

import os
import re
import time

import pytest

import hookkit as hk
from hookkit import wait_for_status, wait_until

MAX_ATTEMPTS = 3


@pytest.fixture
def poison(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.max_executors": 4,
                           "restart_after_crash": True})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    return c


def runs_file(c, name: str) -> str:
    """A file in the cluster's directory that the server (the postgres OS
    user) appends to."""
    path = os.path.join(c.base_dir, name)
    open(path, "w").close()
    os.chmod(path, 0o666)
    return path


def runs(path: str) -> list[int]:
    with open(path) as f:
        return [int(line) for line in f.read().split()]


def poisoned_workflow(c, uniq, poison_sql: str) -> tuple[str, str, str]:
    """A superuser-owned workflow whose handler inserts a row, appends its
    event id to a file, then runs ``poison_sql``; retried MAX_ATTEMPTS times
    100 ms apart. Returns (workflow id, effects table, runs file)."""
    table = "public." + uniq("effects")
    path = runs_file(c, uniq("runs"))
    fn = "public." + uniq("poison")
    c.sql(f"CREATE TABLE {table} (event_id bigint)")
    c.sql(f"""CREATE FUNCTION {fn}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              BEGIN
                  INSERT INTO {table} VALUES (e.id);
                  EXECUTE format('COPY (SELECT %s) TO PROGRAM %L', e.id, 'cat >> {path}');
                  {poison_sql}
                  RETURN '{{"survived": true}}';
              END $h$""")
    wf = hk.create_workflow(c, fn, uniq)
    c.sql("SELECT webhook_set_retry(%s, %s, '100 ms', '100 ms')", (wf, MAX_ATTEMPTS))
    return wf, table, path


def wait_dead_within_policy(c, event_id: int, path: str, timeout: float) -> dict:
    """The event once dead; fails as soon as its handler ran more often than
    its policy allows (the old behaviour: it ran again and again)."""
    deadline = time.monotonic() + timeout
    while True:
        ran = runs(path)
        if len(ran) > MAX_ATTEMPTS:
            try:
                recorded = attempts(c, event_id)
            except Exception as e:  # noqa: BLE001  (the server is restarting again)
                recorded = e
            raise AssertionError(f"the handler ran {len(ran)} times, its policy allows {MAX_ATTEMPTS}; "
                                 f"attempts recorded: {recorded!r}")
        try:
            row = c.row("SELECT * FROM webhook.events WHERE id = %s", (event_id,))
        except Exception:  # noqa: BLE001  (the server is restarting)
            row = None
        if row is not None and row["status"] == "dead":
            return row
        assert time.monotonic() < deadline, (
            f"event {event_id} not dead within {timeout} s: {row!r}; runs: {ran}; log tail:\n{c.log()[-3000:]}")
        time.sleep(0.1)


def attempts(c, event_id: int) -> list[tuple]:
    return [tuple(r.values()) for r in c.rows(
        "SELECT attempt, outcome, sqlstate, message FROM webhook.attempts WHERE event_id = %s ORDER BY attempt",
        (event_id,))]


def still_serving(c, uniq) -> None:
    """A new event of a plain workflow is stored and handled once."""
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler, uniq)
    r = hk.post(c, wf, json_body={"after": True})
    assert r.status_code == 200, r.text
    ev = r.json()["event_id"]
    row = wait_for_status(c, ev, "succeeded", timeout=30)
    assert row["attempts"] == 1
    assert c.sql(f"SELECT event_id FROM {table}") == [(ev,)]


TERMINATED = "the executor running the handler was terminated"


def test_a_handler_that_terminates_its_executor_ends_dead_after_its_attempts(poison, uniq):
    c = poison
    # The executor ends 1 s after the SIGTERM (its grace for a running
    # handler), in the sleep: the handler never returns.
    wf, table, path = poisoned_workflow(
        c, uniq, "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(60);")
    ev = hk.post(c, wf, json_body={"poison": "terminate"}).json()["event_id"]

    row = wait_dead_within_policy(c, ev, path, timeout=60)
    assert row["attempts"] == MAX_ATTEMPTS
    assert row["next_attempt_at"] is None
    assert row["error"] == f"57P01: {TERMINATED}"
    assert attempts(c, ev) == [(n, "failed", "57P01", TERMINATED) for n in range(1, MAX_ATTEMPTS + 1)]
    assert runs(path) == [ev] * MAX_ATTEMPTS
    # Each run's writes were rolled back with its executor.
    assert c.sql(f"SELECT count(*) FROM {table}") == [(0,)]
    log = c.log()
    assert len(re.findall(r"terminating background worker .webhook_ext executor", log)) == MAX_ATTEMPTS, log[-3000:]
    # No crash restart: the listener never restarted.
    assert "terminated by signal" not in log, log[-3000:]
    still_serving(c, uniq)


def test_a_tenant_handler_may_not_terminate_its_executor(poison, uniq):
    c = poison
    role = hk.make_login_role(c, uniq)
    table = f'"{role}".effects'
    c.sql(f"CREATE TABLE {table} (event_id bigint, terminated boolean)", user=role)
    fn = f'"{role}".terminate'
    c.sql(f"""CREATE FUNCTION {fn}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              BEGIN
                  INSERT INTO {table} VALUES (e.id, pg_terminate_backend(pg_backend_pid()));
                  RETURN NULL;
              END $h$""", user=role)
    wf = hk.create_workflow(c, fn, uniq, user=role)
    c.sql("SELECT webhook_set_retry(%s, 1)", (wf,), user=role)
    ev = hk.post(c, wf, json_body={}).json()["event_id"]
    row = wait_for_status(c, ev, "dead", timeout=20)
    # The executor's backend is the superuser's: the owner may not signal it.
    [(attempt, outcome, sqlstate, message)] = attempts(c, ev)
    assert (attempt, outcome, sqlstate) == (1, "failed", "42501")
    assert message.startswith("must be a superuser to terminate superuser process"), message
    assert row["error"] == f"42501: {message}"
    assert c.sql(f"SELECT count(*) FROM {table}") == [(0,)]


CRASHED = ("the server restarted while this handler ran: its executor ended abruptly "
           "(killed by a signal, as in a crash)")


def test_a_handler_that_crashes_the_server_ends_dead_after_its_attempts(poison, uniq):
    c = poison
    # Another owner's handler, running when the first crash comes: a
    # bystander, never charged for it.
    role = hk.make_login_role(c, uniq)
    c.sql(f'CREATE TABLE "{role}".done (event_id bigint, at timestamptz DEFAULT clock_timestamp())', user=role)
    c.sql(f'''CREATE FUNCTION "{role}".slow(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$
              SELECT pg_sleep(3); INSERT INTO "{role}".done (event_id) VALUES (e.id); SELECT NULL::jsonb $h$''',
          user=role)
    slow = hk.create_workflow(c, f'"{role}".slow', uniq, user=role)
    c.sql("SELECT webhook_set_retry(%s, 1)", (slow,), user=role)

    # SIGKILL of the backend from the program COPY runs (its shell's parent
    # is the backend): the postmaster restarts every backend.
    wf, table, path = poisoned_workflow(
        c, uniq, "EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'kill -KILL $PPID');")

    bystander = hk.post(c, slow, json_body={}).json()["event_id"]
    wait_until(lambda: c.scalar("SELECT count(*) FROM webhook_processes() WHERE event_id = %s", (bystander,)),
               timeout=15, interval=0.05, what="the bystander's handler running")
    ev = hk.post(c, wf, json_body={"poison": "crash"}).json()["event_id"]

    row = wait_dead_within_policy(c, ev, path, timeout=120)
    assert row["attempts"] == MAX_ATTEMPTS
    assert row["error"] == f"57P02: {CRASHED}"
    assert attempts(c, ev) == [(n, "crashed", "57P02", CRASHED) for n in range(1, MAX_ATTEMPTS + 1)]
    assert runs(path) == [ev] * MAX_ATTEMPTS
    assert c.sql(f"SELECT count(*) FROM {table}") == [(0,)]
    log = c.log()
    assert len(re.findall(r"webhook_ext executor.*was terminated by signal 9", log)) == MAX_ATTEMPTS, log[-3000:]
    assert log.count("all server processes terminated; reinitializing") == MAX_ATTEMPTS, log[-3000:]
    assert log.count("found 1 handler(s) running when the server restarted") == MAX_ATTEMPTS, log[-3000:]

    # The bystander ran again after the restart and succeeded: one attempt,
    # its own, counted; its one effect.
    row = wait_for_status(c, bystander, "succeeded", timeout=30)
    assert row["attempts"] == 1
    assert attempts(c, bystander) == [(1, "succeeded", None, None)]
    assert c.sql(f'SELECT event_id FROM "{role}".done') == [(bystander,)]
    # Every crashed record was taken in: nothing is left to load.
    directory = os.path.join(c.datadir, "pg_webhook_ext")
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            assert f.read().split() in ([], ["idle"]), name
    still_serving(c, uniq)
