//! Shared memory where listeners and executors find each other: one slot per
//! executor (whose handlers it runs, its latch, the event it is running and
//! that event's deadline) and each listener's latch.
//!
//! A slot outlives its executor on purpose: an executor that ends while a
//! handler runs (terminated past the deadline, or `pg_terminate_backend`)
//! leaves the slot `Exited` with the event it was running, and a listener
//! records that attempt (src/execution/pool.rs); until then other executors
//! skip that event, so it cannot run again before its lost attempt counts. A crash of any
//! backend makes the postmaster reinitialise shared memory: slots start empty
//! and events whose transaction was cut short are pending again, except the
//! one whose handler crashed, which the first listener loads back into its
//! slot from the executor's file ([`load_crash_records`],
//! src/execution/running_file.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use pgrx::lwlock::PgLwLock;
use pgrx::pg_guard;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;
use webhook_core::executor_policy::{self as policy, MonotonicMs};

pub use crate::pg::gucs::MAX_EXECUTOR_SLOTS;
/// As many as `webhook.workers` allows.
pub const MAX_LISTENER_SLOTS: usize = 64;

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    #[default]
    Free,
    /// Registered with the postmaster, not yet running.
    Starting,
    Running,
    /// Ended abnormally; `running_event` (if not 0) still has to be recorded.
    Exited,
    /// A listener is recording the attempt of an `Exited` executor.
    Recording,
}

#[derive(Copy, Clone, Debug, Default)]
pub struct ExecutorSlot {
    pub state: SlotState,
    /// The role whose handlers this executor runs.
    pub owner: u32,
    pub pid: i32,
    pub procno: i32,
    /// When a listener took the slot, on the monotonic clock ([`monotonic_now`]), to
    /// free a slot whose executor never started.
    pub since_ms: i64,
    /// The event whose handler runs now (0: none), its attempt number, when
    /// it started and its deadline (on the monotonic clock, [`monotonic_now`]),
    /// and when it started on the wall clock (ms since the Unix epoch), which
    /// the attempt records if a listener has to record it.
    pub running_event: i64,
    pub running_attempt: i32,
    pub running_started_ms: i64,
    pub running_deadline_ms: i64,
    pub running_started_unix_ms: i64,
    /// When it last read the configuration (ms since the Unix epoch: shown
    /// by `webhook_processes()`, so that whoever changed a setting can see
    /// every process took it in).
    pub settings_loaded_unix_ms: i64,
    /// Since when it has had nothing to do (monotonic; 0: busy). Every stamp
    /// in a slot is on the monotonic clock unless its name says unix: the
    /// listeners' decisions compare them with their own now, which a
    /// stepped wall clock would falsify.
    pub idle_since_ms: i64,
    /// When it last started to claim events (monotonic; 0: not yet), and
    /// whether that claim kept up: its handlers are fast (it claims
    /// full `webhook.batch_size` batches) and nothing it found had long been
    /// due (src/execution/executor.rs `note_claim`). A busy executor that
    /// claims often and on time takes its owner's new events, so no second
    /// one starts (crates/webhook_core/src/executor_policy.rs).
    pub claimed_ms: i64,
    pub claim_on_time: bool,
    /// Asked to exit (the pool is full and another owner needs an executor).
    pub retire: bool,
    /// An `Exited` slot loaded from the executor's file after a crash
    /// restart (src/execution/running_file.rs): its handler's process died
    /// abruptly, and the attempt is recorded as `crashed`.
    pub crashed: bool,
}

#[derive(Copy, Clone)]
pub struct Registry {
    pub executors: [ExecutorSlot; MAX_EXECUTOR_SLOTS],
    /// procno + 1 of each listener process (0: none), by listener number.
    pub listeners: [i32; MAX_LISTENER_SLOTS],
    /// Each listener's pid, and when it last read the configuration (ms
    /// since the Unix epoch), by listener number.
    pub listener_pids: [i32; MAX_LISTENER_SLOTS],
    pub listener_settings_loaded_unix_ms: [i64; MAX_LISTENER_SLOTS],
    /// When each listener registered (ms since the Unix epoch).
    pub listener_started_unix_ms: [i64; MAX_LISTENER_SLOTS],
    /// Owners that found the pool full (0: none), oldest first, served first
    /// when a slot frees.
    pub waiting: [u32; MAX_WAITING_OWNERS],
    /// procno + 1 of the pool process waiting for each slot (0: none yet;
    /// only slots below [`pool_size`] have one).
    pub pool_members: [i32; MAX_EXECUTOR_SLOTS],
    /// Counts [`wake_listeners`] calls: a listener with callers waiting for
    /// results looks them up only when it moved (or now and then).
    pub results: u64,
    /// The executors' files were read into the slots after this start or
    /// crash restart (src/execution/running_file.rs); shared memory starts
    /// with it false after each one.
    pub crash_records_loaded: bool,
}

