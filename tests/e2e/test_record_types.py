"""Typed records: webhook_set_record_type keeps a composite type, owned by the
workflow's owner, to the parameter list (one attribute per top-level
parameter, in the statement's own transaction, whoever edits the list: the
owner or the listener storing a captured sample); handlers may take it, and
webhook_params(e, NULL::type) returns it for any event. Dropping or retyping
an attribute is refused while a function takes the type; a value that does
not convert fails its event, retried by the policy, never the request."""

import json

import pytest

import corpuskit
import hookkit as hk
from tenantkit import drop_tenants, make_tenant


@pytest.fixture
def tenant(cluster, uniq):
    t = make_tenant(cluster, uniq("rt"))
    yield t
    drop_tenants(cluster, [t.name])


def J(value) -> str:
    return json.dumps(value)


def attributes(c, type_name: str) -> list[tuple[str, str]]:
    return [(r["attname"], r["type"]) for r in c.rows(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
        "WHERE a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = %s::regtype) "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (type_name,))]


def workflow(t, sample: dict | None = None, handler: str | None = None) -> str:
    wf = str(t.row("SELECT id FROM webhook_create_workflow(%s, %s::regproc)",
                   (hk.make_uniq("wf"), handler or t.handler))["id"])
    if sample is not None:
        t.sql("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)", (wf, J(sample)))
    return wf


def test_the_type_belongs_to_the_owner_and_follows_the_parameter_list_in_the_same_transaction(cluster, tenant):
    t = tenant
    shopify = corpuskit.load("shopify", "orders_create_test_notification").body
    wf = workflow(t, shopify)
    t.sql("SELECT webhook_add_parameter(%s, 'X-Shopify-Topic', 'header', 'text')", (wf,))
    t.sql("SELECT webhook_add_parameter(%s, 'orderId', 'query', 'text')", (wf,))
    name = f"{t.name}.orders_hook"
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, name))
    assert cluster.scalar("SELECT typowner::regrole::text FROM pg_type WHERE oid = %s::regtype", (name,)) == t.name
    assert t.scalar("SELECT record_type = %s::regtype FROM webhook.workflow_overview WHERE id = %s",
                    (name, wf)) is True

    got = dict(attributes(cluster, name))
    # One attribute per top-level key of the published payload, by its type.
    assert set(got) == set(shopify) | {"x_shopify_topic", "orderid"}
    assert (got["id"], got["email"], got["test"], got["customer"], got["line_items"], got["note"]) == \
        ("numeric", "text", "boolean", "jsonb", "jsonb", "jsonb")
    assert (got["total_price"], got["x_shopify_topic"], got["orderid"]) == ("text", "text", "text")
    assert "customer.email" not in got  # nested leaves stay in their parent's jsonb

    # A re-sample changes the type in its own transaction: rolled back, so is the type.
    with t.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)",
                     (wf, J({**shopify, "gift_card": True})))
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                            "(SELECT typrelid FROM pg_type WHERE oid = %s::regtype) AND attname = 'gift_card' "
                            "AND NOT attisdropped", (name,)).fetchone()[0] == 1
    assert "gift_card" not in dict(attributes(cluster, name))

    # Committed: added, and with no function taking the type a drop and a retype go too.
    t.sql("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)", (wf, J({**shopify, "gift_card": True})))
    assert dict(attributes(cluster, name))["gift_card"] == "boolean"
    t.sql("SELECT webhook_drop_parameter(%s, 'gift_card')", (wf,))
    t.sql("SELECT webhook_alter_parameter(%s, 'id', type => 'text')", (wf,))
    got = dict(attributes(cluster, name))
    assert "gift_card" not in got and got["id"] == "text"
    # Plain DML on the parameters changes no type; setting it again brings
    # the type (also one edited by hand) back to the list.
    t.sql("UPDATE webhook.parameters SET type = 'boolean' WHERE workflow_id = %s AND name = 'test'", (wf,))
    assert dict(attributes(cluster, name))["test"] == "boolean"
    t.sql("UPDATE webhook.parameters SET type = 'text' WHERE workflow_id = %s AND name = 'test'", (wf,))
    assert dict(attributes(cluster, name))["test"] == "boolean"
    t.sql(f"ALTER TYPE {name} ADD ATTRIBUTE stray int")
    assert t.scalar("SELECT webhook_set_record_type(%s, %s) = %s::regtype", (wf, name, name)) is True
    got = dict(attributes(cluster, name))
    assert "stray" not in got and got["test"] == "text"
    # Only the owner may use the type (no USAGE for PUBLIC).
    assert cluster.scalar("SELECT has_type_privilege('public', %s::regtype, 'USAGE')", (name,)) is False


