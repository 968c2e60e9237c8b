"""A lock on a rejection record must not stall the batch (records are best
effort, with a 1 ms lock_timeout).

Another listener process's open batch holds the rejection_counts row of
(workflow, status, reason) it just incremented, and the rejections rows its
trimming DELETE removed, until it commits (for as long as any handler in that
batch runs). Simulated here with a superuser transaction holding those locks.
"""

import threading
import time

import requests

from hookkit import post, wait_for_value
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.rejections_kept": 3, "webhook.lock_timeout": "200ms"})
tenants = tenants_fixture("alice", "bob")


def fire(private, alice_wf, bob_wf, n=10):
    out = {}

    def rej(i):
        t = time.monotonic()
        r = requests.post(private.hook_url(alice_wf), data=b"{broken",
                          headers={"Content-Type": "application/json"}, timeout=30)
        out[f"rej{i}"] = (r.status_code, time.monotonic() - t)

    def ok():
        time.sleep(0.05)
        t = time.monotonic()
        r = requests.post(private.hook_url(bob_wf), json={"x": 1}, timeout=30)
        out["bob"] = (r.status_code, time.monotonic() - t)

    ts = [threading.Thread(target=rej, args=(i,)) for i in range(n)] + [threading.Thread(target=ok)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    return out


def test_a_held_rejection_count_row_does_not_stall_other_tenants(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wa, wb = alice.create_workflow(), bob.create_workflow()
    r = post(private, wa, b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    reason = r.json()["msg"]
    counted = ("SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s")
    wait_for_value(lambda: private.rows(counted, (wa,)), [{"status": 400, "reason": "Invalid JSON body",
                                                             "count": 1}], 5, what="first rejection counted")
    # Positive control: nothing held, everything is quick.
    out = fire(private, wa, wb)
    print("free", out)
    assert out["bob"][0] == 200 and out["bob"][1] < 0.5
    with private.connect() as conn:
        conn.execute("BEGIN")
        held = conn.execute("UPDATE webhook.rejection_counts SET count = count WHERE workflow_id = %s", (wa,))
        assert held.rowcount == 1
        # Positive control: the row is really held; a plain session that
        # wants it would wait.
        err = private.sql_error("SELECT count FROM webhook.rejection_counts WHERE workflow_id = %s "
                                "FOR UPDATE NOWAIT", (wa,), sqlstate="55P03")
        assert err["message"] == 'could not obtain lock on row in relation "rejection_counts"'
        out = fire(private, wa, wb)
        conn.execute("ROLLBACK")
    print("held", out)
    slowest = max(v[1] for k, v in out.items() if k.startswith("rej"))
    assert out["bob"][0] == 200
    assert out["bob"][1] < 0.5, f"bob waited {out['bob'][1]:.2f}s behind alice's rejection records"
    assert slowest < 0.5, f"a 400 took {slowest:.2f}s"
    assert sorted(v[0] for k, v in out.items() if k.startswith("rej")) == [400] * 10
    # The counts that could not be written while the row was held are
    # written with a later batch: none is lost (1 + 10 + 10, and one more
    # rejection to make a batch).
    assert post(private, wa, b"{broken", headers={"Content-Type": "application/json"}).json()["msg"] == reason
    wait_for_value(lambda: private.rows(counted, (wa,)), [{"status": 400, "reason": "Invalid JSON body",
                                                             "count": 22}], 5, what="every rejection counted")
