//! A typed kubeconfig model.
//!
//! This crate models the subset of a kubeconfig file (`apiVersion: v1`,
//! `kind: Config`) that a PKI tool writes and audits: clusters with a server
//! and an optional CA, users authenticating with a client certificate or a
//! bearer token, and contexts tying the two together. It knows nothing about
//! certificates beyond PEM bytes ([`Material::Embedded`]) and file paths
//! ([`Material::Path`]).
//!
//! # YAML
//!
//! Serialization uses [`serde_yaml_ng`], the maintained fork of the
//! deprecated `serde_yaml` crate (same data model, MSRV 1.64). `serde-saphyr`
//! was considered as well, but its current release requires a newer Rust than
//! this workspace's `rust-version`.
//!
//! Output has the shape `kubectl` writes (keys in the same, alphabetical,
//! order):
//!
//! ```yaml
//! apiVersion: v1
//! clusters:
//! - cluster:
//!     certificate-authority-data: LS0t...
//!     server: https://10.0.0.1:6443
//!   name: kubernetes
//! contexts:
//! - context:
//!     cluster: kubernetes
//!     user: kubernetes-admin
//!   name: kubernetes-admin@kubernetes
//! current-context: kubernetes-admin@kubernetes
//! kind: Config
//! preferences: {}
//! users:
//! - name: kubernetes-admin
//!   user:
//!     client-certificate-data: LS0t...
//!     client-key-data: LS0t...
//! ```
//!
//! Parsing ([`Kubeconfig::from_yaml`]) walks a generic YAML tree by hand
//! instead of deriving `Deserialize`, so that error messages are produced by
//! this crate and can never echo a key, certificate or token back.
//!
//! # Secrets
//!
//! The [`Debug`] implementations of [`Material`] and [`Credential`] redact
//! embedded bytes and tokens, and no [`Error`] carries field values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

/// Errors produced while reading or writing a kubeconfig.
///
/// No variant ever contains key material, certificate bytes or tokens: only
/// field paths (such as `users["admin"].user.client-key-data`) and
/// descriptions of what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not valid YAML, or YAML could not be produced.
    #[error("kubeconfig YAML error: {0}")]
    Yaml(String),
    /// A `*-data` field is not valid standard (padded) base64.
    #[error("kubeconfig field `{field}` is not valid base64: {reason}")]
    Base64 {
        /// Path of the offending field.
        field: String,
        /// What is wrong with the encoding (never the data itself).
        reason: String,
    },
    /// A required key or structure is absent.
    #[error("kubeconfig is missing {what}")]
    Missing {
        /// Description of what is missing, with its path.
        what: String,
    },
    /// A key is present but has the wrong type or an unsupported value.
    #[error("kubeconfig field `{field}` is invalid: {reason}")]
    Invalid {
        /// Path of the offending field.
        field: String,
        /// What is wrong with it (never the value itself if it may be secret).
        reason: String,
    },
}

/// A whole kubeconfig file (`apiVersion: v1`, `kind: Config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The `clusters` list.
    pub clusters: Vec<NamedCluster>,
    /// The `users` list.
    pub users: Vec<NamedUser>,
    /// The `contexts` list.
    pub contexts: Vec<NamedContext>,
    /// The `current-context` value (empty when none is selected).
    pub current_context: String,
}

/// An entry of the `clusters` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCluster {
    /// The cluster's name, referenced by contexts.
    pub name: String,
    /// How to reach and trust the cluster.
    pub cluster: Cluster,
}

/// Connection details of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The API server URL (`server`).
    pub server: String,
    /// The CA bundle (`certificate-authority-data` or `certificate-authority`).
    pub certificate_authority: Option<Material>,
}

/// An entry of the `users` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedUser {
    /// The user's name, referenced by contexts.
    pub name: String,
    /// How the user authenticates.
    pub user: Credential,
}

/// How a user authenticates to the API server.
///
/// `Debug` redacts embedded key material and tokens.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate and its private key
    /// (`client-certificate[-data]`, `client-key[-data]`).
    ClientCert {
        /// The PEM client certificate.
        cert: Material,
        /// The PEM private key.
        key: Material,
    },
    /// A bearer token (`token`).
    Token(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientCert { cert, key } => f
                .debug_struct("ClientCert")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// PEM material, either embedded in the kubeconfig or referenced by path.
///
/// `Debug` prints only the length of embedded bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Material {
    /// PEM bytes, written base64-encoded in the `*-data` key.
    Embedded(Vec<u8>),
    /// A file path, written as-is in the key without `-data`. Relative paths
    /// are relative to the kubeconfig file's directory (as kubectl resolves
    /// them).
    Path(PathBuf),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded(bytes) => write!(f, "Embedded(<{} bytes>)", bytes.len()),
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
        }
    }
}

impl Material {
    /// Returns the PEM bytes: the embedded bytes, or the contents of the file,
    /// with a relative path resolved against `base_dir` (normally the
    /// directory holding the kubeconfig).
    pub fn resolve(&self, base_dir: &Path) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Embedded(bytes) => Ok(bytes.clone()),
            Self::Path(path) => std::fs::read(base_dir.join(path)),
        }
    }
}

