//! The fast paths of fleet-scale runs (issue "Fleet-scale speed") keep every
//! guarantee: a file edited after a no-op run is still noticed by the next
//! `kpki issue` and by `kpki check` (its digest no longer matches the
//! manifest, so it is verified in full); `--jobs 1` and `--jobs 2` give the
//! same structure; re-runs change no byte. No test here measures time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{kpki, root, snapshot};
use serde_json::Value;

const LEAF: &str = "nodes/w1/var/lib/kubelet/pki/kubelet";

fn spec() -> std::path::PathBuf {
    root().join("fixtures/specs/ha.toml")
}

fn issue(out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = kpki()
        .arg("issue")
        .arg("--spec")
        .arg(spec())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn check_json(dir: &Path) -> Value {
    let o = kpki()
        .arg("check")
        .arg(dir)
        .arg("--spec")
        .arg(spec())
        .args(["--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)))
}

/// The findings (code, files) that are not informational.
fn problems(doc: &Value) -> Vec<(String, Vec<String>)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["files"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// A leaf swapped (key and certificate together, so they still match each
/// other) for one a different CA signed, after a no-op run: the manifest's
/// digest no longer matches, so the signature is verified and the next
/// issue refuses it as before; check reports it too.
#[test]
fn leaf_swapped_after_noop_run_is_still_refused_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    assert_eq!(issue(&a, &[]).0, Some(0));
    assert_eq!(issue(&b, &[]).0, Some(0));
    // A no-op re-run (the fast path) changes nothing.
    let before = snapshot(&b);
    let (code, out, _) = issue(&b, &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("wrote 0 file(s)"), "{out}");
    assert_eq!(snapshot(&b), before);
    assert!(problems(&check_json(&b)).is_empty());

    for ext in ["crt", "key"] {
        let rel = format!("{LEAF}.{ext}");
        std::fs::copy(a.join(&rel), b.join(&rel)).unwrap();
    }
    let (code, _, err) = issue(&b, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{LEAF}.crt")) && err.contains("is not signed by the CA"),
        "{err}"
    );
    let found = problems(&check_json(&b));
    assert!(
        found
            .iter()
            .any(|(c, f)| c == "S001" && f.contains(&format!("{LEAF}.crt"))),
        "{found:?}"
    );
}

/// A kubeconfig edited after a no-op run is noticed and rewritten; a CA
/// certificate whose bytes changed makes check verify every certificate it
/// signed (no digest matches any more).
#[test]
fn file_edited_after_noop_run_is_rewritten() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    assert_eq!(issue(&out, &[]).0, Some(0));
    assert_eq!(issue(&out, &[]).0, Some(0));
    let before = snapshot(&out);
    let kc = out.join("nodes/w1/etc/kubernetes/kubelet.conf");
    let text = std::fs::read_to_string(&kc).unwrap();
    std::fs::write(
        &kc,
        text.replace("server: https://", "server: https://evil."),
    )
    .unwrap();
    let (code, out_text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out_text.contains("wrote 1 file(s)"), "{out_text}");
    assert_eq!(snapshot(&out), before);
}

/// check's result is the same whether the manifest's digests let it skip
/// signature checks or not (digests blanked: every signature is verified).
#[test]
fn check_with_and_without_manifest_digests_agree() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    assert_eq!(issue(&out, &[]).0, Some(0));
    let fast = check_json(&out);
    let path = out.join("kpki-manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for e in m["entries"].as_array_mut().unwrap() {
        e["sha256"] = Value::String(String::new());
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let slow = check_json(&out);
    assert_eq!(fast["findings"], slow["findings"]);
    assert_eq!(fast["certificates"], slow["certificates"]);
    assert!(
        fast["certificates"].as_array().unwrap().len() > 20,
        "{fast}"
    );
}

/// `--jobs 1` and `--jobs 2` write the same files with the same modes and
/// the same manifest structure; re-runs of each change no byte.
#[test]
fn jobs_1_and_2_same_structure_and_byte_identical_reruns() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    assert_eq!(issue(&one, &["--jobs", "1"]).0, Some(0));
    assert_eq!(issue(&two, &["--jobs", "2"]).0, Some(0));
    let (s1, s2) = (snapshot(&one), snapshot(&two));
    assert_eq!(s1.keys().collect::<Vec<_>>(), s2.keys().collect::<Vec<_>>());
    for p in s1.keys() {
        let mode = |d: &Path| std::fs::metadata(d.join(p)).unwrap().permissions().mode();
        assert_eq!(mode(&one), mode(&two), "{p}");
    }
    let shape = |d: &Path| {
        let m: Value =
            serde_json::from_slice(&std::fs::read(d.join("kpki-manifest.json")).unwrap()).unwrap();
        let entries: Vec<Value> = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::json!([e["id"], e["kind"], e["issuer"], e["files"]]))
            .collect();
        (entries, m["kubeconfigs"].clone())
    };
    assert_eq!(shape(&one), shape(&two));
    for (d, jobs, snap) in [(&one, "2", &s1), (&two, "1", &s2)] {
        let (code, out, _) = issue(d, &["--jobs", jobs]);
        assert_eq!(code, Some(0));
        assert!(out.contains("wrote 0 file(s)"), "{out}");
        assert_eq!(&snapshot(d), snap);
    }
}
