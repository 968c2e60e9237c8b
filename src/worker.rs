//! The listener background worker: registration and main loop.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;

/// Registers `webhook.workers` static workers; called from `_PG_init` during
/// `shared_preload_libraries` processing only.
pub fn register() {
    let count = gucs::WORKERS.get();
    for n in 1..=count {
        BackgroundWorkerBuilder::new(&format!("webhook_ext listener {n}"))
            .set_type("webhook_ext listener")
            .set_library("webhook_ext")
            .set_function("webhook_listener_main")
            .set_argument(n.into_datum())
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(1)))
            .load();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn webhook_listener_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("webhook_ext listener started for database \"{database}\"");

    let mut announced_wait = false;
    let mut ready = false;
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let installed = extension_installed();
        if !installed && !announced_wait {
            log!("webhook_ext listener waiting for CREATE EXTENSION webhook_ext in database \"{database}\"");
            announced_wait = true;
            ready = false;
        } else if installed && !ready {
            log!("webhook_ext listener found the extension in database \"{database}\"");
            ready = true;
            announced_wait = false;
        }
    }
    log!("webhook_ext listener shutting down");
}

fn extension_installed() -> bool {
    BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'webhook_ext')",
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
}
