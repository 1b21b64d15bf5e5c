//! The agent console on the HTTP interface of `ivr serve`: agents take queued calls in the
//! browser, with WebRTC audio.
//!
//! - `GET /agent`: the page (`agent.html`, shipped in the binary);
//! - `POST /agent/login` with HTTP Basic (the agent's id and password, checked against
//!   `[agents.ID] ha1` like `GET /agents/ID`): `{"token", "agent", "name"}`, or 401; the token
//!   is random, held in memory, and lapses after [`IDLE`] without a connected console;
//! - `GET /agent/ws?token=...`: the console's WebSocket. While it is open the agent is
//!   registered in the ACD ([`crate::agent_hub`]); the server sends JSON events (`state`,
//!   `offer` with the screen pop, `answer` with SDP, `connected`, `cancelled`, `ended`,
//!   `replaced`, `error`) and takes `state` (`available` / `away`), `answer` (the page's SDP
//!   offer) and `hangup` (decline, or end the conversation), `transfer`, `consult`,
//!   `consult_complete` and `consult_cancel` (answered with `transferred`, `consult` stages or
//!   `error`). With `&phone=1` the console goes with the agent's SIP phone: it registers
//!   nothing, and after each `state` of `ringing` or `on_call` (and when it is over) it sends
//!   `phone` with the state and the screen pop of the phone's call. A message (or frame) over
//!   [`crate::http_limits::WS_MAX_MESSAGE`] ends the socket; a page of another site cannot
//!   open it ([`crate::http::guard`]).

use crate::acd_task::{AcdMsg, AcdSnapshot};
use crate::agent_api::{self, AgentApi, Login};
use crate::agent_hub::{AgentHub, FromPage, REGISTRATION, ToPage};
use crate::consult_request::ConsultAction;
use crate::http_limits::ws_limits;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ivr_acd::AgentState;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::Instrument;

/// The console page.
const AGENT_PAGE: &str = include_str!("agent.html");
/// How long a login token lasts without a connected console.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// The agents' states are looked up in the ACD when it says something changed (and pushed to
/// consoles whose agent's state changed), at most this often ...
const STATE_AT_MOST: Duration = Duration::from_millis(50);
/// ... and at least this often.
const STATE_AT_LEAST: Duration = Duration::from_secs(5);
/// How often the server pings a console.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Most sessions held (older ones go first).
const MAX_SESSIONS: usize = 10_000;

/// What the console routes need.
pub struct Console {
    /// Agents checked and the ACD and the consoles' hub reached through it.
    api: AgentApi,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    agent: String,
    /// Last login or console seen; none while a console is connected.
    idle_since: Option<Instant>,
}

impl Console {
    /// The console of a server: agents checked, the ACD and calls (the agents' hub) reached
    /// through `api`; the ACD's changes say when its agents may have changed.
    pub fn new(api: AgentApi) -> Arc<Console> {
        let mut changes = api.services.acd_changes.clone();
        let c = Arc::new(Console {
            api,
            sessions: Mutex::new(HashMap::new()),
        });
        // One look at the ACD for every console after each change: each hears its agent's
        // state when it changes.
        let weak = Arc::downgrade(&c);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    () = tokio::time::sleep(STATE_AT_LEAST) => {}
                }
                // Changes while the ACD is asked are looked at next time.
                changes.mark_unchanged();
                tokio::time::sleep(STATE_AT_MOST).await;
                let Some(c) = weak.upgrade() else { return };
                if !c.hub().any() {
                    continue;
                }
                let Some(s) = snapshot(&c).await else { return };
                c.hub()
                    .states(s.status.agents.iter().map(|a| (a.id.as_str(), a.state)));
            }
        });
        c
    }

    /// The agents' consoles.
    fn hub(&self) -> &AgentHub {
        &self.api.services.consoles
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent of a live token; marks it in use.
    fn take(&self, token: &str) -> Option<String> {
        let mut s = self.sessions();
        let now = Instant::now();
        s.retain(|_, x| x.idle_since.is_none_or(|t| now.duration_since(t) < IDLE));
        let x = s.get_mut(token)?;
        x.idle_since = None;
        Some(x.agent.clone())
    }

    /// The agent of a live token (a connected console's, or one logged in within [`IDLE`]),
    /// leaving it as it is: for the inbox's requests beside the console's socket.
    pub fn agent_of(&self, token: &str) -> Option<String> {
        let s = self.sessions();
        let x = s.get(token)?;
        x.idle_since
            .is_none_or(|t| t.elapsed() < IDLE)
            .then(|| x.agent.clone())
    }

    /// Agents checked, the services reached.
    pub fn api(&self) -> &AgentApi {
        &self.api
    }

    fn release(&self, token: &str) {
        if let Some(x) = self.sessions().get_mut(token) {
            x.idle_since = Some(Instant::now());
        }
    }
}

/// The console's routes.
pub fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/agent", get(page))
        .route("/agent/login", post(login))
        .route("/agent/ws", get(socket))
        .with_state(c)
}

async fn page() -> impl IntoResponse {
    Html(AGENT_PAGE)
}

