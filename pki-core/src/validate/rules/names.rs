//! N001-N006: SANs.

use std::net::{IpAddr, Ipv4Addr};

use super::super::{Code, Options, Sink};
use crate::graph::CertGraph;
use crate::k8s::Flag;
use crate::x509::{DnsName, Host};

pub(super) fn check(g: &CertGraph, _: &Options, s: &mut Sink<'_>) {
    let f = &g.facts;
    for (_, id) in g.bound(Flag::ApiserverTlsCertFile) {
        let Some(c) = g.cert(id) else { continue };
        if let Some(ep) = &f.endpoint
            && !c.sans.covers(&ep.host)
        {
            s.push(
                Code::N001,
                &[id],
                format!("{} does not cover the control-plane endpoint {}: clients fail with `x509: certificate is valid for {}, not {}`", c.id, ep.host, valid_for(c), ep.host),
                "add the SAN rule `endpoint`",
            );
        }
        // The `kubernetes` Service is single-stack in the primary (first)
        // family, also in a dual-stack cluster: only its ClusterIP is needed
        // (kpki still puts the secondary family's first IP in the SAN).
        if let Some(ip) = f.service_ips.first()
            && !c.sans.ip.contains(ip)
        {
            s.push(
                Code::N002,
                &[id],
                format!("{} lacks the service IP {ip} (the `kubernetes` Service): pods and CNI plugins fail with `x509: certificate is valid for {}, not {ip}`", c.id, valid_for(c)),
                "add the SAN rule `service-ip`",
            );
        }
        if let Some(domain) = &f.dns_domain {
            for name in crate::graph::in_cluster_names(domain) {
                if !c.sans.covers_dns(&name) {
                    s.push(
                        Code::N003,
                        &[id],
                        format!("{} lacks the in-cluster name {name}: in-cluster clients fail with `x509: certificate is valid for {}, not {name}`", c.id, valid_for(c)),
                        "add the SAN rule `in-cluster-names`",
                    );
                }
            }
        }
        node_address(g, s, id);
    }
    for flag in [
        Flag::EtcdCertFile,
        Flag::EtcdPeerCertFile,
        Flag::KubeletTlsCertFile,
    ] {
        for (_, id) in g.bound(flag) {
            node_address(g, s, id);
        }
    }
    for (_, id) in g.bound(Flag::EtcdCertFile) {
        let Some(c) = g.cert(id) else { continue };
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        if !c.sans.ip.contains(&lo) || !c.sans.covers_dns("localhost") {
            s.push(
                Code::N005,
                &[id],
                format!("{} lacks 127.0.0.1 or localhost: local clients (stacked apiserver, etcdctl, probes) fail with `x509: certificate is valid for {}, not 127.0.0.1`", c.id, valid_for(c)),
                "add the SAN rule `loopback`",
            );
        }
    }
    for (id, c) in g.certs() {
        for d in &c.sans.dns {
            if let Err(why) = DnsName::parse(d.as_str()) {
                s.push(
                    Code::N006,
                    &[id],
                    format!("{} has DNS SAN {why}: it never matches (an IP in a DNS SAN gives `x509: cannot validate certificate for {d} because it doesn't contain any IP SANs`)", c.id),
                    "write IPs as IP SANs (`ip:` in a profile) and use valid DNS names with a wildcard only as the whole leftmost label",
                );
            }
        }
    }
}

fn node_address(g: &CertGraph, s: &mut Sink<'_>, id: crate::graph::NodeId) {
    let Some(c) = g.cert(id) else { return };
    // A per-node certificate must cover its own node; a shared one, every node it serves.
    let nodes: Vec<&crate::x509::NodeName> = match &c.node {
        Some(n) => vec![n],
        None => g
            .bindings
            .iter()
            .filter(|b| b.target == id)
            .map(|b| &b.node)
            .collect(),
    };
    for n in nodes {
        if let Some(addr) = g.facts.node_ips.get(n).and_then(|ips| ips.first())
            && !c.sans.covers(&Host::Ip(*addr))
        {
            s.push(
                Code::N004,
                &[id],
                format!("{} lacks {n}'s address {addr}: peers dialing it fail with `x509: cannot validate certificate for {addr} because it doesn't contain any IP SANs` (or `valid for {}, not {addr}`)", c.id, valid_for(c)),
                "add the SAN rule `node-ips`",
            );
        }
    }
}

fn valid_for(c: &crate::graph::CertNode) -> String {
    let mut v: Vec<String> = c.sans.dns.iter().map(|d| d.to_string()).collect();
    v.extend(c.sans.ip.iter().map(|i| i.to_string()));
    if v.is_empty() {
        "(no SANs)".into()
    } else {
        v.join(", ")
    }
}
