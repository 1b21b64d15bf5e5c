//! Calls from the browser on the HTTP interface of `ivr serve`:
//!
//! - `GET /`: the phone page (`phone.html`, shipped in the binary);
//! - `GET /routes`: what the page can call (flow names and `[routes]` keys), as JSON;
//! - `POST /calls/ROUTE` with an SDP offer (`application/sdp`), WHIP-style (RFC 9725):
//!   `201 Created`, the answer, `Location: /calls/ID`; the call runs the flow ROUTE names;
//! - `DELETE /calls/ID`: the caller hangs up;
//! - `GET /calls/ID/events`: the call's live transcript as server-sent events (JSON: `node`,
//!   `prompt` with the catalog's text, `key` (masked keys without their digit), `end` with
//!   the outcome).
//!
//! The media is [`ivr_media::webrtc`]'s; the call itself is the same [`call`] task as a SIP call's.

use crate::call::{self, Incoming, Note};
use crate::clock::local_now;
use crate::services::Services;
use crate::sip_task::{CoreStats, DialogEvent};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ivr_data::records::CallRecorder;
use ivr_engine::{CallInfo, Channel};
use ivr_media::audio::Law;
use ivr_media::webrtc::{self, Control, OfferError, RelayEnd, Session};
use ivr_sip::message::random_u64;
use ivr_sip::sdp::{self, Direction, Negotiated};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

/// The phone page.
const PHONE_PAGE: &str = include_str!("phone.html");
/// How long a browser may take to connect (ICE, DTLS) after the answer.
const CONNECT: Duration = Duration::from_secs(20);
/// How long an ended call's transcript stays readable.
const LINGER: Duration = Duration::from_secs(30);
/// Most lines kept in a transcript.
const MAX_LINES: usize = 2000;

/// The browser channel of `ivr serve`: its calls in progress and their transcripts.
pub struct Browser {
    /// What calls share (the live deployment, the pacer, RTP ports, the ACD task, ...).
    services: Services,
    /// The SIP core's counters (its dialogs count against `max_calls`).
    stats: Arc<CoreStats>,
    /// Browser calls admitted and not yet over (the SIP core counts them against `max_calls`).
    active: Arc<AtomicUsize>,
    draining: AtomicBool,
    calls: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    control: mpsc::UnboundedSender<Control>,
    transcript: Arc<Transcript>,
}