/// Owners remembered as waiting for a free executor slot. Past this many, an
/// owner is found again by the listeners' once-a-second round
/// (src/execution/pool.rs `tend`) and remembered once there is room.
pub const MAX_WAITING_OWNERS: usize = 1024;

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            executors: [ExecutorSlot::default(); MAX_EXECUTOR_SLOTS],
            listeners: [0; MAX_LISTENER_SLOTS],
            listener_pids: [0; MAX_LISTENER_SLOTS],
            listener_settings_loaded_unix_ms: [0; MAX_LISTENER_SLOTS],
            listener_started_unix_ms: [0; MAX_LISTENER_SLOTS],
            waiting: [0; MAX_WAITING_OWNERS],
            pool_members: [0; MAX_EXECUTOR_SLOTS],
            results: 0,
            crash_records_loaded: false,
        }
    }
}

// SAFETY: plain old data, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Registry {}

// SAFETY: initialised by pg_shmem_init! in _PG_init (request_shared_memory), before any use.
pub static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"webhook_ext executors") };

/// Called from `_PG_init` while shared_preload_libraries are loaded.
// The macro tests features for other PostgreSQL versions than ours.
#[allow(unexpected_cfgs)]
pub fn request_shared_memory() {
    CLOCK_START.get_or_init(Instant::now);
    pgrx::pg_shmem_init!(REGISTRY);
}

/// The start of the monotonic clock the listeners' executor decisions use
/// (crates/webhook_core/src/executor_policy.rs): set in the postmaster before
/// it forks anything, so every process measures from the same instant.
/// `Instant` reads CLOCK_MONOTONIC, one clock for the whole machine, so a
/// reading taken in one process compares with one taken in another.
static CLOCK_START: OnceLock<Instant> = OnceLock::new();

/// Now on the registry's monotonic clock, in milliseconds from the
/// postmaster's start (never 0 once anything ran, so 0 can mean "none").
/// Intervals measured on it are right even when the wall clock is stepped
/// (NTP, an administrator), which would otherwise make a fresh start look
/// stuck or an executor that just went idle look idle for an hour.
pub fn monotonic_now() -> MonotonicMs {
    let start = *CLOCK_START.get_or_init(Instant::now);
    MonotonicMs((start.elapsed().as_millis() as i64).max(1))
}

/// A slot's stamp (0: none).
fn stamp(ms: i64) -> Option<MonotonicMs> {
    (ms != 0).then_some(MonotonicMs(ms))
}

/// The executor slots as the policy sees them.
pub fn policy_slots(registry: &Registry) -> Vec<policy::Slot> {
    let pool = pool_size();
    registry
        .executors
        .iter()
        .enumerate()
        .map(|(index, slot)| policy::Slot {
            state: policy_state(slot.state),
            owner: slot.owner,
            taken_at: MonotonicMs(slot.since_ms),
            idle_since: stamp(slot.idle_since_ms),
            last_claim: stamp(slot.claimed_ms),
            claim_on_time: slot.claim_on_time,
            in_handler: slot.running_event != 0,
            handler_since: stamp(slot.running_started_ms),
            giving_way: slot.retire,
            // A slot whose pool process waits is served at once; one whose
            // process is being started again, a second later; one above the
            // pool gets a process started for it.
            process_waiting: index >= pool || registry.pool_members[index] > 0,
        })
        .collect()
}

fn policy_state(state: SlotState) -> policy::SlotState {
    match state {
        SlotState::Free => policy::SlotState::Free,
        SlotState::Starting => policy::SlotState::Starting,
        SlotState::Running => policy::SlotState::Running,
        SlotState::Exited | SlotState::Recording => policy::SlotState::Ended,
    }
}

/// How many executor processes the postmaster started with the server (the
/// pool, src/execution/pool.rs `register_pool`): slots below this number are
/// served by them, any above by processes started on demand. Set in the
/// postmaster before it forks anything, so every process sees the same.
static POOL_SIZE: AtomicUsize = AtomicUsize::new(0);

