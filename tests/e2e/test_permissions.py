"""Two roles: a webhook_admin member manages its own workflows and cannot see
or change another role's workflows, parameters or events; a role without
webhook_admin cannot use the API at all."""

import psycopg
import pytest

HANDLER = ("CREATE FUNCTION {schema}.handler(event webhook.events) RETURNS jsonb "
           "LANGUAGE sql AS $h$ SELECT event.params $h$")


class Role:
    def __init__(self, cluster, name):
        self.cluster, self.name = cluster, name

    def sql(self, query, params=None):
        return self.cluster.sql(query, params, user=self.name)

    def rows(self, query, params=None):
        return self.cluster.rows(query, params, user=self.name)

    def scalar(self, query, params=None):
        return self.cluster.scalar(query, params, user=self.name)

    def error(self, query, params=None, sqlstate=None):
        return self.cluster.sql_error(query, params, sqlstate=sqlstate, user=self.name)

    @property
    def handler(self):
        return f"{self.name}.handler"


@pytest.fixture
def roles(cluster, uniq):
    """alice and bob (webhook_admin members, each with a schema holding a handler)
    and carol (LOGIN only). Everything is removed afterwards."""
    names = {"alice": uniq("alice"), "bob": uniq("bob"), "carol": uniq("carol")}
    for key, name in names.items():
        cluster.sql(f"CREATE ROLE {name} LOGIN")
    cluster.sql(f"GRANT webhook_admin TO {names['alice']}, {names['bob']}")
    for key in ("alice", "bob"):
        name = names[key]
        cluster.sql(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        cluster.sql(HANDLER.format(schema=name), user=name)
    try:
        yield {key: Role(cluster, name) for key, name in names.items()}
    finally:
        all_names = list(names.values())
        cluster.sql("DELETE FROM webhook.workflows WHERE owner::text = ANY(%s::text[])", (all_names,))
        for name in all_names:
            cluster.sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            cluster.sql(f"DROP OWNED BY {name} CASCADE")
            cluster.sql(f"DROP ROLE {name}")


def succeeds_in_rollback(cluster, role, query, params=None):
    """Positive control: ``query`` runs without error as ``role`` (in a
    transaction that is rolled back, so it changes nothing); returns its
    rowcount."""
    with cluster.connect(user=role.name) as conn:
        with conn.transaction(force_rollback=True):
            return conn.execute(query, params).rowcount


def create(role, name="orders"):
    row = role.rows("SELECT * FROM webhook_create_workflow(%s, %s::regproc)", (name, role.handler))[0]
    row["id"] = str(row["id"])
    return row


def test_owner_is_the_creating_role(cluster, roles):
    alice = roles["alice"]
    wf = create(alice)
    assert wf["owner"] == alice.name
    assert cluster.scalar("SELECT owner FROM webhook.workflows WHERE id = %s::uuid", (wf["id"],)) == alice.name
    # alice sees it and manages it.
    assert [str(r["id"]) for r in alice.rows("SELECT * FROM webhook_find_workflow(%s)", (wf["id"],))] == [wf["id"]]
    alice.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1, \"c\": {\"d\": 2}}')", (wf["id"],))
    alice.sql("SELECT webhook_set_required(%s::uuid, ARRAY['c.d'])", (wf["id"],))
    alice.sql("SELECT webhook_set_response(%s::uuid, 'workflow')", (wf["id"],))
    alice.sql("SELECT webhook_rename_workflow(%s::uuid, 'orders2')", (wf["id"],))
    alice.sql("SELECT webhook_disable_workflow(%s::uuid)", (wf["id"],))
    assert alice.scalar("SELECT webhook_url(%s::uuid)", (wf["id"],)).endswith("/hooks/" + wf["id"])
    row = cluster.row("SELECT name, enabled, response_method FROM webhook.workflows WHERE id = %s::uuid", (wf["id"],))
    assert row == {"name": "orders2", "enabled": False, "response_method": "workflow"}
    assert alice.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s::uuid AND required",
                        (wf["id"],)) == 1
    assert alice.scalar("SELECT webhook_drop_workflow(%s::uuid)", (wf["id"],)) is True
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE id = %s::uuid", (wf["id"],)) == 0


