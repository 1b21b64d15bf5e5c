//! `ivr report`: IVR node traffic, outcomes, service level and survey results from the call
//! records in the configured database.

use ivr_compiler::config::Config;
use ivr_compiler::project::load_config;
use ivr_data::report::{self, ReportOptions};
use ivr_dsl::SourceMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Output formats of `ivr report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Plain-text tables.
    Table,
    /// One CSV table (`section,flow,node,queue,agent,question,metric,value`).
    Csv,
    /// JSON.
    Json,
}

/// Options of `ivr report`.
pub struct ReportCmd {
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--since YYYY-MM-DD`
    pub since: Option<String>,
    /// `--flow NAME`
    pub flow: Option<String>,
    /// `--flow-version HASH`
    pub flow_version: Option<String>,
    /// `--format`
    pub format: ReportFormat,
}

/// Reads the configuration alone (the report needs the database, not the flows).
fn config(path: Option<PathBuf>) -> Result<Config, String> {
    let mut sources = SourceMap::new();
    let (config, diags) = load_config(path.as_deref(), &mut sources).map_err(|e| e.to_string())?;
    let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        eprint!("{}", sources.render(&errors, false));
        return Err("fix the configuration first (`ivr check`)".into());
    }
    Ok(config)
}

/// Runs the command.
pub fn run(cmd: ReportCmd) -> Result<ExitCode, String> {
    let since = match &cmd.since {
        Some(s) => Some(report::parse_date(s)?),
        None => None,
    };
    if let Some(v) = &cmd.flow_version
        && (v.is_empty() || !v.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!(
            "--flow-version `{v}` is not a version: the hexadecimal hash (or the start of it) \
             that the report's versions list shows"
        ));
    }
    let config = config(cmd.config)?;
    let rt = ivr_data::source::runtime().map_err(|e| e.to_string())?;
    let opts = ReportOptions {
        since,
        flow: cmd.flow,
        flow_version: cmd.flow_version.map(|v| v.to_ascii_lowercase()),
    };
    let report = rt
        .block_on(async {
            let db = ivr_data::open_configured(&config).await?;
            let r = report::build(db.pool(), &opts).await;
            db.pool().close().await;
            r
        })
        .map_err(|e| e.to_string())?;
    match cmd.format {
        ReportFormat::Table => print!("{}", report.to_table()),
        ReportFormat::Csv => print!("{}", report.to_csv()),
        ReportFormat::Json => println!("{}", report.to_json()),
    }
    Ok(ExitCode::SUCCESS)
}
