//! The executable form of a flow: nodes in a vector with resolved indices, typed expressions
//! with variable slots, interned prompt ids, and the flow's content hash as its version.
//! This is what the call engine runs; it is serde-serialisable (`ivr compile --emit json`).

use ivr_dsl::Span;
use ivr_dsl::ast::{BinaryOp, NodeKind, SayKind, UnaryOp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Index of a node in [`Program::nodes`].
pub type NodeId = u32;
/// Index of a variable in [`Program::vars`].
pub type VarId = u32;
/// Index of a prompt id in [`Program::prompts`].
pub type PromptId = u32;

/// A checked, linked, executable flow (with the nodes of the flows it imports).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Program {
    /// The flow's name.
    pub name: String,
    /// `title`, if any.
    pub title: Option<String>,
    /// The default prompt language.
    pub language: String,
    /// Every language the flow may speak (the default and each `set language`).
    pub languages: Vec<String>,
    /// Content hash of the flow's source and of the flows it imports (hex, 16 digits).
    pub version: String,
    /// The first node.
    pub entry: NodeId,
    /// All nodes; imported ones are named `flow.node`.
    pub nodes: Vec<Node>,
    /// Interned prompt ids; [`PromptId`] indexes this.
    pub prompts: Vec<String>,
    /// Per-call variables; [`VarId`] indexes this.
    pub vars: Vec<VarInfo>,
    /// Source files the spans refer to (the flow first, then its imports).
    pub files: Vec<String>,
}

impl Program {
    /// The node with this name, if any.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as NodeId)
    }

    /// The prompt id text of an interned prompt.
    pub fn prompt(&self, id: PromptId) -> &str {
        self.prompts.get(id as usize).map_or("?", String::as_str)
    }

    /// The variable with this name, if any.
    pub fn var_id(&self, name: &str) -> Option<VarId> {
        self.vars
            .iter()
            .position(|v| v.name == name)
            .map(|i| i as VarId)
    }

    /// Every self-service task a `served` action of the program names (its imports'
    /// included), each once, in the order written.
    pub fn served_tasks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for node in &self.nodes {
            if let Body::Step { ops } = &node.body {
                for op in ops {
                    if let Op::Served { task } = op
                        && !out.contains(&task.as_str())
                    {
                        out.push(task);
                    }
                }
            }
        }
        out
    }
}

/// Longest name of a `served` task.
pub const TASK_NAME_MAX: usize = 64;

/// Whether `name` may name a `served` task: lower-case ASCII letters, digits and `_`, starting
/// with a letter, at most [`TASK_NAME_MAX`] characters.
pub fn is_task_name(name: &str) -> bool {
    name.len() <= TASK_NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A per-call variable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VarInfo {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// Set from a masked input: its value never reaches a log, trace, CDR or transcript.
    pub masked: bool,
}

/// A node of the program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// Its name (`common.goodbye` for imported nodes).
    pub name: String,
    /// Its kind.
    pub kind: NodeKind,
    /// Index into [`Program::files`].
    pub file: u32,
    /// Where it is written (keyword to closing brace).
    pub span: Span,
    /// Where its name is written.
    pub name_span: Span,
    /// What it does.
    pub body: Body,
}

/// Where a transition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "to", content = "node", rename_all = "lowercase")]
pub enum Jump {
    /// A node.
    Node(NodeId),
    /// Replay the current collecting node without counting an attempt.
    Repeat,
    /// The previous menu.
    Back,
    /// The flow's entry.
    Main,
    /// End the call.
    Hangup,
}

/// A transition with the place it is written (for coverage and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Where it goes.
    pub jump: Jump,
    /// The target as written.
    pub span: Span,
}

/// The kind-specific part of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    /// Actions in order; the last op is a `Goto` or `Hangup`.
    Step {
        /// The operations.
        ops: Vec<Op>,
    },
    /// One key.
    Menu(Menu),
    /// Several digits.
    Input(Input),
    /// A query.
    Lookup(Lookup),
    /// A queue or an external number.
    Transfer(Transfer),
    /// Scored questions.
    Survey(Survey),
    /// A recording.
    Record(Record),
}

