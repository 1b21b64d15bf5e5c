//! `ivr report`: IVR node traffic, outcomes, service level and survey results from the call
//! records in the configured database. The figures are `ivr_data::report`'s; the period is
//! read in [`period`]; their rendering is here: [`table`], [`csv`], [`json`].

mod csv;
mod json;
mod period;
mod table;

use ivr_compiler::config::Config;
use ivr_compiler::project::{LoadError, load_config};
use ivr_compiler::suggest;
use ivr_data::DataError;
use ivr_data::report::{self, Report, ReportOptions};
use ivr_dsl::SourceMap;
use period::PeriodError;
use std::path::PathBuf;
use std::process::ExitCode;
use thiserror::Error;

/// Why `ivr report` gave no report (printed after `ivr: `).
#[derive(Debug, Error)]
pub enum ReportCmdError {
    /// The period cannot be read.
    #[error(transparent)]
    Period(#[from] PeriodError),
    /// `--flow-version` is not a hexadecimal hash.
    #[error(
        "--flow-version `{0}` is not a version: the hexadecimal hash (or the start of it) \
         that the report's versions list shows"
    )]
    FlowVersion(String),
    /// `--flow` names a flow that neither the records nor the flows folder know.
    #[error("there is no flow `{name}` (no call records, no flow file{}); flows: {}",
        .nearest.as_ref().map(|n| format!("; did you mean `{n}`?")).unwrap_or_default(),
        list(.known))]
    UnknownFlow {
        /// What was asked.
        name: String,
        /// The nearest known name.
        nearest: Option<String>,
        /// The flows known.
        known: Vec<String>,
    },
    /// `--flow-version` matches no recorded version.
    #[error("no call ran a flow version starting with `{given}`{}{}; versions with calls: {}. \
        A flow's version is what `ivr compile`, `GET /status` (flows[].version) and the \
        dashboard's flow versions show; the deployment's identity is not a flow version",
        .flow.as_ref().map(|f| format!(" of flow `{f}`")).unwrap_or_default(),
        .nearest.as_ref().map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default(),
        list(.known))]
    UnknownVersion {
        /// What was asked.
        given: String,
        /// `--flow`, when given.
        flow: Option<String>,
        /// The nearest version.
        nearest: Option<String>,
        /// `flow version` of each recorded version.
        known: Vec<String>,
    },
    /// `--csv DIR` cannot be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
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

/// Names for a message: the first 20, then how many more.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 20;
    if names.is_empty() {
        return "none".to_string();
    }
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

/// Output formats of `ivr report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Plain-text tables.
    Table,
    /// CSV, each section a table of its own (see [`csv`]).
    Csv,
    /// JSON.
    Json,
}

/// Options of `ivr report`.
pub struct ReportCmd {
    /// `--config`
    pub config: Option<PathBuf>,
    /// The period argument (`today`, `yesterday`, `7d`, ...).
    pub period: Option<String>,
    /// `--since WHEN`
    pub since: Option<String>,
    /// `--until WHEN`
    pub until: Option<String>,
    /// `--flow NAME`
    pub flow: Option<String>,
    /// `--flow-version HASH`
    pub flow_version: Option<String>,
    /// `--format`
    pub format: ReportFormat,
    /// `--csv DIR`
    pub csv: Option<PathBuf>,
}

/// A scope's name, or `all` for every one (`None`).
fn or_all(s: &Option<String>, all: &str) -> String {
    s.clone().unwrap_or_else(|| all.to_string())
}

/// An agent as people know it: `Wang Fang (2001)`, or the id alone when it has no name.
fn agent_label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() && n != id => format!("{n} ({id})"),
        _ => id.to_string(),
    }
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

/// The flow names of the `.flow` files in the flows folder and of `[routes]`.
fn configured_flows(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.routes.values().cloned().collect();
    if let Ok(entries) = std::fs::read_dir(&config.flows_dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "flow")
                && let Some(stem) = path.file_stem()
            {
                names.push(stem.to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// Checks that `--flow` and `--flow-version` name something the records (or the flows
/// folder) know.
async fn check_scope(
    pool: &ivr_data::connect::Pool,
    config: &Config,
    opts: &ReportOptions,
) -> Result<(), ReportCmdError> {
    if let Some(name) = &opts.flow {
        let mut known = report::recorded_flows(pool).await?;
        known.extend(configured_flows(config));
        known.sort();
        known.dedup();
        if !known.contains(name) {
            let nearest =
                suggest::nearest(name, known.iter().map(String::as_str)).map(String::from);
            return Err(ReportCmdError::UnknownFlow {
                name: name.clone(),
                nearest,
                known,
            });
        }
    }
    if let Some(given) = &opts.flow_version {
        let versions = report::recorded_versions(pool, opts.flow.as_deref()).await?;
        if !versions.iter().any(|(_, v)| v.starts_with(given.as_str())) {
            let nearest =
                suggest::nearest(given, versions.iter().map(|(_, v)| v.as_str())).map(String::from);
            return Err(ReportCmdError::UnknownVersion {
                given: given.clone(),
                flow: opts.flow.clone(),
                nearest,
                known: versions.iter().map(|(f, v)| format!("{f} {v}")).collect(),
            });
        }
    }
    Ok(())
}

/// Puts the agents' names of `ivr.toml` beside their ids.
fn name_agents(report: &mut Report, config: &Config) {
    let name = |id: &str| {
        config
            .agents
            .get(id)
            .map(|a| a.name.clone())
            .filter(|n| !n.is_empty())
    };
    for a in &mut report.agents {
        a.name = name(&a.agent);
    }
    for s in &mut report.surveys {
        s.agent_name = s.agent.as_deref().and_then(name);
    }
}

/// Runs the command.
pub fn run(cmd: ReportCmd) -> Result<ExitCode, ReportCmdError> {
    let now = chrono::Local::now().naive_local();
    let period = period::resolve(
        cmd.period.as_deref(),
        cmd.since.as_deref(),
        cmd.until.as_deref(),
        now,
    )?;
    if let Some(v) = &cmd.flow_version
        && (v.is_empty() || !v.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(ReportCmdError::FlowVersion(v.clone()));
    }
    let config = config(cmd.config)?;
    let rt = ivr_data::source::runtime()?;
    let opts = ReportOptions {
        since: period.since,
        until: period.until,
        flow: cmd.flow,
        flow_version: cmd.flow_version.map(|v| v.to_ascii_lowercase()),
    };
    let mut report = rt.block_on(async {
        let db = ivr_data::open_configured(&config).await?;
        let r = match check_scope(db.pool(), &config, &opts).await {
            Ok(()) => report::build(db.pool(), &opts).await.map_err(Into::into),
            Err(e) => Err(e),
        };
        db.pool().close().await;
        r
    })?;
    name_agents(&mut report, &config);
    if let Some(dir) = &cmd.csv {
        let written = csv::write_dir(&report, dir)
            .map_err(|(path, error)| ReportCmdError::Write { path, error })?;
        eprintln!(
            "ivr report: wrote {} CSV file(s) to {}",
            written,
            dir.display()
        );
    }
    match cmd.format {
        ReportFormat::Table => print!("{}", table::render(&report)),
        ReportFormat::Csv => print!("{}", csv::render(&report)),
        ReportFormat::Json => println!("{}", json::render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}
