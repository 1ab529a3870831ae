//! Reading an existing PKI directory back into a [`CertGraph`], so that the
//! same rules that judge a plan judge real files (`kpki check`).
//!
//! The directory's layout is recognised (a kpki output dir, kubeadm's
//! `/etc/kubernetes` or its `pki/`, or the seeds' flat cfssl `NAME.pem` +
//! `NAME-key.pem`); each file is mapped to a profile template by its name;
//! the skeleton (bindings, connections) comes from expanding that profile;
//! every certificate's facts come from the file, and issuers are linked by
//! signature, not by name.

mod check;
pub mod config;
mod flags;
mod hints;
mod layout;
mod recognise;
pub(crate) mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::{ParsedCert, PrivateKey, PublicKey, certs_from_pem, parse_certificate};
use crate::graph::{CertGraph, CertNode, IssuerRef, Node, NodeId, Observed, Validity, expand};
use crate::profile::Profile;
use crate::spec::ClusterSpec;
use crate::store::Layout;
use crate::x509::{DnsName, Lifetime, San, SanSet, Usage};
pub use check::{CheckReport, check, check_with};
pub use flags::{AppliedFlag, KubeconfigUse, MissingFile, TrustOrigin};
pub use hints::{HintContext, World, foreign_hint};
pub use layout::{DirKind, detect};
pub use recognise::{AuditedFile, FileKind};

/// A file that could not be used, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    /// The file, relative to the checked directory.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A directory read back.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The recognised layout.
    pub kind: DirKind,
    /// The profile used as the skeleton.
    pub profile: Profile,
    /// The spec (given, or inferred with kubeadm defaults).
    pub spec: ClusterSpec,
    /// The graph of the certificates found.
    pub graph: CertGraph,
    /// Graph node -> the file it came from (relative to the directory).
    pub files: BTreeMap<NodeId, String>,
    /// Planned artefacts with no file (only meaningful with `--spec`).
    pub missing: Vec<String>,
    /// Certificate and key files that map to nothing.
    pub extra: Vec<String>,
    /// Files that could not be read or parsed.
    pub problems: Vec<FileProblem>,
    /// Every file of the directory, with what it holds and what it was
    /// recognised as: an audit accounts for every file.
    pub inventory: Vec<AuditedFile>,
    /// Certificates that fit no role of the profile (without a spec).
    pub unrecognised: Vec<Unrecognised>,
    /// Kubeconfigs that embed another client certificate than the file of
    /// the same certificate, or a client key that does not match it.
    pub embedded_drift: Vec<EmbeddedDrift>,
}

/// A kubeconfig whose embedded client credentials drifted from the
/// certificate file of the same graph node (`kubelet.conf` embedding
/// another node's certificate, say).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EmbeddedDrift {
    /// The kubeconfig.
    pub kubeconfig: String,
    /// The client certificate's graph id.
    pub node: String,
    /// The certificate's own file.
    pub file: String,
    /// What differs (`another client certificate than FILE`).
    pub what: String,
}

/// A certificate that fits no role.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unrecognised {
    /// Its subject.
    pub subject: crate::x509::Subject,
    /// Its issuer's common name.
    pub issuer: String,
    /// The file it is named by.
    pub file: String,
    /// Every file holding it.
    pub files: Vec<String>,
}

/// Reads `dir`. With a spec (and its profile), files are compared with the
/// plan; without, the profile that fits the files best is chosen and the
/// cluster facts are inferred from them (kubeadm defaults where they tell
/// nothing: service CIDR 10.96.0.0/12, domain cluster.local).
///
/// A kpki output directory checked with its spec is read by its layout
/// (every planned path); anything else is recognised by content.
pub fn read_dir(
    dir: &Path,
    planned: Option<(&ClusterSpec, &Profile)>,
    node: Option<&crate::x509::NodeName>,
) -> Result<Observation, crate::Error> {
    let skeleton = planned
        .map(|(s, p)| expand(s, p))
        .transpose()
        .map_err(crate::Error::Profile)?;
    let planned = match (planned, &skeleton) {
        (Some((spec, profile)), Some(g)) => Some(Planned {
            spec,
            profile,
            graph: g,
            layout: std::borrow::Cow::Owned(Layout::compute(g, spec, profile)),
        }),
        _ => None,
    };
    read_planned(dir, planned, node)
}

/// What the files are compared with when a spec is given: the spec, its
/// profile, and the graph and layout planned from them (a [`crate::Plan`]'s
/// own, so that `check --spec` does not expand a 5,000-node graph twice).
pub(crate) struct Planned<'a> {
    pub(crate) spec: &'a ClusterSpec,
    pub(crate) profile: &'a Profile,
    pub(crate) graph: &'a CertGraph,
    pub(crate) layout: std::borrow::Cow<'a, Layout>,
}

impl<'a> Planned<'a> {
    /// A plan's spec, profile, graph and layout.
    pub(crate) fn of(plan: &'a crate::Plan) -> Self {
        Self {
            spec: &plan.spec,
            profile: &plan.profile,
            graph: &plan.graph,
            layout: std::borrow::Cow::Borrowed(&plan.layout),
        }
    }
}

