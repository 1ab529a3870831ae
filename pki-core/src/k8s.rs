//! Typed knowledge of Kubernetes components, the flags that name PKI files,
//! and the TLS connections between them (PKI-RULES.md section 1).
//!
//! Strings appear here once, as the flag names the components accept; the
//! rest of kpki speaks [`Component`], [`Flag`] and [`Link`].

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The groups that make a client certificate a cluster administrator:
/// `system:masters` (RBAC bypass) and kubeadm's `kubeadm:cluster-admins`.
pub const ADMIN_GROUPS: [&str; 2] = ["system:masters", "kubeadm:cluster-admins"];
/// The group of kubelet client certificates (the Node authorizer's).
pub const NODES_GROUP: &str = "system:nodes";
/// The user-name prefix of a kubelet client certificate: `system:node:<node>`.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// A Kubernetes component that consumes PKI files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// etcd (server and peer).
    Etcd,
    /// etcdctl / the etcd health check client.
    Etcdctl,
    /// kube-apiserver.
    KubeApiserver,
    /// kube-controller-manager.
    KubeControllerManager,
    /// kube-scheduler.
    KubeScheduler,
    /// kubelet (KubeletConfiguration fields).
    Kubelet,
    /// kube-proxy.
    KubeProxy,
}

/// Where a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On every etcd member.
    EtcdMembers,
    /// On every control-plane node.
    ControlPlane,
    /// On every node that runs a kubelet (control plane and workers).
    AllNodes,
}

impl Component {
    /// Every component, in a stable order.
    pub const ALL: [Component; 7] = [
        Self::Etcd,
        Self::Etcdctl,
        Self::KubeApiserver,
        Self::KubeControllerManager,
        Self::KubeScheduler,
        Self::Kubelet,
        Self::KubeProxy,
    ];

    /// The component's name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Etcdctl => "etcdctl",
            Self::KubeApiserver => "kube-apiserver",
            Self::KubeControllerManager => "kube-controller-manager",
            Self::KubeScheduler => "kube-scheduler",
            Self::Kubelet => "kubelet",
            Self::KubeProxy => "kube-proxy",
        }
    }

    /// Where it runs.
    pub const fn placement(&self) -> Placement {
        match self {
            Self::Etcd | Self::Etcdctl => Placement::EtcdMembers,
            Self::KubeApiserver | Self::KubeControllerManager | Self::KubeScheduler => {
                Placement::ControlPlane
            }
            Self::Kubelet | Self::KubeProxy => Placement::AllNodes,
        }
    }

    /// The flags of this component that name PKI files.
    pub fn flags(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::ALL
            .iter()
            .copied()
            .filter(move |f| f.component() == *self)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Component {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Self::ALL.iter().map(|c| c.as_str()).collect();
                format!("`{s}` is not a component ({})", all.join(", "))
            })
    }
}

/// What a flag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagKind {
    /// A CA certificate the component trusts.
    TrustedCa,
    /// A certificate and (through its paired key flag) its private key; may be a CA (signing).
    CertAndKey,
    /// The public half of a keypair.
    PublicKey,
    /// The private half of a keypair.
    PrivateKey,
}

