//! Finding a workflow by "the id in its URL".
//!
//! Users paste whatever they have: a bare id, a full URL (with query string,
//! trailing slash, upper case), or a piece of the id copied from a log line.
//! [`full_id`] finds a complete id anywhere in the input (so the lookup can use
//! the primary key); failing that, [`id_fragment`] yields the hex fragment to
//! search for.

use uuid::Uuid;

/// The minimum number of hex digits a fragment needs: fewer would match most ids.
pub const MIN_FRAGMENT_HEX_DIGITS: usize = 4;

/// A complete workflow id contained in `input`, hyphenated or not, any case.
pub fn full_id(input: &str) -> Option<Uuid> {
    let bytes = input.as_bytes();
    // Candidates are maximal runs of hex digits and hyphens; a run holding exactly
    // 32 hex digits in the canonical 8-4-4-4-12 or plain layout is an id.
    let mut start = 0;
    while start < bytes.len() {
        if !is_id_char(bytes[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < bytes.len() && is_id_char(bytes[end]) {
            end += 1;
        }
        let run = input[start..end].trim_matches('-');
        if let Some(id) = parse_id(run) {
            return Some(id);
        }
        start = end;
    }
    None
}

fn parse_id(run: &str) -> Option<Uuid> {
    let canonical = run.len() == 36
        && run
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    let plain = run.len() == 32 && !run.contains('-');
    if canonical || plain {
        Uuid::try_parse(run).ok()
    } else {
        None
    }
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b'-'
}

/// The id fragment to search for: lower-case hex digits with hyphens removed.
///
/// The fragment is the last path segment of a URL (after `/hooks/` when present),
/// without query string or fragment; a bare token is used as is. It must consist
/// of hex digits and hyphens only and hold at least
/// [`MIN_FRAGMENT_HEX_DIGITS`] hex digits; anything else yields `None`, which
/// callers treat as "no match" rather than an error.
pub fn id_fragment(input: &str) -> Option<String> {
    let without_suffix = input.split(['?', '#']).next().unwrap_or("").trim();
    let token = match without_suffix.rfind("/hooks/") {
        Some(pos) => &without_suffix[pos + "/hooks/".len()..],
        None => without_suffix,
    };
    let token = token.trim_end_matches('/');
    let token = token.rsplit('/').next().unwrap_or(token).trim();
    if token.is_empty() || !token.bytes().all(is_id_char) {
        return None;
    }
    let hex: String = token
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() >= MIN_FRAGMENT_HEX_DIGITS && hex.len() <= 32).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    #[test]
    fn full_id_in_many_shapes() {
        let id = Uuid::parse_str(ID).unwrap();
        for input in [
            ID.to_string(),
            ID.to_uppercase(),
            ID.replace('-', ""),
            format!("http://127.0.0.1:8787/hooks/{ID}"),
            format!(
                "https://hooks.example.com/hooks/{}/?x=1#top",
                ID.to_uppercase()
            ),
            format!("  {ID}  "),
            format!("see /hooks/{ID}."),
        ] {
            assert_eq!(full_id(&input), Some(id), "{input}");
        }
    }

    #[test]
    fn no_full_id() {
        assert_eq!(full_id(""), None);
        assert_eq!(full_id("1b4e28ba"), None);
        assert_eq!(full_id(&ID[..35]), None);
        assert_eq!(full_id(&format!("{ID}0")), None);
        assert_eq!(full_id("1b4e28ba2-fa1-11d2-883f-0016d3cca427"), None);
    }

    #[test]
    fn fragments() {
        assert_eq!(id_fragment("1B4E"), Some("1b4e".into()));
        assert_eq!(id_fragment("28ba-2fa1"), Some("28ba2fa1".into()));
        assert_eq!(
            id_fragment("http://127.0.0.1:8787/hooks/2fa1-11d2/?a=b"),
            Some("2fa111d2".into())
        );
        assert_eq!(id_fragment("/hooks/cca427"), Some("cca427".into()));
    }

    #[test]
    fn not_fragments() {
        assert_eq!(id_fragment("abc"), None);
        assert_eq!(id_fragment("----"), None);
        assert_eq!(id_fragment("xyz1234"), None);
        assert_eq!(id_fragment("http://127.0.0.1:8787/"), None);
        assert_eq!(id_fragment(""), None);
        assert_eq!(id_fragment("%"), None);
        assert_eq!(id_fragment(&"a".repeat(33)), None);
    }
}
