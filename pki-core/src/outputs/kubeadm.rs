//! kubeadm configuration files (`cluster/kubeadm/init.yaml` and one
//! `kubeadm-join.yaml` per joining node), generated from the component flag
//! sets, and the check that kubeadm can use the plan's files as they are.
//!
//! kubeadm's own expectations (file names under `certificatesDir`, the CA
//! each certificate must chain to, the SANs it verifies on existing
//! certificates, the flags its static pods set) are written down here once,
//! as kubeadm defines them; the plan's side always comes from
//! [`component_flags`](super::component_flags) and the layout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use super::{BOOTSTRAP_GROUP, BootstrapToken, ComponentFlags};
use crate::Plan;
use crate::graph::NodeId;
use crate::k8s::{Component, Flag, KubeconfigUser};
use crate::spec::{EtcdTopology, KubeadmApi, NodeSpec};
use crate::store::Part;
use crate::x509::{DnsName, Host, NodeName, SanSet};

/// kubeadm's fixed kubeconfig directory (`constants.KubernetesDir`).
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";

/// Where `init.yaml` goes under the output directory.
pub const INIT_CONFIG: &str = "cluster/kubeadm/init.yaml";

/// The join file's name in a node's install root.
pub const JOIN_CONFIG: &str = "kubeadm-join.yaml";

/// What a gap is about: the CA split (which Cluster API cannot change
/// either) or only file names, flags and SANs (which it regenerates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GapKind {
    /// Which CA signs or is trusted for what.
    Trust,
    /// Paths, flags and SANs.
    Layout,
}

/// One difference between the plan and what kubeadm does.
pub(crate) type Gap = (GapKind, String);

