"""Every provider preset of webhook_set_verification, over real HTTP, with the
provider's published example delivery (tests/e2e/corpus, sources in
tests/e2e/corpus/README.md) signed here the way the provider signs it.

For each provider: without verification a forged request is stored (the
attack path); with the preset the signed delivery is stored with its params,
and a tampered body, a wrong secret or key, a stale timestamp (where the
scheme has one) and a missing signature each get the exact 401 and store
nothing. The byte-for-byte vectors the providers publish are reproduced in
crates/webhook_core/src/verify/presets.rs.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from corpuskit import Delivery, load, send
from hookkit import assert_rejection_counts, count_events, events, ready  # noqa: F401

INVALID_SIGNATURE = {"msg": "Invalid signature"}
INVALID_TOKEN = {"msg": "Invalid token"}

# RFC 8032 section 7.1 TEST 1's key pair (Discord publishes none).
ED25519_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
# The private key sendgrid-go's eventwebhook_test.go publishes with its vector.
SENDGRID_PRIVATE = ("MHcCAQEEIEQmZgBEh9DcU9zMl34czK3xov4AYvm9P3r7rNB2dNXtoAoGCCqGSM49AwEHoUQDQgAEEDr2LjtURuePQzplybd"
                    "C+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==")


def hex_hmac(secret: bytes, message: bytes, digest=hashlib.sha256) -> str:
    return hmac.new(secret, message, digest).hexdigest()


def b64_hmac(secret: bytes, message: bytes, digest=hashlib.sha256) -> str:
    return base64.b64encode(hmac.new(secret, message, digest).digest()).decode()


def ed25519_key(secret: bytes):
    return ed25519.Ed25519PrivateKey.from_private_bytes(secret)


def ed25519_public_hex(secret: bytes) -> str:
    return ed25519_key(secret).public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw).hex()


def p256_key(der_b64: str):
    return serialization.load_der_private_key(base64.b64decode(der_b64), password=None)


def p256_public_b64(key) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@dataclass
class Signed:
    """A delivery ready to send: its body and the headers to add."""
    body: bytes
    headers: dict[str, str]


@dataclass
class Provider:
    preset: str
    corpus: str
    # The secrets (or public keys) to configure, and another one (wrong).
    secret: str
    wrong_secret: str
    # Signs (delivery, body, secret, unix time, URL) -> Signed.
    sign: Callable[[Delivery, bytes, str, float, str], Signed]
    # Seconds past the preset's tolerance (None: the scheme has no timestamp).
    stale_by: int | None = None
    refusal: dict = None  # type: ignore[assignment]
    # The header (or None: a body field) that carries the signature.
    signature_header: str | None = None

    def __post_init__(self):
        self.refusal = self.refusal or INVALID_SIGNATURE


def svix(d, body, secret, now, url):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, ts = "msg_2Ks9XvDdFxDBpyDAStWqE9OaGeR", str(int(now))
    return Signed(body, {"svix-id": msg_id, "svix-timestamp": ts,
                         "svix-signature": "v1," + b64_hmac(key, f"{msg_id}.{ts}.".encode() + body)})


def zoom(d, body, secret, now, url):
    ts = str(int(now))
    return Signed(body, {"x-zm-request-timestamp": ts,
                         "x-zm-signature": "v0=" + hex_hmac(secret.encode(), f"v0:{ts}:".encode() + body)})


def twitch(d, body, secret, now, url):
    ts = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    msg_id = "e76c6bd4-55c9-4987-8304-da1588d8988b"
    return Signed(body, {"Twitch-Eventsub-Message-Id": msg_id, "Twitch-Eventsub-Message-Timestamp": ts,
                         "Twitch-Eventsub-Message-Signature":
                             "sha256=" + hex_hmac(secret.encode(), msg_id.encode() + ts.encode() + body)})


def hubspot(d, body, secret, now, url):
    ts = str(int(now * 1000))
    return Signed(body, {"X-HubSpot-Request-Timestamp": ts,
                         "X-HubSpot-Signature-v3": b64_hmac(secret.encode(), b"POST" + url.encode() + body + ts.encode())})


def square(d, body, secret, now, url):
    return Signed(body, {"x-square-hmacsha256-signature": b64_hmac(secret.encode(), url.encode() + body)})


def paddle(d, body, secret, now, url):
    ts = str(int(now))
    return Signed(body, {"Paddle-Signature": f"ts={ts};h1=" + hex_hmac(secret.encode(), f"{ts}:".encode() + body)})


def calendly(d, body, secret, now, url):
    ts = str(int(now))
    return Signed(body, {"Calendly-Webhook-Signature":
                         f"t={ts},v1=" + hex_hmac(secret.encode(), f"{ts}.".encode() + body)})


def pagerduty(d, body, secret, now, url):
    return Signed(body, {"X-PagerDuty-Signature": "v1=" + hex_hmac(secret.encode(), body)})


def discord(d, body, secret, now, url):
    ts = str(int(now))
    signature = ed25519_key(bytes.fromhex(secret)).sign(ts.encode() + body).hex()
    return Signed(body, {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": ts})


def sendgrid(d, body, secret, now, url):
    ts = str(int(now))
    signature = p256_key(secret).sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return Signed(body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                         "X-Twilio-Email-Event-Webhook-Timestamp": ts})


def mailgun(d, body, secret, now, url):
    # Mailgun signs timestamp + token and sends them in the body.
    doc = json.loads(body)
    ts, token = str(int(now)), "5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6"
    doc["signature"] = {"token": token, "timestamp": ts,
                        "signature": hex_hmac(secret.encode(), (ts + token).encode())}
    return Signed(json.dumps(doc, separators=(",", ":")).encode(), {})


def telegram(d, body, secret, now, url):
    return Signed(body, {"X-Telegram-Bot-Api-Secret-Token": secret})


def meta(d, body, secret, now, url):
    return Signed(body, {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret.encode(), body)})


def dropbox(d, body, secret, now, url):
    return Signed(body, {"X-Dropbox-Signature": hex_hmac(secret.encode(), body)})


def linear(d, body, secret, now, url):
    # The timestamp Linear checks is in the (signed) body.
    doc = json.loads(body)
    doc["webhookTimestamp"] = int(now * 1000)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Signed(body, {"Linear-Signature": hex_hmac(secret.encode(), body)})


def intercom(d, body, secret, now, url):
    return Signed(body, {"X-Hub-Signature": "sha1=" + hex_hmac(secret.encode(), body, hashlib.sha1)})


def typeform(d, body, secret, now, url):
    return Signed(body, {"Typeform-Signature": "sha256=" + b64_hmac(secret.encode(), body)})


SENDGRID_KEY = p256_key(SENDGRID_PRIVATE)
OTHER_P256 = ec.generate_private_key(ec.SECP256R1())

PROVIDERS = [
    Provider("svix", "svix/clerk_user_created", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
             "whsec_" + base64.b64encode(b"another-svix-secret-1234").decode(), svix, 301, signature_header="svix-signature"),
    Provider("zoom", "zoom/meeting_started", "zoom-secret-token", "other-token", zoom, 301,
             signature_header="x-zm-signature"),
    Provider("twitch", "twitch/notification_channel_follow", "twitch-secret-0123456789", "twitch-secret-9876543210",
             twitch, 601, signature_header="Twitch-Eventsub-Message-Signature"),
    Provider("hubspot", "hubspot/contact_creation_v1_signed", "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy",
             "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", hubspot, 301, signature_header="X-HubSpot-Signature-v3"),
    Provider("square", "square/webhooks_test_notification", "Ibxx_5AKakO-3qeNVR61Dw", "MCmhFRxGX82xMwg5FsaoQA",
             square, signature_header="x-square-hmacsha256-signature"),
    Provider("paddle", "paddle/customer_created",
             "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I",
             "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_OtherSecretOtherSecretOther", paddle, 6,
             signature_header="Paddle-Signature"),
    Provider("calendly", "svix/clerk_user_created", "calendly-signing-key", "calendly-other-key", calendly, 181,
             signature_header="Calendly-Webhook-Signature"),
    Provider("pagerduty", "pagerduty/incident_priority_updated",
             "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK", "pagerduty-other-secret",
             pagerduty, signature_header="X-PagerDuty-Signature"),
    Provider("discord", "discord/application_command_slash", ED25519_SECRET.hex(), bytes(range(32)).hex(),
             discord, 301, signature_header="X-Signature-Ed25519"),
    Provider("sendgrid", "sendgrid/signed_single_dropped", SENDGRID_PRIVATE,
             base64.b64encode(OTHER_P256.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                                       serialization.NoEncryption())).decode(),
             sendgrid, 301, signature_header="X-Twilio-Email-Event-Webhook-Signature"),
    Provider("mailgun", "mailgun/accepted", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "key-another", mailgun, 301),
    Provider("telegram", "telegram/message_text", "telegram_secret-token_0123", "telegram_other-token",
             telegram, refusal=INVALID_TOKEN, signature_header="X-Telegram-Bot-Api-Secret-Token"),
    Provider("meta", "meta/whatsapp_text_message", "TEST_APP_SECRET", "OTHER_APP_SECRET", meta,
             signature_header="X-Hub-Signature-256"),
    Provider("dropbox", "dropbox/notification", "the_secret", "another_secret", dropbox,
             signature_header="X-Dropbox-Signature"),
    Provider("linear", "linear/comment_create", "lin_wh_secret", "lin_wh_other", linear, 61,
             signature_header="Linear-Signature"),
    Provider("intercom", "intercom/signed_notification_user_created", "intercom-client-secret", "intercom-other",
             intercom, signature_header="X-Hub-Signature"),
    Provider("typeform", "svix/clerk_user_created", "typeform-secret", "typeform-other", typeform,
             signature_header="Typeform-Signature"),
]


def configured_key(p: Provider, secret: str) -> str:
    """What the workflow is configured with: the secret, or the public half."""
    if p.preset == "discord":
        return ed25519_public_hex(bytes.fromhex(secret))
    if p.preset == "sendgrid":
        return p256_public_b64(p256_key(secret))
    return secret


def set_preset(c, wf: str, preset: str, key: str) -> None:
    c.sql("SELECT webhook_set_verification(%s, %s, secret => %s)", (wf, preset, key))


def delivery_for(p: Provider) -> Delivery:
    provider, name = p.corpus.split("/")
    d = load(provider, name)
    # Signature and timestamp headers come from the signing here, not the corpus.
    drop = {"svix-id", "svix-timestamp", "svix-signature", "x-zm-signature", "x-zm-request-timestamp",
            "linear-signature", "x-hub-signature", "x-hub-signature-256", "x-dropbox-signature",
            "x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp",
            "x-pagerduty-signature", "paddle-signature", "x-hubspot-signature", "x-hubspot-signature-v3",
            "x-hubspot-request-timestamp", "x-signature-ed25519", "x-signature-timestamp",
            "x-square-hmacsha256-signature", "authorization"}
    d.headers = {k: v for k, v in d.headers.items() if k.lower() not in drop}
    return d


def send_signed(c, wf: str, d: Delivery, signed: Signed):
    out = copy.deepcopy(d)
    out.body = signed.body.decode()
    out.headers = {**d.headers, **signed.headers}
    return send(c, wf, out)


def assert_refused(r, body):
    assert (r.status_code, r.json()) == (401, body), r.text


@pytest.mark.parametrize("p", PROVIDERS, ids=[p.preset for p in PROVIDERS])
def test_provider_preset_accepts_the_signed_delivery_and_refuses_forgeries(ready, new_workflow, p):
    c = ready
    wf = new_workflow()["id"]
    d = delivery_for(p)
    url = c.hook_url(wf)
    body = d.raw_body()
    now = time.time()
    forged = p.sign(d, body, p.wrong_secret, now, url)

    # Positive control: without verification the forged delivery is stored.
    r = send_signed(c, wf, d, forged)
    assert r.status_code == 200, r.text
    assert count_events(c, wf) == 1

    set_preset(c, wf, p.preset, configured_key(p, p.secret))
    good = p.sign(d, body, p.secret, time.time(), url)
    r = send_signed(c, wf, d, good)
    assert r.status_code == 200, r.text
    stored = events(c, wf)[-1]
    sent = json.loads(good.body)
    # A top-level array is the one parameter `items`.
    assert stored["params"] == (sent if isinstance(sent, dict) else {"items": sent})
    assert stored["body"] == good.body.decode()
    if p.preset == "telegram":
        # The token is a credential: stored redacted, like GitLab's.
        assert stored["headers"]["x-telegram-bot-api-secret-token"] == "[redacted]"

    # A wrong secret or key.
    assert_refused(send_signed(c, wf, d, p.sign(d, body, p.wrong_secret, time.time(), url)), p.refusal)
    expected = {(401, f"{p.refusal['msg']}: signature does not match"): 1}
    if p.preset != "telegram":
        # A tampered body (the body field Mailgun signs is its token: change that).
        tampered = copy.deepcopy(good)
        if p.preset == "mailgun":
            doc = json.loads(tampered.body)
            doc["signature"]["token"] = "x" + doc["signature"]["token"][1:]
            tampered.body = json.dumps(doc, separators=(",", ":")).encode()
        else:
            tampered.body = tampered.body.replace(b"}", b" }", 1)
        assert_refused(send_signed(c, wf, d, tampered), p.refusal)
        expected[(401, f"{p.refusal['msg']}: signature does not match")] += 1
    if p.stale_by is not None:
        stale = p.sign(d, body, p.secret, time.time() - p.stale_by, url)
        assert_refused(send_signed(c, wf, d, stale), p.refusal)
        expected[(401, f"{p.refusal['msg']}: timestamp outside the tolerance")] = 1
    # No signature at all.
    missing = copy.deepcopy(good)
    if p.signature_header is None:
        doc = json.loads(missing.body)
        del doc["signature"]
        missing.body = json.dumps(doc, separators=(",", ":")).encode()
    else:
        missing.headers = {k: v for k, v in missing.headers.items() if k.lower() != p.signature_header.lower()}
    assert_refused(send_signed(c, wf, d, missing), p.refusal)
    expected[(401, f"{p.refusal['msg']}: signature header missing")] = 1

    assert count_events(c, wf) == 2
    assert_rejection_counts(c, wf, expected)


def test_svix_rotation_and_both_header_families_of_standard_webhooks(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    d = delivery_for(PROVIDERS[0])
    body = d.raw_body()
    old, new = "whsec_" + base64.b64encode(b"old-svix-secret-0123456789").decode(), PROVIDERS[0].secret
    c.sql("SELECT webhook_set_verification(%s, 'svix', secrets => %s)", (wf, [old, new]))
    both = svix(d, body, new, time.time(), "")
    old_sig = svix(d, body, old, time.time(), "").headers["svix-signature"]
    # During a rotation Svix signs with both: one header, two signatures.
    both.headers["svix-signature"] = old_sig + " " + both.headers["svix-signature"]
    assert send_signed(c, wf, d, both).status_code == 200
    # The standard-webhooks preset takes Svix's header names too.
    c.sql("SELECT webhook_set_verification(%s, 'standard-webhooks', secret => %s)", (wf, new))
    r = send_signed(c, wf, d, svix(d, body, new, time.time(), ""))
    assert r.status_code == 200, r.text
    unbranded = svix(d, body, new, time.time(), "")
    unbranded.headers = {k.replace("svix-", "webhook-"): v for k, v in unbranded.headers.items()}
    assert send_signed(c, wf, d, unbranded).status_code == 200
    assert count_events(c, wf) == 3


def test_a_composed_scheme_from_parts_and_the_presets_as_definitions(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    presets = c.rows("SELECT name, definition FROM webhook_verification_presets()")
    names = [row["name"] for row in presets]
    assert names == ["standard-webhooks", "github", "stripe", "slack", "shopify", "twilio", "gitlab", "bearer",
                     "basic", "svix", "zoom", "twitch", "hubspot", "square", "paddle", "calendly", "pagerduty",
                     "discord", "sendgrid", "mailgun", "telegram", "meta", "meta-verify-token", "dropbox", "linear",
                     "intercom", "typeform"]
    definitions = {row["name"]: row["definition"] for row in presets}
    zoom_definition = definitions["zoom"]
    # The scheme names webhook_set_verification always had are presets too.
    assert definitions["github"] == {"algorithm": "hmac-sha256", "signed": "{body}",
                                     "signature": "header:x-hub-signature-256", "prefix": "sha256=",
                                     "encoding": "hex"}
    assert definitions["standard-webhooks"] == {
        "algorithm": "hmac-sha256", "signed": "{header:webhook-id|svix-id}.{timestamp}.{body}",
        "signature": "header:webhook-signature|svix-signature",
        "list": {"separator": " ", "pair": ",", "key": "v1"}, "encoding": "base64", "secret_encoding": "whsec",
        "timestamp": {"from": "header:webhook-timestamp|svix-timestamp", "format": "unix", "tolerance_secs": 300}}
    assert definitions["twilio"] == {"algorithm": "hmac-sha1", "signed": "{url}{form_sorted}",
                                     "signature": "header:x-twilio-signature", "encoding": "base64",
                                     "body_sha256": "param:bodySHA256"}
    assert definitions["bearer"] == {"algorithm": "token", "signature": "authorization:bearer"}
    assert definitions["basic"] == {"algorithm": "token", "signature": "authorization:basic"}
    assert zoom_definition == {
        "algorithm": "hmac-sha256", "signed": "v0:{timestamp}:{body}", "signature": "header:x-zm-signature",
        "prefix": "v0=", "encoding": "hex",
        "timestamp": {"from": "header:x-zm-request-timestamp", "format": "unix", "tolerance_secs": 300}}
    # A copied preset, adjusted (another header name), is a custom scheme.
    custom = {**zoom_definition, "signature": "header:x-my-signature"}
    c.sql("SELECT webhook_set_verification(%s, 'custom', secret => 's3cret', definition => %s::jsonb)",
              (wf, json.dumps(custom)))
    d = delivery_for(PROVIDERS[1])
    body = d.raw_body()
    signed = zoom(d, body, "s3cret", time.time(), "")
    signed.headers["x-my-signature"] = signed.headers.pop("x-zm-signature")
    assert send_signed(c, wf, d, signed).status_code == 200

    # Built from parts: a signature over method, path and body, in a list
    # of key/value pairs, with the timestamp in the same header.
    parts = {"algorithm": "hmac-sha512", "signed": "{method} {path}\n{timestamp}\n{body}",
             "signature": "header:x-sig", "list": {"separator": ",", "pair": "=", "key": "s"},
             "encoding": "base64url", "timestamp": {"from": "list:t", "format": "unix", "tolerance_secs": 60}}
    c.sql("SELECT webhook_set_verification(%s, 'custom', secret => 'k', definition => %s::jsonb)",
              (wf, json.dumps(parts)))
    ts = str(int(time.time()))
    path = "/hooks/" + wf
    mac = hmac.new(b"k", f"POST {path}\n{ts}\n".encode() + body, hashlib.sha512).digest()
    sig = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    out = Signed(body, {"x-sig": f"t={ts},s=nope,s={sig}"})
    r = send_signed(c, wf, d, out)
    assert r.status_code == 200, r.text
    out.headers["x-sig"] = f"t={int(ts) - 61},s={sig}"
    assert_refused(send_signed(c, wf, d, out), INVALID_SIGNATURE)

    # Definitions are checked when set: the error names the problem only.
    for definition, message in [
        ({**parts, "algorithm": "md5"}, "algorithm must be hmac-sha256, hmac-sha1, hmac-sha512, ed25519, "
                                        "ecdsa-p256-sha256 or token"),
        ({**parts, "signed": "{bdy}"}, "unknown template placeholder {bdy} (method, url, url_unescaped, path, "
                                       "query, body, form_sorted, timestamp, header:NAME, field:PATH, param:NAME)"),
        ({**parts, "colour": "blue"}, "a scheme definition has no key colour (it has algorithm, signed, "
                                      "signature, prefix, list, encoding, secret_encoding, timestamp, tolerance_secs, "
                                      "body_sha256, username)"),
        ({**parts, "signature": "authorization:bearer"}, "signature authorization:… goes with algorithm token"),
    ]:
        err = c.sql_error("SELECT webhook_set_verification(%s, 'custom', secret => 'k-3xyz', definition => %s::jsonb)",
                          (wf, json.dumps(definition)), sqlstate="22023")
        assert err["message"] == f"invalid verification: {message}"
    err = c.sql_error("SELECT webhook_set_verification(%s, 'zoom', secret => 'k', definition => '{}')", (wf,),
                  sqlstate="22023")
    assert err["message"] == "invalid verification: definition => … goes with the custom scheme, and only with it"
    err = c.sql_error("SELECT webhook_set_verification(%s, NULL, definition => '{}')", (wf,), sqlstate="22023")
    assert err["message"] == "invalid verification: definition => … goes with the custom scheme, and only with it"
    err = c.sql_error("SELECT webhook_set_verification(%s, 'custom', secret => 'k')", (wf,), sqlstate="22023")
    assert err["message"] == "invalid verification: definition => … goes with the custom scheme, and only with it"
    err = c.sql_error("SELECT webhook_set_verification(%s, 'discord', secret => 'not-a-key-secret')", (wf,),
                  sqlstate="22023")
    assert err["message"] == "invalid verification: secret 1 is not an Ed25519 public key (32 bytes)"


def documented_worked_example() -> dict:
    """The definition docs/verification.md composes for a provider that has
    no preset (Mux)."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "verification.md"),
               encoding="utf-8").read()
    block = doc.split("A real provider described this way: Mux", 1)[1]
    return json.loads(block.split("definition => '", 1)[1].split("');", 1)[0])


