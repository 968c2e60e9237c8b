//! Request validation against a workflow's parameter list.
//!
//! A workflow declares parameters as rows `(name, source, type, required, strict)`.
//! Before an event is accepted, [`validate`] checks that every required parameter is
//! present and, for parameters in strict mode only, that its value fits the declared
//! type. The HTTP layer turns a [`ValidationError`] into a 400 with
//! [`ValidationError::to_json`].
//!
//! Types guide, they do not block: real senders vary (a field that was `null` in the
//! sample is an object in the next delivery, a zip code is `"60517"` once and `""`
//! the next time), so by default a value of another type is accepted and stored as
//! received. [`coerce`] converts a value to the declared type only when nothing is
//! lost (`"42"` → `42`, but `"007"`, `""` and `"94070 "` stay strings).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value};

/// The most parameters a workflow may have, body, query and header together.
/// Every request is checked against the whole list on the listener's main
/// thread, which serves all tenants, so the list is bounded; sql/api.sql holds
/// `webhook.parameters` to the same number.
pub const MAX_PARAMETERS: usize = 1000;

/// The longest parameter name, in bytes (sql/api.sql holds the table to it
/// too). A dotted name is resolved by trying each of its dots as a split
/// point, so its length bounds the cost of every lookup.
pub const MAX_NAME_BYTES: usize = 256;

/// Where a parameter is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Body,
    Query,
    Header,
}

impl Source {
    /// The spelling stored in `webhook.parameters.source`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Body => "body",
            Source::Query => "query",
            Source::Header => "header",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = ParseEnumError;

    /// Case-insensitive and trimmed, because the value may come from hand-written SQL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "body" => Ok(Source::Body),
            "query" => Ok(Source::Query),
            "header" => Ok(Source::Header),
            _ => Err(ParseEnumError {
                kind: "source",
                value: s.to_owned(),
                expected: "body, query, header",
            }),
        }
    }
}

/// The declared type of a parameter (shared with the inference module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Text,
    Number,
    Boolean,
    Object,
    Array,
    /// Sampled from `null`: says nothing about the type, accepts every value.
    Any,
}

impl ParamType {
    /// The spelling stored in `webhook.parameters.type`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ParamType::Text => "text",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Object => "object",
            ParamType::Array => "array",
            ParamType::Any => "any",
        }
    }

    /// The type a sample value implies. `null` says nothing about the type: `any`
    /// (GitHub's `head_commit` is null in one push and an object in the next).
    pub fn of_json(v: &Value) -> ParamType {
        match v {
            Value::Null => ParamType::Any,
            Value::String(_) => ParamType::Text,
            Value::Bool(_) => ParamType::Boolean,
            Value::Number(_) => ParamType::Number,
            Value::Array(_) => ParamType::Array,
            Value::Object(_) => ParamType::Object,
        }
    }

    /// Noun phrase for error messages: "must be a number", "must be text".
    fn noun(&self) -> &'static str {
        match self {
            ParamType::Text => "text",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean",
            ParamType::Object => "an object",
            ParamType::Array => "an array",
            ParamType::Any => "any value",
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParamType {
    type Err = ParseEnumError;

    /// Case-insensitive and trimmed, because the value may come from hand-written SQL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(ParamType::Text),
            "number" => Ok(ParamType::Number),
            "boolean" => Ok(ParamType::Boolean),
            "object" => Ok(ParamType::Object),
            "array" => Ok(ParamType::Array),
            "any" => Ok(ParamType::Any),
            _ => Err(ParseEnumError {
                kind: "type",
                value: s.to_owned(),
                expected: "text, number, boolean, object, array, any",
            }),
        }
    }
}

/// A string that is not a known [`Source`] or [`ParamType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter {kind} '{value}' (expected one of: {expected})")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// One row of a workflow's parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub source: Source,
    pub ty: ParamType,
    pub required: bool,
    /// Refuse a value whose type differs from `ty` (400) instead of storing it
    /// as received.
    pub strict: bool,
    /// In strict mode, whether an explicit `null` is acceptable (a required
    /// parameter that is null is missing either way).
    pub nullable: bool,
    /// With an event discriminator: the event types this parameter is required
    /// for (exact, or a prefix ending in `*`); `None` means every event.
    pub required_for: Option<Vec<String>>,
}

