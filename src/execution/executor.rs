//! The executor background worker: runs one owner's handlers, never anyone
//! else's.
//!
//! Started by a listener (src/execution/pool.rs) with the index of a
//! registry slot that names the owner. It connects to `webhook.database`
//! as the bootstrap superuser and makes the owner its session user
//! (`SetSessionAuthorization`), so a NOLOGIN owner is served like any other,
//! and `session_user` in a handler is the owner. Handlers then run as a
//! security-restricted operation (src/pg/spi.rs
//! `as_handler_owner`): `SET ROLE`, `SET SESSION AUTHORIZATION` and their
//! RESETs are refused, so a handler cannot get back to the connecting role.
//! The executor's own statements (claim, record) switch to the extension's
//! owner with the pinned search_path, the way the listener's do.
//!
//! Loop: claim up to `webhook.batch_size` due events of the owner's
//! workflows (`FOR UPDATE SKIP LOCKED`, so the row lock is the claim), run
//! each handler in its own subtransaction, record every attempt and the
//! events' new status, commit: the handlers' writes and the status commit
//! together. If the process ends before the commit (a crash, or terminated
//! past a deadline), nothing of the batch is committed and its events are due
//! again; the one whose handler was running is recorded as a failed attempt
//! by a listener (src/execution/pool.rs), also after a crash restart
//! (src/execution/running_file.rs). With nothing due for
//! `webhook.executor_idle_timeout`, the executor exits.

use std::ffi::CString;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::datum::DatumWithOid;
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::JsonB;
use pgrx::PgOid;
use serde_json::Value;
use uuid::Uuid;

use webhook_core::request::{self as rules, ResponseConfig};

use super::attempts::{self, Attempt, Outcome};
use super::handler_call::HandlerPlans;
use super::registry::{self, now_ms, SlotState, REGISTRY};
use crate::pg::catalog::Catalog;
use crate::pg::event_row::{
    handler_columns_select_sql, response_json, unix, EventRow, Origin, EVENTS,
};
use crate::pg::gucs;
use crate::pg::invalidation::{
    watch_definitions, DEFINITIONS_CHANGED, WATCHED_TABLES, WORKFLOWS_CHANGED,
};
use crate::pg::notify::{check_notify_queue, notify_event};
use crate::pg::signals;
use crate::pg::spi::{
    as_role_with_safe_path, commit_without_waiting_for_flush, in_subtransaction, in_transaction,
    report_table_statistics, reset_value, set_session_setting, with_settings, CaughtSqlError,
    SAFE_SEARCH_PATH,
};

/// Every statement names webhook.workflows before webhook.events, so it locks
/// them in the order DROP EXTENSION does (a deadlock otherwise).
///
/// The owner's due events, oldest due first (walking events_due_idx, so a
/// long backlog costs nothing more per batch); in an ordered workflow only
/// the oldest unfinished event is due; `$3` are events whose lost attempt a
/// listener has yet to record (registry.rs); `$4` is the scan's start
/// ([`Executor::scan_from`]). The row lock is the claim: another executor
/// skips what this one holds. Each row holds the columns the handler's
/// argument takes from the stored event (src/pg/event_row.rs), [`DUE`] and
/// [`AWAITED`], all read by name ([`claim`]).
fn claim_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {},
       extract(epoch FROM e.next_attempt_at)::pg_catalog.float8 AS {DUE},
       e.response IS NULL AND e.attempts OPERATOR(pg_catalog.=) 0
           AND e.listener_pid IS NOT NULL AS {AWAITED}{CLAIM_FROM}",
            handler_columns_select_sql()
        )
    })
}

/// The tables an executor's batch writes or reads, in the order the extension
/// creates them (sql/schema.sql; an installation updated from 0.1.0 made
/// workflow_counters last, which changes nothing: a DROP EXTENSION waits
/// for webhook.workflows, the first, before it holds any), locked at its start (see
/// `Executor::claim_batch`). ROW EXCLUSIVE is what its writes take anyway;
/// it conflicts with no other session's reads or writes, only with DDL.
const LOCK_TABLES: &str = "LOCK TABLE webhook.workflows, webhook.events, webhook.attempts,
                      webhook.workflow_counters, webhook.workflow_changes IN ROW EXCLUSIVE MODE";

/// SQLSTATE 55P03: a lock was not granted within lock_timeout.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// How long an executor that gave way to another session's locks waits
/// before it claims again.
const LOCKED_OUT_RETRY: Duration = Duration::from_millis(200);

/// The claim's columns beside the event's, named apart from the columns of
/// webhook.events (`get_by_name` reads the first column of a name): when the
/// event became due (Unix seconds), and whether a caller may be waiting for
/// this run's result ([`StoredJson::awaited`]).
const DUE: &str = "claim_due";
const AWAITED: &str = "claim_awaited";

const CLAIM_FROM: &str = "
  FROM webhook.workflows w
  JOIN webhook.events e ON e.workflow_id OPERATOR(pg_catalog.=) w.id
 WHERE e.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()
   AND e.next_attempt_at OPERATOR(pg_catalog.>=) pg_catalog.to_timestamp($4)
   AND w.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1
   AND NOT w.queued
   AND e.id OPERATOR(pg_catalog.<>) ALL ($3)
   AND (NOT w.ordered OR NOT EXISTS (
        SELECT FROM webhook.events p
         WHERE p.workflow_id OPERATOR(pg_catalog.=) e.workflow_id
           AND p.next_attempt_at IS NOT NULL AND p.id OPERATOR(pg_catalog.<) e.id))
 ORDER BY e.next_attempt_at
 LIMIT $2
   FOR UPDATE OF e SKIP LOCKED";

