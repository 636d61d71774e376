//! From a request's host and path to an organisation, a repository ID and the settings of the
//! token: the one resolver that `get`, `token` and `doctor` share.

use std::fmt;

use crate::config::{Config, Org};
use crate::env::{self, Env};
use crate::key::{KeySource, LoadOptions};
use crate::token::{Op, RefRule, Scope};
use crate::ttl::Ttl;

/// The suffix of Code Storage's own git hosts.
pub const CODE_STORAGE_SUFFIX: &str = ".code.storage";

/// Environment variables, with the official TypeScript helper's names as aliases.
pub mod vars {
    /// PEM text of a key for unconfigured `*.code.storage` hosts.
    pub const PRIVATE_KEY: &[&str] = &["CODESTORAGE_PRIVATE_KEY", "PIERRE_PRIVATE_KEY"];
    /// Path of a key file for unconfigured `*.code.storage` hosts.
    pub const PRIVATE_KEY_FILE: &[&str] =
        &["CODESTORAGE_PRIVATE_KEY_FILE", "PIERRE_PRIVATE_KEY_FILE"];
    /// Token lifetime, overriding the config.
    pub const TTL: &[&str] = &["CODESTORAGE_TTL", "PIERRE_TOKEN_TTL"];
    /// Comma-separated scopes, overriding the config.
    pub const SCOPES: &[&str] = &["CODESTORAGE_SCOPES"];
    /// The `sub` claim, overriding the config.
    pub const SUBJECT: &[&str] = &["CODESTORAGE_SUBJECT"];
    /// One stderr line per decision.
    pub const DEBUG: &[&str] = &["CODESTORAGE_DEBUG", "PIERRE_DEBUG"];
    /// Accept key files others may read.
    pub const ALLOW_INSECURE: &[&str] = &["CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS"];
    /// Seconds (or "30s") a key_command may run.
    pub const KEY_COMMAND_TIMEOUT: &[&str] = &["CODESTORAGE_KEY_COMMAND_TIMEOUT"];
}

/// Whether an environment flag such as `CODESTORAGE_DEBUG` is on.
pub fn flag(env: &dyn Env, names: &[&'static str]) -> bool {
    env::first_set(env, names)
        .is_some_and(|(_, v)| !matches!(v.as_str(), "0" | "false" | "no" | "off"))
}

/// The organisation a host belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner<'c> {
    /// Named in the config (by `hosts`, or as `<name>.code.storage` of a configured `[org.name]`).
    Configured(&'c Org),
    /// `<name>.code.storage`, not in the config: keys come from the environment.
    Implicit(String),
}

impl Owner<'_> {
    /// The organisation's name: the `iss` claim.
    pub fn name(&self) -> &str {
        match self {
            Self::Configured(org) => &org.name,
            Self::Implicit(name) => name,
        }
    }
}

/// Finds the organisation for `host` (`host` or `host:port`, any case), or `None` if it is not ours.
pub fn owner<'c>(config: Option<&'c Config>, host: &str) -> Option<Owner<'c>> {
    let lower = host.to_ascii_lowercase();
    if let Some(org) = config.and_then(|c| c.orgs.values().find(|o| o.hosts.contains(&lower))) {
        return Some(Owner::Configured(org));
    }
    let (name_and_suffix, port) = split_port(host);
    if !port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let len = name_and_suffix.len();
    // `get`, not indexing: the cut may fall inside a multi-byte character (`é` + 12 letters).
    if len <= CODE_STORAGE_SUFFIX.len()
        || !name_and_suffix
            .get(len - CODE_STORAGE_SUFFIX.len()..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(CODE_STORAGE_SUFFIX))
    {
        return None;
    }
    let name = &name_and_suffix[..len - CODE_STORAGE_SUFFIX.len()];
    // One DNS label: `api.acme.code.storage` or `a b.code.storage` are not git hosts.
    let label = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !label {
        return None;
    }
    let configured =
        config.and_then(|c| c.orgs.values().find(|o| o.name.eq_ignore_ascii_case(name)));
    Some(match configured {
        Some(org) => Owner::Configured(org),
        None => Owner::Implicit(name.to_ascii_lowercase()),
    })
}

/// Splits `host:port`, `[v6]:port` or a bare host.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((address, after)) => (address, after.strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, Some(port)),
        _ => (host, None),
    }
}

