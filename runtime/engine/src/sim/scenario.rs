//! Running QA scenarios: a scripted conversation with a flow on the virtual clock, checked
//! against the transcript and the call's state, line by line.

use super::{DataSource, Entry, LookupFailure, PromptBook, QueryError, Simulation};
use crate::contact::{Given, contact_row};
use crate::value::Value;
use crate::{CallInfo, Channel, EndedBy, Exit, Flow, Millis, Outcome, QueryResult, TransferUpdate};
use chrono::{NaiveDate, NaiveTime};
use indexmap::IndexMap;
use ivr_compiler::config::{FieldType, QueryDef};
use ivr_compiler::program::{Destination, NodeId};
use ivr_dsl::ast::SayKind;
use ivr_dsl::scenario_ast::{
    AgentAction, DateTimeLit, Expectation, Literal, MockResult, Scenario, StepKind,
};
use ivr_dsl::span::line_col;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The virtual clock's start when a scenario has no `at`: Monday 2026-11-23 10:00.
pub const DEFAULT_START: DateTimeLit = DateTimeLit {
    year: 2026,
    month: 11,
    day: 23,
    hour: 10,
    minute: 0,
    second: 0,
};

/// The most virtual time an expectation may wait for the flow to do something.
const WAIT_LIMIT_MS: Millis = 24 * 3_600_000;

/// A flow ready for scenarios: the engine's flow and its prompt texts and durations.
#[derive(Clone)]
pub struct SimFlow {
    /// What the engine runs.
    pub flow: Arc<Flow>,
    /// Prompt texts and durations.
    pub book: Arc<PromptBook>,
    /// The dialled number used when a scenario gives none (the flow's route).
    pub called: String,
}

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// Its title.
    pub name: String,
    /// The line of its `scenario` keyword.
    pub line: usize,
    /// The flow it ran (empty when unknown).
    pub flow: String,
    /// What failed, with the line, the expectation and the transcript so far.
    pub failure: Option<ScenarioError>,
    /// The transcript, one entry per line.
    pub transcript: Vec<String>,
    /// Nodes entered and how they were left.
    pub visits: Vec<(NodeId, Option<Exit>)>,
    /// How the call ended, if it did.
    pub outcome: Option<Outcome>,
    /// Lookups that took `error`, with their reasons.
    pub lookup_failures: Vec<LookupFailure>,
    /// Who ended it, if it ended.
    pub ended_by: Option<EndedBy>,
    /// The self-service tasks it completed (`served`), in order.
    pub served: Vec<String>,
}

impl ScenarioResult {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Why a scenario failed. Each message starts with `FILE:LINE: `, but for
/// [`ScenarioError::Failed`], which names the scenario on a line of its own first.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScenarioError {
    /// The scenario has no `flow` line.
    #[error("{path}:{line}: the scenario has no `flow` line")]
    NoFlow {
        /// The scenario file.
        path: String,
        /// The line of its `scenario` keyword.
        line: usize,
    },
    /// The `flow` line names no flow that runs.
    #[error("{path}:{line}: there is no flow `{flow}` (the flows are {})", .flows.join(", "))]
    UnknownFlow {
        /// The scenario file.
        path: String,
        /// The line of `flow`.
        line: usize,
        /// The flow named.
        flow: String,
        /// The flows there are.
        flows: Vec<String>,
    },
    /// A `mock` names a query the data catalog does not have.
    #[error("{path}:{line}: `mock {query}`: there is no such query in the data catalog")]
    UnknownMockQuery {
        /// The scenario file.
        path: String,
        /// The line of the `mock`.
        line: usize,
        /// The query named.
        query: String,
    },
    /// A `mock ... -> found { ... }` sets a field the query does not return.
    #[error(
        "{path}:{line}: `mock {query}`: the query returns no field `{field}` (its fields are {})",
        .fields.join(", ")
    )]
    UnknownMockField {
        /// The scenario file.
        path: String,
        /// The line of the `mock`.
        line: usize,
        /// The query.
        query: String,
        /// The field named.
        field: String,
        /// The query's fields.
        fields: Vec<String>,
    },
    /// The `contact` line does not fit the flow: no campaign runs it, or a field or value
    /// does not fit its list query.
    #[error("{path}:{line}: `contact`: {problem}")]
    BadContact {
        /// The scenario file.
        path: String,
        /// The line of `contact`.
        line: usize,
        /// What does not fit.
        problem: crate::contact::ContactError,
    },
    /// The `at` date is not in the calendar (`2026-02-30`).
    #[error("{path}:{line}: the `at` date does not exist")]
    NoSuchDate {
        /// The scenario file.
        path: String,
        /// The line of its `scenario` keyword.
        line: usize,
    },
    /// A step or an expectation was not met.
    #[error("scenario \"{scenario}\"\n{mismatch}")]
    Failed {
        /// The scenario's title.
        scenario: String,
        /// What was not met.
        mismatch: Box<Mismatch>,
    },
    /// The scenario has syntax errors, so it was not run (`ivr test`).
    #[error("{path}:{line}: the scenario has syntax errors (shown above): not run")]
    SyntaxErrors {
        /// The scenario file.
        path: String,
        /// The line of its `scenario` keyword.
        line: usize,
    },
    /// The scenario's flow has errors, so it cannot run (`ivr test`).
    #[error(
        "{path}:{line}: the flow `{flow}` has errors (shown above, as `ivr check` gives them): the scenario cannot run"
    )]
    BrokenFlow {
        /// The scenario file.
        path: String,
        /// The line of `flow`.
        line: usize,
        /// The flow.
        flow: String,
    },
}

