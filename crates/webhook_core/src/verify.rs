//! Verifying senders: the signature and token schemes of real webhook
//! providers, checked against the exact bytes received, before anything of
//! the request is used. Comparisons are constant-time; several secrets may be
//! active at once (rotation). Pure: the caller supplies the headers, the raw
//! body, the public URL and the current time.
//!
//! [`Scheme::from_config`] builds a scheme from what `webhook_set_verification`
//! stores (sql/api.sql); its errors never contain a secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

mod composed;
pub mod presets;
pub use composed::{Composed, Credentials};

use crate::body::{BodyError, MemoryBudget, Unbudgeted};
use crate::request::Response;

/// Most secrets active at once: every request that fails verification costs
/// one HMAC per secret, so the number is kept small.
const MAX_SECRETS: usize = 10;

/// Longest secret: HMAC hashes a longer key on every request, and a tenant
/// must not be able to make each forged request to its workflow cost the
/// listener milliseconds.
const MAX_SECRET_BYTES: usize = 4096;

/// Longest text option of the `hmac` shorthand (header name, prefix,
/// separator).
const MAX_OPTION_BYTES: usize = 256;

/// Most signatures looked at in one header (Standard Webhooks, Stripe allow
/// several); more are ignored, so a forged header cannot multiply the work.
const MAX_SIGNATURES: usize = 10;

/// The value stored in place of a credential header.
pub const REDACTED: &str = "[redacted]";

/// Headers that carry credentials: stored redacted in events, rejections and
/// samples, after verification has used them.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-gitlab-token",
    "x-api-key",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// A workflow's verification: a scheme composed from parts
/// (verify/composed.rs), whether it came from a preset, the `hmac`
/// shorthand or a definition of one's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheme(Composed);

/// What a scheme looks at.
pub struct SignedRequest<'a> {
    /// Lower-case header names (repeated headers joined with ", ").
    pub headers: &'a Map<String, Value>,
    /// The body exactly as received.
    pub body: &'a [u8],
    /// The URL the sender called, as it knows it (`webhook.public_base_url`
    /// plus path and query string); empty unless the scheme signs it
    /// ([`Scheme::signs_url`]).
    pub url: &'a str,
    /// The HTTP method, as sent.
    pub method: &'a str,
    pub now_unix: i64,
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    /// The URL's path (from the first `/` after the host, without the query).
    fn path(&self) -> &str {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(self.url, |(_, rest)| rest);
        let from_path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
        from_path
            .split_once('?')
            .map_or(from_path, |(path, _)| path)
    }

    /// The URL's raw query string, without `?`.
    fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, query)| query)
    }
}

/// Why a request failed verification (answered 401; the reason is counted
/// with the rejection, never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    MissingHeader,
    Malformed,
    StaleTimestamp,
    Mismatch,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::MissingHeader => "signature header missing",
            Failure::Malformed => "signature header malformed",
            Failure::StaleTimestamp => "timestamp outside the tolerance",
            Failure::Mismatch => "signature does not match",
        }
    }
}

/// A configuration `webhook_set_verification` refuses. The message names the
/// problem and never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The ten scheme names `webhook_set_verification` has always had, in the
/// order error messages list them. All but `hmac` are presets
/// (verify/presets.rs); `hmac` is a shorthand whose options write a
/// definition ([`hmac_definition`]).
const SCHEME_NAMES: &[&str] = &[
    "standard-webhooks",
    "github",
    "stripe",
    "slack",
    "shopify",
    "twilio",
    "gitlab",
    "hmac",
    "bearer",
    "basic",
];

/// Every name `webhook_set_verification` takes: the ten schemes, the
/// providers' presets, and `custom` (a definition of one's own).
pub fn scheme_names() -> impl Iterator<Item = &'static str> {
    SCHEME_NAMES
        .iter()
        .copied()
        .chain(presets::names().filter(|name| !SCHEME_NAMES.contains(name)))
        .chain(std::iter::once("custom"))
}

/// A Standard Webhooks secret: `whsec_` followed by base64 (the prefix is
/// optional); `None` if it is not base64.
fn standard_webhooks_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

