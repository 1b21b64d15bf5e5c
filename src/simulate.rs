//! `ivr simulate`: an interactive call in the terminal on the virtual clock. Prompts print as
//! text with the node they play in; the user types keys, `wait 6s`, `hangup` or
//! `agent answers|busy|hangs_up|none` (`--script` takes the same words, `wait 6s` or
//! `wait:6s`). The call works on the configured database's data; what it writes is undone at
//! its end, and it is not recorded, unless `--live-data`.

use crate::load::{FlowsError, load};
use ivr_data::DataError;
use ivr_data::records::{CallRecorder, RecordWriter, WriterOptions};
use ivr_data::source::ScenarioData;
use ivr_engine::sim::scenario::{DEFAULT_START, millis_of};
use ivr_engine::sim::{Entry, Simulation};
use ivr_engine::{CallInfo, Channel, Millis, TransferUpdate};
use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

/// How much virtual time the simulator lets pass by itself while prompts play.
const SETTLE_LIMIT_MS: Millis = 120_000;

/// The calling number when neither `--caller` nor `--contact` gives one.
pub const DEFAULT_CALLER: &str = "13800000001";

/// Options of `ivr simulate`.
pub struct SimulateOptions {
    /// `--config`
    pub config: Option<PathBuf>,
    /// The flow.
    pub flow: String,
    /// `--caller` (default: `--contact`'s `phone`, else [`DEFAULT_CALLER`]).
    pub caller: Option<String>,
    /// `--called`
    pub called: Option<String>,
    /// `--contact phone=...,arrears=...`: the list row of a campaign's flow.
    pub contact: Option<String>,
    /// `--script "1 wait 6s 0"`
    pub script: Option<String>,
    /// `--live-data`: keep the call's writes and records.
    pub live_data: bool,
}

/// Why the simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// No flow can run.
    #[error(transparent)]
    Flows(#[from] FlowsError),
    /// The flow has errors (printed).
    #[error("the flow `{0}` has errors (shown above); fix them first (`ivr check`)")]
    BrokenFlow(String),
    /// No flow of that name.
    #[error("there is no flow `{flow}`; the flows are {}", .flows.join(", "))]
    UnknownFlow {
        /// The name asked for.
        flow: String,
        /// The flows there are.
        flows: Vec<String>,
    },
    /// The database cannot be opened.
    #[error(transparent)]
    Data(#[from] DataError),
    /// `--contact` does not fit the flow's list query.
    #[error("--contact: {0}")]
    Contact(#[from] ivr_engine::contact::ContactError),
}

/// Input that means nothing to the simulator: what to type instead.
#[derive(Debug, thiserror::Error)]
enum InputError {
    /// `wait` without a duration.
    #[error("write `wait 6s`")]
    Wait,
    /// `agent` without a known action.
    #[error("write `agent answers`, `agent busy`, `agent hangs_up` or `agent none`")]
    Agent,
    /// `agent ...` while no transfer is in progress.
    #[error("no transfer is in progress")]
    NoTransfer,
    /// A word that is no command.
    #[error(
        "`{0}`: type keys (1, 123#, *), `wait 6s`, `hangup`, `agent answers|busy|hangs_up|none` or `quit`"
    )]
    Unknown(String),
}

struct Printer {
    shown: usize,
    failures_shown: usize,
    dim: &'static str,
    bold: &'static str,
    reset: &'static str,
}

impl Printer {
    fn show(&mut self, sim: &Simulation) {
        let flow = Arc::clone(sim.call().flow());
        let failures = sim.lookup_failures();
        for (i, e) in sim.transcript().iter().enumerate().skip(self.shown) {
            self.show_failures(failures, i);
            let node = sim
                .entry_nodes()
                .get(i)
                .and_then(|n| flow.program.nodes.get(*n as usize))
                .map_or("?", |n| n.name.as_str());
            let (d, b, r) = (self.dim, self.bold, self.reset);
            match e {
                Entry::Play { prompt, text } => println!("{d}[{node}] {prompt}{r}  {b}{text}{r}"),
                Entry::Say {
                    kind,
                    value,
                    text,
                    masked,
                } => {
                    let value = if *masked {
                        "***".to_string()
                    } else {
                        value.to_string()
                    };
                    println!(
                        "{d}[{node}] say {} {value}{r}  {b}{text}{r}",
                        kind.keyword()
                    )
                }
                other => println!("{d}[{node}]{r} {b}{other}{r}"),
            }
        }
        self.shown = sim.transcript().len();
        self.show_failures(failures, self.shown);
    }

