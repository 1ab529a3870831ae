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

/// One directory to adopt. `init --from` describes it as it is: `check
/// DIR --spec` reports no drift (no `D` finding) on any of them.
struct Fixture {
    name: &'static str,
    dir: PathBuf,
    /// No preset fits: `init --from` writes a profile file next to the spec.
    profile_file: bool,
    /// Rule codes of the directory's own mistakes that `init --from`
    /// copies (marked in the profile): the plan reports exactly these
    /// errors, as `check` does. `init --from --fix` writes kpki's values
    /// for them (what applying the marks gives): its plan is clean, `check
    /// DIR --spec` reports D003 on exactly those templates, and the issued
    /// PKI is free of them.
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
            // The planted faults (README of fixtures/existing-pki) copied:
            // apiserver without the service IP (N002), etcd server without
            // clientAuth (U003), scheduler CN (I001). (Admin in
            // system:masters, I003, is a warning: copied, and kept.)
            profile_file: true,
            fixed: &["N002", "U003", "I001"],
        },
        Fixture {
            name: "cfssl",
            dir: existing_pki().join("cfssl"),
            // Planted faults copied: the apiserver without the service IP
            // (N002), the etcd server without clientAuth (U003). The
            // client certificates kubeadm keeps in kubeconfigs are files
            // of their own here (kube-scheduler.pem and friends).
            profile_file: true,
            fixed: &["N002", "U003"],
        },
        // The real-world installations (fixtures/installs/, but
        // systemd-units, whose front-proxy CA key is not on disk: see
        // `a_seed_without_a_ca_key_is_adopted_but_not_issued`). `init --from`
        // fits the preset to each (a profile file: templates the tree lacks
        // dropped, the seed's own CNs, O, SANs and usages, the seed's own
        // mistakes included).
        Fixture {
            name: "seed-000",
            dir: installs("seed-000"),
            // The admin cert with server auth only (U002), the scheduler CN
            // `kube-scheduler` (I001). The seventh CA
            // (controller-manager-server-ca) and its leaf, which no preset
            // has, get templates of their own.
            profile_file: true,
            fixed: &["U002", "I001"],
        },
        Fixture {
            name: "seed-001",
            dir: installs("seed-001"),
            // The apiserver cert without kubernetes.default.svc.<domain>
            // (N003). The master is 10.0.4.15 (the endpoint its apiserver
            // cert holds); the kubelet cert is worker `10.0.2.15`'s, a node
            // named by its IP.
            profile_file: true,
            fixed: &["N003"],
        },
        Fixture {
            name: "seed-002",
            dir: installs("seed-002"),
            // The seed's `client` profile has no client auth (U002); the
            // apiserver cert lacks the address its kubeconfigs dial (N001).
            profile_file: true,
            fixed: &["U002", "N001"],
        },
        Fixture {
            name: "seed-003",
            dir: installs("seed-003"),
            // kubernetes.pem's trailing-dot SAN (N006). Its etcd.pem serves
            // etcd's peers too, and its service-account.pem (the
            // apiserver's --service-account-key-file) is a template of its
            // own.
            profile_file: true,
            fixed: &["N006"],
        },
        Fixture {
            name: "kubeadm-etc",
            dir: installs("kubeadm-etc"),
            profile_file: true,
            fixed: &[],
        },
        Fixture {
            name: "kubeadm-clean",
            dir: clean_kubeadm(),
            profile_file: false,
            fixed: &[],
        },
    ]
}

