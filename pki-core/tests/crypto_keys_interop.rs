#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Key parsing/encoding against openssl-generated material, and robustness.

mod crypto_common;

use crypto_common::*;
use pki_core::{
    CryptoError, DistinguishedName, ExtUsage, KeyAlgorithm, PrivateKey, PublicKey,
    SignatureAlgorithm, Signer, Subject, build_certificate, cert_to_pem, certs_from_pem,
    parse_certificate, random_serial,
};
use std::fs;
use std::str::FromStr;

fn load(d: &std::path::Path, name: &str) -> String {
    fs::read_to_string(d.join(name)).unwrap()
}

#[test]
fn algorithm_names() {
    for (alg, s) in [
        (KeyAlgorithm::EcdsaP256, "ecdsa-p256"),
        (KeyAlgorithm::EcdsaP384, "ecdsa-p384"),
        (KeyAlgorithm::Rsa2048, "rsa-2048"),
        (KeyAlgorithm::Rsa3072, "rsa-3072"),
        (KeyAlgorithm::Rsa4096, "rsa-4096"),
    ] {
        assert_eq!(alg.as_str(), s);
        assert_eq!(KeyAlgorithm::from_str(s).unwrap(), alg);
        assert_eq!(alg.is_rsa(), s.starts_with("rsa"));
    }
    let err = KeyAlgorithm::from_str("rsa-1024").unwrap_err();
    assert!(err.contains("rsa-1024"), "{err}");
    assert!(KeyAlgorithm::from_str("ed25519").is_err());
}

#[test]
fn distinguished_name_is_subject() {
    let dn: Subject = DistinguishedName::cn("kube-apiserver");
    assert_eq!(dn.common_name, "kube-apiserver");
    assert!(dn.organizations.is_empty() && dn.organizational_units.is_empty());
    assert_eq!((dn.country, dn.state, dn.locality), (None, None, None));
    // an empty CN is left out of the name, and the name round-trips
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let mut p = ca_params("");
    p.subject.organizations = vec!["system:nodes".into()];
    let der = build_certificate(&p, &key.public_key(), Signer::SelfSigned(&key)).unwrap();
    let parsed = parse_certificate(&der).unwrap();
    assert_eq!(parsed.subject, p.subject);
    assert_eq!(parsed.issuer, p.subject);
}

#[test]
fn debug_is_redacted() {
    let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    assert_eq!(format!("{k:?}"), "PrivateKey(ecdsa-p256, redacted)");
    assert_eq!(format!("{k:#?}"), "PrivateKey(ecdsa-p256, redacted)");
}

