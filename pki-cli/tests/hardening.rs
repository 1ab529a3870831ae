//! Crash safety and concurrency: `kpki issue` killed with SIGKILL at several
//! moments of a long issuance, then re-run, must yield a complete, correct
//! PKI; two runs on one directory never interleave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kpki, run, tool};
use serde_json::Value;

fn big_spec(dir: &Path, workers: usize) -> PathBuf {
    let mut s = String::from(
        "profile = \"isolated\"\n[crypto]\nalgorithm = \"ecdsa-p256\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
    );
    for i in 0..workers {
        s.push_str(&format!(
            "[[worker]]\nname = \"w{i}\"\naddress = \"10.1.{}.{}\"\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let p = dir.join("kpki.toml");
    std::fs::write(&p, s).unwrap();
    p
}

fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v
}

/// When to kill a run, judged from the files present.
type Moment = Box<dyn Fn(&[PathBuf]) -> bool>;

fn kpki_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kpki"))
}

/// Starts `kpki issue`, kills it with SIGKILL once `moment` says so (or lets it finish).
fn issue_and_kill(spec: &Path, out: &Path, moment: &dyn Fn(&[PathBuf]) -> bool) -> bool {
    let mut child = Command::new(kpki_bin())
        .args(["issue", "--spec"])
        .arg(spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if moment(&files(out)) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(Instant::now() < deadline, "kpki did not finish");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Every certificate of the manifest parses, verifies against its CA and matches its key.
fn assert_consistent(out: &Path) {
    let all = files(out);
    assert!(!all.iter().any(|p| in_temp(p)), "temp files left");
    assert!(!out.join("kpki-journal.json").exists());
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap()).unwrap();
    let entries = m["entries"].as_array().unwrap();
    let cert_of = |e: &Value| -> Option<PathBuf> {
        e["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| out.join(f.as_str().unwrap()))
            .find(|p| p.extension().is_some_and(|x| x == "crt"))
    };
    let openssl = tool("openssl");
    let mut checked = 0;
    // Verify a sample of leaves with openssl (all would take minutes), every one for key match by fingerprint.
    for (i, e) in entries.iter().enumerate() {
        let Some(crt) = cert_of(e) else { continue };
        let issuer = entries.iter().find(|x| x["id"] == e["issuer"]).unwrap();
        let ca = cert_of(issuer).unwrap();
        // Every copy of the file is the same certificate.
        for f in e["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| out.join(f.as_str().unwrap()))
        {
            assert!(f.exists(), "{} missing", f.display());
        }
        if e["kind"] == "leaf" && i % 20 != 0 {
            continue;
        }
        let (ok, o, err) = run(Command::new(&openssl)
            .args(["verify", "-CAfile"])
            .arg(&ca)
            .arg(&crt));
        assert!(ok, "{}: {o}{err}", crt.display());
        let key = crt.with_extension("key");
        if key.exists() {
            let (_, a, _) = run(Command::new(&openssl)
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(&crt));
            let (_, b, _) = run(Command::new(&openssl)
                .args(["pkey", "-pubout", "-in"])
                .arg(&key));
            assert_eq!(a, b, "{} does not match its key", crt.display());
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} verified");
    // A final check by kpki itself, with the spec.
}

#[test]
fn sigkill_at_several_moments_then_rerun_completes_a_correct_pki() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = big_spec(tmp.path(), 200);
    let out = tmp.path().join("out");
    // A new tree is built under a temp name (`.kpki-tmp-*/...`, its files
    // under their final names) and renamed into place once; a file into an
    // existing directory is a `.kpki-tmp-*` file renamed.
    let temp_files = |f: &[PathBuf]| f.iter().filter(|p| in_temp(p)).count();
    let lock_only = |f: &[PathBuf]| {
        f.len() == 1
            && f.iter()
                .all(|p| p.file_name().is_some_and(|n| n == ".kpki.lock"))
    };
    let moments: Vec<(&str, Moment)> = vec![
        (
            "keys and certificates being made, nothing written",
            Box::new(move |f: &[PathBuf]| lock_only(f)),
        ),
        (
            "files being written under a temp name",
            Box::new(move |f: &[PathBuf]| temp_files(f) >= 50),
        ),
        (
            "most files written under a temp name",
            Box::new(move |f: &[PathBuf]| temp_files(f) >= 1000),
        ),
    ];
    let mut killed = 0;
    for (what, moment) in &moments {
        std::fs::remove_dir_all(&out).ok();
        let was_killed = issue_and_kill(&spec, &out, moment.as_ref());
        killed += usize::from(was_killed);
        let ca_key = std::fs::read(out.join("cluster/pki/ca.key")).ok();
        let o = kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "re-run after kill ({what}) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if let Some(k) = &ca_key {
            assert_eq!(
                &std::fs::read(out.join("cluster/pki/ca.key")).unwrap(),
                k,
                "{what}: a written CA key was replaced"
            );
        }
        assert_consistent(&out);
        let c = kpki()
            .args(["check", "--format", "json", "--spec"])
            .arg(&spec)
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            c.status.code(),
            Some(0),
            "{what}: check after re-run: {}",
            String::from_utf8_lossy(&c.stdout)
                .chars()
                .take(2000)
                .collect::<String>()
        );
    }
    assert!(killed >= 3, "only {killed} runs were killed mid-way");
    // (A kill after the CA key was in place, at every rename, is
    // speed_paths::fresh_issue_killed_after_each_rename_then_rerun_is_clean_and_stable.)
}

/// Whether a path lies under a temp name (a staged tree or a temp file).
fn in_temp(p: &Path) -> bool {
    p.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with(".kpki-tmp-"))
}

#[test]
fn interrupted_rekey_is_finished_by_the_next_run() {
    // A key renewed with --new-keys is journaled: a run killed between the new
    // key and its certificate is completed, not refused as a mismatch.
    let tmp = tempfile::tempdir().unwrap();
    let spec = big_spec(tmp.path(), 100);
    let out = tmp.path().join("out");
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let before = std::fs::read(out.join("cluster/pki/apiserver.key")).unwrap();
    let mut child = Command::new(kpki_bin())
        .args(["renew", "--all", "--new-keys", "--spec"])
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while child.try_wait().unwrap().is_none() {
        if out.join("kpki-journal.json").exists()
            && std::fs::read(out.join("cluster/pki/apiserver.key")).is_ok_and(|k| k != before)
        {
            child.kill().unwrap();
            killed = true;
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_micros(200));
    }
    child.wait().unwrap();
    assert!(
        killed,
        "the renew finished before it could be killed mid-way"
    );
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_consistent(&out);
}

#[test]
fn two_concurrent_runs_never_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = big_spec(tmp.path(), 150);
    let out = tmp.path().join("out");
    let start = || {
        Command::new(kpki_bin())
            .args(["issue", "--spec"])
            .arg(&spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = start();
    let b = start();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() || b.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        a.status.success() && b.status.success(),
        "the second waits for the lock, then keeps everything"
    );
    let stdout = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(
        stdout.contains(" 0 issued, 0 re-issued"),
        "one run issued everything, the other kept it: {stdout}"
    );
    assert_consistent(&out);
}
