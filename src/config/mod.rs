//! The configuration file: organisations, their keys and hosts, and per-repository rules.
//!
//! Every unknown key, scope, op, bad ttl or bad pattern is an error that names the file and line:
//! a typo in a file that grants access must never silently widen it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod key;

use serde::Deserialize;
use toml::Spanned;

use crate::env::Env;
use crate::glob::Glob;
use crate::host::{Host, HostError, OrgName, OrgNameError};
use crate::key::KeySource;
use crate::token::{Op, RefRule, Scope};
use crate::ttl::Ttl;

pub mod sandbox;

use sandbox::RawSandbox;
pub use sandbox::{BrokerSettings, Sandbox, SandboxError};

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "CODESTORAGE_CONFIG";

/// Settings that may be given at every level (top, organisation, repository rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    /// Token lifetime.
    pub ttl: Option<Ttl>,
    /// Token scopes.
    pub scopes: Option<Vec<Scope>>,
    /// The `sub` claim.
    pub subject: Option<String>,
    /// Narrow tokens to `git:read` for git commands that only read.
    pub least_privilege: Option<bool>,
}

/// One `[org.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// The table name: the `iss` claim.
    pub name: OrgName,
    /// Where the key comes from.
    pub key: KeySource,
    /// Hosts served for this organisation (default `<name>.code.storage`).
    pub hosts: Vec<Host>,
    /// Serve plain `http` to a loopback host (local testing only).
    pub allow_http: bool,
    /// Accept a key file that others may read.
    pub allow_insecure_key_permissions: bool,
    /// ttl, scopes and subject for this organisation.
    pub level: Level,
    /// `[[org.NAME.repo]]` rules in file order; the first match wins.
    pub rules: Vec<RepoRule>,
    /// Line of the table in the file, for messages.
    pub line: usize,
}

/// One `[[org.NAME.repo]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRule {
    /// Which repository IDs it applies to.
    pub pattern: Glob,
    /// ttl, scopes and subject for matching repositories.
    pub level: Level,
    /// Repository-wide ref policies.
    pub ops: Option<Vec<Op>>,
    /// Per-ref policies.
    pub refs: Option<Vec<RefRule>>,
    /// Line of the rule in the file, for messages.
    pub line: usize,
}

/// A parsed, validated configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// The top-level ttl, scopes and subject.
    pub level: Level,
    /// The organisations by name.
    pub orgs: BTreeMap<String, Org>,
    /// `broker = "PATH"`: inside a sandbox, `get` asks the token broker at this socket.
    pub broker: Option<PathBuf>,
    /// `[sandbox.NAME]` tables, served by the token broker.
    pub sandboxes: Vec<Sandbox>,
    /// The token broker's control API and socket directory.
    pub broker_settings: BrokerSettings,
    /// `reuse_tokens` (default true): the broker hands out a token it signed while at least
    /// half its lifetime is left; a sandbox's own `reuse_tokens` wins.
    pub reuse_tokens: bool,
}

