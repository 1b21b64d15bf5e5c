//! The simulator: drives one [`Call`] on a virtual clock, with a model of the playback queue
//! (prompt durations from their audio or text), timers, queries answered by a [`DataSource`],
//! and a transcript of what the flow did. `ivr simulate` and `ivr test` both run on it, so a
//! scenario exercises exactly the engine that serves calls.

pub mod coverage;
pub mod prompts;
pub mod scenario;
pub mod transcript;

use crate::speak;
use crate::value::Value;
use crate::{
    Call, CallInfo, Command, Event, Exit, Flow, Machine, Millis, QueryResult, TransferUpdate,
};
use ivr_compiler::config::QueryDef;
use ivr_compiler::program::{Body, NodeId};
use ivr_dsl::ast::SayKind;
pub use prompts::{AudioDurations, PromptBook};
use std::collections::VecDeque;
use std::sync::Arc;
pub use transcript::{Entry, LookupFailure};

/// Why a query could not be run at all: the simulation stops (a scenario fails with it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The lookup's query is not in the flow's data catalog.
    #[error("query `{0}` is not in the data catalog")]
    NotInCatalog(String),
    /// Neither a mock nor a database answers the query.
    #[error(
        "query `{0}` has no mock and no database is connected: add `mock {0} -> found {{ ... }}`, `missing` or `error`"
    )]
    NoData(String),
    /// The data source failed (its database could not be opened, say).
    #[error(transparent)]
    Source(Arc<dyn std::error::Error + Send + Sync>),
}

impl QueryError {
    /// A data source's own failure.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> QueryError {
        QueryError::Source(Arc::new(error))
    }
}

/// Answers a simulation's queries.
pub trait DataSource {
    /// Runs query `name` (declared as `def`) with `args`; `Err` means it could not be run at
    /// all (no mock and no database), which fails a scenario with that message.
    fn query(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
    ) -> Result<QueryResult, QueryError>;

    /// Like [`DataSource::query`], bounded by the lookup's timeout (the node's, else the
    /// query's, else the default) where the source can time out (a database).
    fn query_timed(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
        _timeout_ms: Option<u64>,
    ) -> Result<QueryResult, QueryError> {
        self.query(name, def, args)
    }
}

/// Watches a simulated call: every event fed to the engine and every command it answers with,
/// with the virtual time (call records are written this way).
pub trait Observer {
    /// An event, before the engine handles it.
    fn event(&mut self, event: &Event, now: Millis);
    /// A command of the engine.
    fn command(&mut self, command: &Command, now: Millis);
}

impl<T: Observer> Observer for std::rc::Rc<std::cell::RefCell<T>> {
    fn event(&mut self, event: &Event, now: Millis) {
        self.borrow_mut().event(event, now);
    }

    fn command(&mut self, command: &Command, now: Millis) {
        self.borrow_mut().command(command, now);
    }
}

/// A data source that has nothing: every query is reported as unanswerable.
#[derive(Debug, Default)]
pub struct NoData;

impl DataSource for NoData {
    fn query(
        &mut self,
        name: &str,
        _def: &QueryDef,
        _args: &[Value],
    ) -> Result<QueryResult, QueryError> {
        Err(QueryError::NoData(name.to_string()))
    }
}

#[derive(Debug, Clone)]
enum Item {
    Play {
        prompt: u32,
        language: u8,
    },
    Say {
        kind: SayKind,
        value: Value,
        masked: bool,
        language: u8,
    },
    Silence,
    Beep,
    Announce {
        position: u32,
    },
}

#[derive(Debug, Clone)]
struct Queued {
    item: Item,
    seq: u32,
    ms: u64,
    /// The node that queued it.
    node: NodeId,
}

/// One simulated call.
pub struct Simulation {
    call: Call,
    book: Arc<PromptBook>,
    data: Box<dyn DataSource>,
    now: Millis,
    queue: VecDeque<Queued>,
    playing: Option<(Queued, Millis)>,
    /// When the caller stops speaking into a `record` node (the simulator's own timer; the
    /// engine's are its own, see [`Machine::poll_timeout`]).
    recording_end: Option<Millis>,
    events: VecDeque<Event>,
    transcript: Vec<Entry>,
    /// The node each transcript entry happened in.
    entry_nodes: Vec<NodeId>,
    /// The node last entered, as the commands being applied say.
    node: NodeId,
    /// Every node entered and how it was left, in order.
    pub visits: Vec<(NodeId, Option<Exit>)>,
    transfer_active: bool,
    recording: Option<(NodeId, Millis)>,
    /// Why the simulation could not go on (an unanswerable query), if it could not.
    pub error: Option<QueryError>,
    /// Lookups that took `error`, with the reason their query gave.
    lookup_failures: Vec<LookupFailure>,
    observer: Option<Box<dyn Observer>>,
}

