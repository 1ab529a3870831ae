//! Walking and reading a directory under audit without trusting it.
//!
//! An audited directory may hold anything: symlinked directory loops, FIFOs
//! that block a reader forever, links to `/dev/zero`, sparse files of many
//! GiB. Only regular files are read (open non-blocking, then `fstat` the open
//! descriptor: no check-then-open race), each up to [`MAX_FILE_BYTES`];
//! directories are walked once each, by (device, inode), at most
//! [`MAX_DEPTH`] levels deep, never through a symbolic link that leaves the
//! checked directory, and at most [`MAX_ENTRIES`] entries in all. Whatever is
//! skipped becomes a [`FileProblem`] naming it: an audit accounts for every
//! file.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use super::FileProblem;

/// The largest file `kpki check` reads (4 MiB): certificates, keys and
/// kubeconfigs are a few KiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// How many directory levels below the checked directory are walked.
pub const MAX_DEPTH: usize = 16;
/// How many entries a walk looks at before it stops (a 5,000-node kpki
/// directory holds about 100,000).
pub const MAX_ENTRIES: usize = 1_000_000;
/// The size cap as finding messages name it.
const CAP_NAME: &str = "4 MiB";
/// Names whose contents an audit reads (certificates, keys, kubeconfigs).
pub(crate) const PKI_EXTENSIONS: &[&str] =
    &[".crt", ".key", ".pem", ".pub", ".conf", ".kubeconfig"];

/// What a file system object is, for messages ("a FIFO").
fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "an unknown kind of file"
    }
}

/// Reads `path` if it is a regular file of at most `cap` bytes; otherwise a
/// message saying why not ("is not a regular file (a FIFO)"), to follow the
/// file's name. The file is opened non-blocking (a FIFO never blocks the
/// open) and judged by `fstat` of the open descriptor.
pub(crate) fn read_regular_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    read_regular_capped_kind(path, cap).map_err(|(_, m)| m)
}

/// [`read_regular_capped`], also saying how the open failed: `Some(kind)`
/// when the file could not be opened (`NotFound`: no such file, so a caller
/// need not ask again), `None` when it was opened but not read.
pub(crate) fn read_regular_capped_kind(
    path: &Path,
    cap: u64,
) -> Result<Vec<u8>, (Option<std::io::ErrorKind>, String)> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        let e = std::io::Error::from(e);
        (Some(e.kind()), format!("cannot be read: {e}"))
    })?;
    read_open_capped(fd, cap).map_err(|m| (None, m))
}

/// Reads an open descriptor if it is a regular file of at most `cap` bytes.
fn read_open_capped(fd: rustix::fd::OwnedFd, cap: u64) -> Result<Vec<u8>, String> {
    let mut file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "is not a regular file ({}): not read",
            kind_of(meta.file_type())
        ));
    }
    let too_big = || {
        if cap == MAX_FILE_BYTES {
            format!("is larger than the {CAP_NAME} cap: not read")
        } else {
            format!("is larger than the {cap}-byte cap: not read")
        }
    };
    if meta.len() > cap {
        return Err(too_big());
    }
    // The size fstat gave is what is read (one read for a small file, no
    // second one to find the end: tens of thousands of files at fleet
    // scale); bytes appended after the fstat are not. A regular file
    // claiming size 0 (some pseudo file systems) is read to its end, never
    // past the cap.
    let len = usize::try_from(meta.len()).map_err(|_| too_big())?;
    if len > 0 {
        let mut out = vec![0u8; len];
        let mut filled = 0;
        while let Some(rest) = out.get_mut(filled..).filter(|r| !r.is_empty()) {
            match file.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot be read: {e}")),
            }
        }
        out.truncate(filled);
        return Ok(out);
    }
    let mut out = Vec::new();
    (&mut file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if out.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(out)
}

/// [`read_regular_capped`] with the [`MAX_FILE_BYTES`] cap.
pub(crate) fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    read_regular_capped(path, MAX_FILE_BYTES)
}

/// A directory walked.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// Regular files (symbolic links to regular files included), relative to
    /// the root, `/`-separated, sorted.
    pub(crate) files: Vec<String>,
    /// Everything that was not walked or will not be read, with the reason.
    pub(crate) problems: Vec<FileProblem>,
}

