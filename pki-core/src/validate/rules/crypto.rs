//! C001-C005: key strength, lifetimes, expiry, signature algorithms.

use super::super::{Code, Options, Sink};
use crate::graph::CertGraph;
use crate::x509::{KeySpec, Lifetime};

const FIVE_YEARS: Lifetime = Lifetime::from_days(5 * 365);

pub(super) fn check(g: &CertGraph, opts: &Options, s: &mut Sink<'_>) {
    for (id, c) in g.certs() {
        let weak = match c.key {
            KeySpec::Rsa(bits) => bits < 2048,
            KeySpec::Ec(curve) => !matches!(curve, "P-256" | "P-384"),
            KeySpec::Other(_) => true,
        };
        if weak {
            s.push(
                Code::C001,
                &[id],
                format!("{} has a {} key: too weak or unsupported (`tls: failed to parse private key` / weak-key rejections)", c.id, c.key),
                "use ecdsa-p256, ecdsa-p384 or rsa-2048 and longer",
            );
        }
        if !c.is_ca {
            let limit = g
                .facts
                .leaf_validity
                .map_or(FIVE_YEARS, |l| l.min(FIVE_YEARS));
            // Observed certs get a day of slack for backdating.
            let lifetime = c.validity.lifetime;
            let slack = if c.observed.is_some() {
                Lifetime::from_days(1).hours()
            } else {
                0
            };
            if lifetime.hours() > limit.hours() + slack {
                s.push(
                    Code::C002,
                    &[id],
                    format!("{} is valid for {lifetime}, longer than {limit}: long-lived leaves are never rotated", c.id),
                    "shorten crypto.leaf_validity in the spec, then `kpki renew --all` re-issues every leaf with it",
                );
            }
        }
        let Some(now) = opts.now else { continue };
        let day = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        let (Some(nb), Some(na)) = (c.validity.not_before, c.validity.not_after) else {
            continue;
        };
        if now < nb || now > na {
            s.push(
                Code::C003,
                &[id],
                format!("{} is valid from {} to {}, not now: `x509: certificate has expired or is not yet valid`", c.id, day(nb), day(na)),
                "renew it: `kpki renew` re-issues expired leaves (an expired CA needs `kpki issue --replace-ca-keys`)",
            );
        } else if now + opts.within > na {
            let left = na - now;
            s.push(
                Code::C004,
                &[id],
                format!(
                    "{} expires in {}d {}h ({})",
                    c.id,
                    left.whole_days(),
                    left.whole_hours() % 24,
                    day(na)
                ),
                {
                    let w = opts.within;
                    let window = if w.whole_hours() % 24 == 0 {
                        format!("{}d", w.whole_days())
                    } else {
                        format!("{}h", w.whole_hours())
                    };
                    format!("renew it: `kpki renew --within {window}` re-issues every leaf expiring within that window")
                },
            );
        }
        if let Some(alg) = c.observed.as_ref().and_then(|o| o.weak_signature.as_ref()) {
            s.push(
                Code::C005,
                &[id],
                format!("{} is signed with {alg}: Go rejects it (`x509: cannot verify signature: insecure algorithm {alg}`)", c.id),
                "re-issue it with SHA-256",
            );
        }
    }
}
