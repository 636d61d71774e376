//! The fuzz targets' checks, written once. The fuzzers in fuzz/ include this file with
//! `#[path = "../../tests/support/fuzz_checks.rs"] mod checks;`, and tests/fuzz_regressions.rs
//! and tests/properties.rs reach it as `support::fuzz_checks`, so a kept crash input is replayed
//! through exactly what found it. Each check takes what a fuzzer feeds and panics when an invariant
//! breaks: the panic is the finding. Only the library, `pem` and std are used here, because the
//! fuzz crate has no other dependencies.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use git_credential_codestorage::commands::inspect;
use git_credential_codestorage::config::{self, Config, ConfigError};
use git_credential_codestorage::credential;
use git_credential_codestorage::env::MapEnv;
use git_credential_codestorage::host::Host;
use git_credential_codestorage::key::{self, KeySource, NewKey};
use git_credential_codestorage::log::{Log, PREFIX};
use git_credential_codestorage::protocol::{self, Request, Response};
use git_credential_codestorage::resolve;
use git_credential_codestorage::signer::local::LocalSigner;
use git_credential_codestorage::token::{self, Claims, Scope};

/// The time every check runs at, so that a replayed input takes the path it took in the fuzzer.
pub const NOW: i64 = 1_800_000_000;

/// The config `get` and `erase` run with: hosts of every kind the helper serves, plain HTTP
/// allowed (on loopback only), and a read-only rule.
pub const CONFIG: &str = r#"
[org.acme]
key_env = "ACME_KEY"
hosts = ["acme.code.storage", "git.acme.dev:8443", "localhost:8080"]
allow_http = true

[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
"#;

/// The organisation [`CONFIG`] names, the only one allowed plain HTTP.
pub const ORG: &str = "acme";

/// What `get` and `erase` run with: [`CONFIG`] parsed, and an environment holding a P-256 key
/// for `acme` and one for any other `*.code.storage` organisation.
pub struct Fixture {
    /// [`CONFIG`], parsed as the helper would load it.
    pub config: Result<Option<Config>, ConfigError>,
    /// The environment the helper reads keys and settings from.
    pub env: MapEnv,
}

/// The fixture, made once per process: key generation would dominate every run otherwise.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pem = key::generate(NewKey::P256).expect("ring makes a P-256 key");
        let mut env = MapEnv::from([("USER", "fuzz")]);
        env.set("ACME_KEY", pem.expose());
        env.set("CODESTORAGE_PRIVATE_KEY", pem.expose());
        Fixture {
            config: config::parse(CONFIG, Path::new("/fuzz/config.toml")).map(Some),
            env,
        }
    })
}

/// git's credential request parser: never panics, and whatever parses writes back to itself.
pub fn request_parser(data: &[u8]) {
    if let Ok(request) = protocol::parse(data) {
        let mut written = Vec::new();
        request.write_to(&mut written).expect("writing to a Vec");
        assert_eq!(protocol::parse(&written).ok().as_ref(), Some(&request));
    }
}

/// The whole `get` and `erase` decision on whatever parses as a request (see [`get`]).
pub fn request_handler(data: &[u8]) {
    let Ok(request) = protocol::parse(data) else {
        return;
    };
    get(&request, true);
    erase(&request);
}

