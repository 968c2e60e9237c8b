"""Under attack, good requests still pass.

For a few seconds one listener process takes slowloris connections, header
floods, forged signatures at the highest rate four connections reach, and
gzip decompression bombs (tests/e2e/attackkit.py), while a legitimate sender
delivers GitHub-signed requests on its own connection. Every legitimate
request gets 200 and is stored once; every attack request gets its exact
refusal and stores nothing (a bomb, unsigned like every forged request, is
refused before it is decompressed); the listener keeps its pid. Timings are reported
by bench/attack.sh, not asserted here.
"""

from __future__ import annotations

import time

import attackkit
from hookkit import wait_for_value, wait_ready

SECRET = b"attack-test-secret"


def test_good_requests_pass_during_an_attack(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1, "webhook.header_timeout": "2s",
                           "webhook.max_body_size": "1MB"})
    c.sql("CREATE EXTENSION webhook_ext")
    c.sql("CREATE FUNCTION public.h(e webhook.events) RETURNS void LANGUAGE sql AS 'SELECT 1'")
    wf = str(c.scalar("SELECT id FROM webhook_create_workflow('under-attack', 'public.h')"))
    wait_ready(c)
    [pid] = c.listener_pids()

    # Positive control: before verification is set, a forged request is an event.
    control = attackkit.Outcome()
    attackkit.forged(c.http_port, f"/hooks/{wf}", time.monotonic() + 0.2, control)
    assert set(control.statuses["forged"]) == {200}
    c.sql("SELECT webhook_delete_events(%s)", (wf,))

    c.sql("SELECT webhook_set_verification(%s, 'github', secret => %s)", (wf, SECRET.decode()))
    out = attackkit.run(c.http_port, wf, SECRET, seconds=5, bomb_bytes=4 * 1024 * 1024)

    legit = out.statuses["legitimate"]
    assert set(legit) == {200} and legit[200] > 0, out.statuses
    assert set(out.statuses["forged"]) == {401}, out.statuses
    assert set(out.statuses["decompression bomb"]) == {401}, out.statuses
    assert set(out.statuses["header flood (one huge header)"]) == {431}, out.statuses
    assert set(out.statuses["header flood (400 headers)"]) == {431}, out.statuses
    # Slow heads are cut off by webhook.header_timeout.
    assert out.statuses["slowloris"]["closed by listener"] > 0, out.statuses

    stored = c.rows("SELECT id, params->>'order_id' AS order_id FROM webhook.events WHERE workflow_id = %s "
                    "ORDER BY id", (wf,))
    assert [r["id"] for r in stored] == sorted(out.legit_event_ids)
    assert all(r["order_id"].startswith("legit-") for r in stored)
    forged = out.statuses["forged"][401] + out.statuses["decompression bomb"][401]
    wait_for_value(lambda: c.scalar(
        "SELECT coalesce(sum(count), 0) FROM webhook.rejection_counts WHERE workflow_id = %s AND status = 401",
        (wf,)), forged, timeout=5, what="401s counted")
    assert c.rows("SELECT reason, count FROM webhook.rejection_counts WHERE workflow_id = %s AND status = 401",
                  (wf,)) == [{"reason": "Invalid signature: signature does not match", "count": forged}]
    # A flood of refusals is counted whole but kept in full at most 10 per
    # workflow and second (one listener process here).
    per_second = c.rows("SELECT count(*) AS n FROM webhook.rejections WHERE workflow_id = %s AND status = 401 "
                        "GROUP BY date_trunc('second', received_at)", (wf,))
    assert max(r["n"] for r in per_second) == 10
    assert c.listener_pids() == [pid]
