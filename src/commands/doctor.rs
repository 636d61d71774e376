//! `doctor`: every precondition of a working `git clone`, one line each, with the fix.
//!
//! Checks the config, every key (type, permissions), git's version, that git routes each
//! configured host to this helper first, with `useHttpPath` and (git 2.46+) `proactiveAuth`,
//! whether fetches can be told from pushes here, and the clock; with a URL, what a `get` for it
//! would sign for a fetch and for a push. Never prints a token or key material.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::clock::format_time;
use crate::config::Config;
use crate::env::Env;
use crate::gitconfig::{self, ConfigEntry, Git, HelperKind, Version};
use crate::host::Host;
use crate::key;
use crate::mint;
use crate::operation::{self, Operation};
use crate::resolve::{self, Overrides, Reach};
use crate::signer;
use crate::token;

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but not as well as it could.
    Warn,
    /// Breaks `git clone` (or leaks a token); `doctor` exits non-zero.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`, so that `{:<4}` lines the verdicts up.
        f.pad(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The verdict.
    pub status: Status,
    /// What was found and, unless ok, the fix.
    pub text: String,
}

/// Every finding, in the order checked.
#[derive(Debug, Default)]
pub struct Report {
    /// The lines.
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, status: Status, text: impl Into<String>) {
        self.findings.push(Finding {
            status,
            text: text.into(),
        });
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// The report as one JSON object: `{"ok": bool, "problems": n, "findings": [{"status",
    /// "text"}]}`, for scripts and fleet checks.
    pub fn to_json(&self) -> String {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let status = match f.status {
                    Status::Ok => "ok",
                    Status::Warn => "warn",
                    Status::Fail => "fail",
                };
                serde_json::json!({ "status": status, "text": f.text })
            })
            .collect();
        let problems = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count();
        let report = serde_json::json!({
            "ok": problems == 0,
            "problems": problems,
            "findings": findings,
        });
        format!("{report}\n")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{:<4}  {}", finding.status, finding.text)?;
        }
        let failures = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count();
        match failures {
            0 => writeln!(f, "no problems found"),
            1 => writeln!(f, "1 problem found"),
            n => writeln!(f, "{n} problems found"),
        }
    }
}

/// Runs every check, with `url` (as typed by the user) if given, at time `now`.
pub fn doctor(env: &dyn Env, git: &Git, url: Option<&str>, now: i64) -> Report {
    let mut report = Report::default();
    // Read once, before the config check, so that its fix can name the organisation a remote
    // here or the URL asked about belongs to.
    let listed = git.list();
    let names = FixNames::new(env, url, listed.as_deref().ok());
    // Inside a sandbox the broker holds the key: no config or key here to check.
    let from_env = Broker::from_env(env);
    let (config, broken) = match from_env {
        Some(_) => (None, false),
        None => {
            let checked = check_config(&mut report, env, &names);
            // A broken file has said so; which hosts it routes cannot be known, so none is judged.
            let broken = checked.is_err();
            (checked.ok().flatten(), broken)
        }
    };
    let broker = from_env.or_else(|| config.as_ref().and_then(Broker::from_config));
    let sandbox_hosts = match &broker {
        Some(broker) => Some(broker.check(&mut report)),
        None => {
            check_keys(&mut report, config.as_ref(), env);
            None
        }
    };
    let hosts = hosts_to_check(config.as_ref(), broken, url, &names, sandbox_hosts);
    let entries = check_git(&mut report, git, listed, hosts, env, &names);
    if let Some(entries) = &entries {
        check_libgit2(&mut report, entries, config.as_ref(), &names);
        check_remotes(&mut report, entries, config.as_ref());
    }
    check_operation(&mut report, operation::available(), entries.as_deref(), env);
    check_clock(&mut report, now);
    match (url, &broker) {
        (Some(url), Some(broker)) => broker.check_url(&mut report, url),
        (Some(url), None) => check_url(
            &mut report,
            config.as_ref(),
            (url, entries.as_deref()),
            env,
            now,
        ),
        (None, _) => {}
    }
    report
}

/// The token broker a sandbox asks (`CODESTORAGE_BROKER`, or `broker =` in the config), and
/// where its socket's path came from.
// Never made without Unix sockets (`from_env` and `from_config` answer `None`), so on Windows
// its fields are unread.
#[cfg_attr(not(unix), allow(dead_code))]
struct Broker {
    socket: std::path::PathBuf,
    origin: String,
}

impl Broker {
    /// The broker `CODESTORAGE_BROKER` names, on a system with Unix sockets.
    fn from_env(env: &dyn Env) -> Option<Self> {
        let socket = env
            .var(crate::broker::BROKER_ENV)
            .filter(|path| cfg!(unix) && !path.is_empty())?;
        Some(Self {
            socket: socket.into(),
            origin: crate::broker::BROKER_ENV.to_owned(),
        })
    }

    /// The broker a config's `broker =` names, on a system with Unix sockets.
    fn from_config(config: &Config) -> Option<Self> {
        let socket = config.broker.clone().filter(|_| cfg!(unix))?;
        Some(Self {
            socket,
            origin: format!("broker in {}", config.path.display()),
        })
    }

    /// Whether the broker answers and what it says this sandbox may get; returns the sandbox's
    /// hosts, for the routing checks.
    #[cfg(unix)]
    fn check(&self, report: &mut Report) -> Vec<(Host, String)> {
        let description = match crate::broker::client::describe(&self.socket, &self.origin) {
            Ok(description) => description,
            Err(e) => {
                report.push(Status::Fail, e.to_string());
                return Vec::new();
            }
        };
        report.push(
            Status::Ok,
            format!(
                "inside a sandbox: the token broker at {} ({}) holds the key and answers for sandbox {}",
                self.socket.display(),
                self.origin,
                description.sandbox
            ),
        );
        report.push(Status::Ok, description.summary());
        // No organisation to name in a fix: there is nothing to set up inside a sandbox.
        description
            .hosts
            .iter()
            .filter_map(|h| Some((Host::parse(h).ok()?, String::new())))
            .collect()
    }