/// A step or an expectation of a scenario that the call did not meet: where, what was expected,
/// what happened instead, why the call ended if the engine ended it, and the transcript so far.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{path}:{line}: expected {expected}\n  {unmet}\n{}{transcript}",
    .fault.as_deref().map(|why| format!("  (the call ended: {why})\n")).unwrap_or_default()
)]
pub struct Mismatch {
    /// The scenario file.
    pub path: String,
    /// The line of the step.
    pub line: usize,
    /// The expectation, as written (`say money 99.99`), or what the step needed.
    pub expected: String,
    /// What happened instead.
    pub unmet: Unmet,
    /// Why the engine ended the call (a fault), if it did.
    pub fault: Option<String>,
    /// The transcript so far.
    pub transcript: Transcript,
}

/// What happened instead of what a scenario expected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unmet {
    /// The call ended before the expected entry.
    #[error("but the call had ended")]
    Ended,
    /// The flow waits for the caller or an agent.
    #[error("but the flow did nothing more: it waits for the caller or an agent")]
    Idle,
    /// Another transcript entry came.
    #[error("but got: {0}")]
    Got(Entry),
    /// A query could not be run at all.
    #[error("{0}")]
    Query(QueryError),
    /// `agent ...` while no transfer is in progress.
    #[error("but the flow is not transferring the caller")]
    NotTransferring,
    /// `node NAME`: the call is elsewhere.
    #[error("but the call is at node {0}")]
    AtNode(String),
    /// `node NAME`: the call is elsewhere, and the caller hears another node's prompts.
    #[error("but the call is at node {engine} (the caller hears {heard})")]
    Hears {
        /// The engine's node.
        engine: String,
        /// The node whose audio plays.
        heard: String,
    },
    /// `var PATH == VALUE`: another value (`***` when masked).
    #[error("but it is {0}")]
    VarIs(String),
    /// `var PATH == VALUE`: no such variable.
    #[error("but the call has no variable `{0}`")]
    NoVariable(String),
    /// `outcome NAME` with a name that is no outcome.
    #[error(
        "but that is not an outcome: transferred, callback, abandoned, message, self_service, failed or not_served"
    )]
    NotAnOutcome,
    /// `outcome NAME`: the call ended otherwise.
    #[error("but the call ended as {}", .0.as_str())]
    EndedAs(Outcome),
    /// `ended_by NAME` with a name that is none of caller, flow, agent, system.
    #[error("but that is not who can end a call: caller, flow, agent or system")]
    NotAnEnder,
    /// `ended_by NAME`: someone else ended the call.
    #[error("but the call was ended by the {}", .0.as_str())]
    EndedByOther(EndedBy),
    /// `outcome NAME`: the call goes on.
    #[error("but the call has not ended")]
    NotEnded,
    /// The scenario ended but the flow went on.
    #[error("but the flow went on: {0} (no expectation matches it; use `...` to skip)")]
    WentOn(Entry),
}

