//! A dry run plans and compares without generating a single key: it reports
//! the same files and actions as the real run would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pki_core::{
    CertParams, CryptoBackend, CryptoError, IssueOptions, KeyAlgorithm, MemStore, Plan, PrivateKey,
    PublicKey, RustCrypto, Signer,
};

/// The default backend, counting the keys it generates.
#[derive(Default)]
struct Counting(AtomicUsize);

impl CryptoBackend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn generate(&self, alg: KeyAlgorithm) -> Result<PrivateKey, CryptoError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        RustCrypto.generate(alg)
    }
    fn build(
        &self,
        params: &CertParams,
        subject_key: &PublicKey,
        signer: Signer<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        RustCrypto.build(params, subject_key, signer)
    }
}

fn plan(name: &str) -> Plan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Plan::load(&root.join("fixtures/specs").join(name)).unwrap()
}

fn run(plan: &Plan, store: &mut MemStore, dry_run: bool) -> (usize, pki_core::IssueReport) {
    let backend = Arc::new(Counting::default());
    let opts = IssueOptions {
        dry_run,
        backend: backend.clone(),
        ..IssueOptions::default()
    };
    let report = pki_core::issue(plan, store, &opts).unwrap();
    (backend.0.load(Ordering::SeqCst), report)
}

#[test]
fn a_dry_run_generates_no_key_and_reports_what_the_real_run_writes() {
    let p = plan("example.toml");
    let (dry_keys, dry) = run(&p, &mut MemStore::default(), true);
    assert_eq!(dry_keys, 0, "a dry run generated keys");
    let (real_keys, real) = run(&p, &mut MemStore::default(), false);
    assert!(
        real_keys > 10,
        "the real run generates every key ({real_keys})"
    );
    let paths = |r: &pki_core::IssueReport| {
        r.files
            .iter()
            .map(|(p, c)| (p.clone(), *c))
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&dry), paths(&real), "same files, same changes");
    let actions = |r: &pki_core::IssueReport| {
        r.actions
            .iter()
            .map(|(i, a)| format!("{i}: {a:?}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(actions(&dry), actions(&real));
}

#[test]
fn a_dry_run_over_an_issued_pki_reports_exactly_the_drift() {
    // RSA (seed 000): the dry run of a fresh set would generate ~30 RSA keys.
    let p = plan("seed000.toml");
    let (keys, fresh) = run(&p, &mut MemStore::default(), true);
    assert_eq!(keys, 0);
    assert!(fresh.changed_files() > 100, "{}", fresh.changed_files());
    // Over an issued ECDSA PKI nothing changes, and nothing is generated.
    let p = plan("example.toml");
    let mut store = MemStore::default();
    run(&p, &mut store, false);
    let (keys, again) = run(&p, &mut store, true);
    assert_eq!(keys, 0);
    assert_eq!(again.changed_files(), 0);
    // --replace-ca-keys as a dry run: every CA would be re-keyed, none generated.
    let backend = Arc::new(Counting::default());
    let opts = IssueOptions {
        dry_run: true,
        replace_ca_keys: true,
        backend: backend.clone(),
        ..IssueOptions::default()
    };
    let r = pki_core::issue(&p, &mut store, &opts).unwrap();
    assert_eq!(backend.0.load(Ordering::SeqCst), 0);
    assert!(
        r.actions
            .iter()
            .any(|(_, a)| matches!(a, pki_core::Action::Rekeyed(_))),
        "{:?}",
        r.actions
    );
}
