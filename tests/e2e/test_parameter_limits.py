"""A workflow's parameter list is bounded: at most 1,000 parameters (body,
query and header together), names of at most 256 bytes, a parameter required
for at most 100 event types of at most 256 bytes. The API functions and the
table itself (a tenant may write webhook.parameters directly) refuse more with
SQLSTATE 54000 and change nothing; a captured request over the limits gets
413. Every request is checked against the whole list on the listener's main
thread, which stores every tenant's requests: a tenant sending requests that
miss all 1,000 of its required parameters does not hold up another tenant.

alice and bob are non-superuser webhook_admin tenants on a private cluster
with one listener process.
"""

import json
import threading
import time

import psycopg
import pytest
import requests

from hookkit import assert_rejection_counts, count_events, post, wait_for_value
from tenantkit import private, tenants_fixture  # noqa: F401  (fixtures)

tenants = tenants_fixture("alice", "bob")

LIMIT = 1000
TOO_MANY = "a workflow may have at most 1000 parameters"
NAME_TOO_LONG = "parameter names may be at most 256 bytes"
TOO_MANY_EVENTS = "a parameter may be required for at most 100 event types"
EVENT_TOO_LONG = "event types may be at most 256 bytes"
MISSING = "Missing required parameter(s)"

# Parameters numbered first..last, in that list order (position); their names
# count down (p09999, p09998, ...) so that list order is not name order.
FILL = ("INSERT INTO webhook.parameters (workflow_id, name, source, type, required, position) "
        "SELECT %s, 'p' || lpad((10000 - i)::text, 5, '0'), %s, 'text', %s, i "
        "FROM generate_series(%s::int, %s::int) i")


def names(first: int, last: int) -> list[str]:
    return [f"p{10000 - i:05d}" for i in range(first, last + 1)]


def fill(tenant, wf, first: int, last: int, source: str = "body", required: bool = True) -> None:
    tenant.sql(FILL, (wf, source, required, first, last))


def param_list(tenant, wf) -> list[dict]:
    return tenant.rows("SELECT name, source, required, required_for FROM webhook.parameters "
                       "WHERE workflow_id = %s ORDER BY source, position", (wf,))


def too_many(err: dict, wf: str, total: int) -> None:
    assert err["message"] == TOO_MANY, err
    assert err["detail"] == f"Workflow {wf} would have {total} (body, query and header parameters together).", err
    assert err["hint"].startswith("Drop parameters it does not need with webhook_drop_parameter()"), err


