//! Rate-limit buckets in shared memory, so that a workflow's limits hold
//! across listener processes: a set-associative table of token buckets keyed
//! by workflow and, for per-client limits, client address. The bucket
//! arithmetic is webhook_core::access::Bucket.
//!
//! The table is bounded: when a set is full, the bucket used longest ago is
//! dropped (it comes back full), which only traffic from thousands of
//! addresses at once can cause. A server restart empties it.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_guard, pg_sys};
use uuid::Uuid;

use webhook_core::access::{Bucket, Limit};

const SETS: usize = 1024;
const WAYS: usize = 8;

#[derive(Copy, Clone, Default)]
struct Slot {
    /// Hash of (workflow, client); 0: free.
    key: u64,
    tokens: f64,
    at_ms: u64,
}

#[derive(Copy, Clone)]
pub struct Buckets {
    sets: [[Slot; WAYS]; SETS],
}

impl Default for Buckets {
    fn default() -> Buckets {
        Buckets {
            sets: [[Slot::default(); WAYS]; SETS],
        }
    }
}

// SAFETY: plain old data, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Buckets {}

// SAFETY: initialised by pg_shmem_init! in _PG_init (request_shared_memory), before any use.
static BUCKETS: PgLwLock<Buckets> = unsafe { PgLwLock::new(c"webhook_ext rate limits") };

/// Called from `_PG_init` while shared_preload_libraries are loaded.
// The macro tests features for other PostgreSQL versions than ours.
#[allow(unexpected_cfgs)]
pub fn request_shared_memory() {
    pgrx::pg_shmem_init!(BUCKETS);
}

fn key(workflow: Uuid, client: Option<IpAddr>) -> u64 {
    // The same binary in every process, so the same hash everywhere.
    let mut hasher = std::hash::DefaultHasher::new();
    workflow.hash(&mut hasher);
    client.hash(&mut hasher);
    hasher.finish().max(1)
}

/// Takes a token from the bucket of `workflow` (and `client`, for a
/// per-client limit): `Err(seconds)` to wait when there is none.
pub fn take(workflow: Uuid, client: Option<IpAddr>, limit: Limit, now_ms: u64) -> Result<(), u64> {
    let key = key(workflow, client);
    let mut buckets = BUCKETS.exclusive();
    let set = &mut buckets.sets[(key % SETS as u64) as usize];
    let slot = match set.iter().position(|s| s.key == key) {
        Some(found) => found,
        None => {
            let stalest = (0..WAYS)
                .min_by_key(|&i| {
                    if set[i].key == 0 {
                        0
                    } else {
                        set[i].at_ms.max(1)
                    }
                })
                .unwrap_or(0);
            let full = Bucket::full(limit, now_ms);
            set[stalest] = Slot {
                key,
                tokens: full.tokens,
                at_ms: full.at_ms,
            };
            stalest
        }
    };
    let bucket = Bucket {
        tokens: set[slot].tokens,
        at_ms: set[slot].at_ms,
    };
    let taken = bucket.take(limit, now_ms)?;
    set[slot].tokens = taken.tokens;
    set[slot].at_ms = taken.at_ms;
    Ok(())
}
