"""Listeners and executors cache workflow definitions. A change to one
workflow (its row, its parameters, its verification) makes them reload that
workflow only, at their next batch; a TRUNCATE, or a change to functions,
schemas or roles, reloads everything. Every change is seen by the next
request, whichever way it was written.

How many times definitions are loaded is read from PostgreSQL's own
statistics: each load reads webhook.verifications once (the listener and
the executors report their table statistics at least once a second).

Each role's changing transactions are paced
(webhook.max_config_changes_per_second, 20 here, with a burst of as many):
beyond the rate, a transaction's first change waits its turn.
"""

import time

import requests

from hookkit import handler_rows, ready, recording_handler, settle  # noqa: F401
from hookkit import post as post_json
from tenantkit import private_cluster_fixture, tenants_fixture

# One executor per owner that stays for the whole test: a new executor
# process loads its owner's workflows once, which the counts would include.
private = private_cluster_fixture(**{"webhook.max_config_changes_per_second": 20,
                                     "webhook.executor_idle_timeout": "60s",
                                     "webhook.max_executors_per_owner": 1})
tenants = tenants_fixture("alice", "mallory")


def post(c, wf, body=None):
    return requests.post(c.hook_url(wf), json=body if body is not None else {}, timeout=10)


def loads(c) -> int:
    """Definition loads so far: reads of webhook.verifications, once the
    listener and its executors have reported their statistics."""
    time.sleep(1.5)
    with c.connect() as conn:
        return conn.execute("SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
                            "WHERE relid = 'webhook.verifications'::regclass").fetchone()[0]


def test_another_tenants_changes_reload_nothing_of_this_one(private, tenants):
    """mallory commits 30 changes to her own workflow, each followed by a
    request to alice's: alice's workflow used to be loaded again after every
    one of them (every change made every listener and executor reload its
    whole cache); now it is never loaded again."""
    alice, mallory = tenants["alice"], tenants["mallory"]
    wf = alice.create_workflow(name="steady")
    churn = mallory.create_workflow(name="churn")
    assert post(private, wf, {"n": 0}).status_code == 200  # cached from here on
    before = loads(private)
    for n in range(1, 31):
        mallory.sql("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
        r = post(private, wf, {"n": n})
        assert r.status_code == 200, r.text
    assert loads(private) - before == 0
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND status = 'succeeded'",
                          (wf,)) == 31
    # Positive control: a change to alice's own workflow is loaded (by the
    # listener, and by the executor that runs its handler).
    alice.sql("SELECT webhook_set_response(%s, 'custom', body => 'changed', content_type => 'text/plain')", (wf,))
    before = loads(private)
    r = post(private, wf)
    assert (r.status_code, r.text) == (200, "changed")
    assert loads(private) - before >= 1


