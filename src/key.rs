//! Private keys: where they come from (a file, an environment variable, a program), which PEM
//! formats are read, and which key types Code Storage accepts.
//!
//! Only the envelope is inspected here (PEM label, algorithm and curve OIDs, RSA modulus size);
//! ring validates the key material when it signs, so the key is parsed by ring once per run.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use zeroize::Zeroizing;

use crate::der::{self, Reader, oid};
use crate::env::Env;

/// The key types Code Storage accepts, for error messages.
pub const ACCEPTED: &str =
    "Code Storage accepts EC P-256 (ES256), RSA of 2048 bits or more (RS256) and Ed25519 (EdDSA)";

/// The most bytes read from any key source; a PEM key is a few KiB at most.
const MAX_KEY_BYTES: u64 = 1024 * 1024;

/// How long a `key_command` may run before it is stopped.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The JWT signing algorithm a key implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The JWT `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The same algorithm as `jsonwebtoken` names it.
    pub fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an organisation's private key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file.
    File(PathBuf),
    /// PEM text in an environment variable.
    Env(String),
    /// PEM printed on stdout by a program run without a shell.
    Command(Vec<String>),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "key file {}", path.display()),
            Self::Env(name) => write!(f, "environment variable {name}"),
            Self::Command(argv) => write!(f, "key_command `{}`", argv.join(" ")),
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
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            allow_insecure_permissions: false,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// Why a key could not be loaded; every message names the source and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file does not exist.
    #[error(
        "{0} does not exist; make a key with `git-credential-codestorage keygen --org ORG` or point key_file at yours"
    )]
    NotFound(KeySource),
    /// The key file is a directory or another non-file.
    #[error("{0} is not a regular file")]
    NotAFile(KeySource),
    /// Group or others may access the key file.
    #[error("{origin} is accessible by others (mode {mode:03o}); run `chmod 600 {path}`, or set allow_insecure_key_permissions = true for a mounted secret", path = .path.display())]
    InsecurePermissions {
        /// The key source.
        origin: KeySource,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading the key failed.
    #[error("cannot read {origin}: {reason}")]
    Unreadable {
        /// The key source.
        origin: KeySource,
        /// The operating system's reason.
        reason: String,
    },
    /// The environment variable is unset or empty.
    #[error("{0} is not set or is empty; export the PEM text of the private key in it")]
    EnvMissing(KeySource),
    /// The key command could not be started.
    #[error("cannot run {origin}: {reason}")]
    CommandFailed {
        /// The key source.
        origin: KeySource,
        /// Why.
        reason: String,
    },
    /// The key command exited unsuccessfully.
    #[error("{origin} exited with {status}; run it by hand to see why")]
    CommandExit {
        /// The key source.
        origin: KeySource,
        /// Its exit status.
        status: String,
    },
    /// The key command ran too long.
    #[error("{origin} did not finish within {}s and was stopped; check that it does not wait for input", .timeout.as_secs())]
    CommandTimeout {
        /// The key source.
        origin: KeySource,
        /// The limit it ran into.
        timeout: Duration,
    },
    /// The source holds no PEM private key.
    #[error("{0} holds no PEM private key (expected a `-----BEGIN PRIVATE KEY-----` block)")]
    NotPem(KeySource),
    /// The source holds a public key only.
    #[error(
        "{0} holds a public key; the helper needs the private key (register the public key with Code Storage, keep the private one here)"
    )]
    PublicKeyOnly(KeySource),
    /// The key is encrypted with a passphrase.
    #[error(
        "{0} is encrypted; the helper cannot prompt for a passphrase: decrypt it with `openssl pkey -in KEY -out KEY.pem` and keep that file at mode 600, or print it from key_command"
    )]
    Encrypted(KeySource),
    /// An OpenSSH-format key.
    #[error(
        "{0} is an OpenSSH key; convert it with `ssh-keygen -p -m PKCS8 -f KEY` (or make a new one with `git-credential-codestorage keygen`)"
    )]
    OpenSsh(KeySource),
    /// A key of a type Code Storage does not accept.
    #[error("{origin} is {kind}; {ACCEPTED}")]
    Unsupported {
        /// The key source.
        origin: KeySource,
        /// What it is, e.g. "an EC P-384 key".
        kind: String,
    },
    /// The key's inner structure is broken.
    #[error("{0} is not a valid private key (the PEM block is truncated or corrupt)")]
    Malformed(KeySource),
}

