//! The `[sandbox.NAME]` tables of the config: the broker's sandboxes, parsed as strictly as the
//! rest of the file. The broker's runtime decision lives in `broker::policy`, which reads these;
//! this module never looks at the broker.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::Org;
use crate::glob::Glob;
use crate::host::OrgName;
use crate::log::{Escaped, Shown};
use crate::token::{Op, RefRule, Scope};
use crate::ttl::Ttl;

/// The socket mode when the table sets none: the broker's own user only.
pub const DEFAULT_MODE: u32 = 0o600;

/// One `[sandbox.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The table name, shown in refusals and audit lines.
    pub name: String,
    /// The Unix socket the broker creates for it; mounting it is what gives a sandbox access.
    pub socket: PathBuf,
    /// The organisations it may get tokens for (each an `[org.NAME]` of the same file).
    pub orgs: Vec<OrgName>,
    /// The repository patterns it may get tokens for.
    pub repos: Vec<Glob>,
    /// The most scopes a token may carry.
    pub scopes: Vec<Scope>,
    /// The longest lifetime a token may have; `None` keeps the rule's.
    pub ttl: Option<Ttl>,
    /// The `sub` claim of every token (default `sandbox:NAME`).
    pub subject: String,
    /// Per-ref policies added to every token.
    pub refs: Vec<RefRule>,
    /// Repository-wide policies added to every token.
    pub ops: Vec<Op>,
    /// The only refs its tokens may push to; empty: no such limit.
    pub push_branches: Vec<crate::refpolicy::Pattern>,
    /// The socket file's permission bits.
    pub mode: u32,
    /// The socket file's group, when others than the broker's user connect.
    pub group: Option<Group>,
    /// Line of the table in the file, for messages.
    pub line: usize,
    /// `reuse_tokens` for this sandbox; `None` follows the top-level setting.
    pub reuse_tokens: Option<bool>,
}

/// A socket's group, by number or by name (looked up when the socket is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// A numeric group ID.
    Id(u32),
    /// A group name from the system's group database.
    Name(String),
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// A `[sandbox.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    socket: Option<Spanned<String>>,
    orgs: Option<Spanned<Vec<Spanned<String>>>>,
    repos: Option<Spanned<Vec<Glob>>>,
    scopes: Option<Spanned<Vec<Scope>>>,
    ttl: Option<Ttl>,
    subject: Option<Spanned<String>>,
    refs: Option<Vec<Spanned<RawRef>>>,
    ops: Option<Vec<Op>>,
    push_branches: Option<Vec<Spanned<String>>>,
    mode: Option<Spanned<RawMode>>,
    group: Option<Spanned<RawGroup>>,
    reuse_tokens: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRef {
    pattern: String,
    ops: Vec<Op>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    Text(String),
    Number(i64),
}

/// A group as written: a name or a number.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RawGroup {
    /// A group name.
    Name(String),
    /// A group ID.
    Id(i64),
}

