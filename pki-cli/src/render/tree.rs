//! The tree view: CAs with the certificates they sign beneath them, one entry
//! per template (its nodes listed once, node-specific values written as
//! `<node>` and `<node-ip>`), then keypairs, kubeconfigs, the trust map, a
//! legend and the findings, every line wrapped to the output width.

use std::collections::BTreeMap;

use pki_core::{CertGraph, CertNode, FlagKind, IssuerRef, Node, NodeId, Part, Plan};

use super::wrap;

/// Node name -> the node's addresses, to write node-specific values once.
type Addresses = BTreeMap<String, Vec<String>>;

fn subject(c: &CertNode) -> String {
    let mut s = format!("CN={}", c.subject.common_name);
    if !c.subject.organizations.is_empty() {
        s.push_str(&format!(" O={}", c.subject.organizations.join(",")));
    }
    s
}

/// A line in three spellings: as it is, with the node's name written
/// `<node>`, and with its addresses written `<node-ip>` too. Entries of
/// several nodes use the first spelling on which all of them agree.
type Variants = [String; 3];

/// One node's instance of a template: the node and its lines.
type Instance = (String, Vec<Variants>);

fn variants(line: &str, node: Option<&str>, addrs: &Addresses) -> Variants {
    let Some(n) = node else {
        return [line.to_owned(), line.to_owned(), line.to_owned()];
    };
    let named = line
        .replace(&format!("DNS:{n}"), "DNS:<node>")
        .replace(&format!("CN={n}"), "CN=<node>")
        .replace(&format!(":{n} "), ":<node> ")
        .replace(&format!("@{n} "), "@<node> ");
    let named = match named.strip_suffix(&format!(":{n}")) {
        Some(head) => format!("{head}:<node>"),
        None => named,
    };
    let mut full = named.clone();
    for ip in addrs.get(n).into_iter().flatten() {
        full = full
            .replace(&format!("IP:{ip}"), "IP:<node-ip>")
            .replace(&format!("//{ip}:"), "//<node-ip>:");
    }
    [line.to_owned(), named, full]
}

/// One certificate's lines: the header (subject, role, key, lifetime), then
/// SANs, usages and files.
fn cert_lines(c: &CertNode) -> Vec<String> {
    let role = c.role.map_or("ca", |r| r.as_str());
    let mut lines = vec![format!(
        "{}  [{role}]  {} {}",
        subject(c),
        c.key,
        c.validity.lifetime
    )];
    if !c.sans.is_empty() {
        let mut sans: Vec<String> = c.sans.dns.iter().map(|n| format!("DNS:{n}")).collect();
        sans.extend(c.sans.ip.iter().map(|i| format!("IP:{i}")));
        lines.push(format!("SANs: {}", sans.join(", ")));
    }
    let mut usage: Vec<&str> = c.usage.key.map(|k| k.names()).unwrap_or_default();
    usage.extend(c.usage.ext.iter().map(|e| e.as_str()));
    lines.push(format!("usage: {}", usage.join(", ")));
    if let Some(p) = &c.cert_path {
        lines.push(format!(
            "files: {p}{}",
            c.key_path
                .as_ref()
                .map(|k| format!(", {k}"))
                .unwrap_or_default()
        ));
    }
    lines
}

/// Folds the lines of one template's instances (one per node) into one
/// entry: `(header, details)`. Each line is written once in the first
/// spelling all nodes share, or once per node when they differ.
fn fold(name: &str, instances: &[(String, Vec<Variants>)]) -> (String, Vec<String>) {
    let nodes: Vec<&str> = instances.iter().map(|(n, _)| n.as_str()).collect();
    let agreed = |i: usize| -> Option<String> {
        (0..3).find_map(|v| {
            let first = instances.first()?.1.get(i)?[v].clone();
            instances
                .iter()
                .all(|(_, l)| l.get(i).is_some_and(|x| x[v] == first))
                .then_some(first)
        })
    };
    let count = instances.first().map_or(0, |(_, l)| l.len());
    let same_shape = instances.iter().all(|(_, l)| l.len() == count);
    let mut header = format!("{name} on {}", nodes.join(", "));
    let mut details = Vec::new();
    for i in 0..count {
        match agreed(i).filter(|_| same_shape) {
            Some(line) if i == 0 => header = format!("{header}  {line}"),
            Some(line) => details.push(line),
            None => {
                for (n, l) in instances {
                    if let Some(x) = l.get(i) {
                        details.push(format!("{n}: {}", x[1]));
                    }
                }
            }
        }
    }
    (header, details)
}