impl ParamSpec {
    /// Whether the parameter is required for an event of this type (the
    /// discriminator's value; `None` when the workflow has none or the request
    /// does not carry it, in which case scoped requirements do not apply).
    pub fn required_for_event(&self, event_type: Option<&str>) -> bool {
        if !self.required {
            return false;
        }
        match (&self.required_for, event_type) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(event)) => patterns.iter().any(|p| event_matches(p, event)),
        }
    }
}

/// `push` matches `push`; `payment_intent.*` matches `payment_intent.succeeded`.
pub fn event_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => pattern == event,
    }
}

/// The parsed parts of one request. Header keys are expected in lower case (HTTP
/// header names are case-insensitive); lookups fall back to a case-insensitive match.
#[derive(Debug, Clone, Copy)]
pub struct RequestParams<'a> {
    pub body: &'a Map<String, Value>,
    pub query: &'a Map<String, Value>,
    pub headers: &'a Map<String, Value>,
}

impl<'a> RequestParams<'a> {
    /// The value a parameter refers to, using the same rules as [`validate`], so the
    /// caller can build `events.params` consistently with what was validated.
    ///
    /// Body and query parameters stand in for each other: a sender may deliver
    /// the same fields as a POST body or as a GET query string (Twilio does
    /// both), whichever the sample came from. The declared source wins.
    pub fn get(&self, source: Source, name: &str) -> Option<&'a Value> {
        // Each map is searched once: a dotted name costs a lookup per dot.
        let declared_first = |own: &'a Map<String, Value>, other: &'a Map<String, Value>| {
            let found = lookup_path(own, name);
            found
                .filter(|v| !v.is_null())
                .or_else(|| lookup_path(other, name))
                .or(found)
        };
        match source {
            Source::Body => declared_first(self.body, self.query),
            Source::Query => declared_first(self.query, self.body),
            Source::Header => lookup_header(self.headers, name),
        }
    }
}

/// Why a request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Required parameters that are absent or null, in parameter-list order.
    #[error("Missing required parameter(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    /// The first present parameter whose value does not fit its declared type.
    #[error("Parameter '{name}' must be {}", expected.noun())]
    WrongType {
        name: String,
        expected: ParamType,
        /// JSON type name of the value received: null, boolean, number, string,
        /// object or array.
        found: String,
    },
}

impl ValidationError {
    /// The 400 response body. The `Missing` shape and text are part of the HTTP
    /// contract (docs/http.md) and must stay byte-for-byte stable.
    pub fn to_json(&self) -> Value {
        match self {
            ValidationError::Missing(names) => json!({
                "msg": "Missing required parameter(s)",
                "missing": names,
            }),
            ValidationError::WrongType {
                name,
                expected,
                found,
            } => json!({
                "msg": self.to_string(),
                "parameter": name,
                "expected": expected.as_str(),
                "found": found,
            }),
        }
    }
}

