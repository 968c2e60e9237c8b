"""Issues 7 and 8 (found in review): the rejection log and delivery keys stay bounded:
reasons that echo the request do not add count rows, and a numeric delivery key
longer than 512 bytes is no key."""

import random
import time


from hookkit import post, wait_for_rows
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.rejections_kept": 5})
tenants = tenants_fixture("alice", "bob")




def test_rejection_counts_are_bounded_when_the_reason_echoes_client_input(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    # Positive control: the same malformed body twice is one counted reason.
    for _ in range(2):
        assert post(private, wf, b"{broken", headers={"Content-Type": "application/json"}).status_code == 400
    rows = wait_for_rows(private, "SELECT reason, count FROM webhook.rejection_counts WHERE workflow_id=%s", (wf,), 1)
    assert [r["count"] for r in rows] == [2]
    # An anonymous client varies the echoed part of the message.
    n = 60
    for i in range(n):
        body = ('{"a": 1e%d}' % (200000 + i)).encode()
        assert post(private, wf, body, headers={"Content-Type": "application/json"}).status_code == 400
        body = (" " * i + "{x").encode()
        assert post(private, wf, body, headers={"Content-Type": "application/json"}).status_code == 400
        body = ("<r>&e%d;</r>" % i).encode()
        assert post(private, wf, body, headers={"Content-Type": "application/xml"}).status_code == 400
    time.sleep(1.0)
    rows = private.rows("SELECT reason FROM webhook.rejection_counts WHERE workflow_id=%s ORDER BY reason", (wf,))
    print(len(rows), [r["reason"] for r in rows[:3]], [r["reason"] for r in rows[-3:]])
    # 181 requests; rejections is trimmed to 5, the counts should stay a
    # handful of reasons, not one row per distinct request.
    assert len(rows) <= 20, f"{len(rows)} rejection_counts rows for one workflow"


def test_numeric_body_key_longer_than_max_key_bytes_is_no_key(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    alice.sql("SELECT webhook_set_delivery_key(%s, 'body', 'id', '1 day')", (wf,))
    # Positive control: a short numeric key dedups.
    r1 = post(private, wf, json_body={"id": 12345})
    r2 = post(private, wf, json_body={"id": 12345})
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json()
    # A 600-char string key is "no key at all": stored.
    r = post(private, wf, json_body={"id": "7" * 600})
    assert r.status_code == 200, r.text
    # The same for a number of 5000 digits (arbitrary_precision keeps them all).
    rnd = random.Random(7)
    digits = "9" + "".join(rnd.choice("0123456789") for _ in range(4999))
    r = post(private, wf, ('{"id": %s}' % digits).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    keys = private.rows("SELECT length(key) AS n FROM webhook.deliveries WHERE workflow_id=%s", (wf,))
    assert all(k["n"] <= 512 for k in keys), keys
