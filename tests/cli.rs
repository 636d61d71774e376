//! The user's subcommands as a user runs them: `keygen`, `token`, `inspect` and `doctor`, through
//! the real binary in a throwaway home, every token checked with ring against the public key.

use crate::support;

use support::cli::User;
use support::jwt::{TestKey, try_verify, verify};

const URL: &str = "https://acme.code.storage/team/project-alpha.git";

/// A user whose config gives `acme` a fresh P-256 key, plus `extra` config lines.
fn acme(extra: &str) -> (User, TestKey) {
    let user = User::new();
    let key = TestKey::p256();
    user.write_key("acme.pem", &key.pem);
    user.write_config(&format!(
        "subject = \"ci@runner\"\n\n[org.acme]\nkey_file = \"acme.pem\"\n{extra}"
    ));
    (user, key)
}

fn claims_of(token: &str) -> serde_json::Value {
    let decoded = git_credential_codestorage::token::decode_unverified(token).unwrap();
    serde_json::from_str(&decoded.claims_json).unwrap()
}

#[cfg(unix)]
#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let run = user.run(&["keygen", "--org", "acme"], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("admin panel") && run.stderr.contains("setup --org acme --key-file"),
        "{}",
        run.stderr
    );
    let path = user.path().join(".config/codestorage/acme.pem");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));

    // The printed public key verifies what the helper signs with the written private key.
    user.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    let get = user.run(
        &["get"],
        "protocol=https\nhost=acme.code.storage\npath=team/x.git\n\n",
    );
    let key = TestKey::from_pems(pem.clone(), run.stdout.clone(), "ES256");
    assert_eq!(verify(&get.password(), &key).claims["repo"], "team/x");

    let again = user.run(&["keygen", "--org", "acme"], "");
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.starts_with("git-credential-codestorage: "),
        "{again:?}"
    );
    assert!(again.stderr.contains("already exists") && again.stderr.contains("--force"));
    assert_eq!(again.stdout, "");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        pem,
        "the key is untouched"
    );

    let forced = user.run(&["keygen", "--org", "acme", "--force"], "");
    assert_eq!(forced.code, Some(0), "{forced:?}");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), pem);
    assert_ne!(forced.stdout, run.stdout);
}

#[test]
fn keygen_makes_ed25519_keys_where_asked() {
    let user = User::new();
    let out = user.path().join("keys/beta.pem");
    let run = user.ok(&[
        "keygen",
        "--org",
        "beta",
        "--ed25519",
        "--out",
        out.to_str().unwrap(),
    ]);
    user.write_config(&format!(
        "[org.beta]\nkey_file = {:?}\n",
        out.to_str().unwrap()
    ));
    let get = user.run(
        &["get"],
        "protocol=https\nhost=beta.code.storage\npath=x.git\n\n",
    );
    let key = TestKey::from_pems(std::fs::read_to_string(&out).unwrap(), run.stdout, "EdDSA");
    verify(&get.password(), &key);
    let help = user.ok(&["keygen", "--help"]);
    assert!(
        help.stdout.contains("RSA") && help.stdout.contains("Example"),
        "{}",
        help.stdout
    );
}

#[test]
fn token_signs_exactly_what_get_signs() {
    let (user, key) = acme(
        "[[org.acme.repo]]\nmatch = \"team/**\"\nscopes = [\"git:read\"]\nttl = \"5m\"\nrefs = [{ pattern = \"refs/heads/main\", ops = [\"no-push\"] }]\n",
    );
    let get = user.run(
        &["get"],
        "protocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\n\n",
    );
    let from_get = verify(&get.password(), &key);
    for args in [
        &["token", URL][..],
        &["token", "--org", "acme", "team/project-alpha.git"],
        &["token", "--org", "acme", "team/project-alpha"],
    ] {
        let run = user.ok(args);
        assert_eq!(run.stdout.lines().count(), 1, "one line: the token");
        let token = verify(run.stdout.trim_end(), &key);
        assert_eq!(token.claim_order, from_get.claim_order, "{args:?}");
        let (mut a, mut b) = (token.claims.clone(), from_get.claims.clone());
        for claims in [&mut a, &mut b] {
            let iat = claims["iat"].as_i64().unwrap();
            claims["exp"] = (claims["exp"].as_i64().unwrap() - iat).into();
            claims["iat"] = 0.into();
        }
        assert_eq!(a, b, "{args:?}");
        assert_eq!(a["exp"], 300);
    }
}

