//! Inputs that are wrong are refused, flag values are typed and free of
//! duplicates, and names compare as Go compares them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::Path;

use common::{kpki, root, run, snapshot, tool};
use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn flags_json(spec: &Path, component: &str, node: &str) -> Value {
    let o = kpki()
        .args([
            "flags", component, "--node", node, "--format", "json", "--spec",
        ])
        .arg(spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn two_nodes_at_one_address_are_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(
        tmp.path(),
        "kpki.toml",
        "profile = \"kubeadm\"\n[[control_plane]]\nname = \"a\"\naddress = \"10.0.0.1\"\n\
         [[control_plane]]\nname = \"b\"\naddress = \"10.0.0.1\"\n",
    );
    let o = kpki().arg("plan").arg(&spec).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("`a`") && e.contains("`b`") && e.contains("10.0.0.1"),
        "{e}"
    );
    assert!(
        e.contains("kpki.toml:7:"),
        "points at the second address: {e}"
    );
    // A worker on a control-plane node's address: refused too.
    let spec = write(
        tmp.path(),
        "kpki.toml",
        "profile = \"kubeadm\"\n[[control_plane]]\nname = \"a\"\naddress = \"10.0.0.1\"\n\
         [[worker]]\nname = \"w\"\naddress = \"10.0.0.1\"\n",
    );
    let o = kpki().arg("plan").arg(&spec).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    // An external etcd member on a control-plane host (seed 001) is fine.
    kpki()
        .args(["plan", "fixtures/specs/seed001.toml"])
        .assert()
        .success();
}

#[test]
fn a_node_on_loopback_gets_no_duplicate_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(
        tmp.path(),
        "kpki.toml",
        "profile = \"kubeadm\"\n[[control_plane]]\nname = \"solo\"\naddress = \"127.0.0.1\"\n",
    );
    for c in ["etcd", "kube-apiserver", "kubelet"] {
        let v = flags_json(&spec, c, "solo");
        for (k, val) in v["flags"].as_object().unwrap() {
            let items: Vec<&str> = val.as_str().unwrap().split(',').collect();
            let unique: std::collections::BTreeSet<&&str> = items.iter().collect();
            assert_eq!(unique.len(), items.len(), "{c} --{k}={val}");
        }
    }
    let v = flags_json(&spec, "etcd", "solo");
    assert_eq!(v["flags"]["listen-client-urls"], "https://127.0.0.1:2379");
}

#[test]
fn kubelet_config_values_are_typed_and_dual_stack_node_ip_has_both_families() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(
        tmp.path(),
        "kpki.toml",
        "profile = \"kubeadm\"\n[cluster]\nservice_cidr = [\"10.96.0.0/12\", \"fd00:10:96::/112\"]\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\nextra_ips = [\"fd00::10\"]\n",
    );
    let v = flags_json(&spec, "kubelet", "cp1");
    assert_eq!(
        v["config"]["rotateCertificates"],
        Value::Bool(true),
        "{v:#}"
    );
    assert!(v["config"]["authentication.x509.clientCAFile"].is_string());
    assert_eq!(v["flags"]["node-ip"], "10.0.0.10,fd00::10");
    // components.json carries the same typed value.
    let out = tmp.path().join("out");
    kpki()
        .arg("issue")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(out.join("components.json")).unwrap()).unwrap();
    let text = doc.to_string();
    assert!(text.contains("\"rotateCertificates\":true"), "{text}");
    // Single-stack: one address.
    let single = write(
        tmp.path(),
        "single.toml",
        "profile = \"kubeadm\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\nextra_ips = [\"fd00::10\"]\n",
    );
    assert_eq!(
        flags_json(&single, "kubelet", "cp1")["flags"]["node-ip"],
        "10.0.0.10"
    );
}

