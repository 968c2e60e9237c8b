//! Events consumed by applications instead of a SQL handler: the writes
//! behind `webhook_read`, `webhook_ack` and `webhook_nack` (sql/api.sql).
//!
//! A read is an attempt: it hides the event for the visibility timeout and
//! records the attempt at once, as `timeout` ending when the timeout does,
//! so the attempts log is right whether or not the consumer ever comes back;
//! an ack or a nack of that attempt makes it `succeeded` or `failed`. The
//! workflow's retry policy decides, as for a SQL handler: a nack after the
//! last attempt, or a read's timeout after it, makes the event `dead`.
//!
//! Tenants hold no UPDATE privilege on the events (src/privileged.rs says
//! why), so each function first finds the workflow or the event *as the
//! caller* (row-level security decides), then writes as the extension's
//! owner with a pinned search_path.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use webhook_core::retry::{AfterFailure, RetryPolicy};

use crate::pg::errors::SqlError;
use crate::pg::gucs;
use crate::pg::spi::{as_role_with_safe_path, with_settings, ORDERED_INDEX_SCANS};
use crate::privileged::{extension_owner, require_workflow};

/// Adds outcomes to the caller's own counters row (keyed by its PGPROC
/// number, as listeners and executors do: src/execution/attempts.rs).
const COUNT: &str = "
INSERT INTO webhook.workflow_counters AS c (workflow_id, writer, succeeded, failed_attempts, dead)
SELECT $1, $2, $3, $4, $5
 WHERE $3 OPERATOR(pg_catalog.+) $4 OPERATOR(pg_catalog.+) $5 OPERATOR(pg_catalog.>) 0
ON CONFLICT (workflow_id, writer)
DO UPDATE SET succeeded = c.succeeded OPERATOR(pg_catalog.+) EXCLUDED.succeeded,
              failed_attempts = c.failed_attempts OPERATOR(pg_catalog.+) EXCLUDED.failed_attempts,
              dead = c.dead OPERATOR(pg_catalog.+) EXCLUDED.dead,
              updated_at = pg_catalog.now()";

/// How a read's own attempt row is told from a handler's timed-out one
/// (which has the SQLSTATE that ended it): outcome `timeout`, no SQLSTATE,
/// this message. It stays so when the reader never comes back.
const OPEN_READ: &str = "no acknowledgement within the visibility timeout";

