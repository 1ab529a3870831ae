//! Issuance: from a checked plan to keys, certificates, kubeconfigs and a
//! manifest in a [`PkiStore`]. Existing valid artefacts are kept (a re-run
//! changes no byte); what the spec changed is re-issued under the same CA
//! and, where possible, with the same key; a CA key is never replaced
//! unless the caller asks. Independent keys are generated in parallel.

mod artefacts;
mod existing;
mod external;
mod rotate;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::Plan;
use crate::crypto::{
    CertParams, CryptoError, CsrParams, ParsedCert, PrivateKey, Signer, parse_certificate,
    try_random_serial,
};
use crate::graph::{CertNode, IssuerRef, Node, NodeId, issuance_order};
use crate::store::{PkiStore, StoreError};
use crate::x509::KeyAlgorithm;
use existing::Existing;

pub use artefacts::{Artefact, Manifest, ManifestEntry, Renewal, Rotation, RotationPhase};
pub use external::{
    CsrReport, ImportError, ImportReport, Refusal, csr, csr_path, import, imported_path, waiting,
};
pub use rotate::{Restart, RotateRequest, RotationStatus, rotate, rotation_status};

/// How to issue.
#[derive(Clone)]
pub struct IssueOptions {
    /// The issuance time (notBefore is backdated 5 minutes from it).
    pub now: time::OffsetDateTime,
    /// Replace existing CA keys (and so every certificate). Off by default.
    pub replace_ca_keys: bool,
    /// Compute everything, write nothing.
    pub dry_run: bool,
    /// Threads for key generation (None: all cores).
    pub jobs: Option<usize>,
    /// Re-issue leaves even when they match the plan (renew).
    pub renew: RenewPolicy,
    /// The crypto backend (default: pure-Rust [`RustCrypto`](crate::RustCrypto)).
    pub backend: std::sync::Arc<dyn crate::crypto::CryptoBackend>,
    /// Called as keys are generated (done, total) and once before files are written.
    pub progress: Option<std::sync::Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl std::fmt::Debug for IssueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOptions")
            .field("now", &self.now)
            .field("replace_ca_keys", &self.replace_ca_keys)
            .field("dry_run", &self.dry_run)
            .field("jobs", &self.jobs)
            .field("renew", &self.renew)
            .field("backend", &self.backend.name())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for IssueOptions {
    fn default() -> Self {
        Self {
            now: time::OffsetDateTime::now_utc(),
            replace_ca_keys: false,
            dry_run: false,
            jobs: None,
            renew: RenewPolicy::Never,
            backend: std::sync::Arc::new(crate::crypto::RustCrypto),
            progress: None,
        }
    }
}

/// Progress of an issuance, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `done` of `total` keys generated.
    Keys {
        /// Generated so far.
        done: usize,
        /// To generate.
        total: usize,
    },
    /// About to write this many files (the manifest, written after them,
    /// aside).
    Writing(usize),
}

/// Which valid leaves to re-issue anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewPolicy {
    /// Keep every leaf that matches the plan.
    Never,
    /// Re-issue leaves expiring before now + this (keeping keys unless `new_keys`).
    Within {
        /// The window.
        window: time::Duration,
        /// Generate new leaf keys.
        new_keys: bool,
    },
}

