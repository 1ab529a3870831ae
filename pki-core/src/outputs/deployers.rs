//! The deployer hand-over, in one place for `kpki issue`: kubeadm
//! configuration, systemd drop-ins and Cluster API Secrets, all from the
//! component flag sets; and the plan-time findings (K001, K002) for the
//! profiles kubeadm or Cluster API cannot express.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{BootstrapToken, ComponentFlags, capi, kubeadm, systemd};
use crate::Plan;
use crate::crypto::{PrivateKey, cert_to_pem};
use crate::graph::NodeId;
use crate::issue::Final;
use crate::k8s::{Component, Flag, KubeconfigUser};
use crate::spec::EtcdTopology;
use crate::store::Part;
use crate::validate::{Code, Finding};

/// Bytes wiped on drop.
type Bytes = Zeroizing<Vec<u8>>;

/// One file for a deployer.
pub(crate) struct DeployerFile {
    /// Output-relative paths.
    pub(crate) paths: Vec<String>,
    /// Content (wiped on drop).
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    /// Whether it holds a secret (key, token): mode 0600.
    pub(crate) secret: bool,
}

fn file(path: String, text: Zeroizing<String>, secret: bool) -> DeployerFile {
    DeployerFile {
        paths: vec![path],
        bytes: Zeroizing::new(text.as_bytes().to_vec()),
        secret,
    }
}

/// The graph node whose `part` is installed at `path` (any node).
fn at(plan: &Plan, path: &str, part: Part) -> Option<NodeId> {
    plan.layout
        .files
        .iter()
        .find(|f| f.install_path == path && f.part == part)
        .map(|f| f.node)
}

/// Every deployer file of an issuance. `finals` and `pairs` are the
/// certificates and keypairs as issued or kept.
pub(crate) fn deployer_files(
    plan: &Plan,
    flags: &[ComponentFlags],
    finals: &BTreeMap<NodeId, Final>,
    pairs: &BTreeMap<NodeId, PrivateKey>,
    token: Option<&BootstrapToken>,
) -> Result<Vec<DeployerFile>, String> {
    let mut out = Vec::new();
    let gaps = kubeadm::gaps(plan, flags);
    let dir = kubeadm::certificates_dir(flags).unwrap_or_default();
    let final_at =
        |rel: &str| at(plan, &format!("{dir}/{rel}"), Part::Cert).and_then(|id| finals.get(&id));
    if gaps.is_empty()
        && let Some(ca) = final_at("ca.crt")
    {
        for (paths, yaml) in
            kubeadm::kubeadm_files(plan, flags, ca.parsed.public_key.spki_der(), token)?
        {
            out.push(DeployerFile {
                paths,
                bytes: Zeroizing::new(yaml.into_bytes()),
                // They hold the bootstrap token.
                secret: true,
            });
        }
    }
    for (path, text) in systemd::systemd_files(flags)? {
        out.push(file(path, Zeroizing::new(text), false));
    }
    let cluster = &plan.spec.cluster.name;
    if !capi::capi_gaps(cluster, &gaps).is_empty() {
        return Ok(out);
    }
    // Cluster API's Secrets carry the CA keys: none when a token holds one.
    if plan.graph.certs().any(|(id, _)| plan.token_held(id)) {
        return Ok(out);
    }
    let pem = |f: &Final| -> Result<(Bytes, Bytes), String> {
        let key = f.key.to_pem().map_err(|e| e.to_string())?;
        Ok((
            Zeroizing::new(cert_to_pem(f.cert_der()).into_bytes()),
            Zeroizing::new(key.as_bytes().to_vec()),
        ))
    };
    let mut put = |purpose: &str, data: &[(&str, &[u8])]| {
        out.push(file(
            format!("{}/{cluster}-{purpose}.yaml", capi::CAPI_DIR),
            capi::secret(cluster, purpose, data),
            true,
        ));
    };
    let stacked = matches!(plan.spec.etcd, EtcdTopology::Stacked);
    for (purpose, rel) in [
        ("ca", "ca.crt"),
        ("etcd", "etcd/ca.crt"),
        ("proxy", "front-proxy-ca.crt"),
    ] {
        if purpose == "etcd" && !stacked {
            continue;
        }
        if let Some(f) = final_at(rel) {
            let (c, k) = pem(f)?;
            put(purpose, &[("tls.crt", &c), ("tls.key", &k)]);
        }
    }
    let apiserver = flags
        .iter()
        .find(|f| f.component == Component::KubeApiserver);
    if let EtcdTopology::External(_) = plan.spec.etcd
        && let Some(a) = apiserver
    {
        let by_flag = |flag: Flag| {
            a.get(flag)
                .and_then(|p| at(plan, p, Part::Cert))
                .and_then(|id| finals.get(&id))
        };
        if let Some(f) = by_flag(Flag::ApiserverEtcdCafile) {
            let (c, k) = pem(f)?;
            put("etcd", &[("tls.crt", &c), ("tls.key", &k)]);
        }
        if let Some(f) = by_flag(Flag::ApiserverEtcdCertfile) {
            let (c, k) = pem(f)?;
            put("apiserver-etcd-client", &[("tls.crt", &c), ("tls.key", &k)]);
        }
    }
    if let Some(sa) =
        at(plan, &format!("{dir}/sa.key"), Part::PrivateKey).and_then(|id| pairs.get(&id))
    {
        let public = sa.public_key().to_pem().map_err(|e| e.to_string())?;
        let private = sa.to_pem().map_err(|e| e.to_string())?;
        put(
            "sa",
            &[
                ("tls.crt", public.as_bytes()),
                ("tls.key", private.as_bytes()),
            ],
        );
    }
    let g = &plan.graph;
    if let Some((_, k)) = g
        .kubeconfigs()
        .find(|(_, k)| k.user == KubeconfigUser::Admin)
        && let (Some(client), Some(ca)) = (finals.get(&k.client), finals.get(&k.ca))
    {
        let (cert, key) = pem(client)?;
        let user = g
            .cert(k.client)
            .map(|c| c.subject.common_name.clone())
            .unwrap_or_default();
        let cfg = kubeconfig::Kubeconfig::single(
            &k.cluster,
            &k.server,
            kubeconfig::Material::Embedded(cert_to_pem(ca.cert_der()).into_bytes()),
            &user,
            kubeconfig::Credential::ClientCert {
                cert: kubeconfig::Material::Embedded(cert.to_vec()),
                key: kubeconfig::Material::Embedded(key.to_vec()),
            },
        );
        let yaml = Zeroizing::new(cfg.to_yaml().map_err(|e| e.to_string())?);
        put("kubeconfig", &[("value", yaml.as_bytes())]);
    }
    Ok(out)
}

