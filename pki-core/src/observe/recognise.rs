//! Recognition by content: every walked file is classified by what it holds,
//! certificates are fitted to the profile's templates by their identity,
//! usages, SANs and issuer (the file name only breaks ties), and the profile
//! itself is chosen by structure (which CA signs which roles), never by
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::{FileProblem, Reader, walk};
use crate::crypto::{ParsedCert, PrivateKey, PublicKey, certs_from_pem, parse_certificate};
use crate::graph::{CertGraph, CertNode, Node, NodeId, expand};
use crate::k8s::{ADMIN_GROUPS, NODE_USER_PREFIX, NODES_GROUP};
use crate::profile::Profile;
use crate::spec::{
    ClusterInfo, ClusterSpec, CryptoSpec, Endpoint, EtcdTopology, NodeSpec, OutputSpec, ProfileRef,
};
use crate::store::parent_dir as parent;
use crate::x509::{Cidr, DnsName, ExtUsage, Host, KeyAlgorithm, Lifetime, NodeName, Subject};

/// What a file holds, as the inventory of a check reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// One or more certificates (several: a bundle).
    Certificates {
        /// How many.
        count: usize,
    },
    /// A private key.
    PrivateKey,
    /// A public key.
    PublicKey,
    /// A kubeconfig.
    Kubeconfig,
    /// Something else (a manifest, a unit, a config file, kpki's own records).
    Other,
    /// A file that could not be read or parsed (see its F001 finding).
    Unreadable,
}

impl FileKind {
    /// Certificates, keys and kubeconfigs: what a plan accounts for.
    pub fn is_pki(&self) -> bool {
        matches!(
            self,
            Self::Certificates { .. } | Self::PrivateKey | Self::PublicKey | Self::Kubeconfig
        )
    }
}

/// One file of the audited directory and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditedFile {
    /// The path, relative to the checked directory.
    pub path: String,
    /// What it holds.
    pub kind: FileKind,
    /// The graph nodes it was recognised as (empty: it fits no role).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// One distinct certificate and every place it was found.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub(crate) pc: ParsedCert,
    /// Files holding it (a PEM file, a bundle, or a kubeconfig embedding it).
    pub(crate) files: Vec<String>,
    /// Private key files whose public key is this certificate's.
    pub(crate) key_files: Vec<String>,
    /// Whether any copy is a certificate of its own (not only in a bundle or kubeconfig).
    pub(crate) alone: bool,
    /// The certificate that signed it (index into the pool), when found.
    pub(crate) issuer: Option<usize>,
    /// It verifies under its own key.
    pub(crate) self_signed: bool,
}

impl Found {
    fn is_ca(&self) -> bool {
        self.pc.is_ca == Some(true)
    }

    /// The file to name it by: a file of its own, else the first copy.
    pub(crate) fn file(&self) -> String {
        self.files
            .iter()
            .find(|f| !f.ends_with(".conf") && !f.ends_with(".kubeconfig"))
            .or_else(|| self.files.first())
            .cloned()
            .unwrap_or_default()
    }

    /// The key file best paired with it (same directory and name stem first).
    pub(crate) fn key_file(&self) -> Option<String> {
        let file = self.file();
        let stem = stem(&file);
        let dir = parent(&file);
        self.key_files
            .iter()
            .max_by_key(|k| {
                (
                    parent(k) == dir,
                    stem_of_key(k) == stem,
                    std::cmp::Reverse((*k).clone()),
                )
            })
            .cloned()
    }
}

/// Everything the directory holds, by content.
#[derive(Default)]
pub(crate) struct Inventory {
    pub(crate) certs: Vec<Found>,
    /// Private key files: (file, public key).
    pub(crate) keys: Vec<(String, PublicKey)>,
    /// Public key files.
    pub(crate) publics: Vec<(String, PublicKey)>,
    /// Kubeconfig files: (file, server, client certificate index, CA certificate index).
    pub(crate) kubeconfigs: Vec<Kubeconfig>,
    /// Every file, classified.
    pub(crate) entries: Vec<AuditedFile>,
    /// (directory, name stem) of each private key file -> the first such file.
    key_by_name: BTreeMap<(String, String), String>,
    /// Kubeconfig file -> its position in `kubeconfigs`.
    kubeconfig_at: BTreeMap<String, usize>,
}

impl Inventory {
    /// The private key file named like certificate file `cert` (`x.crt` ->
    /// `x.key`, `x.pem` -> `x-key.pem`), when there is one: a key beside a
    /// certificate that does not match it is a finding (T007), not a stranger.
    pub(crate) fn key_named_like(&self, cert: &str) -> Option<String> {
        self.key_by_name
            .get(&(parent(cert).to_owned(), stem(cert)))
            .cloned()
    }

    /// Whether `file` is a kubeconfig.
    pub(crate) fn is_kubeconfig(&self, file: &str) -> bool {
        self.kubeconfig_at.contains_key(file)
    }

    /// Builds the look-ups by name, once every file is in.
    fn index(&mut self) {
        self.key_by_name.clear();
        for (f, _) in &self.keys {
            self.key_by_name
                .entry((parent(f).to_owned(), stem_of_key(f)))
                .or_insert_with(|| f.clone());
        }
        self.kubeconfig_at.clear();
        for (i, k) in self.kubeconfigs.iter().enumerate() {
            self.kubeconfig_at.entry(k.file.clone()).or_insert(i);
        }
    }
}

/// A kubeconfig as recognition needs it.
#[derive(Clone, Debug)]
pub(crate) struct Kubeconfig {
    pub(crate) file: String,
    pub(crate) server: String,
    pub(crate) client: Option<usize>,
}

/// A file's contents, classified (in parallel, before anything is linked).
enum Classified {
    Certs(Vec<ParsedCert>),
    CertsAndKey(Vec<ParsedCert>, PublicKey),
    /// A private key, and the SHA-256 of its PEM text (the reader's key cache).
    Key(PrivateKey, [u8; 32]),
    /// A private key's PEM text, not parsed yet.
    KeyText(zeroize::Zeroizing<String>),
    Public(PublicKey),
    /// A kubeconfig read by a reader of its own: what it holds, the
    /// problems met, and the texts and keys that reader cached.
    Kubeconfig(Box<ReadKubeconfig>),
    Other,
    Problem(String),
}

/// The records `kpki issue` writes at the top of its output directory.
const KPKI_RECORDS: &[&str] = &["kpki-manifest.json", "components.json"];

/// A kubeconfig read in parallel with the other files.
struct ReadKubeconfig {
    facts: Option<super::KubeconfigFacts>,
    problems: Vec<FileProblem>,
    cache: BTreeMap<String, Option<String>>,
    keys: BTreeMap<[u8; 32], PrivateKey>,
}

