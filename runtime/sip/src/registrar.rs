//! The registrar of agents' phones, sans-IO: `REGISTER` with HTTP digest authentication
//! (RFC 3261 §10.3 and §22, RFC 7616/2617 with MD5, `qop=auth` or none), one binding per agent.
//!
//! - An agent is `[agents.ID]` of `ivr.toml`; its phone registers the AOR `sip:ID@<ivr host>`
//!   and answers the challenge with the digest username `ID` and its password, of which we only
//!   know `ha1` = MD5(ID:realm:password).
//! - Nonces are stateless: a timestamp, a random salt and an HMAC-SHA-256 of both under a
//!   random secret of this registrar. A nonce older than 5 minutes is stale: a correct answer with it gets a new
//!   challenge with `stale=true`; a wrong answer gets 403, as do unknown agents (the two are
//!   not told apart, and the comparison takes the same time).
//! - Replays are refused: with `qop=auth` each use of a nonce must carry a higher `nc` than
//!   the last one accepted, and without qop a nonce serves one REGISTER. A replayed answer
//!   (a captured Authorization sent again, to bind another Contact) gets a new challenge with
//!   `stale=true`, which a real phone answers at once. The nonces in use are remembered until
//!   they are stale.
//! - Repeated failures are slowed down per source address (IPv6: per /64): after 3 within
//!   60 s, every further REGISTER from there is answered only after a delay that doubles with
//!   each further failure, from 1 s up to 16 s; a success clears it; an address quiet for 10
//!   minutes is forgotten; at most 10,000 addresses are remembered (the oldest go first).
//! - Brute force is stopped ([`crate::limiter`]): 10 failures from one address within 10
//!   minutes lock the address for 10 minutes, and 20 failures for one agent from any addresses
//!   lock that agent (but for the addresses it logged in from) for 10 minutes; a locked
//!   REGISTER gets 403 at once, without its credentials being looked at.
//!
//! Nothing here reads a clock or touches a socket: [`Registrar::handle`] takes the time and
//! the source, and returns the response, how long to hold it back, and the binding change
//! for the user-agent core to carry out.

use super::message::{self, Extra};
pub use crate::limiter::{
    ADDRESS_LOCK_FAILURES, AGENT_LOCK_FAILURES, FAILURE_WINDOW, FIRST_DELAY, FORGET_AFTER,
    FREE_FAILURES, LOCK_WINDOW, MAX_ADDRESSES, MAX_DELAY,
};
use crate::limiter::{FailureLimiter, Lock, Verdict};
use crate::peer::Peer;
use hmac::{Hmac, Mac};
use ivr_sansio::Millis;
use md5::{Digest, Md5};
use rsip::Request;
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A nonce is stale this long after it was made (ms).
pub const NONCE_LIFETIME: Millis = 5 * 60_000;
/// The nonces in use are pruned of stale ones once they are this many (or twice as many as
/// after the last pruning).
const PRUNE_USED_AT: usize = 1024;
/// Granted registration lifetimes: the default and the bounds.
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Shortest granted registration (shorter requests get 423 Interval Too Brief).
pub const MIN_EXPIRES: u32 = 60;
/// Longest granted registration (longer requests are lowered to it).
pub const MAX_EXPIRES: u32 = 3600;
/// The To-tag of our REGISTER responses.
const TO_TAG: &str = "ivr-reg";

/// A change of an agent's binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The agent id (`[agents.ID]`, the AOR's user).
    pub agent: String,
    /// The Contact URI the agent registered.
    pub contact: String,
    /// The granted lifetime (ms); zero when the binding was removed.
    pub expires: Millis,
}

/// A binding change as the user-agent core reports it to the server (the ACD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The agent id.
    pub agent: String,
    /// The Contact URI it registered.
    pub contact: String,
    /// Where the REGISTER came from, with its transport (and TCP connection): behind NAT,
    /// this is where requests to the agent have to go.
    pub peer: Peer,
    /// The granted lifetime (ms); zero when the binding was removed.
    pub expires: Millis,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReply {
    /// The status code (200, 400, 401, 403, 405).
    pub code: u16,
    /// Headers of the response beyond the ones copied from the request
    /// (`WWW-Authenticate`, `Contact`, `Expires`).
    pub headers: Vec<(&'static str, String)>,
    /// Hold the response back this long, in ms (repeated failures from the same address).
    pub delay: Millis,
    /// The binding change, when there is one.
    pub binding: Option<Binding>,
    /// Why the REGISTER was refused, when it was (403, or 400 for broken credentials).
    pub refused: Option<Refusal>,
}

/// Why a REGISTER was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong or unusable credentials, or an unknown agent (a failure, counted).
    Failed,
    /// Its address is locked: refused without looking at the credentials.
    AddressLocked,
    /// Its agent is locked and the address is not one it logged in from: refused without
    /// looking at the credentials.
    AgentLocked,
}

impl Refusal {
    /// Every refusal, in the order of [`Refusals::counts`].
    pub const ALL: [Refusal; 3] = [
        Refusal::Failed,
        Refusal::AddressLocked,
        Refusal::AgentLocked,
    ];

    /// Its name in `/metrics` (`reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Failed => "failed",
            Refusal::AddressLocked => "address_locked",
            Refusal::AgentLocked => "agent_locked",
        }
    }
}

/// REGISTERs refused since start, by [`Refusal`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Wrong credentials and the like.
    pub failed: u64,
    /// From a locked address.
    pub address_locked: u64,
    /// For a locked agent.
    pub agent_locked: u64,
}

impl Refusals {
    /// The counts in the order of [`Refusal::ALL`].
    pub fn counts(&self) -> [u64; 3] {
        [self.failed, self.address_locked, self.agent_locked]
    }

