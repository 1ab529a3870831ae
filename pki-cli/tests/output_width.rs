//! Output made for people: `plan` wraps to 100 columns when not on a
//! terminal, groups per-node entries and findings, prints a legend and the
//! trust map; `check` fits 120 columns unless `--wide`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::kpki;

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn plan_tree_fits_100_columns_and_groups_nodes() {
    for spec in [
        "fixtures/specs/seed000.toml",
        "fixtures/specs/ha.toml",
        "fixtures/specs/example.toml",
    ] {
        let o = kpki().args(["plan", spec]).output().unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(
            widest(&text) <= 100,
            "{spec}: {} columns:\n{text}",
            widest(&text)
        );
    }
    let o = kpki()
        .args(["plan", "fixtures/specs/seed000.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    // One entry for the three etcd peers, their own names and addresses generalised.
    assert!(
        text.contains("etcd-peer on i1, i2, i3  CN=<node>  [peer]"),
        "{text}"
    );
    assert!(text.contains("IP:<node-ip>"), "{text}");
    // Identical findings across nodes: one line naming the nodes.
    let i004: Vec<&str> = text.lines().filter(|l| l.contains(" I004 ")).collect();
    assert_eq!(i004.len(), 1, "{text}");
    assert!(
        i004[0].contains("apiserver-kubelet-client@{i1,i2,i3}"),
        "{text}"
    );
    // The legend and the trust map.
    assert!(text.contains("legend: [ca] signs certificates"), "{text}");
    assert!(
        text.lines().any(
            |l| l.contains("kube-apiserver --requestheader-client-ca-file")
                && l.trim_end().ends_with("trusts front-proxy-ca")
        ),
        "{text}"
    );
    assert!(
        text.contains("cluster-ca: cluster/pki/ca.key, nodes/{i1,i2,i3}/etc/kubernetes/pki/ca.key"),
        "{text}"
    );
    assert!(
        text.contains("etcd-ca: cluster/pki/etcd/ca.key\n"),
        "{text}"
    );
}

#[test]
fn check_table_fits_120_columns_unless_wide() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    kpki()
        .args(["issue", "fixtures/specs/seed000.toml", "--out"])
        .arg(&out)
        .assert()
        .success();
    let o = kpki().arg("check").arg(&out).output().unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(widest(&text) <= 120, "{} columns:\n{text}", widest(&text));
    // Key algorithm and whether the key matches, the SA keypair, the counts
    // and the soonest expiry.
    assert!(text.contains("rsa-2048 ok"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("sa ") && l.contains("keypair")),
        "{text}"
    );
    // Every node's certificates, read by content (not only cluster/'s).
    assert!(
        text.contains("42 certificate(s) (6 CA), 42 with a matching key, 1 keypair(s)"),
        "{text}"
    );
    assert!(text.contains("soonest expiry: "), "{text}");
    let wide = kpki()
        .arg("check")
        .arg(&out)
        .arg("--wide")
        .output()
        .unwrap();
    let wide = String::from_utf8(wide.stdout).unwrap();
    assert!(widest(&wide) > 120, "--wide keeps full values");
    assert!(wide.contains("pki/etcd/healthcheck-client.crt"), "{wide}");
}
