//! Token checks as Code Storage makes them, verified with ring directly (not with the helper's
//! signing code), so that each side checks the other.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::EmulatorError;
use crate::der::{self, Reader, oid};
use crate::server::Service;

/// The clock skew allowed for `iat`.
pub const SKEW_SECONDS: i64 = 60;

/// The longest lifetime a token may claim: a year, the SDK's default for remote URLs.
pub const MAX_LIFETIME_SECONDS: i64 = 365 * 24 * 60 * 60;

/// The ref-policy ops Code Storage knows; a token naming any other is refused rather than
/// half-enforced.
pub const KNOWN_OPS: &[&str] = &["no-force-push", "no-push", "verify-sig"];

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
    /// The SPKI bit string's contents: what ring verifies with (an uncompressed EC point, a
    /// PKCS#1 RSAPublicKey, or the 32 Ed25519 bytes).
    pub raw: Vec<u8>,
}

/// Why a public key file cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM at all.
    #[error("not a PEM public key: {0}")]
    Pem(String),
    /// PEM, but not a `PUBLIC KEY` block (a private key, a certificate...).
    #[error("expected a `PUBLIC KEY` block, found `{0}`")]
    Tag(String),
    /// The DER inside is not a SubjectPublicKeyInfo.
    #[error("malformed SubjectPublicKeyInfo")]
    Malformed,
    /// An EC key on another curve than P-256.
    #[error("EC keys must be on P-256 (prime256v1)")]
    Curve,
    /// Neither EC, RSA nor Ed25519.
    #[error("unsupported key type: use P-256, RSA or Ed25519")]
    Algorithm,
    /// An RSA modulus ring would refuse at the first token.
    #[error("RSA keys must have 2048 to 8192 bits; this one has {0}")]
    RsaSize(usize),
}

impl From<der::Malformed> for KeyError {
    fn from(_: der::Malformed) -> Self {
        Self::Malformed
    }
}

/// Parses a `PUBLIC KEY` (SPKI, RFC 5280) PEM block.
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyError> {
    let block = pem::parse(text).map_err(|e| KeyError::Pem(e.to_string()))?;
    if block.tag() != "PUBLIC KEY" {
        return Err(KeyError::Tag(block.tag().to_owned()));
    }
    parse_spki(block.contents())
}

