//! Verifying senders (issue 9): the signature and token schemes of real
//! webhook providers, checked against the exact bytes received, before the
//! body is parsed. Comparisons are constant-time; several secrets may be
//! active at once (rotation). Pure: the caller supplies the header lookup,
//! the raw body and the current time.
//!
//! Not wired to SQL or the listener yet (`webhook_set_verification` is the
//! rest of issue 9).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The default tolerance for signed timestamps (Standard Webhooks, Stripe,
/// Slack all use five minutes).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// (several, space-separated) over `id.timestamp.body`; secrets `whsec_<base64>`.
    StandardWebhooks {
        secrets: Vec<Vec<u8>>,
        tolerance_secs: i64,
    },
    /// `X-Hub-Signature-256: sha256=<hex>` over the body.
    GitHub { secrets: Vec<Vec<u8>> },
    /// `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]` over `t.body`.
    Stripe {
        secrets: Vec<Vec<u8>>,
        tolerance_secs: i64,
    },
    /// `X-Slack-Signature: v0=<hex>` over `v0:timestamp:body`, with
    /// `X-Slack-Request-Timestamp`.
    Slack {
        secrets: Vec<Vec<u8>>,
        tolerance_secs: i64,
    },
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body.
    Shopify { secrets: Vec<Vec<u8>> },
    /// `X-Gitlab-Token` equal to a secret.
    GitLab { tokens: Vec<Vec<u8>> },
    /// `Authorization: Bearer <token>`.
    Bearer { tokens: Vec<Vec<u8>> },
    /// `Authorization: Basic base64(user:password)`.
    Basic { credentials: Vec<Vec<u8>> },
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

/// A Standard Webhooks secret: `whsec_` followed by base64 (the prefix is
/// optional); `None` if it is not base64.
pub fn standard_webhooks_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether any secret's HMAC-SHA256 over `parts` equals one of the `given`
/// signatures (already decoded to the encoding `encode` produces).
fn any_matches(
    secrets: &[Vec<u8>],
    parts: &[&[u8]],
    given: &[&str],
    encode: fn(&[u8]) -> String,
) -> bool {
    secrets.iter().any(|secret| {
        let expected = encode(&hmac_sha256(secret, parts));
        given
            .iter()
            .any(|sig| equal(expected.as_bytes(), sig.trim().as_bytes()))
    })
}

fn timestamp(value: &str, now_unix: i64, tolerance_secs: i64) -> Result<i64, Failure> {
    let ts: i64 = value.trim().parse().map_err(|_| Failure::Malformed)?;
    if (now_unix - ts).abs() > tolerance_secs {
        return Err(Failure::StaleTimestamp);
    }
    Ok(ts)
}

impl Scheme {
    /// Checks a request: `header` looks a header up by lower-case name.
    pub fn verify(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), Failure> {
        let required = |name: &str| header(name).ok_or(Failure::MissingHeader);
        let ok = |matched: bool| {
            if matched {
                Ok(())
            } else {
                Err(Failure::Mismatch)
            }
        };
        match self {
            Scheme::StandardWebhooks {
                secrets,
                tolerance_secs,
            } => {
                let id = required("webhook-id")?;
                let ts = required("webhook-timestamp")?;
                timestamp(&ts, now_unix, *tolerance_secs)?;
                let signatures = required("webhook-signature")?;
                let given: Vec<&str> = signatures
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .collect();
                if given.is_empty() {
                    return Err(Failure::Malformed);
                }
                ok(any_matches(
                    secrets,
                    &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", body],
                    &given,
                    |mac| STANDARD.encode(mac),
                ))
            }
            Scheme::GitHub { secrets } => {
                let sig = required("x-hub-signature-256")?;
                let given = sig.strip_prefix("sha256=").ok_or(Failure::Malformed)?;
                ok(any_matches(secrets, &[body], &[given], hex))
            }
            Scheme::Stripe {
                secrets,
                tolerance_secs,
            } => {
                let sig = required("stripe-signature")?;
                let mut ts = None;
                let mut given = Vec::new();
                for item in sig.split(',') {
                    match item.trim().split_once('=') {
                        Some(("t", value)) => ts = Some(value),
                        Some(("v1", value)) => given.push(value),
                        _ => {}
                    }
                }
                let ts = ts.ok_or(Failure::Malformed)?;
                if given.is_empty() {
                    return Err(Failure::Malformed);
                }
                timestamp(ts, now_unix, *tolerance_secs)?;
                ok(any_matches(
                    secrets,
                    &[ts.as_bytes(), b".", body],
                    &given,
                    hex,
                ))
            }
            Scheme::Slack {
                secrets,
                tolerance_secs,
            } => {
                let ts = required("x-slack-request-timestamp")?;
                let sig = required("x-slack-signature")?;
                let given = sig.strip_prefix("v0=").ok_or(Failure::Malformed)?;
                timestamp(&ts, now_unix, *tolerance_secs)?;
                ok(any_matches(
                    secrets,
                    &[b"v0:", ts.trim().as_bytes(), b":", body],
                    &[given],
                    hex,
                ))
            }
            Scheme::Shopify { secrets } => {
                let sig = required("x-shopify-hmac-sha256")?;
                ok(any_matches(secrets, &[body], &[sig.as_str()], |mac| {
                    STANDARD.encode(mac)
                }))
            }
            Scheme::GitLab { tokens } => {
                let token = required("x-gitlab-token")?;
                ok(tokens.iter().any(|t| equal(t, token.as_bytes())))
            }
            Scheme::Bearer { tokens } => {
                let auth = required("authorization")?;
                let token = strip_auth_scheme(&auth, "bearer").ok_or(Failure::Malformed)?;
                ok(tokens.iter().any(|t| equal(t, token.as_bytes())))
            }
            Scheme::Basic { credentials } => {
                let auth = required("authorization")?;
                let encoded = strip_auth_scheme(&auth, "basic").ok_or(Failure::Malformed)?;
                let decoded = STANDARD.decode(encoded).map_err(|_| Failure::Malformed)?;
                ok(credentials.iter().any(|c| equal(c, &decoded)))
            }
        }
    }
}