/// A step operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Play prompts in order.
    Play {
        /// The prompts.
        prompts: Vec<PromptId>,
    },
    /// Speak a value.
    Say {
        /// How.
        kind: SayKind,
        /// The value.
        value: Expr,
    },
    /// Assign a variable.
    Set {
        /// The variable.
        var: VarId,
        /// The value.
        value: Expr,
    },
    /// Switch the prompt language.
    SetLanguage {
        /// The language tag.
        language: String,
    },
    /// Silence.
    Pause {
        /// Milliseconds.
        millis: u64,
    },
    /// Leave when the condition holds.
    If {
        /// A bool expression.
        condition: Expr,
        /// Where to go.
        target: Edge,
    },
    /// Leave.
    Goto {
        /// Where to go.
        target: Edge,
    },
    /// End the call.
    Hangup {
        /// Where it is written.
        span: Span,
    },
    /// The call completed a self-service task (`served "topup"`).
    Served {
        /// The task's name.
        task: String,
    },
    /// Record the whole call from here to its end (`record call`).
    RecordCall,
}

/// Settings shared by every collecting node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collect {
    /// Prompts played first.
    pub prompts: Vec<PromptId>,
    /// Wait for the first key after the prompts end (ms).
    pub timeout_ms: u64,
    /// Wait between keys (ms).
    pub inter_digit_ms: u64,
    /// Attempts before `attempts_target`.
    pub attempts: u32,
    /// Where to go after the last failed attempt.
    pub attempts_target: Edge,
    /// Played before a retry after no input.
    pub no_input: Vec<PromptId>,
    /// Played before a retry after a wrong entry.
    pub no_match: Vec<PromptId>,
    /// Whether a key during the prompts stops them and counts.
    pub barge_in: bool,
}

/// `menu`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Menu {
    /// Common settings.
    pub collect: Collect,
    /// Keys in the order written.
    pub keys: Vec<MenuKey>,
}

/// A menu choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MenuKey {
    /// `0`-`9`, `*`, `#`.
    pub key: char,
    /// Where it leads.
    pub target: Edge,
    /// Only when this holds.
    pub guard: Option<Expr>,
}

/// `input`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// Common settings.
    pub collect: Collect,
    /// Fewest digits.
    pub min_digits: u32,
    /// Most digits.
    pub max_digits: u32,
    /// Ends the input early.
    pub terminator: Option<char>,
    /// Never log the digits.
    pub mask: bool,
    /// Extra check (the new value is visible in `into`).
    pub valid: Option<Expr>,
    /// Receives the digits.
    pub into: VarId,
    /// Where to go with a valid entry.
    pub next: Edge,
}

/// `lookup`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    /// The query's name in the data catalog.
    pub query: String,
    /// Arguments in order.
    pub args: Vec<Expr>,
    /// Receives the first row.
    pub into: Option<VarId>,
    /// Timeout (ms): the node's, else the query's, else the default.
    pub timeout_ms: u64,
    /// One or more rows.
    pub found: Edge,
    /// No row.
    pub missing: Edge,
    /// Failure or timeout; without it the call ends as `failed`.
    pub error: Option<Edge>,
}

/// `transfer`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    /// Queue or URI.
    pub destination: Destination,
    /// Skills required (the queue's and the node's).
    pub skills: Vec<String>,
    /// Priority (a number); 0 when absent or when the guard is false.
    pub priority: Option<Expr>,
    /// Only when this holds.
    pub priority_guard: Option<Expr>,
    /// Call data for the agent: a label (the expression as written) and its value.
    pub attach: Vec<(String, Expr)>,
    /// Looped while waiting.
    pub music: Vec<PromptId>,
    /// Position announcement interval (ms).
    pub announce_ms: Option<u64>,
    /// Longest wait (ms) and where to go then.
    pub max_wait: Option<(u64, Edge)>,
    /// No agent logged in / queue closed (for `to`: busy or failed).
    pub no_agents: Option<Edge>,
    /// Where to go when the agent hangs up first; absent: the call ends.
    pub after: Option<Edge>,
    /// `overflow QUEUE ...` rules, in the node's order.
    #[serde(default)]
    pub overflow: Vec<Overflow>,
    /// `level N [if EXPR]`: the least agent level (2..5) and its guard.
    #[serde(default)]
    pub level: Option<(u8, Option<Expr>)>,
    /// `callback after D -> T`: the offer of a callback to a waiting caller (boxed: most
    /// transfers have none).
    #[serde(default)]
    pub callback: Option<Box<CallbackOffer>>,
}

