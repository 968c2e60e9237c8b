//! Request body parsing: Content-Encoding, charset and Content-Type dispatch.
//!
//! This runs on the listener's network threads (never inside PostgreSQL) on a body
//! that the caller has already buffered and size-limited. It turns the body into
//! named parameters plus a text rendering for the `events.body` column.
//!
//! Design choices, in short:
//! - Decompression is bounded by [`BodyLimits::max_decoded_bytes`] while it runs, so a
//!   zip bomb fails with [`BodyError::TooLarge`] without allocating past the cap.
//! - Errors are user-facing: their `Display` is safe to put into a `{"msg": ...}`
//!   response, and [`BodyError::http_status`] picks the status: 413 for size limits,
//!   415 for an unsupported Content-Encoding or charset (RFC 9110 §15.5.16 names both
//!   the content coding and the media type as reasons for 415), 503 when the memory
//!   budget is spent, 400 otherwise.
//! - Nothing here panics on hostile input, and nothing recurses on input depth
//!   (JSON relies on serde_json's recursion limit, XML uses an explicit stack with a
//!   depth cap so the resulting `Value` is also cheap to drop).
//!
//! # Memory
//!
//! The text of a body is a poor measure of what parsing it takes: every parsed
//! value costs a fixed amount of heap (a `serde_json::Value` is 80 bytes, an object
//! entry over 100 more, and collections grow by doubling), so `[0,0,0,…]` takes
//! about 90 times its size, and a 23 KB gzip body decoding to 24 MB of it would take
//! well over a gigabyte. Every allocation a parse makes that grows with the body is
//! therefore asked of a [`MemoryBudget`] before it is made, as an estimate that is
//! an upper bound of what is really allocated (the figures follow the real types
//! and their growth policies, see the `cost` module; `tests/parse_memory.rs` checks
//! them against a counting allocator): the decoded body as it grows, the text copy,
//! and the parsed values. A refused reservation fails the parse with
//! [`BodyError::Busy`].
//!
//! What parsing takes beyond the decoded body is also capped per request, at
//! [`PARSE_COST_FACTOR`] times the decoded length plus [`PARSE_COST_FLOOR`]
//! ([`parse_allowance`]); past it the parse fails with [`BodyError::ParamsTooLarge`]
//! before anything big is allocated. JSON is pre-scanned for its cost (a pass of
//! serde_json's own parser that builds nothing) before it is parsed; forms, XML and
//! multipart bodies are charged value by value as they are built.

pub(crate) mod cost;
mod expanded;
mod json_cost;
mod multipart;
pub mod worst_case;
mod xml;

use std::borrow::Cow;

use encoding_rs::{Encoding, ISO_2022_JP, REPLACEMENT, UTF_16BE, UTF_16LE, UTF_8};
use serde_json::{Map, Value};

/// Limits applied after the transport-level size limit, to what decoding produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body accepted after Content-Encoding decoding (identity included).
    pub max_decoded_bytes: usize,
    /// Largest number of parts accepted in a multipart body.
    pub max_parts: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_decoded_bytes: 10 * 1024 * 1024,
            max_parts: 1000,
        }
    }
}

/// The outcome of [`parse_body`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBody {
    /// Body parameters by name, in document order (serde_json::Map with preserve_order).
    pub params: Map<String, Value>,
    /// The body decoded to text (after Content-Encoding and charset decoding); lossy
    /// UTF-8 for binary and multipart bodies. Used for the `events.body` column and the
    /// "full body" option.
    pub text: String,
    /// The kind that was detected, for logging and tests.
    pub kind: BodyKind,
}

impl ParsedBody {
    /// No body at all.
    pub fn empty() -> ParsedBody {
        ParsedBody {
            params: Map::new(),
            text: String::new(),
            kind: BodyKind::Empty,
        }
    }
}

/// What [`parse_body`] recognised the body as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    /// No body (or a body that decodes to nothing).
    Empty,
    /// `application/json`, `*/*+json`, or an untyped body that parses as JSON.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `multipart/form-data`.
    Multipart,
    /// `text/plain`, or an untyped body that is not JSON.
    Text,
    /// `application/xml`, `text/xml`, `*/*+xml`.
    Xml,
    /// Any other media type: kept as text only, no parameters.
    Other,
}

impl BodyKind {
    /// A short lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyKind::Empty => "empty",
            BodyKind::Json => "json",
            BodyKind::Form => "form",
            BodyKind::Multipart => "multipart",
            BodyKind::Text => "text",
            BodyKind::Xml => "xml",
            BodyKind::Other => "other",
        }
    }
}

