//! Certificate building (x509-cert `CertificateBuilder` with a custom
//! `BuilderProfile` and a small signer adaptor over [`PrivateKey`]).

use std::net::IpAddr;
use std::time::Duration;

use der::asn1::{
    Any, BitString, GeneralizedTime, ObjectIdentifier, OctetString, PrintableStringRef,
};
use der::oid::AssociatedOid;
use der::{Decode, Encode, Tag};
use signature::{Keypair, RandomizedSigner};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsage, SubjectKeyIdentifier};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::CryptoError;
use super::csr::CsrParams;
use super::keys::{Inner, PrivateKey, PublicKey, os_rng};
use super::pem;

pub(crate) const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub(crate) const OID_C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
pub(crate) const OID_L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
pub(crate) const OID_ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
pub(crate) const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
pub(crate) const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");

pub(crate) const OID_SERVER_AUTH: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
pub(crate) const OID_CLIENT_AUTH: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

pub(crate) const OID_SHA256_WITH_RSA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
pub(crate) const OID_ECDSA_WITH_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub(crate) const OID_ECDSA_WITH_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Subject / issuer distinguished name: kpki's [`Subject`](crate::Subject). Encoded as
/// C, ST, L, O..., OU..., CN (cfssl / openssl order), one attribute per RDN, empty values skipped.
pub use crate::x509::Subject as DistinguishedName;
pub use crate::x509::{ExtUsage, KeyUsages};

impl DistinguishedName {
    /// Convenience constructor with only a CN.
    pub fn cn(common_name: impl Into<String>) -> Self {
        DistinguishedName {
            common_name: common_name.into(),
            ..Default::default()
        }
    }

    pub(crate) fn to_name(&self) -> Result<Name, CryptoError> {
        let mut attrs: Vec<(ObjectIdentifier, &str)> = Vec::new();
        if let Some(c) = self.country.as_deref() {
            attrs.push((OID_C, c));
        }
        if let Some(st) = self.state.as_deref() {
            attrs.push((OID_ST, st));
        }
        if let Some(l) = self.locality.as_deref() {
            attrs.push((OID_L, l));
        }
        for o in &self.organizations {
            attrs.push((OID_O, o));
        }
        for ou in &self.organizational_units {
            attrs.push((OID_OU, ou));
        }
        attrs.push((OID_CN, &self.common_name));

        let mut seq = RdnSequence::default();
        for (oid, value) in attrs.into_iter().filter(|(_, v)| !v.is_empty()) {
            let any = if oid == OID_C {
                PrintableStringRef::new(value).map_err(|_| {
                    CryptoError::InvalidParams(format!(
                        "country {value:?} is not a PrintableString"
                    ))
                })?;
                Any::new(Tag::PrintableString, value.as_bytes())
            } else {
                Any::new(Tag::Utf8String, value.as_bytes())
            }
            .map_err(|e| CryptoError::InvalidParams(format!("name attribute {oid}: {e}")))?;
            let rdn = RelativeDistinguishedName::try_from(vec![AttributeTypeAndValue {
                oid,
                value: any,
            }])
            .map_err(|e| CryptoError::InvalidParams(format!("name attribute {oid}: {e}")))?;
            seq.push(rdn);
        }
        let der = seq
            .to_der()
            .map_err(|e| CryptoError::Encode(format!("name: {e}")))?;
        Name::from_der(&der).map_err(|e| CryptoError::Encode(format!("name: {e}")))
    }
}

pub(crate) fn ku_is_empty(k: &KeyUsages) -> bool {
    !(k.digital_signature || k.key_encipherment || k.key_cert_sign || k.crl_sign)
}

pub(crate) fn ku_to_ext(k: KeyUsages) -> KeyUsage {
    use x509_cert::ext::pkix::KeyUsages as K;
    let mut ku = KeyUsage(Default::default());
    if k.digital_signature {
        ku.0 |= K::DigitalSignature;
    }
    if k.key_encipherment {
        ku.0 |= K::KeyEncipherment;
    }
    if k.key_cert_sign {
        ku.0 |= K::KeyCertSign;
    }
    if k.crl_sign {
        ku.0 |= K::CRLSign;
    }
    ku
}

pub(crate) fn eku_oid(e: ExtUsage) -> ObjectIdentifier {
    match e {
        ExtUsage::ServerAuth => OID_SERVER_AUTH,
        ExtUsage::ClientAuth => OID_CLIENT_AUTH,
    }
}

