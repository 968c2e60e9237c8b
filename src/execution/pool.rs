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

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::attempts::{self, LostAttempt};
use super::registry::{now_ms, wake, SlotState, MAX_EXECUTOR_SLOTS, REGISTRY};
use crate::pg::catalog::Catalog;
use crate::pg::gucs;
use crate::pg::log_rarely::OncePerMinute;
use crate::pg::spi::{in_subtransaction, run_kept, CaughtSqlError};

/// A slot whose executor has not attached after this long is taken back
/// (the postmaster could not start it).
const START_TIMEOUT_MS: i64 = 10_000;

/// A busy executor that started a claim less than this long ago (its pause
/// between batches is 10 ms, src/execution/executor.rs `GATHER`), a claim on
/// time (`ExecutorSlot::claimed_ms`), keeps up with its owner's events:
/// another executor for the owner would only split the same events into
/// smaller batches (more commits, more processor time per event). One that
/// has not claimed for longer is in slow handlers, one whose claim was late
/// has slow handlers or a backlog: events behind it get another executor.
const KEEPING_UP_MS: i64 = 25;

/// Wakes an idle executor of the owner; if all of the owner's executors are
/// busy (a slow handler must not hold up the owner's other events) and none
/// keeps up (see [`KEEPING_UP_MS`]), starts
/// another one, up to `webhook.max_executors_per_owner`, if the pool has
/// room. When it has none, asks the executor that has been idle longest to
/// exit, so the owner gets one at the next round.
pub fn wake_or_start(owner: pg_sys::Oid) -> Option<Recheck> {
    wake_or_start_trusting(owner, true)
}

/// An owner whose busy executor was trusted to take the events just stored
/// (see [`KEEPING_UP_MS`]): if it has not started another claim by `due`, it
/// is held up in slow handlers, and [`recheck`] gives the owner another
/// executor. A listener keeps one per owner, the latest (under steady
/// traffic, an executor held up stops being trusted at the next batch).
pub struct Recheck {
    pub owner: pg_sys::Oid,
    since_ms: i64,
    pub due: std::time::Instant,
}

/// See [`Recheck`]; returns the next one, if any.
pub fn recheck(pending: Recheck) -> Option<Recheck> {
    let owner = pending.owner.to_u32();
    // A claim started after the events committed sees them (an idle
    // executor is woken below instead).
    let claimed_since = REGISTRY.share().executors.iter().any(|slot| {
        slot.owner == owner
            && slot.state == SlotState::Running
            && slot.idle_since_ms == 0
            && slot.claimed_ms > pending.since_ms
    });
    if claimed_since {
        return None;
    }
    wake_or_start_trusting(pending.owner, false)
}

