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
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let f = AssertUnwindSafe(f);
    PgTryBuilder::new(move || {
        let result = f();
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(result)
    })
    .catch_others(|error| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(CaughtSqlError::from_caught(error))
    })
    .execute()
}

/// Runs `f` in a subtransaction, the way PL/pgSQL runs an exception block: on
/// error everything `f` did is rolled back and the error returned, while the
/// enclosing transaction goes on.
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, CaughtSqlError> {
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
        unsafe {
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(old_context);
            pg_sys::CurrentResourceOwner = old_owner;
        }
        Ok(result)
    })
    .catch_others(|error| {
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

/// Runs `f` with the privileges of `role`, like a SECURITY DEFINER function
/// owned by it: `SET ROLE`/`SET SESSION AUTHORIZATION` are refused inside, and
/// settings changed by `f` are reverted. Errors propagate (the enclosing
/// subtransaction's abort restores the user and settings).
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    unsafe {
        let mut saved_user = pg_sys::Oid::INVALID;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let nest_level = pg_sys::NewGUCNestLevel();
        let result = f();
        pg_sys::AtEOXact_GUC(true, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        result
    }
}

// utils/timeout.h is not in pgrx's bindings.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}

/// Runs `f` with a deadline: past `timeout_ms` PostgreSQL cancels it with
/// "canceling statement due to statement timeout" (57014), exactly as
/// statement_timeout does for a client query.
pub fn with_deadline<R>(timeout_ms: i32, f: impl FnOnce() -> R) -> R {
    unsafe { enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms.max(1)) };
    let f = AssertUnwindSafe(f);
    PgTryBuilder::new(move || f())
        .finally(|| unsafe {
            disable_timeout(STATEMENT_TIMEOUT, false);
            // A timeout that fired just after `f` returned must not cancel
            // whatever runs next.
            pg_sys::QueryCancelPending = 0;
        })
        .execute()
}
