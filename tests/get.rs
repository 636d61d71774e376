//! `git-credential-codestorage get|store|erase` as git runs it: the real binary, requests as
//! git writes them, and every token checked with ring against the key's public half.

use crate::support;

use support::home::Home;
use support::jwt::{TestKey, now, verify};

const REQUEST: &str = "protocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\n\n";

/// A home whose config gives organisation `acme` the key `key`.
fn acme(key: &TestKey, extra: &str) -> Home {
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config(&format!(
        "subject = \"ci@runner\"\n\n[org.acme]\nkey_file = \"acme.pem\"\n{extra}"
    ));
    home
}

#[test]
fn es256_token_has_the_sdk_header_claim_order_and_values() {
    let key = TestKey::p256();
    let home = acme(&key, "");
    let before = now();
    let run = home.get(REQUEST, &[]);
    assert_eq!(run.code, Some(0));
    assert_eq!(run.stderr, "");
    assert_eq!(run.field("username"), Some("t"));
    let token = verify(&run.password(), &key);
    assert_eq!(token.header, r#"{"alg":"ES256","typ":"JWT"}"#);
    assert_eq!(
        token.claim_order,
        ["iss", "sub", "repo", "scopes", "iat", "exp"]
    );
    let claims = &token.claims;
    assert_eq!(claims["iss"], "acme");
    assert_eq!(claims["sub"], "ci@runner");
    assert_eq!(claims["repo"], "team/project-alpha");
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["git:read", "git:write"])
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert!((before..=now()).contains(&iat));
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3600);
    let expiry: i64 = run.field("password_expiry_utc").unwrap().parse().unwrap();
    assert_eq!(expiry, iat + 3600 - 30, "reported a little early");
}

#[test]
fn every_accepted_key_format_signs_verifiable_tokens() {
    let keys = [
        TestKey::ed25519(),
        TestKey::fixture("rsa2048.pkcs8.pem", "rsa2048.pub.pem", "RS256"),
        TestKey::fixture("rsa2048.pkcs1.pem", "rsa2048.pub.pem", "RS256"),
        TestKey::fixture("rsa4096.pkcs8.pem", "rsa4096.pub.pem", "RS256"),
        TestKey::fixture("p256.sec1.pem", "p256.pub.pem", "ES256"),
        TestKey::fixture("p256.sec1-params.pem", "p256.pub.pem", "ES256"),
        TestKey::fixture("ed25519.openssl.pem", "ed25519.openssl.pub.pem", "EdDSA"),
    ];
    for key in keys {
        let run = acme(&key, "").get(REQUEST, &[]);
        let token = verify(&run.password(), &key);
        assert_eq!(token.claims["repo"], "team/project-alpha", "{}", key.alg);
    }
}

#[test]
fn repo_rules_set_scopes_ttl_and_ref_policies() {
    let key = TestKey::p256();
    let home = acme(
        &key,
        r#"
[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
ttl = "5m"

[[org.acme.repo]]
match = "agents/**"
ops = ["no-force-push"]
refs = [{ pattern = "refs/heads/main", ops = ["no-push"] }]
"#,
    );
    let mirror = home.get(
        "protocol=https\nhost=acme.code.storage\npath=mirrors/linux.git\n",
        &[],
    );
    let claims = verify(&mirror.password(), &key).claims;
    assert_eq!(claims["scopes"], serde_json::json!(["git:read"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let agent = home.get(
        "protocol=https\nhost=acme.code.storage\npath=agents/a/b+ephemeral.git\n",
        &[],
    );
    let token = verify(&agent.password(), &key);
    assert_eq!(token.claims["repo"], "agents/a/b");
    assert_eq!(
        token.claim_order,
        ["iss", "sub", "repo", "scopes", "iat", "exp", "refs", "ops"]
    );
    assert_eq!(
        token.claims["refs"],
        serde_json::json!([["refs/heads/main", ["no-push"]]])
    );
    assert_eq!(token.claims["ops"], serde_json::json!(["no-force-push"]));
}

#[test]
fn environment_only_mode_works_with_either_name_for_the_key() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("env.pem", &key.pem);
    let path = path.to_str().unwrap();
    for env in [
        [
            ("PIERRE_PRIVATE_KEY_FILE", path),
            ("PIERRE_TOKEN_TTL", "120"),
        ],
        [
            ("CODESTORAGE_PRIVATE_KEY", key.pem.as_str()),
            ("CODESTORAGE_TTL", "2m"),
        ],
    ] {
        let run = home.get("protocol=https\nhost=beta.code.storage\npath=x.git\n", &env);
        let claims = verify(&run.password(), &key).claims;
        assert_eq!(claims["iss"], "beta");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            120
        );
    }
}

#[test]
fn reads_by_a_git_that_offers_authtype_get_an_ephemeral_basic_credential_pushes_a_password() {
    let key = TestKey::p256();
    let home = acme(&key, "");
    let modern = format!("capability[]=authtype\ncapability[]=state\n{REQUEST}");
    // git sets GIT_TRACE2_PARENT_NAME when trace2 is on; with no git among the ancestors (as
    // here, under the test) it is the signal the helper reads.
    let fetch = [("GIT_TRACE2_PARENT_NAME", "fetch/_run_dashed_/remote-curl")];
    let read = home.get(&modern, &fetch);
    assert!(
        read.stdout
            .starts_with("capability[]=authtype\nauthtype=Basic\ncredential="),
        "{}",
        read.stdout
    );
    assert!(read.stdout.contains("\nephemeral=1\n"), "{}", read.stdout);
    assert_eq!(
        read.field("password"),
        None,
        "no password for a helper to keep"
    );
    let claims = verify(&read.password(), &key).claims;
    assert_eq!(claims["scopes"], serde_json::json!(["git:read"]));

    let push = [("GIT_TRACE2_PARENT_NAME", "push/_run_dashed_/remote-curl")];
    let write = home.get(&modern, &push);
    assert!(!write.stdout.contains("ephemeral"), "{}", write.stdout);
    let claims = verify(&write.password(), &key).claims;
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["git:read", "git:write"])
    );

    let old = home.get(REQUEST, &fetch);
    assert!(!old.stdout.contains("ephemeral"));
    let claims = verify(&old.password(), &key).claims;
    assert_eq!(claims["scopes"], serde_json::json!(["git:read"]));
}