/// [`read_dir`] with the plan's graph and layout already made.
pub(crate) fn read_planned(
    dir: &Path,
    planned_full: Option<Planned<'_>>,
    node: Option<&crate::x509::NodeName>,
) -> Result<Observation, crate::Error> {
    let planned = planned_full.as_ref().map(|p| (p.spec, p.profile));
    let kind = detect(dir).map_err(|message| crate::Error::Io {
        path: dir.to_path_buf(),
        message,
    })?;
    // Walked once: loops, devices, FIFOs and oversized files are findings,
    // and nothing below ever walks the directory again. A kpki output read
    // by its layout is walked on a thread of its own while its planned
    // files are read (the walk is serial: 60,000 directories at 5,000
    // nodes); anything else is walked first, its files being the input.
    let by_layout = matches!(kind, DirKind::Kpki { .. }) && planned.is_some();
    let mut walking = by_layout
        .then(|| {
            let d = dir.to_path_buf();
            std::thread::Builder::new()
                .name("kpki-walk".into())
                .spawn(move || walk::walk(&d))
                .ok()
        })
        .flatten();
    let mut walked = if walking.is_some() {
        walk::Walk::default()
    } else {
        walk::walk(dir)
    };
    let mut problems = std::mem::take(&mut walked.problems);
    let mut reader = Reader {
        dir: dir.to_path_buf(),
        problems: &mut problems,
        cache: BTreeMap::new(),
        keys: BTreeMap::new(),
        shared: None,
        kubeconfigs: BTreeMap::new(),
        certs: BTreeMap::new(),
    };
    let inv = if by_layout {
        None
    } else {
        Some(recognise::inventory(&mut reader, &walked.files))
    };
    if let Some(inv) = &inv
        && inv.certs.is_empty()
        && inv.keys.is_empty()
        && inv.kubeconfigs.is_empty()
    {
        return Err(crate::Error::Io {
            path: dir.to_path_buf(),
            message: "holds no certificate, key or kubeconfig (looked at every file, at any depth)"
                .into(),
        });
    }
    // A directory other than a whole kpki output is one node's when checked
    // with a spec: only that node's per-node certificates are judged (the
    // node given, else the node its certificates name, else the first
    // control-plane node).
    // The plan's graph and layout, computed once.
    let (planned_skeleton, planned_layout) = match planned_full {
        Some(p) => (Some(p.graph), Some(p.layout)),
        None => (None, None),
    };
    let mount = match (&inv, &planned_layout) {
        (Some(_), Some(l)) => recognise::mount_point(l, &walked.files),
        _ => None,
    };
    let only_node: Option<crate::x509::NodeName> = match (&inv, planned, &planned_layout) {
        (Some(inv), Some((s, _)), Some(l)) => node
            .cloned()
            .or_else(|| recognise::node_of_dir(inv, s))
            .or_else(|| recognise::node_by_layout(l, &walked.files, mount.as_deref()))
            .or_else(|| s.control_plane.first().map(|n| n.name.clone())),
        _ => None,
    };
    let (fitted, layout_skeleton) = match (&inv, planned, planned_skeleton) {
        (None, _, g) => (None, g),
        (Some(inv), Some((s, p)), Some(g)) => (
            Some(recognise::fit(
                inv,
                s.clone(),
                p.clone(),
                g.clone(),
                only_node.as_ref(),
            )?),
            None,
        ),
        (Some(inv), _, _) => (
            Some(recognise::best_fit(inv, dir, candidates(&kind)?)?),
            None,
        ),
    };
    let (spec, profile) = match (planned, &fitted) {
        (Some((s, p)), _) => (s.clone(), p.clone()),
        (None, Some(f)) => (f.spec.clone(), f.profile.clone()),
        (None, None) => {
            return Err(crate::Error::Io {
                path: dir.to_path_buf(),
                message: "nothing to fit the files to".into(),
            });
        }
    };
    let elsewhere = |node: &Option<crate::x509::NodeName>| matches!((&only_node, node), (Some(o), Some(n)) if o != n);
    let skeleton: &CertGraph = match (&fitted, &layout_skeleton) {
        (Some(f), _) => &f.skeleton,
        (None, Some(g)) => g,
        (None, None) => {
            return Err(crate::Error::Io {
                path: dir.to_path_buf(),
                message: "nothing to fit the files to".into(),
            });
        }
    };
    let skel_layout = match planned_layout {
        Some(l) => l,
        None => std::borrow::Cow::Owned(Layout::compute(skeleton, &spec, &profile)),
    };
    // With one node's directory, only what that node's bundle holds, under
    // the part of the node's tree the directory is, can be missing.
    let mount = mount.map(|m| format!("{m}/"));
    let belongs = |id: NodeId| -> bool {
        let Some(o) = &only_node else { return true };
        let in_bundle = |i: NodeId| {
            skel_layout.of(i).any(|f| {
                f.nodes.contains(o)
                    && mount
                        .as_ref()
                        .is_none_or(|m| f.install_path.starts_with(m.as_str()))
            })
        };
        in_bundle(id)
            || skeleton
                .kubeconfigs()
                .any(|(k, kc)| kc.client == id && in_bundle(k))
    };
    let locate = layout::Locator::new(dir, &skel_layout);
    let source = match (&fitted, &inv) {
        (Some(f), Some(i)) => Source::Content(f, i),
        _ => Source::Layout(&locate),
    };
    let mut obs = Observation {
        kind: kind.clone(),
        profile: profile.clone(),
        spec: spec.clone(),
        graph: CertGraph::default(),
        files: BTreeMap::new(),
        missing: Vec::new(),
        extra: Vec::new(),
        problems: Vec::new(),
        inventory: Vec::new(),
        unrecognised: Vec::new(),
        embedded_drift: Vec::new(),
    };
    // Which skeleton nodes have files, and their facts.
    let mut keep: BTreeMap<NodeId, Node> = BTreeMap::new();
    let mut parsed: BTreeMap<NodeId, ParsedCert> = BTreeMap::new();
    // The ids `parsed` holds by public key (DER): a kubeconfig's CA is found
    // without comparing it with every certificate (10,000 kubeconfigs times
    // 10,000 leaves at fleet scale).
    let mut by_key: BTreeMap<Vec<u8>, std::collections::BTreeSet<NodeId>> = BTreeMap::new();
    let mut used_files = std::collections::BTreeSet::new();
    // File -> the graph nodes it was recognised as.
    let mut roles: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut role = |file: &str, id: &str| {
        roles
            .entry(file.to_owned())
            .or_default()
            .insert(id.to_owned());
    };
    if let Source::Layout(locate) = &source {
        let key_files: Vec<String> = skeleton
            .iter()
            .filter_map(|(id, node)| match node {
                Node::Cert(c) if !elsewhere(&c.node) => locate.cert(id).and_then(|(_, k)| k),
                Node::KeyPair(_) => locate.keypair(id).map(|(k, _)| k),
                _ => None,
            })
            .collect();
        reader.prefetch_keys(&key_files);
        let cert_files: Vec<String> = skeleton
            .iter()
            .filter_map(|(id, node)| match node {
                Node::Cert(c) if !elsewhere(&c.node) => locate.cert(id).map(|(f, _)| f),
                _ => None,
            })
            .collect();
        reader.prefetch_certs(&cert_files);
        let kubeconfig_files: Vec<String> = skeleton
            .iter()
            .filter_map(|(id, node)| match node {
                Node::Kubeconfig(k) if !elsewhere(&k.node) => locate.kubeconfig(id),
                _ => None,
            })
            .collect();
        reader.prefetch_kubeconfigs(&kubeconfig_files);
    }
    if let Some(h) = walking.take() {
        walked = h.join().map_err(|_| crate::Error::Io {
            path: dir.to_path_buf(),
            message: "the directory walk stopped unexpectedly".into(),
        })?;
        // The walk's problems come first, as when it ran before the reads
        // (prefetching records none).
        let read = std::mem::take(reader.problems);
        reader.problems.append(&mut walked.problems);
        for p in read {
            if !reader.problems.iter().any(|q| q.path == p.path) {
                reader.problems.push(p);
            }
        }
    }
    for (id, node) in skeleton.iter() {
        match node {
            // Another node's certificate is read only when recognition
            // found it by content (a file that names that node as its own).
            Node::Cert(c) if elsewhere(&c.node) && !matches!(source, Source::Content(..)) => {}
            Node::Kubeconfig(k) if elsewhere(&k.node) => {}
            Node::Cert(c) => {
                // Missing ones are counted at the end: a kubeconfig may carry it.
                let Some(seen) = source.cert(&mut reader, id) else {
                    continue;
                };
                used_files.extend(seen.files.iter().cloned());
                for f in seen.files.iter().chain(seen.key.iter()) {
                    role(f, &c.id);
                }
                let mut n = c.clone();
                let key_mismatch = match seen.key.as_ref().and_then(|k| {
                    used_files.insert(k.clone());
                    reader.key(k)
                }) {
                    Some(k) => !k.matches(&seen.pc.public_key),
                    None => false,
                };
                fill(&mut n, &seen.pc, key_mismatch);
                n.cert_path = (!seen.embedded).then(|| seen.file.clone());
                n.key_path = seen.key;
                obs.files.insert(id, seen.file);
                by_key
                    .entry(seen.pc.public_key.der.clone())
                    .or_default()
                    .insert(id);
                parsed.insert(id, seen.pc);
                keep.insert(id, Node::Cert(n));
            }
            Node::KeyPair(k) => {
                let Some((private, public)) = source.keypair(id) else {
                    if belongs(id) {
                        obs.missing.push(k.id.clone());
                    }
                    continue;
                };
                used_files.insert(private.clone());
                used_files.insert(public.clone());
                role(&private, &k.id);
                role(&public, &k.id);
                let (Some(sk), Some(pk)) = (reader.key(&private), reader.public(&public)) else {
                    continue;
                };
                let mut n = k.clone();
                n.mismatch = sk.public_key() != pk;
                n.key = pk.key_spec();
                n.private_path = private.clone();
                n.public_path = public;
                obs.files.insert(id, private);
                keep.insert(id, Node::KeyPair(n));
            }
            Node::Kubeconfig(k) => {
                let Some(path) = source.kubeconfig(id) else {
                    if belongs(id) {
                        obs.missing.push(k.id.clone());
                    }
                    continue;
                };
                let Some(cfg) = reader.kubeconfig(&path) else {
                    continue;
                };
                used_files.insert(path.clone());
                role(&path, &k.id);
                // A client certificate read from its own file: the one the
                // kubeconfig embeds must be the same, with a matching key.
                if let Some((cert, key)) = &cfg.client
                    && keep.contains_key(&k.client)
                    && let Some(own) = parsed.get(&k.client)
                {
                    let what = if cert.der != own.der {
                        Some("another client certificate than")
                    } else if key.as_ref().is_some_and(|x| !x.matches(&cert.public_key)) {
                        Some("a client key that does not match")
                    } else {
                        None
                    };
                    if let Some(what) = what {
                        let file = obs.files.get(&k.client).cloned().unwrap_or_default();
                        obs.embedded_drift.push(EmbeddedDrift {
                            kubeconfig: path.clone(),
                            node: skeleton.id_of(k.client),
                            what: format!("{what} {file}"),
                            file,
                        });
                    }
                }
                // The client cert of a kubeconfig: from the file unless a file of its own was found.
                if let Some((cert, key)) = cfg.client
                    && !keep.contains_key(&k.client)
                    && let Some(Node::Cert(c)) = skeleton.node(k.client)
                {
                    let mut n = c.clone();
                    fill(
                        &mut n,
                        &cert,
                        key.as_ref().is_some_and(|k| !k.matches(&cert.public_key)),
                    );
                    // Embedded: the certificate has no file of its own.
                    n.cert_path = None;
                    n.key_path = None;
                    obs.files.insert(k.client, path.clone());
                    by_key
                        .entry(cert.public_key.der.clone())
                        .or_default()
                        .insert(k.client);
                    parsed.insert(k.client, Arc::unwrap_or_clone(cert));
                    keep.insert(k.client, Node::Cert(n));
                }
                let mut n = k.clone();
                n.server = cfg.server;
                n.file = path.clone();
                // The CA it embeds: whichever observed CA has that certificate's key.
                // (The lowest id whose certificate has that key, as a scan
                // of `parsed` in order would find.)
                n.ca =
                    cfg.ca
                        .as_ref()
                        .and_then(|ca| {
                            by_key.get(&ca.public_key.der)?.iter().copied().find(|i| {
                                parsed.get(i).is_some_and(|p| p.public_key == ca.public_key)
                            })
                        })
                        .unwrap_or(n.ca);
                obs.files.insert(id, path);
                keep.insert(id, Node::Kubeconfig(n));
            }
        }
    }
    for (id, n) in skeleton.certs() {
        if !keep.contains_key(&id) && !elsewhere(&n.node) && belongs(id) {
            obs.missing.push(n.id.clone());
        }
    }
    // Recognised by content: CAs no template took still sign what they
    // signed (they join the graph under their own name), and every other
    // certificate that fits no role is listed, never dropped.
    let mut next = NodeId(u32::try_from(skeleton.nodes.len()).unwrap_or(u32::MAX));
    if let (Some(f), Some(inv)) = (&fitted, &inv) {
        let taken: std::collections::BTreeSet<usize> = f.certs.values().copied().collect();
        for (i, found) in inv.certs.iter().enumerate() {
            if taken.contains(&i) {
                continue;
            }
            let is_ca = found.pc.is_ca == Some(true);
            // Leaves no role takes are still judged by the rules that need
            // no role (validity, keys, chains, names) when there is no plan;
            // with one they are strays (D002).
            if !is_ca && planned.is_some() {
                continue;
            }
            let id = if is_ca {
                format!("ca:{}", found.pc.subject.common_name)
            } else {
                format!("cert:{}", found.file())
            };
            let n = unclaimed_node(id, "", None, &found.pc, found.file(), found.key_file());
            used_files.extend(found.files.iter().cloned());
            used_files.extend(found.key_files.iter().cloned());
            for f in found.files.iter().chain(found.key_files.iter()) {
                role(f, &n.id);
            }
            if !is_ca {
                obs.unrecognised.push(Unrecognised {
                    subject: found.pc.subject.clone(),
                    issuer: found.pc.issuer.common_name.clone(),
                    files: found.files.clone(),
                    file: found.file(),
                });
            }
            obs.files.insert(next, found.file());
            parsed.insert(next, found.pc.clone());
            keep.insert(next, Node::Cert(n));
            next = NodeId(next.0.saturating_add(1));
        }
    }
    // Link issuers by signature among the observed CAs.
    // A CA is identified by its key and its name: a chain needs both.
    let cas: Vec<(NodeId, PublicKey, crate::crypto::DistinguishedName)> = parsed
        .iter()
        .filter(|(_, p)| p.is_ca == Some(true))
        .map(|(i, p)| (*i, p.public_key.clone(), p.subject.clone()))
        .collect();
    // A trust bundle (old + new CA during a rotation) trusts each of its
    // certificates: a leaf signed by any CA of its issuer's file links to it.
    let mut cas = cas;
    let bundles: Vec<(NodeId, String)> = cas
        .iter()
        .filter_map(|(i, _, _)| obs.files.get(i).map(|f| (*i, f.clone())))
        .collect();
    // A bundle whose first CA is an intermediate (signed by an external
    // root) holds the chain above it: those CAs are its issuers, each a CA
    // of its own (a root kpki never holds the key of), not another
    // generation of it.
    let mut above: BTreeMap<Vec<u8>, NodeId> = BTreeMap::new();
    for (i, f) in bundles {
        let first = parsed
            .get(&i)
            .map(|p| (p.subject.clone(), p.issuer != p.subject));
        for other in reader.bundle_rest(&f) {
            if other.is_ca != Some(true) {
                continue;
            }
            let chain = first
                .as_ref()
                .is_some_and(|(subject, intermediate)| *intermediate && other.subject != *subject);
            if !chain {
                cas.push((i, other.public_key, other.subject));
                continue;
            }
            if above.contains_key(&other.der) {
                continue;
            }
            let id = format!("ca:{}", other.subject.common_name);
            let n = unclaimed_node(id, "", None, &other, f.clone(), None);
            cas.push((next, other.public_key.clone(), other.subject.clone()));
            above.insert(other.der.clone(), next);
            obs.files.insert(next, f.clone());
            parsed.insert(next, other);
            keep.insert(next, Node::Cert(n));
            next = NodeId(next.0.saturating_add(1));
        }
    }
    // Signatures are verified in parallel, and a CA's signature only when
    // its name is the certificate's issuer (a fleet has ten thousand leaves
    // and several CAs: trying every CA's key first made this quadratic work).
    // Every signature is verified: an audit never trusts a digest recorded
    // in the directory it audits (whoever could edit a certificate could
    // edit the manifest beside it).
    // Signatures the inventory already verified (certificate DER, signer's
    // key) are not verified twice.
    let proven: std::collections::BTreeSet<(&[u8], &[u8])> = inv
        .iter()
        .flat_map(|inv| {
            inv.certs.iter().filter_map(|f| {
                let signer = if f.self_signed {
                    Some(&f.pc)
                } else {
                    inv.certs.get(f.issuer?).map(|c| &c.pc)
                };
                signer.map(|c| (f.pc.der.as_slice(), c.public_key.der.as_slice()))
            })
        })
        .collect();
    let verified = |pc: &ParsedCert, k: &PublicKey| {
        proven.contains(&(pc.der.as_slice(), k.der.as_slice())) || pc.verify_signed_by(k)
    };
    let links: Vec<(NodeId, Option<IssuerRef>)> = {
        use rayon::prelude::*;
        let all: Vec<(&NodeId, &ParsedCert)> = parsed.iter().collect();
        all.into_par_iter()
            .map(|(id, pc)| {
                let by_ca = || {
                    cas.iter()
                        .find(|(ca, k, name)| ca != id && pc.issuer == *name && verified(pc, k))
                        .map(|(ca, _, _)| IssuerRef::Node(*ca))
                };
                let own = || verified(pc, &pc.public_key).then_some(IssuerRef::SelfSigned);
                let link = if pc.issuer == pc.subject {
                    own().or_else(by_ca)
                } else {
                    by_ca().or_else(own)
                };
                (*id, link)
            })
            .collect()
    };
    for (id, link) in links {
        let Some(Node::Cert(n)) = keep.get_mut(&id) else {
            continue;
        };
        let Some(pc) = parsed.get(&id) else { continue };
        n.issuer = link.unwrap_or_else(|| {
            // A CA of that name is here, yet its key does not verify the
            // signature: a fault. No CA of that name here (one node's
            // bundle holds only the CAs that node trusts): nothing to judge.
            let present = cas.iter().any(|(_, _, name)| *name == pc.issuer);
            if let Some(o) = n.observed.as_mut() {
                o.bad_signature = present;
                o.issuer_absent = !present;
            }
            IssuerRef::Unknown(if present {
                format!(
                    "CN={} (whose key does not verify its signature)",
                    pc.issuer.common_name
                )
            } else {
                format!("CN={} (not in this directory)", pc.issuer.common_name)
            })
        });
    }
    let (mut graph, map) = compact(skeleton, keep);
    if fitted.is_some() && planned.is_none() {
        // The names the apiserver accepts from its front proxy are a flag
        // value, not something certificates tell: unknown here.
        graph.facts.requestheader_allowed_names.clear();
    }
    obs.graph = graph;
    obs.extra = match (&inv, planned) {
        (None, _) => locate.extra(&used_files, &walked.files),
        (Some(inv), Some(_)) => {
            // A copy of a planned private key elsewhere in the tree (the
            // service-account key the apiserver signs with and the
            // controller-manager's) is that artefact, not an extra file.
            let used_keys: Vec<&PublicKey> = inv
                .keys
                .iter()
                .filter(|(f, _)| used_files.contains(f))
                .map(|(_, k)| k)
                .collect();
            let copy = |path: &str| {
                inv.keys
                    .iter()
                    .any(|(f, k)| f == path && used_keys.contains(&k))
            };
            inv.entries
                .iter()
                .filter(|e| e.kind.is_pki() && !used_files.contains(&e.path) && !copy(&e.path))
                .map(|e| e.path.clone())
                .collect()
        }
        (Some(_), None) => Vec::new(),
    };
    obs.inventory = match inv {
        Some(inv) => inv.entries,
        None => walked
            .files
            .iter()
            .map(|f| recognise::AuditedFile {
                path: f.clone(),
                kind: recognise::FileKind::Other,
                roles: Vec::new(),
            })
            .collect(),
    };
    for e in &mut obs.inventory {
        if let Some(r) = roles.get(&e.path) {
            e.roles = r.iter().cloned().collect();
        }
    }
    obs.problems = problems;
    obs.files = obs
        .files
        .iter()
        .filter_map(|(old, f)| map.get(old).map(|i| (*i, f.clone())))
        .collect();
    Ok(obs)
}

