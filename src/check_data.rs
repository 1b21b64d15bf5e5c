//! `ivr check`'s look at the database: every statement of the data catalog is prepared on the
//! configured database (`ivr_data::probe`), and each mistake it shows becomes an error at its
//! place in `ivr.toml` (the statement, the declared field, the query). When the database
//! cannot be reached, a note says so and the catalog is checked as written only.

use ivr_compiler::Checked;
use ivr_data::probe::{Place, Probe, probe};
use ivr_dsl::Diagnostic;

/// Probes the catalog of `checked`'s configuration and adds the errors found to its
/// diagnostics; returns a note when the database could not be reached.
pub fn probe_catalog(checked: &mut Checked) -> Option<String> {
    let config = &checked.config;
    if config.unreadable || config.queries.is_empty() {
        return None;
    }
    let file = config.file?;
    let rt = match ivr_data::source::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return Some(format!(
                "the data catalog was not checked against the database: {e}"
            ));
        }
    };
    let problems = match rt.block_on(probe(config)) {
        Probe::Unreachable(why) => {
            return Some(format!(
                "the database could not be reached ({why}): the data catalog's SQL was not checked against it"
            ));
        }
        Probe::Checked(problems) => problems,
    };
    for p in problems {
        let Some(def) = config.queries.get(&p.query) else {
            continue;
        };
        let span = match &p.place {
            Place::Statement(i) => def.statement_spans.get(*i).copied(),
            Place::Field(f) => def.field_spans.get(f).copied(),
            Place::Args => None,
        }
        .unwrap_or(def.span);
        let mut d = Diagnostic::error("data", file, span, p.message);
        if let Some(h) = p.hint {
            d = d.with_hint(h);
        }
        checked.diagnostics.push(d);
    }
    None
}
