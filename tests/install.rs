//! `./install.sh` into a temporary prefix and HOME. The binary under test is copied in through
//! CODESTORAGE_INSTALL_BINARY, so the test does not spend minutes on a release build.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::User;
use support::home::{HELPER, Run, run};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");

/// A user without the helper config, a prefix to install into, and a PATH without it.
struct Install {
    user: User,
    prefix: PathBuf,
}

impl Install {
    fn new() -> Self {
        let user = User::new();
        std::fs::remove_dir_all(user.path().join(".config/codestorage")).unwrap();
        let prefix = user.path().join("prefix");
        Self { user, prefix }
    }

    fn target(&self) -> PathBuf {
        self.prefix.join("bin/git-credential-codestorage")
    }

    fn command(&self, script: &Path, args: &[&str]) -> Command {
        let mut command = self.user.command("bash");
        command
            .arg(script)
            .args(args)
            .env("CODESTORAGE_INSTALL_BINARY", HELPER)
            .env("PATH", system_path())
            .env_remove("PREFIX");
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let prefix = self.prefix.to_str().unwrap();
        let mut all = vec!["--prefix", prefix];
        all.extend_from_slice(args);
        run(self.command(Path::new(SCRIPT), &all), "")
    }
}

/// PATH as the test runs with it, minus any directory holding an installed helper.
fn system_path() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("git-credential-codestorage").exists())
        .collect();
    std::env::join_paths(kept).unwrap().into_string().unwrap()
}

#[test]
fn installs_into_the_prefix_and_says_what_to_do_next() {
    use std::os::unix::fs::PermissionsExt;
    let install = Install::new();
    let first = install.run(&[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    let target = install.target();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(HELPER).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(
        first
            .stdout
            .contains(&format!("installed {}", target.display())),
        "{}",
        first.stdout
    );
    let bindir = install.prefix.join("bin");
    assert!(
        first
            .stdout
            .contains(&format!("{} is not on your PATH", bindir.display()))
            && first
                .stdout
                .contains(&format!("export PATH=\"{}:$PATH\"", bindir.display())),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("keygen --org ORG")
            && first.stdout.contains("setup --org ORG --key-file"),
        "{}",
        first.stdout
    );

    let mut version = install.user.command(&target);
    version.arg("--version");
    let installed = run(version, "");
    assert_eq!(
        installed.stdout,
        format!("git-credential-codestorage {}\n", env!("CARGO_PKG_VERSION"))
    );

    let modified = std::fs::metadata(&target).unwrap().modified().unwrap();
    let second = install.run(&[]);
    assert_eq!(second.code, Some(0), "{second:?}");
    assert!(second.stdout.contains("is up to date"), "{}", second.stdout);
    assert_eq!(
        std::fs::metadata(&target).unwrap().modified().unwrap(),
        modified
    );
    let files: Vec<_> = std::fs::read_dir(&bindir).unwrap().collect();
    assert_eq!(files.len(), 1, "no staging file left behind");
}

#[test]
fn with_the_prefix_on_path_and_a_config_it_points_at_doctor() {
    let install = Install::new();
    let config_dir = install.user.path().join(".config/codestorage");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("config.toml"), "").unwrap();
    let bindir = install.prefix.join("bin");
    let path = format!("{}:{}", bindir.display(), system_path());
    let mut command = install.command(
        Path::new(SCRIPT),
        &["--prefix", install.prefix.to_str().unwrap()],
    );
    command.env("PATH", &path).env_remove("CODESTORAGE_CONFIG");
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{result:?}");
    assert!(
        !result.stdout.contains("not on your PATH"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("config found at")
            && result.stdout.contains("git-credential-codestorage doctor"),
        "{}",
        result.stdout
    );
}

#[test]
fn uninstall_removes_the_binary_and_keeps_the_config() {
    let install = Install::new();
    install.run(&[]);
    std::fs::create_dir_all(install.user.config_path().parent().unwrap()).unwrap();
    install.user.write_config("");
    let removed = install.run(&["--uninstall"]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    assert!(!install.target().exists());
    assert!(install.user.config_path().exists());
    assert!(
        removed.stdout.contains("removed ") && removed.stdout.contains("kept your config"),
        "{}",
        removed.stdout
    );
    let again = install.run(&["--uninstall"]);
    assert_eq!(again.code, Some(0));
    assert!(
        again.stdout.contains("nothing to remove"),
        "{}",
        again.stdout
    );
}

#[test]
fn failures_are_loud_and_say_why() {
    let install = Install::new();
    let mut command = install.command(
        Path::new(SCRIPT),
        &["--prefix", install.prefix.to_str().unwrap()],
    );
    command.env("CODESTORAGE_INSTALL_BINARY", "/nonexistent/binary");
    let missing = run(command, "");
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains(
            "install.sh: CODESTORAGE_INSTALL_BINARY=/nonexistent/binary is not an executable file"
        ),
        "{}",
        missing.stderr
    );
    assert!(!install.target().exists());

    let unknown = install.run(&["--bogus"]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown.stderr.contains("unknown option --bogus") && unknown.stderr.contains("Usage"),
        "{}",
        unknown.stderr
    );

    let file = install.user.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let blocked = run(
        install.command(Path::new(SCRIPT), &["--prefix", file.to_str().unwrap()]),
        "",
    );
    assert_eq!(blocked.code, Some(1), "{blocked:?}");
    assert!(
        blocked.stderr.contains("install.sh: cannot create"),
        "{}",
        blocked.stderr
    );
}

#[test]
fn demo_without_its_script_names_the_missing_file() {
    let install = Install::new();
    let copy = install.user.path().join("checkout/install.sh");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(SCRIPT, &copy).unwrap();
    let result = run(install.command(&copy, &["--demo"]), "");
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(
        result.stderr.contains("scripts/demo.sh is missing"),
        "{}",
        result.stderr
    );
}