impl std::fmt::Display for BodyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body was refused. `Display` is a short message meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A Content-Encoding other than identity, gzip, x-gzip or deflate (or too many
    /// stacked codings).
    #[error("Unsupported Content-Encoding: {0}")]
    UnsupportedEncoding(String),
    /// The compressed stream is corrupt or truncated; the field names the coding.
    #[error("Invalid {0} body")]
    InvalidCompression(&'static str),
    /// The decoded body is larger than [`BodyLimits::max_decoded_bytes`].
    #[error("Request body too large: more than {limit} bytes after decoding")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// Parsing the body would take more memory than its allowance
    /// ([`parse_allowance`] of the decoded length).
    #[error("Request body too large: its parameters would take more than {limit} bytes of memory")]
    ParamsTooLarge {
        /// The allowance that was exceeded, in bytes.
        limit: usize,
    },
    /// The [`MemoryBudget`] refused memory the parse needed.
    #[error("Listener busy, retry later")]
    Busy,
    /// A `charset=` that encoding_rs does not know.
    #[error("Unsupported charset: {0}")]
    UnsupportedCharset(String),
    /// Syntax error, trailing data, excessive nesting or undecodable bytes in JSON.
    #[error("Invalid JSON body: {0}")]
    InvalidJson(String),
    /// Missing or invalid boundary, or a malformed multipart stream.
    #[error("Invalid multipart body: {0}")]
    InvalidMultipart(String),
    /// More parts than [`BodyLimits::max_parts`].
    #[error("Too many multipart parts: more than {limit}")]
    TooManyParts {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// Malformed XML, an unknown entity, excessive nesting or undecodable bytes.
    #[error("Invalid XML body: {0}")]
    InvalidXml(String),
}

impl BodyError {
    /// The HTTP status the listener should answer with: 413 for size limits
    /// (decoded size, parsed size, part count), 415 for an unsupported
    /// Content-Encoding or charset, 503 when the memory budget is spent, 400 for
    /// everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. }
            | BodyError::ParamsTooLarge { .. }
            | BodyError::TooManyParts { .. } => 413,
            BodyError::UnsupportedEncoding(_) | BodyError::UnsupportedCharset(_) => 415,
            BodyError::Busy => 503,
            BodyError::InvalidCompression(_)
            | BodyError::InvalidJson(_)
            | BodyError::InvalidMultipart(_)
            | BodyError::InvalidXml(_) => 400,
        }
    }

    /// Whether the error concerns the transfer rather than the body's syntax: the
    /// same for every workflow, so the request is refused whatever the workflow
    /// would do with an unparseable body (encoding, size, charset, part count,
    /// memory).
    pub fn is_transport_level(&self) -> bool {
        match self {
            BodyError::UnsupportedEncoding(_)
            | BodyError::InvalidCompression(_)
            | BodyError::TooLarge { .. }
            | BodyError::ParamsTooLarge { .. }
            | BodyError::Busy
            | BodyError::UnsupportedCharset(_)
            | BodyError::TooManyParts { .. } => true,
            BodyError::InvalidJson(_)
            | BodyError::InvalidMultipart(_)
            | BodyError::InvalidXml(_) => false,
        }
    }
}

/// Stacked codings beyond this are refused: each layer may cost up to the cap.
const MAX_CODINGS: usize = 4;

/// Client-supplied strings echoed in error messages are clipped to this many chars.
const MAX_ECHO_CHARS: usize = 64;

// ---------------------------------------------------------------------------
// Memory budget

/// Memory a parse asks for before it uses it (the listener backs this with its
/// per-process budget).
pub trait MemoryBudget {
    /// Asks to hold `bytes` more; `false` refuses (the parse then fails with
    /// [`BodyError::Busy`]).
    fn reserve(&mut self, bytes: usize) -> bool;
}

/// No budget: every reservation succeeds (SQL callers, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unbudgeted;

impl MemoryBudget for Unbudgeted {
    fn reserve(&mut self, _bytes: usize) -> bool {
        true
    }
}

/// Parsing may take this many times the decoded body's length (plus
/// [`PARSE_COST_FLOOR`]). Measured on the published provider deliveries of the
/// end-to-end corpus, each repeated into a 2 MB batch so that the per-request
/// constants do not count: GitHub pushes ask for 6 times their length, GitLab
/// pushes and SendGrid events 9, Shopify orders and Slack events 11.5, Stripe
/// objects up to 12.6. 32 leaves them two and a half times that, while the
/// bodies that exist to exhaust memory cost more: `[0,0,…]` 91 times its
/// length, `[{"a":1},…]` 75, `["ab",…]` 37, `a&a&…` 115, `<a/><a/>…` 58,
/// empty XML attributes 38 (see `tests/parse_memory.rs`).
pub const PARSE_COST_FACTOR: usize = 32;

/// Parsing any body may take this much whatever its length, so that small
/// bodies are never refused for the fixed costs of a parse or a few tiny
/// values (a one-entry object takes over 400 bytes): every corpus delivery as
/// sent (129 bytes to 7.7 KB) asks for at most 88 KB.
pub const PARSE_COST_FLOOR: usize = 1024 * 1024;

/// The most memory parsing a body of `decoded_len` bytes may take, beyond the
/// decoded body itself: `PARSE_COST_FACTOR × decoded_len + PARSE_COST_FLOOR`.
pub fn parse_allowance(decoded_len: usize) -> usize {
    decoded_len
        .saturating_mul(PARSE_COST_FACTOR)
        .saturating_add(PARSE_COST_FLOOR)
}

