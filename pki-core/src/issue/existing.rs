//! What an earlier run left in the store, read once and judged against the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Final, IssueError, IssueOptions, RenewPolicy};
use crate::Plan;
use crate::crypto::{ParsedCert, PrivateKey, PublicKey, certs_from_pem, parse_certificate};
use crate::graph::{CertNode, Node, NodeId};
use crate::store::{Part, PkiStore};

pub(crate) struct Existing {
    keys: BTreeMap<NodeId, PrivateKey>,
    key_paths: BTreeMap<NodeId, String>,
    certs: BTreeMap<NodeId, (Arc<ParsedCert>, String)>,
    /// The bootstrap token of an earlier run (kept so re-runs change no byte).
    pub(crate) bootstrap_token: Option<crate::outputs::BootstrapToken>,
    /// Certificates whose key a killed run had already replaced (from the journal).
    interrupted: std::collections::BTreeSet<NodeId>,
    /// Ids whose key on disk is the one a killed run journalled: its
    /// replacement landed, what depends on it may not have.
    replaced: BTreeMap<NodeId, String>,
    /// CAs and keypairs a killed run journalled but whose new key never
    /// reached the disk: the replacement is still to do.
    pending: BTreeSet<NodeId>,
    /// Renewals recorded by earlier runs.
    pub(crate) renewals: Vec<super::artefacts::Renewal>,
    /// The etcd members the last issuance recorded (None: no manifest).
    pub(crate) etcd_members: Option<Vec<crate::outputs::EtcdMember>>,
    /// The last membership change the manifest recorded.
    pub(crate) etcd_change: Option<crate::outputs::MembershipChange>,
    /// The manifest's certificates: id -> (SHA-256 of the DER, issuer id).
    recorded: BTreeMap<String, (String, String)>,
    /// The manifest's key files: id -> SHA-256 of the bytes kpki wrote.
    recorded_keys: BTreeMap<String, String>,
    /// The rotation in progress (from the manifest).
    pub(crate) rotation: Option<super::artefacts::Rotation>,
    /// Finished rotations (from the manifest).
    pub(crate) rotations: Vec<super::artefacts::Rotation>,
    /// Rotating CAs: the other generation's certificate every trust anchor
    /// also holds (the new one after begin, the old one after switch).
    trust_extra: BTreeMap<NodeId, Vec<u8>>,
    /// Rotating keypairs: the other generation's public key.
    pair_extra: BTreeMap<NodeId, PublicKey>,
    /// Rotating CAs and keypairs whose new key signs from switch on.
    switched: BTreeSet<NodeId>,
    /// Rotating CAs whose key is token-held: the staged new certificate
    /// (its key is found in the token by [`Existing::attach_token_keys`]).
    staged_new: BTreeMap<NodeId, ParsedCert>,
    /// What [`Existing::load`] found at each output file it read: the
    /// SHA-256 of its bytes, or None when there was no such file. The run
    /// holds the directory lock, so the comparison of what it would write
    /// answers from these without reading the file a second time; a file
    /// edited between runs is still noticed (every run reads it once).
    read_digests: std::collections::HashMap<String, Option<Digest>>,
}

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

/// The SHA-256 of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// What a run takes from the manifest it finds: the fields of
/// [`super::artefacts::Manifest`] it uses, the others (each entry's files,
/// serial and dates: most of a fleet's 7.9 MB) skipped unparsed.
#[derive(serde::Deserialize)]
struct Recorded {
    entries: Vec<RecordedEntry>,
    #[serde(default)]
    renewals: Vec<super::artefacts::Renewal>,
    #[serde(default)]
    etcd_members: Vec<crate::outputs::EtcdMember>,
    #[serde(default)]
    etcd_change: Option<crate::outputs::MembershipChange>,
    #[serde(default)]
    rotation: Option<super::artefacts::Rotation>,
    #[serde(default)]
    rotations: Vec<super::artefacts::Rotation>,
}

