//! Failed logins, sans-IO, for the SIP registrar and the agents' HTTP logins (each has a
//! limiter of its own). Three defences:
//!
//! - **Slowing down**, per address: after [`FREE_FAILURES`] failed attempts within
//!   [`FAILURE_WINDOW`], every further attempt from that address is answered only after a
//!   delay that doubles from [`FIRST_DELAY`] up to [`MAX_DELAY`]; a success clears it.
//! - **Address lock**: [`ADDRESS_LOCK_FAILURES`] failures from one address within
//!   [`LOCK_WINDOW`] lock it for [`LOCK_WINDOW`]: its attempts are refused without looking at
//!   the credentials, the right password included. A success does not clear the count (else
//!   an attacker who knows one agent's password could reset it between guesses at others).
//! - **Agent lock**: [`AGENT_LOCK_FAILURES`] failures for one agent within [`LOCK_WINDOW`],
//!   from any addresses, lock that agent for [`LOCK_WINDOW`]: its password is not checked from
//!   any address but the last [`KNOWN_ADDRESSES`] it logged in from (within [`KNOWN_FOR`]), so
//!   an attacker spread over many addresses gets at most that many guesses, and the agent's
//!   own phone keeps refreshing its registration meanwhile. The right password from a new
//!   address is refused until the lock passes: that is the price of the lock.
//!
//! IPv6 addresses count by their /64 ([`crate::edge::source_key`]). At most [`MAX_ADDRESSES`]
//! addresses and [`MAX_AGENTS`] agents are remembered (the least recently seen forgotten
//! first); an address quiet for [`FORGET_AFTER`] is forgotten (by then its lock has passed).
//! Callers pass an agent only when it is configured, so unknown names take no room. The caller
//! passes the time and waits the delay itself.

use crate::edge::source_key;
use ivr_sansio::Millis;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Failures from one address before its attempts are slowed down.
pub const FREE_FAILURES: u32 = 3;
/// Failures count towards slowing down when they come within this window of each other.
pub const FAILURE_WINDOW: Millis = 60_000;
/// The first delay.
pub const FIRST_DELAY: Millis = 1_000;
/// The longest delay.
pub const MAX_DELAY: Millis = 16_000;
/// Failures from one address within [`LOCK_WINDOW`] that lock it.
pub const ADDRESS_LOCK_FAILURES: u32 = 10;
/// Failures for one agent, from any addresses, within [`LOCK_WINDOW`] that lock it.
pub const AGENT_LOCK_FAILURES: u32 = 20;
/// The window failures are counted in for the locks, and how long a lock lasts.
pub const LOCK_WINDOW: Millis = 10 * 60_000;
/// An address quiet this long is forgotten.
pub const FORGET_AFTER: Millis = LOCK_WINDOW;
/// Most addresses remembered at once.
pub const MAX_ADDRESSES: usize = 10_000;
/// Most agents remembered at once.
pub const MAX_AGENTS: usize = 10_000;
/// Addresses an agent logged in from that its lock spares.
pub const KNOWN_ADDRESSES: usize = 4;
/// How long an address an agent logged in from is remembered for it.
pub const KNOWN_FOR: Millis = 24 * 3_600_000;

/// Failures of one address.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    /// Failures since the last success (the delay grows with them).
    failures: u32,
    /// When the failures being counted began.
    since: Millis,
    /// Failures in the lock window.
    window: u32,
    /// When the lock window began.
    window_since: Millis,
    /// Locked until then.
    locked_until: Millis,
    last_seen: Millis,
}

/// Failures for one agent, and where it logged in from.
#[derive(Debug, Clone, Default)]
struct AgentStrikes {
    window: u32,
    window_since: Millis,
    locked_until: Millis,
    /// `(address, last success)`, most recent last.
    known: Vec<(IpAddr, Millis)>,
    last_seen: Millis,
}

/// Why an attempt is refused without being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The address failed too often ([`ADDRESS_LOCK_FAILURES`]).
    Address {
        /// When it is lifted.
        until: Millis,
    },
    /// The agent failed too often ([`AGENT_LOCK_FAILURES`]) and this address is not one it
    /// logged in from.
    Agent {
        /// When it is lifted.
        until: Millis,
    },
}

/// What to do with an attempt ([`FailureLimiter::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credentials, answering only after `delay` ms.
    Check {
        /// How long to hold the answer back.
        delay: Millis,
    },
    /// Refuse without checking.
    Locked(Lock),
}