    /// The lookups that failed before transcript entry `upto`, with their reasons.
    fn show_failures(&mut self, failures: &[ivr_engine::sim::LookupFailure], upto: usize) {
        while let Some(f) = failures
            .get(self.failures_shown)
            .filter(|f| f.entry <= upto)
        {
            println!("{}{f}{}", self.bold, self.reset);
            self.failures_shown += 1;
        }
    }
}

/// The words of a `--script`: keys, `hangup`, `quit`, and `wait 6s` or `agent answers` as one
/// input each (also written `wait:6s`, `agent:answers`), as they are typed in the terminal.
fn script_inputs(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = script.split_whitespace();
    while let Some(w) = words.next() {
        match w {
            "wait" | "agent" => match words.next() {
                Some(arg) => out.push(format!("{w} {arg}")),
                None => out.push(w.to_string()),
            },
            _ => out.push(w.to_string()),
        }
    }
    out
}

/// Lets prompts play (virtual time passes) until the flow waits for the caller or an agent: the
/// next event would be a timer, or nothing is left, or the call ended, or the caller is on hold
/// (hold music would loop; `wait` or an agent action moves on from there).
fn settle(sim: &mut Simulation) {
    let limit = sim.now() + SETTLE_LIMIT_MS;
    while sim.next_is_playback()
        && !sim.transfer_active()
        && sim.next_event_time().is_some_and(|t| t <= limit)
    {
        if !sim.step() {
            break;
        }
    }
}

fn parse_duration(text: &str) -> Option<Millis> {
    ivr_compiler::config::parse_duration_text(text).map(|ms| ms as Millis)
}

/// Applies one command; `Err` for input that means nothing.
fn apply(sim: &mut Simulation, input: &str) -> Result<(), InputError> {
    let input = input.trim();
    let mut words = input.split([' ', ':']).filter(|w| !w.is_empty());
    match words.next() {
        None => Ok(()),
        Some("wait") => {
            let d = words
                .next()
                .and_then(parse_duration)
                .ok_or(InputError::Wait)?;
            let until = sim.now() + d;
            sim.advance_to(until);
            Ok(())
        }
        Some("hangup") => {
            sim.hangup();
            Ok(())
        }
        Some("agent") => {
            let update = match words.next() {
                Some("answers") => TransferUpdate::Answered {
                    agent: Some("sim-agent".into()),
                },
                Some("busy") => TransferUpdate::Busy,
                Some("hangs_up") => TransferUpdate::AgentHungUp,
                Some("none") => TransferUpdate::NoAgents,
                _ => return Err(InputError::Agent),
            };
            if !sim.transfer_active() {
                return Err(InputError::NoTransfer);
            }
            sim.transfer(update);
            Ok(())
        }
        Some(keys)
            if keys
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#') =>
        {
            for k in keys.chars() {
                sim.press(k);
            }
            Ok(())
        }
        Some(other) => Err(InputError::Unknown(other.to_string())),
    }
}

/// A call id unique to this run: `sim-<unix ms>-<process id>`.
fn call_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("sim-{ms}-{}", std::process::id())
}

