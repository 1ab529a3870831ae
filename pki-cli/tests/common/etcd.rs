//! etcd for the tests: free loopback ports, a member process killed on
//! drop, etcdctl with a client certificate, and a bounded health wait.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{run, tool};

/// How long a cluster may take to become healthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// `n` distinct free loopback ports (all listeners are held until every port
/// is chosen, so the ports differ from each other).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Removes ETCD_* / ETCDCTL_* variables so the caller's environment cannot
/// change what is tested.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// etcd's client and peer mutual-TLS flags: `ca` is trusted for both,
/// `server` and `peer` are (certificate, key).
pub fn tls_flags(ca: &Path, server: (&Path, &Path), peer: (&Path, &Path)) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    let mut flag = |f: &str, p: &Path| {
        v.push(f.into());
        v.push(p.into());
    };
    flag("--trusted-ca-file", ca);
    flag("--cert-file", server.0);
    flag("--key-file", server.1);
    flag("--peer-trusted-ca-file", ca);
    flag("--peer-cert-file", peer.0);
    flag("--peer-key-file", peer.1);
    v.push("--client-cert-auth".into());
    v.push("--peer-client-cert-auth".into());
    v
}

/// A running etcd member; killed and reaped on drop (also when a test panics).
pub struct Etcd {
    pub child: Child,
    pub log: PathBuf,
    pub client_url: String,
}

impl Etcd {
    /// Starts `etcd ARGS` served on 127.0.0.1 at `ports` (client, peer),
    /// with the data dir `data_dir` and `--initial-cluster initial`; those
    /// come after ARGS, so they override what ARGS say. stdout and stderr
    /// go to `log`.
    pub fn spawn<S: AsRef<OsStr>>(
        args: &[S],
        ports: (u16, u16),
        initial: &str,
        data_dir: &Path,
        log: PathBuf,
    ) -> Self {
        let log_file = File::create(&log).unwrap();
        let client_url = format!("https://127.0.0.1:{}", ports.0);
        let peer_url = format!("https://127.0.0.1:{}", ports.1);
        let mut cmd = Command::new(tool("etcd"));
        clean_env(&mut cmd)
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        Self {
            child,
            log,
            client_url,
        }
    }

    /// What the member has logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "etcd exited early ({status}); log {}:\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client identity for etcdctl.
pub struct Client {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Client {
    /// A client from its trust file, certificate and key (all must exist).
    pub fn new(ca: &Path, cert: &Path, key: &Path) -> Self {
        for p in [ca, cert, key] {
            assert!(p.is_file(), "missing {}", p.display());
        }
        Self {
            ca: ca.to_path_buf(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }
    }

    /// The healthcheck client of an etcd pki dir (`ca.crt`,
    /// `healthcheck-client.crt`, `healthcheck-client.key`).
    pub fn healthcheck(dir: &Path) -> Self {
        Self::new(
            &dir.join("ca.crt"),
            &dir.join("healthcheck-client.crt"),
            &dir.join("healthcheck-client.key"),
        )
    }

    /// Puts `key` = `value` and reads it back.
    pub fn put_get(&self, endpoints: &str, key: &str, value: &str) {
        let (ok, o, e) = self.etcdctl(endpoints, &["put", key, value]);
        assert!(ok && o.trim() == "OK", "put {key}: {o}{e}");
        let (ok, o, e) = self.etcdctl(endpoints, &["get", key, "--print-value-only"]);
        assert!(ok && o.trim() == value, "get {key}: {o}{e}");
    }

    /// Runs `etcdctl --endpoints ENDPOINTS <TLS flags> ARGS`.
    pub fn etcdctl(&self, endpoints: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(tool("etcdctl"));
        clean_env(&mut cmd)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoints])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(["--dial-timeout", "3s", "--command-timeout", "10s"])
            .args(args)
            .stdin(Stdio::null());
        run(&mut cmd)
    }
}

/// Polls `etcdctl endpoint health ARGS` until it succeeds, bounded by
/// [`HEALTH_TIMEOUT`]; fails with every member's log otherwise (or as soon
/// as a member exits).
pub fn wait_healthy(members: &mut [Etcd], client: &Client, endpoints: &str, args: &[&str]) {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let mut last;
    loop {
        for m in members.iter_mut() {
            m.assert_running();
        }
        let mut full = vec!["endpoint", "health"];
        full.extend_from_slice(args);
        let (ok, out, err) = client.etcdctl(endpoints, &full);
        if ok {
            return;
        }
        last = format!("{out}{err}");
        if Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(250));
    }
    let logs: String = members
        .iter()
        .map(|m| format!("--- {}\n{}", m.log.display(), m.log_text()))
        .collect();
    panic!("etcd not healthy after {HEALTH_TIMEOUT:?}: {last}\n{logs}");
}
