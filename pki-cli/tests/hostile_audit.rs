//! `kpki check` (and `kpki issue`) on hostile directories: damaged key files
//! must never have their contents quoted, and loops, FIFOs, devices and huge
//! files must neither hang nor exhaust memory, each one reported by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{existing_pki, kpki, tool};
use serde_json::Value;

const SPEC: &str = "profile = \"kubeadm\"\n\
    [crypto]\nalgorithm = \"ecdsa-p256\"\n\
    [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n";

/// A fresh kpki output dir: (tempdir, spec path, output dir).
fn issued() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(&spec, SPEC).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let out = tmp.path().join("out");
    (tmp, spec, out)
}

/// A copy of the openssl-made kubeadm fixture.
fn kubeadm_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(existing_pki().join("kubeadm/."))
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(ok.success());
    tmp
}

/// The base64 body lines of the first PEM block of `pem`.
fn body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Fails when `out` holds any 16-character run of any of `secrets`.
fn assert_no_run(out: &str, secrets: &[String], what: &str) {
    for s in secrets {
        let b = s.as_bytes();
        for w in b.windows(16) {
            let w = std::str::from_utf8(w).unwrap();
            assert!(
                !out.contains(w),
                "{what}: output quotes key material {w:?}:\n{out}"
            );
        }
    }
}

/// The ways a key file gets damaged.
fn damages(key: &str) -> Vec<(&'static str, String)> {
    let mut lines: Vec<&str> = key.lines().collect();
    let begin = lines[0];
    let end = *lines.last().unwrap();
    let one_dash_less = |l: &str| l[..l.len() - 1].to_owned();
    let body = lines[1..lines.len() - 1].join("\n");
    let mut out = vec![
        (
            "BEGIN line missing a dash",
            format!("{}\n{body}\n{end}\n", one_dash_less(begin)),
        ),
        (
            "BEGIN line missing a dash, body on the same line",
            format!("{}{body}\n{end}\n", one_dash_less(begin)),
        ),
        ("END line missing", format!("{begin}\n{body}\n")),
        (
            "END line missing a dash",
            format!("{begin}\n{body}\n{}\n", one_dash_less(end)),
        ),
    ];
    let mid = lines[1].len() / 2;
    let garbled = format!("{}#%!*{}", &lines[1][..mid], &lines[1][mid..]);
    lines[1] = &garbled;
    out.push(("garbage in the body", lines.join("\n") + "\n"));
    out
}

/// The ways a kubeconfig's embedded client key gets damaged: the YAML text
/// of the whole file for each.
fn kubeconfig_damages(conf: &str) -> Vec<(&'static str, String)> {
    let line = conf
        .lines()
        .find(|l| l.trim_start().starts_with("client-key-data:"))
        .unwrap();
    let value = line.split_once(':').unwrap().1.trim();
    let prefix = &line[..line.len() - value.len()];
    let at = value.len() / 2;
    let swap = |new_line: String| conf.replace(line, &new_line);
    let pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap(),
    )
    .unwrap();
    let reencode = |p: &str| base64::engine::general_purpose::STANDARD.encode(p);
    let mut out = vec![
        (
            "quote inside client-key-data",
            swap(format!("{prefix}{}\"{}", &value[..at], &value[at..])),
        ),
        (
            "colon inside client-key-data (YAML error)",
            swap(format!("{prefix}{}: {}", &value[..at], &value[at..])),
        ),
        (
            "tab and newline inside client-key-data (YAML error)",
            swap(format!("{prefix}{}\n\t{}", &value[..at], &value[at..])),
        ),
        (
            "unclosed quote before client-key-data",
            swap(format!("{prefix}\"{value}")),
        ),
        (
            "list item inside client-key-data (YAML error)",
            swap(format!("{prefix}{}\n  - {}", &value[..at], &value[at..])),
        ),
        (
            "client-key-data cut short",
            swap(format!("{prefix}{}", &value[..at + 1])),
        ),
    ];
    for (_, damaged) in damages(&pem) {
        out.push((
            "embedded key PEM damaged",
            swap(format!("{prefix}{}", reencode(&damaged))),
        ));
    }
    out
}

fn run(cmd: &mut assert_cmd::Command) -> (Option<i32>, String) {
    let o = cmd.timeout(Duration::from_secs(30)).output().unwrap();
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!all.contains("panicked"), "{all}");
    (o.status.code(), all)
}

