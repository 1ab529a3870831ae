//! Key generation and leaf build + sign, per algorithm.
//!
//! `cargo bench -p pki-core --bench keys`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use pki_core::{
    CertParams, DistinguishedName, ExtUsage, KeyAlgorithm, KeyUsages, PrivateKey, Signer,
    build_certificate, random_serial,
};

const ALGS: [(KeyAlgorithm, &str); 3] = [
    (KeyAlgorithm::EcdsaP256, "ecdsa-p256"),
    (KeyAlgorithm::EcdsaP384, "ecdsa-p384"),
    (KeyAlgorithm::Rsa2048, "rsa-2048"),
];

fn params(cn: &str, is_ca: bool) -> CertParams {
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

fn keygen(c: &mut Criterion) {
    let mut g = c.benchmark_group("keygen");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);
    for (alg, name) in ALGS {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| PrivateKey::generate(alg).unwrap());
        });
    }
    g.finish();
}

fn leaf_sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf_build_sign");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for (alg, name) in ALGS {
        let ca_key = PrivateKey::generate(alg).unwrap();
        let ca_der = build_certificate(
            &params("kubernetes", true),
            &ca_key.public_key(),
            Signer::SelfSigned(&ca_key),
        )
        .unwrap();
        let leaf_pub = PrivateKey::generate(alg).unwrap().public_key();
        let leaf = params("kube-apiserver", false);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                build_certificate(
                    &leaf,
                    &leaf_pub,
                    Signer::Issuer {
                        cert_der: &ca_der,
                        key: &ca_key,
                    },
                )
                .unwrap()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, keygen, leaf_sign);
criterion_main!(benches);