def test_roles_cannot_see_or_change_each_others_workflows(cluster, roles):
    alice, bob = roles["alice"], roles["bob"]
    wa = create(alice)
    alice.sql("SELECT webhook_sample_from_json(%s::uuid, '{\"a\": 1, \"c\": {\"d\": 2}}')", (wa["id"],))
    alice.sql("SELECT webhook_set_required(%s::uuid, ARRAY['a'])", (wa["id"],))
    # Same name is fine for another owner.
    wb = create(bob)
    assert wb["name"] == wa["name"]

    before = cluster.rows("SELECT * FROM webhook.workflows WHERE id = %s::uuid", (wa["id"],))
    params_before = cluster.rows("SELECT * FROM webhook.parameters WHERE workflow_id = %s::uuid ORDER BY position",
                                 (wa["id"],))
    alice_event = cluster.scalar("INSERT INTO webhook.events (workflow_id, method) VALUES (%s::uuid, 'POST') "
                                 "RETURNING id", (wa["id"],))

    # bob cannot find or see alice's workflow...
    assert bob.rows("SELECT * FROM webhook_find_workflow(%s)", (wa["id"],)) == []
    assert wa["id"] not in [str(r[0]) for r in bob.sql("SELECT id FROM webhook_find_workflow(%s)", (wa["id"][:8],))]
    assert wa["id"] in [str(r[0]) for r in alice.sql("SELECT id FROM webhook_find_workflow(%s)", (wa["id"][:8],))]
    assert {str(r[0]) for r in bob.sql("SELECT id FROM webhook.workflows")} == {wb["id"]}
    assert bob.sql("SELECT * FROM webhook.parameters WHERE workflow_id = %s::uuid", (wa["id"],)) == []
    assert bob.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id <> %s::uuid", (wb["id"],)) == 0
    assert bob.sql("SELECT id FROM webhook.workflow_overview WHERE id = %s::uuid", (wa["id"],)) == []
    # ...and alice sees only hers.
    assert {str(r[0]) for r in alice.sql("SELECT id FROM webhook.workflows")} == {wa["id"]}

    # bob cannot change it through the API: it "does not exist" for him.
    for call in [
        "SELECT webhook_set_required(%s::uuid, ARRAY['a'], false)",
        "SELECT webhook_rename_workflow(%s::uuid, 'stolen')",
        "SELECT webhook_drop_workflow(%s::uuid)",
        "SELECT webhook_disable_workflow(%s::uuid)",
        "SELECT webhook_sample_from_json(%s::uuid, '{\"x\": 1}')",
        "SELECT webhook_set_full_body(%s::uuid, true)",
        "SELECT webhook_set_response(%s::uuid, 'default')",
        "SELECT webhook_url(%s::uuid)",
        f"SELECT webhook_set_handler(%s::uuid, '{bob.handler}'::regproc)",
        # Parameter editing, typing, discriminators, delivery keys, events.
        "SELECT webhook_add_parameter(%s::uuid, 'x-sig', 'header')",
        "SELECT webhook_drop_parameter(%s::uuid, 'a')",
        "SELECT webhook_alter_parameter(%s::uuid, 'a', required => false)",
        "SELECT webhook_set_strict(%s::uuid, true)",
        "SELECT webhook_set_discriminator(%s::uuid, 'body', 'type')",
        "SELECT webhook_set_delivery_key(%s::uuid, 'none')",
        "SELECT webhook_delete_events(%s::uuid)",
        # The internal helpers behind the deletes check ownership themselves.
        "SELECT webhook._delete_workflow(%s::uuid)",
        "SELECT webhook._delete_parameters(%s::uuid, 'body')",
        "SELECT webhook._delete_events(%s::uuid, 'infinity')",
    ]:
        # Positive control: the owner may make the call.
        # (webhook_set_handler: with her own handler; bob's schema is not hers to use.)
        succeeds_in_rollback(cluster, alice, call.replace(bob.handler, alice.handler), (wa["id"],))
        err = bob.error(call, (wa["id"],), sqlstate="42704")
        assert err["message"] == f"workflow {wa['id']} does not exist", (call, err)
    # drop ... if_exists quietly does nothing.
    assert bob.scalar("SELECT webhook_drop_workflow(%s::uuid, true)", (wa["id"],)) is False

    # ...nor with plain DML: updates see no row, and tenants hold no DELETE
    # privilege at all (it would let them LOCK the tables).
    steal = ("UPDATE webhook.workflows SET name = 'stolen', enabled = false WHERE id = %s::uuid",
             "UPDATE webhook.parameters SET required = false WHERE workflow_id = %s::uuid")
    # Positive control: the same updates reach alice's rows when alice runs them.
    assert [succeeds_in_rollback(cluster, alice, q, (wa["id"],)) for q in steal] == [1, 3]  # a, c, c.d
    with cluster.connect(user=bob.name) as conn:
        assert [conn.execute(q, (wa["id"],)).rowcount for q in steal] == [0, 0]
    for table in ("parameters", "workflows"):
        column = "id" if table == "workflows" else "workflow_id"
        err = bob.error(f"DELETE FROM webhook.{table} WHERE {column} = %s::uuid", (wa["id"],), sqlstate="42501")
        assert err["message"] == f"permission denied for table {table}"

    assert cluster.rows("SELECT * FROM webhook.workflows WHERE id = %s::uuid", (wa["id"],)) == before
    assert cluster.rows("SELECT * FROM webhook.parameters WHERE workflow_id = %s::uuid ORDER BY position",
                        (wa["id"],)) == params_before
    assert cluster.scalar("SELECT count(*) FROM webhook.events WHERE id = %s", (alice_event,)) == 1


