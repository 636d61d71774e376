//! Hostile and broken input: whatever arrives on stdin or sits in the files, the helper never
//! prints a token it should not, never panics, never writes to the user's files, never leaves a
//! process behind, and says what is wrong in one line where a user would want to know.

use crate::support;

use std::path::Path;
use std::time::SystemTime;

use support::home::{Home, Run};
use support::jwt::TestKey;

const GOOD: &str = "protocol=https\nhost=acme.code.storage\npath=team/x.git\n\n";

fn acme(key: &TestKey) -> Home {
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    home
}

/// Fails the test if `run` printed any part of a secret on stderr.
fn assert_no_secrets(run: &Run, key: &TestKey, token: Option<&str>) {
    assert!(!run.stderr.contains("panicked"), "panic: {}", run.stderr);
    for line in key.pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !run.stderr.contains(line),
            "key material on stderr: {}",
            run.stderr
        );
    }
    if let Some(token) = token {
        for part in token.split('.').skip(1) {
            assert!(
                !run.stderr.contains(part),
                "token on stderr: {}",
                run.stderr
            );
        }
    }
}

/// Runs `get` with and without debugging; neither may print a token or a secret.
fn refused(home: &Home, key: &TestKey, request: &[u8], expect_on_stderr: &str) -> Run {
    let shown = String::from_utf8_lossy(request);
    let mut last = None;
    for debug in ["0", "1"] {
        let run = home.get(request, &[("CODESTORAGE_DEBUG", debug)]);
        assert_eq!(run.code, Some(0), "{shown:?}: {}", run.stderr);
        assert!(!run.stdout.contains("password="), "{shown:?} got a token");
        assert!(
            run.stderr.contains(expect_on_stderr),
            "{shown:?}: expected {expect_on_stderr:?} on stderr, got {:?}",
            run.stderr
        );
        assert_no_secrets(&run, key, None);
        last = Some(run);
    }
    last.unwrap()
}

#[test]
fn injected_and_malformed_requests_get_no_token_and_a_reason() {
    let key = TestKey::p256();
    let home = acme(&key);
    let cases: &[(&[u8], &str)] = &[
        (
            b"protocol=https\nhost=acme.code.storage\rpath=x\npath=team/x.git\n\n",
            "carriage return",
        ),
        (
            b"protocol=https\r\nhost=acme.code.storage\r\npath=team/x.git\r\n\r\n",
            "carriage return",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\0evil.com\npath=team/x.git\n\n",
            "NUL",
        ),
        (
            b"protocol=https\nhost acme.code.storage\npath=team/x.git\n\n",
            "key=value",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=\xff\xfe.git\n\n",
            "UTF-8",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=team/../x.git\n\n",
            "'..'",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=%2e%2e/x.git\n\n",
            "character",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=team\\x.git\n\n",
            "character",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=team/\x1b[31mx.git\n\n",
            "character",
        ),
        (
            b"protocol=https\nhost=acme.code.storage\npath=/.git\n\n",
            "names no repository",
        ),
    ];
    for (request, reason) in cases {
        refused(&home, &key, request, reason);
    }
    let giant = format!(
        "protocol=https\nhost=acme.code.storage\npath={}.git\n\n",
        "a".repeat(1 << 20)
    );
    refused(&home, &key, giant.as_bytes(), "larger than");
}

#[test]
fn odd_hosts_are_not_ours_and_get_nothing() {
    let key = TestKey::p256();
    let home = acme(&key);
    for host in [
        "t@acme.code.storage",
        "acme.code.storage evil.com",
        "acme code.storage",
        "acme.code.storage/evil",
        "acme.code.storage.evil.com",
        "",
        // A character cut by the suffix check once panicked.
        "\u{e9}aaaaaaaaaaaa",
        "\u{d7b0}\u{1fb6}aA \u{1eea1}0",
    ] {
        let run = home.get(
            format!("protocol=https\nhost={host}\npath=team/x.git\n\n"),
            &[],
        );
        assert_eq!((run.stdout.as_str(), run.code), ("", Some(0)), "{host:?}");
        assert_no_secrets(&run, &key, None);
    }
}

#[test]
fn repeated_keys_take_the_last_value_as_git_does() {
    let key = TestKey::p256();
    let home = acme(&key);
    let run = home.get(
        "protocol=https\nhost=evil.example\nhost=acme.code.storage\npath=a.git\npath=team/x.git\n\n",
        &[],
    );
    let claims = support::jwt::verify(&run.password(), &key).claims;
    assert_eq!(claims["repo"], "team/x");
}

/// A file's contents and modification time, to prove the helper never wrote to it.
fn snapshot(path: &Path) -> Option<(Vec<u8>, SystemTime)> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some((
        std::fs::read(path).unwrap_or_default(),
        metadata.modified().unwrap(),
    ))
}

