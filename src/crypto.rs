//! jsonwebtoken's signing and verifying, backed by ring.
//!
//! jsonwebtoken 10+ leaves the choice of cryptography to the application. Its built-in choices are
//! aws-lc (a C/assembly build we do not want) and RustCrypto (whose `rsa` crate has an open
//! timing advisory), so this module gives it ring, which the rest of the crate already uses.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, UnparsedPublicKey};

static RING: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    // JWK thumbprints and conversions are never used here.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring jsonwebtoken's provider for this process; later calls do nothing.
pub fn install() {
    // Err only means a provider is installed already, which can only be this one.
    let _ = RING.install_default();
}

enum RingSigner {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, Error> {
        let rng = SystemRandom::new();
        match self {
            Self::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::new()),
            Self::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| Error::new())?;
                Ok(signature)
            }
            Self::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ecdsa(_) => Algorithm::ES256,
            Self::Rsa(_) => Algorithm::RS256,
            Self::Ed25519(_) => Algorithm::EdDSA,
        }
    }
}

/// Expects PKCS#8 DER (or PKCS#1 DER for RSA), as [`crate::key::SigningKey::der`] gives.
fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let der = key.as_bytes();
    let signer = match algorithm {
        Algorithm::ES256 => RingSigner::Ecdsa(
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        Algorithm::RS256 => RingSigner::Rsa(
            RsaKeyPair::from_pkcs8(der)
                .or_else(|_| RsaKeyPair::from_der(der))
                .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?,
        ),
        Algorithm::EdDSA => RingSigner::Ed25519(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
        _ => return Err(ErrorKind::UnsupportedAlgorithm.into()),
    };
    Ok(Box::new(signer))
}

struct RingVerifier {
    algorithm: Algorithm,
    public_key: Vec<u8>,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
        let verification: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => &signature::ED25519,
        };
        UnparsedPublicKey::new(verification, &self.public_key)
            .verify(message, signature)
            .map_err(|_| Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Expects the raw public key: the EC point, the PKCS#1 RSA public key, or the Ed25519 bytes
/// (the contents of an SPKI's bit string).
fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match algorithm {
        Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA => Ok(Box::new(RingVerifier {
            algorithm: *algorithm,
            public_key: key.try_get_as_bytes()?.to_vec(),
        })),
        _ => Err(ErrorKind::UnsupportedAlgorithm.into()),
    }
}