    #[cfg(not(unix))]
    fn check(&self, _report: &mut Report) -> Vec<(Host, String)> {
        Vec::new()
    }

    /// What the broker grants for `text`: the claims only, never the token.
    #[cfg(unix)]
    fn check_url(&self, report: &mut Report, text: &str) {
        let url = match crate::url::parse(text) {
            Ok(url) => url,
            Err(e) => {
                report.push(Status::Fail, e.to_string());
                return;
            }
        };
        let request = crate::protocol::Request {
            protocol: Some(url.protocol.clone()),
            host: Some(url.host.clone()),
            path: Some(url.path.clone()),
            ..Default::default()
        };
        let action = crate::protocol::GitAction::Get;
        let answer = match crate::broker::client::ask(&self.socket, &self.origin, action, &request)
        {
            Ok(answer) => answer,
            Err(e) => return report.push(Status::Fail, format!("{url}: {e}")),
        };
        if !answer.errors.is_empty() {
            return report.push(Status::Fail, format!("{url}: {}", answer.errors.join("; ")));
        }
        let git = String::from_utf8_lossy(answer.git.expose());
        let claims = git
            .lines()
            .find_map(|line| line.strip_prefix("password="))
            .and_then(|token| token::decode_unverified(token).ok()?.claims);
        match claims {
            Some(claims) => {
                let claims = serde_json::to_string(&claims).unwrap_or_default();
                report.push(
                    Status::Ok,
                    format!("{url}: the broker grants a token that says: {claims}"),
                );
            }
            None => report.push(
                Status::Fail,
                format!(
                    "{url}: the token broker gets no tokens for host {}; the hosts above are this sandbox's",
                    url.host
                ),
            ),
        }
    }

    #[cfg(not(unix))]
    fn check_url(&self, _report: &mut Report, _text: &str) {}
}

/// The hosts whose routing git's config must get right, each with an organisation to name in a
/// fix: the config's, the URL's, else a placeholder; inside a sandbox, the `sandbox`'s hosts
/// alone (none when its broker did not say).
fn hosts_to_check(
    config: Option<&Config>,
    broken: bool,
    url: Option<&str>,
    names: &FixNames,
    sandbox: Option<Vec<(Host, String)>>,
) -> BTreeMap<String, (Host, String)> {
    let mut hosts: BTreeMap<String, (Host, String)> = BTreeMap::new();
    let owned = config
        .into_iter()
        .flat_map(|c| c.orgs.values())
        .flat_map(|org| {
            org.hosts
                .iter()
                .map(|host| (host.clone(), org.name.to_string()))
        });
    if let Some(sandbox) = sandbox {
        for (host, org) in sandbox {
            hosts
                .entry(gitconfig::credential_url("https", &host))
                .or_insert((host, org));
        }
        return hosts;
    }
    for (host, org) in owned {
        hosts
            .entry(gitconfig::credential_url("https", &host))
            .or_insert((host, org));
    }
    if let Some(parsed) = url.and_then(|u| crate::url::parse(u).ok())
        && parsed.protocol == "https"
        && let Ok(host) = Host::parse(&parsed.host)
        && let Some(owner) = crate::resolve::owner(config, &host)
    {
        let org = owner.name().to_string();
        hosts
            .entry(gitconfig::credential_url("https", &host))
            .or_insert_with(|| (host, org));
    }
    // A broken config routes hosts nobody can know: judge none rather than a made-up one.
    if hosts.is_empty() && !broken {
        let host = Host::parse("org.code.storage").expect("a valid host");
        hosts.insert(
            gitconfig::credential_url("https", &host),
            (host, names.org.clone().unwrap_or_else(|| "ORG".into())),
        );
    }
    hosts
}

/// The real values a fix can name: this program as the user can run it, and the organisation
/// (from the URL asked about, else from a Code Storage remote of this repository) if known.
struct FixNames {
    /// This binary: its helper value and its command, by name if PATH finds it, else by its
    /// absolute path.
    program: crate::setup::Program,
    /// The organisation, if the URL or a remote names one.
    org: Option<String>,
}

impl FixNames {
    fn new(env: &dyn Env, url: Option<&str>, entries: Option<&[ConfigEntry]>) -> Self {
        let path_var = env.var("PATH");
        let program = std::env::current_exe().map_or_else(
            |_| crate::setup::Program {
                helper: gitconfig::HELPER_NAME.to_owned(),
                command: gitconfig::BINARY_NAME.to_owned(),
            },
            |exe| {
                crate::setup::Program::locate(&exe, path_var.as_deref().map(std::ffi::OsStr::new))
            },
        );
        let remotes = entries
            .into_iter()
            .flatten()
            .filter(|e| remote_url_key(&e.key).is_some())
            .filter_map(|e| e.value.as_deref());
        let org = url
            .into_iter()
            .chain(remotes)
            .filter_map(|u| crate::url::parse(u).ok())
            .find_map(|u| Host::parse(&u.host).ok()?.code_storage_org())
            .map(|org| org.to_string());
        Self { program, org }
    }

    /// `setup --org ... --key-file ...` with what is known, and `keygen` first when the key
    /// file keygen would write is not there yet.
    fn setup_fix(&self) -> String {
        let Some(org) = &self.org else {
            return format!(
                "{program} setup --org ORG --key-file PATH (make a key first with `{program} keygen --org ORG`)",
                program = self.program.command
            );
        };
        let key = crate::keygen::default_path(org).ok();
        let key_file = key.as_ref().map_or_else(
            || "PATH".to_owned(),
            |k| gitconfig::shell_quote(&k.to_string_lossy()),
        );
        let setup = format!(
            "{} setup --org {org} --key-file {key_file}",
            self.program.command
        );
        if key.is_some_and(|k| k.exists()) {
            setup
        } else {
            format!(
                "{setup} (make the key first with `{} keygen --org {org}`)",
                self.program.command
            )
        }
    }
}

