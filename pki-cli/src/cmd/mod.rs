//! One module per command; each returns an [`Exit`] or a [`Failure`].

mod check;
mod explain;
mod external;
mod flags;
mod init;
mod issue;
mod kubeconfig;
mod plan;
mod renew;
mod rotate;

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
        Command::Csr(a) => external::csr(&a),
        Command::Import(a) => external::import(&a),
        Command::Rotate(a) => rotate::run(&a),
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

/// The etcd members the last issuance into `out` recorded in its manifest
/// (empty when there is none, or it cannot be read as a regular file).
pub fn recorded_members(out: &std::path::Path) -> Option<Recorded> {
    let p = out.join("kpki-manifest.json");
    let meta = std::fs::metadata(&p).ok()?;
    if !meta.is_file() || meta.len() > 256 << 20 {
        return None;
    }
    let bytes = std::fs::read(&p).ok()?;
    serde_json::from_slice::<Recorded>(&bytes).ok()
}

/// What [`recorded_members`] takes from a manifest: its etcd membership and
/// rotation, the manifest's other fields skipped unparsed (at 5,000 nodes
/// the manifest is 7 MB of file entries).
#[derive(serde::Deserialize)]
pub struct Recorded {
    /// [`pki_core::Manifest::etcd_members`].
    #[serde(default)]
    pub etcd_members: Vec<pki_core::EtcdMember>,
    /// [`pki_core::Manifest::etcd_change`].
    #[serde(default)]
    pub etcd_change: Option<pki_core::MembershipChange>,
    /// [`pki_core::Manifest::rotation`].
    #[serde(default)]
    pub rotation: Option<pki_core::Rotation>,
}

/// Loads a plan and gives it the etcd membership recorded in `out` (or the
/// spec's output directory), so that flags and findings follow the cluster.
pub fn load_plan(
    spec: &std::path::Path,
    out: Option<&std::path::Path>,
) -> Result<pki_core::Plan, Failure> {
    let mut plan = pki_core::Plan::load(spec)?;
    let out = out.map_or_else(
        || plan.spec.output.dir.clone(),
        std::path::Path::to_path_buf,
    );
    if let Some(m) = recorded_members(&out) {
        plan.with_previous_members(&m.etcd_members, m.etcd_change.as_ref());
    }
    // X002: the top CAs still waiting for the external root's signature.
    if plan.spec.root.external {
        plan.with_external_root(&external::ReadOnly(&out))
            .map_err(|e| Failure::input(e.to_string()))?;
    }
    Ok(plan)
}

/// One line on a rotation in progress, for `plan` and `check`.
pub fn rotation_line(r: &pki_core::Rotation) -> String {
    let next = r.next();
    let mut what = r.cas.clone();
    what.extend(r.keypairs.iter().cloned());
    format!(
        "rotation in progress ({}): phase {} {}; next: `kpki rotate {next}` (see `kpki rotate status`)\n",
        what.join(", "),
        r.phase,
        if r.done { "done" } else { "interrupted" }
    )
}