/// `Bearer xyz` → `xyz` (the scheme name is case-insensitive).
fn strip_auth_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.trim().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    // GitHub's documented example (docs: "Validating webhook deliveries").
    #[test]
    fn github_documented_example() {
        let scheme = Scheme::GitHub {
            secrets: vec![b"It's a Secret to Everybody".to_vec()],
        };
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", sig)]);
        assert_eq!(scheme.verify(&h, b"Hello, World!", 0), Ok(()));
        assert_eq!(
            scheme.verify(&h, b"Hello, World?", 0),
            Err(Failure::Mismatch)
        );
        let h = headers(&[("x-hub-signature-256", &sig[7..])]);
        assert_eq!(
            scheme.verify(&h, b"Hello, World!", 0),
            Err(Failure::Malformed)
        );
        assert_eq!(
            scheme.verify(&headers(&[]), b"Hello, World!", 0),
            Err(Failure::MissingHeader)
        );
    }

    // The Standard Webhooks reference vector (standard-webhooks spec, libraries' tests).
    #[test]
    fn standard_webhooks_reference_vector_and_rotation() {
        let secret = standard_webhooks_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let old = standard_webhooks_secret("whsec_c2VjcmV0LW9sZA==").unwrap();
        let scheme = Scheme::StandardWebhooks {
            secrets: vec![old, secret],
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        };
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9ldmVu v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(scheme.verify(&h, body, 1_614_265_330), Ok(()));
        assert_eq!(scheme.verify(&h, body, 1_614_265_330 + 299), Ok(()));
        assert_eq!(
            scheme.verify(&h, body, 1_614_265_330 + 301),
            Err(Failure::StaleTimestamp)
        );
        assert_eq!(
            scheme.verify(&h, br#"{"test": 2432232315}"#, 1_614_265_330),
            Err(Failure::Mismatch)
        );
    }

    // Expected values computed independently with Python's hmac module.
    #[test]
    fn stripe_slack_and_shopify() {
        let stripe = Scheme::Stripe {
            secrets: vec![b"whsec_test_secret".to_vec()],
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        };
        let body = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
        let sig = "t=1700000000,v1=22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31,v0=ignored";
        let h = headers(&[("stripe-signature", sig)]);
        assert_eq!(stripe.verify(&h, body, 1_700_000_100), Ok(()));
        assert_eq!(
            stripe.verify(&h, body, 1_700_000_400),
            Err(Failure::StaleTimestamp)
        );
        let h = headers(&[("stripe-signature", "v1=22d8")]);
        assert_eq!(
            stripe.verify(&h, body, 1_700_000_100),
            Err(Failure::Malformed)
        );

        let slack = Scheme::Slack {
            secrets: vec![b"8f742231b10e8888abcd99yyyzzz85a5".to_vec()],
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        };
        let h = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=dc2dc5de319a1917d4e4968529e09c99f4581f86ff7d905cc6e2fa8283c45d41",
            ),
        ]);
        assert_eq!(
            slack.verify(&h, b"token=abc&team_id=T1", 1_531_420_618),
            Ok(())
        );
        assert_eq!(
            slack.verify(&h, b"token=abc&team_id=T2", 1_531_420_618),
            Err(Failure::Mismatch)
        );

        let shopify = Scheme::Shopify {
            secrets: vec![b"shpss_secret".to_vec()],
        };
        let h = headers(&[(
            "x-shopify-hmac-sha256",
            "2/nwdMKrCfMJt6FFPLqqjMOnFaC9UHjJ/AWyUAEJ2Io=",
        )]);
        assert_eq!(
            shopify.verify(&h, br#"{"id":820982911946154500}"#, 0),
            Ok(())
        );
        assert_eq!(
            shopify.verify(&h, br#"{"id":820982911946154501}"#, 0),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn tokens_and_basic_credentials() {
        let gitlab = Scheme::GitLab {
            tokens: vec![b"new".to_vec(), b"old".to_vec()],
        };
        assert_eq!(
            gitlab.verify(&headers(&[("x-gitlab-token", "old")]), b"", 0),
            Ok(())
        );
        assert_eq!(
            gitlab.verify(&headers(&[("x-gitlab-token", "ol")]), b"", 0),
            Err(Failure::Mismatch)
        );
        let bearer = Scheme::Bearer {
            tokens: vec![b"s3cret".to_vec()],
        };
        assert_eq!(
            bearer.verify(&headers(&[("authorization", "bearer s3cret")]), b"", 0),
            Ok(())
        );
        assert_eq!(
            bearer.verify(&headers(&[("authorization", "Basic s3cret")]), b"", 0),
            Err(Failure::Malformed)
        );
        let basic = Scheme::Basic {
            credentials: vec![b"ann:pw".to_vec()],
        };
        // base64("ann:pw") = YW5uOnB3
        assert_eq!(
            basic.verify(&headers(&[("authorization", "Basic YW5uOnB3")]), b"", 0),
            Ok(())
        );
        assert_eq!(
            basic.verify(&headers(&[("authorization", "Basic YW5uOnB4")]), b"", 0),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            basic.verify(&headers(&[("authorization", "Basic !!")]), b"", 0),
            Err(Failure::Malformed)
        );
    }
}
