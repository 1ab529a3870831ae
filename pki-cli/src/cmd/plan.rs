use super::{Failure, print_spec_warnings};
use crate::Exit;
use crate::cli::{PlanArgs, PlanFormat};
use crate::render;

pub fn run(a: &PlanArgs) -> Result<Exit, Failure> {
    let plan = super::load_plan(a.spec(), None)?;
    print_spec_warnings(&plan.spec);
    // The rotation in progress in the output directory, if any.
    let rotation = super::recorded_members(&plan.spec.output.dir).and_then(|m| m.rotation);
    let mut out = match a.format {
        PlanFormat::Tree => render::tree::plan(&plan, render::width()),
        PlanFormat::Json => {
            let mut doc = pki_core::document(
                &plan.graph,
                &plan.layout,
                &plan.report,
                time::OffsetDateTime::now_utc(),
            );
            doc.rotation = rotation.clone();
            render::json(&doc)?
        }
        PlanFormat::Dot => render::dot::plan(&plan),
        PlanFormat::Mermaid => render::mermaid::plan(&plan),
    };
    if a.format == PlanFormat::Tree
        && let Some(r) = &rotation
    {
        out.push_str(&super::rotation_line(r));
    }
    crate::out::out!("{out}");
    Ok(if plan.report.has_errors() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}
