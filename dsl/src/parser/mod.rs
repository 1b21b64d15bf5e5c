//! The parser of `.flow` files.
//!
//! The grammar (`src/grammar.pest`) is driven piece by piece so that one run reports every
//! problem of a file: the top level is read item by item (`flow` header, `import` line,
//! `KIND NAME {` node head), and the body of each block clause by clause. After a syntax
//! error the parser resumes at the next line of the block (or at the next top-level item when
//! a head is broken), so each broken line gives one error and everything else still lands in
//! the tree.
//!
//! Before pest, each node head and clause is offered to a hand-written fast path (`fast`),
//! which reads the common well-formed shapes directly and builds exactly what pest would;
//! everything else (and every error) goes through pest. `parse_flow_slow` skips the fast
//! path, so that tests can compare the two.

mod build;
mod clauses;
mod errors;
mod expr;
mod fast;
mod grammar;
mod literals;
mod nodes;
mod scan;

use crate::ast::{FlowFile, Ident, Node, NodeKind};
use crate::diagnostic::{Diagnostic, FileId};
use crate::outline::{ItemKind, Outline, OutlineItem};
use crate::span::Span;
use build::{Builder, SYNTAX, child, true_end};
use clauses::Clause;
use errors::Context;
use grammar::{FlowParser, Rule};
use nodes::{DUPLICATE_CLAUSE, Place, Sorter};
use pest::Parser;
use pest::iterators::Pair;

/// How deeply parentheses may nest in an expression.
pub const MAX_NESTING: usize = 64;

/// The result of parsing one file: the tree of everything that parsed, and the syntax errors.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The syntax tree (partial when there were syntax errors).
    pub flow: FlowFile,
    /// Syntax errors and misplaced clauses.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses the text of one `.flow` file.
///
/// Never panics. Diagnostics use the codes `syntax`, `reserved-name`, `misplaced-clause`,
/// `duplicate-clause` and `number-too-large`, and come sorted by position.
pub fn parse_flow(file: FileId, source: &str) -> Parsed {
    parse(file, source, true).0
}

/// [`parse_flow`], and where each top-level item and each clause was written ([`Outline`]):
/// what the formatter and the language server lay out and navigate by.
pub fn parse_flow_outline(file: FileId, source: &str) -> (Parsed, Outline) {
    parse(file, source, true)
}

/// [`parse_flow`] without the hand-written fast path (`parser/fast.rs`): every clause and
/// node head goes through pest. The result is the same; tests compare the two.
#[doc(hidden)]
pub fn parse_flow_slow(file: FileId, source: &str) -> Parsed {
    parse(file, source, false).0
}

fn parse(file: FileId, source: &str, fast: bool) -> (Parsed, Outline) {
    let mut diags = Vec::new();
    let (text, too_deep) = scan::limit_nesting(source, MAX_NESTING);
    for at in too_deep {
        diags.push(Diagnostic::error(
            SYNTAX,
            file,
            Span::new(at, at + 1),
            format!("parentheses are nested more than {MAX_NESTING} deep"),
        ));
    }
    let mut driver = Driver {
        file,
        fast,
        src: &text,
        diags,
        flow: FlowFile {
            header: None,
            imports: Vec::new(),
            nodes: Vec::new(),
        },
        outline: Outline::default(),
    };
    driver.file_items();
    let Driver {
        flow,
        mut diags,
        outline,
        ..
    } = driver;
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    let parsed = Parsed {
        flow,
        diagnostics: diags,
    };
    (parsed, outline)
}

/// The state of one parse.
struct Driver<'s> {
    file: FileId,
    /// Whether to try the hand-written fast path (`fast`) before pest.
    fast: bool,
    src: &'s str,
    diags: Vec<Diagnostic>,
    flow: FlowFile,
    /// Where each item and clause was written.
    outline: Outline,
}

