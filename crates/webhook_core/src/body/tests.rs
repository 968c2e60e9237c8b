use super::*;
use serde_json::json;
use std::io::Write;

fn parse(ct: Option<&str>, raw: &[u8]) -> Result<ParsedBody, BodyError> {
    parse_body(ct, None, raw, &BodyLimits::default())
}

fn ok(ct: Option<&str>, raw: &[u8]) -> ParsedBody {
    parse(ct, raw).unwrap_or_else(|e| panic!("unexpected error for {ct:?}: {e}"))
}

fn err(ct: Option<&str>, raw: &[u8]) -> BodyError {
    match parse(ct, raw) {
        Ok(p) => panic!("expected an error for {ct:?}, got {p:?}"),
        Err(e) => e,
    }
}

fn params(p: &ParsedBody) -> Value {
    Value::Object(p.params.clone())
}

fn keys(p: &ParsedBody) -> Vec<&str> {
    p.params.keys().map(String::as_str).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const XML: Option<&str> = Some("application/xml");

// ----------------------------------------------------------------- defaults, API

#[test]
fn limits_default() {
    let l = BodyLimits::default();
    assert_eq!(l.max_decoded_bytes, 10 * 1024 * 1024);
    assert_eq!(l.max_parts, 1000);
}

#[test]
fn http_statuses() {
    assert_eq!(BodyError::TooLarge { limit: 1 }.http_status(), 413);
    assert_eq!(BodyError::TooManyParts { limit: 1 }.http_status(), 413);
    assert_eq!(
        BodyError::UnsupportedEncoding("br".into()).http_status(),
        415
    );
    assert_eq!(BodyError::UnsupportedCharset("x".into()).http_status(), 415);
    assert_eq!(BodyError::InvalidCompression("gzip").http_status(), 400);
    assert_eq!(BodyError::InvalidJson("x".into()).http_status(), 400);
    assert_eq!(BodyError::InvalidMultipart("x".into()).http_status(), 400);
    assert_eq!(BodyError::InvalidXml("x".into()).http_status(), 400);
}

#[test]
fn error_messages() {
    assert_eq!(
        BodyError::UnsupportedEncoding("br".into()).to_string(),
        "Unsupported Content-Encoding: br"
    );
    assert_eq!(
        BodyError::InvalidCompression("gzip").to_string(),
        "Invalid gzip body"
    );
    assert_eq!(
        BodyError::UnsupportedCharset("foo".into()).to_string(),
        "Unsupported charset: foo"
    );
    assert_eq!(
        err(JSON, b"{\"a\": }").to_string(),
        "Invalid JSON body: expected value at line 1 column 7"
    );
}

#[test]
fn long_client_strings_are_clipped_in_errors() {
    let long = "x".repeat(500);
    let e = parse_body(None, Some(&long), b"abc", &BodyLimits::default()).unwrap_err();
    assert!(e.to_string().len() < 120, "{e}");
    assert!(e.to_string().ends_with("..."));
}

#[test]
fn kind_names() {
    assert_eq!(BodyKind::Json.as_str(), "json");
    assert_eq!(BodyKind::Multipart.to_string(), "multipart");
}

// ----------------------------------------------------------------- empty, dispatch

#[test]
fn empty_body_regardless_of_type() {
    for ct in [
        None,
        JSON,
        FORM,
        XML,
        Some("multipart/form-data"),
        Some("text/plain; charset=nonsense"),
    ] {
        let p = ok(ct, b"");
        assert_eq!(p.kind, BodyKind::Empty);
        assert!(p.params.is_empty());
        assert_eq!(p.text, "");
    }
    // even with an unknown encoding: there is nothing to decode
    let p = parse_body(JSON, Some("br"), b"", &BodyLimits::default()).unwrap();
    assert_eq!(p.kind, BodyKind::Empty);
}

#[test]
fn gzip_of_nothing_is_empty() {
    let p = parse_body(JSON, Some("gzip"), &gzip(b""), &BodyLimits::default()).unwrap();
    assert_eq!(p.kind, BodyKind::Empty);
}

#[test]
fn media_type_is_case_insensitive_and_params_ignored() {
    let p = ok(
        Some("Application/JSON; Charset=\"UTF-8\"; foo=bar"),
        b"{\"a\":1}",
    );
    assert_eq!(p.kind, BodyKind::Json);
    assert_eq!(params(&p), json!({"a": 1}));
    assert_eq!(ok(Some("  TEXT/PLAIN  "), b"hi").kind, BodyKind::Text);
}

#[test]
fn json_suffix_and_xml_suffix() {
    let p = ok(Some("application/vnd.api+json"), b"{\"data\":[]}");
    assert_eq!(p.kind, BodyKind::Json);
    assert_eq!(
        ok(Some("application/cloudevents+json"), b"1").kind,
        BodyKind::Json
    );
    assert_eq!(ok(Some("text/xml"), b"<a/>").kind, BodyKind::Xml);
    assert_eq!(
        ok(Some("application/atom+xml"), b"<a/>").kind,
        BodyKind::Xml
    );
    // "+json" without a type/subtype is just an odd type
    assert_eq!(ok(Some("+json"), b"{}").kind, BodyKind::Other);
}

#[test]
fn other_types_are_text_only() {
    let p = ok(Some("application/octet-stream"), b"\x00\xffab");
    assert_eq!(p.kind, BodyKind::Other);
    assert!(p.params.is_empty());
    assert_eq!(p.text, "\u{0}\u{fffd}ab");
    // garbage Content-Type is Other, not an error
    assert_eq!(ok(Some(";;;=="), b"x").kind, BodyKind::Other);
    // an unknown charset does not matter for an uninterpreted body
    assert_eq!(
        ok(Some("text/html; charset=bogus"), b"<p>x</p>").text,
        "<p>x</p>"
    );
    // a known one is honoured
    assert_eq!(
        ok(Some("text/csv; charset=iso-8859-1"), b"caf\xe9").text,
        "café"
    );
}

#[test]
fn sniff_json_without_content_type() {
    let p = ok(None, b" {\"a\": [1, 2], \"b\": null} ");
    assert_eq!(p.kind, BodyKind::Json);
    assert_eq!(params(&p), json!({"a": [1, 2], "b": null}));
    // blank Content-Type counts as missing
    assert_eq!(ok(Some("  "), b"[1]").kind, BodyKind::Json);
    assert_eq!(params(&ok(None, b"42")), json!({"body": 42}));
}

#[test]
fn sniff_text_without_content_type() {
    let p = ok(None, b"hello world");
    assert_eq!(p.kind, BodyKind::Text);
    assert!(p.params.is_empty());
    assert_eq!(p.text, "hello world");
    // almost-JSON is text, not an error
    assert_eq!(ok(None, b"{\"a\":").kind, BodyKind::Text);
    // invalid UTF-8 is lossy text
    let p = ok(None, b"a\xffb");
    assert_eq!(p.kind, BodyKind::Text);
    assert_eq!(p.text, "a\u{fffd}b");
}

// ----------------------------------------------------------------- JSON

#[test]
fn json_object_entries_in_order() {
    let p = ok(JSON, br#"{"z": 1, "a": {"x": [true]}, "m": "s", "f": 1.5}"#);
    assert_eq!(p.kind, BodyKind::Json);
    assert_eq!(keys(&p), ["z", "a", "m", "f"]);
    assert_eq!(p.params["a"], json!({"x": [true]}));
    assert_eq!(p.params["f"], json!(1.5));
    assert_eq!(
        p.text,
        r#"{"z": 1, "a": {"x": [true]}, "m": "s", "f": 1.5}"#
    );
}

#[test]
fn json_non_object_goes_under_body() {
    // A top-level array is the one parameter `items` (SendGrid posts arrays).
    assert_eq!(params(&ok(JSON, b"[1, 2]")), json!({"items": [1, 2]}));
    assert_eq!(params(&ok(JSON, b"\"s\"")), json!({"body": "s"}));
    assert_eq!(params(&ok(JSON, b"null")), json!({"body": null}));
    assert_eq!(params(&ok(JSON, b"false")), json!({"body": false}));
}

#[test]
fn json_rejects_trailing_garbage() {
    let e = err(JSON, b"{\"a\":1} x");
    assert!(matches!(e, BodyError::InvalidJson(_)));
    assert!(e.to_string().contains("trailing characters"), "{e}");
    assert!(matches!(err(JSON, b"{} {}"), BodyError::InvalidJson(_)));
    // trailing whitespace is fine
    assert_eq!(ok(JSON, b"{}\r\n\t ").kind, BodyKind::Json);
}

#[test]
fn json_syntax_errors() {
    let e = err(JSON, b"{\"a\" 1}");
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().starts_with("Invalid JSON body: "), "{e}");
    assert!(matches!(err(JSON, b"   "), BodyError::InvalidJson(_)));
    assert!(matches!(err(JSON, b"{'a':1}"), BodyError::InvalidJson(_)));
}

#[test]
fn json_deep_nesting_errors_without_overflow() {
    let deep = vec![b'['; 100_000];
    let e = err(JSON, &deep);
    assert!(e.to_string().contains("recursion limit"), "{e}");
    let deep_obj = "{\"a\":".repeat(100_000);
    assert!(matches!(
        err(JSON, deep_obj.as_bytes()),
        BodyError::InvalidJson(_)
    ));
    // sniffing must not overflow either
    assert_eq!(ok(None, &deep).kind, BodyKind::Text);
}

#[test]
fn json_invalid_utf8_is_a_clear_error() {
    let e = err(JSON, b"{\"a\": \"caf\xe9\"}");
    assert_eq!(e.to_string(), "Invalid JSON body: invalid UTF-8 at byte 10");
}

#[test]
fn json_utf8_bom_is_accepted() {
    let p = ok(JSON, b"\xEF\xBB\xBF{\"a\":1}");
    assert_eq!(params(&p), json!({"a": 1}));
    assert_eq!(p.text, "{\"a\":1}");
}

#[test]
fn json_duplicate_keys_last_wins() {
    assert_eq!(params(&ok(JSON, br#"{"a":1,"a":2}"#)), json!({"a": 2}));
}

// ----------------------------------------------------------------- charsets

fn utf16le(s: &str, bom: bool) -> Vec<u8> {
    let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn utf16be(s: &str) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

#[test]
fn charset_latin1_json_and_text() {
    let p = ok(
        Some("application/json; charset=iso-8859-1"),
        b"{\"d\":\"caf\xe9\"}",
    );
    assert_eq!(p.params["d"], json!("café"));
    assert_eq!(p.text, "{\"d\":\"café\"}");
    let p = ok(Some("text/plain; charset=ISO-8859-1"), b"caf\xe9");
    assert_eq!(p.kind, BodyKind::Text);
    assert_eq!(p.text, "café");
    // windows-1252 specifics (euro sign at 0x80)
    assert_eq!(
        ok(Some("text/plain; charset=windows-1252"), b"\x80 5").text,
        "€ 5"
    );
}

#[test]
fn charset_utf16_with_and_without_bom() {
    let ct = Some("application/json; charset=utf-16le");
    for bom in [true, false] {
        let p = ok(ct, &utf16le(r#"{"d":"café ☃"}"#, bom));
        assert_eq!(p.params["d"], json!("café ☃"), "bom={bom}");
        assert_eq!(p.text, r#"{"d":"café ☃"}"#);
    }
    // "utf-16" means little endian unless a BOM says otherwise
    let p = ok(Some("text/plain; charset=utf-16"), &utf16be("héllo"));
    assert_eq!(p.text, "héllo");
    // a UTF-16 BOM is recognised even without a charset
    let p = ok(JSON, &utf16le(r#"{"a":"é"}"#, true));
    assert_eq!(p.params["a"], json!("é"));
}

#[test]
fn charset_shift_jis() {
    // "日本" in Shift_JIS
    let p = ok(Some("text/plain; charset=Shift_JIS"), b"\x93\xfa\x96\x7b");
    assert_eq!(p.text, "日本");
    let p = ok(
        Some("application/x-www-form-urlencoded; charset=shift_jis"),
        b"q=%93%FA%96%7B",
    );
    assert_eq!(params(&p), json!({"q": "日本"}));
}

#[test]
fn unknown_charset_is_rejected() {
    for ct in [
        "application/json; charset=foo",
        "text/plain; charset=foo",
        "application/x-www-form-urlencoded; charset=foo",
        "application/xml; charset=foo",
    ] {
        let e = err(Some(ct), b"{}");
        assert_eq!(e, BodyError::UnsupportedCharset("foo".into()), "{ct}");
        assert_eq!(e.http_status(), 415);
    }
    // the WHATWG replacement encoding would erase the body
    assert!(matches!(
        err(Some("text/plain; charset=iso-2022-kr"), b"x"),
        BodyError::UnsupportedCharset(_)
    ));
}

#[test]
fn malformed_bytes_in_declared_charset() {
    let e = err(Some("application/json; charset=shift_jis"), b"\"\x81\"");
    assert!(e.to_string().contains("Shift_JIS"), "{e}");
    // text stays lossy
    assert_eq!(
        ok(Some("text/plain; charset=utf-8"), b"a\xffb").text,
        "a\u{fffd}b"
    );
}

// ----------------------------------------------------------------- encodings

#[test]
fn gzip_body() {
    let body = gzip(br#"{"a":"b"}"#);
    for ce in [
        "gzip",
        "GZIP",
        "x-gzip",
        " gzip ",
        "identity, gzip",
        "gzip, identity",
    ] {
        let p = parse_body(JSON, Some(ce), &body, &BodyLimits::default()).unwrap();
        assert_eq!(params(&p), json!({"a": "b"}), "{ce}");
    }
}

#[test]
fn multi_member_gzip() {
    let mut body = gzip(b"{\"a\":");
    body.extend(gzip(b"1}"));
    let p = parse_body(JSON, Some("gzip"), &body, &BodyLimits::default()).unwrap();
    assert_eq!(params(&p), json!({"a": 1}));
}

#[test]
fn deflate_zlib_and_raw() {
    let data = br#"{"k":"v","n":[1,2,3]}"#;
    for body in [zlib(data), raw_deflate(data)] {
        let p = parse_body(JSON, Some("deflate"), &body, &BodyLimits::default()).unwrap();
        assert_eq!(params(&p), json!({"k": "v", "n": [1, 2, 3]}));
    }
}

#[test]
fn stacked_codings_are_undone_in_reverse() {
    let body = gzip(&zlib(b"x=1"));
    let p = parse_body(FORM, Some("deflate, gzip"), &body, &BodyLimits::default()).unwrap();
    assert_eq!(params(&p), json!({"x": "1"}));
    let e = parse_body(
        FORM,
        Some("gzip, gzip, gzip, gzip, gzip"),
        &body,
        &BodyLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, BodyError::UnsupportedEncoding(_)));
}

#[test]
fn unknown_encoding_rejected() {
    let e = parse_body(JSON, Some("br"), b"{}", &BodyLimits::default()).unwrap_err();
    assert_eq!(e.to_string(), "Unsupported Content-Encoding: br");
    assert_eq!(e.http_status(), 415);
    let e = parse_body(JSON, Some("gzip, compress"), b"{}", &BodyLimits::default()).unwrap_err();
    assert_eq!(e, BodyError::UnsupportedEncoding("compress".into()));
}

#[test]
fn identity_and_blank_encoding() {
    for ce in ["identity", "", "IDENTITY"] {
        let p = parse_body(JSON, Some(ce), b"{}", &BodyLimits::default()).unwrap();
        assert_eq!(p.kind, BodyKind::Json);
    }
}

#[test]
fn corrupt_compressed_bodies() {
    let l = BodyLimits::default();
    let e = parse_body(JSON, Some("gzip"), b"{\"not\":\"gzip\"}", &l).unwrap_err();
    assert_eq!(e.to_string(), "Invalid gzip body");
    assert_eq!(e.http_status(), 400);
    let e = parse_body(JSON, Some("deflate"), b"\xff\xff\xff\xff", &l).unwrap_err();
    assert_eq!(e.to_string(), "Invalid deflate body");

    let data = b"{\"a\":\"some text that is long enough to compress\"}".repeat(20);
    let g = gzip(&data);
    let e = parse_body(JSON, Some("gzip"), &g[..g.len() - 6], &l).unwrap_err();
    assert_eq!(e, BodyError::InvalidCompression("gzip"), "truncated gzip");
    let mut bad_crc = g.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 0xff;
    assert!(parse_body(JSON, Some("gzip"), &bad_crc, &l).is_err());
    for d in [zlib(&data), raw_deflate(&data)] {
        let e = parse_body(JSON, Some("deflate"), &d[..d.len() / 2], &l).unwrap_err();
        assert_eq!(
            e,
            BodyError::InvalidCompression("deflate"),
            "truncated deflate"
        );
    }
    let mut trailing = raw_deflate(&data);
    trailing.extend_from_slice(b"junk");
    assert!(parse_body(JSON, Some("deflate"), &trailing, &l).is_err());
}

/// Compress `total` zero bytes without materialising them.
fn zeros_compressed<W: Write>(mut w: W, total: usize) -> W {
    let chunk = [0u8; 64 * 1024];
    for _ in 0..total / chunk.len() {
        w.write_all(&chunk).unwrap();
    }
    w
}

#[test]
fn zip_bomb_is_capped() {
    let limits = BodyLimits {
        max_decoded_bytes: 1024 * 1024,
        max_parts: 10,
    };
    // 16 MiB of zeros compresses to ~16 KiB: a 1000:1 bomb against a 1 MiB cap.
    let total = 16 * 1024 * 1024;
    let level = flate2::Compression::fast();
    let bombs = [
        (
            "gzip",
            zeros_compressed(flate2::write::GzEncoder::new(Vec::new(), level), total)
                .finish()
                .unwrap(),
        ),
        (
            "deflate",
            zeros_compressed(flate2::write::ZlibEncoder::new(Vec::new(), level), total)
                .finish()
                .unwrap(),
        ),
        (
            "deflate",
            zeros_compressed(flate2::write::DeflateEncoder::new(Vec::new(), level), total)
                .finish()
                .unwrap(),
        ),
    ];
    for (ce, bomb) in &bombs {
        assert!(bomb.len() < 200 * 1024, "{ce}: {}", bomb.len());
        let e = parse_body(JSON, Some(ce), bomb, &limits).unwrap_err();
        assert_eq!(e, BodyError::TooLarge { limit: 1024 * 1024 }, "{ce}");
        assert_eq!(e.http_status(), 413);
    }
    // nested layers are each capped too
    let nested = gzip(&bombs[0].1);
    let e = parse_body(JSON, Some("gzip, gzip"), &nested, &limits).unwrap_err();
    assert_eq!(e, BodyError::TooLarge { limit: 1024 * 1024 });
}

#[test]
fn cap_is_exact() {
    let data = vec![b'a'; 1000];
    for (ce, body) in [
        ("gzip", gzip(&data)),
        ("deflate", zlib(&data)),
        ("deflate", raw_deflate(&data)),
        ("identity", data.clone()),
    ] {
        let at = BodyLimits {
            max_decoded_bytes: 1000,
            max_parts: 1,
        };
        let p = parse_body(Some("text/plain"), Some(ce), &body, &at).unwrap();
        assert_eq!(p.text.len(), 1000, "{ce}");
        let below = BodyLimits {
            max_decoded_bytes: 999,
            max_parts: 1,
        };
        let e = parse_body(Some("text/plain"), Some(ce), &body, &below).unwrap_err();
        assert_eq!(e, BodyError::TooLarge { limit: 999 }, "{ce}");
    }
}

#[test]
fn gzip_with_charset() {
    let body = gzip(b"caf\xe9");
    let p = parse_body(
        Some("text/plain; charset=latin1"),
        Some("gzip"),
        &body,
        &BodyLimits::default(),
    )
    .unwrap();
    assert_eq!(p.text, "café");
}

// ----------------------------------------------------------------- form & query

#[test]
fn form_basic() {
    let p = ok(FORM, b"a=1&b=two+words&c=%26%3D%2B&d=");
    assert_eq!(p.kind, BodyKind::Form);
    assert_eq!(
        params(&p),
        json!({"a": "1", "b": "two words", "c": "&=+", "d": ""})
    );
    assert_eq!(p.text, "a=1&b=two+words&c=%26%3D%2B&d=");
}

#[test]
fn form_duplicates_become_arrays_at_first_position() {
    let p = ok(FORM, b"x=1&y=a&x=2&z=&x=3");
    assert_eq!(keys(&p), ["x", "y", "z"]);
    assert_eq!(params(&p), json!({"x": ["1", "2", "3"], "y": "a", "z": ""}));
}

#[test]
fn form_unicode_and_edge_cases() {
    let p = ok(FORM, "n=%C3%A9t%C3%A9&raw=été&%E2%98%83=snow".as_bytes());
    assert_eq!(params(&p), json!({"n": "été", "raw": "été", "☃": "snow"}));
    // no '=', empty segments, '=' in value, bad escapes kept literally
    let p = ok(FORM, b"&&flag&k=v=w&bad=%zz%&=empty");
    assert_eq!(
        params(&p),
        json!({"flag": "", "k": "v=w", "bad": "%zz%", "": "empty"})
    );
    // invalid UTF-8 after unescaping is replaced, not an error
    assert_eq!(params(&ok(FORM, b"a=%FF")), json!({"a": "\u{fffd}"}));
    // values are never type-inferred
    assert_eq!(
        params(&ok(FORM, b"n=42&t=true")),
        json!({"n": "42", "t": "true"})
    );
}

#[test]
fn form_latin1_charset() {
    let p = ok(
        Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
        b"d=caf%E9&r=caf\xe9",
    );
    assert_eq!(params(&p), json!({"d": "café", "r": "café"}));
    assert_eq!(p.text, "d=caf%E9&r=café");
}

#[test]
fn form_utf16_charset() {
    let body = utf16le("a=%C3%A9&b=x+y", false);
    let p = ok(
        Some("application/x-www-form-urlencoded; charset=utf-16le"),
        &body,
    );
    assert_eq!(params(&p), json!({"a": "é", "b": "x y"}));
}

#[test]
fn query_parsing() {
    let q = parse_query("a=1&b=hello+world&a=2&c=%E2%82%AC&d&e=x%20y");
    assert_eq!(
        Value::Object(q.clone()),
        json!({"a": ["1", "2"], "b": "hello world", "c": "€", "d": "", "e": "x y"})
    );
    assert_eq!(
        q.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    assert!(parse_query("").is_empty());
    assert!(parse_query("&&&").is_empty());
    assert_eq!(
        Value::Object(parse_query("k=%FF%")),
        json!({"k": "\u{fffd}%"})
    );
}

// ----------------------------------------------------------------- multipart

const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

/// (field name, optional (filename, content type), data)
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

fn multipart_body(parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, file, data) in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some((filename, ct)) => {
                out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {ct}\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
            None => out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn multipart_ct() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

#[test]
fn multipart_fields_and_file() {
    let body = multipart_body(&[
        ("title", None, "héllo".as_bytes()),
        ("tag", None, b"a"),
        (
            "upload",
            Some(("pic.png", "image/png")),
            b"\x89PNG\r\n\x00\xff",
        ),
        ("tag", None, b"b"),
        ("empty", None, b""),
    ]);
    let p = ok(Some(&multipart_ct()), &body);
    assert_eq!(p.kind, BodyKind::Multipart);
    assert_eq!(keys(&p), ["title", "tag", "upload", "empty"]);
    assert_eq!(
        params(&p),
        json!({
            "title": "héllo",
            "tag": ["a", "b"],
            "upload": {
                "filename": "pic.png",
                "content_type": "image/png",
                "size": 8,
                "content_base64": "iVBORw0KAP8=",
            },
            "empty": "",
        })
    );
    assert!(p.text.contains("Content-Disposition"));
    assert!(p.text.contains("\u{fffd}"));
}

#[test]
fn multipart_quoted_boundary_and_uppercase_type() {
    let body = multipart_body(&[("a", None, b"1")]);
    let ct = format!("Multipart/Form-Data; boundary=\"{BOUNDARY}\"; charset=utf-8");
    assert_eq!(params(&ok(Some(&ct), &body)), json!({"a": "1"}));
}

#[test]
fn multipart_file_without_content_type_and_empty_filename() {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--{BOUNDARY}--\r\n"
    );
    let p = ok(Some(&multipart_ct()), body.as_bytes());
    assert_eq!(
        params(&p),
        json!({"f": {"filename": "", "content_type": "application/octet-stream", "size": 0, "content_base64": ""}})
    );
}

#[test]
fn multipart_field_charset() {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"t\"\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(b"caf\xe9");
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let p = ok(Some(&multipart_ct()), &body);
    assert_eq!(params(&p), json!({"t": "café"}));
    // without a part charset, bad UTF-8 in a text field is replaced, not an error
    let body = multipart_body(&[("t", None, b"caf\xe9")]);
    assert_eq!(
        params(&ok(Some(&multipart_ct()), &body)),
        json!({"t": "caf\u{fffd}"})
    );
}

#[test]
fn multipart_unnamed_parts_are_skipped() {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nnameless\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--{BOUNDARY}--\r\n"
    );
    assert_eq!(
        params(&ok(Some(&multipart_ct()), body.as_bytes())),
        json!({"a": "1"})
    );
}

#[test]
fn multipart_missing_or_invalid_boundary() {
    let body = multipart_body(&[("a", None, b"1")]);
    for ct in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=\"\"",
    ] {
        let e = err(Some(ct), &body);
        assert_eq!(
            e.to_string(),
            "Invalid multipart body: missing boundary in Content-Type",
            "{ct}"
        );
    }
    let e = err(Some("multipart/form-data; boundary=\"a\u{1}b\""), &body);
    assert!(e.to_string().contains("invalid boundary"), "{e}");
    let long = format!("multipart/form-data; boundary={}", "b".repeat(300));
    assert!(matches!(
        err(Some(&long), &body),
        BodyError::InvalidMultipart(_)
    ));
    // a boundary that does not occur in the body
    let e = err(Some("multipart/form-data; boundary=other"), &body);
    assert!(matches!(e, BodyError::InvalidMultipart(_)), "{e}");
}

#[test]
fn multipart_malformed() {
    let ct = multipart_ct();
    // no closing delimiter
    let mut body = multipart_body(&[("a", None, b"1")]);
    body.truncate(body.len() - 10);
    assert!(matches!(
        err(Some(&ct), &body),
        BodyError::InvalidMultipart(_)
    ));
    // headers never end
    let body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n");
    assert!(matches!(
        err(Some(&ct), body.as_bytes()),
        BodyError::InvalidMultipart(_)
    ));
    assert!(matches!(
        err(Some(&ct), b"just some text"),
        BodyError::InvalidMultipart(_)
    ));
}

#[test]
fn multipart_no_parts() {
    let body = format!("--{BOUNDARY}--\r\n");
    let p = ok(Some(&multipart_ct()), body.as_bytes());
    assert_eq!(p.kind, BodyKind::Multipart);
    assert!(p.params.is_empty());
}

#[test]
fn multipart_max_parts() {
    let parts: Vec<Part<'_>> = (0..5).map(|_| ("p", None, &b"x"[..])).collect();
    let body = multipart_body(&parts);
    let mut limits = BodyLimits {
        max_parts: 5,
        ..BodyLimits::default()
    };
    let p = parse_body(Some(&multipart_ct()), None, &body, &limits).unwrap();
    assert_eq!(params(&p), json!({"p": ["x", "x", "x", "x", "x"]}));
    limits.max_parts = 4;
    let e = parse_body(Some(&multipart_ct()), None, &body, &limits).unwrap_err();
    assert_eq!(e, BodyError::TooManyParts { limit: 4 });
    assert_eq!(e.http_status(), 413);
}

#[test]
fn multipart_gzipped() {
    let body = gzip(&multipart_body(&[("a", None, b"1")]));
    let p = parse_body(
        Some(&multipart_ct()),
        Some("gzip"),
        &body,
        &BodyLimits::default(),
    )
    .unwrap();
    assert_eq!(params(&p), json!({"a": "1"}));
}

// ----------------------------------------------------------------- text

#[test]
fn text_plain() {
    let p = ok(Some("text/plain"), "hello ☃\n".as_bytes());
    assert_eq!(p.kind, BodyKind::Text);
    assert!(p.params.is_empty());
    assert_eq!(p.text, "hello ☃\n");
    // JSON that is not labelled JSON (AWS SNS sends text/plain) is parsed when
    // it parses as an object or array; the raw text is kept.
    for ct in [
        "text/plain; charset=UTF-8",
        "text/json",
        "application/octet-stream",
    ] {
        let p = ok(Some(ct), b" {\"Type\": \"Notification\", \"n\": 1}");
        assert_eq!(p.kind, BodyKind::Json, "{ct}");
        assert_eq!(params(&p), json!({"Type": "Notification", "n": 1}), "{ct}");
        assert_eq!(p.text, " {\"Type\": \"Notification\", \"n\": 1}");
        let p = ok(Some(ct), b"[{\"event\": \"open\"}]");
        assert_eq!(params(&p), json!({"items": [{"event": "open"}]}), "{ct}");
    }
    // Text that is not a JSON object or array stays text.
    for body in [&b"{not json"[..], b"42", b"\"quoted\"", b"[1, 2"] {
        let p = ok(Some("text/plain"), body);
        assert_eq!(p.kind, BodyKind::Text);
        assert!(p.params.is_empty());
    }
    // Other media types are not sniffed.
    let p = ok(Some("application/pdf"), b"{\"a\":1}");
    assert_eq!(p.kind, BodyKind::Other);
    assert!(p.params.is_empty());
}

#[test]
fn form_fields_holding_json_are_parsed() {
    // Slack interactive payloads: payload=<url-encoded JSON>.
    let p = ok(
        Some("application/x-www-form-urlencoded"),
        b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22username%22%3A%22ana%22%7D%7D&n=%7Bnot&t=%5B1%5D",
    );
    assert_eq!(
        params(&p),
        json!({"payload": {"type": "block_actions", "user": {"username": "ana"}}, "n": "{not", "t": [1]})
    );
}

// ----------------------------------------------------------------- XML

#[test]
fn xml_children_attributes_repeats() {
    let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<order id="42" status="new">
  <customer vip="yes">
    <name>  Ann  </name>
    <email>ann@example.com</email>
  </customer>
  <item sku="A">2</item>
  <item sku="B">3</item>
  <note/>
  <tag>x</tag><tag>y</tag><tag>z</tag>
  <?pi ignored?>
</order>"#;
    let p = ok(XML, body);
    assert_eq!(p.kind, BodyKind::Xml);
    assert_eq!(
        keys(&p),
        ["@id", "@status", "customer", "item", "note", "tag"]
    );
    assert_eq!(
        params(&p),
        json!({
            "@id": "42",
            "@status": "new",
            "customer": {"@vip": "yes", "name": "Ann", "email": "ann@example.com"},
            "item": [{"@sku": "A", "#text": "2"}, {"@sku": "B", "#text": "3"}],
            "note": "",
            "tag": ["x", "y", "z"],
        })
    );
    assert_eq!(p.text, std::str::from_utf8(body).unwrap());
}

#[test]
fn xml_mixed_text_cdata_and_entities() {
    let p = ok(
        XML,
        b"<r><p>Hello <b>bold</b> world</p><c><![CDATA[<raw> & stuff]]></c><e>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</e><a v=\"&amp;&#x263A;\"/></r>",
    );
    assert_eq!(
        params(&p),
        json!({
            "p": {"b": "bold", "#text": "Hello  world"},
            "c": "<raw> & stuff",
            "e": "<&>\"'AB",
            "a": {"@v": "&☺"},
        })
    );
}

#[test]
fn xml_root_text_and_empty_root() {
    assert_eq!(
        params(&ok(XML, b"<r>just text</r>")),
        json!({"#text": "just text"})
    );
    assert_eq!(params(&ok(XML, b"<r/>")), json!({}));
    assert_eq!(params(&ok(XML, b"<r a='1'/>")), json!({"@a": "1"}));
}

#[test]
fn xml_namespaces_kept_as_written() {
    let p = ok(
        Some("application/soap+xml"),
        br#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><m:Ping xmlns:m="urn:x">1</m:Ping></soap:Body></soap:Envelope>"#,
    );
    assert_eq!(
        params(&p),
        json!({
            "@xmlns:soap": "http://www.w3.org/2003/05/soap-envelope",
            "soap:Body": {"m:Ping": {"@xmlns:m": "urn:x", "#text": "1"}},
        })
    );
}

#[test]
fn xml_malformed() {
    let cases: &[&[u8]] = &[
        b"<a><b></a></b>",
        b"<a></b>",
        b"<a>",
        b"<a><b>",
        b"<a/><b/>",
        b"<a></a>trailing",
        b"leading<a></a>",
        b"not xml at all",
        b"<a>&unknown;</a>",
        b"<a>&amp</a>",
        b"<a x='1' x='2'/>",
        b"<a x=1/>",
        b"<1a/>",
        b"<@a/>",
        b"<a><#text>1</#text></a>",
        b"</a>",
        b"<a><!-- bad -- comment --></a>",
        b"<a/><?xml version='1.0'?>",
        b"<a/><!DOCTYPE a>",
        b"<!-- only a comment -->",
        b"<a",
        b"<a b='1",
    ];
    for case in cases {
        let e = err(XML, case);
        assert!(
            matches!(e, BodyError::InvalidXml(_)),
            "{}: {e:?}",
            String::from_utf8_lossy(case)
        );
        assert!(e.to_string().starts_with("Invalid XML body: "));
        assert_eq!(e.http_status(), 400);
    }
    let e = err(XML, b"<a><b></c></a>");
    assert!(e.to_string().contains("</c>"), "{e}");
    let e = err(XML, b"<a/><b/>");
    assert_eq!(e.to_string(), "Invalid XML body: multiple root elements");
}

#[test]
fn xml_doctype_entities_are_not_expanded() {
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd"> <!ENTITY x "expanded">]>
<r><a>&xxe;</a></r>"#;
    let e = err(XML, xxe);
    assert!(e.to_string().contains("xxe"), "{e}");
    let internal = br#"<!DOCTYPE r [<!ENTITY x "expanded">]><r><a>&x;</a></r>"#;
    assert!(matches!(err(XML, internal), BodyError::InvalidXml(_)));
    let in_attr = br#"<!DOCTYPE r [<!ENTITY x "expanded">]><r a="&x;"/>"#;
    assert!(matches!(err(XML, in_attr), BodyError::InvalidXml(_)));
    let lol = br#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
    assert!(matches!(err(XML, lol), BodyError::InvalidXml(_)));
    // a DOCTYPE that is not used is simply ignored
    let p = ok(
        XML,
        br#"<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://example.com/r.dtd"><r><a>1</a></r>"#,
    );
    assert_eq!(params(&p), json!({"a": "1"}));
}

#[test]
fn xml_deep_nesting_is_capped() {
    let deep = "<a>".repeat(100_000);
    let e = err(XML, deep.as_bytes());
    assert!(e.to_string().contains("nesting deeper"), "{e}");
    let ok_depth = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
    assert_eq!(ok(XML, ok_depth.as_bytes()).kind, BodyKind::Xml);
}

#[test]
fn xml_declared_encoding_is_honoured() {
    let body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r><n>caf\xe9</n></r>";
    let p = ok(XML, body);
    assert_eq!(params(&p), json!({"n": "café"}));
    assert!(p.text.contains("café"));
    let body = b"<?xml version='1.0' encoding = 'windows-1252' ?><r>\x80</r>";
    assert_eq!(params(&ok(XML, body)), json!({"#text": "€"}));
    // the Content-Type charset wins over the declaration
    let body = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>café</r>".as_bytes();
    let p = ok(Some("text/xml; charset=utf-8"), body);
    assert_eq!(params(&p), json!({"#text": "café"}));
    // unknown declared encoding
    let e = err(XML, b"<?xml version=\"1.0\" encoding=\"klingon\"?><r/>");
    assert_eq!(e, BodyError::UnsupportedCharset("klingon".into()));
    // a declaration claiming UTF-16 in an ASCII-readable body is wrong: UTF-8
    let body = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><r>é</r>".as_bytes();
    assert_eq!(params(&ok(XML, body)), json!({"#text": "é"}));
}

#[test]
fn xml_utf16_detected_without_charset() {
    let s = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><r><n>é☃</n></r>";
    for body in [utf16le(s, true), utf16le(s, false), utf16be(s)] {
        let p = ok(XML, &body);
        assert_eq!(params(&p), json!({"n": "é☃"}));
        assert_eq!(p.text, s);
    }
}

#[test]
fn xml_invalid_utf8() {
    let e = err(XML, b"<r>caf\xe9</r>");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

// ----------------------------------------------------------------- robustness

/// xorshift64*: deterministic, dependency-free randomness for the garbage test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if alphabet.is_empty() {
                    self.next() as u8
                } else {
                    alphabet[self.below(alphabet.len())]
                }
            })
            .collect()
    }
}

#[test]
fn garbage_never_panics() {
    let content_types: Vec<Option<String>> = vec![
        None,
        Some("application/json".into()),
        Some("application/json; charset=utf-16le".into()),
        Some("application/x-www-form-urlencoded".into()),
        Some("application/x-www-form-urlencoded; charset=shift_jis".into()),
        Some(multipart_ct()),
        Some("multipart/form-data; boundary=x".into()),
        Some("text/plain".into()),
        Some("text/plain; charset=utf-16be".into()),
        Some("application/xml".into()),
        Some("text/xml; charset=iso-8859-1".into()),
        Some("application/octet-stream".into()),
    ];
    let encodings = [None, Some("gzip"), Some("deflate")];
    // Seeds that make the random input structured enough to reach deep code paths.
    let samples: Vec<Vec<u8>> = vec![
        br#"{"a":[1,{"b":"c\u00e9"}],"d":null}"#.to_vec(),
        b"a=1&b=%20x+y&a=%E2%98%83".to_vec(),
        multipart_body(&[
            ("a", None, b"1"),
            (
                "f",
                Some(("x.bin", "application/octet-stream")),
                b"\x00\x01",
            ),
        ]),
        b"multipart/form-data\r\n--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--"
            .to_vec(),
        br#"<?xml version="1.0"?><!DOCTYPE r><r a="1"><b>&amp;</b><![CDATA[x]]><c/></r>"#.to_vec(),
        gzip(br#"{"a":1}"#),
        zlib(b"<r/>"),
    ];
    let alphabets: [&[u8]; 4] = [
        b"",
        b"<>/=\"' ab&;#!?[]-x",
        b"{}[]\":,0123456789.eE+-tnfalsu\\ ",
        b"-\r\n=;\"x:abcContent-Disposition name",
    ];
    let limits = BodyLimits {
        max_decoded_bytes: 64 * 1024,
        max_parts: 8,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let input = match round % 3 {
            0 => {
                let alphabet = alphabets[rng.below(alphabets.len())];
                let len = rng.below(200);
                rng.bytes(len, alphabet)
            }
            _ => {
                // mutate a sample: flip, insert, delete, truncate
                let mut s = samples[rng.below(samples.len())].clone();
                for _ in 0..=rng.below(4) {
                    if s.is_empty() {
                        break;
                    }
                    let i = rng.below(s.len());
                    match rng.below(4) {
                        0 => s[i] = rng.next() as u8,
                        1 => s.insert(i, alphabets[1][rng.below(alphabets[1].len())]),
                        2 => {
                            s.remove(i);
                        }
                        _ => s.truncate(i),
                    }
                }
                s
            }
        };
        for ct in &content_types {
            for ce in encodings {
                let result = parse_body(ct.as_deref(), ce, &input, &limits);
                if let Err(e) = &result {
                    assert!(!e.to_string().is_empty());
                    assert!(matches!(e.http_status(), 400 | 413 | 415));
                }
            }
        }
        let _ = parse_query(&String::from_utf8_lossy(&input));
    }
}

// ----------------------------------------------------------------- worst cases

/// Every hostile body (1 MB, limit 1 MB) ends in its expected outcome, and what
/// is parsed stays bounded: the parameters' text within the limit and no more
/// values than bytes. Timing goals are in the `hostile_bodies` example, not here.
#[test]
fn worst_case_corpus_parses_to_bounded_results() {
    use super::worst_case::{corpus, Expected};
    const SIZE: usize = 1024 * 1024;
    let limits = BodyLimits {
        max_decoded_bytes: SIZE,
        ..BodyLimits::default()
    };
    for case in corpus(SIZE) {
        let outcome = parse_body(
            Some(&case.content_type),
            case.content_encoding,
            &case.body,
            &limits,
        );
        match (case.expected, outcome) {
            (Expected::Parsed, Ok(parsed)) => {
                assert!(
                    expanded::check_expanded_size(&parsed.params, SIZE).is_ok(),
                    "{}",
                    case.name
                );
                assert!(value_count(&parsed.params) <= SIZE, "{}", case.name);
            }
            (Expected::Refused(status), Err(e)) => {
                assert_eq!(e.http_status(), status, "{}: {e}", case.name);
            }
            (expected, outcome) => panic!(
                "{}: expected {expected:?}, got {:?}",
                case.name,
                outcome.map(|p| p.params.len())
            ),
        }
    }
}

fn value_count(params: &Map<String, Value>) -> usize {
    let mut count = 0;
    let mut pending: Vec<&Value> = params.values().collect();
    while let Some(value) = pending.pop() {
        count += 1;
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    count
}

#[test]
fn huge_exponents_count_at_their_printed_length() {
    let limits = BodyLimits {
        max_decoded_bytes: 10_000,
        ..BodyLimits::default()
    };
    // 9 × 1,001 digits fit, 10 do not (plus the key "body").
    let nine = format!("[{}]", ["1e1000"; 9].join(","));
    assert!(parse_body(JSON, None, nine.as_bytes(), &limits).is_ok());
    let ten = format!("[{}]", ["1e1000"; 10].join(","));
    assert_eq!(
        parse_body(JSON, None, ten.as_bytes(), &limits),
        Err(BodyError::TooLarge { limit: 10_000 })
    );
    // Untyped bodies sniffed as JSON are counted the same way.
    assert_eq!(
        parse_body(None, None, ten.as_bytes(), &limits),
        Err(BodyError::TooLarge { limit: 10_000 })
    );
}

#[test]
fn numbers_postgresql_cannot_store_are_invalid_json() {
    let e = err(JSON, br#"{"n": 1e999999999}"#);
    assert_eq!(e.http_status(), 400);
    assert_eq!(
        e.to_string(),
        "Invalid JSON body: number 1e+999999999 is out of range"
    );
    assert!(parse(JSON, br#"{"n": 1e-16383}"#).is_ok());
}

#[test]
fn xml_duplicate_attribute_is_found_among_many() {
    let mut body = String::from("<r");
    for n in 0..5000 {
        body.push_str(&format!(" a{n}=\"1\""));
    }
    body.push_str(" a4999=\"2\"/>");
    assert_eq!(
        err(XML, body.as_bytes()).to_string(),
        "Invalid XML body: duplicate attribute a4999 (in the tag at byte 0)"
    );
    let ok_body = ok(XML, b"<r a=\"1\" b=\"2\"><c a=\"3\"/></r>");
    assert_eq!(
        params(&ok_body),
        json!({"@a": "1", "@b": "2", "c": {"@a": "3"}})
    );
}

#[test]
fn many_repeated_form_keys_collect_in_one_array() {
    let body = vec!["a=1"; 2_000].join("&");
    let parsed = ok(FORM, body.as_bytes());
    assert_eq!(parsed.params.len(), 1);
    assert_eq!(parsed.params["a"].as_array().map(Vec::len), Some(2_000));
    // Each takes a value slot and two strings, far more than its 4 bytes.
    let body = vec!["a=1"; 100_000].join("&");
    assert_eq!(
        err(FORM, body.as_bytes()),
        BodyError::ParamsTooLarge {
            limit: parse_allowance(body.len())
        }
    );
}

// ----------------------------------------------------------------- memory budget

#[test]
fn budget_errors_are_transport_level() {
    let busy = BodyError::Busy;
    assert_eq!(busy.to_string(), "Listener busy, retry later");
    assert_eq!(busy.http_status(), 503);
    let costly = BodyError::ParamsTooLarge { limit: 1234 };
    assert_eq!(
        costly.to_string(),
        "Request body too large: its parameters would take more than 1234 bytes of memory"
    );
    assert_eq!(costly.http_status(), 413);
    for e in [
        busy,
        costly,
        BodyError::TooLarge { limit: 1 },
        BodyError::TooManyParts { limit: 1 },
        BodyError::UnsupportedEncoding("br".into()),
        BodyError::UnsupportedCharset("x".into()),
        BodyError::InvalidCompression("gzip"),
    ] {
        assert!(e.is_transport_level(), "{e}");
    }
    for e in [
        BodyError::InvalidJson("x".into()),
        BodyError::InvalidMultipart("x".into()),
        BodyError::InvalidXml("x".into()),
    ] {
        assert!(!e.is_transport_level(), "{e}");
    }
    assert_eq!(
        parse_allowance(1000),
        1000 * PARSE_COST_FACTOR + PARSE_COST_FLOOR
    );
    assert_eq!(parse_allowance(usize::MAX), usize::MAX);
}

/// A budget that refuses everything: the smallest body that needs memory is busy,
/// one that needs none is not.
#[test]
fn a_budget_that_refuses_everything() {
    struct Refuse;
    impl MemoryBudget for Refuse {
        fn reserve(&mut self, _: usize) -> bool {
            false
        }
    }
    let limits = BodyLimits::default();
    let e = parse_body_within(JSON, None, b"{\"a\":1}", &limits, &mut Refuse).unwrap_err();
    assert_eq!(e, BodyError::Busy);
    let e = parse_body_within(JSON, Some("gzip"), &gzip(b"{}"), &limits, &mut Refuse);
    assert_eq!(e, Err(BodyError::Busy));
    assert_eq!(
        parse_body_within(JSON, None, b"", &limits, &mut Refuse),
        Ok(ParsedBody::empty())
    );
    assert_eq!(
        decode_text_within(Some("text/plain"), None, b"", &limits, &mut Refuse),
        Ok(String::new())
    );
}

#[test]
fn form_unescaping_is_that_of_form_urlencoded() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let alphabet = b"%+=&aZ09fF\xff\xc3\xa9\xe2\x82\xac\xed\xa0\x80 ";
    for _ in 0..5000 {
        let len = rng.below(40);
        let input = rng.bytes(len, alphabet);
        let expected: Vec<(String, String)> = form_urlencoded::parse(&input)
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        let mut unbudgeted = Unbudgeted;
        let mut meter = Meter::new(&mut unbudgeted);
        let ours: Vec<(String, String)> = form_split(&input)
            .map(|(n, v)| {
                (
                    form_unescape(n, UTF_8, &mut meter).unwrap(),
                    form_unescape(v, UTF_8, &mut meter).unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, expected, "{:?}", String::from_utf8_lossy(&input));
    }
}

#[test]
fn lossy_utf8_is_that_of_std() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let alphabet = b"a\x80\xbf\xc2\xc3\xe0\xe2\xed\xef\xf0\xf4\xf5\xff\xa0\x9f\x90";
    for _ in 0..5000 {
        let len = rng.below(24);
        let input = rng.bytes(len, alphabet);
        let (ours, _) = UTF_8.decode_without_bom_handling(&input);
        assert_eq!(ours, String::from_utf8_lossy(&input), "{input:?}");
    }
}

/// gzip members with the optional header fields (name, comment, extra, header
/// CRC) are read without copying them; a broken header is invalid.
#[test]
fn gzip_header_fields() {
    let data = br#"{"a":"b"}"#;
    let with_fields = flate2::GzBuilder::new()
        .filename("name.json")
        .comment("a comment")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), flate2::Compression::default());
    let mut w = with_fields;
    w.write_all(data).unwrap();
    let body = w.finish().unwrap();
    let p = parse_body(JSON, Some("gzip"), &body, &BodyLimits::default()).unwrap();
    assert_eq!(params(&p), json!({"a": "b"}));

    // A header CRC (FHCRC), which GzBuilder does not write.
    let mut header = vec![0x1f, 0x8b, 8, 0x02 | 0x08, 0, 0, 0, 0, 0, 255];
    header.extend_from_slice(b"n\0");
    let mut crc = flate2::Crc::new();
    crc.update(&header);
    let with_hcrc = |hcrc: u16| {
        let mut body = header.clone();
        body.extend_from_slice(&hcrc.to_le_bytes());
        body.extend(raw_deflate(data));
        let mut crc = flate2::Crc::new();
        crc.update(data);
        body.extend_from_slice(&crc.sum().to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body
    };
    let good = with_hcrc(crc.sum() as u16);
    let p = parse_body(JSON, Some("gzip"), &good, &BodyLimits::default()).unwrap();
    assert_eq!(params(&p), json!({"a": "b"}));
    let invalid = Err(BodyError::InvalidCompression("gzip"));
    let bad = with_hcrc(crc.sum() as u16 ^ 1);
    assert_eq!(
        parse_body(JSON, Some("gzip"), &bad, &BodyLimits::default()),
        invalid
    );
    let mut reserved = good.clone();
    reserved[3] |= 0x20;
    assert_eq!(
        parse_body(JSON, Some("gzip"), &reserved, &BodyLimits::default()),
        invalid
    );
    let mut trailing = gzip(data);
    trailing.extend_from_slice(b"\0\0");
    assert_eq!(
        parse_body(JSON, Some("gzip"), &trailing, &BodyLimits::default()),
        invalid
    );
    let mut wrong_length = gzip(data);
    let n = wrong_length.len();
    wrong_length[n - 4] ^= 1;
    assert_eq!(
        parse_body(JSON, Some("gzip"), &wrong_length, &BodyLimits::default()),
        invalid
    );
    for cut in [1, 5, 10, 11] {
        let truncated = &good[..cut];
        assert_eq!(
            parse_body(JSON, Some("gzip"), truncated, &BodyLimits::default()),
            invalid
        );
    }
}

/// What decode_text_within gives is the text parse_body gives, for every kind.
#[test]
fn decoded_text_is_the_parsed_text() {
    let multipart = multipart_ct();
    let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (None, b"{\"a\":1}".to_vec()),
        (None, b"\xef\xbb\xbfplain \xff text".to_vec()),
        (JSON, b"\xef\xbb\xbf[1,2]".to_vec()),
        (
            Some("application/json; charset=utf-16le"),
            b"[\x001\x00]\x00".to_vec(),
        ),
        (FORM, b"a=%E9&b=\xe9".to_vec()),
        (
            Some("application/x-www-form-urlencoded; charset=latin1"),
            b"a=%E9&b=\xe9".to_vec(),
        ),
        (Some("text/plain; charset=shift_jis"), b"\x82\xa0x".to_vec()),
        (
            XML,
            b"<?xml version='1.0' encoding='latin1'?><r>\xe9</r>".to_vec(),
        ),
        (
            XML,
            "\u{feff}<r/>"
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect(),
        ),
        (
            Some(multipart.as_str()),
            multipart_body(&[
                ("a", None, b"1\xff"),
                ("f", Some(("x", "y/z")), b"\x00\xfe"),
            ]),
        ),
        (
            Some("application/octet-stream; charset=nope"),
            b"\x80[1]".to_vec(),
        ),
        (Some("text/json"), b"{\"a\":[]}".to_vec()),
    ];
    for (ct, body) in cases {
        let parsed = parse_body(ct, None, &body, &BodyLimits::default())
            .unwrap_or_else(|e| panic!("{ct:?}: {e}"));
        let text = decode_text_within(ct, None, &body, &BodyLimits::default(), &mut Unbudgeted);
        assert_eq!(text, Ok(parsed.text), "{ct:?}");
    }
    // Not parseable, but it has a text; an unknown charset is refused alike.
    let text = decode_text_within(
        XML,
        None,
        b"<a>\xff",
        &BodyLimits::default(),
        &mut Unbudgeted,
    );
    assert_eq!(text, Ok("<a>\u{fffd}".to_string()));
    let e = decode_text_within(
        Some("text/plain; charset=nope"),
        None,
        b"x",
        &BodyLimits::default(),
        &mut Unbudgeted,
    );
    assert_eq!(e, Err(BodyError::UnsupportedCharset("nope".into())));
}
