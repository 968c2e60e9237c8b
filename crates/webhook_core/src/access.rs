//! Who may send: the client's address behind trusted proxies, per-workflow
//! allow-lists of networks, and token-bucket rate limits. Pure: the listener
//! keeps the buckets in shared memory (src/listener/rate_limits.rs) and the
//! networks in its settings and workflow cache.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

/// Parses a comma-separated list of networks (`10.0.0.0/8, ::1, 192.168.1.7`);
/// a bare address is a /32 or /128.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_network)
        .collect()
}

/// One network in CIDR notation, or a bare address.
pub fn parse_network(item: &str) -> Result<IpNet, String> {
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("\"{item}\" is not an IP address or CIDR network"))
}

/// Whether `ip` is in one of `networks` (an IPv4-mapped IPv6 address counts
/// as the IPv4 address it carries).
pub fn contains(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    networks.iter().any(|net| net.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Which header trusted proxies name the client in (`webhook.forwarded_header`).
/// Only that one is read: proxies append to their own header and pass any
/// other through untouched, so a client could write the other one itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, most balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    pub fn parse(text: &str) -> Result<ForwardedHeader, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            _ => Err("the forwarded header is x-forwarded-for or forwarded".into()),
        }
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then
/// the proxies' record of who connected to them (`header`), read from the
/// nearest hop backwards, skipping further trusted proxies. A header from an
/// untrusted peer is ignored. `None` when a hop that has to be believed
/// cannot be read (`for=unknown`, garbage): the client is then unknown, which
/// no allow-list admits.
pub fn client_address(
    peer: IpAddr,
    headers: &Map<String, Value>,
    trusted: &[IpNet],
    which: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = canonical(peer);
    if !contains(trusted, peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = match which {
        ForwardedHeader::Forwarded => header(headers, "forwarded")
            .map(|forwarded| {
                forwarded
                    .split(',')
                    .map(|element| {
                        element
                            .split(';')
                            .find_map(|pair| {
                                let (name, value) = pair.trim().split_once('=')?;
                                name.trim()
                                    .eq_ignore_ascii_case("for")
                                    .then_some(value.trim())
                            })
                            .unwrap_or("")
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ForwardedHeader::XForwardedFor => header(headers, "x-forwarded-for")
            .map(|list| list.split(',').map(str::trim).collect())
            .unwrap_or_default(),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = parse_hop(hop)?;
        if !contains(trusted, client) {
            break;
        }
    }
    Some(client)
}

fn header<'a>(headers: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(Value::as_str)
}

/// An address as proxies write it: `203.0.113.7`, `203.0.113.7:4711`,
/// `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<IpAddr>().ok().map(canonical)
}

/// A rate limit: `rate` requests per second on average, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

/// A token bucket's state: tokens left at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at_ms: u64,
}

impl Bucket {
    /// A bucket seen for the first time: full.
    pub fn full(limit: Limit, now_ms: u64) -> Bucket {
        Bucket {
            tokens: limit.burst,
            at_ms: now_ms,
        }
    }

    /// Takes one token: the new state, or the whole seconds to wait before
    /// one is there (at least 1, for `Retry-After`).
    pub fn take(self, limit: Limit, now_ms: u64) -> Result<Bucket, u64> {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        let tokens = (self.tokens + elapsed * limit.rate).min(limit.burst);
        if tokens >= 1.0 {
            return Ok(Bucket {
                tokens: tokens - 1.0,
                at_ms: now_ms.max(self.at_ms),
            });
        }
        let wait = (1.0 - tokens) / limit.rate.max(f64::MIN_POSITIVE);
        Err((wait.ceil() as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::headers;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let nets = parse_networks("10.0.0.0/8, 192.168.1.7 ,2001:db8::/32").unwrap();
        assert!(contains(&nets, ip("10.1.2.3")));
        assert!(contains(&nets, ip("192.168.1.7")));
        assert!(!contains(&nets, ip("192.168.1.8")));
        assert!(contains(&nets, ip("2001:db8::5")));
        assert!(contains(&nets, ip("::ffff:10.0.0.1")));
        assert!(!contains(&nets, ip("11.0.0.1")));
        assert_eq!(parse_networks("").unwrap(), vec![]);
        // Host bits are dropped, as PostgreSQL's cidr refuses them.
        assert_eq!(
            parse_networks("10.1.2.3/8").unwrap(),
            parse_networks("10.0.0.0/8").unwrap()
        );
        assert_eq!(
            parse_networks("10.0.0.0/8, example.com").unwrap_err(),
            "\"example.com\" is not an IP address or CIDR network"
        );
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        use ForwardedHeader::{Forwarded, XForwardedFor};
        let trusted = parse_networks("127.0.0.1, 10.0.0.0/8").unwrap();
        let client = |peer: &str, h: &Map<String, Value>, which| {
            client_address(ip(peer), h, &trusted, which)
        };
        let xff = headers(&[("x-forwarded-for", "198.51.100.9, 203.0.113.7, 10.0.0.2")]);
        // From a trusted proxy: the nearest untrusted hop.
        assert_eq!(
            client("127.0.0.1", &xff, XForwardedFor),
            Some(ip("203.0.113.7"))
        );
        // From anyone else: the header is the client's own claim, ignored.
        assert_eq!(
            client("192.0.2.1", &xff, XForwardedFor),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &xff, &[], XForwardedFor),
            Some(ip("127.0.0.1"))
        );
        // Only the configured header is read: a client's own Forwarded
        // passed through by an X-Forwarded-For proxy is ignored, and the
        // other way round.
        let both = headers(&[
            ("forwarded", "for=203.0.113.66"),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(
            client("127.0.0.1", &both, XForwardedFor),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            client("127.0.0.1", &both, Forwarded),
            Some(ip("203.0.113.66"))
        );
        // RFC 7239, with ports and IPv6.
        let fwd = headers(&[(
            "forwarded",
            "for=198.51.100.9;proto=https, for=\"[2001:db8::7]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(client("10.0.0.1", &fwd, Forwarded), Some(ip("2001:db8::7")));
        let port = headers(&[("x-forwarded-for", "203.0.113.7:5555")]);
        assert_eq!(
            client("10.9.9.9", &port, XForwardedFor),
            Some(ip("203.0.113.7"))
        );
        // A hop that must be believed but cannot be read: the client is unknown.
        let junk = headers(&[("x-forwarded-for", "203.0.113.7, unknown")]);
        assert_eq!(client("127.0.0.1", &junk, XForwardedFor), None);
        let hidden = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client("127.0.0.1", &hidden, Forwarded), None);
        let no_for = headers(&[("forwarded", "proto=https")]);
        assert_eq!(client("127.0.0.1", &no_for, Forwarded), None);
        // No header at all: the proxy itself is the client.
        assert_eq!(
            client("127.0.0.1", &headers(&[]), XForwardedFor),
            Some(ip("127.0.0.1"))
        );
        // Only trusted hops: the farthest one.
        let inner = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(
            client("127.0.0.1", &inner, XForwardedFor),
            Some(ip("10.0.0.3"))
        );
        // An IPv4-mapped peer is its IPv4 address.
        assert_eq!(
            client("::ffff:192.0.2.1", &xff, XForwardedFor),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(ForwardedHeader::parse("Forwarded"), Ok(Forwarded));
        assert!(ForwardedHeader::parse("x-real-ip").is_err());
    }

    #[test]
    fn token_bucket() {
        let limit = Limit {
            rate: 2.0,
            burst: 3.0,
        };
        let mut bucket = Bucket::full(limit, 1_000);
        for _ in 0..3 {
            bucket = bucket.take(limit, 1_000).unwrap();
        }
        assert_eq!(bucket.take(limit, 1_000), Err(1));
        // Half a second later one token came back.
        let bucket = bucket.take(limit, 1_500).unwrap();
        assert_eq!(bucket.take(limit, 1_500), Err(1));
        // Never more than the burst, however long it was idle.
        let idle = bucket.take(limit, 1_000_000).unwrap();
        assert_eq!(idle.tokens, 2.0);
        // A slow rate: the wait is rounded up to whole seconds.
        let slow = Limit {
            rate: 0.1,
            burst: 1.0,
        };
        let empty = Bucket::full(slow, 0).take(slow, 0).unwrap();
        assert_eq!(empty.take(slow, 0), Err(10));
        assert_eq!(empty.take(slow, 5_000), Err(5));
        // A clock that went backwards takes nothing back.
        assert_eq!(empty.take(slow, 0).unwrap_err(), 10);
    }
}
