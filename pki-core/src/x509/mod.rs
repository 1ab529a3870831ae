//! The X.509 vocabulary shared by planned and parsed certificates: names,
//! SANs, usages, key kinds and lifetimes. Plain data, no crypto.

mod names;
mod usage;

pub use names::{Cidr, DnsName, Host, Lifetime, NodeName, ParseValueError, San, SanSet, parse_san};
pub use usage::{ExtUsage, KeyAlgorithm, KeySpec, KeyUsages, Role, Usage};

/// The subject of a certificate as RBAC sees it (plus the optional
/// cosmetic fields from the spec's `[subject]` section).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    /// Common name (the user name for client certificates).
    pub common_name: String,
    /// Organizations (the groups for client certificates).
    pub organizations: Vec<String>,
    /// Organizational units.
    pub organizational_units: Vec<String>,
    /// Country (C).
    pub country: Option<String>,
    /// State or province (ST).
    pub state: Option<String>,
    /// Locality (L).
    pub locality: Option<String>,
}