#[test]
fn broken_config_files_give_one_clear_line_and_are_left_alone() {
    let key = TestKey::p256();
    let cases: &[(&str, &str)] = &[
        (
            "[org.acme]\nkey_file = \"acme.pem\"\n[org.acme]\nkey_env = \"X\"\n",
            ":3:",
        ),
        (
            "[org.acme]\nkey_file = \"acme.pem\"\nttl = \"forever\"\n",
            "invalid ttl",
        ),
        (
            "[org.acme]\nkey_file = \"acme.pem\"\nscopes = [\"git:admin\"]\n",
            "git:admin",
        ),
        ("[org.acme\n", ":1:"),
        ("\u{feff}\u{0}garbage", ":1:"),
    ];
    for (text, reason) in cases {
        let home = acme(&key);
        home.write_config(text);
        let before = snapshot(&home.config_path());
        let run = refused(&home, &key, GOOD.as_bytes(), reason);
        assert_eq!(run.stdout, "quit=1\n");
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert_eq!(
            snapshot(&home.config_path()),
            before,
            "the config was written to"
        );
    }
}

#[test]
fn a_broken_config_stops_git_for_a_custom_host_it_lists_without_a_prompt() {
    let key = TestKey::p256();
    let home = acme(&key);
    // A custom host, routed to the helper by setup; a typo breaks the file that lists it.
    home.write_config(
        "[org.acme]\nkey_file = \"acme.pem\"\nhosts = [\"git.acme.dev\"]\nttl = \"forever\"\n",
    );
    let request = b"protocol=https\nhost=git.acme.dev\npath=team/x.git\n\n";
    let run = refused(&home, &key, request, "config.toml:4: ");
    assert_eq!(run.stdout, "quit=1\n");
    assert!(run.stderr.contains("invalid ttl"), "{}", run.stderr);
}

#[cfg(unix)]
#[test]
fn a_directory_or_a_symlink_loop_as_config_is_an_error() {
    let key = TestKey::p256();
    let home = acme(&key);
    let config = home.config_path();
    std::fs::remove_file(&config).unwrap();
    std::fs::create_dir(&config).unwrap();
    refused(&home, &key, GOOD.as_bytes(), "directory");
    std::fs::remove_dir(&config).unwrap();
    let other = config.with_file_name("loop.toml");
    std::os::unix::fs::symlink(&other, &config).unwrap();
    std::os::unix::fs::symlink(&config, &other).unwrap();
    refused(&home, &key, GOOD.as_bytes(), "cannot read config file");
}

#[test]
fn a_device_a_fifo_or_a_giant_file_as_config_is_refused_without_reading_it() {
    let key = TestKey::p256();
    let home = acme(&key);
    let fifo = home.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening the FIFO would block for ever, and /dev/zero never ends.
    for config in [Path::new("/dev/zero"), &fifo] {
        let run = home.get(GOOD, &[("CODESTORAGE_CONFIG", config.to_str().unwrap())]);
        assert_eq!(run.stdout, "quit=1\n", "{}", run.stderr);
        assert!(
            run.stderr.contains("not a regular file"),
            "{config:?}: {}",
            run.stderr
        );
    }
    let mut giant = String::from("[org.acme]\nkey_file = \"acme.pem\"\n");
    giant.push_str(&format!("# {}\n", "x".repeat(2 << 20)));
    home.write_config(&giant);
    refused(&home, &key, GOOD.as_bytes(), "larger than 1024 KiB");
}

