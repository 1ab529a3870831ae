//! Applying the components' real flags to an observation: where a flag
//! names a file that holds an observed certificate (or keypair), the
//! profile's binding and the connections' trusted CAs are replaced by it,
//! so the trust rules judge the wiring the components actually run with.
//! Flags that name a missing file become F002 findings, and every trust
//! finding names the flags (with their file and line) behind it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Observation;
use super::config::{self, Configuration, Origin, Resolved};
use crate::crypto::{ParsedCert, certs_from_pem, parse_certificate};
use crate::graph::{Binding, CertGraph, CertNode, IssuerRef, KubeconfigNode, Node, NodeId};
use crate::k8s::{CertSource, Component, Flag, FlagKind, KubeconfigUser, Link, TrustSource};
use crate::validate::{Code, Finding, Report};
use crate::x509::{ExtUsage, Role};

/// A PKI flag read from a component's configuration and what it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedFlag {
    /// The component.
    pub component: Component,
    /// The flag as written (`--client-ca-file`, or the kubelet field).
    pub flag: String,
    /// Its value.
    pub value: String,
    /// Where it was read.
    pub origin: Origin,
    /// The unit, manifest or kubelet configuration it belongs to (the
    /// origin may be an environment file the unit reads).
    pub config: String,
    /// The file it names, relative to the checked directory.
    pub file: String,
    /// The graph nodes that file holds (several: a bundle).
    pub targets: Vec<String>,
    /// The flag, typed.
    #[serde(skip)]
    pub(crate) typed: Flag,
}

impl AppliedFlag {
    /// `kube-apiserver --client-ca-file (manifests/kube-apiserver.yaml:17)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.typed, self.origin)
    }
}

/// A flag that names a file that is not there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MissingFile {
    /// The component.
    pub component: Component,
    /// The flag as written (`--tls-cert-file`, or the kubelet field).
    pub flag: String,
    /// The path it names.
    pub value: String,
    /// Where it was read.
    pub origin: Origin,
    /// The unit, manifest or kubelet configuration it belongs to.
    pub config: String,
}

/// A kubeconfig a component's `--kubeconfig` names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeconfigUse {
    /// The component.
    pub component: Component,
    /// Where the flag was read.
    pub origin: Origin,
    /// The unit or manifest it belongs to.
    pub config: String,
    /// The kubeconfig, relative to the checked directory.
    pub file: String,
    /// The graph's kubeconfig node.
    pub kubeconfig: String,
}

/// Where `kpki check` took trust from: the components' flags, or (when no
/// configuration was found) the profile's bindings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrustOrigin {
    /// `flags` or `profile`.
    pub source: &'static str,
    /// The configuration files read (units, drop-ins, environment files,
    /// manifests, kubelet configurations).
    pub files: Vec<String>,
    /// The PKI flags applied.
    pub flags: Vec<AppliedFlag>,
    /// Flags that name a file that does not exist (F002).
    pub missing: Vec<MissingFile>,
    /// The kubeconfigs the components' `--kubeconfig` flags name.
    pub kubeconfigs: Vec<KubeconfigUse>,
    /// The components' configurations as read (every flag, unknown ones
    /// included).
    pub configuration: Configuration,
}

impl TrustOrigin {
    /// The line the check header prints.
    pub fn header(&self) -> String {
        if self.configuration.is_empty() {
            "no component configuration found: trust judged from the profile's bindings".into()
        } else {
            format!("flags read from: {}", self.files.join(", "))
        }
    }
}

/// Reads every certificate of a file.
fn certs_of(path: &Path) -> Vec<ParsedCert> {
    let Ok(bytes) = super::walk::read_regular(path) else {
        return Vec::new();
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Vec::new();
    };
    certs_from_pem(text)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| parse_certificate(d).ok())
        .collect()
}

