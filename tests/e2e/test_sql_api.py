"""Happy paths of every SQL API function: what they return and the
rows they leave in webhook.workflows / webhook.parameters."""

import uuid

import pytest


def params_of(cluster, wf_id):
    return cluster.rows(
        "SELECT name, source, type, sample, required, position, depth "
        "FROM webhook.parameters WHERE workflow_id = %s::uuid ORDER BY source, position", (wf_id,))


def by_name(rows):
    return {r["name"]: r for r in rows}


def workflow_row(cluster, wf_id):
    return cluster.row("SELECT * FROM webhook.workflows WHERE id = %s::uuid", (wf_id,))


# --------------------------------------------------------------------------
# webhook_create_workflow
# --------------------------------------------------------------------------
def test_create_workflow_returns_id_url_and_records_owner(cluster, handler, new_workflow):
    wf = new_workflow(name="orders-" + uuid.uuid4().hex[:8])
    assert uuid.UUID(wf["id"])
    assert wf["url"] == f"http://127.0.0.1:{cluster.http_port}/hooks/{wf['id']}"
    assert wf["owner"] == "postgres"
    assert wf["enabled"] is True
    assert sorted(wf["allowed_methods"]) == ["GET", "POST"]
    assert wf["response_method"] == "default"
    assert wf["full_body"] is False

    row = workflow_row(cluster, wf["id"])
    assert row["name"] == wf["name"]
    assert row["owner"] == "postgres"
    assert row["enabled"] is True
    assert row["response_method"] == "default"
    assert row["response_status"] == 200
    assert cluster.scalar("SELECT handler = %s::regproc FROM webhook.workflows WHERE id = %s::uuid",
                          (handler, wf["id"])) is True
    assert row["created_at"] is not None and row["updated_at"] is not None


