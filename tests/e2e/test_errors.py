"""Every error path of the SQL API: SQLSTATE, message, DETAIL and HINT,
and that a failing call leaves the rows exactly as they were."""

import json
import uuid

import pytest

MISSING = "00000000-0000-4000-8000-000000000000"

# Every function taking a workflow id, called with %s as the id.
WORKFLOW_CALLS = [
    "SELECT webhook_url(%s::uuid)",
    "SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1}')",
    "SELECT webhook_sample_from_kv(%s::uuid, 'a=1')",
    "SELECT webhook_set_required(%s::uuid, ARRAY['a'])",
    "SELECT webhook_set_full_body(%s::uuid, true)",
    "SELECT webhook_set_response(%s::uuid, 'default')",
    "SELECT webhook_rename_workflow(%s::uuid, 'x')",
    "SELECT webhook_enable_workflow(%s::uuid)",
    "SELECT webhook_disable_workflow(%s::uuid)",
    "SELECT webhook_set_handler(%s::uuid, 'public.e2e_handler'::regproc)",
    "SELECT webhook_drop_workflow(%s::uuid)",
]


def snapshot(cluster, wf_id):
    """Everything a call could change about one workflow."""
    wf = cluster.row("SELECT * FROM webhook.workflows WHERE id = %s::uuid", (wf_id,))
    params = cluster.rows("SELECT * FROM webhook.parameters WHERE workflow_id = %s::uuid "
                          "ORDER BY source, position", (wf_id,))
    return wf, params


@pytest.fixture
def prepared(cluster, new_workflow):
    """A workflow with parameters, one required, and a custom response."""
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)",
                (wf["id"], '{"a": 1, "b": "x", "c": {"d": true}}'))
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['a'])", (wf["id"],))
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'custom', body => '{\"ok\": \"{{a}}\"}', status => 202)",
                (wf["id"],))
    return wf


# --------------------------------------------------------------------------
# Unknown workflow / NULL id
# --------------------------------------------------------------------------
@pytest.mark.parametrize("call", WORKFLOW_CALLS)
def test_unknown_workflow_is_42704_with_hint(cluster, handler, call):
    err = cluster.sql_error(call, (MISSING,), sqlstate="42704")
    assert err["message"] == f"workflow {MISSING} does not exist"
    assert "webhook_find_workflow" in err["hint"]


@pytest.mark.parametrize("call", WORKFLOW_CALLS + ["SELECT webhook_drop_workflow(%s::uuid, if_exists => true)"])
def test_null_workflow_id_is_22004(cluster, handler, call):
    err = cluster.sql_error(call, (None,), sqlstate="22004")
    assert (err["message"], err["detail"], err["hint"]) == ("workflow id must not be NULL", None, None), err


# --------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------
EXAMPLE = "CREATE FUNCTION my_handler(event webhook.events)"
# The HINT of every refused handler.
EXAMPLE_HINT = ("For example: CREATE FUNCTION my_handler(event webhook.events) RETURNS jsonb "
                "LANGUAGE sql AS $h$ SELECT event.params $h$; then pass 'my_handler'::regproc.")


@pytest.mark.parametrize("definition, detail", [
    ("CREATE FUNCTION {name}() RETURNS jsonb LANGUAGE sql AS $h$ SELECT '{{}}'::jsonb $h$", "It takes ()."),
    ("CREATE FUNCTION {name}(e webhook.events, extra int) RETURNS jsonb LANGUAGE sql AS $h$ SELECT e.params $h$",
     None),
    ("CREATE FUNCTION {name}(x integer) RETURNS jsonb LANGUAGE sql AS $h$ SELECT to_jsonb(x) $h$",
     "It takes (x integer)."),
    ("CREATE FUNCTION {name}(t text) RETURNS jsonb LANGUAGE sql AS $h$ SELECT to_jsonb(t) $h$", None),
    ("CREATE PROCEDURE {name}(j json) LANGUAGE sql AS $h$ SELECT 1 $h$", None),
])
def test_handler_with_wrong_arguments_is_42P13_with_example(cluster, new_handler, uniq, definition, detail):
    h = new_handler(body=definition)
    name = uniq("wf")
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc)", (name, h), sqlstate="42P13")
    assert "must take exactly one argument of type webhook.events or jsonb" in err["message"]
    assert EXAMPLE in err["hint"]
    if detail:
        assert err["detail"] == detail
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


