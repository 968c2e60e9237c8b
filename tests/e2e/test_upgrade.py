"""Upgrades: an installation made with the frozen 0.1.0 install script
(sql/versions/) and filled through SQL, updated with ALTER EXTENSION
webhook_ext UPDATE, keeps every row, is served over HTTP by the new library,
and ends with the same catalog as a fresh CREATE EXTENSION of the current
version (compared with one query over the catalogs)."""

from __future__ import annotations

import json

import hookkit as hk
from hookkit import wait_for_status

FIRST_RELEASE = "0.1.0"

# Every object of the extension as text: relations (with their storage
# options) and their columns,
# constraints, indexes, policies and triggers; functions with their
# arguments, result, security, settings and privileges; the tables whose rows
# pg_dump keeps. Names, never OIDs, so that two databases compare.
CATALOG = """
WITH ext AS (SELECT e.oid, e.extconfig FROM pg_extension e WHERE e.extname = 'webhook_ext'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.oid FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid)
SELECT 'relation ' || c.oid::regclass::text || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity
       || ' acl=' || coalesce(c.relacl::text, '') || ' options=' || coalesce(c.reloptions::text, '')
  FROM pg_class c JOIN rels r ON r.oid = c.oid
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' #' || a.attnum
       || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' acl=' || coalesce(a.attacl::text, '')
  FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN rels r ON r.oid = i.indrelid
UNION ALL
SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' ' || p.polcmd::text || ' permissive='
       || p.polpermissive || ' roles=' || p.polroles::regrole[]::text
       || ' using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
       || ' check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM pg_policy p JOIN rels r ON r.oid = p.polrelid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' returns ' || pg_get_function_result(p.oid)
       || ' kind=' || p.prokind::text || ' secdef=' || p.prosecdef || ' volatile=' || p.provolatile::text
       || ' config=' || coalesce(array_to_string(p.proconfig, ','), '')
       || ' acl=' || coalesce(p.proacl::text, '') || ' body=' || md5(p.prosrc)
  FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text
  FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
UNION ALL
SELECT 'dumped ' || x.rel::regclass FROM ext, unnest(ext.extconfig) AS x(rel)
ORDER BY 1
"""


def catalog(c, dbname: str) -> list[str]:
    return [r[0] for r in c.sql(CATALOG, dbname=dbname)]


def fill_as_first_release(c) -> dict:
    """Workflows of every response method with parameters and a
    verification, and events in every status, written through the SQL API
    and, for events, as 0.1.0's schema allows."""
    c.sql("CREATE FUNCTION public.upgrade_h(e webhook.events) RETURNS jsonb LANGUAGE sql "
          "AS 'SELECT e.params'")
    ids = {}
    for method in ("default", "custom", "workflow"):
        wf = str(c.scalar("SELECT id FROM webhook_create_workflow(%s, 'public.upgrade_h')", (f"wf-{method}",)))
        c.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"order_id\": \"A-1\", \"amount\": 9.5}')",
              (wf,))
        c.sql("SELECT count(*) FROM webhook_set_required(%s, ARRAY['order_id'])", (wf,))
        if method == "custom":
            c.sql("SELECT webhook_set_response(%s, 'custom', body => 'got {{order_id}}', "
                  "content_type => 'text/plain')", (wf,))
        elif method == "workflow":
            c.sql("SELECT webhook_set_response(%s, 'workflow')", (wf,))
        ids[method] = wf
    c.sql("SELECT webhook_set_verification(%s, 'github', secret => 'upgrade-secret')", (ids["custom"],))
    c.sql("SELECT count(*) FROM webhook_sample_from_kv(%s, 'note=kept')", (ids["workflow"],))
    # A capture armed before the update takes the first request after it.
    ids["capture"] = str(c.scalar("SELECT id FROM webhook_create_workflow('wf-capture', 'public.upgrade_h')"))
    c.sql("SELECT webhook_capture_sample(%s, '12 hours')", (ids["capture"],))
    for status, next_attempt, attempts in (("pending", "now()", 0), ("failed", "now()", 1),
                                           ("dead", "NULL", 3), ("succeeded", "NULL", 1)):
        ids[status] = c.scalar(
            "INSERT INTO webhook.events (workflow_id, method, params, status, attempts, next_attempt_at, error) "
            f"VALUES (%s, 'POST', %s::jsonb, %s, %s, {next_attempt}, "
            "CASE WHEN %s IN ('failed', 'dead') THEN 'P0001: earlier failure' END) RETURNING id",
            (ids["default"], json.dumps({"order_id": status}), status, attempts, status))
    return ids


