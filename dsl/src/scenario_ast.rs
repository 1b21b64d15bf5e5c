//! The syntax tree of `.scenario` files: QA's conversations with a flow.

use crate::span::{Span, Spanned};
use rust_decimal::Decimal;
use serde::Serialize;

/// A `.scenario` file: one or more scenarios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioFile {
    /// The scenarios in order.
    pub scenarios: Vec<Scenario>,
}

/// One scenario, from its `scenario "..."` line to the next one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Its title.
    pub name: Spanned<String>,
    /// `flow NAME`
    pub flow: Option<Spanned<String>>,
    /// `caller "13800000001"` (a string or a bare number).
    pub caller: Option<Spanned<String>>,
    /// `called "10010"` (an extension: the dialled number).
    pub called: Option<Spanned<String>>,
    /// `at 2026-11-23 10:00`: the virtual clock's start.
    pub at: Option<Spanned<DateTimeLit>>,
    /// `contact { phone: "13800000001", arrears: 58.30 }`: the campaign's list row, for a
    /// flow a campaign runs (its fields in the order written; the span is the line's).
    pub contact: Option<Spanned<Vec<RecordField>>>,
    /// `mock QUERY -> ...`, in order.
    pub mocks: Vec<Mock>,
    /// Actions and expectations in order.
    pub steps: Vec<ScenarioStep>,
    /// The whole scenario.
    pub span: Span,
}

/// A field of a row written in a scenario (`name: value` of `contact { ... }` and mocks).
pub type RecordField = (Spanned<String>, Spanned<Literal>);

/// `2026-11-23 10:00` (seconds optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DateTimeLit {
    /// Year.
    pub year: i32,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31.
    pub day: u32,
    /// Hour 0-23.
    pub hour: u32,
    /// Minute 0-59.
    pub minute: u32,
    /// Second 0-59.
    pub second: u32,
}

/// `mock customer_by_phone -> found { id: 1, name: "张三" }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mock {
    /// The query's name.
    pub query: Spanned<String>,
    /// What it answers.
    pub result: MockResult,
    /// The whole line.
    pub span: Span,
}

/// A mocked query answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MockResult {
    /// One row with these fields.
    Found {
        /// Field name and value pairs, in order.
        fields: Vec<(Spanned<String>, Spanned<Literal>)>,
    },
    /// No row.
    Missing,
    /// A failure.
    Error,
}

/// A literal value in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Literal {
    /// `"text"`
    Text(String),
    /// `58.30`, `-3`
    Number(Decimal),
    /// `true`, `false`
    Bool(bool),
    /// `5s`
    Duration(u64),
    /// `null`: no value (an unanswered survey question, a missing field).
    Null,
}

/// One line of a scenario after its header lines.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioStep {
    /// What it is.
    pub kind: StepKind,
    /// The whole line.
    pub span: Span,
}

/// Caller actions, agent actions, `...` and expectations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepKind {
    /// `press "123#"` or `press 1`: each key one DTMF event.
    Press {
        /// The keys.
        keys: Spanned<String>,
    },
    /// `wait 6s`: the caller stays silent.
    Wait {
        /// How long (ms).
        millis: u64,
    },
    /// `hangup`: the caller hangs up.
    Hangup,
    /// `agent answers|busy|hangs_up|none`
    Agent {
        /// What the agent (or called party) does.
        action: AgentAction,
    },
    /// `...`: skip transcript entries up to the next transcript expectation.
    Skip,
    /// `expect ...`
    Expect {
        /// What is expected.
        expectation: Expectation,
    },
}

/// What an agent or peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentAction {
    /// `agent answers`
    Answers,
    /// `agent busy`
    Busy,
    /// `agent hangs_up`
    HangsUp,
    /// `agent none`: no agent available.
    None,
}

/// The expectations of the spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Expectation {
    /// `expect play ID`
    Play {
        /// The prompt id.
        prompt: Spanned<String>,
    },
    /// `expect say money 58.30`
    Say {
        /// `money`, `number`, `digits`, `date`, `time` (as written).
        kind: Spanned<String>,
        /// The value as written.
        value: Spanned<Literal>,
    },
    /// `expect node NAME` (consumes nothing).
    Node {
        /// The node's name (`common.goodbye` for imported nodes).
        name: Spanned<String>,
    },
    /// `expect var customer.vip == true` (consumes nothing).
    Var {
        /// The variable path.
        path: Spanned<String>,
        /// The expected value.
        value: Spanned<Literal>,
    },
    /// `expect transfer queue general priority 10 level 4`
    TransferQueue {
        /// The queue.
        queue: Spanned<String>,
        /// The priority, when given.
        priority: Option<Spanned<Decimal>>,
        /// The agent level asked for (`level N`; 0 for none), when given.
        level: Option<Spanned<u32>>,
    },
    /// `expect transfer to "sip:..."`
    TransferTo {
        /// The URI.
        uri: Spanned<String>,
    },
    /// `expect record NAME`; `expect record call` is met by a `record call` action (whole-call
    /// recording) as well as by a record node named `call`.
    Record {
        /// The record node (or its `save` table).
        name: Spanned<String>,
    },
    /// `expect saved TABLE { field: value, ... }`
    Saved {
        /// The table.
        table: Spanned<String>,
        /// Fields that must match (others are not compared).
        fields: Vec<(Spanned<String>, Spanned<Literal>)>,
    },
    /// `expect hangup`
    Hangup,
    /// `expect callback queue general`: the caller kept a callback in this queue (a
    /// transcript entry).
    Callback {
        /// The queue.
        queue: Spanned<String>,
    },
    /// `expect served bill_inquiry`: the call completed this task (a transcript entry).
    Served {
        /// The task's name.
        task: Spanned<String>,
    },
    /// `expect outcome transferred`
    Outcome {
        /// `transferred`, `callback`, `abandoned`, `message`, `self_service`, `failed`,
        /// `not_served` (checked by the runner).
        outcome: Spanned<String>,
    },
    /// `expect ended_by caller`
    EndedBy {
        /// `caller`, `flow`, `agent`, `system` (checked by the runner).
        by: Spanned<String>,
    },
}
