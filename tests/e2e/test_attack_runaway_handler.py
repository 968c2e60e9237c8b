"""Issue 6 (found in review): a handler that traps its cancel cannot hold the
listener. Past its deadline it is cancelled again every 100 ms, and 1 s after
the deadline the listener's watchdog ends it (FATAL): that batch is not
committed, its callers see the connection close, and the postmaster restarts
the listener, so every other owner is answered again within seconds instead
of waiting for the runaway handler.

alice's handler swallows cancels for up to 8 s (bounded so the test ends).
"""

import threading
import time

import requests

from hookkit import set_response
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)

STUBBORN = """
CREATE FUNCTION {s}.stubborn(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    WHILE clock_timestamp() < t0 + interval '8 s' LOOP
        BEGIN
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
    RETURN '{{"finished": true}}';
END $h$"""


tenants = tenants_fixture('alice', 'bob')

def test_a_handler_swallowing_its_cancel_does_not_stall_other_owners(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    alice.sql(STUBBORN.format(s=alice.name))
    wf_a = alice.create_workflow(handler=f"{alice.name}.stubborn")
    set_response(private, wf_a, "workflow", user=alice.name, timeout="300 ms")
    wf_b = bob.create_workflow()
    listener_before = private.listener_pids()

    # Positive control: bob alone is answered at once.
    t0 = time.monotonic()
    assert requests.post(private.hook_url(wf_b), json={}, timeout=10).status_code == 200
    assert time.monotonic() - t0 < 1

    result = {}

    def alice_request():
        try:
            result["alice"] = requests.post(private.hook_url(wf_a), json={}, timeout=20).status_code
        except requests.ConnectionError:
            result["alice"] = "closed"

    t = threading.Thread(target=alice_request)
    started = time.monotonic()
    t.start()
    t.join(timeout=20)
    alice_took = time.monotonic() - started
    # Ended 1 s after its 300 ms deadline (plus the watchdog's tick), not after 8 s;
    # nothing of its batch was committed.
    assert result.get("alice") == "closed", result
    assert alice_took < 4, alice_took
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf_a,)) == 0

    # bob is answered again as soon as the listener is back (a sender retries).
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        try:
            status = requests.post(private.hook_url(wf_b), json={}, timeout=5).status_code
        except requests.ConnectionError:
            status = "closed"
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200
    assert time.monotonic() - started < 8, "bob waited as long as alice's handler ran"
    assert private.listener_pids() != listener_before
    assert "webhook_ext listener" in private.log()