/// Charges a parse's allocations to the caller's [`MemoryBudget`] before they are
/// made, and what parsing proper (everything after Content-Encoding decoding) takes
/// to the request's allowance too.
pub(crate) struct Meter<'b> {
    budget: &'b mut dyn MemoryBudget,
    /// No limit until the decoded length is known.
    allowance: usize,
    /// Charged against the allowance so far.
    parsing: usize,
    /// The largest scratch charge so far (see [`Meter::scratch`]).
    scratch: usize,
}

impl<'b> Meter<'b> {
    pub(crate) fn new(budget: &'b mut dyn MemoryBudget) -> Meter<'b> {
        Meter {
            budget,
            allowance: usize::MAX,
            parsing: 0,
            scratch: 0,
        }
    }

    /// From now on, charges count against the allowance for a body of `len`
    /// decoded bytes.
    pub(crate) fn allow_for(&mut self, len: usize) {
        self.allowance = parse_allowance(len);
    }

    /// Memory for decoding the Content-Encoding: the budget only (the decoded size
    /// has its own cap).
    fn decoding(&mut self, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 || self.budget.reserve(bytes) {
            Ok(())
        } else {
            Err(BodyError::Busy)
        }
    }

    /// Memory the parse allocates next and may hold until it ends.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        self.parsing = self.parsing.saturating_add(bytes);
        if self.parsing > self.allowance {
            return Err(BodyError::ParamsTooLarge {
                limit: self.allowance,
            });
        }
        self.decoding(bytes)
    }