#[test]
fn foreign_hosts_and_plain_http_get_nothing_at_all() {
    let home = acme(&TestKey::p256(), "");
    for request in [
        "protocol=https\nhost=github.com\npath=acme/x.git\n",
        "protocol=http\nhost=acme.code.storage\npath=team/x.git\n",
        "protocol=https\nhost=acme.code.storage.evil.example\npath=team/x.git\n",
    ] {
        let run = home.get(request, &[]);
        assert_eq!(
            (run.stdout.as_str(), run.stderr.as_str()),
            ("", ""),
            "{request}"
        );
        assert_eq!(run.code, Some(0));
    }
}

#[test]
fn without_use_http_path_git_is_told_to_quit_and_how_to_fix_it() {
    let home = acme(&TestKey::p256(), "");
    let run = home.get("protocol=https\nhost=acme.code.storage\n", &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr
            .contains("git config --global 'credential.https://*.code.storage.useHttpPath' true"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unusable_key_quits_with_one_line_naming_the_fix() {
    let key = TestKey::p256();
    let home = acme(&key, "");
    let path = home.config_path().with_file_name("acme.pem");
    support::home::set_mode(&path, 0o644);
    let run = home.get(REQUEST, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("chmod 600 {}", path.display()))
    );
    let allowed = home.get(
        REQUEST,
        &[("CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS", "1")],
    );
    verify(&allowed.password(), &key);
}

#[test]
fn an_unconfigured_code_storage_host_hints_but_lets_other_helpers_try() {
    let home = acme(&TestKey::p256(), "");
    // A config directory of the user's own choosing, with a space the commands must quote.
    let xdg = home.path().join("my config");
    let xdg_env = [("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
    let request = "protocol=https\nhost=other.code.storage\npath=x.git\n";
    let run = home.get(request, &xdg_env);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    // The hint's commands, run as printed, are all it takes: keygen, then setup, which the
    // hint alone names once the key file is there.
    let bin = std::path::Path::new(support::home::HELPER)
        .parent()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let key_file = xdg.join("codestorage/other.pem");
    let setup = format!(
        "git-credential-codestorage setup --org other --key-file '{}'",
        key_file.display()
    );
    let commands = |run: &support::home::Run| -> Vec<String> {
        run.stderr
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        commands(&run),
        ["git-credential-codestorage keygen --org other", &setup],
        "{}",
        run.stderr
    );
    let run_sh = |command: &str| {
        let mut sh = home.command("sh");
        sh.args(["-c", command]).envs(xdg_env).env("PATH", &path);
        let done = support::home::run(sh, "");
        assert_eq!(done.code, Some(0), "{command}: {done:?}");
    };
    run_sh("git-credential-codestorage keygen --org other");
    let after_keygen = home.get(request, &xdg_env);
    assert_eq!(after_keygen.stdout, "");
    assert_eq!(
        commands(&after_keygen),
        [setup.as_str()],
        "{}",
        after_keygen.stderr
    );
    run_sh(&setup);
    let public = support::signers::output(
        "openssl",
        &["pkey", "-in", key_file.to_str().unwrap(), "-pubout"],
    );
    let made = TestKey::from_pems(String::new(), public, "ES256");
    verify(&home.get(request, &xdg_env).password(), &made);
}

#[test]
fn a_config_typo_names_file_and_line() {
    let home = acme(&TestKey::p256(), "scope = [\"git:read\"]\n");
    let run = home.get(REQUEST, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    let expected = format!("{}:5: unknown field `scope`", home.config_path().display());
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
}

#[test]
fn erase_of_our_token_explains_what_was_refused_and_never_prints_it() {
    let key = TestKey::p256();
    let home = acme(&key, "");
    let token = home.get(REQUEST, &[]).password().to_owned();
    let run = home.run(
        &["erase"],
        format!("protocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\nusername=t\npassword={token}\nwwwauth[]=Basic realm=\"Code Storage\"\n\n"),
        &[],
    );
    assert_eq!((run.code, run.stdout.as_str()), (Some(0), ""));
    assert!(
        run.stderr.contains("repo \"team/project-alpha\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not registered"), "{}", run.stderr);
    assert!(!run.stderr.contains(&token));
}

#[test]
fn store_and_unknown_actions_do_nothing() {
    let home = acme(&TestKey::p256(), "");
    for action in ["store", "frobnicate"] {
        let run = home.run(
            &[action],
            "protocol=https\nhost=acme.code.storage\npassword=x\n\n",
            &[],
        );
        assert_eq!(
            (run.code, run.stdout.as_str(), run.stderr.as_str()),
            (Some(0), "", ""),
            "{action}"
        );
    }
}

#[test]
fn debug_lines_explain_the_decision_without_the_token() {
    let home = acme(&TestKey::p256(), "");
    let run = home.get(REQUEST, &[("CODESTORAGE_DEBUG", "1")]);
    let token = run.password();
    assert!(run.stderr.contains("org acme"), "{}", run.stderr);
    assert!(
        run.stderr.contains("repo team/project-alpha"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(token.split('.').nth(2).unwrap()));
    let foreign = home.get(
        "protocol=https\nhost=github.com\npath=x.git\n",
        &[("PIERRE_DEBUG", "1")],
    );
    assert!(
        foreign.stderr.contains("not a Code Storage host"),
        "{}",
        foreign.stderr
    );
}

#[test]
fn only_the_requested_organisations_key_is_touched() {
    let key = TestKey::p256();
    let home = acme(&key, "");
    // Another organisation whose key would run a program and one whose key file is missing:
    // a get for acme must do neither.
    let marker = home.path().join("beta-key-command-ran");
    let config = std::fs::read_to_string(home.config_path()).unwrap();
    home.write_config(&format!(
        "{config}\n[org.beta]\nkey_command = [\"touch\", \"{}\"]\n\n[org.gamma]\nkey_file = \"missing.pem\"\n",
        marker.display()
    ));
    let run = home.get(REQUEST, &[]);
    verify(&run.password(), &key);
    assert_eq!(run.stderr, "");
    assert!(
        !marker.exists(),
        "beta's key_command ran for an acme request"
    );
}

#[test]
fn codestorage_operation_names_a_read_or_a_write_for_glue_code() {
    let key = TestKey::p256();
    // Least privilege off: only the hint narrows.
    let home = acme(&key, "");
    let scopes = |env: &[(&str, &str)]| {
        let run = home.get(REQUEST, env);
        assert_eq!(run.code, Some(0), "{run:?}");
        verify(&run.password(), &key).claims["scopes"].clone()
    };
    let off = [("CODESTORAGE_LEAST_PRIVILEGE", "0")];
    assert_eq!(scopes(&off), serde_json::json!(["git:read", "git:write"]));
    let read = [
        ("CODESTORAGE_LEAST_PRIVILEGE", "0"),
        ("CODESTORAGE_OPERATION", "read"),
    ];
    assert_eq!(scopes(&read), serde_json::json!(["git:read"]));
    // Glue code that will push says so; the path a client sends is cut at `.git`.
    let write = [("CODESTORAGE_OPERATION", "write")];
    assert_eq!(scopes(&write), serde_json::json!(["git:read", "git:write"]));
    let glue = home.get(
        "protocol=https\nhost=acme.code.storage\npath=team/project-alpha.git/info/lfs/objects/batch\n\n",
        &[("CODESTORAGE_OPERATION", "read")],
    );
    let token = verify(&glue.password(), &key);
    assert_eq!(token.claims["repo"], "team/project-alpha");
    assert_eq!(token.claims["scopes"], serde_json::json!(["git:read"]));
    // Anything else is a mistake said in one line, and git is told to stop.
    let bad = home.get(REQUEST, &[("CODESTORAGE_OPERATION", "fetch")]);
    assert_eq!(bad.field("quit"), Some("1"), "{bad:?}");
    assert_eq!(bad.field("password"), None);
    assert_eq!(
        bad.stderr.trim_end(),
        "git-credential-codestorage: CODESTORAGE_OPERATION=\"fetch\": not an operation; use read (a fetch or clone) or write (a push), or unset it"
    );
}
