//! Turning pest pairs into syntax-tree pieces: spans, names, targets, keys and literals. The
//! pairs come from parsing a slice of the file that starts at `offset`, so every span is
//! shifted by it.

use super::grammar::Rule;
use super::literals;
use crate::ast::{Duration, Ident, KeyLit, Target, TargetKind, is_keyword};
use crate::diagnostic::{Diagnostic, FileId};
use crate::span::{Span, Spanned};
use pest::iterators::Pair;

/// The code of errors about keywords used as names.
pub(crate) const RESERVED_NAME: &str = "reserved-name";
/// The code of syntax errors.
pub(crate) const SYNTAX: &str = "syntax";
/// The code of numbers and durations too large to represent.
pub(crate) const NUMBER_TOO_LARGE: &str = "number-too-large";

/// The built-in targets, which cannot name anything else.
pub(crate) const BUILTIN_TARGETS: &[&str] = &["repeat", "back", "main", "hangup"];

/// Builds syntax-tree pieces from the pairs of one parse, collecting diagnostics.
pub(crate) struct Builder<'d> {
    /// The file being parsed.
    pub file: FileId,
    /// Where the parsed slice starts in the file.
    pub offset: usize,
    /// Where problems go.
    pub diags: &'d mut Vec<Diagnostic>,
}

/// The end of the last token a pair matched. A pair's own span may run on over the
/// whitespace and comments that pest skipped before an absent optional part; its last
/// descendant's does not.
pub(crate) fn true_end(pair: &Pair<'_, Rule>) -> usize {
    let mut current = pair.clone();
    loop {
        match current.clone().into_inner().next_back() {
            Some(last) => current = last,
            None => return current.as_span().end(),
        }
    }
}

/// The children of a pair with the given rule.
pub(crate) fn children<'i>(pair: &Pair<'i, Rule>, rule: Rule) -> Vec<Pair<'i, Rule>> {
    pair.clone()
        .into_inner()
        .filter(|p| p.as_rule() == rule)
        .collect()
}

/// The first child of a pair with the given rule.
pub(crate) fn child<'i>(pair: &Pair<'i, Rule>, rule: Rule) -> Option<Pair<'i, Rule>> {
    pair.clone().into_inner().find(|p| p.as_rule() == rule)
}

impl Builder<'_> {
    /// The span of a token pair (one without trailing trivia: an atomic rule).
    pub fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(s.start() + self.offset, s.end() + self.offset)
    }

    /// The span of a pair from its first to its last token.
    pub fn full_span(&self, pair: &Pair<'_, Rule>) -> Span {
        Span::new(
            pair.as_span().start() + self.offset,
            true_end(pair) + self.offset,
        )
    }

    /// Reports an error.
    pub fn error(&mut self, code: &'static str, span: Span, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(code, self.file, span, message));
    }

    /// A name; a keyword is reported as `reserved-name` (`role` says what it would name, e.g.
    /// "a node") but still returned so that the tree stays whole.
    pub fn ident(&mut self, pair: &Pair<'_, Rule>, role: &str) -> Ident {
        let ident = Ident {
            name: pair.as_str().to_string(),
            span: self.span(pair),
        };
        self.check_reserved(&ident, role);
        ident
    }

    /// Reports `ident` when it is a keyword.
    pub fn check_reserved(&mut self, ident: &Ident, role: &str) {
        if !is_keyword(&ident.name) {
            return;
        }
        let word = &ident.name;
        let message = if BUILTIN_TARGETS.contains(&word.as_str()) {
            format!("`{word}` is a built-in target and cannot name {role}")
        } else {
            format!("`{word}` is a keyword and cannot name {role}")
        };
        self.diags.push(
            Diagnostic::error(RESERVED_NAME, self.file, ident.span, message)
                .with_hint(format!("choose another name, such as `{word}_1`")),
        );
    }

    /// A list of names (`play a, b, c`).
    pub fn name_list(&mut self, pair: &Pair<'_, Rule>, role: &str) -> Vec<Ident> {
        children(pair, Rule::name)
            .iter()
            .map(|p| self.ident(p, role))
            .collect()
    }

    /// A quoted string with its escapes resolved.
    pub fn string(&self, pair: &Pair<'_, Rule>) -> Spanned<String> {
        Spanned::new(literals::unescape(pair.as_str()), self.span(pair))
    }

    /// A language tag, bare (`zh-CN`) or quoted.
    pub fn language(&self, pair: &Pair<'_, Rule>) -> Option<Spanned<String>> {
        let inner = pair.clone().into_inner().next()?;
        Some(match inner.as_rule() {
            Rule::string => self.string(&inner),
            _ => Spanned::new(inner.as_str().to_string(), self.span(&inner)),
        })
    }

    /// A duration; an unrepresentable one is reported and gives `None`.
    pub fn duration(&mut self, pair: &Pair<'_, Rule>) -> Option<Spanned<Duration>> {
        let span = self.span(pair);
        match literals::duration(pair.as_str()) {
            Ok(d) => Some(Spanned::new(d, span)),
            Err(e) => {
                self.error(NUMBER_TOO_LARGE, span, e.to_string());
                None
            }
        }
    }

    /// A count (`18`, `3`); one too large for 32 bits is reported and gives `None`.
    pub fn count(&mut self, pair: &Pair<'_, Rule>) -> Option<Spanned<u32>> {
        let span = self.span(pair);
        match literals::count(pair.as_str()) {
            Ok(n) => Some(Spanned::new(n, span)),
            Err(e) => {
                self.error(NUMBER_TOO_LARGE, span, e.to_string());
                None
            }
        }
    }

    /// A signed whole number (`scale 1..5`).
    pub fn integer(&mut self, pair: &Pair<'_, Rule>) -> Option<Spanned<i64>> {
        let span = self.span(pair);
        match literals::integer(pair.as_str()) {
            Ok(n) => Some(Spanned::new(n, span)),
            Err(e) => {
                self.error(NUMBER_TOO_LARGE, span, e.to_string());
                None
            }
        }
    }

    /// A key, bare (`1`, `*`, `#`) or quoted (`"#"`).
    pub fn key(&self, pair: &Pair<'_, Rule>) -> Option<KeyLit> {
        let inner = pair.clone().into_inner().next()?;
        let text = match inner.as_rule() {
            Rule::string => literals::unescape(inner.as_str()),
            _ => inner.as_str().to_string(),
        };
        Some(KeyLit {
            text,
            span: self.span(pair),
        })
    }

    /// A target: a node, `flow.node`, or a built-in.
    pub fn target(&mut self, pair: &Pair<'_, Rule>) -> Option<Target> {
        let inner = pair.clone().into_inner().next()?;
        let span = self.full_span(&inner);
        let kind = match inner.as_rule() {
            Rule::builtin_target => match inner.as_str() {
                "repeat" => TargetKind::Repeat,
                "back" => TargetKind::Back,
                "main" => TargetKind::Main,
                _ => TargetKind::Hangup,
            },
            Rule::imported_target => {
                let parts = children(&inner, Rule::ident);
                let flow = parts.first()?.as_str().to_string();
                let node = parts.get(1)?.as_str().to_string();
                TargetKind::Imported { flow, node }
            }
            _ => {
                let name = child(&inner, Rule::name)?;
                let ident = self.ident(&name, "a node");
                TargetKind::Node(ident.name)
            }
        };
        Some(Target { kind, span })
    }
}
