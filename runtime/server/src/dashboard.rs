//! The supervisor's dashboard on the HTTP interface of `ivr serve`, and the series of
//! `/metrics` that come from the same figures:
//!
//! - `GET /dashboard`: the page (`dashboard.html`, shipped in the binary; no build step);
//! - `GET /dashboard/state`: what the page shows, as JSON (for scripts);
//! - `GET /dashboard/ws`: a WebSocket that pushes the same JSON once a second and whenever a
//!   call starts, moves to another node or ends, and when an agent or a queue changes (at
//!   most every [`MIN_PUSH`]); the page sends nothing, and a message (or frame) over
//!   [`crate::http_limits::WS_MAX_MESSAGE`] ends the socket; a page of another site cannot
//!   open it ([`crate::http::guard`]). With `?flow=NAME` each message also has `flow_map`,
//!   what the flow map of NAME shows ([`crate::flow_map`]);
//! - `GET /dashboard/history`: the charts' series ([`crate::history`]);
//! - the flow map's routes (`/flows`, `/flows/NAME`, ...: [`crate::flow_map`]), which stand
//!   under the same access rule as the dashboard.
//!
//! The state: calls in progress by flow and node and by channel, calls started, ended by
//! outcome and per second ([`LiveCalls`]); each queue's waiting calls, longest wait, today's
//! answered and abandoned calls and service level (the ACD task); agents by state; the live
//! flow version and the last reload (from [`Live::status`]); the pacer's late ticks and
//! frames. No caller numbers, call ids or attached data: only counts, names of flows, nodes,
//! queues and agents.

use crate::acd_task::{AcdMsg, AcdSnapshot};
use crate::clock::local_now;
use crate::flow_map::{self, FlowMaps};
use crate::history::{self, History};
use crate::http_limits::ws_limits;
use crate::live_calls::{self, LiveCalls};
use crate::services::Services;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ivr_acd::AgentState;
use ivr_data::connect::Pool;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// A WebSocket gets the state at least this often.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);
/// And on changes, but not more often than this.
pub const MIN_PUSH: Duration = Duration::from_millis(200);
/// How often the dashboard counts unheard voice messages.
const UNHEARD_EVERY: Duration = Duration::from_secs(2);
/// How long the state waits for the ACD task.
const ACD_WAIT: Duration = Duration::from_secs(2);

/// The agent states, in the order the dashboard and `/metrics` list them.
pub const AGENT_STATES: [AgentState; 6] = [
    AgentState::Available,
    AgentState::Ringing,
    AgentState::OnCall,
    AgentState::WrapUp,
    AgentState::Away,
    AgentState::Offline,
];

/// The name of an agent state as the JSON says it.
pub fn state_name(s: AgentState) -> &'static str {
    match s {
        AgentState::Offline => "offline",
        AgentState::Available => "available",
        AgentState::Ringing => "ringing",
        AgentState::OnCall => "on_call",
        AgentState::WrapUp => "wrap_up",
        AgentState::Away => "away",
    }
}

/// What the dashboard reads: the live deployment and its reloads, the ACD task (queues,
/// agents) and its changes, the calls in progress, the pacer's counters.
pub struct Dashboard {
    services: Services,
    /// Unheard voice messages per queue (`""`: of no queue), and when they were counted.
    unheard: tokio::sync::Mutex<Option<(std::time::Instant, HashMap<String, u64>)>>,
    maps: FlowMaps,
    history: History,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dashboard")
    }
}

impl Dashboard {
    /// Unheard voice messages per queue (`""`: of no queue), counted in the database at most
    /// every [`UNHEARD_EVERY`]; empty without a database or while it fails.
    async fn unheard(&self) -> HashMap<String, u64> {
        let mut cached = self.unheard.lock().await;
        if let Some((at, counts)) = &*cached
            && at.elapsed() < UNHEARD_EVERY
        {
            return counts.clone();
        }
        let Some(pool) = self.services.catalogs.pool() else {
            return HashMap::new();
        };
        let counts =
            match tokio::time::timeout(ACD_WAIT, ivr_data::messages::unheard_by_queue(&pool)).await
            {
                Ok(Ok(rows)) => rows
                    .into_iter()
                    .map(|(q, n)| (q.unwrap_or_default(), n))
                    .collect(),
                _ => HashMap::new(),
            };
        *cached = Some((std::time::Instant::now(), counts.clone()));
        counts
    }

