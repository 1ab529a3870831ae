//! Minimal multi-block PEM splitting on top of `pem-rfc7468` (via `der::pem`).
//!
//! Error messages never quote the input beyond a label: a BEGIN line that lost
//! a dash would otherwise run into the base64 body of a private key. Labels
//! are only looked for on the BEGIN line itself, and every label an error
//! quotes goes through [`safe_label`].

use super::CryptoError;
use zeroize::Zeroizing;

/// The most characters of a label an error message quotes.
const LABEL_CAP: usize = 32;

/// One decoded PEM block.
pub(crate) struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// A PEM label as error messages may quote it: its leading `[A-Z0-9 ]`
/// characters, at most [`LABEL_CAP`] of them, and an ellipsis when anything
/// was cut. Real labels (`EC PRIVATE KEY`, `CERTIFICATE`) come out
/// unchanged; base64 key material stops at its first lowercase letter,
/// `+`, `/` or newline, so at most a few characters of it could show.
pub(crate) fn safe_label(label: &str) -> String {
    let allowed = |c: &char| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == ' ';
    let mut out: String = label.chars().take_while(allowed).take(LABEL_CAP).collect();
    if out.len() < label.len() {
        out.push('…');
    }
    out
}

/// Decode every PEM block in `input`, in order. Text outside blocks is ignored
/// (openssl writes e.g. "Bag Attributes" headers and `-text` dumps there).
pub(crate) fn decode_all(input: &str) -> Result<Vec<Block>, CryptoError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        // The label ends on its own line: never let it run into the body.
        let line = after.split(['\n', '\r']).next().unwrap_or("");
        let Some(label_end) = line.find("-----") else {
            return Err(CryptoError::Pem(format!(
                "unterminated BEGIN line (label starting \"{}\")",
                safe_label(line.trim_end_matches('-'))
            )));
        };
        let label = &line[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end_rel) = rest[start..].find(&end_marker) else {
            return Err(CryptoError::Pem(format!(
                "missing END line for \"{}\"",
                safe_label(label)
            )));
        };
        let block_end = start + end_rel + end_marker.len();
        let block = &rest[start..block_end];
        let (decoded_label, der) = der::pem::decode_vec(block.as_bytes())
            .map_err(|e| CryptoError::Pem(format!("\"{}\" block: {e}", safe_label(label))))?;
        out.push(Block {
            label: decoded_label.to_string(),
            der: Zeroizing::new(der),
        });
        rest = &rest[block_end..];
    }
    if out.is_empty() {
        return Err(CryptoError::NoPemBlock);
    }
    Ok(out)
}

pub(crate) fn encode(label: &str, der: &[u8]) -> Result<String, CryptoError> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der)
        .map_err(|e| CryptoError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const BODY: &str = "MHcCAQEEILBnZqrR42b5hHiJbSvAO2KJasrk/0h0/Jb2DqGyy0GfoAoGCCqGSM49";

    /// The errors of every parser built on `decode_all`, joined.
    fn err(input: &str) -> String {
        let key = match crate::crypto::PrivateKey::from_pem(input) {
            Ok(_) => panic!("decoded: {input}"),
            Err(e) => e.to_string(),
        };
        let public = crate::crypto::PublicKey::from_pem(input).map(|_| ());
        let certs = crate::crypto::certs_from_pem(input).map(|_| ());
        format!("{key} | {public:?} | {certs:?}")
    }

    #[test]
    fn safe_label_keeps_real_labels_and_cuts_the_rest() {
        assert_eq!(safe_label("EC PRIVATE KEY"), "EC PRIVATE KEY");
        assert_eq!(safe_label("X509 CRL"), "X509 CRL");
        assert_eq!(safe_label("a/b+\n"), "…");
        assert_eq!(safe_label("EC PRIVATE KEY----\nMHcC"), "EC PRIVATE KEY…");
        let long = "A".repeat(100);
        assert_eq!(safe_label(&long), format!("{}…", "A".repeat(LABEL_CAP)));
    }

    #[test]
    fn a_begin_line_missing_a_dash_does_not_quote_the_body() {
        for input in [
            format!("-----BEGIN EC PRIVATE KEY----\n{BODY}\n-----END EC PRIVATE KEY-----\n"),
            format!("-----BEGIN EC PRIVATE KEY----\n{BODY}\n{BODY}\n"),
            format!("-----BEGIN EC PRIVATE KEY-----\n{BODY}\n"),
            format!("-----BEGIN EC PRIVATE KEY-----\n{BODY}!!\n-----END EC PRIVATE KEY-----\n"),
            format!("-----BEGIN {BODY}-----\n{BODY}\n-----END {BODY}-----\n"),
            format!("-----BEGIN {BODY}\n-----END EC PRIVATE KEY-----\n"),
        ] {
            let msg = err(&input);
            for w in BODY.as_bytes().windows(16) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(!msg.contains(w), "{msg:?} quotes {w:?}");
            }
            assert!(msg.len() < 400, "{msg}");
        }
        assert!(err("-----BEGIN EC PRIVATE KEY----\nx").contains("\"EC PRIVATE KEY\""));
    }
}