/// Checks the config file; `Err` when it is there but cannot be used (already reported).
fn check_config(
    report: &mut Report,
    env: &dyn Env,
    names: &FixNames,
) -> Result<Option<Config>, ()> {
    let Some(path) = crate::config::default_path(env) else {
        report.push(
            Status::Fail,
            "cannot find the configuration directory; fix: set CODESTORAGE_CONFIG to a file path",
        );
        return Ok(None);
    };
    match crate::config::load(&path) {
        Ok(Some(config)) => {
            let orgs: Vec<&str> = config.orgs.keys().map(String::as_str).collect();
            let (status, what) = match orgs.len() {
                // A sandbox's config: the broker holds the organisations and their keys.
                0 if config.broker.is_some() => (Status::Ok, "it names a token broker".into()),
                0 => (
                    Status::Warn,
                    format!("no organisations; fix: {}", names.setup_fix()),
                ),
                1 => (Status::Ok, format!("organisation {}", orgs[0])),
                n => (
                    Status::Ok,
                    format!("{n} organisations: {}", orgs.join(", ")),
                ),
            };
            report.push(status, format!("config {} parses: {what}", path.display()));
            Ok(Some(config))
        }
        Ok(None) => {
            match resolve::env_key(env).ok().flatten() {
                Some(source) => report.push(
                    Status::Ok,
                    format!(
                        "no config file at {}; *.code.storage hosts use the {source}",
                        path.display()
                    ),
                ),
                None => report.push(
                    Status::Fail,
                    format!(
                        "no config file at {} and no key in the environment; fix: {}",
                        path.display(),
                        names.setup_fix()
                    ),
                ),
            }
            Ok(None)
        }
        Err(e) => {
            report.push(Status::Fail, e.to_string());
            Err(())
        }
    }
}

fn check_keys(report: &mut Report, config: Option<&Config>, env: &dyn Env) {
    // The environment's overrides (ttl, scopes, timeouts) apply to every organisation.
    if let Err(e) = resolve::check_env(env) {
        report.push(Status::Fail, format!("environment: {e}"));
        return;
    }
    let orgs = config.into_iter().flat_map(|c| c.orgs.values());
    let mut sources: Vec<(String, key::KeySource, Option<&crate::config::Org>)> = orgs
        .map(|org| {
            (
                format!("organisation {}", org.name),
                org.key.clone(),
                Some(org),
            )
        })
        .collect();
    if let Ok(Some(source)) = resolve::env_key(env) {
        sources.push((
            "unconfigured *.code.storage organisations".into(),
            source,
            None,
        ));
    }
    for (who, source, org) in sources {
        let options = match resolve::load_options(org, env) {
            Ok(options) => options,
            Err(e) => {
                report.push(Status::Fail, format!("key of {who}: {e}"));
                continue;
            }
        };
        // A key that loads but cannot sign must not pass: sign a probe and verify it. Through
        // an agent that proves it is reachable and holds the key; through a sign_command, that
        // the program signs with the key the public key file holds.
        let checked = signer::open(&source, env, options)
            .map_err(|e| match org {
                Some(org) => e.for_org(org.name.as_str()).to_string(),
                None => e.to_string(),
            })
            .and_then(|signer| {
                signer::probe(&*signer)
                    .map(|()| signer.algorithm())
                    .map_err(|e| e.about(&source))
            });
        match checked {
            Ok(algorithm) => report.push(
                Status::Ok,
                format!(
                    "key of {who}: {source}{} signs ({algorithm}) and its probe signature verifies",
                    held_where(&source, env)
                ),
            ),
            Err(e) => report.push(Status::Fail, format!("key of {who}: {e}")),
        }
    }
}

/// What the ok line adds about a key: where one that signs elsewhere lives (the agent's
/// socket); on Windows, that a key file's permissions were not checked, so no one reads the ok
/// as a verdict on them.
fn held_where(source: &key::KeySource, env: &dyn Env) -> String {
    match source {
        key::KeySource::File(_) if cfg!(windows) => {
            " (its permissions are not checked on Windows: the helper does not read ACLs)"
                .to_owned()
        }
        key::KeySource::Agent(agent) => signer::agent::agent_at(agent.socket.as_deref(), env)
            .map_or_else(
                |_| String::new(),
                |agent| format!(" in the ssh-agent at {}", agent.path().display()),
            ),
        _ => String::new(),
    }
}

/// Checks git and how it routes each host; returns git's config entries when they could be read.
fn check_git(
    report: &mut Report,
    git: &Git,
    listed: Result<Vec<ConfigEntry>, gitconfig::GitError>,
    hosts: BTreeMap<String, (Host, String)>,
    env: &dyn Env,
    names: &FixNames,
) -> Option<Vec<ConfigEntry>> {
    let version = match git.version() {
        Ok(version) => version,
        Err(e) => {
            report.push(Status::Fail, e.to_string());
            return None;
        }
    };
    if version < gitconfig::EXPIRY_VERSION {
        report.push(
            Status::Warn,
            format!(
                "git {version} is older than {}: it ignores the token's expiry (password_expiry_utc) and may reuse a token after it expires; fix: upgrade git",
                gitconfig::EXPIRY_VERSION
            ),
        );
    } else {
        report.push(Status::Ok, format!("git {version}"));
    }
    let entries = match listed {
        Ok(entries) => entries,
        Err(e) => {
            report.push(Status::Fail, format!("cannot read git's config: {e}"));
            return None;
        }
    };
    // One check per git credential URL, with an organisation to name in the fix.
    let exec_path = git.exec_path();
    for (credential_url, (host, org)) in hosts {
        // Helpers scoped to one repository's URL apply only to it: judge those URLs too.
        let mut urls = vec![format!("https://{host}/")];
        urls.extend(scoped_urls(&entries, &host));
        for url in &urls {
            let findings = judge_routing(
                &entries,
                &credential_url,
                url,
                &host,
                &org,
                // The fix names this very binary, as `setup` would write it.
                &names.program,
                version,
            );
            for finding in findings {
                if !report.findings.contains(&finding) {
                    report.findings.push(finding);
                }
            }
        }
        let helpers = gitconfig::helpers_for(&entries, &format!("https://{host}/"));
        if let Some(ours) = helpers
            .iter()
            .find_map(|e| e.value.as_deref().filter(|v| gitconfig::is_ours(v)))
            && let Some(problem) = helper_program_problem(ours, &org, exec_path.as_deref(), env)
        {
            report.push(Status::Fail, problem);
        }
    }
    Some(entries)
}

