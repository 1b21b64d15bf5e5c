//! The figures of `ivr report`, from the call records: how calls ended (the seven outcomes
//! with their rates, who ended them, and the self-service tasks completed per task name), IVR node traffic (entries, exits by key and outcome,
//! hang-ups there), service level (share of queued calls answered by an agent within 20 s,
//! a kept callback counting as in time when its caller answered within 20 s of the agent's
//! answer, against the operator's target of 85%), survey averages per queue and agent, and from the
//! ACD's queue events per queue: calls queued, answered, abandoned, left, service level,
//! average and 90th percentile wait to answer, offers per answered call; per agent: offers,
//! answers, declines and ring timeouts. The command (`src/report_cmd/` of `ivr`) renders them
//! as tables, CSV or JSON.

use super::DataError;
use super::connect::Pool;
use super::query::fetch_rows;
use crate::cells::stored_time;
use chrono::{Local, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone};
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use std::collections::BTreeMap;

/// The service-level threshold: answered within this many milliseconds.
pub const SERVICE_LEVEL_MS: i64 = 20_000;
/// The operator's target share of queued calls answered within [`SERVICE_LEVEL_MS`].
pub const SERVICE_LEVEL_TARGET: f64 = 0.85;

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Calls that started at or after this time (the server's local time, as records keep
    /// it).
    pub since: Option<NaiveDateTime>,
    /// Calls that started before this time.
    pub until: Option<NaiveDateTime>,
    /// Calls of this flow only.
    pub flow: Option<String>,
    /// Calls that ran this version of their flow only (its content hash, as `ivr compile`
    /// and `GET /status` show it, or the start of it).
    pub flow_version: Option<String>,
}

/// The calls that ran one version of a flow: when it served its first and last call, and how
/// its calls ended (to compare a flow before and after a change).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VersionFigures {
    /// The flow.
    pub flow: String,
    /// Its version (content hash).
    pub version: String,
    /// When the first call of this version started (RFC 3339 with the server's UTC offset).
    pub first_call: Option<String>,
    /// When the last one started.
    pub last_call: Option<String>,
    /// How its calls ended.
    #[serde(flatten)]
    pub outcomes: Outcomes,
}

/// How calls ended: each call has the first outcome that applies, in the order of the fields
/// (transferred, callback, abandoned, message, self_service, failed, not_served).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outcomes {
    /// Calls recorded.
    pub calls: u64,
    /// Calls that ended (with an outcome).
    pub ended: u64,
    /// Transferred to an agent who answered.
    pub transferred: u64,
    /// A callback was kept (the caller pressed 1 after a queue's callback offer).
    pub callback: u64,
    /// The caller hung up waiting in a queue or while an agent's phone rang.
    pub abandoned: u64,
    /// A record node saved a message.
    pub message: u64,
    /// At least one self-service task completed (`served`).
    pub self_service: u64,
    /// A fault, a lookup's `error` path, a media or network failure.
    pub failed: u64,
    /// None of the above (hung up in a menu, ended without a task done).
    pub not_served: u64,
    /// `self_service / ended`.
    pub self_service_rate: Option<f64>,
    /// `transferred / ended`.
    pub transfer_rate: Option<f64>,
    /// `callback / ended`.
    pub callback_rate: Option<f64>,
    /// `abandoned / ended`.
    pub abandon_rate: Option<f64>,
    /// `message / ended`.
    pub message_rate: Option<f64>,
    /// `failed / ended`.
    pub failure_rate: Option<f64>,
    /// `not_served / ended`.
    pub not_served_rate: Option<f64>,
    /// Ended calls whose record holds an outcome this version does not know (none normally).
    pub other: u64,
    /// Who ended the calls: `caller`, `flow`, `agent`, `system` (records of version 1 have
    /// none and are not counted here).
    pub ended_by: BTreeMap<String, u64>,
}

/// Completions of one self-service task (`served "NAME"`) in one flow.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TaskFigure {
    /// The flow.
    pub flow: String,
    /// The task's name.
    pub task: String,
    /// Calls that completed it (a task counts once per call).
    pub completions: u64,
}

/// Traffic of one IVR node.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NodeTraffic {
    /// The flow.
    pub flow: String,
    /// The node.
    pub node: String,
    /// Times entered.
    pub entries: u64,
    /// Times left, by how (`key 1`, `found`, `next`, ...; caller hang-ups are counted apart).
    pub exits: BTreeMap<String, u64>,
    /// Callers who hung up in this node.
    pub hangups: u64,
}