/// Everything needed to issue one certificate.
#[derive(Clone, Debug)]
pub struct CertParams {
    /// Big-endian unsigned serial; at least 8 bytes, non-zero, at most 20
    /// significant bytes. A leading 0x00 is added in DER automatically when
    /// the top bit is set, so the INTEGER is always positive.
    pub serial: Vec<u8>,
    /// Subject name (also the issuer name when self-signed).
    pub subject: DistinguishedName,
    /// Start of validity (sub-second part dropped; must not be before 1970).
    pub not_before: time::OffsetDateTime,
    /// End of validity (sub-second part dropped); must be after `not_before`.
    pub not_after: time::OffsetDateTime,
    /// basicConstraints CA flag (the extension is always written, critical).
    pub is_ca: bool,
    /// basicConstraints path length constraint; only allowed when `is_ca`.
    pub path_len: Option<u8>,
    /// keyUsage bits (critical); the extension is omitted when none is set.
    pub key_usage: KeyUsages,
    /// extendedKeyUsage (non-critical, duplicates dropped); omitted when empty.
    pub ext_key_usage: Vec<ExtUsage>,
    /// DNS subjectAltNames (ASCII only).
    pub dns_sans: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_sans: Vec<IpAddr>,
}

impl CertParams {
    /// Parameters for a certificate asking what `request` asks, with its
    /// serial and validity.
    pub(crate) fn from_request(
        request: CsrParams,
        serial: Vec<u8>,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Self {
        let CsrParams {
            subject,
            is_ca,
            path_len,
            key_usage,
            ext_key_usage,
            dns_sans,
            ip_sans,
        } = request;
        CertParams {
            serial,
            subject,
            not_before,
            not_after,
            is_ca,
            path_len,
            key_usage,
            ext_key_usage,
            dns_sans,
            ip_sans,
        }
    }

    /// What this certificate asks for, as a request: the subject and the
    /// extension parameters it shares with a CSR.
    fn request(&self) -> CsrParams {
        CsrParams {
            subject: self.subject.clone(),
            is_ca: self.is_ca,
            path_len: self.path_len,
            key_usage: self.key_usage,
            ext_key_usage: self.ext_key_usage.clone(),
            dns_sans: self.dns_sans.clone(),
            ip_sans: self.ip_sans.clone(),
        }
    }
}

/// Who signs the certificate.
pub enum Signer<'a> {
    /// Signed by the subject's own key (which must match the subject key);
    /// the issuer name is the subject name and no authorityKeyIdentifier is written.
    SelfSigned(&'a PrivateKey),
    /// Signed by a CA.
    Issuer {
        /// The issuing CA's certificate, DER. Its subject becomes the issuer
        /// name and its subjectKeyIdentifier (or computed key id) the
        /// authorityKeyIdentifier.
        cert_der: &'a [u8],
        /// The issuing CA's private key; must match `cert_der`'s public key.
        key: &'a PrivateKey,
    },
}

/// 16 random bytes from the OS CSPRNG, top bit cleared, first byte non-zero
/// (so the DER INTEGER is positive and exactly 16 bytes / 127 bits).
pub fn try_random_serial() -> Result<Vec<u8>, CryptoError> {
    use rand::TryRng;
    let mut b = vec![0u8; 16];
    rand::rngs::SysRng
        .try_fill_bytes(&mut b)
        .map_err(|e| CryptoError::Rng(e.to_string()))?;
    normalize_serial(&mut b);
    Ok(b)
}

/// Like [`try_random_serial`] but infallible: if the OS RNG is unavailable
/// (practically impossible on Linux) it falls back to a SHA-256 of time,
/// pid and a process-wide counter, which is unique but not unpredictable.
pub fn random_serial() -> Vec<u8> {
    match try_random_serial() {
        Ok(s) => s,
        Err(_) => {
            use sha2::Digest;
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let mut h = sha2::Sha256::new();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            h.update(now.to_be_bytes());
            h.update(std::process::id().to_be_bytes());
            h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
            let mut b: Vec<u8> = h.finalize().iter().take(16).copied().collect();
            normalize_serial(&mut b);
            b
        }
    }
}

fn normalize_serial(b: &mut [u8]) {
    if let Some(first) = b.first_mut() {
        *first &= 0x7f;
        if *first == 0 {
            *first = 0x01;
        }
    }
}

fn to_time(t: time::OffsetDateTime, what: &str) -> Result<Time, CryptoError> {
    let secs = t.unix_timestamp();
    let secs = u64::try_from(secs)
        .map_err(|_| CryptoError::InvalidParams(format!("{what} is before 1970")))?;
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|e| CryptoError::InvalidParams(format!("{what}: {e}")))?;
    // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    if dt.year() < 2050 {
        let ut = der::asn1::UtcTime::from_date_time(dt)
            .map_err(|e| CryptoError::InvalidParams(format!("{what}: {e}")))?;
        Ok(Time::UtcTime(ut))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

pub(crate) fn ext<T: Encode>(
    oid: ObjectIdentifier,
    critical: bool,
    value: &T,
) -> Result<Extension, CryptoError> {
    let der = value
        .to_der()
        .map_err(|e| CryptoError::Encode(format!("extension {oid}: {e}")))?;
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(der)
            .map_err(|e| CryptoError::Encode(format!("extension {oid}: {e}")))?,
    })
}

