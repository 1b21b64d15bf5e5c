//! Campaigns in `ivr serve`: one task per `[campaigns.*]` drives its sans-IO
//! [`ivr_dialler::Dialler`] with real time, the list query, the `campaign_attempts` rows and
//! calls placed through the campaign's trunk; [`CampaignHub`] is how the HTTP interface
//! starts, pauses and reads them (`POST /campaigns/NAME/start`, `.../pause`,
//! `GET /campaigns/NAME`, `GET /campaigns`).
//!
//! An attempt: a channel of the trunk is taken (`[trunks.X] max_calls`, shared by every
//! campaign on the trunk; none free: the attempt does not happen and the number waits), the
//! attempt's row is written (a row already there means another run made it: the number is
//! not dialled), the INVITE leaves through the SIP core from an RTP port of its own, and the
//! leg rings at most `ring_timeout`. Answered, the campaign's flow runs on the leg as on an
//! answered incoming call ([`call::run`]); its outcome goes into the row.

use crate::call::{self, Incoming};
use crate::campaign_hub::Entry;
pub use crate::campaign_hub::{CampaignHub, CampaignView, Control};
use crate::clock::{Clock, local_now};
use crate::services::Services;
use crate::sip_task::{CoreMsg, Dial, DialogEvent, LegEvent};
use chrono::NaiveDateTime;
use indexmap::IndexMap;
use ivr_compiler::config::{CampaignConfig, QueryDef, TrunkConfig};
use ivr_data::Pool;
use ivr_data::campaigns as rows;
use ivr_data::query::fetch_rows;
use ivr_dialler::{AttemptResult, Dialler, Input, Output, PastAttempt, Settings};
use ivr_engine::value::Value;
use ivr_engine::{CallInfo, Channel, Machine, Millis};
use ivr_sip::message::random_u64;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a running campaign reads its list again (numbers added or gone).
const LIST_REFRESH: Duration = Duration::from_secs(60);
/// Controls waiting for a campaign's task at most (start and pause are rare).
const CONTROL_QUEUE: usize = 16;

/// A campaign's list row: its fields by name (`phone`, `arrears`, ...).
pub type ContactRow = IndexMap<String, Value>;

/// Starts a task for every campaign of the live deployment (at start-up), and a watcher
/// that starts one for every campaign a reload adds (paused unless its `campaign_states`
/// row says running, as at start-up).
pub fn start_all(services: &Services) {
    // Subscribed before the first look: a reload in between is not missed.
    let mut swaps = services.live.subscribe();
    swaps.mark_unchanged();
    start_missing(services);
    let services = services.clone();
    let span = tracing::info_span!("campaign_watcher");
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            while swaps.changed().await.is_ok() {
                start_missing(&services);
            }
        },
        span,
    ));
}

/// Starts a task for every campaign of the live deployment that has none (and whose trunk
/// is in `ivr.toml`). The campaigns already running follow the reload themselves.
fn start_missing(services: &Services) {
    let deployment = services.live.current();
    let config = &deployment.config;
    for (name, campaign) in &config.campaigns {
        let Some(trunk) = config.trunks.get(&campaign.trunk) else {
            continue;
        };
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let view = Arc::new(Mutex::new(CampaignView {
            name: name.clone(),
            flow: campaign.flow.clone(),
            trunk: campaign.trunk.clone(),
            ..CampaignView::default()
        }));
        {
            let Ok(mut e) = services.campaigns.entries.lock() else {
                return;
            };
            if e.contains_key(name) {
                continue;
            }
            e.insert(
                name.clone(),
                Entry {
                    control: tx,
                    view: Arc::clone(&view),
                },
            );
        }
        let task = CampaignTask {
            services: services.clone(),
            name: name.clone(),
            campaign: campaign.clone(),
            trunk: Arc::new(trunk.clone()),
            list: config.queries.get(&campaign.list).cloned(),
            view,
        };
        let span = tracing::info_span!("campaign", name = %name);
        tokio::spawn(tracing::Instrument::instrument(task.run(rx), span));
    }
}

