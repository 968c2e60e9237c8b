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
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

mod composed;
pub mod presets;
pub use composed::Composed;

use crate::body::cost::block as cost_block;
use crate::body::{form_split, form_unescape, BodyError, MemoryBudget, Meter, Unbudgeted};
use crate::request::Response;

/// The default tolerance for signed timestamps (Standard Webhooks, Stripe,
/// Slack all use five minutes).
const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Most secrets active at once: every request that fails verification costs
/// one HMAC per secret, so the number is kept small.
const MAX_SECRETS: usize = 10;

/// Longest secret: HMAC hashes a longer key on every request, and a tenant
/// must not be able to make each forged request to its workflow cost the
/// listener milliseconds.
const MAX_SECRET_BYTES: usize = 4096;

/// Longest text option (header names, prefix, separator, username).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// The generic `hmac` scheme: a signature header over the body, or over a
/// timestamp header, a separator and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericHmac {
    pub secrets: Vec<Vec<u8>>,
    /// Lower-case header name.
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Text before the signature in the header (`sha256=`); may be empty.
    pub prefix: String,
    /// Lower-case name of the signed timestamp header, if one is signed.
    pub timestamp_header: Option<String>,
    pub separator: String,
    pub tolerance_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// (several, space-separated) over `id.timestamp.body`; secrets
    /// `whsec_<base64>`. The `svix-*` names are accepted too.
    StandardWebhooks {
        secrets: Vec<Vec<u8>>,
        tolerance_secs: i64,
    },
    /// `X-Twilio-Signature: <base64 HMAC-SHA1>` over the public URL followed
    /// by the form parameters sorted by name (each name then value); for a
    /// JSON body the URL carries `bodySHA256`, the body's SHA-256 in hex.
    Twilio {
        secrets: Vec<Vec<u8>>,
    },
    Hmac(GenericHmac),
    /// `Authorization: Bearer <token>`.
    Bearer {
        tokens: Vec<Vec<u8>>,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        credentials: Vec<Vec<u8>>,
    },
    /// A scheme described from parts (`custom`, and the providers' presets).
    Composed(Box<Composed>),
}

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
/// order error messages list them. `github`, `stripe`, `slack`, `shopify`
/// and `gitlab` are presets (verify/presets.rs); the others are built here:
/// Standard Webhooks takes two header families, Twilio signs its form sorted,
/// `hmac` is a shorthand with its own options, and `bearer` and `basic` read
/// `Authorization` and answer with `WWW-Authenticate`.
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

/// Every name `webhook_set_verification` takes: the built-in schemes, the
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Whether any secret's HMAC over `parts` equals one of the `given`
/// signatures (hex compares case-insensitively, as senders differ).
fn any_matches(
    algorithm: Algorithm,
    secrets: &[Vec<u8>],
    parts: &[&[u8]],
    given: &[&str],
    encoding: Encoding,
) -> bool {
    let given: Vec<String> = given
        .iter()
        .take(MAX_SIGNATURES)
        .map(|sig| match encoding {
            Encoding::Hex => sig.trim().to_ascii_lowercase(),
            Encoding::Base64 => sig.trim().to_string(),
        })
        .collect();
    // Every secret and every signature is compared, matched or not, so the
    // time taken does not tell which one matched.
    let mut matched = false;
    for secret in secrets {
        let digest = mac(algorithm, secret, parts);
        let expected = match encoding {
            Encoding::Hex => hex(&digest),
            Encoding::Base64 => base64(&digest),
        };
        for sig in &given {
            matched |= equal(expected.as_bytes(), sig.as_bytes());
        }
    }
    matched
}

fn any_token(tokens: &[Vec<u8>], given: &[u8]) -> bool {
    let mut matched = false;
    for token in tokens {
        matched |= same_token(token, given);
    }
    matched
}

/// Whether two tokens are equal, in time that tells nothing of either (not
/// even its length): their SHA-256 digests are compared.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

