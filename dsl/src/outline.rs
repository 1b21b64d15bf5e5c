//! Where each top-level item of a `.flow` file and each clause of its blocks was written, in
//! the order written ([`crate::parse_flow_outline`]). The syntax tree sorts clauses into each
//! node's fields; the outline keeps their order and extent, which is what the formatter lays
//! out and what an editor's outline shows.

use crate::ast::NodeKind;
use crate::span::Span;

/// The items of one file, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outline {
    /// Every item whose head parsed.
    pub items: Vec<OutlineItem>,
}

/// What a top-level item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `flow NAME { ... }`
    Header,
    /// `import NAME`
    Import,
    /// `KIND NAME { ... }`
    Node(NodeKind),
}

/// One top-level item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineItem {
    /// What it is.
    pub kind: ItemKind,
    /// From its first word to its last token (the `}` of a block).
    pub span: Span,
    /// Its head: `KIND NAME {` (the whole line of an import).
    pub head: Span,
    /// Each clause of its block that parsed, first word to last token.
    pub clauses: Vec<Span>,
    /// Whether its block was closed by a `}` (always true for an import).
    pub closed: bool,
}