    fn count(&mut self, r: Refusal) {
        let n = match r {
            Refusal::Failed => &mut self.failed,
            Refusal::AddressLocked => &mut self.address_locked,
            Refusal::AgentLocked => &mut self.agent_locked,
        };
        *n = n.saturating_add(1);
    }
}

impl RegisterReply {
    /// The response to `req`, received from `source`, as bytes (see [`message::response`]).
    pub fn response(&self, req: &Request, source: SocketAddr) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (*n, &**v)).collect();
        message::response(
            req,
            source,
            self.code,
            &Extra {
                to_tag: Some(TO_TAG),
                headers: &headers,
                ..Extra::default()
            },
        )
    }
}

/// One agent's current binding.
#[derive(Debug, Clone)]
struct Bound {
    contact: String,
    until: Millis,
}

/// The registrar: credentials, bindings, and failures per address.
pub struct Registrar {
    realm: String,
    /// Agent id → ha1 (lowercase hex).
    credentials: HashMap<String, String>,
    secret: [u8; 32],
    /// Nonce timestamps count milliseconds from the first request seen.
    origin: Option<Millis>,
    bindings: HashMap<String, Bound>,
    /// Failures per address and per agent.
    limiter: FailureLimiter,
    /// REGISTERs refused since start.
    refusals: Refusals,
    /// Nonces answered correctly → the highest `nc` accepted (0: used without qop).
    used: HashMap<String, u32>,
    /// Stale entries of `used` are dropped when it grows past this.
    prune_at: usize,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("realm", &self.realm)
            .field("agents", &self.credentials.len())
            .field("bindings", &self.bindings.len())
            .field("addresses", &self.limiter.remembered())
            .finish_non_exhaustive()
    }
}

/// MD5 of the parts joined with `:`, as 32 lowercase hex digits.
pub(crate) fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// `ha1` of an agent: MD5(id:realm:password), 32 lowercase hex digits.
pub fn ha1(agent: &str, realm: &str, password: &str) -> String {
    md5_hex(&[agent, realm, password])
}

/// Equality that takes the same time wherever the first difference is.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A quoted-string as written in a header.
fn quoted(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The parameters of a `Digest` credentials value (names lowercased, quotes removed); `None`
/// for another scheme, a repeated parameter or broken syntax.
fn digest_params(value: &str) -> Option<HashMap<String, String>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut v = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => v.push(chars.next()?),
                    c => v.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                v.push(c);
                chars.next();
            }
        }
        if params.insert(name, v).is_some() {
            return None;
        }
    }
    Some(params)
}

/// The elements of a comma-separated header value, commas inside quotes and `<>` kept.
fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quote, mut angle, mut escape) = (0, false, false, false);
    for (i, c) in value.char_indices() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' if quote => escape = true,
            '"' => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !quote && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// How an INVITE from an agent's phone authenticated ([`Registrar::authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteAuth {
    /// A registered agent, authenticated.
    Agent(String),
    /// No (usable or fresh) credentials: answer 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// Refused with this status (403: wrong, unknown, locked or not logged in; 400).
    Refused(u16),
}

/// How a request came out.
enum Outcome {
    /// Answered; not a failure (challenges, 200, a stale nonce).
    Fine(u16, Vec<(&'static str, String)>, Option<Binding>),
    /// A failed attempt (wrong or unusable credentials): counted against the address.
    Failed(u16, &'static str),
}

impl Registrar {
    /// A registrar for `realm` with `credentials`: agent id → ha1 (32 hex digits).
    pub fn new(realm: impl Into<String>, credentials: HashMap<String, String>) -> Registrar {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&message::random_u64().to_le_bytes());
            }
        }
        let mut r = Registrar {
            realm: String::new(),
            credentials: HashMap::new(),
            secret,
            origin: None,
            bindings: HashMap::new(),
            limiter: FailureLimiter::new(),
            refusals: Refusals::default(),
            used: HashMap::new(),
            prune_at: PRUNE_USED_AT,
        };
        r.set_credentials(realm, credentials);
        r
    }

