//! webhook_ext: PostgreSQL as a webhook receiver.
//!
//! * `gucs` — the `webhook.*` settings;
//! * `sql_helpers` — internal SQL functions over the pure core (`webhook_core`);
//! * `privileged` — deletes on a tenant's behalf, after checking ownership as the caller;
//! * `worker`, `listener`, `pipeline` — ingest: the listener background
//!   worker, its network threads, and request → admission → stored event;
//! * `execution` — executors: claim → run as owner → record → retry;
//! * `sql/schema.sql`, `sql/api.sql` — tables, security and the `webhook_*` SQL API.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;

mod errors;
mod execution;
mod front_door;
mod gucs;
mod invalidation;
mod listener;
mod log_rarely;
mod pipeline;
mod privileged;
mod signals;
mod sql_api;
mod sql_helpers;
mod worker;

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
        execution::registry::request_shared_memory();
        pipeline::rate_limits::request_shared_memory();
        pipeline::storage_quota::request_shared_memory();
        pipeline::change_pace::request_shared_memory();
        worker::register();
        execution::pool::register_pool();
    }
}

/// Rust's allocations (request bodies, parsed JSON, batches) come from
/// mimalloc: the network thread allocates what the main thread frees, and
/// glibc's malloc makes such frees contend on the network thread's arena.
/// PostgreSQL's own memory (palloc) is unaffected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