/// `$1` the workflow, `$2` how many, `$3` the visibility timeout (seconds),
/// `$4` its attempts in all, `$5` whether it is ordered, `$6` [`OPEN_READ`].
/// Events whose last attempt is spent go dead first (a bounded number,
/// found through events_retry_due_idx: only events read or run before are
/// in it); then the due ones, in the order they arrived (through
/// events_unfinished_idx, passing over those in flight; an ordered
/// workflow's only when no earlier one is unfinished, as executors claim
/// them), are hidden and get their attempt. Returns the ids read, how many went dead, and how many of
/// both had a read that timed out as their last attempt.
const READ: &str = "
WITH expired AS (
    UPDATE webhook.events e
       SET status = 'dead', next_attempt_at = NULL, handled_at = pg_catalog.now(),
           error = CASE WHEN EXISTS (
                       SELECT FROM webhook.attempts a
                        WHERE a.event_id OPERATOR(pg_catalog.=) e.id
                          AND a.attempt OPERATOR(pg_catalog.=) e.attempts
                          AND a.outcome OPERATOR(pg_catalog.=) 'timeout' AND a.sqlstate IS NULL
                          AND a.message OPERATOR(pg_catalog.=) $6)
                        THEN 'no acknowledgement within the visibility timeout of the last attempt'
                        ELSE e.error END
     WHERE e.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
           SELECT x.ctid FROM webhook.events x
            WHERE x.workflow_id OPERATOR(pg_catalog.=) $1
              AND x.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
              AND x.attempts OPERATOR(pg_catalog.>) 0
              AND x.attempts OPERATOR(pg_catalog.>=) $4
            ORDER BY x.workflow_id, x.next_attempt_at
            LIMIT 1000
              FOR UPDATE OF x SKIP LOCKED))
    RETURNING e.id, e.attempts
), due AS (
    SELECT x.id, x.attempts FROM webhook.events x
     WHERE x.workflow_id OPERATOR(pg_catalog.=) $1
       AND x.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
       AND x.attempts OPERATOR(pg_catalog.<) $4
       AND NOT ($5 AND EXISTS (
           SELECT FROM webhook.events p
            WHERE p.workflow_id OPERATOR(pg_catalog.=) x.workflow_id
              AND p.next_attempt_at IS NOT NULL AND p.id OPERATOR(pg_catalog.<) x.id))
     ORDER BY x.workflow_id, x.id
     LIMIT $2
       FOR UPDATE OF x SKIP LOCKED
), read AS (
    UPDATE webhook.events e
       SET attempts = e.attempts OPERATOR(pg_catalog.+) 1,
           next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3)
      FROM due d
     WHERE e.id OPERATOR(pg_catalog.=) d.id
    RETURNING e.id, e.attempts
), logged AS (
    INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome, message)
    SELECT r.id, r.attempts, $1, pg_catalog.now(),
           pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $3),
           'timeout', $6
      FROM read r
)
SELECT COALESCE((SELECT pg_catalog.array_agg(r.id ORDER BY r.id) FROM read r), '{}') AS ids,
       (SELECT pg_catalog.count(*) FROM expired) AS dead,
       (SELECT pg_catalog.count(*)
          FROM (SELECT d.id, d.attempts FROM due d
                UNION ALL SELECT x.id, x.attempts FROM expired x) p
          JOIN webhook.attempts a ON a.event_id OPERATOR(pg_catalog.=) p.id
                                 AND a.attempt OPERATOR(pg_catalog.=) p.attempts
         WHERE a.outcome OPERATOR(pg_catalog.=) 'timeout' AND a.sqlstate IS NULL
           AND a.message OPERATOR(pg_catalog.=) $6) AS timed_out";

/// `$1` the event, `$2` whether it is an ack, `$3` the attempt the caller
/// read (NULL: the last), `$4` [`OPEN_READ`]: the read in flight (not acked,
/// nacked or dead since), locked. A nack after the read's visibility
/// timeout finds none: the event is due again, maybe read by another.
const IN_FLIGHT: &str = "
SELECT e.attempts, e.workflow_id
  FROM webhook.events e
  JOIN webhook.attempts a ON a.event_id OPERATOR(pg_catalog.=) e.id
                         AND a.attempt OPERATOR(pg_catalog.=) e.attempts
 WHERE e.id OPERATOR(pg_catalog.=) $1
   AND e.next_attempt_at IS NOT NULL
   AND ($3::pg_catalog.int4 IS NULL OR e.attempts OPERATOR(pg_catalog.=) $3::pg_catalog.int4)
   AND a.outcome OPERATOR(pg_catalog.=) 'timeout' AND a.sqlstate IS NULL
   AND a.message OPERATOR(pg_catalog.=) $4
   AND ($2 OR a.ended_at OPERATOR(pg_catalog.>) pg_catalog.now())
   FOR UPDATE OF e, a";

/// `$1` the event, `$2` its attempt, `$3` the new status, `$4` when it is
/// due again (seconds from now; NULL: finished), `$5` the attempt's outcome,
/// `$6` its message (the event's error).
const FINISH: &str = "
WITH attempt AS (
    UPDATE webhook.attempts a
       SET outcome = $5, ended_at = pg_catalog.now(), message = $6
     WHERE a.event_id OPERATOR(pg_catalog.=) $1 AND a.attempt OPERATOR(pg_catalog.=) $2
)
UPDATE webhook.events e
   SET status = $3, error = $6, handled_at = pg_catalog.now(),
       next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $4)
 WHERE e.id OPERATOR(pg_catalog.=) $1";

/// The most a read may hide its events, in seconds (webhook_read's 12 hours).
const MAX_VISIBILITY_S: f64 = 43_200.0;
/// The most events one read returns.
const MAX_READ: i32 = 1000;

