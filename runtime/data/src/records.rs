//! Call records: what a [`CallRecorder`] learns from the engine's events and commands (the
//! call, each node visit and how it was left, survey answers, recordings), and the ACD's queue
//! events ([`QueueEventRow`]: queued, offered, answered, ...), written to the platform's
//! tables by a [`RecordWriter`] in batches.
//!
//! The writer never blocks a call: [`RecordWriter::send`] only puts the record in a bounded
//! queue (a full queue refuses it and counts it in [`WriterStats::rejected`]). A task writes
//! what is queued in one transaction per batch (at most [`WriterOptions::max_batch`] records,
//! or whatever arrived within [`WriterOptions::max_delay`]). [`RecordWriter::shutdown`]
//! writes everything accepted before it returns, so nothing accepted is lost on a clean
//! shutdown.
//!
//! Records never hold masked input: node visits name the node and the exit (`key 1`, `next`,
//! `found`, ...), never the digits an `input` collected.

use super::DataError;
use super::connect::Pool;
use super::spool::Spool;
use chrono::NaiveDateTime;
use ivr_compiler::program::{Body, Destination, NodeId};
use ivr_engine::sim::Observer;
use ivr_engine::value::Value;
use ivr_engine::{CallInfo, Command, EndedBy, Event, Exit, Flow, Millis, TransferUpdate};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One row of `calls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRow {
    /// The call id.
    pub call_id: String,
    /// Calling number.
    pub caller: String,
    /// Dialled number.
    pub called: String,
    /// The flow.
    pub flow: String,
    /// Its version (content hash).
    pub flow_version: String,
    /// `sip`, `webrtc`, `sim`.
    pub channel: String,
    /// The call arrived.
    pub started_at: NaiveDateTime,
    /// The IVR answered.
    pub answered_at: Option<NaiveDateTime>,
    /// The call ended.
    pub ended_at: Option<NaiveDateTime>,
    /// `transferred`, `callback`, `abandoned`, `message`, `self_service`, `failed`,
    /// `not_served` (none: not ended). Rows of version 1 may hold its `self_service` for calls
    /// version 2 calls `not_served`.
    pub outcome: Option<String>,
    /// Who ended the call: `caller`, `flow`, `agent`, `system` (none: not ended, or written
    /// by version 1).
    #[serde(default)]
    pub ended_by: Option<String>,
    /// The self-service tasks the call completed (`served`), in order; each is a row of
    /// `served_tasks`.
    #[serde(default)]
    pub served: Vec<String>,
    /// The last queue the call waited in.
    pub queue: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// First put in a queue.
    pub queued_at: Option<NaiveDateTime>,
    /// An agent answered.
    pub agent_answered_at: Option<NaiveDateTime>,
    /// Time in queue until an agent answered, or until the caller left the queue.
    pub wait_ms: Option<i64>,
}

/// One row of `node_visits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitRow {
    /// The call id.
    pub call_id: String,
    /// The flow.
    pub flow: String,
    /// Its version.
    pub flow_version: String,
    /// 1, 2, ... within the call.
    pub seq: i64,
    /// The node (`common.goodbye` for imported ones).
    pub node: String,
    /// Entered.
    pub entered_at: NaiveDateTime,
    /// Left (none: the call ended there without leaving).
    pub left_at: Option<NaiveDateTime>,
    /// How it was left: `key 1`, `next`, `found`, `caller_hangup`, ...
    pub exit: Option<String>,
}

/// One row of `survey_answers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyRow {
    /// The call id.
    pub call_id: String,
    /// The flow.
    pub flow: String,
    /// Its version.
    pub flow_version: String,
    /// The survey node.
    pub survey: String,
    /// Its `save` name.
    pub save_table: String,
    /// The question's name.
    pub question: String,
    /// The answer as text (none: not answered).
    pub answer: Option<String>,
    /// The answer when it is a number (scale questions).
    pub score: Option<f64>,
    /// The agent of the call.
    pub agent: Option<String>,
    /// The queue of the call.
    pub queue: Option<String>,
    /// When it was saved.
    pub saved_at: NaiveDateTime,
}

/// One row of `recordings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingRow {
    /// The call id.
    pub call_id: String,
    /// The flow.
    pub flow: String,
    /// The record node.
    pub node: String,
    /// Its `save` name.
    pub save_table: String,
    /// Calling number.
    pub caller: String,
    /// The audio file (none for simulated calls).
    pub file: Option<String>,
    /// Length in milliseconds.
    pub length_ms: i64,
    /// When the recording started.
    pub recorded_at: NaiveDateTime,
    /// The queue whose agents handle the message ([`CallRecorder`]: the queue of the call's
    /// last transfer, else the flow's first transfer queue; none when the flow has none).
    #[serde(default)]
    pub queue: Option<String>,
    /// `message` (a record node) or `call` (a whole-call recording).
    #[serde(default = "message_kind")]
    pub kind: String,
    /// The agent who answered (whole-call recordings of transferred calls).
    #[serde(default)]
    pub agent: Option<String>,
    /// The SHA-256 of the finished file, in hex (whole-call recordings).
    #[serde(default)]
    pub sha256: Option<String>,
}

fn message_kind() -> String {
    "message".to_string()
}

/// One row of `queue_events`: something the ACD did with a call in a queue. A queued call
/// ends in exactly one of `answered`, `abandoned` or `left`; each `offered` ends in exactly
/// one of `answered`, `declined`, `ring_timeout`, or an `abandoned` / `left` naming the agent
/// that was ringing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEventRow {
    /// When it happened.
    pub at: NaiveDateTime,
    /// The queue.
    pub queue: String,
    /// The call id (as in `calls`).
    pub call_id: String,
    /// What happened (see [`QueueEventKind`]).
    pub event: QueueEventKind,
    /// The agent offered the call (`offered`, `answered`, `declined`, `ring_timeout`; on
    /// `abandoned` and `left` the agent whose phone was ringing, if any).
    pub agent: Option<String>,
    /// Time since the call was queued (none for `no_agents`: it never was).
    pub wait_ms: Option<i64>,
    /// More: the reason of `declined` (`busy`, `no_answer`, `failed`, `agent_offline`) and of
    /// `left` (`max_wait`, `no_agents`).
    pub detail: Option<String>,
}

/// What a queue event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueEventKind {
    /// The call entered the queue.
    Queued,
    /// An agent's phone rings for it.
    Offered,
    /// The agent answered.
    Answered,
    /// The offer failed: busy, no answer from the phone, or failed.
    Declined,
    /// The agent's phone or console went away while it rang (the console closed, the agent
    /// went offline): not the agent's refusal.
    Lost,
    /// The agent let it ring for the queue's `ring_timeout`.
    RingTimeout,
    /// The caller hung up while waiting.
    Abandoned,
    /// The call left the queue without an agent: `max_wait` passed, or nobody who could take
    /// it is logged in any more.
    Left,
    /// Refused when it arrived: nobody who could take it is logged in (never queued).
    NoAgents,
}

