//! PKCS#10 certificate signing requests (x509-cert `CertReq`), signed with
//! [`sign`](super::cert::sign) and [`signature_algorithm_for`]: whatever key
//! signs certificates signs requests too.

use std::net::IpAddr;

use der::asn1::{BitString, Ia5String, ObjectIdentifier, SetOfVec};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

use super::cert::{eku_oid, ext, ku_is_empty, ku_to_ext, sign, signature_algorithm_for};
use super::keys::{PrivateKey, PublicKey};
use super::{CryptoError, DistinguishedName, pem};
use crate::x509::{ExtUsage, KeyUsages};

/// What a CSR asks for: the subject and the extensions requested in its
/// `extensionRequest` attribute.
#[derive(Clone, Debug, Default)]
pub struct CsrParams {
    /// The subject.
    pub subject: DistinguishedName,
    /// basicConstraints CA flag (always requested, critical).
    pub is_ca: bool,
    /// basicConstraints path length (CAs only).
    pub path_len: Option<u8>,
    /// keyUsage (critical; omitted when empty).
    pub key_usage: KeyUsages,
    /// extendedKeyUsage (omitted when empty).
    pub ext_key_usage: Vec<ExtUsage>,
    /// DNS subjectAltNames.
    pub dns_sans: Vec<String>,
    /// IP subjectAltNames.
    pub ip_sans: Vec<IpAddr>,
}

impl CsrParams {
    /// The extensions a request and the certificate issued for it share, in
    /// this order: basicConstraints (critical, path length on CAs only),
    /// keyUsage (critical, when any bit is set), extendedKeyUsage (when any,
    /// duplicates dropped), subjectAltName (when any; critical when
    /// `subject`, the encoded [`CsrParams::subject`], is empty: RFC 5280
    /// 4.2.1.6).
    pub(crate) fn extensions(&self, subject: &Name) -> Result<Vec<Extension>, CryptoError> {
        let mut exts = vec![ext(
            <BasicConstraints as AssociatedOid>::OID,
            true,
            &BasicConstraints {
                ca: self.is_ca,
                path_len_constraint: self.path_len.filter(|_| self.is_ca),
            },
        )?];
        if !ku_is_empty(&self.key_usage) {
            exts.push(ext(
                <KeyUsage as AssociatedOid>::OID,
                true,
                &ku_to_ext(self.key_usage),
            )?);
        }
        if !self.ext_key_usage.is_empty() {
            let mut oids: Vec<ObjectIdentifier> = Vec::new();
            for u in &self.ext_key_usage {
                let oid = eku_oid(*u);
                if !oids.contains(&oid) {
                    oids.push(oid);
                }
            }
            exts.push(ext(
                <ExtendedKeyUsage as AssociatedOid>::OID,
                false,
                &ExtendedKeyUsage(oids),
            )?);
        }
        if !self.dns_sans.is_empty() || !self.ip_sans.is_empty() {
            let mut names = Vec::new();
            for d in &self.dns_sans {
                let ia5 = Ia5String::new(d).map_err(|_| {
                    CryptoError::InvalidParams(format!("DNS SAN {d:?} is not ASCII"))
                })?;
                names.push(GeneralName::DnsName(ia5));
            }
            for ip in &self.ip_sans {
                names.push(GeneralName::from(*ip));
            }
            exts.push(ext(
                <SubjectAltName as AssociatedOid>::OID,
                subject.is_empty(),
                &SubjectAltName(names),
            )?);
        }
        Ok(exts)
    }
}

/// Builds and signs a PKCS#10 request; returns PEM (`CERTIFICATE REQUEST`).
/// ECDSA (RFC 6979) and RSA PKCS#1 v1.5 signatures are deterministic, so
/// the same key and parameters give the same bytes.
pub fn build_csr(params: &CsrParams, key: &PrivateKey) -> Result<String, CryptoError> {
    let public = key.public_key();
    public.algorithm()?;
    let spki = SubjectPublicKeyInfoOwned::from_der(public.spki_der())
        .map_err(|e| CryptoError::InvalidParams(format!("public key: {e}")))?;
    let subject = params.subject.to_name()?;
    let exts = params.extensions(&subject)?;
    let attr = Attribute::try_from(ExtensionReq(exts))
        .map_err(|e| CryptoError::Encode(format!("extensionRequest: {e}")))?;
    let mut attributes = SetOfVec::new();
    attributes
        .insert(attr)
        .map_err(|e| CryptoError::Encode(format!("attributes: {e}")))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: spki,
        attributes,
    };
    let tbs = info
        .to_der()
        .map_err(|e| CryptoError::Encode(format!("request: {e}")))?;
    let sig = sign(key, &tbs)?;
    let req = CertReq {
        info,
        algorithm: signature_algorithm_for(key),
        signature: BitString::from_bytes(&sig)
            .map_err(|e| CryptoError::Encode(format!("signature: {e}")))?,
    };
    let der = req
        .to_der()
        .map_err(|e| CryptoError::Encode(format!("request: {e}")))?;
    pem::encode("CERTIFICATE REQUEST", &der)
}

