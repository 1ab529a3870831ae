//! The components' real configuration: the flags they run with.
//!
//! Read from the audited directory (and an optional second directory of
//! units, `kpki check --config-dir`): kubeadm static pod manifests
//! (`kind: Pod`, each container's `command` and `args`), systemd units
//! (`[Service] ExecStart=` with `\` continuations, `Environment=`,
//! `EnvironmentFile=` with its optional `-`, `$VAR` / `${VAR}` expansion,
//! drop-ins in `NAME.service.d/*.conf`), and a `KubeletConfiguration`
//! (`authentication.x509.clientCAFile`, `tlsCertFile`, `tlsPrivateKeyFile`).
//! The component is recognised by its binary's name. Every flag is kept:
//! the PKI flags kpki knows as [`Flag`]s, the others as raw strings.
//!
//! Files are read only as regular files (never a FIFO or a device), at most
//! [`MAX_CONFIG_BYTES`] each, and a path a flag names is resolved only
//! inside the root it is judged against ([`resolve`]).

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};

use serde::Serialize;

use super::FileProblem;
use super::walk;
use crate::k8s::{Component, Flag};

/// The largest configuration file read (1 MiB: units and manifests are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where a value was read: a file (relative to the checked directory, or
/// as given under `--config-dir`) and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Origin {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One flag as a component runs with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagSetting {
    /// The flag name without dashes (`client-ca-file`), or the
    /// KubeletConfiguration field path (`authentication.x509.clientCAFile`).
    pub name: String,
    /// Its value (`None`: a flag given alone, such as `--client-cert-auth`).
    pub value: Option<String>,
    /// Where it was read.
    pub origin: Origin,
}

/// A component's configuration as read from one unit, manifest or
/// KubeletConfiguration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentConfig {
    /// The component.
    pub component: Component,
    /// The unit, manifest or KubeletConfiguration file.
    pub file: String,
    /// Every flag, in order (unknown ones included).
    pub flags: Vec<FlagSetting>,
    /// The directory relative values resolve against.
    #[serde(skip)]
    pub base: PathBuf,
}

impl ComponentConfig {
    /// The PKI flags kpki knows, with their settings (the last setting wins,
    /// as with the components' own flag parsing).
    pub fn known(&self) -> BTreeMap<Flag, &FlagSetting> {
        let mut out = BTreeMap::new();
        for s in &self.flags {
            if let Some(f) = known_flag(self.component, &s.name) {
                out.insert(f, s);
            }
        }
        out
    }

    /// A flag's setting by name (the last one wins).
    pub fn get(&self, name: &str) -> Option<&FlagSetting> {
        self.flags.iter().rev().find(|s| s.name == name)
    }
}

/// The flag a component's setting is, if kpki knows it. The kubelet's
/// command-line spellings (`--client-ca-file`, `--tls-cert-file`) map to
/// their KubeletConfiguration fields.
pub fn known_flag(component: Component, name: &str) -> Option<Flag> {
    let name = match (component, name) {
        (Component::Kubelet, "client-ca-file") => "authentication.x509.clientCAFile",
        (Component::Kubelet, "tls-cert-file") => "tlsCertFile",
        (Component::Kubelet, "tls-private-key-file") => "tlsPrivateKeyFile",
        _ => name,
    };
    Flag::lookup(component, name).ok()
}

/// Whether a setting names a file the component opens at start: the PKI
/// flags, their key flags, kubeconfigs and the kubelet's `--config`.
pub fn names_file(component: Component, name: &str) -> bool {
    known_flag(component, name).is_some()
        || component.flags().any(|f| {
            f.key_flag() == Some(name)
                || (component == Component::Kubelet && name == "tls-private-key-file")
        })
        || matches!(
            name,
            "kubeconfig" | "authentication-kubeconfig" | "authorization-kubeconfig"
        )
        || (component == Component::Kubelet && name == "config")
        || (component == Component::Etcd && name == "config-file")
}

/// The configuration read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Configuration {
    /// One entry per unit, manifest or KubeletConfiguration read.
    pub components: Vec<ComponentConfig>,
    /// Every file read for it (units, drop-ins, environment files,
    /// manifests, kubelet configurations), sorted.
    #[serde(skip)]
    pub files: Vec<String>,
    /// Configuration files that could not be read.
    #[serde(skip)]
    pub problems: Vec<FileProblem>,
}

impl Configuration {
    /// Whether any component configuration was found.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }
}

/// A directory configuration is read from, and how its files are named.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// What names its files in messages (`""`: relative to the checked
    /// directory; else this prefix, e.g. the `--config-dir` as given).
    pub(crate) shown: String,
    /// Walk all of it (a `--config-dir`), or only the places
    /// configuration is kept (the audited directory).
    pub(crate) whole: bool,
}

impl Root {
    fn show(&self, rel: &str) -> String {
        if self.shown.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.shown.trim_end_matches('/'))
        }
    }
}

/// Where configuration is kept under an audited directory (an install
/// root, `/etc/kubernetes`, or anything holding units).
const PLACES: &[&str] = &[
    "",
    "manifests",
    "etc/kubernetes",
    "etc/kubernetes/manifests",
    "etc/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
    "var/lib/kubelet",
];

/// A file of a root, by its path relative to the root.
struct Candidate {
    rel: String,
}

