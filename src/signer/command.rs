//! An external signer (`sign_command` with `public_key_file`): a program given the JWS signing
//! input on stdin prints the signature on stdout, as a cloud KMS CLI, Vault's transit engine or
//! `pkcs11-tool` can. The program is run without a shell and bounded in time like a
//! `key_command`; whatever it prints is decoded ([`crate::signature::decode`]) and verified
//! with the public key before a token is made, so a broken signer is a clear error, not a 401.

use std::path::PathBuf;
use std::time::Duration;

use crate::key::{self, Algorithm, KeyError, KeySource, PublicKey, SignCommandSource};
use crate::process::ProcessError;
use crate::signature;
use crate::signer::{SignError, Signer};

/// The most output read from the signer; [`signature::decode`] refuses anything near it.
const MAX_OUTPUT: u64 = 64 * 1024;

/// The hint after a timeout: the limit is the key_command one, and it can be raised.
pub fn timeout_hint(reason: &ProcessError) -> &'static str {
    match reason {
        ProcessError::Timeout(_) => {
            "; if it needs longer (a touch on a token, a slow KMS), raise CODESTORAGE_KEY_COMMAND_TIMEOUT (e.g. 30s)"
        }
        _ => "",
    }
}

/// A program that signs, and the public key its signatures must verify with.
#[derive(Debug)]
pub struct CommandSigner {
    argv: Vec<String>,
    named: String,
    public_key_file: PathBuf,
    public: PublicKey,
    signature_len: usize,
    timeout: Duration,
}

impl CommandSigner {
    /// Reads `public_key_file` (which decides the algorithm); the program runs only to sign.
    pub fn new(
        source: &KeySource,
        signer: &SignCommandSource,
        timeout: Duration,
    ) -> Result<Self, KeyError> {
        let info = key::read_public_key_file(&signer.public_key_file, source)?;
        let public = PublicKey::from_spki(info.spki_der(), source)?;
        Ok(Self {
            argv: signer.argv.clone(),
            named: source.to_string(),
            public_key_file: signer.public_key_file.clone(),
            signature_len: info.signature_len(),
            public,
            timeout,
        })
    }
}

impl Signer for CommandSigner {
    fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let output = crate::process::run(&self.argv, Some(signing_input), self.timeout, MAX_OUTPUT)
            .map_err(|reason| SignError::Command {
                command: self.named.clone(),
                reason,
            })?;
        let signature = signature::decode(self.algorithm(), self.signature_len, output.expose())
            .map_err(|reason| SignError::Output {
                command: self.named.clone(),
                reason,
            })?;
        self.public
            .verify(signing_input, &signature)
            .map_err(|_| SignError::Mismatch {
                command: self.named.clone(),
                algorithm: self.algorithm(),
                public_key_file: self.public_key_file.clone(),
            })?;
        Ok(signature)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::key::NewKey;
    use crate::signer::local::LocalSigner;

    const INPUT: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhY21lIn0";

    /// A key of `kind`, its public half written to a file, and a sign_command that prints
    /// `output` whatever it is asked to sign.
    fn signer_printing(kind: NewKey, output: &[u8]) -> (tempfile::TempDir, CommandSigner) {
        let dir = tempfile::tempdir().unwrap();
        let pem = crate::key::generate(kind).unwrap();
        let source = KeySource::Env("K".into());
        let local = LocalSigner::new(
            crate::key::parse_pem(pem.expose().as_bytes(), &source).unwrap(),
            &source,
        )
        .unwrap();
        let public = dir.path().join("k.pub.pem");
        std::fs::write(&public, local.public_key().to_pem()).unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, output).unwrap();
        let argv = vec!["cat".to_owned(), out.to_string_lossy().into_owned()];
        let source = KeySource::sign_command(argv, public);
        let KeySource::SignCommand(config) = &source else {
            unreachable!()
        };
        let signer = CommandSigner::new(&source, config, Duration::from_secs(10)).unwrap();
        (dir, signer)
    }

    #[test]
    fn the_algorithm_comes_from_the_public_key() {
        let (_dir, signer) = signer_printing(NewKey::Ed25519, b"");
        assert_eq!(signer.algorithm(), Algorithm::EdDsa);
        let (_dir, signer) = signer_printing(NewKey::P256, b"");
        assert_eq!(signer.algorithm(), Algorithm::Es256);
    }

    #[test]
    fn a_well_formed_signature_by_another_key_is_refused() {
        // 64 bytes of r||s that no key signed: decodes fine, must not verify.
        let (_dir, signer) = signer_printing(NewKey::P256, &[7u8; 64]);
        let error = signer.sign(INPUT).unwrap_err();
        assert!(matches!(error, SignError::Mismatch { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("does not verify with public_key_file")
                && message.contains("no token was given to git"),
            "{message}"
        );
    }

    #[test]
    fn garbage_and_nothing_are_output_errors() {
        let (_dir, signer) = signer_printing(NewKey::Ed25519, b"hello, world\n");
        let error = signer.sign(INPUT).unwrap_err();
        assert!(matches!(error, SignError::Output { .. }), "{error}");
        assert!(
            error.to_string().starts_with("sign_command `cat "),
            "{error}"
        );
        let (_dir, signer) = signer_printing(NewKey::Ed25519, b"");
        let error = signer.sign(INPUT).unwrap_err();
        assert!(
            error.to_string().contains("printed no signature"),
            "{error}"
        );
    }

    #[test]
    fn a_public_key_file_that_holds_a_private_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, crate::key::generate(NewKey::P256).unwrap().expose()).unwrap();
        let source = KeySource::sign_command(vec!["true".to_owned()], path);
        let KeySource::SignCommand(config) = &source else {
            unreachable!()
        };
        let error = CommandSigner::new(&source, config, Duration::from_secs(1)).unwrap_err();
        assert!(
            error.to_string().contains("private key, not a public one"),
            "{error}"
        );
    }

    #[test]
    fn only_timeouts_get_the_timeout_hint() {
        assert!(timeout_hint(&ProcessError::Timeout(Duration::from_secs(1))).contains("TIMEOUT"));
        assert_eq!(timeout_hint(&ProcessError::Empty), "");
    }
}