/// A call's transcript at a failure: the entries matched so far and those after them (marked
/// `>`), shown with the texts of their prompts.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// Every entry.
    pub entries: Vec<Entry>,
    /// How many were matched.
    pub cursor: usize,
    /// Lookups that took `error`, shown among the entries with their reasons.
    pub lookup_failures: Vec<LookupFailure>,
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  transcript so far:")?;
        if self.entries.is_empty() {
            writeln!(f, "    (nothing)")?;
        }
        let failures_at = |f: &mut fmt::Formatter<'_>, i: usize, last: bool| -> fmt::Result {
            for l in &self.lookup_failures {
                if l.entry == i || (last && l.entry > i) {
                    writeln!(f, "   ! {l}")?;
                }
            }
            Ok(())
        };
        for (i, e) in self.entries.iter().enumerate() {
            failures_at(f, i, false)?;
            let mark = if i < self.cursor { " " } else { ">" };
            match e {
                Entry::Play { text, .. } | Entry::Say { text, .. } if !text.is_empty() => {
                    writeln!(f, "   {mark} {e}   「{text}」")?
                }
                _ => writeln!(f, "   {mark} {e}")?,
            }
        }
        failures_at(f, self.entries.len(), true)
    }
}

/// Mocked queries in front of another data source.
struct Mocks {
    mocks: HashMap<String, MockResult>,
    fallback: Box<dyn DataSource>,
}

impl DataSource for Mocks {
    fn query(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
    ) -> Result<QueryResult, QueryError> {
        self.query_timed(name, def, args, None)
    }

    fn query_timed(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
        timeout_ms: Option<u64>,
    ) -> Result<QueryResult, QueryError> {
        match self.mocks.get(name) {
            None => self.fallback.query_timed(name, def, args, timeout_ms),
            Some(MockResult::Missing) => Ok(QueryResult::Missing),
            Some(MockResult::Error) => Ok(QueryResult::Error("mocked error".into())),
            Some(MockResult::Found { fields }) => {
                let mut row = vec![Value::Null; def.fields.len()];
                for (name, lit) in fields {
                    if let Some((i, _, ty)) = def.fields.get_full(&name.node) {
                        row[i] = convert(&lit.node, *ty);
                    }
                }
                Ok(QueryResult::Found(row))
            }
        }
    }
}

/// A mocked literal as a value of a catalog field type.
fn convert(lit: &Literal, ty: FieldType) -> Value {
    match (ty, lit) {
        (FieldType::Number, Literal::Number(d)) => Value::Number(*d),
        (FieldType::Money, Literal::Number(d)) => Value::Money(*d),
        (FieldType::Number, Literal::Text(t)) => {
            t.parse().map_or(Value::Text(t.clone()), Value::Number)
        }
        (FieldType::Money, Literal::Text(t)) => {
            t.parse().map_or(Value::Text(t.clone()), Value::Money)
        }
        (FieldType::Bool, Literal::Bool(b)) => Value::Bool(*b),
        (FieldType::Date, Literal::Text(t)) => {
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map_or(Value::Text(t.clone()), Value::Date)
        }
        (FieldType::Time, Literal::Text(t)) => NaiveTime::parse_from_str(t, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
            .map_or(Value::Text(t.clone()), Value::Time),
        (FieldType::Text, Literal::Number(d)) => Value::Text(d.to_string()),
        (_, Literal::Text(t)) => Value::Text(t.clone()),
        (_, Literal::Number(d)) => Value::Number(*d),
        (_, Literal::Bool(b)) => Value::Bool(*b),
        (_, Literal::Duration(ms)) => Value::Duration(*ms),
        (_, Literal::Null) => Value::Null,
    }
}

/// Whether a value is what a scenario literal says (`58.3` matches `58.30`).
pub fn literal_matches(lit: &Literal, value: &Value) -> bool {
    match lit {
        Literal::Number(d) => match value.as_decimal() {
            Some(v) => v == *d,
            None => value.to_string() == d.to_string(),
        },
        Literal::Bool(b) => value.as_bool() == Some(*b),
        Literal::Text(t) => match value {
            Value::Text(v) => v == t,
            other => match (t.parse::<Decimal>(), other.as_decimal()) {
                (Ok(a), Some(b)) => a == b,
                _ => other.to_string() == *t,
            },
        },
        Literal::Duration(ms) => *value == Value::Duration(*ms),
        Literal::Null => *value == Value::Null,
    }
}

fn lit_text(l: &Literal) -> String {
    match l {
        Literal::Text(t) => format!("\"{t}\""),
        Literal::Number(d) => d.to_string(),
        Literal::Bool(b) => b.to_string(),
        Literal::Duration(ms) => format!("{ms}ms"),
        Literal::Null => "null".into(),
    }
}

fn describe(e: &Expectation) -> String {
    match e {
        Expectation::Play { prompt } => format!("play {}", prompt.node),
        Expectation::Say { kind, value } => format!("say {} {}", kind.node, lit_text(&value.node)),
        Expectation::Node { name } => format!("node {}", name.node),
        Expectation::Var { path, value } => {
            format!("var {} == {}", path.node, lit_text(&value.node))
        }
        Expectation::TransferQueue {
            queue,
            priority,
            level,
        } => {
            let mut text = format!("transfer queue {}", queue.node);
            if let Some(p) = priority {
                text.push_str(&format!(" priority {}", p.node));
            }
            if let Some(l) = level {
                text.push_str(&format!(" level {}", l.node));
            }
            text
        }
        Expectation::TransferTo { uri } => format!("transfer to \"{}\"", uri.node),
        Expectation::Record { name } => format!("record {}", name.node),
        Expectation::Saved { table, fields } => {
            let f: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}: {}", k.node, lit_text(&v.node)))
                .collect();
            format!("saved {} {{ {} }}", table.node, f.join(", "))
        }
        Expectation::Hangup => "hangup".into(),
        Expectation::Callback { queue } => format!("callback queue {}", queue.node),
        Expectation::Served { task } => format!("served {}", task.node),
        Expectation::Outcome { outcome } => format!("outcome {}", outcome.node),
        Expectation::EndedBy { by } => format!("ended_by {}", by.node),
    }
}

