//! An ssh-agent client that signs JWS signing inputs, so that a key can sign tokens without its
//! private half ever being on disk or in this process (a hardware token, a forwarded agent, a
//! key loaded with `ssh-add -` from a secret store).
//!
//! The protocol (draft-miller-ssh-agent) is four messages over a Unix socket: list identities,
//! sign, add a key, and the answers. An ECDSA P-256 agent signature is ES256 once its two
//! mpints are laid side by side, an Ed25519 one is EdDSA as is, and an RSA one asked for with
//! `rsa-sha2-256` is RS256. A `get` lists the agent's keys and signs over one connection, which
//! is kept between calls and replaced by a fresh one when the agent has closed it (restarted,
//! say): a long-running broker never fails a request for a stale connection.
//!
//! The client is this crate's own rather than a published one: the Rust agent clients
//! (`ssh-agent-client-rs`, `ssh-agent-lib`) build on the `ssh-key` crate, which brings
//! RustCrypto's hashes and, for these key types, its `rsa`, `p256` and Ed25519 crates, where
//! this crate keeps all of its cryptography in ring (fingerprints, the check of every agent
//! signature) and a small `get`. The subset needed is four messages and SSH's string and mpint
//! encoding ([`wire`]), bounded in size and time, and tested against a real OpenSSH
//! `ssh-agent`, with `ssh-keygen` as the independent reference for fingerprints and public key
//! formats.

pub mod pubkey;
pub mod wire;

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

pub use pubkey::{Fingerprint, PublicKeyError, PublicKeyInfo, read_public_key};

use crate::alg::Algorithm;
use crate::der::{self, oid};
use crate::signature;
use wire::Writer;

/// What a connection closed before any answer says.
const CLOSED_WITHOUT_ANSWER: &str = "the agent closed the connection without answering";

/// How long to wait for the agent: long enough for a confirmation prompt or a hardware
/// token's touch, short enough that git does not seem to hang for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from an agent (OpenSSH's own limit on a message).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The longest data sent to be signed; a JWS signing input is a few hundred bytes.
const MAX_SIGN_INPUT: usize = 64 * 1024;
/// The longest comment given with a key that is added.
const MAX_COMMENT: usize = 1024;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENT_SUCCESS: u8 = 6;
const SSH2_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH2_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH2_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH2_AGENT_SIGN_RESPONSE: u8 = 14;
const SSH2_AGENTC_ADD_IDENTITY: u8 = 17;
/// Failure codes older agents send; OpenSSH's client treats them as `SSH_AGENT_FAILURE`.
const SSH2_AGENT_FAILURE: u8 = 30;
const SSH_COM_AGENT2_FAILURE: u8 = 102;
/// Asks for an `rsa-sha2-256` signature instead of the SHA-1 `ssh-rsa` one.
const SSH_AGENT_RSA_SHA2_256: u32 = 2;