def test_set_returning_handler_is_42P13(cluster, new_handler, uniq):
    h = new_handler(body="CREATE FUNCTION {name}(e webhook.events) RETURNS SETOF jsonb "
                         "LANGUAGE sql AS $h$ SELECT e.params $h$")
    name = uniq("wf")
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc)", (name, h), sqlstate="42P13")
    assert (err["message"], err["hint"]) == (
        f"handler {h}(webhook.events) must not return a set", EXAMPLE_HINT), err
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


@pytest.mark.parametrize("func", ["pg_catalog.bool_and", "pg_catalog.row_number"])
def test_aggregate_or_window_handler_is_42809(cluster, uniq, func):
    name = uniq("wf")
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc)", (name, func), sqlstate="42809")
    assert "aggregate or window function" in err["message"]
    assert EXAMPLE in err["hint"]
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


def test_a_handler_that_does_not_exist_is_42883_and_changes_nothing(cluster, new_handler, new_workflow, uniq):
    """A handler given as a regproc whose function does not exist (dropped
    after the regproc was taken, or an OID that never named one): both
    webhook_create_workflow and webhook_set_handler answer 42883 naming the
    OID, with the example as HINT, and create or change nothing. (A name
    that names no function never reaches them: its cast to regproc fails
    first, in PostgreSQL.)"""
    dropped = new_handler()
    oid = cluster.scalar("SELECT %s::regproc::oid::int8", (dropped,))
    cluster.sql(f"DROP FUNCTION {dropped}")
    wf = new_workflow()
    for missing in (oid, 999999999):
        expected = (f"handler function with OID {missing} does not exist", None, EXAMPLE_HINT)
        name = uniq("wf")
        err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::int8::oid::regproc)", (name, missing),
                                sqlstate="42883")
        assert (err["message"], err["detail"], err["hint"]) == expected, err
        assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0
        before = snapshot(cluster, wf["id"])
        err = cluster.sql_error("SELECT webhook_set_handler(%s::uuid, %s::int8::oid::regproc)", (wf["id"], missing),
                                sqlstate="42883")
        assert (err["message"], err["detail"], err["hint"]) == expected, err
        assert snapshot(cluster, wf["id"]) == before


def test_null_handler_is_22004(cluster, uniq):
    name = uniq("wf")
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, NULL)", (name,), sqlstate="22004")
    assert (err["message"], err["hint"]) == ("handler must not be NULL", EXAMPLE_HINT), err
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


def test_set_handler_rejects_bad_handler_and_keeps_old(cluster, new_workflow, new_handler, handler):
    wf = new_workflow()
    bad = new_handler(body="CREATE FUNCTION {name}(x int) RETURNS int LANGUAGE sql AS $h$ SELECT x $h$")
    before = snapshot(cluster, wf["id"])
    err = cluster.sql_error("SELECT webhook_set_handler(%s::uuid, %s::regproc)", (wf["id"], bad), sqlstate="42P13")
    assert EXAMPLE in err["hint"]
    assert snapshot(cluster, wf["id"]) == before


def test_direct_insert_with_bad_handler_is_rejected(cluster, new_handler, uniq):
    bad = new_handler(body="CREATE FUNCTION {name}(x int) RETURNS int LANGUAGE sql AS $h$ SELECT x $h$")
    name = uniq("wf")
    err = cluster.sql_error("INSERT INTO webhook.workflows (name, handler) VALUES (%s, %s::regproc)",
                            (name, bad), sqlstate="42P13")
    assert (err["message"], err["detail"], err["hint"]) == (
        f"handler {bad}(integer) must take exactly one argument of type webhook.events "
        "or jsonb", "It takes (x integer).", EXAMPLE_HINT), err
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