/// Whether libgit2 programs (cargo, git2-rs) run this helper for each configured host: they read
/// only an exact, port-less `[credential "https://HOST"]` section, which `setup` writes.
fn check_libgit2(
    report: &mut Report,
    entries: &[ConfigEntry],
    config: Option<&Config>,
    names: &FixNames,
) {
    for org in config.into_iter().flat_map(|c| c.orgs.values()) {
        let urls: std::collections::BTreeSet<String> = org
            .hosts
            .iter()
            .filter_map(gitconfig::libgit2_url)
            .collect();
        for url in urls {
            if gitconfig::libgit2_routes(entries, &url) {
                report.push(
                    Status::Ok,
                    format!(
                        "libgit2 programs (cargo, git2) ask this helper for {url}, with useHttpPath"
                    ),
                );
            } else {
                report.push(
                    Status::Warn,
                    format!(
                        "libgit2 programs (cargo with net.git-fetch-with-cli = false, git2) do not ask this helper for {url}: they read only an exact [credential \"{url}\"] section with helper and useHttpPath; fix: re-run `{} setup --org {}`, which keeps its key",
                        names.program.command, org.name
                    ),
                );
            }
        }
    }
}

/// The verdicts on how git `version` would treat `https://<host>/`, given its config `entries`;
/// fixes name `helper` as the value to configure, and `setup --org ORG` unless `org` is empty
/// (inside a sandbox, where there is nothing to set up).
pub fn judge_routing(
    entries: &[ConfigEntry],
    credential_url: &str,
    url: &str,
    host: &Host,
    org: &str,
    program: &crate::setup::Program,
    version: Version,
) -> Vec<Finding> {
    let helpers = gitconfig::helpers_for(entries, url);
    let mut findings = Vec::new();
    let fail = |text: String| Finding {
        status: Status::Fail,
        text,
    };
    let (reset_fix, rerun) = reset_fix(credential_url, org, program);
    let describe = describe_helper;
    let Some(position) = helpers
        .iter()
        .position(|e| e.value.as_deref().is_some_and(gitconfig::is_ours))
    else {
        let found = if helpers.is_empty() {
            "no helper".to_owned()
        } else {
            helpers
                .iter()
                .map(|e| describe(e))
                .collect::<Vec<_>>()
                .join(", ")
        };
        findings.push(fail(format!(
            "git does not ask this helper for {credential_url} (it would ask: {found}); {reset_fix}"
        )));
        return findings;
    };
    let mut fine = true;
    for before in &helpers[..position] {
        fine = false;
        findings.push(fail(format!(
            "git asks {} before this helper for {credential_url}, and stops at the first that answers; {reset_fix}",
            describe(before)
        )));
    }
    for after in &helpers[position + 1..] {
        if let Some(finding) = judge_after_ours(after, credential_url, url) {
            fine &= finding.status != Status::Fail;
            findings.push(finding);
        }
    }
    if !gitconfig::use_http_path_for(entries, url) {
        fine = false;
        findings.push(fail(format!(
            "git does not send the repository path for {credential_url}, so no per-repository token can be made; fix: {}",
            gitconfig::use_http_path_fix(host)
        )));
    }
    if fine {
        findings.push(Finding {
            status: Status::Ok,
            text: format!(
                "git asks this helper first for {credential_url} ({}), with useHttpPath",
                describe(helpers[position])
            ),
        });
    }
    if version >= gitconfig::PROACTIVE_AUTH_VERSION {
        findings.push(judge_proactive_auth(entries, credential_url, url, &rerun));
    }
    findings
}

/// The fix that puts this helper first for `credential_url` (git's commands, then re-running
/// setup), and that re-run part alone: empty inside a sandbox (`org` empty), with no setup.
fn reset_fix(credential_url: &str, org: &str, program: &crate::setup::Program) -> (String, String) {
    let helper_key = format!("credential.{credential_url}.helper");
    let rerun = if org.is_empty() {
        String::new()
    } else {
        format!(
            "  (or re-run `{} setup --org {org}`, which keeps its key)",
            program.command
        )
    };
    let fix = format!(
        "fix: {} && {}{rerun}",
        gitconfig::command_line(&["config", "--global", "--replace-all", &helper_key, ""]),
        gitconfig::command_line(&["config", "--global", "--add", &helper_key, &program.helper]),
    );
    (fix, rerun)
}

/// What a helper git asks after this one for `url` costs: a credential-store writes every
/// working token to disk (a FAIL, with the fix where it is configured), another helper is offered
/// them (a warning); `None` for our own.
fn judge_after_ours(after: &ConfigEntry, credential_url: &str, url: &str) -> Option<Finding> {
    let value = after.value.as_deref().unwrap_or("");
    match gitconfig::helper_kind(value) {
        HelperKind::Store => {
            let origin = after.origin.trim_start_matches("file:");
            // A repository's config is read after the global one: it cannot be moved
            // before our section, only changed where it is.
            let fix = if origin.ends_with(".git/config") || !origin.starts_with('/') {
                format!(
                    "fix: {}",
                    gitconfig::command_line(&[
                        "config",
                        "--file",
                        origin,
                        "--unset-all",
                        &after.key,
                    ])
                )
            } else {
                format!(
                    "fix: remove that credential.helper or move it before the [credential \"{credential_url}\"] section, whose empty `helper =` then resets it"
                )
            };
            Some(Finding {
                status: Status::Fail,
                text: format!(
                    "{} comes after this helper for {url}: git sends it every push token that works, and it writes them to ~/.git-credentials in plain text; {fix}",
                    describe_helper(after)
                ),
            })
        }
        HelperKind::Ours => None,
        _ => Some(Finding {
            status: Status::Warn,
            text: format!(
                "{} comes after this helper for {credential_url}: git offers it every token that works (harmless if it honours expiry, as credential-cache does); fix: move it before the [credential \"{credential_url}\"] section",
                describe_helper(after)
            ),
        }),
    }
}

