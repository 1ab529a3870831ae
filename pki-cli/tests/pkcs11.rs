//! CA keys held in a PKCS#11 token (`[ca_keys] store = "pkcs11"`), with a
//! real SoftHSM2 token each test initialises in its own temp dir, real
//! openssl, pkcs11-tool and etcd. Fails (never skips) when a tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::etcd::{Client, Etcd, free_ports, wait_healthy};
use common::{manifest, openssl_verify, run, snapshot, tool, verifies};
use serde_json::Value;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";
/// Distinctive, so that finding it in any output means the PIN leaked.
const WRONG_PIN: &str = "735190";

/// A SoftHSM2 token of its own (`kpki`, user PIN 1234) and a work dir.
struct Hsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Hsm {
    fn new() -> Self {
        assert!(
            Path::new(MODULE).is_file(),
            "{MODULE} is missing: run scripts/install-test-deps"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let h = Self { dir, conf };
        let (ok, out, err) = run(h
            .env(&mut Command::new(tool("softhsm2-util")))
            .args(["--init-token", "--free", "--label", "kpki"])
            .args(["--pin", PIN, "--so-pin", "5678"]));
        assert!(ok, "softhsm2-util --init-token: {out}{err}");
        h
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("SOFTHSM2_CONF", &self.conf)
    }

    /// `kpki ARGS` with the token's config and the right PIN.
    fn kpki(&self, args: &[&str]) -> (bool, String, String) {
        self.kpki_pin(args, Some(PIN))
    }

    fn kpki_pin(&self, args: &[&str], pin: Option<&str>) -> (bool, String, String) {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
        self.env(&mut c).args(args).env_remove("KPKI_PKCS11_PIN");
        if let Some(p) = pin {
            c.env("KPKI_PKCS11_PIN", p);
        }
        run(&mut c)
    }

    fn kpki_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kpki(args);
        assert!(ok, "kpki {args:?} failed:\n{out}\n{err}");
        out
    }