/// What is wrong with one `[sandbox.NAME]` table; the config adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// A table name outside `[A-Za-z0-9._-]{1,64}`.
    #[error(
        "[sandbox.{}]: a sandbox name is letters, digits, '.', '_' and '-' (at most 64), e.g. agent-42",
        Escaped(.name)
    )]
    Name {
        /// The name as written.
        name: String,
    },
    /// No `socket`.
    #[error(
        "[sandbox.{name}] needs socket = \"/run/codestorage/{name}.sock\" (the socket the broker creates)"
    )]
    NeedsSocket {
        /// The sandbox.
        name: String,
    },
    /// No `orgs`.
    #[error("[sandbox.{name}] needs orgs = [\"ORG\"] (the organisations it may get tokens for)")]
    NeedsOrgs {
        /// The sandbox.
        name: String,
    },
    /// No `repos`.
    #[error(
        "[sandbox.{name}] needs repos = [\"agents/{name}/**\"] (the repositories it may get tokens for)"
    )]
    NeedsRepos {
        /// The sandbox.
        name: String,
    },
    /// `socket = ""`.
    #[error(
        "[sandbox.{name}] socket is empty; name the socket file the broker creates, e.g. \"/run/codestorage/{name}.sock\""
    )]
    SocketEmpty {
        /// The sandbox.
        name: String,
    },
    /// Two sandboxes on one socket.
    #[error(
        "[sandbox.{name}] socket {} is also [sandbox.{other}]'s; the socket is a sandbox's identity, give each its own",
        .socket.display()
    )]
    SocketShared {
        /// The sandbox.
        name: String,
        /// The socket both name.
        socket: PathBuf,
        /// The sandbox that named it first.
        other: String,
    },
    /// `orgs = []`.
    #[error(
        "[sandbox.{name}] orgs is empty; name the organisations it may get tokens for, e.g. [\"acme\"]"
    )]
    OrgsEmpty {
        /// The sandbox.
        name: String,
    },
    /// An organisation the file does not configure.
    #[error(
        "[sandbox.{name}] orgs names {}, which has no [org.{}] table in this file; add the organisation (with its key) or remove it from orgs",
        Shown(.org),
        Escaped(.org)
    )]
    UnknownOrg {
        /// The sandbox.
        name: String,
        /// The organisation as written.
        org: String,
    },
    /// `repos = []`.
    #[error(
        "[sandbox.{name}] repos is empty; give the repository patterns it may get tokens for, e.g. [\"agents/{name}/**\"]"
    )]
    ReposEmpty {
        /// The sandbox.
        name: String,
    },
    /// `scopes = []`.
    #[error(
        "[sandbox.{name}] scopes is empty; give the most it may get, e.g. [\"git:read\", \"git:write\"]"
    )]
    ScopesEmpty {
        /// The sandbox.
        name: String,
    },
    /// A subject that is empty or holds control characters.
    #[error("[sandbox.{name}] subject must be non-empty and hold no control characters")]
    Subject {
        /// The sandbox.
        name: String,
    },
    /// A `refs` pattern a claim cannot hold.
    #[error(
        "[sandbox.{name}] refs pattern {} must be a ref name or glob such as \"refs/heads/main\"",
        Shown(.pattern)
    )]
    RefPattern {
        /// The sandbox.
        name: String,
        /// The pattern as written.
        pattern: String,
    },
    /// A `push_branches` entry that is no branch, prefix or ref.
    #[error("[sandbox.{name}] {source}")]
    PushBranch {
        /// The sandbox.
        name: String,
        /// What is wrong with it.
        source: crate::refpolicy::BranchError,
    },
    /// A bad socket `mode`.
    #[error("[sandbox.{name}] {source}")]
    Mode {
        /// The sandbox.
        name: String,
        /// What is wrong with it.
        source: ModeError,
    },
    /// A mode that lets a group in, without naming the group.
    #[error(
        "[sandbox.{name}] mode {mode:04o} lets a group use the socket but names none; add group = \"NAME\" (the group whose members may get this sandbox's tokens), or use mode = \"0600\""
    )]
    GroupModeNeedsGroup {
        /// The sandbox.
        name: String,
        /// The mode.
        mode: u32,
    },
    /// A number that cannot be a group ID.
    #[error("[sandbox.{name}] group {id} is no group ID")]
    GroupId {
        /// The sandbox.
        name: String,
        /// The number as written.
        id: i64,
    },
    /// `control_socket = ""`.
    #[error(
        "control_socket is empty; name the broker's control socket, e.g. control_socket = \"/run/codestorage/control.sock\""
    )]
    ControlSocketEmpty,
    /// `sandbox_dir = ""`.
    #[error(
        "sandbox_dir is empty; name the directory the broker makes registered sandboxes' sockets in, e.g. sandbox_dir = \"/run/codestorage/sandboxes\""
    )]
    SandboxDirEmpty,
    /// `control_socket` without `sandbox_dir`.
    #[error(
        "control_socket needs sandbox_dir = \"DIR\": a sandbox registered through the control API gets DIR/NAME/git.sock"
    )]
    ControlNeedsDir,
    /// A `control_group` that cannot name a group.
    #[error(
        "control_group {} is not a group; use the name or number of a group in /etc/group",
        Shown(.group)
    )]
    ControlGroup {
        /// The group as written.
        group: String,
    },
    /// Text that cannot be a group name.
    #[error(
        "[sandbox.{name}] group {} is not a group name; use the name or number of a group in /etc/group",
        Shown(.group)
    )]
    GroupName {
        /// The sandbox.
        name: String,
        /// The text as written.
        group: String,
    },
}

