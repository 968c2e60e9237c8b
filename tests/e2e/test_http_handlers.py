"""Handlers over real HTTP: they run as the workflow owner (never as
the superuser the listener connects as), in a subtransaction: a failing handler
records SQLSTATE + message in webhook.events.error, rolls back its own writes,
keeps the event row, and never stops the listener."""

import json

import psycopg
import pytest
import requests

from hookkit import (count_events, create_workflow, event, events, handler_rows, login_role, post,  # noqa: F401
                     make_login_role, ready, recording_handler, response_json, settle, wait_ready)


def runs_as_superuser(c, fn: str, table: str) -> None:
    """Positive control: ``fn`` called directly by the superuser (as the
    listener's and executors' connections are) gets through to its insert;
    rolled back, so afterwards ``table`` is as it was."""
    before = c.scalar(f"SELECT count(*) FROM {table}")
    with c.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SELECT {fn}(NULL::webhook.events)")
            assert conn.execute(f"SELECT who FROM {table} ORDER BY at DESC LIMIT 1").fetchone() == ("postgres",)
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == before + 1
    assert c.scalar(f"SELECT count(*) FROM {table}") == before


def one_event(c, wf) -> dict:
    rows = events(c, wf)
    assert len(rows) == 1, rows
    return rows[0]


def test_handler_runs_as_workflow_owner(ready, login_role, uniq):
    c = ready
    role = login_role()
    fn, table = recording_handler(c, uniq, schema=role, user=role)
    wf = create_workflow(c, fn, uniq, user=role)
    assert c.scalar("SELECT owner FROM webhook.workflows WHERE id = %s", (wf,)) == role

    r = post(c, wf, json_body={"order_id": "o-1"})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert ev["status"] == "succeeded" and ev["error"] is None
    rows = handler_rows(c, table)
    assert [(x["event_id"], x["who"]) for x in rows] == [(ev["id"], role)]
    assert rows[0]["params"] == {"order_id": "o-1"}
    assert c.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)) is False
    # The owner sees its own event through row-level security.
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,), user=role) == 1


def test_handler_reading_pg_authid_fails_and_listener_keeps_serving(ready, login_role, uniq, new_workflow):
    c = ready
    role = login_role()
    fn, table = recording_handler(c, uniq, schema=role, user=role,
                                  extra="PERFORM count(*) FROM pg_catalog.pg_authid;")
    runs_as_superuser(c, fn, table)
    wf = create_workflow(c, fn, uniq, user=role)

    r = post(c, wf, json_body={"order_id": "secret"})
    # Default response method: the event was stored, so the caller gets 200.
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert response_json(r) == {"msg": "success", "event_id": ev["id"], "workflow_id": wf}
    assert (ev["status"], ev["error"]) == ("failed", "42501: permission denied for table pg_authid")
    assert ev["params"] == {"order_id": "secret"}
    # The handler's own insert before the failure was rolled back.
    assert handler_rows(c, table) == []

    # The listener is still serving: the same and another workflow answer.
    good = new_workflow()["id"]
    for _ in range(3):
        assert post(c, good, json_body={"ok": 1}).status_code == 200
    assert post(c, wf, json_body={"order_id": "again"}).status_code == 200
    assert [e["status"] for e in events(c, wf)] == ["failed", "failed"]
    assert [e["status"] for e in events(c, good)] == ["succeeded"] * 3


def test_handler_set_role_superuser_fails(ready, login_role, uniq):
    c = ready
    role = login_role()
    variants = {
        "set_role": "SET ROLE postgres;",
        "set_config_role": "PERFORM set_config('role', 'postgres', false);",
        "session_authorization": "SET SESSION AUTHORIZATION postgres;",
    }
    for label, stmt in variants.items():
        fn, table = recording_handler(c, uniq, schema=role, user=role, extra=stmt)
        runs_as_superuser(c, fn, table)
        wf = create_workflow(c, fn, uniq, user=role)
        r = post(c, wf, json_body={"v": label})
        assert r.status_code == 200, (label, r.text)
        ev = one_event(c, wf)
        param = "session_authorization" if label == "session_authorization" else "role"
        assert (ev["status"], ev["error"]) == (
            "failed", f'42501: cannot set parameter "{param}" within security-definer function'), label
        assert handler_rows(c, table) == [], label


