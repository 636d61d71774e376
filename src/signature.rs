//! JWS signature bytes from what signers hand back, and their verification with ring.
//!
//! An external signer (an HSM tool, a cloud KMS command, `openssl dgst -sign`) prints its
//! signature in one of a few shapes: the raw bytes, the DER `ECDSA-Sig-Value` that OpenSSL and
//! most KMSs give for ECDSA, or either of those as base64 text. JWS wants one shape only (RFC
//! 7518 §3.4: r||s for ES256, the PKCS#1 v1.5 octets for RS256, the 64 bytes for EdDSA), so this
//! module turns every accepted shape into that and refuses the rest by name.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use crate::alg::Algorithm;
use crate::der::{self, oid};

/// The size of an ES256 JWS signature: r and s, 32 bytes each.
pub const ES256_LEN: usize = 64;
/// The size of an Ed25519 signature.
pub const ED25519_LEN: usize = 64;

/// The most output a signer may print; the largest accepted form (base64 of an 8192-bit RSA
/// signature, with line breaks) is under 2 KiB.
const MAX_OUTPUT: usize = 16 * 1024;

/// Why a signer's output is not a usable signature, or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signer printed nothing.
    #[error("the signer printed no signature; run it by hand to see why")]
    Empty,
    /// The signer printed too much to be a signature.
    #[error(
        "the signer printed {0} bytes, far more than any signature; it must print only the signature"
    )]
    TooLong(usize),
    /// The output is in none of the accepted shapes.
    #[error(
        "the signer printed {got} bytes that are not a {algorithm} signature: print the {expected} raw bytes{der}, or base64 of {either}"
    )]
    Unrecognized {
        /// The algorithm the key signs with.
        algorithm: Algorithm,
        /// How many bytes the raw signature has.
        expected: usize,
        /// How many bytes were printed.
        got: usize,
        /// ", or a DER ECDSA-Sig-Value" when that shape is accepted too.
        der: &'static str,
        /// "it" or "either".
        either: &'static str,
    },
    /// A DER ECDSA signature whose r or s cannot be a P-256 value.
    #[error(
        "the signer's DER ECDSA signature is malformed ({0}); check that it signs with a P-256 key"
    )]
    BadDer(&'static str),
    /// The public key given to verify with is not an SPKI of the algorithm's key type.
    #[error("the public key is not an SPKI {0} key; give the `PUBLIC KEY` PEM of the signing key")]
    BadPublicKey(Algorithm),
    /// The signature does not verify.
    #[error(
        "the {0} signature does not verify with the public key: the signer used another key, or another algorithm"
    )]
    Invalid(Algorithm),
}

/// The JWS signature length of `algorithm` with the key `spki_der` (for RS256, the modulus
/// length in bytes).
pub fn signature_len(algorithm: Algorithm, spki_der: &[u8]) -> Result<usize, SignatureError> {
    match algorithm {
        Algorithm::Es256 => Ok(ES256_LEN),
        Algorithm::EdDsa => Ok(ED25519_LEN),
        Algorithm::Rs256 => {
            let pkcs1 = raw_public_key(algorithm, spki_der)?;
            let bad = |_| SignatureError::BadPublicKey(algorithm);
            let mut outer = der::Reader::new(pkcs1);
            let mut key = der::Reader::new(outer.expect(der::SEQUENCE).map_err(bad)?);
            let modulus = key.expect(der::INTEGER).map_err(bad)?;
            Ok(der::integer_bits(modulus).div_ceil(8))
        }
    }
}

/// Turns a signer's output into JWS signature bytes of length `len` (see [`signature_len`]):
/// the raw bytes, for ES256 a DER `ECDSA-Sig-Value`, or base64 / base64url text of either
/// (padding optional, line breaks and a trailing newline ignored).
pub fn decode(algorithm: Algorithm, len: usize, output: &[u8]) -> Result<Vec<u8>, SignatureError> {
    if output.is_empty() {
        return Err(SignatureError::Empty);
    }
    if output.len() > MAX_OUTPUT {
        return Err(SignatureError::TooLong(output.len()));
    }
    // Raw first: random signature bytes are never all base64 characters, so this is unambiguous.
    if let Some(signature) = binary(algorithm, len, output) {
        return Ok(signature);
    }
    let decoded = base64_text(output);
    if let Some(signature) = decoded.as_deref().and_then(|d| binary(algorithm, len, d)) {
        return Ok(signature);
    }
    // Something that looks like DER but is not a P-256 signature gets the precise reason.
    let bytes = decoded.as_deref().unwrap_or(output);
    if algorithm == Algorithm::Es256 && bytes.first() == Some(&der::SEQUENCE) {
        ecdsa_der_to_fixed(bytes)?;
    }
    let es256 = algorithm == Algorithm::Es256;
    Err(SignatureError::Unrecognized {
        algorithm,
        expected: len,
        got: output.len(),
        der: if es256 { ", a DER ECDSA-Sig-Value" } else { "" },
        either: if es256 { "either" } else { "them" },
    })
}