/// The broker's own top-level settings: its control API and the directory of the sockets it
/// makes for sandboxes registered there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `control_socket = "PATH"`: where the broker serves its HTTP control API.
    pub control_socket: Option<PathBuf>,
    /// `control_group = "NAME"`: a group whose members may use the control API too.
    pub control_group: Option<Group>,
    /// `sandbox_dir = "DIR"`: a registered sandbox gets `DIR/NAME/git.sock`.
    pub sandbox_dir: Option<PathBuf>,
}

/// The broker's settings as written.
#[derive(Default)]
pub struct RawBrokerSettings {
    /// `control_socket`.
    pub control_socket: Option<Spanned<String>>,
    /// `control_group`.
    pub control_group: Option<Spanned<RawGroup>>,
    /// `sandbox_dir`.
    pub sandbox_dir: Option<Spanned<String>>,
}

/// Checks the broker's settings; relative paths are relative to `base`.
pub fn parse_broker_settings(
    raw: RawBrokerSettings,
    base: &Path,
) -> Result<BrokerSettings, Located> {
    let path = |raw: Spanned<String>, empty: SandboxError| {
        if raw.get_ref().is_empty() {
            Err((raw.span().start, empty))
        } else {
            Ok(crate::config::expand_path(raw.get_ref(), base))
        }
    };
    let control_at = raw.control_socket.as_ref().map(|c| c.span().start);
    let settings = BrokerSettings {
        control_socket: raw
            .control_socket
            .map(|c| path(c, SandboxError::ControlSocketEmpty))
            .transpose()?,
        sandbox_dir: raw
            .sandbox_dir
            .map(|d| path(d, SandboxError::SandboxDirEmpty))
            .transpose()?,
        control_group: raw
            .control_group
            .map(|g| {
                let at = g.span().start;
                match g.into_inner() {
                    RawGroup::Id(id) => {
                        u32::try_from(id).map(Group::Id).map_err(|_| id.to_string())
                    }
                    RawGroup::Name(text) if valid_group_name(&text) => Ok(Group::Name(text)),
                    RawGroup::Name(text) => Err(text),
                }
                .map_err(|group| (at, SandboxError::ControlGroup { group }))
            })
            .transpose()?,
    };
    match control_at {
        Some(at) if settings.sandbox_dir.is_none() => Err((at, SandboxError::ControlNeedsDir)),
        _ => Ok(settings),
    }
}

/// A `[sandbox.NAME]` table's fields as a registration through the control API gives them (a
/// JSON object), checked exactly as the file's. `socket` is not among them: it is
/// `dir/NAME/git.sock`. `orgs` are the config's organisations.
pub fn parse_registration(
    name: &str,
    fields: &serde_json::Map<String, serde_json::Value>,
    orgs: &BTreeMap<String, Org>,
    dir: &Path,
) -> Result<Sandbox, RegistrationError> {
    if !valid_name(name) || name.starts_with('.') {
        return Err(RegistrationError::Name { name: name.into() });
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tables {
        sandbox: BTreeMap<String, Spanned<RawSandbox>>,
    }
    let socket = dir.join(name).join("git.sock");
    let mut document = format!(
        "[sandbox.\"{name}\"]\nsocket = {}\n",
        toml_value(&serde_json::Value::from(socket.to_string_lossy()))
    );
    for (key, value) in fields {
        if key == "socket" {
            return Err(RegistrationError::Socket { name: name.into() });
        }
        let field = |message: String| RegistrationError::Field {
            name: name.into(),
            message,
        };
        if value.is_null() {
            return Err(field(format!(
                "{key} is null; leave it out for its default"
            )));
        }
        let key = serde_json::Value::from(key.as_str());
        document.push_str(&format!("{} = {}\n", toml_value(&key), toml_value(value)));
    }
    let tables: Tables = toml::from_str(&document).map_err(|e| RegistrationError::Field {
        name: name.into(),
        message: e.message().trim().replace('\n', " "),
    })?;
    let mut parsed = parse_sandboxes(tables.sandbox, orgs, dir, &|_| 0)
        .map_err(|(_, source)| RegistrationError::Sandbox(source))?;
    parsed
        .pop()
        .ok_or(RegistrationError::Name { name: name.into() })
}

/// A JSON value as TOML: a JSON string is a valid TOML basic string (the same escapes), numbers
/// and booleans are written alike, arrays and objects become arrays and inline tables. `null`
/// has no TOML form and becomes a string TOML's checks then refuse.
fn toml_value(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "\"null\"".into(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), toml_value(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
    }
}

/// Why a registration through the control API is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// A name outside `[A-Za-z0-9._-]{1,64}`, or starting with `.` (it names a directory).
    #[error(
        "{}: a registered sandbox's name is letters, digits, '.', '_' and '-' (at most 64, not starting with '.'), e.g. agent-42",
        Shown(.name)
    )]
    Name {
        /// The name as given.
        name: String,
    },
    /// `socket` in a registration: the broker chooses it.
    #[error(
        "[sandbox.{name}] socket is chosen by the broker (sandbox_dir/{name}/git.sock); leave it out"
    )]
    Socket {
        /// The sandbox.
        name: String,
    },
    /// A field that does not parse: unknown, or of the wrong type.
    #[error("[sandbox.{name}] {message}")]
    Field {
        /// The sandbox.
        name: String,
        /// The parser's words.
        message: String,
    },
    /// A field whose value the file would refuse too.
    #[error(transparent)]
    Sandbox(SandboxError),
}