def test_handler_exception_records_sqlstate_and_message(ready, new_workflow, new_handler):
    c = ready
    fn = new_handler(body="""CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            RAISE EXCEPTION 'order % rejected', e.params->>'order_id' USING ERRCODE = '22023';
        END $h$""")
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "A-1"})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert ev["status"] == "failed"
    assert ev["error"].startswith("22023"), ev["error"]
    assert "order A-1 rejected" in ev["error"]

    # A division by zero deep in SQL: its own SQLSTATE.
    fn2 = new_handler(body="""CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$
        SELECT jsonb_build_object('x', 1 / (e.params->>'d')::int) $h$""")
    wf2 = new_workflow(handler=fn2)["id"]
    assert post(c, wf2, json_body={"d": 0}).status_code == 200
    assert post(c, wf2, json_body={"d": 1}).status_code == 200
    evs = events(c, wf2)
    assert evs[0]["status"] == "failed" and evs[0]["error"].startswith("22012"), evs[0]["error"]
    assert "division by zero" in evs[0]["error"]
    assert evs[1]["status"] == "succeeded" and evs[1]["error"] is None


def test_failed_handler_rolls_back_its_writes_event_stays(ready, new_workflow, uniq):
    c = ready
    fn, table = recording_handler(c, uniq, extra="""
        IF e.params->>'fail' = 'yes' THEN
            RAISE EXCEPTION 'asked to fail';
        END IF;""")
    wf = new_workflow(handler=fn)["id"]
    assert post(c, wf, json_body={"n": 1, "fail": "no"}).status_code == 200
    assert post(c, wf, json_body={"n": 2, "fail": "yes"}).status_code == 200
    assert post(c, wf, json_body={"n": 3, "fail": "no"}).status_code == 200
    evs = events(c, wf)
    assert [(e["params"]["n"], e["status"]) for e in evs] == [(1, "succeeded"), (2, "failed"), (3, "succeeded")]
    assert evs[1]["error"].startswith("P0001") and "asked to fail" in evs[1]["error"]
    assert evs[1]["params"] == {"n": 2, "fail": "yes"}
    assert evs[1]["body"] == json.dumps({"n": 2, "fail": "yes"})
    # Only the succeeding handlers' rows are there.
    assert [x["event_id"] for x in handler_rows(c, table)] == [evs[0]["id"], evs[2]["id"]]


def test_handler_sees_the_event(ready, new_workflow, new_handler, uniq):
    c = ready
    table = "public." + uniq("seen")
    c.sql(f"CREATE TABLE {table} (ev webhook.events)")
    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$ "
                          f"BEGIN INSERT INTO {table} VALUES (e); RETURN NULL; END $h$")
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "E1"}, params={"q": "1"}, headers={"X-Trace": "t-1"})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    seen = c.row(f"SELECT (ev).* FROM {table}")
    assert seen["id"] == ev["id"]
    assert str(seen["workflow_id"]) == wf
    assert seen["method"] == "POST"
    assert seen["query"] == {"q": "1"}
    assert seen["headers"]["x-trace"] == "t-1"
    assert seen["params"] == {"q": "1", "order_id": "E1"}
    assert seen["body"] == '{"order_id": "E1"}'
    assert seen["received_at"] == ev["received_at"]


def test_handler_inserting_fk_to_events(ready, new_workflow, new_handler, uniq):
    c = ready
    table = "public." + uniq("fk")
    c.sql(f"CREATE TABLE {table} (event_id bigint NOT NULL REFERENCES webhook.events (id) ON DELETE CASCADE, "
          "note text)")
    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$ "
                          f"BEGIN INSERT INTO {table} VALUES (e.id, e.params->>'note'); RETURN NULL; END $h$")
    wf = new_workflow(handler=fn)["id"]
    for i in range(3):
        assert post(c, wf, json_body={"note": f"n{i}"}).status_code == 200
    evs = events(c, wf)
    assert [e["status"] for e in evs] == ["succeeded"] * 3, [e["error"] for e in evs]
    rows = c.rows(f"SELECT event_id, note FROM {table} ORDER BY event_id")
    assert rows == [{"event_id": e["id"], "note": f"n{i}"} for i, e in enumerate(evs)]


