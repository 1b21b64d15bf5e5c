//! The per-call state machine.

use super::eval::{EvalError, Scope, eval};
use super::{
    CallInfo, Command, EndedBy, Event, Exit, Flow, Millis, Outcome, QueryResult, TransferUpdate,
};
use crate::value::Value;
use ivr_compiler::program::{
    Answers, Body, Collect, Destination, Edge, Expr, ExprKind, Jump, NodeId, Op, PromptId, Type,
};
use ivr_sansio::Machine;
use rust_decimal::prelude::ToPrimitive;
use std::collections::VecDeque;
use std::sync::Arc;

/// Most keys kept as type-ahead while no node is collecting.
pub const TYPEAHEAD_MAX: usize = 16;
/// Most node changes without waiting for anything before the call is ended as a fault
/// (the checker rejects such loops; this guards the engine against any it missed).
const MAX_HOPS: u32 = 1_000;
/// Most menus remembered for `back`.
const MENU_STACK_MAX: usize = 16;
/// Most different tasks a call completes (`served`); further ones are not counted.
pub const SERVED_MAX: usize = 32;

/// What the current node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Idle,
    /// The node waits for earlier prompts to finish before it starts.
    AwaitLine,
    /// The flow hangs up once the prompts have finished.
    AwaitHangup,
    /// A collecting node plays its prompts.
    Prompting,
    /// A collecting node waits for keys.
    Collecting,
    /// A lookup waits for its query.
    Querying,
    /// A transfer waits in the queue (or rings the number).
    Waiting,
    /// The caller talks to an agent.
    Connected,
    /// The record node plays its prompt and beep.
    RecordPrompt,
    /// The caller is being recorded.
    Recording,
    /// The call is over.
    Ended,
}

/// Where a waiting call is with its transfer's `callback after ... -> NODE` offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallbackState {
    /// No offer (the node has none, or it was not yet due).
    Idle,
    /// The offer is due when the callback timer fires.
    Due,
    /// `callback_offer` plays; key 1 keeps the callback.
    Offering,
    /// The offer has played; key 1 still keeps the callback until the timer fires.
    Listening,
    /// The offer is over (another key, or silence): the caller waits on.
    Declined,
}

/// How long key 1 is still taken after the callback offer has played.
pub const CALLBACK_ANSWER_MS: u64 = 5_000;

/// Keys held as type-ahead, without allocation.
#[derive(Debug, Clone, Copy, Default)]
struct KeyBuf {
    keys: [u8; TYPEAHEAD_MAX],
    len: u8,
}

impl KeyBuf {
    fn push(&mut self, c: char) {
        if (self.len as usize) < TYPEAHEAD_MAX {
            self.keys[self.len as usize] = c as u8;
            self.len += 1;
        }
    }
    fn pop_front(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let c = self.keys[0] as char;
        self.keys.copy_within(1..self.len as usize, 0);
        self.len -= 1;
        Some(c)
    }
    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Digits collected by an input node, without allocation.
#[derive(Debug, Clone, Copy, Default)]
struct Digits {
    buf: [u8; 32],
    len: u8,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

/// One call running one flow. See the module documentation of [`crate`].
#[derive(Debug)]
pub struct Call {
    flow: Arc<Flow>,
    info: CallInfo,
    vars: Vec<Value>,
    language: u8,
    node: NodeId,
    phase: Phase,
    /// Failed attempts at the current collecting node (or survey question).
    failures: u32,
    typeahead: KeyBuf,
    digits: Digits,
    menus: Vec<NodeId>,
    /// Sequence number of the last playback item queued, and whether the queue has drained.
    seq: u32,
    playing: bool,
    next_timer: u32,
    /// The collecting node's timer, the lookup's timeout, the queue's max_wait, announcements:
    /// each its id (the order timers were started in) and when it fires.
    timer: Option<(u32, Millis)>,
    wait_timer: Option<(u32, Millis)>,
    announce_timer: Option<(u32, Millis)>,
    /// The callback offer's timer (when it is due, then the end of its answer window).
    callback_timer: Option<(u32, Millis)>,
    callback: CallbackState,
    /// The caller kept a callback.
    kept_callback: bool,
    /// Commands not yet taken out with `poll_output`, oldest first.
    out: VecDeque<Command>,
    query: u32,
    question: u32,
    answers: Vec<Value>,
    position: u32,
    hops: u32,
    transferred: bool,
    abandoned: bool,
    failed: bool,
    /// A record node saved a message (or was recording when the call ended).
    message: bool,
    /// When the current recording started.
    recording_since: Millis,
    /// The platform ends the call (a fault, a failure, a shutdown), not the flow.
    by_system: bool,
    /// The tasks completed (`served`), each once, in order, at most [`SERVED_MAX`].
    served: Vec<String>,
    /// A `record call` action ran (its command is sent once).
    recording_call: bool,
    /// Who ended the call, once it has ended.
    ended_by: Option<EndedBy>,
    /// Why the call ended in a fault, if it did (for simulations and logs; never values).
    fault: Option<String>,
    outcome: Option<Outcome>,
    /// The node [`Event::Start`] enters: the flow's entry, or a resumed call's node.
    resume_at: Option<NodeId>,
}

impl Call {
    /// A call that has not started; feed it [`Event::Start`].
    pub fn new(flow: Arc<Flow>, info: CallInfo) -> Call {
        let nvars = flow.program.vars.len();
        Call {
            flow,
            info,
            vars: vec![Value::Null; nvars],
            language: 0,
            node: 0,
            phase: Phase::Idle,
            failures: 0,
            typeahead: KeyBuf::default(),
            digits: Digits::default(),
            menus: Vec::new(),
            seq: 0,
            playing: false,
            next_timer: 0,
            timer: None,
            wait_timer: None,
            announce_timer: None,
            callback_timer: None,
            callback: CallbackState::Idle,
            kept_callback: false,
            out: VecDeque::new(),
            query: 0,
            question: 0,
            answers: Vec::new(),
            position: 1,
            hops: 0,
            transferred: false,
            abandoned: false,
            failed: false,
            message: false,
            recording_since: 0,
            by_system: false,
            served: Vec::new(),
            recording_call: false,
            ended_by: None,
            fault: None,
            outcome: None,
            resume_at: None,
        }
    }

