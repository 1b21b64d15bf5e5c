//! The recordings for supervisors:
//!
//! - `GET /supervisor/recordings?caller=&agent=&queue=&since=&until=&kind=&limit=&offset=`:
//!   one page (at most [`MAX_PAGE`] rows, newest first) of the recordings of both kinds as
//!   JSON, without their paths; `caller` matches any part of the number; `since` and `until`
//!   are the server's local time (as the rows keep it), `YYYY-MM-DD` (`until` a whole day: up
//!   to its end) or `YYYY-MM-DDTHH:MM[:SS]` (an instant with `Z` or an offset is converted).
//!   A `search` row of `supervisor_events`.
//! - `GET /supervisor/recordings/ID`: the recording's WAV file, streamed, with one `Range`
//!   (206 and `Content-Range`; 416 for any other range, see [`super::byte_range`]). The file
//!   is the one the row names, and only when it lies below the recordings folders
//!   (`[recording] folder`, `[paths] recordings`): nothing of the request ever becomes a path.
//!   A `play` row of `supervisor_events` (with the call) when playing starts (no `Range`, or
//!   one from byte 0; the seeks of the player are not rows of their own).

use super::Supervisors;
use super::byte_range::{Part, part};
use super::page::private;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDate, NaiveDateTime};
use ivr_data::recording_search::{self, MAX_PAGE, Search};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read from the file at a time while streaming it.
const CHUNK: usize = 64 * 1024;

/// The routes (state: the supervisors).
pub fn routes() -> Router<Arc<Supervisors>> {
    Router::new()
        .route("/supervisor/recordings", get(search))
        .route("/supervisor/recordings/{id}", get(file))
}

fn bad(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, private(), format!("{why}\n")).into_response()
}

fn no_database() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        private(),
        "no database: recordings cannot be searched\n",
    )
        .into_response()
}

fn failed(e: &ivr_data::DataError) -> Response {
    tracing::warn!(error = %e, "recordings search failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        private(),
        "the database did not answer\n",
    )
        .into_response()
}

/// A time of the search, in the server's local time as the rows keep it: `YYYY-MM-DD` (its
/// start; with `end`, the next day's start) or `YYYY-MM-DDTHH:MM[:SS]`. An instant with `Z` or
/// an offset (`2026-12-07T01:00:00Z`, `...+08:00`) is turned into the server's local time.
pub fn parse_time(s: &str, end: bool) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end { d.succ_opt()? } else { d };
        return d.and_hms_opt(0, 0, 0);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Local).naive_local());
    }
    if let Some(utc) = s.strip_suffix('Z') {
        return parse_naive(utc).map(|t| t.and_utc().with_timezone(&chrono::Local).naive_local());
    }
    parse_naive(s)
}

/// A date and time without a zone.
fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    None
}

/// Why a search's query string cannot be read (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A value longer than [`recording_search::MAX_TERM`] characters.
    #[error("`{0}` is too long")]
    TooLong(String),
    /// `kind` is neither `call` nor `message`.
    #[error("`kind` is `call` or `message`")]
    Kind,
    /// `since` or `until` is not a date or a time.
    #[error("`{0}` is YYYY-MM-DD or YYYY-MM-DDTHH:MM")]
    Time(&'static str),
    /// `limit` is out of range.
    #[error("`limit` is 1 to {MAX_PAGE}")]
    Limit,
    /// `offset` is out of range.
    #[error("`offset` is too large")]
    Offset,
}

/// The search a query string asks for, or why it cannot be read.
pub fn parse_search(query: &str) -> Result<Search, SearchError> {
    let mut s = Search::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.trim().to_string();
        // Empty values, and unknown parameters (a cache buster), are left alone.
        let known = [
            "caller", "agent", "queue", "kind", "since", "until", "limit", "offset",
        ];
        if v.is_empty() || !known.contains(&k.as_ref()) {
            continue;
        }
        if v.chars().count() > recording_search::MAX_TERM {
            return Err(SearchError::TooLong(k.chars().take(20).collect()));
        }
        match k.as_ref() {
            "caller" => s.caller = Some(v),
            "agent" => s.agent = Some(v),
            "queue" => s.queue = Some(v),
            "kind" => match v.as_str() {
                "call" | "message" => s.kind = Some(v),
                _ => return Err(SearchError::Kind),
            },
            "since" => {
                s.since = Some(parse_time(&v, false).ok_or(SearchError::Time("since"))?);
            }
            "until" => {
                s.until = Some(parse_time(&v, true).ok_or(SearchError::Time("until"))?);
            }
            "limit" => {
                s.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or(SearchError::Limit)?;
            }
            "offset" => {
                s.offset = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= recording_search::MAX_OFFSET)
                    .ok_or(SearchError::Offset)?;
            }
            _ => {}
        }
    }
    Ok(s)
}

/// `GET /supervisor/recordings`.
async fn search(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let who = match s.authorize(&headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let search = match parse_search(q.as_deref().unwrap_or_default()) {
        Ok(x) => x,
        Err(why) => return bad(&why.to_string()),
    };
    let Some(pool) = s.pool() else {
        return no_database();
    };
    s.log_event(&who, "search", None).await;
    let limit = match search.limit {
        0 => recording_search::DEFAULT_PAGE,
        n => n,
    };
    match recording_search::search(pool, &search).await {
        Ok(rows) => {
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id,
                        "kind": r.kind,
                        "call_id": r.call_id,
                        "caller": r.caller,
                        "agent": r.agent,
                        "queue": r.queue,
                        "recorded_at": r.recorded_at,
                        "length_ms": r.length_ms,
                        "sha256": r.sha256,
                        "has_file": r.file.is_some(),
                    })
                })
                .collect();
            (
                private(),
                axum::Json(serde_json::json!({
                    "recordings": rows,
                    "limit": limit,
                    "offset": search.offset,
                })),
            )
                .into_response()
        }
        Err(e) => failed(&e),
    }
}

