//! Profiles: which CAs exist, which certificates each signs, the keypairs,
//! kubeconfigs, file names, and the trust bindings. Data, not code: presets
//! are TOML files embedded in the binary; users may pass their own.
//! The format is documented in `docs/profile-format.md`.

mod builtin;
mod raw;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::error::{InputError, Location, ProfileError};
use crate::k8s::{Component, Flag, KubeconfigUser};
use crate::spec::{ProfileRef, toml_error};
use crate::x509::{ExtUsage, KeySpec, KeyUsages, Lifetime, Role};
pub use builtin::PRESETS;
use raw::RawProfile;

/// How many of a certificate (or kubeconfig) the cluster gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FanOut {
    /// One for the cluster.
    Cluster,
    /// One per control-plane node.
    ControlPlane,
    /// One per etcd member.
    Etcd,
    /// One per worker.
    Worker,
    /// One per node running a kubelet (control plane and workers).
    Kubelet,
}

impl FanOut {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cluster" => Self::Cluster,
            "control-plane" => Self::ControlPlane,
            "etcd" => Self::Etcd,
            "worker" => Self::Worker,
            "kubelet" => Self::Kubelet,
            _ => {
                return Err(format!(
                    "`{s}` is not a fan-out (cluster, control-plane, etcd, worker, kubelet)"
                ));
            }
        })
    }

    /// Whether there is one per node.
    pub fn per_node(&self) -> bool {
        *self != Self::Cluster
    }
}

/// A symbolic SAN rule, resolved per node at expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SanRule {
    /// The control-plane endpoint host.
    Endpoint,
    /// This node's name as a DNS SAN.
    NodeName,
    /// This node's IPs (advertise address and extra IPs).
    NodeIps,
    /// This node's hostnames.
    NodeHostnames,
    /// The IPs of every control-plane node.
    ControlPlaneIps,
    /// The first IP of each service CIDR.
    ServiceIp,
    /// `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.<domain>`.
    InClusterNames,
    /// `127.0.0.1`, `::1` and `localhost`.
    Loopback,
    /// `cluster.extra_sans`.
    Extra,
    /// A literal SAN (`dns:name` / `ip:addr`), kept as written so that rule N006 can judge it.
    Literal(LiteralSan),
}

/// A literal SAN from a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiteralSan {
    /// Written `dns:...`.
    Dns(String),
    /// Written `ip:...` (parsed).
    Ip(std::net::IpAddr),
}

impl SanRule {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "endpoint" => Self::Endpoint,
            "node-name" => Self::NodeName,
            "node-ips" => Self::NodeIps,
            "node-hostnames" => Self::NodeHostnames,
            "control-plane-ips" => Self::ControlPlaneIps,
            "service-ip" => Self::ServiceIp,
            "in-cluster-names" => Self::InClusterNames,
            "loopback" => Self::Loopback,
            "extra" => Self::Extra,
            other => {
                if let Some(d) = other.strip_prefix("dns:") {
                    // Lowercased once, here: the graph holds normalised
                    // names, so re-runs compare equal (rule N006 judges the
                    // name itself, e.g. an IP written as `dns:`).
                    Self::Literal(LiteralSan::Dns(d.to_ascii_lowercase()))
                } else if let Some(ip) = other.strip_prefix("ip:") {
                    Self::Literal(LiteralSan::Ip(
                        ip.parse()
                            .map_err(|_| format!("`{ip}` is not an IP address"))?,
                    ))
                } else {
                    return Err(format!(
                        "`{other}` is not a SAN rule (endpoint, node-name, node-ips, node-hostnames, \
                         control-plane-ips, service-ip, in-cluster-names, loopback, extra, dns:NAME, ip:ADDR)"
                    ));
                }
            }
        })
    }

    fn needs_node(&self) -> bool {
        matches!(self, Self::NodeName | Self::NodeIps | Self::NodeHostnames)
    }
}

/// A subject with `{node}` and `{cluster}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectTemplate {
    /// Common name template.
    pub common_name: String,
    /// Organization templates.
    pub organizations: Vec<String>,
}

impl SubjectTemplate {
    /// Renders the placeholders.
    pub fn render(&self, node: Option<&str>, cluster: &str) -> (String, Vec<String>) {
        let r = |s: &str| {
            let s = s.replace("{cluster}", cluster);
            match node {
                Some(n) => s.replace("{node}", n),
                None => s,
            }
        };
        (
            r(&self.common_name),
            self.organizations.iter().map(|o| r(o)).collect(),
        )
    }
}

