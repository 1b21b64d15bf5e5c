//! `ivr report --format json`: the report's figures as serialised.

use ivr_data::report::Report;

/// The report as JSON, as serialised (pretty-printed).
pub fn render(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
