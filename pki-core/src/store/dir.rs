use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode as RawMode, OFlags};

use super::{Layout, Mode, PkiStore, StoreError, StoreErrorKind, parent_dir};

/// Temp files start with this (then random characters); a run removes
/// stale ones left by a crash.
pub const TEMP_PREFIX: &str = ".kpki-tmp-";

/// Present in the output directory while a batch is being written (made
/// before its first temp name, removed once its renames are durable): a run
/// that finds it knows a killed run may have left temp names anywhere in
/// the tree, and sweeps the whole tree (see [`DirStore::open_planned`]). A
/// temp name itself, so that a sweep removes it.
const UNFINISHED: &str = ".kpki-tmp-unfinished";

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
    /// Directories already checked (or created) by this run, relative to
    /// the root (`""` is the root), with their file system's device.
    safe_dirs: HashMap<String, u64>,
    /// Directories checked on the way to a read that no plan named (a
    /// rotation's staged keys, an imported certificate): a file is read
    /// only from where no other user can change it.
    read_checked: std::sync::RwLock<std::collections::HashSet<String>>,
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
    check_uid(path, meta.uid(), what)
}

/// [`check_owner`] of an owner's user id.
fn check_uid(path: &Path, uid: u32, what: &str) -> Result<(), StoreError> {
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
    check_dir_raw(path, meta.is_dir(), meta.uid(), meta.mode())
}

