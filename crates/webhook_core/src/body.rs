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
//!   the content coding and the media type as reasons for 415), 400 otherwise.
//! - Nothing here panics on hostile input, and nothing recurses on input depth
//!   (JSON relies on serde_json's recursion limit, XML uses an explicit stack with a
//!   depth cap so the resulting `Value` is also cheap to drop).

mod expanded;
mod multipart;
pub mod worst_case;
mod xml;

use std::borrow::Cow;
use std::io::Read;

use encoding_rs::{Encoding, UTF_8};
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
    /// (decoded size, part count), 415 for an unsupported Content-Encoding or charset,
    /// 400 for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } | BodyError::TooManyParts { .. } => 413,
            BodyError::UnsupportedEncoding(_) | BodyError::UnsupportedCharset(_) => 415,
            BodyError::InvalidCompression(_)
            | BodyError::InvalidJson(_)
            | BodyError::InvalidMultipart(_)
            | BodyError::InvalidXml(_) => 400,
        }
    }
}

/// Stacked codings beyond this are refused: each layer may cost up to the cap.
const MAX_CODINGS: usize = 4;

/// Client-supplied strings echoed in error messages are clipped to this many chars.
const MAX_ECHO_CHARS: usize = 64;

/// Parse a fully buffered request body.
///
/// `content_type` and `content_encoding` are the raw header values (if present).
/// Dispatch is on the media type, case-insensitively; only `charset` and `boundary`
/// parameters matter. An empty body is [`BodyKind::Empty`] whatever the headers say.
///
/// Time is linear in the size of the body, and both the decoded body and the text
/// of the parameters it produces (see [`expanded`]) are capped at
/// [`BodyLimits::max_decoded_bytes`].
pub fn parse_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
) -> Result<ParsedBody, BodyError> {
    let parsed = parse_unchecked(content_type, content_encoding, raw, limits)?;
    expanded::check_expanded_size(&parsed.params, limits.max_decoded_bytes)?;
    Ok(parsed)
}

fn parse_unchecked(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    raw: &[u8],
    limits: &BodyLimits,
) -> Result<ParsedBody, BodyError> {
    if raw.is_empty() {
        return Ok(ParsedBody::empty());
    }
    let decoded = decode_content_encoding(content_encoding, raw, limits.max_decoded_bytes)?;
    if decoded.is_empty() {
        return Ok(ParsedBody::empty());
    }
    let media = match content_type.map(str::trim) {
        Some(ct) if !ct.is_empty() => MediaType::parse(ct),
        // No usable Content-Type: guess between JSON and plain text.
        _ => return Ok(sniff(&decoded)),
    };
    match classify(&media.essence) {
        BodyKind::Json => parse_json(&decoded, media.charset()?),
        BodyKind::Form => Ok(expand_json_fields(parse_form(&decoded, media.charset()?))),
        BodyKind::Text => {
            let (text, _, _) = media.charset()?.unwrap_or(UTF_8).decode(&decoded);
            Ok(json_if_it_parses(text.into_owned(), BodyKind::Text))
        }
        BodyKind::Xml => {
            let (params, text) = xml::parse_xml(&decoded, media.charset()?)?;
            Ok(ParsedBody {
                params,
                text,
                kind: BodyKind::Xml,
            })
        }
        BodyKind::Multipart => {
            let text = String::from_utf8_lossy(&decoded).into_owned();
            let params = multipart::parse_multipart(
                decoded.into_owned(),
                media.param("boundary"),
                limits.max_parts,
            )?;
            Ok(expand_json_fields(ParsedBody {
                params,
                text,
                kind: BodyKind::Multipart,
            }))
        }
        BodyKind::Empty | BodyKind::Other => {
            // A known charset is honoured so events.body reads right; an unknown one is
            // not an error here because the body is not interpreted anyway.
            let enc = media.charset().ok().flatten().unwrap_or(UTF_8);
            let (text, _, _) = enc.decode(&decoded);
            let text = text.into_owned();
            if SNIFFED_AS_JSON.contains(&media.essence.as_str()) {
                Ok(json_if_it_parses(text, BodyKind::Other))
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

/// Parse a query string (without the leading '?') into parameters: '+' is a space,
/// percent-escapes are decoded as UTF-8 (lossy), a repeated name becomes an array of
/// its values at the position of its first occurrence.
pub fn parse_query(query: &str) -> Map<String, Value> {
    form_pairs(query.as_bytes(), UTF_8)
}

/// Insert `value` under `key`; a repeated key turns into an array of all its values
/// (in order), keeping the position of the first occurrence. Callers only store
/// strings or objects, so an existing array always means "already repeated".
pub(crate) fn insert_multi(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, value);
        }
        Some(Value::Array(values)) => values.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
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

/// Undo the Content-Encoding (a comma-separated list, applied in order, so undone in
/// reverse), never producing more than `cap` bytes per layer.
fn decode_content_encoding<'a>(
    header: Option<&str>,
    raw: &'a [u8],
    cap: usize,
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
            Coding::Gzip => gunzip(&data, cap)?,
            Coding::Deflate => inflate(&data, cap)?,
        });
    }
    if data.len() > cap {
        return Err(BodyError::TooLarge { limit: cap });
    }
    Ok(data)
}

