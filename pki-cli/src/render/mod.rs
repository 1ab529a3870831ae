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

/// The width text output is wrapped to: the terminal's when standard output
/// is one, else 100 columns.
pub fn width() -> usize {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal()
        && let Some((_, cols)) = console::Term::stdout().size_checked()
        && cols >= 40
    {
        return usize::from(cols);
    }
    100
}

/// Wraps `text` at spaces to `width` columns: the first line starts with
/// `first`, the others with `rest`. A word longer than a line stands alone.
/// Returns the lines, each ending with a newline.
pub fn wrap(first: &str, rest: &str, text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split(' ') {
        let cols = line.chars().count();
        let add = word.chars().count() + usize::from(!empty);
        if !empty && cols + add > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// The findings block shared by the text renderers, wrapped to 100 columns.
pub fn findings(report: &pki_core::Report) -> String {
    findings_wrapped(report, 100)
}

/// The findings block, errors first; findings that say the same thing for
/// several nodes (`apiserver@cp1`, `apiserver@cp2`) are one line naming
/// them all (`apiserver@{cp1,cp2}`).
pub fn findings_wrapped(report: &pki_core::Report, width: usize) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("findings: none\n");
        return out;
    }
    out.push_str("findings:\n");
    // (severity, code, message and hint with node ids generalised, files) -> node ids
    type Key = (String, String, String, String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut groups: std::collections::BTreeMap<Key, Vec<String>> = Default::default();
    for f in &report.findings {
        let mut message = f.message.clone();
        let mut hint = f.hint.clone();
        let mut subjects = Vec::new();
        for n in &f.nodes {
            match n.split_once('@') {
                Some((t, node)) => {
                    let generic = format!("{t}@\u{1}");
                    message = message.replace(n.as_str(), &generic);
                    hint = hint.replace(n.as_str(), &generic);
                    subjects.push((t.to_owned(), node.to_owned()));
                }
                None => subjects.push((n.clone(), String::new())),
            }
        }
        let ids: Vec<String> = subjects
            .iter()
            .map(|(t, n)| {
                if n.is_empty() {
                    t.clone()
                } else {
                    format!("{t}@\u{1}")
                }
            })
            .collect();
        let key = (
            f.severity.as_str().to_owned(),
            f.code.to_string(),
            format!("{}\u{2}{message}", ids.join(", ")),
            hint,
            f.files.join(", "),
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let nodes = groups.entry(key).or_default();
        for (_, n) in subjects {
            if !n.is_empty() && !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    for key in order {
        let nodes = groups.get(&key).cloned().unwrap_or_default();
        let fill = match nodes.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            many => format!("{{{}}}", many.join(",")),
        };
        let (severity, code, idmsg, hint, files) = key;
        let (ids, message) = idmsg.split_once('\u{2}').unwrap_or(("", &idmsg));
        let ids = ids.replace('\u{1}', &fill);
        let message = message.replace('\u{1}', &fill);
        let hint = hint.replace('\u{1}', &fill);
        out.push_str(&wrap(
            "  ",
            "          ",
            &if ids.is_empty() {
                format!("{severity:<7} {code} {message}")
            } else {
                format!("{severity:<7} {code} [{ids}] {message}")
            },
            width,
        ));
        if !files.is_empty() {
            out.push_str(&wrap(
                "          ",
                "            ",
                &format!("files: {files}"),
                width,
            ));
        }
        out.push_str(&wrap(
            "          ",
            "            ",
            &format!("hint: {hint}"),
            width,
        ));
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