/// When the owner's next event is due (Unix seconds), if any is waiting;
/// events behind an ordered workflow's unfinished head do not count (the
/// head's retry is what is due).
const NEXT_DUE: &str = "
SELECT extract(epoch FROM e.next_attempt_at)::pg_catalog.float8
  FROM webhook.workflows w
  JOIN webhook.events e ON e.workflow_id OPERATOR(pg_catalog.=) w.id
 WHERE e.next_attempt_at OPERATOR(pg_catalog.>=) pg_catalog.to_timestamp($2)
   AND w.owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1
   AND NOT w.queued
   AND (NOT w.ordered OR NOT EXISTS (
        SELECT FROM webhook.events p
         WHERE p.workflow_id OPERATOR(pg_catalog.=) e.workflow_id
           AND p.next_attempt_at IS NOT NULL AND p.id OPERATOR(pg_catalog.<) e.id))
 ORDER BY e.next_attempt_at
 LIMIT 1";

/// The queue queries must walk events_due_idx in order, whatever the
/// statistics say: through the workflow's index they would read every event
/// the workflow ever had, and a bitmap scan would visit every entry of events
/// that finished since the last vacuum, on every batch (a plain index scan
/// marks those entries dead as it passes them, so later scans skip them).
/// Without sorts the ordered index scan is the only plan left. JIT compiling
/// these small statements (whose cost estimates the disabled plans inflate)
/// would cost more than running them, and so would planning them again for
/// each batch's values (the plan is the same for all).
pub const QUEUE_SCAN_SETTINGS: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"enable_bitmapscan", c"off"),
    (c"enable_sort", c"off"),
    (c"jit", c"off"),
    (c"plan_cache_mode", c"force_generic_plan"),
];

/// How far before the oldest event the last claim took the next scan
/// starts ([`Executor::scan_from`]), and how often a scan starts from the
/// beginning whatever the last claim took.
const SCAN_MARGIN_SECS: f64 = 0.25;
const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);
/// The same once the last claim found nothing (nor will an idle executor
/// wait longer than this while it has a floor).
const FULL_SCAN_WHEN_IDLE_EVERY: Duration = Duration::from_millis(100);

/// Pause after a batch that was not full, before claiming the next one
/// (not when a caller may be waiting for one of its events: the `workflow`
/// method).
const GATHER: Duration = Duration::from_millis(10);

/// How long one batch's handlers should take, going by their recent run
/// times: a batch holds its claimed events until it commits, so slow handlers
/// are claimed a few at a time and the owner's other executor can take the
/// rest.
const BATCH_BUDGET_MS: f64 = 50.0;

/// Handlers an executor runs before its batch size says whether they are
/// slow (by then `handler_ms` keeps about 1 % of its starting value).
const HANDLERS_BEFORE_JUDGING: u64 = 20;

/// A claim whose oldest event had been due this long finds a backlog: the
/// owner gets another executor (crates/webhook_core/src/executor_policy.rs `KEEPING_UP_MS`).
const BEHIND_MS: i64 = 100;

/// Retries this executor may start: `webhook.max_retries_per_second` shared
/// by the owner's executors running at the time, refilled continuously up to
/// one second's worth. A retry claimed beyond it is not run but postponed to
/// the next free place in the budget's schedule (its `next_attempt_at`
/// moves), so a backlog of due retries is spread out at the budget's rate
/// once, and never stands in front of the owner's first attempts. Failing
/// workflows then cannot turn an owner's executors into a retry loop that
/// takes the processors from everyone else, whatever their retry policies.
struct RetryBudget {
    tokens: f64,
    refilled: Instant,
    /// Where the last postponed retry was put (Unix seconds).
    scheduled_until: f64,
}

impl RetryBudget {
    fn new() -> RetryBudget {
        RetryBudget {
            tokens: 1.0,
            refilled: Instant::now(),
            scheduled_until: 0.0,
        }
    }

    /// This executor's share of the owner's rate (retries per second).
    fn rate(owner: u32) -> f64 {
        let executors = REGISTRY
            .share()
            .executors
            .iter()
            .filter(|slot| slot.owner == owner && slot.state == SlotState::Running)
            .count()
            .max(1);
        f64::from(gucs::MAX_RETRIES_PER_SECOND.get().max(1)) / executors as f64
    }

    /// `Ok` when a retry may run now, else when it may (Unix seconds).
    fn admit(&mut self, owner: u32, now_unix: f64) -> Result<(), f64> {
        let rate = Self::rate(owner);
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(rate.max(1.0));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        self.scheduled_until = self.scheduled_until.max(now_unix) + 1.0 / rate;
        Err(self.scheduled_until)
    }
}

struct Executor {
    slot: usize,
    owner: pg_sys::Oid,
    /// Role the executor's own statements run as (owns the tables).
    privileged: pg_sys::Oid,
    catalog: Catalog,
    plans: HandlerPlans,
    /// The executor's own statements, prepared once.
    statements: Option<Statements>,
    /// The server's lock_timeout, which handlers run with.
    handler_lock_timeout: CString,
    /// webhook.lock_timeout, which the executor's statements up to and
    /// including the claim run with (see [`Executor::claim_batch`]).
    own_lock_timeout: CString,
    /// Recent handler run time (ms, exponentially weighted); starts high, so
    /// the first batches are small until the handlers prove fast.
    handler_ms: f64,
    /// When this executor started running (ms since the Unix epoch).
    running_since_ms: i64,
    /// Handlers it has run.
    handlers_run: u64,
    /// Where the queue scans may start (Unix seconds), and when a scan last
    /// started from the beginning (see [`Executor::scan_from`]).
    scan_floor: Option<f64>,
    full_scan_at: Instant,
    last_scan_was_full: bool,
    last_claim_found_nothing: bool,
    retries: RetryBudget,
}

