//! Providers' endpoint checks answered without a handler and without storing
//! an event: a provider sends one when an endpoint is registered (some again
//! from time to time) and expects an exact answer, usually an echo of a
//! challenge. Each workflow opts in to one kind (`webhook_set_handshake`).
//!
//! Dropbox's and Microsoft Graph's checks are not signed: they are answered
//! before verification (an echo of the challenge is all anyone gets). The
//! others are answered only once the request passed the workflow's
//! verification for its method: Slack, Twitch, Zoom and Discord sign theirs;
//! Meta's GET carries `hub.verify_token`, which the workflow verifies for GET
//! (docs/verification.md). Pure: the caller supplies the request.

use serde_json::{Map, Value};

use crate::request::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// POST `{"type":"url_verification","challenge":…}`: `{"challenge":…}`.
    Slack,
    /// GET `?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`: the
    /// challenge as text.
    Meta,
    /// `?validationToken=…` (form-encoded): the token as text.
    MsGraph,
    /// GET `?challenge=…`: the challenge as text, with `nosniff`.
    Dropbox,
    /// `Twitch-Eventsub-Message-Type: webhook_callback_verification`: the
    /// body's `challenge` as text.
    Twitch,
    /// `{"event":"endpoint.url_validation","payload":{"plainToken":…}}`:
    /// `{"plainToken":…,"encryptedToken": hex HMAC-SHA256(secret, plainToken)}`.
    Zoom,
    /// An interaction of type 1 (PING): `{"type":1}`.
    Discord,
}

/// The names `webhook_set_handshake` takes, in order.
pub const NAMES: &[&str] = &[
    "slack", "meta", "msgraph", "dropbox", "twitch", "zoom", "discord",
];

/// Longest challenge echoed (providers send tens of bytes; a longer one is
/// not a handshake and goes on as a request).
const MAX_CHALLENGE_BYTES: usize = 1024;

/// What a handshake looks at.
pub struct HandshakeRequest<'a> {
    pub method: &'a str,
    /// Lower-case header names.
    pub headers: &'a Map<String, Value>,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub body: &'a [u8],
    /// The workflow's first active secret (Zoom's answer is signed with it).
    pub secret: Option<&'a [u8]>,
}

impl HandshakeRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }

    fn field(&self, path: &[&str]) -> Option<String> {
        let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        crate::verify::json_scalar(self.body, &path)
    }
}

fn echo(challenge: String) -> Option<Response> {
    (!challenge.is_empty() && challenge.len() <= MAX_CHALLENGE_BYTES).then(|| Response {
        status: 200,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: challenge.into_bytes(),
    })
}

fn json(value: Value) -> Response {
    Response::json(200, &value)
}

impl Handshake {
    pub fn parse(name: &str) -> Result<Handshake, String> {
        Ok(match name {
            "slack" => Handshake::Slack,
            "meta" => Handshake::Meta,
            "msgraph" => Handshake::MsGraph,
            "dropbox" => Handshake::Dropbox,
            "twitch" => Handshake::Twitch,
            "zoom" => Handshake::Zoom,
            "discord" => Handshake::Discord,
            _ => return Err(format!("unknown handshake (one of {})", NAMES.join(", "))),
        })
    }

    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// Whether the provider's check is unsigned, and so answered before the
    /// workflow's verification.
    pub fn before_verification(self) -> bool {
        matches!(self, Handshake::Dropbox | Handshake::MsGraph)
    }

