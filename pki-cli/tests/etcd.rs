//! The etcd certificates `kpki issue` writes (kubeadm profile, ECDSA P-256)
//! run a real mutual-TLS etcd: one member, then three members on loopback.
//! Needs /usr/bin/etcd and /usr/bin/etcdctl; fails (never skips) without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::etcd::{Client, Etcd, HEALTH_TIMEOUT, clean_env, free_ports, tls_flags, wait_healthy};
use common::{kpki, run, tool};
use serde_json::Value;

/// Log lines that mean a certificate was refused although it should not be.
const TLS_COMPLAINTS: [&str; 2] = ["incompatible key usage", "bad certificate"];

/// A kubeadm-profile spec whose etcd members live on loopback addresses
/// of their own (127.0.0.2, .3, ...: every node needs its own address). The
/// tests serve them all on 127.0.0.1 (free ports), and peers dial from
/// 127.0.0.1, which etcd checks against the peer certificate's IP SANs: each
/// member lists it as an extra address.
fn spec(members: &[&str]) -> String {
    let mut s = String::from(
        "profile = \"kubeadm\"\n\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"127.0.0.1\"\n",
    );
    for (i, m) in members.iter().enumerate() {
        s.push_str(&format!(
            "\n[[etcd]]\nname = \"{m}\"\naddress = \"127.0.0.{}\"\nextra_ips = [\"127.0.0.1\"]\n",
            i + 2
        ));
    }
    s
}

