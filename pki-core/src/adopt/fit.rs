//! Fitting a preset to what an adopted directory holds: the profile file
//! `kpki init --from` writes when the directory's certificates are not the
//! preset's (templates it lacks, its own subjects, SANs and usages).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::graph::{CertGraph, CertNode, expand};
use crate::profile::Profile;
use crate::spec::ClusterSpec;
use crate::validate::{Code, Options};

/// SAN rules that give every instance the same names, tried first.
const SHARED_RULES: [&str; 6] = [
    "endpoint",
    "control-plane-ips",
    "service-ip",
    "in-cluster-names",
    "loopback",
    "extra",
];
/// SAN rules that differ per node.
const NODE_RULES: [&str; 3] = ["node-name", "node-ips", "node-hostnames"];

/// The preset, fitted.
pub(super) struct Fitted {
    /// The profile (TOML table).
    pub table: toml::Table,
    /// What was changed, one line each.
    pub changes: Vec<String>,
    /// `[[existing_ca]]` entries to add to the spec (CAs the preset lacks).
    pub spec_extra: String,
    /// Templates copied with the directory's own mistake (the plan carries
    /// an error for each): what to change to issue kpki's values instead.
    pub mistakes: Vec<Mistake>,
}

/// A template copied from a certificate with its mistake.
pub(super) struct Mistake {
    /// The leaf template.
    pub id: String,
    /// The error codes the copy brings into the plan.
    pub codes: BTreeSet<Code>,
    /// The fix: each field and kpki's value for it (`None`: remove the
    /// field, the role's default applies).
    pub fix: Vec<(String, Option<toml::Value>)>,
}

/// A CA template added for a CA the preset lacks.
struct AddedCa {
    id: String,
    file: String,
    cert_abs: String,
    key_abs: String,
    table: toml::Table,
}

/// A leaf template (and the CAs it needs) added for a certificate no
/// template fits.
struct Added {
    id: String,
    leaf: toml::Table,
    cas: Vec<AddedCa>,
}

fn add_ca(t: &mut toml::Table, c: &AddedCa) {
    if let Some(a) = t
        .entry("ca")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
    {
        a.push(toml::Value::Table(c.table.clone()));
    }
}

/// A template id made of a name: lowercase letters, digits and `-`.
fn id_of(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    id.trim_matches('-').to_owned()
}

