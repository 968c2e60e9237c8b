"""Real deliveries pass: the corpus of real provider deliveries.

tests/e2e/corpus/<provider>/<name>.json holds deliveries as GitHub, Stripe, Slack,
Twilio, AWS SNS, Shopify, GitLab and SendGrid publish them (body and header set;
see corpuskit.py). For each provider a workflow is sampled from ONE delivery
(webhook_sample_from_json, or capture over HTTP), realistic fields are marked
required, and OTHER deliveries of the same kind are sent over real HTTP to
127.0.0.1: they must pass (200, and the stored event's params hold the values
exactly as sent), while a delivery lacking one required field gets exactly
400 {"msg":"Missing required parameter(s)","missing":[<field>]}.

The property test: every delivery in the corpus, captured on a fresh workflow,
with every captured parameter whose sample is not null marked required, passes
when sent again.

Runs on a private cluster (one listener) so nothing here disturbs other modules.
"""

from __future__ import annotations

import json

import pytest
import requests

from conftest import HANDLER_SQL, uniq
from corpuskit import Delivery, all_deliveries, load, send
from hookkit import response_json
from tenantkit import private  # noqa: F401  (module-scoped private cluster fixture)

MISSING = "Missing required parameter(s)"


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def c(private):
    """The private cluster with a params-returning handler."""
    private.sql(HANDLER_SQL.format(name="public.real_handler"))
    private.sql("CREATE FUNCTION public.challenge_handler(e webhook.events) RETURNS jsonb LANGUAGE sql "
                "AS $h$ SELECT jsonb_build_object('challenge', e.params->>'challenge') $h$")
    return private


def workflow(c, handler: str = "public.real_handler") -> str:
    row = c.row("SELECT * FROM webhook_create_workflow(%s, %s::regproc)", (uniq("real"), handler))
    return str(row["id"])


def sample_json(c, wf: str, body) -> list[dict]:
    return c.rows("SELECT * FROM webhook_sample_from_json(%s, %s::jsonb)", (wf, json.dumps(body)))


def capture(c, wf: str, d: Delivery) -> None:
    c.sql("SELECT webhook_capture_sample(%s)", (wf,))
    r = send(c, wf, d)
    assert r.status_code == 200, (d.id, r.status_code, r.text)
    assert response_json(r)["msg"] == "Sample captured", (d.id, r.text)


def set_required(c, wf: str, names: list[str], for_events: list[str] | None = None) -> None:
    if for_events is None:
        c.sql("SELECT count(*) FROM webhook_set_required(%s, %s)", (wf, names))
    else:
        c.sql("SELECT count(*) FROM webhook_set_required(%s, %s, true, for_events => %s)",
              (wf, names, for_events))


def params_of(c, wf: str) -> dict[tuple[str, str], dict]:
    rows = c.rows("SELECT name, source, type, sample, required FROM webhook.parameters "
                  "WHERE workflow_id = %s", (wf,))
    return {(r["source"], r["name"]): r for r in rows}


def accepted(c, wf: str, d: Delivery) -> dict:
    """Sends ``d``, expects 200 success, returns the stored event row."""
    r = send(c, wf, d)
    assert r.status_code == 200, (d.id, r.status_code, r.text)
    body = response_json(r)
    assert body["msg"] == "success", (d.id, body)
    ev = c.row("SELECT * FROM webhook.events WHERE id = %s", (body["event_id"],))
    assert ev is not None and str(ev["workflow_id"]) == wf
    return ev


def rejected_missing(c, wf: str, d: Delivery, missing: list[str]) -> None:
    before = c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,))
    r = send(c, wf, d)
    assert r.status_code == 400, (d.id, r.status_code, r.text)
    assert response_json(r) == {"msg": MISSING, "missing": missing}, (d.id, r.text)
    assert c.scalar("SELECT count(*) FROM webhook.events WHERE workflow_id = %s", (wf,)) == before


def text(c, event_id: int, path: list[str]):
    """params #>> path of a stored event (exact text as PostgreSQL prints it)."""
    return c.scalar("SELECT params #>> %s FROM webhook.events WHERE id = %s", (path, event_id))


def jtype(c, event_id: int, path: list[str]):
    return c.scalar("SELECT jsonb_typeof(params #> %s) FROM webhook.events WHERE id = %s", (path, event_id))


