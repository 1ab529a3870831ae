//! Recognising a directory's layout and mapping its files to profile templates.

use std::collections::BTreeSet;
use std::path::Path;

use crate::graph::NodeId;
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

impl DirKind {
    /// The layout as `kpki check` and `kpki init --from` name it:
    /// `kubeadm layout (/etc/kubernetes)`, `cfssl layout`...
    pub fn describe(&self) -> &'static str {
        match self {
            DirKind::Kpki { .. } => "kpki output",
            DirKind::Kubeadm { pki_only: false } => "kubeadm layout (/etc/kubernetes)",
            DirKind::Kubeadm { pki_only: true } => "kubeadm layout (pki/)",
            DirKind::Cfssl => "cfssl layout",
            DirKind::Files => "files recognised by content",
        }
    }
}

/// The one field of a manifest `detect` needs (the rest, a few MiB at
/// fleet scale, is skipped without building it in memory).
#[derive(serde::Deserialize)]
struct ProfileOnly {
    profile: Option<String>,
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
        .and_then(|b| serde_json::from_slice::<ProfileOnly>(&b).ok())
        .and_then(|v| v.profile);
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

/// Maps skeleton nodes to the files of a kpki output directory checked with
/// its spec: every planned path is known (anything else is recognised by
/// content, `recognise.rs`).
pub(crate) struct Locator<'a> {
    layout: &'a Layout,
    /// The first copy of each part that exists, looked up once, in parallel.
    found: std::collections::HashMap<(NodeId, Part), String>,
}

impl<'a> Locator<'a> {
    /// Looks up, in parallel, the first existing copy of every planned file
    /// (a fleet's layout has tens of thousands; each is asked for several
    /// times). A file shared by every node (a CA certificate in 5,000
    /// bundles) stops at its first copy: the paths are made as they are tried.
    pub(crate) fn new(dir: &Path, layout: &'a Layout) -> Self {
        use rayon::prelude::*;
        let found = layout
            .files
            .par_iter()
            .filter_map(|f| {
                let first = f
                    .cluster_path
                    .iter()
                    .cloned()
                    .chain(f.nodes.iter().map(|n| f.bundle_path(n)))
                    .find(|p| dir.join(p).is_file())?;
                Some(((f.node, f.part), first))
            })
            .collect();
        Self { layout, found }
    }

    /// The first copy of a part that exists (`cluster/` first).
    fn output(&self, id: NodeId, part: Part) -> Option<String> {
        self.found.get(&(id, part)).cloned()
    }

    pub(crate) fn cert(&self, id: NodeId) -> Option<(String, Option<String>)> {
        let cert = self.output(id, Part::Cert)?;
        Some((cert, self.output(id, Part::Key)))
    }

    pub(crate) fn keypair(&self, id: NodeId) -> Option<(String, String)> {
        Some((
            self.output(id, Part::PrivateKey)?,
            self.output(id, Part::PublicKey)?,
        ))
    }

    pub(crate) fn kubeconfig(&self, id: NodeId) -> Option<String> {
        self.output(id, Part::Kubeconfig)
    }

    /// Certificate, key and kubeconfig files under `cluster/` no template
    /// claimed. `files` are the directory's regular files, as walked once.
    pub(crate) fn extra(&self, used: &BTreeSet<String>, files: &[String]) -> Vec<String> {
        // A signer's single-certificate copy of a CA (pki/signing/) is planned.
        let signing: BTreeSet<String> = self
            .layout
            .files
            .iter()
            .filter(|f| matches!(f.part, Part::SigningCert | Part::SigningKey))
            .flat_map(|f| f.output_paths())
            .collect();
        files
            .iter()
            .filter(|f| f.starts_with("cluster/") && !signing.contains(*f))
            .filter(|f| {
                let interesting = super::walk::PKI_EXTENSIONS.iter().any(|e| f.ends_with(e));
                // kpki's own non-graph outputs are not strays.
                let own =
                    *f == "cluster/bootstrap-kubelet.conf" || f.starts_with("cluster/manifests/");
                interesting && !own && !used.contains(*f)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::DirKind;

    /// The names `kpki check` prints (docs/migration.md shows them) and
    /// `init --from` reuses: one label per layout, none a Debug name.
    #[test]
    fn each_layout_has_its_label() {
        let labels: Vec<&str> = [
            DirKind::Kpki { profile: None },
            DirKind::Kubeadm { pki_only: false },
            DirKind::Kubeadm { pki_only: true },
            DirKind::Cfssl,
            DirKind::Files,
        ]
        .iter()
        .map(DirKind::describe)
        .collect();
        assert_eq!(
            labels,
            [
                "kpki output",
                "kubeadm layout (/etc/kubernetes)",
                "kubeadm layout (pki/)",
                "cfssl layout",
                "files recognised by content",
            ]
        );
    }
}