/// Finds (or adds) the graph nodes the certificates of a file are.
struct Matcher {
    /// (subject, serial) -> node.
    by_name: BTreeMap<(String, String), NodeId>,
    /// Observed CAs' parsed certificates, to link a new node's issuer.
    cas: Vec<(NodeId, ParsedCert)>,
}

fn key(c: &ParsedCert) -> (String, String) {
    (format!("{:?}", c.subject), c.serial_hex.clone())
}

fn node_key(c: &CertNode) -> Option<(String, String)> {
    c.observed
        .as_ref()
        .map(|o| (format!("{:?}", c.subject), o.serial.clone()))
}

impl Matcher {
    fn new(obs: &Observation, root: &Path) -> Self {
        let mut by_name = BTreeMap::new();
        let mut cas = Vec::new();
        for (id, c) in obs.graph.certs() {
            if let Some(k) = node_key(c) {
                by_name.insert(k, id);
            }
            if c.is_ca
                && let Some(f) = obs.files.get(&id)
            {
                cas.extend(
                    certs_of(&root.join(f))
                        .into_iter()
                        .filter(|p| node_key(c) == Some(key(p)))
                        .map(|p| (id, p)),
                );
            }
        }
        Self { by_name, cas }
    }

    fn find_or_add(&mut self, obs: &mut Observation, pc: ParsedCert, rel: &str) -> NodeId {
        if let Some(id) = self.by_name.get(&key(&pc)) {
            return *id;
        }
        // A certificate no template claimed: it is in use, so it joins the graph.
        let id = NodeId(obs.graph.nodes.len() as u32);
        let issuer = if pc.issuer == pc.subject && pc.is_self_signed() {
            IssuerRef::SelfSigned
        } else {
            self.cas
                .iter()
                .find(|(_, ca)| ca.subject == pc.issuer && pc.verify_signed_by(&ca.public_key))
                .map_or_else(
                    || {
                        IssuerRef::Unknown(format!(
                            "CN={} (not among the CAs found)",
                            pc.issuer.common_name
                        ))
                    },
                    |(i, _)| IssuerRef::Node(*i),
                )
        };
        let is_ca = pc.is_ca == Some(true);
        let role = (!is_ca).then(|| {
            let server = pc.ext_key_usage.contains(&ExtUsage::ServerAuth);
            let client = pc.ext_key_usage.contains(&ExtUsage::ClientAuth);
            match (server, client) {
                (true, true) => Role::Peer,
                (true, false) => Role::Server,
                _ => Role::Client,
            }
        });
        // A bundle's further certificates: by serial.
        let node_id = if obs.graph.find(rel).is_none() {
            rel.to_owned()
        } else {
            format!("{rel}#{}", pc.serial_hex)
        };
        let mut n = super::unclaimed_node(
            node_id,
            "(named by a component flag)",
            role,
            &pc,
            rel.to_owned(),
            None,
        );
        n.issuer = issuer;
        if let IssuerRef::Unknown(_) = n.issuer
            && let Some(o) = n.observed.as_mut()
        {
            o.bad_signature = true;
        }
        obs.graph.nodes.push(Node::Cert(n));
        obs.files.insert(id, rel.to_owned());
        self.by_name.insert(key(&pc), id);
        if is_ca {
            self.cas.push((id, pc));
        }
        id
    }
}

