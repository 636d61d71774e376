//! The whole `get` and `erase` decision on any request: parsing, host and repository checks,
//! settings and signing. Never panics, and signs only for a host that is ours and a clean
//! repository ID. (A multi-byte character before `.code.storage` once panicked here.)
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use git_credential_codestorage::config::{self, Config, ConfigError};
use git_credential_codestorage::credential::{self, Log};
use git_credential_codestorage::env::MapEnv;
use git_credential_codestorage::key::{self, NewKey};
use git_credential_codestorage::protocol::{self, Response};
use git_credential_codestorage::{resolve, token};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[org.acme]
key_env = "ACME_KEY"
hosts = ["acme.code.storage", "git.acme.dev:8443", "localhost:8080"]
allow_http = true

[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
"#;

fn fixture() -> &'static (Result<Option<Config>, ConfigError>, MapEnv) {
    static FIXTURE: OnceLock<(Result<Option<Config>, ConfigError>, MapEnv)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pem = key::generate(NewKey::P256).unwrap();
        let mut env = MapEnv::from([("USER", "fuzz")]);
        env.set("ACME_KEY", &pem);
        env.set("CODESTORAGE_PRIVATE_KEY", &pem);
        let config = config::parse(CONFIG, Path::new("/fuzz/config.toml")).map(Some);
        (config, env)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = protocol::parse(data) else {
        return;
    };
    let (config, env) = fixture();
    let mut stderr = Vec::new();
    let response = credential::get(
        &request,
        config,
        env,
        1_800_000_000,
        &mut Log::new(&mut stderr, true),
    );
    if let Response::Credential { password, .. } = &response {
        let claims = token::decode_unverified(password).unwrap().claims.unwrap();
        let host = request.host.as_deref().unwrap();
        let owner = resolve::owner(config.as_ref().unwrap().as_ref(), host).unwrap();
        assert_eq!(owner.name(), claims.iss);
        assert_eq!(
            resolve::repo_id(request.path.as_deref().unwrap()).unwrap(),
            claims.repo
        );
        assert!(
            claims.repo.bytes().all(|b| b.is_ascii_graphic()),
            "{:?}",
            claims.repo
        );
    }
    credential::erase(
        &request,
        config,
        1_800_000_000,
        &mut Log::new(&mut stderr, true),
    );
});
