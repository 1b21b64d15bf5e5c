//! `ivr agent-password ID`: prints the `ha1` of an agent's password for `[agents.ID]`, or of a
//! supervisor's for `[supervisors.ID]` (the same hash): MD5(ID:realm:password) in 32
//! lowercase hex digits, with the realm of `[server] realm`.
//!
//! On a terminal the password is asked twice without echo; otherwise (scripts) one line is
//! read from standard input. The password itself is never printed nor stored.

use ivr_compiler::LoadError;
use ivr_compiler::project::load_config;
use ivr_dsl::SourceMap;
use ivr_sip::registrar::ha1;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `ivr agent-password`.
pub struct AgentPasswordOptions {
    /// `--config`
    pub config: Option<PathBuf>,
    /// The agent id.
    pub agent: String,
}

/// Why no `ha1` was printed.
#[derive(Debug, thiserror::Error)]
pub enum AgentPasswordError {
    /// The id cannot be an agent's.
    #[error("`{0}` is not an agent id: the user part of sip:ID@host, as in [agents.ID]")]
    NotAnAgentId(String),
    /// The configuration cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The configuration has errors (printed), so the realm may be wrong.
    #[error("fix the configuration first (`ivr check`)")]
    Config,
    /// The terminal cannot be read without echo.
    #[error("cannot read the password: {0}")]
    Terminal(#[source] std::io::Error),
    /// Standard input cannot be read.
    #[error("cannot read the password from standard input: {0}")]
    Stdin(#[source] std::io::Error),
    /// The password and its repetition differ.
    #[error("the two passwords differ; nothing printed")]
    Differ,
    /// The password is empty.
    #[error("the password is empty; an agent needs a password to register")]
    Empty,
}

/// The realm of the configuration, and whether `id` is a supervisor's (`[supervisors.ID]`).
/// Any error matters, since the realm could be wrong (an agent or a supervisor without an
/// `ha1` is only a warning: this command is how it gets one).
fn realm(path: Option<PathBuf>, id: &str) -> Result<(String, bool), AgentPasswordError> {
    let mut sources = SourceMap::new();
    let (config, diags) = load_config(path.as_deref(), &mut sources)?;
    let errors: Vec<_> = diags.into_iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        eprint!("{}", sources.render(&errors, false));
        return Err(AgentPasswordError::Config);
    }
    let supervisor = config.supervisors.contains_key(id) && !config.agents.contains_key(id);
    Ok((config.server.realm, supervisor))
}

/// Reads the password: twice without echo on a terminal, else one line of standard input.
fn read_password(agent: &str) -> Result<String, AgentPasswordError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for agent {agent}: "))
            .map_err(AgentPasswordError::Terminal)?;
        if first.is_empty() {
            return Ok(first);
        }
        let again = rpassword::prompt_password("Again: ").map_err(AgentPasswordError::Terminal)?;
        if again != first {
            return Err(AgentPasswordError::Differ);
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(AgentPasswordError::Stdin)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
    }
}

/// Runs the command.
pub fn run(opts: AgentPasswordOptions) -> Result<ExitCode, AgentPasswordError> {
    let agent = opts.agent.trim();
    if agent.is_empty() || agent.contains(':') || agent.chars().any(char::is_whitespace) {
        return Err(AgentPasswordError::NotAnAgentId(opts.agent));
    }
    let (realm, supervisor) = realm(opts.config, agent)?;
    let password = read_password(agent)?;
    if password.is_empty() {
        return Err(AgentPasswordError::Empty);
    }
    let hash = ha1(agent, &realm, &password);
    println!("{hash}");
    if std::io::stdin().is_terminal() {
        let table = if supervisor { "supervisors" } else { "agents" };
        eprintln!(
            "put it in ivr.toml:\n\n[{table}.{agent}]\nha1 = \"{hash}\"   # realm \"{realm}\""
        );
    }
    Ok(ExitCode::SUCCESS)
}
