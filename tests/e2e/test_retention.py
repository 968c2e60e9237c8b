"""Retention: finished events older than their workflow's retention (or the
server's) are deleted with their attempts by the first listener; pending and
failed events are never removed, whatever their age."""

import time

import hookkit as hk

OLD = "now() - interval '2 hours'"


def insert_event(c, wf: str, status: str, handled: str | None, received: str = OLD) -> int:
    """An event as an executor leaves it, aged: received (and, when
    finished, last attempted) long ago, with one attempt row."""
    next_attempt = "NULL" if status in ("succeeded", "dead") else "now() + interval '1 day'"
    attempts = 0 if status == "pending" else 1
    event_id = c.scalar(
        f"INSERT INTO webhook.events (workflow_id, method, params, status, attempts, next_attempt_at, "
        f"received_at, handled_at) VALUES (%s::uuid, 'POST', '{{}}', %s, %s, {next_attempt}, {received}, "
        f"{handled or 'NULL'}) RETURNING id", (wf, status, attempts))
    if attempts:
        c.sql("INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome) "
              f"VALUES (%s, 1, %s::uuid, {received}, {received}, %s)",
              (event_id, wf, "succeeded" if status == "succeeded" else "failed"))
    return event_id


def kept(c, ids: list[int]) -> list[int]:
    return [r["id"] for r in c.rows("SELECT id FROM webhook.events WHERE id = ANY(%s) ORDER BY id", (ids,))]


def test_defaults_are_a_week_for_succeeded_and_thirty_days_for_dead_events(cluster):
    assert cluster.scalar("SHOW webhook.retain_succeeded") == "7d"
    assert cluster.scalar("SHOW webhook.retain_dead") == "30d"


def test_finished_events_past_their_workflows_retention_go_with_their_attempts(make_cluster):
    c = make_cluster(conf={"webhook.workers": 2})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    short = hk.create_workflow(c)
    other = hk.create_workflow(c)  # the server's retention: a week, a month
    c.sql("SELECT webhook_set_retention(%s, '1 hour', '3 hours')", (short,))
    assert c.row("SELECT retain_succeeded::text, retain_dead::text FROM webhook.workflows WHERE id = %s",
                 (short,)) == {"retain_succeeded": "01:00:00", "retain_dead": "03:00:00"}

    gone_succeeded = insert_event(c, short, "succeeded", OLD)
    kept_dead = insert_event(c, short, "dead", OLD)                     # 2 h < 3 h
    gone_dead = insert_event(c, short, "dead", "now() - interval '4 hours'",
                             received="now() - interval '4 hours'")
    recent = insert_event(c, short, "succeeded", "now() - interval '5 minutes'")
    # Received long ago, finished recently (retried for days): kept.
    late = insert_event(c, short, "succeeded", "now() - interval '5 minutes'", received="now() - interval '5 days'")
    # Never removed by retention, however old.
    pending = insert_event(c, short, "pending", None, received="now() - interval '90 days'")
    failed = insert_event(c, short, "failed", "now() - interval '90 days'", received="now() - interval '90 days'")
    other_old = insert_event(c, other, "succeeded", OLD)
    ids = [gone_succeeded, kept_dead, gone_dead, recent, late, pending, failed, other_old]

    hk.wait_for_value(lambda: kept(c, ids), sorted([kept_dead, recent, late, pending, failed, other_old]),
                      timeout=10, what="old finished events deleted")
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id IN (%s, %s)",
                    (gone_succeeded, gone_dead)) == 0
    assert c.scalar("SELECT count(*) FROM webhook.attempts WHERE event_id = %s", (kept_dead,)) == 1
    assert c.row("SELECT status, next_attempt_at IS NOT NULL AS due FROM webhook.events WHERE id = %s",
                 (failed,)) == {"status": "failed", "due": True}

    # The workflow goes back to the server's retention.
    c.sql("SELECT webhook_set_retention(%s, NULL, NULL)", (short,))
    assert c.row("SELECT retain_succeeded, retain_dead FROM webhook.workflows WHERE id = %s",
                 (short,)) == {"retain_succeeded": None, "retain_dead": None}


def test_the_servers_retention_applies_when_reloaded_and_minus_one_keeps_for_ever(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.retain_succeeded": -1, "webhook.retain_dead": -1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    ancient = "now() - interval '400 days'"
    succeeded = insert_event(c, wf, "succeeded", ancient, received=ancient)
    dead = insert_event(c, wf, "dead", ancient, received=ancient)
    served = hk.post(c, wf, json_body={"n": 1})
    assert served.status_code == 200, served.text
    hk.wait_for_status(c, served.json()["event_id"], "succeeded")
    # Kept for ever: the listener's once-a-second rounds pass and nothing
    # goes (a wait, since what is checked is that nothing happens).
    time.sleep(2.5)
    assert kept(c, [succeeded, dead]) == [succeeded, dead]

    c.set_conf(**{"webhook.retain_dead": "1h"})
    c.reload()
    hk.wait_for_value(lambda: kept(c, [succeeded, dead]), [succeeded], timeout=10, what="the dead event deleted")
    c.set_conf(**{"webhook.retain_succeeded": 0})
    c.reload()
    hk.wait_for_value(lambda: kept(c, [succeeded, dead, served.json()["event_id"]]), [], timeout=10,
                      what="every succeeded event deleted")


def test_retention_must_be_positive_and_only_the_owner_sets_it(cluster, uniq):
    wf = hk.create_workflow(cluster)
    err = cluster.sql_error("SELECT webhook_set_retention(%s, '0 seconds', NULL)", (wf,), sqlstate="22023")
    assert err["message"] == "retention must be a positive interval, or NULL for the server's default"
    assert err["hint"] == "webhook.retain_succeeded and webhook.retain_dead are the defaults."
    tenant = hk.make_login_role(cluster, uniq)
    try:
        err = cluster.sql_error("SELECT webhook_set_retention(%s, '1 day', NULL)", (wf,), user=tenant)
        assert err["message"] == f"workflow {wf} does not exist"
    finally:
        hk.drop_login_role(cluster, tenant)