    /// The dashboard of a server whose call records are in `records` (today's visits on the
    /// flow map); it does not sample the charts' series (see [`Dashboard::start`]).
    pub fn new(services: Services, records: Option<Pool>) -> Dashboard {
        Dashboard {
            services,
            maps: FlowMaps::new(records),
            history: History::default(),
            unheard: tokio::sync::Mutex::new(None),
        }
    }

    /// [`Dashboard::new`], sampling the charts' series every [`history::CALLS_EVERY`] (from
    /// now, until the dashboard is dropped). Call within the tokio runtime.
    pub fn start(services: Services, records: Option<Pool>) -> Arc<Dashboard> {
        let d = Arc::new(Dashboard::new(services, records));
        let weak = Arc::downgrade(&d);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::CALLS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(d) = weak.upgrade() else { return };
                d.sample().await;
            }
        });
        d
    }

    /// One sample of the charts' series.
    async fn sample(&self) {
        let calls = self.calls().snapshot();
        let acd = self.acd().await;
        self.history.sample(
            &calls,
            acd.as_ref(),
            chrono::Utc::now().timestamp_millis(),
            local_now(),
        );
    }

    fn calls(&self) -> &LiveCalls {
        &self.services.live_calls
    }

    async fn acd(&self) -> Option<AcdSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.services.acd.send(AcdMsg::Status(tx)).ok()?;
        tokio::time::timeout(ACD_WAIT, rx).await.ok()?.ok()
    }

    /// The dashboard's state (`GET /dashboard/state`, the WebSocket's messages).
    pub async fn state(&self) -> Value {
        self.state_with(None).await
    }

    /// The state, with what the flow map of `flow` shows as `flow_map`.
    pub async fn state_with(&self, flow: Option<&str>) -> Value {
        let calls = self.calls().snapshot();
        let flow_map = match flow {
            Some(f) => Some(
                self.maps
                    .live(&self.services.live.current(), f, &calls.by_node)
                    .await,
            ),
            None => None,
        };
        let acd = self.acd().await;
        let unheard = self.unheard().await;
        let now = local_now();
        let (queues, agents, by_state) = match &acd {
            Some(a) => {
                let queues: Vec<Value> = a
                    .status
                    .queues
                    .iter()
                    .map(|q| {
                        let today = a.today.get(&q.name).cloned().unwrap_or_default();
                        json!({
                            "name": q.name,
                            "waiting": q.waiting,
                            "longest_wait_ms": q.longest_wait_ms,
                            "offered": q.offered,
                            "answered": q.answered,
                            "abandoned": q.abandoned,
                            "no_agents": q.no_agents,
                            "overflowed": q.overflowed,
                            "overflow_answered": q.overflow_answered,
                            "today": today,
                            "messages_unheard": unheard.get(&q.name).copied().unwrap_or(0),
                        })
                    })
                    .collect();
                let agents: Vec<Value> = a
                    .status
                    .agents
                    .iter()
                    .map(|g| {
                        json!({
                            "id": g.id,
                            "name": g.name,
                            "state": g.state,
                            // How long in this state; null when unknown (an agent offline
                            // since the server started has no time it went offline).
                            "for_ms": (g.since > 0).then(|| (now - g.since).max(0)),
                            "calls_answered": g.calls_answered,
                        })
                    })
                    .collect();
                let by_state: serde_json::Map<String, Value> = AGENT_STATES
                    .iter()
                    .map(|s| {
                        let n = a.status.agents.iter().filter(|g| g.state == *s).count();
                        (state_name(*s).to_string(), json!(n))
                    })
                    .collect();
                (queues, agents, Value::Object(by_state))
            }
            None => (Vec::new(), Vec::new(), Value::Null),
        };
        let status = self.services.live.status();
        let pacer = self.services.pacer.stats();
        let mut out = json!({
            "at": chrono::Utc::now().to_rfc3339(),
            "calls": calls,
            "queues": queues,
            "agents": { "by_state": by_state, "list": agents },
            "acd_running": acd.is_some(),
            "campaigns": self.services.campaigns.views(),
            "messages_unheard_no_queue": unheard.get("").copied().unwrap_or(0),
            "live": {
                "deployment": status["deployment"],
                "version": status["version"],
                "live_since": status["live_since"],
                "flows": status["flows"],
                "last_reload": status["last_reload"],
                "reloads": status["reloads"],
            },
            "media": {
                "packets": pacer.packets.load(Ordering::Relaxed),
                "late_ticks": pacer.late_ticks.load(Ordering::Relaxed),
                "late_packets": pacer.late_packets.load(Ordering::Relaxed),
                "channels": pacer.channels.load(Ordering::Relaxed),
            },
        });
        if let Some(m) = flow_map {
            out["flow_map"] = m;
        }
        out
    }

    /// The samples of `ivr_calls_in_node` (calls in progress by flow and node), after the
    /// family's HELP and TYPE lines.
    pub fn metrics_calls_by_node(&self, out: &mut String) {
        for n in self.calls().snapshot().by_node {
            let _ = writeln!(
                out,
                "ivr_calls_in_node{{flow=\"{}\",node=\"{}\"}} {}",
                label(&n.flow),
                label(&n.node),
                n.calls
            );
        }
    }

    /// The other series: calls started and ended, queues, agents, the pacer's lateness.
    pub async fn metrics(&self, out: &mut String) {
        let started = self.calls().started();
        let _ = write!(
            out,
            "# HELP ivr_calls_started_total Calls whose flow started, since start.\n\
             # TYPE ivr_calls_started_total counter\n\
             ivr_calls_started_total {started}\n\
             # HELP ivr_calls_ended_total Calls whose flow ended, since start, by flow and outcome (transferred, callback, abandoned, message, self_service, failed, not_served).\n\
             # TYPE ivr_calls_ended_total counter\n"
        );
        // Every flow of the live deployment has its series (at zero before its first call).
        let mut by_flow: std::collections::BTreeMap<String, [u64; live_calls::OUTCOMES.len()]> =
            self.services
                .live
                .current()
                .flows
                .keys()
                .map(|f| (f.clone(), [0; live_calls::OUTCOMES.len()]))
                .collect();
        by_flow.extend(self.calls().ended_by_flow());
        for (flow, ended) in by_flow {
            for (o, n) in live_calls::OUTCOMES.iter().zip(ended) {
                let _ = writeln!(
                    out,
                    "ivr_calls_ended_total{{flow=\"{}\",outcome=\"{}\"}} {n}",
                    label(&flow),
                    o.as_str()
                );
            }
        }
        if let Some(a) = self.acd().await {
            let _ = write!(
                out,
                "# HELP ivr_queue_waiting Calls waiting in each queue (ringing an agent or not).\n\
                 # TYPE ivr_queue_waiting gauge\n"
            );
            for q in &a.status.queues {
                let _ = writeln!(
                    out,
                    "ivr_queue_waiting{{queue=\"{}\"}} {}",
                    label(&q.name),
                    q.waiting
                );
            }
            let _ = write!(
                out,
                "# HELP ivr_queue_longest_wait_seconds How long the longest-waiting call of each queue has waited.\n\
                 # TYPE ivr_queue_longest_wait_seconds gauge\n"
            );
            for q in &a.status.queues {
                let _ = writeln!(
                    out,
                    "ivr_queue_longest_wait_seconds{{queue=\"{}\"}} {:.3}",
                    label(&q.name),
                    q.longest_wait_ms as f64 / 1000.0
                );
            }
            // The ACD's counters since start, one family each.
            type Count = fn(&ivr_acd::QueueStatus) -> u64;
            let families: [(&str, &str, Count); 4] = [
                (
                    "ivr_queue_calls_offered_total",
                    "Calls that entered each queue (offered to the queue), since start.",
                    |q| q.offered,
                ),
                (
                    "ivr_queue_calls_answered_total",
                    "Calls of each queue an agent answered, since start.",
                    |q| q.answered,
                ),
                (
                    "ivr_queue_calls_abandoned_total",
                    "Calls that left each queue before an answer (the caller hung up, or max_wait), since start.",
                    |q| q.abandoned,
                ),
                (
                    "ivr_queue_calls_no_agents_total",
                    "Calls of each queue sent down their no_agents path (nobody logged in, or the last agent left), since start.",
                    |q| q.no_agents,
                ),
            ];
            for (name, help, count) in families {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
                for q in &a.status.queues {
                    let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", label(&q.name), count(q));
                }
            }
            let _ = write!(
                out,
                "# HELP ivr_queue_service_level_ratio Today's service level of each queue: calls answered within the threshold / calls that finished waiting today (answered, abandoned or left); absent before the first.\n\
                 # TYPE ivr_queue_service_level_ratio gauge\n"
            );
            for q in &a.status.queues {
                crate::metrics::registry().know_queue(&q.name);
                if let Some(level) = a.today.get(&q.name).and_then(|d| d.service_level) {
                    let _ = writeln!(
                        out,
                        "ivr_queue_service_level_ratio{{queue=\"{}\"}} {level:.4}",
                        label(&q.name)
                    );
                }
            }
            let _ = write!(
                out,
                "# HELP ivr_queue_service_level_threshold_seconds The wait within which an answer counts for the service level.\n\
                 # TYPE ivr_queue_service_level_threshold_seconds gauge\n\
                 ivr_queue_service_level_threshold_seconds {}\n",
                crate::queue_day::SERVICE_LEVEL_MS / 1000
            );
            let _ = write!(
                out,
                "# HELP ivr_queue_overflowed_total Callers of each queue offered to another queue's agents (overflow).\n\
                 # TYPE ivr_queue_overflowed_total counter\n"
            );
            for q in &a.status.queues {
                let _ = writeln!(
                    out,
                    "ivr_queue_overflowed_total{{queue=\"{}\"}} {}",
                    label(&q.name),
                    q.overflowed
                );
            }
            let _ = write!(
                out,
                "# HELP ivr_queue_overflow_answered_total Other queues' callers each queue's agents answered through an overflow.\n\
                 # TYPE ivr_queue_overflow_answered_total counter\n"
            );
            for q in &a.status.queues {
                let _ = writeln!(
                    out,
                    "ivr_queue_overflow_answered_total{{queue=\"{}\"}} {}",
                    label(&q.name),
                    q.overflow_answered
                );
            }
            let _ = write!(
                out,
                "# HELP ivr_agents Agents by state.\n\
                 # TYPE ivr_agents gauge\n"
            );
            for s in AGENT_STATES {
                let n = a.status.agents.iter().filter(|g| g.state == s).count();
                let _ = writeln!(out, "ivr_agents{{state=\"{}\"}} {n}", state_name(s));
            }
        }
        let p = self.services.pacer.stats();
        let _ = write!(
            out,
            "# HELP ivr_rtp_packets_sent_total RTP packets of prompts sent by the pacer.\n\
             # TYPE ivr_rtp_packets_sent_total counter\n\
             ivr_rtp_packets_sent_total {}\n\
             # HELP ivr_rtp_late_ticks_total Pacer ticks that started more than 2 ms after their slot.\n\
             # TYPE ivr_rtp_late_ticks_total counter\n\
             ivr_rtp_late_ticks_total {}\n\
             # HELP ivr_rtp_late_packets_total RTP packets sent more than 5 ms after their slot.\n\
             # TYPE ivr_rtp_late_packets_total counter\n\
             ivr_rtp_late_packets_total {}\n\
             # HELP ivr_rtp_foreign_packets_total RTP packets dropped because they came from another address than the call's peer.\n\
             # TYPE ivr_rtp_foreign_packets_total counter\n\
             ivr_rtp_foreign_packets_total {}\n\
             # HELP ivr_srtp_auth_failures_total SRTP packets dropped: not authenticated with the peer's key, replayed, or of too many SSRCs.\n\
             # TYPE ivr_srtp_auth_failures_total counter\n\
             ivr_srtp_auth_failures_total {}\n",
            p.packets.load(Ordering::Relaxed),
            p.late_ticks.load(Ordering::Relaxed),
            p.late_packets.load(Ordering::Relaxed),
            ivr_media::latch::foreign_packets_total(),
            ivr_media::srtp::auth_failures_total(),
        );
        recording_metrics(self.services.recorder.stats(), out);
        if let Some(w) = &self.services.writer {
            let st = w.stats();
            let _ = write!(
                out,
                "# HELP ivr_records_written_total Call records written to the database.\n\
                 # TYPE ivr_records_written_total counter\n\
                 ivr_records_written_total {}\n\
                 # HELP ivr_records_spooled_total Call records that waited in the spool while the database was down.\n\
                 # TYPE ivr_records_spooled_total counter\n\
                 ivr_records_spooled_total {}\n\
                 # HELP ivr_records_quarantined_total Call records the database refused (kept in the spool's quarantine file).\n\
                 # TYPE ivr_records_quarantined_total counter\n\
                 ivr_records_quarantined_total {}\n\
                 # HELP ivr_records_fenced_total Final records of cluster calls not written because another node had taken the call over (or its record was already written).\n\
                 # TYPE ivr_records_fenced_total counter\n\
                 ivr_records_fenced_total {}\n\
                 # HELP ivr_records_lost_total Call records lost: the database was down and the spool could not take them, or the writer's queue was full.\n\
                 # TYPE ivr_records_lost_total counter\n\
                 ivr_records_lost_total {}\n",
                st.written,
                st.spooled,
                st.quarantined,
                st.fenced,
                st.failed.saturating_add(st.rejected),
            );
        }
        let lookup_errors = crate::metrics::registry().lookup_errors();
        let record_errors = self.services.writer.as_ref().map_or(0, |w| {
            let st = w.stats();
            st.spooled
                .saturating_add(st.quarantined)
                .saturating_add(st.failed)
        });
        let _ = write!(
            out,
            "# HELP ivr_db_errors_total Database operations that failed, by operation (lookup: a lookup's query failed or timed out; records: call records the database did not take at once).\n\
             # TYPE ivr_db_errors_total counter\n\
             ivr_db_errors_total{{operation=\"lookup\"}} {lookup_errors}\n\
             ivr_db_errors_total{{operation=\"records\"}} {record_errors}\n"
        );
    }
}

