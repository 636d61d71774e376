//! The configuration file: organisations, their keys and hosts, and per-repository rules.
//!
//! Every unknown key, scope, op, bad ttl or bad pattern is an error that names the file and line:
//! a typo in a file that grants access must never silently widen it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::env::Env;
use crate::glob::Glob;
use crate::host::{Host, OrgName};
use crate::key::{AgentKeyId, KeySource};
use crate::token::{Op, RefRule, Scope};
use crate::ttl::Ttl;

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
    /// `[sandbox.NAME]` tables, served by `broker` (see [`crate::broker`]).
    pub sandboxes: Vec<crate::broker::Sandbox>,
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
    /// A field of the configuration is wrong (the key fields, a subject, scopes).
    #[error("{}:{line}: {source}", .path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        source: FieldError,
    },
    /// The file is not valid TOML or not a valid configuration.
    #[error("{}:{line}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
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
    #[serde(default)]
    sandbox: BTreeMap<String, Spanned<crate::broker::policy::RawSandbox>>,
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

/// What is wrong with one organisation's key fields, or a subject or scopes anywhere.
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
    config_dir(env).map(|dir| dir.join("config.toml"))
}

/// `codestorage` in the user's config directory: `$XDG_CONFIG_HOME` or `~/.config` on Linux and
/// macOS (where git and gh look too, rather than `~/Library/Application Support`, which is still
/// read when a config is already there), the roaming app-data folder on Windows.
fn config_dir(env: &dyn Env) -> Option<PathBuf> {
    let dirs = directories::BaseDirs::new()?;
    if cfg!(target_os = "macos") {
        let xdg = env
            .var("XDG_CONFIG_HOME")
            .filter(|d| Path::new(d).is_absolute())
            .map_or_else(|| dirs.home_dir().join(".config"), PathBuf::from)
            .join("codestorage");
        let old = dirs.config_dir().join("codestorage");
        if !xdg.join("config.toml").exists() && old.join("config.toml").exists() {
            return Some(old);
        }
        return Some(xdg);
    }
    Some(dirs.config_dir().join("codestorage"))
}

