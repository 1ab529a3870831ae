//! The output directory under attack and after accidents: another local user
//! racing kpki's temp files or owning a directory in the tree gets nothing
//! and changes nothing; a `--replace-ca-keys` run killed mid-way, or killed
//! between `sa.key` and `sa.pub`, is finished by the next run; bundles of
//! nodes removed from the spec are reported and pruned only on request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kpki, run, snapshot, tool};
use pki_core::{DirStore, Mode, PkiStore, PrivateKey, TEMP_PREFIX};
use serde_json::Value;

fn kpki_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kpki"))
}

fn spec_text(workers: usize, alg: &str) -> String {
    let mut s = format!(
        "profile = \"isolated\"\n[crypto]\nalgorithm = \"{alg}\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n"
    );
    for i in 0..workers {
        s.push_str(&format!(
            "[[worker]]\nname = \"w{i}\"\naddress = \"10.1.{}.{}\"\n",
            i / 250,
            i % 250 + 1
        ));
    }
    s
}

fn write_spec(dir: &Path, name: &str, workers: usize, alg: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, spec_text(workers, alg)).unwrap();
    p
}

fn issue(spec: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    kpki()
        .args(["issue", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// uid and gid of a system account (`id`).
fn id_of(flag: &str, name: &str) -> u32 {
    let (ok, o, e) = run(Command::new(tool("id")).args([flag, name]));
    assert!(ok, "id {flag} {name}: {e}");
    o.trim().parse().unwrap()
}

fn nobody() -> (u32, u32) {
    (id_of("-u", "nobody"), id_of("-g", "nobody"))
}

/// Runs a shell command as the unprivileged user `nobody`.
fn as_nobody(script: &str) {
    let (ok, o, e) = run(Command::new(tool("setpriv")).args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "sh",
        "-c",
        script,
    ]));
    assert!(ok, "as nobody: {script}: {o}{e}");
}

/// Every entry under `dir` (not following symlinks): relative path -> (uid, mode, is_symlink).
fn entries(dir: &Path) -> BTreeMap<String, (u32, u32, bool)> {
    fn walk(root: &Path, d: &Path, m: &mut BTreeMap<String, (u32, u32, bool)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            m.insert(
                rel,
                (md.uid(), md.mode() & 0o7777, md.file_type().is_symlink()),
            );
            if md.is_dir() {
                walk(root, &p, m);
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// A file the attacker wants kpki to overwrite: root's, 0600, known bytes.
fn victim(path: &Path) -> Vec<u8> {
    let bytes = b"root's own file; kpki must never write here\n".to_vec();
    std::fs::write(path, &bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    bytes
}

fn assert_victim_untouched(path: &Path, bytes: &[u8]) {
    assert_eq!(std::fs::read(path).unwrap(), bytes, "{}", path.display());
    let md = std::fs::metadata(path).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600, "{} re-moded", path.display());
    assert_eq!(md.uid(), 0, "{} re-owned", path.display());
}

// ---------------------------------------------------------------- A: races

#[test]
fn output_dirs_other_users_can_write_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 1, "ecdsa-p256");
    // World-writable (sticky, like /tmp) and group-writable roots.
    for (name, mode) in [("sticky", 0o1777), ("group", 0o770)] {
        let out = tmp.path().join(name);
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = issue(&spec, &out, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&out.display().to_string()) && err.contains("writable by other users"),
            "{name}: the refusal names the directory: {err}"
        );
        assert!(
            entries(&out).is_empty(),
            "{name}: nothing written: {:?}",
            entries(&out)
        );
    }
    // A root owned by another user.
    let (uid, gid) = nobody();
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
    let o = issue(&spec, &theirs, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("owned by another user"));
    assert!(entries(&theirs).is_empty());
    // A directory inside an existing output tree made world-writable later
    // is refused too, on the next run, naming it.
    let out = tmp.path().join("out");
    assert!(issue(&spec, &out, &[]).status.success());
    let before = snapshot(&out);
    let pki = out.join("cluster/pki");
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = issue(&spec, &out, &["--replace-ca-keys"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&pki.display().to_string()),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(snapshot(&out), before, "nothing changed");
}

#[test]
fn symlinked_directory_planted_inside_the_output_tree_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 1, "ecdsa-p256");
    let (uid, gid) = nobody();
    // The attacker's directory, and their symlink where kpki writes `cluster/`.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::chown(&elsewhere, Some(uid), Some(gid)).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("cluster")).unwrap();
    std::os::unix::fs::lchown(out.join("cluster"), Some(uid), Some(gid)).unwrap();
    let o = issue(&spec, &out, &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&out.join("cluster").display().to_string())
            && err.contains("symbolic link is owned by another user"),
        "{err}"
    );
    assert!(
        entries(&elsewhere).is_empty(),
        "nothing written through the link"
    );
    // Even the caller's own symlink to a directory others can write is refused.
    std::fs::remove_file(out.join("cluster")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("cluster")).unwrap();
    let o = issue(&spec, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(entries(&elsewhere).is_empty());
}

