"""What a DBA can watch: webhook.workflow_stats (requests received, accepted,
redelivered and refused by reason, handshakes, the queue, handler outcomes,
handler duration and lag percentiles) under the tables' row-level security,
counts that survive a restart and retention, webhook_processes() with since
when each process is in its state, and the opt-in Prometheus /metrics."""

import datetime
import re
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import hookkit as hk
from conftest import uniq
from tenantkit import make_tenant, drop_tenants

# Fails when the payload says so; records every run otherwise.
FLAKY_HANDLER = """
CREATE TABLE {table} (event_id bigint);
CREATE FUNCTION {name}(e webhook.events) RETURNS void LANGUAGE plpgsql AS $h$
BEGIN
    IF e.params->>'fail' = 'yes' THEN
        RAISE EXCEPTION 'refused by the handler';
    END IF;
    INSERT INTO {table} VALUES (e.id);
END $h$;
"""

META_CHECK = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"


def stats(c, wf, user="postgres") -> dict:
    return c.row("SELECT * FROM webhook.workflow_stats WHERE workflow_id = %s", (wf,), user=user)


def counts(row: dict) -> dict:
    """The counters and queue of a stats row (what does not depend on time)."""
    keys = ("received", "accepted", "redelivered", "refused", "refused_by_reason", "handshakes",
            "pending", "running", "failed", "succeeded", "failed_attempts", "dead")
    return {k: row[k] for k in keys}


def flaky_workflow(c) -> tuple[str, str]:
    name, table = uniq("flaky"), uniq("runs")
    c.sql(FLAKY_HANDLER.format(name=name, table=table))
    wf = hk.create_workflow(c, handler=name)
    c.sql("SELECT webhook_set_retry(%s, 2, '100 ms', '100 ms')", (wf,))
    c.sql("SELECT webhook_set_verification(%s, 'meta-verify-token', secret => 'meatyhamhock', "
          "for_method => 'GET')", (wf,))
    c.sql("SELECT webhook_set_handshake(%s, 'meta')", (wf,))
    return wf, table


def send_mix(c, wf) -> None:
    """3 plain events, one delivered twice, one whose handler fails twice
    (dead), a refused PUT and an endpoint check."""
    for n in range(3):
        assert hk.post(c, wf, json_body={"n": n}).status_code == 200
    key = {"Idempotency-Key": uniq("key")}
    assert hk.post(c, wf, json_body={"n": 3}, headers=key).status_code == 200
    assert hk.post(c, wf, json_body={"n": 3}, headers=key).status_code == 200
    assert hk.post(c, wf, json_body={"fail": "yes"}).status_code == 200
    put = requests.put(c.hook_url(wf), json={"n": 9}, timeout=10)
    assert put.status_code == 405
    check = requests.get(c.hook_url(wf) + "?" + META_CHECK, timeout=10)
    assert (check.status_code, check.text) == (200, "1158201444")


MIX = {
    "received": 8, "accepted": 5, "redelivered": 1, "refused": 1,
    "refused_by_reason": {"405 Method not allowed": 1}, "handshakes": 1,
    "pending": 0, "running": 0, "failed": 0,
    "succeeded": 4, "failed_attempts": 2, "dead": 1,
}


@pytest.fixture
def stats_cluster(make_cluster):
    c = make_cluster(conf={"webhook.workers": 2})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    return c


def test_a_workflows_stats_count_what_it_received_and_what_its_handler_did(stats_cluster):
    c = stats_cluster
    wf, table = flaky_workflow(c)
    other, _ = flaky_workflow(c)
    # Positive control: a new workflow's row is all zeros.
    assert counts(stats(c, wf)) == {**{k: 0 for k in MIX}, "refused_by_reason": {}}
    assert stats(c, wf)["handler_p50"] is None

    send_mix(c, wf)
    hk.settle(c)
    # The listener adds its request counts once a second.
    hk.wait_for_value(lambda: counts(stats(c, wf)), MIX, timeout=10, what="stats of the workflow")
    assert c.scalar(f"SELECT count(*) FROM {table}") == 4
    reasons = c.rows("SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s", (wf,))
    assert reasons == [{"status": 405, "reason": "Method not allowed", "count": 1}]

    row = stats(c, wf)
    assert row["oldest_pending_age"] is None
    for key in ("handler_p50", "handler_p99", "lag_p50", "lag_p99"):
        assert isinstance(row[key], datetime.timedelta), (key, row)
        assert datetime.timedelta(0) <= row[key] < datetime.timedelta(seconds=10), (key, row)
    assert row["handler_p50"] <= row["handler_p99"] and row["lag_p50"] <= row["lag_p99"]
    # Nothing leaks into another workflow's row.
    assert counts(stats(c, other)) == {**{k: 0 for k in MIX}, "refused_by_reason": {}}
    # The counters' rows sum to the view's.
    assert c.row("SELECT sum(accepted) AS a, sum(redelivered) AS r, sum(succeeded) AS s, "
                 "sum(failed_attempts) AS f, sum(dead) AS d FROM webhook.workflow_counters "
                 "WHERE workflow_id = %s", (wf,)) == {"a": 5, "r": 1, "s": 4, "f": 2, "d": 1}


