//! `setup` as a user runs it: the config file edited without losing a comment, git's config
//! written once and only once, `--dry-run` and `--remove`, and git itself then asking the helper.

use crate::support;

use support::cli::{User, helper_path};
use support::jwt::{TestKey, verify};

const HELPER_KEY: &str = "credential.https://*.code.storage.helper";
const PATH_KEY: &str = "credential.https://*.code.storage.useHttpPath";

const USER_CONFIG: &str = r#"# My Code Storage settings.
ttl = "30m"   # short, on purpose

# The beta organisation, for the mirror job.
[org.beta]
key_env = "BETA_KEY"
scopes = ["git:read"]

[[org.beta.repo]]
match = "mirrors/**"   # read-only
ttl = "5m"
"#;

fn user_with_key() -> (User, TestKey, String) {
    let user = User::new();
    let key = TestKey::p256();
    let path = user.write_key("acme.pem", &key.pem);
    (user, key, path.to_str().unwrap().to_owned())
}

#[test]
fn setup_adds_the_organisation_and_keeps_everything_else() {
    let (user, _, key) = user_with_key();
    user.write_config(USER_CONFIG);
    user.git(&["config", "--global", "user.name", "Someone"], "");
    let run = user.run(&["setup", "--org", "acme", "--key-file", &key], "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        user.config_text(),
        format!("{USER_CONFIG}\n[org.acme]\nkey_file = \"{key}\"\n")
    );
    assert!(run.stdout.contains("loads (ES256)"), "{}", run.stdout);
    assert_eq!(user.git_values(HELPER_KEY), ["", &helper_path()]);
    assert_eq!(user.git_values(PATH_KEY), ["true"]);
    assert_eq!(user.git_values("user.name"), ["Someone"]);

    // A new key file for an existing organisation changes that one line only.
    let other = user.write_key("acme2.pem", &TestKey::p256().pem);
    user.ok(&[
        "setup",
        "--org",
        "acme",
        "--key-file",
        other.to_str().unwrap(),
    ]);
    assert_eq!(
        user.config_text(),
        format!(
            "{USER_CONFIG}\n[org.acme]\nkey_file = \"{}\"\n",
            other.display()
        )
    );
}

#[test]
fn setup_twice_changes_nothing() {
    let (user, _, key) = user_with_key();
    user.write_config(USER_CONFIG);
    user.run(&["setup", "--org", "acme", "--key-file", &key], "");
    let (config, gitconfig, list) = (user.config_text(), user.gitconfig_text(), user.git_list());
    let modified = std::fs::metadata(user.config_path())
        .unwrap()
        .modified()
        .unwrap();
    let run = user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    assert_eq!(user.config_text(), config);
    assert_eq!(user.gitconfig_text(), gitconfig);
    assert_eq!(user.git_list(), list);
    assert_eq!(
        std::fs::metadata(user.config_path())
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "not even rewritten"
    );
    assert!(
        run.stdout.contains("is up to date")
            && run.stdout.contains("git config --global is up to date"),
        "{}",
        run.stdout
    );
    assert_eq!(
        list.matches("credential.https://*.code.storage.helper=")
            .count(),
        2,
        "{list}"
    );
}

