//! Supervisors' session tokens (`POST /supervisor/login`): random, held in memory, each
//! lapsing after [`IDLE`] unused; at most [`MAX_SESSIONS`] (the least recently used go
//! first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 1_000;

/// The name of the session cookie.
pub const COOKIE: &str = "ivr_supervisor";

struct Session {
    supervisor: String,
    last_used: Instant,
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `supervisor`: its token (48 hex digits), or none without randomness.
    pub fn open(&self, supervisor: &str) -> Option<String> {
        let mut b = [0u8; 24];
        getrandom::fill(&mut b).ok()?;
        let token: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let now = Instant::now();
        let mut s = self.lock();
        s.retain(|_, x| now.duration_since(x.last_used) < IDLE);
        if s.len() >= MAX_SESSIONS {
            let oldest = s
                .iter()
                .min_by_key(|(_, x)| x.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                s.remove(&k);
            }
        }
        s.insert(
            token.clone(),
            Session {
                supervisor: supervisor.to_string(),
                last_used: now,
            },
        );
        Some(token)
    }

    /// The supervisor of a live token; its idle time starts again.
    pub fn touch(&self, token: &str) -> Option<String> {
        let mut s = self.lock();
        let x = s.get_mut(token)?;
        let now = Instant::now();
        if now.duration_since(x.last_used) >= IDLE {
            s.remove(token);
            return None;
        }
        x.last_used = now;
        Some(x.supervisor.clone())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) -> Option<String> {
        self.lock().remove(token).map(|x| x.supervisor)
    }
}

/// The session token a request carries: `Authorization: Bearer TOKEN` or the
/// [`COOKIE`] cookie. Only hex tokens of the right length are looked at.
pub fn token_of(headers: &axum::http::HeaderMap) -> Option<String> {
    use axum::http::header;
    let plausible = |t: &str| t.len() == 48 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| plausible(t))
    {
        return Some(t.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE && plausible(v))
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[test]
    fn open_touch_close() {
        let s = Sessions::default();
        let t = s.open("3001").unwrap_or_default();
        assert_eq!(t.len(), 48);
        assert_eq!(s.touch(&t).as_deref(), Some("3001"));
        assert_eq!(s.close(&t).as_deref(), Some("3001"));
        assert_eq!(s.touch(&t), None);
    }

    #[test]
    fn tokens_from_headers() {
        let t = "ab".repeat(24);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={t}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(token_of(&h).as_deref(), Some(t.as_str()));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(token_of(&h).as_deref(), Some(t.as_str()));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("ivr_supervisor=../../etc"),
        );
        assert_eq!(token_of(&h), None);
    }
}