/// What the queue functions need of a workflow, read in one statement.
struct QueueSettings {
    queued: bool,
    ordered: bool,
    /// Its retry policy within the server's limits.
    retry: RetryPolicy,
}

/// `$1` the workflow; as the caller, so row-level security decides.
const SETTINGS: &str = "
SELECT w.queued, w.ordered, w.max_attempts,
       extract(epoch FROM w.retry_delay)::pg_catalog.float8,
       extract(epoch FROM w.retry_max_delay)::pg_catalog.float8
  FROM webhook.workflows w WHERE w.id OPERATOR(pg_catalog.=) $1";

/// The workflow's queue settings as the caller sees them (None: it does not
/// see it); with `lock`, its row locked so that a tenant's old snapshot
/// cannot act past an owner change.
fn queue_settings(workflow: pgrx::Uuid, lock: bool) -> Option<QueueSettings> {
    let sql = if lock {
        format!("{SETTINGS} FOR SHARE")
    } else {
        SETTINGS.to_string()
    };
    // Not read-only: FOR SHARE locks.
    Spi::connect_mut(|client| {
        let rows = client.update(&sql, Some(1), &[DatumWithOid::from(workflow)])?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        let seconds =
            |s: Option<f64>| std::time::Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
        Ok(Some(QueueSettings {
            queued: row.get::<bool>(1)?.unwrap_or(false),
            ordered: row.get::<bool>(2)?.unwrap_or(false),
            retry: RetryPolicy {
                max_attempts: row.get::<i32>(3)?.unwrap_or(1).max(1) as u32,
                base_delay: seconds(row.get::<f64>(4)?),
                max_delay: seconds(row.get::<f64>(5)?),
                min_delay: std::time::Duration::ZERO,
            }
            .within(gucs::retry_limits()),
        }))
    })
    .unwrap_or_else(|e: pgrx::spi::Error| {
        SqlError::internal("could not read the workflow", e).report()
    })
}

/// Runs `f` as the extension's owner with a pinned search_path.
fn as_extension_owner<R>(f: impl FnOnce() -> Result<R, pgrx::spi::Error>) -> R {
    as_role_with_safe_path(extension_owner(), f)
        .unwrap_or_else(|e| SqlError::internal("could not update the event", e).report())
}

fn count(workflow: pgrx::Uuid, succeeded: i64, failed: i64, dead: i64) {
    let writer = crate::execution::my_procno();
    as_extension_owner(|| {
        Spi::run_with_args(
            COUNT,
            &[
                DatumWithOid::from(workflow),
                DatumWithOid::from(writer),
                DatumWithOid::from(succeeded),
                DatumWithOid::from(failed),
                DatumWithOid::from(dead),
            ],
        )
    });
}

/// The event's read in flight (its attempt) and its workflow, if the caller
/// sees the event (else "does not exist") and a read of it is in flight.
fn in_flight(event: i64, ack: bool, attempt: Option<i32>) -> Option<(i32, pgrx::Uuid)> {
    let visible = Spi::get_one_with_args::<pgrx::Uuid>(
        "SELECT w.id FROM webhook.events e
           JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) e.workflow_id
          WHERE e.id OPERATOR(pg_catalog.=) $1 FOR SHARE OF w",
        &[DatumWithOid::from(event)],
    )
    .unwrap_or(None);
    if visible.is_none() {
        SqlError::EventNotFound(event).report();
    }
    as_extension_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                IN_FLIGHT,
                Some(1),
                &[
                    DatumWithOid::from(event),
                    DatumWithOid::from(ack),
                    DatumWithOid::from(attempt),
                    DatumWithOid::from(OPEN_READ),
                ],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            Ok(row.get::<i32>(1)?.zip(row.get::<pgrx::Uuid>(2)?))
        })
    })
}

#[pg_schema]
mod webhook {
    use super::*;

