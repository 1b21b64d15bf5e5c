//! Loading a deployment's flows ready to run: checked, compiled, with prompt texts and
//! durations, for `ivr simulate` and `ivr test`.

use indexmap::IndexMap;
use ivr_compiler::{CheckOptions, Checked, LoadError, check};
use ivr_engine::Flow;
use ivr_engine::sim::PromptBook;
use ivr_engine::sim::scenario::SimFlow;
use ivr_media::audio::{ProblemKind, PromptStore};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// A deployment's flows, ready to run.
pub struct Loaded {
    /// The check's result.
    pub checked: Checked,
    /// The flows that run, by name.
    pub flows: IndexMap<String, SimFlow>,
    /// The flows left out for their errors.
    pub broken: HashSet<String>,
}

/// Why no flow can run.
#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    /// The configuration or a flow cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Errors outside the flows (the configuration, a prompt catalog): how many errors in all.
    #[error("the configuration has {0} error(s); fix them first (`ivr check`)")]
    Config(usize),
}

/// Checks every flow of the configured flows folder. Errors are printed; flows with errors
/// are left out of what runs (their names come back), and errors outside the flows fail.
pub fn load(config: Option<PathBuf>) -> Result<Loaded, FlowsError> {
    let checked = check(&CheckOptions {
        config,
        paths: Vec::new(),
    })?;
    let mut broken = HashSet::new();
    if checked.error_count() > 0 {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        eprint!("{}", checked.sources.render(&checked.diagnostics, color));
        match checked.broken_flows() {
            Some(b) if !b.is_empty() => broken = b,
            _ => return Err(FlowsError::Config(checked.error_count())),
        }
        let mut names: Vec<&str> = broken.iter().map(String::as_str).collect();
        names.sort_unstable();
        eprintln!(
            "ivr: {} error(s) in flow(s) {}: they do not run (`ivr check`)",
            checked.error_count(),
            names.join(", ")
        );
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
        if broken.contains(name) {
            continue;
        }
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
    Ok(Loaded {
        checked,
        flows,
        broken,
    })
}
