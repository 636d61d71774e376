//! Token checks as Code Storage makes them, verified with ring directly (not with the helper's
//! signing code), so that each side checks the other.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

use super::EmulatorError;
use crate::der::{self, Reader, oid};

/// The clock skew allowed for `iat`.
pub const SKEW_SECONDS: i64 = 60;

/// The kind of a registered public key, which fixes the `alg` its tokens must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC P-256: ES256.
    P256,
    /// RSA: RS256.
    Rsa,
    /// Ed25519: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// The JWT `alg` for this kind of key.
    pub fn alg(self) -> &'static str {
        match self {
            Self::P256 => "ES256",
            Self::Rsa => "RS256",
            Self::Ed25519 => "EdDSA",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Ed25519 => &signature::ED25519,
        }
    }
}

/// A registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its type.
    pub kind: KeyKind,
    /// The SPKI bit string's contents: what ring verifies with.
    pub raw: Vec<u8>,
}

/// Parses a `PUBLIC KEY` (SPKI) PEM block.
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let block = pem::parse(text).map_err(|e| format!("not a PEM public key: {e}"))?;
    if block.tag() != "PUBLIC KEY" {
        return Err(format!(
            "expected a `PUBLIC KEY` block, found `{}`",
            block.tag()
        ));
    }
    let bad = |_| "malformed SubjectPublicKeyInfo".to_owned();
    let mut outer = Reader::new(block.contents());
    let mut spki = Reader::new(outer.expect(der::SEQUENCE).map_err(bad)?);
    let mut algorithm = Reader::new(spki.expect(der::SEQUENCE).map_err(bad)?);
    let kind = match algorithm.expect(der::OID).map_err(bad)? {
        o if o == oid::EC_PUBLIC_KEY => match algorithm.expect(der::OID).map_err(bad)? {
            c if c == oid::P256 => KeyKind::P256,
            _ => return Err("EC keys must be on P-256".into()),
        },
        o if o == oid::RSA_ENCRYPTION => KeyKind::Rsa,
        o if o == oid::ED25519 => KeyKind::Ed25519,
        _ => return Err("unsupported key type: use P-256, RSA or Ed25519".into()),
    };
    let bits = spki.expect(der::BIT_STRING).map_err(bad)?;
    match bits.split_first() {
        Some((0, raw)) => Ok(PublicKey {
            kind,
            raw: raw.to_vec(),
        }),
        _ => Err("malformed public key bit string".into()),
    }
}

/// Organisations and their registered keys (several per organisation, as for rotation).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    orgs: HashMap<String, Vec<PublicKey>>,
}

impl Keyring {
    /// Registers the key in `path` for `org`.
    pub fn add_file(&mut self, org: &str, path: &Path) -> Result<(), EmulatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EmulatorError::Usage(format!("--org {org}={}: {e}", path.display())))?;
        let key = parse_public_key(&text)
            .map_err(|e| EmulatorError::Usage(format!("--org {org}={}: {e}", path.display())))?;
        self.add(org, key);
        Ok(())
    }

    /// Registers `key` for `org`.
    pub fn add(&mut self, org: &str, key: PublicKey) {
        self.orgs.entry(org.to_owned()).or_default().push(key);
    }
}

/// The claims the emulator reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Organisation.
    pub iss: String,
    /// Agent identity.
    pub sub: String,
    /// Repository ID.
    pub repo: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Per-ref policies: `[pattern, [ops]]`, first match wins.
    #[serde(default)]
    pub refs: Option<Vec<(String, Vec<String>)>>,
    /// Repository-wide policies.
    #[serde(default)]
    pub ops: Option<Vec<String>>,
}

/// The password of a `Basic` Authorization header.
pub fn basic_password(header: &str) -> Option<String> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