struct CampaignTask {
    services: Services,
    name: String,
    campaign: CampaignConfig,
    trunk: Arc<TrunkConfig>,
    list: Option<QueryDef>,
    view: Arc<Mutex<CampaignView>>,
}

/// Local wall-clock milliseconds of a stored time.
fn millis_of(t: NaiveDateTime) -> Millis {
    t.and_utc().timestamp_millis()
}

/// A stored time of local wall-clock milliseconds.
fn naive_of(ms: Millis) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// Why a campaign's list could not be read.
#[derive(Debug, thiserror::Error)]
enum ListError {
    /// The query has no statement.
    #[error("the list query has no statement")]
    Empty,
    /// The database refused it.
    #[error(transparent)]
    Data(#[from] ivr_data::DataError),
}

/// The phones of a list query's rows, in order, with each row by phone.
async fn read_list(
    pool: &Pool,
    def: &QueryDef,
) -> Result<(Vec<String>, HashMap<String, ContactRow>), ListError> {
    let sql = def.statements.first().ok_or(ListError::Empty)?;
    let found = fetch_rows(pool, sql, &[]).await?;
    let names: Vec<String> = def.fields.keys().cloned().collect();
    let phone_at = names.iter().position(|n| n == "phone").unwrap_or(0);
    let mut phones = Vec::with_capacity(found.len());
    let mut contacts = HashMap::with_capacity(found.len());
    for row in found {
        let phone = match row.get(phone_at) {
            Some(Value::Text(t)) => t.trim().to_string(),
            Some(Value::Null) | None => continue,
            Some(other) => other.to_string(),
        };
        if phone.is_empty() || phone.len() > 64 {
            continue;
        }
        let contact: ContactRow = row
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    names.get(i).cloned().unwrap_or_else(|| format!("col{i}")),
                    v,
                )
            })
            .collect();
        phones.push(phone.clone());
        contacts.insert(phone, contact);
    }
    Ok((phones, contacts))
}

impl CampaignTask {
    fn set_error(&self, error: String) {
        tracing::error!(%error, "the campaign cannot dial");
        if let Ok(mut v) = self.view.lock() {
            v.error = Some(error);
        }
    }

    /// Takes the campaign's settings, list query and trunk from a new deployment. Returns
    /// the dialler's new settings, or `None` when the campaign (or its trunk or list) is no
    /// longer in `ivr.toml` (the campaign then pauses; its rows are kept).
    fn take_reload(&mut self, deployment: &crate::deploy::Deployment) -> Option<Settings> {
        let config = &deployment.config;
        let campaign = config.campaigns.get(&self.name)?;
        let trunk = config.trunks.get(&campaign.trunk)?;
        let list = config.queries.get(&campaign.list)?;
        self.campaign = campaign.clone();
        self.trunk = Arc::new(trunk.clone());
        self.list = Some(list.clone());
        if let Ok(mut v) = self.view.lock() {
            v.flow = campaign.flow.clone();
            v.trunk = campaign.trunk.clone();
            v.error = None;
        }
        Some(Settings::of_campaign(campaign, &config.calendars))
    }

