//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// kpki: a certificate-authority toolkit for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "kpki", version, about, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// kpki's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter spec, or adopt a PKI (--from DIR).
    Init(InitArgs),
    /// Print the certificate graph and its findings; writes nothing.
    Plan(PlanArgs),
    /// Write keys, certificates, kubeconfigs and the manifest.
    Issue(IssueArgs),
    /// Audit an existing PKI directory (kpki, kubeadm or cfssl made); never writes.
    Check(CheckArgs),
    /// Re-issue leaf certificates that expire soon, under the existing CAs.
    Renew(RenewArgs),
    /// Write PKCS#10 requests (csr/ID.csr) for the CAs an external root signs; --leaves: for leaves too.
    Csr(CsrArgs),
    /// Import certificates signed elsewhere: matched to their request by public key, checked against the plan, placed.
    Import(ImportArgs),
    /// Rotate CAs and the service-account key in three phases, with no downtime.
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// Print one kubeconfig from the issued directory.
    Kubeconfig(KubeconfigArgs),
    /// Print the flags that point one component at its PKI files.
    Flags(FlagsArgs),
    /// Print the long form of a rule.
    Explain(ExplainArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// `kpki completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Output format of `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// A table for people.
    Text,
    /// The JSON contract.
    Json,
}

/// `kpki check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The directory: a kpki output dir, an install root (holding etc/kubernetes), /etc/kubernetes, its pki/, or a cfssl folder.
    pub dir: PathBuf,
    /// Compare with this spec's plan (missing, extra, drift). Without it, kubeadm defaults are assumed.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Warn about certificates expiring within this window (h, d or y).
    #[arg(long, default_value = "30d")]
    pub within: String,
    /// With --spec, the node a single node's directory (e.g. its /etc/kubernetes) belongs to (default: inferred from its files).
    #[arg(long, requires = "spec")]
    pub node: Option<String>,
    /// Print every column at full width (default: fit 120 columns).
    #[arg(long)]
    pub wide: bool,
    /// A directory of systemd units (and drop-ins) kept outside DIR: their
    /// flags are read like those of DIR's manifests and units.
    #[arg(long, value_name = "UNITS")]
    pub config_dir: Option<PathBuf>,
}

/// `kpki renew`.
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// The cluster spec, given without `--spec` (`kpki plan kpki.toml`).
    #[arg(value_name = "SPEC", conflicts_with = "spec")]
    pub spec_file: Option<PathBuf>,
    /// Output directory (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Re-issue leaves that expire within this window (h, d or y).
    #[arg(long, default_value = "30d", conflicts_with = "all")]
    pub within: String,
    /// Re-issue every leaf.
    #[arg(long)]
    pub all: bool,
    /// Generate new keys for the re-issued leaves (default: keep each key).
    #[arg(long)]
    pub new_keys: bool,
    /// Say what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `kpki rotate`.
#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Phase 1: new CAs / SA key; every trust anchor holds old + new; leaves untouched.
    Begin(RotateBeginArgs),
    /// Phase 2: leaves re-issued under the new CAs, the new SA key signs; trust holds old + new.
    Switch(RotateSwitchArgs),
    /// Phase 3: the old CAs and SA public key leave every trust anchor (archived under archive/).
    Finish(RotateCommon),
    /// Which CAs rotate, the phase, what comes next and what to restart.
    Status(RotateStatusArgs),
}

/// What every `kpki rotate` subcommand takes.
#[derive(Debug, clap::Args)]
pub struct RotateCommon {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// Output directory (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `kpki rotate begin`.
#[derive(Debug, clap::Args)]
pub struct RotateBeginArgs {
    /// A CA to rotate, by its id (repeatable).
    #[arg(long = "ca", value_name = "ID")]
    pub cas: Vec<String>,
    /// Rotate every CA.
    #[arg(long)]
    pub all_cas: bool,
    /// Rotate the service-account key.
    #[arg(long)]
    pub sa: bool,
    /// Spec and output directory.
    #[command(flatten)]
    pub common: RotateCommon,
}

/// `kpki rotate switch`.
#[derive(Debug, clap::Args)]
pub struct RotateSwitchArgs {
    /// Generate new keys for the re-issued leaves (default: keep each key).
    #[arg(long)]
    pub new_keys: bool,
    /// Spec and output directory.
    #[command(flatten)]
    pub common: RotateCommon,
}

/// `kpki rotate status`.
#[derive(Debug, clap::Args)]
pub struct RotateStatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Spec and output directory.
    #[command(flatten)]
    pub common: RotateCommon,
}

