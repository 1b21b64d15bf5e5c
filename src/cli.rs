//! Command-line parsing and the commands that only need the compiler: `check`, `compile` and
//! `graph`.

use clap::{Parser, Subcommand, ValueEnum};
use ivr_compiler::graph::{GraphFormat, render};
use ivr_compiler::program::Program;
use ivr_compiler::{CheckOptions, Checked, LoadError, check, compile_flow};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Why a command failed: printed as `ivr: MESSAGE`, exit status 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration or a flow cannot be read (`check`, `compile`, `graph`).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// JSON output failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A flow without errors whose program is missing.
    #[error("flow `{0}` was not compiled")]
    NotCompiled(String),
    /// `ivr agent-password`
    #[error(transparent)]
    AgentPassword(#[from] crate::agent_password_cmd::AgentPasswordError),
    /// `ivr prompts`
    #[error(transparent)]
    Prompts(#[from] crate::prompts_cmd::PromptsError),
    /// `ivr init`
    #[error(transparent)]
    Init(#[from] crate::init_cmd::InitError),
    /// `ivr prompts generate`, `ivr prompts stamp`
    #[error(transparent)]
    Generate(#[from] crate::prompts_generate::GenerateError),
    /// `ivr simulate`
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    /// `ivr test`
    #[error(transparent)]
    Test(#[from] crate::test_cmd::TestError),
    /// `ivr report`
    #[error(transparent)]
    Report(#[from] crate::report_cmd::ReportCmdError),
    /// `ivr recordings`
    #[error(transparent)]
    Recordings(#[from] crate::recordings_cmd::RecordingsCmdError),
    /// `ivr serve`
    #[error(transparent)]
    Serve(#[from] crate::serve_cmd::ServeCmdError),
    /// `ivr fmt`
    #[error(transparent)]
    Fmt(#[from] crate::fmt_cmd::FmtError),
    /// `ivr campaign`
    #[error(transparent)]
    Campaign(#[from] crate::campaign_cmd::CampaignError),
    /// `ivr lsp`
    #[error("language server: {0}")]
    Lsp(#[from] ivr_lsp::LspError),
}

/// Open-source IVR platform: declarative call flows, checked before they go live.
#[derive(Debug, Parser)]
#[command(name = "ivr", version, about, long_about = None)]
struct Cli {
    /// The configuration file (default: ./ivr.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new project in DIR (which must be new or empty): ivr.toml, a flow with its
    /// scenarios, prompts with generated audio and a small SQLite database.
    Init {
        /// The project folder.
        dir: PathBuf,
    },
    /// Parse and check flows against the configuration and prompt catalogs.
    Check {
        /// Flow files or folders (default: the configured flows folder).
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Compile a flow into the executable program the call engine runs.
    Compile {
        /// The flow's name (or its .flow file).
        flow: String,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Emit::Json)]
        emit: Emit,
    },
    /// An interactive call in the terminal on a virtual clock.
    Simulate {
        /// The flow's name.
        flow: String,
        /// The calling number (default: 13800000001; with `--contact`, its `phone`: the
        /// number a campaign dialled).
        #[arg(long)]
        caller: Option<String>,
        /// The dialled number (default: the flow's route).
        #[arg(long)]
        called: Option<String>,
        /// For a flow a campaign runs: its list row, `phone=13800000001,arrears=58.30`
        /// (`contact.phone`, ...), values read as the list query's field types.
        #[arg(long)]
        contact: Option<String>,
        /// Run these inputs instead of reading the terminal, e.g. "1 wait 6s 0 agent answers".
        #[arg(long)]
        script: Option<String>,
        /// Keep what the call writes in the configured database, and its call records
        /// (by default its writes are undone when it ends and nothing is recorded).
        #[arg(long)]
        live_data: bool,
    },
    /// Run scenario files and report `N passed, N failed`.
    Test {
        /// Scenario files or folders (default: every *.scenario below the flows folder).
        paths: Vec<PathBuf>,
        /// List per flow the nodes, menu keys and lookup outcomes no scenario reached.
        #[arg(long)]
        coverage: bool,
        /// Also write a JUnit XML report.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Keep what scenarios write in the configured database (by default each scenario's
        /// writes are undone at its end).
        #[arg(long)]
        live_data: bool,
    },
    /// IVR node traffic, outcomes, service level and survey results from the call records.
    Report {
        /// The period: today, yesterday, 7d, 30d (the last N days, today included), a day
        /// (YYYY-MM-DD) or a month (YYYY-MM); instead of --since/--until.
        #[arg(value_name = "PERIOD")]
        period: Option<String>,
        /// Only calls that started at or after this (YYYY-MM-DD, YYYY-MM-DDTHH:MM, today,
        /// yesterday, 7d, 30d), the server's local time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only calls that started before this (a day YYYY-MM-DD is included whole;
        /// YYYY-MM-DDTHH:MM, today, yesterday).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only calls of this flow.
        #[arg(long, value_name = "NAME")]
        flow: Option<String>,
        /// Only calls that ran this version of their flow (its content hash, or the start
        /// of it, as the report's versions list it).
        #[arg(long, value_name = "HASH")]
        flow_version: Option<String>,
        /// Output format (csv: every section as a table of its own, one after another).
        #[arg(long, value_enum, default_value_t = ReportArg::Table)]
        format: ReportArg,
        /// Also write each section as a CSV file of its own in this folder (outcomes.csv,
        /// versions.csv, nodes.csv, service_level.csv, queues.csv, agents.csv, surveys.csv).
        #[arg(long, value_name = "DIR")]
        csv: Option<PathBuf>,
    },
    /// Call recordings and voice-mail messages (newest first); `purge` deletes the call
    /// recordings older than `[recording] keep` at once.
    Recordings {
        /// Only this calling number.
        #[arg(long, value_name = "NUMBER")]
        caller: Option<String>,
        /// Only calls this agent answered.
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// Only recordings started at or after this (YYYY-MM-DD or YYYY-MM-DDTHH:MM, local
        /// time).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        #[command(subcommand)]
        action: Option<RecordingsAction>,
    },
    /// Every prompt with its duration, missing files and prompts no flow uses; `render`
    /// writes what a caller hears.
    Prompts {
        /// Only this language (for `render`: the language to speak).
        #[arg(long, global = true, value_name = "TAG")]
        language: Option<String>,
        #[command(subcommand)]
        action: Option<PromptsAction>,
    },
    /// Run the platform: answer SIP calls (UDP and TCP) and run the configured flows,
    /// reloading them when their files change.
    Serve {
        /// SIP address for UDP and TCP (default: `[server] sip`, 0.0.0.0:5060).
        #[arg(long, value_name = "ADDR")]
        sip: Option<String>,
        /// HTTP address of `GET /status` and `GET /metrics` (default: `[server] http`,
        /// 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Do not reload when flows, prompts or ivr.toml change (SIGHUP still reloads).
        #[arg(long)]
        no_watch: bool,
        /// Ring (180 Ringing) this long before answering, e.g. 2s.
        #[arg(long, value_name = "DURATION", default_value = "0s")]
        answer_after: String,
        /// How long current calls may finish after SIGINT/SIGTERM before they are ended.
        #[arg(long, value_name = "DURATION", default_value = "30s")]
        drain: String,
        /// End a call after this long without RTP from the caller (default: `[server]
        /// rtp_timeout`, 30s).
        #[arg(long, value_name = "DURATION")]
        rtp_timeout: Option<String>,
        /// Most concurrent calls (default: `[server] max_calls`); 503 beyond.
        #[arg(long, value_name = "N")]
        max_calls: Option<u32>,
        /// Pacer threads sending RTP (default: one per core, at most 4).
        #[arg(long, value_name = "N", default_value_t = 0)]
        pacer_threads: usize,
        /// This node's name in a cluster (over `[cluster] node`; docs/cluster.md).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// The PostgreSQL database the cluster's nodes share (over `[cluster] database`).
        #[arg(long, value_name = "URL")]
        cluster_database: Option<String>,
        /// The SIP proxy in front of the cluster's nodes (over `[cluster] sip_via`).
        #[arg(long, value_name = "URI")]
        sip_via: Option<String>,
    },
    /// Print the `ha1` of an agent's password for `[agents.ID]` (or a supervisor's for
    /// `[supervisors.ID]`): MD5(ID:realm:password).
    /// The password is asked twice without echo on a terminal, else read as one line of
    /// standard input.
    AgentPassword {
        /// The agent id (the user of sip:ID@host, as in `[agents.ID]`) or supervisor id.
        id: String,
    },
    /// Lay flows out in the canonical layout (four-space indents, one clause a line, clause
    /// words aligned, comments kept); never changes what a flow does.
    Fmt {
        /// Flow files or folders (default: every flow of the configured flows folder).
        paths: Vec<PathBuf>,
        /// Write nothing; list the files that would change and exit 1 if there are any.
        #[arg(long)]
        check: bool,
        /// Format standard input to standard output.
        #[arg(long, conflicts_with_all = ["paths", "check"])]
        stdin: bool,
    },
    /// The language server for editors (LSP 3.17 over standard input and output).
    Lsp,
    /// Start, pause or show a campaign of a running `ivr serve` (through its HTTP address).
    Campaign {
        /// start, pause or status.
        #[arg(value_enum)]
        action: CampaignArg,
        /// The campaign (`[campaigns.NAME]`).
        name: String,
        /// The HTTP address of `ivr serve` (default: `[server] http`).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Draw a flow as a graph (Graphviz dot, Mermaid, or SVG).
    Graph {
        /// The flow's name (or its .flow file).
        flow: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphArg::Dot)]
        format: GraphArg,
    },
}

/// What `ivr campaign` does.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CampaignArg {
    /// Dial (`POST /campaigns/NAME/start`).
    Start,
    /// Place no new call; calls under way go on (`POST /campaigns/NAME/pause`).
    Pause,
    /// Print the campaign's progress (`GET /campaigns/NAME`).
    Status,
}

#[derive(Debug, Subcommand)]
enum PromptsAction {
    /// Write what a caller hears (8 kHz mono WAV, decoded from the G.711 frames).
    Render {
        /// A prompt id, or a spoken value: "money 58.30", "digits 10086", "number 105",
        /// "date 2026-11-23", "time 10:30".
        what: String,
        /// The WAV file to write.
        #[arg(short, long, value_name = "FILE.wav")]
        output: PathBuf,
    },
    /// Speak the texts of the prompts that have no audio (or whose generated audio says an
    /// older text) with espeak-ng: 8 kHz mono WAV files, recorded in <language>/audio.toml.
    Generate {
        /// The espeak-ng voice (default: cmn for zh-CN, en-us for en-US, else the tag).
        #[arg(long, value_name = "VOICE")]
        voice: Option<String>,
        /// Generate every .wav again, studio recordings included.
        #[arg(long)]
        force: bool,
    },
    /// Record that the audio of these prompts (default: every audio file not yet recorded)
    /// says their current text, so that `ivr check` warns when the text changes.
    Stamp {
        /// Prompt ids.
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiagFormat {
    /// Source lines with carets, for people.
    Human,
    /// One JSON array of diagnostics, for editors and CI.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The program as JSON.
    Json,
}

/// `ivr recordings purge`
#[derive(Debug, Subcommand)]
enum RecordingsAction {
    /// Delete the call recordings (file and row) older than `[recording] keep` now.
    Purge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportArg {
    /// Plain-text tables.
    Table,
    /// CSV: each section a table of its own (a header row, one row per item), the tables
    /// one after another with a blank line between.
    Csv,
    /// JSON.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphArg {
    /// Graphviz dot (`dot -Tsvg`).
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// SVG, laid out by ivr itself (no Graphviz needed).
    Svg,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        quiet_broken_pipe();
    }
    let result = match cli.command {
        Command::Init { dir } => crate::init_cmd::run(&dir).map_err(CliError::from),
        Command::Check { paths, format } => cmd_check(cli.config, paths, format),
        Command::Compile { flow, emit } => cmd_compile(cli.config, &flow, emit),
        Command::Graph { flow, format } => cmd_graph(cli.config, &flow, format),
        Command::Fmt {
            paths,
            check,
            stdin,
        } => crate::fmt_cmd::run(crate::fmt_cmd::FmtOptions {
            config: cli.config,
            paths,
            check,
            stdin,
        })
        .map_err(CliError::from),
        Command::Lsp => {
            // Standard output carries the protocol: logs go to standard error, which editors
            // show in the server's output (`IVR_LOG=debug` for more).
            let filter = std::env::var("IVR_LOG").unwrap_or_else(|_| "info".into());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .try_init();
            ivr_lsp::run_stdio(cli.config)
                .map(|()| ExitCode::SUCCESS)
                .map_err(CliError::from)
        }
        Command::Campaign { action, name, http } => {
            crate::campaign_cmd::run(crate::campaign_cmd::CampaignOptions {
                config: cli.config,
                http,
                action: match action {
                    CampaignArg::Start => crate::campaign_cmd::Action::Start,
                    CampaignArg::Pause => crate::campaign_cmd::Action::Pause,
                    CampaignArg::Status => crate::campaign_cmd::Action::Status,
                },
                name,
            })
            .map_err(CliError::from)
        }
        Command::AgentPassword { id } => {
            crate::agent_password_cmd::run(crate::agent_password_cmd::AgentPasswordOptions {
                config: cli.config,
                agent: id,
            })
            .map_err(CliError::from)
        }
        Command::Prompts { language, action } => match action {
            Some(PromptsAction::Generate { voice, force }) => {
                cmd_generate(cli.config, language, voice, force)
            }
            Some(PromptsAction::Stamp { ids }) => cmd_stamp(cli.config, language, &ids),
            render => crate::prompts_cmd::run(crate::prompts_cmd::PromptsOptions {
                config: cli.config,
                language,
                render: match render {
                    Some(PromptsAction::Render { what, output }) => Some((what, output)),
                    _ => None,
                },
            })
            .map_err(CliError::from),
        },
        Command::Simulate {
            flow,
            caller,
            called,
            contact,
            script,
            live_data,
        } => crate::simulate::run(crate::simulate::SimulateOptions {
            config: cli.config,
            flow,
            caller,
            called,
            contact,
            script,
            live_data,
        })
        .map_err(CliError::from),
        Command::Report {
            period,
            since,
            until,
            flow,
            flow_version,
            format,
            csv,
        } => crate::report_cmd::run(crate::report_cmd::ReportCmd {
            config: cli.config,
            period,
            since,
            until,
            csv,
            flow,
            flow_version,
            format: match format {
                ReportArg::Table => crate::report_cmd::ReportFormat::Table,
                ReportArg::Csv => crate::report_cmd::ReportFormat::Csv,
                ReportArg::Json => crate::report_cmd::ReportFormat::Json,
            },
        })
        .map_err(CliError::from),
        Command::Recordings {
            caller,
            agent,
            since,
            action,
        } => crate::recordings_cmd::run(crate::recordings_cmd::RecordingsCmd {
            config: cli.config,
            purge: matches!(action, Some(RecordingsAction::Purge)),
            caller,
            agent,
            since,
        })
        .map_err(CliError::from),
        Command::Serve {
            sip,
            http,
            no_watch,
            answer_after,
            drain,
            rtp_timeout,
            max_calls,
            pacer_threads,
            node,
            cluster_database,
            sip_via,
        } => crate::serve_cmd::run(crate::serve_cmd::ServeArgs {
            config: cli.config,
            sip,
            http,
            watch: !no_watch,
            answer_after,
            drain,
            rtp_timeout,
            max_calls,
            pacer_threads,
            cluster: ivr_server::ClusterOverrides {
                node,
                database: cluster_database,
                sip_via,
            },
        })
        .map_err(CliError::from),
        Command::Test {
            paths,
            coverage,
            junit,
            live_data,
        } => crate::test_cmd::run(crate::test_cmd::TestOptions {
            config: cli.config,
            paths,
            coverage,
            junit,
            live_data,
        })
        .map_err(CliError::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ivr: {e}");
            ExitCode::from(2)
        }
    }
}

fn color_for(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none()
}

fn print_human(checked: &Checked, to_stderr: bool) {
    if checked.diagnostics.is_empty() {
        return;
    }
    if to_stderr {
        let text = checked.sources.render(
            &checked.diagnostics,
            color_for(std::io::stderr().is_terminal()),
        );
        eprint!("{text}");
    } else {
        let text = checked.sources.render(
            &checked.diagnostics,
            color_for(std::io::stdout().is_terminal()),
        );
        print!("{text}");
    }
}

fn summary(checked: &Checked) -> String {
    let (e, w) = (checked.error_count(), checked.warning_count());
    let n = checked.flows.len();
    format!(
        "checked {n} flow{}: {e} error{}, {w} warning{}",
        if n == 1 { "" } else { "s" },
        if e == 1 { "" } else { "s" },
        if w == 1 { "" } else { "s" }
    )
}

fn cmd_check(
    config: Option<PathBuf>,
    paths: Vec<PathBuf>,
    format: DiagFormat,
) -> Result<ExitCode, CliError> {
    let mut checked = check(&CheckOptions { config, paths })?;
    // The catalog's SQL prepared on the database, when it can be reached.
    let note = crate::check_data::probe_catalog(&mut checked);
    match format {
        DiagFormat::Human => {
            print_human(&checked, false);
            if let Some(note) = &note {
                println!("note: {note}");
            }
            println!("{}", summary(&checked));
        }
        DiagFormat::Json => {
            if let Some(note) = &note {
                eprintln!("note: {note}");
            }
            let json = checked.sources.to_json(&checked.diagnostics);
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(if checked.error_count() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Compiles one flow; on errors prints them to stderr and returns `None`.
fn compiled(config: Option<PathBuf>, flow: &str) -> Result<Option<(Checked, String)>, CliError> {
    let (checked, name) = compile_flow(config.as_deref(), flow)?;
    if checked.error_count() > 0 {
        print_human(&checked, true);
        eprintln!("{}", summary(&checked));
        return Ok(None);
    }
    Ok(Some((checked, name)))
}

/// The compiled program of one flow; on errors prints them and returns `None`.
fn compiled_program(config: Option<PathBuf>, flow: &str) -> Result<Option<Program>, CliError> {
    let Some((mut checked, name)) = compiled(config, flow)? else {
        return Ok(None);
    };
    checked
        .programs
        .swap_remove(&name)
        .map(Some)
        .ok_or(CliError::NotCompiled(name))
}

fn cmd_compile(config: Option<PathBuf>, flow: &str, emit: Emit) -> Result<ExitCode, CliError> {
    let Some(program) = compiled_program(config, flow)? else {
        return Ok(ExitCode::FAILURE);
    };
    let program = &program;
    match emit {
        Emit::Json => println!("{}", serde_json::to_string_pretty(program)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_graph(config: Option<PathBuf>, flow: &str, format: GraphArg) -> Result<ExitCode, CliError> {
    let Some(program) = compiled_program(config, flow)? else {
        return Ok(ExitCode::FAILURE);
    };
    let program = &program;
    let format = match format {
        GraphArg::Dot => GraphFormat::Dot,
        GraphArg::Mermaid => GraphFormat::Mermaid,
        GraphArg::Svg => GraphFormat::Svg,
    };
    print!("{}", render(program, format));
    Ok(ExitCode::SUCCESS)
}

/// The prompts folder of the configuration.
fn prompts_dir(config: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let mut sources = ivr_dsl::SourceMap::new();
    let (cfg, _) = ivr_compiler::load_config(config.as_deref(), &mut sources)?;
    Ok(cfg.prompts_dir)
}

fn cmd_generate(
    config: Option<PathBuf>,
    language: Option<String>,
    voice: Option<String>,
    force: bool,
) -> Result<ExitCode, CliError> {
    let dir = prompts_dir(config)?;
    let options = crate::prompts_generate::GenerateOptions {
        language,
        voice,
        force,
    };
    let done = crate::prompts_generate::generate(&dir, &options, &mut std::io::stdout())?;
    println!(
        "generated {}, kept {}, skipped {} (in {})",
        done.written,
        done.kept,
        done.skipped,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_stamp(
    config: Option<PathBuf>,
    language: Option<String>,
    ids: &[String],
) -> Result<ExitCode, CliError> {
    let dir = prompts_dir(config)?;
    let n = crate::prompts_generate::stamp(&dir, language.as_deref(), ids, &mut std::io::stdout())?;
    println!("stamped {n} (in {})", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// A command whose output goes into a pipe that closes (`ivr check | head`) ends quietly, as
/// command-line tools do, instead of panicking on the failed write. Not for `ivr serve`, whose
/// sockets need writes to a closed peer to fail rather than end the process.
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
