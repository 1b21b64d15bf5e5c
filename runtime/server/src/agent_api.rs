//! Agents over HTTP: the state of the queues and agents for the dashboard, and for each agent
//! (authenticated with its own password, checked against `[agents.ID] ha1`) its state, the
//! screen pop of the call it is offered or talking to, and setting itself away or available.
//!
//! - `GET /agents`: agents (id, name, skills, state, since, calls answered) and queues
//!   (waiting, longest wait, counts), as JSON; no caller data.
//! - `GET /agents/ID`: that agent's state and current screen pop (HTTP Basic: ID and password).
//! - `POST /agents/ID/state` with `away` or `available` (text, or JSON `{"state": "away"}`).
//! - `POST /agents/ID/transfer` with JSON `{"target": "queue.billing", "note": "..."}`: pass
//!   the caller the agent talks with on (blind transfer; see [`transfer`]): 204, or 409 with
//!   why it was refused (the caller stays with the agent). A number goes through the default
//!   trunk: the answer comes once it answered (204) or did not (409), within 35 s.
//! - `POST /agents/ID/consult` with JSON `{"target": "2002", "note": "..."}`: hold the caller
//!   and ring the target for the agent (204 once it rings, 409 refused);
//!   `POST /agents/ID/consult/complete` (the caller goes to the target) and
//!   `POST /agents/ID/consult/cancel` (back with the caller): 204, or 409 with why.
//!
//! Every login over HTTP (these routes and the console's `POST /agent/login`) goes through
//! [`AgentApi::login`] and the one [`FailureLimiter`] of the server's HTTP side (the SIP
//! registrar has a limiter of its own): after 3 failures from an address every further
//! attempt from there is answered only after 1 s, 2 s, … up to 16 s; 10 failures from an
//! address within 10 minutes, or 20 for one agent from any addresses, lock it: its attempts
//! are refused unchecked — the password is not even looked at, the right one is refused too —
//! with 429 and `Retry-After` until the lock lifts, 10 minutes on (an agent's lock spares the
//! addresses it logged in from). Refusals are counted in `ivr_http_logins_refused_total`. A
//! request without credentials is no attempt: it gets the challenge and counts nothing.