/// Whether a transcript entry satisfies a transcript expectation.
fn entry_matches(e: &Expectation, entry: &Entry) -> bool {
    match (e, entry) {
        (Expectation::Play { prompt }, Entry::Play { prompt: p, .. }) => prompt.node == *p,
        (
            Expectation::Say { kind, value },
            Entry::Say {
                kind: k,
                value: v,
                masked,
                ..
            },
        ) => {
            SayKind::from_keyword(&kind.node) == Some(*k)
                && (literal_matches(&value.node, &super::transcript::spoken(*k, v))
                    || (*masked && value.node == Literal::Text("***".into())))
        }
        (
            Expectation::TransferQueue {
                queue,
                priority,
                level,
            },
            Entry::Transfer {
                destination: Destination::Queue(q),
                priority: p,
                level: l,
            },
        ) => {
            queue.node == *q
                && priority
                    .as_ref()
                    .is_none_or(|x| x.node == Decimal::from(*p))
                && level.as_ref().is_none_or(|x| x.node == u32::from(*l))
        }
        (
            Expectation::TransferTo { uri },
            Entry::Transfer {
                destination: Destination::To(u),
                ..
            },
        ) => uri.node == *u,
        (Expectation::Record { name }, Entry::RecordCall) => name.node == "call",
        (Expectation::Record { name }, Entry::Record { node, table }) => {
            name.node == *node
                || name.node == *table
                || node.rsplit('.').next() == Some(name.node.as_str())
        }
        (
            Expectation::Saved { table, fields },
            Entry::Saved {
                table: t,
                fields: got,
            },
        ) => {
            table.node == *t
                && fields.iter().all(|(k, v)| {
                    got.iter()
                        .any(|(gk, gv)| *gk == k.node && literal_matches(&v.node, gv))
                })
        }
        (Expectation::Hangup, Entry::Hangup) => true,
        (Expectation::Callback { queue }, Entry::Callback { queue: q }) => queue.node == *q,
        (Expectation::Served { task }, Entry::Served { task: t }) => task.node == *t,
        _ => false,
    }
}

fn is_transcript_expectation(e: &Expectation) -> bool {
    !matches!(
        e,
        Expectation::Node { .. }
            | Expectation::Var { .. }
            | Expectation::Outcome { .. }
            | Expectation::EndedBy { .. }
    )
}

/// The engine time of a scenario date and time.
pub fn millis_of(at: &DateTimeLit) -> Option<Millis> {
    NaiveDate::from_ymd_opt(at.year, at.month, at.day)
        .and_then(|d| d.and_hms_opt(at.hour, at.minute, at.second))
        .map(|t| t.and_utc().timestamp_millis())
}