/// Reads the configuration kept under `roots`.
pub(crate) fn read(roots: &[Root]) -> Configuration {
    let mut out = Configuration::default();
    let Some(audited) = roots.first() else {
        return out;
    };
    for root in roots {
        read_root(root, audited, &mut out);
    }
    // etcd `--config-file`: its YAML's TLS settings are etcd's flags.
    for i in 0..out.components.len() {
        let Some(c) = out.components.get(i) else {
            continue;
        };
        if c.component != Component::Etcd {
            continue;
        }
        let Some(value) = c.get("config-file").and_then(|s| s.value.clone()) else {
            continue;
        };
        let base = c.base.clone();
        let found = match resolve(&audited.dir, &base, &value) {
            Resolved::Found { path, rel } => Some((path, audited.show(&rel))),
            _ => roots
                .iter()
                .skip(1)
                .find_map(|r| match resolve(&r.dir, &base, &value) {
                    Resolved::Found { path, rel } => Some((path, r.show(&rel))),
                    _ => None,
                }),
        };
        let Some((path, shown)) = found else {
            continue;
        };
        let text = match walk::read_regular_capped(&path, MAX_CONFIG_BYTES) {
            Ok(b) => String::from_utf8(b).unwrap_or_default(),
            Err(message) => {
                out.problems.push(FileProblem {
                    path: shown,
                    message,
                });
                continue;
            }
        };
        let flags = parse_etcd_config(&text, &shown);
        if let Some(c) = out.components.get_mut(i) {
            // Flags on the command line win over the file, as in etcd.
            let mut merged = flags;
            merged.append(&mut c.flags);
            c.flags = merged;
            out.files.push(shown);
        }
    }
    out.files.sort();
    out.files.dedup();
    out
}

fn candidates(root: &Root, problems: &mut Vec<FileProblem>) -> Vec<Candidate> {
    let mut rels: Vec<String> = Vec::new();
    if root.whole {
        let w = walk::walk(&root.dir);
        problems.extend(w.problems.into_iter().map(|p| FileProblem {
            path: root.show(&p.path),
            message: p.message,
        }));
        rels = w.files;
    } else {
        // Only the places configuration is kept, one level deep (units'
        // drop-in directories one more): never the whole of an install root.
        for place in PLACES {
            let dir = root.dir.join(place);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let rel = if place.is_empty() {
                    name.clone()
                } else {
                    format!("{place}/{name}")
                };
                if name.ends_with(".service.d") && root.dir.join(&rel).is_dir() {
                    if let Ok(rd) = std::fs::read_dir(root.dir.join(&rel)) {
                        let mut inner: Vec<String> = rd
                            .flatten()
                            .map(|e| format!("{rel}/{}", e.file_name().to_string_lossy()))
                            .collect();
                        inner.sort();
                        rels.extend(inner);
                    }
                } else {
                    rels.push(rel);
                }
            }
        }
    }
    rels.sort();
    rels.dedup();
    rels.into_iter()
        .filter(|r| {
            let is_config = [".service", ".yaml", ".yml", ".json"]
                .iter()
                .any(|e| r.ends_with(e))
                || (r.ends_with(".conf") && r.contains(".service.d/"));
            // A FIFO or a device: read_regular says so. A symbolic link
            // out of the root is never followed.
            let full = root.dir.join(r);
            is_config && !full.is_dir() && (!full.exists() || stays_inside(&root.dir, &full))
        })
        .map(|rel| Candidate { rel })
        .collect()
}

fn read_text(root: &Root, rel: &str, problems: &mut Vec<FileProblem>) -> Option<String> {
    match walk::read_regular_capped(&root.dir.join(rel), MAX_CONFIG_BYTES) {
        Ok(b) => match String::from_utf8(b) {
            Ok(s) => Some(s),
            Err(_) => {
                problems.push(FileProblem {
                    path: root.show(rel),
                    message: "is not a text file: not read as configuration".into(),
                });
                None
            }
        },
        Err(message) => {
            problems.push(FileProblem {
                path: root.show(rel),
                message,
            });
            None
        }
    }
}