    /// Memory that is freed again before the next scratch use begins (a buffer
    /// for one value, one part, one text node): only what exceeds the largest
    /// scratch so far is charged. Callers never hold two scratch uses at once.
    pub(crate) fn scratch(&mut self, bytes: usize) -> Result<(), BodyError> {
        if bytes > self.scratch {
            self.charge(bytes - self.scratch)?;
            self.scratch = bytes;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Entry points

/// Parse a fully buffered request body, without a memory budget (the per-request
/// allowance still applies): [`parse_body_within`] with [`Unbudgeted`].
pub fn parse_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
) -> Result<ParsedBody, BodyError> {
    parse_body_within(content_type, content_encoding, raw, limits, &mut Unbudgeted)
}

/// Parse a fully buffered request body, asking `budget` for the memory first.
///
/// `content_type` and `content_encoding` are the raw header values (if present).
/// Dispatch is on the media type, case-insensitively; only `charset` and `boundary`
/// parameters matter. An empty body is [`BodyKind::Empty`] whatever the headers say.
///
/// Time is linear in the size of the body; both the decoded body and the text of the
/// parameters it produces (see [`expanded`]) are capped at
/// [`BodyLimits::max_decoded_bytes`], and the memory parsing takes at
/// [`parse_allowance`] of the decoded length.
pub fn parse_body_within(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
    budget: &mut dyn MemoryBudget,
) -> Result<ParsedBody, BodyError> {
    let mut meter = Meter::new(budget);
    let parsed = parse_unchecked(content_type, content_encoding, raw, limits, &mut meter)?;
    if !parsed.params.is_empty() {
        meter.charge(expanded::WALK_BYTES)?;
        expanded::check_expanded_size(&parsed.params, limits.max_decoded_bytes)?;
    }
    Ok(parsed)
}

/// The body decoded to text exactly as `ParsedBody::text` would be, without parsing
/// parameters (for workflows that take the whole body as one text parameter).
///
/// Only transfer-level errors ([`BodyError::is_transport_level`]) are possible:
/// bytes that the parse would refuse as malformed JSON or XML are replaced here.
pub fn decode_text_within(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
    budget: &mut dyn MemoryBudget,
) -> Result<String, BodyError> {
    let meter = &mut Meter::new(budget);
    if raw.is_empty() {
        return Ok(String::new());
    }
    let decoded = decode_content_encoding(content_encoding, raw, limits.max_decoded_bytes, meter)?;
    meter.allow_for(decoded.len());
    if decoded.is_empty() {
        return Ok(String::new());
    }
    let media = match content_type.map(str::trim) {
        Some(ct) if !ct.is_empty() => MediaType::parse(ct),
        _ => return owned(decode_charged(UTF_8, &decoded, meter)?.0, meter),
    };
    let text = match classify(&media.essence) {
        BodyKind::Json | BodyKind::Form | BodyKind::Text => {
            decode_charged(media.charset()?.unwrap_or(UTF_8), &decoded, meter)?.0
        }
        BodyKind::Xml => {
            let enc = xml::text_encoding(&decoded, media.charset()?)?;
            decode_charged(enc, &decoded, meter)?.0
        }
        BodyKind::Multipart => multipart_text(&decoded, meter)?,
        BodyKind::Empty | BodyKind::Other => {
            decode_charged(other_charset(&media), &decoded, meter)?.0
        }
    };
    owned(text, meter)
}

fn parse_unchecked(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
    meter: &mut Meter<'_>,
) -> Result<ParsedBody, BodyError> {
    if raw.is_empty() {
        return Ok(ParsedBody::empty());
    }
    let decoded = decode_content_encoding(content_encoding, raw, limits.max_decoded_bytes, meter)?;
    meter.allow_for(decoded.len());
    if decoded.is_empty() {
        return Ok(ParsedBody::empty());
    }
    let media = match content_type.map(str::trim) {
        Some(ct) if !ct.is_empty() => MediaType::parse(ct),
        // No usable Content-Type: guess between JSON and plain text.
        _ => return sniff(&decoded, meter),
    };
    match classify(&media.essence) {
        BodyKind::Json => parse_json(&decoded, media.charset()?, meter),
        BodyKind::Form => {
            let parsed = parse_form(&decoded, media.charset()?, meter)?;
            expand_json_fields(parsed, meter)
        }
        BodyKind::Text => {
            let (text, _, _) = decode_charged(media.charset()?.unwrap_or(UTF_8), &decoded, meter)?;
            let text = owned(text, meter)?;
            json_if_it_parses(text, BodyKind::Text, meter)
        }
        BodyKind::Xml => {
            let (params, text) = xml::parse_xml(&decoded, media.charset()?, meter)?;
            Ok(ParsedBody {
                params,
                text,
                kind: BodyKind::Xml,
            })
        }
        BodyKind::Multipart => {
            let text = owned(multipart_text(&decoded, meter)?, meter)?;
            let params = multipart::parse_multipart(
                decoded,
                media.param("boundary"),
                limits.max_parts,
                meter,
            )?;
            expand_json_fields(
                ParsedBody {
                    params,
                    text,
                    kind: BodyKind::Multipart,
                },
                meter,
            )
        }
        BodyKind::Empty | BodyKind::Other => {
            let (text, _, _) = decode_charged(other_charset(&media), &decoded, meter)?;
            let text = owned(text, meter)?;
            if SNIFFED_AS_JSON.contains(&media.essence.as_str()) {
                json_if_it_parses(text, BodyKind::Other, meter)
            } else {
                Ok(ParsedBody {
                    params: Map::new(),
                    text,
                    kind: BodyKind::Other,
                })
            }
        }
    }
}

/// A known charset is honoured so events.body reads right; an unknown one is not
/// an error for a body that is not interpreted anyway.
fn other_charset(media: &MediaType) -> &'static Encoding {
    media.charset().ok().flatten().unwrap_or(UTF_8)
}

/// Parse a query string (without the leading '?') into parameters: '+' is a space,
/// percent-escapes are decoded as UTF-8 (lossy), a repeated name becomes an array of
/// its values at the position of its first occurrence.
pub fn parse_query(query: &str) -> Map<String, Value> {
    // Without a budget or an allowance nothing can be refused; the URL's length is
    // capped by the HTTP layer.
    form_pairs(query.as_bytes(), UTF_8, &mut Meter::new(&mut Unbudgeted)).unwrap_or_default()
}

/// Insert `value` under `key`; a repeated key turns into an array of all its values
/// (in order), keeping the position of the first occurrence. Callers only store
/// strings or objects, so an existing array always means "already repeated". The
/// map's or the array's growth is charged first (the key and value already were).
pub(crate) fn insert_multi(
    map: &mut Map<String, Value>,
    key: String,
    value: Value,
    meter: &mut Meter<'_>,
) -> Result<(), BodyError> {
    match map.get_mut(&key) {
        None => {
            meter.charge(cost::map_growth(map.len()))?;
            map.insert(key, value);
        }
        Some(Value::Array(values)) => {
            meter.charge(cost::array_growth(values.len(), values.capacity()))?;
            values.push(value);
        }
        Some(existing) => {
            meter.charge(cost::block(2 * cost::VALUE))?;
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
    Ok(())
}

/// Clip a client-supplied string before echoing it in an error message.
fn clip(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}

// ---------------------------------------------------------------------------
// Content-Type

/// A parsed Content-Type: lowercase `type/subtype` plus its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaType {
    pub(crate) essence: String,
    /// Parameter names lowercased, values unquoted; first occurrence wins on lookup.
    params: Vec<(String, String)>,
}

impl MediaType {
    /// Lenient parse: never fails, since a strange Content-Type should still let the
    /// body through as [`BodyKind::Other`] rather than be refused.
    pub(crate) fn parse(s: &str) -> MediaType {
        let (essence, mut rest) = match s.find(';') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t', ';']);
            if rest.is_empty() {
                break;
            }
            let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
            let name = rest[..name_end].trim().to_ascii_lowercase();
            rest = &rest[name_end..];
            let mut value = String::new();
            if let Some(after_eq) = rest.strip_prefix('=') {
                let after_eq = after_eq.trim_start();
                if let Some(quoted) = after_eq.strip_prefix('"') {
                    // quoted-string with backslash escapes (RFC 9110 §5.6.4)
                    let mut end = quoted.len();
                    let mut escaped = false;
                    for (i, c) in quoted.char_indices() {
                        if escaped {
                            value.push(c);
                            escaped = false;
                        } else if c == '\\' {
                            escaped = true;
                        } else if c == '"' {
                            end = i + 1;
                            break;
                        } else {
                            value.push(c);
                        }
                    }
                    let after = &quoted[end..];
                    rest = after.find(';').map_or("", |i| &after[i..]);
                } else {
                    let end = after_eq.find(';').unwrap_or(after_eq.len());
                    value = after_eq[..end].trim().to_string();
                    rest = &after_eq[end..];
                }
            }
            if !name.is_empty() {
                params.push((name, value));
            }
        }
        MediaType {
            essence: essence.trim().to_ascii_lowercase(),
            params,
        }
    }

    /// The value of a parameter (name lowercase), if present.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The declared charset, if any; an unknown one is an error.
    pub(crate) fn charset(&self) -> Result<Option<&'static Encoding>, BodyError> {
        match self.param("charset").map(str::trim) {
            None | Some("") => Ok(None),
            Some(label) => lookup_charset(label).map(Some),
        }
    }
}

