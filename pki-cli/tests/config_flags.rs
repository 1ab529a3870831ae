//! `kpki check` reads the components' real configuration: kubeadm static
//! pod manifests, systemd units (also from `--config-dir`) and their
//! environment files. Trust findings come from the flags and name them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{existing_pki, kpki, run, tool};
use serde_json::Value;

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn openssl(args: &[&str]) {
    let (ok, out, err) = run(Command::new(tool("openssl")).args(args));
    assert!(ok, "openssl {args:?} failed:\n{out}\n{err}");
}

/// Re-issues `name` (under `pki`) for the key beside it, signed by `ca`.
fn reissue(pki: &Path, name: &str, ca: &str, eku: &str) {
    let p = |f: &str| pki.join(f).display().to_string();
    let ext = pki.join("leaf.ext");
    std::fs::write(
        &ext,
        format!(
            "[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = {eku}\n"
        ),
    )
    .unwrap();
    let csr = p("leaf.csr");
    openssl(&[
        "req",
        "-new",
        "-key",
        &p(&format!("{name}.key")),
        "-subj",
        &format!("/CN={name}"),
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &p(&format!("{ca}.crt")),
        "-CAkey",
        &p(&format!("{ca}.key")),
        "-set_serial",
        "0x1234abcd",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        &ext.display().to_string(),
        "-extensions",
        "leaf",
        "-out",
        &p(&format!("{name}.crt")),
    ]);
    std::fs::remove_file(ext).unwrap();
    std::fs::remove_file(csr).unwrap();
}

/// An install root `ROOT/etc/kubernetes` made from the kubeadm fixture,
/// with its trust faults mended (front-proxy-client under front-proxy-ca,
/// sa.pub from sa.key, apiserver-etcd-client for the key on disk): every
/// T finding that remains comes from the flags.
fn sound_root(tmp: &Path) -> PathBuf {
    let root = tmp.join("root");
    let kube = root.join("etc/kubernetes");
    copy_dir(&existing_pki().join("kubeadm"), &kube);
    let pki = kube.join("pki");
    reissue(&pki, "front-proxy-client", "front-proxy-ca", "clientAuth");
    reissue(&pki, "apiserver-etcd-client", "etcd/ca", "clientAuth");
    openssl(&[
        "rsa",
        "-in",
        &pki.join("sa.key").display().to_string(),
        "-pubout",
        "-out",
        &pki.join("sa.pub").display().to_string(),
    ]);
    root
}

/// kube-apiserver's static pod as kubeadm writes it (kubeadm's
/// cmd/kubeadm/app/phases/controlplane/manifests.go flag set).
fn apiserver_manifest(client_ca: &str, tls_cert: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.10
    - --allow-privileged=true
    - --authorization-mode=Node,RBAC
    - --client-ca-file={client_ca}
    - --enable-admission-plugins=NodeRestriction
    - --enable-bootstrap-token-auth=true
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379
    - --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt
    - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key
    - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
    - --proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt
    - --proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key
    - --requestheader-allowed-names=front-proxy-client
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --requestheader-extra-headers-prefix=X-Remote-Extra-
    - --requestheader-group-headers=X-Remote-Group
    - --requestheader-username-headers=X-Remote-User
    - --secure-port=6443
    - --service-account-issuer=https://kubernetes.default.svc.cluster.local
    - --service-account-key-file=/etc/kubernetes/pki/sa.pub
    - --service-account-signing-key-file=/etc/kubernetes/pki/sa.key
    - --service-cluster-ip-range=10.96.0.0/12
    - --tls-cert-file={tls_cert}
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    image: registry.k8s.io/kube-apiserver:v1.31.0
    name: kube-apiserver
"
    )
}

const CONTROLLER_MANAGER: &str = "apiVersion: v1
kind: Pod
metadata:
  name: kube-controller-manager
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-controller-manager
    - --allocate-node-cidrs=true
    - --authentication-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --authorization-kubeconfig=/etc/kubernetes/controller-manager.conf
    - --bind-address=127.0.0.1
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --cluster-name=kubernetes
    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt
    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key
    - --controllers=*,bootstrapsigner,tokencleaner
    - --kubeconfig=/etc/kubernetes/controller-manager.conf
    - --leader-elect=true
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --root-ca-file=/etc/kubernetes/pki/ca.crt
    - --service-account-private-key-file=/etc/kubernetes/pki/sa.key
    - --use-service-account-credentials=true
    image: registry.k8s.io/kube-controller-manager:v1.31.0
    name: kube-controller-manager