/// The profiles a directory may be fitted to, without a spec: the one its
/// manifest names (a kpki directory), else every preset.
fn candidates(kind: &DirKind) -> Result<Vec<Profile>, crate::Error> {
    let names: Vec<&str> = match kind {
        DirKind::Kpki { profile: Some(p) }
            if crate::profile::PRESETS.iter().any(|(n, _)| n == p) =>
        {
            vec![p.as_str()]
        }
        _ => crate::profile::PRESETS.iter().map(|(n, _)| *n).collect(),
    };
    names
        .into_iter()
        .map(|n| Profile::preset(n).map_err(crate::Error::Profile))
        .collect()
}

/// A certificate as one template's source gives it.
struct Seen {
    pc: ParsedCert,
    /// The file it is named by.
    file: String,
    /// Every file holding it.
    files: Vec<String>,
    /// Its private key file.
    key: Option<String>,
    /// It is only inside a kubeconfig.
    embedded: bool,
}

/// Where a template's files come from: the plan's layout (a kpki directory
/// checked with its spec) or recognition by content.
enum Source<'a> {
    Layout(&'a layout::Locator<'a>),
    Content(&'a recognise::Fit, &'a recognise::Inventory),
}

impl Source<'_> {
    fn cert(&self, reader: &mut Reader<'_>, id: NodeId) -> Option<Seen> {
        match self {
            Self::Layout(l) => {
                let (file, key) = l.cert(id)?;
                let pc = reader.cert(&file)?;
                Some(Seen {
                    pc,
                    files: vec![file.clone()],
                    file,
                    key,
                    embedded: false,
                })
            }
            Self::Content(fit, inv) => {
                let found = inv.certs.get(*fit.certs.get(&id)?)?;
                let file = found.file();
                // A key named like any copy that does not match it is the
                // one to show (T007); else the key that matches.
                let beside_bad = found
                    .files
                    .iter()
                    .filter_map(|f| inv.key_named_like(f))
                    .find(|k| !found.key_files.contains(k));
                let key = beside_bad.or_else(|| found.key_file());
                Some(Seen {
                    pc: found.pc.clone(),
                    // Every copy of it and of its key (a signer's own copy included).
                    files: found
                        .files
                        .iter()
                        .chain(found.key_files.iter())
                        .cloned()
                        .collect(),
                    embedded: !found.alone && inv.is_kubeconfig(&file),
                    file,
                    key,
                })
            }
        }
    }

    fn keypair(&self, id: NodeId) -> Option<(String, String)> {
        match self {
            Self::Layout(l) => l.keypair(id),
            Self::Content(fit, _) => fit.keypairs.get(&id).cloned(),
        }
    }

    fn kubeconfig(&self, id: NodeId) -> Option<String> {
        match self {
            Self::Layout(l) => l.kubeconfig(id),
            Self::Content(fit, _) => fit.kubeconfigs.get(&id).cloned(),
        }
    }
}