def test_handler_guc_changes_do_not_leak(make_cluster, uniq):
    # A private cluster: if settings do leak, they must not disturb other tests'
    # handlers on the shared session cluster.
    # One executor for the owner, so that every handler runs in one session.
    c = make_cluster(conf={"webhook.workers": 1, "webhook.max_executors_per_owner": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    wait_ready(c)
    table = "public." + uniq("gucs")
    c.sql(f"CREATE TABLE {table} (n serial, search_path text, marker text, work_mem text, "
          f"pid int DEFAULT pg_backend_pid())")
    c.sql(f"CREATE TABLE {table}_setters (pid int DEFAULT pg_backend_pid())")
    c.sql(f"""CREATE FUNCTION public.guc_setter(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            INSERT INTO {table}_setters DEFAULT VALUES;
            PERFORM set_config('search_path', 'pg_catalog, pg_temp', false);
            PERFORM set_config('hookkit.marker', 'leaked', false);
            PERFORM set_config('work_mem', '77kB', false);
            RETURN NULL;
        END $h$""")
    c.sql("CREATE FUNCTION public.guc_reader(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$ "
          f"BEGIN INSERT INTO {table} (search_path, marker, work_mem) VALUES "
          "(current_setting('search_path'), current_setting('hookkit.marker', true), "
          "current_setting('work_mem')); RETURN NULL; END $h$")
    # Positive control: called directly, the setter's changes outlive the
    # call in its session (set_config(..., false) is session-wide).
    with c.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("SELECT public.guc_setter(NULL::webhook.events)")
        # (The rollback undoes them; a committed call keeps them.)
        conn.execute("SELECT public.guc_setter(NULL::webhook.events)")
        assert conn.execute("SELECT current_setting('search_path'), current_setting('hookkit.marker'), "
                            "current_setting('work_mem')").fetchone() == ("pg_catalog, pg_temp", "leaked", "77kB")
    c.sql(f"DELETE FROM {table}_setters")
    wf_set = create_workflow(c, "public.guc_setter", uniq)
    wf_read = create_workflow(c, "public.guc_reader", uniq)
    # One listener process and one keep-alive connection.
    with requests.Session() as s:
        for wf in (wf_read, wf_set, wf_read, wf_set, wf_read):
            r = post(c, wf, json_body={"x": 1}, session=s)
            assert r.status_code == 200, r.text
    assert [e["status"] for e in events(c, wf_set)] == ["succeeded"] * 2
    assert [e["status"] for e in events(c, wf_read)] == ["succeeded"] * 3
    rows = c.rows(f"SELECT search_path, marker, work_mem, pid FROM {table} ORDER BY n")
    # Positive control: every run, setters' and readers', was in one executor
    # session, so whatever a setter left in it would reach the next reader.
    pids = {r["pid"] for r in rows} | {r[0] for r in c.sql(f"SELECT pid FROM {table}_setters")}
    assert len(pids) == 1, (pids, rows)
    # A custom placeholder setting, once created, reads '' rather than NULL
    # after its value is reverted (PostgreSQL semantics); only a leaked value counts.
    assert [(r["search_path"], r["marker"], r["work_mem"]) for r in rows] == [
        ('"$user", public', None, "4MB"), ('"$user", public', "", "4MB"), ('"$user", public', "", "4MB")], (
        f"settings changed by one handler leaked into the next handler: {rows}")


def test_handler_taking_jsonb(ready, new_workflow, new_handler, uniq):
    c = ready
    table = "public." + uniq("js")
    c.sql(f"CREATE TABLE {table} (event_id bigint, workflow_id text, method text, params jsonb, who text)")
    fn = new_handler(body="CREATE FUNCTION {name}(e jsonb) RETURNS void LANGUAGE plpgsql AS $h$ "
                          f"BEGIN INSERT INTO {table} VALUES ((e->>'id')::bigint, e->>'workflow_id', "
                          "e->>'method', e->'params', current_user); END $h$")
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "J1", "nested": {"a": [1, 2]}})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert ev["status"] == "succeeded", ev["error"]
    assert c.rows(f"SELECT * FROM {table}") == [{
        "event_id": ev["id"], "workflow_id": wf, "method": "POST",
        "params": {"order_id": "J1", "nested": {"a": [1, 2]}}, "who": "postgres"}]


