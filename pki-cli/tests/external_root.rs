//! `[root] external = true`: the profile's top CAs are intermediates under a
//! root made here by `openssl` (kpki never sees its key). `kpki csr` writes
//! the requests, openssl signs them, `kpki import` checks and places the
//! certificates, `kpki issue` signs the leaves with the intermediate keys;
//! openssl, etcd, etcdctl and kubectl use the result, and `kpki check`
//! follows every chain to the root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::etcd::{Client, Etcd, free_ports, tls_flags, wait_healthy};
use common::{kpki, make_root, manifest, openssl_verify, run, sign_csr as sign, snapshot, tool};

/// A spec of `profile` with an external root: one control-plane node on
/// 127.0.0.1 and one external etcd member (as in etcd.rs: its own loopback
/// address, and 127.0.0.1 as an extra one, where the test serves it).
fn spec(dir: &Path, profile: &str) -> PathBuf {
    let text = format!(
        "profile = \"{profile}\"\n\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\n[root]\nexternal = true\n\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"127.0.0.1\"\n\n\
         [[etcd]]\nname = \"e1\"\naddress = \"127.0.0.2\"\nextra_ips = [\"127.0.0.1\"]\n"
    );
    let p = dir.join("kpki.toml");
    fs::write(&p, text).unwrap();
    p
}

/// Runs kpki with `args`, returning (exit code, stdout, stderr).
fn k(args: &[&str], spec: &Path) -> (i32, String, String) {
    let o = kpki().args(args).arg("--spec").arg(spec).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str], spec: &Path) -> String {
    let (code, out, err) = k(args, spec);
    assert_eq!(code, 0, "kpki {args:?} failed:\n{out}\n{err}");
    out
}

fn openssl(args: &[&str]) -> (bool, String, String) {
    run(Command::new(tool("openssl")).args(args))
}

/// The top CAs of the output's requests (`csr/<id>.csr`), sorted.
fn requested(out: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(out.join("csr"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".csr")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// csr -> openssl signs every CA request with the root (10 years, more
/// than the leaves' year) -> import; returns the root cert.
fn csr_sign_import(dir: &Path, spec: &Path, chain_in_one_file: bool) -> PathBuf {
    let out = dir.join("out");
    ok(&["csr"], spec);
    let (root, root_key) = make_root(dir);
    let mut files = Vec::new();
    for id in requested(&out) {
        let crt = dir.join(format!("{id}.crt"));
        sign(
            &out.join(format!("csr/{id}.csr")),
            &root,
            &root_key,
            &crt,
            3650,
            None,
        );
        if chain_in_one_file {
            // The intermediate, then the root, in one file.
            let mut pem = fs::read(&crt).unwrap();
            pem.extend(fs::read(&root).unwrap());
            fs::write(&crt, pem).unwrap();
        }
        files.push(crt.display().to_string());
    }
    if !chain_in_one_file {
        files.push(root.display().to_string());
    }
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    let o = ok(&args, spec);
    assert!(o.contains("root CN=corp-root"), "{o}");
    root
}

/// Every certificate file under `dir` (recursively), as relative paths.
fn cert_files(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("BEGIN CERTIFICATE-----"))
        .map(|(p, _)| p)
        .collect()
}

/// The TLS purposes a certificate's extendedKeyUsage allows.
fn purposes(cert: &Path) -> Vec<&'static str> {
    let (good, text, e) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(good, "{e}");
    let mut p = Vec::new();
    if text.contains("TLS Web Server Authentication") {
        p.push("sslserver");
    }
    if text.contains("TLS Web Client Authentication") {
        p.push("sslclient");
    }
    p
}

fn kubectl(args: &[&str]) -> String {
    let (good, o, e) = run(Command::new(tool("kubectl")).args(args));
    assert!(good, "kubectl {args:?}: {o}{e}");
    o
}

fn b64decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

