//! `loopgate`: the command-line entry point.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = loopgate::cli::Cli::parse();
    loopgate::cli::run(cli)
}