/// JSON type name of a value, as reported in [`ValidationError::WrongType::found`].
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks a request against a parameter list.
///
/// All missing required parameters are reported together (so the caller can fix the
/// request in one go); only when none is missing are the types of strict parameters
/// checked, and then the first mismatch in parameter-list order is reported.
///
/// A parameter is missing when it is absent or JSON `null`. An empty string counts as
/// present: `?note=` or an empty form field is an explicit value sent by the caller,
/// JSON bodies can legitimately carry `""`, and treating it as absent would make it
/// impossible to send an intentionally empty required text. (In strict mode a number
/// or boolean that arrives as `""` still fails the type check.)
///
/// `event_type` is the value of the workflow's event discriminator, if any: it
/// decides which scoped requirements apply ([`ParamSpec::required_for_event`]).
pub fn validate(
    spec: &[ParamSpec],
    req: &RequestParams,
    event_type: Option<&str>,
) -> Result<(), ValidationError> {
    // A name declared in several sources is reported once. The set keeps this
    // linear in the list: the listener's main thread runs it for every request.
    let mut missing: Vec<String> = Vec::new();
    let mut reported: HashSet<&str> = HashSet::new();
    for p in spec.iter().filter(|p| p.required_for_event(event_type)) {
        let present = matches!(req.get(p.source, &p.name), Some(v) if !v.is_null());
        if !present && reported.insert(&p.name) {
            missing.push(p.name.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ValidationError::Missing(missing));
    }

    for p in spec.iter().filter(|p| p.strict) {
        let Some(v) = req.get(p.source, &p.name) else {
            continue;
        };
        if (v.is_null() && p.nullable) || accepts(p.ty, v) {
            continue;
        }
        return Err(ValidationError::WrongType {
            name: p.name.clone(),
            expected: p.ty,
            found: json_type_name(v).to_owned(),
        });
    }
    Ok(())
}

/// Whether a non-null value is acceptable for a declared type.
///
/// Strings that spell a number or boolean are accepted from every source: query,
/// header and form values are always strings, and the validator cannot tell a form
/// body from a JSON body, so the same leniency applies to JSON bodies. For the same
/// reason a single string is accepted as a one-element array (`?tag=a` versus
/// `?tag=a&tag=b`).
fn accepts(ty: ParamType, v: &Value) -> bool {
    match ty {
        ParamType::Text => matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)),
        ParamType::Number => match v {
            Value::Number(_) => true,
            Value::String(s) => parse_number(s).is_some(),
            _ => false,
        },
        ParamType::Boolean => match v {
            Value::Bool(_) => true,
            Value::String(s) => parse_bool(s).is_some(),
            _ => false,
        },
        ParamType::Object => v.is_object(),
        ParamType::Array => matches!(v, Value::Array(_) | Value::String(_)),
        ParamType::Any => true,
    }
}

/// Strict JSON number syntax (no `+`, no leading zeros, no `NaN`/`Infinity`, no hex),
/// after trimming; the result must be finite. Reusing serde_json's parser keeps the
/// accepted syntax identical to what a JSON body would accept.
fn parse_number(s: &str) -> Option<serde_json::Number> {
    let t = s.trim();
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => Some(n),
        _ => None,
    }
}

/// `true`/`false`, case-insensitive and trimmed.
fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The value converted to its declared type, for storing in `events.params`, so
/// handlers see `42` rather than `"42"` whatever the transport was, but only
/// when the conversion loses nothing: converting back gives the same text.
///
/// - number: a string spelled exactly as a JSON number becomes that number
///   (`"42"`, `"-2.5"`; not `"007"`, `"+1"`, `" 42"` or `""`);
/// - boolean: `"true"` / `"false"` become booleans (not `"TRUE"`);
/// - text: numbers and booleans become their JSON text (`42` → `"42"`), so a text
///   parameter is always a string in `params`;
/// - array: a single string becomes a one-element array (`?tag=a` versus
///   `?tag=a&tag=b`).
///
/// Anything else (other types, null, `any`) is returned unchanged: stored as
/// received.
pub fn coerce(value: &Value, ty: ParamType) -> Value {
    match (ty, value) {
        (ParamType::Number, Value::String(s)) => match parse_number(s) {
            Some(n) if s.trim() == s && n.to_string() == *s => Value::Number(n),
            _ => value.clone(),
        },
        (ParamType::Boolean, Value::String(s)) if s == "true" || s == "false" => {
            Value::Bool(s == "true")
        }
        (ParamType::Text, Value::Number(n)) => Value::String(n.to_string()),
        (ParamType::Text, Value::Bool(b)) => Value::String(b.to_string()),
        (ParamType::Array, Value::String(_)) => Value::Array(vec![value.clone()]),
        _ => value.clone(),
    }
}

/// Finds a possibly dotted parameter name in a JSON object.
///
/// An exact key wins (form and query keys such as `"a.b"` may themselves contain a
/// dot); otherwise the name is split at a dot and the walk continues into nested
/// objects. Every split point is tried, shortest prefix first, so keys containing dots
/// are found at any depth: `"a.b.c"` matches `{"a.b":{"c":1}}` as well as
/// `{"a":{"b":{"c":1}}}`. Arrays are not indexed.
pub fn lookup_path<'v>(map: &'v Map<String, Value>, dotted: &str) -> Option<&'v Value> {
    if let Some(v) = map.get(dotted) {
        return Some(v);
    }
    for (i, _) in dotted.match_indices('.') {
        let (head, rest) = (&dotted[..i], &dotted[i + 1..]);
        if let Some(Value::Object(inner)) = map.get(head) {
            if let Some(v) = lookup_path(inner, rest) {
                return Some(v);
            }
        }
    }
    None
}

