"""What a tenant (a webhook_admin member, not a superuser) can do with the
surfaces of handshakes and per-method verification: only to its own
workflows. webhook.handshakes is written by the listener alone and read by
each workflow's owner; a tenant sets neither another tenant's handshake nor
its per-method verification, directly or through the API.
"""

import requests

from hookkit import wait_for_value
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture()
tenants = tenants_fixture("alice", "bob")


def test_a_tenant_reaches_only_its_own_handshakes_and_method_verifications(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf = alice.create_workflow(name="alices")
    # Positive control: the owner sets both, and sees the count of an answer.
    alice.sql("SELECT webhook_set_handshake(%s, 'dropbox')", (wf,))
    alice.sql("SELECT webhook_set_verification(%s, 'meta-verify-token', secret => 'tok', for_method => 'GET')",
              (wf,))
    r = requests.get(private.hook_url(wf), params={"challenge": "c1"}, timeout=10)
    assert (r.status_code, r.text) == (200, "c1")
    wait_for_value(lambda: alice.rows("SELECT answered FROM webhook.handshakes"), [{"answered": 1}], 5,
                   what="alice's handshake counted")

    # bob: not through the API,
    bob.error("SELECT webhook_set_handshake(%s, NULL)", (wf,), sqlstate="42704")
    bob.error("SELECT webhook_set_verification(%s, 'none', for_method => 'GET')", (wf,), sqlstate="42704")
    with bob.connect() as conn:
        # nor directly: the rows are not his to see or change,
        assert conn.execute("UPDATE webhook.workflows SET handshake = NULL WHERE id = %s", (wf,)).rowcount == 0
        assert conn.execute("SELECT * FROM webhook.handshakes").fetchall() == []
        assert conn.execute("SELECT * FROM webhook.verifications").fetchall() == []
    # and the table is the listener's to write.
    bob.error("INSERT INTO webhook.handshakes VALUES (%s, 'slack', 1, now(), 'GET', NULL)", (wf,),
              sqlstate="42501")
    bob.error("INSERT INTO webhook.verifications (workflow_id, method, scheme, secrets) "
              "VALUES (%s, 'GET', 'none', '{}')", (wf,), sqlstate="42501")
    alice.error("UPDATE webhook.handshakes SET answered = 0", sqlstate="42501")
    assert private.row("SELECT handshake FROM webhook.workflows WHERE id = %s", (wf,)) == {"handshake": "dropbox"}
    assert private.rows("SELECT method, scheme FROM webhook.verifications WHERE workflow_id = %s", (wf,)) == [
        {"method": "GET", "scheme": "meta-verify-token"}]
