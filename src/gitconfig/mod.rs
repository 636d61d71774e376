//! git's own configuration: the entries that route Code Storage hosts to this helper, written and
//! read by running `git config`, and the list of helpers git would ask for a URL.
//!
//! Only `setup` and `doctor` come here; `get` never runs git. Running `git config` rather than
//! editing `~/.gitconfig` keeps git's own quoting, includes and `GIT_CONFIG_GLOBAL` in charge.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Re-exported: git command lines and the fixes around them quote with it.
pub use crate::shell::quote as shell_quote;

mod helper;
mod routing;
mod urlmatch;

pub use helper::{HelperCommand, HelperKind, helper_kind, helper_value, is_ours};
pub use routing::{
    PROACTIVE_AUTH, PROACTIVE_AUTH_VERSION, Wanted, credential_url, helpers_for, libgit2_routes,
    libgit2_url, proactive_auth_for, proactive_auth_key, use_http_path_fix, use_http_path_for,
    wanted,
};
pub use urlmatch::url_matches;

/// The helper name git turns into `git credential-codestorage`.
pub const HELPER_NAME: &str = "codestorage";

/// The program git runs for [`HELPER_NAME`].
pub const BINARY_NAME: &str = "git-credential-codestorage";

/// The first git that reads `password_expiry_utc` and `wwwauth[]` from helpers.
pub const EXPIRY_VERSION: Version = Version(2, 41, 0);

/// Which git config file `setup` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `~/.gitconfig` (or `$GIT_CONFIG_GLOBAL`): every repository of the user.
    Global,
    /// The current repository's `.git/config`.
    Local,
}

impl Scope {
    fn flag(self) -> &'static str {
        match self {
            Self::Global => "--global",
            Self::Local => "--local",
        }
    }
}

/// Why a git command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// `git` is not on PATH.
    #[error("git is not installed or not on PATH; install git (2.41 or later) and try again")]
    NotInstalled,
    /// git ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line, shell-quoted.
        command: String,
        /// Its exit status.
        status: String,
        /// What git printed on stderr, on one line.
        stderr: String,
    },
}

/// A git version, e.g. 2.47.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// Reads `git version 2.39.3 (Apple Git-145)` or `git version 2.45.1.windows.1`.
    pub fn parse(text: &str) -> Option<Self> {
        let number = text.trim().strip_prefix("git version ")?;
        let mut parts = number
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        Some(Self(
            parts.next()??,
            parts.next()??,
            parts.next().flatten().unwrap_or(0),
        ))
    }
}

/// One value as `git config --list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Where it was set, e.g. `file:/home/u/.gitconfig` or `command line:`.
    pub origin: String,
    /// The key: section and name lower-cased, the URL in between as written.
    pub key: String,
    /// The value; `None` for a bare `key` line (boolean true).
    pub value: Option<String>,
}

/// Runs `git`, from PATH, in the current directory.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
}

impl Default for Git {
    fn default() -> Self {
        Self {
            program: PathBuf::from("git"),
        }
    }
}