pub fn pool_size() -> usize {
    POOL_SIZE.load(Ordering::Relaxed)
}

pub fn set_pool_size(size: usize) {
    POOL_SIZE.store(size.min(MAX_EXECUTOR_SLOTS), Ordering::Relaxed);
}

/// A pool process says it waits for work in `slot`.
pub fn join_pool(slot: usize) {
    if let Some(member) = REGISTRY.exclusive().pool_members.get_mut(slot) {
        *member = my_procno() + 1;
    }
}

/// Now on the wall clock (ms since the Unix epoch): for times compared with
/// events' times or recorded as an attempt's.
pub fn now_ms() -> i64 {
    (crate::pg::event_row::unix(std::time::SystemTime::now()) * 1000.0) as i64
}

/// This process's procno (its latch's index in ProcGlobal->allProcs).
pub fn my_procno() -> i32 {
    // SAFETY: MyProc is set for every backend and background worker once it
    // is attached to shared memory, before any of our code runs.
    unsafe { (*pg_sys::MyProc).pgprocno }
}

/// Sets the latch of the process with this procno.
pub fn wake(procno: i32) {
    if procno < 0 {
        return;
    }
    // SAFETY: procno came from a live process's MyProc->pgprocno, so it
    // indexes ProcGlobal->allProcs; setting any process's latch is what
    // SetLatch is for (it is safe even if that process has exited since).
    unsafe {
        let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
        pg_sys::SetLatch(&mut (*proc).procLatch);
    }
}

/// This process's listener number, once it registered as a listener.
static MY_LISTENER_NUMBER: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Records listener `number`'s latch, so executors can wake it, and its pid
/// and configuration (read just now) for `webhook_processes()`.
pub fn register_listener(number: usize) {
    if number < MAX_LISTENER_SLOTS {
        MY_LISTENER_NUMBER.store(number, Ordering::Relaxed);
        let mut registry = REGISTRY.exclusive();
        registry.listeners[number] = my_procno() + 1;
        // SAFETY: MyProcPid is set before any extension code runs.
        registry.listener_pids[number] = unsafe { pg_sys::MyProcPid };
        let now = now_ms();
        registry.listener_settings_loaded_unix_ms[number] = now;
        registry.listener_started_unix_ms[number] = now;
    }
}

/// A listener read the configuration again (after SIGHUP).
pub fn listener_loaded_settings() {
    let number = MY_LISTENER_NUMBER.load(Ordering::Relaxed);
    if number < MAX_LISTENER_SLOTS {
        REGISTRY.exclusive().listener_settings_loaded_unix_ms[number] = now_ms();
    }
}

/// One listener or executor process as `webhook_processes()` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow {
    pub pid: i32,
    pub kind: &'static str,
    /// The role whose handlers an executor runs (an OID; none for listeners).
    pub owner: Option<u32>,
    /// listening; an executor: starting, idle, claiming, running handler,
    /// exited, recording.
    pub state: &'static str,
    /// The event whose handler runs now.
    pub event: Option<i64>,
    /// Since when it is in `state` (a listener: since it started), ms since
    /// the Unix epoch.
    pub since_unix_ms: i64,
    pub settings_loaded_unix_ms: i64,
}

/// The running listeners and executors, as shared memory has them now.
pub fn processes() -> Vec<ProcessRow> {
    let (now_unix, now_monotonic) = (now_ms(), monotonic_now());
    let registry = REGISTRY.share();
    let listeners = (0..MAX_LISTENER_SLOTS)
        .filter(|&n| registry.listeners[n] > 0)
        .map(|n| ProcessRow {
            pid: registry.listener_pids[n],
            kind: "listener",
            owner: None,
            state: "listening",
            event: None,
            since_unix_ms: registry.listener_started_unix_ms[n],
            settings_loaded_unix_ms: registry.listener_settings_loaded_unix_ms[n],
        });
    let executors = registry
        .executors
        .iter()
        .filter(|slot| slot.state != SlotState::Free && slot.pid != 0)
        .map(|slot| ProcessRow {
            pid: slot.pid,
            kind: "executor",
            owner: Some(slot.owner),
            state: match slot.state {
                SlotState::Free => "free",
                SlotState::Starting => "starting",
                SlotState::Running if slot.running_event != 0 => "running handler",
                SlotState::Running if slot.idle_since_ms != 0 => "idle",
                SlotState::Running => "claiming",
                SlotState::Exited => "exited",
                SlotState::Recording => "recording",
            },
            event: (slot.running_event != 0).then_some(slot.running_event),
            since_unix_ms: state_since_unix_ms(slot, now_unix, now_monotonic),
            settings_loaded_unix_ms: slot.settings_loaded_unix_ms,
        });
    listeners.chain(executors).collect()
}