struct Walker<'a> {
    root: &'a Path,
    /// The root with every symbolic link resolved.
    real_root: Option<std::path::PathBuf>,
    /// Entries looked at so far.
    seen: usize,
    /// (device, inode) of each directory walked -> its relative path.
    visited: BTreeMap<(u64, u64), String>,
    out: Walk,
}

/// Walks `root`. Never follows a directory twice, never goes deeper than
/// [`MAX_DEPTH`], never reads a file.
pub(crate) fn walk(root: &Path) -> Walk {
    let mut w = Walker {
        root,
        real_root: std::fs::canonicalize(root).ok(),
        seen: 0,
        visited: BTreeMap::new(),
        out: Walk::default(),
    };
    w.dir("", 0);
    w.out.files.sort();
    w.out
}

fn display(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}

impl Walker<'_> {
    fn problem(&mut self, rel: &str, message: String) {
        self.out.problems.push(FileProblem {
            path: display(rel).to_owned(),
            message,
        });
    }

    /// Walks the directory at `rel` (`""`: the root), `depth` levels down.
    fn dir(&mut self, rel: &str, depth: usize) {
        let path = self.root.join(rel);
        let flags = OFlags::RDONLY
            | OFlags::DIRECTORY
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let fd = match rustix::fs::open(&path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                let e = std::io::Error::from(e);
                self.problem(rel, format!("cannot be listed: {e}"));
                return;
            }
        };
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(e) => {
                let e = std::io::Error::from(e);
                self.problem(rel, format!("cannot be listed: {e}"));
                return;
            }
        };
        let id = (st.st_dev, st.st_ino);
        if let Some(first) = self.visited.get(&id) {
            let first = display(first).to_owned();
            self.problem(
                rel,
                format!("is a directory loop: already visited as {first}; not walked again"),
            );
            return;
        }
        self.visited.insert(id, rel.to_owned());
        // The directory's descriptor is the Dir's own (no second open).
        let mut entries = match Dir::new(fd) {
            Ok(d) => d,
            Err(e) => {
                let e = std::io::Error::from(e);
                self.problem(rel, format!("cannot be listed: {e}"));
                return;
            }
        };
        // (name, what readdir says it is).
        let mut names: Vec<(String, Seen)> = Vec::new();
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let e = std::io::Error::from(e);
                    self.problem(rel, format!("cannot be listed completely: {e}"));
                    break;
                }
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let seen = match entry.file_type() {
                rustix::fs::FileType::Directory => Seen::Dir,
                // A regular file (not a link to one) is looked at relative
                // to the open directory: no lookup of its whole path, 40,000
                // of them in a 5,000-node output.
                rustix::fs::FileType::RegularFile => {
                    let st = entries.fd().and_then(|fd| {
                        rustix::fs::statat(fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    });
                    match st {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                            Seen::File(u64::try_from(st.st_size).unwrap_or(u64::MAX))
                        }
                        _ => Seen::Other,
                    }
                }
                _ => Seen::Other,
            };
            names.push((OsStr::from_bytes(name).to_string_lossy().into_owned(), seen));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, seen) in names {
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            self.entry(&child, depth, seen);
        }
    }

    /// Walks the directory `rel`, an entry `depth` levels down, unless it is too deep.
    fn subdir(&mut self, rel: &str, depth: usize) {
        if depth + 1 > MAX_DEPTH {
            self.problem(
                rel,
                format!("is deeper than {MAX_DEPTH} levels: not walked"),
            );
        } else {
            self.dir(rel, depth + 1);
        }
    }

    /// Looks at one entry of a directory `depth` levels down (`seen`: what
    /// readdir reported; a directory or regular file needs no more `stat`,
    /// 60,000 directories in a 5,000-node output).
    fn entry(&mut self, rel: &str, depth: usize, seen: Seen) {
        self.seen += 1;
        if self.seen == MAX_ENTRIES + 1 {
            self.problem(
                rel,
                format!(
                    "is past the first {MAX_ENTRIES} entries of the directory: the walk stopped here"
                ),
            );
        }
        if self.seen > MAX_ENTRIES {
            return;
        }
        match seen {
            Seen::Dir => {
                self.subdir(rel, depth);
                return;
            }
            Seen::File(size) => {
                self.file(rel, size);
                return;
            }
            Seen::Other => {}
        }
        let path = self.root.join(rel);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                let link =
                    std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                // An absolute link that holds inside the audited root, as the
                // node sees it (the kubelet's `kubelet-client-current.pem` ->
                // `/var/lib/kubelet/pki/kubelet-client-<date>.pem`): its
                // target is walked in its own right.
                let inside_root = link
                    && std::fs::read_link(&path).is_ok_and(|t| {
                        t.strip_prefix("/")
                            .is_ok_and(|r| self.root.join(r).is_file())
                    });
                if inside_root {
                    return;
                }
                let what = if link {
                    format!("is a symbolic link that leads nowhere ({e})")
                } else {
                    format!("cannot be read: {e}")
                };
                self.problem(rel, what);
                return;
            }
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            let real = if link {
                std::fs::canonicalize(&path).ok()
            } else {
                None
            };
            if let Some(real) = real
                && self
                    .real_root
                    .as_ref()
                    .is_some_and(|r| !real.starts_with(r))
            {
                self.problem(
                    rel,
                    format!(
                        "is a symbolic link to a directory outside the checked directory ({}): not walked",
                        real.display()
                    ),
                );
            } else {
                self.subdir(rel, depth);
            }
        } else if ft.is_file() {
            self.file(rel, meta.size());
        } else {
            self.problem(
                rel,
                format!("is not a regular file ({}): not read", kind_of(ft)),
            );
        }
    }
}

