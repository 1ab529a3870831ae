//! Property tests for the small value parsers every spec and profile goes
//! through: SAN classification, service CIDRs and their first IP, subject
//! placeholder rendering and lifetimes.
//!
//! Each property runs proptest's default number of cases (or fewer), so the
//! whole file takes a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pki_core::{Cidr, DnsName, Lifetime, NodeName, San, SubjectTemplate, parse_san};
use proptest::prelude::*;

/// A DNS label that starts with a letter (so no name made of them is an IP
/// address), in mixed case, 1 to 20 characters.
fn dns_label() -> impl Strategy<Value = String> {
    "[a-zA-Z]([a-zA-Z0-9_-]{0,18}[a-zA-Z0-9])?"
}

/// One to four labels joined with dots.
fn dns_name() -> impl Strategy<Value = String> {
    prop::collection::vec(dns_label(), 1..=4).prop_map(|labels| labels.join("."))
}

/// A DNS-1123 label: lower-case alphanumerics and `-`, alphanumeric at both ends.
fn node_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?"
}

/// A name `NodeName::parse` accepts: one to four DNS-1123 labels.
fn node_name() -> impl Strategy<Value = String> {
    prop::collection::vec(node_label(), 1..=4).prop_map(|labels| labels.join("."))
}

/// A piece of a subject template: literal text without braces, or one of
/// the two known placeholders.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Node,
    Cluster,
}

fn template() -> impl Strategy<Value = Vec<Piece>> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9:@ ._-]{0,8}".prop_map(Piece::Text),
            Just(Piece::Node),
            Just(Piece::Cluster),
        ],
        0..8,
    )
}

fn template_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Node => "{node}",
            Piece::Cluster => "{cluster}",
        })
        .collect()
}

fn expanded(pieces: &[Piece], node: &str, cluster: &str) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Node => node,
            Piece::Cluster => cluster,
        })
        .collect()
}

const MAX_LIFETIME_HOURS: u64 = 24 * 365 * 200;

