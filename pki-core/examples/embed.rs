//! Embedding kpki in an installer: build a spec in code, plan it, look at
//! the findings, issue into memory and read a component's flags.
//!
//! ```sh
//! cargo run -p pki-core --example embed
//! ```
//!
//! Walked through in `docs/embedding.md`.

use std::path::Path;

use pki_core::{
    ClusterSpec, Component, IssueOptions, MemStore, Part, Plan, Severity, component_flags, issue,
};

/// The cluster, as an installer would render it from its own inventory.
const SPEC: &str = r#"
profile = "kubeadm"

[cluster]
name = "demo"
service_cidr = "10.96.0.0/12"
endpoint = "lb.demo.internal:6443"

[crypto]
algorithm = "ecdsa-p256"

[[control_plane]]
name = "cp-1"
address = "10.0.0.11"

[[control_plane]]
name = "cp-2"
address = "10.0.0.12"

[[control_plane]]
name = "cp-3"
address = "10.0.0.13"

[[worker]]
name = "worker-1"
address = "10.0.1.21"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Parse and check the spec. The path only names the text in error
    //    messages and anchors relative paths (`output.dir`, a profile file).
    let spec = ClusterSpec::parse(SPEC, Path::new("installer.toml"))?;

    // 2. Plan: load the profile the spec names, expand the graph, validate.
    let plan = Plan::from_spec(spec)?;
    let (errors, warnings, infos) = plan.report.counts();
    println!(
        "findings: {} ({errors} error(s), {warnings} warning(s), {infos} info)",
        plan.report.findings.len()
    );
    for f in &plan.report.findings {
        println!("  {} {:?} {}", f.code, f.severity, f.message);
    }
    if plan
        .report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error)
    {
        return Err("the plan has error findings".into());
    }

    // 3. Every certificate the plan will issue.
    let ids: Vec<&str> = plan.graph.certs().map(|(_, c)| c.id.as_str()).collect();
    println!("certificates ({}): {}", ids.len(), ids.join(", "));

    // 4. Issue into memory: nothing touches the disk.
    let mut store = MemStore::default();
    let report = issue(&plan, &mut store, &IssueOptions::default())?;
    println!(
        "issued {} certificate(s)/keypair(s) into {} file(s)",
        report.actions.len(),
        store.files.len()
    );

    // 5. Where the first control-plane node's apiserver certificate went.
    let apiserver = plan
        .graph
        .find("apiserver@cp-1")
        .and_then(|id| plan.layout.part(id, Part::Cert))
        .ok_or("the plan has no apiserver@cp-1 certificate")?;
    println!(
        "apiserver cert: installed at {}, in the store at {}",
        apiserver.install_path,
        apiserver.output_paths().join(", ")
    );
    if let Some(path) = &apiserver.cluster_path
        && let Some((pem, _mode)) = store.files.get(path)
    {
        println!("  {} bytes of PEM", pem.len());
    }

    // 6. The kube-apiserver flags of the first control-plane node.
    let first = plan
        .spec
        .control_plane
        .first()
        .ok_or("no control-plane node")?;
    let flags = component_flags(&plan)
        .into_iter()
        .find(|f| f.component == Component::KubeApiserver && f.node == first.name)
        .ok_or("kube-apiserver has no flags")?;
    println!("kube-apiserver on {}:", flags.node);
    for arg in flags.args() {
        println!("  {arg}");
    }
    Ok(())
}
