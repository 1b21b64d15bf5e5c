//! One clause of a block, as parsed by the union `clause` rule, before it is sorted into the
//! fields of its node (see `nodes`).

use super::build::{Builder, child, children};
use super::grammar::Rule;
use crate::ast::{
    Answers, Attempts, CallbackOffer, Destination, Digits, Duration, Expr, Ident, KeyLit, Level,
    MaxWait, MenuKey, Overflow, OverflowWhen, Priority, QueryCall, Question, SayKind,
    StatementKind, Switch, Target,
};
use crate::span::{Span, Spanned};
use pest::iterators::Pair;

/// A parsed clause.
#[derive(Debug)]
pub(crate) struct Clause {
    /// What it says.
    pub kind: ClauseKind,
    /// Its keyword as written (`timeout`, `queue`, `set`, ...).
    pub word: &'static str,
    /// Where the keyword stands.
    pub word_span: Span,
    /// The whole clause.
    pub span: Span,
}

/// The clauses of every kind of block.
#[derive(Debug)]
pub(crate) enum ClauseKind {
    Title(Spanned<String>),
    Language(Spanned<String>),
    Entry(Ident),
    Statement(StatementKind),
    Prompt(Vec<Ident>),
    Timeout(Spanned<Duration>),
    InterDigit(Spanned<Duration>),
    Attempts(Attempts),
    NoInput(Vec<Ident>),
    NoMatch(Vec<Ident>),
    BargeIn(Switch),
    Key(MenuKey),
    Digits(Digits),
    Terminator(KeyLit),
    Mask,
    Valid(Expr),
    Into(Ident),
    Next(Target),
    Query(QueryCall),
    Found(Target),
    Missing(Target),
    Error(Target),
    Destination(Destination),
    Skills(Vec<Spanned<String>>),
    Priority(Priority),
    Attach(Vec<Expr>),
    Music(Vec<Ident>),
    Announce(Spanned<Duration>),
    MaxWait(MaxWait),
    NoAgents(Target),
    After(Target),
    Overflow(Overflow),
    Level(Level),
    Callback(Box<CallbackOffer>),
    Question(Question),
    Save(Ident),
    Beep,
    Max(Spanned<Duration>),
    Silence(Spanned<Duration>),
}

