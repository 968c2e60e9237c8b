"""Nothing the extension runs with elevated rights resolves a function,
aggregate or operator that a tenant planted in ``public``.

The attacker, mallory, is a webhook_admin member that may CREATE in schema
``public`` (PostgreSQL 15's default for the database owner; every role's in a
database upgraded from 14). Each planted object logs who called it into
``mallory.calls`` and tries ``ALTER ROLE mallory SUPERUSER``, which succeeds
only when a superuser calls it. Every test first shows, as a positive control,
that the planted object is what an ordinary session with the default
search_path resolves; then the attack must log nothing and leave mallory
without SUPERUSER.
"""


import pytest

from conftest import uniq
from hookkit import post, settle
from tenantkit import drop_tenants, make_tenant, private  # noqa: F401  (fixture)

ESCALATE = """
    INSERT INTO {m}.calls (fn, who) VALUES ('{fn}', current_user);
    BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{m}');
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
"""

@pytest.fixture
def tenants(private):
    """alice and bob (webhook_admin tenants) and mallory (a webhook_admin member
    with CREATE on public and a world-writable call log). Dropped afterwards,
    with everything mallory planted."""
    names = {k: uniq(k) for k in ("alice", "bob", "mallory")}
    made = {k: make_tenant(private, n) for k, n in names.items()}
    m = names["mallory"]
    private.sql(f'GRANT CREATE ON SCHEMA public TO "{m}"')
    made["mallory"].sql(f"CREATE TABLE {m}.calls (fn text, who text, at timestamptz DEFAULT clock_timestamp())")
    made["mallory"].sql(f"GRANT USAGE ON SCHEMA {m} TO PUBLIC")
    made["mallory"].sql(f"GRANT INSERT, SELECT ON {m}.calls TO PUBLIC")
    try:
        yield made
    finally:
        drop_tenants(private, names.values())

def assert_escalates_when_a_superuser_calls(private, mallory, query: str, fn: str) -> None:
    """Positive control of the trap itself: ``query``, run by the superuser on
    the default search_path, calls the planted ``fn``, which logs the call and
    makes mallory a superuser. Done in a transaction that is rolled back, so
    afterwards neither the log row nor SUPERUSER remain."""
    before = calls(private, mallory)
    with private.connect() as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(query)
            logged = conn.execute(f"SELECT fn, who FROM {mallory.name}.calls ORDER BY at").fetchall()
            assert [tuple(r) for r in logged] == before + [(fn, "postgres")], logged
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                                (mallory.name,)).fetchone()[0] is True, "the trap does not escalate"
    assert calls(private, mallory) == before
    assert mallory.is_superuser() is False


def calls(private, mallory) -> list[tuple[str, str]]:
    return [tuple(r) for r in private.sql(f"SELECT fn, who FROM {mallory.name}.calls ORDER BY at")]

def plant_format(mallory, args: str = "fmt text, a name, b name", call: str = "fmt, a, b"):
    m = mallory.name
    mallory.sql(f"""
        CREATE FUNCTION public.format({args}) RETURNS text LANGUAGE plpgsql AS $f$
        BEGIN {ESCALATE.format(m=m, fn='format')}
            RETURN pg_catalog.format({call});
        END $f$""")

