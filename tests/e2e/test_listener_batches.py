"""Batches and the request queue (docs/http.md, HTTP contract: "the batch
could not be committed" and "queue full" → 503 + Retry-After).

* A batch whose commit fails: every request in it gets 503 and nothing of it
  is stored; the requests queued behind it are stored once, by the next batch.
  (A failure of one request inside a batch is that request's own refusal:
  every statement that can fail for one request runs in its subtransaction,
  see src/ingest/pipeline.rs.)
* The listener's and the executors' writes reach the table statistics
  (autovacuum reads them).
* The queue between the network thread and the main thread holds 4096
  requests; beyond it callers get 503 {"msg":"Listener busy, retry later"}
  with Retry-After at once, and the queued requests are all served once the
  main thread moves again.

One listener process, so that every request goes through the same queue.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time

import psycopg

import hookkit as hk
from hookkit import sent_behind_a_stopped_listener
from tenantkit import private_cluster_fixture

private = private_cluster_fixture()

RETRY = {"msg": "Event could not be stored, retry later"}


def test_the_listener_and_executor_writes_reach_the_table_statistics(private):
    # Autovacuum decides from pg_stat_user_tables; a background worker that
    # never reports leaves webhook.events unvacuumed however many events it
    # wrote and finished (found with 300,000 events and n_dead_tup 0). First
    # in this module: the cluster is fresh, so the counts are these requests'.
    c = private
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler)
    url = c.hook_url(wf)
    for n in range(20):
        hk.assert_success(hk.post_url(url, {"n": n}), wf)
    hk.wait_for_value(lambda: c.scalar("SELECT count(*) FROM webhook.events WHERE status = 'succeeded'"), 20,
                      timeout=10)

    def counts():
        return c.rows(
            "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
            "WHERE relid IN ('webhook.events'::regclass, %s::regclass) ORDER BY relname = 'events' DESC",
            (table,))

    # Inserted by the listener, each updated once by the executor that ran
    # it (its status), and the handler's own rows.
    expected = [{"relname": "events", "n_tup_ins": 20, "n_tup_upd": 20},
                {"relname": table.split(".")[-1], "n_tup_ins": 20, "n_tup_upd": 0}]
    hk.wait_for_value(counts, expected, timeout=10, what="table statistics")


def test_a_batch_whose_commit_fails_answers_503_and_the_next_batch_stores_once(private):
    c = private
    wf = hk.create_workflow(c)
    url = c.hook_url(wf)
    # A superuser's deferred constraint trigger fails the commit of any
    # transaction that stored an event named "boom".
    c.sql("CREATE OR REPLACE FUNCTION public.fail_boom() RETURNS trigger LANGUAGE plpgsql AS "
          "$f$ BEGIN IF NEW.params->>'name' = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NULL; END $f$")
    c.sql("CREATE CONSTRAINT TRIGGER fail_boom AFTER INSERT ON webhook.events DEFERRABLE INITIALLY DEFERRED "
          "FOR EACH ROW EXECUTE FUNCTION public.fail_boom()")
    c.alter_system("webhook.batch_size", "2")
    [pid] = c.listener_pids()
    try:
        for attempt in range(5):
            replies = {}

            def send(name):
                replies[name] = hk.post_url(url, {"name": name, "attempt": attempt})

            # The listener stopped, the requests connect in this order and
            # are taken two by two when it resumes: [before, boom], [after-1, after-2].
            sent_behind_a_stopped_listener(
                c, [lambda name=name: send(name) for name in ("before", "boom", "after-1", "after-2")],
                gap=0.15)
            stored = {r["name"]: r["n"] for r in c.rows(
                "SELECT params->>'name' AS name, count(*) AS n FROM webhook.events "
                "WHERE workflow_id = %s::uuid AND (params->>'attempt')::int = %s GROUP BY 1", (wf, attempt))}
            # Whatever the order: a 200 is stored exactly once, a 503 not at all.
            for name, r in replies.items():
                if r.status == 200:
                    assert stored.get(name) == 1, (name, stored)
                else:
                    assert (r.status, r.json(), r.headers.get("retry-after")) == (503, RETRY, "1"), (name, r)
                    assert name not in stored, (name, stored)
            assert replies["boom"].status == 503
            if [replies[n].status for n in ("before", "after-1", "after-2")] == [503, 200, 200]:
                break  # the shape this test is about: the neighbour failed, the next batch passed
        else:
            raise AssertionError(f"never got the batches [before, boom], [after-1, after-2]: {replies}")
        assert c.listener_pids() == [pid]
    finally:
        c.alter_system("webhook.batch_size", None, shown="64")
        c.sql("DROP TRIGGER fail_boom ON webhook.events")


async def _flood(port: int, path: str, count: int) -> list:
    """``count`` connections, each sending one request; returns the raw
    answers (or None when none came within 60 s)."""
    request = hk.http_request_bytes("POST", path, port, body=b"{}", headers={"Content-Type": "application/json"})

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")][0])
            body = await asyncio.wait_for(reader.readexactly(length), 60)
            return head + body
        except asyncio.TimeoutError:
            return None
        finally:
            writer.close()

    results = []
    # Connect in waves so the listen backlog never overflows.
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(one()))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    results = await asyncio.gather(*tasks)
    return results


def test_a_full_queue_answers_503_at_once_and_serves_the_queued(private):
    c = private
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 10_000), hard))
    wf = hk.create_workflow(c)
    path = f"/hooks/{wf}"
    c.alter_system("webhook.max_connections", "8000")
    c.alter_system("webhook.max_connections_per_client", "8000")
    c.alter_system("webhook.lock_timeout", "60s", shown="1min")
    try:
        # The main thread waits for a row lock while storing the first request;
        # everything after it queues up.
        with psycopg.connect(**c.conninfo(), autocommit=False) as locker:
            locker.execute("SELECT 1 FROM webhook.workflows WHERE id = %s FOR UPDATE", (wf,))
            first = {}
            t = threading.Thread(target=lambda: first.setdefault("r", hk.post_url(c.hook_url(wf), {}, timeout=90)))
            t.start()
            hk.wait_until(lambda: c.scalar("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                           "WHERE NOT l.granted AND a.backend_type = 'webhook_ext listener'") or None,
                          timeout=10, what="the listener waiting for the lock")
            loop = asyncio.new_event_loop()
            flood = loop.run_in_executor(None, lambda: asyncio.run(_flood(c.http_port, path, 4300)))
            # The queue is full after 4096: the rest are refused at once, while
            # the lock is still held.
            time.sleep(5)
            locker.commit()
            answers = loop.run_until_complete(flood)
            loop.close()
            t.join(90)
        statuses = {}
        for raw in answers:
            assert raw is not None, "a request got no answer"
            status = int(raw.split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
            if status == 503:
                assert raw.endswith(b'{"msg":"Listener busy, retry later"}'), raw
                assert b"\r\nretry-after: 1\r\n" in raw.lower(), raw
        assert first["r"].status == 200
        # 4096 queued (the first request was already taken off the queue).
        assert statuses == {200: 4096, 503: 4300 - 4096}, statuses
        assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s::uuid", (wf,)) == 4097
    finally:
        c.alter_system("webhook.lock_timeout", None, shown="100ms")
        c.alter_system("webhook.max_connections", None, shown="1000")
        c.alter_system("webhook.max_connections_per_client", None, shown="100")
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
