"""Crash safety under load. While 16 connections keep
sending, a listener, an executor and then the postmaster are killed with
SIGKILL (the postmaster is started again). Afterwards every 2xx has its event
row, every event reaches `succeeded` (or `dead`), and no handler effect is
applied twice: the handler's insert and the event's new status commit in one
transaction, and an event whose transaction was cut short runs again.
"""

import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import uniq
from hookkit import wait_for_value, wait_until

CLIENTS = 16


@pytest.fixture
def crashy(make_cluster):
    c = make_cluster(conf={"webhook.workers": 2, "webhook.max_executors": 4})
    c.sql("CREATE EXTENSION webhook_ext")
    table = "public." + uniq("effects")
    # No unique key: a handler effect applied twice would show as two rows.
    c.sql(f"CREATE TABLE {table} (event_id bigint NOT NULL, pid int DEFAULT pg_backend_pid())")
    c.sql(f"""CREATE FUNCTION public.apply_effect(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$
              INSERT INTO {table} (event_id) VALUES (e.id);
              SELECT pg_sleep(0.002);
              SELECT jsonb_build_object('id', e.id) $h$""")
    wf = str(c.row("SELECT id FROM webhook_create_workflow('crashy', 'public.apply_effect'::regproc)")["id"])
    c.sql("SELECT webhook_set_retry(%s::uuid, 20, '100 ms', '1 s')", (wf,))
    c.wait_for_listeners(2)
    return c, wf, table


class Load:
    """CLIENTS threads POSTing in a loop; keeps the event id of every 2xx."""

    def __init__(self, c, wf):
        self.url = c.hook_url(wf)
        self.acked: list[int] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(CLIENTS)]

    def run(self, i):
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                r = session.post(self.url, json={"client": i, "n": n}, timeout=5)
                if r.status_code == 200:
                    with self.lock:
                        self.acked.append(r.json()["event_id"])
                    continue
            except requests.RequestException:
                session = requests.Session()
            with self.lock:
                self.errors += 1
            time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def wait_for_more(self, at_least: int, timeout: float = 20):
        start = self.acked_count()
        deadline = time.monotonic() + timeout
        while self.acked_count() < start + at_least:
            assert time.monotonic() < deadline, f"load stalled at {self.acked_count()} acks ({self.errors} errors)"
            time.sleep(0.05)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def postmaster_pid(c) -> int:
    with open(os.path.join(c.datadir, "postmaster.pid")) as f:
        return int(f.readline())


def test_kill_9_of_listener_executor_and_postmaster_loses_and_duplicates_nothing(crashy):
    c, wf, table = crashy
    with Load(c, wf) as load:
        load.wait_for_more(800)

        listener = c.listener_pids()[0]
        os.kill(listener, signal.SIGKILL)
        load.wait_for_more(800)

        executor = wait_until(lambda: c.scalar(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext executor' LIMIT 1"),
            timeout=10, interval=0.05, what="an executor running under load")
        os.kill(executor, signal.SIGKILL)
        load.wait_for_more(800)

        postmaster = postmaster_pid(c)
        children = children_of(postmaster)
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: [p for p in children if alive(p)], until=lambda left: not left, timeout=20,
                   interval=0.1, what="the postmaster's children gone after it")
        c.running = False
        c.start()
        wait_for_value(lambda: len(c.listener_pids()), 2, timeout=15, what="listeners after the restart")
        load.wait_for_more(800)
    acked = set(load.acked)
    assert len(acked) == len(load.acked), "two 2xx carry the same event id"

    # Every event's handler runs to the end.
    wait_until(lambda: c.rows("SELECT status, count(*) FROM webhook.events GROUP BY status ORDER BY status"),
               until=lambda counts: all(r["status"] in ("succeeded", "dead") for r in counts), timeout=60,
               interval=0.2, what="every event's handler run to the end")
    stored = {r["id"]: r["status"] for r in c.rows("SELECT id, status FROM webhook.events WHERE workflow_id = %s",
                                                   (wf,))}
    missing = acked - stored.keys()
    assert not missing, f"{len(missing)} acknowledged events are not stored: {sorted(missing)[:10]}"
    assert set(stored.values()) == {"succeeded"}, {s for s in stored.values()}
    effects = c.rows(f"SELECT event_id, count(*) AS n FROM {table} GROUP BY event_id")
    twice = [r for r in effects if r["n"] != 1]
    assert not twice, f"handler effects applied more than once: {twice[:10]}"
    assert {r["event_id"] for r in effects} == set(stored), "an event succeeded without its effect"
    # The crashes did happen (positive control): three kills and a restart.
    log = c.log()
    assert log.count("terminated by signal 9") >= 2, log[-3000:]
    assert "database system was interrupted" in log or "was not properly shut down" in log, log[-3000:]
