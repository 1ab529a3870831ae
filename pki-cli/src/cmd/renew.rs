use super::Failure;
use crate::Exit;
use crate::cli::RenewArgs;
use pki_core::{IssueOptions, Lifetime, RenewPolicy};

pub fn run(a: &RenewArgs) -> Result<Exit, Failure> {
    let window = if a.all {
        // Every leaf: a window longer than any lifetime.
        time::Duration::days(200 * 365)
    } else {
        a.within
            .parse::<Lifetime>()
            .map_err(|e| Failure::input(format!("--within: {e}")))?
            .duration()
    };
    let opts = IssueOptions {
        dry_run: a.dry_run,
        renew: RenewPolicy::Within {
            window,
            new_keys: a.new_keys,
        },
        ..IssueOptions::default()
    };
    super::issue::execute(a.spec(), a.out.as_deref(), &opts)
}
