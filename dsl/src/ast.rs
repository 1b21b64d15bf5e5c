//! The typed syntax tree of a `.flow` file. Every item carries the [`Span`] it was written at,
//! so that the checker can point at the exact place of a mistake.
//!
//! The tree says what was written, not whether it makes sense: names are not resolved and
//! defaults are not filled in (an absent clause is `None`). The compiler does both.

pub use crate::span::{Span, Spanned};
use rust_decimal::Decimal;
use serde::Serialize;

/// A name as written: a node, variable, prompt, query, queue, calendar or flow name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A whole `.flow` file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowFile {
    /// The `flow NAME { ... }` header; `None` when the file has none (an error).
    pub header: Option<FlowHeader>,
    /// `import NAME` lines, in order.
    pub imports: Vec<Ident>,
    /// Nodes in the order written.
    pub nodes: Vec<Node>,
}

/// `flow hotline { title "..." language zh-CN entry welcome }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowHeader {
    /// The flow's name (must match the file name).
    pub name: Ident,
    /// `title "..."`
    pub title: Option<Spanned<String>>,
    /// `language zh-CN`: the default prompt language.
    pub language: Option<Spanned<String>>,
    /// `entry NODE`: the first node.
    pub entry: Option<Ident>,
    /// The whole header.
    pub span: Span,
}

/// One node: `KIND NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Its name, unique in the flow.
    pub name: Ident,
    /// The kind-specific body.
    pub body: NodeBody,
    /// The keyword (`step`, `menu`, ...).
    pub keyword_span: Span,
    /// The whole node, keyword to closing brace.
    pub span: Span,
}

impl Node {
    /// The node's kind.
    pub fn kind(&self) -> NodeKind {
        match &self.body {
            NodeBody::Step(_) => NodeKind::Step,
            NodeBody::Menu(_) => NodeKind::Menu,
            NodeBody::Input(_) => NodeKind::Input,
            NodeBody::Lookup(_) => NodeKind::Lookup,
            NodeBody::Transfer(_) => NodeKind::Transfer,
            NodeBody::Survey(_) => NodeKind::Survey,
            NodeBody::Record(_) => NodeKind::Record,
        }
    }
}

/// The seven kinds of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Actions in order, then a transition.
    Step,
    /// Play a prompt and wait for one key.
    Menu,
    /// Collect several digits.
    Input,
    /// Run a named query.
    Lookup,
    /// Hand the caller to a queue or a number.
    Transfer,
    /// Ask scored questions.
    Survey,
    /// Record the caller.
    Record,
}

impl NodeKind {
    /// The keyword that introduces the node.
    pub fn keyword(self) -> &'static str {
        match self {
            NodeKind::Step => "step",
            NodeKind::Menu => "menu",
            NodeKind::Input => "input",
            NodeKind::Lookup => "lookup",
            NodeKind::Transfer => "transfer",
            NodeKind::Survey => "survey",
            NodeKind::Record => "record",
        }
    }
}

/// The body of a node, by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NodeBody {
    /// `step`
    Step(Step),
    /// `menu`
    Menu(Menu),
    /// `input`
    Input(Input),
    /// `lookup`
    Lookup(Lookup),
    /// `transfer`
    Transfer(Transfer),
    /// `survey`
    Survey(Survey),
    /// `record`
    Record(Record),
}

// ---------------------------------------------------------------------------------------------
// Targets

/// Where a transition goes, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// What was named.
    pub kind: TargetKind,
    /// Where it was written.
    pub span: Span,
}

/// The destinations a transition may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum TargetKind {
    /// A node of this flow.
    Node(String),
    /// `flow.node`: a node of an imported flow.
    Imported {
        /// The imported flow's name.
        flow: String,
        /// The node in it.
        node: String,
    },
    /// `repeat`: replay the current menu or input without counting an attempt.
    Repeat,
    /// `back`: return to the previous menu.
    Back,
    /// `main`: the flow's entry.
    Main,
    /// `hangup`: end the call.
    Hangup,
}

// ---------------------------------------------------------------------------------------------
// step

/// `step NAME { statements }`: actions in order, conditional exits, then `goto` or `hangup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Statements in the order written. The parser accepts any order; the checker requires the
    /// last one to be a `goto` or `hangup` and nothing after it.
    pub statements: Vec<Statement>,
}

/// One line of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    /// What it does.
    pub kind: StatementKind,
    /// The whole statement.
    pub span: Span,
}

