//! `/supervisor`: the quality desk. Supervisors (`[supervisors.ID]` with the `ha1` of their
//! password) log in with HTTP Basic or a session (`POST /supervisor/login`), search and play
//! whole-call recordings, and see the live calls; every action is a row of
//! `supervisor_events` (who, what, which call, when).
//!
//! - [`Supervisors`]: who a request comes from ([`Supervisors::who`],
//!   [`Supervisors::authorize`]) and the events log ([`Supervisors::log_event`]);
//! - [`login`]: passwords checked through the HTTP side's login limiter;
//! - [`sessions`]: session tokens (a cookie, or `Authorization: Bearer`);
//! - [`page`]: `GET /supervisor` (the page), `POST /supervisor/login` and `/logout`;
//! - [`live`]: the calls in progress (`GET /supervisor/calls`);
//! - [`recordings`]: the search (`GET /supervisor/recordings`) and the files, with
//!   [`byte_range`] for seeking.
//!
//! Nothing under `/supervisor` is ever served without a login: a request without one gets
//! 401 with a Basic challenge (429 while the limiter locks its address or the supervisor).

pub mod byte_range;
pub mod live;
pub mod login;
pub mod page;
pub mod recordings;
pub mod sessions;

use crate::agent_api::{AgentApi, Login};
use crate::services::Services;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ivr_data::Pool;
use login::Passwords;
use sessions::Sessions;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long writing one `supervisor_events` row may take before it is given up (and said in
/// the log).
const EVENT_WITHIN: Duration = Duration::from_secs(5);

/// The supervisors of a server: their logins, sessions and events.
pub struct Supervisors {
    passwords: Passwords,
    sessions: Sessions,
    /// The database `supervisor_events` (and the recordings) are in; none: no database.
    pool: Option<Pool>,
}

impl Supervisors {
    /// The supervisors of a server whose agents' logins go through `agents` (its limiter is
    /// shared), with the database `pool` (none: nothing searched, events only in the log).
    pub fn new(agents: &AgentApi, pool: Option<Pool>) -> Arc<Supervisors> {
        Arc::new(Supervisors {
            passwords: Passwords {
                services: agents.services.clone(),
                limiter: Arc::clone(&agents.limiter),
                clock: agents.clock,
            },
            sessions: Sessions::default(),
            pool,
        })
    }

    /// What the server shares.
    pub fn services(&self) -> &Services {
        &self.passwords.services
    }

    /// The database, if any.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// The supervisor id a request comes from: a live session (the `ivr_supervisor` cookie or
    /// `Authorization: Bearer TOKEN` from `POST /supervisor/login`), or HTTP Basic with a
    /// supervisor's id and password. Basic is checked at once through the login limiter:
    /// refused while the limiter locks the supervisor or would slow the attempt down. A
    /// supervisor removed from `ivr.toml` is nobody, whatever its session. Routes that know
    /// the peer's address should prefer [`Supervisors::authorize`].
    pub fn who(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(t) = sessions::token_of(headers)
            && let Some(s) = self.sessions.touch(&t)
            && self.passwords.configured(&s)
        {
            return Some(s);
        }
        self.passwords.check_unslowed(headers)
    }

    /// The supervisor a request from `peer` comes from, or the answer to give it: a session
    /// as in [`Supervisors::who`], else HTTP Basic through the login limiter with the peer's
    /// address (slowed down after failures); 401 with a Basic challenge without a login, 429
    /// with `Retry-After` while locked.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<String, Response> {
        if let Some(t) = sessions::token_of(headers)
            && let Some(s) = self.sessions.touch(&t)
            && self.passwords.configured(&s)
        {
            return Ok(s);
        }
        match self.passwords.login(headers, peer).await {
            (Login::Granted, id) => Ok(id),
            (login, _) => Err(login.refusal(challenge())),
        }
    }

    /// Writes one `supervisor_events` row: `who` did `action` (on `call_id`) now. A failure
    /// (or no database) is said in the log; the action itself is always logged there too.
    pub async fn log_event(&self, who: &str, action: &str, call_id: Option<&str>) {
        tracing::info!(supervisor = %who, action, call_id, "supervisor event");
        let Some(pool) = &self.pool else {
            return;
        };
        // The server's local time, as every other table keeps it.
        let at = chrono::Local::now().naive_local();
        let write = ivr_data::supervisor_events::insert(pool, who, action, call_id, at);
        match tokio::time::timeout(EVENT_WITHIN, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(supervisor = %who, action, error = %e, "supervisor event not written");
            }
            Err(_) => {
                tracing::warn!(supervisor = %who, action, "supervisor event not written in time");
            }
        }
    }

    /// The display name of supervisor `id`.
    pub fn name_of(&self, id: &str) -> String {
        self.services()
            .live
            .current()
            .config
            .supervisors
            .get(id)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

/// 401 with the Basic challenge of the supervisors' realm.
pub fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Basic realm=\"ivr supervisors\", charset=\"UTF-8\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "a supervisor's id and password are needed\n",
    )
        .into_response()
}

/// The routes of `/supervisor`.
pub fn router(s: Arc<Supervisors>) -> Router {
    page::routes()
        .merge(recordings::routes())
        .merge(live::routes())
        .with_state(s)
}
