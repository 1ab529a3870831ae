//! Adoption: `kpki init --from DIR` writes a spec whose `[[existing_ca]]`
//! entries keep DIR's CAs; `kpki check DIR --spec` compares DIR with it;
//! `kpki issue` writes a kpki PKI whose CAs are DIR's, byte for byte, and
//! whose leaves verify against DIR's CA files with openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{existing_pki, installs, kpki, openssl_verify, run, snapshot, tool};
use serde_json::Value;

/// One directory to adopt, and the drift (`D` findings: code and
/// certificate id) it may keep: a fault planted in the files that kpki
/// re-issues correctly, which no spec can (or should) describe, or what
/// adoption does not yet reproduce (listed, so that any other drift fails).
struct Fixture {
    name: &'static str,
    dir: PathBuf,
    known_drift: &'static [(&'static str, &'static str)],
    /// No preset fits: `init --from` writes a profile file next to the spec.
    profile_file: bool,
    /// Rule codes of the directory's own mistakes that `init --from` does
    /// not copy (they would make the plan fail): the issued PKI is free of
    /// them (its leaves are correct, so they differ from DIR's: the D003
    /// entries of `known_drift`).
    fixed: &'static [&'static str],
}

/// A clean kubeadm-layout tree with non-default facts (domain, service
/// range, endpoint, extra SANs, extra node IP, validities, subject fields):
/// the `cluster/` directory of a kpki issuance, made once per test process.
fn clean_kubeadm() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adopt-clean");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let spec = base.join("kpki.toml");
        std::fs::write(
            &spec,
            r#"
[cluster]
dns_domain = "corp.example"
service_cidr = "10.100.0.0/16"
endpoint = "api.corp.example:8443"
extra_sans = ["k8s.corp.example", "192.168.5.5"]
[crypto]
ca_validity = "5y"
leaf_validity = "90d"
[subject]
country = "DE"
organizational_unit = "Platform"
[[control_plane]]
name = "m1"
address = "10.1.0.11"
extra_ips = ["10.2.0.11"]
"#,
        )
        .unwrap();
        kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .assert()
            .success();
        base.join("out/cluster")
    })
    .clone()
}