def test_create_workflow_owner_is_current_user_not_session_user(cluster, new_workflow, uniq):
    role = uniq("own")
    cluster.sql(f"CREATE ROLE {role} NOLOGIN; GRANT webhook_admin TO {role}")
    try:
        with cluster.connect() as conn:
            conn.execute(f"SET ROLE {role}")
            row = conn.execute("SELECT id, owner FROM webhook_create_workflow(%s, 'public.e2e_handler'::regproc)",
                               (uniq("wf"),)).fetchone()
        assert row[1] == role
        assert cluster.scalar("SELECT owner FROM webhook.workflows WHERE id = %s", (row[0],)) == role
    finally:
        cluster.sql(f"DELETE FROM webhook.workflows WHERE owner = '{role}'::regrole")
        cluster.sql(f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_create_workflow_normalizes_methods_and_enabled(cluster, new_workflow):
    wf = new_workflow(methods=[" post", "get", "POST", "Put"], enabled=False)
    assert sorted(wf["allowed_methods"]) == ["GET", "POST", "PUT"]
    assert wf["enabled"] is False
    row = workflow_row(cluster, wf["id"])
    assert sorted(row["allowed_methods"]) == ["GET", "POST", "PUT"]
    assert row["enabled"] is False


def test_create_workflow_accepts_jsonb_handler_and_procedure(cluster, new_handler, new_workflow):
    h_jsonb = new_handler(body="CREATE FUNCTION {name}(payload jsonb) RETURNS text "
                               "LANGUAGE sql AS $h$ SELECT payload::text $h$")
    h_proc = new_handler(body="CREATE PROCEDURE {name}(e webhook.events) LANGUAGE plpgsql "
                              "AS $h$ BEGIN NULL; END $h$")
    for h in (h_jsonb, h_proc):
        wf = new_workflow(handler=h)
        assert cluster.scalar("SELECT handler::oid = %s::regproc::oid FROM webhook.workflows WHERE id = %s::uuid",
                              (h, wf["id"])) is True


# --------------------------------------------------------------------------
# webhook_find_workflow
# --------------------------------------------------------------------------
def find_ids(cluster, text):
    return [str(r[0]) for r in cluster.sql("SELECT id FROM webhook_find_workflow(%s)", (text,))]


def test_find_workflow_by_full_id_url_and_fragments(cluster, new_workflow):
    wf = new_workflow()
    wid = wf["id"]
    for text in [
        wid,
        wid.upper(),
        wid.replace("-", ""),
        f"  {wid}  ",
        wf["url"],
        f"{wf['url']}?source=stripe&x=1",
        f"https://hooks.example.com/hooks/{wid.upper()}/?a=b#frag",
    ]:
        assert find_ids(cluster, text) == [wid], text

    # Fragments of at least 4 hex digits, any case, hyphens allowed (and spanning).
    for frag in [wid[:4], wid[-12:], wid[-5:].upper(), wid[4:13], wid[6:20], wid[24:],
                 f"http://127.0.0.1:1/hooks/{wid[9:18]}?q=1"]:
        assert wid in find_ids(cluster, frag), frag
    assert "-" in wid[6:20] and "-" in wid[4:13]

    # The result rows are full overview rows.
    row = cluster.row("SELECT * FROM webhook_find_workflow(%s)", (wid,))
    assert str(row["id"]) == wid
    assert row["name"] == wf["name"]
    assert row["url"] == wf["url"]
    assert row["owner"] == "postgres"


@pytest.mark.parametrize("text", ["abc", "ab-c", "a", "", "zzzz", "not-an-id", "hooks/", "%", "_",
                                  "http://127.0.0.1:8787/", "0123456789abcdef0123456789abcdef0"])
def test_find_workflow_no_match_is_zero_rows(cluster, new_workflow, text):
    new_workflow()  # at least one workflow exists, so "match everything" would show
    assert find_ids(cluster, text) == []


def test_find_workflow_null_is_zero_rows(cluster, new_workflow):
    new_workflow()
    assert cluster.sql("SELECT * FROM webhook_find_workflow(NULL)") == []


def test_find_workflow_returns_every_match(cluster, handler):
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{uuid.uuid4().hex[:4]}-4{uuid.uuid4().hex[:3]}-8{uuid.uuid4().hex[:3]}-{uuid.uuid4().hex[:12]}"
           for _ in range(3)]
    try:
        for i, wid in enumerate(ids):
            cluster.sql("INSERT INTO webhook.workflows (id, name, handler) VALUES (%s::uuid, %s, %s::regproc)",
                        (wid, f"multi-{prefix}-{i}", handler))
        assert sorted(find_ids(cluster, prefix)) == sorted(ids)
        assert sorted(find_ids(cluster, prefix.upper())) == sorted(ids)
        assert find_ids(cluster, ids[1]) == [ids[1]]
    finally:
        cluster.sql("DELETE FROM webhook.workflows WHERE id = ANY(%s::uuid[])", (ids,))


# --------------------------------------------------------------------------
# webhook_url
# --------------------------------------------------------------------------
def test_url_defaults_to_listen_address_and_port(cluster, new_workflow):
    wf = new_workflow()
    url = cluster.scalar("SELECT webhook_url(%s::uuid)", (wf["id"],))
    assert url == f"http://127.0.0.1:{cluster.http_port}/hooks/{wf['id']}"
    assert cluster.scalar("SELECT url FROM webhook.workflow_overview WHERE id = %s::uuid", (wf["id"],)) == url


def test_url_uses_public_base_url(cluster, new_workflow):
    wf = new_workflow()
    try:
        cluster.alter_system("webhook.public_base_url", "https://hooks.example.com/base/")
        assert cluster.scalar("SELECT webhook_url(%s::uuid)", (wf["id"],)) == \
            f"https://hooks.example.com/base/hooks/{wf['id']}"
        created = new_workflow()
        assert created["url"] == f"https://hooks.example.com/base/hooks/{created['id']}"
    finally:
        cluster.alter_system("webhook.public_base_url", None)
    assert cluster.scalar("SELECT webhook_url(%s::uuid)", (wf["id"],)) == \
        f"http://127.0.0.1:{cluster.http_port}/hooks/{wf['id']}"


def test_url_derived_from_other_listen_addresses_and_port(make_cluster):
    c = make_cluster(conf={"webhook.listen_addresses": "::1, 127.0.0.1"})
    c.sql("CREATE EXTENSION webhook_ext")
    c.sql("CREATE FUNCTION h(e webhook.events) RETURNS jsonb LANGUAGE sql AS 'SELECT e.params'")
    wid = str(c.scalar("SELECT id FROM webhook_create_workflow('x', 'h')"))
    assert c.scalar("SELECT webhook_url(%s::uuid)", (wid,)) == f"http://[::1]:{c.http_port}/hooks/{wid}"