/// What is wrong with a sandbox socket's `mode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// Text that is not octal digits.
    #[error("mode {} is not an octal mode; write it as \"0600\" or \"0660\"", Shown(.0))]
    NotOctal(String),
    /// A number that cannot be a mode.
    #[error("mode {0} is not a mode; write it as \"0600\" or \"0660\"")]
    NotAMode(i64),
    /// Bits beyond the permission bits.
    #[error(
        "mode {0:o} (octal) has bits beyond 0777; write it as a string of octal digits, e.g. \"0660\""
    )]
    ExtraBits(u32),
    /// The broker's own user could not use its socket.
    #[error("mode {0:04o} does not let the broker's own user use the socket; start from \"0600\"")]
    OwnerLacks(u32),
    /// Every user of the machine could ask for tokens.
    #[error(
        "mode {0:04o} lets every user of the machine get this sandbox's tokens; allow a group instead: mode = \"0660\" and group = \"NAME\""
    )]
    Everyone(u32),
}

/// A sandbox error and the byte offset of the text it is about.
pub type Located = (usize, SandboxError);

/// Checks and converts the `[sandbox.NAME]` tables; `orgs` are the file's organisations and
/// `base` its directory (relative socket paths are relative to it). `line_of` turns a byte
/// offset into the table's line for [`Sandbox::line`].
pub fn parse_sandboxes(
    raw: BTreeMap<String, Spanned<RawSandbox>>,
    orgs: &BTreeMap<String, Org>,
    base: &Path,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<Vec<Sandbox>, Located> {
    let mut sandboxes: Vec<Sandbox> = Vec::with_capacity(raw.len());
    // Socket to sandbox, so that 10,000 tables are checked in one pass.
    let mut owners: std::collections::HashMap<PathBuf, usize> = std::collections::HashMap::new();
    for (name, spanned) in raw {
        let at = spanned.span().start;
        let sandbox = parse_one(name, spanned.into_inner(), orgs, base, at, line_of(at))?;
        if let Some(&other) = owners.get(&sandbox.socket) {
            return Err((
                at,
                SandboxError::SocketShared {
                    name: sandbox.name,
                    socket: sandbox.socket,
                    other: sandboxes[other].name.clone(),
                },
            ));
        }
        owners.insert(sandbox.socket.clone(), sandboxes.len());
        sandboxes.push(sandbox);
    }
    Ok(sandboxes)
}

/// Checks one table that starts at byte `at` (on line `line`).
fn parse_one(
    name: String,
    raw: RawSandbox,
    orgs: &BTreeMap<String, Org>,
    base: &Path,
    at: usize,
    line: usize,
) -> Result<Sandbox, Located> {
    if !valid_name(&name) {
        return Err((at, SandboxError::Name { name }));
    }
    let named = name.clone();
    let (has_socket, has_orgs) = (raw.socket.is_some(), raw.orgs.is_some());
    let (Some(raw_socket), Some(raw_orgs), Some(raw_repos)) = (raw.socket, raw.orgs, raw.repos)
    else {
        return Err((at, missing_field(name, has_socket, has_orgs)));
    };
    if raw_socket.get_ref().is_empty() {
        return Err((raw_socket.span().start, SandboxError::SocketEmpty { name }));
    }
    let socket = crate::config::expand_path(raw_socket.get_ref(), base);
    let sandbox_orgs = check_orgs(&name, raw_orgs, orgs)?;
    if raw_repos.get_ref().is_empty() {
        return Err((raw_repos.span().start, SandboxError::ReposEmpty { name }));
    }
    let scopes = match raw.scopes {
        Some(scopes) if scopes.get_ref().is_empty() => {
            return Err((scopes.span().start, SandboxError::ScopesEmpty { name }));
        }
        Some(scopes) => scopes.into_inner(),
        None => vec![Scope::GitRead, Scope::GitWrite],
    };
    let subject = match raw.subject {
        Some(subject) if !crate::config::valid_subject(subject.get_ref()) => {
            return Err((subject.span().start, SandboxError::Subject { name }));
        }
        Some(subject) => subject.into_inner(),
        None => format!("sandbox:{name}"),
    };
    let mode_at = raw.mode.as_ref().map_or(at, |m| m.span().start);
    let mode = raw.mode.map_or(Ok(DEFAULT_MODE), |mode| {
        parse_mode(mode.get_ref()).map_err(|source| {
            let name = named.clone();
            (mode_at, SandboxError::Mode { name, source })
        })
    })?;
    let group = raw.group.map(|g| check_group(&named, g)).transpose()?;
    if mode & 0o070 != 0 && group.is_none() {
        // Without a group the socket keeps the broker's own, whose members nobody chose.
        let name = named.clone();
        return Err((mode_at, SandboxError::GroupModeNeedsGroup { name, mode }));
    }
    Ok(Sandbox {
        refs: check_refs(&name, raw.refs.unwrap_or_default())?,
        push_branches: check_push_branches(&name, raw.push_branches.unwrap_or_default())?,
        mode,
        group,
        name,
        socket,
        orgs: sandbox_orgs,
        repos: raw_repos.into_inner(),
        scopes,
        ttl: raw.ttl,
        subject,
        ops: raw.ops.unwrap_or_default(),
        line,
        reuse_tokens: raw.reuse_tokens,
    })
}

/// The first required field that is missing, in the order the docs list them.
fn missing_field(name: String, has_socket: bool, has_orgs: bool) -> SandboxError {
    if !has_socket {
        SandboxError::NeedsSocket { name }
    } else if !has_orgs {
        SandboxError::NeedsOrgs { name }
    } else {
        SandboxError::NeedsRepos { name }
    }
}

/// Each listed organisation must be one of the file's, by its canonical name.
fn check_orgs(
    name: &str,
    raw: Spanned<Vec<Spanned<String>>>,
    orgs: &BTreeMap<String, Org>,
) -> Result<Vec<OrgName>, Located> {
    let at = raw.span().start;
    let listed = raw.into_inner();
    if listed.is_empty() {
        return Err((at, SandboxError::OrgsEmpty { name: name.into() }));
    }
    listed
        .into_iter()
        .map(|org| {
            orgs.values()
                .find(|o| o.name.matches(org.get_ref()))
                .map(|found| found.name.clone())
                .ok_or_else(|| {
                    let name = name.to_owned();
                    let at = org.span().start;
                    (
                        at,
                        SandboxError::UnknownOrg {
                            name,
                            org: org.into_inner(),
                        },
                    )
                })
        })
        .collect()
}

fn check_refs(name: &str, raw: Vec<Spanned<RawRef>>) -> Result<Vec<RefRule>, Located> {
    raw.into_iter()
        .map(|r| {
            let at = r.span().start;
            let RawRef { pattern, ops } = r.into_inner();
            if valid_ref_pattern(&pattern) {
                Ok(RefRule { pattern, ops })
            } else {
                let name = name.to_owned();
                Err((at, SandboxError::RefPattern { name, pattern }))
            }
        })
        .collect()
}

fn check_push_branches(
    name: &str,
    raw: Vec<Spanned<String>>,
) -> Result<Vec<crate::refpolicy::Pattern>, Located> {
    raw.into_iter()
        .map(|branch| {
            let at = branch.span().start;
            crate::refpolicy::check_branch(branch.get_ref()).map_err(|source| {
                let name = name.to_owned();
                (at, SandboxError::PushBranch { name, source })
            })
        })
        .collect()
}

fn check_group(name: &str, raw: Spanned<RawGroup>) -> Result<Group, Located> {
    let at = raw.span().start;
    let name = name.to_owned();
    match raw.into_inner() {
        RawGroup::Id(id) => u32::try_from(id)
            .map(Group::Id)
            .map_err(|_| (at, SandboxError::GroupId { name, id })),
        RawGroup::Name(text) if valid_group_name(&text) => Ok(Group::Name(text)),
        RawGroup::Name(group) => Err((at, SandboxError::GroupName { name, group })),
    }
}

/// Whether `name` can name a sandbox: `[A-Za-z0-9._-]{1,64}`, safe in a path and a log line.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_group_name(name: &str) -> bool {
    valid_name(name)
}

