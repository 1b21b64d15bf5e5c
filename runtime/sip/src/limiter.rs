//! Slowing down repeated failures per address: after [`FREE_FAILURES`] failed attempts within
//! [`FAILURE_WINDOW`], every further request from that address is answered only after a delay
//! that doubles from [`FIRST_DELAY`] up to [`MAX_DELAY`], until one succeeds or the address stays
//! quiet for [`FORGET_AFTER`]. IPv6 addresses count by their /64. At most [`MAX_ADDRESSES`] are
//! remembered (the oldest forgotten first). Sans-IO: the caller passes the time and waits the
//! delay itself. Used by the SIP registrar and the agents' HTTP logins.

use ivr_sansio::Millis;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// Failures from one address before its requests are slowed down.
pub const FREE_FAILURES: u32 = 3;
/// Failures count towards slowing down when they come within this window of each other.
pub const FAILURE_WINDOW: Millis = 60_000;
/// The first delay.
pub const FIRST_DELAY: Millis = 1_000;
/// The longest delay.
pub const MAX_DELAY: Millis = 16_000;
/// An address quiet this long is forgotten.
pub const FORGET_AFTER: Millis = 5 * 60_000;
/// Most addresses remembered at once.
pub const MAX_ADDRESSES: usize = 10_000;

/// Failures from one address.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    /// When the failures being counted began.
    since: Millis,
    last_seen: Millis,
}

/// Failures per address, and the delay they earn.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    strikes: HashMap<IpAddr, Strikes>,
    /// `(last_seen, address)` of every entry of `strikes`, oldest first.
    by_age: BTreeSet<(Millis, IpAddr)>,
}

/// The address failures are counted under: IPv6 addresses by their /64.
fn strike_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailureLimiter {
    /// Nobody has failed yet.
    pub fn new() -> FailureLimiter {
        FailureLimiter::default()
    }

    /// Notes a request from `source` at `now`; the delay its answer gets (ms).
    pub fn seen(&mut self, source: IpAddr, now: Millis) -> Millis {
        let key = strike_key(source);
        // Forget the quiet ones first (oldest first, so this stops at the first recent one).
        while let Some(&(at, ip)) = self.by_age.first() {
            if now.saturating_sub(at) < FORGET_AFTER {
                break;
            }
            self.by_age.remove(&(at, ip));
            self.strikes.remove(&ip);
        }
        let Some(s) = self.strikes.get_mut(&key) else {
            return 0;
        };
        self.by_age.remove(&(s.last_seen, key));
        s.last_seen = now;
        self.by_age.insert((now, key));
        delay_after(s.failures)
    }

    /// Counts a failure of `source` at `now`; the failures counted so far.
    pub fn strike(&mut self, source: IpAddr, now: Millis) -> u32 {
        let key = strike_key(source);
        if let Some(s) = self.strikes.get_mut(&key) {
            // Below the threshold, only failures within one window add up.
            if s.failures < FREE_FAILURES && now.saturating_sub(s.since) > FAILURE_WINDOW {
                s.failures = 0;
                s.since = now;
            }
            s.failures = s.failures.saturating_add(1);
            return s.failures;
        }
        while self.strikes.len() >= MAX_ADDRESSES {
            let Some((at, ip)) = self.by_age.pop_first() else {
                break;
            };
            let _ = at;
            self.strikes.remove(&ip);
        }
        self.strikes.insert(
            key,
            Strikes {
                failures: 1,
                since: now,
                last_seen: now,
            },
        );
        self.by_age.insert((now, key));
        1
    }

    /// Forgets the failures of `source` (it just succeeded).
    pub fn forget(&mut self, source: IpAddr) {
        let key = strike_key(source);
        if let Some(s) = self.strikes.remove(&key) {
            self.by_age.remove(&(s.last_seen, key));
        }
    }

    /// Addresses remembered now.
    pub fn remembered(&self) -> usize {
        self.strikes.len()
    }
}

/// The delay of a request from an address with `failures` counted (ms).
fn delay_after(failures: u32) -> Millis {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(8);
    (FIRST_DELAY * (1 << doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_most() {
        let mut l = FailureLimiter::new();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let t: Millis = 1_000;
        let mut delays = Vec::new();
        for i in 0..9 {
            delays.push(l.seen(ip, t + i * 1_000));
            l.strike(ip, t + i * 1_000);
        }
        let secs: Vec<Millis> = delays.iter().map(|d| d / 1_000).collect();
        assert_eq!(secs, [0, 0, 0, 1, 2, 4, 8, 16, 16]);
        l.forget(ip);
        assert_eq!(l.seen(ip, t + 10_000), 0);
        // Another address of the same IPv6 /64 shares the count.
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::2".parse().expect("ip");
        for _ in 0..4 {
            l.strike(a, t);
        }
        assert_eq!(l.seen(b, t), FIRST_DELAY * 2);
    }
}