fn ids(t: &toml::Table) -> BTreeSet<String> {
    ["ca", "leaf", "keypair", "kubeconfig"]
        .iter()
        .filter_map(|k| t.get(*k).and_then(toml::Value::as_array))
        .flatten()
        .filter_map(|v| v.get("id").and_then(toml::Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn strings(v: &[String]) -> toml::Value {
    toml::Value::Array(v.iter().cloned().map(toml::Value::String).collect())
}

/// For `file` (relative to `dir`), a leaf certificate that fits no template
/// of `plan`: a leaf template copied from it (subject, SANs as literals,
/// usages), signed by the template of the CA that signed it; that CA gets
/// a template (and is adopted) when the profile has none. Added to `t`.
fn add_unplanned(
    dir: &Path,
    file: &str,
    obs: &crate::Observation,
    plan: &crate::Plan,
    t: &mut toml::Table,
) -> Result<Option<Added>, crate::Error> {
    let read = |p: &Path| -> Option<crate::crypto::ParsedCert> {
        let bytes = crate::observe::walk::read_regular_capped(p, 1 << 20).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let der = crate::crypto::certs_from_pem(text)
            .ok()?
            .into_iter()
            .next()?;
        crate::crypto::parse_certificate(&der).ok()
    };
    let Some(pc) = read(&dir.join(file)) else {
        return Ok(None);
    };
    if pc.is_ca == Some(true) {
        return Ok(None);
    }
    // The observed CA that signed it.
    let Some((ca_id, ca)) = obs.graph.certs().find_map(|(i, c)| {
        if !c.is_ca || c.subject.common_name != pc.issuer.common_name {
            return None;
        }
        let f = obs.files.get(&i)?;
        let ca = read(&dir.join(f))?;
        pc.verify_signed_by(&ca.public_key).then_some((i, c))
    }) else {
        return Ok(None);
    };
    let mut taken = ids(t);
    let mut cas = Vec::new();
    let issuer = if plan
        .graph
        .find(&ca.id)
        .is_some_and(|i| plan.graph.cert(i).is_some_and(|c| c.is_ca))
    {
        ca.template.clone()
    } else {
        let (Some(cert), Some(key)) = (obs.files.get(&ca_id), ca.key_path.as_ref()) else {
            return Ok(None);
        };
        let mut id = id_of(&ca.subject.common_name);
        if id.is_empty() || taken.contains(&id) {
            id = format!("{}-ca", id_of(file.rsplit('/').next().unwrap_or(file)));
        }
        if taken.contains(&id) {
            return Ok(None);
        }
        taken.insert(id.clone());
        let mut table = toml::Table::new();
        table.insert("id".into(), toml::Value::String(id.clone()));
        table.insert(
            "common_name".into(),
            toml::Value::String(ca.subject.common_name.clone()),
        );
        if !ca.subject.organizations.is_empty() {
            table.insert("organizations".into(), strings(&ca.subject.organizations));
        }
        table.insert("cert".into(), toml::Value::String(format!("pki/{id}.crt")));
        table.insert("key".into(), toml::Value::String(format!("pki/{id}.key")));
        let c = AddedCa {
            id: id.clone(),
            file: cert.clone(),
            cert_abs: dir.join(cert).display().to_string(),
            key_abs: dir.join(key).display().to_string(),
            table,
        };
        add_ca(t, &c);
        cas.push(c);
        id
    };
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base
        .strip_suffix(".pem")
        .or_else(|| base.strip_suffix(".crt"))
        .unwrap_or(base);
    let mut id = id_of(stem);
    if id.is_empty() || taken.contains(&id) {
        id = format!("{}-cert", id_of(&format!("{issuer}-{stem}")));
    }
    if taken.contains(&id) {
        return Ok(None);
    }
    let server = pc
        .ext_key_usage
        .contains(&crate::x509::ExtUsage::ServerAuth);
    let client = pc
        .ext_key_usage
        .contains(&crate::x509::ExtUsage::ClientAuth);
    let role = match (server, client) {
        (true, true) => "peer",
        (false, true) => "client",
        _ => "server",
    };
    let cp_ips: BTreeSet<std::net::IpAddr> =
        plan.spec.control_plane.iter().map(|n| n.address).collect();
    let fan_out = if pc.ip_sans.iter().any(|i| cp_ips.contains(i)) {
        "control-plane"
    } else {
        "cluster"
    };
    let sans: Vec<String> = pc
        .dns_sans
        .iter()
        .map(|d| format!("dns:{d}"))
        .chain(pc.ip_sans.iter().map(|i| format!("ip:{i}")))
        .collect();
    let mut leaf = toml::Table::new();
    leaf.insert("id".into(), toml::Value::String(id.clone()));
    leaf.insert("issuer".into(), toml::Value::String(issuer));
    leaf.insert("role".into(), toml::Value::String(role.into()));
    leaf.insert("fan_out".into(), toml::Value::String(fan_out.into()));
    leaf.insert(
        "common_name".into(),
        toml::Value::String(pc.subject.common_name.clone()),
    );
    if !pc.subject.organizations.is_empty() {
        leaf.insert("organizations".into(), strings(&pc.subject.organizations));
    }
    if !sans.is_empty() {
        leaf.insert("sans".into(), strings(&sans));
    }
    if !pc.ext_key_usage.is_empty() {
        leaf.insert(
            "ext_key_usage".into(),
            toml::Value::Array(
                pc.ext_key_usage
                    .iter()
                    .map(|u| toml::Value::String(u.as_str().into()))
                    .collect(),
            ),
        );
    }
    leaf.insert("cert".into(), toml::Value::String(format!("pki/{id}.crt")));
    leaf.insert("key".into(), toml::Value::String(format!("pki/{id}.key")));
    if let Some(l) = leaves(t) {
        l.push(toml::Value::Table(leaf.clone()));
    }
    Ok(Some(Added { id, leaf, cas }))
}

/// The leaf fields `fit` copies from a certificate.
const COPIED: [&str; 4] = ["common_name", "organizations", "sans", "ext_key_usage"];

/// Error findings of a plan of `t`, as (code, template).
fn plan_errors(
    t: &toml::Table,
    spec: &ClusterSpec,
    at: &Path,
    existing: &[crate::spec::ExistingCaSpec],
) -> Result<BTreeSet<(Code, String)>, crate::Error> {
    let plan = crate::Plan::build(spec.clone(), profile_of(t, at)?, existing, false)?;
    Ok(plan
        .report
        .findings
        .iter()
        .filter(|f| f.severity == crate::validate::Severity::Error)
        .flat_map(|f| {
            f.nodes
                .iter()
                .map(|n| (f.code, template_of(n).to_owned()))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// The copied templates that bring errors into the plan (errors the preset
/// itself, `base`, does not have), each with the fewest of its copied
/// fields that, set back to the preset's value, clear them.
fn mistakes(
    t: &toml::Table,
    base: &toml::Table,
    overridden: &BTreeSet<String>,
    spec: &ClusterSpec,
    at: &Path,
    existing: &[crate::spec::ExistingCaSpec],
) -> Result<Vec<Mistake>, crate::Error> {
    let before = plan_errors(base, spec, at, existing)?;
    let now = plan_errors(t, spec, at, existing)?;
    let mut by_template: BTreeMap<String, BTreeSet<Code>> = BTreeMap::new();
    for (code, n) in now.difference(&before) {
        if overridden.contains(n) {
            by_template.entry(n.clone()).or_default().insert(*code);
        }
    }
    let base_leaf = |id: &str| -> Option<toml::Table> {
        base.get("leaf")
            .and_then(toml::Value::as_array)?
            .iter()
            .filter_map(toml::Value::as_table)
            .find(|l| l.get("id").and_then(toml::Value::as_str) == Some(id))
            .cloned()
    };
    let mut out = Vec::new();
    for (id, codes) in by_template {
        let (Some(orig), Some(cur)) = (base_leaf(&id), leaf_mut(&mut t.clone(), &id).cloned())
        else {
            continue;
        };
        let differing: Vec<&str> = COPIED
            .iter()
            .copied()
            .filter(|k| orig.get(*k) != cur.get(*k))
            .collect();
        let own = |set: &BTreeSet<(Code, String)>| -> BTreeSet<Code> {
            set.iter()
                .filter(|(c, n)| *n == id && codes.contains(c))
                .map(|(c, _)| *c)
                .collect()
        };
        // kpki's value for a field: the preset's; for the SANs first the
        // copied ones with the preset's rules added (the directory's own
        // names are kept), then the preset's alone.
        let union = match (cur.get("sans"), orig.get("sans")) {
            (Some(toml::Value::Array(c)), Some(toml::Value::Array(o))) => {
                // (Less the names no client ever matches: N006.)
                let mut u: Vec<toml::Value> = c
                    .iter()
                    .filter(|v| {
                        v.as_str()
                            .and_then(|s| s.strip_prefix("dns:"))
                            .is_none_or(|d| crate::x509::DnsName::parse(d).is_ok())
                    })
                    .cloned()
                    .collect();
                u.extend(o.iter().filter(|v| !c.contains(v)).cloned());
                Some(toml::Value::Array(u))
            }
            _ => orig.get("sans").cloned(),
        };
        let mut found = None;
        for sans in [union, orig.get("sans").cloned()] {
            let value = |k: &str| -> Option<toml::Value> {
                if k == "sans" {
                    sans.clone()
                } else {
                    orig.get(k).cloned()
                }
            };
            let with = |fields: &[&str]| -> toml::Table {
                let mut trial = t.clone();
                if let Some(l) = leaf_mut(&mut trial, &id) {
                    for k in fields {
                        match value(k) {
                            Some(v) => {
                                l.insert((*k).into(), v);
                            }
                            None => {
                                l.remove(*k);
                            }
                        }
                    }
                }
                trial
            };
            // The fields whose own fix clears some of the template's errors.
            let mut faulty: Vec<&str> = Vec::new();
            for k in &differing {
                let left = own(&plan_errors(&with(&[k]), spec, at, existing)?);
                if left.len() < codes.len() {
                    faulty.push(k);
                }
            }
            if faulty.is_empty() {
                faulty.clone_from(&differing);
            }
            if own(&plan_errors(&with(&faulty), spec, at, existing)?).is_empty() {
                found = Some(
                    faulty
                        .iter()
                        .map(|k| ((*k).to_owned(), value(k)))
                        .collect::<Vec<_>>(),
                );
                break;
            }
        }
        let fix = found.unwrap_or_else(|| {
            differing
                .iter()
                .map(|k| ((*k).to_owned(), orig.get(*k).cloned()))
                .collect()
        });
        out.push(Mistake {
            id: id.clone(),
            codes,
            fix,
        });
    }
    Ok(out)
}

fn leaves(t: &mut toml::Table) -> Option<&mut Vec<toml::Value>> {
    t.get_mut("leaf").and_then(toml::Value::as_array_mut)
}

pub(super) fn leaf_mut<'a>(t: &'a mut toml::Table, id: &str) -> Option<&'a mut toml::Table> {
    leaves(t)?
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|l| l.get("id").and_then(toml::Value::as_str) == Some(id))
}

fn template_of(id: &str) -> &str {
    id.split('@').next().unwrap_or(id)
}

/// Removes template `id` (a leaf, keypair or kubeconfig), the kubeconfigs
/// whose client it is and the bindings that name it. What was done, if
/// it was there.
/// A missing kubeconfig whose client certificate lives only inside it is
/// removed alone, and that certificate given files of its own (the
/// directory may hold it as a PEM pair): the next round tells.
fn drop_template(t: &mut toml::Table, id: &str) -> Option<&'static str> {
    let client = t
        .get("kubeconfig")
        .and_then(toml::Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|k| k.get("id").and_then(toml::Value::as_str) == Some(id))
        })
        .and_then(|k| k.get("client").and_then(toml::Value::as_str))
        .map(str::to_owned);
    if let Some(client) = client
        && let Some(l) = leaf_mut(t, &client)
        && !l.contains_key("cert")
    {
        l.insert(
            "cert".into(),
            toml::Value::String(format!("pki/{client}.crt")),
        );
        l.insert(
            "key".into(),
            toml::Value::String(format!("pki/{client}.key")),
        );
        if let Some(arr) = t.get_mut("kubeconfig").and_then(toml::Value::as_array_mut) {
            arr.retain(|v| v.get("id").and_then(toml::Value::as_str) != Some(id));
        }
        return Some(
            "kubeconfig dropped (the directory has none); its client certificate kept, as files of its own",
        );
    }
    let mut removed = false;
    for key in ["leaf", "keypair", "kubeconfig"] {
        if let Some(arr) = t.get_mut(key).and_then(toml::Value::as_array_mut) {
            let before = arr.len();
            arr.retain(|v| {
                let own = v.get("id").and_then(toml::Value::as_str) == Some(id);
                let client = key == "kubeconfig"
                    && v.get("client").and_then(toml::Value::as_str) == Some(id);
                !(own || client)
            });
            removed |= arr.len() != before;
        }
    }
    unbind(t, id);
    removed.then_some("dropped (the directory has none)")
}

/// Removes the bindings that name `id`.
fn unbind(t: &mut toml::Table, id: &str) {
    if let Some(b) = t.get_mut("bindings").and_then(toml::Value::as_table_mut) {
        for (_, comp) in b.iter_mut() {
            if let Some(c) = comp.as_table_mut() {
                c.retain(|_, v| v.as_str() != Some(id));
            }
        }
        b.retain(|_, v| v.as_table().is_none_or(|c| !c.is_empty()));
    }
}

/// Replaces CA `from` by CA `to` wherever it is named, and removes it.
fn merge_ca(t: &mut toml::Table, from: &str, to: &str) {
    if let Some(a) = t.get_mut("ca").and_then(toml::Value::as_array_mut) {
        a.retain(|c| c.get("id").and_then(toml::Value::as_str) != Some(from));
    }
    for (key, field) in [("leaf", "issuer"), ("kubeconfig", "ca"), ("ca", "issuer")] {
        if let Some(a) = t.get_mut(key).and_then(toml::Value::as_array_mut) {
            for e in a.iter_mut().filter_map(toml::Value::as_table_mut) {
                if e.get(field).and_then(toml::Value::as_str) == Some(from) {
                    e.insert(field.into(), toml::Value::String(to.into()));
                }
            }
        }
    }
    if let Some(b) = t.get_mut("bindings").and_then(toml::Value::as_table_mut) {
        for (_, comp) in b.iter_mut() {
            if let Some(c) = comp.as_table_mut() {
                for (_, v) in c.iter_mut() {
                    if v.as_str() == Some(from) {
                        *v = toml::Value::String(to.into());
                    }
                }
            }
        }
    }
}

fn profile_of(t: &toml::Table, at: &Path) -> Result<Profile, crate::Error> {
    let text = toml::to_string(t).map_err(|e| crate::Error::Io {
        path: at.to_path_buf(),
        message: format!("profile: {e}"),
    })?;
    Profile::parse(&text, at).map_err(crate::Error::Profile)
}

fn instance<'g>(
    g: &'g CertGraph,
    template: &str,
    node: Option<&crate::x509::NodeName>,
) -> Option<&'g CertNode> {
    g.certs()
        .map(|(_, c)| c)
        .find(|c| c.template == template && c.node.as_ref() == node)
}

