//! Hints in the auditor's language: on a directory kpki did not write
//! (kubeadm and cfssl layouts from fixtures/existing-pki, the seed-000
//! install made with cfssl, a kubeadm install whose flags are read), each
//! hint says what to change in that world (the openssl extension line, the
//! cfssl usages/hosts/CN, the flag with its file and line), never a spec or
//! profile concept, and every `kpki ...` command a hint suggests works on
//! that directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::{existing_pki, installs, kpki};
use serde_json::Value;

fn check_json(dir: &Path) -> Value {
    let o = kpki()
        .arg("check")
        .arg(dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

fn findings(doc: &Value) -> &Vec<Value> {
    doc["findings"].as_array().unwrap()
}

/// The hint of the first finding with `code` whose files include `file`.
fn hint<'a>(doc: &'a Value, code: &str, file: &str) -> &'a str {
    findings(doc)
        .iter()
        .find(|f| {
            f["code"] == code
                && f["files"]
                    .as_array()
                    .is_some_and(|fs| fs.iter().any(|x| x == file))
        })
        .and_then(|f| f["hint"].as_str())
        .unwrap_or_else(|| panic!("no {code} on {file}: {:#}", doc["findings"]))
}

/// No hint names a concept of kpki's spec or profile, or a command that
/// needs a kpki output directory. `profile` is allowed only as cfssl's
/// (`ca-config.json profile`, `-profile NAME`).
fn assert_foreign_language(doc: &Value) {
    assert!(!findings(doc).is_empty());
    for f in findings(doc) {
        let h = f["hint"].as_str().unwrap();
        for banned in [
            "[[ca]]",
            "SAN rule",
            "role =",
            "role `",
            "common_name =",
            "crypto.",
            "break_glass",
            "cluster/manifests",
            "kpki renew",
            "`kpki issue`",
        ] {
            assert!(
                !h.contains(banned),
                "{} hint names `{banned}`: {h}",
                f["code"]
            );
        }
        let rest = h
            .replace("ca-config.json profile", "")
            .replace("-profile NAME", "");
        assert!(
            !rest.contains("profile"),
            "{} hint names a profile: {h}",
            f["code"]
        );
    }
}

/// Every backquoted `kpki ...` command of the hints, in order of first
/// appearance.
fn kpki_commands(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in findings(doc) {
        let h = f["hint"].as_str().unwrap();
        for (i, part) in h.split('`').enumerate() {
            if i % 2 == 1 && part.starts_with("kpki ") && !out.iter().any(|c| c == part) {
                out.push(part.to_owned());
            }
        }
    }
    out
}

/// Every entry under `dir` (symlinks as their targets, dangling ones too).
fn listing(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, m: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                m.insert(p, t.display().to_string().into_bytes());
            } else if meta.is_dir() {
                walk(&p, m);
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = std::collections::BTreeMap::new();
    walk(dir, &mut m);
    m
}

/// Runs the hints' kpki commands in order in a fresh working directory;
/// each must succeed. Returns how many ran.
fn run_commands(doc: &Value, dir: &Path) -> usize {
    let cmds = kpki_commands(doc);
    let cwd = tempfile::tempdir().unwrap();
    let before = listing(dir);
    for c in &cmds {
        assert!(
            c.contains(&dir.display().to_string()) || !c.contains("--from"),
            "the command names the checked directory: {c}"
        );
        let words: Vec<&str> = c.split_whitespace().collect();
        let o = kpki()
            .current_dir(cwd.path())
            .args(&words[1..])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "`{c}` failed on {}:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(
        listing(dir) == before,
        "the commands never write the directory"
    );
    cmds.len()
}

#[test]
fn kubeadm_layout_hints_name_openssl_lines_and_flags() {
    let dir = existing_pki().join("kubeadm");
    let doc = check_json(&dir);
    assert_foreign_language(&doc);
    let u003 = hint(&doc, "U003", "pki/etcd/server.crt");
    assert!(
        u003.contains("`extendedKeyUsage = serverAuth, clientAuth`")
            && u003.contains("-CA pki/etcd/ca.crt -CAkey pki/etcd/ca.key"),
        "{u003}"
    );
    let n002 = hint(&doc, "N002", "pki/apiserver.crt");
    assert!(
        n002.contains("`subjectAltName = DNS:cp1,") && n002.contains(",IP:10.0.0.10,IP:10.96.0.1`"),
        "{n002}"
    );
    let i001 = hint(&doc, "I001", "scheduler.conf");
    assert!(
        i001.contains("`-subj \"/CN=system:kube-scheduler\"`")
            && i001.contains("embed it in scheduler.conf"),
        "{i001}"
    );
    let t001 = hint(&doc, "T001", "pki/front-proxy-client.crt");
    assert!(
        t001.contains("-CA pki/front-proxy-ca.crt")
            && t001.contains(
                "point kube-apiserver --requestheader-client-ca-file at a file holding pki/ca.crt"
            ),
        "{t001}"
    );
    let t006 = hint(&doc, "T006", "pki/sa.key");
    assert!(
        t006.contains("`openssl pkey -in pki/sa.key -pubout -out pki/sa.pub`"),
        "{t006}"
    );
    // Re-issuing: the openssl command, kubeadm's own, and adoption.
    let c003 = hint(&doc, "C003", "pki/etcd/healthcheck-client.crt");
    let adopt = format!("`kpki init --from {} --out kpki.toml`", dir.display());
    // The adopted spec describes the tree as it is, its planted mistakes
    // included: the hint says it must be fixed first, and offers no issue.
    assert!(
        c003.contains("-out pki/etcd/healthcheck-client.crt`")
            && c003.contains("`kubeadm certs renew all`")
            && c003.contains(&adopt)
            && c003.contains("does not plan cleanly (it describes the directory as it is, mistakes included, and marks kpki's value for each)")
            && !c003.contains("`kpki issue"),
        "{c003}"
    );
    assert!(hint(&doc, "T007", "pki/apiserver-etcd-client.crt").contains(&adopt));
    // The one command offered works.
    assert_eq!(run_commands(&doc, &dir), 1, "{:?}", kpki_commands(&doc));
}

