//! Mermaid flowchart.

use super::Edge;
use pki_core::{Node, Plan};

fn key(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn label(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Renders a plan as a Mermaid flowchart.
pub fn plan(p: &Plan) -> String {
    let g = &p.graph;
    let mut out = String::from("flowchart LR\n");
    for (_, n) in g.iter() {
        match n {
            Node::Cert(c) if c.is_ca => {
                out.push_str(&format!("  {}[[\"{}\"]]\n", key(&c.id), label(&c.id)))
            }
            Node::Cert(c) => out.push_str(&format!(
                "  {}(\"{}<br/>CN={}\")\n",
                key(&c.id),
                label(&c.id),
                label(&c.subject.common_name)
            )),
            Node::KeyPair(k) => {
                out.push_str(&format!("  {}{{\"{}\"}}\n", key(&k.id), label(&k.id)))
            }
            Node::Kubeconfig(k) => {
                out.push_str(&format!("  kc_{}>\"{}\"]\n", key(&k.id), label(&k.file)))
            }
        }
    }
    for e in super::edges(g) {
        out.push_str(&match e {
            Edge::Signs { ca, cert } => format!("  {} -->|signs| {}\n", key(&ca), key(cert)),
            Edge::Client { kubeconfig, cert } => {
                format!("  kc_{} --> {}\n", key(kubeconfig), key(&cert))
            }
            Edge::Trusts { kubeconfig, ca } => {
                format!("  kc_{} -.->|trusts| {}\n", key(kubeconfig), key(&ca))
            }
            Edge::Binding {
                component,
                flag,
                ca,
            } => {
                format!(
                    "  comp_{}[/\"{component}\"/] -.->|{flag}| {}\n",
                    key(component),
                    key(&ca)
                )
            }
        });
    }
    out
}
