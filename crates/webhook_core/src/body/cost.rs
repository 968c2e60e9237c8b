//! What the values a parse builds cost on the heap, so that it can be asked of
//! the memory budget before it is allocated.
//!
//! The figures follow the real types and the growth policies of the
//! collections they live in (Rust's `Vec`, indexmap over hashbrown for
//! `serde_json::Map` with `preserve_order`), plus what glibc's malloc really
//! takes for each block. They are upper bounds: the integration test
//! `tests/parse_memory.rs` checks them against a counting allocator, so a
//! change in any of those policies shows up there rather than as an
//! unbounded parse.

use std::mem::size_of;

use serde_json::Value;

/// One `serde_json::Value` in an array.
pub(crate) const VALUE: usize = size_of::<Value>();

/// One entry of a `serde_json::Map`: indexmap keeps the key, the value and
/// the key's hash side by side in its entries vector.
pub(crate) const MAP_ENTRY: usize = size_of::<usize>() + size_of::<String>() + size_of::<Value>();

/// The bytes of one slot of indexmap's hash index (a `usize` position).
const INDEX_SLOT: usize = size_of::<usize>();

/// hashbrown's control bytes: one per bucket plus one group (16 with SSE2, 8
/// elsewhere; the larger is counted).
const CTRL_GROUP: usize = 16;

/// What glibc's malloc takes for a request of `bytes`: 8 bytes of header,
/// rounded up to 16, at least 32. No request, no block.
pub(crate) const fn block(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else if bytes <= 24 {
        32
    } else {
        bytes.saturating_add(8 + 15) & !15
    }
}

/// The capacity a `Vec` of `elem`-byte elements has after `n` single pushes
/// from empty: doubling, from 8 for bytes, 4 up to 1 KiB elements, 1 above.
pub(crate) fn vec_capacity(n: usize, elem: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let min = match elem {
        1 => 8,
        2..=1024 => 4,
        _ => 1,
    };
    n.checked_next_power_of_two().unwrap_or(usize::MAX).max(min)
}

/// The block a `Vec` of `n` values built by pushes holds at the end, and the
/// block it held just before its last growth (both live while it grows).
pub(crate) fn array(n: usize) -> (usize, usize) {
    let cap = vec_capacity(n, VALUE);
    let previous = if cap > 4 { cap / 2 } else { 0 };
    (
        block(cap.saturating_mul(VALUE)),
        block(previous.saturating_mul(VALUE)),
    )
}

/// hashbrown's bucket count for a table built by inserting `n` items one at
/// a time: 4, 8, 16, then the next power of two at 8/7 load.
fn buckets(n: usize) -> usize {
    match n {
        0 => 0,
        1..=3 => 4,
        4..=7 => 8,
        8..=14 => 16,
        _ => n
            .saturating_mul(8)
            .div_ceil(7)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX),
    }
}

/// How many items a table of `buckets` buckets holds before it grows.
fn table_capacity(buckets: usize) -> usize {
    if buckets <= 8 {
        buckets.saturating_sub(1)
    } else {
        buckets / 8 * 7
    }
}

/// The index table and the entries vector of a map with `buckets` buckets:
/// indexmap keeps its entries' capacity equal to the index's.
fn map_blocks(buckets: usize) -> usize {
    if buckets == 0 {
        return 0;
    }
    let index = buckets
        .saturating_mul(INDEX_SLOT)
        .saturating_add(buckets)
        .saturating_add(CTRL_GROUP);
    let entries = table_capacity(buckets).saturating_mul(MAP_ENTRY);
    block(index).saturating_add(block(entries))
}

/// The blocks a `serde_json::Map` of `n` entries built by inserts holds at the
/// end, and the entries block it held before its last growth (live, with the
/// new one, while the entries move).
pub(crate) fn object(n: usize) -> (usize, usize) {
    let b = buckets(n);
    let previous = if b > 4 {
        block(table_capacity(b / 2).saturating_mul(MAP_ENTRY))
    } else {
        0
    };
    (map_blocks(b), previous)
}

/// What inserting one more key into a map of `len` entries allocates: the new
/// index and entries blocks when it grows, else nothing. The old blocks are
/// freed after the move; charging each growth in full and never crediting the
/// freed blocks covers the moment both are live.
pub(crate) fn map_growth(len: usize) -> usize {
    let now = buckets(len);
    let next = buckets(len.saturating_add(1));
    if next == now {
        0
    } else {
        map_blocks(next)
    }
}

/// What pushing one more value onto an array of `len` values and `capacity`
/// allocates (the new block when it grows).
pub(crate) fn array_growth(len: usize, capacity: usize) -> usize {
    if len < capacity {
        0
    } else {
        let cap = capacity.saturating_mul(2).max(4);
        block(cap.saturating_mul(VALUE))
    }
}

/// What `String::push_str` of `extra` bytes onto a string of `len` bytes and
/// `capacity` allocates (amortized growth: at least double, at least 8).
pub(crate) fn string_growth(len: usize, capacity: usize, extra: usize) -> usize {
    let needed = len.saturating_add(extra);
    if needed <= capacity {
        0
    } else {
        block(capacity.saturating_mul(2).max(needed).max(8))
    }
}

/// A `serde_json::Number` parsed from `len` characters of JSON. With
/// `arbitrary_precision` it is a `String`: sized exactly for an integer that
/// fits 64 bits (at most 20 digits), else the parser's own buffer, which
/// starts at 16 bytes, doubles, and may gain a `+` in the exponent.
pub(crate) fn number(len: usize) -> usize {
    block(len.saturating_add(1).max(16).next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn sizes_are_those_of_the_real_types() {
        // A Map is indexmap's entries vector and hash table plus the hasher.
        assert!(VALUE >= size_of::<Map<String, Value>>());
        assert_eq!(MAP_ENTRY, 8 + 24 + VALUE);
    }

    #[test]
    fn glibc_blocks() {
        assert_eq!(block(0), 0);
        assert_eq!(block(1), 32);
        assert_eq!(block(24), 32);
        assert_eq!(block(25), 48);
        assert_eq!(block(1000), 1008);
    }

    #[test]
    fn growth_steps_match_the_final_sizes() {
        let mut total = 0;
        for len in 0..1000 {
            total += map_growth(len);
            let (held, _) = object(len + 1);
            assert!(total >= held, "{len}");
        }
        assert_eq!(map_growth(0), object(1).0);
        assert_eq!(map_growth(1), 0);
        assert_eq!(buckets(3), 4);
        assert_eq!(buckets(4), 8);
        assert_eq!(buckets(15), 32);
        assert_eq!(buckets(28), 32);
        assert_eq!(buckets(29), 64);
    }
}
