//! The fixtures/bad corpus beyond specs: broken profiles and damaged existing
//! files, each with its exit status and a snapshot of its message; none may
//! panic or change a file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{kpki, root, snapshot};

#[test]
fn bad_profiles_give_their_status_and_message() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("fixtures/bad")).unwrap() {
        let d = e.unwrap().path();
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("profile-") {
            continue;
        }
        let rel = format!("fixtures/bad/{name}/kpki.toml");
        let status: i32 = std::fs::read_to_string(d.join("expected-status"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let before = snapshot(&d);
        let o = kpki().args(["plan", "--spec", &rel]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(status), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"));
        assert_eq!(
            stderr,
            std::fs::read_to_string(d.join("expected.stderr")).unwrap(),
            "{name}: message changed"
        );
        if status == 2 {
            assert!(
                stderr.contains(&format!("fixtures/bad/{name}/profile.toml:")),
                "{name}: names the profile file and line"
            );
        } else {
            let code = std::fs::read_to_string(d.join("expected-code")).unwrap();
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(code.trim()),
                "{name}"
            );
        }
        // `issue` refuses too, writing nothing.
        let o = kpki().args(["issue", "--spec", &rel]).output().unwrap();
        assert_ne!(o.status.code(), Some(0), "{name}");
        assert_eq!(snapshot(&d), before, "{name}: files changed");
        n += 1;
    }
    assert!(n >= 7, "{n} profile cases");
}

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    file: String,
    damage: String,
    status: i32,
    stderr: String,
}

const SPEC: &str =
    "profile = \"kubeadm\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n";

#[test]
fn damaged_existing_files_stop_issue_naming_the_file() {
    let cases: Cases = toml::from_str(
        &std::fs::read_to_string(root().join("fixtures/bad/existing-cases.toml")).unwrap(),
    )
    .unwrap();
    assert!(cases.case.len() >= 6);
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("kpki.toml"), SPEC).unwrap();
    kpki()
        .args(["issue", "--spec"])
        .arg(other.path().join("kpki.toml"))
        .assert()
        .success();
    let foreign = other.path().join("out");
    for c in &cases.case {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().join("kpki.toml");
        std::fs::write(&spec, SPEC).unwrap();
        kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .assert()
            .success();
        let out = tmp.path().join("out");
        let target = out.join(&c.file);
        let key_text = std::fs::read_to_string(out.join("cluster/pki/ca.key")).unwrap();
        match c.damage.as_str() {
            "truncate" => {
                let t = std::fs::read_to_string(&target).unwrap();
                std::fs::write(&target, &t[..t.len() / 2]).unwrap();
            }
            "garbage" => {
                std::fs::write(&target, [0x30u8, 0x82, 0x01, 0xff, 0xde, 0xad, 0xbe, 0xef]).unwrap()
            }
            "directory" => {
                std::fs::remove_file(&target).unwrap();
                std::fs::create_dir(&target).unwrap();
            }
            "foreign-pair" => {
                std::fs::copy(foreign.join(&c.file), &target).unwrap();
                let key = c.file.replace(".crt", ".key");
                std::fs::copy(foreign.join(&key), out.join(&key)).unwrap();
            }
            d if d.starts_with("replace-with:") => {
                std::fs::copy(out.join(&d["replace-with:".len()..]), &target).unwrap();
            }
            d if d.starts_with("replace-with-public-of:") => {
                let (ok, pem, err) = common::run(
                    std::process::Command::new(common::tool("openssl"))
                        .args(["pkey", "-pubout", "-in"])
                        .arg(out.join(&d["replace-with-public-of:".len()..])),
                );
                assert!(ok, "{err}");
                std::fs::write(&target, pem).unwrap();
            }
            other => panic!("unknown damage {other}"),
        }
        let before = snapshot(&out);
        let o = kpki()
            .args(["issue", "--spec"])
            .arg(&spec)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).replace(&out.display().to_string(), "OUT");
        assert_eq!(o.status.code(), Some(c.status), "{}: {stderr}", c.name);
        if std::env::var_os("KPKI_PRINT_SNAPSHOTS").is_some() {
            eprintln!("SNAPSHOT {} {stderr:?}", c.name);
            continue;
        }
        assert_eq!(stderr, c.stderr, "{}: message changed", c.name);
        assert!(
            !stderr.contains(&key_text[30..70]),
            "{}: key bytes in the message",
            c.name
        );
        assert_eq!(snapshot(&out), before, "{}: files changed", c.name);
    }
}
