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

/// The rows of one session waiting to be written (each mode switch takes two; one place is
/// always left for the final stop).
const EVENTS_WAITING: usize = 16;

/// The writer of one session's `supervisor_events` rows (`write` writes one), in the order
/// they are sent, one at a time, and its task (done once the sender is dropped and every row
/// sent is written).
fn event_writer<W, F>(write: W) -> (mpsc::Sender<String>, tokio::task::JoinHandle<()>)
where
    W: Fn(String) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let (tx, mut rx) = mpsc::channel::<String>(EVENTS_WAITING);
    let task = tokio::spawn(
        async move {
            while let Some(action) = rx.recv().await {
                write(action).await;
            }
        }
        .in_current_span(),
    );
    (tx, task)
}

/// [`event_writer`] into `supervisor_events`: `who` did each action on `call_id`.
fn session_events(
    s: &Arc<Supervisors>,
    who: &str,
    call_id: &str,
) -> (mpsc::Sender<String>, tokio::task::JoinHandle<()>) {
    let (s, who, call) = (Arc::clone(s), who.to_string(), call_id.to_string());
    event_writer(move |action| {
        let (s, who, call) = (Arc::clone(&s), who.clone(), call.clone());
        async move { s.log_event(&who, &action, Some(&call)).await }
    })
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
    // One task writes this session's rows, in the order they are sent: the media loop never
    // waits for the database, and a mode switch's rows cannot overtake each other or the
    // final stop.
    let (events, written) = session_events(s, who, call_id);
    let _ = events.try_send(format!("{}_start", current.as_str()));
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
                            // Room for both rows (and the final stop), or the switch is
                            // refused: the rows always say which mode was on.
                            if events.capacity() < 3 {
                                if !send(&mut ws, &ToPage::Error { message: "too many mode changes; try again" }).await {
                                    break None;
                                }
                                continue;
                            }
                            if modes_tx.send(m).is_err() {
                                break None;
                            }
                            tracing::info!(mode = m.as_str(), "supervisor's mode");
                            let _ = events.try_send(format!("{}_stop", current.as_str()));
                            let _ = events.try_send(format!("{}_start", m.as_str()));
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
    // The final stop is kept for last (one place is always left for it), after every row
    // before it is written.
    let _ = events.send(format!("{}_stop", current.as_str())).await;
    drop(events);
    if let Err(e) = written.await {
        tracing::warn!(error = %e, "supervisor events' writer ended abnormally");
    }
    if why == Some(SuperviseEnd::CallGone) {
        let _ = send(&mut ws, &ToPage::Ended { why: "call" }).await;
    }
    let _ = ws.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Rows are written in the order they are sent even when the first writes are the
    /// slowest, and all of them are written once the task is awaited.
    #[tokio::test]
    async fn a_sessions_rows_are_written_in_order() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&written);
        let (tx, task) = event_writer(move |action: String| {
            let into = Arc::clone(&into);
            async move {
                // `start` rows are slow to write, `stop` rows fast: written each on its own,
                // a stop would overtake the start sent before it.
                let ms = if action.ends_with("start") { 30 } else { 1 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                into.lock().map(|mut v| v.push(action)).unwrap_or_default();
            }
        });
        let mut sent = vec!["listen_start".to_string()];
        for (old, new) in [
            ("listen", "whisper"),
            ("whisper", "barge"),
            ("barge", "listen"),
        ] {
            sent.push(format!("{old}_stop"));
            sent.push(format!("{new}_start"));
        }
        for action in &sent {
            assert!(tx.try_send(action.clone()).is_ok());
        }
        sent.push("listen_stop".into());
        assert!(tx.send("listen_stop".into()).await.is_ok());
        drop(tx);
        assert!(task.await.is_ok());
        let written = written.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(written, sent);
    }
}
