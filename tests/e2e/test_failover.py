"""A failover under load, through pg_auto_failover and HAProxy.

A pg_auto_failover formation on 127.0.0.1: a monitor, a primary and a
synchronous secondary (a commit returns once the secondary has it), both
data nodes with webhook_ext preloaded and a listener port of their own.
HAProxy routes to the node whose ``/healthz`` answers 200. Clients post
numbered events through HAProxy without pause; the primary's node dies
(every process of it frozen, then killed, as when its host goes down);
the monitor promotes the secondary and HAProxy finds it. Non-2xx answers
and connection errors during the switch are expected, and the clients go on
with new requests; only a 2xx promises anything. Afterwards, on the new
primary: every request that got a 2xx has its event (the id it was
answered with, its payload), and every event's handler effect is there
exactly once.

The configuration is the documented one (docs/failover/: HAProxy's file as
it is, with addresses in its environment variables; the data nodes' and the
monitor's settings with this test's ports), so the documentation cannot
drift from what is tested; the commands are those of docs/operations.md,
*Failover with pg_auto_failover and HAProxy*.
"""

from __future__ import annotations

import atexit
import collections
import errno
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

import hookkit as hk
from conftest import (PG_BIN, Cluster, _require_extension_installed, as_pg_user, chown_pg,
                      free_ports, run)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = os.path.join(ROOT, "docs", "failover")
PG_AUTOCTL = shutil.which("pg_autoctl") or "/usr/bin/pg_autoctl"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

ACKS_BEFORE = 40      # 2xx from the first primary before its node dies
ACKS_AFTER = 40       # 2xx from the promoted node before the clients stop
CLIENTS = 3           # threads posting through HAProxy
SWITCH_BOUND = 60     # seconds from the kill to ACKS_AFTER answers, at most
SETTLE_BOUND = 60     # seconds for every event's handler to have run

# Process groups started here, ended at interpreter exit if a run is interrupted.
_live_groups: set[int] = set()


@atexit.register
def _kill_leftover_groups() -> None:
    for pgid in list(_live_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def docs_file(name: str) -> str:
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


def with_values(text: str, values: dict[str, str]) -> str:
    """The settings file ``text`` with the value of each setting named in
    ``values`` replaced; each must be set exactly once in the file."""
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)}\s*=.*$", re.MULTILINE)
        assert len(pattern.findall(text)) == 1, f"{name} is not set once in the documented file"
        text = pattern.sub(lambda _: f"{name} = {value}", text)
    return text