/// The old temp-file scheme (`.kpki-tmp-<name>-<pid>`, opened without
/// O_EXCL, chmod'ed by path) let another user who can write a directory of
/// the tree pre-create the names: kpki wrote through their symlinks or into
/// their files. Here `nobody` owns `cluster/pki` and plants every old name
/// for the exact pid of the run; kpki refuses the directory and the attacker
/// gets nothing and changes nothing.
#[test]
fn attacker_planting_temp_names_gets_nothing_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // `nobody` must reach the directory it owns: traversable, not listable.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 1, "ecdsa-p256");
    let (uid, gid) = nobody();
    let out = tmp.path().join("out");
    let pki = out.join("cluster/pki");
    std::fs::create_dir_all(&pki).unwrap();
    for d in [&out, &out.join("cluster")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::os::unix::fs::chown(&pki, Some(uid), Some(gid)).unwrap();
    let secret_victim = tmp.path().join("victim-secret");
    let public_victim = tmp.path().join("victim-public");
    let (vs, vp) = (victim(&secret_victim), victim(&public_victim));

    // kpki waits on stdin, so its pid (kept by exec) is known before it runs.
    let mut child = Command::new(tool("sh"))
        .args(["-c", "read go; exec \"$0\" \"$@\""])
        .arg(kpki_bin())
        .args(["issue", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let old = |name: &str| format!("{TEMP_PREFIX}{name}-{pid}");
    as_nobody(&format!(
        "cd '{}' && ln -s '{}' '{}' && ln -s '{}' '{}' && umask 0 && : > '{}' && : > '{}'",
        pki.display(),
        secret_victim.display(),
        old("ca.key"),
        public_victim.display(),
        old("ca.crt"),
        old("sa.key"),
        old("front-proxy-ca.key"),
    ));
    let planted = entries(&pki);
    assert_eq!(planted.len(), 4, "{planted:?}");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "kpki refuses: {err}");
    assert!(
        err.contains(&pki.display().to_string()) && err.contains("owned by another user"),
        "the refusal names the directory: {err}"
    );
    // Changes nothing: the symlink targets keep their bytes, mode and owner.
    assert_victim_untouched(&secret_victim, &vs);
    assert_victim_untouched(&public_victim, &vp);
    // Gets nothing: the attacker's files are still empty, nothing else appeared in
    // their directory, and no key was written anywhere.
    assert_eq!(entries(&pki), planted);
    for name in ["sa.key", "front-proxy-ca.key"] {
        assert_eq!(std::fs::read(pki.join(old(name))).unwrap(), b"");
    }
    let keys: Vec<String> = snapshot(&out)
        .into_iter()
        .filter(|(p, b)| {
            !p.contains(TEMP_PREFIX) && String::from_utf8_lossy(b).contains("PRIVATE KEY")
        })
        .map(|(p, _)| p)
        .collect();
    assert!(keys.is_empty(), "keys written: {keys:?}");
}

/// The store itself, in a directory where an attacker's names were planted
/// anyway (as if they had raced a check): every old predictable temp name
/// of this process is a symlink to a root file or a file `nobody` owns; the
/// keys kpki writes are still root's, 0600, regular files, and the targets
/// are unchanged. Stale temp files (the random names) are removed on open.
#[test]
fn store_never_writes_through_planted_temp_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (uid, gid) = nobody();
    let out = tmp.path().join("out");
    let mut store = DirStore::open(&out).unwrap();
    let pki = out.join("pki");
    std::fs::create_dir(&pki).unwrap();
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o700)).unwrap();
    let secret_victim = tmp.path().join("victim-secret");
    let public_victim = tmp.path().join("victim-public");
    let (vs, vp) = (victim(&secret_victim), victim(&public_victim));
    let old = |name: &str| pki.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
    std::os::unix::fs::symlink(&secret_victim, old("ca.key")).unwrap();
    std::os::unix::fs::lchown(old("ca.key"), Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::symlink(&public_victim, old("ca.crt")).unwrap();
    std::os::unix::fs::lchown(old("ca.crt"), Some(uid), Some(gid)).unwrap();
    std::fs::write(old("sa.key"), b"").unwrap();
    std::fs::set_permissions(old("sa.key"), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(old("sa.key"), Some(uid), Some(gid)).unwrap();

    let key = b"-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n";
    let crt = b"-----BEGIN CERTIFICATE-----\nnot real\n-----END CERTIFICATE-----\n";
    store
        .write_batch(&[
            ("pki/ca.key", key, Mode::Secret),
            ("pki/ca.crt", crt, Mode::Public),
            ("pki/sa.key", key, Mode::Secret),
        ])
        .unwrap();
    assert_victim_untouched(&secret_victim, &vs);
    assert_victim_untouched(&public_victim, &vp);
    for (name, bytes, mode) in [
        ("ca.key", &key[..], 0o600),
        ("sa.key", &key[..], 0o600),
        ("ca.crt", &crt[..], 0o644),
    ] {
        let p = pki.join(name);
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert!(md.is_file(), "{name} is a regular file");
        assert_eq!((md.uid(), md.mode() & 0o7777), (0, mode), "{name}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "{name}");
    }
    let planted_sa = std::fs::symlink_metadata(old("sa.key")).unwrap();
    assert_eq!(planted_sa.uid(), uid, "the attacker's file is left alone");
    assert_eq!(
        std::fs::read(old("sa.key")).unwrap(),
        b"",
        "and stays empty"
    );
    // Only the three files and the planted names: no temp file left behind.
    let names: Vec<String> = entries(&pki).into_keys().collect();
    assert_eq!(names.len(), 6, "{names:?}");
    drop(store);

    // A crash leaves random-named temp files: the next open removes every
    // name with the prefix (and only those), never following a link.
    std::fs::write(pki.join(format!("{TEMP_PREFIX}Zq81xA")), key).unwrap();
    let store = DirStore::open(&out).unwrap();
    let left: Vec<String> = entries(&pki).into_keys().collect();
    assert_eq!(left, ["ca.crt", "ca.key", "sa.key"], "{left:?}");
    assert_victim_untouched(&secret_victim, &vs);
    drop(store);
}

// ------------------------------------------------- B: interrupted replacements

/// Every leaf certificate of the manifest verifies (openssl) against the CA
/// the manifest names and matches its key; `kpki check --spec` is clean.
fn assert_consistent(spec: &Path, out: &Path) {
    assert!(
        !out.join("kpki-journal.json").exists(),
        "journal left behind"
    );
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap()).unwrap();
    let entries = m["entries"].as_array().unwrap();
    let crt_of = |e: &Value| -> Vec<PathBuf> {
        e["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| out.join(f.as_str().unwrap()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect()
    };
    let mut by_issuer: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["kind"] == "leaf") {
        for crt in crt_of(e) {
            let key = crt.with_extension("key");
            if key.exists() {
                let k = PrivateKey::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
                let der = pki_core::certs_from_pem(&std::fs::read_to_string(&crt).unwrap())
                    .unwrap()
                    .remove(0);
                let c = pki_core::parse_certificate(&der).unwrap();
                assert!(
                    k.matches(&c.public_key),
                    "{} does not match its key",
                    crt.display()
                );
            }
            by_issuer
                .entry(e["issuer"].as_str().unwrap().to_owned())
                .or_default()
                .push(crt);
        }
    }
    let openssl = tool("openssl");
    let mut verified = 0;
    for (issuer, certs) in &by_issuer {
        let ca = entries.iter().find(|x| x["id"] == *issuer).unwrap();
        let ca_crt = crt_of(ca).remove(0);
        let (ok, o, e) = run(Command::new(&openssl)
            .args(["verify", "-CAfile"])
            .arg(&ca_crt)
            .args(certs));
        assert!(ok, "leaves of {issuer}: {o}{e}");
        verified += certs.len();
    }
    assert!(verified >= 10, "only {verified} leaves verified");
    // The service-account keypair's halves match.
    let (_, a, _) = run(Command::new(&openssl)
        .args(["pkey", "-pubout", "-in"])
        .arg(out.join("cluster/pki/sa.key")));
    assert_eq!(
        a,
        std::fs::read_to_string(out.join("cluster/pki/sa.pub")).unwrap(),
        "sa.pub does not match sa.key"
    );
    let c = kpki()
        .args(["check", "--spec"])
        .arg(spec)
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(
        c.status.code(),
        Some(0),
        "check: {}{}",
        text(&c.stdout),
        text(&c.stderr)
    );
}

/// The private keys of the CAs, by manifest id.
fn ca_keys(out: &Path) -> BTreeMap<String, Vec<u8>> {
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap()).unwrap();
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ca")
        .map(|e| {
            let key = e["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| out.join(f.as_str().unwrap()))
                .find(|p| p.extension().is_some_and(|x| x == "key"))
                .unwrap();
            (
                e["id"].as_str().unwrap().to_owned(),
                std::fs::read(key).unwrap(),
            )
        })
        .collect()
}

/// Runs `kpki issue --replace-ca-keys` and kills it (SIGKILL) once `moment`
/// says so; returns whether it was killed.
fn replace_and_kill(spec: &Path, out: &Path, moment: &dyn Fn() -> bool) -> bool {
    let mut child = Command::new(kpki_bin())
        .args(["issue", "--replace-ca-keys", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if moment() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(Instant::now() < deadline, "kpki did not finish");
        std::thread::sleep(Duration::from_micros(100));
    }
    false
}

/// Kills `--replace-ca-keys` (a) once the first new CA keys are in place,
/// (b) once the new CA certificates are in place but not yet the leaves they
/// sign (the state the old code refused: `apiserver-etcd-client.crt: is not
/// signed by the CA the plan names for it`). A plain re-run finishes the
/// replacement: every CA key new, every leaf re-signed, `check` clean.
#[test]
fn sigkill_during_replace_ca_keys_then_plain_rerun_finishes_the_replacement() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 100, "ecdsa-p256");
    let out = tmp.path().join("out");
    let o = issue(&spec, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ca_key = out.join("cluster/pki/ca.key");
    let ca_crt = out.join("cluster/pki/ca.crt");
    let last_leaf = out.join("nodes/w99/var/lib/kubelet/pki/kubelet-client.crt");
    assert!(last_leaf.exists());
    for watched in [&ca_key, &ca_crt] {
        let mut mid_way = false;
        for _attempt in 0..8 {
            let old_cas = ca_keys(&out);
            let (before, key_before, leaf_before) = (
                std::fs::read(watched).unwrap(),
                std::fs::read(&ca_key).unwrap(),
                std::fs::read(&last_leaf).unwrap(),
            );
            replace_and_kill(&spec, &out, &|| {
                std::fs::read(watched).is_ok_and(|k| k != before)
            });
            mid_way = out.join("kpki-journal.json").exists()
                && std::fs::read(&last_leaf).unwrap() == leaf_before
                && std::fs::read(watched).unwrap() != before;
            if !mid_way {
                // Killed too late (or it finished): complete it and try again.
                let o = issue(&spec, &out, &[]);
                assert!(o.status.success(), "{}", text(&o.stderr));
                continue;
            }
            let o = issue(&spec, &out, &[]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "killed after {} changed: the re-run finishes the replacement: {}{}",
                watched.display(),
                text(&o.stdout),
                text(&o.stderr)
            );
            assert!(
                text(&o.stdout).contains("its CA changed"),
                "{}",
                text(&o.stdout)
            );
            assert_consistent(&spec, &out);
            // Every CA key was replaced, as the killed run was asked to.
            let new_cas = ca_keys(&out);
            for (id, k) in &old_cas {
                assert_ne!(new_cas.get(id), Some(k), "{id} kept its old key");
            }
            assert_ne!(std::fs::read(&ca_key).unwrap(), key_before);
            assert_ne!(std::fs::read(&last_leaf).unwrap(), leaf_before);
            break;
        }
        assert!(
            mid_way,
            "never killed between {} and the leaves",
            watched.display()
        );
    }
}

/// SHA-256 of a private key's SubjectPublicKeyInfo (DER), hex, as the journal holds it.
fn key_hash(key: &Path) -> String {
    let k = PrivateKey::from_pem(&std::fs::read_to_string(key).unwrap()).unwrap();
    let der = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(der.path(), k.public_key().spki_der()).unwrap();
    let (ok, o, e) = run(Command::new(tool("openssl"))
        .args(["dgst", "-sha256", "-r"])
        .arg(der.path()));
    assert!(ok, "{e}");
    o.split_whitespace().next().unwrap().to_owned()
}

/// `--replace-ca-keys` with a new algorithm replaces the service-account
/// keypair. Its files are written CA keys, CA certs, leaf keys, leaf certs,
/// then `sa.key`, `sa.pub`, kubeconfigs, the rest, the manifest: the state of
/// a crash between `sa.key` and `sa.pub` is built exactly from a complete run
/// in a copy (every certificate and key and `sa.key` new, everything after
/// old) plus the journal that run writes. The next run finishes it.
#[test]
fn crash_between_sa_key_and_sa_pub_is_finished_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let old_spec = write_spec(tmp.path(), "p256.toml", 2, "ecdsa-p256");
    let new_spec = write_spec(tmp.path(), "p384.toml", 2, "ecdsa-p384");
    let out = tmp.path().join("out");
    let done = tmp.path().join("done");
    assert!(issue(&old_spec, &out, &[]).status.success());
    let (ok, _, e) = run(Command::new(tool("cp")).arg("-a").arg(&out).arg(&done));
    assert!(ok, "{e}");
    let o = issue(&new_spec, &done, &["--replace-ca-keys"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!done.join("kpki-journal.json").exists());
    let m: Value =
        serde_json::from_slice(&std::fs::read(done.join("kpki-manifest.json")).unwrap()).unwrap();
    let mut journal = BTreeMap::new();
    for e in m["entries"].as_array().unwrap() {
        let files: Vec<&str> = e["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        if e["kind"] == "keypair" {
            let key = files.iter().find(|f| f.ends_with(".key")).unwrap();
            std::fs::copy(done.join(key), out.join(key)).unwrap();
            journal.insert(
                e["id"].as_str().unwrap().to_owned(),
                key_hash(&out.join(key)),
            );
            continue;
        }
        for f in &files {
            std::fs::copy(done.join(f), out.join(f)).unwrap();
        }
        if let Some(key) = files.iter().find(|f| f.ends_with(".key")) {
            journal.insert(
                e["id"].as_str().unwrap().to_owned(),
                key_hash(&out.join(key)),
            );
        }
    }
    assert!(journal.contains_key("sa"), "{journal:?}");
    std::fs::write(
        out.join("kpki-journal.json"),
        serde_json::to_vec_pretty(&journal).unwrap(),
    )
    .unwrap();
    assert_ne!(
        std::fs::read(out.join("cluster/pki/sa.pub")).unwrap(),
        std::fs::read(done.join("cluster/pki/sa.pub")).unwrap(),
        "sa.pub is still the old one"
    );
    let o = issue(&new_spec, &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("cluster/pki/sa.key")).unwrap(),
        std::fs::read(done.join("cluster/pki/sa.key")).unwrap(),
        "the journalled sa.key is kept"
    );
    assert_consistent(&new_spec, &out);
}

