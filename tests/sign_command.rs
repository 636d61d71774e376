//! `sign_command` with `public_key_file`: external signers (here OpenSSL, wrapped as a KMS or an
//! HSM tool would be) print signatures in the shapes such tools use; the helper decodes them,
//! checks them with the public key before answering git, and stops signers that hang or fail.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::emulator::Emulator;
use support::git::{User, new_git};
use support::home::{Home, Run};
use support::jwt::{TestKey, verify};
use support::signers::{openssl_key, output, request, script};

/// `get` for `<org>.code.storage` in `home`, with extra environment.
fn get(home: &Home, org: &str, env: &[(&str, &str)]) -> Run {
    home.get(request(&format!("{org}.code.storage"), "team/x.git"), env)
}

/// Fails the test unless `run` told git to stop, with no credential, saying each of `parts`.
fn assert_quit_saying(run: &Run, parts: &[&str]) {
    assert_eq!(run.stdout, "quit=1\n", "{run:?}");
    for part in parts {
        assert!(
            run.stderr.contains(part),
            "{part:?} missing: {}",
            run.stderr
        );
    }
}

/// A TOML array of strings.
fn toml_argv(argv: &[&str]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A P-256 key made by OpenSSL in `dir`, with its public key written beside it; returns the
/// private key's path and the public key.
fn p256(dir: &Path, name: &str) -> (String, TestKey) {
    let private = dir.join(format!("{name}.pem"));
    let public = openssl_key(&private, "EC");
    std::fs::write(dir.join(format!("{name}.pub.pem")), &public).unwrap();
    (
        private.to_str().unwrap().to_owned(),
        TestKey::from_pems(String::new(), public, "ES256"),
    )
}

#[test]
fn openssl_signers_printing_der_base64url_and_wrapped_base64_give_tokens_that_verify() {
    let home = Home::new();
    let dir = home.path().join("signers");
    std::fs::create_dir(&dir).unwrap();

    // ES256: `openssl dgst` prints a DER ECDSA-Sig-Value; run as is, no shell, no script.
    let (p256_key, p256_public) = p256(&dir, "p256");

    // EdDSA: OpenSSL 3.0's pkeyutl signs Ed25519 from a file only; the script prints base64url.
    let ed_key = dir.join("ed25519.pem");
    let ed_public = openssl_key(&ed_key, "ED25519");
    std::fs::write(dir.join("ed25519.pub.pem"), &ed_public).unwrap();
    let ed_signer = script(
        &dir,
        "sign-ed25519",
        &format!(
            "set -e\ninput=$(mktemp)\ntrap 'rm -f \"$input\"' EXIT\ncat > \"$input\"\nopenssl pkeyutl -sign -inkey {} -rawin -in \"$input\" | basenc --base64url -w0\n",
            ed_key.display()
        ),
    );

    // RS256: PKCS#1 v1.5 bytes as wrapped base64; its public key is an OpenSSH `.pub` line.
    let rsa_key = dir.join("rsa.pem");
    let rsa_public = openssl_key(&rsa_key, "RSA");
    let rsa_spki = dir.join("rsa.pub.pem");
    std::fs::write(&rsa_spki, &rsa_public).unwrap();
    let openssh = output(
        "ssh-keygen",
        &["-i", "-m", "PKCS8", "-f", rsa_spki.to_str().unwrap()],
    );
    assert!(openssh.starts_with("ssh-rsa "), "{openssh}");
    std::fs::write(dir.join("rsa.pub"), openssh).unwrap();
    let rsa_signer = script(
        &dir,
        "sign-rsa",
        &format!(
            "openssl dgst -sha256 -sign {} | openssl base64\n",
            rsa_key.display()
        ),
    );

    // Relative public key paths are relative to the config file.
    home.write_config(&format!(
        "[org.alpha]\nsign_command = {}\npublic_key_file = \"../../signers/p256.pub.pem\"\n\n[org.beta]\nsign_command = {}\npublic_key_file = \"{}\"\n\n[org.gamma]\nsign_command = {}\npublic_key_file = \"{}\"\n",
        toml_argv(&["openssl", "dgst", "-sha256", "-sign", &p256_key]),
        toml_argv(&[ed_signer.to_str().unwrap()]),
        dir.join("ed25519.pub.pem").display(),
        toml_argv(&[rsa_signer.to_str().unwrap()]),
        dir.join("rsa.pub").display(),
    ));
    let cases = [
        ("alpha", p256_public),
        (
            "beta",
            TestKey::from_pems(String::new(), ed_public, "EdDSA"),
        ),
        (
            "gamma",
            TestKey::from_pems(String::new(), rsa_public, "RS256"),
        ),
    ];
    for (org, public) in cases {
        let run = get(&home, org, &[]);
        assert_eq!(run.code, Some(0), "{run:?}");
        let token = run.password();
        let verified = verify(&token, &public);
        assert_eq!(verified.claims["iss"], org);
        assert_eq!(run.stderr, "", "{org}");
    }
}

#[test]
fn a_signature_by_another_key_or_garbage_is_refused_and_no_token_is_given() {
    let home = Home::new();
    let dir = home.path().join("signers");
    std::fs::create_dir(&dir).unwrap();
    let (_registered, _) = p256(&dir, "registered");
    let (other, _) = p256(&dir, "other");
    let garbage = script(&dir, "garbage", "cat > /dev/null\necho 'signed: ok'\n");
    home.write_config(&format!(
        "[org.wrong]\nsign_command = {}\npublic_key_file = \"{}\"\n\n[org.garbage]\nsign_command = [\"{}\"]\npublic_key_file = \"{}\"\n",
        toml_argv(&["openssl", "dgst", "-sha256", "-sign", &other]),
        dir.join("registered.pub.pem").display(),
        garbage.display(),
        dir.join("registered.pub.pem").display(),
    ));

    let wrong = get(&home, "wrong", &[]);
    assert_quit_saying(
        &wrong,
        &[
            "organisation \"wrong\": sign_command `openssl dgst -sha256 -sign",
            "ES256 signature that does not verify with public_key_file",
            "registered.pub.pem",
            "no token was given to git",
        ],
    );
    assert!(!wrong.stderr.contains("eyJ"), "{}", wrong.stderr);

    let garbage = get(&home, "garbage", &[]);
    assert_quit_saying(
        &garbage,
        &[
            "organisation \"garbage\"",
            "not a ES256 signature",
            "DER ECDSA-Sig-Value",
        ],
    );
}

#[test]
fn a_hanging_signer_is_stopped_with_everything_it_started() {
    let home = Home::new();
    let dir = home.path().join("signers");
    std::fs::create_dir(&dir).unwrap();
    p256(&dir, "k");
    let pid_file = dir.join("grandchild.pid");
    // Waits for a background process that holds stdout: only ending the group stops it.
    let hang = script(
        &dir,
        "hang",
        &format!("sleep 300 &\necho $! > {}\nwait\n", pid_file.display()),
    );
    home.write_config(&format!(
        "[org.acme]\nsign_command = [\"{}\"]\npublic_key_file = \"{}\"\n",
        hang.display(),
        dir.join("k.pub.pem").display()
    ));
    let started = Instant::now();
    let run = get(&home, "acme", &[("CODESTORAGE_KEY_COMMAND_TIMEOUT", "1")]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_quit_saying(
        &run,
        &[
            "organisation \"acme\": sign_command",
            "did not finish within 1s and was stopped",
            "CODESTORAGE_KEY_COMMAND_TIMEOUT",
        ],
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // SIGKILL lands asynchronously: wait, bounded, until it is gone or a zombie.
    let alive = || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| !s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(!alive(), "the signer's child {pid} survived the timeout");
}

#[test]
fn a_failing_or_relative_signer_is_a_clear_error() {
    let home = Home::new();
    let dir = home.path().join("signers");
    std::fs::create_dir(&dir).unwrap();
    p256(&dir, "k");
    let fails = script(
        &dir,
        "fails",
        "cat > /dev/null\necho 'kms: AccessDeniedException' >&2\nexit 3\n",
    );
    let public = dir.join("k.pub.pem");
    home.write_config(&format!(
        "[org.fails]\nsign_command = [\"{}\"]\npublic_key_file = \"{}\"\n\n[org.relative]\nsign_command = [\"signers/fails\"]\npublic_key_file = \"{}\"\n\n[org.nokey]\nsign_command = [\"{}\"]\npublic_key_file = \"{}\"\n",
        fails.display(),
        public.display(),
        public.display(),
        fails.display(),
        dir.join("absent.pub").display(),
    ));
    let failed = get(&home, "fails", &[]);
    // The signer's own stderr reaches the user first, then the helper's one line.
    assert_quit_saying(
        &failed,
        &[
            "kms: AccessDeniedException\n",
            "organisation \"fails\": sign_command",
            "exited with exit status: 3; run it by hand to see why",
        ],
    );

    let relative = get(&home, "relative", &[]);
    assert_quit_saying(&relative, &["\"signers/fails\" is a relative path"]);

    let no_public_key = get(&home, "nokey", &[]);
    assert_quit_saying(
        &no_public_key,
        &["absent.pub does not exist", "openssl pkey -in KEY -pubout"],
    );
}

#[test]
fn a_private_key_given_as_public_key_file_gets_the_command_that_writes_its_public_half() {
    let home = Home::new();
    let dir = home.path().join("my keys");
    std::fs::create_dir(&dir).unwrap();
    let (private, public) = p256(&dir, "acme");
    let sign = toml_argv(&["openssl", "dgst", "-sha256", "-sign", &private]);
    home.write_config(&format!(
        "[org.acme]\nsign_command = {sign}\npublic_key_file = {private:?}\n"
    ));
    let refused = get(&home, "acme", &[]);
    assert_quit_saying(&refused, &["this is a private key, not a public one"]);
    // The fix names this file, quoted for the shell, and is a command that works as printed.
    let fix = refused
        .stderr
        .split('`')
        .find(|part| part.starts_with("openssl pkey"))
        .unwrap_or_else(|| panic!("no command in {}", refused.stderr));
    assert_eq!(
        fix,
        format!("openssl pkey -in '{private}' -pubout -out '{private}.pub'")
    );
    output("sh", &["-c", fix]);
    home.write_config(&format!(
        "[org.acme]\nsign_command = {sign}\npublic_key_file = \"{private}.pub\"\n"
    ));
    let answered = get(&home, "acme", &[]);
    let token = answered
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("password="))
        .unwrap_or_else(|| panic!("{answered:?}"));
    verify(token, &public);
}

#[test]
fn doctor_signs_a_probe_through_the_sign_command() {
    let home = Home::new();
    let dir = home.path().join("signers");
    std::fs::create_dir(&dir).unwrap();
    let (good, _) = p256(&dir, "good");
    let (other, _) = p256(&dir, "other");
    home.write_config(&format!(
        "[org.good]\nsign_command = {}\npublic_key_file = \"{}\"\n\n[org.bad]\nsign_command = {}\npublic_key_file = \"{}\"\n",
        toml_argv(&["openssl", "dgst", "-sha256", "-sign", &good]),
        dir.join("good.pub.pem").display(),
        toml_argv(&["openssl", "dgst", "-sha256", "-sign", &other]),
        dir.join("good.pub.pem").display(),
    ));
    let doctor = home.run(&["doctor"], "", &[]);
    let line = |org: &str| {
        doctor
            .stdout
            .lines()
            .find(|l| l.contains(&format!("key of organisation {org}:")))
            .unwrap_or_else(|| panic!("{doctor:?}"))
            .to_owned()
    };
    let good_line = line("good");
    assert!(
        good_line.starts_with("ok")
            && good_line.contains("signs (ES256) and its probe signature verifies"),
        "{good_line}"
    );
    let bad_line = line("bad");
    assert!(
        bad_line.starts_with("FAIL") && bad_line.contains("does not verify with public_key_file"),
        "{bad_line}"
    );
    assert_ne!(doctor.code, Some(0));
}

#[test]
fn real_git_pushes_and_clones_through_a_sign_command() {
    let scratch = tempfile::tempdir().unwrap();
    let (key, public) = p256(scratch.path(), "acme");
    let emulator = Emulator::start(&[("acme", &public.public_pem)]);
    let user = User::new(new_git()).trust(&emulator);
    user.home.write_config(&format!(
        "[org.acme]\nsign_command = {}\npublic_key_file = \"{}\"\nhosts = [\"{}\"]\n",
        toml_argv(&["openssl", "dgst", "-sha256", "-sign", &key]),
        scratch.path().join("acme.pub.pem").display(),
        emulator.host
    ));
    user.use_helper_for(&emulator.url);
    let url = emulator.repo_url("team/kms");
    user.push_and_clone_back(&url);
    assert!(emulator.records().iter().any(|r| r.verified));
}
