//! Planning (`ClusterSpec::parse` + `Plan::from_spec`: expand, validate,
//! layout) for the isolated profile with 3, 100, 1,000 and 5,000 workers.
//!
//! `cargo bench -p pki-core --bench plan`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use pki_core::{ClusterSpec, Plan};

/// An isolated-profile spec: one control-plane node, `workers` workers.
fn spec(workers: usize) -> String {
    let mut s = String::from(
        "profile = \"isolated\"\n\n[cluster]\nservice_cidr = \"10.96.0.0/16\"\nendpoint = \"10.0.0.11:6443\"\n\n[crypto]\nalgorithm = \"ecdsa-p256\"\n\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.11\"\n",
    );
    for i in 0..workers {
        write!(
            s,
            "\n[[worker]]\nname = \"w{i:05}\"\naddress = \"10.1.{}.{}\"\n",
            i / 250,
            i % 250 + 1
        )
        .unwrap();
    }
    s
}

fn plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan_isolated");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    for workers in [3usize, 100, 1_000, 5_000] {
        let text = spec(workers);
        let path = Path::new("bench.toml");
        // Fail early (and loudly) if the spec is wrong.
        let p = Plan::from_spec(ClusterSpec::parse(&text, path).unwrap()).unwrap();
        assert!(!p.report.has_errors(), "{workers} workers: error findings");
        g.throughput(Throughput::Elements(workers as u64));
        g.bench_function(BenchmarkId::from_parameter(workers), |b| {
            b.iter(|| Plan::from_spec(ClusterSpec::parse(&text, path).unwrap()).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, plan);
criterion_main!(benches);
