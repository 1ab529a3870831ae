use super::Failure;
use crate::Exit;
use crate::cli::{FlagsArgs, FlagsFormat};
use pki_core::{Component, NodeName};

pub fn run(a: &FlagsArgs) -> Result<Exit, Failure> {
    let component: Component = a.component.parse().map_err(Failure::input)?;
    let plan = super::load_plan(&a.spec, a.out.as_deref())?;
    let all = pki_core::component_flags(&plan);
    let set = match &a.node {
        Some(n) => {
            let node = NodeName::parse(n).map_err(Failure::input)?;
            if !plan.spec.all_nodes().contains_key(&node) {
                return Err(Failure::input(format!(
                    "no node `{n}` in {}",
                    a.spec.display()
                )));
            }
            pki_core::flags_of(&plan, component, &node)
                .ok_or_else(|| Failure::input(format!("{component} does not run on node `{n}`")))?
        }
        None => all
            .into_iter()
            .find(|f| f.component == component)
            .ok_or_else(|| Failure::input(format!("{component} runs on no node of this spec")))?,
    };
    let mut set = set;
    if let Some(root) = &a.root {
        let root = root.display().to_string();
        let re_root = |v: &mut String| {
            if v.starts_with('/') {
                *v = format!("{}{v}", root.trim_end_matches('/'));
            }
        };
        set.flags.values_mut().for_each(re_root);
        for v in set.config.values_mut() {
            if let serde_json::Value::String(s) = v {
                re_root(s);
            }
        }
    }
    match a.format {
        FlagsFormat::Json => crate::out::out!("{}", crate::render::json(&set)?),
        FlagsFormat::Args => {
            for note in &set.notes {
                eprintln!("note: {note}");
            }
            for arg in set.args() {
                crate::out::outln!("{arg}");
            }
        }
    }
    Ok(Exit::Ok)
}
