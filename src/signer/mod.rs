//! The signing seam: whatever holds the organisation's key, `get` sees one [`Signer`] with an
//! algorithm, a public key and `sign(signing_input)`.
//!
//! Key loading ([`crate::key::load`]) produces a signer; today's only kind is [`local`], a private
//! key held in this process. Keys held elsewhere (an agent, an external program, a broker) plug in
//! here as further kinds, and `get` does not change.

pub mod local;

use crate::key::{Algorithm, PublicKey};

/// Something that signs JWS signing inputs with an organisation's key.
pub trait Signer {
    /// The JWS algorithm of the signatures.
    fn algorithm(&self) -> Algorithm;

    /// The public half of the key, as Code Storage has it registered.
    fn public_key(&self) -> PublicKey;

    /// Signs `signing_input` (`base64url(header).base64url(claims)`), returning the JWS signature
    /// bytes: r||s for ES256, PKCS#1 v1.5 for RS256, the 64 Ed25519 bytes for EdDSA.
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a signer gave no signature.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// ring refused to sign with an in-process key.
    #[error("the key could not sign (ring refused it)")]
    Local,
}

/// Signs a probe and checks it with the signer's own public key: a key that loads but cannot
/// sign, or signs with another key than it claims, fails here rather than as a 401.
pub fn probe(signer: &dyn Signer) -> Result<(), ProbeError> {
    const INPUT: &[u8] = b"eyJhbGciOiJub25lIn0.cHJvYmU";
    let signature = signer.sign(INPUT)?;
    signer
        .public_key()
        .verify(INPUT, &signature)
        .map_err(|_| ProbeError::Mismatch)
}

/// Why a probe signature failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The signer gave no signature.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The signature does not verify with the signer's public key.
    #[error("its probe signature does not verify with its public key")]
    Mismatch,
}