/// [`check_dir`] of a file type, owner and mode.
fn check_dir_raw(path: &Path, is_dir: bool, uid: u32, mode: u32) -> Result<(), StoreError> {
    if !is_dir {
        return Err(err(path, "exists and is not a directory"));
    }
    check_uid(path, uid, "this directory")?;
    let mode = mode & 0o7777;
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
/// Returns the device of the directory (its file system).
fn check_existing(path: &Path, lmeta: &fs::Metadata) -> Result<u64, StoreError> {
    if lmeta.file_type().is_symlink() {
        check_owner(path, lmeta, "this symbolic link")?;
        let meta = fs::metadata(path).map_err(|e| err(path, e))?;
        check_dir(path, &meta)?;
        return Ok(meta.dev());
    }
    check_dir(path, lmeta)?;
    Ok(lmeta.dev())
}

/// Makes a directory's entries durable (fsync of the directory).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}

/// Each ancestor of an output-relative directory, then the directory
/// itself (split at '/', never inside a multi-byte character).
fn prefixes(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/')
        .filter(|(i, _)| *i > 0)
        .map(|(i, _)| rel.get(..i).unwrap_or(rel))
        .chain(std::iter::once(rel))
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
        Self::lock_root(root, max, on_wait, true)
    }

    /// Checks, creates if needed and locks `root`; with `sweep`, sweeps the
    /// whole tree (see [`DirStore::sweep`]).
    fn lock_root(
        root: &Path,
        max: std::time::Duration,
        on_wait: impl FnOnce(),
        sweep: bool,
    ) -> Result<Self, StoreError> {
        let dev = match fs::symlink_metadata(root) {
            Ok(m) => check_existing(root, &m)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(root)
                    .map_err(|e| err(root, e))?;
                let m = fs::symlink_metadata(root).map_err(|e| err(root, e))?;
                check_existing(root, &m)?
            }
            Err(e) => return Err(err(root, e)),
        };
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
        let mut store = Self {
            root: root.to_path_buf(),
            safe_dirs: HashMap::from([(String::new(), dev)]),
            read_checked: std::sync::RwLock::new(std::collections::HashSet::new()),
            _lock: lock,
        };
        if sweep {
            let unfinished = store.unfinished()?;
            let (checked, saw_link) = store.sweep()?;
            store.safe_dirs.extend(checked);
            // A killed run's mark goes once the whole tree is swept. This
            // sweep follows no link: with a link in the tree, the mark
            // stays for `kpki issue` (see `open_planned`), which also sweeps
            // the planned directories reached through one.
            if unfinished && !saw_link {
                store.finish_unfinished()?;
            }
        }
        Ok(store)
    }

    /// Like [`DirStore::open_waiting`], for a run that knows the directories
    /// it reads and writes (an issuance: its layout's). Only those
    /// directories, and each directory on the way to them, are checked
    /// (nothing another user owns or can write), not the whole tree; the
    /// tree is swept whole only when a run was killed while writing (it
    /// left `.kpki-tmp-unfinished` behind), since only then can temp names be
    /// anywhere in it. A directory any later batch writes into is checked
    /// before that batch writes anything, as always.
    pub fn open_planned<'a>(
        root: &Path,
        max: std::time::Duration,
        on_wait: impl FnOnce(),
        dirs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, StoreError> {
        let mut store = Self::lock_root(root, max, on_wait, false)?;
        let unfinished = store.unfinished()?;
        if unfinished {
            let (checked, _) = store.sweep()?;
            store.safe_dirs.extend(checked);
        }
        // After a killed run, each planned directory reached through a link
        // of the user's (`nodes` on another volume, a bundle on its own
        // volume) is swept too, the link not followed any further.
        store.check_dirs(dirs, unfinished)?;
        if unfinished {
            // Only now, every sweep done: a sweep that failed half-way
            // leaves the mark for the next run.
            store.finish_unfinished()?;
        }
        Ok(store)
    }

    /// Whether [`UNFINISHED`] is there: a run was killed while writing.
    fn unfinished(&self) -> Result<bool, StoreError> {
        let marker = self.root.join(UNFINISHED);
        match fs::symlink_metadata(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(err(&marker, e)),
        }
    }

    /// Removes [`UNFINISHED`] (whatever it is: a sweep never follows it).
    fn finish_unfinished(&self) -> Result<(), StoreError> {
        let marker = self.root.join(UNFINISHED);
        let gone = match fs::symlink_metadata(&marker) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&marker),
            Ok(_) => fs::remove_file(&marker),
            Err(e) => Err(e),
        };
        match gone {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(&marker, e)),
        }
        sync_dir(&self.root)
    }

    /// Checks `dirs` (output-relative) and every directory on the way to
    /// them that exists, each once: one level at a time, each level's in
    /// parallel, nothing below a missing directory (a batch creates it).
    /// The error reported is the first of the shallowest level, in path
    /// order.
    fn check_dirs<'a>(
        &mut self,
        dirs: impl IntoIterator<Item = &'a str>,
        sweep_links: bool,
    ) -> Result<(), StoreError> {
        use rayon::prelude::*;
        let mut levels: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
        for d in dirs {
            let mut d = d.trim_end_matches('/');
            if !d.is_empty() {
                d = self.clean(d)?;
            }
            while !d.is_empty()
                && !self.safe_dirs.contains_key(d)
                && levels.entry(d.matches('/').count()).or_default().insert(d)
            {
                d = parent_dir(d);
            }
        }
        let mut missing: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for level in levels.into_values() {
            let todo: Vec<&str> = level
                .into_iter()
                .filter(|d| {
                    let parent = parent_dir(d);
                    if missing.contains(parent) {
                        missing.insert(d);
                        false
                    } else {
                        true
                    }
                })
                .collect();
            let root = &self.root;
            let metas: Vec<(&str, std::io::Result<fs::Metadata>)> = todo
                .par_iter()
                .map(|d| (*d, fs::symlink_metadata(root.join(d))))
                .collect();
            for (d, m) in metas {
                let cur = self.root.join(d);
                match m {
                    Ok(m) => {
                        let dev = check_existing(&cur, &m)?;
                        self.safe_dirs.insert(d.to_owned(), dev);
                        if sweep_links && m.file_type().is_symlink() {
                            self.sweep_link(&cur, d)?;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        missing.insert(d);
                    }
                    Err(e) => return Err(err(&cur, e)),
                }
            }
        }
        Ok(())
    }

    /// Sweeps the tree of a planned directory reached through the symbolic
    /// link at `cur` (output-relative `rel`), already checked; links inside
    /// it are not followed (a planned directory among them is swept on its
    /// own turn).
    fn sweep_link(&mut self, cur: &Path, rel: &str) -> Result<(), StoreError> {
        let fd = rustix::fs::open(
            cur,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            RawMode::empty(),
        )
        .map_err(|e| err(cur, e))?;
        let checked = Self::sweep_open(fd, cur, rel, &std::sync::atomic::AtomicBool::new(false))?;
        self.safe_dirs.extend(checked);
        Ok(())
    }

    /// Checks the directory a read of `file` goes into (`dir`), and each on
    /// the way to it, unless this run has: a file is read only from where
    /// no other user can change it (a plan's directories are checked at
    /// open; this covers the others, such as a rotation's staged keys). A
    /// missing directory, or a link of the user's that leads nowhere, holds
    /// nothing to read. An error names the file and, in its message, the
    /// directory refused.
    fn check_read_dir(&self, dir: &str, file: &Path) -> Result<(), StoreError> {
        let known = |d: &str| {
            self.safe_dirs.contains_key(d)
                || self
                    .read_checked
                    .read()
                    .map(|set| set.contains(d))
                    .unwrap_or(false)
        };
        if known(dir) {
            return Ok(());
        }
        let refused = |e: StoreError| StoreError {
            path: file.display().to_string(),
            message: format!("{}: {}", e.path, e.message),
            kind: e.kind,
        };
        for prefix in prefixes(dir) {
            if known(prefix) {
                continue;
            }
            let cur = self.root.join(prefix);
            match fs::symlink_metadata(&cur) {
                Ok(m) => {
                    if m.file_type().is_symlink()
                        && fs::metadata(&cur)
                            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
                    {
                        return Ok(());
                    }
                    check_existing(&cur, &m).map_err(refused)?;
                    if let Ok(mut set) = self.read_checked.write() {
                        set.insert(prefix.to_owned());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(refused(err(&cur, e))),
            }
        }
        Ok(())
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks every directory of the tree (see [`check_existing`]: nothing
    /// another user owns or can write, no symbolic link another user owns)
    /// and removes the temp files and staged directories (any name starting
    /// with [`TEMP_PREFIX`]) a killed run left, but not the [`UNFINISHED`]
    /// mark itself. Never follows a symbolic link (see
    /// [`DirStore::open_planned`] for the planned directories reached
    /// through one). Returns the directories checked (output-relative)
    /// with their devices (a batch need not check them again), and whether
    /// the tree holds a symbolic link (not followed).
    fn sweep(&self) -> Result<(Vec<(String, u64)>, bool), StoreError> {
        let fd = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            RawMode::empty(),
        )
        .map_err(|e| err(&self.root, e))?;
        let saw_link = std::sync::atomic::AtomicBool::new(false);
        let checked = Self::sweep_open(fd, &self.root, "", &saw_link)?;
        Ok((checked, saw_link.into_inner()))
    }

    /// Sweeps the open directory `fd` (at `path`, output-relative `rel`).
    /// Each subdirectory is opened relative to it (no symbolic link
    /// followed, `saw_link` set) and judged by `fstat` of its descriptor.
    fn sweep_open(
        fd: rustix::fd::OwnedFd,
        path: &Path,
        rel: &str,
        saw_link: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        use rayon::prelude::*;
        use rustix::fs::FileType;
        let mut dir = rustix::fs::Dir::new(fd).map_err(|e| err(path, e))?;
        let mut subdirs = Vec::new();
        while let Some(e) = dir.read() {
            let e = e.map_err(|e| err(path, e))?;
            let name = e.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            // The mark of a killed run is removed once every sweep is done
            // (`open_planned`), never half-way (also when a link leads here
            // again from inside the tree).
            if name.to_bytes() == UNFINISHED.as_bytes() {
                continue;
            }
            let temp = name.to_bytes().starts_with(TEMP_PREFIX.as_bytes());
            let mut ft = e.file_type();
            // The type readdir reports (no stat per file): a regular file
            // that is not a temp file needs nothing here, and at fleet scale
            // the tree holds tens of thousands of them.
            if !temp && ft == FileType::RegularFile {
                continue;
            }
            let p = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let fd = dir.fd().map_err(|x| err(path, x))?;
            if ft == FileType::Unknown || ft == FileType::Symlink {
                let Ok(st) = rustix::fs::statat(fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                else {
                    continue;
                };
                ft = FileType::from_raw_mode(st.st_mode);
                if ft == FileType::Symlink && !temp {
                    check_uid(&p, st.st_uid, "this symbolic link")?;
                    saw_link.store(true, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            }
            if temp && ft == FileType::Directory {
                // A subtree a killed run was building (see
                // `DirStore::write_staged`): removed whole. Removal never
                // follows a symbolic link inside it.
                // (Gone already: swept through another way to it.)
                match fs::remove_dir_all(&p) {
                    Err(x) if x.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err(&p, x));
                    }
                    _ => {}
                }
            } else if temp {
                // Unlinking never follows a symlink: whoever planted it, it goes.
                match rustix::fs::unlinkat(fd, name, rustix::fs::AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                    Err(x) => return Err(err(&p, x)),
                }
            } else if ft == FileType::Directory {
                subdirs.push(name.to_owned());
            }
        }
        let parent = dir.fd().map_err(|x| err(path, x))?;
        // Subdirectories are swept in parallel (a fleet's tree has tens of
        // thousands); the error reported is the first in directory order.
        let found: Vec<Result<Vec<(String, u64)>, StoreError>> = subdirs
            .par_iter()
            .map(|name| {
                let lossy = name.to_string_lossy();
                let p = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                let fd = match rustix::fs::openat(
                    parent,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    RawMode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Gone since it was listed: nothing to check.
                    Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
                    Err(x) => return Err(err(&p, x)),
                };
                let st = rustix::fs::fstat(&fd).map_err(|x| err(&p, x))?;
                check_dir_raw(&p, true, st.st_uid, st.st_mode)?;
                let child = if rel.is_empty() {
                    lossy.into_owned()
                } else {
                    format!("{rel}/{lossy}")
                };
                let mut out = Self::sweep_open(fd, &p, &child, saw_link)?;
                // Only names kpki could write are remembered as checked.
                if name.to_str().is_ok() {
                    out.push((child, st.st_dev));
                }
                Ok(out)
            })
            .collect();
        let mut out = Vec::new();
        for r in found {
            out.extend(r?);
        }
        Ok(out)
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
        // Its directories are no longer known to exist.
        let under = format!("{rel}/");
        self.safe_dirs
            .retain(|d, _| d.as_str() != rel && !d.starts_with(&under));
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
        sync_dir(&nodes)
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

/// The mode of a directory kpki creates, from its output-relative path.
/// Inside a node bundle (`nodes/<node>/...`) directories mirror a node's
/// file system, so they are 0755 (`rsync -a` must not make a node's /etc
/// private) except `pki` directories, which hold keys: 0700. Everything
/// else is 0700.
fn dir_mode(rel: &str) -> u32 {
    let parts: Vec<&str> = rel.split('/').collect();
    let in_bundle = parts.len() >= 2 && parts.first().is_some_and(|p| *p == "nodes");
    let holds_keys = parts.iter().skip(2).any(|p| *p == "pki");
    if in_bundle && !holds_keys {
        0o755
    } else {
        0o700
    }
}

/// The process's umask, read once from `/proc/self/status` (never with
/// umask(2), which changes it process-wide for a moment); `None` if it
/// cannot be read.
fn umask() -> Option<u32> {
    use std::sync::OnceLock;
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let v = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(v.trim(), 8).ok()
    })
}

/// Whether something created with `mode` may have been narrowed by the
/// umask (then its mode is set again on its descriptor).
fn narrowed(mode: u32) -> bool {
    umask().is_none_or(|m| m & mode != 0)
}

/// A random name starting with [`TEMP_PREFIX`].
fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())
}

/// Creates `name` in `dir` exclusively (never through a planted file or
/// symlink) with `mode`, writes `bytes` and closes it.
fn create_file(
    dir: impl rustix::fd::AsFd,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        RawMode::from_raw_mode(mode),
    )?;
    if narrowed(mode) {
        rustix::fs::fchmod(&fd, RawMode::from_raw_mode(mode))?;
    }
    File::from(fd).write_all(bytes)
}

/// Creates directory `name` in `dir` with `mode` (fixing what the umask
/// narrowed on the directory itself, never by path).
fn create_dir(dir: impl rustix::fd::AsFd, name: &str, mode: u32) -> std::io::Result<()> {
    let dir = dir.as_fd();
    rustix::fs::mkdirat(dir, name, RawMode::from_raw_mode(mode))?;
    if narrowed(mode) {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            RawMode::empty(),
        )?;
        rustix::fs::fchmod(&fd, RawMode::from_raw_mode(mode))?;
    }
    Ok(())
}