#[test]
fn kube_proxy_without_a_certificate_says_why() {
    let o = kpki()
        .args([
            "flags",
            "kube-proxy",
            "--spec",
            "fixtures/specs/example.toml",
            "--format",
            "args",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("service-account token"), "{e}");
    let v: Value = serde_json::from_slice(
        &kpki()
            .args([
                "flags",
                "kube-proxy",
                "--spec",
                "fixtures/specs/example.toml",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("service-account token")
    );
}

/// A profile whose apiserver cert carries an uppercase literal DNS SAN.
fn uppercase_profile(dir: &Path) -> std::path::PathBuf {
    let base = std::fs::read_to_string(root().join("profiles/kubeadm.toml")).unwrap();
    let text = base.replacen(
        "sans = [\"node-name\", \"in-cluster-names\"",
        "sans = [\"dns:API.Example.COM\", \"node-name\", \"in-cluster-names\"",
        1,
    );
    assert_ne!(text, base, "the apiserver SAN line moved");
    write(dir, "profile.toml", &text);
    write(
        dir,
        "kpki.toml",
        "profile = \"profile.toml\"\n[cluster]\nextra_sans = [\"Other.Example.ORG\"]\n\
         [crypto]\nalgorithm = \"ecdsa-p256\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
    )
}

#[test]
fn uppercase_sans_plan_issue_and_rerun_as_no_ops() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = uppercase_profile(tmp.path());
    let out = tmp.path().join("out");
    kpki().arg("issue").arg(&spec).assert().success();
    let (_, text, _) = run(std::process::Command::new(tool("openssl"))
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(out.join("cluster/pki/apiserver.crt")));
    assert!(
        text.contains("DNS:api.example.com") && text.contains("DNS:other.example.org"),
        "{text}"
    );
    let before = snapshot(&out);
    let o = kpki().arg("issue").arg(&spec).output().unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("0 re-issued"), "{stdout}");
    assert_eq!(snapshot(&out), before, "a re-run changes no byte");
    kpki()
        .arg("check")
        .arg(&out)
        .arg("--spec")
        .arg(&spec)
        .assert()
        .success();
}

#[test]
fn a_bare_wildcard_san_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write(
        tmp.path(),
        "kpki.toml",
        "profile = \"kubeadm\"\n[cluster]\nextra_sans = [\"*\"]\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
    );
    let o = kpki().arg("plan").arg(&spec).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wildcard"));
}

/// Signs `key` under the kubeadm fixture's cluster CA with an extension file.
fn sign_with_fixture_ca(pki: &Path, key: &str, subj: &str, ext: &str, out: &str) {
    let openssl = tool("openssl");
    let extfile = pki.join("test.ext");
    std::fs::write(&extfile, format!("[x]\n{ext}\n")).unwrap();
    let csr = pki.join("test.csr");
    let (ok, _, e) = run(std::process::Command::new(&openssl)
        .args(["req", "-new", "-subj", subj, "-key"])
        .arg(pki.join(key))
        .arg("-out")
        .arg(&csr));
    assert!(ok, "{e}");
    let (ok, _, e) = run(std::process::Command::new(&openssl)
        .args([
            "x509",
            "-req",
            "-days",
            "365",
            "-sha256",
            "-extensions",
            "x",
            "-in",
        ])
        .arg(&csr)
        .arg("-CA")
        .arg(pki.join("ca.crt"))
        .arg("-CAkey")
        .arg(pki.join("ca.key"))
        .arg("-set_serial")
        .arg("0x1234567890abcdef")
        .arg("-extfile")
        .arg(&extfile)
        .arg("-out")
        .arg(pki.join(out)));
    assert!(ok, "{e}");
    std::fs::remove_file(extfile).unwrap();
    std::fs::remove_file(csr).unwrap();
}

