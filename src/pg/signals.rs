//! SIGTERM for listener and executor processes, and the executor's deadline
//! watchdog.
//!
//! SIGTERM asks the main loop to finish (a listener stops accepting and
//! answers what is in flight). A handler that is running in an executor gets
//! a short grace period to finish; past it, a watchdog thread re-sends
//! SIGTERM and this time the signal handler does what PostgreSQL's own
//! `die()` does, so a long or stuck handler is cut short at its next
//! interrupt check (FATAL: the batch is not committed, its events run again)
//! instead of holding up `pg_ctl stop` or `pg_terminate_backend()`. The same
//! watchdog ends a handler that is still running 1 s past its deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::PgTryBuilder;

/// How long a running handler may go on after SIGTERM, or after its deadline.
const HANDLER_GRACE: Duration = Duration::from_secs(1);

/// When the running handler's deadline passes, as milliseconds since
/// `process_start()`; 0 when no deadline is armed.
static HANDLER_DEADLINE_MS: AtomicU64 = AtomicU64::new(0);

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Arms (or clears) the watchdog for the running handler's deadline.
pub fn set_handler_deadline(deadline: Option<Instant>) {
    let ms = deadline.map_or(0, |d| {
        (d.saturating_duration_since(process_start()).as_millis() as u64).max(1)
    });
    HANDLER_DEADLINE_MS.store(ms, Ordering::SeqCst);
}

/// A handler that kept running `HANDLER_GRACE` past its deadline, trapping
/// every cancel.
fn handler_overran() -> bool {
    let deadline_ms = HANDLER_DEADLINE_MS.load(Ordering::SeqCst);
    deadline_ms != 0
        && RUNNING_HANDLER.load(Ordering::SeqCst)
        && process_start().elapsed() >= Duration::from_millis(deadline_ms) + HANDLER_GRACE
}

static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);
/// A workflow handler is running on the main thread (read by the watchdog and
/// by the handler guard in src/execution/session_reset.rs).
pub(crate) static RUNNING_HANDLER: AtomicBool = AtomicBool::new(false);
static DIE_NOW: AtomicBool = AtomicBool::new(false);

/// Installs the SIGTERM handler and starts the watchdog thread; call before
/// signals are unblocked, so the thread inherits the blocked mask.
pub fn install_sigterm_handler() {
    process_start();
    // SAFETY: installs a signal handler on the main thread before signals are unblocked.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(on_sigterm));
    }
    let _ = std::thread::Builder::new()
        .name("webhook-watchdog".into())
        .spawn(watchdog);
}

pub fn shutdown_requested() -> bool {
    SHUTDOWN_REQUESTED.load(Ordering::SeqCst)
}

/// The SIGTERM handler: flags the shutdown, and when the watchdog asked the
/// process to die while a handler runs, makes the next interrupt check do it.
///
/// # Safety
/// Only as a signal handler of the main thread (installed by this module):
/// it touches nothing but atomics, PostgreSQL's interrupt flags and the
/// process latch, all async-signal-safe.
unsafe extern "C-unwind" fn on_sigterm(_signal: std::ffi::c_int) {
    SHUTDOWN_REQUESTED.store(true, Ordering::SeqCst);
    if DIE_NOW.load(Ordering::SeqCst) && RUNNING_HANDLER.load(Ordering::SeqCst) {
        pg_sys::ProcDiePending = 1;
        pg_sys::InterruptPending = 1;
    }
    pg_sys::SetLatch(pg_sys::MyLatch);
}

/// Never touches PostgreSQL: it only reads flags and signals its own process,
/// whose main thread (the only one with SIGTERM unblocked) takes the signal.
fn watchdog() {
    let mut shutdown_seen: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if handler_overran() {
            // Same path as a SIGTERM whose grace ran out: die() at the next
            // interrupt check; the postmaster restarts the listener.
            DIE_NOW.store(true, Ordering::SeqCst);
            // SAFETY: kill(2) of our own pid; only the main thread has SIGTERM unblocked.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            return;
        }
        if !shutdown_requested() {
            continue;
        }
        let since = *shutdown_seen.get_or_insert_with(Instant::now);
        if since.elapsed() >= HANDLER_GRACE && RUNNING_HANDLER.load(Ordering::SeqCst) {
            DIE_NOW.store(true, Ordering::SeqCst);
            // SAFETY: as above.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            return;
        }
    }
}

/// Runs a workflow handler so that SIGTERM can end it.
pub fn while_running_handler<R>(f: impl FnOnce() -> R) -> R {
    // Nested (a handler calling webhook_trigger): the outer handler is still
    // running when the inner one returns.
    let outer = RUNNING_HANDLER.swap(true, Ordering::SeqCst);
    if DIE_NOW.load(Ordering::SeqCst) {
        // The grace period is over: no new handler starts.
        // SAFETY: the flags die() sets, set on the main thread; checked at the next CHECK_FOR_INTERRUPTS.
        unsafe {
            pg_sys::ProcDiePending = 1;
            pg_sys::InterruptPending = 1;
        }
    }
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .finally(|| RUNNING_HANDLER.store(outer, Ordering::SeqCst))
        .execute()
}