/// Why the configuration file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config file {}: {reason}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// Group or others may write the file.
    #[error(
        "config file {} is writable by others (mode {mode:03o}), and it decides which programs run; run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user could change the file or swap it (see [`crate::fs::check_trusted`]).
    #[error(
        "config file {} {problem}, and it decides which programs run; {}",
        .path.display(),
        .problem.fix()
    )]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Who else could change it.
        problem: crate::fs::Untrusted,
    },
    /// A field or table of the configuration is wrong.
    #[error("{}:{line}: {source}", .path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        source: FieldError,
    },
    /// The file is not valid TOML, or a value has the wrong type or an unknown name: the TOML
    /// reader's own words.
    #[error("{}:{line}: {message}", .path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The TOML reader's message, on one line.
        message: String,
    },
    /// A `[sandbox.NAME]` table is wrong.
    #[error("{}:{line}: {source}", .path.display())]
    Sandbox {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        source: SandboxError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ttl: Option<Ttl>,
    scopes: Option<Spanned<Vec<Scope>>>,
    subject: Option<Spanned<String>>,
    least_privilege: Option<bool>,
    #[serde(default)]
    org: BTreeMap<String, Spanned<RawOrg>>,
    broker: Option<Spanned<String>>,
    reuse_tokens: Option<bool>,
    #[serde(default)]
    sandbox: BTreeMap<String, Spanned<RawSandbox>>,
    control_socket: Option<Spanned<String>>,
    control_group: Option<Spanned<sandbox::RawGroup>>,
    sandbox_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    key_file: Option<String>,
    key_env: Option<String>,
    key_command: Option<Vec<String>>,
    key_agent: Option<Spanned<String>>,
    agent_socket: Option<Spanned<String>>,
    sign_command: Option<Spanned<Vec<String>>>,
    public_key_file: Option<Spanned<String>>,
    sign_persistent: Option<Spanned<bool>>,
    hosts: Option<Vec<Spanned<String>>>,
    ttl: Option<Ttl>,
    scopes: Option<Spanned<Vec<Scope>>>,
    subject: Option<Spanned<String>>,
    least_privilege: Option<bool>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    allow_insecure_key_permissions: bool,
    #[serde(default)]
    repo: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Glob,
    ttl: Option<Ttl>,
    scopes: Option<Spanned<Vec<Scope>>>,
    subject: Option<Spanned<String>>,
    least_privilege: Option<bool>,
    ops: Option<Vec<Op>>,
    refs: Option<Vec<Spanned<RawRefRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefRule {
    pattern: String,
    ops: Vec<Op>,
}

/// What is wrong with one field or table of the configuration (the sandbox tables aside), with
/// the fix; [`ConfigError::Field`] adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// `key_file` or `key_env` holds the key itself.
    #[error(
        "[org.{org}] {field} holds the PEM text of a key; {field} takes {}: save the key to a file (mode 600) and set key_file = \"~/.config/codestorage/{org}.pem\", and take the key out of this file",
        if *.field == "key_file" { "the path of a PEM file" } else { "the name of an environment variable that holds the PEM text" }
    )]
    PemText {
        /// The organisation.
        org: String,
        /// `key_file` or `key_env`.
        field: &'static str,
    },
    /// A `[org.NAME]` table whose name is not an organisation name.
    #[error("[org.{}]: {reason}", crate::log::Escaped(.org))]
    OrgName {
        /// The table's name as written.
        org: String,
        /// Why it is not an organisation name.
        reason: OrgNameError,
    },
    /// `hosts = []`.
    #[error("[org.{org}] hosts is empty; remove it to use the default [\"{org}.code.storage\"]")]
    HostsEmpty {
        /// The organisation.
        org: String,
    },
    /// An entry of `hosts` that is not a host name with an optional port.
    #[error("{0}")]
    Host(HostError),
    /// A host two organisations list.
    #[error(
        "host {host:?} is listed by both [org.{other}] and [org.{org}]; a host belongs to one organisation"
    )]
    HostTaken {
        /// The host.
        host: String,
        /// The organisation that listed it first.
        other: String,
        /// The organisation that lists it again.
        org: String,
    },
    /// A `refs` pattern that is empty or holds spaces or control characters.
    #[error("refs pattern {pattern:?} must be a ref name or glob such as \"refs/heads/main\"")]
    RefPattern {
        /// The pattern as written.
        pattern: String,
    },
    /// `broker = ""`.
    #[error("broker is empty; name the broker's socket, e.g. broker = \"/run/codestorage.sock\"")]
    BrokerEmpty,
    /// `key_env = ""`.
    #[error("[org.{org}] key_env is empty; name the environment variable that holds the PEM key")]
    KeyEnvEmpty {
        /// The organisation.
        org: String,
    },
    /// `key_command = []` or an empty program.
    #[error(
        "[org.{org}] key_command is empty; give the program and its arguments, e.g. [\"op\", \"read\", \"op://vault/key\"]"
    )]
    KeyCommandEmpty {
        /// The organisation.
        org: String,
    },
    /// No key field at all.
    #[error(
        "[org.{org}] needs a key: add key_file = \"~/.config/codestorage/{org}.pem\" (or key_env, key_command, key_agent = \"SHA256:...\" for an ssh-agent key, or sign_command with public_key_file)"
    )]
    NoKey {
        /// The organisation.
        org: String,
    },
    /// More than one key field.
    #[error(
        "[org.{org}] sets more than one of key_file, key_env, key_command, key_agent, sign_command; keep exactly one"
    )]
    SeveralKeys {
        /// The organisation.
        org: String,
    },
    /// `agent_socket` without `key_agent`.
    #[error(
        "[org.{org}] agent_socket is only used with key_agent; add key_agent = \"SHA256:...\" (from `ssh-add -l -E sha256`) or remove agent_socket"
    )]
    SocketWithoutAgent {
        /// The organisation.
        org: String,
    },
    /// `agent_socket = ""`.
    #[error(
        "[org.{org}] agent_socket is empty; give the agent's socket path, or remove it to use SSH_AUTH_SOCK"
    )]
    SocketEmpty {
        /// The organisation.
        org: String,
    },
    /// `key_agent = ""`.
    #[error("[org.{org}] key_agent is empty; {AGENT_KEY_FIX}")]
    AgentEmpty {
        /// The organisation.
        org: String,
    },
    /// `key_agent` holds a private key.
    #[error(
        "[org.{org}] key_agent holds PEM text; {AGENT_KEY_FIX}, and take the key text out of this file"
    )]
    AgentPem {
        /// The organisation.
        org: String,
    },
    /// A `SHA256:` fingerprint that does not parse.
    #[error("[org.{org}] key_agent: {reason}")]
    AgentFingerprint {
        /// The organisation.
        org: String,
        /// What is wrong with it.
        reason: crate::sshagent::PublicKeyError,
    },
    /// An `MD5:` fingerprint.
    #[error(
        "[org.{org}] key_agent is an MD5 fingerprint; use the SHA256 one that `ssh-add -l -E sha256` prints"
    )]
    AgentMd5 {
        /// The organisation.
        org: String,
    },
    /// `public_key_file` without `sign_command`.
    #[error(
        "[org.{org}] public_key_file is only used with sign_command; for a key in an ssh-agent write key_agent = {file:?} instead"
    )]
    PublicKeyWithoutSignCommand {
        /// The organisation.
        org: String,
        /// The file it names.
        file: String,
    },
    /// `sign_persistent` without `sign_command`.
    #[error(
        "[org.{org}] sign_persistent only applies to a sign_command; remove it, or add sign_command = [\"PROGRAM\"] with public_key_file"
    )]
    PersistentWithoutSignCommand {
        /// The organisation.
        org: String,
    },
    /// `sign_command = []` or an empty program.
    #[error(
        "[org.{org}] sign_command is empty; give the program and its arguments, e.g. [\"/usr/local/bin/kms-sign\", \"--key\", \"acme\"]"
    )]
    SignCommandEmpty {
        /// The organisation.
        org: String,
    },
    /// `public_key_file = ""`.
    #[error("[org.{org}] public_key_file is empty; give {PUBLIC_KEY_HELP}")]
    PublicKeyFileEmpty {
        /// The organisation.
        org: String,
    },
    /// `sign_command` without `public_key_file`.
    #[error("[org.{org}] sign_command needs public_key_file = \"PATH\": {PUBLIC_KEY_HELP}")]
    PublicKeyFileMissing {
        /// The organisation.
        org: String,
    },
    /// A subject that is empty or holds control characters.
    #[error("subject must be non-empty and hold no control characters")]
    Subject,
    /// `scopes = []`.
    #[error(
        "scopes is empty; a token needs at least one of git:read, git:write, repo:write, org:read"
    )]
    ScopesEmpty,
}

