//! etcd membership across issuances. The manifest records the members each
//! issuance handed flags to; the next issuance compares the spec with them:
//! a member added later joins the running cluster
//! (`--initial-cluster-state=existing`, after `etcdctl member add`), a member
//! removed is taken out first (`etcdctl member remove`), and members issued
//! before keep their flags. etcd's rule — one member change at a time, never
//! down to one member from two — is checked before anything is written.

use serde::{Deserialize, Serialize};

use crate::Plan;
use crate::k8s::Component;
use crate::spec::NodeSpec;
use crate::x509::Host;

/// One etcd member as an issuance handed it its flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// The member (node) name.
    pub name: String,
    /// `https://ADDRESS:2380`.
    pub peer_url: String,
    /// `https://ADDRESS:2379`.
    pub client_url: String,
    /// `new` for the members of the first issuance, `existing` for a member
    /// that joined a running cluster.
    pub initial_cluster_state: String,
    /// Its `--initial-cluster`.
    pub initial_cluster: String,
}

/// What a spec change does to the etcd membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChange {
    /// The members from now on (recorded in the manifest), in spec order.
    pub members: Vec<EtcdMember>,
    /// Members the spec adds to a running cluster.
    pub added: Vec<EtcdMember>,
    /// Members the spec removes from it.
    pub removed: Vec<EtcdMember>,
    /// The steps to run, in order, for each change (commands and restarts).
    pub steps: Vec<String>,
    /// Why the change cannot be made in one step (etcd's quorum rule); empty
    /// when it can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
}

impl MembershipChange {
    /// Whether anything changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// When the spec changes nothing, the last change (as recorded) stays
    /// the one to show: its steps may not have been run yet.
    pub fn carry(&mut self, last: Option<&MembershipChange>) {
        if self.is_empty()
            && let Some(l) = last
        {
            self.added = l.added.clone();
            self.removed = l.removed.clone();
            self.steps = l.steps.clone();
        }
    }

    /// The change without its member list (what the manifest records).
    pub fn record(&self) -> Option<MembershipChange> {
        (!self.is_empty()).then(|| MembershipChange {
            members: Vec::new(),
            ..self.clone()
        })
    }

