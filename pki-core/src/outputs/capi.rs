//! Cluster API Secrets: the CAs, the service-account keypair and the admin
//! kubeconfig in the shape the kubeadm control-plane provider reads
//! (`sigs.k8s.io/cluster-api/util/secret`), so they can be pre-provisioned
//! with `kubectl apply -f` before the Cluster is created.

use zeroize::Zeroizing;

use super::kubeadm::{Gap, GapKind};

/// Where the Secrets go under the output directory.
pub const CAPI_DIR: &str = "cluster/capi";

/// The Secret type Cluster API creates and reads.
pub const SECRET_TYPE: &str = "cluster.x-k8s.io/secret";

/// The label naming the Cluster a Secret belongs to.
pub const CLUSTER_LABEL: &str = "cluster.x-k8s.io/cluster-name";

/// Why Cluster API could not take the plan's CAs: the kubeadm gaps about
/// the CA split (it regenerates every leaf itself, so names and SANs do
/// not matter), and a cluster name that is no Kubernetes object name.
pub(crate) fn capi_gaps(cluster: &str, kubeadm: &[Gap]) -> Vec<String> {
    let mut out: Vec<String> = kubeadm
        .iter()
        .filter(|(k, _)| *k == GapKind::Trust)
        .map(|(_, m)| m.clone())
        .collect();
    let label = cluster.len() <= 63
        && cluster
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !cluster.starts_with('-')
        && !cluster.ends_with('-')
        && !cluster.is_empty();
    if !label {
        out.insert(
            0,
            format!(
                "cluster.name `{cluster}` is not a Kubernetes object name (lowercase letters, \
                 digits and `-`, at most 63): Cluster API names its Secrets `<cluster>-ca`, ..."
            ),
        );
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One Secret as YAML, its data values base64 (wiped on drop: it holds keys).
pub(crate) fn secret(cluster: &str, purpose: &str, data: &[(&str, &[u8])]) -> Zeroizing<String> {
    let mut y = Zeroizing::new(format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {cluster}-{purpose}\n  labels:\n    \
         {CLUSTER_LABEL}: {cluster}\n    app.kubernetes.io/managed-by: kpki\ntype: {SECRET_TYPE}\ndata:\n"
    ));
    for (k, v) in data {
        let enc = Zeroizing::new(b64(v));
        y.push_str("  ");
        y.push_str(k);
        y.push_str(": ");
        y.push_str(&enc);
        y.push('\n');
    }
    y
}

#[cfg(test)]
mod tests {
    use super::capi_gaps;

    #[test]
    fn cluster_names_that_are_no_object_names_are_gaps() {
        assert!(capi_gaps("kubernetes", &[]).is_empty());
        assert!(capi_gaps("prod-1", &[]).is_empty());
        for bad in ["Prod", "-a", "a_b", "my cluster", ""] {
            assert_eq!(capi_gaps(bad, &[]).len(), 1, "{bad}");
        }
    }
}