/// Failures per address and per agent: the delays and locks they earn.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    strikes: HashMap<IpAddr, Strikes>,
    /// `(last_seen, address)` of every entry of `strikes`, oldest first.
    by_age: BTreeSet<(Millis, IpAddr)>,
    agents: HashMap<String, AgentStrikes>,
    /// `(last_seen, agent)` of every entry of `agents`, oldest first.
    agents_by_age: BTreeSet<(Millis, String)>,
}

impl FailureLimiter {
    /// Nobody has failed yet.
    pub fn new() -> FailureLimiter {
        FailureLimiter::default()
    }

    /// An attempt from `source` (for `agent`, when it names a configured one) at `now`:
    /// refused unchecked while the address or the agent is locked, else checked after the
    /// delay the address's failures earned.
    pub fn check(&mut self, source: IpAddr, agent: Option<&str>, now: Millis) -> Verdict {
        let key = source_key(source);
        self.prune(now);
        if let Some(s) = self.strikes.get_mut(&key) {
            self.by_age.remove(&(s.last_seen, key));
            s.last_seen = s.last_seen.max(now);
            self.by_age.insert((s.last_seen, key));
            if s.locked_until > now {
                return Verdict::Locked(Lock::Address {
                    until: s.locked_until,
                });
            }
            // A lock that has passed is paid for: counting (and slowing down) starts afresh.
            if s.locked_until > 0 {
                *s = Strikes {
                    failures: 0,
                    since: now,
                    window: 0,
                    window_since: now,
                    locked_until: 0,
                    last_seen: s.last_seen,
                };
            }
        }
        if let Some(a) = agent.and_then(|a| self.agents.get_mut(a))
            && a.locked_until > 0
            && a.locked_until <= now
        {
            a.locked_until = 0;
            a.window = 0;
            a.window_since = now;
        }
        if let Some(a) = agent.and_then(|a| self.agents.get(a))
            && a.locked_until > now
            && !a
                .known
                .iter()
                .any(|(ip, at)| *ip == key && now.saturating_sub(*at) < KNOWN_FOR)
        {
            return Verdict::Locked(Lock::Agent {
                until: a.locked_until,
            });
        }
        let delay = self
            .strikes
            .get(&key)
            .map_or(0, |s| delay_after(s.failures));
        Verdict::Check { delay }
    }

    /// Counts a failure of `source` (for `agent`, when configured) at `now`; the failures of
    /// the address counted towards its delay so far.
    pub fn failed(&mut self, source: IpAddr, agent: Option<&str>, now: Millis) -> u32 {
        if let Some(agent) = agent {
            let a = self.agent_entry(agent, now);
            if now.saturating_sub(a.window_since) >= LOCK_WINDOW {
                a.window = 0;
                a.window_since = now;
            }
            a.window = a.window.saturating_add(1);
            if a.window >= AGENT_LOCK_FAILURES && a.locked_until <= now {
                a.locked_until = now + LOCK_WINDOW;
                tracing::warn!(
                    agent,
                    failures = a.window,
                    "too many failed logins for this agent: locked for 10 minutes, but from \
                     the addresses it logged in from"
                );
            }
        }
        let key = source_key(source);
        let s = self.address_entry(key, now);
        // Below the threshold, only failures within one window add up.
        if s.failures < FREE_FAILURES && now.saturating_sub(s.since) > FAILURE_WINDOW {
            s.failures = 0;
            s.since = now;
        }
        s.failures = s.failures.saturating_add(1);
        if now.saturating_sub(s.window_since) >= LOCK_WINDOW {
            s.window = 0;
            s.window_since = now;
        }
        s.window = s.window.saturating_add(1);
        if s.window >= ADDRESS_LOCK_FAILURES && s.locked_until <= now {
            s.locked_until = now + LOCK_WINDOW;
            tracing::warn!(addr = %key, failures = s.window,
                "too many failed logins from this address: locked for 10 minutes");
        }
        s.failures
    }

    /// `source` logged in as `agent` at `now`: its delay is cleared (not its count towards
    /// the lock), and the agent's lock spares it from now on.
    pub fn succeeded(&mut self, source: IpAddr, agent: Option<&str>, now: Millis) {
        let key = source_key(source);
        if let Some(s) = self.strikes.get_mut(&key) {
            s.failures = 0;
            s.since = now;
        }
        if let Some(agent) = agent {
            let a = self.agent_entry(agent, now);
            a.known.retain(|(ip, _)| *ip != key);
            a.known.push((key, now));
            if a.known.len() > KNOWN_ADDRESSES {
                a.known.remove(0);
            }
        }
    }

