//! The providers' schemes as named definitions (verify/composed.rs): a preset
//! is nothing but a definition, listed by `webhook_verification_presets()` so
//! that a user can copy one and adjust it when a provider changes. Each one
//! follows the provider's own documentation and official SDK; the unit tests
//! below reproduce the vectors those publish, each named after its source
//! (the example deliveries' sources are in tests/e2e/corpus/README.md).

use serde_json::{Map, Value};

/// Name, definition (JSON), in the order they are listed.
pub const PRESETS: &[(&str, &str)] = &[
    // Standard Webhooks (Svix, Resend, Clerk, …): `webhook-signature:
    // v1,<base64>` (several, space-separated) over `{id}.{timestamp}.{body}`;
    // `whsec_` secrets. Each header may come under Svix's name instead, as
    // Svix's own libraries accept.
    (
        "standard-webhooks",
        r#"{"algorithm": "hmac-sha256", "signed": "{header:webhook-id|svix-id}.{timestamp}.{body}",
            "signature": "header:webhook-signature|svix-signature", "list": {"separator": " ", "pair": ",", "key": "v1"},
            "encoding": "base64", "secret_encoding": "whsec",
            "timestamp": {"from": "header:webhook-timestamp|svix-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    (
        "github",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:x-hub-signature-256", "prefix": "sha256=", "encoding": "hex"}"#,
    ),
    // Stripe: `Stripe-Signature: t=…,v1=…[,v1=…]` over `{t}.{body}`.
    (
        "stripe",
        r#"{"algorithm": "hmac-sha256", "signed": "{timestamp}.{body}",
            "signature": "header:stripe-signature", "list": {"separator": ",", "pair": "=", "key": "v1"},
            "encoding": "hex", "timestamp": {"from": "list:t", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    (
        "slack",
        r#"{"algorithm": "hmac-sha256", "signed": "v0:{timestamp}:{body}",
            "signature": "header:x-slack-signature", "prefix": "v0=", "encoding": "hex",
            "timestamp": {"from": "header:x-slack-request-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body.
    (
        "shopify",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:x-shopify-hmac-sha256", "encoding": "base64"}"#,
    ),
    // Twilio: HMAC-SHA1 (base64) of the URL Twilio called followed by the
    // form's parameters sorted; a JSON body is covered by the URL's
    // `bodySHA256` instead.
    (
        "twilio",
        r#"{"algorithm": "hmac-sha1", "signed": "{url}{form_sorted}",
            "signature": "header:x-twilio-signature", "encoding": "base64",
            "body_sha256": "param:bodySHA256"}"#,
    ),
    // GitLab: `X-Gitlab-Token` equal to the secret token.
    (
        "gitlab",
        r#"{"algorithm": "token", "signature": "header:x-gitlab-token"}"#,
    ),
    // `Authorization: Bearer <token>`.
    (
        "bearer",
        r#"{"algorithm": "token", "signature": "authorization:bearer"}"#,
    ),
    // `Authorization: Basic base64(user:password)`: each secret is
    // `user:password`, or the password when the definition has a username.
    (
        "basic",
        r#"{"algorithm": "token", "signature": "authorization:basic"}"#,
    ),
    // Svix (and the senders using it, such as Clerk): the Standard Webhooks
    // scheme under svix-* headers; `whsec_` secrets; several `v1,<sig>`
    // separated by spaces during a rotation.
    (
        "svix",
        r#"{"algorithm": "hmac-sha256", "signed": "{header:svix-id}.{timestamp}.{body}",
            "signature": "header:svix-signature", "list": {"separator": " ", "pair": ",", "key": "v1"},
            "encoding": "base64", "secret_encoding": "whsec",
            "timestamp": {"from": "header:svix-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Zoom: `x-zm-signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    (
        "zoom",
        r#"{"algorithm": "hmac-sha256", "signed": "v0:{timestamp}:{body}",
            "signature": "header:x-zm-signature", "prefix": "v0=", "encoding": "hex",
            "timestamp": {"from": "header:x-zm-request-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Twitch EventSub: message id, RFC 3339 timestamp and body, no separators.
    (
        "twitch",
        r#"{"algorithm": "hmac-sha256", "signed": "{header:twitch-eventsub-message-id}{timestamp}{body}",
            "signature": "header:twitch-eventsub-message-signature", "prefix": "sha256=", "encoding": "hex",
            "timestamp": {"from": "header:twitch-eventsub-message-timestamp", "format": "rfc3339", "tolerance_secs": 600}}"#,
    ),
    // HubSpot v3: method, URL (reserved characters' escapes decoded), body
    // and the timestamp in milliseconds.
    (
        "hubspot",
        r#"{"algorithm": "hmac-sha256", "signed": "{method}{url_unescaped}{body}{timestamp}",
            "signature": "header:x-hubspot-signature-v3", "encoding": "base64",
            "timestamp": {"from": "header:x-hubspot-request-timestamp", "format": "unix_ms", "tolerance_secs": 300}}"#,
    ),
    // Square: the notification URL followed by the body.
    (
        "square",
        r#"{"algorithm": "hmac-sha256", "signed": "{url}{body}",
            "signature": "header:x-square-hmacsha256-signature", "encoding": "base64"}"#,
    ),
    // Paddle Billing: `ts=…;h1=…[;h1=…]` over `{ts}:{body}`; the official
    // SDKs allow 5 seconds.
    (
        "paddle",
        r#"{"algorithm": "hmac-sha256", "signed": "{timestamp}:{body}",
            "signature": "header:paddle-signature", "list": {"separator": ";", "pair": "=", "key": "h1"},
            "encoding": "hex", "timestamp": {"from": "list:ts", "format": "unix", "tolerance_secs": 5}}"#,
    ),
    // Calendly: Stripe's `t=…,v1=…` under its own header; 3 minutes.
    (
        "calendly",
        r#"{"algorithm": "hmac-sha256", "signed": "{timestamp}.{body}",
            "signature": "header:calendly-webhook-signature", "list": {"separator": ",", "pair": "=", "key": "v1"},
            "encoding": "hex", "timestamp": {"from": "list:t", "format": "unix", "tolerance_secs": 180}}"#,
    ),
    // PagerDuty V3: `v1=<hex>[,v1=<hex>]`, one per active secret, over the body.
    (
        "pagerduty",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:x-pagerduty-signature", "list": {"separator": ",", "pair": "=", "key": "v1"},
            "encoding": "hex"}"#,
    ),
    // Discord interactions: Ed25519 over timestamp and body; the key is the
    // application's public key (hex).
    (
        "discord",
        r#"{"algorithm": "ed25519", "signed": "{timestamp}{body}",
            "signature": "header:x-signature-ed25519", "encoding": "hex", "secret_encoding": "hex",
            "timestamp": {"from": "header:x-signature-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // SendGrid Event Webhook: ECDSA P-256 over timestamp and body; the key is
    // the verification key as SendGrid shows it (base64 DER).
    (
        "sendgrid",
        r#"{"algorithm": "ecdsa-p256-sha256", "signed": "{timestamp}{body}",
            "signature": "header:x-twilio-email-event-webhook-signature", "encoding": "base64",
            "secret_encoding": "base64",
            "timestamp": {"from": "header:x-twilio-email-event-webhook-timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Mailgun: the signature is in the JSON body, over timestamp and token.
    (
        "mailgun",
        r#"{"algorithm": "hmac-sha256", "signed": "{timestamp}{field:signature.token}",
            "signature": "field:signature.signature", "encoding": "hex",
            "timestamp": {"from": "field:signature.timestamp", "format": "unix", "tolerance_secs": 300}}"#,
    ),
    // Telegram: the secret_token given to setWebhook, sent back as a header.
    (
        "telegram",
        r#"{"algorithm": "token", "signature": "header:x-telegram-bot-api-secret-token"}"#,
    ),
    // Meta (Facebook, Instagram, WhatsApp): the app secret over the body.
    (
        "meta",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:x-hub-signature-256", "prefix": "sha256=", "encoding": "hex"}"#,
    ),
    // Meta's endpoint check (a GET): `hub.verify_token` equal to the token
    // configured with the callback URL; for_method => 'GET' (with the
    // `meta` handshake, docs/verification.md).
    (
        "meta-verify-token",
        r#"{"algorithm": "token", "signature": "param:hub.verify_token"}"#,
    ),
    // Dropbox: the app secret over the body.
    (
        "dropbox",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:x-dropbox-signature", "encoding": "hex"}"#,
    ),
    // Linear: the body, whose webhookTimestamp (milliseconds) is checked
    // within a minute.
    (
        "linear",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:linear-signature", "encoding": "hex",
            "timestamp": {"from": "field:webhookTimestamp", "format": "unix_ms", "tolerance_secs": 60}}"#,
    ),
    // Intercom: `X-Hub-Signature: sha1=<hex>` with the app's client secret.
    (
        "intercom",
        r#"{"algorithm": "hmac-sha1", "signed": "{body}",
            "signature": "header:x-hub-signature", "prefix": "sha1=", "encoding": "hex"}"#,
    ),
    // Typeform: `Typeform-Signature: sha256=<base64>`.
    (
        "typeform",
        r#"{"algorithm": "hmac-sha256", "signed": "{body}",
            "signature": "header:typeform-signature", "prefix": "sha256=", "encoding": "base64"}"#,
    ),
];

/// The names of the presets.
pub fn names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|(name, _)| *name)
}