impl Browser {
    /// The browser channel of a server: `stats` are the SIP core's counters, `active` the
    /// browser calls in progress (shared with the SIP core, which counts them too).
    pub fn new(
        services: Services,
        stats: Arc<CoreStats>,
        active: Arc<AtomicUsize>,
    ) -> Arc<Browser> {
        Arc::new(Browser {
            services,
            stats,
            active,
            draining: AtomicBool::new(false),
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// Stops taking calls (503).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Ends every browser call now.
    pub fn terminate_all(&self) {
        self.drain();
        if let Ok(calls) = self.calls.lock() {
            for e in calls.values() {
                let _ = e.control.send(Control::Terminate);
            }
        }
    }

    /// Browser calls admitted and not yet over.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// A call's live transcript: every line so far (for whoever starts following late) and a
/// broadcast of the next ones.
struct Transcript {
    lines: Mutex<Vec<Line>>,
    tx: broadcast::Sender<Line>,
}

#[derive(Clone)]
struct Line {
    json: Arc<str>,
    end: bool,
}

impl Transcript {
    fn new() -> Arc<Transcript> {
        Arc::new(Transcript {
            lines: Mutex::new(Vec::new()),
            tx: broadcast::channel(256).0,
        })
    }

    fn push(&self, value: serde_json::Value, end: bool) {
        let line = Line {
            json: value.to_string().into(),
            end,
        };
        if let Ok(mut l) = self.lines.lock() {
            if l.len() < MAX_LINES || end {
                l.push(line.clone());
            }
            let _ = self.tx.send(line);
        }
    }

    fn note(&self, n: &Note) {
        use serde_json::json;
        match n {
            Note::Node(name) => self.push(json!({"type": "node", "name": name}), false),
            Note::Prompt(text) => self.push(json!({"type": "prompt", "text": text}), false),
            Note::Key(k) => self.push(json!({"type": "key", "key": k.to_string()}), false),
            Note::MaskedKey => self.push(json!({"type": "key", "masked": true}), false),
            Note::End(outcome) => self.push(json!({"type": "end", "outcome": outcome}), true),
        }
    }

    fn follow(&self) -> (VecDeque<Line>, broadcast::Receiver<Line>) {
        match self.lines.lock() {
            Ok(l) => (l.iter().cloned().collect(), self.tx.subscribe()),
            Err(_) => (VecDeque::new(), self.tx.subscribe()),
        }
    }
}

/// The browser channel's routes.
pub fn router(b: Arc<Browser>) -> Router {
    Router::new()
        .route("/", get(phone))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/routes", get(routes))
        .route("/calls/{route}", post(place).delete(hang_up))
        .route("/calls/{id}/events", get(events))
        .with_state(b)
}

async fn phone() -> impl IntoResponse {
    Html(PHONE_PAGE)
}

async fn routes(State(b): State<Arc<Browser>>) -> impl IntoResponse {
    let d = b.services.live.current();
    // Library flows (imported, never routed) are not offered.
    let mut out: Vec<serde_json::Value> = d
        .flows
        .keys()
        .filter(|f| !d.is_library(f))
        .map(|f| serde_json::json!({"route": f, "flow": f}))
        .collect();
    for (route, flow) in &d.config.routes {
        if d.flows.contains_key(route) {
            continue;
        }
        out.push(serde_json::json!({"route": route, "flow": flow}));
    }
    axum::Json(serde_json::json!({ "routes": out }))
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `POST /calls/ROUTE`.
async fn place(
    State(b): State<Arc<Browser>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = kind.split(';').next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be an SDP offer (Content-Type: application/sdp)",
        );
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the offer is not UTF-8");
    };
    if !offer.trim_start().starts_with("v=0") {
        return text(StatusCode::BAD_REQUEST, "the body is not an SDP offer");
    }
    if b.draining.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    if b.active() + b.stats.active.load(Ordering::Relaxed) >= b.services.max_calls {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many calls");
    }
    let deployment = b.services.live.current();
    let Some((_, flow)) = deployment.flow_for_route(&route) else {
        if deployment.routes_to_not_started(&route) {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the flow of `{route}` is not started (errors or missing audio)"),
            );
        }
        return text(StatusCode::NOT_FOUND, format!("no route `{route}`"));
    };
    let flow = Arc::clone(flow);
    let caller: String = headers
        .get("x-caller")
        .and_then(|v| v.to_str().ok())
        .map(|c| {
            c.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect()
        })
        .filter(|c: &String| !c.is_empty())
        .unwrap_or_else(|| "webrtc".to_string());
    // Counts from here until the call is over, however it ends (even when the client goes
    // away while we answer and this handler is dropped).
    let slot = Slot::take(&b);
    let session = match Session::answer(offer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "browser offer refused");
            return match e {
                OfferError::Bad(m) => text(StatusCode::BAD_REQUEST, m),
                OfferError::Internal(m) => text(StatusCode::INTERNAL_SERVER_ERROR, m),
            };
        }
    };
    let Some(port) = b.services.ports.allocate() else {
        session.close().await;
        tracing::warn!("no free RTP port");
        return text(StatusCode::SERVICE_UNAVAILABLE, "no free RTP port");
    };
    let id = format!("webrtc-{:016x}", random_u64());
    let answer = session.answer.clone();
    let info = CallInfo {
        id: id.clone(),
        caller,
        called: route,
        channel: Channel::Webrtc,
        contact: Vec::new(),
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let transcript = Transcript::new();
    if let Ok(mut calls) = b.calls.lock() {
        calls.insert(
            id.clone(),
            Entry {
                control: control_tx,
                transcript: Arc::clone(&transcript),
            },
        );
    }
    let span = tracing::info_span!("call", id = %id);
    tracing::info!(parent: &span, caller = %info.caller, route = %info.called, "browser call");
    let run = Run {
        _slot: slot,
        b: Arc::clone(&b),
        session,
        port,
        info,
        flow,
        deployment,
        control: control_rx,
        transcript,
    };
    tokio::spawn(run.go().instrument(span));
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/calls/{id}")),
        ],
        answer,
    )
        .into_response()
}

/// `DELETE /calls/ID`.
async fn hang_up(State(b): State<Arc<Browser>>, Path(id): Path<String>) -> Response {
    let found = b
        .calls
        .lock()
        .ok()
        .and_then(|c| c.get(&id).map(|e| e.control.send(Control::Hangup)));
    match found {
        // RFC 9725: 200 OK to a DELETE of the session.
        Some(_) => StatusCode::OK.into_response(),
        None => text(StatusCode::NOT_FOUND, format!("no call `{id}`")),
    }
}

