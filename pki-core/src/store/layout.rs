//! Where every artefact goes: `cluster/` (the full set, as on one node) and
//! the per-node bundles (`nodes/<node>/<install path>`), least privilege.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::graph::{CertGraph, Node, NodeId};
use crate::k8s::{FlagKind, KubeconfigUser, Placement};
use crate::spec::ClusterSpec;
use crate::x509::NodeName;

/// Which file of a graph node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// A certificate (PEM).
    Cert,
    /// A certificate's private key.
    Key,
    /// A keypair's public key.
    PublicKey,
    /// A keypair's private key.
    PrivateKey,
    /// A kubeconfig.
    Kubeconfig,
    /// A CA certificate a signer loads next to its key
    /// (`--cluster-signing-cert-file`): exactly one certificate, never a
    /// trust bundle, so it has a path of its own.
    SigningCert,
    /// The CA key going with [`Part::SigningCert`].
    SigningKey,
}

/// Where a signer's single-certificate copy of a CA file goes:
/// `pki/ca.crt` -> `pki/signing/ca.crt`.
pub fn signing_path(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/signing/{file}"),
        None => format!("signing/{path}"),
    }
}

impl Part {
    /// Whether the file holds a private key (mode 0600, never printed).
    pub fn is_secret(&self) -> bool {
        matches!(
            self,
            Part::Key | Part::PrivateKey | Part::Kubeconfig | Part::SigningKey
        )
    }
}

/// One file kpki writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// The graph node.
    #[serde(skip)]
    pub node: NodeId,
    /// Which part of it.
    pub part: Part,
    /// The absolute install path on a node (`/etc/kubernetes/pki/ca.crt`).
    pub install_path: String,
    /// The path under the output dir in `cluster/`, if it goes there.
    pub cluster_path: Option<String>,
    /// The nodes whose bundles get it.
    pub nodes: Vec<NodeName>,
}

impl FileEntry {
    /// The path of this file in one node's bundle, under the output dir.
    pub fn bundle_path(&self, node: &NodeName) -> String {
        format!("nodes/{node}{}", self.install_path)
    }

    /// Every output-relative path of this file.
    pub fn output_paths(&self) -> Vec<String> {
        self.cluster_path
            .iter()
            .cloned()
            .chain(self.nodes.iter().map(|n| self.bundle_path(n)))
            .collect()
    }
}

/// The directory of an output-relative path (`""` for the output
/// directory itself).
pub fn parent_dir(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Every file of a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The files, in graph order.
    pub files: Vec<FileEntry>,
    /// (node, part) -> index into `files`.
    #[serde(skip)]
    index: BTreeMap<(NodeId, Part), usize>,
}

impl Layout {
    /// The output-relative directories of every file (each once): what an
    /// issuance reads from and writes into (see `DirStore::open_planned`).
    pub fn output_dirs(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .flat_map(FileEntry::output_paths)
            .map(|p| parent_dir(&p).to_owned())
            .collect()
    }

    /// The files of one graph node.
    pub fn of(&self, id: NodeId) -> impl Iterator<Item = &FileEntry> {
        self.index
            .range((id, Part::Cert)..=(id, Part::SigningKey))
            .filter_map(|(_, i)| self.files.get(*i))
    }

    /// The file of one part of a graph node.
    pub fn part(&self, id: NodeId, part: Part) -> Option<&FileEntry> {
        self.index.get(&(id, part)).and_then(|i| self.files.get(*i))
    }