/// Reads one root's configuration. Environment files are looked up under
/// the audited directory first (units kept elsewhere name the audited
/// machine's paths), then under the unit's own root.
fn read_root(root: &Root, audited: &Root, out: &mut Configuration) {
    let files = candidates(root, &mut out.problems);
    // Units by name, as systemd merges them: the unit file of the directory
    // that takes precedence (/etc over /usr/lib and /lib), then every
    // drop-in NAME.service.d/*.conf of any directory, by file name.
    let rank = |rel: &str| -> usize {
        match crate::store::parent_dir(rel) {
            "etc/systemd/system" => 0,
            "usr/lib/systemd/system" => 2,
            "lib/systemd/system" => 3,
            _ => 1,
        }
    };
    let mut units: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
    for c in &files {
        let name = c.rel.rsplit('/').next().unwrap_or(&c.rel);
        if name.ends_with(".service") {
            let e = units.entry(name.to_owned()).or_default();
            if e.0.as_deref().is_none_or(|m| rank(&c.rel) < rank(m)) {
                e.0 = Some(c.rel.clone());
            }
        } else if let Some((unit, _)) = c.rel.rsplit_once(".service.d/") {
            let unit = unit.rsplit('/').next().unwrap_or(unit);
            units
                .entry(format!("{unit}.service"))
                .or_default()
                .1
                .push(c.rel.clone());
        }
    }
    let units: BTreeMap<String, Vec<String>> = units
        .into_values()
        .filter_map(|(main, mut drop_ins)| {
            drop_ins.sort_by(|a, b| a.rsplit('/').next().cmp(&b.rsplit('/').next()));
            let first = main.clone().or_else(|| drop_ins.first().cloned())?;
            Some((first, main.into_iter().chain(drop_ins).collect()))
        })
        .collect();
    for (unit, parts) in &units {
        let mut texts = Vec::new();
        for p in parts {
            if let Some(t) = read_text(root, p, &mut out.problems) {
                texts.push((root.show(p), t));
            }
        }
        let base = root
            .dir
            .join(unit)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut env_reader = |path: &str| -> Option<(String, String)> {
            let (full, shown) =
                env_file_path(audited, path).or_else(|| env_file_path(root, path))?;
            let t = match walk::read_regular_capped(&full, MAX_CONFIG_BYTES) {
                Ok(b) => String::from_utf8(b).ok()?,
                Err(message) => {
                    if full.exists() {
                        out.problems.push(FileProblem {
                            path: shown,
                            message,
                        });
                    }
                    return None;
                }
            };
            Some((shown, t))
        };
        let Some(parsed) = parse_unit(&texts, &mut env_reader) else {
            continue;
        };
        // Only a Kubernetes component's unit counts (not nginx's).
        if let Some(cfg) = component_of(&parsed.argv, &root.show(unit), base) {
            out.files.extend(texts.iter().map(|(f, _)| f.clone()));
            out.files.extend(parsed.env_files.iter().cloned());
            out.components.push(cfg);
        }
    }
    for c in &files {
        let yaml = [".yaml", ".yml", ".json"]
            .iter()
            .any(|e| c.rel.ends_with(e));
        if !yaml {
            continue;
        }
        // Any YAML or JSON may be configuration; only in a manifests
        // directory is one that cannot be read a problem (a kpki output's
        // kpki-manifest.json may well be larger than the cap).
        let mut skipped = Vec::new();
        let in_manifests = c.rel.starts_with("manifests/") || c.rel.contains("/manifests/");
        let problems = if in_manifests || root.whole {
            &mut out.problems
        } else {
            &mut skipped
        };
        let Some(text) = read_text(root, &c.rel, problems) else {
            continue;
        };
        // Cheap test before parsing: neither a Pod nor a KubeletConfiguration.
        if !text.contains("Pod") && !text.contains("KubeletConfiguration") {
            continue;
        }
        let shown = root.show(&c.rel);
        let base = root
            .dir
            .join(&c.rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut found = false;
        for argv in parse_manifest(&text, &shown) {
            if let Some(cfg) = component_of(&argv, &shown, base.clone()) {
                out.components.push(cfg);
                found = true;
            }
        }
        if let Some(flags) = parse_kubelet_config(&text, &shown) {
            out.components.push(ComponentConfig {
                component: Component::Kubelet,
                file: shown.clone(),
                flags,
                base,
            });
            found = true;
        }
        if found {
            out.files.push(shown);
        }
    }
}

/// An `EnvironmentFile=` path: absolute paths resolve under the root (the
/// longest suffix that exists), relative ones against the root.
fn env_file_path(root: &Root, path: &str) -> Option<(PathBuf, String)> {
    match resolve(&root.dir, &root.dir, path) {
        Resolved::Found { path, rel } => Some((path, root.show(&rel))),
        _ => None,
    }
}

/// A word of a command line, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) origin: Origin,
}

/// Recognises the component from `argv[0]` and splits the flags.
fn component_of(argv: &[Word], file: &str, base: PathBuf) -> Option<ComponentConfig> {
    let (bin, args) = argv.split_first()?;
    let name = bin.text.rsplit('/').next().unwrap_or(&bin.text);
    // etcdctl is a client, not a component with a configuration.
    let component = name
        .parse::<Component>()
        .ok()
        .filter(|c| *c != Component::Etcdctl)?;
    Some(ComponentConfig {
        component,
        file: file.to_owned(),
        flags: split_flags(args),
        base,
    })
}

/// `--name=value`, `--name value` and `--name` alone (when the next word is
/// a flag too); words that are no flag are kept with an empty name.
pub(crate) fn split_flags(args: &[Word]) -> Vec<FlagSetting> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(w) = args.get(i) {
        i += 1;
        let Some(flag) = w
            .text
            .strip_prefix("--")
            .or_else(|| w.text.strip_prefix('-'))
            .filter(|f| !f.is_empty())
        else {
            out.push(FlagSetting {
                name: String::new(),
                value: Some(w.text.clone()),
                origin: w.origin.clone(),
            });
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => match args.get(i) {
                Some(next) if !next.text.starts_with('-') => {
                    i += 1;
                    (flag.to_owned(), Some(next.text.clone()))
                }
                _ => (flag.to_owned(), None),
            },
        };
        out.push(FlagSetting {
            name,
            value,
            origin: w.origin.clone(),
        });
    }
    out
}

/// The line (1-based) of the first line at or after `from` (0-based) that
/// contains `needle`.
fn line_of(lines: &[&str], from: &mut usize, needle: &str) -> usize {
    // Items are on consecutive lines: a bounded look ahead keeps a
    // manifest of many items that never match (escapes) linear.
    const AHEAD: usize = 256;
    if let Some(i) = lines
        .iter()
        .enumerate()
        .skip(*from)
        .take(AHEAD)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
    {
        *from = i;
    }
    *from + 1
}

