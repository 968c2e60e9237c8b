"""Tenant code that would run when the batch commits.

A deferred constraint trigger (``CREATE CONSTRAINT TRIGGER … DEFERRABLE
INITIALLY DEFERRED``) fires at commit, after the handler returned, outside
the handler's security-restricted context; the executor connects as the
bootstrap superuser, so there ``SET SESSION AUTHORIZATION postgres`` would
succeed. PostgreSQL refuses to queue a deferred trigger inside a
security-restricted operation (its fix for CVE-2020-25695), which is how
handlers run: the handler's insert fails with 42501, the attempt is recorded,
and no tenant code runs at commit. (So handlers cannot use deferred
constraints; see the README's security model.)
"""

import requests

from hookkit import settle
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)

tenants = tenants_fixture("alice")

TRAP = """
CREATE TABLE {s}.log (what text, cur text, sess text);
CREATE TABLE {s}.armed (id int);
CREATE FUNCTION {s}.at_commit() RETURNS trigger LANGUAGE plpgsql AS $t$
BEGIN
    INSERT INTO {s}.log VALUES ('fired', current_user, session_user);
    BEGIN
        SET SESSION AUTHORIZATION postgres;
        INSERT INTO {s}.log VALUES ('escalated', current_user, session_user);
        EXECUTE 'ALTER ROLE "{s}" SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        INSERT INTO {s}.log VALUES ('refused: ' || SQLERRM, current_user, session_user);
    END;
    RETURN NULL;
END $t$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON {s}.armed
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.at_commit();
CREATE FUNCTION {s}.arm(e webhook.events) RETURNS text LANGUAGE sql AS $h$
    INSERT INTO {s}.armed VALUES (1); SELECT 'armed' $h$;
"""


def test_deferred_trigger_of_a_handler_cannot_become_superuser(private, tenants):
    alice = tenants["alice"]
    a = alice.name
    alice.sql(TRAP.format(s=a))
    # Positive control: the deferred trigger fires at commit in alice's own
    # session, where it cannot escalate ...
    alice.sql(f"INSERT INTO {a}.armed VALUES (0)")
    assert alice.rows(f"SELECT what, cur, sess FROM {a}.log") == [
        {"what": "fired", "cur": a, "sess": a},
        {"what": "refused: permission denied to set session authorization \"postgres\"", "cur": a, "sess": a}]
    alice.sql(f"DELETE FROM {a}.log")
    # ... and in a session that a superuser opened and handed to alice (as an
    # executor's is), it becomes the superuser and makes alice one. Fired by
    # SET CONSTRAINTS ALL IMMEDIATE in a transaction that is rolled back.
    with private.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(f'SET SESSION AUTHORIZATION "{a}"')
            conn.execute(f"INSERT INTO {a}.armed VALUES (-1)")
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            assert conn.execute(f"SELECT what, cur, sess FROM {a}.log").fetchall() == [
                ("fired", a, a), ("escalated", "postgres", "postgres")]
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (a,)).fetchone()[0] is True
    assert alice.is_superuser() is False
    assert alice.rows(f"SELECT what FROM {a}.log") == []

    wf = alice.create_workflow(handler=f"{a}.arm")
    alice.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    r = requests.post(private.hook_url(wf), json={}, timeout=10)
    assert r.status_code == 200, r.text
    settle(private, "workflow_id = %s", (wf,), timeout=10)
    log = private.rows(f"SELECT what, cur, sess FROM {a}.log")
    assert alice.is_superuser() is False, log
    assert log == [], log
    ev = private.row("SELECT status, error FROM webhook.events WHERE workflow_id = %s", (wf,))
    assert ev == {"status": "dead",
                  "error": "42501: cannot fire deferred trigger within security-restricted operation"}
    assert private.scalar(f"SELECT count(*) FROM {a}.armed") == 1  # the positive control's row only
