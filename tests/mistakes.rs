//! A user's mistakes with keys, config and switches, each on the whole program: keys pasted
//! where a path belongs are never echoed, rules that could never apply are errors, hosts that
//! are not host names are declined, switches read only what clearly says on or off, and every
//! fix printed names the user's real organisation, file and variable.

use crate::support;

use support::cli::User;
use support::home::{Home, Run, set_mode};
use support::jwt::{self, TestKey};

const GOOD: &str = "protocol=https\nhost=acme.code.storage\npath=team/x.git\n\n";

/// Fails the test if any line of the key's PEM reached stdout or stderr.
fn assert_key_not_shown(run: &Run, key: &TestKey) {
    for line in key.pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !run.stderr.contains(line) && !run.stdout.contains(line),
            "key material shown: {}",
            run.stderr
        );
    }
}

#[test]
fn pem_text_in_a_path_variable_is_named_never_echoed() {
    let key = TestKey::p256();
    let home = Home::new();
    for variable in ["CODESTORAGE_PRIVATE_KEY_FILE", "PIERRE_PRIVATE_KEY_FILE"] {
        let run = home.get(
            GOOD,
            &[(variable, key.pem.as_str()), ("CODESTORAGE_DEBUG", "1")],
        );
        assert_eq!(run.stdout, "quit=1\n", "{variable}");
        assert!(
            run.stderr.contains(variable)
                && run.stderr.contains("looks like the PEM text")
                && run.stderr.contains("CODESTORAGE_PRIVATE_KEY instead"),
            "{}",
            run.stderr
        );
        assert_key_not_shown(&run, &key);
        let doctor = home.run(&["doctor"], "", &[(variable, key.pem.as_str())]);
        assert_key_not_shown(&doctor, &key);
        assert!(doctor.stdout.contains("FAIL"), "{}", doctor.stdout);
    }
}

#[test]
fn pem_text_in_the_config_where_a_path_or_name_belongs_is_an_error_without_the_key() {
    let key = TestKey::p256();
    let home = Home::new();
    for field in ["key_env", "key_file"] {
        home.write_config(&format!("[org.acme]\n{field} = '''\n{}'''\n", key.pem));
        let run = home.get(GOOD, &[]);
        assert_eq!(run.stdout, "quit=1\n");
        assert!(
            run.stderr
                .contains(&format!("{field} holds the PEM text of a key")),
            "{}",
            run.stderr
        );
        assert_key_not_shown(&run, &key);
    }
}

#[test]
fn a_key_kept_on_one_line_with_literal_newlines_is_read_and_a_truncated_one_is_named() {
    let key = TestKey::p256();
    let home = Home::new();
    let one_line = key.pem.trim_end().replace('\n', "\\n");
    let run = home.get(GOOD, &[("CODESTORAGE_PRIVATE_KEY", one_line.as_str())]);
    jwt::verify(&run.password(), &key);
    let truncated = &key.pem[..key.pem.len() / 2];
    let run = home.get(GOOD, &[("CODESTORAGE_PRIVATE_KEY", truncated)]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert_key_not_shown(&run, &key);
}

#[test]
fn a_key_file_others_can_read_named_by_the_environment_gets_the_environment_fix() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("k.pem", &key.pem);
    set_mode(&path, 0o644);
    let file = path.to_str().unwrap();
    let run = home.get(GOOD, &[("CODESTORAGE_PRIVATE_KEY_FILE", file)]);
    assert!(
        run.stderr
            .contains("export CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS=1"),
        "{}",
        run.stderr
    );
    let run = home.get(
        GOOD,
        &[
            ("CODESTORAGE_PRIVATE_KEY_FILE", file),
            ("CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS", "yes"),
        ],
    );
    jwt::verify(&run.password(), &key);
}

