//! Why `setup` stopped: one line each, saying what is wrong and the command that fixes it, with
//! the real organisation, paths and program filled in. No message repeats a value that may be
//! key material.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::fs::ReadError;
use crate::gitconfig::{GitError, shell_quote};
use crate::key::{KeyError, KeySource};
use crate::resolve::ResolveError;
use crate::signer::ProbeError;

/// Why `setup` (or the preparation for `keygen`'s hint) could not finish.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No configuration directory, and `CODESTORAGE_CONFIG` is unset.
    #[error(
        "cannot find the configuration directory; set CODESTORAGE_CONFIG to a file path, e.g. `export CODESTORAGE_CONFIG=\"$HOME/.codestorage.toml\"`"
    )]
    NoConfigDir,
    /// The config path is a link that leads nowhere.
    #[error("{} is a broken link ({source}); point it at a file, or remove it", .path.display())]
    BrokenLink {
        /// The link.
        path: PathBuf,
        /// Why it cannot be followed.
        source: std::io::Error,
    },
    /// The config file cannot be read: not a regular file, too large, not text, or refused.
    #[error("cannot use {} as the config file: {source}; {}", .path.display(), read_fix(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ReadError,
    },
    /// The config file's directory cannot be made.
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The lock beside the config file cannot be taken.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The config file (or its backup) cannot be written.
    #[error("cannot write {}: {source}; nothing in git's config was changed", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The config file is not TOML at all.
    #[error("{} is not valid TOML: {message}; fix it by hand, then run setup again", .path.display())]
    InvalidToml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The config file is TOML but not a valid configuration.
    #[error("{0}; fix it by hand, then run setup again")]
    Config(ConfigError),
    /// `org` or `org.NAME` is a value where a table belongs.
    #[error("`{name}` in {} is not a table; fix it by hand, then run setup again", .path.display())]
    NotATable {
        /// The file.
        path: PathBuf,
        /// The dotted name, e.g. `org.acme`.
        name: String,
    },
    /// Neither a key nor `--remove` was given.
    #[error(
        "setup --org {org} needs the key: --key-file PATH, --key-env VAR, --key-command PROGRAM [ARGS...] or --ssh-agent FINGERPRINT"
    )]
    NoKey {
        /// The organisation.
        org: String,
    },
    /// The edited config no longer defines the organisation; a bug, not the user's doing.
    #[error("[org.{org}] is missing after the edit; nothing was written")]
    Lost {
        /// The organisation.
        org: String,
    },
    /// Key material was given where a path or a variable name goes.
    #[error(
        "the value given to {option} looks like PEM text (the key itself), not a {}; it was not written anywhere. --key-env VAR takes PEM text in an environment variable: export {variable} holding the key, then run `{program} setup --org {org} --key-env {variable}`; or save the key to a file (mode 600) and pass --key-file with its path",
        expected(.option)
    )]
    KeyText {
        /// `--key-file` or `--key-env`.
        option: &'static str,
        /// The organisation.
        org: String,
        /// A variable name to suggest.
        variable: String,
        /// This program, as the user can run it.
        program: String,
    },
    /// `--key-env` is not a variable name.
    #[error(
        "--key-env takes the name of an environment variable (letters, digits and _), e.g. --key-env {variable}, set to the PEM text of {org}'s key"
    )]
    VariableName {
        /// The organisation.
        org: String,
        /// A variable name to suggest.
        variable: String,
    },
    /// `--key-command` names a program relative to the current directory.
    #[error(
        "--key-command {program:?} depends on the directory git runs the helper in (inside each repository, where a cloned repository could plant it); give an absolute path or a name found on PATH: --key-command {fixed}"
    )]
    RelativeKeyCommand {
        /// The program as given.
        program: String,
        /// The whole command with the program made absolute, quoted for the shell.
        fixed: String,
    },
    /// The key file does not exist.
    #[error(
        "organisation {org:?}: key file {} does not exist; make a key there with `{program} keygen --org {org}{}`, or pass --key-file with the path of yours",
        .path.display(),
        .out.as_ref().map(|p| format!(" --out {}", shell_quote(&p.to_string_lossy()))).unwrap_or_default()
    )]
    KeyFileMissing {
        /// The organisation.
        org: String,
        /// The key file.
        path: PathBuf,
        /// `--out` for keygen, unless the path is keygen's default.
        out: Option<PathBuf>,
        /// This program, as the user can run it.
        program: String,
    },
    /// The key file is encrypted.
    #[error(
        "organisation {org:?}: key file {} is encrypted, and the helper cannot prompt for a passphrase; decrypt it with `(umask 077; openssl pkey -in {} -out {})`, then run `{program} setup --org {org} --key-file {}`, or print it from --key-command",
        .path.display(),
        shell_quote(&.path.to_string_lossy()),
        shell_quote(&.decrypted.to_string_lossy()),
        shell_quote(&.decrypted.to_string_lossy())
    )]
    KeyEncrypted {
        /// The organisation.
        org: String,
        /// The encrypted key file.
        path: PathBuf,
        /// Where to write the decrypted key.
        decrypted: PathBuf,
        /// This program, as the user can run it.
        program: String,
    },
    /// The key file is in OpenSSH's format.
    #[error(
        "organisation {org:?}: key file {} is an OpenSSH key; convert it in place with `ssh-keygen -p -m PKCS8 -f {}`, then run setup again (or make a new key with `{program} keygen --org {org}`)",
        .path.display(),
        shell_quote(&.path.to_string_lossy())
    )]
    KeyOpenSsh {
        /// The organisation.
        org: String,
        /// The key file.
        path: PathBuf,
        /// This program, as the user can run it.
        program: String,
    },
    /// The key does not load for another reason.
    #[error("organisation {org:?}: {source}")]
    Key {
        /// The organisation.
        org: String,
        /// Why.
        source: KeyError,
    },
    /// `--ssh-agent` is neither a SHA256 fingerprint nor a path.
    #[error(
        "--ssh-agent takes the key's SHA256 fingerprint (`ssh-add -l -E sha256` lists them) or the path of its public key file: {reason}"
    )]
    AgentKey {
        /// What is wrong with it.
        reason: crate::sshagent::PublicKeyError,
    },
    /// A key that signs elsewhere loaded, but its probe signature failed; nothing was written.
    #[error("organisation {org:?}: {}; nothing was written", .source.about(.key))]
    Probe {
        /// The organisation.
        org: String,
        /// The key source.
        key: KeySource,
        /// Why; boxed to keep setup's errors small.
        source: Box<ProbeError>,
    },
    /// A helper setting in the environment is invalid.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Running git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The current directory or this program's path cannot be found.
    #[error("cannot find {what}: {source}")]
    Process {
        /// What was looked for.
        what: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Progress could not be printed.
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

/// What `option` takes, for [`SetupError::KeyText`].
fn expected(option: &str) -> &'static str {
    if option == "--key-file" {
        "file path"
    } else if option == "--ssh-agent" {
        "fingerprint or public key path"
    } else {
        "variable name"
    }
}

fn read_fix(error: &ReadError) -> &'static str {
    match error {
        ReadError::NotAFile(_) => {
            "setup edits a regular file: point CODESTORAGE_CONFIG at one (a new path is fine)"
        }
        ReadError::TooLarge(_) => {
            "a config file is a few lines: point CODESTORAGE_CONFIG at the right file"
        }
        ReadError::NotText => "save it as UTF-8 text, then run setup again",
        ReadError::Io(_) => "check its permissions, then run setup again",
    }
}
