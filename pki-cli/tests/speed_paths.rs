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

/// `kpki issue` of the spec into `out`.
fn issue_cmd(out: &Path) -> assert_cmd::Command {
    let mut c = kpki();
    c.arg("issue")
        .arg("--spec")
        .arg(spec())
        .arg("--out")
        .arg(out);
    c
}

fn issue(out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = issue_cmd(out).args(extra).output().unwrap();
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

/// Edits w1's kubelet.conf after kpki wrote it: another server.
fn point_kubelet_conf_elsewhere(out: &Path) {
    let kc = out.join("nodes/w1/etc/kubernetes/kubelet.conf");
    let text = std::fs::read_to_string(&kc).unwrap();
    std::fs::write(
        &kc,
        text.replace("server: https://", "server: https://evil."),
    )
    .unwrap();
}

/// A kubeconfig edited after a no-op run is noticed and rewritten; a CA
/// certificate whose bytes changed makes check verify every certificate it
/// signed (no digest matches any more).
#[test]
fn file_edited_after_noop_run_is_rewritten() {
    let (_t, out) = issued();
    assert_eq!(issue(&out, &[]).0, Some(0));
    let before = snapshot(&out);
    point_kubelet_conf_elsewhere(&out);
    let (code, out_text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out_text.contains("wrote 1 file(s)"), "{out_text}");
    assert_eq!(snapshot(&out), before);
}

/// check's result is the same whether the manifest's digests let it skip
/// signature checks or not (digests blanked: every signature is verified).
#[test]
fn check_with_and_without_manifest_digests_agree() {
    let (_t, out) = issued();
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

/// `kpki CMD --spec SPEC --out OUT ARGS` with `threads` worker threads for
/// the store's parallel reads and writes (`RAYON_NUM_THREADS`).
fn run_threads(cmd: &str, out: &Path, args: &[&str], threads: &str) -> (Option<i32>, String) {
    let o = kpki()
        .arg(cmd)
        .arg("--spec")
        .arg(spec())
        .arg("--out")
        .arg(out)
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// `--jobs 1` and `--jobs 2` (and one or two threads writing) write the
/// same files and directories with the same modes and the same manifest
/// structure, on a fresh run and on `renew --all`; re-runs of each change
/// no byte.
#[test]
fn jobs_1_and_2_same_structure_and_byte_identical_reruns() {
    let t = tempfile::tempdir().unwrap();
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    assert_eq!(run_threads("issue", &one, &["--jobs", "1"], "1").0, Some(0));
    assert_eq!(run_threads("issue", &two, &["--jobs", "2"], "2").0, Some(0));
    let (s1, s2) = (snapshot(&one), snapshot(&two));
    assert_eq!(s1.keys().collect::<Vec<_>>(), s2.keys().collect::<Vec<_>>());
    assert_eq!(modes(&one), modes(&two));
    assert!(modes(&one).len() > s1.len(), "directories are compared too");
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
        let (code, out) = run_threads("issue", d, &["--jobs", jobs], jobs);
        assert_eq!(code, Some(0));
        assert!(out.contains("wrote 0 file(s)"), "{out}");
        assert_eq!(&snapshot(d), snap);
    }
    // Renewal rewrites files in existing directories: same paths, same
    // modes, every leaf new, whatever the thread count.
    assert_eq!(run_threads("renew", &one, &["--all"], "1").0, Some(0));
    assert_eq!(run_threads("renew", &two, &["--all"], "2").0, Some(0));
    let (r1, r2) = (snapshot(&one), snapshot(&two));
    assert_eq!(r1.keys().collect::<Vec<_>>(), r2.keys().collect::<Vec<_>>());
    assert_eq!(modes(&one), modes(&two));
    assert_eq!(shape(&one), shape(&two));
    let leaf = format!("{LEAF}.crt");
    assert_ne!(r1.get(&leaf), s1.get(&leaf), "renewed");
    assert_ne!(r2.get(&leaf), s2.get(&leaf), "renewed");
    for (d, jobs, snap) in [(&one, "2", &r1), (&two, "1", &r2)] {
        let (code, out) = run_threads("issue", d, &["--jobs", jobs], jobs);
        assert_eq!(code, Some(0));
        assert!(out.contains("wrote 0 file(s)"), "{out}");
        assert_eq!(&snapshot(d), snap);
    }
}

/// The manifest without its key-file digests (as older versions wrote it).
fn strip_key_digests(out: &Path) {
    let path = out.join("kpki-manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let re = regex::Regex::new(r#",\n\s*"key_sha256": "[0-9a-f]{64}""#).unwrap();
    assert!(re.is_match(&text), "no key digests in the manifest");
    std::fs::write(&path, re.replace_all(&text, "").as_bytes()).unwrap();
}

fn pem_der(text: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn der_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// The manifest records, for every key file kpki wrote, the SHA-256 of its
/// bytes: the digest is the file's, on every path the key is written to.
#[test]
fn manifest_records_the_digest_of_every_key_file() {
    let (_t, out) = issued();
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap()).unwrap();
    let mut seen = 0;
    for e in m["entries"].as_array().unwrap() {
        let keys: Vec<&str> = e["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .filter(|f| {
                std::fs::read_to_string(out.join(f)).is_ok_and(|t| t.contains("PRIVATE KEY"))
            })
            .collect();
        if keys.is_empty() {
            // A key that lives only in a kubeconfig: nothing to record.
            assert!(e.get("key_sha256").is_none(), "{e}");
            continue;
        }
        let h = e["key_sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("no key digest for {}", e["id"]));
        for f in keys {
            let digest = std::process::Command::new(common::tool("sha256sum"))
                .arg(out.join(f))
                .output()
                .unwrap();
            let digest = String::from_utf8(digest.stdout).unwrap();
            assert!(digest.starts_with(h), "{f}: {digest} != {h}");
            seen += 1;
        }
    }
    assert!(seen > 20, "{seen}");
}

/// A key file replaced after a no-op run by another valid P-256 key of the
/// same size (another output's key of the same leaf): the digest no longer
/// matches, the key is parsed in full and refused as before the shortcut
/// (same exit code and message as with a manifest without key digests);
/// check reports T007.
#[test]
fn key_replaced_after_noop_run_is_noticed_as_without_the_shortcut() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    for d in [&a, &b] {
        assert_eq!(issue(d, &[]).0, Some(0));
    }
    let (code, out, _) = issue(&b, &[]);
    assert_eq!((code, out.contains("wrote 0 file(s)")), (Some(0), true));
    let rel = format!("{LEAF}.key");
    let (ka, kb) = (
        std::fs::read(a.join(&rel)).unwrap(),
        std::fs::read(b.join(&rel)).unwrap(),
    );
    assert_eq!(ka.len(), kb.len());
    assert_ne!(ka, kb);
    std::fs::write(b.join(&rel), &ka).unwrap();
    // The same tree, its manifest without key digests: today's full parse.
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&b)
        .arg(&c)
        .status()
        .unwrap();
    assert!(cp.success());
    strip_key_digests(&c);
    let (fast, slow) = (issue(&b, &[]), issue(&c, &[]));
    assert_eq!(fast.0, Some(2), "{}", fast.2);
    assert!(
        fast.2.contains("does not match its private key"),
        "{}",
        fast.2
    );
    let norm = |s: &str, d: &Path| s.replace(&d.display().to_string(), "OUT");
    assert_eq!((fast.0, norm(&fast.2, &b)), (slow.0, norm(&slow.2, &c)));
    let found = problems(&check_json(&b));
    assert!(
        found
            .iter()
            .any(|(c, f)| c == "T007" && f.contains(&format!("{LEAF}.crt"))),
        "{found:?}"
    );
}

/// A key file whose scalar is unchanged but whose embedded public point is
/// another key's (same size, still a valid SEC1 key): its digest differs,
/// so the point is not trusted; the full parse derives the right one, the
/// run keeps the certificate and rewrites the file as it was.
#[test]
fn key_file_with_foreign_point_is_not_trusted() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        assert_eq!(issue(d, &[]).0, Some(0));
    }
    let before = snapshot(&b);
    let rel = format!("{LEAF}.key");
    let (pa, mut pb) = (
        pem_der(&std::fs::read_to_string(a.join(&rel)).unwrap()),
        pem_der(&std::fs::read_to_string(b.join(&rel)).unwrap()),
    );
    let n = pb.len();
    assert_eq!(pa.len(), n);
    pb[n - 65..].copy_from_slice(&pa[n - 65..]);
    std::fs::write(b.join(&rel), der_pem(&pb)).unwrap();
    assert_ne!(snapshot(&b), before);
    let (code, out, err) = issue(&b, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("wrote 1 file(s)"), "{out}");
    assert_eq!(snapshot(&b), before);
}

