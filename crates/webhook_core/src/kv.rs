//! Key-value sample text → a JSON object, for `webhook_sample_from_kv`.
//!
//! Accepted shapes, chosen to match what people paste from docs and consoles:
//!
//! * one pair per line, `key=value` or `key: value` — the separator is whichever
//!   of `=` and `:` comes first on the line, so `url: http://x/?a=b` and
//!   `expr=a:b` both split where a reader would expect;
//! * a single line holding a query string, `a=1&b=2` — pairs separated by `&`,
//!   percent-decoded with `+` as space (the `application/x-www-form-urlencoded`
//!   rules).
//!
//! Keys and values are trimmed. Blank lines and lines starting with `#` are
//! skipped. A repeated key collects its values into an array, in order (the same
//! rule the listener applies to repeated query and form fields). A line with no
//! separator or an empty key is an error naming the line, so a typo never turns
//! silently into a parameter nobody meant.
//!
//! Values are typed with [`crate::infer::infer_scalar`].

use serde_json::{Map, Value};

use crate::infer::infer_scalar;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("line {line}: {content:?} has no \"=\" or \":\" separator")]
    NoSeparator { line: usize, content: String },
    #[error("line {line}: {content:?} has an empty key")]
    EmptyKey { line: usize, content: String },
    #[error("the sample holds no key-value pairs")]
    Empty,
}

/// Parses key-value sample text into a JSON object with inferred value types.
pub fn parse_kv(text: &str) -> Result<Map<String, Value>, KvError> {
    let trimmed = text.trim();
    let mut pairs = Pairs::default();
    if !trimmed.contains('\n') && trimmed.contains('&') {
        for (key, value) in form_urlencoded::parse(trimmed.as_bytes()) {
            let key = key.trim();
            if key.is_empty() {
                return Err(KvError::EmptyKey {
                    line: 1,
                    content: trimmed.to_string(),
                });
            }
            pairs.push(key, infer_scalar(value.trim()));
        }
    } else {
        for (index, raw_line) in text.lines().enumerate() {
            let line = raw_line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(split_at) = line.find(['=', ':']) else {
                return Err(KvError::NoSeparator {
                    line: index + 1,
                    content: line.to_string(),
                });
            };
            let key = line[..split_at].trim();
            let value = line[split_at + 1..].trim();
            if key.is_empty() {
                return Err(KvError::EmptyKey {
                    line: index + 1,
                    content: line.to_string(),
                });
            }
            pairs.push(key, infer_scalar(value));
        }
    }
    if pairs.keys.is_empty() {
        return Err(KvError::Empty);
    }
    Ok(pairs.into_map())
}

/// Values by key in first-seen order; a key seen more than once becomes an
/// array of all its values.
#[derive(Default)]
struct Pairs {
    keys: Vec<String>,
    values: Vec<Vec<Value>>,
}

impl Pairs {
    fn push(&mut self, key: &str, value: Value) {
        match self.keys.iter().position(|k| k == key) {
            Some(i) => self.values[i].push(value),
            None => {
                self.keys.push(key.to_string());
                self.values.push(vec![value]);
            }
        }
    }

    fn into_map(self) -> Map<String, Value> {
        self.keys
            .into_iter()
            .zip(self.values)
            .map(|(key, mut values)| {
                let value = if values.len() == 1 {
                    values.pop().unwrap_or(Value::Null)
                } else {
                    Value::Array(values)
                };
                (key, value)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(text: &str) -> Value {
        Value::Object(parse_kv(text).unwrap())
    }

    #[test]
    fn equals_and_colon_lines() {
        assert_eq!(
            kv("order_id=42\ncustomer: Ann Lee\npaid = true"),
            json!({"order_id": 42, "customer": "Ann Lee", "paid": true})
        );
    }

    #[test]
    fn first_separator_wins() {
        assert_eq!(
            kv("url: http://x.test/?a=b\nexpr=a:b"),
            json!({"url": "http://x.test/?a=b", "expr": "a:b"})
        );
    }

    #[test]
    fn equals_inside_value_is_kept() {
        assert_eq!(kv("token=abc==\n"), json!({"token": "abc=="}));
    }

    #[test]
    fn query_string_is_percent_decoded() {
        assert_eq!(
            kv("a=1&b=hello+world&c=caf%C3%A9&d=%26"),
            json!({"a": 1, "b": "hello world", "c": "café", "d": "&"})
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        assert_eq!(kv("\n# comment\n\na=1\n\n  \n"), json!({"a": 1}));
    }

    #[test]
    fn empty_values_are_empty_text() {
        assert_eq!(kv("a=\nb:"), json!({"a": "", "b": ""}));
    }

    #[test]
    fn duplicate_keys_collect_into_an_array() {
        assert_eq!(kv("tag=a\ntag=b\ntag=c"), json!({"tag": ["a", "b", "c"]}));
        assert_eq!(kv("x=1&x=2"), json!({"x": [1, 2]}));
        assert_eq!(kv("t=[1]\nt=2"), json!({"t": [[1], 2]}));
    }

    #[test]
    fn unicode_keys_and_values() {
        assert_eq!(
            kv("名前 = 山田\nemoji: 🎉"),
            json!({"名前": "山田", "emoji": "🎉"})
        );
    }

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(
            kv("zip=007\nsci=1e3\nneg=-1.5\nyes=TRUE\nno=false\nword=True story"),
            json!({"zip": "007", "sci": 1000, "neg": -1.5, "yes": true, "no": false, "word": "True story"})
        );
    }

    #[test]
    fn malformed_line_names_the_line() {
        assert_eq!(
            parse_kv("a=1\njunk line\n"),
            Err(KvError::NoSeparator {
                line: 2,
                content: "junk line".into()
            })
        );
        assert_eq!(
            parse_kv("=1").unwrap_err().to_string(),
            "line 1: \"=1\" has an empty key"
        );
    }

    #[test]
    fn nothing_to_parse_is_an_error() {
        assert_eq!(parse_kv(" \n# only a comment\n"), Err(KvError::Empty));
    }

    #[test]
    fn crlf_lines() {
        assert_eq!(kv("a=1\r\nb=2\r\n"), json!({"a": 1, "b": 2}));
    }
}
