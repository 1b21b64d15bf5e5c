//! The HTTP interface of `ivr serve` (`[server] http`, `--http`): `GET /status`, the live
//! version and the last reload attempt with its diagnostics (JSON), and `GET /metrics`, a few
//! counters in the Prometheus text format (with the series of [`crate::dashboard`]). Calls
//! from the browser (the phone page, `POST /calls/ROUTE`, ...) are [`crate::browser`]'s
//! routes, and the dashboard's (`/dashboard`) its own; both are merged in here.

use crate::agent_api::{self, AgentApi};
use crate::browser::{self, Browser};
use crate::dashboard::{self, Dashboard};
use crate::services::Services;
use crate::sip_task::CoreStats;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    let browser = state.browser.clone();
    let agents = state.agents.clone();
    let dashboard = state.dashboard.clone();
    let r = Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state);
    let r = match agents {
        Some(a) => r.merge(agent_api::router(a)),
        None => r,
    };
    let r = match dashboard {
        Some(d) => r.merge(dashboard::router(d)),
        None => r,
    };
    match browser {
        Some(b) => r.merge(browser::router(b)),
        None => r,
    }
}

async fn status(State(s): State<HttpState>) -> impl IntoResponse {
    axum::Json(s.services.live.status())
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let mut out = String::new();
    let (ok, failed) = s.services.live.counts();
    let version = s.services.live.current().version.clone();
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
         # HELP ivr_live_version_info The live deployment version.\n\
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
    s.stats.metrics(&mut out);
    s.services.sip.stats().write_metrics(&mut out);
    if let Some(d) = &s.dashboard {
        d.metrics(&mut out).await;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