// ------------------------------------------------------ C: stale bundles

#[test]
fn stale_node_bundles_are_reported_and_removed_only_with_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let two = write_spec(tmp.path(), "two.toml", 2, "ecdsa-p256");
    let one = write_spec(tmp.path(), "one.toml", 1, "ecdsa-p256");
    let out = tmp.path().join("out");
    assert!(issue(&two, &out, &[]).status.success());
    let stale = out.join("nodes/w1");
    assert!(
        stale
            .join("var/lib/kubelet/pki/kubelet-client.key")
            .exists()
    );

    let o = issue(&one, &out, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains(&stale.display().to_string()) && err.contains("--prune"),
        "the stale bundle is named: {err}"
    );
    assert!(stale.exists(), "not removed without --prune");
    // Every run says it again.
    assert!(text(&issue(&one, &out, &[]).stderr).contains(&stale.display().to_string()));

    let c = kpki()
        .args(["check", "--format", "json", "--spec"])
        .arg(&one)
        .arg(&out)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&c.stdout).unwrap();
    let d002: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "D002")
        .collect();
    assert!(
        d002.iter()
            .any(|f| f["message"].as_str().unwrap().contains("nodes/w1")),
        "check names the stale bundle as D002: {}",
        text(&c.stdout)
    );

    let before = snapshot(&out);
    let o = issue(&one, &out, &["--dry-run", "--prune"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!(
            "would remove stale node bundle {}",
            stale.display()
        )),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(snapshot(&out), before, "--dry-run --prune removes nothing");

    let o = issue(&one, &out, &["--prune"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!stale.exists(), "pruned");
    assert!(!text(&o.stderr).contains("nodes/w1"), "{}", text(&o.stderr));
    let after = snapshot(&out);
    let expected: BTreeMap<String, Vec<u8>> = before
        .into_iter()
        .filter(|(p, _)| !p.starts_with("nodes/w1/"))
        .collect();
    assert_eq!(after, expected, "every other file byte-identical");
    assert!(after.keys().any(|p| p.starts_with("nodes/w0/")));
    let c = kpki()
        .args(["check", "--spec"])
        .arg(&one)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !text(&c.stdout).contains("D002"),
        "no stale bundle left: {}",
        text(&c.stdout)
    );
}