fn timestamp(value: &str, now_unix: i64, tolerance_secs: i64) -> Result<i64, Failure> {
    let ts: i64 = value.trim().parse().map_err(|_| Failure::Malformed)?;
    if now_unix.saturating_sub(ts).saturating_abs() > tolerance_secs {
        return Err(Failure::StaleTimestamp);
    }
    Ok(ts)
}

fn outcome(matched: bool) -> Result<(), Failure> {
    if matched {
        Ok(())
    } else {
        Err(Failure::Mismatch)
    }
}

impl Scheme {
    /// Checks a request, without a memory budget ([`Scheme::verify_within`] with
    /// [`Unbudgeted`]). A Twilio form whose parameters would take more memory than
    /// its allowance fails as malformed.
    pub fn verify(&self, request: &SignedRequest<'_>) -> Result<(), Failure> {
        let required = |name: &str| request.header(name).ok_or(Failure::MissingHeader);
        let body = request.body;
        let now = request.now_unix;
        use Algorithm::Sha256;
        match self {
            Scheme::StandardWebhooks {
                secrets,
                tolerance_secs,
            } => {
                // Svix sends the same scheme under svix-* names (its own
                // libraries accept either family, header by header).
                let either = |name: &str| {
                    request
                        .header(&format!("webhook-{name}"))
                        .or_else(|| request.header(&format!("svix-{name}")))
                        .ok_or(Failure::MissingHeader)
                };
                let id = either("id")?;
                let ts = either("timestamp")?;
                let signatures = either("signature")?;
                timestamp(ts, now, *tolerance_secs)?;
                let given: Vec<&str> = signatures
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .collect();
                if given.is_empty() {
                    return Err(Failure::Malformed);
                }
                outcome(any_matches(
                    Sha256,
                    secrets,
                    &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", body],
                    &given,
                    Encoding::Base64,
                ))
            }
            Scheme::Twilio { secrets } => {
                twilio(secrets, request, &mut Unbudgeted).unwrap_or(Err(Failure::Malformed))
            }
            Scheme::Hmac(config) => {
                let sig = required(&config.header)?;
                let given = sig
                    .trim()
                    .strip_prefix(config.prefix.as_str())
                    .ok_or(Failure::Malformed)?;
                let encode = config.encoding;
                let matched = match &config.timestamp_header {
                    None => {
                        any_matches(config.algorithm, &config.secrets, &[body], &[given], encode)
                    }
                    Some(name) => {
                        let ts = required(name)?;
                        timestamp(ts, now, config.tolerance_secs)?;
                        any_matches(
                            config.algorithm,
                            &config.secrets,
                            &[ts.trim().as_bytes(), config.separator.as_bytes(), body],
                            &[given],
                            encode,
                        )
                    }
                };
                outcome(matched)
            }
            Scheme::Bearer { tokens } => {
                let auth = required("authorization")?;
                let token = strip_auth_scheme(auth, "bearer").ok_or(Failure::Malformed)?;
                outcome(any_token(tokens, token.as_bytes()))
            }
            Scheme::Basic { credentials } => {
                let auth = required("authorization")?;
                let encoded = strip_auth_scheme(auth, "basic").ok_or(Failure::Malformed)?;
                let decoded = STANDARD.decode(encoded).map_err(|_| Failure::Malformed)?;
                outcome(any_token(credentials, &decoded))
            }
            Scheme::Composed(composed) => composed
                .verify_within(request, &mut Unbudgeted)
                .unwrap_or(Err(Failure::Malformed)),
        }
    }

    /// The first active secret, for schemes that have secrets (Zoom's
    /// handshake answer is signed with it).
    pub fn first_secret(&self) -> Option<&[u8]> {
        match self {
            Scheme::StandardWebhooks { secrets, .. } | Scheme::Twilio { secrets } => {
                secrets.first().map(Vec::as_slice)
            }
            Scheme::Hmac(config) => config.secrets.first().map(Vec::as_slice),
            Scheme::Composed(composed) => composed.first_secret(),
            Scheme::Bearer { .. } | Scheme::Basic { .. } => None,
        }
    }

