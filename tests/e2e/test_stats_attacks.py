"""Attacks on the per-workflow stats (webhook.workflow_counters,
webhook.workflow_stats) and the opt-in Prometheus /metrics: locks a DBA
takes, clients behind a trusted proxy, tenant-chosen workflow names, refusals
that must be counted, exact counts under load and what an immediate stop
loses, and the documentation. Positive controls show each attack path is
reachable."""

import collections
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import hookkit as hk
from conftest import uniq
from tenantkit import make_tenant, drop_tenants


def scrape(c, **kw) -> requests.Response:
    return requests.get(c.base_url + "/metrics", timeout=30, **kw)


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def handler_running(c) -> bool:
    return c.scalar("SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'webhook_ext executor for %%' AND wait_event = 'PgSleep'") == 1


# ------------------------------------------------------------ table locks

LOCK_CONF = {"webhook.workers": 1, "deadlock_timeout": "5s"}


SLEEPY_HANDLER = """
CREATE TABLE {table} (event_id bigint PRIMARY KEY);
CREATE SEQUENCE {table}_runs;
CREATE FUNCTION {name}(e webhook.events) RETURNS jsonb LANGUAGE plpgsql AS $h$
BEGIN
    PERFORM nextval('{table}_runs');
    IF e.params ? 'sleep' THEN PERFORM pg_sleep((e.params->>'sleep')::float8); END IF;
    INSERT INTO {table} VALUES (e.id);
    RETURN NULL;
END $h$;
"""


def sleepy_workflow(c) -> tuple[str, str]:
    name, table = "public." + uniq("sleepy"), "public." + uniq("runs")
    c.sql(SLEEPY_HANDLER.format(name=name, table=table))
    return hk.create_workflow(c, handler=name), table


@pytest.mark.parametrize("first", ["attempts", "workflow_counters"])
def test_a_dba_locking_a_table_the_batch_writes_then_events_never_deadlocks(make_cluster, first):
    """tests/e2e/test_executor_locks.py's promise: an executor's batch takes
    every table lock it needs before it claims events, so a DBA who locks
    the extension's tables in any order waits for the batch and is never
    failed by a deadlock, nor does a batch run handlers it cannot record.
    Recording attempts also writes webhook.workflow_counters, so LOCK_TABLES
    (src/execution/executor.rs) lists it: an executor's first batch would
    lock it anyway (preparing the statement), later ones run the kept plan
    and would take the lock only when they record. The executor is warmed
    up first so that the batch under test is such a later one."""
    c = make_cluster(conf={**LOCK_CONF, "webhook.executor_idle_timeout": "60s"})
    c.sql("CREATE EXTENSION webhook_ext")
    wf, table = sleepy_workflow(c)
    c.wait_for_listeners(1)
    hk.wait_ready(c)
    # A first event, so that the executor's next batch runs its kept plans.
    warm = hk.post(c, wf, json_body={"n": 0}).json()["event_id"]
    hk.wait_for_status(c, warm, "succeeded")
    executor = c.scalar("SELECT pid FROM webhook_processes() WHERE kind = 'executor'")
    r = hk.post(c, wf, json_body={"sleep": 2})
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    hk.wait_until(lambda: handler_running(c), timeout=10, interval=0.02, what="the handler is running")
    assert c.scalar("SELECT pid FROM webhook_processes() WHERE kind = 'executor'") == executor

    dba = c.connect(autocommit=False)
    try:
        dba.execute("SET deadlock_timeout = '3s'")
        t0 = time.monotonic()
        dba.execute(f"LOCK TABLE webhook.{first} IN ACCESS EXCLUSIVE MODE")
        first_wait = time.monotonic() - t0
        dba.execute("LOCK TABLE webhook.events IN ACCESS EXCLUSIVE MODE")
        time.sleep(0.5)
        dba.commit()
    except psycopg.errors.DeadlockDetected as e:
        pytest.fail(f"the DBA's transaction (LOCK {first}, then events) was failed by a deadlock "
                    f"with an executor's batch: {e}")
    finally:
        dba.close()
    row = hk.wait_for_status(c, event_id, "succeeded")
    runs = c.scalar(f"SELECT last_value FROM {table}_runs")
    errors = [l for l in c.log().splitlines() if "executor" in l and ("ERROR" in l or "WARNING" in l)]
    assert (row["attempts"], runs, first_wait > 0.5) == (1, 2, True), (
        f"DBA's first lock granted after {first_wait:.2f}s while the batch ran; "
        f"handler runs {runs} for 2 events (attempts {row['attempts']}); executor log: {errors}")
    assert "deadlock detected" not in c.log()