impl QueueEventKind {
    /// The name stored in `queue_events.event`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueEventKind::Queued => "queued",
            QueueEventKind::Offered => "offered",
            QueueEventKind::Answered => "answered",
            QueueEventKind::Declined => "declined",
            QueueEventKind::Lost => "lost",
            QueueEventKind::RingTimeout => "ring_timeout",
            QueueEventKind::Abandoned => "abandoned",
            QueueEventKind::Left => "left",
            QueueEventKind::NoAgents => "no_agents",
        }
    }
}

/// A record to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// A call whose flow starts (in `calls_in_progress` until its [`Record::Call`] comes; a
    /// run killed meanwhile leaves it there, and the next run closes it as `failed`).
    Started(CallRow),
    /// A call (written when it ends).
    Call(CallRow),
    /// A cluster node's call, written when it ends only while this node still owns it
    /// (PostgreSQL; see [`OwnedCall`]).
    OwnedCall(Box<OwnedCall>),
    /// A node visit (written when the node is left).
    Visit(VisitRow),
    /// A survey answer.
    Survey(SurveyRow),
    /// A recording.
    Recording(RecordingRow),
    /// A queue event of the ACD.
    QueueEvent(QueueEventRow),
}

/// The final record of a call whose node holds its checkpoint in `call_checkpoints` (a
/// cluster node's call; docs/cluster.md, "Fencing"). It is written, in one transaction,
/// only when that node still owns the call: its checkpoint row is deleted only when its owner
/// is `node`, and when the row names another owner (the call was taken over), or a `calls`
/// row of the same call (its id and arrival) already exists, nothing is written (its `calls_in_progress` row
/// stays for the node that has the call) and the writer counts it in
/// [`WriterStats::fenced`]. So a node taken for dead that runs on, or its spool replayed
/// later, never doubles a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedCall {
    /// The call's row.
    pub call: CallRow,
    /// The SIP Call-ID (the checkpoint's key).
    pub sip_call_id: String,
    /// The node that writes it (the checkpoint's owner it must still be).
    pub node: String,
}

/// Longest text kept in a record field (bytes, cut at a character boundary): what a peer
/// sends (a Call-ID, a caller's number) cannot bloat the tables.
pub const MAX_FIELD: usize = 1024;

/// A text made safe for both databases: NUL characters (PostgreSQL refuses them in text)
/// become U+FFFD, and it is cut to [`MAX_FIELD`] bytes.
fn safe(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{fffd}");
    }
    if s.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn safe_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        safe(s);
    }
}

impl Record {
    /// Makes every text field safe for both databases (see [`MAX_FIELD`]).
    pub fn sanitize(&mut self) {
        if let Record::OwnedCall(o) = self {
            safe(&mut o.sip_call_id);
            safe(&mut o.node);
        }
        match self {
            Record::OwnedCall(o) => sanitize_call(&mut o.call),
            Record::Call(c) | Record::Started(c) => sanitize_call(c),
            Record::Visit(v) => {
                for s in [
                    &mut v.call_id,
                    &mut v.flow,
                    &mut v.flow_version,
                    &mut v.node,
                ] {
                    safe(s);
                }
                safe_opt(&mut v.exit);
            }
            Record::Survey(x) => {
                for s in [
                    &mut x.call_id,
                    &mut x.flow,
                    &mut x.flow_version,
                    &mut x.survey,
                    &mut x.save_table,
                    &mut x.question,
                ] {
                    safe(s);
                }
                for s in [&mut x.answer, &mut x.agent, &mut x.queue] {
                    safe_opt(s);
                }
            }
            Record::Recording(r) => {
                for s in [
                    &mut r.call_id,
                    &mut r.flow,
                    &mut r.node,
                    &mut r.save_table,
                    &mut r.caller,
                ] {
                    safe(s);
                }
                safe_opt(&mut r.file);
                safe_opt(&mut r.queue);
            }
            Record::QueueEvent(e) => {
                for s in [&mut e.queue, &mut e.call_id] {
                    safe(s);
                }
                for s in [&mut e.agent, &mut e.detail] {
                    safe_opt(s);
                }
            }
        }
    }

    /// The call the record belongs to.
    pub fn call_id(&self) -> &str {
        match self {
            Record::Call(c) | Record::Started(c) => &c.call_id,
            Record::OwnedCall(o) => &o.call.call_id,
            Record::Visit(v) => &v.call_id,
            Record::Survey(s) => &s.call_id,
            Record::Recording(r) => &r.call_id,
            Record::QueueEvent(e) => &e.call_id,
        }
    }
}

fn sanitize_call(c: &mut CallRow) {
    for s in [
        &mut c.call_id,
        &mut c.caller,
        &mut c.called,
        &mut c.flow,
        &mut c.flow_version,
        &mut c.channel,
    ] {
        safe(s);
    }
    for s in [&mut c.outcome, &mut c.ended_by, &mut c.queue, &mut c.agent] {
        safe_opt(s);
    }
    c.served.truncate(ivr_engine::SERVED_MAX);
    for s in &mut c.served {
        safe(s);
    }
}

/// The engine's time as a timestamp.
pub fn timestamp(ms: Millis) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .naive_utc()
}

/// Settings of a [`RecordWriter`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Records waiting at most (more are refused, never waited for).
    pub capacity: usize,
    /// Records per transaction at most.
    pub max_batch: usize,
    /// How long a record may wait for others to share its batch.
    pub max_delay: Duration,
    /// Where records wait while the database is down, and where refused ones are kept (none:
    /// records the database cannot take are lost, and counted).
    pub spool: Option<Spool>,
    /// Calls an earlier run left in progress (it was killed) are closed as `failed`, ended at
    /// this time, when the writer starts (after what waited in the spool is written, before
    /// any record of this run). None: left as they are.
    pub interrupted_at: Option<Millis>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            capacity: 100_000,
            max_batch: 1_000,
            max_delay: Duration::from_millis(100),
            spool: None,
            interrupted_at: None,
        }
    }
}

/// Counters of a writer.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    spooled: AtomicU64,
    quarantined: AtomicU64,
    fenced: AtomicU64,
}

/// A snapshot of a writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records taken into the queue.
    pub accepted: u64,
    /// Records refused because the queue was full (or the writer was shut down).
    pub rejected: u64,
    /// Records written.
    pub written: u64,
    /// Records lost: the database could not take them and there was no room in the spool
    /// (or no spool).
    pub failed: u64,
    /// Transactions written.
    pub batches: u64,
    /// Records put in the spool because the database was down (written later).
    pub spooled: u64,
    /// Records the database refused (kept in the spool's quarantine file, logged).
    pub quarantined: u64,
    /// Final records of cluster calls not written because this node no longer owns the call
    /// (another node took it over, or its record is already written; [`OwnedCall`]).
    pub fenced: u64,
}

impl Stats {
    fn snapshot(&self) -> WriterStats {
        WriterStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            quarantined: self.quarantined.load(Ordering::Relaxed),
            fenced: self.fenced.load(Ordering::Relaxed),
        }
    }
}

enum Msg {
    Record(Box<Record>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The batching writer of call records. Cheap to clone; every clone feeds the same task.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordWriter({:?})", self.stats.snapshot())
    }
}