impl Git {
    fn run(&self, args: &[&str]) -> Result<Output, GitError> {
        Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => GitError::NotInstalled,
                _ => self.failed(args, "could not start", e.to_string().as_bytes()),
            })
    }

    fn failed(&self, args: &[&str], status: &str, stderr: &[u8]) -> GitError {
        GitError::Failed {
            command: command_line(args),
            status: status.to_owned(),
            stderr: String::from_utf8_lossy(stderr).trim().replace('\n', "; "),
        }
    }

    /// Runs `args`, accepting exit codes in `ok`.
    fn run_ok(&self, args: &[&str], ok: &[i32]) -> Result<Output, GitError> {
        let output = self.run(args)?;
        match output.status.code() {
            Some(code) if code == 0 || ok.contains(&code) => Ok(output),
            _ => Err(self.failed(args, &output.status.to_string(), &output.stderr)),
        }
    }

    /// `git --version`.
    pub fn version(&self) -> Result<Version, GitError> {
        let output = self.run_ok(&["--version"], &[])?;
        let text = String::from_utf8_lossy(&output.stdout);
        Version::parse(&text)
            .ok_or_else(|| self.failed(&["--version"], "unreadable", text.as_bytes()))
    }

    /// Where git looks for `git-<name>` programs before PATH.
    pub fn exec_path(&self) -> Option<PathBuf> {
        let output = self.run_ok(&["--exec-path"], &[]).ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        Some(PathBuf::from(text.trim()))
    }

    /// The values of `key` in `scope`'s file, in order (none if unset).
    pub fn get_all(&self, scope: Scope, key: &str) -> Result<Vec<String>, GitError> {
        // Exit 1: the key is not set.
        let output = self.run_ok(&["config", scope.flag(), "--null", "--get-all", key], &[1])?;
        Ok(split_null(&output.stdout))
    }

    /// Replaces every value of `key` in `scope`'s file with `values`.
    pub fn replace_all(&self, scope: Scope, key: &str, values: &[String]) -> Result<(), GitError> {
        self.unset_all(scope, key)?;
        for value in values {
            self.run_ok(&["config", scope.flag(), "--add", key, value], &[])?;
        }
        Ok(())
    }

    /// Removes every value of `key` from `scope`'s file.
    pub fn unset_all(&self, scope: Scope, key: &str) -> Result<(), GitError> {
        // Exit 5: nothing to unset.
        self.run_ok(&["config", scope.flag(), "--unset-all", key], &[5])
            .map(drop)
    }

    /// Removes the `[credential "<url>"]` and `[http "<url>"]` sections from `scope`'s file if
    /// nothing is left in them (git keeps an empty section header after the last `--unset-all`).
    pub fn remove_section_if_empty(&self, scope: Scope, url: &str) -> Result<(), GitError> {
        let output = self.run_ok(&["config", scope.flag(), "--null", "--list"], &[1, 128])?;
        let entries = split_null(&output.stdout);
        for section in ["credential", "http"] {
            let prefix = format!("{section}.{url}.");
            if entries.iter().any(|entry| entry.starts_with(&prefix)) {
                continue;
            }
            // Exit 128: the section does not exist (any more).
            self.run_ok(
                &[
                    "config",
                    scope.flag(),
                    "--remove-section",
                    &format!("{section}.{url}"),
                ],
                &[128],
            )?;
        }
        Ok(())
    }

    /// Every config value git sees here (system, global, repository, command line), in the order
    /// git reads them.
    pub fn list(&self) -> Result<Vec<ConfigEntry>, GitError> {
        let output = self.run_ok(&["config", "--list", "--show-origin", "--null"], &[])?;
        Ok(parse_list(&output.stdout))
    }
}

/// Reads the output of `git config --list --show-origin --null`.
pub fn parse_list(output: &[u8]) -> Vec<ConfigEntry> {
    split_null(output)
        .chunks_exact(2)
        .map(|pair| {
            // `key\nvalue`, or a bare `key` for a valueless (boolean true) entry.
            let (key, value) = match pair[1].split_once('\n') {
                Some((key, value)) => (key, Some(value.to_owned())),
                None => (pair[1].as_str(), None),
            };
            ConfigEntry {
                origin: pair[0].clone(),
                key: key.to_owned(),
                value,
            }
        })
        .collect()
}

fn split_null(bytes: &[u8]) -> Vec<String> {
    let mut fields: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    // The output ends with a NUL, leaving one empty field after it.
    if fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    fields
}

