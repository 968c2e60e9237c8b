"""Executors and a DBA's table locks: an executor's batch takes every table
lock it needs before it claims events, in the order the extension creates its
tables (the order DROP EXTENSION takes them), and waits at most
webhook.lock_timeout for them; so a DBA's transaction that locks the tables in
another order (an update script, a maintenance job) waits for the batch and
is never the one a deadlock fails."""

import time

import psycopg
import pytest

import hookkit as hk

# The server's deadlock_timeout (the executor's) is longer than the DBA
# session's own: when both wait on each other, the DBA's session is the one
# that finds the deadlock and fails, so a batch that could deadlock with it
# shows as the DBA's error.
CONF = {"webhook.workers": 1, "deadlock_timeout": "5s"}


def handler_running(c) -> bool:
    return c.scalar("SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'webhook_ext executor for %%' AND wait_event = 'PgSleep'") == 1


def test_a_dba_locking_attempts_then_events_waits_for_the_running_batch_instead_of_deadlocking(make_cluster):
    c = make_cluster(conf=CONF)
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = hk.create_side_handler(c, sleep=2)
    wf = hk.create_workflow(c, handler)
    c.wait_for_listeners(1)
    hk.wait_ready(c)

    r = hk.post(c, wf, json_body={"n": 1})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    hk.wait_until(lambda: handler_running(c), timeout=10, interval=0.02, what="the handler is running")

    # The DBA locks attempts, then events: the reverse of the executor's
    # order. Were the attempts lock free while the handler runs, the DBA
    # would get it, wait for events (the executor's claim holds them), and
    # the executor would then wait for attempts to record the run: a
    # deadlock the DBA's session finds first.
    dba = c.connect(autocommit=False)
    try:
        dba.execute("SET deadlock_timeout = '3s'")
        t0 = time.monotonic()
        dba.execute("LOCK TABLE webhook.attempts IN ACCESS EXCLUSIVE MODE")
        waited = time.monotonic() - t0
        dba.execute("LOCK TABLE webhook.events IN ACCESS EXCLUSIVE MODE")
        # The batch committed before the DBA got its first lock.
        assert c.scalar("SELECT count(*) FROM " + table) == 1
        dba.commit()
    except psycopg.errors.DeadlockDetected as e:  # what the reverse order would do
        pytest.fail(f"the DBA's transaction was failed by a deadlock with an executor: {e}")
    finally:
        dba.close()
    assert waited > 0.5, f"the DBA's first lock was granted while the batch ran ({waited:.2f}s)"

    row = hk.wait_for_status(c, event_id, "succeeded")
    assert row["attempts"] == 1
    assert c.rows("SELECT attempt, outcome FROM webhook.attempts WHERE event_id = %s", (event_id,)) == \
        [{"attempt": 1, "outcome": "succeeded"}]
    assert [x["event_id"] for x in c.rows(f"SELECT event_id FROM {table}")] == [event_id]
    assert "deadlock detected" not in c.log()

    # The executor goes on serving once the DBA is done.
    r = hk.post(c, wf, json_body={"n": 2})
    assert r.status_code == 200, r.text
    hk.wait_handled(c, table, r.json()["event_id"])


def test_an_executor_gives_way_to_a_dba_holding_the_workflows_and_claims_once_they_are_free(make_cluster):
    c = make_cluster(conf={**CONF, "webhook.executor_idle_timeout": "60s"})
    c.sql("CREATE EXTENSION webhook_ext")
    handler, table = hk.create_side_handler(c)
    wf = hk.create_workflow(c, handler)
    c.wait_for_listeners(1)
    hk.wait_ready(c)
    # A failed event due again in a few seconds, then a delivery that starts
    # an executor, which then waits, idle, for that retry.
    retry_id = c.scalar("INSERT INTO webhook.events (workflow_id, method, params, status, attempts, "
                        "next_attempt_at) VALUES (%s::uuid, 'POST', '{}', 'failed', 1, "
                        "now() + interval '3 seconds') RETURNING id", (wf,))
    due = time.monotonic() + 3
    r = hk.post(c, wf, json_body={"n": 1})
    assert r.status_code == 200, r.text
    hk.wait_handled(c, table, r.json()["event_id"])
    # A function changes: the executor's next batch first looks at what
    # changed (webhook.workflow_changes) before it claims.
    c.sql("CREATE FUNCTION public.changed_meanwhile() RETURNS int LANGUAGE sql AS 'SELECT 1'")

    dba = c.connect(autocommit=False)
    try:
        dba.execute("SET deadlock_timeout = '1s'")
        dba.execute("LOCK TABLE webhook.workflows IN ACCESS EXCLUSIVE MODE")
        # The retry comes due while the DBA holds the workflows: the executor
        # tries, gives way after webhook.lock_timeout, tries again, and holds
        # no lock of the extension's tables in between, so the DBA can take
        # the others too, in any order.
        time.sleep(max(0.0, due - time.monotonic()) + 1.0)
        for name in ("workflow_changes", "attempts", "events"):
            dba.execute(f"LOCK TABLE webhook.{name} IN ACCESS EXCLUSIVE MODE")
        waiting = c.rows("SELECT l.relation::regclass::text AS rel FROM pg_locks l "
                         "JOIN pg_stat_activity a ON a.pid = l.pid "
                         "WHERE a.application_name LIKE 'webhook_ext executor for %%' AND NOT l.granted")
        assert all(w["rel"] == "webhook.workflows" for w in waiting), waiting
        assert c.scalar(f"SELECT count(*) FROM {table} WHERE event_id = %s", (retry_id,)) == 0
        dba.commit()
    except psycopg.errors.DeadlockDetected as e:
        pytest.fail(f"the DBA's transaction was failed by a deadlock with an executor: {e}")
    finally:
        dba.close()

    hk.wait_handled(c, table, retry_id)
    assert hk.wait_for_status(c, retry_id, "succeeded")["attempts"] == 2
    assert "deadlock detected" not in c.log()
