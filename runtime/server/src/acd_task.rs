//! The ACD task of `ivr serve` ([`AcdTask`]): one tokio task that owns the sans-IO [`Acd`],
//! takes agent registrations from the SIP core and queue operations from calls (through its
//! [`AcdHandle`]), runs its timers (ring timeouts, wrap-up, expiry, position updates), and
//! hands each output to the call it is for. It also keeps the screen pop of every call in a
//! queue, for the agent page, and records the queue events (queued, offered, answered,
//! declined, ring timeout, abandoned, left, no agents) through the [`RecordWriter`] into
//! `queue_events`.

use crate::clock::local_now;
use crate::queue_day::{Finish, QueueDay, Today};
use crate::screen_pop::ScreenPop;
use ivr_acd::{
    Acd, AcdError, AcdInput, AcdOut, AcdStatus, AgentState, CallKey, Contact, Decline, Machine,
};
use ivr_compiler::config::Config;
use ivr_data::records::{QueueEventKind, QueueEventRow, Record, RecordWriter, timestamp};
use ivr_engine::Millis;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a call waiting in a queue hears from the ACD.
#[derive(Debug)]
pub enum QueueEvent {
    /// Ring this agent.
    Offer {
        /// The agent's id.
        agent: String,
        /// Where the agent's phone is.
        contact: Contact,
        /// The TCP connection it registered over (0 for UDP).
        conn: u64,
        /// For a kept callback: how long (seconds) its place has waited in the queue.
        waited: Option<u64>,
    },
    /// Stop ringing that agent (ring timeout: the ACD moved on).
    Cancel {
        /// The agent's id.
        agent: String,
    },
    /// The caller's place in line.
    Position(u32),
    /// Nobody who could take the call is logged in.
    NoAgents,
    /// The ACD took the agent's answer: connect the call.
    Connected,
    /// The agent talking with the call asks to pass it on ([`AcdMsg::AgentTransfer`]).
    PassOn {
        /// The agent's id.
        by: String,
        /// `queue.NAME`, an agent id or a number.
        target: String,
        /// The note for the next agent.
        note: String,
        /// How it went.
        reply: oneshot::Sender<Result<(), crate::pass_refusal::PassRefusal>>,
    },
    /// The agent talking with the call asks something of its consultation
    /// ([`AcdMsg::AgentConsult`]).
    Consult {
        /// The agent's id.
        by: String,
        /// Start, complete or cancel.
        action: crate::consult_request::ConsultAction,
        /// How it went.
        reply: oneshot::Sender<Result<(), crate::pass_refusal::PassRefusal>>,
    },
    /// The answer to [`AcdMsg::Transfer`]: the call now waits in the queue under this key,
    /// or the transfer is refused and the call stays with its agent.
    Passed(Result<CallKey, ivr_acd::TransferRefused>),
}

/// Where an agent transfers a call ([`AcdMsg::Transfer`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransferTo {
    /// The head of this queue.
    Queue(String),
    /// This agent only (when free), through the call's queue if the agent has its skills,
    /// else the first queue whose skills it has.
    Agent(String),
}

/// Who asked for an agent's transfer, to hear how it went.
#[derive(Debug)]
pub enum PassOrigin {
    /// The agent's phone, with REFER on the leg of this tag (the final NOTIFY says it).
    Refer(String),
    /// The agent console (an error is the sentence the agent reads).
    Console(oneshot::Sender<Result<(), crate::pass_refusal::PassRefusal>>),
}

/// Why a caller left its queue before an agent answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LeaveReason {
    /// The caller hung up (or the call ended otherwise): recorded as `abandoned`.
    Hangup,
    /// The transfer's `max_wait` passed: recorded as `left`.
    MaxWait,
    /// An agent's consultation was cancelled (or failed) before the target answered:
    /// recorded as `left` (`consult_withdrawn`), not as an abandoned caller.
    Withdrawn,
}