/// Why the agent could not be used; each message says what to run to fix it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `SSH_AUTH_SOCK` is unset or empty.
    #[error(
        "SSH_AUTH_SOCK is not set, so there is no ssh-agent to sign with; start one with `eval \"$(ssh-agent)\"` and add the key with `ssh-add`"
    )]
    NoSocket,
    /// The socket could not be connected to.
    #[error("cannot reach the ssh-agent at {path} ({source}); check `ssh-add -l`, or start an agent with `eval \"$(ssh-agent)\"` and set SSH_AUTH_SOCK", path = .path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Windows' own OpenSSH agent (its fixed pipe) could not be reached: on Windows the
    /// service is stopped until started, and `ssh-agent` in a shell is not how it starts.
    #[error("cannot reach Windows' OpenSSH agent at {path} ({source}); start it with `Start-Service ssh-agent` in PowerShell run as administrator (`Set-Service ssh-agent -StartupType Automatic` keeps it started), add the key with `ssh-add`, or set SSH_AUTH_SOCK to the agent that holds it", path = .path.display())]
    ConnectWindows {
        /// The agent's pipe.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Talking to the agent failed after connecting.
    #[error("lost the connection to the ssh-agent at {path} ({source}); check that it still runs with `ssh-add -l`", path = .path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The agent did not answer in time.
    #[error("the ssh-agent at {path} did not answer within {timeout:?}; if it asks to confirm the key (`ssh-add -c`) or to touch a token, answer it, then retry", path = .path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The limit it ran into.
        timeout: Duration,
    },
    /// The agent holds no key with the wanted fingerprint.
    #[error("the ssh-agent holds no key {fingerprint} (it holds {}); add it with `ssh-add KEY_FILE` and compare with `ssh-add -l -E sha256`", list(.available))]
    KeyNotFound {
        /// The fingerprint looked for.
        fingerprint: Fingerprint,
        /// What the agent holds, one `SHA256:… comment (type)` entry per key.
        available: Vec<String>,
    },
    /// The agent answered a sign request with failure.
    #[error(
        "the ssh-agent refused to sign with {fingerprint}; a key added with `ssh-add -c` needs its confirmation answered, a locked agent needs `ssh-add -X`, and `ssh-add -l -E sha256` shows whether the key is still there"
    )]
    Refused {
        /// The key it was asked to sign with.
        fingerprint: Fingerprint,
    },
    /// The agent answered an add request with failure.
    #[error(
        "the ssh-agent refused to add the key; unlock it with `ssh-add -X` if it is locked, or check its log"
    )]
    AddRefused,
    /// A key in the agent is of a type Code Storage does not accept.
    #[error(
        "the ssh-agent's key {fingerprint} is {kind}; {}: pick another with its fingerprint from `ssh-add -l -E sha256`",
        crate::alg::ACCEPTED
    )]
    UnsupportedKey {
        /// The key's fingerprint.
        fingerprint: Fingerprint,
        /// What it is.
        kind: String,
    },
    /// A private key given to [`Agent::add_key`] that this client cannot add.
    #[error(
        "cannot add {0} to the ssh-agent from here; only P-256 and Ed25519 PKCS#8 keys can be, add others with `ssh-add KEY_FILE`"
    )]
    AddUnsupported(&'static str),
    /// An RSA signature came back as SHA-1 `ssh-rsa`: the agent ignores the SHA-256 flag.
    #[error(
        "the ssh-agent signed with SHA-1 (`ssh-rsa`) though RS256 needs `rsa-sha2-256`; use an agent from OpenSSH 7.2 or later, or an EC P-256 or Ed25519 key"
    )]
    RsaSha1Only,
    /// The agent's signature does not verify with the key it was asked to use.
    #[error(
        "the ssh-agent's signature does not verify with {fingerprint}; the agent or the token behind it is faulty, try `ssh-add -D` and add the key again"
    )]
    BadSignature {
        /// The key it was asked to sign with.
        fingerprint: Fingerprint,
    },
    /// The data to sign or the comment is larger than any agent takes.
    #[error("the {0} is too large to send to an ssh-agent")]
    TooLarge(&'static str),
    /// The agent's answer breaks the protocol.
    #[error(
        "the ssh-agent sent a malformed answer ({0}); check that SSH_AUTH_SOCK names an ssh-agent socket"
    )]
    Protocol(&'static str),
}

fn list(available: &[String]) -> String {
    if available.is_empty() {
        "no keys".to_owned()
    } else {
        available.join("; ")
    }
}

/// A key the agent holds, of a type Code Storage accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    public: PublicKeyInfo,
    comment: String,
}

impl AgentKey {
    /// The JWS algorithm it signs.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The public key in both encodings, with its fingerprint.
    pub fn public(&self) -> &PublicKeyInfo {
        &self.public
    }

    /// The SSH wire blob the agent identifies the key by.
    pub fn ssh_blob(&self) -> &[u8] {
        self.public.ssh_blob()
    }

    /// The DER SubjectPublicKeyInfo, as Code Storage registers it.
    pub fn spki_der(&self) -> &[u8] {
        self.public.spki_der()
    }

    /// The `SHA256:` fingerprint `ssh-add -l -E sha256` shows.
    pub fn fingerprint(&self) -> &Fingerprint {
        self.public.fingerprint()
    }

    /// The comment the key was added with (often its file name).
    pub fn comment(&self) -> &str {
        &self.comment
    }
}

/// Which agent key to sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The key with this `SHA256:` fingerprint.
    Fingerprint(Fingerprint),
    /// The key with this public half (from a `.pub` file or a `PUBLIC KEY` PEM).
    PublicKey(PublicKeyInfo),
}

impl KeySelector {
    /// The fingerprint the wanted key has.
    pub fn fingerprint(&self) -> &Fingerprint {
        match self {
            Self::Fingerprint(fingerprint) => fingerprint,
            Self::PublicKey(info) => info.fingerprint(),
        }
    }
}

/// One entry of the agent's list, whatever its type.
struct Identity {
    blob: Vec<u8>,
    comment: String,
    fingerprint: Fingerprint,
}

impl Identity {
    /// `SHA256:… comment (type)`, the way a refusal lists it.
    fn describe(&self) -> String {
        let printable = |text: &[u8]| -> String {
            String::from_utf8_lossy(text)
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect()
        };
        let kind = wire::Reader::new(&self.blob)
            .string()
            .map_or_else(|_| "unknown type".into(), printable);
        format!(
            "{} {} ({})",
            self.fingerprint,
            printable(self.comment.as_bytes()),
            kind
        )
    }
}