/// `kpki check DIR` as text and as JSON: neither quotes a secret, and the
/// JSON names `file` in an F001 finding when `file` is given.
fn check_both(dir: &Path, secrets: &[String], file: Option<&str>, what: &str) {
    let (code, text) = run(kpki().arg("check").arg(dir));
    assert_eq!(code, Some(1), "{what}: {text}");
    assert_no_run(&text, secrets, what);
    let (code, json) = run(kpki().arg("check").arg(dir).args(["--format", "json"]));
    assert_eq!(code, Some(1), "{what}: {json}");
    assert_no_run(&json, secrets, what);
    if let Some(file) = file {
        assert!(text.contains(file), "{what}: {file} not named:\n{text}");
        let doc: Value = serde_json::from_str(json.trim()).unwrap();
        let named = doc["findings"].as_array().unwrap().iter().any(|f| {
            f["code"] == "F001" && f["files"].as_array().unwrap().iter().any(|x| x == file)
        });
        assert!(named, "{what}: no F001 on {file}: {json}");
    }
}

#[test]
fn damaged_keys_are_never_quoted_by_check_or_issue() {
    // kubeadm layout (openssl-made fixture).
    let pristine =
        std::fs::read_to_string(existing_pki().join("kubeadm/pki/apiserver.key")).unwrap();
    let secrets = body_lines(&pristine);
    assert!(secrets.len() >= 2);
    for (what, damaged) in damages(&pristine) {
        let d = kubeadm_copy();
        std::fs::write(d.path().join("pki/apiserver.key"), &damaged).unwrap();
        check_both(
            d.path(),
            &secrets,
            Some("pki/apiserver.key"),
            &format!("kubeadm: {what}"),
        );
    }
    // kpki output dir: check, and issue over it.
    let (_tmp, spec, out) = issued();
    let key_rel = "cluster/pki/apiserver.key";
    let pristine = std::fs::read_to_string(out.join(key_rel)).unwrap();
    let secrets = body_lines(&pristine);
    let snapshot = tempfile::tempdir().unwrap();
    let keep = snapshot.path().join("out");
    let cp = |from: &Path, to: &Path| {
        let _ = std::fs::remove_dir_all(to);
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(to)
                .status()
                .unwrap()
                .success()
        );
    };
    cp(&out, &keep);
    for (what, damaged) in damages(&pristine) {
        cp(&keep, &out);
        // Every copy of the key (cluster/ and the node bundle) is damaged.
        for rel in [key_rel, "nodes/cp1/etc/kubernetes/pki/apiserver.key"] {
            if out.join(rel).exists() {
                std::fs::write(out.join(rel), &damaged).unwrap();
            }
        }
        let what = format!("kpki dir: {what}");
        check_both(&out, &secrets, Some(key_rel), &what);
        let (_, with_spec) = run(kpki().arg("check").arg(&out).arg("--spec").arg(&spec));
        assert_no_run(&with_spec, &secrets, &what);
        assert!(with_spec.contains(key_rel), "{what}: {with_spec}");
        let (code, issue) = run(kpki().args(["issue", "--spec"]).arg(&spec));
        assert_no_run(&issue, &secrets, &format!("issue over {what}"));
        assert_ne!(
            code,
            Some(0),
            "{what}: issue accepted a damaged key: {issue}"
        );
        assert!(issue.contains("apiserver.key"), "{what}: {issue}");
    }
    // Kubeconfigs embed client keys: damaged YAML or key data is never quoted.
    for (layout, conf_rel) in [("kubeadm", "admin.conf"), ("kpki", "cluster/admin.conf")] {
        let base: PathBuf = if layout == "kubeadm" {
            existing_pki().join("kubeadm")
        } else {
            keep.clone()
        };
        let conf = std::fs::read_to_string(base.join(conf_rel)).unwrap();
        let value = conf
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("client-key-data:"))
            .unwrap()
            .trim()
            .to_owned();
        let pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&value)
                .unwrap(),
        )
        .unwrap();
        let mut secrets = body_lines(&pem);
        secrets.push(value);
        for (what, damaged) in kubeconfig_damages(&conf) {
            let what = format!("{layout} {conf_rel}: {what}");
            let d = if layout == "kubeadm" {
                kubeadm_copy()
            } else {
                let t = tempfile::tempdir().unwrap();
                cp(&keep, &t.path().join("out"));
                t
            };
            let dir = if layout == "kubeadm" {
                d.path().to_path_buf()
            } else {
                d.path().join("out")
            };
            std::fs::write(dir.join(conf_rel), &damaged).unwrap();
            let (_, text) = run(kpki().arg("check").arg(&dir));
            assert_no_run(&text, &secrets, &what);
            let (_, json) = run(kpki().arg("check").arg(&dir).args(["--format", "json"]));
            assert_no_run(&json, &secrets, &what);
            if layout == "kpki" {
                cp(&dir, &out);
                let (_, issue) = run(kpki().args(["issue", "--spec"]).arg(&spec));
                assert_no_run(&issue, &secrets, &format!("issue over {what}"));
            }
        }
    }
}

