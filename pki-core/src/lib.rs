//! kpki core: a Kubernetes PKI as a typed certificate graph.
//!
//! ```text
//! kpki.toml ─▶ ClusterSpec ─┐
//!                           ├─ graph::expand ─▶ CertGraph ─ validate ─▶ Report   (kpki plan)
//! profile.toml ─▶ Profile ──┘                      │
//!                                                  └─ issue ─▶ keys, certs, kubeconfigs, flags
//! existing dir ─ observe ─▶ CertGraph ─ validate ─▶ Report                           (kpki check)
//! ```

mod error;
mod spec;
mod x509;

pub use error::{Error, InputError, Location, ProfileError, SpecError};
pub use spec::{
    ClusterInfo, ClusterSpec, CryptoSpec, Endpoint, EtcdTopology, NodeSpec, OutputSpec, ProfileRef,
};
pub use x509::{
    Cidr, DnsName, ExtUsage, Host, KeyAlgorithm, KeySpec, KeyUsages, Lifetime, NodeName, Role, San,
    SanSet, Subject, Usage, parse_san,
};
