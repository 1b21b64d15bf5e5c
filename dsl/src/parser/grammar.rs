//! The pest parser generated from `src/grammar.pest`.

use pest_derive::Parser;

/// The pest parser of the flow language; [`Rule`] names its rules.
#[derive(Parser)]
#[grammar = "grammar.pest"]
pub(crate) struct FlowParser;
