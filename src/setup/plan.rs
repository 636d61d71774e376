//! The plan: every change `setup` would make, worked out from the config text and git's current
//! values without writing anything. `--dry-run` prints it; [`super::apply()`] carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::error::SetupError;
use super::{Context, KeyChoice, Options, edit};
use crate::config::{self, Config};
use crate::gitconfig::{self, Git, GitError, Scope, shell_quote};

/// The config file as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it is (a link already followed to its target).
    pub path: PathBuf,
    /// Its text; empty if there is no file yet.
    pub text: String,
}

/// Read access to the values of git config keys in the scope setup writes.
pub trait GitState {
    /// The values of `key`, in order (none if unset).
    fn values(&self, key: &str) -> Result<Vec<String>, GitError>;
}

/// The values git has now in one scope's file, asked of git as needed.
#[derive(Debug, Clone, Copy)]
pub struct ScopeValues<'g> {
    /// Runs git.
    pub git: &'g Git,
    /// Which file.
    pub scope: Scope,
}

impl GitState for ScopeValues<'_> {
    fn values(&self, key: &str) -> Result<Vec<String>, GitError> {
        self.git.get_all(self.scope, key)
    }
}

/// Fixed values, for tests: a key that is absent is unset.
impl GitState for BTreeMap<String, Vec<String>> {
    fn values(&self, key: &str) -> Result<Vec<String>, GitError> {
        Ok(self.get(key).cloned().unwrap_or_default())
    }
}

/// One git config key whose values change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitChange {
    /// The key, e.g. `credential.https://*.code.storage.helper`.
    pub key: String,
    /// Its values now.
    pub from: Vec<String>,
    /// Its values after; empty to unset it.
    pub to: Vec<String>,
}

/// A repository rule that `--remove` deletes with its organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRule {
    /// Its line in the config file.
    pub line: usize,
    /// Its `match` pattern.
    pub pattern: String,
}

/// What `--remove` deletes from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The organisation.
    pub org: String,
    /// The line of its table.
    pub line: usize,
    /// Settings in its table that setup never writes (ttl, scopes, ...), by name.
    pub settings: Vec<String>,
    /// Whether comments go with it.
    pub comments: bool,
    /// Its `[[org.NAME.repo]]` rules.
    pub rules: Vec<RemovedRule>,
}

impl Removal {
    /// Whether anything setup did not write goes with it: then a copy of the file is kept.
    pub fn hand_written(&self) -> bool {
        self.comments || !self.settings.is_empty() || !self.rules.is_empty()
    }
}

/// Every change `setup` makes, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The organisation.
    pub org: String,
    /// Whether it is being removed.
    pub remove: bool,
    /// Which git config file is written.
    pub scope: Scope,
    /// The config file.
    pub path: PathBuf,
    /// Its text now.
    pub before: String,
    /// Its text after.
    pub after: String,
    /// What `--remove` deletes; `None` when the organisation is not in the file (or not removing).
    pub removal: Option<Removal>,
    /// Where a copy of the old file is kept first, when the removal deletes hand-written text.
    pub backup: Option<PathBuf>,
    /// The organisation as the new config defines it, whose key is checked before applying.
    pub key_check: Option<config::Org>,
    /// git config keys to set or unset, in order.
    pub git: Vec<GitChange>,
    /// `credential.<url>` sections to drop if nothing is left in them afterwards.
    pub stale_sections: Vec<String>,
    /// The organisation's first host, for the closing hint.
    pub ready_host: Option<String>,
}

impl Plan {
    /// Whether the config file changes.
    pub fn config_changes(&self) -> bool {
        self.before != self.after
    }

    /// Whether nothing at all changes.
    pub fn is_empty(&self) -> bool {
        !self.config_changes() && self.git.is_empty()
    }

    /// `--global` or `--local`, as messages name the git config file.
    pub fn scope_name(&self) -> &'static str {
        scope_name(self.scope)
    }
}