# --------------------------------------------------------------------------
# webhook_sample_from_json
# --------------------------------------------------------------------------
SAMPLE = {
    "order_id": 42,
    "customer": {"email": "ann@example.com", "address": {"zip": "007", "geo": [1.5, 2]}, "vip": True},
    "paid": True,
    "items": [{"sku": "A"}, {"sku": "B"}],
    "note": "hi ü",
    "price": 9.5,
    "tags": [],
    "meta": {},
    "nothing": None,
}
EXPECTED = {
    # name: (type, sample, depth)
    "order_id": ("number", 42, 0),
    "customer": ("object", SAMPLE["customer"], 0),
    "customer.email": ("text", "ann@example.com", 1),
    "customer.address.zip": ("text", "007", 2),
    "customer.address.geo": ("array", [1.5, 2], 2),
    "customer.vip": ("boolean", True, 1),
    "paid": ("boolean", True, 0),
    "items": ("array", [{"sku": "A"}, {"sku": "B"}], 0),
    "note": ("text", "hi ü", 0),
    "price": ("number", 9.5, 0),
    "tags": ("array", [], 0),
    "meta": ("object", {}, 0),
    "nothing": ("any", None, 0),
}


def test_sample_from_json_infers_parameters(cluster, new_workflow):
    import json
    wf = new_workflow()
    returned = cluster.rows("SELECT * FROM webhook_sample_from_json(%s::uuid, %s::jsonb)",
                            (wf["id"], json.dumps(SAMPLE)))
    stored = params_of(cluster, wf["id"])
    assert [r["name"] for r in returned] == [r["name"] for r in stored]
    assert {r["name"] for r in stored} == set(EXPECTED)
    for r in stored:
        typ, sample, depth = EXPECTED[r["name"]]
        assert (r["type"], r["depth"]) == (typ, depth), r
        assert r["source"] == "body"
        assert r["required"] is False
        assert r["sample"] == sample, r
    # Positions are 1..n in order; nested leaves come right after their parent.
    positions = [r["position"] for r in stored]
    assert positions == list(range(positions[0], positions[0] + len(stored)))
    names = [r["name"] for r in stored]
    i = names.index("customer")
    assert set(names[i + 1:i + 5]) == {"customer.email", "customer.address.zip",
                                       "customer.address.geo", "customer.vip"}
    # The workflow row records the change.
    row = workflow_row(cluster, wf["id"])
    assert row["updated_at"] >= row["created_at"]


def test_sample_from_json_replaces_previous_list(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1, \"b\": \"x\"}')", (wf["id"],))
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"c\": true}')", (wf["id"],))
    rows = params_of(cluster, wf["id"])
    assert [(r["name"], r["type"], r["sample"]) for r in rows] == [("c", "boolean", True)]


# --------------------------------------------------------------------------
# webhook_sample_from_kv
# --------------------------------------------------------------------------
def test_sample_from_kv_lines(cluster, new_workflow):
    wf = new_workflow()
    text = ("order_id=42\n"
            "customer: Ann Lee\n"
            "\n"
            "   \n"
            "zip=007\n"
            "sci = 1e3\n"
            "flag=TRUE\n"
            "off: false\n"
            "token=abc==\n"
            "url: http://x.test/?a=b\n"
            "empty=\n"
            "tag=a\n"
            "tag=b\n"
            "tag=c\n"
            "名前 = 山田\n")
    returned = cluster.rows("SELECT * FROM webhook_sample_from_kv(%s::uuid, %s)", (wf["id"], text))
    rows = by_name(params_of(cluster, wf["id"]))
    assert set(rows) == {"order_id", "customer", "zip", "sci", "flag", "off", "token", "url", "empty",
                         "tag", "名前"}
    assert {r["name"] for r in returned} == set(rows)
    # Parameters keep the order of the lines (a repeated key at its first line).
    assert [r["name"] for r in params_of(cluster, wf["id"])] == [
        "order_id", "customer", "zip", "sci", "flag", "off", "token", "url", "empty", "tag", "名前"]
    got = {n: (r["type"], r["sample"]) for n, r in rows.items()}
    assert got["order_id"] == ("number", 42)
    assert got["customer"] == ("text", "Ann Lee")
    assert got["zip"] == ("text", "007")
    assert got["sci"][0] == "number" and float(got["sci"][1]) == 1000.0
    assert got["flag"] == ("boolean", True)
    assert got["off"] == ("boolean", False)
    assert got["token"] == ("text", "abc==")
    assert got["url"] == ("text", "http://x.test/?a=b")
    assert got["empty"] == ("text", "")
    assert got["tag"] == ("array", ["a", "b", "c"])
    assert got["名前"] == ("text", "山田")
    assert all(r["source"] == "body" and r["depth"] == 0 and not r["required"] for r in rows.values())


