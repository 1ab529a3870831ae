use super::Failure;
use crate::Exit;
use crate::cli::{CheckArgs, CheckFormat};
use pki_core::{IssuerRef, Lifetime, Node, Options, Plan};

pub fn run(a: &CheckArgs) -> Result<Exit, Failure> {
    let within: Lifetime = a
        .within
        .parse()
        .map_err(|e| Failure::input(format!("--within: {e}")))?;
    let plan = a.spec.as_deref().map(Plan::load_for_check).transpose()?;
    let now = time::OffsetDateTime::now_utc();
    let opts = Options {
        now: Some(now),
        within: within.duration(),
    };
    let node = a
        .node
        .as_deref()
        .map(pki_core::NodeName::parse)
        .transpose()
        .map_err(Failure::input)?;
    let result = pki_core::check_with(
        &a.dir,
        plan.as_ref(),
        node.as_ref(),
        &opts,
        a.config_dir.as_deref(),
    )?;
    let obs = &result.observation;
    let rotation = super::recorded_members(&a.dir).and_then(|m| m.rotation);
    match a.format {
        CheckFormat::Json => {
            let layout = pki_core::Layout::default();
            let mut doc = pki_core::document(&obs.graph, &layout, &result.report, now);
            for c in &mut doc.certificates {
                // Every file it was recognised in (copies, bundles, kubeconfigs).
                let mut files: Vec<String> = obs
                    .inventory
                    .iter()
                    .filter(|e| e.roles.contains(&c.id))
                    .map(|e| e.path.clone())
                    .collect();
                if files.is_empty()
                    && let Some(id) = obs.graph.find(&c.id)
                    && let Some(f) = obs.files.get(&id)
                {
                    files.push(f.clone());
                }
                c.files = files;
            }
            doc.rotation = rotation;
            let out = CheckDoc {
                doc,
                directory: DirectoryView {
                    layout: &obs.kind,
                    profile: &obs.profile.name,
                    profile_from: if plan.is_some() {
                        "spec"
                    } else {
                        "fitted by structure"
                    },
                },
                files: &obs.inventory,
                trust: TrustView {
                    header: result.trust.header(),
                    origin: &result.trust,
                },
            };
            crate::out::out!("{}", crate::render::json(&out)?);
        }
        CheckFormat::Text => {
            crate::out::out!("{}", table(&a.dir, &result, now, a.wide));
            if let Some(r) = &rotation {
                crate::out::out!("{}", super::rotation_line(r));
            }
        }
    }
    Ok(if result.report.has_errors() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// The check document: the plan/check shape, plus what directory it was,
/// every file walked, and where trust came from.
#[derive(serde::Serialize)]
struct CheckDoc<'a> {
    #[serde(flatten)]
    doc: pki_core::Document,
    directory: DirectoryView<'a>,
    /// Every file walked, with what it holds and what it was recognised as.
    files: &'a [pki_core::AuditedFile],
    trust: TrustView<'a>,
}

/// The directory checked: its layout and the profile judged against.
#[derive(serde::Serialize)]
struct DirectoryView<'a> {
    layout: &'a pki_core::DirKind,
    profile: &'a str,
    profile_from: &'static str,
}

/// Where trust came from: the components' flags, or the profile.
#[derive(serde::Serialize)]
struct TrustView<'a> {
    header: String,
    #[serde(flatten)]
    origin: &'a pki_core::TrustOrigin,
}

/// Residual time rounded to the nearest unit: years from 365 days on (a
/// fresh 10-year CA reads `10y`), days from one day on, hours below.
pub(crate) fn residual(now: time::OffsetDateTime, t: Option<time::OffsetDateTime>) -> String {
    const DAY: f64 = 86_400.0;
    let Some(t) = t else { return "?".into() };
    let secs = (t - now).as_seconds_f64();
    let days = (secs.abs() / DAY).round();
    if secs < 0.0 {
        if days >= 1.0 {
            format!("expired {days:.0}d ago")
        } else {
            format!("expired {:.0}h ago", (secs.abs() / 3600.0).round())
        }
    } else if days >= 365.0 {
        format!("{:.0}y", (secs / (365.0 * DAY)).round())
    } else if days >= 1.0 {
        format!("{days:.0}d")
    } else {
        format!("{:.0}h", (secs / 3600.0).round())
    }
}

/// The table's width when not `--wide`.
const TABLE_WIDTH: usize = 120;

/// Shortens `s` to `w` characters, keeping its start and end (`cluster/…/ca.crt`).
fn elide(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w || w < 5 {
        return s.to_owned();
    }
    let keep = w - 1;
    let head: String = s.chars().take(keep / 2).collect();
    let tail: String = s.chars().skip(n - (keep - keep / 2)).collect();
    format!("{head}…{tail}")
}

