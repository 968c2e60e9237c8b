"""No tenant can stall the listener with a lock.

Tenants (webhook_admin) hold no privilege that allows LOCK TABLE on the
extension's tables beyond ROW EXCLUSIVE; a change to a workflow signals the
listeners without locking anything; and the listener waits at most
webhook.lock_timeout for a lock someone else holds, answering that request
503 with Retry-After and storing nothing for it.
"""

import threading
import time

import pytest

from hookkit import post
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)

TABLES = ["webhook.events", "webhook.workflows", "webhook.parameters", "webhook.config_version"]


tenants = tenants_fixture('alice', 'bob')

def count_events(private, wf):
    return private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,))


@pytest.mark.parametrize("table", TABLES)
def test_a_lock_on_an_extension_table_costs_one_503_not_a_stall_and_tenants_cannot_take_it(
        private, tenants, table):
    alice, bob = tenants["alice"], tenants["bob"]
    wf = bob.create_workflow()
    # Positive control: an ACCESS EXCLUSIVE lock on the table is what would
    # hold the listener up (a superuser may take it): the request waits no
    # longer than webhook.lock_timeout, is told to retry, and nothing is stored.
    with private.connect(autocommit=False) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        r = post(private, wf, json_body={"n": 1}, timeout=10)
        waited = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert waited < 5, waited
        holder.rollback()
    assert count_events(private, wf) == 0
    r = post(private, wf, json_body={"n": 2})
    assert r.status_code == 200, r.text
    assert count_events(private, wf) == 1

    # A tenant cannot take that lock, nor any mode that conflicts with the
    # listener's writes.
    for mode in ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE"):
        with alice.connect(autocommit=False) as conn:
            with pytest.raises(Exception) as caught:
                conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
            assert caught.value.diag.sqlstate == "42501", (mode, caught.value)
            assert caught.value.diag.message_primary == f"permission denied for table {table.split('.')[1]}"


def test_an_open_workflow_change_holds_up_no_other_owner(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf_alice = alice.create_workflow()
    wf_bob = bob.create_workflow()
    bob.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"a\": 1}')", (wf_bob,))
    with alice.connect(autocommit=False) as conn:
        conn.execute("SELECT webhook_set_response(%s, 'custom', body => 'changed', content_type => 'text/plain')",
                     (wf_alice,))
        conn.execute("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"x\": 1}')", (wf_alice,))
        # Positive control: alice's open change holds her workflow row; a
        # plain session that wants to share-lock it would wait.
        err = private.sql_error("SELECT id FROM webhook.workflows WHERE id = %s FOR SHARE NOWAIT", (wf_alice,),
                                sqlstate="55P03")
        assert err["message"] == 'could not obtain lock on row in relation "workflows"'
        # While alice's transaction stays open: bob's requests, bob's own
        # changes and a capture of bob's (which writes parameters) all go on.
        r = post(private, wf_bob, json_body={"a": 1}, timeout=5)
        assert r.status_code == 200, r.text
        bob.sql("SELECT webhook_set_response(%s, 'custom', body => 'bob', content_type => 'text/plain')", (wf_bob,))
        r = post(private, wf_bob, json_body={"a": 2}, timeout=5)
        assert (r.status_code, r.text) == (200, "bob")
        bob.sql("SELECT webhook_capture_sample(%s)", (wf_bob,))
        r = post(private, wf_bob, json_body={"captured": True}, timeout=5)
        assert (r.status_code, r.json()["msg"]) == (200, "Sample captured")
        # alice's own workflow keeps its committed settings meanwhile.
        r = post(private, wf_alice, json_body={}, timeout=5)
        assert (r.status_code, r.json()["msg"]) == (200, "success")
        conn.commit()
    r = post(private, wf_alice, json_body={})
    assert (r.status_code, r.text) == (200, "changed")


def test_an_owner_locking_its_own_workflow_row_gets_503s_others_do_not_notice(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf_alice = alice.create_workflow()
    wf_bob = bob.create_workflow()
    results = {}

    def send(key, wf):
        results[key] = post(private, wf, json_body={"k": key}, timeout=10)

    with alice.connect(autocommit=False) as conn:
        # Positive control: a tenant may lock its own row (FOR UPDATE needs
        # only its column-level UPDATE privilege), which blocks event inserts.
        conn.execute("SELECT id FROM webhook.workflows WHERE id = %s FOR UPDATE", (wf_alice,))
        # A plain session cannot take the KEY SHARE lock an event's foreign
        # key takes on alice's row, and can on bob's.
        err = private.sql_error("SELECT id FROM webhook.workflows WHERE id = %s FOR KEY SHARE NOWAIT",
                                (wf_alice,), sqlstate="55P03")
        assert err["message"] == 'could not obtain lock on row in relation "workflows"'
        assert private.sql("SELECT id::text FROM webhook.workflows WHERE id = %s FOR KEY SHARE NOWAIT",
                           (wf_bob,)) == [(wf_bob,)]
        threads = [threading.Thread(target=send, args=(k, w))
                   for k, w in (("alice", wf_alice), ("bob", wf_bob))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        conn.rollback()
    assert results["alice"].status_code == 503, results["alice"].text
    assert results["alice"].headers["Retry-After"] == "1"
    assert results["alice"].json() == {"msg": "Workflow busy, retry later"}
    assert results["bob"].status_code == 200, results["bob"].text
    assert count_events(private, wf_alice) == 0
    assert count_events(private, wf_bob) == 1
    r = post(private, wf_alice, json_body={})
    assert (r.status_code, r.json()["msg"]) == (200, "success"), r.text
    assert count_events(private, wf_alice) == 1


def test_tenants_cannot_signal_config_changes_themselves(private, tenants):
    alice = tenants["alice"]
    everything = private.scalar("SELECT 'webhook.config_version'::regclass::oid")
    # Positive control: the signal is what makes the listeners reload. A
    # change written with triggers off (no signal, no note of which workflow
    # changed) is not seen until a superuser signals that everything may
    # have changed.
    wf0 = alice.create_workflow(name="signalled")
    assert post(private, wf0, json_body={}).json()["msg"] == "success"
    with private.connect() as su:
        su.execute("SET session_replication_role = replica")
        su.execute("UPDATE webhook.workflows SET response_method = 'custom', response_body = 'unsignalled', "
                   "response_content_type = 'text/plain' WHERE id = %s", (wf0,))
    assert post(private, wf0, json_body={}).json()["msg"] == "success"
    private.sql("SELECT webhook._signal_config_change(%s::oid)", (everything,))
    r = post(private, wf0, json_body={})
    assert (r.status_code, r.text) == (200, "unsignalled")
    err = alice.error("SELECT webhook._signal_config_change(%s::oid)", (everything,), sqlstate="42501")
    assert err["message"] == "permission denied for function _signal_config_change"
    # Positive control: her own changes still reach the listener at once.
    wf = alice.create_workflow()
    assert post(private, wf, json_body={}).json()["msg"] == "success"
    alice.sql("SELECT webhook_set_response(%s, 'custom', body => 'changed', content_type => 'text/plain')", (wf,))
    r = post(private, wf, json_body={})
    assert (r.status_code, r.text) == (200, "changed")
