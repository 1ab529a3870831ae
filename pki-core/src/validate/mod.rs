//! Validation: every rule runs over a [`CertGraph`], planned or read back
//! from disk, and returns *all* findings, each with a stable code.

mod code;
pub(crate) mod rules;

use serde::Serialize;

use crate::graph::{CertGraph, NodeId};
pub use code::{Code, Severity, When, rules_markdown};

/// One problem found in a graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub code: Code,
    /// How bad.
    pub severity: Severity,
    /// The ids of the graph nodes involved.
    pub nodes: Vec<String>,
    /// What will break, with the run-time error the user would otherwise see.
    pub message: String,
    /// How to fix it.
    pub hint: String,
    /// The files involved (check mode), relative to the checked directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Options for rules that depend on the clock (check mode).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The time to check validity against; None at plan time.
    pub now: Option<time::OffsetDateTime>,
    /// Rule C004's window.
    pub within: time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            now: None,
            within: time::Duration::days(30),
        }
    }
}

/// The findings of one validation, errors first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Findings, sorted by severity, then code, then nodes.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The findings with a given code.
    pub fn with_code(&self, code: Code) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.code == code)
    }

    /// Adds findings decided outside the graph rules (the deployer checks),
    /// keeping the order of [`validate_with`].
    pub(crate) fn add(&mut self, more: Vec<Finding>) {
        self.findings.extend(more);
        sort(&mut self.findings);
    }

    /// Counts by severity: (errors, warnings, infos).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s| self.findings.iter().filter(|f| f.severity == s).count();
        (n(Severity::Error), n(Severity::Warning), n(Severity::Info))
    }
}

/// Collects findings for the rules.
pub(crate) struct Sink<'g> {
    g: &'g CertGraph,
    out: Vec<Finding>,
}

impl<'g> Sink<'g> {
    pub(crate) fn push(
        &mut self,
        code: Code,
        nodes: &[NodeId],
        message: String,
        hint: impl Into<String>,
    ) {
        self.push_sev(code, code.severity(), nodes, message, hint);
    }

    pub(crate) fn push_sev(
        &mut self,
        code: Code,
        severity: Severity,
        nodes: &[NodeId],
        message: String,
        hint: impl Into<String>,
    ) {
        let mut ids: Vec<String> = Vec::new();
        for n in nodes {
            let id = self.g.id_of(*n);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.out.push(Finding {
            code,
            severity,
            nodes: ids,
            message,
            hint: hint.into(),
            files: Vec::new(),
        });
    }
}

/// Runs every rule at plan time.
pub fn validate(g: &CertGraph) -> Report {
    validate_with(g, &Options::default())
}

/// Runs every rule; clock-dependent ones when `opts.now` is set.
pub fn validate_with(g: &CertGraph, opts: &Options) -> Report {
    let mut sink = Sink { g, out: Vec::new() };
    for rule in rules::RULES {
        rule(g, opts, &mut sink);
    }
    let mut findings = sink.out;
    sort(&mut findings);
    Report { findings }
}

fn sort(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| {
        (a.severity, a.code, &a.nodes, &a.message).cmp(&(b.severity, b.code, &b.nodes, &b.message))
    });
    findings.dedup();
}
