//! Hints in the auditor's language.
//!
//! The rules are written for plans: their hints speak the spec and profile
//! language (`set issuer to the id of a [[ca]]`, `add the SAN rule
//! service-ip`, `kpki renew`). On a directory kpki did not write (kubeadm's
//! `/etc/kubernetes`, a cfssl folder, any other tree) those words mean
//! nothing and those commands do not work. [`foreign_hint`] says what to
//! change in that world instead: the line of the openssl extension file, the
//! cfssl CSR or `ca-config.json` field, or the component flag (with the file
//! and line it was read from), and, where the fix is to re-issue, the
//! adoption route (`kpki init --from DIR`, then `kpki issue`) only when the
//! adopted spec would issue as it is.
//!
//! Codes whose plan hint is rewritten (each names a spec/profile concept or a
//! command that needs a kpki output directory): S001 (`[[ca]]`, `issuer`),
//! S002 (`issuer`), S003 (`crypto.ca_validity`), S004 (`path_len`), S005
//! (profile paths), U001-U003 (roles), U004-U006 (default usages), T001 and
//! T002 (trust bindings), T003 and T006 (`bind`), T005
//! (`requestheader_allowed_names`, kpki-managed names), T007 (`kpki
//! issue`), N001-N006 (SAN rules, `ip:` in a profile), I001 and I002
//! (`common_name =`), I003 (`break_glass = true`), I004 (the binding kpki
//! writes to `cluster/manifests/`), C001 (kpki algorithm names), C002
//! (`crypto.leaf_validity`, `kpki renew --all`), C003 and C004 (`kpki
//! renew`), C005, F001 (re-issue with kpki). Unchanged: T004, T008, F002 and
//! D004 (they already speak of flags and files), and the codes that need a
//! spec (D001-D003, K001, K002, M001, X001), which are never rewritten: with a
//! spec the user speaks kpki's language.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use super::flags::{AppliedFlag, TrustOrigin};
use super::{DirKind, FileKind, Observation};
use crate::graph::{CertNode, IssuerRef, Node, NodeId};
use crate::k8s::{CertSource, Flag, TrustSource};
use crate::validate::{Code, Finding, Report, Severity};
use crate::x509::{DnsName, ExtUsage, Host, Role};

/// The tool a foreign directory's certificates are made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `openssl req` / `openssl x509 -req` with an extension file (kubeadm
    /// trees and any directory not laid out by cfssljson).
    Openssl,
    /// `cfssl gencert` with a CSR JSON and `ca-config.json`, written by
    /// `cfssljson -bare` (`NAME.pem` + `NAME-key.pem`).
    Cfssl,
}

impl World {
    /// The world of a directory: None for a kpki output directory (its
    /// hints stay in the spec's language).
    pub fn of(kind: &DirKind, obs: &Observation) -> Option<Self> {
        match kind {
            DirKind::Kpki { .. } => None,
            DirKind::Cfssl => Some(Self::Cfssl),
            DirKind::Kubeadm { .. } => Some(Self::Openssl),
            DirKind::Files => {
                let cfssl = obs.inventory.iter().any(|e| {
                    matches!(e.kind, FileKind::PrivateKey) && e.path.ends_with("-key.pem")
                });
                Some(if cfssl { Self::Cfssl } else { Self::Openssl })
            }
        }
    }
}

/// What a hint may consult: the directory as read, the flags applied, and
/// whether adopting it would issue.
pub struct HintContext<'a> {
    obs: &'a Observation,
    trust: &'a TrustOrigin,
    dir: &'a Path,
    world: World,
    kubeadm: bool,
    adoptable: OnceCell<bool>,
}

impl<'a> HintContext<'a> {
    /// A context for the directory `dir` (as the user named it).
    pub fn new(obs: &'a Observation, trust: &'a TrustOrigin, dir: &'a Path, world: World) -> Self {
        Self {
            obs,
            trust,
            dir,
            world,
            kubeadm: matches!(obs.kind, DirKind::Kubeadm { .. }),
            adoptable: OnceCell::new(),
        }
    }

    fn cert(&self, id: &str) -> Option<(NodeId, &'a CertNode)> {
        let g = &self.obs.graph;
        let n = g.find(id)?;
        g.cert(n).map(|c| (n, c))
    }

