//! `kpki check` on real-world installation trees (issue 11, "Fixtures"):
//! the install roots that `fixtures/installs/*/make.sh` build from the
//! seeds' own cfssl JSON and commands, a kubeadm-made tree and a
//! systemd-unit binary install. Each fixture's `expected.toml` lists every
//! certificate file, the number of CAs, each fault (code, file) and the exit
//! status. Every check of a fixture is run and all failures are reported
//! together, with the JSON, so that a failing run is a complete to-do list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{installs, kpki, run};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Expected {
    exit: i32,
    cas: usize,
    certificates: Vec<String>,
    #[serde(default)]
    fault: Vec<Fault>,
}

#[derive(Deserialize)]
struct Fault {
    code: String,
    #[serde(default)]
    or_codes: Vec<String>,
    severity: String,
    file: String,
    #[serde(default)]
    planted: bool,
    why: String,
}

fn expected(name: &str) -> Expected {
    let p = common::root()
        .join("fixtures/installs")
        .join(name)
        .join("expected.toml");
    toml::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `kpki check DIR --format json`: (exit status, document, stderr); the
/// document is `None` when stdout is not JSON (stdout is then in the error).
fn check_json(dir: &Path) -> (Option<i32>, Result<Value, String>, String) {
    let o = kpki()
        .arg("check")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "stdout is not JSON ({e}); exit {:?}; stdout: {:?}; stderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            stderr.trim()
        )
    });
    (o.status.code(), v, stderr)
}