def test_attribute_names_are_the_keys_as_written_unquoted(cluster, tenant):
    t = tenant
    # jsonb orders keys by length, then bytes: the list order, which decides
    # who gets "_2" when two keys make one name.
    wf = workflow(t, {"orderId": "A-1", "orderid": "a-2", "order-id": "x", "@timestamp": "2026-01-01",
                      "3ds": True, "hub.mode": "subscribe", "_id": 7, "a" * 70: 1})
    t.sql("SELECT webhook_add_parameter(%s, 'X-GitHub-Event', 'header', 'text')", (wf,))
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{t.name}.names_hook"))
    assert attributes(cluster, f"{t.name}.names_hook") == [
        ("_3ds", "boolean"), ("_id", "numeric"), ("orderid", "text"), ("orderid_2", "text"), ("hub_mode", "text"),
        ("order_id", "text"), ("timestamp", "text"), ("a" * 63, "numeric"), ("x_github_event", "text")]
    r = hk.post(cluster, wf, json_body={"orderId": "A-1", "orderid": "a-2", "@timestamp": "2026-01-01",
                                        "3ds": True, "a" * 70: 5}, headers={"X-GitHub-Event": "push"})
    assert r.status_code == 200, r.text
    e = t.row(f"SELECT (webhook_params(e, NULL::{t.name}.names_hook)).* FROM webhook.events e WHERE e.id = %s",
              (r.json()["event_id"],))
    assert e == {"_3ds": True, "_id": None, "orderid": "A-1", "orderid_2": "a-2", "hub_mode": None,
                 "order_id": None, "timestamp": "2026-01-01", "a" * 63: 5, "x_github_event": "push"}


