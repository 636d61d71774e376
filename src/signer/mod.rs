//! The signing seam: whatever holds the organisation's key, `get` sees one [`Signer`] with an
//! algorithm, a public key and `sign(signing_input)`.
//!
//! [`open`] makes a signer of one of three kinds from a key source: [`local`], a private key
//! held in this process; [`agent`], a key an ssh-agent holds and signs with; and [`command`], an
//! external program (a KMS, Vault, a PKCS#11 tool) whose every signature is checked against the
//! registered public key before it reaches git.

pub mod agent;
pub mod command;
pub mod local;
pub mod metered;
pub mod persistent;

use std::path::PathBuf;

use crate::env::Env;
use crate::key::{self, Algorithm, KeyError, KeySource, LoadOptions, PublicKey};
use crate::process::ProcessError;
use crate::signature::SignatureError;
use crate::sshagent::AgentError;

/// Opens the signer `source` names: a private key read into this process, the agent's key
/// (found by asking the agent once), or a sign_command with its public key read.
pub fn open(
    source: &KeySource,
    env: &dyn Env,
    options: LoadOptions,
) -> Result<Box<dyn Signer>, KeyError> {
    key::source::check_trusted(source, options)?;
    match source {
        KeySource::Agent(agent) => Ok(Box::new(agent::AgentSigner::connect(source, agent, env)?)),
        KeySource::SignCommand(signer) if signer.persistent => Ok(Box::new(
            persistent::PersistentSigner::new(source, signer, options.command_timeout)?,
        )),
        KeySource::SignCommand(signer) => Ok(Box::new(command::CommandSigner::new(
            source,
            signer,
            options.command_timeout,
        )?)),
        KeySource::File(_) | KeySource::Env(_) | KeySource::Command(_) => {
            let text = key::source::read(source, env, options)?;
            Ok(Box::new(local::LocalSigner::new(
                key::parse_pem(text.expose(), source)?,
                source,
            )?))
        }
    }
}

/// Something that signs JWS signing inputs with an organisation's key. `Debug` shows what it
/// is, never key material; `Send + Sync` because the broker signs for many sandboxes at once.
pub trait Signer: std::fmt::Debug + Send + Sync {
    /// The JWS algorithm of the signatures.
    fn algorithm(&self) -> Algorithm;

    /// The public half of the key, as Code Storage has it registered.
    fn public_key(&self) -> PublicKey;

    /// Signs `signing_input` (`base64url(header).base64url(claims)`), returning the JWS signature
    /// bytes: r||s for ES256, PKCS#1 v1.5 for RS256, the 64 Ed25519 bytes for EdDSA.
    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a signer gave no signature; each message names the signer and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// ring refused to sign with an in-process key.
    #[error("the key could not sign (ring refused it)")]
    Local,
    /// The ssh-agent did not sign: gone, locked, the key removed, or a confirmation declined.
    #[error("{reason}{}", crate::sshagent::socket_note(Some(socket), reason))]
    Agent {
        /// The agent's socket.
        socket: PathBuf,
        /// What went wrong; boxed to keep sign errors small.
        reason: Box<AgentError>,
    },
    /// The sign_command could not be run, failed, or hung and was stopped.
    #[error("{command}: {reason}{}", command::timeout_hint(reason))]
    Command {
        /// The signer, as the config names it.
        command: String,
        /// What went wrong.
        reason: ProcessError,
    },
    /// A kept-running sign_command (`sign_persistent`) failed, hung, or answered garbage.
    #[error("{command}: {reason}")]
    Persistent {
        /// The signer, as the config names it.
        command: String,
        /// What went wrong.
        reason: persistent::PersistentError,
    },
    /// The sign_command printed something that is not a signature of the key's type.
    #[error("{command}: {reason}")]
    Output {
        /// The signer, as the config names it.
        command: String,
        /// What is wrong with its output.
        reason: SignatureError,
    },
    /// The sign_command's signature does not verify with its public key: no token is made.
    #[error(
        "{command} printed a {algorithm} signature that does not verify with public_key_file {}; it signs with another key than that file holds, or signs something other than the bytes on its stdin (it must sign them whole, e.g. `openssl dgst -sha256 -sign KEY`); no token was given to git",
        .public_key_file.display()
    )]
    Mismatch {
        /// The signer, as the config names it.
        command: String,
        /// The algorithm the public key implies.
        algorithm: Algorithm,
        /// The public key it was checked with.
        public_key_file: PathBuf,
    },
}

/// Signs a probe and checks it with the signer's own public key: a key that loads but cannot
/// sign, or signs with another key than it claims, fails here rather than as a 401.
pub fn probe(signer: &dyn Signer) -> Result<(), ProbeError> {
    const INPUT: &[u8] = b"eyJhbGciOiJub25lIn0.cHJvYmU";
    let signature = signer.sign(INPUT)?;
    signer
        .public_key()
        .verify(INPUT, &signature)
        .map_err(|_| ProbeError::Mismatch)
}

/// Why a probe signature failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The signer gave no signature.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The signature does not verify with the signer's public key.
    #[error("its probe signature does not verify with its public key")]
    Mismatch,
}

impl ProbeError {
    /// The failure as one line about `source`: a sign error names its signer already, a
    /// mismatch is given the source's name and, for an agent, the fix.
    pub fn about(&self, source: &KeySource) -> String {
        match (self, source) {
            (Self::Sign(error), _) => error.to_string(),
            (Self::Mismatch, KeySource::Agent(_)) => format!(
                "{source}: {self}; the agent is faulty: remove the key with `ssh-add -d` and add it again (`ssh-add -l -E sha256` lists what it holds)"
            ),
            (Self::Mismatch, _) => format!("{source}: {self}"),
        }
    }
}
