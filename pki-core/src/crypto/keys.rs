//! Key generation, PEM encoding/decoding and public-key helpers.

use core::fmt;

use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode, Encode};
use p256::elliptic_curve::Generate;
use pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use pkcs8::{DecodePrivateKey, EncodePublicKey};
use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use sha1::{Digest, Sha1};
use spki::SubjectPublicKeyInfoRef;
use zeroize::Zeroizing;

use super::CryptoError;
use super::pem;
pub use crate::x509::KeyAlgorithm;

pub(crate) const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_SECP256R1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

fn rsa_bits(alg: KeyAlgorithm) -> Option<usize> {
    match alg {
        KeyAlgorithm::Rsa2048 => Some(2048),
        KeyAlgorithm::Rsa3072 => Some(3072),
        KeyAlgorithm::Rsa4096 => Some(4096),
        _ => None,
    }
}

fn from_rsa_bits(bits: usize) -> Result<KeyAlgorithm, CryptoError> {
    match bits {
        2048 => Ok(KeyAlgorithm::Rsa2048),
        3072 => Ok(KeyAlgorithm::Rsa3072),
        4096 => Ok(KeyAlgorithm::Rsa4096),
        other => Err(CryptoError::UnsupportedKey {
            what: format!("rsa-{other}"),
        }),
    }
}

/// Fresh CSPRNG seeded from the OS (getrandom). Fallible, never panics.
pub(crate) fn os_rng() -> Result<StdRng, CryptoError> {
    StdRng::try_from_rng(&mut SysRng).map_err(|e| CryptoError::Rng(e.to_string()))
}

