use std::path::Path;

use super::{Failure, print_spec_warnings};
use crate::Exit;
use crate::cli::IssueArgs;
use pki_core::{
    Action, DirStore, FileChange, IssueError, IssueOptions, StoreError, StoreErrorKind,
};

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e.kind {
            StoreErrorKind::Unsafe => Failure::input(e.to_string()),
            StoreErrorKind::Io => Failure::failed(e.to_string()),
        }
    }
}

impl From<IssueError> for Failure {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Existing { .. }
            | IssueError::Store(_)
            | IssueError::Rotation(_)
            | IssueError::Token(_) => Failure::input(e.to_string()),
            _ => Failure::failed(e.to_string()),
        }
    }
}

pub fn run(a: &IssueArgs) -> Result<Exit, Failure> {
    let opts = IssueOptions {
        dry_run: a.dry_run,
        replace_ca_keys: a.replace_ca_keys,
        jobs: a.jobs,
        ..IssueOptions::default()
    };
    execute_pruning(a.spec(), a.out.as_deref(), &opts, a.prune)
}

/// Plans `spec` and issues into `out` (or the spec's output dir); shared with `renew`.
pub fn execute(spec: &Path, out: Option<&Path>, opts: &IssueOptions) -> Result<Exit, Failure> {
    execute_pruning(spec, out, opts, false)
}

/// [`execute`], then names stale node bundles (removing them with `prune`).
fn execute_pruning(
    spec: &Path,
    out: Option<&Path>,
    opts: &IssueOptions,
    prune: bool,
) -> Result<Exit, Failure> {
    let plan = super::load_plan(spec, out)?;
    print_spec_warnings(&plan.spec);
    let out = out.map_or_else(|| plan.spec.output.dir.clone(), Path::to_path_buf);
    if plan.report.has_errors() {
        eprint!("{}", crate::render::findings(&plan.report));
        return Err(Failure::failed(
            "the plan has error findings; nothing was written",
        ));
    }
    let opts = &with_progress(opts);
    let mut dir_store = None;
    let report = if opts.dry_run && !out.exists() {
        pki_core::issue(&plan, &mut pki_core::MemStore::default(), opts)?
    } else {
        let wait = std::time::Duration::from_secs(600);
        // The directories of the plan's files: checked at open (the whole
        // tree is swept only after a killed run).
        let dirs = plan.layout.output_dirs();
        let mut store = DirStore::open_planned(
            &out,
            wait,
            || {
                eprintln!(
                    "waiting for another kpki run to finish with {}",
                    out.display()
                );
            },
            dirs.iter().map(String::as_str),
        )
        .map_err(Failure::from)?;
        drop(dirs);
        let report = pki_core::issue(&plan, &mut store, opts)?;
        dir_store = Some(store);
        report
    };
    let count = |f: fn(&Action) -> bool| report.actions.iter().filter(|(_, a)| f(a)).count();
    let issued = count(|a| matches!(a, Action::Issued));
    let reissued = count(|a| matches!(a, Action::Reissued(_) | Action::Rekeyed(_)));
    let kept = count(|a| matches!(a, Action::Kept));
    for (id, a) in &report.actions {
        match a {
            Action::Reissued(why) => crate::out::outln!("reissue {id}: {why}"),
            Action::Rekeyed(why) => crate::out::outln!("rekey   {id}: {why}"),
            Action::Adopted(from) => crate::out::outln!("adopt   {id}: from {from}"),
            _ => {}
        }
    }
    let verb = if opts.dry_run { "would write" } else { "wrote" };
    if opts.dry_run {
        for (path, change) in &report.files {
            if *change != FileChange::Unchanged {
                let what = match change {
                    FileChange::Created => "new",
                    FileChange::Updated => "changed",
                    FileChange::Unchanged => "unchanged",
                };
                crate::out::outln!("{verb} {path} ({what})");
            }
        }
    }
    // Bundles of nodes no longer in the spec still hold their private keys.
    for stale in pki_core::stale_bundles(&out, &plan.layout) {
        let shown = out.join(&stale);
        match dir_store.as_mut() {
            Some(store) if prune && !opts.dry_run => {
                store.remove_bundle(&stale)?;
                crate::out::outln!("removed stale node bundle {}", shown.display());
            }
            _ if prune => crate::out::outln!("would remove stale node bundle {}", shown.display()),
            _ => eprintln!(
                "warning: {} is the bundle of a node no longer in the spec (it holds that node's keys); `kpki issue --prune` removes it",
                shown.display()
            ),
        }
    }
    let changed = report.changed_files();
    crate::out::outln!(
        "{}: {issued} issued, {reissued} re-issued, {kept} kept; {verb} {changed} file(s), {} unchanged",
        out.display(),
        report.files.len() - changed
    );
    let capi = format!("{}/", pki_core::CAPI_DIR);
    if report.files.iter().any(|(p, _)| p.starts_with(&capi)) {
        crate::out::outln!(
            "Cluster API Secrets (they hold the CA private keys, mode 0600): {}; \
             `kubectl apply -f` them before creating the Cluster",
            out.join(pki_core::CAPI_DIR).display()
        );
    }
    let m = &report.membership;
    if !m.is_empty() {
        crate::out::outln!(
            "etcd membership {}: adds {}, removes {}; run, in order (also in cluster/membership.md):",
            if opts.dry_run {
                "would change"
            } else {
                "changes"
            },
            pki_core::member_names(&m.added),
            pki_core::member_names(&m.removed)
        );
        for (i, step) in m.steps.iter().enumerate() {
            crate::out::outln!("  {}. {step}", i + 1);
        }
    }
    Ok(Exit::Ok)
}

/// A progress bar (indicatif) on stderr once issuance has run for a second;
/// nothing when stderr is not a terminal.
fn with_progress(opts: &IssueOptions) -> IssueOptions {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let mut o = opts.clone();
    if !std::io::stderr().is_terminal() {
        return o;
    }
    let start = std::time::Instant::now();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#> "),
    );
    o.progress = Some(std::sync::Arc::new(move |p: pki_core::Progress| {
        if start.elapsed() < std::time::Duration::from_secs(1) {
            return;
        }
        match p {
            pki_core::Progress::Keys { done, total } => {
                bar.set_message("keys");
                bar.set_length(u64::try_from(total).unwrap_or(u64::MAX));
                bar.set_position(u64::try_from(done).unwrap_or(u64::MAX));
            }
            pki_core::Progress::Writing(n) => {
                bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(format!("writing {n} files..."));
            }
        }
    }));
    o
}
