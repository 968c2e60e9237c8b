//! Storage-quota counts in shared memory, so that a workflow's quota holds
//! across listener processes: a set-associative table of per-workflow byte
//! counts in fixed windows; the arithmetic and the choice of a slot are
//! webhook_core::quota. Which set a workflow falls in is a keyed hash
//! (SipHash-2-4) under a key drawn when the server starts, as for the
//! rate-limit buckets (src/ingest/rate_limits.rs), so nobody can pick
//! workflow ids that share a set. A server restart empties the table: the
//! counts start again.

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_guard, pg_sys};
use uuid::Uuid;

use webhook_core::quota::{charge_in_set, check_in_set, Quota, Usage};

const SETS: usize = 4096;
const WAYS: usize = 8;

#[derive(Copy, Clone)]
pub struct Counts {
    hash_key: [u64; 2],
    sets: [[Usage; WAYS]; SETS],
}

// SAFETY: plain old data, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Counts {}

// SAFETY: initialised by pg_shmem_init! in _PG_init (request_shared_memory), before any use.
static COUNTS: PgLwLock<Counts> = unsafe { PgLwLock::new(c"webhook_ext storage quotas") };

/// Called from `_PG_init` while shared_preload_libraries are loaded.
// The macro tests features for other PostgreSQL versions than ours.
#[allow(unexpected_cfgs)]
pub fn request_shared_memory() {
    pgrx::pg_shmem_init!(
        COUNTS = Counts {
            hash_key: super::rate_limits::random_key(),
            sets: [[Usage::default(); WAYS]; SETS],
        }
    );
}

/// The workflow's key: the same keyed hash as its rate-limit bucket's.
fn key(hash_key: [u64; 2], workflow: Uuid) -> u64 {
    super::rate_limits::key(hash_key, workflow, None)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `Err(seconds)` until the window ends when `workflow` has stored its quota.
pub fn check(workflow: Uuid, quota: Quota) -> Result<(), u64> {
    let counts = COUNTS.share();
    let key = key(counts.hash_key, workflow);
    check_in_set(
        &counts.sets[(key % SETS as u64) as usize],
        key,
        quota,
        now_secs(),
    )
}

/// Counts `bytes` stored for `workflow`.
pub fn charge(workflow: Uuid, bytes: u64, quota: Quota) {
    let mut counts = COUNTS.exclusive();
    let key = key(counts.hash_key, workflow);
    let set = &mut counts.sets[(key % SETS as u64) as usize];
    charge_in_set(set, key, bytes, quota, now_secs());
}