/// Hex HMAC-SHA256 of `message` under `key` (Zoom's handshake answer).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex(&mac(Algorithm::Sha256, key, &[message]))
}

/// A scalar of a JSON document at `path` (object keys) as text, found
/// without building the rest of the document; `None` if there is none.
pub fn json_scalar(body: &[u8], path: &[String]) -> Option<String> {
    composed::json_scalar(body, path)
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Whether two tokens are equal, in time that tells nothing of either (not
/// even its length): their SHA-256 digests are compared.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl From<Composed> for Scheme {
    fn from(composed: Composed) -> Scheme {
        Scheme(composed)
    }
}

impl Scheme {
    /// Checks a request, without a memory budget ([`Scheme::verify_within`] with
    /// [`Unbudgeted`]). A form whose sorted parameters would take more memory than
    /// its allowance fails as malformed.
    pub fn verify(&self, request: &SignedRequest<'_>) -> Result<(), Failure> {
        self.0
            .verify_within(request, &mut Unbudgeted)
            .unwrap_or(Err(Failure::Malformed))
    }

    /// Checks a request, asking `budget` first for the memory the check
    /// takes beyond the body: a sorted form and body fields in proportion to
    /// the body, a copy of the signed content for Ed25519. The outer error is
    /// [`BodyError::Busy`] or [`BodyError::ParamsTooLarge`] (a sorted form's
    /// allowance is that of a parsed body of the same length).
    pub fn verify_within(
        &self,
        request: &SignedRequest<'_>,
        budget: &mut dyn MemoryBudget,
    ) -> Result<Result<(), Failure>, BodyError> {
        self.0.verify_within(request, budget)
    }

    /// The first active secret, for schemes that have secrets (Zoom's
    /// handshake answer is signed with it).
    pub fn first_secret(&self) -> Option<&[u8]> {
        self.0.first_secret()
    }

    /// Whether checking a small body takes microseconds (an HMAC or a token
    /// over headers and the body), so it may run on the network thread;
    /// sorting a form, public keys and body fields cost more.
    pub fn cheap_inline(&self) -> bool {
        self.0.cheap_inline()
    }

    /// The headers a token scheme reads its token from (stored redacted
    /// like the credential headers).
    pub fn token_headers(&self) -> &[String] {
        self.0.token_headers()
    }

    /// Whether the scheme needs the URL the sender called (the caller builds
    /// it only then).
    pub fn signs_url(&self) -> bool {
        self.0.signs_url()
    }

    /// The 401 a request that failed verification gets: schemes reading
    /// `Authorization` say which credentials they want.
    pub fn refusal(&self) -> Response {
        let refusal = Response::error(401, self.refusal_message());
        match self.0.credentials() {
            Some(Credentials::Bearer) => refusal.with_header("www-authenticate", "Bearer"),
            Some(Credentials::Basic) => {
                refusal.with_header("www-authenticate", "Basic realm=\"webhook\"")
            }
            None => refusal,
        }
    }

    /// The `msg` of [`Scheme::refusal`]; with a [`Failure::reason`] after it,
    /// what the refusal is counted as.
    pub fn refusal_message(&self) -> &'static str {
        if self.0.credentials().is_some() {
            "Invalid credentials"
        } else if self.0.is_token() {
            "Invalid token"
        } else {
            "Invalid signature"
        }
    }

    /// Builds a scheme from its stored configuration: `name` (one of
    /// [`scheme_names`]), the active secrets, and the options. A preset
    /// takes the options its definition leaves open (`tolerance_secs` when
    /// it has a timestamp, `username` for `basic`); `hmac` takes its own
    /// ([`hmac_definition`]); `custom`'s options are its definition.
    pub fn from_config(
        name: &str,
        secrets: &[String],
        options: &Map<String, Value>,
    ) -> Result<Scheme, ConfigError> {
        let definition = if name == "custom" {
            options.clone()
        } else if name == "hmac" {
            hmac_definition(options)?
        } else if let Some(mut definition) = presets::definition(name) {
            for (key, value) in options {
                let open = match key.as_str() {
                    "tolerance_secs" => definition.contains_key("timestamp"),
                    "username" => {
                        definition.get("signature").and_then(Value::as_str)
                            == Some("authorization:basic")
                    }
                    _ => false,
                };
                if !open {
                    return Err(ConfigError(format!(
                        "option {key} does not apply to the {name} scheme"
                    )));
                }
                definition.insert(key.clone(), value.clone());
            }
            definition
        } else {
            // The value is not repeated: a secret passed in the wrong
            // position would end up in the error and the server log.
            return Err(ConfigError(format!(
                "unknown verification scheme (one of {})",
                scheme_names().collect::<Vec<_>>().join(", ")
            )));
        };
        if secrets.is_empty() && name != "custom" {
            return Err(ConfigError(format!("the {name} scheme needs a secret")));
        }
        Composed::from_definition(&definition, secrets).map(Scheme)
    }
}

