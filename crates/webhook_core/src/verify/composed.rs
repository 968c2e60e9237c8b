//! Signature schemes described from parts, so that any sender can be
//! verified without a new scheme in the code: what is signed (a template of
//! literal text, the method, the URL, the path, the query, headers, body
//! fields, a form body sorted, the timestamp and the raw body), where the
//! signature is (a header, one of several header names, a body field, a
//! query parameter, or the `Authorization` header's credentials; plain,
//! after a prefix, or in a list of key/value pairs holding several), the
//! algorithm (HMAC-SHA1/256/512, Ed25519, ECDSA P-256 with SHA-256, or a
//! plain token), the encodings, and the timestamp (where, in which format,
//! how old it may be).
//!
//! A definition is a JSON object (`webhook_set_verification(workflow,
//! 'custom', definition => …)`); the providers' presets are definitions too
//! (verify/presets.rs). The reference is docs/verification.md.

use std::borrow::Cow;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    equal, hex, mac, standard_webhooks_secret, Algorithm, ConfigError, Failure, SignedRequest,
    MAX_SECRETS, MAX_SECRET_BYTES, MAX_SIGNATURES,
};
use crate::body::cost::block as cost_block;
use crate::body::{form_split, form_unescape, BodyError, MemoryBudget, Meter};

/// Longest template, and most placeholders in one.
const MAX_TEMPLATE_BYTES: usize = 1024;
const MAX_PARTS: usize = 32;
/// Longest name, prefix or separator in a definition.
const MAX_NAME_BYTES: usize = 256;
/// Deepest body field path.
const MAX_FIELD_DEPTH: usize = 8;
/// Most body fields one template signs (each is a pass over the body).
const MAX_FIELDS: usize = 4;
/// Most bytes the signed content takes besides the body itself (headers,
/// fields, URL, text): a request past it fails as malformed.
const MAX_SIGNED_EXTRA_BYTES: usize = 64 * 1024;
/// Most public-key checks per request (keys × signatures): each Ed25519
/// check hashes the whole signed content again.
const MAX_KEY_CHECKS: usize = 10;
/// The default tolerance of a signed timestamp.
const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// How the signature is computed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Hmac(Algorithm),
    Ed25519,
    EcdsaP256Sha256,
    /// The value must equal one of the secrets (no signed content).
    Token,
}

/// Where a value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A header: the first of these lower-case names the request has
    /// (`header:webhook-id|svix-id`, for senders that use either name).
    Header(Vec<String>),
    /// A field of a JSON body (object keys, outermost first) or of a form
    /// body (one name).
    Field(Vec<String>),
    /// A query parameter (decoded).
    Param(String),
    /// The credentials of the `Authorization` header (signatures only).
    Authorization(Credentials),
}

/// What an `Authorization` header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `Bearer <token>`: the token.
    Bearer,
    /// `Basic base64(user:password)`: `user:password`.
    Basic,
}

/// One piece of the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Method,
    /// The full URL as the sender called it (public base URL, path, query).
    Url,
    /// The same with the escapes of the reserved characters `:/?@!$'()*,;`
    /// decoded (HubSpot signs its URL so).
    UrlUnescaped,
    Path,
    /// The raw query string, without `?`.
    Query,
    Body,
    /// A form body's parameters (decoded), sorted by name and then value,
    /// each name followed by its value (Twilio); an empty body adds nothing.
    /// Any other body fails as malformed, unless `body_sha256` covers it.
    SortedForm,
    /// The timestamp as received.
    Timestamp,
    Value(Source),
}

/// A signature value holding several `key<pair>value` items separated by
/// `separator` (`t=…,v1=…`; `ts=…;h1=…`; `v1,sig v1,sig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub separator: String,
    pub pair: String,
    /// The key of the signature items (every item with it is one).
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    Hex,
    Base64,
    Base64Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    UnixSeconds,
    UnixMillis,
    Rfc3339,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSource {
    Value(Source),
    /// A key of the signature's list (`t` in `t=…,v1=…`).
    ListKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub from: TimeSource,
    pub format: TimeFormat,
    pub tolerance_secs: i64,
}