/// What calls and the server tell the ACD task.
#[derive(Debug)]
pub enum AcdMsg {
    /// Put a call in a queue.
    Enqueue {
        /// The call's key.
        call: CallKey,
        /// The queue.
        queue: String,
        /// The node's `skills`.
        skills: Vec<String>,
        /// Its priority.
        priority: i64,
        /// Level, overflow rules, transferred in.
        routing: ivr_acd::Routing,
        /// What the agent sees.
        pop: Box<ScreenPop>,
        /// Where the call hears back.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// An agent passes its caller on to `queue` (blind transfer): the conversation of `from`
    /// is over (the agent wraps up) and the call waits in `queue` as `call`, ahead of every
    /// call there that was not transferred, with its screen pop `pop` (the first one plus
    /// `transferred_by` and `note`). Refused (nothing changes) when the queue is unknown or
    /// nobody who could take it is logged in.
    Transfer {
        /// The call's key while it was with the agent.
        from: CallKey,
        /// Its new key.
        call: CallKey,
        /// Where it goes.
        target: TransferTo,
        /// The screen pop the next agent sees (its `queue`: the one the call was in).
        pop: Box<ScreenPop>,
        /// Where the call hears back ([`QueueEvent::Passed`] first).
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// Agent `agent` asks (from the console or over HTTP) to pass the caller it is talking
    /// with on to `target` (`queue.NAME`, an agent id, a number) with `note`; the call's
    /// driver decides and answers on `reply` (an error is a sentence for the agent).
    AgentTransfer {
        /// The agent's id.
        agent: String,
        /// Where to.
        target: String,
        /// The note for the next agent.
        note: String,
        /// How it went.
        reply: oneshot::Sender<Result<(), crate::pass_refusal::PassRefusal>>,
    },
    /// Agent `by` calls a colleague or a queue from its phone (the consultation call of an
    /// attended transfer): the call `call` waits for `target` like a transferred call (first
    /// in line), with the screen pop of the caller `by` talks with (if any) plus
    /// `transferred_by`. `reply` hears that screen pop, or why the target is refused, before
    /// any [`QueueEvent`] comes on `to`.
    PhoneConsult {
        /// The agent who calls.
        by: String,
        /// The consultation call's key.
        call: CallKey,
        /// Where to.
        target: TransferTo,
        /// Where the consultation call hears back.
        to: mpsc::UnboundedSender<QueueEvent>,
        /// The screen pop the target sees, or the refusal.
        reply: oneshot::Sender<Result<ScreenPop, ivr_acd::TransferRefused>>,
    },
    /// An agent consults `target` before passing the caller on: the consultation waits in
    /// the target's queue as `call` (first in line, like a transfer) while the conversation of
    /// the first agent goes on; [`QueueEvent::Passed`] answers first, as for a transfer.
    Consult {
        /// The consultation's key.
        call: CallKey,
        /// Where it goes.
        target: TransferTo,
        /// The screen pop the target agent sees (its `queue`: the one the call was in).
        pop: Box<ScreenPop>,
        /// Where the consultation hears back.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// Agent `agent` asks (from the console or over HTTP) to start, complete or cancel a
    /// consultation of the caller it talks with; the call's driver decides and answers.
    AgentConsult {
        /// The agent's id.
        agent: String,
        /// What it asks.
        action: crate::consult_request::ConsultAction,
        /// How it went.
        reply: oneshot::Sender<Result<(), crate::pass_refusal::PassRefusal>>,
    },
    /// From now on the events of `call` go to `to` (a completed consultation's key becomes
    /// its call's).
    Redirect {
        /// The key.
        call: CallKey,
        /// Where its events go.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// A call bridged to `agent` was taken over by another node of a cluster (its node died):
    /// the ACD holds it as talking with that agent again (the agent is offered nothing until
    /// its [`AcdMsg::ConversationOver`], then wraps up as after any call), and its events go
    /// to `to`. A call the ACD still holds keeps its state and only its events move.
    Resumed {
        /// The call's key (the same as on the dead node).
        call: CallKey,
        /// The queue it came through.
        queue: String,
        /// The agent talking with it.
        agent: String,
        /// What the agent sees.
        pop: Box<ScreenPop>,
        /// Where the call hears back.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// The caller left the queue (hung up, `max_wait`).
    Leave(CallKey, LeaveReason),
    /// The caller kept a callback: the place stays in its queue (with its time) after the
    /// caller hangs up, its screen pop says `callback: true`, and its events go to `to` (the
    /// callback's task) from now on. A place no longer queued hears [`QueueEvent::NoAgents`].
    KeepCallback {
        /// The call's key.
        call: CallKey,
        /// Where its events go now.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// The offered agent answered.
    Answered {
        /// The call.
        call: CallKey,
        /// The agent whose phone answered (a late answer, after the ACD moved on, is not
        /// taken: the call hears `Cancel` for that agent).
        agent: String,
    },
    /// The offer failed.
    Declined(CallKey, Decline),
    /// The conversation is over (either side hung up).
    ConversationOver(CallKey),
    /// An agent registered, refreshed (`expires` > 0) or removed its registration.
    Registration {
        /// The agent's id.
        agent: String,
        /// Where its phone is.
        contact: Contact,
        /// The TCP connection it registered over (0 for UDP).
        conn: u64,
        /// For how long.
        expires: Duration,
    },
    /// A new configuration went live.
    Reconfigure(Arc<Config>),
    /// An agent sets itself away or back.
    Away {
        /// The agent's id.
        agent: String,
        /// Away (true) or available (false).
        away: bool,
        /// Whether the ACD took it (an agent who is not logged in cannot be set).
        reply: Option<oneshot::Sender<Result<(), ivr_acd::AcdError>>>,
    },
    /// The ACD's state and the screen pops of calls with agents.
    Status(oneshot::Sender<AcdSnapshot>),
    /// What a new leader of a cluster needs to rebuild this ACD ([`AcdExport`]).
    Export(oneshot::Sender<AcdExport>),
    /// Starts the ACD afresh from what a cluster's last leader left (or empty: a deposed
    /// leader's ACD forgets everything).
    Rebuild(Box<Rebuild>),
}

/// The calls and agents of an ACD as a cluster's leader persists them after each change
/// (docs/cluster.md): enough for the next leader to rebuild it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct AcdExport {
    /// The calls in the queues or talking with an agent, oldest first.
    pub calls: Vec<ExportedCall>,
    /// The agents who are away, or asked to be once their call is over.
    pub away: Vec<String>,
    /// The agents wrapping up, with when their wrap-up ends (wall clock, ms).
    #[serde(default)]
    pub wrap_up: Vec<(String, Millis)>,
}

/// One call of an [`AcdExport`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportedCall {
    /// Its key.
    pub key: CallKey,
    /// The node that holds the caller (filled in by the cluster's front).
    #[serde(default)]
    pub node: String,
    /// Its queue.
    pub queue: String,
    /// The transfer node's skills.
    pub skills: Vec<String>,
    /// Its priority.
    pub priority: i64,
    /// Level, overflow, transferred in.
    pub routing: ivr_acd::Routing,
    /// What the agent sees.
    pub pop: ScreenPop,
    /// When it entered the queue (wall clock, ms).
    pub queued_at: Millis,
    /// The agent talking with it (none: waiting, or ringing).
    pub talking: Option<String>,
}

/// What a new leader rebuilds its ACD from ([`AcdMsg::Rebuild`]).
#[derive(Debug, Default)]
pub struct Rebuild {
    /// Agents' registrations: id, contact, how long they still hold.
    pub registrations: Vec<(String, Contact, Duration)>,
    /// Agents who are away (or asked to be after their call).
    pub away: Vec<String>,
    /// Agents wrapping up, until when.
    pub wrap_up: Vec<(String, Millis)>,
    /// The calls to put back, oldest first, each with where its events go.
    pub calls: Vec<(ExportedCall, mpsc::UnboundedSender<QueueEvent>)>,
}

/// The ACD's state as the HTTP interface shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AcdSnapshot {
    /// Agents and queues.
    #[serde(flatten)]
    pub status: AcdStatus,
    /// The screen pop of each call offered to or talking with an agent, by agent id.
    pub screen_pops: HashMap<String, ScreenPop>,
    /// Today's figures by queue (service level), for the dashboard.
    pub today: std::collections::BTreeMap<String, QueueDay>,
}

/// Where calls to a registered agent go: over UDP to the host and port of its Contact (the
/// source of the REGISTER when the Contact names no IP address); over TCP back through the
/// connection it registered on.
pub fn contact_of(r: &ivr_sip::registrar::Registration) -> Contact {
    use crate::transport::Proto;
    let tcp = r.peer.proto == Proto::Tcp;
    let from_uri = rsip::Uri::try_from(ivr_sip::message::uri_of(&r.contact))
        .ok()
        .and_then(|u| {
            let ip: std::net::IpAddr = u
                .host_with_port
                .host
                .to_string()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?;
            let port = u.host_with_port.port.map_or(5060, |p| *p.value());
            Some(std::net::SocketAddr::new(ip, port))
        });
    Contact {
        uri: ivr_sip::message::uri_of(&r.contact).to_string(),
        addr: if tcp {
            r.peer.addr
        } else {
            from_uri.unwrap_or(r.peer.addr)
        },
        tcp,
    }
}

/// The handle calls use.
pub type AcdHandle = mpsc::UnboundedSender<AcdMsg>;

/// Changes after every turn of the ACD task that may have changed an agent's or a queue's
/// state (all but status requests): who shows them (consoles, the dashboard) waits on it, then
/// asks for a [`AcdMsg::Status`].
pub type AcdChanges = tokio::sync::watch::Receiver<u64>;

/// The ACD task: the sans-IO [`Acd`] and what the task keeps beside it, one turn per message
/// or when timers are due.
pub struct AcdTask {
    acd: Acd,
    book: Book,
    out: Vec<AcdOut>,
}

impl AcdTask {
    /// Starts the ACD task for a configuration; its queue events go to `writer` (none: not
    /// recorded).
    pub fn start(config: &Config, writer: Option<RecordWriter>) -> (AcdHandle, AcdChanges) {
        AcdTask::start_via(config, writer, None)
    }

    /// [`AcdTask::start`] for a node of a cluster: every offer's INVITE goes to the proxy
    /// `via` (its Request-URI the agent's contact), whichever node the phone registered with.
    pub fn start_via(
        config: &Config,
        writer: Option<RecordWriter>,
        via: Option<std::net::SocketAddr>,
    ) -> (AcdHandle, AcdChanges) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (changes, changes_rx) = tokio::sync::watch::channel(0);
        let mut task = AcdTask::new(config, writer);
        task.book.via = via;
        tokio::spawn(task.run(rx, changes));
        (tx, changes_rx)
    }

    fn new(config: &Config, writer: Option<RecordWriter>) -> AcdTask {
        AcdTask {
            acd: Acd::new(config),
            book: Book {
                writer,
                config: Some(Arc::new(config.clone())),
                ..Book::default()
            },
            out: Vec::with_capacity(64),
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<AcdMsg>,
        changes: tokio::sync::watch::Sender<u64>,
    ) {
        loop {
            let now = local_now();
            let wait = self
                .acd
                .poll_timeout()
                .map_or(Duration::from_secs(3600), |at| {
                    Duration::from_millis((at - now).max(0) as u64)
                });
            let msg = tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => Some(m),
                    None => return,
                },
                () = tokio::time::sleep(wait) => None,
            };
            let looked_at = matches!(msg, Some(AcdMsg::Status(_) | AcdMsg::Export(_)));
            self.step(msg, local_now());
            if !looked_at {
                changes.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// One turn of the task: a message (none: timers are due) and what the ACD says to it.
    fn step(&mut self, msg: Option<AcdMsg>, now: Millis) {
        let AcdTask { acd, book, out } = self;
        out.clear();
        let timers = msg.is_none();
        match msg {
            None => {
                acd.handle_timeout(now);
                out.extend(std::iter::from_fn(|| acd.poll_output()));
            }
            Some(m) => on_msg(acd, book, m, now, out),
        }
        for o in out.drain(..) {
            dispatch(acd, book, o, now, timers);
        }
    }
}

struct Waiting {
    to: mpsc::UnboundedSender<QueueEvent>,
    pop: ScreenPop,
    /// The queue it was put in.
    queue: String,
    /// The transfer node's skills, its priority and routing (for a cluster's export).
    skills: Vec<String>,
    priority: i64,
    routing: ivr_acd::Routing,
    /// When.
    queued_at: Millis,
    /// Taken into the queue (not refused with `no_agents` at once).
    queued: bool,
    /// The agent whose phone rings for it.
    ringing: Option<String>,
    /// An agent answered.
    answered: bool,
}

/// The task's state beside the [`Acd`].
#[derive(Default)]
struct Book {
    calls: HashMap<CallKey, Waiting>,
    /// Agent id → the TCP connection of its registration.
    conns: HashMap<String, u64>,
    /// Where queue events go.
    writer: Option<RecordWriter>,
    /// Today's figures by queue.
    today: Today,
    /// A cluster's proxy: every offer goes through it.
    via: Option<std::net::SocketAddr>,
    /// The configuration last taken (for a rebuild).
    config: Option<Arc<Config>>,
}

/// Sends one queue event of the call `w` to the writer (never waits; a full queue refuses it).
fn record(
    writer: Option<&RecordWriter>,
    w: &Waiting,
    now: Millis,
    event: QueueEventKind,
    agent: Option<String>,
    detail: Option<&str>,
) {
    let Some(writer) = writer else { return };
    writer.send(Record::QueueEvent(QueueEventRow {
        at: timestamp(now),
        queue: w.queue.clone(),
        call_id: w.pop.call_id.clone(),
        event,
        agent,
        wait_ms: (event != QueueEventKind::NoAgents).then(|| (now - w.queued_at).max(0)),
        detail: detail.map(str::to_string),
    }));
}

fn decline_name(why: Decline) -> &'static str {
    match why {
        Decline::Busy => "busy",
        Decline::NoAnswer => "no_answer",
        Decline::Failed => "failed",
        Decline::Lost => "gone",
    }
}

fn on_msg(acd: &mut Acd, book: &mut Book, m: AcdMsg, now: Millis, out: &mut Vec<AcdOut>) {
    match m {
        AcdMsg::Enqueue {
            call,
            queue,
            skills,
            priority,
            routing,
            pop,
            to,
        } => {
            let waiting = Waiting {
                to,
                pop: *pop,
                queue: queue.clone(),
                skills: skills.clone(),
                priority,
                routing: routing.clone(),
                queued_at: now,
                queued: false,
                ringing: None,
                answered: false,
            };
            book.calls.insert(call, waiting);
            let from = out.len();
            let input = AcdInput::Enqueue {
                call,
                queue: queue.clone(),
                skills,
                priority,
                routing,
            };
            feed(acd, input, now, out);
            let refused = out[from..]
                .iter()
                .any(|o| matches!(o, AcdOut::NoAgents { call: c } if *c == call));
            // Recorded before the offer the same turn may bring; a refused call only gets its
            // `no_agents` (from `dispatch`).
            if !refused && let Some(w) = book.calls.get_mut(&call) {
                w.queued = true;
                tracing::info!(queue = %w.queue, call = %w.pop.call_id, "queued: waiting for an agent");
                book.today.queued(&w.queue, now);
                record(
                    book.writer.as_ref(),
                    w,
                    now,
                    QueueEventKind::Queued,
                    None,
                    None,
                );
            }
        }
        AcdMsg::Transfer {
            from,
            call,
            target,
            mut pop,
            to,
        } => {
            let by = pop.transferred_by.clone().unwrap_or_default();
            let (queue, skills) = match transfer_queue(acd, &target, &pop.queue) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(target = ?target, agent = %by, error = %e, "transfer refused");
                    let _ = to.send(QueueEvent::Passed(Err(e)));
                    return;
                }
            };
            pop.queue.clone_from(&queue);
            // Told before the enqueue's own events (an offer may come the same turn).
            let _ = to.send(QueueEvent::Passed(Ok(call)));
            tracing::info!(queue = %queue, agent = %by, call = %pop.call_id, "transferred by an agent");
            on_msg(acd, book, AcdMsg::ConversationOver(from), now, out);
            on_msg(
                acd,
                book,
                transferred(call, queue, skills, pop, to),
                now,
                out,
            );
        }
        AcdMsg::Consult {
            call,
            target,
            mut pop,
            to,
        } => {
            let (queue, skills) = match transfer_queue(acd, &target, &pop.queue) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(target = ?target, error = %e, "consultation refused");
                    let _ = to.send(QueueEvent::Passed(Err(e)));
                    return;
                }
            };
            pop.queue.clone_from(&queue);
            let _ = to.send(QueueEvent::Passed(Ok(call)));
            tracing::info!(queue = %queue, call = %pop.call_id, "consultation: ringing the target");
            on_msg(
                acd,
                book,
                transferred(call, queue, skills, pop, to),
                now,
                out,
            );
        }
        AcdMsg::Redirect { call, to } => {
            if let Some(w) = book.calls.get_mut(&call) {
                w.to = to;
            }
        }
        AcdMsg::Resumed {
            call,
            queue,
            agent,
            pop,
            to,
        } => {
            if let Some(w) = book.calls.get_mut(&call) {
                w.to = to;
                return;
            }
            let input = AcdInput::Talking {
                call,
                agent: agent.clone(),
                queue: queue.clone(),
            };
            feed(acd, input, now, out);
            if !acd.contains(call) {
                tracing::warn!(
                    agent = %agent,
                    queue = %queue,
                    "a bridged call taken over: the ACD cannot hold its agent as talking (busy, away or logged out)"
                );
                return;
            }
            book.calls.insert(
                call,
                Waiting {
                    to,
                    pop: *pop,
                    queue,
                    skills: Vec::new(),
                    priority: 0,
                    routing: ivr_acd::Routing::default(),
                    queued_at: now,
                    queued: true,
                    ringing: None,
                    answered: true,
                },
            );
        }
        AcdMsg::AgentConsult {
            agent,
            action,
            reply,
        } => match agents_call(acd, book, &agent, now) {
            Some(w) => {
                let ask = QueueEvent::Consult {
                    by: agent,
                    action,
                    reply,
                };
                if let Err(e) = w.to.send(ask)
                    && let QueueEvent::Consult { reply, .. } = e.0
                {
                    let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                }
            }
            None => {
                let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
            }
        },
        AcdMsg::PhoneConsult {
            by,
            call,
            target,
            to,
            reply,
        } => {
            let mut pop = agents_call(acd, book, &by, now)
                .map(|w| w.pop.clone())
                .unwrap_or_else(|| ScreenPop {
                    caller: by.clone(),
                    ..ScreenPop::default()
                });
            pop.transferred_by = Some(by.clone());
            pop.note = None;
            let (queue, skills) = match transfer_queue(acd, &target, &pop.queue) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(target = ?target, agent = %by, error = %e, "consultation refused");
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            pop.queue.clone_from(&queue);
            if reply.send(Ok(pop.clone())).is_err() {
                return;
            }
            tracing::info!(queue = %queue, agent = %by, "an agent's consultation call");
            let enqueue = transferred(call, queue, skills, Box::new(pop), to);
            on_msg(acd, book, enqueue, now, out);
        }
        AcdMsg::AgentTransfer {
            agent,
            target,
            note,
            reply,
        } => {
            let status = acd.status(now);
            let call = status
                .agents
                .iter()
                .find(|a| a.id == agent && a.state == ivr_acd::AgentState::OnCall)
                .and_then(|a| a.call);
            match call.and_then(|c| book.calls.get(&c)) {
                Some(w) => {
                    let pass = QueueEvent::PassOn {
                        by: agent,
                        target,
                        note,
                        reply,
                    };
                    if let Err(e) = w.to.send(pass)
                        && let QueueEvent::PassOn { reply, .. } = e.0
                    {
                        let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                    }
                }
                None => {
                    let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                }
            }
        }
        AcdMsg::Leave(call, why) => {
            if let Some(w) = book.calls.remove(&call)
                && w.queued
                && !w.answered
            {
                let (event, detail, finish) = match why {
                    LeaveReason::Hangup => (QueueEventKind::Abandoned, None, Finish::Abandoned),
                    LeaveReason::MaxWait => (QueueEventKind::Left, Some("max_wait"), Finish::Left),
                    LeaveReason::Withdrawn => (
                        QueueEventKind::Left,
                        Some("consult_withdrawn"),
                        Finish::Left,
                    ),
                };
                let result = if finish == Finish::Abandoned {
                    "abandoned"
                } else {
                    "left"
                };
                crate::metrics::registry().observe_wait(&w.queue, result, now - w.queued_at);
                book.today.finished(&w.queue, finish, now);
                record(
                    book.writer.as_ref(),
                    &w,
                    now,
                    event,
                    w.ringing.clone(),
                    detail,
                );
            }
            feed(acd, AcdInput::Leave(call), now, out);
        }
        AcdMsg::KeepCallback { call, to } => match book.calls.get_mut(&call) {
            Some(w) if acd.contains(call) => {
                w.to = to;
                w.pop.callback = true;
                tracing::info!(queue = %w.queue, call = %w.pop.call_id, "callback kept: the place stays in the queue");
                feed(acd, AcdInput::KeepCallback(call), now, out);
            }
            _ => {
                let _ = to.send(QueueEvent::NoAgents);
            }
        },
        AcdMsg::Answered { call, agent } => {
            if acd.agent_of(call) != Some(agent.as_str()) {
                tracing::info!(agent = %agent, "answered after the offer moved on: not taken");
                return;
            }
            if let Some(w) = book.calls.get_mut(&call)
                && let Some(agent) = w.ringing.take()
            {
                w.answered = true;
                let wait = (now - w.queued_at).max(0);
                book.today.finished(&w.queue, Finish::Answered(wait), now);
                crate::metrics::registry().observe_wait(&w.queue, "answered", wait);
                let kind = QueueEventKind::Answered;
                record(book.writer.as_ref(), w, now, kind, Some(agent), None);
            }
            feed(acd, AcdInput::Answered(call), now, out);
            if let Some(w) = book.calls.get(&call) {
                let _ = w.to.send(QueueEvent::Connected);
            }
        }
        AcdMsg::Declined(call, why) => {
            if let Some(w) = book.calls.get_mut(&call)
                && let Some(agent) = w.ringing.take()
            {
                let kind = match why {
                    Decline::Lost => QueueEventKind::Lost,
                    _ => QueueEventKind::Declined,
                };
                let detail = Some(decline_name(why));
                record(book.writer.as_ref(), w, now, kind, Some(agent), detail);
            }
            feed(acd, AcdInput::Declined { call, why }, now, out);
        }
        AcdMsg::ConversationOver(call) => {
            // Over before an agent answered: the ACD takes it as the caller leaving.
            if let Some(w) = book.calls.remove(&call)
                && w.queued
                && !w.answered
            {
                let kind = QueueEventKind::Abandoned;
                book.today.finished(&w.queue, Finish::Abandoned, now);
                crate::metrics::registry().observe_wait(&w.queue, "abandoned", now - w.queued_at);
                record(book.writer.as_ref(), &w, now, kind, w.ringing.clone(), None);
            }
            feed(acd, AcdInput::ConversationOver(call), now, out);
        }
        AcdMsg::Registration {
            agent,
            contact,
            conn,
            expires,
        } => {
            book.conns.insert(agent.clone(), conn);
            if expires.is_zero() {
                tracing::info!(agent = %agent, "agent unregistered");
                feed(acd, AcdInput::Unregister { agent }, now, out);
            } else {
                let uri = contact.uri.clone();
                let expires_s = expires.as_secs();
                let expires_at = now + expires.as_millis() as Millis;
                let input = AcdInput::Register {
                    agent: agent.clone(),
                    contact,
                    expires_at,
                };
                match feed_agent(acd, input, now, out) {
                    // Never the password or the digest response: the agent, where it is, how long.
                    Ok(()) => {
                        tracing::info!(agent = %agent, contact = %uri, expires_s, "agent registered")
                    }
                    Err(e) => tracing::warn!(agent = %agent, error = %e, "registration not taken"),
                }
            }
        }
        AcdMsg::Reconfigure(config) => {
            book.config = Some(Arc::clone(&config));
            feed(acd, AcdInput::Reconfigure(config), now, out);
        }
        AcdMsg::Export(reply) => {
            let _ = reply.send(export(acd, book));
        }
        AcdMsg::Rebuild(r) => rebuild(acd, book, *r, now, out),
        AcdMsg::Away { agent, away, reply } => {
            let input = AcdInput::SetAway {
                agent: agent.clone(),
                away,
            };
            let r = feed_agent(acd, input, now, out);
            match &r {
                Ok(()) => tracing::info!(agent = %agent, away, "agent state set"),
                Err(e) => tracing::info!(agent = %agent, error = %e, "away refused"),
            }
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        }
        AcdMsg::Status(reply) => {
            let screen_pops = book
                .calls
                .iter()
                .filter_map(|(k, w)| acd.agent_of(*k).map(|a| (a.to_string(), w.pop.clone())))
                .collect();
            let _ = reply.send(AcdSnapshot {
                status: acd.status(now),
                screen_pops,
                today: book.today.snapshot(now),
            });
        }
    }
}