/// Fixed subject/issuer/extensions; x509-cert calls back into this.
struct FixedProfile {
    subject: Name,
    issuer: Name,
    extensions: Vec<Extension>,
}

impl BuilderProfile for FixedProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

/// SPKI DER as an `EncodePublicKey` for the builder's `Keypair` bound.
#[derive(Clone)]
struct SpkiDer(Vec<u8>);

impl EncodePublicKey for SpkiDer {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

/// Raw signature value bytes (PKCS#1 v1.5 block or DER ECDSA-Sig-Value).
struct RawSignature(Vec<u8>);

impl SignatureBitStringEncoding for RawSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

struct KeySigner<'a> {
    key: &'a PrivateKey,
    public: SpkiDer,
}

impl Keypair for KeySigner<'_> {
    type VerifyingKey = SpkiDer;
    fn verifying_key(&self) -> SpkiDer {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for KeySigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(signature_algorithm_for(self.key))
    }
}

pub(crate) fn signature_algorithm_for(key: &PrivateKey) -> AlgorithmIdentifierOwned {
    use crate::x509::KeyAlgorithm as A;
    let alg = key.algorithm();
    match &key.inner {
        Inner::Token(_) if matches!(alg, A::EcdsaP256) => AlgorithmIdentifierOwned {
            oid: OID_ECDSA_WITH_SHA256,
            parameters: None,
        },
        Inner::Token(_) if matches!(alg, A::EcdsaP384) => AlgorithmIdentifierOwned {
            oid: OID_ECDSA_WITH_SHA384,
            parameters: None,
        },
        // RFC 4055: parameters MUST be NULL for sha256WithRSAEncryption.
        Inner::Rsa(..) | Inner::Token(_) => AlgorithmIdentifierOwned {
            oid: OID_SHA256_WITH_RSA,
            parameters: Some(der::asn1::Null.into()),
        },
        Inner::P256(_) => AlgorithmIdentifierOwned {
            oid: OID_ECDSA_WITH_SHA256,
            parameters: None,
        },
        Inner::P384(_) => AlgorithmIdentifierOwned {
            oid: OID_ECDSA_WITH_SHA384,
            parameters: None,
        },
    }
}

impl signature::Signer<RawSignature> for KeySigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<RawSignature, signature::Error> {
        sign(self.key, msg)
            .map(RawSignature)
            .map_err(|_| signature::Error::new())
    }
}

/// ECDSA over `msg` (curve, digest, secret key), RFC 6979 (deterministic,
/// as `SigningKey` signs), DER. From the secret scalar alone:
/// `SigningKey::from(SecretKey)` would derive the public point again, a
/// second scalar multiplication per signature.
macro_rules! ecdsa_rfc6979 {
    ($curve:ty, $digest:ty, $key:expr, $msg:expr) => {{
        use sha2::Digest;
        let z = <$digest>::digest($msg);
        let (sig, _) = ecdsa::hazmat::sign_prehashed_rfc6979::<$curve, $digest>(
            &$key.to_nonzero_scalar(),
            &z,
            &[],
        );
        sig.to_der().to_vec()
    }};
}

