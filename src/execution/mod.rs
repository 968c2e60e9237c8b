//! Execution: everything after an event is stored. Executor processes (one
//! owner's handlers each) claim due events, run their handlers as the owner
//! under a deadline, and record each attempt with the event's new status;
//! failed attempts are retried with backoff until the event is dead.
//!
//! * `registry` — shared memory where listeners and executors find each other;
//! * `pool` — listeners start and wake executors, and record what an
//!   executor that was ended mid-handler was running;
//! * `executor` — the executor background worker: claim → run → record;
//! * `handler_call` — calling a handler as its owner, under its deadline;
//! * `attempts` — recording attempts and the events' new status;
//! * `running_file` — the event each executor runs, in a file that survives a
//!   crash restart, so a handler that crashes the server is counted;
//! * `session_reset` — what a handler leaves in its executor's session.
//!
//! Ingest (network → admission → event) is src/ingest.

mod attempts;
mod executor;
mod handler_call;
mod pool;
mod registry;
mod running_file;
mod session_reset;

// What listeners do for executors (src/ingest/listener_main.rs): start them
// at server start and when events wait, wake them, record what one that
// ended mid-handler was running, and learn of results for callers waiting on
// a `workflow`-method answer.
pub use pool::Recheck;
pub use pool::{pool_limit, recheck, register_pool, start_waiting_owners, tend, wake_or_start};
pub use registry::{
    duties, listener_loaded_settings, load_crash_records, my_procno, processes, register_listener,
    request_shared_memory, results_announced,
};

// `webhook_trigger` and `webhook_replay` run a handler at once, as an
// event's first attempt (src/ingest/pipeline.rs).
pub use attempts::{jitter, record as record_attempts, Attempt, Outcome, MAX_RETRY_DELAY_SECS};
pub use handler_call::HandlerPlans;
