"""The listener background worker: registration under
shared_preload_libraries, waiting for the extension, surviving DROP/CREATE
EXTENSION, prompt shutdown; and no listener without preload."""

import os
import re
import time

import hookkit as hk

# Exit code 1 at shutdown is fine (the postmaster logs it for every worker that
# exits with 1, e.g. the logical replication launcher); signals never are.
SIGNAL_CRASH = re.compile(r"terminated by signal|PANIC")
CRASH = re.compile(r"terminated by signal|PANIC|was terminated by|"
                   r"background worker \"webhook_ext listener[^\"]*\" \(PID \d+\) exited with exit code [1-9]")


def test_listener_waits_for_extension_then_finds_it(make_cluster):
    c = make_cluster(conf={"webhook.database": "hooks", "webhook.workers": 3})
    # The database does not exist yet; once it does, the listener connects and waits.
    c.sql("CREATE DATABASE hooks")
    c.wait_for_log(r'webhook_ext listener started\b[^\n]* for database "hooks"', timeout=15)
    c.wait_for_log(r'waiting for CREATE EXTENSION webhook_ext in database "hooks"', timeout=10)
    assert "found the extension" not in c.log()

    # webhook.workers listener processes, visible in pg_stat_activity.
    pids = c.wait_for_listeners(3)
    settled = c.log_position()  # the restarts while "hooks" did not exist are over
    assert c.scalar("SELECT count(DISTINCT datname) FROM pg_stat_activity "
                    "WHERE backend_type = 'webhook_ext listener'") == 1
    assert c.scalar("SELECT min(datname) FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener'") == "hooks"

    pos = c.log_position()
    # CREATE EXTENSION where the listener serves: no "not running" notice.
    _, notices = c.sql_notices("CREATE EXTENSION webhook_ext", dbname="hooks")
    assert not any("not running" in n["message"] for n in notices), notices
    c.wait_for_log(r'webhook_ext listener found the extension in database "hooks"', since=pos, timeout=10)

    # The listener survives DROP EXTENSION / CREATE EXTENSION in its database.
    pos = c.log_position()
    c.sql("DROP EXTENSION webhook_ext", dbname="hooks")
    time.sleep(2.5)  # more than two of the listener's polling rounds
    assert c.listener_pids() == pids
    c.sql("CREATE EXTENSION webhook_ext", dbname="hooks")
    c.wait_for_log(r'webhook_ext listener found the extension in database "hooks"', since=pos, timeout=10)
    time.sleep(1.5)
    assert c.listener_pids() == pids
    assert not CRASH.search(c.log(), settled), c.log()[settled:]

    # Shuts down promptly.
    elapsed = c.stop("fast")
    assert elapsed < 5, f"pg_ctl stop -m fast took {elapsed:.1f}s"
    assert not SIGNAL_CRASH.search(c.log(), settled), c.log()[settled:]


def test_create_extension_outside_webhook_database_says_so(make_cluster):
    c = make_cluster(conf={"webhook.database": "hooks"})
    c.sql("CREATE DATABASE hooks")
    _, notices = c.sql_notices("CREATE EXTENSION webhook_ext", dbname="postgres")
    # A NOTICE raised inside an extension script is filtered out by PostgreSQL
    # (it forces client_min_messages >= WARNING while the script runs), so what
    # matters is that the message reaches the client at all.
    matching = [n for n in notices if '"hooks"' in n["message"] and '"postgres"' in n["message"]]
    assert [(n["severity"], n["message"], n["hint"]) for n in matching] == [
        ("WARNING", 'webhook_ext listener serves database "hooks", not "postgres"',
         "Set webhook.database = 'postgres' and restart PostgreSQL to receive webhooks here.")], notices
    assert c.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'webhook_ext'") == 1


