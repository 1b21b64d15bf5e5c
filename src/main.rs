//! `ivr`: the command-line program of the IVR platform.

mod agent_password_cmd;
mod campaign_cmd;
mod check_data;
mod cli;
mod fmt_cmd;
mod init_cmd;
mod load;
mod logging;
mod prompts_cmd;
mod prompts_generate;
mod recordings_cmd;
mod report_cmd;
mod serve_cmd;
mod simulate;
mod test_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
