//! The `get`, `store` and `erase` actions git runs: a request in, a decision out.
//!
//! Everything here is deterministic given the request, the config, the environment and the
//! clock; the caller owns stdin, stdout and stderr.

use std::io::Write;

use crate::config::{self, Config, ConfigError};
use crate::env::Env;
use crate::error::Error;
use crate::key;
use crate::protocol::{Request, Response};
use crate::resolve::{self, Overrides, Owner, ResolveError, Settings, vars};
use crate::token::{self, Claims};
use crate::url::RemoteUrl;

/// The prefix of every line the helper writes to stderr.
pub const PREFIX: &str = "git-credential-codestorage";

/// Where diagnostics go: errors always, decisions only with `CODESTORAGE_DEBUG=1`.
pub struct Log<'a> {
    out: &'a mut dyn Write,
    debug: bool,
}

impl<'a> Log<'a> {
    /// Writes to `out`; decisions only when `debug` is on.
    pub fn new(out: &'a mut dyn Write, debug: bool) -> Self {
        Self { out, debug }
    }

    /// Writes to `out`, with debugging as the environment says.
    pub fn from_env(out: &'a mut dyn Write, env: &dyn Env) -> Self {
        Self::new(out, resolve::flag(env, vars::DEBUG))
    }

    /// One line the user must see.
    pub fn error(&mut self, message: impl std::fmt::Display) {
        // A broken stderr is no reason to fail git's request.
        let _ = writeln!(self.out, "{PREFIX}: {message}");
    }

    /// One line describing a decision, shown with `CODESTORAGE_DEBUG=1`.
    pub fn debug(&mut self, message: impl std::fmt::Display) {
        if self.debug {
            let _ = writeln!(self.out, "{PREFIX}: debug: {message}");
        }
    }
}

/// Loads the config file the environment points at (`None` if there is none).
pub fn load_config(env: &dyn Env) -> Result<Option<Config>, ConfigError> {
    match config::default_path(env) {
        Some(path) => config::load(&path),
        None => Ok(None),
    }
}

