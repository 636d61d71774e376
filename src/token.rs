//! Code Storage tokens: the claims, their exact order, signing, and reading one back.
//!
//! The official SDKs emit the header as `{"alg":..,"typ":"JWT"}` and the claims as `iss`, `sub`,
//! `repo`, `scopes`, `iat`, `exp`, then `refs` and `ops` when set. We produce the same bytes in
//! the same order, so a token from this helper is indistinguishable from an SDK's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::signer::{SignError, Signer};

/// A permission a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Clone, fetch, pull.
    #[serde(rename = "git:read")]
    GitRead,
    /// Push (includes read).
    #[serde(rename = "git:write")]
    GitWrite,
    /// Create repositories through the API.
    #[serde(rename = "repo:write")]
    RepoWrite,
    /// List the organisation's repositories through the API.
    #[serde(rename = "org:read")]
    OrgRead,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 4] = [
        Self::GitRead,
        Self::GitWrite,
        Self::RepoWrite,
        Self::OrgRead,
    ];

    /// The scope as it appears in a token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitRead => "git:read",
            Self::GitWrite => "git:write",
            Self::RepoWrite => "repo:write",
            Self::OrgRead => "org:read",
        }
    }

    /// Parses a scope name, as in `CODESTORAGE_SCOPES`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ref policy operation Code Storage enforces on push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// No update of a matching ref.
    #[serde(rename = "no-push")]
    NoPush,
    /// No non-fast-forward update or deletion of a matching ref.
    #[serde(rename = "no-force-push")]
    NoForcePush,
    /// Every pushed commit must be signed by a registered signing key.
    #[serde(rename = "verify-sig")]
    VerifySig,
}

/// One `refs` entry: the ops that apply to refs matching `pattern` (first match wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, Vec<Op>)", into = "(String, Vec<Op>)")]
pub struct RefRule {
    /// A ref name or glob, e.g. `refs/heads/main`.
    pub pattern: String,
    /// What is enforced on matching refs.
    pub ops: Vec<Op>,
}

impl From<(String, Vec<Op>)> for RefRule {
    fn from((pattern, ops): (String, Vec<Op>)) -> Self {
        Self { pattern, ops }
    }
}

impl From<RefRule> for (String, Vec<Op>) {
    fn from(rule: RefRule) -> Self {
        (rule.pattern, rule.ops)
    }
}

/// The literal `repo` claim of an organisation-wide token, as the SDK signs for `org:read`.
pub const ORG_WIDE_REPO: &str = "org";

/// The claims of a Code Storage token, serialized in the SDK's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The organisation.
    pub iss: String,
    /// Who is acting, for Code Storage's logs.
    pub sub: String,
    /// The repository ID, or `org` for an organisation-wide token.
    pub repo: String,
    /// What the token allows.
    pub scopes: Vec<Scope>,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Per-ref policies, first match wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs: Option<Vec<RefRule>>,
    /// Repository-wide policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<Vec<Op>>,
}

/// The earliest clock we believe: a machine before this has lost its time.
pub const EARLIEST_PLAUSIBLE_CLOCK: i64 = 1_577_836_800; // 2020-01-01T00:00:00Z

/// Why a token could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The system clock is before 2020.
    #[error(
        "the system clock reads {0} (before 2020); set the clock, tokens signed now would be refused"
    )]
    ClockBefore2020(i64),
    /// `iat + ttl` does not fit.
    #[error("a ttl of {0}s overflows the expiry time; use a ttl of at most a year")]
    Overflow(u64),
    /// The signer gave no signature.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The claims could not be written as JSON.
    #[error("the claims could not be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The text is not a JWT.
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
}

/// Signs `claims` with `signer`, returning the compact JWT.
pub fn sign(claims: &Claims, signer: &dyn Signer) -> Result<Secret<String>, TokenError> {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, signer.algorithm().as_str());
    let payload = serde_json::to_vec(claims)?;
    let mut token = String::with_capacity(512);
    URL_SAFE_NO_PAD.encode_string(header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = signer.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(Secret::new(token))
}

/// `iat` and `exp` for a token issued at `now` that lives `ttl_seconds`.
pub fn lifetime(now: i64, ttl_seconds: u64) -> Result<(i64, i64), TokenError> {
    if now < EARLIEST_PLAUSIBLE_CLOCK {
        return Err(TokenError::ClockBefore2020(now));
    }
    let exp = i64::try_from(ttl_seconds)
        .ok()
        .and_then(|ttl| now.checked_add(ttl))
        .ok_or(TokenError::Overflow(ttl_seconds))?;
    Ok((now, exp))
}

/// The expiry told to git: a little before `exp`, so git never hands out a token the server is
/// about to refuse (git has no skew margin of its own). A quarter of the lifetime, at most 30 s.
pub fn reported_expiry(iat: i64, exp: i64) -> i64 {
    exp - ((exp - iat) / 4).min(30)
}

/// A token taken apart without checking its signature.
#[derive(Clone)]
pub struct Unverified {
    /// The header JSON as the token carries it.
    pub header_json: String,
    /// The claims JSON as the token carries it.
    pub claims_json: String,
    /// The header's `alg`.
    pub alg: String,
    /// The claims, when they have Code Storage's shape.
    pub claims: Option<Claims>,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: String,
    /// The raw signature.
    pub signature: Vec<u8>,
}

