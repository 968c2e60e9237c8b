//! Which event each executor is running, in a file that survives a crash.
//!
//! A handler that crashes its backend (killed by a signal: a segfault, the
//! OOM killer, `kill -9`) makes the postmaster restart every backend and
//! re-initialise shared memory, so the registry's slots (src/execution/registry.rs)
//! forget which event each executor was running, the batch's transaction is
//! lost, and the event is pending again with its attempt uncounted: such a
//! handler would crash the server again and again, for ever. Files in the
//! data directory survive that restart. So each executor keeps one small
//! file, `pg_webhook_ext/executor_<slot>`, holding a fixed-width record
//! (crates/webhook_core/src/running.rs):
//!
//! * before each handler: `running` with the event, its attempt number, the
//!   database and the start time: 128 bytes copied into the file's shared
//!   memory mapping (no system call);
//! * after the batch ends (committed or rolled back): `idle`, the same way;
//! * on PostgreSQL's exit path (terminated, FATAL, postmaster gone) while a
//!   batch is open: `ended`, as shared memory records that case
//!   (src/execution/pool.rs);
//! * on SIGQUIT (another process crashed, or an immediate shutdown): `quit`,
//!   written by the signal handler (a memory store is async-signal-safe)
//!   before PostgreSQL's own handler ends the process: it was a bystander.
//!
//! So a `running` record left after a restart names the handler whose
//! process died abruptly: the first listener after the restart loads it into
//! its slot as an ended executor ([`load_crashed`]) and records the attempt as
//! `crashed`, through the path that records attempts cut short, before any
//! executor may claim the event. Its retry policy counts it; the event ends
//! `dead` after its last attempt. A crash between two handlers of a batch, or
//! at its commit, is put on the last handler that ran (nothing but that
//! batch's own code ran since it started).
//!
//! Cost: no fsync (a backend crash is not an operating-system crash: the
//! page cache keeps what a dead process wrote into a shared file mapping),
//! and no system call: formatting and copying the record takes a fraction of
//! a microsecond, where one `pwrite` took about 1.8 µs of processor time
//! (docs/execution.md has the measurements), against about 39 µs of the
//! executor's time per event with the cheapest handler. The record is
//! written only when the running event changes and once per batch, never
//! read on the executor's path. After an operating-system crash the record
//! may be older or missing: that attempt is then counted or not, as before
//! this file existed.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use pgrx::pg_sys;
use webhook_core::running::{self, Record, Running};

use super::registry::{ExecutorSlot, Registry, SlotState, MAX_EXECUTOR_SLOTS};

/// The directory, relative to the data directory (every backend's working
/// directory).
const DIRECTORY: &str = "pg_webhook_ext";

fn path(slot: usize) -> String {
    format!("{DIRECTORY}/executor_{slot}")
}

/// This executor's file, mapped into its memory (null: not mapped). A
/// record is written by copying it into the mapping: no system call at all,
/// and what is copied is in the page cache, shared with every process that
/// reads the file, as soon as it is copied, and stays there when the process
/// dies.
static RECORD: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
/// A `running` record is in the file (a batch is open).
static DIRTY: AtomicBool = AtomicBool::new(false);
/// PostgreSQL's SIGQUIT handler, called after ours.
static PREVIOUS_SIGQUIT: AtomicUsize = AtomicUsize::new(0);

/// Opens (creating it if need be) the file of `slot` for this executor,
/// maps it, and installs the SIGQUIT handler that marks it. Without it the
/// executor runs as before (a crash in its handlers then goes uncounted),
/// and says so.
pub fn open(slot: usize) {
    let opened = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(DIRECTORY)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path(slot))
        })
        .and_then(|file| {
            // The mapping must not reach past the end of the file.
            file.set_len(running::RECORD_LEN as u64)?;
            map(&file)
        });
    match opened {
        Ok(record) => {
            RECORD.store(record, Ordering::SeqCst);
            install_sigquit_handler();
        }
        Err(e) => pgrx::warning!(
            "webhook_ext executor cannot write {}: {e}; a crash in its handlers will not be counted as an attempt",
            path(slot)
        ),
    }
}

/// Maps the file's record (its first [`running::RECORD_LEN`] bytes),
/// shared, for the life of the process (the descriptor may close).
fn map(file: &File) -> std::io::Result<*mut u8> {
    // SAFETY: a new shared read-write mapping of an open file that is at
    // least as long as the mapping; nothing else in this process maps it.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            running::RECORD_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(mapped.cast())
}

fn write(bytes: &[u8]) {
    let record = RECORD.load(Ordering::SeqCst);
    if !record.is_null() {
        // SAFETY: `record` maps RECORD_LEN bytes for the life of the process
        // and `bytes` is at most that long (a record, or a state word).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                record,
                bytes.len().min(running::RECORD_LEN),
            )
        };
    }
}

