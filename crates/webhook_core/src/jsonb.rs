//! PostgreSQL's binary jsonb format, written from a `serde_json::Value`: the
//! bytes `jsonb_in` would make of the same JSON (PostgreSQL 15,
//! src/backend/utils/adt/jsonb_util.c `convertToJsonb`), so the listener
//! stores a request's jsonb columns without printing them as text for
//! PostgreSQL to parse again.
//!
//! Numbers are PostgreSQL numerics, whose encoding this module leaves to the
//! caller (`numeric`: the numeric datum `numeric_in` makes of the number's
//! text, varlena header included).
//!
//! The layout: a varlena header, then the root container. A container is a
//! 4-byte header (element count and kind), one 4-byte JEntry per element (for
//! an object: every key, then every value), then the elements' data in the
//! same order. A JEntry holds the element's type and the length of its data,
//! or, for every 32nd element, the end offset of its data within the
//! container. Object keys are sorted (shorter first, then bytewise).
//! Numerics and nested containers start 4-byte aligned, the padding counting
//! as part of their data.

use serde_json::{Map, Number, Value};

// Container header flags and JEntry fields, as PostgreSQL's jsonb.h names
// them.
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;

const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;

/// Every this many elements a JEntry holds an offset instead of a length.
const JB_OFFSET_STRIDE: usize = 32;

/// Why a value cannot be written as jsonb (PostgreSQL refuses it too).
#[derive(Debug, PartialEq, Eq)]
pub enum Unstorable {
    /// A string, or a container's data, longer than a JEntry can say.
    TooLong,
    /// A string or key holding U+0000, which PostgreSQL text cannot hold.
    Nul,
}

/// The jsonb varlena (4-byte header included, in the machine's byte order,
/// as PostgreSQL keeps it in memory) of `value`; `numeric` turns a number
/// into its numeric varlena.
pub fn encode(
    value: &Value,
    numeric: &mut dyn FnMut(&Number) -> Vec<u8>,
) -> Result<Vec<u8>, Unstorable> {
    let mut buffer = vec![0u8; 4]; // the varlena header, set at the end
    match value {
        Value::Object(map) => {
            object(&mut buffer, map, numeric)?;
        }
        Value::Array(items) => {
            array(&mut buffer, items, false, numeric)?;
        }
        scalar => {
            // A lone scalar is a one-element "raw scalar" array.
            array(&mut buffer, std::slice::from_ref(scalar), true, numeric)?;
        }
    }
    let total = buffer.len() as u32;
    buffer[..4].copy_from_slice(&varlena_header(total).to_ne_bytes());
    Ok(buffer)
}

/// Appends one element's data; returns its JEntry (type and data length).
fn element(
    buffer: &mut Vec<u8>,
    value: &Value,
    numeric: &mut dyn FnMut(&Number) -> Vec<u8>,
) -> Result<u32, Unstorable> {
    Ok(match value {
        Value::Null => JENTRY_ISNULL,
        Value::Bool(true) => JENTRY_ISBOOL_TRUE,
        Value::Bool(false) => JENTRY_ISBOOL_FALSE,
        Value::String(text) => JENTRY_ISSTRING | string(buffer, text)?,
        Value::Number(number) => {
            let padding = pad_to_int(buffer);
            let bytes = numeric(number);
            buffer.extend_from_slice(&bytes);
            JENTRY_ISNUMERIC | length(padding + bytes.len())?
        }
        Value::Object(map) => JENTRY_ISCONTAINER | object(buffer, map, numeric)?,
        Value::Array(items) => JENTRY_ISCONTAINER | array(buffer, items, false, numeric)?,
    })
}

fn string(buffer: &mut Vec<u8>, text: &str) -> Result<u32, Unstorable> {
    if text.contains('\0') {
        return Err(Unstorable::Nul);
    }
    let len = length(text.len())?;
    buffer.extend_from_slice(text.as_bytes());
    Ok(len)
}