/// `openssl verify -CAfile root -untrusted <intermediate> -purpose P` for
/// every leaf of the manifest: file-backed leaves from cluster/, the client
/// certificates embedded in kubeconfigs through kubectl. Returns how many.
fn verify_every_leaf(out: &Path, root: &Path, work: &Path) -> usize {
    let m = manifest(out);
    let kubeconfigs = m["kubeconfigs"].as_object().unwrap().clone();
    let mut n = 0;
    for e in m["entries"].as_array().unwrap() {
        if e["kind"] != "leaf" {
            continue;
        }
        let id = e["id"].as_str().unwrap();
        let issuer = e["issuer"].as_str().unwrap();
        let intermediate = out.join(format!("external/{issuer}.crt"));
        assert!(
            intermediate.is_file(),
            "{id}: no {}",
            intermediate.display()
        );
        let file = e["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.starts_with("cluster/") && f.ends_with(".crt"));
        let cert = match file {
            Some(f) => out.join(f),
            None => {
                // A client certificate embedded in its kubeconfig.
                let kc = kubeconfigs[id].as_array().unwrap()[0].as_str().unwrap();
                let data = kubectl(&[
                    "--kubeconfig",
                    out.join(kc).to_str().unwrap(),
                    "config",
                    "view",
                    "--raw",
                    "-o",
                    "jsonpath={.users[0].user.client-certificate-data}",
                ]);
                let p = work.join(format!("{}.pem", id.replace('@', "-")));
                fs::write(&p, b64decode(&data)).unwrap();
                p
            }
        };
        let ps = purposes(&cert);
        assert!(!ps.is_empty(), "{id} has no TLS purpose");
        for p in ps {
            let opts = ["-untrusted", intermediate.to_str().unwrap(), "-purpose", p];
            let (good, msg) = openssl_verify(root, &opts, &cert);
            assert!(good, "{id} ({p}) does not verify to the root: {msg}");
        }
        n += 1;
    }
    n
}

/// etcd with client and peer mutual TLS from kpki's cluster/pki/etcd (the
/// trust file holds the etcd intermediate and the root); etcdctl with the
/// healthcheck client and that trust file writes and reads a key.
fn etcd_serves_mutual_tls(out: &Path, work: &Path) {
    let d = out.join("cluster/pki/etcd");
    let ports = free_ports(2);
    let peer_url = format!("https://127.0.0.1:{}", ports[1]);
    let mut args: Vec<OsString> = ["--name", "e1", "--initial-cluster-state", "new"]
        .map(OsString::from)
        .to_vec();
    args.extend(tls_flags(
        &d.join("ca.crt"),
        (&d.join("server.crt"), &d.join("server.key")),
        (&d.join("peer.crt"), &d.join("peer.key")),
    ));
    let mut etcd = vec![Etcd::spawn(
        &args,
        (ports[0], ports[1]),
        &format!("e1={peer_url}"),
        &work.join("etcd-data"),
        work.join("etcd.log"),
    )];
    let client_url = etcd[0].client_url.clone();
    let client = Client::healthcheck(&d);
    wait_healthy(&mut etcd, &client, &client_url, &[]);
    client.put_get(&client_url, "/kpki", "external-root");
    let log = etcd[0].log_text();
    assert!(
        !log.contains("bad certificate") && !log.contains("unknown authority"),
        "etcd refused a certificate:\n{log}"
    );
    drop(etcd);
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn kubeadm_preset_csr_sign_import_issue_with_real_consumers() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), "kubeadm");
    let out = tmp.path().join("out");

    // Before any request: issue waits, one X002 per top CA, writes nothing.
    let (code, o, e) = k(&["issue"], &spec);
    assert_eq!(code, 1, "{o}{e}");
    for ca in ["kubernetes-ca", "etcd-ca", "front-proxy-ca"] {
        assert!(e.contains(&format!("X002 [{ca}]")), "{e}");
    }
    assert!(!out.exists() || cert_files(&out).is_empty());
    // `plan` shows the same findings (and fails).
    let (code, o, _) = k(&["plan"], &spec);
    assert_eq!(code, 1);
    assert_eq!(o.matches("X002").count(), 3, "{o}");

    // csr: keys 0600 in 0700 dirs, and a re-run writes the same requests.
    let o = ok(&["csr"], &spec);
    assert_eq!(o.matches("new key").count(), 3, "{o}");
    assert_eq!(
        requested(&out),
        ["etcd-ca", "front-proxy-ca", "kubernetes-ca"]
    );
    let key = out.join("cluster/pki/ca.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(key.parent().unwrap()), 0o700);
    let before = snapshot(&out);
    let o = ok(&["csr"], &spec);
    assert!(!o.contains("new key"), "{o}");
    assert_eq!(snapshot(&out), before, "a csr re-run changed files");
    let (good, _, e) = openssl(&[
        "req",
        "-verify",
        "-noout",
        "-in",
        out.join("csr/kubernetes-ca.csr").to_str().unwrap(),
    ]);
    assert!(good, "{e}");

    // Requested but not imported: still X002, still nothing written.
    let (code, _, e) = k(&["issue"], &spec);
    assert_eq!(code, 1, "{e}");
    assert_eq!(e.matches("X002").count(), 3, "{e}");
    assert_eq!(snapshot(&out), before, "a waiting issue wrote files");

    // Sign (the chain in one file: intermediate then root), import, issue.
    let root = csr_sign_import(tmp.path(), &spec, true);
    let o = ok(&["issue"], &spec);
    assert!(
        o.contains("adopt   kubernetes-ca: from external/kubernetes-ca.crt"),
        "{o}"
    );

    // Trust files hold intermediate + root; the signer's copy the intermediate only.
    let ca = fs::read_to_string(out.join("cluster/pki/ca.crt")).unwrap();
    assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(ca.ends_with(&fs::read_to_string(&root).unwrap()));
    let signing = fs::read_to_string(out.join("cluster/pki/signing/ca.crt")).unwrap();
    assert_eq!(signing.matches("BEGIN CERTIFICATE").count(), 1);

    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let leaves = verify_every_leaf(&out, &root, &work);
    assert!(leaves >= 12, "only {leaves} leaves verified");

    // kubectl reads a kubeconfig; its CA data reaches the root.
    let admin = out.join("cluster/admin.conf");
    kubectl(&[
        "--kubeconfig",
        admin.to_str().unwrap(),
        "config",
        "view",
        "--raw",
    ]);
    let ca_data = kubectl(&[
        "--kubeconfig",
        admin.to_str().unwrap(),
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    let ca_pem = String::from_utf8(b64decode(&ca_data)).unwrap();
    assert_eq!(ca_pem, ca, "the kubeconfig's CA is not the trust file");

    etcd_serves_mutual_tls(&out, &work);

    // check follows the chains to the root: clean.
    let (code, o, e) = k(&["check", out.to_str().unwrap()], &spec);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("findings: none"), "{o}");
    assert!(o.contains("ca:corp-root"), "{o}");

    // A re-run is a no-op.
    let before = snapshot(&out);
    let o = ok(&["issue"], &spec);
    assert!(o.contains("0 issued, 0 re-issued"), "{o}");
    assert_eq!(snapshot(&out), before, "a re-run changed files");

    // renew re-signs the leaves with the intermediates; they still verify.
    let apiserver = fs::read(out.join("cluster/pki/apiserver.crt")).unwrap();
    ok(&["renew", "--all"], &spec);
    assert_ne!(
        fs::read(out.join("cluster/pki/apiserver.crt")).unwrap(),
        apiserver
    );
    assert_eq!(
        fs::read_to_string(out.join("cluster/pki/ca.crt")).unwrap(),
        ca
    );
    verify_every_leaf(&out, &root, &work);
    let (code, o, e) = k(&["check", out.to_str().unwrap()], &spec);
    assert_eq!(code, 0, "{o}{e}");

    // A CA the root signs is never rotated into a self-signed one.
    let before = snapshot(&out);
    let (code, o, e) = k(&["rotate", "begin", "--ca", "etcd-ca"], &spec);
    assert_ne!(code, 0, "{o}{e}");
    assert!(e.contains("external root"), "{e}");
    assert_eq!(snapshot(&out), before, "a refused rotation wrote files");
}

#[test]
fn isolated_preset_several_top_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), "isolated");
    let out = tmp.path().join("out");
    // The root as a FILE argument of its own.
    let root = csr_sign_import(tmp.path(), &spec, false);
    assert_eq!(requested(&out).len(), 6, "{:?}", requested(&out));
    ok(&["issue"], &spec);
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let leaves = verify_every_leaf(&out, &root, &work);
    assert!(leaves >= 12, "only {leaves} leaves verified");
    let (code, o, e) = k(&["check", out.to_str().unwrap()], &spec);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("0 error(s), 0 warning(s)"), "{o}");
    let before = snapshot(&out);
    ok(&["issue"], &spec);
    assert_eq!(snapshot(&out), before, "a re-run changed files");
}

