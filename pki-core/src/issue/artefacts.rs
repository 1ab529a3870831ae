//! The bytes of every file: PEM certificates and keys, kubeconfigs, the manifest.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use rayon::prelude::*;

use super::existing::{Digest, digest};
use super::{Final, IssueError};
use crate::Plan;
use crate::crypto::{CryptoError, PrivateKey, cert_to_pem};
use crate::graph::{IssuerRef, Node, NodeId};
use crate::store::{Mode, Part, PkiStore, StoreError};

/// One file's content and where it goes.
pub struct Artefact {
    /// Output-relative paths (cluster/ and node bundles).
    pub paths: Vec<String>,
    /// Content (wiped on drop: it may be a key).
    pub bytes: Zeroizing<Vec<u8>>,
    /// File mode.
    pub mode: Mode,
}

impl std::fmt::Debug for Artefact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Artefact({:?}, {} bytes, {:?})",
            self.paths,
            self.bytes.len(),
            self.mode
        )
    }
}

/// One certificate in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Graph id.
    pub id: String,
    /// `ca`, `leaf` or `keypair`.
    pub kind: String,
    /// Issuer id (own id when self-signed).
    pub issuer: String,
    /// Serial, hex.
    pub serial: String,
    /// SHA-256 of the DER certificate (of the SPKI for keypairs), hex.
    pub sha256: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Output-relative files.
    pub files: Vec<String>,
    /// SHA-256 of the private-key file's bytes as kpki encoded and wrote
    /// them, hex: a later run that finds the same bytes takes the public key
    /// from the file instead of deriving it again. Absent for adopted and
    /// token-held keys, and in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
}

/// `kpki-manifest.json`: what was issued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Profile name.
    pub profile: String,
    /// Cluster name.
    pub cluster: String,
    /// Certificates and keypairs.
    pub entries: Vec<ManifestEntry>,
    /// Kubeconfig id -> files.
    pub kubeconfigs: BTreeMap<String, Vec<String>>,
    /// Every `kpki renew` that re-issued something, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renewals: Vec<Renewal>,
    /// The etcd members this issuance handed flags to (the next issuance
    /// compares the spec with them: members added later join the cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd_members: Vec<crate::outputs::EtcdMember>,
    /// The last etcd membership change and its steps (kept until the next
    /// change: they may not have been run yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_change: Option<crate::outputs::MembershipChange>,
    /// The CA / service-account key rotation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Finished rotations, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Rotation>,
}

/// A phase of a staged rotation (`kpki rotate begin|switch|finish`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotationPhase {
    /// New CAs and keys exist; every trust anchor holds old + new.
    Begin,
    /// Leaves are signed by the new CAs, the new SA key signs tokens;
    /// trust anchors still hold old + new.
    Switch,
    /// The old CAs and SA public keys leave every trust anchor.
    Finish,
}

impl RotationPhase {
    /// The subcommand name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::Switch => "switch",
            Self::Finish => "finish",
        }
    }
}

impl std::fmt::Display for RotationPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staged rotation of CAs and service-account keys, as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rotation {
    /// The last phase started.
    pub phase: RotationPhase,
    /// Whether that phase completed (false: it was interrupted; run it again).
    pub done: bool,
    /// The rotating CAs (graph ids).
    pub cas: Vec<String>,
    /// The rotating keypairs (the service-account key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keypairs: Vec<String>,
    /// `switch --new-keys`: leaves under the new CAs got new keys.
    #[serde(default)]
    pub new_keys: bool,
    /// When `begin` started, RFC 3339.
    pub started: String,
    /// Where `finish` archives the old material (output-relative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

impl Rotation {
    /// The phase to run next: the interrupted one again, else the one after.
    pub fn next(&self) -> RotationPhase {
        match (self.done, self.phase) {
            (false, p) => p,
            (true, RotationPhase::Begin) => RotationPhase::Switch,
            (true, RotationPhase::Switch | RotationPhase::Finish) => RotationPhase::Finish,
        }
    }
}

/// One renewal, as recorded in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Renewal {
    /// When, RFC 3339.
    pub at: String,
    /// The certificates re-issued.
    pub ids: Vec<String>,
    /// Whether new keys were generated.
    pub new_keys: bool,
}