/// An entry of the `contexts` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    /// The context's name, referenced by `current-context`.
    pub name: String,
    /// Name of the cluster this context uses.
    pub cluster: String,
    /// Name of the user this context uses.
    pub user: String,
}

impl Kubeconfig {
    /// One cluster, one user, one context named `"<user>@<cluster>"`
    /// (kubeadm's naming), with `current-context` set to it.
    pub fn single(
        cluster_name: &str,
        server: &str,
        ca: Material,
        user_name: &str,
        credential: Credential,
    ) -> Self {
        let context_name = format!("{user_name}@{cluster_name}");
        Self {
            clusters: vec![NamedCluster {
                name: cluster_name.to_owned(),
                cluster: Cluster {
                    server: server.to_owned(),
                    certificate_authority: Some(ca),
                },
            }],
            users: vec![NamedUser {
                name: user_name.to_owned(),
                user: credential,
            }],
            contexts: vec![NamedContext {
                name: context_name.clone(),
                cluster: cluster_name.to_owned(),
                user: user_name.to_owned(),
            }],
            current_context: context_name,
        }
    }

    /// Serializes to YAML in the shape kubectl writes.
    ///
    /// Fails only if a [`Material::Path`] is not valid UTF-8 (kubeconfig
    /// paths are strings) or the serializer itself fails.
    pub fn to_yaml(&self) -> Result<String, Error> {
        // The embedded PEM data (base64, kilobytes per kubeconfig) goes
        // into the YAML after the emitter has laid out the rest: the
        // emitter would scan and write it a character at a time, and a
        // fleet has ten thousand kubeconfigs. The bytes are the same as the
        // emitter's own (tested against it).
        let mut wire = self.wire()?;
        let mut data = Vec::new();
        for c in &mut wire.clusters {
            swap_out(&mut c.cluster.certificate_authority_data, &mut data);
        }
        for u in &mut wire.users {
            swap_out(&mut u.user.client_certificate_data, &mut data);
            swap_out(&mut u.user.client_key_data, &mut data);
        }
        let skeleton = serde_yaml_ng::to_string(&wire).map_err(|e| Error::Yaml(e.to_string()))?;
        match swap_in(&skeleton, &data) {
            Some(yaml) => Ok(yaml),
            None => self.to_yaml_by_emitter(),
        }
    }

    /// [`Kubeconfig::to_yaml`], every scalar written by the YAML emitter.
    fn to_yaml_by_emitter(&self) -> Result<String, Error> {
        serde_yaml_ng::to_string(&self.wire()?).map_err(|e| Error::Yaml(e.to_string()))
    }