/// Whether `host` (with or without a port) is this machine: 127.0.0.0/8, ::1 or localhost.
pub fn is_loopback(host: &str) -> bool {
    let (name, _) = split_port(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why [`protocol_allowed`] refuses, for messages.
pub const HTTPS_ONLY: &str = "tokens go over https only (http only to a loopback host whose organisation sets allow_http = true)";

/// Whether a token may be sent over `protocol` to `host`: https always, http only to a
/// loopback host whose organisation sets `allow_http = true`.
pub fn protocol_allowed(protocol: &str, host: &str, owner: &Owner<'_>) -> bool {
    match protocol {
        "https" => true,
        "http" => matches!(owner, Owner::Configured(org) if org.allow_http) && is_loopback(host),
        _ => false,
    }
}

/// Why a request path does not name a repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoIdError {
    /// Nothing is left after trimming.
    #[error("the URL names no repository; use https://ORG.code.storage/REPO.git")]
    Empty,
    /// An empty, `.` or `..` segment.
    #[error("repository path {0:?} has an empty, '.' or '..' segment")]
    Segment(String),
    /// A character no repository ID holds.
    #[error(
        "repository path {0:?} holds a character a repository ID cannot (control, whitespace, '\\', '%', '?' or '#')"
    )]
    Character(String),
}

/// The repository ID for a request path, as git sends it (already %-decoded: never decode again).
pub fn repo_id(path: &str) -> Result<String, RepoIdError> {
    let shown = || path.escape_debug().to_string();
    let trimmed = path.trim_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    // Ephemeral and import remotes use the base repository's token.
    let id = trimmed
        .strip_suffix("+ephemeral")
        .or_else(|| trimmed.strip_suffix("+import"))
        .unwrap_or(trimmed);
    if id.is_empty() {
        return Err(RepoIdError::Empty);
    }
    // Printable ASCII only: what Code Storage's IDs are made of, and nothing a terminal, a
    // URL or a path could read twice (no %-escape, no backslash, no look-alike Unicode).
    if id
        .chars()
        .any(|c| !c.is_ascii_graphic() || matches!(c, '\\' | '%' | '?' | '#'))
    {
        return Err(RepoIdError::Character(shown()));
    }
    if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(RepoIdError::Segment(shown()));
    }
    Ok(id.to_owned())
}

/// Values given on the command line (`token --ttl ...`), above everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--ttl`.
    pub ttl: Option<Ttl>,
    /// `--scopes`.
    pub scopes: Option<Vec<Scope>>,
    /// `--subject`.
    pub subject: Option<String>,
}

/// Everything needed to sign one token, and where each part came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `iss` claim.
    pub org: String,
    /// The `repo` claim.
    pub repo: String,
    /// The `sub` claim.
    pub subject: String,
    /// The `scopes` claim.
    pub scopes: Vec<Scope>,
    /// The token's lifetime.
    pub ttl: Ttl,
    /// Repository-wide ref policies.
    pub ops: Option<Vec<Op>>,
    /// Per-ref policies.
    pub refs: Option<Vec<RefRule>>,
    /// Where the key comes from.
    pub key: KeySource,
    /// How to read it.
    pub load_options: LoadOptions,
    /// The repository rule that matched: its line and pattern.
    pub rule: Option<(usize, String)>,
}

/// Why settings could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A `*.code.storage` host with no key anywhere.
    #[error(
        "no key for organisation {org:?}: add [org.{org}] to the config with `git-credential-codestorage setup --org {org} --key-file PATH`, or set CODESTORAGE_PRIVATE_KEY_FILE"
    )]
    NoKey {
        /// The organisation.
        org: String,
    },
    /// An environment variable holds a bad value.
    #[error("{name}={value:?}: {message}")]
    BadEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

