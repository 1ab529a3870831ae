use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode as RawMode, OFlags};

use super::{Layout, Mode, PkiStore, StoreError, StoreErrorKind};

/// Temp files start with this (then random characters); a run removes
/// stale ones left by a crash.
pub const TEMP_PREFIX: &str = ".kpki-tmp-";

/// A PKI directory on disk, locked for the life of the value.
///
/// Nothing is written into a directory another user could write into (owned
/// by someone other than the caller or root, or group/world-writable), nor
/// through a symbolic link inside the output directory that another user
/// owns: such a user could otherwise swap files under kpki's feet. Temp files
/// get random names, are created exclusively (`O_EXCL`, so never through a
/// planted file or symlink) and are 0600 from the start.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    /// Directories already checked (or created) by this run.
    safe_dirs: BTreeSet<PathBuf>,
    _lock: File,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        message: e.to_string(),
        kind: StoreErrorKind::Io,
    }
}

fn refuse(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        message: message.into(),
        kind: StoreErrorKind::Unsafe,
    }
}

/// The effective user id of this process.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses what another user owns: only the caller and root are trusted.
fn check_owner(path: &Path, meta: &fs::Metadata, what: &str) -> Result<(), StoreError> {
    let uid = meta.uid();
    if uid != 0 && uid != euid() {
        return Err(refuse(
            path,
            format!(
                "{what} is owned by another user (uid {uid}); kpki writes keys only where no other user can change anything (fix the ownership or choose another output directory)"
            ),
        ));
    }
    Ok(())
}

/// Refuses a directory another user could write into, as ssh's StrictModes does.
fn check_dir(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    if !meta.is_dir() {
        return Err(err(path, "exists and is not a directory"));
    }
    check_owner(path, meta, "this directory")?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(
            path,
            format!(
                "this directory is writable by other users (mode {mode:04o}); kpki writes keys only where no other user can change anything (chmod go-w it, or choose another output directory)"
            ),
        ));
    }
    Ok(())
}

/// Checks an existing path inside (or at) the output directory: a real
/// directory must be safe; a symbolic link must be the caller's (or root's)
/// and lead to a safe directory.
fn check_existing(path: &Path, lmeta: &fs::Metadata) -> Result<(), StoreError> {
    if lmeta.file_type().is_symlink() {
        check_owner(path, lmeta, "this symbolic link")?;
        let meta = fs::metadata(path).map_err(|e| err(path, e))?;
        return check_dir(path, &meta);
    }
    check_dir(path, lmeta)
}

/// Opens a directory without following a symbolic link in its last component.
fn open_dir_nofollow(path: &Path) -> Result<File, StoreError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        RawMode::empty(),
    )
    .map(File::from)
    .map_err(|e| err(path, e))
}

/// Node bundles (`nodes/<node>`) under `root` for nodes `layout` no longer
/// has (a worker removed from the spec), sorted. They hold that node's
/// private keys; `kpki issue --prune` removes them.
pub fn stale_bundles(root: &Path, layout: &Layout) -> Vec<String> {
    let planned: BTreeSet<String> = layout
        .files
        .iter()
        .flat_map(|f| f.nodes.iter().map(|n| n.to_string()))
        .collect();
    let Ok(entries) = fs::read_dir(root.join("nodes")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !planned.contains(n))
        .map(|n| format!("nodes/{n}"))
        .collect();
    out.sort();
    out
}

