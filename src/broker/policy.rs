//! The sandbox model: the `[sandbox.NAME]` tables of the config, parsed as strictly as the rest
//! of it, and the broker's decision for one request from one sandbox.
//!
//! A sandbox only ever narrows what the configuration grants: the organisation and repository
//! must be the sandbox's, the scopes are capped by its `scopes`, the lifetime by its `ttl`, its
//! ref policies are added, and `sub` names it. Least privilege comes from the asking process as
//! the kernel shows it, never from anything the client says.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, ConfigError, Org};
use crate::env::Env;
use crate::glob::Glob;
use crate::host::OrgName;
use crate::log::Shown;
use crate::operation::Operation;
use crate::protocol::Request;
use crate::resolve::{self, Disposition, Overrides, Reach, ResolveError, Settings, Target, join};
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
    /// The socket file's permission bits.
    pub mode: u32,
    /// The socket file's group, when others than the broker's user connect.
    pub group: Option<Group>,
    /// Line of the table in the file, for messages.
    pub line: usize,
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
    mode: Option<Spanned<RawMode>>,
    group: Option<Spanned<RawGroup>>,
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

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGroup {
    Name(String),
    Id(i64),
}

/// Builds a `ConfigError` for a byte offset of the file.
pub type Invalid<'a> = &'a dyn Fn(usize, String) -> ConfigError;