def test_procedure_handler(ready, new_workflow, new_handler, login_role, uniq):
    c = ready
    table = "public." + uniq("proc")
    c.sql(f"CREATE TABLE {table} (event_id bigint, params jsonb, who text)")
    fn = new_handler(body="CREATE PROCEDURE {name}(e webhook.events) LANGUAGE plpgsql AS $h$ "
                          f"BEGIN INSERT INTO {table} VALUES (e.id, e.params, current_user); END $h$")
    wf = new_workflow(handler=fn)["id"]
    r = post(c, wf, json_body={"order_id": "P1"})
    assert r.status_code == 200, r.text
    ev = one_event(c, wf)
    assert ev["status"] == "succeeded", ev["error"]
    assert c.rows(f"SELECT * FROM {table}") == [{"event_id": ev["id"], "params": {"order_id": "P1"},
                                                  "who": "postgres"}]

    # A procedure owned by a non-superuser runs as that owner; a failing one records the error.
    role = login_role()
    c.sql(f"CREATE TABLE {role}.calls (event_id bigint, who text)", user=role)
    c.sql(f"""CREATE PROCEDURE {role}.p(e jsonb) LANGUAGE plpgsql AS $h$
        BEGIN
            INSERT INTO {role}.calls VALUES ((e->>'id')::bigint, current_user);
            IF e->'params'->>'fail' = 'yes' THEN RAISE EXCEPTION 'procedure failed' USING ERRCODE = '22000'; END IF;
        END $h$""", user=role)
    wf2 = create_workflow(c, f"{role}.p", uniq, user=role)
    assert post(c, wf2, json_body={"fail": "no"}).status_code == 200
    assert post(c, wf2, json_body={"fail": "yes"}).status_code == 200
    evs = events(c, wf2)
    assert [e["status"] for e in evs] == ["succeeded", "failed"]
    assert evs[1]["error"].startswith("22000") and "procedure failed" in evs[1]["error"]
    assert c.rows(f"SELECT event_id, who FROM {role}.calls") == [{"event_id": evs[0]["id"], "who": role}]


def test_handler_sees_only_its_owners_rows(ready, login_role, uniq, new_workflow):
    """Row-level security applies inside a handler: it runs as the owner, so it
    sees only the events of the owner's workflows."""
    c = ready
    other = new_workflow()["id"]
    assert post(c, other, json_body={"secret": "of postgres"}).status_code == 200
    role = login_role()
    c.sql(f"CREATE TABLE {role}.seen (visible_events bigint, visible_workflows bigint)", user=role)
    c.sql(f"""CREATE FUNCTION {role}.h(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            INSERT INTO {role}.seen VALUES ((SELECT count(*) FROM webhook.events),
                                            (SELECT count(*) FROM webhook.workflows));
            RETURN NULL;
        END $h$""", user=role)
    wf = create_workflow(c, f"{role}.h", uniq, user=role)
    # Positive control: called by the superuser (as the executors connect),
    # the same function sees every event and workflow.
    with c.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SELECT {role}.h(NULL::webhook.events)")
            seen = conn.execute(f"SELECT * FROM {role}.seen").fetchall()
            total = conn.execute("SELECT (SELECT count(*) FROM webhook.events), "
                                 "(SELECT count(*) FROM webhook.workflows)").fetchone()
            assert seen == [total] and total[0] >= 1 and total[1] >= 2, (seen, total)
    assert post(c, wf, json_body={}).status_code == 200
    ev = one_event(c, wf)
    assert ev["status"] == "succeeded", ev["error"]
    assert c.rows(f"SELECT * FROM {role}.seen") == [{"visible_events": 1, "visible_workflows": 1}]


def test_handler_cannot_write_events_directly(ready, login_role, uniq):
    c = ready
    role = login_role()
    c.sql(f"""CREATE FUNCTION {role}.h(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            UPDATE webhook.events SET status = 'succeeded', error = NULL, next_attempt_at = NULL WHERE id = e.id;
            RETURN NULL;
        END $h$""", user=role)
    wf = create_workflow(c, f"{role}.h", uniq, user=role)
    assert post(c, wf, json_body={}).status_code == 200
    ev = one_event(c, wf)
    # Positive control: run by the superuser, the same function does mark
    # the event succeeded (rolled back).
    with c.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SELECT {role}.h(e) FROM webhook.events e WHERE id = %s", (ev["id"],))
            assert conn.execute("SELECT status, error FROM webhook.events WHERE id = %s",
                                (ev["id"],)).fetchone() == ("succeeded", None)
    assert (ev["status"], ev["error"]) == ("failed", "42501: permission denied for table events")
    assert one_event(c, wf)["status"] == "failed"


