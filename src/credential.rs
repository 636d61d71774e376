//! The `get`, `store` and `erase` actions git runs: a request in, an answer out.
//!
//! Everything here is deterministic given the request, the config, the environment and the
//! clock; the caller owns stdin, stdout and stderr.

use crate::clock::{describe_expiry, span};
use crate::config::{Config, ConfigError};
use crate::env::Env;
use crate::gitconfig::ConfigEntry;
use crate::host::Host;
use crate::log::{Escaped, Log};
use crate::mint::{MintError, Minted, mint};
use crate::operation::{self, Operation};
use crate::protocol::{Request, Response};
use crate::resolve::{self, Disposition, Overrides, Reach, Settings, Target, join};
use crate::token::{self, Claims};

/// Answers `get`: resolve, sign, and answer git as the outcome says.
pub fn get(
    request: &Request,
    config: &Result<Option<Config>, ConfigError>,
    env: &dyn Env,
    now: i64,
    log: &mut Log<'_>,
) -> Response {
    let target = Target::Request {
        protocol: request.protocol.as_deref().unwrap_or_default(),
        host: request.host.as_deref().unwrap_or_default(),
        path: request.path.as_deref(),
    };
    let config = config.as_ref().map(Option::as_ref);
    let mut settings = match resolve::resolve(
        config,
        target,
        Reach::Repository,
        env,
        &Overrides::default(),
    ) {
        Ok(settings) => settings,
        Err(e) => {
            return match e.disposition() {
                Disposition::Decline => {
                    log.debug(format_args!("declined: {e}"));
                    Response::Decline
                }
                Disposition::DeclineWithHint => {
                    log.error(e);
                    Response::Decline
                }
                Disposition::Quit => {
                    log.error(e);
                    Response::Quit
                }
            };
        }
    };
    // Least privilege: only now, for a host that is ours, is the process ancestry read, unless
    // the program asking said itself what it will do.
    let hint = match operation::hint(env) {
        Ok(hint) => hint,
        Err(e) => {
            log.error(e);
            return Response::Quit;
        }
    };
    let operation = if let Some(hinted) = hint {
        log.debug(format_args!(
            "least privilege: {hinted}, from CODESTORAGE_OPERATION"
        ));
        // Asked for by name: a read narrows even where least privilege is off.
        settings.least_privilege = true;
        hinted
    } else if settings.least_privilege {
        let detection = operation::detect(env.var(TRACE2_PARENT).as_deref());
        log.debug(format_args!("least privilege: {}", detection.describe()));
        detection.operation
    } else {
        log.debug("least privilege is off: the configured scopes for every command");
        Operation::Unknown
    };
    let host = request.host.as_deref().unwrap_or_default();
    let signed = answer(request, settings, operation, |settings| {
        log.debug(format_args!("host {} -> {settings}", Escaped(host)));
        mint(settings, env, now)
    });
    match signed {
        Ok(answered) => answered.response,
        Err(e) => {
            log.error(e);
            Response::Quit
        }
    }
}

/// A token made for a request, and git's answer that carries it.
#[derive(Debug)]
pub struct Answered {
    /// The token's claims, for an audit line.
    pub claims: Claims,
    /// What git is answered.
    pub response: Response,
}

/// The end of `get`, which the broker shares: least privilege narrows `settings` to
/// `operation`, `sign` makes the token, and git gets it as a credential, the ephemeral kind
/// for reads by a git that offers it.
pub fn answer(
    request: &Request,
    mut settings: Settings,
    operation: Operation,
    sign: impl FnOnce(&Settings) -> Result<Minted, MintError>,
) -> Result<Answered, MintError> {
    settings.narrow_to(operation);
    let minted = sign(&settings)?;
    Ok(Answered {
        response: Response::Credential {
            username: "t".into(),
            expiry: token::reported_expiry(minted.claims.iat, minted.claims.exp),
            password: minted.token,
            ephemeral: answer_ephemeral(request, operation),
        },
        claims: minted.claims,
    })
}

/// git sets this, when trace2 is on, to the git processes above the helper.
const TRACE2_PARENT: &str = "GIT_TRACE2_PARENT_NAME";

/// Whether to answer with git 2.46+'s ephemeral `authtype=Basic` credential, which no helper
/// keeps. Only for reads: git 2.46 to 2.52 leave that credential out of the probe request they
/// send before a POST larger than `http.postBuffer` (1 MiB), so a large push would fail with
/// 401; pushes get the `username`/`password` answer every git takes.
fn answer_ephemeral(request: &Request, operation: Operation) -> bool {
    request.has_capability("authtype") && operation == Operation::Read
}

