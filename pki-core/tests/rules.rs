//! One test per plan-time rule: a minimal change to the kubeadm preset that
//! triggers the code, and the unchanged preset that does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use pki_core::{ClusterSpec, Code, Plan, Profile, Severity};

const SPEC: &str = r#"
profile = "kubeadm"
[cluster]
endpoint = "lb.example.com:6443"
service_cidr = "10.96.0.0/12"
[[control_plane]]
name = "cp1"
address = "10.0.0.10"
[[worker]]
name = "w1"
address = "10.0.0.20"
"#;

fn preset() -> String {
    pki_core::PRESETS
        .iter()
        .find(|(n, _)| *n == "kubeadm")
        .unwrap()
        .1
        .to_owned()
}

fn plan_with(profile_text: &str) -> Plan {
    let spec = ClusterSpec::parse(SPEC, Path::new("rules.toml")).unwrap();
    let profile = Profile::parse(profile_text, Path::new("mutated.toml")).unwrap();
    Plan::with_profile(spec, profile).unwrap()
}

/// Applies `(from, to)` replacements to the preset; each `from` must exist.
fn mutate(edits: &[(&str, &str)]) -> String {
    let mut t = preset();
    for (from, to) in edits {
        assert!(t.contains(from), "fixture edit does not apply: {from:?}");
        t = t.replacen(from, to, 1);
    }
    t
}

fn codes(p: &Plan) -> Vec<Code> {
    p.report.findings.iter().map(|f| f.code).collect()
}

fn case(code: Code, edits: &[(&str, &str)]) {
    let base = plan_with(&preset());
    assert!(
        !codes(&base).contains(&code),
        "{code} fires on the unchanged preset: {:#?}",
        base.report
    );
    let bad = plan_with(&mutate(edits));
    let f = bad.report.with_code(code).next();
    assert!(
        f.is_some(),
        "{code} did not fire; findings: {:#?}",
        bad.report.findings
    );
    let f = f.unwrap();
    assert!(!f.nodes.is_empty(), "{code} names no node");
    assert!(!f.message.is_empty() && !f.hint.is_empty());
}

const APISERVER: &str = "id = \"apiserver\"\nissuer = \"kubernetes-ca\"\nrole = \"server\"";
const APISERVER_SANS: &str =
    r#"sans = ["node-name", "in-cluster-names", "service-ip", "node-ips", "endpoint", "extra"]"#;

#[test]
fn unchanged_kubeadm_preset_is_clean() {
    let p = plan_with(&preset());
    assert!(p.report.findings.is_empty(), "{:#?}", p.report.findings);
}

#[test]
fn s001_unknown_issuer() {
    case(
        Code::S001,
        &[(
            APISERVER,
            "id = \"apiserver\"\nissuer = \"no-such-ca\"\nrole = \"server\"",
        )],
    );
}

#[test]
fn s001_issuer_is_a_leaf() {
    case(
        Code::S001,
        &[(
            APISERVER,
            "id = \"apiserver\"\nissuer = \"admin\"\nrole = \"server\"",
        )],
    );
}

#[test]
fn s002_signing_cycle() {
    case(
        Code::S002,
        &[
            (
                "common_name = \"kubernetes\"\n",
                "common_name = \"kubernetes\"\nissuer = \"front-proxy-ca\"\n",
            ),
            (
                "common_name = \"front-proxy-ca\"\n",
                "common_name = \"front-proxy-ca\"\nissuer = \"kubernetes-ca\"\n",
            ),
        ],
    );
}

#[test]
fn s003_leaf_outlives_ca() {
    case(
        Code::S003,
        &[(
            "common_name = \"kube-apiserver\"\n",
            "common_name = \"kube-apiserver\"\nvalidity = \"20y\"\n",
        )],
    );
}

