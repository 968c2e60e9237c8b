"""The settings: every webhook.* setting's default and context exactly as the
README's table says, the 22023 refusal of values out of range, and, for the
reloadable settings no other test reloads, that pg_reload_conf() changes what
the listener does (and changing it back restores it).

Reloads already proven elsewhere: max_body_size, public_base_url and
header_timeout (test_listener_lifecycle.py), max_executors
(test_executions.py), notify (test_notifications.py), trusted_proxies
(test_access.py), the TLS files (test_https.py).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter

import psycopg
import pytest

import hookkit as hk
from conftest import uniq
from hookkit import sent_behind_a_stopped_listener
from tenantkit import private_cluster_fixture

# name: (boot value, unit, context), as the README's settings table says.
DEFAULTS = {
    "webhook.batch_size": ("64", None, "sighup"),
    "webhook.body_timeout": ("30000", "ms", "sighup"),
    "webhook.database": ("postgres", None, "postmaster"),
    "webhook.executor_idle_timeout": ("10000", "ms", "sighup"),
    "webhook.forwarded_header": ("x-forwarded-for", None, "sighup"),
    "webhook.handler_timeout": ("30000", "ms", "sighup"),
    "webhook.header_timeout": ("10000", "ms", "sighup"),
    "webhook.listen_addresses": ("127.0.0.1", None, "postmaster"),
    "webhook.lock_timeout": ("100", "ms", "sighup"),
    "webhook.max_body_memory": ("262144", "kB", "postmaster"),
    "webhook.max_body_size": ("25600", "kB", "sighup"),
    "webhook.max_connections": ("1000", None, "sighup"),
    "webhook.max_connections_per_client": ("100", None, "sighup"),
    "webhook.max_executors": ("4", None, "sighup"),
    "webhook.max_handler_timeout": ("300000", "ms", "sighup"),
    "webhook.max_retry_attempts": ("100", None, "sighup"),
    "webhook.max_retries_per_second": ("100", None, "sighup"),
    "webhook.max_config_changes_per_second": ("20", None, "sighup"),
    "webhook.min_retry_delay": ("100", "ms", "sighup"),
    "webhook.max_executors_per_owner": ("2", None, "sighup"),
    "webhook.max_header_size": ("16", "kB", "sighup"),
    "webhook.notify": ("off", None, "sighup"),
    "webhook.owner_storage_quota": ("0", "kB", "sighup"),
    "webhook.port": ("8787", None, "postmaster"),
    "webhook.public_base_url": ("", None, "sighup"),
    "webhook.rejections_kept": ("100", None, "sighup"),
    "webhook.retain_dead": ("2592000", "s", "sighup"),
    "webhook.retain_succeeded": ("604800", "s", "sighup"),
    "webhook.storage_quota": ("10485760", "kB", "sighup"),
    "webhook.storage_quota_window": ("3600", "s", "sighup"),
    "webhook.tls_cert_file": ("", None, "postmaster"),
    "webhook.tls_key_file": ("", None, "postmaster"),
    "webhook.trusted_proxies": ("", None, "sighup"),
    "webhook.metrics_networks": ("", None, "sighup"),
    "webhook.workers": ("2", None, "postmaster"),
}

# Values each setting refuses, beyond the integer ranges tested below.
INVALID_TEXT = {
    "webhook.listen_addresses": "example.com",
    "webhook.public_base_url": "ftp://x",
    "webhook.trusted_proxies": "10.0.0.0/8, proxy.local",
    "webhook.metrics_networks": "127.0.0.1/33",
    "webhook.notify": "maybe",
    "webhook.forwarded_header": "x-real-ip",
}

private = private_cluster_fixture(**{"webhook.max_executors": 8})


def test_every_setting_has_the_documented_default_and_context(cluster):
    rows = cluster.rows("SELECT name, boot_val, unit, context FROM pg_settings WHERE name LIKE 'webhook.%'")
    assert {r["name"]: (r["boot_val"], r["unit"], r["context"]) for r in rows} == DEFAULTS


def test_every_setting_refuses_invalid_values_with_22023(cluster):
    auto_conf = os.path.join(cluster.datadir, "postgresql.auto.conf")
    before = open(auto_conf).read()
    ranges = cluster.rows("SELECT name, min_val, max_val FROM pg_settings "
                          "WHERE name LIKE 'webhook.%' AND vartype = 'integer'")
    refused = []
    for r in ranges:
        for value in (int(r["min_val"]) - 1, int(r["max_val"]) + 1):
            err = cluster.sql_error(f"ALTER SYSTEM SET {r['name']} = {value}", sqlstate="22023")
            assert err["message"].startswith(f"{value} ") and r["name"] in err["message"], err
            refused.append(r["name"])
    for name, value in INVALID_TEXT.items():
        err = cluster.sql_error(f"ALTER SYSTEM SET {name} = '{value}'", sqlstate="22023")
        assert name in err["message"], err
        refused.append(name)
    assert open(auto_conf).read() == before
    # Every setting but the free-form ones (database name, file paths) refuses something.
    assert set(refused) == set(DEFAULTS) - {"webhook.database", "webhook.tls_cert_file", "webhook.tls_key_file"}


# ----------------------------------------------------------------- reloads
def reload_to(c, name: str, value: str | None, shown: str) -> None:
    c.alter_system(name, value, shown=shown)


def wait_for(fn, what: str, until, timeout: float = 10.0):
    """Polls ``fn`` until ``until`` accepts its value; returns that value, or
    raises with the last one."""
    return hk.wait_until(fn, timeout=timeout, interval=0.1, what=what, until=until)


def test_reload_max_header_size(private):
    c = private
    wf = hk.create_workflow(c)
    head = lambda: hk.raw_exchange(c.http_port, hk.http_request_bytes(  # noqa: E731
        "GET", f"/hooks/{wf}", c.http_port, headers={"X-Pad": "p" * 6000}), until_close=False, timeout=5)
    assert head().status == 200
    reload_to(c, "webhook.max_header_size", "4kB", "4kB")
    try:
        wait_for(head, "431 for a 6 kB head after lowering max_header_size", until=lambda r: r.status == 431)
    finally:
        reload_to(c, "webhook.max_header_size", None, "16kB")
    wait_for(head, "200 again after the reset", until=lambda r: r.status == 200)


def test_reload_body_timeout(private):
    c = private
    wf = hk.create_workflow(c)
    stalled = [hk.http_request_bytes("POST", f"/hooks/{wf}", c.http_port, body=b"",
                                     headers={"Content-Type": "application/json", "Content-Length": "10"}),
               b"{\"a\""]
    # The default (30 s): no answer within 1.5 s.
    quiet = hk.raw_exchange(c.http_port, stalled, timeout=1.5)
    assert (quiet.timed_out, quiet.data) == (True, b""), quiet
    reload_to(c, "webhook.body_timeout", "500ms", "500ms")
    try:
        reply = wait_for(lambda: hk.raw_exchange(c.http_port, stalled, timeout=5), "408 after lowering body_timeout",
                         until=lambda r: r.status == 408).reply()
        assert json.loads(reply.body) == {"msg": "Request body timeout"}
        assert reply.headers["connection"] == "close"
    finally:
        reload_to(c, "webhook.body_timeout", None, "30s")


def test_reload_handler_timeout(private):
    c = private
    c.sql("CREATE OR REPLACE FUNCTION public.slow_result(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS "
          "$h$ BEGIN PERFORM pg_sleep(1); RETURN '{\"done\": true}'; END $h$")
    wf = hk.create_workflow(c, handler="public.slow_result")
    c.sql("SELECT webhook_set_response(%s::uuid, 'workflow')", (wf,))
    r = hk.post_url(c.hook_url(wf), {"n": 1})
    assert (r.status, r.json()) == (200, {"done": True})
    reload_to(c, "webhook.handler_timeout", "300ms", "300ms")
    try:
        reply = wait_for(lambda: hk.post_url(c.hook_url(wf), {"n": 2}),
                         "the failure response after lowering handler_timeout", until=lambda r: r.status == 500,
                         timeout=20)
        event_id = reply.json()["event_id"]
        assert reply.json() == {"msg": "Workflow failed", "event_id": event_id}
        assert c.scalar("SELECT outcome FROM webhook.attempts WHERE event_id = %s AND attempt = 1",
                        (event_id,)) == "timeout"
    finally:
        reload_to(c, "webhook.handler_timeout", None, "30s")


def test_reload_rejections_kept(private):
    c = private
    wf = hk.create_workflow(c)
    url = c.hook_url(wf)
    sent = 0

    def refuse() -> None:
        nonlocal sent
        assert hk.request("PUT", url, body={"x": 1}).status == 405
        sent += 1

    def kept() -> int:
        return c.scalar("SELECT count(*) FROM webhook.rejections WHERE workflow_id = %s::uuid", (wf,))

    reload_to(c, "webhook.rejections_kept", "2", "2")
    try:
        for _ in range(5):
            refuse()
        wait_for(lambda: (refuse(), kept())[1], "two records kept after lowering rejections_kept",
                 until=lambda n: n == 2)
    finally:
        reload_to(c, "webhook.rejections_kept", None, "100")
    wait_for(lambda: (refuse(), kept())[1], "records beyond two after the reset", until=lambda n: n > 2)
    # Every refusal was counted, kept in full or not.
    wait_for(lambda: c.scalar("SELECT count FROM webhook.rejection_counts WHERE workflow_id = %s::uuid", (wf,)),
             f"{sent} refusals counted", until=lambda n: n == sent)


@pytest.mark.parametrize("setting, cap", [("webhook.max_connections", 3),
                                          ("webhook.max_connections_per_client", 2)])
def test_reload_connection_caps(private, setting, cap):
    c = private
    wf = hk.create_workflow(c)
    default = DEFAULTS[setting][0]
    reload_to(c, setting, str(cap), str(cap))
    held = []
    try:
        def capped():
            for s in held:
                s.close()
            held.clear()
            held.extend(hk.raw_connect(c.http_port) for _ in range(cap))
            return hk.raw_exchange(c.http_port, hk.http_request_bytes("GET", f"/hooks/{wf}", c.http_port), timeout=3)
        reply = wait_for(capped, f"503 for one connection over {setting}", until=lambda r: r.status == 503).reply()
        assert json.loads(reply.body) == {"msg": "Too many connections"}
        assert (reply.headers["retry-after"], reply.headers["connection"]) == ("1", "close")
    finally:
        for s in held:
            s.close()
        reload_to(c, setting, None, default)
    held = [hk.raw_connect(c.http_port) for _ in range(cap)]
    try:
        wait_for(lambda: hk.post_url(c.hook_url(wf), {}), "one more connection served after the reset",
                 until=lambda r: r.status == 200)
    finally:
        for s in held:
            s.close()


def test_reload_lock_timeout(private):
    c = private
    wf = hk.create_workflow(c)
    url = c.hook_url(wf)

    def post_while_locked(hold: float):
        """A request while another session holds the workflow row FOR UPDATE for ``hold`` s."""
        with psycopg.connect(**c.conninfo(), autocommit=False) as conn:
            conn.execute("SELECT 1 FROM webhook.workflows WHERE id = %s FOR UPDATE", (wf,))
            timer = threading.Timer(hold, conn.commit)
            timer.start()
            try:
                return hk.post_url(url, {"n": 1}, timeout=15)
            finally:
                timer.join()

    r = post_while_locked(1.0)
    assert (r.status, r.json(), r.headers["retry-after"]) == (503, {"msg": "Workflow busy, retry later"}, "1")
    reload_to(c, "webhook.lock_timeout", "5s", "5s")
    try:
        wait_for(lambda: post_while_locked(1.0), "200 once the lock is released, after raising lock_timeout",
                 until=lambda r: r.status == 200, timeout=20)
    finally:
        reload_to(c, "webhook.lock_timeout", None, "100ms")


@pytest.fixture
def listener_transactions(private):
    """A table recording, for each event stored, the transaction that stored
    it (an AFTER INSERT trigger: the event row's own xmin changes when an
    executor records its attempt)."""
    c = private
    c.sql("CREATE TABLE public.stored_in (event_id bigint, tx xid8)")
    c.sql("CREATE FUNCTION public.note_stored_in() RETURNS trigger LANGUAGE plpgsql "
          "SET search_path = pg_catalog AS $t$ BEGIN "
          "INSERT INTO public.stored_in VALUES (NEW.id, pg_current_xact_id()); RETURN NULL; END $t$")
    c.sql("CREATE TRIGGER note_stored_in AFTER INSERT ON webhook.events "
          "FOR EACH ROW EXECUTE FUNCTION public.note_stored_in()")
    try:
        yield "public.stored_in"
    finally:
        c.sql("DROP TRIGGER note_stored_in ON webhook.events")
        c.sql("DROP FUNCTION public.note_stored_in()")
        c.sql("DROP TABLE public.stored_in")


def burst_behind_a_stopped_listener(c, wf, table: str, count: int = 24) -> Counter:
    """Stops the listener process, sends ``count`` requests, resumes it: how
    many events each of its transactions stored."""
    url = c.hook_url(wf)
    c.sql(f"TRUNCATE {table}")
    sent_behind_a_stopped_listener(c, [lambda n=n: hk.post_url(url, {"n": n}) for n in range(count)])
    rows = c.rows(f"SELECT tx::text AS tx FROM {table}")
    assert len(rows) == count
    return Counter(r["tx"] for r in rows)


def test_reload_batch_size(private, listener_transactions):
    c = private
    wf = hk.create_workflow(c)
    table = listener_transactions
    # Positive control: with the default (64), a backlog shares transactions.
    bursts = []
    for _ in range(3):
        bursts.append(burst_behind_a_stopped_listener(c, wf, table))
        if max(bursts[-1].values()) > 2:
            break
    else:
        raise AssertionError(f"a backlog of 24 requests never shared a transaction (events per transaction): {bursts}")
    reload_to(c, "webhook.batch_size", "2", "2")
    try:
        wait_for(lambda: burst_behind_a_stopped_listener(c, wf, table),
                 "at most 2 events per transaction after lowering batch_size",
                 until=lambda per_tx: max(per_tx.values()) <= 2, timeout=20)
        # And it stays capped.
        assert max(burst_behind_a_stopped_listener(c, wf, table).values()) <= 2
    finally:
        reload_to(c, "webhook.batch_size", None, "64")


def executor_pids(c, table: str) -> set:
    return {r["pid"] for r in c.rows(f"SELECT DISTINCT pid FROM {table}")}


def test_reload_executors_per_owner_and_idle_timeout(private):
    c = private
    table = uniq("runs")
    c.sql(f"CREATE TABLE public.{table} (event_id bigint, pid int)")
    c.sql(f"CREATE OR REPLACE FUNCTION public.{table}_h(e webhook.events) RETURNS void LANGUAGE plpgsql AS "
          f"$h$ BEGIN INSERT INTO public.{table} VALUES (e.id, pg_backend_pid()); PERFORM pg_sleep(0.6); END $h$")
    wf = hk.create_workflow(c, handler=f"public.{table}_h")
    url = c.hook_url(wf)

    def run_burst(n: int = 6) -> set:
        c.sql(f"TRUNCATE public.{table}")
        for i in range(n):
            assert hk.post_url(url, {"n": i}).status == 200
        wait_for(lambda: c.scalar(f"SELECT count(*) FROM public.{table}"), "handlers ran", until=lambda k: k == n,
                 timeout=30)
        return executor_pids(c, f"public.{table}")

    def executors():
        return c.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook_ext executor'")

    reload_to(c, "webhook.max_executors_per_owner", "1", "1")
    try:
        # Executors already running stay until idle (the cap is checked when
        # one is started): start from none.
        wait_for(executors, "idle executors gone", until=lambda k: k == 0, timeout=20)
        wait_for(run_burst, "one executor per owner after lowering the cap", until=lambda pids: len(pids) == 1,
                 timeout=40)
        reload_to(c, "webhook.max_executors_per_owner", "3", "3")
        wait_for(run_burst, "several executors after raising the cap", until=lambda pids: len(pids) > 1, timeout=40)
    finally:
        reload_to(c, "webhook.max_executors_per_owner", None, "2")

    # executor_idle_timeout: the test cluster's 2 s raised to 60 s keeps them;
    # lowered to 1 s they leave.
    reload_to(c, "webhook.executor_idle_timeout", "60s", "1min")
    try:
        run_burst(2)
        time.sleep(3)
        assert executors() >= 1
        reload_to(c, "webhook.executor_idle_timeout", "1s", "1s")
        wait_for(executors, "idle executors gone after lowering the idle timeout", until=lambda k: k == 0)
    finally:
        reload_to(c, "webhook.executor_idle_timeout", None, "2s")


def test_processes_show_listeners_executors_and_when_each_read_the_settings(private):
    """webhook_processes(): every listener, every running executor with its
    owner and state, and when each last read the configuration; a tenant
    sees the listeners but not another role's executors."""
    c = private
    table = uniq("seen")
    c.sql(f"CREATE TABLE public.{table} (event_id bigint, pid int)")
    c.sql(f"CREATE OR REPLACE FUNCTION public.{table}_h(e webhook.events) RETURNS void LANGUAGE sql AS "
          f"$h$ INSERT INTO public.{table} VALUES (e.id, pg_backend_pid()) $h$")
    wf = hk.create_workflow(c, handler=f"public.{table}_h")
    # Executors stay for the whole test (the test cluster's idle timeout is 2 s).
    reload_to(c, "webhook.executor_idle_timeout", "60s", "1min")
    try:
        assert hk.post_url(c.hook_url(wf), {"n": 1}).status == 200
        [executor_pid] = wait_for(lambda: [r["pid"] for r in c.rows(f"SELECT pid FROM public.{table}")],
                                  "the handler ran", until=lambda pids: len(pids) == 1)

        listeners = c.rows("SELECT pid, owner, state, event_id FROM webhook_processes() "
                           "WHERE kind = 'listener' ORDER BY pid")
        assert listeners == [{"pid": pid, "owner": None, "state": "listening", "event_id": None}
                             for pid in c.listener_pids()]
        assert len(listeners) == int(c.scalar("SHOW webhook.workers"))
        executor = wait_for(
            lambda: c.row("SELECT owner::text, state, event_id FROM webhook_processes() WHERE pid = %s",
                          (executor_pid,)),
            "the executor idle", until=lambda row: row is not None and row["state"] == "idle")
        assert executor == {"owner": "postgres", "state": "idle", "event_id": None}

        # After a reload every process has read the configuration again.
        before = {r["pid"]: r["settings_loaded_at"]
                  for r in c.rows("SELECT pid, settings_loaded_at FROM webhook_processes()")}
        assert set(before) == {executor_pid, *c.listener_pids()}
        since = c.scalar("SELECT pg_catalog.clock_timestamp()")
        c.reload()
        after = {r["pid"]: r["settings_loaded_at"]
                 for r in c.rows("SELECT pid, settings_loaded_at FROM webhook_processes()")}
        assert set(after) == set(before)
        for pid, loaded in after.items():
            assert loaded >= since.replace(microsecond=since.microsecond // 1000 * 1000), (pid, loaded, since)
            assert loaded > before[pid]

        # A tenant sees the listeners, and no executor of another role.
        tenant = hk.make_login_role(c, uniq)
        try:
            seen = c.rows("SELECT kind, pid FROM webhook_processes() ORDER BY kind, pid", user=tenant)
            assert seen == [{"kind": "listener", "pid": pid} for pid in c.listener_pids()]
            # Nor through the internal function the view reads, which a
            # webhook_admin member may call (the superuser sees the executor).
            internal = "SELECT pid FROM jsonb_to_recordset(webhook._processes()) AS p(pid int) ORDER BY pid"
            assert executor_pid in [r["pid"] for r in c.rows(internal)]
            assert [r["pid"] for r in c.rows(internal, user=tenant)] == sorted(c.listener_pids())
        finally:
            hk.drop_login_role(c, tenant)
    finally:
        reload_to(c, "webhook.executor_idle_timeout", None, "2s")


# ------------------------------------------------------- listen addresses
def serving(c, host: str, family=socket.AF_INET) -> bool:
    """Whether the listener answers a GET on ``host`` (404 for an unknown workflow)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect((host, c.http_port))
            s.sendall(b"GET /hooks/00000000-0000-0000-0000-000000000000 HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 404")
    except OSError:
        return False


def local_ipv4_other_than_loopback() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("setting, reachable, unreachable", [
    ("*", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
    ("localhost", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
    ("::1", [("::1", socket.AF_INET6)], [("127.0.0.1", socket.AF_INET)]),
    ("127.0.0.1, ::1", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)], []),
])
def test_listen_addresses(make_cluster, setting, reachable, unreachable):
    c = make_cluster(conf={"webhook.listen_addresses": setting, "webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    for host, family in reachable:
        hk.wait_until(lambda: serving(c, host, family), timeout=10, what=f"listener on {host}")
    for host, family in unreachable:
        assert not serving(c, host, family), host
    if setting in ("::1", "localhost", "127.0.0.1, ::1"):
        other = local_ipv4_other_than_loopback()
        if other is not None:
            assert not serving(c, other), other
    if setting == "*":
        other = local_ipv4_other_than_loopback()
        if other is not None:
            assert serving(c, other), other