/// How to name an agent's key, for `key_agent` messages.
const AGENT_KEY_FIX: &str = "give the key's SHA256 fingerprint as `ssh-add -l -E sha256` prints it, or the path of its public key file (`.pub` or `PUBLIC KEY` PEM)";

/// What `public_key_file` holds, for `sign_command` messages.
const PUBLIC_KEY_HELP: &str = "the public key its signatures are checked with (the `PUBLIC KEY` PEM registered with Code Storage, or an OpenSSH `.pub`)";

/// Where the configuration lives: `$CODESTORAGE_CONFIG`, else `<config dir>/codestorage/config.toml`.
pub fn default_path(env: &dyn Env) -> Option<PathBuf> {
    if let Some(path) = env.var(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    crate::paths::config_dir(env).map(|dir| dir.join("config.toml"))
}

/// Loads the config file the environment points at (`None` if there is none).
pub fn load_default(env: &dyn Env) -> Result<Option<Config>, ConfigError> {
    match default_path(env) {
        Some(path) => load(&path),
        None => Ok(None),
    }
}

/// The largest config file read; a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and validates the file at `path`; a missing file is `Ok(None)` (environment-only use).
pub fn load(path: &Path) -> Result<Option<Config>, ConfigError> {
    let unreadable = |reason: String| ConfigError::Read {
        path: path.to_owned(),
        reason,
    };
    // Looked at before opening: opening a FIFO would block, and a device would never end.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if m.is_dir() => {
            return Err(unreadable(
                "it is a directory; CODESTORAGE_CONFIG must name a file".to_owned(),
            ));
        }
        Ok(m) if !m.is_file() => return Err(unreadable("it is not a regular file".to_owned())),
        #[cfg(unix)]
        Ok(m) if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o022 != 0 => {
            // The file names programs to run (key_command): one others can edit is theirs.
            return Err(ConfigError::Writable {
                path: path.to_owned(),
                mode: std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            });
        }
        Ok(_) => {}
    }
    crate::fs::check_trusted(path).map_err(|problem| ConfigError::Untrusted {
        path: path.to_owned(),
        problem,
    })?;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            let mut limited = std::io::Read::take(file, MAX_CONFIG_BYTES + 1);
            std::io::Read::read_to_string(&mut limited, &mut text)
        })
        .map_err(|e| unreadable(e.to_string()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(unreadable(format!(
            "it is larger than {} KiB; a config file is a few lines",
            MAX_CONFIG_BYTES / 1024
        )));
    }
    parse(&text, path).map(Some)
}

