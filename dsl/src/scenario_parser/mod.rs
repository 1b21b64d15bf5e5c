//! The parser of `.scenario` files (see "Scenario tests" in the language spec).
//!
//! Scenario files are line-oriented. The pest grammar `src/scenario.pest` cuts each line into
//! tokens (it accepts every line), and this module reads the tokens of each line by hand, so
//! that every error is worded for QA ("expected `found`, `missing` or `error` after `->`") and
//! points at the offending token. A broken line yields one diagnostic and parsing goes on with
//! the next line, so one run reports every problem of a file.
//!
//! ```
//! use ivr_dsl::{parse_scenarios, FileId};
//! let parsed = parse_scenarios(FileId(0), "scenario \"hi\"\nflow hotline\nexpect play welcome\n");
//! assert!(parsed.diagnostics.is_empty());
//! assert_eq!(parsed.file.scenarios[0].steps.len(), 1);
//! ```

mod lex;

use crate::diagnostic::{Diagnostic, FileId};
use crate::scenario_ast::{
    AgentAction, DateTimeLit, Expectation, Literal, Mock, MockResult, Scenario, ScenarioFile,
    ScenarioStep, StepKind,
};
use crate::span::{Span, Spanned};
use lex::{LogicalLine, Tk, Token};
use rust_decimal::Decimal;
use std::str::FromStr;

/// A parsed scenario file: every scenario that could be read, and every problem found.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedScenarios {
    /// The scenarios (broken lines left out).
    pub file: ScenarioFile,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses a `.scenario` file. Never fails and never panics: problems are diagnostics, and the
/// lines around a broken line are still read.
pub fn parse_scenarios(file: FileId, source: &str) -> ParsedScenarios {
    let mut p = FileParser {
        file,
        scenarios: Vec::new(),
        current: None,
        diagnostics: Vec::new(),
        reported_before_first: false,
    };
    for line in lex::logical_lines(source) {
        p.line(&line);
    }
    p.finish_scenario();
    let mut diagnostics = p.diagnostics;
    diagnostics.sort_by_key(|d| d.span.start);
    ParsedScenarios {
        file: ScenarioFile {
            scenarios: p.scenarios,
        },
        diagnostics,
    }
}

/// Diagnostic codes of this parser.
const SYNTAX: &str = "syntax";
const BAD_KEY: &str = "bad-key";
const BAD_VALUE: &str = "bad-value";
const MISSING_CLAUSE: &str = "missing-clause";
const DUPLICATE_CLAUSE: &str = "duplicate-clause";
const DUPLICATE_SCENARIO: &str = "duplicate-scenario";

/// The words a line may start with.
const LINE_KEYWORDS: &[&str] = &[
    "scenario", "flow", "caller", "called", "at", "mock", "press", "wait", "hangup", "agent",
    "expect",
];
/// The words after `expect`.
const EXPECTATIONS: &[&str] = &[
    "play", "say", "node", "var", "transfer", "record", "saved", "hangup", "outcome",
];
/// The kinds of `expect say`.
const SAY_KINDS: &[&str] = &["money", "number", "digits", "date", "time"];
/// The words after `agent`.
const AGENT_ACTIONS: &[&str] = &["answers", "busy", "hangs_up", "none"];
/// The answers of a mock.
const MOCK_RESULTS: &[&str] = &["found", "missing", "error"];

type PResult<T> = Result<T, Diagnostic>;

struct FileParser {
    file: FileId,
    scenarios: Vec<Scenario>,
    current: Option<Scenario>,
    diagnostics: Vec<Diagnostic>,
    reported_before_first: bool,
}

impl FileParser {
    fn line(&mut self, line: &LogicalLine<'_>) {
        let Some(first) = line.tokens.first() else {
            return;
        };
        if first.kind == Tk::Path && first.text == "scenario" {
            self.finish_scenario();
            let mut cur = self.cursor(line);
            cur.pos = 1;
            let (name, result) = cur.scenario_title();
            if let Err(d) = result {
                self.diagnostics.push(d);
            }
            if !name.node.is_empty()
                && let Some(prev) = self.scenarios.iter().find(|s| s.name.node == name.node)
            {
                self.diagnostics.push(
                    Diagnostic::warning(
                        DUPLICATE_SCENARIO,
                        self.file,
                        name.span,
                        format!("another scenario is also called \"{}\"", name.node),
                    )
                    .with_related(self.file, prev.name.span, "the other scenario")
                    .with_hint("give each scenario its own title, so that reports tell them apart"),
                );
            }
            self.current = Some(Scenario {
                name,
                flow: None,
                caller: None,
                called: None,
                at: None,
                mocks: Vec::new(),
                steps: Vec::new(),
                span: line.span,
            });
            return;
        }
        if self.current.is_none() {
            if !self.reported_before_first {
                self.reported_before_first = true;
                self.diagnostics.push(
                    Diagnostic::error(
                        SYNTAX,
                        self.file,
                        line.span,
                        "this line stands before the first `scenario` line",
                    )
                    .with_hint("each scenario starts with a line `scenario \"title\"`"),
                );
            }
            return;
        }
        let result = self.scenario_line(line);
        if let Some(s) = self.current.as_mut() {
            s.span = s.span.to(line.span);
        }
        if let Err(d) = result {
            self.diagnostics.push(d);
        }
    }

