//! Recording handler attempts: one statement per batch updates the events'
//! status, inserts their `webhook.attempts` rows and adds their outcomes to
//! the recording process's `webhook.workflow_counters` rows (its own: keyed
//! by its PGPROC number, which no other running process has), in the
//! transaction that also holds the handlers' writes, so a handler's effects,
//! its event's new status and its count commit together or not at all.

use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::JsonB;
use pgrx::PgOid;
use serde_json::Value;
use uuid::Uuid;

use webhook_core::retry::{AfterFailure, RetryPolicy};

use crate::pg::catalog::{pg_uuid, Catalog};
use crate::pg::spi::{array_column as column, with_settings, CaughtSqlError};

const RECORD_ATTEMPTS: &str = "
WITH a AS (
    SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),
                             pg_catalog.unnest($2::pg_catalog.uuid[]),
                             pg_catalog.unnest($3::pg_catalog.int4[]),
                             pg_catalog.unnest($4::pg_catalog.float8[]),
                             pg_catalog.unnest($5::pg_catalog.float8[]),
                             pg_catalog.unnest($6::pg_catalog.text[]),
                             pg_catalog.unnest($7::pg_catalog.text[]),
                             pg_catalog.unnest($8::pg_catalog.text[]),
                             pg_catalog.unnest($9::pg_catalog.text[]),
                             pg_catalog.unnest($10::pg_catalog.text[]),
                             pg_catalog.unnest($11::pg_catalog.float8[]),
                             pg_catalog.unnest($12::pg_catalog.jsonb[]))
        AS a (event_id, workflow_id, attempt, started, ended, outcome, sqlstate, message,
              status, error, next_at, response)
), events AS (
    UPDATE webhook.events e
       SET status = a.status, error = a.error, attempts = a.attempt,
           next_attempt_at = pg_catalog.to_timestamp(a.next_at),
           handled_at = pg_catalog.to_timestamp(a.ended),
           response = COALESCE(a.response, e.response)
      FROM a
     WHERE e.id OPERATOR(pg_catalog.=) a.event_id
       AND e.id OPERATOR(pg_catalog.=) ANY ($1)
), counted AS (
    INSERT INTO webhook.workflow_counters AS c (workflow_id, writer, succeeded, failed_attempts, dead)
    SELECT a.workflow_id, $13,
           pg_catalog.count(*) FILTER (WHERE a.status OPERATOR(pg_catalog.=) 'succeeded'),
           pg_catalog.count(*) FILTER (WHERE a.outcome OPERATOR(pg_catalog.<>) 'succeeded'),
           pg_catalog.count(*) FILTER (WHERE a.status OPERATOR(pg_catalog.=) 'dead')
      FROM a
     GROUP BY a.workflow_id
    ON CONFLICT (workflow_id, writer) DO UPDATE
       SET succeeded = c.succeeded OPERATOR(pg_catalog.+) EXCLUDED.succeeded,
           failed_attempts = c.failed_attempts OPERATOR(pg_catalog.+) EXCLUDED.failed_attempts,
           dead = c.dead OPERATOR(pg_catalog.+) EXCLUDED.dead,
           updated_at = pg_catalog.now()
)
INSERT INTO webhook.attempts (event_id, attempt, workflow_id, started_at, ended_at, outcome,
                              sqlstate, message)
SELECT a.event_id, a.attempt, a.workflow_id, pg_catalog.to_timestamp(a.started),
       pg_catalog.to_timestamp(a.ended), a.outcome, a.sqlstate, a.message
  FROM a";

/// The longest retry delay (30 days, as the workflows table allows): a
/// later time would not fit in a timestamp for long.
pub const MAX_RETRY_DELAY_SECS: f64 = 30.0 * 86_400.0;

