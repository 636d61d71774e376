//! A private key loaded into ring: the form that signs in this process and that computes the
//! key's public half.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

use crate::key::{Algorithm, KeyError, KeySource, PrivateKey, PublicKey};

/// A private key as ring holds it, checked by ring once and wiped by ring when dropped.
pub enum KeyPair {
    /// An EC P-256 key (ES256).
    Ecdsa(EcdsaKeyPair),
    /// An RSA key (RS256).
    Rsa(RsaKeyPair),
    /// An Ed25519 key (EdDSA).
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Lets ring check and load `key`; `source` names it in errors.
    pub fn new(key: &PrivateKey, source: &KeySource) -> Result<Self, KeyError> {
        let der = key.der.expose();
        let malformed = |_| KeyError::Malformed(source.clone());
        Ok(match key.algorithm {
            Algorithm::Es256 => Self::Ecdsa(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(malformed)?,
            ),
            Algorithm::Rs256 => Self::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|_| KeyError::Malformed(source.clone()))?,
            ),
            Algorithm::EdDsa => {
                Self::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(malformed)?)
            }
        })
    }

    /// The JWS algorithm the key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ecdsa(_) => Algorithm::Es256,
            Self::Rsa(_) => Algorithm::Rs256,
            Self::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// The public half, as Code Storage has it registered.
    pub fn public_key(&self) -> PublicKey {
        let raw = match self {
            Self::Ecdsa(pair) => pair.public_key().as_ref(),
            Self::Rsa(pair) => pair.public_key().as_ref(),
            Self::Ed25519(pair) => pair.public_key().as_ref(),
        };
        PublicKey::from_raw(self.algorithm(), raw)
    }
}

impl PrivateKey {
    /// The key's public half, computed by ring; `source` names the key in errors.
    pub fn public_key(&self, source: &KeySource) -> Result<PublicKey, KeyError> {
        KeyPair::new(self, source).map(|pair| pair.public_key())
    }
}