/// A certificate read from the directory that no template claims, as a
/// graph node `id` with the facts of the file (`template` says why it is in
/// the graph; `role` only when its usages say one).
pub(crate) fn unclaimed_node(
    id: String,
    template: &str,
    role: Option<crate::x509::Role>,
    pc: &ParsedCert,
    cert_path: String,
    key_path: Option<String>,
) -> CertNode {
    let mut n = CertNode {
        id,
        template: template.to_owned(),
        is_ca: pc.is_ca == Some(true),
        node: None,
        role,
        subject: pc.subject.clone(),
        sans: SanSet::default(),
        key: pc.public_key.key_spec(),
        usage: Usage::default(),
        issuer: IssuerRef::SelfSigned,
        validity: Validity {
            lifetime: Lifetime::from_hours(0),
            not_before: None,
            not_after: None,
        },
        cert_path: Some(cert_path),
        key_path,
        observed: None,
        existing: None,
    };
    fill(&mut n, pc, false);
    n
}

/// Overwrites a planned certificate's facts with the observed ones.
pub(crate) fn fill(n: &mut CertNode, pc: &ParsedCert, key_mismatch: bool) {
    n.subject = pc.subject.clone();
    let mut sans = SanSet::default();
    for d in &pc.dns_sans {
        sans.insert(San::Dns(DnsName::unchecked(d)));
    }
    for ip in &pc.ip_sans {
        // An IPv4-mapped IPv6 SAN (::ffff:10.96.0.1) is the IPv4 address to
        // Go's crypto/x509 (net.IP.Equal), which Kubernetes and etcd use.
        sans.insert(San::Ip(ip.to_canonical()));
    }
    n.sans = sans;
    n.key = pc.public_key.key_spec();
    /// anyExtendedKeyUsage (RFC 5280 4.2.1.12).
    const ANY_EKU: &str = "2.5.29.37.0";
    n.usage = Usage {
        ca: pc.is_ca,
        path_len: pc.path_len,
        key: pc.key_usage,
        ext: pc.ext_key_usage.clone(),
        ext_any: (pc.ext_key_usage.is_empty() && pc.other_ext_key_usages.is_empty())
            || pc.other_ext_key_usages.iter().any(|o| o == ANY_EKU),
    };
    n.is_ca = pc.is_ca == Some(true) || n.is_ca;
    let hours = (pc.not_after - pc.not_before).whole_hours().max(0);
    n.validity = Validity {
        lifetime: Lifetime::from_hours(u64::try_from(hours).unwrap_or(0)),
        not_before: Some(pc.not_before),
        not_after: Some(pc.not_after),
    };
    n.observed = Some(Observed {
        weak_signature: pc
            .signature_algorithm
            .is_weak()
            .then(|| pc.signature_algorithm.name().to_owned()),
        key_mismatch,
        bad_signature: false,
        issuer_absent: false,
        serial: pc.serial_hex.clone(),
    });
}