/// Parses SubjectPublicKeyInfo DER: `SEQUENCE { SEQUENCE { algorithm, parameters }, BIT STRING }`.
pub fn parse_spki(spki_der: &[u8]) -> Result<PublicKey, KeyError> {
    let mut outer = Reader::new(spki_der);
    let mut spki = Reader::new(outer.expect(der::SEQUENCE)?);
    let mut algorithm = Reader::new(spki.expect(der::SEQUENCE)?);
    let algorithm_oid = algorithm.expect(der::OID)?;
    let kind = if algorithm_oid == oid::EC_PUBLIC_KEY {
        if algorithm.expect(der::OID)? != oid::PRIME256V1 {
            return Err(KeyError::Curve);
        }
        KeyKind::P256
    } else if algorithm_oid == oid::RSA_ENCRYPTION {
        // The parameters are NULL (RFC 8017); some writers leave them out.
        if algorithm.peek_tag().is_some() {
            algorithm.expect(der::NULL)?;
        }
        KeyKind::Rsa
    } else if algorithm_oid == oid::ED25519 {
        KeyKind::Ed25519
    } else {
        return Err(KeyError::Algorithm);
    };
    let bits = spki.expect(der::BIT_STRING)?;
    if !algorithm.is_empty() || !spki.is_empty() || !outer.is_empty() {
        return Err(KeyError::Malformed);
    }
    // The first byte of a BIT STRING counts unused bits; keys always use whole bytes.
    let Some((0, raw)) = bits.split_first() else {
        return Err(KeyError::Malformed);
    };
    match kind {
        KeyKind::P256 if raw.len() != 65 || raw[0] != 0x04 => return Err(KeyError::Malformed),
        KeyKind::Ed25519 if raw.len() != 32 => return Err(KeyError::Malformed),
        KeyKind::Rsa => {
            // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
            let mut outer = Reader::new(raw);
            let mut rsa = Reader::new(outer.expect(der::SEQUENCE)?);
            let modulus = rsa.expect(der::INTEGER)?;
            rsa.expect(der::INTEGER)?;
            if !rsa.is_empty() || !outer.is_empty() {
                return Err(KeyError::Malformed);
            }
            let size = der::unsigned_bits(modulus);
            if !(2048..=8192).contains(&size) {
                return Err(KeyError::RsaSize(size));
            }
        }
        _ => {}
    }
    Ok(PublicKey {
        kind,
        raw: raw.to_vec(),
    })
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

/// The claims the emulator reads (and logs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Vec<(String, Vec<String>)>>,
    /// Repository-wide policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Why a token is refused (answered with 401, so that git runs its helpers' `erase`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not three dot-separated parts.
    #[error("not a JWT")]
    NotJwt,
    /// A part is not unpadded base64url.
    #[error("bad base64 in the token")]
    Base64,
    /// The header is not a JSON object with a string `alg`.
    #[error("header is not JSON with an alg")]
    Header,
    /// An algorithm Code Storage does not accept (`none`, HS256, ES384...).
    #[error("alg {0} is not accepted")]
    Alg(String),
    /// The claims lack a field Code Storage requires, or have the wrong type.
    #[error("claims are not Code Storage's: {0}")]
    Claims(String),
    /// `iss` names no organisation given with --org.
    #[error("unknown organisation {0:?}")]
    UnknownOrg(String),
    /// `iss` is not the organisation that owns the host the request was sent to.
    #[error("token is issued by {token:?}, but this host belongs to {host:?}")]
    WrongOrg {
        /// The token's `iss`.
        token: String,
        /// The organisation owning the request's host.
        host: String,
    },
    /// The header has `crit`: extensions the emulator (like Code Storage) does not implement.
    #[error("header has crit; no JWT extensions are understood")]
    Crit,
    /// An op in `ops` or `refs` that Code Storage does not know.
    #[error("unknown op {0:?}; known ops are no-force-push, no-push, verify-sig")]
    UnknownOp(String),
    /// `exp` is not after `iat`.
    #[error("token expires ({exp}) before it is issued ({iat})")]
    Backwards {
        /// Issued at.
        iat: i64,
        /// Expiry.
        exp: i64,
    },
    /// `exp - iat` is more than a year.
    #[error("token lifetime {0}s is over a year")]
    TooLong(i64),
    /// The organisation has no key of the type `alg` names.
    #[error("alg {alg} matches no registered key of {org:?}")]
    AlgMismatch {
        /// The header's algorithm.
        alg: String,
        /// The issuer.
        org: String,
    },
    /// No registered key of the organisation verifies the signature.
    #[error("signature does not verify with any key of {0:?}")]
    Signature(String),
    /// `exp` is not in the future.
    #[error("token expired {0}s ago")]
    Expired(i64),
    /// `iat` is further ahead than the allowed skew.
    #[error("token issued {0}s in the future")]
    Future(i64),
    /// `repo` is not the repository the request is for.
    #[error("token is for repository {token:?}, not {path:?}")]
    WrongRepo {
        /// The token's `repo`.
        token: String,
        /// The repository ID from the request path.
        path: String,
    },
}

