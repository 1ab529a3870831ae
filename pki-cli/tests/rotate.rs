//! `kpki rotate begin|switch|finish|status`: staged rotation of every CA and
//! of the service-account key, checked with real consumers after each phase
//! (openssl verify, kubectl, JWTs signed and verified with openssl).
//!
//! Crash safety uses the test-only hook `KPKI_TEST_ABORT_AFTER_WRITES=N`
//! (pki-core's DirStore aborts the process, with no clean-up, right after
//! the Nth file it puts in place): a phase is stopped at an exact point,
//! then run again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kpki, manifest, run, snapshot, tool, verifies};
use serde_json::Value;

fn spec_text(profile: &str) -> String {
    format!(
        "profile = \"{profile}\"\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\
         [cluster]\nendpoint = \"lb.example.com:6443\"\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n\
         [[worker]]\nname = \"w1\"\naddress = \"10.0.0.20\"\n"
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    spec: PathBuf,
    out: PathBuf,
    /// Scratch space for saved copies (old leaves, old SA key, JWTs).
    scratch: PathBuf,
}

fn setup(profile: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("kpki.toml");
    std::fs::write(&spec, spec_text(profile)).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Setup {
        out: dir.path().join("out"),
        spec,
        scratch,
        _dir: dir,
    }
}

fn rotate(s: &Setup, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
    c.arg("rotate").args(args).arg("--spec").arg(&s.spec);
    run(&mut c)
}

fn rotate_ok(s: &Setup, args: &[&str]) -> String {
    let (ok, out, err) = rotate(s, args);
    assert!(ok, "kpki rotate {args:?} failed: {out}{err}");
    out
}

/// Every entry of the manifest, by id.
fn entries(out: &Path) -> BTreeMap<String, Value> {
    manifest(out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn files_of(e: &Value) -> Vec<String> {
    e["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// A CA's trust anchors (every copy of its certificate file) and its
/// signer copies (`pki/signing/`).
fn trust_and_signing(e: &Value) -> (Vec<String>, Vec<String>) {
    files_of(e)
        .into_iter()
        .filter(|f| f.ends_with(".crt"))
        .partition(|f| !f.contains("/signing/"))
}

fn cert_count(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The public key (PEM) of a certificate or of a private key.
fn pubkey_of_cert(p: &Path) -> String {
    let (ok, out, err) = run(Command::new(tool("openssl"))
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(p));
    assert!(ok, "{err}");
    out
}

fn pubkey_of_key(p: &Path) -> String {
    let (ok, out, err) = run(Command::new(tool("openssl"))
        .args(["pkey", "-pubout", "-in"])
        .arg(p));
    assert!(ok, "{err}");
    out
}

/// Copies every leaf certificate file in cluster/ to `dir` (id.crt), with its issuer.
fn save_leaves(out: &Path, dir: &Path) -> Vec<(String, String, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut saved = Vec::new();
    for (id, e) in entries(out) {
        if e["kind"] != "leaf" {
            continue;
        }
        let Some(f) = files_of(&e)
            .into_iter()
            .find(|f| f.starts_with("cluster/") && f.ends_with(".crt"))
        else {
            continue;
        };
        let to = dir.join(format!("{}.crt", id.replace('@', "_")));
        std::fs::copy(out.join(&f), &to).unwrap();
        saved.push((id, e["issuer"].as_str().unwrap().to_owned(), to));
    }
    assert!(saved.len() >= 5, "too few leaves: {saved:?}");
    saved
}

/// Every saved leaf against every trust file of its issuer: accepted or refused.
fn assert_leaves(out: &Path, leaves: &[(String, String, PathBuf)], accepted: bool, what: &str) {
    let es = entries(out);
    let mut checked = 0;
    for (id, issuer, leaf) in leaves {
        let (trust, _) = trust_and_signing(&es[issuer]);
        assert!(!trust.is_empty(), "{issuer} has no trust file");
        for t in trust {
            assert_eq!(
                verifies(&out.join(&t), leaf),
                accepted,
                "{what}: {id} against {t} (issuer {issuer})"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "{what}: only {checked} verifications");
}

/// Every CA's trust files hold `n` certificates; every signer copy exactly
/// one, matching the CA key next to it.
fn assert_cas(out: &Path, n: usize, what: &str) {
    let mut signing_seen = 0;
    for (id, e) in entries(out) {
        if e["kind"] != "ca" {
            continue;
        }
        let (trust, signing) = trust_and_signing(&e);
        for t in &trust {
            assert_eq!(cert_count(&out.join(t)), n, "{what}: {t} of {id}");
        }
        for sc in &signing {
            signing_seen += 1;
            assert_eq!(
                cert_count(&out.join(sc)),
                1,
                "{what}: {sc} must hold one cert"
            );
            let key = sc.replace(".crt", ".key");
            assert_eq!(
                pubkey_of_cert(&out.join(sc)),
                pubkey_of_key(&out.join(&key)),
                "{what}: {sc} does not match {key}"
            );
            // The signer's copy is the CA that signs (the first of the bundle).
            let first = &trust[0];
            assert_eq!(
                pubkey_of_cert(&out.join(sc)),
                pubkey_of_cert(&out.join(first)),
                "{what}: {sc} is not the signing CA of {first}"
            );
        }
    }
    assert!(signing_seen > 0, "{what}: no signer copy (pki/signing/)");
    // The controller-manager's signing flags name the signer copy.
    let flags: Value =
        serde_json::from_slice(&std::fs::read(out.join("components.json")).unwrap()).unwrap();
    let cm = flags
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-controller-manager")
        .unwrap();
    let cert = cm["flags"]["cluster-signing-cert-file"].as_str().unwrap();
    let key = cm["flags"]["cluster-signing-key-file"].as_str().unwrap();
    assert!(cert.contains("/pki/signing/"), "{cert}");
    assert!(key.contains("/pki/signing/"), "{key}");
}

/// kubectl reads every kubeconfig; its CA data holds `n` certificates, and
/// its client certificate verifies against that CA data.
fn assert_kubeconfigs(out: &Path, scratch: &Path, n: usize, what: &str) {
    let m = manifest(out);
    let mut kcs = m["kubeconfigs"].as_object().unwrap().clone();
    assert!(kcs.len() >= 3, "{what}: kubeconfigs {kcs:?}");
    // The bootstrap kubeconfig (kubeadm preset: the worker joins with it) too.
    if out.join("cluster/bootstrap-kubelet.conf").exists() {
        kcs.insert(
            "bootstrap".into(),
            serde_json::json!(["cluster/bootstrap-kubelet.conf"]),
        );
    }
    for (id, files) in &kcs {
        for f in files.as_array().unwrap() {
            let f = out.join(f.as_str().unwrap());
            let get = |path: &str| {
                let (ok, o, e) = run(Command::new(tool("kubectl"))
                    .arg("--kubeconfig")
                    .arg(&f)
                    .args(["config", "view", "--raw", "-o"])
                    .arg(format!("jsonpath={{.{path}}}")));
                assert!(ok, "{what}: kubectl cannot read {}: {e}", f.display());
                o
            };
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let ca = b64
                .decode(get("clusters[0].cluster.certificate-authority-data"))
                .unwrap();
            let ca_pem = String::from_utf8(ca).unwrap();
            assert_eq!(
                ca_pem.matches("BEGIN CERTIFICATE").count(),
                n,
                "{what}: CA data of {}",
                f.display()
            );
            let client = get("users[0].user.client-certificate-data");
            if client.is_empty() {
                continue;
            }
            // The client certificate verifies against its issuer's trust
            // file (in the isolated preset the server CA differs; a kubelet
            // kubeconfig holds the kubelet-client leaf: any CA that accepts it).
            let es = entries(out);
            let issuers: Vec<&str> = match es.get(id.as_str()).and_then(|e| e["issuer"].as_str()) {
                Some(i) => vec![i],
                None => es
                    .values()
                    .filter(|e| e["kind"] == "ca")
                    .map(|e| e["id"].as_str().unwrap())
                    .collect(),
            };
            let cl_file = scratch.join(format!("kc-{id}-client.pem"));
            std::fs::write(&cl_file, b64.decode(client).unwrap()).unwrap();
            assert!(
                issuers.iter().any(|i| {
                    let (trust, _) = trust_and_signing(&es[*i]);
                    verifies(&out.join(&trust[0]), &cl_file)
                }),
                "{what}: client cert of {} not accepted by {issuers:?}",
                f.display()
            );
        }
    }
}

/// A compact JWT (ES256 over header.payload, signature as openssl makes
/// it) and whether any public key of the bundle verifies it.
fn jwt_sign(key: &Path, scratch: &Path, name: &str) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let payload = b64.encode(
        br#"{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:default:test"}"#,
    );
    let input = scratch.join(format!("{name}.input"));
    std::fs::write(&input, format!("{header}.{payload}")).unwrap();
    let sig = scratch.join(format!("{name}.sig"));
    let (ok, _, err) = run(Command::new(tool("openssl"))
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg("-out")
        .arg(&sig)
        .arg(&input));
    assert!(ok, "{err}");
    (input, sig)
}

fn jwt_verifies(public_bundle: &Path, jwt: &(PathBuf, PathBuf), scratch: &Path) -> bool {
    let text = std::fs::read_to_string(public_bundle).unwrap();
    let blocks: Vec<&str> = text
        .split_inclusive("-----END PUBLIC KEY-----")
        .filter(|b| b.contains("BEGIN PUBLIC KEY"))
        .collect();
    assert!(
        !blocks.is_empty(),
        "no public key in {}",
        public_bundle.display()
    );
    blocks.iter().enumerate().any(|(i, b)| {
        let p = scratch.join(format!("pub{i}.pem"));
        std::fs::write(&p, b.trim_start()).unwrap();
        let (ok, _, _) = run(Command::new(tool("openssl"))
            .args(["dgst", "-sha256", "-verify"])
            .arg(&p)
            .arg("-signature")
            .arg(&jwt.1)
            .arg(&jwt.0));
        ok
    })
}

fn check_clean(s: &Setup, what: &str) {
    let (ok, out, err) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .arg("check")
        .arg(&s.out)
        .arg("--spec")
        .arg(&s.spec)
        .args(["--format", "json"]));
    assert!(ok, "{what}: check failed: {out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let bad: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error" || f["code"] == "D001" || f["code"] == "D002")
        .collect();
    assert!(bad.is_empty(), "{what}: {bad:#?}");
}

/// The whole rotation with every consumer check, for one preset.
fn full_rotation(profile: &str) {
    let s = setup(profile);
    let sa_key = s.out.join("cluster/pki/sa.key");
    let sa_pub = s.out.join("cluster/pki/sa.pub");
    let old_leaves = save_leaves(&s.out, &s.scratch.join("old"));
    std::fs::copy(&sa_key, s.scratch.join("sa-old.key")).unwrap();
    let old_jwt = jwt_sign(&s.scratch.join("sa-old.key"), &s.scratch, "old");
    assert_cas(&s.out, 1, "before");
    if profile == "kubeadm" {
        // Its CA data is checked with the other kubeconfigs'.
        assert!(s.out.join("cluster/bootstrap-kubelet.conf").exists());
    }

    rotate_ok(&s, &["begin", "--all-cas", "--sa"]);
    check_clean(&s, "begin");
    assert_cas(&s.out, 2, "begin");
    assert_leaves(&s.out, &old_leaves, true, "begin: old leaves");
    assert_kubeconfigs(&s.out, &s.scratch, 2, "begin");
    // Tokens are still signed with the old key; both verify.
    assert_eq!(
        std::fs::read(&sa_key).unwrap(),
        std::fs::read(s.scratch.join("sa-old.key")).unwrap()
    );
    assert!(
        jwt_verifies(&sa_pub, &old_jwt, &s.scratch),
        "begin: old JWT"
    );
    // Leaves are untouched by begin.
    assert_eq!(
        save_leaves(&s.out, &s.scratch.join("after-begin"))
            .iter()
            .map(|(_, _, p)| std::fs::read(p).unwrap())
            .collect::<Vec<_>>(),
        old_leaves
            .iter()
            .map(|(_, _, p)| std::fs::read(p).unwrap())
            .collect::<Vec<_>>(),
        "begin changed a leaf"
    );
    // `kpki issue` during the rotation keeps the rotation's files.
    let before = snapshot(&s.out);
    kpki()
        .args(["issue", "--spec"])
        .arg(&s.spec)
        .assert()
        .success();
    assert_eq!(snapshot(&s.out), before, "issue during begin changed files");

    rotate_ok(&s, &["switch"]);
    check_clean(&s, "switch");
    assert_cas(&s.out, 2, "switch");
    let new_leaves = save_leaves(&s.out, &s.scratch.join("new"));
    assert_leaves(&s.out, &new_leaves, true, "switch: new leaves");
    assert_leaves(&s.out, &old_leaves, true, "switch: old leaves");
    assert_kubeconfigs(&s.out, &s.scratch, 2, "switch");
    for ((id, _, o), (_, _, n)) in old_leaves.iter().zip(&new_leaves) {
        assert_ne!(
            std::fs::read(o).unwrap(),
            std::fs::read(n).unwrap(),
            "{id} not re-issued"
        );
        // Keys kept (no --new-keys).
        assert_eq!(pubkey_of_cert(o), pubkey_of_cert(n), "{id}: key changed");
    }
    assert_ne!(
        std::fs::read(&sa_key).unwrap(),
        std::fs::read(s.scratch.join("sa-old.key")).unwrap()
    );
    std::fs::copy(&sa_key, s.scratch.join("sa-new.key")).unwrap();
    let new_jwt = jwt_sign(&s.scratch.join("sa-new.key"), &s.scratch, "new");
    assert!(
        jwt_verifies(&sa_pub, &old_jwt, &s.scratch),
        "switch: old JWT"
    );
    assert!(
        jwt_verifies(&sa_pub, &new_jwt, &s.scratch),
        "switch: new JWT"
    );
    let before = snapshot(&s.out);
    kpki()
        .args(["issue", "--spec"])
        .arg(&s.spec)
        .assert()
        .success();
    assert_eq!(
        snapshot(&s.out),
        before,
        "issue during switch changed files"
    );

    rotate_ok(&s, &["finish"]);
    check_clean(&s, "finish");
    assert_cas(&s.out, 1, "finish");
    assert_leaves(&s.out, &new_leaves, true, "finish: new leaves");
    assert_leaves(&s.out, &old_leaves, false, "finish: old leaves");
    assert_kubeconfigs(&s.out, &s.scratch, 1, "finish");
    assert!(
        !jwt_verifies(&sa_pub, &old_jwt, &s.scratch),
        "finish: old JWT still verifies"
    );
    assert!(
        jwt_verifies(&sa_pub, &new_jwt, &s.scratch),
        "finish: new JWT"
    );
    // The old material is archived (0700, keys 0600), not deleted.
    let m = manifest(&s.out);
    assert!(m.get("rotation").is_none(), "{m}");
    let archive = s.out.join(m["rotations"][0]["archive"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let old_sa = archive.join("sa.old.key");
    assert_eq!(
        std::fs::metadata(&old_sa).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read(&old_sa).unwrap(),
        std::fs::read(s.scratch.join("sa-old.key")).unwrap()
    );
    let cas = entries(&s.out)
        .values()
        .filter(|e| e["kind"] == "ca")
        .count();
    let archived_keys = std::fs::read_dir(&archive)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".old.key")
        })
        .count();
    assert_eq!(
        archived_keys,
        cas + 1,
        "every old CA key and the old SA key"
    );
}

#[test]
fn kubeadm_all_cas_and_sa_every_phase_with_real_consumers() {
    full_rotation("kubeadm");
}

#[test]
fn isolated_all_cas_and_sa_every_phase_with_real_consumers() {
    full_rotation("isolated");
}

#[test]
fn phases_out_of_order_are_refused_naming_the_next() {
    let s = setup("kubeadm");
    for (args, next) in [
        (&["switch"][..], "kpki rotate begin"),
        (&["finish"][..], "kpki rotate begin"),
    ] {
        let (ok, _, err) = rotate(&s, args);
        assert!(!ok);
        assert!(err.contains(next), "{err}");
    }
    let (ok, _, err) = rotate(&s, &["begin"]);
    assert!(!ok && err.contains("--all-cas"), "{err}");
    let (ok, _, err) = rotate(&s, &["begin", "--ca", "no-such-ca"]);
    assert!(!ok && err.contains("etcd-ca"), "{err}");
    rotate_ok(&s, &["begin", "--ca", "etcd-ca"]);
    let (ok, _, err) = rotate(&s, &["finish"]);
    assert!(!ok && err.contains("kpki rotate switch"), "{err}");
    // The same phase again is a no-op.
    let before = snapshot(&s.out);
    rotate_ok(&s, &["begin", "--ca", "etcd-ca"]);
    assert_eq!(snapshot(&s.out), before);
    // No CA key replacement in the middle of a rotation.
    let (ok, _, err) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .args(["issue", "--replace-ca-keys", "--spec"])
        .arg(&s.spec));
    assert!(!ok && err.contains("rotation is in progress"), "{err}");
    rotate_ok(&s, &["switch"]);
    let (ok, _, err) = rotate(&s, &["begin", "--all-cas"]);
    assert!(!ok && err.contains("kpki rotate finish"), "{err}");
    // Only the etcd CA rotated: the kubernetes CA is one certificate.
    let es = entries(&s.out);
    let (t, _) = trust_and_signing(&es["kubernetes-ca"]);
    assert_eq!(cert_count(&s.out.join(&t[0])), 1);
    let (t, _) = trust_and_signing(&es["etcd-ca"]);
    assert_eq!(cert_count(&s.out.join(&t[0])), 2);
}

#[test]
fn status_plan_and_check_show_the_rotation() {
    let s = setup("kubeadm");
    let status = |fmt: &str| rotate_ok(&s, &["status", "--format", fmt]);
    assert!(status("text").contains("no rotation in progress"));
    rotate_ok(&s, &["begin", "--ca", "etcd-ca", "--sa"]);
    let text = status("text");
    assert!(text.contains("phase begin done"), "{text}");
    assert!(text.contains("rotating CAs: etcd-ca"), "{text}");
    assert!(text.contains("next: kpki rotate switch"), "{text}");
    assert!(text.contains("cp1: etcd, kube-apiserver"), "{text}");
    let v: Value = serde_json::from_str(&status("json")).unwrap();
    assert_eq!(v["rotation"]["phase"], "begin");
    assert_eq!(v["next"], "switch");
    assert_eq!(v["rotation"]["keypairs"][0], "sa");
    assert!(
        v["restart"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["component"] == "etcd")
    );
    let (ok, out, _) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .args(["plan", "--format", "json", "--spec"])
        .arg(&s.spec)
        .current_dir(s.spec.parent().unwrap()));
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rotation"]["phase"], "begin", "{out}");
    let (ok, out, _) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .arg("check")
        .arg(&s.out)
        .arg("--spec")
        .arg(&s.spec)
        .args(["--format", "json"]));
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rotation"]["cas"][0], "etcd-ca");
    let (_, out, _) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .arg("check")
        .arg(&s.out)
        .arg("--spec")
        .arg(&s.spec));
    assert!(
        out.contains("rotation in progress (etcd-ca, sa): phase begin done"),
        "{out}"
    );
}

#[test]
fn switch_new_keys_gives_leaves_new_keys() {
    let s = setup("kubeadm");
    let old = save_leaves(&s.out, &s.scratch.join("old"));
    rotate_ok(&s, &["begin", "--all-cas"]);
    rotate_ok(&s, &["switch", "--new-keys"]);
    let new = save_leaves(&s.out, &s.scratch.join("new"));
    for ((id, _, o), (_, _, n)) in old.iter().zip(&new) {
        assert_ne!(pubkey_of_cert(o), pubkey_of_cert(n), "{id}: key kept");
    }
    assert_leaves(&s.out, &new, true, "new keys");
    check_clean(&s, "switch --new-keys");
    // Run again: nothing changes (no second new key).
    let before = snapshot(&s.out);
    rotate_ok(&s, &["switch", "--new-keys"]);
    assert_eq!(snapshot(&s.out), before);
}

/// Runs a phase that aborts after `n` file writes; asserts it did abort.
fn killed(s: &Setup, args: &[&str], n: usize) {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
    c.arg("rotate").args(args).arg("--spec").arg(&s.spec);
    common::run_killed_after_writes(&mut c, n);
}

#[test]
fn killed_at_three_moments_of_each_phase_then_run_again() {
    // (begin, switch, finish): after the first write (the manifest's "in
    // progress"), in the middle, and at the end (kubeadm preset: begin
    // puts 35 files or new directories in place, switch 53, finish 23 (the
    // archive is a new directory, renamed into place whole); killed before
    // begin's and switch's "done", and right after finish's last write).
    for (b, sw, f) in [(1, 1, 1), (18, 26, 12), (34, 52, 23)] {
        let s = setup("kubeadm");
        let old_leaves = save_leaves(&s.out, &s.scratch.join("old"));
        std::fs::copy(
            s.out.join("cluster/pki/sa.key"),
            s.scratch.join("sa-old.key"),
        )
        .unwrap();
        let old_jwt = jwt_sign(&s.scratch.join("sa-old.key"), &s.scratch, "old");
        let sa_pub = s.out.join("cluster/pki/sa.pub");

        killed(&s, &["begin", "--all-cas", "--sa"], b);
        // Interrupted: the next phase is refused, the same one completes it.
        let (ok, _, err) = rotate(&s, &["switch"]);
        assert!(!ok && err.contains("kpki rotate begin"), "{err}");
        rotate_ok(&s, &["begin", "--all-cas", "--sa"]);
        check_clean(&s, &format!("begin killed after {b}"));
        assert_cas(&s.out, 2, "begin");
        assert_leaves(&s.out, &old_leaves, true, "begin");
        assert_kubeconfigs(&s.out, &s.scratch, 2, "begin");
        assert!(jwt_verifies(&sa_pub, &old_jwt, &s.scratch));

        killed(&s, &["switch"], sw);
        rotate_ok(&s, &["switch"]);
        check_clean(&s, &format!("switch killed after {sw}"));
        assert_cas(&s.out, 2, "switch");
        let new_leaves = save_leaves(&s.out, &s.scratch.join(format!("new{sw}")));
        assert_leaves(&s.out, &new_leaves, true, "switch: new");
        assert_leaves(&s.out, &old_leaves, true, "switch: old");
        assert_kubeconfigs(&s.out, &s.scratch, 2, "switch");
        std::fs::copy(
            s.out.join("cluster/pki/sa.key"),
            s.scratch.join("sa-new.key"),
        )
        .unwrap();
        let new_jwt = jwt_sign(&s.scratch.join("sa-new.key"), &s.scratch, "new");
        assert!(jwt_verifies(&sa_pub, &old_jwt, &s.scratch));
        assert!(jwt_verifies(&sa_pub, &new_jwt, &s.scratch));

        killed(&s, &["finish"], f);
        rotate_ok(&s, &["finish"]);
        check_clean(&s, &format!("finish killed after {f}"));
        assert_cas(&s.out, 1, "finish");
        assert_leaves(&s.out, &new_leaves, true, "finish: new");
        assert_leaves(&s.out, &old_leaves, false, "finish: old");
        assert_kubeconfigs(&s.out, &s.scratch, 1, "finish");
        assert!(!jwt_verifies(&sa_pub, &old_jwt, &s.scratch));
        assert!(jwt_verifies(&sa_pub, &new_jwt, &s.scratch));
        let m = manifest(&s.out);
        assert!(m.get("rotation").is_none());
        assert_eq!(m["rotations"].as_array().unwrap().len(), 1);
        // A completed finish run again changes nothing.
        let before = snapshot(&s.out);
        rotate_ok(&s, &["finish"]);
        assert_eq!(snapshot(&s.out), before);
    }
}

/// `kpki check` understands trust bundles: while the CA file holds old +
/// new, a leaf still signed by the old CA (a node not yet redeployed) is
/// trusted; after finish it is not.
#[test]
fn check_trusts_each_ca_of_a_bundle() {
    let s = setup("kubeadm");
    let leaf = s.out.join("cluster/pki/apiserver.crt");
    // Every copy of the leaf changes together (check compares the copies).
    let copies: Vec<PathBuf> = std::iter::once(leaf.clone())
        .chain(
            std::fs::read_dir(s.out.join("nodes"))
                .unwrap()
                .map(|e| e.unwrap().path().join("etc/kubernetes/pki/apiserver.crt"))
                .filter(|p| p.exists()),
        )
        .collect();
    let put = |bytes: &[u8]| {
        for c in &copies {
            std::fs::write(c, bytes).unwrap();
        }
    };
    let old = s.scratch.join("old-apiserver.crt");
    std::fs::copy(&leaf, &old).unwrap();
    rotate_ok(&s, &["begin", "--ca", "kubernetes-ca"]);
    rotate_ok(&s, &["switch"]);
    let new = std::fs::read(&leaf).unwrap();
    assert_ne!(new, std::fs::read(&old).unwrap());
    put(&std::fs::read(&old).unwrap());
    check_clean(&s, "switch, old leaf back");
    put(&new);
    rotate_ok(&s, &["finish"]);
    check_clean(&s, "finish");
    put(&std::fs::read(&old).unwrap());
    let (ok, out, _) = run(Command::new(assert_cmd::cargo::cargo_bin("kpki"))
        .arg("check")
        .arg(&s.out)
        .arg("--spec")
        .arg(&s.spec));
    assert!(!ok, "an old-CA leaf after finish must be an error: {out}");
    assert!(
        out.contains("S001") && out.contains("apiserver@cp1"),
        "{out}"
    );
}
