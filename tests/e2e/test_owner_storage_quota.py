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


def clear_of_the_hours_end(margin: float = 10.0) -> None:
    """Windows are fixed hours: a test that fills one waits out the last
    seconds of the current hour rather than see its counts start again."""
    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 0.5)


def fill_owner_quota(c, alice) -> tuple[str, str, str]:
    """Three workflows of alice's, 20 kB bodies (about 40 kB counted each:
    the raw text and the parameters): each stays within its own 64 kB, but
    the third crosses the owner's 100 kB (and is still stored, as a
    workflow's crossing request is)."""
    clear_of_the_hours_end()
    wfs = tuple(alice.create_workflow(name=n) for n in ("first", "second", "third"))
    for wf in wfs:
        r = post(c, wf, 20_000)
        assert r.status_code == 200, r.text
    return wfs


def test_an_owner_past_its_quota_is_refused_on_every_workflow_while_others_store(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    bobs = bob.create_workflow(name="bobs")
    first, second, third = fill_owner_quota(private, alice)
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


def test_past_the_owners_quota_a_redelivery_gets_its_answer_and_the_owners_sql_still_stores(private, tenants):
    """The owner's quota bounds what senders store: a sender retrying a
    stored delivery still gets its original answer, and the owner's own
    webhook_trigger is not counted."""
    alice = tenants["alice"]
    clear_of_the_hours_end()
    keyed = alice.create_workflow(name="keyed")
    first = requests.post(private.hook_url(keyed), json={"blob": "x" * 20_000},
                          headers={"Idempotency-Key": "k-1"}, timeout=10)
    assert first.status_code == 200, first.text
    # Two more workflows' 20 kB each: the second crosses the owner's quota.
    first_wf, second_wf = alice.create_workflow(name="a"), alice.create_workflow(name="b")
    for wf in (first_wf, second_wf):
        r = post(private, wf, 20_000)
        assert r.status_code == 200, r.text
    refused = requests.post(private.hook_url(keyed), json={"n": 1}, headers={"Idempotency-Key": "k-2"}, timeout=10)
    assert (refused.status_code, refused.json()) == (429, OWNER_OVER), refused.text
    again = requests.post(private.hook_url(keyed), json={"blob": "x" * 20_000},
                          headers={"Idempotency-Key": "k-1"}, timeout=10)
    assert (again.status_code, again.json()) == (200, first.json())
    assert stored(private, keyed) == 1
    out = alice.scalar("SELECT webhook_trigger(%s, body => '{\"n\": 2}')", (first_wf,))
    assert out["status"] == 200, out
    assert stored(private, first_wf) == 2


def test_an_owners_quota_of_0_sets_no_bound(private, tenants):
    alice = tenants["alice"]
    first, _, _ = fill_owner_quota(private, alice)
    r = post(private, first, 10)
    assert (r.status_code, r.json()) == (429, OWNER_OVER), r.text
    private.sql("ALTER SYSTEM SET webhook.owner_storage_quota = 0")
    private.sql("SELECT pg_reload_conf()")
    try:
        # The listener reads the setting again at its next loop.
        deadline = time.time() + 10
        while (r := post(private, first, 10)).status_code == 429 and time.time() < deadline:
            time.sleep(0.1)
        assert r.status_code == 200, r.text
    finally:
        private.sql("ALTER SYSTEM RESET webhook.owner_storage_quota")
        private.sql("SELECT pg_reload_conf()")