struct Runner<'a> {
    sim: Simulation,
    path: &'a str,
    source: &'a str,
    cursor: usize,
    skipping: bool,
}

impl Runner<'_> {
    fn line(&self, span: ivr_dsl::Span) -> usize {
        line_col(self.source, span.start as usize).0
    }

    fn fail(&self, line: usize, expected: impl Into<String>, unmet: Unmet) -> Box<Mismatch> {
        Box::new(Mismatch {
            path: self.path.to_string(),
            line,
            expected: expected.into(),
            unmet,
            fault: self.sim.call().fault_reason().map(str::to_string),
            transcript: Transcript {
                entries: self.sim.transcript().to_vec(),
                cursor: self.cursor,
                lookup_failures: self.sim.lookup_failures().to_vec(),
            },
        })
    }

    /// Moves the virtual clock forward until the flow adds a transcript entry (or ends, or
    /// does nothing more within the limit). True when an entry is available.
    fn await_entry(&mut self) -> bool {
        let limit = self.sim.now() + WAIT_LIMIT_MS;
        while self.cursor >= self.sim.transcript().len() {
            if self.sim.error.is_some() {
                return false;
            }
            match self.sim.next_event_time() {
                Some(t) if t <= limit => {
                    if !self.sim.step() {
                        return self.cursor < self.sim.transcript().len();
                    }
                }
                _ => return false,
            }
        }
        true
    }

    fn expect_entry(&mut self, e: &Expectation, line: usize) -> Result<(), Box<Mismatch>> {
        loop {
            if !self.await_entry() {
                if let Some(err) = &self.sim.error {
                    return Err(self.fail(line, describe(e), Unmet::Query(err.clone())));
                }
                let unmet = if self.sim.call().is_ended() {
                    Unmet::Ended
                } else {
                    Unmet::Idle
                };
                return Err(self.fail(line, describe(e), unmet));
            }
            let entry = &self.sim.transcript()[self.cursor];
            if entry_matches(e, entry) {
                self.cursor += 1;
                self.skipping = false;
                return Ok(());
            }
            if self.skipping {
                self.cursor += 1;
                continue;
            }
            let got = Unmet::Got(entry.clone());
            return Err(self.fail(line, describe(e), got));
        }
    }

    /// Lets the call run until it ends (within the wait limit).
    fn run_to_end(&mut self) {
        let limit = self.sim.now() + WAIT_LIMIT_MS;
        while !self.sim.call().is_ended() {
            match self.sim.next_event_time() {
                Some(t) if t <= limit => {
                    self.sim.step();
                }
                _ => break,
            }
        }
    }

    fn check_error(&self, line: usize, what: impl Into<String>) -> Result<(), Box<Mismatch>> {
        match &self.sim.error {
            Some(err) => Err(self.fail(line, what, Unmet::Query(err.clone()))),
            None => Ok(()),
        }
    }
}