# ------------------------------------------------------------ /metrics

def test_metrics_behind_a_trusted_proxy_is_served_to_any_client_of_the_proxy(make_cluster):
    """Behind a reverse proxy listed in webhook.trusted_proxies, the server
    takes the forwarded address as the client (allow-lists, rate limits,
    recorded address), and so does /metrics: a DBA who lists the network
    the proxy and Prometheus share must not serve the exposition (every
    tenant's workflow ids, i.e. URLs, and names) to whoever the proxy
    forwards."""
    c = make_cluster(conf={"webhook.workers": 1, "webhook.trusted_proxies": "127.0.0.1",
                           "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    c.sql("SELECT webhook_set_allowed_networks(%s, ARRAY['127.0.0.1/32']::cidr[])", (wf,))
    outsider = {"X-Forwarded-For": "203.0.113.9"}
    # Positive controls: the server believes the proxy that the client is
    # 203.0.113.9 (refused by the workflow's allow-list), while the proxy's own
    # request is admitted.
    assert hk.post(c, wf, json_body={"n": 1}).status_code == 200
    refused = hk.post(c, wf, json_body={"n": 2}, headers=outsider)
    assert (refused.status_code, refused.json()) == (403, {"msg": "Address not allowed"})
    assert scrape(c).status_code == 200
    # The attack: the same forwarded client reads /metrics.
    r = scrape(c, headers=outsider)
    assert r.status_code == 403, (
        f"/metrics answered {r.status_code} to a request the server attributes to 203.0.113.9 "
        f"(outside webhook.metrics_networks); it carries {wf}: {wf in r.text}")


def test_a_tenants_long_workflow_names_make_a_scrape_hold_up_every_tenants_requests(make_cluster):
    """webhook.workflows.name has no length limit (a tenant may UPDATE it,
    and the unique (owner, name) index takes any name that compresses below
    2,704 bytes: 230,000 repeated characters do). Every sample of /metrics
    repeats the name, and the main thread builds the snapshot and renders
    it: names are cut to 128 characters there, so that no tenant sets how
    long every scrape holds the main thread, which serves every tenant. Bar
    as in test_main_thread_budget.py: another tenant's request is never held
    up for a second."""
    c = make_cluster(conf={"webhook.workers": 1, "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    alice, mallory = make_tenant(c, uniq("alice")), make_tenant(c, uniq("mallory"))
    try:
        steady = alice.create_workflow(name="steady")
        # Positive control: a scrape of ordinary names is quick.
        t0 = time.monotonic()
        assert scrape(c).status_code == 200
        assert time.monotonic() - t0 < 0.5
        mallory.sql("DO $$ BEGIN FOR i IN 1..300 LOOP "
                    f"PERFORM webhook_create_workflow(i || repeat('a', 230000), '{mallory.handler}'::regproc); "
                    "END LOOP; END $$")
        stored = c.scalar("SELECT pg_total_relation_size('webhook.workflows')")

        stop = threading.Event()
        latencies: list[float] = []
        health: list[int] = []

        def send():
            with requests.Session() as s:
                while not stop.is_set():
                    t = time.monotonic()
                    r = s.post(c.hook_url(steady), json={"n": 1}, timeout=60)
                    assert r.status_code == 200, r.text
                    latencies.append(time.monotonic() - t)

        def probe():
            while not stop.is_set():
                health.append(requests.get(c.base_url + "/healthz", timeout=60).status_code)
                time.sleep(0.2)

        threads = [threading.Thread(target=send), threading.Thread(target=probe)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            r = scrape(c)
            took = time.monotonic() - t0
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert r.status_code == 200
        assert max(latencies) < 1.0, (
            f"mallory's 300 workflows ({stored} bytes of table) made one scrape take {took:.2f}s "
            f"({len(r.content)} bytes); alice's requests were held up to {max(latencies):.2f}s; "
            f"/healthz answered {sorted(set(health))}")
    finally:
        drop_tenants(c, [alice.name, mallory.name])


def test_a_tenants_workflow_names_can_switch_off_metrics_for_everyone(make_cluster):
    """The snapshot is one jsonb value (src/ingest/metrics.sql), which
    PostgreSQL caps at 256 MB: names adding up to more would make every
    scrape fail, and one tenant would blind the DBA's monitoring of all."""
    c = make_cluster(conf={"webhook.workers": 1, "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    mallory = make_tenant(c, uniq("mallory"))
    try:
        assert scrape(c).status_code == 200  # positive control
        mallory.sql("DO $$ BEGIN FOR i IN 1..1200 LOOP "
                    f"PERFORM webhook_create_workflow(i || repeat('a', 230000), '{mallory.handler}'::regproc); "
                    "END LOOP; END $$")
        r = scrape(c)
        errors = [l for l in c.log().splitlines() if "could not read its metrics" in l]
        assert r.status_code == 200, (
            f"/metrics answered {r.status_code} {r.text[:100]!r} after one tenant's 1,200 workflows "
            f"({c.scalar('SELECT pg_total_relation_size(%s)', ('webhook.workflows',))} bytes of table); "
            f"log: {[e[-160:] for e in errors]}")
    finally:
        drop_tenants(c, [mallory.name])


# ------------------------------------------------------------ what held

def test_a_tenant_can_neither_write_nor_lock_the_counters_and_its_open_transaction_holds_no_flush(make_cluster):
    """Checked and held: a tenant cannot INSERT, UPDATE, DELETE, TRUNCATE,
    lock beyond ACCESS SHARE, row-lock, reference or trigger
    webhook.workflow_counters; holding ACCESS SHARE and a snapshot open
    (REPEATABLE READ) while its own workflow's row is locked FOR UPDATE does
    not stop another tenant's counts from being flushed."""
    c = make_cluster(conf={"webhook.workers": 2})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    alice, mallory = make_tenant(c, uniq("alice")), make_tenant(c, uniq("mallory"))
    try:
        wf_a, wf_m = alice.create_workflow(), mallory.create_workflow()
        assert hk.post(c, wf_m, json_body={"n": 1}).status_code == 200
        hk.wait_for_value(lambda: mallory.scalar("SELECT accepted FROM webhook.workflow_stats"), 1,
                          timeout=10, what="mallory's count")
        writer = mallory.scalar("SELECT writer FROM webhook.workflow_counters LIMIT 1")
        for attack in (
                f"INSERT INTO webhook.workflow_counters (workflow_id, writer, accepted) VALUES ('{wf_m}', -1, 1)",
                "UPDATE webhook.workflow_counters SET accepted = accepted + 1",
                "DELETE FROM webhook.workflow_counters",
                "TRUNCATE webhook.workflow_counters",
                "DO $d$ BEGIN LOCK TABLE webhook.workflow_counters IN ROW EXCLUSIVE MODE; END $d$",
                "DO $d$ BEGIN LOCK TABLE webhook.workflow_counters IN SHARE MODE; END $d$",
                "SELECT * FROM webhook.workflow_counters FOR KEY SHARE",
                f"CREATE TABLE {mallory.name}.fk (w uuid, x int, FOREIGN KEY (w, x) "
                "REFERENCES webhook.workflow_counters (workflow_id, writer))",
                f"CREATE FUNCTION {mallory.name}.t() RETURNS trigger LANGUAGE plpgsql AS $t$ BEGIN RETURN NULL; END $t$; "
                f"CREATE TRIGGER t AFTER INSERT ON webhook.workflow_counters FOR EACH ROW EXECUTE FUNCTION {mallory.name}.t()"):
            mallory.error(attack, sqlstate="42501")
        assert mallory.scalar("SELECT count(*) FROM webhook.workflow_counters WHERE writer = %s", (writer,)) == 1
        held = mallory.connect(autocommit=False)
        try:
            held.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            held.execute("LOCK TABLE webhook.workflow_counters IN ACCESS SHARE MODE")
            held.execute("SELECT * FROM webhook.workflows WHERE id = %s FOR UPDATE", (wf_m,))
            held.execute("SELECT count(*) FROM webhook.workflow_stats").fetchall()
            for n in range(20):
                assert hk.post(c, wf_a, json_body={"n": n}).status_code == 200
            hk.wait_for_value(lambda: alice.scalar("SELECT accepted FROM webhook.workflow_stats"), 20,
                              timeout=5, what="alice's counts flushed while mallory holds her transaction")
        finally:
            held.rollback()
            held.close()
        assert "could not write its request counts" not in c.log()
    finally:
        drop_tenants(c, [alice.name, mallory.name])


def test_metrics_routing_and_peer_checks_hold(make_cluster):
    """Checked and held: /metrics?x is /metrics, /metrics/ and //metrics
    are not; HEAD and POST get 405 (after the network check); a peer outside
    the networks gets 403 whatever it forwards when no proxy is trusted; the
    listener on a dual-stack socket ([::]) sees IPv4 peers as
    ::ffff:127.0.0.1 and still matches 127.0.0.1/32; the exposition parses
    with prometheus_client whatever the name holds."""
    c = make_cluster(conf={"webhook.workers": 1, "webhook.listen_addresses": "*",
                           "webhook.metrics_networks": "127.0.0.1/32"})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    odd = 'q"uo\\te\n\r\t \u2028 €𝄞 ' + "x" * 5000
    c.sql("UPDATE webhook.workflows SET name = %s WHERE id = %s", (odd, wf))
    assert hk.post(c, wf, json_body={"n": 1}).status_code == 200
    hk.wait_for_value(lambda: c.scalar("SELECT accepted FROM webhook.workflow_stats WHERE workflow_id = %s",
                                       (wf,)), 1, timeout=10, what="count flushed")
    r = requests.get(c.base_url + "/metrics?x=1", timeout=10)
    assert r.status_code == 200
    found = samples(r.text)
    # The name as the label carries it: its first 128 characters.
    assert found[("webhook_requests_total", frozenset({"workflow": odd[:128], "workflow_id": wf,
                                                       "status": "accepted"}.items()))] == 1
    for path in ("/metrics/", "//metrics", "/Metrics", "/metrics%2F"):
        assert hk.request("GET", c.base_url + path).status == 404, path
    head = requests.head(c.base_url + "/metrics", timeout=10)
    assert (head.status_code, head.headers.get("allow")) == (405, "GET")
    # Over IPv6 loopback: outside 127.0.0.1/32, forwarding headers ignored.
    r6 = requests.get(f"http://[::1]:{c.http_port}/metrics", headers={"X-Forwarded-For": "127.0.0.1"},
                      timeout=10)
    assert r6.status_code == 403


# ------------------------------------------------------------ exact counts

BAD_NUMBER = b'{"n": 0e1073741823}'  # parses, but numeric_in refuses it: 400 "Request cannot be stored"


def fire(c, wf, i, tag):
    """Request i of a mix: every 10th from 3 a number PostgreSQL cannot store
    (it fails its batch's bulk insert), every 3rd keyed with a key shared by
    six consecutive requests (sent at once by different threads, so over
    different listeners), the rest plain."""
    kind = "bad" if i % 10 == 3 else "keyed" if i % 3 == 0 else "plain"
    headers = {"Content-Type": "application/json"}
    body = json.dumps({"i": i, "tag": tag}).encode()
    if kind == "keyed":
        headers["Idempotency-Key"] = f"{tag}-k{i // 6}"
        body = json.dumps({"k": i // 6}).encode()
    elif kind == "bad":
        body = BAD_NUMBER
    try:
        r = requests.post(c.hook_url(wf), data=body, headers=headers, timeout=30)
    except requests.RequestException:
        return kind, -1, None
    return kind, r.status_code, r.json().get("event_id") if r.status_code == 200 else None


def burst(c, wf, n, tag, threads=16):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: fire(c, wf, i, tag), range(n)))


def counted(c, wf) -> dict:
    return c.row("SELECT received, accepted, redelivered, refused FROM webhook.workflow_stats "
                 "WHERE workflow_id = %s", (wf,))


def test_accepted_and_redelivered_are_exact_under_load_with_three_listeners_and_a_fast_stop(make_cluster):
    """Checked and held: 3,000 concurrent requests over 3 listeners (plain,
    keyed with races over listeners, batches whose bulk insert fails), then
    1,500 more and `pg_ctl stop -m fast` at once: accepted is the number of
    events stored, redelivered the 200s answered from an earlier event."""
    c = make_cluster(conf={"webhook.workers": 3})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    c.wait_for_listeners(3)
    wf = hk.create_workflow(c)
    sent = burst(c, wf, 3000, "a")
    sent += burst(c, wf, 1500, "b")
    c.stop("fast")
    c.start()
    hk.wait_ready(c)
    codes = collections.Counter((kind, status) for kind, status, _ in sent)
    # A keyed request racing its twin on another listener may get 503 after
    # webhook.lock_timeout (nothing stored): allowed, and counted nowhere.
    assert set(codes) <= {("plain", 200), ("keyed", 200), ("keyed", 503), ("bad", 400)}, codes
    assert (codes[("plain", 200)], codes[("bad", 400)]) == (2700, 450), codes
    ids = [event_id for _, status, event_id in sent if status == 200]
    row = counted(c, wf)
    assert hk.count_events(c, wf) == len(set(ids))
    assert (row["accepted"], row["redelivered"]) == (len(set(ids)), len(ids) - len(set(ids))), row


def test_received_counts_refusals_of_rows_postgresql_would_not_store(make_cluster):
    """webhook.workflow_stats.received is accepted + redelivered + refused +
    handshakes. A request refused with 400 "Request cannot be stored" (a
    value PostgreSQL refuses) is a refusal like any other, counted under
    that message's head (never its detail, which a sender chooses); a 503
    because the workflow's row was locked past webhook.lock_timeout was only
    delayed, nothing was decided about it, and it is not counted."""
    c = make_cluster(conf={"webhook.workers": 1})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    wf = hk.create_workflow(c)
    keyed = hk.create_workflow(c)
    # Positive control: a refusal the listener always counted.
    assert requests.put(c.hook_url(wf), json={"n": 1}, timeout=10).status_code == 405
    assert hk.post(c, wf, json_body={"n": 1}).status_code == 200
    # Refused when the batch's events are stored together (no delivery key)...
    bad = requests.post(c.hook_url(wf), data=BAD_NUMBER, headers={"Content-Type": "application/json"},
                        timeout=10)
    assert (bad.status_code, bad.json()) == (400, {"msg": "Request cannot be stored: value overflows numeric format"})
    # ... and when stored on its own (a delivery key).
    bad_keyed = requests.post(c.hook_url(keyed), data=BAD_NUMBER,
                              headers={"Content-Type": "application/json", "Idempotency-Key": uniq("k")},
                              timeout=10)
    assert (bad_keyed.status_code, bad_keyed.json()) == (400, bad.json())
    held = c.connect(autocommit=False)
    try:
        held.execute("SELECT 1 FROM webhook.workflows WHERE id = %s FOR UPDATE", (wf,))
        busy = hk.post(c, wf, json_body={"n": 2})
    finally:
        held.rollback()
        held.close()
    assert (busy.status_code, busy.json()) == (503, {"msg": "Workflow busy, retry later"})
    expected = {"received": 3, "accepted": 1, "redelivered": 0, "refused": 2}
    hk.wait_for_value(lambda: counted(c, wf), expected, timeout=10, what="the workflow's counts")
    assert hk.rejection_counts(c, wf) == {(405, "Method not allowed"): 1, (400, "Request cannot be stored"): 1}
    hk.wait_for_value(lambda: hk.rejection_counts(c, keyed), {(400, "Request cannot be stored"): 1}, timeout=10,
                      what="the keyed workflow's refusal")
    assert c.scalar("SELECT count(*) FROM webhook.rejections WHERE workflow_id = %s AND status = 400",
                    (keyed,)) == 1


def test_an_immediate_stop_loses_at_most_the_last_second_of_accepted_counts(make_cluster):
    """Measured (holds the documented bound of request_counts.rs): after
    `pg_ctl stop -m immediate` under load, every answered 200 has its event,
    and accepted misses at most the events answered in the last flush
    interval (1 s, plus the time the flush itself takes); the loss is never
    made up later."""
    c = make_cluster(conf={"webhook.workers": 2})
    c.sql("CREATE EXTENSION webhook_ext")
    hk.wait_ready(c)
    c.wait_for_listeners(2)
    wf = hk.create_workflow(c)
    stop = threading.Event()
    answered: list[tuple[float, int]] = []

    def send(t):
        i = 0
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(c.hook_url(wf), json={"t": t, "i": i}, timeout=10)
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    answered.append((time.monotonic(), r.json()["event_id"]))
                i += 1

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    stopped_at = time.monotonic()
    c.stop("immediate")
    stop.set()
    for t in threads:
        t.join()
    c.start()
    hk.wait_ready(c)
    time.sleep(1.5)
    events = hk.count_events(c, wf)
    ids = {event_id for _, event_id in answered}
    assert ids <= set(r["id"] for r in c.rows("SELECT id FROM webhook.events WHERE workflow_id = %s", (wf,)))
    accepted = counted(c, wf)["accepted"]
    lost = events - accepted
    last_window = len({e for at, e in answered if at >= stopped_at - 1.5})
    rate = len(ids) / 3
    print(f"immediate stop: {events} events, accepted {accepted}, lost {lost} "
          f"({lost / rate:.2f} s of traffic at {rate:.0f}/s); answered in the last 1.5 s: {last_window}")
    assert 0 <= lost <= last_window + (events - len(ids)), (events, accepted, last_window)
    time.sleep(1.5)
    assert counted(c, wf)["accepted"] == accepted


# ------------------------------------------------------------ documentation

def test_the_documentation_describes_the_stats_and_the_metrics_endpoint():
    """The README's settings table (which test_settings.py's DEFAULTS follow)
    lists webhook.metrics_networks, docs/operations.md's Monitoring describes
    webhook.workflow_stats and /metrics, and docs/status.md no longer says
    they are missing."""
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "..")

    def read(path):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            return f.read()

    readme, operations, status = read("README.md"), read("docs/operations.md"), read("docs/status.md")
    assert "`webhook.trusted_proxies`" in readme  # positive control: how a setting is listed
    gaps = [what for what, missing in (
        ("README settings table: webhook.metrics_networks", "`webhook.metrics_networks`" not in readme),
        ("docs/operations.md: webhook.workflow_stats", "workflow_stats" not in operations),
        ("docs/operations.md: /metrics", "/metrics" not in operations),
        ("docs/status.md says there is no Prometheus /metrics", "no Prometheus `/metrics`" in status),
        ("docs/status.md says there is no stats view", "There is no stats" in status),
    ) if missing]
    assert gaps == []
