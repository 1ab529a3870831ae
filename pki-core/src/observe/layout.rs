//! Recognising a directory's layout and mapping its files to profile templates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// Maps skeleton nodes to the files of a kpki output directory checked with
/// its spec: every planned path is known (anything else is recognised by
/// content, `recognise.rs`).
pub(crate) struct Locator<'a> {
    dir: PathBuf,
    layout: &'a Layout,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(dir: &Path, layout: &'a Layout) -> Self {
        Self {
            dir: dir.to_path_buf(),
            layout,
        }
    }

    /// The first copy of a part that exists (`cluster/` first).
    fn output(&self, id: NodeId, part: Part) -> Option<String> {
        let f = self.layout.part(id, part)?;
        f.output_paths()
            .into_iter()
            .find(|p| self.dir.join(p).is_file())
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