";

const SCHEDULER: &str = "apiVersion: v1
kind: Pod
metadata:
  name: kube-scheduler
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-scheduler
    - --authentication-kubeconfig=/etc/kubernetes/scheduler.conf
    - --authorization-kubeconfig=/etc/kubernetes/scheduler.conf
    - --bind-address=127.0.0.1
    - --kubeconfig=/etc/kubernetes/scheduler.conf
    - --leader-elect=true
    image: registry.k8s.io/kube-scheduler:v1.31.0
    name: kube-scheduler
";

const ETCD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.10:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://10.0.0.10:2380
    - --initial-cluster=cp1=https://10.0.0.10:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379
    - --name=cp1
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.15-0
    name: etcd
";

const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
cgroupDriver: systemd
staticPodPath: /etc/kubernetes/manifests
";

/// Writes the kubeadm manifests and kubelet configuration under `root`.
fn write_kubeadm_config(root: &Path, apiserver: &str) {
    let m = root.join("etc/kubernetes/manifests");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("kube-apiserver.yaml"), apiserver).unwrap();
    std::fs::write(m.join("kube-controller-manager.yaml"), CONTROLLER_MANAGER).unwrap();
    std::fs::write(m.join("kube-scheduler.yaml"), SCHEDULER).unwrap();
    std::fs::write(m.join("etcd.yaml"), ETCD).unwrap();
    std::fs::create_dir_all(root.join("var/lib/kubelet")).unwrap();
    std::fs::write(root.join("var/lib/kubelet/config.yaml"), KUBELET_CONFIG).unwrap();
}

/// `kpki check ARGS --format json`: (exit code, document).
fn check_json(args: &[&str]) -> (i32, Value) {
    let out = kpki()
        .arg("check")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), doc)
}

fn findings<'a>(doc: &'a Value, code: &str) -> Vec<&'a Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == code)
        .collect()
}

fn files(f: &Value) -> Vec<String> {
    f["files"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The 1-based line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const MANIFEST: &str = "etc/kubernetes/manifests/kube-apiserver.yaml";

#[test]
fn sound_manifests_give_no_trust_findings_and_the_header_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let dir = root.display().to_string();
    // Without configuration: the profile's bindings, and the header says so.
    let (_, doc) = check_json(&[&dir]);
    assert_eq!(doc["trust"]["source"], "profile", "{}", doc["trust"]);
    assert_eq!(
        doc["trust"]["header"],
        "no component configuration found: trust judged from the profile's bindings"
    );
    write_kubeadm_config(
        &root,
        &apiserver_manifest(
            "/etc/kubernetes/pki/ca.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    );
    let (_, doc) = check_json(&[&dir]);
    let trust = &doc["trust"];
    assert_eq!(trust["source"], "flags");
    let header = trust["header"].as_str().unwrap();
    for f in [
        MANIFEST,
        "etc/kubernetes/manifests/etcd.yaml",
        "etc/kubernetes/manifests/kube-controller-manager.yaml",
        "var/lib/kubelet/config.yaml",
    ] {
        assert!(header.contains(f), "{header}");
    }
    assert!(header.starts_with("flags read from: "), "{header}");
    let t: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with('T') || f["code"] == "F002")
        .collect();
    assert!(t.is_empty(), "{t:#?}");
    // The flags applied name the nodes their files hold.
    let client_ca = trust["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == "kube-apiserver" && f["flag"] == "--client-ca-file")
        .unwrap();
    assert_eq!(client_ca["targets"], serde_json::json!(["kubernetes-ca"]));
    assert_eq!(client_ca["file"], "etc/kubernetes/pki/ca.crt");
    assert_eq!(client_ca["origin"]["line"], 18);
    // Every flag is kept, the ones kpki does not judge too.
    let apiserver = trust["configuration"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "kube-apiserver")
        .unwrap();
    let mode = apiserver["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "authorization-mode")
        .unwrap();
    assert_eq!(mode["value"], "Node,RBAC");
    assert_eq!(mode["origin"]["file"], MANIFEST);
    // The text header too.
    let out = kpki().args(["check", &dir]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("flags read from: ") && l.contains("etcd.yaml")),
        "{text}"
    );
}

#[test]
fn wrong_client_ca_in_a_manifest_is_t001_naming_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let manifest = apiserver_manifest(
        "/etc/kubernetes/pki/front-proxy-ca.crt",
        "/etc/kubernetes/pki/apiserver.crt",
    );
    write_kubeadm_config(&root, &manifest);
    let (code, doc) = check_json(&[&root.display().to_string()]);
    assert_eq!(code, 1);
    let line = line_of(&manifest, "--client-ca-file=");
    let t001 = findings(&doc, "T001");
    let admin = t001
        .iter()
        .find(|f| f["nodes"] == serde_json::json!(["admin", "front-proxy-ca"]))
        .unwrap_or_else(|| panic!("{t001:#?}"));
    assert!(files(admin).contains(&MANIFEST.to_owned()), "{admin}");
    let msg = admin["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "kube-apiserver --client-ca-file ({MANIFEST}:{line})"
        )),
        "{msg}"
    );
    // The same wiring makes the controller-manager's signer disagree (T003).
    let t003 = findings(&doc, "T003");
    assert_eq!(t003.len(), 1, "{t003:#?}");
    assert!(files(t003[0]).contains(&MANIFEST.to_owned()));
}

