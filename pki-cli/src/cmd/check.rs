use super::Failure;
use crate::Exit;
use crate::cli::{CheckArgs, CheckFormat};
use pki_core::{IssuerRef, Lifetime, Node, Options, Plan};

pub fn run(a: &CheckArgs) -> Result<Exit, Failure> {
    let within: Lifetime = a
        .within
        .parse()
        .map_err(|e| Failure::input(format!("--within: {e}")))?;
    let plan = a.spec.as_deref().map(Plan::load).transpose()?;
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
    let result = pki_core::check(&a.dir, plan.as_ref(), node.as_ref(), &opts)?;
    let obs = &result.observation;
    match a.format {
        CheckFormat::Json => {
            let layout = pki_core::Layout::default();
            let mut doc = pki_core::document(&obs.graph, &layout, &result.report, now);
            for c in &mut doc.certificates {
                if let Some(id) = obs.graph.find(&c.id)
                    && let Some(f) = obs.files.get(&id)
                {
                    c.files = vec![f.clone()];
                }
            }
            crate::out::out!("{}", crate::render::json(&doc)?);
        }
        CheckFormat::Text => crate::out::out!("{}", table(&a.dir, &result, now)),
    }
    Ok(if result.report.has_errors() {
        Exit::Failed
    } else {
        Exit::Ok
    })
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

fn table(dir: &std::path::Path, r: &pki_core::CheckReport, now: time::OffsetDateTime) -> String {
    let obs = &r.observation;
    let g = &obs.graph;
    let mut rows = vec![[
        "CERTIFICATE".to_owned(),
        "FILE".into(),
        "ROLE".into(),
        "ISSUER".into(),
        "EXPIRES".into(),
        "RESIDUAL".into(),
        "FINDINGS".into(),
    ]];
    for (id, n) in g.iter() {
        let Node::Cert(c) = n else { continue };
        let codes: Vec<String> = r
            .report
            .findings
            .iter()
            .filter(|f| f.nodes.first() == Some(&c.id))
            .map(|f| f.code.to_string())
            .collect();
        let issuer = match &c.issuer {
            IssuerRef::SelfSigned => "(self)".to_owned(),
            IssuerRef::Node(i) => g.id_of(*i),
            IssuerRef::Unknown(s) => s.clone(),
        };
        rows.push([
            c.id.clone(),
            obs.files.get(&id).cloned().unwrap_or_default(),
            c.role.map_or("ca", |r| r.as_str()).to_owned(),
            issuer,
            c.validity
                .not_after
                .map(|t| t.date().to_string())
                .unwrap_or_default(),
            residual(now, c.validity.not_after),
            codes.join(","),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let kind = match &obs.kind {
        pki_core::DirKind::Kpki { .. } => "kpki output".to_owned(),
        pki_core::DirKind::Kubeadm { pki_only: false } => {
            "kubeadm layout (/etc/kubernetes)".to_owned()
        }
        pki_core::DirKind::Kubeadm { pki_only: true } => "kubeadm layout (pki/)".to_owned(),
        pki_core::DirKind::Cfssl => "cfssl layout".to_owned(),
    };
    let mut out = format!(
        "{} ({kind}, profile {})\n\n",
        dir.display(),
        obs.profile.name
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&crate::render::findings(&r.report));
    out
}
