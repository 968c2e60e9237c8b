"""One tenant against another, over HTTP.

alice, bob and carol are non-superuser webhook_admin tenants with a schema
each. Every attack first shows that its path is reachable (a positive
control), then that the listener does not let it through.
"""

import json

from conftest import uniq
from hookkit import http_request_bytes, post, raw_connect, raw_read, set_response, settle
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)


tenants = tenants_fixture('alice', 'bob', 'carol')

def event_rows(private, wf):
    settle(private, "workflow_id = %s", (wf,))
    return private.rows("SELECT id, status, error FROM webhook.events WHERE workflow_id = %s ORDER BY id", (wf,))


# -------------------------------------------------------------------- handlers
def test_another_owners_security_definer_function_cannot_become_a_handler(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    b = bob.name
    bob.sql(f"CREATE TABLE {b}.secrets (s text)")
    bob.sql(f"INSERT INTO {b}.secrets VALUES ('bob-secret')")
    bob.sql(f"""CREATE FUNCTION {b}.leak(e webhook.events) RETURNS jsonb LANGUAGE sql SECURITY DEFINER
                AS $h$ SELECT jsonb_build_object('s', (SELECT s FROM {b}.secrets)) $h$""")
    leak = private.scalar(f"SELECT '{b}.leak'::regproc::oid")
    # Positive control: EXECUTE is PUBLIC's by default and the OID is public
    # knowledge; only the schema stands between alice and the function.
    assert private.scalar("SELECT has_function_privilege(%s, %s::oid, 'EXECUTE')", (alice.name, leak)) is True
    assert alice.scalar("SELECT count(*) FROM pg_proc WHERE oid = %s::oid", (leak,)) == 1
    err = alice.error(f"SELECT {b}.leak(NULL)", sqlstate="42501")
    assert err["message"] == f"permission denied for schema {b}"

    err = alice.error("SELECT webhook_create_workflow('steal', %s::oid::regproc)", (leak,), sqlstate="42501")
    assert err["message"] == f"permission denied to use {b}.leak(webhook.events) as a handler"
    assert err["detail"].startswith(f"Role {alice.name} cannot execute it")
    wf = alice.create_workflow()
    alice.error("SELECT webhook_set_handler(%s, %s::oid::regproc)", (wf, leak), sqlstate="42501")
    alice.error("UPDATE webhook.workflows SET handler = %s::oid::regproc WHERE id = %s", (leak, wf),
                sqlstate="42501")
    assert private.scalar("SELECT handler::text FROM webhook.workflows WHERE id = %s", (wf,)) == \
        f"{alice.name}.handler"

    # Privileges taken away after creation count too: the listener checks as
    # the owner whenever it loads the workflow.
    private.sql(f'GRANT USAGE ON SCHEMA {b} TO "{alice.name}"')
    shared = alice.create_workflow(handler=f"{b}.leak", name="shared")
    set_response(private, shared, "workflow", user=alice.name)
    r = post(private, shared, json_body={})
    assert (r.status_code, r.json()) == (200, {"s": "bob-secret"})  # positive control
    private.sql(f'REVOKE USAGE ON SCHEMA {b} FROM "{alice.name}"')
    r = post(private, shared, json_body={})
    rows = event_rows(private, shared)
    assert (r.status_code, r.json()) == (500, {"msg": "Workflow failed", "event_id": rows[1]["id"]}), r.text
    assert [(row["status"], row["error"]) for row in rows] == [
        ("succeeded", None),
        ("failed", "42501: permission denied: the workflow's owner may not call its handler "
                   "(USAGE on its schema and EXECUTE on it are required)")]


# --------------------------------------------------------------- session state
def leaky_and_probing_handlers(tenants):
    """bob's handler leaves a cursor over his secrets open and takes a session
    advisory lock; alice's handler fetches from that cursor if it exists and
    records what it got."""
    alice, bob = tenants["alice"], tenants["bob"]
    b, a = bob.name, alice.name
    bob.sql(f"CREATE TABLE {b}.secrets (s text)")
    bob.sql(f"INSERT INTO {b}.secrets VALUES ('bob-secret')")
    bob.sql(f"""CREATE FUNCTION {b}.leave_state(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                DECLARE c refcursor := 'leaked_cursor';
                BEGIN
                    OPEN c FOR SELECT s FROM {b}.secrets;
                    PERFORM pg_advisory_lock(424242);
                    RETURN '{{}}';
                END $h$""")
    alice.sql(f"CREATE TABLE {a}.got (what text)")
    alice.sql(f"""CREATE FUNCTION {a}.probe(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                  DECLARE c refcursor := 'leaked_cursor'; v text;
                  BEGIN
                      BEGIN
                          FETCH c INTO v;
                      EXCEPTION WHEN invalid_cursor_name THEN v := 'no cursor';
                      END;
                      INSERT INTO {a}.got VALUES (v);
                      RETURN '{{}}';
                  END $h$""")
    return f"{b}.leave_state", f"{a}.probe"


def test_cursor_left_open_by_a_handler_is_gone_before_the_next_owners_handler(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    leave, probe = leaky_and_probing_handlers(tenants)
    wf_bob = bob.create_workflow(handler=leave)
    wf_alice = alice.create_workflow(handler=probe)

    # Positive control: run in one session, one transaction (webhook_trigger
    # in a superuser's session, which it leaves alone), alice's handler reads
    # bob's secret through his cursor.
    with private.connect(autocommit=False) as conn:
        conn.execute("SELECT webhook_trigger(%s)", (wf_bob,))
        conn.execute("SELECT webhook_trigger(%s)", (wf_alice,))
        assert conn.execute(f"SELECT what FROM {alice.name}.got").fetchall() == [("bob-secret",)]
        conn.rollback()

    # Over HTTP, bob's request and then alice's, answered and handled in
    # order: alice's handler finds no cursor (each owner's handlers run in an
    # executor of their own; test_handler_session_isolation.py proves the sessions
    # and transactions differ).
    for wf in (wf_bob, wf_alice):
        r = post(private, wf, json_body={})
        assert (r.status_code, r.json()["msg"]) == (200, "success"), r.text
        assert [row["status"] for row in event_rows(private, wf)] == ["succeeded"]
    assert [tuple(r) for r in private.sql(f"SELECT what FROM {alice.name}.got")] == [("no cursor",)]


def test_session_advisory_locks_of_a_handler_do_not_outlive_it(private, tenants):
    bob = tenants["bob"]
    leave, _ = leaky_and_probing_handlers(tenants)
    bob.sql(f"""CREATE FUNCTION {bob.name}.lock_many(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
                BEGIN
                    PERFORM pg_advisory_lock(900000 + k) FROM generate_series(1, 500) k;
                    IF e.params ? 'fail' THEN RAISE EXCEPTION 'failing on purpose'; END IF;
                    RETURN '{{}}';
                END $h$""")
    wf_one = bob.create_workflow(handler=leave)
    wf_many = bob.create_workflow(handler=f"{bob.name}.lock_many", name="many")
    held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid BETWEEN 424242 AND 901000"

    # Positive control: the handler takes a session lock that outlives it in
    # the session it ran in.
    with private.connect() as conn:
        conn.execute("SELECT webhook_trigger(%s)", (wf_one,))
        assert private.scalar(held) == 1
    assert private.scalar(held) == 0

    # Over HTTP the handler runs after the answer: wait until it ran (the
    # event is no longer pending) before looking for its locks.
    for i, params in enumerate(({}, {"fail": True}, {})):
        r = post(private, wf_many, json_body=params)
        assert r.status_code == 200, r.text
        assert len(event_rows(private, wf_many)) == i + 1
        assert private.scalar(held) == 0
    r = post(private, wf_one, json_body={})
    assert r.status_code == 200
    # (the first event is the positive control's webhook_trigger)
    assert [row["status"] for row in event_rows(private, wf_one)] == ["succeeded", "succeeded"]
    assert private.scalar(held) == 0
    rows = event_rows(private, wf_many)
    assert [(row["status"], row["error"]) for row in rows] == [
        ("succeeded", None), ("failed", "P0001: failing on purpose"), ("succeeded", None)]


# -------------------------------------------------------------- owner by OID
def test_a_new_role_with_a_dropped_owners_name_gets_nothing(private, tenants):
    carol, bob = tenants["carol"], tenants["bob"]
    c = carol.name
    wf = carol.create_workflow()
    r = post(private, wf, json_body={"ssn": "carol's personal data"})
    assert r.status_code == 200
    assert carol.scalar("SELECT count(*) FROM webhook.events") == 1  # positive control

    # The DBA retires carol the usual way; her workflow rows stay behind.
    private.sql(f'REASSIGN OWNED BY "{c}" TO "{bob.name}"')
    private.sql(f'DROP OWNED BY "{c}"')
    private.sql(f'DROP ROLE "{c}"')
    old_owner = private.scalar("SELECT owner::oid FROM webhook.workflows WHERE id = %s", (wf,))
    assert private.scalar("SELECT count(*) FROM pg_roles WHERE oid = %s", (old_owner,)) == 0

    private.sql(f'CREATE ROLE "{c}" LOGIN')
    private.sql(f'GRANT webhook_admin TO "{c}"')
    assert carol.scalar("SELECT count(*) FROM webhook.workflows") == 0
    assert carol.scalar("SELECT count(*) FROM webhook.events") == 0
    assert carol.scalar("SELECT count(*) FROM webhook.parameters") == 0
    assert carol.rows("SELECT * FROM webhook_find_workflow(%s)", (wf,)) == []
    carol.error("SELECT webhook_url(%s)", (wf,), sqlstate="42704")
    # Unreachable over HTTP: no handler of a vanished owner runs.
    r = post(private, wf, json_body={"x": 1})
    assert (r.status_code, r.json()) == (404, {"msg": "Workflow not found"})
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1

    # A superuser hands them on (the handler went to bob with REASSIGN OWNED).
    assert private.scalar("SELECT webhook_reassign_workflows(%s::text::regrole, %s::regrole)",
                          (str(old_owner), bob.name)) == 1
    assert bob.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1
    r = post(private, wf, json_body={"x": 2})
    assert r.status_code == 200, r.text
    err = bob.error("SELECT webhook_reassign_workflows(%s::regrole, %s::regrole)", (bob.name, c),
                    sqlstate="42501")
    assert err["message"] == "permission denied to reassign workflows"


# --------------------------------------------------------- rules on the table
def test_response_headers_written_around_the_api_are_refused(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    set_response(private, wf, "custom", user=alice.name, body="ok", content_type="text/plain")
    # Positive control: a tenant may update response settings directly.
    alice.sql("UPDATE webhook.workflows SET response_headers = '{\"x-ok\": \"1\"}' WHERE id = %s", (wf,))
    r = post(private, wf, json_body={})
    assert (r.status_code, r.text, r.headers["x-ok"]) == (200, "ok", "1")

    for headers, message in (
            ({"content-length": "0"}, 'response header "content-length" is set by the listener'),
            ({"Transfer-Encoding": "chunked"}, 'response header "Transfer-Encoding" is set by the listener'),
            ({"connection": "close"}, 'response header "connection" is set by the listener'),
            ({"x-a": "b\r\nContent-Length: 0"}, 'invalid response header "x-a"'),
            ({"bad name": "x"}, 'invalid response header "bad name"')):
        err = alice.error("UPDATE webhook.workflows SET response_headers = %s::jsonb WHERE id = %s",
                          (json.dumps(headers), wf), sqlstate="22023")
        assert err["message"] == message, err
    err = alice.error("UPDATE webhook.workflows SET response_content_type = %s WHERE id = %s",
                      ("text/plain\r\nContent-Length: 0", wf), sqlstate="22023")
    assert err["message"] == 'unsupported response content type "text/plain\r\nContent-Length: 0"'
    assert private.scalar("SELECT response_headers FROM webhook.workflows WHERE id = %s", (wf,)) == {"x-ok": "1"}


def test_listener_never_sends_framing_headers_from_a_row_written_around_the_rules(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    set_response(private, wf, "custom", user=alice.name, body="ok", content_type="text/plain")
    # A superuser bypassing the triggers (as a restore with triggers off would).
    with private.connect() as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE webhook.workflows SET response_headers = %s::jsonb, "
                     "response_body = %s WHERE id = %s",
                     (json.dumps({"content-length": "0", "x-split": "a\r\n\r\nHTTP/1.1 200 OK", "x-ok": "1"}),
                      "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged", wf))
    # Positive control: the bypass wrote the row as given (the rules refuse it otherwise).
    assert private.scalar("SELECT response_headers FROM webhook.workflows WHERE id = %s", (wf,)) == \
        {"content-length": "0", "x-split": "a\r\n\r\nHTTP/1.1 200 OK", "x-ok": "1"}
    alice.error("UPDATE webhook.workflows SET response_headers = response_headers WHERE id = %s", (wf,),
                sqlstate="22023")
    # (The listener has not loaded this workflow yet, so it reads the row as written.)
    with raw_connect(private.http_port) as s:
        s.sendall(http_request_bytes("POST", f"/hooks/{wf}", private.http_port, b"{}",
                                     {"Content-Type": "application/json"}))
        res = raw_read(s, 1.5)  # keep-alive: whatever arrives within 1.5 s
    head, _, rest = res.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert names.count(b"content-length") == 1
    assert b"x-split" not in names and b"x-ok" in names
    length = int([line for line in lines[1:] if line.lower().startswith(b"content-length:")][0].split(b":")[1])
    assert rest == b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"[:length] and len(rest) == length


def test_tenants_cannot_probe_for_other_owners_workflow_ids(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wf_bob = bob.create_workflow()
    errors = []
    for candidate in (wf_bob, "00000000-0000-4000-8000-000000000000"):
        errors.append(alice.error("INSERT INTO webhook.workflows (id, name, handler) VALUES (%s, %s, %s::regproc)",
                                  (candidate, uniq("probe"), alice.handler), sqlstate="42501"))
    assert errors[0] == errors[1]
    assert errors[0]["message"] == "workflow ids are assigned by webhook_ext"
    # Without an id the insert works and gets a fresh one (positive control).
    new_id = alice.scalar("INSERT INTO webhook.workflows (name, handler) VALUES ('direct', %s::regproc) "
                          "RETURNING id::text", (alice.handler,))
    assert new_id != wf_bob
    err = alice.error("UPDATE webhook.workflows SET id = %s WHERE id = %s", (wf_bob, new_id), sqlstate="42501")
    assert err["message"] == "permission denied for table workflows"