macro_rules! flags {
    ($( $(#[$doc:meta])* $v:ident => ($c:ident, $name:literal, $kind:ident, $key:expr) ),* $(,)?) => {
        /// A component flag (or KubeletConfiguration field) that names a PKI file.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Flag { $( $(#[$doc])* $v ),* }
        impl Flag {
            /// Every flag.
            pub const ALL: &'static [Flag] = &[$(Flag::$v),*];
            /// The component that takes it.
            pub const fn component(&self) -> Component { match self { $(Flag::$v => Component::$c),* } }
            /// The flag name, without dashes (`client-ca-file`), or the KubeletConfiguration field path.
            pub const fn name(&self) -> &'static str { match self { $(Flag::$v => $name),* } }
            /// What it names.
            pub const fn kind(&self) -> FlagKind { match self { $(Flag::$v => FlagKind::$kind),* } }
            /// The flag that names the private key going with this certificate flag.
            pub const fn key_flag(&self) -> Option<&'static str> { match self { $(Flag::$v => $key),* } }
        }
    };
}

flags! {
    /// etcd `--cert-file` / `--key-file`: the server certificate.
    EtcdCertFile => (Etcd, "cert-file", CertAndKey, Some("key-file")),
    /// etcd `--trusted-ca-file`: the CA client certificates must chain to.
    EtcdTrustedCaFile => (Etcd, "trusted-ca-file", TrustedCa, None),
    /// etcd `--peer-cert-file` / `--peer-key-file`.
    EtcdPeerCertFile => (Etcd, "peer-cert-file", CertAndKey, Some("peer-key-file")),
    /// etcd `--peer-trusted-ca-file`.
    EtcdPeerTrustedCaFile => (Etcd, "peer-trusted-ca-file", TrustedCa, None),
    /// etcdctl `--cert` / `--key` (the health-check client).
    EtcdctlCert => (Etcdctl, "cert", CertAndKey, Some("key")),
    /// etcdctl `--cacert`.
    EtcdctlCacert => (Etcdctl, "cacert", TrustedCa, None),
    /// kube-apiserver `--client-ca-file`.
    ApiserverClientCaFile => (KubeApiserver, "client-ca-file", TrustedCa, None),
    /// kube-apiserver `--tls-cert-file` / `--tls-private-key-file`.
    ApiserverTlsCertFile => (KubeApiserver, "tls-cert-file", CertAndKey, Some("tls-private-key-file")),
    /// kube-apiserver `--etcd-cafile`.
    ApiserverEtcdCafile => (KubeApiserver, "etcd-cafile", TrustedCa, None),
    /// kube-apiserver `--etcd-certfile` / `--etcd-keyfile`.
    ApiserverEtcdCertfile => (KubeApiserver, "etcd-certfile", CertAndKey, Some("etcd-keyfile")),
    /// kube-apiserver `--kubelet-client-certificate` / `--kubelet-client-key`.
    ApiserverKubeletClientCertificate => (KubeApiserver, "kubelet-client-certificate", CertAndKey, Some("kubelet-client-key")),
    /// kube-apiserver `--kubelet-certificate-authority`.
    ApiserverKubeletCertificateAuthority => (KubeApiserver, "kubelet-certificate-authority", TrustedCa, None),
    /// kube-apiserver `--proxy-client-cert-file` / `--proxy-client-key-file`.
    ApiserverProxyClientCertFile => (KubeApiserver, "proxy-client-cert-file", CertAndKey, Some("proxy-client-key-file")),
    /// kube-apiserver `--requestheader-client-ca-file`.
    ApiserverRequestheaderClientCaFile => (KubeApiserver, "requestheader-client-ca-file", TrustedCa, None),
    /// kube-apiserver `--service-account-key-file`.
    ApiserverServiceAccountKeyFile => (KubeApiserver, "service-account-key-file", PublicKey, None),
    /// kube-apiserver `--service-account-signing-key-file`.
    ApiserverServiceAccountSigningKeyFile => (KubeApiserver, "service-account-signing-key-file", PrivateKey, None),
    /// kube-controller-manager `--cluster-signing-cert-file` / `--cluster-signing-key-file`.
    ControllerManagerClusterSigningCertFile => (KubeControllerManager, "cluster-signing-cert-file", CertAndKey, Some("cluster-signing-key-file")),
    /// kube-controller-manager `--root-ca-file` (published to pods as `ca.crt`).
    ControllerManagerRootCaFile => (KubeControllerManager, "root-ca-file", TrustedCa, None),
    /// kube-controller-manager `--client-ca-file`.
    ControllerManagerClientCaFile => (KubeControllerManager, "client-ca-file", TrustedCa, None),
    /// kube-controller-manager `--requestheader-client-ca-file`.
    ControllerManagerRequestheaderClientCaFile => (KubeControllerManager, "requestheader-client-ca-file", TrustedCa, None),
    /// kube-controller-manager `--service-account-private-key-file`.
    ControllerManagerServiceAccountPrivateKeyFile => (KubeControllerManager, "service-account-private-key-file", PrivateKey, None),
    /// kube-scheduler `--client-ca-file`.
    SchedulerClientCaFile => (KubeScheduler, "client-ca-file", TrustedCa, None),
    /// kube-scheduler `--requestheader-client-ca-file`.
    SchedulerRequestheaderClientCaFile => (KubeScheduler, "requestheader-client-ca-file", TrustedCa, None),
    /// KubeletConfiguration `authentication.x509.clientCAFile`.
    KubeletClientCaFile => (Kubelet, "authentication.x509.clientCAFile", TrustedCa, None),
    /// KubeletConfiguration `tlsCertFile` / `tlsPrivateKeyFile`.
    KubeletTlsCertFile => (Kubelet, "tlsCertFile", CertAndKey, Some("tlsPrivateKeyFile")),
}

impl Flag {
    /// Whether the file must hold exactly one certificate (a signer loads
    /// it next to its key): it never gets a trust bundle.
    pub const fn one_cert(&self) -> bool {
        matches!(self, Flag::ControllerManagerClusterSigningCertFile)
    }

    /// Looks a flag up by component and name.
    pub fn lookup(component: Component, name: &str) -> Result<Flag, String> {
        let name = name.trim_start_matches('-');
        component.flags().find(|f| f.name() == name).ok_or_else(|| {
            let known: Vec<_> = component.flags().map(|f| f.name()).collect();
            format!(
                "`{name}` is not a {component} flag kpki knows (known: {})",
                known.join(", ")
            )
        })
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.component() == Component::Kubelet {
            write!(f, "kubelet {}", self.name())
        } else {
            write!(f, "{} --{}", self.component(), self.name())
        }
    }
}

/// Who uses a kubeconfig to reach the apiserver (row 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeconfigUser {
    /// A cluster administrator (kubectl).
    Admin,
    /// The break-glass administrator.
    SuperAdmin,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
    /// kubelet.
    Kubelet,
    /// kube-proxy.
    KubeProxy,
}

impl KubeconfigUser {
    /// Every kind.
    pub const ALL: [KubeconfigUser; 6] = [
        Self::Admin,
        Self::SuperAdmin,
        Self::ControllerManager,
        Self::Scheduler,
        Self::Kubelet,
        Self::KubeProxy,
    ];

    /// The profile spelling.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::SuperAdmin => "super-admin",
            Self::ControllerManager => "kube-controller-manager",
            Self::Scheduler => "kube-scheduler",
            Self::Kubelet => "kubelet",
            Self::KubeProxy => "kube-proxy",
        }
    }

    /// The identity RBAC expects (`{node}` for the node name), if fixed.
    pub const fn expected_cn(&self) -> Option<&'static str> {
        match self {
            Self::ControllerManager => Some("system:kube-controller-manager"),
            Self::Scheduler => Some("system:kube-scheduler"),
            Self::KubeProxy => Some("system:kube-proxy"),
            Self::Kubelet => Some("system:node:{node}"),
            Self::Admin | Self::SuperAdmin => None,
        }
    }

    /// The component that uses it, if any (admins are people).
    pub const fn component(&self) -> Option<Component> {
        match self {
            Self::ControllerManager => Some(Component::KubeControllerManager),
            Self::Scheduler => Some(Component::KubeScheduler),
            Self::Kubelet => Some(Component::Kubelet),
            Self::KubeProxy => Some(Component::KubeProxy),
            Self::Admin | Self::SuperAdmin => None,
        }
    }
}

