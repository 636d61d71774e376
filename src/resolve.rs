//! The one resolution pipeline: from what git asks for (or `token`/`doctor` name) to the
//! organisation, the repository ID and every setting of the token, or a typed refusal that says
//! how git must be answered. `get`, `token` and `doctor URL` all go through [`resolve`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, Org};
use crate::env::{self, Env, vars};
use crate::host::{Host, OrgName};
use crate::key::{KeySource, LoadOptions};
use crate::log::{Escaped, Shown};
use crate::operation::Operation;
use crate::token::{ORG_WIDE_REPO, Op, RefRule, Scope};
use crate::ttl::{Ttl, TtlError};

/// What a token is wanted for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// git's request (or a URL read as git would send it): protocol, host and, with
    /// `credential.useHttpPath`, the path.
    Request {
        /// `https` (or `http` to a loopback host that allows it).
        protocol: &'a str,
        /// `host` or `host:port`.
        host: &'a str,
        /// The repository path, already %-decoded.
        path: Option<&'a str>,
    },
    /// An organisation by name and a repository ID or path (`token --org NAME REPO`).
    Org {
        /// The organisation.
        org: &'a OrgName,
        /// The repository.
        repo: &'a str,
    },
}

impl<'a> Target<'a> {
    /// What `get` would be asked for a remote URL, to resolve exactly as git's request would be.
    pub fn of_url(url: &'a crate::url::RemoteUrl) -> Self {
        Self::Request {
            protocol: &url.protocol,
            host: &url.host,
            path: Some(&url.path),
        }
    }
}

/// Whether the token is for one repository or the whole organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The repository the target names.
    Repository,
    /// The organisation (`repo: "org"`, as the SDKs sign for `org:read`); scopes default to
    /// `org:read`.
    Organisation,
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

/// How git must be answered when no token can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Not ours: print nothing (a debug line at most) so git asks its next helper.
    Decline,
    /// Probably ours but not set up: say why, then let the next helper try.
    DeclineWithHint,
    /// Ours, and nothing else can help: say why and tell git to stop (`quit=1`), no prompt.
    Quit,
}

/// Why no settings came out of the pipeline; [`ResolveError::disposition`] says how to answer.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The request names no protocol or no host.
    #[error("the request names no protocol or host")]
    Incomplete,
    /// The host is not a host name.
    #[error(transparent)]
    BadHost(#[from] crate::host::HostError),
    /// The host belongs to no organisation.
    #[error(
        "{host} is not a Code Storage host; Code Storage hosts are ORG.code.storage, and other hosts must be listed in an organisation's hosts in {config}"
    )]
    NotOurs {
        /// The host.
        host: Host,
        /// The config file, or "the config file".
        config: String,
    },
    /// A protocol tokens are not sent over.
    #[error("{protocol}://{host}: tokens go over https only (http only to a loopback host whose organisation sets allow_http = true)", protocol = Escaped(.protocol))]
    Protocol {
        /// The protocol.
        protocol: String,
        /// The host.
        host: Host,
    },
    /// git did not send the path.
    #[error(
        "git did not send the repository path for {host}, so no per-repository token can be made; run: {fix}"
    )]
    NoPath {
        /// The host.
        host: Host,
        /// The command that turns on `useHttpPath`.
        fix: String,
    },
    /// The path names no repository.
    #[error(transparent)]
    RepoId(#[from] RepoIdError),
    /// The config file is broken. git runs the helper only for hosts routed to it, so the host
    /// is ours even when the broken file cannot say so (a custom host listed in `hosts`).
    #[error("{source}")]
    Config {
        /// What is wrong with it.
        source: ConfigError,
    },
    /// A `*.code.storage` host with no key anywhere.
    #[error(
        "no key for organisation {org}: {}, or set CODESTORAGE_PRIVATE_KEY_FILE",
        add_key(org, key_file)
    )]
    NoKey {
        /// The organisation.
        org: OrgName,
        /// Where `keygen --org ORG` writes the key, so the fix works as printed.
        key_file: PathBuf,
    },
    /// A `*.code.storage` organisation the config does not name while it names others: more
    /// often a typo in a remote URL than a new organisation, and no other helper will answer.
    #[error(
        "organisation {org} is not configured in {} (it configures {}){}; if {org} is another organisation, {}",
        .config.display(),
        .known.join(", "),
        .closest.as_ref().map(|c| format!("; did you mean {c}? Correct the host in the remote URL to {c}.code.storage")).unwrap_or_default(),
        add_key(org, key_file)
    )]
    UnknownOrg {
        /// The organisation the host names.
        org: OrgName,
        /// The config file. (Both paths are boxed: Windows' `PathBuf` is wider, and every
        /// `Result` carrying this error would grow with it.)
        config: Box<Path>,
        /// The organisations it configures.
        known: Vec<String>,
        /// The configured name closest to `org`, if one is close.
        closest: Option<String>,
        /// Where `keygen --org ORG` writes the key, so the fix works as printed.
        key_file: Box<Path>,
    },
    /// A switch variable is neither on nor off.
    #[error(transparent)]
    Switch(#[from] crate::env::SwitchError),
    /// An environment variable holds a bad value; a value that looks like a key is never shown.
    #[error("{name}={}: {problem}", if matches!(.problem, EnvProblem::PemNotPath) { "<PEM text, not shown>".to_owned() } else { Shown(.value).to_string() })]
    BadEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: EnvProblem,
    },
}