/// A manifest without key digests (an older version's) still works: the
/// re-run parses every key in full, changes no certificate or key, and
/// writes the manifest back with the digests (the same bytes as the
/// first run's); the run after that writes nothing.
#[test]
fn manifest_without_key_digests_reruns_byte_identical() {
    let (_t, out) = issued();
    let before = snapshot(&out);
    strip_key_digests(&out);
    let (code, text, err) = issue(&out, &["--jobs", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("wrote 1 file(s)"), "{text}");
    assert_eq!(snapshot(&out), before);
    let (code, text, _) = issue(&out, &["--jobs", "2"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("wrote 0 file(s)"), "{text}");
    assert_eq!(snapshot(&out), before);
}

fn run_kpki(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let o = kpki().args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `cmd` (issue or renew, with `extra`) run with --dry-run over `out`, then
/// for real: the files the dry run names, with their kind of change, are
/// exactly those the real run creates or changes; the re-issue lines and
/// the counts of the summary are the same. Returns how many files changed.
fn dry_run_matches_real_run(cmd: &str, spec: &Path, out: &Path, extra: &[&str]) -> usize {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        cmd.as_ref(),
        "--spec".as_ref(),
        spec.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let before = snapshot(out);
    let mut dry_args = args.clone();
    dry_args.push("--dry-run".as_ref());
    let (code, dry, err) = run_kpki(&dry_args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(snapshot(out), before, "the dry run wrote");
    let (code, real, err) = run_kpki(&args);
    assert_eq!(code, Some(0), "{err}");
    let after = snapshot(out);
    let mut changed: Vec<String> = after
        .iter()
        .filter_map(|(p, b)| match before.get(p) {
            None => Some(format!("would write {p} (new)")),
            Some(x) if x != b => Some(format!("would write {p} (changed)")),
            Some(_) => None,
        })
        .collect();
    assert!(
        before.keys().all(|p| after.contains_key(p)),
        "the real run removed files"
    );
    let mut named: Vec<String> = dry
        .lines()
        .filter(|l| l.starts_with("would write ") && l.ends_with(')'))
        .map(str::to_owned)
        .collect();
    changed.sort();
    named.sort();
    assert_eq!(named, changed, "dry run:\n{dry}\nreal run:\n{real}");
    let actions = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| {
                ["reissue ", "rekey ", "adopt "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(actions(&dry), actions(&real));
    let summary = |t: &str| -> String {
        let l = t
            .lines()
            .find(|l| l.contains(" issued, "))
            .unwrap()
            .to_owned();
        l.replace("would write", "wrote")
    };
    assert_eq!(summary(&dry), summary(&real));
    changed.len()
}

/// The dry run signs no leaf it would re-issue, yet names exactly the
/// files the real run then changes: with --replace-ca-keys (every CA
/// re-keyed, every leaf re-issued), after spec edits (a worker's address,
/// the endpoint, a new worker, certificates embedded in kubeconfigs or
/// not), and for renew --all.
#[test]
fn dry_run_names_exactly_what_the_real_run_changes() {
    let (t, out) = issued();
    let n = dry_run_matches_real_run("issue", &spec(), &out, &["--replace-ca-keys"]);
    assert!(n > 50, "{n}");
    // Nothing left to do: the dry run and the run name nothing.
    assert_eq!(dry_run_matches_real_run("issue", &spec(), &out, &[]), 0);

    let text = std::fs::read_to_string(spec()).unwrap();
    let edited = t.path().join("edited.toml");
    std::fs::write(
        &edited,
        text.replace("10.0.2.11", "10.0.2.21")
            .replace("api.corp.local:8443", "api2.corp.local:8443")
            + "\n[[worker]]\nname = \"w3\"\naddress = \"10.0.2.13\"\n",
    )
    .unwrap();
    let n = dry_run_matches_real_run("issue", &edited, &out, &[]);
    assert!(n > 10, "{n}");
    // Certificates as paths in the kubeconfigs: those no longer embed them.
    let paths = t.path().join("paths.toml");
    std::fs::write(
        &paths,
        std::fs::read_to_string(&edited)
            .unwrap()
            .replace("[crypto]", "[output]\nembed_certs = false\n\n[crypto]"),
    )
    .unwrap();
    assert!(dry_run_matches_real_run("issue", &paths, &out, &[]) > 0);
    let n = dry_run_matches_real_run("renew", &paths, &out, &["--all"]);
    assert!(n > 20, "{n}");
    let n = dry_run_matches_real_run("issue", &paths, &out, &["--replace-ca-keys"]);
    assert!(n > 50, "{n}");
}

/// Files edited after a no-op run, each kind the run reads differently: a
/// leaf certificate (read and parsed at the start of the run, then
/// compared by the digest of what was read), a kubeconfig (read once for
/// its digest) and a node's copy of a CA certificate (compared through the
/// store). Check reports the copy that differs (D003); the next issue
/// notices all three and rewrites them byte for byte; check is clean after.
#[test]
fn certificate_and_kubeconfig_edited_after_noop_run_are_reported_and_rewritten() {
    let (_t, out) = issued();
    let (code, text, _) = issue(&out, &[]);
    assert_eq!((code, text.contains("wrote 0 file(s)")), (Some(0), true));
    let before = snapshot(&out);
    let pki = out.join("nodes/w1/etc/kubernetes/pki");
    // The same certificate, one more newline: same DER, other bytes.
    let crt = out.join(format!("{LEAF}.crt"));
    let mut bytes = std::fs::read(&crt).unwrap();
    bytes.push(b'\n');
    std::fs::write(&crt, bytes).unwrap();
    point_kubelet_conf_elsewhere(&out);
    std::fs::copy(
        pki.join("apiserver-server-ca.crt"),
        pki.join("kubelet-client-ca.crt"),
    )
    .unwrap();
    let found = problems(&check_json(&out));
    assert!(
        found.iter().any(|(c, f)| c == "D003"
            && f.contains(&"nodes/w1/etc/kubernetes/pki/kubelet-client-ca.crt".to_owned())),
        "{found:?}"
    );
    let (code, text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("wrote 3 file(s)"), "{text}");
    assert_eq!(snapshot(&out), before);
    assert!(problems(&check_json(&out)).is_empty());
}

/// Every path under `dir` (directories too) with its mode.
/// Runs `kpki issue` into `out`, aborted (like `kill -9`) right after its
/// `n`th rename: whether it was; a run with fewer renames completes, and
/// must succeed.
fn killed_after(out: &Path, n: usize) -> bool {
    let o = issue_cmd(out)
        .env("KPKI_TEST_ABORT_AFTER_WRITES", n.to_string())
        .output()
        .unwrap();
    if std::os::unix::process::ExitStatusExt::signal(&o.status).is_none() {
        assert_eq!(o.status.code(), Some(0), "{n}");
        return false;
    }
    true
}

/// A temp dir and `out` in it, issued into (the spec's fresh run).
fn issued() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    assert_eq!(issue(&out, &[]).0, Some(0));
    (t, out)
}

/// Sets `path`'s mode.
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn modes(dir: &Path) -> std::collections::BTreeMap<String, u32> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, d: &Path, m: &mut std::collections::BTreeMap<String, u32>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let meta = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            m.insert(rel, meta.permissions().mode() & 0o7777);
            if meta.is_dir() {
                walk(root, &p, m);
            }
        }
    }
    let mut m = std::collections::BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// A first `kpki issue` (new directory trees are built under temp names
/// and renamed into place whole) killed like `kill -9` after each of its
/// renames in turn: the next run completes it (no temp name left), `kpki
/// check --spec` finds the tree clean, it has the paths and modes of an
/// uninterrupted run, and a further run changes no byte.
#[test]
fn fresh_issue_killed_after_each_rename_then_rerun_is_clean_and_stable() {
    let t = tempfile::tempdir().unwrap();
    let reference = t.path().join("reference");
    assert_eq!(issue(&reference, &[]).0, Some(0));
    let want = modes(&reference);
    assert!(want.contains_key("cluster/pki/ca.key"));
    let (mut killed, mut ca_kept) = (0, 0);
    for n in 1..100 {
        let out = t.path().join(format!("killed{n}"));
        if !killed_after(&out, n) {
            break;
        }
        killed += 1;
        assert!(out.join(".kpki.lock").exists());
        let ca_key = std::fs::read(out.join("cluster/pki/ca.key")).ok();
        let (code, _, err) = issue(&out, &[]);
        assert_eq!(code, Some(0), "killed after {n}: {err}");
        // A CA key in place before the kill is the one the re-run keeps.
        if let Some(k) = ca_key {
            ca_kept += 1;
            assert_eq!(
                std::fs::read(out.join("cluster/pki/ca.key")).unwrap(),
                k,
                "killed after {n}: a CA key in place was replaced"
            );
        }
        let got = modes(&out);
        assert!(
            !got.keys().any(|p| p.contains(".kpki-tmp-")),
            "killed after {n}: temp names left"
        );
        assert_eq!(got, want, "killed after {n}: paths and modes");
        let doc = check_json(&out);
        assert_eq!(problems(&doc), Vec::new(), "killed after {n}");
        let snap = snapshot(&out);
        let (code, text, _) = issue(&out, &[]);
        assert_eq!(code, Some(0));
        assert!(text.contains("wrote 0 file(s)"), "killed after {n}: {text}");
        assert_eq!(snapshot(&out), snap, "killed after {n}");
    }
    // `cluster`, `nodes` and the manifest at least: the kill landed
    // between trees, not only before or after the whole run.
    assert!(killed >= 3, "killed {killed} times");
    assert!(ca_kept >= 1, "no kill after the CA key was in place");
}

/// Files and directories are created with their final modes and set again
/// only where the umask narrowed them: under umask 077 (narrowing), 022
/// and 000 a fresh run and a renewal give the same modes (certificates
/// 0644, keys 0600, bundle directories 0755, pki directories 0700).
#[test]
fn modes_do_not_depend_on_the_umask() {
    let t = tempfile::tempdir().unwrap();
    let kpki_bin = assert_cmd::cargo::cargo_bin("kpki");
    let run = |umask: &str, cmd: &str, out: &Path| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" {cmd} --spec \"$1\" --out \"$2\""
            ))
            .arg(&kpki_bin)
            .arg(spec())
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let mut all = Vec::new();
    for umask in ["077", "022", "000"] {
        let out = t.path().join(format!("u{umask}"));
        run(umask, "issue", &out);
        let fresh = modes(&out);
        run(umask, "renew --all", &out);
        assert_eq!(modes(&out), fresh, "umask {umask}: renewal changed modes");
        all.push((umask, fresh));
    }
    let (_, want) = &all[1];
    assert_eq!(want.get("nodes/w1"), Some(&0o755));
    assert_eq!(want.get("nodes/w1/var/lib/kubelet/pki"), Some(&0o700));
    assert_eq!(want.get(&format!("{LEAF}.crt")), Some(&0o644));
    assert_eq!(want.get(&format!("{LEAF}.key")), Some(&0o600));
    for (umask, got) in &all {
        assert_eq!(got, want, "umask {umask}");
    }
}

/// A kubeconfig whose certificate has a file of its own must embed that
/// certificate and a key matching it: w1's kubelet.conf given w2's client
/// certificate, or w2's client key, is reported (D003 naming both files);
/// the next issue rewrites it and check is clean again.
#[test]
fn kubeconfig_embedding_another_nodes_certificate_or_key_is_reported() {
    let (_t, out) = issued();
    assert_eq!(problems(&check_json(&out)), Vec::new());
    let kc = |n: &str| out.join(format!("nodes/{n}/etc/kubernetes/kubelet.conf"));
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap()
            .to_owned()
    };
    let w1 = std::fs::read_to_string(kc("w1")).unwrap();
    let w2 = std::fs::read_to_string(kc("w2")).unwrap();
    for name in ["client-certificate-data", "client-key-data"] {
        let swapped = w1.replace(&field(&w1, name), &field(&w2, name));
        assert_ne!(swapped, w1);
        std::fs::write(kc("w1"), swapped).unwrap();
        let found = problems(&check_json(&out));
        assert!(
            found.iter().any(|(c, f)| c == "D003"
                && f.contains(&"nodes/w1/etc/kubernetes/kubelet.conf".to_owned())
                && f.contains(&"nodes/w1/var/lib/kubelet/pki/kubelet-client.crt".to_owned())),
            "{name}: {found:?}"
        );
        let (code, text, err) = issue(&out, &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(text.contains("wrote 1 file(s)"), "{name}: {text}");
        assert_eq!(std::fs::read_to_string(kc("w1")).unwrap(), w1);
        assert_eq!(problems(&check_json(&out)), Vec::new(), "{name}");
    }
}

/// A spec that grows by many nodes at once makes one staged tree per new
/// node bundle; the run must not hold a descriptor per tree (a process may
/// have as few as 1024, here 64).
#[test]
fn many_new_node_bundles_under_a_low_open_file_limit() {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(spec()).unwrap();
    let head = base.split("\n[[worker]]").next().unwrap().to_owned();
    let with_workers = |n: usize| {
        let mut s = head.clone();
        for i in 0..n {
            s.push_str(&format!(
                "\n[[worker]]\nname = \"n{i:03}\"\naddress = \"10.9.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            ));
        }
        let p = t.path().join(format!("spec-{n}.toml"));
        std::fs::write(&p, s).unwrap();
        p
    };
    let out = t.path().join("out");
    let run = |spec: &Path| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 64 && exec \"$0\" issue --spec \"$1\" --out \"$2\"")
            .arg(assert_cmd::cargo::cargo_bin("kpki"))
            .arg(spec)
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = run(&with_workers(2));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let grown = with_workers(150);
    let o = run(&grown);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.join("nodes/n149/var/lib/kubelet/pki/kubelet.key")
            .is_file()
    );
    let bundles = std::fs::read_dir(out.join("nodes")).unwrap().count();
    assert!(bundles >= 150, "{bundles} bundles");
}

/// `nodes` a symbolic link to a directory elsewhere (bundles on another
/// volume): a fresh run killed after each rename in turn leaves the staged
/// bundles it was building under the link's target; the next run sweeps
/// them before it writes through the link (no temp name left there) and
/// gives the bundles of an uninterrupted run.
#[test]
fn staged_bundles_left_under_a_symlinked_nodes_dir_are_swept() {
    let t = tempfile::tempdir().unwrap();
    let reference = t.path().join("reference");
    assert_eq!(issue(&reference, &[]).0, Some(0));
    let want = modes(&reference.join("nodes"));
    let mut left_by_kill = 0;
    for n in 1..100 {
        let out = t.path().join(format!("killed{n}"));
        let elsewhere = t.path().join(format!("volume{n}"));
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("nodes")).unwrap();
        if !killed_after(&out, n) {
            break;
        }
        let temp_names = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    let e = e.as_ref().unwrap();
                    e.file_name().to_string_lossy().starts_with(".kpki-tmp-")
                })
                .count()
        };
        left_by_kill += temp_names(&elsewhere);
        let (code, _, err) = issue(&out, &[]);
        assert_eq!(code, Some(0), "killed after {n}: {err}");
        assert_eq!(
            temp_names(&elsewhere),
            0,
            "killed after {n}: staged bundles left under the link's target"
        );
        assert_eq!(modes(&elsewhere), want, "killed after {n}: paths and modes");
        assert!(
            std::fs::symlink_metadata(out.join("nodes"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the link stays a link"
        );
    }
    // The kills did leave staged bundles there (the sweep had work to do).
    assert!(left_by_kill >= 1, "no kill left a staged bundle");
}