fn classify(
    dir: &std::path::Path,
    rel: &str,
    shared: &super::SharedKeys,
    certs: &super::CertShare,
) -> Classified {
    // kpki's own records grow with the fleet (a 5,000-node manifest is
    // about 6 MiB): read under the cap `detect` reads the manifest with.
    let cap = if KPKI_RECORDS.contains(&rel) {
        64 * walk::MAX_FILE_BYTES
    } else {
        walk::MAX_FILE_BYTES
    };
    let bytes = match walk::read_regular_capped(&dir.join(rel), cap) {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(message) => return Classified::Problem(message),
    };
    let pki_name = walk::PKI_EXTENSIONS.iter().any(|e| rel.ends_with(e));
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return if pki_name && !rel.ends_with(".conf") {
            Classified::Problem("is not a text (PEM) file".into())
        } else {
            Classified::Other
        };
    };
    if text.contains("-----BEGIN") {
        if text.contains("PRIVATE KEY-----") && !text.contains("-----BEGIN CERTIFICATE-----") {
            // Parsed after the walk's files are classified, all keys
            // together (their public points checked in one batch).
            return Classified::KeyText(zeroize::Zeroizing::new(text.to_owned()));
        }
        if text.contains("-----BEGIN PUBLIC KEY-----")
            || text.contains("-----BEGIN RSA PUBLIC KEY-----")
        {
            return match PublicKey::from_pem(text) {
                Ok(k) => Classified::Public(k),
                Err(e) => Classified::Problem(format!("is not a public key: {e}")),
            };
        }
        if text.contains("-----BEGIN CERTIFICATE-----") {
            let with_key = text.contains("PRIVATE KEY-----");
            let ders = if with_key {
                crate::crypto::certs_beside_key(text)
            } else {
                certs_from_pem(text)
            };
            let ders = match ders {
                Ok(d) if !d.is_empty() => d,
                Ok(_) => return Classified::Problem("holds no certificate".into()),
                Err(e) => return Classified::Problem(format!("is not a PEM certificate: {e}")),
            };
            let mut out = Vec::with_capacity(ders.len());
            for der in ders {
                match parse_certificate(&der) {
                    Ok(p) => out.push(p),
                    Err(e) => {
                        return Classified::Problem(format!("is not a valid certificate: {e}"));
                    }
                }
            }
            // A certificate and its key in one file (the kubelet's rotated
            // `kubelet-client-<date>.pem`): the key pairs by public key.
            if with_key {
                return match PrivateKey::from_pem_beside_certs(text) {
                    Ok(k) => Classified::CertsAndKey(out, k.public_key()),
                    Err(e) => Classified::Problem(format!("is not a usable private key: {e}")),
                };
            }
            return Classified::Certs(out);
        }
    }
    let looks_kubeconfig = text.contains("kind: Config")
        || text.contains("\"kind\": \"Config\"")
        || text.contains("clusters:") && text.contains("users:")
        || rel.ends_with(".kubeconfig");
    if looks_kubeconfig {
        let mut problems = Vec::new();
        let mut r = Reader {
            dir: dir.to_path_buf(),
            problems: &mut problems,
            cache: BTreeMap::new(),
            keys: BTreeMap::new(),
            shared: Some(shared),
            kubeconfigs: BTreeMap::new(),
            certs: BTreeMap::new(),
        };
        let mut facts = r.kubeconfig(rel);
        if let Some(f) = facts.as_mut() {
            certs.share(f);
        }
        let (cache, keys) = (r.cache, r.keys);
        return Classified::Kubeconfig(Box::new(ReadKubeconfig {
            facts,
            problems,
            cache,
            keys,
        }));
    }
    if pki_name && !rel.ends_with(".conf") {
        return Classified::Problem("holds no PEM certificate or key".into());
    }
    Classified::Other
}

/// Parses the key files classification found, together
/// ([`PrivateKey::from_pems_beside_certs`]: one batch checks every P-256
/// key's point), in place.
fn parse_keys(mut classified: Vec<(String, Classified)>) -> Vec<(String, Classified)> {
    let at: Vec<usize> = classified
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| matches!(c, Classified::KeyText(_)))
        .map(|(i, _)| i)
        .collect();
    let texts: Vec<zeroize::Zeroizing<String>> = at
        .iter()
        .filter_map(|i| match classified.get_mut(*i).map(|(_, c)| c) {
            Some(Classified::KeyText(t)) => Some(std::mem::take(t)),
            _ => None,
        })
        .collect();
    for (i, k) in at.iter().zip(super::parse_key_texts(&texts)) {
        if let Some((_, c)) = classified.get_mut(*i) {
            *c = match k {
                Ok((k, h)) => Classified::Key(k, h),
                Err(e) => Classified::Problem(format!("is not a usable private key: {e}")),
            };
        }
    }
    classified
}

/// Reads and classifies every file, links issuers by signature and pairs
/// keys with certificates by public key.
pub(crate) fn inventory(reader: &mut Reader<'_>, files: &[String]) -> Inventory {
    use rayon::prelude::*;
    let dir = reader.dir.clone();
    let shared = super::SharedKeys::default();
    let certs = super::CertShare::default();
    let classified: Vec<(String, Classified)> = files
        .par_iter()
        .map(|rel| (rel.clone(), classify(&dir, rel, &shared, &certs)))
        .collect();
    let classified = parse_keys(classified);
    let mut inv = Inventory::default();
    let mut by_der: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    let mut add_cert = |inv: &mut Inventory, pc: ParsedCert, file: &str, alone: bool| {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(&pc.der).into();
        let i = *by_der.entry(h).or_insert_with(|| {
            inv.certs.push(Found {
                pc,
                files: Vec::new(),
                key_files: Vec::new(),
                alone: false,
                issuer: None,
                self_signed: false,
            });
            inv.certs.len() - 1
        });
        if let Some(f) = inv.certs.get_mut(i) {
            if !f.files.iter().any(|x| x == file) {
                f.files.push(file.to_owned());
            }
            f.alone |= alone;
        }
        i
    };
    for (rel, c) in classified {
        let kind = match c {
            Classified::Certs(list) => {
                let count = list.len();
                for pc in list {
                    add_cert(&mut inv, pc, &rel, count == 1);
                }
                FileKind::Certificates { count }
            }
            Classified::CertsAndKey(list, k) => {
                let count = list.len();
                for pc in list {
                    add_cert(&mut inv, pc, &rel, count == 1);
                }
                inv.keys.push((rel.clone(), k));
                FileKind::Certificates { count }
            }
            Classified::Key(k, h) => {
                inv.keys.push((rel.clone(), k.public_key()));
                reader.keys.insert(h, k);
                FileKind::PrivateKey
            }
            Classified::Public(k) => {
                inv.publics.push((rel.clone(), k));
                FileKind::PublicKey
            }
            Classified::Kubeconfig(read) => {
                let ReadKubeconfig {
                    facts,
                    problems,
                    cache,
                    keys,
                } = *read;
                let clean = problems.is_empty();
                for p in problems {
                    push_problem(reader.problems, &p.path, p.message);
                }
                // The texts read are kept only for a kubeconfig read with
                // problems (read again, from the cache, when asked for);
                // 10,000 clean ones would hold every kubeconfig in memory.
                if !clean {
                    for (f, t) in cache {
                        reader.cache.entry(f).or_insert(t);
                    }
                }
                for (h, k) in keys {
                    reader.keys.entry(h).or_insert(k);
                }
                // Read cleanly: read_dir takes it from here, not parsing it again.
                if clean && let Some(f) = &facts {
                    reader.kubeconfigs.insert(rel.clone(), f.duplicate());
                }
                match facts {
                    Some(k) => {
                        let client = k
                            .client
                            .map(|(c, _)| add_cert(&mut inv, Arc::unwrap_or_clone(c), &rel, false));
                        if let Some(ca) = k.ca {
                            add_cert(&mut inv, Arc::unwrap_or_clone(ca), &rel, false);
                        }
                        inv.kubeconfigs.push(Kubeconfig {
                            file: rel.clone(),
                            server: k.server,
                            client,
                        });
                        FileKind::Kubeconfig
                    }
                    None => FileKind::Unreadable,
                }
            }
            Classified::Other => FileKind::Other,
            // (parse_keys leaves none: every key text is parsed or a problem.)
            Classified::KeyText(_) => {
                push_problem(reader.problems, &rel, "was not parsed".into());
                FileKind::Unreadable
            }
            Classified::Problem(message) => {
                push_problem(reader.problems, &rel, message);
                FileKind::Unreadable
            }
        };
        inv.entries.push(AuditedFile {
            path: rel,
            kind,
            roles: Vec::new(),
        });
    }
    // Keys pair with certificates by public key.
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, f) in inv.certs.iter().enumerate() {
        by_key.entry(&f.pc.public_key.der).or_default().push(i);
    }
    let pairs: Vec<(usize, String)> = inv
        .keys
        .iter()
        .flat_map(|(file, k)| {
            by_key
                .get(k.der.as_slice())
                .into_iter()
                .flatten()
                .map(move |i| (*i, file.clone()))
        })
        .collect();
    for (i, file) in pairs {
        if let Some(f) = inv.certs.get_mut(i) {
            f.key_files.push(file);
        }
    }
    link_issuers(&mut inv.certs);
    inv.index();
    inv
}

