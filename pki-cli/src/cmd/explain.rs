use super::Failure;
use crate::Exit;
use crate::cli::ExplainArgs;
use pki_core::Code;

pub fn run(a: &ExplainArgs) -> Result<Exit, Failure> {
    if a.all {
        crate::out::out!("{}", pki_core::rules_markdown());
        return Ok(Exit::Ok);
    }
    let code: Code = a
        .code
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(Failure::input)?;
    crate::out::outln!("{code} ({}): {}\n", code.severity(), code.title());
    crate::out::outln!("{}", code.explain());
    Ok(Exit::Ok)
}