    /// A call that starts at `node` with these variables, language and completed tasks
    /// (see [`Call::resume`](crate::Call::resume)).
    pub(crate) fn resumed(
        flow: Arc<Flow>,
        info: CallInfo,
        node: NodeId,
        vars: Vec<Value>,
        language: u8,
        served: Vec<String>,
    ) -> Call {
        let mut call = Call::new(flow, info);
        if vars.len() == call.vars.len() {
            call.vars = vars;
        }
        call.language = language;
        call.served = served;
        call.resume_at = Some(node);
        call
    }

    /// The variables' values, in the program's order.
    pub(crate) fn values(&self) -> &[Value] {
        &self.vars
    }

    #[cfg(test)]
    pub(crate) fn set_value_for_test(&mut self, var: u32, v: Value) {
        if let Some(slot) = self.vars.get_mut(var as usize) {
            *slot = v;
        }
    }

    #[cfg(test)]
    pub(crate) fn set_node_for_test(&mut self, node: NodeId) {
        self.node = node;
    }

    /// The flow this call runs.
    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The call's facts.
    pub fn info(&self) -> &CallInfo {
        &self.info
    }

    /// The node the call is at.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// How many keys are held as type-ahead (pressed while nothing collected, for the next
    /// node that collects). A driver showing keys uses it to tell which node took a key.
    pub fn typeahead_len(&self) -> usize {
        self.typeahead.len as usize
    }

    /// The current prompt language tag.
    pub fn language(&self) -> &str {
        self.flow
            .program
            .languages
            .get(self.language as usize)
            .map_or("", String::as_str)
    }

    /// A variable's value by name (`customer` or `customer.balance`), for `expect var`.
    pub fn var(&self, path: &str) -> Option<Value> {
        let (head, field) = match path.split_once('.') {
            Some((h, f)) => (h, Some(f)),
            None => (path, None),
        };
        let p = &self.flow.program;
        if field.is_none() {
            match head {
                "caller" => return Some(Value::Text(self.info.caller.clone())),
                "called" => return Some(Value::Text(self.info.called.clone())),
                "language" => return Some(Value::Text(self.language().to_string())),
                _ => {}
            }
        }
        match (head, field) {
            ("call", Some("id")) => return Some(Value::Text(self.info.id.clone())),
            ("call", Some("channel")) => {
                return Some(Value::Text(self.info.channel.as_str().into()));
            }
            ("flow", Some("version")) => return Some(Value::Text(p.version.clone())),
            _ => {}
        }
        let id = p.var_id(head)?;
        let value = self.vars.get(id as usize)?.clone();
        match field {
            None => Some(value),
            Some(f) => {
                let Value::Row(fields) = &value else {
                    return None;
                };
                let Type::Row(query) = &p.vars.get(id as usize)?.ty else {
                    return None;
                };
                let index = self.flow.queries.get(query)?.fields.get_index_of(f)?;
                fields.get(index).cloned()
            }
        }
    }

    /// Whether variable `name` holds masked digits.
    pub fn is_masked(&self, name: &str) -> bool {
        self.flow
            .program
            .vars
            .iter()
            .any(|v| v.masked && v.name == name)
    }

    /// Memory the call holds: its fixed part (the struct, its facts and bookkeeping) and its
    /// variables, in bytes.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let fixed = std::mem::size_of::<Call>()
            + self.info.id.capacity()
            + self.info.caller.capacity()
            + self.info.called.capacity()
            + self.menus.capacity() * std::mem::size_of::<NodeId>()
            + self.answers.capacity() * std::mem::size_of::<Value>();
        let vars = self.vars.capacity() * std::mem::size_of::<Value>()
            + self
                .vars
                .iter()
                .map(|v| match v {
                    Value::Text(t) => t.capacity(),
                    Value::Row(r) => r.len() * std::mem::size_of::<Value>(),
                    _ => 0,
                })
                .sum::<usize>();
        (fixed, vars)
    }

    /// How the call ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Who ended the call, once it has.
    pub fn ended_by(&self) -> Option<EndedBy> {
        self.ended_by
    }

    /// The self-service tasks the call completed (`served`), in order (at most
    /// [`SERVED_MAX`]).
    pub fn served(&self) -> &[String] {
        &self.served
    }