impl Simulation {
    /// A call of `flow` from `info`, starting at virtual time `start`.
    pub fn new(
        flow: Arc<Flow>,
        info: CallInfo,
        start: Millis,
        book: Arc<PromptBook>,
        data: Box<dyn DataSource>,
    ) -> Simulation {
        Simulation {
            call: Call::new(flow, info),
            book,
            data,
            now: start,
            queue: VecDeque::new(),
            playing: None,
            recording_end: None,
            events: VecDeque::new(),
            transcript: Vec::new(),
            entry_nodes: Vec::new(),
            node: 0,
            visits: Vec::new(),
            transfer_active: false,
            recording: None,
            error: None,
            lookup_failures: Vec::new(),
            observer: None,
        }
    }

    /// Shows every event and command of the call to `observer` from now on.
    pub fn set_observer(&mut self, observer: Box<dyn Observer>) {
        self.observer = Some(observer);
    }

    /// The call being simulated.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The node the caller is in now, as heard: the node whose prompt (or pause) is playing,
    /// else the engine's. The engine runs a step's actions at once and queues their audio, so
    /// its own node can be ahead of what the caller hears: after `press 1` in a menu, the
    /// caller is in the step `bill` while its prompts play, though the engine already waits in
    /// the menu it goes back to.
    pub fn heard_node(&self) -> NodeId {
        match &self.playing {
            Some((q, end)) if *end > self.now => q.node,
            _ => self.call.node(),
        }
    }

    /// Everything observed so far.
    pub fn transcript(&self) -> &[Entry] {
        &self.transcript
    }

    /// The node each transcript entry happened in, in step with [`Simulation::transcript`].
    pub fn entry_nodes(&self) -> &[NodeId] {
        &self.entry_nodes
    }

    fn record(&mut self, entry: Entry) {
        self.transcript.push(entry);
        self.entry_nodes.push(self.node);
    }

    /// The lookups that took `error` so far, with their reasons (the database's error, a
    /// timeout, a mocked error), each placed after the transcript entries before it.
    pub fn lookup_failures(&self) -> &[LookupFailure] {
        &self.lookup_failures
    }

    /// Whether a transfer is in progress (queued, ringing or connected).
    pub fn transfer_active(&self) -> bool {
        self.transfer_active
    }

    /// Answers the call.
    pub fn start(&mut self) {
        self.feed(Event::Start);
    }

    /// The caller presses a key now.
    pub fn press(&mut self, key: char) {
        self.feed(Event::Key(key));
    }

    /// The caller hangs up now.
    pub fn hangup(&mut self) {
        self.feed(Event::Hangup);
    }

    /// Transfer progress now.
    pub fn transfer(&mut self, update: TransferUpdate) {
        self.feed(Event::Transfer(update));
    }

