//! Rate-limit buckets in shared memory, so that a workflow's limits hold
//! across listener processes: a set-associative table of token buckets keyed
//! by workflow and, for per-client limits, client address. The bucket
//! arithmetic and the choice of a slot in a set are
//! webhook_core::access::{Bucket, take_in_set}.
//!
//! The table is bounded, and anyone may make keys: a tenant can create
//! workflows and clients can come from many addresses. So which set a key
//! falls in is a keyed hash (SipHash-2-4) under a random key drawn when the
//! server starts, which nobody outside can compute; and a bucket that is
//! limiting its key is never dropped to make room, since it would come back
//! full. Only buckets that are full again give way. A new key whose set
//! holds only limiting buckets waits (429) until one of them is full again:
//! letting it through unlimited instead would let anyone who fills its set
//! switch its limit off. A server restart (or the reset of shared memory
//! after a crash) empties the table and draws a new key.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_guard, pg_sys};
use uuid::Uuid;

use webhook_core::access::{take_in_set, Limit, Slot};

const SETS: usize = 1024;
const WAYS: usize = 8;

#[derive(Copy, Clone)]
pub struct Buckets {
    /// The hash key: drawn by the postmaster when it sets up shared memory,
    /// so every process of this server run hashes alike.
    hash_key: [u64; 2],
    sets: [[Slot; WAYS]; SETS],
}

impl Buckets {
    fn new() -> Buckets {
        Buckets {
            hash_key: random_key(),
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
    pgrx::pg_shmem_init!(BUCKETS = Buckets::new());
}

/// 128 random bits from PostgreSQL's strong random source; should that fail,
/// from the ones std seeds its hash maps with (also the operating system's),
/// rather than a key anyone could know.
pub(crate) fn random_key() -> [u64; 2] {
    let mut key = [0u64; 2];
    // SAFETY: writes exactly the 16 bytes of `key`, any bit pattern is a u64.
    if unsafe { pg_sys::pg_strong_random(key.as_mut_ptr().cast(), size_of_val(&key)) } {
        return key;
    }
    [
        RandomState::new().hash_one(0u8),
        RandomState::new().hash_one(1u8),
    ]
}

/// The key of (workflow, client): the 16 bytes of the id, then a tag and the
/// address's bytes, so that no two pairs are the same bytes. A client is an
/// IPv4 address or an IPv6 /64 network (webhook_core::access::sender_key).
/// 0 is kept for free slots.
pub(crate) fn key(hash_key: [u64; 2], workflow: Uuid, client: Option<IpAddr>) -> u64 {
    let mut bytes = [0u8; 33];
    bytes[..16].copy_from_slice(workflow.as_bytes());
    let len = match client.map(webhook_core::access::sender_key) {
        None => 17,
        Some(IpAddr::V4(ip)) => {
            bytes[16] = 4;
            bytes[17..21].copy_from_slice(&ip.octets());
            21
        }
        Some(IpAddr::V6(ip)) => {
            bytes[16] = 6;
            bytes[17..33].copy_from_slice(&ip.octets());
            33
        }
    };
    let mut hasher = siphasher::sip::SipHasher24::new_with_keys(hash_key[0], hash_key[1]);
    hasher.write(&bytes[..len]);
    hasher.finish().max(1)
}

/// Takes a token from the bucket of `workflow` (and `client`, for a
/// per-client limit): `Err(seconds)` to wait when there is none, or when the
/// key has no bucket yet and its set has no room (see [`take_in_set`]).
pub fn take(
    workflow: Uuid,
    owner: pg_sys::Oid,
    client: Option<IpAddr>,
    limit: Limit,
    now_ms: u64,
) -> Result<(), u64> {
    let mut buckets = BUCKETS.exclusive();
    let key = key(buckets.hash_key, workflow, client);
    // The full 64-bit key is compared within the set: the low bits pick it.
    let set = &mut buckets.sets[(key % SETS as u64) as usize];
    take_in_set(set, key, owner.to_u32(), limit, now_ms)
}