/// Service level of one queue (or of all: `queue` is `None`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceLevel {
    /// The queue; `None` for every queue together.
    pub queue: Option<String>,
    /// Calls put in the queue.
    pub queued: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// Answered by an agent within 20 s of entering the queue.
    pub answered_within: u64,
    /// Of `queued`: callers who kept a callback (counted apart: their wait in the queue,
    /// after they hung up, is not a caller waiting on the line).
    pub callbacks: u64,
    /// Callbacks whose caller was dialled back and answered.
    pub callbacks_connected: u64,
    /// Callbacks whose caller answered within 20 s of the agent's answer (served in time).
    pub callbacks_within: u64,
    /// `(answered_within + callbacks_within) / queued`.
    pub level: Option<f64>,
    /// Whether `level` meets [`SERVICE_LEVEL_TARGET`].
    pub meets_target: Option<bool>,
}

/// One queue from the ACD's queue events (`queue_events`), or every queue together (`queue`
/// is `None`). Each entry into a queue counts, so a call queued twice counts twice.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QueueFigures {
    /// The queue; `None` for every queue together.
    pub queue: Option<String>,
    /// Calls taken into the queue.
    pub queued: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// The caller hung up waiting.
    pub abandoned: u64,
    /// Left without an agent: `max_wait` passed, or nobody who could take them was logged in
    /// any more.
    pub left: u64,
    /// Refused on arrival: nobody who could take them was logged in (not counted in `queued`).
    pub no_agents: u64,
    /// Answered within [`SERVICE_LEVEL_MS`] of entering the queue.
    pub answered_within: u64,
    /// Service level: `answered_within / queued`.
    pub level: Option<f64>,
    /// Whether `level` meets [`SERVICE_LEVEL_TARGET`].
    pub meets_target: Option<bool>,
    /// Average wait of answered calls, from entering the queue to the agent's answer (ms).
    pub average_wait_ms: Option<f64>,
    /// 90th percentile of that wait (nearest rank), ms.
    pub p90_wait_ms: Option<i64>,
    /// Offers made (agents' phones rung), for every call.
    pub offers: u64,
    /// Offers made to the calls that were answered, per answered call (1.0: the first agent
    /// rung always answered).
    pub offers_per_answer: Option<f64>,
    /// Offers declined (busy, no answer from the phone, failed).
    pub declined: u64,
    /// Offers lost: the agent's phone or console went away while it rang.
    pub lost: u64,
    /// Offers that rang for the queue's `ring_timeout` unanswered.
    pub ring_timeouts: u64,
}

/// One agent's offers from the ACD's queue events, across queues.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AgentFigures {
    /// The agent's id.
    pub agent: String,
    /// Its name (`[agents.ID] name`), when the configuration has it (filled in by the
    /// command, which reads `ivr.toml`).
    pub name: Option<String>,
    /// Calls offered (its phone rang).
    pub offers: u64,
    /// Offers it answered.
    pub answered: u64,
    /// Offers declined (busy, no answer from the phone, failed).
    pub declined: u64,
    /// Offers lost: its phone or console went away while it rang.
    pub lost: u64,
    /// Offers it let ring for the queue's `ring_timeout`.
    pub ring_timeouts: u64,
}

