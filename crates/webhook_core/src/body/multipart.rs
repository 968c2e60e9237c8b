//! multipart/form-data bodies → parameters, via multer.
//!
//! multer is asynchronous; the body is already in memory, so it is fed as a single
//! chunk and driven to completion with `futures_executor::block_on` (no I/O ever
//! waits, so this never blocks the calling thread for long).

use base64::Engine as _;
use bytes::Bytes;
use encoding_rs::UTF_8;
use serde_json::{Map, Value};

use super::{clip, insert_multi, BodyError, MediaType};

/// RFC 2046 §5.1.1 allows 70 characters; some clients go beyond, so allow some slack.
const MAX_BOUNDARY_LEN: usize = 200;

fn invalid(msg: impl Into<String>) -> BodyError {
    BodyError::InvalidMultipart(msg.into())
}

/// Text fields become strings (a repeated name becomes an array); parts with a
/// filename become `{"filename", "content_type", "size", "content_base64"}`. Parts
/// without a name carry no parameter and are skipped, but still count towards
/// `max_parts`.
pub(super) fn parse_multipart(
    body: Vec<u8>,
    boundary: Option<&str>,
    max_parts: usize,
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
    let stream = futures_util::stream::iter(std::iter::once(
        Ok::<Bytes, std::convert::Infallible>(Bytes::from(body)),
    ));
    let mut multipart = multer::Multipart::new(stream, boundary);
    futures_executor::block_on(async move {
        let mut params = Map::new();
        let mut parts = 0usize;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| invalid(e.to_string()))?
        {
            parts += 1;
            if parts > max_parts {
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
                Some(filename) => file_value(filename, content_type, &data),
                None => Value::String(field_text(content_type.as_deref(), &data)),
            };
            insert_multi(&mut params, name, value);
        }
        Ok(params)
    })
}

/// File metadata plus content. RFC 7578 would default a missing part type to
/// text/plain, but for an upload "unknown bytes" is the honest default.
fn file_value(filename: String, content_type: Option<String>, data: &[u8]) -> Value {
    let mut file = Map::new();
    file.insert("filename".into(), Value::String(filename));
    file.insert(
        "content_type".into(),
        Value::String(content_type.unwrap_or_else(|| "application/octet-stream".into())),
    );
    file.insert("size".into(), Value::from(data.len()));
    file.insert(
        "content_base64".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
    );
    Value::Object(file)
}

/// A text field in its part's declared charset when known, else UTF-8; lossy, since
/// one odd byte in a form field should not reject the whole request.
fn field_text(content_type: Option<&str>, data: &[u8]) -> String {
    let enc = content_type
        .and_then(|ct| MediaType::parse(ct).charset().ok().flatten())
        .unwrap_or(UTF_8);
    enc.decode(data).0.into_owned()
}
