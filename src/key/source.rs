//! Where an organisation's key comes from: a private key in a file, an environment variable or a
//! program's output, or a key that never leaves an ssh-agent or an external signer.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::env::Env;
use crate::key::KeyError;
use crate::secret::Secret;
use crate::sshagent::Fingerprint;

/// The most bytes read from any key source; a PEM key is a few KiB at most.
const MAX_KEY_BYTES: u64 = 1024 * 1024;

/// How long a `key_command` may run before it is stopped.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an organisation's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file.
    File(PathBuf),
    /// PEM text in an environment variable.
    Env(String),
    /// PEM printed on stdout by a program run without a shell.
    Command(Vec<String>),
    /// A key held by an ssh-agent, which signs for us: the private key is never read. Boxed,
    /// as is [`KeySource::SignCommand`], so that every key error that names its source stays small.
    Agent(Box<AgentSource>),
    /// A program that signs the input on its stdin (`sign_command`), checked against a public key.
    SignCommand(Box<SignCommandSource>),
}

/// `key_agent` (with `agent_socket`): which agent key signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSource {
    /// Which of the agent's keys.
    pub key: AgentKeyId,
    /// The agent's socket (`agent_socket`); `None` for `SSH_AUTH_SOCK`.
    pub socket: Option<PathBuf>,
}

/// `sign_command` with its `public_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignCommandSource {
    /// The program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// The public key its signatures must verify with (OpenSSH `.pub` or SPKI PEM).
    pub public_key_file: PathBuf,
    /// `sign_persistent = true`: the program is kept running and speaks JSON lines.
    pub persistent: bool,
}

impl KeySource {
    /// The key file, for a key read from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            _ => None,
        }
    }

    /// An ssh-agent key: `key` in the agent at `socket`, else at `SSH_AUTH_SOCK`.
    pub fn agent(key: AgentKeyId, socket: Option<PathBuf>) -> Self {
        Self::Agent(Box::new(AgentSource { key, socket }))
    }

    /// A `sign_command` whose signatures verify with `public_key_file`.
    pub fn sign_command(argv: Vec<String>, public_key_file: PathBuf) -> Self {
        Self::SignCommand(Box::new(SignCommandSource {
            argv,
            public_key_file,
            persistent: false,
        }))
    }
}

/// How `key_agent` names one of the agent's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentKeyId {
    /// Its `SHA256:` fingerprint, as `ssh-add -l -E sha256` prints it.
    Fingerprint(Fingerprint),
    /// A file holding its public half (OpenSSH `.pub` or SPKI PEM).
    PublicKeyFile(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "key file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Command(argv) => write!(f, "key_command `{}`", argv.join(" ")),
            Self::Agent(agent) => match &agent.key {
                AgentKeyId::Fingerprint(fingerprint) => write!(f, "ssh-agent key {fingerprint}"),
                AgentKeyId::PublicKeyFile(path) => {
                    write!(f, "ssh-agent key of {}", path.display())
                }
            },
            Self::SignCommand(signer) => write!(f, "sign_command `{}`", signer.argv.join(" ")),
        }
    }
}

/// How a key is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept a key file that group or others may read (container secrets often are).
    pub allow_insecure_permissions: bool,
    /// How long a `key_command` may run.
    pub command_timeout: Duration,
    /// The key was named by the environment, not the config: fixes name variables, not keys.
    pub from_environment: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            allow_insecure_permissions: false,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            from_environment: false,
        }
    }
}

/// Reads the PEM text `source` holds, refusing text with two private keys (the first was used
/// silently); an agent or a sign_command holds none to read.
pub fn read(
    source: &KeySource,
    env: &dyn Env,
    options: LoadOptions,
) -> Result<Secret<Vec<u8>>, KeyError> {
    let text = read_text(source, env, options)?;
    match private_key_blocks(text.expose()) {
        0 | 1 => Ok(text),
        count => Err(KeyError::SeveralKeys {
            origin: source.clone(),
            count,
        }),
    }
}

