//! The PostgreSQL plumbing that ingest (src/ingest) and execution
//! (src/execution) both use, and that uses neither:
//!
//! * `spi` — transactions, subtransactions, roles, settings and kept plans;
//! * `catalog` — the workflows as one process caches them, read by one
//!   statement; `front_door` — what the network thread knows of each;
//! * `event_row` — the `webhook.events` row; `jsonb` — its values in
//!   PostgreSQL's binary format; `notify` — announcing events;
//! * `gucs` — the `webhook.*` settings; `invalidation` — cache invalidation
//!   callbacks; `signals` — SIGTERM and the handler watchdog;
//! * `errors` — SQL errors raised from Rust; `log_rarely` — rate-limited log
//!   lines; `change_pace` — pacing of configuration changes per role;
//! * `server_state` — the installed version and whether the server takes
//!   writes.

/// The version of this library, which the installed extension must have
/// before a listener or an executor touches its tables.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod catalog;
pub mod change_pace;
pub mod errors;
pub mod event_row;
pub mod front_door;
pub mod gucs;
pub mod invalidation;
pub mod jsonb;
pub mod log_rarely;
pub mod notify;
pub mod server_state;
pub mod signals;
pub mod spi;
pub mod sync_commit;