fn san_strings(c: &CertNode) -> BTreeSet<String> {
    c.sans
        .dns
        .iter()
        .map(|d| format!("dns:{d}"))
        .chain(c.sans.ip.iter().map(|i| format!("ip:{i}")))
        .collect()
}

/// The SAN rules (and literal names) that give `seen` its SANs.
fn sans_for(
    t: &toml::Table,
    spec: &ClusterSpec,
    at: &Path,
    seen: &CertNode,
) -> Result<Vec<String>, crate::Error> {
    let want = san_strings(seen);
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut rules = Vec::new();
    for rule in SHARED_RULES.iter().chain(NODE_RULES.iter()) {
        let mut trial = t.clone();
        let Some(l) = leaf_mut(&mut trial, &seen.template) else {
            continue;
        };
        l.insert(
            "sans".into(),
            toml::Value::Array(vec![toml::Value::String((*rule).into())]),
        );
        let Ok(p) = profile_of(&trial, at) else {
            continue;
        };
        let Ok(g) = expand(spec, &p) else { continue };
        let Some(c) = instance(&g, &seen.template, seen.node.as_ref()) else {
            continue;
        };
        let got = san_strings(c);
        if !got.is_empty() && got.is_subset(&want) && !got.is_subset(&covered) {
            covered.extend(got);
            rules.push((*rule).to_owned());
        }
    }
    rules.extend(want.difference(&covered).cloned());
    Ok(rules)
}