/// Bit length of a big-endian unsigned integer.
fn uint_bits(bytes: &[u8]) -> usize {
    let mut b = bytes;
    while let Some((&0, rest)) = b.split_first() {
        b = rest;
    }
    match b.first() {
        None => 0,
        Some(&first) => (b.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

fn rsa_modulus_bits(modulus: &UintRef<'_>) -> usize {
    uint_bits(modulus.as_bytes())
}

pub(crate) enum Inner {
    Rsa(Box<rsa::PrivateKey>, KeyAlgorithm),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    /// A key held in a PKCS#11 token: signs through C_Sign, never exported.
    Token(std::sync::Arc<super::pkcs11::TokenKey>),
}

/// A private key. Its `Debug` output never contains key material.
pub struct PrivateKey {
    pub(crate) inner: Inner,
    /// The public half, computed once (deriving an EC public key costs a
    /// scalar multiplication, and it is needed for every signature).
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.algorithm().as_str())
    }
}

impl PrivateKey {
    /// Generate a new key using the OS CSPRNG.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, CryptoError> {
        let inner = match alg {
            KeyAlgorithm::EcdsaP256 => Inner::P256(
                p256::SecretKey::try_generate_from_rng(&mut SysRng)
                    .map_err(|e| CryptoError::Rng(e.to_string()))?,
            ),
            KeyAlgorithm::EcdsaP384 => Inner::P384(
                p384::SecretKey::try_generate_from_rng(&mut SysRng)
                    .map_err(|e| CryptoError::Rng(e.to_string()))?,
            ),
            rsa_alg => {
                let bits = rsa_bits(rsa_alg)
                    .ok_or_else(|| CryptoError::KeyGeneration("not an RSA algorithm".into()))?;
                let mut rng = os_rng()?;
                let key = rsa::PrivateKey::new(&mut rng, bits)
                    .map_err(|e| CryptoError::KeyGeneration(e.to_string()))?;
                Inner::Rsa(Box::new(key), rsa_alg)
            }
        };
        Ok(PrivateKey::with_inner(inner))
    }

    /// A fixed P-256 key that stands in for every key a dry run would
    /// generate: a dry run signs with it to compare and report, never writes
    /// it, and so generates no key at all (RSA generation dominates a run).
    pub(crate) fn placeholder() -> Result<Self, CryptoError> {
        use sha2::Digest;
        let scalar = sha2::Sha256::digest(b"kpki dry-run placeholder key; never written");
        let key = p256::SecretKey::from_slice(&scalar)
            .map_err(|e| CryptoError::KeyGeneration(format!("placeholder: {e}")))?;
        Ok(PrivateKey::with_inner(Inner::P256(key)))
    }

    /// A copy of this key (the placeholder stands in for many keys).
    pub(crate) fn duplicate(&self) -> Self {
        let inner = match &self.inner {
            Inner::Rsa(k, a) => Inner::Rsa(k.clone(), *a),
            Inner::P256(k) => Inner::P256(k.clone()),
            Inner::P384(k) => Inner::P384(k.clone()),
            Inner::Token(k) => Inner::Token(std::sync::Arc::clone(k)),
        };
        Self {
            inner,
            public: self.public.clone(),
        }
    }

    /// The key's algorithm (and RSA size).
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.inner {
            Inner::Rsa(_, alg) => *alg,
            Inner::P256(_) => KeyAlgorithm::EcdsaP256,
            Inner::P384(_) => KeyAlgorithm::EcdsaP384,
            Inner::Token(k) => k.algorithm(),
        }
    }

    /// RSA keys as PKCS#1 `RSA PRIVATE KEY`, EC keys as SEC1 `EC PRIVATE KEY`
    /// (the formats kubeadm writes). A token-held key is never exported:
    /// [`CryptoError::NotExportable`].
    pub fn to_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        let le = der::pem::LineEnding::LF;
        match &self.inner {
            Inner::Token(k) => Err(CryptoError::NotExportable {
                label: k.label().to_owned(),
            }),
            Inner::Rsa(k, _) => k
                .to_pkcs1_pem(le)
                .map_err(|e| CryptoError::Encode(e.to_string())),
            Inner::P256(k) => self.ec_pem(&k.to_bytes(), OID_SECP256R1),
            Inner::P384(k) => self.ec_pem(&k.to_bytes(), OID_SECP384R1),
        }
    }

    /// SEC1 `EC PRIVATE KEY` PEM from the scalar and the cached public key:
    /// the same bytes as `SecretKey::to_sec1_pem`, without the scalar
    /// multiplication that would derive the public point again.
    fn ec_pem(
        &self,
        scalar: &[u8],
        curve: ObjectIdentifier,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let scalar = Zeroizing::new(scalar.to_vec());
        let spki = SubjectPublicKeyInfoRef::from_der(&self.public.der)
            .map_err(|e| CryptoError::Encode(e.to_string()))?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| CryptoError::Encode("public key bit string".into()))?;
        let doc = der::SecretDocument::encode_msg(&sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(curve)),
            public_key: Some(point),
        })
        .map_err(|e| CryptoError::Encode(e.to_string()))?;
        doc.to_pem("EC PRIVATE KEY", der::pem::LineEnding::LF)
            .map_err(|e| CryptoError::Encode(e.to_string()))
    }

    /// Parse the first private key found in `pem`. Accepts PKCS#1
    /// (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) and unencrypted PKCS#8
    /// (`PRIVATE KEY`). `EC PARAMETERS` blocks (as written by
    /// `openssl ecparam -genkey`) are skipped; any other block type is an error.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        Self::from_pem_skipping(pem, &["EC PARAMETERS"])
    }

    /// Like [`PrivateKey::from_pem`], for a file that holds certificates and
    /// their key (the kubelet's `kubelet-client-<date>.pem`): `CERTIFICATE`
    /// blocks are skipped too.
    pub fn from_pem_beside_certs(pem: &str) -> Result<Self, CryptoError> {
        Self::from_pem_skipping(pem, &["EC PARAMETERS", "CERTIFICATE"])
    }

    fn from_pem_skipping(pem: &str, skip: &[&str]) -> Result<Self, CryptoError> {
        let blocks = pem::decode_all(pem)?;
        for block in &blocks {
            match block.label.as_str() {
                l if skip.contains(&l) => continue,
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&block.der),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&block.der, None),
                "PRIVATE KEY" => return Self::from_pkcs8_der(&block.der),
                other => {
                    return Err(CryptoError::UnexpectedPemType {
                        label: pem::safe_label(other),
                    });
                }
            }
        }
        Err(CryptoError::NoPemBlock)
    }

    /// Parses a key file that is byte for byte one kpki wrote (the caller
    /// checked its digest against the manifest): a SEC1 `EC PRIVATE KEY`
    /// takes its public key from the structure's own `publicKey` field
    /// (which kpki wrote from the derived key), skipping the scalar
    /// multiplication; the point is still checked to be on the curve. Any
    /// other form, or a SEC1 key without that field, is parsed as
    /// [`PrivateKey::from_pem`] does. Never call this for a file whose bytes
    /// were not verified: a mismatched point would be trusted.
    pub(crate) fn from_pem_as_written(pem: &str) -> Result<Self, CryptoError> {
        let blocks = pem::decode_all(pem)?;
        if let [block] = blocks.as_slice()
            && block.label == "EC PRIVATE KEY"
            && let Some(key) = Self::from_sec1_der_as_written(&block.der)?
        {
            return Ok(key);
        }
        Self::from_pem(pem)
    }

    /// Parses many key files as [`PrivateKey::from_pem_beside_certs`] does,
    /// one result per text, in order. A P-256 SEC1 key that carries its
    /// public point is not derived one by one: all such points are checked
    /// against their scalars together (`batchkeys`: one scalar
    /// multiplication for the lot); if that check fails, every one of them
    /// is parsed and derived in full, so the key at fault is the one whose
    /// point differs from its certificate's.
    pub(crate) fn from_pems_beside_certs(texts: &[&str]) -> Vec<Result<Self, CryptoError>> {
        use rayon::prelude::*;
        // Each P-256 SEC1 key with the point its file carries (unchecked).
        let first: Vec<(Result<Self, CryptoError>, Option<p256::AffinePoint>)> = texts
            .par_iter()
            .map(|t| match Self::p256_as_written(t) {
                Some((k, q)) => (Ok(k), Some(q)),
                None => (Self::from_pem_beside_certs(t), None),
            })
            .collect();
        // Every unchecked key's scalar and point (None if one has none).
        let mut pairs: Option<Vec<(p256::Scalar, p256::AffinePoint)>> = first
            .iter()
            .filter_map(|(k, q)| Some((k, (*q)?)))
            .map(|(k, q)| Some((k.as_ref().ok()?.p256_scalar()?, q)))
            .collect();
        let held = pairs.as_ref().is_some_and(|pairs| {
            os_rng().is_ok_and(|mut rng| super::batchkeys::all_match(pairs, &mut rng))
        });
        for (d, _) in pairs.iter_mut().flatten() {
            zeroize::Zeroize::zeroize(d);
        }
        if held {
            return first.into_iter().map(|(k, _)| k).collect();
        }
        first
            .into_par_iter()
            .zip(texts.par_iter())
            .map(|((k, q), t)| match q {
                Some(_) => Self::from_pem_beside_certs(t),
                None => k,
            })
            .collect()
    }

    /// A P-256 SEC1 key (the first key block, certificates and EC
    /// parameters skipped) and the public point its file carries,
    /// unchecked; None for anything else.
    fn p256_as_written(pem: &str) -> Option<(Self, p256::AffinePoint)> {
        use p256::pkcs8::DecodePublicKey;
        let blocks = pem::decode_all(pem).ok()?;
        let block = blocks
            .iter()
            .find(|b| b.label != "EC PARAMETERS" && b.label != "CERTIFICATE")?;
        if block.label != "EC PRIVATE KEY" {
            return None;
        }
        let key = Self::from_sec1_der_as_written(&block.der).ok()??;
        if !matches!(key.inner, Inner::P256(_)) {
            return None;
        }
        let q = *p256::PublicKey::from_public_key_der(&key.public.der)
            .ok()?
            .as_affine();
        Some((key, q))
    }

    /// A P-256 key's scalar.
    fn p256_scalar(&self) -> Option<p256::Scalar> {
        match &self.inner {
            Inner::P256(sk) => Some(*sk.to_nonzero_scalar()),
            _ => None,
        }
    }

    /// The SEC1 shortcut of [`PrivateKey::from_pem_as_written`]; None when
    /// the structure has no public key or names another curve.
    fn from_sec1_der_as_written(der: &[u8]) -> Result<Option<Self>, CryptoError> {
        let parsed = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("SEC1 EC private key: {e}")))?;
        let (Some(curve), Some(point)) = (
            parsed.parameters.and_then(|p| p.named_curve()),
            parsed.public_key,
        ) else {
            return Ok(None);
        };
        let encode = |d: Result<spki::Document, spki::Error>| {
            d.map(|d| PublicKey {
                der: d.as_bytes().to_vec(),
            })
            .map_err(|e| CryptoError::KeyDecode(format!("EC public key: {e}")))
        };
        let (inner, public) = if curve == OID_SECP256R1 {
            let secret = p256::SecretKey::from_slice(parsed.private_key)
                .map_err(|_| CryptoError::KeyDecode("invalid P-256 scalar".into()))?;
            let public = p256::PublicKey::from_sec1_bytes(point)
                .map_err(|_| CryptoError::KeyDecode("invalid P-256 public key".into()))?;
            (Inner::P256(secret), encode(public.to_public_key_der())?)
        } else if curve == OID_SECP384R1 {
            let secret = p384::SecretKey::from_slice(parsed.private_key)
                .map_err(|_| CryptoError::KeyDecode("invalid P-384 scalar".into()))?;
            let public = p384::PublicKey::from_sec1_bytes(point)
                .map_err(|_| CryptoError::KeyDecode("invalid P-384 public key".into()))?;
            (Inner::P384(secret), encode(public.to_public_key_der())?)
        } else {
            return Ok(None);
        };
        Ok(Some(PrivateKey::with_public(inner, public)))
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self, CryptoError> {
        let parsed = pkcs1::RsaPrivateKeyRef::from_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("PKCS#1 RSA private key: {e}")))?;
        let alg = from_rsa_bits(rsa_modulus_bits(&parsed.modulus))?;
        let key = rsa::PrivateKey::from_pkcs1_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("PKCS#1 RSA private key: {e}")))?;
        Ok(PrivateKey::with_inner(Inner::Rsa(Box::new(key), alg)))
    }

    fn from_sec1_der(
        der: &[u8],
        curve_hint: Option<ObjectIdentifier>,
    ) -> Result<Self, CryptoError> {
        let parsed = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("SEC1 EC private key: {e}")))?;
        let curve = parsed
            .parameters
            .and_then(|p| p.named_curve())
            .or(curve_hint)
            .ok_or_else(|| CryptoError::KeyDecode("EC private key without named curve".into()))?;
        let inner = if curve == OID_SECP256R1 {
            Inner::P256(
                p256::SecretKey::from_slice(parsed.private_key)
                    .map_err(|_| CryptoError::KeyDecode("invalid P-256 scalar".into()))?,
            )
        } else if curve == OID_SECP384R1 {
            Inner::P384(
                p384::SecretKey::from_slice(parsed.private_key)
                    .map_err(|_| CryptoError::KeyDecode("invalid P-384 scalar".into()))?,
            )
        } else {
            return Err(CryptoError::UnsupportedKey {
                what: format!("ecdsa curve {curve}"),
            });
        };
        Ok(PrivateKey::with_inner(inner))
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        let info = pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("PKCS#8 private key: {e}")))?;
        let oid = info.algorithm.oid;
        if oid == OID_RSA_ENCRYPTION {
            return Self::from_pkcs1_der(info.private_key.as_bytes());
        }
        if oid == OID_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| CryptoError::KeyDecode(format!("PKCS#8 EC parameters: {e}")))?;
            let key = Self::from_sec1_der(info.private_key.as_bytes(), Some(curve))?;
            // Cross-check with the crate's own PKCS#8 decoder (validates more).
            match &key.inner {
                Inner::P256(_) => {
                    p256::SecretKey::from_pkcs8_der(der)
                        .map_err(|e| CryptoError::KeyDecode(format!("PKCS#8 P-256: {e}")))?;
                }
                Inner::P384(_) => {
                    p384::SecretKey::from_pkcs8_der(der)
                        .map_err(|e| CryptoError::KeyDecode(format!("PKCS#8 P-384: {e}")))?;
                }
                Inner::Rsa(..) | Inner::Token(_) => {}
            }
            return Ok(key);
        }
        Err(CryptoError::UnsupportedKey {
            what: describe_key_oid(oid),
        })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn with_inner(inner: Inner) -> Self {
        let public = Self::derive_public(&inner);
        Self { inner, public }
    }

    /// A key whose public half is known already (a token key's, read back).
    pub(crate) fn with_public(inner: Inner, public: PublicKey) -> Self {
        Self { inner, public }
    }

    fn derive_public(inner: &Inner) -> PublicKey {
        // Encoding a valid in-memory public key cannot fail in practice; fall
        // back to an empty SPKI rather than panicking.
        let doc = match inner {
            Inner::Rsa(k, _) => k.as_ref().as_ref().to_public_key_der(),
            Inner::P256(k) => k.public_key().to_public_key_der(),
            Inner::P384(k) => k.public_key().to_public_key_der(),
            // Built with its public key (`with_public`): never derived.
            Inner::Token(_) => return PublicKey { der: Vec::new() },
        };
        PublicKey {
            der: doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default(),
        }
    }

    /// True when `public` is this key's public half.
    pub fn matches(&self, public: &PublicKey) -> bool {
        let own = self.public_key();
        !own.der.is_empty() && own == *public
    }
}

