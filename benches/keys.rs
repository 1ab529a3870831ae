//! Key generation and leaf build + sign, per algorithm.
//!
//! `cargo bench -p pki-core --bench keys`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

mod common;

use common::LeafToSign;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use pki_core::{KeyAlgorithm, PrivateKey};

const ALGS: [(KeyAlgorithm, &str); 3] = [
    (KeyAlgorithm::EcdsaP256, "ecdsa-p256"),
    (KeyAlgorithm::EcdsaP384, "ecdsa-p384"),
    (KeyAlgorithm::Rsa2048, "rsa-2048"),
];

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
        let l = LeafToSign::new(&ca_key, alg);
        g.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| l.sign()));
    }
    g.finish();
}

criterion_group!(benches, keygen, leaf_sign);
criterion_main!(benches);