impl Builder<'_> {
    /// Builds a `clause` pair. Returns `None` when a part could not be represented (already
    /// reported).
    pub fn clause(&mut self, pair: &Pair<'_, Rule>) -> Option<Clause> {
        // The union `clause` wraps the clause; a clause parsed by its own rule comes bare.
        let inner = if pair.as_rule() == Rule::clause {
            pair.clone().into_inner().next()?
        } else {
            pair.clone()
        };
        let span = self.full_span(&inner);
        let keyword = inner.clone().into_inner().next()?;
        let word_span = self.span(&keyword);
        let (word, kind) = self.clause_kind(&inner, span)?;
        Some(Clause {
            kind,
            word,
            word_span,
            span,
        })
    }

    /// The target of a clause, written `-> TARGET` or (after `goto`, `next`) bare.
    fn one_target(&mut self, pair: &Pair<'_, Rule>) -> Option<Target> {
        match child(pair, Rule::goes_to) {
            Some(goes_to) => self.target(&child(&goes_to, Rule::target)?),
            None => self.target(&child(pair, Rule::target)?),
        }
    }

    fn one_duration(&mut self, pair: &Pair<'_, Rule>) -> Option<Spanned<Duration>> {
        self.duration(&child(pair, Rule::duration)?)
    }

    fn one_expr(&mut self, pair: &Pair<'_, Rule>) -> Option<Expr> {
        self.expr(&child(pair, Rule::expr)?)
    }

    fn prompts(&mut self, pair: &Pair<'_, Rule>) -> Option<Vec<Ident>> {
        Some(self.name_list(&child(pair, Rule::name_list)?, "a prompt"))
    }

    fn one_name(&mut self, pair: &Pair<'_, Rule>, role: &str) -> Option<Ident> {
        Some(self.ident(&child(pair, Rule::name)?, role))
    }

    fn clause_kind(
        &mut self,
        p: &Pair<'_, Rule>,
        span: Span,
    ) -> Option<(&'static str, ClauseKind)> {
        use ClauseKind as C;
        Some(match p.as_rule() {
            Rule::title_clause => ("title", C::Title(self.string(&child(p, Rule::string)?))),
            Rule::language_clause => (
                "language",
                C::Language(self.language(&child(p, Rule::language)?)?),
            ),
            Rule::entry_clause => ("entry", C::Entry(self.one_name(p, "a node")?)),
            Rule::play_stmt => {
                let prompts = self.prompts(p)?;
                ("play", C::Statement(StatementKind::Play { prompts }))
            }
            Rule::say_stmt => {
                let kind_pair = child(p, Rule::say_kind)?;
                let kind = SayKind::from_keyword(kind_pair.as_str())?;
                let kind = Spanned::new(kind, self.span(&kind_pair));
                let value = self.one_expr(p)?;
                ("say", C::Statement(StatementKind::Say { kind, value }))
            }
            Rule::set_language_stmt => {
                let language = self.language(&child(p, Rule::language)?)?;
                ("set", C::Statement(StatementKind::SetLanguage { language }))
            }
            Rule::set_stmt => {
                let name = self.one_name(p, "a variable")?;
                let value = self.one_expr(p)?;
                ("set", C::Statement(StatementKind::Set { name, value }))
            }
            Rule::pause_stmt => {
                let duration = self.one_duration(p)?;
                ("pause", C::Statement(StatementKind::Pause { duration }))
            }
            Rule::if_stmt => {
                let condition = self.one_expr(p)?;
                let target = self.one_target(p)?;
                ("if", C::Statement(StatementKind::If { condition, target }))
            }
            Rule::goto_stmt => {
                let target = self.one_target(p)?;
                ("goto", C::Statement(StatementKind::Goto { target }))
            }
            Rule::hangup_stmt => ("hangup", C::Statement(StatementKind::Hangup)),
            Rule::served_stmt => {
                let task = self.string(&child(p, Rule::string)?);
                ("served", C::Statement(StatementKind::Served { task }))
            }
            Rule::record_call_stmt => ("record", C::Statement(StatementKind::RecordCall)),
            Rule::prompt_clause => ("prompt", C::Prompt(self.prompts(p)?)),
            Rule::timeout_clause => ("timeout", C::Timeout(self.one_duration(p)?)),
            Rule::inter_digit_clause => ("inter_digit", C::InterDigit(self.one_duration(p)?)),
            Rule::attempts_clause => {
                let count = self.count(&child(p, Rule::uint)?)?;
                let target = match child(p, Rule::goes_to) {
                    Some(_) => Some(self.one_target(p)?),
                    None => None,
                };
                (
                    "attempts",
                    C::Attempts(Attempts {
                        count,
                        target,
                        span,
                    }),
                )
            }
            Rule::no_input_clause => ("no_input", C::NoInput(self.prompts(p)?)),
            Rule::no_match_clause => ("no_match", C::NoMatch(self.prompts(p)?)),
            Rule::barge_in_clause => {
                let s = child(p, Rule::switch)?;
                let on = Spanned::new(s.as_str() == "on", self.span(&s));
                ("barge_in", C::BargeIn(on))
            }
            Rule::key_clause => {
                let key = self.key(&child(p, Rule::key_lit)?)?;
                let tail = child(p, Rule::key_tail)?;
                let target = self.one_target(&tail)?;
                let guard = match child(&tail, Rule::expr) {
                    Some(e) => Some(self.expr(&e)?),
                    None => None,
                };
                (
                    "key",
                    C::Key(MenuKey {
                        key,
                        target,
                        guard,
                        span,
                    }),
                )
            }
            Rule::digits_clause => {
                let counts = children(p, Rule::uint);
                let min = self.count(counts.first()?)?.node;
                let max = match counts.get(1) {
                    Some(c) => self.count(c)?.node,
                    None => min,
                };
                ("digits", C::Digits(Digits { min, max, span }))
            }
            Rule::terminator_clause => (
                "terminator",
                C::Terminator(self.key(&child(p, Rule::key_lit)?)?),
            ),
            Rule::mask_clause => ("mask", C::Mask),
            Rule::valid_clause => ("valid", C::Valid(self.one_expr(p)?)),
            Rule::into_clause => ("into", C::Into(self.one_name(p, "a variable")?)),
            Rule::next_clause => ("next", C::Next(self.one_target(p)?)),
            Rule::query_clause => {
                let names = children(p, Rule::name);
                let name = self.ident(names.first()?, "a query");
                let into = names.get(1).map(|n| self.ident(n, "a variable"));
                let args = self.expr_list(p)?;
                (
                    "query",
                    C::Query(QueryCall {
                        name,
                        args,
                        into,
                        span,
                    }),
                )
            }
            Rule::found_clause => ("found", C::Found(self.one_target(p)?)),
            Rule::missing_clause => ("missing", C::Missing(self.one_target(p)?)),
            Rule::error_clause => ("error", C::Error(self.one_target(p)?)),
            Rule::queue_clause => {
                let name = self.one_name(p, "a queue")?;
                ("queue", C::Destination(Destination::Queue { name }))
            }
            Rule::to_clause => {
                let uri = self.string(&child(p, Rule::string)?);
                ("to", C::Destination(Destination::To { uri }))
            }
            Rule::skills_clause => {
                let skills = children(p, Rule::string)
                    .iter()
                    .map(|s| self.string(s))
                    .collect();
                ("skills", C::Skills(skills))
            }
            Rule::priority_clause => {
                let exprs = children(p, Rule::expr);
                let value = self.expr(exprs.first()?)?;
                let guard = match exprs.get(1) {
                    Some(e) => Some(self.expr(e)?),
                    None => None,
                };
                ("priority", C::Priority(Priority { value, guard, span }))
            }
            Rule::attach_clause => ("attach", C::Attach(self.expr_list(p)?)),
            Rule::music_clause => ("music", C::Music(self.prompts(p)?)),
            Rule::announce_clause => ("announce", C::Announce(self.one_duration(p)?)),
            Rule::max_wait_clause => {
                let duration = self.one_duration(p)?;
                let target = self.one_target(p)?;
                ("max_wait", C::MaxWait(MaxWait { duration, target }))
            }
            Rule::callback_clause => {
                let after = self.one_duration(p)?;
                let target = self.one_target(p)?;
                (
                    "callback",
                    C::Callback(Box::new(CallbackOffer {
                        after,
                        target,
                        span,
                    })),
                )
            }
            Rule::no_agents_clause => ("no_agents", C::NoAgents(self.one_target(p)?)),
            Rule::after_clause => ("after", C::After(self.one_target(p)?)),
            Rule::overflow_clause => {
                let queue = self.one_name(p, "a queue")?;
                let when = match child(p, Rule::duration) {
                    Some(_) => OverflowWhen::After {
                        duration: self.one_duration(p)?,
                    },
                    None => {
                        let when = child(p, Rule::kw_when)?;
                        let idle = child(p, Rule::kw_none_idle)?;
                        OverflowWhen::NoneIdle {
                            span: Span {
                                start: self.span(&when).start,
                                end: self.span(&idle).end,
                            },
                        }
                    }
                };
                ("overflow", C::Overflow(Overflow { queue, when, span }))
            }
            Rule::level_clause => {
                let level = self.count(&child(p, Rule::uint)?)?;
                let guard = match child(p, Rule::expr) {
                    Some(e) => Some(self.expr(&e)?),
                    None => None,
                };
                ("level", C::Level(Level { level, guard, span }))
            }
            Rule::question_clause => {
                let names = children(p, Rule::name);
                let name = self.ident(names.first()?, "a question");
                let prompt = self.ident(names.get(1)?, "a prompt");
                let answers = if let Some(scale) = child(p, Rule::scale) {
                    let bounds = children(&scale, Rule::int);
                    let min = self.integer(bounds.first()?)?;
                    let max = self.integer(bounds.get(1)?)?;
                    Answers::Scale { min, max }
                } else {
                    let mut choices = Vec::new();
                    for c in children(&child(p, Rule::choices)?, Rule::choice) {
                        let key = self.key(&child(&c, Rule::key_lit)?)?;
                        let label = self.string(&child(&c, Rule::string)?);
                        choices.push((key, label));
                    }
                    Answers::Choices { choices }
                };
                (
                    "question",
                    C::Question(Question {
                        name,
                        prompt,
                        answers,
                        span,
                    }),
                )
            }
            Rule::save_clause => ("save", C::Save(self.one_name(p, "a table")?)),
            Rule::beep_clause => ("beep", C::Beep),
            Rule::max_clause => ("max", C::Max(self.one_duration(p)?)),
            Rule::silence_clause => ("silence", C::Silence(self.one_duration(p)?)),
            _ => return None,
        })
    }
}
