//! The cluster spec: parsed from TOML ([`raw`]) and resolved into checked,
//! typed values ([`ClusterSpec`]). Every error names the file, line and field.

mod raw;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::error::{InputError, Location, SpecError};
use crate::x509::{Cidr, DnsName, Host, KeyAlgorithm, Lifetime, NodeName, San, Subject, parse_san};
use raw::{RawNode, RawSpec};

/// Which profile a spec uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileRef {
    /// A preset embedded in kpki (`kubeadm`, `isolated`, `single-ca`).
    Preset(String),
    /// A profile file (resolved against the spec's directory).
    File(PathBuf),
}

/// The control-plane endpoint: `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The host (VIP, load balancer IP or DNS name).
    pub host: Host,
    /// The port (default 6443).
    pub port: u16,
}

impl Endpoint {
    /// Parses `host[:port]`; an IPv6 host with a port is written `[addr]:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s.strip_prefix("https://").unwrap_or(s);
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self {
                host: Host::Ip(ip),
                port: 6443,
            });
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: unclosed `[` in an IPv6 endpoint"))?;
            (h, after.strip_prefix(':'))
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            None => 6443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))?,
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Dns(DnsName::parse(host).map_err(|e| {
                format!("the endpoint host is neither an IP address nor a DNS name: {e}")
            })?),
        };
        Ok(Self { host, port })
    }

    /// The URL clients use: `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

/// One node of the cluster (control plane, etcd member or worker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node name (also the kubelet identity `system:node:<name>`).
    pub name: NodeName,
    /// The advertise address.
    pub address: IpAddr,
    /// More addresses of this node.
    pub extra_ips: Vec<IpAddr>,
    /// DNS names of this node.
    pub hostnames: Vec<DnsName>,
}

impl NodeSpec {
    /// Every IP of the node, advertise address first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.address).chain(self.extra_ips.iter().copied())
    }
}

/// Where etcd runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdTopology {
    /// One member on every control-plane node (no `[[etcd]]` in the spec).
    Stacked,
    /// Dedicated members.
    External(Vec<NodeSpec>),
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster name in kubeconfigs.
    pub name: String,
    /// The cluster DNS domain.
    pub dns_domain: DnsName,
    /// One service CIDR per IP family.
    pub service_cidrs: Vec<Cidr>,
    /// The control-plane endpoint.
    pub endpoint: Endpoint,
    /// More apiserver SANs.
    pub extra_sans: Vec<San>,
}

/// `[crypto]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoSpec {
    /// The key algorithm for every key (a profile may override per CA).
    pub algorithm: KeyAlgorithm,
    /// CA lifetime.
    pub ca_validity: Lifetime,
    /// Leaf lifetime.
    pub leaf_validity: Lifetime,
}

/// `[output]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The output directory, resolved against the spec file's directory.
    pub dir: PathBuf,
    /// Kubeconfigs embed `*-data` (true) or reference files.
    pub embed_certs: bool,
}

/// `[bootstrap]`: the kubelet TLS-bootstrap token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapSpec {
    /// How long a minted token lives (`expiration` in its Secret); `None`
    /// (`token_ttl = "0"`) for a token that never expires. Default 24h, as
    /// kubeadm's.
    pub token_ttl: Option<Lifetime>,
}

impl Default for BootstrapSpec {
    fn default() -> Self {
        Self {
            token_ttl: Some(Lifetime::from_hours(24)),
        }
    }
}

/// The kubeadm configuration API version kpki writes (`[kubeadm] config_api`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum KubeadmApi {
    /// `kubeadm.k8s.io/v1beta4` (kubeadm 1.31 and later).
    #[default]
    V1beta4,
    /// `kubeadm.k8s.io/v1beta3` (kubeadm 1.22 and later).
    V1beta3,
    /// `kubeadm.k8s.io/v1beta1` (kubeadm 1.13 to 1.21).
    V1beta1,
}

impl KubeadmApi {
    /// Every version, newest first.
    pub const ALL: [KubeadmApi; 3] = [Self::V1beta4, Self::V1beta3, Self::V1beta1];

    /// The version as written in the spec (`v1beta4`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::V1beta4 => "v1beta4",
            Self::V1beta3 => "v1beta3",
            Self::V1beta1 => "v1beta1",
        }
    }

    /// The `apiVersion` of the configuration documents.
    pub fn api_version(&self) -> String {
        format!("kubeadm.k8s.io/{}", self.as_str())
    }
}

