//! Leaves nothing of one handler run in an executor's session for the next.
//!
//! An executor's session runs one owner's handlers one after another, many
//! per transaction (src/execution/executor.rs). Whatever session state a
//! handler creates would be found by the next one: an open cursor (declared
//! WITH HOLD, or just left open in the batch's transaction) could be fetched
//! by a later handler; session advisory locks outlive the
//! run, and enough of them fill the cluster's shared lock table; LISTEN makes
//! the session a NOTIFY queue reader that never reads; PREPAREd statements and
//! sequence caches (currval/lastval) leak; an open large-object descriptor
//! lets the next handler read or write the object with the first owner's
//! rights. Settings are reverted separately (src/pg/spi.rs). This is what
//! DISCARD ALL does, minus what a transaction block forbids, plus large
//! objects, run after every handler, whether it succeeded or failed.
//!
//! `SET CONSTRAINTS` changes the timing of constraints for the rest of the
//! transaction, which is the whole batch, and there is no way to restore the
//! previous state: handlers in executors may not run it at all
//! ([`install_handler_guard`]).

use std::sync::atomic::Ordering;

use pgrx::pg_sys;

// commands/async.h, commands/sequence.h and storage/large_object.h are not in
// pgrx's bindings.
unsafe extern "C-unwind" {
    fn Async_UnlistenAll();
    fn ResetSequenceCaches();
    fn AtEOXact_LargeObject(is_commit: bool);
}

/// Drops every portal (cursor) but the running one, releases session-level
/// advisory locks, deallocates prepared statements, forgets LISTENs and
/// sequence caches. Only for an executor's own session: in an ordinary
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
        // Closes every large-object descriptor, as at the end of a transaction.
        AtEOXact_LargeObject(true);
    }
}

static mut PREVIOUS_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Refuses `SET CONSTRAINTS` inside handlers run by this process (the
/// executor calls it once at start; ordinary backends never do).
pub fn install_handler_guard() {
    // SAFETY: hooks are process-global and set on the main thread before any
    // statement runs; the previous hook is chained.
    unsafe {
        PREVIOUS_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(guard_process_utility);
    }
}

/// The executor's `ProcessUtility_hook` (see [`install_handler_guard`]).
///
/// # Safety
/// Called by PostgreSQL only, with the arguments of `ProcessUtility_hook_type`.
#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)] // ProcessUtility_hook_type's signature
unsafe extern "C-unwind" fn guard_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL passes a valid PlannedStmt whose utilityStmt is a Node.
    let statement = unsafe { (*pstmt).utilityStmt };
    let is_set_constraints = !statement.is_null()
        // SAFETY: checked non-null just before; every Node starts with its tag.
        && unsafe { (*statement).type_ } == pg_sys::NodeTag::T_ConstraintsSetStmt;
    if is_set_constraints && crate::pg::signals::RUNNING_HANDLER.load(Ordering::SeqCst) {
        crate::pg::errors::SqlError::SetConstraintsInHandler.report();
    }
    // SAFETY: the arguments are passed on unchanged to the next hook or the
    // standard implementation.
    unsafe {
        match PREVIOUS_PROCESS_UTILITY {
            Some(previous) => previous(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
            // pgrx's wrapper of the standard implementation is a Rust fn, not
            // the hook's extern "C-unwind" type, so it cannot share the call.
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}
