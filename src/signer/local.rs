//! A private key held in this process (read from a file, the environment or a `key_command`),
//! signing with ring.

use ring::rand::SystemRandom;
use ring::signature;

use crate::key::{Algorithm, KeyError, KeyPair, KeySource, PrivateKey, PublicKey};
use crate::signer::{SignError, Signer};

/// An in-process key, parsed by ring once and wiped by ring when dropped.
pub struct LocalSigner {
    pair: KeyPair,
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
        Ok(Self {
            pair: KeyPair::new(&key, source)?,
        })
    }
}

impl Signer for LocalSigner {
    fn algorithm(&self) -> Algorithm {
        self.pair.algorithm()
    }

    fn public_key(&self) -> PublicKey {
        self.pair.public_key()
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Ecdsa(pair) => pair
                .sign(&rng, signing_input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Local),
            KeyPair::Rsa(pair) => {
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
            KeyPair::Ed25519(pair) => Ok(pair.sign(signing_input).as_ref().to_vec()),
        }
    }
}
