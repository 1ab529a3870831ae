#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! End-to-end: build a small PKI with our code and check it with openssl.

mod crypto_common;

use crypto_common::*;
use pki_core::{
    CertParams, DistinguishedName, ExtUsage, KeyAlgorithm, PrivateKey, PublicKey,
    SignatureAlgorithm, Signer, build_certificate, cert_to_pem, certs_from_pem, parse_certificate,
};
use std::fs;
use time::Duration;

struct Issued {
    params: CertParams,
    key: PrivateKey,
    der: Vec<u8>,
}

fn issue(params: CertParams, alg: KeyAlgorithm, ca: Option<(&[u8], &PrivateKey)>) -> Issued {
    let key = PrivateKey::generate(alg).unwrap();
    let signer = match ca {
        None => Signer::SelfSigned(&key),
        Some((cert_der, key)) => Signer::Issuer { cert_der, key },
    };
    let der = build_certificate(&params, &key.public_key(), signer).unwrap();
    Issued { params, key, der }
}

fn check_roundtrip(i: &Issued, issuer: Option<&Issued>) {
    let p = parse_certificate(&i.der).unwrap();
    let want = &i.params;
    assert_eq!(p.subject, want.subject);
    assert_eq!(
        p.issuer,
        issuer.map_or(&want.subject, |c| &c.params.subject).clone()
    );
    let mut serial = want.serial.as_slice();
    while let [0, rest @ ..] = serial {
        serial = rest;
    }
    assert_eq!(p.serial_hex, hex(serial));
    assert!(p.serial_hex.len() >= 16, "serial must be >= 64 bits");
    assert_eq!(p.not_before, want.not_before);
    assert_eq!(p.not_after, want.not_after);
    assert_eq!(p.is_ca, Some(want.is_ca));
    assert_eq!(p.path_len, want.path_len);
    assert_eq!(p.key_usage, Some(want.key_usage));
    assert_eq!(p.ext_key_usage, want.ext_key_usage);
    assert!(p.other_ext_key_usages.is_empty());
    assert_eq!(p.dns_sans, want.dns_sans);
    assert_eq!(p.ip_sans, want.ip_sans);
    assert_eq!(p.public_key, i.key.public_key());
    assert!(i.key.matches(&p.public_key));
    assert_eq!(
        p.subject_key_id.as_deref(),
        Some(&i.key.public_key().key_id()[..])
    );
    match issuer {
        None => assert_eq!(p.authority_key_id, None),
        Some(ca) => assert_eq!(
            p.authority_key_id.as_deref(),
            Some(&ca.key.public_key().key_id()[..])
        ),
    }
    let signer_alg = issuer.map_or(i.key.algorithm(), |c| c.key.algorithm());
    let want_sig = match signer_alg {
        KeyAlgorithm::EcdsaP256 => SignatureAlgorithm::EcdsaSha256,
        KeyAlgorithm::EcdsaP384 => SignatureAlgorithm::EcdsaSha384,
        _ => SignatureAlgorithm::RsaSha256,
    };
    assert_eq!(p.signature_algorithm, want_sig);
    assert!(!p.signature_algorithm.is_weak());
    let signer_key = issuer.map_or(&i.key, |c| &c.key);
    assert!(p.verify_signed_by(&signer_key.public_key()));
    assert_eq!(p.sha256_fingerprint().len(), 64);
}