/// Handles `erase`: git sends back a credential the server refused. Tokens are never stored, so
/// there is nothing to delete; if the refused token is ours, say what it was and why it may fail.
pub fn erase(
    request: &Request,
    config: &Result<Option<Config>, ConfigError>,
    now: i64,
    log: &mut Log<'_>,
) {
    erase_tracing(request, config, now, log, &mut Vec::new);
}

/// As [`erase`]; `remotes` gives git's config entries, asked for only to trace an expired token
/// to the remote URL it came from, so that the fix names the remote.
pub fn erase_tracing(
    request: &Request,
    config: &Result<Option<Config>, ConfigError>,
    now: i64,
    log: &mut Log<'_>,
    remotes: &mut dyn FnMut() -> Vec<ConfigEntry>,
) {
    let config = config.as_ref().ok().and_then(Option::as_ref);
    if let Some(explained) = explain_refusal(request, config, now, remotes) {
        log.error(explained);
    }
}

/// The one line `erase` gives for a refused token of ours (the broker sends it to the sandbox
/// as it is); `None` when the token is not one of `config`'s organisations'. `remotes` is asked
/// only when the line names the remote that holds an expired token.
pub fn explain_refusal(
    request: &Request,
    config: Option<&Config>,
    now: i64,
    remotes: &mut dyn FnMut() -> Vec<ConfigEntry>,
) -> Option<String> {
    let (Some(host), Some(password)) = (request.host.as_deref(), request.token()) else {
        return None;
    };
    let owner = Host::parse(host)
        .ok()
        .and_then(|host| resolve::owner(config, &host))?;
    let claims = token::decode_unverified(password.expose())
        .ok()
        .and_then(|t| t.claims)?;
    if !owner.name().matches(&claims.iss) {
        return None;
    }
    let what = format!(
        "{} refused the token for org {:?}, repo {:?} (scopes {})",
        Escaped(host),
        claims.iss,
        claims.repo,
        join(&claims.scopes),
    );
    // The helper's own clock says first whether the token was still valid when git used it.
    Some(if claims.exp <= now && knows_expiry(request) {
        format!(
            "{what}: it had expired {} ago by this machine's clock, and git 2.41 or later never uses a token this helper reported expired, so it came from the remote URL (as the SDKs write them) or from a helper that stores passwords; fix: {}",
            span(now - claims.exp),
            stale_token_fix(request, host, &remotes())
        )
    } else if claims.exp <= now {
        format!(
            "{what}: it had expired {} ago by this machine's clock; git should not have used it: upgrade git to 2.41 or later (older git ignores the expiry), and check this machine's clock (`date -u`; turn on NTP)",
            span(now - claims.exp)
        )
    } else if claims.iat > now + 60 {
        format!(
            "{what}: it is not valid yet by this machine's clock (issued {} from now): this machine's clock is wrong; set it (`date -u`; turn on NTP)",
            span(claims.iat - now)
        )
    } else {
        format!(
            "{what}, {}; usual causes: the public key is not registered for {:?} in the Code Storage admin panel, the repository does not exist, the scopes are too narrow (push needs git:write), or this machine's clock is off by minutes (check `date -u` against the real time; turn on NTP)",
            describe_expiry(claims.exp, now),
            claims.iss,
        )
    })
}

/// Whether the git that sent `request` honours `password_expiry_utc` (2.41 or later): only
/// those send `wwwauth[]` (2.41) or `capability[]` (2.46) lines.
fn knows_expiry(request: &Request) -> bool {
    !request.wwwauth.is_empty() || !request.capabilities.is_empty()
}

