//! YAML manifests the graph implies, applied once with `super-admin.conf`:
//! the bootstrap token Secret and the TLS-bootstrap RBAC the seeds create by
//! hand, the `kubeadm:cluster-admins` binding, and (rule I004) access to the
//! kubelet API for the apiserver's kubelet client.

use serde_json::{Value, json};

use crate::Plan;
use crate::k8s::{Flag, KubeconfigUser};

/// The group bootstrap tokens authenticate as (kubeadm's default).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The file under `cluster/manifests/` that holds the token's Secret.
pub const BOOTSTRAP_TOKEN_MANIFEST: &str = "bootstrap-token.yaml";

/// A bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The public id.
    pub id: String,
    /// The secret.
    pub secret: String,
    /// When the apiserver stops accepting it (the Secret's `expiration`);
    /// `None` for a token that never expires.
    pub expires: Option<time::OffsetDateTime>,
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
            expires: None,
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
            expires: None,
        })
    }

    /// `id.secret`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: time::OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// The `expiration` of a token Secret written by kpki (RFC 3339).
    pub fn expiration_of_manifest(yaml: &str) -> Option<time::OffsetDateTime> {
        let v: Value = serde_yaml_ng::from_str(yaml).ok()?;
        let e = v.get("stringData")?.get("expiration")?.as_str()?;
        time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
    }
}

/// Whether some kubelet of the plan joins by TLS bootstrap (has no
/// certificate of its own): only then are the token and its RBAC written.
pub fn uses_tls_bootstrap(flags: &[crate::outputs::ComponentFlags]) -> bool {
    flags.iter().any(|f| {
        f.component == crate::k8s::Component::Kubelet
            && f.flags.contains_key("bootstrap-kubeconfig")
    })
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
/// `token` is `None` when no kubelet joins by TLS bootstrap: then neither
/// the token Secret nor the bootstrap RBAC is written.
pub fn manifests(plan: &Plan, token: Option<&BootstrapToken>) -> Vec<(String, Value)> {
    let g = &plan.graph;
    let mut out = Vec::new();
    if let Some(token) = token {
        let mut data = json!({
            "description": "kpki: kubelet TLS bootstrap token",
            "token-id": token.id,
            "token-secret": token.secret,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": BOOTSTRAP_GROUP,
        });
        if let Some(e) = token.expires.and_then(|e| {
            e.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }) && let Some(m) = data.as_object_mut()
        {
            m.insert("expiration".into(), Value::String(e));
        }
        out.push((
            BOOTSTRAP_TOKEN_MANIFEST.into(),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": format!("bootstrap-token-{}", token.id), "namespace": "kube-system"},
                "type": "bootstrap.kubernetes.io/token",
                "stringData": data,
            }),
        ));
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
    }
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