#[test]
fn mixed_case_names_and_eku_less_leaves_are_judged_as_go_and_openssl_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubernetes");
    for (rel, bytes) in snapshot(&common::existing_pki().join("kubeadm")) {
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let pki = dir.join("pki");
    // Every SAN the apiserver needs, in mixed case (and the service IP).
    sign_with_fixture_ca(
        &pki,
        "apiserver.key",
        "/CN=kube-apiserver",
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:CP1, DNS:Kubernetes, \
         DNS:Kubernetes.Default, DNS:KUBERNETES.default.SVC, \
         DNS:Kubernetes.Default.Svc.Cluster.Local, IP:10.0.0.10, IP:10.96.0.1",
        "apiserver.crt",
    );
    // A client cert with neither extendedKeyUsage nor keyUsage.
    sign_with_fixture_ca(
        &pki,
        "apiserver-kubelet-client.key",
        "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client",
        "basicConstraints = critical, CA:FALSE",
        "apiserver-kubelet-client.crt",
    );
    // What the real verifiers say: OpenSSL matches the host case-insensitively
    // and accepts the EKU-less cert as a TLS client (Go does both too).
    let openssl = tool("openssl");
    let (_, text, _) = run(std::process::Command::new(&openssl)
        .args([
            "x509",
            "-noout",
            "-checkhost",
            "kubernetes.default.svc.cluster.local",
            "-in",
        ])
        .arg(pki.join("apiserver.crt")));
    assert!(text.contains("does match"), "{text}");
    let (ok, text, e) = run(std::process::Command::new(&openssl)
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(pki.join("ca.crt"))
        .arg(pki.join("apiserver-kubelet-client.crt")));
    assert!(ok, "{text}{e}");
    // kpki agrees: no error finding on either file.
    let o = kpki()
        .arg("check")
        .arg(&dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in doc["findings"].as_array().unwrap() {
        let files = f["files"].to_string();
        if files.contains("pki/apiserver.crt") || files.contains("apiserver-kubelet-client.crt") {
            assert_ne!(f["severity"], "error", "{f:#}");
        }
    }
    // The EKU-less leaf still gets a warning that an explicit EKU is better.
    assert!(
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "warning"
                && f["files"]
                    .to_string()
                    .contains("apiserver-kubelet-client.crt")
                && f["message"].as_str().unwrap().contains("extendedKeyUsage")),
        "{:#}",
        doc["findings"]
    );
}

/// Serves `cert`/`key` with `openssl s_server` on a free 127.0.0.1 port and
/// returns what `kubectl` (a Go TLS client) says when it connects to it.
fn kubectl_against(dir: &Path, cert: &Path, key: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(tool("openssl"))
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let said = if up {
        let (_, out, err) = run(std::process::Command::new(tool("kubectl"))
            .arg(format!("--server=https://127.0.0.1:{port}"))
            .arg(format!(
                "--certificate-authority={}",
                dir.join("pki/ca.crt").display()
            ))
            .args([
                "--token=probe",
                "--request-timeout=10s",
                "get",
                "--raw",
                "/",
            ])
            .stdin(std::process::Stdio::null())
            .env("KUBECONFIG", "/dev/null"));
        format!("{out}{err}")
    } else {
        String::new()
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "openssl s_server did not start");
    said
}

#[test]
fn ipv4_mapped_ipv6_sans_match_as_go_matches_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kubernetes");
    for (rel, bytes) in snapshot(&common::existing_pki().join("kubeadm")) {
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let pki = dir.join("pki");
    let ext = |ips: &str| {
        format!(
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:cp1, DNS:kubernetes, \
             DNS:kubernetes.default, DNS:kubernetes.default.svc, \
             DNS:kubernetes.default.svc.cluster.local, IP:10.0.0.10, {ips}"
        )
    };
    // The real consumer first: a Go client accepts ::ffff:127.0.0.1 for 127.0.0.1
    // (and refuses a certificate for another address, so the probe is real).
    sign_with_fixture_ca(
        &pki,
        "apiserver.key",
        "/CN=kube-apiserver",
        &ext("IP:::ffff:127.0.0.1"),
        "mapped.crt",
    );
    let said = kubectl_against(&dir, &pki.join("mapped.crt"), &pki.join("apiserver.key"));
    assert!(!said.contains("x509"), "{said}");
    assert!(
        said.contains("s_server"),
        "the TLS handshake passed and HTTP reached openssl: {said}"
    );
    sign_with_fixture_ca(
        &pki,
        "apiserver.key",
        "/CN=kube-apiserver",
        &ext("IP:127.0.0.2"),
        "other.crt",
    );
    let said = kubectl_against(&dir, &pki.join("other.crt"), &pki.join("apiserver.key"));
    assert!(said.contains("x509"), "{said}");
    std::fs::remove_file(pki.join("mapped.crt")).unwrap();
    std::fs::remove_file(pki.join("other.crt")).unwrap();
    // kpki agrees: ::ffff:10.96.0.1 is the service IP.
    sign_with_fixture_ca(
        &pki,
        "apiserver.key",
        "/CN=kube-apiserver",
        &ext("IP:::ffff:10.96.0.1"),
        "apiserver.crt",
    );
    let o = kpki()
        .arg("check")
        .arg(&dir)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "N002"
                || (f["code"] == "N004" && f["files"].to_string().contains("apiserver.crt"))),
        "{:#}",
        doc["findings"]
    );
}