/// The recorder's counters: frames the writer thread took, and frames dropped because its
/// channel was full (the disk did not keep up).
fn recording_metrics(st: &ivr_media::recorder::RecorderStats, out: &mut String) {
    let _ = write!(
        out,
        "# HELP ivr_recording_frames_written_total Frames of call recordings the writer thread took to write to their files.\n\
         # TYPE ivr_recording_frames_written_total counter\n\
         ivr_recording_frames_written_total {}\n\
         # HELP ivr_recording_frames_dropped_total Frames of call recordings dropped because the writer's queue was full (the disk is not keeping up).\n\
         # TYPE ivr_recording_frames_dropped_total counter\n\
         ivr_recording_frames_dropped_total {}\n",
        st.received.load(Ordering::Relaxed),
        st.dropped.load(Ordering::Relaxed),
    );
}

/// A label value in the Prometheus text format (backslash, quote and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The routes.
pub fn router(d: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/state", get(state))
        .route("/dashboard/ws", get(ws))
        .route("/dashboard/history", get(history_json))
        .route("/flows", get(flows))
        .route("/flows/{name}", get(flow_page))
        .route("/flows/{name}/map.svg", get(flow_svg))
        .route("/flows/{name}/map.json", get(flow_json))
        .route("/flows/{name}/live", get(flow_live))
        .with_state(d)
}

