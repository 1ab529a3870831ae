//! CA keys held in a PKCS#11 token (`[ca_keys] store = "pkcs11"`).
//!
//! The module is loaded at run time (`cryptoki`, libloading; no OpenSSL).
//! Keys are generated inside the token (CKA_TOKEN, CKA_SENSITIVE, not
//! CKA_EXTRACTABLE), labelled and CKA_ID'd by the CA id: `etcd-ca` for the
//! first generation, `etcd-ca#2`, `etcd-ca#3`... for the keys a rotation or
//! `--replace-ca-keys` makes. Which generation a CA uses is the one whose
//! public key its certificate holds. Certificates are signed with C_Sign
//! (CKM_SHA256_RSA_PKCS; CKM_ECDSA over a SHA-256/384 digest, the r||s the
//! token returns turned into a DER ECDSA-Sig-Value). No byte of a token key
//! ever leaves the token: [`PrivateKey::to_pem`] of such a key is an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::asn1::OctetString;
use der::{Decode, Encode};
use pkcs8::EncodePublicKey;
use zeroize::Zeroizing;

use super::CryptoError;
use super::keys::{Inner, OID_RSA_ENCRYPTION, OID_SECP256R1, OID_SECP384R1, PrivateKey, PublicKey};
use crate::x509::KeyAlgorithm;

/// Where the PIN of a token comes from: never the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// An environment variable (`pin_env`).
    Env(String),
    /// A file (`pin_file`); a trailing newline is dropped.
    File(PathBuf),
}

/// How to reach a token: `[ca_keys]` with `store = "pkcs11"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    /// The PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
}

/// Opening a token or using it failed. Messages name the module, the token
/// label or "PIN rejected"; never the PIN.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("PKCS#11: {0}")]
pub struct TokenError(pub String);

/// An open, logged-in session with one token. Shared by every key of the
/// token; C_Sign calls are serialised through it.
pub struct Token {
    session: Mutex<Session>,
    label: String,
    module: PathBuf,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?} in {})", self.label, self.module.display())
    }
}

/// A key that lives in a token: the session, the private-key object and
/// the public key read back from the token once.
pub(crate) struct TokenKey {
    token: Arc<Token>,
    handle: ObjectHandle,
    alg: KeyAlgorithm,
    /// CKA_LABEL (`etcd-ca`, `etcd-ca#2`).
    label: String,
}

impl TokenKey {
    pub(crate) fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Signs `msg` with the key's X.509 signature algorithm (sha256WithRSA,
    /// ecdsa-with-SHA256 for P-256, ecdsa-with-SHA384 for P-384): DER.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use sha2::Digest;
        let signing = |e: CkError| {
            CryptoError::Signing(format!(
                "C_Sign with {} in token {:?}: {e}",
                self.label, self.token.label
            ))
        };
        let session = self
            .token
            .session
            .lock()
            .map_err(|_| CryptoError::Signing("PKCS#11 session lock poisoned".into()))?;
        match self.alg {
            KeyAlgorithm::EcdsaP256 => {
                let digest = sha2::Sha256::digest(msg);
                let rs = session
                    .sign(&Mechanism::Ecdsa, self.handle, &digest)
                    .map_err(signing)?;
                let sig = p256::ecdsa::Signature::from_slice(&rs)
                    .map_err(|e| CryptoError::Signing(format!("token ECDSA signature: {e}")))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            KeyAlgorithm::EcdsaP384 => {
                let digest = sha2::Sha384::digest(msg);
                let rs = session
                    .sign(&Mechanism::Ecdsa, self.handle, &digest)
                    .map_err(signing)?;
                let sig = p384::ecdsa::Signature::from_slice(&rs)
                    .map_err(|e| CryptoError::Signing(format!("token ECDSA signature: {e}")))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            _ => session
                .sign(&Mechanism::Sha256RsaPkcs, self.handle, msg)
                .map_err(signing),
        }
    }
}

/// Loaded modules, kept for the life of the process: C_Initialize once per
/// module (a second one fails), C_Finalize never while a session may be open.
fn module(path: &Path) -> Result<Pkcs11, TokenError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut loaded = MODULES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| TokenError("module table lock poisoned".into()))?;
    if let Some(m) = loaded.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| {
        TokenError(format!(
            "cannot load the PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    match m.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(TokenError(format!(
                "the PKCS#11 module {} failed to initialise: {e}",
                path.display()
            )));
        }
    }
    loaded.insert(path.to_owned(), m.clone());
    Ok(m)
}