/// Every directory adoption is tested on. More layouts (fixtures/installs/)
/// are added here.
fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "kubeadm",
            dir: existing_pki().join("kubeadm"),
            // The planted faults (README of fixtures/existing-pki) that are
            // drift from any sound plan: admin in system:masters (I003),
            // apiserver without the service IP (N002), etcd server without
            // clientAuth (U003), scheduler CN (I001). (Its etcd peer SANs with
            // loopback, which the kubeadm preset leaves out, are no drift: the
            // adopted profile file adds them.)
            known_drift: &[
                ("D003", "admin"),
                ("D003", "apiserver@cp1"),
                ("D003", "etcd-server@cp1"),
                ("D003", "scheduler@cp1"),
            ],
            profile_file: true,
            fixed: &["N002", "U003", "I001"],
        },
        Fixture {
            name: "cfssl",
            dir: existing_pki().join("cfssl"),
            // Planted faults, not copied: the apiserver without the service
            // IP (N002), the etcd server without clientAuth (U003). The
            // preset's client certificates that live only in kubeconfigs are
            // dropped (a bare cfssl folder has none; its kube-scheduler.pem
            // and friends are not fitted to them).
            known_drift: &[
                ("D003", "apiserver@node-10-0-0-10"),
                ("D003", "etcd-server@node-10-0-0-10"),
            ],
            profile_file: true,
            fixed: &["N002", "U003"],
        },
        // The real-world installations (fixtures/installs/, but
        // systemd-units, whose front-proxy CA key is not on disk: see
        // `a_seed_without_a_ca_key_is_adopted_but_not_issued`). `init --from`
        // fits the preset to each (a profile file: templates the tree lacks
        // dropped, the seed's own CNs, O, SANs and usages); what remains
        // below is what it must not or cannot reproduce.
        Fixture {
            name: "seed-000",
            dir: installs("seed-000"),
            known_drift: &[
                // The seed's mistakes, not copied (the plan would fail): the
                // admin cert with server auth only (U002) and the scheduler
                // CN `kube-scheduler` (I001). The new leaves are correct.
                ("D003", "admin"),
                ("D003", "scheduler@node-192-168-123-244"),
                // Signed by the seventh CA (controller-manager-server-ca),
                // which no preset has: recognition fits `isolated` (six CAs).
                (
                    "D002",
                    "etc/kubernetes/ssl/controller-manager-server-key.pem",
                ),
                ("D002", "etc/kubernetes/ssl/controller-manager-server.pem"),
            ],
            profile_file: true,
            fixed: &["U002", "I001"],
        },
        Fixture {
            name: "seed-001",
            dir: installs("seed-001"),
            // The apiserver cert without kubernetes.default.svc.<domain>
            // (N003): not copied, the new one has it. (Recognition puts a
            // control-plane node and the worker at 10.0.2.15, where the
            // write-up's master is 10.0.4.15: `init --from` keeps one node.)
            //
            // The kubelet's client cert is `system:node:10.0.2.15` (the
            // node registers by IP); a spec node named `10.0.2.15` would put
            // that IP into DNS SANs (N006), so the node keeps the name
            // `node-10-0-2-15` and its new kubelet cert differs (I002 if
            // copied): NOT reproduced.
            known_drift: &[
                ("D003", "apiserver@node-10-0-2-15"),
                ("D003", "kubelet-client@node-10-0-2-15"),
            ],
            profile_file: true,
            fixed: &["N003"],
        },
        Fixture {
            name: "seed-002",
            dir: installs("seed-002"),
            // The seed's `client` profile has no client auth (U002): those
            // certs are not copied, the new ones are client certs. The
            // apiserver cert lacks the address its kubeconfigs dial (N001):
            // not copied, the new one holds the endpoint.
            known_drift: &[
                ("D003", "admin"),
                ("D003", "apiserver-etcd-client@node-192-168-1-26"),
                ("D003", "apiserver-kubelet-client@node-192-168-1-26"),
                ("D003", "apiserver@node-192-168-1-26"),
                ("D003", "controller-manager@node-192-168-1-26"),
                ("D003", "scheduler@node-192-168-1-26"),
            ],
            profile_file: true,
            fixed: &["U002", "N001"],
        },
        Fixture {
            name: "seed-003",
            dir: installs("seed-003"),
            known_drift: &[
                // kubernetes.pem (apiserver serving cert and its etcd and
                // kubelet client cert in one) is recognised as `admin`; its
                // trailing-dot SAN (N006) is not copied.
                ("D003", "admin"),
                // Recognition leaves these out of the single-ca fit: the
                // etcd cert, and the service-account "key" that is a
                // certificate.
                ("D002", "opt/etcd/etcd-key.pem"),
                ("D002", "opt/etcd/etcd.pem"),
                ("D002", "opt/kube-apiserver/service-account.pem"),
                (
                    "D002",
                    "opt/kube-controller-manager/service-account-key.pem",
                ),
            ],
            profile_file: true,
            fixed: &["N006"],
        },
        Fixture {
            name: "kubeadm-etc",
            dir: installs("kubeadm-etc"),
            known_drift: &[],
            profile_file: true,
            fixed: &[],
        },
        Fixture {
            name: "kubeadm-clean",
            dir: clean_kubeadm(),
            known_drift: &[],
            profile_file: false,
            fixed: &[],
        },
    ]
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn adopt_check_issue_renew_on_every_fixture() {
    for fx in fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("kpki.toml");
        let before = snapshot(&fx.dir);
        let o = kpki()
            .args(["init", "--from"])
            .arg(&fx.dir)
            .arg("--out")
            .arg(&spec)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{}: {stderr}", fx.name);
        assert!(stderr.contains("found:   CA "), "{}: {stderr}", fx.name);
        assert!(
            !stderr.contains("PRIVATE KEY"),
            "{}: key material printed",
            fx.name
        );
        let text = std::fs::read_to_string(&spec).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
        let profile = tmp.path().join("kpki.profile.toml");
        assert_eq!(profile.exists(), fx.profile_file, "{}: {text}", fx.name);
        if fx.profile_file {
            assert!(text.contains("profile = \"kpki.profile.toml\""), "{text}");
        }
        // The written spec parses with kpki's own parser (plan reads its CAs).
        let plan = kpki()
            .args(["plan", "--format", "json", "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        let plan = json(&plan);
        let cas: Vec<&Value> = plan["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "ca")
            .collect();
        assert!(!cas.is_empty());
        for c in &cas {
            assert_eq!(c["existing"], true, "{}: {c}", fx.name);
            let src = PathBuf::from(c["source"].as_str().unwrap());
            assert!(src.starts_with(&fx.dir), "{}: {}", fx.name, src.display());
        }

        // check DIR --spec: no drift but the known faults.
        let o = kpki()
            .arg("check")
            .arg(&fx.dir)
            .arg("--spec")
            .arg(&spec)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let doc = json(&o);
        let drift: BTreeSet<(String, String)> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"].as_str().unwrap().starts_with('D'))
            .flat_map(|f| {
                let code = f["code"].as_str().unwrap().to_owned();
                f["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |n| (code.clone(), n.as_str().unwrap().to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let known: BTreeSet<(String, String)> = fx
            .known_drift
            .iter()
            .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
            .collect();
        let unexpected: Vec<_> = drift.difference(&known).collect();
        assert!(
            unexpected.is_empty(),
            "{}: unexpected drift {unexpected:?} in {doc}",
            fx.name
        );
        if fx.known_drift.is_empty() {
            assert!(drift.is_empty(), "{}: {doc}", fx.name);
        }

        // issue: CAs byte-identical, leaves verify against DIR's CA files.
        let out = tmp.path().join("out");
        kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("kpki-manifest.json")).unwrap())
                .unwrap();
        let entries = manifest["entries"].as_array().unwrap();
        let source_of = |id: &str| -> PathBuf {
            cas.iter()
                .find(|c| c["id"] == id)
                .map(|c| PathBuf::from(c["source"].as_str().unwrap()))
                .unwrap()
        };
        let mut leaves = 0;
        for e in entries {
            let files: Vec<&str> = e["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            match e["kind"].as_str().unwrap() {
                "ca" => {
                    let src = source_of(e["id"].as_str().unwrap());
                    let key_src = PathBuf::from(
                        text.lines()
                            .skip_while(|l| *l != format!("cert = \"{}\"", src.display()))
                            .nth(1)
                            .and_then(|l| l.strip_prefix("key = \""))
                            .and_then(|l| l.strip_suffix('"'))
                            .unwrap(),
                    );
                    for f in files {
                        let want = if f.ends_with(".key") { &key_src } else { &src };
                        assert_eq!(
                            std::fs::read(out.join(f)).unwrap(),
                            std::fs::read(want).unwrap(),
                            "{}: {f} is not byte-identical to {}",
                            fx.name,
                            want.display()
                        );
                        if f.ends_with(".key") {
                            use std::os::unix::fs::PermissionsExt;
                            let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode();
                            assert_eq!(mode & 0o777, 0o600, "{}: {f}", fx.name);
                        }
                    }
                }
                "leaf" => {
                    let issuer = e["issuer"].as_str().unwrap();
                    let ca = source_of(issuer);
                    for f in files.iter().filter(|f| f.ends_with(".crt")) {
                        let (ok, msg) = openssl_verify(&ca, &[], &out.join(f));
                        assert!(ok, "{}: {f} against {}: {msg}", fx.name, ca.display());
                        leaves += 1;
                    }
                }
                _ => {}
            }
        }
        assert!(
            leaves >= 5,
            "{}: only {leaves} leaf files verified",
            fx.name
        );
        // The new PKI is what the spec plans: no drift at all.
        let o = kpki()
            .arg("check")
            .arg(&out)
            .arg("--spec")
            .arg(&spec)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let doc = json(&o);
        let drift: Vec<&Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"].as_str().unwrap().starts_with('D'))
            .collect();
        assert!(
            drift.is_empty(),
            "{}: issued PKI drifts: {drift:?}",
            fx.name
        );
        // The directory's mistakes that were not copied are gone.
        for f in doc["findings"].as_array().unwrap() {
            let code = f["code"].as_str().unwrap();
            assert!(
                !fx.fixed.contains(&code),
                "{}: the issued PKI still has {code}: {f}",
                fx.name
            );
        }

        // A second issue is a no-op; renew --all re-issues leaves, never the CAs.
        let first = snapshot(&out);
        kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        assert_eq!(
            snapshot(&out),
            first,
            "{}: second issue changed files",
            fx.name
        );
        kpki()
            .args(["renew", "--all", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let renewed = snapshot(&out);
        let mut leaf_changed = false;
        for e in entries {
            for f in e["files"].as_array().unwrap() {
                let f = f.as_str().unwrap();
                if e["kind"] == "ca" {
                    assert_eq!(renewed[f], first[f], "{}: renew changed {f}", fx.name);
                } else if f.ends_with(".crt") && renewed[f] != first[f] {
                    leaf_changed = true;
                }
            }
        }
        assert!(leaf_changed, "{}: renew --all re-issued no leaf", fx.name);
        // DIR itself was never written.
        assert_eq!(snapshot(&fx.dir), before, "{}: DIR changed", fx.name);
    }
}

#[test]
fn a_seed_without_a_ca_key_is_adopted_but_not_issued() {
    // systemd-units installs the front-proxy CA certificate but never its
    // key (the seed keeps it in its working directory): `init --from` names
    // it, reads the service range from the apiserver's EnvironmentFile, and
    // `issue` refuses to sign without the key, writing nothing.
    let dir = installs("systemd-units");
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    let o = kpki()
        .args(["init", "--from"])
        .arg(&dir)
        .arg("--out")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: CA front-proxy-ca has no private key"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "service CIDR 10.254.0.0/16 (kube-apiserver --service-cluster-ip-range, etc/kubernetes/apiserver.env:"
        ),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("service_cidr = \"10.254.0.0/16\""), "{text}");
    assert!(text.contains("# NO KEY FOUND"), "{text}");
    let out = tmp.path().join("out");
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("front-proxy-ca-key.pem: no such file"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());
}

#[test]
fn fitted_profile_keeps_the_seeds_own_names_and_not_their_mistakes() {
    // seed-002: etcd certs with the seed's CNs and hosts list (shared by
    // the three masters), the service range from the apiserver unit; the
    // `client` profile without client auth is not copied.
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    let o = kpki()
        .args(["init", "--from"])
        .arg(installs("seed-002"))
        .arg("--out")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("service_cidr = \"10.96.0.0/16\""), "{text}");
    let profile: toml::Table = std::fs::read_to_string(tmp.path().join("kpki.profile.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let leaf = |id: &str| -> toml::Table {
        profile["leaf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("no leaf {id}: {profile}"))
            .as_table()
            .unwrap()
            .clone()
    };
    let server = leaf("etcd-server");
    assert_eq!(
        server["common_name"].as_str(),
        Some("kube-etcd"),
        "{server}"
    );
    let sans: Vec<&str> = server["sans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["dns:k8s-master-1", "dns:k8s-master-2", "dns:k8s-master-3"] {
        assert!(sans.contains(&want), "{sans:?}");
    }
    // The seed's `client` certs lack clientAuth (U002): kpki's are clients.
    let admin = leaf("admin");
    assert!(admin.get("ext_key_usage").is_none(), "{admin}");
    assert!(
        stderr.contains("admin: its certificate is not copied (U002 in the plan)"),
        "{stderr}"
    );
    // etcd-healthcheck-client: the seed made none.
    assert!(
        !profile["leaf"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"].as_str() == Some("etcd-healthcheck-client"))
    );
}

#[test]
fn derived_spec_has_the_directory_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    kpki()
        .args(["init", "--from"])
        .arg(clean_kubeadm())
        .arg("--out")
        .arg(&spec)
        .assert()
        .success();
    let text = std::fs::read_to_string(&spec).unwrap();
    for want in [
        "dns_domain = \"corp.example\"",
        "service_cidr = \"10.100.0.0/16\"",
        "endpoint = \"api.corp.example:8443\"",
        "extra_sans = [\"k8s.corp.example\", \"192.168.5.5\"]",
        "ca_validity = \"5y\"",
        "leaf_validity = \"90d\"",
        "country = \"DE\"",
        "organizational_unit = \"Platform\"",
        "name = \"m1\"",
        "address = \"10.1.0.11\"",
        "extra_ips = [\"10.2.0.11\"]",
        "id = \"front-proxy-ca\"",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    // Never overwrites.
    kpki()
        .args(["init", "--from"])
        .arg(clean_kubeadm())
        .arg("--out")
        .arg(&spec)
        .assert()
        .code(2);
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);
}

#[test]
fn a_ca_without_its_key_is_named_and_blocks_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    let src = existing_pki().join("kubeadm");
    let (ok, _, err) = run(Command::new("cp").arg("-a").arg(&src).arg(&dir));
    assert!(ok, "{err}");
    std::fs::remove_file(dir.join("pki/front-proxy-ca.key")).unwrap();
    let spec = tmp.path().join("kpki.toml");
    let o = kpki()
        .args(["init", "--from"])
        .arg(&dir)
        .arg("--out")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: CA front-proxy-ca has no private key"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("# NO KEY FOUND"), "{text}");
    let out = tmp.path().join("out");
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("existing_ca[2].key")
            && stderr.contains("front-proxy-ca.key: no such file"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing may be written");
}

/// A spec with one `[[existing_ca]]` (the kubeadm fixture's, or `entry`).
fn spec_with(tmp: &Path, entry: &str) -> PathBuf {
    let spec = tmp.join("kpki.toml");
    std::fs::write(
        &spec,
        format!(
            "[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n\n[[existing_ca]]\n{entry}"
        ),
    )
    .unwrap();
    spec
}

#[test]
fn existing_ca_errors_name_file_line_and_field_and_write_nothing() {
    let fx = existing_pki().join("kubeadm/pki");
    let p = |f: &str| fx.join(f).display().to_string();
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!(
                "id = \"no-such-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
                p("ca.crt"),
                p("ca.key")
            ),
            "existing_ca[0].id",
            "`no-such-ca` is not a CA of profile `kubeadm`".into(),
        ),
        (
            format!(
                "id = \"kubernetes-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
                p("apiserver.crt"),
                p("apiserver.key")
            ),
            "existing_ca[0].cert",
            format!("{}: is not a CA certificate", p("apiserver.crt")),
        ),
        (
            format!(
                "id = \"kubernetes-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
                p("ca.crt"),
                p("etcd/ca.key")
            ),
            "existing_ca[0].key",
            format!(
                "{}: is not the private key of {}",
                p("etcd/ca.key"),
                p("ca.crt")
            ),
        ),
        (
            format!(
                "id = \"kubernetes-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
                p("missing.crt"),
                p("ca.key")
            ),
            "existing_ca[0].cert",
            format!("{}: no such file", p("missing.crt")),
        ),
        (
            format!(
                "id = \"kubernetes-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
                p("ca.crt"),
                p("ca.crt")
            ),
            "existing_ca[0].key",
            format!("{}: is not a usable private key", p("ca.crt")),
        ),
    ];
    for (entry, field, message) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec_with(tmp.path(), &entry);
        let out = tmp.path().join("out");
        for cmd in ["plan", "issue"] {
            let o = kpki().arg(cmd).arg("--spec").arg(&spec).output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{cmd} {field}");
            let stderr = String::from_utf8_lossy(&o.stderr);
            let line = if field.ends_with(".id") {
                6
            } else if field.ends_with(".cert") {
                7
            } else {
                8
            };
            let at = format!("{}:{line}:", spec.display());
            assert!(
                stderr.contains(&at) && stderr.contains(field) && stderr.contains(&message),
                "{cmd}: want {at} {field}: {message}\ngot {stderr}"
            );
            assert!(!stderr.contains("PRIVATE KEY"));
            assert!(!out.exists(), "{cmd} wrote {}", out.display());
        }
    }
}

#[test]
fn relative_paths_resolve_against_the_spec_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new("cp")
        .arg("-a")
        .arg(existing_pki().join("kubeadm"))
        .arg(tmp.path().join("old")));
    assert!(ok, "{err}");
    let spec = spec_with(
        tmp.path(),
        "id = \"etcd-ca\"\ncert = \"old/pki/etcd/ca.crt\"\nkey = \"old/pki/etcd/ca.key\"\n",
    );
    let o = kpki()
        .args(["plan", "--format", "json", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    let doc = json(&o);
    let etcd = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "etcd-ca")
        .unwrap();
    assert_eq!(etcd["existing"], true);
    assert_eq!(
        etcd["source"].as_str().unwrap(),
        tmp.path().join("old/pki/etcd/ca.crt").display().to_string()
    );
    // A generated CA has no `existing` key.
    let k8s = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "kubernetes-ca")
        .unwrap();
    assert!(k8s.get("existing").is_none(), "{k8s}");
    // The text plan says so too.
    let o = kpki().args(["plan", "--spec"]).arg(&spec).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(existing CA:"), "{text}");
}

#[test]
fn non_canonical_ca_files_are_written_byte_for_byte() {
    // A PKCS#8 key and a certificate file with openssl's text dump before
    // the PEM: kpki's own encoding of either would differ.
    let openssl = tool("openssl");
    let src = existing_pki().join("kubeadm/pki");
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new(&openssl)
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(src.join("ca.key"))
        .arg("-out")
        .arg(tmp.path().join("ca.key")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new(&openssl)
        .args(["x509", "-text", "-in"])
        .arg(src.join("ca.crt"))
        .arg("-out")
        .arg(tmp.path().join("ca.crt")));
    assert!(ok, "{err}");
    let cert = std::fs::read(tmp.path().join("ca.crt")).unwrap();
    let key = std::fs::read(tmp.path().join("ca.key")).unwrap();
    assert!(cert.starts_with(b"Certificate:"));
    assert!(key.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    let spec = spec_with(
        tmp.path(),
        "id = \"kubernetes-ca\"\ncert = \"ca.crt\"\nkey = \"ca.key\"\n",
    );
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("adopt   kubernetes-ca: from "), "{stdout}");
    let out = tmp.path().join("out");
    for dir in ["cluster/pki", "nodes/cp1/etc/kubernetes/pki"] {
        assert_eq!(
            std::fs::read(out.join(dir).join("ca.crt")).unwrap(),
            cert,
            "{dir}"
        );
    }
    assert_eq!(std::fs::read(out.join("cluster/pki/ca.key")).unwrap(), key);
    let (ok, msg) = openssl_verify(
        &tmp.path().join("ca.crt"),
        &[],
        &out.join("cluster/pki/apiserver.crt"),
    );
    assert!(ok, "{msg}");
    // Re-run: no file changes, the CA is kept.
    let before = snapshot(&out);
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(" 0 issued, 0 re-issued"));
    assert_eq!(snapshot(&out), before);
}