struct Statements {
    claim: OwnedPreparedStatement,
    /// [`LOCK_TABLES`], first in every batch.
    lock: OwnedPreparedStatement,
    next_due: OwnedPreparedStatement,
    record: OwnedPreparedStatement,
}

impl Statements {
    fn prepare(client: &SpiClient<'_>) -> Result<Statements, pgrx::spi::Error> {
        let oid = PgOid::from(pg_sys::Oid::type_oid());
        let int4 = PgOid::from(i32::type_oid());
        let float8 = PgOid::from(f64::type_oid());
        Ok(Statements {
            claim: client
                .prepare_mut(
                    claim_sql(),
                    &[oid, int4, PgOid::from(Vec::<i64>::type_oid()), float8],
                )?
                .keep(),
            lock: client.prepare_mut(LOCK_TABLES, &[])?.keep(),
            next_due: client.prepare_mut(NEXT_DUE, &[oid, float8])?.keep(),
            record: attempts::prepare_record(client)?,
        })
    }
}

/// What a batch of claimed events did (a listener's batch of requests is
/// `RequestBatch`, src/ingest/listener_main.rs).
#[derive(Default)]
struct BatchOutcome {
    ran: usize,
    /// A `workflow`-method event finished: a listener may be waiting for it.
    awaited: bool,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn webhook_executor_main(arg: pg_sys::Datum) {
    let slot = arg.value();
    // Threads (the watchdog) start before signals are unblocked.
    signals::install_sigterm_handler();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let pooled = slot < registry::pool_size();
    let owner = if pooled {
        wait_for_owner(slot)
    } else {
        match attach(slot) {
            Some(owner) => owner,
            None => return,
        }
    };
    BackgroundWorker::connect_worker_to_spi(Some(&gucs::database()), None);
    // Registered after connecting, so that it runs before PostgreSQL's own
    // exit callback aborts the transaction: the slot says Exited (other
    // executors skip the event) before the event's row lock is released. A
    // process that ends before this point is noticed by pool.rs.
    // SAFETY: registers a callback with PostgreSQL's exit machinery; it
    // only touches our shared memory slot.
    unsafe { pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(slot)) };
    // The event it runs, where a crash restart does not erase it.
    super::running_file::open(slot);
    set_session_setting(c"search_path", SAFE_SEARCH_PATH);
    crate::execution::session_reset::install_handler_guard();
    watch_definitions();

    let setup = in_transaction(|| {
        Spi::connect(|client| {
            let table = client
                .select(
                    "SELECT r.rolsuper AS superuser, c.relowner::pg_catalog.int8 AS table_owner,
                            'webhook_ext executor for ' OPERATOR(pg_catalog.||) r.rolname::pg_catalog.text
                                AS application_name,
                            'webhook.workflow_changes'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8
                                AS workflow_changes,
                            'webhook.config_version'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8
                                AS config_version,
                            (SELECT x.extversion FROM pg_catalog.pg_extension x
                              WHERE x.extname OPERATOR(pg_catalog.=) 'webhook_ext') AS installed_version
                       FROM pg_catalog.pg_roles r, pg_catalog.pg_class c
                      WHERE r.oid OPERATOR(pg_catalog.=) $1
                        AND c.oid OPERATOR(pg_catalog.=) 'webhook.events'::pg_catalog.regclass",
                    Some(1),
                    &[DatumWithOid::from(owner)],
                )?;
            let row = table.first();
            Ok::<_, pgrx::spi::Error>((
                row.get_by_name::<bool, _>("superuser")?,
                row.get_by_name::<i64, _>("table_owner")?,
                row.get_by_name::<String, _>("application_name")?,
                row.get_by_name::<i64, _>("workflow_changes")?,
                row.get_by_name::<i64, _>("config_version")?,
                row.get_by_name::<String, _>("installed_version")?,
            ))
        })
    });
    let Ok(Ok((
        Some(superuser),
        Some(table_owner),
        Some(application_name),
        Some(workflow_changes),
        Some(config_version),
        installed_version,
    ))) = setup
    else {
        // The owner was dropped, or the extension is not installed.
        leave(pooled);
    };
    if installed_version.as_deref() != Some(crate::pg::LIBRARY_VERSION) {
        // Listeners start no executor then (src/ingest/listener_main.rs);
        // this one was started just before the extension changed.
        log!(
            "webhook_ext executor exits: the extension is version {}, the library is {}",
            installed_version.as_deref().unwrap_or("(none)"),
            crate::pg::LIBRARY_VERSION
        );
        leave(pooled);
    }
    // pg_stat_activity.application_name names the owner it serves.
    if let Ok(name) = CString::new(application_name) {
        set_session_setting(c"application_name", &name);
    }
    WATCHED_TABLES[0].store(workflow_changes as u32, Ordering::SeqCst);
    WATCHED_TABLES[1].store(config_version as u32, Ordering::SeqCst);
    // SAFETY: the session is authenticated (as the bootstrap superuser, who
    // may become any role); outside any transaction, on the main thread.
    unsafe { pg_sys::SetSessionAuthorization(owner, superuser) };

