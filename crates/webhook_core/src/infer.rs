//! Sample → parameter list inference.
//!
//! A sample (a JSON object, or key-value text turned into one by [`crate::kv`])
//! yields one parameter per top-level key, typed from its value. Leaves of nested
//! objects are listed too, under their dotted path (`customer.email`), so that
//! they can be marked required; they come right after their parent, depth first,
//! in the sample's key order.

use serde_json::{Map, Value};

use crate::validate::ParamType;

/// One parameter derived from a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredParam {
    /// Top-level key, or dotted path for a nested leaf.
    pub name: String,
    pub ty: ParamType,
    pub sample: Value,
    /// 0 for top-level keys, 1 for `a.b`, 2 for `a.b.c`, …
    pub depth: usize,
}

/// Lists the parameters a JSON object sample describes.
pub fn infer_parameters(sample: &Map<String, Value>) -> Vec<InferredParam> {
    let mut out = Vec::new();
    for (key, value) in sample {
        out.push(InferredParam {
            name: key.clone(),
            ty: ParamType::of_json(value),
            sample: value.clone(),
            depth: 0,
        });
        if let Value::Object(children) = value {
            push_nested_leaves(&mut out, key, children, 1);
        }
    }
    // A top-level key spelled like a dotted path ("a.b") would collide with a
    // nested leaf; the first one listed keeps the name.
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.name.clone()));
    out
}

