//! A private key held in this process (read from a file, the environment or a `key_command`),
//! signing with ring.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use crate::key::{Algorithm, KeyError, KeySource, PrivateKey, PublicKey};
use crate::signer::{SignError, Signer};

/// An in-process key, parsed by ring once and wiped by ring when dropped.
pub struct LocalSigner {
    pair: Pair,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// Lets ring check and load `key`; `source` names it in errors.
    pub fn new(key: PrivateKey, source: &KeySource) -> Result<Self, KeyError> {
        let der = key.der.expose();
        let malformed = |_| KeyError::Malformed(source.clone());
        let pair = match key.algorithm {
            Algorithm::Es256 => Pair::Ecdsa(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(malformed)?,
            ),
            Algorithm::Rs256 => Pair::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(|_| KeyError::Malformed(source.clone()))?,
            ),
            Algorithm::EdDsa => {
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(malformed)?)
            }
        };
        Ok(Self { pair })
    }
}

impl Signer for LocalSigner {
    fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Ecdsa(_) => Algorithm::Es256,
            Pair::Rsa(_) => Algorithm::Rs256,
            Pair::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    fn public_key(&self) -> PublicKey {
        let raw = match &self.pair {
            Pair::Ecdsa(pair) => pair.public_key().as_ref(),
            Pair::Rsa(pair) => pair.public_key().as_ref(),
            Pair::Ed25519(pair) => pair.public_key().as_ref(),
        };
        PublicKey::from_raw(self.algorithm(), raw)
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ecdsa(pair) => pair
                .sign(&rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Local),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input,
                    &mut signature,
                )
                .map_err(|_| SignError::Local)?;
                Ok(signature)
            }
            Pair::Ed25519(pair) => Ok(pair.sign(signing_input).as_ref().to_vec()),
        }
    }
}
