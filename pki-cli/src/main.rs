//! `kpki`: plan, issue and audit a Kubernetes PKI. Parses arguments,
//! dispatches to one command, maps the outcome to exit status 0/1/2.

mod cli;
mod cmd;
mod out;
mod render;

use std::process::ExitCode;

use clap::Parser;

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success, no error findings.
    Ok = 0,
    /// Error findings or a failed operation.
    Failed = 1,
    /// Bad usage or bad input.
    BadInput = 2,
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(exit) => exit as u8,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.exit as u8
        }
    };
    ExitCode::from(code)
}