/// Renames `from` to `to`, refusing to replace an existing `to` where the
/// file system can say so.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags};
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::from(rustix::io::Errno::EXIST));
            }
            fs::rename(from, to)
        }
        r => r.map_err(std::io::Error::from),
    }
}

/// Where one directory of a batch is: already there (on this device), or
/// under the highest missing directory `top`.
enum DirState {
    Exists(u64),
    Missing(String),
}

/// A missing directory tree a batch builds under a temp name next to where
/// it goes, then renames into place at once.
struct Stage {
    /// Output-relative path of the tree's top directory.
    top: String,
    /// The temp directory (in the top's parent).
    path: PathBuf,
    /// The device of the parent.
    dev: u64,
    /// The batch index of the tree's last file: renamed in its place.
    last: usize,
    /// Directories below the top (output-relative), parents first.
    dirs: BTreeSet<String>,
}

/// What a batch has made and not yet put in place; removed if the batch
/// fails (a killed run's leftovers are swept by the next one).
#[derive(Default)]
struct Pending {
    files: Vec<Option<PathBuf>>,
    stages: Vec<Option<PathBuf>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        for f in self.files.iter().flatten() {
            let _ = fs::remove_file(f);
        }
        for d in self.stages.iter().flatten() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Files to write into an existing directory: (batch index, bytes, mode).
type DirectFiles<'a> = Vec<(usize, &'a [u8], u32)>;
/// Directories to create in a stage (path inside it, mode).
type StagedDirs = Vec<(String, u32)>;
/// Files to write in a stage (path inside it, bytes, mode).
type StagedFiles<'a> = Vec<(&'a str, &'a [u8], u32)>;

