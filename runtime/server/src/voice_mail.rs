//! The agents' voice-mail inbox: the messages callers left with `record` nodes, for the agents
//! of each message's queue (see `docs/console.md`, "Voice mail").
//!
//! - `GET /agent/messages` (`?done=1`: the done ones too): the messages the agent may see, as
//!   JSON, newest first ([`ivr_data::messages::MAX_LIST`] at most);
//! - `GET /agent/messages/ID/audio`: the message's WAV file, with `Range` requests (206) for
//!   seeking; the first play marks it heard;
//! - `POST /agent/messages/ID/done` (body `done`, `open`, or JSON `{"done": false}`): done, or
//!   open again.
//!
//! Every route needs the agent: the console's token (`Authorization: Bearer TOKEN`, or
//! `?token=TOKEN` for the page's `<audio>` element) or HTTP Basic with the agent's id and
//! password (through the same login limiter as the other agent routes). Without them: 401; a
//! message of a queue the agent does not serve: 403. An agent serves a queue when it has every
//! skill the queue asks for; a message of no queue, or of a queue no longer configured, is
//! every agent's.

use crate::agent_api::{self, Login};
use crate::agent_console::Console;
use crate::clock::local_now;
use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ivr_data::connect::Pool;
use ivr_data::messages::{self, Message};
use ivr_data::records::timestamp;
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest message file served (a `record` node's `max` of 10 minutes is 9.6 MB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// The inbox's routes.
pub fn router(c: Arc<Console>) -> Router {
    Router::new()
        .route("/agent/messages", get(list))
        .route("/agent/messages/{id}/audio", get(audio))
        .route("/agent/messages/{id}/done", post(done))
        .with_state(c)
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"ivr agents\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "the agent's login is needed\n",
    )
        .into_response()
}

fn query_param(q: Option<&str>, name: &str) -> Option<String> {
    q?.split('&').find_map(|p| {
        p.strip_prefix(name)
            .and_then(|v| v.strip_prefix('='))
            .map(String::from)
    })
}

/// The agent making the request: by the console's token, else by HTTP Basic.
async fn agent(
    c: &Console,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: SocketAddr,
) -> Result<String, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let token = bearer.or_else(|| query_param(query, "token"));
    let id = if let Some(token) = token {
        c.agent_of(&token).ok_or_else(challenge)?
    } else {
        let id = agent_api::basic_user(headers).ok_or_else(challenge)?;
        let login = c.api().login(&id, headers, peer).await;
        if login != Login::Granted {
            return Err(login.refusal(challenge()));
        }
        id
    };
    // A removed agent's token no longer opens anything.
    if c.api()
        .services
        .live
        .current()
        .config
        .agents
        .contains_key(&id)
    {
        Ok(id)
    } else {
        Err(challenge())
    }
}

/// The queues `agent` serves, and every configured queue.
fn queues(c: &Console, agent: &str) -> (Vec<String>, Vec<String>) {
    let deployment = c.api().services.live.current();
    let config = &deployment.config;
    let skills = config
        .agents
        .get(agent)
        .map(|a| a.skills.clone())
        .unwrap_or_default();
    let mine = config
        .queues
        .iter()
        .filter(|(_, q)| q.skills.iter().all(|s| skills.contains(s)))
        .map(|(name, _)| name.clone())
        .collect();
    (mine, config.queues.keys().cloned().collect())
}

fn visible(m: &Message, mine: &[String], configured: &[String]) -> bool {
    m.queue
        .as_ref()
        .is_none_or(|q| mine.contains(q) || !configured.contains(q))
}

fn no_database() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "no database: messages are kept in the configured database\n",
    )
        .into_response()
}

fn failed(e: &ivr_data::DataError) -> Response {
    tracing::warn!(error = %e, "voice mail: the database failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the database cannot be read now\n",
    )
        .into_response()
}

fn pool(c: &Console) -> Option<Pool> {
    c.api().services.catalogs.pool()
}

/// `GET /agent/messages`.
async fn list(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let who = match agent(&c, &headers, q.as_deref(), peer).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(pool) = pool(&c) else {
        return no_database();
    };
    let with_done = query_param(q.as_deref(), "done").is_some_and(|v| v == "1" || v == "true");
    let (mine, configured) = queues(&c, &who);
    match messages::list(&pool, &mine, &configured, with_done).await {
        Ok(list) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({
                "agent": who,
                "queues": mine,
                "messages": list,
            })),
        )
            .into_response(),
        Err(e) => failed(&e),
    }
}

/// The message `id` if `agent` may have it: else the answer (404, 403, 503).
async fn message_for(c: &Console, who: &str, id: &str) -> Result<(Pool, Message), Response> {
    let Some(pool) = pool(c) else {
        return Err(no_database());
    };
    let not_found = || (StatusCode::NOT_FOUND, "no such message\n").into_response();
    let Ok(id) = id.parse::<i64>() else {
        return Err(not_found());
    };
    let m = match messages::get(&pool, id).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(not_found()),
        Err(e) => return Err(failed(&e)),
    };
    let (mine, configured) = queues(c, who);
    if !visible(&m, &mine, &configured) {
        tracing::info!(agent = %who, message = id, "voice mail of another queue refused");
        return Err((
            StatusCode::FORBIDDEN,
            "this message belongs to a queue you do not serve\n",
        )
            .into_response());
    }
    Ok((pool, m))
}