/// The same rule as `[[org.NAME.repo]] refs`: a ref name or glob, nothing a claim cannot hold.
fn valid_ref_pattern(pattern: &str) -> bool {
    !pattern.is_empty() && !pattern.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Reads a socket mode: octal text (`"0660"`) or a TOML octal integer (`0o660`). Whoever can
/// write the socket can get tokens, so the owner must, and "everyone" may not.
fn parse_mode(raw: &RawMode) -> Result<u32, ModeError> {
    let mode = match raw {
        RawMode::Text(text) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .map_err(|_| ModeError::NotOctal(text.clone()))?,
        RawMode::Number(n) => u32::try_from(*n).map_err(|_| ModeError::NotAMode(*n))?,
    };
    if mode & !0o777 != 0 {
        return Err(ModeError::ExtraBits(mode));
    }
    if mode & 0o600 != 0o600 {
        return Err(ModeError::OwnerLacks(mode));
    }
    if mode & 0o007 != 0 {
        return Err(ModeError::Everyone(mode));
    }
    Ok(mode)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A config with two organisations and the documented sandbox table, for the sandbox
    //! schema's tests and the broker policy's.
    use std::path::Path;

    use crate::config::{self, Config, ConfigError};

    /// Two organisations, acme with a repository rule.
    pub const BASE: &str = r#"
[org.acme]
key_file = "/k/acme.pem"
hosts = ["acme.code.storage", "127.0.0.1:9000"]
[[org.acme.repo]]
match = "mirrors/**"
scopes = ["git:write"]
ttl = "2h"
refs = [{ pattern = "refs/heads/*", ops = ["no-force-push"] }]
ops = ["verify-sig"]
[org.beta]
key_file = "/k/beta.pem"
"#;

    /// The sandbox table docs/sandboxes.md shows.
    pub const AGENT: &str = r#"
[sandbox.agent-42]
socket = "/run/codestorage/agent-42.sock"
orgs = ["acme"]
repos = ["agents/42/**", "mirrors/*"]
scopes = ["git:read", "git:write"]
ttl = "15m"
refs = [{ pattern = "refs/heads/main", ops = ["no-push"] }]
"#;

    /// [`BASE`] with `extra` after it, parsed.
    pub fn parse(extra: &str) -> Result<Config, ConfigError> {
        config::parse(&format!("{BASE}{extra}"), Path::new("/etc/cs/config.toml"))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{AGENT, parse};
    use super::*;

    fn error(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_table_with_its_defaults() {
        let config = parse(AGENT).unwrap();
        let [sandbox] = config.sandboxes.as_slice() else {
            panic!("{:?}", config.sandboxes)
        };
        assert_eq!(sandbox.name, "agent-42");
        assert_eq!(sandbox.socket, Path::new("/run/codestorage/agent-42.sock"));
        assert_eq!(sandbox.subject, "sandbox:agent-42");
        assert_eq!(sandbox.mode, 0o600);
        assert_eq!(sandbox.group, None);
        assert_eq!(sandbox.ttl, Some(Ttl::parse("15m").unwrap()));
        assert_eq!(sandbox.line, 14);
        let relative = parse(
            "[sandbox.x]\nsocket = \"x.sock\"\norgs = [\"ACME\"]\nrepos = [\"**\"]\nmode = \"0660\"\ngroup = \"agents\"\n",
        )
        .unwrap();
        let x = &relative.sandboxes[0];
        assert_eq!(x.socket, Path::new("/etc/cs/x.sock"));
        assert_eq!(x.orgs[0].as_str(), "acme");
        assert_eq!(x.scopes, [Scope::GitRead, Scope::GitWrite]);
        assert_eq!(
            (x.mode, x.group.clone()),
            (0o660, Some(Group::Name("agents".into())))
        );
        let numeric = parse(
            "[sandbox.x]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\nmode = 0o640\ngroup = 1001\n",
        )
        .unwrap();
        assert_eq!(numeric.sandboxes[0].mode, 0o640);
        assert_eq!(numeric.sandboxes[0].group, Some(Group::Id(1001)));
    }

    #[test]
    fn every_mistake_names_the_file_line_and_fix() {
        let table = |body: &str| format!("[sandbox.a]\n{body}\n");
        let good = "socket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]";
        for (body, line, words) in [
            (format!("{good}\nrepo = [\"x\"]"), 17, "repo"),
            (
                "orgs = [\"acme\"]\nrepos = [\"**\"]".into(),
                13,
                "needs socket = ",
            ),
            (
                "socket = \"/s\"\norgs = []\nrepos = [\"**\"]".into(),
                15,
                "orgs is empty",
            ),
            (
                "socket = \"/s\"\norgs = [\"gamma\"]\nrepos = [\"**\"]".into(),
                15,
                "no [org.gamma] table",
            ),
            (
                "socket = \"/s\"\norgs = [\"acme\"]\nrepos = []".into(),
                16,
                "repos is empty",
            ),
            (
                "socket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"/x\"]".into(),
                16,
                "write it as",
            ),
            (format!("{good}\nscopes = []"), 17, "scopes is empty"),
            (format!("{good}\nscopes = [\"git:admin\"]"), 17, "git:admin"),
            (format!("{good}\nttl = 0"), 17, "at least one second"),
            (format!("{good}\nsubject = \"a\\nb\""), 17, "subject"),
            (
                format!("{good}\nrefs = [{{ pattern = \"a b\", ops = [\"no-push\"] }}]"),
                17,
                "refs pattern",
            ),
            (format!("{good}\nops = [\"no-pull\"]"), 17, "no-pull"),
            (format!("{good}\nmode = \"0666\""), 17, "every user"),
            (format!("{good}\nmode = \"0400\""), 17, "broker's own user"),
            (format!("{good}\nmode = 660"), 17, "beyond 0777"),
            (format!("{good}\nmode = \"rw\""), 17, "not an octal mode"),
            (format!("{good}\ngroup = \"a b\""), 17, "not a group name"),
            (format!("{good}\ngroup = -1"), 17, "no group ID"),
            (
                format!("{good}\nmode = \"0660\""),
                17,
                "names none; add group",
            ),
            (
                "socket = \"/s\"\nrepos = [\"**\"]".into(),
                13,
                "needs orgs = ",
            ),
            (
                "socket = \"/s\"\norgs = [\"acme\"]".into(),
                13,
                "needs repos = ",
            ),
        ] {
            let message = error(&table(&body));
            assert!(
                message.starts_with(&format!("/etc/cs/config.toml:{line}: "))
                    && message.contains(words),
                "{body:?}: {message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        let twice = error(&format!(
            "{}{}",
            table(good),
            table(good).replace("sandbox.a", "sandbox.b")
        ));
        assert!(twice.contains("also [sandbox.a]'s"), "{twice}");
        assert!(error(&format!("[sandbox.\"a b\"]\n{good}\n")).contains("a sandbox name is"));
    }
}