/// The statements of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StatementKind {
    /// `play a, b, c`
    Play {
        /// Prompt ids, in order.
        prompts: Vec<Ident>,
    },
    /// `say money EXPR`
    Say {
        /// How to speak the value.
        kind: Spanned<SayKind>,
        /// The value.
        value: Expr,
    },
    /// `set NAME = EXPR`
    Set {
        /// The variable assigned.
        name: Ident,
        /// The new value.
        value: Expr,
    },
    /// `set language zh-CN`
    SetLanguage {
        /// The language tag.
        language: Spanned<String>,
    },
    /// `pause 500ms`
    Pause {
        /// How long.
        duration: Spanned<Duration>,
    },
    /// `if EXPR -> TARGET`: leave the step when the condition holds.
    If {
        /// The condition.
        condition: Expr,
        /// Where to go.
        target: Target,
    },
    /// `goto TARGET`
    Goto {
        /// Where to go.
        target: Target,
    },
    /// `hangup`
    Hangup,
    /// `served "bill_inquiry"`: the call completed this self-service task (the call's outcome
    /// becomes `self_service` unless something ranks higher; reports count each task).
    Served {
        /// The task's name as written (checked by the compiler).
        task: Spanned<String>,
    },
    /// `record call`: the whole call is recorded from here to its end (stereo: the caller
    /// left, the IVR or the agent right), whatever `[recording] calls` says.
    RecordCall,
}

/// The ways `say` speaks a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SayKind {
    /// An amount of money: 五十八元三角 / fifty eight yuan thirty.
    Money,
    /// A number as a quantity.
    Number,
    /// Digit by digit (phone numbers, ticket numbers).
    Digits,
    /// A date.
    Date,
    /// A time of day.
    Time,
}

impl SayKind {
    /// The keyword as written after `say`.
    pub fn keyword(self) -> &'static str {
        match self {
            SayKind::Money => "money",
            SayKind::Number => "number",
            SayKind::Digits => "digits",
            SayKind::Date => "date",
            SayKind::Time => "time",
        }
    }

    /// Parses the keyword.
    pub fn from_keyword(word: &str) -> Option<SayKind> {
        Some(match word {
            "money" => SayKind::Money,
            "number" => SayKind::Number,
            "digits" => SayKind::Digits,
            "date" => SayKind::Date,
            "time" => SayKind::Time,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Clauses shared by the collecting nodes (menu, input, survey)

/// `attempts 3 -> agent` (the target is absent in a survey, and may be omitted elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempts {
    /// How many attempts the caller gets.
    pub count: Spanned<u32>,
    /// Where to go after the last failed attempt.
    pub target: Option<Target>,
    /// The whole clause.
    pub span: Span,
}

/// `on` or `off` of `barge_in`.
pub type Switch = Spanned<bool>;

/// A key `0`-`9`, `*` or `#`, as written (bare or quoted). The parser accepts any single
/// character or digit run here so that the checker can say "`12` is not a key".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLit {
    /// The text between the quotes, or the bare token.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

impl KeyLit {
    /// The DTMF key, when the text is exactly one of `0123456789*#`.
    pub fn key(&self) -> Option<char> {
        let mut chars = self.text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// menu

/// `menu NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Menu {
    /// `prompt a, b`
    pub prompt: Option<Vec<Ident>>,
    /// `timeout 5s`: wait after the prompt ends.
    pub timeout: Option<Spanned<Duration>>,
    /// `inter_digit 3s` (accepted for symmetry; a menu takes one key).
    pub inter_digit: Option<Spanned<Duration>>,
    /// `attempts 3 -> agent`
    pub attempts: Option<Attempts>,
    /// `no_input play p`
    pub no_input: Option<Vec<Ident>>,
    /// `no_match play p`
    pub no_match: Option<Vec<Ident>>,
    /// `barge_in on|off`
    pub barge_in: Option<Switch>,
    /// `key K -> TARGET [if EXPR]`, in order.
    pub keys: Vec<MenuKey>,
}

/// `key 3 -> plans if customer.vip == true`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MenuKey {
    /// The key.
    pub key: KeyLit,
    /// Where it leads.
    pub target: Target,
    /// Only when this holds; otherwise the key is a no-match.
    pub guard: Option<Expr>,
    /// The whole clause.
    pub span: Span,
}

// ---------------------------------------------------------------------------------------------
// input

/// `input NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Input {
    /// `prompt a, b`
    pub prompt: Option<Vec<Ident>>,
    /// `digits 18` or `digits 6..18`
    pub digits: Option<Digits>,
    /// `terminator "#"`
    pub terminator: Option<KeyLit>,
    /// `timeout 10s`: for the first key.
    pub timeout: Option<Spanned<Duration>>,
    /// `inter_digit 4s`: between keys.
    pub inter_digit: Option<Spanned<Duration>>,
    /// `attempts 3 -> agent`
    pub attempts: Option<Attempts>,
    /// `mask`: never log the digits.
    pub mask: Option<Span>,
    /// `no_input play p`
    pub no_input: Option<Vec<Ident>>,
    /// `no_match play p`
    pub no_match: Option<Vec<Ident>>,
    /// `barge_in on|off`
    pub barge_in: Option<Switch>,
    /// `valid EXPR`: extra check, the new value visible.
    pub valid: Option<Expr>,
    /// `into NAME`
    pub into: Option<Ident>,
    /// `next TARGET`
    pub next: Option<Target>,
}

/// `digits 18` or `digits 6..18`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digits {
    /// Fewest digits.
    pub min: u32,
    /// Most digits.
    pub max: u32,
    /// The whole clause.
    pub span: Span,
}