#[test]
fn s004_path_length() {
    let edits = [
        (
            "common_name = \"kubernetes\"\n",
            "common_name = \"kubernetes\"\npath_len = 0\n",
        ),
        (
            "common_name = \"front-proxy-ca\"\n",
            "common_name = \"front-proxy-ca\"\nissuer = \"kubernetes-ca\"\n",
        ),
    ];
    case(Code::S004, &edits);
    // Near-identical: path_len = 1 allows the intermediate.
    let ok = plan_with(&mutate(&[
        (
            "common_name = \"kubernetes\"\n",
            "common_name = \"kubernetes\"\npath_len = 1\n",
        ),
        edits[1],
    ]));
    assert!(!codes(&ok).contains(&Code::S004), "{:#?}", ok.report);
}

#[test]
fn s005_same_path_twice() {
    case(
        Code::S005,
        &[(
            "cert = \"pki/front-proxy-client.crt\"",
            "cert = \"pki/apiserver.crt\"",
        )],
    );
}

#[test]
fn u001_server_without_server_auth() {
    case(
        Code::U001,
        &[(
            APISERVER,
            "id = \"apiserver\"\nissuer = \"kubernetes-ca\"\nrole = \"client\"",
        )],
    );
}

#[test]
fn u002_client_with_server_auth_only_seed002() {
    case(
        Code::U002,
        &[(
            "common_name = \"kubernetes-admin\"\n",
            "common_name = \"kubernetes-admin\"\next_key_usage = [\"serverAuth\"]\n",
        )],
    );
}

#[test]
fn u003_etcd_server_without_client_auth() {
    case(
        Code::U003,
        &[("role = \"etcd-server\"", "role = \"server\"")],
    );
}

#[test]
fn u004_leaf_with_key_cert_sign() {
    case(
        Code::U004,
        &[(
            "common_name = \"kube-apiserver\"\n",
            "common_name = \"kube-apiserver\"\nkey_usage = [\"digitalSignature\", \"keyCertSign\"]\n",
        )],
    );
}

#[test]
fn u005_no_digital_signature() {
    case(
        Code::U005,
        &[(
            "common_name = \"kube-apiserver\"\n",
            "common_name = \"kube-apiserver\"\nkey_usage = [\"keyEncipherment\"]\n",
        )],
    );
}

#[test]
fn u005_key_encipherment_on_ec_is_a_warning() {
    let p = plan_with(&mutate(&[(
        "common_name = \"kube-apiserver\"\n",
        "common_name = \"kube-apiserver\"\nkey_usage = [\"digitalSignature\", \"keyEncipherment\"]\n",
    )]));
    let f: Vec<_> = p.report.with_code(Code::U005).collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Warning);
}

#[test]
fn u006_client_with_extra_server_auth() {
    case(
        Code::U006,
        &[(
            "common_name = \"kubernetes-admin\"\n",
            "common_name = \"kubernetes-admin\"\next_key_usage = [\"clientAuth\", \"serverAuth\"]\n",
        )],
    );
}

#[test]
fn t001_client_from_wrong_ca() {
    case(
        Code::T001,
        &[(
            "id = \"apiserver-etcd-client\"\nissuer = \"etcd-ca\"",
            "id = \"apiserver-etcd-client\"\nissuer = \"kubernetes-ca\"",
        )],
    );
}

#[test]
fn t002_server_from_ca_the_client_does_not_trust() {
    case(
        Code::T002,
        &[(
            APISERVER,
            "id = \"apiserver\"\nissuer = \"front-proxy-ca\"\nrole = \"server\"",
        )],
    );
}

#[test]
fn t003_signing_ca_differs_from_client_ca() {
    case(
        Code::T003,
        &[(
            "cluster-signing-cert-file = \"kubernetes-ca\"",
            "cluster-signing-cert-file = \"front-proxy-ca\"",
        )],
    );
}

#[test]
fn t004_requestheader_ca_is_client_ca() {
    case(
        Code::T004,
        &[(
            "requestheader-client-ca-file = \"front-proxy-ca\"\nservice",
            "requestheader-client-ca-file = \"kubernetes-ca\"\nservice",
        )],
    );
}

