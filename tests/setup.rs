//! `setup` as a user runs it: the config file edited without losing a comment, git's config
//! written once and only once, `--dry-run` and `--remove`, and git itself then asking the helper.

mod support;

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