/// Sign `msg` with the key's X.509 signature algorithm (see
/// [`signature_algorithm_for`]).
pub(crate) fn sign(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use signature::SignatureEncoding;
    match &key.inner {
        Inner::Token(k) => k.sign(msg),
        Inner::Rsa(k, _) => {
            // Randomized API so RSA blinding is used.
            let mut rng = os_rng()?;
            let sk = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k.as_ref().clone());
            let sig = sk
                .try_sign_with_rng(&mut rng, msg)
                .map_err(|e| CryptoError::Signing(e.to_string()))?;
            Ok(sig.to_vec())
        }
        Inner::P256(k) => Ok(ecdsa_rfc6979!(p256::NistP256, sha2::Sha256, k, msg)),
        Inner::P384(k) => Ok(ecdsa_rfc6979!(p384::NistP384, sha2::Sha384, k, msg)),
    }
}

fn validate_serial(serial: &[u8]) -> Result<SerialNumber, CryptoError> {
    if serial.len() < 8 {
        return Err(CryptoError::InvalidParams(format!(
            "serial must be at least 8 bytes (64 bits), got {}",
            serial.len()
        )));
    }
    if serial.iter().all(|b| *b == 0) {
        return Err(CryptoError::InvalidParams("serial must be non-zero".into()));
    }
    SerialNumber::new(serial).map_err(|e| CryptoError::InvalidParams(format!("serial: {e}")))
}

/// Build and sign a v3 certificate; returns DER.
pub fn build_certificate(
    params: &CertParams,
    subject_key: &PublicKey,
    signer: Signer<'_>,
) -> Result<Vec<u8>, CryptoError> {
    let serial = validate_serial(&params.serial)?;
    if params.not_after <= params.not_before {
        return Err(CryptoError::InvalidParams(
            "not_after must be after not_before".into(),
        ));
    }
    if !params.is_ca && params.path_len.is_some() {
        return Err(CryptoError::InvalidParams(
            "path_len is only allowed on CA certificates".into(),
        ));
    }
    let validity = Validity::new(
        to_time(params.not_before, "not_before")?,
        to_time(params.not_after, "not_after")?,
    );
    let spki_owned = SubjectPublicKeyInfoOwned::from_der(subject_key.spki_der())
        .map_err(|e| CryptoError::InvalidParams(format!("subject public key: {e}")))?;
    // Reject keys we could not later handle (e.g. RSA-1024).
    subject_key.algorithm()?;

    let subject = params.subject.to_name()?;
    let (signing_key, issuer, authority_key_id) = match signer {
        Signer::SelfSigned(key) => {
            if !key.matches(subject_key) {
                return Err(CryptoError::InvalidParams(
                    "self-signed: signing key does not match subject key".into(),
                ));
            }
            (key, subject.clone(), None)
        }
        Signer::Issuer { cert_der, key } => {
            let issuer_cert = Certificate::from_der(cert_der)
                .map_err(|e| CryptoError::CertParse(format!("issuer certificate: {e}")))?;
            let parsed = super::parse::parse_certificate(cert_der)?;
            if !key.matches(&parsed.public_key) {
                return Err(CryptoError::InvalidParams(
                    "issuer key does not match issuer certificate".into(),
                ));
            }
            let akid = parsed
                .subject_key_id
                .clone()
                .unwrap_or_else(|| parsed.public_key.key_id().to_vec());
            (
                key,
                issuer_cert.tbs_certificate().subject().clone(),
                Some(akid),
            )
        }
    };

    let mut exts = params.request().extensions(&subject)?;
    let ski = OctetString::new(subject_key.key_id().to_vec())
        .map_err(|e| CryptoError::Encode(e.to_string()))?;
    exts.push(ext(
        <SubjectKeyIdentifier as AssociatedOid>::OID,
        false,
        &SubjectKeyIdentifier(ski),
    )?);
    if let Some(akid) = authority_key_id {
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(
                OctetString::new(akid).map_err(|e| CryptoError::Encode(e.to_string()))?,
            ),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        exts.push(ext(
            <AuthorityKeyIdentifier as AssociatedOid>::OID,
            false,
            &aki,
        )?);
    }

    let profile = FixedProfile {
        subject,
        issuer,
        extensions: exts,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, spki_owned)
        .map_err(|e| CryptoError::InvalidParams(e.to_string()))?;
    let ks = KeySigner {
        key: signing_key,
        public: SpkiDer(signing_key.public_key().spki_der().to_vec()),
    };
    let cert = builder
        .build::<_, RawSignature>(&ks)
        .map_err(|e| CryptoError::Signing(e.to_string()))?;
    cert.to_der()
        .map_err(|e| CryptoError::Encode(e.to_string()))
}