/// Runs one scenario against the flows it may name.
pub fn run(
    scenario: &Scenario,
    path: &str,
    source: &str,
    flows: &IndexMap<String, SimFlow>,
    data: Box<dyn DataSource>,
) -> ScenarioResult {
    let line = line_col(source, scenario.span.start as usize).0;
    let mut result = ScenarioResult {
        name: scenario.name.node.clone(),
        line,
        flow: String::new(),
        failure: None,
        transcript: Vec::new(),
        visits: Vec::new(),
        outcome: None,
        lookup_failures: Vec::new(),
        ended_by: None,
        served: Vec::new(),
    };
    let Some(flow_name) = &scenario.flow else {
        result.failure = Some(ScenarioError::NoFlow {
            path: path.to_string(),
            line,
        });
        return result;
    };
    let Some(sim_flow) = flows.get(&flow_name.node) else {
        result.failure = Some(ScenarioError::UnknownFlow {
            path: path.to_string(),
            line: line_col(source, flow_name.span.start as usize).0,
            flow: flow_name.node.clone(),
            flows: flows.keys().cloned().collect(),
        });
        return result;
    };
    result.flow = flow_name.node.clone();
    let mocks: HashMap<String, MockResult> = scenario
        .mocks
        .iter()
        .map(|m| (m.query.node.clone(), m.result.clone()))
        .collect();
    // Mocks must name catalog queries and fields.
    for m in &scenario.mocks {
        let mline = line_col(source, m.span.start as usize).0;
        match sim_flow.flow.queries.get(&m.query.node) {
            None => {
                result.failure = Some(ScenarioError::UnknownMockQuery {
                    path: path.to_string(),
                    line: mline,
                    query: m.query.node.clone(),
                });
                return result;
            }
            Some(def) => {
                if let MockResult::Found { fields } = &m.result {
                    for (f, _) in fields {
                        if !def.fields.contains_key(&f.node) {
                            result.failure = Some(ScenarioError::UnknownMockField {
                                path: path.to_string(),
                                line: mline,
                                query: m.query.node.clone(),
                                field: f.node.clone(),
                                fields: def.fields.keys().cloned().collect(),
                            });
                            return result;
                        }
                    }
                }
            }
        }
    }
    let start = scenario
        .at
        .as_ref()
        .map(|a| a.node)
        .unwrap_or(DEFAULT_START);
    let Some(start) = millis_of(&start) else {
        result.failure = Some(ScenarioError::NoSuchDate {
            path: path.to_string(),
            line,
        });
        return result;
    };
    // A campaign's flow: the list row, and the dialled number as `caller` unless given.
    let contact = match &scenario.contact {
        None => Vec::new(),
        Some(c) => {
            let given = c
                .node
                .iter()
                .map(|(name, value)| (name.node.as_str(), Given::Literal(&value.node)));
            match contact_row(&sim_flow.flow, given) {
                Ok(row) => row,
                Err(problem) => {
                    result.failure = Some(ScenarioError::BadContact {
                        path: path.to_string(),
                        line: line_col(source, c.span.start as usize).0,
                        problem,
                    });
                    return result;
                }
            }
        }
    };
    let dialled = contact.iter().find_map(|(name, value)| match value {
        Value::Text(phone) if name == "phone" => Some(phone.clone()),
        _ => None,
    });
    let info = CallInfo {
        id: format!("sim-{}", line),
        caller: scenario
            .caller
            .as_ref()
            .map(|c| c.node.clone())
            .or(dialled)
            .unwrap_or_default(),
        called: scenario
            .called
            .as_ref()
            .map_or_else(|| sim_flow.called.clone(), |c| c.node.clone()),
        channel: Channel::Sim,
        contact,
    };
    let sim = Simulation::new(
        Arc::clone(&sim_flow.flow),
        info,
        start,
        Arc::clone(&sim_flow.book),
        Box::new(Mocks {
            mocks,
            fallback: data,
        }),
    );
    let mut r = Runner {
        sim,
        path,
        source,
        cursor: 0,
        skipping: false,
    };
    r.sim.start();
    let failure = run_steps(&mut r, scenario);
    result.failure = failure;
    result.transcript = r.sim.transcript().iter().map(|e| e.to_string()).collect();
    result.visits = r.sim.visits.clone();
    result.outcome = r.sim.call().outcome();
    result.lookup_failures = r.sim.lookup_failures().to_vec();
    result.ended_by = r.sim.call().ended_by();
    result.served = r.sim.call().served().to_vec();
    result
}

