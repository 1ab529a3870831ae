//! Integration test: kubectl must read the kubeconfigs this crate writes.
//!
//! Runs `kubectl config view --kubeconfig F --raw -o json` (and `--flatten`
//! for the path variant). If kubectl is absent the test is skipped locally
//! but FAILS when the `CI` environment variable is set.

// Test helpers outside `#[test]` fns are not covered by clippy.toml's
// allow-*-in-tests settings; failing loudly is what a test helper should do.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubeconfig::{Credential, Kubeconfig, Material};
use serde_json::Value;

const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlcm5ldGVz\n-----END CERTIFICATE-----\n";
const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIBkTCCATegAwIBAgIIKUBlE8W1oX8wCgYIKoZIzj0EAwIwFTETMBEGA1UEAxMK\n-----END CERTIFICATE-----\n";
const KEY: &[u8] = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBqBbI0fakefakefakefakefakefakefakefakefakeoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";

const SERVER: &str = "https://192.0.2.10:6443";

/// Locates kubectl, or returns `None` when the test may be skipped.
fn kubectl() -> Option<PathBuf> {
    let default = PathBuf::from("/usr/bin/kubectl");
    if default.is_file() {
        return Some(default);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
    }) {
        return Some(found);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "kubectl not found at /usr/bin/kubectl or on PATH, and CI is set: failing instead of skipping"
    );
    eprintln!("SKIP: kubectl not found (set CI to make this a failure)");
    None
}

fn view(kubectl: &Path, file: &Path, extra: &[&str]) -> Value {
    let out = Command::new(kubectl)
        .args(["config", "view", "--kubeconfig"])
        .arg(file)
        .args(["--raw", "-o", "json"])
        .args(extra)
        // Make sure nothing from the environment is merged in.
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("kubectl printed JSON")
}

fn decode(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn assert_common(json: &Value, user_name: &str, cluster_name: &str) {
    let context_name = format!("{user_name}@{cluster_name}");
    assert_eq!(json["current-context"], context_name.as_str());
    assert_eq!(json["clusters"][0]["name"], cluster_name);
    assert_eq!(json["clusters"][0]["cluster"]["server"], SERVER);
    assert_eq!(json["users"][0]["name"], user_name);
    assert_eq!(json["contexts"][0]["name"], context_name.as_str());
    assert_eq!(json["contexts"][0]["context"]["cluster"], cluster_name);
    assert_eq!(json["contexts"][0]["context"]["user"], user_name);
}

#[test]
fn kubectl_reads_embedded_kubeconfig() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kc = Kubeconfig::single(
        "kubernetes",
        SERVER,
        Material::Embedded(CA.to_vec()),
        "kubernetes-admin",
        Credential::ClientCert {
            cert: Material::Embedded(CERT.to_vec()),
            key: Material::Embedded(KEY.to_vec()),
        },
    );
    let file = dir.path().join("admin.conf");
    std::fs::write(&file, kc.to_yaml().unwrap()).unwrap();

    let json = view(&kubectl, &file, &[]);
    assert_common(&json, "kubernetes-admin", "kubernetes");
    let cluster = &json["clusters"][0]["cluster"];
    let user = &json["users"][0]["user"];
    assert_eq!(decode(&cluster["certificate-authority-data"]), CA);
    assert_eq!(decode(&user["client-certificate-data"]), CERT);
    assert_eq!(decode(&user["client-key-data"]), KEY);

    // And our parser reads back what it wrote.
    let back = Kubeconfig::from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(back, kc);
}

#[test]
fn kubectl_reads_path_kubeconfig() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    std::fs::write(dir.path().join("pki/ca.crt"), CA).unwrap();
    std::fs::write(dir.path().join("pki/alice.crt"), CERT).unwrap();
    std::fs::write(dir.path().join("pki/alice.key"), KEY).unwrap();
    let abs_cert = dir.path().join("pki/alice.crt");

    let kc = Kubeconfig::single(
        "prod",
        SERVER,
        // Relative paths: kubectl resolves them against the file's directory.
        Material::Path("pki/ca.crt".into()),
        "alice",
        Credential::ClientCert {
            cert: Material::Path(abs_cert.clone()),
            key: Material::Path("pki/alice.key".into()),
        },
    );
    let file = dir.path().join("alice.conf");
    std::fs::write(&file, kc.to_yaml().unwrap()).unwrap();

    let json = view(&kubectl, &file, &[]);
    assert_common(&json, "alice", "prod");
    let user = &json["users"][0]["user"];
    assert!(user.get("client-certificate-data").is_none(), "{json}");
    assert_eq!(
        Path::new(user["client-certificate"].as_str().unwrap()),
        abs_cert
    );
    let key_path = Path::new(user["client-key"].as_str().unwrap());
    assert!(key_path.ends_with("pki/alice.key"), "{json}");

    // --flatten makes kubectl read the files and embed them: proves the
    // paths resolve, and client-certificate-data decodes to the given bytes.
    let flat = view(&kubectl, &file, &["--flatten"]);
    assert_common(&flat, "alice", "prod");
    let user = &flat["users"][0]["user"];
    assert_eq!(decode(&user["client-certificate-data"]), CERT);
    assert_eq!(decode(&user["client-key-data"]), KEY);
    assert_eq!(
        decode(&flat["clusters"][0]["cluster"]["certificate-authority-data"]),
        CA
    );

    // Our own resolution agrees.
    let back = Kubeconfig::from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(back, kc);
    let (_, cluster, user) = back.current().unwrap();
    let ca = cluster.cluster.certificate_authority.as_ref().unwrap();
    assert_eq!(ca.resolve(dir.path()).unwrap(), CA);
    match &user.user {
        Credential::ClientCert { cert, key } => {
            assert_eq!(cert.resolve(dir.path()).unwrap(), CERT);
            assert_eq!(key.resolve(dir.path()).unwrap(), KEY);
        }
        Credential::Token(_) => panic!("expected a client certificate"),
    }
}

#[test]
fn kubectl_reads_token_kubeconfig() {
    let Some(kubectl) = kubectl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let kc = Kubeconfig::single(
        "kubernetes",
        SERVER,
        Material::Embedded(CA.to_vec()),
        "bot",
        Credential::Token("abcdef.0123456789abcdef".into()),
    );
    let file = dir.path().join("bot.conf");
    std::fs::write(&file, kc.to_yaml().unwrap()).unwrap();
    let json = view(&kubectl, &file, &[]);
    assert_common(&json, "bot", "kubernetes");
    assert_eq!(json["users"][0]["user"]["token"], "abcdef.0123456789abcdef");
}