/// A client for the ssh-agent listening on one Unix socket.
#[derive(Debug)]
pub struct Agent {
    path: PathBuf,
    timeout: Duration,
    /// The connection the last answer came on, for the next call to use.
    idle: Mutex<Option<Stream>>,
}

impl Clone for Agent {
    /// The same agent, with a connection of its own.
    fn clone(&self) -> Self {
        Self::at(self.path.clone()).with_timeout(self.timeout)
    }
}

impl PartialEq for Agent {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.timeout == other.timeout
    }
}

impl Eq for Agent {}

impl Agent {
    /// The agent `SSH_AUTH_SOCK` names; the caller passes the variable's value.
    pub fn from_env(ssh_auth_sock: Option<&str>) -> Result<Agent, AgentError> {
        match ssh_auth_sock {
            Some(path) if !path.is_empty() => Ok(Self::at(path)),
            // Windows' OpenSSH agent serves one well-known pipe and sets no variable.
            _ if cfg!(windows) => Ok(Self::at(WINDOWS_PIPE)),
            _ => Err(AgentError::NoSocket),
        }
    }

    /// The agent listening at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Agent {
        Self {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            idle: Mutex::new(None),
        }
    }

    /// The same agent with another limit on how long each answer may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Agent {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys the agent holds that Code Storage accepts, in the agent's order; keys of
    /// other types (P-384, security keys, certificates) are left out.
    pub fn identities(&self) -> Result<Vec<AgentKey>, AgentError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|identity| {
                let public = PublicKeyInfo::from_ssh_blob(&identity.blob).ok()?;
                Some(AgentKey {
                    public,
                    comment: identity.comment,
                })
            })
            .collect())
    }

    /// Finds the key by `SHA256:` fingerprint or by its public half.
    pub fn find(&self, wanted: &KeySelector) -> Result<AgentKey, AgentError> {
        let identities = self.list()?;
        let fingerprint = wanted.fingerprint();
        let Some(identity) = identities.iter().find(|i| &i.fingerprint == fingerprint) else {
            return Err(AgentError::KeyNotFound {
                fingerprint: fingerprint.clone(),
                available: identities.iter().map(Identity::describe).collect(),
            });
        };
        let public = PublicKeyInfo::from_ssh_blob(&identity.blob).map_err(|e| match e {
            PublicKeyError::Unsupported { kind } => AgentError::UnsupportedKey {
                fingerprint: fingerprint.clone(),
                kind,
            },
            _ => AgentError::Protocol("a listed key blob is malformed"),
        })?;
        Ok(AgentKey {
            public,
            comment: identity.comment.clone(),
        })
    }

    /// Signs a JWS signing input and returns the JWS signature bytes: r||s (64 bytes) for ES256,
    /// the 64-byte Ed25519 signature, or the RSA signature as long as the modulus. The signature
    /// is verified against the key before it is returned, so a faulty agent cannot hand a token
    /// to git that the server would refuse with a puzzling 401.
    pub fn sign(&self, key: &AgentKey, signing_input: &[u8]) -> Result<Vec<u8>, AgentError> {
        if signing_input.len() > MAX_SIGN_INPUT {
            return Err(AgentError::TooLarge("data to sign"));
        }
        let flags = match key.algorithm() {
            Algorithm::Rs256 => SSH_AGENT_RSA_SHA2_256,
            Algorithm::Es256 | Algorithm::EdDsa => 0,
        };
        let mut request = Writer::with_capacity(key.ssh_blob().len() + signing_input.len() + 32);
        request
            .byte(SSH2_AGENTC_SIGN_REQUEST)
            .string(key.ssh_blob())
            .string(signing_input)
            .u32(flags);
        let answer = self.call(request.as_bytes())?;
        let mut reader = wire::Reader::new(&answer);
        match reader.byte() {
            Ok(SSH2_AGENT_SIGN_RESPONSE) => {}
            Ok(code) if is_failure(code) => {
                return Err(AgentError::Refused {
                    fingerprint: key.fingerprint().clone(),
                });
            }
            _ => return Err(AgentError::Protocol("unexpected answer to a sign request")),
        }
        let blob = reader
            .string()
            .map_err(|_| AgentError::Protocol("truncated signature"))?;
        reader
            .finish()
            .map_err(|_| AgentError::Protocol("trailing bytes after the signature"))?;
        let signature = jws_signature(key, blob)?;
        signature::verify(key.algorithm(), key.spki_der(), signing_input, &signature).map_err(
            |_| AgentError::BadSignature {
                fingerprint: key.fingerprint().clone(),
            },
        )?;
        Ok(signature)
    }

    /// Adds a P-256 or Ed25519 private key, given as PKCS#8 DER (as ring makes it), to the
    /// agent with `comment`, so that a fresh key can sign without ever being written to disk.
    /// Returns the key as the agent now lists it.
    pub fn add_key(&self, pkcs8_der: &[u8], comment: &str) -> Result<AgentKey, AgentError> {
        if comment.len() > MAX_COMMENT {
            return Err(AgentError::TooLarge("comment"));
        }
        let (public, request) = add_request(pkcs8_der, comment)?;
        let answer = self.call(request.as_bytes())?;
        match answer.as_slice() {
            [SSH_AGENT_SUCCESS] => Ok(AgentKey {
                public,
                comment: comment.to_owned(),
            }),
            [code] if is_failure(*code) => Err(AgentError::AddRefused),
            _ => Err(AgentError::Protocol("unexpected answer to an add request")),
        }
    }

    fn list(&self) -> Result<Vec<Identity>, AgentError> {
        let answer = self.call(&[SSH2_AGENTC_REQUEST_IDENTITIES])?;
        let malformed = |_| AgentError::Protocol("truncated key list");
        let mut reader = wire::Reader::new(&answer);
        match reader.byte() {
            Ok(SSH2_AGENT_IDENTITIES_ANSWER) => {}
            Ok(code) if is_failure(code) => {
                return Err(AgentError::Protocol("the agent refused to list its keys"));
            }
            _ => {
                return Err(AgentError::Protocol(
                    "unexpected answer to a key list request",
                ));
            }
        }
        let count = reader.u32().map_err(malformed)?;
        // Each entry takes at least 8 bytes, so a count beyond that is a lie, not a big list.
        if usize::try_from(count).map_or(true, |n| n > answer.len() / 8) {
            return Err(AgentError::Protocol("key count larger than the answer"));
        }
        let mut identities = Vec::new();
        for _ in 0..count {
            let blob = reader.string().map_err(malformed)?.to_vec();
            let comment = String::from_utf8_lossy(reader.string().map_err(malformed)?).into_owned();
            identities.push(Identity {
                fingerprint: Fingerprint::of(&blob),
                blob,
                comment,
            });
        }
        reader
            .finish()
            .map_err(|_| AgentError::Protocol("trailing bytes after the key list"))?;
        Ok(identities)
    }

    /// Sends one request and returns the answer's body, on the connection the last answer came
    /// on when there is one, else on a new one. A kept connection the agent has since closed
    /// fails before any answer: the request is then sent once more on a new connection. The
    /// answer is wiped when dropped: nothing secret comes back today, but an agent is not ours
    /// to trust.
    fn call(&self, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        // One deadline for the whole request and answer, a retry included: an agent that
        // trickles a byte now and then must not reset it with every byte.
        let deadline = Instant::now() + self.timeout;
        let kept = self.idle.lock().map_or(None, |mut idle| idle.take());
        if let Some(stream) = kept {
            match self.exchange(stream, request, deadline) {
                Err(e) if closed(&e) => {}
                // Anything else (a timeout while a confirmation prompt waits, say) is the
                // agent's answer, not a reason to ask again.
                answered => return answered,
            }
        }
        let stream = connect(&self.path).map_err(|e| connect_error(self.path.clone(), e))?;
        self.exchange(stream, request, deadline)
    }

    /// Sends one request on `stream` and reads its answer by `deadline`; the stream is kept for
    /// the next call once a whole answer has come.
    fn exchange(
        &self,
        mut stream: Stream,
        request: &[u8],
        deadline: Instant,
    ) -> Result<Zeroizing<Vec<u8>>, AgentError> {
        let io = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => AgentError::Timeout {
                path: self.path.clone(),
                timeout: self.timeout,
            },
            _ => AgentError::Io {
                path: self.path.clone(),
                source,
            },
        };
        let len = u32::try_from(request.len()).map_err(|_| AgentError::TooLarge("request"))?;
        // One write: the length and the body together, copied into a buffer wiped afterwards.
        let mut framed = Zeroizing::new(Vec::with_capacity(request.len() + 4));
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        write_by(&mut stream, &framed, deadline).map_err(io)?;
        let mut header = [0u8; 4];
        read_by(&mut stream, &mut header, deadline).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                AgentError::Protocol(CLOSED_WITHOUT_ANSWER)
            } else {
                io(e)
            }
        })?;
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 {
            return Err(AgentError::Protocol("empty answer"));
        }
        if len > MAX_MESSAGE {
            return Err(AgentError::Protocol("answer larger than 256 KiB"));
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        read_by(&mut stream, &mut body, deadline).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                AgentError::Protocol("truncated answer")
            } else {
                io(e)
            }
        })?;
        if let Ok(mut idle) = self.idle.lock() {
            *idle = Some(stream);
        }
        Ok(body)
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh-agent at {}", self.path.display())
    }
}