/// Checks and converts the `[sandbox.NAME]` tables; `orgs` are the file's organisations and
/// `base` its directory (relative socket paths are relative to it).
pub fn parse_sandboxes(
    raw: BTreeMap<String, Spanned<RawSandbox>>,
    orgs: &BTreeMap<String, Org>,
    base: &Path,
    line_of: &dyn Fn(usize) -> usize,
    invalid: Invalid<'_>,
) -> Result<Vec<Sandbox>, ConfigError> {
    let mut sandboxes: Vec<Sandbox> = Vec::with_capacity(raw.len());
    for (name, spanned) in raw {
        let at = spanned.span().start;
        let raw = spanned.into_inner();
        if !valid_name(&name) {
            return Err(invalid(
                at,
                format!(
                    "[sandbox.{}]: a sandbox name is letters, digits, '.', '_' and '-' (at most 64), e.g. agent-42",
                    crate::log::Escaped(&name)
                ),
            ));
        }
        let needs = |field: &str, example: String| {
            invalid(at, format!("[sandbox.{name}] needs {field} = {example}"))
        };
        let (has_socket, has_orgs) = (raw.socket.is_some(), raw.orgs.is_some());
        let (Some(raw_socket), Some(raw_orgs), Some(raw_repos)) = (raw.socket, raw.orgs, raw.repos)
        else {
            return Err(if !has_socket {
                needs(
                    "socket",
                    format!("\"/run/codestorage/{name}.sock\" (the socket the broker creates)"),
                )
            } else if !has_orgs {
                needs(
                    "orgs",
                    "[\"ORG\"] (the organisations it may get tokens for)".into(),
                )
            } else {
                needs(
                    "repos",
                    format!("[\"agents/{name}/**\"] (the repositories it may get tokens for)"),
                )
            });
        };
        let socket_at = raw_socket.span().start;
        if raw_socket.get_ref().is_empty() {
            return Err(invalid(
                socket_at,
                format!(
                    "[sandbox.{name}] socket is empty; name the socket file the broker creates, e.g. \"/run/codestorage/{name}.sock\""
                ),
            ));
        }
        let socket = crate::config::expand_path(raw_socket.get_ref(), base);
        if let Some(other) = sandboxes.iter().find(|s| s.socket == socket) {
            return Err(invalid(
                socket_at,
                format!(
                    "[sandbox.{name}] socket {} is also [sandbox.{}]'s; the socket is a sandbox's identity, give each its own",
                    socket.display(),
                    other.name
                ),
            ));
        }
        let orgs_at = raw_orgs.span().start;
        let listed = raw_orgs.into_inner();
        if listed.is_empty() {
            return Err(invalid(
                orgs_at,
                format!(
                    "[sandbox.{name}] orgs is empty; name the organisations it may get tokens for, e.g. [\"acme\"]"
                ),
            ));
        }
        let mut sandbox_orgs = Vec::with_capacity(listed.len());
        for org in listed {
            let org_at = org.span().start;
            let Some(found) = orgs.values().find(|o| o.name.matches(org.get_ref())) else {
                return Err(invalid(
                    org_at,
                    format!(
                        "[sandbox.{name}] orgs names {}, which has no [org.{}] table in this file; add the organisation (with its key) or remove it from orgs",
                        Shown(org.get_ref()),
                        crate::log::Escaped(org.get_ref())
                    ),
                ));
            };
            sandbox_orgs.push(found.name.clone());
        }
        if raw_repos.get_ref().is_empty() {
            return Err(invalid(
                raw_repos.span().start,
                format!(
                    "[sandbox.{name}] repos is empty; give the repository patterns it may get tokens for, e.g. [\"agents/{name}/**\"]"
                ),
            ));
        }
        let scopes = match raw.scopes {
            Some(scopes) if scopes.get_ref().is_empty() => {
                return Err(invalid(
                    scopes.span().start,
                    format!(
                        "[sandbox.{name}] scopes is empty; give the most it may get, e.g. [\"git:read\", \"git:write\"]"
                    ),
                ));
            }
            Some(scopes) => scopes.into_inner(),
            None => vec![Scope::GitRead, Scope::GitWrite],
        };
        let subject = match raw.subject {
            Some(subject) if !crate::config::valid_subject(subject.get_ref()) => {
                return Err(invalid(
                    subject.span().start,
                    format!(
                        "[sandbox.{name}] subject must be non-empty and hold no control characters"
                    ),
                ));
            }
            Some(subject) => subject.into_inner(),
            None => format!("sandbox:{name}"),
        };
        let mut refs = Vec::new();
        for r in raw.refs.unwrap_or_default() {
            let ref_at = r.span().start;
            let r = r.into_inner();
            if !valid_ref_pattern(&r.pattern) {
                return Err(invalid(
                    ref_at,
                    format!(
                        "refs pattern {:?} must be a ref name or glob such as \"refs/heads/main\"",
                        r.pattern
                    ),
                ));
            }
            refs.push(RefRule {
                pattern: r.pattern,
                ops: r.ops,
            });
        }
        let mode = match raw.mode {
            None => DEFAULT_MODE,
            Some(mode) => {
                let mode_at = mode.span().start;
                parse_mode(mode.get_ref())
                    .map_err(|m| invalid(mode_at, format!("[sandbox.{name}] {m}")))?
            }
        };
        let group = match raw.group {
            None => None,
            Some(group) => {
                let group_at = group.span().start;
                Some(match group.into_inner() {
                    RawGroup::Id(id) => Group::Id(u32::try_from(id).map_err(|_| {
                        invalid(
                            group_at,
                            format!("[sandbox.{name}] group {id} is no group ID"),
                        )
                    })?),
                    RawGroup::Name(text) if valid_group_name(&text) => Group::Name(text),
                    RawGroup::Name(text) => {
                        return Err(invalid(
                            group_at,
                            format!(
                                "[sandbox.{name}] group {} is not a group name; use the name or number of a group in /etc/group",
                                Shown(&text)
                            ),
                        ));
                    }
                })
            }
        };
        sandboxes.push(Sandbox {
            name,
            socket,
            orgs: sandbox_orgs,
            repos: raw_repos.into_inner(),
            scopes,
            ttl: raw.ttl,
            subject,
            refs,
            ops: raw.ops.unwrap_or_default(),
            mode,
            group,
            line: line_of(at),
        });
    }
    Ok(sandboxes)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The same rule as `[[org.NAME.repo]] refs`: a ref name or glob, nothing a claim cannot hold.
fn valid_ref_pattern(pattern: &str) -> bool {
    !pattern.is_empty() && !pattern.chars().any(|c| c.is_control() || c.is_whitespace())
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

/// Why the broker gives a sandbox no token, and how git is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// How git is answered: nothing (not ours) or `quit=1`.
    pub disposition: Disposition,
    /// One line for the user and the audit log.
    pub reason: String,
    /// The organisation, when it was found.
    pub org: Option<String>,
    /// The repository, when it was found.
    pub repo: Option<String>,
}

/// What the broker grants: the token's settings, and how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Everything the token says.
    pub settings: Settings,
    /// What the asking git command does, as its processes show it.
    pub operation: Operation,
    /// Answer with git 2.46+'s ephemeral `authtype=Basic` credential (reads only, as `get`).
    pub ephemeral: bool,
}

