//! Hostile request bodies, one family per content type, for the unit tests and the
//! parser benchmark (`cargo run --release -p webhook_core --example hostile_bodies`).
//!
//! Each case is built to hit a path that used to be (or could plausibly be)
//! super-linear in time or memory: many attributes, many siblings, repeated keys,
//! deep nesting, huge exponents, many parts, entity declarations, compression
//! bombs. Keeping the corpus here, next to the parsers, means the tests and the
//! benchmark exercise exactly the same bytes.
//!
//! Several of them parse into values that take more memory than the parse
//! allowance (`super::parse_allowance`: tiny values, each costing a whole map
//! entry or array slot) and are refused with 413 before they are built; the
//! others stay within it.

use std::io::Write;

/// What parsing a worst case must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Parsed; the result stays within the limits.
    Parsed,
    /// Refused with this HTTP status (413 size, 400 malformed).
    Refused(u16),
}

/// One hostile body with the headers it is sent with.
#[derive(Debug, Clone)]
pub struct WorstCase {
    pub name: &'static str,
    pub content_type: String,
    pub content_encoding: Option<&'static str>,
    pub body: Vec<u8>,
    /// The outcome under a `max_decoded_bytes` of at least `size`.
    pub expected: Expected,
}

/// The boundary used by the multipart cases.
pub const BOUNDARY: &str = "worstcaseboundary";

/// Every case, each about `size` bytes on the wire (the compression bombs are
/// smaller on the wire and expand far beyond `size`).
pub fn corpus(size: usize) -> Vec<WorstCase> {
    let json = "application/json".to_string();
    let form = "application/x-www-form-urlencoded".to_string();
    let xml = "application/xml".to_string();
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");
    vec![
        case(
            "json_huge_exponents",
            &json,
            repeat_list("[", "1e1000", ",", "]", size),
            Expected::Refused(413),
        ),
        case(
            "json_exponent_out_of_numeric_range",
            &json,
            b"[1e999999999]".to_vec(),
            Expected::Refused(400),
        ),
        case(
            "json_many_keys",
            &json,
            numbered_list("{", "\"k", "\":0", ",", "}", size),
            Expected::Parsed,
        ),
        case(
            "json_duplicate_keys",
            &json,
            repeat_list("{", "\"a\":1", ",", "}", size),
            // Counted before parsing, when duplicates are not known yet.
            Expected::Refused(413),
        ),
        case(
            "json_deep_nesting",
            &json,
            vec![b'['; size],
            Expected::Refused(400),
        ),
        case(
            "json_escaped_strings",
            &json,
            repeat_list("[", "\"\\u00e9\\n\"", ",", "]", size),
            Expected::Parsed,
        ),
        case(
            "form_repeated_key",
            &form,
            repeat_list("", "a=1", "&", "", size),
            Expected::Refused(413),
        ),
        case(
            "form_many_keys",
            &form,
            numbered_list("", "k", "=", "&", "", size),
            Expected::Refused(413),
        ),
        case(
            "form_empty_pairs",
            &form,
            vec![b'&'; size],
            Expected::Parsed,
        ),
        case(
            "form_percent_escapes",
            &form,
            fill("a=", "%C3%A9", size),
            Expected::Parsed,
        ),
        case(
            "multipart_too_many_parts",
            &multipart,
            multipart_parts(size),
            Expected::Refused(413),
        ),
        case(
            "multipart_boundary_prefixes",
            &multipart,
            multipart_near_boundaries(size),
            Expected::Parsed,
        ),
        case(
            "text_shift_jis",
            "text/plain; charset=shift_jis",
            fill("", "\u{3042}x", size),
            Expected::Parsed,
        ),
        case(
            "xml_many_attributes",
            &xml,
            numbered_list("<r ", "a", "=\"1\"", " ", "/>", size),
            Expected::Parsed,
        ),
        case(
            "xml_duplicate_attribute_last",
            &xml,
            duplicate_attribute_last(size),
            Expected::Refused(400),
        ),
        case(
            "xml_many_repeated_siblings",
            &xml,
            repeat_list("<r>", "<a>1</a>", "", "</r>", size),
            Expected::Parsed,
        ),
        case(
            "xml_many_distinct_siblings",
            &xml,
            numbered_list("<r>", "<a", "/>", "", "</r>", size),
            Expected::Refused(413),
        ),
        case(
            "xml_deep_nesting",
            &xml,
            fill("", "<a>", size),
            Expected::Refused(400),
        ),
        case(
            "xml_many_entities",
            &xml,
            fill_closed("<r>", "&amp;&#x10FFFF;", "</r>", size),
            Expected::Parsed,
        ),
        case(
            "xml_mixed_text_and_comments",
            &xml,
            fill_closed("<r>", "x<!--c-->", "</r>", size),
            Expected::Parsed,
        ),
        case(
            "xml_entity_declarations",
            &xml,
            entity_bomb(size),
            Expected::Refused(400),
        ),
        WorstCase {
            name: "gzip_bomb",
            content_type: json.clone(),
            content_encoding: Some("gzip"),
            body: gzip_zeros(size.saturating_mul(100)),
            expected: Expected::Refused(413),
        },
        WorstCase {
            name: "deflate_form_many_keys",
            content_type: form.clone(),
            content_encoding: Some("deflate"),
            body: deflate(&numbered_list("", "k", "=", "&", "", size)),
            expected: Expected::Refused(413),
        },
    ]
}

