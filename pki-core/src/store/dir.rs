use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Mode, PkiStore, StoreError};

/// Temp files start with this; a run removes stale ones left by a crash.
pub const TEMP_PREFIX: &str = ".kpki-tmp-";

/// A PKI directory on disk, locked for the life of the value.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    _lock: File,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl DirStore {
    /// Opens (creating it 0700 if needed) and locks `root`. A second process
    /// on the same directory fails at once with a clear message.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| err(root, e))?;
        let lock_path = root.join(".kpki.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(err(
                    root,
                    "another kpki run holds the lock on this directory; wait for it to finish",
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(err(&lock_path, e)),
        }
        let store = Self {
            root: root.to_path_buf(),
            _lock: lock,
        };
        store.remove_temp_files(root)?;
        Ok(store)
    }

    /// Opens `root` for reading only, without creating or locking it.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn remove_temp_files(&self, dir: &Path) -> Result<(), StoreError> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                self.remove_temp_files(&p)?;
            } else if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(&p).map_err(|x| err(&p, x))?;
            }
        }
        Ok(())
    }

    fn full(&self, rel: &str) -> Result<PathBuf, StoreError> {
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            return Err(StoreError {
                path: rel.into(),
                message: "path escapes the output directory".into(),
            });
        }
        Ok(self.root.join(rel))
    }
}

impl PkiStore for DirStore {
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.full(rel)?;
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&p, e)),
        }
    }

    fn write(&mut self, rel: &str, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
        let p = self.full(rel)?;
        let dir = p.parent().unwrap_or(&self.root).to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(&dir, e))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
        let perm = match mode {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        };
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(perm)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(perm))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &p)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _cleanup = fs::remove_file(&tmp);
            err(&p, e)
        })
    }
}
