"""End-to-end test harness for webhook_ext.

Every test here runs against a real PostgreSQL 15 cluster that the harness
creates in a temporary directory (as the ``postgres`` OS user when the tests
run as root), with ``shared_preload_libraries = 'webhook_ext'`` unless a test
asks otherwise. The extension must already be installed into PostgreSQL's
directories (``scripts/test.sh`` does ``cargo pgrx install`` first).

Fixtures
--------
``cluster``       session-wide preloaded cluster, extension created in ``postgres``.
``make_cluster``  factory for clusters with special settings; all are destroyed
                  when the test ends.
``handler``       name of a session-wide handler function (``webhook.events -> jsonb``).
``new_handler``   factory: a fresh uniquely named handler function.
``new_workflow``  factory: a workflow with a unique name, dropped after the test.
``uniq``          factory for unique identifiers (``uniq('alice')`` -> ``alice_1a2b3c4d5e``).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterable

import psycopg
import psycopg.sql
import psycopg.errors  # noqa: F401  (tests use psycopg.errors.*)
import pytest
from psycopg.rows import dict_row

PG_BIN = os.environ.get("WEBHOOK_E2E_PG_BIN", "/usr/lib/postgresql/15/bin")
EXTENSION_CONTROL = "/usr/share/postgresql/15/extension/webhook_ext.control"
IS_ROOT = os.geteuid() == 0
PG_OS_USER = "postgres"

# Ports handed out in this process, so that two clusters never race for one.
_used_ports: set[int] = set()
_ports_lock = threading.Lock()
# Clusters still alive, stopped at interpreter exit if a test run is interrupted.
_live_clusters: "set[Cluster]" = set()


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bind port 0, keep all open
    until every one is chosen, never hand out the same port twice)."""
    with _ports_lock:
        socks, ports = [], []
        try:
            while len(ports) < count:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                port = s.getsockname()[1]
                if port in _used_ports:
                    continue
                ports.append(port)
        finally:
            for s in socks:
                s.close()
        _used_ports.update(ports)
        return ports


def as_pg_user(cmd: list[str]) -> list[str]:
    """Prefixes ``cmd`` so it runs as the postgres OS user when we are root."""
    if IS_ROOT:
        return ["runuser", "-u", PG_OS_USER, "--"] + cmd
    return cmd


