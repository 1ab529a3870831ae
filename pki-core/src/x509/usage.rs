use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A key algorithm kpki can generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default).
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every algorithm, in spec order.
    pub const ALL: [KeyAlgorithm; 5] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    /// The spec spelling (`ecdsa-p256`, `rsa-2048`, ...).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
        }
    }

    /// Whether this is an RSA algorithm.
    pub const fn is_rsa(&self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// The key as the rules see it.
    pub const fn spec(&self) -> KeySpec {
        match self {
            Self::EcdsaP256 => KeySpec::Ec("P-256"),
            Self::EcdsaP384 => KeySpec::Ec("P-384"),
            Self::Rsa2048 => KeySpec::Rsa(2048),
            Self::Rsa3072 => KeySpec::Rsa(3072),
            Self::Rsa4096 => KeySpec::Rsa(4096),
        }
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let hint = if s.starts_with("rsa-") {
                    " (RSA keys shorter than 2048 bits are refused)"
                } else {
                    ""
                };
                format!(
                    "`{s}` is not a supported algorithm{hint}; use one of ecdsa-p256, \
                     ecdsa-p384, rsa-2048, rsa-3072, rsa-4096"
                )
            })
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as found in a certificate, planned or parsed: broader than
/// [`KeyAlgorithm`] so that weak keys read from disk (or named in a profile)
/// can be reported by rule C001 instead of failing to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySpec {
    /// RSA with this modulus size in bits.
    Rsa(u32),
    /// An elliptic curve, by its NIST name (`P-256`).
    Ec(&'static str),
    /// Anything else (Ed25519, DSA, an unknown curve).
    Other(&'static str),
}

impl KeySpec {
    /// The generatable algorithm this key corresponds to, if any.
    pub fn algorithm(&self) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.spec() == *self)
    }
    /// Whether the key is RSA.
    pub fn is_rsa(&self) -> bool {
        matches!(self, Self::Rsa(_))
    }
}

impl FromStr for KeySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<KeyAlgorithm>() {
            return Ok(a.spec());
        }
        if let Some(bits) = s.strip_prefix("rsa-").and_then(|b| b.parse::<u32>().ok()) {
            return Ok(Self::Rsa(bits));
        }
        Err(format!(
            "`{s}` is not a key algorithm; use ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096"
        ))
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(bits) => write!(f, "rsa-{bits}"),
            Self::Ec("P-256") => f.write_str("ecdsa-p256"),
            Self::Ec("P-384") => f.write_str("ecdsa-p384"),
            Self::Ec(c) => write!(f, "ecdsa-{c}"),
            Self::Other(o) => f.write_str(o),
        }
    }
}

impl Serialize for KeySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The keyUsage bits kpki knows about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyUsages {
    /// digitalSignature
    pub digital_signature: bool,
    /// keyEncipherment
    pub key_encipherment: bool,
    /// keyCertSign
    pub key_cert_sign: bool,
    /// cRLSign
    pub crl_sign: bool,
}

impl KeyUsages {
    /// The names of the set bits, in RFC 5280 order.
    pub fn names(&self) -> Vec<&'static str> {
        let Self {
            digital_signature,
            key_encipherment,
            key_cert_sign,
            crl_sign,
        } = *self;
        [
            (digital_signature, "digitalSignature"),
            (key_encipherment, "keyEncipherment"),
            (key_cert_sign, "keyCertSign"),
            (crl_sign, "cRLSign"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect()
    }

    /// Parses a list of names as written in a profile.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut k = Self::default();
        for n in names {
            match n {
                "digitalSignature" => k.digital_signature = true,
                "keyEncipherment" => k.key_encipherment = true,
                "keyCertSign" => k.key_cert_sign = true,
                "cRLSign" => k.crl_sign = true,
                other => {
                    return Err(format!(
                        "`{other}` is not a key usage (digitalSignature, keyEncipherment, keyCertSign, cRLSign)"
                    ));
                }
            }
        }
        Ok(k)
    }
}

/// An extended key usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtUsage {
    /// TLS server authentication.
    ServerAuth,
    /// TLS client authentication.
    ClientAuth,
}

impl ExtUsage {
    /// The RFC 5280 short name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::ServerAuth => "serverAuth",
            Self::ClientAuth => "clientAuth",
        }
    }
}

impl FromStr for ExtUsage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "serverAuth" => Ok(Self::ServerAuth),
            "clientAuth" => Ok(Self::ClientAuth),
            other => Err(format!(
                "`{other}` is not an extended key usage (serverAuth, clientAuth)"
            )),
        }
    }
}

/// What a leaf certificate is for; decides its default usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
    /// Both ends of a connection (etcd peers).
    Peer,
    /// The etcd server cert: a server that is also its own client (row 4).
    EtcdServer,
}

impl Role {
    /// The profile spelling.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::Peer => "peer",
            Self::EtcdServer => "etcd-server",
        }
    }

    /// The extended usages this role needs.
    pub fn ext_usages(&self) -> Vec<ExtUsage> {
        match self {
            Self::Server => vec![ExtUsage::ServerAuth],
            Self::Client => vec![ExtUsage::ClientAuth],
            Self::Peer | Self::EtcdServer => vec![ExtUsage::ServerAuth, ExtUsage::ClientAuth],
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Server, Self::Client, Self::Peer, Self::EtcdServer]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a role (server, client, peer, etcd-server)"))
    }
}

/// The usage extensions of a certificate: basic constraints, key usage,
/// extended key usage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// basicConstraints CA flag (`None`: the extension is absent).
    pub ca: Option<bool>,
    /// basicConstraints path length constraint.
    pub path_len: Option<u8>,
    /// keyUsage (`None`: the extension is absent).
    pub key: Option<KeyUsages>,
    /// extendedKeyUsage.
    pub ext: Vec<ExtUsage>,
    /// The certificate has no extendedKeyUsage extension, or lists
    /// anyExtendedKeyUsage: Go's crypto/x509 (Kubernetes, etcd) accepts such a
    /// leaf for every purpose. Never set on what kpki plans.
    pub ext_any: bool,
}

impl Usage {
    /// The usages kpki gives a CA.
    pub fn ca(path_len: Option<u8>) -> Self {
        Self {
            ca: Some(true),
            path_len,
            key: Some(KeyUsages {
                digital_signature: true,
                key_encipherment: false,
                key_cert_sign: true,
                crl_sign: true,
            }),
            ext: Vec::new(),
            ext_any: false,
        }
    }

    /// The usages kpki gives a leaf of this role (keyEncipherment only for RSA).
    pub fn leaf(role: Role, key: KeySpec) -> Self {
        Self {
            ca: Some(false),
            path_len: None,
            key: Some(KeyUsages {
                digital_signature: true,
                key_encipherment: key.is_rsa(),
                key_cert_sign: false,
                crl_sign: false,
            }),
            ext: role.ext_usages(),
            ext_any: false,
        }
    }

    /// Whether the certificate carries this extended usage.
    pub fn has(&self, e: ExtUsage) -> bool {
        self.ext.contains(&e)
    }

    /// Whether a Go verifier accepts the certificate for this usage: it
    /// carries it, or carries no extendedKeyUsage at all (or "any").
    pub fn permits(&self, e: ExtUsage) -> bool {
        self.ext_any || self.has(e)
    }
}