/// The public key a PEM CSR asks a certificate for (its signature is not
/// checked: kpki only reads back the requests it wrote).
pub fn csr_public_key(pem_text: &str) -> Result<PublicKey, CryptoError> {
    let blocks = pem::decode_all(pem_text)?;
    let block = blocks
        .into_iter()
        .find(|b| b.label == "CERTIFICATE REQUEST")
        .ok_or(CryptoError::NoPemBlock)?;
    let req = CertReq::from_der(&block.der)
        .map_err(|e| CryptoError::CertParse(format!("certificate request: {e}")))?;
    let spki = req
        .info
        .public_key
        .to_der()
        .map_err(|e| CryptoError::Encode(format!("request public key: {e}")))?;
    PublicKey::from_spki_der(&spki)
}

/// Whether two PEM requests ask for the same thing (the same
/// `CertificationRequestInfo`: subject, key, extensions), whatever their
/// signatures (an ECDSA signature made by a token is randomised).
pub fn same_request(a: &str, b: &str) -> bool {
    fn info(pem_text: &str) -> Option<Vec<u8>> {
        let blocks = pem::decode_all(pem_text).ok()?;
        let block = blocks
            .into_iter()
            .find(|b| b.label == "CERTIFICATE REQUEST")?;
        CertReq::from_der(&block.der).ok()?.info.to_der().ok()
    }
    matches!((info(a), info(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::x509::KeyAlgorithm;

    #[test]
    fn same_key_same_request_and_key_reads_back() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let p = CsrParams {
            subject: DistinguishedName::cn("kubernetes-ca"),
            is_ca: true,
            key_usage: KeyUsages {
                key_cert_sign: true,
                crl_sign: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let a = build_csr(&p, &key).unwrap();
        let b = build_csr(&p, &key).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.matches(&csr_public_key(&a).unwrap()));
    }

    /// The request bytes for fixed inputs (a fixed key, every extension,
    /// an empty subject so the SANs are critical): guards refactors of the
    /// extension list against any byte change.
    #[test]
    fn same_inputs_give_the_same_request_bytes() {
        let key = PrivateKey::from_pem(crate::crypto::cert::tests::FIXED_KEY).unwrap();
        let p = CsrParams {
            subject: DistinguishedName::default(),
            is_ca: false,
            path_len: Some(3),
            key_usage: KeyUsages {
                digital_signature: true,
                key_encipherment: true,
                ..Default::default()
            },
            ext_key_usage: vec![
                ExtUsage::ClientAuth,
                ExtUsage::ServerAuth,
                ExtUsage::ClientAuth,
            ],
            dns_sans: vec!["kubernetes.default.svc".into()],
            ip_sans: vec!["10.96.0.1".parse().unwrap(), "::1".parse().unwrap()],
        };
        let ca = CsrParams {
            subject: DistinguishedName::cn("kubernetes-ca"),
            is_ca: true,
            path_len: Some(1),
            key_usage: KeyUsages {
                key_cert_sign: true,
                crl_sign: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let sha = crate::crypto::cert::tests::sha256_hex;
        assert_eq!(
            sha(build_csr(&p, &key).unwrap().as_bytes()),
            "d6702217f6d502ed1d1bc273dc4a27c8dc0a033f429ec799579daddedd53461b"
        );
        assert_eq!(
            sha(build_csr(&ca, &key).unwrap().as_bytes()),
            "f010e0f359c572bd5e800b5ee6e27c03ee98938f145b9f38e1c4913e106f6e5a"
        );
    }
}
