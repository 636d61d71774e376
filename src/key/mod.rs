//! Keys: where they come from ([`source`]), the formats private keys are read in ([`pem`]), a
//! private key loaded into ring ([`pair`]), public halves ([`public`]) and new keys
//! ([`mod@generate`]). Turning a source into something that signs is [`crate::signer::open`]'s job.

pub mod generate;
pub mod pair;
pub mod pem;
pub mod public;
pub mod source;

use std::path::{Path, PathBuf};

pub use generate::{NewKey, generate, generate_pkcs8};
pub use pair::KeyPair;
pub use pem::{PrivateKey, parse_pem};
pub use public::{PublicKey, read_public_key_file};
pub use source::{
    AgentKeyId, AgentSource, DEFAULT_COMMAND_TIMEOUT, KeySource, LoadOptions, SignCommandSource,
};

pub use crate::alg::{ACCEPTED, Algorithm};

use crate::fs::ReadError;
use crate::shell::quote as shell_quote;
use crate::sshagent::{AgentError, PublicKeyError};

/// PEM with Unix line endings (the `pem` crate writes CRLF by default), as OpenSSL writes it.
fn encode_pem(block: &::pem::Pem) -> String {
    ::pem::encode_config(
        block,
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// A key file or public key file another user could change or swap.
#[derive(Debug, thiserror::Error)]
#[error(
    "{origin}: {} {problem}, so another user could swap the key; {}, or for a mounted secret {allow}",
    .path.display(),
    .problem.fix()
)]
pub struct UntrustedKey {
    /// The key source.
    pub origin: KeySource,
    /// The key file or public key file.
    pub path: PathBuf,
    /// Who else could change it.
    pub problem: crate::fs::Untrusted,
    /// How to accept it anyway, where the key was named.
    pub allow: &'static str,
}

/// Why a key could not be loaded; every message names the source and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file does not exist.
    #[error(
        "{origin} does not exist; make a key there with `{}` or point key_file at yours",
        keygen_command(.org.as_deref(), .origin)
    )]
    NotFound {
        /// The key source.
        origin: KeySource,
        /// The organisation, once known: the fix names it.
        org: Option<String>,
    },
    /// The key file is a directory or another non-file.
    #[error("{0} is not a regular file")]
    NotAFile(KeySource),
    /// Group or others may access the key file.
    #[error("{origin} is accessible by others (mode {mode:03o}); run `chmod 600 {path}`, or for a mounted secret {allow}", path = shell_quote(&.path.to_string_lossy()))]
    InsecurePermissions {
        /// The key source.
        origin: KeySource,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// How to accept it anyway, where the key was named.
        allow: &'static str,
    },
    /// Another user could change or swap a file the key comes from (key file or public key);
    /// boxed to keep every key error small.
    #[error(transparent)]
    Untrusted(Box<UntrustedKey>),
    /// Reading the key failed.
    #[error("cannot read {origin}: {reason}")]
    Unreadable {
        /// The key source.
        origin: KeySource,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// The environment variable is unset or empty.
    #[error("{0} is not set or is empty; export the PEM text of the private key in it")]
    EnvMissing(KeySource),
    /// The key command failed, hung or could not be started.
    #[error("cannot run {origin}: {reason}")]
    Command {
        /// The key source.
        origin: KeySource,
        /// Why.
        reason: crate::process::ProcessError,
    },
    /// The source holds no PEM private key.
    #[error("{0} holds no PEM private key (expected a `-----BEGIN PRIVATE KEY-----` block)")]
    NotPem(KeySource),
    /// The source holds more than one private key: which one Code Storage knows cannot be told.
    #[error(
        "{origin} holds {count} private keys, and which one is registered with Code Storage cannot be told; keep exactly one `-----BEGIN ... PRIVATE KEY-----` block in it"
    )]
    SeveralKeys {
        /// The key source.
        origin: KeySource,
        /// How many private key blocks it holds.
        count: usize,
    },
    /// The source holds a public key only.
    #[error(
        "{0} holds a public key; the helper needs the private key (register the public key with Code Storage, keep the private one here)"
    )]
    PublicKeyOnly(KeySource),
    /// The key is encrypted with a passphrase.
    #[error(
        "{0} is encrypted; the helper cannot prompt for a passphrase: {fix}, or print it from key_command",
        fix = decrypt_fix(.0)
    )]
    Encrypted(KeySource),
    /// An OpenSSH-format key.
    #[error(
        "{origin} is an OpenSSH key; convert it with `ssh-keygen -p -m PKCS8 -f {}` (or make a new one with `{}`)",
        .origin.file().map_or_else(|| "FILE".to_owned(), |p| shell_quote(&p.to_string_lossy())),
        keygen_command(.org.as_deref(), &KeySource::Env(String::new()))
    )]
    OpenSsh {
        /// The key source.
        origin: KeySource,
        /// The organisation, once known: the fix names it.
        org: Option<String>,
    },
    /// A key of a type Code Storage does not accept.
    #[error("{origin} is {kind}; {ACCEPTED}")]
    Unsupported {
        /// The key source.
        origin: KeySource,
        /// What it is, e.g. "an EC P-384 key".
        kind: String,
    },
    /// A BEGIN line without its END: cut short when copied.
    #[error(
        "{0} holds a truncated PEM block (a BEGIN line without its END line); copy the whole key, from -----BEGIN to -----END-----"
    )]
    Truncated(KeySource),
    /// The key's inner structure is broken.
    #[error("{0} is not a valid private key (the PEM block is truncated or corrupt)")]
    Malformed(KeySource),
    /// A key that signs elsewhere (an agent, a sign_command) was asked for PEM text.
    #[error("{0} holds no private key to read: it signs where the key lives")]
    NotReadable(KeySource),
    /// The ssh-agent cannot be reached, or does not hold a usable key.
    #[error("{origin}: {reason}{}", crate::sshagent::socket_note(socket.as_deref(), reason))]
    Agent {
        /// The key source.
        origin: KeySource,
        /// The agent's socket, once known.
        socket: Option<PathBuf>,
        /// What the agent (or its absence) said; boxed to keep every key error small.
        reason: Box<AgentError>,
    },
    /// The public key file of `key_agent` or `sign_command` does not exist.
    #[error(
        "{origin}: the public key file {} does not exist; write the key's public half there (`ssh-keygen -y -f KEY > {public}`, `ssh-add -L > {public}` keeping the key's line, or `openssl pkey -in KEY -pubout > {public}`)",
        .path.display(),
        public = shell_quote(&.path.to_string_lossy())
    )]
    PublicKeyMissing {
        /// The key source.
        origin: KeySource,
        /// The file.
        path: PathBuf,
    },
    /// The public key file cannot be read.
    #[error("{origin}: cannot read the public key file {}: {reason}", .path.display())]
    PublicKeyUnreadable {
        /// The key source.
        origin: KeySource,
        /// The file.
        path: PathBuf,
        /// Why; boxed to keep every key error small.
        reason: Box<ReadError>,
    },
    /// The public key file holds no usable public key.
    #[error("{origin}: {}: {reason}{}", .path.display(), .reason.fix(.path).map(|fix| format!(": {fix}")).unwrap_or_default())]
    PublicKey {
        /// The key source.
        origin: KeySource,
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what to give instead; boxed to keep every key error small.
        reason: Box<PublicKeyError>,
    },
}