/// Keeps only the observed nodes, re-indexing ids, bindings and connections.
fn compact(
    skeleton: &CertGraph,
    keep: BTreeMap<NodeId, Node>,
) -> (CertGraph, BTreeMap<NodeId, NodeId>) {
    let mut map = BTreeMap::new();
    let mut nodes = Vec::new();
    for (old, n) in keep {
        map.insert(old, NodeId(nodes.len() as u32));
        nodes.push(n);
    }
    let m = |id: NodeId| map.get(&id).copied();
    for n in &mut nodes {
        match n {
            Node::Cert(c) => {
                if let IssuerRef::Node(i) = c.issuer {
                    c.issuer =
                        m(i).map_or(IssuerRef::Unknown("(not found)".into()), IssuerRef::Node);
                }
            }
            Node::Kubeconfig(k) => {
                k.client = m(k.client).unwrap_or(k.client);
                k.ca = m(k.ca).unwrap_or(k.ca);
            }
            Node::KeyPair(_) => {}
        }
    }
    let bindings = skeleton
        .bindings
        .iter()
        .filter_map(|b| {
            Some(crate::graph::Binding {
                node: b.node.clone(),
                flag: b.flag,
                target: m(b.target)?,
            })
        })
        .collect();
    let connections = skeleton
        .connections
        .iter()
        .filter_map(|c| {
            Some(crate::graph::Connection {
                link: c.link,
                client: m(c.client)?,
                server: c.server.and_then(m),
                client_trusts: c.client_trusts.and_then(m),
                server_trusts: c.server_trusts.and_then(m),
                via: c.via.and_then(m),
            })
        })
        .filter(|c| c.via.is_some() || c.link != crate::k8s::Link::KubeconfigToApiserver)
        .collect();
    let graph = CertGraph {
        nodes,
        bindings,
        connections,
        facts: skeleton.facts.clone(),
    };
    (graph, map)
}

