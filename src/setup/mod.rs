//! `setup`: adds (or removes) an organisation in the config file and routes its hosts to this
//! helper in git's config.
//!
//! It works in two steps: [`plan()`] works out every change as a value, which `--dry-run`
//! prints, and [`apply()`] carries it out; running it again changes nothing because the second
//! plan is empty. A run holds a lock beside the config file and reads the file under it, so
//! concurrent setups (a fleet of runners starting at once) never lose each other's edits, and
//! every write is atomic with mode 0600 ([`crate::fs`]).

mod apply;
mod edit;
mod error;
mod plan;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use apply::apply;
pub use edit::{remove_org, upsert_org};
pub use error::SetupError;
pub use plan::{
    ConfigFile, GitChange, GitState, Plan, Removal, RemovedRule, ScopeValues, backup_path,
    credential_urls, key_file_for_config, plan,
};

use crate::config;
use crate::env::Env;
use crate::fs;
use crate::gitconfig::{self, Git, Scope};
use crate::key::{KeyError, KeySource};
use crate::resolve;
use crate::signer;

/// Where an organisation's key comes from, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoice {
    /// `key_file`: a PEM file.
    File(String),
    /// `key_env`: an environment variable holding the PEM text.
    Env(String),
    /// `key_command`: a program printing the PEM text.
    Command(Vec<String>),
    /// `key_agent`: an ssh-agent key's `SHA256:` fingerprint or its public key file.
    Agent(String),
}

/// What `setup` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The organisation.
    pub org: String,
    /// Its key; required unless removing.
    pub key: Option<KeyChoice>,
    /// Its hosts; empty keeps what the config says (default `<org>.code.storage`).
    pub hosts: Vec<String>,
    /// Which git config file to write.
    pub scope: Scope,
    /// Print what would change, change nothing.
    pub dry_run: bool,
    /// Take the organisation out instead.
    pub remove: bool,
}

/// How this program is named: in git's config, and in the commands that messages suggest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The `credential.helper` value: `codestorage` if PATH finds this very program, else its
    /// absolute path, quoted for the shell.
    pub helper: String,
    /// The command a user types: `git-credential-codestorage`, or the quoted absolute path.
    pub command: String,
}

impl Program {
    /// Names the program at `exe`, as PATH (`path_var`) would find it.
    pub fn locate(exe: &Path, path_var: Option<&OsStr>) -> Self {
        let helper = gitconfig::helper_value(exe, path_var);
        let command = if helper == gitconfig::HELPER_NAME {
            gitconfig::BINARY_NAME.to_owned()
        } else {
            // `!` marks a shell snippet for git; typed at a shell it would be history expansion.
            helper.strip_prefix('!').unwrap_or(&helper).to_owned()
        };
        Self { helper, command }
    }

    /// Names this running program.
    pub fn current() -> Result<Self, SetupError> {
        let exe = std::env::current_exe().map_err(|source| SetupError::Process {
            what: "this program's path",
            source,
        })?;
        Ok(Self::locate(&exe, std::env::var_os("PATH").as_deref()))
    }
}

/// What a plan depends on besides the options and the files: where the user is, how this
/// program is named, and the time (for the name of a backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The current directory, against which relative paths given are made absolute.
    pub cwd: PathBuf,
    /// This program.
    pub program: Program,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

impl Context {
    /// The context of this process.
    pub fn current() -> Result<Self, SetupError> {
        let cwd = std::env::current_dir().map_err(|source| SetupError::Process {
            what: "the current directory",
            source,
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            cwd,
            program: Program::current()?,
            now,
        })
    }
}