/// Map a charset label to an encoding. The WHATWG "replacement" encoding (labels like
/// iso-2022-kr) would turn the whole body into U+FFFD, so it counts as unsupported.
pub(crate) fn lookup_charset(label: &str) -> Result<&'static Encoding, BodyError> {
    match Encoding::for_label(label.as_bytes()) {
        Some(enc) if enc != encoding_rs::REPLACEMENT => Ok(enc),
        _ => Err(BodyError::UnsupportedCharset(clip(label))),
    }
}

fn classify(essence: &str) -> BodyKind {
    match essence {
        "application/json" => BodyKind::Json,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        "multipart/form-data" => BodyKind::Multipart,
        "text/plain" => BodyKind::Text,
        "application/xml" | "text/xml" => BodyKind::Xml,
        s if s.contains('/') && s.ends_with("+json") => BodyKind::Json,
        s if s.contains('/') && s.ends_with("+xml") => BodyKind::Xml,
        _ => BodyKind::Other,
    }
}

// ---------------------------------------------------------------------------
// Content-Encoding

#[derive(Debug, Clone, Copy)]
enum Coding {
    Gzip,
    Deflate,
}

/// The heap a `flate2::Decompress` holds (miniz_oxide's inflate state with its
/// 32 KiB window: about 43 KiB, measured), rounded up.
const DECOMPRESSOR_BYTES: usize = 48 * 1024;

/// Undo the Content-Encoding (a comma-separated list, applied in order, so undone in
/// reverse), never producing more than `cap` bytes per layer.
fn decode_content_encoding<'a>(
    header: Option<&str>,
    raw: &'a [u8],
    cap: usize,
    meter: &mut Meter<'_>,
) -> Result<Cow<'a, [u8]>, BodyError> {
    let mut codings = Vec::new();
    for token in header.unwrap_or("").split(',') {
        let token = token.trim();
        if token.is_empty() || token.eq_ignore_ascii_case("identity") {
            continue;
        }
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            codings.push(Coding::Gzip);
        } else if token.eq_ignore_ascii_case("deflate") {
            codings.push(Coding::Deflate);
        } else {
            return Err(BodyError::UnsupportedEncoding(clip(token)));
        }
    }
    if codings.len() > MAX_CODINGS {
        return Err(BodyError::UnsupportedEncoding(format!(
            "more than {MAX_CODINGS} stacked codings"
        )));
    }
    let mut data = Cow::Borrowed(raw);
    for coding in codings.iter().rev() {
        data = Cow::Owned(match coding {
            Coding::Gzip => gunzip(&data, cap, meter)?,
            Coding::Deflate => inflate(&data, cap, meter)?,
        });
    }
    if data.len() > cap {
        return Err(BodyError::TooLarge { limit: cap });
    }
    Ok(data)
}

/// An empty output buffer with a first guess at its size from the input's, never
/// above `limit`; its memory is charged first.
fn output_buffer(
    input_len: usize,
    limit: usize,
    meter: &mut Meter<'_>,
) -> Result<Vec<u8>, BodyError> {
    let capacity = input_len.saturating_mul(4).clamp(256, 64 * 1024).min(limit);
    meter.decoding(cost::block(capacity))?;
    Ok(Vec::with_capacity(capacity))
}

/// Grow `out` so it has room for `extra` more bytes, never reserving beyond `limit`
/// total capacity (doubling otherwise, to stay linear). The new block is charged in
/// full and the old one is not credited: both are live while the bytes move.
fn grow_within(
    out: &mut Vec<u8>,
    extra: usize,
    limit: usize,
    meter: &mut Meter<'_>,
) -> Result<(), BodyError> {
    if out.capacity() - out.len() >= extra {
        return Ok(());
    }
    let want = out
        .capacity()
        .saturating_mul(2)
        .max(out.len() + extra)
        .min(limit);
    if want > out.capacity() {
        meter.decoding(cost::block(want))?;
        out.reserve_exact(want - out.len());
    }
    Ok(())
}