#[test]
fn setup_without_a_key_keeps_the_configured_one_and_sets_gits_config_again() {
    let (user, _, key) = user_with_key();
    user.write_config(USER_CONFIG);
    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    let (config, list) = (user.config_text(), user.git_list());
    user.git(&["config", "--global", "--unset-all", HELPER_KEY], "");

    // doctor's fix is a command that works as printed, with nothing left to fill in.
    let doctor = user.run(&["doctor", "https://acme.code.storage/x.git"], "");
    // This binary is not on the test's PATH, so the command names it by its path.
    let fix = format!(
        "re-run `{} setup --org acme`, which keeps its key",
        helper_path()
    );
    assert!(doctor.stdout.contains(&fix), "{}", doctor.stdout);

    let again = user.ok(&["setup", "--org", "acme"]);
    assert_eq!(user.config_text(), config, "{}", again.stdout);
    assert_eq!(user.git_values(HELPER_KEY), ["", &helper_path()]);
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(user.git_list()), sorted(list));

    // An organisation the config does not have yet still needs its key.
    let new = user.run(&["setup", "--org", "gamma"], "");
    assert_eq!(new.code, Some(2), "{new:?}");
    assert!(new.stderr.contains("setup needs the key"), "{}", new.stderr);
    assert_eq!(user.config_text(), config);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let (user, _, key) = user_with_key();
    let run = user.ok(&["setup", "--org", "acme", "--key-file", &key, "--dry-run"]);
    assert!(!user.config_path().exists());
    assert!(!user.gitconfig_path().exists());
    assert!(
        run.stdout
            .contains(&format!("would write {}:", user.config_path().display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("    key_file = \"{key}\"")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "would run: git config --global --add 'credential.https://*.code.storage.helper' ''\n"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("would run: git config --global --add 'credential.https://*.code.storage.useHttpPath' true\n"));

    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    let run = user.ok(&["setup", "--org", "acme", "--key-file", &key, "--dry-run"]);
    assert!(!run.stdout.contains("would"), "{}", run.stdout);
}

#[test]
fn remove_undoes_setup() {
    let (user, _, key) = user_with_key();
    user.write_config(USER_CONFIG);
    user.git(&["config", "--global", "user.name", "Someone"], "");
    let gitconfig = user.gitconfig_text();
    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    let run = user.ok(&["setup", "--remove", "--org", "acme"]);
    assert_eq!(user.config_text(), USER_CONFIG);
    // beta (key_env) still uses *.code.storage: the wildcard entry stays for it.
    assert_eq!(user.git_values(HELPER_KEY), ["", &helper_path()]);
    assert!(
        run.stdout.contains("git config --global is up to date"),
        "{}",
        run.stdout
    );

    let run = user.ok(&["setup", "--remove", "--org", "beta"]);
    assert!(
        run.stdout
            .contains("removed credential.https://*.code.storage.helper"),
        "{}",
        run.stdout
    );
    assert_eq!(
        user.gitconfig_text(),
        gitconfig,
        "git's config is back as it was"
    );
    assert!(!user.config_text().contains("[org.beta]"));
    assert!(
        user.config_text()
            .starts_with("# My Code Storage settings.\nttl = \"30m\"   # short, on purpose\n")
    );

    let again = user.ok(&["setup", "--remove", "--org", "beta"]);
    assert!(
        again.stdout.contains("nothing to remove"),
        "{}",
        again.stdout
    );
}

#[test]
fn setup_refuses_a_key_others_can_read_and_writes_nothing() {
    let (user, _, key) = user_with_key();
    support::home::set_mode(std::path::Path::new(&key), 0o644);
    let run = user.run(&["setup", "--org", "acme", "--key-file", &key], "");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!("chmod 600 {key}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(!user.config_path().exists());
    assert!(!user.gitconfig_path().exists());

    let missing = user.run(
        &["setup", "--org", "acme", "--key-file", "/nonexistent/k.pem"],
        "",
    );
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("does not exist") && missing.stderr.contains("keygen"),
        "{}",
        missing.stderr
    );
    let none = user.run(&["setup", "--org", "acme"], "");
    assert_eq!(none.code, Some(2), "{none:?}");
    assert!(none.stderr.contains("--key-file"));
}

#[test]
fn custom_hosts_and_key_commands_get_their_own_entries() {
    let (user, _, key) = user_with_key();
    let run = user.run(
        &[
            "setup",
            "--org",
            "acme",
            "--host",
            "git.acme.dev:8443",
            "--key-command",
            "cat",
            &key,
        ],
        "",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        user.config_text().ends_with(&format!(
            "[org.acme]\nkey_command = [\"cat\", \"{key}\"]\nhosts = [\"git.acme.dev:8443\"]\n"
        )),
        "{}",
        user.config_text()
    );
    assert_eq!(
        user.git_values("credential.https://git.acme.dev:8443.helper"),
        ["", &helper_path()]
    );
    assert_eq!(
        user.git_values("credential.https://git.acme.dev:8443.useHttpPath"),
        ["true"]
    );
    assert!(
        user.git_values(HELPER_KEY).is_empty(),
        "no wildcard entry for a custom domain"
    );
}

#[test]
fn git_then_asks_the_helper_even_with_credential_store_configured() {
    let (user, key, key_path) = user_with_key();
    user.git(&["config", "--global", "credential.helper", "store"], "");
    user.ok(&["setup", "--org", "acme", "--key-file", &key_path]);
    let run = user.git(
        &["credential", "fill"],
        "url=https://acme.code.storage/team/x.git\n\n",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let token = verify(&run.password(), &key);
    assert_eq!(token.claims["repo"], "team/x");
    // git hands the credential to every helper on success: credential-store was reset away.
    let approve = format!(
        "protocol=https\nhost=acme.code.storage\npath=team/x.git\nusername=t\npassword={}\n\n",
        run.password()
    );
    user.git(&["credential", "approve"], &approve);
    assert!(
        !user.path().join(".git-credentials").exists(),
        "the token was written to disk"
    );
}

#[test]
fn local_setup_writes_the_repository_config_only() {
    let (user, _, key) = user_with_key();
    let repo = user.path().join("work");
    user.git(&["init", "--quiet", repo.to_str().unwrap()], "");
    let run = user.run_in(
        &repo,
        &["setup", "--org", "acme", "--key-file", &key, "--local"],
        "",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let local = std::fs::read_to_string(repo.join(".git/config")).unwrap();
    assert!(
        local.contains("[credential \"https://*.code.storage\"]"),
        "{local}"
    );
    assert!(user.git_values(HELPER_KEY).is_empty());
    let outside = user.run(
        &["setup", "--org", "acme", "--key-file", &key, "--local"],
        "",
    );
    assert_eq!(outside.code, Some(1));
    assert!(
        outside.stderr.contains("inside a git repository"),
        "{}",
        outside.stderr
    );
}

/// doctor's model of which helpers git asks, checked against git itself: every helper below
/// appends its name to a file when git runs it.
#[test]
fn doctors_view_of_the_helper_list_is_what_git_runs() {
    use git_credential_codestorage::gitconfig::{helpers_for, parse_list};
    let user = User::new();
    let log = user.path().join("ran");
    let helper = |name: &str| format!("!f() {{ echo {name} >> '{}'; }}; f", log.display());
    let sections = [
        ("credential", "global"),
        ("credential \"https://*.code.storage\"", "wildcard"),
        ("credential \"https://a*e.code.storage\"", "glob-in-label"),
        ("credential \"https://*.*.storage\"", "two-wildcards"),
        ("credential \"acme.code.storage\"", "partial"),
        ("credential \"ACME.code.storage\"", "partial-upper"),
        (
            "credential \"https://acme.code.storage:443/\"",
            "default-port",
        ),
        (
            "credential \"https://acme.code.storage:8443\"",
            "other-port",
        ),
        ("credential \"https://t@acme.code.storage\"", "with-user"),
        ("credential \"http://acme.code.storage\"", "http"),
        ("credential \"https://code.storage\"", "parent"),
    ];
    let mut text = String::new();
    for (section, name) in sections {
        text.push_str(&format!(
            "[{section}]\n\thelper = \"{}\"\n",
            helper(name).replace('"', "\\\"")
        ));
    }
    // A reset in the middle clears what came before it, as setup's empty `helper =` does.
    text.push_str("[credential \"https://*.code.storage\"]\n\thelper =\n");
    text.push_str(&format!(
        "[credential]\n\thelper = \"{}\"\n",
        helper("after-reset")
    ));
    std::fs::write(user.gitconfig_path(), &text).unwrap();

    // What doctor's model predicts git will run for the URL, and what git then runs.
    let predict_then_fill = || {
        let list = {
            let mut command = user.command("git");
            command.args(["config", "--list", "--show-origin", "--null"]);
            command.output().unwrap().stdout
        };
        let entries = parse_list(&list);
        let predicted: Vec<String> = helpers_for(&entries, "https://acme.code.storage/")
            .iter()
            .map(|e| e.value.clone().unwrap())
            .collect();
        user.git(
            &["credential", "fill"],
            "url=https://acme.code.storage/\n\n",
        );
        predicted
    };
    let predicted = predict_then_fill();
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    let ran: Vec<&str> = ran.lines().collect();
    assert_eq!(ran, ["after-reset"], "{text}");
    assert_eq!(predicted, [helper("after-reset")]);

    // Without the reset: the whole list, in order.
    let before_reset = text
        .split("[credential \"https://*.code.storage\"]\n\thelper =\n")
        .next()
        .unwrap();
    std::fs::write(user.gitconfig_path(), before_reset).unwrap();
    std::fs::remove_file(&log).ok();
    let predicted = predict_then_fill();
    let ran = std::fs::read_to_string(&log).unwrap();
    let expected: Vec<String> = ran.lines().map(helper).collect();
    assert_eq!(predicted, expected, "git ran: {ran}");
    assert!(ran.starts_with("global\nwildcard\n"), "{ran}");
}

// ---- Hardening: each test below failed before setup became plan-then-apply under a lock. ----

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::home::{HELPER, Run};

/// Runs `command` and fails the test if it is still running after `limit` (a hang, not a
/// slow machine: every command here finishes in well under a second when it works).
fn run_within(mut command: Command, limit: Duration) -> Run {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{command:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code(),
    }
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The non-empty lines of a PEM block, none of which may ever be printed.
fn pem_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.trim().is_empty()).collect()
}

fn assert_no_pem_line(output: &str, pem: &str) {
    for line in pem_lines(pem) {
        assert!(!output.contains(line), "printed {line:?}:\n{output}");
    }
}

#[test]
fn concurrent_setups_keep_every_organisation_and_all_succeed() {
    const N: usize = 8;
    let user = User::new();
    let keys: Vec<String> = (0..N)
        .map(|i| {
            let path = user.write_key(&format!("org{i}.pem"), &TestKey::p256().pem);
            path.to_str().unwrap().to_owned()
        })
        .collect();
    // Every process waits on its stdin until all are started, then all are let go at once.
    let mut children: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut command = user.command("sh");
            command
                .args(["-c", r#"read go; exec "$0" "$@""#, HELPER, "setup"])
                .args(["--org", &format!("org{i}"), "--key-file", key])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for child in &mut children {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "setup {i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let config = user.config_text();
    for (i, key) in keys.iter().enumerate() {
        assert!(
            config.contains(&format!("[org.org{i}]\nkey_file = \"{key}\"\n")),
            "org{i} lost:\n{config}"
        );
    }
    assert_eq!(user.git_values(HELPER_KEY), ["", &helper_path()]);
    assert_eq!(user.git_values(PATH_KEY), ["true"]);
    // Exactly one header, one wildcard section: nothing was written twice.
    assert_eq!(config.matches("# git-credential-codestorage").count(), 1);
    assert_eq!(user.gitconfig_text().matches("[credential").count(), 1);
}

#[test]
fn a_fifo_a_device_or_a_huge_config_is_refused_without_hanging() {
    let (user, _, key) = user_with_key();
    let fifo = user.path().join("config.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let huge = user.path().join("huge.toml");
    std::fs::write(&huge, "# padding\n".repeat(110_000)).unwrap();
    for (config, expected) in [
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "device"),
        (huge.as_path(), "larger than"),
    ] {
        for extra in [&[][..], &["--dry-run"][..]] {
            let mut command = user.command(HELPER);
            command
                .args(["setup", "--org", "acme", "--key-file", &key])
                .args(extra)
                .env("CODESTORAGE_CONFIG", config);
            let run = run_within(command, Duration::from_secs(20));
            assert_eq!(run.code, Some(1), "{config:?}: {run:?}");
            assert!(
                run.stderr.contains(expected) && run.stderr.contains(config.to_str().unwrap()),
                "{}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        }
    }
    assert_eq!(std::fs::metadata(&huge).unwrap().len(), 1_100_000);
    assert!(!user.gitconfig_path().exists(), "git's config was written");
    assert!(!Path::new("/dev/zero.lock").exists());
}

#[test]
fn setup_writes_the_config_owner_only_whatever_the_umask() {
    let (user, _, key) = user_with_key();
    let dir = user.path().join("fresh/codestorage");
    let config = dir.join("config.toml");
    for run_number in 0..2 {
        let mut command = user.command("sh");
        command
            .args(["-c", r#"umask 000; exec "$0" "$@""#, HELPER])
            .args([
                "setup",
                "--org",
                &format!("o{run_number}"),
                "--key-file",
                &key,
            ])
            .env("CODESTORAGE_CONFIG", &config);
        let run = support::home::run(command, "");
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_eq!(mode_of(&config), 0o600, "run {run_number}");
    }
    assert_eq!(mode_of(&dir), 0o700);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode_of(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn a_new_key_source_takes_the_old_ones_place_and_comments() {
    let (user, _, key) = user_with_key();
    user.write_config(
        "[org.acme]\n# the laptop key\nkey_file = \"old.pem\"  # my comment\nttl = 60\n\n[[org.acme.repo]]\nmatch = \"x/**\"\n",
    );
    let pem = std::fs::read_to_string(&key).unwrap();
    let mut command = user.command(HELPER);
    command
        .args(["setup", "--org", "acme", "--key-env", "ACME_KEY"])
        .env("ACME_KEY", &pem);
    let run = support::home::run(command, "");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        user.config_text(),
        "[org.acme]\n# the laptop key\nkey_env = \"ACME_KEY\"  # my comment\nttl = 60\n\n[[org.acme.repo]]\nmatch = \"x/**\"\n"
    );
    // And back to a file: the same place, the same comments.
    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    assert_eq!(
        user.config_text(),
        format!(
            "[org.acme]\n# the laptop key\nkey_file = \"{key}\"  # my comment\nttl = 60\n\n[[org.acme.repo]]\nmatch = \"x/**\"\n"
        )
    );
}

#[test]
fn remove_shows_and_backs_up_what_setup_did_not_write() {
    let (user, _, key) = user_with_key();
    user.write_config(&format!(
        "{USER_CONFIG}\n[[org.beta.repo]]\nmatch = \"agents/*\"\nops = [\"no-force-push\"]\n"
    ));
    let before = user.config_text();
    let dry = user.ok(&["setup", "--remove", "--org", "beta", "--dry-run"]);
    assert_eq!(user.config_text(), before);
    for expected in [
        "would remove [org.beta]",
        "scopes",
        "[[org.beta.repo]] match = \"mirrors/**\" (line 9)",
        "[[org.beta.repo]] match = \"agents/*\" (line 13)",
        "would keep a copy of",
    ] {
        assert!(dry.stdout.contains(expected), "{expected}: {}", dry.stdout);
    }
    let dir = user.config_path().parent().unwrap().to_owned();
    let backups = || -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("config.toml.bak-"))
            .collect();
        found.sort();
        found
    };
    assert!(backups().is_empty(), "--dry-run made a backup");

    let run = user.ok(&["setup", "--remove", "--org", "beta"]);
    assert!(
        !user.config_text().contains("beta"),
        "{}",
        user.config_text()
    );
    let made = backups();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(std::fs::read_to_string(&made[0]).unwrap(), before);
    assert_eq!(mode_of(&made[0]), 0o600);
    assert!(
        run.stdout.contains(&made[0].display().to_string()),
        "{}",
        run.stdout
    );

    // What setup wrote itself goes without a copy.
    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    let dry = user.ok(&["setup", "--remove", "--org", "acme", "--dry-run"]);
    assert!(
        dry.stdout.contains("would remove [org.acme]"),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains("copy"), "{}", dry.stdout);
    user.ok(&["setup", "--remove", "--org", "acme"]);
    assert_eq!(backups().len(), 1);
}

#[test]
fn a_pasted_key_is_never_echoed() {
    let (user, key, _) = user_with_key();
    for option in ["--key-file", "--key-env"] {
        let joined = format!("{option}={}", key.pem);
        for extra in [&[][..], &["--dry-run"][..]] {
            // Both spellings: the value after a space is where clap itself used to echo it.
            for given in [vec![option, key.pem.as_str()], vec![joined.as_str()]] {
                let mut args = vec!["setup", "--org", "acme"];
                args.extend_from_slice(&given);
                args.extend_from_slice(extra);
                let run = user.run(&args, "");
                assert_ne!(run.code, Some(0), "{option}: {run:?}");
                assert!(
                    run.stderr.contains("PEM text") && run.stderr.contains("--key-env"),
                    "{option}: {}",
                    run.stderr
                );
                assert_no_pem_line(&run.stderr, &key.pem);
                assert_no_pem_line(&run.stdout, &key.pem);
            }
        }
    }
    assert!(!user.config_path().exists());
    assert!(!user.gitconfig_path().exists());
}

#[test]
fn a_relative_key_command_is_refused_with_the_absolute_fix() {
    let (user, _, key) = user_with_key();
    let bin = user.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("print-key");
    std::fs::write(&script, format!("#!/bin/sh\ncat '{key}'\n")).unwrap();
    support::home::set_mode(&script, 0o755);
    for program in ["bin/print-key", "./bin/print-key"] {
        let run = user.run(
            &["setup", "--org", "acme", "--key-command", program, "--raw"],
            "",
        );
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr
                .contains(&format!("--key-command {} --raw", script.display())),
            "{}",
            run.stderr
        );
        assert!(!user.config_path().exists());
    }
    // Absolute, or a bare name looked up on PATH: both fine.
    user.ok(&[
        "setup",
        "--org",
        "acme",
        "--key-command",
        script.to_str().unwrap(),
    ]);
    user.ok(&["setup", "--org", "acme", "--key-command", "cat", &key]);
}

#[test]
fn fix_commands_name_the_real_organisation_path_and_program() {
    let (user, _, key) = user_with_key();
    let missing = user.run(
        &["setup", "--org", "acme", "--key-file", "/nonexistent/k.pem"],
        "",
    );
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains(&format!(
            "{} keygen --org acme --out /nonexistent/k.pem",
            helper_path()
        )),
        "{}",
        missing.stderr
    );
    assert!(!missing.stderr.contains("ORG"), "{}", missing.stderr);

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let encrypted = user.write_key(
        "locked.pem",
        &std::fs::read_to_string(fixtures.join("p256.encrypted.pem")).unwrap(),
    );
    let run = user.run(
        &[
            "setup",
            "--org",
            "acme",
            "--key-file",
            encrypted.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains(&format!("openssl pkey -in {} -out ", encrypted.display())),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(" KEY"), "{}", run.stderr);

    let ok = user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    assert!(
        ok.stdout.contains(&format!("`{} doctor`", helper_path())),
        "{}",
        ok.stdout
    );

    // keygen's next step: this binary by absolute path unless PATH finds it.
    let mut command = user.command(HELPER);
    command.args([
        "keygen",
        "--org",
        "acme",
        "--out",
        user.path().join("k2.pem").to_str().unwrap(),
    ]);
    let run = support::home::run(command, "");
    assert!(
        run.stderr.contains(&format!(
            "\n  {} setup --org acme --key-file {}",
            helper_path(),
            user.path().join("k2.pem").display()
        )),
        "{}",
        run.stderr
    );
    let bin_dir = Path::new(HELPER).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_owned())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut command = user.command(HELPER);
    command
        .args([
            "keygen",
            "--org",
            "acme",
            "--out",
            user.path().join("k3.pem").to_str().unwrap(),
        ])
        .env("PATH", path);
    let run = support::home::run(command, "");
    assert!(
        run.stderr
            .contains("\n  git-credential-codestorage setup --org acme --key-file "),
        "{}",
        run.stderr
    );
}

#[test]
fn keygen_ed25519_writes_pkcs8_v1_that_openssl_reads_and_the_helper_signs_with() {
    use base64::Engine;
    let user = User::new();
    let out = user.path().join("ed.pem");
    let made = user.ok(&[
        "keygen",
        "--org",
        "acme",
        "--ed25519",
        "--out",
        out.to_str().unwrap(),
    ]);
    let pem = std::fs::read_to_string(&out).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // RFC 8410's OneAsymmetricKey, version 0 (v1): no public key field after the private key.
    assert_eq!(der.len(), 48, "{der:02x?}");
    assert_eq!(
        der[..16],
        [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20
        ]
    );

    // OpenSSL reads the key and derives the same public key, independently of this crate.
    let out_text = out.to_str().unwrap();
    support::signers::output("openssl", &["pkey", "-in", out_text, "-noout"]);
    let public = support::signers::output("openssl", &["pkey", "-pubout", "-in", out_text]);
    assert_eq!(public, made.stdout);

    user.ok(&[
        "setup",
        "--org",
        "acme",
        "--key-file",
        out.to_str().unwrap(),
    ]);
    let run = user.git(
        &["credential", "fill"],
        "url=https://acme.code.storage/team/x.git\n\n",
    );
    let key = TestKey::from_pems(pem, made.stdout.clone(), "EdDSA");
    assert_eq!(verify(&run.password(), &key).claims["repo"], "team/x");
}

#[test]
fn concurrent_keygens_for_one_file_write_exactly_one_key() {
    const N: usize = 6;
    let user = User::new();
    let out = user.path().join("race.pem");
    let mut children: Vec<_> = (0..N)
        .map(|_| {
            let mut command = user.command("sh");
            command
                .args(["-c", r#"read go; exec "$0" "$@""#, HELPER])
                .args(["keygen", "--org", "acme", "--out", out.to_str().unwrap()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for child in &mut children {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(winners.len(), 1, "{outputs:?}");
    for loser in outputs.iter().filter(|o| !o.status.success()) {
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert!(stderr.contains("already exists"), "{stderr}");
    }
    // The key on disk is the one whose public half the winner printed.
    let key = TestKey::from_pems(
        std::fs::read_to_string(&out).unwrap(),
        String::from_utf8(winners[0].stdout.clone()).unwrap(),
        "ES256",
    );
    user.write_config(&format!("[org.acme]\nkey_file = \"{}\"\n", out.display()));
    let get = user.run(
        &["get"],
        "protocol=https\nhost=acme.code.storage\npath=x.git\n\n",
    );
    verify(&get.password(), &key);
    let left: Vec<_> = std::fs::read_dir(user.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("race"))
        .collect();
    assert_eq!(left.len(), 1, "temporary files left: {left:?}");
}

#[test]
fn the_second_setup_plans_nothing_and_says_so() {
    let (user, _, key) = user_with_key();
    user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    let dry = user.ok(&["setup", "--org", "acme", "--key-file", &key, "--dry-run"]);
    assert!(dry.stdout.contains("nothing to change"), "{}", dry.stdout);
    let run = user.ok(&["setup", "--org", "acme", "--key-file", &key]);
    assert!(run.stdout.contains("nothing to change"), "{}", run.stdout);
}
