use super::Failure;
use crate::Exit;
use crate::cli::KubeconfigArgs;
use pki_core::{Part, Plan};

pub fn run(a: &KubeconfigArgs) -> Result<Exit, Failure> {
    let plan = Plan::load(&a.spec)?;
    let out_dir = a
        .out
        .clone()
        .unwrap_or_else(|| plan.spec.output.dir.clone());
    let issue_hint = match &a.out {
        Some(o) => format!(
            "run `kpki issue --spec {} --out {}` first",
            a.spec.display(),
            o.display()
        ),
        None => format!("run `kpki issue --spec {}` first", a.spec.display()),
    };
    if let Some(n) = &a.node
        && !plan.spec.all_nodes().keys().any(|k| k.as_str() == n)
    {
        return Err(Failure::input(format!(
            "no node `{n}` in {}",
            a.spec.display()
        )));
    }
    if a.name.trim_end_matches(".conf") == "bootstrap-kubelet" {
        let path = out_dir.join("cluster/bootstrap-kubelet.conf");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::failed(format!("{}: {e} ({issue_hint})", path.display())))?;
        crate::out::out!("{text}");
        return Ok(Exit::Ok);
    }
    let g = &plan.graph;
    let wanted = a.name.trim_end_matches(".conf");
    let candidates: Vec<_> = g
        .kubeconfigs()
        .filter(|(_, k)| {
            k.template == wanted
                || k.file.trim_end_matches(".conf").rsplit('/').next() == Some(wanted)
        })
        .filter(|(_, k)| match (&a.node, &k.node) {
            (Some(n), Some(kn)) => kn.as_str() == n,
            (Some(_), None) | (None, _) => true,
        })
        .collect();
    let Some((id, _)) = candidates.first() else {
        let names: Vec<_> = plan
            .profile
            .kubeconfigs
            .iter()
            .map(|k| k.id.as_str())
            .collect();
        return Err(Failure::input(format!(
            "no kubeconfig `{}` (this profile has: {})",
            a.name,
            names.join(", ")
        )));
    };
    let entry = plan
        .layout
        .part(*id, Part::Kubeconfig)
        .ok_or_else(|| Failure::failed("the kubeconfig has no file"))?;
    let rel = entry.output_paths().into_iter().next().unwrap_or_default();
    let path = out_dir.join(&rel);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::failed(format!("{}: {e} ({issue_hint})", path.display())))?;
    crate::out::out!("{text}");
    Ok(Exit::Ok)
}
