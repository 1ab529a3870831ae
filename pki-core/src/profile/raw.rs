//! The profile as written (serde, spans, unknown keys refused).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub install_root: Option<Spanned<String>>,
    #[serde(default)]
    pub ca: Vec<RawCa>,
    #[serde(default)]
    pub leaf: Vec<RawLeaf>,
    #[serde(default)]
    pub keypair: Vec<RawKeyPair>,
    #[serde(default)]
    pub kubeconfig: Vec<RawKubeconfig>,
    #[serde(default)]
    pub bindings: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(default)]
    pub values: Option<RawValues>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCa {
    pub id: Spanned<String>,
    pub common_name: Spanned<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
    pub issuer: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub validity: Option<Spanned<String>>,
    pub path_len: Option<u8>,
    pub key_usage: Option<Spanned<Vec<String>>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeaf {
    pub id: Spanned<String>,
    pub issuer: Spanned<String>,
    pub role: Spanned<String>,
    pub fan_out: Spanned<String>,
    pub common_name: Spanned<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
    #[serde(default)]
    pub sans: Vec<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub validity: Option<Spanned<String>>,
    pub key_usage: Option<Spanned<Vec<String>>>,
    pub ext_key_usage: Option<Spanned<Vec<String>>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeyPair {
    pub id: Spanned<String>,
    pub private_key: Spanned<String>,
    pub public_key: Spanned<String>,
    pub algorithm: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubeconfig {
    pub id: Spanned<String>,
    pub file: Spanned<String>,
    pub client: Spanned<String>,
    pub user: Spanned<String>,
    pub ca: Spanned<String>,
    pub server: Option<Spanned<String>>,
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValues {
    pub requestheader_allowed_names: Option<Vec<String>>,
}
