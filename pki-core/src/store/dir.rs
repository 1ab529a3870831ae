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
        Self::open_waiting(root, std::time::Duration::ZERO, || {})
    }

    /// Like [`DirStore::open`], but when another run holds the lock, calls
    /// `on_wait` once and waits up to `max` for it.
    pub fn open_waiting(
        root: &Path,
        max: std::time::Duration,
        on_wait: impl FnOnce(),
    ) -> Result<Self, StoreError> {
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
        let deadline = std::time::Instant::now() + max;
        let mut on_wait = Some(on_wait);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    if let Some(f) = on_wait.take() {
                        f();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(err(
                        root,
                        "another kpki run holds the lock on this directory; wait for it to finish",
                    ));
                }
                Err(fs::TryLockError::Error(e)) => return Err(err(&lock_path, e)),
            }
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

    /// Creates `dir` and its missing parents. Inside a node bundle
    /// (`nodes/<node>/...`) directories mirror a node's file system, so
    /// they are 0755 (`rsync -a` must not make a node's /etc private) except
    /// `pki` directories, which hold keys: 0700. Everything else is 0700.
    fn create_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        let mut cur = self.root.clone();
        let mut parts: Vec<String> = Vec::new();
        for c in rel.components() {
            let name = c.as_os_str().to_string_lossy().into_owned();
            cur.push(&name);
            parts.push(name);
            if cur.is_dir() {
                continue;
            }
            let in_bundle = parts.len() >= 2 && parts.first().is_some_and(|p| p == "nodes");
            let holds_keys = parts.iter().skip(2).any(|p| p == "pki");
            let mode = if in_bundle && !holds_keys {
                0o755
            } else {
                0o700
            };
            match fs::DirBuilder::new().mode(mode).create(&cur) {
                Ok(()) => fs::set_permissions(&cur, fs::Permissions::from_mode(mode))
                    .map_err(|e| err(&cur, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(&cur, e)),
            }
        }
        Ok(())
    }

    /// Flushes the file system holding the directory (syncfs(2)).
    fn sync(&self) -> Result<(), StoreError> {
        let d = File::open(&self.root).map_err(|e| err(&self.root, e))?;
        rustix::fs::syncfs(&d).map_err(|e| err(&self.root, e))
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
        self.write_batch(&[(rel, bytes, mode)])
    }

    /// Writes many files crash-safely and fast: every temp file is written
    /// and fsynced (in parallel: fsync latency, not CPU, is the cost), then
    /// renamed in the given order, then every touched directory is fsynced.
    fn write_batch(&mut self, items: &[(&str, &[u8], Mode)]) -> Result<(), StoreError> {
        let mut staged = Vec::with_capacity(items.len());
        let mut dirs = std::collections::BTreeSet::new();
        for (rel, bytes, mode) in items {
            let p = self.full(rel)?;
            let dir = p.parent().unwrap_or(&self.root).to_path_buf();
            if dirs.insert(dir.clone()) {
                self.create_dirs(&dir)?;
            }
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}", std::process::id()));
            staged.push((p, tmp, *bytes, *mode));
        }
        let write_one =
            |(p, tmp, bytes, mode): &(PathBuf, PathBuf, &[u8], Mode)| -> Result<(), StoreError> {
                let perm = match mode {
                    Mode::Public => 0o644,
                    Mode::Secret => 0o600,
                };
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(perm)
                    .open(tmp)
                    .map_err(|e| err(p, e))?;
                f.set_permissions(fs::Permissions::from_mode(perm))
                    .map_err(|e| err(p, e))?;
                f.write_all(bytes).map_err(|e| err(p, e))
            };
        staged.iter().try_for_each(write_one)?;
        // One flush makes every temp file durable before any rename; a
        // second makes the renames durable. A crash in between leaves each
        // file either old or new, never partial.
        self.sync()?;
        for (p, tmp, _, _) in &staged {
            fs::rename(tmp, p).map_err(|e| err(p, e))?;
        }
        self.sync()?;
        Ok(())
    }

    fn remove(&mut self, rel: &str) -> Result<(), StoreError> {
        let p = self.full(rel)?;
        match fs::remove_file(&p) {
            Ok(()) => {
                let dir = p.parent().unwrap_or(&self.root);
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| err(dir, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&p, e)),
        }
    }
}