/// The definition the `hmac` shorthand's options write: `header` (the
/// signature's), `algorithm` (`sha1`, `sha256`, `sha512`), `encoding` (`hex`,
/// `base64`), `prefix`, and optionally `timestamp_header` with `separator`
/// (default `.`) and `tolerance_secs`: the signature is then over the
/// timestamp, the separator and the body.
fn hmac_definition(options: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    const OPTIONS: &[&str] = &[
        "header",
        "algorithm",
        "encoding",
        "prefix",
        "timestamp_header",
        "separator",
        "tolerance_secs",
    ];
    if let Some(key) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(ConfigError(format!(
            "option {key} does not apply to the hmac scheme"
        )));
    }
    let text = |key: &str| -> Result<Option<&str>, ConfigError> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > MAX_OPTION_BYTES => Err(ConfigError(format!(
                "option {key} is longer than {MAX_OPTION_BYTES} bytes"
            ))),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ConfigError(format!("option {key} must be text"))),
        }
    };
    let header = text("header")?
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ConfigError("the hmac scheme needs header => …".into()))?;
    let algorithm = match text("algorithm")? {
        None | Some("sha256") => "hmac-sha256",
        Some("sha1") => "hmac-sha1",
        Some("sha512") => "hmac-sha512",
        Some(_) => {
            return Err(ConfigError(
                "the algorithm is not sha1, sha256 or sha512".into(),
            ))
        }
    };
    let encoding = match text("encoding")? {
        None | Some("hex") => "hex",
        Some("base64") => "base64",
        Some(_) => return Err(ConfigError("the encoding is not hex or base64".into())),
    };
    let timestamp_header = text("timestamp_header")?
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let separator = text("separator")?;
    let mut definition = Map::new();
    definition.insert("algorithm".into(), algorithm.into());
    definition.insert("signature".into(), format!("header:{header}").into());
    definition.insert("encoding".into(), encoding.into());
    if let Some(prefix) = text("prefix")? {
        definition.insert("prefix".into(), prefix.into());
    }
    match timestamp_header {
        None if separator.is_some() || options.contains_key("tolerance_secs") => {
            return Err(ConfigError(
                "separator and tolerance apply only with timestamp_header => …".into(),
            ))
        }
        None => {
            definition.insert("signed".into(), "{body}".into());
        }
        Some(timestamp_header) => {
            // The separator is literal text of the template.
            let separator = separator
                .unwrap_or(".")
                .replace('{', "{{")
                .replace('}', "}}");
            definition.insert(
                "signed".into(),
                format!("{{timestamp}}{separator}{{body}}").into(),
            );
            let mut timestamp = Map::new();
            timestamp.insert("from".into(), format!("header:{timestamp_header}").into());
            timestamp.insert("format".into(), "unix".into());
            if let Some(tolerance) = options.get("tolerance_secs") {
                timestamp.insert("tolerance_secs".into(), tolerance.clone());
            }
            definition.insert("timestamp".into(), Value::Object(timestamp));
        }
    }
    Ok(definition)
}

/// Replaces the values of credential headers ([`CREDENTIAL_HEADERS`] and
/// the workflow's own `extra` names, any case) with [`REDACTED`].
pub fn redact_headers(headers: &mut Map<String, Value>, extra: &[String]) {
    for (name, value) in headers.iter_mut() {
        if is_credential_header(name, extra) {
            *value = Value::String(REDACTED.into());
        }
    }
}

