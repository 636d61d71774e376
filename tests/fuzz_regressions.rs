//! Inputs the fuzzers (fuzz/) or the property tests found, or that sit at the edge of what the
//! parsers accept, replayed on every `cargo test` through the same checks as the fuzz targets.
//! When a fuzzer finds a crash, copy `fuzz/artifacts/TARGET/crash-*` to
//! `tests/fuzz-regressions/TARGET/` under a name that says what it is (see docs/fuzzing.md).

use std::path::{Path, PathBuf};

use git_credential_codestorage::commands::inspect;
use git_credential_codestorage::config::{self, Config, ConfigError};
use git_credential_codestorage::credential;
use git_credential_codestorage::env::MapEnv;
use git_credential_codestorage::host::Host;
use git_credential_codestorage::key::{self, KeySource, NewKey};
use git_credential_codestorage::log::Log;
use git_credential_codestorage::protocol::{self, Response};
use git_credential_codestorage::resolve;
use git_credential_codestorage::signer::local::LocalSigner;
use git_credential_codestorage::token::{self, Claims, Scope};

const NOW: i64 = 1_800_000_000;

/// The files kept for `target`, in name order.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no inputs in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

#[test]
fn request_parser() {
    for (path, data) in inputs("request_parser") {
        if let Ok(request) = protocol::parse(&data) {
            let mut written = Vec::new();
            request.write_to(&mut written).unwrap();
            assert_eq!(protocol::parse(&written).unwrap(), request, "{path:?}");
        }
    }
}

#[test]
fn request_handler() {
    const CONFIG: &str = "[org.acme]\nkey_env = \"ACME_KEY\"\nhosts = [\"acme.code.storage\", \"git.acme.dev:8443\", \"localhost:8080\"]\nallow_http = true\n\n[[org.acme.repo]]\nmatch = \"mirrors/*\"\nscopes = [\"git:read\"]\n";
    let pem = key::generate(NewKey::P256).unwrap();
    let mut env = MapEnv::from([("USER", "fuzz")]);
    env.set("ACME_KEY", pem.expose());
    env.set("CODESTORAGE_PRIVATE_KEY", pem.expose());
    let config: Result<Option<Config>, ConfigError> =
        config::parse(CONFIG, Path::new("/fuzz/config.toml")).map(Some);
    for (path, data) in inputs("request_handler") {
        let Ok(request) = protocol::parse(&data) else {
            continue;
        };
        let mut stderr = Vec::new();
        let response = credential::get(
            &request,
            &config,
            &env,
            NOW,
            &mut Log::new(&mut stderr, true),
        );
        if let Response::Credential { password, .. } = &response {
            let claims = token::decode_unverified(password.expose())
                .unwrap()
                .claims
                .unwrap();
            let host = Host::parse(request.host.as_deref().unwrap()).unwrap();
            let owner = resolve::owner(config.as_ref().unwrap().as_ref(), &host).unwrap();
            assert_eq!(owner.name().as_str(), claims.iss, "{path:?}");
            assert_eq!(
                resolve::repo_id(request.path.as_deref().unwrap()).unwrap(),
                claims.repo,
                "{path:?}"
            );
        }
        credential::erase(&request, &config, NOW, &mut Log::new(&mut stderr, true));
    }
}

#[test]
fn config_parser() {
    for (path, data) in inputs("config_parser") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let parsed = config::parse(text, Path::new("/fuzz/config.toml"));
            // What cannot be read is an error that points at a line, never a crash.
            if let Err(ConfigError::Invalid { line, .. }) = parsed {
                assert!(line >= 1, "{path:?}");
            }
        }
    }
}

#[test]
fn key_loader() {
    const TAGS: [&str; 6] = [
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PARAMETERS",
        "PUBLIC KEY",
        "RSA PUBLIC KEY",
    ];
    let source = KeySource::Env("FUZZ_KEY".into());
    for (_, data) in inputs("key_loader") {
        let text = match data.split_first() {
            Some((&selector, der)) if usize::from(selector) < TAGS.len() => {
                pem::encode(&pem::Pem::new(TAGS[usize::from(selector)], der.to_vec())).into_bytes()
            }
            _ => data.clone(),
        };
        let _ = key::PublicKey::from_pem(&text, &source);
        if let Ok(key) = key::parse_pem(&text, &source)
            && let Ok(key) = LocalSigner::new(key, &source)
        {
            let claims = Claims {
                iss: "acme".into(),
                sub: "fuzz".into(),
                repo: "x".into(),
                scopes: vec![Scope::GitRead],
                iat: NOW,
                exp: NOW + 60,
                refs: None,
                ops: None,
            };
            let _ = token::sign(&claims, &key);
        }
    }
}

#[test]
fn token_decoder() {
    for (_, data) in inputs("token_decoder") {
        if let Ok(text) = std::str::from_utf8(&data)
            && let Ok(token) = inspect::extract_token(text)
        {
            let _ = inspect::inspect(&token, None, NOW);
        }
    }
}