/// `callback after D -> T` of a transfer node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CallbackOffer {
    /// After this long (ms) of waiting, the offer plays.
    pub after_ms: u64,
    /// The prompt `callback_offer`.
    pub offer: PromptId,
    /// The prompt `callback_confirm`.
    pub confirm: PromptId,
    /// Where the call goes once key 1 kept the callback.
    pub target: Edge,
}

/// `overflow QUEUE after D` / `overflow QUEUE when none_idle` of a transfer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overflow {
    /// The other queue.
    pub queue: String,
    /// The node's own `skills` (the other queue's are added by the ACD).
    pub skills: Vec<String>,
    /// After this long (ms) of waiting; `None`: as soon as no agent of the first queue is
    /// idle (`when none_idle`).
    pub after_ms: Option<u64>,
}

/// A transfer destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Destination {
    /// An ACD queue.
    Queue(String),
    /// A SIP URI or number.
    To(String),
}

/// `survey`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Survey {
    /// Common settings (per question).
    pub collect: Collect,
    /// The questions in order.
    pub questions: Vec<Question>,
    /// The table the answers are saved in.
    pub save: String,
    /// Where to go after the last question.
    pub next: Edge,
}

/// A survey question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Question {
    /// The answer's name.
    pub name: String,
    /// The prompt that asks it.
    pub prompt: PromptId,
    /// What counts as an answer.
    pub answers: Answers,
}

/// Accepted answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Answers {
    /// A key in `min..=max`, saved as a number.
    Scale {
        /// Lowest.
        min: u8,
        /// Highest.
        max: u8,
    },
    /// A key saved as its label.
    Choices {
        /// Keys and labels.
        choices: Vec<(char, String)>,
    },
}

/// `record`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Prompts played first.
    pub prompts: Vec<PromptId>,
    /// A beep before recording.
    pub beep: bool,
    /// Longest recording (ms).
    pub max_ms: u64,
    /// Stop after this much silence (ms).
    pub silence_ms: Option<u64>,
    /// A key that ends the recording.
    pub terminator: Option<char>,
    /// Where the recording is saved.
    pub save: String,
    /// Where to go after.
    pub next: Edge,
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// The static type of an expression or variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "query", rename_all = "snake_case")]
pub enum Type {
    /// Text.
    Text,
    /// A plain number.
    Number,
    /// An amount of money.
    Money,
    /// A truth value.
    Bool,
    /// A date.
    Date,
    /// A time of day.
    Time,
    /// A date and time (`now()`).
    DateTime,
    /// A duration.
    Duration,
    /// A row of the named query.
    Row(String),
    /// Unknown after an error (suppresses follow-on errors).
    Unknown,
}

impl Type {
    /// How the type is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Type::Text => "text".into(),
            Type::Number => "a number".into(),
            Type::Money => "money".into(),
            Type::Bool => "true/false".into(),
            Type::Date => "a date".into(),
            Type::Time => "a time".into(),
            Type::DateTime => "a date and time".into(),
            Type::Duration => "a duration".into(),
            Type::Row(q) => format!("a row of `{q}`"),
            Type::Unknown => "unknown".into(),
        }
    }

    /// Number or money.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Number | Type::Money)
    }
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Its type.
    pub ty: Type,
    /// Where it is written.
    pub span: Span,
}

