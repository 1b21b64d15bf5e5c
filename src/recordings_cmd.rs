//! `ivr recordings`: the recordings of the configured database (whole-call recordings and
//! voice-mail messages), filtered by caller, agent and date; `ivr recordings purge` deletes
//! the whole-call recordings older than `[recording] keep` at once (file and row), as
//! `ivr serve` does every hour.

use chrono::{NaiveDate, NaiveDateTime};
use ivr_compiler::project::{LoadError, load_config};
use ivr_data::DataError;
use ivr_data::call_recordings::{self, Filter};
use ivr_dsl::SourceMap;
use std::path::PathBuf;
use std::process::ExitCode;
use thiserror::Error;

/// Why `ivr recordings` did nothing (printed after `ivr: `).
#[derive(Debug, Error)]
pub enum RecordingsCmdError {
    /// `--since` is no date.
    #[error("--since `{0}` is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM")]
    Since(String),
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

/// What `ivr recordings` was asked.
#[derive(Debug)]
pub struct RecordingsCmd {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `purge` instead of a listing.
    pub purge: bool,
    /// `--caller`.
    pub caller: Option<String>,
    /// `--agent`.
    pub agent: Option<String>,
    /// `--since`.
    pub since: Option<String>,
}

fn since(text: &str) -> Result<NaiveDateTime, RecordingsCmdError> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default());
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M"))
        .map_err(|_| RecordingsCmdError::Since(text.to_string()))
}

/// Runs `ivr recordings`.
pub fn run(cmd: RecordingsCmd) -> Result<ExitCode, RecordingsCmdError> {
    let filter = Filter {
        caller: cmd.caller,
        agent: cmd.agent,
        since: cmd.since.as_deref().map(since).transpose()?,
    };
    let mut sources = SourceMap::new();
    let (config, diags) = load_config(cmd.config.as_deref(), &mut sources)?;
    let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        eprint!("{}", sources.render(&errors, false));
        return Err(RecordingsCmdError::ConfigErrors);
    }
    let rt = ivr_data::source::runtime()?;
    let keep_days = config.recording.keep_days;
    rt.block_on(async {
        let db = ivr_data::open_configured(&config).await?;
        let r = if cmd.purge {
            let before = chrono::Local::now().naive_local()
                - chrono::Duration::days(i64::from(keep_days));
            call_recordings::purge(db.pool(), before).await.map(|p| {
                println!(
                    "deleted {} call recording(s) older than {keep_days} days ({} file(s); {} file(s) already gone; {} file(s) could not be deleted)",
                    p.rows, p.files, p.missing, p.failed
                );
            })
        } else {
            call_recordings::list(db.pool(), &filter).await.map(|list| {
                print!("{}", table(&list));
            })
        };
        db.pool().close().await;
        r
    })?;
    Ok(ExitCode::SUCCESS)
}

fn table(list: &[call_recordings::Listed]) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "id".into(),
        "kind".into(),
        "started".into(),
        "length".into(),
        "caller".into(),
        "agent".into(),
        "queue".into(),
        "sha256".into(),
        "file".into(),
    ]];
    for r in list {
        let s = r.length_ms / 1000;
        rows.push([
            r.id.to_string(),
            r.kind.clone(),
            r.recorded_at.chars().take(19).collect(),
            format!("{}:{:02}", s / 60, s % 60),
            r.caller.clone(),
            r.agent.clone().unwrap_or_else(|| "-".into()),
            r.queue.clone().unwrap_or_else(|| "-".into()),
            r.sha256
                .as_deref()
                .map_or("-".into(), |h| h.chars().take(12).collect()),
            r.file.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!("{} recording(s)\n", list.len()));
    out
}
