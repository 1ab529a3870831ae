//! The kubelet TLS-bootstrap token: it expires (kubeadm's 24 h by default),
//! is kept while valid, re-minted once expired, and is written only when
//! some kubelet joins by TLS bootstrap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::kpki;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const WITH_WORKER: &str = "profile = \"kubeadm\"\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\
    [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n\
    [[worker]]\nname = \"w1\"\naddress = \"10.0.0.20\"\n";

fn secret(out: &Path) -> Value {
    let p = out.join("cluster/manifests/bootstrap-token.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn expiration(s: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(s["stringData"]["expiration"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn libfaketime() -> String {
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"] {
        let p = format!("{dir}/faketime/libfaketime.so.1");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("libfaketime is required: run scripts/install-test-deps");
}

#[test]
fn the_token_expires_is_kept_while_valid_and_re_minted_once_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(&spec, WITH_WORKER).unwrap();
    let out = tmp.path().join("out");
    let before = OffsetDateTime::now_utc();
    kpki().arg("issue").arg(&spec).assert().success();
    let after = OffsetDateTime::now_utc();
    let s1 = secret(&out);
    let e1 = expiration(&s1);
    let day = time::Duration::hours(24);
    assert!(
        e1 >= before + day - time::Duration::seconds(1)
            && e1 <= after + day + time::Duration::seconds(1),
        "expiration {e1} is not 24 h after the run ({before}..{after})"
    );
    // A re-run keeps token and expiration.
    kpki().arg("issue").arg(&spec).assert().success();
    assert_eq!(secret(&out), s1);
    // A day and an hour later, the token has expired: a new one is minted,
    // and bootstrap-kubelet.conf carries it.
    let o = kpki()
        .arg("issue")
        .arg(&spec)
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "+25h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s2 = secret(&out);
    assert_ne!(s2["stringData"]["token-id"], s1["stringData"]["token-id"]);
    assert!(expiration(&s2) > e1 + time::Duration::hours(24));
    let boot = std::fs::read_to_string(out.join("cluster/bootstrap-kubelet.conf")).unwrap();
    let id = s2["stringData"]["token-id"].as_str().unwrap();
    assert!(boot.contains(&format!("token: {id}.")), "{boot}");
    let worker_boot =
        std::fs::read_to_string(out.join("nodes/w1/etc/kubernetes/bootstrap-kubelet.conf"))
            .unwrap();
    assert_eq!(worker_boot, boot);
}

#[test]
fn token_ttl_zero_warns_and_sets_no_expiration() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(
        &spec,
        format!("{WITH_WORKER}[bootstrap]\ntoken_ttl = \"0\"\n"),
    )
    .unwrap();
    let o = kpki().arg("issue").arg(&spec).output().unwrap();
    assert!(o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("warning") && e.contains("never expires"), "{e}");
    assert!(secret(&tmp.path().join("out"))["stringData"]["expiration"].is_null());
    // Any other lifetime is taken as written.
    std::fs::write(
        &spec,
        format!("{WITH_WORKER}[bootstrap]\ntoken_ttl = \"2h\"\n"),
    )
    .unwrap();
    let out2 = tmp.path().join("out2");
    let before = OffsetDateTime::now_utc();
    kpki()
        .arg("issue")
        .arg(&spec)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    let e = expiration(&secret(&out2));
    assert!(e > before + time::Duration::minutes(119) && e < before + time::Duration::minutes(125));
}

#[test]
fn no_tls_bootstrap_no_token_and_no_bootstrap_rbac() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    // Control-plane kubelets have certificates of their own: nobody bootstraps.
    std::fs::write(
        &spec,
        "profile = \"kubeadm\"\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
    )
    .unwrap();
    kpki().arg("issue").arg(&spec).assert().success();
    let out = tmp.path().join("out");
    let manifests: Vec<String> = std::fs::read_dir(out.join("cluster/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for absent in [
        "bootstrap-token.yaml",
        "rbac-kubelet-bootstrap.yaml",
        "rbac-node-autoapprove-bootstrap.yaml",
    ] {
        assert!(
            !manifests.contains(&absent.to_owned()),
            "{absent}: {manifests:?}"
        );
    }
    assert!(!out.join("cluster/bootstrap-kubelet.conf").exists());
    // The kubelet client-cert rotation approval stays (rotateCertificates).
    assert!(manifests.contains(&"rbac-node-autoapprove-certificate-rotation.yaml".to_owned()));
}