impl FromStr for KubeconfigUser {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!(
                "`{s}` is not a kubeconfig user (admin, super-admin, kube-controller-manager, kube-scheduler, kubelet, kube-proxy)"
            )
        })
    }
}

/// Where one end of a connection gets its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// From a component flag.
    Flag(Flag),
    /// From a kubeconfig's client credentials.
    Kubeconfig,
}

/// Where one end of a connection gets the CA it verifies the peer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustSource {
    /// From a component flag.
    Flag(Flag),
    /// From a kubeconfig's `certificate-authority(-data)`.
    Kubeconfig,
}

/// A TLS connection of the connection matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    /// Row 1: etcd member -> etcd member.
    EtcdPeer,
    /// Row 2: kube-apiserver -> etcd.
    ApiserverToEtcd,
    /// Row 3: etcdctl / health check -> etcd.
    EtcdctlToEtcd,
    /// Row 4: etcd's grpc-gateway -> etcd itself.
    EtcdGateway,
    /// Row 5: a kubeconfig user -> kube-apiserver.
    KubeconfigToApiserver,
    /// Row 6: kube-apiserver -> kubelet.
    ApiserverToKubelet,
    /// Row 7: kube-apiserver (front proxy) -> aggregated API servers.
    FrontProxy,
}