# --------------------------------------------------------------------------
# Names and methods
# --------------------------------------------------------------------------
def test_duplicate_name_is_42710(cluster, new_workflow, handler):
    wf = new_workflow()
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc)", (wf["name"], handler),
                            sqlstate="42710")
    assert wf["name"] in err["message"] and "already exists" in err["message"]
    assert err["hint"]
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (wf["name"],)) == 1


def test_rename_to_existing_name_is_42710_and_keeps_name(cluster, new_workflow):
    a, b = new_workflow(), new_workflow()
    before = snapshot(cluster, b["id"])
    err = cluster.sql_error("SELECT webhook_rename_workflow(%s::uuid, %s)", (b["id"], a["name"]), sqlstate="42710")
    assert "already exists" in err["message"]
    assert snapshot(cluster, b["id"]) == before


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_names_are_22023(cluster, new_workflow, handler, bad):
    cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc)", (bad, handler), sqlstate="22023")
    wf = new_workflow()
    before = snapshot(cluster, wf["id"])
    cluster.sql_error("SELECT webhook_rename_workflow(%s::uuid, %s)", (wf["id"], bad), sqlstate="22023")
    assert snapshot(cluster, wf["id"]) == before


@pytest.mark.parametrize("methods", [[], ["FETCH"], ["GET", "TRACE"], [None]])
def test_invalid_methods_are_22023(cluster, handler, uniq, methods):
    name = uniq("wf")
    err = cluster.sql_error("SELECT webhook_create_workflow(%s, %s::regproc, methods => %s::text[])",
                            (name, handler, methods), sqlstate="22023")
    assert err["hint"]
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE name = %s", (name,)) == 0


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
def test_unknown_parameter_names_are_42704_and_nothing_changes(cluster, prepared):
    before = snapshot(cluster, prepared["id"])
    err = cluster.sql_error("SELECT webhook_set_required(%s::uuid, ARRAY['b', 'nope', 'c.d', 'c.zzz'])",
                            (prepared["id"],), sqlstate="42704")
    assert err["message"] == f"unknown parameter(s) for workflow {prepared['id']}: c.zzz, nope", err
    for known in ("a", "b", "c", "c.d"):
        assert known in err["detail"]
    assert err["detail"] == "Known parameters: a, b, c, c.d.", err
    assert "webhook_sample_from_json" in err["hint"]
    assert snapshot(cluster, prepared["id"]) == before
    # Same with required => false: a stays required.
    cluster.sql_error("SELECT webhook_set_required(%s::uuid, ARRAY['a', 'nope'], false)",
                      (prepared["id"],), sqlstate="42704")
    assert snapshot(cluster, prepared["id"]) == before


def test_set_required_without_parameters(cluster, new_workflow):
    wf = new_workflow()
    err = cluster.sql_error("SELECT webhook_set_required(%s::uuid, ARRAY['a'])", (wf["id"],), sqlstate="42704")
    assert "no parameters" in err["detail"]


@pytest.mark.parametrize("params, state", [("{}", "22023"), (None, "22023"), ("{NULL}", "42704")])
def test_set_required_empty_or_null_names(cluster, prepared, params, state):
    before = snapshot(cluster, prepared["id"])
    cluster.sql_error("SELECT webhook_set_required(%s::uuid, %s::text[])", (prepared["id"], params), sqlstate=state)
    assert snapshot(cluster, prepared["id"]) == before


def test_set_required_null_flag_is_22004(cluster, prepared):
    before = snapshot(cluster, prepared["id"])
    cluster.sql_error("SELECT webhook_set_required(%s::uuid, ARRAY['a'], NULL)", (prepared["id"],), sqlstate="22004")
    assert snapshot(cluster, prepared["id"]) == before


