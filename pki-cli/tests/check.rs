//! `kpki check` on directories made by openssl scripts (kubeadm and cfssl
//! layouts, fixtures/existing-pki/regen.sh) with one planted fault per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{existing_pki, kpki, snapshot};
use serde_json::Value;

fn check_json(dir: &Path) -> (Option<i32>, Value) {
    let o = kpki()
        .arg("check")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), v)
}

/// The residual time the table shows for a notAfter (RFC 3339), rounded to
/// the nearest unit as documented: years from 365 days, days from one day.
fn residual_of(not_after: &str) -> String {
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .unwrap();
    let secs = (t - time::OffsetDateTime::now_utc()).as_seconds_f64();
    let days = (secs / 86_400.0).round();
    if days >= 365.0 {
        format!("{:.0}y", (secs / (365.0 * 86_400.0)).round())
    } else {
        format!("{days:.0}d")
    }
}

fn assert_reported(doc: &Value, code: &str, file: &str) {
    let found = doc["findings"].as_array().unwrap().iter().any(|f| {
        f["code"] == code
            && f["files"]
                .as_array()
                .is_some_and(|fs| fs.iter().any(|x| x == file))
    });
    assert!(
        found,
        "{code} on {file} not reported; findings: {:#}",
        doc["findings"]
    );
}

#[test]
fn kubeadm_layout_faults_are_each_reported_with_code_and_file() {
    let dir = existing_pki().join("kubeadm");
    let before = snapshot(&dir);
    let (code, doc) = check_json(&dir);
    assert_eq!(code, Some(1));
    for (code, file) in [
        ("N002", "pki/apiserver.crt"),
        ("U003", "pki/etcd/server.crt"),
        ("T001", "pki/front-proxy-client.crt"),
        ("C003", "pki/etcd/healthcheck-client.crt"),
        ("T007", "pki/apiserver-etcd-client.crt"),
        ("T006", "pki/sa.key"),
        ("I003", "admin.conf"),
        ("I001", "scheduler.conf"),
    ] {
        assert_reported(&doc, code, file);
    }
    // Sound files get no finding (I003 is not raised for the break-glass super-admin).
    let flagged: Vec<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["files"].as_array().cloned().unwrap_or_default())
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    for sound in [
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "pki/etcd/peer.crt",
        "pki/apiserver-kubelet-client.crt",
    ] {
        assert!(
            !flagged.contains(&sound.to_owned()),
            "{sound} flagged: {:#}",
            doc["findings"]
        );
    }
    assert_eq!(snapshot(&dir), before, "check never writes");
    // The text table names the file and the residual time of each certificate.
    let o = kpki().arg("check").arg(&dir).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("pki/etcd/healthcheck-client.crt") && text.contains("expired"),
        "{text}"
    );
    // The residual time of apiserver.crt, computed from the certificate's own
    // notAfter (never from the day the fixture was made), is on its row.
    let not_after = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["files"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "pki/apiserver.crt"))
        })
        .and_then(|c| c["not_after"].as_str())
        .expect("apiserver.crt listed with its notAfter");
    let expected = residual_of(not_after);
    let row = text
        .lines()
        .find(|l| l.contains("pki/apiserver.crt"))
        .expect("apiserver.crt row");
    assert!(
        row.contains(&format!(" {expected} ")),
        "{expected} not in {row}"
    );
}

#[test]
fn cfssl_layout_faults_are_reported() {
    let dir = existing_pki().join("cfssl");
    let before = snapshot(&dir);
    let (code, doc) = check_json(&dir);
    assert_eq!(code, Some(1));
    for (code, file) in [
        ("U003", "etcd-server.pem"),
        ("N002", "apiserver.pem"),
        ("U006", "apiserver-client-admin.pem"),
        ("T001", "apiserver-etcd-client.pem"),
    ] {
        assert_reported(&doc, code, file);
    }
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn unparsable_files_are_findings_not_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubernetes");
    let src = existing_pki().join("kubeadm");
    for (rel, bytes) in snapshot(&src) {
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let crt = std::fs::read_to_string(dir.join("pki/apiserver.crt")).unwrap();
    std::fs::write(dir.join("pki/apiserver.crt"), &crt[..crt.len() / 2]).unwrap();
    std::fs::write(
        dir.join("pki/front-proxy-ca.crt"),
        [0x30u8, 0x82, 0xff, 0xff, 0x00, 0x01],
    )
    .unwrap();
    std::fs::write(
        dir.join("scheduler.conf"),
        "apiVersion: v1\nkind: Config\nusers: [",
    )
    .unwrap();
    let o = kpki()
        .arg("check")
        .arg(&dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(o.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in [
        "pki/apiserver.crt",
        "pki/front-proxy-ca.crt",
        "scheduler.conf",
    ] {
        assert_reported(&doc, "F001", f);
    }
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("PRIVATE KEY"), "no key material in output");
}

#[test]
fn fresh_kpki_output_with_spec_reports_drift_after_a_spec_change() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    let text = "profile = \"kubeadm\"\n[cluster]\nendpoint = \"lb.example.com\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n";
    std::fs::write(&spec, text).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    std::fs::write(
        &spec,
        text.replace(
            "endpoint = \"lb.example.com\"",
            "endpoint = \"lb.example.com\"\nextra_sans = [\"api.example.org\"]",
        ),
    )
    .unwrap();
    let o = kpki()
        .arg("check")
        .arg(tmp.path().join("out"))
        .arg("--spec")
        .arg(&spec)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "D003")
        .expect("drift reported");
    assert!(
        d["message"].as_str().unwrap().contains("api.example.org"),
        "{d:#}"
    );
    std::fs::remove_file(tmp.path().join("out/cluster/pki/front-proxy-client.crt")).unwrap();
    std::fs::write(tmp.path().join("out/cluster/pki/stale.crt"), "x").unwrap();
    let o = kpki()
        .arg("check")
        .arg(tmp.path().join("out"))
        .arg("--spec")
        .arg(&spec)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let codes: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"D001") && codes.contains(&"D002"),
        "{codes:?}"
    );
}