/// A private key ready for signing. The DER bytes are wiped when it is dropped.
pub struct SigningKey {
    algorithm: Algorithm,
    der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("der", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// The algorithm tokens signed with this key use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key as DER: PKCS#8 for every type, or PKCS#1 for an RSA key that came as such.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The public half as an SPKI `PUBLIC KEY` PEM block, the form Code Storage registers.
    pub fn public_key_pem(&self, source: &KeySource) -> Result<String, KeyError> {
        let malformed = || KeyError::Malformed(source.clone());
        let (algorithm_id, public) = match self.algorithm {
            Algorithm::Es256 => {
                let pair = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &self.der,
                    &SystemRandom::new(),
                )
                .map_err(|_| malformed())?;
                let id = der::sequence(&[
                    &der::element(der::OID, oid::EC_PUBLIC_KEY),
                    &der::element(der::OID, oid::P256),
                ]);
                (id, pair.public_key().as_ref().to_vec())
            }
            Algorithm::EdDsa => {
                let pair = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.der)
                    .map_err(|_| malformed())?;
                let id = der::sequence(&[&der::element(der::OID, oid::ED25519)]);
                (id, pair.public_key().as_ref().to_vec())
            }
            Algorithm::Rs256 => {
                let pair = signature::RsaKeyPair::from_pkcs8(&self.der)
                    .or_else(|_| signature::RsaKeyPair::from_der(&self.der))
                    .map_err(|_| malformed())?;
                let id = der::sequence(&[
                    &der::element(der::OID, oid::RSA_ENCRYPTION),
                    &der::element(der::NULL, &[]),
                ]);
                (id, pair.public_key().as_ref().to_vec())
            }
        };
        let bits = [&[0u8][..], &public].concat();
        let spki = der::sequence(&[&algorithm_id, &der::element(der::BIT_STRING, &bits)]);
        Ok(encode_pem(&pem::Pem::new("PUBLIC KEY", spki)))
    }
}

/// The key types `keygen` makes (ring cannot generate RSA keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKey {
    /// EC P-256, signing ES256: the type the official SDKs use.
    P256,
    /// Ed25519, signing EdDSA.
    Ed25519,
}

/// Makes a new private key with ring and returns it as PKCS#8 PEM text.
pub fn generate(kind: NewKey) -> Result<Zeroizing<String>, ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let document = match kind {
        NewKey::P256 => signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )?,
        NewKey::Ed25519 => signature::Ed25519KeyPair::generate_pkcs8(&rng)?,
    };
    let contents = Zeroizing::new(document.as_ref().to_vec());
    Ok(Zeroizing::new(encode_pem(&pem::Pem::new(
        "PRIVATE KEY",
        contents.to_vec(),
    ))))
}

/// PEM with Unix line endings (the `pem` crate writes CRLF by default), as OpenSSL writes it.
fn encode_pem(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Reads and parses the key from `source`.
pub fn load(
    source: &KeySource,
    env: &dyn Env,
    options: LoadOptions,
) -> Result<SigningKey, KeyError> {
    let text = read_source(source, env, options)?;
    parse_pem(&text, source)
}

fn read_source(
    source: &KeySource,
    env: &dyn Env,
    options: LoadOptions,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match source {
        KeySource::File(path) => read_file(source, path, options),
        KeySource::Env(name) => match env.var(name) {
            Some(text) if !text.trim().is_empty() => Ok(Zeroizing::new(text.into_bytes())),
            _ => Err(KeyError::EnvMissing(source.clone())),
        },
        KeySource::Command(argv) => run_command(source, argv, options.command_timeout),
    }
}

fn read_file(
    source: &KeySource,
    path: &Path,
    options: LoadOptions,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let unreadable = |e: std::io::Error| KeyError::Unreadable {
        origin: source.clone(),
        reason: e.to_string(),
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::NotFound(source.clone()));
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
            });
        }
    }
    #[cfg(not(unix))]
    let _ = options;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = Zeroizing::new(Vec::with_capacity(
        metadata.len().min(MAX_KEY_BYTES) as usize
    ));
    file.take(MAX_KEY_BYTES)
        .read_to_end(&mut text)
        .map_err(unreadable)?;
    Ok(text)
}

