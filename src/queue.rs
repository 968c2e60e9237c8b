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
use crate::pg::spi::as_role_with_safe_path;
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

/// `$1` the workflow, `$2` how many, `$3` the visibility timeout (seconds),
/// `$4` its attempts in all. Events whose last attempt's timeout passed
/// unacknowledged go dead first (a bounded number); then the due ones,
/// oldest due first, are hidden and get their attempt. Returns the ids read,
/// and how many went dead.
const READ: &str = "
WITH expired AS (
    UPDATE webhook.events e
       SET status = 'dead', next_attempt_at = NULL, handled_at = pg_catalog.now(),
           error = 'no acknowledgement within the visibility timeout of the last attempt'
     WHERE e.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
           SELECT x.ctid FROM webhook.events x
            WHERE x.workflow_id OPERATOR(pg_catalog.=) $1
              AND x.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
              AND x.attempts OPERATOR(pg_catalog.>=) $4
            ORDER BY x.next_attempt_at
            LIMIT 1000
              FOR UPDATE OF x SKIP LOCKED))
    RETURNING e.id
), due AS (
    SELECT x.id FROM webhook.events x
     WHERE x.workflow_id OPERATOR(pg_catalog.=) $1
       AND x.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
       AND x.attempts OPERATOR(pg_catalog.<) $4
     ORDER BY x.next_attempt_at, x.id
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
           'timeout', 'no acknowledgement within the visibility timeout'
      FROM read r
)
SELECT COALESCE((SELECT pg_catalog.array_agg(r.id ORDER BY r.id) FROM read r), '{}') AS ids,
       (SELECT pg_catalog.count(*) FROM expired) AS dead";

/// `$1` the event: the attempt in flight (a queued workflow's event read,
/// neither acked nor nacked, nor dead since), locked.
const IN_FLIGHT: &str = "
SELECT e.attempts, e.workflow_id
  FROM webhook.events e
  JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) e.workflow_id
  JOIN webhook.attempts a ON a.event_id OPERATOR(pg_catalog.=) e.id
                         AND a.attempt OPERATOR(pg_catalog.=) e.attempts
 WHERE e.id OPERATOR(pg_catalog.=) $1
   AND w.queued
   AND e.next_attempt_at IS NOT NULL
   AND a.outcome OPERATOR(pg_catalog.=) 'timeout'
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

/// The workflow's retry policy within the server's limits.
fn retry_policy(workflow: pgrx::Uuid) -> RetryPolicy {
    let row = Spi::get_three_with_args::<i32, f64, f64>(
        "SELECT w.max_attempts,
                extract(epoch FROM w.retry_delay)::pg_catalog.float8,
                extract(epoch FROM w.retry_max_delay)::pg_catalog.float8
           FROM webhook.workflows w WHERE w.id OPERATOR(pg_catalog.=) $1",
        &[DatumWithOid::from(workflow)],
    )
    .unwrap_or_else(|e| SqlError::internal("could not read the retry policy", e).report());
    let seconds = |s: Option<f64>| std::time::Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
    RetryPolicy {
        max_attempts: row.0.unwrap_or(1).max(1) as u32,
        base_delay: seconds(row.1),
        max_delay: seconds(row.2),
        min_delay: std::time::Duration::ZERO,
    }
    .within(gucs::retry_limits())
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

/// The event's attempt in flight and its workflow, if the caller sees the
/// event (else "does not exist") and an attempt is in flight.
fn in_flight(event: i64) -> Option<(i32, pgrx::Uuid)> {
    let visible = Spi::get_one_with_args::<pgrx::Uuid>(
        "SELECT e.workflow_id FROM webhook.events e WHERE e.id OPERATOR(pg_catalog.=) $1",
        &[DatumWithOid::from(event)],
    )
    .unwrap_or(None);
    if visible.is_none() {
        SqlError::EventNotFound(event).report();
    }
    as_extension_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(IN_FLIGHT, Some(1), &[DatumWithOid::from(event)])?;
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
        require_workflow(workflow, false);
        let max_attempts = i32::try_from(retry_policy(workflow).max_attempts).unwrap_or(i32::MAX);
        let (ids, dead) = as_extension_owner(|| {
            Spi::connect_mut(|client| {
                let rows = client.update(
                    READ,
                    Some(1),
                    &[
                        DatumWithOid::from(workflow),
                        DatumWithOid::from(qty),
                        DatumWithOid::from(visibility_s),
                        DatumWithOid::from(max_attempts),
                    ],
                )?;
                let row = rows.first();
                Ok((
                    row.get::<Vec<i64>>(1)?.unwrap_or_default(),
                    row.get::<i64>(2)?.unwrap_or(0),
                ))
            })
        });
        // A timed-out attempt counts as failed when it is read again or goes dead.
        let retried = Spi::get_one_with_args::<i64>(
            "SELECT pg_catalog.count(*) FROM webhook.events e
              WHERE e.id OPERATOR(pg_catalog.=) ANY ($1) AND e.attempts OPERATOR(pg_catalog.>) 1",
            &[DatumWithOid::from(ids.clone())],
        )
        .unwrap_or(None)
        .unwrap_or(0);
        count(workflow, 0, retried + dead, dead);
        ids
    }

    /// Finishes the attempt in flight of an event the caller sees: succeeded
    /// (`ok`), or failed and retried after `delay_s` seconds (NULL: the
    /// retry policy's backoff) unless that was its last attempt. False when
    /// no attempt of the event is in flight.
    #[pg_extern(volatile)]
    fn _finish_event(event: i64, ok: bool, delay_s: Option<f64>, error: Option<String>) -> bool {
        let Some((attempt, workflow)) = in_flight(event) else {
            return false;
        };
        let (status, due_in, outcome, message, tally) = if ok {
            ("succeeded", None, "succeeded", None, (1, 0, 0))
        } else {
            let message = Some(error.unwrap_or_else(|| "returned by webhook_nack".to_string()));
            match retry_policy(workflow)
                .after_failure(attempt.max(1) as u32, crate::execution::jitter())
            {
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
