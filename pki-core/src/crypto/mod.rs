//! Keys and X.509 certificates, pure Rust (RustCrypto: x509-cert 0.3, rsa 0.10,
//! p256/p384 0.14). Certificate parameters are plain data; signing is one call.

mod batchkeys;
mod cert;
mod csr;
mod fastverify;
mod keys;
mod parse;
mod pem;
pub(crate) mod pkcs11;

pub use cert::{
    CertParams, DistinguishedName, Signer, build_certificate, cert_to_pem, certs_beside_key,
    certs_from_pem, random_serial, try_random_serial,
};
pub use csr::{CsrParams, build_csr, csr_public_key, same_request};
pub use keys::{PrivateKey, PublicKey};
pub(crate) use parse::hex;
pub use parse::{ParsedCert, SignatureAlgorithm, parse_certificate};
pub use pkcs11::{PinSource, Token, TokenConfig, TokenError};

/// Errors produced by the crypto module. Messages never contain key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// The OS random number generator failed.
    #[error("random number generator failure: {0}")]
    Rng(String),
    /// Key generation failed.
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    /// A key uses an algorithm or size this crate does not support.
    #[error("unsupported key: {what}")]
    UnsupportedKey {
        /// The key's algorithm and size as kpki spells it (`rsa-1024`,
        /// `ecdsa-p521`, `ed25519`, ...).
        what: String,
    },
    /// An unknown key algorithm name. Not produced by this module:
    /// `KeyAlgorithm::from_str` reports its errors as a `String`.
    #[error("unknown key algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// Input had no PEM block at all.
    #[error("no PEM block found")]
    NoPemBlock,
    /// A PEM block of an unexpected type was found.
    #[error("unexpected PEM block type {label:?}")]
    UnexpectedPemType {
        /// The label of the offending block (`ENCRYPTED PRIVATE KEY`), as
        /// error messages may quote it: `[A-Z0-9 ]` only, at most 32 characters.
        label: String,
    },
    /// PEM framing / base64 was invalid.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A key structure could not be decoded.
    #[error("invalid key encoding: {0}")]
    KeyDecode(String),
    /// Encoding (DER/PEM) failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// Invalid certificate parameters.
    #[error("invalid certificate parameters: {0}")]
    InvalidParams(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A certificate could not be parsed.
    #[error("certificate parse error: {0}")]
    CertParse(String),
    /// A key held in a PKCS#11 token was asked for its bytes.
    #[error("the key {label:?} is held in a PKCS#11 token and is never exported")]
    NotExportable {
        /// The key's CKA_LABEL.
        label: String,
    },
    /// A PKCS#11 token operation failed (the message names the token).
    #[error("PKCS#11: {0}")]
    Token(String),
}

/// The seam for crypto backends: key generation and certificate signing.
///
/// kpki's default, [`RustCrypto`], is pure Rust (RustCrypto `rsa`, `p256`,
/// `p384`, `x509-cert`). An installer that signs on request, or needs FIPS,
/// can add a constant-time backend (e.g. aws-lc-rs) behind a cargo feature by
/// implementing this trait; issuance only talks to it through
/// [`IssueOptions::backend`](crate::IssueOptions).
pub trait CryptoBackend: Send + Sync {
    /// A short name for logs (`rustcrypto`).
    fn name(&self) -> &'static str;
    /// Generates a key.
    fn generate(&self, alg: crate::KeyAlgorithm) -> Result<PrivateKey, CryptoError>;
    /// Builds and signs a certificate (DER).
    fn build(
        &self,
        params: &CertParams,
        subject_key: &PublicKey,
        signer: Signer<'_>,
    ) -> Result<Vec<u8>, CryptoError>;
}

/// The default backend: pure Rust, no OpenSSL linkage.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl CryptoBackend for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }
    fn generate(&self, alg: crate::KeyAlgorithm) -> Result<PrivateKey, CryptoError> {
        PrivateKey::generate(alg)
    }
    fn build(
        &self,
        params: &CertParams,
        subject_key: &PublicKey,
        signer: Signer<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        build_certificate(params, subject_key, signer)
    }
}
