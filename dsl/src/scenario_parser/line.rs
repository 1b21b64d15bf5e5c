//! Reading the tokens of one line: every kind of line, and its errors in words.

use super::lex::{Comment, Tk, Token};
use super::values::{
    check_keys, did_you_mean, parse_date, parse_decimal, parse_duration, parse_time, shorten,
    unescape,
};
use super::{AGENT_ACTIONS, EXPECTATIONS, MOCK_RESULTS, PResult, SAY_KINDS, SYNTAX};
use crate::diagnostic::{Diagnostic, FileId};
use crate::scenario_ast::{AgentAction, DateTimeLit, Expectation, Literal, Mock, MockResult};
use crate::span::{Span, Spanned};

/// How a token is named in messages.
pub(super) fn describe(tok: Option<&Token<'_>>) -> String {
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

/// Reads the tokens of one line.
pub(super) struct Cursor<'t, 'a> {
    pub(super) file: FileId,
    pub(super) tokens: &'t [Token<'a>],
    pub(super) comments: &'t [Comment],
    pub(super) pos: usize,
    pub(super) line_span: Span,
}

impl<'a> Cursor<'_, 'a> {
    pub(super) fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    pub(super) fn peek_at(&self, ahead: usize) -> Option<Token<'a>> {
        self.tokens.get(self.pos + ahead).copied()
    }

    pub(super) fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// The current token's span, or an empty span at the end of the line.
    pub(super) fn here(&self) -> Span {
        match self.peek() {
            Some(t) => t.span,
            None => Span::new(self.line_span.end as usize, self.line_span.end as usize),
        }
    }

    pub(super) fn err(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(SYNTAX, self.file, span, message)
    }

    /// "expected X, found Y" at the current token.
    pub(super) fn expected(&self, what: &str) -> Diagnostic {
        let found = self.peek();
        if let Some(t) = found.filter(|t| t.kind == Tk::OpenStr) {
            return self.unterminated(t);
        }
        self.err(
            self.here(),
            format!("expected {what}, found {}", describe(found.as_ref())),
        )
    }

    pub(super) fn unterminated(&self, t: Token<'_>) -> Diagnostic {
        self.err(t.span, "this string has no closing `\"`")
            .with_hint("close the string on the same line")
    }

    /// The line must end here.
    pub(super) fn end(&self, what: &str) -> PResult<()> {
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

    pub(super) fn is_word(&self, word: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == Tk::Path && t.text == word)
    }

    /// A string token's text with escapes resolved.
    pub(super) fn string(&self, t: Token<'_>) -> PResult<Spanned<String>> {
        unescape(self.file, t).map(|s| Spanned::new(s, t.span))
    }

    /// `scenario "title"`: the title, and an error when it is not a proper string. The title
    /// is returned either way so that the scenario's lines are still read.
    pub(super) fn scenario_title(&mut self) -> (Spanned<String>, PResult<()>) {
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
    pub(super) fn simple_name(&mut self, need: &str) -> PResult<Spanned<String>> {
        match self.peek() {
            Some(t) if t.kind == Tk::Path && !t.text.contains('.') => {
                self.pos += 1;
                Ok(Spanned::new(t.text.to_string(), t.span))
            }
            Some(t) if t.kind == Tk::Path => Err(self
                .err(
                    t.span,
                    format!("`{}` has a dot, but a name here has none", t.text),
                )
                .with_hint(need.to_string())),
            Some(t) if t.kind == Tk::Str => Err(self
                .err(t.span, "a name here is written without quotes")
                .with_hint(need.to_string())),
            _ => Err(self.expected("a name").with_hint(need.to_string())),
        }
    }

    /// The task of `expect served`: a name, bare or quoted as in the flow
    /// (`bill_inquiry`, `"bill_inquiry"`).
    pub(super) fn task_name(&mut self) -> PResult<Spanned<String>> {
        match self.peek() {
            Some(t) if t.kind == Tk::Str => {
                self.pos += 1;
                self.string(t)
            }
            _ => self
                .simple_name("e.g. `expect served bill_inquiry` (the task of a `served` action)"),
        }
    }

    /// A name or a dotted path (`customer.vip`, `common.goodbye`).
    pub(super) fn path(&mut self, need: &str) -> PResult<Spanned<String>> {
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
    pub(super) fn phone(&mut self, kw: &str) -> PResult<Spanned<String>> {
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
                .with_hint(format!(
                    "write other numbers in quotes: `{kw} \"{}\"`",
                    t.text
                ))),
            _ => Err(self
                .expected(&format!("a number after `{kw}`"))
                .with_hint(hint)),
        }
    }

    /// `at 2026-11-23 10:00` (seconds optional; the time too, then midnight).
    pub(super) fn date_time(&mut self) -> PResult<Spanned<DateTimeLit>> {
        let hint = "e.g. `at 2026-11-23 10:00` (seconds optional: `10:00:30`)";
        let Some(d) = self.peek().filter(|t| t.kind == Tk::Date) else {
            if let Some(t) = self.peek().filter(|t| t.kind == Tk::Str) {
                return Err(self
                    .err(
                        t.span,
                        "the date and time of `at` are written without quotes",
                    )
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
    pub(super) fn mock(&mut self, line: Span) -> PResult<Mock> {
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
                    .err(
                        self.here(),
                        format!("{what}, found {}", describe(found.as_ref())),
                    )
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
    pub(super) fn record(
        &mut self,
        what: &str,
    ) -> PResult<Vec<(Spanned<String>, Spanned<Literal>)>> {
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
                Some(t)
                    if t.kind == Tk::Str
                        && self.peek_at(1).is_some_and(|c| c.kind == Tk::Colon) =>
                {
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
                let d = if self
                    .peek()
                    .is_some_and(|t| t.text == "=" || t.kind == Tk::EqEq)
                {
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
                    .err(
                        name.span,
                        format!("the field `{}` is given twice", name.node),
                    )
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
    pub(super) fn literal(&mut self) -> PResult<Spanned<Literal>> {
        let hint = "a value is a string in quotes, a number, `true`, `false` or a duration";
        let Some(t) = self.peek() else {
            return Err(self.expected("a value").with_hint(hint));
        };
        let value = match t.kind {
            Tk::Str => Literal::Text(unescape(self.file, t)?),
            // Digits with a leading zero (`001234`, a card or phone number) are a digit
            // string, which still compares as a value with numbers (`0012` matches 12).
            Tk::Number
                if t.text.len() > 1
                    && t.text.starts_with('0')
                    && t.text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Literal::Text(t.text.to_string())
            }
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
            Tk::Path if t.text == "null" => Literal::Null,
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
    pub(super) fn press(&mut self, kw: Token<'_>) -> PResult<Spanned<String>> {
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
                    .err(
                        t.span,
                        "keys with spaces between them are written in quotes",
                    )
                    .with_hint(format!("e.g. `press \"{}{}\"`", text, t.text)));
            }
            if t.kind == Tk::Str || t.kind == Tk::OpenStr {
                return Err(self
                    .err(t.span, "bare keys and a string cannot be mixed")
                    .with_hint(need));
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
    pub(super) fn wait(&mut self) -> PResult<u64> {
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
    pub(super) fn agent(&mut self) -> PResult<AgentAction> {
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
    pub(super) fn expectation(&mut self) -> PResult<Expectation> {
        let Some(t) = self.peek().filter(|t| t.kind == Tk::Path) else {
            return Err(self.expected("what is expected after `expect`").with_hint(
                "e.g. `expect play welcome`, `expect hangup`, `expect outcome transferred`",
            ));
        };
        self.pos += 1;
        let e = match t.text {
            "play" => Expectation::Play {
                prompt: self.simple_name("e.g. `expect play welcome` (a prompt id)")?,
            },
            "say" => self.expect_say()?,
            "node" => Expectation::Node {
                name: self
                    .path("e.g. `expect node satisfaction` or `expect node common.goodbye`")?,
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
                        .with_hint(format!(
                            "e.g. `expect saved {} {{ overall: 5 }}`",
                            table.node
                        )));
                }
                let fields = self.record("`saved` expectation")?;
                Expectation::Saved { table, fields }
            }
            "hangup" => Expectation::Hangup,
            "callback" => {
                let word = self.simple_name("e.g. `expect callback queue general`")?;
                if word.node != "queue" {
                    return Err(self
                        .err(word.span, format!("`expect callback` is followed by `queue`, not `{}`", word.node))
                        .with_hint("e.g. `expect callback queue general`"));
                }
                Expectation::Callback {
                    queue: self.simple_name("e.g. `expect callback queue general` (a queue)")?,
                }
            }
            "served" => Expectation::Served {
                task: self.task_name()?,
            },
            "outcome" => Expectation::Outcome {
                outcome: self.simple_name(
                    "`transferred`, `callback`, `abandoned`, `message`, `self_service`, `failed` or `not_served`",
                )?,
            },
            "ended_by" => Expectation::EndedBy {
                by: self.simple_name("`caller`, `flow`, `agent` or `system`")?,
            },
            other => {
                let d = self.err(t.span, format!("unknown expectation `{other}`"));
                return Err(d.with_hint(did_you_mean(other, EXPECTATIONS).unwrap_or_else(|| {
                    "expectations: `play`, `say`, `node`, `var`, `transfer`, `record`, `saved`, \
                     `hangup`, `served`, `outcome`, `ended_by`, `callback`"
                        .to_string()
                })));
            }
        };
        self.end("expect")?;
        Ok(e)
    }

    pub(super) fn expect_say(&mut self) -> PResult<Expectation> {
        let hint = "`expect say money 58.30`; kinds: `money`, `number`, `digits`, `date`, `time`";
        let Some(k) = self.peek().filter(|t| t.kind == Tk::Path) else {
            return Err(self
                .expected("what is said (`money`, `number`, `digits`, `date` or `time`)")
                .with_hint(hint));
        };
        if !SAY_KINDS.contains(&k.text) {
            let d = self.err(k.span, format!("unknown kind of value `{}`", k.text));
            return Err(
                d.with_hint(did_you_mean(k.text, SAY_KINDS).unwrap_or_else(|| hint.to_string()))
            );
        }
        self.pos += 1;
        let kind = Spanned::new(k.text.to_string(), k.span);
        let value = self.literal()?;
        Ok(Expectation::Say { kind, value })
    }

    pub(super) fn expect_var(&mut self) -> PResult<Expectation> {
        let path = self.path("e.g. `expect var customer.vip == true`")?;
        match self.peek() {
            Some(t) if t.kind == Tk::EqEq => self.pos += 1,
            Some(t) if t.text == "=" => {
                return Err(self
                    .err(t.span, "expected `==`, found `=`")
                    .with_hint(format!(
                        "compare with `==`: `expect var {} == ...`",
                        path.node
                    )));
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

    pub(super) fn expect_transfer(&mut self) -> PResult<Expectation> {
        let hint = "`expect transfer queue general [priority 10] [level 4]` or `expect transfer to \"sip:...\"`";
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
            let mut level = None;
            if self.is_word("level") {
                self.pos += 1;
                let n = match self.peek() {
                    Some(t) if t.kind == Tk::Number => parse_decimal(self.file, t)
                        .ok()
                        .and_then(|d| u32::try_from(d).ok())
                        .filter(|n| *n <= 5)
                        .map(|n| Spanned::new(n, t.span)),
                    _ => None,
                };
                match n {
                    Some(n) => {
                        self.pos += 1;
                        level = Some(n);
                    }
                    None => {
                        return Err(self
                            .expected("a level from 0 to 5 after `level`")
                            .with_hint("e.g. `level 4` (0: no level asked for)"));
                    }
                }
            }
            return Ok(Expectation::TransferQueue {
                queue,
                priority,
                level,
            });
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
            Some(t) => d.with_hint(
                did_you_mean(t.text, &["queue", "to"]).unwrap_or_else(|| hint.to_string()),
            ),
            None => d.with_hint(hint),
        };
        Err(d)
    }
}