impl RecordWriter {
    /// Starts the writer task on `rt` (a tokio runtime handle) writing to `pool`.
    pub fn start(pool: Pool, opts: WriterOptions, rt: &tokio::runtime::Handle) -> RecordWriter {
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let stats = Arc::new(Stats::default());
        rt.spawn(run(pool, opts, rx, Arc::clone(&stats)));
        RecordWriter { tx, stats }
    }

    /// Queues a record; never blocks. False when it was refused (queue full or shut down).
    pub fn send(&self, record: Record) -> bool {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes everything accepted, stops the task and returns the counters.
    pub async fn shutdown(self) -> WriterStats {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.stats.snapshot()
    }

    /// The counters now.
    pub fn stats(&self) -> WriterStats {
        self.stats.snapshot()
    }
}

/// How often records waiting in the spool are tried again while the database is down.
const SPOOL_RETRY: Duration = Duration::from_secs(2);

async fn run(pool: Pool, opts: WriterOptions, mut rx: mpsc::Receiver<Msg>, stats: Arc<Stats>) {
    let w = Writer {
        pool,
        spool: opts.spool.clone(),
        max_batch: opts.max_batch.max(1),
        stats,
    };
    // What a previous run left in the spool, then the calls it left in progress.
    w.drain_spool().await;
    if let Some(at) = opts.interrupted_at {
        match close_interrupted(&w.pool, at).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                calls = n,
                "calls left in progress by an earlier run recorded as failed"
            ),
            Err(e) => {
                tracing::error!(error = %e, "calls left in progress by an earlier run not closed")
            }
        }
    }
    let mut buf: Vec<Record> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    loop {
        let spool_waits = w.spool.as_ref().is_some_and(Spool::has_pending);
        let msg = if buf.is_empty() && !spool_waits {
            rx.recv().await
        } else {
            let until = if buf.is_empty() {
                tokio::time::Instant::now() + SPOOL_RETRY
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    w.write(&mut buf).await;
                    if buf.is_empty() {
                        w.drain_spool().await;
                    }
                    continue;
                }
            }
        };
        match msg {
            None => {
                w.write(&mut buf).await;
                return;
            }
            Some(Msg::Record(r)) => {
                if buf.is_empty() {
                    deadline = tokio::time::Instant::now() + opts.max_delay;
                }
                buf.push(*r);
                if buf.len() >= opts.max_batch {
                    w.write(&mut buf).await;
                }
            }
            Some(Msg::Flush(ack)) => {
                w.write(&mut buf).await;
                let _ = ack.send(());
            }
            Some(Msg::Shutdown(ack)) => {
                // Refuse new records; write every one already accepted.
                rx.close();
                let mut acks = vec![ack];
                while let Some(m) = rx.recv().await {
                    match m {
                        Msg::Record(r) => {
                            buf.push(*r);
                            if buf.len() >= opts.max_batch {
                                w.write(&mut buf).await;
                            }
                        }
                        Msg::Flush(a) | Msg::Shutdown(a) => acks.push(a),
                    }
                }
                w.write(&mut buf).await;
                for a in acks {
                    let _ = a.send(());
                }
                return;
            }
        }
    }
}

/// Whether an error says the database cannot be reached now (the record itself is fine):
/// connection and pool errors, PostgreSQL's connection exceptions (class 08), shutdowns
/// (57P) and "too many connections", SQLite's busy and locked.
fn unavailable(e: &DataError) -> bool {
    match e {
        DataError::Connect(_) => true,
        DataError::Sql(e) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                matches!(
                    c.as_ref(),
                    "5" | "6" | "261" | "262" | "517" | "773" | "53300"
                ) || c.starts_with("08")
                    || c.starts_with("57P")
            }),
            _ => false,
        },
        _ => false,
    }
}

/// The writer task's side: the database, the spool and the counters.
struct Writer {
    pool: Pool,
    spool: Option<Spool>,
    max_batch: usize,
    stats: Arc<Stats>,
}

impl Writer {
    /// Writes a batch and empties `buf`. A database that hiccups is tried again a few times;
    /// one that is down gets the batch spooled; a batch the database refuses is written row by
    /// row, and the rows it refuses alone are quarantined: one bad record never takes others
    /// with it.
    async fn write(&self, buf: &mut Vec<Record>) {
        if buf.is_empty() {
            return;
        }
        for r in buf.iter_mut() {
            r.sanitize();
        }
        let rows = std::mem::take(buf);
        let written = self.store(&rows).await;
        if written < rows.len() {
            self.spool_or_lose(&rows[written..]);
        } else if self.spool.as_ref().is_some_and(Spool::has_pending) {
            // The database answers again: what waited goes in now.
            self.drain_spool().await;
        }
    }

    /// Stores `rows`: the whole batch in one transaction (tried again while the database is
    /// unavailable, a few times), else row by row with the refused ones quarantined. Returns
    /// how many rows from the start were dealt with (written or quarantined); the rest could
    /// not be written because the database is down.
    async fn store(&self, rows: &[Record]) -> usize {
        let n = rows.len() as u64;
        let mut last = None;
        for attempt in 0..3u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            match insert(&self.pool, rows).await {
                Ok(fenced) => {
                    self.stats.fenced.fetch_add(fenced, Ordering::Relaxed);
                    self.stats.written.fetch_add(n - fenced, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    return rows.len();
                }
                Err(e) => {
                    let down = unavailable(&e);
                    last = Some(e);
                    if !down {
                        break;
                    }
                }
            }
        }
        if last.as_ref().is_some_and(unavailable) {
            tracing::warn!(
                records = n,
                error = %last.map_or_else(String::new, |e| e.to_string()),
                "the database is unavailable: call records wait in the spool"
            );
            return 0;
        }
        // The batch was refused: find the rows the database refuses.
        for (i, r) in rows.iter().enumerate() {
            match insert(&self.pool, std::slice::from_ref(r)).await {
                Ok(fenced) => {
                    self.stats.fenced.fetch_add(fenced, Ordering::Relaxed);
                    self.stats.written.fetch_add(1 - fenced, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if unavailable(&e) => return i,
                Err(e) => self.quarantine(r, &e),
            }
        }
        rows.len()
    }

    fn quarantine(&self, r: &Record, e: &DataError) {
        self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
        let kept = match &self.spool {
            Some(s) => match s.quarantine(r) {
                Ok(()) => format!("kept in {}", s.dir().join("quarantine.jsonl").display()),
                Err(e) => format!("not kept: {e}"),
            },
            None => "not kept: no spool".to_string(),
        };
        tracing::error!(call = %r.call_id(), error = %e, "a call record was refused by the database ({kept})");
    }

    fn spool_or_lose(&self, rows: &[Record]) {
        let n = rows.len() as u64;
        let Some(spool) = &self.spool else {
            self.stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(
                records = n,
                "call records lost: the database is unavailable and there is no spool"
            );
            return;
        };
        match spool.append_pending(rows) {
            Ok(()) => {
                self.stats.spooled.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!(records = n, error = %e, "call records lost: the database is unavailable and the spool cannot take them");
            }
        }
    }

    /// Writes the records waiting in the spool, batch by batch; what the database cannot take
    /// yet stays there (only that).
    async fn drain_spool(&self) {
        let Some(spool) = &self.spool else { return };
        let (rows, bad) = match spool.read_pending::<Record>() {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "the spool cannot be read");
                return;
            }
        };
        if bad > 0 {
            self.stats.failed.fetch_add(bad, Ordering::Relaxed);
            tracing::error!(lines = bad, "unreadable lines in the spool were dropped");
        }
        let mut done = 0;
        for chunk in rows.chunks(self.max_batch) {
            let stored = self.store(chunk).await;
            done += stored;
            if stored < chunk.len() {
                break;
            }
        }
        let result = if done == rows.len() {
            if !rows.is_empty() {
                tracing::info!(records = rows.len(), "call records from the spool written");
            }
            spool.clear_pending()
        } else if done > 0 {
            spool.replace_pending(&rows[done..])
        } else {
            Ok(())
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the spool cannot be rewritten");
        }
    }
}

