//! The spec as written: serde types with spans, unknown keys refused.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub profile: Option<Spanned<String>>,
    pub cluster: Option<RawCluster>,
    pub crypto: Option<RawCrypto>,
    pub subject: Option<RawSubject>,
    pub control_plane: Option<Spanned<Vec<Spanned<RawNode>>>>,
    pub etcd: Option<Vec<Spanned<RawNode>>>,
    pub worker: Option<Vec<Spanned<RawNode>>>,
    pub output: Option<RawOutput>,
    pub bootstrap: Option<RawBootstrap>,
    pub kubeadm: Option<RawKubeadm>,
    pub existing_ca: Option<Vec<Spanned<RawExistingCa>>>,
    pub ca_keys: Option<Spanned<RawCaKeys>>,
    pub controller_manager: Option<RawControllerManager>,
    pub root: Option<RawRoot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCaKeys {
    pub store: Option<Spanned<String>>,
    pub module: Option<Spanned<String>>,
    pub token_label: Option<Spanned<String>>,
    pub pin_env: Option<Spanned<String>>,
    pub pin_file: Option<Spanned<String>>,
    pub cas: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControllerManager {
    pub csr_signing: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoot {
    pub external: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExistingCa {
    pub id: Spanned<String>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubeadm {
    pub config_api: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBootstrap {
    pub token_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub name: Option<Spanned<String>>,
    pub dns_domain: Option<Spanned<String>>,
    pub service_cidr: Option<Spanned<toml::Value>>,
    pub endpoint: Option<Spanned<String>>,
    pub extra_sans: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCrypto {
    pub algorithm: Option<Spanned<String>>,
    pub ca_validity: Option<Spanned<String>>,
    pub leaf_validity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubject {
    pub country: Option<String>,
    pub state: Option<String>,
    pub locality: Option<String>,
    pub organizational_unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub extra_ips: Vec<Spanned<String>>,
    #[serde(default)]
    pub hostnames: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub dir: Option<Spanned<String>>,
    pub embed_certs: Option<bool>,
}