/// One primary-key probe per attempt, never a scan of the events; planned
/// once, not again for each batch's arrays. (`e.id = ANY ($1)` keeps the plan
/// to the batch's events whichever side of the join the planner starts from:
/// a plan made while the table was empty would otherwise read all of it.)
const RECORD_SETTINGS: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"enable_hashjoin", c"off"),
    (c"enable_mergejoin", c"off"),
    (c"enable_seqscan", c"off"),
    (c"jit", c"off"),
    (c"plan_cache_mode", c"force_generic_plan"),
];

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    Failed(CaughtSqlError),
    /// Past its deadline (cancelled, or its executor ended).
    TimedOut(CaughtSqlError),
    /// Its executor died abruptly while it ran, and PostgreSQL restarted
    /// every backend (src/execution/running_file.rs).
    Crashed(CaughtSqlError),
}

impl Outcome {
    /// A caught error: 57014 (query_canceled) is the deadline's cancel.
    pub fn from_error(error: CaughtSqlError) -> Outcome {
        if error.sqlstate == "57014" {
            Outcome::TimedOut(error)
        } else {
            Outcome::Failed(error)
        }
    }
}

/// One finished attempt, and what it makes of its event.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event_id: i64,
    pub workflow_id: Uuid,
    pub attempt: i32,
    pub started: f64,
    pub ended: f64,
    pub outcome: Outcome,
    /// The event's new status, and when it runs next (Unix seconds).
    pub status: &'static str,
    pub next_attempt_at: Option<f64>,
    /// The response to record (the workflow method's); `None` keeps the one
    /// the listener recorded.
    pub response: Option<Value>,
}

/// The event's status after an attempt with this outcome: `succeeded`, or
/// `failed` with the next attempt's time, or `dead` after the last one.
pub fn next_status(
    outcome: &Outcome,
    attempt: i32,
    policy: &RetryPolicy,
    ended: f64,
) -> (&'static str, Option<f64>) {
    if matches!(outcome, Outcome::Succeeded) {
        return ("succeeded", None);
    }
    let policy = policy.within(crate::pg::gucs::retry_limits());
    match policy.after_failure(attempt.max(1) as u32, jitter()) {
        AfterFailure::RetryIn(delay) => (
            "failed",
            Some(ended + delay.as_secs_f64().min(MAX_RETRY_DELAY_SECS)),
        ),
        AfterFailure::Dead => ("dead", None),
    }
}

/// Uniform in [0, 1): enough randomness to spread retries apart.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Attempt {
    /// A finished attempt, with the event's new status by the workflow's
    /// retry policy.
    #[allow(clippy::too_many_arguments)] // the columns of one attempts row
    pub fn finished(
        event_id: i64,
        workflow_id: Uuid,
        attempt: i32,
        started: f64,
        ended: f64,
        outcome: Outcome,
        policy: &RetryPolicy,
        response: Option<Value>,
    ) -> Attempt {
        let (status, next_attempt_at) = next_status(&outcome, attempt, policy, ended);
        Attempt {
            event_id,
            workflow_id,
            attempt,
            started,
            ended,
            outcome,
            status,
            next_attempt_at,
            response,
        }
    }

    fn error(&self) -> Option<&CaughtSqlError> {
        match &self.outcome {
            Outcome::Succeeded => None,
            Outcome::Failed(e) | Outcome::TimedOut(e) | Outcome::Crashed(e) => Some(e),
        }
    }

    fn outcome_name(&self) -> &'static str {
        match &self.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::TimedOut(_) => "timeout",
            Outcome::Crashed(_) => "crashed",
        }
    }
}

/// [`RECORD_ATTEMPTS`]'s parameters: one array per column, then the
/// counters' writer.
fn record_args(attempts: &[Attempt]) -> Vec<DatumWithOid<'static>> {
    let rows = || attempts.iter();
    vec![
        column(rows(), |a| a.event_id),
        column(rows(), |a| pg_uuid(a.workflow_id)),
        column(rows(), |a| a.attempt),
        column(rows(), |a| a.started),
        column(rows(), |a| a.ended),
        column(rows(), |a| a.outcome_name()),
        column(rows(), |a| a.error().map(|e| e.sqlstate.as_str())),
        column(rows(), |a| a.error().map(|e| e.message.as_str())),
        column(rows(), |a| a.status),
        column(rows(), |a| a.error().map(CaughtSqlError::describe)),
        column(rows(), |a| a.next_attempt_at),
        column(rows(), |a| a.response.clone().map(JsonB)),
        DatumWithOid::from(super::registry::my_procno()),
    ]
}