#[test]
fn issue_never_blocks_on_a_fifo_or_reads_a_device_in_the_output_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 1, "ecdsa-p256");
    let out = tmp.path().join("out");
    assert!(issue(&spec, &out, &[]).status.success());
    for (planted, make) in [
        ("cluster/pki/ca.crt", "fifo"),
        ("cluster/pki/front-proxy-client.crt", "zero"),
    ] {
        let p = out.join(planted);
        let saved = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        if make == "fifo" {
            let (ok, _, e) = run(Command::new(tool("mkfifo")).arg(&p));
            assert!(ok, "{e}");
        } else {
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        }
        // A bounded run: kill it if it blocks.
        let start = Instant::now();
        let (ok, stdout, stderr) = run(Command::new(tool("timeout"))
            .args(["-s", "KILL", "60"])
            .arg(kpki_bin())
            .arg("issue")
            .arg("--spec")
            .arg(&spec)
            .arg("--out")
            .arg(&out));
        assert!(
            start.elapsed() < Duration::from_secs(55),
            "{planted}: kpki blocked"
        );
        assert!(!ok, "{planted}: {stdout}");
        assert!(
            stderr.contains(planted) && stderr.contains("not a regular file"),
            "{planted}: {stderr}"
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, saved).unwrap();
    }
}