/// Writes the spec for `members` into `dir` and issues a PKI into `dir/name`.
fn issue(dir: &Path, name: &str, members: &[&str]) -> PathBuf {
    let spec_path = dir.join(format!("{name}.toml"));
    fs::write(&spec_path, spec(members)).unwrap();
    let out = dir.join(name);
    let o = kpki()
        .arg("issue")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kpki issue failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The files one etcd member serves with.
struct MemberCerts {
    ca: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    peer_crt: PathBuf,
    peer_key: PathBuf,
}

impl MemberCerts {
    fn in_dir(etcd_dir: &Path) -> Self {
        let c = Self {
            ca: etcd_dir.join("ca.crt"),
            server_crt: etcd_dir.join("server.crt"),
            server_key: etcd_dir.join("server.key"),
            peer_crt: etcd_dir.join("peer.crt"),
            peer_key: etcd_dir.join("peer.key"),
        };
        for p in [
            &c.ca,
            &c.server_crt,
            &c.server_key,
            &c.peer_crt,
            &c.peer_key,
        ] {
            assert!(p.is_file(), "kpki did not write {}", p.display());
        }
        c
    }
}

/// If the member at `urls[i]` leads, moves leadership to the next member
/// (`etcdctl move-leader`) and waits until it has moved.
fn hand_over_leadership(c: &Client, urls: &[String], i: usize) {
    let status = |url: &str| -> (u64, u64) {
        let (ok, out, err) = c.etcdctl(url, &["endpoint", "status", "-w", "json"]);
        assert!(ok, "endpoint status {url}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let s = &v[0]["Status"];
        (
            s["header"]["member_id"].as_u64().unwrap(),
            s["leader"].as_u64().unwrap(),
        )
    };
    let (me, leader) = status(&urls[i]);
    if me != leader {
        return;
    }
    let next = &urls[(i + 1) % urls.len()];
    let (target, _) = status(next);
    let (ok, _, err) = c.etcdctl(&urls[i], &["move-leader", &format!("{target:x}")]);
    assert!(ok, "move-leader: {err}");
    for _ in 0..50 {
        if status(next).1 == target {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("leadership did not move to {next}");
}

impl Etcd {
    /// Starts one member with client and peer mutual TLS.
    fn start(
        name: &str,
        certs: &MemberCerts,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
        work: &Path,
    ) -> Self {
        let mut args: Vec<OsString> = [
            "--name",
            name,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "kpki-etcd-test",
        ]
        .map(OsString::from)
        .to_vec();
        args.extend(tls_flags(
            &certs.ca,
            (&certs.server_crt, &certs.server_key),
            (&certs.peer_crt, &certs.peer_key),
        ));
        Self::spawn(
            &args,
            (client_port, peer_port),
            initial_cluster,
            &work.join(format!("data-{name}")),
            work.join(format!("etcd-{name}.log")),
        )
    }

    /// Log lines that complain about certificates.
    fn tls_complaints(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| TLS_COMPLAINTS.iter().any(|c| l.contains(c)))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn single_member_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = issue(tmp.path(), "pki", &["e1"]);
    let other = issue(tmp.path(), "other", &["e1"]);
    let etcd_dir = pki.join("cluster/pki/etcd");
    let cluster_pki = pki.join("cluster/pki");
    assert_ne!(
        fs::read(etcd_dir.join("ca.crt")).unwrap(),
        fs::read(other.join("cluster/pki/etcd/ca.crt")).unwrap(),
        "two issues must create two different etcd CAs"
    );

    let certs = MemberCerts::in_dir(&etcd_dir);
    let ports = free_ports(2);
    let initial = format!("e1=https://127.0.0.1:{}", ports[1]);
    let mut members = vec![Etcd::start(
        "e1",
        &certs,
        ports[0],
        ports[1],
        &initial,
        tmp.path(),
    )];
    let endpoint = members[0].client_url.clone();

    let health = Client::new(
        &certs.ca,
        &etcd_dir.join("healthcheck-client.crt"),
        &etcd_dir.join("healthcheck-client.key"),
    );
    let apiserver = Client::new(
        &certs.ca,
        &cluster_pki.join("apiserver-etcd-client.crt"),
        &cluster_pki.join("apiserver-etcd-client.key"),
    );
    // A healthcheck client from another PKI, presented to this one's etcd.
    let stranger = Client::new(
        &certs.ca,
        &other.join("cluster/pki/etcd/healthcheck-client.crt"),
        &other.join("cluster/pki/etcd/healthcheck-client.key"),
    );

    wait_healthy(&mut members, &health, &endpoint, &[]);
    let etcd = &members[0];

    let (ok, out, err) = health.etcdctl(&endpoint, &["endpoint", "health"]);
    assert!(ok, "healthcheck client: {out}{err}");
    assert!(
        out.contains("is healthy") || err.contains("is healthy"),
        "{out}{err}"
    );

    let (ok, out, err) = apiserver.etcdctl(&endpoint, &["put", "/kpki", "hello"]);
    assert!(ok, "apiserver-etcd-client put: {out}{err}");
    assert_eq!(out.trim(), "OK", "{err}");
    let (ok, out, err) = apiserver.etcdctl(&endpoint, &["get", "/kpki", "--print-value-only"]);
    assert!(ok, "apiserver-etcd-client get: {out}{err}");
    assert_eq!(out.trim(), "hello", "{err}");

    let complaints = etcd.tls_complaints();
    assert!(
        complaints.is_empty(),
        "etcd refused a good certificate:\n{}",
        complaints.join("\n")
    );

    // The foreign client certificate must be refused by the TLS handshake.
    let log_before = etcd.log_text().len();
    let (ok, out, err) = stranger.etcdctl(&endpoint, &["get", "/kpki", "--print-value-only"]);
    assert!(
        !ok,
        "a client certificate from another CA was accepted: {out}{err}"
    );
    assert!(!out.contains("hello"), "{out}");
    // ... and the refusal happened at the TLS layer of a live server.
    let log = etcd.log_text();
    let after = &log[log_before.min(log.len())..];
    assert!(
        after.contains("rejected connection")
            && after.contains("certificate signed by unknown authority"),
        "etcd did not log a rejected handshake for the foreign client:\n{after}\nclient: {err}"
    );
    let (ok, out, err) = health.etcdctl(&endpoint, &["endpoint", "health"]);
    assert!(ok, "etcd unhealthy after the refused client: {out}{err}");
}

#[test]
fn three_members_on_loopback() {
    let names = ["e1", "e2", "e3"];
    let tmp = tempfile::tempdir().unwrap();
    let pki = issue(tmp.path(), "pki", &names);
    let ports = free_ports(2 * names.len());
    let initial = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}=https://127.0.0.1:{}", ports[2 * i + 1]))
        .collect::<Vec<_>>()
        .join(",");

    let shared_ca = fs::read(pki.join("cluster/pki/etcd/ca.crt")).unwrap();
    let mut members = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let dir = pki.join(format!("nodes/{n}/etc/kubernetes/pki/etcd"));
        let certs = MemberCerts::in_dir(&dir);
        assert_eq!(
            fs::read(&certs.ca).unwrap(),
            shared_ca,
            "{n} must ship the shared etcd CA"
        );
        members.push(Etcd::start(
            n,
            &certs,
            ports[2 * i],
            ports[2 * i + 1],
            &initial,
            tmp.path(),
        ));
    }
    let endpoints = members
        .iter()
        .map(|m| m.client_url.clone())
        .collect::<Vec<_>>()
        .join(",");

    let e1_dir = pki.join("nodes/e1/etc/kubernetes/pki/etcd");
    let health = Client::new(
        &e1_dir.join("ca.crt"),
        &e1_dir.join("healthcheck-client.crt"),
        &e1_dir.join("healthcheck-client.key"),
    );
    let cluster_pki = pki.join("cluster/pki");
    let apiserver = Client::new(
        &cluster_pki.join("etcd/ca.crt"),
        &cluster_pki.join("apiserver-etcd-client.crt"),
        &cluster_pki.join("apiserver-etcd-client.key"),
    );

    let first_url = members[0].client_url.clone();
    wait_healthy(&mut members, &health, &first_url, &["--cluster"]);
    let (ok, out, err) = health.etcdctl(&endpoints, &["endpoint", "health"]);
    assert!(ok, "endpoint health on all three: {out}{err}");

    let (ok, out, err) = apiserver.etcdctl(&endpoints, &["member", "list", "-w", "json"]);
    assert!(ok, "member list: {out}{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let listed = list["members"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{out}");
    let mut started: Vec<&str> = listed
        .iter()
        .filter(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    started.sort_unstable();
    assert_eq!(started, names, "all three members started: {out}");

    let first = &members[0].client_url;
    let third = &members[2].client_url;
    let (ok, out, err) = apiserver.etcdctl(first, &["put", "/kpki/ha", "replicated"]);
    assert!(ok, "put via e1: {out}{err}");
    let (ok, out, err) = apiserver.etcdctl(third, &["get", "/kpki/ha", "--print-value-only"]);
    assert!(ok, "get via e3: {out}{err}");
    assert_eq!(out.trim(), "replicated", "{err}");

    for m in &members {
        let complaints = m.tls_complaints();
        assert!(
            complaints.is_empty(),
            "{} refused a good certificate:\n{}",
            m.log.display(),
            complaints.join("\n")
        );
    }
}

/// Starts a member only from `kpki flags etcd --node NAME --format args`
/// (paths re-rooted at the node bundle), plus a data dir and free ports.
fn start_from_kpki_flags(
    spec: &Path,
    bundle: &Path,
    name: &str,
    ports: (u16, u16),
    initial: &str,
    work: &Path,
) -> Etcd {
    let o = kpki()
        .args([
            "flags", "etcd", "--format", "args", "--node", name, "--spec",
        ])
        .arg(spec)
        .arg("--root")
        .arg(bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let args: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for must in ["--client-cert-auth=true", "--peer-client-cert-auth=true"] {
        assert!(
            args.iter().any(|a| a == must),
            "{must} missing from {args:?}"
        );
    }
    // Test-only overrides: free ports instead of 2379/2380, a temp data dir.
    Etcd::spawn(
        &args,
        ports,
        initial,
        &work.join(format!("flags-data-{name}")),
        work.join(format!("etcd-flags-{name}.log")),
    )
}

#[test]
fn etcd_started_from_kpki_flags_serves_mutual_tls() {
    for names in [&["f1"][..], &["f1", "f2", "f3"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let pki = issue(tmp.path(), "pki", names);
        let spec = tmp.path().join("pki.toml");
        let ports = free_ports(2 * names.len());
        let initial = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}=https://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Etcd> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bundle = pki.join(format!("nodes/{n}"));
                start_from_kpki_flags(
                    &spec,
                    &bundle,
                    n,
                    (ports[2 * i], ports[2 * i + 1]),
                    &initial,
                    tmp.path(),
                )
            })
            .collect();
        let d = pki.join(format!("nodes/{}/etc/kubernetes/pki/etcd", names[0]));
        let health = Client::new(
            &d.join("ca.crt"),
            &d.join("healthcheck-client.crt"),
            &d.join("healthcheck-client.key"),
        );
        let first = members[0].client_url.clone();
        let extra: &[&str] = if names.len() > 1 { &["--cluster"] } else { &[] };
        wait_healthy(&mut members, &health, &first, extra);
        let last = members[names.len() - 1].client_url.clone();
        let (ok, out, err) = health.etcdctl(&first, &["put", "/kpki/flags", "ok"]);
        assert!(ok, "{out}{err}");
        let (ok, out, err) = health.etcdctl(&last, &["get", "/kpki/flags", "--print-value-only"]);
        assert!(ok && out.trim() == "ok", "{out}{err}");
        for m in &members {
            assert!(m.tls_complaints().is_empty(), "{}", m.log_text());
        }
    }
}

/// Runs a step `kpki issue` printed (`on NODE: COMMAND`) against the test
/// cluster: install paths point into `bundle`, member URLs at the test ports.
fn run_step(step: &str, bundle: &Path, urls: &[(String, String)]) -> (bool, String, String) {
    let (_, cmd) = step.split_once(": ").unwrap();
    let mut cmd = cmd.replace(
        "/etc/kubernetes",
        &bundle.join("etc/kubernetes").display().to_string(),
    );
    for (from, to) in urls {
        cmd = cmd.replace(from.as_str(), to);
    }
    let mut c = Command::new("bash");
    clean_env(&mut c).arg("-c").arg(&cmd).stdin(Stdio::null());
    run(&mut c)
}

/// [`run_step`], retried while etcd refuses a reconfiguration because not
/// every member has been connected for a few seconds ("unhealthy cluster"),
/// bounded by [`HEALTH_TIMEOUT`].
fn run_step_retrying(
    step: &str,
    bundle: &Path,
    urls: &[(String, String)],
) -> (bool, String, String) {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let (ok, out, err) = run_step(step, bundle, urls);
        if ok || !err.contains("unhealthy cluster") || Instant::now() > deadline {
            return (ok, out, err);
        }
        sleep(Duration::from_millis(500));
    }
}

/// The printed step that contains `what`.
fn step_with(stdout: &str, what: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains(what))
        .map(|l| l.trim().split_once(". ").map_or(l, |(_, s)| s).to_owned())
        .unwrap_or_else(|| panic!("no step with `{what}`:\n{stdout}"))
}

