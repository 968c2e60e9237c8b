//! XML bodies → parameters.
//!
//! The root element's attributes (`@name`) and children become the parameters. A
//! child with only text is a string; one with attributes or children is an object
//! (`@attr` keys, child keys, and `#text` for text mixed in); repeated sibling names
//! become an array. Text is trimmed of XML whitespace.
//!
//! Security: entities are never resolved beyond the five predefined ones and numeric
//! character references, so a DOCTYPE (which is otherwise ignored) cannot pull in
//! external resources (XXE) or expand entity bombs; a reference to any other entity
//! is an error. Nesting is capped so neither parsing nor dropping the result can run
//! away with the stack.
//!
//! Memory: every name, attribute, text node and map or array growth is charged to
//! the [`Meter`] just before it is allocated, so a body of many small elements is
//! stopped as soon as it passes its allowance.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
use quick_xml::escape::EscapeError;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

use super::{cost, insert_multi, lookup_charset, BodyError, Meter};

/// Same depth as serde_json's recursion limit, so XML and JSON bodies agree.
const MAX_DEPTH: usize = 128;

/// How far into the body the `<?xml ... ?>` declaration is looked for.
const MAX_DECL_BYTES: usize = 1024;

/// quick-xml's bookkeeping apart from the names it stores: the start offsets of
/// the open elements, at most [`MAX_DEPTH`] of them, in a doubling vector.
const READER_BYTES: usize = 4 * 1024;

/// quick-xml keeps the names of the open elements in one buffer that grows by
/// doubling: charging this many times each start tag's name covers its blocks.
const OPEN_NAME_FACTOR: usize = 4;

fn invalid(msg: impl Into<String>) -> BodyError {
    BodyError::InvalidXml(msg.into())
}

/// quick-xml's messages carry positions relative to the current tag or text node;
/// restate them with absolute byte offsets (`at` is where the event started).
fn xml_error(err: quick_xml::Error, at: u64) -> BodyError {
    match err {
        quick_xml::Error::Escape(e) => escape_error(e, at),
        quick_xml::Error::InvalidAttr(e) => attr_error(e, at),
        other => invalid(format!("{other} (at byte {at})")),
    }
}

fn escape_error(err: EscapeError, at: u64) -> BodyError {
    match err {
        // The range starts at the name, one past the '&'.
        EscapeError::UnrecognizedEntity(range, name) => invalid(format!(
            "unknown entity &{}; at byte {} (only the predefined XML entities are supported)",
            super::clip(&name),
            (at + range.start as u64).saturating_sub(1)
        )),
        EscapeError::UnterminatedEntity(range) => invalid(format!(
            "'&' without a terminating ';' (at byte {})",
            at + range.start as u64
        )),
        EscapeError::InvalidCharRef(e) => {
            invalid(format!("invalid character reference: {e} (near byte {at})"))
        }
    }
}

/// `tag_at` is the offset of the tag's '<'; attribute positions count from after it.
fn attr_error(err: AttrError, tag_at: u64) -> BodyError {
    let (what, pos) = match err {
        AttrError::ExpectedEq(p) => ("attribute name without '='", p),
        AttrError::ExpectedValue(p) => ("attribute without a value", p),
        AttrError::UnquotedValue(p) => ("unquoted attribute value", p),
        AttrError::ExpectedQuote(p, _) => ("unterminated attribute value", p),
        AttrError::Duplicated(p, _) => ("duplicate attribute", p),
    };
    invalid(format!("{what} (at byte {})", tag_at + 1 + pos as u64))
}

/// Parse an XML body. `charset` is the Content-Type's, which takes precedence over the
/// document's own declaration (RFC 7303 §3.2). Returns the parameters and the decoded
/// text.
pub(super) fn parse_xml(
    bytes: &[u8],
    charset: Option<&'static Encoding>,
    meter: &mut Meter<'_>,
) -> Result<(Map<String, Value>, String), BodyError> {
    let enc = text_encoding(bytes, charset)?;
    // Decoding lets a BOM override the label, as the XML spec requires.
    let (text, used, had_errors) = super::decode_charged(enc, bytes, meter)?;
    if had_errors {
        return Err(invalid(format!("invalid {} byte sequence", used.name())));
    }
    let params = convert(&text, meter)?;
    Ok((params, super::owned(text, meter)?))
}