/// One unit of parallel writing.
enum Unit<'a> {
    /// Temp files into an existing directory.
    Direct(PathBuf, DirectFiles<'a>),
    /// Part of a staged tree (stage index): its directories, then its files.
    Staged(usize, StagedDirs, StagedFiles<'a>),
}

impl DirStore {
    /// Whether output-relative directory `rel` exists (checking each
    /// existing level on the way, see [`check_existing`]) or which of its
    /// ancestors is the highest one missing. `missing` holds the missing
    /// tops already found in this batch.
    fn dir_state(
        &mut self,
        rel: &str,
        missing: &HashMap<String, usize>,
    ) -> Result<DirState, StoreError> {
        if let Some(dev) = self.safe_dirs.get(rel) {
            return Ok(DirState::Exists(*dev));
        }
        let mut dev = self.safe_dirs.get("").copied().unwrap_or_default();
        for prefix in prefixes(rel) {
            if let Some(d) = self.safe_dirs.get(prefix) {
                dev = *d;
                continue;
            }
            if missing.contains_key(prefix) {
                return Ok(DirState::Missing(prefix.to_owned()));
            }
            let cur = self.root.join(prefix);
            match fs::symlink_metadata(&cur) {
                Ok(m) => {
                    dev = check_existing(&cur, &m)?;
                    self.safe_dirs.insert(prefix.to_owned(), dev);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(DirState::Missing(prefix.to_owned()));
                }
                Err(e) => return Err(err(&cur, e)),
            }
        }
        Ok(DirState::Exists(dev))
    }

    /// Writes a batch crash-safely. Files into existing directories are
    /// written to temp files; a missing directory tree (`nodes` on a first
    /// run, `nodes/<node>` for a new node) is built whole under a temp name
    /// next to where it goes, its files under their final names. Files are
    /// written in parallel; the file system is flushed once (syncfs), so
    /// every file is durable before anything is renamed; then the temp
    /// files are renamed in the given order, each staged tree at the
    /// position of its last file; a second flush makes the renames
    /// durable. A crash leaves each file either old or new, never partial,
    /// and the next run sweeps the temp names.
    fn write_staged(&mut self, items: &[(&str, &[u8], Mode)]) -> Result<(), StoreError> {
        use rayon::prelude::*;
        // Nothing to write, nothing to flush: a re-run that changes nothing
        // must not wait for other writers' data on the same file system.
        if items.is_empty() {
            return Ok(());
        }
        // Where each file goes: (directory, name, stage index if staged).
        let mut stages: Vec<Stage> = Vec::new();
        let mut stage_of: HashMap<String, usize> = HashMap::new();
        let mut direct: BTreeMap<String, DirectFiles> = BTreeMap::new();
        let mut staged_files: Vec<StagedFiles> = Vec::new();
        let mut place: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut devs: BTreeMap<u64, PathBuf> = BTreeMap::new();
        if let Some(d) = self.safe_dirs.get("") {
            devs.insert(*d, self.root.clone());
        }
        // Sized once: grown by doubling, the maps of a 5,000-node batch
        // would hold their old and new tables at the batch's peak memory.
        let mut known: HashMap<&str, Option<usize>> = HashMap::with_capacity(items.len());
        let mut staged_at: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        for (i, (rel, bytes, mode)) in items.iter().enumerate() {
            let rel = self.clean(rel)?;
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            if name.is_empty() {
                return Err(err(Path::new(rel), "is not a file name"));
            }
            let fmode = match mode {
                Mode::Public => 0o644,
                Mode::Secret => 0o600,
            };
            let st = match known.get(dir) {
                Some(s) => *s,
                None => {
                    let s = match self.dir_state(dir, &stage_of)? {
                        DirState::Exists(dev) => {
                            devs.entry(dev).or_insert_with(|| self.root.join(dir));
                            None
                        }
                        DirState::Missing(top) => Some(match stage_of.get(&top) {
                            Some(s) => *s,
                            None => {
                                let parent = parent_dir(&top);
                                let dev = match self.dir_state(parent, &stage_of)? {
                                    DirState::Exists(dev) => dev,
                                    DirState::Missing(_) => {
                                        return Err(err(&self.root.join(parent), "vanished"));
                                    }
                                };
                                devs.entry(dev).or_insert_with(|| self.root.join(parent));
                                stages.push(Stage {
                                    path: self.root.join(parent).join(temp_name()),
                                    top: top.clone(),
                                    dev,
                                    last: i,
                                    dirs: BTreeSet::new(),
                                });
                                staged_files.push(Vec::new());
                                stage_of.insert(top, stages.len() - 1);
                                stages.len() - 1
                            }
                        }),
                    };
                    known.insert(dir, s);
                    s
                }
            };
            match st {
                None => direct
                    .entry(dir.to_owned())
                    .or_default()
                    .push((i, *bytes, fmode)),
                Some(s) => {
                    let stage = stages
                        .get_mut(s)
                        .ok_or_else(|| err(Path::new(rel), "no stage"))?;
                    stage.last = i;
                    // Every directory between the top and this file's.
                    let mut d = dir;
                    while d.len() > stage.top.len() && stage.dirs.insert(d.to_owned()) {
                        d = parent_dir(d);
                    }
                    let inner = rel.get(stage.top.len() + 1..).unwrap_or(name);
                    if let Some(f) = staged_files.get_mut(s) {
                        // The same path twice: the later bytes win, as
                        // when renamed in order.
                        match staged_at.get(rel) {
                            Some(&k) => {
                                if let Some(x) = f.get_mut(k) {
                                    *x = (inner, *bytes, fmode);
                                }
                            }
                            None => {
                                staged_at.insert(rel, f.len());
                                f.push((inner, *bytes, fmode));
                            }
                        }
                    }
                }
            }
            place.push(st);
        }
        // Marked unfinished before the first temp name exists (durably: a
        // crash must not keep a temp name and lose the mark).
        let marked = self.mark_unfinished()?;
        let mut pending = Pending::default();
        // The stage directories: 0700 until renamed into place.
        // (No descriptor is kept per stage: a spec that grows by thousands
        // of nodes makes as many stages, more than a process may hold open.)
        for s in &stages {
            rustix::fs::mkdir(&s.path, RawMode::from_raw_mode(0o700))
                .map_err(|e| err(&self.root.join(&s.top), e))?;
            pending.stages.push(Some(s.path.clone()));
            if narrowed(0o700) {
                open_dir_nofollow(&s.path)?
                    .set_permissions(fs::Permissions::from_mode(0o700))
                    .map_err(|e| err(&self.root.join(&s.top), e))?;
            }
        }
        // Units of parallel work: each existing directory's temp files;
        // each first-level subtree of a stage (a node's bundle under
        // `nodes`), its directories then its files.
        let mut units: Vec<Unit> = direct
            .into_iter()
            .map(|(d, f)| Unit::Direct(self.root.join(d), f))
            .collect();
        for (si, (s, files)) in stages.iter().zip(staged_files).enumerate() {
            let mut parts: BTreeMap<&str, (StagedDirs, StagedFiles)> = BTreeMap::new();
            for d in &s.dirs {
                let inner = d.get(s.top.len() + 1..).unwrap_or_default();
                let first = inner.split('/').next().unwrap_or_default();
                parts
                    .entry(first)
                    .or_default()
                    .0
                    .push((inner.to_owned(), dir_mode(d)));
            }
            let mut top_files = Vec::new();
            for (inner, b, m) in files {
                match inner.split_once('/') {
                    Some((first, _)) => {
                        let first = s
                            .dirs
                            .get(&format!("{}/{first}", s.top))
                            .and_then(|d| d.get(s.top.len() + 1..))
                            .unwrap_or_default();
                        parts.entry(first).or_default().1.push((inner, b, m));
                    }
                    None => top_files.push((inner, b, m)),
                }
            }
            units.push(Unit::Staged(si, Vec::new(), top_files));
            units.extend(parts.into_values().map(|(d, f)| Unit::Staged(si, d, f)));
        }
        let written: Vec<Result<Vec<(usize, PathBuf)>, StoreError>> = units
            .par_iter()
            .map(|u| match u {
                Unit::Direct(dir, files) => {
                    let fd = rustix::fs::open(
                        dir,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        RawMode::empty(),
                    )
                    .map_err(|e| err(dir, e))?;
                    let mut out = Vec::with_capacity(files.len());
                    for (i, b, m) in files {
                        let name = temp_name();
                        let p = dir.join(&name);
                        if let Err(e) = create_file(&fd, &name, b, *m) {
                            // This unit's own temp files go with it.
                            let _ = fs::remove_file(&p);
                            for (_, q) in out {
                                let _ = fs::remove_file(q);
                            }
                            // Named by the file it was to become.
                            let target = items
                                .get(*i)
                                .map_or_else(|| p.clone(), |(rel, _, _)| self.root.join(rel));
                            return Err(err(&target, e));
                        }
                        out.push((*i, p));
                    }
                    Ok(out)
                }
                Unit::Staged(si, dirs, files) => {
                    let Some(s) = stages.get(*si) else {
                        return Ok(Vec::new());
                    };
                    // Errors name the path the file or directory was to get.
                    let target = self.root.join(&s.top);
                    let fd = open_dir_nofollow(&s.path).map_err(|e| err(&target, e.message))?;
                    for (d, m) in dirs {
                        create_dir(&fd, d, *m).map_err(|e| err(&target.join(d), e))?;
                    }
                    for (f, b, m) in files {
                        create_file(&fd, f, b, *m).map_err(|e| err(&target.join(f), e))?;
                    }
                    Ok(Vec::new())
                }
            })
            .collect();
        pending.files = vec![None; items.len()];
        let mut first_err = None;
        for r in written {
            match r {
                Ok(v) => {
                    for (i, p) in v {
                        if let Some(t) = pending.files.get_mut(i) {
                            *t = Some(p);
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // One flush makes every new file durable before any rename; a
        // second makes the renames durable. `nodes/` (or any directory)
        // may be a mount or a symlink to another file system: every file
        // system the batch touched is flushed.
        self.sync_each(devs.values())?;
        for (i, st) in place.iter().enumerate() {
            match st {
                None => {
                    let (Some(slot), Some((rel, _, _))) = (pending.files.get_mut(i), items.get(i))
                    else {
                        continue;
                    };
                    let Some(tmp) = slot.take() else { continue };
                    let p = self.root.join(rel);
                    if let Err(e) = fs::rename(&tmp, &p) {
                        *slot = Some(tmp);
                        return Err(err(&p, e));
                    }
                    crash_point();
                }
                Some(si) => {
                    let Some(s) = stages.get(*si) else { continue };
                    if s.last != i {
                        continue;
                    }
                    let to = self.root.join(&s.top);
                    let mode = dir_mode(&s.top);
                    if mode != 0o700 {
                        open_dir_nofollow(&s.path)?
                            .set_permissions(fs::Permissions::from_mode(mode))
                            .map_err(|e| err(&to, e))?;
                    }
                    rename_noreplace(&s.path, &to).map_err(|e| err(&to, e))?;
                    if let Some(p) = pending.stages.get_mut(*si) {
                        *p = None;
                    }
                    // Its top is known safe now; the directories inside
                    // (this run made them) are checked when a later batch
                    // writes there, if one does (a fleet's first run would
                    // otherwise remember 60,000 paths at its peak memory).
                    self.safe_dirs.insert(s.top.clone(), s.dev);
                    crash_point();
                }
            }
        }
        self.sync_each(devs.values())?;
        // Every rename is durable: no temp name of this batch is left. A
        // mark this batch found (a killed run's, not swept yet: `rotate`
        // sweeps no linked directory) stays for `issue` to sweep.
        if !marked {
            return Ok(());
        }
        match rustix::fs::unlink(self.root.join(UNFINISHED)) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(err(&self.root.join(UNFINISHED), e)),
        }
    }

    /// Creates [`UNFINISHED`] and makes its name durable: whether it did
    /// (`false`: it was there).
    fn mark_unfinished(&self) -> Result<bool, StoreError> {
        let fd = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            RawMode::empty(),
        )
        .map_err(|e| err(&self.root, e))?;
        match create_file(&fd, UNFINISHED, b"", 0o600) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(err(&self.root.join(UNFINISHED), e)),
        }
        rustix::fs::fsync(&fd).map_err(|e| err(&self.root, e))?;
        Ok(true)
    }

    /// `rel` with a check that it stays inside the output directory.
    fn clean<'a>(&self, rel: &'a str) -> Result<&'a str, StoreError> {
        if rel.starts_with('/') || rel.split('/').any(|c| matches!(c, ".." | "." | "")) {
            return Err(StoreError {
                path: rel.into(),
                message: "path escapes the output directory".into(),
                kind: StoreErrorKind::Unsafe,
            });
        }
        Ok(rel)
    }

    /// syncfs(2) on each file system (one directory of each). (Before
    /// Linux 5.8 syncfs reports no write-back errors; nothing in user space
    /// can change that.)
    fn sync_each<'a>(&self, dirs: impl Iterator<Item = &'a PathBuf>) -> Result<(), StoreError> {
        for d in dirs {
            let f = File::open(d).map_err(|e| err(d, e))?;
            rustix::fs::syncfs(&f).map_err(|e| err(d, e))?;
        }
        Ok(())
    }
}

