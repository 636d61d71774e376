//! jsonwebtoken's verifying, backed by ring: `inspect --key` checks signatures through it, a path
//! independent of the helper's own signers.
//!
//! jsonwebtoken 10+ leaves the choice of cryptography to the application. Its built-in choices are
//! aws-lc (a C/assembly build we do not want) and RustCrypto (whose `rsa` crate has an open
//! timing advisory), so this module gives it ring, which the rest of the crate already uses.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{self, UnparsedPublicKey};

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

/// The helper signs through [`crate::signer::Signer`], never through jsonwebtoken, so a request
/// to sign here is a mistake: refuse it rather than carry a second signing path.
fn signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::UnsupportedAlgorithm.into())
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