    let privileged = pg_sys::Oid::from(table_owner as u32);
    let mut executor = Executor {
        slot,
        owner,
        privileged,
        catalog: Catalog::loading_as(privileged),
        plans: HandlerPlans::default(),
        statements: None,
        handler_lock_timeout: reset_value(c"lock_timeout"),
        own_lock_timeout: gucs::lock_timeout_setting(),
        handler_ms: BATCH_BUDGET_MS,
        running_since_ms: now_ms(),
        handlers_run: 0,
        scan_floor: None,
        full_scan_at: Instant::now(),
        last_scan_was_full: false,
        last_claim_found_nothing: false,
        retries: RetryBudget::new(),
    };
    executor.run();
    leave(pooled);
}

/// A pool process (src/execution/pool.rs) waits, unconnected, until a
/// listener gives its slot an owner.
fn wait_for_owner(slot: usize) -> pg_sys::Oid {
    registry::join_pool(slot);
    loop {
        if signals::shutdown_requested() {
            leave(true);
        }
        if let Some(owner) = attach(slot) {
            return owner;
        }
        wait_latch(Duration::from_secs(10));
    }
}

/// Ends the process, outside any transaction. A pool process exits with code
/// 1, which tells the postmaster to start it again a second later (for the
/// next owner, with nothing of this one's session; its slot goes to others
/// meanwhile, src/execution/pool.rs); any other exits with 0, for good.
fn leave(pooled: bool) -> ! {
    // SAFETY: proc_exit runs PostgreSQL's exit callbacks and ends the process;
    // no transaction is open here.
    unsafe { pg_sys::proc_exit(i32::from(pooled)) }
}

/// Takes the slot the listener reserved; `None` if it is not ours.
fn attach(slot: usize) -> Option<pg_sys::Oid> {
    let mut registry = REGISTRY.exclusive();
    let entry = registry.executors.get_mut(slot)?;
    if entry.state != SlotState::Starting {
        return None;
    }
    entry.state = SlotState::Running;
    // SAFETY: MyProcPid is set before any extension code runs.
    entry.pid = unsafe { pg_sys::MyProcPid };
    entry.procno = registry::my_procno();
    entry.idle_since_ms = 0;
    entry.settings_loaded_unix_ms = now_ms();
    let owner = pg_sys::Oid::from(entry.owner);
    // No longer waiting: its slot is not ready for another owner until the
    // process that replaces this one joins the pool.
    if let Some(member) = registry.pool_members.get_mut(slot) {
        *member = 0;
    }
    Some(owner)
}

/// At exit: free the slot, or leave it `Exited` with the event whose
/// handler was running, for a listener to record.
///
/// # Safety
/// Registered with `before_shmem_exit` only, with the slot's index as `arg`; runs
/// on the main thread while shared memory is still attached.
unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    // An orderly exit, not a crash: shared memory (below) says what to record.
    super::running_file::exiting();
    let slot = arg.value();
    let interrupted = {
        let mut registry = REGISTRY.exclusive();
        let Some(entry) = registry.executors.get_mut(slot) else {
            return;
        };
        // SAFETY: as in attach.
        if entry.pid != unsafe { pg_sys::MyProcPid } {
            return;
        }
        if entry.running_event != 0 {
            entry.state = SlotState::Exited;
            true
        } else {
            // One that gave way: the owner waiting for its slot starts now.
            let retired = entry.retire;
            *entry = Default::default();
            retired
        }
    };
    if interrupted {
        registry::wake_listeners();
    }
}