// ---------------------------------------------------------------------------------------------
// lookup

/// `lookup NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Lookup {
    /// `query NAME(args) into VAR`
    pub query: Option<QueryCall>,
    /// `timeout 2s`
    pub timeout: Option<Spanned<Duration>>,
    /// `found -> T`
    pub found: Option<Target>,
    /// `missing -> T`
    pub missing: Option<Target>,
    /// `error -> T`
    pub error: Option<Target>,
}

/// `customer_by_phone(caller) into customer`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryCall {
    /// The query's name in the data catalog.
    pub name: Ident,
    /// Argument expressions.
    pub args: Vec<Expr>,
    /// The variable that receives the first row (optional).
    pub into: Option<Ident>,
    /// The whole clause.
    pub span: Span,
}

// ---------------------------------------------------------------------------------------------
// transfer

/// `transfer NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Transfer {
    /// `queue NAME` or `to "sip:..."`
    pub destination: Option<Destination>,
    /// `skills "a", "b"`
    pub skills: Vec<Spanned<String>>,
    /// `priority EXPR [if EXPR]`
    pub priority: Option<Priority>,
    /// `attach a.b, c`
    pub attach: Vec<Expr>,
    /// `music hold_music`
    pub music: Option<Vec<Ident>>,
    /// `announce position every 30s`
    pub announce: Option<Spanned<Duration>>,
    /// `max_wait 120s -> T`
    pub max_wait: Option<MaxWait>,
    /// `no_agents -> T`
    pub no_agents: Option<Target>,
    /// `after -> T`
    pub after: Option<Target>,
    /// `overflow QUEUE after 30s` / `overflow QUEUE when none_idle`, in order.
    pub overflow: Vec<Overflow>,
    /// `level 4 [if EXPR]`
    pub level: Option<Level>,
    /// `callback after 60s -> T` (boxed: most transfers have none).
    pub callback: Option<Box<CallbackOffer>>,
}

/// `callback after 60s -> callback_saved`: once the caller has waited this long, the
/// prompt `callback_offer` plays; key 1 keeps the caller's place for a callback, plays
/// `callback_confirm` and goes to the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallbackOffer {
    /// The wait before the offer.
    pub after: Spanned<Duration>,
    /// Where the call goes once the callback is kept.
    pub target: Target,
    /// The whole clause.
    pub span: Span,
}

/// `overflow general after 30s` or `overflow general when none_idle`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overflow {
    /// The other queue.
    pub queue: Ident,
    /// When its agents are offered the call too.
    pub when: OverflowWhen,
    /// The whole clause.
    pub span: Span,
}

/// When an overflow applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OverflowWhen {
    /// `after 30s` of waiting.
    After {
        /// The wait.
        duration: Spanned<Duration>,
    },
    /// `when none_idle`: as soon as no agent of the first queue is idle.
    NoneIdle {
        /// The words `when none_idle`.
        span: Span,
    },
}

/// `level 4 if customer.vip == true`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// The least agent level (1..5, checked by the compiler).
    pub level: Spanned<u32>,
    /// Only when this holds; otherwise any level.
    pub guard: Option<Expr>,
    /// The whole clause.
    pub span: Span,
}