/// Turns every row of `calls_in_progress` into a `calls` row with the outcome `failed`, ended
/// at `at`; returns how many.
pub async fn close_interrupted(pool: &Pool, at: Millis) -> Result<u64, DataError> {
    const COLUMNS: &str = "call_id, caller, called, flow, flow_version, channel, started_at";
    let ended = timestamp(at);
    let n = match pool {
        Pool::Sqlite(p) => {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            let n = sqlx::query(&format!(
                "INSERT INTO calls ({COLUMNS}, ended_at, outcome, ended_by) \
                 SELECT {COLUMNS}, ?1, 'failed', 'system' FROM calls_in_progress"
            ))
            .bind(ended)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM calls_in_progress")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            n
        }
        Pool::Postgres(p) => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(&format!(
                "INSERT INTO calls ({COLUMNS}, ended_at, outcome, ended_by) \
                 SELECT {COLUMNS}, $1, 'failed', 'system' FROM calls_in_progress"
            ))
            .bind(ended)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM calls_in_progress")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            n
        }
    };
    Ok(n)
}

/// Rows per INSERT statement (well under SQLite's limit of bound variables).
const ROWS_PER_INSERT: usize = 500;

macro_rules! insert_batch {
    ($db:ty, $tx:expr, $buf:expr, $owned_apart:expr) => {{
        let started: Vec<&CallRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::Started(c) => Some(c),
                _ => None,
            })
            .collect();
        for chunk in started.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO calls_in_progress (call_id, caller, called, flow, flow_version, channel, started_at) ",
            );
            b.push_values(chunk, |mut row, c| {
                row.push_bind(c.call_id.clone())
                    .push_bind(c.caller.clone())
                    .push_bind(c.called.clone())
                    .push_bind(c.flow.clone())
                    .push_bind(c.flow_version.clone())
                    .push_bind(c.channel.clone())
                    .push_bind(c.started_at);
            });
            b.build().execute(&mut *$tx).await?;
        }
        let calls: Vec<&CallRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::Call(c) => Some(c),
                Record::OwnedCall(o) if !$owned_apart => Some(&o.call),
                _ => None,
            })
            .collect();
        for chunk in calls.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO calls (call_id, caller, called, flow, flow_version, channel, started_at, \
                 answered_at, ended_at, outcome, ended_by, queue, agent, queued_at, agent_answered_at, wait_ms) ",
            );
            b.push_values(chunk, |mut row, c| {
                row.push_bind(c.call_id.clone())
                    .push_bind(c.caller.clone())
                    .push_bind(c.called.clone())
                    .push_bind(c.flow.clone())
                    .push_bind(c.flow_version.clone())
                    .push_bind(c.channel.clone())
                    .push_bind(c.started_at)
                    .push_bind(c.answered_at)
                    .push_bind(c.ended_at)
                    .push_bind(c.outcome.clone())
                    .push_bind(c.ended_by.clone())
                    .push_bind(c.queue.clone())
                    .push_bind(c.agent.clone())
                    .push_bind(c.queued_at)
                    .push_bind(c.agent_answered_at)
                    .push_bind(c.wait_ms);
            });
            b.build().execute(&mut *$tx).await?;
            // Ended: no longer in progress.
            let mut d =
                QueryBuilder::<$db>::new("DELETE FROM calls_in_progress WHERE call_id IN (");
            let mut ids = d.separated(", ");
            for c in chunk {
                ids.push_bind(c.call_id.clone());
            }
            ids.push_unseparated(")");
            d.build().execute(&mut *$tx).await?;
        }
        let served: Vec<(&CallRow, &String)> = calls
            .iter()
            .flat_map(|c| c.served.iter().map(move |t| (*c, t)))
            .collect();
        for chunk in served.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO served_tasks (call_id, flow, task, outcome, served_at) ",
            );
            b.push_values(chunk, |mut row, (c, task)| {
                row.push_bind(c.call_id.clone())
                    .push_bind(c.flow.clone())
                    .push_bind((*task).clone())
                    .push_bind(c.outcome.clone())
                    .push_bind(c.ended_at.unwrap_or(c.started_at));
            });
            b.build().execute(&mut *$tx).await?;
        }
        let visits: Vec<&VisitRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::Visit(v) => Some(v),
                _ => None,
            })
            .collect();
        for chunk in visits.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO node_visits (call_id, flow, flow_version, seq, node, entered_at, left_at, exit) ",
            );
            b.push_values(chunk, |mut row, v| {
                row.push_bind(v.call_id.clone())
                    .push_bind(v.flow.clone())
                    .push_bind(v.flow_version.clone())
                    .push_bind(v.seq)
                    .push_bind(v.node.clone())
                    .push_bind(v.entered_at)
                    .push_bind(v.left_at)
                    .push_bind(v.exit.clone());
            });
            b.build().execute(&mut *$tx).await?;
        }
        let surveys: Vec<&SurveyRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::Survey(s) => Some(s),
                _ => None,
            })
            .collect();
        for chunk in surveys.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO survey_answers (call_id, flow, flow_version, survey, save_table, question, \
                 answer, score, agent, queue, saved_at) ",
            );
            b.push_values(chunk, |mut row, s| {
                row.push_bind(s.call_id.clone())
                    .push_bind(s.flow.clone())
                    .push_bind(s.flow_version.clone())
                    .push_bind(s.survey.clone())
                    .push_bind(s.save_table.clone())
                    .push_bind(s.question.clone())
                    .push_bind(s.answer.clone())
                    .push_bind(s.score)
                    .push_bind(s.agent.clone())
                    .push_bind(s.queue.clone())
                    .push_bind(s.saved_at);
            });
            b.build().execute(&mut *$tx).await?;
        }
        let recordings: Vec<&RecordingRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::Recording(x) => Some(x),
                _ => None,
            })
            .collect();
        for chunk in recordings.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO recordings (call_id, flow, node, save_table, caller, file, length_ms, recorded_at, queue, kind, agent, sha256) ",
            );
            b.push_values(chunk, |mut row, r| {
                row.push_bind(r.call_id.clone())
                    .push_bind(r.flow.clone())
                    .push_bind(r.node.clone())
                    .push_bind(r.save_table.clone())
                    .push_bind(r.caller.clone())
                    .push_bind(r.file.clone())
                    .push_bind(r.length_ms)
                    .push_bind(r.recorded_at)
                    .push_bind(r.queue.clone())
                    .push_bind(r.kind.clone())
                    .push_bind(r.agent.clone())
                    .push_bind(r.sha256.clone());
            });
            b.build().execute(&mut *$tx).await?;
        }
        let events: Vec<&QueueEventRow> = $buf
            .iter()
            .filter_map(|r| match r {
                Record::QueueEvent(e) => Some(e),
                _ => None,
            })
            .collect();
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut b = QueryBuilder::<$db>::new(
                "INSERT INTO queue_events (at, queue, call_id, event, agent, wait_ms, detail) ",
            );
            b.push_values(chunk, |mut row, e| {
                row.push_bind(e.at)
                    .push_bind(e.queue.clone())
                    .push_bind(e.call_id.clone())
                    .push_bind(e.event.as_str())
                    .push_bind(e.agent.clone())
                    .push_bind(e.wait_ms)
                    .push_bind(e.detail.clone());
            });
            b.build().execute(&mut *$tx).await?;
        }
    }};
}

