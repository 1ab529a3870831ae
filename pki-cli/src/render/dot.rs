//! Graphviz DOT: CAs as boxes, leaves as ellipses, "signs" edges solid,
//! trust bindings dashed from the component that trusts.

use std::collections::BTreeSet;

use pki_core::{FlagKind, IssuerRef, Node, Plan};

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// Renders a plan as DOT.
pub fn plan(p: &Plan) -> String {
    let g = &p.graph;
    let mut out = String::from("digraph kpki {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (_, n) in g.iter() {
        match n {
            Node::Cert(c) if c.is_ca => out.push_str(&format!(
                "  {} [shape=box, style=bold, label={}];\n",
                q(&c.id),
                q(&format!("{}\\nCN={}", c.id, c.subject.common_name))
            )),
            Node::Cert(c) => out.push_str(&format!(
                "  {} [shape=ellipse, label={}];\n",
                q(&c.id),
                q(&format!("{}\\nCN={}", c.id, c.subject.common_name))
            )),
            Node::KeyPair(k) => out.push_str(&format!("  {} [shape=diamond];\n", q(&k.id))),
            Node::Kubeconfig(k) => out.push_str(&format!(
                "  {} [shape=note];\n",
                q(&format!("kubeconfig:{}", k.id))
            )),
        }
    }
    for (id, n) in g.iter() {
        match n {
            Node::Cert(c) => {
                if let IssuerRef::Node(i) = c.issuer
                    && i != id
                {
                    out.push_str(&format!(
                        "  {} -> {} [label=\"signs\"];\n",
                        q(&g.id_of(i)),
                        q(&c.id)
                    ));
                }
            }
            Node::Kubeconfig(k) => {
                out.push_str(&format!(
                    "  {} -> {} [label=\"client\"];\n",
                    q(&format!("kubeconfig:{}", k.id)),
                    q(&g.id_of(k.client))
                ));
                out.push_str(&format!(
                    "  {} -> {} [style=dashed, label=\"trusts\"];\n",
                    q(&format!("kubeconfig:{}", k.id)),
                    q(&g.id_of(k.ca))
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
        out.push_str(&format!("  {} [shape=component];\n", q(comp)));
        out.push_str(&format!(
            "  {} -> {} [style=dashed, label={}];\n",
            q(comp),
            q(&g.id_of(b.target)),
            q(b.flag.name())
        ));
    }
    out.push_str("}\n");
    out
}