/// Runs `get` on `request` with the [`fixture`] and checks what it did: a token only for a host
/// that is ours, over https (or http where the organisation allows it), for the clean
/// repository ID the path names; the token never on stderr, and stderr only our own lines with
/// no control characters. Returns the response for further checks.
pub fn get(request: &Request, debug: bool) -> Response {
    let fixture = fixture();
    let mut stderr = Vec::new();
    let response = credential::get(
        request,
        &fixture.config,
        &fixture.env,
        NOW,
        &mut Log::new(&mut stderr, debug),
    );
    let stderr = String::from_utf8(stderr).expect("the helper writes UTF-8 to stderr");
    assert_stderr_is_ours(&stderr);
    if let Response::Credential {
        username,
        password,
        expiry,
        ephemeral,
    } = &response
    {
        let password = password.expose();
        let claims = token::decode_unverified(password)
            .expect("the helper signs a well-formed token")
            .claims
            .expect("the helper's claims parse");
        let host = request.host.as_deref().expect("signed without a host");
        let config = fixture
            .config
            .as_ref()
            .expect("the fixture's config parses");
        let parsed = Host::parse(host).expect("signed for a host that is a host name");
        let owner = resolve::owner(config.as_ref(), &parsed);
        assert_eq!(
            owner.map(|o| o.name().to_string()).as_deref(),
            Some(claims.iss.as_str()),
            "signed for host {host:?}"
        );
        let path = request.path.as_deref().expect("signed without a path");
        assert_eq!(resolve::repo_id(path).as_deref(), Ok(claims.repo.as_str()));
        assert!(
            is_clean_repo_id(&claims.repo),
            "signed for repo {:?}",
            claims.repo
        );
        match request.protocol.as_deref() {
            Some("https") => {}
            Some("http") => assert_eq!(claims.iss, ORG, "plain http for {host:?}"),
            other => panic!("signed for protocol {other:?}"),
        }
        assert_eq!(username, "t");
        assert!(
            NOW < *expiry && *expiry <= claims.exp,
            "expiry {expiry} for a token valid until {}",
            claims.exp
        );
        // The ephemeral answer is for reads only, and a fuzzer is no git command.
        assert!(
            !*ephemeral || request.has_capability("authtype"),
            "ephemeral without git's authtype capability"
        );
        let signature = password.rsplit('.').next().unwrap_or_default();
        assert!(!stderr.contains(signature), "token on stderr: {stderr}");
    }
    response
}

/// Runs `erase` on `request` with the [`fixture`]: never panics, and says only our own lines.
pub fn erase(request: &Request) {
    let fixture = fixture();
    let mut stderr = Vec::new();
    credential::erase(
        request,
        &fixture.config,
        NOW,
        &mut Log::new(&mut stderr, true),
    );
    assert_stderr_is_ours(&String::from_utf8(stderr).expect("UTF-8 on stderr"));
}

/// The config parser and validator: never panics, and what it refuses points at a line.
pub fn config_parser(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(ConfigError::Invalid { line, .. } | ConfigError::Field { line, .. }) =
            config::parse(text, Path::new("/fuzz/config.toml"))
    {
        assert!(line >= 1, "an error at line {line}");
    }
}

/// The PEM tags an input's first byte selects in [`key_loader`].
pub const KEY_TAGS: [&str; 6] = [
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PARAMETERS",
    "PUBLIC KEY",
    "RSA PUBLIC KEY",
];

/// The key loader and `inspect --key`'s public key reader: never panic, and whatever loads is
/// handed to ring to sign. Mutated base64 rarely stays valid, so an input whose first byte
/// selects one of [`KEY_TAGS`] is the DER inside a PEM block of that tag: that is where the
/// hand-written DER reader works.
pub fn key_loader(data: &[u8]) {
    let text = match data.split_first() {
        Some((&selector, der)) if usize::from(selector) < KEY_TAGS.len() => {
            let tag = KEY_TAGS[usize::from(selector)];
            pem::encode(&pem::Pem::new(tag, der.to_vec())).into_bytes()
        }
        _ => data.to_vec(),
    };
    let source = KeySource::Env("FUZZ_KEY".into());
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

/// What `inspect` accepts (a token, `Bearer TOKEN` or a remote URL): never panics.
pub fn token_decoder(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(token) = inspect::extract_token(text)
    {
        let _ = inspect::inspect(&token, None, NOW);
    }
}

/// Whether `id` is a repository ID the helper may sign for: printable ASCII without `\`, `%`,
/// `?` or `#`, and no empty, `.` or `..` segment.
pub fn is_clean_repo_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '%' | '?' | '#'))
        && id
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Every line is one of ours, and no raw control character reaches the user's terminal.
fn assert_stderr_is_ours(stderr: &str) {
    for line in stderr.lines() {
        assert!(line.starts_with(PREFIX), "{line:?}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
}
