//! Property tests of the whole `get` decision, in process: whatever host, path and protocol git
//! (or anything pretending to be git) sends, `get` never panics, never says more on stderr than
//! it should, and signs only for a Code Storage host and a clean repository ID. The parser's own
//! properties (never panics, round-trips) are beside it in src/protocol.rs; the glob and ttl ones
//! in src/glob.rs and src/ttl.rs.

mod support;

use std::path::Path;

use git_credential_codestorage::commands::inspect;
use git_credential_codestorage::config::{self, Config};
use git_credential_codestorage::credential;
use git_credential_codestorage::env::MapEnv;
use git_credential_codestorage::host::Host;
use git_credential_codestorage::log::{Log, PREFIX};
use git_credential_codestorage::protocol::{self, Response};
use git_credential_codestorage::{resolve, token, url};
use proptest::prelude::*;

use support::jwt::TestKey;

const CONFIG: &str = r#"
[org.acme]
key_env = "ACME_KEY"
hosts = ["acme.code.storage", "git.acme.dev:8443", "localhost:8080"]
allow_http = true

[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
"#;

const NOW: i64 = 1_800_000_000;

struct Fixture {
    config: Result<Option<Config>, config::ConfigError>,
    env: MapEnv,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = TestKey::p256();
        let mut env = MapEnv::from([("USER", "prop")]);
        env.set("ACME_KEY", &key.pem);
        // Any other *.code.storage organisation signs with the environment's key.
        env.set("CODESTORAGE_PRIVATE_KEY", &key.pem);
        Fixture {
            config: config::parse(CONFIG, Path::new("/prop/config.toml")).map(Some),
            env,
        }
    })
}

/// Hosts near the edge of what is ours: real ones, look-alikes, odd characters before a
/// Code Storage suffix (a multi-byte one once made the suffix check slice inside a character).
fn host() -> impl Strategy<Value = String> {
    let suffix = prop::sample::select(vec![
        ".code.storage",
        "code.storage",
        "ode.storage",
        ".CODE.Storage",
        ".code.storage:8443",
        ".code.storage:",
        ".code.storage:x",
        ".code.storage.evil.com",
        "acme.code.storage",
        "git.acme.dev:8443",
        "localhost:8080",
        "",
    ]);
    prop_oneof![
        ("\\PC{0,3}", "[a-zA-Z0-9.@ :\\[\\]-]{0,4}", suffix).prop_map(|(a, b, c)| a + &b + c),
        "[a-zA-Z0-9-]{1,8}\\.code\\.storage(:[0-9]{1,5})?",
        any::<String>(),
    ]
}

/// Paths: clean IDs, traversal, escapes, control characters and arbitrary text.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/._+-]{0,24}",
        "[a-z./%\\\\\u{1b}\u{7f}é ]{0,16}(\\.git)?",
        any::<String>(),
    ]
}

fn request_text(protocol: &str, host: &str, path: Option<&str>) -> String {
    let mut text = format!("protocol={protocol}\nhost={host}\n");
    if let Some(path) = path {
        text.push_str(&format!("path={path}\n"));
    }
    text + "\n"
}

fn is_clean_repo_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '%' | '?' | '#'))
        && id
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn get_signs_only_for_our_hosts_and_clean_ids_and_never_panics(
        protocol in prop::sample::select(vec!["https", "https", "https", "http", "HTTPS", "ssh", ""]),
        host in host(),
        path in proptest::option::weighted(0.9, path()),
        debug in any::<bool>(),
    ) {
        let fixture = fixture();
        let text = request_text(protocol, &host, path.as_deref());
        // Requests with LF, CR or NUL inside a value do not parse; those are the parser's tests.
        let Ok(request) = protocol::parse(text.as_bytes()) else {
            return Ok(());
        };
        let mut stderr = Vec::new();
        let response = credential::get(
            &request,
            &fixture.config,
            &fixture.env,
            NOW,
            &mut Log::new(&mut stderr, debug),
        );
        let stderr = String::from_utf8(stderr).unwrap();
        if let Response::Credential { password, .. } = &response {
            let password = password.expose();
            let claims = token::decode_unverified(password).unwrap().claims.unwrap();
            let host = Host::parse(&host).expect("a token is signed for a valid host only");
            let owner = resolve::owner(fixture.config.as_ref().unwrap().as_ref(), &host);
            let owner = owner.map(|o| o.name().to_string());
            prop_assert_eq!(owner.as_deref(), Some(claims.iss.as_str()), "signed for {:?}", host);
            prop_assert!(is_clean_repo_id(&claims.repo), "signed for repo {:?}", claims.repo);
            prop_assert!(protocol == "https" || (protocol == "http" && claims.iss == "acme"));
            let signature = password.rsplit('.').next().unwrap();
            prop_assert!(!stderr.contains(signature), "token on stderr: {stderr}");
        }
        // Every line on stderr is one of ours, and no raw control character reaches the terminal.
        for line in stderr.lines() {
            prop_assert!(line.starts_with(PREFIX), "{line:?}");
            prop_assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        }
    }

    #[test]
    fn erase_never_panics_on_any_password(
        host in host(),
        password in any::<String>(),
    ) {
        let fixture = fixture();
        let text = format!("protocol=https\nhost={host}\npath=team/x.git\npassword={password}\n\n");
        if let Ok(request) = protocol::parse(text.as_bytes()) {
            let mut stderr = Vec::new();
            credential::erase(&request, &fixture.config, NOW, &mut Log::new(&mut stderr, true));
        }
    }

    #[test]
    fn urls_and_pasted_tokens_never_panic(text in any::<String>(), host in host()) {
        let _ = url::parse(&text);
        let _ = url::parse(&format!("https://{host}/{text}"));
        if let Ok(token) = inspect::extract_token(&text) {
            let _ = inspect::inspect(&token, None, NOW);
        }
        let _ = resolve::repo_id(&text);
        let _ = Host::parse(&host).map(|h| h.is_loopback());
    }
}

#[test]
fn a_multi_byte_character_before_the_suffix_is_not_ours_and_no_panic() {
    // Found by the property above (shrunk to the first host): the suffix check sliced any host
    // longer than `.code.storage` whose byte 13 from the end fell inside a character.
    for host in [
        "\u{d7b0}\u{1fb6}aA \u{1eea1}0",
        "\u{e9}aaaaaaaaaaaa",
        "\u{e9}code.storage",
        "\u{1f600}code.storage",
        "a\u{e9}ode.storage",
    ] {
        assert!(Host::parse(host).is_err(), "{host:?}");
        let request = protocol::parse(request_text("https", host, Some("x.git")).as_bytes());
        let fixture = fixture();
        let mut stderr = Vec::new();
        let response = credential::get(
            &request.unwrap(),
            &fixture.config,
            &fixture.env,
            NOW,
            &mut Log::new(&mut stderr, true),
        );
        assert_eq!(response, Response::Decline, "{host:?}");
    }
    assert!(
        Host::parse("\u{e9}.code.storage").is_err(),
        "a non-ASCII organisation name is not a DNS label"
    );
}
