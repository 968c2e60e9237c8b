//! Who may send: the client's address behind trusted proxies, per-workflow
//! allow-lists of networks, and token-bucket rate limits. Pure: the listener
//! keeps the buckets in shared memory (src/ingest/rate_limits.rs, which
//! hashes their keys with a keyed SipHash and fills its sets with
//! [`take_in_set`]) and the networks in its settings and workflow cache.

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

/// What counts as one sender for the caps and budgets kept per client
/// (connections, body memory, per-client rate limits): an IPv4 address, or an
/// IPv6 /64 network. A single host is routinely given a whole /64, so keyed
/// by its full address one sender could open as many shares as it has
/// addresses.
pub fn sender_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !u128::from(u64::MAX),
        )),
        v4 => v4,
    }
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

    /// Reserves one token, whether or not it is there yet: the new state
    /// (tokens below zero are tokens promised to callers that wait) and the
    /// milliseconds the caller must wait for its token. Callers that each
    /// wait their turn this way pass at `limit.rate` however many there are.
    pub fn reserve(self, limit: Limit, now_ms: u64) -> (Bucket, u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        let tokens = (self.tokens + elapsed * limit.rate).min(limit.burst) - 1.0;
        let wait_ms = if tokens >= 0.0 {
            0
        } else {
            (-tokens / limit.rate.max(f64::MIN_POSITIVE) * 1000.0).ceil() as u64
        };
        (
            Bucket {
                tokens,
                at_ms: now_ms.max(self.at_ms),
            },
            wait_ms,
        )
    }

    /// When the bucket, refilling under `limit`, holds `burst` tokens again:
    /// from then on it is as if it had never been used, so forgetting it
    /// gives nobody anything. `u64::MAX` when that is never (or not
    /// representable); the rounding is up, so never before it is full.
    pub fn full_at(self, limit: Limit) -> u64 {
        let missing = limit.burst - self.tokens;
        if missing <= 0.0 {
            return self.at_ms;
        }
        if limit.rate.is_nan() || limit.rate <= 0.0 || missing.is_nan() {
            return u64::MAX;
        }
        // `as` saturates: an infinite or huge wait is u64::MAX.
        let ms = (missing / limit.rate * 1000.0).ceil() as u64;
        self.at_ms.saturating_add(ms)
    }
}

/// One way of a set-associative table of token buckets. Plain old data of a
/// fixed size: the table lives in shared memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Slot {
    /// The bucket's key (never 0); 0: the slot is free.
    pub key: u64,
    /// The workflow owner whose bucket it is (see [`MAX_WAYS_PER_OWNER`]).
    pub owner: u32,
    pub tokens: f64,
    pub at_ms: u64,
    /// [`Bucket::full_at`] under the limit the bucket was last seen with.
    /// Until then the bucket is limiting its key and is never dropped:
    /// dropping it would let the key start again with a full bucket.
    pub full_at_ms: u64,
}

/// Most slots of one set the buckets of one workflow owner may hold: a
/// tenant whose limiting buckets fill its share waits for its own, and the
/// rest of the set stays for the other owners.
pub const MAX_WAYS_PER_OWNER: usize = 4;