/// Survey answers of one question, for one queue and agent.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SurveyFigure {
    /// The queue (`None`: the call was not queued, or every queue together).
    pub queue: Option<String>,
    /// The agent (`None`: no agent, or every agent together).
    pub agent: Option<String>,
    /// The agent's name (`[agents.ID] name`), filled in by the command.
    pub agent_name: Option<String>,
    /// The question.
    pub question: String,
    /// Times asked.
    pub asked: u64,
    /// Times answered.
    pub answered: u64,
    /// Answers that are numbers (scale questions).
    pub scored: u64,
    /// Their average.
    pub average: Option<f64>,
    /// Answers `yes` (a `choices` question whose choices are `yes` and `no`).
    pub yes: u64,
    /// `yes / answered` when every answer given is `yes` or `no` (a yes/no question);
    /// `None` for other questions.
    pub yes_share: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// When the report was made (RFC 3339, the server's UTC offset).
    pub generated_at: String,
    /// The start of the period (`--since`, a period word), RFC 3339 with offset.
    pub since: Option<String>,
    /// The end of the period (`--until`, a period word), exclusive, RFC 3339 with offset.
    pub until: Option<String>,
    /// `--flow`.
    pub flow: Option<String>,
    /// `--flow-version`.
    pub flow_version: Option<String>,
    /// How calls ended.
    pub outcomes: Outcomes,
    /// Self-service tasks completed, by flow and task (most completed first per flow).
    pub tasks: Vec<TaskFigure>,
    /// Per flow and version, the oldest version first.
    pub versions: Vec<VersionFigures>,
    /// Per node, by flow and most entered first.
    pub nodes: Vec<NodeTraffic>,
    /// Per queue, then every queue together (last).
    pub service_level: Vec<ServiceLevel>,
    /// The threshold in seconds.
    pub service_level_seconds: i64,
    /// The target share.
    pub service_level_target: f64,
    /// From the ACD's queue events: per queue, then every queue together (last). Empty when
    /// there are none (simulated calls have no ACD).
    pub queues: Vec<QueueFigures>,
    /// From the ACD's queue events: per agent.
    pub agents: Vec<AgentFigures>,
    /// Per queue, agent and question; then per queue (agent `None`) and per agent (queue
    /// `None`).
    pub surveys: Vec<SurveyFigure>,
    /// Per campaign, from `campaign_attempts` started in the period (`--flow` does not
    /// apply).
    pub campaigns: Vec<CampaignFigures>,
}

/// A campaign's figures (`ivr report`'s campaign section).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CampaignFigures {
    /// The campaign.
    pub campaign: String,
    /// Numbers attempted.
    pub numbers: u64,
    /// Numbers that answered.
    pub reached: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Attempts that ended `no_answer`, `busy`, `failed`.
    pub no_answer: u64,
    /// Busy.
    pub busy: u64,
    /// Failed.
    pub failed: u64,
    /// The average attempt at which a reached number answered (1.0: at the first).
    pub attempts_per_reach: Option<f64>,
    /// The flow's outcomes of the answered calls.
    pub outcomes: BTreeMap<String, u64>,
}

fn int(v: &Value) -> u64 {
    v.as_decimal().and_then(|d| d.to_u64()).unwrap_or(0)
}