/// Applies `cfg` to `obs`: bindings and connection trusts follow the flags.
/// `root` is the checked directory (paths in `obs` are relative to it).
pub(crate) fn apply(obs: &mut Observation, root: &Path, cfg: Configuration) -> TrustOrigin {
    let mut out = TrustOrigin {
        source: if cfg.is_empty() { "profile" } else { "flags" },
        files: cfg.files.clone(),
        ..TrustOrigin::default()
    };
    let mut matcher = Matcher::new(obs, root);
    // flag -> the nodes its file holds (the last setting read wins).
    let mut set: BTreeMap<Flag, Vec<NodeId>> = BTreeMap::new();
    for c in &cfg.components {
        for s in &c.flags {
            let Some(value) = s.value.as_deref() else {
                continue;
            };
            if c.component == Component::KubeApiserver && s.name == "requestheader-allowed-names" {
                obs.graph.facts.requestheader_allowed_names = value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                continue;
            }
            if !config::names_file(c.component, &s.name) {
                continue;
            }
            let (path, rel) = match config::resolve(root, &c.base, value) {
                Resolved::Found { path, rel } => (path, rel),
                // A bootstrapping kubelet writes its --kubeconfig itself,
                // after TLS bootstrap: absent until then is normal.
                Resolved::Missing
                    if c.component == Component::Kubelet
                        && s.name == "kubeconfig"
                        && c.flags.iter().any(|b| {
                            b.name == "bootstrap-kubeconfig"
                                && b.value.as_deref().is_some_and(|v| {
                                    matches!(
                                        config::resolve(root, &c.base, v),
                                        Resolved::Found { .. }
                                    )
                                })
                        }) =>
                {
                    continue;
                }
                Resolved::Missing => {
                    // As written: `--flag`, or a KubeletConfiguration field.
                    let flag = if s.name.chars().any(|ch| ch.is_ascii_uppercase()) {
                        s.name.clone()
                    } else {
                        format!("--{}", s.name)
                    };
                    out.missing.push(MissingFile {
                        component: c.component,
                        flag,
                        value: value.to_owned(),
                        origin: s.origin.clone(),
                        config: c.file.clone(),
                    });
                    continue;
                }
                Resolved::Outside => continue,
            };
            if s.name == "kubeconfig" {
                if let Some(u) = kubeconfig_use(obs, &mut matcher, root, c, &s.origin, &rel) {
                    out.kubeconfigs.push(u);
                }
                continue;
            }
            let Some(flag) = config::known_flag(c.component, &s.name) else {
                continue;
            };
            // Empty: the file holds nothing of the graph (the profile stands).
            let ids = named(obs, &mut matcher, flag, &path, &rel);
            let certs = matches!(flag.kind(), FlagKind::TrustedCa | FlagKind::CertAndKey);
            if ids.is_empty() && certs {
                // The component fails to load it: an unreadable file (F001)
                // that names the flag.
                let named_by = format!("{flag} ({}) names it", s.origin);
                match obs.problems.iter_mut().find(|p| p.path == rel) {
                    Some(p) => p.message = format!("{}; {named_by}", p.message),
                    None => obs.problems.push(super::FileProblem {
                        path: rel.clone(),
                        message: format!("holds no certificate; {named_by}"),
                    }),
                }
            }
            if !ids.is_empty() {
                set.insert(flag, ids.clone());
            }
            out.flags.push(AppliedFlag {
                component: c.component,
                flag: display_name(flag),
                value: value.to_owned(),
                origin: s.origin.clone(),
                config: c.file.clone(),
                file: rel,
                targets: ids.iter().map(|i| obs.graph.id_of(*i)).collect(),
                typed: flag,
            });
        }
    }
    rewire(&mut obs.graph, &set);
    out.configuration = cfg;
    out
}

