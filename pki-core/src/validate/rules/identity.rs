//! I001-I004: the identities RBAC and the Node authorizer expect.

use super::super::{Code, Options, Sink};
use crate::graph::CertGraph;
use crate::k8s::{ADMIN_GROUPS, Flag, KubeconfigUser};

pub(super) fn check(g: &CertGraph, _: &Options, s: &mut Sink<'_>) {
    for (kid, kc) in g.kubeconfigs() {
        let Some(c) = g.cert(kc.client) else { continue };
        let cn = &c.subject.common_name;
        match kc.user {
            KubeconfigUser::Kubelet => {
                let ok_cn = match &kc.node {
                    Some(n) => *cn == format!("system:node:{n}"),
                    None => cn.starts_with("system:node:"),
                };
                let ok_o = c.subject.organizations.iter().any(|o| o == "system:nodes");
                if !ok_cn || !ok_o {
                    let expected = kc
                        .node
                        .as_ref()
                        .map_or("system:node:<node>".to_owned(), |n| {
                            format!("system:node:{n}")
                        });
                    s.push(
                        Code::I002,
                        &[kc.client, kid],
                        format!(
                            "kubelet client {} has CN `{cn}` O `{}`, expected CN `{expected}` O `system:nodes`: the Node authorizer denies it (`nodes \"...\" is forbidden`) and the node never registers",
                            c.id,
                            c.subject.organizations.join(",")
                        ),
                        "use common_name = \"system:node:{node}\" and organizations = [\"system:nodes\"]",
                    );
                }
            }
            u => {
                if let Some(expected) = u.expected_cn()
                    && cn != expected
                {
                    s.push(
                        Code::I001,
                        &[kc.client, kid],
                        format!(
                            "{} authenticates as `{cn}`, but RBAC binds {} permissions to `{expected}`: `forbidden: User \"{cn}\" cannot ...`",
                            c.id,
                            u.as_str()
                        ),
                        format!("use common_name = \"{expected}\""),
                    );
                }
            }
        }
        if c.subject
            .organizations
            .iter()
            .any(|o| o == "system:masters")
            && !kc.break_glass
        {
            s.push(
                Code::I003,
                &[kid, kc.client],
                format!(
                    "kubeconfig {} is in system:masters: it bypasses RBAC and cannot be revoked short of rotating the CA",
                    kc.id
                ),
                "use a group bound to cluster-admin (kubeadm:cluster-admins); keep system:masters for one break-glass kubeconfig (break_glass = true)",
            );
        }
    }
    for (_, id) in g.bound(Flag::ApiserverKubeletClientCertificate) {
        let Some(c) = g.cert(id) else { continue };
        if !c
            .subject
            .organizations
            .iter()
            .any(|o| ADMIN_GROUPS.contains(&o.as_str()))
        {
            s.push(
                Code::I004,
                &[id],
                format!(
                    "the apiserver's kubelet client `{}` needs RBAC on nodes/proxy, nodes/log, nodes/stats and nodes/metrics, or kubectl logs/exec fail with `Forbidden (user={}, verb=get, resource=nodes, subresource=proxy)`",
                    c.subject.common_name, c.subject.common_name
                ),
                "apply the ClusterRoleBinding kpki writes to cluster/manifests/",
            );
        }
    }
}
