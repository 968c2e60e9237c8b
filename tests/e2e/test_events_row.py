"""The webhook.events row is declared once, in src/pg/event_row.rs: the
INSERTs that store events, the ROW(...) a handler receives and the
executor's claim are generated from that declaration, which
webhook._event_columns() reports. These tests hold the declaration to the
table of sql/schema.sql, and the handler's argument to the stored row."""

from datetime import datetime

from hookkit import post, ready, settle  # noqa: F401

# The table's columns as the catalog has them, types as format_type names them.
TABLE_COLUMNS = """
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = 'webhook.events'::pg_catalog.regclass
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum"""


def declared_columns(c) -> list[tuple[str, str]]:
    return [(col["name"], col["type"]) for col in c.scalar("SELECT webhook._event_columns()")]


def test_event_columns_declaration_matches_the_table(cluster):
    """Names, types and order: a column added to (or changed in) sql/schema.sql
    without the declaration fails here. The order matters because the
    handler's ROW(...)::webhook.events fills the columns by position."""
    table = [(r["name"], r["type"]) for r in cluster.rows(TABLE_COLUMNS)]
    declared = declared_columns(cluster)
    assert declared == table, (
        f"src/pg/event_row.rs declares {declared!r}, webhook.events has {table!r}")


def test_event_columns_is_internal(cluster):
    """Like the other internal helpers (sql/api.sql): not for PUBLIC, and
    with the search_path pinned."""
    assert cluster.scalar(
        "SELECT pg_catalog.has_function_privilege('public', 'webhook._event_columns()', 'EXECUTE')") is False
    config = cluster.scalar("SELECT proconfig FROM pg_catalog.pg_proc "
                            "WHERE oid = 'webhook._event_columns()'::pg_catalog.regprocedure")
    assert config == ["search_path=pg_catalog, pg_temp"], config


RECORDING_HANDLER = """
CREATE FUNCTION {fn}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
BEGIN
    INSERT INTO {table} (event_id, arg) VALUES (e.id, pg_catalog.to_jsonb(e));
    RETURN e.params;
END
$h$"""


def assert_argument_is_the_stored_row(c, table: str, event_id: int) -> None:
    """The handler's first argument holds the stored event, except what it
    is told of its own run: status pending, attempts 1 (the attempt
    running), no error, response or next attempt, handled_at the run's time."""
    settle(c, "id = %s", (event_id,))
    row = c.row(f"SELECT h.arg, pg_catalog.to_jsonb(e) AS stored FROM {table} h "
                "JOIN webhook.events e ON e.id = h.event_id WHERE h.event_id = %s", (event_id,))
    assert row is not None, f"the handler of event {event_id} did not run"
    arg, stored = row["arg"], row["stored"]
    names = [name for name, _ in declared_columns(c)]
    assert set(arg) == set(names) == set(stored), (sorted(arg), names)
    run_of_its_own = {"status": "pending", "error": None, "response": None,
                      "next_attempt_at": None, "attempts": 1}
    for name in names:
        if name in run_of_its_own:
            assert arg[name] == run_of_its_own[name], (name, arg[name])
        elif name == "handled_at":
            assert arg[name] is not None
        elif name == "received_at":
            # Carried as Unix seconds (float8) between storing and running.
            gap = datetime.fromisoformat(arg[name]) - datetime.fromisoformat(stored[name])
            assert abs(gap.total_seconds()) < 0.001, (arg[name], stored[name])
        else:
            assert arg[name] == stored[name], (name, arg[name], stored[name])


def test_handler_argument_is_the_stored_row(ready, new_workflow, uniq):
    """Over HTTP (stored, then run by an executor from its claim), by
    webhook_trigger and by webhook_replay (stored and run in the caller's
    transaction)."""
    c = ready
    table, fn = f"public.{uniq('arg')}", f"public.{uniq('h')}"
    c.sql(f"CREATE TABLE {table} (event_id bigint PRIMARY KEY, arg jsonb)")
    c.sql(RECORDING_HANDLER.format(fn=fn, table=table))
    try:
        wf = new_workflow(handler=fn)["id"]

        r = post(c, wf, json_body={"order": "A1", "n": 2}, params={"src": "web"},
                 headers={"X-Shop": "Berlin"})
        assert r.status_code == 200, r.text
        http_id = c.scalar("SELECT max(id) FROM webhook.events WHERE workflow_id = %s", (wf,))
        assert c.scalar("SELECT listener_pid IS NOT NULL AND raw_path IS NOT NULL "
                        "FROM webhook.events WHERE id = %s", (http_id,)) is True
        assert_argument_is_the_stored_row(c, table, http_id)

        out = c.scalar("SELECT webhook_trigger(%s, body => '{\"order\": \"T1\"}', "
                       "query => '{\"q\": \"1\"}', headers => '{\"X-A\": \"b\"}')", (wf,))
        assert out["status"] == 200, out
        assert_argument_is_the_stored_row(c, table, out["event_id"])

        replayed = c.scalar("SELECT webhook_replay(%s)", (http_id,))
        assert replayed["status"] == 200, replayed
        assert c.scalar("SELECT replay_of FROM webhook.events WHERE id = %s",
                        (replayed["event_id"],)) == http_id
        assert_argument_is_the_stored_row(c, table, replayed["event_id"])
    finally:
        c.sql(f"DELETE FROM webhook.workflows WHERE handler = '{fn}'::regproc")
        c.sql(f"DROP FUNCTION IF EXISTS {fn}(webhook.events); DROP TABLE IF EXISTS {table}")
