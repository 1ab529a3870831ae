//! Replays every file under `fixtures/fuzz-regressions/<target>/` through the
//! same function as the cargo-fuzz target of that name (see `fuzz/`): crash
//! inputs the fuzzers found, plus hand-written tricky seeds. Each call must
//! return `Ok` or `Err`; a panic fails the test and names the file.
//!
//! To add a regression, copy the fuzzer's artefact
//! (`fuzz/artifacts/<target>/crash-*`) into the target's folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    workspace.join("fixtures/fuzz-regressions").join(target)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Runs `f` on every file of `target`'s folder; fails listing every input
/// that panicked.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds no inputs for the `{target}` target",
        dir.display()
    );
    let panicked: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| f(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        panicked.is_empty(),
        "`{target}` panicked on {} of {} inputs:\n  {}",
        panicked.len(),
        files.len(),
        panicked.join("\n  ")
    );
}

/// The fuzz targets only look at inputs that are valid UTF-8; so does this.
fn utf8(data: &[u8], f: impl FnOnce(&str)) {
    if let Ok(text) = std::str::from_utf8(data) {
        f(text);
    }
}

#[test]
fn spec_inputs_never_panic() {
    replay("spec", |data| {
        utf8(data, |text| {
            let _ = pki_core::ClusterSpec::parse(text, Path::new("fuzz/kpki.toml"));
        });
    });
}

#[test]
fn profile_inputs_never_panic() {
    replay("profile", |data| {
        utf8(data, |text| {
            let _ = pki_core::Profile::parse(text, Path::new("fuzz/profile.toml"));
        });
    });
}

#[test]
fn cert_der_inputs_never_panic() {
    replay("cert_der", |data| {
        let _ = pki_core::parse_certificate(data);
    });
}

#[test]
fn pem_inputs_never_panic() {
    replay("pem", |data| {
        utf8(data, |text| {
            let _ = pki_core::certs_from_pem(text);
            let _ = pki_core::PrivateKey::from_pem(text);
            let _ = pki_core::PublicKey::from_pem(text);
        });
    });
}

#[test]
fn kubeconfig_inputs_never_panic() {
    replay("kubeconfig", |data| {
        utf8(data, |text| {
            let _ = kubeconfig::Kubeconfig::from_yaml(text);
        });
    });
}

#[path = "../../fuzz/walk_tree.rs"]
mod walk_tree;

#[test]
fn walk_inputs_never_panic_or_hang() {
    replay("walk", |data| {
        let dir = tempfile::tempdir().unwrap();
        walk_tree::build(dir.path(), data);
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| {
                let _ = pki_core::check(&root, None, None, &pki_core::Options::default());
            }));
            let _ = tx.send(r.is_ok());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(true) => {}
            Ok(false) => panic!("check panicked"),
            Err(_) => panic!("check hung for 30 s"),
        }
    });
}