@pytest.mark.parametrize("sample, found", [('"text"', "string"), ("42", "number"),
                                           ("true", "boolean"), ("null", "null")])
def test_non_object_json_sample_is_22023_with_hint(cluster, prepared, sample, found):
    before = snapshot(cluster, prepared["id"])
    err = cluster.sql_error("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)", (prepared["id"], sample),
                            sqlstate="22023")
    assert err["message"] == "a JSON sample must be an object or an array", err
    assert found in err["detail"]
    assert err["hint"] and '"order_id"' in err["hint"]
    assert snapshot(cluster, prepared["id"]) == before


def test_null_sample_is_22004(cluster, prepared):
    before = snapshot(cluster, prepared["id"])
    err = cluster.sql_error("SELECT webhook_sample_from_json(%s::uuid, NULL)", (prepared["id"],), sqlstate="22004")
    assert err["hint"]
    cluster.sql_error("SELECT webhook_sample_from_kv(%s::uuid, NULL)", (prepared["id"],), sqlstate="22004")
    assert snapshot(cluster, prepared["id"]) == before


@pytest.mark.parametrize("text, line", [
    ("a=1\njunk line\nb=2", 2),
    ("\n\n# comment\nno separator here", 4),
    ("=1", 1),
    (" : value", 1),
])
def test_malformed_kv_is_22P02_naming_the_line(cluster, prepared, text, line):
    before = snapshot(cluster, prepared["id"])
    err = cluster.sql_error("SELECT webhook_sample_from_kv(%s::uuid, %s)", (prepared["id"], text), sqlstate="22P02")
    everything = f"{err['message']} {err['detail']}".lower()
    assert f"line {line}" in everything, err
    assert err["hint"] and "key=value" in err["hint"]
    assert snapshot(cluster, prepared["id"]) == before


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_kv_is_22P02(cluster, prepared, text):
    before = snapshot(cluster, prepared["id"])
    cluster.sql_error("SELECT webhook_sample_from_kv(%s::uuid, %s)", (prepared["id"], text), sqlstate="22P02")
    assert snapshot(cluster, prepared["id"]) == before


@pytest.mark.parametrize("call, state", [
    ("SELECT webhook_set_full_body(%s::uuid, NULL)", "22004"),
    ("SELECT webhook_set_full_body(%s::uuid, true, param_name => '')", "22023"),
    ("SELECT webhook_set_full_body(%s::uuid, true, param_name => NULL)", "22023"),
])
def test_set_full_body_bad_arguments(cluster, prepared, call, state):
    before = snapshot(cluster, prepared["id"])
    cluster.sql_error(call, (prepared["id"],), sqlstate=state)
    assert snapshot(cluster, prepared["id"]) == before


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------
BAD_RESPONSES = [
    # (call arguments after the id, SQLSTATE, text expected in message/detail/hint)
    ("'fancy'", "22023", "invalid response method"),
    ("NULL", "22023", "invalid response method"),
    ("'custom', content_type => 'application/octet-stream', body => 'x'", "22023", "content type"),
    ("'custom', content_type => 'image/png', body => 'x'", "22023", "content type"),
    ("'custom', body => '{\"a\": }'", "22023", "JSON"),
    ("'custom', content_type => 'application/json', body => 'not json {{a}}'", "22023", "JSON"),
    ("'custom', body => '{\"a\": \"{{unterminated\"}'", "22023", "placeholder"),
    ("'custom', content_type => 'text/plain', body => 'x {{}} y'", "22023", "placeholder"),
    ("'custom'", "22023", "needs a body"),
    ("'default', body => 'x'", "22023", "custom"),
    ("'default', status => 201", "22023", "custom"),
    ("'workflow', headers => '{}'", "22023", "custom"),
    ("'default', timeout => '1 second'", "22023", "workflow"),
    ("'custom', body => 'x', content_type => 'text/plain', failure_status => 500", "22023", "workflow"),
    ("'custom', content_type => 'text/plain', body => 'x', status => 199", "22023", "status"),
    ("'custom', content_type => 'text/plain', body => 'x', status => 600", "22023", "status"),
    ("'custom', content_type => 'text/plain', body => 'x', status => -1", "22023", "status"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '[1]'", "22023", "object"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '\"x\"'", "22023", "object"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"X-A\": 1}'", "22023", "X-A"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"bad header\": \"v\"}'", "22023",
     "bad header"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"X-A\": \"a\\nb\"}'", "22023", "X-A"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"Content-Length\": \"5\"}'", "22023",
     "Content-Length"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"transfer-encoding\": \"chunked\"}'",
     "22023", "transfer-encoding"),
    ("'custom', content_type => 'text/plain', body => 'x', headers => '{\"Content-Type\": \"text/html\"}'",
     "22023", "Content-Type"),
    ("'workflow', failure_status => 100", "22023", "status"),
    ("'workflow', timeout => '-1 second'", "22023", "timeout"),
    ("'workflow', timeout => '0'", "22023", "timeout"),
]