/// A key a scheme checks with: a secret, or a public key.
#[derive(Clone)]
enum Key {
    Secret(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a secret in a log or an error.
        f.write_str(match self {
            Key::Secret(_) => "Secret(..)",
            Key::Ed25519(_) => "Ed25519(..)",
            Key::P256(_) => "P256(..)",
        })
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        match (self, other) {
            (Key::Secret(a), Key::Secret(b)) => a == b,
            (Key::Ed25519(a), Key::Ed25519(b)) => a == b,
            (Key::P256(a), Key::P256(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Key {}

/// A scheme built from a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub method: Method,
    keys: Vec<Key>,
    pub signed: Vec<Part>,
    pub signature: Source,
    pub prefix: String,
    pub list: Option<List>,
    pub encoding: SignatureEncoding,
    pub timestamp: Option<Timestamp>,
    /// Where the sender may put the body's SHA-256 (hex) instead of signing
    /// the body: when the request has it, the body must have that digest.
    pub body_sha256: Option<Source>,
}

/// The keys a definition may have.
const KEYS: &[&str] = &[
    "algorithm",
    "signed",
    "signature",
    "prefix",
    "list",
    "encoding",
    "secret_encoding",
    "timestamp",
    "tolerance_secs",
    "body_sha256",
    "username",
];

fn err<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

fn text<'a>(definition: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ConfigError> {
    match definition.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_TEMPLATE_BYTES => {
            err(format!("{key} is longer than {MAX_TEMPLATE_BYTES} bytes"))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => err(format!("{key} must be text")),
    }
}

fn name(value: &str, what: &str) -> Result<String, ConfigError> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return err(format!("{what} must be 1 to {MAX_NAME_BYTES} bytes"));
    }
    Ok(value.to_string())
}

/// Most names in `header:a|b|…`.
const MAX_HEADER_NAMES: usize = 4;

/// `header:x-signature`, `header:webhook-id|svix-id`, `field:signature.token`,
/// `param:hub.verify_token`; `authorization:bearer` and
/// `authorization:basic` as a signature only.
fn parse_source(spec: &str, what: &str) -> Result<Source, ConfigError> {
    let Some((kind, rest)) = spec.split_once(':') else {
        return err(format!(
            "{what} must be header:NAME, field:PATH or param:NAME"
        ));
    };
    match kind {
        "header" => {
            let names = rest
                .split('|')
                .map(|n| Ok(name(n.trim(), "a header name")?.to_ascii_lowercase()))
                .collect::<Result<Vec<_>, ConfigError>>()?;
            if names.len() > MAX_HEADER_NAMES {
                return err(format!(
                    "header:NAME|NAME… names {MAX_HEADER_NAMES} headers at most"
                ));
            }
            Ok(Source::Header(names))
        }
        "authorization" if what == "signature" => match rest {
            "bearer" => Ok(Source::Authorization(Credentials::Bearer)),
            "basic" => Ok(Source::Authorization(Credentials::Basic)),
            _ => err("signature authorization:KIND is authorization:bearer or authorization:basic"),
        },
        "param" => Ok(Source::Param(name(rest, "a query parameter name")?)),
        "field" => {
            let path: Vec<String> = rest.split('.').map(str::to_string).collect();
            if path.len() > MAX_FIELD_DEPTH || path.iter().any(|p| p.is_empty()) {
                return err(format!(
                    "a field path is 1 to {MAX_FIELD_DEPTH} non-empty names separated by dots"
                ));
            }
            name(rest, "a field path")?;
            Ok(Source::Field(path))
        }
        _ => err(format!(
            "{what} must be header:NAME, field:PATH or param:NAME"
        )),
    }
}

/// Parses a template: literal text with placeholders `{method}`, `{url}`,
/// `{url_unescaped}`, `{path}`, `{query}`, `{body}`, `{form_sorted}`,
/// `{timestamp}`, `{header:NAME}`, `{field:PATH}`, `{param:NAME}`; `{{` and
/// `}}` are literal braces.
pub fn parse_template(template: &str) -> Result<Vec<Part>, ConfigError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("}}") {
            literal.push(c);
            rest = &rest[2..];
            continue;
        }
        if c == '}' {
            return err("a template's } must be written }} (or close a placeholder)");
        }
        if c != '{' {
            literal.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let Some(end) = rest.find('}') else {
            return err("a template placeholder is not closed with }");
        };
        let placeholder = &rest[1..end];
        rest = &rest[end + 1..];
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(match placeholder {
            "method" => Part::Method,
            "url" => Part::Url,
            "url_unescaped" => Part::UrlUnescaped,
            "path" => Part::Path,
            "query" => Part::Query,
            "body" => Part::Body,
            "form_sorted" => Part::SortedForm,
            "timestamp" => Part::Timestamp,
            other => Part::Value(parse_source(other, "a template placeholder").map_err(|_| {
                ConfigError(format!(
                    "unknown template placeholder {{{other}}} (method, url, url_unescaped, path, query, body, form_sorted, timestamp, header:NAME, field:PATH, param:NAME)"
                ))
            })?),
        });
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    if parts.len() > MAX_PARTS {
        return err(format!("a template has at most {MAX_PARTS} parts"));
    }
    // Each piece of the request is signed once at most: a repeated {body}
    // or field would multiply what every forged request costs.
    for (n, part) in parts.iter().enumerate() {
        if !matches!(part, Part::Text(_)) && parts[..n].contains(part) {
            return err("a template names each placeholder once at most");
        }
    }
    let fields = parts
        .iter()
        .filter(|p| matches!(p, Part::Value(Source::Field(_))))
        .count();
    if fields > MAX_FIELDS {
        return err(format!("a template signs at most {MAX_FIELDS} body fields"));
    }
    if parts
        .iter()
        .all(|p| matches!(p, Part::Text(_) | Part::Timestamp))
    {
        return err(
            "a template must sign something of the request (the body, a field, a header, …)",
        );
    }
    Ok(parts)
}

impl Composed {
    /// Builds a scheme from a definition and the active secrets or public
    /// keys. Errors name the problem and never contain a secret.
    pub fn from_definition(
        definition: &Map<String, Value>,
        secrets: &[String],
    ) -> Result<Composed, ConfigError> {
        if let Some(key) = definition.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return err(format!(
                "a scheme definition has no key {key} (it has {})",
                KEYS.join(", ")
            ));
        }
        let method = match text(definition, "algorithm")? {
            Some("hmac-sha256") => Method::Hmac(Algorithm::Sha256),
            Some("hmac-sha1") => Method::Hmac(Algorithm::Sha1),
            Some("hmac-sha512") => Method::Hmac(Algorithm::Sha512),
            Some("ed25519") => Method::Ed25519,
            Some("ecdsa-p256-sha256") => Method::EcdsaP256Sha256,
            Some("token") => Method::Token,
            _ => return err(
                "algorithm must be hmac-sha256, hmac-sha1, hmac-sha512, ed25519, ecdsa-p256-sha256 or token",
            ),
        };
        let signature = parse_source(
            text(definition, "signature")?
                .ok_or_else(|| ConfigError("a scheme definition needs signature".into()))?,
            "signature",
        )?;
        let signed = match (method, text(definition, "signed")?) {
            (Method::Token, None) => Vec::new(),
            (Method::Token, Some(_)) => return err("a token scheme signs nothing: drop signed"),
            (_, None) => return err("a scheme definition needs signed (a template)"),
            (_, Some(template)) => parse_template(template)?,
        };
        let prefix = match text(definition, "prefix")? {
            Some(p) if p.len() > MAX_NAME_BYTES => {
                return err(format!("prefix is longer than {MAX_NAME_BYTES} bytes"))
            }
            p => p.unwrap_or_default().to_string(),
        };
        let list = match definition.get("list") {
            None | Some(Value::Null) => None,
            Some(Value::Object(list)) => {
                let field = |key: &str| -> Result<String, ConfigError> {
                    match list.get(key) {
                        Some(Value::String(s)) => name(s, &format!("list.{key}")),
                        _ => err(format!("list needs {key} (text)")),
                    }
                };
                if let Some(key) = list
                    .keys()
                    .find(|k| !["separator", "pair", "key"].contains(&k.as_str()))
                {
                    return err(format!("list has no key {key} (separator, pair, key)"));
                }
                Some(List {
                    separator: field("separator")?,
                    pair: field("pair")?,
                    key: field("key")?,
                })
            }
            Some(_) => return err("list must be an object {separator, pair, key}"),
        };
        let encoding = match (method, text(definition, "encoding")?) {
            (Method::Token, None) => SignatureEncoding::Hex,
            (Method::Token, Some(_)) => return err("a token scheme has no encoding"),
            (_, None | Some("hex")) => SignatureEncoding::Hex,
            (_, Some("base64")) => SignatureEncoding::Base64,
            (_, Some("base64url")) => SignatureEncoding::Base64Url,
            _ => return err("encoding must be hex, base64 or base64url"),
        };
        let tolerance_override = match definition.get("tolerance_secs") {
            None | Some(Value::Null) => None,
            Some(v) => Some(positive_seconds(v)?),
        };
        let timestamp = match definition.get("timestamp") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ts)) => {
                Some(parse_timestamp(ts, list.as_ref(), tolerance_override)?)
            }
            Some(_) => return err("timestamp must be an object {from, format, tolerance_secs}"),
        };
        if timestamp.is_none() && tolerance_override.is_some() {
            return err("the tolerance applies only to a scheme with a timestamp");
        }
        if signed.contains(&Part::Timestamp) && timestamp.is_none() {
            return err("the template signs {timestamp}: say where it is (timestamp.from)");
        }
        let value_source = |key: &str| -> Result<Option<Source>, ConfigError> {
            let Some(spec) = text(definition, key)? else {
                return Ok(None);
            };
            match parse_source(spec, key)? {
                Source::Authorization(_) => unreachable!("a signature's source only"),
                source => Ok(Some(source)),
            }
        };
        let body_sha256 = value_source("body_sha256")?;
        if matches!(body_sha256, Some(Source::Field(_))) {
            return err(
                "body_sha256 is header:NAME or param:NAME (the body cannot hold its own digest)",
            );
        }
        if body_sha256.is_some() && !signed.contains(&Part::SortedForm) {
            return err("body_sha256 goes with a template signing {form_sorted}");
        }
        // The digest stands in for the body only if the signature covers
        // it: otherwise a signature over the rest (any empty-body delivery)
        // would carry any body sent with its own digest. The same source
        // reads the same value; a query signed whole holds the parameter.
        let digest_signed = match &body_sha256 {
            None => true,
            Some(Source::Param(name)) => signed.iter().any(|part| match part {
                Part::Url | Part::UrlUnescaped | Part::Query => true,
                Part::Value(Source::Param(signed_name)) => signed_name == name,
                _ => false,
            }),
            Some(source) => signed.contains(&Part::Value(source.clone())),
        };
        if !digest_signed {
            return err(
                "body_sha256 must be signed: the template needs the same {header:NAME} for a header, and {url}, {url_unescaped}, {query} or the same {param:NAME} for a parameter",
            );
        }
        let secrets = match text(definition, "username")? {
            None if signature == Source::Authorization(Credentials::Basic) => {
                if let Some(n) = secrets.iter().position(|s| !s.contains(':')) {
                    return err(format!(
                        "secret {} must be user:password (or pass username => …)",
                        n + 1
                    ));
                }
                Cow::Borrowed(secrets)
            }
            None => Cow::Borrowed(secrets),
            Some(_) if signature != Source::Authorization(Credentials::Basic) => {
                return err("username goes with signature authorization:basic")
            }
            Some(user) if user.len() > MAX_NAME_BYTES => {
                return err(format!("username is longer than {MAX_NAME_BYTES} bytes"))
            }
            Some(user) if user.is_empty() || user.contains(':') => {
                return err("username must be non-empty and without ':'")
            }
            // Basic credentials are compared whole: each password becomes
            // `user:password`.
            Some(_) if secrets.iter().any(String::is_empty) => {
                let n = secrets.iter().position(String::is_empty).unwrap_or(0);
                return err(format!("secret {} is empty", n + 1));
            }
            Some(user) => Cow::Owned(
                secrets
                    .iter()
                    .map(|password| format!("{user}:{password}"))
                    .collect(),
            ),
        };
        if matches!(signature, Source::Authorization(_)) && method != Method::Token {
            return err("signature authorization:… goes with algorithm token");
        }
        let keys = parse_keys(method, text(definition, "secret_encoding")?, &secrets)?;
        Ok(Composed {
            method,
            keys,
            signed,
            signature,
            prefix,
            list,
            encoding,
            timestamp,
            body_sha256,
        })
    }

    /// How many times a check reads a field of the body (each read is a
    /// pass over it and a copy of the value, at most the body's size).
    fn field_reads(&self) -> usize {
        let field = |s: &Source| matches!(s, Source::Field(_));
        let in_template = self
            .signed
            .iter()
            .filter(|p| matches!(p, Part::Value(s) if field(s)))
            .count();
        let timestamp = matches!(
            &self.timestamp,
            Some(Timestamp { from: TimeSource::Value(s), .. }) if field(s)
        );
        usize::from(field(&self.signature)) + in_template + usize::from(timestamp)
    }

    /// Whether the scheme needs the URL the sender called.
    pub fn signs_url(&self) -> bool {
        matches!(self.body_sha256, Some(Source::Param(_)))
            || self.signed.iter().any(|p| {
                matches!(
                    p,
                    Part::Url
                        | Part::UrlUnescaped
                        | Part::Path
                        | Part::Query
                        | Part::Value(Source::Param(_))
                )
            })
            || matches!(self.signature, Source::Param(_))
            || matches!(
                &self.timestamp,
                Some(Timestamp {
                    from: TimeSource::Value(Source::Param(_)),
                    ..
                })
            )
    }

    /// The first secret of an HMAC scheme.
    pub fn first_secret(&self) -> Option<&[u8]> {
        match (self.method, self.keys.first()) {
            (Method::Hmac(_), Some(Key::Secret(secret))) => Some(secret),
            _ => None,
        }
    }

    /// An HMAC or a token that reads no body field and sorts no form.
    pub fn cheap_inline(&self) -> bool {
        matches!(self.method, Method::Hmac(_) | Method::Token)
            && self.field_reads() == 0
            && !self.signed.contains(&Part::SortedForm)
    }

    /// The headers a token scheme reads its token from.
    pub fn token_headers(&self) -> &[String] {
        match (&self.method, &self.signature) {
            (Method::Token, Source::Header(names)) => names,
            _ => &[],
        }
    }

    pub fn is_token(&self) -> bool {
        self.method == Method::Token
    }

    /// The credentials a scheme reads from `Authorization`, if it does.
    pub fn credentials(&self) -> Option<Credentials> {
        match self.signature {
            Source::Authorization(kind) => Some(kind),
            _ => None,
        }
    }

    /// Checks a request. The outer error is [`BodyError::Busy`] when the
    /// memory the check needs beyond the body (a copy of the signed content
    /// for Ed25519; body fields) is not to be had.
    pub fn verify_within(
        &self,
        request: &SignedRequest<'_>,
        budget: &mut dyn MemoryBudget,
    ) -> Result<Result<(), Failure>, BodyError> {
        let field_bytes = request.body.len().saturating_mul(self.field_reads());
        if field_bytes > 0 && !budget.reserve(field_bytes) {
            return Err(BodyError::Busy);
        }
        let raw = match self.read(&self.signature, request) {
            Ok(raw) => raw,
            Err(failure) => return Ok(Err(failure)),
        };
        // Basic's decoded `user:password` is compared exactly as sent: a
        // password may begin or end with spaces (the header's value and the
        // encoded credentials are trimmed already).
        let raw = match self.signature {
            Source::Authorization(Credentials::Basic) => &*raw,
            _ => raw.trim(),
        };
        let Some(value) = raw.strip_prefix(self.prefix.as_str()) else {
            return Ok(Err(Failure::Malformed));
        };
        let given: Vec<&str> = match &self.list {
            None => vec![value],
            Some(list) => list_values(value, list, &list.key)
                .take(MAX_SIGNATURES)
                .collect(),
        };
        if given.is_empty() {
            return Ok(Err(Failure::Malformed));
        }
        let timestamp = match &self.timestamp {
            None => None,
            Some(spec) => match self.check_timestamp(spec, value, request) {
                Ok(ts) => Some(ts),
                Err(failure) => return Ok(Err(failure)),
            },
        };
        if self.method == Method::Token {
            let mut matched = false;
            for key in &self.keys {
                if let Key::Secret(token) = key {
                    for candidate in &given {
                        matched |= super::same_token(token, candidate.as_bytes());
                    }
                }
            }
            return Ok(outcome(matched));
        }
        let signatures: Vec<Vec<u8>> = given
            .iter()
            .filter_map(|sig| decode_signature(self.encoding, sig.trim()))
            .filter(|sig| !sig.is_empty())
            .collect();
        if signatures.is_empty() {
            return Ok(Err(Failure::Malformed));
        }
        let body_covered = match &self.body_sha256 {
            None => false,
            Some(source) => match self.read(source, request) {
                Ok(digest) => {
                    let actual = hex(&Sha256::digest(request.body));
                    let given = digest.trim().to_ascii_lowercase();
                    if !equal(actual.as_bytes(), given.as_bytes()) {
                        return Ok(Err(Failure::Mismatch));
                    }
                    true
                }
                Err(Failure::MissingHeader) => false,
                Err(failure) => return Ok(Err(failure)),
            },
        };
        let form = if self.signed.contains(&Part::SortedForm) && !body_covered {
            match sorted_form(request, budget)? {
                Ok(form) => Some(form),
                Err(failure) => return Ok(Err(failure)),
            }
        } else {
            None
        };
        let parts = match self.signed_parts(request, timestamp.as_deref(), form.as_deref()) {
            Ok(parts) => parts,
            Err(failure) => return Ok(Err(failure)),
        };
        let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_ref()).collect();
        // The body, and a form sorted from it (reserved from the budget as
        // it was built), are bounded by the body's size; the rest is not.
        let body_signed = if self.signed.contains(&Part::Body) {
            request.body.len()
        } else {
            0
        } + form.as_deref().map_or(0, str::len);
        let extra = slices.iter().map(|s| s.len()).sum::<usize>() - body_signed;
        if extra > MAX_SIGNED_EXTRA_BYTES {
            return Ok(Err(Failure::Malformed));
        }
        // Public-key checks are costly each: at most MAX_KEY_CHECKS in all.
        let per_key = match self.method {
            Method::Ed25519 | Method::EcdsaP256Sha256 => (MAX_KEY_CHECKS / self.keys.len()).max(1),
            _ => signatures.len(),
        };
        let signatures = &signatures[..signatures.len().min(per_key)];
        Ok(outcome(match self.method {
            Method::Hmac(algorithm) => {
                // Every key and every signature is compared, matched or not,
                // so the time taken does not tell which one matched.
                let mut matched = false;
                for key in &self.keys {
                    if let Key::Secret(secret) = key {
                        let digest = mac(algorithm, secret, &slices);
                        for sig in signatures {
                            matched |= equal(&digest, sig);
                        }
                    }
                }
                matched
            }
            Method::EcdsaP256Sha256 => {
                let mut hasher = Sha256::new();
                for part in &slices {
                    hasher.update(part);
                }
                let digest = hasher.finalize();
                let mut matched = false;
                for key in &self.keys {
                    if let Key::P256(key) = key {
                        for sig in signatures {
                            let parsed = p256::ecdsa::Signature::from_der(sig)
                                .or_else(|_| p256::ecdsa::Signature::from_slice(sig));
                            matched |=
                                parsed.is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok());
                        }
                    }
                }
                matched
            }
            Method::Ed25519 => {
                // Ed25519 hashes the message twice: it has to be in one piece.
                let len = slices.iter().map(|s| s.len()).sum::<usize>();
                if !budget.reserve(len) {
                    return Err(BodyError::Busy);
                }
                let message = slices.concat();
                let mut matched = false;
                for key in &self.keys {
                    if let Key::Ed25519(key) = key {
                        for sig in signatures {
                            let parsed = ed25519_dalek::Signature::from_slice(sig);
                            matched |=
                                parsed.is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok());
                        }
                    }
                }
                matched
            }
            Method::Token => unreachable!("answered above"),
        }))
    }

    /// A value of the request: [`Failure::MissingHeader`] when it is not
    /// there, [`Failure::Malformed`] when it cannot be read.
    fn read<'r>(
        &self,
        source: &Source,
        request: &'r SignedRequest<'_>,
    ) -> Result<Cow<'r, str>, Failure> {
        let found = match source {
            Source::Header(names) => names
                .iter()
                .find_map(|name| request.header(name))
                .map(Cow::Borrowed),
            Source::Param(name) => form_urlencoded::parse(request.query().as_bytes())
                .find(|(n, _)| n == name)
                .map(|(_, v)| Cow::Owned(v.into_owned())),
            Source::Field(path) => body_field(request, path).map(Cow::Owned),
            Source::Authorization(kind) => {
                let header = request
                    .header("authorization")
                    .ok_or(Failure::MissingHeader)?;
                return credentials(header, *kind).ok_or(Failure::Malformed);
            }
        };
        found.ok_or(Failure::MissingHeader)
    }

    /// The timestamp's text as received, once it is within the tolerance.
    fn check_timestamp(
        &self,
        spec: &Timestamp,
        signature_value: &str,
        request: &SignedRequest<'_>,
    ) -> Result<String, Failure> {
        let raw = match &spec.from {
            TimeSource::Value(source) => self.read(source, request)?.into_owned(),
            TimeSource::ListKey(key) => {
                let list = self.list.as_ref().expect("checked with the definition");
                list_values(signature_value, list, key)
                    .next()
                    .ok_or(Failure::Malformed)?
                    .to_string()
            }
        };
        let raw = raw.trim().to_string();
        let unix = parse_time(&raw, spec.format).ok_or(Failure::Malformed)?;
        if request.now_unix.saturating_sub(unix).saturating_abs() > spec.tolerance_secs {
            return Err(Failure::StaleTimestamp);
        }
        Ok(raw)
    }

    /// The signed content's pieces; [`Failure::MissingHeader`] when a
    /// header, field or parameter it signs is missing. `form` is the sorted
    /// form ([`sorted_form`]), `None` when the body's digest covers it.
    fn signed_parts<'r>(
        &'r self,
        request: &'r SignedRequest<'_>,
        timestamp: Option<&'r str>,
        form: Option<&'r str>,
    ) -> Result<Vec<Cow<'r, [u8]>>, Failure> {
        let bytes = |s: Cow<'r, str>| match s {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        self.signed
            .iter()
            .map(|part| {
                Ok(match part {
                    Part::Text(t) => Cow::Borrowed(t.as_bytes()),
                    Part::Method => Cow::Borrowed(request.method.as_bytes()),
                    Part::Url => Cow::Borrowed(request.url.as_bytes()),
                    Part::UrlUnescaped => Cow::Owned(unescape_reserved(request.url).into_bytes()),
                    Part::Path => Cow::Borrowed(request.path().as_bytes()),
                    Part::Query => Cow::Borrowed(request.query().as_bytes()),
                    Part::Body => Cow::Borrowed(request.body),
                    Part::SortedForm => Cow::Borrowed(form.unwrap_or_default().as_bytes()),
                    Part::Timestamp => {
                        Cow::Borrowed(timestamp.ok_or(Failure::MissingHeader)?.as_bytes())
                    }
                    Part::Value(source) => bytes(self.read(source, request)?),
                })
            })
            .collect()
    }
}