fn run_steps(r: &mut Runner, scenario: &Scenario) -> Option<ScenarioError> {
    let failed = |mismatch| ScenarioError::Failed {
        scenario: scenario.name.node.clone(),
        mismatch,
    };
    for step in &scenario.steps {
        let line = r.line(step.span);
        let outcome: Result<(), Box<Mismatch>> = (|| {
            match &step.kind {
                StepKind::Press { keys } => {
                    let now = r.sim.now();
                    r.sim.advance_to(now);
                    for k in keys.node.chars() {
                        r.sim.press(k);
                    }
                    r.check_error(line, format!("press \"{}\" to be taken", keys.node))
                }
                StepKind::Wait { millis } => {
                    let until = r.sim.now() + *millis as Millis;
                    r.sim.advance_to(until);
                    r.check_error(line, "the wait to pass")
                }
                StepKind::Hangup => {
                    r.sim.hangup();
                    Ok(())
                }
                StepKind::Agent { action } => {
                    // The transfer may start once earlier prompts have played.
                    let limit = r.sim.now() + WAIT_LIMIT_MS;
                    while !r.sim.transfer_active() && !r.sim.call().is_ended() {
                        match r.sim.next_event_time() {
                            Some(t) if t <= limit => {
                                r.sim.step();
                            }
                            _ => break,
                        }
                    }
                    if !r.sim.transfer_active() {
                        return Err(r.fail(line, "a transfer in progress", Unmet::NotTransferring));
                    }
                    r.sim.transfer(match action {
                        AgentAction::Answers => TransferUpdate::Answered {
                            agent: Some("sim-agent".into()),
                        },
                        AgentAction::Busy => TransferUpdate::Busy,
                        AgentAction::HangsUp => TransferUpdate::AgentHungUp,
                        AgentAction::None => TransferUpdate::NoAgents,
                    });
                    r.check_error(line, "the agent action to be taken")
                }
                StepKind::Skip => {
                    r.skipping = true;
                    Ok(())
                }
                StepKind::Expect { expectation } => expect(r, expectation, line),
            }
        })();
        if let Err(mismatch) = outcome {
            return Some(failed(mismatch));
        }
    }
    // When the agent's hang-up ended a transferred call (no `after`), the platform hangs up
    // the caller: a scenario may expect that `hangup` or end with the agent's hang-up.
    let ended_by_agent = r.sim.call().outcome() == Some(Outcome::Transferred)
        && r.sim.transcript()[r.cursor.min(r.sim.transcript().len())..]
            .iter()
            .all(|e| *e == Entry::Hangup);
    if !r.skipping && !ended_by_agent && r.cursor < r.sim.transcript().len() {
        let entry = r.sim.transcript()[r.cursor].clone();
        let end = r.line(
            scenario
                .span
                .to(scenario.steps.last().map_or(scenario.span, |s| s.span)),
        );
        let last = scenario.steps.last().map_or(end, |s| r.line(s.span));
        return Some(failed(r.fail(last, "nothing more", Unmet::WentOn(entry))));
    }
    None
}

fn expect(r: &mut Runner, e: &Expectation, line: usize) -> Result<(), Box<Mismatch>> {
    if is_transcript_expectation(e) {
        return r.expect_entry(e, line);
    }
    match e {
        Expectation::Node { name } => {
            // The engine's node, or the node whose audio the caller hears now: a step's
            // prompts still play after the engine went on to the next node, and the caller is
            // in that step as much as the flow is in the next.
            let flow = Arc::clone(r.sim.call().flow());
            let name_of = |n: NodeId| flow.program.nodes[n as usize].name.as_str();
            let (engine, heard) = (name_of(r.sim.call().node()), name_of(r.sim.heard_node()));
            if engine == name.node || heard == name.node {
                Ok(())
            } else if engine == heard {
                Err(r.fail(line, describe(e), Unmet::AtNode(engine.to_string())))
            } else {
                let unmet = Unmet::Hears {
                    engine: engine.to_string(),
                    heard: heard.to_string(),
                };
                Err(r.fail(line, describe(e), unmet))
            }
        }
        Expectation::Var { path, value } => match r.sim.call().var(&path.node) {
            Some(v) if literal_matches(&value.node, &v) => Ok(()),
            Some(v) => {
                // Masked digits never show; "no value yet" is no digit.
                let shown = if v != Value::Null
                    && r.sim
                        .call()
                        .is_masked(path.node.split('.').next().unwrap_or(""))
                {
                    "***".to_string()
                } else {
                    v.to_string()
                };
                Err(r.fail(line, describe(e), Unmet::VarIs(shown)))
            }
            None => Err(r.fail(line, describe(e), Unmet::NoVariable(path.node.clone()))),
        },
        Expectation::Outcome { outcome } => {
            let Some(want) = Outcome::parse(&outcome.node) else {
                return Err(r.fail(line, describe(e), Unmet::NotAnOutcome));
            };
            r.run_to_end();
            match r.sim.call().outcome() {
                Some(got) if got == want => Ok(()),
                Some(got) => Err(r.fail(line, describe(e), Unmet::EndedAs(got))),
                None => Err(r.fail(line, describe(e), Unmet::NotEnded)),
            }
        }
        Expectation::EndedBy { by } => {
            let Some(want) = EndedBy::parse(&by.node) else {
                return Err(r.fail(line, describe(e), Unmet::NotAnEnder));
            };
            r.run_to_end();
            match r.sim.call().ended_by() {
                Some(got) if got == want => Ok(()),
                Some(got) => Err(r.fail(line, describe(e), Unmet::EndedByOther(got))),
                None => Err(r.fail(line, describe(e), Unmet::NotEnded)),
            }
        }
        _ => Ok(()),
    }
}