def postmaster_children(c, title: str) -> list[int]:
    """PIDs of the postmaster's child processes whose command line (the
    process title) contains ``title``, read from /proc, not from PostgreSQL."""
    with open(os.path.join(c.datadir, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if ppid == postmaster and title in cmdline:
            found.append(int(entry))
    return sorted(found)


def test_listener_count_follows_workers_setting(cluster, make_cluster):
    # The session cluster does not set webhook.workers: the README's default, 2.
    assert "webhook.workers" not in cluster.settings()
    assert cluster.scalar("SHOW webhook.workers") == "2"
    pids = cluster.wait_for_listeners(2)
    assert postmaster_children(cluster, "webhook_ext listener") == pids
    # A configured value other than the default: that many processes, all
    # serving the configured database.
    c = make_cluster(conf={"webhook.workers": 3})
    assert c.scalar("SHOW webhook.workers") == "3"
    pids = c.wait_for_listeners(3)
    assert postmaster_children(c, "webhook_ext listener") == pids
    rows = c.rows("SELECT datname FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener'")
    assert [r["datname"] for r in rows] == ["postgres"] * 3, rows


def test_session_cluster_log_shows_listener_started(cluster):
    cluster.wait_for_log(r'webhook_ext listener started\b[^\n]* for database "postgres"', timeout=10)
    cluster.wait_for_log(r'webhook_ext listener found the extension in database "postgres"', timeout=10)


def test_without_preload_create_extension_notices_and_no_listener(make_cluster):
    c = make_cluster(preload=False)
    _, notices = c.sql_notices("CREATE EXTENSION webhook_ext")
    assert c.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'webhook_ext'") == 1
    matching = [n for n in notices if n["message"] == "webhook_ext listener is not running"]
    # A WARNING: PostgreSQL filters NOTICEs raised inside extension scripts.
    assert [(n["severity"], n["detail"], n["hint"]) for n in matching] == [
        ("WARNING", "The SQL API works, but no HTTP requests are received.",
         "Add webhook_ext to shared_preload_libraries in postgresql.conf and restart PostgreSQL.")], notices
    assert c.listener_pids() == []
    assert c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'webhook%'") == 0
    assert "webhook_ext listener started" not in c.log()

    # The SQL API works.
    c.sql("CREATE FUNCTION h(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$ SELECT e.params $h$")
    wid = str(c.scalar("SELECT id FROM webhook_create_workflow('x', 'h')"))
    c.sql("SELECT webhook_sample_from_kv(%s::uuid, 'a=1')", (wid,))
    assert [str(r[0]) for r in c.sql("SELECT id FROM webhook_find_workflow(%s)", (wid,))] == [wid]
    time.sleep(1)
    assert c.listener_pids() == []
    assert c.stop("fast") < 5


# ------------------------------------------------------ extension schema
def test_create_extension_in_a_schema_of_its_own(make_cluster):
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE SCHEMA webhook_api")
    c.sql("CREATE EXTENSION webhook_ext SCHEMA webhook_api")
    assert c.scalar("SELECT count(*) FROM pg_proc WHERE proname = 'webhook_create_workflow' "
                    "AND pronamespace = 'webhook_api'::regnamespace") == 1
    assert c.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'webhook\\_%' "
                    "AND pronamespace = 'public'::regnamespace") == 0
    c.sql("CREATE FUNCTION public.h(e webhook.events) RETURNS jsonb LANGUAGE sql AS 'SELECT e.params'")
    wf = str(c.scalar("SELECT id FROM webhook_api.webhook_create_workflow('api-schema', 'public.h')"))
    url = c.scalar("SELECT webhook_api.webhook_url(%s)", (wf,))
    c.wait_for_http()
    r = hk.post_url(url, {"order": "A-1"})
    assert r.status == 200, r
    assert c.scalar("SELECT params FROM webhook.events WHERE workflow_id = %s", (wf,)) == {"order": "A-1"}
    assert [str(row["id"]) for row in c.rows("SELECT id FROM webhook_api.webhook_find_workflow(%s)", (wf,))] == \
        [wf]
