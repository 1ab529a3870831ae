//! `kpki init --from DIR`: a spec (and, when no preset fits, a profile)
//! that describes an observed directory, with its CAs as `[[existing_ca]]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use crate::graph::{CertNode, NodeId};
use crate::observe::Observation;
use crate::spec::{ClusterSpec, EtcdTopology, NodeSpec};
use crate::x509::{Cidr, Host, KeyAlgorithm, Lifetime, NodeName};

/// What `kpki init --from` writes, and what it found and assumed.
#[derive(Clone, Debug, Default)]
pub struct Adoption {
    /// The spec text (TOML, parsed by kpki's own parser before it is returned).
    pub spec: String,
    /// A profile to write next to the spec (file name, TOML), when no preset fits.
    pub profile: Option<(String, String)>,
    /// What was read from the files, one line each.
    pub found: Vec<String>,
    /// What the files could not tell (a default was written), one line each.
    pub assumed: Vec<String>,
    /// What the user must act on (a CA without its key), one line each.
    pub warnings: Vec<String>,
    /// How many of the directory's mistakes the profile copies (each is a
    /// warning, and an error finding of the plan until fixed); none with
    /// [`AdoptOptions::fix`].
    pub mistakes: usize,
    /// With [`AdoptOptions::fix`]: the directory's mistakes written with
    /// kpki's values instead, one line each (kpki's value, the directory's,
    /// the codes; `check DIR --spec` reports their certificates as D003).
    pub fixed: Vec<String>,
    /// The leaf templates of [`Adoption::fixed`], in the same order.
    pub fixed_templates: Vec<String>,
}

/// How [`adopt_with`] writes the spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdoptOptions {
    /// Write kpki's values for each of the directory's mistakes instead of
    /// copying them (`kpki init --from DIR --fix`): the plan is clean of
    /// them, and `check DIR --spec` reports the fixed certificates as D003.
    pub fix: bool,
}

/// An adopted CA entry.
struct CaEntry {
    id: String,
    cert: String,
    key: String,
    key_found: bool,
}