/// The calls and away agents of the ACD, oldest call first.
fn export(acd: &Acd, book: &Book) -> AcdExport {
    let mut calls: Vec<ExportedCall> = book
        .calls
        .iter()
        .filter(|(k, w)| w.queued && acd.contains(**k))
        .map(|(k, w)| ExportedCall {
            key: *k,
            node: String::new(),
            queue: w.queue.clone(),
            skills: w.skills.clone(),
            priority: w.priority,
            routing: w.routing.clone(),
            pop: w.pop.clone(),
            queued_at: w.queued_at,
            talking: if w.answered {
                acd.agent_of(*k).map(str::to_string)
            } else {
                None
            },
        })
        .collect();
    calls.sort_by_key(|c| (c.queued_at, c.key));
    let agents = acd.status(local_now()).agents;
    let away = agents
        .iter()
        .filter(|a| acd.wants_away(&a.id))
        .map(|a| a.id.clone())
        .collect();
    let wrap_up = agents
        .iter()
        .filter_map(|a| acd.wrap_up_until(&a.id).map(|u| (a.id.clone(), u)))
        .collect();
    AcdExport {
        calls,
        away,
        wrap_up,
    }
}

/// Starts the ACD afresh: the registrations, the away agents, the agents talking, then the
/// waiting calls in their order of arrival (each offered as it goes back in).
fn rebuild(acd: &mut Acd, book: &mut Book, r: Rebuild, now: Millis, out: &mut Vec<AcdOut>) {
    book.calls.clear();
    book.conns.clear();
    if let Some(config) = &book.config {
        *acd = Acd::new(config);
    }
    let n = r.calls.len();
    for (agent, contact, left) in r.registrations {
        let expires_at =
            now.saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 4));
        let _ = feed_agent(
            acd,
            AcdInput::Register {
                agent,
                contact,
                expires_at,
            },
            now,
            out,
        );
    }
    for agent in r.away {
        let _ = feed_agent(acd, AcdInput::SetAway { agent, away: true }, now, out);
    }
    for (agent, until) in r.wrap_up {
        // At most the longest wrap-up a queue may have (an hour) from now.
        let until = until.min(now.saturating_add(3_600_000));
        feed(acd, AcdInput::WrappingUp { agent, until }, now, out);
    }
    // Times from the database: within the last day, never ahead of now.
    let calls = r.calls.into_iter().map(|(mut c, to)| {
        c.queued_at = c.queued_at.clamp(now.saturating_sub(86_400_000), now);
        (c, to)
    });
    let (talking, waiting): (Vec<_>, Vec<_>) = calls.partition(|(c, _)| c.talking.is_some());
    for (c, to) in talking {
        let agent = c.talking.clone().unwrap_or_default();
        feed(
            acd,
            AcdInput::Talking {
                call: c.key,
                agent,
                queue: c.queue.clone(),
            },
            now,
            out,
        );
        if acd.contains(c.key) {
            book.calls.insert(c.key, restored(c, to, true));
        }
    }
    for (c, to) in waiting {
        let input = AcdInput::Restore {
            call: c.key,
            queue: c.queue.clone(),
            skills: c.skills.clone(),
            priority: c.priority,
            routing: c.routing.clone(),
            queued_at: c.queued_at,
        };
        book.calls.insert(c.key, restored(c, to, false));
        feed(acd, input, now, out);
    }
    tracing::info!(calls = n, "the ACD was rebuilt");
}