    /// The realm of our challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Replaces the realm and the credentials (hot reload). Bindings of agents that are no
    /// longer configured are dropped; their ids come back.
    pub fn set_credentials(
        &mut self,
        realm: impl Into<String>,
        credentials: HashMap<String, String>,
    ) -> Vec<String> {
        self.realm = realm.into();
        self.credentials = credentials
            .into_iter()
            .map(|(id, h)| (id, h.trim().to_ascii_lowercase()))
            .collect();
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|a| !self.credentials.contains_key(*a))
            .cloned()
            .collect();
        for a in &gone {
            self.bindings.remove(a);
        }
        gone
    }

    /// The agent's current binding (Contact URI and time left in ms), if any.
    pub fn binding(&self, agent: &str, now: Millis) -> Option<(&str, Millis)> {
        self.bindings
            .get(agent)
            .filter(|b| b.until > now)
            .map(|b| (b.contact.as_str(), b.until - now))
    }

    /// Answers a REGISTER received from `source` at `now`.
    pub fn handle(&mut self, req: &Request, source: IpAddr, now: Millis) -> RegisterReply {
        if req.method != rsip::Method::Register {
            return RegisterReply {
                code: 405,
                headers: vec![("Allow", message::ALLOW.to_string())],
                delay: 0,
                binding: None,
                refused: None,
            };
        }
        let agent = message::value(&req.headers, "To")
            .map(|to| message::user_of(message::uri_of(to)).to_string())
            .unwrap_or_default();
        // Only configured agents are counted per agent: unknown names take no room.
        let known = self
            .credentials
            .contains_key(&agent)
            .then_some(agent.as_str());
        let delay = match self.limiter.check(source, known, now) {
            Verdict::Check { delay } => delay,
            Verdict::Locked(lock) => {
                let refusal = match lock {
                    Lock::Address { .. } => Refusal::AddressLocked,
                    Lock::Agent { .. } => Refusal::AgentLocked,
                };
                self.refusals.count(refusal);
                tracing::debug!(agent = %agent, addr = %source, ?lock, "REGISTER refused unchecked");
                return RegisterReply {
                    code: 403,
                    headers: Vec::new(),
                    delay: 0,
                    binding: None,
                    refused: Some(refusal),
                };
            }
        };
        match self.decide(req, &agent, now) {
            Outcome::Fine(code, headers, binding) => {
                if code == 200 {
                    self.limiter.succeeded(source, known, now);
                }
                RegisterReply {
                    code,
                    headers,
                    delay,
                    binding,
                    refused: None,
                }
            }
            Outcome::Failed(code, why) => {
                let failures = self.limiter.failed(source, known, now);
                self.refusals.count(Refusal::Failed);
                if failures == FREE_FAILURES {
                    tracing::warn!(agent = %agent, addr = %source, why, failures,
                        "REGISTER refused; further REGISTERs from this address are slowed down");
                } else {
                    tracing::info!(agent = %agent, addr = %source, why, failures, "REGISTER refused");
                }
                RegisterReply {
                    code,
                    headers: Vec::new(),
                    delay,
                    binding: None,
                    refused: Some(Refusal::Failed),
                }
            }
        }
    }

    /// REGISTERs refused since start.
    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    fn millis(&mut self, now: Millis) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        u64::try_from(now.saturating_sub(origin)).unwrap_or(0)
    }

    fn mac(&self, ts: u64, salt: u64) -> Hmac<Sha256> {
        // Any key length is accepted by HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&ts.to_be_bytes());
        mac.update(&salt.to_be_bytes());
        mac.update(self.realm.as_bytes());
        mac
    }

    /// A new nonce: its time, a random salt (two challenges in one millisecond differ), and
    /// their HMAC.
    fn nonce(&mut self, now: Millis) -> String {
        let ts = self.millis(now);
        let salt = message::random_u64();
        let tag = self.mac(ts, salt).finalize().into_bytes();
        format!("{ts:016x}{salt:016x}{}", hex(&tag[..16]))
    }

    /// Whether a nonce is ours and still fresh: `None` when it is not ours at all.
    fn nonce_fresh(&mut self, nonce: &str, now: Millis) -> Option<bool> {
        if nonce.len() != 64 {
            return None;
        }
        let ts = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let salt = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let tag = unhex(nonce.get(32..)?)?;
        self.mac(ts, salt).verify_truncated_left(&tag).ok()?;
        let age = self.millis(now).checked_sub(ts)?;
        Some(i128::from(age) <= i128::from(NONCE_LIFETIME))
    }

    fn challenge(&mut self, stale: bool, now: Millis) -> Outcome {
        let mut value = format!(
            "Digest realm={}, nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            quoted(&self.realm),
            self.nonce(now)
        );
        if stale {
            value.push_str(", stale=true");
        }
        Outcome::Fine(401, vec![("WWW-Authenticate", value)], None)
    }

    fn decide(&mut self, req: &Request, agent: &str, now: Millis) -> Outcome {
        match self.check_digest(req, agent, "REGISTER", now) {
            Ok(()) => self.bind(req, agent, now),
            Err(o) => o,
        }
    }

    /// Authenticates an INVITE from an agent's phone (a call it places: the consultation of
    /// an attended transfer) with the same digest credentials as its REGISTER: the agent is
    /// the From user, the digest username must be it, and the agent must be registered (a
    /// logged-in agent). Failures count against the address and the agent like REGISTER's,
    /// and a locked address or agent is refused unchecked; the answer is never held back.
    pub fn authenticate(&mut self, req: &Request, source: IpAddr, now: Millis) -> InviteAuth {
        let agent = message::value(&req.headers, "From")
            .map(|from| message::user_of(message::uri_of(from)).to_string())
            .unwrap_or_default();
        let known = self
            .credentials
            .contains_key(&agent)
            .then_some(agent.as_str());
        if let Verdict::Locked(_) = self.limiter.check(source, known, now) {
            return InviteAuth::Refused(403);
        }
        let method = req.method.to_string();
        match self.check_digest(req, &agent, &method, now) {
            Ok(()) => {
                self.limiter.succeeded(source, known, now);
                if self.binding(&agent, now).is_none() {
                    tracing::info!(agent = %agent, "INVITE from an agent who is not logged in");
                    return InviteAuth::Refused(403);
                }
                InviteAuth::Agent(agent)
            }
            Err(Outcome::Fine(401, headers, _)) => InviteAuth::Challenge(
                headers
                    .into_iter()
                    .map(|(_, v)| v)
                    .next()
                    .unwrap_or_default(),
            ),
            Err(Outcome::Fine(code, ..)) => InviteAuth::Refused(code),
            Err(Outcome::Failed(code, why)) => {
                self.limiter.failed(source, known, now);
                self.refusals.count(Refusal::Failed);
                tracing::info!(agent = %agent, addr = %source, why, "INVITE of an agent refused");
                InviteAuth::Refused(code)
            }
        }
    }

    /// Checks the digest credentials of `req` (method `method`) for `agent`: `Ok` when they
    /// are right and fresh, else the challenge or the failure to answer with.
    fn check_digest(
        &mut self,
        req: &Request,
        agent: &str,
        method: &str,
        now: Millis,
    ) -> Result<(), Outcome> {
        // Credentials for our realm, if the request has any.
        let mut creds = None;
        for v in message::values(&req.headers, "Authorization") {
            match digest_params(v) {
                Some(p) if p.get("realm").is_some_and(|r| *r == self.realm) => {
                    creds = Some(p);
                    break;
                }
                Some(_) => {}
                None if v.trim_start().to_ascii_lowercase().starts_with("digest") => {
                    return Err(Outcome::Failed(400, "unreadable Authorization"));
                }
                None => {}
            }
        }
        let Some(p) = creds else {
            return Err(self.challenge(false, now));
        };
        if p.get("algorithm")
            .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            return Err(self.challenge(false, now));
        }
        let field = |n: &str| p.get(n).map(String::as_str);
        let (Some(username), Some(nonce), Some(uri), Some(response)) = (
            field("username"),
            field("nonce"),
            field("uri"),
            field("response"),
        ) else {
            return Err(Outcome::Failed(400, "incomplete Authorization"));
        };
        let a2 = md5_hex(&[method, uri]);
        let known = self.credentials.get(agent).filter(|_| username == agent);
        // Unknown agents are checked against a made-up ha1, so that they take as long.
        let dummy;
        let ha1 = match known {
            Some(h) => h.as_str(),
            None => {
                dummy = md5_hex(&[username, &self.realm, "\0"]);
                dummy.as_str()
            }
        };
        let (expected, count) = match field("qop") {
            None => (md5_hex(&[ha1, nonce, &a2]), 0),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (field("nc"), field("cnonce")) else {
                    return Err(Outcome::Failed(400, "qop=auth without nc or cnonce"));
                };
                let Some(count) = u32::from_str_radix(nc, 16).ok().filter(|n| *n > 0) else {
                    return Err(Outcome::Failed(400, "nc is not a count"));
                };
                (md5_hex(&[ha1, nonce, nc, cnonce, q, &a2]), count)
            }
            Some(_) => return Err(Outcome::Failed(400, "unsupported qop")),
        };
        let matches = ct_eq(
            response.to_ascii_lowercase().as_bytes(),
            expected.as_bytes(),
        );
        if known.is_none() {
            return Err(Outcome::Failed(
                403,
                if username == agent {
                    "unknown agent"
                } else {
                    "digest username is not the AOR's user"
                },
            ));
        }
        if !matches {
            return Err(Outcome::Failed(403, "wrong credentials"));
        }
        // The right answer to a nonce that is old (or from before a restart): ask again.
        if self.nonce_fresh(nonce, now) != Some(true) {
            return Err(self.challenge(true, now));
        }
        // The right answer once more (a replay): ask again, without counting a failure.
        if !self.first_use(nonce, count, now) {
            tracing::info!(
                agent,
                method,
                "a nonce count already used: challenged again"
            );
            return Err(self.challenge(true, now));
        }
        Ok(())
    }

    /// Records the use of `nonce` with `count` (0: without qop); false when that count, or a
    /// higher one, was used already (without qop: when the nonce was used at all).
    fn first_use(&mut self, nonce: &str, count: u32, now: Millis) -> bool {
        match self.used.get_mut(nonce) {
            Some(last) if count <= *last || count == 0 => return false,
            Some(last) => *last = count,
            None => {
                self.used.insert(nonce.to_string(), count);
            }
        }
        if self.used.len() >= self.prune_at {
            let mut used = std::mem::take(&mut self.used);
            used.retain(|n, _| self.nonce_fresh(n, now) == Some(true));
            self.used = used;
            self.prune_at = (self.used.len() * 2).max(PRUNE_USED_AT);
        }
        true
    }

    /// Applies the Contacts of an authenticated REGISTER.
    fn bind(&mut self, req: &Request, agent: &str, now: Millis) -> Outcome {
        let contacts: Vec<&str> = message::values(&req.headers, "Contact")
            .flat_map(split_list)
            .collect();
        let header_expires = match message::value(&req.headers, "Expires") {
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => return Outcome::Fine(400, Vec::new(), None),
            },
            None => None,
        };
        let mut change = None;
        let mut granted = None;
        if contacts.contains(&"*") {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Outcome::Fine(400, Vec::new(), None);
            }
            if let Some(b) = self.bindings.remove(agent) {
                change = Some(Binding {
                    agent: agent.to_string(),
                    contact: b.contact,
                    expires: 0,
                });
            }
        } else if let Some(first) = contacts.first() {
            if contacts.len() > 1 {
                tracing::debug!(
                    agent,
                    "REGISTER with several Contacts: the first one counts"
                );
            }
            let uri = message::uri_of(first).trim();
            let scheme = uri.split(':').next().unwrap_or_default();
            if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
                return Outcome::Fine(400, Vec::new(), None);
            }
            let asked = match message::param(first, "expires") {
                Some(v) => match v.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => return Outcome::Fine(400, Vec::new(), None),
                },
                None => header_expires.unwrap_or(DEFAULT_EXPIRES),
            };
            if asked == 0 {
                if self.bindings.get(agent).is_some_and(|b| b.contact == uri) {
                    self.bindings.remove(agent);
                    change = Some(Binding {
                        agent: agent.to_string(),
                        contact: uri.to_string(),
                        expires: 0,
                    });
                }
            } else if asked < MIN_EXPIRES {
                // RFC 3261 10.3: a registrar may shorten an interval, never lengthen it; one
                // below its minimum is refused with 423 and the minimum.
                return Outcome::Fine(423, vec![("Min-Expires", MIN_EXPIRES.to_string())], None);
            } else {
                let secs = asked.min(MAX_EXPIRES);
                let expires = Millis::from(secs) * 1_000;
                self.bindings.insert(
                    agent.to_string(),
                    Bound {
                        contact: uri.to_string(),
                        until: now + expires,
                    },
                );
                granted = Some(secs);
                change = Some(Binding {
                    agent: agent.to_string(),
                    contact: uri.to_string(),
                    expires,
                });
            }
        }
        let mut headers = Vec::new();
        if let Some((contact, left)) = self.binding(agent, now) {
            let secs = granted.map_or_else(|| (left + 999) / 1_000, Millis::from);
            headers.push(("Contact", format!("<{contact}>;expires={secs}")));
        } else {
            self.bindings.remove(agent);
        }
        if let Some(secs) = granted {
            headers.push(("Expires", secs.to_string()));
        }
        Outcome::Fine(200, headers, change)
    }

    /// Addresses remembered now (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.limiter.remembered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::SipMessage;

    const REALM: &str = "ivr";
    const AGENT: &str = "2001";
    const PASSWORD: &str = "s3cret";
    const URI: &str = "sip:127.0.0.1:5060";

    fn registrar() -> Registrar {
        let mut creds = HashMap::new();
        creds.insert(
            AGENT.to_string(),
            ha1(AGENT, REALM, PASSWORD).to_uppercase(),
        );
        Registrar::new(REALM, creds)
    }

    fn ip() -> IpAddr {
        "10.0.0.5".parse().expect("ip")
    }

    /// A REGISTER for `aor_user` with extra header lines.
    fn register(aor_user: &str, extra: &str) -> Request {
        let text = format!(
            "REGISTER {URI} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-r1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{aor_user}@127.0.0.1>;tag=f1\r\n\
             To: <sip:{aor_user}@127.0.0.1>\r\n\
             Call-ID: reg-1@10.0.0.5\r\n\
             CSeq: 1 REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match message::parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn header<'a>(reply: &'a RegisterReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn challenge_nonce(reply: &RegisterReply) -> String {
        assert_eq!(reply.code, 401, "{reply:?}");
        let www = header(reply, "WWW-Authenticate").expect("WWW-Authenticate");
        let p = digest_params(www).expect("digest challenge");
        assert_eq!(p.get("realm").map(String::as_str), Some(REALM));
        assert_eq!(p.get("algorithm").map(String::as_str), Some("MD5"));
        assert_eq!(p.get("qop").map(String::as_str), Some("auth"));
        p["nonce"].clone()
    }

    /// The Authorization a phone would send (qop=auth) on its first use of `nonce`.
    fn authorization(user: &str, password: &str, nonce: &str) -> String {
        authorization_nc(user, password, nonce, 1)
    }

    /// The Authorization a phone would send (qop=auth) on its `nc`th use of `nonce`.
    fn authorization_nc(user: &str, password: &str, nonce: &str, nc: u32) -> String {
        let h1 = ha1(user, REALM, password);
        let h2 = md5_hex(&["REGISTER", URI]);
        let nc = format!("{nc:08x}");
        let response = md5_hex(&[&h1, nonce, &nc, "0a4f113b", "auth", &h2]);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{URI}\", response=\"{response}\", algorithm=MD5, cnonce=\"0a4f113b\", \
             qop=auth, nc={nc}\r\n"
        )
    }

    /// An INVITE from agent `from` to `sip:2002@...` with extra header lines.
    fn invite(from: &str, extra: &str) -> Request {
        let text = format!(
            "INVITE sip:2002@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-i1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from}@127.0.0.1>;tag=c1\r\n\
             To: <sip:2002@127.0.0.1:5060>\r\n\
             Call-ID: consult-1@10.0.0.5\r\n\
             CSeq: 1 INVITE\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match message::parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    /// The Authorization of an INVITE to `sip:2002@127.0.0.1:5060` (qop=auth).
    fn invite_authorization(user: &str, password: &str, nonce: &str, nc: u32) -> String {
        let uri = "sip:2002@127.0.0.1:5060";
        let h1 = ha1(user, REALM, password);
        let h2 = md5_hex(&["INVITE", uri]);
        let nc = format!("{nc:08x}");
        let response = md5_hex(&[&h1, nonce, &nc, "77aa", "auth", &h2]);
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"77aa\", \
             qop=auth, nc={nc}\r\n"
        )
    }

    #[test]
    fn an_agents_invite_authenticates_like_its_register_and_only_when_logged_in() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let InviteAuth::Challenge(www) = r.authenticate(&invite(AGENT, ""), ip(), now) else {
            panic!("no challenge");
        };
        let nonce = digest_params(&www).expect("digest")["nonce"].clone();
        // Right credentials, but the agent is not registered (logged in): refused.
        let auth = invite_authorization(AGENT, PASSWORD, &nonce, 1);
        assert_eq!(
            r.authenticate(&invite(AGENT, &auth), ip(), now),
            InviteAuth::Refused(403)
        );
        let contact = "Contact: <sip:2001@10.0.0.5:5070>\r\n";
        let reg = r.handle(&register(AGENT, contact), ip(), now);
        let nonce_r = challenge_nonce(&reg);
        let ok = r.handle(
            &register(
                AGENT,
                &format!("{contact}{}", authorization(AGENT, PASSWORD, &nonce_r)),
            ),
            ip(),
            now,
        );
        assert_eq!(ok.code, 200);
        let auth = invite_authorization(AGENT, PASSWORD, &nonce, 2);
        assert_eq!(
            r.authenticate(&invite(AGENT, &auth), ip(), now),
            InviteAuth::Agent(AGENT.into())
        );
        // The same answer again (a replay) is challenged again; a wrong password, or the
        // credentials of another agent than the From, are refused.
        assert!(matches!(
            r.authenticate(&invite(AGENT, &auth), ip(), now),
            InviteAuth::Challenge(_)
        ));
        let wrong = invite_authorization(AGENT, "guess", &nonce, 3);
        assert_eq!(
            r.authenticate(&invite(AGENT, &wrong), ip(), now),
            InviteAuth::Refused(403)
        );
        let other = invite_authorization(AGENT, PASSWORD, &nonce, 4);
        assert_eq!(
            r.authenticate(&invite("2003", &other), ip(), now),
            InviteAuth::Refused(403)
        );
    }

    #[test]
    fn a_replayed_answer_is_challenged_again() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let phone = "Contact: <sip:2001@10.0.0.5:5070>\r\n";
        let first = format!("{phone}{}", authorization(AGENT, PASSWORD, &nonce));
        assert_eq!(r.handle(&register(AGENT, &first), ip(), now).code, 200);
        // The same answer from someone who captured it, to bind another Contact.
        let thief = "Contact: <sip:2001@203.0.113.9:5060>\r\n";
        let replay = format!("{thief}{}", authorization(AGENT, PASSWORD, &nonce));
        let later = now + 1_000;
        let refused = r.handle(&register(AGENT, &replay), ip(), later);
        assert_eq!(refused.binding, None, "{refused:?}");
        assert!(
            header(&refused, "WWW-Authenticate").is_some_and(|w| w.ends_with("stale=true")),
            "{refused:?}"
        );
        // The phone's next REGISTER counts on: accepted, as is a later one; an older count is not.
        let second = format!("{phone}{}", authorization_nc(AGENT, PASSWORD, &nonce, 2));
        assert_eq!(r.handle(&register(AGENT, &second), ip(), later).code, 200);
        let fifth = format!("{phone}{}", authorization_nc(AGENT, PASSWORD, &nonce, 5));
        assert_eq!(r.handle(&register(AGENT, &fifth), ip(), later).code, 200);
        let third = format!("{thief}{}", authorization_nc(AGENT, PASSWORD, &nonce, 3));
        assert_eq!(r.handle(&register(AGENT, &third), ip(), later).code, 401);
        // A replay is no failure: the address is not slowed down.
        assert_eq!(r.handle(&register(AGENT, &replay), ip(), later).delay, 0);
        // Without qop a nonce serves once.
        let fresh = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), later));
        let h1 = ha1(AGENT, REALM, PASSWORD);
        let response = md5_hex(&[&h1, &fresh, &md5_hex(&["REGISTER", URI])]);
        let legacy = format!(
            "{phone}Authorization: Digest username=\"{AGENT}\", realm=\"{REALM}\", \
             nonce=\"{fresh}\", uri=\"{URI}\", response=\"{response}\"\r\n"
        );
        assert_eq!(r.handle(&register(AGENT, &legacy), ip(), later).code, 200);
        assert_eq!(r.handle(&register(AGENT, &legacy), ip(), later).code, 401);
        // The nonces in use are forgotten once stale (and a stale one is challenged anyway).
        for i in 0..PRUNE_USED_AT {
            r.used.insert(format!("old-{i}"), 1);
        }
        let next = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), later));
        let ok = format!("{phone}{}", authorization(AGENT, PASSWORD, &next));
        assert_eq!(r.handle(&register(AGENT, &ok), ip(), later).code, 200);
        assert!(r.used.len() <= 3, "{} nonces remembered", r.used.len());
    }

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5.
        let h1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let h2 = md5_hex(&["GET", "/dir/index.html"]);
        let response = md5_hex(&[
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            &h2,
        ]);
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
        let p = digest_params(
            "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("params");
        assert_eq!(p["username"], "Mufasa");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["response"], "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn challenge_then_success() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let contact = "Contact: <sip:2001@10.0.0.5:5070;transport=udp>\r\n";
        let first = r.handle(&register(AGENT, contact), ip(), now);
        assert_eq!(first.delay, 0);
        assert_eq!(first.binding, None);
        let nonce = challenge_nonce(&first);
        let req = register(
            AGENT,
            &format!("{contact}{}", authorization(AGENT, PASSWORD, &nonce)),
        );
        let ok = r.handle(&req, ip(), now + 1_000);
        assert_eq!(ok.code, 200, "{ok:?}");
        assert_eq!(
            ok.binding,
            Some(Binding {
                agent: AGENT.into(),
                contact: "sip:2001@10.0.0.5:5070;transport=udp".into(),
                expires: 3_600_000,
            })
        );
        assert_eq!(
            header(&ok, "Contact"),
            Some("<sip:2001@10.0.0.5:5070;transport=udp>;expires=3600")
        );
        assert_eq!(header(&ok, "Expires"), Some("3600"));
        let bytes = String::from_utf8(ok.response(&req, "10.0.0.5:5070".parse().expect("addr")))
            .expect("utf8");
        assert!(bytes.starts_with("SIP/2.0 200 OK\r\n"), "{bytes}");
        assert!(
            bytes.contains("Contact: <sip:2001@10.0.0.5:5070;transport=udp>;expires=3600\r\n"),
            "{bytes}"
        );
        assert!(bytes.contains("To: <sip:2001@127.0.0.1>;tag="), "{bytes}");
        // Without qop (RFC 2069 style) works too, and a query lists the binding.
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now + 11_000));
        let h1 = ha1(AGENT, REALM, PASSWORD);
        let response = md5_hex(&[&h1, &nonce, &md5_hex(&["REGISTER", URI])]);
        let legacy = format!(
            "Authorization: Digest username=\"{AGENT}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{URI}\", response=\"{response}\"\r\n"
        );
        let q = r.handle(&register(AGENT, &legacy), ip(), now + 11_000);
        assert_eq!(q.code, 200, "{q:?}");
        assert_eq!(q.binding, None);
        assert_eq!(
            header(&q, "Contact"),
            Some("<sip:2001@10.0.0.5:5070;transport=udp>;expires=3590")
        );
        let www = r.handle(&register(AGENT, ""), ip(), now);
        assert!(header(&www, "WWW-Authenticate").is_some_and(|w| !w.contains("stale")));
    }

    #[test]
    fn wrong_password_and_unknown_agent_get_403() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let wrong = r.handle(
            &register(AGENT, &authorization(AGENT, "guess", &nonce)),
            ip(),
            now,
        );
        assert_eq!(
            (wrong.code, wrong.binding.clone()),
            (403, None),
            "{wrong:?}"
        );
        assert!(wrong.headers.is_empty());
        let unknown = r.handle(
            &register("2999", &authorization("2999", PASSWORD, &nonce)),
            ip(),
            now,
        );
        assert_eq!(unknown.code, 403, "{unknown:?}");
        // The digest username must be the AOR's user.
        let other = r.handle(
            &register("2999", &authorization(AGENT, PASSWORD, &nonce)),
            ip(),
            now,
        );
        assert_eq!(other.code, 403, "{other:?}");
        // A broken Authorization is a bad request.
        let broken = r.handle(
            &register(
                AGENT,
                &format!("Authorization: Digest realm=\"{REALM}\", nonce=\"{nonce}\"\r\n"),
            ),
            ip(),
            now,
        );
        assert_eq!(broken.code, 400, "{broken:?}");
        // Credentials for another realm: a challenge for ours.
        let elsewhere = authorization(AGENT, PASSWORD, &nonce).replace("\"ivr\"", "\"other\"");
        let again = r.handle(&register(AGENT, &elsewhere), ip(), now);
        assert_eq!(again.code, 401, "{again:?}");
    }

    #[test]
    fn stale_and_foreign_nonces() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let later = now + NONCE_LIFETIME + 1_000;
        let stale = r.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &nonce)),
            ip(),
            later,
        );
        let fresh = challenge_nonce(&stale);
        assert!(
            header(&stale, "WWW-Authenticate").is_some_and(|w| w.ends_with("stale=true")),
            "{stale:?}"
        );
        assert_ne!(fresh, nonce);
        let ok = r.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &fresh)),
            ip(),
            later,
        );
        assert_eq!(ok.code, 200, "{ok:?}");
        // A stale nonce with a wrong password is still a 403.
        let wrong = r.handle(
            &register(AGENT, &authorization(AGENT, "guess", &nonce)),
            ip(),
            later,
        );
        assert_eq!(wrong.code, 403);
        // A nonce we never made (a forged timestamp, another process's secret).
        let forged = format!("{:016x}{}", 0, "0".repeat(32));
        let f = r.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &forged)),
            ip(),
            later,
        );
        assert!(
            header(&f, "WWW-Authenticate").is_some_and(|w| w.ends_with("stale=true")),
            "{f:?}"
        );
        // Another registrar (another process) does not take our nonces as fresh.
        let mut other = registrar();
        other.handle(&register(AGENT, ""), ip(), now);
        let o = other.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &fresh)),
            ip(),
            later,
        );
        assert_eq!(o.code, 401);
    }

    fn registered(r: &mut Registrar, extra: &str, now: Millis) -> RegisterReply {
        let nonce = challenge_nonce(&r.handle(&register(AGENT, extra), ip(), now));
        r.handle(
            &register(
                AGENT,
                &format!("{extra}{}", authorization(AGENT, PASSWORD, &nonce)),
            ),
            ip(),
            now,
        )
    }

    #[test]
    fn expires_are_bounded() {
        let mut r = registrar();
        let now: Millis = 1_000;
        // Too brief: 423 with the minimum (RFC 3261 10.3), the binding unchanged.
        for extra in [
            "Contact: <sip:2001@10.0.0.5>;expires=30\r\n",
            "Contact: <sip:2001@10.0.0.5>\r\nExpires: 5\r\n",
        ] {
            let brief = registered(&mut r, extra, now);
            assert_eq!(brief.code, 423, "{extra}: {brief:?}");
            assert_eq!(header(&brief, "Min-Expires"), Some("60"));
            assert_eq!(brief.binding, None);
        }
        let cases = [
            ("Contact: <sip:2001@10.0.0.5>;expires=60\r\n", 60),
            ("Contact: <sip:2001@10.0.0.5>;expires=7200\r\n", 3600),
            (
                "Contact: <sip:2001@10.0.0.5>;expires=600\r\nExpires: 120\r\n",
                600,
            ),
            ("Contact: <sip:2001@10.0.0.5>\r\nExpires: 120\r\n", 120),
            ("Contact: <sip:2001@10.0.0.5>\r\n", 3600),
            ("Contact: sip:2001@10.0.0.5;expires=900\r\n", 900),
        ];
        for (extra, granted) in cases {
            let ok = registered(&mut r, extra, now);
            assert_eq!(ok.code, 200, "{extra}: {ok:?}");
            assert_eq!(
                ok.binding.as_ref().map(|b| b.expires),
                Some(granted * 1_000),
                "{extra}"
            );
            assert_eq!(
                header(&ok, "Contact"),
                Some(format!("<sip:2001@10.0.0.5>;expires={granted}").as_str()),
                "{extra}"
            );
            assert_eq!(header(&ok, "Expires"), Some(granted.to_string().as_str()));
        }
        let bad = registered(&mut r, "Contact: <sip:2001@10.0.0.5>;expires=soon\r\n", now);
        assert_eq!(bad.code, 400);
        let tel = registered(&mut r, "Contact: <tel:+8610010>\r\n", now);
        assert_eq!(tel.code, 400);
        // The binding lapses by itself.
        assert!(r.binding(AGENT, now + 899_000).is_some());
        assert!(r.binding(AGENT, now + 900_000).is_none());
    }

    #[test]
    fn unregister() {
        let mut r = registrar();
        let now: Millis = 1_000;
        let ok = registered(&mut r, "Contact: <sip:2001@10.0.0.5:5070>\r\n", now);
        assert_eq!(ok.code, 200);
        // Another contact with expires=0 leaves the binding alone.
        let other = registered(&mut r, "Contact: <sip:2001@10.9.9.9>;expires=0\r\n", now);
        assert_eq!((other.code, other.binding.clone()), (200, None));
        assert_eq!(
            header(&other, "Contact"),
            Some("<sip:2001@10.0.0.5:5070>;expires=3600")
        );
        // `*` needs Expires: 0.
        let bad = registered(&mut r, "Contact: *\r\n", now);
        assert_eq!(bad.code, 400);
        let gone = registered(&mut r, "Contact: *\r\nExpires: 0\r\n", now);
        assert_eq!(gone.code, 200, "{gone:?}");
        assert_eq!(
            gone.binding,
            Some(Binding {
                agent: AGENT.into(),
                contact: "sip:2001@10.0.0.5:5070".into(),
                expires: 0,
            })
        );
        assert_eq!(header(&gone, "Contact"), None);
        assert!(r.binding(AGENT, now).is_none());
        // The same contact with expires=0 removes it too.
        registered(&mut r, "Contact: <sip:2001@10.0.0.5:5070>\r\n", now);
        let gone = registered(
            &mut r,
            "Contact: <sip:2001@10.0.0.5:5070>\r\nExpires: 0\r\n",
            now,
        );
        assert_eq!(gone.binding.map(|b| b.expires), Some(0));
        // Hot reload without the agent drops the binding.
        registered(&mut r, "Contact: <sip:2001@10.0.0.5:5070>\r\n", now);
        assert_eq!(r.set_credentials(REALM, HashMap::new()), vec![AGENT]);
        assert!(r.binding(AGENT, now).is_none());
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let refused = r.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &nonce)),
            ip(),
            now,
        );
        assert_eq!(refused.code, 403);
    }

    #[test]
    fn repeated_failures_are_slowed_down() {
        let mut r = registrar();
        let mut now: Millis = 1_000;
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let wrong = register(AGENT, &authorization(AGENT, "guess", &nonce));
        let mut delays = Vec::new();
        for _ in 0..9 {
            let reply = r.handle(&wrong, ip(), now);
            assert_eq!(reply.code, 403);
            delays.push(reply.delay / 1_000);
            now += 1_000;
        }
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 16]);
        // Every REGISTER from there is held back, challenges included; other addresses not.
        assert_eq!(r.handle(&register(AGENT, ""), ip(), now).delay / 1_000, 16);
        let elsewhere: IpAddr = "10.0.0.6".parse().expect("ip");
        assert_eq!(r.handle(&register(AGENT, ""), elsewhere, now).delay, 0);
        // A success clears it (and is itself still held back).
        let nonce = challenge_nonce(&r.handle(&register(AGENT, ""), ip(), now));
        let ok = r.handle(
            &register(AGENT, &authorization(AGENT, PASSWORD, &nonce)),
            ip(),
            now,
        );
        assert_eq!((ok.code, ok.delay / 1_000), (200, 16));
        assert_eq!(r.handle(&wrong, ip(), now).delay, 0);
        // Failures far apart do not add up ...
        let mut r = registrar();
        let mut t: Millis = 1_000;
        for _ in 0..5 {
            assert_eq!(r.handle(&wrong, ip(), t).delay, 0);
            t += 61_000;
        }
        // ... and a slowed-down address quiet for 5 minutes is forgotten.
        for _ in 0..3 {
            r.handle(&wrong, ip(), t);
        }
        assert_eq!(r.handle(&wrong, ip(), t).delay / 1_000, 1);
        t += FORGET_AFTER;
        assert_eq!(r.handle(&wrong, ip(), t).delay, 0);
        assert_eq!(r.remembered(), 1);
        // IPv6 addresses count per /64.
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::2:3".parse().expect("ip");
        for ip in [a, b, a] {
            r.handle(&wrong, ip, t);
        }
        assert_eq!(r.handle(&wrong, b, t).delay / 1_000, 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = registrar();
        let t: Millis = 1_000;
        // An unknown agent: only its addresses are counted (a known one would be locked).
        let wrong = register("2999", &authorization("2999", "guess", "x"));
        let first: IpAddr = "10.200.0.0".parse().expect("ip");
        for _ in 0..3 {
            r.handle(&wrong, first, t);
        }
        for i in 1..=MAX_ADDRESSES as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.handle(&wrong, ip, t + Millis::from(i));
        }
        assert_eq!(r.remembered(), MAX_ADDRESSES);
        // The oldest one went first.
        assert_eq!(r.handle(&wrong, first, t + 20_000).delay, 0);
    }

    #[test]
    fn lists_and_params() {
        assert_eq!(
            split_list("<sip:a@b;x=1,2>;expires=5, \"A, B\" <sip:c@d>, sip:e@f"),
            vec!["<sip:a@b;x=1,2>;expires=5", "\"A, B\" <sip:c@d>", "sip:e@f"]
        );
        assert!(digest_params("Basic dXNlcjpwYXNz").is_none());
        assert!(digest_params("Digest a=\"1\", a=\"2\"").is_none());
        assert!(digest_params("Digest a=\"unterminated").is_none());
        assert_eq!(
            digest_params("Digest username=\"a\\\"b\"").expect("p")["username"],
            "a\"b"
        );
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