/// Where a transfer sends the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Destination {
    /// `queue general`
    Queue {
        /// The queue's name in the configuration.
        name: Ident,
    },
    /// `to "sip:95500@pbx"`
    To {
        /// The URI.
        uri: Spanned<String>,
    },
}

/// `priority 10 if customer.vip == true`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Priority {
    /// The priority (a number expression).
    pub value: Expr,
    /// Only when this holds; otherwise 0.
    pub guard: Option<Expr>,
    /// The whole clause.
    pub span: Span,
}

/// `max_wait 120s -> leave_message`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxWait {
    /// Longest wait.
    pub duration: Spanned<Duration>,
    /// Where to go then.
    pub target: Target,
}

// ---------------------------------------------------------------------------------------------
// survey

/// `survey NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Survey {
    /// `question NAME PROMPT scale 1..5 | choices 1 = "yes", ...`, in order.
    pub questions: Vec<Question>,
    /// `timeout 8s`
    pub timeout: Option<Spanned<Duration>>,
    /// `inter_digit 3s`
    pub inter_digit: Option<Spanned<Duration>>,
    /// `attempts 2` (per question; an unanswered question is stored as no answer)
    pub attempts: Option<Attempts>,
    /// `no_input play p`
    pub no_input: Option<Vec<Ident>>,
    /// `no_match play p`
    pub no_match: Option<Vec<Ident>>,
    /// `barge_in on|off`
    pub barge_in: Option<Switch>,
    /// `save TABLE`
    pub save: Option<Ident>,
    /// `next TARGET`
    pub next: Option<Target>,
}

/// One survey question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    /// The answer's name (a column of the saved row).
    pub name: Ident,
    /// The prompt that asks it.
    pub prompt: Ident,
    /// What counts as an answer.
    pub answers: Answers,
    /// The whole clause.
    pub span: Span,
}

/// The answers a question accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Answers {
    /// `scale 1..5`: a key in the range, stored as a number.
    Scale {
        /// Lowest score.
        min: Spanned<i64>,
        /// Highest score.
        max: Spanned<i64>,
    },
    /// `choices 1 = "yes", 2 = "no"`: a key, stored as its label.
    Choices {
        /// Key and label pairs.
        choices: Vec<(KeyLit, Spanned<String>)>,
    },
}

// ---------------------------------------------------------------------------------------------
// record

/// `record NAME { ... }`
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Record {
    /// `prompt p`
    pub prompt: Option<Vec<Ident>>,
    /// `beep`
    pub beep: Option<Span>,
    /// `max 60s`
    pub max: Option<Spanned<Duration>>,
    /// `silence 5s`
    pub silence: Option<Spanned<Duration>>,
    /// `terminator "#"`
    pub terminator: Option<KeyLit>,
    /// `save TABLE`
    pub save: Option<Ident>,
    /// `next TARGET`
    pub next: Option<Target>,
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// A duration in milliseconds (`500ms`, `5s`, `2m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Duration {
    /// Milliseconds.
    pub millis: u64,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The forms of expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExprKind {
    /// `"text"` (escapes resolved).
    Str(String),
    /// `12`, `-3`, `58.30`: an exact decimal.
    Number(Decimal),
    /// `true` / `false`
    Bool(bool),
    /// `5s`
    Duration(Duration),
    /// `caller`, `customer.balance`, `call.id`: a variable and its fields.
    Path(Vec<Ident>),
    /// `len(x)`, `in_hours(agents)`, `now()`
    Call {
        /// The function.
        name: Ident,
        /// Its arguments.
        args: Vec<Expr>,
    },
    /// `not x`, `-x`
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `a + b`, `a == b`, `a and b`
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryOp {
    /// `not`
    Not,
    /// `-`
    Neg,
}

/// Infix operators, loosest first: `or`; `and`; comparisons; `+ -`; `* /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }
}

/// Words that cannot be used as names. Clause words (`prompt`, `timeout`, `language`, ...) are
/// only keywords where a clause is expected, so `language` stays usable as a variable.
pub const KEYWORDS: &[&str] = &[
    "flow", "import", "step", "menu", "input", "lookup", "transfer", "survey", "record", "play",
    "say", "set", "pause", "if", "goto", "hangup", "repeat", "back", "main", "true", "false",
    "and", "or", "not",
];

/// True when `word` is reserved.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}
