//! Graphviz DOT: CAs as boxes, leaves as ellipses, "signs" edges solid,
//! trust bindings dashed from the component that trusts.

use std::collections::BTreeSet;

use super::Edge;
use pki_core::{Node, Plan};

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
    let kc = |id: &str| q(&format!("kubeconfig:{id}"));
    let mut components = BTreeSet::new();
    for e in super::edges(g) {
        let line = match e {
            Edge::Signs { ca, cert } => format!("  {} -> {} [label=\"signs\"];\n", q(&ca), q(cert)),
            Edge::Client { kubeconfig, cert } => {
                format!("  {} -> {} [label=\"client\"];\n", kc(kubeconfig), q(&cert))
            }
            Edge::Trusts { kubeconfig, ca } => format!(
                "  {} -> {} [style=dashed, label=\"trusts\"];\n",
                kc(kubeconfig),
                q(&ca)
            ),
            Edge::Binding {
                component,
                flag,
                ca,
            } => {
                if components.insert(component) {
                    out.push_str(&format!("  {} [shape=component];\n", q(component)));
                }
                format!(
                    "  {} -> {} [style=dashed, label={}];\n",
                    q(component),
                    q(&ca),
                    q(flag)
                )
            }
        };
        out.push_str(&line);
    }
    out.push_str("}\n");
    out
}