    /// The serializable form.
    fn wire(&self) -> Result<WireConfig<'_>, Error> {
        let clusters = self
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let field = format!("clusters[{i}].cluster.certificate-authority");
                let (ca_path, ca_data) =
                    wire_material(c.cluster.certificate_authority.as_ref(), &field)?;
                Ok(WireNamedCluster {
                    cluster: WireCluster {
                        certificate_authority: ca_path,
                        certificate_authority_data: ca_data,
                        server: &c.cluster.server,
                    },
                    name: &c.name,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let users = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let user = match &u.user {
                    Credential::ClientCert { cert, key } => {
                        let (cert_path, cert_data) = wire_material(
                            Some(cert),
                            &format!("users[{i}].user.client-certificate"),
                        )?;
                        let (key_path, key_data) =
                            wire_material(Some(key), &format!("users[{i}].user.client-key"))?;
                        WireUser {
                            client_certificate: cert_path,
                            client_certificate_data: cert_data,
                            client_key: key_path,
                            client_key_data: key_data,
                            token: None,
                        }
                    }
                    Credential::Token(token) => WireUser {
                        client_certificate: None,
                        client_certificate_data: None,
                        client_key: None,
                        client_key_data: None,
                        token: Some(token),
                    },
                };
                Ok(WireNamedUser {
                    name: &u.name,
                    user,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let contexts = self
            .contexts
            .iter()
            .map(|c| WireNamedContext {
                context: WireContext {
                    cluster: &c.cluster,
                    user: &c.user,
                },
                name: &c.name,
            })
            .collect();
        Ok(WireConfig {
            api_version: "v1",
            clusters,
            contexts,
            current_context: &self.current_context,
            kind: "Config",
            preferences: BTreeMap::new(),
            users,
        })
    }

    /// Parses a kubeconfig, e.g. to audit an existing file.
    ///
    /// Requires `apiVersion: v1` and `kind: Config`. Missing or `null`
    /// `clusters`/`users`/`contexts` lists are empty and a missing
    /// `current-context` is the empty string, as kubectl treats them. Every
    /// entry must have its required structure (`name`; `cluster.server`;
    /// `user` with a client certificate *and* key, or a `token`;
    /// `context.cluster` and `context.user`), otherwise a typed [`Error`] is
    /// returned. Keys this model does not represent (`preferences`,
    /// `extensions`, `namespace`, `insecure-skip-tls-verify`, ...) are
    /// ignored. When both `X-data` and `X` are present, the embedded data
    /// wins, as in kubectl.
    ///
    /// Never panics; errors never contain key material, certificates or tokens.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let root: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::Yaml(redact_quoted(&e.to_string())))?;
        if root.is_null() {
            return Err(Error::Missing {
                what: "a kubeconfig document (the input is empty)".to_owned(),
            });
        }
        let root = as_mapping(&root, "<document>")?;

        let api_version = req_str(root, "apiVersion", "")?;
        if api_version != "v1" {
            return Err(Error::Invalid {
                field: "apiVersion".to_owned(),
                reason: format!("expected `v1`, found `{}`", shown(&api_version)),
            });
        }
        let kind = req_str(root, "kind", "")?;
        if kind != "Config" {
            return Err(Error::Invalid {
                field: "kind".to_owned(),
                reason: format!("expected `Config`, found `{}`", shown(&kind)),
            });
        }

        let clusters = opt_seq(root, "clusters")?
            .iter()
            .enumerate()
            .map(|(i, v)| parse_cluster(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let users = opt_seq(root, "users")?
            .iter()
            .enumerate()
            .map(|(i, v)| parse_user(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let contexts = opt_seq(root, "contexts")?
            .iter()
            .enumerate()
            .map(|(i, v)| parse_context(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let current_context = opt_str(root, "current-context", "")?.unwrap_or_default();

        Ok(Self {
            clusters,
            users,
            contexts,
            current_context,
        })
    }

    /// The current context together with the cluster and user it names.
    ///
    /// `None` if `current-context` is empty or any of the three is not found.
    pub fn current(&self) -> Option<(&NamedContext, &NamedCluster, &NamedUser)> {
        if self.current_context.is_empty() {
            return None;
        }
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)?;
        let cluster = self.clusters.iter().find(|c| c.name == context.cluster)?;
        let user = self.users.iter().find(|u| u.name == context.user)?;
        Some((context, cluster, user))
    }
}

// ---------------------------------------------------------------------------
// Serialization: borrowed wire structs, fields in kubectl's (alphabetical)
// order.

#[derive(Serialize)]
struct WireConfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    clusters: Vec<WireNamedCluster<'a>>,
    contexts: Vec<WireNamedContext<'a>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
    kind: &'static str,
    preferences: BTreeMap<String, String>,
    users: Vec<WireNamedUser<'a>>,
}

#[derive(Serialize)]
struct WireNamedCluster<'a> {
    cluster: WireCluster<'a>,
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WireCluster<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
    server: &'a str,
}

#[derive(Serialize)]
struct WireNamedContext<'a> {
    context: WireContext<'a>,
    name: &'a str,
}

#[derive(Serialize)]
struct WireContext<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct WireNamedUser<'a> {
    name: &'a str,
    user: WireUser<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WireUser<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

/// What stands for the `n`th embedded datum in the emitter's YAML.
fn placeholder(n: usize) -> String {
    format!("kpki-embedded-data-{n:04}")
}

/// Takes base64 PEM data out of `slot` into `data`, leaving a placeholder.
/// Only data the emitter writes as a plain scalar is taken: base64 of a
/// PEM text (`-----BEGIN` is `LS0tLS1`), never a bare number or keyword.
fn swap_out(slot: &mut Option<String>, data: &mut Vec<String>) {
    if let Some(d) = slot.as_mut()
        && d.starts_with("LS0tLS1")
    {
        data.push(std::mem::replace(d, placeholder(data.len())));
    }
}

/// Puts `data` back where [`swap_out`] left placeholders: `None` unless
/// each placeholder is found exactly once, as a whole value at the end of
/// a line (the caller then lets the emitter write everything).
fn swap_in(skeleton: &str, data: &[String]) -> Option<String> {
    let mut at = Vec::with_capacity(data.len());
    for n in 0..data.len() {
        let p = format!(" {}\n", placeholder(n));
        let mut found = skeleton.match_indices(&p);
        let (i, _) = found.next()?;
        if found.next().is_some() {
            return None;
        }
        // Past the space, up to the newline.
        at.push((i + 1, p.len() - 2, n));
    }
    at.sort_unstable();
    let size = skeleton.len() + data.iter().map(String::len).sum::<usize>();
    let mut out = String::with_capacity(size);
    let mut from = 0;
    for (i, len, n) in at {
        out.push_str(skeleton.get(from..i)?);
        out.push_str(data.get(n)?);
        from = i + len;
    }
    out.push_str(skeleton.get(from..)?);
    Some(out)
}

/// Splits a material into its (path, base64 data) wire form.
fn wire_material<'a>(
    material: Option<&'a Material>,
    field: &str,
) -> Result<(Option<&'a str>, Option<String>), Error> {
    match material {
        None => Ok((None, None)),
        Some(Material::Embedded(bytes)) => Ok((None, Some(BASE64.encode(bytes)))),
        Some(Material::Path(path)) => match path.to_str() {
            Some(s) => Ok((Some(s), None)),
            None => Err(Error::Invalid {
                field: field.to_owned(),
                reason: "path is not valid UTF-8".to_owned(),
            }),
        },
    }
}

// ---------------------------------------------------------------------------
// Parsing: a hand-written walk over `serde_yaml_ng::Value`.

/// Replaces the contents of `"..."` and `` `...` `` spans in a parser message
/// with `<redacted>`: the YAML library quotes offending scalars (e.g. for a
/// `!!int` tag on a token), and those may be secrets. Location information
/// and libyaml's own descriptions are kept.
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        // Skip to the matching unescaped delimiter (or the end).
        let mut escaped = false;
        for inner in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if inner == '\\' && c == '"' {
                escaped = true;
            } else if inner == c {
                break;
            }
        }
        out.push_str("<redacted>");
        out.push(c);
    }
    out
}

