//! `kpki check`: read a directory, run every rule, compare with the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Observation;
use super::flags::TrustOrigin;
use crate::Plan;
use crate::graph::Node;
use crate::validate::{Code, Finding, Options, Report, validate_with};

/// The outcome of a check.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// What was read.
    pub observation: Observation,
    /// Every finding: the rules, unreadable files, and drift from the plan.
    pub report: Report,
    /// Where trust was judged from: the components' flags, or the profile.
    pub trust: TrustOrigin,
}

/// D003 for each copy of a planned file whose bytes differ from the first
/// copy found (`cluster/` first). Keys are compared too, never shown.
fn differing_copies(dir: &Path, plan: &Plan) -> Vec<Finding> {
    use rayon::prelude::*;
    plan.layout
        .files
        .par_iter()
        .filter(|f| f.nodes.len() + usize::from(f.cluster_path.is_some()) > 1)
        .flat_map_iter(|f| {
            let mut first: Option<(String, zeroize::Zeroizing<Vec<u8>>)> = None;
            let mut out = Vec::new();
            for p in f.output_paths() {
                let Ok(b) = super::walk::read_regular(&dir.join(&p)) else {
                    continue;
                };
                let b = zeroize::Zeroizing::new(b);
                match &first {
                    None => first = Some((p, b)),
                    Some((reference, fb)) if **fb != *b => {
                        let id = plan.graph.id_of(f.node);
                        out.push(Finding {
                            code: Code::D003,
                            severity: Code::D003.severity(),
                            nodes: vec![id.clone()],
                            message: format!(
                                "{p} differs from {reference}: the copies of {id} must be identical (one was changed after kpki wrote it)"
                            ),
                            hint: "run `kpki issue` to rewrite the copies, after finding out who changed it".into(),
                            files: vec![p.clone(), reference.clone()],
                        });
                    }
                    Some(_) => {}
                }
            }
            out
        })
        .collect()
}

/// Checks a directory; never writes.
/// `node` names the node a single-node directory belongs to (default: inferred from its files).
pub fn check(
    dir: &Path,
    plan: Option<&Plan>,
    node: Option<&crate::x509::NodeName>,
    opts: &Options,
) -> Result<CheckReport, crate::Error> {
    check_with(dir, plan, node, opts, None)
}

