//! Helpers shared by the crypto integration tests: openssl runner and
//! certificate parameter builders.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use pki_core::{CertParams, DistinguishedName, ExtUsage, KeyUsages, random_serial};
use time::{Duration, OffsetDateTime};

pub const OPENSSL: &str = "/usr/bin/openssl";

/// Run openssl; panics loudly (never skips) if the binary is missing.
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String, String) {
    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is required for these tests but is missing"
    );
    let out = Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {OPENSSL}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn openssl_ok(args: &[&str], dir: &Path) -> String {
    let (ok, out, err) = openssl(args, dir);
    assert!(ok, "openssl {args:?} failed:\nstdout: {out}\nstderr: {err}");
    out
}

pub fn now() -> OffsetDateTime {
    // whole seconds, since certificates cannot carry fractions
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

pub fn ca_params(cn: &str) -> CertParams {
    let nb = now() - Duration::minutes(5);
    CertParams {
        serial: random_serial(),
        subject: DistinguishedName {
            common_name: cn.into(),
            organizations: vec!["kpki".into()],
            ..Default::default()
        },
        not_before: nb,
        not_after: nb + Duration::days(3650),
        is_ca: true,
        path_len: None,
        key_usage: KeyUsages {
            digital_signature: true,
            key_encipherment: true,
            key_cert_sign: true,
            crl_sign: false,
        },
        ext_key_usage: vec![],
        dns_sans: vec![],
        ip_sans: vec![],
    }
}

pub fn leaf_params(
    cn: &str,
    orgs: &[&str],
    eku: &[ExtUsage],
    dns: &[&str],
    ips: &[&str],
) -> CertParams {
    let nb = now() - Duration::minutes(5);
    CertParams {
        serial: random_serial(),
        subject: DistinguishedName {
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        not_before: nb,
        not_after: nb + Duration::days(365),
        is_ca: false,
        path_len: None,
        key_usage: KeyUsages {
            digital_signature: true,
            key_encipherment: true,
            ..Default::default()
        },
        ext_key_usage: eku.to_vec(),
        dns_sans: dns.iter().map(|s| s.to_string()).collect(),
        ip_sans: ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect(),
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