/// `git config` with `args`, as a line the user can paste into a shell.
pub fn command_line(args: &[&str]) -> String {
    std::iter::once("git")
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The git command that sets one value, for `--dry-run` and messages.
pub fn add_command(scope: Scope, key: &str, value: &str) -> String {
    command_line(&["config", scope.flag(), "--add", key, value])
}

/// The git command that removes every value of a key.
pub fn unset_command(scope: Scope, key: &str) -> String {
    command_line(&["config", scope.flag(), "--unset-all", key])
}

#[cfg(test)]
mod tests {
    use super::helper::is_absolute_for_git;
    use super::*;
    use crate::host::Host;
    use std::path::Path;

    fn entry(key: &str, value: Option<&str>) -> ConfigEntry {
        ConfigEntry {
            origin: "file:/home/u/.gitconfig".into(),
            key: key.into(),
            value: value.map(str::to_owned),
        }
    }

    #[test]
    fn code_storage_hosts_share_one_wildcard_entry() {
        assert_eq!(
            credential_url("https", &Host::parse("acme.code.storage").unwrap()),
            "https://*.code.storage"
        );
        assert_eq!(
            credential_url("https", &Host::parse("Beta.Code.Storage").unwrap()),
            "https://*.code.storage"
        );
        assert_eq!(
            credential_url("https", &Host::parse("git.acme.dev:8443").unwrap()),
            "https://git.acme.dev:8443"
        );
        assert_eq!(
            credential_url("https", &Host::parse("acme.code.storage:8443").unwrap()),
            "https://acme.code.storage:8443"
        );
        assert_eq!(
            credential_url("http", &Host::parse("127.0.0.1:9000").unwrap()),
            "http://127.0.0.1:9000"
        );
        let exact = |text: &str| libgit2_url(&Host::parse(text).unwrap());
        assert_eq!(
            exact("acme.code.storage").as_deref(),
            Some("https://acme.code.storage")
        );
        assert_eq!(
            exact("localhost:8443").as_deref(),
            Some("https://localhost")
        );
        assert_eq!(exact("127.0.0.1:8443"), None);
        assert_eq!(exact("[::1]:8443"), None);
        let [helper, path, proactive] = &wanted("https://*.code.storage", "codestorage")[..] else {
            panic!("three entries");
        };
        assert_eq!(
            (proactive.key.as_str(), proactive.values.as_slice()),
            (
                "http.https://*.code.storage.proactiveAuth",
                &["auto".to_owned()][..]
            )
        );
        assert_eq!(helper.key, "credential.https://*.code.storage.helper");
        assert_eq!(helper.values, ["", "codestorage"]);
        assert_eq!(
            (path.key.as_str(), path.values.as_slice()),
            (
                "credential.https://*.code.storage.useHttpPath",
                &["true".to_owned()][..]
            )
        );
    }

    #[test]
    fn libgit2_reads_the_last_helper_of_the_exact_section_only() {
        let url = "https://acme.code.storage";
        let routed = [
            entry("credential.https://acme.code.storage.helper", Some("")),
            entry(
                "credential.https://acme.code.storage.helper",
                Some("codestorage"),
            ),
            entry(
                "credential.https://acme.code.storage.usehttppath",
                Some("true"),
            ),
        ];
        assert!(libgit2_routes(&routed, url));
        // The wildcard git reads is not enough, nor a reset after ours, nor no useHttpPath.
        let wildcard = [
            entry(
                "credential.https://*.code.storage.helper",
                Some("codestorage"),
            ),
            entry(
                "credential.https://*.code.storage.usehttppath",
                Some("true"),
            ),
        ];
        assert!(!libgit2_routes(&wildcard, url));
        let mut reset = routed.to_vec();
        reset.push(entry(
            "credential.https://acme.code.storage.helper",
            Some(""),
        ));
        assert!(!libgit2_routes(&reset, url));
        assert!(!libgit2_routes(&routed[..2], url));
    }

    #[test]
    fn urls_match_as_git_matches_them() {
        let url = "https://acme.code.storage/";
        assert!(url_matches("https://*.code.storage", url));
        assert!(url_matches("https://acme.code.storage:443/", url));
        assert!(url_matches("HTTPS://ACME.code.storage", url));
        assert!(url_matches("https://*.*.storage", url));
        assert!(
            !url_matches("https://a*e.code.storage", url),
            "git globs whole labels only"
        );
        assert!(
            !url_matches("ACME.code.storage", url),
            "partial URLs compare exactly"
        );
        assert!(!url_matches(
            "https://*.code.storage",
            "https://a.b.code.storage/"
        ));
        assert!(!url_matches("http://*.code.storage", url));
        assert!(!url_matches("https://*.code.storage:8443", url));
        assert!(!url_matches("https://t@acme.code.storage", url));
        assert!(url_matches(
            "https://acme.code.storage/team",
            "https://acme.code.storage/team/x.git"
        ));
        assert!(!url_matches(
            "https://acme.code.storage/team",
            "https://acme.code.storage/teams/x.git"
        ));
        assert!(url_matches("acme.code.storage", url));
        assert!(!url_matches("code.storage", url));
        assert!(url_matches(
            "https://git.acme.dev:8443",
            "https://git.acme.dev:8443/x.git"
        ));
        assert!(url_matches("http://[::1]:9000", "http://[::1]:9000/x.git"));
        assert!(!url_matches("http://[::1]:9000", "http://[::1]/x.git"));
    }

    #[test]
    fn helper_list_follows_config_order_and_resets() {
        let entries = vec![
            entry("credential.helper", Some("store")),
            entry("credential.https://*.code.storage.helper", Some("")),
            entry(
                "credential.https://*.code.storage.helper",
                Some("codestorage"),
            ),
            entry(
                "credential.https://*.code.storage.usehttppath",
                Some("true"),
            ),
            entry("credential.https://github.com.helper", Some("manager")),
            entry("user.name", Some("x")),
        ];
        let url = "https://acme.code.storage/";
        let helpers: Vec<_> = helpers_for(&entries, url)
            .iter()
            .map(|e| e.value.clone().unwrap())
            .collect();
        assert_eq!(helpers, ["codestorage"]);
        assert!(use_http_path_for(&entries, url));
        let helpers: Vec<_> = helpers_for(&entries, "https://github.com/")
            .iter()
            .map(|e| e.value.clone().unwrap())
            .collect();
        assert_eq!(helpers, ["store", "manager"]);
        assert!(!use_http_path_for(&entries, "https://github.com/"));
        // A later global helper comes after ours, whatever its URL's specificity.
        let mut later = entries.clone();
        later.push(entry("credential.helper", Some("cache --timeout=60")));
        let kinds: Vec<_> = helpers_for(&later, url)
            .iter()
            .map(|e| helper_kind(e.value.as_deref().unwrap()))
            .collect();
        assert_eq!(kinds, [HelperKind::Ours, HelperKind::Cache]);
        let off = [
            entry("credential.usehttppath", None),
            entry("credential.https://*.code.storage.usehttppath", Some("no")),
        ];
        assert!(!use_http_path_for(&off, url));
    }

    #[test]
    fn proactive_auth_is_read_as_git_reads_it() {
        let url = "https://acme.code.storage/";
        let wildcard = entry("http.https://*.code.storage.proactiveauth", Some("auto"));
        assert_eq!(proactive_auth_for(&[], url), None);
        assert_eq!(
            proactive_auth_for(std::slice::from_ref(&wildcard), url).as_deref(),
            Some("auto")
        );
        // Another host, another port, or another scheme: not for this URL.
        for key in [
            "http.https://*.example.com.proactiveauth",
            "http.https://*.code.storage:8443.proactiveauth",
            "http.http://*.code.storage.proactiveauth",
            "http.https://*.code.storage.postbuffer",
        ] {
            assert_eq!(proactive_auth_for(&[entry(key, Some("auto"))], url), None);
        }
        // A later global value does not beat a URL-scoped one; a longer host does.
        let global = entry("http.proactiveauth", Some("none"));
        let exact = entry(
            "http.https://acme.code.storage.proactiveauth",
            Some("basic"),
        );
        assert_eq!(
            proactive_auth_for(&[wildcard.clone(), global.clone()], url).as_deref(),
            Some("auto")
        );
        assert_eq!(
            proactive_auth_for(&[exact.clone(), wildcard.clone()], url).as_deref(),
            Some("basic")
        );
        assert_eq!(
            proactive_auth_for(std::slice::from_ref(&global), url).as_deref(),
            Some("none")
        );
        // Among equals, the last one read wins.
        let off = entry("http.https://*.code.storage.proactiveauth", Some("none"));
        assert_eq!(
            proactive_auth_for(&[wildcard, off], url).as_deref(),
            Some("none")
        );
    }

    #[test]
    fn helpers_are_classified_by_value() {
        assert_eq!(helper_kind("codestorage"), HelperKind::Ours);
        assert_eq!(
            helper_kind("'/opt/my tools/git-credential-codestorage'"),
            HelperKind::Ours
        );
        assert_eq!(helper_kind("store --file ~/.creds"), HelperKind::Store);
        assert_eq!(
            helper_kind("/usr/lib/git-core/git-credential-store"),
            HelperKind::Store
        );
        assert_eq!(helper_kind("cache"), HelperKind::Cache);
        assert_eq!(helper_kind("osxkeychain"), HelperKind::Other);
        assert_eq!(helper_kind("storex"), HelperKind::Other);
    }

    #[test]
    fn versions_parse_from_every_platform() {
        assert_eq!(
            Version::parse("git version 2.47.3\n"),
            Some(Version(2, 47, 3))
        );
        assert_eq!(
            Version::parse("git version 2.39.3 (Apple Git-145)"),
            Some(Version(2, 39, 3))
        );
        assert_eq!(
            Version::parse("git version 2.45.1.windows.1"),
            Some(Version(2, 45, 1))
        );
        assert_eq!(Version::parse("git version 3.0"), Some(Version(3, 0, 0)));
        assert_eq!(Version::parse("hub version 2"), None);
        assert!(Version(2, 40, 9) < EXPIRY_VERSION);
    }

    #[test]
    fn helper_value_is_the_name_only_when_path_finds_this_binary() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join(BINARY_NAME);
        std::fs::write(&exe, "").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(helper_value(&exe, Some(&path)), "codestorage");
        let elsewhere = dir.path().join("other dir");
        std::fs::create_dir(&elsewhere).unwrap();
        let copy = elsewhere.join(BINARY_NAME);
        std::fs::write(&copy, "").unwrap();
        // Written with forward slashes everywhere: git for Windows' shell reads `\` as an escape.
        let shown = |path: &Path| path.display().to_string().replace('\\', "/");
        // A path that needs quoting becomes a shell snippet, which git runs as such.
        assert_eq!(
            helper_value(&copy, Some(&path)),
            format!("!'{}'", shown(&copy))
        );
        let plain = dir.path().join("bin").join(BINARY_NAME);
        assert_eq!(helper_value(&plain, None), shown(&plain));
        for value in [
            helper_value(&copy, None),
            helper_value(&plain, None),
            helper_value(
                Path::new("/opt/caf\u{e9}/~x/git-credential-codestorage"),
                None,
            ),
        ] {
            let program = match HelperCommand::parse(&value) {
                HelperCommand::Absolute(p) | HelperCommand::Shell(p) => p,
                HelperCommand::Named(n) => panic!("{value} read as the name {n}"),
            };
            assert!(program.ends_with(BINARY_NAME), "{value} runs {program}");
        }
        assert_eq!(
            HelperCommand::parse(&helper_value(&copy, None)),
            HelperCommand::Shell(shown(&copy))
        );
    }

    #[test]
    fn helper_values_read_as_git_reads_them() {
        assert_eq!(
            HelperCommand::parse("codestorage --x"),
            HelperCommand::Named("codestorage".into())
        );
        assert_eq!(
            HelperCommand::parse("/usr/bin/git-credential-codestorage"),
            HelperCommand::Absolute("/usr/bin/git-credential-codestorage".into())
        );
        // A quoted path is not absolute to git: it would run `git credential-'/a b/x'`.
        assert_eq!(
            HelperCommand::parse("'/a b/x'"),
            HelperCommand::Named("'/a".into())
        );
        assert_eq!(
            HelperCommand::parse("!'/a b/x' --flag"),
            HelperCommand::Shell("/a b/x".into())
        );
        assert_eq!(
            HelperCommand::parse("!\"/a \\\"b\"/x"),
            HelperCommand::Shell("/a \"b/x".into())
        );
        assert_eq!(
            HelperCommand::parse("/a b/x"),
            HelperCommand::Absolute("/a".into())
        );
        assert!(is_absolute_for_git("C:/x") && is_absolute_for_git("C:\\x"));
    }
}