/// Compiled expression forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExprKind {
    /// A constant.
    Lit {
        /// The value.
        value: Literal,
    },
    /// A variable.
    Var {
        /// The slot.
        var: VarId,
    },
    /// A field of a row variable.
    Field {
        /// The row variable.
        var: VarId,
        /// The field's position in the query's `fields`.
        index: u32,
        /// The field's name.
        name: String,
    },
    /// A field of `contact`, the campaign's list row of an outbound call (looked up by name:
    /// every campaign that runs the flow returns it).
    Contact {
        /// The field's name.
        field: String,
    },
    /// A built-in variable.
    Builtin {
        /// Which.
        builtin: Builtin,
    },
    /// `len(x)`
    Len {
        /// The argument.
        arg: Box<Expr>,
    },
    /// `now()`
    Now,
    /// `in_hours(calendar)`
    InHours {
        /// The calendar's name.
        calendar: String,
    },
    /// A prefix operator.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// An infix operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left.
        lhs: Box<Expr>,
        /// Right.
        rhs: Box<Expr>,
    },
}

/// A constant value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Literal {
    /// Text.
    Text(String),
    /// An exact decimal.
    Number(Decimal),
    /// A truth value.
    Bool(bool),
    /// Milliseconds.
    Duration(u64),
}

/// Variables every call has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// `caller`: the calling number.
    Caller,
    /// `called`: the dialled number.
    Called,
    /// `call.id`
    CallId,
    /// `call.channel`: `sip`, `webrtc` or `sim`.
    CallChannel,
    /// `language`: the current prompt language.
    Language,
    /// `flow.version`
    FlowVersion,
}

impl Builtin {
    /// Every built-in with its path as written.
    pub const ALL: [(&'static str, Builtin); 6] = [
        ("caller", Builtin::Caller),
        ("called", Builtin::Called),
        ("call.id", Builtin::CallId),
        ("call.channel", Builtin::CallChannel),
        ("language", Builtin::Language),
        ("flow.version", Builtin::FlowVersion),
    ];

    /// The path as written.
    pub fn path(self) -> &'static str {
        Builtin::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("?", |(p, _)| p)
    }
}

impl Expr {
    /// Calls `f` on this expression and every sub-expression.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Len { arg } => arg.walk(f),
            ExprKind::Unary { operand, .. } => operand.walk(f),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            _ => {}
        }
    }
}

impl Body {
    /// Every transition out of the node with a label (`key 1`, `found`, `next`, ...), in order.
    pub fn edges(&self) -> Vec<(String, Edge)> {
        let mut out = Vec::new();
        let collect_edges = |c: &Collect, out: &mut Vec<(String, Edge)>| {
            out.push(("attempts".to_string(), c.attempts_target));
        };
        match self {
            Body::Step { ops } => {
                for op in ops {
                    match op {
                        Op::If { target, .. } => out.push(("if".into(), *target)),
                        Op::Goto { target } => out.push(("goto".into(), *target)),
                        Op::Hangup { span } => out.push((
                            "hangup".into(),
                            Edge {
                                jump: Jump::Hangup,
                                span: *span,
                            },
                        )),
                        _ => {}
                    }
                }
            }
            Body::Menu(m) => {
                for k in &m.keys {
                    out.push((format!("key {}", k.key), k.target));
                }
                collect_edges(&m.collect, &mut out);
            }
            Body::Input(i) => {
                out.push(("next".into(), i.next));
                collect_edges(&i.collect, &mut out);
            }
            Body::Lookup(l) => {
                out.push(("found".into(), l.found));
                out.push(("missing".into(), l.missing));
                if let Some(e) = l.error {
                    out.push(("error".into(), e));
                }
            }
            Body::Transfer(t) => {
                if let Some((_, e)) = t.max_wait {
                    out.push(("max_wait".into(), e));
                }
                if let Some(e) = t.no_agents {
                    out.push(("no_agents".into(), e));
                }
                if let Some(e) = t.after {
                    out.push(("after".into(), e));
                }
                if let Some(c) = &t.callback {
                    out.push(("callback".into(), c.target));
                }
            }
            Body::Survey(s) => out.push(("next".into(), s.next)),
            Body::Record(r) => out.push(("next".into(), r.next)),
        }
        out
    }

    /// True for nodes that wait for the caller (menu, input, survey, record, transfer).
    pub fn waits_for_caller(&self) -> bool {
        !matches!(self, Body::Step { .. } | Body::Lookup(_))
    }
}