#[test]
fn an_empty_or_missing_config_is_environment_only_use() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("k.pem", &key.pem);
    let env = [("CODESTORAGE_PRIVATE_KEY_FILE", path.to_str().unwrap())];
    let run = home.get(GOOD, &env);
    support::jwt::verify(&run.password(), &key);
    home.write_config("");
    let run = home.get(GOOD, &env);
    support::jwt::verify(&run.password(), &key);
}

#[cfg(unix)]
#[test]
fn broken_keys_give_one_clear_line_and_are_left_alone() {
    let key = TestKey::p256();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let p384 = std::fs::read_to_string(fixtures.join("p384.pkcs8.pem")).unwrap();
    let truncated = key.pem[..key.pem.len() / 2].to_owned();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no PEM private key"),
        (p384, "P-384"),
        (truncated, "PEM"),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
            "not a valid private key",
        ),
        (key.public_pem.clone(), "public key"),
    ];
    for (text, reason) in cases {
        let home = acme(&key);
        let path = home.write_key("acme.pem", &text);
        let before = snapshot(&path);
        let run = refused(&home, &key, GOOD.as_bytes(), reason);
        assert_eq!(run.stdout, "quit=1\n", "{reason}");
        assert_eq!(snapshot(&path), before, "the key was written to");
    }
    let home = acme(&key);
    let path = home.config_path().with_file_name("acme.pem");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&path, &path).unwrap();
    refused(&home, &key, GOOD.as_bytes(), "cannot read key file");
}

fn with_key_command(argv: &str) -> (Home, TestKey) {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_config(&format!("[org.acme]\nkey_command = {argv}\n"));
    (home, key)
}

#[test]
fn a_hanging_key_command_is_stopped_and_reaped() {
    let (home, key) =
        with_key_command("[\"sh\", \"-c\", \"echo $$ > \\\"$0\\\"; exec sleep 30\", \"PIDFILE\"]");
    let pid_file = home.path().join("pid");
    let config = std::fs::read_to_string(home.config_path())
        .unwrap()
        .replace("PIDFILE", pid_file.to_str().unwrap());
    home.write_config(&config);
    let run = home.get(GOOD, &[("CODESTORAGE_KEY_COMMAND_TIMEOUT", "1")]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains("did not finish within 1s"),
        "{}",
        run.stderr
    );
    assert_no_secrets(&run, &key, None);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    // Killed and waited for: no process, not even a zombie, is left with that id.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
    assert!(
        status.is_err(),
        "the key command is still there: {status:?}"
    );
}

#[test]
fn a_key_command_that_leaves_its_output_open_is_bounded_by_the_timeout() {
    let key = TestKey::p256();
    let home = Home::new();
    let key_path = home.write_key("k.pem", &key.pem);
    let pid_file = home.path().join("pid");
    // Prints the key, then leaves a process behind that holds the pipe open for 30s.
    home.write_config(&format!(
        "[org.acme]\nkey_command = [\"sh\", \"-c\", \"cat \\\"$0\\\"; sleep 30 2>/dev/null & echo $! > \\\"$1\\\"\", \"{}\", \"{}\"]\n",
        key_path.display(),
        pid_file.display()
    ));
    let run = home.get(GOOD, &[("CODESTORAGE_KEY_COMMAND_TIMEOUT", "1")]);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        // The test's own leftover: stop it now rather than in 30s.
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    assert_eq!(run.stdout, "quit=1\n", "{}", run.stderr);
    assert!(
        run.stderr.contains("still held its output open after 1s"),
        "{}",
        run.stderr
    );
    assert_no_secrets(&run, &key, None);
}

