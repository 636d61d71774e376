//! A key an ssh-agent holds (`key_agent`): the agent signs each token, so the private key is
//! never read by this process and may never have touched a disk (a YubiKey or an HSM behind
//! `ssh-add -s`, a password manager's agent, a forwarded agent).

use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::key::{self, AgentKeyId, AgentSource, Algorithm, KeyError, KeySource, PublicKey};
use crate::signer::{SignError, Signer};
use crate::sshagent::{Agent, AgentError, AgentKey, KeySelector};

/// The variable ssh-agent's clients find it by.
pub const SSH_AUTH_SOCK: &str = "SSH_AUTH_SOCK";

/// The agent at `socket` (the config's `agent_socket`), else the one `SSH_AUTH_SOCK` names.
pub fn agent_at(socket: Option<&Path>, env: &dyn Env) -> Result<Agent, AgentError> {
    match socket {
        Some(path) => Ok(Agent::at(path)),
        None => Agent::from_env(env.var(SSH_AUTH_SOCK).as_deref()),
    }
}

/// A key in an ssh-agent, found by fingerprint or public key when loaded.
#[derive(Debug)]
pub struct AgentSigner {
    agent: Agent,
    key: AgentKey,
    public: PublicKey,
}

impl AgentSigner {
    /// Asks the agent (the configured socket, else `SSH_AUTH_SOCK` in `env`) for the key
    /// `wanted` names; `source` names it in errors.
    pub fn connect(
        source: &KeySource,
        wanted: &AgentSource,
        env: &dyn Env,
    ) -> Result<Self, KeyError> {
        let agent_error = |socket: Option<PathBuf>| {
            move |reason| KeyError::Agent {
                origin: source.clone(),
                socket,
                reason: Box::new(reason),
            }
        };
        let agent = agent_at(wanted.socket.as_deref(), env).map_err(agent_error(None))?;
        let selector = match &wanted.key {
            AgentKeyId::Fingerprint(fingerprint) => KeySelector::Fingerprint(fingerprint.clone()),
            AgentKeyId::PublicKeyFile(path) => {
                KeySelector::PublicKey(key::read_public_key_file(path, source)?)
            }
        };
        let key = agent
            .find(&selector)
            .map_err(agent_error(Some(agent.path().to_owned())))?;
        let public = PublicKey::from_spki(key.spki_der(), source)?;
        Ok(Self { agent, key, public })
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        self.agent.path()
    }

    /// The key, as the agent lists it.
    pub fn key(&self) -> &AgentKey {
        &self.key
    }
}

impl Signer for AgentSigner {
    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        // The agent client verifies the signature against the key before returning it.
        self.agent
            .sign(&self.key, signing_input)
            .map_err(|reason| SignError::Agent {
                socket: self.agent.path().to_owned(),
                reason: Box::new(reason),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::sshagent::Fingerprint;
    use crate::sshagent::socket_note;

    fn by_fingerprint() -> AgentSource {
        AgentSource {
            key: AgentKeyId::Fingerprint(Fingerprint::of(b"blob")),
            socket: None,
        }
    }

    #[test]
    fn the_configured_socket_wins_over_the_environment() {
        let env = MapEnv::from([(SSH_AUTH_SOCK, "/from/env")]);
        assert_eq!(
            agent_at(Some(Path::new("/from/config")), &env)
                .unwrap()
                .path(),
            Path::new("/from/config")
        );
        assert_eq!(agent_at(None, &env).unwrap().path(), Path::new("/from/env"));
        #[cfg(unix)]
        assert!(matches!(
            agent_at(None, &MapEnv::default()),
            Err(AgentError::NoSocket)
        ));
        // Windows' OpenSSH agent listens on a fixed pipe, asked when SSH_AUTH_SOCK is unset.
        #[cfg(windows)]
        assert_eq!(
            agent_at(None, &MapEnv::default()).unwrap().path(),
            Path::new(r"\\.\pipe\openssh-ssh-agent")
        );
    }

    // Windows has no "unset" case: it asks the OpenSSH agent's pipe, which is missing while
    // the service is stopped (as under Wine, where no such service exists).
    #[cfg(windows)]
    #[test]
    fn a_stopped_windows_agent_is_a_key_error_that_says_how_to_start_it() {
        let wanted = by_fingerprint();
        let source = KeySource::Agent(Box::new(wanted.clone()));
        let Err(error) = AgentSigner::connect(&source, &wanted, &MapEnv::default()) else {
            return; // A real Windows with the agent running and holding that key: nothing to say.
        };
        let message = error.to_string();
        if message.contains("cannot reach") {
            assert!(
                message.starts_with("ssh-agent key SHA256:")
                    && message.contains(r"at \\.\pipe\openssh-ssh-agent")
                    && message.contains("`Start-Service ssh-agent`")
                    && !message.contains("eval"),
                "{message}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn no_agent_is_a_key_error_that_says_how_to_start_one() {
        let wanted = by_fingerprint();
        let source = KeySource::Agent(Box::new(wanted.clone()));
        let error = AgentSigner::connect(&source, &wanted, &MapEnv::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("ssh-agent key SHA256:")
                && message.contains("SSH_AUTH_SOCK is not set")
                && message.contains("eval \"$(ssh-agent)\""),
            "{message}"
        );
        assert!(!message.contains("agent socket"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn a_dead_socket_names_its_path_once() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("gone.sock");
        // A socket file nothing listens on any more, as a crashed agent leaves it.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(socket.exists());
        let wanted = by_fingerprint();
        let source = KeySource::Agent(Box::new(wanted.clone()));
        let env = MapEnv::from([(SSH_AUTH_SOCK, socket.to_str().unwrap())]);
        let message = AgentSigner::connect(&source, &wanted, &env)
            .unwrap_err()
            .to_string();
        let path = socket.display().to_string();
        assert_eq!(message.matches(&path).count(), 1, "{message}");
        assert!(message.contains("ssh-add -l"), "{message}");
    }

    #[test]
    fn a_missing_public_key_file_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.pub");
        let wanted = AgentSource {
            key: AgentKeyId::PublicKeyFile(path.clone()),
            socket: Some(dir.path().join("agent.sock")),
        };
        let source = KeySource::Agent(Box::new(wanted.clone()));
        let error = AgentSigner::connect(&source, &wanted, &MapEnv::default()).unwrap_err();
        assert!(
            matches!(error, KeyError::PublicKeyMissing { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("ssh-add -L"), "{error}");
    }

    #[test]
    fn errors_that_do_not_name_the_socket_get_it_appended() {
        let socket = Path::new("/run/agent.sock");
        let refused = AgentError::Refused {
            fingerprint: Fingerprint::of(b"k"),
        };
        assert_eq!(
            socket_note(Some(socket), &refused),
            " (agent socket /run/agent.sock)"
        );
        assert_eq!(socket_note(None, &refused), "");
        assert_eq!(socket_note(Some(socket), &AgentError::NoSocket), "");
    }
}