/// A kubeconfig's contents as the rules need them.
/// Certificates are shared: a fleet's 10,000 kubeconfigs embed a handful of
/// CA certificates (and 5,000 embed the same kube-proxy certificate), held
/// once (see [`CertShare`]).
pub(crate) struct KubeconfigFacts {
    pub(crate) server: String,
    pub(crate) ca: Option<Arc<ParsedCert>>,
    pub(crate) client: Option<(Arc<ParsedCert>, Option<PrivateKey>)>,
}

impl KubeconfigFacts {
    /// A copy (private keys are not `Clone`).
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            server: self.server.clone(),
            ca: self.ca.clone(),
            client: self
                .client
                .as_ref()
                .map(|(c, k)| (c.clone(), k.as_ref().map(PrivateKey::duplicate))),
        }
    }
}

/// One parsed copy of each certificate kubeconfigs read in parallel embed.
#[derive(Default)]
pub(crate) struct CertShare(std::sync::Mutex<BTreeMap<Vec<u8>, Arc<ParsedCert>>>);

impl CertShare {
    /// Replaces the certificates of `facts` by the copies already held (or
    /// keeps theirs as the copy for the next kubeconfigs).
    pub(crate) fn share(&self, facts: &mut KubeconfigFacts) {
        let Ok(mut held) = self.0.lock() else { return };
        let mut one = |c: &mut Arc<ParsedCert>| {
            let kept = held.entry(c.der.clone()).or_insert_with(|| c.clone());
            *c = kept.clone();
        };
        if let Some(c) = facts.ca.as_mut() {
            one(c);
        }
        if let Some((c, _)) = facts.client.as_mut() {
            one(c);
        }
    }
}

