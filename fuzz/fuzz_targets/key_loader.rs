//! The key loader: any bytes as a PEM file, and whatever loads is handed to ring to sign.
//! Mutated base64 rarely stays valid, so an input whose first byte is 0 to 5 is the DER inside a
//! PEM block of the tag it selects (`PRIVATE KEY`, `EC PRIVATE KEY`, ...): that is where the
//! hand-written DER reader works. `fuzz/seed.sh` seeds both kinds from tests/fixtures.
#![no_main]

use git_credential_codestorage::inspect;
use git_credential_codestorage::key::{self, KeySource};
use git_credential_codestorage::token::{self, Claims, Scope};
use libfuzzer_sys::fuzz_target;

const TAGS: [&str; 6] = [
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PARAMETERS",
    "PUBLIC KEY",
    "RSA PUBLIC KEY",
];

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((&selector, der)) if usize::from(selector) < TAGS.len() => {
            let tag = TAGS[usize::from(selector)];
            pem::encode(&pem::Pem::new(tag, der.to_vec())).into_bytes()
        }
        _ => data.to_vec(),
    };
    let source = KeySource::Env("FUZZ_KEY".into());
    let _ = inspect::public_key(&text, &source);
    if let Ok(key) = key::parse_pem(&text, &source) {
        let _ = key.public_key_pem(&source);
        let claims = Claims {
            iss: "acme".into(),
            sub: "fuzz".into(),
            repo: "x".into(),
            scopes: vec![Scope::GitRead],
            iat: 1_800_000_000,
            exp: 1_800_000_060,
            refs: None,
            ops: None,
        };
        let _ = token::sign(&claims, &key);
    }
});