    fn cursor<'t, 'a>(&self, line: &'t LogicalLine<'a>) -> Cursor<'t, 'a> {
        Cursor {
            file: self.file,
            tokens: &line.tokens,
            comments: &line.comments,
            pos: 0,
            line_span: line.span,
        }
    }

    fn finish_scenario(&mut self) {
        let Some(s) = self.current.take() else {
            return;
        };
        if s.flow.is_none() {
            let span = if s.name.span == Span::default() {
                s.span
            } else {
                s.name.span
            };
            self.diagnostics.push(
                Diagnostic::error(MISSING_CLAUSE, self.file, span, "scenario has no `flow` line")
                    .with_hint("name the flow it calls, e.g. `flow hotline`"),
            );
        }
        self.scenarios.push(s);
    }

    /// A line inside a scenario (not its `scenario` line).
    fn scenario_line(&mut self, line: &LogicalLine<'_>) -> PResult<()> {
        let mut cur = self.cursor(line);
        let Some(first) = cur.next() else {
            return Ok(());
        };
        let file = self.file;
        let Some(scenario) = self.current.as_mut() else {
            return Ok(());
        };
        match (first.kind, first.text) {
            (Tk::Ellipsis, _) => {
                cur.end("...")?;
                scenario.steps.push(step(StepKind::Skip, line.span));
            }
            (Tk::Path, "flow") => {
                let name = cur.simple_name("`flow` needs the name of a flow, e.g. `flow hotline`")?;
                cur.end("flow")?;
                set_once(file, &mut scenario.flow, name, "flow")?;
            }
            (Tk::Path, kw @ ("caller" | "called")) => {
                let number = cur.phone(kw)?;
                cur.end(kw)?;
                let slot = if kw == "caller" {
                    &mut scenario.caller
                } else {
                    &mut scenario.called
                };
                set_once(file, slot, number, kw)?;
            }
            (Tk::Path, "at") => {
                let at = cur.date_time()?;
                cur.end("at")?;
                set_once(file, &mut scenario.at, at, "at")?;
            }
            (Tk::Path, "mock") => {
                let mock = cur.mock(line.span)?;
                scenario.mocks.push(mock);
            }
            (Tk::Path, "press") => {
                let keys = cur.press(first)?;
                scenario
                    .steps
                    .push(step(StepKind::Press { keys }, line.span));
            }
            (Tk::Path, "wait") => {
                let millis = cur.wait()?;
                cur.end("wait")?;
                scenario
                    .steps
                    .push(step(StepKind::Wait { millis }, line.span));
            }
            (Tk::Path, "hangup") => {
                cur.end("hangup")?;
                scenario.steps.push(step(StepKind::Hangup, line.span));
            }
            (Tk::Path, "agent") => {
                let action = cur.agent()?;
                cur.end("agent")?;
                scenario
                    .steps
                    .push(step(StepKind::Agent { action }, line.span));
            }
            (Tk::Path, "expect") => {
                let expectation = cur.expectation()?;
                scenario
                    .steps
                    .push(step(StepKind::Expect { expectation }, line.span));
            }
            (Tk::Path, word) => {
                let d = cur.err(first.span, format!("unknown line `{word}`"));
                let d = if EXPECTATIONS.contains(&word) {
                    d.with_hint(format!("`{word}` is an expectation: write `expect {word} ...`"))
                } else if let Some(s) = suggest(word, LINE_KEYWORDS) {
                    d.with_hint(format!("did you mean `{s}`?"))
                } else {
                    d.with_hint(lines_hint())
                };
                return Err(d);
            }
            (Tk::OpenStr, _) => return Err(cur.unterminated(first)),
            _ => {
                return Err(cur
                    .err(
                        first.span,
                        format!("a line cannot start with {}", describe(Some(&first))),
                    )
                    .with_hint(lines_hint()));
            }
        }
        Ok(())
    }
}

fn lines_hint() -> String {
    "a line starts with `flow`, `caller`, `called`, `at`, `mock`, `press`, `wait`, `hangup`, \
     `agent`, `expect`, `...` or `scenario`"
        .to_string()
}

fn step(kind: StepKind, span: Span) -> ScenarioStep {
    ScenarioStep { kind, span }
}

