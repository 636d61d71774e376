//! The PEM and DER formats private keys come in: PKCS#8, SEC1 (with or without an `EC PARAMETERS`
//! block) and PKCS#1, and the types Code Storage accepts.
//!
//! Only the envelope is inspected here (PEM label, algorithm and curve OIDs, RSA modulus size);
//! ring validates the key material when it is loaded ([`crate::key::KeyPair`]).

use crate::der::{self, Reader, oid};
use crate::key::{Algorithm, KeyError, KeySource};
use crate::secret::Secret;

/// A private key read from PEM: its algorithm and DER (PKCS#8, or PKCS#1 for an RSA key that
/// came as such). The bytes are reachable only inside the key code and wiped on drop.
#[derive(Debug)]
pub struct PrivateKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) der: Secret<Vec<u8>>,
}

impl PrivateKey {
    /// The algorithm tokens signed with this key use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Whether `text` looks like PEM (a key pasted where a path or a variable's name belongs).
pub fn looks_like_pem(text: &str) -> bool {
    text.contains("-----BEGIN ")
}

/// Parses PEM text into a private key, naming `source` in any error.
pub fn parse_pem(text: &[u8], source: &KeySource) -> Result<PrivateKey, KeyError> {
    // CI systems and `.env` files often keep PEM on one line with literal `\n` sequences.
    let unescaped;
    let text = if !text.contains(&b'\n') && text.windows(2).any(|w| w == b"\\n") {
        unescaped = Secret::new(
            String::from_utf8_lossy(text)
                .replace("\\n", "\n")
                .into_bytes(),
        );
        unescaped.expose().as_slice()
    } else {
        text
    };
    let blocks = pem::parse_many(text).map_err(|_| {
        if text.windows(11).any(|w| w == b"-----BEGIN ") {
            KeyError::Truncated(source.clone())
        } else {
            KeyError::NotPem(source.clone())
        }
    })?;
    if blocks.is_empty() && text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(KeyError::Truncated(source.clone()));
    }
    let mut curve_from_parameters = None;
    let mut saw_public = false;
    for block in blocks {
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        let tag = block.tag().to_owned();
        let contents = Secret::new(block.into_contents());
        let key = match tag.as_str() {
            "EC PARAMETERS" => {
                curve_from_parameters = Reader::new(contents.expose())
                    .expect(der::OID)
                    .ok()
                    .map(<[u8]>::to_vec);
                continue;
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                saw_public = true;
                continue;
            }
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted(source.clone())),
            "OPENSSH PRIVATE KEY" => {
                return Err(KeyError::OpenSsh {
                    origin: source.clone(),
                    org: None,
                });
            }
            _ if encrypted => return Err(KeyError::Encrypted(source.clone())),
            "PRIVATE KEY" => from_pkcs8(contents, source),
            "EC PRIVATE KEY" => {
                from_sec1(contents.expose(), curve_from_parameters.as_deref(), source)
            }
            "RSA PRIVATE KEY" => from_pkcs1(contents, source),
            _ => continue,
        };
        return key;
    }
    if saw_public {
        Err(KeyError::PublicKeyOnly(source.clone()))
    } else {
        Err(KeyError::NotPem(source.clone()))
    }
}

fn unsupported(source: &KeySource, kind: &str) -> KeyError {
    KeyError::Unsupported {
        origin: source.clone(),
        kind: kind.to_owned(),
    }
}

fn curve_name(curve: &[u8]) -> &'static str {
    match curve {
        c if c == oid::P384 => "an EC P-384 key",
        c if c == oid::P521 => "an EC P-521 key",
        c if c == oid::SECP256K1 => "an EC secp256k1 key",
        _ => "an EC key on an unknown curve",
    }
}

fn from_pkcs8(contents: Secret<Vec<u8>>, source: &KeySource) -> Result<PrivateKey, KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let algorithm = {
        let mut outer = Reader::new(contents.expose());
        let mut info = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
        info.expect(der::INTEGER).map_err(|_| malformed())?;
        let mut algorithm_id = Reader::new(info.expect(der::SEQUENCE).map_err(|_| malformed())?);
        match algorithm_id.expect(der::OID).map_err(|_| malformed())? {
            o if o == oid::RSA_ENCRYPTION => {
                let private = info.expect(der::OCTET_STRING).map_err(|_| malformed())?;
                check_rsa_size(private, source)?;
                Algorithm::Rs256
            }
            o if o == oid::EC_PUBLIC_KEY => match algorithm_id.expect(der::OID) {
                Ok(curve) if curve == oid::P256 => Algorithm::Es256,
                Ok(curve) => return Err(unsupported(source, curve_name(curve))),
                Err(_) => return Err(malformed()),
            },
            o if o == oid::ED25519 => Algorithm::EdDsa,
            o if o == oid::ED448 => return Err(unsupported(source, "an Ed448 key")),
            _ => return Err(unsupported(source, "a key of an unknown type")),
        }
    };
    Ok(PrivateKey {
        algorithm,
        der: contents,
    })
}

// SEC1 (`EC PRIVATE KEY`) has no algorithm identifier of its own; ring reads it wrapped in PKCS#8.
fn from_sec1(
    contents: &[u8],
    curve_from_parameters: Option<&[u8]>,
    source: &KeySource,
) -> Result<PrivateKey, KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let mut outer = Reader::new(contents);
    let mut key = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
    key.expect(der::INTEGER).map_err(|_| malformed())?;
    key.expect(der::OCTET_STRING).map_err(|_| malformed())?;
    let inline_curve = match key.optional(der::CONTEXT_0).map_err(|_| malformed())? {
        Some(parameters) => Some(
            Reader::new(parameters)
                .expect(der::OID)
                .map_err(|_| malformed())?,
        ),
        None => None,
    };
    match inline_curve.or(curve_from_parameters) {
        Some(curve) if curve == oid::P256 => {}
        Some(curve) => return Err(unsupported(source, curve_name(curve))),
        // Without parameters the curve is unknown; a P-256 key carries it in practice.
        None => return Err(malformed()),
    }
    let algorithm_id = der::sequence(&[
        &der::element(der::OID, oid::EC_PUBLIC_KEY),
        &der::element(der::OID, oid::P256),
    ]);
    let pkcs8 = der::sequence(&[
        &der::element(der::INTEGER, &[0]),
        &algorithm_id,
        &der::element(der::OCTET_STRING, contents),
    ]);
    Ok(PrivateKey {
        algorithm: Algorithm::Es256,
        der: Secret::new(pkcs8),
    })
}

fn from_pkcs1(contents: Secret<Vec<u8>>, source: &KeySource) -> Result<PrivateKey, KeyError> {
    check_rsa_size(contents.expose(), source)?;
    Ok(PrivateKey {
        algorithm: Algorithm::Rs256,
        der: contents,
    })
}

// RSAPrivateKey ::= SEQUENCE { version, modulus, ... }: refuse short keys with their size named.
fn check_rsa_size(rsa_private_key: &[u8], source: &KeySource) -> Result<(), KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let mut outer = Reader::new(rsa_private_key);
    let mut key = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
    key.expect(der::INTEGER).map_err(|_| malformed())?;
    let bits = der::integer_bits(key.expect(der::INTEGER).map_err(|_| malformed())?);
    if bits < 2048 {
        return Err(unsupported(source, &format!("a {bits}-bit RSA key")));
    }
    Ok(())
}