impl DirStore {
    /// Opens (creating it 0700 if needed) and locks `root`. A second process
    /// on the same directory fails at once with a clear message.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_waiting(root, std::time::Duration::ZERO, || {})
    }

    /// Like [`DirStore::open`], but when another run holds the lock, calls
    /// `on_wait` once and waits up to `max` for it. Refuses (with
    /// [`StoreErrorKind::Unsafe`]) a directory another user could write
    /// into, before writing anything.
    pub fn open_waiting(
        root: &Path,
        max: std::time::Duration,
        on_wait: impl FnOnce(),
    ) -> Result<Self, StoreError> {
        match fs::symlink_metadata(root) {
            Ok(m) => check_existing(root, &m)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(root)
                    .map_err(|e| err(root, e))?;
                let m = fs::symlink_metadata(root).map_err(|e| err(root, e))?;
                check_existing(root, &m)?;
            }
            Err(e) => return Err(err(root, e)),
        }
        let lock_path = root.join(".kpki.lock");
        let lock = rustix::fs::open(
            &lock_path,
            OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            RawMode::from_raw_mode(0o600),
        )
        .map(File::from)
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
            safe_dirs: BTreeSet::from([root.to_path_buf()]),
            _lock: lock,
        };
        store.sweep(root)?;
        Ok(store)
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks every directory of the tree (see [`check_existing`]: nothing
    /// another user owns or can write, no symbolic link another user owns)
    /// and removes the temp files (any name starting with [`TEMP_PREFIX`]) a
    /// killed run left. Never follows a symbolic link.
    fn sweep(&self, dir: &Path) -> Result<(), StoreError> {
        use rayon::prelude::*;
        let entries = fs::read_dir(dir).map_err(|e| err(dir, e))?;
        // Subdirectories are swept in parallel (a fleet's tree has tens of
        // thousands); the error reported is the first in directory order.
        let mut subdirs = Vec::new();
        for e in entries.flatten() {
            let temp = e.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            // The type readdir reports (no stat per file): a regular file
            // that is not a temp file needs nothing here, and at fleet scale
            // the tree holds tens of thousands of them.
            if !temp && e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if temp && !meta.is_dir() {
                // Unlinking never follows a symlink: whoever planted it, it goes.
                fs::remove_file(&p).map_err(|x| err(&p, x))?;
            } else if meta.file_type().is_symlink() {
                check_owner(&p, &meta, "this symbolic link")?;
            } else if meta.is_dir() {
                check_dir(&p, &meta)?;
                subdirs.push(p);
            }
        }
        subdirs
            .par_iter()
            .map(|p| self.sweep(p))
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    }

    /// Removes a node bundle (`nodes/<node>`, see [`stale_bundles`]) and
    /// everything in it. The bundle is first made 0700, so its keys are
    /// unreachable by others while (and if only partly) removed; a symbolic
    /// link is removed, never followed.
    pub fn remove_bundle(&mut self, rel: &str) -> Result<(), StoreError> {
        let name = rel.strip_prefix("nodes/").unwrap_or_default();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(err(Path::new(rel), "is not a node bundle (nodes/<node>)"));
        }
        let nodes = self.root.join("nodes");
        let p = nodes.join(name);
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(&p, e)),
        };
        if meta.is_dir() {
            open_dir_nofollow(&p)?
                .set_permissions(fs::Permissions::from_mode(0o700))
                .map_err(|e| err(&p, e))?;
            fs::remove_dir_all(&p).map_err(|e| err(&p, e))?;
        } else {
            fs::remove_file(&p).map_err(|e| err(&p, e))?;
        }
        File::open(&nodes)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(&nodes, e))
    }

    /// Creates `dir` and its missing parents, checking every existing one on
    /// the way (see [`check_existing`]). Inside a node bundle
    /// (`nodes/<node>/...`) directories mirror a node's file system, so
    /// they are 0755 (`rsync -a` must not make a node's /etc private) except
    /// `pki` directories, which hold keys: 0700. Everything else is 0700.
    fn create_dirs(&mut self, dir: &Path) -> Result<(), StoreError> {
        if self.safe_dirs.contains(dir) {
            return Ok(());
        }
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir).to_path_buf();
        let mut cur = self.root.clone();
        let mut parts: Vec<String> = Vec::new();
        for c in rel.components() {
            let name = c.as_os_str().to_string_lossy().into_owned();
            cur.push(&name);
            parts.push(name);
            if self.safe_dirs.contains(&cur) {
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
                // New, in a directory only we can write: fix the mode the
                // umask may have narrowed, on the directory itself.
                Ok(()) => open_dir_nofollow(&cur)?
                    .set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| err(&cur, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let m = fs::symlink_metadata(&cur).map_err(|e| err(&cur, e))?;
                    check_existing(&cur, &m)?;
                }
                Err(e) => return Err(err(&cur, e)),
            }
            self.safe_dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// One directory per file system among `dirs` (and the root), by device.
    fn filesystems(
        &self,
        dirs: &std::collections::BTreeSet<PathBuf>,
    ) -> Result<Vec<PathBuf>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let mut by_dev = std::collections::BTreeMap::new();
        for d in std::iter::once(&self.root).chain(dirs) {
            let dev = fs::metadata(d).map_err(|e| err(d, e))?.dev();
            by_dev.entry(dev).or_insert_with(|| d.clone());
        }
        Ok(by_dev.into_values().collect())
    }

    /// syncfs(2) on each directory's file system. (Before Linux 5.8 syncfs
    /// reports no write-back errors; nothing in user space can change that.)
    fn sync_each(&self, dirs: &[PathBuf]) -> Result<(), StoreError> {
        for d in dirs {
            let f = File::open(d).map_err(|e| err(d, e))?;
            rustix::fs::syncfs(&f).map_err(|e| err(d, e))?;
        }
        Ok(())
    }

    fn full(&self, rel: &str) -> Result<PathBuf, StoreError> {
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            return Err(StoreError {
                path: rel.into(),
                message: "path escapes the output directory".into(),
                kind: StoreErrorKind::Unsafe,
            });
        }
        Ok(self.root.join(rel))
    }
}

