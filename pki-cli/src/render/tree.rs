//! The tree view: CAs with the certificates they sign beneath them.

use pki_core::{CertGraph, CertNode, IssuerRef, Node, NodeId, Plan};

fn line(c: &CertNode) -> String {
    let mut s = format!("{}  CN={}", c.id, c.subject.common_name);
    if !c.subject.organizations.is_empty() {
        s.push_str(&format!(" O={}", c.subject.organizations.join(",")));
    }
    match c.role {
        Some(r) => s.push_str(&format!("  [{}]", r.as_str())),
        None => s.push_str("  [ca]"),
    }
    s.push_str(&format!("  {} {}", c.key, c.validity.lifetime));
    s
}

fn details(c: &CertNode) -> Vec<String> {
    let mut d = Vec::new();
    if !c.sans.is_empty() {
        let mut sans: Vec<String> = c.sans.dns.iter().map(|n| format!("DNS:{n}")).collect();
        sans.extend(c.sans.ip.iter().map(|i| format!("IP:{i}")));
        d.push(format!("SANs: {}", sans.join(", ")));
    }
    let mut usage: Vec<&str> = c.usage.key.map(|k| k.names()).unwrap_or_default();
    usage.extend(c.usage.ext.iter().map(|e| e.as_str()));
    d.push(format!("usage: {}", usage.join(", ")));
    if let Some(n) = &c.node {
        d.push(format!("node: {n}"));
    }
    if let Some(p) = &c.cert_path {
        d.push(format!(
            "files: {p}{}",
            c.key_path
                .as_ref()
                .map(|k| format!(", {k}"))
                .unwrap_or_default()
        ));
    }
    d
}

fn walk(g: &CertGraph, ca: NodeId, prefix: &str, out: &mut String) {
    let children: Vec<_> = g.signed_by(ca).filter(|(i, _)| *i != ca).collect();
    for (n, (id, c)) in children.iter().enumerate() {
        let last = n + 1 == children.len();
        out.push_str(&format!(
            "{prefix}{}{}\n",
            if last { "└── " } else { "├── " },
            line(c)
        ));
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        for d in details(c) {
            out.push_str(&format!("{child_prefix}    {d}\n"));
        }
        if c.is_ca {
            walk(g, *id, &child_prefix, out);
        }
    }
}

/// Renders a plan as a tree, then keypairs, kubeconfigs and findings.
pub fn plan(p: &Plan) -> String {
    let g = &p.graph;
    let s = &p.spec;
    let mut out = format!(
        "profile {} · cluster {} · {} control-plane, {} etcd ({}), {} worker(s) · {}\n\n",
        p.profile.name,
        s.cluster.name,
        s.control_plane.len(),
        s.etcd_members().len(),
        if matches!(s.etcd, pki_core::EtcdTopology::Stacked) {
            "stacked"
        } else {
            "external"
        },
        s.workers.len(),
        s.crypto.algorithm,
    );
    // Roots, then anything whose issuer does not resolve (rule S001 names them).
    for (id, c) in g.certs() {
        let root = match &c.issuer {
            IssuerRef::SelfSigned => true,
            IssuerRef::Node(i) => *i == id,
            IssuerRef::Unknown(_) => true,
        };
        if !root {
            continue;
        }
        let tag = if let IssuerRef::Unknown(n) = &c.issuer {
            format!("  (issuer `{n}` unknown)")
        } else {
            String::new()
        };
        out.push_str(&format!("{}{tag}\n", line(c)));
        for d in details(c) {
            out.push_str(&format!("    {d}\n"));
        }
        if c.is_ca {
            walk(g, id, "", &mut out);
        }
        out.push('\n');
    }
    let mut kp = Vec::new();
    let mut kc = Vec::new();
    for (_, n) in g.iter() {
        match n {
            Node::KeyPair(k) => kp.push(format!(
                "  {}  {}  {}, {}",
                k.id, k.key, k.private_path, k.public_path
            )),
            Node::Kubeconfig(k) => kc.push(format!(
                "  {}  {}  user {} -> {}  (CA {})",
                k.id,
                k.file,
                g.cert(k.client)
                    .map_or("?", |c| c.subject.common_name.as_str()),
                k.server,
                g.id_of(k.ca)
            )),
            Node::Cert(_) => {}
        }
    }
    if !kp.is_empty() {
        out.push_str(&format!("keypairs:\n{}\n\n", kp.join("\n")));
    }
    if !kc.is_empty() {
        out.push_str(&format!("kubeconfigs:\n{}\n\n", kc.join("\n")));
    }
    out.push_str(&super::findings(&p.report));
    out
}