impl std::str::FromStr for KubeadmApi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix("kubeadm.k8s.io/").unwrap_or(t);
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == t)
            .ok_or_else(|| {
                format!("`{s}` is not a kubeadm config API kpki writes (v1beta4, v1beta3, v1beta1)")
            })
    }
}

/// `[kubeadm]`: the kubeadm configuration files kpki writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeadmSpec {
    /// The API version of `init.yaml` and the join files (default v1beta4).
    pub config_api: KubeadmApi,
}

/// `[[existing_ca]]`: a CA of an existing PKI that kpki uses instead of
/// generating one (written by `kpki init --from`). Only the paths are
/// checked here; the files are read when the spec is planned (the profile
/// says which ids are CAs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingCaSpec {
    /// The profile's CA template id (`kubernetes-ca`).
    pub id: String,
    /// The CA certificate file, resolved against the spec file's directory.
    pub cert: PathBuf,
    /// The CA private key file, resolved against the spec file's directory.
    pub key: PathBuf,
    /// The index in the spec's `[[existing_ca]]` list (for field names).
    pub index: usize,
    /// Where `id`, `cert` and `key` are written.
    pub locations: [Location; 3],
}

impl ExistingCaSpec {
    /// An error about one of this entry's fields (`id`, `cert` or `key`),
    /// located at that field's line in the spec.
    pub fn error(&self, field: &str, message: impl Into<String>) -> InputError {
        let at = match field {
            "cert" => 1,
            "key" => 2,
            _ => 0,
        };
        InputError {
            location: self.locations[at].clone(),
            field: format!("existing_ca[{}].{field}", self.index),
            message: message.into(),
        }
    }
}

/// `[ca_keys]`: where CA private keys live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CaKeyStore {
    /// Files under the output directory (the default).
    #[default]
    Files,
    /// A PKCS#11 token (`store = "pkcs11"`).
    Pkcs11(Pkcs11Spec),
}

/// `[ca_keys]` with `store = "pkcs11"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Spec {
    /// The module, the token label and where the PIN comes from.
    pub token: crate::crypto::TokenConfig,
    /// The CA ids whose keys the token holds (`None`: every CA).
    pub cas: Option<Vec<(String, Location)>>,
    /// Where `[ca_keys]` is written.
    pub location: Location,
}

impl CaKeyStore {
    /// Whether the key of CA `id` is held in a token.
    pub fn holds(&self, id: &str) -> bool {
        match self {
            Self::Files => false,
            Self::Pkcs11(p) => p
                .cas
                .as_ref()
                .is_none_or(|cas| cas.iter().any(|(c, _)| c == id)),
        }
    }

    /// The token's configuration, when CA keys live in one.
    pub fn token(&self) -> Option<&crate::crypto::TokenConfig> {
        match self {
            Self::Files => None,
            Self::Pkcs11(p) => Some(&p.token),
        }
    }
}

/// `[controller_manager]`: what kpki sets up for kube-controller-manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerManagerSpec {
    /// In-cluster CSR signing (`--cluster-signing-cert-file` / `-key-file`
    /// and the `signing/` copies of the CA). Default on; off drops both.
    pub csr_signing: bool,
}

impl Default for ControllerManagerSpec {
    fn default() -> Self {
        Self { csr_signing: true }
    }
}

/// `[root]`: who signs the profile's top CAs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootSpec {
    /// `external = true`: the profile's top CAs become intermediates under a
    /// root kpki never holds. `kpki csr` writes their CSRs, `kpki import`
    /// takes the signed certificates, and `kpki issue` waits (X002) until
    /// every one is imported.
    pub external: bool,
}