/// Asserts an import of `files` is refused with `code`, naming the file, and
/// places nothing.
fn refused(spec: &Path, out: &Path, files: &[&Path], code: &str) {
    let before = snapshot(out);
    let mut args = vec!["import".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (c, o, e) = k(&refs, spec);
    assert_eq!(c, 1, "{o}{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("refused ")).collect();
    assert!(
        lines.iter().any(|l| l.contains(&format!(": {code}: "))),
        "expected {code}:\n{e}"
    );
    for line in &lines {
        assert!(
            files
                .iter()
                .any(|f| line.contains(&f.display().to_string())),
            "the refusal names no file: {line}"
        );
    }
    assert!(e.contains("nothing was imported"), "{e}");
    assert_eq!(snapshot(out), before, "a refused import wrote files");
}

#[test]
fn bad_imports_are_refused_and_nothing_is_placed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = spec(dir, "kubeadm");
    let out = dir.join("out");
    ok(&["csr"], &spec);
    let (root, root_key) = make_root(dir);
    let csr = out.join("csr/kubernetes-ca.csr");

    // A certificate for another key (a request of openssl's own).
    let other_csr = dir.join("other.csr");
    let (good, o, e) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        dir.join("other.key").to_str().unwrap(),
        "-subj",
        "/CN=kubernetes",
        "-out",
        other_csr.to_str().unwrap(),
    ]);
    assert!(good, "{o}{e}");
    let other = dir.join("other.crt");
    sign(
        &other_csr,
        &root,
        &root_key,
        &other,
        3650,
        Some("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign"),
    );
    refused(&spec, &out, &[&other, &root], "T007");

    // CA:FALSE.
    let leafish = dir.join("ca-false.crt");
    sign(
        &csr,
        &root,
        &root_key,
        &leafish,
        3650,
        Some("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature"),
    );
    refused(&spec, &out, &[&leafish, &root], "U004");

    // No keyCertSign.
    let nosign = dir.join("no-keycertsign.crt");
    sign(
        &csr,
        &root,
        &root_key,
        &nosign,
        3650,
        Some("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature"),
    );
    refused(&spec, &out, &[&nosign, &root], "U004");

    // 30 days: shorter than the leaves' year.
    let short = dir.join("short.crt");
    sign(&csr, &root, &root_key, &short, 30, None);
    refused(&spec, &out, &[&short, &root], "S003");

    // All or nothing: a good certificate beside a bad one is not placed either.
    let good_ca = dir.join("kubernetes-ca.crt");
    sign(&csr, &root, &root_key, &good_ca, 3650, None);
    refused(&spec, &out, &[&good_ca, &short, &root], "S003");
    assert!(!out.join("external/kubernetes-ca.crt").exists());

    // The good one alone is placed.
    let o = ok(
        &["import", good_ca.to_str().unwrap(), root.to_str().unwrap()],
        &spec,
    );
    assert!(
        o.contains("import kubernetes-ca: external/kubernetes-ca.crt"),
        "{o}"
    );

    // Leaf requests: valid, with the planned SANs and usages.
    ok(&["csr", "--leaves"], &spec);
    let leaf_csr = out.join("csr/apiserver@cp1.csr");
    let (good, _, e) = openssl(&[
        "req",
        "-verify",
        "-noout",
        "-in",
        leaf_csr.to_str().unwrap(),
    ]);
    assert!(good, "{e}");
    let (good, text, e) = openssl(&["req", "-text", "-noout", "-in", leaf_csr.to_str().unwrap()]);
    assert!(good, "{e}");
    for want in [
        "TLS Web Server Authentication",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "CA:FALSE",
    ] {
        assert!(text.contains(want), "{want} not requested:\n{text}");
    }
    let (_, text, _) = openssl(&[
        "req",
        "-text",
        "-noout",
        "-in",
        out.join("csr/apiserver-kubelet-client@cp1.csr")
            .to_str()
            .unwrap(),
    ]);
    assert!(text.contains("TLS Web Client Authentication"), "{text}");

    // A leaf signed by its CA (the intermediate's key kpki holds) without its SANs.
    let ca_crt = out.join("external/kubernetes-ca.crt");
    let ca_key = out.join("cluster/pki/ca.key");
    let nosans = dir.join("apiserver-nosans.crt");
    sign(
        &leaf_csr,
        &ca_crt,
        &ca_key,
        &nosans,
        365,
        Some(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth",
        ),
    );
    refused(&spec, &out, &[&nosans], "N001");

    // The same leaf signed by the root instead of its planned CA.
    let wrong_ca = dir.join("apiserver-root.crt");
    sign(&leaf_csr, &root, &root_key, &wrong_ca, 365, None);
    refused(&spec, &out, &[&wrong_ca], "T001");

    // Signed as requested: placed, and kept by issue.
    let good_leaf = dir.join("apiserver.crt");
    sign(&leaf_csr, &ca_crt, &ca_key, &good_leaf, 365, None);
    let o = ok(&["import", good_leaf.to_str().unwrap()], &spec);
    assert!(
        o.contains("import apiserver@cp1: cluster/pki/apiserver.crt"),
        "{o}"
    );
    assert_eq!(
        fs::read(out.join("cluster/pki/apiserver.crt")).unwrap(),
        fs::read(&good_leaf).unwrap()
    );
    // Once the other CAs are imported, issue keeps it as it is.
    let mut files = vec![root.display().to_string()];
    for id in ["etcd-ca", "front-proxy-ca"] {
        let crt = dir.join(format!("{id}.crt"));
        sign(
            &out.join(format!("csr/{id}.csr")),
            &root,
            &root_key,
            &crt,
            3650,
            None,
        );
        files.push(crt.display().to_string());
    }
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    ok(&args, &spec);
    ok(&["issue"], &spec);
    assert_eq!(
        fs::read(out.join("cluster/pki/apiserver.crt")).unwrap(),
        fs::read(&good_leaf).unwrap(),
        "issue replaced the imported leaf"
    );
    let (code, o, e) = k(&["check", out.to_str().unwrap()], &spec);
    assert_eq!(code, 0, "{o}{e}");
}

