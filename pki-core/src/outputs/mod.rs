//! Outputs derived from a graph: the JSON document of `plan`/`check`, the
//! component flag sets, the manifests the graph implies, and the files of the
//! deployers (kubeadm, systemd, Cluster API).

mod capi;
mod components;
mod deployers;
mod json;
mod kubeadm;
mod manifests;
mod membership;
mod systemd;

pub use capi::{CAPI_DIR, CLUSTER_LABEL, SECRET_TYPE};
pub use components::{ComponentFlags, component_flags, component_flags_with, flags_of};
pub(crate) use deployers::{deployer_files, deployer_findings};
pub use json::{CertView, Document, KeyPairView, KubeconfigView, document};
pub use kubeadm::{INIT_CONFIG, JOIN_CONFIG, KUBERNETES_DIR, ca_cert_hash, kubeadm_gaps};
pub use manifests::{
    BOOTSTRAP_GROUP, BOOTSTRAP_TOKEN_MANIFEST, BootstrapToken, manifests, uses_tls_bootstrap,
};
pub use membership::{
    EtcdMember, MembershipChange, etcd_membership, member_names, membership_markdown,
};
pub use systemd::{DROP_IN, ENV_VAR, README as SYSTEMD_README, drop_in, unit_of};
