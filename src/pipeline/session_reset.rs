//! Leaves nothing of one handler run in the listener's session for the next.
//!
//! The listener's session runs the handlers of every owner one after another.
//! Whatever session state a handler creates would be found by the next one:
//! an open cursor (declared WITH HOLD, or just left open in the batch's
//! transaction) can be fetched by another owner's handler and returns rows
//! read with the first owner's privileges; session advisory locks outlive the
//! run, and enough of them fill the cluster's shared lock table; LISTEN makes
//! the session a NOTIFY queue reader that never reads; PREPAREd statements and
//! sequence caches (currval/lastval) leak. Settings are reverted separately
//! (spi_util.rs). This is what DISCARD ALL does, minus what a transaction
//! block forbids, run after every handler, whether it succeeded or failed.

use pgrx::pg_sys;

// commands/async.h and commands/sequence.h are not in pgrx's bindings.
unsafe extern "C-unwind" {
    fn Async_UnlistenAll();
    fn ResetSequenceCaches();
}

/// Drops every portal (cursor) but the running one, releases session-level
/// advisory locks, deallocates prepared statements, forgets LISTENs and
/// sequence caches. Only for the listener's own session: in an ordinary
/// backend (`webhook_trigger`) this state belongs to the user.
pub fn discard_handler_state() {
    // SAFETY: all of these are what DISCARD ALL / pg_advisory_unlock_all() run,
    // called on the main thread inside a transaction, with no portal of ours
    // open (the pipeline executes plans directly, never through cursors).
    unsafe {
        pg_sys::PortalHashTableDeleteAll();
        pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as pg_sys::LOCKMETHODID);
        pg_sys::DropAllPreparedStatements();
        Async_UnlistenAll();
        ResetSequenceCaches();
    }
}