#[test]
fn switches_read_only_clear_words_and_say_which_variable_is_wrong() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("k.pem", &key.pem);
    set_mode(&path, 0o644);
    let file = path.to_str().unwrap();
    for off in ["False", "OFF", "0", "no"] {
        let run = home.get(
            GOOD,
            &[
                ("CODESTORAGE_PRIVATE_KEY_FILE", file),
                ("CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS", off),
            ],
        );
        assert_eq!(run.stdout, "quit=1\n", "{off} must not turn the switch on");
    }
    let run = home.get(
        GOOD,
        &[
            ("CODESTORAGE_PRIVATE_KEY_FILE", file),
            ("CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS", " 0"),
        ],
    );
    assert!(
        run.stderr
            .contains("CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS=\" 0\": not a switch"),
        "{}",
        run.stderr
    );
    let run = home.get(
        GOOD,
        &[
            ("CODESTORAGE_PRIVATE_KEY", key.pem.as_str()),
            ("CODESTORAGE_DEBUG", "maybe"),
        ],
    );
    jwt::verify(&run.password(), &key);
    assert!(
        run.stderr
            .contains("CODESTORAGE_DEBUG=\"maybe\": not a switch"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_subject_with_control_characters_is_refused_and_never_reaches_the_terminal() {
    let key = TestKey::p256();
    let home = Home::new();
    let run = home.get(
        GOOD,
        &[
            ("CODESTORAGE_PRIVATE_KEY", key.pem.as_str()),
            ("CODESTORAGE_SUBJECT", "ci\u{1b}[2Jbot"),
        ],
    );
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr
            .contains("CODESTORAGE_SUBJECT=\"ci\\u{1b}[2Jbot\""),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\u{1b}'));
    let run = home.get(
        GOOD,
        &[
            ("CODESTORAGE_PRIVATE_KEY", key.pem.as_str()),
            ("USER", "eve\u{1b}[2J"),
            ("CODESTORAGE_DEBUG", "1"),
        ],
    );
    let claims = jwt::verify(&run.password(), &key).claims;
    assert!(
        claims["sub"].as_str().unwrap().starts_with("unknown@"),
        "{claims}"
    );
    assert!(!run.stderr.contains('\u{1b}'));
}

#[test]
fn a_repository_pattern_that_can_never_match_is_a_config_error_with_the_fix() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config(
        "[org.acme]\nkey_file = \"acme.pem\"\n\n[[org.acme.repo]]\nmatch = \"/mirrors/*.git\"\nscopes = [\"git:read\"]\n",
    );
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains("config.toml:5:")
            && run.stderr.contains("can never match")
            && run.stderr.contains("write it as \"mirrors/*\""),
        "{}",
        run.stderr
    );
}

#[test]
fn a_config_others_can_write_is_refused() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    set_mode(&home.config_path(), 0o666);
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains("writable by others (mode 666)") && run.stderr.contains("chmod 600"),
        "{}",
        run.stderr
    );
    set_mode(&home.config_path(), 0o644);
    jwt::verify(&home.get(GOOD, &[]).password(), &key);
}

/// Gives `path` to user 4242, as another user's file would be (the tests run as root).
fn give_away(path: &std::path::Path) {
    let status = std::process::Command::new("chown")
        .arg("4242")
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "chown needs root; run these tests as root"
    );
}

#[test]
fn a_config_another_user_owns_or_could_swap_is_refused_with_the_fix() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_command = [\"/bin/false\"]\n");
    give_away(&home.config_path());
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    let config = home.config_path();
    assert!(
        run.stderr.contains(&format!(
            "config file {} is owned by user 4242, not by you (user 0) or root, and it decides which programs run; check its contents, then run `chown 0 {}`",
            config.display(),
            config.display()
        )),
        "{}",
        run.stderr
    );
    // Ours again, but in a directory others may write: sticky (as /tmp) or not.
    std::fs::remove_file(&config).unwrap();
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    let dir = config.parent().unwrap();
    for (mode, fix) in [
        (0o777, format!("run `chmod go-w {}`", dir.display())),
        (
            0o1777,
            "move it into a directory only you can write".to_owned(),
        ),
    ] {
        set_mode(dir, mode);
        let run = home.get(GOOD, &[]);
        assert_eq!(run.stdout, "quit=1\n");
        assert!(
            run.stderr.contains(&format!(
                "is in directory {}, which others may write (mode {mode:o})",
                dir.display()
            )) && run.stderr.contains(&fix),
            "{}",
            run.stderr
        );
    }
    set_mode(dir, 0o700);
    jwt::verify(&home.get(GOOD, &[]).password(), &key);
}

