"""Backup and restore. A database holding every kind of row webhook_ext
keeps, made the way a user makes them (SQL API calls and HTTP requests:
accepted, refused, redelivered, a handshake, a captured sample; events that
succeeded, failed, died, one whose handler is running while the dump is
taken and one waiting behind it), is dumped with ``pg_dump -Fc`` and
restored with ``pg_restore`` into new clusters:

* every row of every table of schema webhook comes back as it was (the two
  tables pg_dump does not keep are internal; why their rows differ is said
  where they are listed), and so do the sequences;
* the restored database is served over HTTP with the same behaviour:
  signatures verify with the restored secrets, refusals are answered the
  same and counted on top of the restored counts, a redelivery gets the
  first delivery's answer, rate limits and allow-lists hold, the events
  that were pending run their handler, a dead event is replayed, new ids
  follow the restored ones.

Restores: a superuser's single pg_restore; a parallel one (-j 2), whole (in
sessions with session_replication_role = replica) and in two passes (the
extension's rows serially); and a non-superuser that
owns the target database, alone (refused at CREATE EXTENSION) and with a
superuser creating the extension before and loading its rows after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import time

import psycopg
import pytest

import hookkit as hk
from conftest import PG_BIN, Cluster, as_pg_user, run
from hookkit import wait_for_status, wait_until

OWNER = "shop"  # a tenant (webhook_admin member): owns the workflows, the application and the target database
DB = "shop"  # the target database, which the target clusters' listener serves
GITHUB_SECRET = "gh-secret-7Qz"
MUX_SECRET = "mux-secret-4Lp"
DROPBOX_SECRET = "dropbox-app-secret"
HOLD_LOCK = 4242  # the advisory lock the handler waits for on events with "hold": "yes"

# Every table of schema webhook whose rows pg_dump keeps (the extension
# marks them with pg_extension_config_dump), and the two whose rows it does
# not keep, with why a restored installation has rows of its own there.
DUMPED = ("workflows", "parameters", "verifications", "events", "attempts", "rejections",
          "rejection_counts", "deliveries", "handshakes", "workflow_counters")
NOT_DUMPED = {
    # One row, written by CREATE EXTENSION with a random epoch that tells a
    # re-created extension apart: a restored installation is a new one.
    "config_version": "the installation's epoch",
    # The listeners' and executors' cache bookkeeping: the last transaction
    # that changed each workflow, by the transaction ids of the cluster that
    # wrote it. The restore's own writes note every restored workflow.
    "workflow_changes": "transaction ids of the cluster",
}
SEQUENCES = ("events_id_seq", "rejections_id_seq")

TARGET_CONF = {"webhook.database": DB, "webhook.workers": 1, "webhook.max_executors_per_owner": 1}

MUX_DEFINITION = {
    "algorithm": "hmac-sha256",
    "signed": "{timestamp}.{body}",
    "signature": "header:mux-signature",
    "list": {"separator": ",", "pair": "=", "key": "v1"},
    "encoding": "hex",
    "timestamp": {"from": "list:t", "format": "unix", "tolerance_secs": 300},
}

# The application, owned by OWNER: a side table every successful handler
# run writes, and a switch that makes app.on_flaky fail until it is turned.
APP_SQL = f"""
CREATE TABLE app.handled (event_id bigint PRIMARY KEY, workflow text NOT NULL, params jsonb NOT NULL);
CREATE TABLE app.switch (fail boolean NOT NULL);
INSERT INTO app.switch VALUES (true);
CREATE FUNCTION app.on_event(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
BEGIN
    IF e.params->>'hold' = 'yes' THEN
        PERFORM pg_advisory_xact_lock({HOLD_LOCK});
    END IF;
    INSERT INTO app.handled
    VALUES (e.id, (SELECT name FROM webhook.workflows WHERE id = e.workflow_id), e.params);
    RETURN jsonb_build_object('handled', e.id, 'order_id', e.params->'order_id');
END
$h$;
CREATE FUNCTION app.on_flaky(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
BEGIN
    IF (SELECT fail FROM app.switch) THEN
        RAISE EXCEPTION 'order % refused by app.switch', e.params->>'order_id';
    END IF;
    INSERT INTO app.handled
    VALUES (e.id, (SELECT name FROM webhook.workflows WHERE id = e.workflow_id), e.params);
    RETURN jsonb_build_object('handled', e.id);
END
$h$;
"""


# ----------------------------------------------------------------- helpers
def tool(c: Cluster, name: str, *args: str, user: str = "postgres", dbname: str | None = "postgres",
         check: bool = True):
    """A client binary run as the postgres OS user against ``c``, connected
    as ``user`` (to ``dbname``, unless None)."""
    database = ["-d", dbname] if dbname is not None else []
    return run(as_pg_user([f"{PG_BIN}/{name}", "-h", c.datadir, "-p", str(c.pg_port), "-U", user,
                           *database, *args]), check=check)


def restore(c: Cluster, *args: str, user: str = "postgres") -> None:
    """pg_restore into DB, stopping at the first error; it says nothing."""
    out = tool(c, "pg_restore", "--exit-on-error", *args, user=user, dbname=DB)
    assert out.stderr == "", out.stderr


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def github(body: dict, delivery: str | None = None, secret: str = GITHUB_SECRET,
           event: str | None = None) -> tuple[bytes, dict]:
    """A GitHub delivery: the body and its headers, signed with ``secret``."""
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, raw)}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    if event is not None:
        headers["X-GitHub-Event"] = event
    return raw, headers


def mux(body: dict, secret: str = MUX_SECRET) -> tuple[bytes, dict]:
    """A Mux delivery (MUX_DEFINITION), signed now."""
    raw = json.dumps(body).encode()
    t = int(time.time())
    return raw, {"Content-Type": "application/json",
                 "Mux-Signature": f"t={t},v1={hex_hmac(secret, f'{t}.'.encode() + raw)}"}


def send(c: Cluster, wf: str, signed: tuple[bytes, dict]) -> hk.Reply:
    raw, headers = signed
    return hk.post_url(c.hook_url(wf), raw, headers=headers)


def answer(r: hk.Reply) -> tuple[int, object]:
    """Status and body of a JSON answer."""
    assert r.headers["content-type"] == "application/json", r
    return r.status, r.json()


def accepted(r: hk.Reply, wf: str) -> int:
    """The default method's exact answer; returns its event id."""
    status, body = answer(r)
    assert (status, sorted(body)) == (200, ["event_id", "msg", "workflow_id"]), r
    assert body == {"msg": "success", "event_id": body["event_id"], "workflow_id": wf}, r
    assert isinstance(body["event_id"], int), r
    return body["event_id"]


def assert_rate_limits(c: Cluster, wf: dict) -> None:
    """The workflow's bucket (burst 2) and the client's (burst 1), both
    refilling a token per 100 s."""
    for _ in range(2):
        accepted(hk.post_url(c.hook_url(wf["limited"]), {"order_id": "L"}), wf["limited"])
    r = hk.post_url(c.hook_url(wf["limited"]), {"order_id": "L"})
    assert (*answer(r), r.headers["retry-after"]) == (429, {"msg": "Too many requests"}, "100")
    accepted(hk.post_url(c.hook_url(wf["per-client"]), {"order_id": "P"}), wf["per-client"])
    r = hk.post_url(c.hook_url(wf["per-client"]), {"order_id": "P"})
    assert (*answer(r), r.headers["retry-after"]) == (429, {"msg": "Too many requests"}, "100")


def relations(c: Cluster, dbname: str, kind: str) -> set[str]:
    """Names of the tables ('r') or sequences ('S') of schema webhook."""
    return {r[0] for r in c.sql("SELECT relname FROM pg_class WHERE relnamespace = 'webhook'::regnamespace "
                                "AND relkind = %s", (kind,), dbname=dbname)}


def primary_key(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n), "
        "pg_attribute a WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "AND a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n", (f"webhook.{table}",))]


def snapshot(conn: psycopg.Connection) -> dict:
    """Every row (every column, in primary-key order) of every dumped table,
    and every sequence of schema webhook, as ``conn`` sees them."""
    rows = {}
    for table in DUMPED:
        order = ", ".join(primary_key(conn, table))
        assert order, table
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        rows[table] = cur.execute(f"SELECT * FROM webhook.{table} ORDER BY {order}").fetchall()
    for seq in SEQUENCES:
        rows[seq] = conn.execute(f"SELECT last_value, is_called FROM webhook.{seq}").fetchone()
    return rows


def hold(c: Cluster, dbname: str) -> psycopg.Connection:
    """A session holding the advisory lock that handlers of "hold" events wait for."""
    conn = c.connect(dbname)
    conn.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
    return conn


@dataclasses.dataclass
class Backup:
    dump: str  # pg_dump -Fc of the source database
    globals: str  # pg_dumpall --globals-only of the source cluster: the roles
    rows: dict  # snapshot() of the source, in the dump's snapshot
    app: list  # app.handled, in the dump's snapshot
    epoch: str  # the source's webhook.config_version
    wf: dict  # workflow ids by name
    ev: dict  # event ids: first (with delivery key delivery-1), failed, dead, running, pending


# ------------------------------------------------------------------ source
def fill(c: Cluster) -> dict:
    """Workflows of every kind through the SQL API, as the tenant OWNER;
    returns their ids by name."""
    c.sql(f'CREATE ROLE "{OWNER}" LOGIN')
    c.sql(f'GRANT webhook_admin TO "{OWNER}"')
    c.sql(f'CREATE SCHEMA app AUTHORIZATION "{OWNER}"')
    with c.connect(user=OWNER) as conn:
        conn.execute(APP_SQL)
    wf: dict = {}

    def api(query: str, *args) -> None:
        c.sql(query, args, user=OWNER)

    def create(name: str, handler: str = "app.on_event", **kw) -> str:
        named = "".join(f", {k} => %s" for k in kw)
        wf[name] = str(c.scalar(f"SELECT id FROM webhook_create_workflow(%s, %s::regproc{named})",
                                (name, handler, *kw.values()), user=OWNER))
        return wf[name]

    # GitHub: a JSON sample, a required parameter and one required for push
    # events only, a strict non-nullable one, a verification with its
    # secret, an allow-list the tests are on, the default delivery key.
    w = create("orders")
    api("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)", w,
        json.dumps({"order_id": "A-1", "amount": 9.5, "customer": {"email": "a@example.com"}}))
    api("SELECT count(*) FROM webhook_set_required(%s, ARRAY['order_id'])", w)
    api("SELECT webhook_set_discriminator(%s, 'header', 'x-github-event')", w)
    api("SELECT count(*) FROM webhook_set_required(%s, ARRAY['customer.email'], for_events => '{push}')", w)
    api("SELECT count(*) FROM webhook_set_strict(%s, true, params => ARRAY['amount'])", w)
    api("SELECT count(*) FROM webhook_alter_parameter(%s, 'amount', nullable => false)", w)
    api("SELECT webhook_set_verification(%s, 'github', secret => %s)", w, GITHUB_SECRET)
    api("SELECT webhook_set_allowed_networks(%s, ARRAY['127.0.0.0/8', '::1/128']::cidr[])", w)

    # A custom response, a custom verification definition, a key-value
    # sample, a header parameter, redacted headers, a delivery key in the body.
    w = create("mux")
    api("SELECT count(*) FROM webhook_sample_from_kv(%s, %s)", w, "order_id=B-1\ncount: 3")
    api("SELECT count(*) FROM webhook_add_parameter(%s, 'x-shop-id', source => 'header', type => 'text')", w)
    api("SELECT webhook_set_response(%s, 'custom', content_type => 'text/plain', body => 'got {{order_id}}', "
        "status => 202, headers => '{\"X-Shop\": \"acme\"}')", w)
    api("SELECT webhook_set_verification(%s, 'custom', secret => %s, definition => %s::jsonb)", w, MUX_SECRET,
        json.dumps(MUX_DEFINITION))
    api("SELECT webhook_set_redacted_headers(%s, ARRAY['x-shop-token'])", w)
    api("SELECT webhook_set_delivery_key(%s, 'body', name => 'delivery', \"window\" => '2 hours')", w)

    # The workflow method: the caller gets the handler's result.
    w = create("sync", methods="{POST,PUT}")
    api("SELECT webhook_set_response(%s, 'workflow', timeout => '5 seconds', failure_status => 503, "
        "failure_content_type => 'text/plain', failure_body => 'sorry')", w)
    api("SELECT webhook_set_delivery_key(%s, 'none')", w)

    # Failing handlers: one retried in an hour (failed), one that is dead
    # after its second attempt, ordered.
    w = create("flaky", handler="app.on_flaky")
    api("SELECT webhook_set_retry(%s, 3, delay => '1 hour', max_delay => '2 hours')", w)
    w = create("doomed", handler="app.on_flaky")
    api("SELECT webhook_set_retry(%s, 2, delay => '100 milliseconds', max_delay => '100 milliseconds')", w)
    api("SELECT webhook_set_ordered(%s, true)", w)

    # Rate limits: the workflow's as a whole and per client; a storage quota
    # that keeps no raw body.
    w = create("limited")
    api("SELECT webhook_set_rate_limit(%s, 0.01, burst => 2)", w)
    api("SELECT webhook_set_storage(%s, 1000000, keep_body => false)", w)
    w = create("per-client")
    api("SELECT webhook_set_rate_limit(%s, NULL, per_client_rate => 0.01, per_client_burst => 1)", w)

    # An allow-list the tests are not on.
    w = create("intranet")
    api("SELECT webhook_set_allowed_networks(%s, ARRAY['10.0.0.0/8', 'fd00::/8']::cidr[])", w)

    # Dropbox: its verification and its (unsigned) endpoint check.
    w = create("dropbox")
    api("SELECT webhook_set_verification(%s, 'dropbox', secret => %s)", w, DROPBOX_SECRET)
    api("SELECT webhook_set_handshake(%s, 'dropbox')", w)

    # Sample capture: one captured over HTTP, one still armed when dumped.
    w = create("captured")
    api("SELECT webhook_capture_sample(%s)", w)
    w = create("armed")
    api("SELECT webhook_capture_sample(%s, '12 hours')", w)

    # A typed record its handler takes, with an attribute its owner added by
    # hand: a restore brings the type and the workflow back as they were
    # (restoring the parameters changes no type).
    w = create("typed")
    api("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)", w,
        json.dumps({"order_id": "T-1", "amount": 2}))
    api("SELECT webhook_set_record_type(%s, 'app.typed_hook')", w)
    api("ALTER TYPE app.typed_hook ADD ATTRIBUTE stray integer")
    api("CREATE FUNCTION app.on_typed(p app.typed_hook) RETURNS void LANGUAGE sql AS 'SELECT'")
    api("SELECT webhook_set_handler(%s, 'app.on_typed'::regproc)", w)

    # Disabled, with the full body as one parameter.
    w = create("paused", methods="{POST}")
    api("SELECT webhook_set_full_body(%s, true, param_name => 'raw')", w)
    api("SELECT webhook_disable_workflow(%s)", w)
    return wf


def serve_source(c: Cluster, wf: dict) -> dict:
    """Requests a sender makes, accepted and refused; returns event ids once
    the handlers ran and the listener wrote what it writes after answering."""
    ev: dict = {}
    orders = wf["orders"]
    ev["first"] = accepted(send(c, orders, github({"order_id": "A-1", "amount": 9.5}, delivery="delivery-1")),
                           orders)
    accepted(send(c, orders, github({"order_id": "A-2", "amount": 1, "customer": {"email": "b@example.com"}},
                                    delivery="delivery-2", event="push")), orders)
    # A redelivery: the first answer, nothing stored.
    r = send(c, orders, github({"order_id": "A-1 again", "amount": 9.5}, delivery="delivery-1"))
    assert accepted(r, orders) == ev["first"]
    # Refused: a wrong signature; a signed request without a required parameter.
    r = send(c, orders, github({"order_id": "X", "amount": 1}, secret="not the secret"))
    assert answer(r) == (401, {"msg": "Invalid signature"})
    r = send(c, orders, github({"amount": 1}, delivery="delivery-missing"))
    assert answer(r) == (400, {"msg": "Missing required parameter(s)", "missing": ["order_id"]})

    r = send(c, wf["mux"], mux({"order_id": "B-1", "count": 3, "delivery": "mux-1"}))
    assert (r.status, r.headers["x-shop"], r.body) == (202, "acme", b"got B-1")
    r = hk.post_url(c.hook_url(wf["sync"]), {"order_id": "C-1"})
    assert answer(r) == (200, {"handled": r.json()["handled"], "order_id": "C-1"})
    ev["failed"] = accepted(hk.post_url(c.hook_url(wf["flaky"]), {"order_id": "F-1"}), wf["flaky"])
    ev["dead"] = accepted(hk.post_url(c.hook_url(wf["doomed"]), {"order_id": "D-1"}), wf["doomed"])

    assert_rate_limits(c, wf)
    r = hk.post_url(c.hook_url(wf["intranet"]), {"order_id": "I"})
    assert answer(r) == (403, {"msg": "Address not allowed"})
    r = hk.post_url(c.hook_url(wf["paused"]), "raw text")
    assert answer(r) == (404, {"msg": "Workflow not found"})
    r = hk.get_url(c.hook_url(wf["dropbox"]) + "?challenge=abc123")
    assert (r.status, r.headers["content-type"], r.body) == (200, "text/plain; charset=utf-8", b"abc123")
    r = hk.post_url(c.hook_url(wf["captured"]) + "?src=web", {"order_id": "S-1", "paid": True},
                    headers={"X-Shop-Id": "Berlin"})
    assert answer(r) == (200, {"msg": "Sample captured", "workflow_id": wf["captured"],
                               "parameters": {"body": 2, "query": 1, "header": 3}})

    assert wait_for_status(c, ev["failed"], "failed")["attempts"] == 1
    assert wait_for_status(c, ev["dead"], "dead")["attempts"] == 2
    hk.settle(c)
    hk.assert_rejection_counts(c, orders, {(401, "Invalid signature: signature does not match"): 1,
                                           (400, "Missing required parameter(s)"): 1})
    for name, status, reason in (("limited", 429, "Too many requests: workflow over its rate"),
                                 ("per-client", 429, "Too many requests: client over its rate"),
                                 ("intranet", 403, "Address not allowed"), ("paused", 404, "Workflow not found")):
        hk.assert_rejection_counts(c, wf[name], {(status, reason): 1})
    hk.wait_for_value(lambda: c.scalar("SELECT count(*) FROM webhook.rejections"), 6, timeout=5,
                      what="refusals kept")
    hk.wait_for_value(lambda: c.sql("SELECT answered FROM webhook.handshakes"), [(1,)], timeout=5,
                      what="handshakes counted")
    return ev


@pytest.fixture(scope="module")
def backup(e2e_root) -> Backup:
    """The source cluster, filled and served, dumped while a handler runs
    (its event is pending in the dump: the attempt is not committed) and
    another event waits for the owner's one executor."""
    c = Cluster(e2e_root, name="backup_source", conf={
        "webhook.workers": 1, "webhook.max_executors_per_owner": 1,
        # The fill is many configuration changes by one tenant in a second.
        "webhook.max_config_changes_per_second": 1000})
    try:
        c.start()
        c.sql("CREATE EXTENSION webhook_ext")
        hk.wait_ready(c)
        wf = fill(c)
        ev = serve_source(c, wf)

        holder = hold(c, "postgres")
        ev["running"] = accepted(send(c, wf["orders"], github({"order_id": "H-1", "amount": 1, "hold": "yes"},
                                                              delivery="delivery-3")), wf["orders"])
        wait_until(lambda: c.scalar("SELECT count(*) FROM webhook_processes() WHERE kind = 'executor' "
                                    "AND state = 'running handler' AND event_id = %s", (ev["running"],)),
                   timeout=10, what="the held handler runs")
        ev["pending"] = accepted(send(c, wf["orders"], github({"order_id": "P-1", "amount": 2},
                                                              delivery="delivery-4")), wf["orders"])

        # The dump and the rows it is compared with, in one snapshot.
        dump = os.path.join(c.base_dir, "source.dump")
        globals_sql = os.path.join(c.base_dir, "globals.sql")
        with c.connect(autocommit=False) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            rows = snapshot(conn)
            app = conn.execute("SELECT * FROM app.handled ORDER BY event_id").fetchall()
            epoch = str(conn.execute("SELECT epoch FROM webhook.config_version").fetchone()[0])
            tool(c, "pg_dump", "-Fc", f"--snapshot={exported}", "-f", dump)
            conn.rollback()
        tool(c, "pg_dumpall", "--globals-only", "-f", globals_sql, dbname=None)
        holder.close()

        # No table is left out, and the dump holds every kind of row.
        assert relations(c, "postgres", "r") == set(DUMPED) | set(NOT_DUMPED)
        assert relations(c, "postgres", "S") == set(SEQUENCES)
        dumped = c.sql("SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'webhook_ext'")
        assert {r[0] for r in dumped} == {f"webhook.{t}" for t in DUMPED + SEQUENCES}
        assert [t for t in DUMPED if not rows[t]] == []
        status = {e["id"]: e["status"] for e in rows["events"]}
        assert set(status.values()) == {"pending", "succeeded", "failed", "dead"}
        assert [status[ev[k]] for k in ("first", "failed", "dead", "running", "pending")] == \
            ["succeeded", "failed", "dead", "pending", "pending"]
        assert {a["outcome"] for a in rows["attempts"]} == {"succeeded", "failed"}
        assert {p["source"] for p in rows["parameters"]} == {"body", "query", "header"}
        assert {p["name"] for p in rows["parameters"] if p["required"]} == {"order_id", "customer.email"}
        assert {(v["scheme"], tuple(v["secrets"])) for v in rows["verifications"]} == {
            ("github", (GITHUB_SECRET,)), ("custom", (MUX_SECRET,)), ("dropbox", (DROPBOX_SECRET,))}
        assert {d["key"] for d in rows["deliveries"]} == {"delivery-1", "delivery-2", "delivery-3", "delivery-4",
                                                         "mux-1"}
        assert {w["name"] for w in rows["workflows"] if w["captured_at"] is not None} == {"captured"}
        assert {w["name"] for w in rows["workflows"] if w["capture_until"] is not None} == {"captured", "armed"}
        assert {h[0] for h in app} & {ev["running"], ev["pending"]} == set()
        yield Backup(dump, globals_sql, rows, app, epoch, wf, ev)
    finally:
        c.destroy()


# ------------------------------------------------------------------ target
def restore_roles(c: Cluster, backup: Backup) -> None:
    """The source's roles, from pg_dumpall --globals-only; its one error is
    the bootstrap superuser, which every cluster has."""
    out = tool(c, "psql", "-X", "-q", "-f", backup.globals)
    assert re.fullmatch(rf'psql:{re.escape(backup.globals)}:\d+: ERROR:  role "postgres" already exists',
                        out.stderr.strip()), out.stderr


def without(rows: list[dict], column: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != column} for row in rows]


def stamps(rows: list[dict]) -> list[tuple]:
    """When each verification was last set."""
    return [(v["workflow_id"], v["method"], v["updated_at"]) for v in rows]


def assert_restored(c: Cluster, backup: Backup, triggers_ran: bool = True) -> list[tuple]:
    """Every row and sequence as dumped (the held handler keeps the restored
    pending events from running meanwhile), and the two tables pg_dump does
    not keep as a new installation has them: a change noted for each
    restored workflow, unless the rows were loaded with the tables' triggers
    off (session_replication_role = replica). Returns the verifications'
    updated_at as restored, which the test compares last."""
    with c.connect(DB) as conn:
        restored = snapshot(conn)
    for name in DUMPED + SEQUENCES:
        if name == "verifications":
            assert without(restored[name], "updated_at") == without(backup.rows[name], "updated_at")
        else:
            assert restored[name] == backup.rows[name], name
    assert c.sql("SELECT * FROM app.handled ORDER BY event_id", dbname=DB) == backup.app
    assert relations(c, DB, "r") == set(DUMPED) | set(NOT_DUMPED)
    assert relations(c, DB, "S") == set(SEQUENCES)
    epochs = [str(r[0]) for r in c.sql("SELECT epoch FROM webhook.config_version", dbname=DB)]
    assert len(epochs) == 1 and epochs != [backup.epoch], epochs
    noted = {str(r[0]) for r in c.sql("SELECT workflow_id FROM webhook.workflow_changes", dbname=DB)}
    assert noted == ({str(w["id"]) for w in backup.rows["workflows"]} if triggers_ran else set())
    return stamps(restored["verifications"])


def serve_restored(c: Cluster, backup: Backup, holder: psycopg.Connection) -> None:
    """The restored database behaves as the source did."""
    wf, ev, rows = backup.wf, backup.ev, backup.rows
    orders = wf["orders"]
    q = lambda query, *args: c.rows(query, args, dbname=DB)  # noqa: E731

    # The event whose handler ran while the dump was taken, and the one
    # waiting behind it, run once the lock is free: their handler's rows.
    holder.close()
    for key in ("running", "pending"):
        assert wait_for_status(c, ev[key], "succeeded", dbname=DB)["attempts"] == 1
    assert q("SELECT event_id, workflow, params->>'order_id' AS order_id FROM app.handled "
             "WHERE event_id IN (%s, %s) ORDER BY event_id", ev["running"], ev["pending"]) == [
        {"event_id": ev["running"], "workflow": "orders", "order_id": "H-1"},
        {"event_id": ev["pending"], "workflow": "orders", "order_id": "P-1"}]
    hk.wait_ready(c)

    # A signed request: the exact answer, a row, its handler's row; its id
    # follows every restored one.
    new_id = accepted(send(c, orders, github({"order_id": "N-1", "amount": 3}, delivery="delivery-new")), orders)
    assert new_id > max(e["id"] for e in rows["events"])
    new = wait_for_status(c, new_id, "succeeded", dbname=DB)
    assert (str(new["workflow_id"]), new["params"], new["attempts"]) == \
        (orders, {"order_id": "N-1", "amount": 3}, 1)
    assert q("SELECT workflow, params FROM app.handled WHERE event_id = %s", new_id) == [
        {"workflow": "orders", "params": {"order_id": "N-1", "amount": 3}}]

    # Refusals: the exact answers, counted on top of the restored counts,
    # kept with ids after the restored ones.
    last_rejection = max(x["id"] for x in rows["rejections"])
    r = send(c, orders, github({"order_id": "X", "amount": 1}, secret="not the secret"))
    assert answer(r) == (401, {"msg": "Invalid signature"})
    r = send(c, orders, github({"amount": 1}))
    assert answer(r) == (400, {"msg": "Missing required parameter(s)", "missing": ["order_id"]})
    hk.wait_for_value(lambda: {(x["status"], x["reason"]): x["count"] for x in q(
        "SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s", orders)},
        {(401, "Invalid signature: signature does not match"): 2, (400, "Missing required parameter(s)"): 2},
        timeout=5, what="refusals counted")
    hk.wait_for_value(lambda: q("SELECT status FROM webhook.rejections WHERE id > %s ORDER BY id",
                                last_rejection),
                      [{"status": 401}, {"status": 400}], timeout=5, what="refusals kept")

    # A redelivery of a restored delivery key: the first delivery's answer,
    # nothing stored.
    stored = hk.count_events(c, dbname=DB)
    r = send(c, orders, github({"order_id": "A-1 once more", "amount": 9.5}, delivery="delivery-1"))
    assert accepted(r, orders) == ev["first"]
    assert hk.count_events(c, dbname=DB) == stored

    # The other secrets, keys and settings.
    r = send(c, wf["mux"], mux({"order_id": "B-2", "count": 1, "delivery": "mux-2"}))
    assert (r.status, r.headers["x-shop"], r.body) == (202, "acme", b"got B-2")
    r = send(c, wf["mux"], mux({"order_id": "B-3", "count": 1, "delivery": "mux-1"}))
    assert (r.status, r.body) == (202, b"got B-1")
    r = send(c, wf["mux"], mux({"order_id": "B-4", "delivery": "mux-4"}, secret="not the secret"))
    assert answer(r) == (401, {"msg": "Invalid signature"})
    raw = json.dumps({"list_folder": {"accounts": ["dbid:AAH4f99"]}}).encode()
    accepted(hk.post_url(c.hook_url(wf["dropbox"]), raw, headers={
        "Content-Type": "application/json", "X-Dropbox-Signature": hex_hmac(DROPBOX_SECRET, raw)}), wf["dropbox"])
    r = hk.post_url(c.hook_url(wf["sync"]), {"order_id": "C-2"})
    assert answer(r) == (200, {"handled": r.json()["handled"], "order_id": "C-2"})
    assert_rate_limits(c, wf)
    r = hk.post_url(c.hook_url(wf["intranet"]), {"order_id": "I"})
    assert answer(r) == (403, {"msg": "Address not allowed"})
    r = hk.post_url(c.hook_url(wf["paused"]), "raw text")
    assert answer(r) == (404, {"msg": "Workflow not found"})
    r = hk.get_url(c.hook_url(wf["dropbox"]) + "?challenge=xyz789")
    assert (r.status, r.headers["content-type"], r.body) == (200, "text/plain; charset=utf-8", b"xyz789")
    hk.wait_for_value(lambda: q("SELECT answered, last_query FROM webhook.handshakes"),
                      [{"answered": 2, "last_query": "challenge=xyz789"}], timeout=5, what="handshakes counted")
    # The capture armed before the dump takes the first request.
    r = hk.post_url(c.hook_url(wf["armed"]), {"order_id": "S-2"})
    assert answer(r) == (200, {"msg": "Sample captured", "workflow_id": wf["armed"],
                               "parameters": {"body": 1, "query": 0, "header": 2}})
    captured = q("SELECT source, name FROM webhook.parameters WHERE workflow_id = %s ORDER BY source, position",
                 wf["armed"])
    assert [(p["source"], p["name"]) for p in captured] == \
        [("body", "order_id"), ("header", "accept-encoding"), ("header", "content-type")]

    # The dead event is replayed by its owner, once the application lets it
    # succeed; the failed one keeps its restored retry time.
    c.sql("UPDATE app.switch SET fail = false", dbname=DB, user=OWNER)
    replayed = c.scalar("SELECT webhook_replay(%s)", (ev["dead"],), dbname=DB, user=OWNER)
    assert replayed == {"status": 200, "headers": {"content-type": "application/json"},
                        "body": {"msg": "success", "event_id": replayed["event_id"], "workflow_id": wf["doomed"]},
                        "event_id": replayed["event_id"]}, replayed
    assert q("SELECT origin, replay_of, status, attempts FROM webhook.events WHERE id = %s",
             replayed["event_id"]) == [{"origin": "replay", "replay_of": ev["dead"], "status": "succeeded",
                                        "attempts": 1}]
    assert q("SELECT workflow FROM app.handled WHERE event_id = %s", replayed["event_id"]) == \
        [{"workflow": "doomed"}]
    failed = next(e for e in rows["events"] if e["id"] == ev["failed"])
    assert q("SELECT status, next_attempt_at FROM webhook.events WHERE id = %s", ev["failed"]) == [
        {"status": "failed", "next_attempt_at": failed["next_attempt_at"]}]


def restored_and_served(c: Cluster, backup: Backup, steps, triggers_ran: bool = True) -> None:
    """Runs ``steps`` (a restore into DB) while the restored pending events'
    handler waits, compares every row, serves the result; last, the one
    column a restore must keep that is compared apart."""
    holder = hold(c, DB)
    try:
        steps()
        restored_stamps = assert_restored(c, backup, triggers_ran)
        serve_restored(c, backup, holder)
    finally:
        holder.close()
    # A restore keeps when each verification was last set, as it keeps
    # every other column of every row. Compared last, so that all of the
    # above runs whatever this shows.
    assert restored_stamps == stamps(backup.rows["verifications"]), \
        "webhook.verifications.updated_at is the restore's time, not the dumped value"


# ------------------------------------------------------------------- tests
def test_a_restore_into_a_new_cluster_keeps_every_row_and_is_served_the_same(backup, make_cluster):
    """A superuser restores the whole dump with one pg_restore."""
    c = make_cluster(conf=TARGET_CONF)
    restore_roles(c, backup)
    c.sql(f'CREATE DATABASE "{DB}"')
    restored_and_served(c, backup, lambda: restore(c, backup.dump))


def test_a_parallel_restore_in_two_passes_keeps_every_row_and_is_served_the_same(backup, make_cluster):
    """pg_restore -j 2 of everything but the extension's rows, then those
    rows in one serial pass (the extension's tables reference each other,
    and a parallel restore does not order their rows)."""
    c = make_cluster(conf=TARGET_CONF)
    restore_roles(c, backup)
    c.sql(f'CREATE DATABASE "{DB}"')

    def steps() -> None:
        restore(c, "-j", "2", "--exclude-schema=webhook", backup.dump)
        assert c.scalar("SELECT count(*) FROM webhook.workflows", dbname=DB) == 0
        restore(c, "--data-only", "--schema=webhook", backup.dump)

    restored_and_served(c, backup, steps)


def test_a_parallel_restore_of_the_whole_dump_in_replica_sessions_keeps_every_row_and_is_served_the_same(
        backup, make_cluster):
    """pg_restore -j 2 of the whole dump, its sessions with
    session_replication_role = replica: the extension's tables reference
    each other (events → workflows, attempts → events) and a parallel
    restore loads their rows side by side, so the foreign-key checks that
    would find a workflow not loaded yet are off while it runs (pg_dump
    orders these rows for a serial restore but records no dependency
    between them that pg_restore -j could follow)."""
    c = make_cluster(conf=TARGET_CONF)
    restore_roles(c, backup)
    c.sql(f'CREATE DATABASE "{DB}"')

    def steps() -> None:
        out = tool(c, "pg_restore", "--exit-on-error", "-j", "2", backup.dump,
                   dbname=f"dbname={DB} options='-c session_replication_role=replica'")
        assert out.stderr == "", out.stderr

    restored_and_served(c, backup, steps, triggers_ran=False)


def test_a_non_superuser_database_owner_restores_between_two_superuser_steps(backup, make_cluster):
    """The owner of the target database, a tenant and no superuser, can
    neither create the extension nor write its rows (they belong to every
    workflow owner). A superuser creates the extension, the owner restores
    everything but the extension's rows and its comment, a superuser loads
    the extension's rows."""
    c = make_cluster(conf=TARGET_CONF)
    restore_roles(c, backup)

    # Alone, the owner's restore stops at the extension.
    c.sql(f'CREATE DATABASE alone OWNER "{OWNER}"')
    out = tool(c, "pg_restore", "--exit-on-error", backup.dump, user=OWNER, dbname="alone", check=False)
    assert (out.returncode, out.stderr) == (1, "\n".join([
        'pg_restore: error: could not execute query: ERROR:  permission denied to create extension "webhook_ext"',
        "HINT:  Must be superuser to create this extension.",
        "Command was: CREATE EXTENSION IF NOT EXISTS webhook_ext WITH SCHEMA public;", "", "", ""]))
    assert c.sql("SELECT extname FROM pg_extension WHERE extname = 'webhook_ext'", dbname="alone") == []

    # With the extension created by a superuser, the owner's restore of the
    # whole dump restores the owner's objects and fails for the extension's
    # comment and for every row and sequence of schema webhook.
    c.sql(f'CREATE DATABASE created OWNER "{OWNER}"')
    c.sql("CREATE EXTENSION webhook_ext", dbname="created")
    out = tool(c, "pg_restore", backup.dump, user=OWNER, dbname="created", check=False)
    assert out.returncode == 1
    assert [line for line in out.stderr.splitlines() if line.startswith("pg_restore:")] == [
        *[f"pg_restore: error: could not execute query: ERROR:  {error}" for error in (
            "must be owner of extension webhook_ext",
            'query would be affected by row-level security policy for table "workflows"',
            "permission denied for table events",
            "permission denied for table attempts",
            "permission denied for table deliveries",
            "permission denied for table handshakes",
            'query would be affected by row-level security policy for table "parameters"',
            "permission denied for table rejection_counts",
            "permission denied for table rejections",
            'query would be affected by row-level security policy for table "verifications"',
            "permission denied for table workflow_counters",
            "permission denied for sequence events_id_seq",
            "permission denied for sequence rejections_id_seq")],
        "pg_restore: warning: errors ignored on restore: 13"], out.stderr
    assert c.sql("SELECT * FROM app.handled ORDER BY event_id", dbname="created") == backup.app
    assert c.scalar("SELECT count(*) FROM webhook.workflows", dbname="created") == 0

    # The procedure, into the database the listener serves.
    c.sql(f'CREATE DATABASE "{DB}" OWNER "{OWNER}"')
    c.sql("CREATE EXTENSION webhook_ext", dbname=DB)
    owner_list = os.path.join(c.base_dir, "owner.list")

    def steps() -> None:
        toc = tool(c, "pg_restore", "-l", backup.dump, dbname=None).stdout
        with open(owner_list, "w") as f:
            f.write("".join(line for line in toc.splitlines(keepends=True)
                            if "COMMENT - EXTENSION webhook_ext" not in line))
        restore(c, "--exclude-schema=webhook", "-L", owner_list, backup.dump, user=OWNER)
        restore(c, "--data-only", "--schema=webhook", backup.dump)

    restored_and_served(c, backup, steps)
