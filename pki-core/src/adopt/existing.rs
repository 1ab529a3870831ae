//! `[[existing_ca]]`: a CA of an existing PKI used instead of a generated
//! one. Its files are read when the spec is planned; the graph's CA node
//! takes the certificate's facts (subject, usages, validity, key), so the
//! rules judge it like any CA; issuance writes its certificate and key
//! byte for byte and signs with its key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{ParsedCert, PrivateKey, certs_from_pem, parse_certificate};
use crate::error::InputError;
use crate::graph::{CertGraph, IssuerRef, Node, NodeId, Validity};
use crate::profile::Profile;
use crate::spec::ExistingCaSpec;
use crate::validate::{Code, Finding};
use crate::x509::{Lifetime, Usage};

/// Certificate and key files larger than this are refused (a CA file with
/// a chain is a few KiB).
const MAX_BYTES: u64 = 1 << 20;

/// A CA adopted from an `[[existing_ca]]` entry: its files, read and
/// checked (a CA certificate, and the private key of that certificate).
#[derive(Clone)]
pub struct ExistingCa {
    /// The profile's CA template id.
    pub id: String,
    /// The graph node it stands for.
    pub node: NodeId,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The private key file.
    pub key_path: PathBuf,
    material: Arc<Material>,
}

struct Material {
    cert_pem: Vec<u8>,
    /// `None` only when loaded for a check, with the key file absent.
    key: Option<(Zeroizing<Vec<u8>>, PrivateKey)>,
    cert: ParsedCert,
}

impl std::fmt::Debug for ExistingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExistingCa")
            .field("id", &self.id)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("key", &"redacted")
            .finish()
    }
}

impl ExistingCa {
    /// The certificate file's bytes, as read.
    pub fn cert_pem(&self) -> &[u8] {
        &self.material.cert_pem
    }

    /// The certificate, parsed (the first of the file).
    pub fn cert(&self) -> &ParsedCert {
        &self.material.cert
    }

    /// The private key file's bytes, as read (`None`: loaded for a check
    /// without its key file).
    pub(crate) fn key_pem(&self) -> Option<&Zeroizing<Vec<u8>>> {
        self.material.key.as_ref().map(|(p, _)| p)
    }

    /// The private key (`None`: loaded for a check without its key file).
    pub(crate) fn key(&self) -> Option<&PrivateKey> {
        self.material.key.as_ref().map(|(_, k)| k)
    }
}

/// Reads a regular file of at most [`MAX_BYTES`] (never a FIFO or a device:
/// the audit's reader judges the open descriptor, with no race).
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err("no such file".into());
    }
    crate::observe::walk::read_regular_capped(path, MAX_BYTES)
}

fn load_one(e: &ExistingCaSpec, node: NodeId, need_key: bool) -> Result<ExistingCa, InputError> {
    let shown = |p: &Path| p.display().to_string();
    let cert_pem =
        read_file(&e.cert).map_err(|m| e.error("cert", format!("{}: {m}", shown(&e.cert))))?;
    let cert_text = std::str::from_utf8(&cert_pem).map_err(|_| {
        e.error(
            "cert",
            format!("{}: is not a PEM text file", shown(&e.cert)),
        )
    })?;
    let der = certs_from_pem(cert_text)
        .map_err(|x| {
            e.error(
                "cert",
                format!("{}: is not a PEM certificate ({x})", shown(&e.cert)),
            )
        })?
        .into_iter()
        .next()
        .ok_or_else(|| e.error("cert", format!("{}: holds no certificate", shown(&e.cert))))?;
    let cert = parse_certificate(&der).map_err(|x| {
        e.error(
            "cert",
            format!("{}: is not a valid certificate ({x})", shown(&e.cert)),
        )
    })?;
    if cert.is_ca != Some(true) {
        return Err(e.error(
            "cert",
            format!(
                "{}: is not a CA certificate (CN={}, no basicConstraints CA:TRUE): it cannot sign",
                shown(&e.cert),
                cert.subject.common_name
            ),
        ));
    }
    // A check compares files and signs nothing: the key may be absent
    // (kubeadm's external-CA mode), but a key that is there must be its own.
    let key = if !need_key && std::fs::symlink_metadata(&e.key).is_err() {
        None
    } else {
        Some(read_key(e, &cert)?)
    };
    Ok(ExistingCa {
        id: e.id.clone(),
        node,
        cert_path: e.cert.clone(),
        key_path: e.key.clone(),
        material: Arc::new(Material {
            cert_pem,
            key,
            cert,
        }),
    })
}

/// `e`'s private key, PEM and parsed; it must be the key of `cert`.
fn read_key(
    e: &ExistingCaSpec,
    cert: &ParsedCert,
) -> Result<(Zeroizing<Vec<u8>>, PrivateKey), InputError> {
    let shown = |p: &Path| p.display().to_string();
    let key_pem = Zeroizing::new(
        read_file(&e.key).map_err(|m| e.error("key", format!("{}: {m}", shown(&e.key))))?,
    );
    let key = std::str::from_utf8(&key_pem)
        .map_err(|_| e.error("key", format!("{}: is not a PEM text file", shown(&e.key))))
        .and_then(|t| {
            PrivateKey::from_pem(t).map_err(|x| {
                e.error(
                    "key",
                    format!("{}: is not a usable private key ({x})", shown(&e.key)),
                )
            })
        })?;
    if !key.matches(&cert.public_key) {
        return Err(e.error(
            "key",
            format!(
                "{}: is not the private key of {} (their public keys differ)",
                shown(&e.key),
                shown(&e.cert)
            ),
        ));
    }
    Ok((key_pem, key))
}

