//! Mermaid flowchart.

use std::collections::BTreeSet;

use pki_core::{FlagKind, IssuerRef, Node, Plan};

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
    for (id, n) in g.iter() {
        match n {
            Node::Cert(c) => {
                if let IssuerRef::Node(i) = c.issuer
                    && i != id
                {
                    out.push_str(&format!(
                        "  {} -->|signs| {}\n",
                        key(&g.id_of(i)),
                        key(&c.id)
                    ));
                }
            }
            Node::Kubeconfig(k) => {
                out.push_str(&format!(
                    "  kc_{} --> {}\n",
                    key(&k.id),
                    key(&g.id_of(k.client))
                ));
                out.push_str(&format!(
                    "  kc_{} -.->|trusts| {}\n",
                    key(&k.id),
                    key(&g.id_of(k.ca))
                ));
            }
            Node::KeyPair(_) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for b in &g.bindings {
        if b.flag.kind() != FlagKind::TrustedCa || !seen.insert((b.flag, b.target)) {
            continue;
        }
        let comp = b.flag.component().as_str();
        out.push_str(&format!(
            "  comp_{}[/\"{}\"/] -.->|{}| {}\n",
            key(comp),
            comp,
            b.flag.name(),
            key(&g.id_of(b.target))
        ));
    }
    out
}
