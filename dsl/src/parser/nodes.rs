//! Sorting the clauses of a block into the typed fields of its node (or of the flow header),
//! reporting clauses that do not belong there (`misplaced-clause`) and clauses given twice
//! (`duplicate-clause`).

use super::clauses::{Clause, ClauseKind};
use crate::ast::{
    FlowHeader, Ident, Input, Lookup, Menu, NodeBody, NodeKind, Record, Step, Survey, Transfer,
};
use crate::diagnostic::{Diagnostic, FileId};
use crate::span::Span;

/// The code of a clause that belongs to another kind of block.
pub(crate) const MISPLACED_CLAUSE: &str = "misplaced-clause";
/// The code of a clause given twice in one block.
pub(crate) const DUPLICATE_CLAUSE: &str = "duplicate-clause";

/// A kind of block: the flow header or a node kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// `flow NAME { ... }`
    Header,
    /// `KIND NAME { ... }`
    Node(NodeKind),
}

impl Place {
    /// "a `menu`", "an `input`", "the `flow` header".
    pub fn with_article(self) -> String {
        match self {
            Place::Header => "the `flow` header".to_string(),
            Place::Node(NodeKind::Input) => "an `input`".to_string(),
            Place::Node(kind) => format!("a `{}`", kind.keyword()),
        }
    }
}

const MENU: Place = Place::Node(NodeKind::Menu);
const INPUT: Place = Place::Node(NodeKind::Input);
const STEP: Place = Place::Node(NodeKind::Step);
const LOOKUP: Place = Place::Node(NodeKind::Lookup);
const TRANSFER: Place = Place::Node(NodeKind::Transfer);
const SURVEY: Place = Place::Node(NodeKind::Survey);
const RECORD: Place = Place::Node(NodeKind::Record);

/// Every clause keyword, in the order a block lists them.
pub(crate) const CLAUSE_WORDS: &[&str] = &[
    "title",
    "language",
    "entry",
    "play",
    "say",
    "set",
    "pause",
    "if",
    "goto",
    "hangup",
    "served",
    "record",
    "prompt",
    "digits",
    "terminator",
    "timeout",
    "inter_digit",
    "attempts",
    "mask",
    "no_input",
    "no_match",
    "barge_in",
    "key",
    "valid",
    "into",
    "query",
    "found",
    "missing",
    "error",
    "queue",
    "to",
    "skills",
    "priority",
    "attach",
    "music",
    "announce",
    "max_wait",
    "no_agents",
    "after",
    "overflow",
    "level",
    "callback",
    "question",
    "beep",
    "max",
    "silence",
    "save",
    "next",
];

/// The blocks a clause keyword belongs in.
pub(crate) fn owners(word: &str) -> &'static [Place] {
    match word {
        "title" | "language" | "entry" => &[Place::Header],
        "play" | "say" | "set" | "pause" | "if" | "goto" | "hangup" | "served" | "record" => {
            &[STEP]
        }
        "prompt" => &[MENU, INPUT, RECORD],
        "timeout" => &[MENU, INPUT, LOOKUP, SURVEY],
        "inter_digit" | "attempts" | "no_input" | "no_match" | "barge_in" => &[MENU, INPUT, SURVEY],
        "key" => &[MENU],
        "digits" | "mask" | "valid" | "into" => &[INPUT],
        "terminator" => &[INPUT, RECORD],
        "next" => &[INPUT, SURVEY, RECORD],
        "query" | "found" | "missing" | "error" => &[LOOKUP],
        "queue" | "to" | "skills" | "priority" | "attach" | "music" | "announce" | "max_wait"
        | "no_agents" | "after" | "overflow" | "level" | "callback" => &[TRANSFER],
        "question" => &[SURVEY],
        "save" => &[SURVEY, RECORD],
        "beep" | "max" | "silence" => &[RECORD],
        _ => &[],
    }
}

/// The clause keywords a block takes.
pub(crate) fn words_of(place: Place) -> Vec<&'static str> {
    CLAUSE_WORDS
        .iter()
        .copied()
        .filter(|w| owners(w).contains(&place))
        .collect()
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Sorts clauses into fields, reporting what does not fit.
pub(crate) struct Sorter<'d> {
    file: FileId,
    place: Place,
    /// "menu `main_menu`": how messages name the block.
    desc: String,
    firsts: Vec<(&'static str, Span)>,
    diags: &'d mut Vec<Diagnostic>,
}

/// What `Sorter::first` and `Sorter::set` need of a clause once its value is moved out.
#[derive(Clone, Copy)]
struct At {
    word: &'static str,
    span: Span,
}

