//! One module per command; each returns an [`Exit`] or a [`Failure`].

mod check;
mod explain;
mod flags;
mod init;
mod issue;
mod kubeconfig;
mod plan;
mod renew;

use crate::Exit;
use crate::cli::{Cli, Command};

/// A command that could not run: the message to print and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// What to print after `error: `.
    pub message: String,
    /// The exit status.
    pub exit: Exit,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: Exit::BadInput,
        }
    }
    /// A failed operation (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: Exit::Failed,
        }
    }
}

impl From<pki_core::Error> for Failure {
    fn from(e: pki_core::Error) -> Self {
        let exit = if e.is_input() {
            Exit::BadInput
        } else {
            Exit::Failed
        };
        Self {
            message: e.to_string(),
            exit,
        }
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<Exit, Failure> {
    match cli.command {
        Command::Init(a) => init::run(&a),
        Command::Plan(a) => plan::run(&a),
        Command::Issue(a) => issue::run(&a),
        Command::Check(a) => check::run(&a),
        Command::Renew(a) => renew::run(&a),
        Command::Kubeconfig(a) => kubeconfig::run(&a),
        Command::Flags(a) => flags::run(&a),
        Command::Explain(a) => explain::run(&a),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "kpki", &mut crate::out::Stdout);
            Ok(Exit::Ok)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut crate::out::Stdout)
                .map_err(|e| Failure::failed(format!("cannot write the man page: {e}")))?;
            Ok(Exit::Ok)
        }
    }
}

/// Prints spec warnings to stderr.
pub fn print_spec_warnings(spec: &pki_core::ClusterSpec) {
    for w in &spec.warnings {
        eprintln!("warning: {w}");
    }
}