/// Works out what `setup` with `options` changes, given the config file and git's values, with
/// `context.program.helper` as the helper git is to run. Writes nothing; reads git's config
/// through `git` only.
pub fn plan(
    options: &Options,
    context: &Context,
    file: &ConfigFile,
    git: &dyn GitState,
) -> Result<Plan, SetupError> {
    let helper = context.program.helper.as_str();
    let path = &file.path;
    let org = &options.org;
    // A broken file is reported, not edited: its meaning is unclear.
    let old_config = config::parse(&file.text, path).map_err(SetupError::Config)?;
    let (after, removal) = if options.remove {
        let removal = edit::removal(&file.text, path, &old_config, org)?;
        let after = edit::remove_org(&file.text, path, org)?.unwrap_or_else(|| file.text.clone());
        (after, removal)
    } else {
        let key = match &options.key {
            Some(key) => Some(checked_key(
                key,
                org,
                &context.cwd,
                &context.program.command,
            )?),
            None if old_config.orgs.contains_key(org.as_str()) => None,
            None => return Err(SetupError::NoKey { org: org.clone() }),
        };
        let after = edit::upsert_org(&file.text, path, org, key.as_ref(), &options.hosts)?;
        (after, None)
    };
    let new_config = config::parse(&after, path).map_err(SetupError::Config)?;
    let key_check = if options.remove {
        None
    } else {
        Some(
            new_config
                .orgs
                .get(org)
                .cloned()
                .ok_or_else(|| SetupError::Lost { org: org.clone() })?,
        )
    };

    let wanted_urls = credential_urls(&new_config);
    let mut old_urls = credential_urls(&old_config);
    if options.remove {
        // Its default host, even if the file never named it (a second --remove, say).
        if let Ok(name) = crate::host::OrgName::parse(org) {
            old_urls.insert(gitconfig::credential_url("https", &name.default_host()));
            old_urls.extend(gitconfig::libgit2_url(&name.default_host()));
        }
    }
    let stale_sections: Vec<String> = old_urls.difference(&wanted_urls).cloned().collect();
    let mut changes = git_changes(&wanted_urls, helper, git, true)?;
    changes.extend(git_changes(&stale_sections, helper, git, false)?);
    let backup = removal
        .as_ref()
        .filter(|r| r.hand_written())
        .map(|_| backup_path(path, context.now));
    Ok(Plan {
        org: org.clone(),
        remove: options.remove,
        scope: options.scope,
        path: path.clone(),
        before: file.text.clone(),
        after,
        removal,
        backup,
        ready_host: key_check
            .as_ref()
            .and_then(|o| o.hosts.first().map(ToString::to_string)),
        key_check,
        git: changes,
        stale_sections,
    })
}

/// The changes to git's config that give each of `urls` setup's lines (`keep`), or take them
/// away (for sections no host needs any more); values git already has are left alone.
fn git_changes<'u>(
    urls: impl IntoIterator<Item = &'u String>,
    helper: &str,
    git: &dyn GitState,
    keep: bool,
) -> Result<Vec<GitChange>, SetupError> {
    let mut changes = Vec::new();
    for url in urls {
        for wanted in gitconfig::wanted(url, helper) {
            let from = git.values(&wanted.key)?;
            let to = if keep { wanted.values } else { Vec::new() };
            if from != to {
                changes.push(GitChange {
                    key: wanted.key,
                    from,
                    to,
                });
            }
        }
    }
    Ok(changes)
}

/// The git credential URLs for every host of every organisation in `config`: git's own (the
/// `*.code.storage` wildcard, or the host with its port) and the exact, port-less one that
/// libgit2 programs such as cargo read instead ([`gitconfig::libgit2_url`]).
pub fn credential_urls(config: &Config) -> BTreeSet<String> {
    let mut urls = BTreeSet::new();
    for org in config.orgs.values() {
        for host in &org.hosts {
            urls.insert(gitconfig::credential_url("https", host));
            urls.extend(gitconfig::libgit2_url(host));
            if org.allow_http && host.is_loopback() {
                urls.insert(gitconfig::credential_url("http", host));
            }
        }
    }
    urls
}

/// A key-file path as the config should hold it: relative paths in the config are relative to
/// the config file, so one typed relative to the current directory is made absolute.
pub fn key_file_for_config(given: &str, cwd: &Path) -> String {
    let path = Path::new(given);
    if given.starts_with("~/") || path.is_absolute() {
        given.to_owned()
    } else {
        cwd.join(path).to_string_lossy().into_owned()
    }
}

/// The name of the copy of `path` kept before a removal: `<name>.bak-<unix time>`.
pub fn backup_path(path: &Path, now: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".bak-{now}"));
    path.with_file_name(name)
}

