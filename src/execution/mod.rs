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
//! * `attempts` — recording attempts and the events' new status.
//!
//! Ingest (network → admission → event) is src/listener and src/pipeline.

pub mod attempts;
pub mod executor;
pub mod handler_call;
pub mod pool;
pub mod registry;
