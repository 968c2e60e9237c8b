"""Refused requests leave a trace for the workflow's owner.

Every refusal of a request to an existing workflow (400, 404 while disabled,
405, 408, 413, 415, ...) is counted per status and reason in
webhook.rejection_counts, and the newest webhook.rejections_kept of them are
kept in webhook.rejections with their time, headers and the first 4 kB of the
body; both tables are visible to the owner only.
"""

import time

import requests

from hookkit import http_request_bytes, post, raw_exchange, wait_for_rows
from tenantkit import private_cluster_fixture, tenants_fixture

MISSING = "Missing required parameter(s)"

private = private_cluster_fixture(**{"webhook.rejections_kept": 3, "webhook.max_body_size": "64kB"})

tenants = tenants_fixture("alice", "bob")




def test_refusals_are_recorded_for_the_owner_only_and_trimmed(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf = alice.create_workflow()
    alice.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"order_id\": \"A1\"}')", (wf,))
    alice.sql("SELECT count(*) FROM webhook_set_required(%s, ARRAY['order_id'])", (wf,))
    # Positive control: an accepted request records nothing.
    assert post(private, wf, json_body={"order_id": "A1"}).status_code == 200

    big = "x" * 5000 + "é"
    r = post(private, wf, json_body={"note": big}, headers={"X-Sender": "shop-1"})
    assert (r.status_code, r.json()) == (400, {"msg": MISSING, "missing": ["order_id"]})
    # A refusal is answered at once and recorded in the same batch transaction.
    rows = wait_for_rows(private, "SELECT status, reason, method, headers, body_prefix FROM webhook.rejections "
                         "WHERE workflow_id = %s", (wf,), 1)
    assert alice.rows("SELECT status, reason, method, headers, body_prefix FROM webhook.rejections") == rows
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["reason"], row["method"]) == (400, MISSING, "POST")
    assert row["headers"]["x-sender"] == "shop-1"
    assert len(row["body_prefix"].encode()) == 4096
    assert row["body_prefix"].startswith('{"note": "xxx')

    r = post(private, wf, b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = requests.put(private.hook_url(wf), json={}, timeout=10)
    assert r.status_code == 405
    r = post(private, wf, b"x", headers={"Content-Encoding": "br", "Content-Type": "text/plain"})
    assert r.status_code == 415
    # Over the size limit, refused before the body is read.
    head = http_request_bytes("POST", f"/hooks/{wf}", private.http_port,
                              headers={"Content-Type": "application/json", "Content-Length": str(200_000)})
    assert raw_exchange(private.http_port, head, timeout=5).status == 413
    alice.sql("SELECT webhook_disable_workflow(%s)", (wf,))
    assert post(private, wf, json_body={"order_id": "late"}).status_code == 404
    alice.sql("SELECT webhook_enable_workflow(%s)", (wf,))

    counts = wait_for_rows(private, "SELECT status, reason, count FROM webhook.rejection_counts "
                           "WHERE workflow_id = %s ORDER BY status, reason", (wf,), 6)
    assert [(c["status"], c["count"]) for c in counts] == [
        (400, 1), (400, 1), (404, 1), (405, 1), (413, 1), (415, 1)]
    reasons = {c["status"]: c["reason"] for c in counts}
    assert reasons[404] == "Workflow not found"
    assert reasons[405] == "Method not allowed"
    assert reasons[413] == "Request body too large"
    # Counted by category: the detail after ": " may echo the request.
    assert reasons[415] == "Unsupported Content-Encoding"
    assert sorted(c["reason"] for c in counts if c["status"] == 400) == ["Invalid JSON body", MISSING]
    # The record itself keeps the whole message.
    assert alice.scalar("SELECT reason FROM webhook.rejections WHERE workflow_id = %s AND status = 415",
                        (wf,)) == "Unsupported Content-Encoding: br"
    # Only the newest webhook.rejections_kept (3) are kept; the counts are not trimmed.
    kept = alice.rows("SELECT status FROM webhook.rejections WHERE workflow_id = %s ORDER BY id", (wf,))
    assert [k["status"] for k in kept] == [415, 413, 404]
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1

    # Another owner sees none of it; a workflow that does not exist records nothing.
    time.sleep(0.3)
    assert bob.scalar("SELECT count(*) FROM webhook.rejections") == 0
    assert bob.scalar("SELECT count(*) FROM webhook.rejection_counts") == 0
    before = private.scalar("SELECT count(*) FROM webhook.rejection_counts")
    assert post(private, "00000000-0000-4000-8000-000000000000", json_body={}).status_code == 404
    assert private.scalar("SELECT count(*) FROM webhook.rejection_counts") == before
    err = bob.error("DELETE FROM webhook.rejections", sqlstate="42501")
    assert err["message"] == "permission denied for table rejections"
