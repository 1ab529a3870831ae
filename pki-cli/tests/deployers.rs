//! The deployer hand-over: kubeadm configuration that round-trips to the
//! plan, systemd drop-ins that `systemd-analyze verify` accepts and carry
//! exactly `kpki flags`, Cluster API Secrets that kubectl reads and that
//! hold the very bytes of cluster/pki; K001/K002 for what they cannot express.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{kpki, run, tool};
use serde::Deserialize;
use serde_json::Value;

const SPEC: &str = "profile = \"kubeadm\"\n\
    [cluster]\nname = \"prod\"\ndns_domain = \"corp.local\"\nservice_cidr = \"10.100.0.0/16\"\n\
    endpoint = \"api.example.internal:8443\"\nextra_sans = [\"k8s.example.com\", \"203.0.113.10\"]\n\
    [bootstrap]\ntoken_ttl = \"2h\"\n\
    [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n\
    [[worker]]\nname = \"w1\"\naddress = \"10.0.0.20\"\n";

const HA: &str = "profile = \"kubeadm\"\n[cluster]\nendpoint = \"10.0.0.100\"\n\
    [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.11\"\n\
    [[control_plane]]\nname = \"cp2\"\naddress = \"10.0.0.12\"\n\
    [[etcd]]\nname = \"e1\"\naddress = \"10.0.1.11\"\n\
    [[worker]]\nname = \"w1\"\naddress = \"10.0.2.11\"\n";