/// `GET /calls/ID/events`: the transcript so far, then each line as it comes, until the end.
async fn events(State(b): State<Arc<Browser>>, Path(id): Path<String>) -> Response {
    let transcript = b
        .calls
        .lock()
        .ok()
        .and_then(|c| c.get(&id).map(|e| Arc::clone(&e.transcript)));
    let Some(t) = transcript else {
        return text(StatusCode::NOT_FOUND, format!("no call `{id}`"));
    };
    let (past, rx) = t.follow();
    let stream =
        futures_util::stream::unfold((past, rx, false), |(mut past, mut rx, done)| async move {
            if done {
                return None;
            }
            let line = match past.pop_front() {
                Some(l) => l,
                None => loop {
                    match rx.recv().await {
                        Ok(l) => break l,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            let end = line.end;
            let ev = SseEvent::default().data(&*line.json);
            Some((Ok::<_, std::convert::Infallible>(ev), (past, rx, end)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A browser call counted in [`Browser::active`] until dropped.
struct Slot(Arc<Browser>);

impl Slot {
    fn take(b: &Arc<Browser>) -> Slot {
        b.active.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(b))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One browser call from its answer to its end.
struct Run {
    _slot: Slot,
    b: Arc<Browser>,
    session: Session,
    port: ivr_media::ports::RtpPort,
    info: CallInfo,
    flow: Arc<ivr_engine::Flow>,
    deployment: Arc<crate::deploy::Deployment>,
    control: mpsc::UnboundedReceiver<Control>,
    transcript: Arc<Transcript>,
}

impl Run {
    async fn go(self) {
        let Run {
            _slot,
            b,
            mut session,
            port,
            info,
            flow,
            deployment,
            mut control,
            transcript,
        } = self;
        let id = info.id.clone();
        let arrived = local_now();
        let unserved = |outcome: &'static str| {
            if let Some(w) = b.services.writer.clone() {
                CallRecorder::new(w, Arc::clone(&flow), &info, arrived)
                    .unserved(outcome, local_now());
            }
            transcript.note(&Note::End(outcome));
        };
        let call_addr = port.socket().and_then(|s| s.local_addr().ok());
        let relay = match call_addr {
            Some(a) => webrtc::Relay::bind(a).await.ok(),
            None => None,
        };
        let relay_addr = relay.as_ref().and_then(|r| r.addr().ok());
        let (Some(relay), Some(relay_addr)) = (relay, relay_addr) else {
            tracing::error!("no relay socket");
            unserved("failed");
            session.close().await;
            b.over(&id);
            return;
        };
        let hung_up = tokio::select! {
            ok = session.connected(CONNECT) => if ok { None } else { Some("failed") },
            _ = control.recv() => Some("abandoned"),
        };
        if let Some(outcome) = hung_up {
            tracing::info!(outcome, "the browser did not connect");
            unserved(outcome);
            session.close().await;
            b.over(&id);
            return;
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (notes_tx, mut notes_rx) = mpsc::unbounded_channel();
        {
            let t = Arc::clone(&transcript);
            tokio::spawn(async move {
                while let Some(n) = notes_rx.recv().await {
                    t.note(&n);
                }
            });
        }
        let incoming = Incoming {
            info,
            flow,
            deployment,
            port,
            negotiated: Negotiated {
                index: 0,
                law: Law::Ulaw,
                pt: 0,
                event_pt: Some(sdp::DEFAULT_EVENT_PT),
                remote: Some(relay_addr),
                direction: Direction::SendRecv,
                srtp: None,
            },
            events: events_rx,
            tag: id.clone(),
            peer: None,
            notes: Some(notes_tx),
            cluster: None,
        };
        b.services.running.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(call::run(b.services.clone(), incoming).in_current_span());
        let end = webrtc::relay(&mut session, &relay, &mut control, events_tx.closed()).await;
        match end {
            RelayEnd::CallOver => {}
            RelayEnd::Hangup | RelayEnd::Terminate => {
                tracing::info!(?end, "the browser's call ends");
                let _ = events_tx.send(if end == RelayEnd::Hangup {
                    DialogEvent::Bye
                } else {
                    DialogEvent::Terminate
                });
                events_tx.closed().await;
            }
        }
        session.close().await;
        b.over(&id);
    }
}

impl Browser {
    /// A call is over: its transcript stays readable for a while.
    fn over(self: &Arc<Self>, id: &str) {
        let (b, id) = (Arc::clone(self), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            if let Ok(mut c) = b.calls.lock() {
                c.remove(&id);
            }
        });
    }
}