/// Hostile files given to `kpki import`: a FIFO (never waited on), a file
/// over the cap, a directory, garbage: exit 2 naming the file, nothing
/// written to the output.
#[test]
fn import_refuses_what_is_not_a_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "kubeadm");
    ok(&["csr"], &spec);
    let out = dir.path().join("out");
    let before = snapshot(&out);
    let fifo = dir.path().join("chain.crt");
    mkfifo(&fifo);
    let big = dir.path().join("big.crt");
    fs::write(&big, vec![b'A'; 2 * 1024 * 1024]).unwrap();
    let garbage = dir.path().join("garbage.crt");
    fs::write(&garbage, "not a certificate\n").unwrap();
    for (file, says) in [
        (&fifo, "is not a regular file (a FIFO)"),
        (&big, "cap: not read"),
        (
            &dir.path().to_path_buf(),
            "is not a regular file (a directory)",
        ),
        (&garbage, "no PEM block"),
    ] {
        let (code, o, e) = k(&["import", file.to_str().unwrap()], &spec);
        assert_eq!(code, 2, "{}: {o}{e}", file.display());
        assert!(
            e.contains(file.to_str().unwrap()) && e.contains(says),
            "{e}"
        );
        assert!(
            before == snapshot(&out),
            "import of {} changed the output",
            file.display()
        );
    }
}

fn mkfifo(p: &Path) {
    let (good, o, e) = run(Command::new("mkfifo").arg(p));
    assert!(good, "mkfifo: {o}{e}");
}