def test_handlers_take_the_record_of_real_deliveries(cluster, tenant):
    t = tenant
    s = t.name
    push = corpuskit.load("github", "push_new_branch")
    wf = workflow(t, push.body)
    t.sql("SELECT webhook_add_parameter(%s, 'X-GitHub-Event', 'header', 'text')", (wf,))
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.push_hook"))
    t.sql(f"CREATE TABLE {s}.pushes (event_id bigint, ref text, created boolean, repo text, kind text, "
          f"created_type text)")
    t.sql(f"CREATE FUNCTION {s}.on_push(e webhook.events, p {s}.push_hook) RETURNS void LANGUAGE sql AS $$ "
          f"INSERT INTO {s}.pushes VALUES (e.id, p.ref, p.created, p.repository->>'full_name', p.x_github_event, "
          f"pg_typeof(p.created)::text) $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.on_push"))
    r = corpuskit.send(cluster, wf, push)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    hk.wait_for_status(cluster, event_id, "succeeded")
    assert t.row(f"SELECT * FROM {s}.pushes") == {
        "event_id": event_id, "ref": push.body["ref"], "created": push.body["created"],
        "repo": push.body["repository"]["full_name"], "kind": "push", "created_type": "boolean"}

    shopify = corpuskit.load("shopify", "orders_create_test_notification")
    wf2 = workflow(t, shopify.body)
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf2, f"{s}.order_hook"))
    t.sql(f"CREATE TABLE {s}.orders (id numeric, total numeric, test boolean, email text)")
    t.sql(f"CREATE PROCEDURE {s}.on_order(p {s}.order_hook) LANGUAGE sql AS $$ "
          f"INSERT INTO {s}.orders VALUES (p.id, p.total_price::numeric, p.test, p.customer->>'email') $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf2, f"{s}.on_order"))
    r = corpuskit.send(cluster, wf2, shopify)
    assert r.status_code == 200, r.text
    hk.wait_for_status(cluster, r.json()["event_id"], "succeeded")
    b = shopify.body
    row = t.row(f"SELECT id::text, total::text, test, email FROM {s}.orders")
    assert row == {"id": str(b["id"]), "total": b["total_price"], "test": b["test"],
                   "email": b["customer"]["email"]}
    # The same record when the handler runs in the caller's session.
    out = t.scalar("SELECT webhook_trigger(%s, %s::jsonb)", (wf2, J(b)))
    assert out["status"] == 200, out
    replayed = t.scalar("SELECT webhook_replay(%s)", (r.json()["event_id"],))
    assert replayed["status"] == 200, replayed
    assert t.rows(f"SELECT id::text, email FROM {s}.orders") == [{"id": str(b["id"]), "email": b["customer"]["email"]}] * 3


def test_drop_or_retype_is_refused_while_a_function_takes_the_type(cluster, tenant):
    t = tenant
    s = t.name
    wf = workflow(t, {"order_id": "A-1", "amount": 12.5, "note": "x"})
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.o_hook"))
    t.sql(f"CREATE FUNCTION {s}.h(p {s}.o_hook) RETURNS void LANGUAGE sql AS $$ SELECT $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.h"))
    before = attributes(cluster, f"{s}.o_hook")

    err = t.error("SELECT webhook_drop_parameter(%s, 'note')", (wf,), sqlstate="2BP01")
    assert err["message"] == f'cannot drop or retype attributes of type {s}.o_hook while a function takes it'
    # (The first line: PostgreSQL started with RUST_BACKTRACE set adds a backtrace.)
    assert err["detail"].split("\n")[0] == (f'The parameter change would drop or retype attribute "note" (text); '
                             f'function {s}.h({s}.o_hook) takes or returns the type.')
    err = t.error("SELECT webhook_alter_parameter(%s, 'amount', type => 'text')", (wf,), sqlstate="2BP01")
    assert '"amount" (numeric to text)' in err["detail"]
    # A sample without the attribute would drop it: refused, nothing changed.
    t.error("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)", (wf, J({"order_id": "A-2"})),
            sqlstate="2BP01")
    assert sorted(p["name"] for p in hk.parameters(cluster, wf)) == ["amount", "note", "order_id"]
    assert attributes(cluster, f"{s}.o_hook") == before
    # The same parameters again, and added ones, are fine while the handler takes it.
    t.sql("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)",
          (wf, J({"order_id": "A-9", "amount": 1, "note": "y", "paid": True})))
    assert attributes(cluster, f"{s}.o_hook") == before + [("paid", "boolean")]
    # Nor can the workflow stop keeping the type its handler takes.
    t.error("SELECT webhook_set_record_type(%s, NULL)", (wf,), sqlstate="42P13")

    # Once no function takes it, the drop goes through.
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, t.handler))
    t.sql(f"DROP FUNCTION {s}.h")
    t.sql("SELECT webhook_drop_parameter(%s, 'note')", (wf,))
    assert "note" not in dict(attributes(cluster, f"{s}.o_hook"))


def test_a_value_that_does_not_convert_fails_its_event_and_the_retry_policy_decides(cluster, tenant):
    t = tenant
    s = t.name
    wf = workflow(t, {"sku": "X-1", "amount": 12.5})
    t.sql("SELECT webhook_set_retry(%s, 2, '1 second', '1 second')", (wf,))
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.amount_hook"))
    t.sql(f"CREATE TABLE {s}.amounts (sku text, amount numeric)")
    t.sql(f"CREATE FUNCTION {s}.h(p {s}.amount_hook) RETURNS void LANGUAGE sql AS $$ "
          f"INSERT INTO {s}.amounts VALUES (p.sku, p.amount) $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.h"))

    bad = hk.post(cluster, wf, json_body={"sku": "X-2", "amount": "twelve"})
    assert bad.status_code == 200, bad.text  # stored: the parameter is not strict
    bad_id = bad.json()["event_id"]
    good = hk.post(cluster, wf, json_body={"sku": "X-3", "amount": "7.25"})
    assert good.status_code == 200, good.text
    hk.wait_for_status(cluster, good.json()["event_id"], "succeeded")
    row = hk.wait_for_status(cluster, bad_id, "dead", timeout=15)
    assert row["attempts"] == 2
    assert row["error"] == (f'22P02: parameter "amount" of event {bad_id} cannot be attribute "amount" of type '
                            f'{s}.amount_hook: invalid input syntax for type numeric: "twelve"')
    assert [(a["outcome"], a["sqlstate"]) for a in cluster.rows(
        "SELECT outcome, sqlstate FROM webhook.attempts WHERE event_id = %s ORDER BY attempt", (bad_id,))] == \
        [("failed", "22P02"), ("failed", "22P02")]
    assert t.rows(f"SELECT sku, amount::text FROM {s}.amounts") == [{"sku": "X-3", "amount": "7.25"}]
    # The listener took both, and goes on taking requests.
    assert hk.post(cluster, wf, json_body={"sku": "X-4", "amount": 1}).status_code == 200


