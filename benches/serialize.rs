//! Serialization: certificate, private and public key PEM, and a kubeconfig
//! with embedded certificate, key and CA (`Kubeconfig::single(...).to_yaml()`).
//!
//! `cargo bench -p pki-core --bench serialize`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kubeconfig::{Credential, Kubeconfig, Material};
use pki_core::{
    CertParams, DistinguishedName, ExtUsage, KeyAlgorithm, KeyUsages, PrivateKey, Signer,
    build_certificate, cert_to_pem, random_serial,
};

fn self_signed(key: &PrivateKey, cn: &str) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let params = CertParams {
        serial: random_serial(),
        subject: DistinguishedName::cn(cn),
        not_before: now,
        not_after: now + time::Duration::days(365),
        is_ca: true,
        path_len: None,
        key_usage: KeyUsages {
            digital_signature: true,
            key_encipherment: false,
            key_cert_sign: true,
            crl_sign: false,
        },
        ext_key_usage: Vec::<ExtUsage>::new(),
        dns_sans: Vec::new(),
        ip_sans: Vec::new(),
    };
    build_certificate(&params, &key.public_key(), Signer::SelfSigned(key)).unwrap()
}

fn pem(c: &mut Criterion) {
    let mut g = c.benchmark_group("pem");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    for (alg, name) in [
        (KeyAlgorithm::EcdsaP256, "ecdsa-p256"),
        (KeyAlgorithm::Rsa2048, "rsa-2048"),
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        let der = self_signed(&key, "kubernetes");
        let public = key.public_key();
        g.bench_function(BenchmarkId::new("cert", name), |b| {
            b.iter(|| cert_to_pem(&der));
        });
        g.bench_function(BenchmarkId::new("private_key", name), |b| {
            b.iter(|| key.to_pem().unwrap());
        });
        g.bench_function(BenchmarkId::new("public_key", name), |b| {
            b.iter(|| public.to_pem().unwrap());
        });
    }
    g.finish();
}

fn kubeconfig_yaml(c: &mut Criterion) {
    let mut g = c.benchmark_group("kubeconfig");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    for (alg, name) in [
        (KeyAlgorithm::EcdsaP256, "ecdsa-p256"),
        (KeyAlgorithm::Rsa2048, "rsa-2048"),
    ] {
        let ca_key = PrivateKey::generate(alg).unwrap();
        let ca_pem = cert_to_pem(&self_signed(&ca_key, "kubernetes"));
        let key = PrivateKey::generate(alg).unwrap();
        let cert_pem = cert_to_pem(&self_signed(&key, "kubernetes-admin"));
        let key_pem = key.to_pem().unwrap().to_string();
        g.bench_function(BenchmarkId::new("single_to_yaml", name), |b| {
            b.iter(|| {
                Kubeconfig::single(
                    "kubernetes",
                    "https://10.0.0.11:6443",
                    Material::Embedded(ca_pem.clone().into_bytes()),
                    "kubernetes-admin",
                    Credential::ClientCert {
                        cert: Material::Embedded(cert_pem.clone().into_bytes()),
                        key: Material::Embedded(key_pem.clone().into_bytes()),
                    },
                )
                .to_yaml()
                .unwrap()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, pem, kubeconfig_yaml);
criterion_main!(benches);