#[test]
fn a_member_added_and_removed_on_a_running_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("pki.toml");
    let with_output = |members: &[&str]| format!("{}\n[output]\ndir = \"pki\"\n", spec(members));
    let issue_spec = |members: &[&str]| {
        fs::write(&spec_path, with_output(members)).unwrap();
        let o = kpki().arg("issue").arg(&spec_path).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = issue_spec(&["e1", "e2", "e3"]);
    assert_eq!(code, Some(0), "{err}");
    let pki = tmp.path().join("pki");
    let ports = free_ports(8);
    let names = ["e1", "e2", "e3", "e4"];
    // Spec URLs (member i on 127.0.0.(i+2)) -> the test's ports on 127.0.0.1.
    let urls: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .flat_map(|(i, _)| {
            [
                (
                    format!("https://127.0.0.{}:2379", i + 2),
                    format!("https://127.0.0.1:{}", ports[2 * i]),
                ),
                (
                    format!("https://127.0.0.{}:2380", i + 2),
                    format!("https://127.0.0.1:{}", ports[2 * i + 1]),
                ),
            ]
        })
        .collect();
    let initial = |n: usize| {
        names[..n]
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{m}=https://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut members: Vec<Etcd> = names[..3]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            start_from_kpki_flags(
                &spec_path,
                &pki.join(format!("nodes/{n}")),
                n,
                (ports[2 * i], ports[2 * i + 1]),
                &initial(3),
                tmp.path(),
            )
        })
        .collect();
    let d = pki.join("nodes/e1/etc/kubernetes/pki/etcd");
    let client = Client::new(
        &d.join("ca.crt"),
        &d.join("healthcheck-client.crt"),
        &d.join("healthcheck-client.key"),
    );
    let first = members[0].client_url.clone();
    wait_healthy(&mut members, &client, &first, &["--cluster"]);
    let (ok, out, err) = client.etcdctl(&first, &["put", "/kpki/membership", "before-e4"]);
    assert!(ok, "{out}{err}");

    // Two changes at once are refused before anything is written.
    let before = common::snapshot(&pki);
    let (code, _, err) = issue_spec(&["e1", "e2", "e3", "e4", "e5"]);
    assert_eq!(code, Some(1), "{err}");
    let flat = err.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("M001") && flat.contains("one member change at a time"),
        "{err}"
    );
    assert_eq!(common::snapshot(&pki), before, "nothing written");

    // Add e4: kpki prints `etcdctl member add`; run it, then start e4 from its flags.
    let (code, stdout, err) = issue_spec(&names);
    assert_eq!(code, Some(0), "{err}");
    let add = step_with(&stdout, "member add e4 --peer-urls=https://127.0.0.5:2380");
    assert!(
        add.starts_with("on e1: ") && add.contains("--cacert="),
        "{add}"
    );
    let (ok, out, err) = run_step_retrying(&add, &pki.join("nodes/e1"), &urls);
    assert!(ok, "{add}\n{out}{err}");
    let flags = kpki()
        .args([
            "flags", "etcd", "--node", "e4", "--format", "args", "--spec",
        ])
        .arg(&spec_path)
        .output()
        .unwrap();
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(
        flags.contains("--initial-cluster-state=existing"),
        "{flags}"
    );
    assert!(
        flags.contains("--initial-cluster=e1=https://127.0.0.2:2380,e2=https://127.0.0.3:2380,e3=https://127.0.0.4:2380,e4=https://127.0.0.5:2380"),
        "{flags}"
    );
    // Members issued before keep their flags.
    let e1 = kpki()
        .args([
            "flags", "etcd", "--node", "e1", "--format", "args", "--spec",
        ])
        .arg(&spec_path)
        .output()
        .unwrap();
    let e1 = String::from_utf8(e1.stdout).unwrap();
    assert!(e1.contains("--initial-cluster-state=new"), "{e1}");
    assert!(!e1.contains("e4="), "{e1}");
    assert!(
        fs::read_to_string(pki.join("cluster/membership.md"))
            .unwrap()
            .contains("member add e4"),
        "membership.md has the step"
    );
    members.push(start_from_kpki_flags(
        &spec_path,
        &pki.join("nodes/e4"),
        "e4",
        (ports[6], ports[7]),
        &initial(4),
        tmp.path(),
    ));
    let e4 = members[3].client_url.clone();
    wait_healthy(&mut members, &client, &e4, &["--cluster"]);
    let (ok, list, err) = client.etcdctl(&first, &["member", "list"]);
    assert!(ok, "{err}");
    assert_eq!(
        list.lines().filter(|l| l.contains(", started, ")).count(),
        4,
        "{list}"
    );
    let (ok, out, err) = client.etcdctl(&e4, &["get", "/kpki/membership", "--print-value-only"]);
    assert!(ok && out.trim() == "before-e4", "{out}{err}");

    // Remove e4: kpki prints `etcdctl member remove`; run it and stop e4.
    let (code, stdout, err) = issue_spec(&names[..3]);
    assert_eq!(code, Some(0), "{err}");
    let remove = step_with(&stdout, "member remove");
    let (ok, out, err) = run_step_retrying(&remove, &pki.join("nodes/e1"), &urls);
    assert!(ok, "{remove}\n{out}{err}");
    let mut gone = members.pop().unwrap();
    let _ = gone.child.kill();
    let _ = gone.child.wait();
    wait_healthy(&mut members, &client, &first, &["--cluster"]);
    let (ok, list, err) = client.etcdctl(&first, &["member", "list"]);
    assert!(ok, "{err}");
    assert_eq!(list.lines().count(), 3, "{list}");
    // The third field is the name (member IDs are hex and may contain "e4").
    assert!(
        !list.lines().any(|l| l.split(", ").nth(2) == Some("e4")),
        "{list}"
    );
    // e4 leaves every --initial-cluster; its bundle stays until --prune.
    let e1 = kpki()
        .args([
            "flags", "etcd", "--node", "e1", "--format", "args", "--spec",
        ])
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(!String::from_utf8(e1.stdout).unwrap().contains("e4="));
    assert!(pki.join("nodes/e4").exists());
    for m in &members {
        assert!(m.tls_complaints().is_empty(), "{}", m.log_text());
    }
}