/// `kpki kubeconfig`.
#[derive(Debug, clap::Args)]
pub struct KubeconfigArgs {
    /// The kubeconfig: its profile id (`admin`, `kubelet`...) or file name (`admin.conf`).
    pub name: String,
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// The node, for per-node kubeconfigs (default: the first).
    #[arg(long)]
    pub node: Option<String>,
    /// The issued directory to read from (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Output format of `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlagsFormat {
    /// `{"node", "component", "flags", "config"}`.
    Json,
    /// `--flag=value` per line (flags only; config fields go to the config file).
    Args,
}

/// `kpki flags`.
#[derive(Debug, clap::Args)]
pub struct FlagsArgs {
    /// The component (etcd, etcdctl, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy).
    pub component: String,
    /// The node (default: the first node running the component).
    #[arg(long)]
    pub node: Option<String>,
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FlagsFormat::Json)]
    pub format: FlagsFormat,
    /// Prefix every absolute path with this directory (e.g. a node bundle, for a chroot or a test).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The issued directory whose manifest records the etcd members
    /// (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `kpki issue`.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// The cluster spec, given without `--spec` (`kpki plan kpki.toml`).
    #[arg(value_name = "SPEC", conflicts_with = "spec")]
    pub spec_file: Option<PathBuf>,
    /// Output directory (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Say what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace existing CA keys (and so re-issue everything). Never implied.
    #[arg(long)]
    pub replace_ca_keys: bool,
    /// Threads for key generation (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Remove stale node bundles (`nodes/<node>` of nodes no longer in the spec, with their keys).
    #[arg(long)]
    pub prune: bool,
}

/// `kpki csr`.
#[derive(Debug, clap::Args)]
pub struct CsrArgs {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// Output directory (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write a request for every leaf (its key stays where kpki keeps it).
    #[arg(long)]
    pub leaves: bool,
}

/// `kpki import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// Output directory (default: the spec's output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// PEM files: signed certificates (a CA's may be followed by its root), and the root's certificate.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `kpki init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the spec (refuses to overwrite).
    #[arg(long, default_value = "kpki.toml")]
    pub out: PathBuf,
    /// Adopt an existing PKI: a spec that describes DIR, its CAs as `[[existing_ca]]`
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// With --from: write kpki's values for DIR's mistakes instead of copying them (check DIR --spec then reports those certificates as D003)
    #[arg(long, requires = "from")]
    pub fix: bool,
}

/// Output format of `plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A tree for people.
    Tree,
    /// The JSON contract.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// `kpki plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The cluster spec.
    #[arg(long, default_value = "kpki.toml")]
    pub spec: PathBuf,
    /// The cluster spec, given without `--spec` (`kpki plan kpki.toml`).
    #[arg(value_name = "SPEC", conflicts_with = "spec")]
    pub spec_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Tree)]
    pub format: PlanFormat,
}

/// `kpki explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A rule code (N001...).
    #[arg(required_unless_present = "all")]
    pub code: Option<String>,
    /// Print every rule as Markdown (docs/rules.md).
    #[arg(long)]
    pub all: bool,
}

impl IssueArgs {
    /// The spec file: the positional one, else `--spec`.
    pub fn spec(&self) -> &std::path::Path {
        self.spec_file.as_deref().unwrap_or(&self.spec)
    }
}

impl PlanArgs {
    /// The spec file: the positional one, else `--spec`.
    pub fn spec(&self) -> &std::path::Path {
        self.spec_file.as_deref().unwrap_or(&self.spec)
    }
}

impl RenewArgs {
    /// The spec file: the positional one, else `--spec`.
    pub fn spec(&self) -> &std::path::Path {
        self.spec_file.as_deref().unwrap_or(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