#[test]
fn a_key_file_another_user_owns_is_refused_unless_allowed_as_a_mounted_secret() {
    let key = TestKey::p256();
    let home = Home::new();
    let path = home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    give_away(&path);
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains(
            "is owned by user 4242, not by you (user 0) or root, so another user could swap the key"
        ) && run
            .stderr
            .contains(&format!("run `chown 0 {}`", path.display()))
            && run.stderr.contains("allow_insecure_key_permissions = true"),
        "{}",
        run.stderr
    );
    assert_key_not_shown(&run, &key);
    home.write_config(
        "[org.acme]\nkey_file = \"acme.pem\"\nallow_insecure_key_permissions = true\n",
    );
    jwt::verify(&home.get(GOOD, &[]).password(), &key);
}

#[test]
fn a_public_key_file_another_user_owns_is_refused() {
    let key = TestKey::p256();
    let home = Home::new();
    let public = home.path().join(".config/codestorage/acme.pub.pem");
    std::fs::write(&public, &key.public_pem).unwrap();
    give_away(&public);
    home.write_config(&format!(
        "[org.acme]\nsign_command = [\"/bin/false\"]\npublic_key_file = \"{}\"\n",
        public.display()
    ));
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains(&format!(
            "{} is owned by user 4242, not by you (user 0) or root, so another user could swap the key",
            public.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_key_command_that_prints_two_keys_is_refused_without_showing_either() {
    let (first, second) = (TestKey::p256(), TestKey::p256());
    let home = Home::new();
    let a = home.write_key("a.pem", &first.pem);
    let b = home.write_key("b.pem", &second.pem);
    home.write_config(&format!(
        "[org.acme]\nkey_command = [\"cat\", \"{}\", \"{}\"]\n",
        a.display(),
        b.display()
    ));
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(
        run.stderr.contains(&format!(
            "key_command `cat {} {}` holds 2 private keys, and which one is registered with Code Storage cannot be told",
            a.display(),
            b.display()
        )),
        "{}",
        run.stderr
    );
    assert_key_not_shown(&run, &first);
    assert_key_not_shown(&run, &second);
    home.write_config(&format!(
        "[org.acme]\nkey_command = [\"cat\", \"{}\"]\n",
        b.display()
    ));
    jwt::verify(&home.get(GOOD, &[]).password(), &second);
}

#[test]
fn a_typo_in_the_organisation_names_the_configured_ones_and_quits() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config(
        "[org.acme]\nkey_file = \"acme.pem\"\n\n[org.beta]\nkey_env = \"BETA_KEY\"\n",
    );
    let run = home.get(
        "protocol=https\nhost=acmee.code.storage\npath=team/x.git\n\n",
        &[],
    );
    assert_eq!(
        run.stdout, "quit=1\n",
        "git must not prompt: {}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "organisation acmee is not configured in {} (it configures acme, beta); did you mean acme?",
            home.config_path().display()
        )) && run.stderr.contains("keygen --org acmee"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_organisation_wide_repository_name_is_never_signed_by_get() {
    let key = TestKey::p256();
    let home = Home::new();
    let run = home.get(
        "protocol=https\nhost=acme.code.storage\npath=org.git\n\n",
        &[("CODESTORAGE_PRIVATE_KEY", key.pem.as_str())],
    );
    assert_eq!(run.stdout, "quit=1\n");
    assert!(run.stderr.contains("whole organisation"), "{}", run.stderr);
}

#[test]
fn hosts_that_are_not_host_names_are_declined_silently() {
    let key = TestKey::p256();
    let home = Home::new();
    for host in [
        "[acme.code.storage]evil.com",
        "acme.code.storage]evil.com",
        "acme.code.storage:x",
        "user@acme.code.storage",
    ] {
        let run = home.get(
            format!("protocol=https\nhost={host}\npath=team/x.git\n\n"),
            &[("CODESTORAGE_PRIVATE_KEY", key.pem.as_str())],
        );
        assert_eq!(
            (run.stdout.as_str(), run.stderr.as_str()),
            ("", ""),
            "{host}"
        );
    }
}

#[test]
fn odd_server_headers_and_large_requests_still_get_a_token() {
    let key = TestKey::p256();
    let home = Home::new();
    let env = [("CODESTORAGE_PRIVATE_KEY", key.pem.as_str())];
    let mut request = b"protocol=https\nhost=acme.code.storage\npath=team/x.git\n".to_vec();
    request.extend_from_slice(b"wwwauth[]=Basic realm=\"caf\xe9\"\n");
    request.extend_from_slice(b"wwwauth[]=Bearer realm=\"a\rb\"\n");
    request.extend_from_slice(b"future_key=\x00\n");
    // Just over the old 64 KiB bound, as many large WWW-Authenticate headers make it.
    for _ in 0..70 {
        request.extend_from_slice(format!("wwwauth[]=Negotiate {}\n", "x".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\n");
    let run = home.get(&request, &env);
    jwt::verify(&run.password(), &key);
    // What the helper needs must still be clean.
    let run = home.get(
        b"protocol=https\nhost=acme.code.storage\rx\npath=team/x.git\n\n",
        &env,
    );
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("carriage return"), "{}", run.stderr);
}

#[test]
fn doctor_warns_about_a_remote_that_carries_a_token_and_never_shows_it() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    // A real token, as an SDK puts it in a remote URL.
    let token = user.ok(&["token", "--org", "acme", "team/x"]).stdout;
    let token = token.trim();
    assert!(token.starts_with("eyJ"), "{token}");
    let repo = user.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let mut command = user.command("git");
        command.args(args).current_dir(&repo);
        let run = support::home::run(command, "");
        assert_eq!(run.code, Some(0), "git {args:?}: {run:?}");
    };
    git(&["init", "-q"]);
    let with_token = format!("https://t:{token}@acme.code.storage/team/x.git");
    git(&["remote", "add", "origin", &with_token]);
    // Another host's credentials are not this helper's business.
    git(&[
        "remote",
        "add",
        "gh",
        &format!("https://u:{token}@github.com/x.git"),
    ]);

    let run = user.run_in(&repo, &["doctor"], "");
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token was shown: {run:?}"
    );
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("carries a token"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    let warning = warnings[0];
    assert!(
        warning
            .starts_with("warn  remote \"origin\"'s URL https://***@acme.code.storage/team/x.git")
            && warning.contains("never asks this helper")
            && warning.contains("plain text in .git/config"),
        "{warning}"
    );
    // A warning is not a failure: the remote works, only not through this helper.
    assert_eq!(run.code, Some(0), "{}", run.stdout);

    // The fix, pasted as printed, leaves the remote clean and doctor quiet about it.
    let (_, fix) = warning.split_once("; fix: ").unwrap();
    assert_eq!(
        fix,
        "git remote set-url origin https://acme.code.storage/team/x.git"
    );
    let mut shell = user.command("sh");
    shell.args(["-c", fix]).current_dir(&repo);
    let fixed = support::home::run(shell, "");
    assert_eq!(fixed.code, Some(0), "{fixed:?}");
    let mut get_url = user.command("git");
    get_url
        .args(["remote", "get-url", "origin"])
        .current_dir(&repo);
    assert_eq!(
        support::home::run(get_url, "").stdout.trim(),
        "https://acme.code.storage/team/x.git"
    );
    let run = user.run_in(&repo, &["doctor"], "");
    assert!(!run.stdout.contains("carries a token"), "{}", run.stdout);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
}

#[test]
fn doctor_fails_a_remote_with_a_user_and_no_password_and_its_fix_works() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    let repo = user.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let mut command = user.command("git");
        command.args(args).current_dir(&repo);
        support::home::run(command, "")
    };
    assert_eq!(git(&["init", "-q"]).code, Some(0));
    let remotes = [
        ("origin", "https://t@acme.code.storage/team/x.git"),
        ("gh", "https://octocat@github.com/x.git"),
    ];
    for (name, url) in remotes {
        assert_eq!(git(&["remote", "add", name, url]).code, Some(0));
    }
    let run = user.run_in(&repo, &["doctor"], "");
    let failures: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("names a user and no password"))
        .collect();
    // Only the host this helper serves; another host's users are not its business.
    assert_eq!(failures.len(), 1, "{}", run.stdout);
    assert!(
        failures[0]
            .starts_with("FAIL  remote \"origin\"'s URL https://***@acme.code.storage/team/x.git")
            && failures[0].contains("answers 403, not 401"),
        "{}",
        failures[0]
    );
    assert_ne!(run.code, Some(0));
    let (_, fix) = failures[0].split_once("; fix: ").unwrap();
    assert_eq!(
        fix,
        "git remote set-url origin https://acme.code.storage/team/x.git"
    );
    let mut shell = user.command("sh");
    shell.args(["-c", fix]).current_dir(&repo);
    assert_eq!(support::home::run(shell, "").code, Some(0));
    let run = user.run_in(&repo, &["doctor"], "");
    assert!(!run.stdout.contains("names a user"), "{}", run.stdout);
}

