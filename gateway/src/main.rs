//! `loopgate`: the command-line entry point.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = loopgate::cli::Cli::parse();
    if !matches!(cli.command, loopgate::cli::Command::Serve) {
        // `loopgate memory export | head` ends quietly when `head` has read enough, like
        // every Unix tool, instead of panicking on a closed pipe. Not for `serve`: a
        // closed log pipe must not kill the service.
        // SAFETY: called first thing, before any other thread exists; SIG_DFL is a valid
        // disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    loopgate::cli::run(cli)
}
