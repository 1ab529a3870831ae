//! Helpers shared by the CLI tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `kpki` run from the workspace root.
pub fn kpki() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("kpki").unwrap();
    c.current_dir(root());
    c
}

/// Finds an external tool the tests need; fails loudly when it is missing
/// (scripts/test installs them: never skip silently).
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{name}` is required by this test and is not installed: run scripts/install-test-deps (CI={:?})",
        std::env::var("CI").ok()
    );
}

/// Runs a command, returning (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl verify -CAfile CA OPTS CERT` (OPTS: `-untrusted FILE`,
/// `-purpose P`...): whether it verified, and openssl's stdout + stderr.
pub fn openssl_verify(ca: &Path, opts: &[&str], cert: &Path) -> (bool, String) {
    let (ok, out, err) = run(Command::new(tool("openssl"))
        .args(["verify", "-CAfile"])
        .arg(ca)
        .args(opts)
        .arg(cert));
    (ok, format!("{out}{err}"))
}

/// Whether `openssl verify -CAfile CA CERT` succeeds.
pub fn verifies(ca: &Path, cert: &Path) -> bool {
    openssl_verify(ca, &[], cert).0
}

/// Runs `cmd` with `KPKI_TEST_ABORT_AFTER_WRITES=n` (the process aborts,
/// like `kill -9`, right after its `n`th file) and asserts it was killed.
pub fn run_killed_after_writes(cmd: &mut Command, n: usize) {
    use std::os::unix::process::ExitStatusExt;
    let o = cmd
        .env("KPKI_TEST_ABORT_AFTER_WRITES", n.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.signal().is_some(),
        "{cmd:?} was not killed after {n} writes: {:?} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every file under `dir` (relative path -> bytes), to compare before and after.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, m: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            // A symlink is its target (an install root's absolute links,
            // such as kubelet-client-current.pem, dangle outside `/`).
            if p.symlink_metadata().unwrap().file_type().is_symlink() {
                m.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()).into_bytes(),
                );
            } else if p.is_dir() {
                walk(root, &p, m);
            } else {
                m.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut m = std::collections::BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// The openssl-made existing-PKI fixtures (`kubeadm/` and `cfssl/` trees
/// with planted faults), generated once per test process by
/// `fixtures/existing-pki/regen.sh` so that their validity starts "now"
/// (also under libfaketime) and never decays with the calendar.
pub fn existing_pki() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tool("openssl");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("existing-pki");
        let (ok, out, err) = run(Command::new("bash")
            .arg(root().join("fixtures/existing-pki/regen.sh"))
            .arg(&dir));
        assert!(ok, "regen.sh failed:\n{out}\n{err}");
        dir
    })
    .clone()
}

/// The real-world installation fixtures of `fixtures/installs/NAME`
/// (seed-000 .. seed-003, kubeadm-etc, systemd-units): the install root that
/// `fixtures/installs/NAME/make.sh` builds, generated once per test process
/// and fixture under CARGO_TARGET_TMPDIR so that validity starts "now".
/// make.sh checks its own output (openssl verify, key pairs, `kubectl config
/// view --raw`) and fails if the tree is not as documented.
pub fn installs(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Cell = Arc<OnceLock<PathBuf>>;
    static DIRS: OnceLock<Mutex<HashMap<String, Cell>>> = OnceLock::new();
    let cell = DIRS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        for t in ["openssl", "cfssl", "cfssljson", "kubectl"] {
            tool(t);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("installs")
            .join(name);
        let (ok, out, err) = run(Command::new("bash")
            .arg(root().join("fixtures/installs").join(name).join("make.sh"))
            .arg(&dir)
            .arg("--quiet"));
        assert!(ok, "fixtures/installs/{name}/make.sh failed:\n{out}\n{err}");
        dir
    })
    .clone()
}

/// The manifest of a kpki output directory, as JSON.
pub fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap()).unwrap()
}

/// A self-signed P-256 root valid 20 years: (cert, key).
pub fn make_root(dir: &Path) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join("root.crt"), dir.join("root.key"));
    let (good, o, e) = run(Command::new(tool("openssl")).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-subj",
        "/CN=corp-root",
        "-days",
        "7300",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    assert!(good, "openssl root: {o}{e}");
    (crt, key)
}

/// Signs `csr` with `ca`/`ca_key` for `days`: the request's extensions
/// copied (`ext` None), or only those of `ext` (an openssl extension section).
pub fn sign_csr(csr: &Path, ca: &Path, ca_key: &Path, out: &Path, days: u32, ext: Option<&str>) {
    let serial = out.with_extension("srl");
    let mut args: Vec<String> = [
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-CAserial",
        serial.to_str().unwrap(),
        "-out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["-days".into(), days.to_string()]);
    match ext {
        None => args.extend(["-copy_extensions".into(), "copyall".into()]),
        Some(text) => {
            let f = out.with_extension("ext");
            std::fs::write(&f, format!("[v3]\n{text}\n")).unwrap();
            args.extend([
                "-extfile".into(),
                f.display().to_string(),
                "-extensions".into(),
                "v3".into(),
            ]);
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (good, o, e) = run(Command::new(tool("openssl")).args(&refs));
    assert!(good, "openssl x509 -req {}: {o}{e}", csr.display());
}
