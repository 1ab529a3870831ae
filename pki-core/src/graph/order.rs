use super::{CertGraph, IssuerRef, Node, NodeId};

/// The order in which to issue: every certificate after its issuer. CAs
/// come first (roots, then intermediates), then leaves, then keypairs; the
/// order within a level is the graph's (stable). Certificates on a signing
/// cycle, or below an unresolved issuer, are returned in `Err` (rules S001
/// and S002 name them).
pub fn issuance_order(g: &CertGraph) -> Result<Vec<NodeId>, Vec<NodeId>> {
    let n = g.nodes.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    // Repeated passes: a CA chain is a handful of levels deep.
    loop {
        let mut progressed = false;
        for (id, node) in g.iter() {
            if done[id.index()] {
                continue;
            }
            let ready = match node {
                Node::Cert(c) => match &c.issuer {
                    IssuerRef::SelfSigned => true,
                    IssuerRef::Node(i) => *i != id && done.get(i.index()).copied().unwrap_or(false),
                    IssuerRef::Unknown(_) => false,
                },
                Node::KeyPair(_) => true,
                Node::Kubeconfig(k) => done.get(k.client.index()).copied().unwrap_or(false),
            };
            if ready {
                done[id.index()] = true;
                order.push(id);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    if order.len() == n {
        // CAs first, then leaves, keypairs and kubeconfigs, keeping dependency order.
        let rank = |id: &NodeId| match g.node(*id) {
            Some(Node::Cert(c)) if c.is_ca => 0,
            Some(Node::Cert(_)) => 1,
            Some(Node::KeyPair(_)) => 2,
            _ => 3,
        };
        order.sort_by_key(|id| rank(id));
        Ok(order)
    } else {
        Err(g
            .iter()
            .map(|(i, _)| i)
            .filter(|i| !done[i.index()])
            .collect())
    }
}
