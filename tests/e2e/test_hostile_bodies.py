"""Hostile bodies: every worst-case body of every supported type (1 MB each,
max_body_size 1MB) gets its exact expected answer, both at a real workflow
and at one that does not exist (404 for every body: nothing is read for it),
while a second client keeps sending good requests to the same listener
process; every good request is answered 200 and its event row exists. A body
whose parsed values would take more than 32 times its decoded size (plus
1 MiB) is refused before they are built.

The corpus mirrors crates/webhook_core/src/body/worst_case.rs (whose unit tests
check the parse outcomes and whose example times them). Parsing runs on the
listener's blocking pool, so one hostile body must not hold up the others:
the one timing check here is that no good request took 2 s or more.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib

import pytest

import hookkit as hk
from hookkit import settle
from conftest import Cluster, uniq

SIZE = 1024 * 1024
MISSING = "00000000-0000-4000-8000-000000000000"
BOUNDARY = "worstcaseboundary"
TOO_LARGE = {"msg": "Request body too large", "limit_bytes": SIZE}
WORKFLOW_NOT_FOUND = {"msg": "Workflow not found"}


def too_many_values(decoded_len: int) -> tuple[int, dict]:
    """The answer to a body whose parsed values would pass their allowance:
    32 bytes of memory per decoded byte, plus 1 MiB."""
    allowance = 32 * decoded_len + 1024 * 1024
    return 413, {"msg": f"Request body too large: its parameters would take more than {allowance} bytes of memory"}
GOOD_LATENCY_LIMIT = 2.0


# ----------------------------------------------------------------- corpus
def repeat_list(open_: str, item: str, sep: str, close: str, size: int = SIZE) -> bytes:
    """``open item sep item … close`` in UTF-8, at most ``size`` bytes."""
    o, i, s, c = (x.encode() for x in (open_, item, sep, close))
    n = max(0, (size - len(o) - len(c) + len(s)) // (len(i) + len(s)))
    return o + s.join([i] * n) + c


def numbered_list(open_: str, prefix: str, suffix: str, sep: str, close: str, size: int = SIZE) -> bytes:
    out, length, n = [], len(open_) + len(close), 0
    while True:
        item = f"{prefix}{n}{suffix}"
        extra = len(item) + (len(sep) if n else 0)
        if length + extra > size:
            break
        out.append(item)
        length += extra
        n += 1
    return (open_ + sep.join(out) + close).encode()


def entity_bomb() -> bytes:
    parts, n = ['<!DOCTYPE r [<!ENTITY e0 "lol">'], 1
    length = len(parts[0])
    while length + 200 < SIZE:
        p = n - 1
        decl = f'<!ENTITY e{n} "&e{p};&e{p};&e{p};&e{p};&e{p};">'
        parts.append(decl)
        length += len(decl)
        n += 1
    parts.append(f"]><r>&e{n - 1};</r>")
    return "".join(parts).encode()


def unknown_entity_message(body: bytes) -> str:
    """The answer to ``entity_bomb()``: its one reference, the last entity."""
    at = body.rindex(b"&e")
    name = body[at:body.index(b";", at) + 1].decode()
    return (f"Invalid XML body: unknown entity {name} at byte {at} "
            "(only the predefined XML entities are supported)")


def multipart_parts() -> bytes:
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'.encode()
    count = (SIZE - 100) // len(part)
    return part * count + f"--{BOUNDARY}--\r\n".encode()


def multipart_near_boundaries() -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n\r\n').encode()
    near = f"\r\n--{BOUNDARY[:-1]}".encode()
    end = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + near * ((SIZE - len(head) - len(end)) // len(near)) + end


def duplicate_attribute_last() -> bytes:
    return numbered_list("<r ", "a", '="1"', " ", "", SIZE - 16) + b' a0="2"/>'


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
XML = {"Content-Type": "application/xml"}
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

# name -> (headers, body, answer at a real workflow, answer at a missing one).
# An answer is (status, exact JSON body) or (status, exact msg).
CORPUS = {
    "json_huge_exponents": (JSON, repeat_list("[", "1e1000", ",", "]"), (413, TOO_LARGE), (404, WORKFLOW_NOT_FOUND)),
    "json_exponent_out_of_numeric_range": (
        JSON, b"[1e999999999]",
        (400, {"msg": "Invalid JSON body: number 1e+999999999 is out of range"}), (404, WORKFLOW_NOT_FOUND)),
    "json_many_keys": (JSON, numbered_list("{", '"k', '":0', ",", "}"), 200, (404, WORKFLOW_NOT_FOUND)),
    "json_duplicate_keys": (JSON, repeat_list("{", '"a":1', ",", "}"),
                            too_many_values(len(repeat_list("{", '"a":1', ",", "}"))), (404, WORKFLOW_NOT_FOUND)),
    "json_deep_nesting": (JSON, b"[" * SIZE,
                          (400, "Invalid JSON body: recursion limit exceeded at line 1 column 128"),
                          (404, WORKFLOW_NOT_FOUND)),
    "json_escaped_strings": (JSON, repeat_list("[", '"\\u00e9\\n"', ",", "]"), 200, (404, WORKFLOW_NOT_FOUND)),
    "form_repeated_key": (FORM, repeat_list("", "a=1", "&", ""),
                          too_many_values(len(repeat_list("", "a=1", "&", ""))), (404, WORKFLOW_NOT_FOUND)),
    "form_many_keys": (FORM, numbered_list("", "k", "=", "&", ""),
                       too_many_values(len(numbered_list("", "k", "=", "&", ""))), (404, WORKFLOW_NOT_FOUND)),
    "form_empty_pairs": (FORM, b"&" * SIZE, 200, (404, WORKFLOW_NOT_FOUND)),
    "form_percent_escapes": (FORM, repeat_list("a=", "%C3%A9", "", ""), 200, (404, WORKFLOW_NOT_FOUND)),
    "multipart_too_many_parts": (
        MULTIPART, multipart_parts(),
        (413, {"msg": "Too many multipart parts: more than 1000"}),
        (404, WORKFLOW_NOT_FOUND)),
    "multipart_boundary_prefixes": (MULTIPART, multipart_near_boundaries(), 200, (404, WORKFLOW_NOT_FOUND)),
    "text_shift_jis": ({"Content-Type": "text/plain; charset=shift_jis"},
                       repeat_list("", "\u3042x", "", ""), 200, (404, WORKFLOW_NOT_FOUND)),
    "xml_many_attributes": (XML, numbered_list("<r ", "a", '="1"', " ", "/>"), 200, (404, WORKFLOW_NOT_FOUND)),
    "xml_duplicate_attribute_last": (XML, duplicate_attribute_last(),
                                     (400, "Invalid XML body: duplicate attribute a0 (in the tag at byte 0)"),
                                     (404, WORKFLOW_NOT_FOUND)),
    "xml_many_repeated_siblings": (XML, repeat_list("<r>", "<a>1</a>", "", "</r>"), 200, (404, WORKFLOW_NOT_FOUND)),
    "xml_many_distinct_siblings": (XML, numbered_list("<r>", "<a", "/>", "", "</r>"),
                                   too_many_values(len(numbered_list("<r>", "<a", "/>", "", "</r>"))),
                                   (404, WORKFLOW_NOT_FOUND)),
    "xml_deep_nesting": (XML, repeat_list("", "<a>", "", ""),
                         (400, {"msg": "Invalid XML body: nesting deeper than 128 levels"}),
                         (404, WORKFLOW_NOT_FOUND)),
    "xml_many_entities": (XML, repeat_list("<r>", "&amp;&#x1F600;", "", "</r>"), 200, (404, WORKFLOW_NOT_FOUND)),
    "xml_mixed_text_and_comments": (XML, repeat_list("<r>", "x<!--c-->", "", "</r>"), 200,
                                    (404, WORKFLOW_NOT_FOUND)),
    "xml_entity_declarations": (XML, entity_bomb(), (400, unknown_entity_message(entity_bomb())),
                                (404, WORKFLOW_NOT_FOUND)),
    "gzip_bomb": ({**JSON, "Content-Encoding": "gzip"}, gzip.compress(b"0" * (100 * SIZE), 9),
                  (413, TOO_LARGE), (404, WORKFLOW_NOT_FOUND)),
    "deflate_form_many_keys": ({**FORM, "Content-Encoding": "deflate"},
                               zlib.compress(numbered_list("", "k", "=", "&", "")),
                               too_many_values(len(numbered_list("", "k", "=", "&", ""))),
                               (404, WORKFLOW_NOT_FOUND)),
}


# --------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hostile(e2e_root):
    """One listener process (so hostile and good requests share it) and the
    default 1MB body limit, stated explicitly."""
    from conftest import _require_extension_installed
    _require_extension_installed()
    c = Cluster(e2e_root, preload=True, name=uniq("hostile"), conf={
        "webhook.workers": 1,
        "webhook.max_body_size": "1MB",
    })
    try:
        c.start()
        c.sql("CREATE EXTENSION webhook_ext")
        handler, table = hk.create_side_handler(c)
        wf = hk.create_workflow(c, handler)
        hk.wait_for_value(lambda: getattr(hk.try_request("GET", c.hook_url(wf)), "status", None), 200,
                          timeout=30, what="hostile cluster serving")
        yield {"cluster": c, "wf": wf, "table": table}
    finally:
        c.destroy()


def check_answer(reply: hk.Reply, expected, wf_id: str, name: str) -> None:
    if expected == 200:
        hk.assert_success(reply, wf_id)
        return
    status, body = expected
    assert reply.status == status, (name, reply)
    if isinstance(body, dict):
        assert reply.json() == body, (name, reply)
    else:
        assert reply.json() == {"msg": body}, (name, reply)


class GoodTraffic:
    """A thread sending small good POSTs until stopped, recording each answer
    and how long it took."""

    def __init__(self, cluster, wf_id: str):
        self.cluster, self.wf_id = cluster, wf_id
        self.stop = threading.Event()
        self.results: list[tuple[int, float, hk.Reply | Exception]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 100_000:
            t0 = time.monotonic()
            try:
                reply = hk.post_url(self.cluster.hook_url(self.wf_id), {"good": n}, timeout=30)
            except Exception as e:  # noqa: BLE001  (recorded and asserted on)
                reply = e
            self.results.append((n, time.monotonic() - t0, reply))
            n += 1
            time.sleep(0.02)

    def __enter__(self) -> "GoodTraffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "good traffic thread did not stop"


# ------------------------------------------------------------------ tests
def test_corpus_sizes_match_the_limit():
    for name, (_, body, _, _) in CORPUS.items():
        assert len(body) <= SIZE, name
    # Positive control of the compressed entries: the bomb inflates far past
    # the limit, and the deflated form still inflates to a worst-case body.
    assert len(gzip.decompress(CORPUS["gzip_bomb"][1])) == 100 * SIZE
    inflated = zlib.decompress(CORPUS["deflate_form_many_keys"][1])
    assert SIZE - 16 < len(inflated) <= SIZE and inflated == numbered_list("", "k", "=", "&", "")


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_body_gets_its_answer_while_good_requests_flow(hostile, name):
    c, wf = hostile["cluster"], hostile["wf"]
    headers, body, at_real, at_missing = CORPUS[name]
    before = hk.count_events(c, wf)
    with GoodTraffic(c, wf) as good:
        # Let good traffic start, then send the hostile body to both workflows.
        hk.wait_until(lambda: len(good.results), until=lambda n: n >= 2, timeout=10, what="good traffic started")
        real = hk.post_url(c.hook_url(wf), body, headers=dict(headers), timeout=60)
        missing = hk.post_url(c.hook_url(MISSING), body, headers=dict(headers), timeout=60)
        # Some good requests after the hostile ones, too.
        count = len(good.results)
        hk.wait_until(lambda: len(good.results), until=lambda n: n >= count + 2, timeout=10,
                      what="good traffic continued")
    check_answer(real, at_real, wf, name)
    check_answer(missing, at_missing, wf, name)

    errors = [(n, r) for n, _, r in good.results if not isinstance(r, hk.Reply) or r.status != 200]
    assert not errors, errors[:5]
    ids = [hk.assert_success(r, wf)["event_id"] for _, _, r in good.results]
    rows = c.rows("SELECT id, params FROM webhook.events WHERE id = ANY(%s) ORDER BY id", (ids,))
    assert [r["id"] for r in rows] == sorted(ids)
    by_id = {r["id"]: r["params"] for r in rows}
    for (n, _, reply) in good.results:
        assert by_id[reply.json()["event_id"]] == {"good": n}
    slowest = max(latency for _, latency, _ in good.results)
    assert slowest < GOOD_LATENCY_LIMIT, f"a good request took {slowest:.2f}s"

    stored_hostile = 1 if at_real == 200 else 0
    assert hk.count_events(c, wf) == before + len(good.results) + stored_hostile
    settle(c)
    assert c.scalar(f"SELECT count(*) FROM {hostile['table']}") == hk.count_events(c, wf)
    assert hk.count_events(c, MISSING) == 0