impl At {
    fn of(clause: &Clause) -> At {
        At {
            word: clause.word,
            span: clause.span,
        }
    }
}

impl<'d> Sorter<'d> {
    /// A sorter for one block.
    pub fn new(file: FileId, place: Place, desc: String, diags: &'d mut Vec<Diagnostic>) -> Self {
        Sorter {
            file,
            place,
            desc,
            firsts: Vec::new(),
            diags,
        }
    }

    /// False (after reporting) when the clause does not belong in this block.
    fn belongs(&mut self, clause: &Clause) -> bool {
        let owners = owners(clause.word);
        if owners.contains(&self.place) {
            return true;
        }
        let homes: Vec<String> = owners.iter().map(|p| p.with_article()).collect();
        let message = format!(
            "`{}` has no meaning in {}; it belongs in {}",
            clause.word,
            self.place.with_article(),
            join_or(&homes)
        );
        self.diags.push(Diagnostic::error(
            MISPLACED_CLAUSE,
            self.file,
            clause.word_span,
            message,
        ));
        false
    }

    /// True the first time `slot` is filled; reports the second time.
    fn first(&mut self, slot: &'static str, clause: &At) -> bool {
        if let Some((_, first)) = self.firsts.iter().find(|(s, _)| *s == slot) {
            let first = *first;
            let message = if slot == "destination" {
                format!(
                    "{} has two destinations; give one `queue` or one `to`",
                    self.desc
                )
            } else {
                format!("`{}` is given twice in {}", clause.word, self.desc)
            };
            self.diags.push(
                Diagnostic::error(DUPLICATE_CLAUSE, self.file, clause.span, message)
                    .with_related(self.file, first, "first given here")
                    .with_hint("remove one of them"),
            );
            return false;
        }
        self.firsts.push((slot, clause.span));
        true
    }

    fn set<T>(&mut self, field: &mut Option<T>, value: T, clause: &At) {
        if self.first(clause.word, clause) {
            *field = Some(value);
        }
    }

