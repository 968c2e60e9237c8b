//! Transactions, subtransactions, role switches and deadlines for code running
//! on the main thread of a backend or listener process.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;

/// An error caught from PostgreSQL (or a Rust panic), reduced to what an event
/// row records: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtSqlError {
    pub sqlstate: String,
    pub message: String,
}

impl CaughtSqlError {
    fn from_caught(error: CaughtError) -> CaughtSqlError {
        let report = match &error {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        CaughtSqlError {
            sqlstate: sqlstate_text(report.sql_error_code()),
            message: report.message().to_string(),
        }
    }

    /// `"42501: permission denied for table pg_authid"`
    pub fn describe(&self) -> String {
        format!("{}: {}", self.sqlstate, self.message)
    }
}

fn sqlstate_text(code: pgrx::PgSqlErrorCode) -> String {
    // PostgreSQL packs the five SQLSTATE characters six bits each (MAKE_SQLSTATE).
    let mut packed = code as i32;
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push((((packed & 0x3F) as u8) + b'0') as char);
        packed >>= 6;
    }
    out
}

/// Runs `f` in its own transaction and commits; on any error (in `f` or at
/// commit) the transaction is rolled back and the error returned, leaving the
/// process ready for the next transaction. Only for the listener's main loop,
/// where no transaction is open.
pub fn in_transaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtSqlError> {
    // SAFETY: starts a transaction on the main thread, where none is open (see above).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let f = AssertUnwindSafe(f);
    PgTryBuilder::new(move || {
        let result = f();
        // SAFETY: ends the transaction started above, with its snapshot.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(result)
    })
    .catch_others(|error| {
        // SAFETY: the error left the transaction open; aborting it is the only way out.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(CaughtSqlError::from_caught(error))
    })
    .execute()
}

/// Runs `f` in a subtransaction, the way PL/pgSQL runs an exception block: on
/// error everything `f` did is rolled back and the error returned, while the
/// enclosing transaction goes on.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtSqlError> {
    // SAFETY: starts a subtransaction inside the caller's transaction, as PL/pgSQL does.
    let (old_context, old_owner) = unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        (context, owner)
    };
    let f = AssertUnwindSafe(f);
    PgTryBuilder::new(move || {
        let result = f();
        // SAFETY: commits the subtransaction started above and restores the caller's context.
        unsafe {
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Ok(result)
    })
    .catch_others(|error| {
        // SAFETY: rolls back the subtransaction started above and restores the caller's context.
        unsafe {
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Err(CaughtSqlError::from_caught(error))
    })
    .execute()
}

/// Runs a handler with the privileges of `role`, like a SECURITY DEFINER
/// function owned by it, and as a security-restricted operation (as
/// PostgreSQL runs index expressions during VACUUM): `SET ROLE`, `SET SESSION
/// AUTHORIZATION` (and their RESETs, the way back to the executor's
/// connecting superuser) and temporary objects are refused, so nothing a
/// handler does outlives it in the executor's session. Every setting it
/// changes, even with `set_config(..., false)`, is reverted afterwards.
/// It runs with `search_path` (the owner's), not the pinned path of the
/// extension's own statements. Errors propagate; the enclosing
/// subtransaction's abort then restores the user and settings.
/// `lock_timeout` is the server default ([`reset_value`]): a handler waits for locks as its owner's sessions would (its deadline
/// still bounds it).
pub fn as_handler_owner<R>(
    role: pg_sys::Oid,
    search_path: &std::ffi::CStr,
    lock_timeout: &std::ffi::CStr,
    f: impl FnOnce() -> R,
) -> R {
    let restricted =
        pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    with_role(
        role,
        restricted,
        &[
            (c"search_path", search_path),
            (c"lock_timeout", lock_timeout),
        ],
        f,
    )
}

/// A setting's value from the configuration (what RESET would restore).
pub fn reset_value(name: &std::ffi::CStr) -> std::ffi::CString {
    // SAFETY: `name` is a built-in GUC, so the reset string exists; PostgreSQL
    // owns the returned memory and it is copied at once.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetConfigOptionResetString(name.as_ptr())).to_owned()
    }
}