use crate::acd_task::{AcdHandle, AcdMsg, AcdSnapshot};
use crate::http_limits::HttpStats;
use crate::services::Services;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use ivr_sansio::{Clock, Millis};
use ivr_sip::limiter::{FailureLimiter, Lock, Verdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
        .route("/agents/{id}/transfer", post(transfer_route))
        .route("/agents/{id}/consult", post(consult_route))
        .route("/agents/{id}/consult/{what}", post(consult_end_route))
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

    /// A login of agent `id` from `peer` with the request's HTTP Basic credentials. Without
    /// credentials it is no attempt (denied, nothing counted). Else the limiter decides
    /// first: refused unchecked while it locks the address (or the agent) out; else the
    /// password is checked, after the delay the limiter asks for, and the failure or the
    /// success told to the limiter.
    pub async fn login(&self, id: &str, headers: &HeaderMap, peer: SocketAddr) -> Login {
        if basic_credentials(headers).is_none() {
            return Login::Denied;
        }
        // Only configured agents are named to the limiter: unknown names take no room.
        let configured = self.services.live.current().config.agents.contains_key(id);
        let agent = configured.then_some(id);
        let ip = peer.ip();
        let delay = match self.limiter(|l| gate(l, ip, agent, self.clock.now())) {
            Gate::Check(delay) => delay,
            Gate::Refuse(wait, locked) => {
                HttpStats::count(&self.services.http.logins_refused);
                tracing::info!(agent = %id, addr = %ip, locked, "agent login refused unchecked: too many failures");
                return Login::Refused(wait);
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ok = self.password_matches(id, headers);
        self.limiter(|l| {
            if ok {
                succeeded(l, ip, agent, self.clock.now());
            } else {
                let failures = failed(l, ip, agent, self.clock.now());
                tracing::info!(agent = %id, addr = %ip, failures, "agent login refused");
            }
        });
        if ok { Login::Granted } else { Login::Denied }
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

/// What a login attempt comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The agent's password.
    Granted,
    /// No credentials, or wrong ones (401).
    Denied,
    /// Not checked: the address (or the agent) failed too often; it may try again after
    /// this long (429).
    Refused(Duration),
}

impl Login {
    /// The answer to a login that was not granted: 429 with `Retry-After` (whole seconds)
    /// when refused, else `denied`.
    pub fn refusal(self, denied: Response) -> Response {
        match self {
            Login::Refused(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, wait.as_secs().max(1).to_string()),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                "too many failed logins from this address; try again later\n",
            )
                .into_response(),
            Login::Granted | Login::Denied => denied,
        }
    }
}

/// What the limiter says of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Check the password, answering after this long.
    Check(Duration),
    /// Refuse it unchecked; the address may try again after this long; what is locked
    /// (`address` or `agent`).
    Refuse(Duration, &'static str),
}

// The three places the HTTP side speaks to the limiter ([`AgentApi::login`] is their one
// caller).

/// The limiter's verdict on an attempt from `ip` (for `agent`, when configured) at `now`.
fn gate(l: &mut FailureLimiter, ip: IpAddr, agent: Option<&str>, now: Millis) -> Gate {
    match l.check(ip, agent, now) {
        Verdict::Check { delay } => Gate::Check(Duration::from_millis(delay.unsigned_abs())),
        Verdict::Locked(lock) => {
            let (Lock::Address { until } | Lock::Agent { until }) = lock;
            let by = match lock {
                Lock::Address { .. } => "address",
                Lock::Agent { .. } => "agent",
            };
            Gate::Refuse(Duration::from_millis((until - now).unsigned_abs()), by)
        }
    }
}

/// `ip` logged in as `agent` at `now`.
fn succeeded(l: &mut FailureLimiter, ip: IpAddr, agent: Option<&str>, now: Millis) {
    l.succeeded(ip, agent, now);
}

/// `ip` gave a wrong password (for `agent`, when configured) at `now`: the failures counted.
fn failed(l: &mut FailureLimiter, ip: IpAddr, agent: Option<&str>, now: Millis) -> u32 {
    l.failed(ip, agent, now)
}

/// The user name and password of the request's HTTP Basic credentials.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
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
    let login = api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        return login.refusal(challenge());
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
    let login = api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        return login.refusal(challenge());
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

/// How long a transfer may take to be decided: the ACD and the call answer at once, a number
/// once it answered or rang for 30 s.
const TRANSFER_WITHIN: Duration = Duration::from_secs(35);
/// How long a consultation's request may take to be decided (the ACD and the call answer at
/// once; the target's answer comes later, to the console).
const CONSULT_WITHIN: Duration = Duration::from_secs(5);

/// Passes the caller agent `agent` talks with on to `target` (`queue.NAME`, an agent id, a
/// number) with `note` for the next agent: the agent console and `POST /agents/ID/transfer`.
/// `Err` is the sentence the agent reads (the caller stays with the agent).
pub async fn transfer(
    services: &Services,
    agent: &str,
    target: &str,
    note: &str,
) -> Result<(), crate::pass_refusal::PassRefusal> {
    let (tx, rx) = oneshot::channel();
    let msg = AcdMsg::AgentTransfer {
        agent: agent.to_string(),
        target: target.to_string(),
        note: note.to_string(),
        reply: tx,
    };
    if services.acd.send(msg).is_err() {
        return Err(crate::pass_refusal::PassRefusal::Unanswered);
    }
    match tokio::time::timeout(TRANSFER_WITHIN, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(crate::pass_refusal::PassRefusal::NotConnected),
        Err(_) => Err(crate::pass_refusal::PassRefusal::Unanswered),
    }
}

/// The answer to a refused transfer or consultation: `503` with the sentence when the REFER
/// path would say `503 Service Unavailable` too (the trunk is full, the number could not be
/// reached, the server did not answer), `409` with it for every other refusal.
fn refused(e: &crate::pass_refusal::PassRefusal) -> Response {
    (refusal_status(e), format!("{e}\n")).into_response()
}

/// The HTTP status of a refusal (see [`refused`]).
fn refusal_status(e: &crate::pass_refusal::PassRefusal) -> StatusCode {
    match e.code() {
        503 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::CONFLICT,
    }
}

/// What `POST /agents/ID/transfer` takes.
#[derive(serde::Deserialize)]
struct TransferBody {
    target: String,
    #[serde(default)]
    note: String,
}

impl TransferBody {
    /// The body of a transfer or a consultation, or the 400 that says what it should be.
    fn read(body: &str) -> Result<TransferBody, Box<Response>> {
        serde_json::from_str(body).map_err(|_| {
            Box::new(
                (
                    StatusCode::BAD_REQUEST,
                    "expected JSON {\"target\": \"queue.NAME\", \"note\": \"...\"}\n",
                )
                    .into_response(),
            )
        })
    }
}

async fn transfer_route(
    State(api): State<AgentApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let login = api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        return login.refusal(challenge());
    }
    let b = match TransferBody::read(&body) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    match transfer(&api.services, &id, &b.target, &b.note).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

/// Asks the call agent `agent` talks with to start, complete or cancel its consultation: the
/// agent console and `POST /agents/ID/consult[/complete|/cancel]`. `Err` is the sentence the
/// agent reads.
pub async fn consult(
    services: &Services,
    agent: &str,
    action: crate::consult_request::ConsultAction,
) -> Result<(), crate::pass_refusal::PassRefusal> {
    let (tx, rx) = oneshot::channel();
    let msg = AcdMsg::AgentConsult {
        agent: agent.to_string(),
        action,
        reply: tx,
    };
    if services.acd.send(msg).is_err() {
        return Err(crate::pass_refusal::PassRefusal::Unanswered);
    }
    match tokio::time::timeout(CONSULT_WITHIN, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(crate::pass_refusal::PassRefusal::NotConnected),
        Err(_) => Err(crate::pass_refusal::PassRefusal::Unanswered),
    }
}

async fn consult_route(
    State(api): State<AgentApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let login = api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        return login.refusal(challenge());
    }
    let b = match TransferBody::read(&body) {
        Ok(b) => b,
        Err(refusal) => return *refusal,
    };
    let action = crate::consult_request::ConsultAction::Start {
        target: b.target,
        note: b.note,
    };
    match consult(&api.services, &id, action).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

async fn consult_end_route(
    State(api): State<AgentApi>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((id, what)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let login = api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        return login.refusal(challenge());
    }
    let action = match what.as_str() {
        "complete" => crate::consult_request::ConsultAction::Complete,
        "cancel" => crate::consult_request::ConsultAction::Cancel,
        _ => return (StatusCode::NOT_FOUND, "complete or cancel\n").into_response(),
    };
    match consult(&api.services, &id, action).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consult_request::ConsultRefusal;
    use crate::pass_refusal::PassRefusal;

    #[test]
    fn refusals_the_refer_answers_503_are_503_over_http() {
        let full = PassRefusal::Consult(ConsultRefusal::TrunkFull {
            number: "13900000002".into(),
            trunk: "default".into(),
        });
        assert_eq!(refusal_status(&full), StatusCode::SERVICE_UNAVAILABLE);
        let unreachable = PassRefusal::Consult(ConsultRefusal::failed("139", 404));
        assert_eq!(
            refusal_status(&unreachable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            refusal_status(&PassRefusal::Unanswered),
            StatusCode::SERVICE_UNAVAILABLE
        );
        for conflict in [
            PassRefusal::NotConnected,
            PassRefusal::Unknown("+".into()),
            PassRefusal::Yourself,
            PassRefusal::Consult(ConsultRefusal::NoTrunk("139".into())),
            PassRefusal::Consult(ConsultRefusal::failed("2002", 486)),
            PassRefusal::Consult(ConsultRefusal::None),
        ] {
            assert_eq!(
                refusal_status(&conflict),
                StatusCode::CONFLICT,
                "{conflict}"
            );
        }
    }
}
