//! U001-U006: basic constraints, key usage and extended key usage.

use std::collections::BTreeSet;

use super::super::{Code, Options, Severity, Sink};
use crate::graph::CertGraph;
use crate::k8s::Link;
use crate::x509::{ExtUsage, Role};

pub(super) fn check(g: &CertGraph, _: &Options, s: &mut Sink<'_>) {
    let mut as_client = BTreeSet::new();
    let mut as_server = BTreeSet::new();
    for conn in &g.connections {
        as_client.insert(conn.client);
        if let Some(srv) = conn.server {
            as_server.insert(srv);
        }
        if let Some(c) = g.cert(conn.client)
            && !c.usage.permits(ExtUsage::ClientAuth)
        {
            if conn.link == Link::EtcdGateway {
                s.push(
                    Code::U003,
                    &[conn.client],
                    format!("{} is etcd's serving cert but lacks clientAuth: etcd's grpc-gateway presents it as a client cert on loopback and etcd logs `x509: certificate specifies an incompatible key usage`", c.id),
                    "give it role `etcd-server` (serverAuth + clientAuth)",
                );
            } else {
                s.push(
                    Code::U002,
                    &[conn.client],
                    format!("{} is the client cert for {} but lacks clientAuth: the server rejects it with `x509: certificate specifies an incompatible key usage`", c.id, conn.link),
                    "give it role `client` (or `peer` when it also serves)",
                );
            }
        }
        if let Some(srv) = conn.server
            && let Some(c) = g.cert(srv)
            && !c.usage.permits(ExtUsage::ServerAuth)
        {
            s.push(
                Code::U001,
                &[srv],
                format!("{} is the server cert for {} but lacks serverAuth: clients fail with `x509: certificate specifies an incompatible key usage`", c.id, conn.link),
                "give it role `server` (or `peer`/`etcd-server`)",
            );
        }
    }
    for (id, c) in g.certs() {
        // An absent keyUsage is no restriction (Go and OpenSSL alike).
        let key = c.usage.key.unwrap_or(crate::x509::KeyUsages {
            digital_signature: true,
            key_encipherment: true,
            key_cert_sign: c.is_ca,
            crl_sign: c.is_ca,
        });
        if c.is_ca {
            if c.usage.key.is_none() && c.usage.ca == Some(true) {
                s.push_sev(
                    Code::U004,
                    Severity::Warning,
                    &[id],
                    format!("CA {} has no keyUsage extension: Go and OpenSSL accept it (no restriction), but RFC 5280 requires keyCertSign on a CA", c.id),
                    "give the CA keyUsage `critical, keyCertSign, cRLSign, digitalSignature` when it is next re-issued",
                );
            }
            if c.usage.ca != Some(true) || !key.key_cert_sign {
                s.push(
                    Code::U004,
                    &[id],
                    format!("CA {} lacks CA:TRUE or keyCertSign: verifiers reject what it signs (`x509: invalid signature: parent certificate cannot sign this kind of certificate`)", c.id),
                    "use the default CA usages (CA:TRUE, keyCertSign, cRLSign, digitalSignature)",
                );
            }
            continue;
        }
        if c.usage.ca == Some(true) || key.key_cert_sign {
            s.push(
                Code::U004,
                &[id],
                format!("leaf {} carries CA:TRUE or keyCertSign: it could mint certificates every peer of its CA would trust", c.id),
                "drop CA:TRUE / keyCertSign from the leaf",
            );
        }
        if !key.digital_signature {
            s.push(
                Code::U005,
                &[id],
                format!("{} lacks digitalSignature: TLS handshakes that sign with it fail with `x509: certificate specifies an incompatible key usage`", c.id),
                "keep the default key usage (digitalSignature)",
            );
        }
        if key.key_encipherment && !c.key.is_rsa() {
            s.push_sev(
                Code::U005,
                Severity::Warning,
                &[id],
                format!("{} has an EC key but claims keyEncipherment: harmless to Go's TLS, wrong by RFC 5480", c.id),
                "drop keyEncipherment from EC certificates",
            );
        }
        if c.usage.ext_any && c.usage.ext.is_empty() {
            s.push_sev(
                Code::U006,
                Severity::Warning,
                &[id],
                format!("{} has no extendedKeyUsage: Go accepts it for every purpose (server and client), so a stolen key could be used beyond its role", c.id),
                "give it an explicit extendedKeyUsage (serverAuth and/or clientAuth) when it is next re-issued",
            );
        }
        let serves = as_server.contains(&id)
            || matches!(c.role, Some(Role::Server | Role::Peer | Role::EtcdServer));
        let clients = as_client.contains(&id)
            || matches!(c.role, Some(Role::Client | Role::Peer | Role::EtcdServer));
        let extra = match (serves, clients) {
            (false, true) if c.usage.has(ExtUsage::ServerAuth) => Some(ExtUsage::ServerAuth),
            (true, false) if c.usage.has(ExtUsage::ClientAuth) => Some(ExtUsage::ClientAuth),
            _ => None,
        };
        if let Some(e) = extra {
            s.push(
                Code::U006,
                &[id],
                format!("{} carries {} that its role does not need: a stolen key could be used beyond its purpose", c.id, e.as_str()),
                format!("drop {} from the certificate", e.as_str()),
            );
        }
    }
}
