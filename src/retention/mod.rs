//! The retention process: one per server (`webhook_ext retention`), in the
//! listeners' database (`webhook.database`), that deletes the finished events
//! their retention lets go (steps.rs says how, a bounded step at a time).
//!
//! A process of its own, so that deleting never holds up a listener's main
//! thread however far behind it is: while a step finds a full step's worth
//! it goes straight on to the next, and so keeps up with events arriving as
//! fast as the listeners store them; once nothing is left to delete it looks
//! again a second later. It starts when recovery has finished (never on a hot
//! standby; a promoted standby starts it), and deletes nothing while the
//! extension is missing, installed at another version than the library's,
//! or the server is read-only.

mod steps;

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::pg::gucs;
use crate::pg::server_state::installed_version_and_read_only;
use crate::pg::spi::{report_table_statistics, set_session_setting, SAFE_SEARCH_PATH};
use crate::pg::LIBRARY_VERSION;

use steps::{Retention, RoundEnd};

/// How long the process waits when nothing was left to delete, or the
/// extension is not there to delete from.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Called from `_PG_init` while shared_preload_libraries are loaded.
pub fn register() {
    BackgroundWorkerBuilder::new("webhook_ext retention")
        .set_type("webhook_ext retention")
        .set_library("webhook_ext")
        .set_function("webhook_retention_main")
        // Also: starts only once recovery has finished.
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn webhook_retention_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // A superuser's session: no name it resolves may come from a schema a
    // tenant can write.
    set_session_setting(c"search_path", SAFE_SEARCH_PATH);
    set_session_setting(c"jit", c"off");
    // A step waits for no lock long: what another session holds is skipped
    // (steps.rs), and a step stuck behind an ALTER or DROP of the extension
    // is tried again a second later.
    set_session_setting(c"lock_timeout", c"1s");
    log!("webhook_ext retention started for database \"{database}\"");

    let mut retention = Retention::default();
    let mut wait = IDLE_WAIT;
    // BackgroundWorker::sigterm_received forgets the SIGTERM it reports.
    let mut stopping = false;
    while !stopping && BackgroundWorker::wait_latch(Some(wait)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way to reload the configuration, on the main thread.
            unsafe {
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        let (installed, read_only) = installed_version_and_read_only();
        wait = IDLE_WAIT;
        if installed.as_deref() == Some(LIBRARY_VERSION) && !read_only {
            let end = retention.run_round(|| {
                stopping |= BackgroundWorker::sigterm_received();
                stopping
            });
            if end == RoundEnd::MoreLeft {
                wait = Duration::ZERO;
            }
        }
        report_table_statistics(false);
    }
    log!("webhook_ext retention shutting down");
    // Non-zero so the postmaster restarts it after pg_terminate_backend(); at
    // server shutdown it restarts nothing anyway.
    // SAFETY: exits the process at the end of its main loop.
    unsafe { pg_sys::proc_exit(1) };
}