/// Why `kubeadm init`/`join` could not use the plan's files as they are:
/// each entry names what kubeadm would do differently. Empty when it can.
pub fn kubeadm_gaps(plan: &Plan) -> Vec<String> {
    gaps(plan, &super::component_flags(plan))
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

/// The certificates directory kubeadm would be configured with: the
/// directory of the apiserver's `--client-ca-file`.
pub(crate) fn certificates_dir(flags: &[ComponentFlags]) -> Option<String> {
    let ca = flags
        .iter()
        .find(|f| f.component == Component::KubeApiserver)?
        .get(Flag::ApiserverClientCaFile)?;
    Some(
        std::path::Path::new(ca)
            .parent()?
            .to_string_lossy()
            .into_owned(),
    )
}

fn stacked(plan: &Plan) -> bool {
    matches!(plan.spec.etcd, EtcdTopology::Stacked)
}

/// The PKI flags kubeadm's static pods and kubelet configuration set, for
/// certificates directory `d`: (component, flag or config key, value).
/// The signer copy of the cluster CA, under `certificatesDir`.
const SIGNING_CERT: &str = "signing/ca.crt";
/// Its key.
const SIGNING_KEY: &str = "signing/ca.key";

/// controllerManager.extraArgs naming the signer copy of the cluster CA:
/// a list of name/value pairs from v1beta4 on, a map before.
fn controller_manager_args(api: KubeadmApi, d: &str) -> Value {
    let args = [
        ("cluster-signing-cert-file", format!("{d}/{SIGNING_CERT}")),
        ("cluster-signing-key-file", format!("{d}/{SIGNING_KEY}")),
    ];
    if api == KubeadmApi::V1beta4 {
        Value::Array(
            args.iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        )
    } else {
        Value::Object(
            args.iter()
                .map(|(n, v)| ((*n).to_owned(), json!(v)))
                .collect(),
        )
    }
}

fn kubeadm_flags(d: &str, stacked: bool) -> Vec<(Component, &'static str, String)> {
    use Component::*;
    let p = |f: &str| format!("{d}/{f}");
    let k = |f: &str| format!("{KUBERNETES_DIR}/{f}");
    let mut v = vec![
        (KubeApiserver, "client-ca-file", p("ca.crt")),
        (KubeApiserver, "tls-cert-file", p("apiserver.crt")),
        (KubeApiserver, "tls-private-key-file", p("apiserver.key")),
        (
            KubeApiserver,
            "kubelet-client-certificate",
            p("apiserver-kubelet-client.crt"),
        ),
        (
            KubeApiserver,
            "kubelet-client-key",
            p("apiserver-kubelet-client.key"),
        ),
        (
            KubeApiserver,
            "proxy-client-cert-file",
            p("front-proxy-client.crt"),
        ),
        (
            KubeApiserver,
            "proxy-client-key-file",
            p("front-proxy-client.key"),
        ),
        (
            KubeApiserver,
            "requestheader-client-ca-file",
            p("front-proxy-ca.crt"),
        ),
        (KubeApiserver, "service-account-key-file", p("sa.pub")),
        (
            KubeApiserver,
            "service-account-signing-key-file",
            p("sa.key"),
        ),
        (KubeControllerManager, "client-ca-file", p("ca.crt")),
        // kpki's own signer copy (never a trust bundle during a CA
        // rotation), handed to kubeadm as controllerManager.extraArgs.
        (
            KubeControllerManager,
            "cluster-signing-cert-file",
            p(SIGNING_CERT),
        ),
        (
            KubeControllerManager,
            "cluster-signing-key-file",
            p(SIGNING_KEY),
        ),
        (
            KubeControllerManager,
            "requestheader-client-ca-file",
            p("front-proxy-ca.crt"),
        ),
        (KubeControllerManager, "root-ca-file", p("ca.crt")),
        (
            KubeControllerManager,
            "service-account-private-key-file",
            p("sa.key"),
        ),
        (Kubelet, "authentication.x509.clientCAFile", p("ca.crt")),
        (Kubelet, "kubeconfig", k("kubelet.conf")),
        (Kubelet, "bootstrap-kubeconfig", k("bootstrap-kubelet.conf")),
    ];
    for f in [
        "kubeconfig",
        "authentication-kubeconfig",
        "authorization-kubeconfig",
    ] {
        v.push((KubeControllerManager, f, k("controller-manager.conf")));
        v.push((KubeScheduler, f, k("scheduler.conf")));
    }
    if stacked {
        v.extend([
            (KubeApiserver, "etcd-cafile", p("etcd/ca.crt")),
            (
                KubeApiserver,
                "etcd-certfile",
                p("apiserver-etcd-client.crt"),
            ),
            (
                KubeApiserver,
                "etcd-keyfile",
                p("apiserver-etcd-client.key"),
            ),
            (Etcd, "cert-file", p("etcd/server.crt")),
            (Etcd, "key-file", p("etcd/server.key")),
            (Etcd, "peer-cert-file", p("etcd/peer.crt")),
            (Etcd, "peer-key-file", p("etcd/peer.key")),
            (Etcd, "trusted-ca-file", p("etcd/ca.crt")),
            (Etcd, "peer-trusted-ca-file", p("etcd/ca.crt")),
        ]);
    }
    v
}

/// (certificate, the CA kubeadm requires it to chain to), under `certificatesDir`.
fn kubeadm_issuers(stacked: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("apiserver.crt", "ca.crt"),
        ("apiserver-kubelet-client.crt", "ca.crt"),
        ("front-proxy-client.crt", "front-proxy-ca.crt"),
    ];
    if stacked {
        v.extend([
            ("etcd/server.crt", "etcd/ca.crt"),
            ("etcd/peer.crt", "etcd/ca.crt"),
            ("etcd/healthcheck-client.crt", "etcd/ca.crt"),
            ("apiserver-etcd-client.crt", "etcd/ca.crt"),
        ]);
    }
    v
}

/// The files `kubeadm init` (and a control-plane join) generates when they
/// are missing, relative to `certificatesDir`, then to `/etc/kubernetes`.
fn kubeadm_files_needed(stacked: bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut pki = vec![
        "ca.crt",
        "apiserver.crt",
        "apiserver.key",
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
        "front-proxy-ca.crt",
        "front-proxy-client.crt",
        "front-proxy-client.key",
        "sa.key",
        "sa.pub",
    ];
    if stacked {
        pki.extend([
            "etcd/ca.crt",
            "etcd/server.crt",
            "etcd/server.key",
            "etcd/peer.crt",
            "etcd/peer.key",
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            "apiserver-etcd-client.crt",
            "apiserver-etcd-client.key",
        ]);
    }
    let confs = vec![
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ];
    (pki, confs)
}