    /// Forgets the failures of `source` altogether.
    pub fn forget(&mut self, source: IpAddr) {
        let key = source_key(source);
        if let Some(s) = self.strikes.remove(&key) {
            self.by_age.remove(&(s.last_seen, key));
        }
    }

    /// Addresses remembered now.
    pub fn remembered(&self) -> usize {
        self.strikes.len()
    }

    /// Agents remembered now.
    pub fn agents_remembered(&self) -> usize {
        self.agents.len()
    }

    /// Forgets the addresses quiet for [`FORGET_AFTER`] and the agents quiet for
    /// [`KNOWN_FOR`] (oldest first, so this stops at the first recent one).
    fn prune(&mut self, now: Millis) {
        while let Some(&(at, ip)) = self.by_age.first() {
            if now.saturating_sub(at) < FORGET_AFTER {
                break;
            }
            self.by_age.remove(&(at, ip));
            self.strikes.remove(&ip);
        }
        while let Some((at, _)) = self.agents_by_age.first() {
            if now.saturating_sub(*at) < KNOWN_FOR {
                break;
            }
            if let Some((_, agent)) = self.agents_by_age.pop_first() {
                self.agents.remove(&agent);
            }
        }
    }

    fn address_entry(&mut self, key: IpAddr, now: Millis) -> &mut Strikes {
        self.prune(now);
        if let Some(s) = self.strikes.get(&key) {
            self.by_age.remove(&(s.last_seen, key));
        } else {
            while self.strikes.len() >= MAX_ADDRESSES {
                let Some((_, ip)) = self.by_age.pop_first() else {
                    break;
                };
                self.strikes.remove(&ip);
            }
        }
        let s = self.strikes.entry(key).or_insert(Strikes {
            failures: 0,
            since: now,
            window: 0,
            window_since: now,
            locked_until: 0,
            last_seen: now,
        });
        s.last_seen = s.last_seen.max(now);
        self.by_age.insert((s.last_seen, key));
        s
    }

