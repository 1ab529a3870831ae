//! `Kubeconfig::from_yaml` on arbitrary UTF-8 (documented "never panics").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kubeconfig::Kubeconfig::from_yaml(text);
    }
});