/// Decides what `sandbox` gets for `request`: host → organisation → repository as `get` does,
/// then the sandbox's limits. `operation` is asked only when least privilege is on; it reads
/// the peer's processes, which the client cannot fake.
pub fn decide(
    config: &Config,
    sandbox: &Sandbox,
    request: &Request,
    env: &dyn Env,
    operation: impl FnOnce() -> Operation,
) -> Result<Grant, Denied> {
    let target = Target::Request {
        protocol: request.protocol.as_deref().unwrap_or_default(),
        host: request.host.as_deref().unwrap_or_default(),
        path: request.path.as_deref(),
    };
    let denied = |disposition, reason: String, org: Option<&str>, repo: Option<&str>| Denied {
        disposition,
        reason,
        org: org.map(str::to_owned),
        repo: repo.map(str::to_owned),
    };
    let mut settings = match resolve::resolve(
        Ok(Some(config)),
        target,
        Reach::Repository,
        env,
        &Overrides::default(),
    ) {
        Ok(settings) => settings,
        // A *.code.storage organisation the file does not configure: never one of the
        // sandbox's (those are all configured), so a refusal rather than a setup hint.
        Err(ResolveError::NoKey { org, .. } | ResolveError::UnknownOrg { org, .. }) => {
            return Err(denied(
                Disposition::Quit,
                org_refusal(sandbox, org.as_str()),
                Some(org.as_str()),
                None,
            ));
        }
        Err(e) => {
            let disposition = match e.disposition() {
                Disposition::DeclineWithHint => Disposition::Quit,
                other => other,
            };
            return Err(denied(disposition, e.to_string(), None, None));
        }
    };
    let org = settings.org.to_string();
    if !sandbox.orgs.iter().any(|o| o.matches(&org)) {
        return Err(denied(
            Disposition::Quit,
            org_refusal(sandbox, &org),
            Some(&org),
            Some(&settings.repo),
        ));
    }
    if !sandbox.repos.iter().any(|g| g.matches(&settings.repo)) {
        let patterns: Vec<&str> = sandbox.repos.iter().map(Glob::as_str).collect();
        return Err(denied(
            Disposition::Quit,
            format!(
                "sandbox {} may not get a token for repository {} of {org}: it matches none of the sandbox's repos ({}); add a pattern to [sandbox.{}] repos in the broker's config",
                sandbox.name,
                Shown(&settings.repo),
                patterns.join(", "),
                sandbox.name,
            ),
            Some(&org),
            Some(&settings.repo),
        ));
    }
    let capped = cap_scopes(&settings.scopes, &sandbox.scopes);
    if capped.is_empty() {
        return Err(denied(
            Disposition::Quit,
            format!(
                "sandbox {} may not get a token for repository {} of {org}: the config grants {} and the sandbox allows only {}",
                sandbox.name,
                Shown(&settings.repo),
                join(&settings.scopes),
                join(&sandbox.scopes),
            ),
            Some(&org),
            Some(&settings.repo),
        ));
    }
    settings.scopes = capped;
    if let Some(ttl) = sandbox.ttl {
        settings.ttl = settings.ttl.min(ttl);
    }
    settings.subject.clone_from(&sandbox.subject);
    settings.refs = merge_refs(settings.refs.take(), &sandbox.refs);
    settings.ops = merge_ops(settings.ops.take(), &sandbox.ops);
    let operation = if settings.least_privilege {
        operation()
    } else {
        Operation::Unknown
    };
    settings.narrow_to(operation);
    Ok(Grant {
        ephemeral: request.has_capability("authtype") && operation == Operation::Read,
        settings,
        operation,
    })
}

fn org_refusal(sandbox: &Sandbox, org: &str) -> String {
    let allowed: Vec<&str> = sandbox.orgs.iter().map(OrgName::as_str).collect();
    format!(
        "sandbox {} may not get tokens for organisation {}; it may for {} (the sandbox's orgs in the broker's config)",
        sandbox.name,
        Shown(org),
        allowed.join(", ")
    )
}

/// The rule's scopes that the sandbox allows. `git:write` includes reading, so a sandbox that
/// allows only `git:read` still reads a repository whose rule grants `git:write` alone.
pub fn cap_scopes(granted: &[Scope], allowed: &[Scope]) -> Vec<Scope> {
    let mut capped = Vec::with_capacity(granted.len());
    for &scope in granted {
        let kept = if allowed.contains(&scope) {
            Some(scope)
        } else if scope == Scope::GitWrite && allowed.contains(&Scope::GitRead) {
            Some(Scope::GitRead)
        } else {
            None
        };
        if let Some(kept) = kept
            && !capped.contains(&kept)
        {
            capped.push(kept);
        }
    }
    capped
}