    /// The answer, when the request is this handshake.
    pub fn answer(self, request: &HandshakeRequest<'_>) -> Option<Response> {
        let post = request.method == "POST";
        match self {
            Handshake::Slack => (post
                && request.field(&["type"]).as_deref() == Some("url_verification"))
            .then(|| request.field(&["challenge"]))
            .flatten()
            .filter(|c| !c.is_empty() && c.len() <= MAX_CHALLENGE_BYTES)
            .map(|challenge| json(serde_json::json!({ "challenge": challenge }))),
            Handshake::Meta => {
                let subscribe = request.param("hub.mode").as_deref() == Some("subscribe");
                (request.method == "GET" && subscribe)
                    .then(|| request.param("hub.challenge"))
                    .flatten()
                    .and_then(echo)
            }
            Handshake::MsGraph => request.param("validationToken").and_then(echo),
            Handshake::Dropbox => {
                let mut answer = (request.method == "GET")
                    .then(|| request.param("challenge"))
                    .flatten()
                    .and_then(echo)?;
                answer
                    .headers
                    .push(("x-content-type-options".into(), "nosniff".into()));
                Some(answer)
            }
            Handshake::Twitch => {
                let verification = request.header("twitch-eventsub-message-type")
                    == Some("webhook_callback_verification");
                (post && verification)
                    .then(|| request.field(&["challenge"]))
                    .flatten()
                    .and_then(echo)
            }
            Handshake::Zoom => {
                if !post || request.field(&["event"]).as_deref() != Some("endpoint.url_validation")
                {
                    return None;
                }
                let plain = request.field(&["payload", "plainToken"])?;
                if plain.is_empty() || plain.len() > MAX_CHALLENGE_BYTES {
                    return None;
                }
                let secret = request.secret?;
                let encrypted = crate::verify::hmac_sha256_hex(secret, plain.as_bytes());
                Some(json(
                    serde_json::json!({"plainToken": plain, "encryptedToken": encrypted}),
                ))
            }
            Handshake::Discord => (post && request.field(&["type"]).as_deref() == Some("1"))
                .then(|| json(serde_json::json!({"type": 1}))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    fn answer(
        kind: &str,
        method: &str,
        query: &str,
        pairs: &[(&str, &str)],
        body: &str,
        secret: Option<&[u8]>,
    ) -> Answer {
        let headers = headers(pairs);
        Handshake::parse(kind)
            .unwrap()
            .answer(&HandshakeRequest {
                method,
                headers: &headers,
                query,
                body: body.as_bytes(),
                secret,
            })
            .map(|r| (r.status, r.headers, String::from_utf8(r.body).unwrap()))
    }

    type Answer = Option<(u16, Vec<(String, String)>, String)>;

    fn content_type(value: &str) -> Vec<(String, String)> {
        vec![("content-type".into(), value.into())]
    }

    fn text(body: &str) -> Answer {
        Some((200, content_type("text/plain; charset=utf-8"), body.into()))
    }

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            assert_eq!(Handshake::parse(name).unwrap().name(), *name);
        }
        assert_eq!(
            Handshake::parse("stripe").unwrap_err(),
            "unknown handshake (one of slack, meta, msgraph, dropbox, twitch, zoom, discord)"
        );
    }

    #[test]
    fn slack_url_verification() {
        let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        assert_eq!(
            answer("slack", "POST", "", &[], body, None),
            Some((
                200,
                content_type("application/json"),
                r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#.into()
            ))
        );
        assert_eq!(
            answer(
                "slack",
                "POST",
                "",
                &[],
                r#"{"type":"event_callback","challenge":"x"}"#,
                None
            ),
            None
        );
    }

    #[test]
    fn meta_dropbox_and_msgraph_echo_their_challenge() {
        let q = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock";
        assert_eq!(answer("meta", "GET", q, &[], "", None), text("1158201444"));
        assert_eq!(answer("meta", "POST", q, &[], "", None), None);
        assert_eq!(
            answer("meta", "GET", "hub.challenge=1", &[], "", None),
            None
        );
        let dropbox = answer("dropbox", "GET", "challenge=abc123", &[], "", None).unwrap();
        assert_eq!(
            dropbox.1,
            vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("x-content-type-options".into(), "nosniff".into())
            ]
        );
        assert_eq!(dropbox.2, "abc123");
        assert_eq!(answer("dropbox", "GET", "", &[], "", None), None);
        let token = "validationToken=Validation%3a+Testing+client+application+reachability";
        assert_eq!(
            answer("msgraph", "POST", token, &[], "", None),
            text("Validation: Testing client application reachability")
        );
        assert_eq!(
            answer(
                "msgraph",
                "POST",
                &format!("validationToken={}", "a".repeat(1025)),
                &[],
                "",
                None
            ),
            None
        );
    }

    #[test]
    fn twitch_zoom_and_discord() {
        let body =
            r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387"}}"#;
        let h = [(
            "twitch-eventsub-message-type",
            "webhook_callback_verification",
        )];
        assert_eq!(
            answer("twitch", "POST", "", &h, body, None),
            text("pogchamp-kappa-360noscope-vohiyo")
        );
        assert_eq!(
            answer(
                "twitch",
                "POST",
                "",
                &[("twitch-eventsub-message-type", "notification")],
                body,
                None
            ),
            None
        );

        let zoom = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
        let expected = crate::verify::hmac_sha256_hex(b"secret-token", b"qgg8vlvZRS6UYooatFL8Aw");
        assert_eq!(
            answer("zoom", "POST", "", &[], zoom, Some(b"secret-token"))
                .unwrap()
                .2,
            format!(r#"{{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"{expected}"}}"#)
        );
        assert_eq!(answer("zoom", "POST", "", &[], zoom, None), None);
        assert_eq!(
            answer(
                "zoom",
                "POST",
                "",
                &[],
                r#"{"event":"meeting.started"}"#,
                Some(b"s")
            ),
            None
        );

        let ping = r#"{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}"#;
        assert_eq!(
            answer("discord", "POST", "", &[], ping, None),
            Some((
                200,
                content_type("application/json"),
                r#"{"type":1}"#.into()
            ))
        );
        assert_eq!(
            answer("discord", "POST", "", &[], r#"{"type":2}"#, None),
            None
        );
    }
}
