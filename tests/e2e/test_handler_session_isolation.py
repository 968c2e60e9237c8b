"""What one handler leaves behind in its session or transaction never reaches
another owner's handler.

Handlers run in executor processes, and an executor serves one owner only:
two owners' handlers never share a session or a transaction (first test).
One owner's executor still runs many of its events per transaction, so the
state that survives a handler's subtransaction is still cleared between runs:

* ``SET CONSTRAINTS ALL DEFERRED`` is transaction state, not a GUC, and it
  survives the release of the handler's subtransaction: it is refused inside
  handlers, so the next handler of the batch is unaffected;
* large-object descriptors (``lo_open``) live until the end of the
  transaction: they are closed after every run.

Events are put into one transaction by storing them due at the same moment
for the owner's (single, see ``webhook.max_executors_per_owner``) executor;
each test checks (positive control) that the two events were committed by the
same transaction (same xmin of the rows the executor updated).
"""

import threading
import time

import psycopg
import pytest
import requests

from conftest import uniq
from tenantkit import drop_tenants, make_tenant, private_cluster_fixture


# One executor per owner, so that two due events of an owner can share its batch.
private = private_cluster_fixture(**{"webhook.max_executors_per_owner": 1})


@pytest.fixture
def tenants(private):
    names = {k: uniq(k) for k in ("alice", "bob")}
    made = {k: make_tenant(private, n) for k, n in names.items()}
    for t in made.values():
        t.sql(f"CREATE FUNCTION {t.name}.quick(e webhook.events) RETURNS text LANGUAGE sql "
              f"AS $h$ SELECT 'ok' $h$")
    try:
        yield made
    finally:
        drop_tenants(private, names.values())


def post(private, wf) -> None:
    r = requests.post(private.hook_url(wf), json={}, timeout=20)
    assert r.status_code == 200, r.text


def settled(private, wf) -> dict:
    """The workflow's newest event once its handler ran, with its xmin (the
    transaction of the executor that updated it)."""
    deadline = time.monotonic() + 15
    while True:
        row = private.row("SELECT id, status, error, xmin::text AS xmin "
                          "FROM webhook.events WHERE workflow_id = %s ORDER BY id DESC LIMIT 1", (wf,))
        if row and row["status"] != "pending":
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"the newest event of {wf} is still pending after 15 s: {row!r}")
        time.sleep(0.02)


def run_in_one_batch(private, tenant, first, second):
    """Stores one event for first and one for second, due at the same moment,
    for the owner's executor to run in one batch. The executor is warmed up
    first with quick handler runs (it claims few events at a time until
    handlers prove fast). Retries (bounded) until both events share a
    transaction."""
    quick = tenant.create_workflow(handler=f"{tenant.name}.quick", name=uniq("quick"))
    tries = []
    for _ in range(3):
        for _ in range(30):
            post(private, quick)
        settled(private, quick)
        private.sql("INSERT INTO webhook.events (workflow_id, method, next_attempt_at) "
                    "SELECT unnest(%s::uuid[]), 'POST', now() + interval '300 ms'", ([first, second],))
        a, b = settled(private, first), settled(private, second)
        # The executor's update of both rows is their newest version: the
        # same xmin means the same transaction.
        if a["xmin"] == b["xmin"]:
            return a, b
        tries.append((a, b))
    pytest.fail(f"could not get both events into one batch in 3 tries: {tries!r}")


