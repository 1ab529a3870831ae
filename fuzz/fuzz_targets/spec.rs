//! `ClusterSpec::parse` on arbitrary UTF-8: must return `Ok` or `Err`, never
//! panic or hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pki_core::ClusterSpec::parse(text, Path::new("fuzz/kpki.toml"));
    }
});