/// The names in the output directory and in those of its directories a
/// batch of reads goes into (`nodes/` lists every node in one getdents), so
/// that a read under a missing directory needs no system call.
struct Present {
    /// The root's entries; `None` if it could not be listed (then every
    /// path may exist).
    top: Option<std::collections::HashSet<String>>,
    /// Entries of first-level directories; `None` when not listed.
    second: HashMap<String, Option<std::collections::HashSet<String>>>,
}

/// SHA-256 of `bytes`.
/// The names in `dir`, `None` if it cannot be listed.
fn list(dir: &Path) -> Option<std::collections::HashSet<String>> {
    let names = fs::read_dir(dir)
        .ok()?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .ok()?;
    Some(names)
}

impl Present {
    /// Whether `rel` may exist (`false` only when a directory on its way
    /// was listed without it).
    fn may_exist(&self, rel: &str) -> bool {
        let Some(top) = &self.top else { return true };
        let mut parts = rel.split('/');
        let first = parts.next().unwrap_or_default();
        if first.is_empty() || first == "." || first == ".." {
            return true;
        }
        if !top.contains(first) {
            return false;
        }
        match (parts.next(), parts.next()) {
            (Some(second), Some(_)) if !matches!(second, "" | "." | "..") => {
                match self.second.get(first) {
                    Some(Some(names)) => names.contains(second),
                    _ => true,
                }
            }
            _ => true,
        }
    }
}