/// What is wrong with an environment variable's value.
#[derive(Debug, thiserror::Error)]
pub enum EnvProblem {
    /// A bad ttl.
    #[error(transparent)]
    Ttl(#[from] TtlError),
    /// A bad scope list.
    #[error(transparent)]
    Scopes(#[from] ScopesError),
    /// A subject with control characters.
    #[error("a subject must be non-empty and hold no control characters")]
    Subject,
    /// PEM text where a file path belongs.
    #[error(
        "this variable takes the path of a key file, and its value looks like the PEM text of a key itself; put PEM text in CODESTORAGE_PRIVATE_KEY instead"
    )]
    PemNotPath,
}

/// The commands that give organisation `org` a key: `keygen` (unless its key file is already
/// there) and `setup` naming that file.
fn add_key(org: &OrgName, key_file: &std::path::Path) -> String {
    let file = crate::shell::quote(&key_file.to_string_lossy());
    if key_file.exists() {
        format!(
            "add the key keygen made with `git-credential-codestorage setup --org {org} --key-file {file}`"
        )
    } else {
        format!(
            "make one with `git-credential-codestorage keygen --org {org}` and add it with `git-credential-codestorage setup --org {org} --key-file {file}`"
        )
    }
}

impl ResolveError {
    /// How git must be answered.
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::Incomplete | Self::BadHost(_) | Self::NotOurs { .. } | Self::Protocol { .. } => {
                Disposition::Decline
            }
            // Another helper may still know this host.
            Self::NoKey { .. } => Disposition::DeclineWithHint,
            Self::Config { .. }
            | Self::NoPath { .. }
            | Self::UnknownOrg { .. }
            | Self::RepoId(_)
            | Self::BadEnv { .. }
            | Self::Switch(_) => Disposition::Quit,
        }
    }
}

/// The organisation a host belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner<'c> {
    /// Named in the config (by `hosts`, or as `<name>.code.storage` of a configured `[org.name]`).
    Configured(&'c Org),
    /// `<name>.code.storage`, not in the config: keys come from the environment.
    Implicit(OrgName),
}

impl Owner<'_> {
    /// The organisation's name: the `iss` claim.
    pub fn name(&self) -> &OrgName {
        match self {
            Self::Configured(org) => &org.name,
            Self::Implicit(name) => name,
        }
    }
}