/// Parses configuration text; `path` is used for messages and to resolve relative key files.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let field = |(offset, source): (usize, FieldError)| ConfigError::Field {
        path: path.to_owned(),
        line: line_of(text, offset),
        source,
    };
    let sandbox_error = |(offset, source): sandbox::Located| ConfigError::Sandbox {
        path: path.to_owned(),
        line: line_of(text, offset),
        source,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        line: line_of(text, e.span().map_or(0, |span| span.start)),
        message: e.message().trim().replace('\n', " "),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut orgs = BTreeMap::new();
    let mut host_owner = BTreeMap::new();
    for (name, spanned) in raw.org {
        let at = spanned.span().start;
        let org = parse_org(&name, spanned.into_inner(), at, text, base, &mut host_owner)
            .map_err(field)?;
        orgs.insert(name, org);
    }
    // Lines by binary search over the newlines: a config may hold 10,000 sandbox tables.
    let newlines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
    let sandbox_line = |offset: usize| newlines.partition_point(|&n| n < offset) + 1;
    let sandboxes =
        sandbox::parse_sandboxes(raw.sandbox, &orgs, base, &sandbox_line).map_err(sandbox_error)?;
    let broker_settings = sandbox::parse_broker_settings(
        sandbox::RawBrokerSettings {
            control_socket: raw.control_socket,
            control_group: raw.control_group,
            sandbox_dir: raw.sandbox_dir,
        },
        base,
    )
    .map_err(sandbox_error)?;
    let broker = match raw.broker {
        Some(socket) if socket.get_ref().is_empty() => {
            return Err(field((socket.span().start, FieldError::BrokerEmpty)));
        }
        Some(socket) => Some(expand_path(socket.get_ref(), base)),
        None => None,
    };
    Ok(Config {
        path: path.to_owned(),
        level: make_level(raw.ttl, raw.scopes, raw.subject, raw.least_privilege).map_err(field)?,
        orgs,
        broker,
        sandboxes,
        broker_settings,
        reuse_tokens: raw.reuse_tokens.unwrap_or(true),
    })
}

