"""An owner's storage quota: with webhook.owner_storage_quota set, all
workflows of one owner together store at most that many bytes per
webhook.storage_quota_window (100 kB per hour here, each workflow 64 kB);
past it, requests to any of the owner's workflows get 429 with Retry-After,
counted as rejections of the workflow they were sent to, while other
owners' workflows store on.
"""

import time

import requests

from hookkit import assert_rejection_counts
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{
    "webhook.storage_quota": "64kB",
    "webhook.owner_storage_quota": "100kB",
    "webhook.storage_quota_window": "1h",
})
tenants = tenants_fixture("alice", "bob")

OWNER_OVER = {"msg": "Storage quota of the workflow's owner exceeded"}


def post(c, wf, size: int):
    return requests.post(c.hook_url(wf), json={"blob": "x" * size}, timeout=10)


def stored(c, wf) -> int:
    return c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,))


def test_an_owner_past_its_quota_is_refused_on_every_workflow_while_others_store(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    first, second, third = (alice.create_workflow(name=n) for n in ("first", "second", "third"))
    bobs = bob.create_workflow(name="bobs")
    # 20 kB bodies count about 40 kB each (the raw text and the parameters):
    # each workflow stays within its own 64 kB, but the owner's third
    # crosses its 100 kB (and is still stored, as a workflow's crossing
    # request is).
    for wf in (first, second, third):
        r = post(private, wf, 20_000)
        assert r.status_code == 200, r.text
    # Now every workflow of the owner is refused, the one that crossed it
    # and one that stored only 40 kB alike, tiny requests too.
    left = 3600 - int(time.time()) % 3600
    for wf, size in ((third, 20_000), (first, 10)):
        r = post(private, wf, size)
        assert (r.status_code, r.json()) == (429, OWNER_OVER), r.text
        assert abs(int(r.headers["retry-after"]) - left) <= 2, (r.headers["retry-after"], left)
    # Another owner's workflow stores on.
    r = post(private, bobs, 20_000)
    assert r.status_code == 200, r.text
    assert [stored(private, wf) for wf in (first, second, third, bobs)] == [1, 1, 1, 1]
    assert_rejection_counts(private, third, {(429, OWNER_OVER["msg"]): 1})
    assert_rejection_counts(private, first, {(429, OWNER_OVER["msg"]): 1})
    assert_rejection_counts(private, second, {})


def test_a_workflow_past_its_own_quota_gets_the_workflows_answer(private, tenants):
    """Below the owner's quota, a workflow's own is what refuses it."""
    alice = tenants["alice"]
    wf = alice.create_workflow(name="own")
    alice.sql("SELECT webhook_set_storage(%s, 1000)", (wf,))
    assert post(private, wf, 600).status_code == 200  # about 1,300 bytes: crosses 1,000
    r = post(private, wf, 10)
    assert (r.status_code, r.json()) == (429, {"msg": "Storage quota exceeded"}), r.text
    assert stored(private, wf) == 1