/// Whether `error` says the connection was closed before the agent answered: what a kept
/// connection to an agent that has since stopped or restarted gives.
fn closed(error: &AgentError) -> bool {
    match error {
        AgentError::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        ),
        AgentError::Protocol(reason) => *reason == CLOSED_WITHOUT_ANSWER,
        _ => false,
    }
}

fn is_failure(code: u8) -> bool {
    matches!(
        code,
        SSH_AGENT_FAILURE | SSH2_AGENT_FAILURE | SSH_COM_AGENT2_FAILURE
    )
}

/// The JWS signature inside an agent's signature blob, `string type, string signature`.
fn jws_signature(key: &AgentKey, blob: &[u8]) -> Result<Vec<u8>, AgentError> {
    let mut reader = wire::Reader::new(blob);
    let malformed = |_| AgentError::Protocol("malformed signature blob");
    let kind = reader.string().map_err(malformed)?;
    let inner = reader.string().map_err(malformed)?;
    reader.finish().map_err(malformed)?;
    match key.algorithm() {
        Algorithm::Es256 => {
            if kind != pubkey::SSH_P256.as_bytes() {
                return Err(AgentError::Protocol(
                    "signature type is not ecdsa-sha2-nistp256",
                ));
            }
            let mut integers = wire::Reader::new(inner);
            let r = integers.positive_mpint().map_err(malformed)?;
            let s = integers.positive_mpint().map_err(malformed)?;
            integers.finish().map_err(malformed)?;
            signature::ecdsa_fixed(r, s)
                .map(Vec::from)
                .ok_or(AgentError::Protocol("ECDSA r or s longer than 32 bytes"))
        }
        Algorithm::EdDsa => {
            if kind != pubkey::SSH_ED25519.as_bytes() {
                return Err(AgentError::Protocol("signature type is not ssh-ed25519"));
            }
            if inner.len() != signature::ED25519_LEN {
                return Err(AgentError::Protocol("an Ed25519 signature is 64 bytes"));
            }
            Ok(inner.to_vec())
        }
        Algorithm::Rs256 => {
            match kind {
                b"rsa-sha2-256" => {}
                b"ssh-rsa" => return Err(AgentError::RsaSha1Only),
                _ => return Err(AgentError::Protocol("signature type is not rsa-sha2-256")),
            }
            // Some agents drop leading zero bytes; JWS wants the modulus length exactly.
            let len = key.public().signature_len();
            if inner.len() > len {
                return Err(AgentError::Protocol(
                    "RSA signature longer than the modulus",
                ));
            }
            let mut padded = vec![0u8; len - inner.len()];
            padded.extend_from_slice(inner);
            Ok(padded)
        }
    }
}