/// The signature in `bytes`: for ES256 a DER signature that parses completely, else the bytes
/// themselves if they have the right length.
fn binary(algorithm: Algorithm, len: usize, bytes: &[u8]) -> Option<Vec<u8>> {
    // DER before length: one DER signature in a few million is 64 bytes long, while r||s that
    // happens to parse as DER in full is far rarer still.
    if algorithm == Algorithm::Es256
        && bytes.first() == Some(&der::SEQUENCE)
        && let Ok(fixed) = ecdsa_der_to_fixed(bytes)
    {
        return Some(fixed.to_vec());
    }
    (bytes.len() == len).then(|| bytes.to_vec())
}

/// Decodes base64 or base64url text, padded or not, with any ASCII whitespace removed; `None`
/// if the bytes are not such text.
fn base64_text(output: &[u8]) -> Option<Vec<u8>> {
    let text: Vec<u8> = output
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return None;
    }
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false);
    let url_safe = text.iter().any(|&b| b == b'-' || b == b'_');
    let alphabet = if url_safe {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    GeneralPurpose::new(alphabet, lenient).decode(&text).ok()
}

/// Converts a DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` into the 64-byte
/// r||s of ES256.
pub fn ecdsa_der_to_fixed(der_bytes: &[u8]) -> Result<[u8; ES256_LEN], SignatureError> {
    let bad = |_| SignatureError::BadDer("not a SEQUENCE of two INTEGERs");
    let mut outer = der::Reader::new(der_bytes);
    let mut value = der::Reader::new(outer.expect(der::SEQUENCE).map_err(bad)?);
    let r = value.expect(der::INTEGER).map_err(bad)?;
    let s = value.expect(der::INTEGER).map_err(bad)?;
    if !outer.is_empty() || !value.is_empty() {
        return Err(SignatureError::BadDer("trailing bytes"));
    }
    if [r, s]
        .iter()
        .any(|i| i.first().is_none_or(|b| b & 0x80 != 0))
    {
        return Err(SignatureError::BadDer("negative or empty integer"));
    }
    ecdsa_fixed(r, s).ok_or(SignatureError::BadDer("an integer is longer than 32 bytes"))
}

/// r||s from the big-endian magnitudes of r and s (leading zeros allowed), each left-padded to
/// 32 bytes; `None` if either is too large for P-256.
pub fn ecdsa_fixed(r: &[u8], s: &[u8]) -> Option<[u8; ES256_LEN]> {
    let half = ES256_LEN / 2;
    let mut fixed = [0u8; ES256_LEN];
    for (i, integer) in [r, s].into_iter().enumerate() {
        let start = integer
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(integer.len());
        let magnitude = &integer[start..];
        if magnitude.len() > half {
            return None;
        }
        let end = (i + 1) * half;
        fixed[end - magnitude.len()..end].copy_from_slice(magnitude);
    }
    Some(fixed)
}

/// The raw public key ring verifies with (the EC point, the PKCS#1 RSA key, the Ed25519
/// bytes) from an SPKI, which must be of `algorithm`'s key type.
pub fn raw_public_key(algorithm: Algorithm, spki_der: &[u8]) -> Result<&[u8], SignatureError> {
    let bad = |_| SignatureError::BadPublicKey(algorithm);
    let mut outer = der::Reader::new(spki_der);
    let mut info = der::Reader::new(outer.expect(der::SEQUENCE).map_err(bad)?);
    let mut algorithm_id = der::Reader::new(info.expect(der::SEQUENCE).map_err(bad)?);
    let key_type = algorithm_id.expect(der::OID).map_err(bad)?;
    let matches = match algorithm {
        Algorithm::Es256 => {
            key_type == oid::EC_PUBLIC_KEY && algorithm_id.expect(der::OID) == Ok(oid::P256)
        }
        Algorithm::Rs256 => key_type == oid::RSA_ENCRYPTION,
        Algorithm::EdDsa => key_type == oid::ED25519,
    };
    let bits = info.expect(der::BIT_STRING).map_err(bad)?;
    match bits.split_first() {
        Some((0, raw)) if matches && !raw.is_empty() && outer.is_empty() => Ok(raw),
        _ => Err(SignatureError::BadPublicKey(algorithm)),
    }
}

