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
mod line;
mod values;

use crate::diagnostic::{Diagnostic, FileId};
use crate::scenario_ast::{Scenario, ScenarioFile, ScenarioStep, StepKind};
use crate::span::{Span, Spanned};
use lex::{LogicalLine, Tk};
use line::{Cursor, describe};
use values::suggest;

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
    "scenario", "flow", "caller", "called", "at", "contact", "mock", "press", "wait", "hangup",
    "agent", "expect",
];
/// The words after `expect`.
const EXPECTATIONS: &[&str] = &[
    "play", "say", "node", "var", "transfer", "record", "saved", "hangup", "served", "outcome",
    "ended_by", "callback",
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
                contact: None,
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
                    .with_hint(match suggest(first.text, &["scenario"]) {
                        Some(_) if first.kind == Tk::Path => {
                            format!(
                                "did you mean `scenario`? (`{}` is not a keyword)",
                                first.text
                            )
                        }
                        _ => "each scenario starts with a line `scenario \"title\"`".to_string(),
                    }),
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
                Diagnostic::error(
                    MISSING_CLAUSE,
                    self.file,
                    span,
                    "scenario has no `flow` line",
                )
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
                let name =
                    cur.simple_name("`flow` needs the name of a flow, e.g. `flow hotline`")?;
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
            (Tk::Path, "contact") => {
                if cur.peek().is_none_or(|t| t.kind != Tk::LBrace) {
                    return Err(cur.expected("`{` after `contact`").with_hint(
                        "give the campaign's list row: `contact { phone: \"13800000001\", arrears: 58.30 }`",
                    ));
                }
                let fields = cur.record("contact")?;
                cur.end("contact")?;
                set_once(
                    file,
                    &mut scenario.contact,
                    Spanned::new(fields, line.span),
                    "contact",
                )?;
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
                    d.with_hint(format!(
                        "`{word}` is an expectation: write `expect {word} ...`"
                    ))
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
    "a line starts with `flow`, `caller`, `called`, `at`, `contact`, `mock`, `press`, `wait`, \
     `hangup`, `agent`, `expect`, `...` or `scenario`"
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
        .with_hint(format!(
            "a scenario has one `{what}` line; start a new `scenario` for another"
        )));
    }
    *slot = Some(value);
    Ok(())
}
