//! `./install.sh` into a temporary prefix and HOME. Most tests copy the binary under test in
//! through CODESTORAGE_INSTALL_BINARY; the build tests run the real release builds (install.sh's
//! and README's `cargo install`) once into a target directory they share, and check that the
//! result is a static executable that signs tokens.

use crate::support;
use crate::support::dist;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::User;
use support::home::{HELPER, Run, run};
use support::jwt::{TestKey, verify};

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
fn uninstall_left_with_git_routing_prints_commands_that_remove_both_sections() {
    let install = Install::new();
    install.run(&[]);
    let user = &install.user;
    let (key, _) = user.keygen("acme");
    user.setup("acme", &key);
    assert!(
        user.git_list()
            .contains("http.https://*.code.storage.proactiveauth=auto")
    );
    let removed = install.run(&["--uninstall"]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    let fix = removed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("remove them: "))
        .unwrap_or_else(|| panic!("no fix: {}", removed.stdout));
    assert!(
        removed.stdout.contains("setup --org ORG --remove"),
        "{}",
        removed.stdout
    );
    let mut shell = user.command("sh");
    shell.args(["-c", fix]);
    assert_eq!(run(shell, "").code, Some(0), "{fix}");
    assert_eq!(user.git_list(), "", "git's config keeps the helper's lines");
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

/// Makes a key with the installed binary's own `keygen` and checks that its `get` signs a token
/// that ring verifies with the printed public key.
fn assert_signs(user: &User, binary: &Path) {
    let key = user.path().join("acme.pem");
    let mut keygen = user.command(binary);
    keygen.args(["keygen", "--org", "acme", "--out"]).arg(&key);
    let made = run(keygen, "");
    assert_eq!(made.code, Some(0), "{made:?}");
    let public = TestKey::from_pems(String::new(), made.stdout.clone(), "ES256");
    let mut get = user.command(binary);
    get.arg("get")
        .env("CODESTORAGE_PRIVATE_KEY_FILE", &key)
        .env("CODESTORAGE_SUBJECT", "install-test");
    let got = run(
        get,
        "protocol=https\nhost=acme.code.storage\npath=team/static.git\n\n",
    );
    assert_eq!(got.code, Some(0), "{got:?}");
    let claims = verify(&got.password(), &public).claims;
    assert_eq!(claims["iss"], "acme");
    assert_eq!(claims["repo"], "team/static");
    assert_eq!(claims["sub"], "install-test");
}

/// The triple install.sh should pick: musl when rustup has it, else the glibc host.
fn expected_static_triple() -> String {
    let host = dist::host_triple();
    let musl = host.replace("-linux-gnu", "-linux-musl");
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if installed.lines().any(|line| line == musl) {
        musl
    } else {
        host
    }
}

#[test]
fn install_sh_builds_a_static_binary_that_signs() {
    let install = Install::new();
    let mut command = install.command(
        Path::new(SCRIPT),
        &["--prefix", install.prefix.to_str().unwrap()],
    );
    command.env_remove("CODESTORAGE_INSTALL_BINARY");
    dist::toolchain_env(&mut command);
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{result:?}");
    let triple = expected_static_triple();
    let announced = format!("building a static binary for {triple}");
    assert!(result.stdout.contains(&announced), "{}", result.stdout);
    if triple.contains("-linux-gnu") {
        assert!(
            result.stdout.contains(&format!(
                "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked --bin git-credential-codestorage --target {triple}"
            )),
            "{}",
            result.stdout
        );
    }
    let target = install.target();
    dist::assert_static(&target);
    assert_signs(&install.user, &target);
}

/// The static `cargo install` command README.md gives, run as written (plus `--root`).
#[test]
fn readme_cargo_install_command_builds_a_static_binary_that_signs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .filter_map(|line| line.strip_prefix("$ "))
        .find(|line| line.contains("crt-static") && line.contains("cargo install"))
        .expect("README.md gives a static cargo install command");
    assert!(line.contains("--path ."), "{line}");
    let user = User::new();
    let root = user.path().join("cargo-root");
    let mut command = user.command("bash");
    command
        .arg("-c")
        .arg(format!("{line} --root \"$1\""))
        .arg("bash")
        .arg(&root)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", system_path());
    dist::toolchain_env(&mut command);
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{result:?}");
    let binary = root.join("bin/git-credential-codestorage");
    dist::assert_static(&binary);
    assert_signs(&user, &binary);
}

