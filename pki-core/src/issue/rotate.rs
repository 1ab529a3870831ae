//! Staged rotation of CAs and of the service-account key, with no downtime.
//!
//! `begin` stages a new key and certificate for each rotating CA (and a new
//! service-account key) under `rotation/` and makes every trust anchor a
//! bundle of old + new; `switch` makes the new keys sign (leaves re-issued
//! under the new CAs, the new SA key signs tokens) while trust anchors still
//! hold both; `finish` drops the old generation from every bundle and moves
//! it to `archive/<UTC timestamp>/`.
//!
//! The state lives in the manifest: each phase records "started" before it
//! writes anything and "done" after, and is otherwise an ordinary issuance
//! (see [`super::issue`]) that reads the staged generations, so a phase killed
//! at any point is completed by running it again.

use serde::Serialize;

use super::artefacts::{Manifest, Rotation, RotationPhase, rfc3339};
use super::existing::staged_path;
use super::{Final, IssueError, IssueOptions, IssueReport, MANIFEST, issue, sign};
use crate::Plan;
use std::sync::Arc;

use crate::crypto::{
    ParsedCert, PrivateKey, Token, cert_to_pem, certs_from_pem, parse_certificate,
};
use crate::graph::{IssuerRef, Node, NodeId};
use crate::k8s::Component;
use crate::store::{Mode, Part, PkiStore};
use crate::x509::KeyAlgorithm;

/// What a rotation phase should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateRequest {
    /// The phase to run.
    pub phase: RotationPhase,
    /// `begin --ca ID`: the CAs to rotate.
    pub cas: Vec<String>,
    /// `begin --all-cas`.
    pub all_cas: bool,
    /// `begin --sa`: the service-account key too.
    pub sa: bool,
    /// `switch --new-keys`: new keys for the re-issued leaves.
    pub new_keys: bool,
}

impl RotateRequest {
    /// `phase` with no option set.
    pub fn new(phase: RotationPhase) -> Self {
        Self {
            phase,
            cas: Vec::new(),
            all_cas: false,
            sa: false,
            new_keys: false,
        }
    }
}

/// One component to restart after a phase, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restart {
    /// The node.
    pub node: String,
    /// The component.
    pub component: Component,
}

/// Where a rotation stands, for `kpki rotate status`, `plan` and `check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationStatus {
    /// The rotation in progress (None: none).
    pub rotation: Option<Rotation>,
    /// The phase to run next (`begin` when none is in progress).
    pub next: RotationPhase,
    /// After a phase, the components to restart, node by node, in this
    /// order (etcd members one at a time): every component that reads a
    /// file of a rotating CA or key.
    pub restart: Vec<Restart>,
}

fn refuse(m: impl Into<String>) -> IssueError {
    IssueError::Rotation(m.into())
}

fn read_manifest(store: &impl PkiStore) -> Result<Option<Manifest>, IssueError> {
    let Some(b) = store.read(MANIFEST)? else {
        return Ok(None);
    };
    serde_json::from_slice(&b)
        .map(Some)
        .map_err(|e| IssueError::Existing {
            path: MANIFEST.into(),
            message: format!("is not a kpki manifest ({e})"),
        })
}

fn write_manifest(store: &mut impl PkiStore, m: &Manifest) -> Result<(), IssueError> {
    let mut json =
        serde_json::to_vec_pretty(m).map_err(|e| IssueError::Order(format!("manifest: {e}")))?;
    json.push(b'\n');
    store.write(MANIFEST, &json, Mode::Public)?;
    Ok(())
}

/// The phase that comes after a rotation's state (`begin` when none).
fn next_phase(r: Option<&Rotation>) -> RotationPhase {
    r.map_or(RotationPhase::Begin, Rotation::next)
}