#[test]
fn token_flags_beat_environment_and_config() {
    let (user, key) = acme("ttl = \"2h\"\n");
    let mut command = user.command(support::home::HELPER);
    command
        .args([
            "token",
            URL,
            "--ttl",
            "90s",
            "--scopes",
            "git:read,repo:write",
            "--subject",
            "bot",
        ])
        .env("CODESTORAGE_TTL", "10m")
        .env("CODESTORAGE_SCOPES", "git:write");
    let run = support::home::run(command, "");
    assert_eq!(run.code, Some(0), "{run:?}");
    let claims = verify(run.stdout.trim(), &key).claims;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90
    );
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["git:read", "repo:write"])
    );
    assert_eq!(claims["sub"], "bot");
}

#[test]
fn token_json_has_token_expiry_org_repo_and_scopes() {
    let (user, key) = acme("");
    let run = user.ok(&["token", URL, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let mut fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["expires_at", "org", "repo", "scopes", "token"]);
    let claims = verify(json["token"].as_str().unwrap(), &key).claims;
    assert_eq!(json["org"], "acme");
    assert_eq!(json["repo"], "team/project-alpha");
    assert_eq!(json["scopes"], serde_json::json!(["git:read", "git:write"]));
    assert_eq!(
        json["expires_at"],
        git_credential_codestorage::clock::format_time(claims["exp"].as_i64().unwrap())
    );
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn org_wide_tokens_carry_repo_org_and_org_read() {
    let (user, key) = acme("");
    for args in [
        &["token", "--org", "acme", "--org-wide"][..],
        &["token", URL, "--org-wide"],
    ] {
        let run = user.ok(args);
        let claims = verify(run.stdout.trim(), &key).claims;
        assert_eq!(claims["repo"], "org", "{args:?}");
        assert_eq!(claims["scopes"], serde_json::json!(["org:read"]));
    }
    let run = user.ok(&[
        "token",
        "--org",
        "acme",
        "--org-wide",
        "--scopes",
        "org:read,repo:write",
    ]);
    let claims = verify(run.stdout.trim(), &key).claims;
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["org:read", "repo:write"])
    );
}

#[test]
fn token_refuses_what_get_would_not_sign() {
    let (user, _) = acme("");
    for (args, code, expected) in [
        (
            &["token", "https://github.com/a/b.git"][..],
            1,
            "not a Code Storage host",
        ),
        (
            &["token", "http://acme.code.storage/x.git"],
            1,
            "https only",
        ),
        (&["token", "git@acme.code.storage:x.git"], 1, "SSH remote"),
        (
            &["token", "https://acme.code.storage/a/../b.git"],
            1,
            "'..'",
        ),
        (&["token", "--org", "nobody", "x"], 1, "setup --org nobody"),
        (&["token"], 2, "name the repository"),
        (&["token", "--org", "acme"], 2, "needs the repository"),
        (
            &["token", "--org", "acme", "x", "--org-wide"],
            2,
            "drop REPO",
        ),
        (&["token", URL, "--scopes", "git:push"], 2, "unknown scope"),
        (&["token", URL, "--ttl", "400d"], 2, "longer than a year"),
    ] {
        let run = user.run(args, "");
        assert_eq!(run.code, Some(code), "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let run = user.run(
        &["token", "https://t:eyJsecret.eyJ.sig@github.com/x.git"],
        "",
    );
    assert!(!run.stderr.contains("eyJsecret"), "{}", run.stderr);
}

#[test]
fn inspect_shows_header_claims_and_expiry_and_checks_the_signature() {
    let (user, key) = acme("");
    let token = user.ok(&["token", URL, "--ttl", "42m"]).stdout;
    let public = user.path().join("acme.pub.pem");
    std::fs::write(&public, &key.public_pem).unwrap();
    let private = user.path().join(".config/codestorage/acme.pem");

    let run = user.run(&["inspect"], &token);
    assert_eq!(run.code, Some(0), "{run:?}");
    let out = &run.stdout;
    assert!(
        out.starts_with("header:\n  alg: \"ES256\"\n  typ: \"JWT\"\nclaims:\n  iss: \"acme\"\n"),
        "{out}"
    );
    assert!(out.contains("  repo: \"team/project-alpha\"\n"), "{out}");
    assert!(
        out.contains("expires in 41m") || out.contains("expires in 42m"),
        "{out}"
    );
    let exp = claims_of(token.trim())["exp"].as_i64().unwrap();
    assert!(
        out.contains(&git_credential_codestorage::clock::format_time(exp)),
        "{out}"
    );
    assert!(out.contains("signature: not checked"), "{out}");
    assert!(
        !out.contains(token.trim()),
        "the token itself is not echoed"
    );

    for key_file in [&public, &private] {
        let run = user.run(
            &["inspect", "--key", key_file.to_str().unwrap(), "-"],
            &token,
        );
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(
            run.stdout.contains("signature: valid (ES256"),
            "{}",
            run.stdout
        );
    }
    let as_argument = user.run(
        &["inspect", token.trim(), "--key", public.to_str().unwrap()],
        "",
    );
    assert_eq!(
        as_argument.stdout,
        user.run(&["inspect", "--key", public.to_str().unwrap()], &token)
            .stdout
    );

    let other = user.path().join("other.pub.pem");
    std::fs::write(&other, TestKey::p256().public_pem).unwrap();
    let run = user.run(&["inspect", "--key", other.to_str().unwrap()], &token);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("does NOT verify"), "{}", run.stderr);
    let ed = user.path().join("ed.pub.pem");
    std::fs::write(&ed, TestKey::ed25519().public_pem).unwrap();
    let run = user.run(&["inspect", "--key", ed.to_str().unwrap()], &token);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("ES256") && run.stderr.contains("EdDSA"),
        "{}",
        run.stderr
    );
}