#[test]
fn the_elf_reader_sees_the_test_build_as_dynamic() {
    // The test build is linked the default way, so this proves the static checks can fail.
    let linking = dist::linking(Path::new(HELPER));
    assert!(!linking.is_static(), "{linking:?}");
    assert!(
        linking.interpreter.is_some() && linking.needed > 0,
        "{linking:?}"
    );
}

/// Fake `cargo`, `rustup` and `cc` for the choices this machine cannot make for real (it has no
/// musl target, and its static C library cannot be taken away): the fake cargo records its
/// arguments and RUSTFLAGS, then fails the build.
struct FakeTools {
    dir: PathBuf,
    log: PathBuf,
}

impl FakeTools {
    fn new(user: &User, rustup_targets: &str, libc_a: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = user.path().join("fake-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let log = user.path().join("cargo.log");
        let scripts = [
            (
                "cargo",
                format!(
                    "#!/bin/sh\nprintf 'RUSTFLAGS=%s\\nargs=%s\\n' \"${{RUSTFLAGS:-}}\" \"$*\" > '{log}'\nenv | grep '^CC_' | sort >> '{log}'\nexit 101\n",
                    log = log.display()
                ),
            ),
            ("rustup", format!("#!/bin/sh\nprintf '{rustup_targets}'\n")),
            ("cc", format!("#!/bin/sh\necho '{libc_a}'\n")),
        ];
        for (name, text) in scripts {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir, log }
    }

    fn run(&self, install: &Install, extra: &[&str]) -> (Run, String) {
        let mut args = vec!["--prefix", install.prefix.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut command = install.command(Path::new(SCRIPT), &args);
        command
            .env_remove("CODESTORAGE_INSTALL_BINARY")
            .env("PATH", format!("{}:{}", self.dir.display(), system_path()));
        dist::toolchain_env(&mut command);
        let result = run(command, "");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (result, log)
    }
}

#[test]
fn with_the_musl_target_installed_install_sh_builds_for_musl() {
    let install = Install::new();
    let host = dist::host_triple();
    if !host.contains("-linux-gnu") {
        return; // the choice exists on glibc Linux hosts only
    }
    let musl = host.replace("-linux-gnu", "-linux-musl");
    let tools = FakeTools::new(
        &install.user,
        &format!("{host}\\n{musl}\\n"),
        "/usr/lib/libc.a",
    );
    // ring's build looks for x86_64-linux-musl-gcc (musl-tools); without it the system cc is
    // named, or musl-gcc, the wrapper, where installed.
    let cc_var = format!("CC_{}", musl.replace('-', "_"));
    let cross_gcc = format!("{}-linux-musl-gcc", musl.split('-').next().unwrap());
    let has_cross_gcc = std::env::split_paths(&system_path()).any(|d| d.join(&cross_gcc).exists());
    let cc_line = |cc: &str| {
        if has_cross_gcc {
            String::new()
        } else {
            format!("{cc_var}={cc}\n")
        }
    };
    let (result, log) = tools.run(&install, &[]);
    assert_eq!(
        log,
        format!(
            "RUSTFLAGS=\nargs=build --release --locked --bin git-credential-codestorage --target {musl}\n{}",
            cc_line("cc")
        )
    );
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(
        result.stdout.contains(&format!(
            ": {}cargo build --release --locked --bin git-credential-codestorage --target {musl}\n",
            cc_line("cc").replace('\n', " ")
        )) && result.stdout.contains("cargo's progress follows"),
        "{result:?}"
    );
    let wrapper = tools.dir.join("musl-gcc");
    std::fs::copy(tools.dir.join("cc"), &wrapper).unwrap();
    let (_, log) = tools.run(&install, &[]);
    assert!(log.ends_with(&cc_line("musl-gcc")), "{log}");
    std::fs::remove_file(&wrapper).unwrap();
    assert!(
        result.stdout.contains(&format!("building a static binary for {musl}"))
            && result.stderr.contains(
                "install.sh: the build failed; see cargo's messages above; to link dynamically instead, run ./install.sh --dynamic"
            ),
        "{result:?}"
    );
    assert!(!install.target().exists());
}

// install.sh chooses between these routes on glibc Linux only.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn without_the_musl_target_install_sh_links_glibc_statically_and_names_the_faster_route() {
    let install = Install::new();
    let host = dist::host_triple();
    assert!(host.contains("-linux-gnu"), "{host}");
    let musl = host.replace("-linux-gnu", "-linux-musl");
    let tools = FakeTools::new(&install.user, &format!("{host}\\n"), "/usr/lib/libc.a");
    let (result, log) = tools.run(&install, &[]);
    assert_eq!(
        log,
        format!(
            "RUSTFLAGS=-C target-feature=+crt-static\nargs=build --release --locked --bin git-credential-codestorage --target {host}\n"
        )
    );
    assert!(
        result.stdout.contains(&format!(
            "rustup target add {musl}, then run ./install.sh again"
        )),
        "{result:?}"
    );
}

// install.sh chooses between these routes on glibc Linux only.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn without_a_static_libc_install_sh_says_how_to_get_one_and_links_dynamically() {
    let install = Install::new();
    let host = dist::host_triple();
    assert!(host.contains("-linux-gnu"), "{host}");
    // cc -print-file-name echoes the bare name back when it finds no such file.
    let tools = FakeTools::new(&install.user, &format!("{host}\\n"), "libc.a");
    let (result, log) = tools.run(&install, &[]);
    assert_eq!(
        log,
        "RUSTFLAGS=\nargs=build --release --locked --bin git-credential-codestorage\n"
    );
    assert!(
        result
            .stdout
            .contains("the static C library (libc.a) is not installed")
            && result.stdout.contains("libc6-dev")
            && result
                .stdout
                .contains("building a dynamically linked binary"),
        "{result:?}"
    );