async fn history_json(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    axum::Json(d.history.json())
}

async fn flows(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    let calls = d.calls().snapshot();
    Html(flow_map::list_page(
        &d.services.live.current(),
        &calls.by_node,
    ))
}

fn no_flow(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no live flow is named {name:?}\n"),
    )
        .into_response()
}

async fn flow_page(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    if !d.services.live.current().flows.contains_key(&name) {
        return no_flow(&name);
    }
    Html(flow_map::PAGE).into_response()
}

async fn flow_svg(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    match d.maps.drawn(&d.services.live.current(), &name).await {
        Some(m) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            m.svg.clone(),
        )
            .into_response(),
        None => no_flow(&name),
    }
}

async fn flow_json(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    match d.maps.drawn(&d.services.live.current(), &name).await {
        Some(m) => axum::Json(m.map.clone()).into_response(),
        None => no_flow(&name),
    }
}

async fn flow_live(State(d): State<Arc<Dashboard>>, Path(name): Path<String>) -> Response {
    let deployment = d.services.live.current();
    if !deployment.flows.contains_key(&name) {
        return no_flow(&name);
    }
    let calls = d.calls().snapshot();
    axum::Json(d.maps.live(&deployment, &name, &calls.by_node).await).into_response()
}

/// `?flow=NAME` on the WebSocket (percent-decoded; at most 200 bytes).
fn query_flow(uri: &Uri) -> Option<String> {
    let raw = uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("flow="))?;
    if raw.len() > 200 {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}

