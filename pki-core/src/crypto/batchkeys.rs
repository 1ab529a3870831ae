//! Many P-256 private keys checked against their public points at once.
//!
//! A SEC1 `EC PRIVATE KEY` (what kpki, openssl and cfssl write) carries its
//! public point beside the scalar. Trusting that point would let a key file
//! whose scalar and point disagree pass for the key of a certificate, so
//! every point is checked: `d·G == Q`. One constant-time scalar
//! multiplication per key costs about as much as the rest of an audit at
//! fleet scale (ten thousand keys). Here the keys are checked together: with
//! random 128-bit coefficients `c_i`, `(Σ c_i·d_i)·G == Σ c_i·Q_i` holds for
//! keys that all match, and for any set with a mismatch only with
//! probability 2⁻¹²⁸. The left side is one constant-time multiplication of a
//! secret scalar; the right side involves public points and the random
//! coefficients only (a bucket multi-scalar multiplication, variable time,
//! leaking nothing about the keys). When the equation fails, the caller
//! derives each key's point the usual way, so a bad key is still named.

use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use rand::Rng;

/// Bits per window of the multi-scalar multiplication.
const WINDOW: u32 = 8;
/// Windows of a 128-bit coefficient.
const WINDOWS: u32 = 128 / WINDOW;

/// Whether `d_i·G == Q_i` for every pair (scalar, point), up to a 2⁻¹²⁸
/// chance of accepting a set that holds a mismatch. `rng` draws the
/// coefficients; an empty set holds.
pub(crate) fn all_match(pairs: &[(Scalar, AffinePoint)], rng: &mut impl Rng) -> bool {
    use rayon::prelude::*;
    if pairs.is_empty() {
        return true;
    }
    let coeffs: Vec<u128> = pairs
        .iter()
        .map(|_| (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
        .collect();
    // Σ c_i·d_i, with constant-time scalar arithmetic.
    let mut s = Scalar::ZERO;
    for ((d, _), c) in pairs.iter().zip(&coeffs) {
        s += *d * scalar_of(*c);
    }
    let lhs = ProjectivePoint::mul_by_generator(&s);
    let points: Vec<AffinePoint> = pairs.iter().map(|(_, q)| *q).collect();
    let chunk = points
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let rhs = points
        .par_chunks(chunk)
        .zip(coeffs.par_chunks(chunk))
        .map(|(p, c)| msm(c, p))
        .reduce(|| ProjectivePoint::IDENTITY, |a, b| a + b);
    lhs == rhs
}

/// A 128-bit coefficient as a scalar (it is below the group order).
fn scalar_of(c: u128) -> Scalar {
    let mut bytes = FieldBytes::default();
    bytes[16..].copy_from_slice(&c.to_be_bytes());
    <Scalar as Reduce<FieldBytes>>::reduce(&bytes)
}

/// `Σ c_i·P_i` by buckets: per 8-bit window, each point is added once to the
/// bucket of its digit, and the buckets are summed with their weights by a
/// running sum (about `n + 510` additions per window instead of a
/// multiplication per point).
fn msm(coeffs: &[u128], points: &[AffinePoint]) -> ProjectivePoint {
    let mut acc = ProjectivePoint::IDENTITY;
    for w in (0..WINDOWS).rev() {
        for _ in 0..WINDOW {
            acc = acc.double();
        }
        let mut buckets = [ProjectivePoint::IDENTITY; (1 << WINDOW) - 1];
        for (c, p) in coeffs.iter().zip(points) {
            let digit = ((c >> (w * WINDOW)) & ((1 << WINDOW) - 1)) as usize;
            if let Some(b) = digit.checked_sub(1).and_then(|i| buckets.get_mut(i)) {
                *b += p;
            }
        }
        let mut running = ProjectivePoint::IDENTITY;
        let mut sum = ProjectivePoint::IDENTITY;
        for b in buckets.iter().rev() {
            running += b;
            sum += running;
        }
        acc += sum;
    }
    acc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use p256::elliptic_curve::Field;
    use rand::SeedableRng;

    fn pair(rng: &mut rand::rngs::StdRng) -> (Scalar, AffinePoint) {
        let d = Scalar::random(rng);
        (d, (ProjectivePoint::GENERATOR * d).to_affine())
    }

    #[test]
    fn msm_equals_the_sum_of_products() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pairs: Vec<_> = (0..40).map(|_| pair(&mut rng)).collect();
        let coeffs: Vec<u128> = (0..40u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ (i << 100))
            .collect();
        let points: Vec<AffinePoint> = pairs.iter().map(|(_, q)| *q).collect();
        let expected = coeffs
            .iter()
            .zip(&points)
            .fold(ProjectivePoint::IDENTITY, |a, (c, p)| {
                a + ProjectivePoint::from(*p) * scalar_of(*c)
            });
        assert_eq!(msm(&coeffs, &points), expected);
        // Digits of zero, of 255 and a full-width coefficient.
        let edge = [0u128, 255, u128::MAX, 1 << 127];
        let expected = edge
            .iter()
            .zip(&points)
            .fold(ProjectivePoint::IDENTITY, |a, (c, p)| {
                a + ProjectivePoint::from(*p) * scalar_of(*c)
            });
        assert_eq!(msm(&edge, &points[..4]), expected);
    }

    #[test]
    fn matching_keys_pass_and_one_mismatch_fails() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut pairs: Vec<_> = (0..300).map(|_| pair(&mut rng)).collect();
        assert!(all_match(&pairs, &mut rng));
        assert!(all_match(&[], &mut rng));
        assert!(all_match(&pairs[..1], &mut rng));
        // One key's point swapped for another key's: the set fails, every time.
        let other = pairs[5].1;
        pairs[200].1 = other;
        for _ in 0..20 {
            assert!(!all_match(&pairs, &mut rng));
        }
        // Two errors that cancel without coefficients (Q1 + E, Q2 - E) fail too.
        let mut pairs: Vec<_> = (0..10).map(|_| pair(&mut rng)).collect();
        let e = ProjectivePoint::GENERATOR * Scalar::from(12345u64);
        pairs[1].1 = (ProjectivePoint::from(pairs[1].1) + e).to_affine();
        pairs[2].1 = (ProjectivePoint::from(pairs[2].1) - e).to_affine();
        for _ in 0..20 {
            assert!(!all_match(&pairs, &mut rng));
        }
    }
}
