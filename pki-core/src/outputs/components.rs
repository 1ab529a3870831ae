//! Component flag sets: for each node and component, every flag (or
//! KubeletConfiguration field) that names a PKI file, at its install path,
//! plus the values derived from the graph.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Plan;
use crate::k8s::{Component, Flag, FlagKind, KubeconfigUser, Placement};
use crate::spec::NodeSpec;
use crate::store::Part;
use crate::x509::NodeName;

/// The flags of one component on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentFlags {
    /// The node.
    pub node: NodeName,
    /// The component.
    pub component: Component,
    /// Command-line flags, without the leading `--`.
    pub flags: BTreeMap<String, String>,
    /// Config-file fields (KubeletConfiguration), dotted paths, with their
    /// typed values (`rotateCertificates` is a boolean, paths are strings).
    pub config: BTreeMap<String, serde_json::Value>,
    /// Why a component has fewer PKI flags than one might expect (kube-proxy
    /// with a service-account token instead of a client certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What to run before starting it for the first time (an etcd member
    /// added to a running cluster: `etcdctl member add` on a current member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_start: Vec<String>,
}

impl ComponentFlags {
    /// The value of a PKI flag, when set.
    pub fn get(&self, flag: Flag) -> Option<&String> {
        self.flags.get(flag.name())
    }

    /// The flags as `--name=value` arguments, in name order.
    pub fn args(&self) -> Vec<String> {
        self.flags
            .iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect()
    }
}

/// Every component on every node, in node then component order, for the
/// etcd membership the plan carries ([`Plan::membership`]).
pub fn component_flags(plan: &Plan) -> Vec<ComponentFlags> {
    component_flags_with(plan, &plan.membership)
}

/// [`component_flags`] for a given etcd membership (an issuance computes it
/// from the manifest of the directory it writes).
pub fn component_flags_with(
    plan: &Plan,
    membership: &crate::outputs::MembershipChange,
) -> Vec<ComponentFlags> {
    let spec = &plan.spec;
    let roles = Roles::of(plan);
    let kubeconfigs = kubeconfig_index(plan);
    use rayon::prelude::*;
    let mut seen = std::collections::BTreeSet::new();
    let nodes: Vec<_> = spec
        .control_plane
        .iter()
        .chain(spec.etcd_members())
        .chain(&spec.workers)
        .filter(|n| seen.insert(&n.name))
        .collect();
    // Per node in parallel (a fleet's 5,000 workers), in node order.
    nodes
        .par_iter()
        .flat_map_iter(|node| {
            Component::ALL
                .iter()
                .filter(|c| roles.runs(**c, &node.name))
                .map(|c| flags_for(plan, &kubeconfigs, membership, *c, node))
        })
        .collect()
}

/// The flags of one component on one node, if it runs there.
pub fn flags_of(plan: &Plan, component: Component, node: &NodeName) -> Option<ComponentFlags> {
    let spec = plan.spec.all_nodes();
    let n = spec.get(node)?;
    Roles::of(plan).runs(component, node).then(|| {
        flags_for(
            plan,
            &kubeconfig_index(plan),
            &plan.membership,
            component,
            n,
        )
    })
}

/// Which nodes are etcd members, control-plane nodes and workers.
struct Roles<'a> {
    etcd: std::collections::BTreeSet<&'a NodeName>,
    control_plane: std::collections::BTreeSet<&'a NodeName>,
    workers: std::collections::BTreeSet<&'a NodeName>,
}

impl<'a> Roles<'a> {
    fn of(plan: &'a Plan) -> Self {
        let names = |l: &'a [NodeSpec]| l.iter().map(|n| &n.name).collect();
        let s = &plan.spec;
        Self {
            etcd: names(s.etcd_members()),
            control_plane: names(&s.control_plane),
            workers: names(&s.workers),
        }
    }

    fn runs(&self, c: Component, node: &NodeName) -> bool {
        match c.placement() {
            Placement::EtcdMembers => self.etcd.contains(node),
            Placement::ControlPlane => self.control_plane.contains(node),
            Placement::AllNodes => self.control_plane.contains(node) || self.workers.contains(node),
        }
    }
}

/// (user, node) -> kubeconfig install path; cluster-wide ones under `None`.
type KubeconfigIndex = BTreeMap<(KubeconfigUser, Option<NodeName>), String>;

fn kubeconfig_index(plan: &Plan) -> KubeconfigIndex {
    let mut index = KubeconfigIndex::new();
    for (id, k) in plan.graph.kubeconfigs() {
        if let Some(f) = plan.layout.part(id, Part::Kubeconfig) {
            index
                .entry((k.user, k.node.clone()))
                .or_insert_with(|| f.install_path.clone());
        }
    }
    index
}

