//! `inspect`: what a token says (header, claims, dates), decoded without trusting it, and with a
//! key, whether its signature holds.
//!
//! The input is untrusted: any text must end in a message, never a panic, and claims are printed
//! as JSON so that control characters in them cannot reach the terminal raw.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::clock::{describe_expiry, format_time};
use crate::key::{Algorithm, KeyError, KeySource, PublicKey};
use crate::token::{self, TokenError};
use crate::url::UrlError;

/// Why `inspect` could not say what a token says, or found its signature wrong.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Nothing to inspect.
    #[error("no token given; pass one as an argument or on stdin (`-`)")]
    NoToken,
    /// stdin is a terminal and no token was given.
    #[error("no token given: pass it as an argument or pipe it to stdin")]
    Terminal,
    /// stdin could not be read.
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    /// A URL without a token in it.
    #[error(
        "the URL holds no token; an SDK-minted remote URL looks like https://t:TOKEN@ORG.code.storage/REPO.git"
    )]
    NoTokenInUrl,
    /// A URL that is not one.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The text is not a JWT.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The key file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The key file holds no usable key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The token's `alg` is not the key's.
    #[error(
        "{name}: the token is signed with {alg:?} but the key is for {key}; signature NOT verified"
    )]
    AlgorithmMismatch {
        /// The key's name.
        name: String,
        /// The token's `alg`.
        alg: String,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// The signature is wrong.
    #[error(
        "{0}: the signature does NOT verify with this key: the token was signed by another key or altered"
    )]
    BadSignature(String),
}

/// `inspect [TOKEN | -] [--key KEY.pem]`: prints the report; an error if the signature is wrong.
pub fn run(token: Option<&str>, key: Option<&PathBuf>) -> Result<String, InspectError> {
    let text = match token {
        Some(token) if token != "-" => token.to_owned(),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(InspectError::Terminal);
            }
            let mut text = String::new();
            // A token is a few KiB; a megabyte is garbage, not a token.
            stdin
                .lock()
                .take(1024 * 1024)
                .read_to_string(&mut text)
                .map_err(InspectError::Stdin)?;
            text
        }
    };
    let token_text = extract_token(&text)?;
    let key = match key {
        Some(path) => {
            let text = std::fs::read(path).map_err(|source| InspectError::KeyFile {
                path: path.clone(),
                source,
            })?;
            let public = PublicKey::from_pem(&text, &KeySource::File(path.clone()))?;
            Some((public, path.display().to_string()))
        }
        None => None,
    };
    inspect(
        &token_text,
        key.as_ref().map(|(k, name)| (k, name.as_str())),
        crate::clock::now(),
    )
}

/// Whether the signature of `token` holds under `key`, checked through jsonwebtoken (the path
/// independent of the helper's signers). A token whose `alg` is not the key's does not verify
/// (no algorithm substitution).
pub fn verify(
    decoded: &token::Unverified,
    key: &PublicKey,
    name: &str,
) -> Result<(), InspectError> {
    if decoded.alg != key.algorithm().as_str() {
        return Err(InspectError::AlgorithmMismatch {
            name: name.to_owned(),
            alg: decoded.alg.clone(),
            key: key.algorithm(),
        });
    }
    crate::crypto::install();
    let (decoding, algorithm) = match key.algorithm() {
        Algorithm::Es256 => (
            DecodingKey::from_ec_der(key.raw()),
            jsonwebtoken::Algorithm::ES256,
        ),
        Algorithm::Rs256 => (
            DecodingKey::from_rsa_der(key.raw()),
            jsonwebtoken::Algorithm::RS256,
        ),
        Algorithm::EdDsa => (
            DecodingKey::from_ed_der(key.raw()),
            jsonwebtoken::Algorithm::EdDSA,
        ),
    };
    let signature = URL_SAFE_NO_PAD.encode(&decoded.signature);
    match jsonwebtoken::crypto::verify(
        &signature,
        decoded.signing_input.as_bytes(),
        &decoding,
        algorithm,
    ) {
        Ok(true) => Ok(()),
        _ => Err(InspectError::BadSignature(name.to_owned())),
    }
}