def test_the_documented_scheme_from_parts_verifies_muxs_published_vector(ready, new_workflow):
    c = ready
    wf = new_workflow()["id"]
    # A signing test vector, not a delivery: in tests/e2e/vectors/ (its
    # source inside), beside the deliveries' corpus.
    d = load(os.path.join(os.pardir, "vectors"), "mux_webhooks_test_vector")
    definition = documented_worked_example()
    # Positive control: unverified, a forged delivery is stored.
    forged = copy.deepcopy(d)
    forged.headers["mux-signature"] = "t=1565125718,v1=" + "0" * 64
    assert send(c, wf, forged).status_code == 200

    # The SDK's vector byte for byte: signed in 2019, so only a tolerance
    # reaching back that far accepts it.
    c.sql("SELECT webhook_set_verification(%s, 'custom', secret => 'SuperSecret123', definition => %s::jsonb,"
          " tolerance => '30 years')", (wf, json.dumps(definition)))
    r = send(c, wf, d)
    assert r.status_code == 200, r.text
    assert events(c, wf)[-1]["params"] == {"test": "body"}
    assert_refused(send(c, wf, forged), INVALID_SIGNATURE)

    # As documented (5 minutes): the same vector is stale, a
    # fresh signature passes, and a tampered body or no header does not.
    c.sql("SELECT webhook_set_verification(%s, 'custom', secret => 'SuperSecret123', definition => %s::jsonb)",
          (wf, json.dumps(definition)))
    assert_refused(send(c, wf, d), INVALID_SIGNATURE)
    ts = str(int(time.time()))
    fresh = copy.deepcopy(d)
    fresh.headers["mux-signature"] = "t={},v1={}".format(
        ts, hmac.new(b"SuperSecret123", f"{ts}.".encode() + d.raw_body(), hashlib.sha256).hexdigest())
    assert send(c, wf, fresh).status_code == 200
    tampered = copy.deepcopy(fresh)
    tampered.body = '{"test":"bodY"}'
    assert_refused(send(c, wf, tampered), INVALID_SIGNATURE)
    unsigned = copy.deepcopy(d)
    unsigned.headers = {}
    assert_refused(send(c, wf, unsigned), INVALID_SIGNATURE)
    assert count_events(c, wf) == 3
    assert_rejection_counts(c, wf, {
        (401, "Invalid signature: signature does not match"): 2,
        (401, "Invalid signature: timestamp outside the tolerance"): 1,
        (401, "Invalid signature: signature header missing"): 1,
    })
