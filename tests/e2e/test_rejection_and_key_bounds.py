"""The rejection log and delivery keys stay bounded:
reasons that echo the request do not add count rows, and a numeric delivery key
longer than 512 bytes is no key."""

import random

from hookkit import post, wait_for_value
from tenantkit import private_cluster_fixture, tenants_fixture

private = private_cluster_fixture(**{"webhook.rejections_kept": 5})
tenants = tenants_fixture("alice", "bob")




def test_rejection_counts_are_bounded_when_the_reason_echoes_client_input(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    counted = ("SELECT status, reason, count FROM webhook.rejection_counts WHERE workflow_id = %s "
               "ORDER BY reason")
    # Positive control: the same malformed body twice is one counted reason.
    for _ in range(2):
        assert post(private, wf, b"{broken", headers={"Content-Type": "application/json"}).status_code == 400
    wait_for_value(lambda: private.rows(counted, (wf,)), [
        {"status": 400, "reason": "Invalid JSON body", "count": 2}], 5, what="two rejections counted")
    # An anonymous client varies the echoed part of the message.
    n = 60
    answers = []
    for i in range(n):
        for body, ctype in ((('{"a": 1e%d}' % (200000 + i)).encode(), "application/json"),
                            ((" " * i + "{x").encode(), "application/json"),
                            (("<r>&e%d;</r>" % i).encode(), "application/xml")):
            r = post(private, wf, body, headers={"Content-Type": ctype})
            assert r.status_code == 400, r.text
            answers.append(r.json()["msg"])
    # Positive control: every one of the 180 answers echoes its request (so a
    # count per message would be a row per request) ...
    assert len(set(answers)) == 3 * n, answers
    assert {a.split(": ", 1)[0] for a in answers} == {"Invalid JSON body", "Invalid XML body"}
    # ... and so does the kept log of refused requests (trimmed to 5).
    kept = private.rows("SELECT reason FROM webhook.rejections WHERE workflow_id = %s", (wf,))
    assert len({r["reason"] for r in kept}) == 5 and {r["reason"] for r in kept} <= set(answers), kept
    # The counts stay one row per status and category (the message before ": ").
    wait_for_value(lambda: private.rows(counted, (wf,)), [
        {"status": 400, "reason": "Invalid JSON body", "count": 2 + 2 * n},
        {"status": 400, "reason": "Invalid XML body", "count": n}], 5, what="every rejection counted")


def test_numeric_body_key_longer_than_max_key_bytes_is_no_key(private, tenants):
    alice = tenants["alice"]
    wf = alice.create_workflow()
    alice.sql("SELECT webhook_set_delivery_key(%s, 'body', 'id', '1 day')", (wf,))

    def twice(body: bytes) -> list[int]:
        ids = []
        for _ in range(2):
            r = post(private, wf, body, headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["event_id"])
        return ids

    rnd = random.Random(7)
    number = lambda n: "9" + "".join(rnd.choice("0123456789") for _ in range(n - 1))
    # Positive controls: a short numeric key dedups, and so does one of
    # exactly 512 digits (the longest key kept).
    short = twice(b'{"id": 12345}')
    assert short[0] == short[1], short
    longest = twice(('{"id": %s}' % number(512)).encode())
    assert longest[0] == longest[1], longest
    # A 600-char string key is "no key at all": both stored.
    string = twice(('{"id": "%s"}' % ("7" * 600)).encode())
    assert string[0] != string[1], string
    # The same for numbers of 513 and 5000 digits (arbitrary_precision keeps them all).
    for digits in (513, 5000):
        ids = twice(('{"id": %s}' % number(digits)).encode())
        assert ids[0] != ids[1], (digits, ids)
    keys = private.rows("SELECT length(key) AS n FROM webhook.deliveries WHERE workflow_id = %s ORDER BY 1", (wf,))
    assert keys == [{"n": 5}, {"n": 512}], keys
    assert private.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == 8
