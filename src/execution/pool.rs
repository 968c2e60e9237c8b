//! The listener's side of execution: after a batch commits, wake the
//! executor of each owner whose events it stored, or start one (at most
//! `webhook.max_executors` in all, `webhook.max_executors_per_owner` per
//! owner); once a second, start
//! executors for owners with due events (retries, events left by a restart)
//! and record the attempts of executors that ended in the middle of a handler.
//!
//! Executors are background workers, and background-worker slots are shared
//! with parallel queries, which any role may ask for. So the postmaster
//! starts a pool of executor processes with the server (`register_pool`),
//! one per slot up to `webhook.max_executors`: each holds its
//! background-worker slot for the server's lifetime, waits unconnected until
//! a listener gives it an owner, serves that owner, and exits; the postmaster
//! starts it again at once, so no session state of one owner ever reaches
//! another. Slots above the pool (`webhook.max_executors` raised by a reload)
//! start processes on demand, as slots do when max_worker_processes leaves no
//! room for the pool.
//!
//! Sharing: an owner's second and later executors start only while another
//! slot stays free, so an owner without any executor finds one at once
//! however busy the others are; when that slot is taken, an idle executor or
//! an extra executor of a busy owner gives way (after its current handler).
//!
//! Those rules, and when a busy executor is trusted with its owner's new
//! events, are crates/webhook_core/src/executor_policy.rs, pure and unit
//! tested: this module copies the registry's slots for it under the lock,
//! applies its decisions under that same lock, and starts processes.

use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use webhook_core::executor_policy::{self as policy, Decision, Limits, MonotonicMs, Trust};

use super::attempts::{self, LostAttempt, Outcome};
use super::registry::{
    monotonic_now, policy_slots, wake, Registry, SlotState, MAX_EXECUTOR_SLOTS, REGISTRY,
};
use crate::pg::catalog::Catalog;
use crate::pg::gucs;
use crate::pg::log_rarely::OncePerMinute;
use crate::pg::spi::{
    in_subtransaction, run_kept, with_settings, CaughtSqlError, ORDERED_INDEX_SCANS,
};

/// Wakes an idle executor of the owner; if all of the owner's executors are
/// busy (a slow handler must not hold up the owner's other events) and none
/// keeps up (crates/webhook_core/src/executor_policy.rs `KEEPING_UP_MS`),
/// starts another one, up to `webhook.max_executors_per_owner`, if the pool
/// has room. When it has none, asks an executor to give way, so the owner
/// gets one soon (`wake_or_start` there has every rule).
pub fn wake_or_start(owner: pg_sys::Oid) -> Option<Recheck> {
    decide_and_apply(owner, |slots, limits, now| {
        policy::wake_or_start(slots, limits, now, owner.to_u32(), Trust::KeepingUp)
    })
}

/// An owner whose busy executor was trusted to take the events just stored
/// (crates/webhook_core/src/executor_policy.rs `KEEPING_UP_MS`): if it has
/// not started another claim by `due`, it is held up in slow handlers, and
/// [`recheck`] gives the owner another executor. A listener keeps one per
/// owner, the latest (under steady traffic, an executor held up stops being
/// trusted at the next batch).
pub struct Recheck {
    pub owner: pg_sys::Oid,
    /// When it was made, on the registry's monotonic clock.
    since: MonotonicMs,
    pub due: Instant,
}

/// See [`Recheck`]; returns the next one, if any.
pub fn recheck(pending: Recheck) -> Option<Recheck> {
    // A claim started after the events committed sees them (an idle
    // executor is woken instead).
    decide_and_apply(pending.owner, |slots, limits, now| {
        policy::recheck(slots, limits, now, pending.owner.to_u32(), pending.since)
    })
}

fn limits() -> Limits {
    Limits::from_settings(
        gucs::MAX_EXECUTORS.get(),
        gucs::MAX_EXECUTORS_PER_OWNER.get(),
        MAX_EXECUTOR_SLOTS,
    )
}

/// Under the registry's lock: the slots as plain data, the policy's
/// decisions for `owner`, applied; then, after the lock, the start of the
/// executor the policy asked for.
fn decide_and_apply(
    owner: pg_sys::Oid,
    decide: impl FnOnce(&[policy::Slot], Limits, MonotonicMs) -> Vec<Decision>,
) -> Option<Recheck> {
    let limits = limits();
    let applied = {
        let mut registry = REGISTRY.exclusive();
        let now = monotonic_now();
        let decisions = decide(&policy_slots(&registry), limits, now);
        apply(&mut registry, owner, now, &decisions)
    };
    if let Some((slot, first_for_owner)) = applied.start {
        start_executor(owner, slot, first_for_owner);
    }
    applied.recheck
}