#[test]
fn t005_front_proxy_cn_not_allowed() {
    let mut t = preset();
    t.push_str("\n[values]\nrequestheader_allowed_names = [\"aggregator\"]\n");
    let p = plan_with(&t);
    assert!(codes(&p).contains(&Code::T005), "{:#?}", p.report);
    let mut ok = preset();
    ok.push_str(
        "\n[values]\nrequestheader_allowed_names = [\"aggregator\", \"front-proxy-client\"]\n",
    );
    assert!(!codes(&plan_with(&ok)).contains(&Code::T005));
}

#[test]
fn t006_service_account_flags_name_different_keypairs() {
    case(
        Code::T006,
        &[
            (
                "[[keypair]]\n",
                "[[keypair]]\nid = \"sa2\"\nprivate_key = \"pki/sa2.key\"\npublic_key = \"pki/sa2.pub\"\n\n[[keypair]]\n",
            ),
            (
                "service-account-private-key-file = \"sa\"",
                "service-account-private-key-file = \"sa2\"",
            ),
        ],
    );
}

#[test]
fn t008_etcd_server_cert_from_another_ca() {
    case(
        Code::T008,
        &[(
            "id = \"etcd-server\"\nissuer = \"etcd-ca\"",
            "id = \"etcd-server\"\nissuer = \"kubernetes-ca\"",
        )],
    );
}

fn without_apiserver_san(rule: &str) -> String {
    let sans = APISERVER_SANS
        .replace(&format!("\"{rule}\", "), "")
        .replace(&format!(", \"{rule}\""), "");
    assert_ne!(sans, APISERVER_SANS);
    mutate(&[(APISERVER_SANS, &sans)])
}

fn san_case(code: Code, rule: &str) {
    let p = plan_with(&without_apiserver_san(rule));
    assert!(codes(&p).contains(&code), "{code}: {:#?}", p.report);
    assert!(!codes(&plan_with(&preset())).contains(&code));
}

#[test]
fn n001_endpoint_missing() {
    san_case(Code::N001, "endpoint");
}

#[test]
fn n002_service_ip_missing() {
    san_case(Code::N002, "service-ip");
}

#[test]
fn n003_in_cluster_names_missing() {
    san_case(Code::N003, "in-cluster-names");
}

#[test]
fn n004_node_ip_missing() {
    san_case(Code::N004, "node-ips");
}

#[test]
fn n005_etcd_without_loopback() {
    case(
        Code::N005,
        &[(
            "common_name = \"{node}\"\nsans = [\"node-name\", \"loopback\", \"node-ips\", \"node-hostnames\"]\ncert = \"pki/etcd/server.crt\"",
            "common_name = \"{node}\"\nsans = [\"node-name\", \"node-ips\", \"node-hostnames\"]\ncert = \"pki/etcd/server.crt\"",
        )],
    );
}

#[test]
fn n006_ip_written_as_dns_san() {
    case(
        Code::N006,
        &[(
            APISERVER_SANS,
            &APISERVER_SANS.replace("\"extra\"]", "\"extra\", \"dns:10.1.2.3\"]"),
        )],
    );
}

#[test]
fn i001_scheduler_identity() {
    case(
        Code::I001,
        &[(
            "common_name = \"system:kube-scheduler\"",
            "common_name = \"kube-scheduler\"",
        )],
    );
}

#[test]
fn i002_kubelet_identity() {
    case(
        Code::I002,
        &[(
            "organizations = [\"system:nodes\"]",
            "organizations = [\"nodes\"]",
        )],
    );
}

#[test]
fn i003_admin_in_system_masters() {
    case(
        Code::I003,
        &[(
            "ca = \"kubernetes-ca\"\nbreak_glass = true",
            "ca = \"kubernetes-ca\"\nbreak_glass = false",
        )],
    );
}

#[test]
fn i004_apiserver_kubelet_client_needs_rbac() {
    case(
        Code::I004,
        &[(
            "common_name = \"kube-apiserver-kubelet-client\"\norganizations = [\"kubeadm:cluster-admins\"]",
            "common_name = \"kube-apiserver-kubelet-client\"",
        )],
    );
}

