//! `ivr serve`: logging set up, the command line turned into [`ServeOptions`], and the SIP/RTP
//! runtime of `ivr_server` run until a shutdown signal.

use ivr_server::{ServeError, ServeOptions, run as serve};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use thiserror::Error;

/// Why `ivr serve` stopped with an error (printed after `ivr: `).
#[derive(Debug, Error)]
pub enum ServeCmdError {
    /// A duration option does not read as one.
    #[error("--{name} takes a duration like 500ms, 2s or 1m (got `{text}`)")]
    Duration {
        /// The option, without `--`.
        name: &'static str,
        /// What it was given.
        text: String,
    },
    /// The server could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// The command line of `ivr serve`.
pub struct ServeArgs {
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--sip`
    pub sip: Option<String>,
    /// `--http`
    pub http: Option<String>,
    /// Not `--no-watch`.
    pub watch: bool,
    /// `--answer-after`
    pub answer_after: String,
    /// `--drain`
    pub drain: String,
    /// `--rtp-timeout` (else `[server] rtp_timeout`)
    pub rtp_timeout: Option<String>,
    /// `--max-calls`
    pub max_calls: Option<u32>,
    /// `--pacer-threads`
    pub pacer_threads: usize,
    /// `--node`, `--cluster-database`, `--sip-via`
    pub cluster: ivr_server::ClusterOverrides,
}

fn duration(name: &'static str, text: &str) -> Result<Duration, ServeCmdError> {
    ivr_compiler::config::parse_duration_text(text)
        .map(Duration::from_millis)
        .ok_or_else(|| ServeCmdError::Duration {
            name,
            text: text.to_string(),
        })
}

/// Runs the command. Logs go to stderr; `IVR_LOG` (or `RUST_LOG`) sets the filter, e.g.
/// `IVR_LOG=debug` or `IVR_LOG=warn` (default `info`).
pub fn run(args: ServeArgs) -> Result<ExitCode, ServeCmdError> {
    let filter = std::env::var("IVR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    serve(ServeOptions {
        config: args.config,
        sip: args.sip,
        http: args.http,
        watch: args.watch,
        answer_after: duration("answer-after", &args.answer_after)?,
        drain: duration("drain", &args.drain)?,
        rtp_timeout: args
            .rtp_timeout
            .as_deref()
            .map(|t| duration("rtp-timeout", t))
            .transpose()?,
        pacer_threads: args.pacer_threads,
        max_calls: args.max_calls,
        cluster: args.cluster,
    })?;
    Ok(ExitCode::SUCCESS)
}
