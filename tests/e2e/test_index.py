"""webhook_find_workflow by full id uses the primary key index on 100,000
workflows. Runs in its own database so other tests stay fast."""

import pytest


@pytest.fixture
def big_db(cluster, uniq):
    name = uniq("idx")
    cluster.create_database(name)
    cluster.sql("CREATE FUNCTION h(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ SELECT e.params $h$",
                dbname=name)
    cluster.sql("INSERT INTO webhook.workflows (name, handler) "
                "SELECT 'wf-' || g, 'h'::regproc FROM generate_series(1, 100000) g", dbname=name)
    cluster.sql("ANALYZE webhook.workflows", dbname=name)
    yield name
    cluster.drop_database(name)


def plan(cluster, dbname, arg):
    rows = cluster.sql("EXPLAIN (COSTS OFF) SELECT * FROM webhook_find_workflow(%s)", (arg,), dbname=dbname)
    return "\n".join(r[0] for r in rows)


def test_find_by_full_id_uses_primary_key(cluster, big_db):
    assert cluster.scalar("SELECT count(*) FROM webhook.workflows", dbname=big_db) == 100000
    wid, name = cluster.sql("SELECT id::text, name FROM webhook.workflows ORDER BY name DESC LIMIT 1",
                            dbname=big_db)[0]
    url = f"http://127.0.0.1:{cluster.http_port}/hooks/{wid}?x=1"
    for arg in (wid, wid.upper(), url):
        text = plan(cluster, big_db, arg)
        assert "Index Scan using workflows_pkey" in text, text
        assert "Seq Scan on workflows" not in text, text
        assert "Function Scan" not in text, text  # the SQL function is inlined
        rows = cluster.sql("SELECT id::text, name FROM webhook_find_workflow(%s)", (arg,), dbname=big_db)
        assert rows == [(wid, name)]
    # A fragment still finds the row (scanning, which is fine).
    assert (wid, name) in cluster.sql("SELECT id::text, name FROM webhook_find_workflow(%s)", (wid[-12:],),
                                      dbname=big_db)