/// Runs the command.
pub fn run(opts: SimulateOptions) -> Result<ExitCode, SimulateError> {
    let crate::load::Loaded {
        checked,
        flows,
        broken,
    } = load(opts.config)?;
    if broken.contains(&opts.flow) {
        return Err(SimulateError::BrokenFlow(opts.flow));
    }
    let sim_flow = flows
        .get(&opts.flow)
        .ok_or_else(|| SimulateError::UnknownFlow {
            flow: opts.flow.clone(),
            flows: flows.keys().cloned().collect(),
        })?;
    let start = millis_of(&DEFAULT_START).unwrap_or(0);
    let contact = match &opts.contact {
        None => Vec::new(),
        Some(text) => {
            let pairs = ivr_engine::contact::parse_pairs(text)?;
            ivr_engine::contact::contact_row(
                &sim_flow.flow,
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), ivr_engine::contact::Given::Text(v))),
            )?
        }
    };
    let dialled = contact.iter().find_map(|(name, value)| match value {
        ivr_engine::value::Value::Text(phone) if name == "phone" => Some(phone.clone()),
        _ => None,
    });
    let caller = opts
        .caller
        .clone()
        .or(dialled)
        .unwrap_or_else(|| DEFAULT_CALLER.to_string());
    let info = CallInfo {
        id: call_id(),
        caller: caller.clone(),
        called: opts
            .called
            .clone()
            .unwrap_or_else(|| sim_flow.called.clone()),
        channel: Channel::Sim,
        contact,
    };
    crate::logging::init();
    let span = tracing::warn_span!("call", id = %info.id);
    let _entered = span.enter();
    // The configured database answers the queries (the embedded demo database is created and
    // filled on first run). Without `--live-data` the call's writes are undone at its end and
    // it is not recorded; with it, its writes stay and its records go to `ivr report`.
    let data = ScenarioData::new(&checked.config, opts.live_data)?;
    let rt = Arc::clone(data.runtime());
    let writer = data
        .live_database()?
        .map(|db| RecordWriter::start(db.pool().clone(), WriterOptions::default(), rt.handle()));
    let recorder = writer.as_ref().map(|writer| {
        Rc::new(RefCell::new(CallRecorder::new(
            writer.clone(),
            Arc::clone(&sim_flow.flow),
            &info,
            start,
        )))
    });
    let mut sim = Simulation::new(
        Arc::clone(&sim_flow.flow),
        info.clone(),
        start,
        Arc::clone(&sim_flow.book),
        data.for_scenario(),
    );
    if let Some(recorder) = &recorder {
        sim.set_observer(Box::new(Rc::clone(recorder)));
    }
    let tty = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut p = Printer {
        shown: 0,
        failures_shown: 0,
        dim: if tty { "\x1b[2m" } else { "" },
        bold: if tty { "\x1b[1m" } else { "" },
        reset: if tty { "\x1b[0m" } else { "" },
    };
    let program = &sim_flow.flow.program;
    println!(
        "{}call to {} (version {}) from {} at 2026-11-23 10:00 (virtual time){}",
        p.dim,
        program.name,
        program.version,
        if caller.is_empty() {
            "an anonymous caller"
        } else {
            &caller
        },
        p.reset
    );
    sim.start();
    settle(&mut sim);
    p.show(&sim);

    let script: Option<Vec<String>> = opts.script.as_deref().map(script_inputs);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut step = 0usize;
    while !sim.call().is_ended() {
        let input = match &script {
            Some(words) => match words.get(step) {
                Some(w) => {
                    step += 1;
                    println!("> {w}");
                    w.clone()
                }
                None => break,
            },
            None => {
                print!("> ");
                let _ = std::io::stdout().flush();
                match lines.next() {
                    Some(Ok(l)) => l,
                    _ => break,
                }
            }
        };
        if matches!(input.trim(), "quit" | "exit") {
            break;
        }
        if let Err(msg) = apply(&mut sim, &input) {
            println!("{msg}");
            if script.is_some() {
                return Ok(ExitCode::from(2));
            }
            continue;
        }
        if let Some(err) = &sim.error {
            println!("{err}");
            break;
        }
        settle(&mut sim);
        p.show(&sim);
    }
    // Leaving the simulator (end of script, `quit`, end of input) is the caller hanging up.
    if !sim.call().is_ended() && sim.error.is_none() {
        println!("{}(the caller hangs up){}", p.dim, p.reset);
        sim.hangup();
    }
    let recorded = match (&recorder, writer) {
        (Some(recorder), Some(writer)) => {
            recorder.borrow_mut().finish(sim.now());
            let stats = rt.block_on(writer.shutdown());
            if stats.failed > 0 || stats.rejected > 0 {
                format!("call {}: its records could not all be written", info.id)
            } else {
                format!("recorded as call {}", info.id)
            }
        }
        _ => "not recorded; its writes are undone: --live-data keeps them".to_string(),
    };
    if let Some(why) = sim.call().fault_reason() {
        println!("{}{why}{}", p.bold, p.reset);
    }
    match sim.call().outcome() {
        Some(o) => {
            let by = sim.call().ended_by().map_or("?", |b| b.as_str());
            let served = sim.call().served();
            let served = if served.is_empty() {
                String::new()
            } else {
                format!(", served: {}", served.join(", "))
            };
            println!(
                "{}call ended: {}{} {}(ended by {by}{served}; {recorded}){}",
                p.bold,
                o.as_str(),
                p.reset,
                p.dim,
                p.reset
            )
        }
        None => println!(
            "{}call still at node {} (not ended){}",
            p.dim,
            program.nodes[sim.call().node() as usize].name,
            p.reset
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_words_are_the_terminal_inputs() {
        assert_eq!(
            script_inputs("1 wait 6s agent answers wait:2s agent:busy # hangup"),
            [
                "1",
                "wait 6s",
                "agent answers",
                "wait:2s",
                "agent:busy",
                "#",
                "hangup"
            ]
        );
        // What the errors tell the user to write is what a script takes.
        assert!(InputError::Agent.to_string().contains("`agent answers`"));
        assert!(InputError::Wait.to_string().contains("`wait 6s`"));
        assert_eq!(script_inputs("wait"), ["wait"]);
    }
}