#[test]
fn c001_short_rsa_key() {
    case(
        Code::C001,
        &[(
            "common_name = \"kube-apiserver\"\n",
            "common_name = \"kube-apiserver\"\nalgorithm = \"rsa-1024\"\n",
        )],
    );
}

#[test]
fn c002_long_leaf() {
    let p = plan_with(&mutate(&[(
        "common_name = \"kube-apiserver\"\n",
        "common_name = \"kube-apiserver\"\nvalidity = \"6y\"\n",
    )]));
    assert!(codes(&p).contains(&Code::C002), "{:#?}", p.report);
    assert!(!codes(&p).contains(&Code::S003));
}

#[test]
fn every_plan_time_code_has_a_test_here() {
    let src = include_str!("rules.rs");
    for c in Code::ALL {
        if c.when() == pki_core::When::Plan {
            assert!(src.contains(&format!("Code::{c}")), "no test for {c}");
        }
    }
}

#[test]
fn n002_asks_for_the_primary_family_service_ip_only() {
    let dual = SPEC.replace(
        "service_cidr = \"10.96.0.0/12\"",
        "service_cidr = [\"10.96.0.0/12\", \"fd00:10:96::/112\"]",
    );
    let spec = ClusterSpec::parse(&dual, Path::new("rules.toml")).unwrap();
    let profile = Profile::parse(&preset(), Path::new("kubeadm.toml")).unwrap();
    let plan = Plan::with_profile(spec, profile).unwrap();
    let v6: std::net::IpAddr = "fd00:10:96::1".parse().unwrap();
    let v4: std::net::IpAddr = "10.96.0.1".parse().unwrap();
    fn apiserver(g: &mut pki_core::CertGraph) -> &mut pki_core::CertNode {
        g.nodes
            .iter_mut()
            .find_map(|n| match n {
                pki_core::Node::Cert(c) if c.template == "apiserver" => Some(c),
                _ => None,
            })
            .unwrap()
    }
    let mut g = plan.graph.clone();
    // Both families' first IPs are planned...
    assert!(apiserver(&mut g).sans.ip.contains(&v6));
    // ...but the `kubernetes` Service only has the primary family's.
    apiserver(&mut g).sans.ip.remove(&v6);
    assert!(
        pki_core::validate(&g)
            .with_code(Code::N002)
            .next()
            .is_none()
    );
    apiserver(&mut g).sans.ip.remove(&v4);
    assert!(
        pki_core::validate(&g)
            .with_code(Code::N002)
            .next()
            .is_some()
    );
}

#[test]
fn k001_k002_a_profile_kubeadm_and_cluster_api_cannot_express() {
    // The kubeadm preset is what kubeadm and Cluster API take as it is.
    let base = plan_with(&preset());
    assert!(!codes(&base).contains(&Code::K001), "{:#?}", base.report);
    assert!(!codes(&base).contains(&Code::K002), "{:#?}", base.report);
    // The isolated preset's separate serving CA is neither's split.
    let isolated = pki_core::PRESETS
        .iter()
        .find(|(n, _)| *n == "isolated")
        .unwrap()
        .1;
    let p = plan_with(isolated);
    assert!(codes(&p).contains(&Code::K001), "{:#?}", p.report);
    assert!(codes(&p).contains(&Code::K002), "{:#?}", p.report);
}

