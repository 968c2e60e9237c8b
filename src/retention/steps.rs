//! Retention steps: deleting finished events (with their attempts, by the
//! foreign key's cascade) once they are older than their workflow's
//! retention (webhook_set_retention) or the server's
//! (webhook.retain_succeeded, webhook.retain_dead). Pending and failed
//! events are never removed.
//!
//! Each step is one statement in a transaction of its own: it takes the
//! workflows after a cursor (a few hundred, in id order, wrapping around),
//! and from each at most [`STEP_ROWS`] of its oldest finished events through
//! its (workflow_id, received_at) index, so no index is added to the ingest
//! path, no statement reads more than it deletes plus the old unfinished
//! events it skips, and no lock is held longer than one step. The rows it
//! deletes are finished: no executor and no request waits for them, and it
//! skips rows another session holds. A round repeats steps while they find
//! a full step's worth or have not looked at every workflow.

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
/// A round that still finds events to delete after this long ends anyway,
/// so that the process reads its settings and checks the extension again.
const ROUND_SLICE: Duration = Duration::from_secs(1);

/// `$1` the cursor (the last workflow id of the previous step, NULL: from
/// the start), `$2`/`$3` the server's retention of succeeded and dead events
/// (seconds; NULL: for ever), `$4` [`STEP_WORKFLOWS`], `$5` [`STEP_ROWS`].
/// An event's age counts from when its last attempt ended (`handled_at`);
/// `received_at`, never later, bounds the index scan. A workflow with
/// `max_events` also lets go of its finished events up to `cut`, the newest
/// event past the `max_events` newest (found by reading that many entries
/// of its index backwards, at most a million); the scan's bound is then the
/// later of the two.
const DELETE_STEP: &str = "
WITH w AS (
    SELECT w.id,
           COALESCE(w.retain_succeeded, pg_catalog.make_interval(secs => $2)) AS keep_succeeded,
           COALESCE(w.retain_dead, pg_catalog.make_interval(secs => $3)) AS keep_dead,
           w.max_events
      FROM webhook.workflows w
     WHERE $1::pg_catalog.uuid IS NULL OR w.id OPERATOR(pg_catalog.>) $1::pg_catalog.uuid
     ORDER BY w.id
     LIMIT $4
), old AS (
    SELECT x.ctid AS row_id
      FROM w
           LEFT JOIN LATERAL (
           SELECT y.received_at, y.id FROM webhook.events y
            WHERE y.workflow_id OPERATOR(pg_catalog.=) w.id
              AND w.max_events IS NOT NULL
            ORDER BY y.received_at DESC, y.id DESC
           OFFSET w.max_events
            LIMIT 1) cut ON true
           CROSS JOIN LATERAL (
           SELECT x.ctid FROM webhook.events x
            WHERE x.workflow_id OPERATOR(pg_catalog.=) w.id
              AND x.received_at OPERATOR(pg_catalog.<=) GREATEST(
                  pg_catalog.now() OPERATOR(pg_catalog.-) LEAST(w.keep_succeeded, w.keep_dead),
                  cut.received_at)
              AND x.next_attempt_at IS NULL
              AND (COALESCE(x.handled_at, x.received_at) OPERATOR(pg_catalog.<)
                   (pg_catalog.now() OPERATOR(pg_catalog.-)
                    CASE WHEN x.status OPERATOR(pg_catalog.=) 'succeeded'
                         THEN w.keep_succeeded ELSE w.keep_dead END)
                   OR x.received_at OPERATOR(pg_catalog.<) cut.received_at
                   OR (x.received_at OPERATOR(pg_catalog.=) cut.received_at
                       AND x.id OPERATOR(pg_catalog.<=) cut.id))
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

/// Why a round ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundEnd {
    /// Every workflow was looked at with nothing more to delete, a step
    /// failed (a lock held, the extension dropped), or the process stops.
    Done,
    /// Its time slice passed with more to delete: the next round starts at once.
    MoreLeft,
}

impl Retention {
    /// One round: steps until the workflows were all looked at with nothing
    /// more to delete, `stop()` says so, or [`ROUND_SLICE`] has passed.
    pub fn run_round(&mut self, mut stop: impl FnMut() -> bool) -> RoundEnd {
        let (succeeded, dead) = (
            seconds(gucs::RETAIN_SUCCEEDED_S.get()),
            seconds(gucs::RETAIN_DEAD_S.get()),
        );
        let started = Instant::now();
        let mut wrapped = false;
        loop {
            if stop() {
                return RoundEnd::Done;
            }
            if started.elapsed() >= ROUND_SLICE {
                return RoundEnd::MoreLeft;
            }
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
                        pgrx::warning!("webhook_ext retention could not delete old events: {why}");
                    }
                    return RoundEnd::Done;
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
                    return RoundEnd::Done;
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
        // the retention time, up to a second in a step
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
