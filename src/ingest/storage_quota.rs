//! Storage-quota counts in shared memory, so that a workflow's quota, and
//! its owner's over all of the owner's workflows, hold across listener
//! processes: a set-associative table of byte counts in fixed windows, one
//! per workflow and one per owner with a quota; the arithmetic and the
//! choice of a slot are webhook_core::quota. Which set a count falls in is a
//! keyed hash (SipHash-2-4) under a key drawn when the server starts, as for
//! the rate-limit buckets (src/ingest/rate_limits.rs), so nobody can pick
//! workflow ids that share a set. A server restart empties the table: the
//! counts start again.

use std::hash::Hasher;

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

/// Whose stored bytes a count holds.
#[derive(Clone, Copy)]
pub enum Holder {
    Workflow(Uuid),
    /// All workflows of this owner role together.
    Owner(pg_sys::Oid),
}

/// The count's key: a workflow's is the same keyed hash as its rate-limit
/// bucket's (16 bytes of id and a tag); an owner's hashes a tag of its own
/// and the role's OID (5 bytes), so no owner's key is a workflow's bytes.
fn key(hash_key: [u64; 2], holder: Holder) -> u64 {
    match holder {
        Holder::Workflow(workflow) => super::rate_limits::key(hash_key, workflow, None),
        Holder::Owner(owner) => {
            let mut bytes = [b'o'; 5];
            bytes[1..].copy_from_slice(&owner.to_u32().to_le_bytes());
            let mut hasher = siphasher::sip::SipHasher24::new_with_keys(hash_key[0], hash_key[1]);
            hasher.write(&bytes);
            hasher.finish().max(1)
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `Err(seconds)` until the window ends when `holder` has stored its quota.
pub fn check(holder: Holder, quota: Quota) -> Result<(), u64> {
    let counts = COUNTS.share();
    let key = key(counts.hash_key, holder);
    check_in_set(
        &counts.sets[(key % SETS as u64) as usize],
        key,
        quota,
        now_secs(),
    )
}

/// Counts `bytes` stored for each holder (a workflow and its owner: under
/// one lock).
pub fn charge<'a>(holders: impl IntoIterator<Item = &'a (Holder, Quota)>, bytes: u64) {
    let mut counts = COUNTS.exclusive();
    let now = now_secs();
    for &(holder, quota) in holders {
        let key = key(counts.hash_key, holder);
        let set = &mut counts.sets[(key % SETS as u64) as usize];
        charge_in_set(set, key, bytes, quota, now);
    }
}