/// Initial output buffer size: a guess from the input size, never above the cap.
fn initial_capacity(input_len: usize, cap: usize) -> usize {
    input_len.saturating_mul(4).clamp(256, 64 * 1024).min(cap)
}

/// Grow `out` so it has room for `extra` more bytes, never reserving beyond `limit`
/// total capacity (doubling otherwise, to stay linear).
fn grow_within(out: &mut Vec<u8>, extra: usize, limit: usize) {
    if out.capacity() - out.len() >= extra {
        return;
    }
    let want = out
        .capacity()
        .saturating_mul(2)
        .max(out.len() + extra)
        .min(limit);
    out.reserve_exact(want.saturating_sub(out.len()));
}

/// gzip, possibly multi-member (RFC 1952 allows it). flate2's gzip reader checks the
/// CRC and length trailer, so truncation is an error.
fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, BodyError> {
    let mut reader = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::with_capacity(initial_capacity(data.len(), cap));
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(BodyError::InvalidCompression("gzip")),
        };
        if n > cap - out.len() {
            return Err(BodyError::TooLarge { limit: cap });
        }
        grow_within(&mut out, n, cap);
        out.extend_from_slice(&buf[..n]);
    }
}

/// HTTP "deflate" is meant to be zlib-wrapped, but many clients send raw deflate:
/// try zlib when the header checks out, else (or on failure) raw deflate.
fn inflate(data: &[u8], cap: usize) -> Result<Vec<u8>, BodyError> {
    if looks_like_zlib(data) {
        match inflate_stream(data, true, cap) {
            Err(BodyError::InvalidCompression(_)) => {}
            other => return other,
        }
    }
    inflate_stream(data, false, cap)
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

/// Drive `flate2::Decompress` directly: unlike the `read` adapters it tells a
/// truncated stream (no StreamEnd) from a complete one. Trailing bytes after the end
/// of the stream are refused as corruption.
fn inflate_stream(data: &[u8], zlib: bool, cap: usize) -> Result<Vec<u8>, BodyError> {
    const INVALID: BodyError = BodyError::InvalidCompression("deflate");
    // One byte past the cap is enough to detect an overflow.
    let limit = cap.saturating_add(1);
    let mut d = flate2::Decompress::new(zlib);
    let mut out = Vec::with_capacity(initial_capacity(data.len(), limit));
    loop {
        if out.len() == out.capacity() {
            grow_within(&mut out, 1, limit);
            if out.len() == out.capacity() {
                return Err(BodyError::TooLarge { limit: cap });
            }
        }
        let consumed = usize::try_from(d.total_in()).map_err(|_| INVALID)?;
        let input = data.get(consumed..).ok_or(INVALID)?;
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(input, &mut out, flate2::FlushDecompress::None)
            .map_err(|_| INVALID)?;
        if out.len() > cap {
            return Err(BodyError::TooLarge { limit: cap });
        }
        match status {
            flate2::Status::StreamEnd => {
                return if d.total_in() as usize == data.len() {
                    Ok(out)
                } else {
                    Err(INVALID)
                };
            }
            flate2::Status::Ok | flate2::Status::BufError => {
                let progressed = d.total_in() != in_before || d.total_out() != out_before;
                let room_left = out.len() < out.capacity();
                if !progressed && room_left {
                    // Input exhausted (truncated) or stuck: either way not a stream.
                    return Err(INVALID);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kinds

/// No Content-Type: JSON if the whole body parses as JSON (UTF-8, or UTF-16 with a
/// BOM), else text.
fn sniff(bytes: &[u8]) -> ParsedBody {
    let (text, _, had_errors) = UTF_8.decode(bytes);
    if !had_errors {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            return json_body(value, text.into_owned());
        }
    }
    ParsedBody {
        params: Map::new(),
        text: text.into_owned(),
        kind: BodyKind::Text,
    }
}

/// JSON must decode cleanly: a replacement character silently standing in for bad
/// bytes would corrupt parameter values. A BOM (UTF-8 or UTF-16) overrides the label.
fn parse_json(bytes: &[u8], charset: Option<&'static Encoding>) -> Result<ParsedBody, BodyError> {
    let (text, used, had_errors) = charset.unwrap_or(UTF_8).decode(bytes);
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
    let value: Value =
        serde_json::from_str(&text).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    Ok(json_body(value, text.into_owned()))
}

/// Media types senders use for JSON besides the JSON ones (AWS SNS posts
/// JSON as text/plain; others use these), parsed as JSON when they parse.
const SNIFFED_AS_JSON: &[&str] = &["text/json", "application/octet-stream"];

/// A JSON object or array in a body that was not labelled JSON is parsed as
/// JSON (the raw text is kept as the body); anything else stays `kind`.
fn json_if_it_parses(text: String, kind: BodyKind) -> ParsedBody {
    let looks_like_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    if looks_like_json {
        if let Ok(value @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str(&text) {
            return json_body(value, text);
        }
    }
    ParsedBody {
        params: Map::new(),
        text,
        kind,
    }
}

/// Form and multipart fields holding a JSON object or array (Slack's
/// `payload=`) become that structure, so `payload.user.username` can be
/// required; capture and run time both see the result of this.
fn expand_json_fields(mut parsed: ParsedBody) -> ParsedBody {
    for value in parsed.params.values_mut() {
        let parsed_field = match value {
            Value::String(s) if matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'[')) => {
                match serde_json::from_str::<Value>(s) {
                    Ok(inner @ (Value::Object(_) | Value::Array(_))) => Some(inner),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(inner) = parsed_field {
            *value = inner;
        }
    }
    parsed
}

/// An object's entries are the parameters; a top-level array is the one
/// parameter `items` (SendGrid and other batching senders post arrays of
/// events); any other JSON value is `{"body": value}`.
fn json_body(value: Value, text: String) -> ParsedBody {
    let params = match value {
        Value::Object(map) => map,
        Value::Array(items) => {
            let mut map = Map::new();
            map.insert("items".to_string(), Value::Array(items));
            map
        }
        other => {
            let mut map = Map::new();
            map.insert("body".to_string(), other);
            map
        }
    };
    ParsedBody {
        params,
        text,
        kind: BodyKind::Json,
    }
}

/// The charset of a form applies to the percent-decoded bytes, so for ASCII-compatible
/// charsets the pairs are split and unescaped first, then decoded. UTF-16 and the like
/// encode the delimiters themselves, so those bodies are decoded first.
fn parse_form(bytes: &[u8], charset: Option<&'static Encoding>) -> ParsedBody {
    let enc = charset.unwrap_or(UTF_8);
    let (text, _, _) = enc.decode(bytes);
    let params = if enc.is_ascii_compatible() && enc != UTF_8 {
        form_pairs(bytes, enc)
    } else {
        form_pairs(text.as_bytes(), UTF_8)
    };
    ParsedBody {
        params,
        text: text.into_owned(),
        kind: BodyKind::Form,
    }
}

/// application/x-www-form-urlencoded parsing (WHATWG URL §5.1) with a charset for the
/// unescaped bytes; malformed sequences become U+FFFD, as browsers do.
fn form_pairs(input: &[u8], enc: &'static Encoding) -> Map<String, Value> {
    let mut map = Map::new();
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        insert_multi(
            &mut map,
            form_unescape(name, enc),
            Value::String(form_unescape(value, enc)),
        );
    }
    map
}

fn form_unescape(s: &[u8], enc: &'static Encoding) -> String {
    let plus_decoded: Cow<[u8]> = if s.contains(&b'+') {
        Cow::Owned(
            s.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    };
    let bytes: Cow<[u8]> = percent_encoding::percent_decode(&plus_decoded).into();
    enc.decode_without_bom_handling(&bytes).0.into_owned()
}

#[cfg(test)]
mod tests;