/// Finds the organisation for `host`, or `None` if it is not ours.
pub fn owner<'c>(config: Option<&'c Config>, host: &Host) -> Option<Owner<'c>> {
    let orgs = || config.into_iter().flat_map(|c| c.orgs.values());
    if let Some(org) = orgs().find(|o| o.hosts.contains(host)) {
        return Some(Owner::Configured(org));
    }
    let name = host.code_storage_org()?;
    Some(owner_by_name(config, &name))
}

/// The organisation called `name`: the configured one (names match without regard to case), or
/// an implicit one whose key is in the environment.
pub fn owner_by_name<'c>(config: Option<&'c Config>, name: &OrgName) -> Owner<'c> {
    match config.and_then(|c| c.orgs.values().find(|o| o.name.matches(name.as_str()))) {
        Some(org) => Owner::Configured(org),
        None => Owner::Implicit(
            OrgName::parse(&name.as_str().to_ascii_lowercase()).unwrap_or_else(|_| name.clone()),
        ),
    }
}

/// Whether a token may be sent over `protocol` to `host`: https always, http only to a
/// loopback host whose organisation sets `allow_http = true`.
pub fn protocol_allowed(protocol: &str, host: &Host, owner: &Owner<'_>) -> bool {
    match protocol {
        "https" => true,
        "http" => matches!(owner, Owner::Configured(org) if org.allow_http) && host.is_loopback(),
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
    #[error("repository path {} has an empty, '.' or '..' segment", Shown(.0))]
    Segment(String),
    /// A character no repository ID holds.
    #[error(
        "repository path {} holds a character a repository ID cannot (control, whitespace, '\\', '%', '?' or '#')",
        Shown(.0)
    )]
    Character(String),
    /// `org`, which the SDKs use for organisation-wide tokens.
    #[error(
        "repository path {} names the repository \"org\", which Code Storage reads as the whole organisation; no repository token is signed for it (use `git-credential-codestorage token --org-wide` for an organisation-wide token)",
        Shown(.0)
    )]
    OrgWide(String),
}

/// The repository ID for a request path, as git sends it (already %-decoded: never decode again)
/// or as other clients do (see [`crate::url::repository_path`]).
pub fn repo_id(path: &str) -> Result<String, RepoIdError> {
    let trimmed = crate::url::repository_path(path).trim_matches('/');
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
        return Err(RepoIdError::Character(path.to_owned()));
    }
    if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(RepoIdError::Segment(path.to_owned()));
    }
    if id == ORG_WIDE_REPO {
        return Err(RepoIdError::OrgWide(path.to_owned()));
    }
    Ok(id.to_owned())
}

/// Everything needed to sign one token, and where each part came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `iss` claim.
    pub org: OrgName,
    /// Whether the organisation is in the config (or only implied by its host name).
    pub configured: bool,
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
    /// Narrow the scopes to `git:read` when the git command asking only reads.
    pub least_privilege: bool,
}

impl Settings {
    /// Least privilege: a command that only reads gets `git:read` alone; a push, or anything
    /// that cannot be told, keeps the configured scopes. It only ever narrows, and only when on.
    pub fn narrow_to(&mut self, operation: Operation) {
        // `git:write` includes read (Code Storage's scope table), so `git:read` alone narrows a
        // rule of `["git:write"]` too; a rule with neither (say `["org:read"]`) is left alone.
        let grants_git = self
            .scopes
            .iter()
            .any(|s| matches!(s, Scope::GitRead | Scope::GitWrite));
        if self.least_privilege && operation == Operation::Read && grants_git {
            self.scopes = vec![Scope::GitRead];
        }
    }
}