/// A helper as doctor names it: its value and the file that sets it.
fn describe_helper(e: &ConfigEntry) -> String {
    format!(
        "`{}` from {}",
        one_line(e.value.as_deref().unwrap_or("")),
        e.origin.trim_end_matches(':')
    )
}

/// Whether git (2.46+) asks this helper before its first request to `url` rather than after a
/// 401: `auto` (what `setup` writes) and `basic` do; unset or `none` cost a round trip more.
fn judge_proactive_auth(
    entries: &[ConfigEntry],
    credential_url: &str,
    url: &str,
    rerun: &str,
) -> Finding {
    let key = gitconfig::proactive_auth_key(credential_url);
    match gitconfig::proactive_auth_for(entries, url) {
        Some(value) if ["auto", "basic"].contains(&value.to_ascii_lowercase().as_str()) => {
            Finding {
                status: Status::Ok,
                text: format!(
                    "git asks for the token before its first request to {credential_url} (proactiveAuth {value})"
                ),
            }
        }
        found => Finding {
            status: Status::Warn,
            text: format!(
                "git waits for a 401 before it asks this helper for {credential_url} (proactiveAuth {}): one request more per command; fix: {}{rerun}",
                found
                    .as_deref()
                    .map_or("unset", |v| if v.is_empty() { "empty" } else { v }),
                gitconfig::command_line(&["config", "--global", &key, gitconfig::PROACTIVE_AUTH]),
            ),
        },
    }
}

/// Whether this machine can tell a fetch from a push (least privilege), given git's config
/// `entries` (for trace2) and whether the process ancestry is `available`.
fn check_operation(
    report: &mut Report,
    available: Result<(), &'static str>,
    entries: Option<&[ConfigEntry]>,
    env: &dyn Env,
) {
    if let Ok(Some(false)) = crate::env::switch(env, crate::env::vars::LEAST_PRIVILEGE) {
        report.push(
            Status::Ok,
            "least privilege is off (CODESTORAGE_LEAST_PRIVILEGE): every git command, fetches too, gets the configured scopes",
        );
        return;
    }
    let trace2 = trace2_on(entries.unwrap_or_default(), env);
    match (available, trace2) {
        (Ok(()), _) => report.push(
            Status::Ok,
            "fetches are told from pushes here (by the process ancestry): fetches get git:read-only tokens, pushes the configured scopes",
        ),
        (Err(_), true) => report.push(
            Status::Ok,
            "fetches are told from pushes here (by git's trace2): fetches get git:read-only tokens, pushes the configured scopes",
        ),
        (Err(reason), false) => {
            let fix = if reason.contains("trace2") {
                String::new()
            } else {
                format!(
                    "; fix: {}, so that git names its command",
                    gitconfig::command_line(&[
                        "config",
                        "--global",
                        "trace2.normalTarget",
                        "/dev/null"
                    ])
                )
            };
            report.push(
                Status::Warn,
                format!(
                    "fetches cannot be told from pushes here, so every git command gets the configured scopes (a fetch's token could push): {reason}{fix}"
                ),
            );
        }
    }
}

/// Whether git's trace2 is on, so that git sets `GIT_TRACE2_PARENT_NAME` for the helper: a
/// `trace2.*Target` in git's config or a `GIT_TRACE2*` variable, neither empty nor off.
fn trace2_on(entries: &[ConfigEntry], env: &dyn Env) -> bool {
    let on = |value: &str| !matches!(value.to_ascii_lowercase().as_str(), "" | "0" | "false");
    let targets = ["normaltarget", "eventtarget", "perftarget"];
    let configured = entries.iter().any(|e| {
        e.key
            .strip_prefix("trace2.")
            .is_some_and(|name| targets.contains(&name))
            && e.value.as_deref().is_some_and(on)
    });
    configured
        || ["GIT_TRACE2", "GIT_TRACE2_EVENT", "GIT_TRACE2_PERF"]
            .iter()
            .any(|name| env.var(name).as_deref().is_some_and(on))
}

/// The repository URLs on `host` that a `credential.<url>.helper` is scoped to.
fn scoped_urls(entries: &[ConfigEntry], host: &Host) -> Vec<String> {
    let base = format!("https://{host}/");
    entries
        .iter()
        .filter_map(|e| e.key.strip_prefix("credential.")?.strip_suffix(".helper"))
        .filter(|pattern| {
            pattern
                .strip_prefix(&base)
                .is_some_and(|path| !path.is_empty())
        })
        .map(str::to_owned)
        .collect()
}

/// `remote.<name>.url` or `remote.<name>.pushurl`: the remote's name, and whether it is the
/// push URL.
fn remote_url_key(key: &str) -> Option<(&str, bool)> {
    let (name, field) = key.strip_prefix("remote.")?.rsplit_once('.')?;
    match field {
        "url" => Some((name, false)),
        "pushurl" => Some((name, true)),
        _ => None,
    }
}