/// PEM-encode a DER certificate ("CERTIFICATE").
pub fn cert_to_pem(der: &[u8]) -> String {
    pem::encode("CERTIFICATE", der).unwrap_or_default()
}

/// The CERTIFICATE blocks of a file that also holds a private key (the
/// kubelet's `kubelet-client-<date>.pem`), as DER; the key blocks are skipped
/// unread.
pub fn certs_beside_key(pem: &str) -> Result<Vec<Vec<u8>>, CryptoError> {
    let blocks = pem::decode_all(pem)?;
    let mut out = Vec::new();
    for block in blocks.into_iter().filter(|b| b.label == "CERTIFICATE") {
        Certificate::from_der(&block.der)
            .map_err(|e| CryptoError::CertParse(format!("certificate #{}: {e}", out.len() + 1)))?;
        out.push(block.der.to_vec());
    }
    Ok(out)
}

/// All CERTIFICATE blocks in `pem`, as DER. Any other block type is an error
/// naming the type; each block must decode as an X.509 certificate.
pub fn certs_from_pem(pem: &str) -> Result<Vec<Vec<u8>>, CryptoError> {
    let blocks = pem::decode_all(pem)?;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.into_iter().enumerate() {
        if block.label != "CERTIFICATE" {
            return Err(CryptoError::UnexpectedPemType {
                label: pem::safe_label(&block.label),
            });
        }
        Certificate::from_der(&block.der)
            .map_err(|e| CryptoError::CertParse(format!("certificate #{}: {e}", i + 1)))?;
        out.push(block.der.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use sha2::Digest;

    /// A fixed P-256 key: ECDSA (RFC 6979) signatures are deterministic, so
    /// the same inputs give the same certificate bytes.
    pub(crate) const FIXED_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkw0f4ICRgQdKwuc7
hEJhcraY4GtVeiXmdoX6KAV0IzShRANCAAStEpsL9DhQsuaD722CJ3//QGgfP5Ct
2c1S9tg/+tc1pECjuP/GXBrV9engHie0gmbGBHvwB7qZu0tV7HPGM+DL
-----END PRIVATE KEY-----
";

    pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn at(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    /// The bytes kpki issues for fixed inputs: a self-signed CA (critical
    /// basicConstraints with a path length, keyUsage) and a leaf with an
    /// empty subject (critical SANs), DNS and IP SANs and a repeated EKU.
    /// Guards refactors of the extension list against any byte change.
    #[test]
    fn same_inputs_give_the_same_certificate_bytes() {
        let key = PrivateKey::from_pem(FIXED_KEY).unwrap();
        let ca = CertParams {
            serial: vec![0x11; 16],
            subject: DistinguishedName::cn("kubernetes-ca"),
            not_before: at(1_700_000_000),
            not_after: at(1_800_000_000),
            is_ca: true,
            path_len: Some(0),
            key_usage: KeyUsages {
                digital_signature: true,
                key_cert_sign: true,
                crl_sign: true,
                ..Default::default()
            },
            ext_key_usage: Vec::new(),
            dns_sans: Vec::new(),
            ip_sans: Vec::new(),
        };
        let ca_der = build_certificate(&ca, &key.public_key(), Signer::SelfSigned(&key)).unwrap();
        let leaf = CertParams {
            serial: vec![0x22; 16],
            subject: DistinguishedName::default(),
            is_ca: false,
            path_len: None,
            key_usage: KeyUsages {
                digital_signature: true,
                key_encipherment: true,
                ..Default::default()
            },
            ext_key_usage: vec![
                ExtUsage::ServerAuth,
                ExtUsage::ClientAuth,
                ExtUsage::ServerAuth,
            ],
            dns_sans: vec!["kubernetes.default.svc".into(), "localhost".into()],
            ip_sans: vec!["10.96.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ..ca.clone()
        };
        let leaf_der = build_certificate(
            &leaf,
            &key.public_key(),
            Signer::Issuer {
                cert_der: &ca_der,
                key: &key,
            },
        )
        .unwrap();
        assert_eq!(
            sha256_hex(&ca_der),
            "39d1c05c262acc45ab8936070407ae2872b24bb4da640f2464e45cf2fd760946"
        );
        assert_eq!(
            sha256_hex(&leaf_der),
            "9719e9e905d8ea3dfae2b9741537df7a0ef17e23e128036fa9a982ef1e6de238"
        );
    }
}
