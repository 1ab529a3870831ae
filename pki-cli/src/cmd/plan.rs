use super::{Failure, print_spec_warnings};
use crate::Exit;
use crate::cli::{PlanArgs, PlanFormat};
use crate::render;

pub fn run(a: &PlanArgs) -> Result<Exit, Failure> {
    let plan = super::load_plan(a.spec(), None)?;
    print_spec_warnings(&plan.spec);
    let out = match a.format {
        PlanFormat::Tree => render::tree::plan(&plan, render::width()),
        PlanFormat::Json => render::json(&pki_core::document(
            &plan.graph,
            &plan.layout,
            &plan.report,
            time::OffsetDateTime::now_utc(),
        ))?,
        PlanFormat::Dot => render::dot::plan(&plan),
        PlanFormat::Mermaid => render::mermaid::plan(&plan),
    };
    crate::out::out!("{out}");
    Ok(if plan.report.has_errors() {
        Exit::Failed
    } else {
        Exit::Ok
    })
}
