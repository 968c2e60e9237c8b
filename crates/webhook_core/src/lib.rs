//! The pure core of webhook_ext.
//!
//! Everything here is plain Rust with no PostgreSQL dependency, so it can be unit
//! tested with `cargo test -p webhook_core` and reused by the background worker's
//! network threads, which must never call into PostgreSQL. It has no unsafe
//! code, and the compiler holds it to that.

#![forbid(unsafe_code)]

pub mod access;
pub mod body;
pub mod config;
pub mod connections;
pub mod counters;
pub mod delivery;
pub mod executor_policy;
pub mod handshake;
pub mod health;
pub mod infer;
pub mod jsonb;
pub mod kv;
pub mod lookup;
pub mod metrics;
pub mod quota;
pub mod record;
pub mod request;
pub mod retry;
pub mod route;
pub mod running;
pub mod template;
pub mod validate;
pub mod verify;

/// Helpers shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::{Map, Value};

    /// A header map (lower-case names, as the listener builds it) from pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    /// Checks a request against `scheme` with no memory budget.
    pub fn verify(
        scheme: &crate::verify::Scheme,
        method: &str,
        url: &str,
        pairs: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<(), crate::verify::Failure> {
        let headers = headers(pairs);
        let request = crate::verify::SignedRequest {
            headers: &headers,
            body,
            url,
            method,
            now_unix: now,
        };
        scheme
            .verify_within(&request, &mut crate::body::Unbudgeted)
            .unwrap()
    }
}