fn describe_key_oid(oid: ObjectIdentifier) -> String {
    if oid == OID_ED25519 {
        "ed25519".into()
    } else if oid == OID_RSASSA_PSS {
        "rsassa-pss".into()
    } else {
        format!("key algorithm {oid}")
    }
}

/// A public key, stored as DER SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    pub(crate) der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = self
            .algorithm()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|e| e.to_string());
        write!(f, "PublicKey({alg})")
    }
}

impl PublicKey {
    /// Construct from DER SubjectPublicKeyInfo (validated structurally).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| CryptoError::KeyDecode(format!("SubjectPublicKeyInfo: {e}")))?;
        Ok(PublicKey { der: der.to_vec() })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.der
    }

    /// PKIX `PUBLIC KEY` PEM (as kubeadm's sa.pub).
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        pem::encode("PUBLIC KEY", &self.der)
    }

    /// Parse `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let blocks = pem::decode_all(pem)?;
        let Some(block) = blocks.first() else {
            return Err(CryptoError::NoPemBlock);
        };
        match block.label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&block.der),
            "RSA PUBLIC KEY" => {
                pkcs1::RsaPublicKeyRef::from_der(&block.der)
                    .map_err(|e| CryptoError::KeyDecode(format!("PKCS#1 RSA public key: {e}")))?;
                let spki = spki::SubjectPublicKeyInfoOwned {
                    algorithm: spki::AlgorithmIdentifierOwned {
                        oid: OID_RSA_ENCRYPTION,
                        parameters: Some(der::asn1::Null.into()),
                    },
                    subject_public_key: der::asn1::BitString::from_bytes(&block.der)
                        .map_err(|e| CryptoError::Encode(e.to_string()))?,
                };
                let der = spki
                    .to_der()
                    .map_err(|e| CryptoError::Encode(e.to_string()))?;
                Ok(PublicKey { der })
            }
            other => Err(CryptoError::UnexpectedPemType {
                label: pem::safe_label(other),
            }),
        }
    }

    pub(crate) fn spki(&self) -> Result<SubjectPublicKeyInfoRef<'_>, CryptoError> {
        SubjectPublicKeyInfoRef::from_der(&self.der)
            .map_err(|e| CryptoError::KeyDecode(format!("SubjectPublicKeyInfo: {e}")))
    }

    /// The kind of key as the rules name it (C001): the algorithm kpki
    /// knows, else `rsa-<bits>` for any RSA size, else "unsupported" or
    /// "unknown".
    pub fn key_spec(&self) -> crate::x509::KeySpec {
        use crate::x509::KeySpec;
        match self.algorithm() {
            Ok(a) => a.spec(),
            Err(CryptoError::UnsupportedKey { what }) => {
                match what.strip_prefix("rsa-").and_then(|b| b.parse().ok()) {
                    Some(bits) => KeySpec::Rsa(bits),
                    None => KeySpec::Other("unsupported"),
                }
            }
            Err(_) => KeySpec::Other("unknown"),
        }
    }

    /// The algorithm of this key; unsupported algorithms / sizes give
    /// `CryptoError::UnsupportedKey { what: "rsa-1024" }` and similar.
    pub fn algorithm(&self) -> Result<KeyAlgorithm, CryptoError> {
        let spki = self.spki()?;
        let oid = spki.algorithm.oid;
        if oid == OID_RSA_ENCRYPTION {
            let bytes = spki.subject_public_key.as_bytes().ok_or_else(|| {
                CryptoError::KeyDecode("RSA public key bit string not octet aligned".into())
            })?;
            let rsa = pkcs1::RsaPublicKeyRef::from_der(bytes)
                .map_err(|e| CryptoError::KeyDecode(format!("PKCS#1 RSA public key: {e}")))?;
            return from_rsa_bits(rsa_modulus_bits(&rsa.modulus));
        }
        if oid == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|e| CryptoError::KeyDecode(format!("EC parameters: {e}")))?;
            return if curve == OID_SECP256R1 {
                Ok(KeyAlgorithm::EcdsaP256)
            } else if curve == OID_SECP384R1 {
                Ok(KeyAlgorithm::EcdsaP384)
            } else if curve == OID_SECP521R1 {
                Err(CryptoError::UnsupportedKey {
                    what: "ecdsa-p521".into(),
                })
            } else {
                Err(CryptoError::UnsupportedKey {
                    what: format!("ecdsa curve {curve}"),
                })
            };
        }
        Err(CryptoError::UnsupportedKey {
            what: describe_key_oid(oid),
        })
    }

    /// SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2
    /// method 1), used for SKI/AKI. Returns all-zero for a malformed SPKI.
    pub fn key_id(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        if let Ok(spki) = self.spki() {
            let digest = Sha1::digest(spki.subject_public_key.raw_bytes());
            out.copy_from_slice(&digest);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use p256::pkcs8::der::pem::LineEnding;

    /// The cached-point SEC1 encoding is byte-identical to the crate's own
    /// (which derives the point again), and parses back to the same key.
    #[test]
    fn ec_pem_is_the_crates_sec1_pem() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let k = PrivateKey::generate(alg).unwrap();
            let theirs = match &k.inner {
                Inner::P256(s) => s.to_sec1_pem(LineEnding::LF).unwrap(),
                Inner::P384(s) => s.to_sec1_pem(LineEnding::LF).unwrap(),
                Inner::Rsa(..) | Inner::Token(_) => unreachable!(),
            };
            let ours = k.to_pem().unwrap();
            assert_eq!(*ours, *theirs, "{alg:?}");
            assert_eq!(
                PrivateKey::from_pem(&ours).unwrap().public_key(),
                k.public_key()
            );
        }
    }

    /// A key file as kpki wrote it parses to the same key with or without
    /// the shortcut; the shortcut takes the embedded point (no derivation),
    /// and refuses a point that is not on the curve.
    #[test]
    fn as_written_takes_the_embedded_point() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let (k, other) = (
                PrivateKey::generate(alg).unwrap(),
                PrivateKey::generate(alg).unwrap(),
            );
            let pem = k.to_pem().unwrap();
            let fast = PrivateKey::from_pem_as_written(&pem).unwrap();
            assert_eq!(fast.public_key(), k.public_key(), "{alg:?}");
            assert_eq!(*fast.to_pem().unwrap(), *pem);
            // The scalar of `k` with the point of `other`: the shortcut
            // believes the file (so the caller must have checked its
            // digest); a full parse derives the right point.
            let der = |p: &str| {
                let body: String = p.lines().filter(|l| !l.starts_with("-----")).collect();
                b64.decode(body).unwrap()
            };
            let (mut mixed, theirs) = (der(&pem), der(&other.to_pem().unwrap()));
            let n = match alg {
                KeyAlgorithm::EcdsaP256 => 65,
                _ => 97,
            };
            let (ml, tl) = (mixed.len(), theirs.len());
            mixed[ml - n..].copy_from_slice(&theirs[tl - n..]);
            let mixed_pem = super::pem::encode("EC PRIVATE KEY", &mixed).unwrap();
            let believed = PrivateKey::from_pem_as_written(&mixed_pem).unwrap();
            assert_eq!(believed.public_key(), other.public_key());
            let full = PrivateKey::from_pem(&mixed_pem).unwrap();
            assert_eq!(full.public_key(), k.public_key());
            // A point off the curve is an error, never a key.
            let last = mixed.len() - 1;
            mixed[last] ^= 1;
            let off = super::pem::encode("EC PRIVATE KEY", &mixed).unwrap();
            assert!(PrivateKey::from_pem_as_written(&off).is_err());
        }
    }

    /// The batched parse gives what a parse of each text gives: the same
    /// public keys (a file whose point disagrees with its scalar gets the
    /// derived point, the batch having failed), the same errors.
    #[test]
    fn batched_parse_equals_one_by_one() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let der = |p: &str| {
            let body: String = p.lines().filter(|l| !l.starts_with("-----")).collect();
            b64.decode(body).unwrap()
        };
        let keys: Vec<PrivateKey> = (0..40)
            .map(|_| PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap())
            .collect();
        let p384 = PrivateKey::generate(KeyAlgorithm::EcdsaP384).unwrap();
        let mut texts: Vec<String> = keys
            .iter()
            .map(|k| k.to_pem().unwrap().to_string())
            .collect();
        texts.push(p384.to_pem().unwrap().to_string());
        // PKCS#8, a certificate before the key, garbage, an empty file.
        let Inner::P256(sk) = &keys[3].inner else {
            panic!("a P-256 key")
        };
        texts.push(
            p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(sk, LineEnding::LF)
                .unwrap()
                .to_string(),
        );
        texts.push(format!(
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n{}",
            texts[4]
        ));
        texts.push("not a key".into());
        texts.push(String::new());
        let check = |texts: &[String]| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let batched = PrivateKey::from_pems_beside_certs(&refs);
            assert_eq!(batched.len(), texts.len());
            for (t, b) in texts.iter().zip(&batched) {
                match (PrivateKey::from_pem_beside_certs(t), b) {
                    (Ok(one), Ok(b)) => assert_eq!(one.public_key(), b.public_key()),
                    (Err(e), Err(f)) => assert_eq!(e.to_string(), f.to_string()),
                    (one, b) => panic!("one by one {one:?}, batched {b:?}"),
                }
            }
            batched
        };
        let batched = check(&texts);
        assert_eq!(
            batched[7].as_ref().unwrap().public_key(),
            keys[7].public_key()
        );
        // Key 9's scalar with key 10's point: the batch fails, every key is
        // derived, and key 9 is the one whose public key is its own.
        let (mut mixed, theirs) = (der(&texts[9]), der(&texts[10]));
        let (ml, tl) = (mixed.len(), theirs.len());
        mixed[ml - 65..].copy_from_slice(&theirs[tl - 65..]);
        texts[9] = super::pem::encode("EC PRIVATE KEY", &mixed).unwrap();
        let batched = check(&texts);
        assert_eq!(
            batched[9].as_ref().unwrap().public_key(),
            keys[9].public_key()
        );
        assert_ne!(
            batched[9].as_ref().unwrap().public_key(),
            keys[10].public_key()
        );
    }
}