/// The key choice as the config will hold it, or why it cannot be used. Nothing here repeats a
/// value that may be the key itself.
fn checked_key(
    choice: &KeyChoice,
    org: &str,
    cwd: &Path,
    program: &str,
) -> Result<KeyChoice, SetupError> {
    let key_text = |option: &'static str| SetupError::KeyText {
        option,
        org: org.to_owned(),
        variable: suggested_variable(org),
        program: program.to_owned(),
    };
    match choice {
        KeyChoice::File(file) if looks_like_key_text(file) => Err(key_text("--key-file")),
        KeyChoice::File(file) => Ok(KeyChoice::File(key_file_for_config(file, cwd))),
        KeyChoice::Env(name) if looks_like_key_text(name) => Err(key_text("--key-env")),
        KeyChoice::Env(name) if !valid_variable_name(name) => Err(SetupError::VariableName {
            org: org.to_owned(),
            variable: suggested_variable(org),
        }),
        KeyChoice::Env(_) => Ok(choice.clone()),
        KeyChoice::Agent(value) if looks_like_key_text(value) => Err(key_text("--ssh-agent")),
        KeyChoice::Agent(value) => {
            let value = value.trim();
            match value.split_once(':') {
                Some((prefix, _)) if prefix.eq_ignore_ascii_case("SHA256") => {
                    let fingerprint = crate::sshagent::Fingerprint::parse(value)
                        .map_err(|reason| SetupError::AgentKey { reason })?;
                    Ok(KeyChoice::Agent(fingerprint.to_string()))
                }
                _ if value.is_empty() => Err(SetupError::AgentKey {
                    reason: crate::sshagent::PublicKeyError::BadFingerprint(String::new()),
                }),
                _ => Ok(KeyChoice::Agent(key_file_for_config(value, cwd))),
            }
        }
        KeyChoice::Command(argv) => {
            let Some((program_name, args)) = argv.split_first() else {
                return Ok(choice.clone());
            };
            if !relative_program(program_name) {
                return Ok(choice.clone());
            }
            let absolute = absolute_program(program_name, cwd);
            let fixed: Vec<String> = std::iter::once(absolute.to_string_lossy().into_owned())
                .chain(args.iter().cloned())
                .map(|a| shell_quote(&a))
                .collect();
            Err(SetupError::RelativeKeyCommand {
                program: program_name.clone(),
                fixed: fixed.join(" "),
            })
        }
    }
}

/// Whether a value given as a path or a variable name is in fact key material: PEM armour, more
/// than one line, or a long run of base64 with nothing a path would have.
fn looks_like_key_text(value: &str) -> bool {
    value.contains("-----BEGIN")
        || value.contains("-----END")
        || value.contains("PRIVATE KEY")
        || value.contains(['\n', '\r'])
        || (value.len() >= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
}

/// A portable shell variable name: what `export NAME=...` accepts.
fn valid_variable_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A variable name for `org`'s key, for messages: `ACME_CODESTORAGE_KEY`.
fn suggested_variable(org: &str) -> String {
    let upper: String = org
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let upper = upper.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_');
    if upper.is_empty() {
        "CODESTORAGE_KEY".to_owned()
    } else {
        format!("{upper}_CODESTORAGE_KEY")
    }
}

/// A program path that depends on the directory it runs in: git runs the helper inside the
/// repository being fetched, where a cloned repository could have planted `bin/print-key`.
/// A bare name (looked up on PATH) or an absolute path is fixed.
fn relative_program(program: &str) -> bool {
    (program.contains('/') || program.starts_with('~')) && !Path::new(program).is_absolute()
}

/// `program` made absolute against `cwd` (or home for `~/`), `.` and `..` resolved by name.
fn absolute_program(program: &str, cwd: &Path) -> PathBuf {
    let joined = match program.strip_prefix("~/") {
        Some(_) => config::expand_path(program, cwd),
        None => cwd.join(program),
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Global => "--global",
        Scope::Local => "--local",
    }
}

/// What `--dry-run` prints: each change as the command or text that makes it.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let scope = self.scope_name();
        if self.remove && self.removal.is_none() {
            writeln!(
                f,
                "{path} has no [org.{}]; nothing to remove there",
                self.org
            )?;
        }
        if self.is_empty() {
            return writeln!(
                f,
                "nothing to change: {path} is up to date, and git config {scope} is up to date"
            );
        }
        if let Some(removal) = &self.removal {
            write_removal(f, removal, &self.path)?;
        }
        if let Some(backup) = &self.backup {
            writeln!(
                f,
                "would keep a copy of {path} as {} (mode 600)",
                backup.display()
            )?;
        }
        if self.config_changes() && self.after.trim().is_empty() {
            writeln!(f, "would write {path}: (empty)")?;
        } else if self.config_changes() {
            writeln!(f, "would write {path}:")?;
            for line in self.after.lines() {
                let indent = if line.is_empty() { "" } else { "    " };
                writeln!(f, "{indent}{line}")?;
            }
        } else {
            writeln!(f, "{path} is up to date")?;
        }
        if self.git.is_empty() {
            writeln!(f, "git config {scope} is up to date")?;
        }
        for change in &self.git {
            if !change.from.is_empty() {
                writeln!(
                    f,
                    "would run: {}",
                    gitconfig::unset_command(self.scope, &change.key)
                )?;
            }
            for value in &change.to {
                writeln!(
                    f,
                    "would run: {}",
                    gitconfig::add_command(self.scope, &change.key, value)
                )?;
            }
        }
        Ok(())
    }
}