    fn file(&self, n: NodeId) -> Option<&'a str> {
        self.obs.files.get(&n).map(String::as_str)
    }

    /// The file a certificate is in, or its id.
    fn cert_file(&self, n: NodeId, c: &CertNode) -> String {
        self.file(n)
            .map(str::to_owned)
            .or_else(|| c.cert_path.clone())
            .unwrap_or_else(|| c.id.clone())
    }

    /// The issuer's certificate and key files.
    fn issuer_files(&self, c: &CertNode) -> Option<(String, String)> {
        let IssuerRef::Node(i) = c.issuer else {
            return None;
        };
        let ca = self.obs.graph.cert(i)?;
        let crt = self.cert_file(i, ca);
        let key = ca.key_path.clone().unwrap_or_else(|| match self.world {
            World::Cfssl => crt
                .strip_suffix(".pem")
                .map_or_else(|| "CA-key.pem".into(), |s| format!("{s}-key.pem")),
            World::Openssl => crt
                .strip_suffix(".crt")
                .map_or_else(|| "CA.key".into(), |s| format!("{s}.key")),
        });
        Some((crt, key))
    }

    /// The directory as a shell word.
    fn dir_word(&self) -> String {
        shell_word(&self.dir.display().to_string())
    }

    /// Whether `kpki init --from DIR` then `kpki issue` works as it is.
    fn adoptable(&self) -> bool {
        *self.adoptable.get_or_init(|| adoptable(self.dir))
    }

    /// The adoption route, worded by whether it issues as it is.
    fn adopt_tail(&self) -> String {
        let dir = self.dir_word();
        if self.adoptable() {
            format!(
                "; or let kpki re-issue it under the same CAs: `kpki init --from {dir} --out kpki.toml`, then `kpki issue --spec kpki.toml` (writes a new tree under out/, never {dir})"
            )
        } else {
            format!(
                "; kpki can adopt the directory (`kpki init --from {dir} --out kpki.toml` writes a spec that keeps its CAs), but as read that spec does not plan cleanly (it describes the directory as it is, mistakes included, and marks kpki's value for each): fix what planning it reports before issuing from it"
            )
        }
    }

    /// How to sign a certificate again, after its inputs changed.
    fn resign(&self, n: NodeId, c: &CertNode) -> String {
        let file = self.cert_file(n, c);
        let (ca, key) = self
            .issuer_files(c)
            .unwrap_or_else(|| ("CA".into(), "CA-key".into()));
        // A certificate embedded in a kubeconfig is written to a file of its
        // own, then embedded again.
        let (out, embed) = match stem(&file) {
            Some(s) => (file.clone(), s.to_owned()),
            None => ("CERT".to_owned(), "NAME".to_owned()),
        };
        let back = if stem(&file).is_none() {
            format!(
                ", and embed it in {file} again (`kubectl config set-credentials --kubeconfig {file} USER --client-certificate CERT --client-key KEY --embed-certs`)"
            )
        } else {
            String::new()
        };
        match self.world {
            World::Openssl => format!(
                "sign it again with its CA: `openssl x509 -req -in CSR -CA {ca} -CAkey {key} -sha256 -days DAYS -extfile EXTFILE -extensions SECTION -out {out}`{back}"
            ),
            World::Cfssl => format!(
                "sign it again: `cfssl gencert -ca {ca} -ca-key {key} -config ca-config.json -profile NAME {embed}-csr.json | cfssljson -bare {embed}`{back}"
            ),
        }
    }

    /// The applied flag (file and line) of a typed flag, if flags were read.
    fn applied(&self, flag: Flag) -> Option<&'a AppliedFlag> {
        self.trust.flags.iter().rev().find(|a| a.typed == flag)
    }

    /// `kube-apiserver --client-ca-file (etc/.../kube-apiserver.yaml:17)`,
    /// or the flag alone when no configuration was read.
    fn flag_named(&self, flag: Flag) -> String {
        self.applied(flag)
            .map_or_else(|| flag.to_string(), AppliedFlag::describe)
    }
}

/// Quotes a path for a shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `etc/kubernetes/ssl/apiserver.pem` -> `apiserver`; None for a file that
/// is not a certificate file of its own (a kubeconfig embedding it).
fn stem(file: &str) -> Option<&str> {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".pem")
        .or_else(|| base.strip_suffix(".crt"))
}

/// Whether adopting `dir` as `kpki init --from` does yields a spec whose
/// plan has no error (so `kpki issue` on it works).
fn adoptable(dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return false;
    };
    let Ok(obs) = super::read_dir(&dir, None, None) else {
        return false;
    };
    let spec_path = dir.join("kpki.toml");
    let Ok(a) = crate::adopt(&obs, &dir, &spec_path) else {
        return false;
    };
    let Ok((spec, existing)) = crate::ClusterSpec::parse_with_existing(&a.spec, &spec_path) else {
        return false;
    };
    let profile = match &a.profile {
        Some((name, text)) => crate::Profile::parse(text, &dir.join(name)),
        None => crate::Profile::load(&spec.profile, &spec.profile_location),
    };
    let Ok(profile) = profile else { return false };
    crate::Plan::with_existing(spec, profile, &existing).is_ok_and(|p| !p.report.has_errors())
}