/// Issuance failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The plan has error findings; nothing was written.
    #[error("the plan has {0} error finding(s); run `kpki plan` and fix them first")]
    PlanHasErrors(usize),
    /// An existing file is corrupt or contradicts the plan; nothing was written.
    #[error("{path}: {message}")]
    Existing {
        /// Output-relative path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation or signing failed.
    #[error("{id}: {source}")]
    Crypto {
        /// The graph node.
        id: String,
        /// The error.
        source: CryptoError,
    },
    /// The signing graph cannot be ordered (S001/S002).
    #[error("cannot order issuance: {0}")]
    Order(String),
    /// A rotation phase run out of order, or a rotation request that names
    /// nothing rotatable; nothing was written.
    #[error("{0}")]
    Rotation(String),
    /// An etcd membership change etcd cannot make in one step (M001);
    /// nothing was written.
    #[error("M001: {0}; nothing was written")]
    Membership(String),
    /// The PKCS#11 token of `[ca_keys]` cannot be used (module, token
    /// label, PIN); nothing was written.
    #[error("{0}; nothing was written")]
    Token(String),
    /// `[root] external = true` and these top CAs have no certificate from
    /// the external root yet (X002); nothing was written.
    #[error("X002: {} wait(s) for a certificate from the external root (`kpki csr`, then `kpki import`); nothing was written", .0.join(", "))]
    Waiting(Vec<String>),
}

/// What happened to one certificate or keypair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Kept as it was.
    Kept,
    /// Issued for the first time.
    Issued,
    /// Re-issued (reason given), keeping the key.
    Reissued(String),
    /// Re-issued with a new key (reason given).
    Rekeyed(String),
    /// An `[[existing_ca]]` written from its files (the file it came from).
    Adopted(String),
}

/// What happened to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileChange {
    /// It did not exist.
    Created,
    /// Its bytes changed.
    Updated,
    /// Byte-identical.
    Unchanged,
}

/// The outcome of one issuance.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IssueReport {
    /// Per certificate / keypair id.
    pub actions: Vec<(String, Action)>,
    /// Per output-relative path.
    pub files: Vec<(String, FileChange)>,
    /// The manifest written.
    #[serde(skip)]
    pub manifest: Manifest,
    /// The etcd membership change and its steps.
    pub membership: crate::outputs::MembershipChange,
}

impl IssueReport {
    /// How many files were created or updated.
    pub fn changed_files(&self) -> usize {
        self.files
            .iter()
            .filter(|(_, c)| *c != FileChange::Unchanged)
            .count()
    }
    /// The action taken for an id.
    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|(i, _)| i == id).map(|(_, a)| a)
    }
}

/// A certificate and key as issued or kept.
pub(crate) struct Final {
    pub(crate) key: PrivateKey,
    /// The certificate (shared with what [`Existing`] parsed when kept).
    pub(crate) parsed: std::sync::Arc<ParsedCert>,
    /// An adopted CA: its files are written byte for byte.
    pub(crate) adopted: Option<crate::ExistingCa>,
    /// A CA signed by an external root: the certificates above it, up to
    /// the root, which its trust files hold after it.
    pub(crate) chain: Vec<Vec<u8>>,
    /// A dry run's stand-in for a leaf it would re-issue (never signed):
    /// every file embedding it certainly changes.
    pub(crate) stand_in: bool,
}

impl Final {
    /// The certificate, DER.
    pub(crate) fn cert_der(&self) -> &[u8] {
        &self.parsed.der
    }
}