/// Stores a header value, or reports that the header was already given.
fn set_once<T>(
    file: FileId,
    slot: &mut Option<Spanned<T>>,
    value: Spanned<T>,
    what: &str,
) -> PResult<()> {
    if let Some(prev) = slot {
        return Err(Diagnostic::error(
            DUPLICATE_CLAUSE,
            file,
            value.span,
            format!("this scenario already has a `{what}` line"),
        )
        .with_related(file, prev.span, format!("the first `{what}`"))
        .with_hint(format!("a scenario has one `{what}` line; start a new `scenario` for another")));
    }
    *slot = Some(value);
    Ok(())
}

/// How a token is named in messages.
fn describe(tok: Option<&Token<'_>>) -> String {
    let Some(t) = tok else {
        return "the end of the line".to_string();
    };
    match t.kind {
        Tk::Str => format!("the string {}", shorten(t.text)),
        Tk::OpenStr => "an unterminated string".to_string(),
        Tk::Number => format!("the number `{}`", t.text),
        Tk::Duration => format!("the duration `{}`", t.text),
        Tk::Date => format!("the date `{}`", t.text),
        Tk::Time => format!("the time `{}`", t.text),
        _ => format!("`{}`", shorten(t.text)),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        let s: String = text.chars().take(37).collect();
        format!("{s}...")
    } else {
        text.to_string()
    }
}