/// Before a handler runs: this event's attempt is the one a crash now cuts
/// short.
pub fn running(event_id: i64, attempt: i32, started_unix_ms: i64) {
    // SAFETY: MyDatabaseId is set once the executor connected, before any
    // handler runs.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let record = running::encode_running(&Running {
        event_id,
        attempt,
        database,
        started_unix_ms,
    });
    // Before the record: a SIGQUIT in between marks whatever is there.
    DIRTY.store(true, Ordering::SeqCst);
    write(&record);
}

/// After a batch ended (committed, or rolled back as a whole).
pub fn batch_ended() {
    if DIRTY.swap(false, Ordering::SeqCst) {
        write(&running::encode_idle());
    }
}

/// On PostgreSQL's exit path (src/execution/executor.rs `on_exit`): the
/// record, if a batch is open, was no crash; shared memory says what to
/// record, if anything.
pub fn exiting() {
    if DIRTY.swap(false, Ordering::SeqCst) {
        write(running::ENDED_MARK);
    }
}

fn install_sigquit_handler() {
    // SAFETY: replaces the SIGQUIT handler on the main thread (the only one
    // with signals unblocked); the previous one is kept and called by ours.
    let previous = unsafe { pg_sys::pqsignal(pg_sys::SIGQUIT as i32, Some(on_sigquit)) };
    if let Some(previous) = previous {
        PREVIOUS_SIGQUIT.store(previous as usize, Ordering::SeqCst);
    }
}

/// Marks the record `quit` (this process is a bystander of someone else's
/// crash, or of an immediate shutdown), then does what PostgreSQL's handler
/// does (exit at once).
///
/// # Safety
/// Only as the SIGQUIT handler: it reads atomics and copies 8 bytes into the
/// mapping (plain memory stores, async-signal-safe), then calls the handler
/// it replaced.
unsafe extern "C-unwind" fn on_sigquit(signal: std::ffi::c_int) {
    if DIRTY.load(Ordering::SeqCst) {
        write(running::QUIT_MARK);
    }
    let previous = PREVIOUS_SIGQUIT.load(Ordering::SeqCst);
    if previous != 0 {
        // SAFETY: the value pqsignal returned for SIGQUIT: a handler function.
        let previous: unsafe extern "C-unwind" fn(std::ffi::c_int) =
            unsafe { std::mem::transmute(previous) };
        // SAFETY: PostgreSQL's own SIGQUIT handler, in a signal handler.
        unsafe { previous(signal) };
    } else {
        // SAFETY: _exit(2) is async-signal-safe; 2 is what PostgreSQL's
        // handler exits with.
        unsafe { libc::_exit(2) };
    }
}

/// The crashed handlers' records, into `registry` (freshly initialised: the
/// first listener after a start or crash restart calls this, under the
/// registry's lock, before it starts any executor): each becomes its slot,
/// `Exited` and `crashed`, so no executor claims the event before a listener
/// recorded the attempt (src/execution/pool.rs). Files that name no crash
/// are cleared. Returns how many were loaded.
pub fn load_crashed(registry: &mut Registry) -> usize {
    // SAFETY: MyDatabaseId is set: listeners connect before they load.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let mut loaded = 0;
    for (index, slot) in registry.executors.iter_mut().enumerate() {
        let Ok(bytes) = std::fs::read(path(index)) else {
            continue; // no file: that slot never ran a handler
        };
        let record = running::decode(&bytes);
        match record.crashed() {
            Some(crashed) if crashed.database == database && slot.state == SlotState::Free => {
                *slot = ExecutorSlot {
                    state: SlotState::Exited,
                    running_event: crashed.event_id,
                    running_attempt: crashed.attempt,
                    running_started_unix_ms: crashed.started_unix_ms,
                    crashed: true,
                    ..ExecutorSlot::default()
                };
                loaded += 1;
            }
            Some(crashed) => {
                pgrx::log!(
                    "webhook_ext ignores {}: event {} of another database (OID {})",
                    path(index),
                    crashed.event_id,
                    crashed.database
                );
                clear(index);
            }
            None if record == Record::Idle => {}
            None => clear(index),
        }
    }
    loaded
}

/// Clears the file of `slot` once its crashed attempt is recorded (before
/// the slot is freed, so no new executor writes it meanwhile).
pub fn clear(slot: usize) {
    if slot < MAX_EXECUTOR_SLOTS {
        if let Ok(file) = OpenOptions::new().write(true).open(path(slot)) {
            let _ = file.write_all_at(&running::encode_idle(), 0);
        }
    }
}
