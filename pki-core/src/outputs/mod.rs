//! Outputs derived from a graph: the JSON document of `plan`/`check`, the
//! component flag sets, and the manifests the graph implies.

mod components;
mod json;
mod manifests;

pub use components::{ComponentFlags, component_flags, flags_of};
pub use json::{CertView, Document, KeyPairView, KubeconfigView, document};
pub use manifests::{
    BOOTSTRAP_GROUP, BOOTSTRAP_TOKEN_MANIFEST, BootstrapToken, manifests, uses_tls_bootstrap,
};