/// Reads the tokens of one line.
struct Cursor<'t, 'a> {
    file: FileId,
    tokens: &'t [Token<'a>],
    comments: &'t [lex::Comment],
    pos: usize,
    line_span: Span,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<Token<'a>> {
        self.tokens.get(self.pos + ahead).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// The current token's span, or an empty span at the end of the line.
    fn here(&self) -> Span {
        match self.peek() {
            Some(t) => t.span,
            None => Span::new(self.line_span.end as usize, self.line_span.end as usize),
        }
    }

    fn err(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(SYNTAX, self.file, span, message)
    }

    /// "expected X, found Y" at the current token.
    fn expected(&self, what: &str) -> Diagnostic {
        let found = self.peek();
        if let Some(t) = found.filter(|t| t.kind == Tk::OpenStr) {
            return self.unterminated(t);
        }
        self.err(self.here(), format!("expected {what}, found {}", describe(found.as_ref())))
    }

    fn unterminated(&self, t: Token<'_>) -> Diagnostic {
        self.err(t.span, "this string has no closing `\"`")
            .with_hint("close the string on the same line")
    }

    /// The line must end here.
    fn end(&self, what: &str) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) if t.kind == Tk::OpenStr => Err(self.unterminated(t)),
            Some(t) => Err(self.err(
                t.span,
                format!(
                    "unexpected {} after the end of this `{what}` line",
                    describe(Some(&t))
                ),
            )),
        }
    }

    fn is_word(&self, word: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == Tk::Path && t.text == word)
    }

    /// A string token's text with escapes resolved.
    fn string(&self, t: Token<'_>) -> PResult<Spanned<String>> {
        unescape(self.file, t).map(|s| Spanned::new(s, t.span))
    }

    /// `scenario "title"`: the title, and an error when it is not a proper string. The title
    /// is returned either way so that the scenario's lines are still read.
    fn scenario_title(&mut self) -> (Spanned<String>, PResult<()>) {
        let Some(t) = self.next() else {
            let d = self
                .err(self.here(), "`scenario` needs a title in quotes")
                .with_hint("e.g. `scenario \"VIP customer reaches an agent\"`");
            return (Spanned::new(String::new(), Span::default()), Err(d));
        };
        if t.kind == Tk::Str {
            return match self.string(t) {
                Ok(name) if name.node.trim().is_empty() => {
                    let d = self
                        .err(t.span, "the scenario's title is empty")
                        .with_hint("say what the scenario checks, e.g. `scenario \"VIP customer reaches an agent\"`");
                    (name, Err(d))
                }
                Ok(name) => {
                    let r = self.end("scenario");
                    (name, r)
                }
                Err(d) => (Spanned::new(String::new(), t.span), Err(d)),
            };
        }
        if t.kind == Tk::OpenStr {
            let d = self.unterminated(t);
            let text = t.text.trim_start_matches('"').to_string();
            return (Spanned::new(text, t.span), Err(d));
        }
        // An unquoted title: keep the words, so that the scenario still has a name.
        let last = self.tokens.last().map_or(t.span, |l| l.span);
        let span = t.span.to(last);
        let d = self
            .err(span, "the title of a scenario is written in quotes")
            .with_hint("e.g. `scenario \"VIP customer reaches an agent\"`");
        self.pos = self.tokens.len();
        let words: Vec<&str> = self.tokens[1..].iter().map(|t| t.text).collect();
        (Spanned::new(words.join(" "), span), Err(d))
    }

    /// A name without dots (flow, query, prompt, queue, table ...).
    fn simple_name(&mut self, need: &str) -> PResult<Spanned<String>> {
        match self.peek() {
            Some(t) if t.kind == Tk::Path && !t.text.contains('.') => {
                self.pos += 1;
                Ok(Spanned::new(t.text.to_string(), t.span))
            }
            Some(t) if t.kind == Tk::Path => Err(self
                .err(t.span, format!("`{}` has a dot, but a name here has none", t.text))
                .with_hint(need.to_string())),
            Some(t) if t.kind == Tk::Str => Err(self
                .err(t.span, "a name here is written without quotes")
                .with_hint(need.to_string())),
            _ => Err(self.expected("a name").with_hint(need.to_string())),
        }
    }

    /// A name or a dotted path (`customer.vip`, `common.goodbye`).
    fn path(&mut self, need: &str) -> PResult<Spanned<String>> {
        match self.peek() {
            Some(t) if t.kind == Tk::Path => {
                self.pos += 1;
                Ok(Spanned::new(t.text.to_string(), t.span))
            }
            Some(t) if t.kind == Tk::Str => Err(self
                .err(t.span, "a name here is written without quotes")
                .with_hint(need.to_string())),
            _ => Err(self.expected("a name").with_hint(need.to_string())),
        }
    }

    /// `caller "13800000001"` or `caller 13800000001`.
    fn phone(&mut self, kw: &str) -> PResult<Spanned<String>> {
        let hint = format!("e.g. `{kw} \"13800000001\"`");
        match self.peek() {
            Some(t) if t.kind == Tk::Str => {
                self.pos += 1;
                self.string(t)
            }
            Some(t) if t.kind == Tk::Number && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                self.pos += 1;
                Ok(Spanned::new(t.text.to_string(), t.span))
            }
            Some(t) if matches!(t.kind, Tk::BadWord | Tk::Number | Tk::Path) => Err(self
                .err(t.span, format!("`{}` is not a plain number", t.text))
                .with_hint(format!("write other numbers in quotes: `{kw} \"{}\"`", t.text))),
            _ => Err(self
                .expected(&format!("a number after `{kw}`"))
                .with_hint(hint)),
        }
    }

    /// `at 2026-11-23 10:00` (seconds optional; the time too, then midnight).
    fn date_time(&mut self) -> PResult<Spanned<DateTimeLit>> {
        let hint = "e.g. `at 2026-11-23 10:00` (seconds optional: `10:00:30`)";
        let Some(d) = self.peek().filter(|t| t.kind == Tk::Date) else {
            if let Some(t) = self.peek().filter(|t| t.kind == Tk::Str) {
                return Err(self
                    .err(t.span, "the date and time of `at` are written without quotes")
                    .with_hint(hint));
            }
            return Err(self.expected("a date after `at`").with_hint(hint));
        };
        self.pos += 1;
        let (year, month, day) = parse_date(self.file, d)?;
        let (mut hour, mut minute, mut second) = (0, 0, 0);
        let mut span = d.span;
        if let Some(t) = self.peek().filter(|t| t.kind == Tk::Time) {
            self.pos += 1;
            (hour, minute, second) = parse_time(self.file, t)?;
            span = span.to(t.span);
        } else if self.peek().is_some() {
            return Err(self.expected("a time such as `10:00`").with_hint(hint));
        }
        Ok(Spanned::new(
            DateTimeLit {
                year,
                month,
                day,
                hour,
                minute,
                second,
            },
            span,
        ))
    }

    /// `mock QUERY -> found { ... } | missing | error` (after `mock`).
    fn mock(&mut self, line: Span) -> PResult<Mock> {
        let query = self.simple_name("e.g. `mock customer_by_phone -> found { id: 1 }`")?;
        if self.peek().is_none_or(|t| t.kind != Tk::Arrow) {
            let d = self.expected(&format!("`->` after `{}`", query.node));
            let d = if self.peek().is_some_and(|t| t.text == "-" || t.text == ">") {
                d.with_hint("write the arrow as `->`, with no space inside")
            } else {
                d.with_hint(format!("e.g. `mock {} -> found {{ id: 1 }}`", query.node))
            };
            return Err(d);
        }
        self.pos += 1;
        let what = "expected `found`, `missing` or `error` after `->`";
        let result = match self.peek() {
            Some(t) if t.kind == Tk::Path && t.text == "found" => {
                self.pos += 1;
                if self.peek().is_none_or(|t| t.kind != Tk::LBrace) {
                    return Err(self
                        .expected("`{` after `found`")
                        .with_hint("list the row's fields: `found { id: 1, name: \"张三\" }`"));
                }
                let fields = self.record("mock")?;
                MockResult::Found { fields }
            }
            Some(t) if t.kind == Tk::Path && t.text == "missing" => {
                self.pos += 1;
                MockResult::Missing
            }
            Some(t) if t.kind == Tk::Path && t.text == "error" => {
                self.pos += 1;
                MockResult::Error
            }
            Some(t) if t.kind == Tk::Path => {
                let d = self.err(t.span, format!("{what}, found `{}`", t.text));
                return Err(d.with_opt_hint(did_you_mean(t.text, MOCK_RESULTS)));
            }
            found => {
                return Err(self
                    .err(self.here(), format!("{what}, found {}", describe(found.as_ref())))
                    .with_hint("e.g. `-> found { id: 1 }`, `-> missing` or `-> error`"));
            }
        };
        self.end("mock")?;
        Ok(Mock {
            query,
            result,
            span: line,
        })
    }

    /// `{ field: value, ... }` (at the `{`); a trailing comma is allowed.
    fn record(&mut self, what: &str) -> PResult<Vec<(Spanned<String>, Spanned<Literal>)>> {
        let open = self.here();
        self.pos += 1;
        let mut fields: Vec<(Spanned<String>, Spanned<Literal>)> = Vec::new();
        loop {
            match self.peek() {
                Some(t) if t.kind == Tk::RBrace => {
                    self.pos += 1;
                    return Ok(fields);
                }
                None => {
                    return Err(self
                        .err(open, "this `{` is never closed")
                        .with_hint(format!(
                            "end the fields with `}}`; a {what} may go on over several lines \
                             that each start with `field:`"
                        )));
                }
                _ => {}
            }
            let name = match self.peek() {
                Some(t) if t.kind == Tk::Path && !t.text.contains('.') => {
                    self.pos += 1;
                    Spanned::new(t.text.to_string(), t.span)
                }
                Some(t) if t.kind == Tk::Str && self.peek_at(1).is_some_and(|c| c.kind == Tk::Colon) => {
                    self.pos += 1;
                    self.string(t)?
                }
                _ => {
                    return Err(self
                        .expected("a field name or `}`")
                        .with_hint("fields are written `name: value`, separated by commas"));
                }
            };
            if self.peek().is_none_or(|t| t.kind != Tk::Colon) {
                let d = self.expected(&format!("`:` after the field name `{}`", name.node));
                let d = if self.peek().is_some_and(|t| t.text == "=" || t.kind == Tk::EqEq) {
                    d.with_hint(format!("write `{}: value`", name.node))
                } else {
                    d
                };
                return Err(d);
            }
            self.pos += 1;
            let value = self.literal()?;
            if let Some((first, _)) = fields.iter().find(|(n, _)| n.node == name.node) {
                return Err(self
                    .err(name.span, format!("the field `{}` is given twice", name.node))
                    .with_related(self.file, first.span, "given first here"));
            }
            fields.push((name, value));
            match self.peek() {
                Some(t) if t.kind == Tk::Comma => self.pos += 1,
                Some(t) if t.kind == Tk::RBrace => {}
                Some(t) if t.kind == Tk::Path || t.kind == Tk::Str => {
                    return Err(self
                        .expected("`,` or `}`")
                        .with_hint("separate the fields with commas"));
                }
                None => {
                    return Err(self
                        .err(open, "this `{` is never closed")
                        .with_hint(format!(
                            "end the fields with `}}`; a {what} may go on over several lines \
                             that each start with `field:`"
                        )));
                }
                _ => return Err(self.expected("`,` or `}`")),
            }
        }
    }

    /// A value: a string, a number, `true`/`false`, a duration, or a bare date or time (kept
    /// as text).
    fn literal(&mut self) -> PResult<Spanned<Literal>> {
        let hint = "a value is a string in quotes, a number, `true`, `false` or a duration";
        let Some(t) = self.peek() else {
            return Err(self.expected("a value").with_hint(hint));
        };
        let value = match t.kind {
            Tk::Str => Literal::Text(unescape(self.file, t)?),
            Tk::Number => Literal::Number(parse_decimal(self.file, t)?),
            Tk::Duration => Literal::Duration(parse_duration(self.file, t)?),
            Tk::Date => {
                parse_date(self.file, t)?;
                Literal::Text(t.text.to_string())
            }
            Tk::Time => {
                parse_time(self.file, t)?;
                Literal::Text(t.text.to_string())
            }
            Tk::Path if t.text == "true" => Literal::Bool(true),
            Tk::Path if t.text == "false" => Literal::Bool(false),
            Tk::Path => {
                return Err(self
                    .err(t.span, format!("expected a value, found `{}`", t.text))
                    .with_hint(format!("write text in quotes: \"{}\"", t.text)));
            }
            _ => return Err(self.expected("a value").with_hint(hint)),
        };
        self.pos += 1;
        Ok(Spanned::new(value, t.span))
    }

    /// `press "KEYS"` or `press 12` / `press *` (after `press`).
    fn press(&mut self, kw: Token<'_>) -> PResult<Spanned<String>> {
        let need = "`press` needs keys such as `1` or \"123#\"";
        let Some(first) = self.peek() else {
            let d = self.err(kw.span, need);
            return Err(if self.comments.first().is_some_and(|c| c.hash) {
                d.with_hint("`#` starts a comment; write `press \"#\"` to press the hash key")
            } else {
                d
            });
        };
        if first.kind == Tk::Str {
            self.pos += 1;
            let keys = self.string(first)?;
            if keys.node.is_empty() {
                return Err(self.err(first.span, need));
            }
            check_keys(self.file, first.text, first.span.start as usize)?;
            self.end("press")?;
            return Ok(keys);
        }
        if first.kind == Tk::OpenStr {
            return Err(self.unterminated(first));
        }
        // bare keys: the rest of the line, which must be one run without spaces
        let rest = &self.tokens[self.pos..];
        let mut end = first.span.end;
        let mut text = String::new();
        for t in rest {
            if t.span.start != end && !text.is_empty() {
                return Err(self
                    .err(t.span, "keys with spaces between them are written in quotes")
                    .with_hint(format!("e.g. `press \"{}{}\"`", text, t.text)));
            }
            if t.kind == Tk::Str || t.kind == Tk::OpenStr {
                return Err(self.err(t.span, "bare keys and a string cannot be mixed").with_hint(need));
            }
            text.push_str(t.text);
            end = t.span.end;
        }
        self.pos = self.tokens.len();
        let span = first.span.to(Span::new(end as usize, end as usize));
        check_keys(self.file, &text, span.start as usize)?;
        // a `#` comment glued to the keys: the `#` was meant as a key
        if let Some(c) = self.comments.iter().find(|c| c.hash && c.span.start == end) {
            return Err(self
                .err(c.span, "`#` here starts a comment, so it is not pressed")
                .with_hint(format!("write the keys in quotes: `press \"{text}#\"`")));
        }
        Ok(Spanned::new(text, span))
    }

    /// `wait 6s` (after `wait`).
    fn wait(&mut self) -> PResult<u64> {
        match self.peek() {
            Some(t) if t.kind == Tk::Duration => {
                self.pos += 1;
                parse_duration(self.file, t)
            }
            Some(t) if t.kind == Tk::Number => Err(self
                .err(t.span, format!("`{}` has no unit", t.text))
                .with_hint(format!("add a unit: `{0}s`, `{0}ms` or `{0}m`", t.text))),
            _ => Err(self
                .expected("a duration after `wait`")
                .with_hint("e.g. `wait 6s`, `wait 500ms`, `wait 2m`")),
        }
    }

    /// `agent answers|busy|hangs_up|none` (after `agent`).
    fn agent(&mut self) -> PResult<AgentAction> {
        let hint = "`agent answers`, `agent busy`, `agent hangs_up` or `agent none`";
        let Some(t) = self.peek().filter(|t| t.kind == Tk::Path) else {
            return Err(self.expected("what the agent does").with_hint(hint));
        };
        self.pos += 1;
        Ok(match t.text {
            "answers" => AgentAction::Answers,
            "busy" => AgentAction::Busy,
            "hangs_up" => AgentAction::HangsUp,
            "none" => AgentAction::None,
            other => {
                let d = self.err(t.span, format!("unknown agent action `{other}`"));
                let joined = self
                    .peek()
                    .filter(|n| n.kind == Tk::Path)
                    .map(|n| format!("{other}_{}", n.text));
                let hint = match joined {
                    Some(j) if AGENT_ACTIONS.contains(&j.as_str()) => {
                        format!("did you mean `{j}`?")
                    }
                    _ => did_you_mean(other, AGENT_ACTIONS).unwrap_or_else(|| hint.to_string()),
                };
                return Err(d.with_hint(hint));
            }
        })
    }

    /// `expect ...` (after `expect`); reads the whole line.
    fn expectation(&mut self) -> PResult<Expectation> {
        let Some(t) = self.peek().filter(|t| t.kind == Tk::Path) else {
            return Err(self
                .expected("what is expected after `expect`")
                .with_hint("e.g. `expect play welcome`, `expect hangup`, `expect outcome transferred`"));
        };
        self.pos += 1;
        let e = match t.text {
            "play" => Expectation::Play {
                prompt: self.simple_name("e.g. `expect play welcome` (a prompt id)")?,
            },
            "say" => self.expect_say()?,
            "node" => Expectation::Node {
                name: self.path("e.g. `expect node satisfaction` or `expect node common.goodbye`")?,
            },
            "var" => self.expect_var()?,
            "transfer" => self.expect_transfer()?,
            "record" => Expectation::Record {
                name: self.simple_name("e.g. `expect record leave_message`")?,
            },
            "saved" => {
                let table = self.simple_name("e.g. `expect saved surveys { overall: 5 }`")?;
                if self.peek().is_none_or(|t| t.kind != Tk::LBrace) {
                    return Err(self
                        .expected(&format!("`{{` after `{}`", table.node))
                        .with_hint(format!("e.g. `expect saved {} {{ overall: 5 }}`", table.node)));
                }
                let fields = self.record("`saved` expectation")?;
                Expectation::Saved { table, fields }
            }
            "hangup" => Expectation::Hangup,
            "outcome" => Expectation::Outcome {
                outcome: self.simple_name(
                    "`self_service`, `transferred`, `abandoned` or `failed`",
                )?,
            },
            other => {
                let d = self.err(t.span, format!("unknown expectation `{other}`"));
                return Err(d.with_hint(did_you_mean(other, EXPECTATIONS).unwrap_or_else(|| {
                    "expectations: `play`, `say`, `node`, `var`, `transfer`, `record`, `saved`, \
                     `hangup`, `outcome`"
                        .to_string()
                })));
            }
        };
        self.end("expect")?;
        Ok(e)
    }

    fn expect_say(&mut self) -> PResult<Expectation> {
        let hint = "`expect say money 58.30`; kinds: `money`, `number`, `digits`, `date`, `time`";
        let Some(k) = self.peek().filter(|t| t.kind == Tk::Path) else {
            return Err(self.expected("what is said (`money`, `number`, `digits`, `date` or `time`)").with_hint(hint));
        };
        if !SAY_KINDS.contains(&k.text) {
            let d = self.err(k.span, format!("unknown kind of value `{}`", k.text));
            return Err(d.with_hint(did_you_mean(k.text, SAY_KINDS).unwrap_or_else(|| hint.to_string())));
        }
        self.pos += 1;
        let kind = Spanned::new(k.text.to_string(), k.span);
        let value = self.literal()?;
        Ok(Expectation::Say { kind, value })
    }

    fn expect_var(&mut self) -> PResult<Expectation> {
        let path = self.path("e.g. `expect var customer.vip == true`")?;
        match self.peek() {
            Some(t) if t.kind == Tk::EqEq => self.pos += 1,
            Some(t) if t.text == "=" => {
                return Err(self
                    .err(t.span, "expected `==`, found `=`")
                    .with_hint(format!("compare with `==`: `expect var {} == ...`", path.node)));
            }
            _ => {
                return Err(self
                    .expected(&format!("`==` after `{}`", path.node))
                    .with_hint(format!("e.g. `expect var {} == true`", path.node)));
            }
        }
        let value = self.literal()?;
        Ok(Expectation::Var { path, value })
    }

    fn expect_transfer(&mut self) -> PResult<Expectation> {
        let hint = "`expect transfer queue general [priority 10]` or `expect transfer to \"sip:...\"`";
        if self.is_word("queue") {
            self.pos += 1;
            let queue = self.simple_name("e.g. `expect transfer queue general`")?;
            let mut priority = None;
            if self.is_word("priority") {
                self.pos += 1;
                match self.peek() {
                    Some(t) if t.kind == Tk::Number => {
                        self.pos += 1;
                        priority = Some(Spanned::new(parse_decimal(self.file, t)?, t.span));
                    }
                    _ => {
                        return Err(self
                            .expected("a number after `priority`")
                            .with_hint("e.g. `priority 10`"));
                    }
                }
            }
            return Ok(Expectation::TransferQueue { queue, priority });
        }
        if self.is_word("to") {
            self.pos += 1;
            return match self.peek() {
                Some(t) if t.kind == Tk::Str => {
                    self.pos += 1;
                    Ok(Expectation::TransferTo {
                        uri: self.string(t)?,
                    })
                }
                _ => Err(self
                    .expected("an address in quotes after `to`")
                    .with_hint("e.g. `expect transfer to \"sip:95500@pbx\"`")),
            };
        }
        let d = self.expected("`queue` or `to` after `transfer`");
        let d = match self.peek().filter(|t| t.kind == Tk::Path) {
            Some(t) => d.with_hint(did_you_mean(t.text, &["queue", "to"]).unwrap_or_else(|| hint.to_string())),
            None => d.with_hint(hint),
        };
        Err(d)
    }
}