#[test]
fn openssl_generated_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (file, openssl args, expected algorithm)
    let cases: &[(&str, &[&str], KeyAlgorithm)] = &[
        (
            "rsa_pkcs8.pem",
            &["genrsa", "-out", "rsa_pkcs8.pem", "2048"],
            KeyAlgorithm::Rsa2048,
        ),
        (
            "rsa_trad.pem",
            &["genrsa", "-traditional", "-out", "rsa_trad.pem", "2048"],
            KeyAlgorithm::Rsa2048,
        ),
        (
            "ec_params.pem",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "ec_params.pem",
            ],
            KeyAlgorithm::EcdsaP256,
        ),
        (
            "ec_noout.pem",
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "ec_noout.pem",
            ],
            KeyAlgorithm::EcdsaP384,
        ),
        (
            "ec_pkcs8_256.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec_pkcs8_256.pem",
            ],
            KeyAlgorithm::EcdsaP256,
        ),
        (
            "ec_pkcs8_384.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "ec_pkcs8_384.pem",
            ],
            KeyAlgorithm::EcdsaP384,
        ),
    ];
    for (file, args, alg) in cases {
        openssl_ok(args, d);
        let pem = load(d, file);
        let key = PrivateKey::from_pem(&pem).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(key.algorithm(), *alg, "{file}");
        let pub_pem = openssl_ok(&["pkey", "-in", file, "-pubout"], d);
        let public = PublicKey::from_pem(&pub_pem).unwrap();
        assert!(key.matches(&public), "{file}");
        assert_eq!(key.public_key().to_pem().unwrap(), pub_pem, "{file}");
        assert_eq!(public.algorithm().unwrap(), *alg);

        // our re-encoding (PKCS#1 / SEC1) is readable by openssl and equal
        let ours = format!("ours_{file}");
        fs::write(d.join(&ours), key.to_pem().unwrap().as_str()).unwrap();
        assert_eq!(openssl_ok(&["pkey", "-in", &ours, "-pubout"], d), pub_pem);
        openssl_ok(&["pkey", "-in", &ours, "-check", "-noout"], d);
    }
    // openssl's traditional EC output is SEC1 just like ours: byte-identical
    let trad = load(d, "ec_noout.pem");
    assert_eq!(
        PrivateKey::from_pem(&trad)
            .unwrap()
            .to_pem()
            .unwrap()
            .as_str(),
        trad
    );
    let rsa_trad = load(d, "rsa_trad.pem");
    assert_eq!(
        PrivateKey::from_pem(&rsa_trad)
            .unwrap()
            .to_pem()
            .unwrap()
            .as_str(),
        rsa_trad
    );

    // "RSA PUBLIC KEY" (PKCS#1) is accepted too
    let rsa_pub1 = openssl_ok(&["rsa", "-in", "rsa_trad.pem", "-RSAPublicKey_out"], d);
    let k = PublicKey::from_pem(&rsa_pub1).unwrap();
    assert!(PrivateKey::from_pem(&rsa_trad).unwrap().matches(&k));
}

#[test]
fn rsa_1024_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(&["genrsa", "-out", "k1024.pem", "1024"], d);
    openssl_ok(&["genrsa", "-traditional", "-out", "k1024t.pem", "1024"], d);
    let pub_pem = openssl_ok(&["pkey", "-in", "k1024.pem", "-pubout"], d);
    let public = PublicKey::from_pem(&pub_pem).unwrap();
    assert_eq!(
        public.algorithm(),
        Err(CryptoError::UnsupportedKey {
            what: "rsa-1024".into()
        })
    );
    for f in ["k1024.pem", "k1024t.pem"] {
        let err = PrivateKey::from_pem(&load(d, f)).unwrap_err();
        assert_eq!(
            err,
            CryptoError::UnsupportedKey {
                what: "rsa-1024".into()
            },
            "{f}"
        );
        assert!(err.to_string().contains("rsa-1024"));
    }
    // and building a certificate for it is refused
    let ca = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let ca_der =
        build_certificate(&ca_params("ca"), &ca.public_key(), Signer::SelfSigned(&ca)).unwrap();
    let r = build_certificate(
        &leaf_params("x", &[], &[ExtUsage::ClientAuth], &[], &[]),
        &public,
        Signer::Issuer {
            cert_der: &ca_der,
            key: &ca,
        },
    );
    assert!(
        matches!(r, Err(CryptoError::UnsupportedKey { .. })),
        "{r:?}"
    );
}

#[test]
fn other_key_types_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(&["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"], d);
    let err = PrivateKey::from_pem(&load(d, "ed.pem")).unwrap_err();
    assert_eq!(
        err,
        CryptoError::UnsupportedKey {
            what: "ed25519".into()
        }
    );
    openssl_ok(
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            "p521.pem",
        ],
        d,
    );
    let err = PrivateKey::from_pem(&load(d, "p521.pem")).unwrap_err();
    assert!(matches!(err, CryptoError::UnsupportedKey { .. }), "{err:?}");
    let p521_pub = openssl_ok(&["pkey", "-in", "p521.pem", "-pubout"], d);
    assert_eq!(
        PublicKey::from_pem(&p521_pub).unwrap().algorithm(),
        Err(CryptoError::UnsupportedKey {
            what: "ecdsa-p521".into()
        })
    );
    // encrypted PKCS#8 is an unexpected block type
    openssl_ok(
        &[
            "pkcs8", "-topk8", "-in", "p521.pem", "-passout", "pass:x", "-out", "enc.pem",
        ],
        d,
    );
    let err = PrivateKey::from_pem(&load(d, "enc.pem")).unwrap_err();
    assert_eq!(
        err,
        CryptoError::UnexpectedPemType {
            label: "ENCRYPTED PRIVATE KEY".into()
        }
    );
}

