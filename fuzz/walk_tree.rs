//! Builds a small, hostile directory tree from fuzz bytes: files with fuzzed
//! contents and PKI names, symbolic links to siblings, parents, themselves,
//! `/` and `/dev/zero`, FIFOs, nested and deep directories, sparse files past
//! the read cap. Shared by the `walk` fuzz target and
//! `pki-core/tests/fuzz_regressions.rs` (included with `#[path]`), so a crash
//! input replays exactly.
//!
//! Nothing is ever created through an existing entry: every file is made
//! with `O_CREAT|O_EXCL` and every directory with `mkdir`, so links that lead
//! out of the tree (`..`, `/`) are never written through.
//!
//! The bytes are read as a little program: each operation is one byte (which
//! operation, and in which directory), one byte of name, and arguments.

use std::path::{Path, PathBuf};

/// Names the layouts and the file mapping look for, and a few others.
const NAMES: &[&str] = &[
    "pki",
    "etcd",
    "cluster",
    "nodes",
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "sa.key",
    "sa.pub",
    "server.crt",
    "front-proxy-ca.crt",
    "admin.conf",
    "kubelet.conf",
    "scheduler.conf",
    "kpki-manifest.json",
    "ca.pem",
    "ca-key.pem",
    "admin.kubeconfig",
    "x.pem",
    "loop",
    "up",
    "manifests",
    "d",
];

/// Where symbolic links point.
const TARGETS: &[&str] = &[
    ".",
    "..",
    "../..",
    "/",
    "/dev/zero",
    "/dev/null",
    "nowhere",
    "ca.crt",
    "pki",
    "../pki",
    "loop",
    "ca.key",
];

/// PEM labels for wrapped contents.
const LABELS: &[&str] = &[
    "CERTIFICATE",
    "EC PRIVATE KEY",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "PUBLIC KEY",
];

/// The most operations one input runs.
const MAX_OPS: usize = 48;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn pick<'n>(&mut self, from: &[&'n str]) -> &'n str {
        let i = usize::from(self.byte().unwrap_or(0)) % from.len();
        from[i]
    }
}

/// Creates the tree `data` describes under `root` (an empty directory).
/// Errors (a name taken twice, a file where a directory was wanted) are
/// skipped: any tree is a good tree.
pub fn build(root: &Path, data: &[u8]) {
    let mut b = Bytes(data);
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    for _ in 0..MAX_OPS {
        let Some(op) = b.byte() else { break };
        let parent = dirs[usize::from(op >> 3) % dirs.len()].clone();
        let name = b.pick(NAMES);
        let path = parent.join(name);
        match op & 7 {
            0 => {
                if std::fs::create_dir(&path).is_ok() {
                    dirs.push(path);
                }
            }
            1 | 2 => {
                let len = usize::from(b.byte().unwrap_or(0));
                let raw = b.take(len).to_vec();
                let contents = if op & 7 == 2 {
                    // PEM-wrapped, sometimes with a damaged frame.
                    let label = b.pick(LABELS);
                    let body = base64_lines(&raw);
                    match len % 4 {
                        0 => format!("-----BEGIN {label}----\n{body}-----END {label}-----\n"),
                        1 => format!("-----BEGIN {label}-----\n{body}"),
                        _ => format!("-----BEGIN {label}-----\n{body}-----END {label}-----\n"),
                    }
                    .into_bytes()
                } else {
                    raw
                };
                create(&path, &contents);
            }
            3 => {
                let target = b.pick(TARGETS);
                let _ = std::os::unix::fs::symlink(target, &path);
            }
            4 => {
                let _ = rustix::fs::mkfifoat(rustix::fs::CWD, &path, rustix::fs::Mode::from(0o600));
            }
            5 => {
                // A kubeconfig naming a sibling (maybe a FIFO) as its CA.
                let ca = b.pick(NAMES);
                let text = format!(
                    "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority: {ca}\nusers:\n- name: u\n  user:\n    client-certificate: {ca}\n    client-key: {ca}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
                );
                create(&path, text.as_bytes());
            }
            6 => {
                // A chain of nested directories, up to 24 deep.
                let depth = usize::from(b.byte().unwrap_or(0)) % 24;
                // One level at a time: `create_dir` never follows a link
                // out of the tree, as `create_dir_all` would.
                let mut p = path;
                let mut made = std::fs::create_dir(&p).is_ok();
                for _ in 0..depth {
                    if !made {
                        break;
                    }
                    p = p.join("d");
                    made = std::fs::create_dir(&p).is_ok();
                }
                if made {
                    dirs.push(p);
                }
            }
            _ => {
                // A sparse file just past the read cap.
                if let Ok(f) = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    let _ = f.set_len(4 * 1024 * 1024 + 1);
                }
            }
        }
    }
}

/// Writes a new file; never through an existing entry (a FIFO made earlier
/// would block the writer forever, a link would lead out of the tree).
fn create(path: &Path, contents: &[u8]) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        let _ = f.write_all(contents);
    }
}

/// Standard base64 in 64-column lines (no dependency for so little).
fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                s.push(char::from(A[((v >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in s.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out
}
