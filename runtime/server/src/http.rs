//! The HTTP interface of `ivr serve` (`[server] http`, `--http`): `GET /status`, the live
//! version and the last reload attempt with its diagnostics (JSON), and `GET /metrics`, a few
//! counters in the Prometheus text format (with the series of [`crate::dashboard`]). Calls
//! from the browser (the phone page, `POST /calls/ROUTE`, ...) are [`crate::browser`]'s
//! routes, the agents' ([`crate::agent_api`], [`crate::agent_console`]), the dashboard's
//! (`/dashboard`) and the supervisors' ([`crate::supervisor`], `/supervisor`) their own; all
//! are merged in here.
//!
//! [`serve`] runs the interface: its own accept loop over hyper's HTTP/1 connections, so that
//! each connection has [`HEADER_TIMEOUT`] to send a request head (idle kept-alive connections
//! too), heads are bounded ([`MAX_HEAD`]), and connections are counted: beyond
//! [`Limits::max_connections`] in all, or [`Limits::max_per_address`] from one address, a new
//! one is closed at once. [`guard`] stands before every route: a WebSocket upgrade or a
//! change (not GET, HEAD, OPTIONS) from a page of another site is refused (403), and a body is
//! read whole before the route sees it, within [`body_limit`] (413) and [`BODY_TIMEOUT`] (408).

use crate::agent_api::{self, AgentApi};
use crate::agent_console::{self, Console};
use crate::browser::{self, Browser};
use crate::dashboard::{self, Dashboard};
use crate::http_limits::{
    BODY_TIMEOUT, HEADER_TIMEOUT, HttpStats, MAX_HEAD, body_limit, is_websocket, origin_allowed,
};
use crate::services::Services;
use crate::sip_task::CoreStats;
use crate::supervisor::{self, Supervisors};
use crate::voice_mail;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// What the server shares: the live deployment and the reload history, the calls whose
    /// flow is running.
    pub services: Services,
    /// Counters of the user-agent core.
    pub stats: Arc<CoreStats>,
    /// Calls from the browser.
    pub browser: Option<Arc<Browser>>,
    /// Agents and queues (`/agents`).
    pub agents: Option<AgentApi>,
    /// The dashboard (`/dashboard`) and the series of `/metrics` it shares.
    pub dashboard: Option<Arc<Dashboard>>,
    /// The agent console (`/agent`).
    pub console: Option<Arc<Console>>,
    /// The supervisors (`/supervisor`): who a request comes from, the events log.
    pub supervisors: Option<Arc<Supervisors>>,
}

/// The routes, each behind [`guard`].
pub fn router(state: HttpState) -> Router {
    let browser = state.browser.clone();
    let agents = state.agents.clone();
    let dashboard = state.dashboard.clone();
    let console = state.console.clone();
    let supervisors = state.supervisors.clone();
    let services = state.services.clone();
    let r = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state);
    let r = r.merge(crate::campaigns::router(services.clone()));
    let r = match agents {
        Some(a) => r.merge(agent_api::router(a)),
        None => r,
    };
    let r = match dashboard {
        Some(d) => r.merge(dashboard::router(d)),
        None => r,
    };
    let r = match console {
        Some(c) => r
            .merge(agent_console::router(c.clone()))
            .merge(voice_mail::router(c)),
        None => r,
    };
    let r = match browser {
        Some(b) => r.merge(browser::router(b)),
        None => r,
    };
    let r = match supervisors {
        Some(s) => r
            .merge(supervisor::router(Arc::clone(&s)))
            .merge(crate::supervise_media::routes().with_state(s)),
        None => r,
    };
    r.layer(axum::middleware::from_fn_with_state(services, guard))
}

