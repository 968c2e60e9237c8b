//! multipart/form-data bodies → parameters, via multer.
//!
//! multer is asynchronous; the body is already in memory, so it is fed as a single
//! chunk and driven to completion with `futures_executor::block_on` (no I/O ever
//! waits, so this never blocks the calling thread for long).
//!
//! Memory: multer copies the body into its own buffer, parses each part's headers
//! into a header map and copies each part's data out. Before each part a scan of the
//! body (the same delimiters multer looks for, linear, no allocation) tells how long
//! its headers and its data can be, and that is charged before multer reads it.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use encoding_rs::UTF_8;
use serde_json::{Map, Value};

use super::{clip, cost, insert_multi, BodyError, MediaType, Meter};

/// RFC 2046 §5.1.1 allows 70 characters; some clients go beyond, so allow some slack.
const MAX_BOUNDARY_LEN: usize = 200;

/// multer's state for one body: the boxed stream, the shared parser state with its
/// boundary, and the small bookkeeping blocks of its buffer.
const MULTER_BYTES: usize = 4 * 1024;

/// What multer allocates for one part apart from copies of its header bytes: the
/// header map (at most 32 headers), the field and its parsed content type.
const PART_BYTES: usize = 8 * 1024;

/// How many copies of a part's header bytes may be live while the part is read:
/// the header map's names and values, the parsed Content-Disposition's name and
/// filename, the parsed content type, and ours of the name, filename and type.
const HEADER_COPIES: usize = 6;

/// Of those, how many outlive the part: the parameter name, multer's copy of it
/// (kept until the next part), the filename and the content type.
const HEADER_COPIES_KEPT: usize = 4;

fn invalid(msg: impl Into<String>) -> BodyError {
    BodyError::InvalidMultipart(msg.into())
}

/// Text fields become strings (a repeated name becomes an array); parts with a
/// filename become `{"filename", "content_type", "size", "content_base64"}`. Parts
/// without a name carry no parameter and are skipped, but still count towards
/// `max_parts`.
pub(super) fn parse_multipart(
    body: Cow<'_, [u8]>,
    boundary: Option<&str>,
    max_parts: usize,
    meter: &mut Meter<'_>,
) -> Result<Map<String, Value>, BodyError> {
    let boundary = match boundary {
        None | Some("") => return Err(invalid("missing boundary in Content-Type")),
        Some(b) => b,
    };
    if boundary.len() > MAX_BOUNDARY_LEN
        || !boundary.bytes().all(|b| (b' '..=b'~').contains(&b))
        || boundary.ends_with(' ')
    {
        return Err(invalid(format!("invalid boundary {:?}", clip(boundary))));
    }
    let bytes = match body {
        Cow::Borrowed(b) => {
            meter.charge(cost::block(b.len()))?;
            Bytes::copy_from_slice(b)
        }
        Cow::Owned(v) => Bytes::from(v),
    };
    // multer's state, and its buffer: it copies the chunk in.
    meter.charge(MULTER_BYTES.saturating_add(cost::block(bytes.len())))?;
    let view = bytes.clone();
    let total = view.len();
    let mut parts = Parts::new(&view, boundary);
    let stream = futures_util::stream::iter(std::iter::once(
        Ok::<Bytes, std::convert::Infallible>(bytes),
    ));
    let mut multipart = multer::Multipart::new(stream, boundary);
    futures_executor::block_on(async move {
        let mut params = Map::new();
        let mut count = 0usize;
        loop {
            let (header_len, part_len) = parts.next().unwrap_or((total, total));
            let header = cost::block(header_len);
            meter.charge(header.saturating_mul(HEADER_COPIES_KEPT))?;
            meter.scratch(
                PART_BYTES
                    .saturating_add(header.saturating_mul(HEADER_COPIES))
                    .saturating_add(cost::block(part_len)),
            )?;
            let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| invalid(e.to_string()))?
            else {
                break;
            };
            count += 1;
            if count > max_parts {
                return Err(BodyError::TooManyParts { limit: max_parts });
            }
            let name = field.name().map(str::to_owned);
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(ToString::to_string);
            let data = field.bytes().await.map_err(|e| invalid(e.to_string()))?;
            let Some(name) = name else {
                continue;
            };
            let value = match file_name {
                Some(filename) => file_value(filename, content_type, &data, meter)?,
                None => Value::String(field_text(content_type.as_deref(), &data, meter)?),
            };
            insert_multi(&mut params, name, value, meter)?;
        }
        Ok(params)
    })
}

/// File metadata plus content. RFC 7578 would default a missing part type to
/// text/plain, but for an upload "unknown bytes" is the honest default.
fn file_value(
    filename: String,
    content_type: Option<String>,
    data: &[u8],
    meter: &mut Meter<'_>,
) -> Result<Value, BodyError> {
    const KEYS: [&str; 4] = ["filename", "content_type", "size", "content_base64"];
    let encoded_len = data.len().div_ceil(3).saturating_mul(4);
    let mut charge = cost::block(encoded_len)
        .saturating_add(cost::number(20))
        .saturating_add(cost::block("application/octet-stream".len()));
    for (len, key) in KEYS.iter().enumerate() {
        charge = charge
            .saturating_add(cost::block(key.len()))
            .saturating_add(cost::map_growth(len));
    }
    meter.charge(charge)?;
    let mut file = Map::new();
    file.insert(KEYS[0].into(), Value::String(filename));
    file.insert(
        KEYS[1].into(),
        Value::String(content_type.unwrap_or_else(|| "application/octet-stream".into())),
    );
    file.insert(KEYS[2].into(), Value::from(data.len()));
    file.insert(
        KEYS[3].into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
    );
    Ok(Value::Object(file))
}

