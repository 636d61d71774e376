//! Keys and signer programs for the tests of keys that never touch the helper's disk: key files
//! written only to be loaded into an agent and deleted, public keys derived by OpenSSH or
//! OpenSSL (not this crate), and small shell scripts standing in for a KMS or an HSM tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::home::set_mode;
use super::ssh_agent::SshAgent;

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
        .unwrap_or_else(|e| panic!("{program} could not be run ({e}); it is needed by this test"));
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

/// The fingerprint `ssh-add -l -E sha256` lists for the key whose comment is `comment`.
pub fn listed_fingerprint(agent: &SshAgent, comment: &str) -> String {
    let listed = agent.listed();
    listed
        .lines()
        .find(|line| line.split_whitespace().nth(2).is_some_and(|c| c == comment))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no key {comment:?} in the agent: {listed}"))
        .to_owned()
}

/// Loads a private key file into `agent` with `ssh-add`, then deletes the file: from then on the
/// key exists only in the agent.
pub fn add_and_delete(agent: &SshAgent, private: &Path) {
    agent.add(&[], private.to_str().unwrap(), b"");
    std::fs::remove_file(private).unwrap();
    assert!(!private.exists());
}
