//! Control-plane membership on a running (stacked) cluster, at the flag and
//! SAN level: what a new node re-issues, what stays, and the steps printed
//! before anything is written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{kpki, run, snapshot, tool};

fn spec(cps: usize) -> String {
    let mut s = String::from(
        "profile = \"isolated\"\n[cluster]\nendpoint = \"lb.example.com:6443\"\n\
         [crypto]\nalgorithm = \"ecdsa-p256\"\n",
    );
    for i in 1..=cps {
        s.push_str(&format!(
            "[[control_plane]]\nname = \"cp{i}\"\naddress = \"10.0.0.{i}\"\n"
        ));
    }
    s
}

fn issue(spec_path: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = kpki()
        .arg("issue")
        .arg(spec_path)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_control_plane_node_added_to_a_stacked_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("kpki.toml");
    std::fs::write(&spec_path, spec(2)).unwrap();
    assert_eq!(issue(&spec_path, &[]).0, Some(0));
    let out = tmp.path().join("out");
    let admin_before = std::fs::read(out.join("cluster/admin.conf")).unwrap();

    // Two nodes at once: two etcd members at once, refused before anything is written.
    std::fs::write(&spec_path, spec(4)).unwrap();
    let before = snapshot(&out);
    let (code, _, err) = issue(&spec_path, &["--dry-run"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("M001"), "{err}");
    let (code, _, _) = issue(&spec_path, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(snapshot(&out), before);

    // One node: the dry run shows what is re-issued and the steps, writes nothing.
    std::fs::write(&spec_path, spec(3)).unwrap();
    let (code, dry, err) = issue(&spec_path, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(snapshot(&out), before, "a dry run writes nothing");
    for n in ["cp1", "cp2"] {
        assert!(
            dry.contains(&format!("reissue apiserver@{n}: SANs changed")),
            "{dry}"
        );
    }
    assert!(
        dry.contains("member add cp3 --peer-urls=https://10.0.0.3:2380"),
        "{dry}"
    );
    assert!(dry.contains("restart kube-apiserver"), "{dry}");
    let (code, real, _) = issue(&spec_path, &[]);
    assert_eq!(code, Some(0));
    assert!(real.contains("member add cp3"), "{real}");
    // Every apiserver cert now covers the new node's address.
    for n in ["cp1", "cp2", "cp3"] {
        let crt = out.join(format!("nodes/{n}/etc/kubernetes/pki/apiserver.crt"));
        let (ok, text, e) = run(std::process::Command::new(tool("openssl"))
            .args(["x509", "-noout", "-checkip", "10.0.0.3", "-in"])
            .arg(&crt));
        assert!(ok && text.contains("does match"), "{n}: {text}{e}");
    }
    // Kubeconfigs that dial the endpoint are unchanged.
    assert_eq!(
        std::fs::read(out.join("cluster/admin.conf")).unwrap(),
        admin_before
    );
    // The etcd flags: cp3 joins, cp1 keeps its own.
    let flags = |n: &str| {
        let o = kpki()
            .args(["flags", "etcd", "--node", n, "--format", "args", "--spec"])
            .arg(&spec_path)
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    assert!(flags("cp3").contains("--initial-cluster-state=existing"));
    assert!(flags("cp1").contains("--initial-cluster-state=new"));
    assert!(!flags("cp1").contains("cp3="));
    // The JSON carries the step for the new member.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("components.json")).unwrap()).unwrap();
    let cp3_etcd = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == "cp3" && c["component"] == "etcd")
        .unwrap();
    assert!(
        cp3_etcd["before_start"][0]
            .as_str()
            .unwrap()
            .contains("member add cp3"),
        "{cp3_etcd:#}"
    );
    // A re-run changes nothing, and the steps stay until the next change.
    let (code, again, _) = issue(&spec_path, &[]);
    assert_eq!(code, Some(0));
    assert!(again.contains("0 re-issued"), "{again}");
    assert!(
        std::fs::read_to_string(out.join("cluster/membership.md"))
            .unwrap()
            .contains("member add cp3")
    );
    // 2 -> 1 is refused too.
    std::fs::write(&spec_path, spec(2)).unwrap();
    assert_eq!(issue(&spec_path, &[]).0, Some(0), "3 -> 2 is one change");
    std::fs::write(&spec_path, spec(1)).unwrap();
    let (code, _, err) = issue(&spec_path, &[]);
    assert_eq!(code, Some(1));
    let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("from 2 members to 1"), "{err}");
}