/// Issues a plan into a store.
pub fn issue(
    plan: &Plan,
    store: &mut impl PkiStore,
    opts: &IssueOptions,
) -> Result<IssueReport, IssueError> {
    let (errors, _, _) = plan.report.counts();
    if errors > 0 {
        return Err(IssueError::PlanHasErrors(errors));
    }
    let g = &plan.graph;
    let order = issuance_order(g).map_err(|stuck| {
        IssueError::Order(
            stuck
                .iter()
                .map(|i| g.id_of(*i))
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let token = open_token(plan)?;
    let mut existing = Existing::load(plan, store)?;
    if let Some(t) = &token {
        existing.attach_token_keys(plan, t)?;
    }
    let mut imported = external::load(plan, store)?;
    let waiting: Vec<String> = external::top_cas(plan)
        .into_iter()
        .filter(|(id, _)| !imported.contains_key(id))
        .map(|(_, c)| c.id.clone())
        .collect();
    if !waiting.is_empty() {
        return Err(IssueError::Waiting(waiting));
    }
    if opts.replace_ca_keys && existing.rotation.is_some() {
        return Err(IssueError::Rotation(
            "a CA rotation is in progress (`kpki rotate status`); finish it before --replace-ca-keys"
                .into(),
        ));
    }
    // etcd membership against the members the last issuance recorded: a
    // change etcd cannot make in one step stops here, before anything is written.
    let mut membership = crate::outputs::etcd_membership(plan, existing.etcd_members.as_deref());
    if !membership.refusals.is_empty() {
        return Err(IssueError::Membership(membership.refusals.join("; ")));
    }
    membership.carry(existing.etcd_change.as_ref());

    // Decide, per certificate, whether its key is kept or generated.
    let mut need_key: Vec<(NodeId, KeyAlgorithm)> = Vec::new();
    for &id in &order {
        match g.node(id) {
            // An adopted CA is used as it is: never a new key.
            Some(Node::Cert(c)) if c.is_ca && plan.existing_ca(id).is_some() => {}
            // A CA signed by the external root keeps the key `kpki csr` made.
            Some(Node::Cert(_)) if imported.contains_key(&id) => {}
            Some(Node::Cert(c)) => {
                let alg = algorithm(c)?;
                let keep = existing.key(id).filter(|k| k.algorithm() == alg);
                let renew_due = match opts.renew {
                    RenewPolicy::Within {
                        window,
                        new_keys: true,
                    } => existing
                        .cert(id)
                        .is_none_or(|x| x.not_after <= opts.now + window),
                    _ => false,
                };
                // A CA key a killed --replace-ca-keys run journalled but never
                // wrote is replaced now: the run is finished, not half-kept.
                let replace_ca = opts.replace_ca_keys || existing.pending(id);
                let rotation_rekey = existing.rotation_rekey(id, c);
                let keep = match (c.is_ca, keep) {
                    (true, Some(_)) if replace_ca => None,
                    (false, Some(_)) if renew_due || rotation_rekey => None,
                    (_, k) => k,
                };
                if c.is_ca && keep.is_none() && existing.key(id).is_some() && !replace_ca {
                    return Err(IssueError::Existing {
                        path: existing.key_path(id).unwrap_or_default(),
                        message: format!(
                            "the existing CA key is {} but the plan wants {alg}; kpki never replaces a CA key unless told to (--replace-ca-keys)",
                            existing.key(id).map_or("?", |k| k.algorithm().as_str())
                        ),
                    });
                }
                if keep.is_none() {
                    need_key.push((id, alg));
                }
            }
            // The service-account key is replaced like a CA key: only when
            // asked, here when its algorithm no longer matches the spec.
            Some(Node::KeyPair(k))
                if existing.pending(id)
                    || existing.key(id).is_none_or(|x| {
                        opts.replace_ca_keys && Some(x.algorithm()) != k.key.algorithm()
                    }) =>
            {
                let alg = k.key.algorithm().ok_or_else(|| IssueError::Crypto {
                    id: k.id.clone(),
                    source: CryptoError::UnsupportedKey {
                        what: k.key.to_string(),
                    },
                })?;
                need_key.push((id, alg));
            }
            _ => {}
        }
    }
    // A dry run generates nothing: one fixed placeholder key stands in for
    // every new key (it is never written), so a dry run costs what a plan does.
    let generated = if opts.dry_run {
        let placeholder = PrivateKey::placeholder().map_err(|source| IssueError::Crypto {
            id: "dry-run".into(),
            source,
        })?;
        need_key
            .iter()
            .map(|(id, _)| (*id, placeholder.duplicate()))
            .collect()
    } else {
        generate_keys(plan, token.as_ref(), &need_key, opts)?
    };
    let mut keys: BTreeMap<NodeId, PrivateKey> = generated.into_iter().collect();

    let mut report = IssueReport::default();
    let mut finals: BTreeMap<NodeId, Final> = BTreeMap::new();
    let mut pairs: BTreeMap<NodeId, PrivateKey> = BTreeMap::new();
    let mut changed: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
    // CAs given a key made in this run (it signed nothing on disk).
    let mut fresh_cas: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
    // CAs (and keypairs) first, in order; then every leaf in parallel: leaves
    // depend only on their CA, whose final certificate is known by then.
    let mut leaf_jobs = Vec::new();
    let mut rekeyed_pairs: Vec<(String, String)> = Vec::new();
    for &id in &order {
        let Some(node) = g.node(id) else { continue };
        match node {
            Node::Cert(c) if c.is_ca && plan.existing_ca(id).is_some() => {
                let Some(a) = plan.existing_ca(id) else {
                    continue;
                };
                if opts.replace_ca_keys {
                    return Err(IssueError::Existing {
                        path: a.key_path.display().to_string(),
                        message: format!(
                            "{} is an [[existing_ca]]: --replace-ca-keys never replaces it; remove its entry from the spec to have kpki generate a new CA",
                            c.id
                        ),
                    });
                }
                let key = a.key().ok_or_else(|| artefacts::no_key(a))?;
                let (action, replaced) = adopt(&mut existing, id, a, key);
                if replaced && opts.renew != RenewPolicy::Never {
                    return Err(IssueError::Existing {
                        path: existing.key_path(id).unwrap_or_else(|| c.id.clone()),
                        message: format!(
                            "renew never replaces a CA, and the output holds another {} than [[existing_ca]] {}; run `kpki issue`",
                            c.id,
                            a.cert_path.display()
                        ),
                    });
                }
                if replaced {
                    changed.insert(id);
                }
                report.actions.push((c.id.clone(), action));
                finals.insert(
                    id,
                    Final {
                        key: key.duplicate(),
                        parsed: std::sync::Arc::new(a.cert().clone()),
                        adopted: Some(a.clone()),
                        chain: Vec::new(),
                        stand_in: false,
                    },
                );
            }
            Node::Cert(c) if imported.contains_key(&id) => {
                let Some(imp) = imported.remove(&id) else {
                    continue;
                };
                let (action, f) = take_imported(&mut existing, id, c, imp, opts)?;
                if action != Action::Kept {
                    changed.insert(id);
                }
                report.actions.push((c.id.clone(), action));
                finals.insert(id, f);
            }
            Node::Cert(c) => {
                let had_key = existing.key(id).is_some();
                let (key, fresh_key) = match keys.remove(&id) {
                    Some(k) => (k, true),
                    None => match existing.take_key(id) {
                        Some(k) => (k, false),
                        None => return Err(IssueError::Order(format!("{}: no key", c.id))),
                    },
                };
                if !c.is_ca {
                    leaf_jobs.push((id, c, key, fresh_key, had_key));
                    continue;
                }
                let (action, f) = settle(
                    &existing,
                    &finals,
                    (&changed, &fresh_cas),
                    opts,
                    (id, c, key, fresh_key, had_key),
                )?;
                if action != Action::Kept {
                    changed.insert(id);
                    if fresh_key {
                        fresh_cas.insert(id);
                    }
                }
                report.actions.push((c.id.clone(), action));
                finals.insert(id, f);
            }
            Node::KeyPair(k) => {
                let (key, action) = match keys.remove(&id) {
                    Some(key) => {
                        // Replacing a keypair: journalled like a re-keyed
                        // certificate (a crash between its private and public
                        // halves is finished by the next run).
                        if existing.key(id).is_some() {
                            rekeyed_pairs.push((k.id.clone(), key_hash(&key)));
                        }
                        (key, Action::Issued)
                    }
                    None => match existing.take_key(id) {
                        Some(key) => (key, Action::Kept),
                        None => return Err(IssueError::Order(format!("{}: no key", k.id))),
                    },
                };
                report.actions.push((k.id.clone(), action));
                pairs.insert(id, key);
            }
            Node::Kubeconfig(_) => {}
        }
    }
    let settled: Vec<(NodeId, String, Action, Final)> = leaf_jobs
        .into_par_iter()
        .map(|job| {
            let (id, c) = (job.0, job.1);
            settle(&existing, &finals, (&changed, &fresh_cas), opts, job)
                .map(|(a, f)| (id, c.id.clone(), a, f))
        })
        .collect::<Result<_, _>>()?;
    // Every certificate is settled: what was parsed from disk and not kept
    // is no longer needed (the rest is shared with `finals`).
    existing.forget_parsed();
    let mut rekeyed = rekeyed_pairs;
    for (id, name, action, f) in settled {
        if matches!(action, Action::Rekeyed(_)) {
            rekeyed.push((name.clone(), key_hash(&f.key)));
        }
        report.actions.push((name, action));
        finals.insert(id, f);
    }
    for (id, c) in g.certs().filter(|(_, c)| c.is_ca) {
        // An adopted CA that replaces another one on disk is journalled
        // like a re-keyed CA: a run killed before its leaves are rewritten
        // is finished by the next one.
        if report.action(&c.id).is_some_and(|a| {
            matches!(a, Action::Rekeyed(_))
                || (matches!(a, Action::Adopted(_)) && changed.contains(&id))
        }) && let Some(f) = finals.get(&id)
        {
            rekeyed.push((c.id.clone(), key_hash(&f.key)));
        }
    }
    let mut renewals = existing.renewals.clone();
    if let RenewPolicy::Within { new_keys, .. } = opts.renew {
        let ids: Vec<String> = report
            .actions
            .iter()
            .filter(|(_, a)| matches!(a, Action::Reissued(_) | Action::Rekeyed(_)))
            .map(|(i, _)| i.clone())
            .collect();
        if !ids.is_empty() {
            renewals.push(Renewal {
                at: artefacts::rfc3339(opts.now),
                ids,
                new_keys,
            });
        }
    }
    let mut files = artefacts::render(
        plan,
        (&finals, &pairs),
        &existing,
        renewals,
        opts,
        &membership,
        store,
    )?;
    report.membership = membership;
    report.manifest = std::mem::take(&mut files.manifest);
    // Everything but the manifest in one batch (keys before certificates,
    // CAs before leaves); the manifest last, once the rest is durable.
    let batch = changed_files(&mut files.items, &mut report.files)?;
    // A directory the store refuses is refused before anything (the
    // journal included) is written; a dry run is refused as the run would
    // be.
    let paths: Vec<&str> = batch.iter().map(|(p, _, _)| *p).collect();
    store.check_writes(&paths)?;
    drop(paths);
    // Journal the keys about to replace existing ones, so that a run killed
    // between a key and its certificate (or a CA and its leaves, or a
    // keypair's two halves) is finished by the next run. Entries of a killed
    // run whose keys are on disk stay until this run completes.
    let mut journal = existing.landed_journal(g);
    journal.extend(rekeyed);
    if !journal.is_empty() && !opts.dry_run {
        let bytes = serde_json::to_vec_pretty(&journal)
            .map_err(|e| IssueError::Order(format!("journal: {e}")))?;
        store.write(JOURNAL, &bytes, crate::store::Mode::Public)?;
    }
    if !opts.dry_run {
        if let Some(p) = &opts.progress {
            p(Progress::Writing(batch.len()));
        }
        store.write_batch(&batch)?;
    }
    // The files' bytes go before the manifest's are made.
    drop(batch);
    drop(files);
    let mut manifest = vec![artefacts::manifest_item(
        &existing,
        store,
        &report.manifest,
        opts.dry_run,
    )?];
    let manifest_write = changed_files(&mut manifest, &mut report.files)?;
    if !opts.dry_run {
        store.write_batch(&manifest_write)?;
    }
    // Complete: a journal (ours, or one a killed run left) is obsolete.
    if !opts.dry_run {
        store.remove(JOURNAL)?;
    }
    Ok(report)
}

/// Files to write: (path, bytes, mode).
type Batch<'a> = Vec<(&'a str, &'a [u8], crate::store::Mode)>;

/// The paths of `items` whose file is new or changed, with their bytes and
/// modes, in order; every path's change is added to `changes`. Every file
/// was compared with its bytes as it was rendered (a file this run read
/// already by the digest of what was read: each file is read once per
/// run); the error reported is the first in file order.
fn changed_files<'a>(
    items: &'a mut [artefacts::Item],
    changes: &mut Vec<(String, FileChange)>,
) -> Result<Batch<'a>, IssueError> {
    let founds: Vec<Vec<Option<artefacts::Found>>> = items
        .iter_mut()
        .map(|i| std::mem::take(&mut i.found))
        .collect();
    let mut batch = Vec::new();
    for (item, found) in items.iter().zip(founds) {
        let art = &item.art;
        let mut found = found.into_iter();
        for path in &art.paths {
            let known = found
                .next()
                .flatten()
                .ok_or_else(|| IssueError::Order(format!("{path}: not compared")))??;
            let change = match known {
                None => FileChange::Created,
                Some(true) => FileChange::Unchanged,
                Some(false) => FileChange::Updated,
            };
            if change != FileChange::Unchanged {
                batch.push((path.as_str(), art.bytes.as_slice(), art.mode));
            }
            changes.push((path.clone(), change));
        }
    }
    Ok(batch)
}

/// The manifest, written last.
pub(crate) const MANIFEST: &str = "kpki-manifest.json";

/// Names the keys a run is about to write over existing ones (removed when the run completes).
pub(crate) const JOURNAL: &str = "kpki-journal.json";

/// SHA-256 of a key's SubjectPublicKeyInfo, hex.
pub(crate) fn key_hash(k: &PrivateKey) -> String {
    artefacts::sha256_hex(k.public_key().spki_der())
}

/// What an adopted CA does to the output: kept when the output holds its
/// certificate and key already, else adopted; and whether it replaces
/// another CA there (whose certificates are then re-issued under it).
fn adopt(
    existing: &mut Existing,
    id: NodeId,
    a: &crate::ExistingCa,
    key: &PrivateKey,
) -> (Action, bool) {
    let old_key = existing.take_key(id);
    let same_cert = existing.cert(id).map(|x| x.der == a.cert().der);
    let same_key = old_key.map(|k| k.public_key() == key.public_key());
    let replaced = same_cert == Some(false) || same_key == Some(false);
    let action = if same_cert == Some(true) && same_key == Some(true) {
        Action::Kept
    } else {
        Action::Adopted(a.cert_path.display().to_string())
    };
    (action, replaced)
}

/// A CA signed by the external root: its imported certificate with the key
/// `kpki csr` made; kept when the output holds it already, else imported.
fn take_imported(
    existing: &mut Existing,
    id: NodeId,
    c: &CertNode,
    imp: external::Imported,
    opts: &IssueOptions,
) -> Result<(Action, Final), IssueError> {
    let from = external::imported_path(&c.id);
    let bad = |message: String| IssueError::Existing {
        path: from.clone(),
        message,
    };
    if opts.replace_ca_keys {
        return Err(bad(format!(
            "{} is signed by the external root: --replace-ca-keys cannot replace its key; remove {from} and run `kpki csr` for a new request",
            c.id
        )));
    }
    let key = existing.take_key(id).ok_or_else(|| {
        bad(format!(
            "the key of {} (written by `kpki csr`) is missing from the output; run `kpki csr` and have the new request signed",
            c.id
        ))
    })?;
    if !key.matches(&imp.cert.public_key) {
        return Err(bad(format!(
            "is not for the key of {} in the output; import the certificate signed for its request",
            c.id
        )));
    }
    let same = existing.cert(id).is_some_and(|x| x.der == imp.cert.der);
    let action = if same {
        Action::Kept
    } else {
        Action::Adopted(from.clone())
    };
    if action != Action::Kept && opts.renew != RenewPolicy::Never {
        return Err(bad(
            "renew never touches a CA, and this one would change (a new import); run `kpki issue`"
                .into(),
        ));
    }
    Ok((
        action,
        Final {
            key,
            parsed: std::sync::Arc::new(imp.cert),
            adopted: None,
            chain: imp.chain,
            stand_in: false,
        },
    ))
}

/// One certificate to settle: its id, node, key, whether the key is new,
/// and whether a key existed before.
type Job<'g> = (NodeId, &'g CertNode, PrivateKey, bool, bool);