def test_counts_survive_a_restart_and_retention(stats_cluster):
    c = stats_cluster
    wf, _ = flaky_workflow(c)
    send_mix(c, wf)
    hk.settle(c)
    # Posted just before the server stops: counted by the listener's last
    # flush as it stops, not only by its once-a-second one.
    for n in range(20):
        assert hk.post(c, wf, json_body={"late": n}).status_code == 200
    c.restart()
    hk.wait_ready(c)
    hk.settle(c)
    after = {**MIX, "received": MIX["received"] + 20, "accepted": MIX["accepted"] + 20,
             "succeeded": MIX["succeeded"] + 20}
    hk.wait_for_value(lambda: counts(stats(c, wf)), after, timeout=10, what="stats after the restart")

    # Retention deletes the finished events; what they counted stays.
    c.sql("SELECT webhook_set_retention(%s, '1 second', '1 second')", (wf,))
    hk.wait_for_value(lambda: hk.count_events(c, wf), 0, timeout=15, what="events deleted by retention")
    assert counts(stats(c, wf)) == after
    assert stats(c, wf)["handler_p50"] is None


def test_the_queue_and_processes_show_what_runs_now_and_since_when(stats_cluster):
    c = stats_cluster
    handler, table = hk.create_side_handler(c, sleep=3)
    wf = hk.create_workflow(c, handler=handler)
    c.sql("SELECT webhook_set_ordered(%s, true)", (wf,))
    before = c.scalar("SELECT now()")
    first = hk.post(c, wf, json_body={"n": 1})
    second = hk.post(c, wf, json_body={"n": 2})
    assert (first.status_code, second.status_code) == (200, 200)
    running = hk.wait_until(
        lambda: c.row("SELECT * FROM webhook_processes() WHERE kind = 'executor' AND state = 'running handler'"),
        timeout=10, what="an executor running the handler")
    first_id = c.scalar("SELECT min(id) FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert running["event_id"] == first_id
    assert before <= running["since"] <= c.scalar("SELECT now()")
    row = stats(c, wf)
    assert (row["pending"], row["running"], row["failed"]) == (1, 1, 0)
    assert row["oldest_pending_age"] > datetime.timedelta(0)

    listeners = c.rows("SELECT pid, owner, state, event_id, since FROM webhook_processes() WHERE kind = 'listener'")
    assert sorted(r["pid"] for r in listeners) == sorted(c.listener_pids())
    for r in listeners:
        assert (r["owner"], r["state"], r["event_id"]) == (None, "listening", None)
        assert r["since"] < before
    hk.settle(c, timeout=20)
    row = stats(c, wf)
    assert (row["pending"], row["running"], row["failed"], row["succeeded"]) == (0, 0, 0, 2)


def test_a_tenant_sees_the_stats_of_its_own_workflows_only(stats_cluster):
    c = stats_cluster
    alice, bob = make_tenant(c, uniq("alice")), make_tenant(c, uniq("bob"))
    try:
        wf_a, wf_b = alice.create_workflow(), bob.create_workflow()
        assert hk.post(c, wf_a, json_body={"n": 1}).status_code == 200
        assert hk.post(c, wf_b, json_body={"n": 1}).status_code == 200
        hk.settle(c)
        hk.wait_for_value(lambda: stats(c, wf_b)["accepted"], 1, timeout=10, what="bob's count")
        # Positive control: the superuser sees both rows.
        assert c.scalar("SELECT count(*) FROM webhook.workflow_stats WHERE workflow_id IN (%s, %s)",
                        (wf_a, wf_b)) == 2
        assert [r["workflow_id"] for r in alice.rows("SELECT workflow_id::text FROM webhook.workflow_stats")] == [wf_a]
        assert [r["workflow_id"] for r in bob.rows("SELECT workflow_id::text FROM webhook.workflow_stats")] == [wf_b]
        assert alice.scalar("SELECT accepted FROM webhook.workflow_stats") == 1
        assert alice.scalar("SELECT count(*) FROM webhook.workflow_counters WHERE workflow_id = %s", (wf_b,)) == 0
        assert bob.scalar("SELECT count(*) FROM webhook.workflow_counters WHERE workflow_id = %s", (wf_b,)) >= 1
        # Nobody but the extension writes the counters.
        alice.error("UPDATE webhook.workflow_counters SET accepted = 0", sqlstate="42501")
    finally:
        drop_tenants(c, [alice.name, bob.name])


# ---------------------------------------------------------------- /metrics

def scrape(c, **kw) -> requests.Response:
    return requests.get(c.base_url + "/metrics", timeout=10, **kw)


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value}, through Prometheus's own
    text parser (which rejects what is not the exposition format)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def test_metrics_are_off_by_default(stats_cluster):
    r = scrape(stats_cluster)
    assert (r.status_code, r.json()) == (404, {"msg": "Not found"})