/// When an executor entered the state [`processes`] shows: the stamp of
/// that state, moved from the monotonic clock to the wall clock.
fn state_since_unix_ms(slot: &ExecutorSlot, now_unix: i64, now: MonotonicMs) -> i64 {
    let on_wall_clock = |stamp: i64| now_unix - (now.0 - stamp).max(0);
    match slot.state {
        SlotState::Running if slot.running_event != 0 => slot.running_started_unix_ms,
        SlotState::Running if slot.idle_since_ms != 0 => on_wall_clock(slot.idle_since_ms),
        SlotState::Running if slot.claimed_ms != 0 => on_wall_clock(slot.claimed_ms),
        _ => on_wall_clock(slot.since_ms),
    }
}

/// Wakes every listener (an executor finished an event someone may wait
/// for); called after the commit that recorded it.
pub fn wake_listeners() {
    let listeners = {
        let mut registry = REGISTRY.exclusive();
        registry.results = registry.results.wrapping_add(1);
        registry.listeners
    };
    for procno in listeners.iter().filter(|p| **p > 0) {
        wake(procno - 1);
    }
}

/// How many times executors announced results ([`wake_listeners`]).
pub fn results_announced() -> u64 {
    REGISTRY.share().results
}

/// What a listener has to do for the executors, read at once in every turn
/// of its loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Duties {
    /// An executor ended in the middle of a handler: record that attempt.
    pub record_exited: bool,
    /// An owner waits for a slot and one is free.
    pub start_waiting: bool,
}

pub fn duties(limit: usize) -> Duties {
    let registry = REGISTRY.share();
    Duties {
        record_exited: registry
            .executors
            .iter()
            .any(|slot| slot.state == SlotState::Exited),
        start_waiting: waiting_and_room(&registry, limit),
    }
}

/// Events whose attempt ended with its executor and is not recorded yet:
/// no other executor may run them before a listener records that attempt.
pub fn unrecorded_events() -> Vec<i64> {
    REGISTRY
        .share()
        .executors
        .iter()
        .filter(|slot| {
            matches!(slot.state, SlotState::Exited | SlotState::Recording)
                && slot.running_event != 0
        })
        .map(|slot| slot.running_event)
        .collect()
}

/// Called by every listener once connected, before it serves or starts any
/// executor: the first one after a start or a crash restart loads the
/// handlers that crashed into their slots (src/execution/running_file.rs),
/// holding the registry's lock meanwhile, so no listener starts an executor
/// that could claim such an event first. Reading at most one small file per
/// slot, once per start, under the lock is cheaper than any other ordering.
pub fn load_crash_records() {
    let loaded = {
        let mut registry = REGISTRY.exclusive();
        if registry.crash_records_loaded {
            return;
        }
        registry.crash_records_loaded = true;
        super::running_file::load_crashed(&mut registry)
    };
    if loaded > 0 {
        pgrx::log!(
            "webhook_ext found {loaded} handler(s) running when the server restarted; their attempts are recorded as crashed"
        );
    }
}

/// Remembers that `owner` found the pool full.
pub fn note_waiting(registry: &mut Registry, owner: u32) {
    if registry.waiting.contains(&owner) {
        return;
    }
    if let Some(free) = registry.waiting.iter_mut().find(|o| **o == 0) {
        *free = owner;
    }
}

/// Whether an owner waits for a slot and one is free.
pub fn waiting_and_room(registry: &Registry, limit: usize) -> bool {
    registry.waiting.iter().any(|o| *o != 0)
        && policy::room_for_another(
            registry
                .executors
                .iter()
                .map(|slot| policy_state(slot.state)),
            limit,
        )
}

/// Takes the waiting owners, oldest first.
pub fn take_waiting() -> Vec<u32> {
    let mut registry = REGISTRY.exclusive();
    let owners = registry
        .waiting
        .iter()
        .copied()
        .filter(|o| *o != 0)
        .collect();
    registry.waiting = [0; MAX_WAITING_OWNERS];
    owners
}
