//! Renderers for `plan` (and `check`).

pub mod dot;
pub mod mermaid;
pub mod tree;

use crate::cmd::Failure;

/// Pretty JSON with a trailing newline.
pub fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Failure::failed(format!("cannot encode JSON: {e}")))
}

/// The findings block shared by the text renderers: errors first.
pub fn findings(report: &pki_core::Report) -> String {
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("findings: none\n");
        return out;
    }
    out.push_str("findings:\n");
    for f in &report.findings {
        out.push_str(&format!(
            "  {:<7} {} [{}] {}\n",
            f.severity.as_str(),
            f.code,
            f.nodes.join(", "),
            f.message
        ));
        if !f.files.is_empty() {
            out.push_str(&format!("          files: {}\n", f.files.join(", ")));
        }
        out.push_str(&format!("          hint: {}\n", f.hint));
    }
    let (e, w, i) = report.counts();
    out.push_str(&format!("{e} error(s), {w} warning(s), {i} info\n"));
    out
}