/// Adds the sandbox's ref policies to the rule's so that neither is ever weakened, although
/// the server applies only the first matching entry: the sandbox's entries come first, each
/// also carrying the ops of every rule entry that may match the same refs; the rule's follow.
pub fn merge_refs(rule: Option<Vec<RefRule>>, sandbox: &[RefRule]) -> Option<Vec<RefRule>> {
    if sandbox.is_empty() {
        return rule;
    }
    let rule = rule.unwrap_or_default();
    let mut merged: Vec<RefRule> = sandbox
        .iter()
        .map(|entry| {
            let mut ops = entry.ops.clone();
            for other in rule
                .iter()
                .filter(|r| may_overlap(&r.pattern, &entry.pattern))
            {
                for op in &other.ops {
                    if !ops.contains(op) {
                        ops.push(*op);
                    }
                }
            }
            RefRule {
                pattern: entry.pattern.clone(),
                ops,
            }
        })
        .collect();
    merged.extend(rule);
    Some(merged)
}

/// Whether some ref may match both patterns. Only the text before the first wildcard is
/// compared, so the answer errs towards "yes": an extra op is stricter, a missed one weaker.
fn may_overlap(a: &str, b: &str) -> bool {
    let wild = |c: char| matches!(c, '*' | '?' | '[');
    match (a.find(wild), b.find(wild)) {
        (None, None) => a == b,
        (None, Some(i)) => a.starts_with(&b[..i]),
        (Some(i), None) => b.starts_with(&a[..i]),
        (Some(i), Some(j)) => a[..i].starts_with(&b[..j]) || b[..j].starts_with(&a[..i]),
    }
}

