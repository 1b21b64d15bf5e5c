//! Supervisors' passwords: HTTP Basic checked against `[supervisors.ID] ha1`
//! (MD5(ID:realm:password)), through the one login limiter of the HTTP side that the agents'
//! logins use ([`crate::agent_api`]): slowed down after failures, then locked per address
//! and per supervisor.

use crate::agent_api::{self, Login};
use crate::http_limits::HttpStats;
use crate::services::Services;
use axum::http::HeaderMap;
use ivr_sansio::Clock;
use ivr_sip::limiter::{FailureLimiter, Verdict};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The address failures of [`Passwords::check_unslowed`] count under: a request checked
/// without its peer's address (all such failures together, so a guesser there is locked out
/// after a few tries, like one address).
const NO_ADDRESS: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The supervisors' passwords and the limiter.
#[derive(Clone)]
pub struct Passwords {
    /// The live configuration (`[supervisors.*]`, the realm).
    pub services: Services,
    /// The HTTP side's limiter (shared with the agents' logins).
    pub limiter: Arc<Mutex<FailureLimiter>>,
    /// The time of the failures.
    pub clock: Clock,
}

/// The limiter's name for a supervisor (`supervisor:ID`: ids have no `:`, so no agent's
/// lock is a supervisor's).
fn limited(id: &str) -> String {
    format!("supervisor:{id}")
}

impl Passwords {
    fn limiter<T>(&self, f: impl FnOnce(&mut FailureLimiter) -> T) -> T {
        let mut l = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut l)
    }

    /// Whether `id` is a configured supervisor.
    pub fn configured(&self, id: &str) -> bool {
        self.services
            .live
            .current()
            .config
            .supervisors
            .contains_key(id)
    }

    /// Whether `user` and `password` are a supervisor's (constant time on the hash).
    fn matches(&self, user: &str, password: &str) -> bool {
        let deployment = self.services.live.current();
        let config = &deployment.config;
        let Some(s) = config.supervisors.get(user) else {
            return false;
        };
        if !s.has_valid_ha1() {
            return false;
        }
        let ha1 = ivr_sip::registrar::ha1(user, &config.server.realm, password);
        ivr_sip::registrar::ct_eq(ha1.as_bytes(), s.ha1.to_ascii_lowercase().as_bytes())
    }

    /// A Basic login from `peer`: without credentials no attempt (denied, nothing counted);
    /// else the limiter first (refused unchecked while locked), then the password after the
    /// delay it asks for, the result told to the limiter. Granted: the supervisor's id.
    pub async fn login(&self, headers: &HeaderMap, peer: SocketAddr) -> (Login, String) {
        let Some((user, password)) = agent_api::basic_credentials(headers) else {
            return (Login::Denied, String::new());
        };
        let name = self.configured(&user).then(|| limited(&user));
        let ip = peer.ip();
        let now = self.clock.now();
        let delay = match self.limiter(|l| l.check(ip, name.as_deref(), now)) {
            Verdict::Check { delay } => Duration::from_millis(delay.unsigned_abs()),
            Verdict::Locked(lock) => {
                let (ivr_sip::limiter::Lock::Address { until }
                | ivr_sip::limiter::Lock::Agent { until }) = lock;
                HttpStats::count(&self.services.http.logins_refused);
                tracing::info!(supervisor = %user, addr = %ip, "supervisor login refused unchecked: too many failures");
                let wait = Duration::from_millis((until - now).unsigned_abs());
                return (Login::Refused(wait), user);
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ok = self.matches(&user, &password);
        let now = self.clock.now();
        self.limiter(|l| {
            if ok {
                l.succeeded(ip, name.as_deref(), now);
            } else {
                let failures = l.failed(ip, name.as_deref(), now);
                tracing::info!(supervisor = %user, addr = %ip, failures, "supervisor login refused");
            }
        });
        if ok {
            (Login::Granted, user)
        } else {
            (Login::Denied, user)
        }
    }

    /// A Basic login checked at once, without the peer's address (for
    /// [`super::Supervisors::who`]): refused while the limiter locks the supervisor or would
    /// slow the attempt down; failures counted for the supervisor and under one shared
    /// address.
    pub fn check_unslowed(&self, headers: &HeaderMap) -> Option<String> {
        let (user, password) = agent_api::basic_credentials(headers)?;
        let name = self.configured(&user).then(|| limited(&user));
        let now = self.clock.now();
        match self.limiter(|l| l.check(NO_ADDRESS, name.as_deref(), now)) {
            Verdict::Check { delay } if delay <= 0 => {}
            _ => {
                HttpStats::count(&self.services.http.logins_refused);
                return None;
            }
        }
        let ok = self.matches(&user, &password);
        self.limiter(|l| {
            if ok {
                l.succeeded(NO_ADDRESS, name.as_deref(), now);
            } else {
                l.failed(NO_ADDRESS, name.as_deref(), now);
            }
        });
        ok.then_some(user)
    }
}
