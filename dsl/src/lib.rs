//! The flow language of `ivr`: the pest grammar, the typed syntax tree with source spans, and
//! the diagnostics every later stage reports through.
//!
//! ```
//! use ivr_dsl::{parse_flow, FileId};
//! let parsed = parse_flow(FileId(0), "flow f { entry a }\nstep a { hangup }\n");
//! assert!(parsed.diagnostics.is_empty());
//! assert_eq!(parsed.flow.nodes.len(), 1);
//! ```

pub mod ast;
pub mod diagnostic;
pub mod format;
pub mod outline;
mod parser;
pub mod scenario_ast;
mod scenario_parser;
pub mod span;

pub use diagnostic::{Diagnostic, FileId, Related, Severity, SourceMap};
#[doc(hidden)]
pub use parser::parse_flow_slow;
pub use parser::{Parsed, parse_flow, parse_flow_outline};
pub use scenario_parser::{ParsedScenarios, parse_scenarios};
pub use span::{Span, Spanned};
