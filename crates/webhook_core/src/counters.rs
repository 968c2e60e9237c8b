//! Requests a listener accepted and redelivered per workflow, counted in the
//! process after each batch commits and added to `webhook.workflow_counters`
//! once a second (src/ingest/listener_main.rs), so that counting costs a
//! request nothing but a map update. A flush that fails puts its counts back.

use std::collections::HashMap;

use serde_json::{json, Value};
use uuid::Uuid;

/// One workflow's requests since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests whose event was stored.
    pub accepted: u64,
    /// Requests answered from an earlier event with the same delivery key.
    pub redelivered: u64,
}

impl RequestCounts {
    fn add(&mut self, other: RequestCounts) {
        self.accepted += other.accepted;
        self.redelivered += other.redelivered;
    }
}

/// Counts per workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTally {
    by_workflow: HashMap<Uuid, RequestCounts>,
}

impl RequestTally {
    pub fn accepted(&mut self, workflow: Uuid) {
        self.by_workflow.entry(workflow).or_default().accepted += 1;
    }

    pub fn redelivered(&mut self, workflow: Uuid) {
        self.by_workflow.entry(workflow).or_default().redelivered += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.by_workflow.is_empty()
    }

    pub fn clear(&mut self) {
        self.by_workflow.clear();
    }

    /// Adds another tally's counts (a committed batch's, or a failed flush's
    /// put back).
    pub fn absorb(&mut self, other: RequestTally) {
        for (workflow, counts) in other.by_workflow {
            self.by_workflow.entry(workflow).or_default().add(counts);
        }
    }

    /// The counts as the flush statement takes them: a JSON array of
    /// `{workflow_id, accepted, redelivered}` in workflow order, so that two
    /// flushes never lock rows in opposite orders.
    pub fn to_json(&self) -> Value {
        let mut rows: Vec<_> = self.by_workflow.iter().collect();
        rows.sort_unstable_by_key(|(workflow, _)| **workflow);
        Value::Array(
            rows.into_iter()
                .map(|(workflow, counts)| {
                    json!({"workflow_id": workflow, "accepted": counts.accepted,
                           "redelivered": counts.redelivered})
                })
                .collect(),
        )
    }

    pub fn get(&self, workflow: Uuid) -> RequestCounts {
        self.by_workflow.get(&workflow).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn counts_add_up_per_workflow() {
        let mut tally = RequestTally::default();
        tally.accepted(id(2));
        tally.accepted(id(2));
        tally.redelivered(id(2));
        tally.accepted(id(1));
        assert_eq!(
            tally.get(id(2)),
            RequestCounts {
                accepted: 2,
                redelivered: 1
            }
        );
        assert_eq!(tally.get(id(3)), RequestCounts::default());
    }

    #[test]
    fn a_failed_flush_put_back_loses_nothing() {
        let mut unflushed = RequestTally::default();
        unflushed.accepted(id(1));
        let taken = std::mem::take(&mut unflushed);
        assert!(unflushed.is_empty());
        // Meanwhile another batch committed.
        unflushed.accepted(id(1));
        unflushed.absorb(taken);
        assert_eq!(unflushed.get(id(1)).accepted, 2);
    }

    #[test]
    fn flush_rows_are_in_workflow_order() {
        let mut tally = RequestTally::default();
        tally.accepted(id(9));
        tally.redelivered(id(3));
        let rows = tally.to_json();
        assert_eq!(
            rows,
            json!([
                {"workflow_id": id(3), "accepted": 0, "redelivered": 1},
                {"workflow_id": id(9), "accepted": 1, "redelivered": 0}
            ])
        );
    }
}