/// Parses key files' texts together (the public points the files carry are
/// checked against their scalars in one batch, see
/// `PrivateKey::from_pems_beside_certs`), each with the SHA-256 of its text
/// (the key caches' index); one result per text, in order.
pub(crate) fn parse_key_texts(
    texts: &[zeroize::Zeroizing<String>],
) -> Vec<Result<(PrivateKey, [u8; 32]), crate::crypto::CryptoError>> {
    use sha2::Digest;
    let refs: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    texts
        .iter()
        .zip(PrivateKey::from_pems_beside_certs(&refs))
        .map(|(t, k)| k.map(|k| (k, sha2::Sha256::digest(t.as_bytes()).into())))
        .collect()
}

/// Reads files once, recording problems instead of failing.
pub(crate) struct Reader<'a> {
    pub(crate) dir: PathBuf,
    pub(crate) problems: &'a mut Vec<FileProblem>,
    cache: BTreeMap<String, Option<String>>,
    /// Private keys parsed so far, by the SHA-256 of their PEM text: a key
    /// file and the kubeconfig embedding the same key cost one parse (and
    /// one scalar multiplication) between them.
    keys: BTreeMap<[u8; 32], PrivateKey>,
    /// Keys parsed by the readers working in parallel with this one (5,000
    /// kubeconfigs embedding the same kube-proxy key cost one parse).
    shared: Option<&'a SharedKeys>,
    /// Kubeconfigs already read, in parallel, without any problem.
    kubeconfigs: BTreeMap<String, KubeconfigFacts>,
    /// Certificates already read and parsed, in parallel, without any
    /// problem (each taken once).
    certs: BTreeMap<String, ParsedCert>,
}

/// A key cache shared by readers on several threads.
pub(crate) type SharedKeys = std::sync::Mutex<KeyCache>;

/// Private keys by the SHA-256 of their PEM text.
pub(crate) type KeyCache = BTreeMap<[u8; 32], PrivateKey>;