def rows(c) -> dict:
    return {table: c.rows(f"SELECT * FROM webhook.{table} ORDER BY 1, 2")
            for table in ("workflows", "parameters", "verifications")}


def test_an_update_from_the_first_release_keeps_the_data_serves_it_and_matches_a_fresh_install(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql(f"CREATE EXTENSION webhook_ext VERSION '{FIRST_RELEASE}'")
    assert c.scalar("SELECT extversion FROM pg_extension WHERE extname = 'webhook_ext'") == FIRST_RELEASE
    current = c.scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'webhook_ext'")
    assert current != FIRST_RELEASE
    ids = fill_as_first_release(c)
    before = rows(c)
    events_before = c.rows("SELECT id, workflow_id, params, status, attempts, error FROM webhook.events "
                           "ORDER BY id")

    # The new library does not touch the tables of an older version: 503
    # until the update, a WARNING with a HINT once in the log.
    c.wait_for_http()
    mismatch = {"msg": f"webhook_ext {FIRST_RELEASE} is installed but the library is {current}: "
                       "run ALTER EXTENSION webhook_ext UPDATE"}
    url = c.hook_url(ids["default"])
    r = hk.wait_until(lambda: hk.post_url(url, {"order_id": "early"}), timeout=10,
                      what="the listener noticed the installed version", until=lambda r: r.json() == mismatch)
    assert (r.status, r.headers["retry-after"]) == (503, "1")
    warning = (f'WARNING:  webhook_ext listener does not serve: the extension in database "postgres" is version '
               f"{FIRST_RELEASE}, the library is {current}")
    assert c.log().count(warning) == 1, c.log()[-3000:]
    assert "HINT:  Run ALTER EXTENSION webhook_ext UPDATE in that database; requests get 503 until then." \
        in c.log()
    assert c.scalar("SELECT count(*) FROM webhook.events") == len(events_before)
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE status = 'pending'") == 1
    # Nor does an executor start for the due events (the listener's checks
    # ran meanwhile: it answered with the installed version).
    assert c.scalar("SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'webhook_ext executor for %'") == 0

    c.sql("ALTER EXTENSION webhook_ext UPDATE")
    assert c.scalar("SELECT extversion FROM pg_extension WHERE extname = 'webhook_ext'") == current

    # The same catalog as a fresh install of the current version.
    c.sql("CREATE DATABASE fresh")
    c.sql("CREATE EXTENSION webhook_ext", dbname="fresh")
    updated, fresh = catalog(c, "postgres"), catalog(c, "fresh")
    assert len(fresh) > 200, len(fresh)
    assert [line for line in updated if line not in fresh] == []
    assert [line for line in fresh if line not in updated] == []

    # Every row is there as it was (finished events; the others run as soon
    # as the listener serves again).
    # Columns the update added hold their defaults; the others are as they were.
    after = rows(c)
    added = {"workflows": {"retain_succeeded": None, "retain_dead": None, "max_events": None, "queued": False,
                           "record_type": None}}
    for table, new_columns in added.items():
        assert [{k: r[k] for k in new_columns} for r in after[table]] == [new_columns] * len(after[table])
        after[table] = [{k: v for k, v in r.items() if k not in new_columns} for r in after[table]]
    assert after == before
    finished = (ids["dead"], ids["succeeded"])
    assert c.rows("SELECT id, workflow_id, params, status, attempts, error FROM webhook.events "
                  "WHERE id IN (%s, %s) ORDER BY id", finished) == \
        [e for e in events_before if e["id"] in finished]

    # Served over HTTP by the new library, without a restart: requests
    # accepted (and refused) as configured, pending and due failed events
    # run, replay works.
    r = hk.wait_until(lambda: hk.post_url(url, {"order_id": "B-2", "amount": 1}), timeout=10,
                      what="served after the update", until=lambda r: r.status == 200)
    assert r.json()["msg"] == "success"
    r = hk.post_url(c.hook_url(ids["default"]), {"amount": 1})
    assert (r.status, r.json()) == (400, {"msg": "Missing required parameter(s)", "missing": ["order_id"]})
    r = hk.post_url(c.hook_url(ids["custom"]), {"order_id": "C-3"})
    assert (r.status, r.json()) == (401, {"msg": "Invalid signature"})
    r = hk.post_url(c.hook_url(ids["workflow"]), {"order_id": "D-4"})
    assert (r.status, r.json()) == (200, {"order_id": "D-4"})
    r = hk.post_url(c.hook_url(ids["capture"]), {"sku": "X-9"})
    assert (r.status, r.json()) == (200, {"msg": "Sample captured", "workflow_id": ids["capture"],
                                          "parameters": {"body": 1, "query": 0, "header": 2}})
    assert c.rows("SELECT source, name FROM webhook.parameters WHERE workflow_id = %s "
                  "ORDER BY source, position", (ids["capture"],)) == \
        [{"source": "body", "name": "sku"}, {"source": "header", "name": "accept-encoding"},
         {"source": "header", "name": "content-type"}]
    # A workflow of the first release gets a typed record on the updated
    # install, kept to its parameter list from then on.
    c.sql("CREATE SCHEMA hooks")
    c.sql("SELECT webhook_set_record_type(%s, 'hooks.capture_hook')", (ids["capture"],))
    attributes = "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute " \
                 "WHERE attrelid = 'hooks.capture_hook'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    assert [(a["attname"], a["type"]) for a in c.rows(attributes)] == \
        [("sku", "text"), ("accept_encoding", "text"), ("content_type", "text")]
    c.sql("SELECT count(*) FROM webhook_sample_from_json(%s, '{\"sku\": \"X-1\", \"qty\": 2}')", (ids["capture"],))
    assert [(a["attname"], a["type"]) for a in c.rows(attributes)][-1] == ("qty", "numeric")
    assert wait_for_status(c, ids["pending"], "succeeded")["attempts"] == 1
    assert wait_for_status(c, ids["failed"], "succeeded")["attempts"] == 2
    replayed = c.scalar("SELECT webhook_replay(%s)", (ids["dead"],))
    assert replayed["status"] == 200, replayed
    assert c.row("SELECT origin, replay_of, status FROM webhook.events WHERE id = %s",
                 (replayed["event_id"],)) == {"origin": "replay", "replay_of": ids["dead"], "status": "succeeded"}


def test_every_released_version_updates_to_the_current_one(make_cluster):
    """The update path exists from each frozen release: PostgreSQL finds a
    chain of upgrade scripts to the default version."""
    c = make_cluster(preload=False)
    current = c.scalar("SELECT default_version FROM pg_available_extensions WHERE name = 'webhook_ext'")
    paths = c.rows("SELECT source, target, path FROM pg_extension_update_paths('webhook_ext') "
                   "WHERE target = %s AND path IS NOT NULL ORDER BY source", (current,))
    assert [p["source"] for p in paths] == [FIRST_RELEASE]
    assert paths[0]["path"] == f"{FIRST_RELEASE}--{current}"