/// An issuance checks the directories of its plan at open, not the whole
/// tree, and sweeps the whole tree only after a killed run (the mark it
/// left): a planned directory another user can write is refused even when
/// nothing would be written; a directory kpki neither reads nor writes is
/// not its business; a killed run's mark gets its temp names swept, and a
/// clean run leaves no mark.
#[test]
fn issuance_checks_its_planned_directories_and_sweeps_after_a_killed_run() {
    let (_t, out) = issued();
    assert!(!out.join(".kpki-tmp-unfinished").exists(), "no mark left");
    let before = snapshot(&out);
    // A planned directory (a node's pki directory) others can write.
    let pki = out.join("nodes/cp1/etc/kubernetes/pki");
    assert!(pki.join("apiserver.crt").exists());
    chmod(&pki, 0o777);
    let (code, _, err) = issue(&out, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&pki.display().to_string()) && err.contains("writable by other users"),
        "{err}"
    );
    chmod(&pki, 0o700);
    assert_eq!(snapshot(&out), before, "nothing changed");
    // A directory of the user's own that no plan has.
    let notes = out.join("notes");
    std::fs::create_dir(&notes).unwrap();
    chmod(&notes, 0o777);
    let (code, text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("wrote 0 file(s)"), "{text}");
    std::fs::remove_dir(&notes).unwrap();
    // A directory of no planned file that the run would write into (a
    // manifest removed from `cluster/manifests`), others can write: the
    // dry run is refused as the run is, and nothing is written.
    let manifests = out.join("cluster/manifests");
    let removed = manifests.join("rbac-cluster-admins.yaml");
    let kept = std::fs::read(&removed).unwrap();
    std::fs::remove_file(&removed).unwrap();
    chmod(&manifests, 0o777);
    let after_removal = snapshot(&out);
    for extra in [&["--dry-run"][..], &[][..]] {
        let (code, _, err) = issue(&out, extra);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(&manifests.display().to_string()),
            "{extra:?}: {err}"
        );
        assert_eq!(snapshot(&out), after_removal, "{extra:?}: nothing written");
    }
    chmod(&manifests, 0o700);
    std::fs::write(&removed, kept).unwrap();
    chmod(&removed, 0o600);
    // Temp names in planned directories, with and without the mark.
    let leftover = pki.join(".kpki-tmp-0123456789abcdef");
    std::fs::write(&leftover, b"half a key").unwrap();
    assert_eq!(issue(&out, &[]).0, Some(0));
    assert!(
        leftover.exists(),
        "without a killed run's mark the tree is not swept"
    );
    std::fs::write(out.join(".kpki-tmp-unfinished"), b"").unwrap();
    let (code, text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("wrote 0 file(s)"), "{text}");
    assert!(!leftover.exists(), "the mark got the tree swept");
    assert!(
        !out.join(".kpki-tmp-unfinished").exists(),
        "and the mark removed"
    );
    assert_eq!(snapshot(&out), before);
}