/// Warns about each remote whose URL carries a password (`https://t:TOKEN@acme.code.storage/...`,
/// as the SDKs make them) for a host this helper serves: git sends that password and never asks
/// a helper, so the token outlives its purpose in plain text in the config file. A remote with a
/// user and no password (`https://t@...`) fails: Code Storage answers it 403, so git never asks.
/// Only the remotes git's config already lists are looked at: nothing else on disk is read.
fn check_remotes(report: &mut Report, entries: &[ConfigEntry], config: Option<&Config>) {
    for entry in entries {
        let (Some((name, push)), Some(value)) =
            (remote_url_key(&entry.key), entry.value.as_deref())
        else {
            continue;
        };
        let Ok(url) = crate::url::parse(value) else {
            continue;
        };
        let served = Host::parse(&url.host)
            .ok()
            .is_some_and(|host| resolve::owner(config, &host).is_some());
        if !url.has_userinfo || !served {
            continue;
        }
        let clean = without_userinfo(value.trim());
        let mut fix = vec!["remote", "set-url"];
        if push {
            fix.push("--push");
        }
        fix.extend([name, clean.as_str()]);
        if url.password.is_none() {
            report.push(
                Status::Fail,
                format!(
                    "remote {}'s {} {} names a user and no password: Code Storage answers 403, not 401, so git never asks this helper and the fetch or push fails; fix: {}",
                    crate::log::Shown(name),
                    if push { "push URL" } else { "URL" },
                    crate::url::redact(value.trim()),
                    crate::log::Escaped(&gitconfig::command_line(&fix)),
                ),
            );
            continue;
        }
        report.push(
            Status::Warn,
            format!(
                "remote {}'s {} {} carries a token, so git sends that token and never asks this helper, and it is kept in plain text in {}; fix: {}",
                crate::log::Shown(name),
                if push { "push URL" } else { "URL" },
                crate::url::redact(value.trim()),
                crate::log::Escaped(entry.origin.trim_start_matches("file:")),
                crate::log::Escaped(&gitconfig::command_line(&fix)),
            ),
        );
    }
}

/// `url` without its userinfo: `https://t:TOKEN@acme.code.storage/x.git` becomes
/// `https://acme.code.storage/x.git`.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{after}")
}

/// `value` on one line: control characters escaped, quotes as written, so that a shell snippet
/// such as `!'C:/Program Files/...'` reads as git's config holds it.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Why git could not run the helper `value` names, if it could not, judged by git's own rules.
fn helper_program_problem(
    value: &str,
    org: &str,
    exec_path: Option<&Path>,
    env: &dyn Env,
) -> Option<String> {
    let fix = format!(
        "fix: re-run `git-credential-codestorage setup --org {org}` with the installed binary, which writes a value git can run"
    );
    match gitconfig::HelperCommand::parse(value) {
        gitconfig::HelperCommand::Named(name) => {
            let program = format!("git-credential-{name}");
            let path_var = env.var("PATH").unwrap_or_default();
            let found = exec_path
                .into_iter()
                .map(Path::to_path_buf)
                .chain(std::env::split_paths(&path_var))
                .any(|dir| {
                    dir.join(&program).is_file() || dir.join(format!("{program}.exe")).is_file()
                });
            (!found).then(|| {
                format!(
                    "git runs `git credential-{}` for the helper value `{}`, but {} is not on PATH; fix: add its directory to PATH (./install.sh says which), or run `{} setup --org {org}`, which then writes the binary's full path",
                    crate::log::Escaped(&name),
                    crate::log::Escaped(value),
                    crate::log::Escaped(&program),
                    std::env::current_exe().map_or_else(
                        |_| program.clone(),
                        |exe| gitconfig::shell_quote(&exe.to_string_lossy())
                    ),
                )
            })
        }
        gitconfig::HelperCommand::Absolute(program) | gitconfig::HelperCommand::Shell(program) => {
            (!Path::new(&program).is_file()).then(|| {
                format!(
                    "git runs {} for the helper value `{}`, which does not exist; {fix}",
                    crate::log::Shown(&program),
                    crate::log::Escaped(value),
                )
            })
        }
    }
}

fn check_clock(report: &mut Report, now: i64) {
    if now < token::EARLIEST_PLAUSIBLE_CLOCK {
        report.push(
            Status::Fail,
            format!(
                "the clock reads {} (before 2020): tokens would be refused; fix: set the system clock (enable NTP)",
                format_time(now)
            ),
        );
    } else {
        report.push(Status::Ok, format!("clock reads {}", format_time(now)));
    }
}

fn check_url(
    report: &mut Report,
    config: Option<&Config>,
    (text, entries): (&str, Option<&[ConfigEntry]>),
    env: &dyn Env,
    now: i64,
) {
    let url = match crate::url::parse(text) {
        Ok(url) => url,
        Err(e) => {
            report.push(Status::Fail, e.to_string());
            return;
        }
    };
    let settings = match resolve::resolve(
        Ok(config),
        resolve::Target::of_url(&url),
        Reach::Repository,
        env,
        &Overrides::default(),
    ) {
        Ok(settings) => settings,
        Err(e) => {
            report.push(Status::Fail, format!("{url}: {e}"));
            return;
        }
    };
    report.push(Status::Ok, format!("{url}: {settings}"));
    if url.password.is_some() {
        warn_token_in_url(report, &url, text, entries);
    }
    // One key load for both tokens: a key_command runs once.
    let signer = match signer::open(&settings.key, env, settings.load_options) {
        Ok(signer) => signer,
        Err(source) => {
            let e = mint::MintError::Key {
                org: settings.org.clone(),
                source: source.for_org(settings.org.as_str()),
            };
            report.push(Status::Fail, format!("{url}: {e}"));
            return;
        }
    };
    let mut read = settings.clone();
    read.narrow_to(Operation::Read);
    let tokens = [
        ("for a fetch (clone, pull, ls-remote)", &read),
        ("for a push", &settings),
    ];
    if !settings.least_privilege {
        report.push(
            Status::Ok,
            "least privilege is off for it: fetches and pushes get the same scopes",
        );
    }
    for (when, settings) in tokens {
        match mint::sign(settings, &*signer, now) {
            Ok(minted) => {
                let claims = serde_json::to_string(&minted.claims).unwrap_or_default();
                report.push(
                    Status::Ok,
                    format!("{when}, a token for it would say: {claims}"),
                );
            }
            Err(e) => {
                report.push(Status::Fail, format!("{url}: {e}"));
                return;
            }
        }
    }
}

