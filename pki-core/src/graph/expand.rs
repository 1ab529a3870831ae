use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    Binding, CertGraph, CertNode, ClusterFacts, Connection, IssuerRef, KeyPairNode, KubeconfigNode,
    Node, NodeId, Validity,
};
use crate::error::{InputError, ProfileError};
use crate::k8s::{CertSource, Flag, Link, Placement, TrustSource};
use crate::profile::{FanOut, LiteralSan, Profile, SanRule, ServerRule, TargetKind};
use crate::spec::{ClusterSpec, NodeSpec};
use crate::x509::{DnsName, Host, NodeName, San, SanSet, Subject, Usage};

/// Expands spec × profile into the certificate graph: one node per CA, per
/// leaf and cluster node of its fan-out, per keypair and per kubeconfig;
/// bindings per cluster node; the connections of the matrix.
///
/// Errors are profile errors that make a graph impossible (a binding that
/// names a per-node certificate the node does not get). Everything that is
/// merely wrong (unknown issuer, cycles, missing SANs...) becomes a finding
/// when the graph is validated.
pub fn expand(spec: &ClusterSpec, profile: &Profile) -> Result<CertGraph, ProfileError> {
    let mut x = Expander {
        spec,
        profile,
        g: CertGraph::default(),
        by_id: BTreeMap::new(),
    };
    x.facts();
    x.cas();
    x.leaves();
    x.keypairs();
    x.kubeconfigs()?;
    x.bindings()?;
    x.connections();
    Ok(x.g)
}

struct Expander<'a> {
    spec: &'a ClusterSpec,
    profile: &'a Profile,
    g: CertGraph,
    /// (template id, node) -> node id.
    by_id: BTreeMap<(String, Option<NodeName>), NodeId>,
}

