//! `GET /supervisor` (the page, `supervisor.html`, shipped in the binary), `POST
//! /supervisor/login` (HTTP Basic in; `{"token", "supervisor", "name"}` out, and the session
//! cookie), `POST /supervisor/logout` and `GET /supervisor/me` (who is logged in).

use super::Supervisors;
use super::sessions::{COOKIE, IDLE, token_of};
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;

/// The page.
const PAGE: &str = include_str!("supervisor.html");

/// The page's routes (state: the supervisors).
pub fn routes() -> Router<Arc<Supervisors>> {
    Router::new()
        .route("/supervisor", get(page))
        .route("/supervisor/login", post(login))
        .route("/supervisor/logout", post(logout))
        .route("/supervisor/me", get(me))
        .route("/supervisor/{*rest}", axum::routing::any(elsewhere))
}

/// Any other path under `/supervisor/`: a login first, then 404 (nobody learns which paths
/// exist without one).
async fn elsewhere(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match s.authorize(&headers, peer).await {
        Ok(_) => (StatusCode::NOT_FOUND, private(), "not found\n").into_response(),
        Err(r) => r,
    }
}

/// Headers every answer of `/supervisor` carries: nothing cached, no framing by other sites.
pub fn private() -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

async fn page(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match s.authorize(&headers, peer).await {
        Ok(_) => (private(), Html(PAGE)).into_response(),
        Err(r) => r,
    }
}

/// `GET /supervisor/me`: `{"supervisor", "name", "session"}` — who the request comes from,
/// and whether by a session (else HTTP Basic).
async fn me(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let id = match s.authorize(&headers, peer).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let session = token_of(&headers).is_some_and(|t| s.sessions().touch(&t).is_some());
    (
        private(),
        axum::Json(serde_json::json!({
            "supervisor": id,
            "name": s.name_of(&id),
            "session": session,
        })),
    )
        .into_response()
}

/// `POST /supervisor/login`.
async fn login(
    State(s): State<Arc<Supervisors>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // Only a password opens a session (not another session).
    let (login, id) = s.passwords.login(&headers, peer).await;
    if login != crate::agent_api::Login::Granted {
        return login.refusal(super::challenge());
    }
    let Some(token) = s.sessions().open(&id) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n").into_response();
    };
    s.log_event(&id, "login", None).await;
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        IDLE.as_secs()
    );
    let mut r = axum::Json(serde_json::json!({
        "token": token,
        "supervisor": id,
        "name": s.name_of(&id),
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /supervisor/logout`: ends the request's session (and clears the cookie).
async fn logout(State(s): State<Arc<Supervisors>>, headers: HeaderMap) -> Response {
    if let Some(id) = token_of(&headers).and_then(|t| s.sessions().close(&t)) {
        s.log_event(&id, "logout", None).await;
    }
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}