    /// Reads up to `qty` due events of a workflow the caller owns, hiding
    /// them for `visibility_s` seconds; returns their ids.
    #[pg_extern(volatile)]
    fn _read_events(workflow: pgrx::Uuid, qty: i32, visibility_s: f64) -> Vec<i64> {
        let Some(settings) = queue_settings(workflow, true) else {
            // Raises the one message for a workflow the caller does not see.
            require_workflow(workflow, false);
            SqlError::internal("could not read the workflow", "it vanished").report()
        };
        if !settings.queued {
            SqlError::NotQueued(workflow.to_string()).report();
        }
        if !(1..=MAX_READ).contains(&qty) {
            SqlError::QueueArgument(format!("qty must be between 1 and {MAX_READ}")).report();
        }
        if !(visibility_s > 0.0 && visibility_s <= MAX_VISIBILITY_S) {
            SqlError::QueueArgument(
                "visibility_timeout must be positive and at most 12 hours".to_string(),
            )
            .report();
        }
        let max_attempts = i32::try_from(settings.retry.max_attempts).unwrap_or(i32::MAX);
        let (ids, dead, timed_out) = as_extension_owner(|| {
            Spi::connect_mut(|client| {
                // Planned as the index walks above whatever the statistics
                // say (a queue table's change faster than they do).
                let rows = with_settings(ORDERED_INDEX_SCANS, || {
                    client.update(
                        READ,
                        Some(1),
                        &[
                            DatumWithOid::from(workflow),
                            DatumWithOid::from(qty),
                            DatumWithOid::from(visibility_s),
                            DatumWithOid::from(max_attempts),
                            DatumWithOid::from(settings.ordered),
                            DatumWithOid::from(OPEN_READ),
                        ],
                    )
                })?;
                let row = rows.first();
                Ok((
                    row.get::<Vec<i64>>(1)?.unwrap_or_default(),
                    row.get::<i64>(2)?.unwrap_or(0),
                    row.get::<i64>(3)?.unwrap_or(0),
                ))
            })
        });
        // A read that timed out is a failed attempt, counted when its event
        // is read again or goes dead (a nack counted its own).
        count(workflow, 0, timed_out, dead);
        ids
    }

    /// Finishes the read in flight of an event the caller sees (`attempt`,
    /// when given, the one it read): succeeded (`ok`), or failed and retried
    /// after `delay_s` seconds (NULL: the retry policy's backoff) unless
    /// that was its last attempt. False when no such read is in flight.
    #[pg_extern(volatile)]
    fn _finish_event(
        event: i64,
        ok: bool,
        delay_s: Option<f64>,
        error: Option<String>,
        attempt: Option<i32>,
    ) -> bool {
        let Some((attempt, workflow)) = in_flight(event, ok, attempt) else {
            return false;
        };
        let (status, due_in, outcome, message, tally) = if ok {
            ("succeeded", None, "succeeded", None, (1, 0, 0))
        } else {
            let message = Some(error.unwrap_or_else(|| "returned by webhook_nack".to_string()));
            // The caller saw the event: it sees its workflow.
            let retry = queue_settings(workflow, false)
                .map(|w| w.retry)
                .unwrap_or_default();
            match retry.after_failure(attempt.max(1) as u32, crate::execution::jitter()) {
                AfterFailure::Dead => ("dead", None, "failed", message, (0, 1, 1)),
                AfterFailure::RetryIn(backoff) => (
                    "failed",
                    Some(
                        delay_s
                            .map_or(backoff.as_secs_f64(), |d| d.max(0.0))
                            .min(crate::execution::MAX_RETRY_DELAY_SECS),
                    ),
                    "failed",
                    message,
                    (0, 1, 0),
                ),
            }
        };
        as_extension_owner(|| {
            Spi::run_with_args(
                FINISH,
                &[
                    DatumWithOid::from(event),
                    DatumWithOid::from(attempt),
                    DatumWithOid::from(status),
                    DatumWithOid::from(due_in),
                    DatumWithOid::from(outcome),
                    DatumWithOid::from(message),
                ],
            )
        });
        count(workflow, tally.0, tally.1, tally.2);
        true
    }
}
