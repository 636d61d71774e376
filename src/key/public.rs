//! Public keys: the SPKI form Code Storage registers, read from PEM or derived from a private key,
//! and the signature check every signer's output can be held to.

use std::path::Path;

use ring::signature::{self, UnparsedPublicKey};

use crate::der::{self, Reader, oid};
use crate::key::{Algorithm, KeyError, KeySource};
use crate::sshagent::PublicKeyInfo;

/// The most bytes read from a public key file; an 8192-bit RSA `.pub` line is under 2 KiB.
const MAX_PUBLIC_KEY_BYTES: u64 = 64 * 1024;

/// Reads the public key file of `origin` (`key_agent` by path, or `sign_command`'s
/// `public_key_file`): an OpenSSH `.pub` line or a `PUBLIC KEY` PEM block.
pub fn read_public_key_file(path: &Path, origin: &KeySource) -> Result<PublicKeyInfo, KeyError> {
    let text = crate::fs::read_regular(path, MAX_PUBLIC_KEY_BYTES)
        .map_err(|reason| KeyError::PublicKeyUnreadable {
            origin: origin.clone(),
            path: path.to_owned(),
            reason: Box::new(reason),
        })?
        .ok_or_else(|| KeyError::PublicKeyMissing {
            origin: origin.clone(),
            path: path.to_owned(),
        })?;
    crate::sshagent::read_public_key(text.as_bytes()).map_err(|reason| KeyError::PublicKey {
        origin: origin.clone(),
        path: path.to_owned(),
        reason: Box::new(reason),
    })
}

/// A public key: its algorithm and its SubjectPublicKeyInfo DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    spki: Vec<u8>,
    /// Where the key's bits start inside `spki` (after the BIT STRING's unused-bits byte).
    raw_at: usize,
}

/// A signature that does not hold under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify with the public key")]
pub struct BadSignature;

impl PublicKey {
    /// Wraps the raw key ring works with (EC point, PKCS#1 RSA key, Ed25519 bytes) as SPKI.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        let algorithm_id = match algorithm {
            Algorithm::Es256 => der::sequence(&[
                &der::element(der::OID, oid::EC_PUBLIC_KEY),
                &der::element(der::OID, oid::P256),
            ]),
            Algorithm::EdDsa => der::sequence(&[&der::element(der::OID, oid::ED25519)]),
            Algorithm::Rs256 => der::sequence(&[
                &der::element(der::OID, oid::RSA_ENCRYPTION),
                &der::element(der::NULL, &[]),
            ]),
        };
        let bits = [&[0u8][..], raw].concat();
        let spki = der::sequence(&[&algorithm_id, &der::element(der::BIT_STRING, &bits)]);
        let raw_at = spki.len() - raw.len();
        Self {
            algorithm,
            spki,
            raw_at,
        }
    }

    /// Reads SubjectPublicKeyInfo DER, refusing key types Code Storage does not accept.
    pub fn from_spki(spki: &[u8], source: &KeySource) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed(source.clone());
        let unsupported = |kind: &str| KeyError::Unsupported {
            origin: source.clone(),
            kind: kind.to_owned(),
        };
        let mut outer = Reader::new(spki);
        let mut info = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
        let mut algorithm_id = Reader::new(info.expect(der::SEQUENCE).map_err(|_| malformed())?);
        let algorithm = match algorithm_id.expect(der::OID).map_err(|_| malformed())? {
            o if o == oid::RSA_ENCRYPTION => Algorithm::Rs256,
            o if o == oid::ED25519 => Algorithm::EdDsa,
            o if o == oid::EC_PUBLIC_KEY => match algorithm_id.expect(der::OID) {
                Ok(curve) if curve == oid::P256 => Algorithm::Es256,
                _ => return Err(unsupported("an EC public key on another curve than P-256")),
            },
            _ => return Err(unsupported("a public key of an unknown type")),
        };
        let bits = info.expect(der::BIT_STRING).map_err(|_| malformed())?;
        match bits.split_first() {
            Some((0, raw)) if !raw.is_empty() => Ok(Self::from_raw(algorithm, raw)),
            _ => Err(malformed()),
        }
    }

    /// Reads a `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` PEM block, or derives the public half of a
    /// private key in any format `get` reads.
    pub fn from_pem(text: &[u8], source: &KeySource) -> Result<Self, KeyError> {
        let blocks = pem::parse_many(text).unwrap_or_default();
        for block in &blocks {
            match block.tag() {
                "PUBLIC KEY" => return Self::from_spki(block.contents(), source),
                "RSA PUBLIC KEY" => return Ok(Self::from_raw(Algorithm::Rs256, block.contents())),
                _ => {}
            }
        }
        crate::key::pem::parse_pem(text, source)?.public_key(source)
    }

    /// The algorithm the key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The raw key ring verifies with: the EC point, the PKCS#1 RSA key or the Ed25519 bytes.
    pub fn raw(&self) -> &[u8] {
        &self.spki[self.raw_at..]
    }

    /// The key as a `PUBLIC KEY` PEM block with Unix line endings, as OpenSSL writes it.
    pub fn to_pem(&self) -> String {
        crate::key::encode_pem(&pem::Pem::new("PUBLIC KEY", self.spki.clone()))
    }

    /// Checks a JWS signature (ES256's fixed r||s, RS256's PKCS#1 v1.5, Ed25519) over `input`.
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let algorithm: &dyn signature::VerificationAlgorithm = match self.algorithm {
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::EdDsa => &signature::ED25519,
        };
        UnparsedPublicKey::new(algorithm, self.raw())
            .verify(input, signature)
            .map_err(|_| BadSignature)
    }
}
