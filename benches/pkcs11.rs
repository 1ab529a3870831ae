//! The kubeadm set signed through SoftHSM2 against files: the same spec
//! (kubeadm preset, one control-plane node, CSR signing off so that the
//! cluster CA may be token-held) with every CA key in a PKCS#11 token vs
//! every CA key in a file.
//!
//! What differs is the signing: each certificate a token CA signs is one
//! C_Sign through the module (serialised through the token's session).
//! Measured:
//! - `renew_all/*`: `kpki renew --all` into a `MemStore` (every leaf
//!   re-signed by its CA, leaf keys kept, CA keys found in the token);
//! - `leaf_sign/*`: one leaf built and signed with `build_certificate` by a
//!   token key vs a key in memory;
//! - `token_open`: what each token run pays first (session, C_Login).
//!
//! The tokens are initialised at start in a temp dir (`softhsm2-util
//! --init-token --free --label kpki --pin 1234 --so-pin 5678`, and `kpki-rsa`
//! for the RSA set; SOFTHSM2_CONF pointing there, the PIN in a 0600 file);
//! the process re-runs itself with that environment. It
//! fails (never skips) when softhsm2-util or the SoftHSM2 module is missing.
//!
//! `cargo bench -p pki-core --bench pkcs11 -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::LeafToSign;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group};
use pki_core::{
    ClusterSpec, IssueOptions, KeyAlgorithm, MemStore, PinSource, Plan, PrivateKey, RenewPolicy,
    Token, TokenConfig,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Set (to the temp dir) in the re-run process: the token is ready there.
const READY: &str = "KPKI_BENCH_PKCS11_DIR";
/// Each algorithm, and the token its CA keys go to (a CA's key is labelled
/// by its id, so one token holds one algorithm's set).
const ALGS: [(KeyAlgorithm, &str, &str); 2] = [
    (KeyAlgorithm::EcdsaP256, "ecdsa-p256", "kpki"),
    (KeyAlgorithm::Rsa2048, "rsa-2048", "kpki-rsa"),
];

/// The temp dir the parent made (token dir, config, PIN file).
fn dir() -> PathBuf {
    PathBuf::from(std::env::var_os(READY).expect("run through main"))
}

fn pin_file() -> PathBuf {
    dir().join("pin")
}

/// The kubeadm spec, CA keys in files or every CA in the token `token`.
fn plan(alg: &str, token: Option<&str>) -> Plan {
    let mut spec = format!(
        "profile = \"kubeadm\"\n[crypto]\nalgorithm = \"{alg}\"\n\
         [[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.11\"\n\
         [controller_manager]\ncsr_signing = false\n"
    );
    if let Some(label) = token {
        spec.push_str(&format!(
            "[ca_keys]\nstore = \"pkcs11\"\nmodule = \"{MODULE}\"\ntoken_label = \"{label}\"\n\
             pin_file = \"{}\"\n",
            pin_file().display()
        ));
    }
    let plan =
        Plan::from_spec(ClusterSpec::parse(&spec, &dir().join("bench.toml")).unwrap()).unwrap();
    assert_eq!(plan.report.counts().0, 0, "the plan has errors");
    plan
}

fn renew_all(c: &mut Criterion) {
    let mut g = c.benchmark_group("renew_all");
    g.sample_size(10);
    let renew = IssueOptions {
        renew: RenewPolicy::Within {
            window: time::Duration::days(200 * 365),
            new_keys: false,
        },
        ..IssueOptions::default()
    };
    for (_, alg, label) in ALGS {
        for (kind, token) in [("files", None), ("token", Some(label))] {
            let plan = plan(alg, token);
            // Issued once (CA keys made: in the token, or in the store).
            let mut issued = MemStore::default();
            pki_core::issue(&plan, &mut issued, &IssueOptions::default()).unwrap();
            let key_files = issued
                .files
                .keys()
                .filter(|p| p.ends_with("ca.key"))
                .count();
            assert_eq!(
                key_files == 0,
                token.is_some(),
                "{kind}: {key_files} CA key files"
            );
            g.bench_function(BenchmarkId::new(alg, kind), |b| {
                b.iter_batched(
                    || issued.clone(),
                    |mut store| {
                        let r = pki_core::issue(&plan, &mut store, &renew).unwrap();
                        assert!(store != issued, "renew changed nothing");
                        r
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    g.finish();
}

fn leaf_sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf_sign");
    g.sample_size(20);
    for (alg, name, label) in ALGS {
        let token = Token::open(&TokenConfig {
            module: PathBuf::from(MODULE),
            token_label: label.into(),
            pin: PinSource::File(pin_file()),
        })
        .unwrap();
        let in_token = token.generate("bench-ca", alg).unwrap();
        assert!(in_token.is_token_held());
        let in_memory = PrivateKey::generate(alg).unwrap();
        for (kind, ca_key) in [("files", &in_memory), ("token", &in_token)] {
            let l = LeafToSign::new(ca_key, alg);
            g.bench_function(BenchmarkId::new(name, kind), |b| b.iter(|| l.sign()));
        }
    }
    g.finish();
}

/// What every token run pays once: load (cached), find the token by
/// label, open a session, C_Login with the PIN from the file.
fn token_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_open");
    g.sample_size(20);
    let cfg = TokenConfig {
        module: PathBuf::from(MODULE),
        token_label: "kpki".into(),
        pin: PinSource::File(pin_file()),
    };
    g.bench_function("open+login", |b| b.iter(|| Token::open(&cfg).unwrap()));
    g.finish();
}

criterion_group!(benches, renew_all, leaf_sign, token_open);

/// Makes the token in a temp dir, then runs this binary again (same
/// arguments) with SOFTHSM2_CONF pointing there; the dir goes afterwards.
fn init_token_and_rerun() -> i32 {
    assert!(
        Path::new(MODULE).is_file(),
        "{MODULE} is missing: run scripts/install-test-deps"
    );
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    for (_, _, label) in ALGS {
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", "1234", "--so-pin", "5678"])
            .output()
            .unwrap_or_else(|e| {
                panic!("softhsm2-util is required (scripts/install-test-deps): {e}")
            });
        assert!(
            init.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let pin = dir.path().join("pin");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pin)
            .unwrap();
        f.write_all(b"1234\n").unwrap();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", &conf)
        .env(READY, dir.path())
        .status()
        .unwrap();
    status.code().unwrap_or(1)
}

fn main() {
    if std::env::var_os(READY).is_none() {
        std::process::exit(init_token_and_rerun());
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