/// Resolves the settings for `repo` of `owner`. Precedence for every field: overrides >
/// environment > first matching repository rule > organisation > top level > built-in default.
pub fn settings(
    config: Option<&Config>,
    owner: &Owner<'_>,
    repo: &str,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Settings, ResolveError> {
    let (org, rule) = match owner {
        Owner::Configured(org) => (
            Some(*org),
            org.rules.iter().find(|r| r.pattern.matches(repo)),
        ),
        Owner::Implicit(_) => (None, None),
    };
    let levels = [
        rule.map(|r| &r.level),
        org.map(|o| &o.level),
        config.map(|c| &c.level),
    ];
    let from_files = |pick: fn(&crate::config::Level) -> Option<_>| {
        levels.iter().flatten().find_map(|l| pick(l))
    };

    let ttl = match (overrides.ttl, env_value(env, vars::TTL, Ttl::parse)?) {
        (Some(ttl), _) | (None, Some(ttl)) => ttl,
        (None, None) => from_files(|l| l.ttl).unwrap_or(Ttl::DEFAULT),
    };
    let scopes = match (
        &overrides.scopes,
        env_value(env, vars::SCOPES, parse_scopes)?,
    ) {
        (Some(scopes), _) => scopes.clone(),
        (None, Some(scopes)) => scopes,
        (None, None) => levels
            .iter()
            .flatten()
            .find_map(|l| l.scopes.clone())
            .unwrap_or_else(|| vec![Scope::GitRead, Scope::GitWrite]),
    };
    let subject = match (&overrides.subject, env::first_set(env, vars::SUBJECT)) {
        (Some(subject), _) => subject.clone(),
        (None, Some((_, subject))) => subject,
        (None, None) => levels
            .iter()
            .flatten()
            .find_map(|l| l.subject.clone())
            .unwrap_or_else(|| default_subject(env)),
    };
    let key = match org {
        Some(org) => org.key.clone(),
        None => env_key(env).ok_or_else(|| ResolveError::NoKey {
            org: owner.name().to_owned(),
        })?,
    };
    let load_options = load_options(org, env)?;
    Ok(Settings {
        org: owner.name().to_owned(),
        repo: repo.to_owned(),
        subject,
        scopes,
        ttl,
        ops: rule.and_then(|r| r.ops.clone()),
        refs: rule.and_then(|r| r.refs.clone()),
        key,
        load_options,
        rule: rule.map(|r| (r.line, r.pattern.as_str().to_owned())),
    })
}

/// How the key of `org` (or of the environment, for `None`) is read: the config's and the
/// environment's permission and timeout settings.
pub fn load_options(org: Option<&Org>, env: &dyn Env) -> Result<LoadOptions, ResolveError> {
    let command_timeout = env_value(env, vars::KEY_COMMAND_TIMEOUT, Ttl::parse)?
        .map_or(crate::key::DEFAULT_COMMAND_TIMEOUT, |t| {
            std::time::Duration::from_secs(t.seconds())
        });
    Ok(LoadOptions {
        allow_insecure_permissions: org.is_some_and(|o| o.allow_insecure_key_permissions)
            || flag(env, vars::ALLOW_INSECURE),
        command_timeout,
    })
}

/// The organisation called `name` (`token --org NAME`): the configured one, matched as
/// [`owner`] matches `<name>.code.storage`, or an implicit one whose key is in the environment.
pub fn owner_by_name<'c>(config: Option<&'c Config>, name: &str) -> Owner<'c> {
    match config.and_then(|c| c.orgs.values().find(|o| o.name.eq_ignore_ascii_case(name))) {
        Some(org) => Owner::Configured(org),
        None => Owner::Implicit(name.to_ascii_lowercase()),
    }
}

/// The key the environment offers for unconfigured `*.code.storage` hosts, if any.
pub fn env_key(env: &dyn Env) -> Option<KeySource> {
    if let Some((name, _)) = env::first_set(env, vars::PRIVATE_KEY) {
        return Some(KeySource::Env(name.to_owned()));
    }
    env::first_set(env, vars::PRIVATE_KEY_FILE).map(|(_, path)| {
        KeySource::File(crate::config::expand_path(&path, std::path::Path::new(".")))
    })
}

fn env_value<T, E: fmt::Display>(
    env: &dyn Env,
    names: &[&'static str],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ResolveError> {
    match env::first_set(env, names) {
        None => Ok(None),
        Some((name, value)) => parse(&value).map(Some).map_err(|e| ResolveError::BadEnv {
            name,
            message: e.to_string(),
            value,
        }),
    }
}

/// Parses a comma-separated scope list such as `git:read,git:write`.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name).ok_or_else(|| {
            format!("unknown scope {name:?}; use git:read, git:write, repo:write or org:read")
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err("no scopes given; e.g. git:read,git:write".into());
    }
    Ok(scopes)
}

