//! `kpki csr` and `kpki import`: CAs (and leaves) signed outside kpki.

use std::path::{Path, PathBuf};

use super::Failure;
use crate::Exit;
use crate::cli::{CsrArgs, ImportArgs};
use pki_core::{DirStore, ImportError, Mode, PkiStore, StoreError, StoreErrorKind};

/// The output directory, read only (for `plan`'s X002 findings): a missing
/// file or directory reads as absent; nothing is ever written.
pub struct ReadOnly<'a>(pub &'a Path);

impl PkiStore for ReadOnly<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.0.join(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError {
                path: path.to_owned(),
                message: e.to_string(),
                kind: StoreErrorKind::Io,
            }),
        }
    }
    fn write(&mut self, path: &str, _: &[u8], _: Mode) -> Result<(), StoreError> {
        Err(StoreError {
            path: path.to_owned(),
            message: "read only".into(),
            kind: StoreErrorKind::Io,
        })
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.write(path, &[], Mode::Public)
    }
}

fn open(out: &Path) -> Result<DirStore, Failure> {
    DirStore::open_waiting(out, std::time::Duration::from_secs(600), || {
        eprintln!(
            "waiting for another kpki run to finish with {}",
            out.display()
        );
    })
    .map_err(Failure::from)
}

/// The spec's plan (its warnings printed) and the output directory: `out`,
/// or the spec's `output.dir`.
fn load(spec: &Path, out: Option<&Path>) -> Result<(pki_core::Plan, PathBuf), Failure> {
    let plan = pki_core::Plan::load(spec)?;
    super::print_spec_warnings(&plan.spec);
    let out = out.map_or_else(|| plan.spec.output.dir.clone(), Path::to_path_buf);
    Ok((plan, out))
}

pub fn csr(a: &CsrArgs) -> Result<Exit, Failure> {
    let (plan, out) = load(&a.spec, a.out.as_deref())?;
    let mut store = open(&out)?;
    let report = pki_core::csr(&plan, &mut store, a.leaves, &pki_core::RustCrypto)?;
    if report.requests.is_empty() {
        crate::out::outln!(
            "nothing to request: the spec has no `[root] external = true` (`--leaves` writes requests for the leaves)"
        );
        return Ok(Exit::Ok);
    }
    for id in &report.new_keys {
        crate::out::outln!("new key {id}");
    }
    if !report.skipped.is_empty() {
        crate::out::outln!(
            "no request for {} (their keys live only in kubeconfigs; kpki signs them)",
            report.skipped.join(", ")
        );
    }
    for (id, path) in &report.requests {
        crate::out::outln!("request {id}: {}", out.join(path).display());
    }
    crate::out::outln!(
        "have each request signed (a CA's by your root, as a CA), then `kpki import` the certificates and the root's"
    );
    Ok(Exit::Ok)
}

pub fn import(a: &ImportArgs) -> Result<Exit, Failure> {
    let (plan, out) = load(&a.spec, a.out.as_deref())?;
    let mut files = Vec::new();
    for f in &a.files {
        files.push((f.display().to_string(), read_capped(f)?));
    }
    let mut store = open(&out)?;
    match pki_core::import(&plan, &mut store, &files, time::OffsetDateTime::now_utc()) {
        Ok(report) => {
            for (id, paths) in &report.placed {
                crate::out::outln!("import {id}: {}", paths.join(", "));
            }
            for root in &report.roots {
                crate::out::outln!("root CN={root}");
            }
            crate::out::outln!("next: `kpki issue`");
            Ok(Exit::Ok)
        }
        Err(ImportError::Refused(refusals)) => {
            for r in &refusals {
                eprintln!("refused {r}");
            }
            Err(Failure::failed(format!(
                "{} refusal(s); nothing was imported",
                refusals.len()
            )))
        }
        Err(e @ ImportError::Unreadable { .. }) => Err(Failure::input(e.to_string())),
        Err(ImportError::Issue(e)) => Err(e.into()),
    }
}

/// A certificate file to import: a regular file of at most [`IMPORT_CAP`]
/// bytes (a chain is a few kilobytes); a FIFO or a device is refused.
fn read_capped(f: &std::path::Path) -> Result<Vec<u8>, Failure> {
    pki_core::read_file_capped(f, IMPORT_CAP)
        .map_err(|m| Failure::input(format!("{}: {m}", f.display())))
}

/// The largest file `kpki import` reads.
const IMPORT_CAP: u64 = 1024 * 1024;
