//! A hand-written fast path for the common, well-formed shapes of node heads and clauses.
//!
//! The pest grammar (`src/grammar.pest`) stays the definition of the language: this module
//! recognises a subset of what it accepts and builds exactly the tree that the pest path would
//! build (same values, same spans, same diagnostics). Whenever the text is anything else or
//! anything doubtful (a character outside ASCII next to a word, a keyword where a name is
//! expected, a number too large, a clause that does not end its line, ...) it gives up and the
//! caller parses the text with pest. Giving up is always correct; accepting is correct only
//! when the pest rule would match the same tokens, so every recogniser below follows its rule
//! in `grammar.pest` to the letter, and `tests/fast_path.rs` compares both paths on every
//! flow of the repository and on mutations of them.
//!
//! A clause is read on its own line, as the pest path reads it (`Driver::block`): the clause's
//! own rule on the line, accepted only when nothing but spaces and a comment follow its last
//! token. Within a line pest's implicit whitespace is spaces, tabs, `\r`, U+FEFF and a comment
//! to the end of the line; here U+FEFF is not skipped, so a line holding one falls back.

use super::build::Builder;
use super::clauses::{Clause, ClauseKind};
use super::expr::{FastPrimary, Item, MAX_OPERATORS};
use super::literals;
use super::scan;
use crate::ast::{
    Answers, Attempts, BinaryOp, Destination, Digits, Duration, Expr, ExprKind, Ident, KeyLit,
    MaxWait, MenuKey, Priority, QueryCall, Question, SayKind, StatementKind, Target, TargetKind,
    UnaryOp, is_keyword,
};
use crate::diagnostic::{Diagnostic, FileId};
use crate::span::{Span, Spanned};

/// A flat expression list (see `expr`).
type Items = Vec<Item<'static>>;

/// `ident_char` for an ASCII byte.
fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `expr_word`: the keywords except `flow`.
fn is_expr_word(word: &str) -> bool {
    word != "flow" && is_keyword(word)
}

/// A cursor over one line of the source. Every method returns `None` when the text is not
/// what it expects or when it cannot be sure; the caller then gives up on the whole clause.
struct Cur<'s> {
    src: &'s str,
    bytes: &'s [u8],
    /// Where reading stands.
    pos: usize,
    /// The end of the line (the `\n` or the end of the text): the window pest would be given.
    end: usize,
    /// The end of the last token read.
    last: usize,
}