def test_cannot_write_rows_owned_by_another_role(cluster, roles):
    alice, bob = roles["alice"], roles["bob"]
    wa = create(alice)
    wb = create(bob)
    # INSERT a workflow owned by alice.
    # (With a handler alice may call, given by OID: bob cannot name her schema.)
    alice_handler_oid = cluster.scalar(f"SELECT '{alice.handler}'::regproc::oid")
    # Positive control: alice herself may insert that row, and parameters of hers.
    assert succeeds_in_rollback(cluster, alice, "INSERT INTO webhook.workflows (name, handler, owner) "
                                "VALUES ('fake', %s::oid::regproc, %s)", (alice_handler_oid, alice.name)) == 1
    assert succeeds_in_rollback(cluster, alice, "INSERT INTO webhook.parameters (workflow_id, name, source, "
                                "type, position) VALUES (%s::uuid, 'evil', 'body', 'text', 1)", (wa["id"],)) == 1
    err = bob.error("INSERT INTO webhook.workflows (name, handler, owner) VALUES ('fake', %s::oid::regproc, %s)",
                    (alice_handler_oid, alice.name), sqlstate="42501")
    assert err["message"] == 'new row violates row-level security policy for table "workflows"', err
    # Give his own workflow away: the owner column is not his to update.
    err = bob.error("UPDATE webhook.workflows SET owner = %s WHERE id = %s::uuid", (alice.name, wb["id"]),
                    sqlstate="42501")
    assert err["message"] == "permission denied for table workflows"
    # Add parameters to alice's workflow.
    err = bob.error("INSERT INTO webhook.parameters (workflow_id, name, source, type, position) "
                    "VALUES (%s::uuid, 'evil', 'body', 'text', 1)", (wa["id"],), sqlstate="42501")
    assert err["message"] == 'new row violates row-level security policy for table "parameters"', err
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE owner = %s::regrole", (alice.name,)) == 1
    assert cluster.scalar("SELECT owner::text FROM webhook.workflows WHERE id = %s::uuid", (wb["id"],)) == bob.name
    assert cluster.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s::uuid", (wa["id"],)) == 0


def test_events_are_visible_only_to_the_owner(cluster, roles):
    alice, bob = roles["alice"], roles["bob"]
    wa = create(alice)
    wb = create(bob)
    ev_a = cluster.scalar("INSERT INTO webhook.events (workflow_id, method, params, body) "
                          "VALUES (%s::uuid, 'POST', '{\"a\": 1}', 'secret') RETURNING id", (wa["id"],))
    ev_b = cluster.scalar("INSERT INTO webhook.events (workflow_id, method) VALUES (%s::uuid, 'GET') RETURNING id",
                          (wb["id"],))
    assert [r[0] for r in alice.sql("SELECT id FROM webhook.events WHERE id IN (%s, %s)", (ev_a, ev_b))] == [ev_a]
    assert alice.scalar("SELECT body FROM webhook.events WHERE id = %s", (ev_a,)) == "secret"
    assert [r[0] for r in bob.sql("SELECT id FROM webhook.events WHERE id IN (%s, %s)", (ev_a, ev_b))] == [ev_b]
    assert bob.sql("SELECT * FROM webhook.events WHERE workflow_id = %s::uuid", (wa["id"],)) == []
    # bob cannot delete it either: not with DML (no tenant may), not with the API.
    err = bob.error("DELETE FROM webhook.events WHERE id = %s", (ev_a,), sqlstate="42501")
    assert err["message"] == "permission denied for table events"
    err = bob.error("SELECT webhook_delete_events(%s::uuid)", (wa["id"],), sqlstate="42704")
    assert err["message"] == f"workflow {wa['id']} does not exist"
    assert cluster.scalar("SELECT count(*) FROM webhook.events WHERE id = %s", (ev_a,)) == 1


def test_handler_the_owner_cannot_execute_is_rejected(cluster, roles):
    alice, bob = roles["alice"], roles["bob"]
    cluster.sql(f"GRANT USAGE ON SCHEMA {alice.name} TO {bob.name}")
    create_x = "SELECT webhook_create_workflow('x', %s::regproc)"
    # Positive control: while EXECUTE is PUBLIC's, bob may use alice's handler.
    succeeds_in_rollback(cluster, bob, create_x, (alice.handler,))
    cluster.sql(f"REVOKE EXECUTE ON FUNCTION {alice.handler}(webhook.events) FROM PUBLIC")
    err = bob.error(create_x, (alice.handler,), sqlstate="42501")
    assert (err["message"], err["detail"], err["hint"]) == (
        f"permission denied to use {alice.handler}(webhook.events) as a handler",
        f"Role {bob.name} cannot execute it (it needs USAGE on schema {alice.name} and EXECUTE on the "
        f"function), and handlers run as the workflow owner.",
        "Use a function in a schema the owner can use."), err