fn push_problem(problems: &mut Vec<FileProblem>, rel: &str, message: String) {
    if !problems.iter().any(|p| p.path == rel) {
        problems.push(FileProblem {
            path: rel.to_owned(),
            message,
        });
    }
}

/// Links each certificate to the CA whose key verifies its signature (the
/// CA's name must be the certificate's issuer: a chain needs both).
fn link_issuers(certs: &mut [Found]) {
    use rayon::prelude::*;
    let cas: Vec<usize> = (0..certs.len())
        .filter(|i| certs.get(*i).is_some_and(Found::is_ca))
        .collect();
    let view: &[Found] = certs;
    let links: Vec<(Option<usize>, bool)> = view
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let own = f.pc.issuer == f.pc.subject && f.pc.verify_signed_by(&f.pc.public_key);
            if own {
                return (None, true);
            }
            let by = cas.iter().copied().find(|c| {
                *c != i
                    && view.get(*c).is_some_and(|ca| {
                        ca.pc.subject == f.pc.issuer && f.pc.verify_signed_by(&ca.pc.public_key)
                    })
            });
            (by, false)
        })
        .collect();
    for (f, (issuer, own)) in certs.iter_mut().zip(links) {
        f.issuer = issuer;
        f.self_signed = own;
    }
}

/// A file's name without directory and extension.
fn stem(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".crt").unwrap_or(name);
    let name = name.strip_suffix(".pem").unwrap_or(name);
    let name = name.strip_suffix(".cert").unwrap_or(name);
    name.to_owned()
}

/// A key file's name without directory, extension and `-key` suffix.
fn stem_of_key(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".key").unwrap_or(name);
    let name = name.strip_suffix(".pem").unwrap_or(name);
    let name = name.strip_suffix("-key").unwrap_or(name);
    name.to_owned()
}

/// File-name hints per template: a tie-breaker, never the deciding fact.
const NAME_HINTS: &[(&str, &[&str])] = &[
    ("etcd-peer", &["peer"]),
    (
        "etcd-server",
        &["etcd/server", "etcd-server", "etcd.pem", "server"],
    ),
    ("etcd-healthcheck-client", &["healthcheck", "etcd-client"]),
    (
        "apiserver-etcd-client",
        &["apiserver-etcd-client", "etcd-client-apiserver"],
    ),
    (
        "apiserver-kubelet-client",
        &["kubelet-client-apiserver", "apiserver-kubelet-client"],
    ),
    ("admin", &["admin", ".kube/config"]),
    ("super-admin", &["super-admin"]),
    (
        "front-proxy-client",
        &["proxy-client", "front-proxy-client"],
    ),
];

fn name_hint(template: &str, path: &str) -> bool {
    NAME_HINTS
        .iter()
        .filter(|(t, _)| *t == template)
        .flat_map(|(_, names)| names.iter())
        .any(|n| path.contains(n))
        || path.contains(template)
}

fn strip_system(cn: &str) -> &str {
    cn.strip_prefix("system:").unwrap_or(cn)
}

fn has(f: &Found, u: ExtUsage) -> bool {
    f.pc.ext_key_usage.contains(&u)
}

/// How well a found leaf fits a leaf template (higher is better; below
/// [`MIN_SCORE`] it does not fit).
fn score(t: &CertNode, f: &Found, cert_file: &str, break_glass: bool) -> i64 {
    #[cfg(test)]
    tests::SCORES.with(|c| c.set(c.get() + 1));
    let mut s = 0i64;
    let (tcn, fcn) = (&t.subject.common_name, &f.pc.subject.common_name);
    if tcn == fcn {
        s += 40;
    } else if !fcn.is_empty() && strip_system(tcn) == strip_system(fcn) {
        s += 25;
    } else {
        // Shared words: `admin` is half of `kubernetes-admin`.
        let words = |x: &str| -> BTreeSet<String> {
            x.split(['-', ':', '.', '_', ' '])
                .filter(|w| !w.is_empty() && *w != "system")
                .map(str::to_ascii_lowercase)
                .collect()
        };
        let (tw, fw) = (words(tcn), words(fcn));
        if let Some(share) = (tw.intersection(&fw).count() * 20).checked_div(tw.len()) {
            s += i64::try_from(share).unwrap_or(0);
        }
    }
    let (to, fo) = (&t.subject.organizations, &f.pc.subject.organizations);
    if !to.is_empty() && to == fo {
        s += if to
            .iter()
            .any(|o| ADMIN_GROUPS.contains(&o.as_str()) || o == NODES_GROUP)
        {
            25
        } else {
            10
        };
    } else if to.iter().any(|o| ADMIN_GROUPS.contains(&o.as_str()))
        && fo.iter().any(|o| ADMIN_GROUPS.contains(&o.as_str()))
    {
        s += 15;
    } else if !to.is_empty() && !fo.is_empty() && to.iter().all(|o| !fo.contains(o)) {
        s -= 4;
    }
    // A break-glass identity (kubeadm's super-admin) is only taken on
    // evidence of its name: an everyday admin in system:masters is not one.
    if break_glass && !fcn.contains("super") && !cert_file.contains("super") {
        s -= 20;
    }
    for u in [ExtUsage::ServerAuth, ExtUsage::ClientAuth] {
        match (t.usage.ext.contains(&u), has(f, u)) {
            (true, true) => s += 8,
            (true, false) => s -= 4,
            (false, true) => s -= 3,
            (false, false) => {}
        }
    }
    if !t.sans.is_empty() {
        let want = t.sans.dns.len() + t.sans.ip.len();
        let dns: BTreeSet<String> =
            f.pc.dns_sans
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect();
        let ips: BTreeSet<IpAddr> = f.pc.ip_sans.iter().map(|i| i.to_canonical()).collect();
        let got = t
            .sans
            .dns
            .iter()
            .filter(|d| dns.contains(d.as_str()))
            .count()
            + t.sans.ip.iter().filter(|i| ips.contains(i)).count();
        if let Some(share) = (got * 30).checked_div(want) {
            s += i64::try_from(share).unwrap_or(0);
        }
    } else if !f.pc.dns_sans.is_empty() || !f.pc.ip_sans.is_empty() {
        s -= 3;
    }
    if let Some(n) = &t.node
        && (fcn == n.as_str()
            || fcn.strip_prefix(NODE_USER_PREFIX) == Some(n.as_str())
            || f.pc
                .dns_sans
                .iter()
                .any(|d| d.eq_ignore_ascii_case(n.as_str())))
    {
        s += 10;
    }
    if name_hint(&t.template, cert_file) {
        s += 6;
    }
    // The service-account key's certificate (kube-apiserver
    // --service-account-key-file takes one, as seed 003's does): it is no
    // TLS role of the profile, whatever its usages.
    let base = cert_file.rsplit('/').next().unwrap_or(cert_file);
    if base.starts_with("service-account") && !t.template.contains("service-account") {
        s -= 40;
    }
    s
}