fn pki(ca_alg: KeyAlgorithm, leaf_alg: KeyAlgorithm) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let mut cap = ca_params("kubernetes");
    cap.path_len = Some(0);
    let ca = issue(cap, ca_alg, None);
    let ca_ref = Some((ca.der.as_slice(), &ca.key));

    let server = issue(
        leaf_params(
            "kube-apiserver",
            &[],
            &[ExtUsage::ServerAuth],
            &[
                "kubernetes",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            &["10.96.0.1", "127.0.0.1", "::1"],
        ),
        leaf_alg,
        ca_ref,
    );
    let client = issue(
        leaf_params(
            "kubernetes-admin",
            &["system:masters"],
            &[ExtUsage::ClientAuth],
            &[],
            &[],
        ),
        leaf_alg,
        ca_ref,
    );
    let both = issue(
        leaf_params(
            "etcd-peer",
            &[],
            &[ExtUsage::ServerAuth, ExtUsage::ClientAuth],
            &["node1"],
            &["192.168.1.10"],
        ),
        leaf_alg,
        ca_ref,
    );

    for (name, i) in [
        ("ca", &ca),
        ("server", &server),
        ("client", &client),
        ("both", &both),
    ] {
        fs::write(d.join(format!("{name}.pem")), cert_to_pem(&i.der)).unwrap();
        fs::write(
            d.join(format!("{name}.key")),
            i.key.to_pem().unwrap().as_str(),
        )
        .unwrap();
    }

    // chain + purpose checks
    openssl_ok(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "server.pem",
        ],
        d,
    );
    openssl_ok(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "client.pem",
        ],
        d,
    );
    let (ok, out, err) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "client.pem",
        ],
        d,
    );
    assert!(!ok, "client leaf must not verify as sslserver: {out}{err}");
    openssl_ok(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "both.pem",
        ],
        d,
    );
    openssl_ok(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "both.pem",
        ],
        d,
    );
    openssl_ok(
        &["verify", "-x509_strict", "-CAfile", "ca.pem", "server.pem"],
        d,
    );

    // another CA of the same algorithm must not verify the leaves
    let other = issue(ca_params("kubernetes"), ca_alg, None);
    fs::write(d.join("other.pem"), cert_to_pem(&other.der)).unwrap();
    let (ok, ..) = openssl(&["verify", "-CAfile", "other.pem", "server.pem"], d);
    assert!(!ok);

    // text dumps
    let ca_text = openssl_ok(&["x509", "-noout", "-text", "-in", "ca.pem"], d);
    assert!(
        ca_text.contains("X509v3 Basic Constraints: critical"),
        "{ca_text}"
    );
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    assert!(ca_text.contains("X509v3 Key Usage: critical"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign"), "{ca_text}");
    assert!(
        ca_text.contains("X509v3 Subject Key Identifier"),
        "{ca_text}"
    );
    assert!(
        !ca_text.contains("X509v3 Authority Key Identifier"),
        "{ca_text}"
    );
    assert!(ca_text.contains("Version: 3 (0x2)"), "{ca_text}");
    assert!(
        ca_text.contains("Subject: O = kpki, CN = kubernetes"),
        "{ca_text}"
    );
    for name in ["server", "client", "both"] {
        let t = openssl_ok(
            &["x509", "-noout", "-text", "-in", &format!("{name}.pem")],
            d,
        );
        assert!(t.contains("X509v3 Basic Constraints: critical"), "{t}");
        assert!(t.contains("CA:FALSE"), "{t}");
        assert!(t.contains("X509v3 Subject Key Identifier"), "{t}");
        assert!(t.contains("X509v3 Authority Key Identifier"), "{t}");
        assert!(t.contains("Issuer: O = kpki, CN = kubernetes"), "{t}");
    }
    let st = openssl_ok(&["x509", "-noout", "-text", "-in", "server.pem"], d);
    assert!(
        st.contains("DNS:kubernetes, DNS:kubernetes.default.svc.cluster.local"),
        "{st}"
    );
    assert!(st.contains("IP Address:10.96.0.1"), "{st}");
    assert!(st.contains("IP Address:0:0:0:0:0:0:0:1"), "{st}");
    assert!(st.contains("TLS Web Server Authentication"), "{st}");
    let ct = openssl_ok(&["x509", "-noout", "-text", "-in", "client.pem"], d);
    assert!(
        ct.contains("Subject: O = system:masters, CN = kubernetes-admin"),
        "{ct}"
    );
    assert!(!ct.contains("Subject Alternative Name"), "{ct}");
    let sig_name = match ca_alg {
        KeyAlgorithm::EcdsaP256 => "ecdsa-with-SHA256",
        KeyAlgorithm::EcdsaP384 => "ecdsa-with-SHA384",
        _ => "sha256WithRSAEncryption",
    };
    assert!(
        st.contains(&format!("Signature Algorithm: {sig_name}")),
        "{st}"
    );

    // keys: openssl reads them and they match the certs
    for name in ["ca", "server", "client", "both"] {
        let key = format!("{name}.key");
        openssl_ok(&["pkey", "-in", &key, "-noout"], d);
        let from_key = openssl_ok(&["pkey", "-in", &key, "-pubout"], d);
        let from_cert = openssl_ok(
            &["x509", "-pubkey", "-noout", "-in", &format!("{name}.pem")],
            d,
        );
        assert_eq!(from_key, from_cert, "{name}");
        let ours = PrivateKey::from_pem(&fs::read_to_string(d.join(&key)).unwrap())
            .unwrap()
            .public_key()
            .to_pem()
            .unwrap();
        assert_eq!(ours, from_key, "{name}");
        assert_eq!(
            PublicKey::from_pem(&from_key).unwrap().to_pem().unwrap(),
            ours
        );
    }

    // serials are positive INTEGERs
    let asn = openssl_ok(&["asn1parse", "-in", "server.pem"], d);
    let first_int = asn
        .lines()
        // The first INTEGER is the version (v3 = 2), the second the serial
        // (which may itself start with 02: do not filter on the value).
        .filter(|l| l.contains("INTEGER"))
        .nth(1)
        .unwrap();
    assert!(!first_int.contains(":-"), "{first_int}");

    // round trip through our parser
    check_roundtrip(&ca, None);
    check_roundtrip(&server, Some(&ca));
    check_roundtrip(&client, Some(&ca));
    check_roundtrip(&both, Some(&ca));
    let parsed = parse_certificate(&server.der).unwrap();
    assert!(!parsed.verify_signed_by(&other.key.public_key()));
    assert!(!parsed.verify_signed_by(&server.key.public_key()));
    assert!(parse_certificate(&ca.der).unwrap().is_self_signed());

    // PEM bundle parsing
    let bundle = format!("{}{}", cert_to_pem(&server.der), cert_to_pem(&ca.der));
    assert_eq!(
        certs_from_pem(&bundle).unwrap(),
        vec![server.der.clone(), ca.der.clone()]
    );

    // key PEM round trip
    for i in [&ca, &server] {
        let pem = i.key.to_pem().unwrap();
        let label = if i.key.algorithm().is_rsa() {
            "RSA PRIVATE KEY"
        } else {
            "EC PRIVATE KEY"
        };
        assert!(
            pem.starts_with(&format!("-----BEGIN {label}-----\n")),
            "{}",
            pem.as_str()
        );
        let back = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), i.key.algorithm());
        assert!(back.matches(&i.key.public_key()));
        assert_eq!(back.to_pem().unwrap(), pem);
        assert_eq!(back.public_key().algorithm().unwrap(), i.key.algorithm());
    }
}

