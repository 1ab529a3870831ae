//! Minimal multi-block PEM splitting on top of `pem-rfc7468` (via `der::pem`).

use super::CryptoError;
use zeroize::Zeroizing;

/// One decoded PEM block.
pub(crate) struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// Decode every PEM block in `input`, in order. Text outside blocks is ignored
/// (openssl writes e.g. "Bag Attributes" headers and `-text` dumps there).
pub(crate) fn decode_all(input: &str) -> Result<Vec<Block>, CryptoError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let Some(label_end) = after.find("-----") else {
            return Err(CryptoError::Pem("unterminated BEGIN line".into()));
        };
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end_rel) = rest[start..].find(&end_marker) else {
            return Err(CryptoError::Pem(format!("missing END line for {label:?}")));
        };
        let block_end = start + end_rel + end_marker.len();
        let block = &rest[start..block_end];
        let (decoded_label, der) = der::pem::decode_vec(block.as_bytes())
            .map_err(|e| CryptoError::Pem(format!("{label:?} block: {e}")))?;
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