#[test]
fn a_node_named_by_its_ip_gets_an_ip_san_from_the_node_name_rule() {
    // A kubelet registered with `--hostname-override=10.0.2.15`: the node
    // is named by its IP. `node-name` then gives an IP SAN (never the IP
    // as a DNS name, N006), and the kubelet identity is that name.
    let text = SPEC.replace("name = \"w1\"", "name = \"10.0.2.15\"");
    let spec = ClusterSpec::parse(&text, Path::new("rules.toml")).unwrap();
    // The isolated preset gives workers a kubelet serving certificate.
    let isolated = pki_core::PRESETS
        .iter()
        .find(|(n, _)| *n == "isolated")
        .unwrap()
        .1;
    let profile = Profile::parse(isolated, Path::new("isolated.toml")).unwrap();
    let plan = Plan::with_profile(spec, profile).unwrap();
    let ip: std::net::IpAddr = "10.0.2.15".parse().unwrap();
    let mut seen = 0;
    for (_, c) in plan.graph.certs() {
        if c.node.as_ref().is_some_and(|n| n.as_str() == "10.0.2.15") {
            assert!(
                !c.sans.dns.iter().any(|d| d.as_str() == "10.0.2.15"),
                "{}: {:?}",
                c.id,
                c.sans
            );
            if c.template == "kubelet-client" {
                assert_eq!(c.subject.common_name, "system:node:10.0.2.15");
            }
            if !c.sans.ip.is_empty() {
                assert!(c.sans.ip.contains(&ip), "{}: {:?}", c.id, c.sans);
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no certificate of node 10.0.2.15 has SANs");
    assert!(
        !plan.report.findings.iter().any(|f| f.code == Code::N006),
        "{:?}",
        plan.report.findings
    );
}

/// A plan of the kubeadm preset with `extra` appended to SPEC.
fn plan_of(extra: &str) -> Plan {
    let spec = ClusterSpec::parse(&format!("{SPEC}{extra}"), Path::new("rules.toml")).unwrap();
    let profile = Profile::parse(&preset(), Path::new("kubeadm.toml")).unwrap();
    Plan::with_profile(spec, profile).unwrap()
}

const TOKEN: &str = "[ca_keys]\nstore = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kpki\"\npin_env = \"KPKI_PKCS11_PIN\"\n";

#[test]
fn x001_the_cluster_signing_ca_in_a_token_while_csr_signing_is_on() {
    // Every CA in the token (no `cas`), CSR signing on: the cluster CA's key
    // must be a file for --cluster-signing-key-file.
    let p = plan_of(TOKEN);
    let f = p.report.with_code(Code::X001).next();
    let f = f.unwrap_or_else(|| panic!("no X001: {:#?}", p.report.findings));
    assert_eq!(f.nodes, vec!["kubernetes-ca".to_owned()]);
    assert_eq!(f.severity, Severity::Error);
    // Named explicitly: the same.
    let p = plan_of(&format!("{TOKEN}cas = [\"kubernetes-ca\"]\n"));
    assert!(codes(&p).contains(&Code::X001));
    // The two ways out: leave that CA on disk, or turn CSR signing off.
    let p = plan_of(&format!("{TOKEN}cas = [\"etcd-ca\", \"front-proxy-ca\"]\n"));
    assert!(!codes(&p).contains(&Code::X001), "{:#?}", p.report);
    let p = plan_of(&format!(
        "{TOKEN}[controller_manager]\ncsr_signing = false\n"
    ));
    assert!(!codes(&p).contains(&Code::X001), "{:#?}", p.report);
    // Files (the default): never.
    assert!(!codes(&plan_of("")).contains(&Code::X001));
}

#[test]
fn x002_each_top_ca_waits_for_the_external_root_until_imported() {
    let p = plan_of("[root]\nexternal = true\n");
    let mut store = pki_core::MemStore::default();
    let waiting = pki_core::waiting(&p, &store).unwrap();
    let mut ids: Vec<&str> = waiting
        .iter()
        .inspect(|f| assert_eq!(f.code, Code::X002))
        .flat_map(|f| f.nodes.iter().map(String::as_str))
        .collect();
    ids.sort();
    assert_eq!(ids, ["etcd-ca", "front-proxy-ca", "kubernetes-ca"]);
    // An imported chain ends the wait for that CA only.
    store.files.insert(
        pki_core::imported_path("etcd-ca"),
        (b"imported".to_vec(), pki_core::Mode::Public),
    );
    let left = pki_core::waiting(&p, &store).unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|f| f.nodes != ["etcd-ca"]));
    // Without an external root nothing waits.
    assert!(pki_core::waiting(&plan_of(""), &store).unwrap().is_empty());
}
