//! Retention: deletes finished events (with their attempts, by the foreign
//! key's cascade) once they are older than their workflow's retention
//! (webhook_set_retention) or the server's (webhook.retain_succeeded,
//! webhook.retain_dead). Pending and failed events are never removed.
//!
//! The first listener runs it once a second, in bounded steps: each
//! statement takes the workflows after a cursor (a few hundred, in id order,
//! wrapping around), and from each at most [`STEP_ROWS`] of its oldest
//! finished events through its (workflow_id, received_at) index, so no index
//! is added to the ingest path and no statement reads more than it deletes
//! plus the old unfinished events it skips. Steps repeat while they find a
//! full step's worth, and none starts after [`ROUND_BUDGET`] of the round
//! (a round lasts that plus its last step: 65 to 90 ms measured by
//! tests/e2e/test_retention.py). The rows it deletes are finished: no executor and no request
//! waits for them, and it skips rows another session holds.

use std::time::{Duration, Instant};

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use uuid::Uuid;

use crate::pg::catalog::pg_uuid;
use crate::pg::gucs;
use crate::pg::log_rarely::OncePerMinute;
use crate::pg::spi::{in_transaction, with_settings, ORDERED_INDEX_SCANS};

/// Rows one statement deletes at most.
const STEP_ROWS: i64 = 1000;
/// Workflows one statement looks at.
const STEP_WORKFLOWS: i64 = 200;
/// After this much of a round (a second), retention starts no new step.
const ROUND_BUDGET: Duration = Duration::from_millis(50);

/// `$1` the cursor (the last workflow id of the previous step, NULL: from
/// the start), `$2`/`$3` the server's retention of succeeded and dead events
/// (seconds; NULL: for ever), `$4` [`STEP_WORKFLOWS`], `$5` [`STEP_ROWS`].
/// An event's age counts from when its last attempt ended (`handled_at`);
/// `received_at`, never later, bounds the index scan.
const DELETE_STEP: &str = "
WITH w AS (
    SELECT w.id,
           COALESCE(w.retain_succeeded, pg_catalog.make_interval(secs => $2)) AS keep_succeeded,
           COALESCE(w.retain_dead, pg_catalog.make_interval(secs => $3)) AS keep_dead
      FROM webhook.workflows w
     WHERE $1::pg_catalog.uuid IS NULL OR w.id OPERATOR(pg_catalog.>) $1::pg_catalog.uuid
     ORDER BY w.id
     LIMIT $4
), old AS (
    SELECT x.ctid AS row_id
      FROM w CROSS JOIN LATERAL (
           SELECT x.ctid FROM webhook.events x
            WHERE x.workflow_id OPERATOR(pg_catalog.=) w.id
              AND x.received_at OPERATOR(pg_catalog.<)
                  (pg_catalog.now() OPERATOR(pg_catalog.-) LEAST(w.keep_succeeded, w.keep_dead))
              AND x.next_attempt_at IS NULL
              AND COALESCE(x.handled_at, x.received_at) OPERATOR(pg_catalog.<)
                  (pg_catalog.now() OPERATOR(pg_catalog.-)
                   CASE WHEN x.status OPERATOR(pg_catalog.=) 'succeeded'
                        THEN w.keep_succeeded ELSE w.keep_dead END)
            ORDER BY x.received_at
            LIMIT $5
              FOR UPDATE OF x SKIP LOCKED) x
     LIMIT $5
), gone AS (
    DELETE FROM webhook.events e
     WHERE e.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT o.row_id FROM old o))
    RETURNING 1
)
SELECT (SELECT pg_catalog.count(*) FROM gone) AS deleted,
       (SELECT pg_catalog.count(*) FROM w) AS workflows,
       (SELECT w.id FROM w ORDER BY w.id DESC LIMIT 1) AS last_workflow";

/// Where the next step starts.
#[derive(Default)]
pub struct Retention {
    cursor: Option<Uuid>,
}

/// What one step did.
struct Step {
    deleted: i64,
    workflows: i64,
    last_workflow: Option<Uuid>,
}

impl Retention {
    /// One round: steps until the workflows were all looked at with nothing
    /// more to delete, or the round's budget is spent. A failure (a lock
    /// held, the extension dropped) ends the round; the next one tries
    /// again.
    pub fn run_round(&mut self) {
        let (succeeded, dead) = (
            seconds(gucs::RETAIN_SUCCEEDED_S.get()),
            seconds(gucs::RETAIN_DEAD_S.get()),
        );
        let started = Instant::now();
        let mut wrapped = false;
        while started.elapsed() < ROUND_BUDGET {
            let step = match in_transaction(|| step(self.cursor, succeeded, dead)) {
                Ok(Ok(step)) => step,
                failed => {
                    static FAILED: OncePerMinute = OncePerMinute::new();
                    if FAILED.due() {
                        let why = match failed {
                            Ok(Err(spi)) => spi.to_string(),
                            Err(caught) => caught.describe(),
                            Ok(Ok(_)) => unreachable!("matched above"),
                        };
                        pgrx::warning!("webhook_ext listener could not delete old events: {why}");
                    }
                    return;
                }
            };
            if step.deleted >= STEP_ROWS {
                // More may be left in these workflows: the same ones again.
                continue;
            }
            if step.workflows < STEP_WORKFLOWS {
                // The last workflows: the next step starts from the first.
                self.cursor = None;
                if wrapped || step.deleted == 0 {
                    return;
                }
                wrapped = true;
            } else {
                self.cursor = step.last_workflow;
            }
        }
    }
}

/// A retention setting in seconds; `None` (for ever) when negative.
fn seconds(setting: i32) -> Option<f64> {
    (setting >= 0).then_some(f64::from(setting))
}

fn step(
    cursor: Option<Uuid>,
    succeeded: Option<f64>,
    dead: Option<f64>,
) -> Result<Step, pgrx::spi::Error> {
    Spi::connect_mut(|client| {
        let args = [
            DatumWithOid::from(cursor.map(pg_uuid)),
            DatumWithOid::from(succeeded),
            DatumWithOid::from(dead),
            DatumWithOid::from(STEP_WORKFLOWS),
            DatumWithOid::from(STEP_ROWS),
        ];
        // Each workflow's oldest events through its (workflow_id,
        // received_at) index, in order, whatever the statistics say: planned
        // on stale ones (before autovacuum first analyzed a table that grows
        // fast) the step became a bitmap scan and a sort of every event past
        // the retention time, up to a second on the listener's main thread
        // (bench/README.md).
        let table = with_settings(ORDERED_INDEX_SCANS, || {
            client.update(DELETE_STEP, Some(1), &args)
        })?;
        let row = table.first();
        Ok(Step {
            deleted: row.get_by_name::<i64, _>("deleted")?.unwrap_or(0),
            workflows: row.get_by_name::<i64, _>("workflows")?.unwrap_or(0),
            last_workflow: row
                .get_by_name::<pgrx::Uuid, _>("last_workflow")?
                .map(|id| Uuid::from_bytes(*id.as_bytes())),
        })
    })
}
