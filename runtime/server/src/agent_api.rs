//! Agents over HTTP: the state of the queues and agents for the dashboard, and for each agent
//! (authenticated with its own password, checked against `[agents.ID] ha1`) its state, the
//! screen pop of the call it is offered or talking to, and setting itself away or available.
//!
//! - `GET /agents`: agents (id, name, skills, state, since, calls answered) and queues
//!   (waiting, longest wait, counts), as JSON; no caller data.
//! - `GET /agents/ID`: that agent's state and current screen pop (HTTP Basic: ID and password).
//! - `POST /agents/ID/state` with `away` or `available` (text, or JSON `{"state": "away"}`).
//!
//! Wrong passwords are slowed down and locked out as the SIP registrar does it
//! ([`ivr_sip::limiter`], a limiter of its own): after 3 failures every further attempt from
//! there waits 1 s, 2 s, … up to 16 s before it is answered; 10 failures from an address
//! within 10 minutes, or 20 for one agent from any addresses, refuse further attempts
//! unchecked for 10 minutes (an agent's lock spares the addresses it logged in from).

use crate::acd_task::{AcdHandle, AcdMsg, AcdSnapshot};
use crate::services::Services;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use ivr_sansio::Clock;
use ivr_sip::limiter::{FailureLimiter, Verdict};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What the agent routes read.
#[derive(Clone)]
pub struct AgentApi {
    /// What the server shares: the ACD task, the live configuration (realm, agents' `ha1`).
    pub services: Services,
    /// Failed logins per address.
    pub limiter: Arc<Mutex<FailureLimiter>>,
    /// The time of the failures the limiter counts.
    pub clock: Clock,
}

/// The routes.
pub fn router(api: AgentApi) -> Router {
    Router::new()
        .route("/agents", get(all))
        .route("/agents/{id}", get(one))
        .route("/agents/{id}/state", post(set_state))
        .with_state(api)
}

async fn snapshot(acd: &AcdHandle) -> Option<AcdSnapshot> {
    let (tx, rx) = oneshot::channel();
    acd.send(AcdMsg::Status(tx)).ok()?;
    rx.await.ok()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the ACD is not running\n").into_response()
}

async fn all(State(api): State<AgentApi>) -> Response {
    match snapshot(&api.services.acd).await {
        Some(s) => axum::Json(s.status).into_response(),
        None => unavailable(),
    }
}

impl AgentApi {
    /// The agents' API of a server, with no failures counted yet.
    pub fn new(services: Services) -> AgentApi {
        AgentApi {
            services,
            limiter: Arc::new(Mutex::new(FailureLimiter::new())),
            clock: Clock::new(),
        }
    }

    /// Whether the request from `peer` carries agent `id`'s password (HTTP Basic); answers
    /// only after the delay the address's failures earned, and counts a failure. While the
    /// address or the agent is locked, false without looking at the password.
    pub async fn authorized(&self, id: &str, headers: &HeaderMap, peer: SocketAddr) -> bool {
        // Only configured agents are counted per agent: unknown names take no room.
        let configured = self.services.live.current().config.agents.contains_key(id);
        let agent = configured.then_some(id);
        let delay = match self.limiter(|l| l.check(peer.ip(), agent, self.clock.now())) {
            Verdict::Check { delay } => delay,
            Verdict::Locked(lock) => {
                tracing::info!(agent = %id, addr = %peer.ip(), ?lock, "agent login refused unchecked");
                return false;
            }
        };
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay.unsigned_abs())).await;
        }
        let ok = self.password_matches(id, headers);
        self.limiter(|l| {
            if ok {
                l.succeeded(peer.ip(), agent, self.clock.now());
            } else {
                let failures = l.failed(peer.ip(), agent, self.clock.now());
                tracing::info!(agent = %id, addr = %peer.ip(), failures, "agent login refused");
            }
        });
        ok
    }

    fn limiter<T>(&self, f: impl FnOnce(&mut FailureLimiter) -> T) -> T {
        let mut l = self
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut l)
    }

    /// Whether the request carries agent `id`'s password (HTTP Basic).
    fn password_matches(&self, id: &str, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let deployment = self.services.live.current();
        let config = &deployment.config;
        let Some(agent) = config.agents.get(id) else {
            return false;
        };
        let ha1 = ivr_sip::registrar::ha1(id, &config.server.realm, &password);
        user == id
            && ivr_sip::registrar::ct_eq(ha1.as_bytes(), agent.ha1.to_ascii_lowercase().as_bytes())
    }
}

/// The user name and password of the request's HTTP Basic credentials.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
}

/// The user name of the request's HTTP Basic credentials.
pub fn basic_user(headers: &HeaderMap) -> Option<String> {
    basic_credentials(headers).map(|(u, _)| u)
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"ivr agents\"")],
        "the agent's id and password are needed\n",
    )
        .into_response()
}

async fn one(
    State(api): State<AgentApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !api.authorized(&id, &headers, peer).await {
        return challenge();
    }
    let Some(s) = snapshot(&api.services.acd).await else {
        return unavailable();
    };
    let me = s.status.agents.iter().find(|a| a.id == id).cloned();
    axum::Json(serde_json::json!({
        "agent": me,
        "screen_pop": s.screen_pops.get(&id),
    }))
    .into_response()
}

async fn set_state(
    State(api): State<AgentApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !api.authorized(&id, &headers, peer).await {
        return challenge();
    }
    let wanted = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(String::from))
        .unwrap_or_else(|| body.trim().to_string());
    let away = match wanted.as_str() {
        "away" => true,
        "available" => false,
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the state is `away` or `available`, not `{other}`\n"),
            )
                .into_response();
        }
    };
    let (tx, rx) = oneshot::channel();
    let msg = AcdMsg::Away {
        agent: id,
        away,
        reply: Some(tx),
    };
    if api.services.acd.send(msg).is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        Err(_) => unavailable(),
    }
}