#[test]
fn adopting_over_a_generated_ca_reissues_its_leaves_and_renew_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    let plain = "[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n";
    std::fs::write(&spec, plain).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .assert()
        .success();
    let out = tmp.path().join("out");
    let generated = snapshot(&out);
    let fx = existing_pki().join("kubeadm/pki");
    spec_with(
        tmp.path(),
        &format!(
            "id = \"kubernetes-ca\"\ncert = \"{}\"\nkey = \"{}\"\n",
            fx.join("ca.crt").display(),
            fx.join("ca.key").display()
        ),
    );
    // renew never replaces a CA: refused, nothing written.
    let o = kpki()
        .args(["renew", "--all", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("renew never replaces a CA"), "{stderr}");
    assert_eq!(snapshot(&out), generated);
    // --replace-ca-keys never replaces an adopted CA: refused, nothing written.
    let o = kpki()
        .args(["issue", "--replace-ca-keys", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("kubernetes-ca is an [[existing_ca]]"),
        "{stderr}"
    );
    assert_eq!(snapshot(&out), generated);
    // issue adopts it and re-issues what the generated CA had signed.
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("adopt   kubernetes-ca"), "{stdout}");
    assert!(
        stdout.contains("reissue apiserver@cp1: its CA changed"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(out.join("cluster/pki/ca.crt")).unwrap(),
        std::fs::read(fx.join("ca.crt")).unwrap()
    );
    let (ok, msg) = openssl_verify(
        &fx.join("ca.crt"),
        &[],
        &out.join("cluster/pki/apiserver.crt"),
    );
    assert!(ok, "{msg}");
    // The etcd CA, not adopted, was kept.
    assert_eq!(
        snapshot(&out)["cluster/pki/etcd/ca.crt"],
        generated["cluster/pki/etcd/ca.crt"]
    );
}

#[test]
fn an_adopted_ca_expiring_before_its_leaves_is_an_s003_error() {
    // A CA valid for 30 days, leaves planned for a year: S003 at plan time,
    // whatever the date (both are counted from now).
    let openssl = tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=short-lived"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ])
        .arg("-keyout")
        .arg(tmp.path().join("ca.key"))
        .arg("-out")
        .arg(tmp.path().join("ca.crt")));
    assert!(ok, "{err}");
    let spec = spec_with(
        tmp.path(),
        "id = \"kubernetes-ca\"\ncert = \"ca.crt\"\nkey = \"ca.key\"\n",
    );
    let o = kpki()
        .args(["plan", "--format", "json", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let doc = json(&o);
    let s003 = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "S003" && f["nodes"][0] == "kubernetes-ca")
        .unwrap_or_else(|| panic!("no S003: {doc}"));
    assert!(
        s003["message"]
            .as_str()
            .unwrap()
            .contains("existing CA that expires"),
        "{s003}"
    );
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!tmp.path().join("out").exists());
}
