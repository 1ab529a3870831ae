//! Certificate parsing for audits, and signature verification.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use der::asn1::{AnyRef, ObjectIdentifier};
use der::oid::AssociatedOid;
use der::{Decode, Encode, Tag, Tagged};
use pkcs8::DecodePublicKey;
use sha2::Digest;
use signature::Verifier;
use signature::hazmat::PrehashVerifier;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;

use super::CryptoError;
use super::cert::{
    DistinguishedName, ExtUsage, KeyUsages, OID_C, OID_CLIENT_AUTH, OID_CN, OID_ECDSA_WITH_SHA256,
    OID_ECDSA_WITH_SHA384, OID_L, OID_O, OID_OU, OID_SERVER_AUTH, OID_SHA256_WITH_RSA, OID_ST,
};
use super::keys::{KeyAlgorithm, PublicKey};

const OID_SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
const OID_SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
/// Signature algorithms considered weak (MD2/MD4/MD5/SHA-1 based).
const WEAK_OIDS: &[&str] = &[
    "1.2.840.113549.1.1.2", // md2WithRSAEncryption
    "1.2.840.113549.1.1.3", // md4WithRSAEncryption
    "1.2.840.113549.1.1.4", // md5WithRSAEncryption
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.3.14.3.2.29",        // sha1WithRSASignature (OIW)
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
    "1.2.840.10040.4.3",    // dsa-with-sha1
];

/// Certificate signature algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// sha256WithRSAEncryption.
    RsaSha256,
    /// sha384WithRSAEncryption.
    RsaSha384,
    /// sha512WithRSAEncryption.
    RsaSha512,
    /// sha1WithRSAEncryption (weak).
    RsaSha1,
    /// ecdsa-with-SHA256.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// Anything else, as a dotted OID.
    Other(String),
}

impl SignatureAlgorithm {
    fn from_oid(oid: ObjectIdentifier) -> Self {
        match oid {
            o if o == OID_SHA256_WITH_RSA => SignatureAlgorithm::RsaSha256,
            o if o == OID_SHA384_WITH_RSA => SignatureAlgorithm::RsaSha384,
            o if o == OID_SHA512_WITH_RSA => SignatureAlgorithm::RsaSha512,
            o if o == OID_SHA1_WITH_RSA => SignatureAlgorithm::RsaSha1,
            o if o == OID_ECDSA_WITH_SHA256 => SignatureAlgorithm::EcdsaSha256,
            o if o == OID_ECDSA_WITH_SHA384 => SignatureAlgorithm::EcdsaSha384,
            o => SignatureAlgorithm::Other(o.to_string()),
        }
    }

    /// True for SHA-1 / MD5 (and MD2/MD4) based algorithms.
    pub fn is_weak(&self) -> bool {
        match self {
            SignatureAlgorithm::RsaSha1 => true,
            SignatureAlgorithm::Other(oid) => WEAK_OIDS.contains(&oid.as_str()),
            _ => false,
        }
    }

    /// Short human-readable name (dotted OID for `Other`).
    pub fn name(&self) -> &str {
        match self {
            SignatureAlgorithm::RsaSha256 => "sha256WithRSAEncryption",
            SignatureAlgorithm::RsaSha384 => "sha384WithRSAEncryption",
            SignatureAlgorithm::RsaSha512 => "sha512WithRSAEncryption",
            SignatureAlgorithm::RsaSha1 => "sha1WithRSAEncryption",
            SignatureAlgorithm::EcdsaSha256 => "ecdsa-with-SHA256",
            SignatureAlgorithm::EcdsaSha384 => "ecdsa-with-SHA384",
            SignatureAlgorithm::Other(oid) => oid,
        }
    }
}

/// A certificate read back: everything an audit rule engine needs.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    /// The certificate as parsed, DER.
    pub der: Vec<u8>,
    /// Subject name (C, ST, L, O, OU, CN; other attributes ignored).
    pub subject: DistinguishedName,
    /// Issuer name, read the same way as `subject`.
    pub issuer: DistinguishedName,
    /// Lowercase hex of the serial's magnitude (no leading 00 sign byte).
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: time::OffsetDateTime,
    /// End of validity.
    pub not_after: time::OffsetDateTime,
    /// `None` when basicConstraints is absent.
    pub is_ca: Option<bool>,
    /// basicConstraints path length constraint.
    pub path_len: Option<u8>,
    /// `None` when keyUsage is absent.
    pub key_usage: Option<KeyUsages>,
    /// serverAuth / clientAuth extended key usages, in certificate order.
    pub ext_key_usage: Vec<ExtUsage>,
    /// EKUs other than serverAuth/clientAuth, as dotted OIDs.
    pub other_ext_key_usages: Vec<String>,
    /// DNS subjectAltNames.
    pub dns_sans: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_sans: Vec<IpAddr>,
    /// subjectKeyIdentifier, when present.
    pub subject_key_id: Option<Vec<u8>>,
    /// The keyIdentifier of authorityKeyIdentifier, when present.
    pub authority_key_id: Option<Vec<u8>>,
    /// The subject public key.
    pub public_key: PublicKey,
    /// The outer signatureAlgorithm.
    pub signature_algorithm: SignatureAlgorithm,
}