/// The one summary of a resolution, for `CODESTORAGE_DEBUG` and `doctor URL`.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "org {} ({}), repo {}, rule ",
            self.org,
            if self.configured {
                "from config"
            } else {
                "from the host name"
            },
            self.repo
        )?;
        match &self.rule {
            Some((line, pattern)) => write!(f, "{} (line {line})", Shown(pattern))?,
            None => f.write_str("none")?,
        }
        write!(
            f,
            ", {}, ttl {}, scopes {}, sub {}",
            self.key,
            self.ttl,
            join(&self.scopes),
            Escaped(&self.subject)
        )
    }
}

/// Joins scopes as `git:read+git:write`.
pub fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The pipeline: host → organisation → protocol → repository ID → settings, the same steps for
/// `get`, `token` and `doctor URL`. `config` is the result of loading the config file.
pub fn resolve(
    config: Result<Option<&Config>, &ConfigError>,
    target: Target<'_>,
    reach: Reach,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Settings, ResolveError> {
    let (owner, path, config) = match target {
        Target::Request {
            protocol,
            host,
            path,
        } => {
            if protocol.is_empty() || host.is_empty() {
                return Err(ResolveError::Incomplete);
            }
            let host = Host::parse(host)?;
            let config = config.map_err(|e| ResolveError::Config { source: e.clone() })?;
            let owner = owner(config, &host).ok_or_else(|| ResolveError::NotOurs {
                host: host.clone(),
                config: config.map_or_else(
                    || "the config file".to_owned(),
                    |c| c.path.display().to_string(),
                ),
            })?;
            if !protocol_allowed(protocol, &host, &owner) {
                return Err(ResolveError::Protocol {
                    protocol: protocol.to_owned(),
                    host,
                });
            }
            let path = match (path, reach) {
                (Some(path), _) => path,
                (None, Reach::Organisation) => "",
                (None, Reach::Repository) => {
                    let fix = crate::gitconfig::use_http_path_fix(&host);
                    return Err(ResolveError::NoPath { host, fix });
                }
            };
            (owner, path, config)
        }
        Target::Org { org, repo } => {
            let config = config.map_err(|e| ResolveError::Config { source: e.clone() })?;
            (owner_by_name(config, org), repo, config)
        }
    };
    let repo = match reach {
        Reach::Repository => repo_id(path)?,
        Reach::Organisation => ORG_WIDE_REPO.to_owned(),
    };
    settings(config, &owner, &repo, reach, env, overrides)
}

/// Resolves the settings for `repo` of `owner`. Precedence for every field: overrides >
/// environment > first matching repository rule > organisation > top level > built-in default.
fn settings(
    config: Option<&Config>,
    owner: &Owner<'_>,
    repo: &str,
    reach: Reach,
    env: &dyn Env,
    overrides: &Overrides,
) -> Result<Settings, ResolveError> {
    let (org, rule) = match owner {
        Owner::Configured(org) if reach == Reach::Repository => (
            Some(*org),
            org.rules.iter().find(|r| r.pattern.matches(repo)),
        ),
        Owner::Configured(org) => (Some(*org), None),
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
        (None, None) if reach == Reach::Organisation => vec![Scope::OrgRead],
        (None, None) => levels
            .iter()
            .flatten()
            .find_map(|l| l.scopes.clone())
            .unwrap_or_else(|| vec![Scope::GitRead, Scope::GitWrite]),
    };
    let subject = match (
        &overrides.subject,
        env_value(env, vars::SUBJECT, parse_subject)?,
    ) {
        (Some(subject), _) => subject.clone(),
        (None, Some(subject)) => subject,
        (None, None) => levels
            .iter()
            .flatten()
            .find_map(|l| l.subject.clone())
            .unwrap_or_else(|| default_subject(env)),
    };
    let key = key_of(org, config, owner, env)?;
    let least_privilege = match env::switch(env, vars::LEAST_PRIVILEGE)? {
        Some(on) => on,
        None => levels
            .iter()
            .flatten()
            .find_map(|l| l.least_privilege)
            .unwrap_or(true),
    };
    let mut load_options = load_options(org, env)?;
    load_options.from_environment = org.is_none();
    Ok(Settings {
        org: owner.name().clone(),
        configured: org.is_some(),
        repo: repo.to_owned(),
        subject,
        scopes,
        ttl,
        ops: rule.and_then(|r| r.ops.clone()),
        refs: rule.and_then(|r| r.refs.clone()),
        key,
        load_options,
        rule: rule.map(|r| (r.line, r.pattern.as_str().to_owned())),
        least_privilege,
    })
}

/// The key of `org`, or for an organisation the config does not name, the one the environment
/// gives; without one, [`no_key`] says why.
fn key_of(
    org: Option<&Org>,
    config: Option<&Config>,
    owner: &Owner<'_>,
    env: &dyn Env,
) -> Result<KeySource, ResolveError> {
    match org {
        Some(org) => Ok(org.key.clone()),
        None => env_key(env)?.ok_or_else(|| no_key(config, owner.name())),
    }
}

/// Why organisation `org`, named by a host and not configured, has no key: a config that
/// configures other organisations makes it [`ResolveError::UnknownOrg`] (with the closest name),
/// else [`ResolveError::NoKey`] naming where `keygen` would put it.
fn no_key(config: Option<&Config>, org: &OrgName) -> ResolveError {
    let key_file = crate::paths::default_key_file(org.as_str())
        .unwrap_or_else(|| PathBuf::from(format!("{org}.pem")));
    let Some(config) = config.filter(|c| !c.orgs.is_empty()) else {
        return ResolveError::NoKey {
            org: org.clone(),
            key_file,
        };
    };
    let known: Vec<String> = config.orgs.values().map(|o| o.name.to_string()).collect();
    let wanted = org.as_str().to_ascii_lowercase();
    // Close: a slip of a key or two, never more than a third of the name.
    let closest = known
        .iter()
        .map(|name| {
            (
                strsim::levenshtein(&wanted, &name.to_ascii_lowercase()),
                name,
            )
        })
        .filter(|(distance, name)| *distance <= 2 && *distance * 3 <= name.len().max(3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name.clone());
    ResolveError::UnknownOrg {
        org: org.clone(),
        config: config.path.clone().into(),
        known,
        closest,
        key_file: key_file.into(),
    }
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
            || env::switch(env, vars::ALLOW_INSECURE)?.unwrap_or(false),
        command_timeout,
        from_environment: org.is_none(),
    })
}