/// Writes `buf` in one transaction; how many of its [`OwnedCall`]s were fenced (not
/// written: the call is no longer this node's).
async fn insert(pool: &Pool, buf: &[Record]) -> Result<u64, DataError> {
    let mut fenced = 0;
    match pool {
        Pool::Sqlite(p) => {
            // A single server's database: a cluster's calls are never written here, and an
            // owned call is written as any other.
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            insert_batch!(sqlx::Sqlite, tx, buf, false);
            tx.commit().await?;
        }
        Pool::Postgres(p) => {
            let mut tx = p.begin().await?;
            insert_batch!(sqlx::Postgres, tx, buf, true);
            for r in buf {
                if let Record::OwnedCall(o) = r
                    && !insert_owned(&mut tx, o).await?
                {
                    fenced += 1;
                }
            }
            tx.commit().await?;
        }
    }
    Ok(fenced)
}

/// Writes a cluster call's final record if node `o.node` still owns the call (see
/// [`OwnedCall`]): its checkpoint row, locked first (a claim in progress is waited for), must
/// be this node's or gone, and no `calls` row of the call may exist. A row of this node's is
/// deleted in the same transaction. False: fenced, nothing written (logged).
async fn insert_owned(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    o: &OwnedCall,
) -> Result<bool, DataError> {
    let owner: Option<String> =
        sqlx::query_scalar("SELECT owner FROM call_checkpoints WHERE sip_call_id = $1 FOR UPDATE")
            .bind(&o.sip_call_id)
            .fetch_optional(&mut **tx)
            .await?;
    match owner.as_deref() {
        Some(owner) if owner != o.node => {
            tracing::warn!(
                call = %o.call.call_id,
                owner,
                "call record not written: the call was taken over by node {owner}"
            );
            return Ok(false);
        }
        Some(_) => {
            sqlx::query("DELETE FROM call_checkpoints WHERE sip_call_id = $1 AND owner = $2")
                .bind(&o.sip_call_id)
                .bind(&o.node)
                .execute(&mut **tx)
                .await?;
        }
        // No checkpoint row: two writers of the same call (no row to lock) take turns on
        // the call's id, so that the check below sees the other's row.
        None => {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1769370227))")
                .bind(&o.call.call_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    let c = &o.call;
    let done = sqlx::query(
        "INSERT INTO calls (call_id, caller, called, flow, flow_version, channel, started_at,
             answered_at, ended_at, outcome, ended_by, queue, agent, queued_at,
             agent_answered_at, wait_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16
          WHERE NOT EXISTS (SELECT 1 FROM calls WHERE call_id = $1 AND started_at = $7)",
    )
    .bind(&c.call_id)
    .bind(&c.caller)
    .bind(&c.called)
    .bind(&c.flow)
    .bind(&c.flow_version)
    .bind(&c.channel)
    .bind(c.started_at)
    .bind(c.answered_at)
    .bind(c.ended_at)
    .bind(&c.outcome)
    .bind(&c.ended_by)
    .bind(&c.queue)
    .bind(&c.agent)
    .bind(c.queued_at)
    .bind(c.agent_answered_at)
    .bind(c.wait_ms)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        tracing::warn!(call = %c.call_id, "call record not written: the call's record is already there");
        return Ok(false);
    }
    sqlx::query("DELETE FROM calls_in_progress WHERE call_id = $1")
        .bind(&c.call_id)
        .execute(&mut **tx)
        .await?;
    for task in &c.served {
        sqlx::query(
            "INSERT INTO served_tasks (call_id, flow, task, outcome, served_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.call_id)
        .bind(&c.flow)
        .bind(task)
        .bind(&c.outcome)
        .bind(c.ended_at.unwrap_or(c.started_at))
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// The queue a message of a call that never reached a transfer belongs to: the queue of the
/// flow's first transfer node (in the order of the flow's nodes), if it has one.
pub fn message_queue(program: &ivr_compiler::program::Program) -> Option<String> {
    program.nodes.iter().find_map(|n| match &n.body {
        Body::Transfer(t) => match &t.destination {
            Destination::Queue(q) => Some(q.clone()),
            _ => None,
        },
        _ => None,
    })
}

/// The call a whole-call recording belongs to ([`CallRecorder::row_maker`]).
#[derive(Debug, Clone)]
pub struct WholeCall {
    call_id: String,
    flow: String,
    caller: String,
    queue: Option<String>,
}

impl WholeCall {
    /// The `recordings` row (kind `call`) of a finished recording: started at `started` in
    /// node `node`, `length_ms` long, answered by `agent` if any, its file's SHA-256.
    pub fn whole_call(
        self,
        node: String,
        file: String,
        started: Millis,
        length_ms: u64,
        agent: Option<String>,
        sha256: String,
    ) -> Record {
        Record::Recording(RecordingRow {
            call_id: self.call_id,
            flow: self.flow,
            node,
            save_table: "calls".to_string(),
            caller: self.caller,
            file: Some(file),
            length_ms: i64::try_from(length_ms).unwrap_or(i64::MAX),
            recorded_at: timestamp(started),
            queue: self.queue,
            kind: "call".to_string(),
            agent,
            sha256: Some(sha256),
        })
    }
}

/// Follows one call through its events and commands and sends its records to a writer: node
/// visits as nodes are left, survey answers and recordings as they are saved, the call row
/// when the call ends (or at [`CallRecorder::finish`]).
pub struct CallRecorder {
    writer: RecordWriter,
    flow: Arc<Flow>,
    call: CallRow,
    seq: i64,
    /// Nodes entered and not yet left: node, seq, entered.
    open: Vec<(NodeId, i64, Millis)>,
    recording: Option<(NodeId, Millis)>,
    queued_at: Option<Millis>,
    queue_left: Option<Millis>,
    answered_at: Option<Millis>,
    in_transfer: bool,
    done: bool,
    /// The audio file of the recording in progress (set by drivers that keep audio).
    file: Option<String>,
    /// When the call arrived.
    started_ms: Millis,
    /// When its flow started (a call taken over keeps its first start).
    answered_ms: Option<Millis>,
    /// A cluster node's call: its SIP Call-ID and this node (its final record is an
    /// [`OwnedCall`]).
    owner: Option<(String, String)>,
}

impl CallRecorder {
    /// Starts recording the call `info` of `flow`, arriving at `now`.
    pub fn new(writer: RecordWriter, flow: Arc<Flow>, info: &CallInfo, now: Millis) -> Self {
        let call = CallRow {
            call_id: info.id.clone(),
            caller: info.caller.clone(),
            called: info.called.clone(),
            flow: flow.program.name.clone(),
            flow_version: flow.program.version.clone(),
            channel: info.channel.as_str().to_string(),
            started_at: timestamp(now),
            answered_at: None,
            ended_at: None,
            outcome: None,
            ended_by: None,
            served: Vec::new(),
            queue: None,
            agent: None,
            queued_at: None,
            agent_answered_at: None,
            wait_ms: None,
        };
        writer.send(Record::Started(call.clone()));
        Self::following(writer, flow, call, now)
    }

    fn following(writer: RecordWriter, flow: Arc<Flow>, call: CallRow, now: Millis) -> Self {
        CallRecorder {
            writer,
            flow,
            call,
            seq: 0,
            open: Vec::new(),
            recording: None,
            queued_at: None,
            queue_left: None,
            answered_at: None,
            in_transfer: false,
            done: false,
            file: None,
            started_ms: now,
            answered_ms: None,
            owner: None,
        }
    }

    /// Makes the call's final record an [`OwnedCall`]: written only while node `node` owns
    /// the checkpoint `sip_call_id` (a cluster node's call).
    pub fn set_owner(&mut self, sip_call_id: &str, node: &str) {
        self.owner = Some((sip_call_id.to_string(), node.to_string()));
    }

    /// Forgets the call without writing its final record (nor the visits still open): it is
    /// another node's now (a cluster's fencing).
    pub fn abandon(&mut self) {
        self.done = true;
        self.open.clear();
    }

    /// Continues the record of a call another node started (a cluster's takeover): its
    /// `calls_in_progress` row is already there (none is written again), the call row keeps
    /// the first arrival and answer times, and node visits are numbered on from `visit_seq`.
    pub fn continued(
        writer: RecordWriter,
        flow: Arc<Flow>,
        info: &CallInfo,
        started_at: Millis,
        answered_at: Option<Millis>,
        visit_seq: i64,
    ) -> Self {
        let mut call = CallRow {
            call_id: info.id.clone(),
            caller: info.caller.clone(),
            called: info.called.clone(),
            flow: flow.program.name.clone(),
            flow_version: flow.program.version.clone(),
            channel: info.channel.as_str().to_string(),
            started_at: timestamp(started_at),
            answered_at: answered_at.map(timestamp),
            ended_at: None,
            outcome: None,
            ended_by: None,
            served: Vec::new(),
            queue: None,
            agent: None,
            queued_at: None,
            agent_answered_at: None,
            wait_ms: None,
        };
        safe(&mut call.call_id);
        let mut r = Self::following(writer, flow, call, started_at);
        r.seq = visit_seq.max(0);
        r.answered_ms = answered_at;
        r
    }

    /// When the call arrived (local wall-clock milliseconds).
    pub fn started_ms(&self) -> Millis {
        self.started_ms
    }

    /// When its flow first started, if it has.
    pub fn answered_ms(&self) -> Option<Millis> {
        self.answered_ms
    }

    /// Node visits numbered so far.
    pub fn visit_seq(&self) -> i64 {
        self.seq
    }

    /// Names the audio file of the recording in progress; its `recordings` row (written when
    /// the recording ends) carries it. Drivers without audio (the simulator) leave it unset.
    pub fn set_recording_file(&mut self, file: Option<String>) {
        self.file = file;
    }

    fn node_name(&self, node: NodeId) -> String {
        self.flow
            .program
            .nodes
            .get(node as usize)
            .map_or_else(|| format!("#{node}"), |n| n.name.clone())
    }

    fn visit(&self, seq: i64, node: NodeId, entered: Millis, left: Option<(Millis, Exit)>) {
        self.writer.send(Record::Visit(VisitRow {
            call_id: self.call.call_id.clone(),
            flow: self.call.flow.clone(),
            flow_version: self.call.flow_version.clone(),
            seq,
            node: self.node_name(node),
            entered_at: timestamp(entered),
            left_at: left.map(|(t, _)| timestamp(t)),
            exit: left.map(|(_, e)| e.label()),
        }));
    }

    fn recording_done(&mut self, length_ms: u64) {
        let Some((node, started)) = self.recording.take() else {
            return;
        };
        let save = match self.flow.program.nodes.get(node as usize).map(|n| &n.body) {
            Some(Body::Record(r)) => r.save.clone(),
            _ => String::new(),
        };
        self.writer.send(Record::Recording(RecordingRow {
            call_id: self.call.call_id.clone(),
            flow: self.call.flow.clone(),
            node: self.node_name(node),
            save_table: save,
            caller: self.call.caller.clone(),
            file: self.file.take(),
            length_ms: i64::try_from(length_ms).unwrap_or(i64::MAX),
            recorded_at: timestamp(started),
            queue: self
                .call
                .queue
                .clone()
                .or_else(|| message_queue(&self.flow.program)),
            kind: message_kind(),
            agent: None,
            sha256: None,
        }));
    }

    /// What the `recordings` row of this call's whole-call recording needs to know of the
    /// call (taken when the call ends: the queue is its last transfer's).
    pub fn row_maker(&self) -> WholeCall {
        WholeCall {
            call_id: self.call.call_id.clone(),
            flow: self.call.flow.clone(),
            caller: self.call.caller.clone(),
            queue: self.call.queue.clone(),
        }
    }

    /// Follows one event fed to the engine.
    pub fn event(&mut self, event: &Event, now: Millis) {
        match event {
            // A call taken over keeps its first answer.
            Event::Start if self.answered_ms.is_none() => {
                self.answered_ms = Some(now);
                self.call.answered_at = Some(timestamp(now));
            }
            Event::Transfer(TransferUpdate::Answered { agent }) => {
                if self.answered_at.is_none() && self.in_transfer {
                    self.answered_at = Some(now);
                    self.call.agent_answered_at = Some(timestamp(now));
                }
                if agent.is_some() {
                    self.call.agent = agent.clone();
                }
            }
            // Refused on arrival (nobody who could take it is logged in): the call was never
            // put in the queue, so it does not count in the queue's service level (the ACD's
            // `no_agents` event is not counted as queued either). Within a second: the ACD's
            // answer travels between tasks.
            Event::Transfer(TransferUpdate::NoAgents)
                if self.in_transfer
                    && self.answered_at.is_none()
                    && self.queued_at.is_some_and(|q| now - q <= 1_000) =>
            {
                self.queued_at = None;
                self.call.queued_at = None;
                self.in_transfer = false;
            }
            Event::RecordingDone { length_ms } => self.recording_done(*length_ms),
            _ => {}
        }
    }

    /// Follows one command of the engine.
    pub fn command(&mut self, command: &Command, now: Millis) {
        match command {
            Command::Enter { node } => {
                self.seq += 1;
                self.open.push((*node, self.seq, now));
            }
            Command::Leave { node, by } => {
                if let Some(i) = self.open.iter().rposition(|(n, _, _)| n == node) {
                    let (node, seq, entered) = self.open.remove(i);
                    self.visit(seq, node, entered, Some((now, *by)));
                }
                let is_transfer = matches!(
                    self.flow.program.nodes.get(*node as usize).map(|n| &n.body),
                    Some(Body::Transfer(_))
                );
                if is_transfer && self.in_transfer && self.answered_at.is_none() {
                    self.queue_left = Some(now);
                    self.in_transfer = false;
                }
            }
            Command::Transfer { node, .. } => {
                self.in_transfer = true;
                if let Some(Body::Transfer(t)) =
                    self.flow.program.nodes.get(*node as usize).map(|n| &n.body)
                    && let Destination::Queue(q) = &t.destination
                {
                    self.call.queue = Some(q.clone());
                    if self.queued_at.is_none() {
                        self.queued_at = Some(now);
                        self.call.queued_at = Some(timestamp(now));
                    }
                }
            }
            Command::CancelTransfer => {
                if self.answered_at.is_none() {
                    self.queue_left = Some(now);
                }
                self.in_transfer = false;
            }
            Command::StartRecording { node } => self.recording = Some((*node, now)),
            Command::SaveSurvey { node, answers } => {
                let Some(Body::Survey(s)) =
                    self.flow.program.nodes.get(*node as usize).map(|n| &n.body)
                else {
                    return;
                };
                for (q, a) in s.questions.iter().zip(answers) {
                    let (answer, score) = match a {
                        Value::Null => (None, None),
                        Value::Number(d) | Value::Money(d) => (Some(d.to_string()), d.to_f64()),
                        other => (Some(other.to_string()), None),
                    };
                    self.writer.send(Record::Survey(SurveyRow {
                        call_id: self.call.call_id.clone(),
                        flow: self.call.flow.clone(),
                        flow_version: self.call.flow_version.clone(),
                        survey: self.node_name(*node),
                        save_table: s.save.clone(),
                        question: q.name.clone(),
                        answer,
                        score,
                        agent: self.call.agent.clone(),
                        queue: self.call.queue.clone(),
                        saved_at: timestamp(now),
                    }));
                }
            }
            Command::Served { task } if self.call.served.len() < ivr_engine::SERVED_MAX => {
                self.call.served.push(task.clone());
            }
            Command::End { outcome, ended_by } => {
                if let Some((_, started)) = self.recording {
                    self.recording_done(u64::try_from(now - started).unwrap_or(0));
                }
                self.call.outcome = Some(outcome.as_str().to_string());
                self.call.ended_by = Some(ended_by.as_str().to_string());
                self.finish(now);
            }
            _ => {}
        }
    }

    /// Writes the row of a call that ended before its flow started (cancelled while ringing,
    /// no ACK for the answer, no common codec in the ACK): no answer time, no node visits.
    /// `abandoned` (the caller left first) is ended by the caller, anything else (`failed`:
    /// no ACK, no common codec, a shutdown) by the system.
    pub fn unserved(mut self, outcome: &str, now: Millis) {
        self.call.outcome = Some(outcome.to_string());
        let by = if outcome == "abandoned" {
            EndedBy::Caller
        } else {
            EndedBy::System
        };
        self.call.ended_by = Some(by.as_str().to_string());
        self.finish(now);
    }

    /// Writes the call row (once): at the end of the call, or when a driver gives up on a call
    /// that never ended (the outcome stays empty). Nodes still open are written unleft.
    pub fn finish(&mut self, now: Millis) {
        if self.done {
            return;
        }
        self.done = true;
        for (node, seq, entered) in std::mem::take(&mut self.open) {
            self.visit(seq, node, entered, None);
        }
        if let Some(q) = self.queued_at {
            if self.in_transfer && self.answered_at.is_none() {
                self.queue_left = Some(now);
            }
            let until = self.answered_at.or(self.queue_left).unwrap_or(now);
            self.call.wait_ms = Some((until - q).max(0));
        }
        self.call.ended_at = Some(timestamp(now));
        let record = match &self.owner {
            Some((sip_call_id, node)) => Record::OwnedCall(Box::new(OwnedCall {
                call: self.call.clone(),
                sip_call_id: sip_call_id.clone(),
                node: node.clone(),
            })),
            None => Record::Call(self.call.clone()),
        };
        self.writer.send(record);
    }
}

impl Observer for CallRecorder {
    fn event(&mut self, event: &Event, now: Millis) {
        CallRecorder::event(self, event, now);
    }

    fn command(&mut self, command: &Command, now: Millis) {
        CallRecorder::command(self, command, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{self, Target};
    use crate::query::fetch_rows;

    fn event(i: i64, event: QueueEventKind, agent: Option<&str>, detail: Option<&str>) -> Record {
        Record::QueueEvent(QueueEventRow {
            at: timestamp(1_795_000_000_000 + i * 1_000),
            queue: "general".into(),
            call_id: format!("call-{}", i / 10),
            event,
            agent: agent.map(String::from),
            wait_ms: (event != QueueEventKind::NoAgents).then_some(i * 1_000),
            detail: detail.map(String::from),
        })
    }

    /// Queue events go through the writer like the other records, in one transaction with
    /// them, and read back column for column.
    async fn check_queue_events(pool: &Pool) {
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions {
                capacity: 100,
                max_batch: 10,
                max_delay: Duration::from_millis(5),
                ..WriterOptions::default()
            },
            &tokio::runtime::Handle::current(),
        );
        use QueueEventKind::*;
        let sent = [
            event(0, Queued, None, None),
            event(1, Offered, Some("2001"), None),
            event(2, Declined, Some("2001"), Some("busy")),
            event(3, Offered, Some("2002"), None),
            event(4, RingTimeout, Some("2002"), None),
            event(5, Offered, Some("2001"), None),
            event(6, Answered, Some("2001"), None),
            event(10, Queued, None, None),
            event(11, Offered, Some("2002"), None),
            event(12, Abandoned, Some("2002"), None),
            event(20, Queued, None, None),
            event(21, Left, None, Some("max_wait")),
            event(30, NoAgents, None, None),
        ];
        for r in &sent {
            assert!(writer.send(r.clone()));
        }
        let stats = writer.shutdown().await;
        assert_eq!((stats.accepted, stats.written), (13, 13));
        assert_eq!((stats.rejected, stats.failed), (0, 0));
        let rows = fetch_rows(
            pool,
            "SELECT at, queue, call_id, event, agent, wait_ms, detail FROM queue_events ORDER BY id",
            &[],
        )
        .await
        .expect("read back");
        assert_eq!(rows.len(), sent.len());
        for (row, sent) in rows.iter().zip(&sent) {
            let Record::QueueEvent(e) = sent else {
                unreachable!()
            };
            let text = |v: &Value| match v {
                Value::Null => None,
                v => Some(v.to_string()),
            };
            // PostgreSQL gives the TIMESTAMP back, SQLite its text.
            match &row[0] {
                Value::DateTime(at) => assert_eq!(*at, e.at),
                other => assert_eq!(
                    other.to_string(),
                    e.at.format("%Y-%m-%d %H:%M:%S").to_string()
                ),
            }
            assert_eq!(text(&row[1]).as_deref(), Some("general"));
            assert_eq!(text(&row[2]), Some(e.call_id.clone()));
            assert_eq!(text(&row[3]).as_deref(), Some(e.event.as_str()));
            assert_eq!(text(&row[4]), e.agent);
            assert_eq!(
                row[5].as_decimal().and_then(|d| d.to_i64()),
                e.wait_ms,
                "{row:?}"
            );
            assert_eq!(text(&row[6]), e.detail);
        }
    }

    #[tokio::test]
    async fn queue_events_are_written_in_batches_sqlite() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        check_queue_events(&pool).await;
    }

    #[tokio::test]
    async fn queue_events_are_written_in_batches_postgres() {
        let Some(scratch) = crate::scratch::Scratch::new("queue events", "queue_events", 4).await
        else {
            return;
        };
        let pool = scratch.pool.clone();
        check_queue_events(&pool).await;
        drop(pool);
        scratch.drop().await;
    }

    fn owned(id: &str, node: &str) -> Record {
        let at = timestamp(1_795_000_000_000);
        Record::OwnedCall(Box::new(OwnedCall {
            call: CallRow {
                call_id: id.into(),
                caller: "13800000001".into(),
                called: "10010".into(),
                flow: "t".into(),
                flow_version: "v1".into(),
                channel: "sip".into(),
                started_at: at,
                answered_at: Some(at),
                ended_at: Some(at),
                outcome: Some("self_service".into()),
                ended_by: Some("flow".into()),
                served: vec!["takeover".into()],
                queue: None,
                agent: None,
                queued_at: None,
                agent_answered_at: None,
                wait_ms: None,
            },
            sip_call_id: format!("sip-{id}"),
            node: node.into(),
        }))
    }

    /// A cluster call's final record is written only while its node owns the call: its
    /// checkpoint row (deleted with it) is that node's, or gone with no record of the call
    /// yet. A row of another node (taken over), or a record already there (also from the
    /// spool's replay), writes nothing: fenced, counted. SQLite writes it as any record.
    #[tokio::test]
    async fn an_owned_call_is_written_only_by_its_owner() {
        let sqlite = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            sqlite.clone(),
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        writer.send(owned("s1", "a"));
        let st = writer.shutdown().await;
        assert_eq!((st.written, st.fenced), (1, 0));
        let Some(scratch) = crate::scratch::Scratch::new("owned records", "owned", 4).await else {
            return;
        };
        let pool = scratch.pool.clone();
        let Pool::Postgres(pg) = &pool else {
            unreachable!()
        };
        // c1 is a's, c2 was taken over by b, c3 has no checkpoint, c4 is recorded already.
        for (id, owner) in [("c1", "a"), ("c2", "b")] {
            sqlx::query(
                "INSERT INTO call_checkpoints (sip_call_id, call_id, owner, nodes, flow,
                     flow_version, node, language, variables, served, dialog, media, caller,
                     called, channel, started_at, visit_seq)
                 VALUES ($1, $2, $3, $3, 't', 'v1', 'choose', 'zh-CN', '{}', '[]', '{}', '{}',
                     '', '', 'sip', 0, 0)",
            )
            .bind(format!("sip-{id}"))
            .bind(id)
            .bind(owner)
            .execute(pg)
            .await
            .expect("checkpoint");
        }
        for id in ["c1", "c2", "c3", "c4"] {
            sqlx::query(
                "INSERT INTO calls_in_progress (call_id, caller, called, flow, flow_version,
                     channel, started_at) VALUES ($1, '', '', 't', 'v1', 'sip', now())",
            )
            .bind(id)
            .execute(pg)
            .await
            .expect("in progress");
        }
        let opts = || WriterOptions {
            max_delay: Duration::from_millis(5),
            ..WriterOptions::default()
        };
        let writer = RecordWriter::start(pool.clone(), opts(), &tokio::runtime::Handle::current());
        writer.send(owned("c4", "b"));
        writer.flush().await;
        for (id, node) in [("c1", "a"), ("c2", "a"), ("c3", "a"), ("c4", "a")] {
            writer.send(owned(id, node));
        }
        let st = writer.shutdown().await;
        assert_eq!((st.written, st.fenced), (3, 2), "{st:?}");
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pg)
                .await
                .expect(sql)
        };
        assert_eq!(count("SELECT count(*) FROM calls").await, 3);
        assert_eq!(count("SELECT count(DISTINCT call_id) FROM calls").await, 3);
        assert_eq!(
            count("SELECT count(*) FROM calls WHERE call_id = 'c2'").await,
            0
        );
        // c2's checkpoint and calls_in_progress row stay for b; c1's went with its record.
        assert_eq!(
            count("SELECT count(*) FROM call_checkpoints WHERE owner = 'b'").await,
            1
        );
        assert_eq!(count("SELECT count(*) FROM call_checkpoints").await, 1);
        assert_eq!(count("SELECT count(*) FROM calls_in_progress").await, 1);
        assert_eq!(count("SELECT count(*) FROM served_tasks").await, 3);
        // The same records again (a spool replayed): nothing more.
        let writer = RecordWriter::start(pool.clone(), opts(), &tokio::runtime::Handle::current());
        for (id, node) in [("c1", "a"), ("c3", "a"), ("c4", "b")] {
            writer.send(owned(id, node));
        }
        let st = writer.shutdown().await;
        assert_eq!((st.written, st.fenced), (0, 3), "{st:?}");
        assert_eq!(count("SELECT count(*) FROM calls").await, 3);
        drop(pool);
        scratch.drop().await;
    }

    /// A full queue refuses queue events (counted), never waits.
    #[tokio::test]
    async fn a_full_queue_refuses_queue_events() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions {
                capacity: 2,
                max_batch: 10,
                max_delay: Duration::from_millis(5),
                ..WriterOptions::default()
            },
            &tokio::runtime::Handle::current(),
        );
        // The writer task cannot run before this test awaits (one thread): the queue fills.
        let taken: Vec<bool> = (0..5)
            .map(|i| writer.send(event(i, QueueEventKind::Queued, None, None)))
            .collect();
        assert_eq!(taken, [true, true, false, false, false]);
        let stats = writer.shutdown().await;
        assert_eq!((stats.accepted, stats.rejected, stats.written), (2, 3, 2));
    }

    #[test]
    fn queue_event_names() {
        use QueueEventKind::*;
        let names: Vec<&str> = [
            Queued,
            Offered,
            Answered,
            Declined,
            RingTimeout,
            Abandoned,
            Left,
            NoAgents,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(
            names,
            [
                "queued",
                "offered",
                "answered",
                "declined",
                "ring_timeout",
                "abandoned",
                "left",
                "no_agents"
            ]
        );
    }
}