    /// The record of `name`.
    pub fn member(&self, name: &str) -> Option<&EtcdMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// An etcd member's peer URL (port 2380).
pub(crate) fn peer_url(n: &NodeSpec) -> String {
    format!("https://{}:2380", Host::Ip(n.address))
}

/// An etcd member's client URL (port 2379).
pub(crate) fn client_url(n: &NodeSpec) -> String {
    format!("https://{}:2379", Host::Ip(n.address))
}

/// Compares the spec's etcd members with those of the last issuance
/// (`previous`, from the manifest; `None` for a new cluster).
pub fn etcd_membership(plan: &Plan, previous: Option<&[EtcdMember]>) -> MembershipChange {
    let spec_members = plan.spec.etcd_members();
    let previous = previous.filter(|p| !p.is_empty());
    let Some(previous) = previous else {
        let all: Vec<String> = spec_members
            .iter()
            .map(|m| format!("{}={}", m.name, peer_url(m)))
            .collect();
        let members = spec_members
            .iter()
            .map(|m| EtcdMember {
                name: m.name.to_string(),
                peer_url: peer_url(m),
                client_url: client_url(m),
                initial_cluster_state: "new".into(),
                initial_cluster: all.join(","),
            })
            .collect();
        return MembershipChange {
            members,
            ..MembershipChange::default()
        };
    };
    // A member is the same when its name and peer URL are.
    let same =
        |p: &EtcdMember, m: &NodeSpec| p.name == m.name.as_str() && p.peer_url == peer_url(m);
    let kept: Vec<&EtcdMember> = previous
        .iter()
        .filter(|p| spec_members.iter().any(|m| same(p, m)))
        .collect();
    let removed: Vec<EtcdMember> = previous
        .iter()
        .filter(|p| !spec_members.iter().any(|m| same(p, m)))
        .cloned()
        .collect();
    let kept_names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
    let kept_entries: Vec<String> = kept
        .iter()
        .map(|p| format!("{}={}", p.name, p.peer_url))
        .collect();
    let mut members = Vec::new();
    let mut added = Vec::new();
    for m in spec_members {
        if let Some(p) = kept.iter().find(|p| same(p, m)) {
            // Its flags stay as issued, less the members that left.
            let mut p = (*p).clone();
            p.initial_cluster = p
                .initial_cluster
                .split(',')
                .filter(|e| {
                    e.split_once('=')
                        .is_some_and(|(n, _)| kept_names.contains(&n))
                })
                .collect::<Vec<_>>()
                .join(",");
            members.push(p);
        } else {
            let mut entries = kept_entries.clone();
            entries.push(format!("{}={}", m.name, peer_url(m)));
            let rec = EtcdMember {
                name: m.name.to_string(),
                peer_url: peer_url(m),
                client_url: client_url(m),
                initial_cluster_state: "existing".into(),
                initial_cluster: entries.join(","),
            };
            added.push(rec.clone());
            members.push(rec);
        }
    }
    let mut change = MembershipChange {
        members,
        added,
        removed,
        steps: Vec::new(),
        refusals: Vec::new(),
    };
    let changes = change.added.len() + change.removed.len();
    if changes > 1 {
        change.refusals.push(format!(
            "the spec changes {changes} etcd members at once (adds {}, removes {}): etcd \
             allows one member change at a time; change one member, run `kpki issue`, \
             follow its steps, then the next",
            member_names(&change.added),
            member_names(&change.removed)
        ));
    }
    if previous.len() == 2 && change.members.len() == 1 && changes == 1 {
        change.refusals.push(
            "the spec takes etcd from 2 members to 1: while the removal is applied both \
             members are needed for quorum, and a failure of either loses the cluster; add \
             a member first (2 -> 3 -> 2), or restore from a snapshot"
                .into(),
        );
    }
    if kept.is_empty() && !previous.is_empty() && changes > 0 {
        change.refusals.push(
            "no member of the running etcd cluster stays in the spec: nobody could admit \
             the new members"
                .into(),
        );
    }
    change.steps = steps(plan, &change, &kept);
    change
}

/// The members' names, comma-separated, or `none`.
pub fn member_names(ms: &[EtcdMember]) -> String {
    if ms.is_empty() {
        return "none".into();
    }
    ms.iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `etcdctl` with the client credentials of `via` (an existing member), at
/// its install paths.
fn etcdctl(plan: &Plan, via: &EtcdMember) -> String {
    let node = plan
        .spec
        .etcd_members()
        .iter()
        .find(|n| n.name.as_str() == via.name)
        .map(|n| n.name.clone());
    let flags = node.and_then(|n| crate::outputs::flags_of(plan, Component::Etcdctl, &n));
    let mut cmd = format!("ETCDCTL_API=3 etcdctl --endpoints={}", via.client_url);
    if let Some(f) = flags {
        for k in ["cacert", "cert", "key"] {
            if let Some(v) = f.flags.get(k) {
                cmd.push_str(&format!(" --{k}={v}"));
            }
        }
    }
    cmd
}

fn steps(plan: &Plan, change: &MembershipChange, kept: &[&EtcdMember]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(via) = kept.first() else {
        return out;
    };
    let ctl = etcdctl(plan, via);
    for m in &change.removed {
        out.push(format!(
            "on {via}: {ctl} member remove $({ctl} member list | awk -F', ' '$3 == \"{name}\" {{ print $1 }}')",
            via = via.name,
            name = m.name
        ));
        out.push(format!(
            "on {}: stop etcd (and, stacked, the control plane); then `kpki issue --prune` \
             deletes its bundle",
            m.name
        ));
    }
    for m in &change.added {
        out.push(format!(
            "on {via}: {ctl} member add {name} --peer-urls={peer}",
            via = via.name,
            name = m.name,
            peer = m.peer_url
        ));
        out.push(format!(
            "on {}: install its bundle (nodes/{}/) and start etcd with `kpki flags etcd --node {}` \
             (--initial-cluster-state=existing)",
            m.name, m.name, m.name
        ));
    }
    if !change.is_empty() {
        out.push(
            "then restart kube-apiserver on each control-plane node, one at a time, so that \
             --etcd-servers and any re-issued certificate take effect"
                .into(),
        );
    }
    out
}

/// `cluster/membership.md`: the membership and the steps of the last change.
pub fn membership_markdown(change: &MembershipChange) -> String {
    let mut s = String::from("# etcd membership\n\n");
    s.push_str("Written by `kpki issue`. Members, as their flags were issued:\n\n");
    s.push_str("| member | peer URL | client URL | initial-cluster-state |\n|---|---|---|---|\n");
    for m in &change.members {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            m.name, m.peer_url, m.client_url, m.initial_cluster_state
        ));
    }
    s.push('\n');
    if change.is_empty() {
        s.push_str("No membership change in the last issuance.\n");
    } else {
        s.push_str(&format!(
            "## Last change\n\nAdded: {}. Removed: {}.\n\nRun, in order:\n\n",
            member_names(&change.added),
            member_names(&change.removed)
        ));
        for (i, st) in change.steps.iter().enumerate() {
            s.push_str(&format!("{}. {st}\n", i + 1));
        }
    }
    s
}
