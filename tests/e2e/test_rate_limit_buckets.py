"""Rate-limit buckets cannot be pushed out by another tenant's traffic.

The buckets of webhook_set_rate_limit live in a bounded shared-memory table
(1,024 sets of 8). A tenant can make as many bucket keys as it has
rate-limited workflows. If a full set dropped its stalest bucket, a tenant
could fill the set of a victim's limited workflow with its own keys, push
the victim's bucket out, and have it start full again: the victim's 429
would become 200. Here a bucket that is still limiting is never dropped, and
which set a key falls in is a keyed hash with a key drawn at server start.

The flood does not need the hash: it sends to every one of 12,000 attacker
workflows, which puts more than 8 keys in the victim's set whichever set
that is (see FLOOD_WORKFLOWS).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from hookkit import post
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture()
tenants = tenants_fixture("victim", "attacker")

# Each request to an attacker workflow takes a token from two buckets, the
# workflow's and its per-client one (the test client's address), so 12,000
# workflows make 24,000 keys: about 23 per set of the 1,024, where 8 fill a
# set. Keys fall in sets as a uniform hash puts them, so the number that
# lands in the victim's set is about Poisson(23.4), and it is fewer than 8
# with probability about 7e-5. So whatever the hash, the victim's set
# receives more than 8 keys after the victim's own: a table that dropped its
# stalest bucket would push the victim's out.
FLOOD_WORKFLOWS = 12_000
SENDERS = 8  # threads, each with its own keep-alive connection
FLOOD_DEADLINE = 240  # seconds; on a 2-core machine it takes well under a minute

# 0.001 requests per second with a burst of 1: after one request the
# victim's bucket is empty, and it is not full again for 1,000 seconds,
# far longer than this test runs. So a 200 after the flood can only mean its
# bucket was dropped and started full again.
VICTIM_LIMIT = "rate => 0.001, burst => 1"


def create_flood_workflows(attacker) -> list[str]:
    """FLOOD_WORKFLOWS workflows of the attacker in one statement, each with a
    workflow limit and a per-client limit that refill within 10 ms: the
    attacker's own buckets are full again almost at once."""
    rows = attacker.rows(
        "SELECT w.id FROM generate_series(1, %s) AS i, "
        "LATERAL webhook_create_workflow('flood-' || i, %s::regproc) AS w, "
        "LATERAL webhook_set_rate_limit(w.id, rate => 100, burst => 1, "
        "                               per_client_rate => 100, per_client_burst => 1) AS l",
        (FLOOD_WORKFLOWS, attacker.handler))
    return [str(r["id"]) for r in rows]


def flood(cluster, workflows: list[str]) -> Counter:
    """One request to each workflow from SENDERS threads on keep-alive
    sessions; the statuses counted. Requests past FLOOD_DEADLINE are not sent
    (counted as "not sent")."""
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()
    deadline = time.monotonic() + FLOOD_DEADLINE

    def send(wf: str):
        if time.monotonic() > deadline:
            return "not sent"
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            with lock:
                sessions.append(session)
        return post(cluster, wf, json_body={}, session=session).status_code

    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            return Counter(pool.map(send, workflows))
    finally:
        for session in sessions:
            session.close()


def test_a_flood_of_other_keys_does_not_reset_a_limiting_bucket(private, tenants):
    victim, attacker = tenants["victim"], tenants["attacker"]
    limited = victim.create_workflow(name="limited")
    victim.sql(f"SELECT webhook_set_rate_limit(%s, {VICTIM_LIMIT})", (limited,))
    # A second victim workflow, limited too, that gets its first request only
    # after the flood.
    newcomer = victim.create_workflow(name="newcomer")
    victim.sql(f"SELECT webhook_set_rate_limit(%s, {VICTIM_LIMIT})", (newcomer,))
    started = time.monotonic()
    workflows = create_flood_workflows(attacker)
    assert len(set(workflows)) == FLOOD_WORKFLOWS
    created = time.monotonic()

    # Positive control: the victim's limit holds. Its bucket is taken just
    # before the flood, so every key of the flood comes after it.
    assert post(private, limited, json_body={"n": 1}).status_code == 200
    r = post(private, limited, json_body={"n": 2})
    assert (r.status_code, r.json()) == (429, {"msg": "Too many requests"}), r.text
    retry_after = int(r.headers["Retry-After"])
    assert 990 <= retry_after <= 1000

    statuses = flood(private, workflows)
    flooded = time.monotonic()
    assert statuses["not sent"] == 0, f"the flood did not finish within {FLOOD_DEADLINE} s: {statuses}"
    # The attacker's requests are answered: 200, or 429 for the few whose
    # set had no room at that moment (every other bucket in it limiting), or
    # 503 should the listener be too busy for one.
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] >= 0.9 * FLOOD_WORKFLOWS, statuses

    # The victim is still limited: its bucket was never dropped.
    r = post(private, limited, json_body={"n": 3})
    assert r.status_code == 429, (f"the victim's bucket was reset by the flood: {r.status_code} {r.text}; "
                                  f"flood statuses {statuses}")
    assert 1 <= int(r.headers["Retry-After"]) <= retry_after
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (limited,)) == 1

    # Buckets that are full again still give way: the attacker's refill
    # within 10 ms, so a new key finds room in its set after the flood, and
    # its own limit holds from there.
    time.sleep(0.1)
    assert post(private, newcomer, json_body={"n": 1}).status_code == 200
    assert post(private, newcomer, json_body={"n": 2}).status_code == 429

    print(f"created {FLOOD_WORKFLOWS} workflows in {created - started:.1f} s, "
          f"flooded in {flooded - created:.1f} s: {dict(statuses)}")