    /// Whether checking a small body takes microseconds (an HMAC or a token
    /// over headers and the body), so it may run on the network thread;
    /// Twilio's sorts the form, public keys and body fields cost more.
    pub fn cheap_inline(&self) -> bool {
        match self {
            Scheme::Twilio { .. } => false,
            Scheme::Composed(composed) => composed.cheap_inline(),
            _ => true,
        }
    }

    /// The header a token scheme reads its token from (stored redacted like
    /// the credential headers).
    pub fn token_header(&self) -> Option<&str> {
        match self {
            Scheme::Composed(composed) => composed.token_header(),
            _ => None,
        }
    }

    /// Whether the scheme needs the URL the sender called (the caller builds
    /// it only then).
    pub fn signs_url(&self) -> bool {
        match self {
            Scheme::Twilio { .. } => true,
            Scheme::Composed(composed) => composed.signs_url(),
            _ => false,
        }
    }

    /// Checks a request, asking `budget` first for the memory the check takes
    /// beyond the body. Only Twilio's scheme needs memory in proportion to the
    /// body (it sorts the form's parameters); the others take a fixed amount. The
    /// outer error is [`BodyError::Busy`] or [`BodyError::ParamsTooLarge`] (the
    /// parameters' allowance is that of a parsed body of the same length).
    pub fn verify_within(
        &self,
        request: &SignedRequest<'_>,
        budget: &mut dyn MemoryBudget,
    ) -> Result<Result<(), Failure>, BodyError> {
        match self {
            Scheme::Twilio { secrets } => twilio(secrets, request, budget),
            Scheme::Composed(composed) => composed.verify_within(request, budget),
            _ => Ok(self.verify(request)),
        }
    }

    /// The 401 a request that failed verification gets.
    pub fn refusal(&self) -> Response {
        let refusal = Response::error(401, self.refusal_message());
        match self {
            Scheme::Bearer { .. } => refusal.with_header("www-authenticate", "Bearer"),
            Scheme::Basic { .. } => {
                refusal.with_header("www-authenticate", "Basic realm=\"webhook\"")
            }
            _ => refusal,
        }
    }