def chown_pg(path: str) -> None:
    if IS_ROOT:
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def uniq(prefix: str = "t") -> str:
    """A unique SQL-safe identifier: prefix + 10 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def diag(e: psycopg.Error) -> dict[str, Any]:
    """The fields of an error or notice as a plain dict (safe to keep)."""
    d = e.diag
    return {
        "sqlstate": d.sqlstate,
        "severity": d.severity_nonlocalized or d.severity,
        "message": d.message_primary,
        "detail": d.message_detail,
        "hint": d.message_hint,
    }


class Cluster:
    """A private PostgreSQL 15 cluster with webhook_ext settings.

    ``Cluster(base_dir, preload=True, conf={...})`` runs initdb at once; call
    ``start()`` to start it. ``conf`` entries are written after the defaults and
    so override them (values are written verbatim when they are str and already
    quoted, quoted otherwise; ints/bools/floats are written as is). ``bin_dir``
    is the directory of the server binaries (default: the system's); a copy
    elsewhere finds its share and lib directories relative to itself.
    ``standby_of`` (a running Cluster) makes this one a streaming replica of
    it instead of running initdb: ``pg_basebackup -R`` copies the primary
    (its settings file is then rewritten with this cluster's own ports and
    ``conf``), and the replica connects as application ``name``, the name
    ``synchronous_standby_names`` on the primary can list.
    """

    def __init__(self, base_dir: str, preload: bool = True, conf: dict | None = None,
                 name: str = "cluster", bin_dir: str | None = None,
                 standby_of: "Cluster | None" = None):
        self.pg_bin = bin_dir or PG_BIN
        self.base_dir = os.path.join(base_dir, name)
        os.makedirs(self.base_dir)
        os.chmod(self.base_dir, 0o755)
        chown_pg(self.base_dir)
        self.datadir = os.path.join(self.base_dir, "data")
        self.logfile = os.path.join(self.base_dir, "server.log")
        self.preload = preload
        self.pg_port, self.http_port = free_ports(2)
        self.conf = dict(conf or {})
        # A test may pin the ports itself.
        if "port" in self.conf:
            self.pg_port = int(self.conf["port"])
        if "webhook.port" in self.conf:
            self.http_port = int(self.conf["webhook.port"])
        self.running = False
        self.name = name
        if standby_of is None:
            self._initdb()
        else:
            self._basebackup(standby_of)
        self.write_conf()

    # ------------------------------------------------------------------ setup
    def _initdb(self) -> None:
        os.makedirs(self.datadir)
        os.chmod(self.datadir, 0o700)
        chown_pg(self.datadir)
        run(as_pg_user([f"{self.pg_bin}/initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]), timeout=180)

    def _basebackup(self, primary: "Cluster") -> None:
        """Copies the running ``primary`` into this cluster's data directory
        with ``pg_basebackup -R`` (WAL streamed along, a fast checkpoint;
        ``-R`` writes standby.signal and primary_conninfo, to which the
        application name is added)."""
        run(as_pg_user([f"{self.pg_bin}/pg_basebackup", "-D", self.datadir, "-R", "-X", "stream",
                        "-c", "fast", "--no-sync", "-h", primary.datadir, "-p", str(primary.pg_port),
                        "-U", "postgres", "-d", f"application_name={self.name}"]), timeout=180)
        os.chmod(self.datadir, 0o700)

    @staticmethod
    def _conf_value(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, (int, float)):
            return str(value)
        value = str(value)
        if len(value) >= 2 and value.startswith("'") and value.endswith("'"):
            return value
        return "'" + value.replace("'", "''") + "'"

    def settings(self) -> dict[str, Any]:
        """The settings the harness writes: defaults, then the test's overrides."""
        settings: dict[str, Any] = {
            "port": self.pg_port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": self.datadir,
            "fsync": False,
            "log_line_prefix": "%m [%p] %b ",
            "webhook.port": self.http_port,
            # Executors (one per workflow owner) are background workers too;
            # tests create many owners, so idle executors leave quickly.
            "max_worker_processes": 40,
            "webhook.max_executors": 16,
            "webhook.executor_idle_timeout": "2s",
        }
        if self.preload:
            settings["shared_preload_libraries"] = "webhook_ext"
        settings.update(self.conf)
        return settings

    def write_conf(self) -> None:
        """(Re)writes the harness settings, included from postgresql.conf."""
        path = os.path.join(self.datadir, "webhook_e2e.conf")
        with open(path, "w") as f:
            for key, value in self.settings().items():
                f.write(f"{key} = {self._conf_value(value)}\n")
        chown_pg(path)
        main = os.path.join(self.datadir, "postgresql.conf")
        with open(main) as f:
            text = f.read()
        if "include 'webhook_e2e.conf'" not in text:
            with open(main, "a") as f:
                f.write("\ninclude 'webhook_e2e.conf'\n")

    def set_conf(self, **overrides: Any) -> None:
        """Changes settings in the file (takes effect on reload/restart)."""
        self.conf.update(overrides)
        self.write_conf()

    # -------------------------------------------------------------- lifecycle
    def pg_ctl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return run(as_pg_user([f"{self.pg_bin}/pg_ctl", "-D", self.datadir, *args]),
                   timeout=timeout, check=check)

    def start(self, timeout: int = 60) -> None:
        if not os.path.exists(self.logfile):
            open(self.logfile, "a").close()
            chown_pg(self.logfile)
        proc = self.pg_ctl("-w", "-t", str(timeout), "-l", self.logfile, "start",
                           timeout=timeout + 30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n"
                               f"--- server log ---\n{self.log()[-4000:]}")
        self.running = True
        _live_clusters.add(self)

    def stop(self, mode: str = "fast", timeout: int = 60) -> float:
        """Stops the server and waits; returns the elapsed seconds."""
        t0 = time.monotonic()
        self.pg_ctl("-w", "-t", str(timeout), "-m", mode, "stop", timeout=timeout + 30)
        elapsed = time.monotonic() - t0
        self.running = False
        _live_clusters.discard(self)
        return elapsed

    def restart(self, mode: str = "fast") -> None:
        if self.running:
            self.stop(mode)
        self.start()

    def reload(self) -> None:
        """pg_ctl reload, then wait until every listener and executor has read
        the configuration again (their ``settings_loaded_at`` in
        webhook_processes(), where the extension is installed)."""
        since = self.scalar("SELECT pg_catalog.clock_timestamp()")
        self.pg_ctl("reload")
        self.wait_for_reload(since)

    def wait_for_reload(self, since, timeout: float = 10) -> None:
        """Raises with the processes still behind when some listener or
        executor has not read the configuration since ``since``."""
        if self.scalar("SELECT pg_catalog.to_regprocedure('webhook_processes()') IS NULL"):
            return
        query = ("SELECT pid, kind, state, settings_loaded_at FROM webhook_processes() "
                 "WHERE settings_loaded_at < pg_catalog.date_trunc('milliseconds', %s::timestamptz)")
        deadline = time.monotonic() + timeout
        while True:
            behind = self.rows(query, (since,))
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not reloaded {timeout} s after {since}: {behind!r}")
            time.sleep(0.02)

    def alter_system(self, name: str, value: str | None, shown: str | None = None) -> None:
        """ALTER SYSTEM SET (or RESET, for None), reload, and wait until new
        sessions show ``shown`` (default: ``value``, or '' after a RESET)."""
        if value is None:
            self.sql(f"ALTER SYSTEM RESET {name}")
        else:
            # ALTER SYSTEM takes no bind parameters: quote the value as a literal.
            self.sql(psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                psycopg.sql.SQL(name), psycopg.sql.Literal(value)))
        self.reload()
        self.wait_for_setting(name, shown if shown is not None else (value or ""))

    def wait_for_setting(self, name: str, value: str, timeout: float = 10) -> None:
        """Polls new sessions until ``current_setting(name)`` equals ``value``."""
        deadline = time.monotonic() + timeout
        current = None
        while time.monotonic() < deadline:
            current = self.scalar("SELECT current_setting(%s, true)", (name,))
            if current == value:
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} is {current!r}, expected {value!r} after {timeout}s")

    def destroy(self) -> None:
        if self.running or os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            try:
                self.pg_ctl("-w", "-t", "30", "-m", "immediate", "stop", timeout=60, check=False)
            finally:
                self.running = False
                _live_clusters.discard(self)
        keep = os.environ.get("E2E_KEEP_LOGS")
        if keep and os.path.exists(self.logfile):
            # For a failure that is hard to reproduce: every cluster's log,
            # named by its directory, outlives the cluster.
            os.makedirs(keep, exist_ok=True)
            shutil.copy(self.logfile, os.path.join(keep, os.path.basename(self.base_dir) + ".log"))
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------- SQL
    def conninfo(self, dbname: str = "postgres", user: str = "postgres") -> dict[str, Any]:
        return {
            "host": self.datadir,
            "port": self.pg_port,
            "dbname": dbname,
            "user": user,
            "connect_timeout": 10,
            "options": "-c statement_timeout=120s",
        }

    def connect(self, dbname: str = "postgres", user: str = "postgres",
                autocommit: bool = True, **kw) -> psycopg.Connection:
        return psycopg.connect(**self.conninfo(dbname, user), autocommit=autocommit, **kw)

    def sql(self, query: str, params: Any = None, dbname: str = "postgres",
            user: str = "postgres", dicts: bool = False) -> list | None:
        """Runs one statement in a fresh autocommit session; returns its rows
        (tuples, or dicts with ``dicts=True``), or None if it returns none."""
        with self.connect(dbname, user, row_factory=dict_row if dicts else psycopg.rows.tuple_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else None

    def rows(self, query: str, params: Any = None, **kw) -> list[dict]:
        return self.sql(query, params, dicts=True, **kw)

    def row(self, query: str, params: Any = None, **kw) -> dict | None:
        rows = self.rows(query, params, **kw)
        assert rows is not None and len(rows) <= 1, f"expected at most one row, got {rows!r}"
        return rows[0] if rows else None

    def scalar(self, query: str, params: Any = None, **kw) -> Any:
        rows = self.sql(query, params, **kw)
        assert rows is not None and len(rows) == 1, f"expected one row, got {rows!r}"
        return rows[0][0]

    def sql_error(self, query: str, params: Any = None, sqlstate: str | None = None,
                  **kw) -> dict[str, Any]:
        """Runs ``query`` expecting it to fail; returns the error's fields
        (sqlstate, severity, message, detail, hint). Asserts the SQLSTATE if given."""
        try:
            self.sql(query, params, **kw)
        except psycopg.Error as e:
            if e.diag.sqlstate is None:
                raise
            d = diag(e)
            if sqlstate is not None:
                assert d["sqlstate"] == sqlstate, (
                    f"expected SQLSTATE {sqlstate}, got {d['sqlstate']}: {d['message']} "
                    f"(detail: {d['detail']}, hint: {d['hint']})")
            return d
        raise AssertionError(f"expected an error{' ' + sqlstate if sqlstate else ''} from: {query}")

    def sql_notices(self, query: str, params: Any = None, dbname: str = "postgres",
                    user: str = "postgres") -> tuple[list | None, list[dict[str, Any]]]:
        """Runs ``query``; returns (rows, notices) where notices are dicts like ``sql_error``'s."""
        notices: list[dict[str, Any]] = []
        with self.connect(dbname, user) as conn:
            conn.add_notice_handler(lambda d: notices.append({
                "sqlstate": d.sqlstate, "severity": d.severity_nonlocalized or d.severity,
                "message": d.message_primary, "detail": d.message_detail, "hint": d.message_hint}))
            cur = conn.execute(query, params)
            rows = cur.fetchall() if cur.description is not None else None
        return rows, notices

    def create_database(self, name: str, extension: bool = True) -> None:
        self.sql(f'CREATE DATABASE "{name}"')
        if extension:
            self.sql("CREATE EXTENSION webhook_ext", dbname=name)

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pg_tool(self, tool: str, *args: str, dbname: str = "postgres",
                timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs a client binary (pg_dump, psql, ...) as the postgres OS user against this cluster."""
        return run(as_pg_user([f"{self.pg_bin}/{tool}", "-h", self.datadir, "-p", str(self.pg_port),
                               "-U", "postgres", "-d", dbname, *args]), timeout=timeout)

    # ------------------------------------------------------------------- logs
    def log(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_position(self) -> int:
        """Current length of the log, for ``wait_for_log(..., since=...)``."""
        return len(self.log())

    def wait_for_log(self, regex: str, timeout: float = 10, since: int = 0) -> re.Match:
        """Waits until the log (from character ``since`` on) matches ``regex``."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.log(), since)
            if m:
                return m
            if time.monotonic() >= deadline:
                raise AssertionError(f"log did not match {regex!r} within {timeout}s; "
                                     f"log tail:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    # -------------------------------------------------------------- listeners
    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<webhook.port> (the listener's loopback address)."""
        return f"http://127.0.0.1:{self.http_port}"

    def hook_url(self, workflow_id: Any) -> str:
        return f"{self.base_url}/hooks/{workflow_id}"

    def wait_for_http(self, timeout: float = 15) -> None:
        """Waits until something accepts TCP connections on webhook.port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                    return
            except OSError:
                if time.monotonic() >= deadline:
                    raise AssertionError(f"nothing listens on 127.0.0.1:{self.http_port} after {timeout}s; "
                                         f"log tail:\n{self.log()[-3000:]}")
                time.sleep(0.1)

    def listener_pids(self) -> list[int]:
        rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook_ext listener' "
                        "ORDER BY pid")
        return [r[0] for r in rows]

    def wait_for_listeners(self, count: int, timeout: float = 15) -> list[int]:
        """Waits until exactly ``count`` listener processes are in pg_stat_activity."""
        deadline = time.monotonic() + timeout
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = self.listener_pids()
            if len(pids) == count:
                return pids
            time.sleep(0.1)
        raise AssertionError(f"expected {count} listener(s), found pids {pids}; "
                             f"log tail:\n{self.log()[-3000:]}")

    def __repr__(self) -> str:
        return f"<Cluster {self.datadir} pg:{self.pg_port} http:{self.http_port}>"


@atexit.register
def _stop_leftover_clusters() -> None:
    for c in list(_live_clusters):
        try:
            c.pg_ctl("-m", "immediate", "stop", timeout=30, check=False)
        except Exception:
            pass


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def e2e_root():
    """A temporary directory the postgres OS user can use."""
    root = tempfile.mkdtemp(prefix="webhook-e2e-", dir="/tmp")
    os.chmod(root, 0o755)
    chown_pg(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _require_extension_installed() -> None:
    if not os.path.exists(EXTENSION_CONTROL):
        pytest.exit(f"webhook_ext is not installed ({EXTENSION_CONTROL} is missing): "
                    "run `cargo pgrx install --release --pg-config /usr/bin/pg_config` first",
                    returncode=2)


@pytest.fixture(scope="session")
def cluster(e2e_root):
    """The shared preloaded cluster with the extension created in database postgres."""
    _require_extension_installed()
    c = Cluster(e2e_root, preload=True, name="session")
    try:
        c.start()
        c.sql("CREATE EXTENSION webhook_ext")
        yield c
    finally:
        c.destroy()


@pytest.fixture
def make_cluster(e2e_root):
    """Factory: ``make_cluster(preload=True, conf={}, start=True, bin_dir=None,
    standby_of=None, name=None)`` -> Cluster (``standby_of``: a streaming
    replica of that cluster, see Cluster; ``name``: its directory's and, for
    a replica, its application name, unique by default). Every cluster made
    is destroyed when the test ends."""
    _require_extension_installed()
    made: list[Cluster] = []

    def factory(preload: bool = True, conf: dict | None = None, start: bool = True,
                bin_dir: str | None = None, standby_of: Cluster | None = None,
                name: str | None = None) -> Cluster:
        c = Cluster(e2e_root, preload=preload, conf=conf, name=name or uniq("c"), bin_dir=bin_dir,
                    standby_of=standby_of)
        made.append(c)
        if start:
            c.start()
        return c

    yield factory
    for c in made:
        c.destroy()


@pytest.fixture(name="uniq")
def uniq_fixture() -> Callable[[str], str]:
    return uniq


HANDLER_SQL = ("CREATE FUNCTION {name}(event webhook.events) RETURNS jsonb "
               "LANGUAGE sql AS $h$ SELECT event.params $h$")


@pytest.fixture(scope="session")
def handler(cluster) -> str:
    """A handler function in database postgres of the session cluster."""
    name = "public.e2e_handler"
    cluster.sql(HANDLER_SQL.format(name=name))
    return name


@pytest.fixture
def new_handler(cluster):
    """Factory: ``new_handler(dbname='postgres', body=None)`` -> the new function's
    qualified name. ``body`` is a full CREATE statement with ``{name}`` in it."""
    made: list[tuple[str, str]] = []

    def factory(dbname: str = "postgres", body: str | None = None) -> str:
        name = "public." + uniq("h")
        cluster.sql((body or HANDLER_SQL).format(name=name), dbname=dbname)
        made.append((dbname, name))
        return name

    yield factory
    for dbname, name in made:
        try:
            cluster.sql(f"DROP ROUTINE IF EXISTS {name}", dbname=dbname)
        except psycopg.Error:
            pass


@pytest.fixture
def new_workflow(cluster, handler):
    """Factory: ``new_workflow(name=None, handler=None, dbname='postgres', user='postgres', **kw)``
    creates a workflow through webhook_create_workflow (extra keyword arguments are
    passed as named SQL arguments) and returns its row as a dict (id as str).
    Workflows made are dropped (as superuser) when the test ends."""
    default_handler = handler
    made: list[tuple[str, str]] = []

    def factory(name: str | None = None, handler: str | None = None, dbname: str = "postgres",
                user: str = "postgres", **kw) -> dict:
        name = name or uniq("wf")
        args = ["%s", "%s::regproc"]
        params: list[Any] = [name, handler or default_handler]
        for key, value in kw.items():
            args.append(f"{key} => %s")
            params.append(value)
        row = cluster.row(f"SELECT * FROM webhook_create_workflow({', '.join(args)})", params,
                          dbname=dbname, user=user)
        row["id"] = str(row["id"])
        made.append((dbname, row["id"]))
        return row

    yield factory
    for dbname, wf_id in made:
        try:
            cluster.sql("DELETE FROM webhook.workflows WHERE id = %s", (wf_id,), dbname=dbname)
        except psycopg.Error:
            pass