/// [`check`], with a second directory of component configuration (systemd
/// units kept outside `dir`: `kpki check DIR --config-dir UNITS`).
pub fn check_with(
    dir: &Path,
    plan: Option<&Plan>,
    node: Option<&crate::x509::NodeName>,
    opts: &Options,
    config_dir: Option<&Path>,
) -> Result<CheckReport, crate::Error> {
    // An install root (DIR/etc/kubernetes/pki) is read at DIR/etc/kubernetes,
    // its paths named from DIR.
    let (pki_dir, prefix) = super::flags::pki_dir(dir);
    let mut obs = super::read_planned(&pki_dir, plan.map(super::Planned::of), node)?;
    if let Some(prefix) = prefix {
        super::flags::rebase(&mut obs, prefix);
    }
    let mut roots = vec![super::config::Root {
        dir: dir.to_path_buf(),
        shown: String::new(),
        whole: false,
    }];
    if let Some(c) = config_dir {
        if !c.is_dir() {
            return Err(crate::Error::Io {
                path: c.to_path_buf(),
                message: "--config-dir: not a directory".into(),
            });
        }
        roots.push(super::config::Root {
            dir: c.to_path_buf(),
            shown: c.display().to_string(),
            whole: true,
        });
    }
    let cfg = super::config::read(&roots);
    for p in &cfg.problems {
        if !obs.problems.iter().any(|q| q.path == p.path) {
            obs.problems.push(p.clone());
        }
    }
    let trust = super::flags::apply(&mut obs, dir, cfg);
    let mut report = validate_with(&obs.graph, opts);
    let mut extra = Vec::new();
    for p in &obs.problems {
        extra.push(Finding {
            code: Code::F001,
            severity: Code::F001.severity(),
            nodes: vec![p.path.clone()],
            message: format!("{} {}", p.path, p.message),
            hint: "restore the file, or remove it and re-issue with kpki".into(),
            files: vec![p.path.clone()],
        });
    }
    for u in &obs.unrecognised {
        extra.push(Finding {
            code: Code::D004,
            severity: Code::D004.severity(),
            nodes: vec![u.file.clone()],
            message: format!(
                "{} holds a certificate that fits no role of the {} profile: CN={}{} (issued by CN={})",
                u.file,
                obs.profile.name,
                u.subject.common_name,
                if u.subject.organizations.is_empty() {
                    String::new()
                } else {
                    format!(" O={}", u.subject.organizations.join(","))
                },
                u.issuer
            ),
            hint: "remove it if nothing uses it; kpki does not judge it".into(),
            files: u.files.clone(),
        });
    }
    if let Some(plan) = plan {
        let failed: BTreeSet<&str> = obs.problems.iter().map(|p| p.path.as_str()).collect();
        if matches!(obs.kind, super::DirKind::Kpki { .. }) {
            // In a kpki directory every planned copy (cluster/ and each bundle) must exist.
            use rayon::prelude::*;
            // 55,000 paths in a 5,000-node output: looked up in parallel.
            let absent: Vec<(crate::graph::NodeId, String)> = plan
                .layout
                .files
                .par_iter()
                .flat_map_iter(|f| {
                    f.output_paths()
                        .into_iter()
                        .filter(|p| !dir.join(p).exists())
                        .map(|p| (f.node, p))
                })
                .collect();
            for (node, p) in absent {
                if !obs.missing.contains(&plan.graph.id_of(node)) {
                    extra.push(Finding {
                        code: Code::D001,
                        severity: Code::D001.severity(),
                        nodes: vec![plan.graph.id_of(node)],
                        message: format!("{p} is planned but missing"),
                        hint: "run `kpki issue` to fill in what is missing".into(),
                        files: vec![p.clone()],
                    });
                }
            }
            // Every copy of a planned file (cluster/ and each node's bundle,
            // the first node's included) must equal the copy the graph was
            // read from.
            extra.extend(differing_copies(dir, plan));
            // A kubeconfig embeds the certificate its node's file holds.
            for d in &obs.embedded_drift {
                extra.push(Finding {
                    code: Code::D003,
                    severity: Code::D003.severity(),
                    nodes: vec![d.node.clone()],
                    message: format!(
                        "{} embeds {} (changed after kpki wrote it)",
                        d.kubeconfig, d.what
                    ),
                    hint: "run `kpki issue` to rewrite it, after finding out who changed it".into(),
                    files: vec![d.kubeconfig.clone(), d.file.clone()],
                });
            }
            // Bundles of nodes no longer in the spec (with their keys).
            for b in crate::store::stale_bundles(dir, &plan.layout) {
                extra.push(Finding {
                    code: Code::D002,
                    severity: Code::D002.severity(),
                    nodes: vec![b.clone()],
                    message: format!(
                        "{b} is the bundle of a node not in the plan (it holds that node's keys)"
                    ),
                    hint: "`kpki issue --prune` removes it".into(),
                    files: vec![b.clone()],
                });
            }
        }
        for id in &obs.missing {
            extra.push(Finding {
                code: Code::D001,
                severity: Code::D001.severity(),
                nodes: vec![id.clone()],
                message: format!("{id} is planned but not in {}", dir.display()),
                hint: "run `kpki issue` to fill in what is missing".into(),
                files: Vec::new(),
            });
        }
        for f in &obs.extra {
            if !failed.contains(f.as_str()) {
                extra.push(Finding {
                    code: Code::D002,
                    severity: Code::D002.severity(),
                    nodes: vec![f.clone()],
                    message: format!("{f} is not part of the plan"),
                    hint: "remove it if nothing uses it".into(),
                    files: vec![f.clone()],
                });
            }
        }
        for (_, n) in obs.graph.iter() {
            let Node::Cert(seen) = n else { continue };
            let Some(planned) = plan.graph.find(&seen.id).and_then(|i| plan.graph.cert(i)) else {
                continue;
            };
            let mut what = Vec::new();
            if seen.subject.common_name != planned.subject.common_name
                || seen.subject.organizations != planned.subject.organizations
            {
                what.push(format!(
                    "subject CN={} O={} (plan: CN={} O={})",
                    seen.subject.common_name,
                    seen.subject.organizations.join(","),
                    planned.subject.common_name,
                    planned.subject.organizations.join(",")
                ));
            }
            if seen.sans != planned.sans {
                let missing: Vec<String> = planned
                    .sans
                    .dns
                    .difference(&seen.sans.dns)
                    .map(|d| d.to_string())
                    .chain(
                        planned
                            .sans
                            .ip
                            .difference(&seen.sans.ip)
                            .map(|i| i.to_string()),
                    )
                    .collect();
                let added: Vec<String> = seen
                    .sans
                    .dns
                    .difference(&planned.sans.dns)
                    .map(|d| d.to_string())
                    .chain(
                        seen.sans
                            .ip
                            .difference(&planned.sans.ip)
                            .map(|i| i.to_string()),
                    )
                    .collect();
                what.push(format!(
                    "SANs missing [{}] extra [{}]",
                    missing.join(", "),
                    added.join(", ")
                ));
            }
            if seen.usage.ext.iter().collect::<BTreeSet<_>>() != planned.usage.ext.iter().collect()
            {
                what.push("extended key usage".into());
            }
            if !what.is_empty() {
                extra.push(Finding {
                    code: Code::D003,
                    severity: Code::D003.severity(),
                    nodes: vec![seen.id.clone()],
                    message: format!(
                        "{} differs from the plan: {}",
                        seen.cert_path.as_deref().unwrap_or(&seen.id),
                        what.join("; ")
                    ),
                    hint: "run `kpki issue` to re-issue it under the same CA".into(),
                    files: Vec::new(),
                });
            }
        }
    }
    report.findings.extend(extra);
    // Name the files behind the nodes of every finding: the file each node
    // was read from, and for a leaf every other file holding it (a
    // kubeconfig embedding the same certificate is just as affected).
    let mut copies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &obs.inventory {
        if matches!(
            e.kind,
            super::FileKind::Certificates { count: 1 } | super::FileKind::Kubeconfig
        ) {
            for r in &e.roles {
                copies.entry(r.as_str()).or_default().push(e.path.clone());
            }
        }
    }
    for f in &mut report.findings {
        if f.files.is_empty() {
            f.files = f
                .nodes
                .iter()
                .flat_map(|n| {
                    let leaf = obs
                        .graph
                        .find(n)
                        .and_then(|i| obs.graph.cert(i))
                        .is_some_and(|c| !c.is_ca);
                    obs.graph
                        .iter()
                        .filter(move |(_, x)| x.id() == n)
                        .filter_map(|(i, _)| obs.files.get(&i).cloned())
                        .chain(
                            leaf.then(|| copies.get(n.as_str()).cloned())
                                .flatten()
                                .unwrap_or_default(),
                        )
                })
                .collect();
            f.files.sort();
            f.files.dedup();
        }
    }
    super::flags::annotate(&mut report, &trust, dir);
    // On a directory kpki did not write, hints speak its world (openssl,
    // cfssl, flags); with a spec the user speaks the spec's language.
    if plan.is_none() {
        super::hints::rewrite(&mut report, &obs, &trust, dir);
    }
    report
        .findings
        .sort_by(|a, b| (a.severity, a.code, &a.nodes).cmp(&(b.severity, b.code, &b.nodes)));
    Ok(CheckReport {
        observation: obs,
        report,
        trust,
    })
}
