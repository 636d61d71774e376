//! New signing keys, made with ring, written as the PKCS#8 PEM that OpenSSL, Node and Python read.

use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair};

use crate::der::{self, Reader, oid};
use crate::secret::Secret;

/// The key types `keygen` makes (ring cannot generate RSA keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKey {
    /// EC P-256, signing ES256: the type the official SDKs use.
    P256,
    /// Ed25519, signing EdDSA.
    Ed25519,
}

/// ring could not make a key (its random source failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random number generator failed; no key was made")]
pub struct GenerateError;

/// Makes a new private key and returns it as PKCS#8 PEM text.
pub fn generate(kind: NewKey) -> Result<Secret<String>, GenerateError> {
    let rng = SystemRandom::new();
    let document = match kind {
        NewKey::P256 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|_| GenerateError)?,
        NewKey::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| GenerateError)?,
    };
    let der = Secret::new(match kind {
        NewKey::P256 => document.as_ref().to_vec(),
        NewKey::Ed25519 => ed25519_v1(document.as_ref()).ok_or(GenerateError)?,
    });
    Ok(Secret::new(super::encode_pem(&pem::Pem::new(
        "PRIVATE KEY",
        der.expose().clone(),
    ))))
}

/// Makes a new private key and returns its PKCS#8 DER, for a key that goes straight into an
/// ssh-agent and is never written anywhere (Ed25519 as ring writes it, v2 with the public key).
pub fn generate_pkcs8(kind: NewKey) -> Result<Secret<Vec<u8>>, GenerateError> {
    let rng = SystemRandom::new();
    let document = match kind {
        NewKey::P256 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        ),
        NewKey::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
    }
    .map_err(|_| GenerateError)?;
    Ok(Secret::new(document.as_ref().to_vec()))
}

/// ring writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key), which OpenSSL 3, Node
/// and Python's `cryptography` refuse; `openssl genpkey` writes v1: version 0, the seed only.
fn ed25519_v1(v2: &[u8]) -> Option<Vec<u8>> {
    let mut outer = Reader::new(v2);
    let mut info = Reader::new(outer.expect(der::SEQUENCE).ok()?);
    info.expect(der::INTEGER).ok()?;
    info.expect(der::SEQUENCE).ok()?;
    let private = info.expect(der::OCTET_STRING).ok()?;
    Some(der::sequence(&[
        &der::element(der::INTEGER, &[0]),
        &der::sequence(&[&der::element(der::OID, oid::ED25519)]),
        &der::element(der::OCTET_STRING, private),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_are_pkcs8_v1_that_ring_still_reads() {
        let pem = generate(NewKey::Ed25519).unwrap();
        let block = pem::parse(pem.expose()).unwrap();
        let mut outer = Reader::new(block.contents());
        let mut info = Reader::new(outer.expect(der::SEQUENCE).unwrap());
        assert_eq!(info.expect(der::INTEGER).unwrap(), [0], "version 0 (v1)");
        info.expect(der::SEQUENCE).unwrap();
        info.expect(der::OCTET_STRING).unwrap();
        assert!(info.is_empty(), "no public key field");
        assert!(Ed25519KeyPair::from_pkcs8_maybe_unchecked(block.contents()).is_ok());
        // The layout of a key `openssl genpkey -algorithm ED25519` made, to the seed.
        let fixture = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/ed25519.openssl.pem"),
        )
        .unwrap();
        let fixture = pem::parse(fixture).unwrap();
        assert_eq!(block.contents()[..16], fixture.contents()[..16]);
        assert_eq!(block.contents().len(), fixture.contents().len());
    }
}