fn restored(c: ExportedCall, to: mpsc::UnboundedSender<QueueEvent>, answered: bool) -> Waiting {
    Waiting {
        to,
        pop: c.pop,
        queue: c.queue,
        skills: c.skills,
        priority: c.priority,
        routing: c.routing,
        queued_at: c.queued_at,
        queued: true,
        ringing: None,
        answered,
    }
}

/// Hands `input` to the ACD at `now` and appends what it answers to `out`.
/// The queue (and skills) a call an agent passes on or consults about waits in: the queue
/// named, or for an agent a queue of the call's (`prefer`) or the first it serves, with the
/// agent's own skill.
/// The enqueue of a call an agent passes on or consults about: first in line (ahead of every
/// call that was not transferred), at its screen pop's priority.
fn transferred(
    call: CallKey,
    queue: String,
    skills: Vec<String>,
    pop: Box<ScreenPop>,
    to: mpsc::UnboundedSender<QueueEvent>,
) -> AcdMsg {
    AcdMsg::Enqueue {
        call,
        queue,
        skills,
        priority: pop.priority,
        routing: ivr_acd::Routing {
            transferred: true,
            ..ivr_acd::Routing::default()
        },
        pop,
        to,
    }
}

fn transfer_queue(
    acd: &Acd,
    target: &TransferTo,
    prefer: &str,
) -> Result<(String, Vec<String>), ivr_acd::TransferRefused> {
    match target {
        TransferTo::Queue(q) => acd.transfer_target(q).map(|()| (q.clone(), Vec::new())),
        TransferTo::Agent(a) => acd
            .agent_transfer_target(a, prefer)
            .map(|q| (q, vec![ivr_acd::agent_skill(a)])),
    }
}