def drop_path(body: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        body = body[p]
    del body[last]


# ---------------------------------------------------------------- GitHub
def test_github_push_sampled_from_a_tag_push_accepts_branch_pushes(c):
    tag = load("github", "push_tag")
    wf = workflow(c)
    sample_json(c, wf, tag.body)
    p = params_of(c, wf)
    # head_commit is null in a tag push: sampled as `any`, so a push with a
    # head_commit object passes; a null sample never becomes `text`.
    assert p[("body", "head_commit")]["type"] == "any"
    assert p[("body", "base_ref")]["type"] == "any"
    assert p[("body", "commits")]["type"] == "array"
    assert p[("body", "repository.full_name")]["type"] == "text"
    set_required(c, wf, ["ref", "repository.full_name", "after"])

    branch = load("github", "push_new_branch")
    ev = accepted(c, wf, branch)
    assert text(c, ev["id"], ["ref"]) == "refs/heads/master"
    assert text(c, ev["id"], ["repository", "full_name"]) == "Codertocat/Hello-World"
    assert jtype(c, ev["id"], ["head_commit"]) == "object"
    assert text(c, ev["id"], ["head_commit", "id"]) == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert text(c, ev["id"], ["before"]) == "0000000000000000000000000000000000000000"
    assert ev["headers"]["x-github-event"] == "push"
    assert ev["headers"]["x-github-delivery"] == branch.header("X-GitHub-Delivery")

    org = load("github", "push_organization")
    ev = accepted(c, wf, org)
    assert text(c, ev["id"], ["ref"]) == "refs/tags/simple-tag"
    assert jtype(c, ev["id"], ["head_commit"]) == "null"
    assert text(c, ev["id"], ["organization", "login"]) == org.body["organization"]["login"]

    broken = branch.copy()
    del broken.body["ref"]
    rejected_missing(c, wf, broken, ["ref"])
    broken = branch.copy()
    drop_path(broken.body, "repository.full_name")
    rejected_missing(c, wf, broken, ["repository.full_name"])


def test_github_ping_passes_a_push_workflow_with_event_scoped_requirements(c):
    wf = workflow(c)
    sample_json(c, wf, load("github", "push_tag").body)
    c.sql("SELECT webhook_set_discriminator(%s, 'header', 'x-github-event')", (wf,))
    set_required(c, wf, ["ref", "after"], for_events=["push"])
    set_required(c, wf, ["repository.full_name"])

    ping = load("github", "ping")
    ev = accepted(c, wf, ping)
    assert text(c, ev["id"], ["zen"]) == "Anything added dilutes everything else."
    assert text(c, ev["id"], ["hook_id"]) == "109948940"
    assert text(c, ev["id"], ["repository", "full_name"]) == "Octocoders/Hello-World"

    # The push requirements still hold for pushes ...
    push = load("github", "push_new_branch")
    broken = push.copy()
    del broken.body["ref"]
    rejected_missing(c, wf, broken, ["ref"])
    # ... and the unscoped one for every event, ping included.
    broken = ping.copy()
    drop_path(broken.body, "repository.full_name")
    rejected_missing(c, wf, broken, ["repository.full_name"])
    accepted(c, wf, push)


# ---------------------------------------------------------------- Stripe
def test_stripe_events_sampled_from_payment_intent_succeeded(c):
    succeeded = load("stripe", "payment_intent_succeeded")
    wf = workflow(c)
    sample_json(c, wf, succeeded.body)
    set_required(c, wf, ["id", "type", "data.object.id"])

    plan = load("stripe", "plan_created")
    ev = accepted(c, wf, plan)
    assert text(c, ev["id"], ["type"]) == "plan.created"
    assert text(c, ev["id"], ["id"]) == "evt_1Pgc76B7WZ01zgkWwyRHS12y"
    assert text(c, ev["id"], ["data", "object", "id"]) == "price_1PgafmB7WZ01zgkW6dKueIc5"
    # api_version was a string in the sample and is null here: stored as received.
    assert jtype(c, ev["id"], ["api_version"]) == "null"

    failed = load("stripe", "payment_intent_payment_failed")
    ev = accepted(c, wf, failed)
    assert text(c, ev["id"], ["type"]) == "payment_intent.payment_failed"
    assert text(c, ev["id"], ["data", "object", "amount"]) == "2000"
    # null in the sample, an object here.
    assert text(c, ev["id"], ["data", "object", "last_payment_error", "code"]) == "card_declined"
    assert text(c, ev["id"], ["data", "object", "metadata", "order_id"]) == "6735"

    customer = load("stripe", "customer_created")
    ev = accepted(c, wf, customer)
    assert text(c, ev["id"], ["data", "object", "id"]) == "cus_QXg1o8vcGmoR32"
    assert jtype(c, ev["id"], ["data", "object", "email"]) == "null"

    broken = failed.copy()
    drop_path(broken.body, "data.object.id")
    rejected_missing(c, wf, broken, ["data.object.id"])
    broken = customer.copy()
    broken.body["type"] = None  # null counts as missing
    rejected_missing(c, wf, broken, ["type"])


def test_stripe_requirements_scoped_to_payment_intent_events(c):
    wf = workflow(c)
    sample_json(c, wf, load("stripe", "payment_intent_succeeded").body)
    c.sql("SELECT webhook_set_discriminator(%s, 'body', 'type')", (wf,))
    set_required(c, wf, ["id", "type"])
    set_required(c, wf, ["data.object.amount", "data.object.currency"], for_events=["payment_intent.*"])

    # customer.created has no amount: not a payment_intent.* event, so it passes.
    ev = accepted(c, wf, load("stripe", "customer_created"))
    assert text(c, ev["id"], ["type"]) == "customer.created"
    # plan.created happens to have an amount; also passes.
    accepted(c, wf, load("stripe", "plan_created"))

    failed = load("stripe", "payment_intent_payment_failed")
    accepted(c, wf, failed)
    broken = failed.copy()
    drop_path(broken.body, "data.object.amount")
    rejected_missing(c, wf, broken, ["data.object.amount"])
    # A customer.* event without amount is still fine after that.
    accepted(c, wf, load("stripe", "customer_created"))


def test_stripe_types_guide_and_strict_mode_is_opt_in(c):
    succeeded = load("stripe", "payment_intent_succeeded")
    wf = workflow(c)
    sample_json(c, wf, succeeded.body)
    p = params_of(c, wf)
    assert p[("body", "data.object.amount")]["type"] == "number"
    assert p[("body", "data.object.customer")]["type"] == "any"  # null in the sample

    # Lossless coercion of a declared (top-level) number: "1721953402" is stored as a number ...
    d = succeeded.copy()
    d.body["created"] = "1721953402"
    d.body["pending_webhooks"] = "01"  # ... "01" is not lossless: kept as the string received
    ev = accepted(c, wf, d)
    assert jtype(c, ev["id"], ["created"]) == "number"
    assert text(c, ev["id"], ["created"]) == "1721953402"
    assert jtype(c, ev["id"], ["pending_webhooks"]) == "string"
    assert text(c, ev["id"], ["pending_webhooks"]) == "01"
    # A value of another type is accepted and stored as received by default.
    d = succeeded.copy()
    d.body["data"]["object"]["amount"] = "10.99 USD"
    ev = accepted(c, wf, d)
    assert jtype(c, ev["id"], ["data", "object", "amount"]) == "string"
    assert text(c, ev["id"], ["data", "object", "amount"]) == "10.99 USD"

    c.sql("SELECT webhook_set_strict(%s, true, %s)", (wf, ["data.object.amount"]))
    r = send(c, wf, d)
    assert r.status_code == 400, r.text
    assert response_json(r) == {"msg": "Parameter 'data.object.amount' must be a number",
                                "parameter": "data.object.amount", "expected": "number", "found": "string"}
    accepted(c, wf, succeeded)


# ---------------------------------------------------------------- Slack
def test_slack_slash_commands_captured_from_the_docs_example(c):
    weather = load("slack", "slash_command_weather")
    wf = workflow(c)
    capture(c, wf, weather)
    p = params_of(c, wf)
    # Strings from the wire stay text, even "94070".
    assert p[("body", "text")]["type"] == "text" and p[("body", "text")]["sample"] == "94070"
    assert p[("body", "command")]["sample"] == "/weather"
    assert all(v["type"] == "text" for (src, _), v in p.items() if src == "body"), p
    assert p[("header", "x-slack-signature")]["type"] == "text"
    set_required(c, wf, ["command", "text", "user_id"])

    ev = accepted(c, wf, weather)
    assert jtype(c, ev["id"], ["text"]) == "string"
    assert text(c, ev["id"], ["text"]) == "94070"
    assert text(c, ev["id"], ["enterprise_name"]) == "Globular Construct Inc"

    signing = load("slack", "slash_command_signing_example")
    ev = accepted(c, wf, signing)
    assert text(c, ev["id"], ["text"]) == ""  # empty string counts as present
    assert text(c, ev["id"], ["command"]) == "/webhook-collect"
    assert text(c, ev["id"], ["response_url"]) == \
        "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN"
    assert ev["body"] == signing.body  # raw body stored as received

    zipped = load("slack", "slash_command_zip_with_spaces")
    ev = accepted(c, wf, zipped)
    assert text(c, ev["id"], ["text"]) == "02134 tomorrow 9am "
    assert jtype(c, ev["id"], ["text"]) == "string"
    assert text(c, ev["id"], ["user_name"]) == "amy"

    broken = zipped.copy()
    del broken.form_fields()["text"]
    rejected_missing(c, wf, broken, ["text"])
    broken = signing.copy()
    del broken.form_fields()["user_id"]
    rejected_missing(c, wf, broken, ["user_id"])


def test_slack_interactive_payload_field_is_parsed_json(c):
    actions = load("slack", "interactive_block_actions")
    wf = workflow(c)
    capture(c, wf, actions)
    p = params_of(c, wf)
    assert p[("body", "payload")]["type"] == "object"
    assert p[("body", "payload.user.username")]["type"] == "text"
    assert p[("body", "payload.user.username")]["sample"] == "jtorrance"
    set_required(c, wf, ["payload.user.username", "payload.type"])

    ev = accepted(c, wf, actions)
    assert jtype(c, ev["id"], ["payload"]) == "object"
    assert text(c, ev["id"], ["payload", "actions", "0", "value"]) == "click_me_123"

    shortcut = load("slack", "interactive_shortcut")
    ev = accepted(c, wf, shortcut)
    assert jtype(c, ev["id"], ["payload"]) == "object"
    assert text(c, ev["id"], ["payload", "user", "username"]) == "aman"
    assert text(c, ev["id"], ["payload", "type"]) == "shortcut"
    assert text(c, ev["id"], ["payload", "callback_id"]) == "shortcut_create_task"

    broken = shortcut.copy()
    del broken.body["payload"]["user"]["username"]
    rejected_missing(c, wf, broken, ["payload.user.username"])


def test_slack_url_verification_answered_by_the_workflow(c):
    wf = workflow(c, handler="public.challenge_handler")
    c.sql("SELECT * FROM webhook_set_response(%s, 'workflow')", (wf,))
    app_mention = load("slack", "event_callback_app_mention")
    sample_json(c, wf, app_mention.body)
    c.sql("SELECT webhook_set_discriminator(%s, 'body', 'type')", (wf,))
    set_required(c, wf, ["type"])
    set_required(c, wf, ["event.type", "event_id", "team_id"], for_events=["event_callback"])

    verification = load("slack", "url_verification")
    r = send(c, wf, verification)
    assert r.status_code == 200, r.text
    assert response_json(r) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert r.headers["Content-Type"].startswith("application/json")
    ev = c.row("SELECT * FROM webhook.events WHERE workflow_id = %s ORDER BY id DESC LIMIT 1", (wf,))
    assert ev["params"]["type"] == "url_verification"

    r = send(c, wf, app_mention)
    assert r.status_code == 200, r.text
    assert response_json(r) == {"challenge": None}
    broken = app_mention.copy()
    drop_path(broken.body, "event.type")
    rejected_missing(c, wf, broken, ["event.type"])


# ---------------------------------------------------------------- Twilio
def test_twilio_sms_post_and_get_pass_a_workflow_captured_from_post(c):
    post = load("twilio", "sms_post")
    wf = workflow(c)
    capture(c, wf, post)
    p = params_of(c, wf)
    for name in ("NumMedia", "FromZip", "NumSegments", "To", "From", "Body"):
        assert p[("body", name)]["type"] == "text", (name, p[("body", name)])
    assert p[("body", "FromZip")]["sample"] == "94105"
    assert p[("body", "To")]["sample"] == "+14155551212"
    set_required(c, wf, ["From", "Body", "MessageSid"])

    mms = load("twilio", "sms_post_mms_leading_zero_zip")
    ev = accepted(c, wf, mms)
    assert text(c, ev["id"], ["FromZip"]) == "02134"
    assert jtype(c, ev["id"], ["FromZip"]) == "string"
    assert text(c, ev["id"], ["ToZip"]) == ""
    assert text(c, ev["id"], ["Body"]) == "Running late,  see you at 7 "
    assert text(c, ev["id"], ["From"]) == "+16175550123"
    assert text(c, ev["id"], ["NumMedia"]) == "1"
    assert text(c, ev["id"], ["MediaContentType0"]) == "image/jpeg"

    get = load("twilio", "sms_get")
    ev = accepted(c, wf, get)
    assert ev["method"] == "GET"
    assert text(c, ev["id"], ["From"]) == "+14158675309"
    assert text(c, ev["id"], ["Body"]) == "How are you doing?"
    assert text(c, ev["id"], ["MessageSid"]) == "SM2e4a6c8e0a2c4e6a8c0e2a4c6e8a0c2e"
    assert ev["raw_query"] == get.query
    assert ev["raw_path"] == f"/hooks/{wf}"

    broken = mms.copy()
    del broken.form_fields()["Body"]
    rejected_missing(c, wf, broken, ["Body"])
    broken = get.copy()
    q = broken.query_fields()
    del q["From"]
    broken.set_query_fields(q)
    rejected_missing(c, wf, broken, ["From"])


# ---------------------------------------------------------------- AWS SNS
def test_sns_text_plain_json_messages(c):
    notification = load("sns", "notification")
    wf = workflow(c)
    capture(c, wf, notification)
    p = params_of(c, wf)
    assert p[("body", "Type")]["sample"] == "Notification"
    assert p[("body", "Message")]["type"] == "text"
    assert p[("header", "x-amz-sns-message-type")]["sample"] == "Notification"
    set_required(c, wf, ["Type", "MessageId", "TopicArn", "Message"])

    confirmation = load("sns", "subscription_confirmation")
    ev = accepted(c, wf, confirmation)
    assert text(c, ev["id"], ["Type"]) == "SubscriptionConfirmation"
    assert text(c, ev["id"], ["MessageId"]) == "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"
    assert text(c, ev["id"], ["TopicArn"]) == "arn:aws:sns:us-west-2:123456789012:MyTopic"
    assert text(c, ev["id"], ["SubscribeURL"]).startswith("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&")
    assert text(c, ev["id"], ["Message"]).startswith("You have chosen to subscribe to the topic")
    assert ev["body"] == confirmation.body  # the raw text/plain body is kept as sent
    assert ev["headers"]["x-amz-sns-message-type"] == "SubscriptionConfirmation"

    no_subject = load("sns", "notification_without_subject")
    ev = accepted(c, wf, no_subject)
    assert text(c, ev["id"], ["Message"]) == json.loads(no_subject.body)["Message"]
    assert jtype(c, ev["id"], ["Message"]) == "string"  # JSON text inside a string stays a string
    assert text(c, ev["id"], ["SignatureVersion"]) == "2"

    accepted(c, wf, load("sns", "unsubscribe_confirmation"))

    broken = confirmation.copy()
    del broken.form_fields()["Message"]
    broken.body = json.dumps(broken.body, indent=2)
    rejected_missing(c, wf, broken, ["Message"])


# ---------------------------------------------------------------- Shopify
def test_shopify_orders_create(c):
    test_note = load("shopify", "orders_create_test_notification")
    wf = workflow(c)
    sample_json(c, wf, test_note.body)
    p = params_of(c, wf)
    assert p[("body", "id")]["type"] == "number"
    assert p[("body", "note")]["type"] == "any"
    assert p[("body", "customer")]["type"] == "object"
    set_required(c, wf, ["id", "email"])

    ev = accepted(c, wf, test_note)
    # 64-bit ids survive exactly (no float rounding).
    assert text(c, ev["id"], ["id"]) == "820982911946154508"
    assert text(c, ev["id"], ["line_items", "1", "id"]) == "976318377106520349"

    guest = load("shopify", "orders_create_guest_checkout")
    ev = accepted(c, wf, guest)
    assert text(c, ev["id"], ["id"]) == "5940139491234"
    assert text(c, ev["id"], ["email"]) == ""  # empty counts as present
    assert jtype(c, ev["id"], ["customer"]) == "null"  # object in the sample, null here
    assert text(c, ev["id"], ["note"]) == "Leave at the door, 2nd floor"
    assert text(c, ev["id"], ["shipping_address", "zip"]) == "02134"
    assert text(c, ev["id"], ["total_price"]) == "254.98"
    assert jtype(c, ev["id"], ["total_price"]) == "string"
    assert ev["headers"]["x-shopify-topic"] == "orders/create"

    broken = guest.copy()
    del broken.body["email"]
    rejected_missing(c, wf, broken, ["email"])
    broken = test_note.copy()
    broken.body["email"] = None
    rejected_missing(c, wf, broken, ["email"])


# ---------------------------------------------------------------- GitLab
def test_gitlab_push_and_tag_push_hooks(c):
    push = load("gitlab", "push_hook")
    wf = workflow(c)
    capture(c, wf, push)
    p = params_of(c, wf)
    assert p[("header", "x-gitlab-event")]["sample"] == "Push Hook"
    assert p[("body", "project.path_with_namespace")]["type"] == "text"
    assert p[("body", "total_commits_count")]["type"] == "number"
    set_required(c, wf, ["object_kind", "ref", "project.path_with_namespace"])

    tag = load("gitlab", "tag_push_hook")
    ev = accepted(c, wf, tag)
    assert text(c, ev["id"], ["object_kind"]) == "tag_push"
    assert text(c, ev["id"], ["ref"]) == "refs/tags/v1.0.0"
    assert text(c, ev["id"], ["project", "path_with_namespace"]) == "jsmith/example"
    assert ev["headers"]["x-gitlab-event"] == "Tag Push Hook"

    branch = load("gitlab", "push_hook_new_branch")
    ev = accepted(c, wf, branch)
    assert text(c, ev["id"], ["ref"]) == "refs/heads/feature/login page"
    assert text(c, ev["id"], ["user_name"]) == "Ana Lúcia"
    assert text(c, ev["id"], ["user_email"]) == "[REDACTED]"
    assert jtype(c, ev["id"], ["user_avatar"]) == "null"
    assert text(c, ev["id"], ["commits"]) == "[]"

    broken = branch.copy()
    drop_path(broken.body, "project.path_with_namespace")
    rejected_missing(c, wf, broken, ["project.path_with_namespace"])


# ---------------------------------------------------------------- SendGrid
def test_sendgrid_event_batches_are_the_items_parameter(c):
    docs = load("sendgrid", "event_batch_docs")
    wf = workflow(c)
    params = sample_json(c, wf, docs.body)
    assert [(r["name"], r["type"]) for r in params] == [("items", "array")]
    set_required(c, wf, ["items"])

    batch = load("sendgrid", "event_batch_delivered_open")
    ev = accepted(c, wf, batch)
    assert jtype(c, ev["id"], ["items"]) == "array"
    assert c.scalar("SELECT jsonb_array_length(params->'items') FROM webhook.events WHERE id = %s",
                    (ev["id"],)) == 2
    assert text(c, ev["id"], ["items", "0", "event"]) == "delivered"
    assert text(c, ev["id"], ["items", "1", "sg_machine_open"]) == "true"
    assert text(c, ev["id"], ["items", "0", "smtp-id"]) == "<FthKvOVnRRaTn3U43m1Svg@geopod-ismtpd-3>"
    assert ev["body"] == batch.raw_body().decode()

    ev = accepted(c, wf, docs)
    assert c.scalar("SELECT jsonb_array_length(params->'items') FROM webhook.events WHERE id = %s",
                    (ev["id"],)) == 11

    # The legacy one-event-per-POST shape (an object, not a batch) lacks items.
    single = batch.copy()
    single.body = batch.body[0]
    rejected_missing(c, wf, single, ["items"])


# ---------------------------------------------------------------- property
CORPUS = all_deliveries()


@pytest.mark.parametrize("delivery", CORPUS, ids=[d.id for d in CORPUS])
def test_every_delivery_passes_a_workflow_captured_from_itself_with_all_non_null_params_required(c, delivery):
    wf = workflow(c)
    capture(c, wf, delivery)
    rows = c.rows("SELECT name, source, sample FROM webhook.parameters WHERE workflow_id = %s", (wf,))
    assert rows, delivery.id
    names = sorted({r["name"] for r in rows if r["sample"] is not None})
    assert names, delivery.id
    set_required(c, wf, names)
    assert c.scalar("SELECT count(*) FROM webhook.parameters WHERE workflow_id = %s AND required",
                    (wf,)) >= len(names)
    ev = accepted(c, wf, delivery)
    assert ev["method"] == delivery.method
    if delivery.query:
        assert ev["raw_query"] == delivery.query
    raw = delivery.raw_body()
    if raw:
        assert ev["body"] == raw.decode()


# ------------------------------------------------ stored jsonb, byte for byte
# The listener builds its jsonb columns from the parsed values itself
# (src/pg/jsonb.rs) instead of printing them for jsonb_in: each one must
# be exactly the jsonb PostgreSQL makes of the same JSON. The same printed
# text, the same size once detoasted (`#> '{}'` returns the value whole), and
# containment both ways, which looks every key up by binary search in the
# sorted binary form and so fails on a misplaced key.
SAME_AS_POSTGRES = """
    {v}::text = {ref}::text AND {v} = {ref}
    AND pg_catalog.pg_column_size({v} #> '{{}}') = pg_catalog.pg_column_size({ref})
    AND {v} @> {ref} AND {ref} @> {v}"""

JSONB_COLUMNS_NOT_AS_POSTGRES = """
SELECT e.id, c.name, c.v::text
  FROM webhook.events e,
       LATERAL (VALUES ('query', e.query), ('headers', e.headers), ('params', e.params),
                       ('response', e.response)) AS c (name, v)
 WHERE e.workflow_id = %s AND c.v IS NOT NULL
   AND NOT (""" + SAME_AS_POSTGRES.format(v="c.v", ref="c.v::text::jsonb") + ")"


def test_every_delivery_is_stored_as_the_jsonb_postgresql_makes_of_it(c):
    wf = workflow(c)
    deliveries = all_deliveries()
    for d in deliveries:
        r = send(c, wf, d)
        assert r.status_code == 200, (d.id, r.status_code, r.text)
    # Numbers as jsonb keeps them (scale, exponents, more digits than a
    # double), strings that need escaping, an empty key, keys that sort by
    # length before bytes, and nesting.
    tricky = ('{"zero": 0, "negative_zero": -0, "one": 1.0, "scaled": -12.50, "exp": 1e3, '
              '"small": 1E-7, "big": 123456789012345678901234567890.000001, '
              '"text": "caf\\u00e9 \\u2713 \\ud83d\\ude00 tab\\t quote\\" back\\\\", "": "empty key", '
              '"b": [1, 2.5, {"aa": false, "a": null, "A": true, "ab": {"x": []}}], "aaa": {}, '
              '"ints": [7, -7, 10000, -99990000, 1700000010, 18446744073709551616, -9223372036854775808, '
              + "9" * 256 + ", " + "9" * 257 + ']}')
    r = requests.post(c.hook_url(wf), data=tricky.encode(), headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 200, r.text
    stored = c.row("SELECT count(*) AS events, count(*) FILTER (WHERE body = %s AND "
                   + SAME_AS_POSTGRES.format(v="params", ref="body::jsonb")
                   + ") AS tricky_as_postgres FROM webhook.events WHERE workflow_id = %s", (tricky, wf))
    assert stored == {"events": len(deliveries) + 1, "tricky_as_postgres": 1}
    # With no parameter list, a JSON body is its params whole (an array as
    # "items").
    whole_body = "(CASE jsonb_typeof(body::jsonb) WHEN 'array' THEN params -> 'items' ELSE params END)"
    json_bodies = c.row("SELECT count(*) AS events, count(*) FILTER (WHERE "
                        + SAME_AS_POSTGRES.format(v=whole_body, ref="body::jsonb")
                        + ") AS as_postgres FROM webhook.events WHERE workflow_id = %s "
                        "AND headers->>'content-type' LIKE 'application/json%%'", (wf,))
    expected = sum(1 for d in deliveries if (d.content_type or "").startswith("application/json")) + 1
    assert json_bodies == {"events": expected, "as_postgres": expected}
    assert c.rows(JSONB_COLUMNS_NOT_AS_POSTGRES, (wf,)) == []
