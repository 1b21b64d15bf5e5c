//! The media half of `/supervisor`: a logged-in supervisor listens to a call bridged to an
//! agent, whispers to the agent or barges in, over WebRTC from the browser. Agents and
//! callers are never told.
//!
//! `GET /supervisor/calls/CALLID/media?mode=listen|whisper|barge` opens a WebSocket (refused
//! with 401 without a supervisor's login; a page of another site is refused with 403 before any
//! route, by [`crate::http::guard`]). On it, as JSON text:
//!
//! - the page sends `{"type":"offer","sdp":"..."}` (PCMU, ICE gathered in full); the server
//!   attaches to the call ([`crate::supervise_taps`]) and answers `{"type":"answer","sdp":...}`,
//!   or `{"type":"error","message":...}` and closes (no such call, not with an agent, another
//!   supervisor on it);
//! - `{"type":"mode","mode":"whisper"}` switches the mode at once; the server confirms with
//!   `{"type":"mode","mode":...}`;
//! - the server sends `{"type":"ended","why":"call"}` when the conversation with the agent is
//!   over, and closes. Closing the socket (or the page) ends the session.
//!
//! Each mode's start and stop is a row of `supervisor_events` (`listen_start`,
//! `listen_stop`, `whisper_start`, ... with the call id). The script the page uses is
//! `GET /supervisor/supervise.js` (`window.ivrSupervise`).

use crate::supervisor::Supervisors;
use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ivr_media::supervise::Mode;
use ivr_media::webrtc::{self, Session, SuperviseEnd};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// The script of the page's Listen, Whisper and Barge buttons.
const SCRIPT: &str = include_str!("supervise.js");
/// How long the page may take to send its offer.
const OFFER_WITHIN: Duration = Duration::from_secs(15);
/// The largest message taken from the page (an SDP offer is a few KB).
const MAX_MESSAGE: usize = 64 * 1024;

/// The routes (state: the supervisors).
pub fn routes() -> Router<Arc<Supervisors>> {
    Router::new()
        .route("/supervisor/calls/{id}/media", get(media))
        .route("/supervisor/supervise.js", get(script))
}

/// `GET /supervisor/supervise.js`: served to logged-in supervisors only, like the page.
async fn script(State(s): State<Arc<Supervisors>>, headers: HeaderMap) -> Response {
    if s.who(&headers).is_none() {
        return crate::supervisor::challenge();
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromPage {
    Offer { sdp: String },
    Mode { mode: String },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToPage<'a> {
    Answer { sdp: &'a str },
    Mode { mode: &'a str },
    Ended { why: &'a str },
    Error { message: &'a str },
}

/// `GET /supervisor/calls/CALLID/media?mode=...`.
async fn media(
    State(s): State<Arc<Supervisors>>,
    Path(call_id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(who) = s.who(&headers) else {
        return crate::supervisor::challenge();
    };
    let asked = q
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("mode="));
    let mode = match asked {
        None => Mode::Listen,
        Some(m) => match Mode::parse(m) {
            Some(m) => m,
            None => {
                return (StatusCode::BAD_REQUEST, "mode: listen, whisper or barge\n")
                    .into_response();
            }
        },
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |sock| {
            let span = tracing::info_span!("supervise", supervisor = %who, call = %call_id);
            async move { run(&s, &who, &call_id, mode, sock).await }.instrument(span)
        })
        .into_response()
}

async fn send(ws: &mut WebSocket, msg: &ToPage<'_>) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => ws.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => true,
    }
}

/// The page's offer, or `None` when it closed or sent something else first.
async fn offer(ws: &mut WebSocket) -> Option<String> {
    let m = tokio::time::timeout(OFFER_WITHIN, ws.recv()).await.ok()??;
    match m.ok()? {
        Message::Text(t) => match serde_json::from_str::<FromPage>(t.as_str()) {
            Ok(FromPage::Offer { sdp }) => Some(sdp),
            _ => None,
        },
        _ => None,
    }
}

async fn fail(ws: &mut WebSocket, message: &str) {
    let _ = send(ws, &ToPage::Error { message }).await;
    let _ = ws.send(Message::Close(None)).await;
}

/// One supervisor's session, from the offer to its end.
async fn run(s: &Arc<Supervisors>, who: &str, call_id: &str, mode: Mode, mut ws: WebSocket) {
    let Some(sdp) = offer(&mut ws).await else {
        fail(&mut ws, "send an offer first").await;
        return;
    };
    let mut end = match s.services().taps.attach(call_id, mode).await {
        Ok(end) => end,
        Err(e) => {
            tracing::info!(error = %e, "supervision refused");
            fail(&mut ws, &e.to_string()).await;
            return;
        }
    };
    let mut session = match Session::answer(&sdp).await {
        Ok(session) => session,
        Err(e) => {
            tracing::info!(error = %e, "supervisor's offer refused");
            fail(&mut ws, &e.to_string()).await;
            return;
        }
    };
    if !send(
        &mut ws,
        &ToPage::Answer {
            sdp: &session.answer,
        },
    )
    .await
    {
        session.close().await;
        return;
    }
    let mut current = mode;
    s.log_event(who, &format!("{}_start", current.as_str()), Some(call_id))
        .await;
    // One mode change per message of the page's (itself bounded in size and read one at a
    // time): the media loop takes each at once.
    let (modes_tx, mut modes_rx) = mpsc::unbounded_channel();
    let why = {
        let media = webrtc::supervise(&mut session, &mut end, &mut modes_rx);
        tokio::pin!(media);
        loop {
            tokio::select! {
                why = &mut media => break Some(why),
                m = ws.recv() => match m {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(FromPage::Mode { mode }) = serde_json::from_str::<FromPage>(t.as_str()) else {
                            if !send(&mut ws, &ToPage::Error { message: "not understood" }).await {
                                break None;
                            }
                            continue;
                        };
                        let Some(m) = Mode::parse(&mode) else {
                            if !send(&mut ws, &ToPage::Error { message: "mode: listen, whisper or barge" }).await {
                                break None;
                            }
                            continue;
                        };
                        if m != current {
                            if modes_tx.send(m).is_err() {
                                break None;
                            }
                            tracing::info!(mode = m.as_str(), "supervisor's mode");
                            // Written beside the media loop, which must not wait for a database.
                            let (s, who, call) = (Arc::clone(s), who.to_string(), call_id.to_string());
                            let (old, new) = (current, m);
                            tokio::spawn(async move {
                                s.log_event(&who, &format!("{}_stop", old.as_str()), Some(&call)).await;
                                s.log_event(&who, &format!("{}_start", new.as_str()), Some(&call)).await;
                            });
                            current = m;
                        }
                        if !send(&mut ws, &ToPage::Mode { mode: current.as_str() }).await {
                            break None;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => {}
                },
            }
        }
    };
    drop(end);
    session.close().await;
    s.log_event(who, &format!("{}_stop", current.as_str()), Some(call_id))
        .await;
    if why == Some(SuperviseEnd::CallGone) {
        let _ = send(&mut ws, &ToPage::Ended { why: "call" }).await;
    }
    let _ = ws.send(Message::Close(None)).await;
}