/// How many PEM private key blocks `text` holds (`PRIVATE KEY`, `EC PRIVATE KEY`, ...): a
/// certificate or EC parameters beside the key are no second key.
fn private_key_blocks(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|line| {
            let line = line.trim_ascii();
            line.starts_with(b"-----BEGIN ") && line.ends_with(b"PRIVATE KEY-----")
        })
        .count()
}

fn read_text(
    source: &KeySource,
    env: &dyn Env,
    options: LoadOptions,
) -> Result<Secret<Vec<u8>>, KeyError> {
    match source {
        KeySource::Agent(_) | KeySource::SignCommand(_) => {
            Err(KeyError::NotReadable(source.clone()))
        }
        KeySource::File(path) => read_file(source, path, options),
        KeySource::Env(name) => match env.var(name) {
            Some(text) if !text.trim().is_empty() => Ok(Secret::new(text.into_bytes())),
            _ => Err(KeyError::EnvMissing(source.clone())),
        },
        KeySource::Command(argv) => {
            crate::process::run(argv, None, options.command_timeout, MAX_KEY_BYTES).map_err(
                |reason| KeyError::Command {
                    origin: source.clone(),
                    reason,
                },
            )
        }
    }
}

/// Refuses, as OpenSSH's StrictModes does, a key file or public key file another user could
/// change or swap, unless `allow_insecure_key_permissions` accepts it (a mounted secret).
pub fn check_trusted(source: &KeySource, options: LoadOptions) -> Result<(), KeyError> {
    let path = match source {
        KeySource::File(path) => path,
        KeySource::Agent(agent) => match &agent.key {
            AgentKeyId::PublicKeyFile(path) => path,
            AgentKeyId::Fingerprint(_) => return Ok(()),
        },
        KeySource::SignCommand(signer) => &signer.public_key_file,
        KeySource::Env(_) | KeySource::Command(_) => return Ok(()),
    };
    if options.allow_insecure_permissions {
        return Ok(());
    }
    crate::fs::check_trusted(path).map_err(|problem| {
        KeyError::Untrusted(Box::new(crate::key::UntrustedKey {
            origin: source.clone(),
            path: path.clone(),
            problem,
            allow: allow_fix(options),
        }))
    })
}

/// How to accept a key file's permissions anyway, where the key was named.
fn allow_fix(options: LoadOptions) -> &'static str {
    if options.from_environment {
        "export CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS=1"
    } else {
        "set allow_insecure_key_permissions = true in the organisation's config"
    }
}

fn read_file(
    source: &KeySource,
    path: &Path,
    options: LoadOptions,
) -> Result<Secret<Vec<u8>>, KeyError> {
    let unreadable = |reason: std::io::Error| KeyError::Unreadable {
        origin: source.clone(),
        reason,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound {
                origin: source.clone(),
                org: None,
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    if !metadata.is_file() {
        return Err(KeyError::NotAFile(source.clone()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        // As OpenSSH does: a key others can read is a key others may have copied.
        if mode & 0o077 != 0 && !options.allow_insecure_permissions {
            return Err(KeyError::InsecurePermissions {
                origin: source.clone(),
                path: path.to_owned(),
                mode,
                allow: allow_fix(options),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = options;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = Secret::new(Vec::with_capacity(
        metadata.len().min(MAX_KEY_BYTES) as usize
    ));
    file.take(MAX_KEY_BYTES)
        .read_to_end(text.expose_mut())
        .map_err(unreadable)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_blocks_are_counted_and_nothing_else() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let ec = "-----BEGIN EC PARAMETERS-----\nBggq\n-----END EC PARAMETERS-----\n-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(private_key_blocks(key.as_bytes()), 1);
        assert_eq!(private_key_blocks(ec.as_bytes()), 1);
        assert_eq!(private_key_blocks(format!("{cert}{key}").as_bytes()), 1);
        assert_eq!(private_key_blocks(format!("{key}{ec}").as_bytes()), 2);
        assert_eq!(private_key_blocks(format!("{key}\r\n{key}").as_bytes()), 2);
        assert_eq!(private_key_blocks(b""), 0);
    }
}