/// `--kubeconfig` plus the delegated authn/authz kubeconfigs, one file.
fn delegated_kubeconfig(flags: &mut BTreeMap<String, String>, path: Option<&String>) {
    if let Some(k) = path {
        for f in [
            "kubeconfig",
            "authentication-kubeconfig",
            "authorization-kubeconfig",
        ] {
            flags.insert(f.into(), k.clone());
        }
    }
}

fn flags_for(
    plan: &Plan,
    kubeconfigs: &KubeconfigIndex,
    membership: &crate::outputs::MembershipChange,
    c: Component,
    node: &NodeSpec,
) -> ComponentFlags {
    let g = &plan.graph;
    let layout = &plan.layout;
    let install = |id, part| layout.part(id, part).map(|f| f.install_path.clone());
    let mut flags = BTreeMap::new();
    let mut config = BTreeMap::new();
    let mut notes = Vec::new();
    let mut before_start = Vec::new();
    for b in g
        .bindings_of(&node.name)
        .iter()
        .filter(|b| b.flag.component() == c)
    {
        let mut set = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                if c == Component::Kubelet {
                    config.insert(name.to_owned(), serde_json::Value::String(v));
                } else {
                    flags.insert(name.to_owned(), v);
                }
            }
        };
        match b.flag.kind() {
            _ if b.flag.one_cert() => {
                set(b.flag.name(), install(b.target, Part::SigningCert));
                if let Some(k) = b.flag.key_flag() {
                    set(k, install(b.target, Part::SigningKey));
                }
            }
            FlagKind::TrustedCa => set(b.flag.name(), install(b.target, Part::Cert)),
            FlagKind::CertAndKey => {
                set(b.flag.name(), install(b.target, Part::Cert));
                if let Some(k) = b.flag.key_flag() {
                    set(k, install(b.target, Part::Key));
                }
            }
            FlagKind::PublicKey => set(b.flag.name(), install(b.target, Part::PublicKey)),
            FlagKind::PrivateKey => set(b.flag.name(), install(b.target, Part::PrivateKey)),
        }
    }
    // Kubeconfigs the component uses on this node: its own, else a cluster-wide one.
    let kubeconfig_of = |user: KubeconfigUser| {
        kubeconfigs
            .get(&(user, Some(node.name.clone())))
            .or_else(|| kubeconfigs.get(&(user, None)))
    };
    let service_range = spec_service_range(plan);
    let spec = &plan.spec;
    use super::membership::{client_url, peer_url};
    match c {
        Component::Etcd => {
            flags.insert("name".into(), node.name.to_string());
            flags.insert("client-cert-auth".into(), "true".into());
            flags.insert("peer-client-cert-auth".into(), "true".into());
            // A member restarted during a rotation's rolling restart must
            // not call an election that unseats a healthy leader (writes
            // then fail with "request timed out, possibly due to previous
            // leader failure"): etcd 3.5 makes this the default.
            flags.insert("pre-vote".into(), "true".into());
            flags.insert(
                "listen-client-urls".into(),
                format!("{},https://127.0.0.1:2379", client_url(node)),
            );
            flags.insert("advertise-client-urls".into(), client_url(node));
            flags.insert("listen-peer-urls".into(), peer_url(node));
            flags.insert("initial-advertise-peer-urls".into(), peer_url(node));
            // As recorded for this member: a member added to a running
            // cluster joins it (`existing`) after `etcdctl member add`.
            match membership.member(node.name.as_str()) {
                Some(m) => {
                    flags.insert("initial-cluster".into(), m.initial_cluster.clone());
                    flags.insert(
                        "initial-cluster-state".into(),
                        m.initial_cluster_state.clone(),
                    );
                    if membership.added.iter().any(|a| a.name == m.name) {
                        before_start.extend(
                            membership
                                .steps
                                .iter()
                                .filter(|s| s.contains(&format!("member add {} ", m.name)))
                                .cloned(),
                        );
                    }
                }
                None => {
                    let cluster: Vec<String> = spec
                        .etcd_members()
                        .iter()
                        .map(|m| format!("{}={}", m.name, peer_url(m)))
                        .collect();
                    flags.insert("initial-cluster".into(), cluster.join(","));
                    flags.insert("initial-cluster-state".into(), "new".into());
                }
            }
        }
        Component::Etcdctl => {
            flags.insert("endpoints".into(), client_url(node));
        }
        Component::KubeApiserver => {
            flags.insert("advertise-address".into(), node.address.to_string());
            let servers: Vec<String> = spec.etcd_members().iter().map(client_url).collect();
            flags.insert("etcd-servers".into(), servers.join(","));
            let names = &g.facts.requestheader_allowed_names;
            if !names.is_empty() {
                flags.insert("requestheader-allowed-names".into(), names.join(","));
                flags.insert(
                    "requestheader-username-headers".into(),
                    "X-Remote-User".into(),
                );
                flags.insert(
                    "requestheader-group-headers".into(),
                    "X-Remote-Group".into(),
                );
                flags.insert(
                    "requestheader-extra-headers-prefix".into(),
                    "X-Remote-Extra-".into(),
                );
            }
            flags.insert(
                "service-account-issuer".into(),
                format!("https://kubernetes.default.svc.{}", spec.cluster.dns_domain),
            );
            flags.insert("service-cluster-ip-range".into(), service_range.clone());
            flags.insert(
                "kubelet-preferred-address-types".into(),
                "InternalIP,ExternalIP,Hostname".into(),
            );
            flags.insert("enable-bootstrap-token-auth".into(), "true".into());
        }
        Component::KubeControllerManager => {
            delegated_kubeconfig(&mut flags, kubeconfig_of(KubeconfigUser::ControllerManager));
            flags.insert("use-service-account-credentials".into(), "true".into());
            flags.insert("service-cluster-ip-range".into(), service_range.clone());
            flags.insert(
                "controllers".into(),
                "*,bootstrapsigner,tokencleaner".into(),
            );
        }
        Component::KubeScheduler => {
            delegated_kubeconfig(&mut flags, kubeconfig_of(KubeconfigUser::Scheduler));
        }
        Component::Kubelet => {
            match kubeconfig_of(KubeconfigUser::Kubelet) {
                Some(k) => {
                    flags.insert("kubeconfig".into(), k.clone());
                }
                None => {
                    // No certificate of its own: TLS bootstrap with a token.
                    flags.insert(
                        "bootstrap-kubeconfig".into(),
                        format!("{}/bootstrap-kubelet.conf", plan.profile.install_root),
                    );
                    flags.insert(
                        "kubeconfig".into(),
                        format!("{}/kubelet.conf", plan.profile.install_root),
                    );
                }
            }
            flags.insert("node-ip".into(), node_ips(plan, node));
            flags.insert("hostname-override".into(), node.name.to_string());
            config.insert("rotateCertificates".into(), serde_json::Value::Bool(true));
        }
        Component::KubeProxy => match kubeconfig_of(KubeconfigUser::KubeProxy) {
            Some(k) => {
                flags.insert("kubeconfig".into(), k.clone());
            }
            None => notes.push(
                "kube-proxy has no client certificate in this profile: it authenticates \
                 with its service-account token (kubeadm runs it as a DaemonSet with the \
                 kube-proxy ServiceAccount), so it needs no PKI flag; add a kube-proxy \
                 [[kubeconfig]] to the profile to run it with a certificate instead"
                    .to_owned(),
            ),
        },
    }
    for v in flags.values_mut() {
        dedup_list(v);
    }
    ComponentFlags {
        node: node.name.clone(),
        component: c,
        flags,
        config,
        notes,
        before_start,
    }
}