#[test]
fn a_flag_naming_a_missing_file_is_f002() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let manifest = apiserver_manifest(
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/apiserver-gone.crt",
    );
    write_kubeadm_config(&root, &manifest);
    let (code, doc) = check_json(&[&root.display().to_string()]);
    assert_eq!(code, 1);
    let f002 = findings(&doc, "F002");
    assert_eq!(f002.len(), 1, "{f002:#?}");
    let f = f002[0];
    assert_eq!(files(f), vec![MANIFEST.to_owned()]);
    let msg = f["message"].as_str().unwrap();
    let line = line_of(&manifest, "--tls-cert-file=");
    assert!(
        msg.starts_with(&format!(
            "kube-apiserver --tls-cert-file ({MANIFEST}:{line}) names /etc/kubernetes/pki/apiserver-gone.crt"
        )),
        "{msg}"
    );
    assert_eq!(f["severity"], "error");
    let out = kpki().args(["explain", "F002"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not exist"));
}

/// kube-apiserver.service with the flags on `\` continuation lines.
fn unit(client_ca: &str, tls_cert: &str) -> String {
    format!(
        "[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/kubernetes/kubernetes
After=etcd.service
Wants=etcd.service

[Service]
ExecStart=/usr/local/bin/kube-apiserver \\
  --advertise-address=10.0.0.10 \\
  --secure-port=6443 \\
  --tls-cert-file={tls_cert} \\
  --tls-private-key-file=/etc/kubernetes/pki/apiserver.key \\
  --client-ca-file {client_ca} \\
  --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt \\
  --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt \\
  --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key \\
  --proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt \\
  --proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key \\
  --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt \\
  --requestheader-allowed-names=front-proxy-client \\
  --service-account-key-file=/etc/kubernetes/pki/sa.pub \\
  --service-account-signing-key-file=/etc/kubernetes/pki/sa.key
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
"
    )
}

#[test]
fn plants_in_a_systemd_unit_name_the_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let units = root.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    let path = "etc/systemd/system/kube-apiserver.service";
    let text = unit(
        "/etc/kubernetes/pki/front-proxy-ca.crt",
        "/etc/kubernetes/pki/gone.crt",
    );
    std::fs::write(root.join(path), &text).unwrap();
    let (code, doc) = check_json(&[&root.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        doc["trust"]["header"].as_str().unwrap().contains(path),
        "{}",
        doc["trust"]
    );
    let t001 = findings(&doc, "T001");
    let kubelet = t001
        .iter()
        .find(|f| f["nodes"] == serde_json::json!(["kubelet@cp1", "front-proxy-ca"]))
        .unwrap_or_else(|| panic!("{t001:#?}"));
    assert!(files(kubelet).contains(&path.to_owned()));
    let line = line_of(&text, "--client-ca-file ");
    assert!(
        kubelet["message"]
            .as_str()
            .unwrap()
            .contains(&format!("kube-apiserver --client-ca-file ({path}:{line})")),
        "{kubelet}"
    );
    let f002 = findings(&doc, "F002");
    assert_eq!(f002.len(), 1, "{f002:#?}");
    assert_eq!(files(f002[0]), vec![path.to_owned()]);
    let line = line_of(&text, "--tls-cert-file=");
    assert!(
        f002[0]["message"].as_str().unwrap().starts_with(&format!(
            "kube-apiserver --tls-cert-file ({path}:{line}) names"
        )),
        "{}",
        f002[0]
    );
}

#[test]
fn plants_through_an_environment_file_with_config_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    // The seeds' way: the unit elsewhere, its options in an EnvironmentFile
    // of the audited machine.
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("kube-apiserver.service"),
        "[Unit]\nDescription=Kubernetes API Server\n[Service]\n\
         EnvironmentFile=-/etc/kubernetes/kube-apiserver.conf\n\
         EnvironmentFile=-/etc/kubernetes/absent.conf\n\
         ExecStart=/usr/local/bin/kube-apiserver $KUBE_APISERVER_OPTS\nRestart=on-failure\n\
         Type=notify\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    // An unrelated unit is not configuration.
    std::fs::write(
        units.join("nginx.service"),
        "[Service]\nExecStart=/usr/local/nginx/sbin/nginx\n",
    )
    .unwrap();
    let env = "KUBE_APISERVER_OPTS=\"--anonymous-auth=false \\
--bind-address=10.0.0.10 \\
--secure-port=6443 \\
--tls-cert-file=/etc/kubernetes/pki/apiserver.crt \\
--tls-private-key-file=/etc/kubernetes/pki/apiserver.key \\
--client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt \\
--etcd-cafile=/etc/kubernetes/pki/etcd/missing-ca.crt \\
--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt \\
--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt \\
--v=2\"
";
    let env_path = "etc/kubernetes/kube-apiserver.conf";
    std::fs::write(root.join(env_path), env).unwrap();
    let (code, doc) = check_json(&[
        &root.display().to_string(),
        "--config-dir",
        &units.display().to_string(),
    ]);
    assert_eq!(code, 1);
    let unit_shown = format!("{}/kube-apiserver.service", units.display());
    let header = doc["trust"]["header"].as_str().unwrap();
    assert!(header.contains(&unit_shown), "{header}");
    assert!(header.contains(env_path), "{header}");
    assert!(!header.contains("nginx"), "{header}");
    let t001 = findings(&doc, "T001");
    let admin = t001
        .iter()
        .find(|f| f["nodes"] == serde_json::json!(["admin", "front-proxy-ca"]))
        .unwrap_or_else(|| panic!("{t001:#?}"));
    let fs = files(admin);
    assert!(fs.contains(&env_path.to_owned()), "{fs:?}");
    assert!(fs.contains(&unit_shown), "{fs:?}");
    let line = line_of(env, "--client-ca-file=");
    assert_eq!(line, 6);
    assert!(
        admin["message"].as_str().unwrap().contains(&format!(
            "kube-apiserver --client-ca-file ({env_path}:{line})"
        )),
        "{admin}"
    );
    let f002 = findings(&doc, "F002");
    assert_eq!(f002.len(), 1, "{f002:#?}");
    let mut want = vec![env_path.to_owned(), unit_shown.clone()];
    want.sort();
    assert_eq!(files(f002[0]), want);
    assert!(
        f002[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "kube-apiserver --etcd-cafile ({env_path}:7) names /etc/kubernetes/pki/etcd/missing-ca.crt"
            )),
        "{}",
        f002[0]
    );
    // Without --config-dir the unit is not seen: trust from the profile.
    let (_, doc) = check_json(&[&root.display().to_string()]);
    assert_eq!(doc["trust"]["source"], "profile");
    assert!(findings(&doc, "F002").is_empty());
}