/// The kubeconfig a component's `--kubeconfig` names. When it is not the
/// one read for that user (a file the layout did not claim), it joins the
/// graph and the component's connection to the apiserver goes through it.
fn kubeconfig_use(
    obs: &mut Observation,
    matcher: &mut Matcher,
    root: &Path,
    c: &config::ComponentConfig,
    origin: &Origin,
    rel: &str,
) -> Option<KubeconfigUse> {
    let user = KubeconfigUser::ALL
        .into_iter()
        .find(|u| u.component() == Some(c.component))?;
    let known = obs
        .graph
        .kubeconfigs()
        .find(|(_, k)| k.file == rel)
        .map(|(i, _)| i);
    let id = match known {
        Some(i) => i,
        None => {
            let mut problems = Vec::new();
            let mut reader = super::Reader {
                dir: root.to_path_buf(),
                problems: &mut problems,
                cache: BTreeMap::new(),
                keys: BTreeMap::new(),
                shared: None,
                kubeconfigs: BTreeMap::new(),
                certs: BTreeMap::new(),
            };
            let facts = reader.kubeconfig(rel);
            obs.problems.extend(
                problems
                    .into_iter()
                    .filter(|p| !obs.problems.iter().any(|q| q.path == p.path))
                    .collect::<Vec<_>>(),
            );
            let facts = facts?;
            let (client, _) = facts.client?;
            let ca = facts.ca?;
            let client = matcher.find_or_add(obs, std::sync::Arc::unwrap_or_clone(client), rel);
            let ca = matcher.find_or_add(obs, std::sync::Arc::unwrap_or_clone(ca), rel);
            let like = obs
                .graph
                .kubeconfigs()
                .find(|(_, k)| k.user == user)
                .map(|(_, k)| (k.node.clone(), k.cluster.clone()));
            let (node, cluster) = like.unwrap_or_default();
            let id = NodeId(obs.graph.nodes.len() as u32);
            obs.graph.nodes.push(Node::Kubeconfig(KubeconfigNode {
                id: format!("{rel} (kubeconfig)"),
                template: "(named by a component flag)".into(),
                node,
                user,
                client,
                ca,
                server: facts.server,
                cluster,
                break_glass: false,
                file: rel.to_owned(),
            }));
            obs.files.insert(id, rel.to_owned());
            // The component's connection to the apiserver goes through it.
            let g = &mut obs.graph;
            let users: Vec<Option<KubeconfigUser>> = g
                .connections
                .iter()
                .map(|cn| {
                    cn.via.and_then(|v| g.node(v)).and_then(|n| match n {
                        Node::Kubeconfig(k) => Some(k.user),
                        _ => None,
                    })
                })
                .collect();
            let mut replaced = false;
            for (cn, u) in g.connections.iter_mut().zip(users) {
                if cn.link == Link::KubeconfigToApiserver && u == Some(user) {
                    cn.client = client;
                    cn.client_trusts = Some(ca);
                    cn.via = Some(id);
                    replaced = true;
                }
            }
            if !replaced {
                let server = bound_first(g, Flag::ApiserverTlsCertFile);
                let server_trusts = bound_first(g, Flag::ApiserverClientCaFile);
                g.connections.push(crate::graph::Connection {
                    link: Link::KubeconfigToApiserver,
                    client,
                    server,
                    client_trusts: Some(ca),
                    server_trusts,
                    via: Some(id),
                });
            }
            id
        }
    };
    Some(KubeconfigUse {
        component: c.component,
        origin: origin.clone(),
        config: c.file.clone(),
        file: rel.to_owned(),
        kubeconfig: obs.graph.id_of(id),
    })
}

/// What a flag names on any node.
fn bound_first(g: &CertGraph, flag: Flag) -> Option<NodeId> {
    g.bindings.iter().find(|b| b.flag == flag).map(|b| b.target)
}

/// `--client-ca-file`, or the kubelet's field.
fn display_name(flag: Flag) -> String {
    if flag.component() == Component::Kubelet {
        flag.name().to_owned()
    } else {
        format!("--{}", flag.name())
    }
}