fn float(v: &Value) -> Option<f64> {
    v.as_decimal().and_then(|d| d.to_f64())
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A time read back from either engine (records keep the server's local time without a
/// zone; SQLite as `YYYY-MM-DD HH:MM:SS` text), as RFC 3339 with the local UTC offset.
fn when(v: &Value) -> Option<String> {
    let naive = match v {
        Value::DateTime(t) => *t,
        Value::Text(t) => {
            let t: String = t.chars().take(19).collect();
            NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S")
                .or_else(|_| NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S"))
                .ok()?
        }
        _ => return None,
    };
    Some(local_rfc3339(naive))
}

/// A local time (as records keep it) as RFC 3339 with the machine's UTC offset at that
/// time, e.g. `2026-11-23T10:00:00+08:00`.
pub fn local_rfc3339(t: NaiveDateTime) -> String {
    match Local.from_local_datetime(&t).earliest() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, false),
        // A time the clocks skipped (a DST gap): the offset of an hour later.
        None => {
            let offset = Local
                .from_local_datetime(&(t + chrono::Duration::hours(1)))
                .earliest()
                .map_or(0, |x| x.offset().local_minus_utc());
            chrono::FixedOffset::east_opt(offset)
                .and_then(|o| o.from_local_datetime(&t).earliest())
                .map_or_else(
                    || t.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    |x| x.to_rfc3339_opts(SecondsFormat::Secs, false),
                )
        }
    }
}

impl Outcomes {
    /// Counts `n` calls that ended with `outcome` (none: still in progress, or no record of
    /// the end).
    fn add(&mut self, outcome: Option<&str>, n: u64) {
        self.calls += n;
        match outcome {
            Some("transferred") => self.transferred += n,
            Some("callback") => self.callback += n,
            Some("abandoned") => self.abandoned += n,
            Some("message") => self.message += n,
            Some("self_service") => self.self_service += n,
            Some("failed") => self.failed += n,
            Some("not_served") => self.not_served += n,
            Some(_) => self.other += n,
            None => return,
        }
        self.ended += n;
    }

    /// Fills in the rates from the counts.
    fn rates(&mut self) {
        self.self_service_rate = ratio(self.self_service, self.ended);
        self.transfer_rate = ratio(self.transferred, self.ended);
        self.callback_rate = ratio(self.callback, self.ended);
        self.abandon_rate = ratio(self.abandoned, self.ended);
        self.message_rate = ratio(self.message, self.ended);
        self.failure_rate = ratio(self.failed, self.ended);
        self.not_served_rate = ratio(self.not_served, self.ended);
    }

    /// Every outcome with its count and rate, in the order of precedence.
    pub fn rows(&self) -> [(&'static str, u64, Option<f64>); 7] {
        [
            ("transferred", self.transferred, self.transfer_rate),
            ("callback", self.callback, self.callback_rate),
            ("abandoned", self.abandoned, self.abandon_rate),
            ("message", self.message, self.message_rate),
            ("self_service", self.self_service, self.self_service_rate),
            ("failed", self.failed, self.failure_rate),
            ("not_served", self.not_served, self.not_served_rate),
        ]
    }
}

/// `WHERE` conditions on a time column and `flow`, with their arguments.
fn filter(opts: &ReportOptions, time_col: &str, extra: &[&str]) -> (String, Vec<Value>) {
    let mut cond: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut args = Vec::new();
    if let Some(d) = opts.since {
        args.push(Value::DateTime(d));
        cond.push(format!("{time_col} >= ${}", args.len()));
    }
    if let Some(d) = opts.until {
        args.push(Value::DateTime(d));
        cond.push(format!("{time_col} < ${}", args.len()));
    }
    if let Some(f) = &opts.flow {
        args.push(Value::Text(f.clone()));
        cond.push(format!("flow = ${}", args.len()));
    }
    if let Some(v) = &opts.flow_version {
        args.push(Value::Text(format!("{v}%")));
        cond.push(format!("flow_version LIKE ${}", args.len()));
    }
    if cond.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", cond.join(" AND ")), args)
    }
}

/// `WHERE` conditions on `queue_events` (aliased `alias`): `--since` on the event's time,
/// `--flow` through the call's record.
fn event_filter(opts: &ReportOptions, alias: &str, extra: &[&str]) -> (String, Vec<Value>) {
    let mut cond: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let mut args = Vec::new();
    if let Some(d) = opts.since {
        args.push(Value::DateTime(d));
        cond.push(format!("{alias}.at >= ${}", args.len()));
    }
    if let Some(d) = opts.until {
        args.push(Value::DateTime(d));
        cond.push(format!("{alias}.at < ${}", args.len()));
    }
    if let Some(f) = &opts.flow {
        args.push(Value::Text(f.clone()));
        cond.push(format!(
            "{alias}.call_id IN (SELECT call_id FROM calls WHERE flow = ${})",
            args.len()
        ));
    }
    if let Some(v) = &opts.flow_version {
        args.push(Value::Text(format!("{v}%")));
        cond.push(format!(
            "{alias}.call_id IN (SELECT call_id FROM calls WHERE flow_version LIKE ${})",
            args.len()
        ));
    }
    if cond.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", cond.join(" AND ")), args)
    }
}

/// The nearest-rank percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[i64], p: u64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

/// Per queue: callbacks kept by the calls reported on, those whose caller answered the dial
/// back, and those whose caller answered within [`SERVICE_LEVEL_MS`] of the agent's answer.
async fn callback_figures(
    pool: &Pool,
    opts: &ReportOptions,
) -> Result<BTreeMap<String, (u64, u64, u64)>, DataError> {
    let (w, args) = filter(opts, "started_at", &[]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT queue, agent_answered_at, connected_at FROM callbacks \
             WHERE call_id IN (SELECT call_id FROM calls{w})"
        ),
        &args,
    )
    .await?;
    let mut out: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for r in &rows {
        let Some(queue) = text(&r[0]) else { continue };
        let f = out.entry(queue).or_default();
        f.0 += 1;
        if let (Some(agent), Some(caller)) = (stored_time(&r[1]), stored_time(&r[2])) {
            f.1 += 1;
            if (caller - agent).num_milliseconds() <= SERVICE_LEVEL_MS {
                f.2 += 1;
            }
        }
    }
    Ok(out)
}