    /// The labels of the public-key objects in the token (pkcs11-tool).
    fn pubkey_labels(&self) -> BTreeSet<String> {
        let (ok, out, err) = run(self
            .env(&mut Command::new(tool("pkcs11-tool")))
            .args(["--module", MODULE, "--login", "--pin", PIN])
            .args(["--list-objects", "--type", "pubkey"]));
        assert!(ok, "pkcs11-tool --list-objects: {out}{err}");
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("label:"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    /// Writes a spec (kubeadm preset, one control-plane node on 127.0.0.1).
    fn spec(&self, name: &str, alg: &str, cas: Option<&[&str]>, csr_signing: bool) -> PathBuf {
        let mut s = format!(
            "profile = \"kubeadm\"\n[crypto]\nalgorithm = \"{alg}\"\n\
             [[control_plane]]\nname = \"cp1\"\naddress = \"127.0.0.1\"\n\
             [ca_keys]\nstore = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"kpki\"\n\
             pin_env = \"KPKI_PKCS11_PIN\"\n"
        );
        if let Some(cas) = cas {
            let list: Vec<String> = cas.iter().map(|c| format!("\"{c}\"")).collect();
            s.push_str(&format!("cas = [{}]\n", list.join(", ")));
        }
        if !csr_signing {
            s.push_str("[controller_manager]\ncsr_signing = false\n");
        }
        let p = self.path().join(format!("{name}.toml"));
        fs::write(&p, s).unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every manifest entry, by id.
fn entries(out: &Path) -> BTreeMap<String, Value> {
    manifest(out)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// The cluster/ certificate file of an entry (None: only in a kubeconfig).
fn cert_file_of(out: &Path, e: &Value) -> Option<PathBuf> {
    e["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.starts_with("cluster/") && f.ends_with(".crt"))
        .map(|f| out.join(f))
}

fn cert_file(out: &Path, e: &Value) -> PathBuf {
    cert_file_of(out, e).unwrap_or_else(|| panic!("no cluster/ certificate in {e}"))
}

fn openssl(args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new(tool("openssl")).args(args));
    assert!(ok, "openssl {args:?}: {err}");
    out
}

/// The SPKI (PEM) of a certificate.
fn cert_pubkey(p: &Path) -> String {
    openssl(&["x509", "-in", s(p), "-noout", "-pubkey"])
}

/// Every leaf of the manifest verifies against its CA's certificate, and
/// the CA certificates (self-signed, signed by the token) verify too.
/// Returns how many leaves were checked.
fn verify_all(out: &Path) -> usize {
    let e = entries(out);
    let mut n = 0;
    for (id, x) in e.iter().filter(|(_, x)| x["kind"] != "keypair") {
        let issuer = x["issuer"].as_str().unwrap();
        let ca = cert_file(out, &e[issuer]);
        let Some(cert) = cert_file_of(out, x) else {
            continue;
        };
        assert!(
            verifies(&ca, &cert),
            "{id} does not verify against {issuer}"
        );
        if x["kind"] == "leaf" {
            n += 1;
        }
    }
    n
}

/// Every file under `out` holding a private key: no one of them is the key
/// of a token-held CA (its public half is not the CA certificate's), no
/// key path of a token CA exists, and the token lists exactly the keys.
fn assert_no_token_key_on_disk(h: &Hsm, out: &Path, token_cas: &[&str], labels: &[&str]) {
    let e = entries(out);
    let mut ca_pubs = BTreeMap::new();
    for id in token_cas {
        let entry = &e[*id];
        for f in entry["files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            assert!(
                !f.ends_with(".key"),
                "{id} is token-held but the manifest lists a key file {f}"
            );
        }
        ca_pubs.insert(cert_pubkey(&cert_file(out, entry)), *id);
    }
    let mut keys = 0;
    for (path, bytes) in snapshot(out) {
        let text = String::from_utf8_lossy(&bytes);
        if !text.contains("PRIVATE KEY-----") {
            continue;
        }
        keys += 1;
        let public = openssl(&["pkey", "-in", s(&out.join(&path)), "-pubout"]);
        assert!(
            !ca_pubs.contains_key(&public),
            "{path} holds the private key of token-held {}",
            ca_pubs[&public]
        );
    }
    assert!(keys > 5, "only {keys} key files: the walk found nothing");
    let listed = h.pubkey_labels();
    let want: BTreeSet<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    assert_eq!(listed, want, "pkcs11-tool lists other keys");
}

/// Starts etcd from `kpki flags etcd` (paths in the node bundle) on free
/// ports, then writes and reads a key over mutual TLS with the
/// healthcheck-client certificate.
fn etcd_serves_mutual_tls(h: &Hsm, spec: &Path, out: &Path) {
    let bundle = out.join("nodes/cp1");
    let flags = h.kpki_ok(&[
        "flags",
        "etcd",
        "--format",
        "args",
        "--node",
        "cp1",
        "--spec",
        s(spec),
        "--root",
        s(&bundle),
    ]);
    let args: Vec<&str> = flags.lines().collect();
    assert!(args.contains(&"--client-cert-auth=true"), "{args:?}");
    let ports = free_ports(2);
    let mut etcd = vec![Etcd::spawn(
        &args,
        (ports[0], ports[1]),
        &format!("cp1=https://127.0.0.1:{}", ports[1]),
        &h.path().join("etcd-data"),
        h.path().join("etcd.log"),
    )];
    let client = etcd[0].client_url.clone();
    let healthcheck = Client::healthcheck(&bundle.join("etc/kubernetes/pki/etcd"));
    wait_healthy(&mut etcd, &healthcheck, &client, &[]);
    healthcheck.put_get(&client, "/kpki/hsm", "ok");
    drop(etcd);
}

/// Issue with some CAs in the token, then check, re-run, renew.
fn issue_check_rerun_renew(h: &Hsm, spec: &Path, out: &Path, token_cas: &[&str]) {
    h.kpki_ok(&["issue", "--spec", s(spec), "--out", s(out)]);
    let labels: Vec<&str> = token_cas.to_vec();
    assert_no_token_key_on_disk(h, out, token_cas, &labels);
    assert!(verify_all(out) >= 7);
    let (ok, stdout, err) = h.kpki(&["check", "--spec", s(spec), s(out)]);
    assert!(ok, "check: {stdout}{err}");
    assert!(stdout.contains("findings: none"), "{stdout}");
    // A re-run finds the token keys and changes no byte.
    let before = snapshot(out);
    h.kpki_ok(&["issue", "--spec", s(spec), "--out", s(out)]);
    assert!(before == snapshot(out), "a re-run changed files");
    // renew --all re-signs every leaf through the token.
    let old = entries(out);
    h.kpki_ok(&["renew", "--all", "--spec", s(spec), "--out", s(out)]);
    let new = entries(out);
    for ca in token_cas {
        assert_eq!(old[*ca]["sha256"], new[*ca]["sha256"], "renew changed {ca}");
        for (id, e) in &new {
            if e["issuer"] == *ca && id != ca {
                assert_ne!(old[id]["serial"], e["serial"], "{id} was not renewed");
                if let Some(c) = cert_file_of(out, e) {
                    assert!(verifies(&cert_file(out, &new[*ca]), &c), "{id}");
                }
            }
        }
    }
    assert_no_token_key_on_disk(h, out, token_cas, &labels);
    let (ok, stdout, err) = h.kpki(&["check", "--spec", s(spec), s(out)]);
    assert!(ok && stdout.contains("findings: none"), "{stdout}{err}");
}

/// `rotate begin --all-cas / switch / finish`: each token CA gets a second
/// token key (`<id>#2`); after switch every leaf verifies against the new
/// CA certificate; after finish the CA files hold only it; no key file of
/// a token CA appears at any phase (not under rotation/ nor archive/).
fn rotate_through_the_token(h: &Hsm, spec: &Path, out: &Path, token_cas: &[&str]) {
    let old = entries(out);
    let old_pubs: BTreeMap<&str, String> = token_cas
        .iter()
        .map(|ca| (*ca, cert_pubkey(&cert_file(out, &old[*ca]))))
        .collect();
    let rotate = |args: &[&str]| {
        let mut a = vec!["rotate"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--spec", s(spec), "--out", s(out)]);
        h.kpki_ok(&a);
    };
    let mut labels: Vec<String> = token_cas.iter().map(|c| (*c).to_owned()).collect();
    labels.extend(token_cas.iter().map(|c| format!("{c}#2")));
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    rotate(&["begin", "--all-cas"]);
    for ca in token_cas {
        assert!(out.join(format!("rotation/{ca}.new.crt")).is_file());
        assert!(!out.join(format!("rotation/{ca}.new.key")).exists());
        assert!(!out.join(format!("rotation/{ca}.old.key")).exists());
    }
    assert_no_token_key_on_disk(h, out, token_cas, &labels);
    rotate(&["switch"]);
    let switched = entries(out);
    for ca in token_cas {
        let new_ca = out.join(format!("rotation/{ca}.new.crt"));
        assert_ne!(
            cert_pubkey(&new_ca),
            old_pubs[ca],
            "{ca}: the staged CA has the old key"
        );
        let mut n = 0;
        for (id, e) in switched
            .iter()
            .filter(|(i, e)| e["issuer"] == *ca && i != ca)
        {
            if let Some(c) = cert_file_of(out, e) {
                assert!(verifies(&new_ca, &c), "{id} is not signed by the new {ca}");
                n += 1;
            }
        }
        assert!(n > 0, "{ca} signs no file");
    }
    assert_no_token_key_on_disk(h, out, token_cas, &labels);
    rotate(&["finish"]);
    assert!(
        !out.join("rotation").exists()
            || fs::read_dir(out.join("rotation")).unwrap().next().is_none()
    );
    assert_no_token_key_on_disk(h, out, token_cas, &labels);
    assert!(verify_all(out) >= 7);
    let done = entries(out);
    for ca in token_cas {
        assert_ne!(
            old[*ca]["sha256"], done[*ca]["sha256"],
            "{ca} did not rotate"
        );
        let text = fs::read_to_string(cert_file(out, &done[*ca])).unwrap();
        assert_eq!(
            text.matches("BEGIN CERTIFICATE").count(),
            1,
            "{ca} still holds the old CA"
        );
    }
    let (ok, stdout, err) = h.kpki(&["check", "--spec", s(spec), s(out)]);
    assert!(ok && stdout.contains("findings: none"), "{stdout}{err}");
    // And a re-run after the rotation is a no-op too.
    let before = snapshot(out);
    h.kpki_ok(&["issue", "--spec", s(spec), "--out", s(out)]);
    assert!(
        before == snapshot(out),
        "a re-run after the rotation changed files"
    );
}

#[test]
fn kubeadm_etcd_and_front_proxy_cas_in_the_token_ecdsa() {
    let h = Hsm::new();
    let spec = h.spec(
        "kpki",
        "ecdsa-p256",
        Some(&["etcd-ca", "front-proxy-ca"]),
        true,
    );
    let out = h.path().join("out");
    issue_check_rerun_renew(&h, &spec, &out, &["etcd-ca", "front-proxy-ca"]);
    // The cluster CA stays a file (the controller-manager signs CSRs with it).
    assert!(out.join("cluster/pki/ca.key").is_file());
    assert!(!out.join("cluster/pki/etcd/ca.key").exists());
    assert!(!out.join("cluster/pki/front-proxy-ca.key").exists());
    etcd_serves_mutual_tls(&h, &spec, &out);
    rotate_through_the_token(&h, &spec, &out, &["etcd-ca", "front-proxy-ca"]);
    fs::remove_dir_all(h.path().join("etcd-data")).unwrap();
    etcd_serves_mutual_tls(&h, &spec, &out);
}

/// The kubeadm preset's CAs.
const EVERY_CA: [&str; 3] = ["etcd-ca", "front-proxy-ca", "kubernetes-ca"];

/// Every CA in the token (CSR signing off), `alg`: issue, check, re-run,
/// renew. Returns the token, the spec and the output dir.
fn every_ca_in_the_token(alg: &str) -> (Hsm, PathBuf, PathBuf) {
    let h = Hsm::new();
    let spec = h.spec("kpki", alg, None, false);
    let out = h.path().join("out");
    issue_check_rerun_renew(&h, &spec, &out, &EVERY_CA);
    (h, spec, out)
}

#[test]
fn every_ca_in_the_token_with_csr_signing_off_rsa() {
    let (h, spec, out) = every_ca_in_the_token("rsa-2048");
    let cas = EVERY_CA;
    for f in [
        "cluster/pki/ca.key",
        "cluster/pki/signing/ca.key",
        "cluster/pki/signing/ca.crt",
    ] {
        assert!(!out.join(f).exists(), "{f} written");
    }
    let flags = h.kpki_ok(&[
        "flags",
        "kube-controller-manager",
        "--node",
        "cp1",
        "--spec",
        s(&spec),
    ]);
    assert!(!flags.contains("cluster-signing"), "{flags}");
    // RSA: sha256WithRSAEncryption from CKM_SHA256_RSA_PKCS.
    let text = openssl(&[
        "x509",
        "-in",
        s(&out.join("cluster/pki/apiserver.crt")),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    etcd_serves_mutual_tls(&h, &spec, &out);
    rotate_through_the_token(&h, &spec, &out, &cas);
}

/// Wrong PIN, unknown token label, unloadable module: exit 2 naming it,
/// nothing written, the PIN never printed.
#[test]
fn token_failures_exit_2_naming_it_and_write_nothing() {
    let h = Hsm::new();
    let spec = h.spec("kpki", "ecdsa-p256", Some(&["etcd-ca"]), true);
    let out = h.path().join("out");
    h.kpki_ok(&["issue", "--spec", s(&spec), "--out", s(&out)]);
    let text = fs::read_to_string(&spec).unwrap();
    let bad_label = h.path().join("label.toml");
    fs::write(
        &bad_label,
        text.replace("token_label = \"kpki\"", "token_label = \"nope\""),
    )
    .unwrap();
    let bad_module = h.path().join("module.toml");
    fs::write(&bad_module, text.replace(MODULE, "/nonexistent/libnope.so")).unwrap();
    let cases: [(&Path, Option<&str>, &str); 4] = [
        (&spec, Some(WRONG_PIN), "PIN rejected"),
        (&bad_label, Some(PIN), "no token labelled \"nope\""),
        (&bad_module, Some(PIN), "/nonexistent/libnope.so"),
        (&spec, None, "KPKI_PKCS11_PIN"),
    ];
    for (spec, pin, want) in cases {
        for args in [
            vec![
                "issue",
                "--spec",
                s(spec),
                "--out",
                s(&out),
                "--replace-ca-keys",
            ],
            vec!["renew", "--all", "--spec", s(spec), "--out", s(&out)],
        ] {
            let before = snapshot(&out);
            let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
            h.env(&mut c).args(&args).env_remove("KPKI_PKCS11_PIN");
            if let Some(p) = pin {
                c.env("KPKI_PKCS11_PIN", p);
            }
            let o = c.output().unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
            );
            assert_eq!(o.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
            assert!(stderr.contains(want), "{args:?}: {stderr}");
            for p in [PIN, WRONG_PIN] {
                assert!(
                    !stdout.contains(p) && !stderr.contains(p),
                    "PIN printed: {stdout}{stderr}"
                );
            }
            assert!(before == snapshot(&out), "{args:?} changed out/");
        }
    }
    assert_eq!(h.pubkey_labels(), BTreeSet::from(["etcd-ca".to_owned()]));
}

/// X001: the cluster-signing CA in `cas` with CSR signing on is a plan
/// error; not with CSR signing off, nor when that CA stays on disk.
#[test]
fn x001_when_the_cluster_signing_ca_is_token_held() {
    let h = Hsm::new();
    let plan = |spec: &Path| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
        h.env(&mut c).args(["plan", "--spec", s(spec)]);
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let on = h.spec("on", "ecdsa-p256", Some(&["kubernetes-ca"]), true);
    let (code, out) = plan(&on);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("X001") && out.contains("kubernetes-ca"),
        "{out}"
    );
    assert!(out.contains("csr_signing = false"), "{out}");
    let all = h.spec("all", "ecdsa-p256", None, true);
    assert!(plan(&all).1.contains("X001"));
    // An error finding: issue writes nothing.
    let out_dir = h.path().join("out");
    let (ok, _, err) = h.kpki(&["issue", "--spec", s(&on), "--out", s(&out_dir)]);
    assert!(!ok && err.contains("error finding"), "{err}");
    assert!(h.pubkey_labels().is_empty());
    for (name, cas, csr) in [
        ("off", Some(&["kubernetes-ca"][..]), false),
        ("alloff", None, false),
        ("others", Some(&["etcd-ca", "front-proxy-ca"][..]), true),
    ] {
        let spec = h.spec(name, "ecdsa-p256", cas, csr);
        let (code, out) = plan(&spec);
        assert!(!out.contains("X001"), "{name}: {out}");
        assert_eq!(code, Some(0), "{name}: {out}");
    }
    let (ok, out, _) = h.kpki(&["explain", "X001"]);
    assert!(
        ok && out.contains("csr_signing = false") && out.contains("cas"),
        "{out}"
    );
}

/// Both at once: `[root] external = true` and the etcd and front-proxy CAs
/// token-held. `kpki csr` makes those two keys inside the token (the cluster
/// CA's in a file), openssl signs the three requests with a root made here,
/// `kpki import` places them, `kpki issue` signs every leaf; no key of a
/// token CA is on disk, every leaf chains to the root through its
/// intermediate, and a re-run changes no byte.
#[test]
fn external_root_over_token_held_intermediates() {
    let h = Hsm::new();
    let spec = h.spec(
        "kpki",
        "ecdsa-p256",
        Some(&["etcd-ca", "front-proxy-ca"]),
        true,
    );
    let mut text = fs::read_to_string(&spec).unwrap();
    text.push_str("[root]\nexternal = true\n");
    fs::write(&spec, text).unwrap();
    let out = h.path().join("out");
    let o = ["--spec", s(&spec), "--out", s(&out)];
    let with = |cmd: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(o.iter())
            .map(|a| (*a).to_owned())
            .collect()
    };

    let (ok, stdout, err) = h.kpki(&strs(&with(&["issue"])));
    assert!(!ok, "issue before import succeeded: {stdout}");
    assert_eq!(
        format!("{stdout}{err}").matches("X002").count().min(1),
        1,
        "{stdout}{err}"
    );
    h.kpki_ok(&strs(&with(&["csr"])));
    let labels = h.pubkey_labels();
    assert!(
        labels.contains("etcd-ca") && labels.contains("front-proxy-ca"),
        "the token holds {labels:?}"
    );
    assert!(!labels.contains("kubernetes-ca"), "{labels:?}");
    // A second `kpki csr` reuses the token keys: same requests, no new key.
    let requests = snapshot(&out.join("csr"));
    h.kpki_ok(&strs(&with(&["csr"])));
    assert!(
        requests == snapshot(&out.join("csr")),
        "csr changed its requests"
    );
    assert_eq!(h.pubkey_labels(), labels);

    let (root, root_key) = common::make_root(h.path());
    let mut import = with(&["import"]);
    for id in ["kubernetes-ca", "etcd-ca", "front-proxy-ca"] {
        let crt = h.path().join(format!("{id}.crt"));
        common::sign_csr(
            &out.join(format!("csr/{id}.csr")),
            &root,
            &root_key,
            &crt,
            3650,
            None,
        );
        import.push(crt.display().to_string());
    }
    import.push(root.display().to_string());
    h.kpki_ok(&strs(&import));
    h.kpki_ok(&strs(&with(&["issue"])));

    assert_no_token_key_on_disk(
        &h,
        &out,
        &["etcd-ca", "front-proxy-ca"],
        &["etcd-ca", "front-proxy-ca"],
    );
    // Every leaf: root trusted, its CA's intermediate untrusted.
    let e = entries(&out);
    let mut leaves = 0;
    for (id, x) in e.iter().filter(|(_, x)| x["kind"] == "leaf") {
        let Some(cert) = cert_file_of(&out, x) else {
            continue;
        };
        let issuer = x["issuer"].as_str().unwrap();
        let intermediate = h.path().join(format!("{issuer}.crt"));
        let untrusted = ["-untrusted", s(&intermediate)];
        let (good, msg) = openssl_verify(&root, &untrusted, &cert);
        assert!(good, "{id} does not chain to the root: {msg}");
        // Not to the root alone: the intermediate is needed.
        assert!(
            !verifies(&root, &cert),
            "{id} verifies against the root alone"
        );
        leaves += 1;
    }
    assert!(leaves >= 7, "only {leaves} leaves");
    let (ok, stdout, err) = h.kpki(&["check", "--spec", s(&spec), s(&out)]);
    assert!(ok && stdout.contains("findings: none"), "{stdout}{err}");
    let before = snapshot(&out);
    h.kpki_ok(&strs(&with(&["issue"])));
    assert!(before == snapshot(&out), "a re-run changed files");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The spec `h.spec(..)` writes, with the PIN from `pin_file = "pin"`
/// (relative: beside the spec) instead of `pin_env`.
fn with_pin_file(spec: &Path) -> PathBuf {
    let text = fs::read_to_string(spec).unwrap();
    assert!(text.contains("pin_env = \"KPKI_PKCS11_PIN\"\n"));
    let p = spec.with_file_name("pin-file.toml");
    fs::write(
        &p,
        text.replace("pin_env = \"KPKI_PKCS11_PIN\"\n", "pin_file = \"pin\"\n"),
    )
    .unwrap();
    p
}

/// Writes the PIN file beside the specs: 0600, a trailing newline.
fn write_pin_file(h: &Hsm, pin: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = h.path().join("pin");
    let _ = fs::remove_file(&p);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(format!("{pin}\n").as_bytes()).unwrap();
    p
}

/// `pin_file` instead of `pin_env`: issue, renew and check work with the
/// PIN read from a 0600 file and no PIN in the environment; a wrong PIN in
/// the file, or no file, is exit 2 naming the file, nothing written, and
/// the PIN is never printed.
#[test]
fn pin_from_a_0600_file() {
    let h = Hsm::new();
    let spec = with_pin_file(&h.spec("kpki", "ecdsa-p256", Some(&["etcd-ca"]), true));
    let out = h.path().join("out");
    let pin = write_pin_file(&h, PIN);
    let o = ["--spec", s(&spec), "--out", s(&out)];
    for args in [
        vec!["issue"],
        vec!["renew", "--all"],
        vec!["check", "--spec", s(&spec), s(&out)],
    ] {
        let args: Vec<&str> = if args[0] == "check" {
            args
        } else {
            args.iter().chain(o.iter()).copied().collect()
        };
        let (ok, stdout, err) = h.kpki_pin(&args, None);
        assert!(ok, "{args:?} with the PIN in a file: {stdout}{err}");
        assert!(
            !stdout.contains(PIN) && !err.contains(PIN),
            "PIN printed: {stdout}{err}"
        );
    }
    assert_eq!(h.pubkey_labels(), BTreeSet::from(["etcd-ca".to_owned()]));
    assert!(!out.join("cluster/pki/etcd/ca.key").exists());
    assert!(verify_all(&out) >= 7);

    write_pin_file(&h, WRONG_PIN);
    let missing = h.path().join("missing.toml");
    fs::write(
        &missing,
        fs::read_to_string(&spec)
            .unwrap()
            .replace("pin_file = \"pin\"", "pin_file = \"no-such-pin\""),
    )
    .unwrap();
    let no_file = h.path().join("no-such-pin");
    for (spec, want) in [
        (
            spec.as_path(),
            format!("PIN rejected by token \"kpki\" (from {})", pin.display()),
        ),
        (missing.as_path(), no_file.display().to_string()),
    ] {
        let before = snapshot(&out);
        let args = ["renew", "--all", "--spec", s(spec), "--out", s(&out)];
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
        h.env(&mut c).args(args).env_remove("KPKI_PKCS11_PIN");
        let o = c.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(2), "{stdout}{stderr}");
        assert!(stderr.contains(&want), "want {want}: {stderr}");
        for p in [PIN, WRONG_PIN] {
            assert!(
                !stdout.contains(p) && !stderr.contains(p),
                "PIN printed: {stdout}{stderr}"
            );
        }
        assert!(before == snapshot(&out), "a failed renew changed out/");
    }
}

/// ECDSA P-384 CAs in the token (every CA, CSR signing off): CKM_ECDSA over
/// a SHA-384 digest. openssl verifies every chain; the CA and leaf
/// signatures are ecdsa-with-SHA384; check, re-run and renew as with P-256.
#[test]
fn every_ca_in_the_token_ecdsa_p384() {
    let (_h, _, out) = every_ca_in_the_token("ecdsa-p384");
    for f in [
        "cluster/pki/ca.crt",
        "cluster/pki/apiserver.crt",
        "cluster/pki/etcd/ca.crt",
        "cluster/pki/etcd/server.crt",
        "cluster/pki/front-proxy-client.crt",
    ] {
        let text = openssl(&["x509", "-in", s(&out.join(f)), "-noout", "-text"]);
        assert!(
            text.contains("Signature Algorithm: ecdsa-with-SHA384"),
            "{f}: {text}"
        );
        assert!(text.contains("NIST CURVE: P-384"), "{f}: {text}");
    }
}

/// `issue --replace-ca-keys` with token CAs: each gets a new generation in
/// the token (`<id>#2`), its certificate holds the new key, every leaf it
/// signs is re-signed (new serial, verifies against the new CA, not the
/// old one); no key of a token CA on disk; a re-run changes nothing.
#[test]
fn replace_ca_keys_makes_a_new_token_generation() {
    let h = Hsm::new();
    let token_cas = ["etcd-ca", "front-proxy-ca"];
    let spec = h.spec("kpki", "ecdsa-p256", Some(&token_cas), true);
    let out = h.path().join("out");
    h.kpki_ok(&["issue", "--spec", s(&spec), "--out", s(&out)]);
    let old = entries(&out);
    let saved = h.path().join("old");
    fs::create_dir(&saved).unwrap();
    let mut old_ca = BTreeMap::new();
    for ca in token_cas {
        let p = saved.join(format!("{ca}.crt"));
        fs::copy(cert_file(&out, &old[ca]), &p).unwrap();
        old_ca.insert(ca, p);
    }
    h.kpki_ok(&[
        "issue",
        "--spec",
        s(&spec),
        "--out",
        s(&out),
        "--replace-ca-keys",
    ]);
    let labels = ["etcd-ca", "etcd-ca#2", "front-proxy-ca", "front-proxy-ca#2"];
    assert_no_token_key_on_disk(&h, &out, &token_cas, &labels);
    let new = entries(&out);
    for ca in token_cas {
        let new_ca = cert_file(&out, &new[ca]);
        assert_ne!(cert_pubkey(&new_ca), cert_pubkey(&old_ca[ca]), "{ca}");
        let mut n = 0;
        for (id, e) in new.iter().filter(|(i, e)| e["issuer"] == ca && *i != ca) {
            assert_ne!(old[id]["serial"], e["serial"], "{id} was not re-signed");
            if let Some(c) = cert_file_of(&out, e) {
                assert!(verifies(&new_ca, &c), "{id} is not signed by the new {ca}");
                assert!(
                    !verifies(&old_ca[ca], &c),
                    "{id} verifies with the old {ca}"
                );
                n += 1;
            }
        }
        assert!(n > 0, "{ca} signs no file");
    }
    assert!(verify_all(&out) >= 7);
    let (ok, stdout, err) = h.kpki(&["check", "--spec", s(&spec), s(&out)]);
    assert!(ok && stdout.contains("findings: none"), "{stdout}{err}");
    let before = snapshot(&out);
    h.kpki_ok(&["issue", "--spec", s(&spec), "--out", s(&out)]);
    assert!(before == snapshot(&out), "a re-run changed files");
    assert_no_token_key_on_disk(&h, &out, &token_cas, &labels);
}

/// `kpki rotate ARGS` aborted (like `kill -9`) right after its `n`th file.
fn rotate_killed(h: &Hsm, spec: &Path, out: &Path, args: &[&str], n: usize) {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kpki"));
    h.env(&mut c)
        .arg("rotate")
        .args(args)
        .args(["--spec", s(spec), "--out", s(out)])
        .env("KPKI_PKCS11_PIN", PIN);
    common::run_killed_after_writes(&mut c, n);
}

/// `rotate begin --all-cas` with token CAs killed at three moments (after
/// the manifest's "in progress", while staging, near the end), and once
/// between a token key's generation and its certificate (the key made
/// with pkcs11-tool, as a killed run leaves it): the next phase is
/// refused, `begin` again completes it without another token key, and
/// switch and finish then complete the rotation (every check of
/// `rotate_through_the_token`).
#[test]
fn killed_token_rotation_begin_recovers() {
    let token_cas = ["etcd-ca", "front-proxy-ca"];
    for (n, orphan) in [(1, true), (1, false), (4, false), (20, false)] {
        let h = Hsm::new();
        let spec = h.spec("kpki", "ecdsa-p256", Some(&token_cas), true);
        let out = h.path().join("out");
        h.kpki_ok(&["issue", "--spec", s(&spec), "--out", s(&out)]);
        rotate_killed(&h, &spec, &out, &["begin", "--all-cas"], n);
        let (ok, _, err) = h.kpki(&["rotate", "switch", "--spec", s(&spec), "--out", s(&out)]);
        assert!(!ok && err.contains("kpki rotate begin"), "after {n}: {err}");
        if orphan {
            let id: String = b"etcd-ca#2".iter().map(|b| format!("{b:02x}")).collect();
            let (ok, o, e) = run(h
                .env(&mut Command::new(tool("pkcs11-tool")))
                .args(["--module", MODULE, "--login", "--pin", PIN])
                .args(["--keypairgen", "--key-type", "EC:prime256v1"])
                .args(["--label", "etcd-ca#2", "--id", &id]));
            assert!(ok, "pkcs11-tool --keypairgen: {o}{e}");
        }
        rotate_through_the_token(&h, &spec, &out, &token_cas);
    }
}
