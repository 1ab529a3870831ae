//! What a new user meets first: messages that say what to do, no Rust
//! `Debug` text, no line numbers that do not exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{kpki, root};

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_empty_directory_says_to_run_init_or_pass_a_spec() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["plan"],
        vec!["plan", "kpki.toml"],
        vec!["issue", "--dry-run"],
    ] {
        let o = kpki().current_dir(tmp.path()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr_of(&o);
        assert!(
            e.contains("kpki.toml") && e.contains("kpki init") && e.contains("--spec FILE"),
            "{args:?}: {e}"
        );
        assert!(!e.contains("(file)"), "{e}");
    }
}

#[test]
fn a_positional_spec_works_like_dash_dash_spec() {
    let by_flag = kpki()
        .args([
            "plan",
            "--spec",
            "fixtures/specs/example.toml",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let by_pos = kpki()
        .args(["plan", "fixtures/specs/example.toml", "--format", "json"])
        .output()
        .unwrap();
    assert!(by_flag.status.success() && by_pos.status.success());
    // Same graph (the JSON carries computed not_after dates: compare ids).
    let ids = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&by_flag), ids(&by_pos));
    assert!(!ids(&by_pos).is_empty());
}

#[test]
fn a_spec_without_control_plane_names_the_file_not_a_missing_line() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(&spec, "[cluster]\nname = \"x\"\n").unwrap();
    let o = kpki().arg("plan").arg(&spec).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_of(&o);
    assert!(e.contains("control_plane"), "{e}");
    // A 2-line file has no line 3: the message names the file only.
    assert!(!e.contains("kpki.toml:3"), "{e}");
    assert!(
        e.contains(&format!("{}: control_plane", spec.display())),
        "{e}"
    );
}

#[test]
fn within_without_a_known_unit_lists_the_units() {
    let o = kpki()
        .args(["check", "fixtures", "--within", "2w"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr_of(&o);
    assert!(
        e.contains("h (hours)") && e.contains("d (days)") && e.contains("y ("),
        "{e}"
    );
}

#[test]
fn no_rust_debug_text_in_dry_run_lines_or_check_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let spec = root().join("fixtures/specs/example.toml");
    let o = kpki()
        .args(["issue", "--dry-run", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("(new)"), "{text}");
    for debug in ["(Created)", "(Updated)", "Some(", " { "] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let o = kpki().arg("check").arg(&out).output().unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(header.matches("profile").count(), 1, "{header}");
    for debug in ["Some(", "Kpki", "Kubeadm {", "(Cfssl)", "pki_only"] {
        assert!(!text.contains(debug), "{debug} in {text}");
    }
}

#[test]
fn spec_values_the_profile_never_uses_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(
        &spec,
        "profile = \"kubeadm\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n\
         hostnames = [\"cp1.example.com\"]\n[[worker]]\nname = \"w1\"\naddress = \"10.0.0.20\"\n\
         hostnames = [\"w1.example.com\"]\n",
    )
    .unwrap();
    let o = kpki().arg("plan").arg(&spec).output().unwrap();
    assert!(o.status.success());
    let e = stderr_of(&o);
    // Workers bootstrap their kubelet cert in this profile: nothing takes w1's hostname.
    assert!(
        e.contains("kpki.toml:9:")
            && e.contains("worker[0].hostnames")
            && e.contains("w1.example.com"),
        "{e}"
    );
    // cp1's hostname is in its etcd certificates: no warning.
    assert!(!e.contains("cp1.example.com"), "{e}");
}

#[test]
fn kubeconfig_reads_from_out_like_the_other_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("elsewhere");
    let spec = "fixtures/specs/example.toml";
    kpki()
        .args(["issue", "--spec", spec, "--out"])
        .arg(&out)
        .assert()
        .success();
    let o = kpki()
        .args(["kubeconfig", "admin", "--spec", spec, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(
        o.stdout,
        std::fs::read(out.join("cluster/admin.conf")).unwrap()
    );
    // A directory that was never issued: the hint names the same --out.
    let o = kpki()
        .args(["kubeconfig", "admin", "--spec", spec, "--out"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("--out"), "{}", stderr_of(&o));
}

/// The hint of the first finding with `code` in `check --format json`.
fn hint_of(doc: &serde_json::Value, code: &str) -> String {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code}: {doc:#}"))["hint"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn hints_name_commands_that_work() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    std::fs::write(
        &spec,
        "profile = \"kubeadm\"\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    kpki().arg("issue").arg(&spec).assert().success();
    let check = |extra: &[&str]| -> serde_json::Value {
        let o = kpki()
            .arg("check")
            .arg(&out)
            .args(["--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // C004 with a 400-day window: the hint's command renews what it found.
    let hint = hint_of(&check(&["--within", "400d"]), "C004");
    assert!(hint.contains("kpki renew --within 400d"), "{hint}");
    let o = kpki()
        .args(["renew", "--within", "400d", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains(" 0 re-issued"), "renewed nothing: {text}");
    // T007: follow the hint (delete the certificate, run kpki issue).
    let crt = out.join("cluster/pki/apiserver-etcd-client.crt");
    let key = out.join("cluster/pki/apiserver-etcd-client.key");
    std::fs::copy(out.join("cluster/pki/front-proxy-client.key"), &key).unwrap();
    let hint = hint_of(&check(&[]), "T007");
    assert!(
        hint.contains("delete the certificate") && hint.contains("kpki issue"),
        "{hint}"
    );
    std::fs::remove_file(&crt).unwrap();
    kpki().arg("issue").arg(&spec).assert().success();
    kpki()
        .arg("check")
        .arg(&out)
        .arg("--spec")
        .arg(&spec)
        .assert()
        .success();
}