fn issue(spec: &str) -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("kpki.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let o = kpki()
        .arg("issue")
        .arg("--spec")
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("out");
    (
        tmp,
        spec_path,
        out,
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Init {
    api_version: String,
    kind: String,
    bootstrap_tokens: Vec<Token>,
    node_registration: NodeRegistration,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: Endpoint,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Token {
    token: String,
    description: String,
    ttl: String,
    usages: Vec<String>,
    groups: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeRegistration {
    name: String,
    #[serde(default)]
    ignore_preflight_errors: Vec<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Endpoint {
    advertise_address: String,
    bind_port: u16,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClusterCfg {
    api_version: String,
    kind: String,
    cluster_name: String,
    control_plane_endpoint: String,
    certificates_dir: String,
    networking: Networking,
    api_server: ApiServer,
    controller_manager: serde_json::Value,
    etcd: Etcd,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Networking {
    service_subnet: String,
    dns_domain: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Etcd {
    local: Option<LocalEtcd>,
    external: Option<ExternalEtcd>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocalEtcd {
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs")]
    peer_cert_sans: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExternalEtcd {
    endpoints: Vec<String>,
    ca_file: String,
    cert_file: String,
    key_file: String,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Join {
    api_version: String,
    kind: String,
    ca_cert_path: String,
    discovery: Discovery,
    node_registration: NodeRegistration,
    control_plane: Option<JoinControlPlane>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Discovery {
    bootstrap_token: BootstrapTokenDiscovery,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BootstrapTokenDiscovery {
    token: String,
    api_server_endpoint: String,
    ca_cert_hashes: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinControlPlane {
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: Endpoint,
}

fn init_yaml(out: &Path) -> (Init, ClusterCfg) {
    let text = std::fs::read_to_string(out.join("cluster/kubeadm/init.yaml")).unwrap();
    let docs: Vec<&str> = text.split("---\n").collect();
    assert_eq!(docs.len(), 2, "{text}");
    (
        serde_yaml_ng::from_str(docs[0]).unwrap(),
        serde_yaml_ng::from_str(docs[1]).unwrap(),
    )
}

fn join_yaml(out: &Path, node: &str) -> Join {
    let p = out.join(format!("nodes/{node}/etc/kubernetes/kubeadm-join.yaml"));
    serde_yaml_ng::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The SANs of a certificate as openssl prints them, as kubeadm strings.
fn openssl_sans(cert: &Path) -> BTreeSet<String> {
    let (ok, text, err) = run(Command::new(tool("openssl"))
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(cert));
    assert!(ok, "{err}");
    text.lines()
        .skip(1)
        .flat_map(|l| l.split(", "))
        .map(|s| {
            let s = s.trim();
            let v = s
                .strip_prefix("DNS:")
                .or_else(|| s.strip_prefix("IP Address:"))
                .unwrap();
            // openssl prints ::1 as 0:0:0:0:0:0:0:1
            v.parse::<std::net::IpAddr>()
                .map_or_else(|_| v.to_owned(), |ip| ip.to_string())
        })
        .collect()
}

fn openssl_spki_hash(cert: &Path) -> String {
    let script = format!(
        "{o} x509 -pubkey -noout -in '{c}' | {o} pkey -pubin -outform der | sha256sum",
        o = tool("openssl").display(),
        c = cert.display()
    );
    let (ok, text, err) = run(Command::new("sh").arg("-c").arg(&script));
    assert!(ok, "{err}");
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn kubeadm_init_and_join_round_trip_to_the_plan() {
    let (_t, _spec, out, _) = issue(SPEC);
    let (init, cluster) = init_yaml(&out);
    assert_eq!(
        (init.api_version.as_str(), init.kind.as_str()),
        ("kubeadm.k8s.io/v1beta4", "InitConfiguration")
    );
    assert_eq!(cluster.api_version, "kubeadm.k8s.io/v1beta4");
    assert_eq!(cluster.kind, "ClusterConfiguration");
    assert_eq!(cluster.cluster_name, "prod");
    assert_eq!(cluster.control_plane_endpoint, "api.example.internal:8443");
    assert_eq!(cluster.networking.service_subnet, "10.100.0.0/16");
    assert_eq!(cluster.networking.dns_domain, "corp.local");
    assert_eq!(cluster.certificates_dir, "/etc/kubernetes/pki");
    assert_eq!(init.node_registration.name, "cp1");
    assert_eq!(
        init.local_api_endpoint,
        Endpoint {
            advertise_address: "10.0.0.10".into(),
            bind_port: 6443
        }
    );
    // Every file kubeadm init reads is in the first node's bundle.
    let bundle = out.join("nodes/cp1/etc/kubernetes");
    for f in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/apiserver.crt",
        "pki/apiserver-kubelet-client.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-client.crt",
        "pki/etcd/ca.crt",
        "pki/etcd/server.crt",
        "pki/etcd/peer.crt",
        "pki/etcd/healthcheck-client.crt",
        "pki/apiserver-etcd-client.crt",
        "pki/sa.key",
        "pki/sa.pub",
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ] {
        assert!(bundle.join(f).exists(), "{f}");
    }
    // The controller-manager signs with its own one-certificate copy of
    // the CA (never a trust bundle during a CA rotation).
    let args = cluster.controller_manager["extraArgs"].as_array().unwrap();
    for (name, file) in [
        ("cluster-signing-cert-file", "pki/signing/ca.crt"),
        ("cluster-signing-key-file", "pki/signing/ca.key"),
    ] {
        assert!(
            args.iter().any(|a| a["name"] == name
                && a["value"].as_str() == Some(&format!("/etc/kubernetes/{file}"))),
            "{args:?}"
        );
        assert!(bundle.join(file).exists(), "{file}");
    }
    // certSANs are exactly apiserver.crt's SANs (one control-plane node).
    let sans: BTreeSet<String> = cluster.api_server.cert_sans.iter().cloned().collect();
    assert_eq!(sans, openssl_sans(&bundle.join("pki/apiserver.crt")));
    assert!(sans.contains("k8s.example.com") && sans.contains("203.0.113.10"));
    let local = cluster.etcd.local.unwrap();
    let server: BTreeSet<String> = local.server_cert_sans.into_iter().collect();
    assert_eq!(server, openssl_sans(&bundle.join("pki/etcd/server.crt")));
    let peer: BTreeSet<String> = local.peer_cert_sans.into_iter().collect();
    assert_eq!(peer, openssl_sans(&bundle.join("pki/etcd/peer.crt")));
    // The bootstrap token is the one kpki's Secret holds, with the spec's TTL.
    let secret: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(out.join("cluster/manifests/bootstrap-token.yaml")).unwrap(),
    )
    .unwrap();
    let token = format!(
        "{}.{}",
        secret["stringData"]["token-id"].as_str().unwrap(),
        secret["stringData"]["token-secret"].as_str().unwrap()
    );
    assert_eq!(init.bootstrap_tokens.len(), 1);
    let t = &init.bootstrap_tokens[0];
    assert_eq!(t.token, token);
    assert_eq!(t.ttl, "2h0m0s");
    assert_eq!(t.usages, ["signing", "authentication"]);
    assert_eq!(t.groups, [pki_core::BOOTSTRAP_GROUP]);
    assert!(t.description.contains("kpki"));
    // The worker joins with the same token, pinned to the CA's SPKI as kubeadm hashes it.
    let j = join_yaml(&out, "w1");
    assert_eq!(
        (j.api_version.as_str(), j.kind.as_str()),
        ("kubeadm.k8s.io/v1beta4", "JoinConfiguration")
    );
    assert_eq!(j.node_registration.name, "w1");
    assert!(j.control_plane.is_none());
    assert_eq!(j.ca_cert_path, "/etc/kubernetes/pki/ca.crt");
    assert_eq!(j.discovery.bootstrap_token.token, token);
    assert_eq!(
        j.discovery.bootstrap_token.api_server_endpoint,
        "api.example.internal:8443"
    );
    assert_eq!(
        j.discovery.bootstrap_token.ca_cert_hashes,
        [openssl_spki_hash(&out.join("cluster/pki/ca.crt"))]
    );
    // kpki placed bootstrap-kubelet.conf, so join's preflight check for it is skipped.
    assert!(
        out.join("nodes/w1/etc/kubernetes/bootstrap-kubelet.conf")
            .exists()
    );
    assert_eq!(
        j.node_registration.ignore_preflight_errors,
        ["FileAvailable--etc-kubernetes-bootstrap-kubelet.conf"]
    );
    // They hold the token: 0600.
    assert_eq!(mode(&out.join("cluster/kubeadm/init.yaml")), 0o600);
    assert_eq!(
        mode(&out.join("nodes/w1/etc/kubernetes/kubeadm-join.yaml")),
        0o600
    );
    assert!(
        !out.join("nodes/cp1/etc/kubernetes/kubeadm-join.yaml")
            .exists()
    );
}

#[test]
fn kubeadm_ha_with_external_etcd_and_older_config_apis() {
    for (api, version) in [
        ("", "v1beta4"),
        ("v1beta3", "v1beta3"),
        ("v1beta1", "v1beta1"),
    ] {
        let spec = if api.is_empty() {
            HA.to_owned()
        } else {
            format!("{HA}[kubeadm]\nconfig_api = \"{api}\"\n")
        };
        let (_t, spec_path, out, _) = issue(&spec);
        let (init, cluster) = init_yaml(&out);
        assert_eq!(init.api_version, format!("kubeadm.k8s.io/{version}"));
        assert_eq!(cluster.api_version, format!("kubeadm.k8s.io/{version}"));
        // External etcd: endpoints and client files are the apiserver's flags.
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
            .arg(&spec_path)
            .output()
            .unwrap();
        let flags: Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = |k: &str| flags["flags"][k].as_str().unwrap().to_owned();
        let ext = cluster.etcd.external.unwrap();
        assert!(cluster.etcd.local.is_none());
        assert_eq!(ext.endpoints.join(","), f("etcd-servers"));
        assert_eq!(ext.endpoints, ["https://10.0.1.11:2379"]);
        assert_eq!(
            (ext.ca_file, ext.cert_file, ext.key_file),
            (f("etcd-cafile"), f("etcd-certfile"), f("etcd-keyfile"))
        );
        // certSANs: what both apiserver certs share; each cert covers them.
        let s1 = openssl_sans(&out.join("nodes/cp1/etc/kubernetes/pki/apiserver.crt"));
        let s2 = openssl_sans(&out.join("nodes/cp2/etc/kubernetes/pki/apiserver.crt"));
        let sans: BTreeSet<String> = cluster.api_server.cert_sans.into_iter().collect();
        assert_eq!(sans, s1.intersection(&s2).cloned().collect());
        assert!(sans.contains("10.0.0.100") && !sans.contains("10.0.0.11"));
        // The second control-plane node joins as one, the worker as a worker.
        let j = join_yaml(&out, "cp2");
        assert_eq!(j.api_version, format!("kubeadm.k8s.io/{version}"));
        assert_eq!(
            j.control_plane
                .unwrap()
                .local_api_endpoint
                .advertise_address,
            "10.0.0.12"
        );
        // ignorePreflightErrors exists from v1beta2 on.
        let ignored = j.node_registration.ignore_preflight_errors;
        if version == "v1beta1" {
            assert!(ignored.is_empty());
        } else {
            assert_eq!(ignored, ["FileAvailable--etc-kubernetes-kubelet.conf"]);
        }
        assert!(
            out.join("nodes/w1/etc/kubernetes/kubeadm-join.yaml")
                .exists()
        );
        assert!(
            !out.join("nodes/e1/etc/kubernetes/kubeadm-join.yaml")
                .exists()
        );
    }
}

fn findings(spec: &Path) -> Vec<Value> {
    let o = kpki()
        .args(["plan", "--format", "json", "--spec"])
        .arg(spec)
        .output()
        .unwrap();
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    d["findings"].as_array().unwrap().clone()
}

#[test]
fn profiles_kubeadm_and_cluster_api_cannot_express_are_findings_and_get_no_files() {
    let root = common::root();
    let isolated = findings(&root.join("fixtures/specs/ha.toml"));
    let k001 = isolated.iter().find(|f| f["code"] == "K001").unwrap();
    let m = k001["message"].as_str().unwrap();
    assert_eq!(k001["severity"], "info");
    assert!(
        m.contains("apiserver.crt is signed by apiserver-server-ca")
            && m.contains("not signed by corresponding CA"),
        "{m}"
    );
    assert!(isolated.iter().any(|f| f["code"] == "K002"));
    // The kubeadm preset has neither.
    let kubeadm = findings(&root.join("fixtures/specs/example.toml"));
    assert!(
        !kubeadm
            .iter()
            .any(|f| f["code"].as_str().unwrap().starts_with('K')),
        "{kubeadm:?}"
    );
    // Isolated: no kubeadm files, no Secrets; the drop-ins still.
    let spec = std::fs::read_to_string(root.join("fixtures/specs/ha.toml")).unwrap();
    let (_t, _s, out, stdout) = issue(&spec);
    assert!(!out.join("cluster/kubeadm").exists());
    assert!(!out.join("cluster/capi").exists());
    assert!(!stdout.contains("Cluster API"), "{stdout}");
    assert!(
        out.join("nodes/cp1/etc/systemd/system/kube-apiserver.service.d/10-kpki.conf")
            .exists()
    );
    // A cluster name that is no object name: kubeadm files yes, Secrets no.
    let (_t, spec_path, out, _) = issue(&SPEC.replace("name = \"prod\"", "name = \"Prod_1\""));
    assert!(out.join("cluster/kubeadm/init.yaml").exists());
    assert!(!out.join("cluster/capi").exists());
    let f = findings(&spec_path);
    assert!(
        f.iter()
            .any(|f| f["code"] == "K002" && f["message"].as_str().unwrap().contains("Prod_1"))
    );
    assert!(!f.iter().any(|f| f["code"] == "K001"));
}

/// The `KPKI_ARGS` words of a drop-in, unescaped as systemd reads them.
fn drop_in_args(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("Environment="))
        .unwrap();
    let v = line
        .strip_prefix("Environment=\"KPKI_ARGS=")
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    v.replace("%%", "%")
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
        .split(' ')
        .map(str::to_owned)
        .collect()
}

fn verify(dir: &Path, unit: &str) -> (bool, String) {
    let (ok, _, err) = run(Command::new(tool("systemd-analyze"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .arg("verify")
        .arg(dir.join(unit)));
    (ok, err)
}

#[test]
fn systemd_drop_ins_verify_and_carry_exactly_kpki_flags() {
    let (_t, spec_path, out, _) = issue(SPEC);
    let mut checked = 0;
    for (node, units) in [
        (
            "cp1",
            &[
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
            ][..],
        ),
        ("w1", &["kubelet"][..]),
    ] {
        let sys = out.join(format!("nodes/{node}/etc/systemd/system"));
        let readme = std::fs::read_to_string(sys.join("README.kpki")).unwrap();
        for unit in units {
            let drop_in = sys.join(format!("{unit}.service.d/10-kpki.conf"));
            let text = std::fs::read_to_string(&drop_in).unwrap();
            assert_eq!(mode(&drop_in), 0o644);
            // The same words as `kpki flags <c> --node <n> --format args`.
            let o = kpki()
                .args(["flags", unit, "--node", node, "--format", "args", "--spec"])
                .arg(&spec_path)
                .output()
                .unwrap();
            let want: Vec<String> = String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            assert!(!want.is_empty());
            assert_eq!(drop_in_args(&text), want, "{unit} on {node}");
            assert!(
                readme.contains(&format!("ExecStart=/usr/local/bin/{unit} $KPKI_ARGS")),
                "{readme}"
            );
            // systemd-analyze verify: the drop-in beside a minimal unit.
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().join(format!("{unit}.service.d"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                dir.path().join(format!("{unit}.service")),
                "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true $KPKI_ARGS\n",
            )
            .unwrap();
            std::fs::write(d.join("10-kpki.conf"), &text).unwrap();
            let (ok, err) = verify(dir.path(), &format!("{unit}.service"));
            assert!(ok && err.trim().is_empty(), "{unit}: {err}");
            // The same check notices a broken drop-in (it is really read).
            std::fs::write(
                d.join("10-kpki.conf"),
                text.replace("Environment=", "Environmentt="),
            )
            .unwrap();
            let (_, err) = verify(dir.path(), &format!("{unit}.service"));
            assert!(err.contains("10-kpki.conf"), "{err}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn cluster_api_secrets_hold_the_pki_bytes_and_kubectl_reads_them() {
    use base64::Engine;
    let (_t, _s, out, stdout) = issue(SPEC);
    let capi = out.join("cluster/capi");
    assert!(stdout.contains(&format!("{}", capi.display())), "{stdout}");
    let pki = out.join("cluster/pki");
    let read = |p: &Path| std::fs::read(p).unwrap();
    for (purpose, cert, key) in [
        ("ca", "ca.crt", "ca.key"),
        ("etcd", "etcd/ca.crt", "etcd/ca.key"),
        ("proxy", "front-proxy-ca.crt", "front-proxy-ca.key"),
        ("sa", "sa.pub", "sa.key"),
        ("kubeconfig", "", ""),
    ] {
        let file = capi.join(format!("prod-{purpose}.yaml"));
        assert_eq!(mode(&file), 0o600, "{purpose}");
        // kubectl parses the object offline (no cluster here).
        let (ok, json, err) = run(Command::new(tool("kubectl"))
            .args(["label", "--local", "-o", "json", "-f"])
            .arg(&file)
            .arg("kpki-test=1"));
        assert!(ok, "{purpose}: {err}");
        let s: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(s["kind"], "Secret");
        assert_eq!(s["type"], "cluster.x-k8s.io/secret");
        assert_eq!(s["metadata"]["name"], format!("prod-{purpose}"));
        assert_eq!(
            s["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"],
            "prod"
        );
        let data = |k: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s["data"][k].as_str().unwrap())
                .unwrap()
        };
        if purpose == "kubeconfig" {
            let kc = String::from_utf8(data("value")).unwrap();
            let v: Value = serde_yaml_ng::from_str(&kc).unwrap();
            assert_eq!(
                v["clusters"][0]["cluster"]["server"],
                "https://api.example.internal:8443"
            );
            assert!(v["users"][0]["user"]["client-key-data"].is_string());
            // kubectl reads it as a kubeconfig.
            let kcf = out.join("kc-test.conf");
            std::fs::write(&kcf, &kc).unwrap();
            let (ok, _, err) = run(Command::new(tool("kubectl"))
                .args(["config", "view", "--kubeconfig"])
                .arg(&kcf));
            assert!(ok, "{err}");
            continue;
        }
        assert_eq!(data("tls.crt"), read(&pki.join(cert)), "{purpose}");
        assert_eq!(data("tls.key"), read(&pki.join(key)), "{purpose}");
        // The key matches the certificate (or public key).
        let pubkey = |args: &[&str], p: &Path| {
            let (ok, o, e) = run(Command::new(tool("openssl")).args(args).arg(p));
            assert!(ok, "{e}");
            o
        };
        let from_key = pubkey(&["pkey", "-pubout", "-in"], &pki.join(key));
        let from_cert = if purpose == "sa" {
            pubkey(&["pkey", "-pubin", "-pubout", "-in"], &pki.join(cert))
        } else {
            pubkey(&["x509", "-pubkey", "-noout", "-in"], &pki.join(cert))
        };
        assert_eq!(from_key, from_cert, "{purpose}");
    }
}

/// A minimal API discovery endpoint on 127.0.0.1 (plain HTTP): enough for
/// `kubectl apply --dry-run=client` to map a Secret and find that it does not
/// exist yet. It serves `/api`, `/apis`, `/api/v1` and answers 404 to any
/// object GET; it stops when the returned guard drops.
struct FakeApi {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !flag.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let path = path.split('?').next().unwrap_or("/").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let (status, body) = match path.as_str() {
                    "/api" => ("200 OK", r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#.to_owned()),
                    "/apis" => ("200 OK", r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#.to_owned()),
                    "/api/v1" => ("200 OK", r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["create","delete","get","list","patch","update","watch"]}]}"#.to_owned()),
                    p => ("404 Not Found", format!(r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{p} not found","reason":"NotFound","code":404}}"#)),
                };
                let mut s = reader.into_inner();
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.flush();
            }
        });
        Self {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn kubectl_apply_dry_run_client_accepts_the_cluster_api_secrets() {
    let (_t, _s, out, _) = issue(SPEC);
    let api = FakeApi::start();
    for purpose in ["ca", "etcd", "proxy", "sa", "kubeconfig"] {
        let file = out
            .join("cluster/capi")
            .join(format!("prod-{purpose}.yaml"));
        let (ok, stdout, err) = run(Command::new(tool("kubectl"))
            .arg(format!("--server=http://127.0.0.1:{}", api.port))
            // Discovery is cached: in the test's own directory, never in the source tree.
            .arg(format!("--cache-dir={}", out.join("kube-cache").display()))
            .args([
                "--namespace",
                "default",
                "apply",
                "--dry-run=client",
                "--validate=false",
                "-f",
            ])
            .arg(&file)
            .env("KUBECONFIG", "/dev/null")
            .env_remove("HOME"));
        assert!(ok, "{purpose}: {stdout}{err}");
        assert!(
            stdout.contains(&format!("secret/prod-{purpose} created (dry run)")),
            "{purpose}: {stdout}{err}"
        );
    }
}