impl Executor {
    fn run(&mut self) {
        let mut limit = self.batch_limit();
        let mut idle_since = Instant::now();
        // Whether the statistics of the last busy stretch were flushed.
        let mut reported_idle = false;
        loop {
            if signals::shutdown_requested() || self.asked_to_retire() {
                return;
            }
            if BackgroundWorker::sighup_received() {
                // SAFETY: the documented way to reload, on the main thread.
                unsafe {
                    pg_sys::ConfigReloadPending = 0;
                    pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
                }
                self.handler_lock_timeout = reset_value(c"lock_timeout");
                self.own_lock_timeout = gucs::lock_timeout_setting();
                self.forget();
                REGISTRY.exclusive().executors[self.slot].settings_loaded_unix_ms = now_ms();
            }
            report_table_statistics(false);
            let claimed = std::cell::RefCell::new(Vec::new());
            match self.run_batch(limit, &claimed) {
                Ok(batch) if batch.ran > 0 => {
                    self.set_idle(false);
                    idle_since = Instant::now();
                    reported_idle = false;
                    let full = batch.ran >= limit as usize;
                    limit = self.batch_limit();
                    if batch.awaited {
                        registry::wake_listeners();
                    }
                    if !full && !batch.awaited {
                        // Let a few more events arrive, so that a steady
                        // trickle is run many per transaction (one commit)
                        // rather than one by one, each commit's WAL flush
                        // delaying the listener's.
                        std::thread::sleep(GATHER);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    self.forget();
                    let claimed = claimed.into_inner();
                    if claimed.is_empty() && error.sqlstate == LOCK_NOT_AVAILABLE {
                        // Gave way to someone holding the tables (see
                        // claim_batch): try again a moment later.
                        wait_latch(LOCKED_OUT_RETRY);
                        continue;
                    }
                    if claimed.is_empty() {
                        // Failed before running anything (the claim itself;
                        // e.g. the extension was dropped): exit, a listener
                        // starts a new executor when events are due.
                        log!("webhook_ext executor exits: {}", error.describe());
                        return;
                    }
                    if limit > 1 || claimed.len() != 1 {
                        // Find the culprit: one event per transaction.
                        limit = 1;
                        continue;
                    }
                    let (event_id, attempt, started) = claimed[0];
                    self.record_failed_batch(event_id, attempt, started, error);
                    continue;
                }
            }
            self.set_idle(true);
            let idle_timeout = Duration::from_millis(gucs::EXECUTOR_IDLE_TIMEOUT_MS.get() as u64);
            if idle_since.elapsed() >= idle_timeout {
                if !self.last_scan_was_full {
                    // Only a scan from the beginning may say nothing is left.
                    self.scan_floor = None;
                    continue;
                }
                return;
            }
            let mut wait = idle_timeout - idle_since.elapsed();
            if let Some(due) = self.next_due() {
                let until_due = Duration::from_secs_f64((due - unix(SystemTime::now())).max(0.0));
                wait = wait.min(until_due);
            }
            if self.scan_floor.is_some() {
                // Something older than the floor may be due (see scan_from):
                // the next claim scans from the beginning.
                wait = wait.min(FULL_SCAN_WHEN_IDLE_EVERY);
            }
            if !reported_idle {
                report_table_statistics(true);
                reported_idle = true;
            }
            // Something may be due yet not claimable (held by the owner's
            // other executor, or behind an ordered workflow's head): a new
            // event still wakes us at once through the latch.
            wait_latch(wait.max(Duration::from_millis(20)));
        }
    }

    /// Events to claim at once: as many as recent run times fit in the
    /// batch budget, at most webhook.batch_size.
    fn batch_limit(&self) -> i32 {
        let size = gucs::BATCH_SIZE.get().max(1);
        let fitting = (BATCH_BUDGET_MS / self.handler_ms.max(0.001)).floor();
        (fitting.min(f64::from(size)) as i32).max(1)
    }

    fn asked_to_retire(&self) -> bool {
        REGISTRY.share().executors[self.slot].retire
    }

    fn set_idle(&self, idle: bool) {
        let mut registry = REGISTRY.exclusive();
        let entry = &mut registry.executors[self.slot];
        if idle && entry.idle_since_ms == 0 {
            entry.idle_since_ms = registry::monotonic_now().0;
        } else if !idle {
            entry.idle_since_ms = 0;
        }
    }

    /// Tells the listeners this executor claimed at most `limit` events at
    /// `started_ms` (wall clock, to compare with the events' due times;
    /// `started` is the same moment on the registry's monotonic clock), the
    /// oldest of them due since `oldest_due` (Unix seconds; see
    /// `ExecutorSlot::claimed_ms`).
    fn note_claim(
        &self,
        started_ms: i64,
        started: webhook_core::executor_policy::MonotonicMs,
        oldest_due: Option<f64>,
        limit: i32,
    ) {
        // Every executor starts with small batches (see `handler_ms`): only
        // once its handlers have shown their speed does a small one tell.
        let slow_handlers =
            self.handlers_run >= HANDLERS_BEFORE_JUDGING && limit < gucs::BATCH_SIZE.get();
        // Events that were due before this executor ran (it was starting)
        // say nothing about whether it keeps up.
        let lateness_ms = oldest_due.map_or(0, |due| {
            started_ms - ((due * 1000.0) as i64).max(self.running_since_ms)
        });
        let mut registry = REGISTRY.exclusive();
        let entry = &mut registry.executors[self.slot];
        entry.claimed_ms = started.0;
        entry.claim_on_time = !slow_handlers && lateness_ms < BEHIND_MS;
    }

    fn forget(&mut self) {
        self.catalog.clear();
        self.plans.clear();
        self.statements = None;
    }

    /// Takes the locks of the whole batch, looks for changed definitions,
    /// then claims up to `limit` due events.
    ///
    /// A batch first locks every table it will write ([`LOCK_TABLES`], a
    /// kept plan like the claim), in the order they were created, which is
    /// the order DROP EXTENSION locks them in, and waits at most webhook.lock_timeout for that, for the
    /// look and for the claim, like the listener's statements. Taken one by
    /// one as statements need them (the changes, then the workflows, the
    /// events, after the handlers the attempts), the locks would deadlock
    /// with a DROP EXTENSION, an ALTER EXTENSION UPDATE or a DBA's DDL
    /// taking them in another order, and either side could be the one to
    /// fail. The executor gives way instead and tries again a moment later
    /// ([`Executor::run`]); once it holds its claim, it needs no table lock
    /// it does not hold.
    fn claim_batch(
        &mut self,
        client: &mut SpiClient<'_>,
        limit: i32,
    ) -> Result<Claimed, pgrx::spi::Error> {
        let lock_timeout = self.own_lock_timeout.clone();
        with_settings(&[(c"lock_timeout", lock_timeout.as_c_str())], || {
            let privileged = self.privileged;
            let everything = DEFINITIONS_CHANGED.swap(false, Ordering::SeqCst);
            let some = WORKFLOWS_CHANGED.swap(false, Ordering::SeqCst);
            if everything {
                self.forget();
            }
            let lock = &self.statements(client)?.lock;
            as_role_with_safe_path(privileged, || client.update(lock, None, &[]))?;
            if everything || some || self.catalog.needs_look() {
                let catalog = &mut self.catalog;
                as_role_with_safe_path(privileged, || catalog.forget_changed(client))?;
            }
            let owner = self.owner;
            let statements = self.statements.take().expect("prepared above");
            let unrecorded = registry::unrecorded_events();
            let from = self.scan_from();
            // Before the claim's snapshot: a claim noted after an event's
            // commit sees that event (pool.rs `recheck`).
            let claim_started_ms = now_ms();
            let claim_started = registry::monotonic_now();
            let events = with_settings(QUEUE_SCAN_SETTINGS, || {
                as_role_with_safe_path(privileged, || {
                    let scan = Scan {
                        limit,
                        unrecorded: &unrecorded,
                        from,
                    };
                    claim(client, &statements.claim, owner, &scan)
                })
            });
            self.statements = Some(statements);
            let (mut events, oldest_due) = events?;
            // An executor that ended in the middle of a handler marks its
            // slot before its row lock is released (on_exit): one that ended
            // after `unrecorded` was read, and whose event this claim then
            // locked, is seen now. Left unrun (released at commit) until a
            // listener recorded that attempt.
            let ended_since = registry::unrecorded_events();
            if !ended_since.is_empty() {
                events.retain(|(row, _)| !ended_since.contains(&row.id));
            }
            self.last_claim_found_nothing = events.is_empty();
            self.note_claim(claim_started_ms, claim_started, oldest_due, limit);
            if let Some(oldest) = oldest_due {
                self.scan_floor = Some(oldest - SCAN_MARGIN_SECS);
            }
            Ok(events)
        })
    }

    /// The prepared statements (prepared now if need be), in a transaction.
    fn statements(&mut self, client: &SpiClient<'_>) -> Result<&Statements, pgrx::spi::Error> {
        if self.statements.is_none() {
            let privileged = self.privileged;
            self.statements = Some(as_role_with_safe_path(privileged, || {
                Statements::prepare(client)
            })?);
        }
        Ok(self.statements.as_ref().expect("prepared above"))
    }

    /// Where the next queue scan starts (Unix seconds; 0: the beginning).
    ///
    /// events_due_idx keeps an entry for every event finished since the
    /// last VACUUM, ahead of the pending ones (they were due earlier), and a
    /// scan from the beginning reads them all: milliseconds per claim once a
    /// few hundred thousand events ran. So scans start a little before the
    /// oldest event the last claim took (a listener's batch may commit an
    /// event due a moment earlier), and from the beginning once a second
    /// (every 100 ms once a claim found nothing), for anything still older:
    /// events another executor released or rolled back, an ordered
    /// workflow's next event once its retried head succeeded, a batch that
    /// took longer to commit. An idle executor waits at most 100 ms while it
    /// has a floor, and exits only after a scan from the beginning found
    /// nothing.
    fn scan_from(&mut self) -> f64 {
        let every = if self.last_claim_found_nothing {
            FULL_SCAN_WHEN_IDLE_EVERY
        } else {
            FULL_SCAN_EVERY
        };
        let from = match self.scan_floor {
            Some(floor) if self.full_scan_at.elapsed() < every => floor,
            _ => {
                self.full_scan_at = Instant::now();
                0.0
            }
        };
        self.last_scan_was_full = from == 0.0;
        from
    }

    fn next_due(&mut self) -> Option<f64> {
        let owner = self.owner;
        let privileged = self.privileged;
        // From the floor without using up the next scan from the beginning:
        // the wait is capped while a floor is in effect (Executor::run).
        let from = self.scan_floor.unwrap_or(0.0);
        in_transaction(|| {
            Spi::connect_mut(|client| {
                let plan = &self.statements(client)?.next_due;
                with_settings(QUEUE_SCAN_SETTINGS, || {
                    as_role_with_safe_path(privileged, || {
                        let table = client.update(
                            plan,
                            Some(1),
                            &[DatumWithOid::from(owner), DatumWithOid::from(from)],
                        )?;
                        if table.is_empty() {
                            Ok(None)
                        } else {
                            table.first().get::<f64>(1)
                        }
                    })
                })
            })
        })
        .ok()
        .and_then(|r| r.ok())
        .flatten()
    }

    /// Claims and runs one batch in one transaction. `claimed` keeps what was
    /// claimed, for when the transaction fails as a whole.
    fn run_batch(
        &mut self,
        limit: i32,
        claimed: &std::cell::RefCell<Vec<(i64, i32, f64)>>,
    ) -> Result<BatchOutcome, CaughtSqlError> {
        let result = in_transaction(|| {
            Spi::connect_mut(|client| -> Result<BatchOutcome, pgrx::spi::Error> {
                let events = self.claim_batch(client, limit)?;
                let owner = self.owner;
                let privileged = self.privileged;
                let mut batch = BatchOutcome::default();
                let mut records = Vec::with_capacity(events.len());
                let mut postponed: Vec<(i64, f64)> = Vec::new();
                for (mut row, stored) in events {
                    if self.asked_to_retire() {
                        // Another owner needs the slot: the events not run
                        // yet are released at commit, unattempted.
                        break;
                    }
                    if row.attempts > 0 {
                        let now = unix(SystemTime::now());
                        if let Err(at) = self.retries.admit(owner.to_u32(), now) {
                            // Over the owner's retry budget: unattempted,
                            // due again at its place in the budget's schedule.
                            postponed.push((row.id, at));
                            continue;
                        }
                    }
                    let attempt = row.attempts + 1;
                    let started = unix(SystemTime::now());
                    claimed.borrow_mut().push((row.id, attempt, started));
                    // A workflow changed since the batch began (its parameters,
                    // so its record type): forgotten before the next event, so
                    // a handler's record is mapped as the type now is.
                    if WORKFLOWS_CHANGED.swap(false, Ordering::SeqCst) {
                        let catalog = &mut self.catalog;
                        as_role_with_safe_path(self.privileged, || catalog.forget_changed(client))?;
                    }
                    let workflow = self.catalog.get(client, row.workflow_id)?;
                    let Some(workflow) = workflow else {
                        continue; // deleted, or its owner dropped, since the claim
                    };
                    let timeout_ms = gucs::handler_deadline_ms(workflow.timeout_ms);
                    // Written before the handler runs: if it crashes the
                    // server, this attempt still counts (running_file.rs).
                    super::running_file::running(row.id, attempt, (started * 1000.0) as i64);
                    self.set_running(row.id, attempt, timeout_ms);
                    row.attempts = attempt;
                    let args = row.args_with(|column| stored.datum(column));
                    let plans = &mut self.plans;
                    let lock_timeout = &self.handler_lock_timeout;
                    let result = in_subtransaction(|| {
                        plans.call(
                            client,
                            &workflow,
                            args,
                            || stored.params(),
                            Some(timeout_ms),
                            lock_timeout,
                        )
                    });
                    crate::execution::session_reset::discard_handler_state();
                    let ended = unix(SystemTime::now());
                    self.handler_ms = 0.8 * self.handler_ms + 0.2 * (ended - started) * 1000.0;
                    self.handlers_run += 1;
                    let is_workflow_method =
                        matches!(workflow.rules.response, ResponseConfig::Workflow { .. });
                    batch.awaited |= is_workflow_method || stored.awaited;
                    let (outcome, response) = match result {
                        Ok(returned) => (Outcome::Succeeded, workflow.handler_response(returned)),
                        Err(error) => (
                            Outcome::from_error(error),
                            rules::failure_response(&workflow.rules, row.id, &stored.params()),
                        ),
                    };
                    records.push(Attempt::finished(
                        row.id,
                        row.workflow_id,
                        attempt,
                        started,
                        ended,
                        outcome,
                        &workflow.retry,
                        is_workflow_method.then(|| response_json(&response)),
                    ));
                    batch.ran += 1;
                    // Lets a listener thread waiting for this processor run
                    // now rather than at the end of this process's time
                    // slice (the scheduler does not preempt for it).
                    std::thread::yield_now();
                }
                self.set_running(0, 0, 0);
                let record_plan = self.statements.as_ref().map(|s| &s.record);
                as_role_with_safe_path(privileged, || {
                    attempts::record_with(client, record_plan, &records)?;
                    postpone(client, &postponed)
                })?;
                if !records.is_empty() {
                    check_notify_queue();
                }
                for record in &records {
                    notify_event(record.event_id, record.status);
                }
                if !batch.awaited && !crate::pg::gucs::NOTIFY_EVENTS.get() {
                    // Nobody is told this batch's outcome, so its commit need
                    // not wait for the WAL flush (see docs/execution.md).
                    commit_without_waiting_for_flush();
                }
                Ok(batch)
            })
        });
        // Committed or rolled back: a crash from now on is none of this
        // batch's handlers' doing.
        super::running_file::batch_ended();
        self.set_running(0, 0, 0);
        match result {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(spi_error)) => Err(CaughtSqlError {
                sqlstate: "XX000".into(),
                message: spi_error.to_string(),
            }),
            Err(caught) => Err(caught),
        }
    }