/// How to stop git sending a stale token for `host` and the request's path: the `git remote
/// set-url` for the remote whose URL holds it, else forgetting what a helper stored.
fn stale_token_fix(request: &Request, host: &str, entries: &[ConfigEntry]) -> String {
    let path = request.path.as_deref().unwrap_or_default();
    let holder = entries.iter().find_map(|entry| {
        let (name, field) = entry.key.strip_prefix("remote.")?.rsplit_once('.')?;
        let url = crate::url::parse(entry.value.as_deref()?).ok()?;
        let same = url.password.is_some()
            && url.host.eq_ignore_ascii_case(host)
            && url.path.trim_end_matches('/') == path.trim_end_matches('/');
        match field {
            "url" if same => Some((name, false, url)),
            "pushurl" if same => Some((name, true, url)),
            _ => None,
        }
    });
    match holder {
        Some((name, push, url)) => {
            let clean = url.to_string();
            let mut args = vec!["remote", "set-url"];
            if push {
                args.push("--push");
            }
            args.extend([name, clean.as_str()]);
            Escaped(&crate::gitconfig::command_line(&args)).to_string()
        }
        None => format!(
            "no remote here holds it, so forget what a helper stored: printf 'protocol=https\\nhost={}\\n\\n' | git credential reject",
            Escaped(host)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::env::MapEnv;
    use crate::key::{self, KeySource, NewKey};
    use crate::protocol;
    use std::path::Path;

    const NOW: i64 = 1_800_000_000;

    struct Case {
        _dir: tempfile::TempDir,
        config: Result<Option<Config>, ConfigError>,
        env: MapEnv,
    }

    fn case(extra: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("acme.pem");
        std::fs::write(&key_path, key::generate(NewKey::P256).unwrap().expose()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = format!(
            "subject = \"tester\"\n[org.acme]\nkey_file = \"acme.pem\"\nhosts = [\"acme.code.storage\", \"127.0.0.1:9\"]\n{extra}"
        );
        let config = config::parse(&text, &dir.path().join("config.toml")).map(Some);
        Case {
            _dir: dir,
            config,
            env: MapEnv::default(),
        }
    }

    fn run(case: &Case, input: &str) -> (Response, String) {
        let request = protocol::parse(input.as_bytes()).unwrap();
        let mut err = Vec::new();
        let response = get(
            &request,
            &case.config,
            &case.env,
            NOW,
            &mut Log::new(&mut err, true),
        );
        (response, String::from_utf8(err).unwrap())
    }

    #[test]
    fn a_stale_token_is_traced_to_the_remote_holding_it_or_to_a_stored_helper() {
        let request =
            protocol::parse(b"protocol=https\nhost=acme.code.storage\npath=team/x.git\n").unwrap();
        let entry = |key: &str, value: &str| ConfigEntry {
            origin: "file:.git/config".into(),
            key: key.into(),
            value: Some(value.into()),
        };
        let entries = [
            entry("remote.origin.url", "https://acme.code.storage/team/x.git"),
            entry(
                "remote.up.url",
                "https://t:x@acme.code.storage/team/other.git",
            ),
            entry(
                "remote.up.pushurl",
                "https://t:x@ACME.code.storage/team/x.git",
            ),
        ];
        assert_eq!(
            stale_token_fix(&request, "acme.code.storage", &entries),
            "git remote set-url --push up https://ACME.code.storage/team/x.git"
        );
        assert_eq!(
            stale_token_fix(&request, "acme.code.storage", &entries[..2]),
            "no remote here holds it, so forget what a helper stored: printf 'protocol=https\\nhost=acme.code.storage\\n\\n' | git credential reject"
        );
        assert!(!knows_expiry(&request));
        let new = protocol::parse(b"protocol=https\nhost=h\nwwwauth[]=Basic realm=x\n").unwrap();
        assert!(knows_expiry(&new));
    }

    #[test]
    fn signs_a_token_for_a_configured_host_and_path() {
        let c = case("");
        let (response, _) = run(
            &c,
            "protocol=https\nhost=acme.code.storage\npath=team/x.git\n",
        );
        let Response::Credential {
            username,
            password,
            expiry,
            ephemeral,
        } = response
        else {
            panic!("expected a credential, got {response:?}");
        };
        assert_eq!(username, "t");
        assert!(!ephemeral);
        let claims = token::decode_unverified(password.expose())
            .unwrap()
            .claims
            .unwrap();
        assert_eq!(
            (
                claims.iss.as_str(),
                claims.repo.as_str(),
                claims.sub.as_str()
            ),
            ("acme", "team/x", "tester")
        );
        assert_eq!((claims.iat, claims.exp), (NOW, NOW + 3600));
        assert_eq!(expiry, NOW + 3600 - 30);
    }

    #[test]
    fn the_ephemeral_answer_is_for_reads_by_a_git_that_offers_authtype() {
        let offered = protocol::parse(b"capability[]=authtype\nprotocol=https\n").unwrap();
        let old = protocol::parse(b"protocol=https\n").unwrap();
        assert!(answer_ephemeral(&offered, Operation::Read));
        for (request, operation) in [
            (&offered, Operation::Write),
            (&offered, Operation::Unknown),
            (&old, Operation::Read),
        ] {
            assert!(!answer_ephemeral(request, operation), "{operation}");
        }
        // A test process is no git command: the configured scopes, the classic answer.
        let c = case("");
        let (response, err) = run(
            &c,
            "capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=x.git\n",
        );
        assert!(matches!(
            response,
            Response::Credential {
                ephemeral: false,
                ..
            }
        ));
        assert!(err.contains("least privilege: unknown"), "{err}");
        assert!(err.contains("scopes git:read+git:write"), "{err}");
    }

    #[test]
    fn declines_foreign_hosts_and_plain_http_silently() {
        let c = case("");
        for input in [
            "protocol=https\nhost=github.com\npath=a/b.git\n",
            "protocol=http\nhost=acme.code.storage\npath=a/b.git\n",
            "protocol=http\nhost=127.0.0.1:9\npath=a/b.git\n",
            "protocol=https\npath=a/b.git\n",
        ] {
            let (response, _) = run(&c, input);
            assert_eq!(response, Response::Decline, "{input}");
        }
        let allowed = case("allow_http = true\n");
        let (response, _) = run(&allowed, "protocol=http\nhost=127.0.0.1:9\npath=a/b.git\n");
        assert!(matches!(response, Response::Credential { .. }));
    }

    #[test]
    fn missing_path_quits_with_the_fix() {
        let c = case("");
        let (response, err) = run(&c, "protocol=https\nhost=acme.code.storage\n");
        assert_eq!(response, Response::Quit);
        assert!(
            err.contains(
                "git config --global 'credential.https://*.code.storage.useHttpPath' true"
            ),
            "{err}"
        );
        let (_, err) = run(&c, "protocol=https\nhost=127.0.0.1:9\n");
        assert!(
            err.contains("credential.https://127.0.0.1:9.useHttpPath"),
            "{err}"
        );
    }

    #[test]
    fn bad_paths_and_broken_keys_quit_with_a_reason() {
        let c = case("");
        let (response, err) = run(
            &c,
            "protocol=https\nhost=acme.code.storage\npath=a/../b.git\n",
        );
        assert_eq!(response, Response::Quit);
        assert!(err.contains("'..'"), "{err}");
        let broken = case("[org.beta]\nkey_file = \"missing.pem\"\n");
        let (response, err) = run(
            &broken,
            "protocol=https\nhost=beta.code.storage\npath=x.git\n",
        );
        assert_eq!(response, Response::Quit);
        assert!(
            err.contains("organisation \"beta\"") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn unconfigured_code_storage_host_beside_configured_ones_names_them_and_quits() {
        let c = case("");
        let (response, err) = run(&c, "protocol=https\nhost=other.code.storage\npath=x.git\n");
        assert_eq!(response, Response::Quit);
        assert!(
            err.contains("(it configures acme)")
                && !err.contains("did you mean")
                && err.contains("setup --org other"),
            "{err}"
        );
    }

    #[test]
    fn broken_config_quits_for_every_host_git_routes_to_the_helper() {
        let c = Case {
            _dir: tempfile::tempdir().unwrap(),
            config: config::parse("ttl = 0", Path::new("/c.toml")).map(Some),
            env: MapEnv::default(),
        };
        let (response, err) = run(&c, "protocol=https\nhost=acme.code.storage\npath=x.git\n");
        assert_eq!(response, Response::Quit);
        assert!(err.contains("/c.toml:1:"), "{err}");
        // A custom host listed in the broken file's `hosts` cannot be told from a foreign one.
        let (response, err) = run(&c, "protocol=https\nhost=git.acme.dev\npath=x.git\n");
        assert_eq!(response, Response::Quit);
        assert!(err.contains("/c.toml:1:"), "{err}");
    }

    #[test]
    fn debug_lines_describe_the_decision_but_never_the_token() {
        let c = case("");
        let (response, err) = run(
            &c,
            "protocol=https\nhost=acme.code.storage\npath=team/x.git\n",
        );
        let Response::Credential { password, .. } = response else {
            panic!()
        };
        let password = password.expose();
        assert!(
            err.contains("org acme") && err.contains("repo team/x") && err.contains("ttl 1h"),
            "{err}"
        );
        assert!(!err.contains(password));
        assert!(!err.contains(password.split('.').nth(2).unwrap()));
    }

    #[test]
    fn erase_explains_a_refused_token_of_ours_only() {
        let c = case("");
        let (Response::Credential { password, .. }, _) = run(
            &c,
            "protocol=https\nhost=acme.code.storage\npath=team/x.git\n",
        ) else {
            panic!()
        };
        let password = password.expose();
        let mut err = Vec::new();
        let request = protocol::parse(format!("protocol=https\nhost=acme.code.storage\npath=team/x.git\nusername=t\npassword={password}\n").as_bytes()).unwrap();
        erase(
            &request,
            &c.config,
            NOW + 4000,
            &mut Log::new(&mut err, false),
        );
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("repo \"team/x\"")
                && err.contains("expired 6m ago by this machine's clock")
                && err.contains("upgrade git"),
            "{err}"
        );
        assert!(!err.contains("not registered"), "{err}");
        let mut err = Vec::new();
        erase(
            &request,
            &c.config,
            NOW + 60,
            &mut Log::new(&mut err, false),
        );
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("not registered") && err.contains("clock is off"),
            "{err}"
        );
        let mut err = Vec::new();
        erase(
            &request,
            &c.config,
            NOW - 600,
            &mut Log::new(&mut err, false),
        );
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("not valid yet"), "{err}");
        assert!(!err.contains(password));
        let mut err = Vec::new();
        let request = protocol::parse(
            format!("protocol=https\nhost=github.com\npassword={password}\n").as_bytes(),
        )
        .unwrap();
        erase(&request, &c.config, NOW, &mut Log::new(&mut err, false));
        assert!(err.is_empty());
    }

    fn resolve_url(
        c: &Case,
        text: &str,
        reach: Reach,
    ) -> Result<resolve::Settings, resolve::ResolveError> {
        let url = crate::url::parse(text).unwrap();
        let config = c.config.as_ref().map(Option::as_ref);
        resolve::resolve(
            config,
            Target::of_url(&url),
            reach,
            &c.env,
            &Overrides::default(),
        )
    }

    #[test]
    fn mint_uses_every_resolved_setting() {
        let c = case(
            "[[org.acme.repo]]\nmatch = \"ro/**\"\nscopes = [\"git:read\"]\nttl = \"5m\"\nops = [\"no-force-push\"]\n",
        );
        let settings = resolve_url(
            &c,
            "https://acme.code.storage/ro/a/b.git",
            Reach::Repository,
        )
        .unwrap();
        assert!(matches!(settings.key, KeySource::File(_)));
        let minted = mint(&settings, &c.env, NOW).unwrap();
        assert_eq!(minted.claims.scopes, [token::Scope::GitRead]);
        assert_eq!(minted.claims.exp - minted.claims.iat, 300);
        assert_eq!(minted.claims.ops, Some(vec![token::Op::NoForcePush]));
    }

    #[test]
    fn token_targets_resolve_like_get() {
        let c = case("[[org.acme.repo]]\nmatch = \"ro/**\"\nscopes = [\"git:read\"]\n");
        let from_url = resolve_url(
            &c,
            "https://ACME.code.storage/ro/x+ephemeral.git",
            Reach::Repository,
        )
        .unwrap();
        let (Response::Credential { password, .. }, _) = run(
            &c,
            "protocol=https\nhost=ACME.code.storage\npath=ro/x+ephemeral.git\n",
        ) else {
            panic!()
        };
        let from_get = token::decode_unverified(password.expose())
            .unwrap()
            .claims
            .unwrap();
        let minted = mint(&from_url, &c.env, NOW).unwrap();
        assert_eq!(minted.claims, from_get);
        let acme = crate::host::OrgName::parse("acme").unwrap();
        let config = c.config.as_ref().map(Option::as_ref);
        let by_name = resolve::resolve(
            config,
            Target::Org {
                org: &acme,
                repo: "ro/x.git",
            },
            Reach::Repository,
            &c.env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(by_name, from_url);
        let wide = resolve_url(
            &c,
            "https://ACME.code.storage/ro/x.git",
            Reach::Organisation,
        )
        .unwrap();
        assert_eq!(
            (wide.repo.as_str(), wide.scopes.as_slice()),
            ("org", &[token::Scope::OrgRead][..])
        );

        for (text, expected) in [
            ("https://github.com/a/b.git", "not a Code Storage host"),
            ("http://acme.code.storage/a.git", "https only"),
            ("https://acme.code.storage/a/../b.git", "'..'"),
            ("https://acme.code.storage/", "names no repository"),
            ("https://acme.code.storage/org.git", "whole organisation"),
        ] {
            let err = resolve_url(&c, text, Reach::Repository)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let nobody = crate::host::OrgName::parse("nobody").unwrap();
        let err = resolve::resolve(
            config,
            Target::Org {
                org: &nobody,
                repo: "x",
            },
            Reach::Repository,
            &c.env,
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("setup --org nobody"), "{err}");
    }
}