/// The preset `name` fitted to the directory `dir` for the spec `spec_text`
/// (at `spec_path`): templates the directory lacks dropped, the others'
/// subject, SANs and extended key usage set to what it holds, except where
/// that would make the plan fail (the directory's mistake is not copied).
pub(super) fn fit(
    dir: &Path,
    name: &str,
    spec_text: &str,
    spec_path: &Path,
) -> Result<Option<Fitted>, crate::Error> {
    let Some((_, text)) = crate::profile::PRESETS.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    let Ok(preset) = text.parse::<toml::Table>() else {
        return Ok(None);
    };
    let (mut spec, mut existing) =
        ClusterSpec::parse_with_existing(spec_text, spec_path).map_err(crate::Error::Spec)?;
    let existing_before = existing.len();
    // (A CA whose key is absent is planned from its certificate: the
    // comparison signs nothing.)
    let mut t = preset.clone();
    let mut changes = Vec::new();
    // One CA signs everything (a single cfssl CA): the preset's other CAs
    // are that one (their leaves, kubeconfigs and trust bindings).
    if let [only] = existing.as_slice() {
        let others: Vec<String> = t
            .get("ca")
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("id").and_then(toml::Value::as_str))
                    .filter(|id| *id != only.id)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for other in &others {
            merge_ca(&mut t, other, &only.id);
            changes.push(format!(
                "{other}: merged into {} (the directory's only CA)",
                only.id
            ));
        }
    }
    // The preset with only the drops: errors it has are not the overrides'.
    let mut base_t = t.clone();
    let mut fitted = Fitted {
        table: toml::Table::new(),
        changes,
        mistakes: Vec::new(),
        spec_extra: String::new(),
    };
    let mut unplanned: BTreeSet<String> = BTreeSet::new();
    let mut narrowed: BTreeSet<String> = BTreeSet::new();
    let mut overridden: BTreeSet<String> = BTreeSet::new();
    for _ in 0..8 {
        let profile = profile_of(&t, spec_path)?;
        let plan = crate::Plan::build(spec.clone(), profile, &existing, false)?;
        let rep = crate::observe::check(dir, Some(&plan), None, &Options::default())?;
        let mut changed = false;
        // CAs of the preset the directory lacks first (their leaves are
        // recognised again under the CA they merge into, before any drop).
        let mut merged = false;
        for f in rep.report.findings.iter().filter(|f| f.code == Code::D001) {
            let Some(id) = f.nodes.first() else { continue };
            let tid = template_of(id).to_owned();
            // A CA of the preset the directory lacks: its certificates
            // are signed by the directory's main CA (the adopted one
            // that signs the most).
            let is_ca = t
                .get("ca")
                .and_then(toml::Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|c| c.get("id").and_then(toml::Value::as_str) == Some(tid.as_str()))
                });
            if is_ca && !existing.iter().any(|e| e.id == tid) {
                let g = &rep.observation.graph;
                let main = existing
                    .iter()
                    .filter_map(|e| {
                        let n = g.find(&e.id)?;
                        let signed = g
                            .certs()
                            .filter(|(_, c)| {
                                !c.is_ca && c.issuer == crate::graph::IssuerRef::Node(n)
                            })
                            .count();
                        Some((signed, e.id.clone()))
                    })
                    .max_by_key(|(n, id)| (*n, std::cmp::Reverse(id.clone())))
                    .map(|(_, id)| id);
                if let Some(main) = main {
                    merge_ca(&mut t, &tid, &main);
                    merge_ca(&mut base_t, &tid, &main);
                    fitted.changes.push(format!(
                            "{tid}: merged into {main} (the directory has no such CA; {main} signs its certificates)"
                        ));
                    merged = true;
                }
                continue;
            }
        }
        if merged {
            continue;
        }
        for f in &rep.report.findings {
            let Some(id) = f.nodes.first() else { continue };
            let tid = template_of(id).to_owned();
            if f.code == Code::D001 {
                if narrowed.contains(&tid) {
                    continue;
                }

                // A kubelet certificate the directory has for some nodes
                // only (workers, not the control plane): the fan-out
                // narrowed, not the template dropped.
                let present = rep
                    .observation
                    .graph
                    .certs()
                    .any(|(_, c)| c.template == tid);
                let on_cp = id
                    .split_once('@')
                    .map(|(_, n)| spec.control_plane.iter().any(|x| x.name.as_str() == n));
                if present && let Some(on_cp) = on_cp {
                    let to = if on_cp { "worker" } else { "control-plane" };
                    let mut done = false;
                    for table in [&mut t, &mut base_t] {
                        if let Some(l) = leaf_mut(table, &tid)
                            && l.get("fan_out").and_then(toml::Value::as_str) == Some("kubelet")
                        {
                            l.insert("fan_out".into(), toml::Value::String(to.into()));
                            done = true;
                            // A kubelet flag naming it would want it on
                            // every node that runs a kubelet: unbound.
                            unbind(table, &tid);
                        }
                    }
                    if done {
                        narrowed.insert(tid.clone());
                        fitted.changes.push(format!(
                            "{tid}: fan_out = \"{to}\" (the directory has it for those nodes only)"
                        ));
                        changed = true;
                        continue;
                    }
                }
                if let Some(what) = drop_template(&mut t, &tid) {
                    drop_template(&mut base_t, &tid);
                    fitted.changes.push(format!("{tid}: {what}"));
                    changed = true;
                }
                continue;
            }
            if f.code != Code::D003 {
                continue;
            }
            let Some(seen) = rep
                .observation
                .graph
                .find(id)
                .and_then(|i| rep.observation.graph.cert(i))
            else {
                continue;
            };
            let sans = sans_for(&t, &spec, spec_path, seen)?;
            let node = seen.node.as_ref().map(|n| n.as_str().to_owned());
            let Some(l) = leaf_mut(&mut t, &tid) else {
                continue;
            };
            let old = l.clone();
            let cn = match &node {
                Some(n) if seen.subject.common_name.contains(n.as_str()) => {
                    seen.subject.common_name.replace(n.as_str(), "{node}")
                }
                _ => seen.subject.common_name.clone(),
            };
            l.insert("common_name".into(), toml::Value::String(cn));
            l.insert(
                "organizations".into(),
                toml::Value::Array(
                    seen.subject
                        .organizations
                        .iter()
                        .map(|o| toml::Value::String(o.clone()))
                        .collect(),
                ),
            );
            l.insert(
                "sans".into(),
                toml::Value::Array(sans.into_iter().map(toml::Value::String).collect()),
            );
            if !seen.usage.ext_any && !seen.usage.ext.is_empty() {
                l.insert(
                    "ext_key_usage".into(),
                    toml::Value::Array(
                        seen.usage
                            .ext
                            .iter()
                            .map(|u| toml::Value::String(u.as_str().into()))
                            .collect(),
                    ),
                );
            }
            if *l != old {
                changed = true;
            }
            if overridden.insert(tid.clone()) {
                fitted.changes.push(format!(
                    "{tid}: subject, SANs and usages as in {}",
                    seen.cert_path.as_deref().unwrap_or(id)
                ));
            }
        }
        // Once the preset's templates are settled:
        if !changed {
            // Certificates no template fits (a role the preset does not model,
            // signed by a CA it lacks): a leaf template copied from each, and a
            // CA template (and `[[existing_ca]]`) for a CA the preset lacks.
            for f in rep.report.findings.iter().filter(|f| f.code == Code::D002) {
                let Some(file) = f.nodes.first() else {
                    continue;
                };
                if !unplanned.insert(file.clone()) {
                    continue;
                }
                if let Some(added) = add_unplanned(dir, file, &rep.observation, &plan, &mut t)? {
                    for c in &added.cas {
                        add_ca(&mut base_t, c);
                        let _ = write!(
                            fitted.spec_extra,
                            "\n[[existing_ca]]\nid = {}\ncert = {}\nkey = {}\n",
                            super::derive::quote(&c.id),
                            super::derive::quote(&c.cert_abs),
                            super::derive::quote(&c.key_abs)
                        );
                        fitted.changes.push(format!(
                            "{}: a CA the preset lacks, as in {} (adopted)",
                            c.id, c.file
                        ));
                    }
                    if let Some(l) = leaves(&mut base_t) {
                        l.push(toml::Value::Table(added.leaf.clone()));
                    }
                    fitted.changes.push(format!(
                        "{}: a certificate the preset lacks, as in {file}",
                        added.id
                    ));
                    changed = true;
                }
            }
            let with_cas = format!("{spec_text}{}", fitted.spec_extra);
            if existing.len()
                != existing_before + fitted.spec_extra.matches("[[existing_ca]]").count()
            {
                (spec, existing) = ClusterSpec::parse_with_existing(&with_cas, spec_path)
                    .map_err(crate::Error::Spec)?;
            }
        }
        if !changed {
            break;
        }
    }
    fitted.mistakes = mistakes(&t, &base_t, &overridden, &spec, spec_path, &existing)?;
    if t == preset {
        return Ok(None);
    }
    t.insert(
        "name".into(),
        toml::Value::String(format!("{name}-adopted")),
    );
    t.insert(
        "description".into(),
        toml::Value::String(format!(
            "preset {name}, fitted to the certificates of {}",
            dir.display()
        )),
    );
    fitted.table = t;
    Ok(Some(fitted))
}
