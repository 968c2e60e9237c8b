//! How much text a parsed body turns into once it is stored, so that the size
//! limit also bounds what parsing *produces*, not only what was sent.
//!
//! The one way a body's parameters can hold far more text than the body itself
//! is a JSON number: `1e1000` is 6 bytes on the wire, but PostgreSQL's jsonb
//! stores it as a numeric and prints it back as 1,001 digits, so a 1 MB array
//! of them became 140 MB of text in every handler that read `params`. Numbers
//! are therefore counted at the length PostgreSQL prints them, and numbers that
//! PostgreSQL's numeric cannot hold at all are refused up front (the insert
//! would fail later, after the caller's request was already in a batch).
//!
//! Strings and keys count at their length; a file part counts at its byte size
//! (its base64 text is a fixed 4/3 of that, and counting the base64 would refuse
//! an upload just under the limit).

use serde_json::{Map, Value};

use super::{cost, BodyError};

/// Most digits before the decimal point a PostgreSQL numeric holds
/// (NUMERIC_WEIGHT_MAX + 1 base-10000 digits).
const NUMERIC_MAX_INTEGER_DIGITS: u64 = 131_072;
/// Most digits after the decimal point a PostgreSQL numeric holds (NUMERIC_DSCALE_MAX).
const NUMERIC_MAX_SCALE: u64 = 16_383;

/// The walk keeps one iterator per level of nesting. JSON and XML stop at 128
/// levels and a form field holding JSON adds one, so the stack never grows past
/// this and is one allocation.
const WALK_DEPTH: usize = 256;

/// The walk's stack, charged before the walk.
pub(super) const WALK_BYTES: usize = cost::block(WALK_DEPTH * std::mem::size_of::<Level<'_>>());

enum Level<'a> {
    Items(std::slice::Iter<'a, Value>),
    Entries(serde_json::map::Iter<'a>),
}

/// Fails with [`BodyError::TooLarge`] as soon as the parameters' text passes
/// `cap` bytes, and with [`BodyError::InvalidJson`] for a number PostgreSQL
/// cannot store. Linear in the size of `params`; no recursion (an explicit
/// stack of iterators, so a deeply nested value cannot overflow the thread's
/// stack, and the walk allocates only [`WALK_BYTES`]).
pub(super) fn check_expanded_size(
    params: &Map<String, Value>,
    cap: usize,
) -> Result<(), BodyError> {
    let cap = cap as u64;
    let mut total: u64 = 0;
    let mut add = |len: u64| {
        total = total.saturating_add(len);
        if total > cap {
            Err(BodyError::TooLarge {
                limit: cap as usize,
            })
        } else {
            Ok(())
        }
    };
    let mut stack = Vec::with_capacity(WALK_DEPTH);
    stack.push(Level::Entries(params.iter()));
    while let Some(level) = stack.last_mut() {
        let next = match level {
            Level::Items(items) => items.next(),
            Level::Entries(entries) => match entries.next() {
                Some((key, value)) => {
                    add(key.len() as u64)?;
                    Some(value)
                }
                None => None,
            },
        };
        let Some(value) = next else {
            stack.pop();
            continue;
        };
        match value {
            Value::Null | Value::Bool(_) => add(5)?,
            Value::Number(n) => add(printed_number_len(n.as_str())?)?,
            Value::String(s) => add(s.len() as u64)?,
            Value::Array(items) => stack.push(Level::Items(items.iter())),
            Value::Object(map) if is_file_part(map) => add(file_part_len(map))?,
            Value::Object(map) => stack.push(Level::Entries(map.iter())),
        }
    }
    Ok(())
}

/// The object multipart produces for a file: counted by its `size` plus its
/// name and type, not by its base64 text.
fn is_file_part(map: &Map<String, Value>) -> bool {
    map.len() == 4
        && map.get("size").is_some_and(Value::is_u64)
        && map.get("content_base64").is_some_and(Value::is_string)
        && map.get("filename").is_some_and(Value::is_string)
}

fn file_part_len(map: &Map<String, Value>) -> u64 {
    let text = |name: &str| map.get(name).and_then(Value::as_str).map_or(0, str::len) as u64;
    let size = map.get("size").and_then(Value::as_u64).unwrap_or(0);
    size.saturating_add(text("filename"))
        .saturating_add(text("content_type"))
}

/// The length of a JSON number literal as PostgreSQL's numeric prints it (no
/// exponent: `1e3` → `1000`, `1e-3` → `0.001`), or an error if numeric cannot
/// hold it. The literal is valid JSON (serde_json checked it), so it is
/// `-?digits(.digits)?([eE][+-]?digits)?`.
fn printed_number_len(literal: &str) -> Result<u64, BodyError> {
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], parse_exponent(&rest[i + 1..])),
        None => (rest, 0),
    };
    let (integer, fraction) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let is_zero = mantissa.bytes().all(|b| b == b'0' || b == b'.');
    // Zero has no integer digits to shift: `0e999` is just 0.
    let integer_digits = if is_zero {
        1
    } else {
        (integer.trim_start_matches('0').len() as i64).saturating_add(exponent)
    };
    let scale = (fraction.len() as i64).saturating_sub(exponent).max(0);
    if integer_digits > NUMERIC_MAX_INTEGER_DIGITS as i64 || scale > NUMERIC_MAX_SCALE as i64 {
        return Err(BodyError::InvalidJson(format!(
            "number {} is out of range",
            super::clip(literal)
        )));
    }
    let integer_len = integer_digits.max(1) as u64;
    let fraction_len = if scale > 0 { 1 + scale as u64 } else { 0 };
    Ok(u64::from(negative) + integer_len + fraction_len)
}

