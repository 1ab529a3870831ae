use super::*;

const MINIMAL: &str = r#"
[[control_plane]]
name = "cp1"
address = "10.0.0.10"
"#;

fn parse(text: &str) -> Result<ClusterSpec, SpecError> {
    ClusterSpec::parse(text, Path::new("/tmp/specs/kpki.toml"))
}

#[test]
fn minimal_spec_gets_documented_defaults() {
    let s = parse(MINIMAL).unwrap();
    assert_eq!(s.profile, ProfileRef::Preset("kubeadm".into()));
    assert_eq!(s.cluster.name, "kubernetes");
    assert_eq!(s.cluster.dns_domain.as_str(), "cluster.local");
    assert_eq!(s.cluster.service_cidrs[0].to_string(), "10.96.0.0/12");
    assert_eq!(s.cluster.endpoint.url(), "https://10.0.0.10:6443");
    assert_eq!(s.crypto.algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(s.crypto.ca_validity, Lifetime::from_days(3650));
    assert_eq!(s.crypto.leaf_validity, Lifetime::from_days(365));
    assert_eq!(s.etcd, EtcdTopology::Stacked);
    assert_eq!(s.etcd_members().len(), 1);
    assert_eq!(s.output.dir, PathBuf::from("/tmp/specs/out"));
    assert!(s.output.embed_certs);
}

#[test]
fn dual_stack_and_ipv6_endpoint() {
    let s = parse(&format!(
        "[cluster]\nservice_cidr = [\"10.96.0.0/12\", \"fd00:10:96::/112\"]\nendpoint = \"[fd00::5]:8443\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(s.cluster.service_cidrs.len(), 2);
    assert_eq!(s.cluster.endpoint.url(), "https://[fd00::5]:8443");
    let e = parse(&format!(
        "[cluster]\nservice_cidr = [\"10.96.0.0/12\", \"10.97.0.0/16\"]\n{MINIMAL}"
    ))
    .unwrap_err();
    assert_eq!(e.field, "cluster.service_cidr");
    assert_eq!(e.location.line, 2);
}

fn err_of(text: &str) -> SpecError {
    parse(text).unwrap_err()
}

#[test]
fn unknown_key_names_line_and_key() {
    let e = err_of(&format!("{MINIMAL}colour = \"blue\"\n"));
    assert_eq!(e.location.line, 5, "{e}");
    assert_eq!(e.field, "control_plane.colour", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    assert!(e.to_string().starts_with("/tmp/specs/kpki.toml:5:"), "{e}");
}

#[test]
fn bad_values_name_their_field_and_line() {
    let cases = [
        (
            "[cluster]\nservice_cidr = \"10.96.0.0/33\"\n",
            "cluster.service_cidr",
            2,
        ),
        (
            "[cluster]\nendpoint = \"lb:99999\"\n",
            "cluster.endpoint",
            2,
        ),
        (
            "[crypto]\nalgorithm = \"rsa-1024\"\n",
            "crypto.algorithm",
            2,
        ),
        (
            "[crypto]\nca_validity = \"10 years\"\n",
            "crypto.ca_validity",
            2,
        ),
        (
            "[cluster]\nextra_sans = [\"a..b\"]\n",
            "cluster.extra_sans",
            2,
        ),
    ];
    for (head, field, line) in cases {
        let e = err_of(&format!("{head}{MINIMAL}"));
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.location.line, line, "{e}");
    }
    let e = err_of("[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.300\"\n");
    assert_eq!(
        (e.field.as_str(), e.location.line),
        ("control_plane[0].address", 3),
        "{e}"
    );
    let e = err_of("[[control_plane]]\nname = \"CP_1\"\naddress = \"10.0.0.3\"\n");
    assert_eq!(
        (e.field.as_str(), e.location.line),
        ("control_plane[0].name", 2),
        "{e}"
    );
}

#[test]
fn duplicate_nodes_and_missing_control_plane() {
    let e = err_of(&format!(
        "{MINIMAL}[[worker]]\nname = \"cp1\"\naddress = \"10.0.0.11\"\n"
    ));
    assert!(e.message.contains("duplicate node name `cp1`"), "{e}");
    assert_eq!(e.location.line, 6, "{e}");
    let e = err_of("[cluster]\nname = \"x\"\n");
    assert_eq!(e.field, "control_plane");
    assert!(e.message.contains("at least one"));
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = err_of("[cluster\nname = 1\n");
    assert_eq!(e.location.line, 1, "{e}");
    assert!(e.location.column > 0, "{e}");
}

#[test]
fn even_etcd_count_warns() {
    let s = parse(&format!(
        "{MINIMAL}[[etcd]]\nname = \"e1\"\naddress = \"10.0.0.21\"\n[[etcd]]\nname = \"e2\"\naddress = \"10.0.0.22\"\n"
    ))
    .unwrap();
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(s.etcd_members().len(), 2);
}

#[test]
fn kubeadm_config_api_defaults_to_v1beta4_and_refuses_unknown_versions() {
    assert_eq!(
        parse(MINIMAL).unwrap().kubeadm.config_api,
        KubeadmApi::V1beta4
    );
    for v in KubeadmApi::ALL {
        let s = parse(&format!(
            "[kubeadm]\nconfig_api = \"{}\"\n{MINIMAL}",
            v.as_str()
        ))
        .unwrap();
        assert_eq!(s.kubeadm.config_api, v);
    }
    let e = parse(&format!("[kubeadm]\nconfig_api = \"v1alpha3\"\n{MINIMAL}")).unwrap_err();
    assert_eq!(e.field, "kubeadm.config_api");
    assert_eq!(e.location.line, 2);
    assert!(
        e.message.contains("v1beta4, v1beta3, v1beta1"),
        "{}",
        e.message
    );
    let e = parse(&format!("[kubeadm]\nversion = \"v1beta3\"\n{MINIMAL}")).unwrap_err();
    assert!(e.message.contains("unknown field"), "{}", e.message);
}

#[test]
fn existing_ca_paths_resolve_against_the_spec_and_errors_name_their_field() {
    let text = format!(
        "{MINIMAL}\n[[existing_ca]]\nid = \"kubernetes-ca\"\ncert = \"old/ca.crt\"\nkey = \"/etc/kubernetes/pki/ca.key\"\n"
    );
    let (_, ex) =
        ClusterSpec::parse_with_existing(&text, Path::new("/tmp/specs/kpki.toml")).unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].id, "kubernetes-ca");
    assert_eq!(ex[0].cert, PathBuf::from("/tmp/specs/old/ca.crt"));
    assert_eq!(ex[0].key, PathBuf::from("/etc/kubernetes/pki/ca.key"));
    assert_eq!(ex[0].locations[1].line, 8);
    let e = ex[0].error("key", "boom");
    assert_eq!(e.field, "existing_ca[0].key");
    assert_eq!(e.location.line, 9);

    let dup =
        format!("{text}\n[[existing_ca]]\nid = \"kubernetes-ca\"\ncert = \"a\"\nkey = \"b\"\n");
    let e = err_of(&dup);
    assert_eq!(e.field, "existing_ca[1].id", "{e}");
    assert_eq!(e.location.line, 12, "{e}");

    let empty = format!("{MINIMAL}\n[[existing_ca]]\nid = \"etcd-ca\"\ncert = \"\"\nkey = \"k\"\n");
    let e = err_of(&empty);
    assert_eq!(e.field, "existing_ca[0].cert", "{e}");
    assert!(e.message.contains("empty"), "{e}");

    let missing = format!("{MINIMAL}\n[[existing_ca]]\nid = \"etcd-ca\"\ncert = \"c\"\n");
    let e = err_of(&missing);
    assert!(e.message.contains("missing field `key`"), "{e}");

    let unknown = format!(
        "{MINIMAL}\n[[existing_ca]]\nid = \"etcd-ca\"\ncert = \"c\"\nkey = \"k\"\npassword = \"x\"\n"
    );
    let e = err_of(&unknown);
    assert_eq!(e.field, "existing_ca.password", "{e}");
}

#[test]
fn ca_keys_pkcs11_is_parsed_and_checked() {
    let ok = format!(
        "{MINIMAL}\n[ca_keys]\nstore = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kpki\"\npin_env = \"KPKI_PKCS11_PIN\"\ncas = [\"etcd-ca\"]\n[controller_manager]\ncsr_signing = false\n"
    );
    let s = parse(&ok).unwrap();
    let CaKeyStore::Pkcs11(p) = &s.ca_keys else {
        panic!("{:?}", s.ca_keys)
    };
    assert_eq!(p.token.token_label, "kpki");
    assert_eq!(
        p.token.pin,
        crate::crypto::PinSource::Env("KPKI_PKCS11_PIN".into())
    );
    assert!(s.ca_keys.holds("etcd-ca") && !s.ca_keys.holds("kubernetes-ca"));
    assert!(!s.controller_manager.csr_signing);
    // Defaults: files, CSR signing on.
    let d = parse(MINIMAL).unwrap();
    assert_eq!(d.ca_keys, CaKeyStore::Files);
    assert!(d.controller_manager.csr_signing && !d.ca_keys.holds("etcd-ca"));
    // Errors name the field and the line.
    for (bad, field, line, what) in [
        (
            ok.replace("pkcs11", "tpm"),
            "ca_keys.store",
            7,
            "not a CA key store",
        ),
        (ok.replace("pin_env", "pin"), "ca_keys", 10, "unknown field"),
        (
            ok.replace("pin_env = \"KPKI_PKCS11_PIN\"\n", ""),
            "ca_keys.pin_env",
            6,
            "pin_env",
        ),
        (
            ok.replace("cas =", "pin_file = \"pin\"\ncas ="),
            "ca_keys.pin_file",
            11,
            "not both",
        ),
        (
            ok.replace("store = \"pkcs11\"", "store = \"files\""),
            "ca_keys.module",
            8,
            "only for store",
        ),
        (
            ok.replace("[\"etcd-ca\"]", "[\"etcd-ca\", \"etcd-ca\"]"),
            "ca_keys.cas",
            11,
            "twice",
        ),
        (
            ok.replace("csr_signing", "signing"),
            "controller_manager",
            13,
            "unknown field",
        ),
    ] {
        let e = parse(&bad).unwrap_err();
        assert!(e.field.starts_with(field), "{field}: {e:?}");
        assert_eq!(e.location.line, line, "{field}: {e:?}");
        assert!(e.message.contains(what), "{field}: {e:?}");
    }
}

#[test]
fn root_external_parses_and_its_errors_name_line_and_field() {
    assert!(!parse(MINIMAL).unwrap().root.external);
    let s = parse(&format!("[root]\nexternal = true\n{MINIMAL}")).unwrap();
    assert!(s.root.external);
    let e = err_of(&format!("[root]\nexternl = true\n{MINIMAL}"));
    assert_eq!(e.location.line, 2, "{e}");
    assert!(e.field.contains("externl"), "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    let e = err_of(&format!("[root]\nexternal = \"yes\"\n{MINIMAL}"));
    assert_eq!(e.location.line, 2, "{e}");
    assert!(e.field.contains("external"), "{e}");
}