fn token() -> Option<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `POST /agent/login`.
async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let id = agent_api::basic_user(&headers).unwrap_or_default();
    let login = c.api.login(&id, &headers, peer).await;
    if login != Login::Granted {
        tracing::info!("agent console login refused");
        return login
            .refusal((StatusCode::UNAUTHORIZED, "wrong agent id or password\n").into_response());
    }
    let Some(token) = token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    let name = c
        .api
        .services
        .live
        .current()
        .config
        .agents
        .get(&id)
        .map(|a| a.name.clone())
        .unwrap_or_default();
    {
        let mut s = c.sessions();
        if s.len() >= MAX_SESSIONS {
            let oldest = s
                .iter()
                .filter_map(|(k, x)| x.idle_since.map(|t| (t, k.clone())))
                .min()
                .map(|(_, k)| k);
            if let Some(k) = oldest {
                s.remove(&k);
            }
        }
        s.insert(
            token.clone(),
            Session {
                agent: id.clone(),
                idle_since: Some(Instant::now()),
            },
        );
    }
    tracing::info!(agent = %id, "agent console login");
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({"token": token, "agent": id, "name": name})),
    )
        .into_response()
}

/// `GET /agent/ws?token=...`.
async fn socket(
    State(c): State<Arc<Console>>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The token is hex: nothing to decode.
    let token = q
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("token="))
        .unwrap_or_default()
        .to_string();
    // `phone=1`: the agent takes its calls on its SIP phone; the console follows them.
    let phone = q
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|p| p == "phone=1");
    let Some(agent) = c.take(&token) else {
        return (StatusCode::UNAUTHORIZED, "log in first\n").into_response();
    };
    // A removed agent cannot come back with an old token.
    if !c
        .api
        .services
        .live
        .current()
        .config
        .agents
        .contains_key(&agent)
    {
        c.release(&token);
        return (StatusCode::UNAUTHORIZED, "no such agent\n").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            c.release(&token);
            return e.into_response();
        }
    };
    ws_limits(ws)
        .on_upgrade(move |s| {
            let span = tracing::info_span!("console", agent = %agent);
            async move {
                run(&c, &agent, &token, phone, s).await;
                c.release(&token);
            }
            .instrument(span)
        })
        .into_response()
}

async fn snapshot(c: &Console) -> Option<AcdSnapshot> {
    let (tx, rx) = oneshot::channel();
    c.api.services.acd.send(AcdMsg::Status(tx)).ok()?;
    rx.await.ok()
}

async fn send(ws: &mut WebSocket, msg: &ToPage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => ws.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => true,
    }
}

/// One console's socket, from its opening to its end.
async fn run(c: &Console, agent: &str, token: &str, phone: bool, mut ws: WebSocket) {
    let hub = &c.api.services.consoles;
    let mut attached = if phone {
        hub.attach_phone(agent)
    } else {
        hub.attach(agent)
    };
    let conn = attached.conn;
    let mut refresh = tokio::time::interval(REGISTRATION / 2);
    refresh.tick().await;
    // Keeps idle proxies from closing the socket, and finds a peer that went away.
    // Answers to requests that take a while (a transfer to a number rings first).
    let (answers_tx, mut answers) = tokio::sync::mpsc::channel::<ToPage>(4);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<FromPage>(t.as_str()) {
                    Ok(FromPage::Logout) => {
                        tracing::info!("agent console logout");
                        c.sessions().remove(token);
                        break;
                    }
                    // Answered on `answers` (a number rings for a while): the socket goes on.
                    Ok(FromPage::Transfer { target, note }) => {
                        let (services, agent, tx) = (c.api.services.clone(), agent.to_string(), answers_tx.clone());
                        tokio::spawn(async move {
                            let msg = match agent_api::transfer(&services, &agent, &target, &note).await {
                                Ok(()) => ToPage::Transferred { target },
                                Err(message) => ToPage::Error { message: format!("transfer refused: {message}") },
                            };
                            let _ = tx.try_send(msg);
                        });
                    }
                    Ok(FromPage::Consult { target, note }) => {
                        let action = ConsultAction::Start { target: target.clone(), note };
                        let msg = match agent_api::consult(&c.api.services, agent, action).await {
                            // The call tells how it goes (`consult` messages).
                            Ok(()) => None,
                            Err(message) => Some(ToPage::Consult { stage: "refused", target, message: message.to_string() }),
                        };
                        if let Some(msg) = msg && !send(&mut ws, &msg).await {
                            break;
                        }
                    }
                    Ok(m @ (FromPage::ConsultComplete | FromPage::ConsultCancel)) => {
                        let action = if m == FromPage::ConsultComplete { ConsultAction::Complete } else { ConsultAction::Cancel };
                        if let Err(message) = agent_api::consult(&c.api.services, agent, action).await {
                            let msg = ToPage::Error { message: format!("consultation: {message}") };
                            if !send(&mut ws, &msg).await {
                                break;
                            }
                        }
                    }
                    Ok(msg) => hub.from_page(agent, conn, msg),
                    Err(e) => {
                        let message = format!("not understood: {e}");
                        if !send(&mut ws, &ToPage::Error { message }).await {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            Some(msg) = answers.recv() => {
                if !send(&mut ws, &msg).await {
                    break;
                }
            }
            m = attached.rx.recv() => match m {
                Some(msg) => {
                    let last = msg == ToPage::Replaced;
                    if !send(&mut ws, &msg).await || last {
                        break;
                    }
                    // With a SIP phone: the phone's call follows the agent's state.
                    if let (true, ToPage::State { state }) = (phone, &msg) {
                        let state = *state;
                        let pop = match state {
                            AgentState::Ringing | AgentState::OnCall => snapshot(c)
                                .await
                                .and_then(|mut s| s.screen_pops.remove(agent)),
                            _ => None,
                        };
                        if !send(&mut ws, &ToPage::Phone { state, pop }).await {
                            break;
                        }
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            _ = refresh.tick() => {
                if !hub.refresh(agent, conn) {
                    break;
                }
            }
        }
    }
    hub.detach(agent, conn);
    let _ = ws.send(Message::Close(None)).await;
}