fn summary(gaps: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = gaps
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if gaps.len() > SHOWN {
        s.push_str(&format!("; and {} more", gaps.len() - SHOWN));
    }
    s
}

/// K001 and K002: the deployers that cannot take this plan, and why.
pub(crate) fn deployer_findings(plan: &Plan) -> Vec<Finding> {
    let flags = super::component_flags(plan);
    let gaps = kubeadm::gaps(plan, &flags);
    let mut out = Vec::new();
    let all: Vec<String> = gaps.iter().map(|(_, m)| m.clone()).collect();
    if !all.is_empty() {
        out.push(Finding {
            code: Code::K001,
            severity: Code::K001.severity(),
            nodes: Vec::new(),
            message: format!(
                "kubeadm cannot use profile `{}` as it is: {}",
                plan.profile.name,
                summary(&all)
            ),
            hint: "kpki writes no kubeadm configuration for this plan; the kubeadm preset \
                   (kubeadm's file names and CA split) is what kubeadm can take"
                .into(),
            files: Vec::new(),
        });
    }
    let capi = capi::capi_gaps(&plan.spec.cluster.name, &gaps);
    if !capi.is_empty() {
        out.push(Finding {
            code: Code::K002,
            severity: Code::K002.severity(),
            nodes: Vec::new(),
            message: format!(
                "Cluster API cannot take the CAs of profile `{}`: {}",
                plan.profile.name,
                summary(&capi)
            ),
            hint: "kpki writes no Cluster API Secrets for this plan; Cluster API expresses \
                   kubeadm's CA split only (one cluster CA, an etcd CA, a front-proxy CA, \
                   the service-account keypair)"
                .into(),
            files: Vec::new(),
        });
    }
    out
}