def test_sample_from_kv_query_string(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_kv(%s::uuid, %s)",
                (wf["id"], "a=1&b=hello+world&c=caf%C3%A9&d=%26&e=007&x=1&x=2"))
    got = {r["name"]: (r["type"], r["sample"]) for r in params_of(cluster, wf["id"])}
    assert got == {
        "a": ("number", 1),
        "b": ("text", "hello world"),
        "c": ("text", "café"),
        "d": ("text", "&"),
        "e": ("text", "007"),
        "x": ("array", [1, 2]),
    }


# --------------------------------------------------------------------------
# Re-deriving keeps required flags; webhook_set_required
# --------------------------------------------------------------------------
def test_set_required_top_level_and_dotted(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)",
                (wf["id"], '{"order_id": 1, "customer": {"email": "a@b.c", "name": "A"}, "note": "x"}'))
    returned = cluster.rows("SELECT * FROM webhook_set_required(%s::uuid, ARRAY['order_id', 'customer.email'])",
                            (wf["id"],))
    assert {r["name"]: r["required"] for r in returned} == {
        "order_id": True, "customer": False, "customer.email": True, "customer.name": False, "note": False}
    rows = by_name(params_of(cluster, wf["id"]))
    assert {n: r["required"] for n, r in rows.items()} == {
        "order_id": True, "customer": False, "customer.email": True, "customer.name": False, "note": False}

    # required => false turns it off again; default is true.
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['order_id'], required => false)", (wf["id"],))
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['note'])", (wf["id"],))
    rows = by_name(params_of(cluster, wf["id"]))
    assert {n: r["required"] for n, r in rows.items()} == {
        "order_id": False, "customer": False, "customer.email": True, "customer.name": False, "note": True}


def test_rederiving_sample_keeps_required_flags_of_remaining_params(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)",
                (wf["id"], '{"a": 1, "b": 2, "c": {"d": 1}}'))
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['a', 'b', 'c.d'])", (wf["id"],))

    # b disappears, a changes type, c gains a leaf, z is new.
    returned = cluster.rows("SELECT * FROM webhook_sample_from_json(%s::uuid, %s::jsonb)",
                            (wf["id"], '{"a": "text now", "c": {"d": 2, "e": 3}, "z": true}'))
    rows = by_name(params_of(cluster, wf["id"]))
    assert {n: r["required"] for n, r in rows.items()} == {
        "a": True, "c": False, "c.d": True, "c.e": False, "z": False}
    assert rows["a"]["type"] == "text"
    assert {r["name"]: r["required"] for r in returned} == {n: r["required"] for n, r in rows.items()}

    # b comes back: its old flag was dropped with it.
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)",
                (wf["id"], '{"a": 1, "b": 2}'))
    rows = by_name(params_of(cluster, wf["id"]))
    assert {n: r["required"] for n, r in rows.items()} == {"a": True, "b": False}

    # Also through the key-value form.
    cluster.sql("SELECT webhook_sample_from_kv(%s::uuid, 'a=5&q=1')", (wf["id"],))
    rows = by_name(params_of(cluster, wf["id"]))
    assert {n: r["required"] for n, r in rows.items()} == {"a": True, "q": False}


