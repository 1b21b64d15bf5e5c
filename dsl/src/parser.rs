//! Placeholder replaced by the real parser.
use crate::ast::FlowFile;
use crate::diagnostic::{Diagnostic, FileId};

/// The result of parsing one file: the tree of everything that parsed, and the syntax errors.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The syntax tree (partial when there were syntax errors).
    pub flow: FlowFile,
    /// Syntax errors and misplaced clauses.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses the text of one `.flow` file.
pub fn parse_flow(_file: FileId, _source: &str) -> Parsed {
    unimplemented!()
}