// With its signature, the signing input is the token itself, which may still be live: `{:?}`
// shows what it says, never enough to use it.
impl fmt::Debug for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified")
            .field("header_json", &self.header_json)
            .field("claims_json", &self.claims_json)
            .field("alg", &self.alg)
            .field("claims", &self.claims)
            .field("signing_input", &"<redacted>")
            .field("signature", &"<redacted>")
            .finish()
    }
}

/// Decodes a compact JWT without trusting it.
pub fn decode_unverified(token: &str) -> Result<Unverified, TokenError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let text = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(TokenError::Malformed(
                "a part is not base64url-encoded UTF-8",
            ))
    };
    let header_json = text(header)?;
    let claims_json = text(claims)?;
    let header_value: serde_json::Value = serde_json::from_str(&header_json)
        .map_err(|_| TokenError::Malformed("the header is not JSON"))?;
    let alg = header_value
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or(TokenError::Malformed("the header has no alg"))?
        .to_owned();
    serde_json::from_str::<serde_json::Value>(&claims_json)
        .map_err(|_| TokenError::Malformed("the claims are not JSON"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    Ok(Unverified {
        claims: serde_json::from_str(&claims_json).ok(),
        header_json,
        claims_json,
        alg,
        signing_input: format!("{header}.{claims}"),
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeySource, NewKey, generate, parse_pem};
    use crate::signer::local::LocalSigner;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, KeyPair, UnparsedPublicKey};

    /// A fresh key: its PKCS#8 DER (for ring, independently of the helper) and the helper's signer.
    fn fresh(kind: NewKey) -> (Vec<u8>, LocalSigner) {
        let pem = generate(kind).unwrap();
        let der = ::pem::parse(pem.expose()).unwrap().into_contents();
        let source = KeySource::Env("K".into());
        let key = parse_pem(pem.expose().as_bytes(), &source).unwrap();
        (der, LocalSigner::new(key, &source).unwrap())
    }

    fn claims() -> Claims {
        Claims {
            iss: "acme".into(),
            sub: "ci@runner".into(),
            repo: "team/project-alpha".into(),
            scopes: vec![Scope::GitRead, Scope::GitWrite],
            iat: 1_700_000_000,
            exp: 1_700_003_600,
            refs: None,
            ops: None,
        }
    }

    #[test]
    fn claims_serialize_in_the_sdk_order_with_optional_policies_last() {
        let mut c = claims();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"iss":"acme","sub":"ci@runner","repo":"team/project-alpha","scopes":["git:read","git:write"],"iat":1700000000,"exp":1700003600}"#
        );
        c.refs = Some(vec![RefRule {
            pattern: "refs/heads/main".into(),
            ops: vec![Op::NoPush],
        }]);
        c.ops = Some(vec![Op::NoForcePush]);
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.ends_with(r#""exp":1700003600,"refs":[["refs/heads/main",["no-push"]]],"ops":["no-force-push"]}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Claims>(&json).unwrap(), c);
    }

    #[test]
    fn es256_token_verifies_with_ring_directly() {
        let (der, key) = fresh(NewKey::P256);
        let token = sign(&claims(), &key).unwrap();
        let decoded = decode_unverified(token.expose()).unwrap();
        assert_eq!(decoded.header_json, r#"{"alg":"ES256","typ":"JWT"}"#);
        assert_eq!(decoded.claims, Some(claims()));
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
            .verify(decoded.signing_input.as_bytes(), &decoded.signature)
            .unwrap();
    }

    #[test]
    fn eddsa_token_verifies_and_a_changed_claim_does_not() {
        let (der, key) = fresh(NewKey::Ed25519);
        let token = sign(&claims(), &key).unwrap();
        let decoded = decode_unverified(token.expose()).unwrap();
        assert_eq!(decoded.alg, "EdDSA");
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
        let public = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
        public
            .verify(decoded.signing_input.as_bytes(), &decoded.signature)
            .unwrap();
        let mut forged = claims();
        forged.repo = "team/other".into();
        let forged_input = format!(
            "{}.{}",
            decoded.signing_input.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert!(
            public
                .verify(forged_input.as_bytes(), &decoded.signature)
                .is_err()
        );
    }

    #[test]
    fn lifetime_refuses_a_pre_2020_clock_and_overflow() {
        assert_eq!(
            lifetime(1_700_000_000, 60).unwrap(),
            (1_700_000_000, 1_700_000_060)
        );
        assert!(matches!(
            lifetime(0, 60),
            Err(TokenError::ClockBefore2020(0))
        ));
        assert!(matches!(
            lifetime(1_700_000_000, u64::MAX),
            Err(TokenError::Overflow(_))
        ));
        assert!(matches!(
            lifetime(i64::MAX - 5, 60),
            Err(TokenError::Overflow(60))
        ));
    }

    #[test]
    fn reported_expiry_is_early_but_never_before_issue() {
        assert_eq!(reported_expiry(1000, 4600), 4570);
        assert_eq!(reported_expiry(1000, 1040), 1030);
        assert_eq!(reported_expiry(1000, 1001), 1001);
    }

    #[test]
    fn decode_refuses_what_is_not_a_jwt() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.AA",
            "e30.!!.AA",
            "bm90IGpzb24.e30.AA",
        ] {
            assert!(decode_unverified(bad).is_err(), "{bad}");
        }
    }
}
