//! `ivr report`: IVR node traffic, outcomes, service level and survey results from the call
//! records in the configured database. The figures are `ivr_data::report`'s; their rendering
//! is here: [`table`], [`csv`], [`json`].

mod csv;
mod json;
mod table;

use ivr_compiler::config::Config;
use ivr_compiler::project::{LoadError, load_config};
use ivr_data::DataError;
use ivr_data::report::{self, DateError, ReportOptions};
use ivr_dsl::SourceMap;
use std::path::PathBuf;
use std::process::ExitCode;
use thiserror::Error;

/// Why `ivr report` gave no report (printed after `ivr: `).
#[derive(Debug, Error)]
pub enum ReportCmdError {
    /// `--since` is not a date.
    #[error(transparent)]
    Since(#[from] DateError),
    /// `--flow-version` is not a hexadecimal hash.
    #[error(
        "--flow-version `{0}` is not a version: the hexadecimal hash (or the start of it) \
         that the report's versions list shows"
    )]
    FlowVersion(String),
    /// The configuration cannot be read.
    #[error(transparent)]
    Config(#[from] LoadError),
    /// The configuration has errors (they are printed first).
    #[error("fix the configuration first (`ivr check`)")]
    ConfigErrors,
    /// The database could not be opened or read.
    #[error(transparent)]
    Data(#[from] DataError),
}

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

/// A scope's name, or `all` for every one (`None`).
fn or_all(s: &Option<String>, all: &str) -> String {
    s.clone().unwrap_or_else(|| all.to_string())
}

/// Reads the configuration alone (the report needs the database, not the flows).
fn config(path: Option<PathBuf>) -> Result<Config, ReportCmdError> {
    let mut sources = SourceMap::new();
    let (config, diags) = load_config(path.as_deref(), &mut sources)?;
    let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        eprint!("{}", sources.render(&errors, false));
        return Err(ReportCmdError::ConfigErrors);
    }
    Ok(config)
}

/// Runs the command.
pub fn run(cmd: ReportCmd) -> Result<ExitCode, ReportCmdError> {
    let since = match &cmd.since {
        Some(s) => Some(report::parse_date(s)?),
        None => None,
    };
    if let Some(v) = &cmd.flow_version
        && (v.is_empty() || !v.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(ReportCmdError::FlowVersion(v.clone()));
    }
    let config = config(cmd.config)?;
    let rt = ivr_data::source::runtime()?;
    let opts = ReportOptions {
        since,
        flow: cmd.flow,
        flow_version: cmd.flow_version.map(|v| v.to_ascii_lowercase()),
    };
    let report = rt.block_on(async {
        let db = ivr_data::open_configured(&config).await?;
        let r = report::build(db.pool(), &opts).await;
        db.pool().close().await;
        r
    })?;
    match cmd.format {
        ReportFormat::Table => print!("{}", table::render(&report)),
        ReportFormat::Csv => print!("{}", csv::render(&report)),
        ReportFormat::Json => println!("{}", json::render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