/// Checks and converts the `[org.NAME]` table `name` starting at `at`; `host_owner` records
/// which organisation listed each host so far, since a host belongs to one.
fn parse_org(
    name: &str,
    raw: RawOrg,
    at: usize,
    text: &str,
    base: &Path,
    host_owner: &mut BTreeMap<String, String>,
) -> Result<Org, (usize, FieldError)> {
    let owner = || name.to_owned();
    let org_name = OrgName::parse(name).map_err(|reason| {
        (
            at,
            FieldError::OrgName {
                org: owner(),
                reason,
            },
        )
    })?;
    let key = key::key_source(&raw, name, base, at)?;
    let hosts = parse_hosts(raw.hosts, &org_name, name, at)?;
    for host in &hosts {
        if let Some(other) = host_owner.insert(host.to_string(), owner()) {
            let host = host.to_string();
            let org = owner();
            return Err((at, FieldError::HostTaken { host, other, org }));
        }
    }
    let level = make_level(raw.ttl, raw.scopes, raw.subject, raw.least_privilege)?;
    let rules = raw
        .repo
        .into_iter()
        .map(|rule| parse_rule(rule, text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Org {
        name: org_name,
        key,
        hosts,
        allow_http: raw.allow_http,
        allow_insecure_key_permissions: raw.allow_insecure_key_permissions,
        level,
        rules,
        line: line_of(text, at),
    })
}

/// The `hosts` of the table `name` at `at`; without them, `NAME.code.storage`.
fn parse_hosts(
    hosts: Option<Vec<Spanned<String>>>,
    org: &OrgName,
    name: &str,
    at: usize,
) -> Result<Vec<Host>, (usize, FieldError)> {
    match hosts {
        None => Ok(vec![org.default_host()]),
        Some(hosts) if hosts.is_empty() => Err((
            at,
            FieldError::HostsEmpty {
                org: name.to_owned(),
            },
        )),
        Some(hosts) => hosts
            .iter()
            .map(|host| {
                Host::parse(host.get_ref()).map_err(|e| (host.span().start, FieldError::Host(e)))
            })
            .collect(),
    }
}

/// One `[[org.NAME.repo]]` rule with its `refs`.
fn parse_rule(rule: Spanned<RawRule>, text: &str) -> Result<RepoRule, (usize, FieldError)> {
    let at = rule.span().start;
    let rule = rule.into_inner();
    let refs = match rule.refs {
        None => None,
        Some(refs) => Some(
            refs.into_iter()
                .map(parse_ref_rule)
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(RepoRule {
        pattern: rule.pattern,
        level: make_level(rule.ttl, rule.scopes, rule.subject, rule.least_privilege)?,
        ops: rule.ops,
        refs,
        line: line_of(text, at),
    })
}

/// One `refs` entry of a repo rule: a ref name or glob, and the operations it allows.
fn parse_ref_rule(rule: Spanned<RawRefRule>) -> Result<RefRule, (usize, FieldError)> {
    let at = rule.span().start;
    let rule = rule.into_inner();
    if rule.pattern.is_empty()
        || rule
            .pattern
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        let pattern = rule.pattern;
        return Err((at, FieldError::RefPattern { pattern }));
    }
    Ok(RefRule {
        pattern: rule.pattern,
        ops: rule.ops,
    })
}

fn make_level(
    ttl: Option<Ttl>,
    scopes: Option<Spanned<Vec<Scope>>>,
    subject: Option<Spanned<String>>,
    least_privilege: Option<bool>,
) -> Result<Level, (usize, FieldError)> {
    if let Some(subject) = &subject
        && !valid_subject(subject.get_ref())
    {
        return Err((subject.span().start, FieldError::Subject));
    }
    if let Some(scopes) = &scopes
        && scopes.get_ref().is_empty()
    {
        return Err((scopes.span().start, FieldError::ScopesEmpty));
    }
    Ok(Level {
        ttl,
        scopes: scopes.map(Spanned::into_inner),
        subject: subject.map(Spanned::into_inner),
        least_privilege,
    })
}

/// Expands a leading `~/` and makes a relative path relative to `base` (the config's directory).
pub fn expand_path(file: &str, base: &Path) -> PathBuf {
    if let Some(rest) = file.strip_prefix("~/")
        && let Some(dirs) = directories::BaseDirs::new()
    {
        return dirs.home_dir().join(rest);
    }
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Whether `subject` can be a `sub` claim: non-empty, no control characters.
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty() && !subject.chars().any(char::is_control)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::AgentKeyId;

    const EXAMPLE: &str = r#"
ttl = "1h"
scopes = ["git:read", "git:write"]
subject = "alice@laptop"

[org.acme]
key_file = "acme.pem"
hosts = ["acme.code.storage", "Git.Acme.dev:8443"]
ttl = "30m"
allow_http = false

[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
ttl = "5m"

[[org.acme.repo]]
match = "agents/**"
ops = ["no-force-push"]
refs = [{ pattern = "refs/heads/main", ops = ["no-push"] }]

[org.beta]
key_env = "BETA_KEY"
"#;

    fn parse_at(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/cs/config.toml"))
    }

    fn error(text: &str) -> String {
        parse_at(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let config = parse_at(EXAMPLE).unwrap();
        assert_eq!(config.level.ttl, Some(Ttl::parse("1h").unwrap()));
        let acme = &config.orgs["acme"];
        assert_eq!(acme.key, KeySource::File("/etc/cs/acme.pem".into()));
        let shown: Vec<String> = acme.hosts.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["acme.code.storage", "git.acme.dev:8443"]);
        assert_eq!(acme.rules.len(), 2);
        assert_eq!(acme.rules[0].pattern.as_str(), "mirrors/*");
        assert_eq!(acme.rules[0].line, 12);
        assert_eq!(acme.rules[1].ops, Some(vec![Op::NoForcePush]));
        assert_eq!(
            acme.rules[1].refs,
            Some(vec![RefRule {
                pattern: "refs/heads/main".into(),
                ops: vec![Op::NoPush]
            }])
        );
        let beta = &config.orgs["beta"];
        assert_eq!(beta.key, KeySource::Env("BETA_KEY".into()));
        assert_eq!(beta.hosts, [Host::parse("beta.code.storage").unwrap()]);
    }

    #[test]
    fn unknown_keys_name_the_file_line_and_key() {
        let message = error("[org.acme]\nkey_env = \"K\"\nscope = [\"git:read\"]\n");
        assert!(message.starts_with("/etc/cs/config.toml:3: "), "{message}");
        assert!(message.contains("scope"), "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn unknown_scopes_ops_and_bad_values_are_errors() {
        assert!(error("scopes = [\"git:admin\"]").contains("git:admin"));
        let message =
            error("[org.a]\nkey_env = \"K\"\n[[org.a.repo]]\nmatch = \"x\"\nops = [\"no-pull\"]\n");
        assert!(
            message.contains(":5:") && message.contains("no-pull"),
            "{message}"
        );
        assert!(error("ttl = 0").contains("at least one second"));
        assert!(error("ttl = \"400d\"").contains("longer than a year"));
        assert!(
            error("[org.a]\nkey_env = \"K\"\n[[org.a.repo]]\nmatch = \"a/***\"\n")
                .contains("three stars")
        );
        assert!(error("ttl = 60\nscopes = []").contains(":2: scopes is empty"));
        assert!(error("subject = \"\"").contains("subject"));
    }

    #[test]
    fn exactly_one_key_source_per_organisation() {
        let message = error("\n[org.acme]\nttl = 60\n");
        assert!(
            message.contains(":2:") && message.contains("needs a key"),
            "{message}"
        );
        assert!(error("[org.acme]\nkey_env = \"A\"\nkey_file = \"b\"\n").contains("more than one"));
        assert!(error("[org.acme]\nkey_command = []\n").contains("key_command is empty"));
    }

    #[test]
    fn field_mistakes_are_typed_with_their_line() {
        let parsed = |text: &str| parse(text, Path::new("/etc/cs/config.toml"));
        assert!(matches!(
            parsed("[org.acme]\nkey_env = \"A\"\nkey_file = \"b\"\n"),
            Err(ConfigError::Field { line: 1, source: FieldError::SeveralKeys { org }, .. })
                if org == "acme"
        ));
        assert!(matches!(
            parsed("ttl = 60\nscopes = []"),
            Err(ConfigError::Field {
                line: 2,
                source: FieldError::ScopesEmpty,
                ..
            })
        ));
        assert!(matches!(
            parsed("[org.a]\nkey_env = \"-----BEGIN PRIVATE KEY-----\\nAAAA\"\n"),
            Err(ConfigError::Field {
                source: FieldError::PemText {
                    field: "key_env",
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn table_mistakes_are_typed_and_name_the_line_and_the_fix() {
        let key = "key_env = \"K\"\n";
        assert_eq!(
            error(&format!("[org.a]\n{key}hosts = []\n")),
            "/etc/cs/config.toml:1: [org.a] hosts is empty; remove it to use the default [\"a.code.storage\"]"
        );
        assert_eq!(
            error(&format!(
                "[org.a]\n{key}hosts = [\"Git.X.dev\"]\n[org.b]\n{key}hosts = [\"git.x.dev\"]\n"
            )),
            "/etc/cs/config.toml:4: host \"git.x.dev\" is listed by both [org.a] and [org.b]; a host belongs to one organisation"
        );
        assert!(matches!(
            parse_at(&format!("[org.a]\n{key}hosts = [\"ok.dev\", \"a b\"]\n")),
            Err(ConfigError::Field {
                line: 3,
                source: FieldError::Host(_),
                ..
            })
        ));
        assert!(matches!(
            parse_at(&format!("[org.\"a_b\"]\n{key}")),
            Err(ConfigError::Field {
                line: 1,
                source: FieldError::OrgName { .. },
                ..
            })
        ));
        let refs = "[[org.a.repo]]\nmatch = \"*\"\nrefs = [{ pattern = \"refs/heads/a b\", ops = [\"no-push\"] }]\n";
        assert!(matches!(
            parse_at(&format!("[org.a]\n{key}{refs}")),
            Err(ConfigError::Field { line: 5, source: FieldError::RefPattern { pattern }, .. })
                if pattern == "refs/heads/a b"
        ));
        assert_eq!(
            error("broker = \"\"\n"),
            "/etc/cs/config.toml:1: broker is empty; name the broker's socket, e.g. broker = \"/run/codestorage.sock\""
        );
        assert!(matches!(
            parse_at("ttl = \n"),
            Err(ConfigError::Toml { line: 1, .. })
        ));
    }

    #[test]
    fn key_agent_takes_a_fingerprint_or_a_public_key_path() {
        let fingerprint = crate::sshagent::Fingerprint::of(b"blob");
        let config = parse_at(&format!(
            "[org.a]\nkey_agent = \"{}\"\n[org.b]\nkey_agent = \"keys/b.pub\"\nagent_socket = \"agent.sock\"\n",
            fingerprint.as_str().replace("SHA256", "sha256")
        ))
        .unwrap();
        assert_eq!(
            config.orgs["a"].key,
            KeySource::agent(AgentKeyId::Fingerprint(fingerprint), None)
        );
        assert_eq!(
            config.orgs["b"].key,
            KeySource::agent(
                AgentKeyId::PublicKeyFile("/etc/cs/keys/b.pub".into()),
                Some("/etc/cs/agent.sock".into())
            )
        );
    }

    #[test]
    fn key_agent_mistakes_name_the_line_and_the_fix() {
        let message = error("[org.a]\nttl = 60\nkey_agent = \"SHA256:short\"\n");
        assert!(
            message.starts_with("/etc/cs/config.toml:3: ")
                && message.contains("ssh-add -l -E sha256"),
            "{message}"
        );
        let message = error("[org.a]\nkey_agent = \"MD5:aa:bb\"\n");
        assert!(
            message.contains("MD5") && message.contains("-E sha256"),
            "{message}"
        );
        assert!(error("[org.a]\nkey_agent = \" \"\n").contains("key_agent is empty"));
        let message = error("[org.a]\nkey_env = \"K\"\n\nagent_socket = \"/s\"\n");
        assert!(
            message.contains(":4:") && message.contains("only used with key_agent"),
            "{message}"
        );
        assert!(
            error("[org.a]\nkey_agent = \"a.pub\"\nagent_socket = \"\"\n")
                .contains("agent_socket is empty")
        );
        assert!(
            error("[org.a]\nkey_agent = \"-----BEGIN PRIVATE KEY-----\"\n")
                .contains("holds PEM text")
        );
    }

    #[test]
    fn sign_command_needs_its_public_key_file() {
        let config = parse_at(
            "[org.a]\nsign_command = [\"kms-sign\", \"--key\", \"a\"]\npublic_key_file = \"a.pub.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            config.orgs["a"].key,
            KeySource::sign_command(
                vec!["kms-sign".into(), "--key".into(), "a".into()],
                "/etc/cs/a.pub.pem".into()
            )
        );
        let message = error("[org.a]\n\nsign_command = [\"kms-sign\"]\n");
        assert!(
            message.contains(":3:") && message.contains("needs public_key_file"),
            "{message}"
        );
        let message = error("[org.a]\nkey_file = \"k.pem\"\npublic_key_file = \"a.pub\"\n");
        assert!(
            message.contains(":3:") && message.contains("key_agent = \"a.pub\""),
            "{message}"
        );
        assert!(
            error("[org.a]\nsign_command = []\npublic_key_file = \"a.pub\"\n")
                .contains("sign_command is empty")
        );
        assert!(
            error("[org.a]\nsign_command = [\"s\"]\npublic_key_file = \"\"\n")
                .contains("public_key_file is empty")
        );
    }

    #[test]
    fn sign_persistent_marks_the_sign_command_and_needs_one() {
        let config = parse_at(
            "[org.a]\nsign_command = [\"kms-sign\"]\npublic_key_file = \"a.pub.pem\"\nsign_persistent = true\n",
        )
        .unwrap();
        let KeySource::SignCommand(signer) = &config.orgs["a"].key else {
            panic!("{:?}", config.orgs["a"].key)
        };
        assert!(signer.persistent);
        let message = error("[org.a]\nkey_file = \"k.pem\"\nsign_persistent = true\n");
        assert!(
            message.contains(":3:") && message.contains("sign_persistent only applies"),
            "{message}"
        );
    }

    #[test]
    fn agent_and_sign_command_count_as_key_sources() {
        let message = error("[org.a]\nkey_file = \"k.pem\"\nkey_agent = \"a.pub\"\n");
        assert!(message.contains("more than one"), "{message}");
        let message = error(
            "[org.a]\nkey_agent = \"a.pub\"\nsign_command = [\"s\"]\npublic_key_file = \"a.pub\"\n",
        );
        assert!(message.contains("more than one"), "{message}");
        assert!(error("[org.a]\nttl = 60\n").contains("key_agent"));
    }

    #[test]
    fn hosts_are_checked_and_belong_to_one_organisation() {
        assert!(
            error("[org.a]\nkey_env = \"K\"\nhosts = [\"https://a.dev\"]\n")
                .contains("not a host name")
        );
        assert!(error("[org.a]\nkey_env = \"K\"\nhosts = []\n").contains("hosts is empty"));
        let message = error(
            "[org.a]\nkey_env = \"K\"\nhosts = [\"x.dev\"]\n[org.b]\nkey_env = \"K\"\nhosts = [\"X.dev\"]\n",
        );
        assert!(message.contains("both [org.a] and [org.b]"), "{message}");
    }

    #[test]
    fn duplicate_tables_and_broken_toml_are_errors() {
        assert!(error("[org.a]\nkey_env = \"K\"\n[org.a]\nkey_env = \"L\"\n").contains(":3:"));
        assert!(error("ttl = \n").contains(":1:"));
    }

    #[test]
    fn missing_file_is_none_and_a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&dir.path().join("absent.toml")), Ok(None));
        let message = load(dir.path()).unwrap_err().to_string();
        assert!(message.contains("directory"), "{message}");
    }

    #[test]
    fn key_paths_expand_home_and_resolve_relative_to_the_file() {
        assert_eq!(
            expand_path("/abs/k.pem", Path::new("/c")),
            Path::new("/abs/k.pem")
        );
        assert_eq!(expand_path("k.pem", Path::new("/c")), Path::new("/c/k.pem"));
        let home = directories::BaseDirs::new().unwrap().home_dir().to_owned();
        assert_eq!(expand_path("~/k.pem", Path::new("/c")), home.join("k.pem"));
    }
}