/// The key the environment offers for unconfigured `*.code.storage` hosts, if any.
pub fn env_key(env: &dyn Env) -> Result<Option<KeySource>, ResolveError> {
    if let Some((name, _)) = env::first_set(env, vars::PRIVATE_KEY) {
        return Ok(Some(KeySource::Env(name.to_owned())));
    }
    let path = env_value(env, vars::PRIVATE_KEY_FILE, |path| {
        if crate::key::pem::looks_like_pem(path) {
            Err(EnvProblem::PemNotPath)
        } else {
            Ok(crate::config::expand_path(path, std::path::Path::new(".")))
        }
    })?;
    Ok(path.map(KeySource::File))
}

fn parse_subject(text: &str) -> Result<String, EnvProblem> {
    if crate::config::valid_subject(text) {
        Ok(text.to_owned())
    } else {
        Err(EnvProblem::Subject)
    }
}

/// Checks every environment variable the pipeline reads, for `doctor`.
pub fn check_env(env: &dyn Env) -> Result<(), ResolveError> {
    env_value(env, vars::TTL, Ttl::parse)?;
    env_value(env, vars::SCOPES, parse_scopes)?;
    env_value(env, vars::SUBJECT, parse_subject)?;
    env_key(env)?;
    env::switch(env, vars::LEAST_PRIVILEGE)?;
    load_options(None, env).map(|_| ())
}