#[test]
fn config_dir_must_be_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let out = kpki()
        .args(["check", &root.display().to_string(), "--config-dir"])
        .arg(tmp.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config-dir: not a directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn configuration_outside_the_root_or_not_a_file_is_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    write_kubeadm_config(
        &root,
        &apiserver_manifest(
            "/etc/kubernetes/pki/ca.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    );
    // A manifest outside the root that plants a wrong CA, linked in.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("kube-apiserver.yaml"),
        apiserver_manifest(
            "/etc/kubernetes/pki/front-proxy-ca.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    )
    .unwrap();
    let m = root.join("etc/kubernetes/manifests");
    std::os::unix::fs::symlink(
        outside.join("kube-apiserver.yaml"),
        m.join("zz-linked.yaml"),
    )
    .unwrap();
    // A unit directory that is a link out of the root.
    std::fs::create_dir_all(root.join("etc/systemd")).unwrap();
    std::fs::write(
        outside.join("kube-apiserver.service"),
        unit(
            "/etc/kubernetes/pki/front-proxy-ca.crt",
            "/etc/kubernetes/pki/gone.crt",
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, root.join("etc/systemd/system")).unwrap();
    // A FIFO where a manifest would be: reported, never opened for reading.
    let (ok, _, err) = run(Command::new("mkfifo").arg(m.join("fifo.yaml")));
    assert!(ok, "{err}");
    let (_, doc) = check_json(&[&root.display().to_string()]);
    let header = doc["trust"]["header"].as_str().unwrap();
    assert!(!header.contains("zz-linked"), "{header}");
    assert!(!header.contains("kube-apiserver.service"), "{header}");
    let t: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with('T') || f["code"] == "F002")
        .collect();
    assert!(t.is_empty(), "{t:#?}");
    let fifo = findings(&doc, "F001")
        .into_iter()
        .find(|f| files(f).contains(&"etc/kubernetes/manifests/fifo.yaml".to_owned()))
        .unwrap_or_else(|| panic!("{:#}", doc["findings"]));
    assert!(fifo["message"].as_str().unwrap().contains("FIFO"), "{fifo}");
}

#[test]
fn a_ca_no_template_claims_and_a_bundle_are_judged_from_their_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let pki = root.join("etc/kubernetes/pki");
    let p = |f: &str| pki.join(f).display().to_string();
    // A CA kpki has no template for, and a bundle of two known CAs.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("other-ca.key"),
        "-out",
        &p("other-ca.crt"),
        "-subj",
        "/CN=other-ca",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    let bundle = [
        std::fs::read_to_string(pki.join("front-proxy-ca.crt")).unwrap(),
        std::fs::read_to_string(pki.join("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(pki.join("bundle.crt"), bundle).unwrap();
    let dir = root.display().to_string();
    write_kubeadm_config(
        &root,
        &apiserver_manifest(
            "/etc/kubernetes/pki/other-ca.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    );
    let (_, doc) = check_json(&[&dir]);
    // The CA is in the graph as what it is.
    let other = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["common_name"] == "other-ca")
        .unwrap_or_else(|| panic!("{:#}", doc["certificates"]));
    assert_eq!(other["kind"], "ca");
    let t001 = findings(&doc, "T001");
    let admin = t001
        .iter()
        .find(|f| f["nodes"] == serde_json::json!(["admin", other["id"]]))
        .unwrap_or_else(|| panic!("{t001:#?}"));
    assert!(files(admin).contains(&MANIFEST.to_owned()), "{admin}");
    // A bundle holding the clients' CA: trusted, no T001.
    write_kubeadm_config(
        &root,
        &apiserver_manifest(
            "/etc/kubernetes/pki/bundle.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    );
    let (_, doc) = check_json(&[&dir]);
    assert!(findings(&doc, "T001").is_empty(), "{:#}", doc["findings"]);
    let applied = doc["trust"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flag"] == "--client-ca-file")
        .unwrap();
    assert_eq!(
        applied["targets"],
        serde_json::json!(["front-proxy-ca", "kubernetes-ca"])
    );
}

#[test]
fn seed_style_units_against_a_flat_cfssl_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cfssl");
    copy_dir(&existing_pki().join("cfssl"), &dir);
    let units = tmp.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    // Seed 000: etcd's flags in the unit, the apiserver's in an
    // EnvironmentFile beside the units; paths of the machine, files flat here.
    std::fs::write(
        units.join("etcd.service"),
        "[Service]\nType=notify\nEnvironmentFile=-/etc/etcd/etcd.conf\nExecStart=/usr/local/bin/etcd \\\n\
         --cert-file=/etc/etcd/ssl/etcd-server.pem \\\n--key-file=/etc/etcd/ssl/etcd-server-key.pem \\\n\
         --trusted-ca-file=/etc/etcd/ssl/etcd-ca.pem \\\n--peer-cert-file=/etc/etcd/ssl/etcd-peer.pem \\\n\
         --peer-key-file=/etc/etcd/ssl/etcd-peer-key.pem \\\n--peer-trusted-ca-file=/etc/etcd/ssl/etcd-ca.pem \\\n\
         --peer-client-cert-auth \\\n--client-cert-auth\nRestart=on-failure\n",
    )
    .unwrap();
    std::fs::write(
        units.join("kube-apiserver.service"),
        "[Service]\nEnvironmentFile=-/etc/kubernetes/kube-apiserver.conf\n\
         ExecStart=/usr/local/bin/kube-apiserver $KUBE_APISERVER_OPTS\n",
    )
    .unwrap();
    std::fs::write(
        units.join("kube-apiserver.conf"),
        "KUBE_APISERVER_OPTS=\"--secure-port=6443 \\\n--etcd-cafile=/etc/etcd/ssl/etcd-ca.pem \\\n\
         --etcd-certfile=/etc/kubernetes/ssl/apiserver-etcd-client.pem \\\n\
         --etcd-keyfile=/etc/kubernetes/ssl/apiserver-etcd-client-key.pem \\\n\
         --client-ca-file=/etc/kubernetes/ssl/ca.pem\"\n",
    )
    .unwrap();
    let (_, doc) = check_json(&[
        &dir.display().to_string(),
        "--config-dir",
        &units.display().to_string(),
    ]);
    let etcd_unit = format!("{}/etcd.service", units.display());
    let env = format!("{}/kube-apiserver.conf", units.display());
    let t001 = findings(&doc, "T001");
    let f = t001
        .iter()
        .find(|f| {
            f["message"]
                .as_str()
                .unwrap()
                .starts_with("kube-apiserver -> etcd")
        })
        .unwrap_or_else(|| panic!("{t001:#?}"));
    let fs = files(f);
    assert!(fs.contains(&etcd_unit), "{fs:?}");
    assert!(fs.contains(&env), "{fs:?}");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("etcd --trusted-ca-file ({etcd_unit}:7)")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("kube-apiserver --etcd-certfile ({env}:3)")),
        "{msg}"
    );
    // Paths of the machine that are not in the flat folder are not "missing".
    assert!(findings(&doc, "F002").is_empty(), "{:#}", doc["findings"]);
}

#[test]
fn a_kubeconfig_named_by_kubeconfig_is_the_one_judged() {
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    let kube = root.join("etc/kubernetes");
    let pki = kube.join("pki");
    let p = |f: &str| tmp.path().join(f).display().to_string();
    // A scheduler kubeconfig the layout does not know, its client cert
    // signed by front-proxy-ca: the apiserver (client CA ca.crt) rejects it.
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("s.key"),
        "-out",
        &p("s.csr"),
        "-subj",
        "/CN=system:kube-scheduler",
    ]);
    std::fs::write(
        tmp.path().join("s.ext"),
        "[leaf]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("s.csr"),
        "-CA",
        &pki.join("front-proxy-ca.crt").display().to_string(),
        "-CAkey",
        &pki.join("front-proxy-ca.key").display().to_string(),
        "-set_serial",
        "0x77",
        "-days",
        "365",
        "-extfile",
        &p("s.ext"),
        "-extensions",
        "leaf",
        "-out",
        &p("s.crt"),
    ]);
    let b64 = |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(f).unwrap());
    std::fs::write(
        kube.join("scheduler-other.conf"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.10:6443\n  name: kubernetes\ncontexts:\n- context:\n    cluster: kubernetes\n    user: system:kube-scheduler\n  name: s@kubernetes\ncurrent-context: s@kubernetes\nusers:\n- name: system:kube-scheduler\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&pki.join("ca.crt").display().to_string()),
            b64(&p("s.crt")),
            b64(&p("s.key"))
        ),
    )
    .unwrap();
    write_kubeadm_config(
        &root,
        &apiserver_manifest(
            "/etc/kubernetes/pki/ca.crt",
            "/etc/kubernetes/pki/apiserver.crt",
        ),
    );
    let scheduler = SCHEDULER.replace(
        "--kubeconfig=/etc/kubernetes/scheduler.conf",
        "--kubeconfig=/etc/kubernetes/scheduler-other.conf",
    );
    let path = "etc/kubernetes/manifests/kube-scheduler.yaml";
    std::fs::write(root.join(path), &scheduler).unwrap();
    let (_, doc) = check_json(&[&root.display().to_string()]);
    let t001 = findings(&doc, "T001");
    assert_eq!(t001.len(), 1, "{t001:#?}");
    let f = t001[0];
    let fs = files(f);
    assert!(fs.contains(&path.to_owned()), "{fs:?}");
    assert!(
        fs.contains(&"etc/kubernetes/scheduler-other.conf".to_owned()),
        "{fs:?}"
    );
    let line = line_of(&scheduler, "--kubeconfig=");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains(&format!("kube-scheduler --kubeconfig ({path}:{line})")),
        "{f}"
    );
    assert_eq!(
        doc["trust"]["kubeconfigs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["component"] == "kube-scheduler")
            .map(|k| k["file"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["etc/kubernetes/scheduler-other.conf"]
    );
}

#[test]
fn a_flag_naming_a_file_without_a_certificate_is_f001() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    std::fs::write(
        root.join("etc/kubernetes/pki/junk.crt"),
        "not a certificate\n",
    )
    .unwrap();
    let manifest = apiserver_manifest(
        "/etc/kubernetes/pki/junk.crt",
        "/etc/kubernetes/pki/apiserver.crt",
    );
    write_kubeadm_config(&root, &manifest);
    let (code, doc) = check_json(&[&root.display().to_string()]);
    assert_eq!(code, 1);
    let line = line_of(&manifest, "--client-ca-file=");
    let f = findings(&doc, "F001")
        .into_iter()
        .find(|f| files(f) == vec!["etc/kubernetes/pki/junk.crt".to_owned()])
        .unwrap_or_else(|| panic!("{:#}", doc["findings"]));
    assert!(
        f["message"].as_str().unwrap().contains(&format!(
            "kube-apiserver --client-ca-file ({MANIFEST}:{line}) names it"
        )),
        "{f}"
    );
}

#[test]
fn etcd_config_file_named_by_its_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sound_root(tmp.path());
    // Seed 002: etcd.service runs `etcd --config-file=/etc/etcd/etcd.yaml`;
    // here the file trusts front-proxy-ca for clients.
    let unit = "usr/lib/systemd/system/etcd.service";
    std::fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
    std::fs::write(
        root.join(unit),
        "[Unit]\nDescription=Etcd Service\n\n[Service]\nType=notify\n\
         ExecStart=/usr/local/bin/etcd --config-file=/etc/etcd/etcd.yaml\nRestart=on-failure\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/etcd")).unwrap();
    let yaml = "name: cp1\ndata-dir: /var/lib/etcd\nclient-transport-security:\n  \
                cert-file: /etc/kubernetes/pki/etcd/server.crt\n  \
                key-file: /etc/kubernetes/pki/etcd/server.key\n  client-cert-auth: true\n  \
                trusted-ca-file: /etc/kubernetes/pki/front-proxy-ca.crt\n\
                peer-transport-security:\n  cert-file: /etc/kubernetes/pki/etcd/peer.crt\n  \
                key-file: /etc/kubernetes/pki/etcd/peer.key\n  \
                trusted-ca-file: /etc/kubernetes/pki/etcd/ca.crt\n";
    std::fs::write(root.join("etc/etcd/etcd.yaml"), yaml).unwrap();
    let (_, doc) = check_json(&[&root.display().to_string()]);
    let header = doc["trust"]["header"].as_str().unwrap();
    assert!(
        header.contains(unit) && header.contains("etc/etcd/etcd.yaml"),
        "{header}"
    );
    let t001 = findings(&doc, "T001");
    let f = t001
        .iter()
        .find(|f| {
            f["message"]
                .as_str()
                .unwrap()
                .starts_with("kube-apiserver -> etcd")
        })
        .unwrap_or_else(|| panic!("{t001:#?}"));
    let fs = files(f);
    assert!(fs.contains(&"etc/etcd/etcd.yaml".to_owned()), "{fs:?}");
    assert!(fs.contains(&unit.to_owned()), "{fs:?}");
    let line = line_of(
        yaml,
        "trusted-ca-file: /etc/kubernetes/pki/front-proxy-ca.crt",
    );
    assert!(
        f["message"].as_str().unwrap().contains(&format!(
            "etcd --trusted-ca-file (etc/etcd/etcd.yaml:{line})"
        )),
        "{f}"
    );
    // etcd verifies its own gateway with the same CA: T008.
    assert_eq!(findings(&doc, "T008").len(), 1, "{:#}", doc["findings"]);
}
