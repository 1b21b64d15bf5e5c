//! Loading a deployment's flows ready to run: checked, compiled, with prompt texts and
//! durations, for `ivr simulate` and `ivr test`.

use indexmap::IndexMap;
use ivr_compiler::{CheckOptions, Checked, check};
use ivr_runtime::audio::{ProblemKind, PromptStore};
use ivr_runtime::engine::Flow;
use ivr_runtime::sim::PromptBook;
use ivr_runtime::sim::scenario::SimFlow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Checks every flow of the configured flows folder; on errors prints them and fails.
pub fn load(config: Option<PathBuf>) -> Result<(Checked, IndexMap<String, SimFlow>), String> {
    let checked = check(&CheckOptions {
        config,
        paths: Vec::new(),
    })
    .map_err(|e| e.to_string())?;
    if checked.error_count() > 0 {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        eprint!("{}", checked.sources.render(&checked.diagnostics, color));
        return Err(format!(
            "the flows have {} error(s); fix them first (`ivr check`)",
            checked.error_count()
        ));
    }
    // Prompt durations come from the decoded audio; files that exist but cannot be decoded are
    // worth a warning (missing ones were reported by the check).
    let (store, report) = PromptStore::load(&checked.catalogs);
    for problem in &report.problems {
        if matches!(problem.kind, ProblemKind::Unreadable(_)) {
            eprintln!("warning: {problem}");
        }
    }
    let mut flows = IndexMap::new();
    for (name, program) in &checked.programs {
        let called = checked
            .config
            .routes
            .iter()
            .find(|(number, flow)| *flow == name && number.as_str() != "default")
            .map(|(number, _)| number.clone())
            .unwrap_or_default();
        let book = Arc::new(PromptBook::with_store(program, &checked.catalogs, &store));
        let flow = Arc::new(Flow::new(program.clone(), &checked.config));
        flows.insert(name.clone(), SimFlow { flow, book, called });
    }
    Ok((checked, flows))
}