def test_direct_inserts_are_held_to_1000_parameters_per_workflow(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    # Positive control: 1,000 in one statement is the limit, not over it.
    fill(alice, wf, 1, LIMIT)
    before = param_list(alice, wf)
    assert [p["name"] for p in before] == names(1, LIMIT)

    # One more, in any source, alone or with others: refused, nothing changes.
    too_many(alice.error(FILL, (wf, "body", True, LIMIT + 1, LIMIT + 1), sqlstate="54000"), wf, LIMIT + 1)
    too_many(alice.error(FILL, (wf, "header", False, 1, 1), sqlstate="54000"), wf, LIMIT + 1)
    too_many(alice.error(FILL, (wf, "query", False, 1, 500), sqlstate="54000"), wf, LIMIT + 500)
    assert param_list(alice, wf) == before

    # A fresh workflow: 1,001 in one statement fails whole.
    other = alice.create_workflow(name="other")
    too_many(alice.error(FILL, (other, "body", True, 1, LIMIT + 1), sqlstate="54000"), other, LIMIT + 1)
    assert param_list(alice, other) == []


def test_the_api_holds_a_workflow_to_1000_parameters(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    from_json = "SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)"
    sample = {f"k{i:04d}": i for i in range(LIMIT)}
    # Positive control: a sample of 1,000 top-level keys.
    assert alice.scalar(from_json, (wf, json.dumps(sample))) == LIMIT
    before = param_list(alice, wf)

    # One key more, or 1,000 leaves under one key (1,001 with it): refused,
    # never cut short, and the list stays as it was.
    for over in ({**sample, "k1000": 1}, {"o": {f"k{i:04d}": i for i in range(LIMIT)}}):
        too_many(alice.error(from_json, (wf, json.dumps(over)), sqlstate="54000"), wf, LIMIT + 1)
    pairs = "\n".join(f"k{i}={i}" for i in range(LIMIT + 1))
    too_many(alice.error("SELECT count(*) FROM webhook_sample_from_kv(%s, %s)", (wf, pairs), sqlstate="54000"),
             wf, LIMIT + 1)
    add_header = "SELECT count(*) FROM webhook_add_parameter(%s, 'x-topic', 'header')"
    too_many(alice.error(add_header, (wf,), sqlstate="54000"), wf, LIMIT + 1)
    assert param_list(alice, wf) == before

    # With room made, the header parameter fits; the sources count together,
    # so the 1,000-key body sample no longer does.
    alice.sql("SELECT count(*) FROM webhook_drop_parameter(%s, 'k0999')", (wf,))
    assert alice.scalar(add_header, (wf,)) == LIMIT
    too_many(alice.error(from_json, (wf, json.dumps(sample)), sqlstate="54000"), wf, LIMIT + 1)
    assert alice.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s", (wf,)) == LIMIT


def test_names_and_event_lists_are_bounded_through_the_api_and_on_the_table(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    alice.sql("SELECT id FROM webhook_set_discriminator(%s, 'header', 'x-event')", (wf,))
    add = "SELECT count(*) FROM webhook_add_parameter(%s, %s)"
    insert = ("INSERT INTO webhook.parameters (workflow_id, name, source, type, position, required_for) "
              "VALUES (%s, %s, 'body', 'text', 100, %s)")

    # Names: 256 bytes is the limit, in bytes, not characters; a nested
    # leaf's name is its whole dotted path.
    at, accented = "n" * 256, "é" * 128
    assert alice.scalar(add, (wf, at)) == 1
    assert alice.scalar(add, (wf, accented)) == 2
    for over, detail in (("n" * 257, f"The name beginning '{'n' * 32}' is 257 bytes long."),
                         ("é" * 128 + "x", f"The name beginning '{'é' * 32}' is 257 bytes long.")):
        for query, args in ((add, (wf, over)), (insert, (wf, over, None)),
                            ("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)",
                             (wf, json.dumps({"a": 1, over: 2})))):
            err = alice.error(query, args, sqlstate="54000")
            assert (err["message"], err["detail"]) == (NAME_TOO_LONG, detail), query
            assert err["hint"] == "A nested leaf is named by its whole dotted path, e.g. customer.address.zip."
    err = alice.error("SELECT count(*) FROM webhook_sample_from_json(%s, %s::jsonb)",
                      (wf, json.dumps({"a": {"n" * 255: 1}})), sqlstate="54000")
    assert err["message"] == NAME_TOO_LONG

    # Event types: 100 of 256 bytes at most.
    required = "SELECT count(*) FROM webhook_set_required(%s, %s, true, %s)"
    events = [f"event_{i}" for i in range(99)] + ["e" * 256]
    assert alice.scalar(required, (wf, [at], events)) == 2
    before = param_list(alice, wf)
    assert before[0]["required_for"] == events
    long_detail = f"The one beginning '{'e' * 32}' is 257 bytes long."
    update = "UPDATE webhook.parameters SET required_for = %s WHERE workflow_id = %s"
    for over, message, detail in ((events + ["one_more"], TOO_MANY_EVENTS, "101 were given."),
                                  (events[:99] + ["e" * 257], EVENT_TOO_LONG, long_detail)):
        for query, args in ((required, (wf, [at], over)), (update, (over, wf)), (insert, (wf, "x", over))):
            err = alice.error(query, args, sqlstate="54000")
            assert (err["message"], err["detail"]) == (message, detail), query
            assert err["hint"].startswith("A pattern ending in * matches every event type that begins with it")
    assert param_list(alice, wf) == before


@pytest.mark.parametrize("isolation, sqlstate", [("READ COMMITTED", "54000"), ("REPEATABLE READ", "40001")])
def test_concurrent_inserts_cannot_pass_the_limit_together(private, tenants, isolation, sqlstate):
    """Each transaction alone stays within the limit: the second one waits for
    the first's hold on the workflow row and then sees its rows (READ
    COMMITTED), or fails to serialize (REPEATABLE READ, whose snapshot was
    taken before the first committed)."""
    alice = tenants["alice"]
    wf = alice.create_workflow()
    count = "SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s"
    errors: list[str | None] = []
    with alice.connect() as one, alice.connect() as two:
        for conn in (one, two):
            conn.execute(f"BEGIN ISOLATION LEVEL {isolation}")
            assert conn.execute(count, (wf,)).fetchone()[0] == 0
        one.execute(FILL, (wf, "body", True, 1, 600))

        def second():
            try:
                two.execute(FILL, (wf, "body", True, 601, 1200))
                two.execute("COMMIT")
                errors.append(None)
            except psycopg.Error as e:
                errors.append(e.diag.sqlstate)
                two.execute("ROLLBACK")

        t = threading.Thread(target=second)
        t.start()
        wait_for_value(lambda: private.scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                                              "AND wait_event_type = 'Lock'", (alice.name,)), 1,
                       10, what="the second transaction waits for the first")
        one.execute("COMMIT")
        t.join(20)
    assert errors == [sqlstate]
    assert alice.scalar(count, (wf,)) == 600


def required_list(tenant, wf) -> list[str]:
    """1,000 required body parameters (the limit); their names in list order."""
    fill(tenant, wf, 1, LIMIT)
    return names(1, LIMIT)


def test_a_request_missing_all_1000_required_parameters_is_told_each_in_list_order(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    expected = required_list(alice, wf)
    assert expected[:2] == ["p09999", "p09998"]
    r = post(private, wf, json_body={})
    assert r.status_code == 400, r.text
    assert r.json() == {"msg": MISSING, "missing": expected}
    # Positive control: with every one present, the request is accepted.
    r = post(private, wf, json_body={name: "x" for name in expected})
    assert r.status_code == 200, r.text
    assert count_events(private, wf) == 1


def test_a_tenant_at_the_parameter_limit_does_not_hold_up_another(private, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    wa, wb = alice.create_workflow(), bob.create_workflow()
    expected = required_list(alice, wa)
    # Both workflows answer as they should before the load.
    first = post(private, wa, json_body={})
    assert (first.status_code, first.json()) == (400, {"msg": MISSING, "missing": expected})
    warm = post(private, wb, json_body={"n": -1})
    assert warm.status_code == 200, warm.text

    until = time.monotonic() + 3.0
    alice_answers: list[tuple[int, int]] = []  # (status, number of missing names)
    bob_answers: list[tuple[int, float, int | None]] = []  # (status, seconds, event id)
    lock = threading.Lock()

    def alice_sends():
        with requests.Session() as s:
            while time.monotonic() < until:
                r = post(private, wa, json_body={}, session=s)
                missing = len(r.json().get("missing", [])) if r.status_code == 400 else 0
                with lock:
                    alice_answers.append((r.status_code, missing))

    def bob_sends():
        with requests.Session() as s:
            n = 0
            while time.monotonic() < until:
                started = time.monotonic()
                r = post(private, wb, json_body={"n": n}, session=s)
                took = time.monotonic() - started
                event_id = r.json().get("event_id") if r.status_code == 200 else None
                bob_answers.append((r.status_code, took, event_id))
                n += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=alice_sends) for _ in range(4)] + [threading.Thread(target=bob_sends)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    slowest = max(took for _, took, _ in bob_answers)
    print(f"alice: {len(alice_answers)} requests; bob: {len(bob_answers)} requests, slowest {slowest:.3f} s")
    # Positive control: alice's requests reached the listener and were each
    # checked against her whole list (every one counted as refused there).
    assert len(alice_answers) >= 20
    assert set(alice_answers) == {(400, LIMIT)}
    assert_rejection_counts(private, wa, {(400, MISSING): len(alice_answers) + 1})
    assert count_events(private, wa) == 0
    # bob's requests were answered promptly, and every one was stored.
    assert len(bob_answers) >= 10
    assert {status for status, _, _ in bob_answers} == {200}
    assert slowest < 1.0
    stored = private.sql("SELECT id FROM webhook.events WHERE workflow_id = %s ORDER BY id", (wb,))
    assert [r[0] for r in stored] == [warm.json()["event_id"]] + [event_id for _, _, event_id in bob_answers]


def test_a_captured_request_over_the_limits_is_refused_and_the_capture_stays_armed(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    assert alice.scalar("SELECT state FROM webhook_capture_sample(%s)", (wf,)) == "waiting"
    over = {f"k{i:04d}": i for i in range(LIMIT + 1)}
    r = post(private, wf, json_body=over)
    assert (r.status_code, r.json()) == (413, {"msg": "Sample has more than 1000 parameters"})
    r = post(private, wf, json_body={"a": {"n" * 255: 1}})
    assert (r.status_code, r.json()) == (413, {"msg": "Sample has a parameter name longer than 256 bytes"})
    assert alice.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,)) == "waiting"
    assert param_list(alice, wf) == []
    assert_rejection_counts(private, wf, {(413, "Sample has more than 1000 parameters"): 1,
                                          (413, "Sample has a parameter name longer than 256 bytes"): 1})

    # Positive control: a request within the limits (with the few headers
    # every request has) is the sample.
    r = post(private, wf, json_body={f"k{i:04d}": i for i in range(990)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["msg"] == "Sample captured"
    assert (body["parameters"]["body"], body["parameters"]["query"]) == (990, 0)
    total = 990 + body["parameters"]["header"]
    assert total <= LIMIT
    assert len(param_list(alice, wf)) == total
    assert alice.scalar("SELECT state FROM webhook_capture_status(%s)", (wf,)) == "captured"


def test_a_capture_that_fits_replaces_a_large_list_whatever_the_order(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow(name="recaptured")
    fill(alice, wf, 1, 900)  # 900 body parameters, from before
    assert alice.scalar("SELECT state FROM webhook_capture_sample(%s)", (wf,)) == "waiting"
    # 200 query parameters and 50 body ones: 250 and the headers in the end,
    # but 1,100 and more had the query list been replaced before the body's.
    query = {f"q{i:03d}": "v" for i in range(200)}
    r = post(private, wf, json_body={f"b{i:02d}": i for i in range(50)}, params=query)
    assert r.status_code == 200, r.text
    counts = r.json()["parameters"]
    assert (r.json()["msg"], counts["body"], counts["query"]) == ("Sample captured", 50, 200)
    rows = param_list(alice, wf)
    assert len(rows) == 250 + counts["header"]
    assert sorted(p["name"] for p in rows if p["source"] == "body") == [f"b{i:02d}" for i in range(50)]
