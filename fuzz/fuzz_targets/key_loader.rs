//! The key loader: any bytes as a PEM file, and whatever loads is handed to ring to sign.
#![no_main]

use git_credential_codestorage::key::{self, KeySource};
use git_credential_codestorage::token::{self, Claims, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = KeySource::Env("FUZZ_KEY".into());
    if let Ok(key) = key::parse_pem(data, &source) {
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