/// The openssl extension line / cfssl usages for a set of extended usages.
fn eku_text(world: World, key_enc: bool, ext: &[ExtUsage]) -> String {
    match world {
        World::Openssl => format!(
            "`extendedKeyUsage = {}` in the extension file it is signed with",
            ext.iter()
                .map(ExtUsage::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        World::Cfssl => {
            let mut u = vec!["\"signing\""];
            if key_enc {
                u.push("\"key encipherment\"");
            }
            for e in ext {
                u.push(match e {
                    ExtUsage::ServerAuth => "\"server auth\"",
                    ExtUsage::ClientAuth => "\"client auth\"",
                });
            }
            format!(
                "`\"usages\": [{}]` in the ca-config.json profile it is signed with",
                u.join(", ")
            )
        }
    }
}

/// The SAN line with `add` added to what the certificate holds.
fn san_text(world: World, c: &CertNode, add: &[Host]) -> String {
    let mut dns: BTreeSet<String> = c.sans.dns.iter().map(ToString::to_string).collect();
    let mut ips: BTreeSet<IpAddr> = c.sans.ip.clone();
    for h in add {
        match h {
            Host::Ip(ip) => {
                ips.insert(*ip);
            }
            Host::Dns(d) => {
                dns.insert(d.to_string());
            }
        }
    }
    match world {
        World::Openssl => {
            let v: Vec<String> = dns
                .iter()
                .map(|d| format!("DNS:{d}"))
                .chain(ips.iter().map(|i| format!("IP:{i}")))
                .collect();
            format!(
                "`subjectAltName = {}` in the extension file it is signed with",
                v.join(",")
            )
        }
        World::Cfssl => {
            let v: Vec<String> = dns
                .iter()
                .cloned()
                .chain(ips.iter().map(ToString::to_string))
                .map(|s| format!("\"{s}\""))
                .collect();
            format!("`\"hosts\": [{}]` in its CSR JSON", v.join(", "))
        }
    }
}

/// The subject change: `-subj` for openssl, `"CN"`/`"names"` for cfssl.
fn subject_text(world: World, cn: &str, orgs: &[&str]) -> String {
    match world {
        World::Openssl => {
            let o: String = orgs.iter().map(|o| format!("/O={o}")).collect();
            format!("`-subj \"{o}/CN={cn}\"` on the `openssl req` that makes its CSR")
        }
        World::Cfssl => {
            if orgs.is_empty() {
                format!("`\"CN\": \"{cn}\"` in its CSR JSON")
            } else {
                let o: Vec<String> = orgs.iter().map(|o| format!("{{\"O\": \"{o}\"}}")).collect();
                format!(
                    "`\"CN\": \"{cn}\", \"names\": [{}]` in its CSR JSON",
                    o.join(", ")
                )
            }
        }
    }
}

/// The hint for a finding on a directory kpki did not write, in that
/// directory's terms; None keeps the plan hint (it already speaks of files
/// and flags, or the code needs a spec).
pub fn foreign_hint(code: Code, f: &Finding, cx: &HintContext<'_>) -> Option<String> {
    let w = cx.world;
    let first = f.nodes.first().and_then(|id| cx.cert(id));
    match code {
        Code::S001 => {
            let (n, c) = first?;
            let file = cx.cert_file(n, c);
            Some(match w {
                World::Openssl => format!(
                    "sign {file} with a CA of this directory (`openssl x509 -req -CA CA.crt -CAkey CA.key ...`), or add the certificate of the CA that signed it to the directory and to the components' CA flags"
                ),
                World::Cfssl => format!(
                    "sign {file} with a CA of this directory (`cfssl gencert -ca CA.pem -ca-key CA-key.pem ...`), or add the certificate of the CA that signed it to the directory and to the components' CA flags"
                ),
            })
        }
        Code::S002 => Some(match w {
            World::Openssl => "make one CA of the cycle a self-signed root: create it again with `openssl req -x509 -new -key CA.key -subj \"/CN=NAME\" -addext \"basicConstraints=critical,CA:TRUE\"`, then sign the others with it".into(),
            World::Cfssl => "make one CA of the cycle a self-signed root: create it again with `cfssl gencert -initca CA-csr.json | cfssljson -bare CA`, then sign the others with it".into(),
        }),
        Code::S003 => Some(match w {
            World::Openssl => "sign the certificate again with fewer days than its CA has left (`openssl x509 -req ... -days DAYS`), or create the CA again with more (`-days` on its `openssl req -x509`)".into(),
            World::Cfssl => "sign the certificate again with a shorter `\"expiry\"` than its CA has left (in the ca-config.json profile it is signed with), or create the CA again with a longer `\"ca\": {\"expiry\": ...}` in its CSR JSON".into(),
        }),
        Code::S004 => Some(match w {
            World::Openssl => "create the upper CA again with a larger path length (`basicConstraints = critical, CA:TRUE, pathlen:N` in its extension file), or sign the lower certificates with it directly".into(),
            World::Cfssl => "create the upper CA again with a larger path length (`\"ca\": {\"pathlen\": N}` in its CSR JSON, or `\"ca_constraint\": {\"is_ca\": true, \"max_path_len\": N}` in the ca-config.json profile that signs it), or sign the lower certificates with it directly".into(),
        }),
        Code::S005 => Some("give each certificate, key and kubeconfig its own file".into()),
        Code::U001 | Code::U002 | Code::U003 | Code::U006 => {
            let (n, c) = first?;
            let mut want: Vec<ExtUsage> = c.usage.ext.clone();
            let add = |v: &mut Vec<ExtUsage>, e| {
                if !v.contains(&e) {
                    v.push(e);
                }
            };
            match code {
                Code::U001 => add(&mut want, ExtUsage::ServerAuth),
                Code::U002 => add(&mut want, ExtUsage::ClientAuth),
                Code::U003 => {
                    add(&mut want, ExtUsage::ServerAuth);
                    add(&mut want, ExtUsage::ClientAuth);
                }
                _ => {
                    // U006: an explicit usage for what it does, nothing more.
                    let (serves, clients) = match c.role {
                        Some(Role::Server) => (true, false),
                        Some(Role::Client) => (false, true),
                        _ => (true, true),
                    };
                    want.clear();
                    if serves {
                        want.push(ExtUsage::ServerAuth);
                    }
                    if clients {
                        want.push(ExtUsage::ClientAuth);
                    }
                }
            }
            want.sort();
            let key_enc = c.key.is_rsa() || c.usage.key.is_some_and(|k| k.key_encipherment);
            let line = eku_text(w, key_enc, &want);
            let verb = if code == Code::U006 {
                "write only what it is used for"
            } else {
                "give it the missing usage"
            };
            Some(format!("{verb}: {line}; then {}", cx.resign(n, c)))
        }
        Code::U004 => {
            let (n, c) = first?;
            let line = match (w, c.is_ca) {
                (World::Openssl, true) => "`basicConstraints = critical, CA:TRUE` and `keyUsage = critical, keyCertSign, cRLSign, digitalSignature` in the CA's extension file (then create the CA again with `openssl req -x509` or `openssl x509 -req`)".to_owned(),
                (World::Cfssl, true) => "create the CA with `cfssl gencert -initca CA-csr.json` (it sets CA:TRUE, keyCertSign and cRLSign)".to_owned(),
                (World::Openssl, false) => format!("`basicConstraints = critical, CA:FALSE` and a keyUsage without keyCertSign in the extension file it is signed with; then {}", cx.resign(n, c)),
                (World::Cfssl, false) => format!("remove \"cert sign\", \"crl sign\" and any `\"ca_constraint\"` from the ca-config.json profile it is signed with; then {}", cx.resign(n, c)),
            };
            Some(line)
        }
        Code::U005 => {
            let (n, c) = first?;
            let line = match (w, f.severity == Severity::Warning) {
                (World::Openssl, true) => "`keyUsage = critical, digitalSignature` (no keyEncipherment: an EC key cannot encrypt) in the extension file it is signed with".to_owned(),
                (World::Cfssl, true) => "remove \"key encipherment\" from the `\"usages\"` of the ca-config.json profile it is signed with".to_owned(),
                (World::Openssl, false) => format!(
                    "`keyUsage = critical, digitalSignature{}` in the extension file it is signed with",
                    if c.key.is_rsa() { ", keyEncipherment" } else { "" }
                ),
                (World::Cfssl, false) => "add \"digital signature\" to the `\"usages\"` of the ca-config.json profile it is signed with".to_owned(),
            };
            Some(format!("{line}; then {}", cx.resign(n, c)))
        }
        Code::T001 | Code::T002 => trust_hint(code, f, cx),
        Code::T003 => Some(format!(
            "make {} and {} name the same CA file",
            cx.flag_named(Flag::ControllerManagerClusterSigningCertFile),
            cx.flag_named(Flag::ApiserverClientCaFile)
        )),
        Code::T005 => {
            let (_, c) = first?;
            Some(format!(
                "add `{}` to kube-apiserver --requestheader-allowed-names, or sign the front-proxy client cert with a CN that list holds",
                c.subject.common_name
            ))
        }
        Code::T006 => {
            let g = &cx.obs.graph;
            let pair = f
                .nodes
                .iter()
                .filter_map(|id| g.find(id).and_then(|n| g.node(n)))
                .find_map(|n| match n {
                    Node::KeyPair(k) if k.mismatch => Some(k),
                    _ => None,
                });
            Some(match pair {
                Some(k) => format!(
                    "write the public key again from the private key: `openssl pkey -in {} -pubout -out {}`",
                    k.private_path, k.public_path
                ),
                None => format!(
                    "make {}, {} and {} name one keypair",
                    cx.flag_named(Flag::ApiserverServiceAccountKeyFile),
                    cx.flag_named(Flag::ApiserverServiceAccountSigningKeyFile),
                    cx.flag_named(Flag::ControllerManagerServiceAccountPrivateKeyFile)
                ),
            })
        }
        Code::T007 => {
            let (n, c) = first?;
            let key = c.key_path.clone().unwrap_or_else(|| "its key file".into());
            let make = match w {
                World::Openssl => format!(
                    "or make a new certificate for the key on disk: `openssl req -new -key {key} -subj \"/CN={}\" -out CSR`, then {}",
                    c.subject.common_name,
                    cx.resign(n, c)
                ),
                World::Cfssl => {
                    "or make the certificate and its key again with `cfssl gencert` (it writes both)"
                        .to_owned()
                }
            };
            Some(format!(
                "restore the key that belongs to {}, {make}{}",
                cx.cert_file(n, c),
                cx.adopt_tail()
            ))
        }
        Code::N001 | Code::N002 | Code::N003 | Code::N004 | Code::N005 => {
            let (n, c) = first?;
            let add = missing_hosts(code, n, c, cx);
            let line = san_text(w, c, &add);
            Some(format!("{line}; then {}", cx.resign(n, c)))
        }
        Code::N006 => Some(match w {
            World::Openssl => "in the extension file, write IPs as `IP:` entries of subjectAltName (never `DNS:`), use valid DNS names, and a wildcard only as the whole leftmost label; then sign it again".into(),
            World::Cfssl => "in its CSR JSON `\"hosts\"`, write each IP bare (cfssl makes it an IP SAN), use valid DNS names, and a wildcard only as the whole leftmost label; then sign it again".into(),
        }),
        Code::I001 | Code::I002 => {
            let (n, c) = first?;
            // The kubeconfig the certificate authenticates (its id may be
            // the certificate's own).
            let kc = cx.obs.graph.kubeconfigs().find(|(_, k)| k.client == n);
            let (cn, orgs): (String, Vec<&str>) = if code == Code::I002 {
                let node = kc
                    .and_then(|(_, k)| k.node.as_ref())
                    .map_or_else(|| "NODE".to_owned(), ToString::to_string);
                (format!("system:node:{node}"), vec!["system:nodes"])
            } else {
                let cn = kc.and_then(|(_, k)| k.user.expected_cn())?;
                (cn.to_owned(), Vec::new())
            };
            let line = subject_text(w, &cn, &orgs);
            // A certificate of its own file is put in its kubeconfig too
            // (one embedded in the kubeconfig already is by `resign`).
            let own = stem(&cx.cert_file(n, c)).is_some();
            let embed = kc
                .filter(|_| own)
                .and_then(|(i, _)| cx.file(i))
                .map(|k| format!(", and put the new certificate in {k} (`kubectl config set-credentials --kubeconfig {k} USER --client-certificate CERT --client-key KEY --embed-certs`)"))
                .unwrap_or_default();
            Some(format!("{line}; then {}{embed}", cx.resign(n, c)))
        }
        Code::I003 => {
            let cert = f
                .nodes
                .iter()
                .filter_map(|id| cx.cert(id))
                .next()
                .map(|(_, c)| c.subject.common_name.clone())
                .unwrap_or_else(|| "NAME".into());
            let line = subject_text(w, &cert, &["kubeadm:cluster-admins"]);
            Some(format!(
                "make the certificate with {line}, and bind that group once: `kubectl create clusterrolebinding kubeadm:cluster-admins --clusterrole=cluster-admin --group=kubeadm:cluster-admins`; keep system:masters for one break-glass kubeconfig only"
            ))
        }
        Code::I004 => {
            let (_, c) = first?;
            let cn = &c.subject.common_name;
            Some(format!(
                "bind it to the kubelet API once: `kubectl create clusterrolebinding {}-kubelet-api-admin --clusterrole=system:kubelet-api-admin --user={cn}`",
                cn.replace(':', "-")
            ))
        }
        Code::C001 => {
            let (n, c) = first?;
            let line = match w {
                World::Openssl => "make a new key (`openssl ecparam -name prime256v1 -genkey -noout -out KEY`, or `openssl genrsa -out KEY 2048`) and a CSR for it".to_owned(),
                World::Cfssl => "`\"key\": {\"algo\": \"ecdsa\", \"size\": 256}` (or `{\"algo\": \"rsa\", \"size\": 2048}`) in its CSR JSON".to_owned(),
            };
            Some(format!("{line}; then {}", cx.resign(n, c)))
        }
        Code::C002 => {
            let (n, c) = first?;
            let line = match w {
                World::Openssl => "sign it for a year or less (`-days 365` on `openssl x509 -req`)".to_owned(),
                World::Cfssl => "a year or less: `\"expiry\": \"8760h\"` in the ca-config.json profile it is signed with".to_owned(),
            };
            let resign = if w == World::Cfssl {
                format!("; then {}", cx.resign(n, c))
            } else {
                String::new()
            };
            Some(format!("{line}{resign}{}", cx.adopt_tail()))
        }
        Code::C003 | Code::C004 => {
            let (n, c) = first?;
            if c.is_ca {
                return Some(match w {
                    World::Openssl => "create a new CA (`openssl req -x509 ...`), put it in every component's CA flags next to the old one, then sign every certificate of the old CA again with it".into(),
                    World::Cfssl => "create a new CA (`cfssl gencert -initca CA-csr.json | cfssljson -bare CA`), put it in every component's CA flags next to the old one, then sign every certificate of the old CA again with it".into(),
                });
            }
            let kubeadm = if cx.kubeadm {
                " (on a kubeadm node, `kubeadm certs renew all` does it for kubeadm's certificates)"
            } else {
                ""
            };
            let line = format!("renew it: {}{kubeadm}", cx.resign(n, c));
            Some(format!("{line}{}", cx.adopt_tail()))
        }
        Code::C005 => {
            let (n, c) = first?;
            let line = match w {
                World::Openssl => "sign it again with `-sha256`".to_owned(),
                World::Cfssl => "sign it again with `cfssl gencert` (it signs with SHA-256)".to_owned(),
            };
            let file = cx.cert_file(n, c);
            Some(format!("{line} ({file}){}", cx.adopt_tail()))
        }
        Code::F001 => Some(format!(
            "restore the file from a backup, or remove it and make it again with {}{}",
            match w {
                World::Openssl => "openssl",
                World::Cfssl => "cfssl",
            },
            cx.adopt_tail()
        )),
        // Already in files' and flags' terms, or only raised with a spec.
        Code::T004
        | Code::T008
        | Code::F002
        | Code::D001
        | Code::D002
        | Code::D003
        | Code::D004
        | Code::K001
        | Code::K002
        | Code::M001
        | Code::X001
        | Code::X002 => None,
    }
}

/// T001/T002: re-sign the certificate with the CA the other end trusts, or
/// point that end's flag at the certificate's issuer.
fn trust_hint(code: Code, f: &Finding, cx: &HintContext<'_>) -> Option<String> {
    let g = &cx.obs.graph;
    let (n, c) = f.nodes.first().and_then(|id| cx.cert(id))?;
    let ca = f.nodes.get(1).and_then(|id| g.find(id))?;
    let conn = g.connections.iter().find(|k| {
        if code == Code::T001 {
            k.client == n && k.server_trusts == Some(ca)
        } else {
            k.server == Some(n) && k.client_trusts == Some(ca)
        }
    })?;
    let ends = conn.link.ends();
    let ca_file = g
        .cert(ca)
        .map_or_else(|| g.id_of(ca), |x| cx.cert_file(ca, x));
    let issuer = cx
        .issuer_files(c)
        .map_or_else(|| "its issuer's certificate".to_owned(), |(crt, _)| crt);
    let file = cx.cert_file(n, c);
    let (what, embed) = if stem(&file).is_some() {
        (file.clone(), String::new())
    } else {
        (
            format!("the certificate embedded in {file}"),
            " and embed it again".to_owned(),
        )
    };
    let sign = match cx.world {
        World::Openssl => format!(
            "sign {what} again with {ca_file} (`openssl x509 -req -in CSR -CA {ca_file} -CAkey KEY -extfile EXTFILE ...`){embed}"
        ),
        World::Cfssl => format!(
            "sign {what} again with {ca_file} (`cfssl gencert -ca {ca_file} -ca-key KEY -config ca-config.json ...`){embed}"
        ),
    };
    let point = if code == Code::T001 {
        format!(
            "point {} at a file holding {issuer} (a bundle of both CAs keeps its other clients working)",
            cx.flag_named(ends.server_trusts)
        )
    } else {
        match ends.client_trusts {
            Some(TrustSource::Flag(fl)) => {
                format!("point {} at a file holding {issuer}", cx.flag_named(fl))
            }
            _ => format!(
                "put {issuer} in the certificate-authority-data of the kubeconfig{}",
                conn.via
                    .and_then(|v| cx.file(v))
                    .map(|k| format!(" {k}"))
                    .unwrap_or_default()
            ),
        }
    };
    // The client certificate's own flag, when the component names it.
    let via = match (code, ends.client_cert) {
        (Code::T001, CertSource::Flag(fl)) => cx
            .applied(fl)
            .map(|a| format!(" ({} loads it)", a.describe()))
            .unwrap_or_default(),
        _ => String::new(),
    };
    Some(format!("{sign}{via}, or {point}"))
}

/// The hosts an N00x finding says the certificate lacks.
fn missing_hosts(code: Code, n: NodeId, c: &CertNode, cx: &HintContext<'_>) -> Vec<Host> {
    let g = &cx.obs.graph;
    let facts = &g.facts;
    match code {
        Code::N001 => facts.endpoint.iter().map(|e| e.host.clone()).collect(),
        Code::N002 => facts
            .service_ips
            .first()
            .map(|ip| Host::Ip(*ip))
            .into_iter()
            .collect(),
        Code::N003 => facts
            .dns_domain
            .iter()
            .flat_map(crate::graph::in_cluster_names)
            .filter(|name| !c.sans.covers_dns(name))
            .filter_map(|name| DnsName::parse(&name).ok().map(Host::Dns))
            .collect(),
        Code::N004 => {
            let nodes: Vec<&crate::x509::NodeName> = match &c.node {
                Some(x) => vec![x],
                None => g
                    .bindings
                    .iter()
                    .filter(|b| b.target == n)
                    .map(|b| &b.node)
                    .collect(),
            };
            nodes
                .into_iter()
                .filter_map(|x| facts.node_ips.get(x).and_then(|ips| ips.first()))
                .map(|ip| Host::Ip(*ip))
                .filter(|h| !c.sans.covers(h))
                .collect()
        }
        Code::N005 => {
            let mut v = vec![Host::Ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))];
            if let Ok(d) = DnsName::parse("localhost") {
                v.push(Host::Dns(d));
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Rewrites the hint of every finding into the directory's world (a no-op
/// on a kpki output directory).
pub(crate) fn rewrite(report: &mut Report, obs: &Observation, trust: &TrustOrigin, dir: &Path) {
    let Some(world) = World::of(&obs.kind, obs) else {
        return;
    };
    let cx = HintContext::new(obs, trust, dir, world);
    for f in &mut report.findings {
        if let Some(h) = foreign_hint(f.code, f, &cx) {
            f.hint = h;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::k8s::KubeconfigUser;

    /// A planned graph standing in for a directory read back.
    fn observation(kind: DirKind) -> Observation {
        let spec = crate::ClusterSpec::parse(
            "profile = \"kubeadm\"\n[cluster]\nendpoint = \"lb.example.com\"\n[[control_plane]]\nname = \"cp1\"\naddress = \"10.0.0.10\"\n",
            Path::new("/nonexistent/kpki.toml"),
        )
        .unwrap();
        let plan = crate::Plan::from_spec(spec).unwrap();
        Observation {
            kind,
            profile: plan.profile,
            spec: plan.spec,
            graph: plan.graph,
            files: Default::default(),
            missing: Vec::new(),
            extra: Vec::new(),
            problems: Vec::new(),
            inventory: Vec::new(),
            unrecognised: Vec::new(),
            embedded_drift: Vec::new(),
        }
    }

    /// The node ids a finding of `code` names, as the rules would.
    fn nodes_for(code: Code, obs: &Observation) -> Vec<String> {
        let g = &obs.graph;
        let client_of = |u: KubeconfigUser| {
            g.kubeconfigs()
                .find(|(_, k)| k.user == u)
                .map(|(i, k)| vec![g.id_of(k.client), g.id_of(i)])
                .unwrap()
        };
        let conn = g.connections.iter().find(|c| c.server.is_some()).unwrap();
        match code {
            Code::I001 => client_of(KubeconfigUser::Scheduler),
            Code::I002 => client_of(KubeconfigUser::Kubelet),
            Code::I003 => client_of(KubeconfigUser::Admin),
            Code::T001 => vec![g.id_of(conn.client), g.id_of(conn.server_trusts.unwrap())],
            Code::T002 => vec![
                g.id_of(conn.server.unwrap()),
                g.id_of(conn.client_trusts.unwrap()),
            ],
            Code::T006 => vec!["sa".into()],
            _ => vec![g.id_of(g.find("apiserver@cp1").unwrap())],
        }
    }

    #[test]
    fn every_code_with_a_spec_worded_hint_has_a_foreign_one() {
        let keep = [
            Code::T004,
            Code::T008,
            Code::F002,
            Code::D001,
            Code::D002,
            Code::D003,
            Code::D004,
            Code::K001,
            Code::K002,
            Code::M001,
            Code::X001,
            Code::X002,
        ];
        for (kind, world, tool) in [
            (DirKind::Cfssl, World::Cfssl, "cfssl"),
            (
                DirKind::Kubeadm { pki_only: false },
                World::Openssl,
                "openssl",
            ),
        ] {
            let obs = observation(kind);
            let trust = TrustOrigin::default();
            let cx = HintContext::new(&obs, &trust, Path::new("/nonexistent/dir"), world);
            for code in Code::ALL.iter().copied() {
                let f = Finding {
                    code,
                    severity: code.severity(),
                    nodes: nodes_for(code, &obs),
                    message: String::new(),
                    hint: String::new(),
                    files: Vec::new(),
                };
                let h = foreign_hint(code, &f, &cx);
                if keep.contains(&code) {
                    assert_eq!(h, None, "{code}");
                    continue;
                }
                let h = h.unwrap_or_else(|| panic!("{code}: no foreign hint"));
                for banned in [
                    "[[ca]]",
                    "SAN rule",
                    "role `",
                    "common_name =",
                    "crypto.",
                    "kpki renew",
                    "`kpki issue`",
                    "break_glass",
                ] {
                    assert!(!h.contains(banned), "{code} ({tool}): {h}");
                }
                let rest = h
                    .replace("ca-config.json profile", "")
                    .replace("-profile NAME", "");
                assert!(!rest.contains("profile"), "{code} ({tool}): {h}");
            }
            // The SAN line holds what the certificate has and what it lacks.
            let f = Finding {
                code: Code::N002,
                severity: Severity::Error,
                nodes: vec!["apiserver@cp1".into()],
                message: String::new(),
                hint: String::new(),
                files: Vec::new(),
            };
            let h = foreign_hint(Code::N002, &f, &cx).unwrap();
            let want = match world {
                World::Openssl => "IP:10.96.0.1",
                World::Cfssl => "\"10.96.0.1\"",
            };
            assert!(h.contains(want) && h.contains("lb.example.com"), "{h}");
            // An expired CA is replaced, not renewed.
            let f = Finding {
                code: Code::C003,
                nodes: vec!["kubernetes-ca".into()],
                ..f
            };
            let h = foreign_hint(Code::C003, &f, &cx).unwrap();
            assert!(h.contains("create a new CA"), "{h}");
        }
    }

    #[test]
    fn a_kpki_directory_keeps_the_plan_hints() {
        let obs = observation(DirKind::Kpki { profile: None });
        assert_eq!(World::of(&obs.kind, &obs), None);
        let mut report = Report {
            findings: vec![Finding {
                code: Code::N002,
                severity: Severity::Error,
                nodes: vec!["apiserver@cp1".into()],
                message: String::new(),
                hint: "add the SAN rule `service-ip`".into(),
                files: Vec::new(),
            }],
        };
        rewrite(
            &mut report,
            &obs,
            &TrustOrigin::default(),
            Path::new("/nonexistent"),
        );
        assert_eq!(report.findings[0].hint, "add the SAN rule `service-ip`");
        let obs = observation(DirKind::Files);
        rewrite(
            &mut report,
            &obs,
            &TrustOrigin::default(),
            Path::new("/nonexistent"),
        );
        assert!(
            report.findings[0].hint.contains("subjectAltName"),
            "{:?}",
            report.findings[0]
        );
    }
}