/// The plan's files by (node, install path).
struct Files<'a> {
    plan: &'a Plan,
    on_node: BTreeMap<(&'a NodeName, &'a str), (NodeId, Part)>,
}

impl<'a> Files<'a> {
    fn of(plan: &'a Plan) -> Self {
        let mut on_node = BTreeMap::new();
        for f in &plan.layout.files {
            for n in &f.nodes {
                on_node.insert((n, f.install_path.as_str()), (f.node, f.part));
            }
        }
        Self { plan, on_node }
    }

    fn get(&self, node: &NodeName, path: &str) -> Option<(NodeId, Part)> {
        self.on_node.get(&(node, path)).copied()
    }

    fn cert(&self, node: &NodeName, path: &str) -> Option<NodeId> {
        self.get(node, path)
            .filter(|(_, p)| *p == Part::Cert)
            .map(|(id, _)| id)
    }

    fn sans(&self, node: &NodeName, path: &str) -> Option<&'a SanSet> {
        let id = self.cert(node, path)?;
        self.plan.graph.cert(id).map(|c| &c.sans)
    }
}

/// kubeadm's default SANs (GetAPIServerAltNames, GetEtcdAltNames,
/// GetEtcdPeerAltNames) for one control-plane node.
fn kubeadm_sans(plan: &Plan, n: &NodeSpec, which: &str) -> Vec<Host> {
    let name = Host::Dns(DnsName::unchecked(n.name.as_str()));
    let addr = Host::Ip(n.address);
    match which {
        "apiserver.crt" => {
            let c = &plan.spec.cluster;
            let mut v = vec![name, addr];
            for d in [
                "kubernetes".to_owned(),
                "kubernetes.default".to_owned(),
                "kubernetes.default.svc".to_owned(),
                format!("kubernetes.default.svc.{}", c.dns_domain),
            ] {
                v.push(Host::Dns(DnsName::unchecked(&d)));
            }
            // kubeadm takes the first IP of the first service subnet only.
            if let Some(ip) = c.service_cidrs.first().and_then(|s| s.first_ip()) {
                v.push(Host::Ip(ip));
            }
            v.push(c.endpoint.host.clone());
            v
        }
        "etcd/server.crt" => vec![
            name,
            Host::Dns(DnsName::unchecked("localhost")),
            addr,
            Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ],
        _ => vec![name, addr],
    }
}

fn is_path(v: &str) -> bool {
    v.starts_with('/')
}