def test_procedure_handler_with_commit_fails_cleanly(ready, new_workflow, new_handler, uniq):
    c = ready
    table = "public." + uniq("tx")
    c.sql(f"CREATE TABLE {table} (event_id bigint)")
    fn = new_handler(body="CREATE PROCEDURE {name}(e webhook.events) LANGUAGE plpgsql AS $h$ "
                          f"BEGIN INSERT INTO {table} VALUES (e.id); COMMIT; END $h$")
    wf = new_workflow(handler=fn)["id"]
    for _ in range(2):
        r = post(c, wf, json_body={"x": 1})
        assert r.status_code == 200, r.text
    evs = events(c, wf)
    assert [e["status"] for e in evs] == ["failed", "failed"]
    assert evs[0]["error"].startswith("2D000"), evs[0]["error"]
    assert c.rows(f"SELECT * FROM {table}") == []
    good = new_workflow()["id"]
    assert post(c, good, json_body={}).status_code == 200


def test_handler_notify_is_delivered_after_commit(ready, new_workflow, new_handler, uniq):
    c = ready
    channel = uniq("chan")
    fn = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ "
                          f"SELECT pg_notify('{channel}', e.id::text || ':' || (e.params->>'order_id')); "
                          "SELECT NULL::jsonb $h$")
    wf = new_workflow(handler=fn)["id"]
    with c.connect() as listen_conn:
        listen_conn.execute(f"LISTEN {channel}")
        r = post(c, wf, json_body={"order_id": "N1"})
        assert r.status_code == 200, r.text
        event_id = response_json(r)["event_id"]
        got = [n.payload for n in listen_conn.notifies(timeout=5, stop_after=1)]
    assert got == [f"{event_id}:N1"]