fn read_pin(pin: &PinSource) -> Result<AuthPin, TokenError> {
    match pin {
        PinSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(AuthPin::new(v)),
            _ => Err(TokenError(format!(
                "the token PIN comes from the environment variable {var}, which is not set"
            ))),
        },
        PinSource::File(path) => {
            // A regular file of at most 4 KiB, opened without blocking (a
            // FIFO is refused, not waited on).
            let bytes = Zeroizing::new(
                crate::observe::walk::read_regular_capped(path, 4096).map_err(|m| {
                    TokenError(format!("the token PIN file {} {m}", path.display()))
                })?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                TokenError(format!("the token PIN file {} is not text", path.display()))
            })?;
            let pin = text.trim_end_matches(['\n', '\r']);
            if pin.is_empty() {
                return Err(TokenError(format!(
                    "the token PIN file {} is empty",
                    path.display()
                )));
            }
            Ok(AuthPin::new(pin.to_owned()))
        }
    }
}

impl Token {
    /// Loads the module, finds the token by label, logs in with the PIN.
    pub fn open(cfg: &TokenConfig) -> Result<Arc<Token>, TokenError> {
        let pin = read_pin(&cfg.pin)?;
        let m = module(&cfg.module)?;
        let module = cfg.module.display();
        let slots = m.get_slots_with_token().map_err(|e| {
            TokenError(format!(
                "cannot list the slots of PKCS#11 module {module}: {e}"
            ))
        })?;
        let mut found = None;
        let mut labels = Vec::new();
        for slot in slots {
            let Ok(info) = m.get_token_info(slot) else {
                continue;
            };
            let label = info.label().trim_end().to_owned();
            if label == cfg.token_label {
                found = Some(slot);
                break;
            }
            if !label.is_empty() {
                labels.push(label);
            }
        }
        let Some(slot) = found else {
            return Err(TokenError(format!(
                "no token labelled {:?} in PKCS#11 module {module} (tokens there: {})",
                cfg.token_label,
                if labels.is_empty() {
                    "none".to_owned()
                } else {
                    labels.join(", ")
                }
            )));
        };
        let session = m.open_rw_session(slot).map_err(|e| {
            TokenError(format!(
                "cannot open a session with token {:?}: {e}",
                cfg.token_label
            ))
        })?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
                return Err(TokenError(format!(
                    "PIN rejected by token {:?} ({})",
                    cfg.token_label,
                    pin_origin(&cfg.pin)
                )));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(TokenError(format!(
                    "PIN rejected: the user PIN of token {:?} is locked",
                    cfg.token_label
                )));
            }
            Err(e) => {
                return Err(TokenError(format!(
                    "cannot log in to token {:?}: {e}",
                    cfg.token_label
                )));
            }
        }
        Ok(Arc::new(Token {
            session: Mutex::new(session),
            label: cfg.token_label.clone(),
            module: cfg.module.clone(),
        }))
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn err(&self, what: &str, e: CkError) -> CryptoError {
        CryptoError::Token(format!("{what} in token {:?}: {e}", self.label))
    }

    /// Every key of one CA in the token, oldest generation first.
    pub fn keys_of(self: &Arc<Self>, ca: &str) -> Result<Vec<PrivateKey>, CryptoError> {
        let mut found = Vec::new();
        {
            let s = self
                .session
                .lock()
                .map_err(|_| CryptoError::Token("session lock poisoned".into()))?;
            let handles = s
                .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
                .map_err(|e| self.err("C_FindObjects", e))?;
            for h in handles {
                let attrs = s
                    .get_attributes(h, &[AttributeType::Label, AttributeType::Id])
                    .map_err(|e| self.err("C_GetAttributeValue", e))?;
                let mut label = None;
                let mut id = None;
                for a in attrs {
                    match a {
                        Attribute::Label(l) => label = String::from_utf8(l).ok(),
                        Attribute::Id(i) => id = Some(i),
                        _ => {}
                    }
                }
                let (Some(label), Some(id)) = (label, id) else {
                    continue;
                };
                let Some(generation) = generation_of(&label, ca) else {
                    continue;
                };
                found.push((generation, label, id, h));
            }
        }
        found.sort_by_key(|(g, ..)| *g);
        found
            .into_iter()
            .map(|(_, label, id, h)| self.load(h, label, &id))
            .collect()
    }

    /// Reads the public key of a private-key object from its public-key twin.
    fn load(
        self: &Arc<Self>,
        handle: ObjectHandle,
        label: String,
        id: &[u8],
    ) -> Result<PrivateKey, CryptoError> {
        let s = self
            .session
            .lock()
            .map_err(|_| CryptoError::Token("session lock poisoned".into()))?;
        let pubs = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(|e| self.err("C_FindObjects", e))?;
        let Some(&ph) = pubs.first() else {
            return Err(CryptoError::Token(format!(
                "key {label:?} in token {:?} has no public-key object with its CKA_ID",
                self.label
            )));
        };
        let attrs = s
            .get_attributes(
                ph,
                &[
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                ],
            )
            .map_err(|e| self.err("C_GetAttributeValue", e))?;
        drop(s);
        let mut kt = None;
        let (mut n, mut e, mut params, mut point) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(k) => kt = Some(k),
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                Attribute::EcParams(v) => params = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        let (public, alg) = match (kt, n, e, params, point) {
            (Some(KeyType::RSA), Some(n), Some(e), _, _) => rsa_public(&n, &e)?,
            (Some(KeyType::EC), _, _, Some(params), Some(point)) => ec_public(&params, &point)?,
            _ => {
                return Err(CryptoError::UnsupportedKey {
                    what: format!("token key {label:?} (not RSA or ECDSA P-256/P-384)"),
                });
            }
        };
        Ok(PrivateKey::from_token(
            TokenKey {
                token: Arc::clone(self),
                handle,
                alg,
                label,
            },
            public,
        ))
    }

    /// Generates a new key for a CA inside the token (next free generation).
    pub fn generate(
        self: &Arc<Self>,
        ca: &str,
        alg: KeyAlgorithm,
    ) -> Result<PrivateKey, CryptoError> {
        let next = self
            .keys_of(ca)?
            .iter()
            .filter_map(|k| k.token_label().and_then(|l| generation_of(l, ca)))
            .max()
            .map_or(1, |g| g + 1);
        let label = if next == 1 {
            ca.to_owned()
        } else {
            format!("{ca}#{next}")
        };
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(label.as_bytes().to_vec()),
            ]
        };
        let mut public_t = common(false);
        public_t.push(Attribute::Verify(true));
        let mut private_t = common(true);
        private_t.extend([
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        let mechanism = match alg {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let curve = if alg == KeyAlgorithm::EcdsaP256 {
                    OID_SECP256R1
                } else {
                    OID_SECP384R1
                };
                let params = curve
                    .to_der()
                    .map_err(|e| CryptoError::Encode(e.to_string()))?;
                public_t.push(Attribute::EcParams(params));
                Mechanism::EccKeyPairGen
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let bits: u64 = match alg {
                    KeyAlgorithm::Rsa2048 => 2048,
                    KeyAlgorithm::Rsa3072 => 3072,
                    _ => 4096,
                };
                public_t.push(Attribute::ModulusBits(bits.into()));
                public_t.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (_, private) = {
            let s = self
                .session
                .lock()
                .map_err(|_| CryptoError::Token("session lock poisoned".into()))?;
            s.generate_key_pair(&mechanism, &public_t, &private_t)
                .map_err(|e| self.err(&format!("C_GenerateKeyPair for {label}"), e))?
        };
        self.load(private, label.clone(), label.as_bytes())
    }
}

fn pin_origin(pin: &PinSource) -> String {
    match pin {
        PinSource::Env(v) => format!("from ${v}"),
        PinSource::File(p) => format!("from {}", p.display()),
    }
}

/// `etcd-ca` is generation 1 of CA `etcd-ca`, `etcd-ca#2` generation 2.
fn generation_of(label: &str, ca: &str) -> Option<u32> {
    let rest = label.strip_prefix(ca)?;
    if rest.is_empty() {
        return Some(1);
    }
    rest.strip_prefix('#')?.parse().ok().filter(|g| *g >= 2)
}

fn rsa_public(n: &[u8], e: &[u8]) -> Result<(PublicKey, KeyAlgorithm), CryptoError> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
        b[i..].to_vec()
    };
    let (n, e) = (strip(n), strip(e));
    let rsa = pkcs1::RsaPublicKey {
        modulus: der::asn1::UintRef::new(&n).map_err(|x| CryptoError::KeyDecode(x.to_string()))?,
        public_exponent: der::asn1::UintRef::new(&e)
            .map_err(|x| CryptoError::KeyDecode(x.to_string()))?,
    };
    let pkcs1 = rsa
        .to_der()
        .map_err(|x| CryptoError::Encode(x.to_string()))?;
    let spki = spki::SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: der::asn1::BitString::from_bytes(&pkcs1)
            .map_err(|x| CryptoError::Encode(x.to_string()))?,
    };
    let public = PublicKey::from_spki_der(
        &spki
            .to_der()
            .map_err(|x| CryptoError::Encode(x.to_string()))?,
    )?;
    let alg = public.algorithm()?;
    Ok((public, alg))
}