/// The four ends of a connection: the client's cert and the CA it trusts,
/// the server's cert and the CA it trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkEnds {
    /// The client's certificate.
    pub client_cert: CertSource,
    /// The CA the client verifies the server with.
    pub client_trusts: Option<TrustSource>,
    /// The server's certificate (None: not part of the cluster PKI).
    pub server_cert: Option<Flag>,
    /// The CA the server verifies the client with.
    pub server_trusts: Flag,
}

impl Link {
    /// Every link.
    pub const ALL: [Link; 7] = [
        Self::EtcdPeer,
        Self::ApiserverToEtcd,
        Self::EtcdctlToEtcd,
        Self::EtcdGateway,
        Self::KubeconfigToApiserver,
        Self::ApiserverToKubelet,
        Self::FrontProxy,
    ];

    /// A short description (`kube-apiserver -> etcd`).
    pub const fn describe(&self) -> &'static str {
        match self {
            Self::EtcdPeer => "etcd peer -> etcd peer",
            Self::ApiserverToEtcd => "kube-apiserver -> etcd",
            Self::EtcdctlToEtcd => "etcdctl/healthcheck -> etcd",
            Self::EtcdGateway => "etcd grpc-gateway -> etcd (loopback)",
            Self::KubeconfigToApiserver => "kubeconfig user -> kube-apiserver",
            Self::ApiserverToKubelet => "kube-apiserver -> kubelet",
            Self::FrontProxy => "kube-apiserver front proxy -> aggregated API server",
        }
    }

    /// The flags at each end.
    pub const fn ends(&self) -> LinkEnds {
        use Flag::*;
        let (client_cert, client_trusts, server_cert, server_trusts) = match self {
            Self::EtcdPeer => (
                CertSource::Flag(EtcdPeerCertFile),
                Some(TrustSource::Flag(EtcdPeerTrustedCaFile)),
                Some(EtcdPeerCertFile),
                EtcdPeerTrustedCaFile,
            ),
            Self::ApiserverToEtcd => (
                CertSource::Flag(ApiserverEtcdCertfile),
                Some(TrustSource::Flag(ApiserverEtcdCafile)),
                Some(EtcdCertFile),
                EtcdTrustedCaFile,
            ),
            Self::EtcdctlToEtcd => (
                CertSource::Flag(EtcdctlCert),
                Some(TrustSource::Flag(EtcdctlCacert)),
                Some(EtcdCertFile),
                EtcdTrustedCaFile,
            ),
            Self::EtcdGateway => (
                CertSource::Flag(EtcdCertFile),
                Some(TrustSource::Flag(EtcdTrustedCaFile)),
                Some(EtcdCertFile),
                EtcdTrustedCaFile,
            ),
            Self::KubeconfigToApiserver => (
                CertSource::Kubeconfig,
                Some(TrustSource::Kubeconfig),
                Some(ApiserverTlsCertFile),
                ApiserverClientCaFile,
            ),
            Self::ApiserverToKubelet => (
                CertSource::Flag(ApiserverKubeletClientCertificate),
                Some(TrustSource::Flag(ApiserverKubeletCertificateAuthority)),
                Some(KubeletTlsCertFile),
                KubeletClientCaFile,
            ),
            Self::FrontProxy => (
                CertSource::Flag(ApiserverProxyClientCertFile),
                None,
                None,
                ApiserverRequestheaderClientCaFile,
            ),
        };
        LinkEnds {
            client_cert,
            client_trusts,
            server_cert,
            server_trusts,
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_are_unique_per_component() {
        for c in Component::ALL {
            let mut names: Vec<_> = c.flags().map(|f| f.name()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(n, names.len(), "{c}");
        }
        assert_eq!(
            Flag::lookup(Component::KubeApiserver, "--client-ca-file").unwrap(),
            Flag::ApiserverClientCaFile
        );
        assert!(Flag::lookup(Component::Etcd, "client-ca-file").is_err());
    }

    #[test]
    fn cert_flags_have_key_flags() {
        for f in Flag::ALL {
            assert_eq!(
                f.kind() == FlagKind::CertAndKey,
                f.key_flag().is_some(),
                "{f}"
            );
        }
    }
}