proptest! {
    // --- SAN classification ------------------------------------------------

    #[test]
    fn formatted_ip_addresses_are_ip_sans(ip in any::<IpAddr>()) {
        prop_assert_eq!(parse_san(&ip.to_string()), Ok(San::Ip(ip)));
    }

    #[test]
    fn ipv4_and_ipv6_addresses_keep_their_family(v4 in any::<Ipv4Addr>(), v6 in any::<Ipv6Addr>()) {
        prop_assert_eq!(parse_san(&v4.to_string()), Ok(San::Ip(IpAddr::V4(v4))));
        prop_assert_eq!(parse_san(&v6.to_string()), Ok(San::Ip(IpAddr::V6(v6))));
        // DnsName refuses IP addresses outright.
        prop_assert!(DnsName::parse(&v4.to_string()).is_err());
        prop_assert!(DnsName::parse(&v6.to_string()).is_err());
    }

    #[test]
    fn dns_label_strings_are_dns_sans_or_errors_never_ips(name in dns_name()) {
        match parse_san(&name) {
            Ok(San::Dns(d)) => prop_assert_eq!(d.as_str(), name.to_ascii_lowercase()),
            Ok(San::Ip(ip)) => prop_assert!(false, "`{}` classified as IP {}", name, ip),
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_label_shaped_strings_are_never_ips(name in "[a-zA-Z_-][a-zA-Z0-9_.*-]{0,40}") {
        prop_assert!(!matches!(parse_san(&name), Ok(San::Ip(_))));
    }

    #[test]
    fn a_whole_leftmost_wildcard_label_is_accepted(rest in dns_name()) {
        let name = format!("*.{rest}");
        match parse_san(&name) {
            Ok(San::Dns(d)) => prop_assert_eq!(d.as_str(), name.to_ascii_lowercase()),
            // A wildcard over a single label (`*.com`, or bare `*`) matches
            // nothing in Go or OpenSSL: refused.
            Err(e) if !rest.contains('.') => prop_assert!(e.contains("wildcard"), "{}", e),
            other => prop_assert!(false, "`{}` gave {:?}", name, other),
        }
    }

    #[test]
    fn a_wildcard_inside_the_leftmost_label_is_rejected(
        (before, after) in ("[a-z0-9]{0,5}", "[a-z0-9*]{0,5}")
            .prop_filter("the bare `*` label is valid", |(a, b)| !a.is_empty() || !b.is_empty()),
        rest in prop::collection::vec(dns_label(), 0..3),
    ) {
        let mut labels = vec![format!("{before}*{after}")];
        labels.extend(rest);
        let name = labels.join(".");
        prop_assert!(parse_san(&name).is_err(), "`{}` was accepted", name);
    }

    #[test]
    fn a_wildcard_in_any_later_label_is_rejected(
        labels in prop::collection::vec(dns_label(), 2..5),
        index in any::<prop::sample::Index>(),
        (before, after) in ("[a-z0-9]{0,5}", "[a-z0-9*]{0,5}"),
        leftmost_wildcard in any::<bool>(),
    ) {
        let mut labels = labels;
        // Any label but the first (which may itself be a valid `*`).
        let i = 1 + index.index(labels.len() - 1);
        labels[i] = format!("{before}*{after}");
        if leftmost_wildcard {
            labels[0] = "*".to_owned();
        }
        let name = labels.join(".");
        prop_assert!(parse_san(&name).is_err(), "`{}` was accepted", name);
    }

    // --- CIDR -> service IP --------------------------------------------------

    #[test]
    fn v4_service_cidr_first_ip_is_network_plus_one(addr in any::<u32>(), prefix in 8u8..=30) {
        let mask = u32::MAX << (32 - prefix);
        let network = Ipv4Addr::from(addr & mask);
        let text = format!("{network}/{prefix}");
        let cidr: Cidr = text.parse().unwrap();
        prop_assert_eq!(cidr.network, IpAddr::V4(network));
        prop_assert_eq!(cidr.prefix, prefix);
        prop_assert_eq!(&cidr.to_string(), &text);
        let first = cidr.first_ip().unwrap();
        prop_assert_eq!(first, IpAddr::V4(Ipv4Addr::from(u32::from(network) + 1)));
        let IpAddr::V4(first) = first else { panic!("{first} is not IPv4") };
        prop_assert_eq!(u32::from(first) & mask, u32::from(network), "{} is outside {}", first, text);
    }

    #[test]
    fn v6_service_cidr_first_ip_is_network_plus_one(addr in any::<u128>(), prefix in 8u8..=126) {
        let mask = u128::MAX << (128 - prefix);
        let network = Ipv6Addr::from(addr & mask);
        let text = format!("{network}/{prefix}");
        let cidr: Cidr = text.parse().unwrap();
        prop_assert_eq!(cidr.network, IpAddr::V6(network));
        prop_assert_eq!(cidr.prefix, prefix);
        prop_assert_eq!(&cidr.to_string(), &text);
        let first = cidr.first_ip().unwrap();
        prop_assert_eq!(first, IpAddr::V6(Ipv6Addr::from(u128::from(network) + 1)));
        let IpAddr::V6(first) = first else { panic!("{first} is not IPv6") };
        prop_assert_eq!(u128::from(first) & mask, u128::from(network), "{} is outside {}", first, text);
    }

    #[test]
    fn v4_cidrs_with_host_bits_set_are_rejected(
        addr in any::<u32>(),
        prefix in 1u8..=31,
        host in any::<u32>(),
    ) {
        let host_mask = u32::MAX >> prefix;
        // Force at least one host bit on.
        let host = (host & host_mask).max(1);
        let ip = Ipv4Addr::from((addr & !host_mask) | host);
        let text = format!("{ip}/{prefix}");
        prop_assert!(text.parse::<Cidr>().is_err(), "`{}` was accepted", text);
    }

    #[test]
    fn v6_cidrs_with_host_bits_set_are_rejected(
        addr in any::<u128>(),
        prefix in 1u8..=127,
        host in any::<u128>(),
    ) {
        let host_mask = u128::MAX >> prefix;
        let host = (host & host_mask).max(1);
        let ip = Ipv6Addr::from((addr & !host_mask) | host);
        let text = format!("{ip}/{prefix}");
        prop_assert!(text.parse::<Cidr>().is_err(), "`{}` was accepted", text);
    }

    // --- subject rendering ---------------------------------------------------

    #[test]
    fn rendering_replaces_every_known_placeholder(
        node in node_name(),
        cluster in node_name(),
        cn in template(),
        orgs in prop::collection::vec(template(), 0..3),
    ) {
        prop_assert!(NodeName::parse(&node).is_ok(), "generated an invalid node name `{}`", node);
        let subject = SubjectTemplate {
            common_name: template_text(&cn),
            organizations: orgs.iter().map(|o| template_text(o)).collect(),
        };
        let (rendered_cn, rendered_orgs) = subject.render(Some(&node), &cluster);
        prop_assert_eq!(&rendered_cn, &expanded(&cn, &node, &cluster));
        prop_assert_eq!(rendered_orgs.len(), orgs.len());
        for (got, pieces) in rendered_orgs.iter().zip(&orgs) {
            prop_assert_eq!(got, &expanded(pieces, &node, &cluster));
        }
        for s in std::iter::once(&rendered_cn).chain(&rendered_orgs) {
            prop_assert!(!s.contains('{') && !s.contains('}'), "`{}` still has a brace", s);
        }
    }

    #[test]
    fn rendering_without_a_node_keeps_node_placeholders(
        cluster in node_name(),
        cn in template(),
    ) {
        let subject = SubjectTemplate { common_name: template_text(&cn), organizations: vec![] };
        let (rendered, orgs) = subject.render(None, &cluster);
        prop_assert_eq!(rendered, expanded(&cn, "{node}", &cluster));
        prop_assert!(orgs.is_empty());
    }

    // --- lifetimes -----------------------------------------------------------

    #[test]
    fn lifetime_display_parses_back(
        hours in prop_oneof![
            1..=MAX_LIFETIME_HOURS,
            (1..=200 * 365u64).prop_map(|d| d * 24),
            (1..=200u64).prop_map(|y| y * 24 * 365),
        ],
    ) {
        let lifetime = Lifetime::from_hours(hours);
        let text = lifetime.to_string();
        prop_assert_eq!(text.parse::<Lifetime>(), Ok(lifetime), "via `{}`", text);
        prop_assert_eq!(lifetime.hours(), hours);
    }

    #[test]
    fn lifetime_units_agree(years in 1..=200u64) {
        let y: Lifetime = format!("{years}y").parse().unwrap();
        let d: Lifetime = format!("{}d", years * 365).parse().unwrap();
        let h: Lifetime = format!("{}h", years * 365 * 24).parse().unwrap();
        prop_assert_eq!(y, d);
        prop_assert_eq!(d, h);
    }
}