/// `GET /agent/messages/ID/audio`.
async fn audio(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let who = match agent(&c, &headers, q.as_deref(), peer).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (pool, m) = match message_for(&c, &who, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let gone = || (StatusCode::GONE, "the message's audio file is gone\n").into_response();
    // Only files below the recordings folder are served, whatever a row says.
    let folder = c
        .api()
        .services
        .live
        .current()
        .config
        .recordings_dir
        .clone();
    let (Ok(folder), Ok(file)) = (
        tokio::fs::canonicalize(&folder).await,
        tokio::fs::canonicalize(&m.file).await,
    ) else {
        return gone();
    };
    if !file.starts_with(&folder) {
        tracing::warn!(message = m.id, file = %file.display(), "voice mail file outside the recordings folder");
        return gone();
    }
    match tokio::fs::metadata(&file).await {
        Ok(meta) if meta.len() <= MAX_FILE => {}
        _ => return gone(),
    }
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return gone();
    };
    if m.heard_at.is_none()
        && let Err(e) = messages::mark_heard(&pool, m.id, &who, timestamp(local_now())).await
    {
        return failed(&e);
    }
    ranged(
        bytes,
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
    )
}

/// The whole file (200), or the one range asked for (206; 416 when it is outside the file).
fn ranged(bytes: Vec<u8>, range: Option<&str>) -> Response {
    let len = bytes.len() as u64;
    let common = [
        (header::CONTENT_TYPE, "audio/wav".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::CACHE_CONTROL, "private, no-store".to_string()),
    ];
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return (StatusCode::OK, common, bytes).into_response();
    };
    // One range; several (`a-b, c-d`) are answered with the first.
    let first = spec.split(',').next().unwrap_or_default().trim();
    let parsed = match first.split_once('-') {
        Some(("", n)) => n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (len.saturating_sub(n), len.saturating_sub(1))),
        Some((a, "")) => a.parse::<u64>().ok().map(|a| (a, len.saturating_sub(1))),
        Some((a, b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => Some((a, b.min(len.saturating_sub(1)))),
            _ => None,
        },
        None => None,
    };
    match parsed {
        Some((start, end)) if start < len && start <= end => {
            let body = bytes[start as usize..=end as usize].to_vec();
            let mut resp = (StatusCode::PARTIAL_CONTENT, common, body).into_response();
            if let Ok(v) = format!("bytes {start}-{end}/{len}").parse() {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
        _ => {
            let mut resp = (StatusCode::RANGE_NOT_SATISFIABLE, common, Vec::new()).into_response();
            if let Ok(v) = format!("bytes */{len}").parse() {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
    }
}

/// `POST /agent/messages/ID/done`.
async fn done(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let who = match agent(&c, &headers, q.as_deref(), peer).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (pool, m) = match message_for(&c, &who, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let wanted = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("done").and_then(serde_json::Value::as_bool));
    let done = match (wanted, body.trim()) {
        (Some(d), _) => d,
        (None, "" | "done") => true,
        (None, "open") => false,
        (None, other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("say `done` or `open`, not `{other}`\n"),
            )
                .into_response();
        }
    };
    match messages::mark_done(&pool, m.id, &who, timestamp(local_now()), done).await {
        Ok(()) => {
            tracing::info!(agent = %who, message = m.id, done, "voice mail marked");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, Option<String>, Vec<u8>) {
        let code = r.status();
        let cr = r
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        (code, cr, b)
    }

    #[tokio::test]
    async fn ranges() {
        let data: Vec<u8> = (0..100u8).collect();
        let (c, _, b) = body(ranged(data.clone(), None)).await;
        assert_eq!((c, b.len()), (StatusCode::OK, 100));
        let (c, cr, b) = body(ranged(data.clone(), Some("bytes=10-19"))).await;
        assert_eq!(c, StatusCode::PARTIAL_CONTENT);
        assert_eq!(cr.as_deref(), Some("bytes 10-19/100"));
        assert_eq!(b, (10..20u8).collect::<Vec<_>>());
        let (_, cr, b) = body(ranged(data.clone(), Some("bytes=90-"))).await;
        assert_eq!((cr.as_deref(), b.len()), (Some("bytes 90-99/100"), 10));
        let (_, cr, b) = body(ranged(data.clone(), Some("bytes=-5"))).await;
        assert_eq!((cr.as_deref(), b.len()), (Some("bytes 95-99/100"), 5));
        let (_, _, b) = body(ranged(data.clone(), Some("bytes=95-500"))).await;
        assert_eq!(b.len(), 5);
        let (c, cr, _) = body(ranged(data.clone(), Some("bytes=100-"))).await;
        assert_eq!(c, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(cr.as_deref(), Some("bytes */100"));
        let (c, _, _) = body(ranged(data, Some("bytes=9-3"))).await;
        assert_eq!(c, StatusCode::RANGE_NOT_SATISFIABLE);
    }
}