/// The exponent's value, saturating: `1e99999999999999999999` is simply huge.
fn parse_exponent(s: &str) -> i64 {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = digits.bytes().fold(0i64, |acc, d| {
        acc.saturating_mul(10).saturating_add(i64::from(d - b'0'))
    });
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_count_as_postgresql_prints_them() {
        for (literal, printed) in [
            ("0", "0"),
            ("-7", "-7"),
            ("1.50", "1.50"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("-2.5e2", "-250"),
            ("1e-3", "0.001"),
            ("12.345e1", "123.45"),
            ("0.0", "0.0"),
            ("0e999999", "0"),
        ] {
            assert_eq!(
                printed_number_len(literal),
                Ok(printed.len() as u64),
                "{literal}"
            );
        }
        assert_eq!(printed_number_len("1e1000"), Ok(1001));
    }

    #[test]
    fn numbers_outside_numeric_are_refused() {
        for literal in [
            "1e131072",
            "1e-16384",
            "1e999999999999999999999",
            "-1e-99999",
        ] {
            assert!(
                matches!(printed_number_len(literal), Err(BodyError::InvalidJson(_))),
                "{literal}"
            );
        }
        assert!(printed_number_len("1e131071").is_ok());
        assert!(printed_number_len("1e-16383").is_ok());
    }

    #[test]
    fn keys_strings_and_nested_values_count() {
        // Parsed from text: json!(1e3) would be the f64 1000.0.
        let params: Map<String, Value> =
            serde_json::from_str(r#"{"ab": "cde", "n": [1e3, {"x": null}]}"#).unwrap();
        let params = &params;
        // ab + cde + n + 1000 + x + null(5)
        let exact = 2 + 3 + 1 + 4 + 1 + 5;
        assert_eq!(check_expanded_size(params, exact), Ok(()));
        assert_eq!(
            check_expanded_size(params, exact - 1),
            Err(BodyError::TooLarge { limit: exact - 1 })
        );
    }

    #[test]
    fn file_parts_count_by_size_not_base64() {
        let params = json!({"f": {"filename": "a", "content_type": "b", "size": 3, "content_base64": "AAAA"}});
        let params = params.as_object().expect("an object");
        assert_eq!(check_expanded_size(params, 1 + 3 + 1 + 1), Ok(()));
        assert!(check_expanded_size(params, 5).is_err());
    }
}
