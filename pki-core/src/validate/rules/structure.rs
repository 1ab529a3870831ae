//! S001-S005: issuers, cycles, lifetimes, path lengths, file paths.

use std::collections::{BTreeMap, BTreeSet};

use super::super::{Code, Options, Sink};
use crate::graph::{CertGraph, IssuerRef, Node, NodeId};

pub(super) fn check(g: &CertGraph, _: &Options, s: &mut Sink<'_>) {
    for (id, c) in g.certs() {
        match &c.issuer {
            IssuerRef::Unknown(_) if c.observed.as_ref().is_some_and(|o| o.issuer_absent) => {}
            IssuerRef::Unknown(name) => s.push(
                Code::S001,
                &[id],
                format!("{} names issuer `{name}`, which is not a CA of this PKI: peers will report `x509: certificate signed by unknown authority`", c.id),
                "set `issuer` to the id of a [[ca]]",
            ),
            IssuerRef::Node(i) if !g.cert(*i).is_some_and(|x| x.is_ca) => s.push(
                Code::S001,
                &[id, *i],
                format!("{} is signed by {}, which is not a CA: `x509: certificate signed by unknown authority`", c.id, g.id_of(*i)),
                "set `issuer` to the id of a [[ca]]",
            ),
            _ => {}
        }
    }
    cycles(g, s);
    for (id, c) in g.certs() {
        let IssuerRef::Node(i) = c.issuer else {
            continue;
        };
        let Some(ca) = g.cert(i) else { continue };
        let outlives = match (c.validity.not_after, ca.validity.not_after) {
            // A leaf signed right after its CA with the same lifetime ends
            // seconds later: a day of slack, as C002 gives observed certs.
            (Some(a), Some(b)) => a > b + time::Duration::days(1),
            _ => c.validity.lifetime > ca.validity.lifetime,
        };
        if outlives && i != id {
            s.push(
                Code::S003,
                &[id, i],
                format!(
                    "{} ({}) outlives its issuer {} ({}): once the CA expires it fails with `x509: certificate has expired or is not yet valid`",
                    c.id, c.validity.lifetime, ca.id, ca.validity.lifetime
                ),
                "shorten the certificate's validity or lengthen the CA's (crypto.ca_validity)",
            );
        }
    }
    path_lengths(g, s);
    paths(g, s);
}

fn cycles(g: &CertGraph, s: &mut Sink<'_>) {
    let mut reported: BTreeSet<Vec<NodeId>> = BTreeSet::new();
    for (start, _) in g.certs() {
        let mut seen = vec![start];
        let mut cur = start;
        while let Some(next) = g.issuer_of(cur) {
            if let Some(pos) = seen.iter().position(|x| *x == next) {
                let mut cycle = seen[pos..].to_vec();
                cycle.sort();
                if reported.insert(cycle.clone()) {
                    let names: Vec<_> = cycle.iter().map(|n| g.id_of(*n)).collect();
                    s.push(
                        Code::S002,
                        &cycle,
                        format!(
                            "signing cycle {}: no root, so nothing can be issued or verified",
                            names.join(" -> ")
                        ),
                        "make one CA of the cycle a self-signed root (remove its `issuer`)",
                    );
                }
                break;
            }
            seen.push(next);
            cur = next;
        }
    }
}

fn path_lengths(g: &CertGraph, s: &mut Sink<'_>) {
    for (id, c) in g.certs() {
        let mut below = usize::from(c.is_ca);
        let mut cur = id;
        let mut hops = 0;
        while let Some(up) = g.issuer_of(cur) {
            if up == cur || hops > 16 {
                break;
            }
            if let Some(p) = g.cert(up).and_then(|ca| ca.usage.path_len)
                && below > usize::from(p)
            {
                s.push(
                    Code::S004,
                    &[id, up],
                    format!(
                        "{} sits {below} CA(s) below {}, whose path length is {p}: `x509: too many intermediates for path length constraint`",
                        c.id,
                        g.id_of(up)
                    ),
                    "raise `path_len` on the upper CA or flatten the hierarchy",
                );
            }
            below += 1;
            cur = up;
            hops += 1;
        }
    }
}

fn paths(g: &CertGraph, s: &mut Sink<'_>) {
    // (path) -> [(node scope, artefact)]; a per-node artefact is written to
    // that node; a cluster-wide one may land on any node.
    let mut by_path: BTreeMap<&str, Vec<(Option<&str>, NodeId)>> = BTreeMap::new();
    for (id, n) in g.iter() {
        let (scope, files): (Option<&str>, Vec<&str>) = match n {
            // Files read back exist already: one holding a certificate and
            // its key (the kubelet's rotated client file) is not a clash.
            Node::Cert(c) if c.observed.is_some() => continue,
            Node::Cert(c) => (
                c.node.as_ref().map(|n| n.as_str()),
                c.cert_path
                    .iter()
                    .chain(&c.key_path)
                    .map(String::as_str)
                    .collect(),
            ),
            Node::KeyPair(k) => (None, vec![k.private_path.as_str(), k.public_path.as_str()]),
            Node::Kubeconfig(k) => (k.node.as_ref().map(|n| n.as_str()), vec![k.file.as_str()]),
        };
        for f in files {
            by_path.entry(f).or_default().push((scope, id));
        }
    }
    for (path, users) in by_path {
        // Per-node artefacts sharing a path on different nodes are normal (each
        // node has its own apiserver.crt); compare only within a node, and
        // cluster-wide artefacts against everything: linear in the workers.
        let mut per_scope: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
        for (scope, id) in &users {
            per_scope.entry(*scope).or_default().push(*id);
        }
        let shared = per_scope.get(&None).cloned().unwrap_or_default();
        let mut clashes: Vec<(NodeId, NodeId)> = Vec::new();
        for (scope, ids) in &per_scope {
            for (i, a) in ids.iter().enumerate() {
                clashes.extend(ids[i + 1..].iter().map(|b| (*a, *b)));
                if scope.is_some() {
                    clashes.extend(shared.iter().map(|b| (*b, *a)));
                }
            }
        }
        for (a, b) in clashes {
            s.push(
                Code::S005,
                &[a, b],
                format!(
                    "{} and {} would both be written to {path}: the second replaces the first (`tls: private key does not match public key` or a wrong identity at run time)",
                    g.id_of(a),
                    g.id_of(b)
                ),
                "give each artefact its own path in the profile",
            );
        }
    }
}
