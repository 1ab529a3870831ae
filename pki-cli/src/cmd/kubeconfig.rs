use super::Failure;
use crate::Exit;
use crate::cli::KubeconfigArgs;
use pki_core::{Part, Plan};

pub fn run(a: &KubeconfigArgs) -> Result<Exit, Failure> {
    let plan = Plan::load(&a.spec)?;
    if let Some(n) = &a.node
        && !plan.spec.all_nodes().keys().any(|k| k.as_str() == n)
    {
        return Err(Failure::input(format!(
            "no node `{n}` in {}",
            a.spec.display()
        )));
    }
    if a.name.trim_end_matches(".conf") == "bootstrap-kubelet" {
        let path = plan.spec.output.dir.join("cluster/bootstrap-kubelet.conf");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::failed(format!(
                "{}: {e} (run `kpki issue --spec {}` first)",
                path.display(),
                a.spec.display()
            ))
        })?;
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
    let path = plan.spec.output.dir.join(&rel);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::failed(format!(
            "{}: {e} (run `kpki issue --spec {}` first)",
            path.display(),
            a.spec.display()
        ))
    })?;
    crate::out::out!("{text}");
    Ok(Exit::Ok)
}
