//! Command line: clap definitions and dispatch (under construction).

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