/// Takes the token out of what a user may paste: the token itself, `Bearer <token>`, or an
/// SDK-minted remote URL `https://t:<token>@host/repo.git`.
pub fn extract_token(input: &str) -> Result<String, InspectError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(InspectError::NoToken);
    }
    if text.contains("://") {
        let url = crate::url::parse(text)?;
        return url
            .password
            .map(|p| p.expose().clone())
            .ok_or(InspectError::NoTokenInUrl);
    }
    let text = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .unwrap_or(text)
        .trim();
    Ok(text.to_owned())
}

/// Renders what `token` says, as of `now`; with `key`, the signature's verdict too (an error if
/// it does not verify).
pub fn inspect(
    token_text: &str,
    key: Option<(&PublicKey, &str)>,
    now: i64,
) -> Result<String, InspectError> {
    let decoded = token::decode_unverified(token_text)?;
    let mut out = String::new();
    let _ = writeln!(out, "header:");
    write_fields(&mut out, &decoded.header_json, now);
    let _ = writeln!(out, "claims:");
    write_fields(&mut out, &decoded.claims_json, now);
    match &decoded.claims {
        Some(claims) => {
            if claims.iat > now + 60 {
                let _ = writeln!(
                    out,
                    "warning: issued in the future ({}); is this machine's clock right?",
                    format_time(claims.iat)
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "warning: these claims are not a Code Storage token's (iss, sub, repo, scopes, iat, exp)"
            );
        }
    }
    match key {
        Some((key, name)) => {
            verify(&decoded, key, name)?;
            let _ = writeln!(out, "signature: valid ({}, {name})", key.algorithm());
        }
        None => {
            let _ = writeln!(
                out,
                "signature: not checked; pass --key PUBLIC_OR_PRIVATE_KEY.pem to check it"
            );
        }
    }
    Ok(out)
}

/// One `  name: value` line per member of a JSON object, in the token's order; `iat`, `exp` and
/// `nbf` get their date.
fn write_fields(out: &mut String, json: &str, now: i64) {
    let Ok(fields) = ordered_fields(json) else {
        let _ = writeln!(out, "  {}", serde_json::Value::String(json.to_owned()));
        return;
    };
    for (name, value) in fields {
        let shown_name = if name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            name.clone()
        } else {
            serde_json::Value::String(name.clone()).to_string()
        };
        let date = match (name.as_str(), value.as_i64()) {
            ("iat" | "nbf", Some(t)) => format!("  ({})", format_time(t)),
            ("exp", Some(t)) => format!("  ({}, {})", format_time(t), describe_expiry(t, now)),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {shown_name}: {value}{date}");
    }
}

/// The members of a JSON object in the order written (serde_json's map sorts them).
fn ordered_fields(json: &str) -> Result<Vec<(String, serde_json::Value)>, serde_json::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::new();
            while let Some(entry) = map.next_entry()? {
                fields.push(entry);
            }
            Ok(fields)
        }
    }
    serde_json::Deserializer::from_str(json).deserialize_map(Fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{NewKey, generate, parse_pem};
    use crate::signer::Signer;
    use crate::signer::local::LocalSigner;
    use crate::token::{Claims, Scope};

    const NOW: i64 = 1_800_000_000;

    fn signed(kind: NewKey) -> (String, String, String) {
        let pem = generate(kind).unwrap();
        let source = KeySource::Env("K".into());
        let key = LocalSigner::new(
            parse_pem(pem.expose().as_bytes(), &source).unwrap(),
            &source,
        )
        .unwrap();
        let claims = Claims {
            iss: "acme".into(),
            sub: "ci".into(),
            repo: "team/x".into(),
            scopes: vec![Scope::GitRead],
            iat: NOW - 60,
            exp: NOW + 42 * 60,
            refs: None,
            ops: None,
        };
        let token = token::sign(&claims, &key).unwrap();
        (
            token.expose().clone(),
            pem.expose().clone(),
            key.public_key().to_pem(),
        )
    }

    fn key(text: &str) -> PublicKey {
        PublicKey::from_pem(text.as_bytes(), &KeySource::File("k.pem".into())).unwrap()
    }

    #[test]
    fn shows_claims_in_order_with_dates_and_expiry() {
        let (token, _, _) = signed(NewKey::P256);
        let out = inspect(&token, None, NOW).unwrap();
        assert!(out.starts_with("header:\n  alg: \"ES256\"\n  typ: \"JWT\"\nclaims:\n  iss: \"acme\"\n  sub: \"ci\"\n  repo: \"team/x\"\n"), "{out}");
        assert!(
            out.contains("  exp: 1800002520  (2027-01-15T08:42:00Z, expires in 42m)"),
            "{out}"
        );
        assert!(out.contains("signature: not checked"), "{out}");
        let later = inspect(&token, None, NOW + 45 * 60).unwrap();
        assert!(later.contains("expired 3m ago"), "{later}");
    }

    #[test]
    fn verifies_with_a_public_or_private_key_and_rejects_others() {
        for kind in [NewKey::P256, NewKey::Ed25519] {
            let (token, private, public) = signed(kind);
            for text in [&public, &private] {
                let out = inspect(&token, Some((&key(text), "k.pem")), NOW).unwrap();
                assert!(out.contains("signature: valid"), "{out}");
            }
            let (_, _, other) = signed(kind);
            let err = inspect(&token, Some((&key(&other), "k.pem")), NOW).unwrap_err();
            assert!(err.to_string().contains("does NOT verify"), "{err}");
            let (_, _, other_type) = signed(if kind == NewKey::P256 {
                NewKey::Ed25519
            } else {
                NewKey::P256
            });
            let err = inspect(&token, Some((&key(&other_type), "k.pem")), NOW).unwrap_err();
            assert!(err.to_string().contains("NOT verified"), "{err}");
        }
        let (token, _, public) = signed(NewKey::P256);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"iss":"acme","sub":"ci","repo":"team/all","scopes":["git:write"],"iat":1,"exp":2}"#);
        let forged = parts.join(".");
        assert!(inspect(&forged, Some((&key(&public), "k.pem")), NOW).is_err());
    }

    #[test]
    fn rsa_public_keys_from_fixtures_are_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let public = std::fs::read_to_string(dir.join("rsa2048.pub.pem")).unwrap();
        let private = std::fs::read_to_string(dir.join("rsa2048.pkcs8.pem")).unwrap();
        assert_eq!(key(&public), key(&private));
        assert_eq!(key(&public).algorithm(), Algorithm::Rs256);
        assert!(PublicKey::from_pem(b"nothing", &KeySource::File("k".into())).is_err());
    }

    #[test]
    fn garbage_is_an_error_and_control_characters_stay_escaped() {
        for bad in [
            "",
            "x",
            "a.b.c",
            "....",
            "\u{1b}[31m.e30.AA",
            "e30.e30.e30.e30",
        ] {
            assert!(inspect(bad, None, NOW).is_err(), "{bad:?}");
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"\u001b[2J","\u0007k":1}"#);
        let out = inspect(&format!("{header}.{claims}.AA"), None, NOW).unwrap();
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(out.contains("not a Code Storage token"), "{out}");
        let array = URL_SAFE_NO_PAD.encode("[1]");
        let out = inspect(&format!("{header}.{array}.AA"), None, NOW).unwrap();
        assert!(
            out.contains("  \"[1]\"") && out.contains("not a Code Storage token"),
            "{out}"
        );
    }

    #[test]
    fn tokens_are_found_in_urls_and_bearer_headers() {
        assert_eq!(extract_token("  a.b.c\n").unwrap(), "a.b.c");
        assert_eq!(extract_token("Bearer a.b.c").unwrap(), "a.b.c");
        assert_eq!(
            extract_token("https://t:a.b.c@acme.code.storage/x.git").unwrap(),
            "a.b.c"
        );
        assert!(extract_token("https://acme.code.storage/x.git").is_err());
        assert!(extract_token(" \n").is_err());
    }
}
