//! `ivr`: the command-line program of the IVR platform.

mod agent_password_cmd;
mod cli;
mod fmt_cmd;
mod load;
mod prompts_cmd;
mod report_cmd;
mod serve_cmd;
mod simulate;
mod test_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
