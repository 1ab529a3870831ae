//! Where artefacts go and how they are written: [`Layout`] says which path
//! each file has; a [`PkiStore`] reads and writes them. [`DirStore`] writes
//! atomically (temp file, fsync, rename, fsync of the directory), keys 0600
//! in 0700 directories; [`MemStore`] keeps everything in memory for
//! installers that hand the artefacts on themselves.

mod dir;
mod layout;

use std::collections::BTreeMap;

pub use dir::{DirStore, TEMP_PREFIX, stale_bundles};
pub use layout::{FileEntry, Layout, Part, parent_dir, signing_path};

/// An I/O failure naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// The output-relative (or absolute) path.
    pub path: String,
    /// What failed.
    pub message: String,
    /// Whether the store refused an unsafe location or an operation failed.
    pub kind: StoreErrorKind,
}

/// Why a store operation failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Reading or writing failed.
    #[default]
    Io,
    /// A directory another user can write into (or a symlink they planted):
    /// kpki refuses to write there, as ssh's StrictModes does.
    Unsafe,
}

/// File modes kpki uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// 0644: certificates, public keys, manifests.
    Public,
    /// 0600: private keys and kubeconfigs.
    Secret,
}

/// Reads and writes output-relative paths (`cluster/pki/ca.crt`).
pub trait PkiStore {
    /// The bytes at `path`, `Ok(None)` if there is no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces `path` atomically with `bytes`.
    fn write(&mut self, path: &str, bytes: &[u8], mode: Mode) -> Result<(), StoreError>;
    /// Removes `path` if it exists.
    fn remove(&mut self, path: &str) -> Result<(), StoreError>;
    /// Checks, before a run writes anything, that each of `paths` may be
    /// written where it goes: a store that refuses some places (a
    /// directory another user can write) refuses here, naming it. Nothing
    /// to check by default.
    fn check_writes(&mut self, paths: &[&str]) -> Result<(), StoreError> {
        let _ = paths;
        Ok(())
    }
    /// Reads many files: one result per path, in order (as
    /// [`PkiStore::read`] of each); the bytes are wiped when dropped (they
    /// may be keys). Stores may read them in parallel.
    fn read_many(
        &self,
        paths: &[&str],
    ) -> Vec<Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError>> {
        paths
            .iter()
            .map(|p| Ok(self.read(p)?.map(zeroize::Zeroizing::new)))
            .collect()
    }
    /// Compares many files with the bytes a run would write: one result per
    /// item, in order: `None` when the file does not exist, else whether it
    /// holds exactly those bytes (as [`PkiStore::read`] and `==`). What was
    /// read is wiped and dropped at once (it may be a key). Stores may
    /// compare in parallel.
    fn same_many(&self, items: &[(&str, &[u8])]) -> Vec<Result<Option<bool>, StoreError>> {
        items
            .iter()
            .map(|(p, b)| {
                Ok(self
                    .read(p)?
                    .map(|x| zeroize::Zeroizing::new(x).as_slice() == *b))
            })
            .collect()
    }
    /// Writes many files; each one atomically, in order. Stores may do it faster.
    fn write_batch(&mut self, items: &[(&str, &[u8], Mode)]) -> Result<(), StoreError> {
        items.iter().try_for_each(|(p, b, m)| self.write(p, b, *m))
    }
}

/// Artefacts in memory: output-relative path -> (bytes, mode).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    /// The files.
    pub files: BTreeMap<String, (Vec<u8>, Mode)>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: names and sizes only.
        f.debug_map()
            .entries(
                self.files
                    .iter()
                    .map(|(k, (v, m))| (k, format!("{} bytes, {m:?}", v.len()))),
            )
            .finish()
    }
}

impl PkiStore for MemStore {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.get(path).map(|(b, _)| b.clone()))
    }
    fn write(&mut self, path: &str, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
        self.files.insert(path.to_owned(), (bytes.to_vec(), mode));
        Ok(())
    }
    fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        self.files.remove(path);
        Ok(())
    }
}
