//! Kubeconfigs read by kubectl, their identities and CAs checked with
//! openssl; component flags; bootstrap token and RBAC manifests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{kpki, run, tool};
use serde_json::Value;

fn issue(spec: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("kpki.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let o = kpki()
        .args(["issue", "--spec"])
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("out");
    (dir, spec_path, out)
}

fn kubectl_view(file: &Path, flatten: bool) -> Value {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.env_remove("KUBECONFIG")
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(file);
    if flatten {
        cmd.arg("--flatten");
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "kubectl cannot read {}: {err}", file.display());
    serde_json::from_str(&out).unwrap()
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let (ok, out, err) = run(Command::new(tool("openssl")).args(args));
    (ok, out + &err)
}

fn subject(pem: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.pem");
    std::fs::write(&f, pem).unwrap();
    let (ok, s) = openssl(&[
        "x509",
        "-in",
        f.to_str().unwrap(),
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(ok, "{s}");
    s.trim().trim_start_matches("subject=").to_owned()
}

const KUBEADM: &str = r#"
profile = "kubeadm"
[cluster]
endpoint = "lb.example.com:6443"
[[control_plane]]
name = "cp1"
address = "10.0.0.10"
[[worker]]
name = "w1"
address = "10.0.0.20"
"#;

#[test]
fn kubeadm_kubeconfigs_read_by_kubectl_with_kubeadm_identities() {
    let (_d, _, out) = issue(KUBEADM);
    let expect = [
        (
            "admin.conf",
            "CN=kubernetes-admin,O=kubeadm:cluster-admins",
            "https://lb.example.com:6443",
            "kubernetes-admin@kubernetes",
        ),
        (
            "super-admin.conf",
            "CN=kubernetes-super-admin,O=system:masters",
            "https://lb.example.com:6443",
            "kubernetes-super-admin@kubernetes",
        ),
        (
            "controller-manager.conf",
            "CN=system:kube-controller-manager",
            "https://10.0.0.10:6443",
            "system:kube-controller-manager@kubernetes",
        ),
        (
            "scheduler.conf",
            "CN=system:kube-scheduler",
            "https://10.0.0.10:6443",
            "system:kube-scheduler@kubernetes",
        ),
        (
            "kubelet.conf",
            "CN=system:node:cp1,O=system:nodes",
            "https://lb.example.com:6443",
            "system:node:cp1@kubernetes",
        ),
    ];
    let apiserver = out.join("cluster/pki/apiserver.crt");
    for (file, subj, server, context) in expect {
        let mut copies = vec![out.join("cluster").join(file)];
        if file == "super-admin.conf" {
            // Break-glass: kept in cluster/, never deployed to a node.
            assert!(!out.join("nodes/cp1/etc/kubernetes").join(file).exists());
        } else {
            copies.push(out.join("nodes/cp1/etc/kubernetes").join(file));
        }
        for f in copies {
            let v = kubectl_view(&f, false);
            assert_eq!(v["current-context"], context, "{file}");
            assert_eq!(v["clusters"][0]["cluster"]["server"], server, "{file}");
            let cert = b64(&v["users"][0]["user"]["client-certificate-data"]);
            assert_eq!(subject(&cert), subj, "{file}");
            // The embedded CA verifies the apiserver serving cert.
            let dir = tempfile::tempdir().unwrap();
            let ca = dir.path().join("ca.pem");
            std::fs::write(
                &ca,
                b64(&v["clusters"][0]["cluster"]["certificate-authority-data"]),
            )
            .unwrap();
            let (ok, msg) = openssl(&[
                "verify",
                "-CAfile",
                ca.to_str().unwrap(),
                "-purpose",
                "sslserver",
                apiserver.to_str().unwrap(),
            ]);
            assert!(ok, "{file}: {msg}");
            let meta = std::fs::metadata(&f).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
                0o600
            );
        }
    }
    // The worker bootstraps: bootstrap-kubelet.conf with a token, no client cert of its own.
    let boot = kubectl_view(
        &out.join("nodes/w1/etc/kubernetes/bootstrap-kubelet.conf"),
        false,
    );
    let token = boot["users"][0]["user"]["token"].as_str().unwrap();
    let (id, secret) = token.split_once('.').unwrap();
    assert!(id.len() == 6 && secret.len() == 16);
    assert!(
        token
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert!(!out.join("nodes/w1/etc/kubernetes/kubelet.conf").exists());
    // `kpki kubeconfig` prints the issued file.
    let spec = out.parent().unwrap().join("kpki.toml");
    let o = kpki()
        .args(["kubeconfig", "admin", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        o.stdout,
        std::fs::read(out.join("cluster/admin.conf")).unwrap()
    );
}

#[test]
fn isolated_kubeconfigs_embed_the_serving_ca_not_the_client_ca() {
    let spec = std::fs::read_to_string(common::root().join("fixtures/specs/ha.toml")).unwrap();
    let (_d, _, out) = issue(&spec);
    let pki = out.join("cluster/pki");
    let v = kubectl_view(&out.join("cluster/admin.conf"), false);
    let ca_pem = b64(&v["clusters"][0]["cluster"]["certificate-authority-data"]);
    assert_eq!(
        ca_pem,
        std::fs::read(pki.join("apiserver-server-ca.crt")).unwrap()
    );
    assert_ne!(
        ca_pem,
        std::fs::read(pki.join("ca.crt")).unwrap(),
        "serving CA differs from the client CA"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let client = dir.path().join("client.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    std::fs::write(
        &client,
        b64(&v["users"][0]["user"]["client-certificate-data"]),
    )
    .unwrap();
    let apiserver = pki.join("apiserver.crt");
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            "-purpose",
            "sslserver",
            apiserver.to_str().unwrap()
        ])
        .0
    );
    assert!(
        openssl(&[
            "verify",
            "-CAfile",
            pki.join("ca.crt").to_str().unwrap(),
            "-purpose",
            "sslclient",
            client.to_str().unwrap()
        ])
        .0
    );
    assert!(
        !openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            "-purpose",
            "sslclient",
            client.to_str().unwrap()
        ])
        .0
    );
    for (f, subj) in [
        ("w1", "CN=system:node:w1,O=system:nodes"),
        ("cp2", "CN=system:node:cp2,O=system:nodes"),
    ] {
        let kv = kubectl_view(
            &out.join(format!("nodes/{f}/etc/kubernetes/kubelet.conf")),
            false,
        );
        assert_eq!(
            subject(&b64(&kv["users"][0]["user"]["client-certificate-data"])),
            subj
        );
        assert_eq!(
            kv["clusters"][0]["cluster"]["server"],
            "https://api.corp.local:8443"
        );
    }
    let kp = kubectl_view(&out.join("nodes/w2/etc/kubernetes/kube-proxy.conf"), false);
    assert_eq!(
        subject(&b64(&kp["users"][0]["user"]["client-certificate-data"])),
        "CN=system:kube-proxy"
    );
    // I004: the apiserver's kubelet client is not an admin here, so kpki emits its RBAC.
    let m = std::fs::read_to_string(
        out.join("cluster/manifests/rbac-kubelet-api-kube-apiserver-kubelet-client.yaml"),
    )
    .unwrap();
    let y: Value = serde_yaml_ng::from_str(&m).unwrap();
    assert_eq!(y["roleRef"]["name"], "system:kubelet-api-admin");
    assert_eq!(y["subjects"][0]["name"], "kube-apiserver-kubelet-client");
}