/// A checked cluster spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The file it came from (for messages).
    pub source: PathBuf,
    /// The profile to use.
    pub profile: ProfileRef,
    /// Where the `profile` key was written (for "unknown profile" errors).
    pub profile_location: Location,
    /// `[cluster]`.
    pub cluster: ClusterInfo,
    /// `[crypto]`.
    pub crypto: CryptoSpec,
    /// `[subject]` defaults (C, ST, L, OU).
    pub subject: Subject,
    /// Control-plane nodes (at least one).
    pub control_plane: Vec<NodeSpec>,
    /// etcd topology.
    pub etcd: EtcdTopology,
    /// Worker nodes.
    pub workers: Vec<NodeSpec>,
    /// `[output]`.
    pub output: OutputSpec,
    /// `[bootstrap]`.
    pub bootstrap: BootstrapSpec,
    /// `[kubeadm]`.
    pub kubeadm: KubeadmSpec,
    /// `[ca_keys]`.
    pub ca_keys: CaKeyStore,
    /// `[controller_manager]`.
    pub controller_manager: ControllerManagerSpec,
    /// `[root]`: whether the profile's top CAs are signed by an external root.
    pub root: RootSpec,
    /// Warnings found while reading (e.g. an even etcd member count).
    pub warnings: Vec<InputError>,
}

impl ClusterSpec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        Self::load_with_existing(path).map(|(s, _)| s)
    }

    /// Reads and checks a spec file, with its `[[existing_ca]]` entries
    /// (what [`Plan::load`](crate::Plan::load) plans).
    pub fn load_with_existing(path: &Path) -> Result<(Self, Vec<ExistingCaSpec>), SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| InputError {
            location: Location::file(path),
            field: "spec".into(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "no such file: run `kpki init` to write a starter spec here, \
                 or pass `--spec FILE`"
                    .to_owned()
            } else {
                format!("cannot read the spec: {e}")
            },
        })?;
        Self::parse_with_existing(&text, path)
    }

    /// Parses and checks spec text; `path` names it in errors and anchors
    /// relative paths. `[[existing_ca]]` entries are checked but not
    /// returned: see [`ClusterSpec::parse_with_existing`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        Self::parse_with_existing(text, path).map(|(s, _)| s)
    }

    /// Parses and checks spec text, returning its `[[existing_ca]]` entries
    /// too (their files are read when planned:
    /// [`Plan::with_existing`](crate::Plan::with_existing)).
    pub fn parse_with_existing(
        text: &str,
        path: &Path,
    ) -> Result<(Self, Vec<ExistingCaSpec>), SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        Resolver { text, path }.resolve(raw)
    }

    /// The etcd members: the external ones, or every control-plane node when stacked.
    pub fn etcd_members(&self) -> &[NodeSpec] {
        match &self.etcd {
            EtcdTopology::Stacked => &self.control_plane,
            EtcdTopology::External(m) => m,
        }
    }

    /// Every node by name: control plane, etcd members and workers.
    pub fn all_nodes(&self) -> BTreeMap<&NodeName, &NodeSpec> {
        self.control_plane
            .iter()
            .chain(self.etcd_members())
            .chain(&self.workers)
            .map(|n| (&n.name, n))
            .collect()
    }
}

/// Turns a toml/serde error into file:line:col + field.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> InputError {
    let start = e.span().map_or(0, |s| s.start);
    let location = Location::at(path, text, start);
    let field = field_at(text, start);
    let message = e.message().trim().replace('\n', " ");
    InputError {
        location,
        field,
        message,
    }
}

/// The dotted key path of whatever sits at `offset`: the nearest table
/// header above plus the key on that line.
pub(crate) fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let own_header = line.trim().starts_with('[').then(|| {
        line.trim()
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned()
    });
    let header = own_header.or_else(|| {
        text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    });
    match (header, key) {
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (None, Some(k)) => k,
        (Some(h), None) => h,
        (None, None) => "(document)".into(),
    }
}

