//! Test keys and an independent token verifier: ring's own verification, not the helper's code.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair, UnparsedPublicKey};

/// A private key as PEM text, with what is needed to check its signatures.
#[derive(Clone)]
pub struct TestKey {
    /// The private key PEM, as a user would have it on disk.
    pub pem: String,
    /// The SPKI public key PEM, as registered with Code Storage.
    pub public_pem: String,
    /// The `alg` tokens signed with it must carry.
    pub alg: &'static str,
    /// The PKCS#8 DER of keys made in the test, for signing tokens by hand.
    pkcs8: Option<Vec<u8>>,
}

impl TestKey {
    /// A new EC P-256 key, made by ring in the test.
    pub fn p256() -> Self {
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &SystemRandom::new(),
        )
        .unwrap();
        // SPKI prefix for an uncompressed P-256 point (RFC 5480).
        let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        spki.extend_from_slice(pair.public_key().as_ref());
        Self {
            pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", &spki),
            alg: "ES256",
            pkcs8: Some(pkcs8.as_ref().to_vec()),
        }
    }

    /// A new Ed25519 key, made by ring in the test.
    pub fn ed25519() -> Self {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut spki = hex("302a300506032b6570032100");
        spki.extend_from_slice(pair.public_key().as_ref());
        Self {
            pem: pem("PRIVATE KEY", pkcs8.as_ref()),
            public_pem: pem("PUBLIC KEY", &spki),
            alg: "EdDSA",
            pkcs8: Some(pkcs8.as_ref().to_vec()),
        }
    }

    /// A key from tests/fixtures (made once with OpenSSL: ring cannot make RSA keys), with its
    /// public half from `public`.
    pub fn fixture(private: &str, public: &str, alg: &'static str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Self {
            pem: std::fs::read_to_string(dir.join(private)).unwrap(),
            public_pem: std::fs::read_to_string(dir.join(public)).unwrap(),
            alg,
            pkcs8: None,
        }
    }

    /// A key from PEM texts made elsewhere (by `keygen`, say); it can verify but not sign.
    pub fn from_pems(pem: String, public_pem: String, alg: &'static str) -> Self {
        Self {
            pem,
            public_pem,
            alg,
            pkcs8: None,
        }
    }

    /// Signs `claims_json` by hand with ring, as a token from anywhere but the helper.
    pub fn sign(&self, claims_json: &str) -> String {
        let pkcs8 = self
            .pkcs8
            .as_deref()
            .expect("only keys made in the test can sign");
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{}","typ":"JWT"}}"#, self.alg)),
            URL_SAFE_NO_PAD.encode(claims_json)
        );
        let signature = match self.alg {
            "ES256" => signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                pkcs8,
                &SystemRandom::new(),
            )
            .unwrap()
            .sign(&SystemRandom::new(), message.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
            _ => signature::Ed25519KeyPair::from_pkcs8(pkcs8)
                .unwrap()
                .sign(message.as_bytes())
                .as_ref()
                .to_vec(),
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The raw public key ring verifies with: the contents of the SPKI bit string.
    pub fn public_raw(&self) -> Vec<u8> {
        let der = pem_body(&self.public_pem);
        // SPKI ::= SEQUENCE { AlgorithmIdentifier, BIT STRING }: skip the header and algorithm.
        let (_, spki) = tlv(&der);
        let (algorithm_len, _) = tlv(spki);
        let (_, bits) = tlv(&spki[algorithm_len..]);
        assert_eq!(bits[0], 0, "a key's bit string has no unused bits");
        bits[1..].to_vec()
    }
}

/// What a verified token says.
#[derive(Debug)]
pub struct Verified {
    /// The header JSON, verbatim.
    pub header: String,
    /// The claims JSON, verbatim.
    pub claims_json: String,
    /// The claims, parsed.
    pub claims: serde_json::Value,
    /// The claim names in the order the token carries them.
    pub claim_order: Vec<String>,
}

/// Verifies `token` with ring against `key`'s public half; panics (failing the test) otherwise.
pub fn verify(token: &str, key: &TestKey) -> Verified {
    try_verify(token, key).unwrap_or_else(|e| panic!("token does not verify: {e}"))
}

/// Verifies `token` with ring against `key`'s public half.
pub fn try_verify(token: &str, key: &TestKey) -> Result<Verified, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("{} parts, not 3", parts.len()));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
    let header_json = String::from_utf8(decode(header)?).map_err(|e| e.to_string())?;
    let claims_json = String::from_utf8(decode(claims)?).map_err(|e| e.to_string())?;
    let expected_header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, key.alg);
    if header_json != expected_header {
        return Err(format!("header {header_json}, expected {expected_header}"));
    }
    let algorithm: &dyn signature::VerificationAlgorithm = match key.alg {
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "EdDSA" => &signature::ED25519,
        other => return Err(format!("unexpected alg {other}")),
    };
    UnparsedPublicKey::new(algorithm, key.public_raw())
        .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
        .map_err(|_| "bad signature".to_owned())?;
    Ok(Verified {
        header: header_json,
        claim_order: key_order(&claims_json),
        claims: serde_json::from_str(&claims_json).map_err(|e| e.to_string())?,
        claims_json,
    })
}

/// The top-level keys of a JSON object, in their order (serde_json's Value sorts them).
fn key_order(json: &str) -> Vec<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    serde_json::Deserializer::from_str(json)
        .deserialize_map(Keys)
        .unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn pem_body(text: &str) -> Vec<u8> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// Reads one DER element: (its total length, its contents).
fn tlv(der: &[u8]) -> (usize, &[u8]) {
    let (len, header) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let count = usize::from(n & 0x7f);
            let len = der[2..2 + count]
                .iter()
                .fold(0, |acc, &b| (acc << 8) | usize::from(b));
            (len, 2 + count)
        }
    };
    (header + len, &der[header..header + len])
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The current unix time, as tokens count it.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
