//! ECDSA P-256 / SHA-256 verification with precomputed tables.
//!
//! An audit verifies about ten thousand signatures made by a handful of CA
//! keys. The generic verifier (`ecdsa::hazmat::verify_prehashed`) computes
//! `u1·G + u2·Q` with windowed NAF from scratch each time: 256 doublings and
//! about 100 additions. Here `G` and each CA key `Q` that verifies more than a
//! few dozen signatures get a table of `j·256^i·P` (32 rows of 255 affine
//! points, about 590 KB, built in a few milliseconds), and `u·P` is at most
//! 32 mixed additions and no doubling.
//!
//! Same arithmetic (`p256`'s field, scalar and complete point formulas), same
//! acceptance rule as `verify_prehashed`: `r == x(u1·G + u2·Q) mod n` with
//! `w = s⁻¹`, `u1 = z·w`, `u2 = r·w`. Only public data is involved
//! (signature, digest, public key), so the variable-time table walk leaks
//! nothing secret. The tests compare it with the generic verifier on valid,
//! tampered and foreign signatures.

use p256::elliptic_curve::BatchNormalize;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

/// Rows of the table: one per byte of a 256-bit scalar.
const ROWS: usize = 32;

/// Entries of a row: the non-zero byte values.
const PER_ROW: usize = 255;

/// A key verifies this many signatures the generic way before its table is
/// built (a table costs about as much as three verifications).
const TABLE_AFTER: u32 = 32;

/// At most this many keys are counted, and this many tables kept, per
/// process (an embedding installer may audit many clusters in one process).
const MAX_KEYS: usize = 4096;
const MAX_TABLES: usize = 16;

/// `points[i * PER_ROW + j - 1] = j·256^i·P` for `j` in 1..=255.
struct Table {
    points: Vec<AffinePoint>,
}

impl Table {
    fn new(p: ProjectivePoint) -> Self {
        let mut points = Vec::with_capacity(ROWS * PER_ROW);
        let mut base = p;
        for _ in 0..ROWS {
            let mut m = base;
            for _ in 0..PER_ROW {
                points.push(m);
                m += base;
            }
            // m is now 256·base.
            base = m;
        }
        Self {
            points: ProjectivePoint::batch_normalize(points.as_slice()),
        }
    }

    /// `u·P`, variable time (public scalars only).
    fn mul_vartime(&self, u: &Scalar, acc: &mut ProjectivePoint) {
        let bytes: FieldBytes = u.to_bytes();
        // Big-endian bytes: row i is the i-th byte from the least significant end.
        for (i, byte) in bytes.iter().rev().enumerate() {
            if *byte != 0
                && let Some(pt) = self.points.get(i * PER_ROW + usize::from(*byte) - 1)
            {
                *acc += pt;
            }
        }
    }
}

static GENERATOR: LazyLock<Table> = LazyLock::new(|| Table::new(ProjectivePoint::generator()));

#[derive(Default)]
struct Entry {
    uses: AtomicU32,
    table: OnceLock<Option<Arc<Table>>>,
}

#[derive(Default)]
struct Cache {
    keys: RwLock<HashMap<Vec<u8>, Arc<Entry>>>,
    tables: AtomicUsize,
}

static CACHE: LazyLock<Cache> = LazyLock::new(Cache::default);

impl Cache {
    /// The table for `q` (whose SubjectPublicKeyInfo is `spki_der`), once it has been
    /// used often enough; `None` means: verify the generic way.
    fn table(&self, spki_der: &[u8], q: &AffinePoint) -> Option<Arc<Table>> {
        let found = self.keys.read().ok()?.get(spki_der).cloned();
        let entry = match found {
            Some(e) => e,
            None => {
                let mut keys = self.keys.write().ok()?;
                if keys.len() >= MAX_KEYS && !keys.contains_key(spki_der) {
                    return None;
                }
                keys.entry(spki_der.to_vec()).or_default().clone()
            }
        };
        if entry.uses.fetch_add(1, Ordering::Relaxed) < TABLE_AFTER {
            return None;
        }
        entry
            .table
            .get_or_init(|| {
                (self.tables.fetch_add(1, Ordering::Relaxed) < MAX_TABLES)
                    .then(|| Arc::new(Table::new(ProjectivePoint::from(*q))))
            })
            .clone()
    }
}

/// Verifies an ECDSA P-256 signature (DER) over a SHA-256 digest with the
/// public key `spki_der`, using tables for keys that verify many signatures.
/// `None` when the key or signature does not parse (the caller treats that
/// as "not verified").
pub(crate) fn verify_p256_sha256(spki_der: &[u8], digest: &[u8], sig_der: &[u8]) -> Option<bool> {
    use p256::pkcs8::DecodePublicKey;
    let q = p256::PublicKey::from_public_key_der(spki_der).ok()?;
    let sig = p256::ecdsa::Signature::from_der(sig_der).ok()?;
    let q = *q.as_affine();
    match CACHE.table(spki_der, &q) {
        Some(t) => Some(verify_with(&t, digest, &sig)),
        None => {
            use signature::hazmat::PrehashVerifier;
            let vk = p256::ecdsa::VerifyingKey::from_affine(q).ok()?;
            Some(vk.verify_prehash(digest, &sig).is_ok())
        }
    }
}