/// Decides whether a certificate is kept or (re)issued, and does it.
fn settle(
    existing: &Existing,
    finals: &BTreeMap<NodeId, Final>,
    (changed, fresh_cas): (
        &std::collections::BTreeSet<NodeId>,
        &std::collections::BTreeSet<NodeId>,
    ),
    opts: &IssueOptions,
    (id, c, key, fresh_key, had_key): Job<'_>,
) -> Result<(Action, Final), IssueError> {
    let parent = match &c.issuer {
        IssuerRef::Node(p) if *p != id => Some(*p),
        _ => None,
    };
    let parent_final = parent.and_then(|p| finals.get(&p));
    // A CA whose journalled new key is on disk was replaced by a killed run:
    // the certificates the old key signed are re-issued under it.
    let parent_rekeyed = parent
        .is_some_and(|p| changed.contains(&p) || existing.replaced(p) || existing.switched(p));
    let parent_fresh_key = parent.is_some_and(|p| fresh_cas.contains(&p));
    let verdict = existing.judge(
        id,
        c,
        &key,
        fresh_key,
        parent_final,
        parent_rekeyed,
        parent_fresh_key,
        opts,
    )?;
    let action = match (verdict, fresh_key) {
        (None, _) => Action::Kept,
        (Some(_), true) if existing.cert(id).is_none() && !had_key => Action::Issued,
        (Some(reason), true) => Action::Rekeyed(reason),
        (Some(reason), false) => Action::Reissued(reason),
    };
    if c.is_ca && action != Action::Kept && opts.renew != RenewPolicy::Never {
        return Err(IssueError::Existing {
            path: existing.key_path(id).unwrap_or_else(|| c.id.clone()),
            message: "renew never touches a CA, and this one would change (missing, expired or drifted); run `kpki issue`".into(),
        });
    }
    let f = if action == Action::Kept {
        existing.final_of(id, key)?
    } else if opts.dry_run && !c.is_ca && existing.cert(id).is_some() {
        // A dry run signs no leaf it would re-issue: it only has to learn
        // which files change, and the new certificate (random serial)
        // differs from the one on disk, as does every file embedding it.
        existing.stand_in(id, key)?
    } else {
        sign(c, key, parent_final, opts)?
    };
    Ok((action, f))
}