fn env_value<T, E: Into<EnvProblem>>(
    env: &dyn Env,
    names: &[&'static str],
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ResolveError> {
    match env::first_set(env, names) {
        None => Ok(None),
        Some((name, value)) => parse(&value).map(Some).map_err(|e| ResolveError::BadEnv {
            name,
            problem: e.into(),
            value,
        }),
    }
}

/// Why a scope list is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    /// A name that is no scope.
    #[error("unknown scope {}; use git:read, git:write, repo:write or org:read", Shown(.0))]
    Unknown(String),
    /// Nothing given.
    #[error("no scopes given; e.g. git:read,git:write")]
    Empty,
}

/// Parses a comma-separated scope list such as `git:read,git:write`.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, ScopesError> {
    let mut scopes = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name).ok_or_else(|| ScopesError::Unknown(name.to_owned()))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(ScopesError::Empty);
    }
    Ok(scopes)
}

/// `<user>@<hostname>`, read without spawning a process; the system's user database is read
/// only when no variable names the user (a container sets no `$USER`).
pub fn default_subject(env: &dyn Env) -> String {
    let user = env
        .var("USER")
        .or_else(|| env.var("LOGNAME"))
        .or_else(|| env.var("USERNAME"))
        .or_else(system_user_name)
        .filter(|u| crate::config::valid_subject(u))
        .unwrap_or_else(|| "unknown".into());
    // One system call on every platform (uname, GetComputerNameExW); no process, no file.
    let host = gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| env.var("HOSTNAME"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.chars().any(char::is_control))
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The largest `/etc/passwd` read; a real one is a few KiB.
#[cfg(unix)]
const MAX_PASSWD_BYTES: u64 = 4 * 1024 * 1024;

/// This process's user name from `/etc/passwd`, by its real user id (users known only to a
/// directory service are not in the file: `None`).
#[cfg(unix)]
fn system_user_name() -> Option<String> {
    let text =
        crate::fs::read_regular(std::path::Path::new("/etc/passwd"), MAX_PASSWD_BYTES).ok()??;
    passwd_name(&text, rustix::process::getuid().as_raw())
}

#[cfg(not(unix))]
fn system_user_name() -> Option<String> {
    None
}

/// The name of user `uid` in `passwd(5)` text: `name:password:uid:...`, the first line wins.
#[cfg(unix)]
fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::env::MapEnv;
    use crate::host::{Host, OrgName};
    use crate::operation::Operation;
    use std::path::Path;

    fn config(text: &str) -> Config {
        config::parse(text, Path::new("/c/config.toml")).unwrap()
    }

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    fn org(name: &str) -> OrgName {
        OrgName::parse(name).unwrap()
    }

    fn owner_of<'c>(config: Option<&'c Config>, text: &str) -> Option<Owner<'c>> {
        Host::parse(text).ok().and_then(|h| owner(config, &h))
    }

    /// What `token --org NAME REPO` resolves to.
    fn for_repo(
        config: Option<&Config>,
        name: &str,
        repo: &str,
        env: &MapEnv,
        overrides: &Overrides,
    ) -> Result<Settings, ResolveError> {
        let name = org(name);
        resolve(
            Ok(config),
            Target::Org { org: &name, repo },
            Reach::Repository,
            env,
            overrides,
        )
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
            owner_of(Some(&c), "GIT.acme.dev:8443").map(|o| o.name().to_string()),
            Some("acme".into())
        );
        assert_eq!(owner_of(Some(&c), "git.acme.dev"), None);
        assert!(matches!(
            owner_of(Some(&c), "acme.code.storage"),
            Some(Owner::Configured(_))
        ));
        assert_eq!(
            owner_of(Some(&c), "beta.code.storage"),
            Some(Owner::Implicit(org("beta")))
        );
        assert_eq!(
            owner_of(None, "Beta.Code.Storage:443"),
            Some(Owner::Implicit(org("beta")))
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
            assert_eq!(owner_of(Some(&c), not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn http_only_to_loopback_hosts_that_allow_it() {
        let c = config(RULES);
        let acme = owner_of(Some(&c), "127.0.0.1:9000").unwrap();
        assert!(protocol_allowed("https", &host("127.0.0.1:9000"), &acme));
        assert!(protocol_allowed("http", &host("127.0.0.1:9000"), &acme));
        let remote = owner_of(Some(&c), "git.acme.dev:8443").unwrap();
        assert!(!protocol_allowed(
            "http",
            &host("git.acme.dev:8443"),
            &remote
        ));
        assert!(!protocol_allowed(
            "http",
            &host("beta.code.storage"),
            &Owner::Implicit(org("beta"))
        ));
        assert!(!protocol_allowed("ssh", &host("127.0.0.1:9000"), &acme));
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
        // As glue code and git-lfs send it.
        assert_eq!(repo_id("team/base.git/info/refs").unwrap(), "team/base");
        assert_eq!(
            repo_id("team/base.git/info/lfs/objects/batch").unwrap(),
            "team/base"
        );
        assert_eq!(
            repo_id("team/base+import.git/info/refs?service=git-receive-pack").unwrap(),
            "team/base"
        );
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
        let env = MapEnv::default();
        let s = for_repo(
            Some(&c),
            "acme",
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
        let s = for_repo(Some(&c), "acme", "mirrors/a/b", &env, &Overrides::default()).unwrap();
        assert_eq!((s.ttl.seconds(), s.subject.as_str()), (420, "mirror-bot"));
        assert_eq!(s.scopes, [Scope::GitWrite]);
        assert_eq!(s.ops, Some(vec![Op::NoForcePush]));
        let s = for_repo(Some(&c), "acme", "team/x", &env, &Overrides::default()).unwrap();
        assert_eq!((s.ttl.seconds(), s.rule.clone()), (7200, None));
        assert_eq!(s.key, KeySource::File("/k/acme.pem".into()));
    }

    #[test]
    fn environment_beats_files_and_overrides_beat_environment() {
        let c = config(RULES);
        let env = MapEnv::from([
            ("CODESTORAGE_TTL", "90s"),
            ("CODESTORAGE_SCOPES", "git:read, org:read"),
            ("CODESTORAGE_SUBJECT", "ci"),
        ]);
        let s = for_repo(
            Some(&c),
            "acme",
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
        let s = for_repo(Some(&c), "acme", "mirrors/linux", &env, &overrides).unwrap();
        assert_eq!((s.ttl.seconds(), s.subject.as_str()), (60, "cli"));
        assert_eq!(s.scopes, [Scope::RepoWrite]);
    }

    #[test]
    fn official_helper_names_are_aliases_and_bad_values_are_errors() {
        let env = MapEnv::from([("PIERRE_TOKEN_TTL", "600"), ("PIERRE_PRIVATE_KEY", "pem")]);
        let s = for_repo(None, "beta", "x", &env, &Overrides::default()).unwrap();
        assert_eq!(s.ttl.seconds(), 600);
        assert_eq!(s.key, KeySource::Env("PIERRE_PRIVATE_KEY".into()));
        assert_eq!(s.scopes, [Scope::GitRead, Scope::GitWrite]);
        let env = MapEnv::from([
            ("CODESTORAGE_PRIVATE_KEY_FILE", "/k.pem"),
            ("CODESTORAGE_SCOPES", "git:push"),
        ]);
        let err = for_repo(None, "beta", "x", &env, &Overrides::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CODESTORAGE_SCOPES=\"git:push\": unknown scope"),
            "{err}"
        );
    }

    #[test]
    fn implicit_org_without_any_key_says_how_to_add_one() {
        let err =
            for_repo(None, "beta", "x", &MapEnv::default(), &Overrides::default()).unwrap_err();
        assert!(matches!(err, ResolveError::NoKey { .. }));
        assert_eq!(err.disposition(), Disposition::DeclineWithHint);
        let keygen_writes = crate::paths::default_key_file("beta").unwrap();
        assert!(
            err.to_string().contains(&format!(
                "keygen --org beta` and add it with `git-credential-codestorage setup --org beta --key-file {}`",
                crate::shell::quote(&keygen_writes.to_string_lossy())
            )),
            "{err}"
        );
    }

    #[test]
    fn an_unconfigured_organisation_beside_configured_ones_names_them_and_the_closest() {
        let c = config(RULES);
        let err = for_repo(
            Some(&c),
            "acmee",
            "x",
            &MapEnv::default(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.disposition(), Disposition::Quit);
        let said = err.to_string();
        assert!(
            said.starts_with("organisation acmee is not configured in ")
                && said.contains("(it configures acme")
                && said.contains("; did you mean acme? Correct the host in the remote URL to acme.code.storage; if acmee is another organisation, make one with `git-credential-codestorage keygen --org acmee`"),
            "{said}"
        );
        let far = for_repo(
            Some(&c),
            "zeta",
            "x",
            &MapEnv::default(),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(!far.to_string().contains("did you mean"), "{far}");
    }

    #[test]
    fn least_privilege_narrows_reads_only_and_only_when_on() {
        let c = config(RULES);
        let env = MapEnv::default();
        let mut s = for_repo(Some(&c), "acme", "team/x", &env, &Overrides::default()).unwrap();
        assert!(s.least_privilege, "on by default");
        assert_eq!(s.scopes, [Scope::GitWrite]);
        for operation in [Operation::Write, Operation::Unknown] {
            s.narrow_to(operation);
            assert_eq!(s.scopes, [Scope::GitWrite], "{operation}");
        }
        s.narrow_to(Operation::Read);
        assert_eq!(s.scopes, [Scope::GitRead]);
        let mut org_only = s.clone();
        org_only.scopes = vec![Scope::OrgRead];
        org_only.narrow_to(Operation::Read);
        assert_eq!(org_only.scopes, [Scope::OrgRead], "nothing git to narrow");

        let off = config(&RULES.replace("[org.acme]\n", "[org.acme]\nleast_privilege = false\n"));
        let mut s = for_repo(Some(&off), "acme", "team/x", &env, &Overrides::default()).unwrap();
        s.narrow_to(Operation::Read);
        assert_eq!(s.scopes, [Scope::GitWrite]);
        let env_off = MapEnv::from([("CODESTORAGE_LEAST_PRIVILEGE", "0")]);
        let s = for_repo(Some(&c), "acme", "team/x", &env_off, &Overrides::default()).unwrap();
        assert!(!s.least_privilege);
        let rule_off = config(&format!(
            "{RULES}[[org.acme.repo]]\nmatch = \"legacy/**\"\nleast_privilege = false\n"
        ));
        let s = for_repo(
            Some(&rule_off),
            "acme",
            "legacy/x",
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert!(!s.least_privilege);
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

    #[cfg(unix)]
    #[test]
    fn without_user_variables_the_name_comes_from_the_user_database() {
        let text = "# comment\nroot:x:0:0:root:/root:/bin/sh\nbad line\n:x:7:7::/:/bin/sh\nci:x:1001:1001::/home/ci:/bin/sh\n";
        assert_eq!(passwd_name(text, 1001).as_deref(), Some("ci"));
        assert_eq!(passwd_name(text, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(text, 7), None, "an empty name is no name");
        assert_eq!(passwd_name(text, 4242), None);
        // This machine's own entry, as `id -un` prints it.
        let id = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        let expected = String::from_utf8(id.stdout).unwrap().trim().to_owned();
        let subject = default_subject(&MapEnv::default());
        assert!(subject.starts_with(&format!("{expected}@")), "{subject}");
    }
}
