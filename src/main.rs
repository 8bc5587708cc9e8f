//! The `clustermoe` command line: parses flags, calls the library, prints
//! (see `cli/`).

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    match cli::run(cli::args::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message_with(cli::args::flag));
            ExitCode::from(e.exit_status() as u8)
        }
    }
}