fn wake_or_start_trusting(owner: pg_sys::Oid, trust_keeping_up: bool) -> Option<Recheck> {
    let owner_oid = owner;
    let owner = owner.to_u32();
    let limit = pool_limit();
    let per_owner = gucs::MAX_EXECUTORS_PER_OWNER.get().max(1) as usize;
    let now = now_ms();
    let pool = super::registry::pool_size();
    let slot = {
        let mut registry = REGISTRY.exclusive();
        let mut in_use = 0;
        let mut owners_executors = 0;
        let mut free = None;
        let mut idlest: Option<(usize, i64)> = None;
        let mut owner_busy_procnos = Vec::new();
        let mut trusted = false;
        let members = registry.pool_members;
        for (index, slot) in registry.executors.iter_mut().enumerate() {
            if slot.state == SlotState::Starting && now - slot.since_ms > START_TIMEOUT_MS {
                *slot = Default::default();
            }
            if slot.state == SlotState::Free {
                // A slot whose pool process waits is served at once; one
                // whose process is being started again, a second later.
                let ready = index >= pool || members[index] > 0;
                if free.is_none_or(|(_, free_ready): (usize, bool)| ready && !free_ready) {
                    free = Some((index, ready));
                }
                continue;
            }
            in_use += 1;
            if slot.owner == owner {
                owners_executors += 1;
                match slot.state {
                    // It will claim what is due once it runs (unless its
                    // start-up got stuck).
                    SlotState::Starting => return None,
                    SlotState::Running
                        if slot.claimed_ms == 0 && now - slot.since_ms < START_TIMEOUT_MS =>
                    {
                        return None
                    }
                    // Its lost attempt is recorded at the next round; other
                    // executors skip that event until then.
                    SlotState::Exited | SlotState::Recording => {}
                    SlotState::Running if slot.idle_since_ms > 0 => {
                        slot.retire = false;
                        wake(slot.procno);
                        return None;
                    }
                    _ => {
                        // Between batches (gathering) or in a short one, on
                        // time: it takes the new events at its next claim, in
                        // a moment. (Its latch is set too, in case that claim
                        // comes up empty as they commit.)
                        trusted |= trust_keeping_up
                            && !slot.retire
                            && slot.claim_on_time
                            && now - slot.claimed_ms < KEEPING_UP_MS;
                        owner_busy_procnos.push(slot.procno);
                    }
                }
                continue;
            }
            if slot.state == SlotState::Running
                && slot.idle_since_ms > 0
                && idlest.is_none_or(|(_, since)| slot.idle_since_ms < since)
            {
                idlest = Some((index, slot.idle_since_ms));
            }
        }
        for procno in owner_busy_procnos {
            wake(procno);
        }
        if trusted {
            return Some(Recheck {
                owner: owner_oid,
                since_ms: now,
                due: std::time::Instant::now()
                    + std::time::Duration::from_millis(KEEPING_UP_MS as u64),
            });
        }
        if owners_executors >= per_owner {
            return None;
        }
        // An owner's first executor may take the last free slot; further
        // ones leave it for an owner that has none.
        let room = if owners_executors == 0 { 1 } else { 2 };
        match free.map(|(index, _)| index) {
            Some(index) if in_use + room <= limit => {
                let slot = &mut registry.executors[index];
                *slot = Default::default();
                slot.state = SlotState::Starting;
                slot.owner = owner;
                slot.since_ms = now;
                if in_use + 1 == limit {
                    // The reserve is gone: get it back, from an executor
                    // idle for a while (not one between two events) or an
                    // extra one of a busy owner.
                    let long_idle = idlest
                        .filter(|(_, since)| now - since >= RESERVE_IDLE_MS)
                        .map(|(index, _)| index);
                    if let Some(victim) = long_idle.or_else(|| extra_to_retire(&registry.executors))
                    {
                        let slot = &mut registry.executors[victim];
                        slot.retire = true;
                        wake(slot.procno);
                    }
                }
                (index, owners_executors)
            }
            // No room (for a second executor: none beside the reserve).
            _ => {
                if owners_executors == 0 {
                    super::registry::note_waiting(&mut registry, owner);
                }
                let victim = idlest.map(|(index, _)| index).or_else(|| {
                    // Nobody is idle. An owner without any executor must not
                    // wait for others' steady work to end: one busy executor
                    // finishes its current handler and gives way.
                    (owners_executors == 0)
                        .then(|| busiest_to_retire(&registry.executors))
                        .flatten()
                });
                if let Some(index) = victim {
                    let slot = &mut registry.executors[index];
                    slot.retire = true;
                    wake(slot.procno);
                    if owners_executors > 0 {
                        // A busy owner's next executor, once the idle one
                        // has left (in a moment): look again then.
                        return Some(Recheck {
                            owner: owner_oid,
                            since_ms: now,
                            due: std::time::Instant::now()
                                + std::time::Duration::from_millis(KEEPING_UP_MS as u64),
                        });
                    }
                }
                return None;
            }
        }
    };
    let (slot, owners_executors) = slot;
    if slot < pool {
        // Its pool process waits for it (or is being started again).
        wake(REGISTRY.share().pool_members[slot] - 1);
        return None;
    }
    let started = BackgroundWorkerBuilder::new(&format!("webhook_ext executor for role {owner}"))
        .set_type("webhook_ext executor")
        .set_library("webhook_ext")
        .set_function("webhook_executor_main")
        .set_argument((slot as i32).into_datum())
        .enable_spi_access()
        .set_restart_time(None)
        .load_dynamic();
    if started.is_err() {
        // As if the pool were full: the owner waits for an executor to give
        // way, rather than for a background-worker slot that may never free.
        let mut registry = REGISTRY.exclusive();
        registry.executors[slot] = Default::default();
        if owners_executors == 0 {
            super::registry::note_waiting(&mut registry, owner);
            if let Some(victim) = busiest_to_retire(&registry.executors) {
                let slot = &mut registry.executors[victim];
                slot.retire = true;
                wake(slot.procno);
            }
        }
        drop(registry);
        static NO_WORKER_SLOT: OncePerMinute = OncePerMinute::new();
        if NO_WORKER_SLOT.due() {
            pgrx::warning!("webhook_ext could not start an executor: no background worker slot is free (raise max_worker_processes)");
        }
    }
    None
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

/// Which busy executor gives way to a waiting owner: one of an owner that
/// has several, else any; of those, one between handlers, else the one whose
/// handler started last (one that has run long is likely stuck in a slow
/// handler). Never one that has not claimed yet (it would leave having run
/// nothing, and the next one too); none while another is already giving way
/// between handlers or in a handler that started less than a second ago.
fn busiest_to_retire(executors: &[super::registry::ExecutorSlot]) -> Option<usize> {
    retire_choice(executors, 1)
}

/// An executor of an owner that has several, chosen as in
/// [`busiest_to_retire`], to give its slot back to the reserve.
fn extra_to_retire(executors: &[super::registry::ExecutorSlot]) -> Option<usize> {
    retire_choice(executors, 2)
}

fn retire_choice(
    executors: &[super::registry::ExecutorSlot],
    owners_at_least: usize,
) -> Option<usize> {
    let now = now_ms();
    let running = || {
        executors
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state == SlotState::Running)
    };
    let giving_way_soon = running().any(|(_, slot)| {
        slot.retire && (slot.running_event == 0 || now - slot.running_started_ms < 1000)
    });
    if giving_way_soon {
        return None;
    }
    let count = |owner: u32| running().filter(|(_, s)| s.owner == owner).count();
    running()
        .filter(|(_, slot)| !slot.retire && slot.claimed_ms != 0)
        .filter(|(_, slot)| count(slot.owner) >= owners_at_least)
        .max_by_key(|(_, slot)| {
            (
                count(slot.owner),
                slot.running_event == 0,
                slot.running_started_ms,
            )
        })
        .map(|(index, _)| index)
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

/// An idle executor gives its slot back to the reserve only after this long
/// (one idle between two events would be replaced by a new process for every
/// event).
const RESERVE_IDLE_MS: i64 = 1000;

/// How many executors may run at once (`webhook.max_executors`).
pub fn pool_limit() -> usize {
    (gucs::MAX_EXECUTORS.get().max(1) as usize).min(MAX_EXECUTOR_SLOTS)
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
 WHERE u.head_due OPERATOR(pg_catalog.<=) pg_catalog.now()
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
          LIMIT 1) OPERATOR(pg_catalog.<=) pg_catalog.now())";

/// The once-a-second round (inside the caller's transaction).
pub fn tend(client: &mut SpiClient<'_>, catalog: &mut Catalog) -> Result<(), pgrx::spi::Error> {
    record_ended_executors(client, catalog)?;
    start_waiting_owners();
    for owner in run_kept::<i64>(client, DUE_OWNERS)? {
        // A trusted executor that is held up gets company at the next round.
        wake_or_start(pg_sys::Oid::from(owner as u32));
    }
    Ok(())
}

/// Executors that ended while a handler ran (terminated past its deadline,
/// or by an administrator): that attempt failed. Recorded before the owner
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
    let past_deadline = slot.running_deadline_ms > 0 && now_ms() >= slot.running_deadline_ms;
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
        slot.running_started_ms as f64 / 1000.0,
        error,
    )
}