    /// Builds the flow header.
    pub fn header(&mut self, name: Ident, clauses: Vec<Clause>, span: Span) -> FlowHeader {
        let mut header = FlowHeader {
            name,
            title: None,
            language: None,
            entry: None,
            span,
        };
        for c in clauses {
            if !self.belongs(&c) {
                continue;
            }
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Title(t) => self.set(&mut header.title, t, &at),
                ClauseKind::Language(l) => self.set(&mut header.language, l, &at),
                ClauseKind::Entry(e) => self.set(&mut header.entry, e, &at),
                _ => {}
            }
        }
        header
    }

    /// Builds the body of a node of `kind`.
    pub fn body(&mut self, kind: NodeKind, clauses: Vec<Clause>) -> NodeBody {
        let clauses: Vec<Clause> = clauses.into_iter().filter(|c| self.belongs(c)).collect();
        match kind {
            NodeKind::Step => NodeBody::Step(Step {
                statements: clauses
                    .into_iter()
                    .filter_map(|c| match c.kind {
                        ClauseKind::Statement(kind) => {
                            Some(crate::ast::Statement { kind, span: c.span })
                        }
                        _ => None,
                    })
                    .collect(),
            }),
            NodeKind::Menu => NodeBody::Menu(self.menu(clauses)),
            NodeKind::Input => NodeBody::Input(self.input(clauses)),
            NodeKind::Lookup => NodeBody::Lookup(self.lookup(clauses)),
            NodeKind::Transfer => NodeBody::Transfer(self.transfer(clauses)),
            NodeKind::Survey => NodeBody::Survey(self.survey(clauses)),
            NodeKind::Record => NodeBody::Record(self.record(clauses)),
        }
    }

    fn menu(&mut self, clauses: Vec<Clause>) -> Menu {
        let mut m = Menu::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Prompt(v) => self.set(&mut m.prompt, v, &at),
                ClauseKind::Timeout(v) => self.set(&mut m.timeout, v, &at),
                ClauseKind::InterDigit(v) => self.set(&mut m.inter_digit, v, &at),
                ClauseKind::Attempts(v) => self.set(&mut m.attempts, v, &at),
                ClauseKind::NoInput(v) => self.set(&mut m.no_input, v, &at),
                ClauseKind::NoMatch(v) => self.set(&mut m.no_match, v, &at),
                ClauseKind::BargeIn(v) => self.set(&mut m.barge_in, v, &at),
                ClauseKind::Key(k) => m.keys.push(k),
                _ => {}
            }
        }
        m
    }

    fn input(&mut self, clauses: Vec<Clause>) -> Input {
        let mut i = Input::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Prompt(v) => self.set(&mut i.prompt, v, &at),
                ClauseKind::Digits(v) => self.set(&mut i.digits, v, &at),
                ClauseKind::Terminator(v) => self.set(&mut i.terminator, v, &at),
                ClauseKind::Timeout(v) => self.set(&mut i.timeout, v, &at),
                ClauseKind::InterDigit(v) => self.set(&mut i.inter_digit, v, &at),
                ClauseKind::Attempts(v) => self.set(&mut i.attempts, v, &at),
                ClauseKind::Mask => self.set(&mut i.mask, at.span, &at),
                ClauseKind::NoInput(v) => self.set(&mut i.no_input, v, &at),
                ClauseKind::NoMatch(v) => self.set(&mut i.no_match, v, &at),
                ClauseKind::BargeIn(v) => self.set(&mut i.barge_in, v, &at),
                ClauseKind::Valid(v) => self.set(&mut i.valid, v, &at),
                ClauseKind::Into(v) => self.set(&mut i.into, v, &at),
                ClauseKind::Next(v) => self.set(&mut i.next, v, &at),
                _ => {}
            }
        }
        i
    }

    fn lookup(&mut self, clauses: Vec<Clause>) -> Lookup {
        let mut l = Lookup::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Query(v) => self.set(&mut l.query, v, &at),
                ClauseKind::Timeout(v) => self.set(&mut l.timeout, v, &at),
                ClauseKind::Found(v) => self.set(&mut l.found, v, &at),
                ClauseKind::Missing(v) => self.set(&mut l.missing, v, &at),
                ClauseKind::Error(v) => self.set(&mut l.error, v, &at),
                _ => {}
            }
        }
        l
    }

    fn transfer(&mut self, clauses: Vec<Clause>) -> Transfer {
        let mut t = Transfer::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Destination(v) if self.first("destination", &at) => {
                    t.destination = Some(v)
                }
                ClauseKind::Skills(v) if self.first("skills", &at) => t.skills = v,
                ClauseKind::Priority(v) => self.set(&mut t.priority, v, &at),
                ClauseKind::Attach(v) if self.first("attach", &at) => t.attach = v,
                ClauseKind::Music(v) => self.set(&mut t.music, v, &at),
                ClauseKind::Announce(v) => self.set(&mut t.announce, v, &at),
                ClauseKind::MaxWait(v) => self.set(&mut t.max_wait, v, &at),
                ClauseKind::NoAgents(v) => self.set(&mut t.no_agents, v, &at),
                ClauseKind::After(v) => self.set(&mut t.after, v, &at),
                ClauseKind::Overflow(v) => t.overflow.push(v),
                ClauseKind::Level(v) => self.set(&mut t.level, v, &at),
                ClauseKind::Callback(v) => self.set(&mut t.callback, v, &at),
                _ => {}
            }
        }
        t
    }

    fn survey(&mut self, clauses: Vec<Clause>) -> Survey {
        let mut s = Survey::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Question(q) => s.questions.push(q),
                ClauseKind::Timeout(v) => self.set(&mut s.timeout, v, &at),
                ClauseKind::InterDigit(v) => self.set(&mut s.inter_digit, v, &at),
                ClauseKind::Attempts(v) => self.set(&mut s.attempts, v, &at),
                ClauseKind::NoInput(v) => self.set(&mut s.no_input, v, &at),
                ClauseKind::NoMatch(v) => self.set(&mut s.no_match, v, &at),
                ClauseKind::BargeIn(v) => self.set(&mut s.barge_in, v, &at),
                ClauseKind::Save(v) => self.set(&mut s.save, v, &at),
                ClauseKind::Next(v) => self.set(&mut s.next, v, &at),
                _ => {}
            }
        }
        s
    }

    fn record(&mut self, clauses: Vec<Clause>) -> Record {
        let mut r = Record::default();
        for c in clauses {
            let at = At::of(&c);
            match c.kind {
                ClauseKind::Prompt(v) => self.set(&mut r.prompt, v, &at),
                ClauseKind::Beep => self.set(&mut r.beep, at.span, &at),
                ClauseKind::Max(v) => self.set(&mut r.max, v, &at),
                ClauseKind::Silence(v) => self.set(&mut r.silence, v, &at),
                ClauseKind::Terminator(v) => self.set(&mut r.terminator, v, &at),
                ClauseKind::Save(v) => self.set(&mut r.save, v, &at),
                ClauseKind::Next(v) => self.set(&mut r.next, v, &at),
                _ => {}
            }
        }
        r
    }
}