fn perr(what: &str) -> impl Fn(der::Error) -> CryptoError + '_ {
    move |e| CryptoError::CertParse(format!("{what}: {e}"))
}

fn attr_to_string(value: &der::asn1::Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        // T61/Teletex: treat as Latin-1, which is what it is in practice.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| {
                    u16::from_be_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

pub(crate) fn dn_from_name(name: &Name) -> DistinguishedName {
    let mut dn = DistinguishedName::default();
    for atv in name.iter() {
        let Some(v) = attr_to_string(&atv.value) else {
            continue;
        };
        match atv.oid {
            o if o == OID_CN => dn.common_name = v,
            o if o == OID_O => dn.organizations.push(v),
            o if o == OID_OU => dn.organizational_units.push(v),
            o if o == OID_C => {
                dn.country.get_or_insert(v);
            }
            o if o == OID_ST => {
                dn.state.get_or_insert(v);
            }
            o if o == OID_L => {
                dn.locality.get_or_insert(v);
            }
            _ => {}
        }
    }
    dn
}

fn to_offset(t: &x509_cert::time::Time) -> Result<time::OffsetDateTime, CryptoError> {
    let secs = i64::try_from(t.to_unix_duration().as_secs())
        .map_err(|_| CryptoError::CertParse("time out of range".into()))?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| CryptoError::CertParse(format!("time: {e}")))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex of the INTEGER magnitude: DER sign-padding zero bytes stripped.
fn serial_hex(content: &[u8]) -> String {
    let mut b = content;
    while let [0, rest @ ..] = b {
        if rest.is_empty() {
            break;
        }
        b = rest;
    }
    hex(b)
}

/// Parse a DER certificate. Never panics; malformed input gives `Err`.
pub fn parse_certificate(der: &[u8]) -> Result<ParsedCert, CryptoError> {
    let cert = Certificate::from_der(der).map_err(perr("certificate"))?;
    let tbs = cert.tbs_certificate();

    let mut out = ParsedCert {
        der: der.to_vec(),
        subject: dn_from_name(tbs.subject()),
        issuer: dn_from_name(tbs.issuer()),
        serial_hex: serial_hex(tbs.serial_number().as_bytes()),
        not_before: to_offset(&tbs.validity().not_before)?,
        not_after: to_offset(&tbs.validity().not_after)?,
        is_ca: None,
        path_len: None,
        key_usage: None,
        ext_key_usage: Vec::new(),
        other_ext_key_usages: Vec::new(),
        dns_sans: Vec::new(),
        ip_sans: Vec::new(),
        subject_key_id: None,
        authority_key_id: None,
        public_key: PublicKey {
            der: tbs
                .subject_public_key_info()
                .to_der()
                .map_err(perr("subjectPublicKeyInfo"))?,
        },
        signature_algorithm: SignatureAlgorithm::from_oid(cert.signature_algorithm().oid),
    };

    let mut seen: Vec<ObjectIdentifier> = Vec::new();
    for ext in tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]) {
        if seen.contains(&ext.extn_id) {
            return Err(CryptoError::CertParse(format!(
                "duplicate extension {}",
                ext.extn_id
            )));
        }
        seen.push(ext.extn_id);
        let v = ext.extn_value.as_bytes();
        match ext.extn_id {
            o if o == BasicConstraints::OID => {
                let bc = BasicConstraints::from_der(v).map_err(perr("basicConstraints"))?;
                out.is_ca = Some(bc.ca);
                out.path_len = bc.path_len_constraint;
            }
            o if o == KeyUsage::OID => {
                let ku = KeyUsage::from_der(v).map_err(perr("keyUsage"))?;
                out.key_usage = Some(KeyUsages {
                    digital_signature: ku.digital_signature(),
                    key_encipherment: ku.key_encipherment(),
                    key_cert_sign: ku.key_cert_sign(),
                    crl_sign: ku.crl_sign(),
                });
            }
            o if o == ExtendedKeyUsage::OID => {
                let eku = ExtendedKeyUsage::from_der(v).map_err(perr("extKeyUsage"))?;
                for oid in eku.0 {
                    if oid == OID_SERVER_AUTH {
                        out.ext_key_usage.push(ExtUsage::ServerAuth);
                    } else if oid == OID_CLIENT_AUTH {
                        out.ext_key_usage.push(ExtUsage::ClientAuth);
                    } else {
                        out.other_ext_key_usages.push(oid.to_string());
                    }
                }
            }
            o if o == SubjectAltName::OID => {
                let san = SubjectAltName::from_der(v).map_err(perr("subjectAltName"))?;
                for gn in san.0 {
                    match gn {
                        GeneralName::DnsName(d) => out.dns_sans.push(d.to_string()),
                        GeneralName::IpAddress(ip) => {
                            let b = ip.as_bytes();
                            if let Ok(a) = <[u8; 4]>::try_from(b) {
                                out.ip_sans.push(IpAddr::V4(Ipv4Addr::from(a)));
                            } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                                out.ip_sans.push(IpAddr::V6(Ipv6Addr::from(a)));
                            } else {
                                return Err(CryptoError::CertParse(format!(
                                    "IP SAN with {} bytes",
                                    b.len()
                                )));
                            }
                        }
                        _ => {}
                    }
                }
            }
            o if o == SubjectKeyIdentifier::OID => {
                let ski = SubjectKeyIdentifier::from_der(v).map_err(perr("subjectKeyId"))?;
                out.subject_key_id = Some(ski.0.as_bytes().to_vec());
            }
            o if o == AuthorityKeyIdentifier::OID => {
                let aki = AuthorityKeyIdentifier::from_der(v).map_err(perr("authorityKeyId"))?;
                out.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Split a DER TLV at the start of `buf`: (header length, content length).
fn tlv(buf: &[u8]) -> Option<(usize, usize)> {
    let first_len = *buf.get(1)?;
    if first_len < 0x80 {
        return Some((2, usize::from(first_len)));
    }
    let n = usize::from(first_len & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(*buf.get(2 + i)?);
    }
    Some((2 + n, len))
}

/// The exact TBSCertificate bytes inside a Certificate.
fn raw_tbs(cert_der: &[u8]) -> Option<&[u8]> {
    let (oh, _) = tlv(cert_der)?;
    let inner = cert_der.get(oh..)?;
    let (th, tl) = tlv(inner)?;
    inner.get(..th.checked_add(tl)?)
}

impl ParsedCert {
    /// True when this certificate's signature over its TBS bytes verifies
    /// under `issuer_key`. Any error (unsupported algorithm, mismatched key
    /// type, malformed data) yields `false`.
    pub fn verify_signed_by(&self, issuer_key: &PublicKey) -> bool {
        verify(&self.der, issuer_key).unwrap_or(false)
    }

    /// SHA-256 of the DER, lowercase hex without colons.
    pub fn sha256_fingerprint(&self) -> String {
        hex(&sha2::Sha256::digest(&self.der))
    }

    /// Convenience: is this certificate self-issued and self-signed?
    pub fn is_self_signed(&self) -> bool {
        self.verify_signed_by(&self.public_key)
    }
}

fn verify(cert_der: &[u8], issuer_key: &PublicKey) -> Option<bool> {
    let cert = Certificate::from_der(cert_der).ok()?;
    let tbs = raw_tbs(cert_der)?;
    let alg = cert.signature_algorithm();
    if alg != cert.tbs_certificate().signature() {
        return Some(false);
    }
    let sig = cert.signature().as_bytes()?;
    let key_alg = issuer_key.algorithm().ok()?;
    let oid = alg.oid;

    if key_alg.is_rsa() {
        // sha*WithRSAEncryption parameters must be absent or NULL.
        if let Some(p) = &alg.parameters
            && AnyRef::from(p).tag() != Tag::Null
        {
            return Some(false);
        }
        let pk = rsa::PublicKey::from_public_key_der(issuer_key.spki_der()).ok()?;
        let sig = rsa::pkcs1v15::Signature::try_from(sig).ok()?;
        let ok = match oid {
            o if o == OID_SHA256_WITH_RSA => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk)
                .verify(tbs, &sig)
                .is_ok(),
            o if o == OID_SHA384_WITH_RSA => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(pk)
                .verify(tbs, &sig)
                .is_ok(),
            o if o == OID_SHA512_WITH_RSA => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(pk)
                .verify(tbs, &sig)
                .is_ok(),
            o if o == OID_SHA1_WITH_RSA => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(pk)
                .verify(tbs, &sig)
                .is_ok(),
            _ => false,
        };
        return Some(ok);
    }

    let prehash: Vec<u8> = match oid {
        o if o == OID_ECDSA_WITH_SHA256 => sha2::Sha256::digest(tbs).to_vec(),
        o if o == OID_ECDSA_WITH_SHA384 => sha2::Sha384::digest(tbs).to_vec(),
        o if o == OID_ECDSA_WITH_SHA512 => sha2::Sha512::digest(tbs).to_vec(),
        _ => return Some(false),
    };
    let ok = match key_alg {
        KeyAlgorithm::EcdsaP256 if oid == OID_ECDSA_WITH_SHA256 => {
            super::fastverify::verify_p256_sha256(issuer_key.spki_der(), &prehash, sig)?
        }
        KeyAlgorithm::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(issuer_key.spki_der()).ok()?;
            let sig = p256::ecdsa::Signature::from_der(sig).ok()?;
            vk.verify_prehash(&prehash, &sig).is_ok()
        }
        KeyAlgorithm::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(issuer_key.spki_der()).ok()?;
            let sig = p384::ecdsa::Signature::from_der(sig).ok()?;
            vk.verify_prehash(&prehash, &sig).is_ok()
        }
        _ => false,
    };
    Some(ok)
}
