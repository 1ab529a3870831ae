use std::io::Write;

use super::Failure;
use crate::Exit;
use crate::cli::InitArgs;

/// The starter spec: every field of the contract, commented.
pub const STARTER: &str = include_str!("../../../fixtures/specs/starter.toml");

pub fn run(a: &InitArgs) -> Result<Exit, Failure> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.out);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::input(format!(
                "{} exists; kpki init never overwrites (use --out)",
                a.out.display()
            )));
        }
        Err(e) => return Err(Failure::failed(format!("{}: {e}", a.out.display()))),
    };
    file.write_all(STARTER.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::failed(format!("{}: {e}", a.out.display())))?;
    eprintln!(
        "wrote {}; edit it, then run `kpki plan --spec {}`",
        a.out.display(),
        a.out.display()
    );
    Ok(Exit::Ok)
}