/// `<user>@<hostname>`, read without spawning a process.
pub fn default_subject(env: &dyn Env) -> String {
    let user = env
        .var("USER")
        .or_else(|| env.var("LOGNAME"))
        .or_else(|| env.var("USERNAME"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| env.var("HOSTNAME"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.chars().any(char::is_control))
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::env::MapEnv;
    use std::path::Path;

    fn config(text: &str) -> Config {
        config::parse(text, Path::new("/c/config.toml")).unwrap()
    }

    const RULES: &str = r#"
ttl = "2h"
subject = "top"
[org.acme]
key_file = "/k/acme.pem"
hosts = ["acme.code.storage", "git.acme.dev:8443", "127.0.0.1:9000"]
allow_http = true
scopes = ["git:write"]
[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
ttl = "5m"
[[org.acme.repo]]
match = "mirrors/**"
ttl = "7m"
subject = "mirror-bot"
ops = ["no-force-push"]
"#;

    #[test]
    fn hosts_named_in_config_win_then_code_storage_names() {
        let c = config(RULES);
        assert_eq!(
            owner(Some(&c), "GIT.acme.dev:8443").map(|o| o.name().to_owned()),
            Some("acme".into())
        );
        assert_eq!(owner(Some(&c), "git.acme.dev"), None);
        assert!(matches!(
            owner(Some(&c), "acme.code.storage"),
            Some(Owner::Configured(_))
        ));
        assert_eq!(
            owner(Some(&c), "beta.code.storage"),
            Some(Owner::Implicit("beta".into()))
        );
        assert_eq!(
            owner(None, "Beta.Code.Storage:443"),
            Some(Owner::Implicit("beta".into()))
        );
        for not_ours in [
            "github.com",
            "code.storage",
            ".code.storage",
            "api.acme.code.storage",
            "acme.code.storage.evil.com",
            "a b.code.storage",
            "user@acme.code.storage",
            "acme.code.storage:",
            "acme.code.storage:x",
            "acmecode.storage",
        ] {
            assert_eq!(owner(Some(&c), not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn http_only_to_loopback_hosts_that_allow_it() {
        let c = config(RULES);
        let acme = owner(Some(&c), "127.0.0.1:9000").unwrap();
        assert!(protocol_allowed("https", "127.0.0.1:9000", &acme));
        assert!(protocol_allowed("http", "127.0.0.1:9000", &acme));
        let remote = owner(Some(&c), "git.acme.dev:8443").unwrap();
        assert!(!protocol_allowed("http", "git.acme.dev:8443", &remote));
        assert!(!protocol_allowed(
            "http",
            "beta.code.storage",
            &Owner::Implicit("beta".into())
        ));
        assert!(!protocol_allowed("ssh", "127.0.0.1:9000", &acme));
        assert!(
            is_loopback("localhost:80") && is_loopback("[::1]:8080") && is_loopback("127.9.9.9")
        );
        assert!(!is_loopback("10.0.0.1") && !is_loopback("localhost.evil.com"));
    }

    #[test]
    fn repo_ids_strip_git_and_remote_suffixes_and_keep_slashes() {
        assert_eq!(
            repo_id("team/project-alpha.git").unwrap(),
            "team/project-alpha"
        );
        assert_eq!(repo_id("/team/x.git/").unwrap(), "team/x");
        assert_eq!(repo_id("team/x+ephemeral.git").unwrap(), "team/x");
        assert_eq!(repo_id("team/x+import.git").unwrap(), "team/x");
        assert_eq!(repo_id("x").unwrap(), "x");
        assert_eq!(
            repo_id("123e4567-e89b-12d3-a456-426614174000.git").unwrap(),
            "123e4567-e89b-12d3-a456-426614174000"
        );
    }

    #[test]
    fn repo_ids_refuse_traversal_and_odd_characters() {
        assert_eq!(repo_id("/.git"), Err(RepoIdError::Empty));
        assert_eq!(repo_id("//"), Err(RepoIdError::Empty));
        for bad in ["a/../b.git", "../x", "a//b", "./a", "a/."] {
            assert!(
                matches!(repo_id(bad), Err(RepoIdError::Segment(_))),
                "{bad}"
            );
        }
        for bad in [
            "a\\b",
            "%2e%2e/x",
            "a b",
            "a\tb",
            "a\u{1b}b",
            "a?b",
            "a#b",
            "caf\u{e9}",
            "\u{fffd}",
        ] {
            assert!(
                matches!(repo_id(bad), Err(RepoIdError::Character(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn first_matching_rule_wins_over_org_and_top_level() {
        let c = config(RULES);
        let acme = owner(Some(&c), "acme.code.storage").unwrap();
        let env = MapEnv::default();
        let s = settings(
            Some(&c),
            &acme,
            "mirrors/linux",
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            (s.ttl.seconds(), s.scopes.clone()),
            (300, vec![Scope::GitRead])
        );
        assert_eq!(s.subject, "top");
        assert_eq!(s.rule, Some((9, "mirrors/*".into())));
        assert_eq!(s.ops, None);
        let s = settings(Some(&c), &acme, "mirrors/a/b", &env, &Overrides::default()).unwrap();
        assert_eq!((s.ttl.seconds(), s.subject.as_str()), (420, "mirror-bot"));
        assert_eq!(s.scopes, [Scope::GitWrite]);
        assert_eq!(s.ops, Some(vec![Op::NoForcePush]));
        let s = settings(Some(&c), &acme, "team/x", &env, &Overrides::default()).unwrap();
        assert_eq!((s.ttl.seconds(), s.rule.clone()), (7200, None));
        assert_eq!(s.key, KeySource::File("/k/acme.pem".into()));
    }

    #[test]
    fn environment_beats_files_and_overrides_beat_environment() {
        let c = config(RULES);
        let acme = owner(Some(&c), "acme.code.storage").unwrap();
        let env = MapEnv::from([
            ("CODESTORAGE_TTL", "90s"),
            ("CODESTORAGE_SCOPES", "git:read, org:read"),
            ("CODESTORAGE_SUBJECT", "ci"),
        ]);
        let s = settings(
            Some(&c),
            &acme,
            "mirrors/linux",
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!((s.ttl.seconds(), s.subject.as_str()), (90, "ci"));
        assert_eq!(s.scopes, [Scope::GitRead, Scope::OrgRead]);
        let overrides = Overrides {
            ttl: Some(Ttl::from_seconds(60).unwrap()),
            scopes: Some(vec![Scope::RepoWrite]),
            subject: Some("cli".into()),
        };
        let s = settings(Some(&c), &acme, "mirrors/linux", &env, &overrides).unwrap();
        assert_eq!((s.ttl.seconds(), s.subject.as_str()), (60, "cli"));
        assert_eq!(s.scopes, [Scope::RepoWrite]);
    }

    #[test]
    fn official_helper_names_are_aliases_and_bad_values_are_errors() {
        let env = MapEnv::from([("PIERRE_TOKEN_TTL", "600"), ("PIERRE_PRIVATE_KEY", "pem")]);
        let s = settings(
            None,
            &Owner::Implicit("beta".into()),
            "x",
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.ttl.seconds(), 600);
        assert_eq!(s.key, KeySource::Env("PIERRE_PRIVATE_KEY".into()));
        assert_eq!(s.scopes, [Scope::GitRead, Scope::GitWrite]);
        let env = MapEnv::from([
            ("CODESTORAGE_PRIVATE_KEY_FILE", "/k.pem"),
            ("CODESTORAGE_SCOPES", "git:push"),
        ]);
        let err = settings(
            None,
            &Owner::Implicit("beta".into()),
            "x",
            &env,
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CODESTORAGE_SCOPES=\"git:push\": unknown scope"),
            "{err}"
        );
    }

    #[test]
    fn implicit_org_without_any_key_says_how_to_add_one() {
        let err = settings(
            None,
            &Owner::Implicit("beta".into()),
            "x",
            &MapEnv::default(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err, ResolveError::NoKey { org: "beta".into() });
        assert!(err.to_string().contains("setup --org beta"));
    }

    #[test]
    fn default_subject_is_user_at_host() {
        let env = MapEnv::from([("USER", "alice")]);
        let subject = default_subject(&env);
        assert!(
            subject.starts_with("alice@") && subject.len() > 6,
            "{subject}"
        );
    }
}