fn mkfifo(p: &Path) {
    let ok = Command::new(tool("mkfifo")).arg(p).status().unwrap();
    assert!(ok.success(), "mkfifo {}", p.display());
}

#[test]
fn loops_fifos_devices_and_huge_files_are_findings_not_hangs() {
    let (tmp, _spec, out) = issued();
    let pki = out.join("cluster/pki");
    // Two symlinked directory loops.
    std::os::unix::fs::symlink(".", pki.join("loopA")).unwrap();
    std::os::unix::fs::symlink("..", pki.join("loopB")).unwrap();
    // A way out to the whole file system.
    std::os::unix::fs::symlink("/", pki.join("slash")).unwrap();
    // A FIFO as a *.crt, and as the certificate-authority file two
    // kubeconfigs name (one inside the directory, one outside).
    mkfifo(&pki.join("fifo.crt"));
    mkfifo(&out.join("cluster/fifo-ca.crt"));
    let outside = tmp.path().join("outside-ca.crt");
    mkfifo(&outside);
    for (conf, ca) in [
        ("cluster/admin.conf", "fifo-ca.crt".to_owned()),
        ("cluster/scheduler.conf", outside.display().to_string()),
    ] {
        let text = std::fs::read_to_string(out.join(conf)).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("certificate-authority-data:"))
            .unwrap();
        let indent = &line[..line.len() - line.trim_start().len()];
        let text = text.replace(line, &format!("{indent}certificate-authority: {ca}"));
        std::fs::write(out.join(conf), text).unwrap();
    }
    // /dev/zero behind a certificate's name, a 1 GiB sparse certificate, and
    // a file the layout reads (sa.pub) grown to 1 GiB.
    std::os::unix::fs::symlink("/dev/zero", pki.join("zero.crt")).unwrap();
    for f in ["big.crt", "sa.pub"] {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(pki.join(f))
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
    }
    // Directories nested deeper than the walk goes.
    let mut deep = out.join("cluster/deep");
    for i in 0..20 {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();

    // Killed after 30 s (exit status 137 then), memory measured by GNU time.
    let start = Instant::now();
    let o = Command::new(tool("time"))
        .arg("-v")
        .arg(tool("timeout"))
        .args(["-s", "KILL", "30"])
        .arg(assert_cmd::cargo::cargo_bin("kpki"))
        .arg("check")
        .arg(&out)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        elapsed < Duration::from_secs(30),
        "took {elapsed:?}: {stderr}"
    );
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let rss_kb: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .unwrap_or_else(|| panic!("no RSS in {stderr}"))
        .trim()
        .parse()
        .unwrap();
    assert!(rss_kb < 200 * 1024, "check used {rss_kb} KiB");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    let f001 = |file: &str| -> String {
        findings
            .iter()
            .find(|f| {
                f["code"] == "F001" && f["files"].as_array().unwrap().iter().any(|x| x == file)
            })
            .unwrap_or_else(|| panic!("no F001 on {file}: {:#}", doc["findings"]))["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (file, says) in [
        (
            "cluster/pki/loopA",
            "directory loop: already visited as cluster/pki",
        ),
        (
            "cluster/pki/loopB",
            "directory loop: already visited as cluster",
        ),
        ("cluster/pki/slash", "outside the checked directory (/)"),
        ("cluster/pki/fifo.crt", "not a regular file (a FIFO)"),
        ("cluster/fifo-ca.crt", "not a regular file (a FIFO)"),
        (
            "cluster/pki/zero.crt",
            "not a regular file (a character device)",
        ),
        ("cluster/pki/big.crt", "larger than the 4 MiB cap"),
        ("cluster/pki/sa.pub", "larger than the 4 MiB cap"),
        (
            // 17 levels below the checked directory.
            "cluster/deep/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/d13/d14",
            "deeper than 16 levels",
        ),
    ] {
        let m = f001(file);
        assert!(m.starts_with(file) && m.contains(says), "{file}: {m}");
    }
    let m = f001("cluster/scheduler.conf");
    assert!(
        m.contains(&outside.display().to_string()) && m.contains("not a regular file (a FIFO)"),
        "{m}"
    );
    // The rest of the directory was still audited.
    assert!(
        doc["certificates"].as_array().unwrap().len() >= 10,
        "{:#}",
        doc["certificates"]
    );
}