    let (dynamic, log) = FakeTools::new(&install.user, &format!("{host}\\n"), "/usr/lib/libc.a")
        .run(&install, &["--dynamic"]);
    assert_eq!(
        log,
        "RUSTFLAGS=\nargs=build --release --locked --bin git-credential-codestorage\n"
    );
    assert!(
        !dynamic.stdout.contains("libc.a") && dynamic.stderr.contains("the build failed"),
        "{dynamic:?}"
    );
}

/// The archive scripts/release-archive.sh makes is where Cargo.toml's binstall template says.
#[test]
fn the_release_archive_has_the_layout_the_binstall_template_names() {
    let user = User::new();
    let out = user.path().join("archives");
    let triple = dist::host_triple();
    let mut command = user.command("bash");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/release-archive.sh"
        ))
        .arg(&triple)
        .arg(&out)
        .env("PATH", system_path());
    dist::toolchain_env(&mut command);
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{result:?}");

    let manifest: toml::Table = toml::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/Cargo.toml"
    )))
    .unwrap();
    let binstall = &manifest["package"]["metadata"]["binstall"];
    assert_eq!(binstall["pkg-fmt"].as_str(), Some("tgz"));
    let expand = |template: &str| {
        template
            .replace("{ name }", "git-credential-codestorage")
            .replace("{ bin }", "git-credential-codestorage")
            .replace("{ target }", &triple)
            .replace("{ version }", env!("CARGO_PKG_VERSION"))
            .replace("{ archive-suffix }", ".tar.gz")
            .replace("{ binary-ext }", "")
    };
    let url = expand(binstall["pkg-url"].as_str().unwrap());
    let file_name = url.rsplit('/').next().unwrap();
    let archive = out.join(file_name);
    assert_eq!(result.stdout.lines().last(), archive.to_str(), "{result:?}");
    assert!(archive.exists(), "{} is missing", archive.display());
    let sums = std::fs::read_to_string(out.join(format!("{file_name}.sha256"))).unwrap();
    assert!(sums.ends_with(&format!("  {file_name}\n")), "{sums}");

    let unpacked = user.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&archive).arg("-C").arg(&unpacked);
    assert_eq!(run(tar, "").code, Some(0));
    let binary = unpacked.join(expand(binstall["bin-dir"].as_str().unwrap()));
    dist::assert_static(&binary);
    let stem = binary.parent().unwrap();
    let mut shipped: Vec<_> = std::fs::read_dir(stem)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped,
        [
            "CHANGELOG.md",
            "LICENSE-APACHE",
            "LICENSE-MIT",
            "README.md",
            "git-credential-codestorage"
        ]
    );
    let mut version = user.command(&binary);
    version.arg("--version");
    assert_eq!(
        run(version, "").stdout,
        format!("git-credential-codestorage {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `cargo package` ships the sources, the user docs and the licenses, and nothing of the
/// repository's own machinery.
#[test]
fn the_crate_package_holds_what_users_need_and_no_more() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    command
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root);
    let listed = run(command, "");
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let files: Vec<&str> = listed.stdout.lines().collect();
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "CHANGELOG.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "src/main.rs",
        "src/lib.rs",
        "docs/configuration.md",
        "tests/fixtures/rsa2048.pkcs8.pem",
    ] {
        assert!(
            files.contains(&needed),
            "{needed} is not shipped: {files:?}"
        );
    }
    // Every source file, however the tree is arranged: the crate must build from the package.
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    for source in &sources {
        assert!(files.contains(&source.as_str()), "{source} is not shipped");
    }
    for file in &files {
        let allowed = file.starts_with("src/")
            || file.starts_with("tests/fixtures/")
            || (file.starts_with("docs/")
                && !["docs/performance.md", "docs/fuzzing.md"].contains(file))
            || [
                "Cargo.toml",
                "Cargo.toml.orig",
                "Cargo.lock",
                ".cargo_vcs_info.json",
                "README.md",
                "CHANGELOG.md",
                "LICENSE-MIT",
                "LICENSE-APACHE",
            ]
            .contains(file);
        assert!(allowed, "{file} should not be shipped");
    }
}