fn run_command(
    source: &KeySource,
    argv: &[String],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let failed = |reason: String| KeyError::CommandFailed {
        origin: source.clone(),
        reason,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| failed("the command is empty".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    // Read on a thread so that a program that prints more than a pipe holds cannot stall us.
    let (sender, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Zeroizing::new(Vec::new());
        let result = (&mut stdout).take(MAX_KEY_BYTES).read_to_end(&mut text);
        let _ = sender.send(result.map(|_| text));
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                // Reap it, so no zombie is left behind.
                let _ = child.wait();
                return Err(KeyError::CommandTimeout {
                    origin: source.clone(),
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    if !status.success() {
        return Err(KeyError::CommandExit {
            origin: source.clone(),
            status: status.to_string(),
        });
    }
    // A program can exit and leave a background process holding its stdout open (`cmd &`):
    // the output's end is bounded by the same deadline, or the helper would wait for ever.
    let left = deadline.saturating_duration_since(Instant::now());
    match output.recv_timeout(left.max(Duration::from_millis(100))) {
        Ok(result) => result.map_err(|e| failed(e.to_string())),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(failed(format!(
            "it exited, but a process it left in the background still held its output open after {}s; redirect that process's output",
            timeout.as_secs()
        ))),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(failed("reading its output failed".into()))
        }
    }
}

/// Parses PEM text into a signing key, naming `source` in any error.
pub fn parse_pem(text: &[u8], source: &KeySource) -> Result<SigningKey, KeyError> {
    let blocks = pem::parse_many(text).map_err(|_| KeyError::NotPem(source.clone()))?;
    let mut curve_from_parameters = None;
    let mut saw_public = false;
    for block in blocks {
        let encrypted = block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
        let tag = block.tag().to_owned();
        let contents = Zeroizing::new(block.into_contents());
        let key = match tag.as_str() {
            "EC PARAMETERS" => {
                curve_from_parameters = Reader::new(&contents)
                    .expect(der::OID)
                    .ok()
                    .map(<[u8]>::to_vec);
                continue;
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                saw_public = true;
                continue;
            }
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted(source.clone())),
            "OPENSSH PRIVATE KEY" => return Err(KeyError::OpenSsh(source.clone())),
            _ if encrypted => return Err(KeyError::Encrypted(source.clone())),
            "PRIVATE KEY" => from_pkcs8(contents, source),
            "EC PRIVATE KEY" => from_sec1(&contents, curve_from_parameters.as_deref(), source),
            "RSA PRIVATE KEY" => from_pkcs1(contents, source),
            _ => continue,
        };
        return key;
    }
    if saw_public {
        Err(KeyError::PublicKeyOnly(source.clone()))
    } else {
        Err(KeyError::NotPem(source.clone()))
    }
}

fn unsupported(source: &KeySource, kind: &str) -> KeyError {
    KeyError::Unsupported {
        origin: source.clone(),
        kind: kind.to_owned(),
    }
}

fn curve_name(curve: &[u8]) -> &'static str {
    match curve {
        c if c == oid::P384 => "an EC P-384 key",
        c if c == oid::P521 => "an EC P-521 key",
        c if c == oid::SECP256K1 => "an EC secp256k1 key",
        _ => "an EC key on an unknown curve",
    }
}

fn from_pkcs8(contents: Zeroizing<Vec<u8>>, source: &KeySource) -> Result<SigningKey, KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let algorithm = {
        let mut outer = Reader::new(&contents);
        let mut info = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
        info.expect(der::INTEGER).map_err(|_| malformed())?;
        let mut algorithm_id = Reader::new(info.expect(der::SEQUENCE).map_err(|_| malformed())?);
        match algorithm_id.expect(der::OID).map_err(|_| malformed())? {
            o if o == oid::RSA_ENCRYPTION => {
                let private = info.expect(der::OCTET_STRING).map_err(|_| malformed())?;
                check_rsa_size(private, source)?;
                Algorithm::Rs256
            }
            o if o == oid::EC_PUBLIC_KEY => match algorithm_id.expect(der::OID) {
                Ok(curve) if curve == oid::P256 => Algorithm::Es256,
                Ok(curve) => return Err(unsupported(source, curve_name(curve))),
                Err(_) => return Err(malformed()),
            },
            o if o == oid::ED25519 => Algorithm::EdDsa,
            o if o == oid::ED448 => return Err(unsupported(source, "an Ed448 key")),
            _ => return Err(unsupported(source, "a key of an unknown type")),
        }
    };
    Ok(SigningKey {
        algorithm,
        der: contents,
    })
}

// SEC1 (`EC PRIVATE KEY`) has no algorithm identifier of its own; ring reads it wrapped in PKCS#8.
fn from_sec1(
    contents: &[u8],
    curve_from_parameters: Option<&[u8]>,
    source: &KeySource,
) -> Result<SigningKey, KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let mut outer = Reader::new(contents);
    let mut key = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
    key.expect(der::INTEGER).map_err(|_| malformed())?;
    key.expect(der::OCTET_STRING).map_err(|_| malformed())?;
    let inline_curve = match key.optional(der::CONTEXT_0).map_err(|_| malformed())? {
        Some(parameters) => Some(
            Reader::new(parameters)
                .expect(der::OID)
                .map_err(|_| malformed())?,
        ),
        None => None,
    };
    match inline_curve.or(curve_from_parameters) {
        Some(curve) if curve == oid::P256 => {}
        Some(curve) => return Err(unsupported(source, curve_name(curve))),
        // Without parameters the curve is unknown; a P-256 key carries it in practice.
        None => return Err(malformed()),
    }
    let algorithm_id = der::sequence(&[
        &der::element(der::OID, oid::EC_PUBLIC_KEY),
        &der::element(der::OID, oid::P256),
    ]);
    let pkcs8 = der::sequence(&[
        &der::element(der::INTEGER, &[0]),
        &algorithm_id,
        &der::element(der::OCTET_STRING, contents),
    ]);
    Ok(SigningKey {
        algorithm: Algorithm::Es256,
        der: Zeroizing::new(pkcs8),
    })
}