/// The directory keys made by `keygen` go to by default: beside the config file, except on
/// Windows, where keys stay in the local (not roaming) app-data folder.
pub fn default_key_dir() -> Option<PathBuf> {
    if cfg!(windows) {
        return directories::BaseDirs::new()
            .map(|dirs| dirs.config_local_dir().join("codestorage"));
    }
    config_dir(&crate::env::ProcessEnv)
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
    let invalid = |offset: usize, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line: line_of(text, offset),
        message,
    };
    let field = |(offset, source): (usize, FieldError)| ConfigError::Field {
        path: path.to_owned(),
        line: line_of(text, offset),
        source,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start);
        invalid(offset, e.message().trim().replace('\n', " "))
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut orgs = BTreeMap::new();
    let mut host_owner: BTreeMap<String, String> = BTreeMap::new();
    for (name, spanned) in raw.org {
        let at = spanned.span().start;
        let raw_org = spanned.into_inner();
        let org_name = OrgName::parse(&name)
            .map_err(|e| invalid(at, format!("[org.{}]: {e}", crate::log::Escaped(&name))))?;
        let key = key_source(&raw_org, &name, base, at).map_err(field)?;
        let hosts = match raw_org.hosts {
            None => vec![org_name.default_host()],
            Some(hosts) if hosts.is_empty() => {
                return Err(invalid(
                    at,
                    format!(
                        "[org.{name}] hosts is empty; remove it to use the default [\"{name}.code.storage\"]"
                    ),
                ));
            }
            Some(hosts) => {
                let mut checked = Vec::with_capacity(hosts.len());
                for host in hosts {
                    let at = host.span().start;
                    checked
                        .push(Host::parse(host.get_ref()).map_err(|e| invalid(at, e.to_string()))?);
                }
                checked
            }
        };
        for host in &hosts {
            if let Some(other) = host_owner.insert(host.to_string(), name.clone()) {
                return Err(invalid(
                    at,
                    format!(
                        "host {host:?} is listed by both [org.{other}] and [org.{name}]; a host belongs to one organisation"
                    ),
                ));
            }
        }
        let level = make_level(
            raw_org.ttl,
            raw_org.scopes,
            raw_org.subject,
            raw_org.least_privilege,
        )
        .map_err(field)?;
        let mut rules = Vec::with_capacity(raw_org.repo.len());
        for rule in raw_org.repo {
            let at = rule.span().start;
            let rule = rule.into_inner();
            let refs = match rule.refs {
                None => None,
                Some(refs) => {
                    let mut checked = Vec::with_capacity(refs.len());
                    for r in refs {
                        let at = r.span().start;
                        let r = r.into_inner();
                        if r.pattern.is_empty()
                            || r.pattern
                                .chars()
                                .any(|c| c.is_control() || c.is_whitespace())
                        {
                            return Err(invalid(
                                at,
                                format!(
                                    "refs pattern {:?} must be a ref name or glob such as \"refs/heads/main\"",
                                    r.pattern
                                ),
                            ));
                        }
                        checked.push(RefRule {
                            pattern: r.pattern,
                            ops: r.ops,
                        });
                    }
                    Some(checked)
                }
            };
            rules.push(RepoRule {
                pattern: rule.pattern,
                level: make_level(rule.ttl, rule.scopes, rule.subject, rule.least_privilege)
                    .map_err(field)?,
                ops: rule.ops,
                refs,
                line: line_of(text, at),
            });
        }
        orgs.insert(
            name.clone(),
            Org {
                name: org_name,
                key,
                hosts,
                allow_http: raw_org.allow_http,
                allow_insecure_key_permissions: raw_org.allow_insecure_key_permissions,
                level,
                rules,
                line: line_of(text, at),
            },
        );
    }
    let sandboxes = crate::broker::policy::parse_sandboxes(
        raw.sandbox,
        &orgs,
        base,
        &|offset| line_of(text, offset),
        &invalid,
    )?;
    let broker = match raw.broker {
        Some(socket) if socket.get_ref().is_empty() => {
            return Err(invalid(
                socket.span().start,
                "broker is empty; name the broker's socket, e.g. broker = \"/run/codestorage.sock\"".into(),
            ));
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

/// The organisation's one key source; an error carries the offset of the field at fault (the
/// table's, `at`, when no one field is).
fn key_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
    at: usize,
) -> Result<KeySource, (usize, FieldError)> {
    let mut sources = Vec::with_capacity(1);
    for (field, value) in [("key_file", &org.key_file), ("key_env", &org.key_env)] {
        if value
            .as_deref()
            .is_some_and(crate::key::pem::looks_like_pem)
        {
            return Err((
                at,
                FieldError::PemText {
                    org: name.to_owned(),
                    field,
                },
            ));
        }
    }
    if let Some(file) = &org.key_file {
        sources.push(KeySource::File(expand_path(file, base)));
    }
    if let Some(var) = &org.key_env {
        if var.is_empty() {
            return Err((
                at,
                FieldError::KeyEnvEmpty {
                    org: name.to_owned(),
                },
            ));
        }
        sources.push(KeySource::Env(var.clone()));
    }
    if let Some(argv) = &org.key_command {
        if argv.first().is_none_or(String::is_empty) {
            return Err((
                at,
                FieldError::KeyCommandEmpty {
                    org: name.to_owned(),
                },
            ));
        }
        sources.push(KeySource::Command(argv.clone()));
    }
    if let Some(agent) = agent_source(org, name, base)? {
        sources.push(agent);
    }
    if let Some(signer) = sign_command_source(org, name, base)? {
        sources.push(signer);
    }
    match sources.len() {
        1 => Ok(sources.remove(0)),
        0 => Err((
            at,
            FieldError::NoKey {
                org: name.to_owned(),
            },
        )),
        _ => Err((
            at,
            FieldError::SeveralKeys {
                org: name.to_owned(),
            },
        )),
    }
}

/// `key_agent` (a fingerprint, or a public key file relative to the config) with its optional
/// `agent_socket`.
fn agent_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
) -> Result<Option<KeySource>, (usize, FieldError)> {
    let owner = || name.to_owned();
    let socket = match &org.agent_socket {
        None => None,
        Some(socket) if org.key_agent.is_none() => {
            return Err((
                socket.span().start,
                FieldError::SocketWithoutAgent { org: owner() },
            ));
        }
        Some(socket) if socket.get_ref().trim().is_empty() => {
            return Err((
                socket.span().start,
                FieldError::SocketEmpty { org: owner() },
            ));
        }
        Some(socket) => Some(expand_path(socket.get_ref(), base)),
    };
    let Some(agent) = &org.key_agent else {
        return Ok(None);
    };
    let at = agent.span().start;
    let value = agent.get_ref().trim();
    if value.is_empty() {
        return Err((at, FieldError::AgentEmpty { org: owner() }));
    }
    if crate::key::pem::looks_like_pem(value) {
        return Err((at, FieldError::AgentPem { org: owner() }));
    }
    let key = match value.split_once(':') {
        Some((prefix, _)) if prefix.eq_ignore_ascii_case("SHA256") => {
            let fingerprint = crate::sshagent::Fingerprint::parse(value).map_err(|reason| {
                (
                    at,
                    FieldError::AgentFingerprint {
                        org: owner(),
                        reason,
                    },
                )
            })?;
            AgentKeyId::Fingerprint(fingerprint)
        }
        Some((prefix, _)) if prefix.eq_ignore_ascii_case("MD5") => {
            return Err((at, FieldError::AgentMd5 { org: owner() }));
        }
        _ => AgentKeyId::PublicKeyFile(expand_path(value, base)),
    };
    Ok(Some(KeySource::agent(key, socket)))
}

/// `sign_command` with its required `public_key_file` (relative to the config).
fn sign_command_source(
    org: &RawOrg,
    name: &str,
    base: &Path,
) -> Result<Option<KeySource>, (usize, FieldError)> {
    let owner = || name.to_owned();
    let Some(argv) = &org.sign_command else {
        return match &org.public_key_file {
            Some(file) => Err((
                file.span().start,
                FieldError::PublicKeyWithoutSignCommand {
                    org: owner(),
                    file: file.get_ref().clone(),
                },
            )),
            None => Ok(None),
        };
    };
    let at = argv.span().start;
    if argv.get_ref().first().is_none_or(String::is_empty) {
        return Err((at, FieldError::SignCommandEmpty { org: owner() }));
    }
    let public_key_file = match &org.public_key_file {
        Some(file) if !file.get_ref().trim().is_empty() => expand_path(file.get_ref(), base),
        Some(file) => {
            return Err((
                file.span().start,
                FieldError::PublicKeyFileEmpty { org: owner() },
            ));
        }
        None => {
            return Err((at, FieldError::PublicKeyFileMissing { org: owner() }));
        }
    };
    Ok(Some(KeySource::sign_command(
        argv.get_ref().clone(),
        public_key_file,
    )))
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