/// The node a certificate names as its own (`system:node:X`, or a server
/// cert whose CN is one of its DNS SANs, or its IP SAN), if any.
fn node_named(f: &Found) -> Option<&str> {
    let cn = f.pc.subject.common_name.as_str();
    cn.strip_prefix(NODE_USER_PREFIX).or_else(|| {
        (!NOT_NODES.contains(&cn)
            && !cn.contains(':')
            && (f.pc.dns_sans.iter().any(|d| d.eq_ignore_ascii_case(cn))
                // A node named by its IP (a kubelet serving certificate
                // `CN=10.1.0.87`, IP SAN 10.1.0.87).
                || cn
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| f.pc.ip_sans.contains(&ip))))
        .then_some(cn)
    })
}

/// The node of `spec` a one-node directory belongs to: the one its
/// certificates name most often (etcd and kubelet certs name their node).
pub(crate) fn node_of_dir(inv: &Inventory, spec: &ClusterSpec) -> Option<NodeName> {
    let known = spec.all_nodes();
    let mut votes: BTreeMap<&NodeName, usize> = BTreeMap::new();
    for f in &inv.certs {
        if let Some(n) = node_named(f)
            && let Some((k, _)) = known.get_key_value(&NodeName::unchecked(n))
        {
            *votes.entry(*k).or_default() += 1;
        } else if !f.is_ca() {
            // A certificate that names no node but holds control-plane
            // addresses (an apiserver's): a vote for those nodes.
            for n in &spec.control_plane {
                if f.pc.ip_sans.contains(&n.address) {
                    *votes.entry(&n.name).or_default() += 1;
                }
            }
        }
    }
    // On a tie, a control-plane node: a master's tree also holds the
    // kubelet certificates it made for workers.
    let is_cp = |n: &NodeName| spec.control_plane.iter().any(|c| c.name == *n);
    votes
        .into_iter()
        .max_by_key(|(n, v)| (*v, is_cp(n), std::cmp::Reverse((*n).clone())))
        .map(|(n, _)| n.clone())
}

/// Where the directory sits on a node: the install-path prefix under which
/// its files are found (`/etc/kubernetes` for a copy of that directory, `/`
/// for a whole node root), judged by the planned paths it holds.
pub(crate) fn mount_point(layout: &crate::store::Layout, files: &[String]) -> Option<String> {
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for e in &layout.files {
        for f in files {
            if let Some(prefix) = e.install_path.strip_suffix(f.as_str())
                && (prefix.is_empty() || prefix.ends_with('/'))
            {
                *votes
                    .entry(prefix.trim_end_matches('/').to_owned())
                    .or_default() += 1;
            }
        }
    }
    votes
        .into_iter()
        .max_by_key(|(p, v)| (*v, std::cmp::Reverse(p.len())))
        .map(|(p, _)| p)
}

/// The node whose planned bundle the directory's files match best (found
/// minus missing), for a node directory whose certificates name no node (a
/// worker that bootstraps its kubelet certificate holds only CA files).
pub(crate) fn node_by_layout(
    layout: &crate::store::Layout,
    files: &[String],
    mount: Option<&str>,
) -> Option<NodeName> {
    let have: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let mut score: BTreeMap<&NodeName, i64> = BTreeMap::new();
    for e in &layout.files {
        let rel = match mount {
            Some(m) => e
                .install_path
                .strip_prefix(m)
                .map(|r| r.trim_start_matches('/')),
            None => Some(e.install_path.trim_start_matches('/')),
        };
        let Some(rel) = rel else { continue };
        let found = have.contains(rel);
        for n in &e.nodes {
            *score.entry(n).or_default() += if found { 1 } else { -1 };
        }
    }
    score
        .into_iter()
        .max_by_key(|(n, v)| (*v, std::cmp::Reverse((*n).clone())))
        .map(|(n, _)| n.clone())
}

/// The nodes that per-node leaf templates belong to, numbered, so that a
/// certificate is only compared with the templates of the nodes it names.
struct NodeIndex {
    /// Lowercased node name -> number.
    ids: BTreeMap<String, usize>,
}