#[test]
fn garbage_and_truncated_input_errors_without_leaking() {
    let k = PrivateKey::generate(KeyAlgorithm::Rsa2048).unwrap();
    let pem = k.to_pem().unwrap();
    let body_lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let check = |input: &str| {
        let err = PrivateKey::from_pem(input).unwrap_err();
        let msg = format!("{err} {err:?}");
        for l in &body_lines {
            assert!(!msg.contains(&l[..16]), "error leaks key material: {msg}");
        }
        let _ = PublicKey::from_pem(input);
        let _ = certs_from_pem(input);
    };
    check("");
    check("garbage");
    check("-----BEGIN RSA PRIVATE KEY-----\nnot base64!!\n-----END RSA PRIVATE KEY-----\n");
    check("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
    check("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n");
    check("-----BEGIN RSA PRIVATE KEY-----\n");
    // every truncation of a real key
    for cut in (0..pem.len()).step_by(7) {
        check(&pem[..cut]);
    }
    // drop a body line: valid PEM framing, broken DER
    let mut lines: Vec<&str> = pem.lines().collect();
    lines.remove(5);
    check(&lines.join("\n"));
    // a certificate is not a key
    let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let der =
        build_certificate(&ca_params("x"), &ec.public_key(), Signer::SelfSigned(&ec)).unwrap();
    let err = PrivateKey::from_pem(&cert_to_pem(&der)).unwrap_err();
    assert_eq!(
        err,
        CryptoError::UnexpectedPemType {
            label: "CERTIFICATE".into()
        }
    );
    // and a key is not a certificate
    let err = certs_from_pem(&format!(
        "{}{}",
        cert_to_pem(&der),
        ec.to_pem().unwrap().as_str()
    ))
    .unwrap_err();
    assert_eq!(
        err,
        CryptoError::UnexpectedPemType {
            label: "EC PRIVATE KEY".into()
        }
    );
    assert_eq!(certs_from_pem("nothing here"), Err(CryptoError::NoPemBlock));
}

#[test]
fn parse_certificate_never_panics() {
    let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let der =
        build_certificate(&ca_params("x"), &ec.public_key(), Signer::SelfSigned(&ec)).unwrap();
    for cut in 0..der.len() {
        assert!(parse_certificate(&der[..cut]).is_err());
    }
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut m = der.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            m[i] ^= (next() as u8) | 1;
        }
        if let Ok(p) = parse_certificate(&m) {
            let _ = p.verify_signed_by(&ec.public_key());
        }
    }
    for len in [0usize, 1, 2, 10, 100, 1000] {
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert!(parse_certificate(&junk).is_err());
    }
    assert!(parse_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
}