impl KeyError {
    /// The same error, its fix naming `org` (`keygen --org acme`): sources know no organisation,
    /// whoever loads a key for one does.
    pub fn for_org(self, org: &str) -> Self {
        match self {
            Self::NotFound { origin, org: None } => Self::NotFound {
                origin,
                org: Some(org.to_owned()),
            },
            Self::OpenSsh { origin, org: None } => Self::OpenSsh {
                origin,
                org: Some(org.to_owned()),
            },
            other => other,
        }
    }
}

/// `keygen` making the key `origin` names, for `org` (`ORG` when no organisation is known):
/// `--out` only when the file is not where keygen puts it anyway.
fn keygen_command(org: Option<&str>, origin: &KeySource) -> String {
    let program = crate::gitconfig::BINARY_NAME;
    let name = org.unwrap_or("ORG");
    let out = origin.file().and_then(|path| match org {
        Some(org) => crate::paths::out_unless_default(org, path),
        None => Some(path.to_owned()),
    });
    match out {
        Some(path) => format!(
            "{program} keygen --org {name} --out {}",
            shell_quote(&path.to_string_lossy())
        ),
        None => format!("{program} keygen --org {name}"),
    }
}

/// Where to put the decrypted copy of the key file `path`: `acme.pem` → `acme.decrypted.pem`.
pub fn decrypted_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.decrypted.pem"))
}