/// The outcome of reading a block's body.
struct Block {
    clauses: Vec<Clause>,
    /// Every clause that parsed, first word to last token, in the order written.
    spans: Vec<Span>,
    /// Where reading stopped (after the `}` when there was one).
    end: usize,
    /// The end of the block's last token (the `}` or the last clause).
    last: usize,
    /// Whether the block ended with its `}`.
    closed: bool,
}

/// The next character boundary after `pos`.
fn step_past(src: &str, pos: usize) -> usize {
    let mut next = pos + 1;
    while next < src.len() && !src.is_char_boundary(next) {
        next += 1;
    }
    next
}

impl<'s> Driver<'s> {
    fn builder(&mut self, offset: usize) -> Builder<'_> {
        Builder {
            file: self.file,
            offset,
            diags: &mut self.diags,
        }
    }

    /// Parses `rule` at `pos`; on failure reports a syntax error and returns where it stopped.
    ///
    /// pest is given a window of a few lines rather than the rest of the file, because the
    /// error it builds costs time in proportion to its input; the window grows whenever the
    /// parse reached its end, so the outcome is the same as with the whole rest of the file.
    fn parse_at(
        &mut self,
        rule: Rule,
        pos: usize,
        ctx: &Context<'_>,
    ) -> Result<Pair<'s, Rule>, usize> {
        let src: &'s str = self.src;
        let mut lines = 2;
        loop {
            let window_end = scan::lines_end(src, pos, lines);
            let whole = window_end >= src.len();
            let window = src.get(pos..window_end).ok_or(src.len())?;
            // Whether the parse stopped at a token inside the window.
            let inside = |rel: usize| whole || scan::skip_trivia(src, pos + rel) < window_end;
            match FlowParser::parse(rule, window) {
                Ok(mut pairs) => {
                    let pair = pairs.next().ok_or(pos)?;
                    if inside(true_end(&pair)) {
                        return Ok(pair);
                    }
                }
                Err(err) => {
                    let rel = match err.location {
                        pest::error::InputLocation::Pos(p) => p,
                        pest::error::InputLocation::Span((s, _)) => s,
                    };
                    if inside(rel) {
                        let (diag, at) = errors::syntax_error(self.file, src, pos, &err, ctx);
                        self.diags.push(diag);
                        return Err(at);
                    }
                }
            }
            lines *= 4;
        }
    }

    /// Reads the whole file, item by item.
    fn file_items(&mut self) {
        let mut pos = 0;
        loop {
            pos = scan::skip_trivia(self.src, pos);
            let Some(tok) = scan::token_at(self.src, pos) else {
                return;
            };
            let next = match tok.text(self.src) {
                "flow" => self.header(pos),
                "import" => self.import(pos),
                "}" => {
                    self.diags.push(Diagnostic::error(
                        SYNTAX,
                        self.file,
                        Span::new(tok.start, tok.end),
                        "unexpected `}`: no block is open here",
                    ));
                    tok.end
                }
                word => match node_kind(word) {
                    Some(kind) => self.node(pos, kind),
                    None => {
                        self.unknown_item(tok);
                        scan::skip_item(self.src, pos)
                    }
                },
            };
            pos = if next > pos {
                next
            } else {
                step_past(self.src, pos)
            };
        }
    }

    fn unknown_item(&mut self, tok: scan::Token) {
        let text = tok.text(self.src);
        let mut d = Diagnostic::error(
            SYNTAX,
            self.file,
            Span::new(tok.start, tok.end),
            format!(
                "expected `flow`, `import` or a node (`step`, `menu`, `input`, `lookup`, \
                 `transfer`, `survey` or `record`), found `{text}`"
            ),
        );
        if let Some(word) = scan::closest(text, scan::TOP_LEVEL_WORDS.iter().copied()) {
            d = d.with_hint(format!("did you mean `{word}`?"));
        } else if nodes::owners(text).is_empty() {
            d = d.with_hint("every node is written `KIND NAME { ... }`");
        } else {
            d = d.with_hint(format!(
                "`{text}` is a clause; it must stand inside a node's braces"
            ));
        }
        self.diags.push(d);
    }

    /// `import NAME`
    fn import(&mut self, pos: usize) -> usize {
        let ctx = Context {
            start: pos,
            block: None,
        };
        match self.parse_at(Rule::import_item, pos, &ctx) {
            Ok(pair) => {
                let name_pair = child(&pair, Rule::decl_name);
                let end = name_pair
                    .as_ref()
                    .map_or(pos + true_end(&pair), |n| pos + n.as_span().end());
                let name = name_pair.map(|n| self.builder(pos).ident(&n, "a flow"));
                if let Some(name) = name {
                    self.flow.imports.push(name);
                }
                self.outline.items.push(OutlineItem {
                    kind: ItemKind::Import,
                    span: Span::new(pos, end),
                    head: Span::new(pos, end),
                    clauses: Vec::new(),
                    closed: true,
                });
                end
            }
            Err(at) => scan::recover_point(self.src, at),
        }
    }

    /// `flow NAME { ... }`
    fn header(&mut self, pos: usize) -> usize {
        let ctx = Context {
            start: pos,
            block: None,
        };
        let head = match self.parse_at(Rule::header_head, pos, &ctx) {
            Ok(head) => head,
            Err(at) => return self.broken_head(at, Place::Header, "the flow header"),
        };
        let Some((name, open)) = self.head_parts(&head, pos, "a flow") else {
            return scan::skip_item(self.src, pos);
        };
        let block = self.block(open.end as usize, Place::Header, "the flow header", open);
        let span = Span::new(pos, block.last);
        self.outline.items.push(OutlineItem {
            kind: ItemKind::Header,
            span,
            head: Span::new(pos, open.end as usize),
            clauses: block.spans.clone(),
            closed: block.closed,
        });
        let mut sorter = Sorter::new(
            self.file,
            Place::Header,
            "the flow header".to_string(),
            &mut self.diags,
        );
        let header = sorter.header(name, block.clauses, span);
        match &self.flow.header {
            Some(first) => {
                let first = first.span;
                self.diags.push(
                    Diagnostic::error(
                        DUPLICATE_CLAUSE,
                        self.file,
                        header.name.span,
                        "a file holds one flow, but this is a second `flow` header",
                    )
                    .with_related(self.file, first, "the first header"),
                );
            }
            None => self.flow.header = Some(header),
        }
        block.end
    }

    /// `KIND NAME { ... }`
    fn node(&mut self, pos: usize, kind: NodeKind) -> usize {
        let kw_end = pos + kind.keyword().len();
        let fast = match self.fast {
            true => fast::node_head(self.file, self.src, pos, kw_end, &mut self.diags),
            false => None,
        };
        let (name, open, keyword_span) = match fast {
            Some(head) => head,
            None => match self.node_head(pos, kind) {
                Ok(head) => head,
                Err(next) => return next,
            },
        };
        let desc = format!("{} `{}`", kind.keyword(), name.name);
        let block = self.block(open.end as usize, Place::Node(kind), &desc, open);
        self.outline.items.push(OutlineItem {
            kind: ItemKind::Node(kind),
            span: Span::new(pos, block.last),
            head: Span::new(pos, open.end as usize),
            clauses: block.spans.clone(),
            closed: block.closed,
        });
        let mut sorter = Sorter::new(self.file, Place::Node(kind), desc, &mut self.diags);
        let body = sorter.body(kind, block.clauses);
        self.flow.nodes.push(Node {
            name,
            body,
            keyword_span,
            span: Span::new(pos, block.last),
        });
        block.end
    }

    /// `KIND NAME {` through pest: the name, the `{` and the keyword, or where to resume.
    fn node_head(&mut self, pos: usize, kind: NodeKind) -> Result<(Ident, Span, Span), usize> {
        let ctx = Context {
            start: pos,
            block: None,
        };
        let head = match self.parse_at(Rule::node_head, pos, &ctx) {
            Ok(head) => head,
            Err(at) => return Err(self.broken_head(at, Place::Node(kind), kind.keyword())),
        };
        let Some((name, open)) = self.head_parts(&head, pos, "a node") else {
            return Err(scan::skip_item(self.src, pos));
        };
        let keyword_span =
            child(&head, Rule::node_kw).map_or(Span::new(pos, pos), |k| self.builder(pos).span(&k));
        Ok((name, open, keyword_span))
    }

    /// The name and the `{` of a parsed head.
    fn head_parts(
        &mut self,
        head: &Pair<'s, Rule>,
        pos: usize,
        role: &str,
    ) -> Option<(Ident, Span)> {
        let name = child(head, Rule::decl_name)?;
        let brace = child(head, Rule::lbrace)?;
        let mut b = self.builder(pos);
        let name = b.ident(&name, role);
        Some((name, b.span(&brace)))
    }

    /// After a broken head: when a `{` follows on the same line, reads the body anyway (to
    /// report its problems) and drops it; otherwise skips the item.
    fn broken_head(&mut self, at: usize, place: Place, desc: &str) -> usize {
        let src = self.src;
        let line_end = scan::line_end(src, at);
        let brace = scan::tokens_between(src, at, line_end)
            .into_iter()
            .find(|t| t.text(src) == "{");
        match brace {
            Some(open) => {
                let open = Span::new(open.start, open.end);
                self.block(open.end as usize, place, desc, open).end
            }
            None => scan::skip_item(src, at),
        }
    }

    /// Reads clauses from `pos` up to the `}` that closes the block.
    fn block(&mut self, mut pos: usize, place: Place, desc: &str, open: Span) -> Block {
        let mut clauses = Vec::new();
        let mut spans = Vec::new();
        let src = self.src;
        loop {
            pos = scan::skip_trivia(src, pos);
            let tok = scan::token_at(src, pos);
            match tok {
                Some(t) if t.text(src) == "}" => {
                    return Block {
                        clauses,
                        spans,
                        end: t.end,
                        last: t.end,
                        closed: true,
                    };
                }
                Some(t) if !scan::is_top_level_word(src, &t) || scan::is_record_call(src, &t) => {}
                _ => {
                    // The end of the file, or the next item: the `}` is missing.
                    let last = scan::last_token_end(src, open.start as usize, pos);
                    let what = match place {
                        Place::Header => "the flow header".to_string(),
                        Place::Node(_) => desc.to_string(),
                    };
                    self.diags.push(
                        Diagnostic::error(
                            SYNTAX,
                            self.file,
                            Span::new(last, last),
                            format!("expected `}}` to close {what}"),
                        )
                        .with_related(
                            self.file,
                            open,
                            "the block opened here",
                        ),
                    );
                    return Block {
                        clauses,
                        spans,
                        end: pos,
                        last,
                        closed: false,
                    };
                }
            }
            // The hand-written fast path first; pest for anything it does not take.
            if let Some(t) = tok.filter(|_| self.fast)
                && let Some((clause, end)) =
                    fast::clause(self.file, src, pos, t.end, &mut self.diags)
            {
                clauses.push(clause);
                spans.push(Span::new(pos, end));
                pos = end;
                continue;
            }
            let ctx = Context {
                start: pos,
                block: Some((place, desc)),
            };
            // The clause's first word picks its rule, so pest does not try every clause in
            // turn; anything unusual goes through the whole union, whose errors say the most.
            let specific = tok
                .and_then(|t| clause_rule(t.text(src), src, t.end))
                .and_then(|rule| FlowParser::parse(rule, line_window(src, pos)).ok())
                .and_then(|mut pairs| pairs.next())
                .filter(|pair| {
                    let end = pos + true_end(pair);
                    // Accept only a clause that ends its line (else the union decides).
                    scan::skip_trivia_on_line(src, end) >= scan::line_end(src, pos)
                });
            let parsed = match specific {
                Some(pair) => Ok(pair),
                None => self.parse_at(Rule::clause, pos, &ctx),
            };
            match parsed {
                Ok(pair) => {
                    let end = pos + true_end(&pair);
                    spans.push(Span::new(pos, end));
                    if let Some(clause) = self.builder(pos).clause(&pair) {
                        clauses.push(clause);
                    }
                    pos = if end > pos { end } else { step_past(src, pos) };
                }
                Err(at) => {
                    // Something missing at the end of a line: the next line is intact.
                    let prev_end = scan::last_token_end(src, pos, at);
                    let next = if at > pos && scan::has_newline(src, prev_end, at) {
                        at
                    } else {
                        scan::recover_point(src, at.max(pos))
                    };
                    pos = if next > pos {
                        next
                    } else {
                        step_past(src, pos)
                    };
                }
            }
        }
    }
}