#[test]
fn sha1_certificate_is_weak() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_ok(
        &[
            "req",
            "-x509",
            "-sha1",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/C=DE/O=legacy/CN=old-ca",
            "-days",
            "30",
        ],
        d,
    );
    let ders = certs_from_pem(&load(d, "c.pem")).unwrap();
    assert_eq!(ders.len(), 1);
    let p = parse_certificate(&ders[0]).unwrap();
    assert_eq!(p.signature_algorithm, SignatureAlgorithm::RsaSha1);
    assert!(p.signature_algorithm.is_weak());
    assert_eq!(p.subject.common_name, "old-ca");
    assert_eq!(p.subject.country.as_deref(), Some("DE"));
    assert_eq!(p.subject.organizations, vec!["legacy".to_string()]);
    assert_eq!(p.public_key.algorithm().unwrap(), KeyAlgorithm::Rsa2048);
    assert!(p.verify_signed_by(&p.public_key));
    let key = PrivateKey::from_pem(&load(d, "k.pem")).unwrap();
    assert!(key.matches(&p.public_key));
    // openssl req -x509 adds SKI (and AKI = SKI on self-signed) and CA:TRUE
    assert_eq!(p.is_ca, Some(true));
    assert_eq!(
        p.subject_key_id.as_deref(),
        Some(&p.public_key.key_id()[..])
    );
    let fp = openssl_ok(
        &["x509", "-noout", "-fingerprint", "-sha256", "-in", "c.pem"],
        d,
    );
    let fp = fp
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(p.sha256_fingerprint(), fp);

    // a self-signed openssl ECDSA P-384 / SHA-384 certificate verifies too
    openssl_ok(
        &[
            "req",
            "-x509",
            "-sha384",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            "eck.pem",
            "-out",
            "ecc.pem",
            "-subj",
            "/CN=ec",
            "-days",
            "3",
        ],
        d,
    );
    let ec = parse_certificate(&certs_from_pem(&load(d, "ecc.pem")).unwrap()[0]).unwrap();
    assert_eq!(ec.signature_algorithm, SignatureAlgorithm::EcdsaSha384);
    assert!(ec.verify_signed_by(&ec.public_key));
    assert!(!ec.verify_signed_by(&p.public_key));
    assert!(!p.verify_signed_by(&ec.public_key));
}

#[test]
fn rsa_3072_and_4096_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for alg in [KeyAlgorithm::Rsa3072, KeyAlgorithm::Rsa4096] {
        let k = PrivateKey::generate(alg).unwrap();
        assert_eq!(k.algorithm(), alg);
        assert_eq!(k.public_key().algorithm().unwrap(), alg);
        let f = format!("{}.pem", alg.as_str());
        fs::write(d.join(&f), k.to_pem().unwrap().as_str()).unwrap();
        let text = openssl_ok(&["pkey", "-in", &f, "-noout", "-text_pub"], d);
        let bits = &alg.as_str()[4..];
        assert!(
            text.contains(&format!("Public-Key: ({bits} bit)")),
            "{text}"
        );
        let back = PrivateKey::from_pem(&k.to_pem().unwrap()).unwrap();
        assert_eq!(back.algorithm(), alg);
        assert!(back.matches(&k.public_key()));
    }
}

#[test]
fn invalid_params_rejected() {
    let k = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let mut p = ca_params("x");
    p.serial = vec![1, 2, 3];
    assert!(matches!(
        build_certificate(&p, &k.public_key(), Signer::SelfSigned(&k)),
        Err(CryptoError::InvalidParams(_))
    ));
    let mut p = ca_params("x");
    p.not_after = p.not_before;
    assert!(build_certificate(&p, &k.public_key(), Signer::SelfSigned(&k)).is_err());
    // self-signed with a key that is not the subject key
    let p = ca_params("x");
    assert!(build_certificate(&p, &k.public_key(), Signer::SelfSigned(&other)).is_err());
    // issuer key not matching the issuer cert
    let ca = build_certificate(&p, &k.public_key(), Signer::SelfSigned(&k)).unwrap();
    let leaf = leaf_params("l", &[], &[ExtUsage::ServerAuth], &["a"], &[]);
    assert!(
        build_certificate(
            &leaf,
            &other.public_key(),
            Signer::Issuer {
                cert_der: &ca,
                key: &other
            }
        )
        .is_err()
    );
    assert!(
        build_certificate(
            &leaf,
            &other.public_key(),
            Signer::Issuer {
                cert_der: b"junk",
                key: &k
            }
        )
        .is_err()
    );
    let mut bad = leaf.clone();
    bad.subject.country = Some("Ü".into());
    assert!(
        build_certificate(
            &bad,
            &other.public_key(),
            Signer::Issuer {
                cert_der: &ca,
                key: &k
            }
        )
        .is_err()
    );
}

#[test]
fn random_serial_shape() {
    for _ in 0..200 {
        let s = random_serial();
        assert_eq!(s.len(), 16);
        assert!(s[0] & 0x80 == 0 && s[0] != 0);
    }
    assert_ne!(random_serial(), random_serial());
}
