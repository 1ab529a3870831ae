//! `kpki renew` and `kpki check` on kpki's own output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kpki, manifest, run, snapshot, tool};
use serde_json::Value;

const SPEC: &str = r#"
profile = "kubeadm"
[cluster]
endpoint = "lb.example.com:6443"
[[control_plane]]
name = "cp1"
address = "10.0.0.10"
[[worker]]
name = "w1"
address = "10.0.0.20"
"#;

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("kpki.toml");
    std::fs::write(&spec, SPEC).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let out = dir.path().join("out");
    (dir, spec, out)
}

fn serials(m: &Value) -> BTreeMap<String, String> {
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "leaf")
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["serial"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check_clean(dir: &Path, spec: Option<&Path>) {
    let mut c = kpki();
    c.arg("check").arg(dir);
    if let Some(s) = spec {
        c.arg("--spec").arg(s);
    }
    let o = c.args(["--format", "json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let errors: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(o.status.code(), Some(0));
    assert!(doc["certificates"].as_array().unwrap().len() >= 10);
}

#[test]
fn fresh_issue_checks_clean_with_and_without_spec() {
    let (_d, spec, out) = setup();
    let before = snapshot(&out);
    check_clean(&out, Some(&spec));
    check_clean(&out, None);
    check_clean(&out.join("cluster"), None);
    check_clean(&out.join("cluster/pki"), None);
    assert_eq!(snapshot(&out), before, "check never writes");
}

#[test]
fn renew_within_400d_reissues_every_leaf_keeping_keys_and_cas() {
    let (_d, spec, out) = setup();
    let before = snapshot(&out);
    let old = serials(&manifest(&out));
    let o = kpki()
        .args(["renew", "--within", "400d", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = snapshot(&out);
    let new = serials(&manifest(&out));
    assert_eq!(old.len(), new.len());
    for (id, s) in &old {
        assert_ne!(&new[id], s, "{id} was not re-issued");
    }
    for (path, bytes) in &before {
        let is_ca = [
            "ca.crt",
            "ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
        ]
        .iter()
        .any(|f| path.ends_with(f));
        if is_ca || path.ends_with(".key") {
            assert_eq!(&after[path], bytes, "{path} must not change");
        }
    }
    // Kubeconfigs embedding renewed certs were rewritten; their keys kept.
    assert_ne!(after["cluster/admin.conf"], before["cluster/admin.conf"]);
    let m = manifest(&out);
    assert_eq!(m["renewals"].as_array().unwrap().len(), 1);
    assert!(m["renewals"][0]["ids"].as_array().unwrap().len() >= old.len());
    check_clean(&out, Some(&spec));
    let pki = out.join("cluster/pki");
    let (ok, msg, err) = run(Command::new(tool("openssl"))
        .args(["verify", "-CAfile"])
        .arg(pki.join("ca.crt"))
        .args(["-purpose", "sslserver"])
        .arg(pki.join("apiserver.crt")));
    assert!(ok, "{msg}{err}");
    // Idempotent afterwards.
    let o = kpki()
        .args(["renew", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        snapshot(&out),
        after,
        "renew --within 30d on fresh certs changes nothing"
    );
}

#[test]
fn renew_new_keys_changes_leaf_keys_only() {
    let (_d, spec, out) = setup();
    let before = snapshot(&out);
    kpki()
        .args(["renew", "--all", "--new-keys", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let after = snapshot(&out);
    assert_ne!(
        after["cluster/pki/apiserver.key"],
        before["cluster/pki/apiserver.key"]
    );
    assert_eq!(after["cluster/pki/ca.key"], before["cluster/pki/ca.key"]);
    assert_eq!(after["cluster/pki/sa.key"], before["cluster/pki/sa.key"]);
    check_clean(&out, Some(&spec));
}

#[test]
fn renew_dry_run_writes_nothing() {
    let (_d, spec, out) = setup();
    let before = snapshot(&out);
    let o = kpki()
        .args(["renew", "--all", "--dry-run", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("reissue apiserver@cp1"));
    assert_eq!(snapshot(&out), before);
}