#[test]
fn doctor_warns_about_a_url_with_a_token_asked_about_and_names_the_remote_holding_it() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    let token = user.ok(&["token", "--org", "acme", "team/x"]).stdout;
    let with_token = format!("https://t:{}@acme.code.storage/team/x.git", token.trim());
    let run = user.run(&["doctor", &with_token], "");
    assert!(!run.stdout.contains(token.trim()), "the token was shown");
    assert!(
        run.stdout.contains("warn  https://***@acme.code.storage/team/x.git carries a token, so git sends that token and never asks this helper; fix: use https://acme.code.storage/team/x.git, without the token"),
        "{}",
        run.stdout
    );
    let repo = user.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    for args in [&["init", "-q"][..], &["remote", "add", "up", &with_token]] {
        let mut git = user.command("git");
        git.args(args).current_dir(&repo);
        assert_eq!(support::home::run(git, "").code, Some(0));
    }
    let run = user.run_in(&repo, &["doctor", &with_token], "");
    assert!(
        run.stdout.contains("never asks this helper; fix: git remote set-url up https://acme.code.storage/team/x.git\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn doctor_with_a_broken_config_fails_once_not_again_for_routing_it_cannot_know() {
    let user = User::new();
    let (key, _) = user.keygen("acme");
    // A custom host only, routed by setup; then a typo: the file no longer says which hosts.
    let custom = format!(
        "[org.acme]\nkey_file = \"{}\"\nhosts = [\"git.acme.dev\"]\n",
        key.display()
    );
    user.write_config(&custom);
    user.setup("acme", &key);
    assert!(
        user.git_list()
            .contains("credential.https://git.acme.dev.helper"),
        "{}",
        user.git_list()
    );
    let healthy = user.run(&["doctor"], "");
    assert!(!healthy.stdout.contains("FAIL"), "{}", healthy.stdout);
    user.write_config(&format!("{custom}ttl = \"forever\"\n"));
    let run = user.run(&["doctor"], "");
    let fails: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(fails.len(), 1, "{}", run.stdout);
    assert!(fails[0].contains("invalid ttl"), "{}", run.stdout);
    assert_ne!(run.code, Some(0));
}

#[test]
fn without_user_variables_the_subject_names_the_user_from_the_user_database() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    let mut command = home.command(support::home::HELPER);
    command
        .arg("get")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("USERNAME");
    let run = support::home::run(command, GOOD);
    let claims = jwt::verify(&run.password(), &key).claims;
    let id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let name = String::from_utf8(id.stdout).unwrap();
    let subject = claims["sub"].as_str().unwrap();
    assert!(
        subject.starts_with(&format!("{}@", name.trim())),
        "{subject}"
    );
}