/// A PKCS#8 key that is not valid DER.
const INVALID_PKCS8: AgentError =
    AgentError::AddUnsupported("this private key (not valid PKCS#8 DER)");

/// The SSH2_AGENTC_ADD_IDENTITY request for a PKCS#8 key, and the key's public half. ring
/// checks the key and derives the public half; the private scalar or seed is copied out of the
/// DER into buffers wiped on drop.
fn add_request(pkcs8: &[u8], comment: &str) -> Result<(PublicKeyInfo, Writer), AgentError> {
    let bad = |_: der::DerError| INVALID_PKCS8;
    let mut outer = der::Reader::new(pkcs8);
    let mut info = der::Reader::new(outer.expect(der::SEQUENCE).map_err(bad)?);
    info.expect(der::INTEGER).map_err(bad)?;
    let mut algorithm_id = der::Reader::new(info.expect(der::SEQUENCE).map_err(bad)?);
    let key_type = algorithm_id.expect(der::OID).map_err(bad)?;
    let private = info.expect(der::OCTET_STRING).map_err(bad)?;
    match key_type {
        t if t == oid::ED25519 => add_ed25519(pkcs8, private, comment),
        t if t == oid::EC_PUBLIC_KEY => {
            if algorithm_id.expect(der::OID) != Ok(oid::P256) {
                return Err(AgentError::AddUnsupported(
                    "an EC key on another curve than P-256",
                ));
            }
            add_p256(pkcs8, private, comment)
        }
        t if t == oid::RSA_ENCRYPTION => Err(AgentError::AddUnsupported("an RSA key")),
        _ => Err(AgentError::AddUnsupported("a key of this type")),
    }
}