    /// The time of the next thing that will happen by itself, if any.
    pub fn next_event_time(&self) -> Option<Millis> {
        let timer = self.next_timer();
        let play = self.playing.as_ref().map(|(_, end)| *end);
        match (timer, play) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the next thing to happen is the end of a playback item (not a timer).
    pub fn next_is_playback(&self) -> bool {
        match (self.playing.as_ref(), self.next_timer()) {
            (Some((_, end)), Some(t)) => *end <= t,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The earliest of the engine's timers and the simulator's own.
    fn next_timer(&self) -> Option<Millis> {
        match (self.call.poll_timeout(), self.recording_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next thing that happens by itself; false when nothing is pending or the
    /// call is over.
    pub fn step(&mut self) -> bool {
        if self.call.is_ended() || self.error.is_some() {
            return false;
        }
        let Some(t) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(t);
        if let Some((_, end)) = &self.playing
            && *end <= t
        {
            let (done, _) = self.playing.take().expect("checked above");
            self.start_next_item();
            if self.playing.is_none() {
                self.feed(Event::PlaybackDone { seq: done.seq });
            }
            return true;
        }
        if self.recording_end.is_some_and(|end| end <= t) {
            self.recording_end = None;
            if let Some((_, started)) = self.recording.take() {
                let length_ms = (self.now - started).max(0) as u64;
                self.recording_done(length_ms);
            }
        } else if self.call.poll_timeout().is_some_and(|at| at <= t) {
            self.call.handle_timeout(self.now);
            self.take_commands();
            self.pump();
        }
        true
    }

    /// Lets virtual time pass until `until`, processing everything due.
    pub fn advance_to(&mut self, until: Millis) {
        while let Some(t) = self.next_event_time() {
            if t > until || !self.step() {
                break;
            }
        }
        if !self.call.is_ended() {
            self.now = self.now.max(until);
        }
    }

    fn feed(&mut self, event: Event) {
        self.events.push_back(event);
        self.pump();
    }

    /// Hands the engine every queued event (answers to queries come back as events) and
    /// applies its commands.
    fn pump(&mut self) {
        while let Some(ev) = self.events.pop_front() {
            if self.call.is_ended() {
                self.events.clear();
                break;
            }
            if let Some(o) = &mut self.observer {
                o.event(&ev, self.now);
            }
            self.call.handle_input(ev, self.now);
            self.take_commands();
        }
    }

    /// Applies every command the engine has for us, in order.
    fn take_commands(&mut self) {
        while let Some(c) = self.call.poll_output() {
            if let Some(o) = &mut self.observer {
                o.command(&c, self.now);
            }
            self.apply(&c);
        }
    }

    fn apply(&mut self, c: &Command) {
        match c {
            Command::Enter { node } => {
                self.node = *node;
                self.visits.push((*node, None));
            }
            Command::Leave { node, by } => {
                if let Some(v) = self
                    .visits
                    .iter_mut()
                    .rev()
                    .find(|(n, e)| n == node && e.is_none())
                {
                    v.1 = Some(*by);
                }
                // Leaving a transfer node ends the transfer (the agent hung up, max_wait, ...).
                if matches!(
                    self.call
                        .flow()
                        .program
                        .nodes
                        .get(*node as usize)
                        .map(|n| &n.body),
                    Some(Body::Transfer(_))
                ) {
                    self.transfer_active = false;
                }
            }
            Command::Play {
                prompt,
                language,
                seq,
            } => {
                let ms = self.book.prompt(*language, *prompt).1;
                self.enqueue(
                    Item::Play {
                        prompt: *prompt,
                        language: *language,
                    },
                    *seq,
                    ms,
                );
            }
            Command::Say {
                kind,
                value,
                masked,
                language,
                seq,
            } => {
                let lang = self.book.language(*language);
                let ms = self
                    .book
                    .say_ms(*language, &speak::fragments(lang, *kind, value));
                self.enqueue(
                    Item::Say {
                        kind: *kind,
                        value: value.clone(),
                        masked: *masked,
                        language: *language,
                    },
                    *seq,
                    ms,
                );
            }
            Command::Silence { millis, seq } => self.enqueue(Item::Silence, *seq, *millis),
            Command::Beep { seq } => self.enqueue(Item::Beep, *seq, 500),
            Command::Announce { position, seq, .. } => self.enqueue(
                Item::Announce {
                    position: *position,
                },
                *seq,
                2_000,
            ),
            Command::StopPlayback => {
                self.playing = None;
                self.queue.clear();
            }
            Command::RunQuery { id, node, args, .. } => {
                let flow = Arc::clone(self.call.flow());
                let Body::Lookup(l) = &flow.program.nodes[*node as usize].body else {
                    return;
                };
                let result = match flow.queries.get(&l.query) {
                    Some(def) => self
                        .data
                        .query_timed(&l.query, def, args, Some(l.timeout_ms)),
                    None => Err(QueryError::NotInCatalog(l.query.clone())),
                };
                match result {
                    Ok(result) => {
                        if let QueryResult::Error(reason) = &result {
                            self.lookup_failures.push(LookupFailure {
                                entry: self.transcript.len(),
                                node: flow.program.nodes[*node as usize].name.clone(),
                                reason: reason.clone(),
                            });
                        }
                        self.events.push_back(Event::QueryDone { id: *id, result })
                    }
                    Err(e) => self.error = Some(e),
                }
            }
            Command::Transfer {
                node,
                priority,
                level,
                ..
            } => {
                let flow = Arc::clone(self.call.flow());
                if let Body::Transfer(t) = &flow.program.nodes[*node as usize].body {
                    self.record(Entry::Transfer {
                        destination: t.destination.clone(),
                        priority: *priority,
                        level: *level,
                    });
                }
                self.transfer_active = true;
            }
            Command::CancelTransfer => self.transfer_active = false,
            Command::KeepCallback { queue, .. } => {
                self.transfer_active = false;
                self.record(Entry::Callback {
                    queue: queue.clone(),
                });
            }
            Command::StartRecording { node } => {
                let flow = Arc::clone(self.call.flow());
                if let Body::Record(r) = &flow.program.nodes[*node as usize].body {
                    self.record(Entry::Record {
                        node: flow.program.nodes[*node as usize].name.clone(),
                        table: r.save.clone(),
                    });
                    // Without audio, the caller is taken to speak until silence (or the limit).
                    let ms = r.silence_ms.map_or(r.max_ms, |s| s.min(r.max_ms));
                    self.recording = Some((*node, self.now));
                    self.recording_end = Some(self.now + ms as i64);
                }
            }
            Command::StopRecording => {
                if let Some((_, started)) = self.recording.take() {
                    self.recording_end = None;
                    let length_ms = (self.now - started).max(0) as u64;
                    self.recording_done(length_ms);
                }
            }
            Command::SaveSurvey { node, answers } => {
                let flow = Arc::clone(self.call.flow());
                if let Body::Survey(s) = &flow.program.nodes[*node as usize].body {
                    let fields = s
                        .questions
                        .iter()
                        .zip(answers)
                        .map(|(q, a)| (q.name.clone(), a.clone()))
                        .collect();
                    self.record(Entry::Saved {
                        table: s.save.clone(),
                        fields,
                    });
                }
            }
            Command::Hangup => {
                self.record(Entry::Hangup);
                self.finish_recording_on_end();
            }
            Command::Served { task } => self.record(Entry::Served { task: task.clone() }),
            Command::RecordCall => self.record(Entry::RecordCall),
            Command::End { .. } => {
                self.finish_recording_on_end();
                self.playing = None;
                self.queue.clear();
                self.recording_end = None;
                self.transfer_active = false;
            }
        }
    }

    fn finish_recording_on_end(&mut self) {
        if let Some((node, started)) = self.recording.take() {
            let length_ms = (self.now - started).max(0) as u64;
            self.save_recording(node, length_ms);
        }
    }

    fn recording_done(&mut self, length_ms: u64) {
        let node = self.call.node();
        self.save_recording(node, length_ms);
        self.events.push_back(Event::RecordingDone { length_ms });
        if self.events.len() == 1 {
            let ev = self.events.pop_front().expect("just pushed");
            self.feed(ev);
        }
    }

    fn save_recording(&mut self, node: NodeId, length_ms: u64) {
        let flow = Arc::clone(self.call.flow());
        if let Some(Body::Record(r)) = flow.program.nodes.get(node as usize).map(|n| &n.body) {
            self.record(Entry::Saved {
                table: r.save.clone(),
                fields: vec![
                    (
                        "caller".into(),
                        Value::Text(self.call.info().caller.clone()),
                    ),
                    (
                        "length".into(),
                        Value::Number(rust_decimal::Decimal::new(length_ms as i64, 3)),
                    ),
                ],
            });
        }
    }

    fn enqueue(&mut self, item: Item, seq: u32, ms: u64) {
        self.queue.push_back(Queued {
            item,
            seq,
            ms: ms.max(1),
            node: self.node,
        });
        if self.playing.is_none() {
            self.start_next_item();
        }
    }

    fn start_next_item(&mut self) {
        let Some(q) = self.queue.pop_front() else {
            return;
        };
        let current = std::mem::replace(&mut self.node, q.node);
        match &q.item {
            Item::Play { prompt, language } => {
                let flow = self.call.flow();
                self.record(Entry::Play {
                    prompt: flow.program.prompt(*prompt).to_string(),
                    text: self.book.prompt(*language, *prompt).0.to_string(),
                });
            }
            Item::Say {
                kind,
                value,
                masked,
                language,
            } => {
                // Masked digits are never written out (the entry shows `***`); a scenario
                // still compares them as values.
                let text = if *masked {
                    "***".to_string()
                } else {
                    let lang = self.book.language(*language);
                    speak::text(lang, *kind, value)
                };
                self.record(Entry::Say {
                    kind: *kind,
                    value: value.clone(),
                    text,
                    masked: *masked,
                });
            }
            Item::Announce { position } => self.record(Entry::Announce {
                position: *position,
            }),
            Item::Silence | Item::Beep => {}
        }
        self.node = current;
        let end = self.now + q.ms as i64;
        self.playing = Some((q, end));
    }
}