def test_metrics_expose_each_workflows_counts_to_the_allowed_networks(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf, _ = flaky_workflow(c)
    c.sql("UPDATE webhook.workflows SET name = %s WHERE id = %s", ('orders "eu"\\ \n', wf))
    send_mix(c, wf)
    hk.settle(c)
    hk.wait_for_value(lambda: stats(c, wf)["accepted"], 5, timeout=10, what="counts flushed")

    r = scrape(c)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(r.text)
    labels = {"workflow": 'orders "eu"\\ \n', "workflow_id": wf}

    def value(name, **extra):
        return found[(name, frozenset({**labels, **extra}.items()))]

    assert {status: value("webhook_requests_total", status=status)
            for status in ("accepted", "redelivered", "handshake", "refused")} == \
        {"accepted": 5, "redelivered": 1, "handshake": 1, "refused": 1}
    assert value("webhook_refused_requests_total", code="405", reason="Method not allowed") == 1
    assert value("webhook_handler_attempts_total", outcome="succeeded") == 4
    assert value("webhook_handler_attempts_total", outcome="failed") == 2
    assert value("webhook_dead_events_total") == 1
    assert {state: value("webhook_events", state=state) for state in ("pending", "running", "failed")} == \
        {"pending": 0, "running": 0, "failed": 0}
    listener_pid = str(c.listener_pids()[0])
    listener = [v for (name, lbls), v in found.items()
                if name == "webhook_process_state_seconds" and dict(lbls)["pid"] == listener_pid]
    assert len(listener) == 1 and listener[0] > 0

    # Only GET.
    r = requests.post(c.base_url + "/metrics", timeout=10)
    assert (r.status_code, r.json()) == (405, {"msg": "Method not allowed", "allowed": ["GET"]})

    # A peer outside the networks is refused; the setting takes effect on reload.
    c.alter_system("webhook.metrics_networks", "10.0.0.0/8")
    hk.wait_for_value(lambda: scrape(c).status_code, 403, timeout=10, what="metrics refused")
    assert scrape(c).json() == {"msg": "Forbidden"}
    c.alter_system("webhook.metrics_networks", "")
    hk.wait_for_value(lambda: scrape(c).status_code, 404, timeout=10, what="metrics off again")


def top_memory_context_used(c, pid: int) -> int:
    """Bytes used in the process's TopMemoryContext itself (its children
    apart), as pg_log_backend_memory_contexts writes them to the log."""
    since = c.log_position()
    assert c.scalar("SELECT pg_log_backend_memory_contexts(%s)", (pid,)) is True
    pattern = re.compile(rf"\[{pid}\] .*LOG:  level: 0; TopMemoryContext: .*; (\d+) used")
    found: list[int] = []
    hk.wait_until(lambda: found.extend(int(m.group(1)) for m in pattern.finditer(c.log()[since:])) or found,
                  timeout=10, what="the listener's memory contexts in the log")
    return found[0]


def test_flushing_request_counts_leaves_nothing_in_the_listeners_memory(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    [pid] = c.listener_pids()

    def requests_for(seconds: float) -> int:
        """A request every 50 ms: every once-a-second flush has counts."""
        sent, end = 0, time.monotonic() + seconds
        with requests.Session() as s:
            while time.monotonic() < end:
                assert s.post(c.hook_url(wf), json={"n": sent}, timeout=10).status_code == 200
                sent += 1
                time.sleep(0.05)
        return sent

    sent = requests_for(3)  # warmed up: plans, caches
    before = top_memory_context_used(c, pid)
    sent += requests_for(15)
    after = top_memory_context_used(c, pid)
    # Each of the 15 flushes wrote its counts (positive control) ...
    hk.wait_for_value(lambda: stats(c, wf)["accepted"], sent, timeout=10, what="every request counted")
    # ... and left nothing behind: a flush whose arguments were made outside
    # its transaction left its jsonb (and its parser's buffers, over 1 kB)
    # in TopMemoryContext for the life of the process.
    assert after - before < 8192, (before, after)


def test_a_listener_reads_at_most_one_snapshot_a_second_for_all_scrapes(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    assert hk.post(c, wf, json_body={"n": 1}).status_code == 200
    hk.wait_for_value(lambda: stats(c, wf)["accepted"], 1, timeout=10, what="the request counted")
    c.sql("UPDATE webhook.workflows SET name = 'before' WHERE id = %s", (wf,))
    time.sleep(1.1)  # past any snapshot read before the rename

    def names(text: str) -> set:
        return {dict(lbls).get("workflow") for (name, lbls) in samples(text) if name == "webhook_requests_total"}

    first = scrape(c)
    assert names(first.text) == {"before"}
    # Renamed: a scrape within the second gets the same snapshot, byte for
    # byte, however many ask ...
    c.sql("UPDATE webhook.workflows SET name = 'after' WHERE id = %s", (wf,))
    again = [scrape(c) for _ in range(5)]
    assert [(r.status_code, r.text) for r in again] == [(200, first.text)] * 5
    # ... and a scrape after it reads a new one.
    hk.wait_for_value(lambda: names(scrape(c).text), {"after"}, timeout=5, what="the new name in a new snapshot")


def test_a_scrape_during_traffic_answers_and_loses_no_request(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.metrics_networks": "127.0.0.0/8"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    stop = threading.Event()
    codes: list[int] = []

    def send():
        with requests.Session() as s:
            while not stop.is_set():
                codes.append(s.post(c.hook_url(wf), json={"n": 1}, timeout=10).status_code)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for t in senders:
        t.start()
    try:
        scrapes = []
        for _ in range(20):
            r = scrape(c)
            scrapes.append(r.status_code)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in senders:
            t.join()
    assert scrapes == [200] * 20
    assert set(codes) == {200}
    hk.wait_for_value(lambda: samples(scrape(c).text)[
        ("webhook_requests_total", frozenset({"workflow": c.scalar("SELECT name FROM webhook.workflows WHERE id = %s",
                                                                   (wf,)),
                                              "workflow_id": wf, "status": "accepted"}.items()))],
        float(len(codes)), timeout=10, what="every accepted request counted")
    assert hk.count_events(c, wf) == len(codes)


def test_a_deleted_workflows_counters_go_and_a_deletion_never_deadlocks_with_its_executor(stats_cluster):
    c = stats_cluster
    handler, _ = hk.create_side_handler(c, sleep=1)
    wf = hk.create_workflow(c, handler=handler)
    kept = hk.create_workflow(c)
    for n in range(3):
        assert hk.post(c, wf, json_body={"n": n}).status_code == 200
    assert hk.post(c, kept, json_body={"n": 1}).status_code == 200
    hk.wait_until(lambda: c.row("SELECT * FROM webhook_processes() WHERE state = 'running handler'"),
                  timeout=10, what="a handler running")
    # Deleted while its executor runs its events' handlers and will count
    # them: the deletion waits for that batch, and nobody deadlocks.
    c.sql("SELECT webhook_drop_workflow(%s)", (wf,))
    assert hk.count_events(c, wf) == 0
    hk.settle(c)
    hk.wait_for_value(lambda: stats(c, kept)["accepted"], 1, timeout=10, what="the other workflow's count")
    # The deleted workflow's counters go in a listener's housekeeping (at
    # its start, then once a minute).
    c.restart()
    hk.wait_ready(c)
    hk.wait_for_value(lambda: c.scalar("SELECT count(*) FROM webhook.workflow_counters WHERE workflow_id = %s",
                                       (wf,)), 0, timeout=10, what="the deleted workflow's counters")
    assert stats(c, kept)["accepted"] == 1
    assert "deadlock" not in c.log()
