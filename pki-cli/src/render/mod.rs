//! Renderers for `plan` (and `check`).

pub mod dot;
pub mod mermaid;
pub mod tree;

use std::collections::BTreeSet;

use crate::cmd::Failure;
use pki_core::{CertGraph, FlagKind, IssuerRef, Node};

/// Pretty JSON with a trailing newline.
pub fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Failure::failed(format!("cannot encode JSON: {e}")))
}

/// The findings block shared by the text renderers: errors first.
pub fn findings(report: &pki_core::Report) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("findings: none\n");
        return out;
    }
    out.push_str("findings:\n");
    for f in &report.findings {
        out.push_str(&format!(
            "  {:<7} {} [{}] {}\n",
            f.severity.as_str(),
            f.code,
            f.nodes.join(", "),
            f.message
        ));
        if !f.files.is_empty() {
            out.push_str(&format!("          files: {}\n", f.files.join(", ")));
        }
        out.push_str(&format!("          hint: {}\n", f.hint));
    }
    let (e, w, i) = report.counts();
    out.push_str(&format!("{e} error(s), {w} warning(s), {i} info\n"));
    out
}

/// An edge of the drawn graph, shared by the DOT and Mermaid renderers.
pub enum Edge<'g> {
    /// A CA signs a certificate.
    Signs {
        /// The CA id.
        ca: String,
        /// The certificate id.
        cert: &'g str,
    },
    /// A kubeconfig carries a client certificate.
    Client {
        /// The kubeconfig id.
        kubeconfig: &'g str,
        /// The certificate id.
        cert: String,
    },
    /// A kubeconfig trusts a CA for the apiserver.
    Trusts {
        /// The kubeconfig id.
        kubeconfig: &'g str,
        /// The CA id.
        ca: String,
    },
    /// A component flag trusts a CA (once per flag and CA).
    Binding {
        /// The component.
        component: &'static str,
        /// The flag.
        flag: &'static str,
        /// The CA id.
        ca: String,
    },
}

/// The edges to draw: signing, kubeconfig client and trust, trust bindings.
pub fn edges(g: &CertGraph) -> Vec<Edge<'_>> {
    let mut out = Vec::new();
    for (id, n) in g.iter() {
        match n {
            Node::Cert(c) => {
                if let IssuerRef::Node(i) = c.issuer
                    && i != id
                {
                    out.push(Edge::Signs {
                        ca: g.id_of(i),
                        cert: &c.id,
                    });
                }
            }
            Node::Kubeconfig(k) => {
                out.push(Edge::Client {
                    kubeconfig: &k.id,
                    cert: g.id_of(k.client),
                });
                out.push(Edge::Trusts {
                    kubeconfig: &k.id,
                    ca: g.id_of(k.ca),
                });
            }
            Node::KeyPair(_) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for b in &g.bindings {
        if b.flag.kind() == FlagKind::TrustedCa && seen.insert((b.flag, b.target)) {
            out.push(Edge::Binding {
                component: b.flag.component().as_str(),
                flag: b.flag.name(),
                ca: g.id_of(b.target),
            });
        }
    }
    out
}
