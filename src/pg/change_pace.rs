//! Paces each role's changes to workflow definitions
//! (`webhook.max_config_changes_per_second`): every change makes every
//! listener and executor look for what changed, so one tenant's change loop
//! must not take their time from everyone else. A statement beyond the rate
//! waits its turn (webhook_core::access::Bucket::reserve) before it is noted;
//! nothing fails. One token bucket per role, in a bounded table in shared
//! memory; when it is full, the bucket that has been full again the longest
//! (or the one that will be soonest) makes room.

use pgrx::lwlock::PgLwLock;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{pg_guard, pg_sys};

use webhook_core::access::{Bucket, Limit};

const ROLES: usize = 512;

#[derive(Copy, Clone)]
struct RoleBucket {
    /// 0: free.
    role: u32,
    bucket: Bucket,
}

#[derive(Copy, Clone)]
pub struct Paces {
    roles: [RoleBucket; ROLES],
}

// SAFETY: plain old data, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Paces {}

// SAFETY: initialised by pg_shmem_init! in _PG_init (request_shared_memory), before any use.
static PACES: PgLwLock<Paces> = unsafe { PgLwLock::new(c"webhook_ext config change pace") };

/// Called from `_PG_init` while shared_preload_libraries are loaded.
// The macro tests features for other PostgreSQL versions than ours.
#[allow(unexpected_cfgs)]
pub fn request_shared_memory() {
    pgrx::pg_shmem_init!(
        PACES = Paces {
            roles: [RoleBucket {
                role: 0,
                bucket: Bucket {
                    tokens: 0.0,
                    at_ms: 0
                },
            }; ROLES],
        }
    );
}

/// Longest wait a change may be given: a role whose changes queue up
/// further (many sessions at once, or waiters cancelled while their turns
/// stay booked) is refused instead, so its debt stays bounded.
pub const MAX_WAIT_MS: u64 = 10_000;

/// Reserves `role`'s next change: how long (ms) it must wait for its turn,
/// or `Err` with that wait, reserving nothing, past [`MAX_WAIT_MS`].
pub fn reserve(role: pg_sys::Oid, limit: Limit, now_ms: u64) -> Result<u64, u64> {
    let role = role.to_u32();
    let mut paces = PACES.exclusive();
    let index = match paces.roles.iter().position(|r| r.role == role) {
        Some(found) => found,
        None => {
            let index = paces
                .roles
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| {
                    if r.role == 0 {
                        0
                    } else {
                        r.bucket.full_at(limit).saturating_add(1)
                    }
                })
                .map(|(index, _)| index)
                .expect("ROLES > 0");
            paces.roles[index] = RoleBucket {
                role,
                bucket: Bucket::full(limit, now_ms),
            };
            index
        }
    };
    let (bucket, wait_ms) = paces.roles[index].bucket.reserve(limit, now_ms);
    if wait_ms > MAX_WAIT_MS {
        return Err(wait_ms);
    }
    paces.roles[index].bucket = bucket;
    Ok(wait_ms)
}
