//! `kpki issue` checked by real consumers: openssl verifies every chain with
//! the purpose of its role; re-runs are byte-identical; changes re-issue
//! only what they affect; bad existing files stop the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kpki, run, tool};
use serde_json::Value;

const SPEC: &str = r#"
profile = "kubeadm"
[cluster]
service_cidr = "10.100.0.0/16"
endpoint = "lb.example.com:6443"
[crypto]
algorithm = "ALG"
[[control_plane]]
name = "cp1"
address = "10.0.0.10"
[[control_plane]]
name = "cp2"
address = "10.0.0.11"
[[etcd]]
name = "etcd1"
address = "10.0.1.10"
[[worker]]
name = "w1"
address = "10.0.2.10"
"#;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn spec(&self) -> PathBuf {
        self.dir.path().join("kpki.toml")
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.out().join(rel)
    }
    fn plan(&self) -> Value {
        let o = kpki()
            .args(["plan", "--format", "json", "--spec"])
            .arg(self.spec())
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    }
    fn issue(&self) -> std::process::Output {
        kpki()
            .args(["issue", "--spec"])
            .arg(self.spec())
            .output()
            .unwrap()
    }
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        walk(&self.out(), &self.out(), &mut m);
        m
    }
}

fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, m);
        } else {
            m.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
}

fn issued(spec: &str) -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(pki.spec(), spec).unwrap();
    let o = pki.issue();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pki
}

fn openssl(args: &[&str]) -> (bool, String, String) {
    run(Command::new(tool("openssl")).args(args))
}

fn pubkey_of_cert(p: &Path) -> String {
    let (ok, out, err) = openssl(&["x509", "-in", p.to_str().unwrap(), "-noout", "-pubkey"]);
    assert!(ok, "{err}");
    out
}

fn pubkey_of_key(p: &Path) -> String {
    let (ok, out, err) = openssl(&["pkey", "-in", p.to_str().unwrap(), "-pubout"]);
    assert!(ok, "{}: {err}", p.display());
    out
}