/// The search_path of every statement the extension runs with elevated
/// rights: nothing a tenant can create is found through it.
pub const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Sets a setting for the rest of the session (the listener's own settings:
/// its pinned search_path and lock_timeout).
pub fn set_session_setting(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    // SAFETY: plain GUC assignment on the main thread, outside any
    // transaction; the check hooks of these settings only parse the value.
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
        );
    }
}

/// Lets the current transaction commit without waiting for its WAL to reach
/// disk (`SET LOCAL synchronous_commit = off`): a crash may then lose the
/// transaction as a whole, never part of it.
pub fn commit_without_waiting_for_flush() {
    // SAFETY: a transaction-local GUC assignment on the main thread, inside
    // the transaction it applies to; reverted at its end.
    unsafe {
        pg_sys::set_config_option(
            c"synchronous_commit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

/// For statements whose every read is a probe or an ordered walk of an
/// index: planned under these, they stay so when the statistics are stale
/// (a table that was empty when last analyzed, and has grown since), where
/// the planner would otherwise scan or sort the whole table.
pub const ORDERED_INDEX_SCANS: &[(&std::ffi::CStr, &std::ffi::CStr)] =
    &[(c"enable_seqscan", c"off"), (c"enable_bitmapscan", c"off")];

/// Runs `f` with these settings, reverted afterwards (even if `f` changed them).
pub fn with_settings<R>(
    settings: &[(&std::ffi::CStr, &std::ffi::CStr)],
    f: impl FnOnce() -> R,
) -> R {
    // SAFETY: reads the current user, to run as it unchanged.
    let (user, context) = unsafe {
        let mut user = pg_sys::Oid::INVALID;
        let mut context = 0;
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        (user, context)
    };
    with_role(user, context, settings, f)
}

/// Runs the extension's own statements as `role` with `search_path` pinned to
/// `pg_catalog, pg_temp`, so no function or operator a user planted in a
/// schema on the caller's path can run with those privileges.
pub fn as_role_with_safe_path<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    with_role(
        role,
        pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        &[(c"search_path", SAFE_SEARCH_PATH)],
        f,
    )
}

fn with_role<R>(
    role: pg_sys::Oid,
    security_flags: i32,
    settings: &[(&std::ffi::CStr, &std::ffi::CStr)],
    f: impl FnOnce() -> R,
) -> R {
    // SAFETY: user switches and GUC nesting as fmgr_security_definer does; both are undone before returning (or by the enclosing abort).
    unsafe {
        let mut saved_user = pg_sys::Oid::INVALID;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(role, saved_context | security_flags);
        let nest_level = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let result = f();
        // isCommit = false: revert what was set at this nesting level.
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        result
    }
}

// utils/timeout.h is not in pgrx's bindings.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_every(id: std::ffi::c_int, fin_time: i64, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}

/// How often a handler past its deadline is cancelled again.
const RECANCEL_EVERY_MS: i32 = 100;

/// When the running handler must be done.
#[derive(Clone, Copy)]
struct Deadline {
    at: std::time::Instant,
    /// The same moment on PostgreSQL's clock, for timeout.c.
    fin_time: pg_sys::TimestampTz,
}

impl Deadline {
    /// Cancels whatever runs past it (again every 100 ms), and arms the
    /// watchdog for it; a deadline already past cancels at once.
    fn arm(self) {
        // SAFETY: timeout.c API on the main thread; STATEMENT_TIMEOUT is the
        // built-in timeout whose handler sets QueryCancelPending.
        unsafe { enable_timeout_every(STATEMENT_TIMEOUT, self.fin_time, RECANCEL_EVERY_MS) };
        crate::pg::signals::set_handler_deadline(Some(self.at));
    }
}

thread_local! {
    /// The deadline in force, while a handler runs (only the main thread
    /// runs handlers).
    static DEADLINE: std::cell::Cell<Option<Deadline>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with a deadline: past `timeout_ms` PostgreSQL cancels it with
/// "canceling statement due to statement timeout" (57014), exactly as
/// statement_timeout does for a client query, and again every 100 ms while
/// it goes on. A handler that catches the cancel and returns late still fails
/// with 57014; one that keeps catching it is ended 1 s after its deadline by
/// the executor's watchdog (src/pg/signals.rs), which ends the executor:
/// nothing of its batch is committed, and a listener records the attempt
/// (src/execution/pool.rs).
///
/// Deadlines nest: a handler that calls `webhook_trigger` or
/// `webhook_replay` runs another handler under that one's deadline, but
/// never past its own, and its own is in force again when the inner call
/// returns.
pub fn with_deadline<R>(timeout_ms: i32, f: impl FnOnce() -> R) -> R {
    let started = std::time::Instant::now();
    let timeout_ms = timeout_ms.max(1);
    // SAFETY: reads the clock, on the main thread.
    let own = Deadline {
        at: started + std::time::Duration::from_millis(timeout_ms as u64),
        fin_time: unsafe { pg_sys::GetCurrentTimestamp() } + i64::from(timeout_ms) * 1000,
    };
    let outer = DEADLINE.get();
    let deadline = match outer {
        Some(outer) if outer.at < own.at => outer,
        _ => own,
    };
    deadline.arm();
    DEADLINE.set(Some(deadline));
    let f = AssertUnwindSafe(f);
    let result = PgTryBuilder::new(f)
        .finally(|| {
            DEADLINE.set(outer);
            match outer {
                Some(outer) => outer.arm(),
                // SAFETY: timeout.c on the main thread: disarms what was armed above.
                None => unsafe {
                    crate::pg::signals::set_handler_deadline(None);
                    disable_timeout(STATEMENT_TIMEOUT, false);
                    // A timeout that fired just after `f` returned must not cancel
                    // whatever runs next.
                    pg_sys::QueryCancelPending = 0;
                },
            }
        })
        .execute();
    let timeout_ms = deadline.at.saturating_duration_since(started).as_millis();
    if std::time::Instant::now() > deadline.at {
        super::errors::SqlError::HandlerDeadline(timeout_ms).report();
    }
    result
}

/// Hands the process's table statistics (rows inserted, updated, dead) to
/// the cumulative statistics system, at most once a second. Ordinary
/// backends do this when idle; a background worker that never idles must, or
/// autovacuum never learns that webhook.events changed, and the queue's
/// index fills with entries of finished events that every claim walks.
/// Only between transactions; `now` flushes whatever the last second held
/// back (before a process goes idle).
pub fn report_table_statistics(now: bool) {
    // SAFETY: the documented call for long-running processes, on the main
    // thread, outside any transaction (the callers' loops, between batches).
    unsafe {
        pg_sys::pgstat_report_stat(now);
    }
}

thread_local! {
    /// Plans of the statements run through [`run_kept`], by their text.
    static KEPT: std::cell::RefCell<std::collections::HashMap<&'static str, pgrx::spi::OwnedPreparedStatement>> =
        Default::default();
}

/// Runs a statement of the process's own housekeeping through a plan kept
/// for the life of the process (PostgreSQL replans it when what it reads
/// changes), instead of parsing and planning it on each run: planning some
/// of them takes milliseconds, which every request waiting meanwhile would
/// wait too. Returns the first column of each row it returned, as `T`.
pub fn run_kept<T: pgrx::FromDatum + pgrx::IntoDatum>(
    client: &mut pgrx::spi::SpiClient<'_>,
    sql: &'static str,
) -> Result<Vec<T>, pgrx::spi::Error> {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if !kept.contains_key(sql) {
            kept.insert(sql, client.prepare_mut(sql, &[])?.keep());
        }
        let table = client.update(&kept[sql], None, &[])?;
        let mut values = Vec::with_capacity(table.len());
        for row in table {
            if row.columns() > 0 {
                if let Some(value) = row.get::<T>(1)? {
                    values.push(value);
                }
            }
        }
        Ok(values)
    })
}

/// Forgets the plans [`run_kept`] keeps (after a failure, or when the
/// extension went away).
pub fn forget_kept() {
    KEPT.with(|kept| kept.borrow_mut().clear());
}

/// One column of a batch statement's rows as an array parameter (the
/// statements take `ROWS FROM (unnest($1), unnest($2), …)`).
pub fn array_column<R, T: pgrx::IntoDatum>(
    rows: impl Iterator<Item = R>,
    value: impl Fn(R) -> T,
) -> pgrx::datum::DatumWithOid<'static> {
    pgrx::datum::DatumWithOid::from(rows.map(value).collect::<Vec<T>>())
}

pub use super::errors::ok_or_raise;
