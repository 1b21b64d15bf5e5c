//! The formatter's own check: the laid-out text reads back as the same flow.

use super::lex::{Tok, gap, tokens};
use crate::diagnostic::FileId;
use crate::parser::{Parsed, parse_flow_outline};

/// What differs between a flow and its laid-out text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Difference {
    /// The syntax trees (spans aside).
    #[error("the syntax tree differs")]
    Tree,
    /// The parser's diagnostics.
    #[error("the parser's diagnostics differ")]
    Diagnostics,
    /// The comments.
    #[error("the comments differ")]
    Comments,
}

/// `Ok` when `formatted` parses to the same tree (spans aside), the same parser diagnostics
/// and the same comments as `source` did; else what differs.
pub(crate) fn same_flow(source: &str, parsed: &Parsed, formatted: &str) -> Result<(), Difference> {
    let (again, outline) = parse_flow_outline(FileId(0), formatted);
    let tree = |p: &Parsed| without_spans(&format!("{:?}", p.flow));
    if tree(parsed) != tree(&again) {
        return Err(Difference::Tree);
    }
    let diags = |p: &Parsed| -> Vec<(&'static str, String)> {
        p.diagnostics
            .iter()
            .map(|d| (d.code, d.message.clone()))
            .collect()
    };
    if diags(parsed) != diags(&again) {
        return Err(Difference::Diagnostics);
    }
    let (_, first) = parse_flow_outline(FileId(0), source);
    if comments(source, &first) != comments(formatted, &outline) {
        return Err(Difference::Comments);
    }
    Ok(())
}

/// Every comment of a file, in order.
pub(crate) fn comments(src: &str, outline: &crate::outline::Outline) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos = 0;
    let take_gap = |from: usize, to: usize, out: &mut Vec<String>| {
        out.extend(
            gap(src, from, to.max(from))
                .comments
                .into_iter()
                .map(|c| c.text),
        );
    };
    let take_code = |span: crate::span::Span, out: &mut Vec<String>| {
        let text = src.get(span.range()).unwrap_or("");
        out.extend(tokens(text).into_iter().filter_map(|t| match t {
            Tok::Comment(c) => Some(c),
            _ => None,
        }));
    };
    for item in &outline.items {
        take_gap(pos, item.span.start as usize, &mut out);
        take_code(item.head, &mut out);
        let mut at = item.head.end as usize;
        for c in &item.clauses {
            take_gap(at, c.start as usize, &mut out);
            take_code(*c, &mut out);
            at = c.end as usize;
        }
        if at < item.span.end as usize {
            take_gap(at, (item.span.end as usize).saturating_sub(1), &mut out);
        }
        pos = item.span.end as usize;
    }
    take_gap(pos, src.len(), &mut out);
    // A comment hoisted out of a clause moves before it: compare as a sorted list.
    out.sort();
    out
}

/// The tree's `Debug` text with every `Span { start: .., end: .. }` left out.
fn without_spans(debug: &str) -> String {
    const SPAN: &str = "Span { start: ";
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    while let Some(at) = rest.find(SPAN) {
        out.push_str(&rest[..at]);
        out.push_str("Span");
        let after = &rest[at + SPAN.len()..];
        rest = after.find('}').map_or("", |close| &after[close + 1..]);
    }
    out.push_str(rest);
    out
}