/// Writes a container's header (`header`: its kind and count, which for an
/// object is the number of pairs) and JEntries, then its elements; returns
/// the length of everything written, leading padding included.
fn container<'a>(
    buffer: &mut Vec<u8>,
    header: u32,
    elements: impl ExactSizeIterator<Item = Element<'a>>,
    numeric: &mut dyn FnMut(&Number) -> Vec<u8>,
) -> Result<u32, Unstorable> {
    let start = buffer.len();
    pad_to_int(buffer);
    let count = elements.len();
    buffer.extend_from_slice(&header.to_ne_bytes());
    let mut entry_at = buffer.len();
    buffer.resize(entry_at + 4 * count, 0);
    let mut data_len: usize = 0;
    for (i, element_value) in elements.enumerate() {
        let mut entry = match element_value {
            Element::Key(key) => JENTRY_ISSTRING | string(buffer, key)?,
            Element::Value(value) => element(buffer, value, numeric)?,
        };
        data_len += (entry & JENTRY_OFFLENMASK) as usize;
        let total = length(data_len)?;
        if i % JB_OFFSET_STRIDE == 0 {
            entry = (entry & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF;
        }
        buffer[entry_at..entry_at + 4].copy_from_slice(&entry.to_ne_bytes());
        entry_at += 4;
    }
    length(buffer.len() - start)
}

enum Element<'a> {
    Key(&'a str),
    Value(&'a Value),
}

fn object(
    buffer: &mut Vec<u8>,
    map: &Map<String, Value>,
    numeric: &mut dyn FnMut(&Number) -> Vec<u8>,
) -> Result<u32, Unstorable> {
    // jsonb's key order: shorter keys first, equal lengths bytewise. (A
    // serde_json map has no duplicate keys to drop.)
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_unstable_by(|(a, _), (b, _)| {
        a.len()
            .cmp(&b.len())
            .then_with(|| a.as_bytes().cmp(b.as_bytes()))
    });
    let keys = pairs.iter().map(|(key, _)| Element::Key(key.as_str()));
    let values = pairs.iter().map(|(_, value)| Element::Value(value));
    let elements: Vec<Element<'_>> = keys.chain(values).collect();
    container(
        buffer,
        JB_FOBJECT | pairs.len() as u32,
        elements.into_iter(),
        numeric,
    )
}

fn array(
    buffer: &mut Vec<u8>,
    items: &[Value],
    raw_scalar: bool,
    numeric: &mut dyn FnMut(&Number) -> Vec<u8>,
) -> Result<u32, Unstorable> {
    let header = if raw_scalar {
        JB_FARRAY | JB_FSCALAR | 1
    } else {
        JB_FARRAY | items.len() as u32
    };
    container(buffer, header, items.iter().map(Element::Value), numeric)
}

/// The numeric varlena PostgreSQL's `numeric_in` makes of a JSON integer
/// (`-?[0-9]+`) whose value fits numeric's short form (up to 256 digits);
/// `None` for anything else (fractions, exponents), which only `numeric_in`
/// should judge. (PostgreSQL 15, numeric.c `make_result_opt_error`: base
/// 10000 digits without leading or trailing zero digits, weight the index
/// of the first, zero as no digits.)
pub fn integer_numeric(text: &str) -> Option<Vec<u8>> {
    const NUMERIC_SHORT: u16 = 0x8000;
    const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
    const NUMERIC_SHORT_WEIGHT_MAX: usize = 63;
    let (negative, decimal) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if decimal.is_empty() || !decimal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let decimal = decimal.trim_start_matches('0');
    // Base-10000 digits, most significant first, grouped from the right.
    let mut digits: Vec<u16> = Vec::with_capacity(decimal.len() / 4 + 1);
    let first_group = match decimal.len() % 4 {
        0 => 4,
        n => n,
    };
    let mut rest = decimal;
    let mut take = first_group;
    while !rest.is_empty() {
        let (group, tail) = rest.split_at(take);
        digits.push(group.parse().ok()?);
        rest = tail;
        take = 4;
    }
    let weight = digits.len().saturating_sub(1);
    if weight > NUMERIC_SHORT_WEIGHT_MAX {
        return None;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let header = if digits.is_empty() {
        NUMERIC_SHORT // zero: positive, weight 0
    } else if negative {
        NUMERIC_SHORT | NUMERIC_SHORT_SIGN_MASK | weight as u16
    } else {
        NUMERIC_SHORT | weight as u16
    };
    let len = 4 + 2 + 2 * digits.len();
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&varlena_header(len as u32).to_ne_bytes());
    bytes.extend_from_slice(&header.to_ne_bytes());
    for digit in digits {
        bytes.extend_from_slice(&digit.to_ne_bytes());
    }
    Some(bytes)
}

/// SET_VARSIZE for a 4-byte varlena header: the length shifted past two flag
/// bits on little-endian machines, in the low 30 bits on big-endian ones.
fn varlena_header(len: u32) -> u32 {
    if cfg!(target_endian = "little") {
        len << 2
    } else {
        len & 0x3FFF_FFFF
    }
}

/// Pads the buffer with zeros to a multiple of 4 bytes; returns the padding.
fn pad_to_int(buffer: &mut Vec<u8>) -> usize {
    let padding = (4 - buffer.len() % 4) % 4;
    buffer.resize(buffer.len() + padding, 0);
    padding
}

fn length(len: usize) -> Result<u32, Unstorable> {
    u32::try_from(len)
        .ok()
        .filter(|&len| len <= JENTRY_OFFLENMASK)
        .ok_or(Unstorable::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stand-in numeric: PostgreSQL's own comes from numeric_in (tested
    /// end to end against jsonb_in in tests/e2e/test_real_deliveries.py).
    fn fake_numeric(number: &Number) -> Vec<u8> {
        let digits = number.to_string();
        let mut bytes = ((4 + digits.len()) as u32 * 4).to_ne_bytes().to_vec();
        bytes.extend_from_slice(digits.as_bytes());
        bytes
    }

    fn words(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks(4)
            .map(|c| {
                let mut word = [0u8; 4];
                word[..c.len()].copy_from_slice(c);
                u32::from_ne_bytes(word)
            })
            .collect()
    }

    fn encoded(value: Value) -> Vec<u8> {
        encode(&value, &mut fake_numeric).expect("encodable")
    }

    #[test]
    fn an_empty_object_is_a_header_and_nothing_else() {
        let bytes = encoded(json!({}));
        assert_eq!(words(&bytes), vec![8 << 2, JB_FOBJECT]);
    }

    #[test]
    fn keys_come_first_sorted_by_length_then_bytes_and_the_first_entry_holds_an_offset() {
        let bytes = encoded(json!({"bb": true, "a": "x", "B": null}));
        // Keys: "B", "a", "bb"; values: null, "x", true.
        let header = 4 + 4 + 6 * 4;
        let data = b"Babbx";
        assert_eq!(&bytes[header..header + data.len()], data);
        assert_eq!(bytes.len(), header + data.len());
        let w = words(&bytes[..header]);
        assert_eq!(w[0], (bytes.len() as u32) << 2);
        assert_eq!(w[1], JB_FOBJECT | 3);
        assert_eq!(w[2], JENTRY_HAS_OFF | 1, "first key: its end offset");
        assert_eq!(&w[3..], &[1, 2, JENTRY_ISNULL, 1, JENTRY_ISBOOL_TRUE]);
    }

    #[test]
    fn a_lone_scalar_is_a_raw_scalar_array() {
        let bytes = encoded(json!("hi"));
        assert_eq!(
            words(&bytes[..12]),
            vec![14 << 2, JB_FARRAY | JB_FSCALAR | 1, JENTRY_HAS_OFF | 2]
        );
        assert_eq!(&bytes[12..], b"hi");
    }

    #[test]
    fn numerics_and_nested_containers_start_aligned_and_count_their_padding() {
        // [ "abc", 7, {} ]: "abc" ends at byte 23, the numeric starts at 24
        // after one byte of padding, the object after the numeric's 5 bytes.
        let bytes = encoded(json!(["abc", 7, {}]));
        let w = words(&bytes[..20]);
        assert_eq!(w[1], JB_FARRAY | 3);
        assert_eq!(w[2], JENTRY_HAS_OFF | 3);
        assert_eq!(w[3], JENTRY_ISNUMERIC | (1 + 5));
        assert_eq!(w[4], JENTRY_ISCONTAINER | (3 + 4));
        assert_eq!(&bytes[20..23], b"abc");
        assert_eq!(bytes[23], 0);
        assert_eq!(&bytes[24..29], &fake_numeric(&Number::from(7))[..5]);
        assert_eq!(&bytes[29..32], &[0, 0, 0]);
        assert_eq!(words(&bytes[32..36]), vec![JB_FOBJECT]);
        assert_eq!(bytes.len(), 36);
    }

    #[test]
    fn every_32nd_element_holds_its_end_offset() {
        let items: Vec<Value> = (0..70).map(|_| json!("ab")).collect();
        let bytes = encoded(Value::Array(items));
        let w = words(&bytes[8..8 + 70 * 4]);
        for (i, entry) in w.iter().enumerate() {
            let expected = if i % 32 == 0 {
                JENTRY_HAS_OFF | (2 * (i as u32 + 1))
            } else {
                2
            };
            assert_eq!(*entry, expected, "element {i}");
        }
    }

    /// (varlena length, numeric header, base-10000 digits) of an encoding.
    fn numeric_parts(bytes: &[u8]) -> (u32, u16, Vec<u16>) {
        let half = |at: usize| u16::from_ne_bytes([bytes[at], bytes[at + 1]]);
        let digits = (6..bytes.len()).step_by(2).map(half).collect();
        (words(&bytes[..4])[0] >> 2, half(4), digits)
    }

    #[test]
    fn integers_are_numerics_in_short_form_as_numeric_in_makes_them() {
        let parts = |text: &str| numeric_parts(&integer_numeric(text).expect(text));
        assert_eq!(parts("0"), (6, 0x8000, vec![]));
        assert_eq!(parts("-0"), (6, 0x8000, vec![]), "zero is positive");
        assert_eq!(parts("7"), (8, 0x8000, vec![7]));
        assert_eq!(parts("-7"), (8, 0x8000 | 0x2000, vec![7]));
        assert_eq!(
            parts("10000"),
            (8, 0x8001, vec![1]),
            "no trailing zero digit"
        );
        assert_eq!(parts("12345678"), (10, 0x8001, vec![1234, 5678]));
        assert_eq!(parts("1700000010"), (12, 0x8002, vec![17, 0, 10]));
        assert_eq!(
            parts("-9223372036854775808"),
            (16, 0x8000 | 0x2000 | 4, vec![922, 3372, 368, 5477, 5808])
        );
        // 256 digits fit the short form's weight, 257 do not.
        assert_eq!(parts(&"9".repeat(256)).1, 0x8000 | 63);
        assert_eq!(integer_numeric(&"9".repeat(257)), None);
        for other in ["1.0", "1e3", "-", "", "+1", "1_0"] {
            assert_eq!(integer_numeric(other), None, "{other}");
        }
    }

    #[test]
    fn a_nul_in_a_string_or_key_is_refused() {
        for value in [json!({"k": "a\0b"}), json!({"a\0": 1}), json!([["\0"]])] {
            assert_eq!(
                encode(&value, &mut fake_numeric),
                Err(Unstorable::Nul),
                "{value}"
            );
        }
    }

    #[test]
    fn a_string_longer_than_a_jentry_can_say_is_refused() {
        let long = "x".repeat(JENTRY_OFFLENMASK as usize + 1);
        assert_eq!(
            encode(&json!({ "k": long }), &mut fake_numeric),
            Err(Unstorable::TooLong)
        );
    }
}