#[test]
fn cfssl_layout_hints_name_usages_hosts_and_the_trust_flag() {
    let dir = existing_pki().join("cfssl");
    let doc = check_json(&dir);
    assert_foreign_language(&doc);
    let u003 = hint(&doc, "U003", "etcd-server.pem");
    assert!(
        u003.contains("`\"usages\": [\"signing\", \"server auth\", \"client auth\"]`")
            && u003.contains("ca-config.json profile")
            && u003.contains("cfssl gencert -ca etcd-ca.pem -ca-key etcd-ca-key.pem")
            && u003.contains("etcd-server-csr.json | cfssljson -bare etcd-server"),
        "{u003}"
    );
    let n002 = hint(&doc, "N002", "apiserver.pem");
    assert!(
        n002.contains("`\"hosts\": [\"kubernetes\",")
            && n002.contains("\"10.96.0.1\"")
            && n002.contains("in its CSR JSON"),
        "{n002}"
    );
    let t001 = hint(&doc, "T001", "apiserver-etcd-client.pem");
    assert!(
        t001.contains("cfssl gencert -ca etcd-ca.pem")
            && t001.contains("point etcd --trusted-ca-file at a file holding ca.pem"),
        "{t001}"
    );
    let u006 = hint(&doc, "U006", "apiserver-client-admin.pem");
    assert!(
        u006.contains("`\"usages\": [\"signing\", \"client auth\"]`"),
        "{u006}"
    );
    run_commands(&doc, &dir);
}

#[test]
fn seed_000_hints_speak_cfssl_and_the_adoption_command_works() {
    let dir = installs("seed-000");
    let doc = check_json(&dir);
    assert_foreign_language(&doc);
    // The admin certificate lives only in root/.kube/config.
    let u002 = hint(&doc, "U002", "root/.kube/config");
    assert!(
        u002.contains("\"client auth\"]` in the ca-config.json profile")
            && u002.contains("embed it in root/.kube/config again"),
        "{u002}"
    );
    let i001 = hint(
        &doc,
        "I001",
        "etc/kubernetes/ssl/apiserver-client-scheduler.pem",
    );
    assert!(
        i001.contains("`\"CN\": \"system:kube-scheduler\"` in its CSR JSON")
            && i001.contains("apiserver-client-scheduler-csr.json")
            && i001.contains("etc/kubernetes/kube-scheduler.kubeconfig"),
        "{i001}"
    );
    // The seed's own CSR file is the one the hint names.
    assert!(
        common::root()
            .join("fixtures/installs/seed-000/apiserver-client-scheduler-csr.json")
            .is_file()
    );
    let c002 = hint(&doc, "C002", "etc/etcd/ssl/etcd-peer.pem");
    assert!(c002.contains("`\"expiry\": \"8760h\"`"), "{c002}");
    // The adopted spec describes seed-000 as it is: its admin without
    // client auth and its scheduler CN are copied (U002, I001 in the plan),
    // so the hint offers `init --from` alone, which works.
    let cmds = kpki_commands(&doc);
    assert_eq!(
        cmds,
        vec![format!(
            "kpki init --from {} --out kpki.toml",
            dir.display()
        )],
        "{cmds:?}"
    );
    assert!(c002.contains("does not plan cleanly"), "{c002}");
    assert_eq!(run_commands(&doc, &dir), 1);
}

#[test]
fn trust_hints_name_the_flag_file_and_line_when_flags_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("root");
    // A copy (symlinks kept) whose apiserver trusts the wrong client CA.
    let (ok, _, err) = common::run(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(installs("kubeadm-etc"))
            .arg(&dir),
    );
    assert!(ok, "{err}");
    let manifest = dir.join("etc/kubernetes/manifests/kube-apiserver.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("--client-ca-file="))
        .unwrap()
        + 1;
    std::fs::write(
        &manifest,
        text.replace(
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        ),
    )
    .unwrap();
    let doc = check_json(&dir);
    assert_foreign_language(&doc);
    let m = "etc/kubernetes/manifests/kube-apiserver.yaml";
    let t001 = hint(&doc, "T001", "etc/kubernetes/admin.conf");
    assert!(
        t001.contains(&format!(
            "point kube-apiserver --client-ca-file ({m}:{line}) at a file holding etc/kubernetes/pki/ca.crt"
        )) && t001.contains("the certificate embedded in etc/kubernetes/admin.conf"),
        "{t001}"
    );
    let t003 = hint(&doc, "T003", m);
    assert!(
        t003.contains(&format!("kube-apiserver --client-ca-file ({m}:{line})"))
            && t003.contains("kube-controller-manager --cluster-signing-cert-file (")
            && !t003.contains("bind"),
        "{t003}"
    );
    run_commands(&doc, &dir);
}
