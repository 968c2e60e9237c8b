//! Body templates for the `custom` response method.
//!
//! A template is literal text with placeholders `{{name}}` / `{{ customer.email }}`
//! that are filled from the request parameters (dotted paths resolved like
//! [`crate::validate::lookup_path`]). Values are escaped for the response's content
//! type so that a caller-controlled value can never break the document: in particular
//! a JSON template that passes [`check`] renders to valid JSON whatever the values
//! contain.
//!
//! Syntax notes:
//! - There is no escape syntax for a literal `{{`; templates needing one are rare, and
//!   keeping the grammar minimal keeps it predictable.
//! - In a run of three or more `{`, the placeholder opens at the last two, so
//!   `{{{name}}}` renders as `{value}`; the placeholder closes at the first `}}`.
//! - Whitespace around the name is ignored; a name containing `{` or `}` is rejected.
//! - Offsets in errors are byte offsets into the template.

use serde_json::{Map, Value};

use crate::validate::lookup_path;

/// The kinds of body a custom response may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentKind {
    Json,
    Text,
    Xml,
    Html,
}

impl ContentKind {
    /// Classifies a Content-Type header value. Matching is case-insensitive and
    /// parameters (`; charset=utf-8`) are ignored; structured-syntax suffixes
    /// (`application/problem+json`, `application/atom+xml`) count as their base kind so
    /// their bodies get the right escaping. Returns `None` for anything else, which
    /// the configuration layer should reject rather than render unescaped.
    pub fn from_content_type(ct: &str) -> Option<ContentKind> {
        // It is sent as a header value: one line, no control characters.
        if ct.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return None;
        }
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let (ty, sub) = essence.split_once('/')?;
        let (ty, sub) = (ty.trim(), sub.trim());
        if ty.is_empty() || sub.is_empty() {
            return None;
        }
        match (ty, sub) {
            ("application", "json") => Some(ContentKind::Json),
            (_, s) if s.ends_with("+json") => Some(ContentKind::Json),
            ("text", "plain") => Some(ContentKind::Text),
            ("application" | "text", "xml") => Some(ContentKind::Xml),
            (_, s) if s.ends_with("+xml") => Some(ContentKind::Xml),
            ("text", "html") => Some(ContentKind::Html),
            _ => None,
        }
    }

    /// A Content-Type to send when the configuration did not give one.
    pub fn default_content_type(&self) -> &'static str {
        match self {
            ContentKind::Json => "application/json",
            ContentKind::Text => "text/plain; charset=utf-8",
            ContentKind::Xml => "application/xml; charset=utf-8",
            ContentKind::Html => "text/html; charset=utf-8",
        }
    }
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` with no `}}` after it (or another `{{` before it).
    #[error("unterminated placeholder: '{{{{' at byte {offset} has no closing '}}}}'")]
    Unterminated { offset: usize },
    /// `{{}}` or `{{  }}`.
    #[error("empty placeholder at byte {offset}")]
    EmptyPlaceholder { offset: usize },
    /// A placeholder name containing `{` or `}`.
    #[error("invalid placeholder name '{name}' at byte {offset}")]
    InvalidName { offset: usize, name: String },
    /// A placeholder right after a backslash inside a JSON string (`"\{{x}}"`): the
    /// backslash would escape the first character of the value, so the output could
    /// not be guaranteed valid.
    #[error("placeholder at byte {offset} directly follows a backslash inside a JSON string")]
    PlaceholderAfterBackslash { offset: usize },
    /// A JSON template that does not produce valid JSON; the message says where.
    #[error("template is not valid JSON: {0}")]
    InvalidJson(String),
}

/// A parsed piece of a template; offsets are byte offsets into the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'t> {
    Lit { text: &'t str, offset: usize },
    Ph { name: &'t str, offset: usize },
}

/// Splits a template into literals and placeholders. Only ASCII `{`/`}` are used as
/// split points, so every slice falls on a UTF-8 character boundary.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if !(bytes[i] == b'{' && bytes[i + 1] == b'{') {
            i += 1;
            continue;
        }
        let mut open = i;
        while open + 2 < bytes.len() && bytes[open + 2] == b'{' {
            open += 1;
        }
        let inner_start = open + 2;
        let Some(rel) = template[inner_start..].find("}}") else {
            return Err(TemplateError::Unterminated { offset: open });
        };
        let inner = &template[inner_start..inner_start + rel];
        if inner.contains("{{") {
            return Err(TemplateError::Unterminated { offset: open });
        }
        let name = inner.trim();
        if name.is_empty() {
            return Err(TemplateError::EmptyPlaceholder { offset: open });
        }
        if name.contains(['{', '}']) {
            return Err(TemplateError::InvalidName {
                offset: open,
                name: name.to_owned(),
            });
        }
        if open > lit_start {
            pieces.push(Piece::Lit {
                text: &template[lit_start..open],
                offset: lit_start,
            });
        }
        pieces.push(Piece::Ph { name, offset: open });
        i = inner_start + rel + 2;
        lit_start = i;
    }
    if lit_start < template.len() {
        pieces.push(Piece::Lit {
            text: &template[lit_start..],
            offset: lit_start,
        });
    }
    Ok(pieces)
}

/// The placeholder names used by a template, each once, in order of first appearance
/// (for warning at configuration time about names that are not parameters).
pub fn placeholders(template: &str) -> Result<Vec<String>, TemplateError> {
    let mut names: Vec<String> = Vec::new();
    for piece in parse(template)? {
        if let Piece::Ph { name, .. } = piece {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Validates a template at configuration time, so errors surface when the response is
/// set up rather than on every request.
///
/// For JSON the template is rendered with every placeholder missing (`null` outside
/// strings, empty inside strings) and the result must parse. Because a value inserted
/// outside a string is a complete JSON value wherever `null` is valid, and a value
/// inserted inside a string is fully escaped, this guarantees that [`render`] produces
/// valid JSON for any values. Text, XML and HTML templates are only checked for
/// placeholder syntax (XML bodies may legitimately be fragments).
pub fn check(template: &str, kind: ContentKind) -> Result<(), TemplateError> {
    match kind {
        ContentKind::Json => render_json(template, &parse(template)?, &Map::new()).map(|_| ()),
        _ => parse(template).map(|_| ()),
    }
}

/// Fills a template from `ctx` (the request's parameters), escaping for `kind`.
///
/// - Json: inside a string literal, the value's text is inserted JSON-escaped without
///   quotes (strings as their raw text, other values as their JSON text, null or
///   missing as nothing); outside a string the JSON value itself is inserted (missing
///   → `null`). The output is verified to parse, as a safety net for templates that
///   bypassed [`check`].
/// - Xml/Html: the value's text with `& < > " '` escaped, and characters XML forbids
///   (most C0 controls) replaced by U+FFFD; null or missing → nothing.
/// - Text: the value's text unescaped; null or missing → nothing.
pub fn render(
    template: &str,
    kind: ContentKind,
    ctx: &Map<String, Value>,
) -> Result<String, TemplateError> {
    let pieces = parse(template)?;
    if kind == ContentKind::Json {
        return render_json(template, &pieces, ctx);
    }
    let mut out = String::with_capacity(template.len());
    for piece in pieces {
        match piece {
            Piece::Lit { text, .. } => out.push_str(text),
            Piece::Ph { name, .. } => {
                let text = value_text(lookup_path(ctx, name));
                if kind == ContentKind::Text {
                    out.push_str(&text);
                } else {
                    escape_markup_into(&mut out, &text);
                }
            }
        }
    }
    Ok(out)
}

/// The text form of a value for text contexts: strings without quotes, null and
/// missing as nothing (so "Hello {{name}}" never shows "null"), others as JSON text.
fn value_text(v: Option<&Value>) -> std::borrow::Cow<'_, str> {
    match v {
        None | Some(Value::Null) => "".into(),
        Some(Value::String(s)) => s.as_str().into(),
        Some(other) => other.to_string().into(),
    }
}

/// Where a stretch of rendered JSON came from, for mapping parse errors back to the
/// template.
struct Segment {
    out_start: usize,
    tpl_offset: usize,
    literal: bool,
}

fn render_json(
    template: &str,
    pieces: &[Piece<'_>],
    ctx: &Map<String, Value>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut segments = Vec::with_capacity(pieces.len());
    let mut in_string = false;
    let mut escaped = false;
    for piece in pieces {
        match *piece {
            Piece::Lit { text, offset } => {
                segments.push(Segment {
                    out_start: out.len(),
                    tpl_offset: offset,
                    literal: true,
                });
                out.push_str(text);
                // Bytes are enough: '"' and '\\' are ASCII and never occur inside a
                // multi-byte UTF-8 sequence.
                for &b in text.as_bytes() {
                    if !in_string {
                        in_string = b == b'"';
                    } else if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                }
            }
            Piece::Ph { name, offset } => {
                if in_string && escaped {
                    return Err(TemplateError::PlaceholderAfterBackslash { offset });
                }
                segments.push(Segment {
                    out_start: out.len(),
                    tpl_offset: offset,
                    literal: false,
                });
                let v = lookup_path(ctx, name);
                if in_string {
                    escape_json_into(&mut out, &value_text(v));
                } else {
                    match v {
                        Some(v) => out.push_str(&v.to_string()),
                        None => out.push_str("null"),
                    }
                }
            }
        }
    }
    match serde_json::from_str::<Value>(&out) {
        Ok(_) => Ok(out),
        Err(e) => Err(TemplateError::InvalidJson(describe_json_error(
            template, &out, &segments, &e,
        ))),
    }
}

/// Appends `s` escaped as the contents of a JSON string literal (no quotes).
fn escape_json_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Appends `s` escaped for XML/HTML text and attribute values. `&#39;` rather than
/// `&apos;` because the latter is not an HTML 4 entity.
fn escape_markup_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push(char::REPLACEMENT_CHARACTER)
            }
            c => out.push(c),
        }
    }
}