    /// Why the call ended in a fault (`failed` without a path for it), if it did.
    pub fn fault_reason(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Handles one event at time `now` ([`Machine::handle_input`]).
    fn handle_event(&mut self, event: Event, now: Millis) {
        if self.phase == Phase::Ended {
            return;
        }
        self.hops = 0;
        let mut out = std::mem::take(&mut self.out);
        let mut cx = Cx { now, out: &mut out };
        self.dispatch(event, &mut cx);
        self.out = out;
    }

    /// The timers that are set, each (id, when).
    fn timers(&self) -> impl Iterator<Item = (u32, Millis)> {
        [
            self.timer,
            self.wait_timer,
            self.announce_timer,
            self.callback_timer,
        ]
        .into_iter()
        .flatten()
    }

    fn dispatch(&mut self, event: Event, cx: &mut Cx) {
        match event {
            Event::Start => {
                if self.phase == Phase::Idle {
                    let entry = self.resume_at.unwrap_or(self.flow.program.entry);
                    self.enter(entry, cx);
                }
            }
            Event::Key(c) => self.on_key(c, cx),
            Event::PlaybackDone { seq } => {
                if seq == self.seq && self.playing {
                    self.playing = false;
                    self.on_drained(cx);
                }
            }
            Event::QueryDone { id, result } => {
                if self.phase == Phase::Querying && id == self.query {
                    self.cancel_timer(cx);
                    self.on_query(result, cx);
                }
            }
            Event::Transfer(update) => self.on_transfer(update, cx),
            Event::RecordingDone { length_ms } => {
                if self.phase == Phase::Recording {
                    self.message |= length_ms > 0;
                    self.leave_next(cx);
                }
            }
            Event::Hangup => {
                let node = self.node;
                match self.phase {
                    Phase::Waiting => self.abandoned = true,
                    // The driver keeps what was recorded so far.
                    Phase::Recording => self.message |= cx.now > self.recording_since,
                    _ => {}
                }
                if self.phase != Phase::Idle {
                    cx.out.push_back(Command::Leave {
                        node,
                        by: Exit::CallerHangup,
                    });
                }
                self.cancel_all_timers(cx);
                self.finish(EndedBy::Caller, cx);
            }
            Event::Terminated { failure } => {
                if self.phase == Phase::Recording {
                    self.message |= cx.now > self.recording_since;
                }
                if failure {
                    self.failed = true;
                }
                if self.phase != Phase::Idle {
                    cx.out.push_back(Command::Leave {
                        node: self.node,
                        by: Exit::System,
                    });
                }
                self.cancel_all_timers(cx);
                self.finish(EndedBy::System, cx);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Playback and timers

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.playing = true;
        self.seq
    }

    fn play(&mut self, prompts: &[PromptId], cx: &mut Cx) {
        for &prompt in prompts {
            let seq = self.next_seq();
            cx.out.push_back(Command::Play {
                prompt,
                language: self.language,
                seq,
            });
        }
    }

    fn stop_playback(&mut self, cx: &mut Cx) {
        if self.playing {
            cx.out.push_back(Command::StopPlayback);
            self.playing = false;
        }
    }

    fn start_timer(&mut self, after_ms: u64, cx: &mut Cx) -> (u32, Millis) {
        self.next_timer = self.next_timer.wrapping_add(1);
        let at = cx
            .now
            .saturating_add(i64::try_from(after_ms).unwrap_or(i64::MAX / 2));
        (self.next_timer, at)
    }

    fn set_timer(&mut self, after_ms: u64, cx: &mut Cx) {
        self.cancel_timer(cx);
        self.timer = Some(self.start_timer(after_ms, cx));
    }

    fn cancel_timer(&mut self, _cx: &mut Cx) {
        self.timer = None;
    }

    fn cancel_all_timers(&mut self, cx: &mut Cx) {
        self.cancel_timer(cx);
        self.wait_timer = None;
        self.announce_timer = None;
        self.callback_timer = None;
        self.callback = CallbackState::Idle;
    }

    // -----------------------------------------------------------------------------------------
    // Moving between nodes

    fn body(&self) -> &Body {
        &self.flow.program.nodes[self.node as usize].body
    }

    fn scope_eval(&self, e: &Expr, now: Millis) -> Result<Value, EvalError> {
        let p = &self.flow.program;
        eval(
            e,
            &Scope {
                vars: &self.vars,
                info: &self.info,
                language: p
                    .languages
                    .get(self.language as usize)
                    .map_or("", String::as_str),
                version: &p.version,
                now,
                calendars: &self.flow.calendars,
            },
        )
    }

    /// Evaluates a condition; a fault ends the call.
    fn holds(&mut self, e: &Expr, cx: &mut Cx) -> Option<bool> {
        match self.scope_eval(e, cx.now) {
            Ok(v) => Some(v.as_bool().unwrap_or(false)),
            Err(e) => {
                self.fault_because(&e.to_string(), cx);
                None
            }
        }
    }

    /// Ends the call in a fault: `why` in words (never a variable's value).
    fn fault_because(&mut self, why: &str, cx: &mut Cx) {
        let node = &self.flow.program.nodes[self.node as usize].name;
        self.fault = Some(format!("fault in node `{node}`: {why}"));
        self.fault(cx);
    }

    /// Ends the call as `failed`. What the node queued before the fault still plays (a step's
    /// actions run in order: its earlier prompts were said), then the call hangs up.
    fn fault(&mut self, cx: &mut Cx) {
        self.failed = true;
        self.by_system = true;
        cx.out.push_back(Command::Leave {
            node: self.node,
            by: Exit::Fault,
        });
        self.hang_up(cx);
    }

    /// Who ends the call when the flow's hang-up runs: the flow, or the platform after a
    /// fault.
    fn hangup_by(&self) -> EndedBy {
        if self.by_system {
            EndedBy::System
        } else {
            EndedBy::Flow
        }
    }

    /// The outcome: the first that applies (see [`Outcome`]).
    fn compute_outcome(&self) -> Outcome {
        if self.transferred {
            Outcome::Transferred
        } else if self.kept_callback {
            Outcome::Callback
        } else if self.abandoned {
            Outcome::Abandoned
        } else if self.message {
            Outcome::Message
        } else if !self.served.is_empty() {
            Outcome::SelfService
        } else if self.failed {
            Outcome::Failed
        } else {
            Outcome::NotServed
        }
    }

    fn finish(&mut self, ended_by: EndedBy, cx: &mut Cx) {
        let outcome = self.compute_outcome();
        self.outcome = Some(outcome);
        self.ended_by = Some(ended_by);
        self.phase = Phase::Ended;
        cx.out.push_back(Command::End { outcome, ended_by });
    }

    /// Leaves the current node by `by` and follows `edge`.
    fn follow(&mut self, edge: Edge, by: Exit, cx: &mut Cx) {
        cx.out.push_back(Command::Leave {
            node: self.node,
            by,
        });
        if by == Exit::Error {
            self.failed = true;
        }
        self.jump(edge.jump, cx);
    }

    fn jump(&mut self, jump: Jump, cx: &mut Cx) {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            self.fault_because("too many nodes without waiting for the caller", cx);
            return;
        }
        match jump {
            Jump::Node(n) => self.enter(n, cx),
            Jump::Repeat => self.restart_collect(cx),
            Jump::Main => {
                self.menus.clear();
                let entry = self.flow.program.entry;
                self.enter(entry, cx);
            }
            Jump::Back => {
                if matches!(self.body(), Body::Menu(_)) && self.menus.last() == Some(&self.node) {
                    self.menus.pop();
                }
                match self.menus.last().copied() {
                    Some(m) => self.enter(m, cx),
                    None => {
                        let entry = self.flow.program.entry;
                        self.enter(entry, cx);
                    }
                }
            }
            Jump::Hangup => self.hang_up(cx),
        }
    }

    fn hang_up(&mut self, cx: &mut Cx) {
        self.cancel_all_timers(cx);
        if self.playing {
            self.phase = Phase::AwaitHangup;
        } else {
            cx.out.push_back(Command::Hangup);
            let by = self.hangup_by();
            self.finish(by, cx);
        }
    }

    fn enter(&mut self, node: NodeId, cx: &mut Cx) {
        self.node = node;
        self.failures = 0;
        self.digits = Digits::default();
        self.question = 0;
        cx.out.push_back(Command::Enter { node });
        let flow = Arc::clone(&self.flow);
        match &flow.program.nodes[node as usize].body {
            Body::Step { ops } => self.run_step(ops, cx),
            Body::Menu(_) => {
                if self.menus.last() != Some(&node) {
                    if self.menus.len() == MENU_STACK_MAX {
                        self.menus.remove(0);
                    }
                    self.menus.push(node);
                }
                self.start_when_line_free(cx);
            }
            Body::Survey(_) => {
                self.answers.clear();
                self.start_when_line_free(cx);
            }
            Body::Input(_) | Body::Transfer(_) | Body::Record(_) => self.start_when_line_free(cx),
            Body::Lookup(l) => {
                let mut args = Vec::with_capacity(l.args.len());
                let mut masked = 0u32;
                for (i, a) in l.args.iter().enumerate() {
                    match self.scope_eval(a, cx.now) {
                        Ok(v) => args.push(v),
                        Err(e) => return self.fault_because(&e.to_string(), cx),
                    }
                    if i < 32 && reads_masked(a, &flow) {
                        masked |= 1 << i;
                    }
                }
                self.query = self.query.wrapping_add(1);
                cx.out.push_back(Command::RunQuery {
                    id: self.query,
                    node,
                    args,
                    masked,
                });
                self.phase = Phase::Querying;
                self.set_timer(l.timeout_ms, cx);
            }
        }
    }

    fn run_step(&mut self, ops: &[Op], cx: &mut Cx) {
        for op in ops {
            match op {
                Op::Play { prompts } => self.play(prompts, cx),
                Op::Say { kind, value } => match self.scope_eval(value, cx.now) {
                    Ok(v) => {
                        let seq = self.next_seq();
                        cx.out.push_back(Command::Say {
                            kind: *kind,
                            value: v,
                            masked: reads_masked(value, &self.flow),
                            language: self.language,
                            seq,
                        });
                    }
                    Err(e) => return self.fault_because(&e.to_string(), cx),
                },
                Op::Set { var, value } => match self.scope_eval(value, cx.now) {
                    Ok(v) => {
                        if let Some(slot) = self.vars.get_mut(*var as usize) {
                            *slot = v;
                        }
                    }
                    Err(e) => return self.fault_because(&e.to_string(), cx),
                },
                Op::SetLanguage { language } => {
                    if let Some(i) = self
                        .flow
                        .program
                        .languages
                        .iter()
                        .position(|l| l == language)
                    {
                        self.language = i as u8;
                    }
                }
                Op::Pause { millis } => {
                    let seq = self.next_seq();
                    cx.out.push_back(Command::Silence {
                        millis: *millis,
                        seq,
                    });
                }
                Op::If { condition, target } => match self.holds(condition, cx) {
                    Some(true) => return self.follow(*target, Exit::If, cx),
                    Some(false) => {}
                    None => return,
                },
                Op::Goto { target } => return self.follow(*target, Exit::Goto, cx),
                Op::Hangup { .. } => {
                    cx.out.push_back(Command::Leave {
                        node: self.node,
                        by: Exit::Hangup,
                    });
                    return self.hang_up(cx);
                }
                // A task counts once per call (a caller who hears the bill again did not
                // complete a second inquiry).
                // Once per call: the recording runs to the end of the call.
                Op::RecordCall => {
                    if !self.recording_call {
                        self.recording_call = true;
                        cx.out.push_back(Command::RecordCall);
                    }
                }
                Op::Served { task } => {
                    if !self.served.contains(task) && self.served.len() < SERVED_MAX {
                        self.served.push(task.clone());
                        cx.out.push_back(Command::Served { task: task.clone() });
                    }
                }
            }
        }
    }

    /// Nodes that need the line start once earlier prompts have finished.
    fn start_when_line_free(&mut self, cx: &mut Cx) {
        if self.playing {
            self.phase = Phase::AwaitLine;
        } else {
            self.start_node(cx);
        }
    }

    fn start_node(&mut self, cx: &mut Cx) {
        let flow = Arc::clone(&self.flow);
        match &flow.program.nodes[self.node as usize].body {
            Body::Menu(_) | Body::Input(_) | Body::Survey(_) => self.start_collect(false, cx),
            Body::Transfer(t) => {
                let priority = match (&t.priority, &t.priority_guard) {
                    (None, _) => 0,
                    (Some(p), guard) => {
                        let applies = match guard {
                            None => true,
                            Some(g) => match self.holds(g, cx) {
                                Some(b) => b,
                                None => return,
                            },
                        };
                        if applies {
                            match self.scope_eval(p, cx.now) {
                                Ok(v) => {
                                    v.as_decimal().and_then(|d| d.trunc().to_i64()).unwrap_or(0)
                                }
                                Err(e) => return self.fault_because(&e.to_string(), cx),
                            }
                        } else {
                            0
                        }
                    }
                };
                let level = match &t.level {
                    None => 0,
                    Some((n, None)) => *n,
                    Some((n, Some(g))) => match self.holds(g, cx) {
                        Some(true) => *n,
                        Some(false) => 0,
                        None => return,
                    },
                };
                let mut attach = Vec::with_capacity(t.attach.len());
                for (_, e) in &t.attach {
                    match self.scope_eval(e, cx.now) {
                        Ok(v) => attach.push(v),
                        Err(e) => return self.fault_because(&e.to_string(), cx),
                    }
                }
                cx.out.push_back(Command::Transfer {
                    node: self.node,
                    priority,
                    level,
                    attach,
                });
                self.phase = Phase::Waiting;
                self.position = 1;
                self.play(&t.music, cx);
                if let Some((ms, _)) = t.max_wait {
                    self.wait_timer = Some(self.start_timer(ms, cx));
                }
                if let Some(ms) = t.announce_ms
                    && matches!(t.destination, Destination::Queue(_))
                {
                    self.announce_timer = Some(self.start_timer(ms, cx));
                }
                if let Some(c) = &t.callback
                    && matches!(t.destination, Destination::Queue(_))
                {
                    self.callback = CallbackState::Due;
                    self.callback_timer = Some(self.start_timer(c.after_ms, cx));
                }
            }
            Body::Record(r) => {
                self.play(&r.prompts, cx);
                if r.beep {
                    let seq = self.next_seq();
                    cx.out.push_back(Command::Beep { seq });
                }
                if self.playing {
                    self.phase = Phase::RecordPrompt;
                } else {
                    self.start_recording(cx);
                }
            }
            Body::Step { .. } | Body::Lookup(_) => {}
        }
    }

    fn start_recording(&mut self, cx: &mut Cx) {
        cx.out
            .push_back(Command::StartRecording { node: self.node });
        self.phase = Phase::Recording;
        self.recording_since = cx.now;
    }

    fn collect_settings(&self) -> Option<&Collect> {
        match self.body() {
            Body::Menu(m) => Some(&m.collect),
            Body::Input(i) => Some(&i.collect),
            Body::Survey(s) => Some(&s.collect),
            _ => None,
        }
    }

    /// The prompts a collecting node plays (a survey: the current question's).
    fn node_prompts(&self) -> Vec<PromptId> {
        match self.body() {
            Body::Survey(s) => s
                .questions
                .get(self.question as usize)
                .map(|q| vec![q.prompt])
                .unwrap_or_default(),
            other => match other {
                Body::Menu(m) => m.collect.prompts.clone(),
                Body::Input(i) => i.collect.prompts.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// Plays the node's prompts (after `retry` prompts) and waits for keys; type-ahead is
    /// taken as if pressed at the start.
    fn start_collect(&mut self, _retry: bool, cx: &mut Cx) {
        let Some(c) = self.collect_settings() else {
            return;
        };
        let barge_in = c.barge_in;
        let prompts = self.node_prompts();
        self.digits = Digits::default();
        self.play(&prompts, cx);
        if self.playing {
            self.phase = Phase::Prompting;
        } else {
            self.phase = Phase::Collecting;
            self.arm_first_key_timer(cx);
        }
        if !barge_in {
            self.typeahead.clear();
            return;
        }
        let node = self.node;
        while self.phase != Phase::Ended && self.node == node && self.is_collecting() {
            let Some(k) = self.typeahead.pop_front() else {
                break;
            };
            self.on_key(k, cx);
            if self.node != node {
                break;
            }
        }
    }

    fn is_collecting(&self) -> bool {
        matches!(self.phase, Phase::Prompting | Phase::Collecting)
    }

    fn arm_first_key_timer(&mut self, cx: &mut Cx) {
        let ms = self.collect_settings().map_or(5_000, |c| c.timeout_ms);
        self.set_timer(ms, cx);
    }

    /// `repeat`: play the node again without counting an attempt.
    fn restart_collect(&mut self, cx: &mut Cx) {
        cx.out.push_back(Command::Enter { node: self.node });
        self.cancel_timer(cx);
        self.stop_playback(cx);
        self.start_collect(false, cx);
    }

    // -----------------------------------------------------------------------------------------
    // Keys

    fn on_key(&mut self, c: char, cx: &mut Cx) {
        if !(c.is_ascii_digit() || c == '*' || c == '#') {
            return;
        }
        match self.phase {
            Phase::Prompting => {
                let barge_in = self.collect_settings().is_some_and(|s| s.barge_in);
                if barge_in {
                    self.stop_playback(cx);
                    self.phase = Phase::Collecting;
                    self.take_key(c, cx);
                }
            }
            Phase::Collecting => self.take_key(c, cx),
            Phase::Recording => {
                if let Body::Record(r) = self.body()
                    && r.terminator == Some(c)
                {
                    cx.out.push_back(Command::StopRecording);
                }
            }
            Phase::Waiting
                if matches!(
                    self.callback,
                    CallbackState::Offering | CallbackState::Listening
                ) =>
            {
                if c == '1' {
                    self.keep_callback(cx);
                } else {
                    // Another key: the caller waits on, with the hold music.
                    self.callback = CallbackState::Declined;
                    self.callback_timer = None;
                }
            }
            Phase::Connected | Phase::Ended => {}
            _ => self.typeahead.push(c),
        }
    }

    /// Key 1 after the callback offer: the place stays in the queue for a callback
    /// (`KeepCallback` to the driver, not `CancelTransfer`), `callback_confirm` plays and the
    /// flow goes to the clause's node.
    fn keep_callback(&mut self, cx: &mut Cx) {
        let flow = Arc::clone(&self.flow);
        let Body::Transfer(t) = &flow.program.nodes[self.node as usize].body else {
            return;
        };
        let (Some(c), Destination::Queue(queue)) = (&t.callback, &t.destination) else {
            return;
        };
        self.cancel_all_timers(cx);
        self.stop_playback(cx);
        self.play(&[c.confirm], cx);
        cx.out.push_back(Command::KeepCallback {
            node: self.node,
            queue: queue.clone(),
            phone: self.info.caller.clone(),
        });
        self.kept_callback = true;
        self.typeahead.clear();
        self.follow(c.target, Exit::Callback, cx);
    }

    fn take_key(&mut self, c: char, cx: &mut Cx) {
        self.cancel_timer(cx);
        let flow = Arc::clone(&self.flow);
        match &flow.program.nodes[self.node as usize].body {
            Body::Menu(m) => {
                for k in m.keys.iter().filter(|k| k.key == c) {
                    let ok = match &k.guard {
                        None => true,
                        Some(g) => match self.holds(g, cx) {
                            Some(b) => b,
                            None => return,
                        },
                    };
                    if ok {
                        return self.follow(k.target, Exit::Key(c), cx);
                    }
                }
                self.failed_attempt(false, cx);
            }
            Body::Input(i) => {
                if Some(c) == i.terminator {
                    return self.finish_input(cx);
                }
                if self.digits.len as usize >= self.digits.buf.len() {
                    return self.finish_input(cx);
                }
                self.digits.buf[self.digits.len as usize] = c as u8;
                self.digits.len += 1;
                if u32::from(self.digits.len) >= i.max_digits {
                    self.finish_input(cx);
                } else {
                    self.set_timer(i.collect.inter_digit_ms, cx);
                }
            }
            Body::Survey(s) => {
                let Some(q) = s.questions.get(self.question as usize) else {
                    return;
                };
                let answer = match &q.answers {
                    Answers::Scale { min, max } => c
                        .to_digit(10)
                        .filter(|d| (u32::from(*min)..=u32::from(*max)).contains(d))
                        .map(|d| Value::Number(d.into())),
                    Answers::Choices { choices } => choices
                        .iter()
                        .find(|(k, _)| *k == c)
                        .map(|(_, label)| Value::Text(label.clone())),
                };
                match answer {
                    Some(a) => self.answer(a, cx),
                    None => self.failed_attempt(false, cx),
                }
            }
            _ => {}
        }
    }

    fn finish_input(&mut self, cx: &mut Cx) {
        self.cancel_timer(cx);
        let flow = Arc::clone(&self.flow);
        let Body::Input(i) = &flow.program.nodes[self.node as usize].body else {
            return;
        };
        let n = u32::from(self.digits.len);
        // Only the terminator ends an input without digits: the caller pressed a key, so it
        // is a no-match (too few digits), not a no-input.
        if n < i.min_digits.max(1) {
            return self.failed_attempt(false, cx);
        }
        let value = Value::Text(self.digits.as_str().to_string());
        let slot = i.into as usize;
        let old = self.vars.get(slot).cloned().unwrap_or_default();
        if let Some(v) = self.vars.get_mut(slot) {
            *v = value;
        }
        if let Some(valid) = &i.valid {
            match self.holds(valid, cx) {
                Some(true) => {}
                Some(false) => {
                    if let Some(v) = self.vars.get_mut(slot) {
                        *v = old;
                    }
                    return self.failed_attempt(false, cx);
                }
                None => return,
            }
        }
        self.follow(i.next, Exit::Next, cx);
    }

    /// A survey question was answered (or given up: `Null`).
    fn answer(&mut self, a: Value, cx: &mut Cx) {
        self.answers.push(a);
        self.question += 1;
        self.failures = 0;
        let flow = Arc::clone(&self.flow);
        let Body::Survey(s) = &flow.program.nodes[self.node as usize].body else {
            return;
        };
        if (self.question as usize) < s.questions.len() {
            self.start_collect(false, cx);
        } else {
            cx.out.push_back(Command::SaveSurvey {
                node: self.node,
                answers: std::mem::take(&mut self.answers),
            });
            self.follow(s.next, Exit::Next, cx);
        }
    }

    /// No input (`no_input`) or a wrong entry: retry with the retry prompt while attempts
    /// remain, else leave by `attempts`.
    fn failed_attempt(&mut self, no_input: bool, cx: &mut Cx) {
        self.failures += 1;
        let Some(c) = self.collect_settings() else {
            return;
        };
        let (attempts, target) = (c.attempts, c.attempts_target);
        let retry: Vec<PromptId> = if no_input {
            c.no_input.clone()
        } else {
            c.no_match.clone()
        };
        self.stop_playback(cx);
        if self.failures >= attempts {
            if matches!(self.body(), Body::Survey(_)) {
                return self.answer(Value::Null, cx);
            }
            return self.follow(target, Exit::Attempts, cx);
        }
        self.play(&retry, cx);
        self.start_collect(true, cx);
    }

    // -----------------------------------------------------------------------------------------
    // Other events

    fn on_drained(&mut self, cx: &mut Cx) {
        match self.phase {
            Phase::AwaitLine => self.start_node(cx),
            Phase::AwaitHangup => {
                cx.out.push_back(Command::Hangup);
                let by = self.hangup_by();
                self.finish(by, cx);
            }
            Phase::Prompting => {
                self.phase = Phase::Collecting;
                self.arm_first_key_timer(cx);
            }
            Phase::RecordPrompt => self.start_recording(cx),
            Phase::Waiting => {
                if self.callback == CallbackState::Offering {
                    // The offer has played: key 1 is still taken for a while.
                    self.callback = CallbackState::Listening;
                    self.callback_timer = Some(self.start_timer(CALLBACK_ANSWER_MS, cx));
                }
                // Hold music loops.
                if let Body::Transfer(t) = self.body() {
                    let music = t.music.clone();
                    self.play(&music, cx);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, id: u32, cx: &mut Cx) {
        if self.timer.is_some_and(|(t, _)| t == id) {
            self.timer = None;
            match self.phase {
                Phase::Collecting => {
                    if self.digits.len > 0 {
                        self.finish_input(cx);
                    } else {
                        self.failed_attempt(true, cx);
                    }
                }
                Phase::Querying => {
                    self.query = self.query.wrapping_add(1); // a late answer is ignored
                    self.on_query(QueryResult::Error("timeout".into()), cx);
                }
                _ => {}
            }
        } else if self.wait_timer.is_some_and(|(t, _)| t == id) {
            self.wait_timer = None;
            if self.phase == Phase::Waiting
                && let Body::Transfer(t) = self.body()
                && let Some((_, edge)) = t.max_wait
            {
                cx.out.push_back(Command::CancelTransfer);
                self.cancel_all_timers(cx);
                self.stop_playback(cx);
                self.follow(edge, Exit::MaxWait, cx);
            }
        } else if self.callback_timer.is_some_and(|(t, _)| t == id) {
            self.callback_timer = None;
            if self.phase != Phase::Waiting {
                return;
            }
            match self.callback {
                CallbackState::Due => {
                    if let Body::Transfer(t) = self.body()
                        && let Some(c) = t.callback.as_deref().copied()
                    {
                        self.stop_playback(cx);
                        self.callback = CallbackState::Offering;
                        self.play(&[c.offer], cx);
                    }
                }
                CallbackState::Listening => self.callback = CallbackState::Declined,
                _ => {}
            }
        } else if self.announce_timer.is_some_and(|(t, _)| t == id) {
            self.announce_timer = None;
            if self.phase == Phase::Waiting
                && self.callback == CallbackState::Offering
                && let Body::Transfer(t) = self.body()
                && let Some(ms) = t.announce_ms
            {
                // The callback offer is not cut short; the position comes next time.
                self.announce_timer = Some(self.start_timer(ms, cx));
            } else if self.phase == Phase::Waiting
                && let Body::Transfer(t) = self.body()
                && let Some(ms) = t.announce_ms
            {
                let music = t.music.clone();
                self.stop_playback(cx);
                let seq = self.next_seq();
                cx.out.push_back(Command::Announce {
                    position: self.position,
                    language: self.language,
                    seq,
                });
                self.play(&music, cx);
                self.announce_timer = Some(self.start_timer(ms, cx));
            }
        }
    }

    fn on_query(&mut self, result: QueryResult, cx: &mut Cx) {
        let flow = Arc::clone(&self.flow);
        let Body::Lookup(l) = &flow.program.nodes[self.node as usize].body else {
            return;
        };
        match result {
            QueryResult::Found(row) => {
                if let Some(v) = l.into
                    && let Some(slot) = self.vars.get_mut(v as usize)
                {
                    *slot = Value::Row(row.into());
                }
                self.follow(l.found, Exit::Found, cx);
            }
            QueryResult::Missing => self.follow(l.missing, Exit::Missing, cx),
            QueryResult::Error(_) => match l.error {
                Some(e) => self.follow(e, Exit::Error, cx),
                None => self.fault_because("the lookup failed and it has no `error` path", cx),
            },
        }
    }

    fn on_transfer(&mut self, update: TransferUpdate, cx: &mut Cx) {
        let flow = Arc::clone(&self.flow);
        let Body::Transfer(t) = &flow.program.nodes[self.node as usize].body else {
            return;
        };
        match (self.phase, update) {
            (Phase::Waiting, TransferUpdate::Position(n)) => self.position = n.max(1),
            (Phase::Waiting, TransferUpdate::Answered { .. }) => {
                self.cancel_all_timers(cx);
                self.stop_playback(cx);
                // Keys pressed on hold were meant for the queue, not for whatever follows the
                // conversation (an `after` survey).
                self.typeahead.clear();
                self.transferred = true;
                self.failed = false;
                self.phase = Phase::Connected;
            }
            (Phase::Waiting, TransferUpdate::Busy)
                if matches!(t.destination, Destination::Queue(_)) => {}
            (Phase::Waiting, TransferUpdate::Busy | TransferUpdate::NoAgents) => {
                self.cancel_all_timers(cx);
                self.stop_playback(cx);
                match t.no_agents {
                    Some(e) => self.follow(e, Exit::NoAgents, cx),
                    None => match t.max_wait {
                        Some((_, e)) => self.follow(e, Exit::NoAgents, cx),
                        None => self.fault_because("no agent and no `no_agents` path", cx),
                    },
                }
            }
            (Phase::Connected, TransferUpdate::AgentHungUp) => match t.after {
                Some(e) => self.follow(e, Exit::After, cx),
                None => {
                    cx.out.push_back(Command::Leave {
                        node: self.node,
                        by: Exit::Hangup,
                    });
                    cx.out.push_back(Command::Hangup);
                    self.finish(EndedBy::Agent, cx);
                }
            },
            _ => {}
        }
    }

    fn leave_next(&mut self, cx: &mut Cx) {
        if let Body::Record(r) = self.body() {
            let next = r.next;
            self.follow(next, Exit::Next, cx);
        }
    }
}

/// The time and output of one input or timeout.
struct Cx<'a> {
    now: Millis,
    out: &'a mut VecDeque<Command>,
}

impl Machine for Call {
    type Input = Event;
    type Output = Command;

    fn handle_input(&mut self, event: Event, now: Millis) {
        self.handle_event(event, now);
    }

    /// The earliest of the call's timers: the collecting node's (first key, next digit), the
    /// lookup's timeout, the queue's `max_wait` and its position announcements.
    fn poll_timeout(&self) -> Option<Millis> {
        if self.phase == Phase::Ended {
            return None;
        }
        self.timers().map(|(_, at)| at).min()
    }

    /// Fires every timer due at `now`, earliest first (timers due at the same time in the
    /// order they were started); a timer that an earlier one cancelled does not fire.
    fn handle_timeout(&mut self, now: Millis) {
        while self.phase != Phase::Ended {
            let Some((id, _)) = self
                .timers()
                .filter(|&(_, at)| at <= now)
                .min_by_key(|&(id, at)| (at, id))
            else {
                break;
            };
            self.hops = 0;
            let mut out = std::mem::take(&mut self.out);
            let mut cx = Cx { now, out: &mut out };
            self.on_timer(id, &mut cx);
            self.out = out;
        }
    }

    fn poll_output(&mut self) -> Option<Command> {
        self.out.pop_front()
    }
}

/// Whether an expression reads a masked variable.
pub fn reads_masked(e: &Expr, flow: &Flow) -> bool {
    let mut masked = false;
    e.walk(&mut |x| {
        if let ExprKind::Var { var } | ExprKind::Field { var, .. } = x.kind
            && flow
                .program
                .vars
                .get(var as usize)
                .is_some_and(|v| v.masked)
        {
            masked = true;
        }
    });
    masked
}