impl NodeIndex {
    fn new<'a>(templates: impl Iterator<Item = &'a CertNode>) -> Self {
        let mut ids = BTreeMap::new();
        for t in templates {
            if let Some(n) = &t.node {
                let next = ids.len();
                ids.entry(n.as_str().to_ascii_lowercase()).or_insert(next);
            }
        }
        Self { ids }
    }

    /// The number of a template's node (`None`: a node-less template).
    fn of(&self, t: &CertNode) -> Option<usize> {
        let n = t.node.as_ref()?;
        self.ids.get(&n.as_str().to_ascii_lowercase()).copied()
    }

    /// The template nodes a certificate names: as its common name
    /// (`system:node:X` included) or as a DNS SAN. Sorted, without repeats.
    fn named_by(&self, f: &Found) -> Vec<usize> {
        let cn = f.pc.subject.common_name.to_ascii_lowercase();
        let mut out: Vec<usize> = std::iter::once(cn.as_str())
            .chain(cn.strip_prefix("system:node:"))
            .map(str::to_owned)
            .chain(f.pc.dns_sans.iter().map(|d| d.to_ascii_lowercase()))
            .filter_map(|n| self.ids.get(&n).copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// One CA template's leaf templates: node-less ones, and per-node ones by
/// node number.
#[derive(Default)]
struct TemplatesByNode<'a> {
    anywhere: Vec<(&'a CertNode, bool)>,
    at: BTreeMap<usize, Vec<(&'a CertNode, bool)>>,
}

/// Two ascending lists merged into one, without repeats.
fn merge_sorted(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The least score a leaf must reach to take a template.
const MIN_SCORE: i64 = 20;

/// Certificates, key pairs and kubeconfigs fitted to one profile's skeleton.
pub(crate) struct Fit {
    pub(crate) profile: Profile,
    pub(crate) spec: ClusterSpec,
    pub(crate) skeleton: CertGraph,
    /// Template node -> found certificate.
    pub(crate) certs: BTreeMap<NodeId, usize>,
    /// Key-pair node -> (private, public) files.
    pub(crate) keypairs: BTreeMap<NodeId, (String, String)>,
    /// Kubeconfig node -> file.
    pub(crate) kubeconfigs: BTreeMap<NodeId, String>,
    score: i64,
}

/// Fits the inventory to `skeleton`, the graph of `profile` with `spec`
/// (given, or inferred).
/// With `node`, the directory is that node's: per-node templates of other
/// nodes take nothing.
pub(crate) fn fit(
    inv: &Inventory,
    spec: ClusterSpec,
    profile: Profile,
    skeleton: CertGraph,
    node: Option<&NodeName>,
) -> Result<Fit, crate::Error> {
    // With one node's directory, that node's templates and the node-less
    // ones; another node's only for a certificate that names that node as
    // its own (a master's tree holding the kubelet certificate it made for
    // worker `10.0.2.15`).
    let elsewhere = |c: &CertNode| node.is_some() && c.node.is_some() && c.node.as_ref() != node;
    let leaves: Vec<(NodeId, &CertNode)> = skeleton.certs().filter(|(_, c)| !c.is_ca).collect();
    let found_leaves: Vec<usize> = (0..inv.certs.len())
        .filter(|i| inv.certs.get(*i).is_some_and(|f| !f.is_ca()))
        .collect();
    let files: Vec<String> = inv.certs.iter().map(Found::file).collect();
    // Candidates by index, not every template against every certificate (a
    // 5,000-node fleet has ten thousand of each): a certificate that names
    // nodes of the plan is scored against those nodes' templates and the
    // node-less ones only; one that names none, against every template.
    let nodes = NodeIndex::new(leaves.iter().map(|(_, t)| *t).filter(|t| !elsewhere(t)));
    let break_glass = break_glass_clients(&skeleton);
    let mut per_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut anywhere: Vec<usize> = Vec::new();
    for (fi, i) in found_leaves.iter().enumerate() {
        let named = inv
            .certs
            .get(*i)
            .map(|f| nodes.named_by(f))
            .unwrap_or_default();
        if named.is_empty() {
            anywhere.push(fi);
        }
        for n in named {
            per_node.entry(n).or_default().push(fi);
        }
    }
    let all: Vec<usize> = (0..found_leaves.len()).collect();
    // Per template: (found-leaf position, score), in position order.
    let base: Vec<Vec<(usize, i64)>> = leaves
        .iter()
        .map(|(id, t)| {
            let bg = break_glass.contains(id);
            let cands: Vec<usize> = match nodes.of(t) {
                _ if elsewhere(t) => Vec::new(),
                None => all.clone(),
                Some(n) => merge_sorted(per_node.get(&n).map_or(&[][..], Vec::as_slice), &anywhere),
            };
            let own: Vec<usize> = if elsewhere(t) {
                (0..found_leaves.len())
                    .filter(|fi| {
                        found_leaves
                            .get(*fi)
                            .and_then(|i| inv.certs.get(*i))
                            .and_then(node_named)
                            .zip(t.node.as_ref())
                            .is_some_and(|(m, n)| m.eq_ignore_ascii_case(n.as_str()))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            cands
                .into_iter()
                .chain(own)
                .filter_map(|fi| {
                    let i = found_leaves.get(fi)?;
                    Some((fi, score(t, inv.certs.get(*i)?, files.get(*i)?, bg)))
                })
                .collect()
        })
        .collect();
    let assign_leaves = |bonus: &dyn Fn(usize, usize) -> i64| -> (BTreeMap<NodeId, usize>, i64) {
        let mut pairs: Vec<(i64, usize, usize)> = Vec::new();
        for (ti, row) in base.iter().enumerate() {
            for (fi, s) in row.iter().copied() {
                let s = s.saturating_add(bonus(ti, fi));
                if s >= MIN_SCORE {
                    pairs.push((s, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut taken_t = BTreeSet::new();
        let mut taken_f: BTreeMap<usize, &str> = BTreeMap::new();
        let mut out = BTreeMap::new();
        let mut total = 0;
        for (s, ti, fi) in &pairs {
            if taken_t.contains(ti) || taken_f.contains_key(fi) {
                continue;
            }
            let (Some((id, t)), Some(found)) = (leaves.get(*ti), found_leaves.get(*fi)) else {
                continue;
            };
            taken_t.insert(*ti);
            taken_f.insert(*fi, t.template.as_str());
            out.insert(*id, *found);
            total += s;
        }
        // One certificate shared by every node's copy of a template (one
        // etcd cert listing every member, one apiserver cert for all).
        for (s, ti, fi) in &pairs {
            if taken_t.contains(ti) {
                continue;
            }
            let (Some((id, t)), Some(found)) = (leaves.get(*ti), found_leaves.get(*fi)) else {
                continue;
            };
            if elsewhere(t) {
                continue;
            }
            let other_node = t.node.as_ref().is_some_and(|n| {
                inv.certs
                    .get(*found)
                    .and_then(|f| node_named(f))
                    .is_some_and(|m| m != n.as_str())
            });
            if taken_f.get(fi) == Some(&t.template.as_str()) && !other_node {
                taken_t.insert(*ti);
                out.insert(*id, *found);
                total += s / 2;
            }
        }
        (out, total)
    };
    let (first, _) = assign_leaves(&|_, _| 0);
    let cas = assign_cas(inv, &skeleton, &first);
    // Second round: a leaf signed by the CA that fills its template's issuer
    // fits better (etcd peer and server certs differ only by their CA).
    let ca_of: BTreeMap<NodeId, usize> = cas.clone();
    let fitted_cas: BTreeSet<usize> = cas.values().copied().collect();
    let bonus = |ti: usize, fi: usize| -> i64 {
        let (Some((_, t)), Some(found)) = (leaves.get(ti), found_leaves.get(fi)) else {
            return 0;
        };
        let crate::graph::IssuerRef::Node(tca) = t.issuer else {
            return 0;
        };
        match (
            ca_of.get(&tca),
            inv.certs.get(*found).and_then(|f| f.issuer),
        ) {
            (Some(a), Some(b)) if *a == b => 15,
            // Signed by a CA that fills no template of the profile: a role
            // the profile does not model (a controller-manager serving
            // cert), however alike its SANs. A leaf under a wrong but
            // modelled CA still fits on identity (and T001 tells).
            (Some(_), Some(b)) if !fitted_cas.contains(&b) => -25,
            _ => 0,
        }
    };
    let (leaf_fit, total) = assign_leaves(&bonus);
    let mut certs = leaf_fit;
    let cas = assign_cas(inv, &skeleton, &certs);
    let observed_cas = inv.certs.iter().filter(|f| f.is_ca()).count();
    let template_cas = skeleton.certs().filter(|(_, c)| c.is_ca).count();
    let mut score = total;
    score -= 10 * i64::try_from(observed_cas.saturating_sub(cas.len())).unwrap_or(0);
    score -= 5 * i64::try_from(template_cas.saturating_sub(cas.len())).unwrap_or(0);
    certs.extend(cas);
    let keypairs = fit_keypairs(inv, &skeleton);
    let kubeconfigs = fit_kubeconfigs(inv, &skeleton, &certs);
    Ok(Fit {
        profile,
        spec,
        skeleton,
        certs,
        keypairs,
        kubeconfigs,
        score,
    })
}

/// The client certificates of break-glass kubeconfigs (kubeadm's super-admin).
fn break_glass_clients(skeleton: &CertGraph) -> BTreeSet<NodeId> {
    skeleton
        .kubeconfigs()
        .filter(|(_, k)| k.break_glass)
        .map(|(_, k)| k.client)
        .collect()
}

/// Observed CAs to CA templates, by the leaves each signs.
fn assign_cas(
    inv: &Inventory,
    skeleton: &CertGraph,
    leaves: &BTreeMap<NodeId, usize>,
) -> BTreeMap<NodeId, usize> {
    let mut votes: BTreeMap<(NodeId, usize), i64> = BTreeMap::new();
    for (tid, found) in leaves {
        let Some(t) = skeleton.cert(*tid) else {
            continue;
        };
        let crate::graph::IssuerRef::Node(tca) = t.issuer else {
            continue;
        };
        if let Some(ca) = inv.certs.get(*found).and_then(|f| f.issuer) {
            *votes.entry((tca, ca)).or_default() += 10;
        }
    }
    // A CA's own name is a weak vote; a CA that signs another CA the
    // template way (an intermediate) too.
    for (tid, t) in skeleton.certs().filter(|(_, c)| c.is_ca) {
        for (i, f) in inv.certs.iter().enumerate() {
            if !f.is_ca() {
                continue;
            }
            if f.pc.subject.common_name == t.subject.common_name {
                *votes.entry((tid, i)).or_default() += 3;
            } else {
                votes.entry((tid, i)).or_default();
            }
        }
    }
    let break_glass = break_glass_clients(skeleton);
    // CA templates no leaf voted for: the CA whose leaves look most like the
    // template's leaves (a front-proxy CA whose only leaf has another CN).
    let voted_t: BTreeSet<NodeId> = votes
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|((t, _), _)| *t)
        .collect();
    let voted_c: BTreeSet<usize> = votes
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|((_, c), _)| *c)
        .collect();
    let unvoted =
        |(t, c): &(NodeId, usize), v: i64| v <= 0 && !voted_t.contains(t) && !voted_c.contains(c);
    if votes.iter().any(|(k, v)| unvoted(k, *v)) {
        // Leaves by the CA that signed them, and each template's leaves by
        // node: a leaf naming nodes of the plan is compared with those
        // nodes' templates and the node-less ones only (as in `fit`).
        let nodes = NodeIndex::new(skeleton.certs().map(|(_, c)| c).filter(|c| !c.is_ca));
        let mut signed: BTreeMap<usize, Vec<&Found>> = BTreeMap::new();
        for f in &inv.certs {
            if let Some(c) = f.issuer {
                signed.entry(c).or_default().push(f);
            }
        }
        let mut templates: BTreeMap<NodeId, TemplatesByNode<'_>> = BTreeMap::new();
        for ((t, c), v) in votes.iter_mut() {
            // Only between a template and a CA that no leaf and no name tied.
            if !unvoted(&(*t, *c), *v) {
                continue;
            }
            let by_node = templates.entry(*t).or_insert_with(|| {
                let mut b = TemplatesByNode::default();
                for (lid, lt) in skeleton.signed_by(*t) {
                    let bg = break_glass.contains(&lid);
                    match nodes.of(lt) {
                        None => b.anywhere.push((lt, bg)),
                        Some(n) => b.at.entry(n).or_default().push((lt, bg)),
                    }
                }
                b
            });
            *v = signed
                .get(c)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|f| {
                    let file = f.file();
                    let named = nodes.named_by(f);
                    let at: Box<dyn Iterator<Item = &(&CertNode, bool)>> = if named.is_empty() {
                        Box::new(by_node.at.values().flatten())
                    } else {
                        Box::new(named.iter().filter_map(|n| by_node.at.get(n)).flatten())
                    };
                    by_node
                        .anywhere
                        .iter()
                        .chain(at)
                        .map(|(lt, bg)| score(lt, f, &file, *bg))
                        .max()
                        .unwrap_or(0)
                        .max(0)
                })
                .sum::<i64>()
                / 4;
        }
    }
    let mut pairs: Vec<(i64, NodeId, usize)> =
        votes.into_iter().map(|((t, c), v)| (v, t, c)).collect();
    pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut out = BTreeMap::new();
    let mut used = BTreeSet::new();
    for (v, t, c) in pairs {
        if v <= 0 || out.contains_key(&t) || used.contains(&c) {
            continue;
        }
        used.insert(c);
        out.insert(t, c);
    }
    out
}

/// The service-account key pair: a public key file and the private key
/// that matches it (by name when none matches: then T006 tells).
fn fit_keypairs(inv: &Inventory, skeleton: &CertGraph) -> BTreeMap<NodeId, (String, String)> {
    let mut out = BTreeMap::new();
    let cert_keys: BTreeSet<&[u8]> = inv
        .certs
        .iter()
        .map(|f| f.pc.public_key.der.as_slice())
        .collect();
    let lone: Vec<&(String, PublicKey)> = inv
        .keys
        .iter()
        .filter(|(_, k)| !cert_keys.contains(k.der.as_slice()))
        .collect();
    for (id, node) in skeleton.iter() {
        let Node::KeyPair(_) = node else { continue };
        let by_key = inv.publics.iter().find_map(|(pubf, pk)| {
            lone.iter()
                .find(|(_, k)| k == pk)
                .map(|(privf, _)| (privf.clone(), pubf.clone()))
        });
        let by_name = || {
            inv.publics.iter().find_map(|(pubf, _)| {
                let s = stem_of_key(pubf.trim_end_matches(".pub"));
                lone.iter()
                    .find(|(privf, _)| stem_of_key(privf) == s)
                    .map(|(privf, _)| (privf.clone(), pubf.clone()))
            })
        };
        if let Some(p) = by_key.or_else(by_name) {
            out.insert(id, p);
        }
    }
    out
}

/// Kubeconfigs to kubeconfig templates, by the client certificate they carry.
fn fit_kubeconfigs(
    inv: &Inventory,
    skeleton: &CertGraph,
    certs: &BTreeMap<NodeId, usize>,
) -> BTreeMap<NodeId, String> {
    let mut out = BTreeMap::new();
    // Kubeconfig files by the certificate they carry, in inventory order;
    // each file is taken once.
    let mut by_client: BTreeMap<usize, std::collections::VecDeque<&str>> = BTreeMap::new();
    for c in &inv.kubeconfigs {
        if let Some(client) = c.client {
            by_client
                .entry(client)
                .or_default()
                .push_back(c.file.as_str());
        }
    }
    for (id, k) in skeleton.kubeconfigs() {
        let Some(found) = certs.get(&k.client) else {
            continue;
        };
        if let Some(f) = by_client.get_mut(found).and_then(|q| q.pop_front()) {
            out.insert(id, f.to_owned());
        }
    }
    out
}

/// Picks the profile that explains the inventory best: the given one, or
/// the best-fitting preset (by structure: which CA signs which roles).
pub(crate) fn best_fit(
    inv: &Inventory,
    dir: &std::path::Path,
    candidates: Vec<Profile>,
) -> Result<Fit, crate::Error> {
    let mut best: Option<Fit> = None;
    for profile in candidates {
        let spec = infer_spec(inv, dir, &profile);
        let skeleton = expand(&spec, &profile).map_err(crate::Error::Profile)?;
        let f = fit(inv, spec, profile, skeleton, None)?;
        if best.as_ref().is_none_or(|b| f.score > b.score) {
            best = Some(f);
        }
    }
    best.ok_or_else(|| crate::Error::Io {
        path: dir.to_path_buf(),
        message: "no profile to fit the files to".into(),
    })
}

/// The apiserver serving certificates, found by content: server certs
/// naming `kubernetes.default`.
fn apiserver_certs(inv: &Inventory) -> impl Iterator<Item = &Found> {
    inv.certs.iter().filter(|f| {
        has(f, ExtUsage::ServerAuth)
            && f.pc
                .dns_sans
                .iter()
                .any(|d| d.starts_with("kubernetes.default"))
    })
}

/// An etcd member's cert: server and client at once, valid on loopback.
fn is_etcd_like(f: &Found) -> bool {
    !f.is_ca()
        && has(f, ExtUsage::ServerAuth)
        && has(f, ExtUsage::ClientAuth)
        && f.pc.ip_sans.iter().any(IpAddr::is_loopback)
        && !f
            .pc
            .dns_sans
            .iter()
            .any(|d| d.starts_with("kubernetes.default"))
}

/// Component names that are not node names even where they sit in a CN.
const NOT_NODES: &[&str] = &[
    "kubernetes",
    "kube-apiserver",
    "apiserver",
    "etcd",
    "etcd-server",
    "etcd-peer",
    "front-proxy-client",
    "localhost",
];

/// Whether `ip` lies in `c`.
fn cidr_contains(c: &Cidr, ip: IpAddr) -> bool {
    match (c.network, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(c.prefix.min(32)))
                .unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(c.prefix.min(128)))
                .unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn is_service_ip(ip: &IpAddr, cidrs: &[Cidr]) -> bool {
    cidrs.iter().any(|c| cidr_contains(c, *ip))
}

/// The cluster facts the files tell (kubeadm's defaults where they cannot:
/// service CIDR 10.96.0.0/12, domain cluster.local).
pub(crate) fn infer_spec(inv: &Inventory, dir: &std::path::Path, profile: &Profile) -> ClusterSpec {
    let api = apiserver_certs(inv).next();
    let dns_domain = api
        .and_then(|f| {
            f.pc.dns_sans
                .iter()
                .find_map(|d| d.strip_prefix("kubernetes.default.svc."))
                .map(DnsName::unchecked)
        })
        .unwrap_or_else(|| DnsName::unchecked("cluster.local"));
    // Node names: kubelet identities, and server certs named after their node.
    let mut nodes: BTreeMap<NodeName, Vec<IpAddr>> = BTreeMap::new();
    let mut etcd: BTreeSet<NodeName> = BTreeSet::new();
    for f in &inv.certs {
        if f.is_ca() {
            continue;
        }
        let cn = f.pc.subject.common_name.as_str();
        if let Some(n) = cn.strip_prefix(NODE_USER_PREFIX)
            && let Ok(name) = NodeName::parse(n)
        {
            nodes.entry(name).or_default();
            continue;
        }
        let named_after_node = has(f, ExtUsage::ServerAuth)
            && !NOT_NODES.contains(&cn)
            && !cn.contains(':')
            && f.pc.dns_sans.iter().any(|d| d.eq_ignore_ascii_case(cn));
        if named_after_node && let Ok(name) = NodeName::parse(cn) {
            let e = nodes.entry(name.clone()).or_default();
            for ip in f.pc.ip_sans.iter().map(|i| i.to_canonical()) {
                if !ip.is_loopback() && !e.contains(&ip) {
                    e.push(ip);
                }
            }
            // etcd certs (server and client at once, loopback too).
            if is_etcd_like(f) {
                etcd.insert(name);
            }
        }
    }
    // Control-plane nodes: those an apiserver cert names.
    let mut control: BTreeSet<NodeName> = BTreeSet::new();
    for a in apiserver_certs(inv) {
        for d in &a.pc.dns_sans {
            if let Ok(n) = NodeName::parse(&d.to_ascii_lowercase())
                && nodes.contains_key(&n)
            {
                control.insert(n);
            }
        }
    }
    if control.is_empty() {
        control = etcd.clone();
    }
    let service_cidrs = infer_service_cidrs(api);
    // The endpoint: where kubeconfigs point, else the apiserver cert's first address.
    let endpoint = inv
        .kubeconfigs
        .iter()
        .find_map(|k| Endpoint::parse(k.server.trim_start_matches("https://")).ok())
        .or_else(|| {
            api.and_then(|a| {
                a.pc.ip_sans
                    .iter()
                    .map(|i| i.to_canonical())
                    .find(|i| !i.is_loopback() && !is_service_ip(i, &service_cidrs))
                    .map(|ip| Endpoint {
                        host: Host::Ip(ip),
                        port: 6443,
                    })
            })
        });
    if control.is_empty() {
        // No node names in the files (cfssl sets often have none): one node
        // per address of the etcd or apiserver cert, named after it.
        let source = inv.certs.iter().find(|f| is_etcd_like(f)).or(api);
        let endpoint_ip = endpoint.as_ref().and_then(|e| match &e.host {
            Host::Ip(ip) => Some(*ip),
            Host::Dns(_) => None,
        });
        let addresses: Vec<IpAddr> = source
            .iter()
            .flat_map(|f| f.pc.ip_sans.iter())
            .map(|ip| ip.to_canonical())
            .filter(|ip| !ip.is_loopback() && !is_service_ip(ip, &service_cidrs))
            .collect();
        // The endpoint is a VIP unless it is the only address (one master
        // reached on its own address).
        let others: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|ip| Some(*ip) != endpoint_ip)
            .collect();
        for ip in if others.is_empty() { addresses } else { others } {
            let name = format!("node-{}", ip.to_string().replace(['.', ':'], "-"));
            if let Ok(n) = NodeName::parse(&name) {
                nodes.entry(n.clone()).or_default().push(ip);
                control.insert(n);
            }
        }
    }
    if control.is_empty() {
        let first = nodes
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| NodeName::unchecked("node"));
        nodes.entry(first.clone()).or_default();
        control.insert(first);
    }
    let spec_of = |name: &NodeName| {
        let mut ips = nodes.get(name).cloned().unwrap_or_default();
        // A node named by its address (`system:node:10.1.0.87`).
        if ips.is_empty()
            && let Ok(ip) = name.as_str().parse::<IpAddr>()
        {
            ips.push(ip);
        }
        NodeSpec {
            name: name.clone(),
            address: ips
                .first()
                .copied()
                .unwrap_or(IpAddr::V4([127, 0, 0, 1].into())),
            extra_ips: ips.iter().skip(1).copied().collect(),
            hostnames: Vec::new(),
        }
    };
    let control_plane: Vec<NodeSpec> = control.iter().map(spec_of).collect();
    // etcd members on nodes of their own: an external etcd.
    let external: Vec<NodeSpec> = etcd
        .iter()
        .filter(|n| !control.contains(*n))
        .map(spec_of)
        .collect();
    let etcd_topology = if external.is_empty() {
        EtcdTopology::Stacked
    } else {
        EtcdTopology::External(etcd.iter().map(spec_of).collect())
    };
    let workers: Vec<NodeSpec> = nodes
        .keys()
        .filter(|n| !control.contains(*n) && !etcd.contains(*n))
        .map(spec_of)
        .collect();
    let endpoint = endpoint.unwrap_or_else(|| Endpoint {
        host: Host::Ip(
            control_plane
                .first()
                .map_or(IpAddr::V4([127, 0, 0, 1].into()), |n| n.address),
        ),
        port: 6443,
    });
    let algorithm = infer_algorithm(inv);
    let lifetime = |ca: bool| {
        inv.certs
            .iter()
            .filter(|f| f.is_ca() == ca)
            .map(|f| (f.pc.not_after - f.pc.not_before).whole_hours().max(1))
            .max()
            .and_then(|h| u64::try_from(h).ok())
            .map(Lifetime::from_hours)
    };
    ClusterSpec {
        source: dir.to_path_buf(),
        profile: ProfileRef::Preset(profile.name.clone()),
        profile_location: crate::Location::file(dir.to_path_buf()),
        cluster: ClusterInfo {
            name: "kubernetes".into(),
            dns_domain,
            service_cidrs,
            endpoint,
            extra_sans: Vec::new(),
        },
        crypto: CryptoSpec {
            algorithm,
            ca_validity: lifetime(true).unwrap_or(Lifetime::from_days(3650)),
            leaf_validity: lifetime(false).unwrap_or(Lifetime::from_days(365)),
        },
        subject: Subject::default(),
        control_plane,
        etcd: etcd_topology,
        workers,
        output: OutputSpec {
            dir: dir.to_path_buf(),
            embed_certs: true,
        },
        bootstrap: crate::spec::BootstrapSpec::default(),
        kubeadm: crate::spec::KubeadmSpec::default(),
        ca_keys: crate::spec::CaKeyStore::default(),
        controller_manager: crate::spec::ControllerManagerSpec::default(),
        root: crate::spec::RootSpec::default(),
        warnings: Vec::new(),
    }
}

/// The service CIDR whose first address the apiserver cert carries.
fn infer_service_cidrs(api: Option<&Found>) -> Vec<Cidr> {
    let default = Cidr {
        network: IpAddr::V4([10, 96, 0, 0].into()),
        prefix: 12,
    };
    let Some(api) = api else { return vec![default] };
    let ips: Vec<IpAddr> = api.pc.ip_sans.iter().map(|i| i.to_canonical()).collect();
    if ips.iter().any(|i| default.first_ip() == Some(*i)) {
        return vec![default];
    }
    // x.y.0.1 is the first address of x.y.0.0/16; x.y.z.1 of x.y.z.0/24.
    for ip in ips {
        if let IpAddr::V4(v4) = ip {
            let o = v4.octets();
            if o[3] == 1 && !v4.is_loopback() && (o[0] == 10 || o[0] == 172 || o[0] == 192) {
                let (network, prefix) = if o[2] == 0 {
                    ([o[0], o[1], 0, 0], 16)
                } else {
                    ([o[0], o[1], o[2], 0], 24)
                };
                // Only an address no node holds (node addresses rarely end in .0.1).
                if o[2] == 0 {
                    return vec![Cidr {
                        network: IpAddr::V4(network.into()),
                        prefix,
                    }];
                }
            }
        }
    }
    vec![default]
}

fn infer_algorithm(inv: &Inventory) -> KeyAlgorithm {
    let mut counts: BTreeMap<String, (usize, KeyAlgorithm)> = BTreeMap::new();
    for f in &inv.certs {
        if let Ok(a) = f.pc.public_key.algorithm() {
            counts.entry(format!("{a:?}")).or_insert((0, a)).0 += 1;
        }
    }
    counts
        .into_values()
        .max_by_key(|(n, _)| *n)
        .map_or(KeyAlgorithm::EcdsaP256, |(_, a)| a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::cell::Cell;
    use std::path::Path;

    use super::*;

    thread_local! {
        /// `score()` calls on this thread.
        pub(super) static SCORES: Cell<u64> = const { Cell::new(0) };
    }

    /// The HA spec (isolated profile: four CAs, external etcd) with `n`
    /// workers, issued into a new directory.
    fn fleet(n: usize) -> tempfile::TempDir {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let ha = std::fs::read_to_string(root.join("fixtures/specs/ha.toml")).unwrap();
        let mut spec = ha[..ha.find("[[worker]]").unwrap()].to_owned();
        for i in 0..n {
            spec.push_str(&format!(
                "\n[[worker]]\nname = \"w{i:03}\"\naddress = \"10.1.0.{}\"\n",
                i + 1
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.toml");
        std::fs::write(&path, spec).unwrap();
        let plan = crate::Plan::load(&path).unwrap();
        let out = dir.path().join("out");
        let mut store = crate::DirStore::open(&out).unwrap();
        crate::issue(&plan, &mut store, &crate::IssueOptions::default()).unwrap();
        dir
    }

    /// Reads a fleet's output without a spec (recognition by content):
    /// how many templates took a certificate, and how many `score()` calls
    /// fitting cost.
    fn recognise(dir: &Path) -> (usize, u64) {
        SCORES.with(|c| c.set(0));
        let obs = super::super::read_dir(&dir.join("out"), None, None).unwrap();
        let certs = obs.graph.certs().count();
        assert!(obs.unrecognised.is_empty(), "{:?}", obs.unrecognised);
        (certs, SCORES.with(Cell::get))
    }

    #[test]
    fn fitting_a_fleet_costs_linear_score_calls() {
        let (small, large) = (fleet(8), fleet(24));
        let (certs_s, calls_s) = recognise(small.path());
        let (certs_l, calls_l) = recognise(large.path());
        // Every worker's kubelet client and serving certificates are fitted.
        assert_eq!(certs_l - certs_s, 2 * 16, "{certs_s} {certs_l}");
        // Linear: 16 more workers add a bounded number of calls per worker.
        // Every template against every certificate (quadratic) costs
        // (certs x templates), growing ~4x from 8 to 24 workers.
        let per_worker = (calls_l - calls_s) / 16;
        assert!(per_worker <= 80, "{calls_s} -> {calls_l} score() calls");
        assert!(
            calls_l < 2 * calls_s,
            "{calls_s} -> {calls_l} score() calls"
        );
    }

    #[test]
    fn kpki_records_of_a_large_fleet_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(5 << 20));
        std::fs::write(dir.path().join("kpki-manifest.json"), &big).unwrap();
        std::fs::write(dir.path().join("other.json"), &big).unwrap();
        let shared = crate::observe::SharedKeys::default();
        assert!(matches!(
            classify(
                dir.path(),
                "kpki-manifest.json",
                &shared,
                &Default::default()
            ),
            Classified::Other
        ));
        assert!(matches!(
            classify(dir.path(), "other.json", &shared, &Default::default()),
            Classified::Problem(m) if m.contains("4 MiB")
        ));
    }
}
