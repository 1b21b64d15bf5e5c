//! The formatted file as lines: items and clauses in source order, comments where they were
//! written (own-line comments on their own line, trailing comments after their code), blank
//! lines kept (at most one inside a block, two between items), then clause words aligned.

use super::lex::{Gap, gap, tokens};
use super::render::{Rendered, render};
use crate::outline::{ItemKind, Outline};
use crate::span::Span;

/// Blank lines kept in a row inside a block.
const MAX_BLANK_IN_BLOCK: usize = 1;
/// Blank lines kept in a row between items.
const MAX_BLANK_TOP: usize = 2;
/// Clause words that keep one space, as in the language's examples: `key` lines are a list of
/// their own; `no_input` and `no_match` are followed by `play`, which reads as part of the
/// word; `no_agents` is longer than the column of a transfer.
const UNPADDED: &[&str] = &["key", "no_input", "no_match", "no_agents"];
/// Of those, the words that do not widen the column either.
const UNCOUNTED: &[&str] = &["key", "no_agents"];
/// A clause that starts a new column after it: an input's `mask` stands between how digits
/// are collected and what is done with them.
const NEW_COLUMN_AFTER: &str = "mask";

/// One output line.
#[derive(Debug, Clone)]
struct Line {
    /// Indentation level (four spaces each).
    depth: usize,
    /// The block it belongs to (0 for the top level).
    block: usize,
    /// Whether that block is a `step`.
    step: bool,
    kind: LineKind,
}

#[derive(Debug, Clone)]
enum LineKind {
    Blank,
    Comment(String),
    Code {
        cells: Vec<String>,
        /// The width each cell is padded to (0: not padded).
        widths: Vec<usize>,
        /// A trailing comment and the column it was written at.
        trailing: Option<(String, usize)>,
        /// A clause of a block (not a head or `}`): it takes part in alignment.
        clause: bool,
    },
}

/// Where a gap lies, which decides its blank lines.
#[derive(Clone, Copy)]
struct GapPlace {
    depth: usize,
    block: usize,
    step: bool,
    /// Blank lines kept in a row.
    max_blank: usize,
    /// Right after a `{`, or at the start of the file: no blank line first.
    at_start: bool,
    /// Right before a `}`: no blank line last.
    before_close: bool,
    /// At least this many blank lines before the first own line (between items).
    min_blank: usize,
}

/// Builds the lines of a file.
pub(crate) struct Layout<'s> {
    src: &'s str,
    lines: Vec<Line>,
    blocks: usize,
}

impl<'s> Layout<'s> {
    /// Lays out a file the parser read without syntax errors.
    pub(crate) fn new(src: &'s str, outline: &Outline) -> Layout<'s> {
        let mut layout = Layout {
            src,
            lines: Vec::new(),
            blocks: 0,
        };
        let mut pos = 0;
        let mut prev: Option<ItemKind> = None;
        for item in &outline.items {
            let apart = match prev {
                None => 0,
                Some(ItemKind::Import) if item.kind == ItemKind::Import => 0,
                Some(_) => 1,
            };
            let place = GapPlace {
                depth: 0,
                block: 0,
                step: false,
                max_blank: MAX_BLANK_TOP,
                at_start: prev.is_none(),
                before_close: false,
                min_blank: apart,
            };
            layout.gap(pos, item.span.start as usize, place);
            if item.kind == ItemKind::Import {
                layout.code(0, 0, false, render(&tokens(layout.text(item.head))), false);
                pos = item.span.end as usize;
            } else {
                layout.block(item.head, &item.clauses, item.span, item.kind);
                pos = item.span.end as usize;
            }
            prev = Some(item.kind);
        }
        let place = GapPlace {
            depth: 0,
            block: 0,
            step: false,
            max_blank: MAX_BLANK_TOP,
            at_start: prev.is_none(),
            before_close: true,
            min_blank: 0,
        };
        layout.gap(pos, src.len(), place);
        layout.align();
        layout
    }

    fn text(&self, span: Span) -> &'s str {
        self.src.get(span.range()).unwrap_or("")
    }

    /// A head, its clauses and its `}`.
    fn block(&mut self, head: Span, clauses: &[Span], span: Span, kind: ItemKind) {
        self.blocks += 1;
        let block = self.blocks;
        let step = kind == ItemKind::Node(crate::ast::NodeKind::Step);
        let mut head_line = render(&tokens(self.text(head)));
        head_line.cells = vec![head_line.cells.join(" ")];
        self.code(0, 0, false, head_line, false);
        let mut pos = head.end as usize;
        let close = (span.end as usize).saturating_sub(1);
        for (i, clause) in clauses.iter().enumerate() {
            let place = GapPlace {
                depth: 1,
                block,
                step,
                max_blank: MAX_BLANK_IN_BLOCK,
                at_start: i == 0,
                before_close: false,
                min_blank: 0,
            };
            self.gap(pos, clause.start as usize, place);
            let rendered = render(&tokens(self.text(*clause)));
            self.code(1, block, step, rendered, true);
            pos = clause.end as usize;
        }
        let place = GapPlace {
            depth: 1,
            block,
            step,
            max_blank: MAX_BLANK_IN_BLOCK,
            at_start: clauses.is_empty(),
            before_close: true,
            min_blank: 0,
        };
        self.gap(pos, close.max(pos), place);
        self.code(0, 0, false, render(&tokens("}")), false);
    }