struct Resolver<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Resolver<'_> {
    fn err_at(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        InputError {
            location: Location::at(self.path, self.text, offset),
            field: field.into(),
            message: message.into(),
        }
    }

    fn err<T>(
        &self,
        s: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        self.err_at(s.span().start, field, message)
    }

    fn parse_with<T, U, E: Into<String>>(
        &self,
        s: &Spanned<T>,
        field: &str,
        f: impl FnOnce(&T) -> Result<U, E>,
    ) -> Result<U, SpecError> {
        f(s.get_ref()).map_err(|m| self.err(s, field, m.into()))
    }

    fn resolve(&self, raw: RawSpec) -> Result<(ClusterSpec, Vec<ExistingCaSpec>), SpecError> {
        let RawSpec {
            profile,
            cluster,
            crypto,
            subject,
            control_plane,
            etcd,
            worker,
            output,
            bootstrap,
            kubeadm,
            existing_ca,
            ca_keys,
            controller_manager,
            root,
        } = raw;
        let ca_keys = match ca_keys {
            None => CaKeyStore::Files,
            Some(c) => self.ca_keys(c)?,
        };
        let controller_manager = ControllerManagerSpec {
            csr_signing: controller_manager
                .and_then(|c| c.csr_signing)
                .unwrap_or(true),
        };
        let mut warnings = Vec::new();
        let bootstrap = match bootstrap.and_then(|b| b.token_ttl) {
            None => BootstrapSpec::default(),
            Some(t) if t.get_ref().trim() == "0" => {
                warnings.push(self.err(
                    &t,
                    "bootstrap.token_ttl",
                    "0: the bootstrap token never expires; anyone who copies \
                     bootstrap-kubelet.conf can join nodes forever (kubeadm's default is 24h)",
                ));
                BootstrapSpec { token_ttl: None }
            }
            Some(t) => BootstrapSpec {
                token_ttl: Some(self.parse_with(&t, "bootstrap.token_ttl", |s| s.parse())?),
            },
        };
        let kubeadm = match kubeadm.and_then(|k| k.config_api) {
            None => KubeadmSpec::default(),
            Some(v) => KubeadmSpec {
                config_api: self.parse_with(&v, "kubeadm.config_api", |s| s.parse())?,
            },
        };

        let (profile, profile_location) = match profile {
            None => (
                ProfileRef::Preset("kubeadm".into()),
                Location::file(self.path),
            ),
            Some(p) => {
                let loc = Location::at(self.path, self.text, p.span().start);
                let v = p.get_ref().trim();
                let r = if v.ends_with(".toml") || v.contains('/') {
                    ProfileRef::File(self.base_dir().join(v))
                } else if v.is_empty() {
                    return Err(self.err(&p, "profile", "the profile name is empty"));
                } else {
                    ProfileRef::Preset(v.to_owned())
                };
                (r, loc)
            }
        };

        let control_plane = match control_plane {
            None => {
                // Nothing to point at: name the file, not a line past its end.
                return Err(InputError {
                    location: Location::file(self.path),
                    field: "control_plane".into(),
                    message: "at least one [[control_plane]] node is required (add a \
                              [[control_plane]] table with `name` and `address`)"
                        .into(),
                });
            }
            Some(cp) if cp.get_ref().is_empty() => {
                return Err(self.err(
                    &cp,
                    "control_plane",
                    "at least one [[control_plane]] node is required",
                ));
            }
            Some(cp) => self.nodes(cp.into_inner(), "control_plane")?,
        };
        let workers = self.nodes(worker.unwrap_or_default(), "worker")?;
        let etcd = match etcd {
            None => EtcdTopology::Stacked,
            Some(m) if m.is_empty() => EtcdTopology::Stacked,
            Some(m) => {
                let n = m.len();
                let first = m.first().map_or(0, |x| x.span().start);
                let members = self.nodes(m, "etcd")?;
                if n % 2 == 0 {
                    warnings.push(self.err_at(
                        first,
                        "etcd",
                        format!("{n} etcd members: an even count tolerates no more failures than {} and risks split votes; use an odd number", n - 1),
                    ));
                }
                EtcdTopology::External(members)
            }
        };
        // Names are unique across control plane and workers; an etcd member
        // may share a name only with the node it runs on (same address).
        let mut seen: BTreeMap<NodeName, (&str, IpAddr)> = BTreeMap::new();
        for (list, nodes) in [("control_plane", &control_plane), ("worker", &workers)] {
            for n in nodes.iter() {
                if let Some((other, _)) = seen.insert(n.name.clone(), (list, n.address)) {
                    return Err(self.node_dup(&n.name, list, other));
                }
            }
        }
        if let EtcdTopology::External(members) = &etcd {
            let mut etcd_seen = BTreeMap::new();
            for m in members {
                if etcd_seen.insert(m.name.clone(), ()).is_some() {
                    return Err(self.node_dup(&m.name, "etcd", "etcd"));
                }
                if let Some((list, addr)) = seen.get(&m.name)
                    && *addr != m.address
                {
                    return Err(self.node_dup(&m.name, "etcd", list));
                }
            }
        }

        self.no_shared_addresses(&control_plane, &workers, &etcd)?;

        let cluster = self.cluster(cluster, &control_plane)?;
        let crypto = self.crypto(crypto)?;
        let subject = subject.map_or_else(Subject::default, |s| Subject {
            common_name: String::new(),
            organizations: Vec::new(),
            organizational_units: s.organizational_unit.into_iter().collect(),
            country: s.country,
            state: s.state,
            locality: s.locality,
        });
        let output = match output {
            None => OutputSpec {
                dir: self.base_dir().join("out"),
                embed_certs: true,
            },
            Some(o) => OutputSpec {
                dir: match o.dir {
                    Some(d) if d.get_ref().trim().is_empty() => {
                        return Err(self.err(&d, "output.dir", "the output directory is empty"));
                    }
                    Some(d) => self.base_dir().join(d.get_ref()),
                    None => self.base_dir().join("out"),
                },
                embed_certs: o.embed_certs.unwrap_or(true),
            },
        };
        let existing_cas = self.existing_cas(existing_ca.unwrap_or_default())?;
        Ok((
            ClusterSpec {
                source: self.path.to_owned(),
                profile,
                profile_location,
                cluster,
                crypto,
                subject,
                control_plane,
                etcd,
                workers,
                output,
                bootstrap,
                kubeadm,
                ca_keys,
                controller_manager,
                root: RootSpec {
                    external: root.and_then(|r| r.external).is_some_and(|e| *e.get_ref()),
                },
                warnings,
            },
            existing_cas,
        ))
    }

    fn ca_keys(&self, c: Spanned<raw::RawCaKeys>) -> Result<CaKeyStore, SpecError> {
        let at = c.span().start;
        let location = Location::at(self.path, self.text, at);
        let raw::RawCaKeys {
            store,
            module,
            token_label,
            pin_env,
            pin_file,
            cas,
        } = c.into_inner();
        let store_v = store.as_ref().map(|s| s.get_ref().trim().to_owned());
        match store_v.as_deref() {
            None | Some("files") => {
                let extra = [
                    ("module", module.as_ref()),
                    ("token_label", token_label.as_ref()),
                    ("pin_env", pin_env.as_ref()),
                    ("pin_file", pin_file.as_ref()),
                ];
                if let Some((k, Some(v))) = extra.into_iter().find(|(_, v)| v.is_some()) {
                    return Err(self.err(
                        v,
                        format!("ca_keys.{k}"),
                        "only for store = \"pkcs11\" (CA keys are files under output.dir)",
                    ));
                }
                if let Some(first) = cas.as_ref().and_then(|v| v.first()) {
                    return Err(self.err(
                        first,
                        "ca_keys.cas",
                        "only for store = \"pkcs11\" (CA keys are files under output.dir)",
                    ));
                }
                Ok(CaKeyStore::Files)
            }
            Some("pkcs11") => {
                let missing = |k: &str, what: &str| {
                    self.err_at(
                        at,
                        format!("ca_keys.{k}"),
                        format!("store = \"pkcs11\" needs {k} ({what})"),
                    )
                };
                let module =
                    module.ok_or_else(|| missing("module", "the PKCS#11 module, a .so path"))?;
                if module.get_ref().trim().is_empty() {
                    return Err(self.err(&module, "ca_keys.module", "the module path is empty"));
                }
                let token_label =
                    token_label.ok_or_else(|| missing("token_label", "the label of the token"))?;
                if token_label.get_ref().trim().is_empty() {
                    return Err(self.err(
                        &token_label,
                        "ca_keys.token_label",
                        "the label is empty",
                    ));
                }
                let pin = match (pin_env, pin_file) {
                    (Some(e), None) => {
                        let v = e.get_ref().trim();
                        if v.is_empty() || v.contains('=') {
                            return Err(self.err(
                                &e,
                                "ca_keys.pin_env",
                                "name an environment variable (the PIN is never written in the spec)",
                            ));
                        }
                        crate::crypto::PinSource::Env(v.to_owned())
                    }
                    (None, Some(f)) => {
                        let v = f.get_ref().trim();
                        if v.is_empty() {
                            return Err(self.err(&f, "ca_keys.pin_file", "the path is empty"));
                        }
                        crate::crypto::PinSource::File(self.base_dir().join(v))
                    }
                    (Some(_), Some(f)) => {
                        return Err(self.err(
                            &f,
                            "ca_keys.pin_file",
                            "give pin_env or pin_file, not both",
                        ));
                    }
                    (None, None) => {
                        return Err(missing(
                            "pin_env",
                            "or pin_file: where the user PIN comes from; never the command line",
                        ));
                    }
                };
                let cas = match cas {
                    None => None,
                    Some(list) => {
                        let mut out: Vec<(String, Location)> = Vec::new();
                        for c in list {
                            let v = c.get_ref().trim();
                            if v.is_empty() {
                                return Err(self.err(&c, "ca_keys.cas", "a CA id is empty"));
                            }
                            if out.iter().any(|(o, _)| o == v) {
                                return Err(self.err(
                                    &c,
                                    "ca_keys.cas",
                                    format!("`{v}` is listed twice"),
                                ));
                            }
                            out.push((
                                v.to_owned(),
                                Location::at(self.path, self.text, c.span().start),
                            ));
                        }
                        Some(out)
                    }
                };
                let module_path = PathBuf::from(module.get_ref().trim());
                Ok(CaKeyStore::Pkcs11(Pkcs11Spec {
                    token: crate::crypto::TokenConfig {
                        module: if module_path.is_absolute() {
                            module_path
                        } else {
                            self.base_dir().join(module_path)
                        },
                        token_label: token_label.get_ref().trim().to_owned(),
                        pin,
                    },
                    cas,
                    location,
                }))
            }
            Some(other) => Err(self.err_at(
                store.as_ref().map_or(at, |s| s.span().start),
                "ca_keys.store",
                format!("`{other}` is not a CA key store (files, pkcs11)"),
            )),
        }
    }

    fn existing_cas(
        &self,
        raw: Vec<Spanned<raw::RawExistingCa>>,
    ) -> Result<Vec<ExistingCaSpec>, SpecError> {
        let mut out: Vec<ExistingCaSpec> = Vec::new();
        for (i, e) in raw.into_iter().enumerate() {
            let raw::RawExistingCa { id, cert, key } = e.into_inner();
            let f = |k: &str| format!("existing_ca[{i}].{k}");
            let v = id.get_ref().trim();
            if v.is_empty() {
                return Err(self.err(&id, f("id"), "the CA id is empty"));
            }
            if out.iter().any(|o| o.id == v) {
                return Err(self.err(
                    &id,
                    f("id"),
                    format!("`{v}` is already adopted by an earlier [[existing_ca]]"),
                ));
            }
            let path = |p: &Spanned<String>, k: &str| {
                let t = p.get_ref().trim();
                if t.is_empty() {
                    Err(self.err(p, f(k), "the path is empty"))
                } else {
                    Ok(self.base_dir().join(t))
                }
            };
            let loc = |s: &Spanned<String>| Location::at(self.path, self.text, s.span().start);
            out.push(ExistingCaSpec {
                id: v.to_owned(),
                cert: path(&cert, "cert")?,
                key: path(&key, "key")?,
                index: i,
                locations: [loc(&id), loc(&cert), loc(&key)],
            });
        }
        Ok(out)
    }

    fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn node_dup(&self, name: &NodeName, list: &str, other: &str) -> SpecError {
        // Point at the second occurrence of `name = "<name>"`.
        let needle = format!("\"{name}\"");
        let offset = self
            .text
            .match_indices(&needle)
            .nth(1)
            .or_else(|| self.text.match_indices(&needle).next())
            .map_or(0, |(i, _)| i);
        self.err_at(
            offset,
            format!("{list}.name"),
            format!("duplicate node name `{name}` (already used in [[{other}]])"),
        )
    }

    /// Two nodes of one kind at one address (two control planes at 10.0.0.1)
    /// would give etcd and the apiserver duplicate URLs: refused, naming both.
    /// A worker may not share a control-plane node's address either (one
    /// kubelet per host); an external etcd member may run on any node's host.
    fn no_shared_addresses(
        &self,
        control_plane: &[NodeSpec],
        workers: &[NodeSpec],
        etcd: &EtcdTopology,
    ) -> Result<(), SpecError> {
        let members: &[NodeSpec] = match etcd {
            EtcdTopology::External(m) => m,
            EtcdTopology::Stacked => &[],
        };
        let groups: [&[(&str, &[NodeSpec])]; 2] = [
            &[("control_plane", control_plane), ("worker", workers)],
            &[("etcd", members)],
        ];
        for lists in groups {
            let mut seen: BTreeMap<IpAddr, (&str, &NodeName)> = BTreeMap::new();
            for (list, nodes) in lists {
                for n in *nodes {
                    if let Some((other_list, other)) = seen.insert(n.address, (list, &n.name)) {
                        // Point at the second occurrence of the address.
                        let needle = format!("\"{}\"", n.address);
                        let offset = self
                            .text
                            .match_indices(&needle)
                            .nth(1)
                            .map_or(0, |(i, _)| i);
                        return Err(self.err_at(
                            offset,
                            format!("{list}.address"),
                            format!(
                                "nodes `{other}` ([[{other_list}]]) and `{}` ([[{list}]]) have the \
                                 same address {}: each node needs its own address",
                                n.name, n.address
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn nodes(&self, raw: Vec<Spanned<RawNode>>, list: &str) -> Result<Vec<NodeSpec>, SpecError> {
        raw.into_iter()
            .enumerate()
            .map(|(i, n)| {
                let RawNode {
                    name,
                    address,
                    extra_ips,
                    hostnames,
                } = n.into_inner();
                let f = |k: &str| format!("{list}[{i}].{k}");
                Ok(NodeSpec {
                    name: self.parse_with(&name, &f("name"), |s| NodeName::parse(s))?,
                    address: self.parse_with(&address, &f("address"), |s| parse_ip(s))?,
                    extra_ips: extra_ips
                        .iter()
                        .map(|ip| self.parse_with(ip, &f("extra_ips"), |s| parse_ip(s)))
                        .collect::<Result<_, _>>()?,
                    hostnames: hostnames
                        .iter()
                        .map(|h| self.parse_with(h, &f("hostnames"), |s| DnsName::parse(s)))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    fn cluster(
        &self,
        raw: Option<raw::RawCluster>,
        cp: &[NodeSpec],
    ) -> Result<ClusterInfo, SpecError> {
        let raw::RawCluster {
            name,
            dns_domain,
            service_cidr,
            endpoint,
            extra_sans,
        } = raw.unwrap_or(raw::RawCluster {
            name: None,
            dns_domain: None,
            service_cidr: None,
            endpoint: None,
            extra_sans: None,
        });
        let name = match name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return Err(self.err(&n, "cluster.name", "the cluster name is empty"));
            }
            Some(n) => n.into_inner(),
            None => "kubernetes".into(),
        };
        let dns_domain = match dns_domain {
            Some(d) => self.parse_with(&d, "cluster.dns_domain", |s| DnsName::parse(s))?,
            None => DnsName::unchecked("cluster.local"),
        };
        let service_cidrs = match service_cidr {
            None => vec![Cidr {
                network: IpAddr::V4([10, 96, 0, 0].into()),
                prefix: 12,
            }],
            Some(v) => self.cidrs(&v)?,
        };
        let endpoint = match endpoint {
            Some(e) => self.parse_with(&e, "cluster.endpoint", |s| Endpoint::parse(s))?,
            None => Endpoint {
                host: Host::Ip(
                    cp.first()
                        .map_or(IpAddr::V4([127, 0, 0, 1].into()), |n| n.address),
                ),
                port: 6443,
            },
        };
        let extra_sans = extra_sans
            .unwrap_or_default()
            .iter()
            .map(|s| self.parse_with(s, "cluster.extra_sans", |v| parse_san(v)))
            .collect::<Result<_, _>>()?;
        Ok(ClusterInfo {
            name,
            dns_domain,
            service_cidrs,
            endpoint,
            extra_sans,
        })
    }

    fn cidrs(&self, v: &Spanned<toml::Value>) -> Result<Vec<Cidr>, SpecError> {
        let field = "cluster.service_cidr";
        let items: Vec<&str> = match v.get_ref() {
            toml::Value::String(s) => vec![s.as_str()],
            toml::Value::Array(a) if !a.is_empty() && a.len() <= 2 => a
                .iter()
                .map(|x| x.as_str())
                .collect::<Option<_>>()
                .ok_or_else(|| self.err(v, field, "expected CIDR strings"))?,
            _ => {
                return Err(self.err(
                    v,
                    field,
                    "expected a CIDR string or a list of one IPv4 and one IPv6 CIDR (dual-stack)",
                ));
            }
        };
        let cidrs = items
            .iter()
            .map(|s| s.parse::<Cidr>().map_err(|m| self.err(v, field, m)))
            .collect::<Result<Vec<_>, _>>()?;
        if let [a, b] = cidrs.as_slice()
            && a.network.is_ipv4() == b.network.is_ipv4()
        {
            return Err(self.err(
                v,
                field,
                "a dual-stack list needs one IPv4 and one IPv6 CIDR",
            ));
        }
        Ok(cidrs)
    }

    fn crypto(&self, raw: Option<raw::RawCrypto>) -> Result<CryptoSpec, SpecError> {
        let (algorithm, ca_validity, leaf_validity) = raw.map_or((None, None, None), |c| {
            (c.algorithm, c.ca_validity, c.leaf_validity)
        });
        let algorithm = match algorithm {
            Some(a) => self.parse_with(&a, "crypto.algorithm", |s| s.parse::<KeyAlgorithm>())?,
            None => KeyAlgorithm::EcdsaP256,
        };
        let lifetime = |v: Option<Spanned<String>>, field: &str, default: Lifetime| match v {
            Some(v) => self.parse_with(&v, field, |s| s.parse::<Lifetime>()),
            None => Ok(default),
        };
        Ok(CryptoSpec {
            algorithm,
            ca_validity: lifetime(ca_validity, "crypto.ca_validity", Lifetime::from_days(3650))?,
            leaf_validity: lifetime(
                leaf_validity,
                "crypto.leaf_validity",
                Lifetime::from_days(365),
            )?,
        })
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address"))
}

#[cfg(test)]
mod tests;

/// Spec values that the chosen profile puts in no certificate (a node's
/// `hostnames` where no template takes them, `extra_sans` with no `extra`
/// rule): warnings, so that a value the user expects in a SAN is never
/// silently dropped. Located at the value's line in the spec file when it
/// can be read again.
pub fn unused_fields(
    spec: &ClusterSpec,
    graph: &crate::graph::CertGraph,
    profile: &str,
) -> Vec<InputError> {
    let mut dns = std::collections::BTreeSet::new();
    let mut ips = std::collections::BTreeSet::new();
    for (_, c) in graph.certs() {
        dns.extend(c.sans.dns.iter().map(|d| d.as_str().to_owned()));
        ips.extend(c.sans.ip.iter().copied());
    }
    let text = std::fs::read_to_string(&spec.source).unwrap_or_default();
    let at = |value: &str| {
        let needle = format!("\"{value}\"");
        match text.find(&needle) {
            Some(i) => Location::at(&spec.source, &text, i),
            None => Location::file(&spec.source),
        }
    };
    let mut out = Vec::new();
    let mut warn = |value: String, field: String, what: &str| {
        out.push(InputError {
            location: at(&value),
            field,
            message: format!(
                "`{value}` is in no certificate: profile `{profile}` does not use {what}"
            ),
        });
    };
    let lists = [
        ("control_plane", spec.control_plane.as_slice()),
        ("etcd", spec.etcd_members()),
        ("worker", spec.workers.as_slice()),
    ];
    for (list, nodes) in lists {
        if list == "etcd" && matches!(spec.etcd, EtcdTopology::Stacked) {
            continue;
        }
        for (i, n) in nodes.iter().enumerate() {
            for h in &n.hostnames {
                if !dns.contains(h.as_str()) {
                    warn(
                        h.to_string(),
                        format!("{list}[{i}].hostnames"),
                        "this node's hostnames",
                    );
                }
            }
            for ip in &n.extra_ips {
                if !ips.contains(ip) {
                    warn(
                        ip.to_string(),
                        format!("{list}[{i}].extra_ips"),
                        "this node's extra_ips",
                    );
                }
            }
        }
    }
    for san in &spec.cluster.extra_sans {
        let used = match san {
            San::Dns(d) => dns.contains(d.as_str()),
            San::Ip(ip) => ips.contains(ip),
        };
        if !used {
            let v = match san {
                San::Dns(d) => d.to_string(),
                San::Ip(ip) => ip.to_string(),
            };
            warn(
                v,
                "cluster.extra_sans".into(),
                "cluster.extra_sans (no `extra` SAN rule)",
            );
        }
    }
    out
}