/// Checks a token's signature, issuer, lifetime and repository; returns its claims or the reason
/// it is refused.
pub fn verify(token: &str, keyring: &Keyring, repo: &str, now: i64) -> Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "bad base64".to_owned())
    };
    let header_json: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "header is not JSON".to_owned())?;
    let alg = header_json
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or("header has no alg")?;
    if !["ES256", "RS256", "EdDSA"].contains(&alg) {
        return Err(format!("alg {alg} is not accepted"));
    }
    let claims: Claims = serde_json::from_slice(&decode(payload)?)
        .map_err(|e| format!("claims are not Code Storage's: {e}"))?;
    let keys = keyring
        .orgs
        .get(&claims.iss)
        .ok_or_else(|| format!("unknown organisation {:?}", claims.iss))?;
    let signature = decode(signature)?;
    let message = format!("{header}.{payload}");
    let candidates: Vec<&PublicKey> = keys.iter().filter(|k| k.kind.alg() == alg).collect();
    if candidates.is_empty() {
        return Err(format!(
            "alg {alg} matches no registered key of {:?}",
            claims.iss
        ));
    }
    let verified = candidates.iter().any(|key| {
        UnparsedPublicKey::new(key.kind.verification(), &key.raw)
            .verify(message.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err(format!(
            "signature does not verify with any key of {:?}",
            claims.iss
        ));
    }
    if claims.exp <= now {
        return Err(format!("token expired {}s ago", now - claims.exp));
    }
    if claims.iat > now + SKEW_SECONDS {
        return Err("token issued in the future".into());
    }
    if claims.repo != repo {
        return Err(format!(
            "token is for repository {:?}, not {repo:?}",
            claims.repo
        ));
    }
    Ok(claims)
}

/// Whether `claims` allow `service` (`git-upload-pack` or `git-receive-pack`).
pub fn allows(claims: &Claims, service: &str) -> bool {
    let has = |scope: &str| claims.scopes.iter().any(|s| s == scope);
    match service {
        "git-upload-pack" => has("git:read") || has("git:write"),
        "git-receive-pack" => has("git:write"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    const NOW: i64 = 1_800_000_000;

    fn claims_json(repo: &str, iat: i64, exp: i64) -> String {
        format!(
            r#"{{"iss":"acme","sub":"t","repo":"{repo}","scopes":["git:read"],"iat":{iat},"exp":{exp}}}"#
        )
    }

    fn jwt(alg: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn p256() -> (EcdsaKeyPair, PublicKey) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let public = PublicKey {
            kind: KeyKind::P256,
            raw: pair.public_key().as_ref().to_vec(),
        };
        (pair, public)
    }

    fn es256(pair: &EcdsaKeyPair, claims: &str) -> String {
        jwt("ES256", claims, |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }

    #[test]
    fn accepts_a_good_token_and_refuses_each_defect() {
        let (pair, public) = p256();
        let (other, _) = p256();
        let mut keyring = Keyring::default();
        keyring.add("acme", public);
        let good = es256(&pair, &claims_json("team/x", NOW, NOW + 60));
        assert_eq!(
            verify(&good, &keyring, "team/x", NOW).unwrap().repo,
            "team/x"
        );
        let refuse = |token: &str, repo: &str, reason: &str| {
            let err = verify(token, &keyring, repo, NOW).unwrap_err();
            assert!(err.contains(reason), "{err}");
        };
        refuse(&good, "team/y", "not \"team/y\"");
        refuse(
            &es256(&other, &claims_json("team/x", NOW, NOW + 60)),
            "team/x",
            "does not verify",
        );
        refuse(
            &es256(&pair, &claims_json("team/x", NOW - 120, NOW - 1)),
            "team/x",
            "expired",
        );
        refuse(
            &es256(&pair, &claims_json("team/x", NOW + 600, NOW + 900)),
            "team/x",
            "future",
        );
        let unknown = es256(
            &pair,
            &claims_json("team/x", NOW, NOW + 60).replace("acme", "evil"),
        );
        refuse(&unknown, "team/x", "unknown organisation");
        let wrong_alg = jwt("RS256", &claims_json("team/x", NOW, NOW + 60), |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        refuse(&wrong_alg, "team/x", "matches no registered key");
        let none = jwt("none", &claims_json("team/x", NOW, NOW + 60), |_| {
            Vec::new()
        });
        refuse(&none, "team/x", "not accepted");
        refuse("garbage", "team/x", "not a JWT");
    }

    #[test]
    fn any_registered_key_of_the_organisation_may_sign() {
        let (old, old_public) = p256();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let new = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut keyring = Keyring::default();
        keyring.add("acme", old_public);
        keyring.add(
            "acme",
            PublicKey {
                kind: KeyKind::Ed25519,
                raw: new.public_key().as_ref().to_vec(),
            },
        );
        let claims = claims_json("x", NOW, NOW + 60);
        assert!(verify(&es256(&old, &claims), &keyring, "x", NOW).is_ok());
        let eddsa = jwt("EdDSA", &claims, |m| new.sign(m).as_ref().to_vec());
        assert!(verify(&eddsa, &keyring, "x", NOW).is_ok());
    }

    #[test]
    fn parses_spki_keys_written_by_openssl() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (file, kind) in [
            ("p256.pub.pem", KeyKind::P256),
            ("rsa2048.pub.pem", KeyKind::Rsa),
            ("ed25519.openssl.pub.pem", KeyKind::Ed25519),
        ] {
            let text = std::fs::read_to_string(fixtures.join(file)).unwrap();
            assert_eq!(parse_public_key(&text).unwrap().kind, kind, "{file}");
        }
        let private = std::fs::read_to_string(fixtures.join("p256.sec1.pem")).unwrap();
        assert!(parse_public_key(&private).is_err());
    }

    #[test]
    fn scopes_gate_services_and_basic_auth_yields_the_password() {
        let mut claims: Claims = serde_json::from_str(&claims_json("x", 0, 1)).unwrap();
        assert!(allows(&claims, "git-upload-pack"));
        assert!(!allows(&claims, "git-receive-pack"));
        claims.scopes = vec!["git:write".into()];
        assert!(allows(&claims, "git-upload-pack") && allows(&claims, "git-receive-pack"));
        assert_eq!(basic_password("Basic dDpzZWNyZXQ="), Some("secret".into()));
        assert_eq!(basic_password("Bearer abc"), None);
    }
}
