//! How much request-body memory one listener process holds, in total and per
//! client address.
//!
//! A request reserves memory as its body arrives, not upfront, so idle
//! connections that announce large bodies hold nothing. One client address may
//! hold at most a fixed share of the budget, so a few clients cannot keep
//! everyone else's requests out. Over either limit the request gets 503 with
//! Retry-After. Reservations last until the request is answered, because its
//! parsed body lives that long.
//!
//! Decoding and parsing reserve what they will hold (the decoded body, its
//! text, the parsed values: see webhook_core::body) before they allocate it,
//! through [`MemoryBudget`]. That counts against the process's total only,
//! not the client's share: a legitimate body's parsed values can take several
//! times its size, for milliseconds, and the share is there to keep slow or
//! unfinished uploads from holding memory, not to refuse large deliveries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use webhook_core::body::MemoryBudget;

pub struct BodyBudget {
    /// The whole budget (webhook.max_body_memory), in KiB.
    kib: u32,
    total: Arc<Semaphore>,
    by_client: Mutex<HashMap<IpAddr, u32>>,
}

impl BodyBudget {
    pub fn new(kib: u32) -> BodyBudget {
        BodyBudget {
            kib,
            total: Arc::new(Semaphore::new(kib as usize)),
            by_client: Mutex::new(HashMap::new()),
        }
    }

    /// The share of the budget one client address may hold: an eighth, but
    /// always enough for two bodies of the largest allowed size.
    pub fn client_share_kib(&self, max_body_bytes: usize) -> u32 {
        let two_bodies = (2 * max_body_bytes as u64).div_ceil(1024);
        (self.kib / 8).max(two_bodies.min(u64::from(self.kib)) as u32)
    }
}

/// Memory one request holds; given back when dropped.
pub struct Reservation {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    client_share_kib: u32,
    permit: Option<OwnedSemaphorePermit>,
    /// Held for the body as it arrived (counted in the client's share too).
    kib: u32,
    /// Reserved for decoding and parsing (the process's total only).
    parse_bytes: u64,
    parse_kib: u32,
}

impl BodyBudget {
    /// An empty reservation for a request from `client` (its share is that
    /// of its sender: the IPv4 address or IPv6 /64 network,
    /// webhook_core::access::sender_key).
    pub fn start(self: &Arc<Self>, client: IpAddr, client_share_kib: u32) -> Reservation {
        Reservation {
            budget: self.clone(),
            client: webhook_core::access::sender_key(client),
            client_share_kib,
            permit: None,
            kib: 0,
            parse_bytes: 0,
            parse_kib: 0,
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
        hold(&mut self.permit, permit);
        by_client.insert(self.client, held + extra);
        self.kib = needed;
        true
    }
}

impl Reservation {
    /// Gives back what decoding and parsing reserved (the body as it arrived
    /// stays held): for a request parsed again, whose first parse is gone.
    pub fn release_parse(&mut self) {
        if let Some(permit) = self.permit.as_mut() {
            // Dropping the split part returns it to the budget.
            drop(permit.split(self.parse_kib as usize));
        }
        self.parse_bytes = 0;
        self.parse_kib = 0;
    }
}

fn hold(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(existing) => existing.merge(permit),
        None => *held = Some(permit),
    }
}

impl MemoryBudget for Reservation {
    fn reserve(&mut self, bytes: usize) -> bool {
        let total = self.parse_bytes.saturating_add(bytes as u64);
        let Ok(needed) = u32::try_from(total.div_ceil(1024)) else {
            return false;
        };
        if needed > self.parse_kib {
            let Ok(permit) = self
                .budget
                .total
                .clone()
                .try_acquire_many_owned(needed - self.parse_kib)
            else {
                return false;
            };
            hold(&mut self.permit, permit);
            self.parse_kib = needed;
        }
        self.parse_bytes = total;
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

    const BODY_MEMORY_KIB: u32 = 256 * 1024;

    #[test]
    fn reservations_grow_and_are_capped_per_client_and_in_total() {
        let budget = Arc::new(BodyBudget::new(BODY_MEMORY_KIB));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let share = budget.client_share_kib(25 * 1024 * 1024);
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

    #[test]
    fn parsing_reserves_from_the_total_only() {
        let budget = Arc::new(BodyBudget::new(BODY_MEMORY_KIB));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let share = budget.client_share_kib(25 * 1024 * 1024);
        let mut first = budget.start(a, share);
        assert!(first.cover(50 * 1024 * 1024), "the client's whole share");
        assert!(
            first.reserve(100 * 1024 * 1024),
            "parsing is not held to the share"
        );
        assert!(
            first.reserve(1) && first.reserve(1023),
            "bytes add up to whole KiB"
        );
        assert_eq!(
            budget.total.available_permits(),
            (BODY_MEMORY_KIB - 150 * 1024 - 1) as usize
        );
        assert!(
            !first.reserve(BODY_MEMORY_KIB as usize * 1024),
            "but it is to the total"
        );
        drop(first);
        assert!(budget.by_client.lock().unwrap().is_empty());
        assert_eq!(budget.total.available_permits(), BODY_MEMORY_KIB as usize);
    }

    #[test]
    fn a_second_parse_does_not_reserve_twice() {
        let budget = Arc::new(BodyBudget::new(BODY_MEMORY_KIB));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mut request = budget.start(a, budget.client_share_kib(25 * 1024 * 1024));
        assert!(request.cover(1024 * 1024));
        assert!(request.reserve(100 * 1024 * 1024));
        request.release_parse();
        assert!(request.reserve(100 * 1024 * 1024));
        assert_eq!(
            budget.total.available_permits(),
            (BODY_MEMORY_KIB - 1024 - 100 * 1024) as usize,
            "the body once and one parse"
        );
        request.release_parse();
        assert_eq!(
            budget.total.available_permits(),
            (BODY_MEMORY_KIB - 1024) as usize
        );
        drop(request);
        assert_eq!(budget.total.available_permits(), BODY_MEMORY_KIB as usize);
    }
}