    /// Drops the files `drop` selects (the keys a PKCS#11 token holds).
    pub(crate) fn drop_files(&mut self, drop: impl Fn(&FileEntry) -> bool) {
        self.files.retain(|f| !drop(f));
        self.index = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.node, f.part), i))
            .collect();
    }

    /// Computes the layout. `install_root` anchors relative profile paths.
    pub fn compute(g: &CertGraph, spec: &ClusterSpec, profile: &crate::profile::Profile) -> Self {
        let install_root = profile.install_root.as_str();
        // Templates whose paths name the node: every node's copy fits in cluster/.
        let node_named: BTreeSet<&str> = profile
            .leaves
            .iter()
            .filter(|l| l.cert.as_deref().is_some_and(|p| p.contains("{node}")))
            .map(|l| l.id.as_str())
            .collect();
        let install = |rel: &str| {
            if rel.starts_with('/') {
                rel.to_owned()
            } else {
                format!("{install_root}/{rel}")
            }
        };
        let cluster = |rel: &str| format!("cluster/{}", rel.trim_start_matches('/'));
        let cp: Vec<NodeName> = spec.control_plane.iter().map(|n| n.name.clone()).collect();
        let all: Vec<NodeName> = spec
            .control_plane
            .iter()
            .chain(&spec.workers)
            .map(|n| n.name.clone())
            .collect();
        let etcd: Vec<NodeName> = spec.etcd_members().iter().map(|n| n.name.clone()).collect();
        let placement = |p: Placement| match p {
            Placement::ControlPlane => cp.clone(),
            Placement::AllNodes => all.clone(),
            Placement::EtcdMembers => etcd.clone(),
        };
        // Which nodes use each target through bindings, by what the flag needs.
        let mut uses: BTreeMap<(NodeId, Part), BTreeSet<NodeName>> = BTreeMap::new();
        for b in &g.bindings {
            let parts: &[Part] = match (b.flag.kind(), g.node(b.target)) {
                // The CA key stays beside its certificate too (kubeadm and
                // `kubeadm certs renew` look for it there).
                _ if b.flag.one_cert() => &[Part::Key, Part::SigningCert, Part::SigningKey],
                (FlagKind::TrustedCa, _) => &[Part::Cert],
                (FlagKind::CertAndKey, _) => &[Part::Cert, Part::Key],
                (FlagKind::PublicKey, _) => &[Part::PublicKey],
                (FlagKind::PrivateKey, _) => &[Part::PrivateKey],
            };
            for p in parts {
                uses.entry((b.target, *p))
                    .or_default()
                    .insert(b.node.clone());
            }
        }
        // Kubeconfigs: per-node ones on their node; cluster-wide ones where their user runs.
        let kc_nodes = |user: KubeconfigUser, node: &Option<NodeName>| -> Vec<NodeName> {
            match node {
                Some(n) => vec![n.clone()],
                None => match user.component() {
                    Some(c) => placement(c.placement()),
                    None => cp.clone(),
                },
            }
        };
        for (kid, kc) in g.kubeconfigs() {
            // A break-glass credential stays in cluster/: it is not deployed to nodes.
            let nodes = if kc.break_glass {
                Vec::new()
            } else {
                kc_nodes(kc.user, &kc.node)
            };
            for n in &nodes {
                uses.entry((kid, Part::Kubeconfig))
                    .or_default()
                    .insert(n.clone());
                uses.entry((kc.ca, Part::Cert))
                    .or_default()
                    .insert(n.clone());
                if !spec.output.embed_certs {
                    uses.entry((kc.client, Part::Cert))
                        .or_default()
                        .insert(n.clone());
                    uses.entry((kc.client, Part::Key))
                        .or_default()
                        .insert(n.clone());
                }
            }
        }
        let mut first_of_template: BTreeSet<String> = BTreeSet::new();
        let mut files = Vec::new();
        for (id, n) in g.iter() {
            let mut add = |part: Part,
                           rel: &str,
                           in_cluster: bool,
                           mut nodes: BTreeSet<NodeName>,
                           own: Option<&NodeName>| {
                if let Some(o) = own {
                    nodes.insert(o.clone());
                }
                files.push(FileEntry {
                    node: id,
                    part,
                    install_path: install(rel),
                    cluster_path: in_cluster.then(|| cluster(rel)),
                    nodes: nodes.into_iter().collect(),
                });
            };
            let used = |p: Part| uses.get(&(id, p)).cloned().unwrap_or_default();
            match n {
                Node::Cert(c) => {
                    // Per-node certs: the first of each template goes to cluster/
                    // (as on a single-node cluster), every one when its path names the node.
                    let in_cluster = match &c.node {
                        None => true,
                        Some(_) => {
                            c.cert_path.is_none()
                                || node_named.contains(c.template.as_str())
                                || !first_of_template.contains(&c.template)
                        }
                    };
                    first_of_template.insert(c.template.clone());
                    let own = c.node.as_ref().filter(|_| !c.is_ca);
                    if let Some(p) = &c.cert_path {
                        add(Part::Cert, p, in_cluster, used(Part::Cert), own);
                    }
                    if let Some(p) = &c.key_path {
                        add(Part::Key, p, in_cluster, used(Part::Key), own);
                    }
                    // A signer's copy of a CA: paths of their own, so that
                    // a trust bundle (during a CA rotation) never lands there.
                    let signing = used(Part::SigningCert);
                    if let (Some(cp), Some(kp), false) =
                        (&c.cert_path, &c.key_path, signing.is_empty())
                    {
                        add(
                            Part::SigningCert,
                            &signing_path(cp),
                            in_cluster,
                            signing,
                            None,
                        );
                        add(
                            Part::SigningKey,
                            &signing_path(kp),
                            in_cluster,
                            used(Part::SigningKey),
                            None,
                        );
                    }
                }
                Node::KeyPair(k) => {
                    add(
                        Part::PrivateKey,
                        &k.private_path,
                        true,
                        used(Part::PrivateKey),
                        None,
                    );
                    add(
                        Part::PublicKey,
                        &k.public_path,
                        true,
                        used(Part::PublicKey),
                        None,
                    );
                }
                Node::Kubeconfig(k) => {
                    let in_cluster = k.node.is_none()
                        || !first_of_template.contains(&format!("kubeconfig:{}", k.template));
                    first_of_template.insert(format!("kubeconfig:{}", k.template));
                    add(
                        Part::Kubeconfig,
                        &k.file,
                        in_cluster,
                        used(Part::Kubeconfig),
                        None,
                    );
                }
            }
        }
        let index = files
            .iter()
            .enumerate()
            .map(|(i, f)| ((f.node, f.part), i))
            .collect();
        Self { files, index }
    }
}
