"""Issue 6 item 3 (found in review): state one handler leaves in the batch transaction reaches the next
owner's handler in the same batch (the listener commits many requests in one
transaction and only discards cursors, session advisory locks, prepared
statements, LISTENs and sequence caches between handlers; GUCs are reverted).

* ``SET CONSTRAINTS ALL DEFERRED`` is transaction state, not a GUC, and it
  survives the release of the handler's subtransaction: every later handler
  in the batch that writes a table with a DEFERRABLE (INITIALLY IMMEDIATE)
  constraint fails with "cannot fire deferred trigger within
  security-restricted operation".
* Large-object descriptors (``lo_open``) live until the end of the
  transaction: the next owner's handler can ``loread``/``lowrite`` a
  descriptor another owner opened, without any privilege on the object.

Requests are put into one batch by first keeping the (single) listener busy
with carol's slow handler; each test checks (positive control) that the two
events were committed by the same transaction (same commit timestamp).
"""

import threading
import time

import pytest
import requests

from conftest import uniq
from tenantkit import drop_tenants, make_tenant, private_cluster_fixture


# Commit timestamps tell whether two events were committed by one batch.
private = private_cluster_fixture(track_commit_timestamp=True)

@pytest.fixture
def tenants(private):
    names = {k: uniq(k) for k in ("alice", "bob", "carol")}
    made = {k: make_tenant(private, n) for k, n in names.items()}
    c = made["carol"]
    c.sql(f"CREATE FUNCTION {c.name}.slow(e webhook.events) RETURNS void LANGUAGE sql "
          f"AS $h$ SELECT pg_sleep(0.8) $h$")
    try:
        yield made
    finally:
        drop_tenants(private, names.values())


def post_in_one_batch(private, slow_wf, wfs):
    """POSTs slow_wf, then (while its handler sleeps) each of wfs, so that wfs
    are queued and processed in the next batch, in order."""
    results = {}

    def send(key, wf):
        r = requests.post(private.hook_url(wf), json={}, timeout=20)
        results[key] = r.status_code

    threads = [threading.Thread(target=send, args=("slow", slow_wf))]
    threads[0].start()
    time.sleep(0.25)
    for i, wf in enumerate(wfs):
        t = threading.Thread(target=send, args=(i, wf))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=30)
    return results


def last_event(private, wf):
    return private.row("SELECT id, status, error, pg_xact_commit_timestamp(xmin) AS committed FROM webhook.events "
                       "WHERE workflow_id = %s ORDER BY id DESC LIMIT 1", (wf,))


def run_in_one_batch(private, slow_wf, first, second):
    """Retries (bounded) until first's and second's events share a transaction."""
    for _ in range(3):
        post_in_one_batch(private, slow_wf, [first, second])
        a, b = last_event(private, first), last_event(private, second)
        if a and b and a["committed"] == b["committed"]:
            return a, b
    pytest.fail("could not get both requests into one batch")


def test_set_constraints_of_one_handler_does_not_reach_the_next_owners_handler(private, tenants):
    alice, bob, carol = tenants["alice"], tenants["bob"], tenants["carol"]
    a, b = alice.name, bob.name
    alice.sql(f"""CREATE FUNCTION {a}.defer(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                  BEGIN SET CONSTRAINTS ALL DEFERRED; RETURN 'ok'; END $h$""")
    bob.sql(f"CREATE TABLE {b}.parent (id int PRIMARY KEY)")
    bob.sql(f"INSERT INTO {b}.parent VALUES (1)")
    bob.sql(f"CREATE TABLE {b}.child (pid int REFERENCES {b}.parent DEFERRABLE INITIALLY IMMEDIATE)")
    bob.sql(f"""CREATE FUNCTION {b}.write(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                BEGIN INSERT INTO {b}.child VALUES (1); RETURN 'ok'; END $h$""")
    slow = carol.create_workflow(handler=f"{carol.name}.slow")
    wf_a = alice.create_workflow(handler=f"{a}.defer")
    wf_b = bob.create_workflow(handler=f"{b}.write")

    # Positive control: bob's handler works on its own (and in a batch after carol's).
    post_in_one_batch(private, slow, [wf_b])
    assert last_event(private, wf_b)["status"] == "succeeded"

    ev_a, ev_b = run_in_one_batch(private, slow, wf_a, wf_b)
    # SET CONSTRAINTS is refused inside handlers: there is no undoing it for
    # the rest of the batch.
    assert (ev_a["status"], ev_a["error"]) == (
        "failed", "42501: SET CONSTRAINTS is not allowed in a webhook handler")
    assert (ev_b["status"], ev_b["error"]) == ("succeeded", None), \
        f"alice's SET CONSTRAINTS broke bob's handler: {ev_b}"


def test_large_object_descriptor_of_one_owner_is_not_usable_by_the_next(private, tenants):
    alice, bob, carol = tenants["alice"], tenants["bob"], tenants["carol"]
    a, b = alice.name, bob.name
    lo = alice.scalar("SELECT lo_from_bytea(0, 'alice-secret')")
    # alice's handler reads its own large object and forgets lo_close.
    alice.sql(f"""CREATE FUNCTION {a}.peek(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                  BEGIN PERFORM lo_open({lo}, 262144); RETURN 'ok'; END $h$""")
    bob.sql(f"CREATE TABLE {b}.loot (t text)")
    bob.sql(f"GRANT INSERT ON {b}.loot TO PUBLIC")
    bob.sql(f"""CREATE FUNCTION {b}.grab(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                BEGIN INSERT INTO {b}.loot SELECT encode(loread(0, 100), 'escape'); RETURN 'ok'; END $h$""")
    slow = carol.create_workflow(handler=f"{carol.name}.slow")
    wf_a = alice.create_workflow(handler=f"{a}.peek")
    wf_b = bob.create_workflow(handler=f"{b}.grab")

    # Positive control: bob has no right to alice's large object.
    bob.error(f"SELECT lo_get({lo})", sqlstate="42501")

    ev_a, ev_b = run_in_one_batch(private, slow, wf_a, wf_b)
    assert ev_a["status"] == "succeeded"
    loot = [r[0] for r in private.sql(f"SELECT t FROM {b}.loot")]
    assert loot == [], f"bob read alice's large object through her descriptor: {loot}"
    assert ev_b["status"] == "failed" and ev_b["error"].startswith("42704"), ev_b