/// The rotation recorded in a directory and what to restart.
pub fn rotation_status(plan: &Plan, store: &impl PkiStore) -> Result<RotationStatus, IssueError> {
    let m = read_manifest(store)?;
    let rotation = m.and_then(|m| m.rotation);
    Ok(RotationStatus {
        next: next_phase(rotation.as_ref()),
        restart: rotation
            .as_ref()
            .map(|r| restarts(plan, r))
            .unwrap_or_default(),
        rotation,
    })
}

/// Every component, node by node, whose flags name a file of a rotating CA
/// (its trust anchors, its signing copy, the leaves it signs, the
/// kubeconfigs that trust it or hold its leaves) or of a rotating keypair.
/// Computed from the same flag sets `kpki flags` prints.
fn restarts(plan: &Plan, r: &Rotation) -> Vec<Restart> {
    let g = &plan.graph;
    let mut touched = std::collections::BTreeSet::new();
    let mut ids: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
    for name in r.cas.iter().chain(&r.keypairs) {
        if let Some(id) = g.find(name) {
            ids.insert(id);
            ids.extend(g.signed_by(id).map(|(i, _)| i));
        }
    }
    for (kid, k) in g.kubeconfigs() {
        if ids.contains(&k.ca) || ids.contains(&k.client) {
            ids.insert(kid);
        }
    }
    for id in &ids {
        for f in plan.layout.of(*id) {
            touched.insert(f.install_path.clone());
        }
    }
    crate::outputs::component_flags(plan)
        .into_iter()
        // etcdctl is a client run on demand, not a daemon to restart.
        .filter(|c| c.component != Component::Etcdctl)
        .filter(|c| {
            c.flags.values().any(|v| touched.contains(v))
                || c.config
                    .values()
                    .any(|v| v.as_str().is_some_and(|s| touched.contains(s)))
        })
        .map(|c| Restart {
            node: c.node.to_string(),
            component: c.component,
        })
        .collect()
}

/// Runs one rotation phase (`req.phase`), or completes it when an earlier
/// run of it was interrupted. Out of order it refuses, naming the next phase.
pub fn rotate(
    plan: &Plan,
    store: &mut impl PkiStore,
    req: &RotateRequest,
    opts: &IssueOptions,
) -> Result<IssueReport, IssueError> {
    let phase = req.phase;
    let mut m = read_manifest(store)?.ok_or_else(|| {
        refuse("nothing was issued in this directory yet; run `kpki issue` first")
    })?;
    // The token first: a wrong PIN or a missing token writes nothing.
    let token = super::open_token(plan)?;
    let next = next_phase(m.rotation.as_ref());
    // A completed phase run again changes nothing (also `finish`, whose
    // completion clears the rotation).
    let finished = m.rotation.is_none() && phase == RotationPhase::Finish;
    let repeat = m
        .rotation
        .as_ref()
        .is_some_and(|r| r.done && r.phase == phase)
        || (finished && !m.rotations.is_empty());
    if phase != next && !repeat {
        let what = match &m.rotation {
            None => "no rotation is in progress".to_owned(),
            Some(r) if !r.done => format!("`kpki rotate {}` was interrupted", r.phase),
            Some(r) => format!("the rotation is at phase {}", r.phase),
        };
        return Err(refuse(format!(
            "cannot run `kpki rotate {phase}`: {what}; the next phase is `kpki rotate {next}`"
        )));
    }
    let mut r = match (phase, m.rotation.clone()) {
        (RotationPhase::Begin, None) => new_rotation(plan, req, opts)?,
        (_, Some(r)) => r,
        (RotationPhase::Finish, None) if repeat => m
            .rotations
            .last()
            .cloned()
            .ok_or_else(|| refuse("no rotation"))?,
        (_, None) => {
            return Err(refuse(
                "no rotation is in progress; run `kpki rotate begin`",
            ));
        }
    };
    if !repeat {
        r.phase = phase;
        r.done = false;
        if phase == RotationPhase::Switch {
            r.new_keys = req.new_keys;
        }
        if phase == RotationPhase::Finish && r.archive.is_none() {
            let ts = opts
                .now
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_default();
            r.archive = Some(format!("archive/{ts}"));
        }
        m.rotation = Some(r.clone());
        if !opts.dry_run {
            // Recorded before anything is written: a killed run is resumed.
            write_manifest(store, &m)?;
        }
    }
    if opts.dry_run {
        return issue(plan, store, opts);
    }
    match phase {
        RotationPhase::Begin => stage(plan, store, token.as_ref(), &r, opts)?,
        RotationPhase::Switch => {}
        RotationPhase::Finish => archive(store, &r)?,
    }
    let report = issue(plan, store, opts)?;
    let mut m = read_manifest(store)?.unwrap_or(report.manifest.clone());
    if phase == RotationPhase::Finish {
        for p in staged_files(&r) {
            store.remove(&p)?;
        }
        let mut done = r.clone();
        done.done = true;
        m.rotation = None;
        if !repeat {
            m.rotations.push(done);
        }
    } else {
        r.done = true;
        m.rotation = Some(r);
    }
    write_manifest(store, &m)?;
    let mut report = report;
    report.manifest = m;
    Ok(report)
}