/// The credentials of an `Authorization` header of `kind` (the scheme name
/// is case-insensitive): a bearer token, or basic's decoded `user:password`.
/// `None` when the header is of another kind or cannot be decoded.
fn credentials(header: &str, kind: Credentials) -> Option<Cow<'_, str>> {
    let (name, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    match kind {
        Credentials::Bearer => name
            .eq_ignore_ascii_case("bearer")
            .then_some(Cow::Borrowed(rest)),
        Credentials::Basic if name.eq_ignore_ascii_case("basic") => {
            let decoded = STANDARD.decode(rest).ok()?;
            String::from_utf8(decoded).ok().map(Cow::Owned)
        }
        Credentials::Basic => None,
    }
}

/// What `{form_sorted}` signs: a form body's parameters, each name followed
/// by its value, sorted by name and then value; nothing for an empty body;
/// [`Failure::Malformed`] for any other body, which the signature would not
/// cover. The parameters are decoded as `form_urlencoded` decodes them
/// (UTF-8, lossy), and their memory is reserved from `budget` before they
/// are collected, within the allowance of a parsed body of the same length.
fn sorted_form(
    request: &SignedRequest<'_>,
    budget: &mut dyn MemoryBudget,
) -> Result<Result<String, Failure>, BodyError> {
    let is_form = request
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Ok(if request.body.is_empty() {
            Ok(String::new())
        } else {
            Err(Failure::Malformed)
        });
    }
    let mut meter = Meter::new(budget);
    meter.allow_for(request.body.len());
    // Counted first, so that the vector is allocated once at its final size.
    let count = form_split(request.body).count();
    meter.charge(cost_block(
        count.saturating_mul(std::mem::size_of::<(String, String)>()),
    ))?;
    let mut params: Vec<(String, String)> = Vec::with_capacity(count);
    for (name, value) in form_split(request.body) {
        let name = form_unescape(name, encoding_rs::UTF_8, &mut meter)?;
        let value = form_unescape(value, encoding_rs::UTF_8, &mut meter)?;
        params.push((name, value));
    }
    // Equal pairs are indistinguishable, so an unstable sort signs the same
    // text as a stable one, and it sorts in place.
    params.sort_unstable();
    let len = params.iter().fold(0usize, |len, (name, value)| {
        len.saturating_add(name.len()).saturating_add(value.len())
    });
    meter.charge(cost_block(len))?;
    let mut signed = String::with_capacity(len);
    for (name, value) in &params {
        signed.push_str(name);
        signed.push_str(value);
    }
    Ok(Ok(signed))
}