async fn state(State(d): State<Arc<Dashboard>>) -> impl IntoResponse {
    axum::Json(d.state().await)
}

async fn ws(State(d): State<Arc<Dashboard>>, uri: Uri, up: WebSocketUpgrade) -> Response {
    let flow = query_flow(&uri);
    ws_limits(up).on_upgrade(move |socket| push(d, socket, flow))
}

/// Sends the state at once, then every [`PUSH_EVERY`] and after changes, until the page
/// goes away.
async fn push(d: Arc<Dashboard>, mut socket: WebSocket, flow: Option<String>) {
    let mut changes = d.calls().subscribe();
    let mut acd_changes = d.services.acd_changes.clone();
    let mut tick = tokio::time::interval(PUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        // Seen before the state is read: a change while it is read is pushed next.
        changes.mark_unchanged();
        acd_changes.mark_unchanged();
        let text = d.state_with(flow.as_deref()).await.to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
        let sent = tokio::time::Instant::now();
        tokio::select! {
            _ = tick.tick() => {}
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::time::sleep_until(sent + MIN_PUSH).await;
            }
            r = acd_changes.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::time::sleep_until(sent + MIN_PUSH).await;
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flow_comes_from_the_query() {
        let uri = |s: &str| s.parse::<super::Uri>().expect("a URI");
        assert_eq!(
            super::query_flow(&uri("/dashboard/ws?flow=hotline")).as_deref(),
            Some("hotline")
        );
        assert_eq!(
            super::query_flow(&uri("/dashboard/ws?a=1&flow=a%20b")).as_deref(),
            Some("a b")
        );
        assert_eq!(super::query_flow(&uri("/dashboard/ws?flow=%zz")), None);
        assert_eq!(super::query_flow(&uri("/dashboard/ws")), None);
    }

    #[test]
    fn the_recorders_counters_are_rendered() {
        use std::sync::atomic::Ordering;
        let st = ivr_media::recorder::RecorderStats::default();
        st.received.store(1500, Ordering::Relaxed);
        st.dropped.store(3, Ordering::Relaxed);
        let mut out = String::new();
        super::recording_metrics(&st, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        for line in [
            "# TYPE ivr_recording_frames_written_total counter",
            "ivr_recording_frames_written_total 1500",
            "# TYPE ivr_recording_frames_dropped_total counter",
            "ivr_recording_frames_dropped_total 3",
        ] {
            assert!(lines.contains(&line), "{line}:\n{out}");
        }
    }
}
