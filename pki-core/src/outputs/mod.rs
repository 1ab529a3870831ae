//! Outputs derived from a graph: the JSON document of `plan`/`check`.

mod json;

pub use json::{CertView, Document, KeyPairView, KubeconfigView, document};