/// Per queue (then all) and per agent figures from `queue_events`.
async fn queue_figures(
    pool: &Pool,
    opts: &ReportOptions,
) -> Result<(Vec<QueueFigures>, Vec<AgentFigures>), DataError> {
    let mut queues: BTreeMap<String, QueueFigures> = BTreeMap::new();
    let mut all = QueueFigures::default();

    // Counts per queue and event.
    let (w, args) = event_filter(opts, "e", &[]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT e.queue, e.event, COUNT(*) AS n, \
             SUM(CASE WHEN e.wait_ms <= {SERVICE_LEVEL_MS} THEN 1 ELSE 0 END) AS within \
             FROM queue_events e{w} GROUP BY e.queue, e.event"
        ),
        &args,
    )
    .await?;
    for r in &rows {
        let queue = text(&r[0]).unwrap_or_default();
        let (n, within) = (int(&r[2]), int(&r[3]));
        let q = queues.entry(queue.clone()).or_insert_with(|| QueueFigures {
            queue: Some(queue),
            ..QueueFigures::default()
        });
        for f in [&mut *q, &mut all] {
            match text(&r[1]).as_deref() {
                Some("queued") => f.queued += n,
                Some("offered") => f.offers += n,
                Some("answered") => {
                    f.answered += n;
                    f.answered_within += within;
                }
                Some("declined") => f.declined += n,
                Some("lost") => f.lost += n,
                Some("ring_timeout") => f.ring_timeouts += n,
                Some("abandoned") => f.abandoned += n,
                Some("left") => f.left += n,
                Some("no_agents") => f.no_agents += n,
                _ => {}
            }
        }
    }

    // Waits to answer: average and 90th percentile.
    let (w, args) = event_filter(
        opts,
        "e",
        &["e.event = 'answered'", "e.wait_ms IS NOT NULL"],
    );
    let rows = fetch_rows(
        pool,
        &format!("SELECT e.queue, e.wait_ms FROM queue_events e{w}"),
        &args,
    )
    .await?;
    let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut all_waits = Vec::with_capacity(rows.len());
    for r in &rows {
        let wait = r[1].as_decimal().and_then(|d| d.to_i64()).unwrap_or(0);
        waits
            .entry(text(&r[0]).unwrap_or_default())
            .or_default()
            .push(wait);
        all_waits.push(wait);
    }

    // Offers made to the calls that were answered.
    let (w, args) = event_filter(
        opts,
        "o",
        &[
            "o.event = 'offered'",
            "EXISTS (SELECT 1 FROM queue_events a WHERE a.event = 'answered' \
             AND a.call_id = o.call_id AND a.queue = o.queue)",
        ],
    );
    let rows = fetch_rows(
        pool,
        &format!("SELECT o.queue, COUNT(*) AS n FROM queue_events o{w} GROUP BY o.queue"),
        &args,
    )
    .await?;
    let mut answered_offers: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        answered_offers.insert(text(&r[0]).unwrap_or_default(), int(&r[1]));
    }

    let finish = |f: &mut QueueFigures, waits: &mut Vec<i64>, offers: u64| {
        f.level = ratio(f.answered_within, f.queued);
        f.meets_target = f.level.map(|l| l >= SERVICE_LEVEL_TARGET);
        waits.sort_unstable();
        f.average_wait_ms =
            (!waits.is_empty()).then(|| waits.iter().sum::<i64>() as f64 / waits.len() as f64);
        f.p90_wait_ms = percentile(waits, 90);
        f.offers_per_answer = ratio(offers, f.answered);
    };
    let mut out = Vec::with_capacity(queues.len() + 1);
    for (name, mut f) in queues {
        let mut w = waits.remove(&name).unwrap_or_default();
        finish(
            &mut f,
            &mut w,
            answered_offers.get(&name).copied().unwrap_or(0),
        );
        out.push(f);
    }
    if !out.is_empty() {
        finish(&mut all, &mut all_waits, answered_offers.values().sum());
        out.push(all);
    }

    // Per agent.
    let (w, args) = event_filter(
        opts,
        "e",
        &[
            "e.agent IS NOT NULL",
            "e.event IN ('offered', 'answered', 'declined', 'lost', 'ring_timeout')",
        ],
    );
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT e.agent, e.event, COUNT(*) AS n FROM queue_events e{w} GROUP BY e.agent, e.event"
        ),
        &args,
    )
    .await?;
    let mut agents: BTreeMap<String, AgentFigures> = BTreeMap::new();
    for r in &rows {
        let agent = text(&r[0]).unwrap_or_default();
        let n = int(&r[2]);
        let a = agents.entry(agent.clone()).or_insert_with(|| AgentFigures {
            agent,
            ..AgentFigures::default()
        });
        match text(&r[1]).as_deref() {
            Some("offered") => a.offers += n,
            Some("answered") => a.answered += n,
            Some("declined") => a.declined += n,
            Some("lost") => a.lost += n,
            Some("ring_timeout") => a.ring_timeouts += n,
            _ => {}
        }
    }
    Ok((out, agents.into_values().collect()))
}