/// Applies what `init --from` marks in a profile file (`# MISTAKE COPIED:
/// ID, ...` followed by `#   KEY = VALUE` or `#   delete KEY ...` lines) to
/// leaf ID, as a user following the marks would; the ids fixed.
fn apply_marked_fixes(profile: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(profile).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    let mut fixed = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# MISTAKE COPIED: ") {
            let id = rest.split(',').next().unwrap().to_owned();
            fixed.push(id.clone());
            current = Some(id);
            continue;
        }
        let Some(id) = &current else { continue };
        let Some(fix) = line.strip_prefix("#   ") else {
            if !line.starts_with('#') {
                current = None;
            }
            continue;
        };
        let leaf = t["leaf"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .map(|l| l.as_table_mut().unwrap())
            .find(|l| l["id"].as_str() == Some(id.as_str()))
            .unwrap();
        if let Some(rest) = fix.strip_prefix("delete ") {
            let key = rest.split(' ').next().unwrap();
            assert!(leaf.remove(key).is_some(), "{id}: no {key}");
        } else {
            let kv: toml::Table = fix.parse().unwrap();
            leaf.extend(kv);
        }
    }
    std::fs::write(profile, toml::to_string(&t).unwrap()).unwrap();
    fixed
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

        // check DIR --spec: no drift at all; the directory's own mistakes
        // are reported by their codes, by check and by the plan alike.
        let o = kpki()
            .arg("check")
            .arg(&fx.dir)
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
        assert!(drift.is_empty(), "{}: drift {drift:?}", fx.name);
        let codes = |doc: &Value| -> BTreeSet<String> {
            doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["severity"] == "error")
                .map(|f| f["code"].as_str().unwrap().to_owned())
                .collect()
        };
        let want: BTreeSet<String> = fx.fixed.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(codes(&plan), want, "{}: plan errors: {plan}", fx.name);
        let checked = codes(&doc);
        assert!(
            want.is_subset(&checked),
            "{}: check misses {want:?}: {checked:?}",
            fx.name
        );
        // Without --fix, the output ends naming it when there are mistakes.
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(
            last.contains(" --fix "),
            !want.is_empty(),
            "{}: {stderr}",
            fx.name
        );

        // `init --from DIR --fix`: the same spec, the profile with kpki's
        // values where the directory has a mistake, which is what a user
        // applying the marks by hand gets.
        let fix_dir = tmp.path().join("fix");
        std::fs::create_dir(&fix_dir).unwrap();
        let spec_fixed = fix_dir.join("kpki.toml");
        let o = kpki()
            .args(["init", "--fix", "--from"])
            .arg(&fx.dir)
            .arg("--out")
            .arg(&spec_fixed)
            .output()
            .unwrap();
        let fix_stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{}: {fix_stderr}", fx.name);
        assert!(!fix_stderr.contains("PRIVATE KEY"), "{}", fx.name);
        assert_eq!(
            std::fs::read_to_string(&spec_fixed).unwrap(),
            text,
            "{}: --fix changed the spec",
            fx.name
        );
        let profile_fixed = fix_dir.join("kpki.profile.toml");
        assert_eq!(profile_fixed.exists(), fx.profile_file, "{}", fx.name);
        let mut fixed_ids: BTreeSet<String> = BTreeSet::new();
        if fx.profile_file {
            let fixed_text = std::fs::read_to_string(&profile_fixed).unwrap();
            if want.is_empty() {
                assert_eq!(
                    fixed_text,
                    std::fs::read_to_string(&profile).unwrap(),
                    "{}: --fix changed a profile with no mistake",
                    fx.name
                );
            }
            assert!(!fixed_text.contains("# MISTAKE COPIED"), "{fixed_text}");
            fixed_ids = apply_marked_fixes(&profile).into_iter().collect();
            assert_eq!(fixed_ids.is_empty(), want.is_empty(), "{}", fx.name);
            let marked: BTreeSet<String> = fixed_text
                .lines()
                .filter_map(|l| l.strip_prefix("# FIXED: "))
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect();
            assert_eq!(marked, fixed_ids, "{}: {fixed_text}", fx.name);
            for id in &fixed_ids {
                assert!(
                    fix_stderr.contains(&format!("fixed:   {id}: ")),
                    "{}: {fix_stderr}",
                    fx.name
                );
            }
            let by_hand: toml::Table = std::fs::read_to_string(&profile).unwrap().parse().unwrap();
            let by_fix: toml::Table = fixed_text.parse().unwrap();
            assert_eq!(
                by_fix, by_hand,
                "{}: --fix is not the marked fixes",
                fx.name
            );
        }
        // The fixed spec plans cleanly (exit 0) ...
        let o = kpki()
            .args(["plan", "--format", "json", "--spec"])
            .arg(&spec_fixed)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", fx.name, json(&o));
        // ... and `check DIR --spec` tells the honest difference: D003,
        // exactly on the fixed templates' certificates.
        let o = kpki()
            .arg("check")
            .arg(&fx.dir)
            .arg("--spec")
            .arg(&spec_fixed)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let doc = json(&o);
        let mut drifted: BTreeSet<String> = BTreeSet::new();
        for f in doc["findings"].as_array().unwrap() {
            let code = f["code"].as_str().unwrap();
            if !code.starts_with('D') {
                continue;
            }
            assert_eq!(code, "D003", "{}: {f}", fx.name);
            for n in f["nodes"].as_array().unwrap() {
                let n = n.as_str().unwrap();
                drifted.insert(n.split('@').next().unwrap().to_owned());
            }
        }
        assert_eq!(drifted, fixed_ids, "{}: D003 on {drifted:?}", fx.name);
        // From here on, the fixed spec.
        let spec = spec_fixed;

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
    // The spec describes the directory all the same: no drift.
    let o = kpki()
        .arg("check")
        .arg(&dir)
        .arg("--spec")
        .arg(&spec)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc = json(&o);
    let findings = doc["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{doc}");
    let drift: Vec<&Value> = findings
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with('D'))
        .collect();
    assert!(drift.is_empty(), "systemd-units: drift {drift:?}");
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
fn fitted_profile_keeps_the_seeds_own_names_and_marks_their_mistakes() {
    // seed-002: etcd certs with the seed's CNs and hosts list (shared by
    // the three masters), the service range from the apiserver unit; the
    // `client` profile without client auth is copied, and marked.
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
    // The seed's `client` certs lack clientAuth (U002): copied as they are
    // (the spec describes the directory), marked with kpki's value.
    let admin = leaf("admin");
    let eku: Vec<&str> = admin["ext_key_usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!eku.contains(&"clientAuth"), "{admin}");
    assert!(
        stderr.contains(
            "profile: admin: copied as the directory has it, with its mistake (U002 in `kpki plan`): `kpki issue` refuses until it is fixed in kpki.profile.toml: delete ext_key_usage"
        ),
        "{stderr}"
    );
    let text = std::fs::read_to_string(tmp.path().join("kpki.profile.toml")).unwrap();
    assert!(
        text.contains("# MISTAKE COPIED: admin, as the directory has it (U002 in `kpki plan`).\n"),
        "{text}"
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

/// `--fix` writes kpki's value and names what the directory has, in the
/// profile and on stderr; it needs `--from`.
#[test]
fn fix_writes_kpkis_value_and_names_the_directorys() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("kpki.toml");
    let o = kpki()
        .args(["init", "--fix", "--from"])
        .arg(existing_pki().join("cfssl"))
        .arg("--out")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("fixed:   etcd-server: delete ext_key_usage (the role's default), not ext_key_usage = [\"serverAuth\"] as the directory has it (U003)\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("MISTAKE") && !stderr.contains("copied as the directory has it"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(tmp.path().join("kpki.profile.toml")).unwrap();
    assert!(
        text.contains("# FIXED: etcd-server (was U003 as the directory has it: ext_key_usage = [\"serverAuth\"])\n"),
        "{text}"
    );
    let profile: toml::Table = text.parse().unwrap();
    let etcd = profile["leaf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"].as_str() == Some("etcd-server"))
        .unwrap();
    assert!(etcd.get("ext_key_usage").is_none(), "{etcd}");

    // Without --from, --fix is refused (usage, exit 2) and nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let o = kpki()
        .current_dir(dir.path())
        .args(["init", "--fix"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
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
