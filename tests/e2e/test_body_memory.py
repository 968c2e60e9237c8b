"""What one request body can cost a listener's memory.

A 23 kB gzip body that decodes to a 24 MB JSON array of 12 million zeros
would take over a gigabyte as parsed values. The listener reads, decompresses
and parses nothing for a workflow that does not take requests; checks a
signature over the raw body before it decodes anything; and refuses (413) a
body whose parameters would take more memory than a small multiple of its
decoded size, before it builds them. Each test measures the listener
process's peak memory (VmHWM) around the attack, on a freshly started
listener, and first shows that the measurement sees a body being decoded.
"""

import gzip
import hashlib
import hmac
import uuid

import requests

from hookkit import assert_rejection_counts, wait_ready, wait_until
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture()
tenants = tenants_fixture("alice")

MIB = 1024 * 1024
ZEROS = b"[" + b"0," * (12_000_000 - 1) + b"0]"  # 24 MB of JSON, 12 million values
BOMB = gzip.compress(ZEROS, 9)
# What the listener may take for a body it decodes and refuses: docs/limits.md's
# bound (three times the decoded size, plus a constant for the process).
DECODED_BOUND = 3 * len(ZEROS) + 16 * MIB
# A body that is never decoded costs what was sent, and the request itself.
UNREAD_BOUND = 4 * MIB
TOO_MANY_VALUES = "Request body too large: its parameters would take more than"


def listener_pid(cluster) -> int | None:
    """The one listener's pid (None while it restarts)."""
    rows = cluster.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener'")
    assert len(rows) <= 1, rows
    return rows[0]["pid"] if rows else None


def peak_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def fresh_listener(cluster, warm_up: str) -> int:
    """Restarts the listener (the postmaster starts a new one 1 s after it
    ends), so that its peak memory starts low, and warms it up with one
    ordinary request to ``warm_up``; returns its pid."""
    old = listener_pid(cluster)
    assert cluster.scalar("SELECT pg_terminate_backend(%s, 5000)", (old,)) is True
    wait_until(lambda: listener_pid(cluster), until=lambda pid: pid not in (None, old), timeout=30,
               what=f"a new listener after ending {old}")
    wait_ready(cluster)
    r = requests.post(cluster.hook_url(warm_up), json={"warm": "up"}, timeout=10)
    assert r.status_code == 200, r.text
    return listener_pid(cluster)


def send_bomb(cluster, wf, headers=None) -> requests.Response:
    return requests.post(cluster.hook_url(wf), data=BOMB, timeout=60, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip", **(headers or {})})


def test_the_bomb_is_small_on_the_wire_and_huge_decoded():
    assert len(BOMB) < 30_000 and len(ZEROS) == 24_000_001


def test_a_compressed_bomb_to_an_unknown_workflow_is_never_decompressed(private, tenants):
    wf = tenants["alice"].create_workflow()
    pid = fresh_listener(private, wf)
    before = peak_bytes(pid)
    r = send_bomb(private, uuid.uuid4())
    assert (r.status_code, r.json()) == (404, {"msg": "Workflow not found"})
    unknown_rise = peak_bytes(pid) - before
    # Positive control: the same bytes to a workflow that exists are
    # decompressed (24 MB, which the peak shows) and refused for what their
    # values would take, within the bound.
    r = send_bomb(private, wf)
    assert r.status_code == 413 and r.json()["msg"].startswith(TOO_MANY_VALUES), r.text
    decoded_rise = peak_bytes(pid) - before
    assert unknown_rise < UNREAD_BOUND, unknown_rise
    assert len(ZEROS) < decoded_rise < DECODED_BOUND, decoded_rise
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1


def test_a_compressed_bomb_to_a_disabled_workflow_is_never_decompressed(private, tenants):
    alice = tenants["alice"]
    wf, other = alice.create_workflow(name="disabled"), alice.create_workflow(name="other")
    pid = fresh_listener(private, other)
    alice.sql("SELECT webhook_disable_workflow(%s)", (wf,))
    before = peak_bytes(pid)
    r = send_bomb(private, wf)
    assert (r.status_code, r.json()) == (404, {"msg": "Workflow not found"})
    assert peak_bytes(pid) - before < UNREAD_BOUND
    # Still recorded for its owner, as any refusal of a disabled workflow is.
    assert_rejection_counts(private, wf, {(404, "Workflow not found"): 1})
    # Positive control: enabled again, the same bytes are decompressed.
    alice.sql("SELECT webhook_enable_workflow(%s)", (wf,))
    r = send_bomb(private, wf)
    assert r.status_code == 413 and r.json()["msg"].startswith(TOO_MANY_VALUES), r.text
    assert len(ZEROS) < peak_bytes(pid) - before < DECODED_BOUND


def test_a_forged_bomb_is_refused_before_it_is_decompressed(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="signed")
    alice.sql("SELECT webhook_set_verification(%s, 'github', secret => 'It''s a Secret to Everybody')", (wf,))
    signature = "sha256=" + hmac.new(b"It's a Secret to Everybody", BOMB, hashlib.sha256).hexdigest()
    good = {"X-Hub-Signature-256": signature}
    small = b'{"warm": "up"}'
    pid = fresh_listener(private, alice.create_workflow(name="other"))
    before = peak_bytes(pid)
    r = send_bomb(private, wf, {"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert (r.status_code, r.json()) == (401, {"msg": "Invalid signature"})
    assert peak_bytes(pid) - before < UNREAD_BOUND
    # Positive control: signed, the same body is decompressed and then refused
    # for its values; a small signed body is stored.
    r = send_bomb(private, wf, good)
    assert r.status_code == 413 and r.json()["msg"].startswith(TOO_MANY_VALUES), r.text
    assert len(ZEROS) < peak_bytes(pid) - before < DECODED_BOUND
    r = requests.post(private.hook_url(wf), data=small, timeout=10, headers={
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(b"It's a Secret to Everybody", small,
                                                    hashlib.sha256).hexdigest()})
    assert r.status_code == 200, r.text
    assert_rejection_counts(private, wf, {(401, "Invalid signature: signature does not match"): 1,
                                          (413, "Request body too large"): 1})


def test_values_are_bounded_by_the_decoded_size_not_only_by_its_text(private, tenants):
    wf = tenants["alice"].create_workflow()
    dense = b"[" + b"0," * 999_999 + b"0]"  # 2 MB, a million values
    r = requests.post(private.hook_url(wf), data=dense, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["msg"].startswith(TOO_MANY_VALUES), r.text
    # Positive control: the same size in a few long values is stored whole.
    words = ["x" * 1000] * 2000
    r = requests.post(private.hook_url(wf), json={"words": words}, timeout=30)
    assert r.status_code == 200, r.text
    stored = private.scalar("SELECT jsonb_array_length(params->'words') FROM webhook.events "
                            "WHERE id = %s", (r.json()["event_id"],))
    assert stored == 2000
