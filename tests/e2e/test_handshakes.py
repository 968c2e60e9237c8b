"""Providers' endpoint checks answered by the workflow itself
(webhook_set_handshake), byte for byte as each provider documents them, with
no event stored and the answer counted in webhook.handshakes; and
verification per method (Meta verifies its GET by `hub.verify_token`, its
POSTs by signature).

Each signed handshake is first shown reaching the handler as a plain request
without the opt-in (the attack path: without verification an echo would go to
anyone), then answered only when its signature or token is valid: a forged one
gets the workflow's 401 and no echo.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time

import requests

from corpuskit import Delivery, load, send
from hookkit import assert_rejection_counts, count_events, ready  # noqa: F401
from test_provider_verification import (ED25519_SECRET, discord, ed25519_public_hex, hex_hmac, twitch, zoom,
                                        Signed, send_signed)

INVALID_SIGNATURE = {"msg": "Invalid signature"}
TEXT = "text/plain; charset=utf-8"


def set_verification(c, wf, scheme, secret, for_method=None):
    c.sql("SELECT webhook_set_verification(%s, %s, secret => %s, for_method => %s)", (wf, scheme, secret, for_method))


def set_handshake(c, wf, kind):
    c.sql("SELECT webhook_set_handshake(%s, %s)", (wf, kind))


def handshakes(c, wf):
    return c.row("SELECT kind, answered, last_method, last_query FROM webhook.handshakes WHERE workflow_id = %s",
                 (wf,))


def wait_for_handshakes(c, wf, answered, timeout=5.0):
    """The count is written by the listener's main thread after the answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = handshakes(c, wf)
        if row is not None and row["answered"] == answered:
            return row
        time.sleep(0.05)
    raise AssertionError(f"handshakes of {wf}: {handshakes(c, wf)!r}, expected {answered} answered")


def answer_of(r):
    return r.status_code, r.headers.get("content-type"), r.content


def slack_signed(d: Delivery, secret: str, now: float) -> Delivery:
    out = copy.deepcopy(d)
    body = out.raw_body()
    ts = str(int(now))
    out.headers["X-Slack-Request-Timestamp"] = ts
    out.headers["X-Slack-Signature"] = "v0=" + hex_hmac(secret.encode(), f"v0:{ts}:".encode() + body)
    return out