    async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        let Some(pool) = self.services.catalogs.pool() else {
            self.set_error("no database: campaigns need one for their attempts".into());
            while control.recv().await.is_some() {}
            return;
        };
        let deployment = self.services.live.current();
        if !deployment.flows.contains_key(&self.campaign.flow) {
            self.set_error(format!("its flow `{}` is not started", self.campaign.flow));
            while control.recv().await.is_some() {}
            return;
        }
        let Some(mut list) = self.list.clone() else {
            self.set_error(format!("its list `{}` is not a query", self.campaign.list));
            while control.recv().await.is_some() {}
            return;
        };
        let clock = Clock::new();
        // Attempts a stop of the server cut are over: failed (or answered).
        match rows::close_cut_attempts(&pool, &self.name, naive_of(clock.now())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(attempts = n, "attempts cut by a stop closed"),
            Err(e) => {
                self.set_error(format!("its attempts cannot be read: {e}"));
                while control.recv().await.is_some() {}
                return;
            }
        }
        let history: Vec<PastAttempt> = match rows::attempts(&pool, &self.name).await {
            Ok(r) => r
                .into_iter()
                .map(|a| PastAttempt {
                    phone: a.phone,
                    attempt: a.attempt,
                    started_at: millis_of(a.started_at),
                    ended_at: a.ended_at.map(millis_of),
                    result: a.result.as_deref().and_then(AttemptResult::parse),
                    answered: a.answered_at.is_some(),
                })
                .collect(),
            Err(e) => {
                self.set_error(format!("its attempts cannot be read: {e}"));
                while control.recv().await.is_some() {}
                return;
            }
        };
        let running = rows::running(&pool, &self.name)
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
        let settings = Settings::of_campaign(&self.campaign, &deployment.config.calendars);
        let mut dialler = Dialler::new(settings, running, &history);
        let mut contacts = HashMap::new();
        let mut list_read = false;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, AttemptResult)>();
        let mut refresh = tokio::time::interval(LIST_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swaps = self.services.live.subscribe();
        swaps.mark_unchanged();
        tracing::info!(running, attempts = history.len(), "campaign ready");
        loop {
            while let Some(out) = dialler.poll_output() {
                match out {
                    Output::Dial { phone, attempt } => {
                        // The trunk's channels are shared with agents' transfers to
                        // numbers; its count is the current deployment's.
                        let channel = self
                            .services
                            .trunks
                            .try_take(&self.campaign.trunk, self.trunk.max_calls);
                        match channel {
                            Some(permit) => {
                                let contact = contacts.get(&phone).cloned().unwrap_or_default();
                                let a = Attempt {
                                    services: self.services.clone(),
                                    pool: pool.clone(),
                                    name: self.name.clone(),
                                    campaign: self.campaign.clone(),
                                    trunk: Arc::clone(&self.trunk),
                                    phone,
                                    attempt,
                                    contact,
                                    done: done_tx.clone(),
                                };
                                tokio::spawn(async move {
                                    Box::pin(a.run()).await;
                                    drop(permit);
                                });
                            }
                            None => dialler.handle_input(Input::NotPlaced { phone }, clock.now()),
                        }
                    }
                    Output::Finished => tracing::info!("every number is done"),
                }
            }
            if let Ok(mut v) = self.view.lock() {
                v.status = dialler.status();
            }
            let deadline = dialler.poll_timeout();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                clock.instant(deadline.unwrap_or(clock.now() + 3_600_000)),
            ));
            tokio::select! {
                c = control.recv() => {
                    let Some(c) = c else { return };
                    let start = c == Control::Start;
                    if let Err(e) = rows::set_running(&pool, &self.name, start, naive_of(clock.now())).await {
                        tracing::warn!(error = %e, "start/pause not kept in the database");
                    }
                    tracing::info!(start, "campaign {}", if start { "started" } else { "paused" });
                    dialler.handle_input(if start { Input::Start } else { Input::Pause }, clock.now());
                }
                Some((phone, result)) = done_rx.recv() => {
                    dialler.handle_input(Input::Ended { phone, result }, clock.now());
                }
                _ = refresh.tick(), if dialler.status().running || !list_read => {
                    let lookups = self.services.catalogs.lookups_pool().unwrap_or_else(|| pool.clone());
                    match read_list(&lookups, &list).await {
                        Ok((phones, rows)) => {
                            contacts = rows;
                            list_read = true;
                            dialler.handle_input(Input::List(phones), clock.now());
                        }
                        Err(e) => tracing::warn!(error = %e, "the list query failed"),
                    }
                }
                () = sleep => dialler.handle_timeout(clock.now()),
                Ok(()) = swaps.changed() => {
                    let deployment = self.services.live.current();
                    match self.take_reload(&deployment) {
                        Some(settings) => {
                            tracing::info!("settings reloaded");
                            dialler.handle_input(Input::Settings(settings), clock.now());
                            // The list query may have changed: read it again now.
                            if let Some(l) = &self.list {
                                list = l.clone();
                            }
                            match read_list(&pool, &list).await {
                                Ok((phones, rows)) => {
                                    contacts = rows;
                                    list_read = true;
                                    dialler.handle_input(Input::List(phones), clock.now());
                                }
                                Err(e) => tracing::warn!(error = %e, "the list query failed"),
                            }
                        }
                        None => {
                            let error = "no longer in ivr.toml (or its trunk or list is not): paused".to_string();
                            self.set_error(error);
                            dialler.handle_input(Input::Pause, clock.now());
                        }
                    }
                }
            }
        }
    }
}