@pytest.mark.parametrize("args, state, text", BAD_RESPONSES)
def test_invalid_response_config_changes_nothing(cluster, prepared, args, state, text):
    before = snapshot(cluster, prepared["id"])
    err = cluster.sql_error(f"SELECT webhook_set_response(%s::uuid, {args})", (prepared["id"],), sqlstate=state)
    everything = " ".join(str(err[k]) for k in ("message", "detail", "hint"))
    assert text.lower() in everything.lower(), err
    assert snapshot(cluster, prepared["id"]) == before


def test_invalid_response_method_has_hint(cluster, prepared):
    err = cluster.sql_error("SELECT webhook_set_response(%s::uuid, 'fancy')", (prepared["id"],), sqlstate="22023")
    for m in ("default", "custom", "workflow"):
        assert m in err["hint"]


def test_unsupported_content_type_has_hint(cluster, prepared):
    err = cluster.sql_error("SELECT webhook_set_response(%s::uuid, 'custom', content_type => 'application/pdf', "
                            "body => 'x')", (prepared["id"],), sqlstate="22023")
    assert "application/pdf" in err["message"]
    assert "application/json" in err["hint"]


def test_invalid_json_template_has_detail(cluster, prepared):
    err = cluster.sql_error("SELECT webhook_set_response(%s::uuid, 'custom', body => %s)",
                            (prepared["id"], '{"a": 1,}'), sqlstate="22023")
    assert err["detail"] and "json" in err["detail"].lower()
    assert "{{order_id}}" in err["hint"]


@pytest.mark.parametrize("definition, detail", [
    ("CREATE FUNCTION {name}(e webhook.events) RETURNS void LANGUAGE sql AS $h$ SELECT $h$", "void"),
    ("CREATE FUNCTION {name}(e webhook.events) RETURNS integer LANGUAGE sql AS $h$ SELECT 1 $h$", "integer"),
    ("CREATE PROCEDURE {name}(e webhook.events) LANGUAGE plpgsql AS $h$ BEGIN NULL; END $h$", "procedure"),
])
def test_workflow_method_needs_handler_returning_a_body(cluster, new_workflow, new_handler, definition, detail):
    wf = new_workflow(handler=new_handler(body=definition))
    before = snapshot(cluster, wf["id"])
    err = cluster.sql_error("SELECT webhook_set_response(%s::uuid, 'workflow')", (wf["id"],), sqlstate="42P13")
    assert detail in err["detail"]
    assert "jsonb" in err["hint"]
    assert snapshot(cluster, wf["id"]) == before


