//! How much request-body memory one listener process holds, in total and per
//! client address.
//!
//! A request reserves memory as its body arrives, not upfront, so idle
//! connections that announce large bodies hold nothing. One client address may
//! hold at most a fixed share of the budget, so a few clients cannot keep
//! everyone else's requests out. Over either limit the request gets 503 with
//! Retry-After. Reservations last until the request is answered, because its
//! parsed body lives that long.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Request bodies one listener process buffers at once, in KiB.
pub const BODY_MEMORY_KIB: u32 = 256 * 1024;

/// The share of [`BODY_MEMORY_KIB`] one client address may hold: an eighth,
/// but always enough for two bodies of the largest allowed size.
pub fn client_share_kib(max_body_bytes: usize) -> u32 {
    let two_bodies = (2 * max_body_bytes as u64).div_ceil(1024);
    (BODY_MEMORY_KIB / 8).max(two_bodies.min(u64::from(BODY_MEMORY_KIB)) as u32)
}

pub struct BodyBudget {
    total: Arc<Semaphore>,
    by_client: Mutex<HashMap<IpAddr, u32>>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget {
            total: Arc::new(Semaphore::new(BODY_MEMORY_KIB as usize)),
            by_client: Mutex::new(HashMap::new()),
        }
    }
}

/// Memory one request holds; given back when dropped.
pub struct Reservation {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    client_share_kib: u32,
    permit: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl BodyBudget {
    /// An empty reservation for a request from `client`.
    pub fn start(self: &Arc<Self>, client: IpAddr, client_share_kib: u32) -> Reservation {
        Reservation {
            budget: self.clone(),
            client,
            client_share_kib,
            permit: None,
            kib: 0,
        }
    }
}

impl Reservation {
    /// Grows the reservation to cover `bytes` in all; `false` when the process
    /// or the client address is over its limit (the reservation is unchanged).
    pub fn cover(&mut self, bytes: usize) -> bool {
        let needed = (bytes as u64).div_ceil(1024).max(1);
        let Ok(needed) = u32::try_from(needed) else {
            return false;
        };
        if needed <= self.kib {
            return true;
        }
        let extra = needed - self.kib;
        let mut by_client = self
            .budget
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let held = by_client.get(&self.client).copied().unwrap_or(0);
        if held + extra > self.client_share_kib {
            return false;
        }
        let Ok(permit) = self.budget.total.clone().try_acquire_many_owned(extra) else {
            return false;
        };
        match &mut self.permit {
            Some(existing) => existing.merge(permit),
            None => self.permit = Some(permit),
        }
        by_client.insert(self.client, held + extra);
        self.kib = needed;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.kib == 0 {
            return;
        }
        let mut by_client = self
            .budget
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(held) = by_client.get_mut(&self.client) {
            *held = held.saturating_sub(self.kib);
            if *held == 0 {
                by_client.remove(&self.client);
            }
        }
        // The semaphore permit is released when `permit` drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_grow_and_are_capped_per_client_and_in_total() {
        let budget = Arc::new(BodyBudget::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let share = client_share_kib(25 * 1024 * 1024);
        assert_eq!(share, 50 * 1024);
        let mut first = budget.start(a, share);
        assert!(first.cover(10));
        assert!(first.cover(30 * 1024 * 1024));
        let mut second = budget.start(a, share);
        assert!(!second.cover(25 * 1024 * 1024), "over the client's share");
        assert!(second.cover(20 * 1024 * 1024));
        let mut other = budget.start(b, share);
        assert!(
            other.cover(25 * 1024 * 1024),
            "another client is not affected"
        );
        drop(first);
        assert!(
            second.cover(45 * 1024 * 1024),
            "dropping gives the share back"
        );
        drop((second, other));
        assert!(budget.by_client.lock().unwrap().is_empty());
        assert_eq!(budget.total.available_permits(), BODY_MEMORY_KIB as usize);
    }
}