fn verify_with(t: &Table, digest: &[u8], sig: &p256::ecdsa::Signature) -> bool {
    let (r, s) = sig.split_scalars();
    let Some(z) = digest_scalar(digest) else {
        return false;
    };
    let Some(s_inv) = Option::<Scalar>::from(s.invert_vartime()) else {
        return false;
    };
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let mut acc = ProjectivePoint::IDENTITY;
    GENERATOR.mul_vartime(&u1, &mut acc);
    t.mul_vartime(&u2, &mut acc);
    if bool::from(acc.is_identity()) {
        return false;
    }
    let x = acc.to_affine().x();
    *r == <Scalar as Reduce<FieldBytes>>::reduce(&x)
}

/// The digest as a scalar: leftmost 256 bits, reduced mod n (SEC1 4.1.4 step 5).
fn digest_scalar(digest: &[u8]) -> Option<Scalar> {
    let mut bytes = FieldBytes::default();
    let take = digest.len().min(32);
    // Shorter digests are right-aligned (big-endian zero padding).
    let dst = bytes.get_mut(32 - take..)?;
    dst.copy_from_slice(digest.get(..take)?);
    Some(<Scalar as Reduce<FieldBytes>>::reduce(&bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use p256::ecdsa::{DerSignature, SigningKey, signature::hazmat::PrehashSigner};
    use p256::pkcs8::EncodePublicKey;
    use proptest::prelude::*;
    use sha2::Digest;

    fn generic(spki: &[u8], digest: &[u8], sig: &[u8]) -> bool {
        use p256::pkcs8::DecodePublicKey;
        use signature::hazmat::PrehashVerifier;
        let vk = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
        match p256::ecdsa::Signature::from_der(sig) {
            Ok(s) => vk.verify_prehash(digest, &s).is_ok(),
            Err(_) => false,
        }
    }

    fn key(seed: u8) -> (SigningKey, Vec<u8>) {
        let mut b = [7u8; 32];
        b[0] = seed.max(1);
        let sk = SigningKey::from_slice(&b).unwrap();
        let spki = sk.verifying_key().to_public_key_der().unwrap().into_vec();
        (sk, spki)
    }

    fn fast(spki: &[u8], digest: &[u8], sig: &[u8]) -> bool {
        let q = p256::PublicKey::from_public_key_der(spki).unwrap();
        let t = Table::new(ProjectivePoint::from(*q.as_affine()));
        match p256::ecdsa::Signature::from_der(sig) {
            Ok(s) => verify_with(&t, digest, &s),
            Err(_) => false,
        }
    }
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn tables_hold_the_multiples() {
        let g = ProjectivePoint::generator();
        let t = Table::new(g);
        assert_eq!(t.points.len(), ROWS * PER_ROW);
        for i in (0..ROWS).step_by(7) {
            for j in [1u64, 2, 15, 16, 128, 254, 255] {
                let mut e = Scalar::from(j);
                for _ in 0..i {
                    e *= Scalar::from(256u64);
                }
                let got = t.points[i * PER_ROW + j as usize - 1];
                assert_eq!(ProjectivePoint::from(got), g * e, "row {i} entry {j}");
            }
        }
        let mut acc = ProjectivePoint::IDENTITY;
        let u = Scalar::from(0x1234_5678_9abc_def0u64) * Scalar::from(0xfedc_ba98_7654_3210u64);
        t.mul_vartime(&u, &mut acc);
        assert_eq!(acc, g * u);
        let mut zero = ProjectivePoint::IDENTITY;
        t.mul_vartime(&Scalar::ZERO, &mut zero);
        assert!(bool::from(zero.is_identity()));
        let mut minus = ProjectivePoint::IDENTITY;
        t.mul_vartime(&-Scalar::ONE, &mut minus);
        assert_eq!(minus, -g);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agrees_with_the_generic_verifier(seed in 1u8.., other in 1u8.., msg in proptest::collection::vec(any::<u8>(), 0..64), flip in 0usize..72) {
            let (sk, spki) = key(seed);
            let digest = sha2::Sha256::digest(&msg);
            let sig: DerSignature = sk.sign_prehash(&digest).unwrap();
            let sig = sig.as_bytes().to_vec();
            prop_assert!(fast(&spki, &digest, &sig));
            prop_assert!(generic(&spki, &digest, &sig));
            // Another digest.
            let mut d2 = digest;
            d2[flip % 32] ^= 1;
            prop_assert_eq!(fast(&spki, &d2, &sig), generic(&spki, &d2, &sig));
            prop_assert!(!fast(&spki, &d2, &sig));
            // A tampered signature byte.
            let mut s2 = sig.clone();
            let i = flip % s2.len();
            s2[i] ^= 0x40;
            prop_assert_eq!(fast(&spki, &digest, &s2), generic(&spki, &digest, &s2));
            // Another key.
            let (_, spki2) = key(other);
            prop_assert_eq!(fast(&spki2, &digest, &sig), generic(&spki2, &digest, &sig));
        }
    }

    #[test]
    fn the_cached_path_gives_the_generic_answers() {
        let (sk, spki) = key(42);
        let mut results = Vec::new();
        for n in 0..(TABLE_AFTER as usize + 6) {
            let digest = sha2::Sha256::digest(n.to_be_bytes());
            let sig: DerSignature = sk.sign_prehash(&digest).unwrap();
            let good = verify_p256_sha256(&spki, &digest, sig.as_bytes());
            let mut bad_digest = digest;
            bad_digest[0] ^= 0x80;
            let bad = verify_p256_sha256(&spki, &bad_digest, sig.as_bytes());
            results.push((good, bad));
        }
        assert!(
            results.iter().all(|r| *r == (Some(true), Some(false))),
            "{results:?}"
        );
        let keys = CACHE.keys.read().unwrap();
        let entry = keys.get(&spki).unwrap();
        assert!(
            entry.table.get().is_some_and(Option::is_some),
            "the table was built and used"
        );
    }
}
