//! Running QA scenarios: a scripted conversation with a flow on the virtual clock, checked
//! against the transcript and the call's state, line by line.

use super::{DataSource, Entry, PromptBook, Simulation};
use crate::value::Value;
use crate::{CallInfo, Channel, Exit, Flow, Millis, Outcome, QueryResult, TransferUpdate};
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
use std::fmt::Write;
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
    pub failure: Option<String>,
    /// The transcript, one entry per line.
    pub transcript: Vec<String>,
    /// Nodes entered and how they were left.
    pub visits: Vec<(NodeId, Option<Exit>)>,
    /// How the call ended, if it did.
    pub outcome: Option<Outcome>,
}

impl ScenarioResult {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Mocked queries in front of another data source.
struct Mocks {
    mocks: HashMap<String, MockResult>,
    fallback: Box<dyn DataSource>,
}

impl DataSource for Mocks {
    fn query(&mut self, name: &str, def: &QueryDef, args: &[Value]) -> Result<QueryResult, String> {
        self.query_timed(name, def, args, None)
    }

    fn query_timed(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
        timeout_ms: Option<u64>,
    ) -> Result<QueryResult, String> {
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
        Expectation::TransferQueue { queue, priority } => match priority {
            Some(p) => format!("transfer queue {} priority {}", queue.node, p.node),
            None => format!("transfer queue {}", queue.node),
        },
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
        Expectation::Outcome { outcome } => format!("outcome {}", outcome.node),
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
            Expectation::TransferQueue { queue, priority },
            Entry::Transfer {
                destination: Destination::Queue(q),
                priority: p,
            },
        ) => {
            queue.node == *q
                && priority
                    .as_ref()
                    .is_none_or(|x| x.node == Decimal::from(*p))
        }
        (
            Expectation::TransferTo { uri },
            Entry::Transfer {
                destination: Destination::To(u),
                ..
            },
        ) => uri.node == *u,
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
        _ => false,
    }
}