#[test]
fn a_failing_or_babbling_key_command_is_a_clear_error() {
    let (home, key) = with_key_command("[\"sh\", \"-c\", \"exit 3\"]");
    let run = refused(&home, &key, GOOD.as_bytes(), "exited with exit status: 3");
    assert_eq!(run.stdout, "quit=1\n");
    let (home, key) = with_key_command("[\"echo\", \"hello\"]");
    refused(&home, &key, GOOD.as_bytes(), "no PEM private key");
    let (home, key) = with_key_command("[\"/nonexistent/op\", \"read\"]");
    refused(&home, &key, GOOD.as_bytes(), "cannot run key_command");
}

#[test]
fn a_key_command_prints_the_key_with_no_shell_involved() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("k.pem", &key.pem);
    home.write_config(&format!(
        "[org.acme]\nkey_command = [\"cat\", \"{}\"]\n",
        path.display()
    ));
    let run = home.get(GOOD, &[("CODESTORAGE_DEBUG", "1")]);
    let token = run.password().to_owned();
    support::jwt::verify(&token, &key);
    assert_no_secrets(&run, &key, Some(&token));
}

#[test]
fn debug_runs_never_show_the_token_or_the_key() {
    let key = TestKey::p256();
    let home = acme(&key);
    let run = home.get(GOOD, &[("CODESTORAGE_DEBUG", "1")]);
    let token = run.password().to_owned();
    assert!(run.stderr.contains("debug:"), "{}", run.stderr);
    assert_no_secrets(&run, &key, Some(&token));
    let erase = home.run(
        &["erase"],
        format!("protocol=https\nhost=acme.code.storage\npath=team/x.git\nusername=t\npassword={token}\n\n"),
        &[("CODESTORAGE_DEBUG", "1")],
    );
    assert_no_secrets(&erase, &key, Some(&token));
}

#[test]
fn a_ttl_that_would_overflow_is_an_error_not_a_wrapped_number() {
    let key = TestKey::p256();
    let home = acme(&key);
    for ttl in ["99999999999999999999", "18446744073709551615d", "400d"] {
        let run = home.get(GOOD, &[("CODESTORAGE_TTL", ttl)]);
        assert_eq!(run.stdout, "quit=1\n", "{ttl}");
        assert!(
            run.stderr.contains("CODESTORAGE_TTL") && run.stderr.contains("longer than a year"),
            "{ttl}: {}",
            run.stderr
        );
        assert_no_secrets(&run, &key, None);
    }
}

#[test]
fn debug_formatting_of_secret_holding_types_is_redacted() {
    use git_credential_codestorage::key::{self, KeySource};
    use git_credential_codestorage::mint::Minted;
    use git_credential_codestorage::protocol::{self, Response};
    use git_credential_codestorage::signer::local::LocalSigner;
    use git_credential_codestorage::token::{self, Claims, Scope};

    let key = TestKey::p256();
    let source = KeySource::Env("K".into());
    let private = key::parse_pem(key.pem.as_bytes(), &source).unwrap();
    let private_shown = format!("{private:?}");
    let signing = LocalSigner::new(private, &source).unwrap();
    let claims = Claims {
        iss: "acme".into(),
        sub: "ci".into(),
        repo: "team/x".into(),
        scopes: vec![Scope::GitRead],
        iat: 1_800_000_000,
        exp: 1_800_003_600,
        refs: None,
        ops: None,
    };
    let token = token::sign(&claims, &signing).unwrap();
    let request = protocol::parse(format!("password={}\n", token.expose()).as_bytes()).unwrap();
    let shown = [
        private_shown,
        format!("{signing:?}"),
        format!(
            "{:?}",
            Minted {
                token: token.clone(),
                claims: claims.clone(),
            }
        ),
        format!("{:?}", token::decode_unverified(token.expose()).unwrap()),
        format!("{request:?}"),
        format!(
            "{:?}",
            Response::Credential {
                username: "t".into(),
                password: token.clone(),
                expiry: claims.exp,
                ephemeral: false,
            }
        ),
    ];
    let signature = token.expose().rsplit('.').next().unwrap();
    for text in &shown {
        assert!(
            text.contains("redacted") || text == &format!("{signing:?}"),
            "{text}"
        );
        assert!(!text.contains(signature), "token in {text}");
        for line in key.pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "key in {text}");
        }
    }
}