/// Header lookup: exact key first, then case-insensitive, because header names are
/// case-insensitive and a caller may not have normalised the map.
fn lookup_header<'v>(headers: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    headers.get(name).or_else(|| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn p(name: &str, source: Source, ty: ParamType, required: bool) -> ParamSpec {
        ParamSpec {
            name: name.to_owned(),
            source,
            ty,
            required,
            strict: true,
            nullable: true,
            required_for: None,
        }
    }

    fn run(
        spec: &[ParamSpec],
        body: Value,
        query: Value,
        headers: Value,
    ) -> Result<(), ValidationError> {
        let (b, q, h) = (obj(body), obj(query), obj(headers));
        validate(
            spec,
            &RequestParams {
                body: &b,
                query: &q,
                headers: &h,
            },
            None,
        )
    }

    fn body_only(spec: &[ParamSpec], body: Value) -> Result<(), ValidationError> {
        run(spec, body, json!({}), json!({}))
    }

    fn one(ty: ParamType, v: Value) -> Result<(), ValidationError> {
        body_only(&[p("x", Source::Body, ty, true)], json!({ "x": v }))
    }

    fn wrong(name: &str, expected: ParamType, found: &str) -> Result<(), ValidationError> {
        Err(ValidationError::WrongType {
            name: name.to_owned(),
            expected,
            found: found.to_owned(),
        })
    }

    #[test]
    fn enums_round_trip() {
        for s in [Source::Body, Source::Query, Source::Header] {
            assert_eq!(s.as_str().parse::<Source>().unwrap(), s);
        }
        for t in [
            ParamType::Text,
            ParamType::Number,
            ParamType::Boolean,
            ParamType::Object,
            ParamType::Array,
        ] {
            assert_eq!(t.as_str().parse::<ParamType>().unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(" Header ".parse::<Source>().unwrap(), Source::Header);
        assert_eq!("NUMBER".parse::<ParamType>().unwrap(), ParamType::Number);
        assert!("cookie".parse::<Source>().is_err());
        let e = "integer".parse::<ParamType>().unwrap_err();
        assert!(e.to_string().contains("'integer'"), "{e}");
    }

    #[test]
    fn of_json() {
        assert_eq!(ParamType::of_json(&Value::Null), ParamType::Any);
        assert_eq!(ParamType::of_json(&json!("a")), ParamType::Text);
        assert_eq!(ParamType::of_json(&json!(1.5)), ParamType::Number);
        assert_eq!(ParamType::of_json(&json!(false)), ParamType::Boolean);
        assert_eq!(ParamType::of_json(&json!({})), ParamType::Object);
        assert_eq!(ParamType::of_json(&json!([])), ParamType::Array);
    }

    #[test]
    fn missing_json_is_exact() {
        let e = ValidationError::Missing(vec!["a".into(), "b".into()]);
        assert_eq!(
            serde_json::to_string(&e.to_json()).unwrap(),
            r#"{"msg":"Missing required parameter(s)","missing":["a","b"]}"#
        );
    }

    #[test]
    fn wrong_type_json() {
        let e = ValidationError::WrongType {
            name: "amount".into(),
            expected: ParamType::Number,
            found: "string".into(),
        };
        assert_eq!(
            serde_json::to_string(&e.to_json()).unwrap(),
            r#"{"msg":"Parameter 'amount' must be a number","parameter":"amount","expected":"number","found":"string"}"#
        );
        let e = ValidationError::WrongType {
            name: "o".into(),
            expected: ParamType::Object,
            found: "array".into(),
        };
        assert_eq!(e.to_json()["msg"], "Parameter 'o' must be an object");
    }

    #[test]
    fn reports_all_missing_in_list_order_once() {
        let spec = [
            p("b", Source::Body, ParamType::Text, true),
            p("opt", Source::Body, ParamType::Text, false),
            p("a", Source::Query, ParamType::Text, true),
            p("present", Source::Body, ParamType::Number, true),
            p("x-sig", Source::Header, ParamType::Text, true),
            p("b", Source::Query, ParamType::Text, true),
        ];
        let r = run(
            &spec,
            json!({"present": "not a number", "c": "only in body"}),
            json!({}),
            json!({}),
        );
        // Missing is reported before the type error on "present".
        assert_eq!(
            r,
            Err(ValidationError::Missing(vec![
                "b".into(),
                "a".into(),
                "x-sig".into()
            ]))
        );
        let json = serde_json::to_string(&r.unwrap_err().to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"msg":"Missing required parameter(s)","missing":["b","a","x-sig"]}"#
        );
    }

    #[test]
    fn a_long_missing_list_is_exact_and_in_list_order() {
        // Far more than a workflow may have (MAX_PARAMETERS): the check must
        // stay linear whatever the list. Every tenth name is declared again
        // further down as a header, and some optional parameters are mixed in:
        // each missing name is reported once, where it is first declared.
        let n = 100_000;
        let mut spec = Vec::new();
        for i in 0..n {
            spec.push(p(
                &format!("param_{i}"),
                Source::Body,
                ParamType::Text,
                true,
            ));
            if i % 10 == 9 {
                let earlier = format!("param_{}", i - 5);
                spec.push(p(&earlier, Source::Header, ParamType::Text, true));
            }
            if i % 1000 == 0 {
                spec.push(p(
                    &format!("opt_{i}"),
                    Source::Query,
                    ParamType::Text,
                    false,
                ));
            }
        }
        let expected: Vec<String> = (0..n).map(|i| format!("param_{i}")).collect();
        assert_eq!(
            body_only(&spec, json!({})),
            Err(ValidationError::Missing(expected))
        );
    }

    #[test]
    fn null_is_missing_empty_string_is_present() {
        let spec = [p("a", Source::Body, ParamType::Text, true)];
        assert_eq!(
            body_only(&spec, json!({"a": null})),
            Err(ValidationError::Missing(vec!["a".into()]))
        );
        assert_eq!(body_only(&spec, json!({"a": ""})), Ok(()));
        // ...but an empty string is not a number.
        assert_eq!(
            one(ParamType::Number, json!("")),
            wrong("x", ParamType::Number, "string")
        );
    }

    #[test]
    fn optional_absent_or_null_is_fine() {
        let spec = [p("n", Source::Body, ParamType::Number, false)];
        assert_eq!(body_only(&spec, json!({})), Ok(()));
        assert_eq!(body_only(&spec, json!({"n": null})), Ok(()));
        // Optional but present: type is still checked.
        assert_eq!(
            body_only(&spec, json!({"n": "abc"})),
            wrong("n", ParamType::Number, "string")
        );
    }

    #[test]
    fn sources_are_separate() {
        let spec = [
            p("id", Source::Query, ParamType::Number, true),
            p("x-token", Source::Header, ParamType::Text, true),
            p("name", Source::Body, ParamType::Text, true),
        ];
        assert_eq!(
            run(
                &spec,
                json!({"name": "n"}),
                json!({"id": "42"}),
                json!({"x-token": "t"})
            ),
            Ok(())
        );
        // Body and query stand in for each other; headers are separate.
        assert_eq!(
            run(
                &spec,
                json!({"name": "n", "id": 1}),
                json!({}),
                json!({"x-token": "t"})
            ),
            Ok(())
        );
        assert_eq!(
            run(
                &spec,
                json!({"id": 1}),
                json!({"name": "n", "x-token": "t"}),
                json!({})
            ),
            Err(ValidationError::Missing(vec!["x-token".into()]))
        );
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let spec = [p("x-token", Source::Header, ParamType::Text, true)];
        assert_eq!(
            run(&spec, json!({}), json!({}), json!({"X-Token": "t"})),
            Ok(())
        );
        let h = obj(json!({"X-Token": "a", "x-token": "b"}));
        assert_eq!(lookup_header(&h, "x-token"), Some(&json!("b")));
    }

    #[test]
    fn dotted_paths() {
        let spec = [p("customer.email", Source::Body, ParamType::Text, true)];
        assert_eq!(
            body_only(&spec, json!({"customer": {"email": "a@b.c"}})),
            Ok(())
        );
        assert_eq!(
            body_only(&spec, json!({"customer": {"name": "x"}})),
            Err(ValidationError::Missing(vec!["customer.email".into()]))
        );
        // Walking through a non-object fails cleanly.
        assert_eq!(
            body_only(&spec, json!({"customer": "str"})),
            Err(ValidationError::Missing(vec!["customer.email".into()]))
        );
        let deep = obj(json!({"a": {"b": {"c": [1, 2]}}}));
        assert_eq!(lookup_path(&deep, "a.b.c"), Some(&json!([1, 2])));
        assert_eq!(lookup_path(&deep, "a.b"), Some(&json!({"c": [1, 2]})));
        assert_eq!(lookup_path(&deep, "a.b.c.0"), None);
        assert_eq!(lookup_path(&deep, "a..b"), None);
        assert_eq!(lookup_path(&deep, ""), None);
        assert_eq!(lookup_path(&deep, "."), None);
    }

    #[test]
    fn key_containing_a_dot() {
        // The exact key wins over the nested path.
        let m = obj(json!({"a.b": 1, "a": {"b": 2}}));
        assert_eq!(lookup_path(&m, "a.b"), Some(&json!(1)));
        // Dotted keys at deeper levels.
        let m = obj(json!({"a": {"b.c": {"d": 3}}}));
        assert_eq!(lookup_path(&m, "a.b.c.d"), Some(&json!(3)));
        let m = obj(json!({"a.b": {"c": 4}}));
        assert_eq!(lookup_path(&m, "a.b.c"), Some(&json!(4)));
        // A dead end on the first split falls back to a later split.
        let m = obj(json!({"a": {"x": 1}, "a.b": {"c": 5}}));
        assert_eq!(lookup_path(&m, "a.b.c"), Some(&json!(5)));
        // Unicode keys split safely.
        let m = obj(json!({"ü": {"ß": "ok"}}));
        assert_eq!(lookup_path(&m, "ü.ß"), Some(&json!("ok")));
    }

    #[test]
    fn number_rule() {
        for ok in [
            json!(1),
            json!(-2.5),
            json!("42"),
            json!(" 1e3 "),
            json!("-0.5"),
            json!("0"),
        ] {
            assert_eq!(one(ParamType::Number, ok.clone()), Ok(()), "{ok}");
        }
        for bad in [
            "abc", "", "+1", "01", "1.", ".5", "0x10", "NaN", "Infinity", "1e400", "1 2", "[1]",
            "\"1\"",
        ] {
            assert_eq!(
                one(ParamType::Number, json!(bad)),
                wrong("x", ParamType::Number, "string"),
                "{bad}"
            );
        }
        assert_eq!(
            one(ParamType::Number, json!(true)),
            wrong("x", ParamType::Number, "boolean")
        );
        assert_eq!(
            one(ParamType::Number, json!([1])),
            wrong("x", ParamType::Number, "array")
        );
    }

    #[test]
    fn boolean_rule() {
        for ok in [
            json!(true),
            json!(false),
            json!("true"),
            json!("FALSE"),
            json!("True"),
        ] {
            assert_eq!(one(ParamType::Boolean, ok.clone()), Ok(()), "{ok}");
        }
        for (bad, found) in [
            (json!("yes"), "string"),
            (json!("1"), "string"),
            (json!(1), "number"),
            (json!({}), "object"),
        ] {
            assert_eq!(
                one(ParamType::Boolean, bad.clone()),
                wrong("x", ParamType::Boolean, found),
                "{bad}"
            );
        }
    }

    #[test]
    fn text_rule() {
        for ok in [json!("s"), json!(""), json!(3), json!(true)] {
            assert_eq!(one(ParamType::Text, ok.clone()), Ok(()), "{ok}");
        }
        assert_eq!(
            one(ParamType::Text, json!({"a": 1})),
            wrong("x", ParamType::Text, "object")
        );
        assert_eq!(
            one(ParamType::Text, json!(["a"])),
            wrong("x", ParamType::Text, "array")
        );
        assert_eq!(
            one(ParamType::Text, json!({})).unwrap_err().to_string(),
            "Parameter 'x' must be text"
        );
    }

    #[test]
    fn object_and_array_rules() {
        assert_eq!(one(ParamType::Object, json!({"a": 1})), Ok(()));
        assert_eq!(
            one(ParamType::Object, json!("{}")),
            wrong("x", ParamType::Object, "string")
        );
        assert_eq!(
            one(ParamType::Object, json!([])),
            wrong("x", ParamType::Object, "array")
        );
        assert_eq!(one(ParamType::Array, json!([1, 2])), Ok(()));
        assert_eq!(one(ParamType::Array, json!("a")), Ok(()));
        assert_eq!(
            one(ParamType::Array, json!({})),
            wrong("x", ParamType::Array, "object")
        );
        assert_eq!(
            one(ParamType::Array, json!(5)),
            wrong("x", ParamType::Array, "number")
        );
        // ?tag=a and ?tag=a&tag=b both validate.
        let spec = [p("tag", Source::Query, ParamType::Array, true)];
        assert_eq!(
            run(&spec, json!({}), json!({"tag": "a"}), json!({})),
            Ok(())
        );
        assert_eq!(
            run(&spec, json!({}), json!({"tag": ["a", "b"]}), json!({})),
            Ok(())
        );
    }

    #[test]
    fn first_type_error_in_list_order() {
        let spec = [
            p("a", Source::Body, ParamType::Text, false),
            p("b", Source::Body, ParamType::Boolean, false),
            p("c", Source::Body, ParamType::Number, true),
        ];
        assert_eq!(
            body_only(&spec, json!({"c": "x", "b": "maybe", "a": "ok"})),
            wrong("b", ParamType::Boolean, "string")
        );
    }

    #[test]
    fn coercion() {
        assert_eq!(coerce(&json!("42"), ParamType::Number), json!(42));
        assert_eq!(coerce(&json!("-1.5"), ParamType::Number), json!(-1.5));
        // Only lossless conversions: the text must be the number's own spelling.
        for kept in ["", " -1.5 ", "007", "+1", "94070 ", "1.50x", "abc", "0x10"] {
            assert_eq!(
                coerce(&json!(kept), ParamType::Number),
                json!(kept),
                "{kept:?}"
            );
        }
        // An exponent is spelled differently once a number: kept as text.
        assert_eq!(coerce(&json!("1e2"), ParamType::Number), json!("1e2"));
        assert_eq!(coerce(&json!(7), ParamType::Number), json!(7));
        assert_eq!(coerce(&json!("TRUE"), ParamType::Boolean), json!("TRUE"));
        assert_eq!(coerce(&json!("true"), ParamType::Boolean), json!(true));
        assert_eq!(coerce(&json!({"a": 1}), ParamType::Any), json!({"a": 1}));
        assert_eq!(coerce(&json!("42"), ParamType::Any), json!("42"));
        assert_eq!(coerce(&json!("false"), ParamType::Boolean), json!(false));
        assert_eq!(coerce(&json!("no"), ParamType::Boolean), json!("no"));
        assert_eq!(coerce(&json!(12), ParamType::Text), json!("12"));
        assert_eq!(coerce(&json!(true), ParamType::Text), json!("true"));
        assert_eq!(coerce(&json!("t"), ParamType::Text), json!("t"));
        assert_eq!(coerce(&json!("a"), ParamType::Array), json!(["a"]));
        assert_eq!(coerce(&json!(["a"]), ParamType::Array), json!(["a"]));
        assert_eq!(coerce(&json!({"k": 1}), ParamType::Object), json!({"k": 1}));
        assert_eq!(coerce(&Value::Null, ParamType::Number), Value::Null);
        assert_eq!(coerce(&json!([1]), ParamType::Text), json!([1]));
    }

    #[test]
    fn request_get_matches_validation() {
        let (b, q, h) = (
            obj(json!({"o": {"id": 1}})),
            obj(json!({"t": "x"})),
            obj(json!({"x-a": "1"})),
        );
        let r = RequestParams {
            body: &b,
            query: &q,
            headers: &h,
        };
        assert_eq!(r.get(Source::Body, "o.id"), Some(&json!(1)));
        assert_eq!(r.get(Source::Query, "t"), Some(&json!("x")));
        assert_eq!(r.get(Source::Header, "X-A"), Some(&json!("1")));
        // Body and query stand in for each other (GET and POST deliveries).
        assert_eq!(r.get(Source::Body, "t"), Some(&json!("x")));
        assert_eq!(r.get(Source::Query, "o.id"), Some(&json!(1)));
        assert_eq!(r.get(Source::Body, "x-a"), None);
        assert_eq!(r.get(Source::Header, "t"), None);
        // A null in the declared source gives way to the other source's value
        // (null too), and is what is found when the other has nothing.
        let (b, q) = (
            obj(json!({"n": null, "m": null})),
            obj(json!({"n": 1, "m": null})),
        );
        let r = RequestParams {
            body: &b,
            query: &q,
            headers: &h,
        };
        assert_eq!(r.get(Source::Body, "n"), Some(&json!(1)));
        assert_eq!(r.get(Source::Query, "n"), Some(&json!(1)));
        assert_eq!(r.get(Source::Body, "m"), Some(&Value::Null));
        let r = RequestParams {
            body: &b,
            query: &Map::new(),
            headers: &h,
        };
        assert_eq!(r.get(Source::Body, "n"), Some(&Value::Null));
        assert_eq!(r.get(Source::Query, "n"), Some(&Value::Null));
    }

    #[test]
    fn types_guide_but_do_not_block_unless_strict() {
        let lenient = |ty| ParamSpec {
            strict: false,
            ..p("x", Source::Body, ty, true)
        };
        for (ty, value) in [
            (ParamType::Text, json!({"now": "an object"})),
            (ParamType::Number, json!("tomorrow in Paris")),
            (ParamType::Number, json!("")),
            (ParamType::Object, json!("{\"a\":1}")),
            (ParamType::Boolean, json!(1)),
        ] {
            assert_eq!(
                body_only(&[lenient(ty)], json!({ "x": value.clone() })),
                Ok(()),
                "{ty} {value}"
            );
            assert!(one(ty, value).is_err());
        }
        // null is still missing for a required parameter, strict or not.
        assert_eq!(
            body_only(&[lenient(ParamType::Any)], json!({"x": null})),
            Err(ValidationError::Missing(vec!["x".into()]))
        );
        assert_eq!(one(ParamType::Any, json!([1, {"a": null}])), Ok(()));
    }

    #[test]
    fn requirements_scoped_by_event_type() {
        let scoped = |name: &str, events: &[&str]| ParamSpec {
            required_for: Some(events.iter().map(|e| e.to_string()).collect()),
            ..p(name, Source::Body, ParamType::Any, true)
        };
        let spec = [
            scoped("ref", &["push"]),
            scoped("data.object.amount", &["payment_intent.*"]),
            p("id", Source::Body, ParamType::Any, true),
        ];
        let check = |event: Option<&str>, body: Value| {
            let (b, q, h) = (obj(body), obj(json!({})), obj(json!({})));
            let view = RequestParams {
                body: &b,
                query: &q,
                headers: &h,
            };
            validate(&spec, &view, event)
        };
        assert_eq!(check(Some("ping"), json!({"id": 1})), Ok(()));
        assert_eq!(check(None, json!({"id": 1})), Ok(()));
        assert_eq!(
            check(Some("push"), json!({"id": 1})),
            Err(ValidationError::Missing(vec!["ref".into()]))
        );
        assert_eq!(
            check(
                Some("payment_intent.succeeded"),
                json!({"id": 1, "ref": "x"})
            ),
            Err(ValidationError::Missing(vec!["data.object.amount".into()]))
        );
        assert_eq!(check(Some("customer.created"), json!({"id": 1})), Ok(()));
        assert!(event_matches("payment_intent.*", "payment_intent.created"));
        assert!(!event_matches(
            "payment_intent.*",
            "payment_method.attached"
        ));
        assert!(!event_matches("push", "push_extra"));
    }
}