/// A CA the profile declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaTemplate {
    /// Its id (`kubernetes-ca`).
    pub id: String,
    /// Its subject.
    pub subject: SubjectTemplate,
    /// The CA that signs it (None: self-signed root).
    pub issuer: Option<String>,
    /// Key override.
    pub algorithm: Option<KeySpec>,
    /// Lifetime override.
    pub validity: Option<Lifetime>,
    /// Path length constraint.
    pub path_len: Option<u8>,
    /// Key usage override (for testing profiles; the default is right).
    pub key_usage: Option<KeyUsages>,
    /// Certificate path (relative to the install root, or absolute).
    pub cert: String,
    /// Key path.
    pub key: String,
    /// Where it was declared.
    pub location: Location,
}

/// A leaf certificate template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafTemplate {
    /// Its id (`apiserver`); expanded ids are `apiserver@<node>`.
    pub id: String,
    /// The issuing CA's id, as written.
    pub issuer: String,
    /// Its role.
    pub role: Role,
    /// How many.
    pub fan_out: FanOut,
    /// Its subject.
    pub subject: SubjectTemplate,
    /// Its SANs.
    pub sans: Vec<SanRule>,
    /// Key override.
    pub algorithm: Option<KeySpec>,
    /// Lifetime override.
    pub validity: Option<Lifetime>,
    /// Key usage override.
    pub key_usage: Option<KeyUsages>,
    /// Extended key usage override.
    pub ext_key_usage: Option<Vec<ExtUsage>>,
    /// Certificate path; None for a cert only embedded in kubeconfigs.
    pub cert: Option<String>,
    /// Key path.
    pub key: Option<String>,
    /// Where it was declared.
    pub location: Location,
}

/// A bare keypair (the service-account key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPairTemplate {
    /// Its id (`sa`).
    pub id: String,
    /// Private key path.
    pub private_key: String,
    /// Public key path.
    pub public_key: String,
    /// Key override.
    pub algorithm: Option<KeySpec>,
}

/// Which server address a kubeconfig names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRule {
    /// The control-plane endpoint.
    Endpoint,
    /// The advertise address of the node the kubeconfig is for (kubeadm's
    /// choice for controller-manager.conf and scheduler.conf).
    Node,
}

/// A kubeconfig the profile declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeconfigTemplate {
    /// Its id (`admin`).
    pub id: String,
    /// File path (relative to the install root, or absolute).
    pub file: String,
    /// The client leaf it carries.
    pub client: String,
    /// Who uses it.
    pub user: KubeconfigUser,
    /// The CA it embeds to verify the apiserver.
    pub ca: String,
    /// Which server address.
    pub server: ServerRule,
    /// A break-glass credential (exempt from I003).
    pub break_glass: bool,
    /// Where it was declared.
    pub location: Location,
}

/// A trust binding: a component flag names a CA, a leaf or a keypair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBinding {
    /// The flag.
    pub flag: Flag,
    /// The id of what it names.
    pub target: String,
    /// Where it was declared.
    pub location: Location,
}

/// A checked profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// A line of description.
    pub description: String,
    /// The directory relative paths are installed under (`/etc/kubernetes`).
    pub install_root: String,
    /// CAs.
    pub cas: Vec<CaTemplate>,
    /// Leaf certificates.
    pub leaves: Vec<LeafTemplate>,
    /// Keypairs.
    pub keypairs: Vec<KeyPairTemplate>,
    /// Kubeconfigs.
    pub kubeconfigs: Vec<KubeconfigTemplate>,
    /// Trust bindings.
    pub bindings: Vec<TrustBinding>,
    /// An explicit `--requestheader-allowed-names` (None: derived from the front-proxy client CN).
    pub requestheader_allowed_names: Option<Vec<String>>,
}

