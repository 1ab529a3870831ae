//! `kpki plan`, `init` and `explain` end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{kpki, root, run, tool};
use serde_json::Value;

fn plan_json(spec: &str) -> Value {
    let out = kpki()
        .args(["plan", "--format", "json", "--spec", spec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn seed_fixtures_plan_clean() {
    for (spec, ca) in [
        ("fixtures/specs/seed000.toml", "apiserver-server-ca"),
        ("fixtures/specs/seed001.toml", "kubernetes-ca"),
        ("fixtures/specs/seed002.toml", "front-proxy-ca"),
        ("fixtures/specs/seed003.toml", "etcd-ca"),
        ("fixtures/specs/example.toml", "kubernetes-ca"),
        ("fixtures/specs/starter.toml", "kubernetes-ca"),
    ] {
        let out = kpki().args(["plan", "--spec", spec]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{spec}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(ca), "{spec}: {text}");
        assert!(
            text.contains("└── "),
            "{spec}: the tree groups leaves under CAs"
        );
        assert!(
            text.contains("0 error(s)") || text.contains("findings: none"),
            "{spec}: {text}"
        );
    }
}

#[test]
fn seed000_vip_and_apiserver_sans() {
    let doc = plan_json("fixtures/specs/seed000.toml");
    let api = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "apiserver@i1")
        .unwrap();
    let ips: Vec<&str> = api["ip_sans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for ip in [
        "192.168.123.242",
        "192.168.123.244",
        "192.168.123.245",
        "192.168.123.246",
        "10.96.0.1",
    ] {
        assert!(ips.contains(&ip), "{ip} missing from {ips:?}");
    }
    assert_eq!(api["issuer"], "apiserver-server-ca");
    assert_eq!(
        api["key_usage"],
        serde_json::json!(["digitalSignature", "keyEncipherment"])
    );
}

#[test]
fn broken_fixtures_exit_1_with_their_code() {
    let dir = root().join("fixtures/broken");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let d = entry.unwrap().path();
        let code = std::fs::read_to_string(d.join("expected-code"))
            .unwrap()
            .trim()
            .to_owned();
        let spec = d.join("kpki.toml");
        let out = kpki()
            .args(["plan", "--format", "json", "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", d.display());
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors: Vec<&str> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| f["code"].as_str().unwrap())
            .collect();
        assert!(
            errors.contains(&code.as_str()),
            "{}: want {code}, got {errors:?}",
            d.display()
        );
        // Errors print first.
        assert_eq!(doc["findings"][0]["severity"], "error");
        n += 1;
    }
    assert!(n >= 6, "only {n} broken fixtures");
}

#[test]
fn bad_specs_exit_2_with_file_line_and_field() {
    let dir = root().join("fixtures/bad");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.starts_with("spec-") && name.ends_with(".toml")) {
            continue;
        }
        let rel = format!("fixtures/bad/{name}");
        let before = std::fs::read_dir(&dir).unwrap().count();
        let out = kpki().args(["plan", "--spec", &rel]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rel}: {stderr}");
        assert!(out.stdout.is_empty(), "{rel}: nothing on stdout");
        assert!(!stderr.contains("panicked"), "{rel}: {stderr}");
        assert!(
            stderr.contains(&format!("{rel}:")),
            "{rel}: message must name the file and line: {stderr}"
        );
        let snapshot = std::fs::read_to_string(p.with_extension("stderr")).unwrap();
        assert_eq!(
            stderr, snapshot,
            "{rel}: message changed (update the .stderr snapshot if intended)"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            before,
            "{rel}: plan wrote a file"
        );
        n += 1;
    }
    assert!(n >= 9, "only {n} bad specs");
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn ha_isolated_plan_meets_the_acceptance() {
    let doc = plan_json("fixtures/specs/ha.toml");
    let certs = doc["certificates"].as_array().unwrap();
    let cas = certs.iter().filter(|c| c["kind"] == "ca").count();
    assert!(cas >= 6, "{cas} CAs");
    let find = |id: &str| {
        certs
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id}"))
    };
    for cp in ["cp1", "cp2", "cp3"] {
        let api = find(&format!("apiserver@{cp}"));
        let dns = names(&api["dns_sans"]);
        let ips = names(&api["ip_sans"]);
        for d in [
            "api.corp.local",
            "kubernetes.default.svc.corp.local",
            "k8s.corp.example",
        ] {
            assert!(dns.contains(d), "{cp}: {d} not in {dns:?}");
        }
        for ip in [
            "10.0.0.11",
            "10.0.0.12",
            "10.0.0.13",
            "10.100.0.1",
            "203.0.113.10",
        ] {
            assert!(ips.contains(ip), "{cp}: {ip} not in {ips:?}");
        }
        assert!(!ips.contains("10.96.0.1"), "never a hard-coded 10.96.0.1");
    }
    for m in ["etcd1", "etcd2", "etcd3"] {
        for kind in ["etcd-server", "etcd-peer"] {
            let c = find(&format!("{kind}@{m}"));
            assert_eq!(
                names(&c["ext_key_usage"]),
                BTreeSet::from(["serverAuth".into(), "clientAuth".into()]),
                "{kind}@{m}"
            );
            assert_eq!(c["node"], m);
        }
    }
    let cn = |id: &str| find(id)["common_name"].as_str().unwrap().to_owned();
    assert_eq!(
        cn("controller-manager@cp1"),
        "system:kube-controller-manager"
    );
    assert_eq!(cn("scheduler@cp2"), "system:kube-scheduler");
    assert_eq!(cn("kube-proxy"), "system:kube-proxy");
    assert_eq!(cn("kubelet-client@w2"), "system:node:w2");
    let errors = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .count();
    assert_eq!(errors, 0, "{:#}", doc["findings"]);
    // Kubeconfigs embed the apiserver serving CA, which differs from the client CA here.
    assert!(certs.iter().any(|c| c["id"] == "apiserver-server-ca"));
    let kc = doc["kubeconfigs"].as_array().unwrap();
    assert!(
        kc.iter()
            .any(|k| k["id"] == "admin" && k["server"] == "https://api.corp.local:8443")
    );
}

