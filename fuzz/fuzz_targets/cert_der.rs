//! `parse_certificate` on arbitrary bytes (documented "never panics").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pki_core::parse_certificate(data);
});