#[test]
fn inspect_reads_sdk_remote_urls_and_reports_expired_tokens() {
    let (user, key) = acme("");
    // Signed by hand as the SDK signs remote URLs, a minute past its expiry: no waiting.
    let exp = support::jwt::now() - 60;
    let token = key.sign(&format!(
        r#"{{"iss":"acme","sub":"@pierre/storage","repo":"team/x","scopes":["git:write","git:read"],"iat":{},"exp":{exp}}}"#,
        exp - 3600
    ));
    let remote = format!("https://t:{token}@acme.code.storage/team/x.git\n");
    let run = user.run(&["inspect"], &remote);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("expired "), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&git_credential_codestorage::clock::format_time(exp)),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&token));
    assert!(try_verify(&token, &key).is_ok());

    // The same URL with a token the helper signed just now is not expired.
    let fresh = user.ok(&["token", URL]).stdout;
    let remote = format!("https://t:{}@acme.code.storage/team/x.git\n", fresh.trim());
    let run = user.run(&["inspect"], &remote);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("expired "), "{}", run.stdout);
}

#[test]
fn inspect_turns_garbage_into_one_line_and_exit_1() {
    let user = User::new();
    for garbage in [
        "",
        "hello",
        "a.b.c",
        "e30.e30",
        "Bearer ",
        "\u{1b}[2J.x.y",
        "https://acme.code.storage/x.git",
    ] {
        let run = user.run(&["inspect", "-"], garbage);
        assert_eq!(run.code, Some(1), "{garbage:?}: {run:?}");
        assert_eq!(run.stdout, "");
        assert_eq!(run.stderr.lines().count(), 1, "{garbage:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("git-credential-codestorage: "));
        assert!(!run.stderr.contains('\u{1b}'));
    }
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let run = user.run(&["inspect"], &String::from_utf8_lossy(&bytes));
    assert_eq!(run.code, Some(1), "{run:?}");
}

#[test]
fn doctor_is_all_ok_after_keygen_and_setup() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    let run = user.run(&["doctor"], "");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("ok ")),
        "{}",
        run.stdout
    );
    for expected in [
        "config ",
        "key of organisation acme",
        "git 2.",
        "git asks this helper first for https://*.code.storage",
        "clock reads 20",
    ] {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
    }
    assert_eq!(lines.last(), Some(&"no problems found"));

    let run = user.run(&["doctor", URL], "");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("org acme (from config), repo team/project-alpha, rule none, key file ")
            && run
                .stdout
                .contains(", ttl 1h, scopes git:read+git:write, sub "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(r#"a token for it would say: {"iss":"acme","#),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("eyJ"), "never a token: {}", run.stdout);
}

#[test]
fn doctor_fails_on_a_key_others_can_read() {
    let (user, _) = acme("");
    let key = user.path().join(".config/codestorage/acme.pem");
    user.setup("acme", &key);
    support::home::set_mode(&key, 0o644);
    let run = user.run(&["doctor"], "");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let fail = run.stdout.lines().find(|l| l.starts_with("FAIL")).unwrap();
    assert!(
        fail.contains("mode 644") && fail.contains(&format!("chmod 600 {}", key.display())),
        "{fail}"
    );
}

#[test]
fn doctor_fails_when_credential_store_is_asked_first() {
    let (user, _) = acme("");
    user.git(&["config", "--global", "credential.helper", "store"], "");
    user.git(
        &[
            "config",
            "--global",
            "credential.https://*.code.storage.helper",
            &support::cli::helper_path(),
        ],
        "",
    );
    user.git(
        &[
            "config",
            "--global",
            "credential.https://*.code.storage.useHttpPath",
            "true",
        ],
        "",
    );
    let run = user.run(&["doctor"], "");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let fail = run.stdout.lines().find(|l| l.starts_with("FAIL")).unwrap();
    assert!(
        fail.contains("`store`") && fail.contains("before this helper"),
        "{fail}"
    );
    assert!(
        fail.contains("--replace-all 'credential.https://*.code.storage.helper' ''"),
        "{fail}"
    );

    // setup adds the reset, after which the same store entry is harmless.
    user.setup("acme", &user.path().join(".config/codestorage/acme.pem"));
    let run = user.run(&["doctor"], "");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
}

#[test]
fn doctor_without_config_or_key_says_how_to_start() {
    let user = User::new();
    let run = user.run(&["doctor"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("FAIL  no config file at") && run.stdout.contains("keygen --org ORG"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("does not ask this helper"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_subcommand_has_help_with_an_example_and_there_is_a_version() {
    let user = User::new();
    for subcommand in [
        "keygen", "setup", "token", "inspect", "doctor", "get", "store", "erase",
    ] {
        let run = user.ok(&[subcommand, "--help"]);
        assert!(
            run.stdout.contains("Example"),
            "{subcommand}: {}",
            run.stdout
        );
    }
    let run = user.ok(&["--version"]);
    assert_eq!(
        run.stdout,
        format!("git-credential-codestorage {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_mistyped_subcommand_says_did_you_mean_but_unknown_git_actions_stay_silent() {
    let user = User::new();
    for (typo, meant) in [("doctr", "doctor"), ("setpu", "setup"), ("tokn", "token")] {
        let run = user.run(&[typo], "");
        assert_eq!(run.code, Some(2), "{typo}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("'{meant}'")),
            "{typo}: {}",
            run.stderr
        );
    }
    // git's rule: a helper ignores actions it does not know, so newer gits can add some.
    for action in ["capability", "frobnicate"] {
        let run = user.run(&[action], "protocol=https\nhost=acme.code.storage\n\n");
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(0), "", ""),
            "{action}"
        );
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definitions() {
    let user = User::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef git-credential-codestorage"),
        ("fish", "complete -c git-credential-codestorage"),
    ] {
        let run = user.ok(&["completions", shell]);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        for subcommand in ["keygen", "setup", "token", "inspect", "doctor"] {
            assert!(
                run.stdout.contains(subcommand),
                "{shell} lacks {subcommand}"
            );
        }
    }
    let run = user.run(&["completions", "tcsh"], "");
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let page = user.ok(&["man"]).stdout;
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains(".TH git-credential-codestorage 1"), "{page}");
    for section in [
        "KEYGEN",
        "SETUP",
        "TOKEN",
        "INSPECT",
        "DOCTOR",
        "COMPLETIONS",
    ] {
        assert!(page.contains(&format!(".SH \"{section}\"")), "{section}");
    }
    // Every long option of every subcommand is documented.
    assert!(page.contains("\\-\\-key\\-file") && page.contains("\\-\\-org\\-wide"));
}

#[test]
fn doctor_json_is_one_object_scripts_can_read() {
    let (user, _) = acme("");
    let run = user.run(&["doctor", "--json"], "");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect(&run.stdout);
    let findings = report["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    let fails = findings.iter().filter(|f| f["status"] == "fail").count();
    assert_eq!(report["problems"], fails);
    assert_eq!(report["ok"], fails == 0);
    assert_eq!(run.code, Some(if fails == 0 { 0 } else { 1 }));
    assert!(
        findings
            .iter()
            .all(|f| f["text"].as_str().is_some_and(|t| !t.is_empty()))
    );
}