    fn agent_entry(&mut self, agent: &str, now: Millis) -> &mut AgentStrikes {
        if let Some(a) = self.agents.get(agent) {
            self.agents_by_age.remove(&(a.last_seen, agent.to_string()));
        } else {
            while self.agents.len() >= MAX_AGENTS {
                let Some((_, oldest)) = self.agents_by_age.pop_first() else {
                    break;
                };
                self.agents.remove(&oldest);
            }
        }
        let a = self
            .agents
            .entry(agent.to_string())
            .or_insert_with(|| AgentStrikes {
                window_since: now,
                ..AgentStrikes::default()
            });
        a.last_seen = a.last_seen.max(now);
        self.agents_by_age.insert((a.last_seen, agent.to_string()));
        a
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

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn delay(l: &mut FailureLimiter, source: IpAddr, agent: Option<&str>, now: Millis) -> Millis {
        match l.check(source, agent, now) {
            Verdict::Check { delay } => delay,
            Verdict::Locked(lock) => panic!("locked: {lock:?}"),
        }
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_most() {
        let mut l = FailureLimiter::new();
        let source = ip("192.0.2.7");
        let t: Millis = 1_000;
        let mut delays = Vec::new();
        for i in 0..9 {
            delays.push(delay(&mut l, source, None, t + i * 1_000));
            l.failed(source, None, t + i * 1_000);
        }
        let secs: Vec<Millis> = delays.iter().map(|d| d / 1_000).collect();
        assert_eq!(secs, [0, 0, 0, 1, 2, 4, 8, 16, 16]);
        l.forget(source);
        assert_eq!(delay(&mut l, source, None, t + 10_000), 0);
        // Another address of the same IPv6 /64 shares the count.
        let a = ip("2001:db8::1");
        let b = ip("2001:db8::2");
        for _ in 0..4 {
            l.failed(a, None, t);
        }
        assert_eq!(delay(&mut l, b, None, t), FIRST_DELAY * 2);
    }

    #[test]
    fn ten_failures_lock_the_address_for_the_window_even_for_the_right_password() {
        let mut l = FailureLimiter::new();
        let (attacker, other) = (ip("203.0.113.9"), ip("198.51.100.1"));
        let t: Millis = 5_000;
        for i in 0..ADDRESS_LOCK_FAILURES {
            let now = t + Millis::from(i) * 1_000;
            assert!(matches!(
                l.check(attacker, Some("2001"), now),
                Verdict::Check { .. }
            ));
            l.failed(attacker, Some("2001"), now);
        }
        let locked_at = t + Millis::from(ADDRESS_LOCK_FAILURES - 1) * 1_000;
        let until = locked_at + LOCK_WINDOW;
        assert_eq!(
            l.check(attacker, Some("2002"), locked_at + 1),
            Verdict::Locked(Lock::Address { until })
        );
        // Another address is not concerned.
        assert_eq!(delay(&mut l, other, Some("2001"), locked_at + 1), 0);
        // Still locked just before the window passes, not after.
        assert!(matches!(
            l.check(attacker, None, until - 1),
            Verdict::Locked(_)
        ));
        assert!(matches!(
            l.check(attacker, None, until),
            Verdict::Check { .. }
        ));
    }

    #[test]
    fn a_success_clears_the_delay_but_not_the_count_towards_the_lock() {
        let mut l = FailureLimiter::new();
        let a = ip("203.0.113.9");
        for _ in 0..5 {
            l.failed(a, Some("2001"), 1_000);
        }
        assert!(delay(&mut l, a, None, 1_000) > 0);
        l.succeeded(a, Some("2002"), 1_000);
        assert_eq!(delay(&mut l, a, None, 1_000), 0);
        for _ in 0..5 {
            l.failed(a, Some("2001"), 2_000);
        }
        assert!(matches!(
            l.check(a, Some("2002"), 2_000),
            Verdict::Locked(Lock::Address { .. })
        ));
    }

    #[test]
    fn twenty_failures_for_an_agent_lock_it_but_for_where_it_logged_in_from() {
        let mut l = FailureLimiter::new();
        let phone = ip("10.0.0.5");
        l.succeeded(phone, Some("2001"), 1_000);
        // 20 failures from 4 addresses, 5 each (no address is locked).
        let t: Millis = 60_000;
        for i in 0..AGENT_LOCK_FAILURES {
            let source = ip(&format!("203.0.113.{}", i % 4));
            l.failed(source, Some("2001"), t);
        }
        let until = t + LOCK_WINDOW;
        // A new address is refused unchecked, the right password or not ...
        assert_eq!(
            l.check(ip("198.51.100.7"), Some("2001"), t + 1),
            Verdict::Locked(Lock::Agent { until })
        );
        // ... the phone's own address is still checked, and other agents are not locked.
        assert!(matches!(
            l.check(phone, Some("2001"), t + 1),
            Verdict::Check { .. }
        ));
        assert!(matches!(
            l.check(ip("198.51.100.7"), Some("2002"), t + 1),
            Verdict::Check { .. }
        ));
        // Until the window passes.
        assert!(matches!(
            l.check(ip("198.51.100.7"), Some("2001"), until),
            Verdict::Check { .. }
        ));
        // Failures further apart than the window do not add up.
        let mut l = FailureLimiter::new();
        for i in 0..AGENT_LOCK_FAILURES * 2 {
            let now = Millis::from(i) * (LOCK_WINDOW / 18);
            l.failed(ip(&format!("203.0.113.{}", i % 8)), Some("2001"), now);
        }
        assert!(matches!(
            l.check(ip("198.51.100.7"), Some("2001"), LOCK_WINDOW * 3),
            Verdict::Check { .. }
        ));
    }

    #[test]
    fn the_tables_are_bounded() {
        let mut l = FailureLimiter::new();
        let first = ip("10.200.0.0");
        for _ in 0..3 {
            l.failed(first, None, 1_000);
        }
        for i in 1..=MAX_ADDRESSES as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(ip, None, 1_000 + Millis::from(i));
        }
        assert_eq!(l.remembered(), MAX_ADDRESSES);
        assert_eq!(
            delay(&mut l, first, None, 20_000),
            0,
            "the oldest went first"
        );
        for i in 0..=MAX_AGENTS {
            l.failed(first, Some(&format!("a{i}")), 30_000 + i as Millis);
        }
        assert_eq!(l.agents_remembered(), MAX_AGENTS);
        // Quiet ones are forgotten.
        l.check(first, None, 30_000 + KNOWN_FOR + MAX_AGENTS as Millis + 1);
        assert_eq!((l.remembered(), l.agents_remembered()), (0, 0));
    }
}