/// The line that starts at `pos`, without its line break.
fn line_window(src: &str, pos: usize) -> &str {
    src.get(pos..scan::line_end(src, pos)).unwrap_or("")
}

/// The clause rule a first word introduces, when it introduces exactly one.
fn clause_rule(word: &str, src: &str, after: usize) -> Option<Rule> {
    Some(match word {
        "title" => Rule::title_clause,
        "language" => Rule::language_clause,
        "entry" => Rule::entry_clause,
        "play" => Rule::play_stmt,
        "say" => Rule::say_stmt,
        "set" => {
            let next = scan::skip_trivia(src, after);
            match scan::token_at(src, next) {
                Some(t) if t.text(src) == "language" => Rule::set_language_stmt,
                _ => Rule::set_stmt,
            }
        }
        "pause" => Rule::pause_stmt,
        "if" => Rule::if_stmt,
        "goto" => Rule::goto_stmt,
        "hangup" => Rule::hangup_stmt,
        "served" => Rule::served_stmt,
        "record" => Rule::record_call_stmt,
        "prompt" => Rule::prompt_clause,
        "timeout" => Rule::timeout_clause,
        "inter_digit" => Rule::inter_digit_clause,
        "attempts" => Rule::attempts_clause,
        "no_input" => Rule::no_input_clause,
        "no_match" => Rule::no_match_clause,
        "barge_in" => Rule::barge_in_clause,
        "key" => Rule::key_clause,
        "digits" => Rule::digits_clause,
        "terminator" => Rule::terminator_clause,
        "mask" => Rule::mask_clause,
        "valid" => Rule::valid_clause,
        "into" => Rule::into_clause,
        "next" => Rule::next_clause,
        "query" => Rule::query_clause,
        "found" => Rule::found_clause,
        "missing" => Rule::missing_clause,
        "error" => Rule::error_clause,
        "queue" => Rule::queue_clause,
        "to" => Rule::to_clause,
        "skills" => Rule::skills_clause,
        "priority" => Rule::priority_clause,
        "attach" => Rule::attach_clause,
        "music" => Rule::music_clause,
        "announce" => Rule::announce_clause,
        "max_wait" => Rule::max_wait_clause,
        "no_agents" => Rule::no_agents_clause,
        "after" => Rule::after_clause,
        "overflow" => Rule::overflow_clause,
        "level" => Rule::level_clause,
        "callback" => Rule::callback_clause,
        "question" => Rule::question_clause,
        "save" => Rule::save_clause,
        "beep" => Rule::beep_clause,
        "max" => Rule::max_clause,
        "silence" => Rule::silence_clause,
        _ => return None,
    })
}

fn node_kind(word: &str) -> Option<NodeKind> {
    Some(match word {
        "step" => NodeKind::Step,
        "menu" => NodeKind::Menu,
        "input" => NodeKind::Input,
        "lookup" => NodeKind::Lookup,
        "transfer" => NodeKind::Transfer,
        "survey" => NodeKind::Survey,
        "record" => NodeKind::Record,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