/// Warns that a URL with a token in it is never asked about: git sends the token it holds.
/// The fix names the remote of this repository holding that very URL, if one does.
fn warn_token_in_url(
    report: &mut Report,
    url: &crate::url::RemoteUrl,
    text: &str,
    entries: Option<&[ConfigEntry]>,
) {
    let clean = url.to_string();
    // The remote of this repository that holds this very URL, if one does.
    let remote = entries.into_iter().flatten().find_map(|e| {
        let (name, push) = remote_url_key(&e.key)?;
        (e.value.as_deref()?.trim() == text.trim()).then_some((name, push))
    });
    let fix = match remote {
        Some((name, push)) => {
            let mut args = vec!["remote", "set-url"];
            if push {
                args.push("--push");
            }
            args.extend([name, clean.as_str()]);
            gitconfig::command_line(&args)
        }
        None => format!("use {clean}, without the token"),
    };
    report.push(
        Status::Warn,
        format!(
            "{} carries a token, so git sends that token and never asks this helper; fix: {}",
            crate::url::redact(text.trim()),
            crate::log::Escaped(&fix),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(origin: &str, key: &str, value: &str) -> ConfigEntry {
        ConfigEntry {
            origin: format!("file:{origin}"),
            key: key.into(),
            value: Some(value.into()),
        }
    }

    const URL: &str = "https://*.code.storage";

    /// A git that knows no proactiveAuth, so that only the routing is judged.
    const OLD: Version = Version(2, 45, 0);

    /// How git `version` would treat `https://acme.code.storage/` with `entries`, fixes naming
    /// `codestorage`.
    fn judge(entries: &[ConfigEntry], version: Version) -> Vec<Finding> {
        judge_routing(
            entries,
            URL,
            "https://acme.code.storage/",
            &acme(),
            "acme",
            &crate::setup::Program {
                helper: "codestorage".into(),
                command: "git-credential-codestorage".into(),
            },
            version,
        )
    }

    fn acme() -> Host {
        Host::parse("acme.code.storage").unwrap()
    }

    fn ours() -> Vec<ConfigEntry> {
        vec![
            entry("/g", "credential.https://*.code.storage.helper", ""),
            entry(
                "/g",
                "credential.https://*.code.storage.helper",
                "codestorage",
            ),
            entry(
                "/g",
                "credential.https://*.code.storage.usehttppath",
                "true",
            ),
            entry("/g", "http.https://*.code.storage.proactiveauth", "auto"),
        ]
    }

    fn statuses(findings: &[Finding]) -> Vec<Status> {
        findings.iter().map(|f| f.status).collect()
    }

    #[test]
    fn helper_values_are_shown_as_git_holds_them_on_one_line() {
        let snippet = "!'C:/Program Files/codestorage/git-credential-codestorage.exe'";
        assert_eq!(one_line(snippet), snippet);
        assert_eq!(one_line("a\nb\u{1b}"), "a\\nb\\u{1b}");
    }

    #[test]
    fn a_setup_as_setup_writes_it_is_ok() {
        let mut entries = vec![entry("/etc/gitconfig", "credential.helper", "store")];
        entries.extend(ours());
        let findings = judge(&entries, OLD);
        assert_eq!(statuses(&findings), [Status::Ok], "{findings:?}");
    }

    #[test]
    fn a_helper_consulted_first_fails_with_the_reset_fix() {
        let mut entries = ours();
        entries.remove(0);
        entries.insert(0, entry("/g", "credential.helper", "osxkeychain"));
        let findings = judge(&entries, OLD);
        assert_eq!(statuses(&findings), [Status::Fail]);
        assert!(
            findings[0]
                .text
                .contains("`osxkeychain` from file:/g before this helper"),
            "{findings:?}"
        );
        assert!(
            findings[0]
                .text
                .contains("--replace-all 'credential.https://*.code.storage.helper' ''"),
            "{findings:?}"
        );
    }

    #[test]
    fn credential_store_after_ours_fails_and_others_warn() {
        let mut entries = ours();
        entries.push(entry("/repo/.git/config", "credential.helper", "store"));
        entries.push(entry("/repo/.git/config", "credential.helper", "manager"));
        let findings = judge(&entries, OLD);
        assert_eq!(
            statuses(&findings),
            [Status::Fail, Status::Warn],
            "{findings:?}"
        );
        assert!(findings[0].text.contains("plain text"));
    }

    #[test]
    fn missing_helper_or_path_fails() {
        let findings = judge(&[entry("/g", "credential.helper", "store")], OLD);
        assert_eq!(statuses(&findings), [Status::Fail]);
        assert!(
            findings[0].text.contains("does not ask this helper")
                && findings[0].text.contains("`store`")
        );
        let mut entries = ours();
        entries.retain(|e| !e.key.ends_with("usehttppath"));
        let findings = judge(&entries, OLD);
        assert_eq!(statuses(&findings), [Status::Fail]);
        assert!(
            findings[0].text.contains("useHttpPath' true"),
            "{findings:?}"
        );
    }

    #[test]
    fn proactive_auth_is_judged_only_for_a_git_that_reads_it() {
        let new = gitconfig::PROACTIVE_AUTH_VERSION;
        let findings = judge(&ours(), new);
        assert_eq!(
            statuses(&findings),
            [Status::Ok, Status::Ok],
            "{findings:?}"
        );
        assert!(
            findings[1].text.contains("before its first request")
                && findings[1].text.contains("auto"),
            "{findings:?}"
        );
        let mut unset = ours();
        unset.retain(|e| !e.key.ends_with("proactiveauth"));
        let findings = judge(&unset, new);
        assert_eq!(
            statuses(&findings),
            [Status::Ok, Status::Warn],
            "{findings:?}"
        );
        assert!(
            findings[1].text.contains(
                "fix: git config --global 'http.https://*.code.storage.proactiveAuth' auto"
            ),
            "{findings:?}"
        );
        assert!(
            findings[1].text.contains("(proactiveAuth unset)"),
            "{findings:?}"
        );
        unset.push(entry("/g", "http.proactiveauth", "none"));
        assert!(judge(&unset, new)[1].text.contains("(proactiveAuth none)"));
        // git 2.45 and older ignore the key: nothing to say either way.
        assert_eq!(statuses(&judge(&unset, Version(2, 45, 9))), [Status::Ok]);
    }

    #[test]
    fn the_operation_check_names_the_signal_or_the_fix() {
        let check = |available, entries: &[ConfigEntry], env: &crate::env::MapEnv| {
            let mut report = Report::default();
            check_operation(&mut report, available, Some(entries), env);
            assert_eq!(report.findings.len(), 1);
            report.findings.remove(0)
        };
        let none = crate::env::MapEnv::default();
        let found = check(Ok(()), &[], &none);
        assert_eq!(found.status, Status::Ok);
        assert!(found.text.contains("by the process ancestry"), "{found:?}");
        let found = check(Err("/proc is not mounted or not readable"), &[], &none);
        assert_eq!(found.status, Status::Warn);
        assert!(
            found.text.contains("/proc is not mounted or not readable; fix: git config --global trace2.normalTarget /dev/null"),
            "{found:?}"
        );
        // A reason that names its own fix is not given a second one.
        let found = check(Err("only on Linux; turn on git's trace2"), &[], &none);
        assert!(!found.text.contains("fix:"), "{found:?}");
        let traced = [entry("/g", "trace2.eventtarget", "/tmp/t")];
        let found = check(Err("no /proc"), &traced, &none);
        assert_eq!(found.status, Status::Ok);
        assert!(found.text.contains("by git's trace2"), "{found:?}");
        let env = crate::env::MapEnv::from([("GIT_TRACE2", "1")]);
        assert_eq!(check(Err("no /proc"), &[], &env).status, Status::Ok);
        let env = crate::env::MapEnv::from([("GIT_TRACE2", "0")]);
        assert_eq!(check(Err("no /proc"), &[], &env).status, Status::Warn);
        let off = crate::env::MapEnv::from([("CODESTORAGE_LEAST_PRIVILEGE", "0")]);
        let found = check(Ok(()), &[], &off);
        assert!(found.text.contains("least privilege is off"), "{found:?}");
    }

    #[test]
    fn the_helper_program_must_exist() {
        let env = crate::env::MapEnv::from([("PATH", "/nonexistent")]);
        assert!(
            helper_program_problem("codestorage", "acme", None, &env)
                .unwrap()
                .contains(&format!(
                    "not on PATH; fix: add its directory to PATH (./install.sh says which), or run `{} setup --org acme`",
                    gitconfig::shell_quote(&std::env::current_exe().unwrap().to_string_lossy())
                ))
        );
        assert!(
            helper_program_problem("!'/no/such/git-credential-codestorage'", "acme", None, &env)
                .unwrap()
                .contains("does not exist")
        );
        // Quoted without `!`, git reads a name and runs `git credential-'/...'`.
        let exe = std::env::current_exe().unwrap();
        let quoted = format!("'{}'", exe.display());
        assert!(
            helper_program_problem(&quoted, "acme", None, &env)
                .unwrap()
                .contains("is not on PATH")
        );
        let value = gitconfig::helper_value(&exe, None);
        assert_eq!(
            helper_program_problem(&value, "acme", None, &env),
            None,
            "{value}"
        );
    }

    #[test]
    fn a_remote_url_with_a_token_for_a_served_host_warns_without_the_token() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhY21lIn0.c2ln";
        let entries = [
            entry(
                ".git/config",
                "remote.origin.url",
                &format!("https://t:{token}@acme.code.storage/team/x.git"),
            ),
            entry(
                ".git/config",
                "remote.my.fork.pushurl",
                &format!("https://t:{token}@Acme.code.storage:443/x.git?a#b"),
            ),
            // Another host's credentials are none of this helper's business.
            entry(
                ".git/config",
                "remote.gh.url",
                &format!("https://u:{token}@github.com/x.git"),
            ),
            // A user name alone: Code Storage answers 403, so git never asks the helper.
            entry(
                ".git/config",
                "remote.plain.url",
                "https://t@acme.code.storage/x.git",
            ),
            entry(".git/config", "remote.origin.fetch", "+refs/*:refs/*"),
        ];
        let mut report = Report::default();
        check_remotes(&mut report, &entries, None);
        let texts: Vec<&str> = report.findings.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(
            statuses(&report.findings),
            [Status::Warn, Status::Warn, Status::Fail],
            "{texts:?}"
        );
        assert_eq!(
            texts[2],
            "remote \"plain\"'s URL https://***@acme.code.storage/x.git names a user and no password: Code Storage answers 403, not 401, so git never asks this helper and the fetch or push fails; fix: git remote set-url plain https://acme.code.storage/x.git"
        );
        assert!(
            texts[0].starts_with(
                "remote \"origin\"'s URL https://***@acme.code.storage/team/x.git carries a token"
            ) && texts[0].ends_with(
                "in plain text in .git/config; fix: git remote set-url origin https://acme.code.storage/team/x.git"
            ),
            "{texts:?}"
        );
        assert!(
            texts[1].ends_with(
                "fix: git remote set-url --push my.fork 'https://Acme.code.storage:443/x.git?a#b'"
            ),
            "{texts:?}"
        );
        assert!(texts.iter().all(|t| !t.contains(token)), "{texts:?}");
    }

    #[test]
    fn the_clock_must_be_after_2020() {
        let mut report = Report::default();
        check_clock(&mut report, 1_000);
        check_clock(&mut report, 1_800_000_000);
        assert_eq!(statuses(&report.findings), [Status::Fail, Status::Ok]);
        assert!(report.failed());
        assert!(report.to_string().ends_with("1 problem found\n"));
    }
}