impl<'s> Cur<'s> {
    fn at(&self, i: usize) -> Option<u8> {
        if i < self.end {
            self.bytes.get(i).copied()
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.at(self.pos)
    }

    /// Whether the text at the cursor starts with `s` (within the line).
    fn looking_at(&self, s: &str) -> bool {
        self.pos + s.len() <= self.end
            && self
                .bytes
                .get(self.pos..self.pos + s.len())
                .is_some_and(|b| b == s.as_bytes())
    }

    /// Whether a token ending at `i` is followed by something that is not `ident_char`:
    /// `Some(true)` when so, `Some(false)` when an ASCII identifier character follows, and
    /// `None` (give up) when a non-ASCII character follows, which may be a letter or a mark.
    fn word_ends(&self, i: usize) -> Option<bool> {
        match self.at(i) {
            None => Some(true),
            Some(c) if c >= 0x80 => None,
            Some(c) => Some(!is_ident_byte(c)),
        }
    }

    /// pest's implicit whitespace within a line: spaces, tabs, `\r`, a comment.
    fn ws(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.pos += 1,
                Some(b'#') => self.pos = self.end,
                Some(b'/') if self.at(self.pos + 1) == Some(b'/') => self.pos = self.end,
                _ => return,
            }
        }
    }

    /// `hspace*`
    fn hspace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Takes the token `self.pos..end`.
    fn take(&mut self, end: usize) -> Span {
        let span = Span::new(self.pos, end);
        self.pos = end;
        self.last = end;
        span
    }

    fn text(&self, span: Span) -> &'s str {
        self.src.get(span.range()).unwrap_or("")
    }

    /// A one-byte token.
    fn punct(&mut self, c: u8) -> Option<Span> {
        (self.peek()? == c).then(|| self.take(self.pos + 1))
    }

    /// `ident`, ASCII only: a word starting with a letter or `_`.
    fn word(&mut self) -> Option<(Span, &'s str)> {
        let c = self.peek()?;
        if !(c.is_ascii_alphabetic() || c == b'_') {
            return None;
        }
        let mut i = self.pos + 1;
        while self.at(i).is_some_and(is_ident_byte) {
            i += 1;
        }
        self.word_ends(i)?;
        let span = self.take(i);
        Some((span, self.text(span)))
    }

    /// A keyword rule (`kw_play`, ...): exactly `kw` as a whole word.
    fn keyword(&mut self, kw: &str) -> Option<Span> {
        let (span, word) = self.word()?;
        (word == kw).then_some(span)
    }

    fn ident(&mut self) -> Option<Ident> {
        let (span, word) = self.word()?;
        Some(Ident {
            name: word.to_string(),
            span,
        })
    }

    /// `name`: an identifier that is not a keyword.
    fn name(&mut self) -> Option<Ident> {
        let ident = self.ident()?;
        (!is_keyword(&ident.name)).then_some(ident)
    }

    /// `name_list`: `name ("," name)*`, not followed by a comma.
    fn name_list(&mut self) -> Option<Vec<Ident>> {
        let mut names = vec![self.name()?];
        loop {
            self.ws();
            if self.punct(b',').is_none() {
                return Some(names);
            }
            self.ws();
            names.push(self.name()?);
        }
    }

    /// `string`: the raw token's span and its value.
    fn string(&mut self) -> Option<Spanned<String>> {
        if self.peek()? != b'"' {
            return None;
        }
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            match self.at(i)? {
                b'"' => break,
                b'\\' => match self.at(i + 1)? {
                    b'"' | b'\\' | b'n' | b't' => {
                        escaped = true;
                        i += 2;
                    }
                    _ => return None,
                },
                b'\n' => return None,
                _ => i += 1,
            }
        }
        let span = self.take(i + 1);
        let raw = self.text(span);
        let value = if escaped {
            literals::unescape(raw)
        } else {
            raw.get(1..raw.len() - 1)?.to_string()
        };
        Some(Spanned::new(value, span))
    }

    /// The end of `ASCII_DIGIT+ ("." ASCII_DIGIT+)?` from the cursor (`fraction` allowed).
    fn digits_end(&self, fraction: bool) -> Option<usize> {
        let mut i = self.pos;
        while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == self.pos {
            return None;
        }
        if fraction
            && self.at(i) == Some(b'.')
            && self.at(i + 1).is_some_and(|c| c.is_ascii_digit())
        {
            i += 1;
            while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
        }
        Some(i)
    }

    /// The end of a `duration` token from the cursor, when there is one.
    fn duration_end(&self) -> Option<usize> {
        let i = self.digits_end(true)?;
        let unit = if self.at(i) == Some(b'm') && self.at(i + 1) == Some(b's') {
            2
        } else if matches!(self.at(i), Some(b's' | b'm' | b'h')) {
            1
        } else {
            return None;
        };
        self.word_ends(i + unit)?.then_some(i + unit)
    }

    /// `duration`, with its value; a value too large gives up (the pest path reports it).
    fn duration(&mut self) -> Option<Spanned<Duration>> {
        let end = self.duration_end()?;
        let span = self.take(end);
        let value = literals::duration(self.text(span)).ok()?;
        Some(Spanned::new(value, span))
    }

    /// `uint` (or `int` when `signed`): digits not followed by `ident_char` or `.` and a
    /// digit. Returns the token's span.
    fn whole(&mut self, signed: bool) -> Option<Span> {
        let start = self.pos;
        if signed && self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let end = self.digits_end(false);
        self.pos = start;
        let end = end?;
        let dot_digit =
            self.at(end) == Some(b'.') && self.at(end + 1).is_some_and(|c| c.is_ascii_digit());
        (self.word_ends(end)? && !dot_digit).then(|| self.take(end))
    }

    fn count(&mut self) -> Option<Spanned<u32>> {
        let span = self.whole(false)?;
        Some(Spanned::new(literals::count(self.text(span)).ok()?, span))
    }

    fn integer(&mut self) -> Option<Spanned<i64>> {
        let span = self.whole(true)?;
        Some(Spanned::new(literals::integer(self.text(span)).ok()?, span))
    }

    /// `language`: a string or a bare tag.
    fn language(&mut self) -> Option<Spanned<String>> {
        if self.peek()? == b'"' {
            return self.string();
        }
        if !self.peek()?.is_ascii_alphabetic() {
            return None;
        }
        let mut i = self.pos + 1;
        while self
            .at(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            i += 1;
        }
        let span = self.take(i);
        Some(Spanned::new(self.text(span).to_string(), span))
    }

    /// `key_lit`: a string or a bare key (a run of identifier characters, or one character).
    fn key_lit(&mut self) -> Option<KeyLit> {
        let c = self.peek()?;
        if c == b'"' {
            let s = self.string()?;
            return Some(KeyLit {
                text: s.node,
                span: s.span,
            });
        }
        let end = if is_ident_byte(c) {
            let mut i = self.pos + 1;
            while self.at(i).is_some_and(is_ident_byte) {
                i += 1;
            }
            self.word_ends(i)?;
            i
        } else {
            let arrow = c == b'-' && self.at(self.pos + 1) == Some(b'>');
            if c >= 0x80 || matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}') || arrow {
                return None;
            }
            self.pos + 1
        };
        let span = self.take(end);
        Some(KeyLit {
            text: self.text(span).to_string(),
            span,
        })
    }

    /// `target`: a built-in, `flow.node`, or a node name.
    fn target(&mut self) -> Option<Target> {
        let (span, word) = self.word()?;
        if self.peek() == Some(b'.') {
            // `imported_target`; anything else after the dot gives up.
            self.pos += 1;
            let (node_span, node) = self.word()?;
            return Some(Target {
                kind: TargetKind::Imported {
                    flow: word.to_string(),
                    node: node.to_string(),
                },
                span: span.to(node_span),
            });
        }
        let kind = match word {
            "repeat" => TargetKind::Repeat,
            "back" => TargetKind::Back,
            "main" => TargetKind::Main,
            "hangup" => TargetKind::Hangup,
            _ if is_keyword(word) => return None,
            _ => TargetKind::Node(word.to_string()),
        };
        Some(Target { kind, span })
    }

    /// `goes_to`: `->`, spaces or tabs, a target.
    fn goes_to(&mut self) -> Option<Target> {
        if !self.looking_at("->") {
            return None;
        }
        self.take(self.pos + 2);
        self.hspace();
        self.target()
    }

    /// After an optional part: true when the line holds more (which must then be that part).
    fn more(&mut self) -> bool {
        self.ws();
        self.peek().is_some()
    }

    // -----------------------------------------------------------------------------------------
    // Expressions

    /// `expr`, as the flat list that `Builder::climb` takes. Gives up past `MAX_OPERATORS`
    /// operators (the pest path reports those).
    fn expr(&mut self) -> Option<Items> {
        let mut operators = 0;
        let items = self.expr_items(&mut operators)?;
        (operators <= MAX_OPERATORS).then_some(items)
    }

    fn expr_items(&mut self, operators: &mut usize) -> Option<Items> {
        let mut items = Vec::new();
        self.operand(&mut items, operators)?;
        loop {
            self.ws();
            let Some((op, len)) = self.infix()? else {
                return Some(items);
            };
            self.take(self.pos + len);
            *operators += 1;
            items.push(Item::Infix(op));
            self.ws();
            self.operand(&mut items, operators)?;
        }
    }

    /// The infix operator at the cursor and its length: `Some(None)` when there is none.
    fn infix(&self) -> Option<Option<(BinaryOp, usize)>> {
        let Some(c) = self.peek() else {
            return Some(None);
        };
        let next = self.at(self.pos + 1);
        Some(Some(match c {
            b'o' if next == Some(b'r') => {
                if !self.word_ends(self.pos + 2)? {
                    return Some(None);
                }
                (BinaryOp::Or, 2)
            }
            b'a' if self.looking_at("and") => {
                if !self.word_ends(self.pos + 3)? {
                    return Some(None);
                }
                (BinaryOp::And, 3)
            }
            b'=' if next == Some(b'=') => (BinaryOp::Eq, 2),
            b'!' if next == Some(b'=') => (BinaryOp::Ne, 2),
            b'<' if next == Some(b'=') => (BinaryOp::Le, 2),
            b'>' if next == Some(b'=') => (BinaryOp::Ge, 2),
            b'<' => (BinaryOp::Lt, 1),
            b'>' => (BinaryOp::Gt, 1),
            b'+' => (BinaryOp::Add, 1),
            b'-' if next != Some(b'>') => (BinaryOp::Sub, 1),
            b'*' => (BinaryOp::Mul, 1),
            b'/' if next != Some(b'/') => (BinaryOp::Div, 1),
            _ => return Some(None),
        }))
    }

    /// `operand`: prefixes (`not`, `-`), then a primary.
    fn operand(&mut self, items: &mut Items, operators: &mut usize) -> Option<()> {
        loop {
            self.ws();
            if self.looking_at("not") && self.word_ends(self.pos + 3)? {
                let span = self.take(self.pos + 3);
                items.push(Item::Prefix(UnaryOp::Not, span));
            } else if self.peek() == Some(b'-') && self.at(self.pos + 1) != Some(b'>') {
                let span = self.take(self.pos + 1);
                items.push(Item::Prefix(UnaryOp::Neg, span));
            } else {
                break;
            }
            *operators += 1;
        }
        let primary = self.primary(operators)?;
        items.push(Item::Fast(Some(primary)));
        Some(())
    }

    /// `primary`: string, duration, number, boolean, path or call, parentheses.
    fn primary(&mut self, operators: &mut usize) -> Option<FastPrimary> {
        let leaf = |kind, span| Some(FastPrimary::Leaf(Expr { kind, span }));
        let c = self.peek()?;
        if c == b'"' {
            let s = self.string()?;
            return leaf(ExprKind::Str(s.node), s.span);
        }
        if c.is_ascii_digit() {
            if let Some(end) = self.duration_end() {
                let span = self.take(end);
                let d = literals::duration(self.text(span)).ok()?;
                return leaf(ExprKind::Duration(d), span);
            }
            let end = self.digits_end(true)?;
            if !self.word_ends(end)? {
                return None;
            }
            let span = self.take(end);
            let n = literals::decimal(self.text(span)).ok()?;
            return leaf(ExprKind::Number(n), span);
        }
        if c == b'(' {
            let open = self.take(self.pos + 1);
            self.ws();
            let items = self.expr_items(operators)?;
            self.ws();
            let close = self.punct(b')')?;
            return Some(FastPrimary::Paren(items, open.to(close)));
        }
        let (span, word) = self.word()?;
        match word {
            "true" | "false" => return leaf(ExprKind::Bool(word == "true"), span),
            _ if is_expr_word(word) => return None,
            _ => {}
        }
        let head = Ident {
            name: word.to_string(),
            span,
        };
        self.ws();
        if self.peek() == Some(b'(') {
            self.take(self.pos + 1);
            self.ws();
            let mut args = Vec::new();
            if self.peek() != Some(b')') {
                loop {
                    args.push(self.expr_items(operators)?);
                    self.ws();
                    if self.punct(b',').is_none() {
                        break;
                    }
                    self.ws();
                }
            }
            let close = self.punct(b')')?;
            return Some(FastPrimary::Call(head, args, span.to(close)));
        }
        let mut path = vec![head];
        while self.peek() == Some(b'.') {
            self.pos += 1;
            self.ws();
            path.push(self.ident()?);
            self.ws();
        }
        let span = span.to(Span::new(self.last, self.last));
        leaf(ExprKind::Path(path), span)
    }
}

