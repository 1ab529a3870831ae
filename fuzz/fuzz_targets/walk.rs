//! `kpki check` on a hostile directory tree built from the fuzz bytes (see
//! `fuzz/walk_tree.rs`): symlink loops, FIFOs, devices, deep and sparse
//! files. Must never panic or hang.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;

#[path = "../walk_tree.rs"]
mod walk_tree;

static RUN: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!(
        "kpki-fuzz-walk-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::create_dir(&dir).is_err() {
        return;
    }
    walk_tree::build(&dir, data);
    let _ = pki_core::check(&dir, None, None, &pki_core::Options::default());
    // remove_dir_all never follows symbolic links.
    let _ = std::fs::remove_dir_all(&dir);
});