pub(super) fn quote(s: &str) -> String {
    // TOML basic string: JSON string escaping is a subset TOML accepts.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `body` (a profile as `toml` writes it) with each note's comment lines
/// put before the `[[leaf]]` whose id it names.
fn annotate(body: &str, notes: &[(String, Vec<String>)]) -> String {
    if notes.is_empty() {
        return body.to_owned();
    }
    // Split into blocks at table headers; a block is annotated when it is a
    // `[[leaf]]` with a noted id.
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in body.lines() {
        if line.starts_with('[') {
            blocks.push(Vec::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push(line);
        }
    }
    let mut out = String::new();
    for b in blocks {
        if b.first() == Some(&"[[leaf]]") {
            for (id, lines) in notes {
                if b.iter().any(|l| *l == format!("id = {}", quote(id))) {
                    for l in lines {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        for l in b {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The observed directory's kpki spec, describing it as it is (its
/// mistakes copied and marked). `dir` anchors the files' absolute paths
/// (pass an absolute directory); `spec_path` is where the spec will be
/// written (its text is parsed against it).
pub fn adopt(obs: &Observation, dir: &Path, spec_path: &Path) -> Result<Adoption, crate::Error> {
    adopt_with(obs, dir, spec_path, AdoptOptions::default())
}

/// [`adopt`], with `options` (`fix`: kpki's values for the directory's
/// mistakes).
pub fn adopt_with(
    obs: &Observation,
    dir: &Path,
    spec_path: &Path,
    options: AdoptOptions,
) -> Result<Adoption, crate::Error> {
    let mut a = Adoption::default();
    let g = &obs.graph;
    let certs: Vec<(NodeId, &CertNode)> = g.certs().collect();
    let apiserver = certs
        .iter()
        .map(|(_, c)| *c)
        .find(|c| {
            c.sans
                .dns
                .iter()
                .any(|d| d.as_str().starts_with("kubernetes.default.svc."))
        })
        .or_else(|| {
            certs
                .iter()
                .map(|(_, c)| *c)
                .find(|c| c.template == "apiserver")
        });
    // DNS domain.
    let domain = apiserver.and_then(|c| {
        c.sans.dns.iter().find_map(|d| {
            d.as_str()
                .strip_prefix("kubernetes.default.svc.")
                .map(str::to_owned)
        })
    });
    match &domain {
        Some(d) => a.found.push(format!(
            "DNS domain {d} (apiserver SAN kubernetes.default.svc.{d})"
        )),
        None => a.assumed.push(format!(
            "DNS domain {} (no apiserver SAN kubernetes.default.svc.<domain>)",
            obs.spec.cluster.dns_domain
        )),
    }
    let domain = domain.unwrap_or_else(|| obs.spec.cluster.dns_domain.to_string());
    // Endpoint.
    let endpoint = &obs.spec.cluster.endpoint;
    let endpoint_text = match endpoint.host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", endpoint.port),
        _ => format!("{}:{}", endpoint.host, endpoint.port),
    };
    a.found
        .push(format!("control-plane endpoint {}", endpoint.url()));
    let endpoint_ip = match endpoint.host {
        Host::Ip(ip) => Some(ip),
        Host::Dns(_) => None,
    };
    // Node addresses: the IP SANs of each node's certificates, but the
    // apiserver's (it also holds the endpoint, the service IP and extras).
    let mut node_ips: BTreeMap<NodeName, Vec<IpAddr>> = BTreeMap::new();
    for (_, c) in &certs {
        let Some(n) = &c.node else { continue };
        if apiserver.is_some_and(|x| x.id == c.id) {
            continue;
        }
        let ips = node_ips.entry(n.clone()).or_default();
        for ip in &c.sans.ip {
            if !ip.is_loopback() && Some(*ip) != endpoint_ip && !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    // A certificate shared by every node (one hosts list for all) names
    // the other nodes' addresses, the VIP and the service IP too: a node's
    // own IPs are neither another node's address nor the apiserver's.
    let known: Vec<(NodeName, IpAddr)> = obs
        .spec
        .control_plane
        .iter()
        .chain(match &obs.spec.etcd {
            EtcdTopology::Stacked => [].iter(),
            EtcdTopology::External(m) => m.iter(),
        })
        .chain(&obs.spec.workers)
        .map(|n| (n.name.clone(), n.address))
        .collect();
    // An IP the certificates of several nodes hold is none of them alone.
    let mut holders: BTreeMap<IpAddr, BTreeSet<&NodeName>> = BTreeMap::new();
    for (n, ips) in &node_ips {
        for ip in ips {
            holders.entry(*ip).or_default().insert(n);
        }
    }
    let node_of = |n: &NodeSpec| -> NodeSpec {
        let mut ips: Vec<IpAddr> = node_ips
            .get(&n.name)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|ip| {
                *ip == n.address
                    || (holders.get(ip).is_none_or(|h| h.len() == 1)
                        && !known.iter().any(|(m, a)| *m != n.name && a == ip))
            })
            .collect();
        if ips.is_empty() {
            ips.push(n.address);
        }
        let address = if ips.contains(&n.address) {
            n.address
        } else {
            ips[0]
        };
        NodeSpec {
            name: n.name.clone(),
            address,
            extra_ips: ips.into_iter().filter(|i| *i != address).collect(),
            hostnames: n.hostnames.clone(),
        }
    };
    let cp: Vec<NodeSpec> = obs.spec.control_plane.iter().map(node_of).collect();
    let mut etcd: Vec<NodeSpec> = match &obs.spec.etcd {
        EtcdTopology::Stacked => Vec::new(),
        EtcdTopology::External(m) => m.iter().map(node_of).collect(),
    };
    let mut workers: Vec<NodeSpec> = obs.spec.workers.iter().map(node_of).collect();
    // Recognition may name one host twice (a control-plane node and a
    // worker at the same address): a spec gives each node its own address,
    // so the later one is left out.
    // The name a certificate gave (a kubelet's `system:node:NAME`) wins
    // over one made up from the address (`node-10-0-2-15`).
    let made_up = |n: &NodeSpec| {
        n.name.as_str() == format!("node-{}", n.address.to_string().replace(['.', ':'], "-"))
    };
    let mut cp = cp;
    // One control-plane node, at an address its apiserver certificate does
    // not hold, where that certificate holds the endpoint IP and no node is
    // there: the master is the endpoint (one master and no VIP, as seed
    // 001's 10.0.4.15). Recognition's guess was another node's host.
    if let (Some(api), Some(ep), [only]) = (apiserver, endpoint_ip, cp.as_mut_slice())
        && made_up(only)
        && !api.sans.ip.contains(&only.address)
        && api.sans.ip.contains(&ep)
        && !etcd.iter().chain(&workers).any(|n| n.address == ep)
        && let Ok(name) =
            NodeName::parse(&format!("node-{}", ep.to_string().replace(['.', ':'], "-")))
    {
        a.assumed.push(format!(
            "control-plane node {name} at {ep}, the endpoint its apiserver certificate holds (not {}, which it lacks)",
            only.address
        ));
        only.extra_ips.retain(|i| *i != ep && *i != only.address);
        only.address = ep;
        only.name = name;
    }
    for n in &mut cp {
        // (A name that is an IP address is fine: the node-name SAN rule
        // makes it an IP SAN.)
        if made_up(n)
            && let Some(other) = etcd
                .iter()
                .chain(&workers)
                .find(|o| o.address == n.address && !made_up(o))
        {
            a.assumed.push(format!(
                "control-plane node {} named {} (the name its certificates give)",
                n.address, other.name
            ));
            n.name = other.name.clone();
        }
    }
    let mut used: BTreeSet<IpAddr> = cp.iter().map(|n| n.address).collect();
    for (list, nodes) in [("etcd", &mut etcd), ("worker", &mut workers)] {
        nodes.retain(|n| {
            let fresh = used.insert(n.address);
            if !fresh {
                a.assumed.push(format!(
                    "{list} node {} left out: its address {} is another node's (the same host)",
                    n.name, n.address
                ));
            }
            fresh
        });
    }
    for (list, nodes) in [
        ("control-plane", &cp),
        ("etcd", &etcd),
        ("worker", &workers),
    ] {
        for n in nodes {
            let src = if node_ips.contains_key(&n.name) {
                "from its certificates' IP SANs"
            } else {
                "no certificate of its own names an address: the layout's guess"
            };
            a.found.push(format!(
                "{list} node {} at {}{} ({src})",
                n.name,
                n.address,
                if n.extra_ips.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", also {}",
                        n.extra_ips
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
    }
    let all_node_ips: BTreeSet<IpAddr> = cp
        .iter()
        .chain(&etcd)
        .chain(&workers)
        .flat_map(|n| n.ips().collect::<Vec<_>>())
        .collect();
    // Service CIDR: the apiserver's first service IP (x.y.z.1 that is no
    // node's address and not the endpoint).
    let service_ip = apiserver.and_then(|c| {
        c.sans.ip.iter().copied().find(|ip| {
            !ip.is_loopback()
                && !all_node_ips.contains(ip)
                && Some(*ip) != endpoint_ip
                && match ip {
                    IpAddr::V4(v) => v.octets()[3] == 1,
                    IpAddr::V6(v) => v.segments()[7] == 1,
                }
        })
    });
    // The apiserver's own --service-cluster-ip-range, when a unit or
    // manifest in DIR gives it (the first range: kpki plans one).
    // (The configuration is read directly: `check` without a spec may
    // itself adopt DIR to phrase its hints.)
    let configuration = crate::observe::config::read(&[crate::observe::config::Root {
        dir: dir.to_path_buf(),
        shown: String::new(),
        whole: false,
    }]);
    let flag_cidr = configuration.components.iter().find_map(|c| {
        if c.component != crate::k8s::Component::KubeApiserver {
            return None;
        }
        let s = c.get("service-cluster-ip-range")?;
        let v = s.value.as_deref()?.split(',').next()?.trim().to_owned();
        v.parse::<Cidr>().ok().map(|_| (v, s.origin.to_string()))
    });
    let service_cidr = match (flag_cidr, service_ip) {
        (Some((cidr, origin)), _) => {
            a.found.push(format!(
                "service CIDR {cidr} (kube-apiserver --service-cluster-ip-range, {origin})"
            ));
            cidr
        }
        (None, service_ip) => match service_ip {
            Some(IpAddr::V4(v)) if v.octets() == [10, 96, 0, 1] => {
                a.found.push(
                    "service CIDR 10.96.0.0/12 (apiserver SAN 10.96.0.1, kubeadm's default range)"
                        .into(),
                );
                "10.96.0.0/12".to_owned()
            }
            Some(IpAddr::V4(v)) => {
                let o = v.octets();
                let cidr = if o[2] == 0 {
                    format!("{}.{}.0.0/16", o[0], o[1])
                } else {
                    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
                };
                a.found.push(format!("service IP {v} (apiserver SAN)"));
                a.assumed.push(format!(
                "service CIDR {cidr}: certificates hold only its first IP; set the real range (kube-apiserver --service-cluster-ip-range)"
            ));
                cidr
            }
            Some(IpAddr::V6(v)) => {
                let net = std::net::Ipv6Addr::from(u128::from(v) - 1);
                let cidr = format!("{net}/112");
                a.found.push(format!("service IP {v} (apiserver SAN)"));
                a.assumed.push(format!(
                    "service CIDR {cidr}: certificates hold only its first IP; set the real range"
                ));
                cidr
            }
            None => {
                let c = obs
                    .spec
                    .cluster
                    .service_cidrs
                    .first()
                    .map_or_else(|| "10.96.0.0/12".to_owned(), Cidr::to_string);
                a.assumed.push(format!(
                    "service CIDR {c} (the apiserver certificate holds no service IP)"
                ));
                c
            }
        },
    };
    // Key algorithm: the leaves' most common, else the CAs'.
    let mut algs: BTreeMap<String, (usize, KeyAlgorithm)> = BTreeMap::new();
    for (_, c) in certs.iter().filter(|(_, c)| !c.is_ca) {
        if let Some(k) = c.key.algorithm() {
            algs.entry(k.as_str().to_owned()).or_insert((0, k)).0 += 1;
        }
    }
    let algorithm = algs
        .values()
        .max_by_key(|(n, _)| *n)
        .map(|(_, k)| *k)
        .or_else(|| certs.iter().find_map(|(_, c)| c.key.algorithm()));
    match algorithm {
        Some(k) => a.found.push(format!("key algorithm {k} (most leaf keys)")),
        None => a
            .assumed
            .push("key algorithm ecdsa-p256 (no key kpki can generate was found)".into()),
    }
    let algorithm = algorithm.unwrap_or(KeyAlgorithm::EcdsaP256);
    // Validities: the first CA's lifetime, the leaves' most common one.
    let days = |l: Lifetime| {
        let h = l.hours();
        // openssl and cfssl count days; round to whole days when within an hour.
        Lifetime::from_hours((h + 1) / 24 * 24).max(Lifetime::from_hours(1))
    };
    let ca_validity = certs
        .iter()
        .find(|(_, c)| c.is_ca)
        .map(|(_, c)| days(c.validity.lifetime));
    let mut lifetimes: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, c) in certs.iter().filter(|(_, c)| !c.is_ca) {
        *lifetimes
            .entry(days(c.validity.lifetime).hours())
            .or_default() += 1;
    }
    let leaf_validity = lifetimes
        .iter()
        .max_by_key(|(h, n)| (**n, std::cmp::Reverse(**h)))
        .map(|(h, _)| Lifetime::from_hours(*h));
    let ca_validity = ca_validity.unwrap_or(obs.spec.crypto.ca_validity);
    let mut leaf_validity = leaf_validity.unwrap_or(obs.spec.crypto.leaf_validity);
    // Leaves issued now must not outlive the adopted CAs (S003): cut to
    // the whole days the first CA to expire has left.
    let now = time::OffsetDateTime::now_utc();
    if let Some(end) = certs
        .iter()
        .filter(|(_, c)| c.is_ca)
        .filter_map(|(_, c)| c.validity.not_after)
        .min()
    {
        let left_days = (end - now).whole_days();
        if left_days >= 1 && leaf_validity.duration() > end - now {
            let cut = Lifetime::from_hours(u64::try_from(left_days).unwrap_or(1) * 24);
            a.assumed.push(format!(
                "leaf validity {cut}, not the leaves' {leaf_validity}: a leaf issued now must not outlive the first adopted CA to expire ({end})"
            ));
            leaf_validity = cut;
        }
    }
    a.found.push(format!(
        "validity: CAs {ca_validity}, leaves {leaf_validity} (the most common leaf lifetime)"
    ));
    // Subject fields of the CAs.
    let subject = certs
        .iter()
        .filter(|(_, c)| c.is_ca)
        .map(|(_, c)| &c.subject)
        .find(|s| {
            s.country.is_some()
                || s.state.is_some()
                || s.locality.is_some()
                || !s.organizational_units.is_empty()
        });
    // The CAs, with their files (absolute).
    let mut cas: Vec<CaEntry> = Vec::new();
    for (id, c) in certs.iter().filter(|(_, c)| c.is_ca) {
        if !obs.profile.cas.iter().any(|t| t.id == c.template) {
            continue;
        }
        let Some(file) = obs.files.get(id) else {
            continue;
        };
        let cert = dir.join(file);
        let (key, key_found) = match &c.key_path {
            Some(k) => (dir.join(k), true),
            None => {
                let guess = if let Some(stem) = file.strip_suffix(".pem") {
                    format!("{stem}-key.pem")
                } else if let Some(stem) = file.strip_suffix(".crt") {
                    format!("{stem}.key")
                } else {
                    format!("{file}.key")
                };
                (dir.join(guess), false)
            }
        };
        a.found.push(format!(
            "CA {} (CN={}) in {}{}",
            c.template,
            c.subject.common_name,
            file,
            if key_found { ", with its key" } else { "" }
        ));
        if !key_found {
            a.warnings.push(format!(
                "CA {} has no private key in {}: kpki needs it to sign leaves; put it at {} (the spec names that path) before `kpki issue`",
                c.template,
                dir.display(),
                key.display()
            ));
        }
        cas.push(CaEntry {
            id: c.template.clone(),
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            key_found,
        });
    }
    let profile_name = &obs.profile.name;
    let preset = crate::profile::PRESETS
        .iter()
        .any(|(n, _)| n == profile_name);
    a.found.push(format!(
        "profile {profile_name}, {}{}",
        obs.kind.describe(),
        if preset { "" } else { ": not a preset" }
    ));
    if !preset {
        a.warnings.push(format!(
            "profile {profile_name} is not a preset: write it as a profile file and set `profile` to its path"
        ));
    }
    let render = |extra: &[String]| -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# Written by `kpki init --from {}`: a spec that describes that PKI.",
            dir.display()
        );
        let _ = writeln!(
            t,
            "# Its CAs are adopted ([[existing_ca]]): `kpki issue` keeps them byte for byte."
        );
        let _ = writeln!(t, "profile = {}\n", quote(profile_name));
        let _ = writeln!(t, "[cluster]");
        let _ = writeln!(t, "name = {}", quote(&obs.spec.cluster.name));
        let _ = writeln!(t, "dns_domain = {}", quote(&domain));
        let _ = writeln!(t, "service_cidr = {}", quote(&service_cidr));
        let _ = writeln!(t, "endpoint = {}", quote(&endpoint_text));
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|s| quote(s)).collect();
            let _ = writeln!(t, "extra_sans = [{}]", list.join(", "));
        }
        let _ = writeln!(t, "\n[crypto]");
        let _ = writeln!(t, "algorithm = {}", quote(algorithm.as_str()));
        let _ = writeln!(t, "ca_validity = {}", quote(&ca_validity.to_string()));
        let _ = writeln!(t, "leaf_validity = {}", quote(&leaf_validity.to_string()));
        if let Some(s) = subject {
            let _ = writeln!(t, "\n[subject]");
            for (k, v) in [
                ("country", &s.country),
                ("state", &s.state),
                ("locality", &s.locality),
                (
                    "organizational_unit",
                    &s.organizational_units.first().cloned(),
                ),
            ] {
                if let Some(v) = v {
                    let _ = writeln!(t, "{k} = {}", quote(v));
                }
            }
        }
        for (table, nodes) in [
            ("control_plane", &cp),
            ("etcd", &etcd),
            ("worker", &workers),
        ] {
            for n in nodes {
                let _ = writeln!(t, "\n[[{table}]]");
                let _ = writeln!(t, "name = {}", quote(n.name.as_str()));
                let _ = writeln!(t, "address = {}", quote(&n.address.to_string()));
                if !n.extra_ips.is_empty() {
                    let l: Vec<String> =
                        n.extra_ips.iter().map(|i| quote(&i.to_string())).collect();
                    let _ = writeln!(t, "extra_ips = [{}]", l.join(", "));
                }
                if !n.hostnames.is_empty() {
                    let l: Vec<String> = n.hostnames.iter().map(|h| quote(h.as_str())).collect();
                    let _ = writeln!(t, "hostnames = [{}]", l.join(", "));
                }
            }
        }
        for c in &cas {
            let _ = writeln!(t);
            if !c.key_found {
                let _ = writeln!(
                    t,
                    "# NO KEY FOUND for this CA: put its private key at `key` (kpki signs leaves with it);\n# until then `kpki plan` and `kpki issue` stop with an error naming the file."
                );
            }
            let _ = writeln!(t, "[[existing_ca]]");
            let _ = writeln!(t, "id = {}", quote(&c.id));
            let _ = writeln!(t, "cert = {}", quote(&c.cert));
            let _ = writeln!(t, "key = {}", quote(&c.key));
        }
        t
    };
    let parse = |text: &str| -> Result<ClusterSpec, crate::Error> {
        ClusterSpec::parse_with_existing(text, spec_path)
            .map(|(s, _)| s)
            .map_err(crate::Error::Spec)
    };
    // Extra SANs: what the apiserver certificate holds beyond what kpki
    // puts there itself for this spec.
    let first = parse(&render(&[]))?;
    let mut extra = Vec::new();
    if let Some(api) = apiserver {
        let planned = crate::graph::expand(&first, &obs.profile).map_err(crate::Error::Profile)?;
        let mine = planned
            .certs()
            .find(|(_, c)| c.template == api.template && c.node == api.node)
            .map(|(_, c)| c.sans.clone())
            .unwrap_or_default();
        for d in api.sans.dns.difference(&mine.dns) {
            // A name kpki would refuse (`kubernetes.default.svc.cluster.local.`
            // with a trailing dot, which Go never matches) is not copied.
            match crate::x509::DnsName::parse(d.as_str()) {
                Ok(_) => extra.push(d.to_string()),
                Err(why) => a
                    .warnings
                    .push(format!("apiserver SAN {d} not copied to extra_sans: {why}")),
            }
        }
        for ip in api.sans.ip.difference(&mine.ip) {
            // The service IP kpki derives from the CIDR, a node's own address: not extras.
            if Some(*ip) != service_ip {
                extra.push(ip.to_string());
            }
        }
        if !extra.is_empty() {
            a.found
                .push(format!("apiserver extra SANs: {}", extra.join(", ")));
        }
    }
    a.spec = render(&extra);
    // A preset whose certificates are not the directory's (templates it
    // lacks, its own subjects, SANs and usages): a profile file, the preset
    // fitted to the directory, next to the spec.
    if preset && let Some(f) = super::fit::fit(dir, profile_name, &a.spec, spec_path)? {
        let file = format!(
            "{}.profile.toml",
            spec_path
                .file_stem()
                .map_or_else(|| "kpki".into(), |s| s.to_string_lossy().into_owned())
        );
        a.found.push(format!(
            "the certificates are not preset {profile_name}'s: profile file {file} (the preset fitted to them)"
        ));
        for c in &f.changes {
            a.found.push(format!("profile: {c}"));
        }
        let mut table = f.table.clone();
        let mut notes: Vec<(String, Vec<String>)> = Vec::new();
        let show = |k: &str, v: Option<&toml::Value>| match v {
            Some(v) => format!("{k} = {v}"),
            None => format!("no {k}"),
        };
        for m in &f.mistakes {
            let codes: Vec<&str> = m.codes.iter().map(|c| c.as_str()).collect();
            let fix: Vec<String> = m
                .fix
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k} = {v}"),
                    None => format!("delete {k} (the role's default)"),
                })
                .collect();
            // (A mistake whose template is not found is copied and marked.)
            if options.fix
                && let Some(leaf) = super::fit::leaf_mut(&mut table, &m.id)
            {
                let mut old = Vec::new();
                for (k, v) in &m.fix {
                    old.push(show(k, leaf.get(k)));
                    match v {
                        Some(v) => {
                            leaf.insert(k.clone(), v.clone());
                        }
                        None => {
                            leaf.remove(k);
                        }
                    }
                }
                a.fixed.push(format!(
                    "{}: {}, not {} as the directory has it ({})",
                    m.id,
                    fix.join("; "),
                    old.join("; "),
                    codes.join(", "),
                ));
                a.fixed_templates.push(m.id.clone());
                notes.push((
                    m.id.clone(),
                    vec![
                        format!(
                            "# FIXED: {} (was {} as the directory has it: {})",
                            m.id,
                            codes.join(", "),
                            old.join("; ")
                        ),
                        format!(
                            "# kpki's values below (preset {profile_name}): `kpki check` reports the directory's certificate as D003."
                        ),
                    ],
                ));
                continue;
            }
            a.mistakes += 1;
            a.warnings.push(format!(
                "profile: {}: copied as the directory has it, with its mistake ({} in `kpki plan`): `kpki issue` refuses until it is fixed in {file}: {}",
                m.id,
                codes.join(", "),
                fix.join("; ")
            ));
            let mut lines = vec![
                format!(
                    "# MISTAKE COPIED: {}, as the directory has it ({} in `kpki plan`).",
                    m.id,
                    codes.join(", ")
                ),
                format!(
                    "# `kpki issue` refuses until it is fixed; kpki's values (preset {profile_name}):"
                ),
            ];
            lines.extend(fix.iter().map(|l| format!("#   {l}")));
            notes.push((m.id.clone(), lines));
        }
        let body = toml::to_string(&table).map_err(|e| crate::Error::Io {
            path: spec_path.to_path_buf(),
            message: format!("profile: {e}"),
        })?;
        let body = annotate(&body, &notes);
        if !f.spec_extra.is_empty() {
            a.spec.push_str(&f.spec_extra);
        }
        a.spec = a.spec.replacen(
            &format!("profile = {}", quote(profile_name)),
            &format!("profile = {}", quote(&file)),
            1,
        );
        a.profile = Some((
            file,
            format!(
                "# Written by `kpki init --from`: preset {profile_name} fitted to the adopted\n# directory's certificates (format: docs/profile-format.md).\n{body}"
            ),
        ));
    }
    parse(&a.spec)?;
    a.assumed.push(format!(
        "output directory `out` next to the spec (new files; {} itself is never written)",
        dir.display()
    ));
    Ok(a)
}