/// Reads `KIND NAME {` at `pos`, where the node keyword ends at `kw_end`: the name, the span
/// of the `{` and the span of the keyword. Reports a keyword used as the name, as the pest
/// path does.
pub(super) fn node_head(
    file: FileId,
    src: &str,
    pos: usize,
    kw_end: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Ident, Span, Span)> {
    let mut cur = Cur {
        src,
        bytes: src.as_bytes(),
        pos: kw_end,
        end: scan::line_end(src, pos),
        last: kw_end,
    };
    cur.word_ends(kw_end)?.then_some(())?;
    cur.hspace();
    let name = cur.ident()?;
    cur.hspace();
    let open = cur.punct(b'{')?;
    let mut builder = Builder {
        file,
        offset: 0,
        diags,
    };
    builder.check_reserved(&name, "a node");
    Some((name, open, Span::new(pos, kw_end)))
}

/// Reads the clause at `pos`, whose first word ends at `word_end`, when it has one of the
/// shapes this module knows and ends its line. Returns the clause and the end of its last
/// token; diagnostics (chained comparisons) go to `diags`.
pub(super) fn clause(
    file: FileId,
    src: &str,
    pos: usize,
    word_end: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Clause, usize)> {
    let word = src.get(pos..word_end)?;
    let end = scan::line_end(src, pos);
    let mut cur = Cur {
        src,
        bytes: src.as_bytes(),
        pos: word_end,
        end,
        last: word_end,
    };
    cur.word_ends(word_end)?.then_some(())?;
    // Expressions are built into a local list of diagnostics, kept only if the clause is.
    let mut local = Vec::new();
    let mut b = Builder {
        file,
        offset: 0,
        diags: &mut local,
    };
    let (word, kind) = clause_kind(&mut cur, &mut b, word, pos)?;
    let last = cur.last;
    if scan::skip_trivia_on_line(src, last) < end {
        return None;
    }
    diags.append(&mut local);
    let clause = Clause {
        kind,
        word,
        word_span: Span::new(pos, word_end),
        span: Span::new(pos, last),
    };
    Some((clause, last))
}