/// Checks a JWS `signature` over `input` with the SPKI public key, using ring.
pub fn verify(
    algorithm: Algorithm,
    spki_der: &[u8],
    input: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let raw = raw_public_key(algorithm, spki_der)?;
    let verification: &dyn VerificationAlgorithm = match algorithm {
        Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::EdDsa => &signature::ED25519,
    };
    UnparsedPublicKey::new(verification, raw)
        .verify(input, signature)
        .map_err(|_| SignatureError::Invalid(algorithm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    #[cfg(unix)]
    use std::io::Write;
    #[cfg(unix)]
    use std::process::{Command, Stdio};

    const INPUT: &[u8] = b"eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJvcmcifQ";

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        pem::parse(std::fs::read(path).unwrap())
            .unwrap()
            .into_contents()
    }

    fn spki(prefix_hex: &str, raw: &[u8]) -> Vec<u8> {
        let mut spki: Vec<u8> = (0..prefix_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&prefix_hex[i..i + 2], 16).unwrap())
            .collect();
        spki.extend_from_slice(raw);
        spki
    }

    fn p256() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let spki = spki(
            "3059301306072a8648ce3d020106082a8648ce3d030107034200",
            pair.public_key().as_ref(),
        );
        (pair, spki)
    }

    /// The same signature as DER, written by an independent encoder (OpenSSL-style).
    fn to_der(fixed: &[u8]) -> Vec<u8> {
        let integer = |half: &[u8]| {
            let start = half.iter().position(|&b| b != 0).unwrap_or(half.len() - 1);
            let mut contents = half[start..].to_vec();
            if contents[0] & 0x80 != 0 {
                contents.insert(0, 0);
            }
            der::element(der::INTEGER, &contents)
        };
        der::sequence(&[&integer(&fixed[..32]), &integer(&fixed[32..])])
    }

    #[test]
    fn es256_accepts_raw_der_and_base64_of_each() {
        let (pair, spki) = p256();
        let fixed = pair.sign(&SystemRandom::new(), INPUT).unwrap();
        let fixed = fixed.as_ref();
        let der_sig = to_der(fixed);
        let shapes: Vec<Vec<u8>> = vec![
            fixed.to_vec(),
            der_sig.clone(),
            STANDARD.encode(fixed).into_bytes(),
            format!("{}\n", STANDARD.encode(&der_sig)).into_bytes(),
            URL_SAFE_NO_PAD.encode(fixed).into_bytes(),
            format!("{}\r\n", URL_SAFE_NO_PAD.encode(&der_sig)).into_bytes(),
        ];
        for shape in shapes {
            let decoded = decode(Algorithm::Es256, 64, &shape).unwrap();
            assert_eq!(decoded, fixed);
            verify(Algorithm::Es256, &spki, INPUT, &decoded).unwrap();
        }
    }

    // Runs the host's `openssl`, which a Windows build under Wine cannot start (Wine gives a Linux
    // program no process handle to wait on).
    #[cfg(unix)]
    #[test]
    fn der_from_openssl_converts_and_verifies() {
        // OpenSSL's own DER, the shape `openssl dgst -sha256 -sign` prints.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let status = Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
        let public = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(public.status.success());
        for _ in 0..8 {
            let mut child = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(INPUT).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success());
            let decoded = decode(Algorithm::Es256, 64, &output.stdout).unwrap();
            verify(Algorithm::Es256, &public.stdout, INPUT, &decoded).unwrap();
        }
    }

    #[test]
    fn short_r_and_s_are_left_padded() {
        let mut fixed = [0u8; 64];
        fixed[31] = 7;
        fixed[33] = 0x80;
        let der_sig = to_der(&fixed);
        // r is one byte; s is 31 bytes with its top bit set, so it gains a zero byte.
        assert_eq!(der_sig.len(), 2 + 3 + 2 + 32);
        assert_eq!(ecdsa_der_to_fixed(&der_sig).unwrap(), fixed);
        assert_eq!(ecdsa_fixed(&[0, 0, 7], &fixed[32..]), Some(fixed));
        assert_eq!(ecdsa_fixed(&[1; 33], &[1]), None);
    }

    #[test]
    fn ed25519_and_rsa_take_raw_and_base64() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let spki_ed = spki("302a300506032b6570032100", pair.public_key().as_ref());
        let signature = pair.sign(INPUT);
        for shape in [
            signature.as_ref().to_vec(),
            format!("{}\n", STANDARD.encode(signature)).into_bytes(),
        ] {
            let decoded = decode(Algorithm::EdDsa, 64, &shape).unwrap();
            verify(Algorithm::EdDsa, &spki_ed, INPUT, &decoded).unwrap();
        }

        let rsa = RsaKeyPair::from_pkcs8(&fixture("rsa2048.pkcs8.pem")).unwrap();
        let spki_rsa = fixture("rsa2048.pub.pem");
        let len = signature_len(Algorithm::Rs256, &spki_rsa).unwrap();
        assert_eq!(len, 256);
        let mut raw = vec![0; len];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, INPUT, &mut raw)
            .unwrap();
        // `base64` wraps at 76 columns, as a shell pipeline would print it.
        let wrapped: String = STANDARD
            .encode(&raw)
            .as_bytes()
            .chunks(76)
            .map(|line| format!("{}\n", std::str::from_utf8(line).unwrap()))
            .collect();
        for shape in [raw.clone(), wrapped.into_bytes()] {
            let decoded = decode(Algorithm::Rs256, len, &shape).unwrap();
            verify(Algorithm::Rs256, &spki_rsa, INPUT, &decoded).unwrap();
        }
        // A DER ECDSA value is no RSA signature.
        let der_sig = to_der(&[1; 64]);
        assert!(matches!(
            decode(Algorithm::Rs256, len, &der_sig),
            Err(SignatureError::Unrecognized { .. })
        ));
    }

    #[test]
    fn everything_else_is_refused_with_what_would_do() {
        let message = decode(Algorithm::Es256, 64, b"hello world\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("64 raw bytes") && message.contains("DER"),
            "{message}"
        );
        assert_eq!(
            decode(Algorithm::Es256, 64, b""),
            Err(SignatureError::Empty)
        );
        assert_eq!(
            decode(Algorithm::EdDsa, 64, &[b'A'; 20_000]),
            Err(SignatureError::TooLong(20_000))
        );
        // Base64 of the wrong length.
        let text = STANDARD.encode([5u8; 63]);
        assert!(decode(Algorithm::EdDsa, 64, text.as_bytes()).is_err());
        // DER with trailing bytes, a negative r, an over-long r.
        let mut trailing = to_der(&[1; 64]);
        trailing.push(0);
        assert!(decode(Algorithm::Es256, 64, &trailing).is_err());
        let negative = der::sequence(&[
            &der::element(der::INTEGER, &[0x80]),
            &der::element(der::INTEGER, &[1]),
        ]);
        assert!(matches!(
            ecdsa_der_to_fixed(&negative),
            Err(SignatureError::BadDer(_))
        ));
        let long = der::sequence(&[
            &der::element(der::INTEGER, &[1; 33]),
            &der::element(der::INTEGER, &[1]),
        ]);
        assert!(matches!(
            decode(Algorithm::Es256, 64, &long),
            Err(SignatureError::BadDer(_))
        ));
    }

    #[test]
    fn verify_refuses_wrong_keys_types_and_signatures() {
        let (pair, spki) = p256();
        let signature = pair.sign(&SystemRandom::new(), INPUT).unwrap();
        let signature = signature.as_ref();
        assert_eq!(
            verify(Algorithm::Es256, &spki, b"other input", signature),
            Err(SignatureError::Invalid(Algorithm::Es256))
        );
        let (_, other_spki) = p256();
        assert!(verify(Algorithm::Es256, &other_spki, INPUT, signature).is_err());
        assert_eq!(
            verify(Algorithm::EdDsa, &spki, INPUT, signature),
            Err(SignatureError::BadPublicKey(Algorithm::EdDsa))
        );
        assert_eq!(
            verify(Algorithm::Es256, &spki[..spki.len() - 1], INPUT, signature),
            Err(SignatureError::BadPublicKey(Algorithm::Es256))
        );
    }
}
