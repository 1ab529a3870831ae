//! YAML manifests the graph implies, applied once with `super-admin.conf`:
//! the bootstrap token Secret and the TLS-bootstrap RBAC the seeds create by
//! hand, the `kubeadm:cluster-admins` binding, and (rule I004) access to the
//! kubelet API for the apiserver's kubelet client.

use serde_json::{Value, json};

use crate::Plan;
use crate::k8s::{Flag, KubeconfigUser};

/// The group bootstrap tokens authenticate as (kubeadm's default).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The public id.
    pub id: String,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

impl BootstrapToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Result<Self, crate::crypto::CryptoError> {
        use rand::TryRng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let pick = |n: usize| -> Result<String, crate::crypto::CryptoError> {
            let mut out = String::with_capacity(n);
            while out.len() < n {
                let mut b = [0u8; 1];
                rand::rngs::SysRng
                    .try_fill_bytes(&mut b)
                    .map_err(|e| crate::crypto::CryptoError::Rng(e.to_string()))?;
                // 252 = 7 * 36: reject the rest so every character is equally likely.
                if b[0] < 252 {
                    out.push(char::from(ALPHABET[usize::from(b[0] % 36)]));
                }
            }
            Ok(out)
        };
        Ok(Self {
            id: pick(6)?,
            secret: pick(16)?,
        })
    }

    /// Parses `id.secret`.
    pub fn parse(s: &str) -> Option<Self> {
        let (id, secret) = s.split_once('.')?;
        let ok = |x: &str, n: usize| {
            x.len() == n
                && x.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (ok(id, 6) && ok(secret, 16)).then(|| Self {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// `id.secret`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn crb(name: &str, role: &str, subject_kind: &str, subject: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kpki"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject_kind, "name": subject}],
    })
}

/// The manifests, as (file name under `cluster/manifests/`, object).
pub fn manifests(plan: &Plan, token: &BootstrapToken) -> Vec<(String, Value)> {
    let g = &plan.graph;
    let mut out = vec![(
        format!("bootstrap-token-{}.yaml", token.id),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{}", token.id), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": "kpki: kubelet TLS bootstrap token",
                "token-id": token.id,
                "token-secret": token.secret,
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": BOOTSTRAP_GROUP,
            },
        }),
    )];
    out.push((
        "rbac-kubelet-bootstrap.yaml".into(),
        crb(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "Group",
            BOOTSTRAP_GROUP,
        ),
    ));
    out.push((
        "rbac-node-autoapprove-bootstrap.yaml".into(),
        crb(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            BOOTSTRAP_GROUP,
        ),
    ));
    out.push((
        "rbac-node-autoapprove-certificate-rotation.yaml".into(),
        crb(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            "system:nodes",
        ),
    ));
    let admin_groups: Vec<String> = g
        .kubeconfigs()
        .filter(|(_, k)| k.user == KubeconfigUser::Admin)
        .filter_map(|(_, k)| g.cert(k.client))
        .flat_map(|c| c.subject.organizations.clone())
        .collect();
    if admin_groups.iter().any(|o| o == "kubeadm:cluster-admins") {
        out.push((
            "rbac-cluster-admins.yaml".into(),
            crb(
                "kubeadm:cluster-admins",
                "cluster-admin",
                "Group",
                "kubeadm:cluster-admins",
            ),
        ));
    }
    let mut users: Vec<String> = g
        .bound(Flag::ApiserverKubeletClientCertificate)
        .iter()
        .filter_map(|(_, id)| g.cert(*id))
        .filter(|c| {
            !c.subject
                .organizations
                .iter()
                .any(|o| o == "system:masters" || o == "kubeadm:cluster-admins")
        })
        .map(|c| c.subject.common_name.clone())
        .collect();
    users.sort();
    users.dedup();
    for u in users {
        out.push((
            format!("rbac-kubelet-api-{}.yaml", u.replace(':', "-")),
            crb(
                &format!("kpki:kubelet-api-admin:{u}"),
                "system:kubelet-api-admin",
                "User",
                &u,
            ),
        ));
    }
    out
}
