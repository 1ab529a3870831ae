//! The rule families. Each is `fn(&CertGraph, &Options, &mut Sink)`.

mod crypto;
mod identity;
mod names;
mod structure;
mod trust;
mod usage;

use super::{Options, Sink};
use crate::graph::{CertGraph, IssuerRef, NodeId};

type Rule = fn(&CertGraph, &Options, &mut Sink<'_>);

/// Every rule family, in report order.
pub(crate) const RULES: &[Rule] = &[
    structure::check,
    usage::check,
    trust::check,
    names::check,
    identity::check,
    crypto::check,
];

/// Whether `cert` chains (through resolved issuers) to `ca`.
pub(crate) fn chains_to(g: &CertGraph, cert: NodeId, ca: NodeId) -> bool {
    let mut cur = cert;
    for _ in 0..16 {
        match g.cert(cur).map(|c| &c.issuer) {
            Some(IssuerRef::Node(i)) if *i == ca => return true,
            Some(IssuerRef::Node(i)) if *i != cur => cur = *i,
            _ => return false,
        }
    }
    false
}

/// The display id of an optional issuer.
pub(crate) fn issuer_name(g: &CertGraph, cert: NodeId) -> String {
    match g.cert(cert).map(|c| &c.issuer) {
        Some(IssuerRef::Node(i)) => g.id_of(*i),
        Some(IssuerRef::Unknown(n)) => n.clone(),
        Some(IssuerRef::SelfSigned) => "itself".into(),
        None => "?".into(),
    }
}
