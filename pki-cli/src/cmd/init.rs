use std::io::Write;

use super::Failure;
use crate::Exit;
use crate::cli::InitArgs;

/// The starter spec: every field of the contract, commented.
pub const STARTER: &str = include_str!("../../../fixtures/specs/starter.toml");

pub fn run(a: &InitArgs) -> Result<Exit, Failure> {
    if let Some(dir) = &a.from {
        return adopt(dir, &a.out, a.fix);
    }
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

/// Creates `path` with `text`; never overwrites.
fn create(path: &std::path::Path, text: &str) -> Result<(), Failure> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::input(format!(
                "{} exists; kpki init never overwrites (use --out)",
                path.display()
            )));
        }
        Err(e) => return Err(Failure::failed(format!("{}: {e}", path.display()))),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
}

/// `kpki init --from DIR [--fix]`: a spec that describes DIR, its CAs
/// adopted (with `fix`, kpki's values for DIR's mistakes).
fn adopt(dir: &std::path::Path, out: &std::path::Path, fix: bool) -> Result<Exit, Failure> {
    if out.exists() {
        return Err(Failure::input(format!(
            "{} exists; kpki init never overwrites (use --out)",
            out.display()
        )));
    }
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| Failure::input(format!("{}: {e}", dir.display())))?;
    let obs = pki_core::read_dir(&dir, None, None)?;
    let adoption = pki_core::adopt_with(&obs, &dir, out, pki_core::AdoptOptions { fix })?;
    for line in &adoption.found {
        eprintln!("found:   {line}");
    }
    for line in &adoption.assumed {
        eprintln!("assumed: {line}");
    }
    for p in &obs.problems {
        eprintln!("warning: {}: {} (not adopted)", p.path, p.message);
    }
    for line in &adoption.warnings {
        eprintln!("warning: {line}");
    }
    for line in &adoption.fixed {
        eprintln!("fixed:   {line}");
    }
    if let Some((name, text)) = &adoption.profile {
        let path = out.parent().unwrap_or(std::path::Path::new(".")).join(name);
        create(&path, text)?;
        eprintln!("wrote {}", path.display());
    }
    create(out, &adoption.spec)?;
    let out_path = out;
    let (dir, out) = (dir.display(), out.display());
    if adoption.mistakes > 0 {
        eprintln!(
            "wrote {out}; check it with `kpki check {dir} --spec {out}`; it copies {} of the directory's mistakes (warnings above, marked in the profile file): fix them, then `kpki issue --spec {out}`",
            adoption.mistakes,
        );
        let profile = adoption
            .profile
            .as_ref()
            .map(|(name, _)| {
                format!(
                    " {}",
                    out_path
                        .parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join(name)
                        .display()
                )
            })
            .unwrap_or_default();
        eprintln!(
            "or, in one step, with kpki's values for them: `rm {out}{profile} && kpki init --from {dir} --fix --out {out}`"
        );
    } else if !adoption.fixed.is_empty() {
        eprintln!(
            "wrote {out}; it has kpki's values for {} of the directory's mistakes (`fixed:` above, marked FIXED in the profile file; `kpki check {dir} --spec {out}` reports their certificates as D003); `kpki plan --spec {out}`, then `kpki issue --spec {out}`",
            adoption.fixed.len(),
        );
    } else {
        eprintln!(
            "wrote {out}; check it with `kpki check {dir} --spec {out}`, then `kpki issue --spec {out}`"
        );
    }
    Ok(Exit::Ok)
}