fn is_transcript_expectation(e: &Expectation) -> bool {
    !matches!(
        e,
        Expectation::Node { .. } | Expectation::Var { .. } | Expectation::Outcome { .. }
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

    fn transcript_so_far(&self) -> String {
        let mut s = String::from("  transcript so far:\n");
        if self.sim.transcript().is_empty() {
            s.push_str("    (nothing)\n");
        }
        for (i, e) in self.sim.transcript().iter().enumerate() {
            let mark = if i < self.cursor { " " } else { ">" };
            let text = match e {
                Entry::Play { text, .. } | Entry::Say { text, .. } if !text.is_empty() => {
                    format!("   「{text}」")
                }
                _ => String::new(),
            };
            let _ = writeln!(s, "   {mark} {e}{text}");
        }
        s
    }

    fn fail(&self, line: usize, expected: &str, message: &str) -> String {
        let fault = self
            .sim
            .call()
            .fault_reason()
            .map(|why| format!("  (the call ended: {why})\n"))
            .unwrap_or_default();
        format!(
            "{}:{line}: expected {expected}\n  {message}\n{fault}{}",
            self.path,
            self.transcript_so_far()
        )
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

    fn expect_entry(&mut self, e: &Expectation, line: usize) -> Result<(), String> {
        loop {
            if !self.await_entry() {
                if let Some(err) = &self.sim.error {
                    return Err(self.fail(line, &describe(e), err));
                }
                let why = if self.sim.call().is_ended() {
                    "but the call had ended".to_string()
                } else {
                    "but the flow did nothing more: it waits for the caller or an agent".to_string()
                };
                return Err(self.fail(line, &describe(e), &why));
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
            let got = format!("but got: {entry}");
            return Err(self.fail(line, &describe(e), &got));
        }
    }

    fn check_error(&self, line: usize, what: &str) -> Result<(), String> {
        match &self.sim.error {
            Some(err) => Err(self.fail(line, what, err)),
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
    };
    let Some(flow_name) = &scenario.flow else {
        result.failure = Some(format!("{path}:{line}: the scenario has no `flow` line"));
        return result;
    };
    let Some(sim_flow) = flows.get(&flow_name.node) else {
        let fline = line_col(source, flow_name.span.start as usize).0;
        let names: Vec<&str> = flows.keys().map(String::as_str).collect();
        result.failure = Some(format!(
            "{path}:{fline}: there is no flow `{}` (the flows are {})",
            flow_name.node,
            names.join(", ")
        ));
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
                result.failure = Some(format!(
                    "{path}:{mline}: `mock {}`: there is no such query in the data catalog",
                    m.query.node
                ));
                return result;
            }
            Some(def) => {
                if let MockResult::Found { fields } = &m.result {
                    for (f, _) in fields {
                        if !def.fields.contains_key(&f.node) {
                            let known: Vec<&str> = def.fields.keys().map(String::as_str).collect();
                            result.failure = Some(format!(
                                "{path}:{mline}: `mock {}`: the query returns no field `{}` (its fields are {})",
                                m.query.node,
                                f.node,
                                known.join(", ")
                            ));
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
        result.failure = Some(format!("{path}:{line}: the `at` date does not exist"));
        return result;
    };
    let info = CallInfo {
        id: format!("sim-{}", line),
        caller: scenario
            .caller
            .as_ref()
            .map(|c| c.node.clone())
            .unwrap_or_default(),
        called: scenario
            .called
            .as_ref()
            .map_or_else(|| sim_flow.called.clone(), |c| c.node.clone()),
        channel: Channel::Sim,
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
    result
}

fn run_steps(r: &mut Runner, scenario: &Scenario) -> Option<String> {
    for step in &scenario.steps {
        let line = r.line(step.span);
        let outcome: Result<(), String> = (|| {
            match &step.kind {
                StepKind::Press { keys } => {
                    let now = r.sim.now();
                    r.sim.advance_to(now);
                    for k in keys.node.chars() {
                        r.sim.press(k);
                    }
                    r.check_error(line, &format!("press \"{}\" to be taken", keys.node))
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
                        return Err(r.fail(
                            line,
                            "a transfer in progress",
                            "but the flow is not transferring the caller",
                        ));
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
        if let Err(msg) = outcome {
            return Some(format!("scenario \"{}\"\n{msg}", scenario.name.node));
        }
    }
    // When the agent's hang-up ended a transferred call (no `after`), the platform hangs up
    // the caller: a scenario may expect that `hangup` or end with the agent's hang-up.
    let ended_by_agent = r.sim.call().outcome() == Some(Outcome::Transferred)
        && r.sim.transcript()[r.cursor.min(r.sim.transcript().len())..]
            .iter()
            .all(|e| *e == Entry::Hangup);
    if !r.skipping && !ended_by_agent && r.cursor < r.sim.transcript().len() {
        let entry = r.sim.transcript()[r.cursor].to_string();
        let end = r.line(
            scenario
                .span
                .to(scenario.steps.last().map_or(scenario.span, |s| s.span)),
        );
        let last = scenario.steps.last().map_or(end, |s| r.line(s.span));
        return Some(format!(
            "scenario \"{}\"\n{}",
            scenario.name.node,
            r.fail(
                last,
                "nothing more",
                &format!(
                    "but the flow went on: {entry} (no expectation matches it; use `...` to skip)"
                )
            )
        ));
    }
    None
}

fn expect(r: &mut Runner, e: &Expectation, line: usize) -> Result<(), String> {
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
                Err(r.fail(
                    line,
                    &describe(e),
                    &format!("but the call is at node {engine}"),
                ))
            } else {
                Err(r.fail(
                    line,
                    &describe(e),
                    &format!("but the call is at node {engine} (the caller hears {heard})"),
                ))
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
                Err(r.fail(line, &describe(e), &format!("but it is {shown}")))
            }
            None => Err(r.fail(
                line,
                &describe(e),
                &format!("but the call has no variable `{}`", path.node),
            )),
        },
        Expectation::Outcome { outcome } => {
            let Some(want) = Outcome::parse(&outcome.node) else {
                return Err(r.fail(
                    line,
                    &describe(e),
                    "but that is not an outcome: self_service, transferred, abandoned or failed",
                ));
            };
            let limit = r.sim.now() + WAIT_LIMIT_MS;
            while !r.sim.call().is_ended() {
                match r.sim.next_event_time() {
                    Some(t) if t <= limit => {
                        r.sim.step();
                    }
                    _ => break,
                }
            }
            match r.sim.call().outcome() {
                Some(got) if got == want => Ok(()),
                Some(got) => Err(r.fail(
                    line,
                    &describe(e),
                    &format!("but the call ended as {}", got.as_str()),
                )),
                None => Err(r.fail(line, &describe(e), "but the call has not ended")),
            }
        }
        _ => Ok(()),
    }
}
