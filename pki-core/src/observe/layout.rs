//! Recognising a directory's layout and mapping its files to profile templates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::graph::{CertNode, NodeId};
use crate::profile::Profile;
use crate::store::{Layout, Part};

/// The layouts `kpki check` recognises.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirKind {
    /// A `kpki issue` output directory (`cluster/`, `nodes/`, `kpki-manifest.json`).
    Kpki {
        /// The profile the manifest names.
        profile: Option<String>,
    },
    /// kubeadm's `/etc/kubernetes` (holding `pki/` and `*.conf`), or its `pki/` itself.
    Kubeadm {
        /// The directory is `pki/` itself.
        pki_only: bool,
    },
    /// The seeds' cfssl output: flat `NAME.pem` + `NAME-key.pem`.
    Cfssl,
    /// Any other directory: its files are recognised by content alone.
    Files,
}

/// Recognises the layout of `dir`.
pub fn detect(dir: &Path) -> Result<DirKind, String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    if dir.join("kpki-manifest.json").is_file() || dir.join("cluster/pki").is_dir() {
        // Read like any audited file: never a FIFO or a device, never unbounded
        // (a 5,000-node manifest is a few MiB).
        let profile = super::walk::read_regular_capped(
            &dir.join("kpki-manifest.json"),
            64 * super::walk::MAX_FILE_BYTES,
        )
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["profile"].as_str().map(str::to_owned));
        return Ok(DirKind::Kpki { profile });
    }
    if dir.join("pki").is_dir() {
        return Ok(DirKind::Kubeadm { pki_only: false });
    }
    if dir.join("ca.crt").is_file() || dir.join("apiserver.crt").is_file() {
        return Ok(DirKind::Kubeadm { pki_only: true });
    }
    let has_cfssl = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with("-key.pem"));
    if has_cfssl {
        return Ok(DirKind::Cfssl);
    }
    Ok(DirKind::Files)
}

/// cfssl file names by template id, most common first (seeds 000-003).
const CFSSL_NAMES: &[(&str, &[&str])] = &[
    (
        "kubernetes-ca",
        &["ca", "kubernetes-ca", "k8s-ca", "cluster-ca"],
    ),
    ("etcd-ca", &["etcd-ca", "etcd-root-ca"]),
    ("etcd-server", &["etcd-server", "etcd"]),
    ("etcd-peer", &["etcd-peer"]),
    (
        "etcd-healthcheck-client",
        &["etcd-healthcheck-client", "etcd-client", "etcd-client-user"],
    ),
    (
        "apiserver-etcd-client",
        &[
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            "etcd-client-apiserver",
        ],
    ),
    (
        "apiserver",
        &[
            "apiserver",
            "kube-apiserver",
            "kubernetes",
            "apiserver-server",
        ],
    ),
    (
        "apiserver-kubelet-client",
        &[
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            "kubelet-client-apiserver",
        ],
    ),
    (
        "front-proxy-client",
        &["front-proxy-client", "proxy-client", "aggregator"],
    ),
    (
        "admin",
        &[
            "admin",
            "apiserver-client-admin",
            "kube-admin",
            "kubernetes-admin",
        ],
    ),
    (
        "controller-manager",
        &["kube-controller-manager", "controller-manager"],
    ),
    ("scheduler", &["kube-scheduler", "scheduler"]),
    ("kube-proxy", &["kube-proxy"]),
];

const CFSSL_KUBECONFIGS: &[(&str, &[&str])] = &[
    ("admin", &["admin.kubeconfig", "kube.config", "admin.conf"]),
    (
        "controller-manager",
        &[
            "kube-controller-manager.kubeconfig",
            "controller-manager.conf",
        ],
    ),
    (
        "scheduler",
        &["kube-scheduler.kubeconfig", "scheduler.conf"],
    ),
    ("kube-proxy", &["kube-proxy.kubeconfig"]),
    ("kubelet", &["kubelet.kubeconfig"]),
];

/// Maps skeleton nodes to files of the directory.
pub(crate) struct Locator<'a> {
    kind: DirKind,
    dir: PathBuf,
    layout: &'a Layout,
    planned: bool,
    profile: &'a Profile,
}

fn exists(dir: &Path, rel: &str) -> bool {
    dir.join(rel).is_file()
}

/// A profile path as found in a kpki or kubeadm directory.
fn rel_for(kind: &DirKind, install_root: &str, path: &str) -> Option<String> {
    let rel = path
        .strip_prefix(&format!("{install_root}/"))
        .unwrap_or(path);
    if rel.starts_with('/') {
        return None;
    }
    match kind {
        DirKind::Kpki { .. } => Some(format!("cluster/{rel}")),
        DirKind::Kubeadm { pki_only: false } => Some(rel.to_owned()),
        DirKind::Kubeadm { pki_only: true } => rel.strip_prefix("pki/").map(str::to_owned),
        DirKind::Cfssl | DirKind::Files => None,
    }
}