/// How many syncfs(2) calls a `kpki issue` into `out` makes (strace).
fn syncfs_calls(spec: &Path, out: &Path, log: &Path) -> usize {
    let (ok, _, e) = run(Command::new(tool("strace"))
        .args(["-f", "-e", "trace=syncfs", "-o"])
        .arg(log)
        .arg(kpki_bin())
        .arg("issue")
        .arg("--spec")
        .arg(spec)
        .arg("--out")
        .arg(out));
    assert!(ok, "{e}");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("syncfs(") && l.contains("= 0"))
        .count()
}

#[test]
fn every_file_system_the_output_spans_is_flushed() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), "kpki.toml", 2, "ecdsa-p256");
    // One file system: a flush before and after each batch of renames.
    let one = syncfs_calls(&spec, &tmp.path().join("one"), &tmp.path().join("one.log"));
    assert!(one >= 2 && one.is_multiple_of(2), "{one}");
    // nodes/ on another file system (tmpfs), reached through a symlink.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        std::fs::metadata(shm.path()).unwrap().dev(),
        std::fs::metadata(tmp.path()).unwrap().dev(),
        "/dev/shm is the same file system here"
    );
    let out = tmp.path().join("two");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(shm.path(), out.join("nodes")).unwrap();
    let two = syncfs_calls(&spec, &out, &tmp.path().join("two.log"));
    assert!(
        two > one,
        "the second file system is flushed too ({one} vs {two})"
    );
    let logged = std::fs::read_to_string(tmp.path().join("two.log")).unwrap();
    assert!(shm.path().join("w0").is_dir(), "the bundles went to tmpfs");
    assert!(!logged.contains("= -1"), "{logged}");
}