/// Test-only crash injection: with `KPKI_TEST_ABORT_AFTER_WRITES=N` in the
/// environment, the process aborts (no clean-up, like `kill -9`) right after
/// the Nth file it puts in place. The crash-safety tests use it to stop a
/// run at an exact point; it is never set in production.
fn crash_point() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    static DONE: AtomicUsize = AtomicUsize::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("KPKI_TEST_ABORT_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(n) = limit
        && DONE.fetch_add(1, Ordering::SeqCst) + 1 >= *n
    {
        std::process::abort();
    }
}

impl PkiStore for DirStore {
    /// Reads an existing file: only a regular file (a FIFO never blocks, a
    /// device is never read), up to a cap (4 MiB; 256 MiB for the manifest
    /// and the journal, which grow with the node count).
    fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.full(rel)?;
        let cap = if rel.starts_with("kpki-") {
            256 << 20
        } else {
            crate::observe::walk::MAX_FILE_BYTES
        };
        // No stat first (a fleet's tree has tens of thousands of files): a
        // failed read asks whether the file is simply not there.
        match crate::observe::walk::read_regular_capped(&p, cap) {
            Ok(b) => Ok(Some(b)),
            Err(m) => match fs::metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(err(&p, e)),
                Ok(_) => Err(err(&p, m)),
            },
        }
    }

    /// Reads in parallel (a no-op run at fleet scale reads every key and
    /// certificate: opening each by path is most of its system time).
    fn read_many(
        &self,
        paths: &[&str],
    ) -> Vec<Result<Option<zeroize::Zeroizing<Vec<u8>>>, StoreError>> {
        use rayon::prelude::*;
        paths
            .par_iter()
            .map(|p| Ok(self.read(p)?.map(zeroize::Zeroizing::new)))
            .collect()
    }

    /// Compares in parallel (at fleet scale a no-op run compares tens of
    /// thousands of files; opening each by path is most of its cost).
    fn same_many(&self, items: &[(&str, &[u8])]) -> Vec<Result<Option<bool>, StoreError>> {
        use rayon::prelude::*;
        items
            .par_iter()
            .map(|(p, b)| {
                Ok(self
                    .read(p)?
                    .map(|x| zeroize::Zeroizing::new(x).as_slice() == *b))
            })
            .collect()
    }

    fn write(&mut self, rel: &str, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
        self.write_batch(&[(rel, bytes, mode)])
    }

    /// Writes many files crash-safely and fast: every temp file is written,
    /// the file system is flushed once (syncfs), the temp files are renamed
    /// in the given order, and the file system is flushed again.
    fn write_batch(&mut self, items: &[(&str, &[u8], Mode)]) -> Result<(), StoreError> {
        // Nothing to write, nothing to flush: a re-run that changes nothing
        // must not wait for other writers' data on the same file system.
        if items.is_empty() {
            return Ok(());
        }
        let mut staged = Vec::with_capacity(items.len());
        let mut dirs = std::collections::BTreeSet::new();
        for (rel, bytes, mode) in items {
            let p = self.full(rel)?;
            let dir = p.parent().unwrap_or(&self.root).to_path_buf();
            if dirs.insert(dir.clone()) {
                self.create_dirs(&dir)?;
            }
            // A random name, created exclusively (never through a planted
            // file or symlink), 0600 from the start; a public file is
            // widened on its descriptor, never by path.
            let mut tmp = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .permissions(fs::Permissions::from_mode(0o600))
                .tempfile_in(&dir)
                .map_err(|e| err(&p, e))?;
            if *mode == Mode::Public {
                tmp.as_file()
                    .set_permissions(fs::Permissions::from_mode(0o644))
                    .map_err(|e| err(&p, e))?;
            }
            tmp.write_all(bytes).map_err(|e| err(&p, e))?;
            // Close it (a batch may hold many thousands); the path is
            // removed if this run fails before renaming it.
            staged.push((p, tmp.into_temp_path()));
        }
        // One flush makes every temp file durable before any rename; a
        // second makes the renames durable. A crash in between leaves each
        // file either old or new, never partial.
        // `nodes/` (or any directory) may be a mount or a symlink to
        // another file system: flush every file system the batch touched.
        let filesystems = self.filesystems(&dirs)?;
        self.sync_each(&filesystems)?;
        for (p, tmp) in staged {
            tmp.persist(&p).map_err(|e| err(&p, e.error))?;
            crash_point();
        }
        self.sync_each(&filesystems)?;
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