impl<'a> Locator<'a> {
    pub(crate) fn new(
        kind: &DirKind,
        dir: &Path,
        layout: &'a Layout,
        profile: &'a Profile,
        planned: bool,
    ) -> Self {
        Self {
            kind: kind.clone(),
            dir: dir.to_path_buf(),
            layout,
            planned,
            profile,
        }
    }

    fn found(&self, rel: Option<String>) -> Option<String> {
        rel.filter(|r| exists(&self.dir, r))
    }

    /// The output path of a part, for kpki directories checked with their spec.
    fn output(&self, id: NodeId, part: Part) -> Option<String> {
        let f = self.layout.part(id, part)?;
        f.output_paths().into_iter().find(|p| exists(&self.dir, p))
    }

    pub(crate) fn cert(&self, id: NodeId, c: &CertNode) -> Option<(String, Option<String>)> {
        if matches!(self.kind, DirKind::Kpki { .. }) && self.planned {
            let cert = self.output(id, Part::Cert)?;
            return Some((cert, self.output(id, Part::Key)));
        }
        if self.kind == DirKind::Cfssl {
            let names = CFSSL_NAMES.iter().find(|(t, _)| *t == c.template)?.1;
            return names.iter().find_map(|n| {
                let cert = format!("{n}.pem");
                exists(&self.dir, &cert).then(|| {
                    let key = format!("{n}-key.pem");
                    (cert, exists(&self.dir, &key).then_some(key))
                })
            });
        }
        let root = &self.profile.install_root;
        let cert = self.found(
            c.cert_path
                .as_deref()
                .and_then(|p| rel_for(&self.kind, root, p)),
        )?;
        let key = self.found(
            c.key_path
                .as_deref()
                .and_then(|p| rel_for(&self.kind, root, p)),
        );
        Some((cert, key))
    }

    pub(crate) fn keypair(&self, id: NodeId) -> Option<(String, String)> {
        if matches!(self.kind, DirKind::Kpki { .. }) && self.planned {
            return Some((
                self.output(id, Part::PrivateKey)?,
                self.output(id, Part::PublicKey)?,
            ));
        }
        if self.kind == DirKind::Cfssl {
            let private = ["sa.key", "sa-key.pem"]
                .into_iter()
                .find(|p| exists(&self.dir, p))?;
            let public = ["sa.pub", "sa.pem"]
                .into_iter()
                .find(|p| exists(&self.dir, p))?;
            return Some((private.into(), public.into()));
        }
        let root = &self.profile.install_root;
        let f = |part| {
            self.layout
                .part(id, part)
                .and_then(|e| rel_for(&self.kind, root, &e.install_path))
        };
        Some((
            self.found(f(Part::PrivateKey))?,
            self.found(f(Part::PublicKey))?,
        ))
    }

    pub(crate) fn kubeconfig(&self, id: NodeId) -> Option<String> {
        if matches!(self.kind, DirKind::Kpki { .. }) && self.planned {
            return self.output(id, Part::Kubeconfig);
        }
        if self.kind == DirKind::Cfssl {
            let template = self
                .layout
                .part(id, Part::Kubeconfig)
                .map(|e| e.install_path.clone())?;
            let id = self
                .profile
                .kubeconfigs
                .iter()
                .find(|k| template.ends_with(&k.file))
                .map(|k| k.id.clone())?;
            let names = CFSSL_KUBECONFIGS.iter().find(|(t, _)| *t == id)?.1;
            return names
                .iter()
                .find(|n| exists(&self.dir, n))
                .map(|n| (*n).to_owned());
        }
        let root = &self.profile.install_root;
        self.found(
            self.layout
                .part(id, Part::Kubeconfig)
                .and_then(|e| rel_for(&self.kind, root, &e.install_path)),
        )
    }

    /// Certificate, key and kubeconfig files no template claimed.
    /// `files` are the directory's regular files, as walked once.
    pub(crate) fn extra(&self, used: &BTreeSet<String>, files: &[String]) -> Vec<String> {
        let mut out: Vec<String> = match self.kind {
            DirKind::Kpki { .. } => files
                .iter()
                .filter(|f| f.starts_with("cluster/"))
                .cloned()
                .collect(),
            _ => files.to_vec(),
        };
        // A signer's single-certificate copy of a CA (pki/signing/) is planned.
        let signing: BTreeSet<String> = self
            .layout
            .files
            .iter()
            .filter(|f| matches!(f.part, Part::SigningCert | Part::SigningKey))
            .flat_map(|f| f.output_paths())
            .collect();
        out.retain(|f| !signing.contains(f));
        out.retain(|f| {
            let interesting = super::walk::PKI_EXTENSIONS.iter().any(|e| f.ends_with(e));
            // kpki's own non-graph outputs are not strays.
            let own = f == "cluster/bootstrap-kubelet.conf" || f.starts_with("cluster/manifests/");
            interesting && !own && !used.contains(f)
        });
        out
    }
}