/// How many parameters [`infer_parameters`] lists for `sample`, counted only
/// up to `limit + 1`: the walk stops there, and none of the sample's values
/// is copied, so an oversized sample is refused cheaply.
pub fn count_parameters(sample: &Map<String, Value>, limit: usize) -> usize {
    // Distinct names, as infer_parameters keeps them.
    fn walk(
        seen: &mut std::collections::HashSet<String>,
        prefix: &str,
        object: &Map<String, Value>,
        limit: usize,
    ) {
        for (key, value) in object {
            if seen.len() > limit {
                return;
            }
            let name = format!("{prefix}.{key}");
            match value {
                Value::Object(children) if !children.is_empty() => {
                    walk(seen, &name, children, limit)
                }
                _ => {
                    seen.insert(name);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (key, value) in sample {
        if seen.len() > limit {
            break;
        }
        seen.insert(key.clone());
        if let Value::Object(children) = value {
            walk(&mut seen, key, children, limit);
        }
    }
    seen.len().min(limit + 1)
}

fn push_nested_leaves(
    out: &mut Vec<InferredParam>,
    prefix: &str,
    object: &Map<String, Value>,
    depth: usize,
) {
    for (key, value) in object {
        let name = format!("{prefix}.{key}");
        match value {
            Value::Object(children) if !children.is_empty() => {
                push_nested_leaves(out, &name, children, depth + 1)
            }
            _ => out.push(InferredParam {
                name,
                ty: ParamType::of_json(value),
                sample: value.clone(),
                depth,
            }),
        }
    }
}

/// Types a value that arrived as text (key-value samples).
///
/// `true`/`false` in any case become booleans; strict JSON numbers become numbers
/// (`1e3`, `-2.5`), but `007` and `+1` stay text because leading zeros and signs
/// are meaningful in ids, zip codes and phone numbers; text that is a JSON object
/// or array becomes that value; everything else is text.
pub fn infer_scalar(text: &str) -> Value {
    if text.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if is_json_number(text) {
        if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(text) {
            // `1e3` is the integer 1000, not 1000.0, as PostgreSQL's numeric sees it.
            if let Some(f) = n.as_f64().filter(|f| {
                !text.contains('.') && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0
            }) {
                return Value::from(f as i64);
            }
            return Value::Number(n);
        }
    }
    if (text.starts_with('{') && text.ends_with('}'))
        || (text.starts_with('[') && text.ends_with(']'))
    {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            return value;
        }
    }
    Value::String(text.to_string())
}

/// The JSON number grammar (RFC 8259 §6): `-? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?`.
pub fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names_and_types(sample: Value) -> Vec<(String, &'static str, usize)> {
        let Value::Object(map) = sample else { panic!() };
        infer_parameters(&map)
            .into_iter()
            .map(|p| (p.name, p.ty.as_str(), p.depth))
            .collect()
    }

    #[test]
    fn every_type_is_inferred() {
        assert_eq!(
            names_and_types(json!({
                "s": "x", "n": 1.5, "i": 7, "b": false, "o": {}, "a": [1], "z": null
            })),
            vec![
                ("s".into(), "text", 0),
                ("n".into(), "number", 0),
                ("i".into(), "number", 0),
                ("b".into(), "boolean", 0),
                ("o".into(), "object", 0),
                ("a".into(), "array", 0),
                ("z".into(), "any", 0),
            ]
        );
    }

    #[test]
    fn nested_leaves_follow_their_parent() {
        assert_eq!(
            names_and_types(json!({
                "customer": {"email": "a@b.c", "address": {"zip": "007", "geo": [1, 2]}},
                "total": 3
            })),
            vec![
                ("customer".into(), "object", 0),
                ("customer.email".into(), "text", 1),
                ("customer.address.zip".into(), "text", 2),
                ("customer.address.geo".into(), "array", 2),
                ("total".into(), "number", 0),
            ]
        );
    }

    #[test]
    fn samples_are_kept() {
        let Value::Object(map) = json!({"a": {"b": "é"}}) else {
            panic!()
        };
        let params = infer_parameters(&map);
        assert_eq!(params[0].sample, json!({"b": "é"}));
        assert_eq!(params[1].sample, json!("é"));
    }

    #[test]
    fn counted_as_listed_up_to_the_limit() {
        for sample in [
            json!({}),
            json!({"a": 1, "b": {}, "c": {"d": {"e": 1, "f": [1]}, "g": null}}),
            // A top-level key spelled like a nested leaf is one parameter.
            json!({"a": {"b": 1}, "a.b": 2, "x": {"y": {"z": 1}}, "x.y.z": 3}),
        ] {
            let Value::Object(map) = sample else { panic!() };
            let listed = infer_parameters(&map).len();
            assert_eq!(count_parameters(&map, 1000), listed, "{map:?}");
            assert_eq!(count_parameters(&map, listed), listed);
            if listed > 0 {
                assert_eq!(count_parameters(&map, listed - 1), listed);
            }
        }
        let mut wide = Map::new();
        for i in 0..5000 {
            wide.insert(format!("k{i}"), json!({"leaf": i, "more": {"x": i}}));
        }
        assert_eq!(count_parameters(&wide, 1000), 1001);
        assert_eq!(count_parameters(&wide, 20_000), 15_000);
    }

    #[test]
    fn scalars_from_text() {
        assert_eq!(infer_scalar("007"), json!("007"));
        assert_eq!(infer_scalar("0"), json!(0));
        assert_eq!(infer_scalar("1e3"), json!(1000));
        assert_eq!(infer_scalar("1.0"), json!(1.0));
        assert_eq!(infer_scalar("2.5e1").as_f64(), Some(25.0));
        assert_eq!(infer_scalar("-0.5E-2").as_f64(), Some(-0.005));
        assert_eq!(
            infer_scalar("123456789012345678901234567890").to_string(),
            "123456789012345678901234567890"
        );
        assert_eq!(infer_scalar("+1"), json!("+1"));
        assert_eq!(infer_scalar("1."), json!("1."));
        assert_eq!(infer_scalar(".5"), json!(".5"));
        assert_eq!(infer_scalar("TRUE"), json!(true));
        assert_eq!(infer_scalar("False"), json!(false));
        assert_eq!(infer_scalar("yes"), json!("yes"));
        assert_eq!(infer_scalar(""), json!(""));
        assert_eq!(infer_scalar("null"), json!("null"));
        assert_eq!(infer_scalar("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(infer_scalar("[1,2]"), json!([1, 2]));
        assert_eq!(infer_scalar("[not json"), json!("[not json"));
    }
}