/// A freshly signed token and what it says.
pub struct Minted {
    /// The compact JWT. Never log it.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

// The token is a live credential: `{:?}` shows its claims only.
impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Loads the key named by `settings` and signs a token issued at `now`.
pub fn mint(settings: &Settings, env: &dyn Env, now: i64) -> Result<Minted, Error> {
    let key =
        key::load(&settings.key, env, settings.load_options).map_err(|source| Error::Key {
            org: settings.org.clone(),
            source,
        })?;
    let (iat, exp) = token::lifetime(now, settings.ttl.seconds())?;
    let claims = Claims {
        iss: settings.org.clone(),
        sub: settings.subject.clone(),
        repo: settings.repo.clone(),
        scopes: settings.scopes.clone(),
        iat,
        exp,
        refs: settings.refs.clone(),
        ops: settings.ops.clone(),
    };
    let token = token::sign(&claims, &key)?;
    Ok(Minted { token, claims })
}

/// The git config line that turns on `useHttpPath` for `host`.
pub fn use_http_path_fix(host: &str) -> String {
    let url = crate::gitconfig::credential_url("https", host);
    // Quoted: zsh refuses an unmatched `*` in `credential.https://*.code.storage...`.
    crate::gitconfig::command_line(&[
        "config",
        "--global",
        &format!("credential.{url}.useHttpPath"),
        "true",
    ])
}

/// What `token` and `doctor URL` sign for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A remote URL, resolved as `get` resolves git's request for it.
    Url(&'a RemoteUrl),
    /// `--org NAME REPO`: an organisation by name and a repository ID (or path).
    Org {
        /// The organisation.
        org: &'a str,
        /// The repository; ignored for an organisation-wide token.
        repo: &'a str,
    },
}

/// The settings `get` would sign with for `target`, through the same steps (owner, protocol,
/// repository ID, [`resolve::settings`]); an error where `get` would decline or quit.
/// `org_wide` signs for the whole organisation (`repo: "org"`) instead of one repository.
pub fn resolve_target(
    config: Option<&Config>,
    target: Target<'_>,
    org_wide: bool,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Settings, Error> {
    let (owner, path) = match target {
        Target::Url(url) => {
            let owner = resolve::owner(config, &url.host).ok_or_else(|| {
                Error::msg(format!(
                    "{} is not a Code Storage host: git would not ask this helper for it; Code Storage hosts are ORG.code.storage, and other hosts must be listed in an organisation's hosts in {}",
                    url.host.escape_debug(),
                    config.map_or_else(|| "the config file".to_owned(), |c| c.path.display().to_string()),
                ))
            })?;
            if !resolve::protocol_allowed(&url.protocol, &url.host, &owner) {
                return Err(Error::msg(format!("{url}: {}", resolve::HTTPS_ONLY)));
            }
            (owner, url.path.as_str())
        }
        Target::Org { org, repo } => (resolve::owner_by_name(config, org), repo),
    };
    let repo = if org_wide {
        token::ORG_WIDE_REPO.to_owned()
    } else {
        resolve::repo_id(path)?
    };
    Ok(resolve::settings(config, &owner, &repo, env, overrides)?)
}

/// A unix time as an RFC 3339 UTC date, e.g. `2026-05-01T12:00:00Z`.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (out of range)"))
}

/// Answers `get`.
pub fn get(
    request: &Request,
    config: &Result<Option<Config>, ConfigError>,
    env: &dyn Env,
    now: i64,
    log: &mut Log<'_>,
) -> Response {
    let (Some(protocol), Some(host)) = (request.protocol.as_deref(), request.host.as_deref())
    else {
        log.debug("declined: the request names no protocol or host");
        return Response::Decline;
    };
    let shown_host = host.escape_debug().to_string();
    let config = match config {
        Ok(config) => config.as_ref(),
        Err(e) => {
            log.error(e);
            // For a host that is certainly ours, stop git rather than let it prompt in vain.
            return match resolve::owner(None, host) {
                Some(_) => Response::Quit,
                None => Response::Decline,
            };
        }
    };
    let Some(owner) = resolve::owner(config, host) else {
        log.debug(format_args!(
            "declined: {shown_host} is not a Code Storage host"
        ));
        return Response::Decline;
    };
    if !resolve::protocol_allowed(protocol, host, &owner) {
        log.debug(format_args!(
            "declined: {protocol}://{shown_host}: {}",
            resolve::HTTPS_ONLY
        ));
        return Response::Decline;
    }
    let Some(path) = request.path.as_deref() else {
        log.error(format_args!(
            "git did not send the repository path for {shown_host}, so no per-repository token can be made; run: {}",
            use_http_path_fix(host)
        ));
        return Response::Quit;
    };
    let repo = match resolve::repo_id(path) {
        Ok(repo) => repo,
        Err(e) => {
            log.error(e);
            return Response::Quit;
        }
    };
    let settings = match resolve::settings(config, &owner, &repo, env, &Overrides::default()) {
        Ok(settings) => settings,
        Err(e @ ResolveError::NoKey { .. }) => {
            // Not configured at all: another helper may still know this host.
            log.error(e);
            return Response::Decline;
        }
        Err(e) => {
            log.error(e);
            return Response::Quit;
        }
    };
    log.debug(format_args!(
        "host {shown_host} -> org {} ({}), repo {}, rule {}, {}, ttl {}, scopes {}, sub {}",
        settings.org,
        match owner {
            Owner::Configured(_) => "from config",
            Owner::Implicit(_) => "from the host name",
        },
        settings.repo,
        settings
            .rule
            .as_ref()
            .map_or("none".to_owned(), |(line, pattern)| format!(
                "{pattern:?} (line {line})"
            )),
        settings.key,
        settings.ttl,
        join(&settings.scopes),
        settings.subject,
    ));
    match mint(&settings, env, now) {
        Ok(minted) => Response::Credential {
            username: "t".into(),
            password: minted.token,
            expiry: token::reported_expiry(minted.claims.iat, minted.claims.exp),
            // Keeps credential-cache and friends from storing it (git 2.46+); git still uses it.
            ephemeral: request.has_capability("authtype"),
        },
        Err(e) => {
            log.error(e);
            Response::Quit
        }
    }
}

/// Handles `erase`: git sends back a credential the server refused. Tokens are never stored, so
/// there is nothing to delete; if the refused token is ours, say what it was and why it may fail.
pub fn erase(
    request: &Request,
    config: &Result<Option<Config>, ConfigError>,
    now: i64,
    log: &mut Log<'_>,
) {
    let (Some(host), Some(password)) = (request.host.as_deref(), request.password.as_deref())
    else {
        return;
    };
    let config = config.as_ref().ok().and_then(Option::as_ref);
    let Some(owner) = resolve::owner(config, host) else {
        return;
    };
    let Some(claims) = token::decode_unverified(password)
        .ok()
        .and_then(|t| t.claims)
    else {
        return;
    };
    if claims.iss != owner.name() {
        return;
    }
    log.error(format_args!(
        "{} refused the token for org {:?}, repo {:?} (scopes {}, {}); usual causes: the public key is not registered for {:?} in the Code Storage admin panel, the repository does not exist, or the scopes are too narrow (push needs git:write)",
        host.escape_debug(),
        claims.iss,
        claims.repo,
        join(&claims.scopes),
        describe_expiry(claims.exp, now),
        claims.iss,
    ));
}

/// Joins scopes as `git:read+git:write`.
pub fn join(scopes: &[token::Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// "expires in 42m" or "expired 3m ago".
pub fn describe_expiry(exp: i64, now: i64) -> String {
    let delta = exp - now;
    let span = |s: i64| match s {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    if delta >= 0 {
        format!("expires in {}", span(delta))
    } else {
        format!("expired {} ago", span(-delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::key::{KeySource, NewKey};
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
        std::fs::write(&key_path, key::generate(NewKey::P256).unwrap().as_bytes()).unwrap();
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
        let claims = token::decode_unverified(&password).unwrap().claims.unwrap();
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
    fn marks_the_credential_ephemeral_when_git_offers_authtype() {
        let c = case("");
        let (response, _) = run(
            &c,
            "capability[]=authtype\nprotocol=https\nhost=acme.code.storage\npath=x.git\n",
        );
        assert!(matches!(
            response,
            Response::Credential {
                ephemeral: true,
                ..
            }
        ));
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
    fn unconfigured_code_storage_host_without_env_key_hints_and_declines() {
        let c = case("");
        let (response, err) = run(&c, "protocol=https\nhost=other.code.storage\npath=x.git\n");
        assert_eq!(response, Response::Decline);
        assert!(err.contains("setup --org other"), "{err}");
    }

    #[test]
    fn broken_config_quits_for_code_storage_and_declines_elsewhere() {
        let c = Case {
            _dir: tempfile::tempdir().unwrap(),
            config: config::parse("ttl = 0", Path::new("/c.toml")).map(Some),
            env: MapEnv::default(),
        };
        let (response, err) = run(&c, "protocol=https\nhost=acme.code.storage\npath=x.git\n");
        assert_eq!(response, Response::Quit);
        assert!(err.contains("/c.toml:1:"), "{err}");
        let (response, _) = run(&c, "protocol=https\nhost=github.com\npath=x.git\n");
        assert_eq!(response, Response::Decline);
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
        assert!(
            err.contains("org acme") && err.contains("repo team/x") && err.contains("ttl 1h"),
            "{err}"
        );
        assert!(!err.contains(&password));
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
                && err.contains("expired 6m ago")
                && err.contains("not registered"),
            "{err}"
        );
        assert!(!err.contains(&password));
        let mut err = Vec::new();
        let request = protocol::parse(
            format!("protocol=https\nhost=github.com\npassword={password}\n").as_bytes(),
        )
        .unwrap();
        erase(&request, &c.config, NOW, &mut Log::new(&mut err, false));
        assert!(err.is_empty());
    }

    #[test]
    fn mint_uses_every_resolved_setting() {
        let c = case(
            "[[org.acme.repo]]\nmatch = \"ro/**\"\nscopes = [\"git:read\"]\nttl = \"5m\"\nops = [\"no-force-push\"]\n",
        );
        let config = c.config.as_ref().unwrap().as_ref().unwrap();
        let owner = resolve::owner(Some(config), "acme.code.storage").unwrap();
        let settings = resolve::settings(
            Some(config),
            &owner,
            "ro/a/b",
            &c.env,
            &Overrides::default(),
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
        let config = c.config.as_ref().unwrap().as_ref();
        let url = crate::url::parse("https://ACME.code.storage/ro/x+ephemeral.git").unwrap();
        let from_url = resolve_target(
            config,
            Target::Url(&url),
            false,
            &c.env,
            &Overrides::default(),
        )
        .unwrap();
        let (Response::Credential { password, .. }, _) = run(
            &c,
            "protocol=https\nhost=ACME.code.storage\npath=ro/x+ephemeral.git\n",
        ) else {
            panic!()
        };
        let from_get = token::decode_unverified(&password).unwrap().claims.unwrap();
        let minted = mint(&from_url, &c.env, NOW).unwrap();
        assert_eq!(minted.claims, from_get);
        let by_name = resolve_target(
            config,
            Target::Org {
                org: "acme",
                repo: "ro/x.git",
            },
            false,
            &c.env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(by_name, from_url);
        let wide = resolve_target(
            config,
            Target::Url(&url),
            true,
            &c.env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(wide.repo, "org");

        for (text, expected) in [
            ("https://github.com/a/b.git", "not a Code Storage host"),
            ("http://acme.code.storage/a.git", "https only"),
            ("https://acme.code.storage/a/../b.git", "'..'"),
            ("https://acme.code.storage/", "names no repository"),
        ] {
            let url = crate::url::parse(text).unwrap();
            let err = resolve_target(
                config,
                Target::Url(&url),
                false,
                &c.env,
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = resolve_target(
            config,
            Target::Org {
                org: "nobody",
                repo: "x",
            },
            false,
            &c.env,
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("setup --org nobody"), "{err}");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert!(format_time(i64::MAX).contains("out of range"));
    }

    #[test]
    fn describe_expiry_reads_naturally() {
        assert_eq!(describe_expiry(NOW + 42 * 60, NOW), "expires in 42m");
        assert_eq!(describe_expiry(NOW - 180, NOW), "expired 3m ago");
        assert_eq!(describe_expiry(NOW + 5400, NOW), "expires in 1h30m");
        assert_eq!(describe_expiry(NOW + 5, NOW), "expires in 5s");
    }
}