impl Reader<'_> {
    fn problem(&mut self, rel: &str, message: String) {
        if !self.problems.iter().any(|p| p.path == rel) {
            self.problems.push(FileProblem {
                path: rel.to_owned(),
                message,
            });
        }
    }

    pub(crate) fn text(&mut self, rel: &str) -> Option<String> {
        if let Some(t) = self.cache.get(rel) {
            return t.clone();
        }
        let t = match walk::read_regular(&self.dir.join(rel)) {
            Ok(b) => match String::from_utf8(b) {
                Ok(s) => Some(s),
                Err(e) => {
                    // The bytes may be a key's: wipe them.
                    drop(zeroize::Zeroizing::new(e.into_bytes()));
                    self.problem(rel, "is not a text (PEM) file".into());
                    None
                }
            },
            Err(message) => {
                self.problem(rel, message);
                None
            }
        };
        self.cache.insert(rel.to_owned(), t.clone());
        t
    }

    /// The certificates after the first in a file (a trust bundle); those
    /// that do not parse are left out (the first one is what is judged).
    pub(crate) fn bundle_rest(&mut self, rel: &str) -> Vec<ParsedCert> {
        let Some(t) = self.text(rel) else {
            return Vec::new();
        };
        certs_from_pem(&t)
            .unwrap_or_default()
            .iter()
            .skip(1)
            .filter_map(|d| parse_certificate(d).ok())
            .collect()
    }

    pub(crate) fn cert(&mut self, rel: &str) -> Option<ParsedCert> {
        if let Some(pc) = self.certs.remove(rel) {
            return Some(pc);
        }
        let t = self.text(rel)?;
        let der = match certs_from_pem(&t) {
            Ok(d) if !d.is_empty() => d.into_iter().next()?,
            Ok(_) => {
                self.problem(rel, "holds no certificate".into());
                return None;
            }
            Err(e) => {
                self.problem(rel, format!("is not a PEM certificate: {e}"));
                return None;
            }
        };
        match parse_certificate(&der) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problem(rel, format!("is not a valid certificate: {e}"));
                None
            }
        }
    }

    /// Parses a private key, or takes it from the keys already parsed.
    fn parse_key(&mut self, text: &str) -> Result<PrivateKey, crate::crypto::CryptoError> {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if let Some(k) = self.keys.get(&h) {
            return Ok(k.duplicate());
        }
        let shared = |f: &mut dyn FnMut(&mut KeyCache)| {
            if let Some(m) = self.shared
                && let Ok(mut g) = m.lock()
            {
                f(&mut g);
            }
        };
        let mut known = None;
        shared(&mut |m| known = m.get(&h).map(PrivateKey::duplicate));
        let k = match known {
            Some(k) => k,
            None => {
                let k = PrivateKey::from_pem_beside_certs(text)?;
                shared(&mut |m| {
                    m.entry(h).or_insert_with(|| k.duplicate());
                });
                k
            }
        };
        self.keys.insert(h, k.duplicate());
        Ok(k)
    }

    /// Reads and parses these key files in parallel into the key cache.
    /// Only what reads and parses cleanly is kept: anything else is read
    /// again when asked for, and its problem recorded then, in order.
    /// Reads and parses the first certificate of each file in parallel;
    /// a file with any problem is left to [`Reader::cert`], which reports it.
    fn prefetch_certs(&mut self, rels: &[String]) {
        use rayon::prelude::*;
        let dir = &self.dir;
        let found: Vec<(String, ParsedCert)> = rels
            .par_iter()
            .filter_map(|rel| {
                let b = walk::read_regular(&dir.join(rel)).ok()?;
                let t = std::str::from_utf8(&b).ok()?;
                let der = certs_from_pem(t).ok()?.into_iter().next()?;
                Some((rel.clone(), parse_certificate(&der).ok()?))
            })
            .collect();
        self.certs.extend(found);
    }

    fn prefetch_keys(&mut self, rels: &[String]) {
        use rayon::prelude::*;
        let dir = &self.dir;
        let texts: Vec<zeroize::Zeroizing<String>> = rels
            .par_iter()
            .filter_map(|rel| {
                let b = walk::read_regular(&dir.join(rel)).ok()?;
                String::from_utf8(b)
                    .map_err(|e| zeroize::Zeroizing::new(e.into_bytes()))
                    .ok()
                    .map(zeroize::Zeroizing::new)
            })
            .collect();
        let found = parse_key_texts(&texts)
            .into_iter()
            .filter_map(|k| k.ok().map(|(k, h)| (h, k)));
        self.keys.extend(found);
    }

    pub(crate) fn key(&mut self, rel: &str) -> Option<PrivateKey> {
        let t = zeroize::Zeroizing::new(self.text(rel)?);
        match self.parse_key(&t) {
            Ok(k) => Some(k),
            Err(e) => {
                self.problem(rel, format!("is not a usable private key: {e}"));
                None
            }
        }
    }

    pub(crate) fn public(&mut self, rel: &str) -> Option<PublicKey> {
        let t = self.text(rel)?;
        match PublicKey::from_pem(&t) {
            Ok(k) => Some(k),
            Err(e) => {
                self.problem(rel, format!("is not a public key: {e}"));
                None
            }
        }
    }

    /// The PEM text of a kubeconfig's `what` (embedded, or the file it names,
    /// relative to `base`). A named file that exists but cannot be read
    /// safely is a problem: of that file when it is inside the directory,
    /// else of the kubeconfig `rel`. A missing one is not (kubeconfigs may
    /// name install paths such as /etc/kubernetes/pki/ca.crt).
    fn material(
        &mut self,
        rel: &str,
        base: &Path,
        m: &kubeconfig::Material,
        what: &str,
    ) -> Option<zeroize::Zeroizing<String>> {
        let bytes = zeroize::Zeroizing::new(match m {
            kubeconfig::Material::Embedded(b) => b.clone(),
            kubeconfig::Material::Path(p) => {
                let full = base.join(p);
                std::fs::symlink_metadata(&full).ok()?;
                match walk::read_regular(&full) {
                    Ok(b) => b,
                    Err(message) => {
                        match inside(&self.dir, &full) {
                            Some(inner) => self.problem(&inner, message),
                            None => self.problem(
                                rel,
                                format!("names {what} file {}, which {message}", full.display()),
                            ),
                        }
                        return None;
                    }
                }
            }
        });
        std::str::from_utf8(&bytes)
            .ok()
            .map(|t| zeroize::Zeroizing::new(t.to_owned()))
    }

    /// Reads and parses these kubeconfigs in parallel. Only those read
    /// without any problem are kept: anything else is read again when asked
    /// for, and its problems recorded then, in order.
    fn prefetch_kubeconfigs(&mut self, rels: &[String]) {
        use rayon::prelude::*;
        let shared = SharedKeys::new(std::mem::take(&mut self.keys));
        let certs = CertShare::default();
        let dir = &self.dir;
        let read: Vec<(String, KubeconfigFacts)> = rels
            .par_iter()
            .filter_map(|rel| {
                let mut problems = Vec::new();
                let mut r = Reader {
                    dir: dir.clone(),
                    problems: &mut problems,
                    cache: BTreeMap::new(),
                    keys: BTreeMap::new(),
                    shared: Some(&shared),
                    kubeconfigs: BTreeMap::new(),
                    certs: BTreeMap::new(),
                };
                let mut facts = r.kubeconfig(rel)?;
                certs.share(&mut facts);
                problems.is_empty().then(|| (rel.clone(), facts))
            })
            .collect();
        self.keys = shared.into_inner().unwrap_or_default();
        self.kubeconfigs.extend(read);
    }

    pub(crate) fn kubeconfig(&mut self, rel: &str) -> Option<KubeconfigFacts> {
        // Taken, not copied: each is asked for once (asked again, it is
        // read again).
        if let Some(f) = self.kubeconfigs.remove(rel) {
            return Some(f);
        }
        let t = zeroize::Zeroizing::new(self.text(rel)?);
        let cfg = match kubeconfig::Kubeconfig::from_yaml(&t) {
            Ok(c) => c,
            Err(e) => {
                self.problem(rel, format!("is not a valid kubeconfig: {e}"));
                return None;
            }
        };
        let (cluster, user) = match cfg.current() {
            Some((_, cluster, user)) => (cluster, user),
            None => {
                self.problem(rel, "has no usable current-context".into());
                // Still read what it holds when that is unambiguous (one
                // cluster, one user: `kubectl config set-credentials` without
                // `use-context`), so its certificate is judged too.
                match (cfg.clusters.as_slice(), cfg.users.as_slice()) {
                    ([cluster], [user]) => (cluster, user),
                    _ => return None,
                }
            }
        };
        let base = self
            .dir
            .join(rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let parse = |s: Option<zeroize::Zeroizing<String>>| {
            s.and_then(|t| certs_from_pem(&t).ok())
                .and_then(|d| d.into_iter().next())
                .and_then(|d| parse_certificate(&d).ok())
        };
        let ca = cluster
            .cluster
            .certificate_authority
            .as_ref()
            .and_then(|m| self.material(rel, &base, m, "certificate-authority"));
        let ca = parse(ca).map(Arc::new);
        let client = match &user.user {
            kubeconfig::Credential::ClientCert { cert, key } => {
                let cert = self.material(rel, &base, cert, "client-certificate");
                parse(cert).map(Arc::new).map(|c| {
                    let k = self
                        .material(rel, &base, key, "client-key")
                        .and_then(|t| self.parse_key(&t).ok());
                    (c, k)
                })
            }
            kubeconfig::Credential::Token(_) => None,
        };
        Some(KubeconfigFacts {
            server: cluster.cluster.server.clone(),
            ca,
            client,
        })
    }
}

/// `path` relative to `dir` (lexically: `.` and `..` resolved), when it is inside.
fn inside(dir: &Path, path: &Path) -> Option<String> {
    use std::path::Component;
    let rest = path.strip_prefix(dir).ok()?;
    let mut parts: Vec<String> = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