fn named(
    obs: &mut Observation,
    matcher: &mut Matcher,
    flag: Flag,
    path: &Path,
    rel: &str,
) -> Vec<NodeId> {
    match flag.kind() {
        FlagKind::PublicKey | FlagKind::PrivateKey => obs
            .graph
            .iter()
            .filter_map(|(i, n)| match n {
                Node::KeyPair(k) if k.private_path == rel || k.public_path == rel => Some(i),
                _ => None,
            })
            .collect(),
        FlagKind::TrustedCa | FlagKind::CertAndKey => {
            let certs = certs_of(path);
            // A certificate-and-key flag names its first certificate (the
            // rest is its chain); a trust flag trusts every CA in the bundle.
            let take = if flag.kind() == FlagKind::CertAndKey {
                1
            } else {
                certs.len()
            };
            let mut ids = Vec::new();
            for pc in certs.into_iter().take(take) {
                let id = matcher.find_or_add(obs, pc, rel);
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
    }
}

/// Of a bundle, the CA `cert` chains to, else the first.
fn pick(g: &CertGraph, bundle: &[NodeId], cert: Option<NodeId>) -> Option<NodeId> {
    cert.and_then(|c| {
        bundle
            .iter()
            .copied()
            .find(|ca| *ca == c || crate::validate::rules::chains_to(g, c, *ca))
    })
    .or_else(|| bundle.first().copied())
}

/// The cluster node a certificate belongs to.
fn node_of(g: &CertGraph, id: NodeId) -> Option<crate::x509::NodeName> {
    g.cert(id).and_then(|c| c.node.clone())
}

/// Whether `new` may stand in for `cur`: both of one cluster node, or
/// either of none.
fn same_node(g: &CertGraph, cur: Option<NodeId>, new: NodeId) -> bool {
    match (cur.and_then(|c| node_of(g, c)), node_of(g, new)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn rewire(g: &mut CertGraph, set: &BTreeMap<Flag, Vec<NodeId>>) {
    let nodes: Vec<_> = {
        let mut n: Vec<_> = g.bindings.iter().map(|b| b.node.clone()).collect();
        n.dedup();
        n
    };
    for (flag, targets) in set {
        let Some(first) = targets.first().copied() else {
            continue;
        };
        // A per-node certificate rebinds only its node's flag; a CA (or a
        // certificate of no known node) every node's.
        let owner = node_of(g, first);
        let mut any = false;
        for b in g
            .bindings
            .iter_mut()
            .filter(|b| b.flag == *flag && owner.as_ref().is_none_or(|o| *o == b.node))
        {
            b.target = first;
            any = true;
        }
        if !any {
            for node in &nodes {
                g.bindings.push(Binding {
                    node: node.clone(),
                    flag: *flag,
                    target: first,
                });
            }
        }
    }
    g.sort_bindings();
    // Certificates first, then the CAs trusted (picked against them).
    for i in 0..g.connections.len() {
        let Some(mut c) = g.connections.get(i).cloned() else {
            continue;
        };
        let ends = c.link.ends();
        if let CertSource::Flag(f) = ends.client_cert
            && let Some(t) = set.get(&f).and_then(|t| t.first())
            && same_node(g, Some(c.client), *t)
        {
            c.client = *t;
        }
        if let Some(f) = ends.server_cert
            && let Some(t) = set.get(&f).and_then(|t| t.first())
            && same_node(g, c.server, *t)
        {
            c.server = Some(*t);
        }
        if let Some(t) = set.get(&ends.server_trusts) {
            c.server_trusts = pick(g, t, Some(c.client));
        }
        if let Some(TrustSource::Flag(f)) = ends.client_trusts
            && let Some(t) = set.get(&f)
        {
            c.client_trusts = pick(g, t, c.server);
        }
        if let Some(slot) = g.connections.get_mut(i) {
            *slot = c;
        }
    }
}

/// The flags behind a trust finding.
fn flags_behind(f: &Finding) -> Vec<Flag> {
    use Flag::*;
    let link = Link::ALL
        .into_iter()
        .find(|l| f.message.starts_with(&format!("{}:", l.describe())));
    match (f.code, link) {
        (Code::T001, Some(l)) => {
            let e = l.ends();
            let mut v = vec![e.server_trusts];
            if let CertSource::Flag(c) = e.client_cert {
                v.push(c);
            }
            v
        }
        (Code::T002, Some(l)) => {
            let e = l.ends();
            let mut v: Vec<Flag> = e.server_cert.into_iter().collect();
            if let Some(TrustSource::Flag(t)) = e.client_trusts {
                v.insert(0, t);
            }
            v
        }
        (Code::T003, _) => vec![
            ApiserverClientCaFile,
            ControllerManagerClusterSigningCertFile,
        ],
        (Code::T004, _) => vec![ApiserverRequestheaderClientCaFile, ApiserverClientCaFile],
        (Code::T005, _) => vec![ApiserverProxyClientCertFile],
        (Code::T008, _) => vec![EtcdTrustedCaFile, EtcdCertFile],
        _ => Vec::new(),
    }
}

/// Names the flags behind each trust finding (message and files), and adds
/// an F002 finding for each flag that names a missing file.
pub(crate) fn annotate(report: &mut Report, trust: &TrustOrigin, dir: &Path) {
    for f in &mut report.findings {
        let behind = flags_behind(f);
        let applied: Vec<&AppliedFlag> = behind
            .iter()
            .filter_map(|fl| trust.flags.iter().rev().find(|a| a.typed == *fl))
            .collect();
        if applied.is_empty() && !matches!(f.code, Code::T001 | Code::T002) {
            continue;
        }
        let mut names: Vec<String> = applied.iter().map(|a| a.describe()).collect();
        let mut extra_files = Vec::new();
        for u in &trust.kubeconfigs {
            if f.message
                .contains(&format!("(kubeconfig {})", u.kubeconfig))
            {
                names.push(format!("{} --kubeconfig ({})", u.component, u.origin));
                extra_files.push(u.origin.file.clone());
                extra_files.push(u.config.clone());
            }
        }
        if names.is_empty() {
            continue;
        }
        f.message = format!("{} [flags: {}]", f.message, names.join("; "));
        for file in applied
            .iter()
            .flat_map(|a| [&a.origin.file, &a.config])
            .chain(extra_files.iter())
        {
            if !f.files.contains(file) {
                f.files.push(file.clone());
            }
        }
        f.files.sort();
    }
    for m in &trust.missing {
        report.findings.push(Finding {
            code: Code::F002,
            severity: Code::F002.severity(),
            nodes: vec![m.component.to_string()],
            message: format!(
                "{} {} ({}) names {}, which does not exist in {}: {} fails to start with `open {}: no such file or directory`",
                m.component,
                m.flag,
                m.origin,
                m.value,
                dir.display(),
                m.component,
                m.value
            ),
            hint: "restore the file, or point the flag at the file that holds it".into(),
            files: {
                let mut v = vec![m.origin.file.clone(), m.config.clone()];
                v.sort();
                v.dedup();
                v
            },
        });
    }
}

/// The directory the PKI is read from, and the prefix of its paths in the
/// checked directory: an install root (`DIR/etc/kubernetes/pki`) is read
/// at `DIR/etc/kubernetes`.
pub(crate) fn pki_dir(dir: &Path) -> (PathBuf, Option<&'static str>) {
    const SUB: &str = "etc/kubernetes";
    if super::detect(dir).is_err() && super::detect(&dir.join(SUB)).is_ok() {
        (dir.join(SUB), Some(SUB))
    } else {
        (dir.to_path_buf(), None)
    }
}

/// Makes the observation's paths relative to the checked directory again.
pub(crate) fn rebase(obs: &mut Observation, prefix: &str) {
    let p = |s: &mut String| *s = format!("{prefix}/{s}");
    for f in obs.files.values_mut() {
        p(f);
    }
    obs.extra.iter_mut().for_each(p);
    for pr in &mut obs.problems {
        if pr.path == "." {
            pr.path = prefix.to_owned();
        } else {
            p(&mut pr.path);
        }
    }
    for n in &mut obs.graph.nodes {
        match n {
            Node::Cert(c) => {
                c.cert_path.as_mut().map(p);
                c.key_path.as_mut().map(p);
            }
            Node::KeyPair(k) => {
                p(&mut k.private_path);
                p(&mut k.public_path);
            }
            Node::Kubeconfig(k) => p(&mut k.file),
        }
    }
}
