//! What parsing a JSON text into a `serde_json::Value` will allocate, found
//! before the `Value` is built.
//!
//! The pre-scan runs serde_json's own deserializer over the text with a
//! visitor that only counts: every array's length, every object's entries,
//! the length of every string, key and number. It builds nothing, so the
//! grammar, the recursion limit (128, which bounds the stack of the pre-scan
//! exactly as it bounds the real parse) and the error messages are those of
//! the real parse. The deserializer itself allocates only its scratch
//! buffers (escaped strings, numbers), which [`scratch`] bounds from a plain
//! byte scan beforehand.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::cost;

/// The heap a parse of the text takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JsonCost {
    /// Blocks the finished `Value` holds.
    pub(super) held: usize,
    /// The largest block that is live only while a collection grows (its old
    /// block), on top of `held`.
    pub(super) growing: usize,
}

/// serde_json (with `arbitrary_precision`) hands a number that does not fit
/// 64 bits to the visitor as a one-entry map under this key; its `Value`
/// parser recognises the key the same way.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// What parsing `text` into a `Value` allocates, or the error the parse
/// would fail with. Allocates nothing itself beyond the deserializer's
/// scratch buffers (see [`scratch`]).
pub(super) fn json_cost(text: &str) -> Result<JsonCost, serde_json::Error> {
    let mut tally = Tally::default();
    let mut de = serde_json::Deserializer::from_str(text);
    Count { tally: &mut tally }.deserialize(&mut de)?;
    de.end()?;
    Ok(JsonCost {
        held: tally.held,
        growing: tally.growing,
    })
}

/// What serde_json's deserializer allocates for itself while it parses
/// `text`, the same for the pre-scan and the real parse: its scratch buffer
/// holds one unescaped string at a time (doubling, so up to twice the
/// longest, plus the old block while it grows), and each number is read
/// into a buffer of its own (16 bytes, doubling), parsed once more into
/// another when it does not fit 64 bits. Found by a byte scan for the
/// longest string and the longest run of other bytes, which is linear and
/// allocates nothing.
pub(super) fn scratch(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut longest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        // Outside strings: runs of number characters, up to the next quote.
        let mut run = 0usize;
        while let Some(&b) = bytes.get(i) {
            if b == b'"' {
                break;
            }
            if matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
            i += 1;
        }
        // Inside a string: up to the next quote that is not escaped.
        let start = i + 1;
        i = start;
        while let Some(at) = quote_or_backslash(&bytes[i.min(bytes.len())..]) {
            i += at;
            if bytes[i] == b'"' {
                break;
            }
            i += 2;
        }
        longest = longest.max(i.min(bytes.len()).saturating_sub(start));
        i += 1;
    }
    // Growth at least doubles but may jump to the length needed: under twice
    // the longest string, plus the old block while it moves.
    let strings =
        cost::block(longest.saturating_mul(2).max(8)).saturating_add(cost::block(longest));
    // The number being read, its copy being parsed, and the copy's old block.
    let numbers = cost::number(longest).saturating_mul(3);
    strings.saturating_add(numbers)
}

/// The index of the first `"` or `\\` in `bytes`, eight bytes at a time (a
/// byte-wise search made the pre-scan of string-heavy bodies as slow as the
/// parse's own scan of them).
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte is the first one equal to `byte` (a borrow only
    // flags bytes above a real match).
    let equal = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let hits = equal(word, b'"') | equal(word, b'\\');
        if hits != 0 {
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| offset + i)
}

#[derive(Default)]
struct Tally {
    held: usize,
    growing: usize,
}

impl Tally {
    fn hold(&mut self, bytes: usize) {
        self.held = self.held.saturating_add(bytes);
    }

    fn collection(&mut self, (held, growing): (usize, usize)) {
        self.hold(held);
        self.growing = self.growing.max(growing);
    }
}