impl Profile {
    /// Loads the profile a spec names. `spec_location` is where the spec
    /// names it, for "unknown preset" errors.
    pub fn load(r: &ProfileRef, spec_location: &Location) -> Result<Self, ProfileError> {
        match r {
            ProfileRef::Preset(name) => {
                let (_, text) = PRESETS.iter().find(|(n, _)| n == name).ok_or_else(|| {
                    let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
                    InputError {
                        location: spec_location.clone(),
                        field: "profile".into(),
                        message: format!(
                            "unknown profile `{name}`: use a preset ({}) or a path to a profile .toml",
                            names.join(", ")
                        ),
                    }
                })?;
                Self::parse(text, Path::new(&format!("<preset {name}>")))
            }
            ProfileRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| InputError {
                    location: spec_location.clone(),
                    field: "profile".into(),
                    message: format!("cannot read profile {}: {e}", path.display()),
                })?;
                Self::parse(&text, path)
            }
        }
    }

    /// Loads a preset by name.
    pub fn preset(name: &str) -> Result<Self, ProfileError> {
        Self::load(
            &ProfileRef::Preset(name.into()),
            &Location::file("<command line>"),
        )
    }

    /// Parses profile text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        Resolver {
            text,
            path: path.to_path_buf(),
        }
        .resolve(raw)
    }

    /// The CA, leaf or keypair kind of an id.
    pub fn kind_of(&self, id: &str) -> Option<TargetKind> {
        if self.cas.iter().any(|c| c.id == id) {
            Some(TargetKind::Ca)
        } else if self.leaves.iter().any(|l| l.id == id) {
            Some(TargetKind::Leaf)
        } else if self.keypairs.iter().any(|k| k.id == id) {
            Some(TargetKind::KeyPair)
        } else {
            None
        }
    }
}

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A CA.
    Ca,
    /// A leaf certificate.
    Leaf,
    /// A keypair.
    KeyPair,
}

struct Resolver<'a> {
    text: &'a str,
    path: PathBuf,
}

