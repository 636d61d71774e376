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

/// A kept-running signer (`sign_persistent = true`) in Python around `openssl dgst`: it greets
/// with `{"v":[1]}`, then answers each request line with the base64 DER signature of its input
/// by the key at `key`. It appends `start` to `log` when it starts and `sign` per signature.
/// `mode` makes it misbehave: `hang` (greets, never answers), `garbage` (answers a non-JSON
/// line), `refuse` (answers an error), `exit` (exits before greeting), `crash-once` (the first
/// process to get a second request exits instead of answering it).
pub fn persistent_signer(dir: &Path, key: &Path, mode: &str, log: &Path) -> Vec<String> {
    let program = dir.join("persistent-signer.py");
    std::fs::write(&program, PERSISTENT_SIGNER).unwrap();
    set_mode(&program, 0o755);
    [program.as_path(), key, Path::new(mode), log]
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect()
}

const PERSISTENT_SIGNER: &str = r#"#!/usr/bin/env python3
import base64, json, os, subprocess, sys, time

key, mode, log = sys.argv[1:4]

def note(word):
    with open(log, "a") as f:
        f.write(word + "\n")

note("start")
if mode == "exit":
    sys.exit(2)
print(json.dumps({"v": [1]}), flush=True)
count = 0
for line in sys.stdin:
    count += 1
    note("request")
    request = json.loads(line)
    if mode == "hang" or (mode.startswith("hang-after-") and count > int(mode[11:])):
        time.sleep(3600)
    if mode == "garbage":
        print("MEUCIQ this is not json", flush=True)
        continue
    if mode == "refuse":
        print(json.dumps({"error": "AccessDeniedException: not allowed to kms:Sign"}), flush=True)
        continue
    if mode == "crash-once" and count == 2 and "crash" not in open(log).read():
        note("crash")
        sys.exit(3)
    data = request["input"]
    data = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                         input=data, capture_output=True, check=True).stdout
    note("sign")
    print(json.dumps({"signature": base64.b64encode(der).decode()}), flush=True)
"#;