/// Reads every `[[existing_ca]]` entry and gives its CA node in `g` the
/// certificate's facts. An id that is no CA of the profile, a file that
/// cannot be read, a certificate that is not a CA, a key that is not the
/// certificate's: an error naming the spec field and the file. Without
/// `need_key` (a check, which signs nothing) an absent key file is no error.
pub(crate) fn load(
    entries: &[ExistingCaSpec],
    g: &mut CertGraph,
    profile: &Profile,
    need_key: bool,
) -> Result<Vec<ExistingCa>, InputError> {
    let mut out: Vec<ExistingCa> = Vec::new();
    for e in entries {
        let node = profile
            .cas
            .iter()
            .any(|c| c.id == e.id)
            .then(|| g.find(&e.id))
            .flatten()
            .ok_or_else(|| {
                let cas: Vec<&str> = profile.cas.iter().map(|c| c.id.as_str()).collect();
                e.error(
                    "id",
                    format!(
                        "`{}` is not a CA of profile `{}` (its CAs: {})",
                        e.id,
                        profile.name,
                        cas.join(", ")
                    ),
                )
            })?;
        out.push(load_one(e, node, need_key)?);
    }
    // A CA the profile signs with another CA: that one must be adopted too,
    // and must have signed it (a generated parent never did).
    for (a, e) in out.iter().zip(entries) {
        let Some(crate::graph::Node::Cert(c)) = g.node(a.node) else {
            continue;
        };
        if let IssuerRef::Node(p) = c.issuer {
            let parent = out.iter().find(|x| x.node == p);
            let ok = parent.is_some_and(|x| a.cert().verify_signed_by(&x.cert().public_key));
            if !ok {
                return Err(e.error(
                    "cert",
                    format!(
                        "{}: the profile has `{}` signed by `{}`, and {}",
                        e.cert.display(),
                        a.id,
                        g.id_of(p),
                        match parent {
                            Some(x) => format!("{} did not sign it", x.cert_path.display()),
                            None => format!(
                                "that CA is not adopted: add an [[existing_ca]] for `{}`",
                                g.id_of(p)
                            ),
                        }
                    ),
                ));
            }
        }
    }
    for a in &out {
        if let Some(Node::Cert(c)) = g.nodes.get_mut(a.node.index()) {
            let pc = a.cert();
            c.subject = pc.subject.clone();
            c.key = pc.public_key.key_spec();
            c.usage = Usage {
                ca: pc.is_ca,
                path_len: pc.path_len,
                key: pc.key_usage,
                ext: pc.ext_key_usage.clone(),
                ext_any: c.usage.ext_any,
            };
            let hours = (pc.not_after - pc.not_before).whole_hours().max(0);
            c.validity = Validity {
                lifetime: Lifetime::from_hours(u64::try_from(hours).unwrap_or(0)),
                not_before: Some(pc.not_before),
                not_after: Some(pc.not_after),
            };
            c.existing = Some(a.cert_path.clone());
        }
    }
    Ok(out)
}

/// Plan-time findings an adopted CA's dates call for (a generated CA has
/// none: it starts now): expired or not yet valid (C003), and expiring
/// before the leaves it signs would (S003: they would be cut short at its
/// notAfter).
pub(crate) fn findings(
    g: &CertGraph,
    adopted: &[ExistingCa],
    now: time::OffsetDateTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in adopted {
        let pc = a.cert();
        let day = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        if now < pc.not_before || now > pc.not_after {
            out.push(Finding {
                code: Code::C003,
                severity: Code::C003.severity(),
                nodes: vec![a.id.clone()],
                message: format!(
                    "{} ({}) is valid from {} to {}, not now: nothing it signs verifies",
                    a.id,
                    a.cert_path.display(),
                    day(pc.not_before),
                    day(pc.not_after)
                ),
                hint: "remove its [[existing_ca]] entry to have kpki generate a new CA (every node must then trust it)".into(),
                files: vec![a.cert_path.display().to_string()],
            });
            continue;
        }
        let cut: Vec<&str> = g
            .certs()
            .filter(|(id, c)| {
                c.issuer == IssuerRef::Node(a.node)
                    && *id != a.node
                    && c.validity.not_after.is_none()
                    && now + c.validity.lifetime.duration() > pc.not_after
            })
            .map(|(_, c)| c.id.as_str())
            .collect();
        if let Some(first) = cut.first() {
            out.push(Finding {
                code: Code::S003,
                severity: Code::S003.severity(),
                nodes: std::iter::once(a.id.clone())
                    .chain(cut.iter().map(|s| (*s).to_owned()))
                    .collect(),
                message: format!(
                    "{} certificate(s) signed by {} ({first}{}) would outlive it: it is an existing CA that expires {}, and they would be cut short at that date",
                    cut.len(),
                    a.id,
                    if cut.len() > 1 { ", ..." } else { "" },
                    day(pc.not_after)
                ),
                hint: "shorten crypto.leaf_validity, or rotate the CA (a new one every node trusts) before it expires".into(),
                files: vec![a.cert_path.display().to_string()],
            });
        }
    }
    out
}