#[test]
fn the_man_page_and_completions_are_installed_and_git_help_opens_the_page() {
    let install = Install::new();
    let done = install.run(&[]);
    assert_eq!(done.code, Some(0), "{done:?}");
    let share = install.prefix.join("share");
    let page = share.join("man/man1/git-credential-codestorage.1");
    for file in [
        page.clone(),
        share.join("bash-completion/completions/git-credential-codestorage"),
        share.join("zsh/site-functions/_git-credential-codestorage"),
        share.join("fish/vendor_completions.d/git-credential-codestorage.fish"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        assert!(text.contains("setup"), "{file:?}");
    }
    // `git credential-codestorage --help` is git's `help`, which opens the man page.
    let bindir = install.prefix.join("bin");
    let mut help = install.user.command(support::gits::new_git());
    help.args(["credential-codestorage", "--help"])
        .env("PATH", format!("{}:{}", bindir.display(), system_path()))
        .env("MANPATH", share.join("man"))
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100");
    let shown = run(help, "");
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown.stdout.contains("git-credential-codestorage")
            && shown.stdout.contains("SETUP")
            && shown.stdout.contains("--key-file"),
        "{}",
        shown.stdout
    );
    let removed = install.run(&["--uninstall"]);
    assert!(!page.exists(), "{}", removed.stdout);
}