def test_webhook_params_gives_the_record_of_stored_and_read_events(cluster, tenant):
    t = tenant
    s = t.name
    wf = workflow(t, {"order_id": "A-1", "amount": 12.5, "paid": False, "customer": {"email": "a@b.c"}})
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.q_hook"))
    t.sql("SELECT webhook_set_queue(%s)", (wf,))
    r = hk.post(cluster, wf, json_body={"order_id": "B-7", "amount": "19.99", "paid": True,
                                        "customer": {"email": "b@c.d"}})
    assert r.status_code == 200, r.text
    got = t.row(f"SELECT p.order_id, p.amount::text, p.paid, p.customer->>'email' AS email "
                f"FROM webhook_read(%s, 1) e, webhook_params(e, NULL::{s}.q_hook) p", (wf,))
    assert got == {"order_id": "B-7", "amount": "19.99", "paid": True, "email": "b@c.d"}
    stored = t.row(f"SELECT (webhook_params(e, NULL::{s}.q_hook)).* FROM webhook.events e WHERE e.id = %s",
                   (r.json()["event_id"],))
    assert stored["order_id"] == "B-7" and str(stored["amount"]) == "19.99"


def test_a_captured_sample_alters_the_type_as_its_owner(cluster, tenant):
    t = tenant
    s = t.name
    wf = workflow(t, {"order_id": "A-1"})
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.cap_hook"))
    t.sql(f"CREATE FUNCTION {s}.h(e webhook.events, p {s}.cap_hook) RETURNS void LANGUAGE sql AS $$ SELECT $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.h"))

    # A sample without order_id would drop the attribute the handler's type has: refused, still armed.
    t.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = hk.post(cluster, wf, json_body={"other": 1})
    assert r.status_code == 500, r.text
    assert r.json() == {"msg": "Sample could not be stored", "sqlstate": "2BP01"}
    assert t.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,)) == "waiting"
    assert [n for n, _ in attributes(cluster, f"{s}.cap_hook")] == ["order_id"]

    r = hk.post(cluster, wf, json_body={"order_id": "A-2", "total": 3})
    assert r.json()["msg"] == "Sample captured", r.text
    got = dict(attributes(cluster, f"{s}.cap_hook"))
    assert got["order_id"] == "text" and got["total"] == "numeric"
    assert "content_type" in got  # captured header parameters are attributes too
    assert cluster.scalar("SELECT typowner::regrole::text FROM pg_type WHERE oid = %s::regtype",
                          (f"{s}.cap_hook",)) == t.name


def test_a_renamed_type_keeps_its_handler_running(cluster, tenant):
    t = tenant
    s = t.name
    wf = workflow(t, {"n": 1})
    t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.before_hook"))
    t.sql(f"CREATE TABLE {s}.ns (n numeric)")
    t.sql(f"CREATE FUNCTION {s}.h(p {s}.before_hook) RETURNS void LANGUAGE sql AS $$ "
          f"INSERT INTO {s}.ns VALUES (p.n) $$")
    t.sql("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.h"))
    first = hk.post(cluster, wf, json_body={"n": 1}).json()["event_id"]
    hk.wait_for_status(cluster, first, "succeeded")
    t.sql(f"ALTER TYPE {s}.before_hook RENAME TO after_hook")
    second = hk.post(cluster, wf, json_body={"n": 2}).json()["event_id"]
    row = hk.wait_for_status(cluster, second, "succeeded")
    assert row["attempts"] == 1
    # A change to the workflow makes every process load it again: the call
    # is made anew, with the type's new name.
    t.sql("SELECT webhook_set_retry(%s, 1)", (wf,))
    third = hk.post(cluster, wf, json_body={"n": 3}).json()["event_id"]
    row = hk.wait_for_status(cluster, third, "succeeded")
    assert (row["attempts"], row["error"]) == (1, None)
    assert [r["n"] for r in t.rows(f"SELECT n::int FROM {s}.ns ORDER BY n")] == [1, 2, 3]