/// Turns a serde_json error on the rendered output into a message pointing at the
/// template (line, column in characters, and byte offset), since the user edits the
/// template, not the rendering.
fn describe_json_error(
    template: &str,
    out: &str,
    segments: &[Segment],
    e: &serde_json::Error,
) -> String {
    // serde_json reports a 1-based line and a byte column that points just past the
    // offending byte; column 0 means the offending byte was the preceding newline.
    let mut line_start = 0;
    for _ in 1..e.line() {
        match out[line_start..].find('\n') {
            Some(p) => line_start += p + 1,
            None => break,
        }
    }
    let out_off = (line_start + e.column()).saturating_sub(1).min(out.len());

    let idx = segments.partition_point(|s| s.out_start <= out_off);
    let mut tpl_off = match idx.checked_sub(1).map(|i| &segments[i]) {
        Some(s) if s.literal => s.tpl_offset + (out_off - s.out_start),
        Some(s) => s.tpl_offset,
        None => 0,
    }
    .min(template.len());
    while !template.is_char_boundary(tpl_off) {
        tpl_off -= 1;
    }

    let tpl_line_start = template[..tpl_off].rfind('\n').map_or(0, |p| p + 1);
    let line = template[..tpl_off].matches('\n').count() + 1;
    let column = template[tpl_line_start..tpl_off].chars().count() + 1;

    let full = e.to_string();
    let msg = match full.rfind(" at line ") {
        Some(p) => &full[..p],
        None => full.as_str(),
    };
    format!("{msg} at line {line} column {column} (byte {tpl_off}) of the template")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn json_render(t: &str, c: Value) -> Value {
        check(t, ContentKind::Json).unwrap();
        let out = render(t, ContentKind::Json, &ctx(c)).unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON {out:?}: {e}"))
    }

    #[test]
    fn content_kinds() {
        use ContentKind::*;
        for (ct, k) in [
            ("application/json", Some(Json)),
            ("Application/JSON; charset=utf-8", Some(Json)),
            ("application/problem+json", Some(Json)),
            ("application/vnd.api+json ; x=y", Some(Json)),
            ("text/plain", Some(Text)),
            ("TEXT/PLAIN;charset=latin1", Some(Text)),
            ("application/xml", Some(Xml)),
            ("text/xml; charset=utf-8", Some(Xml)),
            ("application/atom+xml", Some(Xml)),
            ("text/html", Some(Html)),
            ("text/csv", None),
            ("application/octet-stream", None),
            ("json", None),
            ("", None),
            ("/json", None),
            ("+json", None),
            ("text/", None),
            ("text/plain\r\nContent-Length: 0", None),
            ("text/plain; charset=utf-8\n", None),
        ] {
            assert_eq!(ContentKind::from_content_type(ct), k, "{ct}");
        }
        assert_eq!(
            ContentKind::from_content_type(Json.default_content_type()),
            Some(Json)
        );
        assert_eq!(
            ContentKind::from_content_type(Html.default_content_type()),
            Some(Html)
        );
    }

    #[test]
    fn placeholder_syntax() {
        assert_eq!(
            placeholders("a {{x}} b {{ customer.email }} {{x}}{{\ty\n}}").unwrap(),
            vec!["x", "customer.email", "y"]
        );
        assert_eq!(
            placeholders("no placeholders } { }} {").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(placeholders("").unwrap(), Vec::<String>::new());
        assert_eq!(placeholders("{{{a}}}").unwrap(), vec!["a"]);
    }

    #[test]
    fn unterminated_and_empty() {
        assert_eq!(
            placeholders("ab{{x"),
            Err(TemplateError::Unterminated { offset: 2 })
        );
        assert_eq!(
            placeholders("{{x}"),
            Err(TemplateError::Unterminated { offset: 0 })
        );
        assert_eq!(
            placeholders("{{"),
            Err(TemplateError::Unterminated { offset: 0 })
        );
        assert_eq!(
            placeholders("é{{a {{b}}"),
            Err(TemplateError::Unterminated { offset: 2 })
        );
        assert_eq!(
            placeholders("x{{}}"),
            Err(TemplateError::EmptyPlaceholder { offset: 1 })
        );
        assert_eq!(
            placeholders("{{  }}"),
            Err(TemplateError::EmptyPlaceholder { offset: 0 })
        );
        assert_eq!(
            placeholders("{{a}b}}"),
            Err(TemplateError::InvalidName {
                offset: 0,
                name: "a}b".into()
            })
        );
        for kind in [
            ContentKind::Json,
            ContentKind::Text,
            ContentKind::Xml,
            ContentKind::Html,
        ] {
            assert!(check("{{x", kind).is_err());
            assert!(render("\"{{x\"", kind, &Map::new()).is_err());
        }
        let msg = TemplateError::Unterminated { offset: 3 }.to_string();
        assert_eq!(
            msg,
            "unterminated placeholder: '{{' at byte 3 has no closing '}}'"
        );
    }

    #[test]
    fn text_rendering() {
        let c = ctx(json!({
            "name": "Zoë \"Z\" <b>",
            "n": 42,
            "ok": true,
            "nil": null,
            "customer": {"email": "a@b.c", "tags": ["x"]},
        }));
        let out = render(
            "Hi {{name}}, {{ n }} {{ok}} [{{nil}}] [{{missing}}] {{customer.email}} {{customer.tags}} {{{n}}}",
            ContentKind::Text,
            &c,
        )
        .unwrap();
        assert_eq!(out, "Hi Zoë \"Z\" <b>, 42 true [] [] a@b.c [\"x\"] {42}");
        assert_eq!(
            render("{{customer}}", ContentKind::Text, &c).unwrap(),
            r#"{"email":"a@b.c","tags":["x"]}"#
        );
    }

    #[test]
    fn xml_and_html_escaping() {
        let c = ctx(json!({
            "v": "<a href=\"x\">Tom & 'Jerry'</a>",
            "o": {"k": "<&>"},
            "ctl": "a\u{0}b\u{1b}c\td\ne",
            "emoji": "🎉",
        }));
        let expected = "<r a=\"&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;\">\
                        {&quot;k&quot;:&quot;&lt;&amp;&gt;&quot;}</r>";
        for kind in [ContentKind::Xml, ContentKind::Html] {
            assert_eq!(
                render("<r a=\"{{v}}\">{{o}}</r>", kind, &c).unwrap(),
                expected
            );
            assert_eq!(render("<x>{{missing}}</x>", kind, &c).unwrap(), "<x></x>");
            assert_eq!(
                render("{{ctl}}", kind, &c).unwrap(),
                "a\u{fffd}b\u{fffd}c\td\ne"
            );
            assert_eq!(render("{{emoji}}", kind, &c).unwrap(), "🎉");
        }
        // Literal template text is not escaped.
        assert_eq!(
            render("<a>&amp;</a>", ContentKind::Xml, &Map::new()).unwrap(),
            "<a>&amp;</a>"
        );
    }

    #[test]
    fn json_whole_value_placeholders() {
        let v = json_render(
            r#"{"id": {{order_id}}, "c": {{customer}}, "t": {{tags}}, "ok": {{ok}}, "m": {{missing}}, "s": {{name}}, "nil": {{nil}}}"#,
            json!({
                "order_id": 17,
                "customer": {"email": "a\"b@c", "n": [1, 2]},
                "tags": ["a", "b"],
                "ok": false,
                "name": "He said \"hi\"\n",
                "nil": null,
            }),
        );
        assert_eq!(
            v,
            json!({
                "id": 17,
                "c": {"email": "a\"b@c", "n": [1, 2]},
                "t": ["a", "b"],
                "ok": false,
                "m": null,
                "s": "He said \"hi\"\n",
                "nil": null,
            })
        );
        // Object key order is preserved in the output.
        let out = render(
            "{{o}}",
            ContentKind::Json,
            &ctx(json!({"o": {"z": 1, "a": 2}})),
        )
        .unwrap();
        assert_eq!(out, r#"{"z":1,"a":2}"#);
        // The whole template may be one placeholder.
        assert_eq!(json_render("{{x}}", json!({"x": "s"})), json!("s"));
        assert_eq!(json_render(" {{x}} ", json!({})), Value::Null);
    }

    #[test]
    fn json_in_string_placeholders_with_hostile_values() {
        let hostile = [
            json!("plain"),
            json!("quote \" inside"),
            json!("backslash \\ and \\\" and trailing \\"),
            json!("new\nline\r\ttab"),
            json!("control \u{0} \u{1f} \u{7f} \u{8} \u{c}"),
            json!("emoji 🎉 and ünïcödé and \u{2028}"),
            json!("\"}, \"injected\": true, \"x\": \""),
            json!(12.5),
            json!(true),
            json!({"a": "q\"", "b": [1, "\\"]}),
            json!(["x", null]),
            Value::Null,
        ];
        let t = r#"{"msg": "Order {{v}} received", "raw": "{{v}}", "esc": "a\"{{ v }}\\", "k{{v}}": 1}"#;
        for v in hostile {
            let out = json_render(t, json!({ "v": v.clone() }));
            let text = match &v {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(out["raw"], json!(text), "{v}");
            assert_eq!(out["msg"], json!(format!("Order {text} received")));
            assert_eq!(out["esc"], json!(format!("a\"{text}\\")));
            assert_eq!(out[format!("k{text}")], json!(1));
            assert_eq!(out.as_object().unwrap().len(), 4, "injection via {v}");
        }
    }

    #[test]
    fn json_string_tracking_handles_escapes() {
        // Braces and escaped quotes in literals do not confuse the scanner: after
        // `"a\"b"` we are outside a string again.
        let v = json_render(
            r#"{"a\"b": {{x}}, "c\\": "{{x}}", "d": "\u0041{{x}}"}"#,
            json!({"x": "q\""}),
        );
        assert_eq!(v, json!({"a\"b": "q\"", "c\\": "q\"", "d": "Aq\""}));
        // A placeholder right after a backslash is refused.
        assert_eq!(
            check(r#"{"a": "\{{x}}u0041"}"#, ContentKind::Json),
            Err(TemplateError::PlaceholderAfterBackslash { offset: 8 })
        );
        // ...but only inside strings; outside it is just invalid JSON.
        assert!(matches!(
            check(r#"\{{x}}"#, ContentKind::Json),
            Err(TemplateError::InvalidJson(_))
        ));
    }

    #[test]
    fn check_rejects_invalid_json_templates() {
        for bad in [
            "",
            "{",
            r#"{"a": }"#,
            r#"{"a": {{x}} {{y}}}"#,
            r#"{"a": "{{x}}}"#,
            r#"{"a": -{{x}}}"#,
            r#"{"a": 1,}"#,
            r#"{"a": "x" "b": 1}"#,
            r#"[1 {{x}}]"#,
            r#"{{{k}}: 1}"#,
            "{\"a\": \"line\nbreak\"}",
            "plain text {{x}}",
        ] {
            let r = check(bad, ContentKind::Json);
            assert!(
                matches!(r, Err(TemplateError::InvalidJson(_))),
                "{bad:?}: {r:?}"
            );
        }
        for good in [
            r#"{"a": {{x}}}"#,
            r#"[{{x}}, "{{y}}", {"z": [{{x}}]}]"#,
            "  {\n  \"a\": {{ x }}\n}\n",
            "{{x}}",
            r#""{{x}}""#,
            "{\"a\":{\"b\":{{x}}}}",
        ] {
            assert_eq!(check(good, ContentKind::Json), Ok(()), "{good}");
        }
        // Non-JSON kinds only check placeholder syntax.
        assert_eq!(check("<a>{{x}}<b>", ContentKind::Xml), Ok(()));
        assert_eq!(check("{ not json {{x}}", ContentKind::Text), Ok(()));
    }

    #[test]
    fn json_error_points_into_the_template() {
        let t = "{\n  \"ok\": {{x}},\n  \"bad\": tru\n}";
        let Err(TemplateError::InvalidJson(msg)) = check(t, ContentKind::Json) else {
            panic!("expected InvalidJson");
        };
        let bad_pos = t.find("tru").unwrap();
        assert_eq!(
            msg,
            "expected ident at line 3 column 13 (byte 29) of the template"
        );
        assert!(msg.contains("of the template"), "{msg}");
        let byte: usize = msg
            .split("(byte ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no byte offset in {msg}"));
        assert!(
            (bad_pos..=bad_pos + 4).contains(&byte),
            "{byte} vs {bad_pos}: {msg}"
        );

        // An error located in a placeholder's output points at the placeholder.
        let t = "[1, 2] {{x}}";
        let Err(TemplateError::InvalidJson(msg)) = check(t, ContentKind::Json) else {
            panic!("expected InvalidJson");
        };
        assert!(msg.contains("(byte 7)"), "{msg}");

        // Multi-byte characters before the error do not break the mapping.
        let t = "{\"é🎉\": 1 2}";
        let Err(TemplateError::InvalidJson(msg)) = check(t, ContentKind::Json) else {
            panic!("expected InvalidJson");
        };
        assert_eq!(
            msg,
            "expected `,` or `}` at line 1 column 10 (byte 13) of the template"
        );
    }

    #[test]
    fn dotted_and_dot_keys_in_templates() {
        let c = ctx(json!({"customer": {"email": "e@x"}, "a.b": "dot"}));
        assert_eq!(
            render("{{customer.email}}|{{ a.b }}", ContentKind::Text, &c).unwrap(),
            "e@x|dot"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let c = ctx(json!({"x": "v"}));
        for t in [
            "{",
            "}",
            "{{",
            "}}",
            "{{{",
            "}}}",
            "{{{{x}}}}",
            "é{{x}}é",
            "{{é}}",
            "🎉{{",
            "{{🎉}}}",
            "\\",
            "\"",
            "\"\\",
            "{{x}}\\",
            "{ {x} }",
            "{{\u{0}}}",
        ] {
            for kind in [
                ContentKind::Json,
                ContentKind::Text,
                ContentKind::Xml,
                ContentKind::Html,
            ] {
                let _ = render(t, kind, &c);
                let _ = check(t, kind);
                let _ = placeholders(t);
            }
        }
        assert_eq!(render("{{{{x}}}}", ContentKind::Text, &c).unwrap(), "{{v}}");
    }
}