/// Joins a parent path and a key for error messages.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn as_mapping<'a>(v: &'a Value, field: &str) -> Result<&'a Mapping, Error> {
    match v {
        Value::Mapping(m) => Ok(m),
        other => Err(Error::Invalid {
            field: field.to_owned(),
            reason: format!("expected a mapping, found {}", type_name(other)),
        }),
    }
}

/// A required mapping under `key`.
fn req_mapping<'a>(map: &'a Mapping, key: &str, parent: &str) -> Result<&'a Mapping, Error> {
    let field = join(parent, key);
    match map.get(key) {
        None | Some(Value::Null) => Err(Error::Missing {
            what: format!("`{field}`"),
        }),
        Some(v) => as_mapping(v, &field),
    }
}

/// An optional list under `key`; absent or `null` is empty.
fn opt_seq<'a>(map: &'a Mapping, key: &str) -> Result<&'a [Value], Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Sequence(s)) => Ok(s),
        Some(other) => Err(Error::Invalid {
            field: key.to_owned(),
            reason: format!("expected a list, found {}", type_name(other)),
        }),
    }
}

/// An optional string under `key`; absent or `null` is `None`.
fn opt_str(map: &Mapping, key: &str, parent: &str) -> Result<Option<String>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::Invalid {
            field: join(parent, key),
            reason: format!("expected a string, found {}", type_name(other)),
        }),
    }
}

/// A required, non-empty string under `key`.
fn req_str(map: &Mapping, key: &str, parent: &str) -> Result<String, Error> {
    match opt_str(map, key, parent)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::Missing {
            what: format!("`{}`", join(parent, key)),
        }),
    }
}

/// Reads `<key>-data` (preferred) or `<key>` as a [`Material`].
fn opt_material(map: &Mapping, key: &str, parent: &str) -> Result<Option<Material>, Error> {
    let data_key = format!("{key}-data");
    if let Some(data) = opt_str(map, &data_key, parent)?.filter(|s| !s.is_empty()) {
        let bytes = decode_base64(&data, &join(parent, &data_key))?;
        return Ok(Some(Material::Embedded(bytes)));
    }
    Ok(opt_str(map, key, parent)?
        .filter(|s| !s.is_empty())
        .map(|p| Material::Path(PathBuf::from(p))))
}

/// Decodes standard base64 (tolerating surrounding whitespace) without ever
/// putting the input or a decoded byte into the error.
fn decode_base64(data: &str, field: &str) -> Result<Vec<u8>, Error> {
    BASE64.decode(data.trim()).map_err(|e| {
        let reason = match e {
            base64::DecodeError::InvalidByte(offset, _) => {
                format!("invalid character at offset {offset}")
            }
            base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
            base64::DecodeError::InvalidLastSymbol(offset, _) => {
                format!("invalid last symbol at offset {offset}")
            }
            base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
        };
        Error::Base64 {
            field: field.to_owned(),
            reason,
        }
    })
}

/// A value of the file as an error message may quote it. A damaged file can
/// fold the lines below a short value into it (a plain YAML scalar continues
/// on more-indented lines), and those lines may be `client-key-data`: only
/// the first word is kept, cut to 12 characters when longer than 40 (a
/// base64 key line is longer), and quotes and backslashes are dropped.
fn shown(value: &str) -> String {
    let word = value.split_whitespace().next().unwrap_or("");
    let mut out: String = if word.chars().count() > 40 {
        word.chars().take(12).collect()
    } else {
        word.to_owned()
    };
    out.retain(|c| c != '"' && c != '\\' && c != '`' && !c.is_control());
    if out.len() < value.len() {
        out.push('…');
    }
    out
}

/// Path prefix for list entry `i` of `list`, with its name when known.
fn entry_path(list: &str, i: usize, entry: &Mapping) -> String {
    match entry.get("name") {
        Some(Value::String(name)) if !name.is_empty() => {
            format!("{list}[{i}] (\"{}\")", shown(name))
        }
        _ => format!("{list}[{i}]"),
    }
}