    fn set_running(&self, event_id: i64, attempt: i32, timeout_ms: i32) {
        let mut registry = REGISTRY.exclusive();
        let entry = &mut registry.executors[self.slot];
        let now = registry::monotonic_now().0;
        entry.running_event = event_id;
        entry.running_attempt = attempt;
        entry.running_started_ms = now;
        entry.running_started_unix_ms = now_ms();
        entry.running_deadline_ms = if event_id == 0 {
            0
        } else {
            now + i64::from(timeout_ms)
        };
    }

    /// A one-event batch failed as a whole (at commit, e.g. a deferred
    /// constraint the handler broke): that attempt failed.
    fn record_failed_batch(
        &mut self,
        event_id: i64,
        attempt: i32,
        started: f64,
        error: CaughtSqlError,
    ) {
        let privileged = self.privileged;
        let catalog = &mut self.catalog;
        let result = in_transaction(|| {
            Spi::connect_mut(|client| {
                as_role_with_safe_path(privileged, || {
                    attempts::record_lost_attempt(
                        client,
                        catalog,
                        event_id,
                        attempt,
                        started,
                        Outcome::from_error(error),
                    )
                })
            })
        });
        registry::wake_listeners();
        if !matches!(
            result,
            Ok(Ok(
                attempts::LostAttempt::Recorded | attempts::LostAttempt::Gone
            ))
        ) {
            pgrx::warning!(
                "webhook_ext executor could not record a failed attempt of event {event_id}"
            );
            // Do not spin on it.
            wait_latch(Duration::from_secs(1));
        }
    }
}