fn table(
    dir: &std::path::Path,
    r: &pki_core::CheckReport,
    now: time::OffsetDateTime,
    wide: bool,
) -> String {
    const COLS: usize = 8;
    let obs = &r.observation;
    let g = &obs.graph;
    let mut rows: Vec<[String; COLS]> = vec![[
        "CERTIFICATE".to_owned(),
        "FILE".into(),
        "ROLE".into(),
        "ISSUER".into(),
        "KEY".into(),
        "EXPIRES".into(),
        "LEFT".into(),
        "FINDINGS".into(),
    ]];
    let codes_of = |id: &str| -> String {
        let mut codes: Vec<String> = r
            .report
            .findings
            .iter()
            .filter(|f| f.nodes.first().is_some_and(|n| n == id))
            .map(|f| f.code.to_string())
            .collect();
        codes.dedup();
        codes.join(",")
    };
    let (mut certs, mut cas, mut keys_ok) = (0usize, 0usize, 0usize);
    let mut soonest: Option<(time::OffsetDateTime, String, String)> = None;
    let mut keypairs = 0usize;
    for (id, n) in g.iter() {
        match n {
            Node::Cert(c) => {
                certs += 1;
                cas += usize::from(c.is_ca);
                let issuer = match &c.issuer {
                    IssuerRef::SelfSigned => "(self)".to_owned(),
                    IssuerRef::Node(i) => g.id_of(*i),
                    IssuerRef::Unknown(s) => s.clone(),
                };
                let mismatch = c.observed.as_ref().is_some_and(|o| o.key_mismatch);
                let file = obs.files.get(&id).cloned().unwrap_or_default();
                // ok: the key beside it (or in its kubeconfig) matches; BAD: it
                // does not; none: no key was found.
                let key_state = if mismatch {
                    "BAD"
                } else if c.key_path.is_some() || file.ends_with(".conf") {
                    keys_ok += 1;
                    "ok"
                } else {
                    "none"
                };
                if let Some(t) = c.validity.not_after
                    && soonest.as_ref().is_none_or(|(s, _, _)| t < *s)
                {
                    soonest = Some((t, c.id.clone(), file.clone()));
                }
                rows.push([
                    c.id.clone(),
                    file,
                    c.role.map_or("ca", |r| r.as_str()).to_owned(),
                    issuer,
                    format!("{} {key_state}", c.key),
                    c.validity
                        .not_after
                        .map(|t| t.date().to_string())
                        .unwrap_or_default(),
                    residual(now, c.validity.not_after),
                    codes_of(&c.id),
                ]);
            }
            Node::KeyPair(k) => {
                keypairs += 1;
                let bad = r
                    .report
                    .findings
                    .iter()
                    .any(|f| f.code == pki_core::Code::T006 && f.nodes.contains(&k.id));
                rows.push([
                    k.id.clone(),
                    format!("{} + {}", k.private_path, k.public_path),
                    "keypair".into(),
                    "-".into(),
                    format!("{} {}", k.key, if bad { "BAD" } else { "ok" }),
                    String::new(),
                    String::new(),
                    codes_of(&k.id),
                ]);
            }
            Node::Kubeconfig(_) => {}
        }
    }
    // Paths share their first directory (`cluster/` in a kpki output):
    // say it once in the header.
    let common = {
        let files: Vec<&str> = rows.iter().skip(1).map(|r| r[1].as_str()).collect();
        let first = files
            .first()
            .and_then(|f| f.split_once('/'))
            .map(|(d, _)| d);
        first
            .filter(|d| files.iter().all(|f| f.starts_with(&format!("{d}/"))))
            .map(|d| format!("{d}/"))
    };
    if let Some(c) = &common {
        for r in rows.iter_mut().skip(1) {
            r[1] = r[1].replace(c.as_str(), "");
        }
    }
    let mut widths: Vec<usize> = (0..COLS)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    if !wide {
        // Shrink the widest of FILE, CERTIFICATE and ISSUER until the table fits.
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (COLS - 1);
        let flexible = [(1usize, 16usize), (0, 14), (3, 12)];
        while total(&widths) > TABLE_WIDTH {
            let Some(&(col, _)) = flexible
                .iter()
                .filter(|(c, min)| widths.get(*c).is_some_and(|w| w > min))
                .max_by_key(|(c, _)| widths.get(*c).copied().unwrap_or(0))
            else {
                break;
            };
            if let Some(w) = widths.get_mut(col) {
                *w -= 1;
            }
        }
    }
    let kind = obs.kind.describe();
    let width = if wide { usize::MAX } else { TABLE_WIDTH };
    let mut out = crate::render::wrap(
        "",
        "    ",
        &format!(
            "{} ({kind}, profile {}){}",
            dir.display(),
            obs.profile.name,
            common
                .as_ref()
                .map(|c| format!("; files under {c}"))
                .unwrap_or_default()
        ),
        width,
    );
    out.push('\n');
    out.push_str(&crate::render::wrap("", "    ", &r.trust.header(), width));
    out.push('\n');
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:<w$}", elide(c, *w)))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&crate::render::wrap(
        "",
        "    ",
        &format!(
            "{certs} certificate(s) ({cas} CA), {keys_ok} with a matching key, {keypairs} \
             keypair(s); KEY: ok = its key matches, BAD = it does not, none = no key found"
        ),
        width,
    ));
    if let Some((t, id, file)) = soonest {
        out.push_str(&format!(
            "soonest expiry: {id} ({file}) on {} ({})\n",
            t.date(),
            residual(now, Some(t))
        ));
    }
    out.push('\n');
    out.push_str(&crate::render::findings_wrapped(&r.report, width));
    out
}