/// How to get a passphrase-free copy of the encrypted key `origin` holds.
fn decrypt_fix(origin: &KeySource) -> String {
    match origin {
        KeySource::File(path) => format!(
            "decrypt a copy with `(umask 077; openssl pkey -in {} -out {})` and use that file",
            shell_quote(&path.to_string_lossy()),
            shell_quote(&decrypted_path(path).to_string_lossy())
        ),
        KeySource::Env(name) => format!(
            "`printf '%s\\n' \"${name}\" | openssl pkey` prints it decrypted; put that in {name}"
        ),
        KeySource::Command(argv) => format!(
            "`{} | openssl pkey` prints it decrypted; make key_command print that",
            argv.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        _ => "decrypt it with `openssl pkey`".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Env, MapEnv};
    use std::path::Path;
    #[cfg(unix)]
    use std::time::{Duration, Instant};

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(&path).unwrap()
    }

    fn source() -> KeySource {
        KeySource::Env("TEST_KEY".into())
    }

    /// What opening an in-process signer does with `source`: read it, parse it, let ring load it.
    fn load(source: &KeySource, env: &dyn Env, options: LoadOptions) -> Result<KeyPair, KeyError> {
        let text = source::read(source, env, options)?;
        KeyPair::new(&parse_pem(text.expose(), source)?, source)
    }

    fn parse(name: &str) -> Result<PrivateKey, KeyError> {
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
            parse_pem(generated.expose().as_bytes(), &source())
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
            let ours = PublicKey::from_pem(&fixture(private), &source())
                .unwrap()
                .to_pem();
            let theirs = String::from_utf8(fixture(public)).unwrap();
            assert_eq!(
                ::pem::parse(ours).unwrap().contents(),
                ::pem::parse(theirs).unwrap().contents(),
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
            Err(KeyError::OpenSsh { .. })
        ));
    }

    // Unix path fixtures (`/home/u/...`): on Windows they are not absolute and join with `\`.
    #[cfg(unix)]
    #[test]
    fn fixes_name_the_real_file_variable_command_and_organisation() {
        let file = KeySource::File(PathBuf::from("/keys/my acme.pem"));
        let missing = KeyError::NotFound {
            origin: file.clone(),
            org: None,
        };
        assert!(missing.to_string().contains("--org ORG"), "{missing}");
        let message = missing.for_org("acme").to_string();
        assert!(
            message.contains(
                "`git-credential-codestorage keygen --org acme --out '/keys/my acme.pem'`"
            ),
            "{message}"
        );
        let default = crate::paths::default_key_file("acme").unwrap();
        let message = KeyError::NotFound {
            origin: KeySource::File(default),
            org: None,
        }
        .for_org("acme")
        .to_string();
        assert!(
            message.contains("`git-credential-codestorage keygen --org acme`"),
            "keygen's default needs no --out: {message}"
        );
        let cases = [
            (
                KeyError::Encrypted(file.clone()),
                "`(umask 077; openssl pkey -in '/keys/my acme.pem' -out '/keys/my acme.decrypted.pem')`",
            ),
            (
                KeyError::Encrypted(KeySource::Env("ACME_KEY".into())),
                "`printf '%s\\n' \"$ACME_KEY\" | openssl pkey` prints it decrypted; put that in ACME_KEY",
            ),
            (
                KeyError::Encrypted(KeySource::Command(vec![
                    "op".into(),
                    "read".into(),
                    "op://v/k".into(),
                ])),
                "`op read op://v/k | openssl pkey`",
            ),
            (
                KeyError::OpenSsh {
                    origin: file.clone(),
                    org: None,
                }
                .for_org("acme"),
                "`ssh-keygen -p -m PKCS8 -f '/keys/my acme.pem'` (or make a new one with `git-credential-codestorage keygen --org acme`)",
            ),
        ];
        for (error, fix) in cases {
            let message = error.to_string();
            assert!(message.contains(fix), "{message}");
            assert!(
                !message.contains("ORG") && !message.contains(" KEY"),
                "a placeholder is left: {message}"
            );
        }
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
            "PrivateKey { algorithm: Es256, der: <redacted> }"
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
            Err(KeyError::NotFound { .. })
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
            Err(KeyError::Command {
                reason: crate::process::ProcessError::Exit(_),
                ..
            })
        ));
        let garbage = KeySource::Command(vec!["echo".into(), "not a key".into()]);
        assert!(matches!(
            load(&garbage, &env, LoadOptions::default()),
            Err(KeyError::NotPem(_))
        ));
        let missing = KeySource::Command(vec!["/nonexistent/program".into()]);
        assert!(matches!(
            load(&missing, &env, LoadOptions::default()),
            Err(KeyError::Command {
                reason: crate::process::ProcessError::Spawn { .. },
                ..
            })
        ));
        let hangs = KeySource::Command(vec!["sleep".into(), "30".into()]);
        let quick = LoadOptions {
            command_timeout: Duration::from_millis(200),
            ..LoadOptions::default()
        };
        let started = Instant::now();
        assert!(matches!(
            load(&hangs, &env, quick),
            Err(KeyError::Command {
                reason: crate::process::ProcessError::Timeout(_),
                ..
            })
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