/// What [`apply`] leaves to do after the registry's lock.
#[derive(Default)]
struct Applied {
    /// The slot taken for a new executor, and whether it is the owner's first.
    start: Option<(usize, bool)>,
    recheck: Option<Recheck>,
}

/// Carries out the policy's decisions for `owner`, in order, under the
/// registry's lock (`now` is the clock they were made at).
fn apply(
    registry: &mut Registry,
    owner: pg_sys::Oid,
    now: MonotonicMs,
    decisions: &[Decision],
) -> Applied {
    let mut applied = Applied::default();
    for decision in decisions {
        match *decision {
            Decision::FreeStuckSlot(index) => registry.executors[index] = Default::default(),
            Decision::Wake(index) => {
                let slot = &mut registry.executors[index];
                slot.retire = false;
                wake(slot.procno);
            }
            Decision::Nudge(index) => wake(registry.executors[index].procno),
            Decision::Start {
                slot: index,
                first_for_owner,
            } => {
                let slot = &mut registry.executors[index];
                *slot = Default::default();
                slot.state = SlotState::Starting;
                slot.owner = owner.to_u32();
                slot.since_ms = now.0;
                applied.start = Some((index, first_for_owner));
            }
            Decision::GiveWay(index) => {
                let slot = &mut registry.executors[index];
                slot.retire = true;
                wake(slot.procno);
            }
            Decision::RememberWaiting => super::registry::note_waiting(registry, owner.to_u32()),
            Decision::RecheckAt { since, at } => {
                applied.recheck = Some(Recheck {
                    owner,
                    since,
                    due: Instant::now() + Duration::from_millis(at.since(now).max(0) as u64),
                });
            }
        }
    }
    applied
}

/// Starts the executor for a slot just taken: wakes the slot's pool process,
/// or starts a process for a slot above the pool.
fn start_executor(owner: pg_sys::Oid, slot: usize, first_for_owner: bool) {
    if slot < super::registry::pool_size() {
        // Its pool process waits for it (or is being started again).
        wake(REGISTRY.share().pool_members[slot] - 1);
        return;
    }
    let role = owner.to_u32();
    let started = BackgroundWorkerBuilder::new(&format!("webhook_ext executor for role {role}"))
        .set_type("webhook_ext executor")
        .set_library("webhook_ext")
        .set_function("webhook_executor_main")
        .set_argument((slot as i32).into_datum())
        .enable_spi_access()
        .set_restart_time(None)
        .load_dynamic();
    if started.is_err() {
        {
            let mut registry = REGISTRY.exclusive();
            registry.executors[slot] = Default::default();
            let now = monotonic_now();
            let slots = policy_slots(&registry);
            let decisions = policy::after_failed_start(&slots, now, first_for_owner);
            apply(&mut registry, owner, now, &decisions);
        }
        static NO_WORKER_SLOT: OncePerMinute = OncePerMinute::new();
        if NO_WORKER_SLOT.due() {
            pgrx::warning!("webhook_ext could not start an executor: no background worker slot is free (raise max_worker_processes)");
        }
    }
}

/// Starts executors for owners that found the pool full, once slots are
/// free (an executor gave way or exited), before anyone else gets them.
pub fn start_waiting_owners() {
    if !super::registry::waiting_and_room(&REGISTRY.share(), pool_limit()) {
        return;
    }
    for owner in super::registry::take_waiting() {
        // An owner found waiting has no executor to trust.
        wake_or_start(pg_sys::Oid::from(owner));
    }
}

/// Registers the executor pool with the postmaster (from `_PG_init`, after
/// the listeners): `webhook.max_executors` processes, as many as
/// max_worker_processes leaves room for while keeping [`SPARE_WORKERS`] for
/// libraries loaded after this one and for what starts on demand.
pub fn register_pool() {
    let wanted = (gucs::MAX_EXECUTORS.get().max(0) as usize).min(MAX_EXECUTOR_SLOTS);
    // SAFETY: read in the postmaster while shared_preload_libraries load,
    // where max_worker_processes is final and nothing else runs.
    let room = unsafe { pg_sys::max_worker_processes.max(0) as usize }
        .saturating_sub(registered_background_workers());
    let size = if wanted + SPARE_WORKERS <= room {
        wanted
    } else {
        wanted.min(room.saturating_sub(SPARE_WORKERS))
    };
    for slot in 0..size {
        BackgroundWorkerBuilder::new(&format!("webhook_ext executor {slot}"))
            .set_type("webhook_ext executor")
            .set_library("webhook_ext")
            .set_function("webhook_executor_main")
            .set_argument((slot as i32).into_datum())
            .enable_spi_access()
            // Each exits after serving an owner. Not at once: a start that
            // fails (fork, no slot) would be retried in a tight loop.
            .set_restart_time(Some(std::time::Duration::from_secs(1)))
            .load();
    }
    super::registry::set_pool_size(size);
    if size < wanted {
        pgrx::warning!(
            "webhook_ext starts {size} of webhook.max_executors = {wanted} executors with the server: max_worker_processes leaves no room for more (the rest start on demand, when a slot is free); see docs/execution.md"
        );
    }
}

