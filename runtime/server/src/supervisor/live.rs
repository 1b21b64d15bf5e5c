//! `GET /supervisor/calls`: the calls in progress for the supervisors' page — id, caller,
//! channel, flow, node, queue, agent and duration — as JSON, the longest first (at most
//! [`crate::live_calls::MAX_LISTED`]). The flow and node come from the registry of calls in
//! progress; the agent (and the queue it took the call from) from the ACD's screen pops; the
//! queue of a call still waiting from the transfer node it is in. Not an event row (the page
//! asks every few seconds).

use super::Supervisors;
use super::page::private;
use crate::acd_task::AcdMsg;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the ACD may take to say who talks with whom (else the calls come without agents).
const ACD_WITHIN: Duration = Duration::from_secs(2);

/// The routes (state: the supervisors).
pub fn routes() -> Router<Arc<Supervisors>> {
    Router::new().route("/supervisor/calls", get(calls))
}

/// The agent of a call: its id, what it is doing (`ringing`, `on_call`, ...), the queue it
/// took the call from.
struct WithAgent {
    agent: String,
    state: Option<ivr_acd::AgentState>,
    queue: String,
}

/// The agent of each call offered to or talking with an agent, by call id.
async fn agents(s: &Supervisors) -> HashMap<String, WithAgent> {
    let (tx, rx) = oneshot::channel();
    if s.services().acd.send(AcdMsg::Status(tx)).is_err() {
        return HashMap::new();
    }
    match tokio::time::timeout(ACD_WITHIN, rx).await {
        Ok(Ok(snap)) => {
            let state: HashMap<&str, ivr_acd::AgentState> = snap
                .status
                .agents
                .iter()
                .map(|a| (a.id.as_str(), a.state))
                .collect();
            snap.screen_pops
                .iter()
                .map(|(agent, pop)| {
                    let w = WithAgent {
                        agent: agent.clone(),
                        state: state.get(agent.as_str()).copied(),
                        queue: pop.queue.clone(),
                    };
                    (pop.call_id.clone(), w)
                })
                .collect()
        }
        _ => HashMap::new(),
    }
}

/// `GET /supervisor/calls`.
async fn calls(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = s.authorize(&headers, peer).await {
        return r;
    }
    let by_call = agents(&s).await;
    let list: Vec<serde_json::Value> = s
        .services()
        .live_calls
        .calls()
        .into_iter()
        .map(|c| {
            let (agent, agent_state, queue) = match by_call.get(&c.call_id) {
                Some(w) => (Some(w.agent.clone()), w.state, Some(w.queue.clone())),
                None => (None, None, c.queue.clone()),
            };
            serde_json::json!({
                "call_id": c.call_id,
                "caller": c.caller,
                "channel": c.channel,
                "flow": c.flow,
                "node": c.node,
                "queue": queue,
                "agent": agent,
                "agent_state": agent_state,
                "duration_ms": c.duration_ms,
            })
        })
        .collect();
    (private(), axum::Json(serde_json::json!({ "calls": list }))).into_response()
}
