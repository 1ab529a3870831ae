use serde::Serialize;

use crate::graph::{CertGraph, IssuerRef, Node};
use crate::store::{Layout, Part};
use crate::validate::{Finding, Report};

/// One certificate in the JSON contract.
#[derive(Clone, Debug, Serialize)]
pub struct CertView {
    /// Graph id.
    pub id: String,
    /// `ca` or `leaf`.
    pub kind: &'static str,
    /// Issuer id (or the certificate's own id when self-signed).
    pub issuer: String,
    /// Cluster node, if per-node.
    pub node: Option<String>,
    /// Role of a leaf.
    pub role: Option<&'static str>,
    /// Subject CN.
    pub common_name: String,
    /// Subject O.
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// IP SANs.
    pub ip_sans: Vec<String>,
    /// Key usage names.
    pub key_usage: Vec<&'static str>,
    /// Extended key usage names.
    pub ext_key_usage: Vec<&'static str>,
    /// Key algorithm.
    pub key_algorithm: String,
    /// Lifetime (`1y`).
    pub validity: String,
    /// notAfter (observed, or planned from `now`).
    pub not_after: Option<String>,
    /// Serial, hex (check mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Output-relative files.
    pub files: Vec<String>,
    /// An adopted CA (`[[existing_ca]]`): used as it is, never generated.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    /// The certificate file an adopted CA comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A keypair in the JSON contract.
#[derive(Clone, Debug, Serialize)]
pub struct KeyPairView {
    /// Graph id.
    pub id: String,
    /// Output-relative files.
    pub files: Vec<String>,
}

/// A kubeconfig in the JSON contract.
#[derive(Clone, Debug, Serialize)]
pub struct KubeconfigView {
    /// Graph id.
    pub id: String,
    /// The user name (the client cert's CN).
    pub user: String,
    /// The cluster name.
    pub cluster: String,
    /// The server URL.
    pub server: String,
    /// The node it is for.
    pub node: Option<String>,
    /// Output-relative files.
    pub files: Vec<String>,
}

/// The JSON document of `kpki plan --format json` and `kpki check --format json`.
#[derive(Clone, Debug, Serialize)]
pub struct Document {
    /// Certificates.
    pub certificates: Vec<CertView>,
    /// Keypairs.
    pub keypairs: Vec<KeyPairView>,
    /// Kubeconfigs.
    pub kubeconfigs: Vec<KubeconfigView>,
    /// Findings, errors first.
    pub findings: Vec<Finding>,
    /// The CA / service-account key rotation in progress in the output
    /// directory (`kpki rotate`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::issue::Rotation>,
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.replace_nanosecond(0).ok().and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

/// Builds the JSON document. Planned certificates get `not_after` = `now` + lifetime.
pub fn document(
    g: &CertGraph,
    layout: &Layout,
    report: &Report,
    now: time::OffsetDateTime,
) -> Document {
    let mut d = Document {
        certificates: Vec::new(),
        keypairs: Vec::new(),
        kubeconfigs: Vec::new(),
        findings: report.findings.clone(),
        rotation: None,
    };
    for (id, n) in g.iter() {
        let files: Vec<String> = layout.of(id).flat_map(|f| f.output_paths()).collect();
        match n {
            Node::Cert(c) => d.certificates.push(CertView {
                id: c.id.clone(),
                kind: if c.is_ca { "ca" } else { "leaf" },
                issuer: match &c.issuer {
                    IssuerRef::SelfSigned => c.id.clone(),
                    IssuerRef::Node(i) => g.id_of(*i),
                    IssuerRef::Unknown(s) => s.clone(),
                },
                node: c.node.as_ref().map(|n| n.to_string()),
                role: c.role.map(|r| r.as_str()),
                common_name: c.subject.common_name.clone(),
                organizations: c.subject.organizations.clone(),
                dns_sans: c.sans.dns.iter().map(|d| d.to_string()).collect(),
                ip_sans: c.sans.ip.iter().map(|i| i.to_string()).collect(),
                key_usage: c.usage.key.map(|k| k.names()).unwrap_or_default(),
                ext_key_usage: c.usage.ext.iter().map(|e| e.as_str()).collect(),
                key_algorithm: c.key.to_string(),
                validity: c.validity.lifetime.to_string(),
                not_after: c
                    .validity
                    .not_after
                    .or_else(|| now.checked_add(c.validity.lifetime.duration()))
                    .and_then(rfc3339),
                serial: c.observed.as_ref().map(|o| o.serial.clone()),
                files,
                existing: c.existing.is_some(),
                source: c.existing.as_ref().map(|p| p.display().to_string()),
            }),
            Node::KeyPair(k) => d.keypairs.push(KeyPairView {
                id: k.id.clone(),
                files,
            }),
            Node::Kubeconfig(k) => d.kubeconfigs.push(KubeconfigView {
                id: k.id.clone(),
                user: g
                    .cert(k.client)
                    .map(|c| c.subject.common_name.clone())
                    .unwrap_or_default(),
                cluster: k.cluster.clone(),
                server: k.server.clone(),
                node: k.node.as_ref().map(|n| n.to_string()),
                files: layout
                    .of(id)
                    .filter(|f| f.part == Part::Kubeconfig)
                    .flat_map(|f| f.output_paths())
                    .collect(),
            }),
        }
    }
    d
}