def test_planted_jsonb_build_object_is_not_called_by_the_listener(private, tenants):
    """The listener reads a workflow's verifications with
    jsonb_build_object('method', text, 'scheme', text, 'secrets', text[],
    'options', jsonb) (src/pg/catalog.rs). An overload with exactly those
    argument types beats pg_catalog's variadic one on any path that reaches
    it, so the listener must neither leave the call unqualified nor search
    public."""
    alice, mallory = tenants["alice"], tenants["mallory"]
    m = mallory.name
    mallory.sql(f"""
        CREATE FUNCTION public.jsonb_build_object(k1 text, v1 text, k2 text, v2 text, k3 text, v3 text[],
                                                  k4 text, v4 jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
        BEGIN {ESCALATE.format(m=m, fn='jsonb_build_object')}
            RETURN pg_catalog.jsonb_build_object(k1, v1, k2, v2, k3, v3, k4, v4);
        END $f$""")
    expression = ("SELECT jsonb_build_object('method', v.method, 'scheme', v.scheme, 'secrets', v.secrets, "
                  "'options', v.options) FROM webhook.verifications v")
    wf = alice.create_workflow()
    alice.sql("SELECT webhook_set_verification(%s, 'bearer', secret => 't0k')", (wf,))
    # Positive control: the listener's expression, on the default search_path,
    # calls the planted function.
    assert alice.scalar(expression)["scheme"] == "bearer"
    assert calls(private, mallory) == [("jsonb_build_object", alice.name)]
    assert_escalates_when_a_superuser_calls(private, mallory, expression, "jsonb_build_object")

    r = post(private, wf, json_body={"order": 1}, headers={"Authorization": "Bearer t0k"})
    assert r.status_code == 200, r.text
    assert private.scalar("SELECT params FROM webhook.events WHERE workflow_id = %s", (wf,)) == {"order": 1}
    assert calls(private, mallory) == [("jsonb_build_object", alice.name)]
    assert mallory.is_superuser() is False

def test_planted_operator_is_not_used_by_the_listener(private, tenants):
    """The listener joins a workflow's owner (regrole) to pg_roles.oid
    (src/pg/catalog.rs). An `=` on (oid, regrole) beats pg_catalog's
    `oid = oid` with its implicit cast, so the listener must neither write
    the comparison unqualified nor search public."""
    alice, mallory = tenants["alice"], tenants["mallory"]
    m = mallory.name
    mallory.sql(f"""
        CREATE FUNCTION {m}.oid_eq_regrole(a oid, b regrole) RETURNS boolean LANGUAGE plpgsql AS $f$
        BEGIN {ESCALATE.format(m=m, fn='=')}
            RETURN a OPERATOR(pg_catalog.=) b::oid;
        END $f$""")
    mallory.sql(f"CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regrole, FUNCTION = {m}.oid_eq_regrole)")
    wf = alice.create_workflow()
    expression = (f"SELECT r.oid = w.owner FROM webhook.workflows w, pg_catalog.pg_roles r "
                  f"WHERE w.id = '{wf}' AND r.rolname = '{alice.name}'")
    # Positive control: the comparison as one would write it, on the default
    # search_path, uses the planted operator.
    assert alice.scalar(expression) is True
    assert calls(private, mallory) == [("=", alice.name)]
    assert_escalates_when_a_superuser_calls(private, mallory, expression, "=")

    r = post(private, wf, json_body={"n": 2})
    assert r.status_code == 200, r.text
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 1
    assert calls(private, mallory) == [("=", alice.name)]
    assert mallory.is_superuser() is False

def test_planted_to_jsonb_does_not_run_inside_another_tenants_handler(private, tenants):
    alice, bob, mallory = tenants["alice"], tenants["bob"], tenants["mallory"]
    m = mallory.name
    bob.sql(f"CREATE TABLE {bob.name}.got (event jsonb)")
    bob.sql(f"""
        CREATE FUNCTION {bob.name}.on_event(e jsonb) RETURNS jsonb LANGUAGE plpgsql AS $h$
        BEGIN
            INSERT INTO {bob.name}.got VALUES (e);
            RETURN e->'params';
        END $h$""")
    mallory.sql(f"""
        CREATE FUNCTION public.to_jsonb(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $f$
        BEGIN {ESCALATE.format(m=m, fn='to_jsonb')}
            RETURN COALESCE(pg_catalog.to_jsonb(e), '{{}}') || '{{"forged": true}}';
        END $f$""")
    # Positive control: the default search_path finds the planted to_jsonb.
    assert alice.scalar("SELECT to_jsonb(NULL::webhook.events)") == {"forged": True}
    assert calls(private, mallory) == [("to_jsonb", alice.name)]
    assert_escalates_when_a_superuser_calls(private, mallory, "SELECT to_jsonb(NULL::webhook.events)", "to_jsonb")

    wf = bob.create_workflow(handler=f"{bob.name}.on_event")
    r = post(private, wf, json_body={"secret": "bob's"})
    assert r.status_code == 200, r.text
    settle(private)
    got = bob.scalar(f"SELECT event FROM {bob.name}.got")
    assert got["params"] == {"secret": "bob's"}
    assert got["workflow_id"] == wf
    assert "forged" not in got
    assert calls(private, mallory) == [("to_jsonb", alice.name)]
    assert mallory.is_superuser() is False