/// The claims a token carries, unchecked: only for telling in the log which token was refused.
pub fn read_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Checks a token's signature, issuer (it must be `owner`, the organisation owning the host),
/// lifetime, ops and repository; returns its claims or the reason it is refused.
pub fn verify(
    token: &str,
    keyring: &Keyring,
    owner: &str,
    repo: &str,
    now: i64,
) -> Result<Claims, Refusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::NotJwt);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Refusal::Base64);
    let header_json: serde_json::Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| Refusal::Header)?;
    let alg = header_json
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or(Refusal::Header)?;
    if !["ES256", "RS256", "EdDSA"].contains(&alg) {
        return Err(Refusal::Alg(alg.to_owned()));
    }
    // RFC 7515 4.1.11: a verifier that does not understand every listed extension must refuse.
    if header_json.get("crit").is_some() {
        return Err(Refusal::Crit);
    }
    // The claims are read before the signature is checked only to find the issuer's keys;
    // nothing else in them is trusted until a key has verified the signature.
    let claims: Claims =
        serde_json::from_slice(&decode(payload)?).map_err(|e| Refusal::Claims(e.to_string()))?;
    let keys = keyring
        .orgs
        .get(&claims.iss)
        .ok_or_else(|| Refusal::UnknownOrg(claims.iss.clone()))?;
    // A key registered by one organisation signs for that organisation's hosts only.
    if claims.iss != owner {
        return Err(Refusal::WrongOrg {
            token: claims.iss.clone(),
            host: owner.to_owned(),
        });
    }
    let signature = decode(signature)?;
    let message = format!("{header}.{payload}");
    // The key type fixes the algorithm: a token may not pick how its own signature is checked.
    let candidates: Vec<&PublicKey> = keys.iter().filter(|k| k.kind.alg() == alg).collect();
    if candidates.is_empty() {
        return Err(Refusal::AlgMismatch {
            alg: alg.to_owned(),
            org: claims.iss.clone(),
        });
    }
    let verified = candidates.iter().any(|key| {
        UnparsedPublicKey::new(key.kind.verification(), &key.raw)
            .verify(message.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err(Refusal::Signature(claims.iss.clone()));
    }
    check_lifetime(&claims, now)?;
    check_ops(&claims)?;
    if claims.repo != repo {
        return Err(Refusal::WrongRepo {
            token: claims.repo.clone(),
            path: repo.to_owned(),
        });
    }
    Ok(claims)
}

/// Refuses a token issued in the future, expiring before it is issued, living over a year, or
/// expired.
fn check_lifetime(claims: &Claims, now: i64) -> Result<(), Refusal> {
    if claims.iat > now.saturating_add(SKEW_SECONDS) {
        return Err(Refusal::Future(claims.iat - now));
    }
    if claims.exp <= claims.iat {
        return Err(Refusal::Backwards {
            iat: claims.iat,
            exp: claims.exp,
        });
    }
    if claims.exp - claims.iat > MAX_LIFETIME_SECONDS {
        return Err(Refusal::TooLong(claims.exp - claims.iat));
    }
    if claims.exp <= now {
        return Err(Refusal::Expired(now - claims.exp));
    }
    Ok(())
}

/// Refuses an op, repository-wide or in a `refs` entry, that is not in [`KNOWN_OPS`].
fn check_ops(claims: &Claims) -> Result<(), Refusal> {
    let repo_wide = claims.ops.iter().flatten();
    let per_ref = claims.refs.iter().flatten().flat_map(|(_, ops)| ops);
    match repo_wide
        .chain(per_ref)
        .find(|op| !KNOWN_OPS.contains(&op.as_str()))
    {
        Some(op) => Err(Refusal::UnknownOp(op.clone())),
        None => Ok(()),
    }
}

/// Whether `claims` allow `service`.
pub fn allows(claims: &Claims, service: Service) -> bool {
    let has = |scope: &str| claims.scopes.iter().any(|s| s == scope);
    if service.writes() {
        has("git:write")
    } else {
        has("git:read") || has("git:write")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

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

    /// DER of one element with a short or long length, for building SPKI by hand.
    fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    fn spki(algorithm: &[&[u8]], key: &[u8]) -> Vec<u8> {
        let mut bits = vec![0];
        bits.extend_from_slice(key);
        let mut body = element(der::SEQUENCE, &algorithm.concat());
        body.extend(element(der::BIT_STRING, &bits));
        element(der::SEQUENCE, &body)
    }

    fn pem_of(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.to_vec()))
    }

    fn p256() -> (EcdsaKeyPair, PublicKey) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // Through SPKI PEM, as a user registers it, not straight from ring's bytes.
        let der = spki(
            &[
                &element(der::OID, oid::EC_PUBLIC_KEY),
                &element(der::OID, oid::PRIME256V1),
            ],
            pair.public_key().as_ref(),
        );
        let public = parse_public_key(&pem_of(&der)).unwrap();
        assert_eq!(public.kind, KeyKind::P256);
        (pair, public)
    }

    fn ed25519() -> (Ed25519KeyPair, PublicKey) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let der = spki(
            &[&element(der::OID, oid::ED25519)],
            pair.public_key().as_ref(),
        );
        let public = parse_public_key(&pem_of(&der)).unwrap();
        assert_eq!(public.kind, KeyKind::Ed25519);
        (pair, public)
    }

    fn fixture(name: &str) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    fn es256(pair: &EcdsaKeyPair, claims: &str) -> String {
        jwt("ES256", claims, |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        })
    }

    fn keyring(org: &str, keys: &[&PublicKey]) -> Keyring {
        let mut keyring = Keyring::default();
        for key in keys {
            keyring.add(org, (*key).clone());
        }
        keyring
    }

    #[test]
    fn accepts_a_good_token_and_refuses_each_defect() {
        let (pair, public) = p256();
        let (other, _) = p256();
        let keyring = keyring("acme", &[&public]);
        let good = es256(&pair, &claims_json("team/x", NOW, NOW + 60));
        assert_eq!(
            verify(&good, &keyring, "acme", "team/x", NOW).unwrap().repo,
            "team/x"
        );
        // iat a little ahead (clock skew) is fine.
        let skewed = es256(&pair, &claims_json("team/x", NOW + 30, NOW + 90));
        assert!(verify(&skewed, &keyring, "acme", "team/x", NOW).is_ok());
        let refuse =
            |token: &str, repo: &str| verify(token, &keyring, "acme", repo, NOW).unwrap_err();
        assert_eq!(
            refuse(&good, "team/y"),
            Refusal::WrongRepo {
                token: "team/x".into(),
                path: "team/y".into()
            }
        );
        assert_eq!(
            refuse(
                &es256(&other, &claims_json("team/x", NOW, NOW + 60)),
                "team/x"
            ),
            Refusal::Signature("acme".into())
        );
        assert_eq!(
            refuse(
                &es256(&pair, &claims_json("team/x", NOW - 120, NOW)),
                "team/x"
            ),
            Refusal::Expired(0)
        );
        assert_eq!(
            refuse(
                &es256(&pair, &claims_json("team/x", NOW + 600, NOW + 900)),
                "team/x"
            ),
            Refusal::Future(600)
        );
        let unknown = es256(
            &pair,
            &claims_json("team/x", NOW, NOW + 60).replace("acme", "evil"),
        );
        assert_eq!(
            refuse(&unknown, "team/x"),
            Refusal::UnknownOrg("evil".into())
        );
    }

    #[test]
    fn refuses_a_wrong_algorithm_a_swapped_payload_and_what_is_no_jwt() {
        let (pair, public) = p256();
        let keyring = keyring("acme", &[&public]);
        let good = es256(&pair, &claims_json("team/x", NOW, NOW + 60));
        let refuse =
            |token: &str, repo: &str| verify(token, &keyring, "acme", repo, NOW).unwrap_err();
        let sign = |m: &[u8]| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let claims = claims_json("team/x", NOW, NOW + 60);
        assert!(matches!(
            refuse(&jwt("RS256", &claims, sign), "team/x"),
            Refusal::AlgMismatch { .. }
        ));
        assert!(matches!(
            refuse(&jwt("EdDSA", &claims, sign), "team/x"),
            Refusal::AlgMismatch { .. }
        ));
        assert_eq!(
            refuse(&jwt("ES384", &claims, sign), "team/x"),
            Refusal::Alg("ES384".into())
        );
        assert_eq!(
            refuse(&jwt("none", &claims, |_| Vec::new()), "team/x"),
            Refusal::Alg("none".into())
        );
        // A good signature over other claims: the payload was swapped.
        let (head, _) = good.split_once('.').unwrap();
        let swapped = format!(
            "{head}.{}.{}",
            URL_SAFE_NO_PAD.encode(claims_json("team/y", NOW, NOW + 60)),
            good.rsplit('.').next().unwrap()
        );
        assert_eq!(
            refuse(&swapped, "team/y"),
            Refusal::Signature("acme".into())
        );
        let no_sub = es256(
            &pair,
            r#"{"iss":"acme","repo":"team/x","scopes":[],"iat":1,"exp":2}"#,
        );
        assert!(matches!(refuse(&no_sub, "team/x"), Refusal::Claims(_)));
        assert_eq!(refuse("garbage", "team/x"), Refusal::NotJwt);
        assert_eq!(refuse("a.b!.c", "team/x"), Refusal::Base64);
    }

    #[test]
    fn refuses_what_code_storage_refuses_in_an_otherwise_good_token() {
        let (pair, public) = p256();
        let (beta_pair, beta_public) = p256();
        let mut keyring = keyring("acme", &[&public]);
        keyring.add("beta", beta_public);
        let refuse = |token: &str| verify(token, &keyring, "acme", "x", NOW).unwrap_err();
        // Beta's own key, beta's own iss, sent to acme's host.
        let beta = es256(
            &beta_pair,
            &claims_json("x", NOW, NOW + 60).replace("acme", "beta"),
        );
        assert!(verify(&beta, &keyring, "beta", "x", NOW).is_ok());
        assert_eq!(
            refuse(&beta),
            Refusal::WrongOrg {
                token: "beta".into(),
                host: "acme".into()
            }
        );
        let with = |extra: &str| {
            let claims = claims_json("x", NOW, NOW + 60);
            es256(&pair, &format!("{}{extra}}}", &claims[..claims.len() - 1]))
        };
        assert!(verify(&with(r#","ops":["no-push"]"#), &keyring, "acme", "x", NOW).is_ok());
        assert_eq!(
            refuse(&with(r#","ops":["no-rebase"]"#)),
            Refusal::UnknownOp("no-rebase".into())
        );
        assert_eq!(
            refuse(&with(
                r#","refs":[["main",["no-push"]],["*",["read-only"]]]"#
            )),
            Refusal::UnknownOp("read-only".into())
        );
        let crit = jwt("ES256", &claims_json("x", NOW, NOW + 60), |m| {
            pair.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        let (_, rest) = crit.split_once('.').unwrap();
        let crit = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT","crit":["b64"],"b64":false}"#)
        );
        assert_eq!(refuse(&crit), Refusal::Crit);
        let backwards = es256(&pair, &claims_json("x", NOW, NOW - 1));
        assert_eq!(
            refuse(&backwards),
            Refusal::Backwards {
                iat: NOW,
                exp: NOW - 1
            }
        );
        let year = MAX_LIFETIME_SECONDS;
        assert!(
            verify(
                &es256(&pair, &claims_json("x", NOW, NOW + year)),
                &keyring,
                "acme",
                "x",
                NOW
            )
            .is_ok()
        );
        assert_eq!(
            refuse(&es256(&pair, &claims_json("x", NOW, NOW + year + 1))),
            Refusal::TooLong(year + 1)
        );
    }

    #[test]
    fn eddsa_and_rs256_tokens_verify_with_their_keys() {
        let (ed_pair, ed_public) = ed25519();
        let rsa_public = parse_public_key(&fixture("rsa2048.pub.pem")).unwrap();
        let rsa_pkcs8 = pem::parse(fixture("rsa2048.pkcs8.pem")).unwrap();
        let rsa_pair = RsaKeyPair::from_pkcs8(rsa_pkcs8.contents()).unwrap();
        let keyring = keyring("acme", &[&ed_public, &rsa_public]);
        let claims = claims_json("x", NOW, NOW + 60);
        let eddsa = jwt("EdDSA", &claims, |m| ed_pair.sign(m).as_ref().to_vec());
        assert!(verify(&eddsa, &keyring, "acme", "x", NOW).is_ok());
        let rs256 = jwt("RS256", &claims, |m| {
            let mut signature = vec![0; rsa_pair.public().modulus_len()];
            rsa_pair
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    m,
                    &mut signature,
                )
                .unwrap();
            signature
        });
        assert!(verify(&rs256, &keyring, "acme", "x", NOW).is_ok());
        // An RSA signature relabelled EdDSA is checked with the Ed25519 key only, and fails.
        let (_, rest) = rs256.split_once('.').unwrap();
        let relabelled = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#)
        );
        assert_eq!(
            verify(&relabelled, &keyring, "acme", "x", NOW).unwrap_err(),
            Refusal::Signature("acme".into())
        );
    }

    #[test]
    fn any_registered_key_of_the_organisation_may_sign() {
        let (old, old_public) = p256();
        let (new, new_public) = p256();
        let (_, beta_public) = p256();
        let mut keyring = keyring("acme", &[&old_public, &new_public]);
        keyring.add("beta", beta_public);
        let claims = claims_json("x", NOW, NOW + 60);
        assert!(verify(&es256(&old, &claims), &keyring, "acme", "x", NOW).is_ok());
        assert!(verify(&es256(&new, &claims), &keyring, "acme", "x", NOW).is_ok());
        // Another organisation's key does not sign for acme.
        let beta_claims = claims.replace("acme", "beta");
        assert_eq!(
            verify(&es256(&old, &beta_claims), &keyring, "beta", "x", NOW).unwrap_err(),
            Refusal::Signature("beta".into())
        );
    }

    #[test]
    fn parses_spki_keys_written_by_openssl() {
        for (file, kind, length) in [
            ("p256.pub.pem", KeyKind::P256, 65),
            ("rsa2048.pub.pem", KeyKind::Rsa, 270),
            ("rsa4096.pub.pem", KeyKind::Rsa, 526),
            ("ed25519.openssl.pub.pem", KeyKind::Ed25519, 32),
        ] {
            let key = parse_public_key(&fixture(file)).unwrap();
            assert_eq!((key.kind, key.raw.len()), (kind, length), "{file}");
        }
        assert_eq!(
            parse_public_key(&fixture("p256.sec1.pem")).unwrap_err(),
            KeyError::Tag("EC PRIVATE KEY".into())
        );
        assert!(matches!(
            parse_public_key("not pem").unwrap_err(),
            KeyError::Pem(_)
        ));
    }

    #[test]
    fn refuses_other_curves_algorithms_small_rsa_and_junk() {
        let p384 = spki(
            &[
                &element(der::OID, oid::EC_PUBLIC_KEY),
                &element(der::OID, &[0x2b, 0x81, 0x04, 0x00, 0x22]),
            ],
            &[4; 97],
        );
        assert_eq!(parse_spki(&p384).unwrap_err(), KeyError::Curve);
        let ed448 = spki(&[&element(der::OID, &[0x2b, 0x65, 0x71])], &[0; 57]);
        assert_eq!(parse_spki(&ed448).unwrap_err(), KeyError::Algorithm);
        let mut modulus = vec![0x00, 0xc0];
        modulus.extend([0x11; 127]);
        let rsa_body = [
            element(der::INTEGER, &modulus),
            element(der::INTEGER, &[1, 0, 1]),
        ]
        .concat();
        let rsa1024 = spki(
            &[
                &element(der::OID, oid::RSA_ENCRYPTION),
                &element(der::NULL, &[]),
            ],
            &element(der::SEQUENCE, &rsa_body),
        );
        assert_eq!(parse_spki(&rsa1024).unwrap_err(), KeyError::RsaSize(1024));
        let short_point = spki(
            &[
                &element(der::OID, oid::EC_PUBLIC_KEY),
                &element(der::OID, oid::PRIME256V1),
            ],
            &[4; 33],
        );
        assert_eq!(parse_spki(&short_point).unwrap_err(), KeyError::Malformed);
        let mut trailing = spki(&[&element(der::OID, oid::ED25519)], &[7; 32]);
        assert!(parse_spki(&trailing).is_ok());
        trailing.push(0);
        assert_eq!(parse_spki(&trailing).unwrap_err(), KeyError::Malformed);
    }

    #[test]
    fn scopes_gate_services_and_basic_auth_yields_the_password() {
        let mut claims: Claims = serde_json::from_str(&claims_json("x", 0, 1)).unwrap();
        assert!(allows(&claims, Service::UploadPack));
        assert!(!allows(&claims, Service::ReceivePack));
        claims.scopes = vec!["git:write".into()];
        assert!(allows(&claims, Service::UploadPack) && allows(&claims, Service::ReceivePack));
        claims.scopes = vec!["repo:write".into(), "org:read".into()];
        assert!(!allows(&claims, Service::UploadPack) && !allows(&claims, Service::ReceivePack));
        assert_eq!(basic_password("Basic dDpzZWNyZXQ="), Some("secret".into()));
        assert_eq!(basic_password("basic dDpzZWNyZXQ="), Some("secret".into()));
        assert_eq!(basic_password("Bearer abc"), None);
        assert_eq!(basic_password("Basic !!!"), None);
    }
}