/// gzip, possibly multi-member (RFC 1952 allows it). Each member's header is
/// checked and skipped (its optional name, comment and extra field are never
/// copied), its deflate stream inflated onto the output, and its CRC-32 and length
/// trailer checked, so truncation and corruption are errors. Bytes after the last
/// member must form another member.
fn gunzip(data: &[u8], cap: usize, meter: &mut Meter<'_>) -> Result<Vec<u8>, BodyError> {
    const INVALID: BodyError = BodyError::InvalidCompression("gzip");
    // One byte past the cap is enough to detect an overflow.
    let limit = cap.saturating_add(1);
    let mut out = output_buffer(data.len(), limit, meter)?;
    meter.decoding(DECOMPRESSOR_BYTES)?;
    let mut d = flate2::Decompress::new(false);
    let mut rest = data;
    loop {
        let stream = gzip_header(rest).ok_or(INVALID)?;
        d.reset(false);
        let start = out.len();
        let used = inflate_into(&mut d, stream, &mut out, cap, meter, "gzip")?;
        let trailer = stream.get(used..used + 8).ok_or(INVALID)?;
        let mut crc = flate2::Crc::new();
        crc.update(&out[start..]);
        let expected_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let expected_len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        // ISIZE is the length modulo 2^32.
        if crc.sum() != expected_crc || (out.len() - start) as u32 != expected_len {
            return Err(INVALID);
        }
        rest = &stream[used + 8..];
        if rest.is_empty() {
            return Ok(out);
        }
    }
}

/// The deflate stream after a gzip member header (RFC 1952 §2.3), or `None` if the
/// header is not one: wrong magic or method, reserved flags, truncated fields or a
/// header CRC that does not match.
fn gzip_header(data: &[u8]) -> Option<&[u8]> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    const FRESERVED: u8 = 0xe0;
    let fixed = data.get(..10)?;
    if fixed[..3] != [0x1f, 0x8b, 8] || fixed[3] & FRESERVED != 0 {
        return None;
    }
    let flags = fixed[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = data.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = data.get(at..)?.iter().position(|&b| b == 0)?;
            at += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        let mut crc = flate2::Crc::new();
        crc.update(data.get(..at)?);
        let stored = data.get(at..at + 2)?;
        if u16::from_le_bytes([stored[0], stored[1]]) != crc.sum() as u16 {
            return None;
        }
        at += 2;
    }
    data.get(at..)
}

/// HTTP "deflate" is meant to be zlib-wrapped, but many clients send raw deflate:
/// try zlib when the header checks out, else (or on failure) raw deflate.
fn inflate(data: &[u8], cap: usize, meter: &mut Meter<'_>) -> Result<Vec<u8>, BodyError> {
    if looks_like_zlib(data) {
        match inflate_stream(data, true, cap, meter) {
            Err(BodyError::InvalidCompression(_)) => {}
            other => return other,
        }
    }
    inflate_stream(data, false, cap, meter)
}

/// RFC 1950 header: method 8 (deflate), window <= 32K, and the FCHECK multiple of 31.
fn looks_like_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

/// One whole deflate (or zlib) stream. Trailing bytes after the end of the stream
/// are refused as corruption.
fn inflate_stream(
    data: &[u8],
    zlib: bool,
    cap: usize,
    meter: &mut Meter<'_>,
) -> Result<Vec<u8>, BodyError> {
    let mut out = output_buffer(data.len(), cap.saturating_add(1), meter)?;
    meter.decoding(DECOMPRESSOR_BYTES)?;
    let mut d = flate2::Decompress::new(zlib);
    let used = inflate_into(&mut d, data, &mut out, cap, meter, "deflate")?;
    if used == data.len() {
        Ok(out)
    } else {
        Err(BodyError::InvalidCompression("deflate"))
    }
}