def test_planted_aggregate_is_not_used_when_capturing_a_sample(private, tenants):
    alice, mallory = tenants["alice"], tenants["mallory"]
    m = mallory.name
    wf = alice.create_workflow()
    alice.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"a\": 1}')", (wf,))
    alice.sql("SELECT count(*) FROM webhook_set_required(%s, ARRAY['a'])", (wf,))
    mallory.sql(f"""
        CREATE FUNCTION {m}.step(acc text[], v text) RETURNS text[] LANGUAGE plpgsql AS $f$
        BEGIN {ESCALATE.format(m=m, fn='array_agg')}
            RETURN pg_catalog.array_append(acc, v);
        END $f$""")
    mallory.sql(f"CREATE AGGREGATE public.array_agg(text) (SFUNC = {m}.step, STYPE = text[])")
    # Positive control.
    assert alice.scalar("SELECT array_agg(x) FROM (VALUES ('v'::text)) t(x)") == ["v"]
    assert calls(private, mallory) == [("array_agg", alice.name)]
    assert_escalates_when_a_superuser_calls(private, mallory,
                                            "SELECT array_agg(x) FROM (VALUES ('v'::text)) t(x)", "array_agg")

    alice.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = post(private, wf, json_body={"a": 5, "b": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["msg"] == "Sample captured"
    params = alice.rows("SELECT name, required FROM webhook.parameters WHERE workflow_id = %s "
                        "AND source = 'body' ORDER BY position", (wf,))
    assert params == [{"name": "a", "required": True}, {"name": "b", "required": False}]
    assert calls(private, mallory) == [("array_agg", alice.name)]
    assert mallory.is_superuser() is False

def test_superuser_calling_the_sql_api_runs_no_planted_code(private, tenants):
    alice, mallory = tenants["alice"], tenants["mallory"]
    plant_format(mallory)
    plant_format(mallory, args="fmt text, a name", call="fmt, a")
    assert alice.scalar("SELECT format('%I', 'x'::name)") == "x"
    assert calls(private, mallory) == [("format", alice.name)]
    assert_escalates_when_a_superuser_calls(private, mallory, "SELECT format('%I', 'x'::name)", "format")

    wf = alice.create_workflow()
    # webhook_trigger runs the pipeline (workflow load, event, handler) in the
    # caller's session; a DBA calls it on the default search_path.
    out = private.scalar("SELECT webhook_trigger(%s, '{\"k\": 1}')", (wf,))
    assert out["status"] == 200 and out["body"]["msg"] == "success"
    event_id = out["event_id"]
    assert private.scalar("SELECT webhook_replay(%s)->'status'", (event_id,)) == 200
    # A duplicate name reaches the error path that formats current_user.
    private.sql("SELECT webhook_create_workflow('dup', %s::regproc)", (alice.handler,))
    err = private.sql_error("SELECT webhook_create_workflow('dup', %s::regproc)", (alice.handler,),
                            sqlstate="42710")
    assert err["detail"] == "Role postgres already owns a workflow with this name."
    assert calls(private, mallory) == [("format", alice.name)]
    assert mallory.is_superuser() is False
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 2