fn parse_cluster(i: usize, v: &Value) -> Result<NamedCluster, Error> {
    let entry = as_mapping(v, &format!("clusters[{i}]"))?;
    let path = entry_path("clusters", i, entry);
    let name = req_str(entry, "name", &path)?;
    let cluster = req_mapping(entry, "cluster", &path)?;
    let cpath = join(&path, "cluster");
    let server = req_str(cluster, "server", &cpath)?;
    let certificate_authority = opt_material(cluster, "certificate-authority", &cpath)?;
    Ok(NamedCluster {
        name,
        cluster: Cluster {
            server,
            certificate_authority,
        },
    })
}

fn parse_user(i: usize, v: &Value) -> Result<NamedUser, Error> {
    let entry = as_mapping(v, &format!("users[{i}]"))?;
    let path = entry_path("users", i, entry);
    let name = req_str(entry, "name", &path)?;
    let user = req_mapping(entry, "user", &path)?;
    let upath = join(&path, "user");
    let cert = opt_material(user, "client-certificate", &upath)?;
    let key = opt_material(user, "client-key", &upath)?;
    let token = opt_str(user, "token", &upath)?.filter(|t| !t.is_empty());
    let credential = match (cert, key, token) {
        (Some(cert), Some(key), _) => Credential::ClientCert { cert, key },
        (Some(_), None, _) => {
            return Err(Error::Missing {
                what: format!(
                    "`{upath}.client-key-data` or `{upath}.client-key` (a client certificate needs its key)"
                ),
            });
        }
        (None, Some(_), _) => {
            return Err(Error::Missing {
                what: format!(
                    "`{upath}.client-certificate-data` or `{upath}.client-certificate` (a client key needs its certificate)"
                ),
            });
        }
        (None, None, Some(token)) => Credential::Token(token),
        (None, None, None) => {
            return Err(Error::Missing {
                what: format!(
                    "a supported credential in `{upath}` (client-certificate + client-key, or token)"
                ),
            });
        }
    };
    Ok(NamedUser {
        name,
        user: credential,
    })
}