/// One attempt at a number.
struct Attempt {
    services: Services,
    pool: Pool,
    name: String,
    campaign: CampaignConfig,
    trunk: Arc<TrunkConfig>,
    phone: String,
    attempt: u32,
    contact: ContactRow,
    done: mpsc::UnboundedSender<(String, AttemptResult)>,
}

impl Attempt {
    async fn run(self) {
        let started = naive_of(local_now());
        match rows::start_attempt(&self.pool, &self.name, &self.phone, self.attempt, started).await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(phone = %self.phone, attempt = self.attempt, "attempt already made: not dialled again");
                let _ = self.done.send((self.phone, AttemptResult::Failed));
                return;
            }
            Err(e) => {
                // Not written, not dialled: the number is tried again after `retry_after`.
                tracing::warn!(error = %e, "attempt not written: not dialled");
                let _ = self.done.send((self.phone, AttemptResult::Failed));
                return;
            }
        }
        let (result, outcome) = self.place().await;
        if let Err(e) = rows::end_attempt(
            &self.pool,
            &self.name,
            &self.phone,
            self.attempt,
            naive_of(local_now()),
            result.as_str(),
            outcome,
        )
        .await
        {
            tracing::warn!(error = %e, "end of attempt not written");
        }
        tracing::info!(phone = %self.phone, attempt = self.attempt, result = result.as_str(), "attempt over");
        let _ = self.done.send((self.phone, result));
    }

    /// Places the call; answered, runs the flow. The result, and the flow's outcome.
    async fn place(&self) -> (AttemptResult, Option<&'static str>) {
        let services = &self.services;
        let deployment = services.live.current();
        let Some(flow) = deployment.flows.get(&self.campaign.flow).cloned() else {
            return (AttemptResult::Failed, None);
        };
        let Some(port) = services.ports.allocate() else {
            tracing::warn!("no free RTP port");
            return (AttemptResult::Failed, None);
        };
        let target = self.trunk.target.uri_for(&self.phone);
        let (peer, link) = match call::resolve(&target, &services.sip).await {
            Ok(p) => p,
            Err(code) => {
                tracing::warn!(%target, code, "trunk not reachable");
                return (AttemptResult::Failed, None);
            }
        };
        let tag = format!("{:016x}", random_u64());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _ = services.core.send(CoreMsg::Dial(Box::new(Dial {
            tag: tag.clone(),
            target,
            peer,
            from_user: self.trunk.caller_id.clone(),
            headers: Vec::new(),
            port: port.port(),
            events: tx,
            credentials: self.trunk.username.clone().zip(self.trunk.password.clone()),
        })));
        let ring = tokio::time::sleep(Duration::from_millis(self.campaign.ring_timeout_ms));
        tokio::pin!(ring);
        let negotiated = loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(LegEvent::Answered(n)) => break n,
                    Some(LegEvent::Failed(code)) => return (AttemptResult::of_status(code), None),
                    // A callee's phone has no business transferring before it answered.
                    Some(LegEvent::Ringing | LegEvent::Media(_) | LegEvent::Refer(_) | LegEvent::Dialog(_)) => {}
                    Some(LegEvent::Bye) | None => return (AttemptResult::Failed, None),
                },
                () = &mut ring => {
                    let _ = services.core.send(CoreMsg::EndLeg { tag });
                    return (AttemptResult::NoAnswer, None);
                }
            }
        };
        if let Err(e) = rows::answered(
            &self.pool,
            &self.name,
            &self.phone,
            self.attempt,
            naive_of(local_now()),
            &tag,
        )
        .await
        {
            tracing::warn!(error = %e, "answer not written");
        }
        // The leg's events as a call's dialog events.
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let d = match ev {
                    LegEvent::Bye => DialogEvent::Bye,
                    LegEvent::Media(n) => DialogEvent::Media(n),
                    _ => continue,
                };
                if events_tx.send(d).is_err() {
                    break;
                }
            }
        });
        let info = CallInfo {
            id: tag.clone(),
            caller: self.phone.clone(),
            called: self.trunk.caller_id.clone(),
            channel: Channel::Sip,
            contact: Vec::new(),
        };
        let info = with_contact(info, &self.contact);
        let incoming = Incoming {
            info,
            flow,
            deployment,
            port,
            negotiated,
            events: events_rx,
            tag,
            peer: Some(peer),
            notes: None,
            cluster: None,
        };
        services.running.fetch_add(1, Ordering::Relaxed);
        let outcome = call::run(services.clone(), incoming).await;
        drop(link);
        (AttemptResult::Answered, outcome.map(|o| o.as_str()))
    }
}

