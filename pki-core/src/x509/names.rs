use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

/// A value that does not parse as a [`NodeName`] or a [`Lifetime`]: the
/// message says why (`` `CP_1` is not a DNS-1123 subdomain ... ``).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseValueError {
    /// Why the value was refused.
    pub message: String,
}

impl From<String> for ParseValueError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<ParseValueError> for String {
    fn from(e: ParseValueError) -> Self {
        e.message
    }
}

/// A node name: a valid DNS-1123 subdomain (lower-case alphanumerics, `-`
/// and `.`, each label starting and ending alphanumeric, at most 253 chars).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    /// Parses a node name, returning why it is not a DNS-1123 subdomain.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a node name must not be empty".into());
        }
        if s.len() > 253 {
            return Err(format!("`{s}` is longer than 253 characters"));
        }
        for label in s.split('.') {
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            let ends_ok = label
                .bytes()
                .next()
                .zip(label.bytes().last())
                .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
            if !ok_chars || !ends_ok || label.len() > 63 {
                return Err(format!(
                    "`{s}` is not a DNS-1123 subdomain (lower-case letters, digits, `-` and `.`, \
                     each label starting and ending with a letter or digit)"
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a name known to be valid (a literal).
    pub(crate) fn unchecked(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl FromStr for NodeName {
    type Err = ParseValueError;
    /// As [`NodeName::parse`], with an error type that implements
    /// `std::error::Error` (so `"cp-1".parse::<NodeName>()?` works in a
    /// function returning `Box<dyn Error>`).
    fn from_str(s: &str) -> Result<Self, ParseValueError> {
        Self::parse(s).map_err(ParseValueError::from)
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS name as it may appear in a SAN: labels of letters, digits and `-`,
/// optionally a single `*` as the whole leftmost label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DnsName(String);

impl DnsName {
    /// Parses a DNS SAN, returning why it is invalid.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.parse::<IpAddr>().is_ok() {
            return Err(format!("`{s}` is an IP address, not a DNS name"));
        }
        if s.is_empty() || s.len() > 253 {
            return Err(format!("`{s}` is not a valid DNS name length"));
        }
        if s == "*" || s.starts_with("*.") && !s[2..].contains('.') {
            return Err(format!(
                "`{s}` is a wildcard over a whole top-level domain: Go and OpenSSL match \
                 nothing with it; write `*.` followed by at least two labels"
            ));
        }
        for (i, label) in s.split('.').enumerate() {
            if label == "*" && i == 0 {
                continue;
            }
            if label.contains('*') {
                return Err(format!(
                    "`{s}` has a wildcard that is not the whole leftmost label"
                ));
            }
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("`{s}` is not a valid DNS name"));
            }
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// Wraps a string without checking it (names read from existing
    /// certificates, which the N006 rule then judges). Like [`DnsName::parse`]
    /// it lowercases (ASCII): DNS names compare case-insensitively, as Go and
    /// OpenSSL match them, and every name enters the graph normalised once.
    pub fn unchecked(s: &str) -> Self {
        Self(s.to_ascii_lowercase())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// An IP SAN.
    Ip(IpAddr),
    /// A DNS SAN.
    Dns(DnsName),
}

/// Classifies a SAN string: an IP address becomes an IP SAN, anything else
/// must be a valid DNS name.
pub fn parse_san(s: &str) -> Result<San, String> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(San::Ip(ip)),
        Err(_) => DnsName::parse(s).map(San::Dns),
    }
}

/// The SANs of a certificate, sorted and deduplicated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SanSet {
    /// DNS SANs.
    pub dns: BTreeSet<DnsName>,
    /// IP SANs.
    pub ip: BTreeSet<IpAddr>,
}

impl SanSet {
    /// Adds one SAN.
    pub fn insert(&mut self, san: San) {
        match san {
            San::Ip(ip) => {
                self.ip.insert(ip);
            }
            San::Dns(d) => {
                self.dns.insert(d);
            }
        }
    }

    /// Whether the set covers `host` (an IP or DNS name; wildcards match one label).
    pub fn covers(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => self.ip.contains(ip),
            Host::Dns(name) => self.covers_dns(name.as_str()),
        }
    }

    /// Whether a DNS name is covered, directly or by a leftmost wildcard.
    pub fn covers_dns(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.dns.iter().any(|d| {
            let d = d.as_str();
            if d == name {
                return true;
            }
            match (d.strip_prefix("*."), name.split_once('.')) {
                (Some(suffix), Some((_, rest))) => suffix == rest,
                _ => false,
            }
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty()
    }
}

/// A host: an IP address or a DNS name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A DNS name.
    Dns(DnsName),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(d) => write!(f, "{d}"),
        }
    }
}

impl Host {
    /// The host as a SAN.
    pub fn to_san(&self) -> San {
        match self {
            Host::Ip(ip) => San::Ip(*ip),
            Host::Dns(d) => San::Dns(d.clone()),
        }
    }
}

/// An IP network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub network: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// The first usable address: the network address plus one. This is the
    /// ClusterIP of the `kubernetes` Service (10.96.0.0/12 -> 10.96.0.1).
    pub fn first_ip(&self) -> Option<IpAddr> {
        match self.network {
            IpAddr::V4(n) => u32::from(n).checked_add(1).map(|v| IpAddr::V4(v.into())),
            IpAddr::V6(n) => u128::from(n).checked_add(1).map(|v| IpAddr::V6(v.into())),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a CIDR (expected ADDRESS/PREFIX)"))?;
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` in `{s}` is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`{prefix}` in `{s}` is not a prefix length"))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(format!(
                "prefix /{prefix} in `{s}` is longer than {bits} bits"
            ));
        }
        if prefix == bits {
            return Err(format!(
                "`{s}` holds a single address; a service CIDR needs room"
            ));
        }
        let network = match ip {
            IpAddr::V4(a) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - prefix)
                };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if network != ip {
            return Err(format!(
                "`{s}` has host bits set (the network is {network}/{prefix})"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A certificate lifetime, written with `h`, `d` or `y` units (`87600h`,
/// `3650d`, `10y`; a year is 365 days).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lifetime {
    hours: u64,
}

impl Lifetime {
    /// A lifetime of whole hours.
    pub const fn from_hours(hours: u64) -> Self {
        Self { hours }
    }
    /// A lifetime of whole days.
    pub const fn from_days(days: u64) -> Self {
        Self { hours: days * 24 }
    }
    /// The lifetime in hours.
    pub const fn hours(&self) -> u64 {
        self.hours
    }
    /// The lifetime as a `time::Duration`.
    pub fn duration(&self) -> time::Duration {
        time::Duration::hours(i64::try_from(self.hours).unwrap_or(i64::MAX))
    }
}

impl FromStr for Lifetime {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, ParseValueError> {
        Self::parse_str(s).map_err(ParseValueError::from)
    }
}

impl Lifetime {
    fn parse_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        // Split before the last character (not byte: units may be any text).
        let split = s.char_indices().last().map_or(0, |(i, _)| i);
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("`{s}` is not a lifetime (a whole number followed by h, d or y, e.g. \"10y\")")
        })?;
        let hours = match unit {
            "h" => Some(n),
            "d" => n.checked_mul(24),
            "y" => n.checked_mul(24 * 365),
            _ => {
                return Err(format!(
                    "`{s}` has no known unit: the units are h (hours), d (days) and y (365-day years), e.g. \"8760h\", \"365d\", \"1y\" (weeks and months are not units: write 14d, 30d)"
                ));
            }
        };
        match hours {
            Some(0) => Err(format!("`{s}` is a zero lifetime")),
            Some(h) if h <= 24 * 365 * 200 => Ok(Self { hours: h }),
            _ => Err(format!("`{s}` is longer than 200 years")),
        }
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.hours;
        if h.is_multiple_of(24 * 365) {
            write!(f, "{}y", h / (24 * 365))
        } else if h.is_multiple_of(24) {
            write!(f, "{}d", h / 24)
        } else {
            write!(f, "{h}h")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ip_of_service_cidrs() {
        let c: Cidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(c.first_ip().unwrap().to_string(), "10.96.0.1");
        let c: Cidr = "10.100.0.0/16".parse().unwrap();
        assert_eq!(c.first_ip().unwrap().to_string(), "10.100.0.1");
        let c: Cidr = "fd00:10:96::/112".parse().unwrap();
        assert_eq!(c.first_ip().unwrap().to_string(), "fd00:10:96::1");
        assert!("10.96.0.1/12".parse::<Cidr>().is_err());
        assert!("10.96.0.0/33".parse::<Cidr>().is_err());
        assert!("10.96.0.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn node_names_are_dns1123() {
        assert!(NodeName::parse("k8s-master-1").is_ok());
        assert!(NodeName::parse("node1.corp.local").is_ok());
        assert!(NodeName::parse("Node1").is_err());
        assert!(NodeName::parse("-a").is_err());
        assert!(NodeName::parse("a_b").is_err());
        assert!(NodeName::parse("").is_err());
    }

    #[test]
    fn sans_are_classified_and_wildcards_checked() {
        assert_eq!(
            parse_san("10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert!(matches!(parse_san("k8s-master-lb").unwrap(), San::Dns(_)));
        assert!(parse_san("*.example.com").is_ok());
        assert!(parse_san("a.*.example.com").is_err());
        assert!(parse_san("f*o.example.com").is_err());
        let mut set = SanSet::default();
        set.insert(parse_san("*.example.com").unwrap());
        assert!(set.covers_dns("api.example.com"));
        assert!(!set.covers_dns("a.b.example.com"));
    }

    #[test]
    fn lifetimes_parse_units() {
        assert_eq!("10y".parse::<Lifetime>().unwrap().hours(), 87600);
        assert_eq!("3650d".parse::<Lifetime>().unwrap().hours(), 87600);
        assert_eq!("87600h".parse::<Lifetime>().unwrap().hours(), 87600);
        assert!("10".parse::<Lifetime>().is_err());
        assert!("10w".parse::<Lifetime>().is_err());
        assert!("0d".parse::<Lifetime>().is_err());
        assert!("y".parse::<Lifetime>().is_err());
        // Fuzz regression: a multi-byte unit must not split inside a character.
        assert!("1é".parse::<Lifetime>().is_err());
    }
}
