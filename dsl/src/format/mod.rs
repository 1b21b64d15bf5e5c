//! `ivr fmt`: the canonical layout of a `.flow` file.
//!
//! - four-space indents, one clause a line, single spaces between tokens except where the
//!   language writes them together (`len(x)`, `customer.vip`, `6..18`, `-3`, `a, b`);
//! - in every block but a `step`, the clause words of a group of lines are padded to the
//!   longest, as in the language's examples (`prompt   main_menu`, `attempts 3 -> agent`); a
//!   blank line, and an input's `mask`, start a new group; `key`, `no_input`, `no_match` and
//!   `no_agents` keep one space (`key 1 -> bill`, `no_input play x`), and `key` and
//!   `no_agents` do not widen the column; consecutive `question` lines align their name and
//!   prompt; in a `step`, consecutive `set` lines align their `=`;
//! - comments are kept: a comment on a line of its own stays on a line of its own, indented
//!   with the code; a trailing comment stays after its code, in its column, or two spaces after
//!   the code when the code now reaches that column; comments written inside a clause that
//!   spanned lines go on lines of their own above it;
//! - blank lines are kept, at most one in a row inside a block and two between items, none
//!   after a `{` or before a `}`; items are separated by at least one blank line (imports in a
//!   row may stand together); the file ends with one line break.
//!
//! Formatting never changes meaning: the result is parsed again and must give the same syntax
//! tree (spans aside), the same parser diagnostics and the same comments, or nothing is
//! written ([`FormatError::Changed`]). A file with syntax errors is not formatted.

mod layout;
mod lex;
mod render;
mod verify;

pub use verify::Difference;

use crate::diagnostic::FileId;
use crate::parser::parse_flow_outline;
use crate::span::line_col;

/// Why a flow was not formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file has syntax errors; the formatter lays out only what parses.
    #[error("{count} syntax error(s), the first at line {line}, column {column}: {message}")]
    Syntax {
        /// How many.
        count: usize,
        /// The first one's line (1-based).
        line: usize,
        /// The first one's column (1-based, in characters).
        column: usize,
        /// The first one's message.
        message: String,
    },
    /// The laid-out text would not read back as the same flow (a bug of the formatter: the
    /// file is left as it is).
    #[error("formatting would change this flow's meaning ({0}); the file is left as it is")]
    Changed(Difference),
}

/// The canonical layout of a flow's source text.
pub fn format_flow(source: &str) -> Result<String, FormatError> {
    let (parsed, outline) = parse_flow_outline(FileId(0), source);
    let syntax: Vec<_> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.code == "syntax")
        .collect();
    if let Some(first) = syntax.first() {
        let (line, column) = line_col(source, first.span.start as usize);
        return Err(FormatError::Syntax {
            count: syntax.len(),
            line,
            column,
            message: first.message.clone(),
        });
    }
    let formatted = layout::Layout::new(source, &outline).finish();
    verify::same_flow(source, &parsed, &formatted).map_err(FormatError::Changed)?;
    Ok(formatted)
}

#[cfg(test)]
mod tests;