/// Every difference between the plan and what kubeadm does, deduplicated.
pub(crate) fn gaps(plan: &Plan, flags: &[ComponentFlags]) -> Vec<Gap> {
    let mut out: BTreeSet<Gap> = BTreeSet::new();
    let g = &plan.graph;
    let stacked = stacked(plan);
    let Some(d) = certificates_dir(flags) else {
        out.insert((
            GapKind::Layout,
            "kube-apiserver has no --client-ca-file: kubeadm always sets one (its certificatesDir/ca.crt)"
                .into(),
        ));
        return out.into_iter().collect();
    };
    let trust_file = |v: &str| v.ends_with("ca.crt") || v.ends_with("ca.key") || v.contains("/sa.");
    // 1. Flags: the plan's PKI flags against the ones kubeadm's static pods set.
    let expected = kubeadm_flags(&d, stacked);
    for f in flags {
        let managed = match f.component {
            Component::Etcd => stacked,
            Component::Etcdctl => false,
            _ => true,
        };
        if !managed {
            continue;
        }
        let plan_value = |name: &str| {
            f.flags.get(name).cloned().or_else(|| {
                f.config
                    .get(name)
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
        };
        let c = f.component;
        let mine: Vec<&(Component, &str, String)> =
            expected.iter().filter(|(ec, _, _)| *ec == c).collect();
        for (_, name, want) in &mine {
            let optional = c == Component::Kubelet
                && (*name == "bootstrap-kubeconfig" || *name == "kubeconfig");
            match plan_value(name) {
                Some(v) if v == *want => {}
                Some(v) => {
                    let kind = if trust_file(want) || trust_file(&v) {
                        GapKind::Trust
                    } else {
                        GapKind::Layout
                    };
                    out.insert((
                        kind,
                        format!(
                            "{c} {}: kubeadm uses {want}, the plan {v}",
                            flag_name(c, name)
                        ),
                    ));
                }
                None if optional => {}
                None => {
                    out.insert((
                        GapKind::Layout,
                        format!(
                            "{c} {}: kubeadm sets it to {want}, the plan does not set it",
                            flag_name(c, name)
                        ),
                    ));
                }
            }
        }
        let mut known: BTreeSet<&str> = mine.iter().map(|(_, n, _)| *n).collect();
        if !stacked && c == Component::KubeApiserver {
            // External etcd: kubeadm takes these from etcd.external as they are.
            known.extend(["etcd-cafile", "etcd-certfile", "etcd-keyfile"]);
        }
        let extra = f.flags.iter().map(|(k, v)| (k.clone(), v.clone())).chain(
            f.config
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))),
        );
        for (k, v) in extra {
            if is_path(&v) && !known.contains(k.as_str()) {
                let why = if c == Component::KubeProxy {
                    "kubeadm runs kube-proxy as a DaemonSet with its service-account token, \
                     which would leave this file unused"
                } else {
                    "kubeadm sets no such PKI setting, so the component would not use this file"
                };
                let kind = if trust_file(&v) {
                    GapKind::Trust
                } else {
                    GapKind::Layout
                };
                out.insert((kind, format!("{c} {}={v}: {why}", flag_name(c, &k))));
            }
        }
    }
    // 2. Chains, files and SANs on every control-plane node.
    let files = Files::of(plan);
    let (pki_needed, confs_needed) = kubeadm_files_needed(stacked);
    for n in &plan.spec.control_plane {
        let at = |rel: &str| format!("{d}/{rel}");
        for (leaf, ca) in kubeadm_issuers(stacked) {
            let (Some(l), Some(c)) = (files.cert(&n.name, &at(leaf)), files.cert(&n.name, &at(ca)))
            else {
                continue;
            };
            if g.issuer_of(l) != Some(c) {
                let base = leaf.trim_end_matches(".crt");
                out.insert((
                    GapKind::Trust,
                    format!(
                        "{} is signed by {}, not by {} ({}): kubeadm stops with \
                         `certificate {base} is not signed by corresponding CA`",
                        at(leaf),
                        g.issuer_of(l).map_or_else(|| "?".into(), |i| g.id_of(i)),
                        at(ca),
                        g.id_of(c),
                    ),
                ));
            }
        }
        for rel in &pki_needed {
            if files.get(&n.name, &at(rel)).is_none() {
                out.insert((
                    GapKind::Layout,
                    format!(
                        "kubeadm would generate {} on {}: the plan writes no file there",
                        at(rel),
                        n.name
                    ),
                ));
            }
        }
        for conf in &confs_needed {
            let p = format!("{KUBERNETES_DIR}/{conf}");
            if files.get(&n.name, &p).is_none() {
                out.insert((
                    GapKind::Layout,
                    format!(
                        "kubeadm would generate {p} on {}: the plan writes no file there",
                        n.name
                    ),
                ));
            }
        }
        let mut certs = vec!["apiserver.crt"];
        if stacked {
            certs.extend(["etcd/server.crt", "etcd/peer.crt"]);
        }
        for rel in certs {
            let Some(sans) = files.sans(&n.name, &at(rel)) else {
                continue;
            };
            let missing: Vec<String> = kubeadm_sans(plan, n, rel)
                .iter()
                .filter(|h| !sans.covers(h))
                .map(|h| match h {
                    Host::Ip(ip) => ip.to_string(),
                    Host::Dns(d) => d.to_string(),
                })
                .collect();
            if !missing.is_empty() {
                out.insert((
                    GapKind::Layout,
                    format!(
                        "{} on {} lacks {} (kubeadm puts these in every {rel}): kubeadm stops with \
                         `certificate {} is invalid`",
                        at(rel),
                        n.name,
                        missing.join(", "),
                        rel.trim_end_matches(".crt")
                    ),
                ));
            }
        }
    }
    // 3. Kubeconfigs carry the cluster CA.
    let cluster_ca = plan
        .spec
        .control_plane
        .first()
        .and_then(|n| files.cert(&n.name, &format!("{d}/ca.crt")));
    for (_, k) in g.kubeconfigs() {
        if k.user == KubeconfigUser::KubeProxy {
            continue;
        }
        if let Some(ca) = cluster_ca
            && k.ca != ca
        {
            out.insert((
                GapKind::Trust,
                format!(
                    "{} carries {} as its CA, not {d}/ca.crt ({}): kubeadm stops with \
                     `a kubeconfig file ... exists already but has got the wrong CA cert`",
                    k.file,
                    g.id_of(k.ca),
                    g.id_of(ca)
                ),
            ));
        }
    }
    out.into_iter().collect()
}

