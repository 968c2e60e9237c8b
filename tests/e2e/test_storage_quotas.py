"""Storage quotas: a workflow stores at most webhook.storage_quota bytes of
events per webhook.storage_quota_window (64 kB per hour here), or less if
its own quota says so; past it, requests get 429 with Retry-After until the
window ends, counted as rejections, and nothing is stored. An event counts
its body twice (the raw text and the parameters), or once when the workflow
keeps only the parameters, plus its headers and query string.
"""

import time

import requests

from hookkit import assert_rejection_counts, set_response  # noqa: F401
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.storage_quota": "64kB", "webhook.storage_quota_window": "1h"})
tenants = tenants_fixture("alice", "bob")

OVER = {"msg": "Storage quota exceeded"}


def post(c, wf, size: int, headers=None):
    return requests.post(c.hook_url(wf), json={"blob": "x" * size}, headers=headers or {}, timeout=10)


def stored(c, wf) -> int:
    return c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,))


def assert_over_quota(r):
    """429, the exact message, and Retry-After: the seconds left in the
    current hour (fixed windows, the same in every listener process)."""
    left = 3600 - int(time.time()) % 3600
    assert (r.status_code, r.json()) == (429, OVER), r.text
    assert abs(int(r.headers["retry-after"]) - left) <= 2, (r.headers["retry-after"], left)


def test_a_workflow_past_its_quota_gets_429_until_the_window_ends(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="quota")
    other = alice.create_workflow(name="other")
    # 20 kB bodies count about 40 kB each: the first is within the quota,
    # the second crosses it and is still stored, the third is refused.
    assert post(private, wf, 20_000).status_code == 200
    assert post(private, wf, 20_000).status_code == 200
    r = post(private, wf, 20_000)
    assert_over_quota(r)
    # So is a tiny request: the quota is used up for this window.
    assert_over_quota(requests.post(private.hook_url(wf), json={}, timeout=10))
    assert stored(private, wf) == 2
    assert_rejection_counts(private, wf, {(429, "Storage quota exceeded"): 2})
    # Another workflow's quota is its own.
    assert post(private, other, 20_000).status_code == 200
    assert stored(private, other) == 1


def test_a_redelivery_past_the_quota_still_gets_its_original_answer(private, tenants):
    """The quota is checked after redelivery detection: a sender retrying a
    delivery that was stored gets its answer, not a 429."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="redelivered")
    first = post(private, wf, 30_000, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200, first.text
    assert post(private, wf, 30_000, headers={"Idempotency-Key": "k-2"}).status_code == 200
    assert_over_quota(post(private, wf, 10, headers={"Idempotency-Key": "k-3"}))
    again = post(private, wf, 30_000, headers={"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()) == (200, first.json())
    assert stored(private, wf) == 2


def test_a_workflows_own_quota_can_only_be_lower_than_the_servers(private, tenants):
    alice = tenants["alice"]
    low = alice.create_workflow(name="low")
    row = alice.row("SELECT storage_quota, keep_body FROM webhook_set_storage(%s, 1000)", (low,))
    assert row == {"storage_quota": 1000, "keep_body": True}
    assert post(private, low, 600).status_code == 200  # about 1,300 bytes: crosses 1,000
    assert_over_quota(post(private, low, 10))
    assert stored(private, low) == 1
    # Asking for more than the server's 64 kB gets the server's.
    high = alice.create_workflow(name="high")
    alice.sql("SELECT webhook_set_storage(%s, 10000000)", (high,))
    for _ in range(2):
        assert post(private, high, 20_000).status_code == 200
    assert_over_quota(post(private, high, 20_000))
    # Back to the server's quota: NULL.
    assert alice.row("SELECT storage_quota FROM webhook_set_storage(%s, NULL)", (low,)) == {"storage_quota": None}
    for args in [(0, True), (-5, True), (100, None)]:
        err = alice.error("SELECT webhook_set_storage(%s, %s, %s)", (low, *args), sqlstate="22023")
        assert err["message"] == ("quota must be positive (bytes per webhook.storage_quota_window) or NULL, "
                                  "and keep_body true or false"), err
    alice.error("UPDATE webhook.workflows SET storage_quota = 0 WHERE id = %s", (low,), sqlstate="23514")


def test_a_workflow_can_keep_only_the_parameters(private, tenants):
    """keep_body => false: events.body is NULL (the parameters hold the
    data), and an event counts its body once, so twice as many fit."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="params-only")
    alice.sql("SELECT webhook_set_storage(%s, NULL, keep_body => false)", (wf,))
    statuses = [post(private, wf, 20_000).status_code for _ in range(5)]
    # 20 kB a request: three fit in 64 kB and the fourth crosses it.
    assert statuses == [200, 200, 200, 200, 429], statuses
    rows = private.rows("SELECT body, params->>'blob' AS blob FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert len(rows) == 4
    assert all(r["body"] is None and r["blob"] == "x" * 20_000 for r in rows)
    # Positive control: by default the raw body is kept.
    kept = alice.create_workflow(name="kept")
    assert post(private, kept, 100).status_code == 200
    assert private.scalar("SELECT body FROM webhook.events WHERE workflow_id = %s", (kept,)) == \
        '{"blob": "' + "x" * 100 + '"}'


def test_keep_body_off_still_keeps_a_body_the_parameters_do_not_hold(private, tenants):
    """A text/plain body is not parsed into parameters: it is kept whatever
    the setting (and counted once)."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="text-kept")
    alice.sql("SELECT webhook_set_storage(%s, NULL, keep_body => false)", (wf,))
    r = requests.post(private.hook_url(wf), data="plain words", headers={"Content-Type": "text/plain"},
                      timeout=10)
    assert r.status_code == 200, r.text
    row = private.row("SELECT body, params FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert row == {"body": "plain words", "params": {}}


def test_a_redelivery_over_the_quota_with_a_huge_window_is_answered_alone(private, tenants):
    """The redelivery lookup runs in its own subtransaction, and the window
    is clamped: a workflow whose delivery keys are kept 7,000 years used to
    make every redelivery over its quota fail the whole listener batch
    ("timestamp out of range"), other tenants' requests with it."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="forever")
    alice.sql("SELECT webhook_set_delivery_key(%s, 'header', 'idempotency-key', '7000 years')", (wf,))
    alice.sql("SELECT webhook_set_storage(%s, 1)", (wf,))
    first = post(private, wf, 10, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200, first.text
    again = post(private, wf, 10, headers={"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()) == (200, first.json())
    assert_over_quota(post(private, wf, 10, headers={"Idempotency-Key": "k-2"}))
    assert stored(private, wf) == 1


def test_a_tenant_cannot_set_another_tenants_storage(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf = alice.create_workflow(name="alices")
    # Positive control: the owner may.
    assert alice.row("SELECT storage_quota FROM webhook_set_storage(%s, 5000)", (wf,)) == {"storage_quota": 5000}
    bob.error("SELECT webhook_set_storage(%s, 1, false)", (wf,), sqlstate="42704")
    with bob.connect() as conn:
        assert conn.execute("UPDATE webhook.workflows SET storage_quota = 1, keep_body = false WHERE id = %s",
                            (wf,)).rowcount == 0
    assert private.row("SELECT storage_quota, keep_body FROM webhook.workflows WHERE id = %s", (wf,)) == {
        "storage_quota": 5000, "keep_body": True}