def test_every_kind_of_change_is_seen_by_the_next_request(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="changing")
    other = alice.create_workflow(name="bystander")
    assert post(private, wf).status_code == 200
    assert post(private, other).status_code == 200
    # The workflow row.
    alice.sql("UPDATE webhook.workflows SET enabled = false WHERE id = %s", (wf,))
    assert (post(private, wf).status_code, post(private, other).status_code) == (404, 200)
    alice.sql("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (wf,))
    assert post(private, wf).status_code == 200
    # Its parameters, through the API and by direct writes.
    alice.sql("SELECT webhook_sample_from_json(%s, '{\"order_id\": \"A-1\"}'::jsonb)", (wf,))
    assert post(private, wf, {}).status_code == 200  # sampled parameters are optional
    alice.sql("SELECT webhook_set_required(%s, '{order_id}')", (wf,))
    r = post(private, wf, {})
    assert (r.status_code, r.json()["missing"]) == (400, ["order_id"]), r.text
    alice.sql("UPDATE webhook.parameters SET required = false WHERE workflow_id = %s", (wf,))
    assert post(private, wf, {}).status_code == 200
    alice.sql("UPDATE webhook.parameters SET required = true WHERE workflow_id = %s", (wf,))
    assert post(private, wf, {}).status_code == 400
    # Its verification.
    alice.sql("SELECT webhook_set_verification(%s, 'bearer', secret => 'token-1')", (wf,))
    assert post(private, wf, {"order_id": "A-2"}).status_code == 401
    r = requests.post(private.hook_url(wf), json={"order_id": "A-3"},
                      headers={"Authorization": "Bearer token-1"}, timeout=10)
    assert r.status_code == 200, r.text
    # TRUNCATE names no rows: everything is reloaded (a superuser's).
    private.sql("TRUNCATE webhook.verifications")
    assert post(private, wf, {"order_id": "A-4"}).status_code == 200
    # A deleted workflow.
    alice.sql("SELECT webhook_drop_workflow(%s)", (wf,))
    assert (post(private, wf, {"order_id": "A-5"}).status_code, post(private, other).status_code) == (404, 200)
    # Each change above was noted once per workflow, not once per change.
    assert private.scalar("SELECT count(*) FROM webhook.workflow_changes WHERE workflow_id IN (%s, %s)",
                          (wf, other)) == 2


def test_a_roles_changes_beyond_the_rate_wait_their_turn(private, tenants):
    """40 changes: 20 from the burst at once, then 20 at 20 a second, so the
    loop takes about a second; another tenant's change meanwhile does not
    wait, nor do a superuser's."""
    alice, mallory = tenants["alice"], tenants["mallory"]
    churn = mallory.create_workflow(name="paced")
    own = alice.create_workflow(name="unpaced")
    time.sleep(1.1)  # the burst is full again
    other_took = {}

    def alice_changes_once():
        t0 = time.monotonic()
        alice.sql("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (own,))
        other_took["s"] = time.monotonic() - t0

    with mallory.connect() as conn:
        t0 = time.monotonic()
        for n in range(40):
            if n == 30:
                alice_changes_once()
            conn.execute("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
        took = time.monotonic() - t0
    assert took >= 0.9, took
    assert other_took["s"] < 0.3, other_took
    # Positive control: the same loop by a superuser is not paced.
    t0 = time.monotonic()
    with private.connect() as conn:
        for _ in range(40):
            conn.execute("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
    assert time.monotonic() - t0 < 0.9
    # A transaction counts once, however many changes it makes.
    time.sleep(1.1)
    t0 = time.monotonic()
    with mallory.connect() as conn:
        with conn.transaction():
            for _ in range(100):
                conn.execute("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
    assert time.monotonic() - t0 < 0.9
    # Every change still counted: the listener sees the last one.
    mallory.sql("UPDATE webhook.workflows SET enabled = false WHERE id = %s", (churn,))
    assert post(private, churn).status_code == 404


def test_an_old_open_transaction_does_not_make_every_look_reload_the_same_workflows(private, tenants):
    """A transaction that holds an xid keeps the look's horizon where it
    was: every look then finds every change since. alice's workflow, changed
    once after that transaction began, used to be reloaded at every later
    look (each of mallory's changes); now only once."""
    alice, mallory = tenants["alice"], tenants["mallory"]
    wf = alice.create_workflow(name="changed-once")
    churn = mallory.create_workflow(name="churn")
    with private.connect(autocommit=False) as pin:
        pin.execute("SELECT pg_current_xact_id()")  # an xid, held until the end
        alice.sql("SELECT webhook_set_response(%s, 'custom', body => 'v2', content_type => 'text/plain')", (wf,))
        r = post(private, wf)
        assert (r.status_code, r.text) == (200, "v2")
        before = loads(private)
        for _ in range(20):
            mallory.sql("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
            assert post(private, wf).text == "v2"
        assert loads(private) - before == 0
        pin.rollback()


def test_a_tenant_cannot_attach_the_change_trigger_to_its_own_table(private, tenants):
    """webhook._config_changed runs as the extension's owner: attached to a
    tenant's own table, its rows would be noted as changed workflows (any
    ids, other tenants' too) and a TRUNCATE would empty every cache, at will."""
    mallory = tenants["mallory"]
    mallory.sql(f"CREATE TABLE {mallory.name}.fake (workflow_id uuid)")
    err = mallory.error(f"CREATE TRIGGER noted AFTER INSERT ON {mallory.name}.fake REFERENCING NEW TABLE AS new_rows "
                        "FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()", sqlstate="42501")
    assert err["message"] == "permission denied for function webhook._config_changed", err
    # Positive control: the function is reachable by name, and even a
    # superuser's trigger on another table does nothing but fail.
    private.sql(f"CREATE TRIGGER noted AFTER TRUNCATE ON {mallory.name}.fake "
                "FOR EACH STATEMENT EXECUTE FUNCTION webhook._config_changed()")
    err = private.sql_error(f"TRUNCATE {mallory.name}.fake", sqlstate="42501")
    assert err["message"] == ("webhook._config_changed() is a trigger of webhook.workflows, webhook.parameters "
                              "and webhook.verifications only"), err


def test_a_roles_queue_of_changes_is_bounded(private, tenants):
    """Waiters that are cancelled keep their turns booked; past 10 s of
    booked turns a change is refused (53400) instead of queued."""
    mallory = tenants["mallory"]
    churn = mallory.create_workflow(name="queued")
    refused = None
    with mallory.connect() as conn:
        conn.execute("SET statement_timeout = '10ms'")
        for _ in range(400):
            try:
                conn.execute("UPDATE webhook.workflows SET enabled = true WHERE id = %s", (churn,))
            except Exception as e:  # noqa: BLE001  (cancelled waits, then the refusal)
                if getattr(e, "sqlstate", None) == "53400":
                    refused = e
                    break
    assert refused is not None
    assert str(refused).startswith("too many changes to workflow definitions by this role at once"), refused


def test_tenants_cannot_read_write_or_signal_the_change_notes(private, tenants):
    mallory, alice = tenants["mallory"], tenants["alice"]
    wf = alice.create_workflow(name="noted")
    # Positive control: alice's workflow is noted (a superuser sees it).
    assert private.scalar("SELECT count(*) FROM webhook.workflow_changes WHERE workflow_id = %s", (wf,)) == 1
    for query in ["SELECT * FROM webhook.workflow_changes",
                  "INSERT INTO webhook.workflow_changes (workflow_id, changed_xid) "
                  "VALUES (gen_random_uuid(), pg_current_xact_id())",
                  "UPDATE webhook.workflow_changes SET gone_at = now()",
                  "DELETE FROM webhook.workflow_changes"]:
        err = mallory.error(query, sqlstate="42501")
        assert err["message"] == "permission denied for table workflow_changes", err
    err = mallory.error("SELECT webhook._pace_config_change()", sqlstate="42501")
    assert err["message"] == "permission denied for function _pace_config_change", err


# ------------------------------------------------------ handler changes
def test_set_handler_takes_effect_in_the_listener_at_once(ready, new_workflow, uniq):
    c = ready
    first, first_table = recording_handler(c, uniq)
    second, second_table = recording_handler(c, uniq)
    wf = new_workflow(handler=first)["id"]
    one = post_json(c, wf, json_body={"n": 1}).json()["event_id"]
    settle(c, "id = %s", (one,))
    c.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, second))
    two = post_json(c, wf, json_body={"n": 2}).json()["event_id"]
    assert [r["event_id"] for r in handler_rows(c, first_table)] == [one]
    assert [r["event_id"] for r in handler_rows(c, second_table)] == [two]