    /// The `msg` of [`Scheme::refusal`]; with a [`Failure::reason`] after it,
    /// what the refusal is counted as.
    pub fn refusal_message(&self) -> &'static str {
        match self {
            Scheme::Bearer { .. } | Scheme::Basic { .. } => "Invalid credentials",
            Scheme::Composed(composed) if composed.is_token() => "Invalid token",
            _ => "Invalid signature",
        }
    }

    /// Builds a scheme from its stored configuration: `name` (one of
    /// [`SCHEME_NAMES`]), the active secrets, and the scheme's options
    /// (`tolerance_secs`; for `hmac`: `header`, `algorithm`, `encoding`,
    /// `prefix`, `timestamp_header`, `separator`; for `basic`: `username`).
    pub fn from_config(
        name: &str,
        secrets: &[String],
        options: &Map<String, Value>,
    ) -> Result<Scheme, ConfigError> {
        if name == "custom" {
            return Composed::from_definition(options, secrets)
                .map(|c| Scheme::Composed(Box::new(c)));
        }
        if let Some(mut definition) = presets::definition(name) {
            // A preset takes only a tolerance, when it has a timestamp; any
            // other change is a custom definition (webhook_verification_presets).
            for (key, value) in options {
                if key != "tolerance_secs" || !definition.contains_key("timestamp") {
                    return Err(ConfigError(format!(
                        "option {key} does not apply to the {name} scheme"
                    )));
                }
                definition.insert(key.clone(), value.clone());
            }
            if secrets.is_empty() {
                return Err(ConfigError(format!("the {name} scheme needs a secret")));
            }
            return Composed::from_definition(&definition, secrets)
                .map(|c| Scheme::Composed(Box::new(c)));
        }
        if !SCHEME_NAMES.contains(&name) {
            // The value is not repeated: a secret passed in the wrong
            // position would end up in the error and the server log.
            return Err(ConfigError(format!(
                "unknown verification scheme (one of {})",
                scheme_names().collect::<Vec<_>>().join(", ")
            )));
        }
        let allowed: &[&str] = match name {
            "standard-webhooks" => &["tolerance_secs"],
            "hmac" => &[
                "header",
                "algorithm",
                "encoding",
                "prefix",
                "timestamp_header",
                "separator",
                "tolerance_secs",
            ],
            "basic" => &["username"],
            _ => &[],
        };
        if let Some(key) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ConfigError(format!(
                "option {key} does not apply to the {name} scheme"
            )));
        }
        if secrets.is_empty() {
            return Err(ConfigError(format!("the {name} scheme needs a secret")));
        }
        if secrets.len() > MAX_SECRETS {
            return Err(ConfigError(format!(
                "at most {MAX_SECRETS} secrets may be active at once"
            )));
        }
        if let Some(n) = secrets.iter().position(|s| s.is_empty()) {
            return Err(ConfigError(format!("secret {} is empty", n + 1)));
        }
        if let Some(n) = secrets.iter().position(|s| s.len() > MAX_SECRET_BYTES) {
            return Err(ConfigError(format!(
                "secret {} is longer than {MAX_SECRET_BYTES} bytes",
                n + 1
            )));
        }
        let text = |key: &str| -> Result<Option<String>, ConfigError> {
            match options.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() > MAX_OPTION_BYTES => Err(ConfigError(format!(
                    "option {key} is longer than {MAX_OPTION_BYTES} bytes"
                ))),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ConfigError(format!("option {key} must be text"))),
            }
        };
        let tolerance_secs = match options.get("tolerance_secs") {
            None | Some(Value::Null) => DEFAULT_TOLERANCE_SECS,
            Some(v) => match v.as_i64() {
                Some(secs) if secs > 0 => secs,
                _ => {
                    return Err(ConfigError(
                        "the tolerance must be a positive number of seconds".into(),
                    ))
                }
            },
        };
        let raw: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        Ok(match name {
            "standard-webhooks" => {
                let mut decoded = Vec::new();
                for (n, secret) in secrets.iter().enumerate() {
                    match standard_webhooks_secret(secret) {
                        Some(key) if !key.is_empty() => decoded.push(key),
                        _ => {
                            return Err(ConfigError(format!(
                                "secret {} is not a Standard Webhooks secret (whsec_ followed by base64)",
                                n + 1
                            )))
                        }
                    }
                }
                Scheme::StandardWebhooks {
                    secrets: decoded,
                    tolerance_secs,
                }
            }
            "twilio" => Scheme::Twilio { secrets: raw },
            "bearer" => Scheme::Bearer { tokens: raw },
            "basic" => match text("username")? {
                Some(user) if user.is_empty() || user.contains(':') => {
                    return Err(ConfigError(
                        "username must be non-empty and without ':'".into(),
                    ))
                }
                Some(user) => Scheme::Basic {
                    credentials: secrets
                        .iter()
                        .map(|password| format!("{user}:{password}").into_bytes())
                        .collect(),
                },
                None => {
                    if let Some(n) = secrets.iter().position(|s| !s.contains(':')) {
                        return Err(ConfigError(format!(
                            "secret {} must be user:password (or pass username => …)",
                            n + 1
                        )));
                    }
                    Scheme::Basic { credentials: raw }
                }
            },
            _ => {
                let header = text("header")?
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| ConfigError("the hmac scheme needs header => …".into()))?;
                let algorithm = match text("algorithm")?.as_deref() {
                    None | Some("sha256") => Algorithm::Sha256,
                    Some("sha1") => Algorithm::Sha1,
                    Some("sha512") => Algorithm::Sha512,
                    Some(_) => {
                        return Err(ConfigError(
                            "the algorithm is not sha1, sha256 or sha512".into(),
                        ))
                    }
                };
                let encoding = match text("encoding")?.as_deref() {
                    None | Some("hex") => Encoding::Hex,
                    Some("base64") => Encoding::Base64,
                    Some(_) => return Err(ConfigError("the encoding is not hex or base64".into())),
                };
                let timestamp_header = text("timestamp_header")?
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty());
                let separator = text("separator")?;
                if timestamp_header.is_none()
                    && (separator.is_some() || options.contains_key("tolerance_secs"))
                {
                    return Err(ConfigError(
                        "separator and tolerance apply only with timestamp_header => …".into(),
                    ));
                }
                Scheme::Hmac(GenericHmac {
                    secrets: raw,
                    header,
                    algorithm,
                    encoding,
                    prefix: text("prefix")?.unwrap_or_default(),
                    timestamp_header,
                    separator: separator.unwrap_or_else(|| ".".into()),
                    tolerance_secs,
                })
            }
        })
    }
}

