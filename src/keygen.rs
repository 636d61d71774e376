//! `keygen`: a new signing key for an organisation, written where only its owner can read it, or
//! loaded straight into an ssh-agent and written nowhere.

use std::path::{Path, PathBuf};

use crate::fs::{self, Overwrite};
use crate::key::{self, KeyError, KeySource, NewKey};
use crate::shell::quote as shell_quote;
use crate::sshagent::{Agent, AgentError, Fingerprint};

/// What `keygen` made.
#[derive(Debug)]
pub struct Generated {
    /// Where the private key was written.
    pub path: PathBuf,
    /// The public key as an SPKI `PUBLIC KEY` PEM block, to register with Code Storage.
    pub public_pem: String,
    /// The algorithm tokens signed with it use.
    pub algorithm: key::Algorithm,
}

/// Why `keygen` made no key.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// No home directory to put the default key file in.
    #[error("cannot find the home directory to put the key in; pass --out PATH")]
    NoHome,
    /// Something is already at the path.
    #[error(
        "{} already exists; keygen never overwrites a key (its public half may be registered): pass --force to replace it, or print its public key with `openssl pkey -in {} -pubout`",
        .path.display(),
        shell_quote(&.path.to_string_lossy())
    )]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed; try again")]
    Random,
    /// The new key does not read back; a bug, not something the user did.
    #[error("the new key for {} is unusable ({source}); nothing was written", .path.display())]
    Unusable {
        /// Where it was to be written.
        path: PathBuf,
        /// What reading it back said; boxed, as `AgentProbe`'s reason is, to keep every
        /// command's result small (paths are wider on Windows).
        source: Box<KeyError>,
    },
    /// The key's directory cannot be made.
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The key file cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The ssh-agent is missing or refused the new key; the key is gone with this process.
    #[error("{0}; no key was kept anywhere")]
    Agent(AgentError),
    /// The agent took the key but a probe signature through it does not verify.
    #[error(
        "the ssh-agent at {} took the new key but a signature through it failed ({reason}); the agent is faulty: start another with `eval \"$(ssh-agent)\"` and run keygen again",
        .socket.display()
    )]
    AgentProbe {
        /// Why the probe failed.
        reason: Box<crate::signer::ProbeError>,
        /// The agent's socket.
        socket: PathBuf,
    },
}

/// What `keygen --ssh-agent` loaded into the agent.
#[derive(Debug)]
pub struct AddedToAgent {
    /// The agent's socket.
    pub socket: PathBuf,
    /// The key's `SHA256:` fingerprint, as `ssh-add -l -E sha256` lists it.
    pub fingerprint: Fingerprint,
    /// The public key as an SPKI `PUBLIC KEY` PEM block, to register with Code Storage.
    pub public_pem: String,
    /// The algorithm tokens signed with it use.
    pub algorithm: key::Algorithm,
}

/// Makes a key of `kind` in memory and loads it into `agent` with `comment`; the private key is
/// never written anywhere and is wiped here once the agent has it. A probe signed through the
/// agent checks that the agent holds exactly this key.
pub fn keygen_agent(
    kind: NewKey,
    agent: &Agent,
    comment: &str,
) -> Result<AddedToAgent, KeygenError> {
    let pkcs8 = key::generate_pkcs8(kind).map_err(|_| KeygenError::Random)?;
    let added = agent
        .add_key(pkcs8.expose(), comment)
        .map_err(KeygenError::Agent)?;
    drop(pkcs8);
    let wanted = key::AgentSource {
        key: key::AgentKeyId::Fingerprint(added.fingerprint().clone()),
        socket: Some(agent.path().to_owned()),
    };
    let source = KeySource::Agent(Box::new(wanted.clone()));
    let no_env = crate::env::MapEnv::default();
    let signer = crate::signer::agent::AgentSigner::connect(&source, &wanted, &no_env).map_err(
        |e| match e {
            KeyError::Agent { reason, .. } => KeygenError::Agent(*reason),
            other => KeygenError::Unusable {
                path: agent.path().to_owned(),
                source: Box::new(other),
            },
        },
    )?;
    crate::signer::probe(&signer).map_err(|reason| KeygenError::AgentProbe {
        reason: Box::new(reason),
        socket: agent.path().to_owned(),
    })?;
    Ok(AddedToAgent {
        socket: agent.path().to_owned(),
        fingerprint: added.fingerprint().clone(),
        public_pem: added.public().to_spki_pem(),
        algorithm: added.algorithm(),
    })
}