/// Removes repeated entries from a comma-separated flag value, keeping the
/// first of each (a node at 127.0.0.1 must not listen on it twice).
fn dedup_list(v: &mut String) {
    if !v.contains(',') {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    let kept: Vec<&str> = v.split(',').filter(|x| seen.insert(*x)).collect();
    if kept.len() != v.split(',').count() {
        *v = kept.join(",");
    }
}

/// The kubelet's `--node-ip`: the node's address and, in a dual-stack
/// cluster, its first extra address of the other family (primary first).
fn node_ips(plan: &Plan, node: &NodeSpec) -> String {
    let dual = {
        let cidrs = &plan.spec.cluster.service_cidrs;
        cidrs.iter().any(|c| c.network.is_ipv6()) && cidrs.iter().any(|c| c.network.is_ipv4())
    };
    let other = node
        .extra_ips
        .iter()
        .find(|ip| ip.is_ipv4() != node.address.is_ipv4());
    match other {
        Some(o) if dual => format!("{},{o}", node.address),
        _ => node.address.to_string(),
    }
}

fn spec_service_range(plan: &Plan) -> String {
    let cidrs: Vec<String> = plan
        .spec
        .cluster
        .service_cidrs
        .iter()
        .map(|c| c.to_string())
        .collect();
    cidrs.join(",")
}