/// The call agent `agent` talks with now, if any.
fn agents_call<'a>(acd: &Acd, book: &'a Book, agent: &str, now: Millis) -> Option<&'a Waiting> {
    let status = acd.status(now);
    let call = status
        .agents
        .iter()
        .find(|a| a.id == agent && a.state == ivr_acd::AgentState::OnCall)
        .and_then(|a| a.call);
    call.and_then(|c| book.calls.get(&c))
}

fn feed(acd: &mut Acd, input: AcdInput, now: Millis, out: &mut Vec<AcdOut>) {
    acd.handle_input(input, now);
    out.extend(std::iter::from_fn(|| acd.poll_output()));
}

/// [`feed`] for an operation on an agent: its refusal ([`AcdOut::Refused`]) is returned.
fn feed_agent(
    acd: &mut Acd,
    input: AcdInput,
    now: Millis,
    out: &mut Vec<AcdOut>,
) -> Result<(), AcdError> {
    let from = out.len();
    feed(acd, input, now, out);
    out[from..]
        .iter()
        .find_map(|o| match o {
            AcdOut::Refused { error, .. } => Some(error.clone()),
            _ => None,
        })
        .map_or(Ok(()), Err)
}

/// Hands one output of the ACD to its call and records it. `timers`: the output comes from
/// [`Acd::handle_timeout`] (a cancelled offer there is a ring timeout, unless the agent's
/// registration expired).
fn dispatch(acd: &Acd, book: &mut Book, o: AcdOut, now: Millis, timers: bool) {
    let writer = book.writer.as_ref();
    let today = &mut book.today;
    let calls = &mut book.calls;
    let (call, ev) = match o {
        AcdOut::Offer {
            call,
            agent,
            contact,
        } => {
            let mut conn = book.conns.get(&agent).copied().unwrap_or(0);
            // A cluster's node reaches every phone through the proxy (the phone may have
            // registered with another node); a console (`webrtc:`) is its node's own.
            let mut contact = contact;
            if let Some(via) = book.via
                && !contact.uri.starts_with("webrtc:")
            {
                contact.addr = via;
                contact.tcp = false;
                conn = 0;
            }
            let mut waited = None;
            if let Some(w) = calls.get_mut(&call) {
                if w.pop.callback {
                    w.pop.waited = Some(u64::try_from((now - w.queued_at) / 1000).unwrap_or(0));
                    waited = w.pop.waited;
                }
                w.ringing = Some(agent.clone());
                let kind = QueueEventKind::Offered;
                record(writer, w, now, kind, Some(agent.clone()), None);
            }
            (
                call,
                QueueEvent::Offer {
                    agent,
                    contact,
                    conn,
                    waited,
                },
            )
        }
        AcdOut::Cancel { call, agent } => {
            // A caller who left is recorded by `Leave` (its entry is gone by now).
            if let Some(w) = calls.get_mut(&call)
                && w.ringing.as_deref() == Some(agent.as_str())
            {
                w.ringing = None;
                let offline = || {
                    acd.status(now)
                        .agents
                        .iter()
                        .any(|a| a.id == agent && a.state == AgentState::Offline)
                };
                let (kind, detail) = if timers && !offline() {
                    (QueueEventKind::RingTimeout, None)
                } else {
                    (QueueEventKind::Lost, Some("agent_offline"))
                };
                record(writer, w, now, kind, Some(agent.clone()), detail);
            }
            (call, QueueEvent::Cancel { agent })
        }
        AcdOut::Position { call, position } => (call, QueueEvent::Position(position)),
        // Refusals are answered where the operation was handed in (`feed`).
        AcdOut::Refused { .. } => return,
        AcdOut::NoAgents { call } => {
            if let Some(w) = calls.remove(&call) {
                if w.queued {
                    today.finished(&w.queue, Finish::Left, now);
                    crate::metrics::registry().observe_wait(&w.queue, "left", now - w.queued_at);
                    let kind = QueueEventKind::Left;
                    tracing::info!(queue = %w.queue, call = %w.pop.call_id,
                        "left the queue: nobody who could take it is logged in any more (no_agents)");
                    record(writer, &w, now, kind, w.ringing.clone(), Some("no_agents"));
                } else {
                    tracing::info!(queue = %w.queue, call = %w.pop.call_id,
                        "refused: nobody who could take the call is logged in (no_agents)");
                    record(writer, &w, now, QueueEventKind::NoAgents, None, None);
                }
                let _ = w.to.send(QueueEvent::NoAgents);
            }
            return;
        }
    };
    if let Some(w) = calls.get(&call) {
        let _ = w.to.send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivr_compiler::config::{AgentConfig, QueueConfig};
    use ivr_data::connect::{self, Target};
    use ivr_data::records::WriterOptions;

    const T0: Millis = 1_795_000_000_000;
    const S: Millis = 1_000;

    /// The ACD task's turns, driven by hand: every message at its time, timers when due.
    struct Task {
        task: AcdTask,
        to: mpsc::UnboundedSender<QueueEvent>,
        rx: mpsc::UnboundedReceiver<QueueEvent>,
    }

    impl Task {
        fn new(writer: RecordWriter) -> Task {
            let mut c = Config::defaults(std::path::Path::new("/x"));
            c.queues.insert(
                "general".into(),
                QueueConfig {
                    skills: Vec::new(),
                    ring_timeout_ms: Some(15_000),
                    wrap_up_ms: Some(0),
                    strategy: Default::default(),
                    ..Default::default()
                },
            );
            for id in ["2001", "2002"] {
                c.agents.insert(
                    id.into(),
                    AgentConfig {
                        name: id.into(),
                        skills: Vec::new(),
                        ha1: String::new(),
                        level: None,
                    },
                );
            }
            let (to, rx) = mpsc::unbounded_channel();
            Task {
                task: AcdTask::new(&c, Some(writer)),
                to,
                rx,
            }
        }

        /// Timers due at `at`, then `msg` at `at`.
        fn at(&mut self, at: Millis, msg: AcdMsg) {
            self.timers(at);
            self.task.step(Some(msg), T0 + at);
        }

        fn timers(&mut self, at: Millis) {
            while self.task.acd.poll_timeout().is_some_and(|t| t <= T0 + at) {
                let due = self.task.acd.poll_timeout().unwrap_or(T0 + at);
                self.task.step(None, due);
            }
        }

        fn register(&mut self, at: Millis, agent: &str, expires: Duration) {
            let contact = Contact {
                uri: format!("sip:{agent}@10.0.0.1:5060"),
                addr: "10.0.0.1:5060".parse().expect("address"),
                tcp: false,
            };
            let msg = AcdMsg::Registration {
                agent: agent.into(),
                contact,
                conn: 0,
                expires,
            };
            self.at(at, msg);
        }

        fn enqueue(&mut self, at: Millis, call: CallKey, id: &str) {
            let pop = ScreenPop {
                call_id: id.into(),
                queue: "general".into(),
                ..ScreenPop::default()
            };
            let msg = AcdMsg::Enqueue {
                call,
                queue: "general".into(),
                skills: Vec::new(),
                priority: 0,
                routing: ivr_acd::Routing::default(),
                pop: Box::new(pop),
                to: self.to.clone(),
            };
            self.at(at, msg);
        }
    }

    /// Every offer and how it ended, every call and how it left the queue, as rows of
    /// `queue_events`.
    #[tokio::test]
    async fn the_acd_task_records_queue_events() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = Task::new(writer.clone());
        let hour = Duration::from_secs(3600);
        t.register(0, "2001", hour);
        t.register(0, "2002", hour);
        // A: 2001 is busy, 2002 lets it ring out, 2001 answers after a pause.
        t.enqueue(0, 1, "A");
        t.at(2 * S, AcdMsg::Declined(1, Decline::Busy));
        t.at(
            25 * S,
            AcdMsg::Answered {
                call: 1,
                agent: "2001".into(),
            },
        );
        // B: the caller hangs up while 2002 rings.
        t.enqueue(26 * S, 2, "B");
        t.at(30 * S, AcdMsg::Leave(2, LeaveReason::Hangup));
        // C: 2002's registration expires while it rings; then max_wait.
        t.register(30_500, "2002", Duration::from_millis(3_500));
        t.enqueue(31 * S, 3, "C");
        t.timers(34 * S);
        t.at(40 * S, AcdMsg::Leave(3, LeaveReason::MaxWait));
        // D waits for 2001 (on a call), who logs out: no agents any more.
        t.enqueue(42 * S, 4, "D");
        t.register(43 * S, "2001", Duration::ZERO);
        // E finds nobody logged in.
        t.enqueue(44 * S, 5, "E");
        t.at(45 * S, AcdMsg::ConversationOver(1));
        // F rings 2002, whose console closes while it rings: lost, not declined.
        t.register(46 * S, "2002", hour);
        t.enqueue(46 * S, 6, "F");
        t.at(47 * S, AcdMsg::Declined(6, Decline::Lost));
        t.at(48 * S, AcdMsg::Leave(6, LeaveReason::Hangup));
        let stats = writer.shutdown().await;
        assert_eq!((stats.rejected, stats.failed), (0, 0));

        let rows = ivr_data::query::fetch_rows(
            &pool,
            "SELECT call_id, event, agent, wait_ms, detail FROM queue_events ORDER BY id",
            &[],
        )
        .await
        .expect("rows");
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        ivr_engine::value::Value::Null => "-".to_string(),
                        v => v.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let want = [
            "A queued - 0 -",
            "A offered 2001 0 -",
            "A declined 2001 2000 busy",
            "A offered 2002 2000 -",
            "A ring_timeout 2002 17000 -",
            "A offered 2001 18000 -",
            "A answered 2001 25000 -",
            "B queued - 0 -",
            "B offered 2002 0 -",
            "B abandoned 2002 4000 -",
            "C queued - 0 -",
            "C offered 2002 0 -",
            "C lost 2002 3000 agent_offline",
            "C left - 9000 max_wait",
            "D queued - 0 -",
            "D left - 1000 no_agents",
            "E no_agents - - -",
            "F queued - 0 -",
            "F offered 2002 0 -",
            "F lost 2002 1000 gone",
        ];
        assert_eq!(got[..want.len()], want, "{got:#?}");
        assert!(!got.iter().any(|r| r.starts_with("F declined")), "{got:#?}");
    }

    /// What the calls heard so far.
    fn heard(t: &mut Task) -> Vec<QueueEvent> {
        std::iter::from_fn(|| t.rx.try_recv().ok()).collect()
    }

    /// A phone that answers after the ACD gave up on it does not get the call: only the
    /// agent the call is offered to now is connected.
    #[tokio::test]
    async fn a_late_answer_is_not_taken() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = Task::new(writer);
        let hour = Duration::from_secs(3600);
        t.register(0, "2001", hour);
        t.register(0, "2002", hour);
        t.enqueue(0, 1, "A");
        t.timers(15 * S);
        let offers: Vec<String> = heard(&mut t)
            .into_iter()
            .filter_map(|e| match e {
                QueueEvent::Offer { agent, .. } => Some(agent),
                QueueEvent::Cancel { agent } => Some(format!("cancel {agent}")),
                _ => None,
            })
            .collect();
        assert_eq!(offers, ["2001", "cancel 2001", "2002"]);
        let late = AcdMsg::Answered {
            call: 1,
            agent: "2001".into(),
        };
        t.at(15 * S + 10, late);
        assert!(
            !heard(&mut t)
                .iter()
                .any(|e| matches!(e, QueueEvent::Connected))
        );
        assert_eq!(t.task.acd.agent_of(1), Some("2002"));
        let answer = AcdMsg::Answered {
            call: 1,
            agent: "2002".into(),
        };
        t.at(15 * S + 20, answer);
        assert!(
            heard(&mut t)
                .iter()
                .any(|e| matches!(e, QueueEvent::Connected))
        );
    }

    /// What a cluster's leader writes after each change is enough for the next one: its
    /// rebuild keeps the agent talking on its call (offered nothing), the away agent away,
    /// and the waiting callers in their order; the oldest is offered first once the
    /// conversation is over.
    #[tokio::test]
    async fn an_export_rebuilds_the_acd_with_talking_agents_and_the_callers_order() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool,
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = Task::new(writer.clone());
        let hour = Duration::from_secs(3600);
        t.register(0, "2001", hour);
        t.register(0, "2002", hour);
        let away = AcdMsg::Away {
            agent: "2002".into(),
            away: true,
            reply: None,
        };
        t.at(0, away);
        t.enqueue(S, 1, "A");
        let answer = AcdMsg::Answered {
            call: 1,
            agent: "2001".into(),
        };
        t.at(2 * S, answer);
        t.enqueue(3 * S, 2, "B");
        t.enqueue(4 * S, 3, "C");
        let (tx, mut rx) = oneshot::channel();
        t.at(5 * S, AcdMsg::Export(tx));
        let export = rx.try_recv().expect("export");
        let order: Vec<(CallKey, Option<&str>)> = export
            .calls
            .iter()
            .map(|c| (c.key, c.talking.as_deref()))
            .collect();
        assert_eq!(order, [(1, Some("2001")), (2, None), (3, None)]);
        assert_eq!(export.away, ["2002"]);
        // Through JSON, as the leader writes it.
        let text = serde_json::to_string(&export).expect("json");
        let export: AcdExport = serde_json::from_str(&text).expect("back");

        let mut n = Task::new(writer);
        let contact = |a: &str| Contact {
            uri: format!("sip:{a}@10.0.0.1:5060"),
            addr: "10.0.0.1:5060".parse().expect("address"),
            tcp: false,
        };
        let rebuild = Rebuild {
            registrations: ["2001", "2002"]
                .iter()
                .map(|a| (a.to_string(), contact(a), hour))
                .collect(),
            away: export.away,
            wrap_up: export.wrap_up,
            calls: export
                .calls
                .into_iter()
                .map(|c| (c, n.to.clone()))
                .collect(),
        };
        n.at(6 * S, AcdMsg::Rebuild(Box::new(rebuild)));
        assert_eq!(n.task.acd.agent_of(1), Some("2001"));
        assert_eq!(
            (n.task.acd.agent_of(2), n.task.acd.agent_of(3)),
            (None, None)
        );
        let status = n.task.acd.status(T0 + 6 * S);
        let state = |id: &str| {
            status
                .agents
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.state)
                .expect("agent")
        };
        assert_eq!(state("2001"), AgentState::OnCall);
        assert_eq!(state("2002"), AgentState::Away);
        let g = status
            .queues
            .iter()
            .find(|q| q.name == "general")
            .expect("queue");
        assert_eq!(g.waiting, 2);
        assert_eq!(g.longest_wait_ms, 3 * S, "B's wait counts from its arrival");
        n.at(7 * S, AcdMsg::ConversationOver(1));
        n.timers(7 * S);
        assert_eq!(n.task.acd.agent_of(2), Some("2001"));
        assert_eq!(n.task.acd.agent_of(3), None);
    }

    /// A bridged call taken over by another node ([`AcdMsg::Resumed`]): an ACD that no
    /// longer had it holds its agent as talking again (a waiting caller is not offered to it
    /// until the conversation is over) with its screen pop; one that still has it only sends
    /// its events to the new place.
    #[tokio::test]
    async fn a_resumed_call_holds_its_agent_until_it_ends() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool,
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = Task::new(writer);
        let hour = Duration::from_secs(3600);
        t.register(0, "2001", hour);
        let pop = ScreenPop {
            call_id: "A".into(),
            queue: "general".into(),
            ..ScreenPop::default()
        };
        let (to, mut rx) = mpsc::unbounded_channel();
        let resumed = |to: mpsc::UnboundedSender<QueueEvent>| AcdMsg::Resumed {
            call: 1,
            queue: "general".into(),
            agent: "2001".into(),
            pop: Box::new(pop.clone()),
            to,
        };
        t.at(S, resumed(to));
        assert_eq!(t.task.acd.agent_of(1), Some("2001"));
        // A caller waits: 2001 talks, so it is offered nothing.
        t.enqueue(2 * S, 2, "B");
        t.timers(5 * S);
        assert_eq!(t.task.acd.agent_of(2), None);
        let (tx, mut srx) = oneshot::channel();
        t.at(5 * S, AcdMsg::Status(tx));
        let snapshot = srx.try_recv().expect("status");
        assert_eq!(
            snapshot.screen_pops.get("2001").map(|p| p.call_id.as_str()),
            Some("A")
        );
        // Announced again (another takeover): its events go to the newest place, nothing else.
        let (to2, mut rx2) = mpsc::unbounded_channel();
        t.at(6 * S, resumed(to2));
        assert_eq!(t.task.acd.agent_of(1), Some("2001"));
        // Over: 2001 wraps up (0 s here) and takes B.
        t.at(7 * S, AcdMsg::ConversationOver(1));
        t.timers(8 * S);
        assert_eq!(t.task.acd.agent_of(2), Some("2001"));
        assert!(rx.try_recv().is_err() && rx2.try_recv().is_err());
    }

    /// Today's figures of a queue: one call answered within 20 s, one abandoned: a service
    /// level of 50 %.
    #[tokio::test]
    async fn the_acd_task_counts_today_for_the_service_level() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool,
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let mut t = Task::new(writer);
        t.register(0, "2001", Duration::from_secs(3600));
        t.enqueue(0, 1, "A");
        let answer = AcdMsg::Answered {
            call: 1,
            agent: "2001".into(),
        };
        t.at(5 * S, answer);
        t.enqueue(6 * S, 2, "B");
        t.at(30 * S, AcdMsg::Leave(2, LeaveReason::Hangup));
        let (tx, mut rx) = oneshot::channel();
        t.at(31 * S, AcdMsg::Status(tx));
        let snapshot = rx.try_recv().expect("status");
        let g = &snapshot.today["general"];
        assert_eq!((g.queued, g.answered, g.answered_in_time), (2, 1, 1));
        assert_eq!((g.abandoned, g.left), (1, 0));
        assert_eq!(g.service_level, Some(0.5));
    }

    /// Who shows agents' states hears of each change, and not of its own status requests
    /// (which would make it ask again and again).
    #[tokio::test]
    async fn the_task_tells_of_changes_but_not_of_status_requests() {
        let mut c = Config::defaults(std::path::Path::new("/x"));
        c.agents.insert(
            "2001".into(),
            AgentConfig {
                name: "A".into(),
                skills: Vec::new(),
                ha1: String::new(),
                level: None,
            },
        );
        let (acd, mut changes) = AcdTask::start(&c, None);
        let within = Duration::from_secs(5);
        // The state of 2001 after two status requests: the task bumps after a turn, so the
        // first's bump, were there one, is done once the second is answered.
        async fn state_of_2001(acd: &AcdHandle) -> Option<ivr_acd::AgentState> {
            let mut snapshot = None;
            for _ in 0..2 {
                let (tx, rx) = oneshot::channel();
                let _ = acd.send(AcdMsg::Status(tx));
                snapshot = rx.await.ok();
            }
            let agents = snapshot?.status.agents;
            agents.into_iter().find(|a| a.id == "2001").map(|a| a.state)
        }
        use ivr_acd::AgentState::{Available, Offline};
        // Status requests: no change.
        assert_eq!(state_of_2001(&acd).await, Some(Offline));
        assert!(!changes.has_changed().expect("task"));
        // A registration: a change, and the agent is available.
        let _ = acd.send(AcdMsg::Registration {
            agent: "2001".into(),
            contact: Contact {
                uri: "sip:2001@10.0.0.1:5060".into(),
                addr: "10.0.0.1:5060".parse().expect("address"),
                tcp: false,
            },
            conn: 0,
            expires: Duration::from_secs(3600),
        });
        tokio::time::timeout(within, changes.changed())
            .await
            .expect("a change in time")
            .expect("task");
        assert_eq!(state_of_2001(&acd).await, Some(Available));
        assert!(!changes.has_changed().expect("task"));
    }
}