/// The campaign section: attempts started in the period, per campaign.
async fn campaign_figures(
    pool: &Pool,
    opts: &ReportOptions,
) -> Result<Vec<CampaignFigures>, DataError> {
    let time_only = ReportOptions {
        since: opts.since,
        until: opts.until,
        ..ReportOptions::default()
    };
    let (w, args) = filter(&time_only, "started_at", &[]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT campaign, COUNT(DISTINCT phone), COUNT(*), \
             SUM(CASE WHEN result = 'answered' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN result = 'no_answer' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN result = 'busy' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN result = 'failed' THEN 1 ELSE 0 END), \
             AVG(CASE WHEN result = 'answered' THEN attempt END) \
             FROM campaign_attempts{w} GROUP BY campaign ORDER BY campaign"
        ),
        &args,
    )
    .await?;
    let mut out: Vec<CampaignFigures> = rows
        .iter()
        .map(|r| CampaignFigures {
            campaign: text(&r[0]).unwrap_or_default(),
            numbers: int(&r[1]),
            attempts: int(&r[2]),
            reached: int(&r[3]),
            no_answer: int(&r[4]),
            busy: int(&r[5]),
            failed: int(&r[6]),
            attempts_per_reach: float(&r[7]),
            outcomes: BTreeMap::new(),
        })
        .collect();
    let cond = if w.is_empty() {
        " WHERE outcome IS NOT NULL".to_string()
    } else {
        format!("{w} AND outcome IS NOT NULL")
    };
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT campaign, outcome, COUNT(*) FROM campaign_attempts{cond} \
             GROUP BY campaign, outcome"
        ),
        &args,
    )
    .await?;
    for r in &rows {
        let (Some(c), Some(o)) = (text(&r[0]), text(&r[1])) else {
            continue;
        };
        if let Some(f) = out.iter_mut().find(|f| f.campaign == c) {
            f.outcomes.insert(o, int(&r[2]));
        }
    }
    Ok(out)
}