/// Verifies every leaf of the plan with openssl, by role; returns how many were checked.
fn verify_all(pki: &Pki) -> usize {
    let plan = pki.plan();
    let certs = plan["certificates"].as_array().unwrap();
    let cluster_file = |c: &Value, ext: &str| -> Option<PathBuf> {
        // cluster/ holds one node's set; the other nodes' certs are in their bundles.
        c["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .find(|f| f.ends_with(ext))
            .map(|f| pki.path(f))
    };
    let mut checked = 0;
    for c in certs.iter().filter(|c| c["kind"] == "leaf") {
        let (Some(crt), Some(key)) = (cluster_file(c, ".crt"), cluster_file(c, ".key")) else {
            continue;
        };
        let issuer = certs.iter().find(|x| x["id"] == c["issuer"]).unwrap();
        let ca = cluster_file(issuer, ".crt").unwrap();
        let purposes: &[&str] = match c["role"].as_str().unwrap() {
            "server" => &["sslserver"],
            "client" => &["sslclient"],
            _ => &["sslserver", "sslclient"],
        };
        for p in purposes {
            let (ok, out, err) = openssl(&[
                "verify",
                "-x509_strict",
                "-CAfile",
                ca.to_str().unwrap(),
                "-purpose",
                p,
                crt.to_str().unwrap(),
            ]);
            assert!(ok, "{} -purpose {p}: {out}{err}", c["id"]);
        }
        if c["role"] == "client" {
            let (ok, ..) = openssl(&[
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                "-purpose",
                "sslserver",
                crt.to_str().unwrap(),
            ]);
            assert!(!ok, "{} is a client cert but verifies as a server", c["id"]);
        }
        assert_eq!(
            pubkey_of_cert(&crt),
            pubkey_of_key(&key),
            "{} does not match its key",
            c["id"]
        );
        checked += 1;
    }
    checked
}

fn kubeadm_checks(alg: &str) {
    let pki = issued(&SPEC.replace("ALG", alg));
    let n = verify_all(&pki);
    assert!(n >= 8, "only {n} leaves verified");
    let pki_dir = pki.path("cluster/pki");
    // etcd server and peer: both purposes (checked above by role); the front proxy client is not a cluster-CA client.
    let (ok, ..) = openssl(&[
        "verify",
        "-CAfile",
        pki_dir.join("ca.crt").to_str().unwrap(),
        "-purpose",
        "sslclient",
        pki_dir.join("front-proxy-client.crt").to_str().unwrap(),
    ]);
    assert!(
        !ok,
        "front-proxy-client must not verify against the cluster CA"
    );
    let (ok, ..) = openssl(&[
        "verify",
        "-CAfile",
        pki_dir.join("front-proxy-ca.crt").to_str().unwrap(),
        "-purpose",
        "sslclient",
        pki_dir.join("front-proxy-client.crt").to_str().unwrap(),
    ]);
    assert!(ok);
    // sa.pub is the public half of sa.key.
    assert_eq!(
        std::fs::read_to_string(pki_dir.join("sa.pub")).unwrap(),
        pubkey_of_key(&pki_dir.join("sa.key"))
    );
    // The apiserver cert carries the first service IP of the spec's CIDR.
    let (_, text, _) = openssl(&[
        "x509",
        "-in",
        pki_dir.join("apiserver.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("IP Address:10.100.0.1"), "{text}");
    assert!(!text.contains("10.96.0.1"));
    assert!(
        text.contains("DNS:lb.example.com")
            && text.contains("DNS:kubernetes.default.svc.cluster.local")
    );
    let ca_text = openssl(&[
        "x509",
        "-in",
        pki_dir.join("ca.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ])
    .1;
    assert!(
        ca_text.contains("CA:TRUE") && ca_text.contains("critical"),
        "{ca_text}"
    );
    if alg == "ecdsa-p384" {
        assert!(ca_text.contains("ecdsa-with-SHA384"), "{ca_text}");
    } else {
        assert!(ca_text.to_lowercase().contains("sha256"), "{ca_text}");
    }
    assert_eq!(
        text.contains("Key Encipherment"),
        alg.starts_with("rsa"),
        "keyEncipherment only on RSA leaves"
    );
}

#[test]
fn kubeadm_set_verifies_with_openssl_p256() {
    kubeadm_checks("ecdsa-p256");
}

#[test]
fn kubeadm_set_verifies_with_openssl_p384() {
    kubeadm_checks("ecdsa-p384");
}

#[test]
fn kubeadm_set_verifies_with_openssl_rsa3072() {
    kubeadm_checks("rsa-3072");
}

#[test]
fn isolated_seed000_verifies_with_openssl() {
    let spec = std::fs::read_to_string(common::root().join("fixtures/specs/seed000.toml"))
        .unwrap()
        .replace("rsa-2048", "ecdsa-p256");
    let pki = issued(&spec);
    assert!(verify_all(&pki) >= 10);
}

#[test]
fn rerun_changes_no_byte_and_modes_are_tight() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    let before = pki.snapshot();
    let o = pki.issue();
    assert!(o.status.success());
    assert_eq!(pki.snapshot(), before, "a re-run changed files");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("0 issued, 0 re-issued"), "{stdout}");
    for (rel, bytes) in &before {
        let meta = std::fs::metadata(pki.path(rel)).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let text = String::from_utf8_lossy(bytes);
        // Kubeconfigs are 0600; systemd drop-ins (flags only) are not secret.
        if text.contains("PRIVATE KEY") || (rel.ends_with(".conf") && !rel.contains("/systemd/")) {
            assert_eq!(mode, 0o600, "{rel}");
        }
        let parent = std::fs::metadata(pki.path(rel).parent().unwrap()).unwrap();
        // Keys live in 0700 dirs; bundle dirs that mirror a node's /etc are 0755
        // so that `rsync -a nodes/<n>/ /` does not make the node's /etc private.
        let expected = if rel.starts_with("nodes/") && !rel.contains("/pki/") {
            0o755
        } else {
            0o700
        };
        assert_eq!(
            parent.permissions().mode() & 0o777,
            expected,
            "dir of {rel}"
        );
        if text.contains("PRIVATE KEY") {
            assert_eq!(
                parent.permissions().mode() & 0o777,
                0o700,
                "key dir of {rel}"
            );
        }
        assert!(!rel.contains(".kpki-tmp-"), "temp file left: {rel}");
    }
    assert!(!String::from_utf8_lossy(&o.stdout).contains("PRIVATE KEY"));
    assert_eq!(
        std::fs::metadata(pki.out()).unwrap().permissions().mode() & 0o777,
        0o700,
        "the output dir is private"
    );
    assert_eq!(
        std::fs::metadata(pki.path("nodes/cp1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755,
        "a bundle root is a node's /"
    );
}

#[test]
fn extra_san_reissues_only_the_apiserver_certs() {
    let spec = SPEC.replace("ALG", "ecdsa-p256");
    let pki = issued(&spec);
    let before = pki.snapshot();
    let ca_key = std::fs::read(pki.path("cluster/pki/ca.key")).unwrap();
    let key_before = std::fs::read(pki.path("cluster/pki/apiserver.key")).unwrap();
    std::fs::write(
        pki.spec(),
        spec.replace(
            "endpoint = \"lb.example.com:6443\"",
            "endpoint = \"lb.example.com:6443\"\nextra_sans = [\"api.example.org\"]",
        ),
    )
    .unwrap();
    let o = pki.issue();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = pki.snapshot();
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(!changed.is_empty());
    for c in &changed {
        assert!(
            // kubeadm's init.yaml carries the apiserver SANs (certSANs).
            c.ends_with("pki/apiserver.crt")
                || *c == "kpki-manifest.json"
                || *c == "cluster/kubeadm/init.yaml",
            "unexpected change: {c}"
        );
    }
    assert_eq!(
        changed
            .iter()
            .filter(|c| c.ends_with("apiserver.crt"))
            .count(),
        2 + 1,
        "cp1, cp2 bundles and cluster/"
    );
    assert_eq!(
        std::fs::read(pki.path("cluster/pki/ca.key")).unwrap(),
        ca_key
    );
    assert_eq!(
        std::fs::read(pki.path("cluster/pki/apiserver.key")).unwrap(),
        key_before,
        "same key, new cert"
    );
    let (_, text, _) = openssl(&[
        "x509",
        "-in",
        pki.path("cluster/pki/apiserver.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("DNS:api.example.org"));
    let (ok, ..) = openssl(&[
        "verify",
        "-CAfile",
        pki.path("cluster/pki/ca.crt").to_str().unwrap(),
        "-purpose",
        "sslserver",
        pki.path("cluster/pki/apiserver.crt").to_str().unwrap(),
    ]);
    assert!(ok, "re-issued under the same CA");
}

#[test]
fn truncated_ca_key_stops_the_run_naming_the_file() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    let key = pki.path("cluster/pki/ca.key");
    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, &text[..text.len() / 2]).unwrap();
    let before = pki.snapshot();
    let o = pki.issue();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cluster/pki/ca.key"), "{err}");
    assert!(!err.contains(&text[40..80]), "key bytes in the error");
    assert_eq!(pki.snapshot(), before, "nothing may change");
}

#[test]
fn a_cert_of_another_ca_stops_the_run() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    let other = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    for ext in ["crt", "key"] {
        std::fs::copy(
            other.path(&format!("cluster/pki/apiserver.{ext}")),
            pki.path(&format!("cluster/pki/apiserver.{ext}")),
        )
        .unwrap();
    }
    let before = pki.snapshot();
    let o = pki.issue();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cluster/pki/apiserver.crt") && err.contains("not signed by"),
        "{err}"
    );
    assert_eq!(pki.snapshot(), before);
}

#[test]
fn a_key_that_does_not_match_stops_the_run() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    std::fs::copy(
        pki.path("cluster/pki/front-proxy-client.key"),
        pki.path("cluster/pki/apiserver.key"),
    )
    .unwrap();
    let o = pki.issue();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not match"));
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("kpki.toml");
    std::fs::write(&spec, SPEC.replace("ALG", "ecdsa-p256")).unwrap();
    let o = kpki()
        .args(["issue", "--dry-run", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("would write cluster/pki/ca.key"));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn bundles_follow_least_privilege() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    let snap = pki.snapshot();
    let files = |node: &str| -> Vec<&String> {
        snap.keys()
            .filter(|k| k.starts_with(&format!("nodes/{node}/")))
            .collect()
    };
    // A worker gets no private key at all here (kubeadm workers join by bootstrap token).
    assert!(
        files("w1").iter().all(|f| !f.ends_with(".key")),
        "{:?}",
        files("w1")
    );
    assert!(files("w1").iter().any(|f| f.ends_with("pki/ca.crt")));
    // The external etcd member gets only etcd files.
    assert!(!files("etcd1").is_empty());
    // (and its systemd drop-in, which holds flags, no key).
    assert!(
        files("etcd1")
            .iter()
            .all(|f| f.contains("/pki/etcd/") || f.contains("/etc/systemd/")),
        "{:?}",
        files("etcd1")
    );
    assert!(!files("etcd1").iter().any(|f| f.ends_with("etcd/ca.key")));
    // The cluster CA key goes to control-plane nodes (the controller-manager signs with it), no other CA key does.
    assert!(snap.contains_key("nodes/cp1/etc/kubernetes/pki/ca.key"));
    assert!(!snap.contains_key("nodes/cp1/etc/kubernetes/pki/front-proxy-ca.key"));
    assert!(!snap.contains_key("nodes/cp1/etc/kubernetes/pki/etcd/ca.key"));
    // cluster/ holds the full set.
    for f in [
        "ca.key",
        "etcd/ca.key",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
        "apiserver.crt",
    ] {
        assert!(snap.contains_key(&format!("cluster/pki/{f}")), "{f}");
    }
    let manifest: Value = serde_json::from_slice(&snap["kpki-manifest.json"]).unwrap();
    let e = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "apiserver@cp2")
        .unwrap();
    assert_eq!(e["issuer"], "kubernetes-ca");
    assert_eq!(e["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn output_structure_is_the_same_whatever_the_thread_count() {
    let spec = SPEC.replace("ALG", "ecdsa-p256");
    let shape = |jobs: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kpki.toml");
        std::fs::write(&p, &spec).unwrap();
        kpki()
            .args(["issue", "--jobs", jobs, "--spec"])
            .arg(&p)
            .assert()
            .success();
        let out = dir.path().join("out");
        let m: Value =
            serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap())
                .unwrap();
        let entries: Vec<(String, String, Value)> = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_owned(),
                    e["issuer"].as_str().unwrap().to_owned(),
                    e["files"].clone(),
                )
            })
            .collect();
        // The bootstrap token id is random by design; everything else must match.
        let files: Vec<String> = Pki { dir }
            .snapshot()
            .into_keys()
            .map(|f| {
                if f.contains("bootstrap-token-") {
                    "bootstrap-token-ID.yaml".into()
                } else {
                    f
                }
            })
            .collect();
        (entries, files)
    };
    let (a, b) = (shape("1"), shape("4"));
    assert!(a == b, "the output differs between --jobs 1 and --jobs 4");
}

#[test]
fn algorithm_change_needs_replace_ca_keys_and_then_replaces_the_sa_key_too() {
    let pki = issued(&SPEC.replace("ALG", "ecdsa-p256"));
    std::fs::write(pki.spec(), SPEC.replace("ALG", "ecdsa-p384")).unwrap();
    let before = pki.snapshot();
    let o = pki.issue();
    assert_eq!(
        o.status.code(),
        Some(2),
        "a CA key is never replaced silently"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--replace-ca-keys"));
    assert_eq!(pki.snapshot(), before);
    let o = kpki()
        .args(["issue", "--replace-ca-keys", "--spec"])
        .arg(pki.spec())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, text, _) = openssl(&[
        "pkey",
        "-in",
        pki.path("cluster/pki/sa.key").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text.contains("384"),
        "sa.key follows the new algorithm: {text}"
    );
    assert!(verify_all(&pki) >= 8);
}

#[test]
fn progress_shows_on_a_tty_for_long_runs_only() {
    // RSA-3072 for ~20 keys takes seconds on 2 cores: long enough for the bar.
    let spec = SPEC.replace("ALG", "rsa-3072");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("kpki.toml");
    std::fs::write(&p, &spec).unwrap();
    let kpki_bin = env!("CARGO_BIN_EXE_kpki");
    // `script` (util-linux, essential on Debian) gives the run a pseudo-terminal.
    let cmd = format!("{kpki_bin} issue --spec {}", p.display());
    let (ok, out, err) = run(Command::new(tool("script")).args(["-qec", &cmd, "/dev/null"]));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("keys [") && out.contains("writing"),
        "no progress on a TTY: {out}"
    );
    // Piped: no progress at all.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let o = kpki().args(["issue", "--spec"]).arg(&p).output().unwrap();
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("keys ["));
}