/// Before every route: a WebSocket upgrade or a change (any method but GET, HEAD, OPTIONS)
/// whose `Origin` is another site's is refused (403, [`origin_allowed`]); a body is read
/// whole, at most [`body_limit`] bytes (413, at once when its `Content-Length` says more)
/// within [`BODY_TIMEOUT`] (408), and handed on.
pub async fn guard(State(services): State<Services>, req: Request, next: Next) -> Response {
    let stats = &services.http;
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let https = req.extensions().get::<OverTls>().is_some_and(|t| t.0);
    if (changes || is_websocket(req.headers())) && !origin_allowed(req.headers(), https) {
        HttpStats::count(&stats.origin_refused);
        tracing::debug!(
            origin = ?req.headers().get(header::ORIGIN),
            path = %req.uri().path(),
            "HTTP request from another site refused"
        );
        return refusal(
            StatusCode::FORBIDDEN,
            "requests from another site are refused",
        );
    }
    let limit = body_limit(req.method(), req.uri().path());
    match bounded(req, limit).await {
        Ok(req) => next.run(req).await,
        Err(Bounded::TooLarge) => {
            HttpStats::count(&stats.too_large);
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body may have {limit} bytes at most"),
            )
        }
        Err(Bounded::Slow) => {
            HttpStats::count(&stats.body_timeouts);
            refusal(StatusCode::REQUEST_TIMEOUT, "the body came too slowly")
        }
        Err(Bounded::Broken) => refusal(StatusCode::BAD_REQUEST, "the body is broken"),
    }
}

/// A short plain-text answer that also closes the connection.
fn refusal(code: StatusCode, text: &str) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        format!("{text}\n"),
    )
        .into_response()
}

/// Why a body was not taken.
enum Bounded {
    TooLarge,
    Slow,
    Broken,
}

/// The request with its body read whole (at most `limit` bytes, within [`BODY_TIMEOUT`]); a
/// request without a body as it is.
async fn bounded(req: Request, limit: usize) -> Result<Request, Bounded> {
    use axum::body::HttpBody as _;
    let hint = req.body().size_hint();
    if hint.exact() == Some(0) {
        return Ok(req);
    }
    // A Content-Length beyond the limit: refused before a byte of the body is read.
    if hint.lower() > limit as u64 {
        return Err(Bounded::TooLarge);
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect()).await;
    match read {
        Err(_) => Err(Bounded::Slow),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Bounded::TooLarge),
        Ok(Err(_)) => Err(Bounded::Broken),
        Ok(Ok(body)) => Ok(Request::from_parts(parts, Body::from(body.to_bytes()))),
    }
}

/// How many connections the HTTP interface holds (`[server] max_http_connections` and
/// `max_http_connections_per_address`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, in all (WebSockets included).
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_per_address: usize,
}

/// The address connections are counted under: IPv4 (IPv4-mapped IPv6 too) by address, IPv6
/// by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Connections open per address.
type Table = Mutex<HashMap<IpAddr, usize>>;

/// One connection counted, in all and for its address, until dropped.
struct Slot {
    services: Services,
    table: Arc<Table>,
    key: IpAddr,
}

impl Slot {
    /// A slot for a connection from `ip`, or which limit it met.
    fn take(
        services: &Services,
        table: &Arc<Table>,
        limits: Limits,
        ip: IpAddr,
    ) -> Result<Slot, &'static str> {
        let key = address_key(ip);
        let mut t = table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = &services.http.open;
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            HttpStats::count(&services.http.refused_total_cap);
            return Err("total");
        }
        let mine = t.entry(key).or_insert(0);
        if *mine >= limits.max_per_address {
            HttpStats::count(&services.http.refused_address_cap);
            return Err("address");
        }
        *mine += 1;
        open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            services: services.clone(),
            table: Arc::clone(table),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = t.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.key);
            }
        }
        self.services.http.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket with its [`Slot`]: counted as long as the socket lives, also after
/// hyper hands it to a WebSocket.
struct Counted {
    io: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `stop` turns true (then connections finish the request
/// they are on): one task per connection, within `limits`; each request carries the peer's
/// address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    services: Services,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let table: Arc<Table> = Arc::default();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors (or a connection gone before it was taken): wait a
                // moment rather than spin.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match Slot::take(&services, &table, limits, peer.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                tracing::debug!(%peer, limit, "HTTP connection refused");
                // Reset rather than close: nothing lingers here for a flood of them.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = Counted {
            io: stream,
            _slot: slot,
        };
        let (app, services, stop) = (app.clone(), services.clone(), stop.clone());
        match tls.clone() {
            None => {
                tokio::spawn(connection(io, peer, app, services, stop, false));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    // The handshake has the head's time limit (and holds the slot meanwhile).
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => connection(tls, peer, app, services, stop, true).await,
                        Ok(Err(e)) => {
                            HttpStats::count(&services.http.tls_failed);
                            tracing::debug!(%peer, error = %e, "HTTPS handshake failed");
                        }
                        Err(_) => {
                            HttpStats::count(&services.http.header_timeouts);
                            tracing::debug!(%peer, "HTTPS handshake not done in time");
                        }
                    }
                });
            }
        }
    }
}

