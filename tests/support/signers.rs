//! Keys and signer programs for the tests of keys that never touch the helper's disk: keys made
//! by OpenSSL with the public keys it derives (not this crate), and small shell scripts standing
//! in for a KMS or an HSM tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::home::set_mode;

/// A credential request for `host`, as git writes it with `useHttpPath`.
pub fn request(host: &str, path: &str) -> String {
    format!("protocol=https\nhost={host}\npath={path}\n\n")
}

/// Writes `body` as an executable `/bin/sh` script `name` in `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    set_mode(&path, 0o755);
    path
}

/// Runs `program args` and returns its stdout, failing the test unless it succeeds.
pub fn output(program: &str, args: &[&str]) -> String {
    let result = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| super::missing(program, e));
    assert!(result.status.success(), "{program} {args:?}: {result:?}");
    String::from_utf8(result.stdout).unwrap()
}

/// Makes a private key with `openssl genpkey` (`EC` P-256, `RSA` 2048 or `ED25519`) at `path`,
/// mode 0600, and returns the public key OpenSSL derives from it, as SPKI PEM.
pub fn openssl_key(path: &Path, kind: &str) -> String {
    let path_text = path.to_str().unwrap();
    let mut args = vec!["genpkey", "-algorithm", kind, "-out", path_text];
    match kind {
        "EC" => args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]),
        "RSA" => args.extend(["-pkeyopt", "rsa_keygen_bits:2048"]),
        _ => {}
    }
    output("openssl", &args);
    set_mode(path, 0o600);
    output("openssl", &["pkey", "-in", path_text, "-pubout"])
}