/// The encoding an XML body is decoded with (before a BOM is looked at): the
/// Content-Type's charset, else what the document's first bytes or its
/// declaration say.
pub(super) fn text_encoding(
    bytes: &[u8],
    charset: Option<&'static Encoding>,
) -> Result<&'static Encoding, BodyError> {
    match charset {
        Some(enc) => Ok(enc),
        None => sniff_encoding(bytes),
    }
}

/// Encoding from the BOM / first bytes (XML 1.0 Appendix F), then the declaration.
fn sniff_encoding(bytes: &[u8]) -> Result<&'static Encoding, BodyError> {
    if let Some((enc, _)) = Encoding::for_bom(bytes) {
        return Ok(enc);
    }
    if bytes.starts_with(b"<\0?\0") {
        return Ok(UTF_16LE);
    }
    if bytes.starts_with(b"\0<\0?") {
        return Ok(UTF_16BE);
    }
    match declared_encoding(bytes) {
        // The declaration was readable as ASCII, so the body cannot really be UTF-16.
        Some(label) => match lookup_charset(&label)? {
            enc if enc == UTF_16LE || enc == UTF_16BE => Ok(UTF_8),
            enc => Ok(enc),
        },
        None => Ok(UTF_8),
    }
}

/// The `encoding="..."` pseudo-attribute of a leading `<?xml ... ?>` declaration.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(MAX_DECL_BYTES)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = &head[5..end];
    let at = decl.windows(8).position(|w| w == b"encoding")?;
    let rest = trim_ascii_start(&decl[at + 8..]);
    let rest = trim_ascii_start(rest.strip_prefix(b"=")?);
    let (&quote, rest) = rest.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let len = rest.iter().position(|&b| b == quote)?;
    Some(String::from_utf8_lossy(&rest[..len]).into_owned())
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A loose check of the XML Name production. quick-xml does not validate names, and
/// names starting with '@' or '#' would collide with our attribute / text keys.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start_ok = |c: char| c.is_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    start_ok(first) && chars.all(|c| start_ok(c) || c.is_ascii_digit() || matches!(c, '-' | '.'))
}

/// An element being built.
struct Frame {
    name: String,
    /// `@attr` entries then child entries, in document order.
    fields: Map<String, Value>,
    text: String,
}

impl Frame {
    fn open(e: &BytesStart<'_>, at: u64, meter: &mut Meter<'_>) -> Result<Frame, BodyError> {
        let raw_name = e.name();
        meter.charge(cost::block(raw_name.as_ref().len()))?;
        let name = String::from_utf8_lossy(raw_name.as_ref()).into_owned();
        if !valid_name(&name) {
            return Err(invalid(format!(
                "invalid element name <{}>",
                super::clip(&name)
            )));
        }
        let mut fields = Map::new();
        // quick-xml's own duplicate check compares each attribute with every
        // earlier one (quadratic: 95,000 attributes took 7 s); the map finds
        // duplicates in constant time per attribute instead.
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| attr_error(err, at))?;
            let raw_key = attr.key.as_ref();
            // The key with its '@', the value (unescaping never lengthens it), the
            // entry.
            meter.charge(
                cost::block(1 + raw_key.len())
                    .saturating_add(cost::block(attr.value.len()))
                    .saturating_add(cost::map_growth(fields.len())),
            )?;
            let mut key = String::with_capacity(1 + raw_key.len());
            key.push('@');
            key.push_str(&String::from_utf8_lossy(raw_key));
            if !valid_name(&key[1..]) {
                return Err(invalid(format!(
                    "invalid attribute name {}",
                    super::clip(&key[1..])
                )));
            }
            let value = attr.unescape_value().map_err(|err| xml_error(err, at))?;
            if fields
                .insert(key, Value::String(value.into_owned()))
                .is_some()
            {
                return Err(invalid(format!(
                    "duplicate attribute {} (in the tag at byte {at})",
                    super::clip(&String::from_utf8_lossy(raw_key))
                )));
            }
        }
        Ok(Frame {
            name,
            fields,
            text: String::new(),
        })
    }

    /// Attributes, children, and `#text` if there is any non-blank text.
    fn into_object(self, meter: &mut Meter<'_>) -> Result<Map<String, Value>, BodyError> {
        let Frame {
            mut fields, text, ..
        } = self;
        let text = text.trim_matches(is_xml_space);
        if !text.is_empty() {
            meter.charge(cost::block("#text".len()).saturating_add(cost::block(text.len())))?;
            insert_multi(
                &mut fields,
                "#text".to_string(),
                Value::String(text.to_string()),
                meter,
            )?;
        }
        Ok(fields)
    }

    fn into_value(mut self, meter: &mut Meter<'_>) -> Result<(String, Value), BodyError> {
        if self.fields.is_empty() {
            let text = self.text.trim_matches(is_xml_space);
            meter.charge(cost::block(text.len()))?;
            let text = text.to_string();
            Ok((self.name, Value::String(text)))
        } else {
            let name = std::mem::take(&mut self.name);
            Ok((name, Value::Object(self.into_object(meter)?)))
        }
    }
}