/// Whether the request came over HTTPS (`[server] https`), for the origin check.
#[derive(Debug, Clone, Copy)]
pub struct OverTls(pub bool);

/// One connection, from its first request head to its close.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    services: Services,
    mut stop: watch::Receiver<bool>,
    over_tls: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(OverTls(over_tls));
        let mut app = app.clone();
        tower_service::Service::call(&mut app, req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            HttpStats::count(&services.http.header_timeouts);
            tracing::debug!(%peer, "HTTP request head not sent in time");
        } else if e.is_parse_too_large() {
            HttpStats::count(&services.http.too_large);
        }
    }
}

async fn status(State(s): State<HttpState>) -> impl IntoResponse {
    let mut status = s.services.live.status();
    if let Some(c) = &s.services.cluster
        && let Some(obj) = status.as_object_mut()
    {
        let version = s.services.live.current().version.clone();
        obj.insert("cluster".into(), c.status(&version));
    }
    axum::Json(status)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let mut out = String::new();
    let (ok, failed) = s.services.live.counts();
    let live = s.services.live.current();
    let version = live.version.clone();
    let _ = write!(
        out,
        "# HELP ivr_calls_in_progress Calls whose flow is running.\n\
         # TYPE ivr_calls_in_progress gauge\n\
         ivr_calls_in_progress {}\n\
         # HELP ivr_calls_in_node Calls in progress by flow and the node they are in.\n\
         # TYPE ivr_calls_in_node gauge\n",
        s.services.running.load(Ordering::Relaxed),
    );
    if let Some(d) = &s.dashboard {
        d.metrics_calls_by_node(&mut out);
    }
    let _ = write!(
        out,
        "# HELP ivr_dialogs_active SIP dialogs now (ringing or answered).\n\
         # TYPE ivr_dialogs_active gauge\n\
         ivr_dialogs_active {}\n\
         # HELP ivr_calls_answered_total Calls answered since start.\n\
         # TYPE ivr_calls_answered_total counter\n\
         ivr_calls_answered_total {}\n\
         # HELP ivr_calls_refused_total INVITEs refused (4xx/5xx) since start.\n\
         # TYPE ivr_calls_refused_total counter\n\
         ivr_calls_refused_total {}\n\
         # HELP ivr_reloads_total Reloads since start, by result.\n\
         # TYPE ivr_reloads_total counter\n\
         ivr_reloads_total{{result=\"ok\"}} {ok}\n\
         ivr_reloads_total{{result=\"failed\"}} {failed}\n\
         # HELP ivr_live_version_info The live deployment's identity (every flow, catalog and ivr.toml).\n\
         # TYPE ivr_live_version_info gauge\n\
         ivr_live_version_info{{version=\"{version}\"}} 1\n\
         # HELP ivr_webrtc_calls_active Calls from the browser now (connecting or running).\n\
         # TYPE ivr_webrtc_calls_active gauge\n\
         ivr_webrtc_calls_active {}\n",
        s.stats.active.load(Ordering::Relaxed),
        s.stats.answered.load(Ordering::Relaxed),
        s.stats.refused.load(Ordering::Relaxed),
        s.browser.as_ref().map_or(0, |b| b.active()),
    );
    out.push_str(
        "# HELP ivr_flow_version_info Each live flow's version (as call records and ivr report show it).\n\
         # TYPE ivr_flow_version_info gauge\n",
    );
    for (name, f) in &live.flows {
        let _ = writeln!(
            out,
            "ivr_flow_version_info{{flow=\"{name}\",version=\"{}\"}} 1",
            f.program.version
        );
    }
    s.stats.metrics(&mut out);
    if let Some(c) = &s.services.cluster {
        c.checkpoints.metrics(&mut out);
    }
    s.services.sip.stats().write_metrics(&mut out);
    if let Some(d) = &s.dashboard {
        d.metrics(&mut out).await;
    }
    s.services.http.write_metrics(&mut out);
    crate::metrics::registry().write(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