/// Builds the report from the records in `pool`.
pub async fn build(pool: &Pool, opts: &ReportOptions) -> Result<Report, DataError> {
    let mut report = Report {
        generated_at: Local::now().to_rfc3339_opts(SecondsFormat::Secs, false),
        since: opts.since.map(local_rfc3339),
        until: opts.until.map(local_rfc3339),
        flow: opts.flow.clone(),
        flow_version: opts.flow_version.clone(),
        service_level_seconds: SERVICE_LEVEL_MS / 1000,
        service_level_target: SERVICE_LEVEL_TARGET,
        ..Report::default()
    };

    // Outcomes.
    let (w, args) = filter(opts, "started_at", &[]);
    let rows = fetch_rows(
        pool,
        &format!("SELECT outcome, COUNT(*) AS n FROM calls{w} GROUP BY outcome"),
        &args,
    )
    .await?;
    for r in &rows {
        report.outcomes.add(text(&r[0]).as_deref(), int(&r[1]));
    }
    report.outcomes.rates();

    // Who ended the calls.
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT ended_by, COUNT(*) AS n FROM calls{w} GROUP BY ended_by ORDER BY ended_by"
        ),
        &args,
    )
    .await?;
    for r in &rows {
        if let Some(by) = text(&r[0]) {
            *report.outcomes.ended_by.entry(by).or_default() += int(&r[1]);
        }
    }

    // Self-service tasks of those calls.
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT flow, task, COUNT(*) AS n FROM served_tasks \
             WHERE call_id IN (SELECT call_id FROM calls{w}) GROUP BY flow, task"
        ),
        &args,
    )
    .await?;
    report.tasks = rows
        .iter()
        .map(|r| TaskFigure {
            flow: text(&r[0]).unwrap_or_default(),
            task: text(&r[1]).unwrap_or_default(),
            completions: int(&r[2]),
        })
        .collect();
    report.tasks.sort_by(|a, b| {
        (&a.flow, std::cmp::Reverse(a.completions), &a.task).cmp(&(
            &b.flow,
            std::cmp::Reverse(b.completions),
            &b.task,
        ))
    });

    // Versions.
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT flow, flow_version, outcome, COUNT(*) AS n, MIN(started_at) AS first, \
             MAX(started_at) AS last FROM calls{w} GROUP BY flow, flow_version, outcome"
        ),
        &args,
    )
    .await?;
    let mut versions: BTreeMap<(String, String), VersionFigures> = BTreeMap::new();
    for r in &rows {
        let (flow, version) = (
            text(&r[0]).unwrap_or_default(),
            text(&r[1]).unwrap_or_default(),
        );
        let v = versions
            .entry((flow.clone(), version.clone()))
            .or_insert_with(|| VersionFigures {
                flow,
                version,
                ..VersionFigures::default()
            });
        v.outcomes.add(text(&r[2]).as_deref(), int(&r[3]));
        let (first, last) = (when(&r[4]), when(&r[5]));
        if v.first_call.is_none() || first < v.first_call {
            v.first_call = first;
        }
        if last > v.last_call {
            v.last_call = last;
        }
    }
    report.versions = versions.into_values().collect();
    for v in &mut report.versions {
        v.outcomes.rates();
    }
    report
        .versions
        .sort_by(|a, b| (&a.flow, &a.first_call).cmp(&(&b.flow, &b.first_call)));

    // Node traffic.
    let (w, args) = filter(opts, "entered_at", &[]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT flow, node, exit, COUNT(*) AS n FROM node_visits{w} GROUP BY flow, node, exit"
        ),
        &args,
    )
    .await?;
    let mut nodes: BTreeMap<(String, String), NodeTraffic> = BTreeMap::new();
    for r in &rows {
        let (flow, node) = (
            text(&r[0]).unwrap_or_default(),
            text(&r[1]).unwrap_or_default(),
        );
        let n = int(&r[3]);
        let t = nodes
            .entry((flow.clone(), node.clone()))
            .or_insert_with(|| NodeTraffic {
                flow,
                node,
                ..NodeTraffic::default()
            });
        t.entries += n;
        match text(&r[2]) {
            Some(e) if e == "caller_hangup" => t.hangups += n,
            Some(e) => *t.exits.entry(e).or_default() += n,
            None => {}
        }
    }
    report.nodes = nodes.into_values().collect();
    report.nodes.sort_by(|a, b| {
        a.flow
            .cmp(&b.flow)
            .then(b.entries.cmp(&a.entries))
            .then(a.node.cmp(&b.node))
    });

    // Service level.
    let (w, args) = filter(opts, "started_at", &["queued_at IS NOT NULL"]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT queue, COUNT(*) AS queued, \
             SUM(CASE WHEN agent_answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered, \
             SUM(CASE WHEN agent_answered_at IS NOT NULL AND wait_ms <= {SERVICE_LEVEL_MS} THEN 1 ELSE 0 END) AS within \
             FROM calls{w} GROUP BY queue ORDER BY queue"
        ),
        &args,
    )
    .await?;
    let callbacks = callback_figures(pool, opts).await?;
    let mut all = ServiceLevel::default();
    for r in &rows {
        let queue = text(&r[0]);
        let (kept, connected, within) = queue
            .as_ref()
            .and_then(|q| callbacks.get(q))
            .copied()
            .unwrap_or_default();
        let mut s = ServiceLevel {
            queue,
            queued: int(&r[1]),
            answered: int(&r[2]),
            answered_within: int(&r[3]),
            callbacks: kept,
            callbacks_connected: connected,
            callbacks_within: within,
            ..ServiceLevel::default()
        };
        all.queued += s.queued;
        all.answered += s.answered;
        all.answered_within += s.answered_within;
        all.callbacks += s.callbacks;
        all.callbacks_connected += s.callbacks_connected;
        all.callbacks_within += s.callbacks_within;
        s.level = ratio(s.answered_within + s.callbacks_within, s.queued);
        s.meets_target = s.level.map(|l| l >= SERVICE_LEVEL_TARGET);
        report.service_level.push(s);
    }
    all.level = ratio(all.answered_within + all.callbacks_within, all.queued);
    all.meets_target = all.level.map(|l| l >= SERVICE_LEVEL_TARGET);
    report.service_level.push(all);

    // Queues and agents, from the ACD's events.
    (report.queues, report.agents) = queue_figures(pool, opts).await?;

    // Surveys.
    let (w, args) = filter(opts, "saved_at", &[]);
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT queue, agent, question, COUNT(*) AS asked, COUNT(answer) AS answered, \
             COUNT(score) AS scored, SUM(score) AS total, \
             SUM(CASE WHEN LOWER(answer) = 'yes' THEN 1 ELSE 0 END) AS yes, \
             SUM(CASE WHEN LOWER(answer) IN ('yes', 'no') THEN 1 ELSE 0 END) AS yes_no \
             FROM survey_answers{w} GROUP BY queue, agent, question ORDER BY queue, agent, question"
        ),
        &args,
    )
    .await?;
    // (figure, sum of scores, yes-or-no answers)
    type Totals = BTreeMap<(Option<String>, String), (SurveyFigure, f64, u64)>;
    let mut per_queue: Totals = BTreeMap::new();
    let mut per_agent: Totals = BTreeMap::new();
    for r in &rows {
        let (queue, agent, question) = (text(&r[0]), text(&r[1]), text(&r[2]).unwrap_or_default());
        let (asked, answered, scored) = (int(&r[3]), int(&r[4]), int(&r[5]));
        let total = float(&r[6]).unwrap_or(0.0);
        let (yes, yes_no) = (int(&r[7]), int(&r[8]));
        let fig = SurveyFigure {
            queue: queue.clone(),
            agent: agent.clone(),
            question: question.clone(),
            asked,
            answered,
            scored,
            average: (scored > 0).then(|| total / scored as f64),
            yes,
            yes_share: yes_share(yes, yes_no, answered),
            ..SurveyFigure::default()
        };
        report.surveys.push(fig);
        // Totals per queue and per agent; answers outside any queue or agent stand alone
        // (a total of them would repeat the same line).
        for (map, key, q, a) in [
            (&mut per_queue, queue.clone(), queue.clone(), None),
            (&mut per_agent, agent.clone(), None, agent.clone()),
        ] {
            if key.is_none() {
                continue;
            }
            let e = map.entry((key, question.clone())).or_insert_with(|| {
                (
                    SurveyFigure {
                        queue: q,
                        agent: a,
                        question: question.clone(),
                        ..SurveyFigure::default()
                    },
                    0.0,
                    0,
                )
            });
            e.0.asked += asked;
            e.0.answered += answered;
            e.0.scored += scored;
            e.0.yes += yes;
            e.1 += total;
            e.2 += yes_no;
        }
    }
    for (_, (mut fig, total, yes_no)) in per_queue.into_iter().chain(per_agent) {
        fig.average = (fig.scored > 0).then(|| total / fig.scored as f64);
        fig.yes_share = yes_share(fig.yes, yes_no, fig.answered);
        report.surveys.push(fig);
    }
    // A database from before campaigns has no `campaign_attempts` until migrated: no section.
    report.campaigns = campaign_figures(pool, opts).await.unwrap_or_default();
    Ok(report)
}