fn from_pkcs1(contents: Zeroizing<Vec<u8>>, source: &KeySource) -> Result<SigningKey, KeyError> {
    check_rsa_size(&contents, source)?;
    Ok(SigningKey {
        algorithm: Algorithm::Rs256,
        der: contents,
    })
}

// RSAPrivateKey ::= SEQUENCE { version, modulus, ... }: refuse short keys with their size named.
fn check_rsa_size(rsa_private_key: &[u8], source: &KeySource) -> Result<(), KeyError> {
    let malformed = || KeyError::Malformed(source.clone());
    let mut outer = Reader::new(rsa_private_key);
    let mut key = Reader::new(outer.expect(der::SEQUENCE).map_err(|_| malformed())?);
    key.expect(der::INTEGER).map_err(|_| malformed())?;
    let bits = der::integer_bits(key.expect(der::INTEGER).map_err(|_| malformed())?);
    if bits < 2048 {
        return Err(unsupported(source, &format!("a {bits}-bit RSA key")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(&path).unwrap()
    }

    fn source() -> KeySource {
        KeySource::Env("TEST_KEY".into())
    }

    fn parse(name: &str) -> Result<SigningKey, KeyError> {
        parse_pem(&fixture(name), &source())
    }

    #[test]
    fn reads_every_accepted_format() {
        assert_eq!(
            parse("rsa2048.pkcs8.pem").unwrap().algorithm(),
            Algorithm::Rs256
        );
        assert_eq!(
            parse("rsa2048.pkcs1.pem").unwrap().algorithm(),
            Algorithm::Rs256
        );
        assert_eq!(
            parse("rsa4096.pkcs8.pem").unwrap().algorithm(),
            Algorithm::Rs256
        );
        assert_eq!(
            parse("p256.sec1.pem").unwrap().algorithm(),
            Algorithm::Es256
        );
        assert_eq!(
            parse("p256.sec1-params.pem").unwrap().algorithm(),
            Algorithm::Es256
        );
        assert_eq!(
            parse("ed25519.openssl.pem").unwrap().algorithm(),
            Algorithm::EdDsa
        );
        let generated = generate(NewKey::P256).unwrap();
        assert_eq!(
            parse_pem(generated.as_bytes(), &source())
                .unwrap()
                .algorithm(),
            Algorithm::Es256
        );
    }

    #[test]
    fn public_key_matches_what_openssl_derived() {
        for (private, public) in [
            ("p256.sec1-params.pem", "p256.pub.pem"),
            ("rsa2048.pkcs8.pem", "rsa2048.pub.pem"),
            ("rsa2048.pkcs1.pem", "rsa2048.pub.pem"),
            ("ed25519.openssl.pem", "ed25519.openssl.pub.pem"),
        ] {
            let ours = parse(private).unwrap().public_key_pem(&source()).unwrap();
            let theirs = String::from_utf8(fixture(public)).unwrap();
            assert_eq!(
                pem::parse(ours).unwrap().contents(),
                pem::parse(theirs).unwrap().contents(),
                "{private}"
            );
        }
    }

    #[test]
    fn refuses_other_key_types_saying_what_is_accepted() {
        let message = parse("p384.pkcs8.pem").unwrap_err().to_string();
        assert!(
            message.contains("P-384") && message.contains(ACCEPTED),
            "{message}"
        );
        let message = parse("rsa1024.pkcs8.pem").unwrap_err().to_string();
        assert!(message.contains("1024-bit RSA"), "{message}");
        assert!(matches!(
            parse("p256.encrypted.pem"),
            Err(KeyError::Encrypted(_))
        ));
        assert!(matches!(
            parse("p256.pub.pem"),
            Err(KeyError::PublicKeyOnly(_))
        ));
        let openssh =
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        assert!(matches!(
            parse_pem(openssh, &source()),
            Err(KeyError::OpenSsh(_))
        ));
    }

    #[test]
    fn truncated_or_garbage_pem_is_an_error_not_a_panic() {
        let text = fixture("rsa2048.pkcs8.pem");
        let cut = &text[..text.len() / 2];
        assert!(parse_pem(cut, &source()).is_err());
        assert!(matches!(
            parse_pem(b"hello", &source()),
            Err(KeyError::NotPem(_))
        ));
        let bad = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            parse_pem(bad, &source()),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = parse("p256.sec1.pem").unwrap();
        assert_eq!(
            format!("{key:?}"),
            "SigningKey { algorithm: Es256, der: \"<redacted>\" }"
        );
    }

    #[test]
    fn env_source_reads_the_variable() {
        let text = String::from_utf8(fixture("p256.sec1.pem")).unwrap();
        let env = MapEnv::from([("TEST_KEY", text.as_str())]);
        assert!(load(&source(), &env, LoadOptions::default()).is_ok());
        let empty = MapEnv::default();
        assert!(matches!(
            load(&source(), &empty, LoadOptions::default()),
            Err(KeyError::EnvMissing(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn file_source_checks_existence_type_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let file = KeySource::File(path.clone());
        let env = MapEnv::default();
        let strict = LoadOptions::default();
        assert!(matches!(
            load(&file, &env, strict),
            Err(KeyError::NotFound(_))
        ));
        std::fs::write(&path, fixture("p256.sec1.pem")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = load(&file, &env, strict).unwrap_err().to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
        let lenient = LoadOptions {
            allow_insecure_permissions: true,
            ..strict
        };
        assert!(load(&file, &env, lenient).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&file, &env, strict).is_ok());
        let directory = KeySource::File(dir.path().to_owned());
        assert!(matches!(
            load(&directory, &env, strict),
            Err(KeyError::NotAFile(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn command_source_handles_success_failure_and_hangs() {
        let env = MapEnv::default();
        let key = String::from_utf8(fixture("p256.sec1.pem")).unwrap();
        let ok = KeySource::Command(vec!["printf".into(), "%s".into(), key]);
        assert!(load(&ok, &env, LoadOptions::default()).is_ok());
        let fails = KeySource::Command(vec!["false".into()]);
        assert!(matches!(
            load(&fails, &env, LoadOptions::default()),
            Err(KeyError::CommandExit { .. })
        ));
        let garbage = KeySource::Command(vec!["echo".into(), "not a key".into()]);
        assert!(matches!(
            load(&garbage, &env, LoadOptions::default()),
            Err(KeyError::NotPem(_))
        ));
        let missing = KeySource::Command(vec!["/nonexistent/program".into()]);
        assert!(matches!(
            load(&missing, &env, LoadOptions::default()),
            Err(KeyError::CommandFailed { .. })
        ));
        let hangs = KeySource::Command(vec!["sleep".into(), "30".into()]);
        let quick = LoadOptions {
            command_timeout: Duration::from_millis(200),
            ..LoadOptions::default()
        };
        let started = Instant::now();
        assert!(matches!(
            load(&hangs, &env, quick),
            Err(KeyError::CommandTimeout { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
