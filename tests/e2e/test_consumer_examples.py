"""The worked readers of docs/consumers.md, run as an application would run
them: webhooks posted over HTTP to a queued workflow, the reader handling
each exactly once, even when a reader is killed in the middle of a batch or
two read at once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import corpuskit
import hookkit as hk
from tenantkit import make_tenant, drop_tenants

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


LANGUAGES = ["python", "node"]


class Reader:
    """An example reader (examples/python/consumer.py or
    examples/node/consumer.js) in a process of its own, as the tenant;
    ``done`` is what it printed (one dict per event it handled and acked)."""

    def __init__(self, language: str, c, tenant: str, wf: str, *args: str):
        info = c.conninfo(user=tenant)
        if language == "python":
            conninfo = " ".join(f"{k}={v}" for k, v in info.items() if k != "options")
            command = [sys.executable, os.path.join(EXAMPLES, "python", "consumer.py"), conninfo]
        else:
            conninfo = f"postgresql://{tenant}@localhost:{info['port']}/{info['dbname']}?host={info['host']}"
            command = ["node", os.path.join(EXAMPLES, "node", "consumer.js"), conninfo]
        self.proc = subprocess.Popen([*command, wf, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.done: list[dict] = []
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        for line in self.proc.stdout:
            self.done.append(json.loads(line))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._thread.join(10)

    def stop(self) -> str:
        if self.proc.poll() is None:
            # SIGTERM: a test run in the background ignores SIGINT, and so
            # would the reader it starts.
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self._thread.join(10)
        return self.proc.stderr.read()


@pytest.fixture
def tenant(cluster, uniq):
    name = uniq("app")
    yield make_tenant(cluster, name)
    drop_tenants(cluster, [name])


def queued_workflow(c, tenant) -> str:
    wf = tenant.create_workflow()
    tenant.sql("SELECT webhook_set_queue(%s)", (wf,))
    return wf


def post_orders(c, wf, orders: list[str], **extra) -> dict[int, str]:
    sent = {}
    for order in orders:
        r = hk.post(c, wf, json_body={"order_id": order, **extra})
        assert r.status_code == 200, r.text
        sent[r.json()["event_id"]] = order
    return sent


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_reader_killed_mid_batch_loses_nothing_and_no_event_is_handled_twice(cluster, tenant, language):
    wf = queued_workflow(cluster, tenant)
    sent = post_orders(cluster, wf, [f"A-{language}-{n}" for n in range(12)])
    first = Reader(language, cluster, tenant.name, wf, "--batch", "6", "--visibility", "2", "--work-seconds", "0.3")
    try:
        hk.wait_until(lambda: len(first.done) >= 2, timeout=20, what="the first reader handled two events")
    finally:
        first.kill()  # in the middle of its first batch of six
    assert 2 <= len(first.done) < 6, first.done
    second = Reader(language, cluster, tenant.name, wf, "--batch", "6", "--visibility", "2")
    try:
        hk.wait_until(lambda: len(first.done) + len(second.done) >= len(sent), timeout=30,
                      what="every event handled")
    finally:
        errors = second.stop()
    done = first.done + second.done
    # Each event handled once, by one reader, with its own order.
    assert sorted(d["event_id"] for d in done) == sorted(sent), (done, errors)
    assert {d["event_id"]: d["order_id"] for d in done} == sent
    # The events the killed reader had read and not acked came back after
    # their visibility timeout: read a second time.
    handled_first = {d["event_id"] for d in first.done}
    first_batch = sorted(sent)[:6]
    again = {d["event_id"]: d["attempt"] for d in second.done if d["event_id"] in first_batch}
    assert set(again) == set(first_batch) - handled_first and set(again.values()) == {2}, again
    assert cluster.scalar("SELECT array_agg(DISTINCT status) FROM webhook.events WHERE workflow_id = %s",
                          (wf,)) == ["succeeded"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_two_readers_share_the_events_and_never_handle_one_at_once(cluster, tenant, language):
    wf = queued_workflow(cluster, tenant)
    readers = [Reader(language, cluster, tenant.name, wf, "--batch", "3", "--work-seconds", "0.05") for _ in range(2)]
    try:
        sent = post_orders(cluster, wf, [f"B-{n}" for n in range(30)])
        hk.wait_until(lambda: sum(len(r.done) for r in readers) >= len(sent), timeout=30,
                      what="every event handled")
    finally:
        for r in readers:
            r.stop()
    ids = [d["event_id"] for r in readers for d in r.done]
    assert sorted(ids) == sorted(sent)  # none twice, none lost
    assert all(r.done for r in readers), [len(r.done) for r in readers]
    assert {d["attempt"] for r in readers for d in r.done} == {1}


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_event_the_reader_cannot_handle_is_retried_then_dead(cluster, tenant, language):
    wf = queued_workflow(cluster, tenant)
    tenant.sql("SELECT webhook_set_retry(%s, 2, '0.2 seconds', '0.2 seconds')", (wf,))
    reader = Reader(language, cluster, tenant.name, wf, "--batch", "5")
    try:
        bad = post_orders(cluster, wf, ["C-bad"], fail=True)
        good = post_orders(cluster, wf, ["C-good"])
        [bad_id] = bad
        hk.wait_for_value(lambda: cluster.scalar("SELECT status FROM webhook.events WHERE id = %s", (bad_id,)),
                          "dead", timeout=20, what="the bad event dead after its two attempts")
        hk.wait_until(lambda: reader.done, timeout=10, what="the good event handled")
    finally:
        reader.stop()
    assert [d["event_id"] for d in reader.done] == list(good)
    assert [(r["attempt"], r["outcome"], r["message"]) for r in cluster.rows(
        "SELECT attempt, outcome, message FROM webhook.attempts WHERE event_id = %s ORDER BY attempt", (bad_id,))] == \
        [(1, "failed", "cannot handle order C-bad"), (2, "failed", "cannot handle order C-bad")]


# Published deliveries of several providers, JSON and form bodies, objects
# and a top-level array (tests/e2e/corpus).
REAL_DELIVERIES = [("github", "push_new_branch"), ("shopify", "orders_create_test_notification"),
                   ("slack", "event_callback_app_mention"), ("slack", "slash_command_weather"),
                   ("paddle", "customer_created"), ("pagerduty", "service_updated"),
                   ("sendgrid", "event_batch_docs"), ("linear", "comment_create"), ("mailgun", "accepted")]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_reader_takes_the_providers_real_deliveries_each_once(cluster, tenant, language):
    wf = queued_workflow(cluster, tenant)
    sent = {}
    for provider, name in REAL_DELIVERIES:
        r = corpuskit.send(cluster, wf, corpuskit.load(provider, name))
        assert r.status_code == 200, (provider, name, r.text)
        sent[r.json()["event_id"]] = f"{provider}/{name}"
    reader = Reader(language, cluster, tenant.name, wf, "--batch", "4")
    try:
        hk.wait_until(lambda: len(reader.done) >= len(sent), timeout=30, what="every delivery handled")
    finally:
        errors = reader.stop()
    assert sorted(d["event_id"] for d in reader.done) == sorted(sent), (reader.done, errors)
    # The reader saw each event's parameters as stored.
    stored = {r["id"]: sorted(r["keys"]) for r in cluster.rows(
        "SELECT id, ARRAY(SELECT jsonb_object_keys(params)) AS keys FROM webhook.events WHERE workflow_id = %s",
        (wf,))}
    assert {d["event_id"]: d["keys"] for d in reader.done} == stored
    assert stored[min(sent)] == sorted(corpuskit.load("github", "push_new_branch").body)
    assert cluster.scalar("SELECT array_agg(DISTINCT status) FROM webhook.events WHERE workflow_id = %s",
                          (wf,)) == ["succeeded"]