/// [`add_request`] for an Ed25519 key whose PKCS#8 `private` octets hold the seed.
fn add_ed25519(
    pkcs8: &[u8],
    private: &[u8],
    comment: &str,
) -> Result<(PublicKeyInfo, Writer), AgentError> {
    let bad = |_: der::DerError| INVALID_PKCS8;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| INVALID_PKCS8)?;
    // CurvePrivateKey ::= OCTET STRING (the 32-byte seed), inside the PKCS#8 octets.
    let seed = der::Reader::new(private)
        .expect(der::OCTET_STRING)
        .map_err(bad)?;
    let public_key = pair.public_key().as_ref();
    let mut secret = Zeroizing::new([0u8; 64]);
    if seed.len() != 32 {
        return Err(AgentError::AddUnsupported(
            "this Ed25519 key (seed is not 32 bytes)",
        ));
    }
    secret[..32].copy_from_slice(seed);
    secret[32..].copy_from_slice(public_key);
    identity(
        pubkey::SSH_ED25519,
        &[public_key],
        |request| {
            request.string(&secret[..]);
        },
        comment,
        "this Ed25519 key",
    )
}

/// [`add_request`] for a P-256 key whose PKCS#8 `private` octets hold an ECPrivateKey.
fn add_p256(
    pkcs8: &[u8],
    private: &[u8],
    comment: &str,
) -> Result<(PublicKeyInfo, Writer), AgentError> {
    let bad = |_: der::DerError| INVALID_PKCS8;
    let pair = EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|_| INVALID_PKCS8)?;
    // ECPrivateKey ::= SEQUENCE { version, privateKey OCTET STRING, ... }.
    let mut ec = der::Reader::new(
        der::Reader::new(private)
            .expect(der::SEQUENCE)
            .map_err(bad)?,
    );
    ec.expect(der::INTEGER).map_err(bad)?;
    let scalar = ec.expect(der::OCTET_STRING).map_err(bad)?;
    let point = pair.public_key().as_ref();
    identity(
        pubkey::SSH_P256,
        &[b"nistp256", point],
        |request| {
            request.positive_mpint(scalar);
        },
        comment,
        "this P-256 key",
    )
}

/// The SSH2_AGENTC_ADD_IDENTITY request for a key of `key_type` whose public blob holds
/// `public` after the type and whose private fields `private` writes, and that public half read
/// back from its blob; `what` names the key if the blob does not read.
fn identity(
    key_type: &str,
    public: &[&[u8]],
    private: impl FnOnce(&mut Writer),
    comment: &str,
    what: &'static str,
) -> Result<(PublicKeyInfo, Writer), AgentError> {
    let mut blob = Writer::with_capacity(128);
    blob.string(key_type.as_bytes());
    let mut request = Writer::with_capacity(256 + comment.len());
    request
        .byte(SSH2_AGENTC_ADD_IDENTITY)
        .string(key_type.as_bytes());
    for field in public {
        blob.string(field);
        request.string(field);
    }
    private(&mut request);
    request.string(comment.as_bytes());
    let public = PublicKeyInfo::from_ssh_blob(blob.as_bytes())
        .map_err(|_| AgentError::AddUnsupported(what))?;
    Ok((public, request))
}

/// The named pipe Windows' OpenSSH agent listens on.
pub const WINDOWS_PIPE: &str = r"\\.\pipe\openssh-ssh-agent";

/// A connection to the agent.
#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
/// A connection to the agent.
#[cfg(windows)]
type Stream = std::fs::File;

/// Why `path` could not be connected to, with the fix for its kind of agent: Windows' own
/// agent is a service to start, any other an agent to run and name in SSH_AUTH_SOCK.
fn connect_error(path: PathBuf, source: std::io::Error) -> AgentError {
    if cfg!(windows) && path == Path::new(WINDOWS_PIPE) {
        AgentError::ConnectWindows { path, source }
    } else {
        AgentError::Connect { path, source }
    }
}

/// A connection to the agent's Unix socket.
#[cfg(unix)]
fn connect(path: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(path)
}