    /// A line of code, after the comments that were written inside it.
    fn code(&mut self, depth: usize, block: usize, step: bool, r: Rendered, clause: bool) {
        for c in r.comments {
            self.push(depth, block, step, LineKind::Comment(c));
        }
        let widths = vec![0; r.cells.len()];
        self.push(
            depth,
            block,
            step,
            LineKind::Code {
                cells: r.cells,
                widths,
                trailing: None,
                clause,
            },
        );
    }

    fn push(&mut self, depth: usize, block: usize, step: bool, kind: LineKind) {
        self.lines.push(Line {
            depth,
            block,
            step,
            kind,
        });
    }

    fn blanks(&mut self, count: usize, place: GapPlace) {
        for _ in 0..count {
            self.push(place.depth, place.block, place.step, LineKind::Blank);
        }
    }

    /// The comments and blank lines between `start` and `end`.
    fn gap(&mut self, start: usize, end: usize, place: GapPlace) {
        let Gap {
            comments,
            breaks_after,
        } = gap(self.src, start, end);
        let mut first_own = true;
        let kept = |breaks: usize, first: &mut bool| -> usize {
            let mut n = breaks.saturating_sub(1).min(place.max_blank);
            if *first {
                if place.at_start {
                    n = 0;
                }
                n = n.max(place.min_blank);
                *first = false;
            }
            n
        };
        for c in comments {
            if c.breaks_before == 0
                && let Some(Line {
                    kind: LineKind::Code { trailing, .. },
                    ..
                }) = self.lines.last_mut()
                && trailing.is_none()
            {
                *trailing = Some((c.text, c.column));
                continue;
            }
            let n = kept(c.breaks_before, &mut first_own);
            self.blanks(n, place);
            self.push(
                place.depth,
                place.block,
                place.step,
                LineKind::Comment(c.text),
            );
        }
        if !place.before_close {
            let n = kept(breaks_after, &mut first_own);
            self.blanks(n, place);
        }
    }

    /// Aligns clause words (and a step's `=`) in each group of lines.
    fn align(&mut self) {
        let mut group: Vec<usize> = Vec::new();
        for i in 0..self.lines.len() {
            let line = &self.lines[i];
            let breaks = match &line.kind {
                LineKind::Blank => true,
                LineKind::Comment(_) => false,
                LineKind::Code { cells, clause, .. } => {
                    !clause || (line.step && !is_set(cells)) || cells[0] == NEW_COLUMN_AFTER
                }
            };
            let other_block = group
                .first()
                .is_some_and(|&g| self.lines[g].block != line.block);
            let is_code = matches!(line.kind, LineKind::Code { .. });
            if breaks || other_block {
                self.align_group(&group);
                group.clear();
            }
            if !breaks && is_code {
                group.push(i);
            }
        }
        self.align_group(&group);
    }

    fn align_group(&mut self, group: &[usize]) {
        let Some(&first) = group.first() else {
            return;
        };
        if self.lines[first].step {
            self.pad_cell(group, 1);
            return;
        }
        let width = group
            .iter()
            .filter_map(|&i| cells(&self.lines[i]))
            .filter(|c| !UNCOUNTED.contains(&c[0].as_str()))
            .map(|c| c[0].chars().count())
            .max()
            .unwrap_or(0);
        for &i in group {
            if let LineKind::Code { cells, widths, .. } = &mut self.lines[i].kind
                && !UNPADDED.contains(&cells[0].as_str())
            {
                widths[0] = width;
            }
        }
        // Runs of `question` lines align their name and prompt too.
        let mut run = Vec::new();
        for &i in group {
            if cells(&self.lines[i]).is_some_and(|c| c[0] == "question" && c.len() == 4) {
                run.push(i);
            } else {
                self.pad_cell(&run, 1);
                self.pad_cell(&run, 2);
                run.clear();
            }
        }
        self.pad_cell(&run, 1);
        self.pad_cell(&run, 2);
    }

    /// Pads cell `n` of every line to the widest.
    fn pad_cell(&mut self, lines: &[usize], n: usize) {
        let width = lines
            .iter()
            .filter_map(|&i| cells(&self.lines[i]).and_then(|c| c.get(n)))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0);
        for &i in lines {
            if let LineKind::Code { widths, .. } = &mut self.lines[i].kind
                && let Some(w) = widths.get_mut(n)
            {
                *w = width;
            }
        }
    }

    /// The text of the file.
    pub(crate) fn finish(self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let indent = "    ".repeat(line.depth);
            let text = match &line.kind {
                LineKind::Blank => String::new(),
                LineKind::Comment(c) => format!("{indent}{c}"),
                LineKind::Code {
                    cells,
                    widths,
                    trailing,
                    ..
                } => {
                    let mut code = indent;
                    for (n, cell) in cells.iter().enumerate() {
                        if n > 0 {
                            code.push(' ');
                        }
                        code.push_str(cell);
                        if n + 1 < cells.len() {
                            let len = cell.chars().count();
                            code.extend(std::iter::repeat_n(' ', widths[n].saturating_sub(len)));
                        }
                    }
                    if let Some((comment, column)) = trailing {
                        let len = code.chars().count();
                        let at = if *column > len { *column } else { len + 2 };
                        code.extend(std::iter::repeat_n(' ', at - len));
                        code.push_str(comment);
                    }
                    code
                }
            };
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

fn cells(line: &Line) -> Option<&Vec<String>> {
    match &line.kind {
        LineKind::Code { cells, .. } => Some(cells),
        _ => None,
    }
}

fn is_set(cells: &[String]) -> bool {
    cells.len() == 3 && cells[0] == "set"
}
