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
//! skips rows another session holds. A round passes over the workflows
//! until a whole pass finds nothing to delete; a workflow with a backlog
//! gets one full step a pass, and one whose steps fail is passed over.

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
/// (seconds; NULL: for ever), `$4` how many workflows ([`STEP_WORKFLOWS`],
/// or 1 after a failure), `$5` [`STEP_ROWS`]. A retention past 1000 years
/// counts as for ever (the time it reaches back to would be out of range).
/// An event's age counts from when its last attempt ended (`handled_at`);
/// `received_at`, never later, bounds the index scan. A workflow with
/// `max_events` also lets go of its finished events up to `cut`, the newest
/// event past the `max_events` newest (found by reading that many entries
/// of its index backwards, at most a million); the scan's bound is then the
/// later of the two.
const DELETE_STEP: &str = "
WITH w AS (
    SELECT w.id,
           CASE WHEN k.succeeded OPERATOR(pg_catalog.<=) '1000 years'::pg_catalog.interval
                THEN k.succeeded END AS keep_succeeded,
           CASE WHEN k.dead OPERATOR(pg_catalog.<=) '1000 years'::pg_catalog.interval
                THEN k.dead END AS keep_dead,
           w.max_events
      FROM webhook.workflows w
           CROSS JOIN LATERAL (
           SELECT COALESCE(w.retain_succeeded, pg_catalog.make_interval(secs => $2)) AS succeeded,
                  COALESCE(w.retain_dead, pg_catalog.make_interval(secs => $3)) AS dead) k
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
    RETURNING e.workflow_id
)
SELECT (SELECT pg_catalog.count(*) FROM gone) AS deleted,
       (SELECT pg_catalog.count(*) FROM w) AS workflows,
       (SELECT w.id FROM w ORDER BY w.id DESC LIMIT 1) AS last_workflow,
       (SELECT g.workflow_id FROM gone g ORDER BY g.workflow_id DESC LIMIT 1) AS last_deleted_from";

/// Where the next step starts.
#[derive(Default)]
pub struct Retention {
    cursor: Option<Uuid>,
    /// A step failed: steps take one workflow at a time until the end of
    /// the workflows, so that the one that fails is found and passed over
    /// instead of holding up every other.
    one_at_a_time: bool,
}

/// What one step did.
struct Step {
    deleted: i64,
    workflows: i64,
    last_workflow: Option<Uuid>,
    /// The last workflow (in id order) it deleted from.
    last_deleted_from: Option<Uuid>,
}

/// Why a round ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RoundEnd {
    /// A pass over the workflows left no backlog, or the process stops.
    Done,
    /// Its time slice passed: the next round starts at once.
    MoreLeft,
}

impl Retention {
    /// One round: passes over the workflows in id order until one leaves no
    /// backlog (no full step), `stop()` says so, or [`ROUND_SLICE`] has
    /// passed. After a full step the next one starts past the last
    /// workflow it deleted from, so that a workflow with a long backlog
    /// gets one step a pass and holds up no other.
    pub fn run_round(&mut self, mut stop: impl FnMut() -> bool) -> RoundEnd {
        let (succeeded, dead) = (
            seconds(gucs::RETAIN_SUCCEEDED_S.get()),
            seconds(gucs::RETAIN_DEAD_S.get()),
        );
        let started = Instant::now();
        let mut whole_pass = self.cursor.is_none();
        let (mut deleted_in_pass, mut full_steps_in_pass) = (0, 0);
        loop {
            if stop() {
                return RoundEnd::Done;
            }
            if started.elapsed() >= ROUND_SLICE {
                return RoundEnd::MoreLeft;
            }
            let width = if self.one_at_a_time {
                1
            } else {
                STEP_WORKFLOWS
            };
            let step = match in_transaction(|| step(self.cursor, succeeded, dead, width)) {
                Ok(Ok(step)) => step,
                failed => {
                    let why = match failed {
                        Ok(Err(spi)) => spi.to_string(),
                        Err(caught) => caught.describe(),
                        Ok(Ok(_)) => unreachable!("matched above"),
                    };
                    if self.pass_over_failure(&why) {
                        continue;
                    }
                    return RoundEnd::Done;
                }
            };
            deleted_in_pass += step.deleted;
            if step.deleted >= STEP_ROWS {
                // More may be left: after the others' turn.
                full_steps_in_pass += 1;
                self.cursor = step.last_deleted_from.or(step.last_workflow);
            } else if step.workflows < width {
                // The last workflows: the next pass starts from the first.
                // A pass without a full step left no backlog behind (what
                // comes of age meanwhile waits for the next round), unless
                // it started part-way and the first workflows are still to
                // be looked at.
                self.cursor = None;
                self.one_at_a_time = false;
                if full_steps_in_pass == 0 && (whole_pass || deleted_in_pass == 0) {
                    return RoundEnd::Done;
                }
                whole_pass = true;
                (deleted_in_pass, full_steps_in_pass) = (0, 0);
            } else {
                self.cursor = step.last_workflow;
            }
        }
    }

    /// After a failed step: steps of one workflow from the same cursor, or,
    /// when that one already failed alone, a warning naming it and a cursor
    /// past it. False when there is nothing to pass over (the workflows
    /// cannot even be read): the round ends.
    fn pass_over_failure(&mut self, why: &str) -> bool {
        static FAILED: OncePerMinute = OncePerMinute::new();
        if !self.one_at_a_time {
            self.one_at_a_time = true;
            return true;
        }
        let Ok(Ok(failing)) = in_transaction(|| next_workflow(self.cursor)) else {
            if FAILED.due() {
                pgrx::warning!("webhook_ext retention could not delete old events: {why}");
            }
            return false;
        };
        if FAILED.due() {
            let which = failing.map_or_else(|| "?".to_string(), |id| id.to_string());
            pgrx::warning!(
                "webhook_ext retention could not delete old events of workflow {which} (passed over until the next pass): {why}"
            );
        }
        match failing {
            Some(id) => {
                self.cursor = Some(id);
                true
            }
            None => {
                self.cursor = None;
                self.one_at_a_time = false;
                false
            }
        }
    }
}

/// The first workflow past the cursor, in id order.
fn next_workflow(cursor: Option<Uuid>) -> Result<Option<Uuid>, pgrx::spi::Error> {
    Spi::get_one_with_args::<pgrx::Uuid>(
        "SELECT w.id FROM webhook.workflows w
          WHERE $1::pg_catalog.uuid IS NULL OR w.id OPERATOR(pg_catalog.>) $1::pg_catalog.uuid
          ORDER BY w.id LIMIT 1",
        &[DatumWithOid::from(cursor.map(pg_uuid))],
    )
    .map(|id| id.map(|id| Uuid::from_bytes(*id.as_bytes())))
}

/// A retention setting in seconds; `None` (for ever) when negative.
fn seconds(setting: i32) -> Option<f64> {
    (setting >= 0).then_some(f64::from(setting))
}

fn step(
    cursor: Option<Uuid>,
    succeeded: Option<f64>,
    dead: Option<f64>,
    workflows: i64,
) -> Result<Step, pgrx::spi::Error> {
    Spi::connect_mut(|client| {
        let args = [
            DatumWithOid::from(cursor.map(pg_uuid)),
            DatumWithOid::from(succeeded),
            DatumWithOid::from(dead),
            DatumWithOid::from(workflows),
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
            last_deleted_from: row
                .get_by_name::<pgrx::Uuid, _>("last_deleted_from")?
                .map(|id| Uuid::from_bytes(*id.as_bytes())),
        })
    })
}
