//! Who may INVITE how often, sans-IO: the trusted networks of `[server] trusted` (trunks,
//! proxies: never limited) and, for everyone else, a token bucket per source address
//! (`[server] invite_rate` INVITEs a second, a burst of as many) in a bounded table.
//!
//! - A source address is counted as itself for IPv4 (an IPv4-mapped IPv6 address as its IPv4
//!   address) and by its /64 for IPv6: one host of IPv6 usually holds a whole /64, so counting
//!   single addresses would give it 2^64 buckets.
//! - A bucket holds `invite_rate` tokens and gains `invite_rate` a second; a new dialog's
//!   INVITE takes one, and without one it is refused (503 with `Retry-After`, by the core).
//!   An address not seen yet has a full bucket, so a bucket that has filled up again is as good
//!   as none: the table forgets the least recently seen address first when it is full
//!   ([`InviteLimiter::with_capacity`]).
//! - The same bucket bounds in-dialog requests of one dialog or leg ([`Bucket`]).
//!
//! The text of a network (`192.0.2.0/24`) is read by `ivr check` (ivr-compiler), which
//! reports a bad one at its line; here a network is built from its address and prefix length.

use ivr_sansio::Millis;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `invite_rate` when `[server]` does not say.
pub const DEFAULT_INVITE_RATE: u32 = 20;
/// Most source addresses with a bucket at once (the least recently seen is forgotten first).
pub const MAX_SOURCES: usize = 10_000;
/// Requests a second within one dialog or leg (INFO, re-INVITE), beyond its burst.
pub const IN_DIALOG_RATE: u32 = 20;
/// The burst of requests within one dialog or leg.
pub const IN_DIALOG_BURST: u32 = 40;

/// One token, in the thousandths buckets count in.
const TOKEN: i64 = 1_000;

