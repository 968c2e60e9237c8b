//! Connection accounting for one listener process: how many connections are
//! open in total and per client (an IPv4 address or an IPv6 /64 network, see
//! access::sender_key), and whether one more may open.
//!
//! Pure bookkeeping so the rules are unit tested; the listener wraps it in a
//! mutex and frees slots through RAII guards when connections close.

use std::collections::HashMap;
use std::net::IpAddr;

/// The caps in force when a connection arrives (they reload on SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most open connections in the listener process.
    pub max_total: usize,
    /// Most open connections from one client address.
    pub max_per_client: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ListenerFull,
    ClientFull,
}

/// The raw HTTP/1.1 answer to a connection over a cap, written before its
/// request is read: 503 `{"msg":"Too many connections"}`, `Retry-After: 1`,
/// and `connection: close`.
pub fn refusal_response() -> &'static [u8] {
    b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 30\r\n\
\r\n\
{\"msg\":\"Too many connections\"}"
}

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    total: usize,
    /// Only addresses with at least one open connection, so the map stays as
    /// small as the number of connected clients.
    per_client: HashMap<IpAddr, usize>,
}

impl ConnectionCounts {
    /// Counts a new connection from `client`, unless a cap is reached.
    pub fn try_open(&mut self, client: IpAddr, limits: ConnectionLimits) -> Result<(), Refusal> {
        let client = crate::access::sender_key(client);
        if self.total >= limits.max_total {
            return Err(Refusal::ListenerFull);
        }
        let mine = self.per_client.entry(client).or_insert(0);
        if *mine >= limits.max_per_client {
            if *mine == 0 {
                self.per_client.remove(&client);
            }
            return Err(Refusal::ClientFull);
        }
        *mine += 1;
        self.total += 1;
        Ok(())
    }

    /// Releases a connection counted by [`try_open`](Self::try_open).
    pub fn close(&mut self, client: IpAddr) {
        let client = crate::access::sender_key(client);
        if let Some(mine) = self.per_client.get_mut(&client) {
            *mine -= 1;
            if *mine == 0 {
                self.per_client.remove(&client);
            }
            self.total -= 1;
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn of(&self, client: IpAddr) -> usize {
        self.per_client
            .get(&crate::access::sender_key(client))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_total: 3,
        max_per_client: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refusal_is_a_complete_503() {
        let text = std::str::from_utf8(refusal_response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("retry-after: 1") && head.contains("connection: close"));
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        assert_eq!(body, r#"{"msg":"Too many connections"}"#);
    }

    #[test]
    fn per_client_cap() {
        let mut counts = ConnectionCounts::default();
        let a = ip("127.0.0.1");
        assert_eq!(counts.try_open(a, LIMITS), Ok(()));
        assert_eq!(counts.try_open(a, LIMITS), Ok(()));
        assert_eq!(counts.try_open(a, LIMITS), Err(Refusal::ClientFull));
        assert_eq!(counts.of(a), 2);
        counts.close(a);
        assert_eq!(counts.try_open(a, LIMITS), Ok(()));
    }

    #[test]
    fn total_cap_across_clients() {
        let mut counts = ConnectionCounts::default();
        for client in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            assert_eq!(counts.try_open(ip(client), LIMITS), Ok(()));
        }
        assert_eq!(
            counts.try_open(ip("10.0.0.4"), LIMITS),
            Err(Refusal::ListenerFull)
        );
        counts.close(ip("10.0.0.2"));
        assert_eq!(counts.try_open(ip("10.0.0.4"), LIMITS), Ok(()));
        assert_eq!(counts.total(), 3);
    }

    #[test]
    fn closed_clients_leave_no_entry_and_mapped_v6_is_the_same_client() {
        let mut counts = ConnectionCounts::default();
        let v4 = ip("192.0.2.7");
        let mapped = ip("::ffff:192.0.2.7");
        assert_eq!(counts.try_open(v4, LIMITS), Ok(()));
        assert_eq!(counts.try_open(mapped, LIMITS), Ok(()));
        assert_eq!(counts.try_open(v4, LIMITS), Err(Refusal::ClientFull));
        counts.close(mapped);
        counts.close(v4);
        assert_eq!((counts.total(), counts.per_client.len()), (0, 0));
        // Closing what was never opened changes nothing.
        counts.close(v4);
        assert_eq!(counts.total(), 0);
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let mut counts = ConnectionCounts::default();
        assert_eq!(counts.try_open(ip("2001:db8:1:2::1"), LIMITS), Ok(()));
        assert_eq!(
            counts.try_open(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), LIMITS),
            Ok(())
        );
        assert_eq!(
            counts.try_open(ip("2001:db8:1:2:dead:beef::7"), LIMITS),
            Err(Refusal::ClientFull),
            "a third address of the same /64 is over the per-client cap"
        );
        assert_eq!(counts.try_open(ip("2001:db8:1:3::1"), LIMITS), Ok(()));
        counts.close(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(counts.of(ip("2001:db8:1:2::99")), 1);
    }

    #[test]
    fn a_refused_client_is_not_remembered() {
        let mut counts = ConnectionCounts::default();
        let tight = ConnectionLimits {
            max_total: 10,
            max_per_client: 0,
        };
        assert_eq!(
            counts.try_open(ip("10.0.0.9"), tight),
            Err(Refusal::ClientFull)
        );
        assert!(counts.per_client.is_empty());
    }
}