fn parse_context(i: usize, v: &Value) -> Result<NamedContext, Error> {
    let entry = as_mapping(v, &format!("contexts[{i}]"))?;
    let path = entry_path("contexts", i, entry);
    let name = req_str(entry, "name", &path)?;
    let context = req_mapping(entry, "context", &path)?;
    let cpath = join(&path, "context");
    Ok(NamedContext {
        name,
        cluster: req_str(context, "cluster", &cpath)?,
        user: req_str(context, "user", &cpath)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PEM-like text: what kpki embeds.
    fn pem(label: &str, body: &[u8]) -> Vec<u8> {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            BASE64.encode(body)
        )
        .into_bytes()
    }

    proptest::proptest! {
        /// The data put in after the emitter is what the emitter writes
        /// itself, whatever the names, server, paths and data (PEM or not,
        /// a name that is a placeholder, YAML keywords and quotes).
        #[test]
        fn yaml_with_data_put_in_is_the_emitters(
            cluster in proptest::prop_oneof![
                proptest::string::string_regex("[a-z0-9.:-]{1,20}").unwrap(),
                proptest::string::string_regex(".{0,12}").unwrap(),
                proptest::strategy::Just("kpki-embedded-data-0000".to_owned()),
                proptest::strategy::Just("true".to_owned()),
            ],
            user in proptest::prop_oneof![
                proptest::string::string_regex("system:node:[a-z0-9-]{1,12}").unwrap(),
                proptest::string::string_regex("[ -~]{0,16}").unwrap(),
                proptest::strategy::Just("kpki-embedded-data-0001".to_owned()),
            ],
            server in proptest::string::string_regex("https://[a-z0-9.-]{1,20}:[0-9]{2,5}").unwrap(),
            ca in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cert in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            key in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            as_pem in proptest::collection::vec(proptest::bool::ANY, 3),
            ca_path in proptest::bool::ANY,
        ) {
            let data = |b: &[u8], i: usize, label: &str| {
                Material::Embedded(if as_pem[i] { pem(label, b) } else { b.to_vec() })
            };
            let ca = if ca_path {
                Material::Path("../pki/ca.crt".into())
            } else {
                data(&ca, 0, "CERTIFICATE")
            };
            let k = Kubeconfig::single(
                &cluster,
                &server,
                ca,
                &user,
                Credential::ClientCert {
                    cert: data(&cert, 1, "CERTIFICATE"),
                    key: data(&key, 2, "EC PRIVATE KEY"),
                },
            );
            let fast = k.to_yaml().unwrap();
            proptest::prop_assert_eq!(&fast, &k.to_yaml_by_emitter().unwrap());
        }
    }

    /// The data does go in after the emitter (the fast path is taken) for
    /// what kpki writes, and not when a name is a placeholder.
    #[test]
    fn embedded_pem_data_bypasses_the_emitter() {
        let mut wire_data = Vec::new();
        let mut slot = Some(BASE64.encode(pem("CERTIFICATE", b"x")));
        swap_out(&mut slot, &mut wire_data);
        assert_eq!(slot.as_deref(), Some("kpki-embedded-data-0000"));
        assert_eq!(wire_data.len(), 1);
        let mut number = Some("1234".to_owned());
        swap_out(&mut number, &mut wire_data);
        assert_eq!(number.as_deref(), Some("1234"), "a bare number stays");
        let skeleton = "a: kpki-embedded-data-0000\nb: c\n";
        assert_eq!(
            swap_in(skeleton, &wire_data).unwrap(),
            format!("a: {}\nb: c\n", wire_data[0])
        );
        let twice = "a: kpki-embedded-data-0000\nb: kpki-embedded-data-0000\n";
        assert_eq!(swap_in(twice, &wire_data), None);
    }

    const CERT: &[u8] =
        b"-----BEGIN CERTIFICATE-----\nMIIBfakecertificate\n-----END CERTIFICATE-----\n";
    const KEY: &[u8] =
        b"-----BEGIN PRIVATE KEY-----\nMIIEsupersecretkey\n-----END PRIVATE KEY-----\n";
    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIBfakeca\n-----END CERTIFICATE-----\n";

    fn embedded() -> Kubeconfig {
        Kubeconfig::single(
            "kubernetes",
            "https://10.0.0.1:6443",
            Material::Embedded(CA.to_vec()),
            "kubernetes-admin",
            Credential::ClientCert {
                cert: Material::Embedded(CERT.to_vec()),
                key: Material::Embedded(KEY.to_vec()),
            },
        )
    }

    #[test]
    fn single_uses_kubeadm_naming() {
        let kc = embedded();
        assert_eq!(kc.current_context, "kubernetes-admin@kubernetes");
        let (ctx, cluster, user) = kc.current().expect("current context resolves");
        assert_eq!(ctx.name, "kubernetes-admin@kubernetes");
        assert_eq!(ctx.cluster, "kubernetes");
        assert_eq!(ctx.user, "kubernetes-admin");
        assert_eq!(cluster.cluster.server, "https://10.0.0.1:6443");
        assert_eq!(user.name, "kubernetes-admin");
    }

    #[test]
    fn roundtrip_embedded() {
        let kc = embedded();
        let yaml = kc.to_yaml().unwrap();
        assert!(yaml.contains("apiVersion: v1"), "{yaml}");
        assert!(yaml.contains("kind: Config"), "{yaml}");
        assert!(yaml.contains("preferences: {}"), "{yaml}");
        assert!(yaml.contains("current-context: kubernetes-admin@kubernetes"));
        assert!(yaml.contains(&format!(
            "certificate-authority-data: {}",
            BASE64.encode(CA)
        )));
        assert!(yaml.contains(&format!("client-certificate-data: {}", BASE64.encode(CERT))));
        assert!(yaml.contains(&format!("client-key-data: {}", BASE64.encode(KEY))));
        assert!(
            !yaml.contains("BEGIN"),
            "PEM must be base64-encoded: {yaml}"
        );
        assert_eq!(Kubeconfig::from_yaml(&yaml).unwrap(), kc);
    }

    #[test]
    fn roundtrip_paths() {
        let kc = Kubeconfig::single(
            "prod",
            "https://api.example:6443",
            Material::Path("pki/ca.crt".into()),
            "alice",
            Credential::ClientCert {
                cert: Material::Path("/etc/kubernetes/pki/alice.crt".into()),
                key: Material::Path("pki/alice.key".into()),
            },
        );
        let yaml = kc.to_yaml().unwrap();
        assert!(yaml.contains("certificate-authority: pki/ca.crt"), "{yaml}");
        assert!(yaml.contains("client-certificate: /etc/kubernetes/pki/alice.crt"));
        assert!(yaml.contains("client-key: pki/alice.key"));
        assert!(!yaml.contains("-data"), "{yaml}");
        assert_eq!(Kubeconfig::from_yaml(&yaml).unwrap(), kc);
    }

    #[test]
    fn roundtrip_token() {
        let kc = Kubeconfig::single(
            "c",
            "https://c:6443",
            Material::Embedded(CA.to_vec()),
            "bot",
            Credential::Token("abcdef.0123456789abcdef".into()),
        );
        let yaml = kc.to_yaml().unwrap();
        assert!(yaml.contains("token: abcdef.0123456789abcdef"), "{yaml}");
        assert!(!yaml.contains("client-"), "{yaml}");
        let back = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(back, kc);
        assert_eq!(
            back.current().unwrap().2.user,
            Credential::Token("abcdef.0123456789abcdef".into())
        );
    }

    #[test]
    fn roundtrip_multiple_and_no_ca() {
        let mut kc = embedded();
        kc.clusters.push(NamedCluster {
            name: "other".into(),
            cluster: Cluster {
                server: "https://other:443".into(),
                certificate_authority: None,
            },
        });
        kc.users.push(NamedUser {
            name: "bot".into(),
            user: Credential::Token("t0k3n".into()),
        });
        kc.contexts.push(NamedContext {
            name: "bot@other".into(),
            cluster: "other".into(),
            user: "bot".into(),
        });
        kc.current_context = "bot@other".into();
        let back = Kubeconfig::from_yaml(&kc.to_yaml().unwrap()).unwrap();
        assert_eq!(back, kc);
        let (_, cluster, user) = back.current().unwrap();
        assert_eq!(cluster.name, "other");
        assert_eq!(user.name, "bot");
    }

    #[test]
    fn accepts_kubectl_extras() {
        let yaml = r#"
apiVersion: v1
kind: Config
preferences:
  colors: true
extensions:
- name: foo
  extension: {a: 1}
clusters:
- name: k
  cluster:
    server: https://k:6443
    insecure-skip-tls-verify: true
    proxy-url: http://proxy:3128
    extensions: []
contexts:
- name: ctx
  context:
    cluster: k
    user: u
    namespace: kube-system
    extensions: null
users:
- name: u
  user:
    client-certificate-data: LS0tLQ==
    client-certificate: /ignored/when/data/present
    client-key: key.pem
    username: ignored
current-context: ctx
"#;
        let kc = Kubeconfig::from_yaml(yaml).unwrap();
        assert_eq!(kc.clusters[0].cluster.certificate_authority, None);
        assert_eq!(
            kc.users[0].user,
            Credential::ClientCert {
                cert: Material::Embedded(b"----".to_vec()),
                key: Material::Path("key.pem".into()),
            }
        );
        assert_eq!(kc.contexts[0].cluster, "k");
        assert!(kc.current().is_some());
    }

    #[test]
    fn empty_lists_and_no_current_context() {
        let kc = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters: null\nusers: []\npreferences: {}\n",
        )
        .unwrap();
        assert!(kc.clusters.is_empty() && kc.users.is_empty() && kc.contexts.is_empty());
        assert_eq!(kc.current_context, "");
        assert!(kc.current().is_none());
    }

    #[test]
    fn current_is_none_on_dangling_reference() {
        let mut kc = embedded();
        kc.contexts[0].user = "nobody".into();
        assert!(kc.current().is_none());
        let mut kc = embedded();
        kc.current_context = "nope".into();
        assert!(kc.current().is_none());
    }

    #[test]
    fn garbage_is_err() {
        for text in [
            "",
            "   \n",
            "garbage",
            "42",
            "- a\n- b\n",
            "{{{{ not yaml",
            "key: [unclosed",
            "a: b\n  c: d\n\t- x",
            "foo: bar\n",
            "\u{0}\u{1}\u{2}",
            "apiVersion: v1\nkind: Pod\n",
            "apiVersion: v2\nkind: Config\n",
            "apiVersion: v1\nkind: Config\nclusters: nope\n",
            "apiVersion: v1\nkind: Config\nclusters:\n- 17\n",
            "---\na: 1\n---\nb: 2\n",
        ] {
            assert!(Kubeconfig::from_yaml(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn truncated_yaml_is_err() {
        let yaml = embedded().to_yaml().unwrap();
        // Every prefix that cuts off required structure must fail, never panic.
        let mut failures = 0;
        for cut in 0..yaml.len() {
            if !yaml.is_char_boundary(cut) {
                continue;
            }
            if Kubeconfig::from_yaml(&yaml[..cut]).is_err() {
                failures += 1;
            }
        }
        assert!(failures > 0);
        // Cut in the middle of the users list: the user entry lacks its key.
        let cut = yaml.find("client-key-data").unwrap();
        let err = Kubeconfig::from_yaml(&yaml[..cut]).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err:?}");
        // Cut before the clusters' server.
        let cut = yaml.find("server:").unwrap();
        assert!(Kubeconfig::from_yaml(&yaml[..cut]).is_err());
        // Cut inside a flow mapping / quoted scalar: a syntax error.
        let err = Kubeconfig::from_yaml("apiVersion: v1\nkind: Config\npreferences: {a: \"b")
            .unwrap_err();
        assert!(matches!(err, Error::Yaml(_)), "{err:?}");
    }

    #[test]
    fn missing_structure_is_typed() {
        let base = "apiVersion: v1\nkind: Config\n";
        let cases = [
            ("", "document"),
            ("# only a comment\n", "document"),
            ("apiVersion: v1\n", "kind"),
            ("kind: Config\n", "apiVersion"),
            ("clusters:\n- name: a\n", "clusters[0] (\"a\").cluster"),
            (
                "clusters:\n- name: a\n  cluster: {}\n",
                "clusters[0] (\"a\").cluster.server",
            ),
            ("clusters:\n- cluster: {server: x}\n", "clusters[0].name"),
            ("users:\n- name: u\n  user: {}\n", "users[0] (\"u\").user"),
            (
                "users:\n- name: u\n  user: {client-certificate: a}\n",
                "client-key",
            ),
            (
                "users:\n- name: u\n  user: {client-key: a}\n",
                "client-certificate",
            ),
            ("users:\n- name: u\n  user: {exec: {command: x}}\n", "token"),
            (
                "contexts:\n- name: c\n  context: {cluster: k}\n",
                "contexts[0] (\"c\").context.user",
            ),
        ];
        for (body, needle) in cases {
            let text = if body.starts_with("apiVersion")
                || body.starts_with("kind")
                || !body.contains(':')
            {
                body.to_owned()
            } else {
                format!("{base}{body}")
            };
            match Kubeconfig::from_yaml(&text) {
                Err(e @ Error::Missing { .. }) => {
                    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}")
                }
                other => panic!("{text:?}: expected Missing, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_base64_is_typed_and_does_not_leak() {
        let yaml = "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    client-certificate-data: LS0tLQ==\n    client-key-data: c2VjcmV0!c2VjcmV0\n";
        let err = Kubeconfig::from_yaml(yaml).unwrap_err();
        match &err {
            Error::Base64 { field, .. } => assert!(field.ends_with("client-key-data"), "{field}"),
            other => panic!("expected Base64, got {other:?}"),
        }
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        assert!(!msg.contains("33"), "must not echo the byte value: {msg}");
    }

    #[test]
    fn values_folded_into_names_do_not_leak() {
        let key = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUxCblpxclI0MmI1aEhpSmJTdkFPMktKYXNy";
        for yaml in [
            format!("apiVersion: v1\nkind: Config\nusers:\n- name: kubernetes-admin\n    {key}\n"),
            format!("apiVersion: v1\nkind: Config\nusers:\n- name: {key}\n"),
            format!("apiVersion: v1\n  {key}\nkind: Config\n"),
            format!("apiVersion: v1\nkind: {key}\n"),
        ] {
            let err = Kubeconfig::from_yaml(&yaml).unwrap_err();
            let msg = format!("{err} {err:?}");
            for w in key.as_bytes().windows(16) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(!msg.contains(w), "{msg} quotes {w}");
            }
        }
        assert_eq!(shown("kubernetes-admin"), "kubernetes-admin");
        assert_eq!(shown("kubernetes-admin LS0t"), "kubernetes-admin…");
    }

    #[test]
    fn wrong_types_do_not_leak() {
        let yaml =
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: [s3cr3t-token]\n";
        let err = Kubeconfig::from_yaml(yaml).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn yaml_errors_do_not_leak() {
        for text in [
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: !!int s3cr3t}\n",
            "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: {token: !!float \"s3cr3t\\\" x\"}\n",
            "s3cr3t: 1\ns3cr3t: 2\n",
        ] {
            let err = Kubeconfig::from_yaml(text).unwrap_err();
            assert!(matches!(err, Error::Yaml(_)), "{err:?}");
            let msg = format!("{err} {err:?}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
        assert_eq!(
            redact_quoted(r#"a "b\"c" d `e` f"#),
            r#"a "<redacted>" d `<redacted>` f"#
        );
        assert_eq!(redact_quoted("open \"abc"), "open \"<redacted>\"");
        assert_eq!(
            redact_quoted("did not find expected ',' or ']' at line 2"),
            "did not find expected ',' or ']' at line 2"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let kc = Kubeconfig::single(
            "c",
            "https://c",
            Material::Embedded(CA.to_vec()),
            "u",
            Credential::ClientCert {
                cert: Material::Embedded(CERT.to_vec()),
                key: Material::Embedded(KEY.to_vec()),
            },
        );
        let dbg = format!("{kc:?} {kc:#?}");
        assert!(!dbg.contains("BEGIN"), "{dbg}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(
            dbg.contains(&format!("Embedded(<{} bytes>)", KEY.len())),
            "{dbg}"
        );
        let tok = Credential::Token("hunter2".into());
        assert_eq!(format!("{tok:?}"), "Token(<redacted>)");
        assert_eq!(format!("{tok:#?}"), "Token(<redacted>)");
        let p = Material::Path("/a/b.key".into());
        assert_eq!(format!("{p:?}"), "Path(\"/a/b.key\")");
    }

    #[test]
    fn resolve_embedded_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.pem"), KEY).unwrap();
        assert_eq!(
            Material::Embedded(CERT.to_vec())
                .resolve(dir.path())
                .unwrap(),
            CERT
        );
        assert_eq!(
            Material::Path("k.pem".into()).resolve(dir.path()).unwrap(),
            KEY
        );
        let abs = dir.path().join("k.pem");
        assert_eq!(
            Material::Path(abs)
                .resolve(Path::new("/nonexistent"))
                .unwrap(),
            KEY
        );
        assert!(
            Material::Path("missing.pem".into())
                .resolve(dir.path())
                .is_err()
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_is_err() {
        use std::os::unix::ffi::OsStrExt as _;
        let bad = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff.crt"));
        let kc = Kubeconfig::single(
            "c",
            "https://c",
            Material::Path(bad),
            "u",
            Credential::Token("t".into()),
        );
        assert!(matches!(kc.to_yaml(), Err(Error::Invalid { .. })));
    }
}