/// Puts a campaign's list row into the call's start info: the one place that gives the
/// flow its `contact` (the row's fields by name, typed as the list query declares them).
fn with_contact(mut info: CallInfo, contact: &ContactRow) -> CallInfo {
    tracing::debug!(fields = contact.len(), "contact row of the call");
    info.contact = contact
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    info
}

/// `GET /campaigns`, `GET /campaigns/NAME`, `POST /campaigns/NAME/start` and `.../pause`.
pub fn router(services: Services) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/campaigns", get(list_campaigns))
        .route("/campaigns/{name}", get(one_campaign))
        .route("/campaigns/{name}/start", post(start_campaign))
        .route("/campaigns/{name}/pause", post(pause_campaign))
        .with_state(services)
}

type Answer = axum::response::Response;

fn not_found(name: &str) -> Answer {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": format!("no campaign `{name}`") })),
    )
        .into_response()
}

async fn list_campaigns(axum::extract::State(s): axum::extract::State<Services>) -> Answer {
    use axum::response::IntoResponse;
    axum::Json(s.campaigns.views()).into_response()
}

async fn one_campaign(
    axum::extract::State(s): axum::extract::State<Services>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Answer {
    use axum::response::IntoResponse;
    match s.campaigns.view(&name) {
        Some(v) => axum::Json(v).into_response(),
        None => not_found(&name),
    }
}

async fn steer(s: &Services, name: &str, c: Control) -> Answer {
    use axum::response::IntoResponse;
    if !s.campaigns.control(name, c).await {
        return not_found(name);
    }
    // The task takes the control at once; its view follows within its turn.
    for _ in 0..50 {
        if let Some(v) = s.campaigns.view(name)
            && v.status.running == (c == Control::Start)
        {
            return axum::Json(v).into_response();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match s.campaigns.view(name) {
        Some(v) => (axum::http::StatusCode::ACCEPTED, axum::Json(v)).into_response(),
        None => not_found(name),
    }
}

async fn start_campaign(
    axum::extract::State(s): axum::extract::State<Services>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Answer {
    steer(&s, &name, Control::Start).await
}

async fn pause_campaign(
    axum::extract::State(s): axum::extract::State<Services>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Answer {
    steer(&s, &name, Control::Pause).await
}