def test_two_owners_never_share_an_executor_session_or_transaction(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    trace = "public." + uniq("trace")
    private.sql(f"CREATE TABLE {trace} (who text, pid int, xid xid8, session_user_name text)")
    private.sql(f"GRANT INSERT ON {trace} TO PUBLIC")
    wfs = {}
    for t in (alice, bob):
        t.sql(f"""CREATE FUNCTION {t.name}.trace(e webhook.events) RETURNS text LANGUAGE sql AS $h$
                  INSERT INTO {trace} VALUES (current_user, pg_backend_pid(), pg_current_xact_id(),
                                              session_user::text);
                  SELECT 'ok' $h$""")
        wfs[t.name] = t.create_workflow(handler=f"{t.name}.trace")
    for _ in range(5):
        for wf in wfs.values():
            post(private, wf)
    for wf in wfs.values():
        assert settled(private, wf)["status"] == "succeeded"
    rows = private.rows(f"SELECT * FROM {trace}")
    assert len(rows) == 10
    by_owner = {t.name: [r for r in rows if r["who"] == t.name] for t in (alice, bob)}
    assert all(len(v) == 5 for v in by_owner.values()), rows
    pids = {name: {r["pid"] for r in v} for name, v in by_owner.items()}
    xids = {name: {r["xid"] for r in v} for name, v in by_owner.items()}
    # Positive control: an executor session does carry one owner's handlers
    # one after another (webhook.max_executors_per_owner = 1 here), so state
    # left in it would reach the next handler run there.
    assert {name: len(p) for name, p in pids.items()} == {alice.name: 1, bob.name: 1}, pids
    assert not pids[alice.name] & pids[bob.name], pids
    assert not xids[alice.name] & xids[bob.name], xids
    # The executor's session belongs to the owner (a NOLOGIN owner works too).
    assert {r["session_user_name"] for r in by_owner[alice.name]} == {alice.name}
    listeners = {r["pid"] for r in private.rows(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener'")}
    assert not (pids[alice.name] | pids[bob.name]) & listeners


def test_set_constraints_of_one_handler_does_not_reach_the_next_handler(private, tenants):
    alice = tenants["alice"]
    a = alice.name
    alice.sql(f"""CREATE FUNCTION {a}.defer(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                  BEGIN SET CONSTRAINTS ALL DEFERRED; RETURN 'ok'; END $h$""")
    alice.sql(f"CREATE TABLE {a}.parent (id int PRIMARY KEY)")
    alice.sql(f"INSERT INTO {a}.parent VALUES (1)")
    alice.sql(f"CREATE TABLE {a}.child (pid int REFERENCES {a}.parent DEFERRABLE INITIALLY IMMEDIATE)")
    alice.sql(f"""CREATE FUNCTION {a}.write(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                BEGIN INSERT INTO {a}.child VALUES (1); RETURN 'ok'; END $h$""")
    wf_a = alice.create_workflow(handler=f"{a}.defer", name="defer")
    wf_b = alice.create_workflow(handler=f"{a}.write", name="write")

    # Positive control: SET CONSTRAINTS ALL DEFERRED in a subtransaction that
    # is released (as a handler's is) stays in force for the rest of the
    # transaction: a dangling child row gets in and fails only at commit.
    with alice.connect(autocommit=False) as conn:
        conn.execute("SAVEPOINT handler")
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        conn.execute("RELEASE SAVEPOINT handler")
        conn.execute(f"INSERT INTO {a}.child VALUES (2)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.commit()
    assert alice.scalar(f"SELECT count(*) FROM {a}.child") == 0
    # Positive control: the writing handler works on its own.
    post(private, wf_b)
    assert settled(private, wf_b)["status"] == "succeeded"

    ev_a, ev_b = run_in_one_batch(private, alice, wf_a, wf_b)
    # SET CONSTRAINTS is refused inside handlers: there is no undoing it for
    # the rest of the batch.
    assert (ev_a["status"], ev_a["error"]) == (
        "failed", "42501: SET CONSTRAINTS is not allowed in a webhook handler")
    assert (ev_b["status"], ev_b["error"]) == ("succeeded", None), \
        f"SET CONSTRAINTS of one handler broke the next: {ev_b}"


def test_large_object_descriptor_is_closed_after_the_handler(private, tenants):
    alice = tenants["alice"]
    a = alice.name
    lo = alice.scalar("SELECT lo_from_bytea(0, 'alice-secret')")
    # One handler opens the large object and forgets lo_close.
    alice.sql(f"""CREATE FUNCTION {a}.peek(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                  BEGIN PERFORM lo_open({lo}, 262144); RETURN 'ok'; END $h$""")
    alice.sql(f"CREATE TABLE {a}.loot (t text)")
    alice.sql(f"""CREATE FUNCTION {a}.grab(e webhook.events) RETURNS text LANGUAGE plpgsql AS $h$
                BEGIN INSERT INTO {a}.loot SELECT encode(loread(0, 100), 'escape'); RETURN 'ok'; END $h$""")
    wf_a = alice.create_workflow(handler=f"{a}.peek", name="peek")
    wf_b = alice.create_workflow(handler=f"{a}.grab", name="grab")

    # Positive control: a descriptor opened in a subtransaction that is
    # released (as a handler's is) is descriptor 0 and stays usable for the
    # rest of the transaction: grab's loread(0, …) would read the secret.
    with alice.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT handler")
        fd = conn.execute(f"SELECT lo_open({lo}, 262144)").fetchone()[0]
        conn.execute("RELEASE SAVEPOINT handler")
        assert fd == 0
        assert conn.execute("SELECT encode(loread(0, 100), 'escape')").fetchone()[0] == "alice-secret"
        conn.execute("ROLLBACK")

    ev_a, ev_b = run_in_one_batch(private, alice, wf_a, wf_b)
    assert (ev_a["status"], ev_a["error"]) == ("succeeded", None)
    assert [r[0] for r in private.sql(f"SELECT t FROM {a}.loot")] == []
    assert (ev_b["status"], ev_b["error"]) == ("failed", "42704: invalid large-object descriptor: 0"), ev_b