/// Reads outside the plan's directories are checked too: a rotation's
/// staged keys in a `rotation/` directory others can write are refused
/// (they would become a CA's key), naming it, and nothing is written.
#[test]
fn a_rotation_directory_others_can_write_is_refused() {
    let (_t, out) = issued();
    let o = kpki()
        .args(["rotate", "begin", "--ca", "etcd-ca", "--spec"])
        .arg(spec())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rotation = out.join("rotation");
    assert!(rotation.is_dir());
    chmod(&rotation, 0o777);
    let before = snapshot(&out);
    for extra in [&[][..], &["--dry-run"][..]] {
        let (code, _, err) = issue(&out, extra);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(&rotation.display().to_string())
                && err.contains("writable by other users"),
            "{extra:?}: {err}"
        );
        assert_eq!(snapshot(&out), before, "{extra:?}: nothing changed");
    }
    chmod(&rotation, 0o700);
    assert_eq!(issue(&out, &[]).0, Some(0));
}

/// A killed run's mark stays until a sweep has finished: a sweep refused
/// half-way (a bundle directory others can write) leaves it, and the next
/// run, the directory fixed, sweeps the leftovers and removes it. Without
/// a mark, a dry run changes nothing, not even through a linked `nodes`.
#[test]
fn the_mark_outlives_a_refused_sweep_and_a_dry_run_touches_nothing() {
    let (t, out) = issued();
    let before = snapshot(&out);
    let pki = out.join("nodes/w1/etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();
    let leftover = pki.join(".kpki-tmp-00000000deadbeef");
    std::fs::write(&leftover, b"half a key").unwrap();
    let mark = out.join(".kpki-tmp-unfinished");
    std::fs::write(&mark, b"").unwrap();
    let bundle = out.join("nodes/w1");
    chmod(&bundle, 0o775);
    let (code, _, err) = issue(&out, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&bundle.display().to_string()), "{err}");
    assert!(mark.exists(), "the mark outlives a refused sweep");
    chmod(&bundle, 0o755);
    let (code, _, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!leftover.exists() && !mark.exists());
    assert_eq!(snapshot(&out), before);
    // `nodes` on another volume; a temp name there and no mark.
    let volume = t.path().join("volume");
    std::fs::rename(out.join("nodes"), &volume).unwrap();
    std::os::unix::fs::symlink(&volume, out.join("nodes")).unwrap();
    let planted = volume.join("w1/etc/kubernetes/pki/.kpki-tmp-00000000cafef00d");
    std::fs::write(&planted, b"x").unwrap();
    let (code, _, err) = issue(&out, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(planted.exists(), "a dry run without a mark removes nothing");
}

/// After a killed run, every planned directory reached through a link of
/// the user's is swept, a link inside a link's target included (`nodes` on
/// one volume, a bundle on another); the mark goes only after that.
#[test]
fn after_a_killed_run_planned_directories_behind_nested_links_are_swept() {
    let (t, out) = issued();
    let (vol1, vol2) = (t.path().join("vol1"), t.path().join("vol2"));
    std::fs::create_dir(&vol2).unwrap();
    std::fs::rename(out.join("nodes"), &vol1).unwrap();
    std::fs::rename(vol1.join("w1"), vol2.join("w1")).unwrap();
    std::os::unix::fs::symlink(vol2.join("w1"), vol1.join("w1")).unwrap();
    std::os::unix::fs::symlink(&vol1, out.join("nodes")).unwrap();
    let leftovers = [
        vol1.join("cp1/etc/kubernetes/pki/.kpki-tmp-0000000000000001"),
        vol2.join("w1/etc/kubernetes/pki/.kpki-tmp-0000000000000002"),
    ];
    for l in &leftovers {
        std::fs::write(l, b"half a key").unwrap();
    }
    std::fs::write(out.join(".kpki-tmp-unfinished"), b"").unwrap();
    let (code, text, err) = issue(&out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text.contains("wrote 0 file(s)"), "{text}");
    for l in &leftovers {
        assert!(!l.exists(), "{} left", l.display());
    }
    assert!(!out.join(".kpki-tmp-unfinished").exists());
}