impl DirStore {
    /// Lists the root and each first-level directory `paths` go below
    /// (see [`Present`]).
    fn present<'a>(&self, paths: impl Iterator<Item = &'a str>) -> Present {
        let top = list(&self.root);
        let mut second = HashMap::new();
        if let Some(top) = &top {
            for p in paths {
                let mut parts = p.split('/');
                let (Some(first), Some(_), Some(_)) = (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if second.contains_key(first) || !top.contains(first) {
                    continue;
                }
                if matches!(first, "" | "." | "..") {
                    continue;
                }
                second.insert(first.to_owned(), list(&self.root.join(first)));
            }
        }
        Present { top, second }
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
        self.check_read_dir(parent_dir(rel), &p)?;
        let cap = if rel.starts_with("kpki-") {
            256 << 20
        } else {
            crate::observe::walk::MAX_FILE_BYTES
        };
        // No stat first (a fleet's tree has tens of thousands of files): a
        // failed read asks whether the file is simply not there.
        match crate::observe::walk::read_regular_capped_kind(&p, cap) {
            Ok(b) => Ok(Some(b)),
            // Not there (the file or a directory on its way): no need to ask again.
            Err((Some(std::io::ErrorKind::NotFound), _)) => Ok(None),
            Err((_, m)) => match fs::metadata(&p) {
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
        let present = self.present(paths.iter().copied());
        paths
            .par_iter()
            .map(|p| {
                if !present.may_exist(p) {
                    return Ok(None);
                }
                Ok(self.read(p)?.map(zeroize::Zeroizing::new))
            })
            .collect()
    }

    /// Compares in parallel (at fleet scale a no-op run compares tens of
    /// thousands of files; opening each by path is most of its cost).
    fn same_many(&self, items: &[(&str, &[u8])]) -> Vec<Result<Option<bool>, StoreError>> {
        use rayon::prelude::*;
        let present = self.present(items.iter().map(|(p, _)| *p));
        items
            .par_iter()
            .map(|(p, b)| {
                if !present.may_exist(p) {
                    return Ok(None);
                }
                Ok(self
                    .read(p)?
                    .map(|x| zeroize::Zeroizing::new(x).as_slice() == *b))
            })
            .collect()
    }

    fn write(&mut self, rel: &str, bytes: &[u8], mode: Mode) -> Result<(), StoreError> {
        self.write_batch(&[(rel, bytes, mode)])
    }

    /// Checks the directory of each path, and each on the way to it, that
    /// exists (see [`DirStore::open_planned`]).
    fn check_writes(&mut self, paths: &[&str]) -> Result<(), StoreError> {
        let mut dirs = Vec::with_capacity(paths.len());
        for p in paths {
            let p = self.clean(p)?;
            dirs.push(parent_dir(p));
        }
        self.check_dirs(dirs, false)
    }

    /// Writes many files crash-safely and fast. Files into existing
    /// directories go to temp files; a missing directory tree (`nodes` on a
    /// first run, `nodes/<node>` for a new node) is built whole under a
    /// temp name next to where it goes. Everything is written in parallel
    /// and flushed once (syncfs) before the first rename; the renames
    /// follow the given order (a new tree at the place of its last file)
    /// and are flushed again. A crash leaves each file old or new, never
    /// partial; the next run removes the temp names.
    fn write_batch(&mut self, items: &[(&str, &[u8], Mode)]) -> Result<(), StoreError> {
        self.write_staged(items)
    }

    fn remove(&mut self, rel: &str) -> Result<(), StoreError> {
        let p = self.full(rel)?;
        match fs::remove_file(&p) {
            Ok(()) => sync_dir(p.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Every name under `dir` (recursively, not following links).
    fn names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            out.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                out.extend(names(&e.path()));
            }
        }
        out
    }

    #[test]
    fn staged_leftover_dirs_are_swept_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("out");
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep.key"), b"x").unwrap();
        // A killed run's staged trees: at the top and inside `nodes/`.
        let top = root.join(format!("{TEMP_PREFIX}0123456789abcdef"));
        fs::create_dir_all(top.join("w1/etc/kubernetes/pki")).unwrap();
        fs::write(top.join("w1/etc/kubernetes/pki/ca.key"), b"k").unwrap();
        std::os::unix::fs::symlink(&outside, top.join("w1/link")).unwrap();
        let inner = root
            .join("nodes")
            .join(format!("{TEMP_PREFIX}fedcba9876543210"));
        fs::create_dir_all(inner.join("etc")).unwrap();
        fs::write(inner.join("etc/a.crt"), b"c").unwrap();
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("nodes"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        let store = DirStore::open(&root).unwrap();
        assert!(!top.exists() && !inner.exists());
        assert!(root.join("nodes").is_dir());
        assert_eq!(fs::read(outside.join("keep.key")).unwrap(), b"x");
        assert!(!names(&root).iter().any(|n| n.starts_with(TEMP_PREFIX)));
        drop(store);
    }

    #[test]
    fn batch_stages_new_trees_with_final_modes_and_later_bytes_win() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("out");
        let mut s = DirStore::open(&root).unwrap();
        s.write_batch(&[
            ("cluster/pki/ca.key", b"k1", Mode::Secret),
            ("nodes/w1/etc/kubernetes/pki/ca.crt", b"c1", Mode::Public),
            ("nodes/w1/etc/kubernetes/kubelet.conf", b"kc", Mode::Secret),
            ("kpki-manifest.json", b"m", Mode::Public),
            ("cluster/pki/ca.key", b"k2", Mode::Secret),
        ])
        .unwrap();
        assert_eq!(fs::read(root.join("cluster/pki/ca.key")).unwrap(), b"k2");
        assert_eq!(mode(&root.join("cluster/pki/ca.key")), 0o600);
        assert_eq!(mode(&root.join("kpki-manifest.json")), 0o644);
        assert_eq!(
            mode(&root.join("nodes/w1/etc/kubernetes/pki/ca.crt")),
            0o644
        );
        assert_eq!(mode(&root.join("cluster")), 0o700);
        assert_eq!(mode(&root.join("nodes")), 0o700);
        assert_eq!(mode(&root.join("nodes/w1")), 0o755);
        assert_eq!(mode(&root.join("nodes/w1/etc/kubernetes")), 0o755);
        assert_eq!(mode(&root.join("nodes/w1/etc/kubernetes/pki")), 0o700);
        // A node added later: its bundle is a new tree inside `nodes/`;
        // files into existing directories replace the old ones.
        s.write_batch(&[
            (
                "nodes/w2/var/lib/kubelet/pki/kubelet.key",
                b"w2",
                Mode::Secret,
            ),
            ("nodes/w1/etc/kubernetes/pki/ca.crt", b"c2", Mode::Public),
        ])
        .unwrap();
        assert_eq!(mode(&root.join("nodes/w2")), 0o755);
        assert_eq!(mode(&root.join("nodes/w2/var/lib/kubelet/pki")), 0o700);
        assert_eq!(
            fs::read(root.join("nodes/w1/etc/kubernetes/pki/ca.crt")).unwrap(),
            b"c2"
        );
        assert!(!names(&root).iter().any(|n| n.starts_with(TEMP_PREFIX)));
        // Reads: present, absent under a missing directory, absent in one.
        let r = s.read_many(&[
            "nodes/w2/var/lib/kubelet/pki/kubelet.key",
            "nodes/w9/a/b",
            "x/y/z",
            "cluster/pki/nope",
        ]);
        assert_eq!(
            r[0].as_ref().unwrap().as_deref().map(|b| b.to_vec()),
            Some(b"w2".to_vec())
        );
        assert!(r[1..].iter().all(|x| x.as_ref().unwrap().is_none()));
        assert!(s.write_batch(&[("a/../../x", b"x", Mode::Public)]).is_err());
        // Compared after `read_many` and after this store writes the file
        // again.
        let key = "nodes/w2/var/lib/kubelet/pki/kubelet.key";
        let _ = s.read_many(&[key, "cluster/pki/ca.key", "cluster/pki/gone.key"]);
        let same = |s: &DirStore, items: &[(&str, &[u8])]| -> Vec<Option<bool>> {
            s.same_many(items).into_iter().map(|r| r.unwrap()).collect()
        };
        assert_eq!(
            same(
                &s,
                &[
                    (key, b"w2"),
                    ("cluster/pki/ca.key", b"k1"),
                    ("cluster/pki/gone.key", b"g")
                ]
            ),
            vec![Some(true), Some(false), None]
        );
        s.write_batch(&[
            (key, b"w3", Mode::Secret),
            ("cluster/pki/gone.key", b"g", Mode::Secret),
        ])
        .unwrap();
        assert_eq!(
            same(
                &s,
                &[(key, b"w2"), (key, b"w3"), ("cluster/pki/gone.key", b"g")]
            ),
            vec![Some(false), Some(true), Some(true)]
        );
        s.remove(key).unwrap();
        assert_eq!(same(&s, &[(key, b"w3")]), vec![None]);
    }
}
