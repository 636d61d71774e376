//! `keygen`: a new signing key for an organisation, written where only its owner can read it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::key::{self, KeySource, NewKey};

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
pub fn default_path(org: &str) -> Result<PathBuf, Error> {
    crate::config::default_key_dir()
        .map(|dir| dir.join(format!("{org}.pem")))
        .ok_or_else(|| Error::msg("cannot find the home directory; pass --out PATH"))
}

/// Makes a key of `kind` and writes it as PKCS#8 PEM to `path` with mode 0600. An existing file
/// is replaced only with `force`: a key that is still registered must not vanish by accident.
pub fn keygen(kind: NewKey, path: &Path, force: bool) -> Result<Generated, Error> {
    let shown = path.display();
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::msg(format!(
            "{shown} already exists; keygen never overwrites a key (its public half may be registered): pass --force to replace it, or print its public key with `openssl pkey -in {shown} -pubout`"
        )));
    }
    let pem = key::generate(kind)
        .map_err(|_| Error::msg("the system random number generator failed; try again"))?;
    // Derived from the text just made, exactly as `get` will read it back.
    let source = KeySource::File(path.to_owned());
    let public = key::PublicKey::from_pem(pem.expose().as_bytes(), &source)
        .map_err(|e| key_error(path, e))?;
    let public_pem = public.to_pem();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .map_err(|e| Error::msg(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_private(path, pem.expose().as_bytes(), force)
        .map_err(|e| Error::msg(format!("cannot write {shown}: {e}")))?;
    Ok(Generated {
        path: path.to_owned(),
        public_pem,
        algorithm: public.algorithm(),
    })
}

// A key ring just made cannot fail to parse; if it ever does, say so plainly.
fn key_error(path: &Path, source: key::KeyError) -> Error {
    Error::msg(format!(
        "the new key for {} is unusable: {source}",
        path.display()
    ))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the file with mode 0600 from the start (never readable by others, even briefly); with
/// `replace`, writes beside it and renames over, so a failure leaves the old key intact.
fn write_private(path: &Path, contents: &[u8], replace: bool) -> std::io::Result<()> {
    let target = if replace {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".new-{}", std::process::id()));
        path.with_file_name(name)
    } else {
        path.to_owned()
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&target).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if replace {
        if let Err(e) = written.and_then(|()| std::fs::rename(&target, path)) {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
        return Ok(());
    }
    written
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
        let loaded = key::load(&source, &MapEnv::default(), LoadOptions::default()).unwrap();
        assert_eq!(
            crate::signer::Signer::public_key(&loaded).to_pem(),
            made.public_pem
        );

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
    fn organisation_names_are_safe_file_names() {
        assert!(valid_org_name("acme") && valid_org_name("acme-2") && valid_org_name("a.b_c"));
        for bad in ["", ".hidden", "../x", "a/b", "a b", "é"] {
            assert!(!valid_org_name(bad), "{bad}");
        }
    }
}
