//! Adopting an existing PKI: `[[existing_ca]]` entries (CAs used as they
//! are) and, from an [`Observation`](crate::Observation) of a directory, a
//! spec that describes it (`kpki init --from DIR`).

mod derive;
mod existing;
mod fit;

pub use derive::{AdoptOptions, Adoption, adopt, adopt_with};

pub use existing::ExistingCa;
pub(crate) use existing::{findings, load as load_existing};