/// What to do after `keygen --ssh-agent`: register the key, then point setup at it by
/// fingerprint; and what the user must know: the key is only in this agent.
pub fn agent_next_steps(org: &str, added: &AddedToAgent, program: &str) -> String {
    format!(
        "loaded a new {} key into the ssh-agent at {}: {}\nthe private key was written nowhere: it lives only in this agent and is gone when the agent stops or forgets it (`ssh-add -D`); keep one that outlives it in a hardware token (`ssh-add -s`) or make a file key with `{program} keygen --org {org}`\nnext: register the public key above in the Code Storage admin panel (public keys) of organisation {org}, then run:\n  {program} setup --org {org} --ssh-agent {}",
        added.algorithm,
        added.socket.display(),
        added.fingerprint,
        added.fingerprint,
    )
}

/// The default key file for `org`: `<config dir>/codestorage/<org>.pem`.
pub fn default_path(org: &str) -> Result<PathBuf, KeygenError> {
    crate::paths::default_key_file(org).ok_or(KeygenError::NoHome)
}

/// Re-exported: `setup` words its `keygen` fixes with it.
pub use crate::paths::out_unless_default;

/// Makes a key of `kind` and writes it as PKCS#8 PEM to `path` with mode 0600. An existing file
/// is replaced only with `force`: a key that is still registered must not vanish by accident,
/// and two keygens racing for one path leave exactly one key, the one the winner printed.
pub fn keygen(kind: NewKey, path: &Path, force: bool) -> Result<Generated, KeygenError> {
    // Checked first only to fail before making a key; the write itself is what refuses.
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(KeygenError::Exists {
            path: path.to_owned(),
        });
    }
    // Derived from the text just made, exactly as `get` will read it back.
    let source = KeySource::File(path.to_owned());
    let unusable = |source| KeygenError::Unusable {
        path: path.to_owned(),
        source: Box::new(source),
    };
    // key::generate writes what OpenSSL writes (Ed25519 as PKCS#8 v1, which OpenSSL 3, Node and
    // Python's cryptography read).
    let pem = key::generate(kind).map_err(|_| KeygenError::Random)?;
    let public = key::PublicKey::from_pem(pem.expose().as_bytes(), &source).map_err(unusable)?;
    let public_pem = public.to_pem();
    if let Some(dir) = path.parent() {
        fs::create_private_dir(dir).map_err(|source| KeygenError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    let overwrite = if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    };
    fs::write_atomic(path, pem.expose().as_bytes(), 0o600, overwrite).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeygenError::Exists {
                path: path.to_owned(),
            }
        } else {
            KeygenError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    Ok(Generated {
        path: path.to_owned(),
        public_pem,
        algorithm: public.algorithm(),
    })
}

/// What to do after `keygen`, with the real organisation, key path and `program` (this
/// binary as the user can run it: its name if PATH finds it, else its absolute path).
pub fn next_steps(org: &str, made: &Generated, program: &str) -> String {
    format!(
        "wrote the private key to {} ({}{})\nnext: register the public key above in the Code Storage admin panel (public keys) of organisation {org}, then run:\n  {program} setup --org {org} --key-file {}",
        made.path.display(),
        made.algorithm,
        // Windows has no mode bits: the key is guarded by the profile folder's ACL alone.
        if cfg!(unix) { ", mode 600" } else { "" },
        shell_quote(&made.path.to_string_lossy()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::key::LoadOptions;

    #[test]
    fn writes_a_private_key_that_loads_and_refuses_to_overwrite_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/acme.pem");
        let made = keygen(NewKey::P256, &path, false).unwrap();
        assert_eq!(made.algorithm, key::Algorithm::Es256);
        assert!(made.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let source = KeySource::File(path.clone());
        let loaded =
            crate::signer::open(&source, &MapEnv::default(), LoadOptions::default()).unwrap();
        assert_eq!(loaded.public_key().to_pem(), made.public_pem);

        let before = std::fs::read(&path).unwrap();
        let err = keygen(NewKey::P256, &path, false).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let replaced = keygen(NewKey::Ed25519, &path, true).unwrap();
        assert_eq!(replaced.algorithm, key::Algorithm::EdDsa);
        assert_ne!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn the_next_step_names_the_program_and_quotes_the_path() {
        let made = Generated {
            path: PathBuf::from("/home/u/my keys/acme.pem"),
            public_pem: String::new(),
            algorithm: key::Algorithm::Es256,
        };
        let text = next_steps("acme", &made, "/opt/bin/git-credential-codestorage");
        assert!(
            text.ends_with(
                "\n  /opt/bin/git-credential-codestorage setup --org acme --key-file '/home/u/my keys/acme.pem'"
            ),
            "{text}"
        );
    }
}