/// `url` with `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` (either
/// case) decoded, every other escape kept.
fn unescape_reserved(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map(char::from)
            .filter(|c| ":/?@!$'()*,;".contains(*c));
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn outcome(matched: bool) -> Result<(), Failure> {
    if matched {
        Ok(())
    } else {
        Err(Failure::Mismatch)
    }
}

fn positive_seconds(v: &Value) -> Result<i64, ConfigError> {
    match v.as_i64() {
        Some(secs) if secs > 0 => Ok(secs),
        _ => err("the tolerance must be a positive number of seconds"),
    }
}

fn parse_timestamp(
    ts: &Map<String, Value>,
    list: Option<&List>,
    tolerance_override: Option<i64>,
) -> Result<Timestamp, ConfigError> {
    if let Some(key) = ts
        .keys()
        .find(|k| !["from", "format", "tolerance_secs"].contains(&k.as_str()))
    {
        return err(format!(
            "timestamp has no key {key} (from, format, tolerance_secs)"
        ));
    }
    let from = match ts.get("from") {
        Some(Value::String(spec)) => match spec.strip_prefix("list:") {
            Some(key) if list.is_some() => TimeSource::ListKey(name(key, "a list key")?),
            Some(_) => return err("timestamp.from list:KEY needs the signature's list"),
            None => TimeSource::Value(parse_source(spec, "timestamp.from")?),
        },
        _ => return err("timestamp needs from (header:NAME, field:PATH, param:NAME or list:KEY)"),
    };
    let format = match ts.get("format") {
        None | Some(Value::Null) => TimeFormat::UnixSeconds,
        Some(Value::String(f)) if f == "unix" => TimeFormat::UnixSeconds,
        Some(Value::String(f)) if f == "unix_ms" => TimeFormat::UnixMillis,
        Some(Value::String(f)) if f == "rfc3339" => TimeFormat::Rfc3339,
        Some(_) => return err("timestamp.format must be unix, unix_ms or rfc3339"),
    };
    let tolerance_secs = match (tolerance_override, ts.get("tolerance_secs")) {
        (Some(secs), _) => secs,
        (None, None | Some(Value::Null)) => DEFAULT_TOLERANCE_SECS,
        (None, Some(v)) => positive_seconds(v)?,
    };
    Ok(Timestamp {
        from,
        format,
        tolerance_secs,
    })
}

/// Decodes the active secrets or public keys for `method`. `secret_encoding`
/// says how a secret is written: `text` (its UTF-8 bytes, the default for
/// HMAC and tokens), `hex`, `base64`, or `whsec` (Standard Webhooks and
/// Svix: `whsec_` then base64). Public keys are PEM (SubjectPublicKeyInfo),
/// or the raw key as the provider shows it: Ed25519 32 bytes in hex (the
/// default) or base64; P-256 the DER SubjectPublicKeyInfo in base64 (the
/// default) or a SEC1 point in hex.
fn parse_keys(
    method: Method,
    secret_encoding: Option<&str>,
    secrets: &[String],
) -> Result<Vec<Key>, ConfigError> {
    if secrets.is_empty() {
        return err("the scheme needs a secret (or public key)");
    }
    if secrets.len() > MAX_SECRETS {
        return err(format!(
            "at most {MAX_SECRETS} secrets may be active at once"
        ));
    }
    let mut keys = Vec::with_capacity(secrets.len());
    for (n, secret) in secrets.iter().enumerate() {
        let n = n + 1;
        if secret.is_empty() {
            return err(format!("secret {n} is empty"));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return err(format!(
                "secret {n} is longer than {MAX_SECRET_BYTES} bytes"
            ));
        }
        let bad = |what: &str| ConfigError(format!("secret {n} is not {what}"));
        let trimmed = secret.trim();
        keys.push(match method {
            Method::Hmac(_) | Method::Token => Key::Secret(match secret_encoding {
                None | Some("text") => secret.as_bytes().to_vec(),
                Some("hex") => decode_hex(trimmed).ok_or_else(|| bad("hex"))?,
                Some("base64") => STANDARD.decode(trimmed).map_err(|_| bad("base64"))?,
                Some("whsec") => standard_webhooks_secret(trimmed)
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| bad("a Standard Webhooks secret (whsec_ followed by base64)"))?,
                Some(_) => return err("secret_encoding must be text, hex, base64 or whsec"),
            }),
            Method::Ed25519 => Key::Ed25519(if trimmed.starts_with("-----BEGIN") {
                ed25519_dalek::VerifyingKey::from_public_key_pem(trimmed)
                    .map_err(|_| bad("an Ed25519 public key (PEM)"))?
            } else {
                let raw = match secret_encoding {
                    None | Some("hex") => decode_hex(trimmed),
                    Some("base64") => STANDARD.decode(trimmed).ok(),
                    Some(_) => return err("an Ed25519 key's encoding must be hex, base64 or PEM"),
                };
                let raw: [u8; 32] = raw
                    .and_then(|r| r.try_into().ok())
                    .ok_or_else(|| bad("an Ed25519 public key (32 bytes)"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map_err(|_| bad("an Ed25519 public key"))?
            }),
            Method::EcdsaP256Sha256 => {
                use p256::pkcs8::DecodePublicKey as _;
                Key::P256(if trimmed.starts_with("-----BEGIN") {
                    p256::ecdsa::VerifyingKey::from_public_key_pem(trimmed)
                        .map_err(|_| bad("a P-256 public key (PEM)"))?
                } else {
                    match secret_encoding {
                        None | Some("base64") => STANDARD
                            .decode(trimmed)
                            .ok()
                            .and_then(|der| {
                                p256::ecdsa::VerifyingKey::from_public_key_der(&der).ok()
                            })
                            .ok_or_else(|| bad("a P-256 public key (base64 DER)"))?,
                        Some("hex") => decode_hex(trimmed)
                            .and_then(|sec1| p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok())
                            .ok_or_else(|| bad("a P-256 public key (hex SEC1 point)"))?,
                        Some(_) => {
                            return err(
                                "a P-256 key's encoding must be base64 (DER), hex (SEC1) or PEM",
                            )
                        }
                    }
                })
            }
        });
    }
    Ok(keys)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn decode_signature(encoding: SignatureEncoding, sig: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => decode_hex(sig),
        // With or without padding: senders differ.
        SignatureEncoding::Base64 => STANDARD
            .decode(sig)
            .or_else(|_| STANDARD_NO_PAD.decode(sig))
            .ok(),
        SignatureEncoding::Base64Url => URL_SAFE_NO_PAD
            .decode(sig)
            .or_else(|_| URL_SAFE.decode(sig))
            .ok(),
    }
}

/// The values of the items with `key` in a `key<pair>value<separator>…`
/// list, in order.
fn list_values<'v>(value: &'v str, list: &'v List, key: &'v str) -> impl Iterator<Item = &'v str> {
    value
        .split(list.separator.as_str())
        .filter_map(move |item| {
            let (k, v) = item.trim().split_once(list.pair.as_str())?;
            (k.trim() == key).then_some(v.trim())
        })
}