/// The share of `yes` among the answers of a yes/no question: every answer given (`answered`)
/// is `yes` or `no` (`yes_no`); `None` for another question or none answered.
fn yes_share(yes: u64, yes_no: u64, answered: u64) -> Option<f64> {
    (answered > 0 && yes_no == answered).then(|| yes as f64 / answered as f64)
}

/// The flows that have call records (every period), by name.
pub async fn recorded_flows(pool: &Pool) -> Result<Vec<String>, DataError> {
    let rows = fetch_rows(pool, "SELECT DISTINCT flow FROM calls ORDER BY flow", &[]).await?;
    Ok(rows.iter().filter_map(|r| text(&r[0])).collect())
}

/// The versions that have call records (of `flow` only, when given): (flow, version), by
/// flow and first call.
pub async fn recorded_versions(
    pool: &Pool,
    flow: Option<&str>,
) -> Result<Vec<(String, String)>, DataError> {
    let (w, args) = match flow {
        Some(f) => (" WHERE flow = $1", vec![Value::Text(f.to_string())]),
        None => ("", Vec::new()),
    };
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT flow, flow_version, MIN(started_at) AS first FROM calls{w} \
             GROUP BY flow, flow_version ORDER BY flow, first"
        ),
        &args,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text(&r[0]).unwrap_or_default(),
                text(&r[1]).unwrap_or_default(),
            )
        })
        .collect())
}

/// A `--since` date that does not read as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date: write YYYY-MM-DD, e.g. 2026-11-01")]
pub struct DateError(pub String);

/// Reads a `--since` date: `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, DateError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| DateError(text.to_string()))
}