/// Counts one value (and everything inside it).
struct Count<'t> {
    tally: &'t mut Tally,
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.tally.hold(cost::number(digits(n)));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.tally.hold(cost::number(1 + digits(n.unsigned_abs())));
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        // Not reached with arbitrary_precision; a float prints in at most 24.
        self.tally.hold(cost::number(24));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.tally.hold(cost::block(s.len()));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        while seq
            .next_element_seed(Count {
                tally: &mut *self.tally,
            })?
            .is_some()
        {
            n += 1;
        }
        self.tally.collection(cost::array(n));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key_seed(Key)? else {
            return Ok(());
        };
        if first == KeyLen::Number {
            let len = map.next_value_seed(NumberText)?;
            self.tally.hold(cost::number(len));
            return Ok(());
        }
        let mut key = first;
        let mut n = 0usize;
        loop {
            if let KeyLen::Len(len) = key {
                self.tally.hold(cost::block(len));
            }
            map.next_value_seed(Count {
                tally: &mut *self.tally,
            })?;
            n += 1;
            match map.next_key_seed(Key)? {
                Some(next) => key = next,
                None => break,
            }
        }
        self.tally.collection(cost::object(n));
        Ok(())
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[derive(Debug, PartialEq, Eq)]
enum KeyLen {
    Len(usize),
    /// The first key of what is really a number (see [`NUMBER_TOKEN`]).
    Number,
}

/// A key's length, without keeping the key.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = KeyLen;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<KeyLen, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = KeyLen;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, s: &str) -> Result<KeyLen, E> {
        Ok(if s == NUMBER_TOKEN {
            KeyLen::Number
        } else {
            KeyLen::Len(s.len())
        })
    }
}

/// The text of a number that serde_json passes as a string.
struct NumberText;

impl<'de> DeserializeSeed<'de> for NumberText {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NumberText {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("string containing a number")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        Ok(s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_those_of_the_parse() {
        for good in ["{}", " [1] ", "1.5e3", "\"x\"", "null"] {
            assert!(json_cost(good).is_ok(), "{good}");
        }
        for bad in ["", "[1,]", "{\"a\" 1}", "[1] x", "\"\\ud800\"", "01"] {
            let expected = serde_json::from_str::<serde_json::Value>(bad)
                .unwrap_err()
                .to_string();
            assert_eq!(json_cost(bad).unwrap_err().to_string(), expected, "{bad}");
        }
        let deep = "[".repeat(200);
        let expected = serde_json::from_str::<serde_json::Value>(&deep)
            .unwrap_err()
            .to_string();
        assert_eq!(json_cost(&deep).unwrap_err().to_string(), expected);
    }

    #[test]
    fn numbers_strings_and_collections_are_counted() {
        let empty = json_cost("[]").unwrap();
        assert_eq!((empty.held, empty.growing), (0, 0));
        let one = json_cost("[7]").unwrap();
        assert_eq!(one.held, cost::array(1).0 + cost::number(1));
        let float = json_cost("[1.25]").unwrap();
        assert_eq!(float.held, cost::array(1).0 + cost::number(4));
        let huge = "1".repeat(100);
        let big = json_cost(&huge).unwrap();
        assert_eq!(big.held, cost::number(100));
        let obj = json_cost(r#"{"ab":"cde","ab":null}"#).unwrap();
        assert_eq!(
            obj.held,
            cost::object(2).0 + 2 * cost::block(2) + cost::block(3)
        );
        let many = format!("[{}]", vec!["0"; 100].join(","));
        let many = json_cost(&many).unwrap();
        assert_eq!(many.growing, cost::array(100).1);
        assert!(many.growing > 0);
    }

    #[test]
    fn quotes_and_backslashes_are_found_in_any_position() {
        for len in 0..40 {
            for at in 0..len {
                for c in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = c;
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                    assert_eq!(quote_or_backslash(&bytes), Some(at), "{len} {at}");
                }
            }
            assert_eq!(quote_or_backslash(&vec![0x80 | b'"'; len]), None);
            assert_eq!(quote_or_backslash(&vec![b'#'; len]), None);
        }
    }

    #[test]
    fn scratch_covers_the_longest_token() {
        assert!(scratch(r#"{"a":"\n0123456789"}"#) >= cost::block(32));
        assert!(scratch("[12345678901234567890.5]") >= cost::number(22));
    }
}
