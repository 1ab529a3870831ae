//! T001-T008: who trusts whom.

use super::super::{Code, Options, Sink};
use super::{chains_to, issuer_name};
use crate::graph::{CertGraph, Node};
use crate::k8s::{Flag, Link};

pub(super) fn check(g: &CertGraph, _: &Options, s: &mut Sink<'_>) {
    for conn in &g.connections {
        if let Some(ca) = conn.server_trusts
            && !chains_to(g, conn.client, ca)
        {
            let (code, msg) = if conn.link == Link::EtcdGateway {
                (
                    Code::T008,
                    format!(
                        "etcd verifies every client with one --trusted-ca-file ({}), but its own serving cert {} is signed by {}: the grpc-gateway's loopback connections fail with `x509: certificate signed by unknown authority`",
                        g.id_of(ca),
                        g.id_of(conn.client),
                        issuer_name(g, conn.client)
                    ),
                )
            } else {
                let via = conn
                    .via
                    .map(|k| format!(" (kubeconfig {})", g.id_of(k)))
                    .unwrap_or_default();
                (
                    Code::T001,
                    format!(
                        "{}: client cert {}{via} is signed by {}, but the server verifies clients with {}: `tls: failed to verify certificate: x509: certificate signed by unknown authority`",
                        conn.link,
                        g.id_of(conn.client),
                        issuer_name(g, conn.client),
                        g.id_of(ca)
                    ),
                )
            };
            s.push(code, &[conn.client, ca], msg, "sign the client with the CA the server trusts, or bind the server's trust flag to the client's CA");
        }
        if let (Some(srv), Some(ca)) = (conn.server, conn.client_trusts)
            && !chains_to(g, srv, ca)
        {
            s.push(
                Code::T002,
                &[srv, ca],
                format!(
                    "{}: server cert {} is signed by {}, but the client verifies the server with {}: `x509: certificate signed by unknown authority`",
                    conn.link, g.id_of(srv), issuer_name(g, srv), g.id_of(ca)
                ),
                "point the client's CA (flag or kubeconfig certificate-authority) at the server cert's issuer",
            );
        }
    }
    for (node, signing) in g.bound(Flag::ControllerManagerClusterSigningCertFile) {
        if let Some(client_ca) = g.binding(&node, Flag::ApiserverClientCaFile)
            && client_ca != signing
        {
            s.push(
                Code::T003,
                &[signing, client_ca],
                format!(
                    "kube-controller-manager signs with {} but kube-apiserver --client-ca-file is {}: kubelets that bootstrap get certs the apiserver rejects (`Unauthorized`), and nodes never register",
                    g.id_of(signing), g.id_of(client_ca)
                ),
                "bind --cluster-signing-cert-file and --client-ca-file to the same CA",
            );
        }
    }
    // T004 matters only where the front proxy is configured.
    let proxied = !g.bound(Flag::ApiserverProxyClientCertFile).is_empty();
    for (node, rh) in g.bound(Flag::ApiserverRequestheaderClientCaFile) {
        if proxied && g.binding(&node, Flag::ApiserverClientCaFile) == Some(rh) {
            s.push(
                Code::T004,
                &[rh],
                format!(
                    "--requestheader-client-ca-file and --client-ca-file are both {}: any client cert it signs whose CN is allowed can assert users and groups to aggregated API servers",
                    g.id_of(rh)
                ),
                "give the front proxy its own CA",
            );
        }
    }
    for (_, proxy) in g.bound(Flag::ApiserverProxyClientCertFile) {
        if let Some(c) = g.cert(proxy) {
            let allowed = &g.facts.requestheader_allowed_names;
            if !allowed.is_empty() && !allowed.contains(&c.subject.common_name) {
                s.push(
                    Code::T005,
                    &[proxy],
                    format!(
                        "front-proxy client CN `{}` is not in --requestheader-allowed-names ({}): aggregated APIs reject it (`x509: subject with cn={} is not in the allowed list`); `kubectl top` fails",
                        c.subject.common_name, allowed.join(","), c.subject.common_name
                    ),
                    "add the CN to requestheader_allowed_names, or leave the names to kpki",
                );
            }
        }
    }
    // Service-account keys: the verifying and signing flags must name one keypair.
    let sets = [
        Flag::ApiserverServiceAccountKeyFile,
        Flag::ApiserverServiceAccountSigningKeyFile,
        Flag::ControllerManagerServiceAccountPrivateKeyFile,
    ];
    let mut targets: Vec<_> = sets
        .iter()
        .flat_map(|f| g.bound(*f))
        .map(|(_, t)| t)
        .collect();
    targets.sort();
    targets.dedup();
    if targets.len() > 1 {
        s.push(
            Code::T006,
            &targets,
            "the service-account flags name different keypairs: tokens signed with one key fail verification with the other (`invalid bearer token`)".into(),
            "bind --service-account-key-file, --service-account-signing-key-file and --service-account-private-key-file to one keypair",
        );
    }
    for (id, n) in g.iter() {
        match n {
            Node::KeyPair(k) if k.mismatch => s.push(
                Code::T006,
                &[id],
                format!("{} and {} are not one keypair: tokens fail verification (`invalid bearer token`)", k.public_path, k.private_path),
                "regenerate the public key from the private key",
            ),
            Node::Cert(c) if c.observed.as_ref().is_some_and(|o| o.key_mismatch) => s.push(
                Code::T007,
                &[id],
                format!(
                    "{} does not match its key {}: the component fails to start with `tls: private key does not match public key`",
                    c.cert_path.as_deref().unwrap_or(&c.id),
                    c.key_path.as_deref().unwrap_or("?")
                ),
                "restore the key that belongs to the certificate, or delete the certificate: `kpki issue` then issues a new one for the key on disk",
            ),
            _ => {}
        }
    }
}
