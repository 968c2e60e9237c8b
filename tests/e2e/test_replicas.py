"""A streaming replica and its promotion.

A hot standby runs no listener and no executor (they are background workers
that start when recovery has finished): its webhook port refuses
connections, /healthz included, while the replicated rows are readable.
Promoted (``pg_ctl promote``, no restart), it serves within seconds: every
event the primary acknowledged is there, the events still pending run once,
and new events get ids after the replicated ones."""

from __future__ import annotations

import errno
import http.client
import os
import socket
import threading
import time

import psycopg

import hookkit as hk

OK = {"msg": "ok"}
LOCK_KEY = 7_341_926  # the advisory lock the held handler waits for
SERVE_BOUND = 10  # seconds from `pg_ctl promote` to an accepted event, at most


def refused(port: int) -> bool:
    """Whether a TCP connection to the port is refused (nothing listens)."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def webhook_ext_processes(c) -> list[str]:
    """The process titles of the cluster's postmaster's children that are
    webhook_ext's (listeners, executors), as ps shows them."""
    with open(os.path.join(c.datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    titles = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == postmaster and "webhook_ext" in title:
            titles.append(title)
    return sorted(titles)


def webhook_ext_backends(c) -> int:
    return c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'webhook_ext%'")


def side_handler(c, uniq, body: str) -> tuple[str, str]:
    """A handler running the PL/pgSQL ``body`` and then recording its event in
    a side table (a second run of one event would break its primary key)."""
    table = "public." + uniq("side")
    name = "public." + uniq("h")
    c.sql(f"CREATE TABLE {table} (event_id bigint PRIMARY KEY, port text)")
    c.sql(f"""CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
              BEGIN
                  {body}
                  INSERT INTO {table} VALUES (e.id, current_setting('port'));
                  RETURN jsonb_build_object('id', e.id);
              END $h$""")
    return name, table


class Senders:
    """Threads posting to a workflow until stopped, keeping the event id of
    every 2xx and counting what else happened."""

    def __init__(self, c, wf: str, threads: int = 2):
        self.url = c.hook_url(wf)
        self.wf = wf
        self.acknowledged: list[int] = []
        self.other: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(threads)]

    def run(self, n: int) -> None:
        sent = 0
        while not self.stop.is_set():
            sent += 1
            try:
                reply = hk.post_url(self.url, {"sender": n, "n": sent}, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.other.append(type(e).__name__)
                time.sleep(0.01)
                continue
            with self.lock:
                if reply.status == 200:
                    self.acknowledged.append(hk.assert_success(reply, self.wf)["event_id"])
                else:
                    self.other.append(f"{reply.status} {reply.text}")

    def start(self) -> "Senders":
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads)


def test_a_standby_serves_nothing_then_promoted_serves_every_acknowledged_event(make_cluster, uniq):
    primary = make_cluster(conf={"webhook.workers": 2})
    primary.sql("CREATE EXTENSION webhook_ext")
    ok_handler, ok_table = side_handler(primary, uniq, "")
    # Waits for an advisory lock a session on the primary holds: its events
    # stay pending there, claimed by an executor that never records them.
    held_handler, held_table = side_handler(primary, uniq, f"PERFORM pg_advisory_xact_lock({LOCK_KEY});")
    # Fails where the server's port is the primary's: a retry is due, again
    # and again, until it runs on the promoted standby.
    retried_handler, retried_table = side_handler(
        primary, uniq,
        f"IF current_setting('port') = '{primary.pg_port}' THEN RAISE EXCEPTION 'not on the primary'; END IF;")
    wf_ok = hk.create_workflow(primary, ok_handler, uniq)
    wf_held = hk.create_workflow(primary, held_handler, uniq)
    wf_retried = hk.create_workflow(primary, retried_handler, uniq)
    primary.sql("SELECT webhook_set_retry(%s, 100, delay => '1 second', max_delay => '2 seconds')",
                (wf_retried,))
    hk.wait_ready(primary)

    # A streaming standby, then synchronous: a commit returns once the
    # standby has applied it, so every 2xx's event is readable there.
    name = uniq("standby")
    standby = make_cluster(standby_of=primary, name=name, conf={"webhook.workers": 2})
    hk.wait_until(lambda: primary.row("SELECT state FROM pg_stat_replication WHERE application_name = %s",
                                      (name,)), timeout=30, what="the standby streams",
                  until=lambda row: row == {"state": "streaming"})
    primary.set_conf(synchronous_standby_names=name, synchronous_commit="remote_apply")
    primary.reload()
    hk.wait_for_value(lambda: primary.scalar("SELECT sync_state FROM pg_stat_replication "
                                             "WHERE application_name = %s", (name,)),
                      "sync", timeout=10, what="the standby's sync_state")

    acknowledged = []
    for n in range(5):
        acknowledged.append(hk.assert_success(hk.post_url(primary.hook_url(wf_ok), {"n": n}), wf_ok)["event_id"])
    retried = [hk.assert_success(hk.post_url(primary.hook_url(wf_retried), {"n": n}), wf_retried)["event_id"]
               for n in range(3)]
    for event_id in retried:
        hk.wait_for_status(primary, event_id, "failed", timeout=15)
    holder = primary.connect()
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        held = [hk.assert_success(hk.post_url(primary.hook_url(wf_held), {"n": n}), wf_held)["event_id"]
                for n in range(3)]
        acknowledged += retried + held
        # The held handler runs (an executor waits in it) and records nothing.
        hk.wait_until(lambda: primary.scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND NOT granted",
            (LOCK_KEY,)), timeout=15, what="a held handler waits for the lock")
        for event_id in held:
            assert primary.row("SELECT status, attempts FROM webhook.events WHERE id = %s",
                               (event_id,)) == {"status": "pending", "attempts": 0}

        # The standby: nothing listens, no listener or executor runs, and the
        # events are there (the primary, for comparison, runs both).
        assert not refused(primary.http_port)
        assert refused(standby.http_port)
        assert webhook_ext_backends(primary) > 0
        assert any("webhook_ext listener" in t for t in webhook_ext_processes(primary))
        assert any("webhook_ext retention" in t for t in webhook_ext_processes(primary))
        assert webhook_ext_backends(standby) == 0
        assert webhook_ext_processes(standby) == []
        assert standby.scalar("SELECT pg_is_in_recovery()") is True
        on_standby = standby.rows("SELECT id, workflow_id::text AS wf FROM webhook.events ORDER BY id")
        assert on_standby == primary.rows("SELECT id, workflow_id::text AS wf FROM webhook.events ORDER BY id")
        assert {r["id"] for r in on_standby} == set(acknowledged)
        for event_id in held:
            assert standby.row("SELECT status, attempts FROM webhook.events WHERE id = %s",
                               (event_id,)) == {"status": "pending", "attempts": 0}

        # Traffic, and the primary fails in the middle of it.
        senders = Senders(primary, wf_ok).start()
        hk.wait_until(lambda: len(senders.acknowledged) >= 20, timeout=30, what="20 acknowledged under load")
        primary.stop(mode="immediate")
        senders.join()
    finally:
        try:
            holder.close()
        except psycopg.Error:
            pass
    acknowledged += senders.acknowledged
    assert standby.scalar("SELECT pg_is_in_recovery()") is True
    assert refused(standby.http_port)
    replicated_max = standby.scalar("SELECT max(id) FROM webhook.events")

    # Promotion, without a restart: served within seconds.
    started = time.monotonic()
    standby.pg_ctl("promote")
    health = hk.wait_until(lambda: hk.get_url(f"{standby.base_url}/healthz"), timeout=SERVE_BOUND,
                           interval=0.05, what="/healthz 200 after promotion",
                           until=lambda r: (r.status, r.json()) == (200, OK))
    healthy_after = time.monotonic() - started
    first = hk.wait_until(lambda: hk.post_url(standby.hook_url(wf_ok), {"after": "promotion"}),
                          timeout=SERVE_BOUND, interval=0.05, what="an event accepted after promotion",
                          until=lambda r: r.status == 200)
    served_after = time.monotonic() - started
    print(f"promotion to /healthz 200: {healthy_after:.2f} s, to an accepted event: {served_after:.2f} s")
    assert health.headers["cache-control"] == "no-store"
    assert served_after < SERVE_BOUND, served_after
    assert standby.scalar("SELECT pg_is_in_recovery()") is False

    # Every acknowledged event is there; new ones come after them.
    new_ids = [hk.assert_success(first, wf_ok)["event_id"]]
    new_ids += [hk.assert_success(hk.post_url(standby.hook_url(wf_ok), {"after": n}), wf_ok)["event_id"]
                for n in range(3)]
    assert all(event_id > replicated_max for event_id in new_ids), (new_ids, replicated_max)
    assert new_ids == sorted(new_ids)
    present = {r["id"] for r in standby.rows("SELECT id FROM webhook.events WHERE id = ANY(%s)",
                                             (acknowledged,))}
    assert present == set(acknowledged), sorted(set(acknowledged) - present)

    # The pending events run once, on the promoted standby.
    for event_id in held:
        hk.wait_for_status(standby, event_id, "succeeded", timeout=20)
    for event_id in retried:
        hk.wait_for_status(standby, event_id, "succeeded", timeout=20)
    hk.settle(standby)
    assert standby.rows(f"SELECT event_id, port FROM {held_table} ORDER BY event_id") == \
        [{"event_id": event_id, "port": str(standby.pg_port)} for event_id in held]
    assert standby.rows(f"SELECT event_id, port FROM {retried_table} ORDER BY event_id") == \
        [{"event_id": event_id, "port": str(standby.pg_port)} for event_id in retried]
    assert standby.rows("SELECT event_id, attempts FROM (SELECT event_id, count(*) AS attempts "
                        "  FROM webhook.attempts WHERE event_id = ANY(%s) GROUP BY event_id) a "
                        "ORDER BY event_id", (held,)) == \
        [{"event_id": event_id, "attempts": 1} for event_id in held]
    retried_rows = standby.rows("SELECT id, attempts FROM webhook.events WHERE id = ANY(%s) ORDER BY id",
                                (retried,))
    assert all(r["attempts"] >= 2 for r in retried_rows), retried_rows
    assert standby.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = ANY(%s) "
                          "AND outcome = 'succeeded'", (retried,)) == len(retried)

    # Every event of the load's workflow succeeded, its handler's effect once.
    ok_events = standby.rows("SELECT id, status FROM webhook.events WHERE workflow_id = %s ORDER BY id",
                             (wf_ok,))
    assert {r["status"] for r in ok_events} == {"succeeded"}, ok_events
    assert [r["event_id"] for r in standby.rows(f"SELECT event_id FROM {ok_table} ORDER BY event_id")] == \
        [r["id"] for r in ok_events]
    assert webhook_ext_backends(standby) > 0
    # Retention too runs on the promoted node, without a restart.
    assert standby.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook_ext retention'") == 1
