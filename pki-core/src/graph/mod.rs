//! The certificate graph: CAs, leaves, keypairs and kubeconfigs as typed
//! nodes; signing edges (each certificate's issuer), trust bindings
//! (component flag -> node, per cluster node) and connections (who talks
//! TLS to whom, with the CA each end trusts).
//!
//! A graph is built from a spec and a profile ([`expand`]) or read back
//! from files; the same rules run on both.

mod expand;
mod order;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::k8s::{Flag, KubeconfigUser, Link};
use crate::spec::Endpoint;
use crate::x509::{DnsName, KeySpec, Lifetime, NodeName, Role, SanSet, Subject, Usage};
pub use expand::expand;
pub(crate) use expand::in_cluster_names;
pub use order::issuance_order;

/// A node of the graph (an index into [`CertGraph::nodes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Who signs a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerRef {
    /// A self-signed root.
    SelfSigned,
    /// Another node of the graph (a CA, if the graph is right: rule S001).
    Node(NodeId),
    /// A name that resolves to nothing in the graph (rule S001).
    Unknown(String),
}

/// What is known of a certificate's validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Planned or observed lifetime.
    pub lifetime: Lifetime,
    /// Observed notBefore (None when planned).
    pub not_before: Option<time::OffsetDateTime>,
    /// Observed notAfter (None when planned).
    pub not_after: Option<time::OffsetDateTime>,
}

/// Facts only a certificate read from disk has (check mode).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The signature algorithm is SHA-1 or weaker.
    pub weak_signature: Option<String>,
    /// The private key file does not match the certificate.
    pub key_mismatch: bool,
    /// The signature does not verify with the issuer's key.
    pub bad_signature: bool,
    /// The issuer is not among the certificates read (one node's bundle
    /// holds only the CAs that node trusts): the signature is not judged.
    pub issuer_absent: bool,
    /// Serial number, hex.
    pub serial: String,
}

/// A certificate, CA or leaf, planned or read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertNode {
    /// Stable id: the template id, plus `@<node>` for per-node certificates.
    pub id: String,
    /// The profile template it came from.
    pub template: String,
    /// Declared a CA by the profile (or observed CA:TRUE).
    pub is_ca: bool,
    /// The cluster node it belongs to.
    pub node: Option<NodeName>,
    /// The role of a leaf.
    pub role: Option<Role>,
    /// Subject.
    pub subject: Subject,
    /// SANs.
    pub sans: SanSet,
    /// Key kind.
    pub key: KeySpec,
    /// Usage extensions.
    pub usage: Usage,
    /// Issuer.
    pub issuer: IssuerRef,
    /// Validity.
    pub validity: Validity,
    /// Certificate path (install-relative or absolute install path).
    pub cert_path: Option<String>,
    /// Key path.
    pub key_path: Option<String>,
    /// Facts read from disk.
    pub observed: Option<Observed>,
    /// The certificate file of the `[[existing_ca]]` this CA is adopted
    /// from (used as is, never generated).
    pub existing: Option<std::path::PathBuf>,
}

/// A bare keypair (service-account key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPairNode {
    /// Its id.
    pub id: String,
    /// Key kind.
    pub key: KeySpec,
    /// Private key path.
    pub private_path: String,
    /// Public key path.
    pub public_path: String,
    /// Check mode: the public key does not match the private key.
    pub mismatch: bool,
}

/// A kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeconfigNode {
    /// Stable id (`kubelet@cp1`).
    pub id: String,
    /// The profile template.
    pub template: String,
    /// The node it is for.
    pub node: Option<NodeName>,
    /// Who uses it.
    pub user: KubeconfigUser,
    /// The client certificate it carries.
    pub client: NodeId,
    /// The CA it trusts for the apiserver.
    pub ca: NodeId,
    /// The server URL.
    pub server: String,
    /// The cluster name.
    pub cluster: String,
    /// A break-glass credential.
    pub break_glass: bool,
    /// File path (install-relative).
    pub file: String,
}

/// A node of the certificate graph. Most nodes are certificates, so the
/// size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A CA or leaf certificate.
    Cert(CertNode),
    /// A keypair.
    KeyPair(KeyPairNode),
    /// A kubeconfig.
    Kubeconfig(KubeconfigNode),
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> &str {
        match self {
            Node::Cert(c) => &c.id,
            Node::KeyPair(k) => &k.id,
            Node::Kubeconfig(k) => &k.id,
        }
    }
}

/// A trust binding, expanded: on cluster node `node`, `flag` names `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The cluster node.
    pub node: NodeName,
    /// The flag.
    pub flag: Flag,
    /// What it names.
    pub target: NodeId,
}