def test_slack_url_verification(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("slack", "url_verification")
    set_verification(c, wf, "slack", "slack-signing-secret")
    # Without the opt-in it is a request like any other: stored.
    r = send(c, wf, slack_signed(d, "slack-signing-secret", time.time()))
    assert r.status_code == 200 and r.json()["msg"] == "success", r.text
    assert count_events(c, wf) == 1

    set_handshake(c, wf, "slack")
    r = send(c, wf, slack_signed(d, "slack-signing-secret", time.time()))
    assert answer_of(r) == (200, "application/json",
                            b'{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}')
    # A forged one gets no echo.
    r = send(c, wf, slack_signed(d, "another-secret", time.time()))
    assert (r.status_code, r.json()) == (401, INVALID_SIGNATURE)
    assert count_events(c, wf) == 1
    assert wait_for_handshakes(c, wf, 1) == {"kind": "slack", "answered": 1, "last_method": "POST",
                                             "last_query": None}
    assert_rejection_counts(c, wf, {(401, "Invalid signature: signature does not match"): 1})


def test_meta_verifies_get_by_token_and_post_by_signature(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("meta", "verification_request")
    set_verification(c, wf, "meta", "app-secret")
    set_handshake(c, wf, "meta")
    # No GET verification of its own: the GET needs the POST's signature.
    r = send(c, wf, d)
    assert (r.status_code, r.json()) == (401, INVALID_SIGNATURE)

    set_verification(c, wf, "meta-verify-token", "meatyhamhock", for_method="GET")
    r = send(c, wf, d)
    assert answer_of(r) == (200, TEXT, b"1158201444")
    wrong = copy.deepcopy(d)
    wrong.query = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess"
    r = send(c, wf, wrong)
    assert (r.status_code, r.json()) == (401, {"msg": "Invalid token"})
    # POSTs are still verified by signature and stored.
    post = load("meta", "whatsapp_text_message")
    body = post.raw_body()
    post.headers["X-Hub-Signature-256"] = "sha256=" + hex_hmac(b"app-secret", body)
    assert send(c, wf, post).status_code == 200
    post.headers["X-Hub-Signature-256"] = "sha256=" + hex_hmac(b"other", body)
    assert send(c, wf, post).status_code == 401
    assert count_events(c, wf) == 1
    row = wait_for_handshakes(c, wf, 1)
    assert (row["last_method"], row["last_query"]) == ("GET", d.query)

    # Dropping the GET's own verification puts it back under the POST's.
    c.sql("SELECT webhook_set_verification(%s, NULL, for_method => 'GET')", (wf,))
    assert send(c, wf, d).status_code == 401
    assert c.scalar("SELECT array_agg(method) FROM webhook.verifications WHERE workflow_id = %s", (wf,)) == ["*"]
    err = c.sql_error("SELECT webhook_set_verification(%s, 'meta', secret => 'x', for_method => 'PUT')", (wf,),
                      sqlstate="22023")
    assert err["message"] == "invalid verification: the method is GET or POST (or * for every method)"


def test_dropbox_challenge_is_echoed_with_nosniff(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("dropbox", "challenge")
    set_verification(c, wf, "dropbox", "app-secret")
    assert send(c, wf, d).status_code == 401
    set_handshake(c, wf, "dropbox")
    r = send(c, wf, d)
    assert answer_of(r) == (200, TEXT, b"abc123")
    assert r.headers["x-content-type-options"] == "nosniff"
    # A GET without a challenge is a request, verified as any.
    plain = copy.deepcopy(d)
    plain.query = None
    assert send(c, wf, plain).status_code == 401
    assert count_events(c, wf) == 0
    wait_for_handshakes(c, wf, 1)
    # A handshake is admitted like any request: the allow-list comes first.
    c.sql("SELECT webhook_set_allowed_networks(%s, ARRAY['10.0.0.0/8']::cidr[])", (wf,))
    r = send(c, wf, d)
    assert (r.status_code, r.json()) == (403, {"msg": "Address not allowed"})
    assert handshakes(c, wf)["answered"] == 1


def test_microsoft_graph_validation_token(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    set_handshake(c, wf, "msgraph")
    token = "Validation: Testing client application reachability for subscription Request-Id: 2546"
    r = requests.post(c.hook_url(wf), params={"validationToken": token},
                      headers={"Content-Type": "text/plain; charset=utf-8"}, timeout=10)
    assert answer_of(r) == (200, TEXT, token.encode())
    assert count_events(c, wf) == 0
    wait_for_handshakes(c, wf, 1)


def test_twitch_callback_verification_only_when_signed(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("twitch", "webhook_callback_verification")
    body = d.raw_body()
    set_verification(c, wf, "twitch", "twitch-secret-0123456789")
    set_handshake(c, wf, "twitch")
    r = send_signed(c, wf, d, twitch(d, body, "twitch-secret-0123456789", time.time(), ""))
    assert answer_of(r) == (200, TEXT, b"pogchamp-kappa-360noscope-vohiyo")
    r = send_signed(c, wf, d, twitch(d, body, "twitch-secret-9876543210", time.time(), ""))
    assert (r.status_code, r.json()) == (401, INVALID_SIGNATURE)
    assert count_events(c, wf) == 0
    wait_for_handshakes(c, wf, 1)


def test_zoom_url_validation_answers_the_encrypted_token(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("zoom", "url_validation")
    d.headers = {k: v for k, v in d.headers.items() if k.lower() not in ("x-zm-signature", "x-zm-request-timestamp")}
    body = d.raw_body()
    set_verification(c, wf, "zoom", "zoom-secret-token")
    set_handshake(c, wf, "zoom")
    r = send_signed(c, wf, d, zoom(d, body, "zoom-secret-token", time.time(), ""))
    expected = hmac.new(b"zoom-secret-token", b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    assert answer_of(r) == (200, "application/json",
                            json.dumps({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected},
                                       separators=(",", ":")).encode())
    r = send_signed(c, wf, d, zoom(d, body, "not-the-token", time.time(), ""))
    assert (r.status_code, r.json()) == (401, INVALID_SIGNATURE)
    assert count_events(c, wf) == 0
    wait_for_handshakes(c, wf, 1)


def test_discord_ping_only_when_signed(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = load("discord", "ping")
    d.headers = {"Content-Type": "application/json"}
    body = d.raw_body()
    set_verification(c, wf, "discord", ed25519_public_hex(ED25519_SECRET))
    set_handshake(c, wf, "discord")
    r = send_signed(c, wf, d, discord(d, body, ED25519_SECRET.hex(), time.time(), ""))
    assert answer_of(r) == (200, "application/json", b'{"type":1}')
    # Discord sends bad signatures on purpose: they must get 401.
    r = send_signed(c, wf, d, discord(d, body, bytes(range(32)).hex(), time.time(), ""))
    assert (r.status_code, r.json()) == (401, INVALID_SIGNATURE)
    # Other interactions are requests like any other.
    command = load("discord", "application_command_slash")
    command.headers = {"Content-Type": "application/json"}
    signed = discord(command, command.raw_body(), ED25519_SECRET.hex(), time.time(), "")
    assert send_signed(c, wf, command, signed).status_code == 200
    assert count_events(c, wf) == 1
    wait_for_handshakes(c, wf, 1)
    err = c.sql_error("SELECT webhook_set_handshake(%s, 'stripe')", (wf,), sqlstate="22023")
    assert err["message"] == "unknown handshake (one of slack, meta, msgraph, dropbox, twitch, zoom, discord)"
    set_handshake(c, wf, None)
    assert send_signed(c, wf, d, discord(d, body, ED25519_SECRET.hex(), time.time(), "")).status_code == 200
    assert count_events(c, wf) == 2
