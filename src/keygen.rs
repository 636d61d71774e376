//! `keygen`: a new signing key for an organisation, written where only its owner can read it.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use zeroize::Zeroizing;

use crate::der::{self, Reader};
use crate::fs::{self, Overwrite};
use crate::gitconfig::shell_quote;
use crate::key::{self, KeyError, KeySource, NewKey};

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
        /// What reading it back said.
        source: KeyError,
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
}

/// Whether `name` can be an organisation name and a file name: letters, digits, `-`, `_`, `.`,
/// not starting with a dot (Code Storage names are DNS labels, which is stricter still).
pub fn valid_org_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The default key file for `org`: `<config dir>/codestorage/<org>.pem`.
pub fn default_path(org: &str) -> Result<PathBuf, KeygenError> {
    crate::config::default_key_dir()
        .map(|dir| dir.join(format!("{org}.pem")))
        .ok_or(KeygenError::NoHome)
}

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
        source,
    };
    let pem = private_pem(kind)?.ok_or_else(|| unusable(KeyError::Malformed(source.clone())))?;
    let signing = key::parse_pem(pem.as_bytes(), &source).map_err(unusable)?;
    let public_pem = signing.public_key_pem(&source).map_err(unusable)?;
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
    fs::write_atomic(path, pem.as_bytes(), 0o600, overwrite).map_err(|source| {
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
        algorithm: signing.algorithm(),
    })
}

/// What to do after `keygen`, with the real organisation, key path and `program` (this
/// binary as the user can run it: its name if PATH finds it, else its absolute path).
pub fn next_steps(org: &str, made: &Generated, program: &str) -> String {
    format!(
        "wrote the private key to {} ({}, mode 600)\nnext: register the public key above in the Code Storage admin panel (public keys) of organisation {org}, then run:\n  {program} setup --org {org} --key-file {}",
        made.path.display(),
        made.algorithm,
        shell_quote(&made.path.to_string_lossy()),
    )
}

/// A new private key as PKCS#8 PEM, in the form OpenSSL writes for its type; `None` if ring's
/// document is not the shape it has always had.
fn private_pem(kind: NewKey) -> Result<Option<Zeroizing<String>>, KeygenError> {
    match kind {
        // ring's P-256 document is PKCS#8 v1 already, as OpenSSL writes it.
        NewKey::P256 => key::generate(kind)
            .map(Some)
            .map_err(|_| KeygenError::Random),
        NewKey::Ed25519 => {
            let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| KeygenError::Random)?;
            let Some(der) = ed25519_v1(document.as_ref()) else {
                return Ok(None);
            };
            let block = pem::Pem::new("PRIVATE KEY", der.to_vec());
            let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            Ok(Some(Zeroizing::new(pem::encode_config(&block, config))))
        }
    }
}

/// `SEQUENCE { INTEGER 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING (32 bytes) } }`
/// up to the seed: RFC 8410's v1 private key, as `openssl genpkey -algorithm ED25519` writes it.
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Rewrites ring's PKCS#8 v2 Ed25519 document (version 1, public key appended), which OpenSSL 3,
/// Node and Python's `cryptography` refuse, as the v1 form every one of them reads.
fn ed25519_v1(v2: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let mut outer = Reader::new(v2);
    let mut info = Reader::new(outer.expect(der::SEQUENCE).ok()?);
    info.expect(der::INTEGER).ok()?;
    let mut algorithm = Reader::new(info.expect(der::SEQUENCE).ok()?);
    if algorithm.expect(der::OID).ok()? != der::oid::ED25519 {
        return None;
    }
    let wrapped = info.expect(der::OCTET_STRING).ok()?;
    let seed = Reader::new(wrapped).expect(der::OCTET_STRING).ok()?;
    if seed.len() != 32 {
        return None;
    }
    let mut v1 = Zeroizing::new(Vec::with_capacity(ED25519_V1_PREFIX.len() + seed.len()));
    v1.extend_from_slice(&ED25519_V1_PREFIX);
    v1.extend_from_slice(seed);
    Some(v1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;
    use crate::key::LoadOptions;
    use ring::signature::KeyPair;

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
        let loaded = key::load(&source, &MapEnv::default(), LoadOptions::default()).unwrap();
        assert_eq!(loaded.public_key_pem(&source).unwrap(), made.public_pem);

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
    fn ed25519_keys_are_pkcs8_v1_and_sign_as_ring_made_them() {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let v1 = ed25519_v1(document.as_ref()).unwrap();
        assert_eq!(v1.len(), 48);
        // Version 0, and nothing after the private key: no public key field.
        let mut outer = Reader::new(&v1);
        let mut info = Reader::new(outer.expect(der::SEQUENCE).unwrap());
        assert_eq!(info.expect(der::INTEGER).unwrap(), [0]);
        info.expect(der::SEQUENCE).unwrap();
        info.expect(der::OCTET_STRING).unwrap();
        assert!(info.is_empty() && outer.is_empty());
        let ours = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1).unwrap();
        let ring = Ed25519KeyPair::from_pkcs8(document.as_ref()).unwrap();
        assert_eq!(ours.public_key().as_ref(), ring.public_key().as_ref());
        assert_eq!(ours.sign(b"m").as_ref(), ring.sign(b"m").as_ref());
        // The OpenSSL-made fixture has exactly this layout.
        let fixture = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ed25519.openssl.pem"),
        )
        .unwrap();
        let fixture = pem::parse(fixture).unwrap();
        assert_eq!(fixture.contents()[..16], ED25519_V1_PREFIX);
        assert_eq!(
            ed25519_v1(fixture.contents()).unwrap().as_slice(),
            fixture.contents(),
            "a v1 key comes out as it went in"
        );
        assert!(ed25519_v1(b"\x30\x00").is_none());
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

    #[test]
    fn organisation_names_are_safe_file_names() {
        assert!(valid_org_name("acme") && valid_org_name("acme-2") && valid_org_name("a.b_c"));
        for bad in ["", ".hidden", "../x", "a/b", "a b", "é"] {
            assert!(!valid_org_name(bad), "{bad}");
        }
    }
}