fn algorithm(c: &CertNode) -> Result<KeyAlgorithm, IssueError> {
    c.key.algorithm().ok_or_else(|| IssueError::Crypto {
        id: c.id.clone(),
        source: CryptoError::UnsupportedKey {
            what: c.key.to_string(),
        },
    })
}

/// Opens the PKCS#11 token of a plan whose CA keys live in one (None when
/// no CA key does).
pub(crate) fn open_token(
    plan: &Plan,
) -> Result<Option<std::sync::Arc<crate::crypto::Token>>, IssueError> {
    let Some(cfg) = plan.spec.ca_keys.token() else {
        return Ok(None);
    };
    if !plan.graph.certs().any(|(id, _)| plan.token_held(id)) {
        return Ok(None);
    }
    crate::crypto::Token::open(cfg)
        .map(Some)
        .map_err(|e| IssueError::Token(e.to_string()))
}

/// Generates a token-held CA key inside the token.
pub(crate) fn generate_in_token(
    plan: &Plan,
    token: Option<&std::sync::Arc<crate::crypto::Token>>,
    id: NodeId,
    alg: KeyAlgorithm,
) -> Result<PrivateKey, IssueError> {
    let name = plan.graph.id_of(id);
    let token = token.ok_or_else(|| {
        IssueError::Token(format!(
            "{name}: its key is token-held but no token is open"
        ))
    })?;
    token
        .generate(&name, alg)
        .map_err(|source| IssueError::Crypto { id: name, source })
}

