use std::path::Path;

use super::Failure;
use crate::Exit;
use crate::cli::{CheckFormat, RotateCommand, RotateCommon};
use pki_core::{DirStore, IssueOptions, RotateRequest, RotationPhase, RotationStatus};

pub fn run(c: &RotateCommand) -> Result<Exit, Failure> {
    let (common, req) = match c {
        RotateCommand::Begin(a) => (
            &a.common,
            RotateRequest {
                cas: a.cas.clone(),
                all_cas: a.all_cas,
                sa: a.sa,
                ..RotateRequest::new(RotationPhase::Begin)
            },
        ),
        RotateCommand::Switch(a) => (
            &a.common,
            RotateRequest {
                new_keys: a.new_keys,
                ..RotateRequest::new(RotationPhase::Switch)
            },
        ),
        RotateCommand::Finish(a) => (a, RotateRequest::new(RotationPhase::Finish)),
        RotateCommand::Status(a) => return status(&a.common, a.format),
    };
    let (plan, out) = load(common)?;
    if plan.report.has_errors() {
        eprint!("{}", crate::render::findings(&plan.report));
        return Err(Failure::failed(
            "the plan has error findings; nothing was written",
        ));
    }
    let mut store = open(&out)?;
    let report = pki_core::rotate(&plan, &mut store, &req, &IssueOptions::default())?;
    for (id, a) in &report.actions {
        match a {
            pki_core::Action::Reissued(why) => crate::out::outln!("reissue {id}: {why}"),
            pki_core::Action::Rekeyed(why) => crate::out::outln!("rekey   {id}: {why}"),
            _ => {}
        }
    }
    let phase = req.phase.as_str();
    crate::out::outln!(
        "{}: rotate {phase} done; wrote {} file(s)",
        out.display(),
        report.changed_files()
    );
    let st = pki_core::rotation_status(&plan, &store)?;
    print_restarts(&st);
    Ok(Exit::Ok)
}

fn load(common: &RotateCommon) -> Result<(pki_core::Plan, std::path::PathBuf), Failure> {
    let plan = super::load_plan(&common.spec, common.out.as_deref())?;
    super::print_spec_warnings(&plan.spec);
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| plan.spec.output.dir.clone());
    Ok((plan, out))
}

fn open(out: &Path) -> Result<DirStore, Failure> {
    if !out.join("kpki-manifest.json").is_file() {
        return Err(Failure::input(format!(
            "{}: nothing was issued here yet; run `kpki issue` first",
            out.display()
        )));
    }
    let wait = std::time::Duration::from_secs(600);
    DirStore::open_waiting(out, wait, || {
        eprintln!(
            "waiting for another kpki run to finish with {}",
            out.display()
        );
    })
    .map_err(Failure::from)
}

fn status(common: &RotateCommon, format: CheckFormat) -> Result<Exit, Failure> {
    let (plan, out) = load(common)?;
    // Read only: no lock, nothing written.
    let store = ReadOnly(out.clone());
    let st = pki_core::rotation_status(&plan, &store)?;
    if format == CheckFormat::Json {
        let json = serde_json::to_string_pretty(&st)
            .map_err(|e| Failure::failed(format!("cannot encode the status: {e}")))?;
        crate::out::outln!("{json}");
        return Ok(Exit::Ok);
    }
    match &st.rotation {
        None => crate::out::outln!("no rotation in progress"),
        Some(r) => {
            crate::out::outln!(
                "rotation started {}: phase {} {}",
                r.started,
                r.phase,
                if r.done {
                    "done"
                } else {
                    "interrupted (run it again)"
                }
            );
            if !r.cas.is_empty() {
                crate::out::outln!("rotating CAs: {}", r.cas.join(", "));
            }
            if !r.keypairs.is_empty() {
                crate::out::outln!("rotating keys: {}", r.keypairs.join(", "));
            }
        }
    }
    crate::out::outln!("next: kpki rotate {}", st.next);
    print_restarts(&st);
    Ok(Exit::Ok)
}

/// The restart order, one line per node.
fn print_restarts(st: &RotationStatus) {
    if st.restart.is_empty() {
        return;
    }
    crate::out::outln!(
        "after each phase restart, one node at a time, in this order (each etcd member only once the previous one is healthy):"
    );
    let mut nodes: Vec<(&str, Vec<String>)> = Vec::new();
    for r in &st.restart {
        match nodes.last_mut() {
            Some((n, cs)) if *n == r.node => cs.push(r.component.to_string()),
            _ => nodes.push((&r.node, vec![r.component.to_string()])),
        }
    }
    for (n, cs) in nodes {
        crate::out::outln!("  {n}: {}", cs.join(", "));
    }
}

/// A store that reads a directory and never writes (for `status`).
struct ReadOnly(std::path::PathBuf);

impl pki_core::PkiStore for ReadOnly {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, pki_core::StoreError> {
        let p = self.0.join(path);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(pki_core::StoreError {
                path: p.display().to_string(),
                message: e.to_string(),
                kind: pki_core::StoreErrorKind::Io,
            }),
        }
    }
    fn write(
        &mut self,
        path: &str,
        _: &[u8],
        _: pki_core::Mode,
    ) -> Result<(), pki_core::StoreError> {
        Err(pki_core::StoreError {
            path: path.into(),
            message: "status writes nothing".into(),
            kind: pki_core::StoreErrorKind::Io,
        })
    }
    fn remove(&mut self, path: &str) -> Result<(), pki_core::StoreError> {
        self.write(path, &[], pki_core::Mode::Public)
    }
}