# --------------------------------------------------------------------------
# webhook_set_full_body
# --------------------------------------------------------------------------
def test_set_full_body_on_and_off(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1, \"b\": 2}')", (wf["id"],))
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['a'])", (wf["id"],))

    returned = cluster.rows("SELECT * FROM webhook_set_full_body(%s::uuid, true)", (wf["id"],))
    rows = params_of(cluster, wf["id"])
    assert [(r["name"], r["source"], r["type"]) for r in rows] == [("body", "body", "text")]
    assert [r["name"] for r in returned] == ["body"]
    row = workflow_row(cluster, wf["id"])
    assert row["full_body"] is True and row["full_body_param"] == "body"

    # While on, a JSON sample is refused and changes nothing.
    err = cluster.sql_error("SELECT webhook_sample_from_json(%s::uuid, '{\"x\": 1}')", (wf["id"],),
                            sqlstate="55000")
    assert "webhook_set_full_body" in (err["hint"] or "")
    assert [r["name"] for r in params_of(cluster, wf["id"])] == ["body"]

    # Off: the body parameter goes away.
    returned = cluster.rows("SELECT * FROM webhook_set_full_body(%s::uuid, false)", (wf["id"],))
    assert returned == []
    assert params_of(cluster, wf["id"]) == []
    assert workflow_row(cluster, wf["id"])["full_body"] is False
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"x\": 1}')", (wf["id"],))
    assert [r["name"] for r in params_of(cluster, wf["id"])] == ["x"]


def test_set_full_body_custom_param_name(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_set_full_body(%s::uuid, true, param_name => 'raw')", (wf["id"],))
    assert [(r["name"], r["type"]) for r in params_of(cluster, wf["id"])] == [("raw", "text")]
    assert workflow_row(cluster, wf["id"])["full_body_param"] == "raw"
    # The full-body parameter can be made required.
    cluster.sql("SELECT webhook_set_required(%s::uuid, ARRAY['raw'])", (wf["id"],))
    assert params_of(cluster, wf["id"])[0]["required"] is True
    cluster.sql("SELECT webhook_set_full_body(%s::uuid, false)", (wf["id"],))
    assert params_of(cluster, wf["id"]) == []


# --------------------------------------------------------------------------
# webhook_set_response
# --------------------------------------------------------------------------
RESPONSE_COLS = ("response_method, response_status, response_content_type, response_body, response_headers, "
                 "response_timeout, failure_status, failure_content_type, failure_body")


def response_of(cluster, wf_id):
    return cluster.row(f"SELECT {RESPONSE_COLS} FROM webhook.workflows WHERE id = %s::uuid", (wf_id,))


def test_set_response_custom_default_and_workflow(cluster, new_workflow):
    import datetime
    wf = new_workflow()
    assert response_of(cluster, wf["id"])["response_method"] == "default"

    returned = cluster.row(
        "SELECT * FROM webhook_set_response(%s::uuid, 'custom', content_type => 'text/plain', "
        "body => 'got {{order_id}} for {{customer.email}}', status => 201, headers => '{\"X-Source\": \"e2e\"}')",
        (wf["id"],))
    assert returned["response_method"] == "custom"
    r = response_of(cluster, wf["id"])
    assert r["response_method"] == "custom"
    assert r["response_status"] == 201
    assert r["response_content_type"].startswith("text/plain")
    assert r["response_body"] == "got {{order_id}} for {{customer.email}}"
    assert r["response_headers"] == {"X-Source": "e2e"}

    # JSON template, default content type and status.
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'CUSTOM', body => %s)",
                (wf["id"], '{"received": "{{order_id}}", "n": {{count}}}'))
    r = response_of(cluster, wf["id"])
    assert r["response_method"] == "custom"
    assert r["response_status"] == 200
    assert r["response_content_type"] == "application/json"
    assert r["response_body"] == '{"received": "{{order_id}}", "n": {{count}}}'
    assert r["response_headers"] == {}

    # workflow method with a deadline and a failure response.
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'workflow', timeout => '5 seconds', "
                "failure_status => 503, failure_body => '{\"msg\": \"down\"}')", (wf["id"],))
    r = response_of(cluster, wf["id"])
    assert r["response_method"] == "workflow"
    assert r["response_timeout"] == datetime.timedelta(seconds=5)
    assert r["failure_status"] == 503
    assert r["failure_body"] == '{"msg": "down"}'
    assert r["response_body"] is None and r["response_status"] == 200

    # default clears everything custom/workflow.
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'default')", (wf["id"],))
    r = response_of(cluster, wf["id"])
    assert r == {"response_method": "default", "response_status": 200, "response_content_type": None,
                 "response_body": None, "response_headers": {}, "response_timeout": None,
                 "failure_status": 500, "failure_content_type": None, "failure_body": None}


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/xml", "text/html",
                                          "application/vnd.api+json", "text/plain; charset=utf-8"])