/// Walk the events with an explicit stack, enforcing the well-formedness rules that
/// quick-xml leaves to the caller (one root, no stray text, everything closed, end
/// tags matching: checked here against the frames, so that a mismatch costs no
/// copies of the names).
fn convert(text: &str, meter: &mut Meter<'_>) -> Result<Map<String, Value>, BodyError> {
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.check_comments = true;
    config.expand_empty_elements = false;
    meter.charge(READER_BYTES)?;

    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    let mut seen_markup = false;

    loop {
        let at = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(err) => return Err(xml_error(err, reader.error_position())),
        };
        match event {
            Event::Eof => break,
            Event::Start(ref e) | Event::Empty(ref e) => {
                seen_markup = true;
                if stack.is_empty() && root.is_some() {
                    return Err(invalid("multiple root elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                if matches!(event, Event::Start(_)) {
                    meter.charge(e.name().as_ref().len().saturating_mul(OPEN_NAME_FACTOR))?;
                }
                if stack.len() == stack.capacity() {
                    let grown = (stack.capacity() * 2).max(4);
                    meter.charge(cost::block(grown * std::mem::size_of::<Frame>()))?;
                }
                stack.push(Frame::open(e, at, meter)?);
                if matches!(event, Event::Empty(_)) {
                    close(&mut stack, &mut root, meter)?;
                }
            }
            Event::End(ref e) => {
                seen_markup = true;
                if let Some(open) = stack.last() {
                    if e.name().as_ref() != open.name.as_bytes() {
                        return Err(invalid(format!(
                            "ill-formed document: expected `</{}>`, but `</{}>` was found (at byte {at})",
                            super::clip(&open.name),
                            super::clip(&String::from_utf8_lossy(e.name().as_ref()))
                        )));
                    }
                }
                close(&mut stack, &mut root, meter)?;
            }
            Event::Text(t) => {
                // The unescaped copy (at most as long as the raw text), or the
                // name of an unknown entity in its place.
                meter.scratch(cost::block(t.len()).saturating_mul(2))?;
                let s = t.unescape().map_err(|err| xml_error(err, at))?;
                push_text(&mut stack, &s, meter)?;
            }
            Event::CData(c) => {
                seen_markup = true;
                let s = c.decode().map_err(|err| xml_error(err.into(), at))?;
                push_text(&mut stack, &s, meter)?;
            }
            Event::Decl(_) => {
                if seen_markup {
                    return Err(invalid("XML declaration not at the start"));
                }
                seen_markup = true;
            }
            Event::DocType(_) => {
                // Ignored (never resolved), but only allowed before the root.
                if root.is_some() || !stack.is_empty() {
                    return Err(invalid("DOCTYPE after the root element"));
                }
                seen_markup = true;
            }
            Event::Comment(_) | Event::PI(_) => seen_markup = true,
        }
    }
    if let Some(open) = stack.last() {
        return Err(invalid(format!(
            "unclosed element <{}>",
            super::clip(&open.name)
        )));
    }
    root.ok_or_else(|| invalid("no root element"))
}

fn push_text(stack: &mut [Frame], s: &str, meter: &mut Meter<'_>) -> Result<(), BodyError> {
    match stack.last_mut() {
        Some(frame) => {
            meter.charge(cost::string_growth(
                frame.text.len(),
                frame.text.capacity(),
                s.len(),
            ))?;
            frame.text.push_str(s);
        }
        None if s.chars().all(is_xml_space) => {}
        None => return Err(invalid("text outside the root element")),
    }
    Ok(())
}

fn close(
    stack: &mut Vec<Frame>,
    root: &mut Option<Map<String, Value>>,
    meter: &mut Meter<'_>,
) -> Result<(), BodyError> {
    let frame = stack
        .pop()
        .ok_or_else(|| invalid("closing tag without an open element"))?;
    match stack.last_mut() {
        Some(parent) => {
            let (name, value) = frame.into_value(meter)?;
            insert_multi(&mut parent.fields, name, value, meter)?;
        }
        None => *root = Some(frame.into_object(meter)?),
    }
    Ok(())
}
