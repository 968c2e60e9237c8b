"""A superuser's limits hold whatever a tenant configures: every retry
delay is at least webhook.min_retry_delay, an event gets at most
webhook.max_retry_attempts attempts, and no handler runs past
webhook.max_handler_timeout. Here: 1 s, 3 attempts and 1 s."""

import requests

from hookkit import set_response, wait_for_status
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.min_retry_delay": "1s", "webhook.max_retry_attempts": 3,
                                     "webhook.max_handler_timeout": "1s"})
tenants = tenants_fixture("alice")

FAILING = """CREATE FUNCTION {s}.failing(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS
$h$ BEGIN RAISE EXCEPTION 'always'; END $h$"""
SLEEPY = """CREATE FUNCTION {s}.sleepy(e webhook.events) RETURNS jsonb LANGUAGE sql AS
$h$ SELECT pg_sleep(5); SELECT '{{"finished": true}}'::jsonb $h$"""


def attempts(cluster, wf):
    return cluster.rows("SELECT a.attempt, a.outcome, a.sqlstate, a.message, "
                        "extract(epoch FROM a.started_at) AS started, extract(epoch FROM a.ended_at) AS ended "
                        "FROM webhook.attempts a JOIN webhook.events e ON e.id = a.event_id "
                        "WHERE e.workflow_id = %s ORDER BY a.attempt", (wf,))


def test_retries_keep_the_servers_floor_and_ceiling(private, tenants):
    alice = tenants["alice"]
    alice.sql(FAILING.format(s=alice.name))
    wf = alice.create_workflow(handler=f"{alice.name}.failing")
    # Positive control: the workflow may ask for a thousand attempts a
    # microsecond apart (that is its own setting)...
    row = alice.row("SELECT * FROM webhook_set_retry(%s, 1000, '1 microsecond', '1 microsecond')", (wf,))
    assert (row["max_attempts"], str(row["retry_delay"])) == (1000, "0:00:00.000001")
    r = requests.post(private.hook_url(wf), json={}, timeout=10)
    assert r.status_code == 200, r.text
    wait_for_status(private, r.json()["event_id"], "dead", timeout=20)
    # ...but gets the server's three, each at least a second after the last.
    rows = attempts(private, wf)
    assert [(a["attempt"], a["outcome"]) for a in rows] == [(1, "failed"), (2, "failed"), (3, "failed")], rows
    gaps = [float(b["started"] - a["ended"]) for a, b in zip(rows, rows[1:])]
    assert all(gap >= 0.99 for gap in gaps), gaps


def test_no_handler_runs_past_the_servers_deadline(private, tenants):
    alice = tenants["alice"]
    alice.sql(SLEEPY.format(s=alice.name))
    wf = alice.create_workflow(handler=f"{alice.name}.sleepy", name="sleepy")
    alice.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    # Positive control: the workflow may ask for 20 days (its own setting).
    row = set_response(private, wf, "workflow", user=alice.name, timeout="20 days")
    assert str(row["response_timeout"]) == "20 days, 0:00:00"
    # The caller waits for the handler's deadline, which is the server's 1 s.
    r = requests.post(private.hook_url(wf), json={}, timeout=20)
    event_id = private.scalar("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": event_id}), r.text
    wait_for_status(private, event_id, "dead", timeout=10)
    rows = attempts(private, wf)
    assert [(a["attempt"], a["outcome"], a["sqlstate"]) for a in rows] == [(1, "timeout", "57014")], rows
    assert float(rows[0]["ended"] - rows[0]["started"]) < 3, rows