/// The folders recordings may be served from, as they are on disk.
async fn folders(s: &Supervisors) -> Vec<PathBuf> {
    let deployment = s.services().live.current();
    let config = &deployment.config;
    let mut out = Vec::new();
    for f in [&config.recording.folder, &config.recordings_dir] {
        if let Ok(c) = tokio::fs::canonicalize(f).await {
            out.push(c);
        }
    }
    out
}

/// `GET /supervisor/recordings/ID`.
async fn file(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match s.authorize(&headers, peer).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let not_found = || (StatusCode::NOT_FOUND, private(), "no such recording\n").into_response();
    let gone = || {
        (
            StatusCode::GONE,
            private(),
            "the recording's file is gone\n",
        )
            .into_response()
    };
    let Some(id) = id.parse::<i64>().ok().filter(|i| *i > 0) else {
        return not_found();
    };
    let Some(pool) = s.pool() else {
        return no_database();
    };
    let row = match recording_search::by_id(pool, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return failed(&e),
    };
    let Some(path) = row.file.as_deref() else {
        return gone();
    };
    // Only a regular file below a recordings folder, whatever the row says.
    let Ok(path) = tokio::fs::canonicalize(path).await else {
        return gone();
    };
    if !folders(&s).await.iter().any(|f| path.starts_with(f)) {
        tracing::warn!(recording = id, file = %path.display(), "recording outside the recordings folders");
        return gone();
    }
    let Ok(mut f) = tokio::fs::File::open(&path).await else {
        return gone();
    };
    let len = match f.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return gone(),
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let wanted = if headers.contains_key(header::RANGE) && range.is_none() {
        Part::Unsatisfiable
    } else {
        part(range, len)
    };
    let (status, start, count) = match wanted {
        Part::Whole => (StatusCode::OK, 0, len),
        Part::Bytes { start, end } => match end.checked_sub(start).and_then(|n| n.checked_add(1)) {
            Some(n) => (StatusCode::PARTIAL_CONTENT, start, n),
            None => (StatusCode::RANGE_NOT_SATISFIABLE, 0, 0),
        },
        Part::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, 0, 0),
    };
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let mut r = (status, private(), Body::empty()).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return r;
    }
    if start == 0 {
        s.log_event(&who, "play", Some(&row.call_id)).await;
    }
    if start > 0 && f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return gone();
    }
    let body = Body::from_stream(futures_util::stream::unfold(
        (f, count),
        |(mut f, left)| async move {
            if left == 0 {
                return None;
            }
            let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            let mut buf = vec![0u8; n];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(got) => {
                    buf.truncate(got);
                    let left = left.saturating_sub(got as u64);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (f, left)))
                }
                Err(e) => Some((Err(e), (f, 0))),
            }
        },
    ));
    let mut r = (status, private(), body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Some(end) = start.checked_add(count).and_then(|e| e.checked_sub(1))
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_read() {
        let s = parse_search("caller=%2B86139&agent=2001&queue=billing&kind=call&since=2026-12-01&until=2026-12-06&limit=20&offset=40&_=1")
            .unwrap_or_default();
        assert_eq!(s.caller.as_deref(), Some("+86139"));
        assert_eq!(s.agent.as_deref(), Some("2001"));
        assert_eq!(s.queue.as_deref(), Some("billing"));
        assert_eq!(s.kind.as_deref(), Some("call"));
        assert_eq!(s.since, parse_time("2026-12-01T00:00", false));
        assert_eq!(s.until, parse_time("2026-12-07T00:00:00", false));
        assert_eq!((s.limit, s.offset), (20, 40));
        assert_eq!(parse_search("").ok(), Some(Search::default()));
        for bad in [
            "kind=video",
            "since=yesterday",
            "limit=0",
            "limit=100000",
            "offset=99999999999",
            "until=2026-13-01",
        ] {
            assert!(parse_search(bad).is_err(), "{bad}");
        }
        assert!(parse_search(&format!("caller={}", "1".repeat(65))).is_err());
    }

    /// Dates and times without a zone are the server's local time, as the rows keep it; an
    /// instant with `Z` or an offset is turned into it.
    #[test]
    fn times_are_the_servers_local_time() {
        let local = |t: &str| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok();
        assert_eq!(
            parse_time("2026-12-07", false),
            local("2026-12-07 00:00:00")
        );
        assert_eq!(parse_time("2026-12-07", true), local("2026-12-08 00:00:00"));
        assert_eq!(
            parse_time("2026-12-07T09:30", false),
            local("2026-12-07 09:30:00")
        );
        let utc = chrono::DateTime::parse_from_rfc3339("2026-12-07T01:00:00Z")
            .map(|t| t.with_timezone(&chrono::Local).naive_local())
            .ok();
        assert_eq!(parse_time("2026-12-07T01:00:00Z", false), utc);
        assert_eq!(parse_time("2026-12-07T01:00Z", false), utc);
        assert_eq!(parse_time("2026-12-07T09:00:00+08:00", false), utc);
    }
}