/// Stops a member gracefully (SIGTERM: it hands leadership over) and waits for it.
fn stop_gracefully(m: &mut Etcd) {
    let (ok, _, err) = run(Command::new(tool("kill")).args(["-TERM", &m.child.id().to_string()]));
    assert!(ok, "kill -TERM: {err}");
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    while m.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "etcd did not stop: {}",
            m.log_text()
        );
        sleep(Duration::from_millis(50));
    }
}

/// Staged rotation of both etcd CAs of the isolated preset (peer and client
/// CAs differ) on a running 3-member cluster started only from `kpki flags
/// etcd`: after each phase every member restarts, one at a time, while a
/// writer holding all three endpoints keeps writing. No write may fail and
/// every member stays in the cluster.
#[test]
fn rotating_both_etcd_cas_with_rolling_restarts_loses_no_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let names = ["e1", "e2", "e3"];
    let spec_path = tmp.path().join("rot.toml");
    fs::write(
        &spec_path,
        spec(&names).replace("profile = \"kubeadm\"", "profile = \"isolated\""),
    )
    .unwrap();
    let pki = tmp.path().join("rot");
    let o = kpki()
        .arg("issue")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&pki)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let etcd_dir = |n: &str| pki.join(format!("nodes/{n}/etc/kubernetes/pki/etcd"));
    let peer_ca_before = fs::read(etcd_dir("e1").join("peer-ca.crt")).unwrap();
    let ca_before = fs::read(etcd_dir("e1").join("ca.crt")).unwrap();
    assert_ne!(
        peer_ca_before, ca_before,
        "isolated: peer and client CAs differ"
    );
    let ports = free_ports(6);
    let initial = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}=https://127.0.0.1:{}", ports[2 * i + 1]))
        .collect::<Vec<_>>()
        .join(",");
    let start = |i: usize| {
        start_from_kpki_flags(
            &spec_path,
            &pki.join(format!("nodes/{}", names[i])),
            names[i],
            (ports[2 * i], ports[2 * i + 1]),
            &initial,
            tmp.path(),
        )
    };
    let mut members: Vec<Etcd> = (0..3).map(start).collect();
    let d = etcd_dir("e1");
    let client = || {
        Client::new(
            &d.join("ca.crt"),
            &d.join("healthcheck-client.crt"),
            &d.join("healthcheck-client.key"),
        )
    };
    let endpoints = members
        .iter()
        .map(|m| m.client_url.clone())
        .collect::<Vec<_>>()
        .join(",");
    wait_healthy(&mut members, &client(), &endpoints, &["--cluster"]);

    // The writer: every put through all three endpoints, each a new etcdctl
    // (so it reads the client certificate and CA bundle as they are now).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, endpoints, c) = (stop.clone(), endpoints.clone(), client());
        std::thread::spawn(move || {
            let (mut ok_count, mut failures) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let put = || c.etcdctl(&endpoints, &["put", "/kpki/rotation", &i.to_string()]);
                let (mut ok, mut out, mut err) = put();
                // etcd's own availability errors are retried, as clients
                // do, up to 5 times: a member that has just started answers
                // its client port over HTTP/1 before its gRPC service is up
                // ("missing content-type field"), and on a loaded machine a
                // restart can still cost an election ("request timed out,
                // possibly due to previous leader failure", "leader
                // changed"), and a proposal made while leadership is being
                // handed over is dropped by raft ("raft proposal dropped",
                // etcd's ErrProposalDropped, which the runbook's leader
                // hand-over causes on purpose). The put is idempotent (same
                // key, same value).
                // Any other failure (a TLS or certificate error above all)
                // counts at once, and so does a put still failing after 5.
                let transient = |e: &str| {
                    [
                        "missing content-type field",
                        "etcdserver: request timed out",
                        "etcdserver: leader changed",
                        "etcdserver: no leader",
                        "raft proposal dropped",
                    ]
                    .iter()
                    .any(|t| e.contains(t))
                };
                let mut tries = 1;
                while !ok && tries < 5 && transient(&err) {
                    eprintln!("put {i}: etcd not available yet (try {tries}); retried");
                    sleep(Duration::from_millis(300));
                    (ok, out, err) = put();
                    tries += 1;
                }
                if ok {
                    ok_count += 1;
                } else {
                    failures.push(format!("put {i}: {out}{err}"));
                }
                sleep(Duration::from_millis(20));
            }
            (ok_count, failures, i)
        })
    };
    for phase in [
        &["begin", "--ca", "etcd-ca", "--ca", "etcd-peer-ca"][..],
        &["switch"][..],
        &["finish"][..],
    ] {
        let o = kpki()
            .arg("rotate")
            .args(phase)
            .arg("--spec")
            .arg(&spec_path)
            .arg("--out")
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rotate {phase:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Rolling restart, one member at a time, each healthy before the
        // next; a leader hands leadership over before it stops (as the
        // runbook says), so no write waits on an election.
        for i in 0..3 {
            let urls: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
            hand_over_leadership(&client(), &urls, i);
            stop_gracefully(&mut members[i]);
            members[i] = start(i);
            wait_healthy(&mut members, &client(), &endpoints, &["--cluster"]);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (ok_count, failures, last) = writer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed writes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ok_count >= 20, "only {ok_count} writes during the rotation");
    println!("{ok_count} writes, none failed, across 3 phases x 3 restarts");
    let (ok, out, err) =
        client().etcdctl(&endpoints, &["get", "/kpki/rotation", "--print-value-only"]);
    assert!(ok && out.trim() == last.to_string(), "{out}{err}");
    let (ok, list, err) = client().etcdctl(&endpoints, &["member", "list"]);
    assert!(ok, "{err}");
    assert_eq!(
        list.lines().filter(|l| l.contains(", started, ")).count(),
        3,
        "{list}"
    );
    // Both CAs were replaced: one certificate each, not the old one.
    for (f, before) in [("peer-ca.crt", &peer_ca_before), ("ca.crt", &ca_before)] {
        let now = fs::read_to_string(etcd_dir("e1").join(f)).unwrap();
        assert_eq!(now.matches("BEGIN CERTIFICATE").count(), 1, "{f}");
        assert_ne!(now.as_bytes(), before.as_slice(), "{f} not rotated");
    }
    for m in &members {
        assert!(m.tls_complaints().is_empty(), "{}", m.log_text());
    }
}
