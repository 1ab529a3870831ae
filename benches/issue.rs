//! Issuing kubeadm's set (one control-plane node, ECDSA P-256) into a
//! `MemStore`: key generation, signing and rendering, no disk.
//!
//! `cargo bench -p pki-core --bench issue`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use pki_core::{ClusterSpec, IssueOptions, MemStore, Plan};

const SPEC: &str = r#"profile = "kubeadm"

[cluster]
service_cidr = "10.96.0.0/16"
endpoint = "10.0.0.11:6443"

[crypto]
algorithm = "ecdsa-p256"

[[control_plane]]
name = "cp1"
address = "10.0.0.11"
"#;

fn issue(c: &mut Criterion) {
    let plan = Plan::from_spec(ClusterSpec::parse(SPEC, Path::new("bench.toml")).unwrap()).unwrap();
    let mut g = c.benchmark_group("issue_memstore");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("kubeadm/ecdsa-p256", |b| {
        b.iter(|| {
            let mut store = MemStore::default();
            let report = pki_core::issue(&plan, &mut store, &IssueOptions::default()).unwrap();
            assert!(!store.files.is_empty());
            report
        });
    });
    g.bench_function("kubeadm/ecdsa-p256/jobs=1", |b| {
        let opts = IssueOptions {
            jobs: Some(1),
            ..IssueOptions::default()
        };
        b.iter(|| pki_core::issue(&plan, &mut MemStore::default(), &opts).unwrap());
    });
    g.finish();
}

criterion_group!(benches, issue);
criterion_main!(benches);