/// The command lines of a static pod manifest (`kind: Pod`): one per
/// container, `command` followed by `args`.
pub(crate) fn parse_manifest(text: &str, file: &str) -> Vec<Vec<Word>> {
    let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Vec::new();
    };
    if v.get("kind").and_then(|k| k.as_str()) != Some("Pod") {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut cursor = 0usize;
    let mut out = Vec::new();
    let containers = v
        .get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(|c| c.as_sequence())
        .cloned()
        .unwrap_or_default();
    for c in containers {
        let mut argv = Vec::new();
        for key in ["command", "args"] {
            let items = c
                .get(key)
                .and_then(|x| x.as_sequence())
                .cloned()
                .unwrap_or_default();
            for item in items {
                let text = match item {
                    serde_yaml_ng::Value::String(s) => s,
                    serde_yaml_ng::Value::Number(n) => n.to_string(),
                    serde_yaml_ng::Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                let line = line_of(&lines, &mut cursor, &text);
                argv.push(Word {
                    text,
                    origin: Origin {
                        file: file.to_owned(),
                        line,
                    },
                });
            }
        }
        if !argv.is_empty() {
            out.push(argv);
        }
    }
    out
}

/// The PKI fields of a `KubeletConfiguration` (YAML or JSON).
pub(crate) fn parse_kubelet_config(text: &str, file: &str) -> Option<Vec<FlagSetting>> {
    let v = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).ok()?;
    if v.get("kind").and_then(|k| k.as_str()) != Some("KubeletConfiguration") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let fields: [(&str, &[&str]); 4] = [
        (
            "authentication.x509.clientCAFile",
            &["authentication", "x509", "clientCAFile"],
        ),
        ("tlsCertFile", &["tlsCertFile"]),
        ("tlsPrivateKeyFile", &["tlsPrivateKeyFile"]),
        ("staticPodPath", &["staticPodPath"]),
    ];
    for (name, path) in fields {
        let mut cur = Some(&v);
        for p in path {
            cur = cur.and_then(|c| c.get(*p));
        }
        let Some(value) = cur.and_then(|c| c.as_str()) else {
            continue;
        };
        let mut from = 0;
        let key = path.last().copied().unwrap_or(name);
        let line = line_of(&lines, &mut from, key);
        out.push(FlagSetting {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            origin: Origin {
                file: file.to_owned(),
                line,
            },
        });
    }
    Some(out)
}

/// The TLS settings of an etcd configuration file (`--config-file`), as
/// the flags they stand for.
pub(crate) fn parse_etcd_config(text: &str, file: &str) -> Vec<FlagSetting> {
    let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (section, prefix) in [
        ("client-transport-security", ""),
        ("peer-transport-security", "peer-"),
    ] {
        let mut from = 0;
        let Some(sec) = v.get(section) else { continue };
        line_of(&lines, &mut from, section);
        for key in ["cert-file", "key-file", "trusted-ca-file"] {
            let Some(value) = sec.get(key).and_then(|x| x.as_str()) else {
                continue;
            };
            let mut at = from;
            let line = line_of(&lines, &mut at, key);
            out.push(FlagSetting {
                name: format!("{prefix}{key}"),
                value: Some(value.to_owned()),
                origin: Origin {
                    file: file.to_owned(),
                    line,
                },
            });
        }
    }
    out
}

/// How many characters variables may add to one command line (4 MiB).
const MAX_EXPANDED: usize = 4 * 1024 * 1024;

/// Characters with the line each was read on.
type Located = Vec<(char, usize)>;

/// A unit's environment: name -> (the file that set it, its value).
type Env = BTreeMap<String, (String, Located)>;

/// A unit's command line, read.
#[derive(Debug, Default)]
pub(crate) struct ParsedUnit {
    pub(crate) argv: Vec<Word>,
    /// The environment files read (as shown).
    pub(crate) env_files: Vec<String>,
}

/// The logical lines of a unit or drop-in in section `[Service]`:
/// (key, value with lines). `\` at the end of a line continues it;
/// comment lines inside a continuation are skipped, as systemd does.
fn service_lines(text: &str) -> Vec<(String, Located)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut cur: Option<(String, Located)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if let Some((key, mut value)) = cur.take() {
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                cur = Some((key, value));
                continue;
            }
            let (body, more) = match trimmed.strip_suffix('\\') {
                Some(b) => (b, true),
                None => (trimmed, false),
            };
            value.push((' ', line));
            value.extend(body.chars().map(|c| (c, line)));
            if more {
                cur = Some((key, value));
            } else {
                out.push((key, value));
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') {
            section = trimmed.to_owned();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let (body, more) = match value.trim_start().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (value.trim_start(), false),
        };
        let entry = (
            key.trim().to_owned(),
            body.chars().map(|c| (c, line)).collect(),
        );
        if more {
            cur = Some(entry);
        } else {
            out.push(entry);
        }
    }
    if let Some(e) = cur {
        out.push(e);
    }
    out
}