@pytest.mark.parametrize("ret", ["jsonb", "json", "text", "xml"])
def test_workflow_method_accepts_body_returning_handlers(cluster, new_workflow, new_handler, ret):
    h = new_handler(body=f"CREATE FUNCTION {{name}}(e webhook.events) RETURNS {ret} LANGUAGE sql "
                         f"AS $h$ SELECT NULL::{ret} $h$")
    wf = new_workflow(handler=h)
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'workflow')", (wf["id"],))
    assert cluster.scalar("SELECT response_method FROM webhook.workflows WHERE id = %s::uuid",
                          (wf["id"],)) == "workflow"


# --------------------------------------------------------------------------
# GUCs
# --------------------------------------------------------------------------
@pytest.mark.parametrize("setting, value", [
    ("webhook.public_base_url", "ftp://x"),
    ("webhook.public_base_url", "hooks.example.com"),
    ("webhook.public_base_url", "https://x/?a=1"),
    ("webhook.listen_addresses", "example.com"),
    ("webhook.listen_addresses", "127.0.0.1,"),
    ("webhook.listen_addresses", "300.1.1.1"),
    ("webhook.port", "70000"),
    ("webhook.port", "0"),
    ("webhook.workers", "0"),
    ("webhook.max_body_size", "0"),
])
def test_alter_system_rejects_invalid_values(cluster, setting, value):
    auto_conf = cluster.datadir + "/postgresql.auto.conf"
    before = open(auto_conf).read()
    err = cluster.sql_error(f"ALTER SYSTEM SET {setting} = '{value}'", sqlstate="22023")
    assert setting in err["message"]
    assert open(auto_conf).read() == before


def test_listen_addresses_hostname_error_explains(cluster):
    err = cluster.sql_error("ALTER SYSTEM SET webhook.listen_addresses = 'example.com'", sqlstate="22023")
    assert (err["message"], err["detail"]) == (
        'invalid value for parameter "webhook.listen_addresses": "example.com"',
        '"example.com" is not an IP address, "localhost" or "*".'), err


def test_public_base_url_error_explains(cluster):
    err = cluster.sql_error("ALTER SYSTEM SET webhook.public_base_url = 'ftp://x'", sqlstate="22023")
    assert (err["message"], err["detail"]) == (
        'invalid value for parameter "webhook.public_base_url": "ftp://x"',
        "It must start with http:// or https://."), err


def test_set_public_base_url_in_session_fails(cluster):
    # public_base_url is server-wide (reloads on SIGHUP): a session cannot set
    # it, whatever the value (PostgreSQL refuses before checking it).
    for value in ("ftp://x", "https://hooks.example.com"):
        err = cluster.sql_error(f"SET webhook.public_base_url = '{value}'", sqlstate="55P02")
        assert err["message"] == 'parameter "webhook.public_base_url" cannot be changed now', err
    assert cluster.scalar("SHOW webhook.public_base_url") == ""


def test_set_port_fails(cluster):
    # PostgreSQL refuses a postmaster setting in a session before it checks the
    # value: out of range or not, the answer is 55P02.
    for value in ("70000", "1"):
        err = cluster.sql_error(f"SET webhook.port = {value}", sqlstate="55P02")
        assert err["message"] == 'parameter "webhook.port" cannot be changed without restarting the server', err
    assert cluster.scalar("SHOW webhook.port") == str(cluster.http_port)


@pytest.mark.parametrize("setting", ["webhook.database", "webhook.listen_addresses", "webhook.workers",
                                     "webhook.tls_cert_file", "webhook.tls_key_file"])
def test_postmaster_settings_cannot_change_in_session(cluster, setting):
    value = {"webhook.workers": "1", "webhook.listen_addresses": "127.0.0.1"}.get(setting, "x")
    before = cluster.scalar(f"SHOW {setting}")
    err = cluster.sql_error(f"SET {setting} = '{value}'", sqlstate="55P02")
    assert err["message"] == f'parameter "{setting}" cannot be changed without restarting the server', err
    assert cluster.scalar(f"SHOW {setting}") == before