fn case(name: &'static str, content_type: &str, body: Vec<u8>, expected: Expected) -> WorstCase {
    WorstCase {
        name,
        content_type: content_type.to_string(),
        content_encoding: None,
        body,
        expected,
    }
}

/// `open item sep item sep … item close`, at most `size` bytes.
fn repeat_list(open: &str, item: &str, sep: &str, close: &str, size: usize) -> Vec<u8> {
    let mut out = String::with_capacity(size);
    out.push_str(open);
    let mut first = true;
    while out.len() + sep.len() + item.len() + close.len() <= size {
        if !first {
            out.push_str(sep);
        }
        out.push_str(item);
        first = false;
    }
    out.push_str(close);
    out.into_bytes()
}

/// Like [`repeat_list`] with items `{prefix}{n}{suffix}`, n = 0, 1, 2, …
fn numbered_list(
    open: &str,
    prefix: &str,
    suffix: &str,
    sep: &str,
    close: &str,
    size: usize,
) -> Vec<u8> {
    let mut out = String::with_capacity(size);
    out.push_str(open);
    for n in 0usize.. {
        let item = format!("{prefix}{n}{suffix}");
        if out.len() + sep.len() + item.len() + close.len() > size {
            break;
        }
        if n > 0 {
            out.push_str(sep);
        }
        out.push_str(&item);
    }
    out.push_str(close);
    out.into_bytes()
}

fn fill(head: &str, unit: &str, size: usize) -> Vec<u8> {
    fill_closed(head, unit, "", size)
}

fn fill_closed(head: &str, unit: &str, tail: &str, size: usize) -> Vec<u8> {
    repeat_list(head, unit, "", tail, size)
}

/// Many attributes, the last one repeating the first: a duplicate check that
/// compares every pair is quadratic here.
fn duplicate_attribute_last(size: usize) -> Vec<u8> {
    let mut body = numbered_list("<r ", "a", "=\"1\"", " ", "", size.saturating_sub(16));
    body.extend_from_slice(b" a0=\"2\"/>");
    body
}

/// A DOCTYPE declaring a "billion laughs" chain, then a reference to it. The
/// entities are never expanded; the reference is an unknown-entity error.
fn entity_bomb(size: usize) -> Vec<u8> {
    let mut out = String::from("<!DOCTYPE r [<!ENTITY e0 \"lol\">");
    let mut n = 1usize;
    while out.len() + 200 < size {
        let prev = n - 1;
        out.push_str(&format!(
            "<!ENTITY e{n} \"&e{prev};&e{prev};&e{prev};&e{prev};&e{prev};\">"
        ));
        n += 1;
    }
    out.push_str(&format!("]><r>&e{};</r>", n - 1));
    out.into_bytes()
}

/// Tiny named parts until `size`: well past any sensible part limit.
fn multipart_parts(size: usize) -> Vec<u8> {
    let part = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n");
    let mut out = Vec::with_capacity(size);
    while out.len() + part.len() * 2 < size {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// One part whose content is full of almost-boundaries (`\r\n--` plus a prefix
/// of the boundary): a naive boundary search restarts at each of them.
fn multipart_near_boundaries(size: usize) -> Vec<u8> {
    let near = format!("\r\n--{}", &BOUNDARY[..BOUNDARY.len() - 1]);
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f.bin\"\r\n\r\n"
    )
    .into_bytes();
    let end = format!("\r\n--{BOUNDARY}--\r\n");
    while out.len() + near.len() + end.len() <= size {
        out.extend_from_slice(near.as_bytes());
    }
    out.extend_from_slice(end.as_bytes());
    out
}

fn gzip_zeros(total: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = [b'0'; 64 * 1024];
    let mut written = 0;
    while written < total {
        let n = chunk.len().min(total - written);
        encoder.write_all(&chunk[..n]).expect("writing to a Vec");
        written += n;
    }
    encoder.finish().expect("writing to a Vec")
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}