#[test]
fn file_references_exist_in_the_same_bundle() {
    let (_d, _, out) = issue(&format!("{KUBEADM}\n[output]\nembed_certs = false\n"));
    let mut checked = 0;
    for node in ["cp1"] {
        let etc = out.join(format!("nodes/{node}/etc/kubernetes"));
        for f in [
            "admin.conf",
            "controller-manager.conf",
            "scheduler.conf",
            "kubelet.conf",
        ] {
            let conf = etc.join(f);
            let v = kubectl_view(&conf, false);
            let user = &v["users"][0]["user"];
            for key in ["client-certificate", "client-key"] {
                let rel = user[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{f}: no {key}: {v:#}"));
                assert!(
                    !rel.starts_with('/'),
                    "{f}: {key} should be relative to the kubeconfig"
                );
                assert!(etc.join(rel).exists(), "{f}: {rel} missing from the bundle");
            }
            let ca = v["clusters"][0]["cluster"]["certificate-authority"]
                .as_str()
                .unwrap();
            assert!(etc.join(ca).exists(), "{f}: {ca}");
            // kubectl resolves them: flattening embeds the files' bytes.
            let flat = kubectl_view(&conf, true);
            assert!(flat["users"][0]["user"]["client-certificate-data"].is_string());
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn apiserver_flags_name_files_in_the_node_bundle() {
    let (_d, spec, out) = issue(KUBEADM);
    let o = kpki()
        .args([
            "flags",
            "kube-apiserver",
            "--node",
            "cp1",
            "--format",
            "json",
            "--spec",
        ])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let flags = v["flags"].as_object().unwrap();
    for f in [
        "client-ca-file",
        "tls-cert-file",
        "tls-private-key-file",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-keyfile",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "requestheader-client-ca-file",
        "service-account-key-file",
        "service-account-signing-key-file",
    ] {
        let path = flags
            .get(f)
            .unwrap_or_else(|| panic!("no --{f}"))
            .as_str()
            .unwrap();
        assert!(
            out.join("nodes/cp1")
                .join(path.trim_start_matches('/'))
                .exists(),
            "--{f}={path} not in the bundle"
        );
    }
    assert_eq!(flags["requestheader-allowed-names"], "front-proxy-client");
    assert_eq!(
        flags["service-account-issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(flags["etcd-servers"], "https://10.0.0.10:2379");
    assert_eq!(flags["requestheader-username-headers"], "X-Remote-User");
    // The same sets are in components.json.
    let all: Value =
        serde_json::from_slice(&std::fs::read(out.join("components.json")).unwrap()).unwrap();
    assert!(all.as_array().unwrap().iter().any(|c| c == &v));
    // kubelet: KubeletConfiguration fields.
    let o = kpki()
        .args(["flags", "kubelet", "--node", "w1", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    let k: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        k["config"]["authentication.x509.clientCAFile"],
        "/etc/kubernetes/pki/ca.crt"
    );
    assert_eq!(
        k["flags"]["bootstrap-kubeconfig"],
        "/etc/kubernetes/bootstrap-kubelet.conf"
    );
    let o = kpki()
        .args(["flags", "kube-apiserver", "--node", "w1", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "the apiserver does not run on a worker"
    );
}

#[test]
fn bootstrap_secret_and_rbac_are_valid_manifests() {
    let (_d, _, out) = issue(KUBEADM);
    let dir = out.join("cluster/manifests");
    let mut kinds = Vec::new();
    let mut token_secret = None;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let y: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert!(
            y["apiVersion"].is_string()
                && y["kind"].is_string()
                && y["metadata"]["name"].is_string(),
            "{}",
            p.display()
        );
        kinds.push(y["kind"].as_str().unwrap().to_owned());
        if y["kind"] == "Secret" {
            token_secret = Some(y);
        } else {
            assert_eq!(y["kind"], "ClusterRoleBinding");
            assert_eq!(y["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        }
    }
    let s = token_secret.expect("bootstrap token secret");
    let data = &s["stringData"];
    let id = data["token-id"].as_str().unwrap();
    assert_eq!(s["metadata"]["name"], format!("bootstrap-token-{id}"));
    assert_eq!(s["metadata"]["namespace"], "kube-system");
    assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(data["usage-bootstrap-authentication"], "true");
    assert_eq!(data["usage-bootstrap-signing"], "true");
    assert!(
        data["auth-extra-groups"]
            .as_str()
            .unwrap()
            .starts_with("system:bootstrappers:")
    );
    assert_eq!(data["token-secret"].as_str().unwrap().len(), 16);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for n in [
        "rbac-kubelet-bootstrap.yaml",
        "rbac-node-autoapprove-bootstrap.yaml",
        "rbac-node-autoapprove-certificate-rotation.yaml",
        "rbac-cluster-admins.yaml",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} missing: {names:?}");
    }
    // The token in bootstrap-kubelet.conf is the one in the Secret.
    let boot = kubectl_view(&out.join("cluster/bootstrap-kubelet.conf"), false);
    assert_eq!(
        boot["users"][0]["user"]["token"],
        format!("{id}.{}", data["token-secret"].as_str().unwrap())
    );
}