@pytest.mark.parametrize("query, message", [
    ("SELECT webhook_create_workflow('x', 'public.e2e_handler'::regproc)",
     "permission denied for function webhook_create_workflow"),
    ("SELECT * FROM webhook_find_workflow('abcd')", "permission denied for function webhook_find_workflow"),
    ("SELECT * FROM webhook.workflows", "permission denied for schema webhook"),
    ("SELECT * FROM webhook.events", "permission denied for schema webhook"),
])
def test_role_without_webhook_admin_is_denied(cluster, handler, roles, query, message):
    carol, alice = roles["carol"], roles["alice"]
    # Positive control: a webhook_admin member may run it.
    succeeds_in_rollback(cluster, alice, query)
    err = carol.error(query, sqlstate="42501")
    assert err["message"] == message, err
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows WHERE owner = %s::regrole", (carol.name,)) == 0


def test_granting_webhook_admin_is_enough(cluster, roles):
    carol = roles["carol"]
    cluster.sql(f"GRANT webhook_admin TO {carol.name}")
    cluster.sql(f"CREATE SCHEMA {carol.name} AUTHORIZATION {carol.name}")
    carol.sql(HANDLER.format(schema=carol.name))
    wf = create(carol)
    assert wf["owner"] == carol.name
    carol.sql("SELECT webhook_sample_from_kv(%s::uuid, 'a=1')", (wf["id"],))
    assert carol.scalar("SELECT count(*) FROM webhook.parameters") == 1


def test_new_workflow_settings_keep_their_rules_and_owners_on_the_table(cluster, roles):
    """Columns tenants may update directly (typing, discriminator, delivery
    key): the rules hold on the table, another owner's rows are out of reach,
    and deliveries, rejections and rejection_counts show each owner only its
    rows."""
    alice, bob = roles["alice"], roles["bob"]
    wa, wb = create(alice), create(bob)
    # Positive control: alice may set them on her own workflow directly.
    alice.sql("UPDATE webhook.workflows SET strict_types = true, discriminator_source = 'header', "
              "discriminator_name = 'x-github-event', delivery_key_source = 'body', delivery_key_name = 'id' "
              "WHERE id = %s::uuid", (wa["id"],))
    for assignment in ("discriminator_source = 'cookie', discriminator_name = 'x'",
                       "discriminator_source = 'header', discriminator_name = NULL",
                       "delivery_key_source = 'header', delivery_key_name = ''",
                       "delivery_key_source = 'none', delivery_key_name = 'x'",
                       "delivery_key_window = interval '-1 second'"):
        err = alice.error(f"UPDATE webhook.workflows SET {assignment} WHERE id = %s::uuid", (wa["id"],),
                          sqlstate="23514")
        assert "violates check constraint" in err["message"], assignment
    with cluster.connect(user=bob.name) as conn:
        assert conn.execute("UPDATE webhook.workflows SET strict_types = true, delivery_key_source = 'none' "
                            "WHERE id = %s::uuid", (wa["id"],)).rowcount == 0
    assert cluster.row("SELECT strict_types, delivery_key_source FROM webhook.workflows WHERE id = %s::uuid",
                       (wa["id"],)) == {"strict_types": True, "delivery_key_source": "body"}

    for wf in (wa["id"], wb["id"]):
        cluster.sql("INSERT INTO webhook.deliveries VALUES (%s::uuid, 'k', 1, now())", (wf,))
        cluster.sql("INSERT INTO webhook.rejections (workflow_id, received_at, status, reason, method) "
                    "VALUES (%s::uuid, now(), 400, 'r', 'POST')", (wf,))
        cluster.sql("INSERT INTO webhook.rejection_counts VALUES (%s::uuid, 400, 'r', 1, now())", (wf,))
    for table in ("deliveries", "rejections", "rejection_counts"):
        assert [str(r[0]) for r in bob.sql(f"SELECT workflow_id FROM webhook.{table}")] == [wb["id"]], table
        err = bob.error(f"DELETE FROM webhook.{table}", sqlstate="42501")
        assert err["message"] == f"permission denied for table {table}"
    err = bob.error("INSERT INTO webhook.deliveries VALUES (%s::uuid, 'k2', 1, now())", (wb["id"],),
                    sqlstate="42501")
    assert err["message"] == "permission denied for table deliveries"