/// A text field in its part's declared charset when known, else UTF-8; lossy, since
/// one odd byte in a form field should not reject the whole request.
fn field_text(
    content_type: Option<&str>,
    data: &[u8],
    meter: &mut Meter<'_>,
) -> Result<String, BodyError> {
    let enc = content_type
        .and_then(|ct| MediaType::parse(ct).charset().ok().flatten())
        .unwrap_or(UTF_8);
    let (text, _, _) = super::decode_charged(enc, data, meter)?;
    super::owned(text, meter)
}

/// The parts of a multipart body where multer finds them, to bound what each one
/// makes multer allocate: the first part starts at the first `--boundary`, each
/// later one at the next `\r\n--boundary`; its headers end at the first blank line
/// after its start. Each item is (header bytes at most, part bytes at most).
/// Linear in the body: both searches only move forward.
struct Parts<'a> {
    body: &'a [u8],
    first: Finder,
    next: Finder,
    /// Where the next part starts, once known; `None` before the first search.
    start: Option<usize>,
    blank: Blank,
}

/// What the search for blank lines has found so far.
enum Blank {
    NotSearched,
    At(usize),
    NoneLeft,
}

impl<'a> Parts<'a> {
    fn new(body: &'a [u8], boundary: &str) -> Parts<'a> {
        let boundary = boundary.as_bytes();
        Parts {
            body,
            first: Finder::new(&[b"--", boundary]),
            next: Finder::new(&[b"\r\n--", boundary]),
            start: None,
            blank: Blank::NotSearched,
        }
    }

    /// The first `\r\n\r\n` at or after `from`, remembered so that the next part
    /// searches only bytes after it (`from` never decreases).
    fn blank_line(&mut self, from: usize) -> Option<usize> {
        match self.blank {
            Blank::At(at) if at >= from => return Some(at),
            Blank::NoneLeft => return None,
            Blank::At(_) | Blank::NotSearched => {}
        }
        let found = self
            .body
            .get(from..)?
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i);
        self.blank = found.map_or(Blank::NoneLeft, Blank::At);
        found
    }
}

impl Iterator for Parts<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let start = match self.start {
            Some(start) => start,
            None => self.first.find(self.body, 0)?,
        };
        if start >= self.body.len() {
            return None;
        }
        let end = self
            .next
            .find(self.body, start + 1)
            .unwrap_or(self.body.len());
        self.start = Some(end);
        let header_end = self
            .blank_line(start)
            .map_or(self.body.len(), |at| at + 4)
            .min(self.body.len());
        Some((header_end - start, end - start))
    }
}

/// Knuth-Morris-Pratt search for a delimiter of at most 2 + 2 + 200 bytes, kept on
/// the stack: linear whatever the body holds (a body full of near-delimiters makes a
/// naive search quadratic).
struct Finder {
    pattern: [u8; Finder::MAX],
    /// For each prefix length, the longest proper prefix that is also its suffix.
    fail: [u8; Finder::MAX + 1],
    len: usize,
}

impl Finder {
    const MAX: usize = 4 + MAX_BOUNDARY_LEN;

    fn new(pieces: &[&[u8]]) -> Finder {
        let mut pattern = [0u8; Finder::MAX];
        let mut len = 0;
        for piece in pieces {
            for &b in *piece {
                if len < Finder::MAX {
                    pattern[len] = b;
                    len += 1;
                }
            }
        }
        let mut fail = [0u8; Finder::MAX + 1];
        let mut k = 0usize;
        for i in 1..len {
            while k > 0 && pattern[i] != pattern[k] {
                k = usize::from(fail[k]);
            }
            if pattern[i] == pattern[k] {
                k += 1;
            }
            fail[i + 1] = k as u8;
        }
        Finder { pattern, fail, len }
    }

    /// Where the pattern first occurs in `hay` at or after `from`.
    fn find(&self, hay: &[u8], from: usize) -> Option<usize> {
        if self.len == 0 {
            return Some(from.min(hay.len()));
        }
        let mut k = 0usize;
        for (i, &b) in hay.iter().enumerate().skip(from) {
            while k > 0 && b != self.pattern[k] {
                k = usize::from(self.fail[k]);
            }
            if b == self.pattern[k] {
                k += 1;
                if k == self.len {
                    return Some(i + 1 - self.len);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finder_finds_first_occurrences() {
        let f = Finder::new(&[b"--", b"ab-a"]);
        assert_eq!(f.find(b"x----ab-ab-a", 0), Some(3));
        assert_eq!(f.find(b"---ab---ab-a--ab-a", 0), Some(6));
        assert_eq!(f.find(b"--ab-a", 1), None);
        let aaa = Finder::new(&[b"aab"]);
        assert_eq!(aaa.find(b"aaaaab", 0), Some(3));
    }

    #[test]
    fn parts_bound_headers_and_data() {
        let body = b"preamble--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz\r\n--B\r\nH: v\r\n\r\n\r\n--B--\r\n";
        let mut parts = Parts::new(body, "B");
        let (h1, d1) = parts.next().unwrap();
        assert_eq!(
            &body[8..8 + h1],
            &b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"[..]
        );
        assert_eq!(
            &body[8..8 + d1],
            &b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxyz"[..]
        );
        let (h2, d2) = parts.next().unwrap();
        assert_eq!(h2, "\r\n--B\r\nH: v\r\n\r\n".len());
        assert_eq!(d2, h2);
        let (_, last) = parts.next().unwrap();
        assert_eq!(last, "\r\n--B--\r\n".len());
        assert_eq!(parts.next(), None);
    }
}