/// Splits a located string into words, systemd style: whitespace
/// separates, `"..."` and `'...'` quote, `\` escapes. With `env`, `$NAME`
/// alone as a word expands to the variable's words and `${NAME}` expands
/// in place (inside single quotes, neither).
fn words(value: &Located, env: Option<&Env>, file: &str) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::new();
    let mut word = String::new();
    let mut start: Option<usize> = None;
    let push = |out: &mut Vec<Word>, word: &mut String, start: &mut Option<usize>, f: &str| {
        if let Some(line) = start.take() {
            out.push(Word {
                text: std::mem::take(word),
                origin: Origin {
                    file: f.to_owned(),
                    line,
                },
            });
        }
    };
    let mut quote: Option<char> = None;
    let mut i = 0;
    let mut expanded = 0usize;
    // Words that came from an environment variable carry its file.
    let mut word_file = file.to_owned();
    while let Some(&(c, line)) = value.get(i) {
        i += 1;
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                push(&mut out, &mut word, &mut start, &word_file);
                word_file = file.to_owned();
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                start.get_or_insert(line);
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(&(n, _)) = value.get(i) {
                    i += 1;
                    start.get_or_insert(line);
                    word.push(n);
                }
            }
            (q, '$') if q != Some('\'') && env.is_some() => {
                let braced = value.get(i).is_some_and(|(n, _)| *n == '{');
                let mut name = String::new();
                let mut j = i + usize::from(braced);
                while let Some(&(n, _)) = value.get(j) {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        j += 1;
                    } else {
                        break;
                    }
                }
                if braced {
                    if value.get(j).is_some_and(|(n, _)| *n == '}') {
                        j += 1;
                    } else {
                        start.get_or_insert(line);
                        word.push('$');
                        continue;
                    }
                }
                if name.is_empty() {
                    start.get_or_insert(line);
                    word.push('$');
                    continue;
                }
                i = j;
                // A command line of a few variables repeated many times
                // must not grow without bound: past the cap, expand nothing.
                let entry = env.and_then(|e| e.get(&name));
                expanded += entry.map_or(0, |(_, v)| v.len());
                let (env_file, val) = match entry {
                    Some((f, v)) if expanded <= MAX_EXPANDED => (Some(f.clone()), v.clone()),
                    Some((f, _)) => (Some(f.clone()), Vec::new()),
                    None => (None, Vec::new()),
                };
                let alone = !braced
                    && quote.is_none()
                    && start.is_none()
                    && value.get(i).is_none_or(|(n, _)| n.is_whitespace());
                if alone {
                    // Split into words, each with its own line in the
                    // variable's file.
                    let vf = env_file.unwrap_or_else(|| file.to_owned());
                    out.extend(words(&val, None, &vf));
                } else {
                    start.get_or_insert(line);
                    if let Some(f) = env_file {
                        word_file = f;
                    }
                    word.extend(val.iter().map(|(c, _)| *c));
                }
            }
            (_, c) => {
                start.get_or_insert(line);
                word.push(c);
            }
        }
    }
    push(&mut out, &mut word, &mut start, &word_file);
    out
}

