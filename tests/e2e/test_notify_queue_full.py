"""A full NOTIFY queue is reported. With `webhook.notify = on`, events are not
announced while PostgreSQL's NOTIFY queue is more than half full (so no
commit fails on a full queue); the server log says so with a WARNING (at most
once a minute per process) and a HINT, and events are still stored and
handled.

PostgreSQL 15's queue holds 8 GB and has no setting to make it smaller, so
the test fills half of it: a session LISTENs and then stays in a
transaction (it reads nothing until it ends, so the queue cannot be
trimmed past it) while another sends ~8 kB notifications in batches.
"""

from __future__ import annotations

import re
import time

import hookkit as hk
from hookkit import wait_for_status

WARNING = (r"WARNING:  webhook_ext is not announcing events on webhook_events: "
           r"PostgreSQL's NOTIFY queue is (\d+\.\d) % full \(events are stored and handled as usual\)\n"
           r".*HINT:  A session that LISTENs and does not read its notifications, or stays in a transaction, "
           r"holds the queue: let it consume them or end it \(pg_stat_activity shows it\)\. "
           r"webhook.notify = off stops the announcements of events run by handlers, not those of queued "
           r"workflows \(webhook_set_queue\), whose readers wait for them\.")

# Notifications per filling transaction (each ~7.9 kB, kept in the sending
# backend's memory until its commit).
BATCH = 20_000


def fill_half_the_queue(c) -> float:
    usage = 0.0
    first = 1
    with c.connect() as filler:
        deadline = time.monotonic() + 600
        while usage < 0.5:
            assert time.monotonic() < deadline, f"the NOTIFY queue is only {usage:.3f} full after 600 s"
            filler.execute("SELECT count(pg_notify('filler', lpad(i::text, 7900, 'x'))) "
                           "FROM generate_series(%s::int, %s::int) i", (first, first + BATCH - 1))
            first += BATCH
            usage = filler.execute("SELECT pg_notification_queue_usage()").fetchone()[0]
    return usage


def test_a_full_notify_queue_is_reported_while_events_are_still_handled(make_cluster, uniq):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.notify": True,
                           # One executor process throughout (each process warns once).
                           "webhook.executor_idle_timeout": "10min"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler, uniq)

    with c.connect() as listening:
        listening.execute("LISTEN webhook_events")
        # Announced while the queue has room: no warning.
        ev = hk.post(c, wf, json_body={"n": 1}).json()["event_id"]
        wait_for_status(c, ev, "succeeded")
        assert [n.payload for n in listening.notifies(timeout=5, stop_after=2)] == [
            f'{{"event_id":{ev},"status":"pending"}}', f'{{"event_id":{ev},"status":"succeeded"}}']
        assert not re.search(WARNING, c.log()), c.log()[-3000:]

        # The listening session now holds the queue: it stays in a transaction.
        listening.execute("BEGIN")
        listening.execute("SELECT 1")
        started = time.monotonic()
        usage = fill_half_the_queue(c)
        filled_in = time.monotonic() - started
        assert usage >= 0.5

        since = c.log_position()
        r = hk.post(c, wf, json_body={"n": 2})
        assert r.status_code == 200, r.text
        ev2 = r.json()["event_id"]
        row = wait_for_status(c, ev2, "succeeded", timeout=30)
        assert row["attempts"] == 1
        assert c.sql(f"SELECT event_id FROM {table} ORDER BY event_id") == [(ev,), (ev2,)]
        # The listener (storing it) and the executor (recording its attempt)
        # each say so once.
        m = c.wait_for_log(WARNING, since=since, timeout=10)
        assert float(m.group(1)) >= 50.0, m.group(0)
        c.wait_for_log(r"(?s)" + WARNING + r".*" + WARNING, since=since, timeout=10)

        # Once a minute per process: more events add no more warnings.
        more = [hk.post(c, wf, json_body={"n": n}).json()["event_id"] for n in range(3, 6)]
        for e in more:
            wait_for_status(c, e, "succeeded", timeout=30)
        assert len(re.findall(WARNING, c.log()[since:])) == 2, c.log()[since:]
        listening.execute("ROLLBACK")
    print(f"filled half the NOTIFY queue in {filled_in:.1f} s")