fn ec_public(params: &[u8], point: &[u8]) -> Result<(PublicKey, KeyAlgorithm), CryptoError> {
    let curve = der::asn1::ObjectIdentifier::from_der(params)
        .map_err(|e| CryptoError::KeyDecode(format!("token CKA_EC_PARAMS: {e}")))?;
    // CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give it raw).
    let raw = match OctetString::from_der(point) {
        Ok(o) => o.as_bytes().to_vec(),
        Err(_) => point.to_vec(),
    };
    let bad = |e: String| CryptoError::KeyDecode(format!("token CKA_EC_POINT: {e}"));
    let (der, alg) = if curve == OID_SECP256R1 {
        let k = p256::PublicKey::from_sec1_bytes(&raw).map_err(|e| bad(e.to_string()))?;
        (
            k.to_public_key_der().map_err(|e| bad(e.to_string()))?,
            KeyAlgorithm::EcdsaP256,
        )
    } else if curve == OID_SECP384R1 {
        let k = p384::PublicKey::from_sec1_bytes(&raw).map_err(|e| bad(e.to_string()))?;
        (
            k.to_public_key_der().map_err(|e| bad(e.to_string()))?,
            KeyAlgorithm::EcdsaP384,
        )
    } else {
        return Err(CryptoError::UnsupportedKey {
            what: format!("token key on curve {curve}"),
        });
    };
    Ok((PublicKey::from_spki_der(der.as_bytes())?, alg))
}

impl PrivateKey {
    pub(crate) fn from_token(key: TokenKey, public: PublicKey) -> Self {
        Self::with_public(Inner::Token(Arc::new(key)), public)
    }

    /// The CKA_LABEL of a token-held key (None for a key in memory).
    pub fn token_label(&self) -> Option<&str> {
        match &self.inner {
            Inner::Token(k) => Some(k.label()),
            _ => None,
        }
    }

    /// Whether the key lives in a PKCS#11 token (its bytes are never written).
    pub fn is_token_held(&self) -> bool {
        matches!(self.inner, Inner::Token(_))
    }
}

#[cfg(test)]
mod tests {
    use super::generation_of;

    #[test]
    fn generations_are_read_from_labels() {
        assert_eq!(generation_of("etcd-ca", "etcd-ca"), Some(1));
        assert_eq!(generation_of("etcd-ca#2", "etcd-ca"), Some(2));
        assert_eq!(generation_of("etcd-ca#1", "etcd-ca"), None);
        assert_eq!(generation_of("etcd-ca-x", "etcd-ca"), None);
        assert_eq!(generation_of("ca", "etcd-ca"), None);
        assert_eq!(generation_of("etcd-ca", "ca"), None);
    }
}