/// An address as it is compared: an IPv4-mapped IPv6 address (a dual-stack socket's view of
/// an IPv4 peer) as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address limits count under: IPv4 addresses as they are, IPv6 addresses by their /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A network: an address and how many of its leading bits count (`192.0.2.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `addr`'s first `prefix` bits; `None` when `prefix` is longer than the
    /// address (32 for IPv4, 128 for IPv6). An IPv4-mapped IPv6 address is taken as IPv4.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Network> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical(addr), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Network { addr, prefix })
    }

    /// The one address `addr` (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Network {
        let addr = canonical(addr);
        Network {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The address as written.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The loopback networks, trusted when `[server] trusted` is not written: `127.0.0.0/8`
    /// and `::1/128`.
    pub fn loopback() -> Vec<Network> {
        vec![
            Network {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Network::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Who may INVITE how often (`[server] trusted` and `invite_rate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePolicy {
    /// Sources never limited (trunks, proxies).
    pub trusted: Vec<Network>,
    /// INVITEs of new dialogs a second per untrusted source address (at least 1).
    pub invite_rate: u32,
}

impl Default for EdgePolicy {
    /// Loopback trusted, 20 INVITEs a second for everyone else.
    fn default() -> Self {
        EdgePolicy {
            trusted: Network::loopback(),
            invite_rate: DEFAULT_INVITE_RATE,
        }
    }
}

impl EdgePolicy {
    /// Whether `ip` is in a trusted network.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }
}

/// A token bucket: `rate` tokens a second, at most `burst`, full when made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a token.
    tokens: i64,
    at: Millis,
}

impl Bucket {
    /// A full bucket of `burst` tokens at `now`.
    pub fn full(burst: u32, now: Millis) -> Bucket {
        Bucket {
            tokens: i64::from(burst) * TOKEN,
            at: now,
        }
    }

    /// Takes a token at `now`, refilling `rate` a second up to `burst`; when there is none,
    /// how long until there is one (ms, at least 1).
    pub fn take(&mut self, rate: u32, burst: u32, now: Millis) -> Result<(), Millis> {
        let rate = i64::from(rate.max(1));
        let elapsed = now.saturating_sub(self.at).max(0);
        self.at = self.at.max(now);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(i64::from(burst.max(1)) * TOKEN);
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            return Ok(());
        }
        // Thousandths of a token come at `rate` a millisecond.
        Err(((TOKEN - self.tokens) + rate - 1) / rate)
    }
}

/// A bucket per untrusted source address, at most `capacity` of them.
#[derive(Debug)]
pub struct InviteLimiter {
    buckets: HashMap<IpAddr, (Bucket, Millis)>,
    /// `(last seen, address)` of every bucket, oldest first.
    by_age: BTreeSet<(Millis, IpAddr)>,
    capacity: usize,
}

impl Default for InviteLimiter {
    fn default() -> Self {
        InviteLimiter::with_capacity(MAX_SOURCES)
    }
}

impl InviteLimiter {
    /// No address seen yet; at most `capacity` (at least 1) remembered.
    pub fn with_capacity(capacity: usize) -> InviteLimiter {
        InviteLimiter {
            buckets: HashMap::new(),
            by_age: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// An INVITE from `source` at `now` under `rate` a second: `Err` with the time until the
    /// next one would pass (ms) when it must be refused.
    pub fn admit(&mut self, source: IpAddr, rate: u32, now: Millis) -> Result<(), Millis> {
        let key = source_key(source);
        let (mut bucket, seen) = match self.buckets.remove(&key) {
            Some(entry) => entry,
            None => {
                while self.buckets.len() >= self.capacity {
                    let Some((_, oldest)) = self.by_age.pop_first() else {
                        break;
                    };
                    self.buckets.remove(&oldest);
                }
                (Bucket::full(rate, now), now)
            }
        };
        self.by_age.remove(&(seen, key));
        let verdict = bucket.take(rate, rate, now);
        let seen = seen.max(now);
        self.buckets.insert(key, (bucket, seen));
        self.by_age.insert((seen, key));
        verdict
    }

    /// Addresses with a bucket now.
    pub fn remembered(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = Network::new(ip("192.0.2.0"), 24).expect("net");
        assert!(n.contains(ip("192.0.2.200")));
        assert!(!n.contains(ip("192.0.3.1")));
        assert!(n.contains(ip("::ffff:192.0.2.9")), "IPv4-mapped");
        assert!(!n.contains(ip("2001:db8::1")));
        let all = Network::new(ip("0.0.0.0"), 0).expect("net");
        assert!(all.contains(ip("203.0.113.5")));
        let v6 = Network::new(ip("2001:db8::"), 32).expect("net");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert_eq!(Network::new(ip("10.0.0.0"), 33), None);
        assert_eq!(Network::new(ip("::"), 129), None);
        let mapped = Network::new(ip("::ffff:10.0.0.0"), 104).expect("net");
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        let lo = EdgePolicy::default();
        assert!(lo.trusts(ip("127.0.0.2")) && lo.trusts(ip("::1")));
        assert!(!lo.trusts(ip("192.0.2.1")));
        let nobody = EdgePolicy {
            trusted: Vec::new(),
            invite_rate: 1,
        };
        assert!(!nobody.trusts(ip("127.0.0.1")));
        assert_eq!(
            Network::host(ip("::ffff:1.2.3.4")).to_string(),
            "1.2.3.4/32"
        );
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut b = Bucket::full(20, 0);
        for _ in 0..20 {
            assert_eq!(b.take(20, 20, 0), Ok(()));
        }
        assert_eq!(b.take(20, 20, 0), Err(50));
        assert_eq!(b.take(20, 20, 49), Err(1));
        assert_eq!(b.take(20, 20, 50), Ok(()));
        // A long pause fills it up to the burst, not beyond.
        let mut n = 0;
        while b.take(20, 20, 100_000).is_ok() {
            n += 1;
        }
        assert_eq!(n, 20);
        // Time going back changes nothing.
        assert!(b.take(20, 20, 10).is_err());
    }

    #[test]
    fn each_address_has_its_own_bucket_and_ipv6_counts_by_64() {
        let mut l = InviteLimiter::default();
        for _ in 0..5 {
            assert!(l.admit(ip("192.0.2.1"), 5, 0).is_ok());
        }
        assert_eq!(l.admit(ip("192.0.2.1"), 5, 0), Err(200));
        assert!(l.admit(ip("192.0.2.2"), 5, 0).is_ok());
        assert!(l.admit(ip("::ffff:192.0.2.1"), 5, 0).is_err());
        for i in 0..5 {
            assert!(l.admit(ip(&format!("2001:db8::{i}")), 5, 0).is_ok());
        }
        assert!(l.admit(ip("2001:db8::ffff:1"), 5, 0).is_err());
        assert!(l.admit(ip("2001:db8:0:1::1"), 5, 0).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest() {
        let mut l = InviteLimiter::with_capacity(3);
        assert!(l.admit(ip("10.0.0.1"), 1, 0).is_ok());
        assert!(l.admit(ip("10.0.0.1"), 1, 1).is_err());
        for (i, t) in [(2, 2), (3, 3), (4, 4)] {
            assert!(l.admit(ip(&format!("10.0.0.{i}")), 1, t).is_ok());
        }
        assert_eq!(l.remembered(), 3);
        // 10.0.0.1 was the oldest: forgotten, so it has a full bucket again.
        assert!(l.admit(ip("10.0.0.1"), 1, 5).is_ok());
        assert_eq!(l.remembered(), 3);
        // 10.0.0.2 went next; 10.0.0.4 is still remembered (and empty).
        assert!(l.admit(ip("10.0.0.4"), 1, 6).is_err());
    }
}