/// A connection to the agent's named pipe, which Windows opens as a file.
#[cfg(windows)]
fn connect(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// The time left until `deadline`, or a timeout error once it has passed.
fn time_left(deadline: Instant) -> std::io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Writes all of `bytes` by `deadline`, however slowly the agent takes them.
fn write_by(stream: &mut Stream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        set_timeout(stream, time_left(deadline)?)?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` by `deadline`: each read waits only for the time left, so an agent that sends
/// one byte now and then cannot stretch the wait.
fn read_by(stream: &mut Stream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        set_timeout(stream, time_left(deadline)?)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bounds the next read or write on the socket by `timeout`.
#[cfg(unix)]
fn set_timeout(stream: &std::os::unix::net::UnixStream, timeout: Duration) -> std::io::Result<()> {
    // A zero timeout would mean "block for ever" to the socket: keep at least a millisecond.
    let timeout = Some(timeout.max(Duration::from_millis(1)));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// A pipe opened as a file has no timeouts: an agent waiting for a confirmation waits.
#[cfg(windows)]
fn set_timeout(_: &std::fs::File, _: Duration) -> std::io::Result<()> {
    Ok(())
}

// The tests serve answers over Unix sockets.
/// Names the agent's socket after an error that does not already name it, so that the user
/// knows which agent `ssh-add -l` must be asked (a configured `agent_socket` may not be theirs).
pub fn socket_note(socket: Option<&Path>, reason: &AgentError) -> String {
    match (socket, reason) {
        (
            _,
            AgentError::NoSocket
            | AgentError::Connect { .. }
            | AgentError::ConnectWindows { .. }
            | AgentError::Io { .. }
            | AgentError::Timeout { .. },
        )
        | (None, _) => String::new(),
        (Some(path), _) => format!(" (agent socket {})", path.display()),
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    #[test]
    fn only_windows_own_agent_is_told_to_start_the_service() {
        let refused = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let own = connect_error(PathBuf::from(WINDOWS_PIPE), refused());
        assert_eq!(
            matches!(own, AgentError::ConnectWindows { .. }),
            cfg!(windows),
            "{own}"
        );
        let other = connect_error(PathBuf::from("/run/agent.sock"), refused());
        assert!(matches!(other, AgentError::Connect { .. }), "{other}");
        if cfg!(windows) {
            let message = own.to_string();
            assert!(message.contains("`Start-Service ssh-agent`"), "{message}");
            assert!(!message.contains("eval"), "{message}");
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A peer that answers one connection with `answer` bytes, for the malformed answers no
    /// real agent gives; the real agent's behaviour is tested in tests/ssh_agent.rs.
    fn peer(answer: Vec<u8>) -> (tempfile::TempDir, Agent, std::thread::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).unwrap();
            let mut request = vec![0u8; u32::from_be_bytes(header) as usize];
            stream.read_exact(&mut request).unwrap();
            let _ = stream.write_all(&answer);
        });
        let agent = Agent::at(&path).with_timeout(Duration::from_secs(10));
        (dir, agent, thread)
    }

    #[test]
    fn an_agent_trickling_its_answer_is_stopped_at_the_deadline_not_after_each_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // A whole, valid answer (an empty key list), one byte every 60 ms: 540 ms in all, each
        // gap well within the limit, the whole far beyond it.
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).unwrap();
            let mut request = vec![0u8; u32::from_be_bytes(header) as usize];
            stream.read_exact(&mut request).unwrap();
            for byte in framed(&[12, 0, 0, 0, 0]) {
                std::thread::sleep(Duration::from_millis(60));
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
            }
        });
        let limit = Duration::from_millis(200);
        let agent = Agent::at(&path).with_timeout(limit);
        let started = Instant::now();
        let result = agent.identities();
        let waited = started.elapsed();
        thread.join().unwrap();
        assert!(
            matches!(result, Err(AgentError::Timeout { timeout, .. }) if timeout == limit),
            "{result:?}"
        );
        assert!(waited >= limit && waited < limit * 2, "{waited:?}");
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        [&(body.len() as u32).to_be_bytes()[..], body].concat()
    }

    fn protocol_error(answer: Vec<u8>) -> &'static str {
        let (_dir, agent, thread) = peer(answer);
        let result = agent.identities();
        thread.join().unwrap();
        match result {
            Err(AgentError::Protocol(what)) => what,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// A peer that reads one request per entry of `connections` and answers it with an empty
    /// key list, closing each connection after its count of requests; the number of requests
    /// each connection carried comes back from the thread.
    fn counting_peer(
        connections: usize,
        requests_per_connection: usize,
    ) -> (
        tempfile::TempDir,
        Agent,
        std::thread::JoinHandle<Vec<usize>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let mut carried = Vec::new();
            for _ in 0..connections {
                let (mut stream, _) = listener.accept().unwrap();
                let mut served = 0;
                while served < requests_per_connection {
                    let mut header = [0u8; 4];
                    if stream.read_exact(&mut header).is_err() {
                        break;
                    }
                    let mut request = vec![0u8; u32::from_be_bytes(header) as usize];
                    stream.read_exact(&mut request).unwrap();
                    stream.write_all(&framed(&[12, 0, 0, 0, 0])).unwrap();
                    served += 1;
                }
                carried.push(served);
            }
            carried
        });
        let agent = Agent::at(&path).with_timeout(Duration::from_secs(10));
        (dir, agent, thread)
    }

    #[test]
    fn calls_share_one_connection_and_a_closed_one_is_replaced() {
        // Three calls on one connection the agent keeps open.
        let (_dir, agent, thread) = counting_peer(1, 3);
        for _ in 0..3 {
            assert!(agent.identities().unwrap().is_empty());
        }
        drop(agent);
        assert_eq!(thread.join().unwrap(), [3]);

        // An agent that closes each connection after one answer (as a restarted one would
        // have): every call still gets its answer, on a new connection.
        let (_dir, agent, thread) = counting_peer(3, 1);
        for _ in 0..3 {
            assert!(agent.identities().unwrap().is_empty());
        }
        assert_eq!(thread.join().unwrap(), [1, 1, 1]);
    }

    #[test]
    fn malformed_answers_are_protocol_errors() {
        assert_eq!(
            protocol_error((MAX_MESSAGE as u32 + 1).to_be_bytes().to_vec()),
            "answer larger than 256 KiB"
        );
        assert_eq!(protocol_error(vec![0, 0, 0, 9, 12]), "truncated answer");
        assert_eq!(
            protocol_error(vec![]),
            "the agent closed the connection without answering"
        );
        assert_eq!(protocol_error(framed(&[])), "empty answer");
        assert_eq!(
            protocol_error(framed(&[99])),
            "unexpected answer to a key list request"
        );
        assert_eq!(
            protocol_error(framed(&[12, 0xff, 0xff, 0xff, 0xff])),
            "key count larger than the answer"
        );
        assert_eq!(
            protocol_error(framed(&[12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 7])),
            "trailing bytes after the key list"
        );
    }

    #[test]
    fn an_empty_list_is_no_keys_and_find_says_so() {
        let (_dir, agent, thread) = peer(framed(&[12, 0, 0, 0, 0]));
        let wanted = KeySelector::Fingerprint(Fingerprint::of(b"x"));
        let message = agent.find(&wanted).unwrap_err().to_string();
        thread.join().unwrap();
        assert!(message.contains("(it holds no keys)"), "{message}");
    }

    #[test]
    fn from_env_needs_a_non_empty_path() {
        assert!(matches!(Agent::from_env(None), Err(AgentError::NoSocket)));
        assert!(matches!(
            Agent::from_env(Some("")),
            Err(AgentError::NoSocket)
        ));
        assert_eq!(
            Agent::from_env(Some("/tmp/s")).unwrap().path(),
            Path::new("/tmp/s")
        );
    }

    #[test]
    fn add_request_lays_out_what_openssh_expects() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let (public, request) = add_request(pkcs8.as_ref(), "c").unwrap();
        let mut reader = wire::Reader::new(request.as_bytes());
        assert_eq!(reader.byte().unwrap(), SSH2_AGENTC_ADD_IDENTITY);
        assert_eq!(reader.string().unwrap(), b"ssh-ed25519");
        let public_key = reader.string().unwrap();
        let secret = reader.string().unwrap();
        assert_eq!(&secret[32..], public_key);
        // The seed signs as the PKCS#8 key does: Ed25519 is deterministic.
        let from_seed = Ed25519KeyPair::from_seed_unchecked(&secret[..32]).unwrap();
        let from_pkcs8 = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        assert_eq!(
            from_seed.sign(b"m").as_ref(),
            from_pkcs8.sign(b"m").as_ref()
        );
        assert_eq!(reader.string().unwrap(), b"c");
        reader.finish().unwrap();
        assert_eq!(public.algorithm(), Algorithm::EdDsa);

        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap();
        let (public, request) = add_request(pkcs8.as_ref(), "").unwrap();
        let mut reader = wire::Reader::new(request.as_bytes());
        reader.byte().unwrap();
        assert_eq!(reader.string().unwrap(), b"ecdsa-sha2-nistp256");
        assert_eq!(reader.string().unwrap(), b"nistp256");
        assert_eq!(reader.string().unwrap().len(), 65);
        let scalar = reader.positive_mpint().unwrap();
        assert!(!scalar.is_empty() && scalar.len() <= 32);
        assert_eq!(reader.string().unwrap(), b"");
        reader.finish().unwrap();
        assert_eq!(public.algorithm(), Algorithm::Es256);
    }

    #[test]
    fn add_request_refuses_rsa_and_garbage() {
        let rsa = pem::parse(
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa2048.pkcs8.pem"),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            add_request(rsa.contents(), ""),
            Err(AgentError::AddUnsupported("an RSA key"))
        ));
        assert!(matches!(
            add_request(b"\x30\x03\x02\x01\x00", ""),
            Err(AgentError::AddUnsupported(_))
        ));
        assert!(matches!(
            add_request(b"", ""),
            Err(AgentError::AddUnsupported(_))
        ));
    }
}
