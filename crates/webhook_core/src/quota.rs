//! Storage quotas: how many bytes of events a workflow, or all of one
//! owner's workflows together, may store per window of time (a count is
//! keyed by a u64 and knows nothing of whose it is), counted in fixed windows (the window is `now / length`, so every
//! process counts the same windows), in a bounded set-associative table the
//! listeners share (src/ingest/storage_quota.rs).
//!
//! The request that crosses a quota is still stored; later ones are refused
//! until the window ends. A count is forgotten only when its
//! window has ended, or, when a set has no such slot left, the smallest count
//! of the set makes room for a new workflow: the error is then at most that
//! count, and the smallest is never the count of a workflow near its quota
//! while others in the set stored more.

use serde_json::{Map, Value};

use crate::request::IncomingRequest;

/// One workflow's count in the current window. `key` 0 marks a free slot.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub key: u64,
    /// `now_secs / window_secs` when the count started.
    pub window: u64,
    pub bytes: u64,
}

/// A quota: `bytes` per `window_secs` seconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    pub bytes: u64,
    pub window_secs: u64,
}

impl Quota {
    fn window(&self, now_secs: u64) -> u64 {
        now_secs / self.window_secs.max(1)
    }

    /// Seconds until the current window ends (at least 1).
    fn seconds_left(&self, now_secs: u64) -> u64 {
        let length = self.window_secs.max(1);
        (length - now_secs % length).max(1)
    }
}

/// `Err(seconds)` until the window ends when the workflow with `key` has
/// already stored its quota in the current window; stores nothing.
pub fn check_in_set(set: &[Usage], key: u64, quota: Quota, now_secs: u64) -> Result<(), u64> {
    let window = quota.window(now_secs);
    match set.iter().find(|u| u.key == key && u.window == window) {
        Some(usage) if usage.bytes >= quota.bytes => Err(quota.seconds_left(now_secs)),
        _ => Ok(()),
    }
}

/// Adds `bytes` to the count of the workflow with `key` in the current
/// window, making room for it if it has none (see the module's comment).
pub fn charge_in_set(set: &mut [Usage], key: u64, bytes: u64, quota: Quota, now_secs: u64) {
    debug_assert_ne!(key, 0, "key 0 marks a free slot");
    let window = quota.window(now_secs);
    let index = match set.iter().position(|u| u.key == key) {
        Some(found) => found,
        None => {
            let Some(index) = set
                .iter()
                .enumerate()
                // Free slots and ended windows first, then the smallest count.
                .min_by_key(|(_, u)| (u.key != 0 && u.window == window, u.bytes))
                .map(|(index, _)| index)
            else {
                return;
            };
            set[index] = Usage {
                key,
                window,
                bytes: 0,
            };
            index
        }
    };
    let usage = &mut set[index];
    if usage.window != window {
        *usage = Usage {
            key,
            window,
            bytes: 0,
        };
    }
    usage.bytes = usage.bytes.saturating_add(bytes);
}

/// What every event counts besides what it carries: the row's and its
/// index entries' own bytes, the recorded response, the times and ids.
pub const EVENT_OVERHEAD_BYTES: u64 = 512;

/// What an event stored from `request` counts against its workflow's quota:
/// [`EVENT_OVERHEAD_BYTES`], its body text once per copy stored
/// (`body_copies`: the raw body and the parameters parsed from it), its
/// headers, and its query string three times (the query column, the
/// parameters, the raw query), names and values. An estimate made before
/// the row exists; jsonb and TOAST compression change what the disk holds.
pub fn stored_bytes(request: &IncomingRequest, body_copies: u64) -> u64 {
    let body = request.body.text().len() as u64;
    EVENT_OVERHEAD_BYTES
        + body * body_copies
        + map_bytes(&request.headers)
        + 3 * map_bytes(&request.query)
}

fn map_bytes(map: &Map<String, Value>) -> u64 {
    map.iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.len(),
                other => other.to_string().len(),
            };
            (name.len() + value) as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BodyKind, ParsedBody};
    use crate::request::BodyOutcome;

    const HOUR: Quota = Quota {
        bytes: 1000,
        window_secs: 3600,
    };

    #[test]
    fn the_request_that_crosses_the_quota_is_stored_and_later_ones_wait_for_the_window() {
        let mut set = [Usage::default(); 4];
        let now = 7200 + 100; // 100 s into a window
        assert_eq!(check_in_set(&set, 9, HOUR, now), Ok(()));
        charge_in_set(&mut set, 9, 600, HOUR, now);
        assert_eq!(check_in_set(&set, 9, HOUR, now), Ok(()));
        charge_in_set(&mut set, 9, 600, HOUR, now);
        assert_eq!(check_in_set(&set, 9, HOUR, now), Err(3500));
        assert_eq!(check_in_set(&set, 9, HOUR, now + 3499), Err(1));
        // The next window starts from nothing.
        assert_eq!(check_in_set(&set, 9, HOUR, now + 3500), Ok(()));
        charge_in_set(&mut set, 9, 10, HOUR, now + 3500);
        assert_eq!(set.iter().find(|u| u.key == 9).map(|u| u.bytes), Some(10));
        // Another workflow's count is its own.
        assert_eq!(check_in_set(&set, 8, HOUR, now + 3500), Ok(()));
    }

    #[test]
    fn room_is_made_from_free_slots_then_ended_windows_then_the_smallest_count() {
        let mut set = [Usage::default(); 3];
        let now = 3600 * 5;
        charge_in_set(&mut set, 1, 500, HOUR, now - 3600); // an ended window
        charge_in_set(&mut set, 2, 900, HOUR, now);
        charge_in_set(&mut set, 3, 100, HOUR, now);
        assert_eq!(set.iter().filter(|u| u.key != 0).count(), 3);
        charge_in_set(&mut set, 4, 5, HOUR, now);
        assert!(set.iter().all(|u| u.key != 1), "{set:?}");
        charge_in_set(&mut set, 5, 5, HOUR, now);
        // 4 (5 bytes) was the smallest: 2 and 3 keep their counts.
        let keys: Vec<u64> = set.iter().map(|u| u.key).collect();
        assert!(
            keys.contains(&2) && keys.contains(&3) && keys.contains(&5),
            "{set:?}"
        );
        assert_eq!(check_in_set(&set, 2, HOUR, now), Ok(()));
        charge_in_set(&mut set, 2, 100, HOUR, now);
        assert_eq!(check_in_set(&set, 2, HOUR, now), Err(3600));
    }

    #[test]
    fn an_event_counts_each_copy_of_its_body_and_its_query_three_times() {
        let request = IncomingRequest {
            method: "POST".into(),
            query: crate::test_support::headers(&[("a", "bc")]),
            headers: crate::test_support::headers(&[("content-type", "application/json")]),
            body: BodyOutcome::Parsed(ParsedBody {
                params: Map::new(),
                text: "{\"k\":\"0123456789\"}".into(),
                kind: BodyKind::Json,
            }),
            raw_body: Default::default(),
        };
        let extras = EVENT_OVERHEAD_BYTES + 3 * (1 + 2) + (12 + 16);
        assert_eq!(stored_bytes(&request, 2), 2 * 18 + extras);
        assert_eq!(stored_bytes(&request, 1), 18 + extras);
    }
}