def stop_group(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Sends ``sig`` to the process group ``proc`` leads and waits for
    ``proc``; kills the group's processes (and their children) when it is
    not done within ``timeout``."""
    members = group_members(proc.pid)
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except (OSError, subprocess.TimeoutExpired):
        for pid in set(members) | set(group_members(proc.pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    _live_groups.discard(proc.pid)


def group_members(pgid: int) -> list[int]:
    """Processes of the process group, and the children of any of them that
    left it (PostgreSQL's server processes start sessions of their own)."""
    parents: dict[int, int] = {}
    groups: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
        groups[int(entry)] = int(fields[2])
    members = {pid for pid, group in groups.items() if group == pgid}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in members} - members
        grew = bool(children)
        members |= children
    return sorted(members)


class Node(Cluster):
    """A data node (or the monitor) of the formation: its data directory is
    made by initdb here (the monitor, the first primary) or by pg_autoctl's
    base backup (the secondary), and its server is run by ``pg_autoctl run``,
    not pg_ctl. Cluster's SQL helpers work on it, through the formation's
    socket directory."""

    def __init__(self, formation: "Formation", name: str, pg_port: int, http_port: int = 0):
        # No initdb here (Cluster.__init__ runs it): see above.
        self.formation = formation
        self.pg_bin = PG_BIN
        self.name = name
        self.base_dir = os.path.join(formation.root, name)
        os.makedirs(self.base_dir)
        chown_pg(self.base_dir)
        self.datadir = os.path.join(self.base_dir, "data")
        self.logfile = os.path.join(self.base_dir, "pg_autoctl.log")
        self.preload = True
        self.conf = {}
        self.pg_port, self.http_port = pg_port, http_port
        self.running = False
        self.proc: subprocess.Popen | None = None
        self.dead = False  # crashed: its postmaster.pid is stale

    def conninfo(self, dbname: str = "postgres", user: str = "postgres") -> dict:
        info = super().conninfo(dbname, user)
        info["host"] = self.formation.sockets
        info["connect_timeout"] = 3
        return info

    def initdb(self, settings: str) -> None:
        run(as_pg_user([f"{PG_BIN}/initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]), timeout=120)
        self.append_conf(settings)

    def append_conf(self, text: str, file: str = "postgresql.conf") -> None:
        with open(os.path.join(self.datadir, file), "a") as f:
            f.write("\n" + text + "\n")

    def write_file(self, name: str, text: str) -> None:
        path = os.path.join(self.datadir, name)
        with open(path, "w") as f:
            f.write(text)
        chown_pg(path)

    def start(self, timeout: int = 60) -> None:
        """``pg_autoctl run`` in a process group of its own (with the server
        it starts), output to pg_autoctl.log."""
        log = open(self.logfile, "a")
        self.proc = subprocess.Popen(self.formation.autoctl_cmd("run", "--pgdata", self.datadir),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.base_dir)
        log.close()
        _live_groups.add(self.proc.pid)
        self.running = True
        hk.wait_until(lambda: self.scalar("SELECT 1") == 1, timeout=timeout, interval=0.1,
                      what=f"{self.name}'s server accepts connections")

    def stop(self, timeout: float = 15) -> None:
        """Stops pg_autoctl and the server it runs (immediate: a test's
        teardown); what is left after ``timeout`` is killed."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, signal.SIGQUIT, timeout)
        if not self.dead and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            # A server pg_autoctl left behind.
            self.pg_ctl("-w", "-t", "10", "-m", "immediate", "stop", timeout=30, check=False)
        self.running = False

    def crash(self) -> None:
        """The node dies as when its host goes down: every process of it
        (pg_autoctl, the postmaster, every server process) is frozen first,
        so none of them does anything more, then killed."""
        proc = self.proc
        assert proc is not None and proc.poll() is None, "the node is not running"
        frozen: set[int] = set()
        # The postmaster is in pg_autoctl's group: once that is frozen it
        # starts no process, and its children can be listed for good.
        os.killpg(proc.pid, signal.SIGSTOP)
        for _ in range(3):
            for pid in set(group_members(proc.pid)) - frozen:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
                frozen.add(pid)
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(10)
        _live_groups.discard(proc.pid)
        self.proc, self.dead, self.running = None, True, False

    def log(self) -> str:
        """pg_autoctl's output, then the server's log files (pg_autoctl
        turns PostgreSQL's logging collector on)."""
        parts = []
        for path in [self.logfile] + sorted(glob.glob(os.path.join(self.datadir, "log", "*"))):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    parts.append(f"==> {os.path.relpath(path, self.base_dir)} <==\n{f.read()}")
            except OSError:
                pass
        return "\n".join(parts)


class Formation:
    """The monitor, two data nodes and HAProxy, all on 127.0.0.1; ``stop()``
    ends every process of them."""

    def __init__(self, root: str):
        self.root = root
        self.sockets = os.path.join(root, "sockets")
        self.xdg = os.path.join(root, "xdg")
        for path in (self.sockets, self.xdg):
            os.makedirs(path)
            os.chmod(path, 0o700)
            chown_pg(path)
        (monitor_port, pg1, pg2, http1, http2, self.lb_port) = free_ports(6)
        self.monitor = Node(self, "monitor", monitor_port)
        self.node1 = Node(self, "node1", pg1, http1)
        self.node2 = Node(self, "node2", pg2, http2)
        self.haproxy: subprocess.Popen | None = None
        self.haproxy_log = os.path.join(root, "haproxy.log")

    @property
    def nodes(self) -> list[Node]:
        return [self.node1, self.node2]

    @property
    def monitor_uri(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor.pg_port}/pg_auto_failover?sslmode=disable"

    def autoctl_cmd(self, *args: str) -> list[str]:
        """pg_autoctl as the postgres OS user, its state files under this
        formation's directory, and PG_BIN's server."""
        env = [f"XDG_CONFIG_HOME={self.xdg}/config", f"XDG_DATA_HOME={self.xdg}/data",
               f"XDG_RUNTIME_DIR={self.xdg}/run", f"PGHOST={self.sockets}",
               f"PATH={PG_BIN}:/usr/local/bin:/usr/bin:/bin", f"HOME={self.root}"]
        return as_pg_user(["env", *env, PG_AUTOCTL, *args])

    def autoctl(self, *args: str, node: Node, timeout: float = 120) -> None:
        """A pg_autoctl command about ``node``, in a process group of its own
        (killed whole if it overruns); its output goes to the node's log."""
        with open(node.logfile, "a") as log:
            log.write(f"$ pg_autoctl {' '.join(args)}\n")
            log.flush()
            proc = subprocess.Popen(self.autoctl_cmd(*args), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        _live_groups.add(proc.pid)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc, signal.SIGKILL, 5)
            raise AssertionError(f"pg_autoctl {' '.join(args)} took more than {timeout} s; "
                                 f"log tail:\n{node.log()[-3000:]}")
        _live_groups.discard(proc.pid)
        assert code == 0, f"pg_autoctl {' '.join(args)} failed ({code}); log tail:\n{node.log()[-3000:]}"

    # ----------------------------------------------------------- building
    def start_monitor(self) -> None:
        m = self.monitor
        m.initdb(f"unix_socket_directories = '{self.sockets}'\nlisten_addresses = '127.0.0.1'\nfsync = off")
        self.autoctl("create", "monitor", "--pgdata", m.datadir, "--pgport", str(m.pg_port),
                     "--pgctl", f"{PG_BIN}/pg_ctl", "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl",
                     node=m)
        # pg_autoctl starts the monitor's server with its own listen_addresses ('*').
        self.autoctl("config", "set", "--pgdata", m.datadir, "postgresql.listen_addresses", "127.0.0.1",
                     node=m)
        m.append_conf(docs_file("monitor.conf"))
        m.start()

    def node_settings(self, node: Node) -> str:
        """docs/failover/webhook_ext.conf with this node's addresses and port,
        and the test's own lines (sockets, no fsync)."""
        text = with_values(docs_file("webhook_ext.conf"), {
            "webhook.listen_addresses": "'127.0.0.1'",
            "webhook.port": str(node.http_port),
            "webhook.trusted_proxies": "'127.0.0.1'",
        })
        # The test's own: no fsync, and checkpoints without pauses (the
        # secondary's base backup waits for one).
        return text + (f"\n# The test's own:\nunix_socket_directories = '{self.sockets}'\n"
                       "fsync = off\ncheckpoint_completion_target = 0\nlog_line_prefix = '%m [%p] %b '\n")

    def create_node(self, node: Node) -> None:
        self.autoctl("create", "postgres", "--pgdata", node.datadir, "--pgport", str(node.pg_port),
                     "--pgctl", f"{PG_BIN}/pg_ctl", "--listen", "127.0.0.1", "--hostname", "127.0.0.1",
                     "--name", node.name, "--auth", "trust", "--no-ssl", "--monitor", self.monitor_uri,
                     "--replication-quorum", "true", "--candidate-priority", "50", node=node)

    def start_primary(self) -> None:
        """The first data node: initdb here with the documented settings,
        then pg_autoctl takes the data directory over as the primary."""
        n = self.node1
        n.initdb("include 'webhook_ext.conf'")
        n.write_file("webhook_ext.conf", self.node_settings(n))
        self.create_node(n)
        n.start()
        self.wait_states({"node1": "single"})

    def start_secondary(self) -> None:
        """The second data node: pg_autoctl copies the primary (a base
        backup, its settings files included) and stops; the copy gets its
        own listener port before it runs."""
        n = self.node2
        self.create_node(n)
        copied = os.path.join(n.datadir, "webhook_ext.conf")
        with open(copied) as f:
            assert f"webhook.port = {self.node1.http_port}" in f.read()
        n.write_file("webhook_ext.conf", self.node_settings(n))
        n.start()
        self.wait_states({"node1": "primary", "node2": "secondary"})

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported state, assigned state), as the monitor has them."""
        rows = self.monitor.rows("SELECT nodename, reportedstate::text AS reported, goalstate::text AS goal "
                                 "FROM pgautofailover.node ORDER BY nodeid", dbname="pg_auto_failover")
        return {r["nodename"]: (r["reported"], r["goal"]) for r in rows}

    def wait_states(self, wanted: dict[str, str], timeout: float = 60) -> None:
        hk.wait_until(self.states, timeout=timeout, interval=0.2, what=f"the formation in states {wanted}",
                      until=lambda states: all(states.get(name) == (state, state)
                                               for name, state in wanted.items()))

    def start_haproxy(self) -> None:
        """docs/failover/haproxy.cfg as it is, its addresses in the environment."""
        env = dict(os.environ,
                   WEBHOOK_LB_BIND=f"127.0.0.1:{self.lb_port}",
                   WEBHOOK_NODE1=f"127.0.0.1:{self.node1.http_port}",
                   WEBHOOK_NODE2=f"127.0.0.1:{self.node2.http_port}")
        cmd = [HAPROXY, "-db", "-f", os.path.join(DOCS, "haproxy.cfg")]
        run(cmd + ["-c", "-q"], env=env, timeout=30)
        log = open(self.haproxy_log, "a")
        self.haproxy = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        log.close()
        _live_groups.add(self.haproxy.pid)
        hk.wait_until(lambda: not refused(self.lb_port), timeout=10, interval=0.05, what="HAProxy listens")

    def stop(self) -> None:
        if self.haproxy is not None:
            stop_group(self.haproxy, signal.SIGTERM, 5)
            self.haproxy = None
        for node in (self.node1, self.node2, self.monitor):
            try:
                node.stop()
            except Exception as e:  # noqa: BLE001  (stop the others whatever happens)
                print(f"stopping {node.name}: {e!r}")

    def keep_logs(self) -> None:
        keep = os.environ.get("E2E_KEEP_LOGS")
        if not keep:
            return
        os.makedirs(keep, exist_ok=True)
        for node in (self.monitor, self.node1, self.node2):
            with open(os.path.join(keep, f"failover-{node.name}.log"), "w") as f:
                f.write(node.log())
        if os.path.exists(self.haproxy_log):
            shutil.copy(self.haproxy_log, os.path.join(keep, "failover-haproxy.log"))


@pytest.fixture
def formation(e2e_root):
    _require_extension_installed()
    for tool in (PG_AUTOCTL, HAPROXY):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} is missing: scripts/common.sh (ensure_packages) installs "
                        "postgresql-15-auto-failover and haproxy")
    root = os.path.join(e2e_root, hk.make_uniq("failover"))
    os.makedirs(root)
    os.chmod(root, 0o755)
    chown_pg(root)
    f = Formation(root)
    try:
        yield f
    finally:
        f.stop()
        f.keep_logs()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ clients
@dataclass
class Sent:
    n: int
    started: float
    ended: float
    status: int | None = None        # None: no HTTP answer (connection error, timeout)
    node: str | None = None          # the X-Webhook-Node HAProxy wrote
    event_id: int | None = None
    detail: str = ""

    @property
    def outcome(self) -> str:
        """``200 node1``; ``503`` (HAProxy's own: no node answered); an error's name."""
        if self.status is None:
            return self.detail
        return f"{self.status} {self.node}" if self.node else str(self.status)


class Clients:
    """Threads posting ``{"n": N}`` through HAProxy, N numbering every request
    (a retry is a new request with a new number), keeping what each got."""

    def __init__(self, url: str, wf: str, threads: int = CLIENTS):
        self.url, self.wf = url, wf
        self.sent: list[Sent] = []
        self.lock = threading.Lock()
        self.counter = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def next_n(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def run(self) -> None:
        while not self.stopping.is_set():
            n = self.next_n()
            started = time.monotonic()
            try:
                reply = hk.post_url(self.url, {"n": n}, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                self.record(Sent(n, started, time.monotonic(), detail=type(e).__name__))
                time.sleep(0.05)
                continue
            sent = Sent(n, started, time.monotonic(), reply.status, reply.headers.get("x-webhook-node"),
                        detail=reply.text[:200])
            if 200 <= reply.status < 300:
                sent.event_id = hk.assert_success(reply, self.wf)["event_id"]
            else:
                time.sleep(0.05)
            self.record(sent)

    def record(self, sent: Sent) -> None:
        with self.lock:
            self.sent.append(sent)

    def acknowledged(self, node: str | None = None, after: float = 0.0) -> list[Sent]:
        with self.lock:
            return [s for s in self.sent if s.event_id is not None and s.started >= after
                    and (node is None or s.node == node)]

    def start(self) -> "Clients":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads), "a client did not stop"


EFFECTS_SQL = """
CREATE TABLE public.effects (
    event_id bigint  NOT NULL,
    n        integer NOT NULL,
    port     integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.record_effect(e webhook.events) RETURNS jsonb LANGUAGE sql AS $h$
    INSERT INTO public.effects (event_id, n, port)
    VALUES (e.id, (e.params->>'n')::integer, current_setting('port')::integer)
    RETURNING jsonb_build_object('n', n)
$h$;
"""


def test_a_failover_under_load_loses_no_acknowledged_event_and_runs_no_handler_twice(formation):
    f = formation
    t0 = time.monotonic()
    f.start_monitor()
    f.start_primary()
    primary, secondary = f.node1, f.node2

    # The extension and a workflow whose handler writes one effect row per
    # run (no unique key: a second run of an event would be a second row).
    primary.sql("CREATE EXTENSION webhook_ext")
    primary.sql(EFFECTS_SQL)
    wf = str(primary.scalar("SELECT id FROM webhook_create_workflow('failover', 'public.record_effect'::regproc)"))
    primary.sql("SELECT webhook_sample_from_json(%s, '{\"n\": 1}')", (wf,))
    # A handler run that fails (while the promoted node is still read-only)
    # is retried soon.
    primary.sql("SELECT webhook_set_retry(%s, 100, delay => '1 second', max_delay => '2 seconds')", (wf,))
    hk.wait_ready(primary)

    f.start_secondary()
    assert primary.scalar("SELECT sync_state FROM pg_stat_replication") in ("sync", "quorum")
    assert primary.scalar("SHOW synchronous_standby_names") != ""
    assert secondary.scalar("SELECT pg_is_in_recovery()") is True
    assert refused(secondary.http_port), "a standby runs no listener"

    f.start_haproxy()
    url = f"http://127.0.0.1:{f.lb_port}/hooks/{wf}"
    setup_done = time.monotonic()

    # Clients from the start: until HAProxy's first probes have found which
    # node answers, some requests fail (and are sent again as new ones).
    clients = Clients(url, wf).start()
    try:
        hk.wait_until(lambda: len(clients.acknowledged()) >= ACKS_BEFORE, timeout=30, interval=0.05,
                      what=f"{ACKS_BEFORE} events acknowledged before the failover")
        kill_started = time.monotonic()
        primary.crash()
        killed_at = time.monotonic()  # every process of the node frozen, then killed
        hk.wait_until(lambda: refused(primary.http_port), timeout=5, interval=0.05,
                      what="nothing listens on the dead primary's port")
        try:
            hk.wait_until(lambda: len(clients.acknowledged("node2", after=killed_at)) >= ACKS_AFTER,
                          timeout=SWITCH_BOUND, interval=0.1,
                          what=f"{ACKS_AFTER} events acknowledged by the promoted node")
        except AssertionError as e:
            raise AssertionError(f"{e}\nstates: {f.states()}\nHAProxy's log tail:\n"
                                 f"{open(f.haproxy_log).read()[-2000:]}\nnode2's log tail:\n"
                                 f"{secondary.log()[-3000:]}") from e
    finally:
        clients.stop()

    # The monitor agrees: node2 is the primary (wait_primary: no standby left).
    f.wait_states({"node2": "wait_primary"}, timeout=30)
    new = secondary
    assert new.scalar("SELECT pg_is_in_recovery()") is False

    # Every event's handler has run (a failed run is retried).
    hk.wait_until(lambda: new.rows("SELECT status, count(*) AS count FROM webhook.events "
                                   "WHERE workflow_id = %s AND status <> 'succeeded' GROUP BY status", (wf,)),
                  timeout=SETTLE_BOUND, interval=0.2, what="every event succeeded", until=lambda rows: rows == [])

    sent = list(clients.sent)
    acked = [s for s in sent if s.event_id is not None]
    before = [s for s in acked if s.ended <= kill_started]
    after = [s for s in acked if s.started >= killed_at]
    events = {r["n"]: r for r in new.rows(
        "SELECT (params->>'n')::integer AS n, count(*) AS count, min(id) AS id "
        "FROM webhook.events WHERE workflow_id = %s GROUP BY 1", (wf,))}
    effects = {r["n"]: r for r in new.rows(
        "SELECT n, count(*) AS count, min(event_id) AS event_id, array_agg(DISTINCT port) AS ports "
        "FROM public.effects GROUP BY n")}
    first_after = min((s.ended for s in after), default=killed_at)
    answers = {}  # the body of one answer of each kind that is not a 2xx
    for s in sent:
        if s.status is not None and s.event_id is None:
            answers.setdefault(s.outcome, s.detail)
    # Events node1 acknowledged whose handler ran on node2: the run on node1
    # (committed without waiting for the standby) was lost with it, or had
    # not happened yet.
    run_on_node2 = [s.n for s in acked if s.node == "node1" and effects.get(s.n, {}).get("ports") == [new.pg_port]]
    summary = {
        "setup_s": round(setup_done - t0, 1),
        "kill_to_first_2xx_s": round(first_after - killed_at, 2),
        "requests": len(sent),
        "acknowledged_before_kill": len(before),
        "acknowledged_after_kill": len(after),
        "outcomes": dict(collections.Counter(s.outcome for s in sent)),
        "answers": answers,
        "events_stored": len(events),
        "stored_without_2xx": len(set(events) - {s.n for s in acked}),
        "acknowledged_by_node1_run_on_node2": len(run_on_node2),
    }
    print(f"failover: {json.dumps(summary)}")

    # Positive controls: 2xx before the kill, from the first primary, and
    # after it. HAProxy switched: every 2xx after the kill came from the
    # promoted node, which answered nothing before (it was a standby).
    assert before and {s.node for s in before} == {"node1"}, summary
    assert after and {s.node for s in after} == {"node2"}, summary
    assert all(s.started >= kill_started for s in acked if s.node == "node2"), summary

    # No acknowledged event lost: each 2xx has its event, with the id it was
    # answered with; no number was stored twice.
    missing = sorted(s.n for s in acked if s.n not in events)
    assert missing == [], f"acknowledged but not on the new primary: {missing}; {summary}"
    wrong_id = [(s.n, s.event_id, events[s.n]["id"]) for s in acked if events[s.n]["id"] != s.event_id]
    assert wrong_id == [], wrong_id
    twice = {n: r["count"] for n, r in events.items() if r["count"] != 1}
    assert twice == {}, f"payloads stored more than once: {twice}"

    # No handler effect twice, none missing: one effect row per event, of it.
    assert {n: r["count"] for n, r in effects.items() if r["count"] != 1} == {}, "an effect twice"
    assert sorted(effects) == sorted(events), (
        f"events without an effect: {sorted(set(events) - set(effects))}, "
        f"effects without an event: {sorted(set(effects) - set(events))}")
    assert all(effects[n]["event_id"] == events[n]["id"] for n in events)
    # The promoted node ran handlers (those of the events it stored, at least).
    assert any(new.pg_port in r["ports"] for r in effects.values())
    print(f"failover test: {time.monotonic() - t0:.1f} s in all")
