"""The listener background worker (issue 2): registration under
shared_preload_libraries, waiting for the extension, surviving DROP/CREATE
EXTENSION, prompt shutdown; and no listener without preload."""

import re
import time

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
    assert matching, f"no message about the listener serving database hooks; got {notices}"
    assert matching[0]["severity"] in ("NOTICE", "WARNING")
    assert "webhook.database" in (matching[0]["hint"] or "")
    assert c.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'webhook_ext'") == 1


def test_listener_count_follows_workers_setting(cluster):
    workers = int(cluster.scalar("SHOW webhook.workers"))
    pids = cluster.wait_for_listeners(workers)
    assert len(pids) == workers >= 1
    rows = cluster.rows("SELECT datname, usename, backend_type FROM pg_stat_activity "
                        "WHERE backend_type = 'webhook_ext listener'")
    assert all(r["datname"] == "postgres" for r in rows), rows


def test_session_cluster_log_shows_listener_started(cluster):
    cluster.wait_for_log(r'webhook_ext listener started\b[^\n]* for database "postgres"', timeout=10)
    cluster.wait_for_log(r'webhook_ext listener found the extension in database "postgres"', timeout=10)


def test_without_preload_create_extension_notices_and_no_listener(make_cluster):
    c = make_cluster(preload=False)
    _, notices = c.sql_notices("CREATE EXTENSION webhook_ext")
    assert c.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'webhook_ext'") == 1
    matching = [n for n in notices if n["message"] == "webhook_ext listener is not running"]
    assert matching, f"no 'listener is not running' message reached the client; got {notices}"
    # NOTICE is what the issue asks for; PostgreSQL filters NOTICEs raised inside
    # extension scripts, so a WARNING is accepted too.
    assert matching[0]["severity"] in ("NOTICE", "WARNING")
    assert "shared_preload_libraries" in (matching[0]["hint"] or "")
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


def test_terminated_listener_is_restarted(make_cluster):
    """DESIGN §7: listeners restart after 1 s. A listener ended with
    pg_terminate_backend must come back (a worker that exits with status 0 is
    never restarted by the postmaster), or the HTTP port stays dead until the
    server restarts."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    [pid] = c.wait_for_listeners(1)
    c.sql("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 5  # restart time is 1 s
    new = []
    while time.monotonic() < deadline:
        new = c.listener_pids()
        if new and new != [pid]:
            break
        time.sleep(0.1)
    assert new and new != [pid], f"listener not restarted: {new}"
    # Regular backends were not affected.
    assert c.scalar("SELECT 1") == 1