fn parse_time(raw: &str, format: TimeFormat) -> Option<i64> {
    match format {
        TimeFormat::UnixSeconds => raw.parse::<i64>().ok(),
        TimeFormat::UnixMillis => raw.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
        TimeFormat::Rfc3339 => {
            time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(|t| t.unix_timestamp())
        }
    }
}

/// A field of the body as text: for a JSON body a scalar at `path` (found
/// without building the rest of the document), for a form body the first
/// value of the field named `path`. `None` when there is none.
fn body_field(request: &SignedRequest<'_>, path: &[String]) -> Option<String> {
    let content_type = request.header("content-type").unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/x-www-form-urlencoded" {
        let name = path.join(".");
        return form_urlencoded::parse(request.body)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.into_owned());
    }
    json_scalar(request.body, path)
}

/// A scalar of a JSON document at `path`, as text (see [`body_field`]).
pub(super) fn json_scalar(body: &[u8], path: &[String]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde::de::DeserializeSeed::deserialize(json_field::Find(path), &mut deserializer)
        .ok()
        .flatten()
}

/// Finds one scalar in a JSON document: every other value is skipped
/// (`IgnoredAny`), so the search holds nothing of the document.
mod json_field {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    pub struct Find<'p>(pub &'p [String]);

    /// The key serde_json's arbitrary-precision numbers arrive under.
    const NUMBER_TOKEN: &str = "$serde_json::private::Number";

    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Option<String>, E> {
            Ok(self.0.is_empty().then(|| v.to_string()))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Option<String>, E> {
            Ok(self.0.is_empty().then(|| v.to_string()))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Option<String>, E> {
            Ok(self.0.is_empty().then(|| v.to_string()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Option<String>, E> {
            Ok(self.0.is_empty().then(|| v.to_string()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Option<String>, E> {
            Ok(self.0.is_empty().then(|| v.to_string()))
        }
        fn visit_unit<E>(self) -> Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
            let mut found = None;
            let mut seen = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == NUMBER_TOKEN {
                    let number: String = map.next_value()?;
                    return Ok(self.0.is_empty().then_some(number));
                }
                match self.0.split_first() {
                    // A key on the path twice: the body parser keeps the
                    // last, so what is checked and what is stored could
                    // differ. Such a body has no such field.
                    Some((first, _)) if *first == key && seen => {
                        return Err(serde::de::Error::custom("a key on the path twice"));
                    }
                    Some((first, rest)) if *first == key => {
                        seen = true;
                        found = map.next_value_seed(Find(rest))?;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;
    use serde_json::json;

    fn scheme(definition: Value, secrets: &[&str]) -> Composed {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Composed::from_definition(definition.as_object().unwrap(), &secrets).unwrap()
    }

    fn config_error(definition: Value, secrets: &[&str]) -> String {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Composed::from_definition(definition.as_object().unwrap(), &secrets)
            .unwrap_err()
            .0
    }

    fn check(
        scheme: &Composed,
        method: &str,
        url: &str,
        pairs: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), Failure> {
        let scheme = super::super::Scheme::from(scheme.clone());
        crate::test_support::verify(&scheme, method, url, pairs, body, now)
    }

    fn hmac_hex(secret: &[u8], content: &[u8]) -> String {
        super::super::hex(&mac(Algorithm::Sha256, secret, &[content]))
    }

    #[test]
    fn templates_parse_into_parts() {
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            vec![
                Part::Text("v0:".into()),
                Part::Timestamp,
                Part::Text(":".into()),
                Part::Body
            ]
        );
        assert_eq!(
            parse_template("{method}{url}{{x}}{header:X-Id}.{field:a.b}{param:p}{path}?{query}")
                .unwrap(),
            vec![
                Part::Method,
                Part::Url,
                Part::Text("{x}".into()),
                Part::Value(Source::Header(vec!["x-id".into()])),
                Part::Text(".".into()),
                Part::Value(Source::Field(vec!["a".into(), "b".into()])),
                Part::Value(Source::Param("p".into())),
                Part::Path,
                Part::Text("?".into()),
                Part::Query,
            ]
        );
        assert!(parse_template("{bodyy}")
            .unwrap_err()
            .0
            .contains("unknown template placeholder {bodyy}"));
        assert!(parse_template("{body").is_err());
        assert!(parse_template("a}b").is_err());
        assert!(parse_template(&"{body}".repeat(33)).is_err());
    }

    #[test]
    fn reserved_escapes_are_decoded_and_others_kept() {
        assert_eq!(
            unescape_reserved("https://h/a%2Fb%3a%40?q=%20%2C%25x%2"),
            "https://h/a/b:@?q=%20,%25x%2"
        );
        assert_eq!(unescape_reserved("%E2%82%AC"), "%E2%82%AC");
    }

    #[test]
    fn templates_that_would_cost_or_sign_nothing_are_refused() {
        let refused = |template: &str| parse_template(template).unwrap_err().0;
        assert_eq!(
            refused("{body}.{body}"),
            "a template names each placeholder once at most"
        );
        assert_eq!(
            refused("{field:a}{field:a}"),
            "a template names each placeholder once at most"
        );
        assert_eq!(
            refused("{field:a}{field:b}{field:c}{field:d}{field:e}"),
            "a template signs at most 4 body fields"
        );
        assert_eq!(
            refused("v0:{timestamp}"),
            "a template must sign something of the request (the body, a field, a header, …)"
        );
        assert!(parse_template("{field:a}.{field:b}.{body}").is_ok());
        let e = config_error(
            json!({"algorithm": "hmac-sha256", "signed": "{body}", "signature": "header:x",
                   "timestamp": {"from": "header:t", "format": ["rfc3339"]}}),
            &["s"],
        );
        assert_eq!(e, "timestamp.format must be unix, unix_ms or rfc3339");
    }

    #[test]
    fn a_signed_field_given_twice_is_not_there() {
        // The body parser keeps the last of duplicate keys: what is checked
        // must be what is stored.
        let s = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{field:payload}", "signature": "header:sig"}),
            &["k"],
        );
        let sig = hmac_hex(b"k", b"good");
        let ct = [("content-type", "application/json"), ("sig", sig.as_str())];
        assert_eq!(
            check(&s, "POST", "", &ct, br#"{"payload":"good"}"#, 0),
            Ok(())
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "",
                &ct,
                br#"{"payload":"good","payload":"evil"}"#,
                0
            ),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(
                &s,
                "POST",
                "",
                &ct,
                br#"{"payload":"good","other":{"payload":"x"}}"#,
                0
            ),
            Ok(())
        );
    }

    #[test]
    fn hex_is_hex_digits_only_and_signed_headers_are_bounded() {
        assert_eq!(decode_hex("0d"), Some(vec![13]));
        assert_eq!(decode_hex("+d"), None);
        assert_eq!(decode_hex("-1"), None);
        let s = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{header:x-pad}{body}", "signature": "header:sig"}),
            &["k"],
        );
        let pad = "p".repeat(MAX_SIGNED_EXTRA_BYTES + 1);
        let sig = hmac_hex(b"k", format!("{pad}b").as_bytes());
        let h = [("x-pad", pad.as_str()), ("sig", sig.as_str())];
        assert_eq!(check(&s, "POST", "", &h, b"b", 0), Err(Failure::Malformed));
        let sig = hmac_hex(b"k", format!("{}b", &pad[1..]).as_bytes());
        let h = [("x-pad", &pad[1..]), ("sig", sig.as_str())];
        assert_eq!(check(&s, "POST", "", &h, b"b", 0), Ok(()));
    }

    #[test]
    fn public_key_checks_are_bounded_per_request() {
        use ed25519_dalek::Signer;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let hex_key =
            |k: &ed25519_dalek::SigningKey| super::super::hex(k.verifying_key().as_bytes());
        let two_keys = scheme(
            json!({"algorithm": "ed25519", "signed": "{body}", "signature": "header:sig",
                   "list": {"separator": " ", "pair": "=", "key": "v"}}),
            &[&hex_key(&other), &hex_key(&signing)],
        );
        let good = super::super::hex(&signing.sign(b"b").to_bytes());
        let wrong = super::super::hex(&other.sign(b"x").to_bytes());
        // Two keys: five signatures each at most; the sixth is not looked at.
        let fifth = format!("{} v={good}", vec![format!("v={wrong}"); 4].join(" "));
        assert_eq!(
            check(&two_keys, "POST", "", &[("sig", &fifth)], b"b", 0),
            Ok(())
        );
        let sixth = format!("{} v={good}", vec![format!("v={wrong}"); 5].join(" "));
        assert_eq!(
            check(&two_keys, "POST", "", &[("sig", &sixth)], b"b", 0),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn a_list_of_signatures_any_of_which_may_match() {
        // Paddle's shape: ts=…;h1=…;h1=… over "ts:body".
        let s = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{timestamp}:{body}",
                   "signature": "header:Paddle-Signature",
                   "list": {"separator": ";", "pair": "=", "key": "h1"},
                   "timestamp": {"from": "list:ts"}}),
            &["old", "new"],
        );
        let body = br#"{"a":1}"#;
        let good = hmac_hex(b"new", b"1700000000:{\"a\":1}");
        let header = format!("ts=1700000000;h1={};h1={good}", "00".repeat(32));
        let h = [("paddle-signature", header.as_str())];
        assert_eq!(check(&s, "POST", "", &h, body, 1_700_000_100), Ok(()));
        assert_eq!(
            check(&s, "POST", "", &h, b"{\"a\":2}", 1_700_000_100),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&s, "POST", "", &h, body, 1_700_000_301),
            Err(Failure::StaleTimestamp)
        );
        let no_ts = format!("h1={good}");
        assert_eq!(
            check(
                &s,
                "POST",
                "",
                &[("paddle-signature", &no_ts)],
                body,
                1_700_000_100
            ),
            Err(Failure::Malformed)
        );
        assert_eq!(
            check(&s, "POST", "", &[], body, 1_700_000_100),
            Err(Failure::MissingHeader)
        );
    }

    #[test]
    fn method_url_and_body_fields_can_be_signed() {
        let s = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{method}{url}{field:signature.token}",
                   "signature": "field:signature.signature", "encoding": "hex"}),
            &["k"],
        );
        let url = "https://hooks.example.com/hooks/x?a=1";
        let sig = hmac_hex(b"k", format!("POST{url}tok").as_bytes());
        let body = format!(
            r#"{{"event-data":{{"id":[1,{{"signature":"no"}}],"n":1.5}},"signature":{{"token":"tok","signature":"{sig}","timestamp":1700000000}}}}"#
        );
        let ct = [("content-type", "application/json")];
        assert_eq!(check(&s, "POST", url, &ct, body.as_bytes(), 0), Ok(()));
        assert_eq!(
            check(&s, "GET", url, &ct, body.as_bytes(), 0),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&s, "POST", url, &ct, br#"{"signature":{"token":"tok"}}"#, 0),
            Err(Failure::MissingHeader)
        );
        assert_eq!(
            check(&s, "POST", url, &ct, b"not json", 0),
            Err(Failure::MissingHeader)
        );
        // A form body: the field is named by the whole path.
        let form = format!("signature.token=tok&signature.signature={sig}");
        let form_ct = [("content-type", "application/x-www-form-urlencoded")];
        assert_eq!(check(&s, "POST", url, &form_ct, form.as_bytes(), 0), Ok(()));
    }

    #[test]
    fn json_fields_are_found_as_text_whatever_their_type() {
        let find = |body: &str, path: &str| {
            let h = headers(&[("content-type", "application/json")]);
            let path: Vec<String> = path.split('.').map(str::to_string).collect();
            body_field(
                &SignedRequest {
                    headers: &h,
                    body: body.as_bytes(),
                    url: "",
                    method: "POST",
                    now_unix: 0,
                },
                &path,
            )
        };
        assert_eq!(
            find(r#"{"a":{"b":1700000000}}"#, "a.b").as_deref(),
            Some("1700000000")
        );
        assert_eq!(
            find(r#"{"a":{"b":"x\"y"}}"#, "a.b").as_deref(),
            Some("x\"y")
        );
        assert_eq!(find(r#"{"a":{"b":{"c":1}}}"#, "a.b"), None);
        assert_eq!(find(r#"{"a":[{"b":1}]}"#, "a.b"), None);
        assert_eq!(
            find(r#"{"b":1,"a":{"b":true}}"#, "a.b").as_deref(),
            Some("true")
        );
        assert_eq!(
            find(&format!("{}1{}", "[".repeat(200), "]".repeat(200)), "a"),
            None
        );
    }

    #[test]
    fn a_token_is_compared_with_each_secret() {
        let s = scheme(
            json!({"algorithm": "token", "signature": "header:X-Telegram-Bot-Api-Secret-Token"}),
            &["first", "second"],
        );
        assert!(s.is_token());
        let h = |t: &'static str| [("x-telegram-bot-api-secret-token", t)];
        assert_eq!(check(&s, "POST", "", &h("second"), b"{}", 0), Ok(()));
        assert_eq!(
            check(&s, "POST", "", &h("secon"), b"{}", 0),
            Err(Failure::Mismatch)
        );
        assert_eq!(
            check(&s, "POST", "", &[], b"{}", 0),
            Err(Failure::MissingHeader)
        );
        let q = scheme(
            json!({"algorithm": "token", "signature": "param:hub.verify_token"}),
            &["vt"],
        );
        assert!(q.signs_url());
        assert_eq!(
            check(
                &q,
                "GET",
                "https://h/x?hub.mode=subscribe&hub.verify_token=vt",
                &[],
                b"",
                0
            ),
            Ok(())
        );
        assert_eq!(
            check(&q, "GET", "https://h/x?hub.verify_token=no", &[], b"", 0),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn timestamps_in_milliseconds_and_rfc3339() {
        let ms = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{body}{timestamp}", "signature": "header:sig",
                   "encoding": "base64", "timestamp": {"from": "header:ts", "format": "unix_ms"}}),
            &["k"],
        );
        let sig = STANDARD.encode(mac(Algorithm::Sha256, b"k", &[b"b1700000000123"]));
        let h = [("sig", sig.as_str()), ("ts", "1700000000123")];
        assert_eq!(check(&ms, "POST", "", &h, b"b", 1_700_000_100), Ok(()));
        assert_eq!(
            check(&ms, "POST", "", &h, b"b", 1_700_000_400),
            Err(Failure::StaleTimestamp)
        );
        let rfc = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{timestamp}{body}", "signature": "header:sig",
                   "timestamp": {"from": "header:ts", "format": "rfc3339", "tolerance_secs": 600}}),
            &["k"],
        );
        let ts = "2023-11-14T22:13:20.123456789Z";
        let sig = hmac_hex(b"k", format!("{ts}b").as_bytes());
        let h = [("sig", sig.as_str()), ("ts", ts)];
        assert_eq!(check(&rfc, "POST", "", &h, b"b", 1_700_000_500), Ok(()));
        assert_eq!(
            check(&rfc, "POST", "", &h, b"b", 1_700_000_700),
            Err(Failure::StaleTimestamp)
        );
        let bad = [("sig", sig.as_str()), ("ts", "yesterday")];
        assert_eq!(
            check(&rfc, "POST", "", &bad, b"b", 1_700_000_500),
            Err(Failure::Malformed)
        );
    }

    #[test]
    fn ed25519_and_p256_public_keys() {
        use ed25519_dalek::Signer;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let public = super::super::hex(signing.verifying_key().as_bytes());
        let s = scheme(
            json!({"algorithm": "ed25519", "signed": "{timestamp}{body}",
                   "signature": "header:X-Signature-Ed25519",
                   "timestamp": {"from": "header:X-Signature-Timestamp"}}),
            &[&public],
        );
        let sig = super::super::hex(&signing.sign(b"1700000000{\"type\":1}").to_bytes());
        let h = [
            ("x-signature-ed25519", sig.as_str()),
            ("x-signature-timestamp", "1700000000"),
        ];
        assert_eq!(
            check(&s, "POST", "", &h, br#"{"type":1}"#, 1_700_000_000),
            Ok(())
        );
        assert_eq!(
            check(&s, "POST", "", &h, br#"{"type":2}"#, 1_700_000_000),
            Err(Failure::Mismatch)
        );

        use p256::pkcs8::EncodePublicKey;
        let secret = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let der = secret.verifying_key().to_public_key_der().unwrap();
        let public = STANDARD.encode(der.as_bytes());
        let e = scheme(
            json!({"algorithm": "ecdsa-p256-sha256", "signed": "{timestamp}{body}", "encoding": "base64",
                   "signature": "header:sig", "timestamp": {"from": "header:ts"}}),
            &[&public],
        );
        let sig: p256::ecdsa::Signature = secret.sign(b"1700000000[]");
        let der_sig = STANDARD.encode(sig.to_der().as_bytes());
        let h = [("sig", der_sig.as_str()), ("ts", "1700000000")];
        assert_eq!(check(&e, "POST", "", &h, b"[]", 1_700_000_000), Ok(()));
        assert_eq!(
            check(&e, "POST", "", &h, b"[ ]", 1_700_000_000),
            Err(Failure::Mismatch)
        );
        let raw_sig = STANDARD.encode(sig.to_bytes());
        let h = [("sig", raw_sig.as_str()), ("ts", "1700000000")];
        assert_eq!(check(&e, "POST", "", &h, b"[]", 1_700_000_000), Ok(()));
    }

    #[test]
    fn definitions_are_checked_without_echoing_secrets() {
        let base = json!({"algorithm": "hmac-sha256", "signed": "{body}", "signature": "header:x"});
        assert!(config_error(
            json!({"algorithm": "md5", "signed": "{body}", "signature": "header:x"}),
            &["s"]
        )
        .starts_with("algorithm must be"));
        assert!(config_error(
            json!({"algorithm": "hmac-sha256", "signature": "header:x"}),
            &["s"]
        )
        .contains("needs signed"));
        assert!(config_error(
            json!({"algorithm": "hmac-sha256", "signed": "{body}", "signature": "cookie:x"}),
            &["s"]
        )
        .contains("header:NAME"));
        let mut extra = base.clone();
        extra["colour"] = json!("blue");
        assert!(config_error(extra, &["s"]).contains("no key colour"));
        assert!(config_error(
            json!({"algorithm": "hmac-sha256", "signed": "{timestamp}{body}", "signature": "header:x"}),
            &["s"]
        )
        .contains("timestamp.from"));
        let e = config_error(
            json!({"algorithm": "ed25519", "signed": "{body}", "signature": "header:x"}),
            &["top-secret-value"],
        );
        assert!(e.contains("secret 1 is not an Ed25519 public key"), "{e}");
        assert!(!e.contains("top-secret-value"));
        let e = config_error(
            json!({"algorithm": "hmac-sha256", "signed": "{body}", "signature": "header:x", "secret_encoding": "whsec"}),
            &["whsec_%%%secret"],
        );
        assert!(
            e.contains("whsec_ followed by base64") && !e.contains("%%%secret"),
            "{e}"
        );
        assert!(config_error(base.clone(), &[]).contains("needs a secret"));
        let many: Vec<&str> = vec!["s"; 11];
        assert!(config_error(base, &many).contains("at most 10"));
    }

    #[test]
    fn a_header_may_come_under_either_name() {
        let either = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{header:x-id|y-id}.{body}",
                   "signature": "header:x-sig|y-sig", "encoding": "hex"}),
            &["k"],
        );
        let sig = hmac_hex(b"k", b"7.hello");
        let post = |pairs: &[(&str, &str)]| check(&either, "POST", "", pairs, b"hello", 0);
        assert_eq!(post(&[("x-id", "7"), ("x-sig", &sig)]), Ok(()));
        // Header by header: one family for the id, the other for the signature.
        assert_eq!(post(&[("y-id", "7"), ("x-sig", &sig)]), Ok(()));
        assert_eq!(post(&[("x-id", "7"), ("y-sig", &sig)]), Ok(()));
        // The first name present is the one read.
        assert_eq!(
            post(&[("x-id", "8"), ("y-id", "7"), ("x-sig", &sig)]),
            Err(Failure::Mismatch)
        );
        assert_eq!(post(&[("x-sig", &sig)]), Err(Failure::MissingHeader));
        assert_eq!(
            config_error(
                json!({"algorithm": "token", "signature": "header:a|b|c|d|e"}),
                &["t"]
            ),
            "header:NAME|NAME… names 4 headers at most"
        );
        assert_eq!(
            config_error(
                json!({"algorithm": "token", "signature": "header:a||b"}),
                &["t"]
            ),
            "a header name must be 1 to 256 bytes"
        );
    }

    #[test]
    fn authorization_credentials_are_tokens() {
        let bearer = scheme(
            json!({"algorithm": "token", "signature": "authorization:bearer"}),
            &["t0k", "old"],
        );
        let auth = |scheme: &Composed, value: &str| {
            check(scheme, "POST", "", &[("authorization", value)], b"", 0)
        };
        assert_eq!(auth(&bearer, "Bearer t0k"), Ok(()));
        assert_eq!(auth(&bearer, "BEARER   old "), Ok(()));
        assert_eq!(auth(&bearer, "Bearer t0"), Err(Failure::Mismatch));
        assert_eq!(auth(&bearer, "Basic dDBr"), Err(Failure::Malformed));
        assert_eq!(auth(&bearer, "t0k"), Err(Failure::Malformed));
        assert_eq!(
            check(&bearer, "POST", "", &[], b"", 0),
            Err(Failure::MissingHeader)
        );
        let basic = scheme(
            json!({"algorithm": "token", "signature": "authorization:basic", "username": "ann"}),
            &["pw"],
        );
        // base64("ann:pw") = YW5uOnB3; base64 of the bytes ff fe = //4=
        assert_eq!(auth(&basic, "basic YW5uOnB3"), Ok(()));
        assert_eq!(auth(&basic, "Basic //4="), Err(Failure::Malformed));
        assert_eq!(auth(&basic, "Bearer YW5uOnB3"), Err(Failure::Malformed));
        for (definition, message) in [
            (
                json!({"algorithm": "token", "signature": "authorization:digest"}),
                "signature authorization:KIND is authorization:bearer or authorization:basic",
            ),
            (
                json!({"algorithm": "hmac-sha256", "signed": "{body}", "signature": "authorization:bearer"}),
                "signature authorization:… goes with algorithm token",
            ),
            (
                json!({"algorithm": "token", "signature": "header:x-token", "username": "ann"}),
                "username goes with signature authorization:basic",
            ),
            (
                json!({"algorithm": "token", "signature": "authorization:basic", "username": "a:b"}),
                "username must be non-empty and without ':'",
            ),
            (
                json!({"algorithm": "token", "signature": "authorization:basic"}),
                "secret 1 must be user:password (or pass username => …)",
            ),
            (
                json!({"algorithm": "hmac-sha256", "signed": "{authorization:bearer}", "signature": "header:x"}),
                "unknown template placeholder {authorization:bearer} (method, url, url_unescaped, path, query, body, form_sorted, timestamp, header:NAME, field:PATH, param:NAME)",
            ),
        ] {
            assert_eq!(config_error(definition, &["pw"]), message);
        }
        assert_eq!(
            config_error(
                json!({"algorithm": "token", "signature": "authorization:basic", "username": "ann"}),
                &["pw", ""]
            ),
            "secret 2 is empty"
        );
    }

    #[test]
    fn a_sorted_form_covers_form_bodies_only() {
        // HMAC-SHA256 over the URL and the sorted form, a shape of our own.
        let form = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{url}|{form_sorted}",
                   "signature": "header:x-sig", "encoding": "hex"}),
            &["k"],
        );
        let url = "https://h/hooks/1";
        let form_type = (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        );
        let sig = hmac_hex(b"k", b"https://h/hooks/1|a1a2b%z");
        let pairs = [form_type, ("x-sig", sig.as_str())];
        assert_eq!(
            check(&form, "POST", url, &pairs, b"b=%25z&a=2&a=1", 0),
            Ok(())
        );
        assert_eq!(
            check(&form, "POST", url, &pairs, b"b=%25z&a=2&a=3", 0),
            Err(Failure::Mismatch)
        );
        // Another body would not be covered at all.
        let json_type = [
            ("content-type", "application/json"),
            ("x-sig", sig.as_str()),
        ];
        assert_eq!(
            check(&form, "POST", url, &json_type, b"{}", 0),
            Err(Failure::Malformed)
        );
        // An empty body adds nothing.
        let empty = hmac_hex(b"k", b"https://h/hooks/1|");
        assert_eq!(
            check(&form, "POST", url, &[("x-sig", empty.as_str())], b"", 0),
            Ok(())
        );
        for (definition, message) in [
            (
                json!({"algorithm": "hmac-sha1", "signed": "{url}{body}", "signature": "header:x",
                       "body_sha256": "param:h"}),
                "body_sha256 goes with a template signing {form_sorted}",
            ),
            (
                json!({"algorithm": "hmac-sha1", "signed": "{url}{form_sorted}", "signature": "header:x",
                       "body_sha256": "field:h"}),
                "body_sha256 is header:NAME or param:NAME (the body cannot hold its own digest)",
            ),
        ] {
            assert_eq!(config_error(definition, &["k"]), message);
        }
    }

    #[test]
    fn a_sorted_form_as_large_as_the_body_is_not_extra_signed_content() {
        let twilio =
            super::super::Scheme::from_config("twilio", &["12345".to_string()], &Map::new())
                .unwrap();
        let url = "https://h/hooks/1";
        let body = format!("Body={}", "x".repeat(200_000));
        let signed = format!("{url}Body{}", "x".repeat(200_000));
        let sig = STANDARD.encode(mac(Algorithm::Sha1, b"12345", &[signed.as_bytes()]));
        let pairs = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", sig.as_str()),
        ];
        assert_eq!(
            crate::test_support::verify(&twilio, "POST", url, &pairs, body.as_bytes(), 0),
            Ok(())
        );
    }

    #[test]
    fn a_body_digest_counts_only_where_the_signature_covers_it() {
        // A digest the template does not sign would let anyone holding a
        // signature over the URL alone (any empty-body delivery, any
        // delivery with a digest) send another body with its own digest.
        let unsigned = "body_sha256 must be signed: the template needs the same {header:NAME} for a header, and {url}, {url_unescaped}, {query} or the same {param:NAME} for a parameter";
        for definition in [
            json!({"algorithm": "hmac-sha256", "signed": "{url}|{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "header:x-body-sha256"}),
            json!({"algorithm": "hmac-sha256", "signed": "{path}|{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "param:h"}),
            json!({"algorithm": "hmac-sha256", "signed": "{param:g}{path}{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "param:h"}),
            // The digest read from `a` when present, the signed value from `b`.
            json!({"algorithm": "hmac-sha256", "signed": "{header:b}{url}{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "header:a|b"}),
        ] {
            assert_eq!(config_error(definition, &["k"]), unsigned);
        }
        let url = "https://h/hooks/1";
        let evil = br#"{"amount":1000000}"#;
        let evil_digest = super::super::hex(&Sha256::digest(evil));
        // Signed, in a header: the digest is part of the signed content.
        let in_header = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{header:x-body-sha256}|{url}|{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "header:x-body-sha256"}),
            &["k"],
        );
        let body = br#"{"amount":1}"#;
        let digest = super::super::hex(&Sha256::digest(body));
        let sig = hmac_hex(b"k", format!("{digest}|{url}|").as_bytes());
        let json_type = ("content-type", "application/json");
        let h = [
            json_type,
            ("x-sig", sig.as_str()),
            ("x-body-sha256", digest.as_str()),
        ];
        assert_eq!(check(&in_header, "POST", url, &h, body, 0), Ok(()));
        assert_eq!(
            check(&in_header, "POST", url, &h, evil, 0),
            Err(Failure::Mismatch)
        );
        let swapped = [
            json_type,
            ("x-sig", sig.as_str()),
            ("x-body-sha256", evil_digest.as_str()),
        ];
        assert_eq!(
            check(&in_header, "POST", url, &swapped, evil, 0),
            Err(Failure::Mismatch)
        );
        // Signed, in the query: {query}, {url_unescaped} and {param:h} cover it.
        for template in [
            "{query}|{form_sorted}",
            "{url_unescaped}|{form_sorted}",
            "{param:h}|{form_sorted}",
        ] {
            scheme(
                json!({"algorithm": "hmac-sha256", "signed": template,
                       "signature": "header:x-sig", "body_sha256": "param:h"}),
                &["k"],
            );
        }
        let in_query = scheme(
            json!({"algorithm": "hmac-sha256", "signed": "{query}|{form_sorted}",
                   "signature": "header:x-sig", "body_sha256": "param:h"}),
            &["k"],
        );
        let with_digest = format!("{url}?h={digest}");
        let sig = hmac_hex(b"k", format!("h={digest}|").as_bytes());
        let h = [json_type, ("x-sig", sig.as_str())];
        assert_eq!(check(&in_query, "POST", &with_digest, &h, body, 0), Ok(()));
        let with_evil = format!("{url}?h={evil_digest}");
        assert_eq!(
            check(&in_query, "POST", &with_evil, &h, evil, 0),
            Err(Failure::Mismatch)
        );
    }

    #[test]
    fn a_body_digest_is_never_read_from_authorization() {
        // parse_source makes Authorization a signature's source only: the
        // definition is refused, and nothing reaches the unreachable!.
        assert_eq!(
            config_error(
                json!({"algorithm": "hmac-sha256", "signed": "{url}{form_sorted}",
                       "signature": "header:x", "body_sha256": "authorization:bearer"}),
                &["k"]
            ),
            "body_sha256 must be header:NAME, field:PATH or param:NAME"
        );
    }

    #[test]
    fn basic_credentials_are_compared_as_decoded() {
        // A password may begin or end with spaces: `user:password` is
        // compared exactly as decoded, as it was before `basic` was a
        // preset, never trimmed.
        let basic = |value: &str| format!("Basic {}", STANDARD.encode(value));
        let auth = |scheme: &Composed, value: &str| {
            check(scheme, "POST", "", &[("authorization", value)], b"", 0)
        };
        let padded = scheme(
            json!({"algorithm": "token", "signature": "authorization:basic", "username": "ann"}),
            &["pw "],
        );
        assert_eq!(auth(&padded, &basic("ann:pw ")), Ok(()));
        assert_eq!(auth(&padded, &basic("ann:pw")), Err(Failure::Mismatch));
        let plain = scheme(
            json!({"algorithm": "token", "signature": "authorization:basic"}),
            &["ann:pw"],
        );
        assert_eq!(auth(&plain, &basic("ann:pw")), Ok(()));
        assert_eq!(auth(&plain, &basic("ann:pw ")), Err(Failure::Mismatch));
        assert_eq!(auth(&plain, &basic(" ann:pw")), Err(Failure::Mismatch));
        assert_eq!(auth(&plain, &basic("ann:pw\n")), Err(Failure::Mismatch));
        // Spaces around the header's value and its parts still do not count.
        assert_eq!(auth(&plain, &format!("  {}  ", basic("ann:pw"))), Ok(()));
    }

    #[test]
    fn a_username_too_long_is_refused_as_too_long() {
        assert_eq!(
            config_error(
                json!({"algorithm": "token", "signature": "authorization:basic",
                       "username": "u".repeat(MAX_NAME_BYTES + 1)}),
                &["pw"]
            ),
            "username is longer than 256 bytes"
        );
        scheme(
            json!({"algorithm": "token", "signature": "authorization:basic",
                   "username": "u".repeat(MAX_NAME_BYTES)}),
            &["pw"],
        );
    }

    #[test]
    fn a_token_under_either_name_is_redacted_under_both() {
        let s = scheme(
            json!({"algorithm": "token", "signature": "header:X-Token|X-Api-Token"}),
            &["t"],
        );
        assert_eq!(s.token_headers(), ["x-token", "x-api-token"]);
        assert_eq!(
            check(&s, "POST", "", &[("x-api-token", "t")], b"", 0),
            Ok(())
        );
        let mut h = headers(&[("x-token", "t"), ("x-api-token", "t"), ("x-other", "o")]);
        super::super::redact_headers(&mut h, s.token_headers());
        assert_eq!(
            Value::Object(h),
            json!({"x-token": super::super::REDACTED, "x-api-token": super::super::REDACTED,
                   "x-other": "o"})
        );
    }
}