/// Every file of one issuance, in write order (keys before their
/// certificates, CAs before leaves, the manifest last).
pub(crate) struct Rendered {
    pub(crate) items: Vec<Item>,
    pub(crate) manifest: Manifest,
}

/// Whether a file holds given bytes: `None` when there is no such file.
pub(crate) type Found = Result<Option<bool>, StoreError>;

/// One file of an issuance and how each of its paths compares with it.
pub(crate) struct Item {
    pub(crate) art: Artefact,
    /// Per path, once compared: whether the file holds exactly these bytes.
    pub(crate) found: Vec<Option<Found>>,
}

impl Item {
    /// Drops the bytes once they are needed no more: every path is compared,
    /// and none is to be written (all unchanged, or a dry run).
    fn settled(mut self, dry_run: bool) -> Self {
        let compared = self.found.iter().all(Option::is_some);
        let unchanged = self.found.iter().all(|f| matches!(f, Some(Ok(Some(true)))));
        if compared && (dry_run || unchanged) {
            self.art.bytes = Zeroizing::new(Vec::new());
        }
        self
    }
}

/// Compares the paths of `items` this run did not read already with the
/// files (in parallel where the store can), then drops the bytes no longer
/// needed.
fn compare(store: &impl PkiStore, items: Vec<Item>, dry_run: bool) -> Vec<Item> {
    let mut items = items;
    let (at, results) = {
        let mut at = Vec::new();
        let mut todo: Vec<(&str, &[u8])> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            for (j, (path, found)) in item.art.paths.iter().zip(&item.found).enumerate() {
                if found.is_none() {
                    at.push((i, j));
                    todo.push((path.as_str(), item.art.bytes.as_slice()));
                }
            }
        }
        if todo.is_empty() {
            (at, Vec::new())
        } else {
            (at, store.same_many(&todo))
        }
    };
    for ((i, j), r) in at.into_iter().zip(results) {
        if let Some(f) = items.get_mut(i).and_then(|x| x.found.get_mut(j)) {
            *f = Some(r);
        }
    }
    items.into_iter().map(|x| x.settled(dry_run)).collect()
}