fn write_removal(f: &mut fmt::Formatter<'_>, removal: &Removal, path: &Path) -> fmt::Result {
    let table = format!("[org.{}]", removal.org);
    if !removal.hand_written() {
        return writeln!(
            f,
            "would remove {table} (line {}) from {}",
            removal.line,
            path.display()
        );
    }
    writeln!(
        f,
        "would remove {table} (line {}) from {}, with what setup did not write:",
        removal.line,
        path.display()
    )?;
    if !removal.settings.is_empty() {
        writeln!(f, "    {table} settings: {}", removal.settings.join(", "))?;
    }
    if removal.comments {
        writeln!(f, "    {table} comments")?;
    }
    for rule in &removal.rules {
        writeln!(
            f,
            "    [[org.{}.repo]] match = {:?} (line {})",
            removal.org, rule.pattern, rule.line
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::Program;

    const HELPER: &str = "codestorage";

    fn context() -> Context {
        Context {
            cwd: PathBuf::from("/home/u/work"),
            program: Program {
                helper: HELPER.to_owned(),
                command: "git-credential-codestorage".to_owned(),
            },
            now: 1_700_000_000,
        }
    }

    fn options(org: &str, key: Option<KeyChoice>) -> Options {
        Options {
            org: org.to_owned(),
            key,
            hosts: Vec::new(),
            scope: Scope::Global,
            dry_run: false,
            remove: false,
        }
    }

    fn file(text: &str) -> ConfigFile {
        ConfigFile {
            path: PathBuf::from("/home/u/.config/codestorage/config.toml"),
            text: text.to_owned(),
        }
    }

    /// git's values after `plan` is applied, as apply sets them.
    #[cfg(unix)]
    fn applied(
        state: &BTreeMap<String, Vec<String>>,
        plan: &Plan,
    ) -> BTreeMap<String, Vec<String>> {
        let mut state = state.clone();
        for change in &plan.git {
            if change.to.is_empty() {
                state.remove(&change.key);
            } else {
                state.insert(change.key.clone(), change.to.clone());
            }
        }
        state
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn a_second_plan_after_the_first_is_empty_and_says_so() {
        let key = Some(KeyChoice::File("keys/acme.pem".into()));
        let git = BTreeMap::new();
        let first = plan(&options("acme", key.clone()), &context(), &file(""), &git).unwrap();
        assert!(!first.is_empty());
        assert!(
            first
                .after
                .contains("key_file = \"/home/u/work/keys/acme.pem\"")
        );
        // helper, useHttpPath and proactiveAuth, for the wildcard and for the exact host.
        assert_eq!(first.git.len(), 6);
        assert_eq!(first.ready_host.as_deref(), Some("acme.code.storage"));
        let shown = first.to_string();
        assert!(
            shown.contains("would write /home/u/.config/codestorage/config.toml:\n"),
            "{shown}"
        );
        assert!(shown.contains("would run: git config --global --add 'credential.https://*.code.storage.helper' ''\n"), "{shown}");
        assert!(shown.contains("would run: git config --global --add credential.https://acme.code.storage.helper ''\n"), "{shown}");
        assert!(shown.contains("would run: git config --global --add credential.https://acme.code.storage.useHttpPath true\n"), "{shown}");
        assert!(
            shown.contains(
                "would run: git config --global --add 'http.https://*.code.storage.proactiveAuth' auto\n"
            ),
            "{shown}"
        );

        let git = applied(&git, &first);
        let second = plan(&options("acme", key), &context(), &file(&first.after), &git).unwrap();
        assert!(second.is_empty(), "{second:?}");
        assert_eq!(
            second.to_string(),
            "nothing to change: /home/u/.config/codestorage/config.toml is up to date, and git config --global is up to date\n"
        );
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn a_removal_plan_names_the_rules_and_the_backup() {
        let text = "[org.acme]\nkey_env = \"K\"\nttl = 60\n\n[[org.acme.repo]]\nmatch = \"team/**\"\n\n[org.beta]\nkey_env = \"B\"\n";
        let mut git = BTreeMap::new();
        for url in [
            "https://*.code.storage",
            "https://acme.code.storage",
            "https://beta.code.storage",
        ] {
            for wanted in gitconfig::wanted(url, HELPER) {
                git.insert(wanted.key, wanted.values);
            }
        }
        let mut remove = options("acme", None);
        remove.remove = true;
        let planned = plan(&remove, &context(), &file(text), &git).unwrap();
        assert_eq!(planned.after, "[org.beta]\nkey_env = \"B\"\n");
        assert_eq!(
            planned.backup,
            Some(PathBuf::from(
                "/home/u/.config/codestorage/config.toml.bak-1700000000"
            ))
        );
        assert!(planned.key_check.is_none());
        // beta still uses *.code.storage: that routing stays; acme's exact section goes.
        assert_eq!(planned.git.len(), 3, "{:?}", planned.git);
        assert!(
            planned
                .git
                .iter()
                .all(|change| change.to.is_empty()
                    && change.key.contains("https://acme.code.storage.")),
            "{:?}",
            planned.git
        );
        assert_eq!(planned.stale_sections, ["https://acme.code.storage"]);
        let shown = planned.to_string();
        for line in [
            "would remove [org.acme] (line 1) from /home/u/.config/codestorage/config.toml, with what setup did not write:\n",
            "    [org.acme] settings: ttl\n",
            "    [[org.acme.repo]] match = \"team/**\" (line 5)\n",
            "would keep a copy of /home/u/.config/codestorage/config.toml as /home/u/.config/codestorage/config.toml.bak-1700000000 (mode 600)\n",
        ] {
            assert!(shown.contains(line), "{line}{shown}");
        }

        // The last organisation: its routing goes too.
        remove.org = "beta".into();
        let planned = plan(&remove, &context(), &file(&planned.after), &git).unwrap();
        assert_eq!(planned.after, "");
        assert_eq!(planned.backup, None, "setup could have written all of it");
        assert_eq!(planned.git.len(), 6);
        assert!(planned.git.iter().all(|change| change.to.is_empty()));
        assert_eq!(
            planned.stale_sections,
            ["https://*.code.storage", "https://beta.code.storage"]
        );
        // And a second removal of an absent organisation says so.
        let absent = plan(&remove, &context(), &file(""), &BTreeMap::new()).unwrap();
        assert!(absent.is_empty());
        assert!(absent.to_string().starts_with(
            "/home/u/.config/codestorage/config.toml has no [org.beta]; nothing to remove there\n"
        ));
    }

    #[test]
    fn pasted_keys_are_refused_without_repeating_them() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
        let base64 = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMIGHAgEAMBMGByqGSM49AgEG";
        for key in [
            KeyChoice::File(pem.into()),
            KeyChoice::Env(pem.into()),
            KeyChoice::File(base64.into()),
            KeyChoice::Env(base64.into()),
        ] {
            let err = plan(
                &options("acme", Some(key)),
                &context(),
                &file(""),
                &BTreeMap::new(),
            )
            .unwrap_err();
            assert!(matches!(err, SetupError::KeyText { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                !message.contains("MIGHAgEA") && !message.contains("BEGIN"),
                "{message}"
            );
            assert!(
                message.contains("--key-env ACME_CODESTORAGE_KEY"),
                "{message}"
            );
            assert!(!message.contains('\n'));
        }
        let err = plan(
            &options("acme", Some(KeyChoice::Env("MY-KEY".into()))),
            &context(),
            &file(""),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(matches!(err, SetupError::VariableName { .. }), "{err:?}");
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn relative_key_commands_are_refused_with_the_absolute_command() {
        let command = |argv: &[&str]| {
            let key = KeyChoice::Command(argv.iter().map(|s| (*s).to_owned()).collect());
            plan(
                &options("acme", Some(key)),
                &context(),
                &file(""),
                &BTreeMap::new(),
            )
        };
        for (given, fixed) in [
            ("bin/print-key", "/home/u/work/bin/print-key"),
            ("./bin/print-key", "/home/u/work/bin/print-key"),
            ("../tools/print-key", "/home/u/tools/print-key"),
        ] {
            let err = command(&[given, "--for", "my org"]).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!("--key-command {fixed} --for 'my org'")),
                "{message}"
            );
        }
        assert!(command(&["op", "read", "op://v/k"]).is_ok());
        assert!(command(&["/usr/local/bin/print-key"]).is_ok());
    }

    #[test]
    fn helper_names_suggested_for_variables_are_valid_names() {
        assert_eq!(suggested_variable("acme"), "ACME_CODESTORAGE_KEY");
        assert_eq!(suggested_variable("acme-2.eu"), "ACME_2_EU_CODESTORAGE_KEY");
        assert_eq!(suggested_variable("9lives"), "LIVES_CODESTORAGE_KEY");
        assert_eq!(suggested_variable("42"), "CODESTORAGE_KEY");
        for org in ["acme", "acme-2.eu", "9lives", "42"] {
            assert!(valid_variable_name(&suggested_variable(org)));
        }
        assert!(
            !valid_variable_name("") && !valid_variable_name("1A") && !valid_variable_name("A B")
        );
    }

    #[test]
    fn urls_cover_every_host_once() {
        let config = config::parse(
            "[org.acme]\nkey_env = \"K\"\nhosts = [\"acme.code.storage\", \"git.acme.dev:8443\"]\n[org.beta]\nkey_env = \"B\"\n",
            Path::new("/c.toml"),
        )
        .unwrap();
        let urls: Vec<_> = credential_urls(&config).into_iter().collect();
        assert_eq!(
            urls,
            [
                "https://*.code.storage",
                "https://acme.code.storage",
                "https://beta.code.storage",
                "https://git.acme.dev",
                "https://git.acme.dev:8443"
            ]
        );
        let local = config::parse(
            "[org.t]\nkey_env = \"K\"\nhosts = [\"127.0.0.1:9\"]\nallow_http = true\n",
            Path::new("/c.toml"),
        )
        .unwrap();
        let urls: Vec<_> = credential_urls(&local).into_iter().collect();
        assert_eq!(urls, ["http://127.0.0.1:9", "https://127.0.0.1:9"]);
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn ssh_agent_takes_a_fingerprint_as_ssh_add_prints_it_or_a_path_made_absolute() {
        let git = BTreeMap::new();
        let fingerprint = crate::sshagent::Fingerprint::of(b"k");
        let typed = format!("sha256:{}=", &fingerprint.as_str()[7..]);
        let planned = plan(
            &options("acme", Some(KeyChoice::Agent(typed))),
            &context(),
            &file(""),
            &git,
        )
        .unwrap();
        assert!(
            planned
                .after
                .contains(&format!("key_agent = \"{fingerprint}\"")),
            "{}",
            planned.after
        );
        let planned = plan(
            &options("acme", Some(KeyChoice::Agent("keys/acme.pub".into()))),
            &context(),
            &file(""),
            &git,
        )
        .unwrap();
        assert!(
            planned
                .after
                .contains("key_agent = \"/home/u/work/keys/acme.pub\""),
            "{}",
            planned.after
        );
        for bad in ["SHA256:tooshort", ""] {
            let error = plan(
                &options("acme", Some(KeyChoice::Agent(bad.into()))),
                &context(),
                &file(""),
                &git,
            )
            .unwrap_err();
            assert!(matches!(error, SetupError::AgentKey { .. }), "{error}");
            assert!(
                error.to_string().contains("ssh-add -l -E sha256"),
                "{error}"
            );
        }
        let pasted = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
        let error = plan(
            &options("acme", Some(KeyChoice::Agent(pasted.into()))),
            &context(),
            &file(""),
            &git,
        )
        .unwrap_err();
        assert!(!error.to_string().contains("AAAA"), "{error}");
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn relative_key_files_become_absolute() {
        let cwd = Path::new("/home/u/work");
        assert_eq!(
            key_file_for_config("keys/a.pem", cwd),
            "/home/u/work/keys/a.pem"
        );
        assert_eq!(key_file_for_config("/k/a.pem", cwd), "/k/a.pem");
        assert_eq!(key_file_for_config("~/k/a.pem", cwd), "~/k/a.pem");
    }
}