/// Whether a header (lower-case name) is stored redacted.
fn is_credential_header(name: &str, extra: &[String]) -> bool {
    CREDENTIAL_HEADERS.contains(&name) || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::headers;

    fn check(
        scheme: &Scheme,
        pairs: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), Failure> {
        check_url(scheme, pairs, body, "", now)
    }

    fn check_url(
        scheme: &Scheme,
        pairs: &[(&str, &str)],
        body: &[u8],
        url: &str,
        now: i64,
    ) -> Result<(), Failure> {
        let headers = headers(pairs);
        scheme.verify(&SignedRequest {
            headers: &headers,
            body,
            url,
            method: "POST",
            now_unix: now,
        })
    }

    fn config(name: &str, secrets: &[&str], options: Value) -> Result<Scheme, ConfigError> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Scheme::from_config(name, &secrets, options.as_object().unwrap())
    }

    // GitHub's documented example (docs: "Validating webhook deliveries").
    #[test]
    fn github_documented_example() {
        let scheme = config(
            "github",
            &["It's a Secret to Everybody"],
            serde_json::json!({}),
        )
        .unwrap();
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = [("x-hub-signature-256", sig)];
        assert_eq!(check(&scheme, &h, b"Hello, World!", 0), Ok(()));
        assert_eq!(
            check(&scheme, &h, b"Hello, World?", 0),
            Err(Failure::Mismatch)
        );
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", sig[7..].to_ascii_uppercase());
        assert_eq!(
            check(
                &scheme,
                &[("x-hub-signature-256", &upper)],
                b"Hello, World!",
                0
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &scheme,
                &[("x-hub-signature-256", &sig[7..])],
                b"Hello, World!",
                0
            ),
            Err(Failure::Malformed)
        );
        assert_eq!(
            check(&scheme, &[], b"Hello, World!", 0),
            Err(Failure::MissingHeader)
        );
    }

    // The Standard Webhooks reference vector (standard-webhooks spec, libraries' tests).
    #[test]
    fn standard_webhooks_reference_vector_and_rotation() {
        let scheme = config(
            "standard-webhooks",
            &[
                "whsec_c2VjcmV0LW9sZA==",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
            serde_json::json!({}),
        )
        .unwrap();
        let body = br#"{"test": 2432232314}"#;
        let h = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldmVu v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        assert_eq!(check(&scheme, &h, body, 1_614_265_330), Ok(()));
        assert_eq!(check(&scheme, &h, body, 1_614_265_330 + 300), Ok(()));
        assert_eq!(check(&scheme, &h, body, 1_614_265_330 - 300), Ok(()));
        assert_eq!(
            check(&scheme, &h, body, 1_614_265_330 + 301),
            Err(Failure::StaleTimestamp)
        );
        assert_eq!(
            check(&scheme, &h, br#"{"test": 2432232315}"#, 1_614_265_330),
            Err(Failure::Mismatch)
        );
        // Svix's names for the same headers.
        let svix = h.map(|(name, value)| (name.replacen("webhook-", "svix-", 1), value));
        let svix: Vec<(&str, &str)> = svix.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(check(&scheme, &svix, body, 1_614_265_330), Ok(()));
        // The timestamp is signed: moving it breaks the signature.
        let mut moved = h;
        moved[1] = ("webhook-timestamp", "1614265331");
        assert_eq!(
            check(&scheme, &moved, body, 1_614_265_330),
            Err(Failure::Mismatch)
        );
        // Only the older secret: the new signature does not match it.
        let old_only = config(
            "standard-webhooks",
            &["whsec_c2VjcmV0LW9sZA=="],
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(
            check(&old_only, &h, body, 1_614_265_330),
            Err(Failure::Mismatch)
        );
        // A huge or negative timestamp is stale, never an overflow.
        let mut far = h;
        far[1] = ("webhook-timestamp", "-9223372036854775808");
        assert_eq!(
            check(&scheme, &far, body, 1_614_265_330),
            Err(Failure::StaleTimestamp)
        );
    }

    // Slack's worked example (api.slack.com "Verifying requests from Slack"),
    // byte for byte; expected values for Stripe and Shopify computed
    // independently with Python's hmac module.
    #[test]
    fn stripe_slack_and_shopify() {
        let stripe = config("stripe", &["whsec_test_secret"], serde_json::json!({})).unwrap();
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let sig = "t=1700000000,v1=22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31,v0=ignored";
        let h = [("stripe-signature", sig)];
        assert_eq!(check(&stripe, &h, body, 1_700_000_100), Ok(()));
        assert_eq!(
            check(&stripe, &h, body, 1_700_000_400),
            Err(Failure::StaleTimestamp)
        );
        assert_eq!(
            check(
                &stripe,
                &[("stripe-signature", "v1=22d8")],
                body,
                1_700_000_100
            ),
            Err(Failure::Malformed)
        );

        let slack = config(
            "slack",
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            serde_json::json!({"tolerance_secs": 400_000_000}),
        )
        .unwrap();
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = [
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ];
        assert_eq!(check(&slack, &h, body, 1_700_000_000), Ok(()));
        assert_eq!(
            check(&slack, &h, &body[1..], 1_700_000_000),
            Err(Failure::Mismatch)
        );
        let strict = config(
            "slack",
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(
            check(&strict, &h, body, 1_700_000_000),
            Err(Failure::StaleTimestamp)
        );

        let shopify = config("shopify", &["shpss_secret"], serde_json::json!({})).unwrap();
        let h = [(
            "x-shopify-hmac-sha256",
            "2/nwdMKrCfMJt6FFPLqqjMOnFaC9UHjJ/AWyUAEJ2Io=",
        )];
        assert_eq!(
            check(&shopify, &h, br#"{"id":820982911946154500}"#, 0),
            Ok(())
        );
        assert_eq!(
            check(&shopify, &h, br#"{"id":820982911946154501}"#, 0),
            Err(Failure::Mismatch)
        );
    }

    // twilio-python's RequestValidator tests (tests/unit/test_request_validator.py).
    #[test]
    fn twilio_published_vectors() {
        let twilio = config("twilio", &["12345"], serde_json::json!({})).unwrap();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";
        fn signed(sig: &str) -> [(&str, &str); 2] {
            [
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", sig),
            ]
        }
        assert_eq!(
            check_url(
                &twilio,
                &signed("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
                body,
                url,
                0
            ),
            Ok(())
        );
        assert_eq!(
            check_url(
                &twilio,
                &signed("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
                &body[1..],
                url,
                0
            ),
            Err(Failure::Mismatch)
        );
        // The URL is signed: another query string does not match.
        assert_eq!(
            check_url(
                &twilio,
                &signed("RSOYDt4T1cUTdK1PDd93/VVr8B8="),
                body,
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                0
            ),
            Err(Failure::Mismatch)
        );
        // Repeated names: sorted by name, then value.
        let body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(
            check_url(
                &twilio,
                &signed("IK+Dwps556ElfBT0I3Rgjkr1wJU="),
                body,
                url,
                0
            ),
            Ok(())
        );
        // A body the signature does not cover (no form, no bodySHA256): a
        // signature over the URL alone must not carry it.
        let url_only = ("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(
            check_url(
                &twilio,
                &[("content-type", "application/json"), url_only],
                br#"{"Body":"transfer"}"#,
                url,
                0
            ),
            Err(Failure::Malformed)
        );
        // A JSON body: the URL carries its SHA-256 and is signed alone.
        let json = br#"{"property": "value", "boolean": true}"#;
        let url_with_hash = format!(
            "{url}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        let h = [
            ("content-type", "application/json"),
            ("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4="),
        ];
        assert_eq!(check_url(&twilio, &h, json, &url_with_hash, 0), Ok(()));
        assert_eq!(
            check_url(
                &twilio,
                &h,
                br#"{"property": "value", "boolean": false}"#,
                &url_with_hash,
                0
            ),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn generic_hmac() {
        // sha512 base64 over ts.body; expected from Python's hmac module:
        // base64(hmac.new(b"k", b"1700000000.hello", "sha512").digest())
        let scheme = config(
            "hmac",
            &["k"],
            serde_json::json!({"header": "X-Sig", "algorithm": "sha512", "encoding": "base64",
                               "prefix": "v1=", "timestamp_header": "X-Ts"}),
        )
        .unwrap();
        let expected = format!(
            "v1={}",
            STANDARD.encode(mac(Algorithm::Sha512, b"k", &[b"1700000000.hello"]))
        );
        let h = [("x-sig", expected.as_str()), ("x-ts", "1700000000")];
        assert_eq!(check(&scheme, &h, b"hello", 1_700_000_010), Ok(()));
        assert_eq!(
            check(&scheme, &h, b"hellO", 1_700_000_010),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&scheme, &h, b"hello", 1_700_001_000),
            Err(Failure::StaleTimestamp)
        );
        assert_eq!(
            check(&scheme, &h[..1], b"hello", 1_700_000_010),
            Err(Failure::MissingHeader)
        );
        let unprefixed = &expected[3..];
        assert_eq!(
            check(
                &scheme,
                &[("x-sig", unprefixed), ("x-ts", "1700000000")],
                b"hello",
                1_700_000_010
            ),
            Err(Failure::Malformed)
        );
        // sha1 hex over the body alone; known value of HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog").
        let sha1 = config(
            "hmac",
            &["key"],
            serde_json::json!({"header": "x-sig", "algorithm": "sha1"}),
        )
        .unwrap();
        assert_eq!(
            check(
                &sha1,
                &[("x-sig", "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9")],
                b"The quick brown fox jumps over the lazy dog",
                0
            ),
            Ok(())
        );
    }

    #[test]
    fn tokens_and_basic_credentials() {
        let gitlab = config("gitlab", &["new", "old"], serde_json::json!({})).unwrap();
        assert_eq!(check(&gitlab, &[("x-gitlab-token", "old")], b"", 0), Ok(()));
        assert_eq!(
            check(&gitlab, &[("x-gitlab-token", "ol")], b"", 0),
            Err(Failure::Mismatch)
        );
        let bearer = config("bearer", &["s3cret"], serde_json::json!({})).unwrap();
        assert_eq!(
            check(&bearer, &[("authorization", "bearer s3cret")], b"", 0),
            Ok(())
        );
        assert_eq!(
            check(&bearer, &[("authorization", "Basic s3cret")], b"", 0),
            Err(Failure::Malformed)
        );
        let basic = config("basic", &["ann:pw"], serde_json::json!({})).unwrap();
        // base64("ann:pw") = YW5uOnB3
        assert_eq!(
            check(&basic, &[("authorization", "Basic YW5uOnB3")], b"", 0),
            Ok(())
        );
        assert_eq!(
            check(&basic, &[("authorization", "Basic YW5uOnB4")], b"", 0),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&basic, &[("authorization", "Basic !!")], b"", 0),
            Err(Failure::Malformed)
        );
        let by_user = config("basic", &["pw"], serde_json::json!({"username": "ann"})).unwrap();
        assert_eq!(
            check(&by_user, &[("authorization", "Basic YW5uOnB3")], b"", 0),
            Ok(())
        );
    }

    #[test]
    fn configuration_errors_name_the_problem_and_never_a_secret() {
        let cases: &[(&str, &[&str], Value, &str)] = &[
            (
                "githab",
                &["s3cret-1"],
                serde_json::json!({}),
                "unknown verification scheme (one of standard-webhooks, github, stripe, slack, shopify, twilio, gitlab, hmac, bearer, basic, svix, zoom, twitch, hubspot, square, paddle, calendly, pagerduty, discord, sendgrid, mailgun, telegram, meta, meta-verify-token, dropbox, linear, intercom, typeform, custom)",
            ),
            (
                "github",
                &[],
                serde_json::json!({}),
                "the github scheme needs a secret",
            ),
            (
                "github",
                &["s3cret-1", ""],
                serde_json::json!({}),
                "secret 2 is empty",
            ),
            (
                "github",
                &["s3cret-1"],
                serde_json::json!({"tolerance_secs": 5}),
                "option tolerance_secs does not apply to the github scheme",
            ),
            (
                "stripe",
                &["s3cret-1"],
                serde_json::json!({"tolerance_secs": 0}),
                "the tolerance must be a positive number of seconds",
            ),
            (
                "standard-webhooks",
                &["whsec_s3cret-1!"],
                serde_json::json!({}),
                "secret 1 is not a Standard Webhooks secret (whsec_ followed by base64)",
            ),
            (
                "basic",
                &["s3cret-1"],
                serde_json::json!({}),
                "secret 1 must be user:password (or pass username => …)",
            ),
            (
                "hmac",
                &["s3cret-1"],
                serde_json::json!({}),
                "the hmac scheme needs header => …",
            ),
            (
                "hmac",
                &["s3cret-1"],
                serde_json::json!({"header": "x", "algorithm": "md5"}),
                "the algorithm is not sha1, sha256 or sha512",
            ),
            (
                "hmac",
                &["s3cret-1"],
                serde_json::json!({"header": "x", "separator": ":"}),
                "separator and tolerance apply only with timestamp_header => …",
            ),
        ];
        for (name, secrets, options, message) in cases {
            let err = config(name, secrets, options.clone()).unwrap_err();
            assert_eq!(&err.0, message);
            assert!(!err.0.contains("s3cret"), "{err}");
        }
        let long = "k".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(
            config("github", &["ok", &long], serde_json::json!({}))
                .unwrap_err()
                .0,
            "secret 2 is longer than 4096 bytes"
        );
        assert_eq!(
            config(
                "hmac",
                &["k"],
                serde_json::json!({"header": "x".repeat(300)})
            )
            .unwrap_err()
            .0,
            "option header is longer than 256 bytes"
        );
        let many: Vec<&str> = vec!["x"; MAX_SECRETS + 1];
        assert_eq!(
            config("github", &many, serde_json::json!({}))
                .unwrap_err()
                .0,
            "at most 10 secrets may be active at once"
        );
    }

    #[test]
    fn refusals_and_redaction() {
        let github = config("github", &["s"], serde_json::json!({})).unwrap();
        let refusal = github.refusal();
        assert_eq!(
            (refusal.status, refusal.body.as_slice()),
            (401, br#"{"msg":"Invalid signature"}"# as &[u8])
        );
        let basic = config("basic", &["a:b"], serde_json::json!({})).unwrap();
        assert_eq!(
            basic.refusal().headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                (
                    "www-authenticate".to_string(),
                    "Basic realm=\"webhook\"".to_string()
                )
            ]
        );
        let mut h = headers(&[
            ("authorization", "Bearer t"),
            ("x-gitlab-token", "t"),
            ("x-custom-key", "t"),
            ("x-hub-signature-256", "sha256=ab"),
        ]);
        redact_headers(&mut h, &["X-Custom-Key".to_string()]);
        assert_eq!(
            Value::Object(h),
            serde_json::json!({"authorization": REDACTED, "x-gitlab-token": REDACTED,
                               "x-custom-key": REDACTED, "x-hub-signature-256": "sha256=ab"})
        );
    }

    #[test]
    fn hmac_separators_are_literal_whatever_their_braces() {
        // The separator becomes literal text of a template: braces in it
        // are escaped, so it signs exactly as the hmac scheme always did.
        for separator in [
            "{", "}", "{{", "}}", "}{", "{body}", "a{b}c", "{{}", "", "€:",
        ] {
            let scheme = config(
                "hmac",
                &["k"],
                serde_json::json!({"header": "x-sig", "timestamp_header": "x-ts",
                                   "separator": separator}),
            )
            .unwrap();
            let signed = format!("1700000000{separator}hello");
            let sig = hex(&mac(Algorithm::Sha256, b"k", &[signed.as_bytes()]));
            let h = [("x-sig", sig.as_str()), ("x-ts", "1700000000")];
            assert_eq!(
                check(&scheme, &h, b"hello", 1_700_000_000),
                Ok(()),
                "{separator}"
            );
        }
    }
}