fn generate_keys(
    plan: &Plan,
    token: Option<&std::sync::Arc<crate::crypto::Token>>,
    need: &[(NodeId, KeyAlgorithm)],
    opts: &IssueOptions,
) -> Result<Vec<(NodeId, PrivateKey)>, IssueError> {
    let g = &plan.graph;
    // Token keys are generated inside the token, one at a time (one session).
    let mut in_token = Vec::new();
    for (id, alg) in need.iter().filter(|(id, _)| plan.token_held(*id)) {
        in_token.push((*id, generate_in_token(plan, token, *id, *alg)?));
    }
    let need: Vec<(NodeId, KeyAlgorithm)> = need
        .iter()
        .filter(|(id, _)| !plan.token_held(*id))
        .copied()
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(in_token.len());
    let total = need.len() + in_token.len();
    let work = || {
        need.par_iter()
            .map(|(id, alg)| {
                let k = opts
                    .backend
                    .generate(*alg)
                    .map(|k| (*id, k))
                    .map_err(|source| IssueError::Crypto {
                        id: g.id_of(*id),
                        source,
                    });
                if let Some(p) = &opts.progress {
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    p(Progress::Keys { done: n, total });
                }
                k
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut keys = match opts.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| IssueError::Order(format!("cannot start {n} threads: {e}")))?
            .install(work)?,
        None => work()?,
    };
    keys.extend(in_token);
    Ok(keys)
}

const BACKDATE: time::Duration = time::Duration::minutes(5);

/// What `c`'s certificate asks for: its subject and extensions (the same
/// in the certificate kpki signs and in the request `kpki csr` writes).
pub(crate) fn request_params(c: &CertNode) -> CsrParams {
    CsrParams {
        subject: c.subject.clone(),
        is_ca: c.is_ca,
        path_len: c.usage.path_len.filter(|_| c.is_ca),
        key_usage: c.usage.key.unwrap_or_default(),
        ext_key_usage: c.usage.ext.clone(),
        dns_sans: c.sans.dns.iter().map(|d| d.to_string()).collect(),
        ip_sans: c.sans.ip.iter().copied().collect(),
    }
}

fn sign(
    c: &CertNode,
    key: PrivateKey,
    parent: Option<&Final>,
    opts: &IssueOptions,
) -> Result<Final, IssueError> {
    let crypto = |source| IssueError::Crypto {
        id: c.id.clone(),
        source,
    };
    let not_before = opts.now - BACKDATE;
    let mut not_after = opts.now + c.validity.lifetime.duration();
    if let Some(p) = parent {
        // A leaf never outlives its CA.
        not_after = not_after.min(p.parsed.not_after);
    }
    let params = CertParams::from_request(
        request_params(c),
        try_random_serial().map_err(crypto)?,
        not_before,
        not_after,
    );
    let signer = match parent {
        Some(p) => Signer::Issuer {
            cert_der: p.cert_der(),
            key: &p.key,
        },
        None => Signer::SelfSigned(&key),
    };
    let der = opts
        .backend
        .build(&params, &key.public_key(), signer)
        .map_err(crypto)?;
    let parsed = parse_certificate(&der).map_err(crypto)?;
    Ok(Final {
        key,
        parsed: std::sync::Arc::new(parsed),
        adopted: None,
        chain: Vec::new(),
        stand_in: false,
    })
}