impl Walker<'_> {
    /// A regular file (or a link to one) of `size` bytes.
    fn file(&mut self, rel: &str, size: u64) {
        if size > MAX_FILE_BYTES && PKI_EXTENSIONS.iter().any(|e| rel.ends_with(e)) {
            self.problem(rel, format!("is larger than the {CAP_NAME} cap: not read"));
        }
        self.out.files.push(rel.to_owned());
    }
}

/// What readdir said a directory entry is.
#[derive(Clone, Copy)]
enum Seen {
    /// A directory (not a link to one).
    Dir,
    /// A regular file (not a link to one), with its size.
    File(u64),
    /// Anything else (a symbolic link, a device, unknown): looked at by path.
    Other,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::symlink;

    fn message(w: &Walk, path: &str) -> String {
        w.problems
            .iter()
            .find(|p| p.path == path)
            .map(|p| p.message.clone())
            .unwrap_or_else(|| panic!("no problem for {path}: {:?}", w.problems))
    }

    #[test]
    fn loops_devices_and_depth_are_reported_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("pki/etcd")).unwrap();
        std::fs::write(root.join("pki/ca.crt"), "x").unwrap();
        symlink(".", root.join("pki/loopA")).unwrap();
        symlink("..", root.join("pki/etcd/up")).unwrap();
        symlink("/dev/zero", root.join("zero.crt")).unwrap();
        symlink("nowhere", root.join("dangling.crt")).unwrap();
        symlink("ca.crt", root.join("pki/alias.crt")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, root.join("fifo.crt"), Mode::from(0o600)).unwrap();
        let mut deep = root.to_path_buf();
        for i in 0..=MAX_DEPTH {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        let w = walk(root);
        assert!(message(&w, "pki/loopA").contains("already visited as pki"));
        assert!(message(&w, "pki/etcd/up").contains("already visited as pki"));
        assert!(message(&w, "zero.crt").contains("not a regular file (a character device)"));
        assert!(message(&w, "dangling.crt").contains("leads nowhere"));
        assert!(message(&w, "slash").contains("outside the checked directory (/)"));
        assert!(message(&w, "fifo.crt").contains("not a regular file (a FIFO)"));
        let e = read_regular(&root.join("fifo.crt")).unwrap_err();
        assert!(e.contains("not a regular file (a FIFO)"), "{e}");
        let too_deep = w
            .problems
            .iter()
            .find(|p| p.message.contains("deeper than 16 levels"))
            .unwrap();
        assert!(
            too_deep.path.ends_with(&format!("d{MAX_DEPTH}")),
            "{too_deep:?}"
        );
        assert_eq!(w.files, vec!["pki/alias.crt", "pki/ca.crt"]);
    }

    #[test]
    fn reads_only_small_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.crt");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(read_regular(&f).unwrap(), b"abc");
        let e = read_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("not a regular file (a character device)"), "{e}");
        let e = read_regular(d.path()).unwrap_err();
        assert!(e.contains("(a directory)"), "{e}");
        File::create(&f)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let e = read_regular(&f).unwrap_err();
        assert!(e.contains("larger than the 4 MiB cap"), "{e}");
        let e = read_regular_capped(&f, 10).unwrap_err();
        assert!(e.contains("10-byte cap"), "{e}");
    }
}
