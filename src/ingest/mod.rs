//! Ingest: from a request on the wire to a committed event and its answer.
//!
//! * `network` — the listener process's network thread (tokio, hyper): it
//!   accepts, reads, verifies and parses, and never calls PostgreSQL;
//! * `listener_main` — the listener process's main loop: take the waiting
//!   requests, run them as one batch in one transaction, answer after the
//!   commit, and tend executors through src/execution's interface;
//! * `pipeline` — one request inside that transaction: find the workflow,
//!   admit it, claim its delivery key, store the event, pick the response;
//!   `delivery_keys`, `rate_limits`, `storage_quota`, `rejections` are its
//!   parts;
//! * `request_counts` — the listener's share of webhook.workflow_counters;
//! * `metrics` — the `/metrics` snapshot (metrics.sql).
//!
//! Ingest uses src/pg and webhook_core, and reaches execution only through
//! src/execution/mod.rs; execution never uses ingest.

pub mod delivery_keys;
pub mod listener_main;
pub mod metrics;
pub mod network;
pub mod pipeline;
pub mod rate_limits;
pub mod rejections;
pub mod request_counts;
pub mod storage_quota;
