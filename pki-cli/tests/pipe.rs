//! A closed standard output (`kpki plan | head -1`) ends every command
//! quietly: exit status 0, no panic, no backtrace, no error message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::process::{Command, Stdio};

use common::root;

/// Runs kpki with its stdout a pipe whose reading end is closed before the
/// command writes anything, so that its first write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    // The reading end is gone before kpki starts: its first write gets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kpki"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_ends_quietly_when_the_reader_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out_s = out.to_str().unwrap();
    let spec = "fixtures/specs/example.toml";
    let issued = Command::new(env!("CARGO_BIN_EXE_kpki"))
        .args(["issue", "--spec", spec, "--out", out_s])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(issued.status.success(), "{issued:?}");
    let cases: Vec<Vec<&str>> = vec![
        vec!["plan", "--spec", spec],
        vec!["plan", "--spec", spec, "--format", "json"],
        vec!["plan", "--spec", spec, "--format", "dot"],
        vec!["issue", "--spec", spec, "--out", out_s, "--dry-run"],
        vec![
            "renew",
            "--spec",
            spec,
            "--out",
            out_s,
            "--all",
            "--dry-run",
        ],
        vec!["check", out_s],
        vec!["check", out_s, "--format", "json"],
        vec![
            "flags",
            "kube-apiserver",
            "--spec",
            spec,
            "--format",
            "args",
        ],
        vec!["explain", "--all"],
        vec!["man"],
        vec!["completions", "bash"],
    ];
    for args in cases {
        let (code, stderr) = with_closed_stdout(&args);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "kpki {args:?}: {stderr}"
        );
        assert_eq!(code, Some(0), "kpki {args:?} exit status; stderr: {stderr}");
    }
}