/// The rule's repository-wide ops with the sandbox's added.
pub fn merge_ops(rule: Option<Vec<Op>>, sandbox: &[Op]) -> Option<Vec<Op>> {
    if sandbox.is_empty() {
        return rule;
    }
    let mut ops = rule.unwrap_or_default();
    for op in sandbox {
        if !ops.contains(op) {
            ops.push(*op);
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::env::MapEnv;
    use crate::protocol;

    const BASE: &str = r#"
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

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        config::parse(&format!("{BASE}{extra}"), Path::new("/etc/cs/config.toml"))
    }

    fn error(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    const AGENT: &str = r#"
[sandbox.agent-42]
socket = "/run/codestorage/agent-42.sock"
orgs = ["acme"]
repos = ["agents/42/**", "mirrors/*"]
scopes = ["git:read", "git:write"]
ttl = "15m"
refs = [{ pattern = "refs/heads/main", ops = ["no-push"] }]
"#;

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

    fn request(text: &str) -> Request {
        protocol::parse(text.as_bytes()).unwrap()
    }

    fn decide_for(config: &Config, text: &str, operation: Operation) -> Result<Grant, Denied> {
        decide(
            config,
            &config.sandboxes[0],
            &request(text),
            &MapEnv::default(),
            || operation,
        )
    }

    #[test]
    fn a_grant_carries_the_sandbox_subject_ttl_scopes_and_policies() {
        let config = parse(AGENT).unwrap();
        let grant = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=agents/42/x.git\n",
            Operation::Write,
        )
        .unwrap();
        let s = &grant.settings;
        assert_eq!((s.org.as_str(), s.repo.as_str()), ("acme", "agents/42/x"));
        assert_eq!(s.subject, "sandbox:agent-42");
        assert_eq!(
            s.ttl.seconds(),
            900,
            "the sandbox's 15m beats the default hour"
        );
        assert_eq!(s.scopes, [Scope::GitRead, Scope::GitWrite]);
        assert_eq!(
            s.refs,
            Some(vec![RefRule {
                pattern: "refs/heads/main".into(),
                ops: vec![Op::NoPush]
            }])
        );
        assert!(!grant.ephemeral);

        // The rule's two hours are capped; its write-only scope is kept, its policies added to.
        let mirror = decide_for(
            &config,
            "capability[]=authtype\nprotocol=https\nhost=127.0.0.1:9000\npath=mirrors/linux.git\n",
            Operation::Read,
        )
        .unwrap();
        let s = &mirror.settings;
        assert_eq!(s.ttl.seconds(), 900);
        assert_eq!(s.scopes, [Scope::GitRead], "least privilege narrows a read");
        assert!(mirror.ephemeral);
        assert_eq!(s.ops, Some(vec![Op::VerifySig]));
        assert_eq!(
            s.refs,
            Some(vec![
                RefRule {
                    pattern: "refs/heads/main".into(),
                    ops: vec![Op::NoPush, Op::NoForcePush]
                },
                RefRule {
                    pattern: "refs/heads/*".into(),
                    ops: vec![Op::NoForcePush]
                },
            ])
        );
    }

    #[test]
    fn a_rule_with_a_shorter_ttl_than_the_sandbox_keeps_its_own() {
        let config = parse(&format!(
            "[[org.acme.repo]]\nmatch = \"agents/42/short\"\nttl = \"5m\"\n{AGENT}"
        ))
        .unwrap();
        let grant = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=agents/42/short.git\n",
            Operation::Read,
        )
        .unwrap();
        assert_eq!(
            grant.settings.ttl.seconds(),
            300,
            "5m is under the sandbox's 15m"
        );
    }

    #[test]
    fn refusals_name_the_sandbox_and_the_repository() {
        let config = parse(AGENT).unwrap();
        let outside = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\npath=secret/x.git\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(outside.disposition, Disposition::Quit);
        assert!(
            outside.reason.contains("sandbox agent-42")
                && outside.reason.contains("\"secret/x\"")
                && outside.reason.contains("agents/42/**, mirrors/*"),
            "{}",
            outside.reason
        );
        assert_eq!(outside.repo.as_deref(), Some("secret/x"));
        for other_org in [
            "protocol=https\nhost=beta.code.storage\npath=agents/42/x.git\n",
            "protocol=https\nhost=gamma.code.storage\npath=agents/42/x.git\n",
        ] {
            let denied = decide_for(&config, other_org, Operation::Read).unwrap_err();
            assert_eq!(denied.disposition, Disposition::Quit, "{other_org}");
            assert!(
                denied
                    .reason
                    .contains("may not get tokens for organisation"),
                "{}",
                denied.reason
            );
        }
        let foreign = decide_for(
            &config,
            "protocol=https\nhost=github.com\npath=a/b.git\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(foreign.disposition, Disposition::Decline);
        let no_path = decide_for(
            &config,
            "protocol=https\nhost=acme.code.storage\n",
            Operation::Read,
        )
        .unwrap_err();
        assert_eq!(no_path.disposition, Disposition::Quit);
    }

    #[test]
    fn least_privilege_reads_the_peer_only_when_on() {
        let off = config::parse(
            &format!("least_privilege = false\n{BASE}{AGENT}"),
            Path::new("/c.toml"),
        )
        .unwrap();
        let grant = decide(
            &off,
            &off.sandboxes[0],
            &request("protocol=https\nhost=acme.code.storage\npath=agents/42/x.git\n"),
            &MapEnv::default(),
            || panic!("the peer is not read when least privilege is off"),
        )
        .unwrap();
        assert_eq!(grant.settings.scopes, [Scope::GitRead, Scope::GitWrite]);
        assert_eq!(grant.operation, Operation::Unknown);
    }

    #[test]
    fn scopes_are_capped_and_write_implies_read() {
        use Scope::*;
        assert_eq!(cap_scopes(&[GitRead, GitWrite], &[GitRead]), [GitRead]);
        assert_eq!(cap_scopes(&[GitWrite], &[GitRead]), [GitRead]);
        assert_eq!(
            cap_scopes(&[GitWrite, RepoWrite], &[GitRead, GitWrite]),
            [GitWrite]
        );
        assert_eq!(cap_scopes(&[OrgRead], &[GitRead, GitWrite]), []);
        let read_only = parse(
            "[sandbox.r]\nsocket = \"/s\"\norgs = [\"acme\"]\nrepos = [\"**\"]\nscopes = [\"org:read\"]\n",
        )
        .unwrap();
        let denied = decide_for(
            &read_only,
            "protocol=https\nhost=acme.code.storage\npath=x.git\n",
            Operation::Write,
        )
        .unwrap_err();
        assert!(
            denied.reason.contains("grants git:read+git:write"),
            "{}",
            denied.reason
        );
    }

    #[test]
    fn overlap_errs_towards_stricter() {
        assert!(may_overlap("refs/heads/main", "refs/heads/*"));
        assert!(may_overlap("refs/heads/*", "refs/*"));
        assert!(may_overlap("refs/heads/main", "refs/heads/main"));
        assert!(!may_overlap("refs/heads/main", "refs/heads/dev"));
        assert!(!may_overlap("refs/tags/*", "refs/heads/*"));
        assert!(!may_overlap("refs/tags/v1", "refs/heads/*"));
        assert_eq!(merge_refs(None, &[]), None);
        assert_eq!(
            merge_ops(Some(vec![Op::NoPush]), &[Op::NoPush]),
            Some(vec![Op::NoPush])
        );
    }
}