/// A JSON file (pretty, with a final newline) as an [`Item`]. It is
/// serialized once into a digest and its length: a file this run read that
/// holds exactly these bytes (or any file, in a dry run) needs no buffer at
/// all; else the bytes go into a buffer of their exact size (a fleet's
/// manifest is megabytes).
fn json_item<T: Serialize + ?Sized>(
    existing: &super::existing::Existing,
    path: &str,
    value: &T,
    dry_run: bool,
) -> Result<Item, serde_json::Error> {
    struct Tee(sha2::Sha256, usize);
    impl std::io::Write for Tee {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            sha2::Digest::update(&mut self.0, b);
            self.1 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut tee = Tee(<sha2::Sha256 as sha2::Digest>::new(), 0);
    serde_json::to_writer_pretty(&mut tee, value)?;
    std::io::Write::write_all(&mut tee, b"\n").map_err(serde_json::Error::io)?;
    let d: Digest = sha2::Digest::finalize(tee.0).into();
    let found = existing.read_digest(path).map(|f| Ok(f.map(|x| *x == d)));
    let paths = vec![path.to_owned()];
    if let Some(Ok(same)) = found
        && (dry_run || same == Some(true))
    {
        return Ok(Item {
            art: Artefact {
                paths,
                bytes: Zeroizing::new(Vec::new()),
                mode: Mode::Public,
            },
            found: vec![Some(Ok(same))],
        });
    }
    let mut bytes = Vec::with_capacity(tee.1);
    serde_json::to_writer_pretty(&mut bytes, value)?;
    bytes.push(b'\n');
    Ok(Item {
        art: Artefact {
            paths,
            bytes: Zeroizing::new(bytes),
            mode: Mode::Public,
        },
        found: vec![found],
    })
}

/// What [`render`] makes of one graph node.
enum NodeOut {
    Nothing,
    Cert {
        is_ca: bool,
        /// A signer's own copy: its key, then its certificate.
        signing: Option<(Item, Item)>,
        key: Option<Item>,
        cert: Option<Item>,
        entry: ManifestEntry,
    },
    Pair {
        /// The private key, then the public key.
        files: [Item; 2],
        entry: ManifestEntry,
    },
    Kubeconfig {
        id: String,
        art: Item,
    },
}

/// An artefact as an [`Item`]: each path this run read is compared with
/// the digest of what it read; when that settles every path, the bytes are
/// dropped at once unless they are to be written (a no-op run or a dry run
/// holds no file's bytes for long).
fn known_to(existing: &super::existing::Existing, art: Artefact, dry_run: bool) -> Item {
    let read: Vec<Option<Option<&Digest>>> =
        art.paths.iter().map(|p| existing.read_digest(p)).collect();
    let d = read.iter().any(Option::is_some).then(|| digest(&art.bytes));
    let found = read
        .iter()
        .map(|r| r.map(|f| Ok(f.map(|x| Some(x) == d.as_ref()))))
        .collect();
    Item { art, found }.settled(dry_run)
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An adopted CA planned without its key (a check's plan) cannot issue.
pub(crate) fn no_key(a: &crate::ExistingCa) -> IssueError {
    IssueError::Existing {
        path: a.key_path.display().to_string(),
        message: format!(
            "{}: no private key: kpki cannot sign with {}",
            a.key_path.display(),
            a.id
        ),
    }
}

fn key_pem(id: &str, k: &PrivateKey) -> Result<Zeroizing<Vec<u8>>, IssueError> {
    k.to_pem()
        .map(|p| Zeroizing::new(p.as_bytes().to_vec()))
        .map_err(|source| IssueError::Crypto {
            id: id.to_owned(),
            source,
        })
}

/// `to` relative to the directory of `from` (both absolute install paths).
pub(crate) fn relative(from_file: &str, to: &str) -> PathBuf {
    let from: Vec<Component<'_>> = Path::new(from_file)
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    let to_c: Vec<Component<'_>> = Path::new(to).components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_c[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// Where the bootstrap kubeconfig goes in cluster/.
pub(crate) const BOOTSTRAP_KUBECONFIG: &str = "cluster/bootstrap-kubelet.conf";

/// Renders every file and compares each with what its paths hold (the
/// files this run read already by their digest, the others through the
/// store); the bytes of a file not to be written are dropped at once.
pub(crate) fn render(
    plan: &Plan,
    (finals, pairs): (&BTreeMap<NodeId, Final>, &BTreeMap<NodeId, PrivateKey>),
    existing: &super::existing::Existing,
    renewals: Vec<Renewal>,
    opts: &super::IssueOptions,
    membership: &crate::outputs::MembershipChange,
    store: &impl PkiStore,
) -> Result<Rendered, IssueError> {
    let (now, dry_run) = (opts.now, opts.dry_run);
    let g = &plan.graph;
    let layout = &plan.layout;
    let paths = |id: NodeId, part: Part| {
        layout
            .part(id, part)
            .map(|f| f.output_paths())
            .unwrap_or_default()
    };
    let mut keys_ca = Vec::new();
    let mut certs_ca = Vec::new();
    let mut keys_leaf = Vec::new();
    let mut certs_leaf = Vec::new();
    let mut pair_files = Vec::new();
    let mut kubeconfigs = Vec::new();
    let mut manifest = Manifest {
        version: 1,
        profile: plan.profile.name.clone(),
        cluster: plan.spec.cluster.name.clone(),
        entries: Vec::new(),
        kubeconfigs: BTreeMap::new(),
        renewals,
        etcd_members: membership.members.clone(),
        etcd_change: membership.record(),
        rotation: existing.rotation.clone(),
        rotations: existing.rotations.clone(),
    };
    // The PEM every trust anchor of a CA holds: its certificate, and during
    // a rotation the other generation too (old + new).
    let trust_pem = |id: NodeId, f: &Final| {
        let mut pem = cert_to_pem(f.cert_der()).into_bytes();
        if let Some(extra) = existing.trust_extra(id) {
            pem.extend(cert_to_pem(extra).into_bytes());
        }
        // An intermediate of an external root: the chain up to the root.
        for c in &f.chain {
            pem.extend(cert_to_pem(c).into_bytes());
        }
        pem
    };
    let known = |art: Artefact| known_to(existing, art, dry_run);
    let one = |id: NodeId, n: &Node| -> Result<NodeOut, IssueError> {
        Ok(match n {
            Node::Cert(c) => {
                let Some(f) = finals.get(&id) else {
                    return Ok(NodeOut::Nothing);
                };
                let (kp, cp) = (paths(id, Part::Key), paths(id, Part::Cert));
                // An adopted CA's files are written byte for byte.
                // A token-held key has no path: its bytes are never asked for.
                let key_pem = |id: &str, k: &PrivateKey, paths: &[String]| {
                    if paths.is_empty() {
                        Ok(Zeroizing::new(Vec::new()))
                    } else {
                        key_pem(id, k)
                    }
                };
                let (key_bytes, cert_bytes) = match &f.adopted {
                    Some(a) => (
                        a.key_pem().cloned().ok_or_else(|| no_key(a))?,
                        Zeroizing::new(a.cert_pem().to_vec()),
                    ),
                    // A CA's trust file holds both generations during a rotation.
                    None => (
                        key_pem(&c.id, &f.key, &kp)?,
                        Zeroizing::new(if c.is_ca {
                            trust_pem(id, f)
                        } else {
                            cert_to_pem(f.cert_der()).into_bytes()
                        }),
                    ),
                };
                // Only bytes kpki encoded itself: an adopted file's embedded
                // public key was never checked against its scalar here.
                let key_sha256 =
                    (f.adopted.is_none() && !key_bytes.is_empty()).then(|| sha256_hex(&key_bytes));
                let key = Artefact {
                    paths: kp.clone(),
                    bytes: key_bytes,
                    mode: Mode::Secret,
                };
                let cert = Artefact {
                    paths: cp.clone(),
                    bytes: cert_bytes,
                    mode: Mode::Public,
                };
                // A signer's own copy: one certificate, and its key.
                let (skp, scp) = (paths(id, Part::SigningKey), paths(id, Part::SigningCert));
                let signing = if c.is_ca && !scp.is_empty() {
                    Some((
                        known(Artefact {
                            paths: skp.clone(),
                            bytes: key_pem(&c.id, &f.key, &skp)?,
                            mode: Mode::Secret,
                        }),
                        known(Artefact {
                            paths: scp.clone(),
                            bytes: Zeroizing::new(cert_to_pem(f.cert_der()).into_bytes()),
                            mode: Mode::Public,
                        }),
                    ))
                } else {
                    None
                };
                let key = (!kp.is_empty()).then(|| known(key));
                let cert = (!cp.is_empty()).then(|| known(cert));
                let mut files = cp;
                files.extend(kp);
                if c.is_ca {
                    files.extend(scp);
                    files.extend(skp);
                }
                NodeOut::Cert {
                    is_ca: c.is_ca,
                    signing,
                    key,
                    cert,
                    entry: ManifestEntry {
                        id: c.id.clone(),
                        kind: if c.is_ca { "ca" } else { "leaf" }.into(),
                        issuer: match c.issuer {
                            IssuerRef::Node(i) => g.id_of(i),
                            _ => c.id.clone(),
                        },
                        serial: f.parsed.serial_hex.clone(),
                        sha256: f.parsed.sha256_fingerprint(),
                        not_before: rfc3339(f.parsed.not_before),
                        not_after: rfc3339(f.parsed.not_after),
                        files,
                        key_sha256,
                    },
                }
            }
            Node::KeyPair(k) => {
                let Some(key) = pairs.get(&id) else {
                    return Ok(NodeOut::Nothing);
                };
                let public = key.public_key();
                let mut pub_pem = public.to_pem().map_err(|source| IssueError::Crypto {
                    id: k.id.clone(),
                    source,
                })?;
                // During a rotation the public-key file holds both keys.
                if let Some(extra) = existing.pair_extra(id) {
                    pub_pem.push_str(&extra.to_pem().map_err(|source| IssueError::Crypto {
                        id: k.id.clone(),
                        source,
                    })?);
                }
                let (pp, qp) = (paths(id, Part::PrivateKey), paths(id, Part::PublicKey));
                let key_bytes = key_pem(&k.id, key)?;
                let key_sha256 = Some(sha256_hex(&key_bytes));
                let private = known(Artefact {
                    paths: pp.clone(),
                    bytes: key_bytes,
                    mode: Mode::Secret,
                });
                let public_file = known(Artefact {
                    paths: qp.clone(),
                    bytes: Zeroizing::new(pub_pem.into_bytes()),
                    mode: Mode::Public,
                });
                let mut files = pp;
                files.extend(qp);
                NodeOut::Pair {
                    files: [private, public_file],
                    entry: ManifestEntry {
                        id: k.id.clone(),
                        kind: "keypair".into(),
                        sha256: sha256_hex(public.spki_der()),
                        files,
                        key_sha256,
                        ..Default::default()
                    },
                }
            }
            Node::Kubeconfig(k) => {
                let (Some(client), Some(ca)) = (finals.get(&k.client), finals.get(&k.ca)) else {
                    return Ok(NodeOut::Nothing);
                };
                let Some(entry) = layout.part(id, Part::Kubeconfig) else {
                    return Ok(NodeOut::Nothing);
                };
                // A dry run's stand-in client certificate, embedded: the
                // kubeconfig certainly changes (the real run embeds a new
                // certificate); when this run read each of its paths, it
                // is settled without rendering it.
                let embedded =
                    plan.spec.output.embed_certs || layout.part(k.client, Part::Cert).is_none();
                if client.stand_in && embedded {
                    let p = entry.output_paths();
                    let read: Vec<Option<Option<&Digest>>> =
                        p.iter().map(|x| existing.read_digest(x)).collect();
                    if read.iter().all(Option::is_some) {
                        return Ok(NodeOut::Kubeconfig {
                            id: k.id.clone(),
                            art: Item {
                                art: Artefact {
                                    paths: p,
                                    bytes: Zeroizing::new(Vec::new()),
                                    mode: Mode::Secret,
                                },
                                found: read
                                    .into_iter()
                                    .map(|r| r.map(|f| Ok(f.map(|_| false))))
                                    .collect(),
                            },
                        });
                    }
                }
                let material = |target: NodeId, part: Part, pem: Vec<u8>| match (
                    plan.spec.output.embed_certs,
                    layout.part(target, part),
                ) {
                    (false, Some(f)) => {
                        kubeconfig::Material::Path(relative(&entry.install_path, &f.install_path))
                    }
                    _ => kubeconfig::Material::Embedded(pem),
                };
                let client_key = key_pem(&k.id, &client.key)?;
                let user = g
                    .cert(k.client)
                    .map(|c| c.subject.common_name.clone())
                    .unwrap_or_default();
                let cfg = kubeconfig::Kubeconfig::single(
                    &k.cluster,
                    &k.server,
                    material(k.ca, Part::Cert, trust_pem(k.ca, ca)),
                    &user,
                    kubeconfig::Credential::ClientCert {
                        cert: material(
                            k.client,
                            Part::Cert,
                            cert_to_pem(client.cert_der()).into_bytes(),
                        ),
                        key: material(k.client, Part::Key, client_key.to_vec()),
                    },
                );
                let yaml = cfg.to_yaml().map_err(|e| IssueError::Crypto {
                    id: k.id.clone(),
                    source: CryptoError::Encode(e.to_string()),
                })?;
                let p = entry.output_paths();
                NodeOut::Kubeconfig {
                    id: k.id.clone(),
                    art: known(Artefact {
                        paths: p,
                        bytes: Zeroizing::new(yaml.into_bytes()),
                        mode: Mode::Secret,
                    }),
                }
            }
        })
    };
    // The files beyond the graph's nodes first (components.json, the
    // deployers' files...): compared at once, their bytes and the flags
    // are gone before the nodes' files are rendered. Errors stay in file
    // order: the nodes' first, then these.
    let extra = (|| {
        let flags = crate::outputs::component_flags_with(plan, membership);
        let token = if crate::outputs::uses_tls_bootstrap(&flags) {
            Some(bootstrap_token(plan, existing, now)?)
        } else {
            None
        };
        let trust: BTreeMap<NodeId, Vec<u8>> = finals
            .iter()
            .filter(|(id, f)| existing.trust_extra(**id).is_some() || !f.chain.is_empty())
            .map(|(id, f)| (*id, trust_pem(*id, f)))
            .collect();
        let mut extra = extras(
            plan,
            finals,
            pairs,
            &flags,
            token.as_ref(),
            &trust,
            (existing, dry_run),
        )?;
        drop(flags);
        if !plan.spec.etcd_members().is_empty() {
            extra.push(known_to(
                existing,
                Artefact {
                    paths: vec!["cluster/membership.md".into()],
                    bytes: Zeroizing::new(
                        crate::outputs::membership_markdown(membership).into_bytes(),
                    ),
                    mode: Mode::Public,
                },
                dry_run,
            ));
        }
        Ok::<_, IssueError>(compare(store, extra, dry_run))
    })();
    // Every node in parallel (PEM, kubeconfig YAML); a file that is what
    // this run read already is settled at once and its bytes dropped.
    let nodes: Vec<(NodeId, &Node)> = g.iter().collect();
    let outs: Vec<Result<NodeOut, IssueError>> =
        nodes.par_iter().map(|(id, n)| one(*id, n)).collect();
    // In node order: the error reported is the first one, as when serial.
    for out in outs {
        match out? {
            NodeOut::Nothing => {}
            NodeOut::Cert {
                is_ca,
                signing,
                key,
                cert,
                entry,
            } => {
                if let Some((k, c)) = signing {
                    keys_ca.push(k);
                    certs_ca.push(c);
                }
                let (ks, cs) = if is_ca {
                    (&mut keys_ca, &mut certs_ca)
                } else {
                    (&mut keys_leaf, &mut certs_leaf)
                };
                ks.extend(key);
                cs.extend(cert);
                manifest.entries.push(entry);
            }
            NodeOut::Pair { files, entry } => {
                pair_files.extend(files);
                manifest.entries.push(entry);
            }
            NodeOut::Kubeconfig { id, art } => {
                manifest.kubeconfigs.insert(id, art.art.paths.clone());
                kubeconfigs.push(art);
            }
        }
    }
    let mut items = Vec::new();
    items.extend(keys_ca);
    items.extend(certs_ca);
    items.extend(keys_leaf);
    items.extend(certs_leaf);
    items.extend(pair_files);
    items.extend(kubeconfigs);
    let mut items = compare(store, items, dry_run);
    items.extend(extra?);
    Ok(Rendered { items, manifest })
}

/// The manifest as an [`Item`], compared with the file. Made once every
/// other file is written and its bytes dropped (a fleet's manifest is
/// megabytes, held at the run's peak memory otherwise).
pub(crate) fn manifest_item(
    existing: &super::existing::Existing,
    store: &impl PkiStore,
    manifest: &Manifest,
    dry_run: bool,
) -> Result<Item, IssueError> {
    let item = json_item(existing, super::MANIFEST, manifest, dry_run)
        .map_err(|e| IssueError::Order(format!("manifest: {e}")))?;
    compare(store, vec![item], dry_run)
        .pop()
        .ok_or_else(|| IssueError::Order("manifest: not compared".into()))
}

/// The bootstrap token: the existing one while it is valid (it adopts an
/// expiration if it had none and the spec wants one), a fresh one when it
/// has expired or none exists.
fn bootstrap_token(
    plan: &Plan,
    existing: &super::existing::Existing,
    now: time::OffsetDateTime,
) -> Result<crate::outputs::BootstrapToken, IssueError> {
    let ttl = plan.spec.bootstrap.token_ttl;
    let deadline = ttl.and_then(|l| now.checked_add(l.duration()));
    match &existing.bootstrap_token {
        Some(t) if !t.expired(now) => {
            let mut t = t.clone();
            t.expires = if ttl.is_none() {
                None
            } else {
                t.expires.or(deadline)
            };
            Ok(t)
        }
        _ => {
            let mut t = crate::outputs::BootstrapToken::generate().map_err(|source| {
                IssueError::Crypto {
                    id: "bootstrap-token".into(),
                    source,
                }
            })?;
            t.expires = deadline;
            Ok(t)
        }
    }
}

/// components.json, the manifests, bootstrap-kubelet.conf, and the
/// deployers' files (kubeadm, systemd, Cluster API).
fn extras(
    plan: &Plan,
    finals: &BTreeMap<NodeId, Final>,
    pairs: &BTreeMap<NodeId, PrivateKey>,
    flags: &[crate::outputs::ComponentFlags],
    token: Option<&crate::outputs::BootstrapToken>,
    trust: &BTreeMap<NodeId, Vec<u8>>,
    (existing, dry_run): (&super::existing::Existing, bool),
) -> Result<Vec<Item>, IssueError> {
    let g = &plan.graph;
    let fail = |what: &str, e: String| IssueError::Crypto {
        id: what.to_owned(),
        source: CryptoError::Encode(e),
    };
    let mut out = Vec::new();
    let components = json_item(existing, "components.json", &flags, dry_run)
        .map_err(|e| fail("components.json", e.to_string()))?;
    for (name, value) in crate::outputs::manifests(plan, token) {
        let yaml = serde_yaml_ng::to_string(&value).map_err(|e| fail(&name, e.to_string()))?;
        out.push(Artefact {
            paths: vec![format!("cluster/manifests/{name}")],
            bytes: Zeroizing::new(yaml.into_bytes()),
            mode: Mode::Secret,
        });
    }
    // The CA kubelets verify the apiserver with: the kubelet kubeconfig's, or the apiserver cert's issuer.
    let ca = g
        .kubeconfigs()
        .find(|(_, k)| k.user == crate::k8s::KubeconfigUser::Kubelet)
        .map(|(_, k)| k.ca)
        .or_else(|| {
            g.bound(crate::k8s::Flag::ApiserverTlsCertFile)
                .first()
                .and_then(|(_, a)| g.issuer_of(*a))
        });
    if let Some(token) = token
        && let Some((ca_id, ca)) = ca.and_then(|c| finals.get(&c).map(|f| (c, f)))
    {
        let pem = trust
            .get(&ca_id)
            .cloned()
            .unwrap_or_else(|| cert_to_pem(ca.cert_der()).into_bytes());
        let cfg = kubeconfig::Kubeconfig::single(
            &plan.spec.cluster.name,
            &plan.spec.cluster.endpoint.url(),
            kubeconfig::Material::Embedded(pem),
            "tls-bootstrap-token-user",
            kubeconfig::Credential::Token(token.token()),
        );
        let yaml = cfg
            .to_yaml()
            .map_err(|e| fail("bootstrap-kubelet.conf", e.to_string()))?;
        let mut paths = vec![BOOTSTRAP_KUBECONFIG.to_owned()];
        // Kubelets without a certificate of their own bootstrap with it.
        for f in flags {
            if f.component == crate::k8s::Component::Kubelet
                && f.flags.contains_key("bootstrap-kubeconfig")
            {
                paths.push(format!(
                    "nodes/{}{}/bootstrap-kubelet.conf",
                    f.node, plan.profile.install_root
                ));
            }
        }
        out.push(Artefact {
            paths,
            bytes: Zeroizing::new(yaml.into_bytes()),
            mode: Mode::Secret,
        });
    }
    let deployers = crate::outputs::deployer_files(plan, flags, finals, pairs, token)
        .map_err(|e| fail("deployer files", e))?;
    out.extend(deployers.into_iter().map(|d| Artefact {
        paths: d.paths,
        bytes: d.bytes,
        mode: if d.secret { Mode::Secret } else { Mode::Public },
    }));
    let mut items = vec![components];
    items.extend(out.into_iter().map(|a| known_to(existing, a, dry_run)));
    Ok(items)
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    crate::crypto::hex(&super::existing::digest(b))
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn relative_paths_from_the_kubeconfig_dir() {
        assert_eq!(
            relative("/etc/kubernetes/admin.conf", "/etc/kubernetes/pki/ca.crt").to_str(),
            Some("pki/ca.crt")
        );
        assert_eq!(
            relative(
                "/etc/kubernetes/kubelet.conf",
                "/var/lib/kubelet/pki/kubelet-client.crt"
            )
            .to_str(),
            Some("../../var/lib/kubelet/pki/kubelet-client.crt")
        );
    }
}