/// A preset's definition.
pub fn definition(name: &str) -> Option<Map<String, Value>> {
    let (_, text) = PRESETS.iter().find(|(n, _)| *n == name)?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => unreachable!("presets are JSON objects (tested)"),
    }
}

#[cfg(test)]
mod tests {
    //! The providers' published vectors, byte for byte (sources in
    //! docs/verification.md).
    use super::*;
    use crate::verify::{Failure, Scheme};

    fn preset(name: &str, secrets: &[&str]) -> Scheme {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Scheme::from_config(name, &secrets, &Map::new()).unwrap()
    }

    use crate::test_support::verify as check;

    /// A key of the kind `name`'s definition takes.
    fn sample_key(name: &str) -> &'static str {
        let definition = definition(name).unwrap();
        match definition["algorithm"].as_str().unwrap() {
            "ed25519" => "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "ecdsa-p256-sha256" => SENDGRID_V1_KEY,
            _ if definition.get("secret_encoding").is_some() => {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            }
            _ if definition["signature"] == "authorization:basic" => "user:secret",
            _ => "secret",
        }
    }

    #[test]
    fn every_preset_is_a_valid_definition() {
        for name in names() {
            preset(name, &[sample_key(name)]);
        }
        let mut seen = std::collections::HashSet::new();
        assert!(names().all(|n| seen.insert(n)), "names are unique");
    }

    #[test]
    fn hmac_and_token_presets_are_cheap_enough_for_the_network_thread() {
        let inline: Vec<&str> = names()
            .filter(|name| preset(name, &[sample_key(name)]).cheap_inline())
            .collect();
        let parser_thread: Vec<&str> = names().filter(|n| !inline.contains(n)).collect();
        assert_eq!(
            parser_thread,
            ["twilio", "discord", "sendgrid", "mailgun", "linear"]
        );
    }

    // Svix's documented example, in every official library's tests
    // (svix-webhooks, standard-webhooks: TestWebhookSign and others).
    #[test]
    fn svix_vectors() {
        let svix = preset("svix", &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = |sig: &'static str| {
            [
                ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("svix-timestamp", "1614265330"),
                ("svix-signature", sig),
            ]
        };
        assert_eq!(check(&svix, "POST", "", &h(sig), body, 1614265330), Ok(()));
        // Several signatures, the valid one among them (test_verify_with_multiple_signatures).
        let list = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=";
        assert_eq!(check(&svix, "POST", "", &h(list), body, 1614265330), Ok(()));
        assert_eq!(
            check(
                &svix,
                "POST",
                "",
                &h("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="),
                body,
                1614265330
            ),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&svix, "POST", "", &h("v1,"), body, 1614265330),
            Err(Failure::Malformed)
        );
        assert_eq!(
            check(&svix, "POST", "", &h("v1,g0hM9SsE"), body, 1614265330),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&svix, "POST", "", &h(sig), body, 1614265330 + 301),
            Err(Failure::StaleTimestamp)
        );
        // The Rust library's test_sign.
        let rust = preset("svix", &["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]);
        let h = [
            ("svix-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
            ("svix-timestamp", "1649367553"),
            (
                "svix-signature",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(check(&rust, "POST", "", &h, body, 1649367553), Ok(()));
    }

    // hubspot-api-python test_get_signature__v3 and hubspot-api-ruby's v3 spec.
    #[test]
    fn hubspot_v3_vectors() {
        let hubspot = preset("hubspot", &["yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"]);
        let body = b"{'example_field':'example_value'}";
        let url = "https://www.example.com/webhook_uri";
        let h = |ts: &'static str, sig: &'static str| {
            [
                ("x-hubspot-request-timestamp", ts),
                ("x-hubspot-signature-v3", sig),
            ]
        };
        let python = h(
            "1693657560000",
            "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        );
        assert_eq!(
            check(&hubspot, "POST", url, &python, body, 1693657560),
            Ok(())
        );
        let ruby = h(
            "1700000300000",
            "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=",
        );
        assert_eq!(
            check(&hubspot, "POST", url, &ruby, body, 1700000300),
            Ok(())
        );
        assert_eq!(
            check(&hubspot, "PUT", url, &ruby, body, 1700000300),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&hubspot, "POST", url, &ruby, body, 1700000601),
            Err(Failure::StaleTimestamp)
        );
        // The URL's escapes of reserved characters are decoded before signing.
        let escaped = "https://www.example.com%2Fwebhook_uri";
        assert_eq!(
            check(&hubspot, "POST", escaped, &ruby, body, 1700000300),
            Ok(())
        );
    }

    // square-nodejs-sdk and square-python-sdk WebhooksHelper tests.
    #[test]
    fn square_vectors() {
        let body = br#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#;
        let url = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
        let square = preset("square", &["Ibxx_5AKakO-3qeNVR61Dw"]);
        let h = [(
            "x-square-hmacsha256-signature",
            "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=",
        )];
        assert_eq!(check(&square, "POST", url, &h, body, 0), Ok(()));
        let one_less = "https://webhook.site/79a4f3a-dcfa-49ee-bac5-9d0edad886b9";
        assert_eq!(
            check(&square, "POST", one_less, &h, body, 0),
            Err(Failure::Mismatch)
        );
        let other_key = preset("square", &["MCmhFRxGX82xMwg5FsaoQA"]);
        assert_eq!(
            check(&other_key, "POST", url, &h, body, 0),
            Err(Failure::Mismatch)
        );
        let escaped = preset("square", &["signature-key"]);
        let h = [(
            "x-square-hmacsha256-signature",
            "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=",
        )];
        let body = br#"{"data":{"type":"webhooks","id":">id<"}}"#;
        assert_eq!(
            check(
                &escaped,
                "POST",
                "https://webhook.site/webhooks",
                &h,
                body,
                0
            ),
            Ok(())
        );
    }

    // paddle-python-sdk test_Verifier.py (also PHP VerifierTest).
    #[test]
    fn paddle_vectors() {
        let paddle = preset(
            "paddle",
            &["pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I"],
        );
        let body = br#"{"data":{"id":"ctm_01hs0tqf76sxmp7ba5e4mw1sc8","name":"John Doe","email":"blackhole+verification2@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:32:37.862Z","updated_at":"2024-03-15T10:32:37.862Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0tqfme2xwb2hvwv87p8y3w","event_type":"customer.created","occurred_at":"2024-03-15T10:32:38.286848Z","notification_id":"ntf_01hs0tqfrhgkyp39x4wyvy7h6n"}"#;
        let h = [(
            "paddle-signature",
            "ts=1710498758;h1=558bf93944dbeb4790c7a8af6cb2ea435c8ca9c8396aafc1a4e37424ac132744",
        )];
        assert_eq!(check(&paddle, "POST", "", &h, body, 1710498758), Ok(()));
        assert_eq!(
            check(&paddle, "POST", "", &h, body, 1710498764),
            Err(Failure::StaleTimestamp)
        );
        let special = br#"{"data":{"id":"ctm_01hs0t94g83hs5jdw282ztqa4z","name":"\u00dc\u00c4\u00c5\u00e5\u00d6\u00dc\u00c4\u00c5\u00e5\u00d6","email":"blackhole+verification1@paddle.com","locale":"en","status":"active","created_at":"2024-03-15T10:24:48.136Z","updated_at":"2024-03-15T10:24:48.136Z","custom_data":null,"import_meta":null,"marketing_consent":false},"event_id":"evt_01hs0t94tjvtv62azjmkbeysz7","event_type":"customer.created","occurred_at":"2024-03-15T10:24:48.466759Z","notification_id":"ntf_01hs0t94ws0ay8keh5t4rq70ht"}"#;
        let h = [(
            "paddle-signature",
            "ts=1710498288;h1=38219b3ba1578184e625c29d201a27cd25bd69e2ec9c3ab87dcb90d87ff73a41",
        )];
        assert_eq!(check(&paddle, "POST", "", &h, special, 1710498288), Ok(()));
        // Several h1 and several secrets (test_validate_paddle_signature_header_integrity).
        let rotating = preset(
            "paddle",
            &[
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
                "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh",
            ],
        );
        let h = [("paddle-signature", "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02")];
        assert_eq!(
            check(&rotating, "POST", "", &h, b"hello-world", 1696195954),
            Ok(())
        );
        assert_eq!(
            check(&rotating, "POST", "", &h, b"hello-world!", 1696195954),
            Err(Failure::Mismatch)
        );
    }

    // go-pagerduty webhookv3_test.go TestVerifySignature.
    #[test]
    fn pagerduty_vector() {
        // The Go test's defaultBody is this corpus delivery's body, compact.
        let corpus: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../tests/e2e/corpus/pagerduty/incident_priority_updated.json"
        ))
        .unwrap();
        let body = &serde_json::to_vec(&corpus["body"]).unwrap()[..];
        assert_eq!(body.len(), 1655);
        let pagerduty = preset(
            "pagerduty",
            &["lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK"],
        );
        let valid = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
        let mismatch = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";
        assert_eq!(
            check(
                &pagerduty,
                "POST",
                "",
                &[("x-pagerduty-signature", valid)],
                body,
                0
            ),
            Ok(())
        );
        let both = format!("{mismatch},{valid}");
        assert_eq!(
            check(
                &pagerduty,
                "POST",
                "",
                &[("x-pagerduty-signature", &both)],
                body,
                0
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &pagerduty,
                "POST",
                "",
                &[("x-pagerduty-signature", mismatch)],
                body,
                0
            ),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&pagerduty, "POST", "", &[], body, 0),
            Err(Failure::MissingHeader)
        );
    }

    // mailgun-php WebhookTest testVerifyWebhookGood / testVerifyWebhookBad.
    #[test]
    fn mailgun_vector() {
        let mailgun = preset("mailgun", &["key-3ax6xnjp29jd6fds4gc373sgvjxteol0"]);
        let body = |token: &str| {
            format!(
                r#"{{"signature":{{"timestamp":"1403645220","token":"{token}","signature":"9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33"}},"event-data":{{"event":"accepted"}}}}"#
            )
        };
        let json = [("content-type", "application/json")];
        let good = body("5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6");
        assert_eq!(
            check(&mailgun, "POST", "", &json, good.as_bytes(), 1403645220),
            Ok(())
        );
        let bad = body("owyldpe6nxhmrn78epljl6bj0orrki1u3d2v5e6cnlmmuox8jr");
        assert_eq!(
            check(&mailgun, "POST", "", &json, bad.as_bytes(), 1403645220),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&mailgun, "POST", "", &json, good.as_bytes(), 1403645521),
            Err(Failure::StaleTimestamp)
        );
    }

    pub(super) const SENDGRID_V1_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";

    // sendgrid-nodejs eventwebhook.spec.js (also sendgrid-python), and the Go SDK's.
    #[test]
    fn sendgrid_vectors() {
        let sendgrid = preset("sendgrid", &[SENDGRID_V1_KEY]);
        let body = b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
        let h = [
            ("x-twilio-email-event-webhook-signature", "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="),
            ("x-twilio-email-event-webhook-timestamp", "1600112502"),
        ];
        assert_eq!(check(&sendgrid, "POST", "", &h, body, 1600112502), Ok(()));
        assert_eq!(
            check(
                &sendgrid,
                "POST",
                "",
                &h,
                &body[..body.len() - 2],
                1600112502
            ),
            Err(Failure::Mismatch)
        );
        let other = preset("sendgrid", &["MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="]);
        assert_eq!(
            check(&other, "POST", "", &h, body, 1600112502),
            Err(Failure::Mismatch)
        );
        let go = preset("sendgrid", &["MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="]);
        let h = [
            ("x-twilio-email-event-webhook-signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0="),
            ("x-twilio-email-event-webhook-timestamp", "1588788367"),
        ];
        let body =
            br#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
        assert_eq!(check(&go, "POST", "", &h, body, 1588788367), Ok(()));
        let bad = [
            ("x-twilio-email-event-webhook-signature", "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0="),
            ("x-twilio-email-event-webhook-timestamp", "1588788367"),
        ];
        assert_eq!(
            check(&go, "POST", "", &bad, body, 1588788367),
            Err(Failure::Mismatch)
        );
    }

    // The WhatsApp Node SDK's "signature match" test.
    #[test]
    fn meta_vector() {
        let meta = preset("meta", &["TEST_APP_SECRET"]);
        let h = [(
            "x-hub-signature-256",
            "sha256=0c61947b610d4f45e65f3d680e26027121ec2413e77598bcb6cfc6e0d9888221",
        )];
        assert_eq!(check(&meta, "POST", "", &h, b"test", 0), Ok(()));
        assert_eq!(
            check(&meta, "POST", "", &h, b"tests", 0),
            Err(Failure::Mismatch)
        );
    }

    // RFC 8032 section 7.1 TEST 1 (Discord's SDKs publish no fixed vector):
    // the empty message signed with an empty timestamp header.
    #[test]
    fn discord_checks_rfc_8032_test_1() {
        let discord = preset(
            "discord",
            &["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"],
        );
        let sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let custom = Scheme::from_config(
            "custom",
            &["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".to_string()],
            serde_json::json!({"algorithm": "ed25519", "signed": "{body}", "signature": "header:x-signature-ed25519"})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            check(&custom, "POST", "", &[("x-signature-ed25519", sig)], b"", 0),
            Ok(())
        );
        assert_eq!(
            check(
                &custom,
                "POST",
                "",
                &[("x-signature-ed25519", sig)],
                b"x",
                0
            ),
            Err(Failure::Mismatch)
        );
        let h = [
            ("x-signature-ed25519", sig),
            ("x-signature-timestamp", "1700000000"),
        ];
        assert_eq!(
            check(&discord, "POST", "", &h, b"", 1700000000),
            Err(Failure::Mismatch)
        );
    }
}