/// The text between the first pair of backticks after `after` in `message`: a command the
/// helper tells the user to run.
fn command_after<'m>(message: &'m str, after: &str) -> &'m str {
    let (_, rest) = message
        .split_once(after)
        .unwrap_or_else(|| panic!("no {after:?} in {message}"));
    let (_, rest) = rest.split_once('`').unwrap();
    rest.split_once('`').unwrap().0
}

/// Runs `script` with `sh -c` in `home`'s environment plus `env`; fails the test unless it
/// exits 0.
fn sh(home: &Home, script: &str, env: &[(&str, &str)]) -> Run {
    let mut command = home.command("sh");
    command.args(["-c", script]).envs(env.iter().copied());
    let run = support::home::run(command, "");
    assert_eq!(run.code, Some(0), "{script}: {run:?}");
    run
}

#[test]
fn key_fixes_name_the_real_organisation_file_and_variable_and_work_as_printed() {
    let home = Home::new();
    let fixture = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    // A configured key file that is not there: keygen for this organisation, to that file.
    let missing = home.path().join("keys/acme key.pem");
    home.write_config(&format!(
        "[org.acme]\nkey_file = {:?}\n",
        missing.to_str().unwrap()
    ));
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    let keygen = command_after(&run.stderr, "make a key there with");
    assert_eq!(
        keygen,
        format!(
            "git-credential-codestorage keygen --org acme --out '{}'",
            missing.display()
        )
    );
    // An encrypted key file: the printed command (given the passphrase) writes a copy that works.
    let encrypted = home.write_key("acme.pem", &fixture("p256.encrypted.pem"));
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    let run = home.get(GOOD, &[]);
    assert_eq!(run.stdout, "quit=1\n");
    assert!(!run.stderr.contains(" KEY"), "{}", run.stderr);
    let decrypt = command_after(&run.stderr, "decrypt a copy with");
    let decrypt = decrypt.replacen(" -out ", " -passin pass:test -out ", 1);
    sh(&home, &decrypt, &[]);
    let decrypted = encrypted.with_file_name("acme.decrypted.pem");
    home.write_config("[org.acme]\nkey_file = \"acme.decrypted.pem\"\n");
    // Its public half by OpenSSL, to check the signatures independently of the helper.
    let public_pem = sh(
        &home,
        &format!("openssl pkey -in '{}' -pubout", decrypted.display()),
        &[],
    )
    .stdout;
    let public = TestKey::from_pems(
        std::fs::read_to_string(&decrypted).unwrap(),
        public_pem,
        "ES256",
    );
    jwt::verify(&home.get(GOOD, &[]).password(), &public);
    // An encrypted key in a variable: the printed pipeline names that variable.
    let pem = fixture("p256.encrypted.pem");
    home.write_config("");
    let env = [("CODESTORAGE_PRIVATE_KEY", pem.as_str())];
    let run = home.get(GOOD, &env);
    assert_eq!(run.stdout, "quit=1\n");
    let pipeline = command_after(&run.stderr, "passphrase: ");
    assert!(
        pipeline.contains("\"$CODESTORAGE_PRIVATE_KEY\""),
        "{pipeline}"
    );
    let printed = sh(&home, &format!("{pipeline} -passin pass:test"), &env).stdout;
    jwt::verify(
        &home
            .get(GOOD, &[("CODESTORAGE_PRIVATE_KEY", printed.as_str())])
            .password(),
        &public,
    );
}

#[test]
fn doctor_fills_the_organisation_and_program_from_the_repository_it_runs_in() {
    let user = User::new();
    let repo = user.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    for args in [
        &["init", "-q"][..],
        &[
            "remote",
            "add",
            "origin",
            "https://acme.code.storage/team/x.git",
        ],
    ] {
        let mut command = user.command("git");
        command.args(args).current_dir(&repo);
        assert_eq!(support::home::run(command, "").code, Some(0), "{args:?}");
    }
    let run = user.run_in(&repo, &["doctor"], "");
    let key = user.path().join(".config/codestorage/acme.pem");
    let program = support::cli::helper_path();
    assert!(
        run.stdout.contains(&format!(
            "fix: {program} setup --org acme --key-file {} (make the key first with `{program} keygen --org acme`)",
            key.display()
        )),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("ORG"), "{}", run.stdout);
    // Outside any repository, nothing names the organisation: the placeholder stays.
    let run = user.run(&["doctor"], "");
    assert!(
        run.stdout
            .contains(&format!("fix: {program} setup --org ORG --key-file PATH")),
        "{}",
        run.stdout
    );
}