/// Takes a token for `key` (not 0), a bucket of `owner`'s, from its bucket in
/// `set`, one set of the table: `Err(seconds)` to wait when there is none.
///
/// A key without a bucket gets a free slot, or else the slot of the bucket
/// used longest ago among those that are full again; an owner that already
/// holds [`MAX_WAYS_PER_OWNER`] slots of the set takes only from its own.
/// When no such bucket is full again, none is dropped and the new key is
/// refused, with the seconds until the first of them is full again: a key
/// that finds no room is held back, never let through unlimited, no amount
/// of traffic to other keys makes a limiting bucket start full again, and
/// one owner's limiting buckets can keep only its own keys out.
pub fn take_in_set(
    set: &mut [Slot],
    key: u64,
    owner: u32,
    limit: Limit,
    now_ms: u64,
) -> Result<(), u64> {
    debug_assert_ne!(key, 0, "key 0 marks a free slot");
    let index = match set.iter().position(|s| s.key == key) {
        Some(found) => found,
        None => {
            let own = set
                .iter()
                .filter(|s| s.key != 0 && s.owner == owner)
                .count();
            let mine_only = own >= MAX_WAYS_PER_OWNER;
            let may_take = |slot: &Slot| !mine_only || (slot.key != 0 && slot.owner == owner);
            let evictable = set
                .iter()
                .enumerate()
                .filter(|(_, s)| may_take(s) && (s.key == 0 || s.full_at_ms <= now_ms))
                // Free slots first, then the stalest.
                .min_by_key(|(_, s)| (s.key != 0, s.at_ms))
                .map(|(i, _)| i);
            let Some(index) = evictable else {
                let soonest = set
                    .iter()
                    .filter(|s| may_take(s))
                    .map(|s| s.full_at_ms)
                    .min()
                    .unwrap_or(u64::MAX);
                let wait_ms = soonest.saturating_sub(now_ms);
                return Err(wait_ms.div_ceil(1000).max(1));
            };
            let full = Bucket::full(limit, now_ms);
            set[index] = Slot {
                key,
                owner,
                tokens: full.tokens,
                at_ms: full.at_ms,
                full_at_ms: full.at_ms,
            };
            index
        }
    };
    let slot = &mut set[index];
    let bucket = Bucket {
        tokens: slot.tokens,
        at_ms: slot.at_ms,
    };
    // Judged by the limit in force now, also when no token is taken: a limit
    // made stricter since the last token keeps the bucket for longer.
    let result = bucket.take(limit, now_ms);
    let after = result.unwrap_or(bucket);
    slot.tokens = after.tokens;
    slot.at_ms = after.at_ms;
    slot.full_at_ms = after.full_at(limit);
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reservations_beyond_the_burst_wait_their_turn_at_the_rate() {
        let limit = Limit {
            rate: 10.0,
            burst: 2.0,
        };
        let mut bucket = Bucket::full(limit, 1_000);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let (next, wait) = bucket.reserve(limit, 1_000);
            bucket = next;
            waits.push(wait);
        }
        // Two from the burst, then one every 100 ms.
        assert_eq!(waits, vec![0, 0, 100, 200, 300]);
        // Half a second later the three promised tokens are paid, the burst
        // is full again, and this one takes one of its two.
        let (bucket, wait) = bucket.reserve(limit, 1_500);
        assert_eq!(wait, 0);
        assert!((bucket.tokens - 1.0).abs() < 1e-9, "{bucket:?}");
    }

    use super::*;

    use crate::test_support::headers;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_sender_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let key = |s: &str| sender_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::1"), "::");
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

    #[test]
    fn full_at_is_when_the_refill_reaches_the_burst() {
        let limit = Limit {
            rate: 2.0,
            burst: 3.0,
        };
        // Full: nothing to wait for.
        assert_eq!(Bucket::full(limit, 1_000).full_at(limit), 1_000);
        // Two tokens short at 2 per second: one second.
        let bucket = Bucket {
            tokens: 1.0,
            at_ms: 1_000,
        };
        assert_eq!(bucket.full_at(limit), 2_000);
        // More than the burst (a limit lowered since): full already.
        let lowered = Limit {
            rate: 2.0,
            burst: 0.5,
        };
        assert_eq!(bucket.full_at(lowered), 1_000);
        // Rounded up to the millisecond, never down.
        let third = Limit {
            rate: 3.0,
            burst: 1.0,
        };
        assert_eq!(
            Bucket {
                tokens: 0.0,
                at_ms: 0
            }
            .full_at(third),
            334
        );
        // Never, or too far to count: u64::MAX.
        let stopped = Limit {
            rate: 0.0,
            burst: 1.0,
        };
        assert_eq!(
            Bucket {
                tokens: 0.0,
                at_ms: 5
            }
            .full_at(stopped),
            u64::MAX
        );
        let glacial = Limit {
            rate: 1e-300,
            burst: 1.0,
        };
        assert_eq!(
            Bucket {
                tokens: 0.0,
                at_ms: 5
            }
            .full_at(glacial),
            u64::MAX
        );
        let broken = Limit {
            rate: f64::NAN,
            burst: 1.0,
        };
        assert_eq!(
            Bucket {
                tokens: 0.0,
                at_ms: 5
            }
            .full_at(broken),
            u64::MAX
        );
        // It agrees with take's refill: at full_at the bucket gives `burst`
        // tokens in a row; a millisecond before, it holds fewer than `burst`.
        for (rate, burst, tokens) in [
            (0.1, 1.0, 0.0),
            (7.0, 5.0, 0.3),
            (0.37, 20.0, 19.5),
            (1000.0, 3.0, 2.0),
        ] {
            let limit = Limit { rate, burst };
            let bucket = Bucket {
                tokens,
                at_ms: 10_000,
            };
            let at = bucket.full_at(limit);
            assert!(at > 10_000);
            let mut later = bucket;
            for _ in 0..burst as usize {
                later = later.take(limit, at).unwrap();
            }
            let before = bucket.take(limit, at - 1).map(|b| b.tokens);
            assert!(
                before.map_or(true, |t| t < burst - 1.0),
                "{rate} {burst} {tokens}: {before:?}"
            );
        }
    }

    /// In these tests every key is its own owner's, unless a test says.
    fn owner_of(key: u64) -> u32 {
        key as u32
    }

    const LIMITING: Limit = Limit {
        rate: 0.001,
        burst: 1.0,
    };
    const QUICK: Limit = Limit {
        rate: 1000.0,
        burst: 1.0,
    };

    #[test]
    fn a_set_keeps_a_bucket_until_it_is_full_again() {
        let mut set = [Slot::default(); 4];
        // The victim uses its only token: limited for 1,000 seconds.
        assert_eq!(take_in_set(&mut set, 7, owner_of(7), LIMITING, 0), Ok(()));
        assert_eq!(
            take_in_set(&mut set, 7, owner_of(7), LIMITING, 0),
            Err(1000)
        );
        // Others fill the set, and many more come after them: the stalest
        // full bucket gives way each time, never the victim's.
        for n in 0..1_000u64 {
            assert_eq!(
                take_in_set(&mut set, 100 + n, owner_of(100 + n), QUICK, 10 + 10 * n),
                Ok(())
            );
        }
        assert!(set.iter().any(|s| s.key == 7));
        assert_eq!(
            take_in_set(&mut set, 7, owner_of(7), LIMITING, 20_000),
            Err(980)
        );
        // Once it is full again it may go like any other.
        let refilled = 1_000_000;
        for n in 0..4u64 {
            assert_eq!(
                take_in_set(
                    &mut set,
                    5_000 + n,
                    owner_of(5_000 + n),
                    QUICK,
                    refilled + n
                ),
                Ok(())
            );
        }
        assert!(set.iter().all(|s| s.key != 7));
        // And it comes back full, which it was.
        assert_eq!(
            take_in_set(&mut set, 7, owner_of(7), LIMITING, refilled + 10),
            Ok(())
        );
    }

    #[test]
    fn the_stalest_full_bucket_gives_way_and_a_free_slot_before_it() {
        let mut set = [Slot::default(); 3];
        assert_eq!(take_in_set(&mut set, 1, owner_of(1), QUICK, 100), Ok(()));
        assert_eq!(take_in_set(&mut set, 2, owner_of(2), QUICK, 50), Ok(()));
        // A free slot is taken before any full bucket is dropped.
        assert_eq!(take_in_set(&mut set, 3, owner_of(3), QUICK, 200), Ok(()));
        assert_eq!(set.map(|s| s.key), [1, 2, 3]);
        // All full again: the one used longest ago (2, at 50) goes.
        assert_eq!(take_in_set(&mut set, 4, owner_of(4), QUICK, 300), Ok(()));
        assert_eq!(set.map(|s| s.key), [1, 4, 3]);
        // A key found is its own bucket, wherever it is.
        assert_eq!(take_in_set(&mut set, 3, owner_of(3), QUICK, 400), Ok(()));
        assert_eq!(set.map(|s| s.key), [1, 4, 3]);
        assert_eq!(set[2].at_ms, 400);
    }

    #[test]
    fn a_new_key_in_a_set_of_limiting_buckets_waits() {
        let mut set = [Slot::default(); 2];
        let ten_seconds = Limit {
            rate: 0.1,
            burst: 1.0,
        };
        assert_eq!(
            take_in_set(&mut set, 1, owner_of(1), ten_seconds, 0),
            Ok(())
        );
        assert_eq!(take_in_set(&mut set, 2, owner_of(2), LIMITING, 0), Ok(()));
        // No room, and nobody is dropped: the new key is refused until the
        // first bucket is full again (key 1, at 10 s).
        assert_eq!(take_in_set(&mut set, 3, owner_of(3), QUICK, 2_500), Err(8));
        assert_eq!(take_in_set(&mut set, 3, owner_of(3), QUICK, 9_999), Err(1));
        assert_eq!(set.map(|s| s.key), [1, 2]);
        // The refusals took nothing from the others.
        assert_eq!(
            take_in_set(&mut set, 2, owner_of(2), LIMITING, 9_999),
            Err(991)
        );
        assert_eq!(take_in_set(&mut set, 3, owner_of(3), QUICK, 10_000), Ok(()));
        assert_eq!(set.map(|s| s.key), [3, 2]);
        // Never full again: refused with the longest wait there is.
        let mut never = [Slot::default(); 1];
        let stopped = Limit {
            rate: 1e-300,
            burst: 1.0,
        };
        assert_eq!(take_in_set(&mut never, 1, owner_of(1), stopped, 0), Ok(()));
        assert_eq!(
            take_in_set(&mut never, 2, owner_of(2), QUICK, 0),
            Err(u64::MAX.div_ceil(1000))
        );
    }

    #[test]
    fn one_owner_holds_at_most_its_share_of_a_set() {
        let mut set = [Slot::default(); 8];
        let (attacker, victim) = (1, 2);
        // The attacker's limiting buckets take half the set; its next key
        // must wait for one of its own, not take the others' room.
        for key in 10..14 {
            assert_eq!(take_in_set(&mut set, key, attacker, LIMITING, 0), Ok(()));
        }
        assert_eq!(take_in_set(&mut set, 14, attacker, LIMITING, 0), Err(1000));
        // The victim's keys still find room, and limit as they should.
        assert_eq!(take_in_set(&mut set, 20, victim, LIMITING, 1), Ok(()));
        assert_eq!(take_in_set(&mut set, 21, victim, LIMITING, 1), Ok(()));
        assert_eq!(take_in_set(&mut set, 20, victim, LIMITING, 2), Err(1000));
        // An owner at its share reuses its own full buckets.
        let mut quick = [Slot::default(); 8];
        for key in 30..40 {
            assert_eq!(
                take_in_set(&mut quick, key, attacker, QUICK, key * 10),
                Ok(())
            );
        }
        assert_eq!(quick.iter().filter(|s| s.key != 0).count(), 4);
    }

    #[test]
    fn a_stricter_limit_keeps_the_bucket_longer() {
        let mut set = [Slot::default(); 1];
        assert_eq!(take_in_set(&mut set, 1, owner_of(1), QUICK, 0), Ok(()));
        // The limit became 0.001/s: judged by it, the empty bucket is
        // limiting until 1,000 s, even though no token is taken.
        assert_eq!(
            take_in_set(&mut set, 1, owner_of(1), LIMITING, 0),
            Err(1000)
        );
        assert_eq!(set[0].full_at_ms, 1_000_000);
        assert_eq!(take_in_set(&mut set, 2, owner_of(2), QUICK, 10), Err(1000));
    }
}