/// Drive `flate2::Decompress` directly over one stream at the start of `data`,
/// appending to `out` (never past `cap` bytes in all): unlike the `read` adapters
/// it tells a truncated stream (no StreamEnd) from a complete one. Returns how many
/// bytes of `data` the stream took.
fn inflate_into(
    d: &mut flate2::Decompress,
    data: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
    meter: &mut Meter<'_>,
    coding: &'static str,
) -> Result<usize, BodyError> {
    let invalid = || BodyError::InvalidCompression(coding);
    // One byte past the cap is enough to detect an overflow.
    let limit = cap.saturating_add(1);
    loop {
        if out.len() == out.capacity() {
            grow_within(out, 1, limit, meter)?;
            if out.len() == out.capacity() {
                return Err(BodyError::TooLarge { limit: cap });
            }
        }
        let consumed = usize::try_from(d.total_in()).map_err(|_| invalid())?;
        let input = data.get(consumed..).ok_or_else(invalid)?;
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(input, out, flate2::FlushDecompress::None)
            .map_err(|_| invalid())?;
        if out.len() > cap {
            return Err(BodyError::TooLarge { limit: cap });
        }
        match status {
            flate2::Status::StreamEnd => {
                return usize::try_from(d.total_in()).map_err(|_| invalid());
            }
            flate2::Status::Ok | flate2::Status::BufError => {
                let progressed = d.total_in() != in_before || d.total_out() != out_before;
                let room_left = out.len() < out.capacity();
                if !progressed && room_left {
                    // Input exhausted (truncated) or stuck: either way not a stream.
                    return Err(invalid());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Charset decoding

/// `enc.decode(bytes)`: a BOM overrides `enc`, malformed sequences become U+FFFD.
/// What it allocates is charged first. Returns the text, the encoding used and
/// whether anything was malformed.
fn decode_charged<'a>(
    enc: &'static Encoding,
    bytes: &'a [u8],
    meter: &mut Meter<'_>,
) -> Result<(Cow<'a, str>, &'static Encoding, bool), BodyError> {
    let (enc, body) = match Encoding::for_bom(bytes) {
        Some((bom_enc, len)) => (bom_enc, &bytes[len..]),
        None => (enc, bytes),
    };
    let (text, had_errors) = decode_without_bom_charged(enc, body, meter)?;
    Ok((text, enc, had_errors))
}

/// `enc.decode_without_bom_handling(bytes)`, its memory charged first.
pub(crate) fn decode_without_bom_charged<'a>(
    enc: &'static Encoding,
    bytes: &'a [u8],
    meter: &mut Meter<'_>,
) -> Result<(Cow<'a, str>, bool), BodyError> {
    meter.charge(decode_cost(enc, bytes))?;
    Ok(enc.decode_without_bom_handling(bytes))
}

/// What `enc.decode_without_bom_handling(bytes)` allocates, following encoding_rs:
/// nothing when it can borrow the input (valid UTF-8; ASCII for the other
/// ASCII-compatible encodings), else one buffer sized for the text without
/// replacements rounded up to a power of two (or for the worst case, if that is
/// smaller), and at most once more when replacements overflow it (both live while
/// the text moves).
fn decode_cost(enc: &'static Encoding, bytes: &[u8]) -> usize {
    let borrowable = !(enc == REPLACEMENT || enc == UTF_16BE || enc == UTF_16LE);
    let valid = if !borrowable {
        0
    } else if enc == UTF_8 {
        Encoding::utf8_valid_up_to(bytes)
    } else if enc == ISO_2022_JP {
        Encoding::iso_2022_jp_ascii_valid_up_to(bytes)
    } else {
        Encoding::ascii_valid_up_to(bytes)
    };
    if borrowable && valid == bytes.len() {
        return 0;
    }
    let rest = bytes.len() - valid;
    let decoder = enc.new_decoder_without_bom_handling();
    let worst = decoder
        .max_utf8_buffer_length(rest)
        .map_or(usize::MAX, |n| n.saturating_add(valid));
    let tight = decoder
        .max_utf8_buffer_length_without_replacement(rest)
        .and_then(|n| n.checked_add(valid))
        .and_then(usize::checked_next_power_of_two)
        .unwrap_or(usize::MAX);
    let first = tight.min(worst);
    let regrowth = if first < worst {
        first.saturating_add(worst)
    } else {
        0
    };
    cost::block(first).saturating_add(cost::block(regrowth))
}

/// An owned copy of decoded text; a borrowed text's copy is charged first.
pub(crate) fn owned(text: Cow<'_, str>, meter: &mut Meter<'_>) -> Result<String, BodyError> {
    if let Cow::Borrowed(s) = text {
        meter.charge(cost::block(s.len()))?;
    }
    Ok(text.into_owned())
}

/// A multipart body as text: UTF-8, lossy (its parts carry their own charsets).
fn multipart_text<'a>(bytes: &'a [u8], meter: &mut Meter<'_>) -> Result<Cow<'a, str>, BodyError> {
    Ok(decode_without_bom_charged(UTF_8, bytes, meter)?.0)
}

// ---------------------------------------------------------------------------
// Kinds

/// No Content-Type: JSON if the whole body parses as JSON (UTF-8, or UTF-16 with a
/// BOM), else text.
fn sniff(bytes: &[u8], meter: &mut Meter<'_>) -> Result<ParsedBody, BodyError> {
    let (text, _, had_errors) = decode_charged(UTF_8, bytes, meter)?;
    if !had_errors {
        if let Ok(value) = json_value(&text, meter)? {
            let text = owned(text, meter)?;
            return json_body(value, text, meter);
        }
    }
    Ok(ParsedBody {
        params: Map::new(),
        text: owned(text, meter)?,
        kind: BodyKind::Text,
    })
}

/// JSON must decode cleanly: a replacement character silently standing in for bad
/// bytes would corrupt parameter values. A BOM (UTF-8 or UTF-16) overrides the label.
fn parse_json(
    bytes: &[u8],
    charset: Option<&'static Encoding>,
    meter: &mut Meter<'_>,
) -> Result<ParsedBody, BodyError> {
    let (text, used, had_errors) = decode_charged(charset.unwrap_or(UTF_8), bytes, meter)?;
    if had_errors {
        let detail = if used == UTF_8 {
            let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match std::str::from_utf8(body) {
                Err(e) => format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                Ok(_) => "invalid UTF-8".to_string(),
            }
        } else {
            format!("invalid {} byte sequence", used.name())
        };
        return Err(BodyError::InvalidJson(detail));
    }
    let value = json_value(&text, meter)?.map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let text = owned(text, meter)?;
    json_body(value, text, meter)
}

/// Parse JSON text into a `Value`, charging what the `Value` will take first (found
/// by a pre-scan that builds nothing). The outer error is the budget's or the
/// allowance's; the inner one is the JSON's own (the pre-scan's, which is the
/// parse's), and then nothing is charged for values.
fn json_value(
    text: &str,
    meter: &mut Meter<'_>,
) -> Result<Result<Value, serde_json::Error>, BodyError> {
    let scratch = json_cost::scratch(text);
    meter.scratch(scratch)?;
    let cost = match json_cost::json_cost(text) {
        Ok(cost) => cost,
        Err(e) => return Ok(Err(e)),
    };
    meter.charge(cost.held)?;
    // The parser's buffers and a collection's old block while it grows are live at
    // the same time.
    meter.scratch(scratch.saturating_add(cost.growing))?;
    Ok(serde_json::from_str(text))
}

/// Media types senders use for JSON besides the JSON ones (AWS SNS posts
/// JSON as text/plain; others use these), parsed as JSON when they parse.
const SNIFFED_AS_JSON: &[&str] = &["text/json", "application/octet-stream"];

fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

/// A JSON object or array in a body that was not labelled JSON is parsed as
/// JSON (the raw text is kept as the body); anything else stays `kind`.
fn json_if_it_parses(
    text: String,
    kind: BodyKind,
    meter: &mut Meter<'_>,
) -> Result<ParsedBody, BodyError> {
    // Starting with '{' or '[', valid JSON is an object or an array.
    if looks_like_json(&text) {
        if let Ok(value) = json_value(&text, meter)? {
            return json_body(value, text, meter);
        }
    }
    Ok(ParsedBody {
        params: Map::new(),
        text,
        kind,
    })
}

/// Form and multipart fields holding a JSON object or array (Slack's
/// `payload=`) become that structure, so `payload.user.username` can be
/// required; capture and run time both see the result of this.
fn expand_json_fields(
    mut parsed: ParsedBody,
    meter: &mut Meter<'_>,
) -> Result<ParsedBody, BodyError> {
    for value in parsed.params.values_mut() {
        let Value::String(s) = value else {
            continue;
        };
        if !looks_like_json(s) {
            continue;
        }
        if let Ok(inner) = json_value(s, meter)? {
            *value = inner;
        }
    }
    Ok(parsed)
}

/// An object's entries are the parameters; a top-level array is the one
/// parameter `items` (SendGrid and other batching senders post arrays of
/// events); any other JSON value is `{"body": value}`.
fn json_body(value: Value, text: String, meter: &mut Meter<'_>) -> Result<ParsedBody, BodyError> {
    let params = match value {
        Value::Object(map) => map,
        other => {
            let key = if other.is_array() { "items" } else { "body" };
            meter.charge(cost::map_growth(0).saturating_add(cost::block(key.len())))?;
            let mut map = Map::new();
            map.insert(key.to_string(), other);
            map
        }
    };
    Ok(ParsedBody {
        params,
        text,
        kind: BodyKind::Json,
    })
}

/// The charset of a form applies to the percent-decoded bytes, so for ASCII-compatible
/// charsets the pairs are split and unescaped first, then decoded. UTF-16 and the like
/// encode the delimiters themselves, so those bodies are decoded first.
fn parse_form(
    bytes: &[u8],
    charset: Option<&'static Encoding>,
    meter: &mut Meter<'_>,
) -> Result<ParsedBody, BodyError> {
    let enc = charset.unwrap_or(UTF_8);
    let (text, _, _) = decode_charged(enc, bytes, meter)?;
    let params = if enc.is_ascii_compatible() && enc != UTF_8 {
        form_pairs(bytes, enc, meter)?
    } else {
        form_pairs(text.as_bytes(), UTF_8, meter)?
    };
    Ok(ParsedBody {
        params,
        text: owned(text, meter)?,
        kind: BodyKind::Form,
    })
}

/// application/x-www-form-urlencoded parsing (WHATWG URL §5.1) with a charset for the
/// unescaped bytes; malformed sequences become U+FFFD, as browsers do. Each name,
/// value and the map's growth is charged as it is built.
fn form_pairs(
    input: &[u8],
    enc: &'static Encoding,
    meter: &mut Meter<'_>,
) -> Result<Map<String, Value>, BodyError> {
    let mut map = Map::new();
    for (name, value) in form_split(input) {
        let name = form_unescape(name, enc, meter)?;
        let value = Value::String(form_unescape(value, enc, meter)?);
        insert_multi(&mut map, name, value, meter)?;
    }
    Ok(map)
}

/// The raw (still escaped) name and value of each non-empty `&`-separated pair.
pub(crate) fn form_split(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        })
}

/// '+' is a space and `%XX` the byte XX (a '%' without two hex digits stays);
/// the bytes are then decoded with `enc`, malformed sequences as U+FFFD. The
/// unescaped bytes are never longer than the input, so they go into one buffer
/// of its length, freed once decoded.
pub(crate) fn form_unescape(
    s: &[u8],
    enc: &'static Encoding,
    meter: &mut Meter<'_>,
) -> Result<String, BodyError> {
    let bytes: Cow<[u8]> = if s.iter().any(|&b| b == b'+' || b == b'%') {
        meter.scratch(cost::block(s.len()))?;
        Cow::Owned(unescape(s))
    } else {
        Cow::Borrowed(s)
    };
    let (text, _) = decode_without_bom_charged(enc, &bytes, meter)?;
    owned(text, meter)
}

fn unescape(s: &[u8]) -> Vec<u8> {
    fn hex(b: Option<&u8>) -> Option<u8> {
        char::from(*b?).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(high), Some(low)) = (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
