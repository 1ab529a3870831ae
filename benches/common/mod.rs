//! Helpers shared by the benches (`mod common;`).
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};

use pki_core::{
    CertParams, DistinguishedName, ExtUsage, KeyAlgorithm, KeyUsages, PrivateKey, PublicKey,
    Signer, build_certificate, random_serial,
};

/// A CA's or an apiserver-like leaf's parameters, valid from 5 minutes ago
/// for a year.
pub fn params(cn: &str, is_ca: bool) -> CertParams {
    let now = time::OffsetDateTime::now_utc();
    CertParams {
        serial: random_serial(),
        subject: DistinguishedName::cn(cn),
        not_before: now - time::Duration::minutes(5),
        not_after: now + time::Duration::days(365),
        is_ca,
        path_len: None,
        key_usage: KeyUsages {
            digital_signature: true,
            key_encipherment: !is_ca,
            key_cert_sign: is_ca,
            crl_sign: false,
        },
        ext_key_usage: if is_ca {
            Vec::new()
        } else {
            vec![ExtUsage::ServerAuth]
        },
        dns_sans: if is_ca {
            Vec::new()
        } else {
            [
                "cp1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(String::from)
            .to_vec()
        },
        ip_sans: if is_ca {
            Vec::new()
        } else {
            vec![
                IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)),
            ]
        },
    }
}

/// A CA (its key and a self-signed certificate of it) and a leaf for it to
/// sign: an apiserver-like certificate for a fresh key of `alg`.
pub struct LeafToSign<'a> {
    ca_key: &'a PrivateKey,
    ca_der: Vec<u8>,
    leaf: CertParams,
    leaf_pub: PublicKey,
}

impl<'a> LeafToSign<'a> {
    pub fn new(ca_key: &'a PrivateKey, alg: KeyAlgorithm) -> Self {
        let ca_der = build_certificate(
            &params("bench-ca", true),
            &ca_key.public_key(),
            Signer::SelfSigned(ca_key),
        )
        .unwrap();
        Self {
            ca_key,
            ca_der,
            leaf: params("kube-apiserver", false),
            leaf_pub: PrivateKey::generate(alg).unwrap().public_key(),
        }
    }

    /// Builds the leaf and signs it with the CA key: DER.
    pub fn sign(&self) -> Vec<u8> {
        build_certificate(
            &self.leaf,
            &self.leaf_pub,
            Signer::Issuer {
                cert_der: &self.ca_der,
                key: self.ca_key,
            },
        )
        .unwrap()
    }
}
