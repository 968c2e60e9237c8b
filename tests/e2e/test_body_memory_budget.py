"""Bodies being decoded and parsed at once share one budget per listener
process (webhook.max_body_memory): a request whose parsed values would pass
it gets 503 with Retry-After and is counted as a rejection, while requests
that fit are stored. Here the budget is 8 MB and bodies at most 1 MB."""

import json

import requests

from hookkit import assert_rejection_counts
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.max_body_memory": "8MB", "webhook.max_body_size": "1MB"})
tenants = tenants_fixture("alice")

BUSY = {"msg": "Listener busy, retry later"}


def words(size: int) -> bytes:
    """A JSON array of short strings, about ``size`` bytes: its values take
    about fifteen times its size, inside the 32-times allowance."""
    return json.dumps(["abcdefgh"] * (size // 12)).encode()


def test_a_body_whose_values_pass_the_budget_is_refused_and_counted(private, tenants):
    wf = tenants["alice"].create_workflow()
    # Positive control: a tenth of it fits, and is stored whole.
    r = requests.post(private.hook_url(wf), data=words(100_000), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert private.scalar("SELECT jsonb_array_length(params->'items') FROM webhook.events WHERE id = %s",
                          (r.json()["event_id"],)) == 100_000 // 12
    body = words(1_000_000)
    assert len(body) <= 1024 * 1024
    r = requests.post(private.hook_url(wf), data=body, timeout=30, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.headers["retry-after"], r.json()) == (503, "1", BUSY), r.text
    assert_rejection_counts(private, wf, {(503, "Listener busy, retry later"): 1})
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1
    # The budget is given back: the small body is still stored after it.
    r = requests.post(private.hook_url(wf), data=words(100_000), timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