/// The clause after its first word `word` (at `pos`).
fn clause_kind(
    cur: &mut Cur<'_>,
    b: &mut Builder<'_>,
    word: &str,
    pos: usize,
) -> Option<(&'static str, ClauseKind)> {
    use ClauseKind as C;
    use StatementKind as S;
    // The clause's span, once its last token is read.
    let span = |cur: &Cur<'_>| Span::new(pos, cur.last);
    cur.ws();
    Some(match word {
        "title" => ("title", C::Title(cur.string()?)),
        "language" => ("language", C::Language(cur.language()?)),
        "entry" => ("entry", C::Entry(cur.name()?)),
        "play" => {
            let prompts = cur.name_list()?;
            ("play", C::Statement(S::Play { prompts }))
        }
        "say" => {
            let (kind_span, kind_word) = cur.word()?;
            let kind = Spanned::new(SayKind::from_keyword(kind_word)?, kind_span);
            cur.ws();
            let value = b.climb(cur.expr()?)?;
            ("say", C::Statement(S::Say { kind, value }))
        }
        "set" => {
            let name = cur.ident()?;
            cur.ws();
            if name.name == "language" {
                let language = cur.language()?;
                ("set", C::Statement(S::SetLanguage { language }))
            } else {
                if is_keyword(&name.name) || cur.peek()? != b'=' || cur.looking_at("==") {
                    return None;
                }
                cur.take(cur.pos + 1);
                cur.ws();
                let value = b.climb(cur.expr()?)?;
                ("set", C::Statement(S::Set { name, value }))
            }
        }
        "pause" => {
            let duration = cur.duration()?;
            ("pause", C::Statement(S::Pause { duration }))
        }
        "if" => {
            let condition = cur.expr()?;
            cur.ws();
            let target = cur.goes_to()?;
            let condition = b.climb(condition)?;
            ("if", C::Statement(S::If { condition, target }))
        }
        "goto" => {
            let target = cur.target()?;
            ("goto", C::Statement(S::Goto { target }))
        }
        "hangup" => ("hangup", C::Statement(S::Hangup)),
        "served" => (
            "served",
            C::Statement(S::Served {
                task: cur.string()?,
            }),
        ),
        "record" => {
            let (_, w) = cur.word()?;
            if w != "call" {
                return None;
            }
            ("record", C::Statement(S::RecordCall))
        }
        "prompt" => ("prompt", C::Prompt(cur.name_list()?)),
        "timeout" => ("timeout", C::Timeout(cur.duration()?)),
        "inter_digit" => ("inter_digit", C::InterDigit(cur.duration()?)),
        "attempts" => {
            let count = cur.count()?;
            let target = if cur.more() {
                Some(cur.goes_to()?)
            } else {
                None
            };
            let span = span(cur);
            (
                "attempts",
                C::Attempts(Attempts {
                    count,
                    target,
                    span,
                }),
            )
        }
        "no_input" | "no_match" => {
            cur.keyword("play")?;
            cur.ws();
            let prompts = cur.name_list()?;
            if word == "no_input" {
                ("no_input", C::NoInput(prompts))
            } else {
                ("no_match", C::NoMatch(prompts))
            }
        }
        "barge_in" => {
            let (s, w) = cur.word()?;
            let on = match w {
                "on" => true,
                "off" => false,
                _ => return None,
            };
            ("barge_in", C::BargeIn(Spanned::new(on, s)))
        }
        "key" => {
            // `key_clause` is compound-atomic: only spaces and tabs before the key.
            cur.pos = cur.last;
            cur.hspace();
            let key = cur.key_lit()?;
            cur.ws();
            let target = cur.goes_to()?;
            let guard = if cur.more() {
                cur.keyword("if")?;
                cur.ws();
                Some(cur.expr()?)
            } else {
                None
            };
            let span = span(cur);
            let guard = match guard {
                Some(items) => Some(b.climb(items)?),
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
        "digits" => {
            let min = cur.count()?.node;
            cur.ws();
            let max = if cur.looking_at("..") {
                cur.take(cur.pos + 2);
                cur.ws();
                cur.count()?.node
            } else {
                min
            };
            let span = span(cur);
            ("digits", C::Digits(Digits { min, max, span }))
        }
        "terminator" => {
            cur.pos = cur.last;
            cur.hspace();
            ("terminator", C::Terminator(cur.key_lit()?))
        }
        "mask" => ("mask", C::Mask),
        "valid" => ("valid", C::Valid(b.climb(cur.expr()?)?)),
        "into" => ("into", C::Into(cur.name()?)),
        "next" => {
            let target = if cur.looking_at("->") {
                cur.goes_to()?
            } else {
                cur.target()?
            };
            ("next", C::Next(target))
        }
        "query" => {
            let name = cur.name()?;
            cur.ws();
            cur.punct(b'(')?;
            cur.ws();
            let mut args = Vec::new();
            if cur.peek()? != b')' {
                loop {
                    args.push(cur.expr()?);
                    cur.ws();
                    if cur.punct(b',').is_none() {
                        break;
                    }
                    cur.ws();
                }
            }
            cur.punct(b')')?;
            let into = if cur.more() {
                cur.keyword("into")?;
                cur.ws();
                Some(cur.name()?)
            } else {
                None
            };
            let span = span(cur);
            let args = args
                .into_iter()
                .map(|items| b.climb(items))
                .collect::<Option<Vec<_>>>()?;
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
        "found" => ("found", C::Found(cur.goes_to()?)),
        "missing" => ("missing", C::Missing(cur.goes_to()?)),
        "error" => ("error", C::Error(cur.goes_to()?)),
        "queue" => {
            let name = cur.name()?;
            ("queue", C::Destination(Destination::Queue { name }))
        }
        "to" => {
            let uri = cur.string()?;
            ("to", C::Destination(Destination::To { uri }))
        }
        "skills" => {
            let mut skills = vec![cur.string()?];
            loop {
                cur.ws();
                if cur.punct(b',').is_none() {
                    break;
                }
                cur.ws();
                skills.push(cur.string()?);
            }
            ("skills", C::Skills(skills))
        }
        "priority" => {
            let value = cur.expr()?;
            let guard = if cur.more() {
                cur.keyword("if")?;
                cur.ws();
                Some(cur.expr()?)
            } else {
                None
            };
            let span = span(cur);
            let value = b.climb(value)?;
            let guard = match guard {
                Some(items) => Some(b.climb(items)?),
                None => None,
            };
            ("priority", C::Priority(Priority { value, guard, span }))
        }
        "attach" => {
            let mut exprs = vec![cur.expr()?];
            loop {
                cur.ws();
                if cur.punct(b',').is_none() {
                    break;
                }
                cur.ws();
                exprs.push(cur.expr()?);
            }
            let exprs = exprs
                .into_iter()
                .map(|items| b.climb(items))
                .collect::<Option<Vec<_>>>()?;
            ("attach", C::Attach(exprs))
        }
        "music" => ("music", C::Music(cur.name_list()?)),
        "announce" => {
            cur.keyword("position")?;
            cur.ws();
            cur.keyword("every")?;
            cur.ws();
            ("announce", C::Announce(cur.duration()?))
        }
        "max_wait" => {
            let duration = cur.duration()?;
            cur.ws();
            let target = cur.goes_to()?;
            ("max_wait", C::MaxWait(MaxWait { duration, target }))
        }
        "no_agents" => ("no_agents", C::NoAgents(cur.goes_to()?)),
        "after" => ("after", C::After(cur.goes_to()?)),
        "question" => {
            let name = cur.name()?;
            cur.ws();
            let prompt = cur.name()?;
            cur.ws();
            let answers = match cur.word()?.1 {
                "scale" => {
                    cur.ws();
                    let min = cur.integer()?;
                    cur.ws();
                    if !cur.looking_at("..") {
                        return None;
                    }
                    cur.take(cur.pos + 2);
                    cur.ws();
                    let max = cur.integer()?;
                    Answers::Scale { min, max }
                }
                "choices" => Answers::Choices {
                    choices: choices(cur)?,
                },
                _ => return None,
            };
            let span = span(cur);
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
        "save" => ("save", C::Save(cur.name()?)),
        "beep" => ("beep", C::Beep),
        "max" => ("max", C::Max(cur.duration()?)),
        "silence" => ("silence", C::Silence(cur.duration()?)),
        _ => return None,
    })
}

/// The rest of `choices` (compound-atomic: no comments, only spaces and tabs between the
/// parts of a choice, and `\r` after a separating comma), after its keyword.
fn choices(cur: &mut Cur<'_>) -> Option<Vec<(KeyLit, Spanned<String>)>> {
    cur.pos = cur.last;
    cur.hspace();
    let mut choices = vec![choice(cur)?];
    loop {
        cur.pos = cur.last;
        cur.hspace();
        if cur.peek() != Some(b',') {
            return Some(choices);
        }
        cur.pos += 1;
        while matches!(cur.peek(), Some(b' ' | b'\t' | b'\r')) {
            cur.pos += 1;
        }
        choices.push(choice(cur)?);
    }
}

/// `choice`: `KEY = "label"`.
fn choice(cur: &mut Cur<'_>) -> Option<(KeyLit, Spanned<String>)> {
    let key = cur.key_lit()?;
    cur.hspace();
    if cur.peek()? != b'=' || cur.looking_at("==") {
        return None;
    }
    cur.take(cur.pos + 1);
    cur.hspace();
    let label = cur.string()?;
    Some((key, label))
}