#[test]
fn pki_p256() {
    pki(KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP256);
}

#[test]
fn pki_p384() {
    pki(KeyAlgorithm::EcdsaP384, KeyAlgorithm::EcdsaP384);
}

#[test]
fn pki_rsa2048() {
    pki(KeyAlgorithm::Rsa2048, KeyAlgorithm::Rsa2048);
}

#[test]
fn pki_mixed_rsa_ca_ec_leaves() {
    pki(KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256);
}

#[test]
fn pki_mixed_p384_ca_p256_leaves() {
    pki(KeyAlgorithm::EcdsaP384, KeyAlgorithm::EcdsaP256);
}

#[test]
fn full_dn_order_and_high_bit_serial() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let mut p = ca_params("front-proxy-ca");
    p.subject = DistinguishedName {
        common_name: "front-proxy-ca".into(),
        organizations: vec!["o1".into(), "o2".into()],
        organizational_units: vec!["ou1".into()],
        country: Some("US".into()),
        state: Some("CA".into()),
        locality: Some("Zürich".into()),
    };
    p.serial = vec![0xff; 16]; // top bit set -> must be encoded with a leading 0x00
    p.not_after = p.not_before + Duration::days(365 * 40); // past 2049 -> GeneralizedTime
    let der = build_certificate(&p, &key.public_key(), Signer::SelfSigned(&key)).unwrap();
    fs::write(d.join("c.pem"), cert_to_pem(&der)).unwrap();
    let subj = openssl_ok(
        &[
            "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", "c.pem",
        ],
        d,
    );
    // RFC2253 prints in reverse order
    assert!(
        subj.contains("CN=front-proxy-ca,OU=ou1,O=o2,O=o1,L=Z"),
        "{subj}"
    );
    assert!(subj.contains(",ST=CA,C=US"), "{subj}");
    let serial = openssl_ok(&["x509", "-noout", "-serial", "-in", "c.pem"], d);
    assert_eq!(serial.trim(), format!("serial={}", "FF".repeat(16)));
    let asn = openssl_ok(&["asn1parse", "-in", "c.pem"], d);
    assert!(
        asn.contains(&format!("INTEGER           :{}", "FF".repeat(16))),
        "{asn}"
    );
    let parsed = parse_certificate(&der).unwrap();
    assert_eq!(parsed.subject, p.subject);
    assert_eq!(parsed.serial_hex, "ff".repeat(16));
    assert_eq!(parsed.not_after, p.not_after);
    assert!(parsed.verify_signed_by(&key.public_key()));
    openssl_ok(&["verify", "-CAfile", "c.pem", "c.pem"], d);
}
