"""pg_dump of a database with workflows, parameters and events restores them
into a fresh database (pg_extension_config_dump)."""

import os

import pytest

WORKFLOWS = ("SELECT id, name, handler::regprocedure::text AS handler, owner, enabled, full_body, full_body_param, "
             "allowed_methods, response_method, response_status, response_content_type, response_body, "
             "response_headers, response_timeout, failure_status, failure_content_type, failure_body, "
             "created_at, updated_at FROM webhook.workflows ORDER BY id")
PARAMETERS = ("SELECT workflow_id, name, source, type, sample, required, position, depth "
              "FROM webhook.parameters ORDER BY workflow_id, source, position")
EVENTS = ("SELECT id, workflow_id, received_at, method, query, headers, params, body, status, error, response, origin "
          "FROM webhook.events ORDER BY id")


@pytest.fixture
def databases(cluster, uniq):
    names = [uniq("bk_src"), uniq("bk_dst")]
    yield names
    for name in names:
        cluster.drop_database(name)


def test_dump_and_restore_keeps_workflows_parameters_and_events(cluster, databases, e2e_root):
    src, dst = databases
    cluster.create_database(src)
    q = lambda sql, params=None: cluster.sql(sql, params, dbname=src)  # noqa: E731
    q("CREATE SCHEMA app")
    q("CREATE FUNCTION app.on_order(event webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ SELECT event.params $h$")
    q("CREATE FUNCTION app.on_raw(payload jsonb) RETURNS text LANGUAGE sql AS $h$ SELECT payload::text $h$")
    w1 = str(cluster.scalar("SELECT id FROM webhook_create_workflow('orders', 'app.on_order')", dbname=src))
    w2 = str(cluster.scalar("SELECT id FROM webhook_create_workflow('raw', 'app.on_raw', methods => '{POST}')",
                            dbname=src))
    q("SELECT webhook_sample_from_json(%s::uuid, %s::jsonb)",
      (w1, '{"order_id": 42, "customer": {"email": "a@example.com", "name": "Ann"}, "note": "x"}'))
    q("SELECT webhook_set_required(%s::uuid, ARRAY['order_id', 'customer.email'])", (w1,))
    q("SELECT webhook_set_response(%s::uuid, 'custom', content_type => 'text/plain', body => 'ok {{order_id}}', "
      "status => 202, headers => '{\"X-Source\": \"e2e\"}')", (w1,))
    q("SELECT webhook_sample_from_kv(%s::uuid, 'a=1&b=two')", (w2,))
    q("SELECT webhook_set_response(%s::uuid, 'workflow', timeout => '2 seconds', failure_status => 503)", (w2,))
    q("SELECT webhook_disable_workflow(%s::uuid)", (w2,))
    for i in range(3):
        q("INSERT INTO webhook.events (workflow_id, method, params, body, status, origin, next_attempt_at) "
          "VALUES (%s::uuid, 'POST', %s::jsonb, %s, 'succeeded', 'trigger', NULL)",
          (w1, f'{{"order_id": {i}}}', f"body {i}"))
    q("INSERT INTO webhook.events (workflow_id, method, status, error, next_attempt_at) "
      "VALUES (%s::uuid, 'POST', 'dead', 'boom', NULL)",
      (w2,))

    dump = os.path.join(e2e_root, f"{src}.sql")
    cluster.pg_tool("pg_dump", "-f", dump, dbname=src)
    text = open(dump).read()
    assert "COPY webhook.workflows" in text and "COPY webhook.parameters" in text and "COPY webhook.events" in text

    cluster.sql(f'CREATE DATABASE "{dst}"')
    cluster.pg_tool("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump, dbname=dst)

    for query in (WORKFLOWS, PARAMETERS, EVENTS):
        original = cluster.rows(query, dbname=src)
        restored = cluster.rows(query, dbname=dst)
        assert original, query
        assert restored == original, query
    # Spot checks of what matters most.
    restored = {str(r["id"]): r for r in cluster.rows(WORKFLOWS, dbname=dst)}
    assert set(restored) == {w1, w2}
    assert restored[w1]["handler"] == "app.on_order(webhook.events)"
    assert restored[w2]["handler"] == "app.on_raw(jsonb)"
    assert restored[w1]["response_method"] == "custom" and restored[w1]["response_status"] == 202
    assert restored[w2]["enabled"] is False
    required = cluster.sql("SELECT name FROM webhook.parameters WHERE workflow_id = %s::uuid AND required "
                           "ORDER BY name", (w1,), dbname=dst)
    assert [r[0] for r in required] == ["customer.email", "order_id"]
    # The restored data works with the API.
    assert [str(r[0]) for r in cluster.sql("SELECT id FROM webhook_find_workflow(%s)", (w1,), dbname=dst)] == [w1]

    # The event id sequence continues after the restored events.
    max_old = cluster.scalar("SELECT max(id) FROM webhook.events", dbname=src)
    new_id = cluster.scalar("INSERT INTO webhook.events (workflow_id, method) VALUES (%s::uuid, 'GET') RETURNING id",
                            (w1,), dbname=dst)
    assert new_id > max_old