def test_handler_cannot_get_code_run_as_superuser_via_search_path(make_cluster, uniq):
    """A workflow owner's handler sets search_path to its own schema, where it
    planted a to_timestamp(); the statements the executor and the listener run
    with elevated rights (the event insert, recording the attempt) must not
    then resolve unqualified names to the owner's functions."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    wait_ready(c)
    role = make_login_role(c, uniq)
    c.sql(f"CREATE TABLE {role}.pwned (who text, super boolean)", user=role)
    c.sql(f"GRANT USAGE ON SCHEMA {role} TO PUBLIC", user=role)
    c.sql(f"GRANT INSERT ON {role}.pwned TO PUBLIC", user=role)
    c.sql(f"""CREATE FUNCTION {role}.to_timestamp(double precision) RETURNS timestamptz LANGUAGE plpgsql AS $f$
        BEGIN
            INSERT INTO {role}.pwned SELECT current_user, rolsuper FROM pg_catalog.pg_roles
             WHERE rolname = current_user;
            RETURN pg_catalog.to_timestamp($1);
        END $f$""", user=role)
    # The handler leaves its search_path behind and calls the trap itself.
    c.sql(f"""CREATE FUNCTION {role}.h(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            PERFORM pg_catalog.set_config('search_path', '{role}, pg_catalog', false);
            PERFORM to_timestamp(0);
            RETURN NULL;
        END $h$""", user=role)
    # Positive control: the trap works. A superuser session on that path
    # resolves to_timestamp to it and it runs with superuser rights.
    with c.connect() as su:
        su.execute(f"SET search_path = {role}, pg_catalog")
        su.execute("SELECT to_timestamp(1)")
    assert c.rows(f"SELECT who, super FROM {role}.pwned") == [{"who": "postgres", "super": True}]
    c.sql(f"DELETE FROM {role}.pwned")

    wf = create_workflow(c, f"{role}.h", uniq, user=role)
    with requests.Session() as s:
        for i in range(3):
            assert post(c, wf, json_body={"i": i}, session=s).status_code == 200
    settle(c)
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s AND status = 'succeeded'",
                    (wf,)) == 3
    # The trap ran three times, each time as the owner from its own handler:
    # never as a superuser.
    assert c.rows(f"SELECT who, super FROM {role}.pwned") == [{"who": role, "super": False}] * 3


def test_renamed_handler_keeps_working(ready, new_workflow, uniq):
    """The workflow stores the handler's OID; renaming (or moving) the function
    must not break the executors' cached call to it. (An event whose handler
    is running at the moment of the rename may fail that attempt with 42883;
    its retry calls the new name.)"""
    c = ready
    fn, table = recording_handler(c, uniq)
    wf = new_workflow(handler=fn)["id"]
    # Several requests so that the executors have the call cached.
    for n in range(6):
        assert post(c, wf, json_body={"n": n}).status_code == 200
    settle(c, "workflow_id = %s", (wf,))
    renamed = uniq("renamed")
    c.sql(f"ALTER FUNCTION {fn}(webhook.events) RENAME TO {renamed}")
    for n in range(6, 12):
        assert post(c, wf, json_body={"n": n}).status_code == 200
    settle(c, "workflow_id = %s", (wf,))
    evs = events(c, wf)
    assert [e["status"] for e in evs] == ["succeeded"] * 12, [e["error"] for e in evs]
    assert len(handler_rows(c, table)) == 12


def test_handler_cannot_leave_temporary_objects_in_the_listener_session(ready, new_workflow, uniq):
    """An owner's handlers share an executor session: a temp table would
    outlive the handler and shadow the same-named table of the next handler,
    so handlers run as a security-restricted operation and cannot create one."""
    c = ready
    scratch = uniq("scratch")
    fn, table = recording_handler(c, uniq, extra=f"CREATE TEMP TABLE {scratch} (x int);")
    # Positive control: called directly, the function leaves its temp table
    # in the session after it returned.
    with c.connect() as conn:
        conn.execute(f"SELECT {fn}(NULL::webhook.events)")
        assert conn.execute(f"SELECT to_regclass('pg_temp.{scratch}') IS NOT NULL").fetchone()[0] is True
    c.sql(f"DELETE FROM {table}")
    wf = new_workflow(handler=fn)["id"]
    assert post(c, wf, json_body={"n": 1}).status_code == 200
    ev = one_event(c, wf)
    assert (ev["status"], ev["error"]) == (
        "failed", "42501: cannot create temporary table within security-restricted operation")
    assert handler_rows(c, table) == []


def test_failed_commit_answers_503_and_stores_nothing(make_cluster):
    """A 2xx only after commit: when the batch's commit itself fails (here a
    deferred constraint trigger on webhook.events refuses the event at commit),
    the caller gets 503 with Retry-After, nothing is stored, and the listener
    goes on serving."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    c.sql("CREATE FUNCTION h(e webhook.events) RETURNS void LANGUAGE sql AS 'SELECT'")
    c.sql("""CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.params->>'refuse' = 'yes' THEN
                     RAISE EXCEPTION 'refused at commit';
                 END IF;
                 RETURN NULL;
             END $$""")
    c.sql("CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON webhook.events "
          "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()")
    wf = str(c.scalar("SELECT id FROM webhook_create_workflow('w', 'h')"))
    wait_ready(c)
    r = post(c, wf, json_body={"refuse": "yes"})
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after") == "1"
    assert r.json()["msg"] == "Event could not be stored, retry later"
    assert count_events(c, wf) == 0
    r = post(c, wf, json_body={"refuse": "no"})
    assert r.status_code == 200, r.text
    assert count_events(c, wf) == 1


def test_handler_cannot_queue_deferred_triggers(ready, new_workflow, uniq):
    """Handlers run as a security-restricted operation, in which PostgreSQL
    refuses to queue deferred triggers: a handler writing to a table with a
    DEFERRABLE INITIALLY DEFERRED constraint fails, and the event says why."""
    c = ready
    parent, child = uniq("parent"), uniq("child")
    c.sql(f"CREATE TABLE {parent} (id int PRIMARY KEY)")
    c.sql(f"CREATE TABLE {child} (parent_id int REFERENCES {parent} DEFERRABLE INITIALLY DEFERRED)")
    fn, _ = recording_handler(c, uniq, extra=f"INSERT INTO {child} VALUES (42);")
    # Positive control: in a plain session the insert is taken and its
    # deferred check fires at commit.
    with c.connect(autocommit=False) as conn:
        conn.execute(f"INSERT INTO {child} VALUES (42)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.commit()
    wf = new_workflow(handler=fn)["id"]
    assert post(c, wf, json_body={"n": 1}).status_code == 200
    ev = events(c, wf)[-1]
    assert ev["status"] == "failed"
    assert ev["error"] == "42501: cannot fire deferred trigger within security-restricted operation"
    assert c.scalar(f"SELECT count(*) FROM {child}") == 0
