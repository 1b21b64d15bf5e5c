//! `ivr`: the command-line program of the IVR platform.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