/// Twilio's check: `X-Twilio-Signature` against the signed text.
fn twilio(
    secrets: &[Vec<u8>],
    request: &SignedRequest<'_>,
    budget: &mut dyn MemoryBudget,
) -> Result<Result<(), Failure>, BodyError> {
    let Some(sig) = request.header("x-twilio-signature") else {
        return Ok(Err(Failure::MissingHeader));
    };
    let mut meter = Meter::new(budget);
    meter.allow_for(request.body.len());
    let signed = match twilio_signed_text(request, &mut meter)? {
        Ok(signed) => signed,
        Err(failure) => return Ok(Err(failure)),
    };
    Ok(outcome(any_matches(
        Algorithm::Sha1,
        secrets,
        &[signed.as_bytes()],
        &[sig],
        Encoding::Base64,
    )))
}

/// What Twilio signs: the URL, then (for a form body) each parameter's name
/// and value, sorted by name and then value. A URL carrying `bodySHA256` (a
/// JSON body) signs the URL alone, and the body must have that SHA-256. The
/// parameters are decoded as `form_urlencoded` decodes them (UTF-8, lossy),
/// and their memory is charged to `meter` before they are collected.
fn twilio_signed_text(
    request: &SignedRequest<'_>,
    meter: &mut Meter<'_>,
) -> Result<Result<String, Failure>, BodyError> {
    let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or("");
    if let Some((_, hash)) =
        form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "bodySHA256")
    {
        let actual = hex(&Sha256::digest(request.body));
        if !equal(actual.as_bytes(), hash.to_ascii_lowercase().as_bytes()) {
            return Ok(Err(Failure::Mismatch));
        }
        return Ok(Ok(request.url.to_string()));
    }
    let is_form = request
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // Twilio signs a form's parameters, or a JSON body through bodySHA256:
    // any other body would not be covered by the signature at all.
    if !is_form && !request.body.is_empty() {
        return Ok(Err(Failure::Malformed));
    }
    if !is_form {
        return Ok(Ok(request.url.to_string()));
    }
    // Counted first, so that the vector is allocated once at its final size.
    let count = form_split(request.body).count();
    meter.charge(cost_block(
        count.saturating_mul(std::mem::size_of::<(String, String)>()),
    ))?;
    let mut params: Vec<(String, String)> = Vec::with_capacity(count);
    for (name, value) in form_split(request.body) {
        let name = form_unescape(name, encoding_rs::UTF_8, meter)?;
        let value = form_unescape(value, encoding_rs::UTF_8, meter)?;
        params.push((name, value));
    }
    // Equal pairs are indistinguishable, so an unstable sort signs the same
    // text as a stable one, and it sorts in place.
    params.sort_unstable();
    let len = params.iter().fold(request.url.len(), |len, (name, value)| {
        len.saturating_add(name.len()).saturating_add(value.len())
    });
    meter.charge(cost_block(len))?;
    let mut signed = String::with_capacity(len);
    signed.push_str(request.url);
    for (name, value) in &params {
        signed.push_str(name);
        signed.push_str(value);
    }
    Ok(Ok(signed))
}

/// `Bearer xyz` → `xyz` (the scheme name is case-insensitive).
fn strip_auth_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.trim().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
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
            base64(&mac(Algorithm::Sha512, b"k", &[b"1700000000.hello"]))
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
}