impl Expander<'_> {
    fn push(&mut self, template: &str, node: Option<&NodeName>, n: Node) -> NodeId {
        let id = NodeId(self.g.nodes.len() as u32);
        self.g.nodes.push(n);
        self.by_id.insert((template.to_owned(), node.cloned()), id);
        id
    }

    fn facts(&mut self) {
        let s = self.spec;
        let mut node_ips: BTreeMap<NodeName, Vec<IpAddr>> = BTreeMap::new();
        for n in s
            .control_plane
            .iter()
            .chain(s.etcd_members())
            .chain(&s.workers)
        {
            let ips = node_ips.entry(n.name.clone()).or_default();
            for ip in n.ips() {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        self.g.facts = ClusterFacts {
            name: s.cluster.name.clone(),
            endpoint: Some(s.cluster.endpoint.clone()),
            service_ips: s
                .cluster
                .service_cidrs
                .iter()
                .filter_map(|c| c.first_ip())
                .collect(),
            dns_domain: Some(s.cluster.dns_domain.clone()),
            node_ips,
            requestheader_allowed_names: Vec::new(),
            leaf_validity: Some(s.crypto.leaf_validity),
        };
    }

    fn subject(&self, cn: String, organizations: Vec<String>) -> Subject {
        Subject {
            common_name: cn,
            organizations,
            ..self.spec.subject.clone()
        }
    }

    fn cas(&mut self) {
        let spec = self.spec;
        let first = self.g.nodes.len();
        for ca in &self.profile.cas {
            let key = ca.algorithm.unwrap_or(spec.crypto.algorithm.spec());
            let (cn, o) = ca.subject.render(None, &spec.cluster.name);
            let mut usage = Usage::ca(ca.path_len);
            if let Some(k) = ca.key_usage {
                usage.key = Some(k);
            }
            let node = Node::Cert(CertNode {
                id: ca.id.clone(),
                template: ca.id.clone(),
                is_ca: true,
                node: None,
                role: None,
                subject: self.subject(cn, o),
                sans: SanSet::default(),
                key,
                usage,
                issuer: IssuerRef::SelfSigned,
                validity: planned(ca.validity.unwrap_or(spec.crypto.ca_validity)),
                cert_path: Some(ca.cert.clone()),
                key_path: Some(ca.key.clone()),
                observed: None,
                existing: None,
            });
            self.push(&ca.id, None, node);
        }
        // Resolve CA issuers now that every CA exists.
        for (i, ca) in self.profile.cas.iter().enumerate() {
            if let Some(issuer) = &ca.issuer {
                let r = self.resolve_issuer(issuer);
                if let Some(Node::Cert(c)) = self.g.nodes.get_mut(first + i) {
                    c.issuer = r;
                }
            }
        }
    }

    fn resolve_issuer(&self, name: &str) -> IssuerRef {
        match self.by_id.get(&(name.to_owned(), None)) {
            Some(id) => IssuerRef::Node(*id),
            None => IssuerRef::Unknown(name.to_owned()),
        }
    }

    fn leaves(&mut self) {
        let spec = self.spec;
        for leaf in &self.profile.leaves {
            let key = leaf.algorithm.unwrap_or(spec.crypto.algorithm.spec());
            let mut usage = Usage::leaf(leaf.role, key);
            if let Some(k) = leaf.key_usage {
                usage.key = Some(k);
            }
            if let Some(e) = &leaf.ext_key_usage {
                usage.ext = e.clone();
            }
            // A leaf naming a non-CA (another leaf) resolves to it: rule S001 reports it.
            let issuer = match self.profile.kind_of(&leaf.issuer) {
                Some(TargetKind::Leaf) => self
                    .by_id
                    .iter()
                    .find(|((t, _), _)| t == &leaf.issuer)
                    .map_or(IssuerRef::Unknown(leaf.issuer.clone()), |(_, id)| {
                        IssuerRef::Node(*id)
                    }),
                _ => self.resolve_issuer(&leaf.issuer),
            };
            let nodes: Vec<Option<&NodeSpec>> = if leaf.fan_out.per_node() {
                nodes_of(self.spec, leaf.fan_out)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            for n in nodes {
                let node_name = n.map(|n| n.name.as_str());
                let (cn, o) = leaf.subject.render(node_name, &spec.cluster.name);
                let mut sans = SanSet::default();
                for rule in &leaf.sans {
                    self.add_sans(&mut sans, rule, n);
                }
                let id = match n {
                    Some(n) => format!("{}@{}", leaf.id, n.name),
                    None => leaf.id.clone(),
                };
                // A kubeconfig that references files needs the client cert on disk.
                let default_path = |ext: &str| {
                    (!spec.output.embed_certs
                        && self.profile.kubeconfigs.iter().any(|k| k.client == leaf.id))
                    .then(|| format!("pki/{}.{ext}", leaf.id))
                };
                let (cert_default, key_default) = (default_path("crt"), default_path("key"));
                let path = |p: &Option<String>| {
                    p.as_ref().map(|p| match node_name {
                        Some(nn) => p.replace("{node}", nn),
                        None => p.clone(),
                    })
                };
                let cert = CertNode {
                    id,
                    template: leaf.id.clone(),
                    is_ca: false,
                    node: n.map(|n| n.name.clone()),
                    role: Some(leaf.role),
                    subject: self.subject(cn, o),
                    sans,
                    key,
                    usage: usage.clone(),
                    issuer: issuer.clone(),
                    validity: planned(leaf.validity.unwrap_or(spec.crypto.leaf_validity)),
                    cert_path: path(&leaf.cert).or(cert_default),
                    key_path: path(&leaf.key).or(key_default),
                    observed: None,
                    existing: None,
                };
                self.push(&leaf.id, n.map(|n| &n.name), Node::Cert(cert));
            }
        }
    }

    fn add_sans(&self, sans: &mut SanSet, rule: &SanRule, node: Option<&NodeSpec>) {
        let c = &self.spec.cluster;
        match rule {
            SanRule::Endpoint => sans.insert(c.endpoint.host.to_san()),
            SanRule::NodeName => {
                // A node named by its IP (a kubelet registered with
                // `--hostname-override=10.0.2.15`) is dialled at that IP: an
                // IP SAN (as a DNS SAN it would never match).
                if let Some(n) = node {
                    match n.name.as_str().parse::<IpAddr>() {
                        Ok(ip) => sans.insert(San::Ip(ip)),
                        Err(_) => sans.insert(San::Dns(DnsName::unchecked(n.name.as_str()))),
                    }
                }
            }
            SanRule::NodeIps => node
                .into_iter()
                .flat_map(NodeSpec::ips)
                .for_each(|ip| sans.insert(San::Ip(ip))),
            SanRule::NodeHostnames => node
                .into_iter()
                .flat_map(|n| n.hostnames.iter())
                .for_each(|h| sans.insert(San::Dns(h.clone()))),
            SanRule::ControlPlaneIps => self
                .spec
                .control_plane
                .iter()
                .flat_map(NodeSpec::ips)
                .for_each(|ip| sans.insert(San::Ip(ip))),
            SanRule::ServiceIp => c
                .service_cidrs
                .iter()
                .filter_map(|s| s.first_ip())
                .for_each(|ip| sans.insert(San::Ip(ip))),
            SanRule::InClusterNames => {
                for name in in_cluster_names(&c.dns_domain) {
                    sans.insert(San::Dns(DnsName::unchecked(&name)));
                }
            }
            SanRule::Loopback => {
                sans.insert(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                sans.insert(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
                sans.insert(San::Dns(DnsName::unchecked("localhost")));
            }
            SanRule::Extra => c.extra_sans.iter().for_each(|s| sans.insert(s.clone())),
            // Kept exactly as written: rule N006 judges literal DNS SANs.
            SanRule::Literal(LiteralSan::Dns(d)) => sans.insert(San::Dns(DnsName::unchecked(d))),
            SanRule::Literal(LiteralSan::Ip(ip)) => sans.insert(San::Ip(*ip)),
        }
    }

    fn keypairs(&mut self) {
        for kp in &self.profile.keypairs {
            let key = kp.algorithm.unwrap_or(self.spec.crypto.algorithm.spec());
            let node = Node::KeyPair(KeyPairNode {
                id: kp.id.clone(),
                key,
                private_path: kp.private_key.clone(),
                public_path: kp.public_key.clone(),
                mismatch: false,
            });
            self.push(&kp.id, None, node);
        }
    }

    fn kubeconfigs(&mut self) -> Result<(), ProfileError> {
        let spec = self.spec;
        for kc in &self.profile.kubeconfigs {
            let Some(leaf) = self.profile.leaves.iter().find(|l| l.id == kc.client) else {
                continue;
            };
            let Some(&ca) = self.by_id.get(&(kc.ca.clone(), None)) else {
                continue;
            };
            let nodes: Vec<Option<&NodeSpec>> = if leaf.fan_out.per_node() {
                nodes_of(self.spec, leaf.fan_out)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            for n in nodes {
                let name = n.map(|n| n.name.clone());
                let Some(&client) = self.by_id.get(&(kc.client.clone(), name.clone())) else {
                    continue;
                };
                let server = match (kc.server, n) {
                    (ServerRule::Node, Some(n)) => format!("https://{}:6443", Host::Ip(n.address)),
                    _ => spec.cluster.endpoint.url(),
                };
                let node = Node::Kubeconfig(KubeconfigNode {
                    id: match &name {
                        Some(nn) => format!("{}@{nn}", kc.id),
                        None => kc.id.clone(),
                    },
                    template: kc.id.clone(),
                    node: name.clone(),
                    user: kc.user,
                    client,
                    ca,
                    server,
                    cluster: spec.cluster.name.clone(),
                    break_glass: kc.break_glass,
                    file: match &name {
                        Some(nn) => kc.file.replace("{node}", nn.as_str()),
                        None => kc.file.clone(),
                    },
                });
                self.push(&format!("kubeconfig:{}", kc.id), name.as_ref(), node);
            }
        }
        Ok(())
    }

    fn bindings(&mut self) -> Result<(), ProfileError> {
        let mut out = Vec::new();
        for b in &self.profile.bindings {
            let nodes = placement_nodes(self.spec, b.flag.component().placement());
            let per_node = self
                .profile
                .leaves
                .iter()
                .find(|l| l.id == b.target)
                .map(|l| (l.fan_out.per_node(), l.fan_out));
            for n in nodes {
                let key = match per_node {
                    Some((true, _)) => (b.target.clone(), Some(n.name.clone())),
                    _ => (b.target.clone(), None),
                };
                let Some(&target) = self.by_id.get(&key) else {
                    let fan =
                        per_node.map_or(String::new(), |(_, f)| format!(" (fan_out = {f:?})"));
                    return Err(InputError {
                        location: b.location.clone(),
                        field: format!("bindings.{}.{}", b.flag.component(), b.flag.name()),
                        message: format!(
                            "`{}` has no certificate for node `{}`{fan}, but {} runs there",
                            b.target,
                            n.name,
                            b.flag.component()
                        ),
                    });
                };
                out.push(Binding {
                    node: n.name.clone(),
                    flag: b.flag,
                    target,
                });
            }
        }
        self.g.bindings = out;
        self.g.sort_bindings();
        // --requestheader-allowed-names: explicit, or the front-proxy client CNs.
        self.g.facts.requestheader_allowed_names = match &self.profile.requestheader_allowed_names {
            Some(names) => names.clone(),
            None => {
                let mut names: Vec<String> = self
                    .g
                    .bound(Flag::ApiserverProxyClientCertFile)
                    .iter()
                    .filter_map(|(_, id)| self.g.cert(*id).map(|c| c.subject.common_name.clone()))
                    .collect();
                names.sort();
                names.dedup();
                names
            }
        };
        Ok(())
    }

    fn connections(&mut self) {
        let mut out = Vec::new();
        let cp: Vec<NodeName> = nodes_of(self.spec, FanOut::ControlPlane)
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let etcd: Vec<NodeName> = nodes_of(self.spec, FanOut::Etcd)
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let kubelets: Vec<NodeName> = nodes_of(self.spec, FanOut::Kubelet)
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let g = &self.g;
        let flag_conn =
            |link: Link, client_node: &NodeName, server_node: &NodeName| -> Option<Connection> {
                let ends = link.ends();
                let CertSource::Flag(cf) = ends.client_cert else {
                    return None;
                };
                let client = g.binding(client_node, cf)?;
                let client_trusts = match ends.client_trusts {
                    Some(TrustSource::Flag(f)) => g.binding(client_node, f),
                    _ => None,
                };
                Some(Connection {
                    link,
                    client,
                    server: ends.server_cert.and_then(|f| g.binding(server_node, f)),
                    client_trusts,
                    server_trusts: g.binding(server_node, ends.server_trusts),
                    via: None,
                })
            };
        for a in &etcd {
            for b in &etcd {
                out.extend(flag_conn(Link::EtcdPeer, a, b));
            }
            out.extend(flag_conn(Link::EtcdctlToEtcd, a, a));
            out.extend(flag_conn(Link::EtcdGateway, a, a));
        }
        for c in &cp {
            for m in &etcd {
                out.extend(flag_conn(Link::ApiserverToEtcd, c, m));
            }
            for k in &kubelets {
                out.extend(flag_conn(Link::ApiserverToKubelet, c, k));
            }
            out.extend(flag_conn(Link::FrontProxy, c, c));
        }
        for (kid, kc) in g.kubeconfigs() {
            let servers: Vec<&NodeName> = match (
                &kc.node,
                self.profile
                    .kubeconfigs
                    .iter()
                    .find(|t| t.id == kc.template),
            ) {
                (Some(n), Some(t)) if t.server == ServerRule::Node && cp.contains(n) => vec![n],
                _ => cp.iter().collect(),
            };
            for s in servers {
                out.push(Connection {
                    link: Link::KubeconfigToApiserver,
                    client: kc.client,
                    server: g.binding(s, Flag::ApiserverTlsCertFile),
                    client_trusts: Some(kc.ca),
                    server_trusts: g.binding(s, Flag::ApiserverClientCaFile),
                    via: Some(kid),
                });
            }
        }
        self.g.connections = out;
    }
}

fn planned(lifetime: crate::x509::Lifetime) -> Validity {
    Validity {
        lifetime,
        not_before: None,
        not_after: None,
    }
}

/// The in-cluster names of the `kubernetes` Service.
pub(crate) fn in_cluster_names(domain: &DnsName) -> [String; 4] {
    [
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
    ]
}

fn nodes_of(s: &ClusterSpec, f: FanOut) -> Vec<&NodeSpec> {
    match f {
        FanOut::Cluster => Vec::new(),
        FanOut::ControlPlane => s.control_plane.iter().collect(),
        FanOut::Etcd => s.etcd_members().iter().collect(),
        FanOut::Worker => s.workers.iter().collect(),
        FanOut::Kubelet => s.control_plane.iter().chain(&s.workers).collect(),
    }
}

fn placement_nodes(s: &ClusterSpec, p: Placement) -> Vec<&NodeSpec> {
    match p {
        Placement::EtcdMembers => nodes_of(s, FanOut::Etcd),
        Placement::ControlPlane => nodes_of(s, FanOut::ControlPlane),
        Placement::AllNodes => nodes_of(s, FanOut::Kubelet),
    }
}