/// Runs `setup`: locks the config file, reads it, plans, checks the key, then prints the plan
/// (`--dry-run`) or applies it. Progress goes to `out`.
pub fn run(
    options: &Options,
    context: &Context,
    env: &dyn Env,
    git: &Git,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    let path = config_path(env)?;
    let unreadable = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::Read { path, source }
    };
    // Before the lock: nothing is created beside a device or a FIFO.
    fs::check_regular(&path).map_err(unreadable(&path))?;
    // A dry run writes nothing, so it needs no lock: writers replace the file atomically.
    let _lock = if options.dry_run {
        None
    } else {
        if let Some(dir) = path.parent() {
            fs::create_private_dir(dir).map_err(|source| SetupError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let lock = fs::lock(&path, |lock| {
            let _ = writeln!(
                out,
                "waiting for another setup to finish (it holds {})",
                lock.display()
            );
        })
        .map_err(|source| SetupError::Lock {
            path: fs::lock_path(&path),
            source,
        })?;
        Some(lock)
    };
    let text = fs::read_regular(&path, config::MAX_CONFIG_BYTES)
        .map_err(unreadable(&path))?
        .unwrap_or_default();
    let file = ConfigFile { path, text };
    let state = ScopeValues {
        git,
        scope: options.scope,
    };
    let plan = plan(options, context, &file, &state)?;
    if let Some(org) = &plan.key_check {
        check_key(org, env, &context.program.command, out)?;
    }
    if options.dry_run {
        return write!(out, "{plan}").map_err(SetupError::Stdout);
    }
    apply(&plan, git, out)?;
    if let Some(host) = &plan.ready_host {
        say(
            out,
            format_args!(
                "ready: git clone https://{host}/REPO.git (check everything with `{} doctor`)",
                context.program.command
            ),
        )?;
    }
    Ok(())
}

/// The usage error for `setup --org ORG` without a key, naming the key `keygen` made if there
/// is one, or the keygen command that makes it.
pub fn missing_key(org: &str, program: &str) -> String {
    match crate::keygen::default_path(org) {
        Ok(path) if path.is_file() => format!(
            "setup needs the key: --key-file {} (the key keygen made), --key-env VAR, --key-command PROGRAM [ARGS...] or --ssh-agent FINGERPRINT",
            gitconfig::shell_quote(&path.to_string_lossy())
        ),
        _ => format!(
            "setup needs the key: --key-file PATH, --key-env VAR, --key-command PROGRAM [ARGS...] or --ssh-agent FINGERPRINT; to make one, run `{program} keygen --org {org}` (or `{program} keygen --org {org} --ssh-agent` for a key that lives only in your ssh-agent)"
        ),
    }
}

/// Loads the organisation's key as `get` will and, for a key that signs elsewhere (an agent, a
/// sign_command), signs a probe through it: the config is written only if tokens can be signed.
fn check_key(
    org: &config::Org,
    env: &dyn Env,
    program: &str,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    let options = resolve::load_options(Some(org), env)?;
    let key = signer::open(&org.key, env, options)
        .map_err(|e| key_error(org.name.as_str(), e, program))?;
    if matches!(org.key, KeySource::Agent(_) | KeySource::SignCommand(_)) {
        crate::signer::probe(&*key).map_err(|source| SetupError::Probe {
            org: org.name.to_string(),
            key: org.key.clone(),
            source: Box::new(source),
        })?;
        return say(
            out,
            format_args!("ok: {} signs ({})", org.key, key.algorithm()),
        );
    }
    say(
        out,
        format_args!("ok: {} loads ({})", org.key, key.algorithm()),
    )
}

/// The key error, with the fix command filled in where setup knows the values.
fn key_error(org: &str, source: KeyError, program: &str) -> SetupError {
    let org = org.to_owned();
    let program = program.to_owned();
    match source {
        KeyError::NotFound {
            origin: KeySource::File(path),
            ..
        } => SetupError::KeyFileMissing {
            out: crate::keygen::out_unless_default(&org, &path),
            org,
            path,
            program,
        },
        KeyError::Encrypted(KeySource::File(path)) => SetupError::KeyEncrypted {
            decrypted: crate::key::decrypted_path(&path),
            org,
            path,
            program,
        },
        KeyError::OpenSsh {
            origin: KeySource::File(path),
            ..
        } => SetupError::KeyOpenSsh { org, path, program },
        source => SetupError::Key {
            source: source.for_org(&org),
            org,
        },
    }
}

fn say(out: &mut dyn Write, line: std::fmt::Arguments<'_>) -> Result<(), SetupError> {
    writeln!(out, "{line}").map_err(SetupError::Stdout)
}

/// The config file to edit: the one `get` reads, or the file a symlink there points at (so a
/// config kept in a dotfiles repository stays a link).
fn config_path(env: &dyn Env) -> Result<PathBuf, SetupError> {
    let path = config::default_path(env).ok_or(SetupError::NoConfigDir)?;
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => path
            .canonicalize()
            .map_err(|source| SetupError::BrokenLink { path, source }),
        _ => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn key_errors_carry_the_real_organisation_path_and_program() {
        let path = PathBuf::from("/keys/my acme.pem");
        let file = || KeySource::File(path.clone());
        let cases = [
            (
                KeyError::NotFound {
                    origin: file(),
                    org: None,
                },
                "`/opt/cs keygen --org acme --out '/keys/my acme.pem'`",
            ),
            (
                KeyError::Encrypted(file()),
                "`(umask 077; openssl pkey -in '/keys/my acme.pem' -out '/keys/my acme.decrypted.pem')`, then run `/opt/cs setup --org acme --key-file '/keys/my acme.decrypted.pem'`",
            ),
            (
                KeyError::OpenSsh {
                    origin: file(),
                    org: None,
                },
                "`ssh-keygen -p -m PKCS8 -f '/keys/my acme.pem'`",
            ),
        ];
        for (error, fix) in cases {
            let message = key_error("acme", error, "/opt/cs").to_string();
            assert!(message.contains(fix), "{message}");
            assert!(
                !message.contains("ORG") && !message.contains(" KEY"),
                "a placeholder is left: {message}"
            );
        }
        let default = crate::keygen::default_path("acme").unwrap();
        let message = key_error(
            "acme",
            KeyError::NotFound {
                origin: KeySource::File(default),
                org: None,
            },
            "cs",
        );
        assert!(
            message.to_string().contains("`cs keygen --org acme`"),
            "keygen's own default needs no --out: {message}"
        );
        let other = key_error(
            "acme",
            KeyError::EnvMissing(KeySource::Env("K".into())),
            "cs",
        );
        assert!(matches!(other, SetupError::Key { .. }));
    }

    #[test]
    fn the_program_is_named_as_path_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join(gitconfig::BINARY_NAME);
        std::fs::write(&exe, "").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        let found = Program::locate(&exe, Some(&path));
        assert_eq!(found.helper, "codestorage");
        assert_eq!(found.command, "git-credential-codestorage");
        let elsewhere = Program::locate(&exe, None);
        // git for Windows' shell wants forward slashes, on every system alike.
        let written = exe.display().to_string().replace('\\', "/");
        assert_eq!(elsewhere.command, written);
        assert_eq!(elsewhere.helper, elsewhere.command);
    }

    #[test]
    fn a_path_with_a_space_is_a_snippet_for_git_and_a_quoted_command_for_people() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir
            .path()
            .join("Program Files")
            .join(gitconfig::BINARY_NAME);
        let program = Program::locate(&exe, None);
        let quoted = gitconfig::shell_quote(&exe.to_string_lossy().replace('\\', "/"));
        assert_eq!(program.helper, format!("!{quoted}"));
        assert_eq!(program.command, quoted);
    }
}