/// The certificates a CA signs, grouped by template in first-seen order.
fn groups(g: &CertGraph, ca: NodeId) -> Vec<Vec<(NodeId, &CertNode)>> {
    let mut order: Vec<&str> = Vec::new();
    let mut by: BTreeMap<&str, Vec<(NodeId, &CertNode)>> = BTreeMap::new();
    for (id, c) in g.signed_by(ca).filter(|(i, _)| *i != ca) {
        if !by.contains_key(c.template.as_str()) {
            order.push(&c.template);
        }
        by.entry(&c.template).or_default().push((id, c));
    }
    order.into_iter().filter_map(|t| by.remove(t)).collect()
}

/// Writes one group: a single certificate as it is, several (one per node)
/// as one entry naming the nodes.
fn group_lines(
    group: &[(NodeId, &CertNode)],
    addrs: &Addresses,
) -> (String, Vec<String>, Vec<NodeId>) {
    let ids = group.iter().map(|(i, _)| *i).collect();
    if let [(_, c)] = group {
        let mut lines = cert_lines(c);
        let header = format!("{}  {}", c.id, lines.remove(0));
        if let Some(n) = &c.node {
            lines.push(format!("node: {n}"));
        }
        return (header, lines, ids);
    }
    let instances: Vec<(String, Vec<Variants>)> = group
        .iter()
        .map(|(_, c)| {
            let node = c.node.as_ref().map(|n| n.as_str());
            let lines = cert_lines(c)
                .iter()
                .map(|l| variants(l, node, addrs))
                .collect();
            (node.map_or_else(|| c.id.clone(), str::to_owned), lines)
        })
        .collect();
    let name = group.first().map_or("", |(_, c)| c.template.as_str());
    let (header, details) = fold(name, &instances);
    (header, details, ids)
}

fn walk(g: &CertGraph, ca: NodeId, prefix: &str, addrs: &Addresses, w: usize, out: &mut String) {
    let groups = groups(g, ca);
    for (n, group) in groups.iter().enumerate() {
        let last = n + 1 == groups.len();
        let (header, details, ids) = group_lines(group, addrs);
        let branch = if last { "└── " } else { "├── " };
        let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
        out.push_str(&wrap(
            &format!("{prefix}{branch}"),
            &format!("{child_prefix}    "),
            &header,
            w,
        ));
        let detail_prefix = format!("{child_prefix}    ");
        for d in details {
            out.push_str(&wrap(
                &detail_prefix,
                &format!("{detail_prefix}    "),
                &d,
                w,
            ));
        }
        for id in ids {
            if g.cert(id).is_some_and(|c| c.is_ca) {
                walk(g, id, &child_prefix, addrs, w, out);
            }
        }
    }
}

/// Compresses copies of one file: `cluster/pki/ca.key` and
/// `nodes/{cp1,cp2}/etc/kubernetes/pki/ca.key`.
fn copies(paths: &[String]) -> String {
    let mut cluster = Vec::new();
    let mut per_rest: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in paths {
        match p.strip_prefix("nodes/").and_then(|r| r.split_once('/')) {
            Some((node, rest)) => per_rest.entry(rest).or_default().push(node),
            None => cluster.push(p.clone()),
        }
    }
    for (rest, nodes) in per_rest {
        cluster.push(if nodes.len() == 1 {
            format!("nodes/{}/{rest}", nodes.join(""))
        } else {
            format!("nodes/{{{}}}/{rest}", nodes.join(","))
        });
    }
    cluster.join(", ")
}

