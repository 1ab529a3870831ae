//! kpki's own output passes kpki's own audit: every node bundle of every
//! preset (control plane, worker, dedicated etcd member), checked at its
//! rsync root and at its `etc/kubernetes`, with and without `--spec`; and a
//! copy changed in any node's bundle (the first node's included) is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::kpki;
use serde_json::Value;

/// Issues `preset` for two control-plane nodes and a worker (plus a
/// dedicated etcd member for the isolated preset); returns (spec, out).
fn issued(preset: &str, tmp: &Path) -> (PathBuf, PathBuf) {
    let spec = tmp.join("kpki.toml");
    let mut text = format!(
        "profile = \"{preset}\"\n\
         [cluster]\nendpoint = \"10.0.0.100:6443\"\n\
         [crypto]\nalgorithm = \"ecdsa-p256\"\n\
         [output]\ndir = \"out\"\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.11\"\n\
         [[control_plane]]\nname = \"cp2\"\naddress = \"10.0.0.12\"\n\
         [[worker]]\nname = \"w1\"\naddress = \"10.0.0.21\"\n"
    );
    if preset == "isolated" {
        text.push_str("[[etcd]]\nname = \"e1\"\naddress = \"10.0.0.31\"\n");
    }
    std::fs::write(&spec, text).unwrap();
    kpki().arg("issue").arg(&spec).assert().success();
    (spec, tmp.join("out"))
}

/// `kpki check DIR [--spec SPEC] --format json`: (exit status, document).
fn check(dir: &Path, spec: Option<&Path>) -> (Option<i32>, Value) {
    let mut cmd = kpki();
    cmd.arg("check").arg(dir).args(["--format", "json"]);
    if let Some(s) = spec {
        cmd.arg("--spec").arg(s);
    }
    let o = cmd.output().unwrap();
    let doc = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{} {e}: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), doc)
}

fn errors(doc: &Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| format!("{} {}", f["code"], f["message"]))
        .collect()
}

#[test]
fn every_bundle_of_every_preset_checks_clean_with_and_without_its_spec() {
    for preset in ["kubeadm", "isolated", "single-ca"] {
        let tmp = tempfile::tempdir().unwrap();
        let (spec, out) = issued(preset, tmp.path());
        let mut dirs = vec![out.clone()];
        let mut nodes: Vec<PathBuf> = std::fs::read_dir(out.join("nodes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        nodes.sort();
        let expected = if preset == "isolated" { 4 } else { 3 };
        assert_eq!(nodes.len(), expected, "{preset}: {nodes:?}");
        for n in nodes {
            let etc = n.join("etc/kubernetes");
            dirs.push(n);
            dirs.push(etc);
        }
        for dir in &dirs {
            for with_spec in [None, Some(spec.as_path())] {
                let (code, doc) = check(dir, with_spec);
                assert_eq!(
                    (code, errors(&doc)),
                    (Some(0), Vec::<String>::new()),
                    "{preset}: check {} (spec: {})",
                    dir.display(),
                    with_spec.is_some()
                );
            }
        }
    }
}

#[test]
fn a_changed_copy_in_any_nodes_bundle_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (spec, out) = issued("kubeadm", tmp.path());
    let copy = |node: &str| out.join(format!("nodes/{node}/etc/kubernetes/pki/apiserver.crt"));
    // cp1 is the first node: its certificates also live in cluster/, from
    // which the graph is read. Give each node the other's certificate.
    let (a, b) = (
        std::fs::read(copy("cp1")).unwrap(),
        std::fs::read(copy("cp2")).unwrap(),
    );
    for (node, bytes) in [("cp1", &b), ("cp2", &a)] {
        let before = std::fs::read(copy(node)).unwrap();
        std::fs::write(copy(node), bytes).unwrap();
        let (code, doc) = check(&out, Some(&spec));
        assert_eq!(code, Some(1), "{node}: {doc:#}");
        let rel = format!("nodes/{node}/etc/kubernetes/pki/apiserver.crt");
        let reported = doc["findings"].as_array().unwrap().iter().any(|f| {
            f["code"] == "D003"
                && f["files"]
                    .as_array()
                    .is_some_and(|fs| fs.iter().any(|x| x == rel.as_str()))
        });
        assert!(reported, "{node}: no D003 on {rel}: {doc:#}");
        std::fs::write(copy(node), before).unwrap();
        assert_eq!(check(&out, Some(&spec)).0, Some(0), "{node} restored");
    }
}