def test_record_types_are_checked(cluster, tenant, uniq):
    t = tenant
    s = t.name
    wf = workflow(t, {"n": 1})
    err = t.error("SELECT webhook_set_record_type(%s, 'orders_hook')", (wf,), sqlstate="22023")
    assert err["message"] == "type name 'orders_hook' must be schema-qualified"
    t.error("SELECT webhook_set_record_type(%s, 'pg_temp.x_hook')", (wf,), sqlstate="3F000")
    # The owner creates it: a schema it may not create in is refused.
    t.error("SELECT webhook_set_record_type(%s, 'pg_catalog.x_hook')", (wf,), sqlstate="42501")
    # Another owner's workflow does not exist for it.
    other = make_tenant(cluster, uniq("rt"))
    try:
        theirs = workflow(other, {"n": 1})
        t.error("SELECT webhook_set_record_type(%s, %s)", (theirs, f"{s}.stolen"), sqlstate="42704")
        # Nor do the internal functions behind it, called directly.
        t.error("SELECT webhook._create_record_type(%s, %s, 'stolen2')", (theirs, s), sqlstate="42704")
        t.error("SELECT webhook._sync_record_type(%s)", (theirs,), sqlstate="42704")
        their_type = other.scalar("SELECT webhook_set_record_type(%s, %s)::oid::int8", (theirs, f"{other.name}.theirs"))
        # Nor can plain DML point a workflow at a type it does not own, or at a table's row type.
        err = t.error("UPDATE webhook.workflows SET record_type = %s::int8::oid::regtype WHERE id = %s",
                      (their_type, wf), sqlstate="42501")
        assert err["message"] == f'type {other.name}.theirs does not belong to the workflow\'s owner {s}'
        t.sql(f"CREATE TABLE {s}.tbl (n int)")
        t.error("UPDATE webhook.workflows SET record_type = %s::regtype WHERE id = %s",
                (f"{s}.tbl", wf), sqlstate="42809")
        # A handler taking some other composite type is refused.
        t.sql(f"CREATE FUNCTION {s}.wrong(p {s}.tbl) RETURNS void LANGUAGE sql AS $$ SELECT $$")
        t.sql("SELECT webhook_set_record_type(%s, %s)", (wf, f"{s}.mine"))
        # Another role that may use the owner's schema still may not take the
        # type (it would hold up its drops and retypes).
        t.sql(f'GRANT USAGE ON SCHEMA "{s}" TO "{other.name}"')
        other.sql(f"CREATE FUNCTION {other.name}.fine(p {s}.tbl) RETURNS void LANGUAGE sql AS 'SELECT'")
        other.error(f"CREATE FUNCTION {other.name}.blocker(p {s}.mine) RETURNS void LANGUAGE sql AS 'SELECT'",
                    sqlstate="42501")
        err = t.error("SELECT webhook_set_handler(%s, %s::regproc)", (wf, f"{s}.wrong"), sqlstate="42P13")
        assert err["message"] == (f'handler {s}.wrong({s}.tbl) must take webhook.events, jsonb, the '
                                  f'workflow\'s record type {s}.mine, or webhook.events and {s}.mine')
        # Handing the workflows to another role hands over their record types.
        other.sql(f'GRANT USAGE ON SCHEMA "{other.name}" TO "{s}"')
        cluster.sql(f'SELECT webhook_reassign_workflows(%s, %s)', (other.name, s))
        assert cluster.scalar("SELECT typowner::regrole::text FROM pg_type WHERE oid = %s::regtype",
                              (f"{other.name}.theirs",)) == s
    finally:
        drop_tenants(cluster, [other.name])