/// Resolves the escapes `\"`, `\\`, `\n`, `\t` of a string token (quotes included).
fn unescape(file: FileId, t: Token<'_>) -> PResult<String> {
    let inner = t
        .text
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t.text);
    let base = t.span.start as usize + 1;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((j, other)) => {
                let span = Span::new(base + i, base + j + other.len_utf8());
                return Err(Diagnostic::error(
                    SYNTAX,
                    file,
                    span,
                    format!("unknown escape `\\{other}` in a string"),
                )
                .with_hint("the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`; write `\\\\` for a backslash"));
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// Checks that every character is a DTMF key; `text` starts at byte `start` of the file.
fn check_keys(file: FileId, text: &str, start: usize) -> PResult<()> {
    let (inner, base) = match text.strip_prefix('"') {
        Some(rest) => (rest.strip_suffix('"').unwrap_or(rest), start + 1),
        None => (text, start),
    };
    for (i, c) in inner.char_indices() {
        if !(c.is_ascii_digit() || c == '*' || c == '#') {
            let span = Span::new(base + i, base + i + c.len_utf8());
            let shown = if c == '\\' { "\\".to_string() } else { c.to_string() };
            return Err(Diagnostic::error(
                BAD_KEY,
                file,
                span,
                format!("`{shown}` is not a key"),
            )
            .with_hint("keys are `0` to `9`, `*` and `#`"));
        }
    }
    Ok(())
}

fn bad_value(file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(BAD_VALUE, file, span, message)
}

fn parse_decimal(file: FileId, t: Token<'_>) -> PResult<Decimal> {
    Decimal::from_str(t.text).map_err(|_| {
        bad_value(file, t.span, format!("the number `{}` is too large", shorten(t.text)))
            .with_hint("numbers have at most 28 digits")
    })
}

fn parse_duration(file: FileId, t: Token<'_>) -> PResult<u64> {
    let (digits, factor) = if let Some(d) = t.text.strip_suffix("ms") {
        (d, 1u64)
    } else if let Some(d) = t.text.strip_suffix('s') {
        (d, 1_000)
    } else if let Some(d) = t.text.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = t.text.strip_suffix('h') {
        (d, 3_600_000)
    } else {
        (t.text, 1)
    };
    let too_long = || {
        bad_value(file, t.span, format!("the duration `{}` is too long", shorten(t.text)))
    };
    let amount = Decimal::from_str(digits).map_err(|_| too_long())?;
    let millis = amount
        .checked_mul(Decimal::from(factor))
        .ok_or_else(too_long)?;
    if !millis.fract().is_zero() {
        return Err(bad_value(
            file,
            t.span,
            format!("`{}` is not a whole number of milliseconds", t.text),
        ));
    }
    u64::try_from(millis).map_err(|_| too_long())
}

fn parse_date(file: FileId, t: Token<'_>) -> PResult<(i32, u32, u32)> {
    let bad = |what: &str| {
        bad_value(file, t.span, format!("`{}` is not a date: {what}", t.text))
            .with_hint("write dates as `2026-11-23` (year-month-day)")
    };
    let mut parts = t.text.split('-');
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day)) = (next(), next(), next()) else {
        return Err(bad("it needs a year, a month and a day"));
    };
    if !(1..=12).contains(&month) {
        return Err(bad("the month must be 1 to 12"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return Err(bad(&format!("that month has days 1 to {days}")));
    }
    // four digits, so it always fits
    let year = i32::try_from(year).map_err(|_| bad("the year is too large"))?;
    Ok((year, month, day))
}

fn parse_time(file: FileId, t: Token<'_>) -> PResult<(u32, u32, u32)> {
    let bad = |what: &str| {
        bad_value(file, t.span, format!("`{}` is not a time: {what}", t.text))
            .with_hint("write times as `10:00` or `10:00:30`")
    };
    let parts: Vec<Option<u32>> = t.text.split(':').map(|p| p.parse().ok()).collect();
    let (hour, minute, second) = match parts.as_slice() {
        [Some(h), Some(m)] => (*h, *m, 0),
        [Some(h), Some(m), Some(s)] => (*h, *m, *s),
        _ => return Err(bad("it needs hours and minutes")),
    };
    if hour > 23 {
        return Err(bad("the hour must be 0 to 23"));
    }
    if minute > 59 {
        return Err(bad("the minutes must be 0 to 59"));
    }
    if second > 59 {
        return Err(bad("the seconds must be 0 to 59"));
    }
    Ok((hour, minute, second))
}

/// ``did you mean `x`?`` for the nearest candidate, if one is near enough.
fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// The candidate nearest to `word` (optimal string alignment distance, so that a swap of two
/// letters counts once), if it is near enough to be a likely typo.
fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let len = lower.chars().count();
    let limit = match len {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&lower, c), *c))
        .filter(|(d, c)| *d <= limit || (len >= 3 && c.starts_with(lower.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // words longer than this are no typo of a keyword; avoid quadratic work on fuzzed input
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("plya", EXPECTATIONS), Some("play"));
        assert_eq!(suggest("expct", LINE_KEYWORDS), Some("expect"));
        assert_eq!(suggest("Expect", LINE_KEYWORDS), Some("expect"));
        assert_eq!(suggest("hangs", AGENT_ACTIONS), Some("hangs_up"));
        assert_eq!(suggest("zebra", LINE_KEYWORDS), None);
    }

    #[test]
    fn durations() {
        let t = |text: &'static str| Token {
            kind: Tk::Duration,
            text,
            span: Span::default(),
        };
        let f = FileId(0);
        assert_eq!(parse_duration(f, t("500ms")).ok(), Some(500));
        assert_eq!(parse_duration(f, t("5s")).ok(), Some(5_000));
        assert_eq!(parse_duration(f, t("1.5s")).ok(), Some(1_500));
        assert_eq!(parse_duration(f, t("2m")).ok(), Some(120_000));
        assert_eq!(parse_duration(f, t("1h")).ok(), Some(3_600_000));
        assert!(parse_duration(f, t("1.5ms")).is_err());
        assert!(parse_duration(f, t("99999999999999999999999999h")).is_err());
    }
}