fn new_rotation(
    plan: &Plan,
    req: &RotateRequest,
    opts: &IssueOptions,
) -> Result<Rotation, IssueError> {
    let g = &plan.graph;
    let mut cas = Vec::new();
    if req.all_cas {
        cas.extend(
            g.certs()
                .filter(|(_, c)| c.is_ca)
                .map(|(_, c)| c.id.clone()),
        );
    }
    for id in &req.cas {
        match g.find(id).and_then(|i| g.cert(i)) {
            Some(c) if c.is_ca => {
                if !cas.contains(&c.id) {
                    cas.push(c.id.clone());
                }
            }
            _ => {
                let known: Vec<&str> = g
                    .certs()
                    .filter(|(_, c)| c.is_ca)
                    .map(|(_, c)| c.id.as_str())
                    .collect();
                return Err(refuse(format!(
                    "--ca {id}: not a CA of this plan (CAs: {})",
                    known.join(", ")
                )));
            }
        }
    }
    // A CA the external root signs is replaced by importing a new
    // intermediate, never by a self-signed one kpki makes.
    let external: Vec<String> = super::external::top_cas(plan)
        .into_iter()
        .map(|(_, c)| c.id.clone())
        .filter(|id| cas.contains(id))
        .collect();
    if !external.is_empty() {
        return Err(refuse(format!(
            "{} signed by the external root ([root] external = true): kpki cannot rotate it; import a new intermediate instead",
            external.join(", ")
        )));
    }
    let keypairs: Vec<String> = if req.sa {
        g.iter()
            .filter_map(|(_, n)| match n {
                Node::KeyPair(k) => Some(k.id.clone()),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    if req.sa && keypairs.is_empty() {
        return Err(refuse("--sa: this plan has no service-account key"));
    }
    if cas.is_empty() && keypairs.is_empty() {
        return Err(refuse(
            "nothing to rotate: name --ca ID (repeatable), --all-cas or --sa",
        ));
    }
    Ok(Rotation {
        phase: RotationPhase::Begin,
        done: false,
        cas,
        keypairs,
        new_keys: false,
        started: rfc3339(opts.now),
        archive: None,
    })
}

/// Every staged file of a rotation.
fn staged_files(r: &Rotation) -> Vec<String> {
    let mut out = Vec::new();
    for id in &r.cas {
        for g in ["old", "new"] {
            out.push(staged_path(id, g, "crt"));
            out.push(staged_path(id, g, "key"));
        }
    }
    for id in &r.keypairs {
        for g in ["old", "new"] {
            out.push(staged_path(id, g, "key"));
        }
    }
    out
}

fn text(
    store: &impl PkiStore,
    path: &str,
) -> Result<Option<zeroize::Zeroizing<String>>, IssueError> {
    Ok(store
        .read(path)?
        .and_then(|b| String::from_utf8(b).ok().map(zeroize::Zeroizing::new)))
}

fn bad(path: &str, m: impl Into<String>) -> IssueError {
    IssueError::Existing {
        path: path.to_owned(),
        message: m.into(),
    }
}

/// The first certificate of the PEM text of the file at `path`, DER and
/// parsed.
fn first_cert(text: &str, path: &str) -> Result<ParsedCert, IssueError> {
    let der = certs_from_pem(text)
        .ok()
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| bad(path, "holds no certificate"))?;
    parse_certificate(&der).map_err(|e| bad(path, e.to_string()))
}

/// A CA's current certificate and key: the staged generation if any, else
/// what its files hold (the first certificate of a bundle).
fn load_final(store: &impl PkiStore, cert: &str, key: &str) -> Result<Option<Final>, IssueError> {
    let (Some(ct), Some(kt)) = (text(store, cert)?, text(store, key)?) else {
        return Ok(None);
    };
    let parsed = first_cert(&ct, cert)?;
    let k = PrivateKey::from_pem(&kt).map_err(|e| bad(key, e.to_string()))?;
    if !k.matches(&parsed.public_key) {
        return Ok(None);
    }
    Ok(Some(Final {
        key: k,
        parsed: Arc::new(parsed),
        adopted: None,
        chain: Vec::new(),
        stand_in: false,
    }))
}

/// A token-held CA's certificate at `cert` and the token key it names.
fn token_final(
    store: &impl PkiStore,
    token: &Arc<Token>,
    ca: &str,
    cert: &str,
) -> Result<Option<Final>, IssueError> {
    let Some(ct) = text(store, cert)? else {
        return Ok(None);
    };
    let parsed = first_cert(&ct, cert)?;
    let keys = token.keys_of(ca).map_err(|source| IssueError::Crypto {
        id: ca.to_owned(),
        source,
    })?;
    Ok(keys
        .into_iter()
        .find(|k| k.matches(&parsed.public_key))
        .map(|key| Final {
            key,
            parsed: Arc::new(parsed),
            adopted: None,
            chain: Vec::new(),
            stand_in: false,
        }))
}

/// The newest key of token-held CA `ca` when it is a later generation than
/// `current` (the key its certificate names) and of the algorithm `alg`.
fn unnamed_newer_key(
    token: &Arc<Token>,
    ca: &str,
    current: &PrivateKey,
    alg: KeyAlgorithm,
) -> Result<Option<PrivateKey>, IssueError> {
    let keys = token.keys_of(ca).map_err(|source| IssueError::Crypto {
        id: ca.to_owned(),
        source,
    })?;
    let public = current.public_key();
    let Some(at) = keys.iter().position(|k| k.matches(&public)) else {
        return Ok(None);
    };
    Ok(keys
        .into_iter()
        .skip(at + 1)
        .last()
        .filter(|k| k.public_key().algorithm().ok() == Some(alg)))
}

/// The generation of a rotating CA's issuer that signs its new
/// certificate: the issuer's staged new one when it rotates too.
fn parent_final(
    plan: &Plan,
    store: &impl PkiStore,
    token: Option<&Arc<Token>>,
    r: &Rotation,
    id: NodeId,
    c: &crate::graph::CertNode,
) -> Result<Option<Final>, IssueError> {
    let g = &plan.graph;
    let IssuerRef::Node(p) = c.issuer else {
        return Ok(None);
    };
    if p == id {
        return Ok(None);
    }
    let pid = g.id_of(p);
    let first = |part: Part| {
        plan.layout
            .part(p, part)
            .and_then(|f| f.output_paths().into_iter().next())
    };
    let cert = if r.cas.contains(&pid) {
        Some(staged_path(&pid, "new", "crt"))
    } else {
        first(Part::Cert)
    };
    let staged = match (plan.token_held(p), token, cert) {
        (true, Some(t), Some(cert)) => token_final(store, t, &pid, &cert)?,
        (false, _, Some(cert)) => {
            let key = if r.cas.contains(&pid) {
                Some(staged_path(&pid, "new", "key"))
            } else {
                first(Part::Key)
            };
            match key {
                Some(k) => load_final(store, &cert, &k)?,
                None => None,
            }
        }
        _ => None,
    };
    staged
        .map(Some)
        .ok_or_else(|| refuse(format!("{}: its issuer {pid} has no usable key", c.id)))
}

fn key_pem(path: &str, k: &PrivateKey) -> Result<zeroize::Zeroizing<String>, IssueError> {
    k.to_pem().map_err(|e| bad(path, e.to_string()))
}

/// `begin`: copies each rotating CA's and keypair's current material to
/// `rotation/<id>.old.*` and makes `rotation/<id>.new.*`, each only once
/// (a re-run keeps what a killed run staged).
fn stage(
    plan: &Plan,
    store: &mut impl PkiStore,
    token: Option<&Arc<Token>>,
    r: &Rotation,
    opts: &IssueOptions,
) -> Result<(), IssueError> {
    let g = &plan.graph;
    let first = |id: NodeId, part: Part| {
        plan.layout
            .part(id, part)
            .and_then(|f| f.output_paths().into_iter().next())
    };
    // In issuance order: a rotating intermediate is signed by its parent's new generation.
    let order = crate::graph::issuance_order(g).map_err(|_| IssueError::Order("cycle".into()))?;
    for id in order {
        let Some(node) = g.node(id) else { continue };
        match node {
            Node::Cert(c) if r.cas.contains(&c.id) && plan.token_held(id) => {
                // A token-held CA: only certificates are staged; both
                // generations' keys stay in the token (`<id>`, `<id>#N`).
                let Some(tok) = token else {
                    return Err(refuse(format!(
                        "{}: its key is token-held but no token is open",
                        c.id
                    )));
                };
                let cp = first(id, Part::Cert)
                    .ok_or_else(|| refuse(format!("{}: no certificate file", c.id)))?;
                let oc = staged_path(&c.id, "old", "crt");
                let old = match token_final(store, tok, &c.id, &oc)? {
                    Some(f) => f,
                    None => {
                        let cur = token_final(store, tok, &c.id, &cp)?.ok_or_else(|| {
                            bad(
                                &cp,
                                "no CA certificate whose key is in the token to rotate; run `kpki issue` first",
                            )
                        })?;
                        store.write(&oc, cert_to_pem(cur.cert_der()).as_bytes(), Mode::Public)?;
                        cur
                    }
                };
                let nc = staged_path(&c.id, "new", "crt");
                if token_final(store, tok, &c.id, &nc)?.is_some() {
                    continue;
                }
                let parent = parent_final(plan, store, token, r, id, c)?;
                // A run killed after C_GenerateKeyPair but before the new
                // certificate was written left a newer key than the old
                // certificate's in the token, named by no certificate: it
                // is this rotation's new key (no second one is made).
                let alg = super::algorithm(c)?;
                let key = match unnamed_newer_key(tok, &c.id, &old.key, alg)? {
                    Some(k) => k,
                    None => super::generate_in_token(plan, Some(tok), id, alg)?,
                };
                let f = sign(c, key, parent.as_ref(), opts)?;
                store.write(&nc, cert_to_pem(f.cert_der()).as_bytes(), Mode::Public)?;
            }
            Node::Cert(c) if r.cas.contains(&c.id) => {
                let (Some(cp), Some(kp)) = (first(id, Part::Cert), first(id, Part::Key)) else {
                    return Err(refuse(format!(
                        "{}: kpki does not hold this CA's key, so it cannot rotate it",
                        c.id
                    )));
                };
                let (oc, ok) = (
                    staged_path(&c.id, "old", "crt"),
                    staged_path(&c.id, "old", "key"),
                );
                if load_final(store, &oc, &ok)?.is_none() {
                    let cur = load_final(store, &cp, &kp)?.ok_or_else(|| {
                        bad(
                            &cp,
                            "no CA certificate matching its key to rotate; run `kpki issue` first",
                        )
                    })?;
                    let kpem = key_pem(&ok, &cur.key)?;
                    store.write_batch(&[
                        (ok.as_str(), kpem.as_bytes(), Mode::Secret),
                        (
                            oc.as_str(),
                            cert_to_pem(cur.cert_der()).as_bytes(),
                            Mode::Public,
                        ),
                    ])?;
                }
                let (nc, nk) = (
                    staged_path(&c.id, "new", "crt"),
                    staged_path(&c.id, "new", "key"),
                );
                if load_final(store, &nc, &nk)?.is_some() {
                    continue;
                }
                let parent = parent_final(plan, store, token, r, id, c)?;
                let alg = super::algorithm(c)?;
                let key = opts
                    .backend
                    .generate(alg)
                    .map_err(|source| IssueError::Crypto {
                        id: c.id.clone(),
                        source,
                    })?;
                let f = sign(c, key, parent.as_ref(), opts)?;
                let kpem = key_pem(&nk, &f.key)?;
                store.write_batch(&[
                    (nk.as_str(), kpem.as_bytes(), Mode::Secret),
                    (
                        nc.as_str(),
                        cert_to_pem(f.cert_der()).as_bytes(),
                        Mode::Public,
                    ),
                ])?;
            }
            Node::KeyPair(k) if r.keypairs.contains(&k.id) => {
                let ok = staged_path(&k.id, "old", "key");
                if text(store, &ok)?.is_none() {
                    let pp = first(id, Part::PrivateKey)
                        .ok_or_else(|| refuse(format!("{}: no private key file", k.id)))?;
                    let t = text(store, &pp)?
                        .ok_or_else(|| bad(&pp, "missing; run `kpki issue` first"))?;
                    store.write(&ok, t.as_bytes(), Mode::Secret)?;
                }
                let nk = staged_path(&k.id, "new", "key");
                if text(store, &nk)?.is_some_and(|t| PrivateKey::from_pem(&t).is_ok()) {
                    continue;
                }
                let alg = k
                    .key
                    .algorithm()
                    .ok_or_else(|| refuse(format!("{}: unsupported key", k.id)))?;
                let key = opts
                    .backend
                    .generate(alg)
                    .map_err(|source| IssueError::Crypto {
                        id: k.id.clone(),
                        source,
                    })?;
                let kpem = key_pem(&nk, &key)?;
                store.write(&nk, kpem.as_bytes(), Mode::Secret)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// `finish`: copies the old generation to the archive (0700; keys 0600).
/// The staged files are removed only once the phase's issuance is durable.
fn archive(store: &mut impl PkiStore, r: &Rotation) -> Result<(), IssueError> {
    let Some(dir) = &r.archive else {
        return Ok(());
    };
    let mut items: Vec<(String, Vec<u8>, Mode)> = Vec::new();
    for p in staged_files(r) {
        if !p.contains(".old.") {
            continue;
        }
        let Some(b) = store.read(&p)? else { continue };
        let name = p.trim_start_matches("rotation/");
        let dest = format!("{dir}/{name}");
        let mode = if p.ends_with(".key") {
            Mode::Secret
        } else {
            Mode::Public
        };
        items.push((dest, b, mode));
    }
    let batch: Vec<(&str, &[u8], Mode)> = items
        .iter()
        .map(|(p, b, m)| (p.as_str(), b.as_slice(), *m))
        .collect();
    store.write_batch(&batch)?;
    Ok(())
}