/// Which component flag trusts (or signs with) which CA, and where each CA
/// private key is written.
fn trust_map(p: &Plan, w: usize) -> String {
    let g = &p.graph;
    let mut trusts: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for b in &g.bindings {
        let Some(c) = g.cert(b.target) else { continue };
        if !c.is_ca {
            continue;
        }
        let what = match b.flag.kind() {
            FlagKind::TrustedCa => "trusts",
            FlagKind::CertAndKey => "signs with",
            FlagKind::PublicKey | FlagKind::PrivateKey => continue,
        };
        let key = (
            format!("{} --{}", b.flag.component().as_str(), b.flag.name()),
            format!("{what} {}", c.id),
        );
        let nodes = trusts.entry(key).or_default();
        if !nodes.contains(&b.node.to_string()) {
            nodes.push(b.node.to_string());
        }
    }
    for (_, k) in g.kubeconfigs() {
        let key = (
            format!("{} (kubeconfig)", k.file),
            format!("trusts {}", g.id_of(k.ca)),
        );
        trusts.entry(key).or_default();
    }
    let mut out = String::from("trust map (component flag -> the CA it trusts or signs with):\n");
    let col = trusts
        .keys()
        .map(|(f, _)| f.chars().count())
        .max()
        .unwrap_or(0);
    for (flag, ca) in trusts.keys() {
        let pad = " ".repeat(col.saturating_sub(flag.chars().count()));
        out.push_str(&wrap("  ", "      ", &format!("{flag}{pad}  {ca}"), w));
    }
    out.push_str("CA private keys (every copy kpki writes):\n");
    for (id, c) in g.certs() {
        if !c.is_ca {
            continue;
        }
        let held = p
            .layout
            .part(id, Part::Key)
            .map(|f| copies(&f.output_paths()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(none: the key is not written)".into());
        out.push_str(&wrap("  ", "      ", &format!("{}: {held}", c.id), w));
    }
    out
}

const LEGEND: &str = "legend: [ca] signs certificates · [server] serverAuth (serves TLS) · \
    [client] clientAuth (authenticates to a server) · [peer] serverAuth + clientAuth (etcd \
    members to each other) · [etcd-server] serverAuth + clientAuth (etcd's gateway dials \
    itself) · <node> and <node-ip> stand for each listed node's name and address";

/// Renders a plan as a tree, then keypairs, kubeconfigs, the trust map, the
/// legend and the findings, wrapped to `width` columns.
pub fn plan(p: &Plan, width: usize) -> String {
    let w = width;
    let g = &p.graph;
    let s = &p.spec;
    let addrs: Addresses = s
        .all_nodes()
        .into_iter()
        .map(|(n, spec)| {
            let mut a = vec![spec.address.to_string()];
            a.extend(spec.extra_ips.iter().map(ToString::to_string));
            (n.to_string(), a)
        })
        .collect();
    let mut out = wrap(
        "",
        "    ",
        &format!(
            "profile {} · cluster {} · {} control-plane, {} etcd ({}), {} worker(s) · {}",
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
        ),
        w,
    );
    out.push('\n');
    // Roots, then anything whose issuer does not resolve (rule S001 names them).
    for (id, c) in g.certs() {
        let root = match &c.issuer {
            IssuerRef::SelfSigned | IssuerRef::Unknown(_) => true,
            IssuerRef::Node(i) => *i == id,
        };
        if !root {
            continue;
        }
        let mut tag = if let IssuerRef::Unknown(n) = &c.issuer {
            format!("  (issuer `{n}` unknown)")
        } else {
            String::new()
        };
        if let Some(src) = &c.existing {
            tag.push_str(&format!("  (existing CA: {})", src.display()));
        }
        let (header, details, _) = group_lines(&[(id, c)], &addrs);
        out.push_str(&wrap("", "    ", &format!("{header}{tag}"), w));
        for d in details {
            out.push_str(&wrap("    ", "        ", &d, w));
        }
        if c.is_ca {
            walk(g, id, "", &addrs, w, &mut out);
        }
        out.push('\n');
    }
    let mut kp = String::new();
    let mut kc = String::new();
    let mut kc_groups: Vec<(String, Vec<Instance>)> = Vec::new();
    for (_, n) in g.iter() {
        match n {
            Node::KeyPair(k) => kp.push_str(&wrap(
                "  ",
                "      ",
                &format!("{}  {}  {}, {}", k.id, k.key, k.private_path, k.public_path),
                w,
            )),
            Node::Kubeconfig(k) => {
                let line = format!(
                    "{}  user {} -> {}  (CA {})",
                    k.file,
                    g.cert(k.client)
                        .map_or("?", |c| c.subject.common_name.as_str()),
                    k.server,
                    g.id_of(k.ca)
                );
                let node = k.node.as_ref().map(|n| n.as_str());
                let entry = (
                    node.map_or_else(|| k.id.clone(), str::to_owned),
                    vec![variants(&line, node, &addrs)],
                );
                match kc_groups
                    .iter_mut()
                    .find(|(t, _)| *t == k.template && node.is_some())
                {
                    Some((_, v)) => v.push(entry),
                    None if node.is_some() => kc_groups.push((k.template.clone(), vec![entry])),
                    None => kc.push_str(&wrap("  ", "      ", &format!("{}  {line}", k.id), w)),
                }
            }
            Node::Cert(_) => {}
        }
    }
    for (template, instances) in &kc_groups {
        let (header, details) = match instances.as_slice() {
            [(n, l)] => (
                format!(
                    "{template}@{n}  {}",
                    l.first().map_or("", |x| x[0].as_str())
                ),
                Vec::new(),
            ),
            _ => fold(template, instances),
        };
        kc.push_str(&wrap("  ", "      ", &header, w));
        for d in details {
            kc.push_str(&wrap("      ", "          ", &d, w));
        }
    }
    if !kp.is_empty() {
        out.push_str(&format!("keypairs:\n{kp}\n"));
    }
    if !kc.is_empty() {
        out.push_str(&format!("kubeconfigs:\n{kc}\n"));
    }
    out.push_str(&trust_map(p, w));
    out.push('\n');
    out.push_str(&wrap("", "        ", LEGEND, w));
    out.push('\n');
    out.push_str(&super::findings_wrapped(&p.report, w));
    out
}
