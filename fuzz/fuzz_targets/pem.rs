//! The three PEM readers on the same arbitrary UTF-8 input: certificate
//! chains, private keys and public keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pki_core::certs_from_pem(text);
        let _ = pki_core::PrivateKey::from_pem(text);
        let _ = pki_core::PublicKey::from_pem(text);
    }
});
