//! The few writes a tenant may ask for but holds no privilege to do itself.
//!
//! Tenants (`webhook_admin` members) hold no DELETE privilege on the
//! extension's tables, because PostgreSQL lets any holder of table-level
//! UPDATE, DELETE or TRUNCATE take `LOCK TABLE … IN ACCESS EXCLUSIVE MODE`,
//! which would stall the listener. These functions delete on a tenant's
//! behalf: they first find the workflow *as the caller* (row-level security
//! decides, with a row lock), then delete as the extension's owner with a
//! pinned search_path. The caller is `GetUserId()`, which a tenant cannot
//! forge (unlike an argument), and which is the owner inside its handlers.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::pg::errors::SqlError;
use crate::pg::spi::as_role_with_safe_path;

/// The role that owns the extension's tables (and so may write them).
pub fn extension_owner() -> pg_sys::Oid {
    let owner = Spi::get_one::<i64>(
        "SELECT relowner::pg_catalog.int8 FROM pg_catalog.pg_class
          WHERE oid OPERATOR(pg_catalog.=) 'webhook.events'::pg_catalog.regclass",
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    pg_sys::Oid::from(owner as u32)
}

/// Raises "workflow … does not exist" unless the caller sees the workflow
/// (row-level security decides), and locks its row for the change.
fn lock_visible_workflow(workflow: pgrx::Uuid) {
    require_workflow(workflow, true);
}

/// `webhook._workflow(id, for_update)` (sql/api.sql), run as the caller:
/// the one place that says a workflow does not exist (also what another
/// owner's workflow looks like), for SQL and Rust alike.
pub fn require_workflow(workflow: pgrx::Uuid, for_update: bool) {
    let checked = Spi::run_with_args(
        "SELECT FROM webhook._workflow($1, $2)",
        &[DatumWithOid::from(workflow), DatumWithOid::from(for_update)],
    );
    crate::pg::errors::ok_or_raise(checked);
}

/// Runs one fixed statement as the extension's owner; returns the rows it touched.
fn delete_as_extension_owner(sql: &str, args: &[DatumWithOid<'_>]) -> i64 {
    let owner = extension_owner();
    as_role_with_safe_path(owner, || {
        Spi::connect_mut(|client| client.update(sql, None, args).map(|t| t.len() as i64))
    })
    .unwrap_or_else(|e| SqlError::internal("could not delete", e).report())
}

#[pg_schema]
mod webhook {
    use super::*;

    /// current_user's OID, for the row-level security policies (declared in
    /// sql/schema.sql, which needs it before pgrx's own definitions run).
    #[pg_extern(stable, parallel_safe, strict, sql = false)]
    fn _current_role_id() -> pg_sys::Oid {
        // SAFETY: reads the backend's current user id; always valid in a backend.
        unsafe { pg_sys::GetUserId() }
    }

    /// Deletes a workflow the caller owns, with its parameters and events.
    #[pg_extern(volatile)]
    fn _delete_workflow(workflow: pgrx::Uuid) -> bool {
        lock_visible_workflow(workflow);
        delete_as_extension_owner(
            "DELETE FROM webhook.workflows WHERE id OPERATOR(pg_catalog.=) $1",
            &[DatumWithOid::from(workflow)],
        ) > 0
    }

    /// Deletes parameters of one source of a workflow the caller owns: the
    /// named ones, or all of that source when `names` is NULL.
    #[pg_extern(volatile)]
    fn _delete_parameters(
        workflow: pgrx::Uuid,
        source: &str,
        names: default!(Option<Vec<String>>, "NULL"),
    ) -> i64 {
        lock_visible_workflow(workflow);
        delete_as_extension_owner(
            "DELETE FROM webhook.parameters
              WHERE workflow_id OPERATOR(pg_catalog.=) $1 AND source OPERATOR(pg_catalog.=) $2
                AND ($3 IS NULL OR name OPERATOR(pg_catalog.=) ANY ($3))",
            &[
                DatumWithOid::from(workflow),
                DatumWithOid::from(source),
                DatumWithOid::from(names),
            ],
        )
    }

    /// Deletes the events of a workflow the caller owns received before `before`.
    #[pg_extern(volatile)]
    fn _delete_events(workflow: pgrx::Uuid, before: pgrx::datum::TimestampWithTimeZone) -> i64 {
        lock_visible_workflow(workflow);
        delete_as_extension_owner(
            "DELETE FROM webhook.events
              WHERE workflow_id OPERATOR(pg_catalog.=) $1
                AND received_at OPERATOR(pg_catalog.<) $2",
            &[DatumWithOid::from(workflow), DatumWithOid::from(before)],
        )
    }

    /// Makes the session's role wait its turn when its transactions change
    /// workflow definitions faster than
    /// `webhook.max_config_changes_per_second` (src/pg/change_pace.rs),
    /// with a burst of as many. Counted per transaction, the first time it
    /// changes any: its commit is what makes every listener and executor
    /// look, however many statements and workflows it changed. Superusers
    /// and the extension's owner (restores, the listener storing a captured
    /// sample) are not paced. The wait can be cancelled like any statement.
    #[pg_extern(volatile)]
    fn _pace_config_change() {
        thread_local! {
            static PACED_TRANSACTION: std::cell::Cell<Option<u32>> =
                const { std::cell::Cell::new(None) };
        }
        // SAFETY: MyProc is this backend's own PGPROC, set before any
        // extension code runs; lxid numbers its transactions.
        let transaction = unsafe { (*pg_sys::MyProc).lxid };
        if PACED_TRANSACTION.with(|paced| paced.replace(Some(transaction))) == Some(transaction) {
            return;
        }
        // SAFETY: plain reads of the session's identity, set at connection.
        let role = unsafe { pg_sys::GetSessionUserId() };
        // SAFETY: a catalog lookup by OID inside a transaction.
        if unsafe { pg_sys::superuser_arg(role) } || role == extension_owner() {
            return;
        }
        let rate = f64::from(crate::pg::gucs::MAX_CONFIG_CHANGES_PER_SECOND.get().max(1));
        let limit = webhook_core::access::Limit { rate, burst: rate };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wait_ms = match crate::pg::change_pace::reserve(role, limit, now_ms) {
            Ok(wait_ms) => wait_ms,
            Err(wait_ms) => SqlError::ConfigChangesPaced {
                wait_secs: wait_ms.div_ceil(1000),
                rate,
            }
            .report(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            // SAFETY: waits on the backend's own latch, on its main thread;
            // interrupts (cancel, statement_timeout, termination) are
            // processed right after.
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    left.as_millis().clamp(1, 1000) as std::ffi::c_long,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
            pgrx::check_for_interrupts!();
        }
    }

    /// Tells every listener, at commit, that workflows or parameters changed:
    /// a relcache invalidation of the table, delivered like PostgreSQL's own
    /// cache invalidations (src/ingest/listener_main.rs watches for it). Takes no lock.
    #[pg_extern(volatile, strict)]
    fn _signal_config_change(table: pg_sys::Oid) {
        // SAFETY: queues an invalidation message for a relation id; a stale or
        // unknown id is harmless (nobody has it cached).
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table) };
    }
}