def test_set_response_content_types_accepted(cluster, new_workflow, content_type):
    wf = new_workflow()
    body = '{"ok": true}' if "json" in content_type else "<ok>{{a}}</ok>" if "xml" in content_type else "ok {{a}}"
    cluster.sql("SELECT webhook_set_response(%s::uuid, 'custom', content_type => %s, body => %s)",
                (wf["id"], content_type, body))
    r = response_of(cluster, wf["id"])
    assert r["response_method"] == "custom"
    assert r["response_content_type"].split(";")[0].strip() == content_type.split(";")[0].strip()
    assert r["response_body"] == body


# --------------------------------------------------------------------------
# rename, enable/disable, set_handler, drop
# --------------------------------------------------------------------------
def test_rename_workflow(cluster, new_workflow, uniq):
    wf = new_workflow()
    new_name = uniq("renamed")
    returned = cluster.row("SELECT * FROM webhook_rename_workflow(%s::uuid, %s)", (wf["id"], new_name))
    assert returned["name"] == new_name and str(returned["id"]) == wf["id"]
    row = workflow_row(cluster, wf["id"])
    assert row["name"] == new_name
    assert row["updated_at"] > row["created_at"]


def test_enable_and_disable_workflow(cluster, new_workflow):
    wf = new_workflow()
    returned = cluster.row("SELECT * FROM webhook_disable_workflow(%s::uuid)", (wf["id"],))
    assert returned["enabled"] is False
    assert workflow_row(cluster, wf["id"])["enabled"] is False
    # Disabled workflows are still found (to be re-enabled).
    assert find_ids(cluster, wf["id"]) == [wf["id"]]
    returned = cluster.row("SELECT * FROM webhook_enable_workflow(%s::uuid)", (wf["id"],))
    assert returned["enabled"] is True
    assert workflow_row(cluster, wf["id"])["enabled"] is True


def test_set_handler(cluster, new_workflow, new_handler):
    wf = new_workflow()
    h2 = new_handler(body="CREATE FUNCTION {name}(payload jsonb) RETURNS jsonb LANGUAGE sql AS $h$ SELECT payload $h$")
    returned = cluster.row("SELECT * FROM webhook_set_handler(%s::uuid, %s::regproc)", (wf["id"], h2))
    assert str(returned["id"]) == wf["id"]
    assert cluster.scalar("SELECT handler = %s::regproc FROM webhook.workflows WHERE id = %s::uuid",
                          (h2, wf["id"])) is True


def test_drop_workflow_cascades(cluster, new_workflow):
    wf = new_workflow()
    cluster.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1, \"b\": {\"c\": 2}}')", (wf["id"],))
    cluster.sql("INSERT INTO webhook.events (workflow_id, method, params) VALUES (%s::uuid, 'POST', '{\"a\": 1}')",
                (wf["id"],))
    assert cluster.scalar("SELECT webhook_drop_workflow(%s::uuid)", (wf["id"],)) is True
    assert workflow_row(cluster, wf["id"]) is None
    assert cluster.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s::uuid", (wf["id"],)) == 0
    assert cluster.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s::uuid", (wf["id"],)) == 0
    assert find_ids(cluster, wf["id"]) == []

    # Again: an error without if_exists, false plus a NOTICE with it.
    err = cluster.sql_error("SELECT webhook_drop_workflow(%s::uuid)", (wf["id"],), sqlstate="42704")
    assert "does not exist" in err["message"]
    rows, notices = cluster.sql_notices("SELECT webhook_drop_workflow(%s::uuid, if_exists => true)", (wf["id"],))
    assert rows == [(False,)]
    assert any("does not exist" in n["message"] and n["severity"] == "NOTICE" for n in notices), notices


def test_workflow_overview_lists_workflows(cluster, new_workflow):
    wf = new_workflow()
    row = cluster.row("SELECT * FROM webhook.workflow_overview WHERE id = %s::uuid", (wf["id"],))
    assert row["name"] == wf["name"] and row["url"] == wf["url"]