/// A TLS connection between two certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Which row of the connection matrix.
    pub link: Link,
    /// The client certificate.
    pub client: NodeId,
    /// The server certificate, when the cluster PKI provides it.
    pub server: Option<NodeId>,
    /// The CA the client verifies the server with.
    pub client_trusts: Option<NodeId>,
    /// The CA the server verifies the client with.
    pub server_trusts: Option<NodeId>,
    /// The kubeconfig carrying the client cert (row 5).
    pub via: Option<NodeId>,
}

/// Cluster facts the rules need (addresses, names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// Cluster name.
    pub name: String,
    /// The control-plane endpoint, if known.
    pub endpoint: Option<Endpoint>,
    /// The first IP of each service CIDR.
    pub service_ips: Vec<IpAddr>,
    /// The DNS domain.
    pub dns_domain: Option<DnsName>,
    /// Each node's IPs.
    pub node_ips: BTreeMap<NodeName, Vec<IpAddr>>,
    /// The names `--requestheader-allowed-names` will hold.
    pub requestheader_allowed_names: Vec<String>,
    /// The spec's leaf lifetime.
    pub leaf_validity: Option<Lifetime>,
}

/// The certificate graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertGraph {
    /// Every node; [`NodeId`] indexes this.
    pub nodes: Vec<Node>,
    /// Trust bindings per cluster node.
    pub bindings: Vec<Binding>,
    /// TLS connections.
    pub connections: Vec<Connection>,
    /// Cluster facts.
    pub facts: ClusterFacts,
}

impl CertGraph {
    /// A node by id.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index())
    }

    /// A certificate node by id.
    pub fn cert(&self, id: NodeId) -> Option<&CertNode> {
        match self.node(id) {
            Some(Node::Cert(c)) => Some(c),
            _ => None,
        }
    }

    /// The display id of a node.
    pub fn id_of(&self, id: NodeId) -> String {
        self.node(id)
            .map_or_else(|| format!("#{}", id.0), |n| n.id().to_owned())
    }

    /// Every node with its id.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId(i as u32), n))
    }

    /// Every certificate with its id.
    pub fn certs(&self) -> impl Iterator<Item = (NodeId, &CertNode)> {
        self.iter().filter_map(|(i, n)| match n {
            Node::Cert(c) => Some((i, c)),
            _ => None,
        })
    }

    /// Every kubeconfig with its id.
    pub fn kubeconfigs(&self) -> impl Iterator<Item = (NodeId, &KubeconfigNode)> {
        self.iter().filter_map(|(i, n)| match n {
            Node::Kubeconfig(k) => Some((i, k)),
            _ => None,
        })
    }

    /// Finds a node by its id string.
    pub fn find(&self, id: &str) -> Option<NodeId> {
        self.iter().find(|(_, n)| n.id() == id).map(|(i, _)| i)
    }

    /// What `flag` names on `node`.
    pub fn binding(&self, node: &NodeName, flag: Flag) -> Option<NodeId> {
        // Bindings are kept sorted by (node, flag): see [`CertGraph::sort_bindings`].
        self.bindings
            .binary_search_by(|b| (&b.node, b.flag).cmp(&(node, flag)))
            .ok()
            .and_then(|i| self.bindings.get(i))
            .map(|b| b.target)
    }

    /// The bindings of one cluster node.
    pub fn bindings_of(&self, node: &NodeName) -> &[Binding] {
        let start = self.bindings.partition_point(|b| &b.node < node);
        let end = self.bindings.partition_point(|b| &b.node <= node);
        self.bindings.get(start..end).unwrap_or(&[])
    }

    /// Sorts bindings by (node, flag) so lookups can binary-search; every
    /// constructor calls it.
    pub fn sort_bindings(&mut self) {
        self.bindings
            .sort_by(|a, b| (&a.node, a.flag).cmp(&(&b.node, b.flag)));
    }

    /// Every (node, target) a flag names, deduplicated by target.
    pub fn bound(&self, flag: Flag) -> Vec<(NodeName, NodeId)> {
        let mut seen = std::collections::BTreeSet::new();
        self.bindings
            .iter()
            .filter(|b| b.flag == flag && seen.insert(b.target))
            .map(|b| (b.node.clone(), b.target))
            .collect()
    }

    /// The issuer node of a certificate, if it resolves.
    pub fn issuer_of(&self, id: NodeId) -> Option<NodeId> {
        match self.cert(id).map(|c| &c.issuer) {
            Some(IssuerRef::Node(i)) => Some(*i),
            _ => None,
        }
    }

    /// The certificates a CA signs directly.
    pub fn signed_by(&self, ca: NodeId) -> impl Iterator<Item = (NodeId, &CertNode)> {
        self.certs()
            .filter(move |(_, c)| c.issuer == IssuerRef::Node(ca))
    }
}