/// Records the attempts and their events' new status (run as a role that
/// may write the tables, with the pinned search_path).
pub fn record(client: &mut SpiClient<'_>, attempts: &[Attempt]) -> Result<(), pgrx::spi::Error> {
    record_with(client, None, attempts)
}

/// The recording statement, prepared once by a process that records often.
pub fn prepare_record(client: &SpiClient<'_>) -> Result<OwnedPreparedStatement, pgrx::spi::Error> {
    let types = record_args(&[])
        .iter()
        .map(|arg| PgOid::from(arg.oid()))
        .collect::<Vec<_>>();
    Ok(client.prepare_mut(RECORD_ATTEMPTS, &types)?.keep())
}

/// [`record`] through a statement from [`prepare_record`], if given.
pub fn record_with(
    client: &mut SpiClient<'_>,
    plan: Option<&OwnedPreparedStatement>,
    attempts: &[Attempt],
) -> Result<(), pgrx::spi::Error> {
    if attempts.is_empty() {
        return Ok(());
    }
    let args = record_args(attempts);
    // The planner cannot know how many attempts the arrays hold; a hash
    // join would read all of webhook.events for each batch.
    with_settings(RECORD_SETTINGS, || {
        match plan {
            Some(plan) => client.update(plan, None, &args)?,
            None => client.update(RECORD_ATTEMPTS, None, &args)?,
        };
        Ok(())
    })
}

/// What became of a lost attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAttempt {
    Recorded,
    /// Recorded already, or the event is gone.
    Gone,
    /// The event's row is locked (the transaction that ran it is still
    /// ending): try again later.
    Busy,
}

/// Records a failed attempt outside the transaction it ran in (that
/// transaction was lost: its executor ended or crashed, or it failed to
/// commit), unless the event has moved on since (recorded already, or
/// deleted). Never waits for a lock.
pub fn record_lost_attempt(
    client: &mut SpiClient<'_>,
    catalog: &mut Catalog,
    event_id: i64,
    attempt: i32,
    started: f64,
    outcome: Outcome,
) -> Result<LostAttempt, pgrx::spi::Error> {
    let args = [DatumWithOid::from(event_id), DatumWithOid::from(attempt)];
    let locked = client.update(
        "SELECT workflow_id::pg_catalog.text FROM webhook.events
          WHERE id OPERATOR(pg_catalog.=) $1 AND attempts OPERATOR(pg_catalog.<) $2
            AND next_attempt_at IS NOT NULL
            FOR UPDATE SKIP LOCKED",
        Some(1),
        &args,
    )?;
    let workflow_id = if locked.is_empty() {
        None
    } else {
        locked.first().get::<String>(1)?
    };
    let Some(workflow_id) = workflow_id.and_then(|id| id.parse::<Uuid>().ok()) else {
        let exists = !client
            .select(
                "SELECT true FROM webhook.events
                  WHERE id OPERATOR(pg_catalog.=) $1 AND attempts OPERATOR(pg_catalog.<) $2
                    AND next_attempt_at IS NOT NULL",
                Some(1),
                &args,
            )?
            .is_empty();
        return Ok(if exists {
            LostAttempt::Busy
        } else {
            LostAttempt::Gone
        });
    };
    let Some(workflow) = catalog.get(client, workflow_id)? else {
        return Ok(LostAttempt::Gone);
    };
    let ended = crate::pg::event_row::unix(std::time::SystemTime::now());
    let lost = Attempt::finished(
        event_id,
        workflow_id,
        attempt,
        started,
        ended,
        outcome,
        &workflow.retry,
        None,
    );
    record(client, std::slice::from_ref(&lost))?;
    crate::pg::notify::check_notify_queue();
    crate::pg::notify::notify_event(event_id, lost.status);
    Ok(LostAttempt::Recorded)
}