/// Background workers registered with the postmaster so far (the
/// postmaster's own, other libraries', the listeners).
fn registered_background_workers() -> usize {
    unsafe extern "C" {
        // The postmaster's list of registered workers (bgworker.c): a
        // null-terminated slist in PostgreSQL 15.
        static mut BackgroundWorkerList: pg_sys::slist_head;
    }
    let mut count = 0;
    // SAFETY: only the postmaster calls this, while it loads
    // shared_preload_libraries: the list is complete up to here and nothing
    // changes it meanwhile; each node's `next` is a valid pointer or null.
    unsafe {
        let list = &raw const BackgroundWorkerList;
        let mut node = (*list).head.next;
        while !node.is_null() {
            count += 1;
            node = (*node).next;
        }
    }
    count
}

/// Background-worker slots the pool leaves free when max_worker_processes is
/// short: for libraries loaded after this one (their own workers) and for
/// executors started on demand.
const SPARE_WORKERS: usize = 2;

/// How many executors may run at once (`webhook.max_executors`).
pub fn pool_limit() -> usize {
    limits().executors
}

/// Owners (still existing) with an event their executor could claim now,
/// however long other owners' queues are, reading only indexes no new event
/// writes more than it already did. A loose scan of events_unfinished_idx
/// jumps from one workflow with unfinished events to the next, reading only
/// each one's oldest unfinished event (the head). A workflow has due work
/// when:
///
/// * its head is due (for an ordered workflow the only event it may run, so
///   followers of a failing head are never counted and no backlog is read);
/// * or, unordered, its newest unfinished event is due (a new event is due
///   as it is stored: what a lost wake-up, a restart or an owner left out of
///   the waiting list leaves behind);
/// * or, unordered, one of its retries is due (events_retry_due_idx, whose
///   entries only failed attempts add).
///
/// Not seen: a new event of an unordered workflow whose wake-up was lost
/// while both an older and a newer event of the same workflow wait for a
/// later retry; the owner is found when the first of those is due.
///
/// The probes bound `workflow_id` by a range rather than `=`: with `=` the
/// planner drops `workflow_id` from the ORDER BY and may walk the primary
/// key (every event the workflow ever had) instead.
const DUE_OWNERS: &str = "
WITH RECURSIVE unfinished(workflow_id, head_due) AS (
    (SELECT e.workflow_id, e.next_attempt_at FROM webhook.events e
      WHERE e.next_attempt_at IS NOT NULL
      ORDER BY e.workflow_id, e.id
      LIMIT 1)
  UNION ALL
    SELECT n.workflow_id, n.next_attempt_at
      FROM unfinished u
     CROSS JOIN LATERAL (
           SELECT e.workflow_id, e.next_attempt_at FROM webhook.events e
            WHERE e.next_attempt_at IS NOT NULL
              AND e.workflow_id OPERATOR(pg_catalog.>) u.workflow_id
            ORDER BY e.workflow_id, e.id
            LIMIT 1) n
)
SELECT DISTINCT w.owner::pg_catalog.oid::pg_catalog.int8
  FROM unfinished u
  JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) u.workflow_id
  JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) w.owner::pg_catalog.oid
 WHERE NOT w.queued AND (u.head_due OPERATOR(pg_catalog.<=) pg_catalog.now()
    OR NOT w.ordered AND (
        (SELECT t.next_attempt_at FROM webhook.events t
          WHERE t.workflow_id OPERATOR(pg_catalog.>=) u.workflow_id
            AND t.workflow_id OPERATOR(pg_catalog.<=) u.workflow_id
            AND t.next_attempt_at IS NOT NULL
          ORDER BY t.workflow_id DESC, t.id DESC
          LIMIT 1) OPERATOR(pg_catalog.<=) pg_catalog.now()
     OR (SELECT d.next_attempt_at FROM webhook.events d
          WHERE d.workflow_id OPERATOR(pg_catalog.>=) u.workflow_id
            AND d.workflow_id OPERATOR(pg_catalog.<=) u.workflow_id
            AND d.next_attempt_at IS NOT NULL
            AND d.attempts OPERATOR(pg_catalog.>) 0
          ORDER BY d.workflow_id, d.next_attempt_at
          LIMIT 1) OPERATOR(pg_catalog.<=) pg_catalog.now()))";