/// An event's jsonb columns as the claim read them: datums in the claim's
/// result, which lives until the batch's SPI connection ends (subtransaction
/// aborts do not free it: it was made outside them). Handlers get them as
/// they are; only a failure template needs the params as JSON.
struct StoredJson {
    query: Option<pg_sys::Datum>,
    headers: Option<pg_sys::Datum>,
    params: Option<pg_sys::Datum>,
    /// A caller may be waiting for this run's result: a listener stored the
    /// event with no response (the `workflow` method, whatever the workflow
    /// says now) and this is its first attempt.
    awaited: bool,
}

impl StoredJson {
    /// The handler call's parameter for `column`, if it is one of these
    /// (given to [`EventRow::args_with`]).
    fn datum(&self, column: &str) -> Option<DatumWithOid<'static>> {
        let datum = if column == EVENTS.query {
            self.query
        } else if column == EVENTS.headers {
            self.headers
        } else if column == EVENTS.params {
            self.params
        } else {
            return None;
        };
        Some(match datum {
            // SAFETY: a jsonb datum of the claim's result, valid while the
            // batch's SPI connection lasts, and the handler call is inside it.
            Some(datum) => unsafe { DatumWithOid::new(datum, pg_sys::JSONBOID) },
            None => DatumWithOid::null_oid(pg_sys::JSONBOID),
        })
    }

    fn params(&self) -> serde_json::Map<String, Value> {
        // SAFETY: as in StoredJson::datum: a live jsonb datum of the claim's result.
        let params = self
            .params
            .and_then(|datum| unsafe { JsonB::from_datum(datum, false) });
        match params {
            Some(JsonB(Value::Object(map))) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// Claimed events, with their jsonb columns as stored.
type Claimed = Vec<(EventRow, StoredJson)>;

/// What one claim looks for.
struct Scan<'a> {
    /// Events at most.
    limit: i32,
    /// Events whose lost attempt a listener has yet to record.
    unrecorded: &'a [i64],
    /// Where the scan starts (Unix seconds; see [`Executor::scan_from`]).
    from: f64,
}

/// Claims due events of `owner`; also returns when the oldest of them became
/// due.
fn claim(
    client: &mut SpiClient<'_>,
    plan: &OwnedPreparedStatement,
    owner: pg_sys::Oid,
    scan: &Scan<'_>,
) -> Result<(Claimed, Option<f64>), pgrx::spi::Error> {
    let mut table = client.update(
        plan,
        None,
        &[
            DatumWithOid::from(owner),
            DatumWithOid::from(scan.limit),
            DatumWithOid::from(scan.unrecorded.to_vec()),
            DatumWithOid::from(scan.from),
        ],
    )?;
    let mut oldest_due: Option<f64> = None;
    let mut rows = Vec::new();
    while table.next().is_some() {
        let row = &table;
        if let Some(due) = row.get_by_name::<f64, _>(DUE)? {
            oldest_due = Some(oldest_due.map_or(due, |oldest| oldest.min(due)));
        }
        let stored = StoredJson {
            query: row.get_datum_by_name(EVENTS.query)?,
            headers: row.get_datum_by_name(EVENTS.headers)?,
            params: row.get_datum_by_name(EVENTS.params)?,
            awaited: row.get_by_name::<bool, _>(AWAITED)?.unwrap_or(false),
        };
        let text = |column: &str| row.get_by_name::<String, _>(column);
        let workflow_id = row
            .get_by_name::<pgrx::Uuid, _>(EVENTS.workflow_id)?
            .map(|id| Uuid::from_bytes(*id.as_bytes()))
            .unwrap_or_default();
        rows.push((
            EventRow {
                id: row.get_by_name::<i64, _>(EVENTS.id)?.unwrap_or(0),
                workflow_id,
                received_at: row
                    .get_by_name::<f64, _>(EVENTS.received_at)?
                    .unwrap_or(0.0),
                method: text(EVENTS.method)?.unwrap_or_default(),
                // Passed on as stored (StoredJson).
                query: Value::Null,
                headers: Value::Null,
                params: Value::Null,
                body: text(EVENTS.body)?,
                // Not read: the handler sees fixed values in these columns
                // (src/pg/event_row.rs, "handler sees"), whatever they hold.
                status: "pending",
                error: None,
                response: None,
                origin: Origin::parse(&text(EVENTS.origin)?.unwrap_or_default()),
                remote_addr: text(EVENTS.remote_addr)?,
                // This run's.
                handled_at: unix(SystemTime::now()),
                replay_of: row.get_by_name::<i64, _>(EVENTS.replay_of)?,
                raw_path: text(EVENTS.raw_path)?,
                raw_query: text(EVENTS.raw_query)?,
                attempts: row.get_by_name::<i32, _>(EVENTS.attempts)?.unwrap_or(0),
                next_attempt_at: None,
                listener_pid: row.get_by_name::<i32, _>(EVENTS.listener_pid)?,
            },
            stored,
        ));
    }
    Ok((rows, oldest_due))
}

/// Moves claimed retries that are over the owner's budget to their place in
/// its schedule ([`RetryBudget`]): (event id, Unix seconds).
fn postpone(client: &mut SpiClient<'_>, postponed: &[(i64, f64)]) -> Result<(), pgrx::spi::Error> {
    if postponed.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = postponed.iter().map(|(id, _)| *id).collect();
    let at: Vec<f64> = postponed.iter().map(|(_, at)| *at).collect();
    client.update(
        "UPDATE webhook.events e
            SET next_attempt_at = pg_catalog.to_timestamp(p.at)
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),
                           pg_catalog.unnest($2::pg_catalog.float8[])) AS p(id, at)
          WHERE e.id OPERATOR(pg_catalog.=) p.id",
        None,
        &[DatumWithOid::from(ids), DatumWithOid::from(at)],
    )?;
    Ok(())
}

fn wait_latch(timeout: Duration) {
    // SAFETY: the main thread's own latch; WL_EXIT_ON_PM_DEATH ends us with
    // the postmaster.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout.as_millis().min(60_000) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}