/// Every file under `dir` (relative path -> bytes); a symlink is recorded as
/// `-> target` and never followed (kubeadm-etc holds the kubelet's absolute,
/// dangling-outside-the-root `kubelet-client-current.pem` link).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, m: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                m.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else if meta.is_dir() {
                walk(root, &p, m);
            } else {
                m.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = std::collections::BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

fn findings(doc: &Value) -> Vec<Value> {
    doc["findings"].as_array().cloned().unwrap_or_default()
}

fn files_of(v: &Value) -> Vec<String> {
    v["files"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every assertion of the acceptance list for one fixture; returns the
/// failures (empty when the audit does what expected.toml says).
fn audit(name: &str) -> Vec<String> {
    let exp = expected(name);
    let dir = installs(name);
    let before = tree(&dir);
    let (code, doc, stderr) = check_json(&dir);
    let mut fails = Vec::new();
    // Without JSON every other check still runs (against an empty
    // document), so that the failure lists everything that is missing.
    let doc = doc.unwrap_or_else(|e| {
        fails.push(format!("kpki check {} --format json: {e}", dir.display()));
        Value::Null
    });
    let found = findings(&doc);

    // 1. Every expected fault is reported with its code on its file.
    for f in &exp.fault {
        let codes: Vec<&str> = std::iter::once(f.code.as_str())
            .chain(f.or_codes.iter().map(String::as_str))
            .collect();
        let hit = found.iter().any(|x| {
            x["code"].as_str().is_some_and(|c| codes.contains(&c)) && files_of(x).contains(&f.file)
        });
        if !hit {
            fails.push(format!(
                "{} ({}{}) not reported on {} -- {}",
                codes.join(" or "),
                f.severity,
                if f.planted {
                    ", planted"
                } else {
                    ", the seed's own"
                },
                f.file,
                f.why
            ));
        }
    }

    // 2. No error-severity finding on a file that carries no expected error
    //    (a finding may also name context files, e.g. the CA of a leaf: it
    //    is expected when one of its files carries an expected error).
    let error_files: BTreeSet<&str> = exp
        .fault
        .iter()
        .filter(|f| f.severity == "error")
        .map(|f| f.file.as_str())
        .collect();
    for x in found.iter().filter(|x| x["severity"] == "error") {
        let fs = files_of(x);
        if !fs.iter().any(|f| error_files.contains(f.as_str())) {
            fails.push(format!(
                "unexpected error {} on {:?}: {}",
                x["code"].as_str().unwrap_or("?"),
                fs,
                x["message"].as_str().unwrap_or("")
            ));
        }
    }

    // 3. Every certificate file appears in the output (certificates' or
    //    findings' files).
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for c in doc["certificates"].as_array().into_iter().flatten() {
        seen.extend(files_of(c));
    }
    for x in &found {
        seen.extend(files_of(x));
    }
    for c in &exp.certificates {
        if !seen.contains(c) {
            fails.push(format!(
                "certificate file {c} appears nowhere in the output"
            ));
        }
    }

    // 4. The number of distinct CAs recognised.
    let cas: BTreeSet<String> = doc["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["kind"] == "ca")
        .map(|c| format!("{}/{}", c["common_name"], c["serial"]))
        .collect();
    if cas.len() != exp.cas {
        fails.push(format!(
            "{} CAs recognised ({:?}), expected {}",
            cas.len(),
            cas,
            exp.cas
        ));
    }

    // 5. The exit status.
    if code != Some(exp.exit) {
        fails.push(format!(
            "exit status {code:?}, expected {} (stderr: {})",
            exp.exit,
            stderr.trim()
        ));
    }

    // check never writes.
    if tree(&dir) != before {
        fails.push("kpki check modified the tree".to_owned());
    }
    if !fails.is_empty() {
        fails.push(format!("JSON output:\n{doc:#}"));
    }
    fails
}

fn assert_audit(name: &str) {
    let fails = audit(name);
    assert!(
        fails.is_empty(),
        "kpki check on fixtures/installs/{name} ({} failure(s)):\n- {}",
        fails.len() - 1,
        fails.join("\n- ")
    );
}

#[test]
fn seed_000_one_ca_per_trust_domain_admin_without_client_auth_and_scheduler_cn() {
    assert_audit("seed-000");
}

#[test]
fn seed_001_operator_install_apiserver_without_the_cluster_local_name() {
    assert_audit("seed-001");
}

#[test]
fn seed_002_client_profile_without_client_auth_and_endpoints_outside_the_sans() {
    assert_audit("seed-002");
}

#[test]
fn seed_003_two_node_install_trailing_dot_san() {
    assert_audit("seed-003");
}

#[test]
fn kubeadm_tree_with_static_pod_manifests_is_sound() {
    assert_audit("kubeadm-etc");
}

#[test]
fn systemd_unit_install_with_environment_file_is_sound() {
    assert_audit("systemd-units");
}

/// A copy of a fixture tree (symlinks kept as links) in a fresh temp dir.
fn copy_tree(name: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(Command::new("cp")
        .arg("-a")
        .arg(installs(name).join("."))
        .arg(t.path()));
    assert!(ok, "cp -a failed: {out}{err}");
    t
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        s.matches(from).count(),
        1,
        "{from} once in {}",
        path.display()
    );
    std::fs::write(path, s.replace(from, to)).unwrap();
}

/// T001 is reported with one of `files` among its files.
fn assert_t001_on(dir: &Path, files: &[&str]) {
    let (code, doc, _) = check_json(dir);
    let doc = doc.unwrap_or_else(|e| panic!("kpki check {} --format json: {e}", dir.display()));
    let hit = findings(&doc)
        .iter()
        .any(|x| x["code"] == "T001" && files_of(x).iter().any(|f| files.contains(&f.as_str())));
    assert!(
        hit,
        "no T001 naming {files:?} (exit {code:?}); JSON output:\n{doc:#}"
    );
    assert_eq!(code, Some(1), "an error exits 1; JSON output:\n{doc:#}");
}

#[test]
fn kubeadm_manifest_client_ca_pointing_at_the_front_proxy_ca_is_t001_on_the_manifest() {
    let t = copy_tree("kubeadm-etc");
    replace_in(
        &t.path()
            .join("etc/kubernetes/manifests/kube-apiserver.yaml"),
        "    - --client-ca-file=/etc/kubernetes/pki/ca.crt\n",
        "    - --client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt\n",
    );
    assert_t001_on(t.path(), &["etc/kubernetes/manifests/kube-apiserver.yaml"]);
}

#[test]
fn unit_environment_file_client_ca_pointing_at_the_front_proxy_ca_is_t001_on_the_unit() {
    let t = copy_tree("systemd-units");
    replace_in(
        &t.path().join("etc/kubernetes/apiserver.env"),
        "--client-ca-file=/opt/kube-apiserver/ca.pem \\\n",
        "--client-ca-file=/opt/kube-apiserver/front-proxy-ca.pem \\\n",
    );
    assert_t001_on(
        t.path(),
        &[
            "etc/kubernetes/apiserver.env",
            "etc/systemd/system/kube-apiserver.service",
        ],
    );
}

/// expected.toml stays true to what make.sh writes: its certificate list is
/// exactly the files holding a certificate (PEM or a kubeconfig's embedded
/// client certificate), and every fault names one of those files.
#[test]
fn expected_toml_lists_exactly_the_certificate_files_make_sh_writes() {
    for name in [
        "seed-000",
        "seed-001",
        "seed-002",
        "seed-003",
        "kubeadm-etc",
        "systemd-units",
    ] {
        let exp = expected(name);
        let dir = installs(name);
        let on_disk: BTreeSet<String> = tree(&dir)
            .into_iter()
            .filter(|(_, b)| {
                let s = String::from_utf8_lossy(b);
                s.contains("-----BEGIN CERTIFICATE-----") || s.contains("client-certificate-data:")
            })
            .map(|(p, _)| p)
            .collect();
        let listed: BTreeSet<String> = exp.certificates.iter().cloned().collect();
        assert_eq!(listed, on_disk, "{name}: expected.toml certificates");
        for f in &exp.fault {
            assert!(
                listed.contains(&f.file),
                "{name}: fault on {} not a certificate file",
                f.file
            );
            assert!(
                ["error", "warning", "info"].contains(&f.severity.as_str()),
                "{name}: severity {}",
                f.severity
            );
        }
        let errors = exp.fault.iter().any(|f| f.severity == "error");
        assert_eq!(
            exp.exit,
            i32::from(errors),
            "{name}: exit status vs error faults"
        );
    }
}