#[test]
fn json_matches_the_contract_shape() {
    let doc = plan_json("fixtures/specs/seed002.toml");
    let c = &doc["certificates"][0];
    for key in [
        "id",
        "kind",
        "issuer",
        "node",
        "common_name",
        "organizations",
        "dns_sans",
        "ip_sans",
        "key_usage",
        "ext_key_usage",
        "key_algorithm",
        "not_after",
        "files",
    ] {
        assert!(c.get(key).is_some(), "certificates[].{key} missing");
    }
    assert_eq!(doc["keypairs"][0]["id"], "sa");
    assert!(names(&doc["keypairs"][0]["files"]).contains("cluster/pki/sa.key"));
    let api = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "apiserver@k8s-master-1")
        .unwrap();
    assert!(
        names(&api["files"]).contains("cluster/pki/apiserver.crt"),
        "{api:#}"
    );
    assert!(names(&api["files"]).contains("nodes/k8s-master-1/etc/kubernetes/pki/apiserver.crt"));
    let api2 = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "apiserver@k8s-master-2")
        .unwrap();
    assert!(
        !names(&api2["files"]).contains("cluster/pki/apiserver.crt"),
        "cluster/ holds one node's set"
    );
    for k in ["id", "user", "cluster", "server"] {
        assert!(doc["kubeconfigs"][0].get(k).is_some());
    }
    assert_eq!(doc["findings"], serde_json::json!([]));
}

#[test]
fn dot_renders_with_graphviz() {
    let dot = tool("dot");
    let out = kpki()
        .args([
            "plan",
            "--format",
            "dot",
            "--spec",
            "fixtures/specs/ha.toml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plan.dot");
    std::fs::write(&f, &out.stdout).unwrap();
    let (ok, svg, err) = run(Command::new(dot).arg("-Tsvg").arg(&f));
    assert!(ok, "dot failed: {err}");
    assert!(
        svg.contains("<svg")
            && svg.contains("<title>apiserver&#45;server&#45;ca</title>")
            && !svg.contains("\\n"),
        "{}",
        &svg[..svg.len().min(400)]
    );
}

#[test]
fn mermaid_is_a_flowchart() {
    let out = kpki()
        .args([
            "plan",
            "--format",
            "mermaid",
            "--spec",
            "fixtures/specs/seed000.toml",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("flowchart"), "{text}");
    assert!(text.contains("-->|signs|"));
}

#[test]
fn init_writes_a_starter_that_plans_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("kpki.toml");
    kpki().args(["init", "--out"]).arg(&spec).assert().success();
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("[[control_plane]]") && text.contains('#'));
    kpki()
        .args(["plan", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    std::fs::write(&spec, "mine").unwrap();
    kpki().args(["init", "--out"]).arg(&spec).assert().code(2);
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), "mine");
}

#[test]
fn explain_prints_the_long_form_and_docs_are_current() {
    let out = kpki().args(["explain", "n001"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(
        text.contains("N001") && text.contains("192.168.123.242"),
        "{text}"
    );
    kpki().args(["explain", "X999"]).assert().code(2);
    let all = kpki().args(["explain", "--all"]).output().unwrap();
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    assert_eq!(
        String::from_utf8(all.stdout).unwrap(),
        docs,
        "docs/rules.md is stale: kpki explain --all > docs/rules.md"
    );
}

#[test]
fn missing_spec_is_bad_input() {
    let out = kpki()
        .args(["plan", "--spec", "fixtures/specs/nope.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fixtures/specs/nope.toml"));
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let o = kpki().args(["completions", shell]).output().unwrap();
        assert!(o.status.success());
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains("kpki") && text.contains("renew"), "{shell}");
    }
    let o = kpki().arg("man").output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains(".TH kpki 1") && text.contains("issue"),
        "{text}"
    );
}

#[test]
fn output_has_no_escape_codes_when_piped_or_no_color() {
    let o = kpki()
        .env("NO_COLOR", "1")
        .args(["plan", "--spec", "fixtures/broken/vip-missing/kpki.toml"])
        .output()
        .unwrap();
    assert!(!o.stdout.contains(&0x1b) && !o.stderr.contains(&0x1b));
}