/// Parses an environment file: `KEY=VALUE` lines, values optionally
/// quoted, `\` + newline continuing a value, `#` comments. Each value keeps
/// the line of each of its characters.
pub(crate) fn parse_env_file(text: &str) -> Vec<(String, Located)> {
    let chars: Vec<(char, usize)> = text
        .lines()
        .enumerate()
        .flat_map(|(i, l)| {
            l.chars()
                .chain(std::iter::once('\n'))
                .map(move |c| (c, i + 1))
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|(c, _)| *c);
    while i < chars.len() {
        // Start of a line.
        while at(i).is_some_and(|c| c == ' ' || c == '\t') {
            i += 1;
        }
        if matches!(at(i), Some('#' | ';' | '\n')) {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            i += 1;
            continue;
        }
        let mut key = String::new();
        while let Some(c) = at(i) {
            if c == '=' || c == '\n' {
                break;
            }
            key.push(c);
            i += 1;
        }
        if at(i) != Some('=') {
            i += 1;
            continue;
        }
        i += 1;
        let key = key.trim().trim_start_matches("export ").trim().to_owned();
        let mut value: Located = Vec::new();
        let mut quote: Option<char> = None;
        while let Some(&(c, line)) = chars.get(i) {
            i += 1;
            match (quote, c) {
                (None, '\n') => break,
                (None, '"' | '\'') if value.is_empty() => quote = Some(c),
                (Some(q), c) if c == q => {
                    quote = None;
                }
                (Some('\''), c) => value.push((c, line)),
                (_, '\\') => match at(i) {
                    Some('\n') => {
                        // Continuation: the newline becomes a space.
                        value.push((' ', line));
                        i += 1;
                    }
                    Some(n) => {
                        value.push((n, line));
                        i += 1;
                    }
                    None => {}
                },
                (_, c) => value.push((c, line)),
            }
        }
        while value.last().is_some_and(|(c, _)| c.is_whitespace()) {
            value.pop();
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

/// Reads a unit and its drop-ins (`texts`: (file as shown, text), the unit
/// first): the environment (`Environment=`, `EnvironmentFile=`, read
/// through `env_file`) and the last `ExecStart=` (an empty one resets),
/// expanded. `None` when there is no `ExecStart=`.
pub(crate) fn parse_unit(
    texts: &[(String, String)],
    env_file: &mut dyn FnMut(&str) -> Option<(String, String)>,
) -> Option<ParsedUnit> {
    let mut env: Env = BTreeMap::new();
    let mut exec: Option<(String, Located)> = None;
    let mut out = ParsedUnit::default();
    for (file, text) in texts {
        for (key, value) in service_lines(text) {
            match key.as_str() {
                "Environment" => {
                    for w in words(&value, None, file) {
                        if let Some((k, v)) = w.text.split_once('=') {
                            let v = v.chars().map(|c| (c, w.origin.line)).collect();
                            env.insert(k.to_owned(), (file.clone(), v));
                        }
                    }
                }
                "EnvironmentFile" => {
                    let path: String = value.iter().map(|(c, _)| *c).collect();
                    let path = path.trim();
                    let path = path.strip_prefix('-').unwrap_or(path);
                    if let Some((shown, t)) = env_file(path) {
                        for (k, v) in parse_env_file(&t) {
                            env.insert(k, (shown.clone(), v));
                        }
                        out.env_files.push(shown);
                    }
                }
                "ExecStart" => {
                    let text: String = value.iter().map(|(c, _)| *c).collect();
                    exec = if text.trim().is_empty() {
                        None
                    } else {
                        Some((file.clone(), value))
                    };
                }
                _ => {}
            }
        }
    }
    let (file, mut value) = exec?;
    // Prefixes: `-`, `@`, `+`, `!`, `:` change how systemd runs it, not what.
    let prefix = value
        .iter()
        .take_while(|(c, _)| matches!(c, '-' | '@' | '+' | '!' | ':'))
        .count();
    value.drain(..prefix);
    out.argv = words(&value, Some(&env), &file);
    Some(out)
}

/// A path a flag names, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// It exists under the root.
    Found {
        /// The full path.
        path: PathBuf,
        /// Relative to the root.
        rel: String,
    },
    /// It would be under the root (its directory is there), but it is not.
    Missing,
    /// Nothing of it is under the root: not judged.
    Outside,
}

/// `path`'s components, `.` and `..` resolved lexically (`None`: it leaves
/// its start).
fn normal(path: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            PathPart::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            PathPart::ParentDir => {
                parts.pop()?;
            }
            PathPart::CurDir | PathPart::RootDir | PathPart::Prefix(_) => {}
        }
    }
    Some(parts)
}

/// Whether `full` (which exists) stays inside `root` once every symbolic
/// link is resolved.
fn stays_inside(root: &Path, full: &Path) -> bool {
    match (std::fs::canonicalize(root), std::fs::canonicalize(full)) {
        (Ok(r), Ok(f)) => f.starts_with(r),
        _ => false,
    }
}

/// Resolves `value` (a flag's path) under `root`. An absolute path
/// `/etc/kubernetes/pki/ca.crt` is `root/etc/kubernetes/pki/ca.crt` when
/// that exists, else the longest suffix of it that exists under `root`
/// (`root/pki/ca.crt` when `root` is an `/etc/kubernetes`). A relative
/// path resolves against `base` (the configuration file's directory),
/// which must be inside `root`. It is [`Resolved::Missing`] when a
/// directory it names is under `root` but the file is not.
pub fn resolve(root: &Path, base: &Path, value: &str) -> Resolved {
    let p = Path::new(value);
    if value.is_empty() {
        return Resolved::Outside;
    }
    if p.is_absolute() {
        let Some(parts) = normal(p) else {
            return Resolved::Outside;
        };
        for i in 0..parts.len() {
            let rel = parts.get(i..).map(|s| s.join("/")).unwrap_or_default();
            let full = root.join(&rel);
            if full.is_file() && stays_inside(root, &full) {
                return Resolved::Found { path: full, rel };
            }
        }
        // Missing when the directory that should hold it is there (not the
        // root itself: a path with nothing in common with the tree is
        // outside what is audited).
        for i in 0..parts.len().saturating_sub(1) {
            let dir = parts
                .get(i..parts.len().saturating_sub(1))
                .map(|s| s.join("/"))
                .unwrap_or_default();
            if !dir.is_empty() && root.join(&dir).is_dir() && stays_inside(root, &root.join(&dir)) {
                return Resolved::Missing;
            }
        }
        return Resolved::Outside;
    }
    let Ok(base_rel) = base.strip_prefix(root) else {
        return Resolved::Outside;
    };
    let Some(parts) = normal(&base_rel.join(p)) else {
        return Resolved::Outside;
    };
    let rel = parts.join("/");
    let full = root.join(&rel);
    if full.is_file() && stays_inside(root, &full) {
        Resolved::Found { path: full, rel }
    } else if full.parent().is_some_and(Path::is_dir) {
        Resolved::Missing
    } else {
        Resolved::Outside
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn settings(argv: &[Word]) -> Vec<(String, Option<String>, usize)> {
        split_flags(argv.get(1..).unwrap())
            .into_iter()
            .map(|s| (s.name, s.value, s.origin.line))
            .collect()
    }

    #[test]
    fn unit_continuations_quotes_and_both_flag_forms() {
        let unit = "[Unit]\nDescription=x\nExecStart=/bad\n[Service]\nType=notify\n\
                    ExecStart=/usr/local/bin/etcd \\\n  --cert-file=/etc/etcd/ssl/etcd-server.pem \\\n\
                    # a comment inside the continuation\n  --trusted-ca-file \"/etc/etcd/ssl/my ca.pem\" \\\n\
                    --client-cert-auth \\\n  --name 'etcd1'\nRestart=on-failure\n";
        let mut none = |_: &str| None;
        let u = parse_unit(&[("etcd.service".into(), unit.into())], &mut none).unwrap();
        assert_eq!(u.argv.first().unwrap().text, "/usr/local/bin/etcd");
        assert_eq!(
            settings(&u.argv),
            vec![
                (
                    "cert-file".into(),
                    Some("/etc/etcd/ssl/etcd-server.pem".into()),
                    7
                ),
                (
                    "trusted-ca-file".into(),
                    Some("/etc/etcd/ssl/my ca.pem".into()),
                    9
                ),
                ("client-cert-auth".into(), None, 10),
                ("name".into(), Some("etcd1".into()), 11),
            ]
        );
    }

    #[test]
    fn environment_file_with_dash_and_variables() {
        let unit = "[Service]\nEnvironmentFile=-/etc/kubernetes/kube-apiserver.conf\n\
                    EnvironmentFile=-/etc/kubernetes/absent.conf\n\
                    Environment=\"EXTRA=--v=2\" 'CA=/etc/kubernetes/pki/ca.crt'\n\
                    ExecStart=/usr/local/bin/kube-apiserver $KUBE_APISERVER_OPTS --client-ca-file=${CA} $EXTRA\n";
        let env = "# options\nKUBE_APISERVER_OPTS=\"--secure-port=6443 \\\n--tls-cert-file=/etc/kubernetes/ssl/a.pem \\\n--etcd-cafile /etc/etcd/ssl/etcd-ca.pem\"\nOTHER=x\n";
        let mut asked = Vec::new();
        let mut reader = |p: &str| {
            asked.push(p.to_owned());
            (p == "/etc/kubernetes/kube-apiserver.conf").then(|| {
                (
                    "etc/kubernetes/kube-apiserver.conf".to_owned(),
                    env.to_owned(),
                )
            })
        };
        let u = parse_unit(
            &[("kube-apiserver.service".into(), unit.into())],
            &mut reader,
        )
        .unwrap();
        assert_eq!(
            asked,
            vec![
                "/etc/kubernetes/kube-apiserver.conf",
                "/etc/kubernetes/absent.conf"
            ]
        );
        assert_eq!(u.env_files, vec!["etc/kubernetes/kube-apiserver.conf"]);
        let flags = split_flags(u.argv.get(1..).unwrap());
        let get = |n: &str| flags.iter().find(|s| s.name == n).unwrap();
        assert_eq!(get("secure-port").value.as_deref(), Some("6443"));
        assert_eq!(
            get("secure-port").origin.file,
            "etc/kubernetes/kube-apiserver.conf"
        );
        assert_eq!(get("secure-port").origin.line, 2);
        assert_eq!(get("tls-cert-file").origin.line, 3);
        assert_eq!(
            get("etcd-cafile").value.as_deref(),
            Some("/etc/etcd/ssl/etcd-ca.pem")
        );
        assert_eq!(get("etcd-cafile").origin.line, 4);
        assert_eq!(
            get("client-ca-file").value.as_deref(),
            Some("/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(get("v").value.as_deref(), Some("2"));
    }

    #[test]
    fn malformed_units_and_environment_files_never_panic() {
        let env = "A=\"unterminated \\\nB='x\n\\\n=novalue\nexport C=1 \\";
        let parsed = parse_env_file(env);
        assert!(parsed.iter().any(|(k, _)| k == "A"), "{parsed:?}");
        for exec in [
            "ExecStart=/usr/bin/kube-apiserver \"unterminated",
            "ExecStart=/usr/bin/kube-apiserver ${UNTERMINATED",
            "ExecStart=/usr/bin/kube-apiserver $",
            "ExecStart=/usr/bin/kube-apiserver trailing\\",
            "ExecStart=-@+!:",
            "ExecStart=/usr/bin/kube-apiserver $A ${B}x '$C' --x=\\",
        ] {
            let unit = format!("[Service]\nEnvironmentFile=/e\n{exec}");
            let mut reader = |_: &str| Some(("e".to_owned(), env.to_owned()));
            let u = parse_unit(&[("u.service".into(), unit)], &mut reader);
            if let Some(u) = u {
                let _ = split_flags(u.argv.get(1..).unwrap_or(&[]));
            }
        }
        let mut none = |_: &str| None;
        let u = parse_unit(
            &[(
                "u.service".into(),
                "[Service]\nExecStart=/bin/etcd '$NOT' ${X}y".into(),
            )],
            &mut none,
        )
        .unwrap();
        let texts: Vec<&str> = u.argv.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["/bin/etcd", "$NOT", "y"]);
    }

    #[test]
    fn etcd_config_file_tls_settings() {
        let y = "name: etcd1\nclient-transport-security:\n  cert-file: /etc/kubernetes/pki/etcd/server.crt\n  key-file: /etc/kubernetes/pki/etcd/server.key\n  client-cert-auth: true\n  trusted-ca-file: /etc/kubernetes/pki/etcd/ca.crt\npeer-transport-security:\n  cert-file: /etc/kubernetes/pki/etcd/peer.crt\n  trusted-ca-file: /etc/kubernetes/pki/etcd/peer-ca.crt\n";
        let f = parse_etcd_config(y, "etc/etcd/etcd.yaml");
        let got: Vec<(&str, usize)> = f.iter().map(|s| (s.name.as_str(), s.origin.line)).collect();
        assert_eq!(
            got,
            vec![
                ("cert-file", 3),
                ("key-file", 4),
                ("trusted-ca-file", 6),
                ("peer-cert-file", 8),
                ("peer-trusted-ca-file", 9)
            ]
        );
        assert_eq!(
            known_flag(Component::Etcd, &f[4].name),
            Some(Flag::EtcdPeerTrustedCaFile)
        );
    }

    #[test]
    fn variable_expansion_is_bounded() {
        let big = format!("A=\"{}\"\n", "--x ".repeat(100_000));
        let exec = format!(
            "[Service]\nEnvironmentFile=/e\nExecStart=/bin/kube-apiserver {}--last\n",
            "$A ".repeat(100_000)
        );
        let mut reader = |_: &str| Some(("e".to_owned(), big.clone()));
        let u = parse_unit(&[("u.service".into(), exec)], &mut reader).unwrap();
        let total: usize = u.argv.iter().map(|w| w.text.len() + 1).sum();
        assert!(total <= MAX_EXPANDED + 2_000_000, "{total}");
        assert_eq!(u.argv.last().unwrap().text, "--last");
    }

    #[test]
    fn drop_in_resets_exec_start() {
        let unit = "[Service]\nExecStart=/usr/bin/kubelet\n";
        let drop = "[Service]\nEnvironment=\"KUBELET_KUBECONFIG_ARGS=--kubeconfig=/etc/kubernetes/kubelet.conf\"\n\
                    Environment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\n\
                    ExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS\n";
        let mut none = |_: &str| None;
        let u = parse_unit(
            &[
                ("kubelet.service".into(), unit.into()),
                ("kubelet.service.d/10-kubeadm.conf".into(), drop.into()),
            ],
            &mut none,
        )
        .unwrap();
        let flags = split_flags(u.argv.get(1..).unwrap());
        assert_eq!(flags.len(), 2);
        assert_eq!(flags[0].name, "kubeconfig");
        assert_eq!(flags[0].origin.file, "kubelet.service.d/10-kubeadm.conf");
        assert_eq!(
            flags[1].value.as_deref(),
            Some("/var/lib/kubelet/config.yaml")
        );
        assert_eq!(flags[1].origin.line, 3);
    }

    #[test]
    fn units_merge_across_directories_by_precedence() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for dir in ["lib/systemd/system", "etc/systemd/system/kubelet.service.d"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::create_dir_all(root.join("usr/lib/systemd/system/kubelet.service.d")).unwrap();
        std::fs::write(
            root.join("lib/systemd/system/kubelet.service"),
            "[Service]\nExecStart=/usr/bin/kubelet --client-ca-file=/lib.crt\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/systemd/system/kubelet.service"),
            "[Service]\nExecStart=/usr/bin/kubelet --client-ca-file=/etc.crt\n",
        )
        .unwrap();
        std::fs::write(
            root.join("usr/lib/systemd/system/kubelet.service.d/20-b.conf"),
            "[Service]\nEnvironment=B=--tls-cert-file=/b.crt\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/systemd/system/kubelet.service.d/10-a.conf"),
            "[Service]\nEnvironment=B=--tls-cert-file=/a.crt\nExecStart=\nExecStart=/usr/bin/kubelet $B\n",
        )
        .unwrap();
        let cfg = read(&[Root {
            dir: root.to_path_buf(),
            shown: String::new(),
            whole: false,
        }]);
        assert_eq!(cfg.components.len(), 1, "{cfg:?}");
        let k = &cfg.components[0];
        // 10-a resets ExecStart; 20-b (read after it) sets B last.
        assert_eq!(k.flags.len(), 1, "{k:?}");
        assert_eq!(k.flags[0].value.as_deref(), Some("/b.crt"));
        assert_eq!(
            k.flags[0].origin.file,
            "usr/lib/systemd/system/kubelet.service.d/20-b.conf"
        );
        assert!(
            cfg.files
                .contains(&"etc/systemd/system/kubelet.service".to_owned())
        );
        assert!(
            !cfg.files
                .contains(&"lib/systemd/system/kubelet.service".to_owned())
        );
    }

    #[test]
    fn manifest_command_and_args_with_lines() {
        let m = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --advertise-address=10.0.0.10\n    - --client-ca-file=/etc/kubernetes/pki/ca.crt\n    args: [\"--tls-cert-file\", \"/etc/kubernetes/pki/apiserver.crt\"]\n    image: registry.k8s.io/kube-apiserver:v1.31.0\n";
        let argv = parse_manifest(m, "manifests/kube-apiserver.yaml");
        assert_eq!(argv.len(), 1);
        let cfg = component_of(&argv[0], "m", PathBuf::new()).unwrap();
        assert_eq!(cfg.component, Component::KubeApiserver);
        let known = cfg.known();
        assert_eq!(known[&Flag::ApiserverClientCaFile].origin.line, 10);
        assert_eq!(
            known[&Flag::ApiserverTlsCertFile].value.as_deref(),
            Some("/etc/kubernetes/pki/apiserver.crt")
        );
        assert_eq!(cfg.get("advertise-address").unwrap().origin.line, 9);
        assert!(parse_manifest("kind: Deployment\n", "x").is_empty());
    }

    #[test]
    fn kubelet_configuration_fields() {
        let k = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\ntlsCertFile: /var/lib/kubelet/pki/kubelet.crt\n";
        let f = parse_kubelet_config(k, "var/lib/kubelet/config.yaml").unwrap();
        assert_eq!(f[0].name, "authentication.x509.clientCAFile");
        assert_eq!(f[0].origin.line, 5);
        assert_eq!(
            f[1].value.as_deref(),
            Some("/var/lib/kubelet/pki/kubelet.crt")
        );
        assert_eq!(
            known_flag(Component::Kubelet, "client-ca-file"),
            Some(Flag::KubeletClientCaFile)
        );
        assert!(parse_kubelet_config("kind: Pod\n", "x").is_none());
    }

    #[test]
    fn resolution_by_longest_suffix() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc/kubernetes/pki")).unwrap();
        std::fs::write(root.join("etc/kubernetes/pki/ca.crt"), "x").unwrap();
        let r = resolve(root, root, "/etc/kubernetes/pki/ca.crt");
        assert!(matches!(&r, Resolved::Found { rel, .. } if rel == "etc/kubernetes/pki/ca.crt"));
        let sub = root.join("etc/kubernetes");
        let r = resolve(&sub, &sub, "/etc/kubernetes/pki/ca.crt");
        assert!(
            matches!(&r, Resolved::Found { rel, .. } if rel == "pki/ca.crt"),
            "{r:?}"
        );
        assert_eq!(
            resolve(root, root, "/etc/kubernetes/pki/nope.crt"),
            Resolved::Missing
        );
        assert_eq!(resolve(root, root, "/opt/other/x.pem"), Resolved::Outside);
        let r = resolve(
            root,
            &root.join("etc/kubernetes/manifests"),
            "../pki/ca.crt",
        );
        assert!(matches!(&r, Resolved::Found { rel, .. } if rel == "etc/kubernetes/pki/ca.crt"));
        assert_eq!(resolve(root, root, "../../etc/passwd"), Resolved::Outside);
        std::os::unix::fs::symlink("/etc/hostname", root.join("etc/kubernetes/pki/out.crt"))
            .unwrap();
        // A link out of the root is never followed.
        assert!(!matches!(
            resolve(root, root, "/etc/kubernetes/pki/out.crt"),
            Resolved::Found { .. }
        ));
    }
}