/// The once-a-second round (inside the caller's transaction).
pub fn tend(client: &mut SpiClient<'_>, catalog: &mut Catalog) -> Result<(), pgrx::spi::Error> {
    record_ended_executors(client, catalog)?;
    start_waiting_owners();
    // Planned (and planned again after an invalidation) as index probes: a
    // plan made while webhook.events was empty and vacuumed read all of it
    // every second until the next analyze (bench/README.md).
    let due = with_settings(ORDERED_INDEX_SCANS, || run_kept::<i64>(client, DUE_OWNERS))?;
    for owner in due {
        // A trusted executor that is held up gets company at the next round.
        wake_or_start(pg_sys::Oid::from(owner as u32));
    }
    Ok(())
}

/// Executors that ended while a handler ran (terminated past its deadline,
/// or by an administrator; or crashed, loaded from their files after the
/// restart): that attempt failed. Recorded before the owner
/// gets a new executor, which could otherwise claim the event first.
fn record_ended_executors(
    client: &mut SpiClient<'_>,
    catalog: &mut Catalog,
) -> Result<(), pgrx::spi::Error> {
    let ended: Vec<(usize, super::registry::ExecutorSlot)> = {
        let mut registry = REGISTRY.exclusive();
        registry
            .executors
            .iter_mut()
            .enumerate()
            .filter(|(_, slot)| slot.state == SlotState::Exited)
            .map(|(index, slot)| {
                let copy = *slot;
                // Taken by this listener (no other records it too); still
                // Exited for the executors that must not run the event yet.
                slot.state = SlotState::Recording;
                (index, copy)
            })
            .collect()
    };
    for (index, slot) in ended {
        // Its own subtransaction: one slot's failure leaves the others and
        // the round intact.
        let result = in_subtransaction(|| record_interrupted_attempt(client, catalog, &slot));
        if slot.crashed && !matches!(result, Ok(Ok(LostAttempt::Busy))) {
            // Recorded (or given up): the file must not bring it back after
            // another restart. Cleared while the slot is still taken, so no
            // new executor writes the file meanwhile.
            super::running_file::clear(index);
        }
        let mut registry = REGISTRY.exclusive();
        match result {
            // The event's row is still locked (its executor is still exiting):
            // next round.
            Ok(Ok(LostAttempt::Busy)) => registry.executors[index].state = SlotState::Exited,
            Ok(Ok(_)) => registry.executors[index] = Default::default(),
            Ok(Err(e)) => {
                registry.executors[index] = Default::default();
                pgrx::warning!("webhook_ext could not record an interrupted attempt: {e}");
            }
            Err(e) => {
                registry.executors[index] = Default::default();
                pgrx::warning!(
                    "webhook_ext could not record an interrupted attempt: {}",
                    e.describe()
                );
            }
        }
    }
    forget_vanished_executors();
    Ok(())
}

/// Slots of executors whose process is gone without saying so (it ended
/// before it could register its exit callback): free them.
fn forget_vanished_executors() {
    let mut registry = REGISTRY.exclusive();
    for slot in registry.executors.iter_mut() {
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let gone = slot.state == SlotState::Running
            && slot.pid > 0
            && unsafe { libc::kill(slot.pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            *slot = Default::default();
        }
    }
}

fn record_interrupted_attempt(
    client: &mut SpiClient<'_>,
    catalog: &mut Catalog,
    slot: &super::registry::ExecutorSlot,
) -> Result<LostAttempt, pgrx::spi::Error> {
    if slot.running_event == 0 {
        return Ok(LostAttempt::Gone);
    }
    let started = slot.running_started_unix_ms as f64 / 1000.0;
    if slot.crashed {
        // Loaded from the executor's file after a crash restart
        // (src/execution/running_file.rs). 57P02 is the SQLSTATE PostgreSQL
        // gives every session a crash restart cuts off.
        let error = CaughtSqlError {
            sqlstate: "57P02".into(),
            message: "the server restarted while this handler ran: its executor ended abruptly (killed by a signal, as in a crash)".into(),
        };
        return attempts::record_lost_attempt(
            client,
            catalog,
            slot.running_event,
            slot.running_attempt,
            started,
            Outcome::Crashed(error),
        );
    }
    let past_deadline =
        slot.running_deadline_ms > 0 && monotonic_now().0 >= slot.running_deadline_ms;
    let error = if past_deadline {
        let ms = slot.running_deadline_ms - slot.running_started_ms;
        CaughtSqlError {
            sqlstate: "57014".into(),
            message: format!(
                "handler exceeded its deadline of {ms} ms and did not stop: its executor was terminated"
            ),
        }
    } else {
        CaughtSqlError {
            sqlstate: "57P01".into(),
            message: "the executor running the handler was terminated".into(),
        }
    };
    attempts::record_lost_attempt(
        client,
        catalog,
        slot.running_event,
        slot.running_attempt,
        started,
        Outcome::from_error(error),
    )
}
