//! The rotation state machine, transition by transition and refusal by
//! refusal, through the library API on an in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use pki_core::{
    IssueError, IssueOptions, Manifest, MemStore, PkiStore, Plan, RotateRequest, RotationPhase,
    issue, rotate, rotation_status,
};

fn plan() -> Plan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Plan::load(&root.join("fixtures/specs/starter.toml")).unwrap()
}

fn phase(p: RotationPhase) -> RotateRequest {
    RotateRequest::new(p)
}

fn refused(r: Result<pki_core::IssueReport, IssueError>, needle: &str) {
    match r {
        Err(IssueError::Rotation(m)) => assert!(m.contains(needle), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("not refused (wanted: {needle})"),
    }
}

fn manifest(s: &MemStore) -> Manifest {
    serde_json::from_slice(&s.read("kpki-manifest.json").unwrap().unwrap()).unwrap()
}

fn next(p: &Plan, s: &MemStore) -> RotationPhase {
    rotation_status(p, s).unwrap().next
}

#[test]
fn each_transition_and_each_refusal() {
    use RotationPhase::*;
    let p = plan();
    let o = IssueOptions::default();
    let mut s = MemStore::default();
    refused(
        rotate(&p, &mut s, &phase(Begin), &o),
        "run `kpki issue` first",
    );
    issue(&p, &mut s, &o).unwrap();
    assert_eq!(next(&p, &s), Begin);
    refused(
        rotate(&p, &mut s, &phase(Switch), &o),
        "`kpki rotate begin`",
    );
    refused(
        rotate(&p, &mut s, &phase(Finish), &o),
        "`kpki rotate begin`",
    );
    refused(rotate(&p, &mut s, &phase(Begin), &o), "--all-cas");
    let bogus = RotateRequest {
        cas: vec!["no-such-ca".into()],
        ..phase(Begin)
    };
    refused(rotate(&p, &mut s, &bogus, &o), "not a CA of this plan");
    let untouched = s.clone();

    let begin = RotateRequest {
        all_cas: true,
        sa: true,
        ..phase(Begin)
    };
    rotate(&p, &mut s, &begin, &o).unwrap();
    assert_ne!(s, untouched);
    let r = manifest(&s).rotation.unwrap();
    assert_eq!((r.phase, r.done), (Begin, true));
    assert!(r.cas.len() >= 2 && r.keypairs == ["sa"], "{r:?}");
    assert_eq!(next(&p, &s), Switch);
    // The same phase again changes nothing.
    let before = s.clone();
    assert_eq!(rotate(&p, &mut s, &begin, &o).unwrap().changed_files(), 0);
    assert_eq!(s, before);
    refused(
        rotate(&p, &mut s, &phase(Finish), &o),
        "`kpki rotate switch`",
    );

    rotate(&p, &mut s, &phase(Switch), &o).unwrap();
    let r = manifest(&s).rotation.unwrap();
    assert_eq!((r.phase, r.done), (Switch, true));
    assert_eq!(next(&p, &s), Finish);
    refused(rotate(&p, &mut s, &begin, &o), "`kpki rotate finish`");
    let before = s.clone();
    assert_eq!(
        rotate(&p, &mut s, &phase(Switch), &o)
            .unwrap()
            .changed_files(),
        0
    );
    assert_eq!(s, before);
    // `kpki issue` during the rotation keeps its files.
    assert_eq!(issue(&p, &mut s, &o).unwrap().changed_files(), 0);

    rotate(&p, &mut s, &phase(Finish), &o).unwrap();
    let m = manifest(&s);
    assert!(m.rotation.is_none());
    assert_eq!(m.rotations.len(), 1);
    assert!(
        m.rotations[0]
            .archive
            .as_deref()
            .unwrap()
            .starts_with("archive/")
    );
    assert!(
        s.files.keys().all(|f| !f.starts_with("rotation/")),
        "staging left"
    );
    assert!(
        s.files.keys().any(|f| f.ends_with("/sa.old.key")),
        "old SA key archived"
    );
    assert_eq!(next(&p, &s), Begin);
    let before = s.clone();
    rotate(&p, &mut s, &phase(Finish), &o).unwrap();
    assert_eq!(s, before, "finish again changes nothing");
    refused(
        rotate(&p, &mut s, &phase(Switch), &o),
        "`kpki rotate begin`",
    );
    // A second rotation starts cleanly.
    let etcd = RotateRequest {
        cas: vec!["etcd-ca".into()],
        ..phase(Begin)
    };
    rotate(&p, &mut s, &etcd, &o).unwrap();
    assert_eq!(manifest(&s).rotation.unwrap().cas, ["etcd-ca"]);
}

/// A phase recorded as started but not done (a killed run) is completed by
/// running it again; every other phase is refused, naming it.
#[test]
fn an_interrupted_phase_is_resumed_and_nothing_else_runs() {
    use RotationPhase::*;
    let p = plan();
    let o = IssueOptions::default();
    let mut s = MemStore::default();
    issue(&p, &mut s, &o).unwrap();
    let begin = RotateRequest {
        cas: vec!["etcd-ca".into()],
        ..phase(Begin)
    };
    rotate(&p, &mut s, &begin, &o).unwrap();
    for interrupted in [Switch, Finish] {
        // Record `interrupted` as started, not done, as a killed run leaves it.
        let mut m = manifest(&s);
        let mut r = m.rotation.clone().unwrap();
        r.phase = interrupted;
        r.done = false;
        m.rotation = Some(r);
        let good = s.clone();
        s.write(
            "kpki-manifest.json",
            &serde_json::to_vec(&m).unwrap(),
            pki_core::Mode::Public,
        )
        .unwrap();
        assert_eq!(next(&p, &s), interrupted);
        for other in [Begin, Switch, Finish]
            .into_iter()
            .filter(|x| *x != interrupted)
        {
            let req = RotateRequest {
                cas: vec!["etcd-ca".into()],
                ..phase(other)
            };
            refused(
                rotate(&p, &mut s, &req, &o),
                &format!("`kpki rotate {interrupted}` was interrupted"),
            );
        }
        if interrupted == Switch {
            // The same phase completes it.
            rotate(&p, &mut s, &phase(Switch), &o).unwrap();
            let r = manifest(&s).rotation.unwrap();
            assert_eq!((r.phase, r.done), (Switch, true));
        }
        s = good;
    }
}
