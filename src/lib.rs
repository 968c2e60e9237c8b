//! webhook_ext: PostgreSQL as a webhook receiver.
//!
//! * `ingest` — listener processes: request on the wire → admission →
//!   committed event → answer;
//! * `execution` — executor processes: claim → run as owner → record → retry;
//! * `pg` — the PostgreSQL plumbing both use (transactions, roles, settings,
//!   the workflow catalog, the events row, errors);
//! * `sql_api` — `webhook_trigger` and `webhook_replay`; `sql_helpers` —
//!   internal SQL functions over the pure core (`webhook_core`);
//!   `privileged` — deletes on a tenant's behalf, after checking ownership as
//!   the caller;
//! * `queue` — events consumed by applications (`webhook_read`,
//!   `webhook_ack`, `webhook_nack`);
//! * `retention` — the retention process: deletes the finished events their
//!   retention lets go;
//! * `sql/schema.sql`, `sql/api.sql` — tables, security and the `webhook_*` SQL API.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

mod execution;
mod ingest;
mod pg;
mod privileged;
mod queue;
mod record_type;
mod retention;
mod sql_api;
mod sql_helpers;

use pg::gucs;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/api.sql", name = "api", finalize);

/// Set when the library was loaded by `shared_preload_libraries`; backends
/// forked from the postmaster inherit it.
pub(crate) static PRELOADED: AtomicBool = AtomicBool::new(false);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain global that PostgreSQL sets before loading libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    gucs::define(preloading);
    if preloading {
        PRELOADED.store(true, Ordering::Relaxed);
        execution::request_shared_memory();
        ingest::rate_limits::request_shared_memory();
        ingest::storage_quota::request_shared_memory();
        pg::change_pace::request_shared_memory();
        ingest::listener_main::register();
        execution::register_pool();
        retention::register();
    }
}

/// Rust's allocations (request bodies, parsed JSON, batches) come from
/// mimalloc: the network thread allocates what the main thread frees, and
/// glibc's malloc makes such frees contend on the network thread's arena.
/// PostgreSQL's own memory (palloc) is unaffected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