impl Resolver<'_> {
    fn err<T>(
        &self,
        s: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ProfileError {
        InputError {
            location: self.loc(s),
            field: field.into(),
            message: message.into(),
        }
    }

    fn loc<T>(&self, s: &Spanned<T>) -> Location {
        Location::at(self.path.clone(), self.text, s.span().start)
    }

    fn parse<T, U>(
        &self,
        s: &Spanned<T>,
        field: &str,
        f: impl FnOnce(&T) -> Result<U, String>,
    ) -> Result<U, ProfileError> {
        f(s.get_ref()).map_err(|m| self.err(s, field, m))
    }

    fn opt<U, E: Into<String>>(
        &self,
        s: &Option<Spanned<String>>,
        field: &str,
        f: impl FnOnce(&str) -> Result<U, E>,
    ) -> Result<Option<U>, ProfileError> {
        s.as_ref()
            .map(|s| self.parse(s, field, |v| f(v).map_err(Into::into)))
            .transpose()
    }

    fn usages(
        &self,
        s: &Option<Spanned<Vec<String>>>,
        field: &str,
    ) -> Result<Option<KeyUsages>, ProfileError> {
        s.as_ref()
            .map(|s| {
                self.parse(s, field, |v| {
                    KeyUsages::from_names(v.iter().map(String::as_str))
                })
            })
            .transpose()
    }

    fn path(
        &self,
        s: &Spanned<String>,
        field: &str,
        per_node: bool,
    ) -> Result<String, ProfileError> {
        let p = s.get_ref().trim();
        if p.is_empty() {
            return Err(self.err(s, field, "the path is empty"));
        }
        if p.split('/').any(|c| c == "..") {
            return Err(self.err(s, field, "a path must not contain `..`"));
        }
        if p.contains("{node}") && !per_node {
            return Err(self.err(s, field, "`{node}` in a path needs a per-node fan-out"));
        }
        Ok(p.to_owned())
    }

    fn template(
        &self,
        field: &str,
        cn: &Spanned<String>,
        orgs: Vec<String>,
        per_node: bool,
    ) -> Result<SubjectTemplate, ProfileError> {
        for s in std::iter::once(cn.get_ref()).chain(&orgs) {
            let stripped = s.replace("{cluster}", "").replace("{node}", "");
            if stripped.contains('{') || stripped.contains('}') {
                return Err(self.err(
                    cn,
                    field,
                    format!("`{s}` has an unknown placeholder (known: {{node}}, {{cluster}})"),
                ));
            }
            if s.contains("{node}") && !per_node {
                return Err(self.err(cn, field, "`{node}` needs a per-node fan-out"));
            }
        }
        if cn.get_ref().trim().is_empty() {
            return Err(self.err(cn, field, "the common name is empty"));
        }
        Ok(SubjectTemplate {
            common_name: cn.get_ref().clone(),
            organizations: orgs,
        })
    }

    fn resolve(&self, raw: RawProfile) -> Result<Profile, ProfileError> {
        let RawProfile {
            name,
            description,
            install_root,
            ca,
            leaf,
            keypair,
            kubeconfig,
            bindings,
            values,
        } = raw;
        let mut ids = BTreeSet::new();
        let mut unique = |id: &Spanned<String>, field: &str| -> Result<String, ProfileError> {
            let v = id.get_ref().trim();
            if v.is_empty() || v.contains('@') || v.contains(char::is_whitespace) {
                return Err(self.err(
                    id,
                    field,
                    format!("`{v}` is not a valid id (no spaces, no `@`)"),
                ));
            }
            if !ids.insert(v.to_owned()) {
                return Err(self.err(id, field, format!("duplicate id `{v}`")));
            }
            Ok(v.to_owned())
        };

        let mut cas = Vec::new();
        for (i, c) in ca.into_iter().enumerate() {
            let f = |k: &str| format!("ca[{i}].{k}");
            cas.push(CaTemplate {
                id: unique(&c.id, &f("id"))?,
                subject: self.template(
                    &f("common_name"),
                    &c.common_name,
                    c.organizations,
                    false,
                )?,
                issuer: c.issuer.map(|s| s.into_inner()),
                algorithm: self.opt(&c.algorithm, &f("algorithm"), str::parse)?,
                validity: self.opt(&c.validity, &f("validity"), str::parse)?,
                path_len: c.path_len,
                key_usage: self.usages(&c.key_usage, &f("key_usage"))?,
                cert: self.path(&c.cert, &f("cert"), false)?,
                key: self.path(&c.key, &f("key"), false)?,
                location: self.loc(&c.id),
            });
        }
        let mut leaves = Vec::new();
        for (i, l) in leaf.into_iter().enumerate() {
            let f = |k: &str| format!("leaf[{i}].{k}");
            let fan_out = self.parse(&l.fan_out, &f("fan_out"), |s| FanOut::parse(s))?;
            let per_node = fan_out.per_node();
            let sans = l
                .sans
                .iter()
                .map(|s| {
                    let r = self.parse(s, &f("sans"), |v| SanRule::parse(v))?;
                    if r.needs_node() && !per_node {
                        return Err(self.err(
                            s,
                            f("sans"),
                            "a node SAN rule needs a per-node fan-out",
                        ));
                    }
                    Ok(r)
                })
                .collect::<Result<_, _>>()?;
            let ext = l
                .ext_key_usage
                .as_ref()
                .map(|s| {
                    self.parse(s, &f("ext_key_usage"), |v| {
                        v.iter().map(|x| x.parse()).collect()
                    })
                })
                .transpose()?;
            let cert = l
                .cert
                .as_ref()
                .map(|p| self.path(p, &f("cert"), per_node))
                .transpose()?;
            let key = l
                .key
                .as_ref()
                .map(|p| self.path(p, &f("key"), per_node))
                .transpose()?;
            if cert.is_some() != key.is_some() {
                return Err(self.err(&l.id, f("cert"), "give both `cert` and `key`, or neither"));
            }
            leaves.push(LeafTemplate {
                id: unique(&l.id, &f("id"))?,
                issuer: l.issuer.get_ref().clone(),
                role: self.parse(&l.role, &f("role"), |s| s.parse())?,
                fan_out,
                subject: self.template(
                    &f("common_name"),
                    &l.common_name,
                    l.organizations,
                    per_node,
                )?,
                sans,
                algorithm: self.opt(&l.algorithm, &f("algorithm"), str::parse)?,
                validity: self.opt(&l.validity, &f("validity"), str::parse)?,
                key_usage: self.usages(&l.key_usage, &f("key_usage"))?,
                ext_key_usage: ext,
                cert,
                key,
                location: self.loc(&l.id),
            });
        }
        let mut keypairs = Vec::new();
        for (i, k) in keypair.into_iter().enumerate() {
            let f = |x: &str| format!("keypair[{i}].{x}");
            keypairs.push(KeyPairTemplate {
                id: unique(&k.id, &f("id"))?,
                private_key: self.path(&k.private_key, &f("private_key"), false)?,
                public_key: self.path(&k.public_key, &f("public_key"), false)?,
                algorithm: self.opt(&k.algorithm, &f("algorithm"), str::parse)?,
            });
        }
        let mut kubeconfigs = Vec::new();
        let mut kc_ids = BTreeSet::new();
        for (i, k) in kubeconfig.into_iter().enumerate() {
            let f = |x: &str| format!("kubeconfig[{i}].{x}");
            let Some(client) = leaves.iter().find(|l| &l.id == k.client.get_ref()) else {
                return Err(self.err(
                    &k.client,
                    f("client"),
                    format!("no [[leaf]] has id `{}`", k.client.get_ref()),
                ));
            };
            if !cas.iter().any(|c| &c.id == k.ca.get_ref()) {
                return Err(self.err(
                    &k.ca,
                    f("ca"),
                    format!("no [[ca]] has id `{}`", k.ca.get_ref()),
                ));
            }
            if !kc_ids.insert(k.id.get_ref().clone()) {
                return Err(self.err(
                    &k.id,
                    f("id"),
                    format!("duplicate kubeconfig id `{}`", k.id.get_ref()),
                ));
            }
            let server = match k.server.as_ref().map(|s| (s, s.get_ref().as_str())) {
                None | Some((_, "endpoint")) => ServerRule::Endpoint,
                Some((_, "node")) => ServerRule::Node,
                Some((s, other)) => {
                    return Err(self.err(
                        s,
                        f("server"),
                        format!("`{other}` is not a server rule (endpoint, node)"),
                    ));
                }
            };
            if server == ServerRule::Node && !client.fan_out.per_node() {
                return Err(self.err(
                    &k.id,
                    f("server"),
                    "`server = \"node\"` needs a per-node client certificate",
                ));
            }
            kubeconfigs.push(KubeconfigTemplate {
                id: k.id.get_ref().clone(),
                file: self.path(&k.file, &f("file"), client.fan_out.per_node())?,
                client: k.client.get_ref().clone(),
                user: self.parse(&k.user, &f("user"), |s| s.parse())?,
                ca: k.ca.get_ref().clone(),
                server,
                break_glass: k.break_glass,
                location: self.loc(&k.id),
            });
        }
        let mut resolved = Vec::new();
        for (component, flags) in &bindings {
            let c: Component = self.parse(component, "bindings", |s| s.parse())?;
            for (flag, target) in flags {
                let field = format!("bindings.{c}.{}", flag.get_ref());
                let flag = self.parse(flag, &field, |s| Flag::lookup(c, s))?;
                let t = target.get_ref();
                let kind = if cas.iter().any(|x| &x.id == t) {
                    TargetKind::Ca
                } else if leaves.iter().any(|x| &x.id == t) {
                    TargetKind::Leaf
                } else if keypairs.iter().any(|x| &x.id == t) {
                    TargetKind::KeyPair
                } else {
                    return Err(self.err(
                        target,
                        field,
                        format!("`{t}` is not the id of a [[ca]], [[leaf]] or [[keypair]]"),
                    ));
                };
                use crate::k8s::FlagKind as K;
                let ok = match flag.kind() {
                    K::TrustedCa => kind == TargetKind::Ca,
                    K::CertAndKey => kind != TargetKind::KeyPair,
                    K::PublicKey | K::PrivateKey => kind == TargetKind::KeyPair,
                };
                if !ok {
                    return Err(self.err(
                        target,
                        field,
                        format!(
                            "{flag} cannot name `{t}` (a {})",
                            match kind {
                                TargetKind::Ca => "[[ca]]",
                                TargetKind::Leaf => "[[leaf]]",
                                TargetKind::KeyPair => "[[keypair]]",
                            }
                        ),
                    ));
                }
                resolved.push(TrustBinding {
                    flag,
                    target: t.clone(),
                    location: self.loc(target),
                });
            }
        }
        let install_root = match install_root {
            Some(r) if !r.get_ref().starts_with('/') => {
                return Err(self.err(
                    &r,
                    "install_root",
                    "the install root must be an absolute path",
                ));
            }
            Some(r) => r.get_ref().trim_end_matches('/').to_owned(),
            None => "/etc/kubernetes".into(),
        };
        Ok(Profile {
            name: name.into_inner(),
            description,
            install_root,
            cas,
            leaves,
            keypairs,
            kubeconfigs,
            bindings: resolved,
            requestheader_allowed_names: values.and_then(|v| v.requestheader_allowed_names),
        })
    }
}