/// What a run takes from a [`super::artefacts::ManifestEntry`].
#[derive(serde::Deserialize)]
struct RecordedEntry {
    id: String,
    issuer: String,
    sha256: String,
    #[serde(default)]
    key_sha256: Option<String>,
}

/// Where a rotation stages one generation of a CA or keypair:
/// `rotation/<id>.<old|new>.<crt|key>` (0700 directory, keys 0600).
pub(crate) fn staged_path(id: &str, generation: &str, ext: &str) -> String {
    format!("rotation/{id}.{generation}.{ext}")
}

/// How many kubeconfigs [`Existing::load`] reads at a time.
const KUBECONFIG_CHUNK: usize = 512;

fn bad(path: &str, message: impl Into<String>) -> IssueError {
    IssueError::Existing {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads a text file; the text is wiped from memory when dropped (it may be
/// a private key), also when it is not UTF-8.
fn read_text(
    store: &impl PkiStore,
    path: &str,
) -> Result<Option<zeroize::Zeroizing<String>>, IssueError> {
    let bytes = store
        .read(path)
        .map_err(|e| bad(path, format!("cannot read: {}", e.message)))?;
    as_text(path, bytes)
}

/// [`read_text`] of bytes read already.
/// What [`PkiStore::read_many`] gave for `path`, as text, its digest kept
/// in `digests` for the comparison at the end of the run. The buffer moves
/// out whole: no unwiped copy is left.
fn take_read(
    digests: &mut std::collections::HashMap<String, Option<Digest>>,
    path: &str,
    read: Option<Result<Option<zeroize::Zeroizing<Vec<u8>>>, crate::store::StoreError>>,
) -> Result<Option<zeroize::Zeroizing<String>>, IssueError> {
    let bytes = read
        .ok_or_else(|| bad(path, "was not read"))?
        .map_err(|e| bad(path, format!("cannot read: {}", e.message)))?
        .map(|mut b| std::mem::take(&mut *b));
    digests.insert(path.to_owned(), bytes.as_deref().map(digest));
    as_text(path, bytes)
}

fn as_text(
    path: &str,
    bytes: Option<Vec<u8>>,
) -> Result<Option<zeroize::Zeroizing<String>>, IssueError> {
    bytes
        .map(|b| {
            String::from_utf8(b)
                .map(zeroize::Zeroizing::new)
                .map_err(|e| {
                    drop(zeroize::Zeroizing::new(e.into_bytes()));
                    bad(path, "is not a PEM text file")
                })
        })
        .transpose()
}

fn parse_key(path: &str, text: &str) -> Result<PrivateKey, IssueError> {
    PrivateKey::from_pem(text).map_err(|e| bad(path, format!("is not a usable private key ({e})")))
}

/// Parses a key file; `as_written` (its bytes are the ones the manifest
/// recorded) lets an EC key take its public key from the file. A keypair's
/// public key (`pair_sha`, a keypair's manifest digest) must then also have
/// the digest the manifest recorded. Anything else is parsed in full.
fn parse_key_as(
    path: &str,
    text: &str,
    as_written: bool,
    pair_sha: Option<&str>,
) -> Result<PrivateKey, IssueError> {
    if !as_written {
        return parse_key(path, text);
    }
    match PrivateKey::from_pem_as_written(text) {
        Ok(k)
            if pair_sha.is_none_or(|sha| {
                sha == super::artefacts::sha256_hex(k.public_key().spki_der())
            }) =>
        {
            Ok(k)
        }
        _ => parse_key(path, text),
    }
}

fn parse_cert(path: &str, text: &str) -> Result<ParsedCert, IssueError> {
    let ders =
        certs_from_pem(text).map_err(|e| bad(path, format!("is not a PEM certificate ({e})")))?;
    let der = ders
        .first()
        .ok_or_else(|| bad(path, "holds no certificate"))?;
    parse_certificate(der).map_err(|e| bad(path, format!("is not a valid certificate ({e})")))
}

impl Existing {
    pub(crate) fn load(plan: &Plan, store: &impl PkiStore) -> Result<Self, IssueError> {
        let mut e = Self {
            keys: BTreeMap::new(),
            key_paths: BTreeMap::new(),
            certs: BTreeMap::new(),
            bootstrap_token: None,
            renewals: Vec::new(),
            etcd_members: None,
            etcd_change: None,
            interrupted: Default::default(),
            replaced: BTreeMap::new(),
            pending: BTreeSet::new(),
            recorded: BTreeMap::new(),
            recorded_keys: BTreeMap::new(),
            rotation: None,
            rotations: Vec::new(),
            trust_extra: BTreeMap::new(),
            pair_extra: BTreeMap::new(),
            switched: BTreeSet::new(),
            staged_new: BTreeMap::new(),
            read_digests: std::collections::HashMap::new(),
        };
        let g = &plan.graph;
        let first = |id: NodeId, part: Part| {
            plan.layout
                .part(id, part)
                .and_then(|f| f.output_paths().into_iter().next())
        };
        // The manifest first: its digests say which key files are byte for
        // byte what kpki wrote.
        let manifest = store.read(super::MANIFEST);
        if let Ok(found) = &manifest {
            e.read_digests
                .insert(super::MANIFEST.to_owned(), found.as_deref().map(digest));
        }
        if let Ok(Some(bytes)) = manifest
            && let Ok(m) = serde_json::from_slice::<Recorded>(&bytes)
        {
            e.renewals = m.renewals;
            e.etcd_members = Some(m.etcd_members);
            e.etcd_change = m.etcd_change;
            e.rotation = m.rotation;
            e.rotations = m.rotations;
            for x in m.entries {
                if let Some(k) = x.key_sha256 {
                    e.recorded_keys.insert(x.id.clone(), k);
                }
                e.recorded.insert(x.id, (x.sha256, x.issuer));
            }
        }
        // Read every key and certificate (in order), then parse them in
        // parallel: deriving each EC public key is a scalar multiplication.
        // A key file whose bytes are the ones the manifest recorded (and,
        // for a certificate's key, next to the certificate the manifest
        // recorded) takes its public key from the file instead; any other
        // key file is parsed in full.
        type Text = Option<(String, zeroize::Zeroizing<String>)>;
        let mut nodes = Vec::new();
        for (id, n) in g.iter() {
            match n {
                Node::Cert(_) => {
                    nodes.push((id, true, first(id, Part::Key), first(id, Part::Cert)))
                }
                Node::KeyPair(_) => nodes.push((id, false, first(id, Part::PrivateKey), None)),
                Node::Kubeconfig(_) => {}
            }
        }
        // Read in parallel where the store can (opening each file by path is
        // most of a no-op run's system time); errors in order, as when serial.
        let paths: Vec<&str> = nodes
            .iter()
            .flat_map(|(_, _, k, c)| [k, c])
            .flatten()
            .map(String::as_str)
            .collect();
        let mut read = store.read_many(&paths).into_iter();
        let read_digests = &mut e.read_digests;
        let mut next = |p: Option<String>| -> Result<Text, IssueError> {
            let Some(p) = p else { return Ok(None) };
            Ok(take_read(read_digests, &p, read.next())?.map(|t| (p, t)))
        };
        let mut texts: Vec<(NodeId, bool, Text, Text)> = Vec::new();
        for (id, has_cert, k, c) in nodes {
            let key = next(k)?;
            let cert = next(c)?;
            texts.push((id, has_cert, key, cert));
        }
        use rayon::prelude::*;
        type Parsed = (
            NodeId,
            Option<(String, PrivateKey)>,
            Option<(String, ParsedCert)>,
        );
        let recorded = &e.recorded;
        let recorded_keys = &e.recorded_keys;
        let read_digests = &e.read_digests;
        let parsed: Vec<Parsed> = texts
            .into_par_iter()
            .map(|(id, has_cert, key, cert)| {
                let name = g.id_of(id);
                // Errors in file order (key, then certificate), as when serial.
                let cert = cert.map(|(p, t)| parse_cert(&p, &t).map(|c| (p, c)));
                let key = match key {
                    Some((p, t)) => {
                        // (The digest of the bytes read, taken when read.)
                        let as_written = recorded_keys
                            .get(&name)
                            .zip(read_digests.get(&p).copied().flatten())
                            .is_some_and(|(h, d)| *h == crate::crypto::hex(&d))
                            && match (&cert, recorded.get(&name)) {
                                (Some(Ok((_, c))), Some((sha, _))) => {
                                    *sha == c.sha256_fingerprint()
                                }
                                (None, Some(_)) => !has_cert,
                                _ => false,
                            };
                        let pair_sha = recorded
                            .get(&name)
                            .filter(|_| !has_cert)
                            .map(|(sha, _)| sha.as_str());
                        Some(parse_key_as(&p, &t, as_written, pair_sha).map(|k| (p, k)))
                    }
                    None => None,
                };
                Ok((id, key.transpose()?, cert.transpose()?))
            })
            .collect::<Vec<Result<_, IssueError>>>()
            // In order: the error reported is the first one, as when serial.
            .into_iter()
            .collect::<Result<_, _>>()?;
        for (id, key, cert) in parsed {
            if let Some((p, k)) = key {
                e.keys.insert(id, k);
                e.key_paths.insert(id, p);
            }
            if let Some((p, c)) = cert {
                e.certs.insert(id, (Arc::new(c), p));
            }
        }
        // Certificates that live only inside kubeconfigs (kubeadm's admin.conf...).
        // Every kubeconfig is read (in parallel where the store can, a
        // bounded number at a time) and its digest kept for the comparison
        // at the end of the run; only those whose client certificate has no
        // file of its own are parsed.
        let kcs: Vec<(NodeId, String)> = g
            .kubeconfigs()
            .filter_map(|(kid, kc)| first(kid, Part::Kubeconfig).map(|p| (kc.client, p)))
            .collect();
        for chunk in kcs.chunks(KUBECONFIG_CHUNK) {
            let paths: Vec<&str> = chunk.iter().map(|(_, p)| p.as_str()).collect();
            let read = store.read_many(&paths);
            if read.len() != chunk.len() {
                return Err(bad(
                    paths.first().copied().unwrap_or_default(),
                    "was not read",
                ));
            }
            for ((client, path), bytes) in chunk.iter().zip(read) {
                let Some(text) = take_read(&mut e.read_digests, path, Some(bytes))? else {
                    continue;
                };
                if e.certs.contains_key(client) {
                    continue;
                }
                e.kubeconfig_credential(*client, path, &text)?;
            }
        }
        if let Some(text) = read_text(store, super::artefacts::BOOTSTRAP_KUBECONFIG)?
            && let Ok(cfg) = kubeconfig::Kubeconfig::from_yaml(&text)
            && let Some((_, _, user)) = cfg.current()
            && let kubeconfig::Credential::Token(t) = &user.user
        {
            e.bootstrap_token = crate::outputs::BootstrapToken::parse(t).map(|mut t| {
                // Its expiration lives in the Secret kpki wrote beside it.
                let secret = format!(
                    "cluster/manifests/{}",
                    crate::outputs::BOOTSTRAP_TOKEN_MANIFEST
                );
                t.expires = read_text(store, &secret)
                    .ok()
                    .flatten()
                    .and_then(|y| crate::outputs::BootstrapToken::expiration_of_manifest(&y));
                t
            });
        }
        e.load_rotation(plan, store)?;
        // A run killed while re-keying leaves new keys beside old certificates;
        // its journal names those keys, so they are finished, not refused.
        let journal: BTreeMap<String, String> = match store.read(super::JOURNAL) {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        for (name, hash) in &journal {
            let Some(id) = g.find(name) else { continue };
            let Some(k) = e.keys.get(&id) else { continue };
            if super::key_hash(k) == *hash {
                e.replaced.insert(id, hash.clone());
            } else if matches!(g.node(id), Some(Node::KeyPair(_)))
                || matches!(g.node(id), Some(Node::Cert(c)) if c.is_ca)
            {
                e.pending.insert(id);
            }
        }
        // A certificate next to its own key must match it: which one is right is unknowable.
        for (id, (cert, path)) in &e.certs {
            if let Some(k) = e.keys.get(id)
                && !k.matches(&cert.public_key)
            {
                if journal.get(&g.id_of(*id)) == Some(&super::key_hash(k)) {
                    e.interrupted.insert(*id);
                    continue;
                }
                let kp = e.key_paths.get(id).cloned().unwrap_or_default();
                return Err(bad(
                    path,
                    format!(
                        "does not match its private key {kp}; restore the right pair or remove both"
                    ),
                ));
            }
        }
        // Keypairs: the public key on disk must match the private key.
        for (id, n) in g.iter() {
            if let Node::KeyPair(_) = n
                && let (Some(k), Some(p)) = (e.keys.get(&id), first(id, Part::PublicKey))
                && let Some(t) = read_text(store, &p)?
            {
                let public = PublicKey::from_pem(&t)
                    .map_err(|x| bad(&p, format!("is not a public key ({x})")))?;
                // A killed run may have replaced the private key but not yet
                // the public one: the journal says so, and this run rewrites it.
                if public != k.public_key()
                    && !e.replaced.contains_key(&id)
                    && !e.pair_extra.contains_key(&id)
                    && !e.switched.contains(&id)
                {
                    return Err(bad(&p, "does not match the private key next to it"));
                }
            }
        }
        Ok(e)
    }

    /// Takes the client certificate and key a kubeconfig embeds (a
    /// certificate with no file of its own: kubeadm's admin.conf...).
    fn kubeconfig_credential(
        &mut self,
        client: NodeId,
        path: &str,
        text: &str,
    ) -> Result<(), IssueError> {
        let e = self;
        let cfg = kubeconfig::Kubeconfig::from_yaml(text)
            .map_err(|x| bad(path, format!("is not a valid kubeconfig ({x})")))?;
        let Some((_, _, user)) = cfg.current() else {
            return Ok(());
        };
        if let kubeconfig::Credential::ClientCert {
            cert: kubeconfig::Material::Embedded(c),
            key: kubeconfig::Material::Embedded(k),
        } = &user.user
        {
            let ct = String::from_utf8(c.clone())
                .map_err(|_| bad(path, "client-certificate-data is not PEM"))?;
            let kt = zeroize::Zeroizing::new(
                String::from_utf8(k.clone())
                    .map_err(|_| bad(path, "client-key-data is not PEM"))?,
            );
            e.certs
                .insert(client, (Arc::new(parse_cert(path, &ct)?), path.to_owned()));
            e.keys.entry(client).or_insert(parse_key(path, &kt)?);
            e.key_paths.entry(client).or_insert(path.to_owned());
        }
        Ok(())
    }

    /// Reads the staged generations of a rotation in progress. From switch
    /// on, the new key and certificate are the CA's own whatever a killed
    /// run left in its files; until finish, the other generation stays in
    /// every trust anchor.
    fn load_rotation(&mut self, plan: &Plan, store: &impl PkiStore) -> Result<(), IssueError> {
        use super::artefacts::RotationPhase;
        let Some(r) = self.rotation.clone() else {
            return Ok(());
        };
        let g = &plan.graph;
        let cert_at = |p: &str| -> Result<Option<ParsedCert>, IssueError> {
            read_text(store, p)?.map(|t| parse_cert(p, &t)).transpose()
        };
        let key_at = |p: &str| -> Result<Option<PrivateKey>, IssueError> {
            read_text(store, p)?.map(|t| parse_key(p, &t)).transpose()
        };
        let switched = r.phase >= RotationPhase::Switch;
        for name in &r.cas {
            let Some(id) = g.find(name) else { continue };
            let old = cert_at(&staged_path(name, "old", "crt"))?;
            let new = cert_at(&staged_path(name, "new", "crt"))?;
            let new_key = key_at(&staged_path(name, "new", "key"))?;
            if plan.token_held(id)
                && let Some(n) = &new
            {
                self.staged_new.insert(id, n.clone());
            }
            if switched {
                if let (Some(c), Some(k)) = (new, new_key) {
                    let path = self
                        .certs
                        .get(&id)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    self.certs.insert(id, (Arc::new(c), path));
                    self.keys.insert(id, k);
                    self.switched.insert(id);
                }
                if r.phase == RotationPhase::Switch
                    && let Some(o) = old
                {
                    self.trust_extra.insert(id, o.der);
                }
            } else if let Some(n) = new {
                self.trust_extra.insert(id, n.der);
            }
        }
        for name in &r.keypairs {
            let Some(id) = g.find(name) else { continue };
            let old = key_at(&staged_path(name, "old", "key"))?;
            let new = key_at(&staged_path(name, "new", "key"))?;
            if switched {
                if let Some(k) = new {
                    self.keys.insert(id, k);
                    self.switched.insert(id);
                }
                if r.phase == RotationPhase::Switch
                    && let Some(o) = old
                {
                    self.pair_extra.insert(id, o.public_key());
                }
            } else if let Some(n) = new {
                self.pair_extra.insert(id, n.public_key());
            }
        }
        Ok(())
    }

    fn rotation_switched(&self) -> bool {
        self.rotation
            .as_ref()
            .is_some_and(|r| r.phase >= super::artefacts::RotationPhase::Switch)
    }

    /// The other generation's certificate (DER) a rotating CA's trust anchors also hold.
    pub(crate) fn trust_extra(&self, id: NodeId) -> Option<&[u8]> {
        self.trust_extra.get(&id).map(Vec::as_slice)
    }

    /// The other generation's public key a rotating keypair's public-key file also holds.
    pub(crate) fn pair_extra(&self, id: NodeId) -> Option<&PublicKey> {
        self.pair_extra.get(&id)
    }

    /// Whether a rotating CA's new key signs (switch and later): what the
    /// old one signed is re-issued.
    pub(crate) fn switched(&self, id: NodeId) -> bool {
        self.switched.contains(&id)
    }

    /// `rotate switch --new-keys`: whether this leaf still needs its new key
    /// (its certificate on disk is not yet signed by its CA's new key).
    pub(crate) fn rotation_rekey(&self, id: NodeId, c: &CertNode) -> bool {
        let Some(r) = &self.rotation else {
            return false;
        };
        let crate::graph::IssuerRef::Node(p) = c.issuer else {
            return false;
        };
        r.new_keys
            && r.phase == super::artefacts::RotationPhase::Switch
            && !c.is_ca
            && self.switched.contains(&p)
            && match (self.certs.get(&id), self.keys.get(&p)) {
                (Some((cert, _)), Some(k)) => !cert.verify_signed_by(&k.public_key()),
                _ => false,
            }
    }

    /// Whether the key on disk is one a killed run journalled (its
    /// replacement landed; certificates it signs may still be old).
    pub(crate) fn replaced(&self, id: NodeId) -> bool {
        self.replaced.contains_key(&id)
    }

    /// Whether a killed run was replacing this CA or keypair key and the new
    /// key never reached the disk: this run replaces it.
    pub(crate) fn pending(&self, id: NodeId) -> bool {
        self.pending.contains(&id)
    }

    /// The journal entries (graph id -> key hash) whose keys are on disk:
    /// kept in this run's journal until the run completes.
    pub(crate) fn landed_journal(&self, g: &crate::graph::CertGraph) -> BTreeMap<String, String> {
        self.replaced
            .iter()
            .map(|(id, h)| (g.id_of(*id), h.clone()))
            .collect()
    }

    /// Takes the keys of token-held CAs from the token: for each, the
    /// generation whose public key its certificate holds (the newest one
    /// when there is no certificate yet). A certificate whose key is not in
    /// the token is refused: kpki never imports a key into a token.
    pub(crate) fn attach_token_keys(
        &mut self,
        plan: &Plan,
        token: &std::sync::Arc<crate::crypto::Token>,
    ) -> Result<(), IssueError> {
        let g = &plan.graph;
        let ids: Vec<NodeId> = g
            .certs()
            .filter(|(id, _)| plan.token_held(*id))
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            let name = g.id_of(id);
            let keys = token.keys_of(&name).map_err(|source| IssueError::Crypto {
                id: name.clone(),
                source,
            })?;
            // During a rotation, the staged new certificate names the new key.
            let staged_new = self.staged_new.get(&id).cloned();
            if let Some(nc) = &staged_new
                && let Some(k) = keys.iter().find(|k| k.matches(&nc.public_key))
                && self.rotation_switched()
            {
                let path = self
                    .certs
                    .get(&id)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                self.certs.insert(id, (Arc::new(nc.clone()), path));
                self.keys.insert(id, k.duplicate());
                self.switched.insert(id);
                continue;
            }
            let chosen = match self.certs.get(&id) {
                Some((cert, path)) => match keys.iter().find(|k| k.matches(&cert.public_key)) {
                    Some(k) => k.duplicate(),
                    None => {
                        return Err(bad(
                            path,
                            format!(
                                "no key in PKCS#11 token {:?} matches it (looked for {name} and {name}#N); kpki never imports a key into a token: restore the token, or remove this CA's files to have kpki generate its key in the token (and re-issue what it signed)",
                                token.label()
                            ),
                        ));
                    }
                },
                None => match keys.last() {
                    Some(k) => k.duplicate(),
                    None => continue,
                },
            };
            self.keys.insert(id, chosen);
        }
        Ok(())
    }

    /// What this run found at `path` when it read it (None: not read here;
    /// Some(None): there was no such file; else the digest of its bytes).
    pub(crate) fn read_digest(&self, path: &str) -> Option<Option<&Digest>> {
        self.read_digests.get(path).map(Option::as_ref)
    }

    pub(crate) fn key(&self, id: NodeId) -> Option<&PrivateKey> {
        self.keys.get(&id)
    }

    pub(crate) fn key_path(&self, id: NodeId) -> Option<String> {
        self.key_paths.get(&id).cloned()
    }

    pub(crate) fn cert(&self, id: NodeId) -> Option<&ParsedCert> {
        self.certs.get(&id).map(|(c, _)| &**c)
    }

    /// Drops the certificates and keys read from disk once every
    /// certificate is settled (kept ones live on in their [`Final`]).
    pub(crate) fn forget_parsed(&mut self) {
        self.certs = BTreeMap::new();
        self.keys = BTreeMap::new();
        self.staged_new = BTreeMap::new();
    }

    pub(crate) fn take_key(&mut self, id: NodeId) -> Option<PrivateKey> {
        self.keys.remove(&id)
    }

    pub(crate) fn final_of(&self, id: NodeId, key: PrivateKey) -> Result<Final, IssueError> {
        let (parsed, _) = self
            .certs
            .get(&id)
            .ok_or_else(|| IssueError::Order("kept a certificate that does not exist".into()))?;
        Ok(Final {
            key,
            parsed: Arc::clone(parsed),
            adopted: None,
            chain: Vec::new(),
            stand_in: false,
        })
    }

    /// A dry run's stand-in for a leaf it would re-issue, never signed nor
    /// written: the certificate on disk with the last byte of its signature
    /// changed. Like the certificate the real run would sign (a new random
    /// serial), it differs from the file on disk and from the manifest's
    /// digest, so its certificate file, every file embedding it and the
    /// manifest are reported changed, as the real run changes them.
    pub(crate) fn stand_in(&self, id: NodeId, key: PrivateKey) -> Result<Final, IssueError> {
        let (parsed, _) = self.certs.get(&id).ok_or_else(|| {
            IssueError::Order("a stand-in for a certificate that does not exist".into())
        })?;
        let mut parsed = ParsedCert::clone(parsed);
        if let Some(last) = parsed.der.last_mut() {
            *last ^= 0xff;
        }
        Ok(Final {
            key,
            parsed: Arc::new(parsed),
            adopted: None,
            chain: Vec::new(),
            stand_in: true,
        })
    }

    /// Whether the certificate and its CA certificate are byte for byte the
    /// ones the manifest recorded (their DER digests match): an earlier run
    /// issued or checked that signature, so it need not be verified again.
    /// A certificate or CA edited on disk has another digest and is verified.
    fn signed_as_recorded(&self, id: &str, cert: &ParsedCert, parent: &Final) -> bool {
        let Some((sha, issuer)) = self.recorded.get(id) else {
            return false;
        };
        let Some((issuer_sha, _)) = self.recorded.get(issuer) else {
            return false;
        };
        *sha == cert.sha256_fingerprint() && *issuer_sha == parent.parsed.sha256_fingerprint()
    }

    /// Why the certificate must be (re)issued, or None to keep it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn judge(
        &self,
        id: NodeId,
        c: &CertNode,
        key: &PrivateKey,
        fresh_key: bool,
        parent: Option<&Final>,
        parent_changed: bool,
        parent_fresh_key: bool,
        opts: &IssueOptions,
    ) -> Result<Option<String>, IssueError> {
        let Some((cert, path)) = self.certs.get(&id) else {
            return Ok(Some("no certificate yet".into()));
        };
        if !key.matches(&cert.public_key) {
            return if fresh_key || self.interrupted.contains(&id) {
                Ok(Some("new key".into()))
            } else {
                Err(bad(path, "does not match its key"))
            };
        }
        // A CA key made in this run signed nothing on disk: no need to try.
        if parent.is_some() && parent_changed && parent_fresh_key {
            return Ok(Some("its CA changed".into()));
        }
        if let Some(p) = parent
            && !self.signed_as_recorded(&c.id, cert, p)
            && !cert.verify_signed_by(&p.key.public_key())
        {
            if parent_changed {
                return Ok(Some("its CA changed".into()));
            }
            return Err(bad(
                path,
                "is not signed by the CA the plan names for it; remove it to have kpki issue a new one",
            ));
        }
        // Same key but a new CA certificate (e.g. a new subject): the issuer
        // name must follow, or verifiers cannot build the chain.
        if let Some(p) = parent
            && cert.issuer != p.parsed.subject
        {
            return Ok(Some("its CA certificate changed".into()));
        }
        let now = opts.now;
        let reason = if cert.not_after <= now {
            Some("expired".to_owned())
        } else if cert.subject != c.subject {
            Some(format!(
                "subject changed (was CN={})",
                cert.subject.common_name
            ))
        } else if cert.is_ca != Some(c.is_ca)
            || cert.path_len != c.usage.path_len.filter(|_| c.is_ca)
        {
            Some("basic constraints changed".into())
        } else if cert.key_usage != c.usage.key {
            Some("key usage changed".into())
        } else if cert.ext_key_usage.iter().collect::<BTreeSet<_>>() != c.usage.ext.iter().collect()
        {
            Some("extended key usage changed".into())
        } else if cert
            .dns_sans
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
            != c.sans.dns.iter().map(|d| d.to_string()).collect()
            || cert.ip_sans.iter().collect::<BTreeSet<_>>() != c.sans.ip.iter().collect()
        {
            Some("SANs changed".into())
        } else if parent.is_some_and(|p| cert.not_after > p.parsed.not_after) {
            Some("outlives its CA".into())
        } else {
            match opts.renew {
                RenewPolicy::Within { window, .. }
                    if !c.is_ca && cert.not_after <= now + window =>
                {
                    Some(format!("expires {} (renew window)", cert.not_after.date()))
                }
                _ => None,
            }
        };
        Ok(reason)
    }
}