fn flag_name(c: Component, name: &str) -> String {
    if c == Component::Kubelet && name.contains(['.', 'F']) {
        format!("KubeletConfiguration {name}")
    } else {
        format!("--{name}")
    }
}

/// Go's `time.Duration` text for whole seconds (`24h0m0s`).
fn go_duration(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
}

/// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo, as
/// `kubeadm join --discovery-token-ca-cert-hash` wants it.
pub fn ca_cert_hash(spki_der: &[u8]) -> String {
    use sha2::Digest;
    let h: String = sha2::Sha256::digest(spki_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{h}")
}

/// The SANs every certificate at `rel` shares across the control-plane
/// nodes: DNS names first, then IPs, as strings.
fn common_sans(plan: &Plan, files: &Files<'_>, path: &str) -> Vec<String> {
    let mut sets = plan
        .spec
        .control_plane
        .iter()
        .filter_map(|n| files.sans(&n.name, path));
    let Some(first) = sets.next() else {
        return Vec::new();
    };
    let mut dns: BTreeSet<String> = first.dns.iter().map(|d| d.to_string()).collect();
    let mut ips: BTreeSet<IpAddr> = first.ip.clone();
    for s in sets {
        dns.retain(|d| s.dns.iter().any(|x| x.as_str() == d));
        ips.retain(|i| s.ip.contains(i));
    }
    dns.into_iter()
        .chain(ips.into_iter().map(|i| i.to_string()))
        .collect()
}

fn node_registration(api: KubeadmApi, name: &NodeName, ignore: &[String]) -> Value {
    let mut v = json!({ "name": name.to_string() });
    // ignorePreflightErrors exists from v1beta2 on.
    if !ignore.is_empty()
        && api != KubeadmApi::V1beta1
        && let Some(m) = v.as_object_mut()
    {
        m.insert("ignorePreflightErrors".into(), json!(ignore));
    }
    v
}

/// The kubeadm files of a plan: (output paths, YAML). `ca_spki` is the
/// cluster CA's SubjectPublicKeyInfo (DER); `token` the bootstrap token
/// when the plan has one.
pub(crate) fn kubeadm_files(
    plan: &Plan,
    flags: &[ComponentFlags],
    ca_spki: &[u8],
    token: Option<&BootstrapToken>,
) -> Result<Vec<(Vec<String>, String)>, String> {
    let Some(first) = plan.spec.control_plane.first() else {
        return Ok(Vec::new());
    };
    let Some(d) = certificates_dir(flags) else {
        return Ok(Vec::new());
    };
    let api = plan.spec.kubeadm.config_api;
    let version = api.api_version();
    let c = &plan.spec.cluster;
    let files = Files::of(plan);
    // Host prints IPv6 in brackets, as `host:port` needs.
    let endpoint = format!("{}:{}", c.endpoint.host, c.endpoint.port);
    let local = |n: &NodeSpec| json!({"advertiseAddress": n.address.to_string(), "bindPort": 6443});
    let apiserver = flags
        .iter()
        .find(|f| f.component == Component::KubeApiserver && f.node == first.name);
    let flag = |k: &str| apiserver.and_then(|f| f.flags.get(k)).cloned();
    let etcd = if stacked(plan) {
        json!({"local": {
            "serverCertSANs": common_sans(plan, &files, &format!("{d}/etcd/server.crt")),
            "peerCertSANs": common_sans(plan, &files, &format!("{d}/etcd/peer.crt")),
        }})
    } else {
        let endpoints: Vec<String> = flag("etcd-servers")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        json!({"external": {
            "endpoints": endpoints,
            "caFile": flag("etcd-cafile"),
            "certFile": flag("etcd-certfile"),
            "keyFile": flag("etcd-keyfile"),
        }})
    };
    let networking = json!({
        "serviceSubnet": c.service_cidrs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
        "dnsDomain": c.dns_domain.to_string(),
    });
    let cluster = json!({
        "apiVersion": version,
        "kind": "ClusterConfiguration",
        "clusterName": c.name,
        "controlPlaneEndpoint": endpoint,
        "certificatesDir": d,
        "networking": networking,
        "apiServer": {"certSANs": common_sans(plan, &files, &format!("{d}/apiserver.crt"))},
        "controllerManager": {"extraArgs": controller_manager_args(api, &d)},
        "etcd": etcd,
    });
    let mut init = json!({
        "apiVersion": version,
        "kind": "InitConfiguration",
        "nodeRegistration": node_registration(api, &first.name, &[]),
        "localAPIEndpoint": local(first),
    });
    if let Some(t) = token
        && let Some(m) = init.as_object_mut()
    {
        let ttl = plan
            .spec
            .bootstrap
            .token_ttl
            .map_or_else(|| "0s".to_owned(), |l| go_duration(l.duration()));
        m.insert(
            "bootstrapTokens".into(),
            json!([{
                "token": t.token(),
                "description": "kpki: kubelet TLS bootstrap token",
                "ttl": ttl,
                "usages": ["signing", "authentication"],
                "groups": [BOOTSTRAP_GROUP],
            }]),
        );
    }
    let yaml = |v: &Value| serde_yaml_ng::to_string(v).map_err(|e| e.to_string());
    let mut out = vec![(
        vec![INIT_CONFIG.to_owned()],
        format!("{}---\n{}", yaml(&init)?, yaml(&cluster)?),
    )];
    let hash = ca_cert_hash(ca_spki);
    let root = &plan.profile.install_root;
    let joiners = plan
        .spec
        .control_plane
        .iter()
        .skip(1)
        .map(|n| (n, true))
        .chain(plan.spec.workers.iter().map(|n| (n, false)));
    for (n, control_plane) in joiners {
        // kubeadm join's preflight refuses files it wants to write itself;
        // kpki placed them, so the checks for exactly those are skipped.
        let kubelet = flags
            .iter()
            .find(|f| f.component == Component::Kubelet && f.node == n.name);
        let placed = |p: &String| {
            files.get(&n.name, p).is_some()
                || kubelet.is_some_and(|k| k.flags.get("bootstrap-kubeconfig") == Some(p))
        };
        let ignore: Vec<String> = ["kubelet.conf", "bootstrap-kubelet.conf"]
            .iter()
            .map(|f| format!("{KUBERNETES_DIR}/{f}"))
            .filter(placed)
            .map(|p| format!("FileAvailable-{}", p.replace('/', "-")))
            .collect();
        let discovery = match token {
            Some(t) => json!({"bootstrapToken": {
                "token": t.token(),
                "apiServerEndpoint": endpoint,
                "caCertHashes": [hash],
            }}),
            // No token in the plan: every kubelet has its own kubeconfig,
            // which holds the cluster CA and the endpoint.
            None => json!({"file": {"kubeConfigPath": format!("{KUBERNETES_DIR}/kubelet.conf")}}),
        };
        let mut join = json!({
            "apiVersion": version,
            "kind": "JoinConfiguration",
            "caCertPath": format!("{d}/ca.crt"),
            "discovery": discovery,
            "nodeRegistration": node_registration(api, &n.name, &ignore),
        });
        if control_plane && let Some(m) = join.as_object_mut() {
            m.insert("controlPlane".into(), json!({"localAPIEndpoint": local(n)}));
        }
        out.push((
            vec![format!("nodes/{}{root}/{JOIN_CONFIG}", n.name)],
            yaml(&join)?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(time::Duration::hours(24)), "24h0m0s");
        assert_eq!(go_duration(time::Duration::seconds(5400)), "1h30m0s");
    }
}
