//! The newcomer's first run (`./install.sh --demo`, i.e. scripts/demo.sh) works from start to
//! finish and leaves nothing behind. It uses the binaries this test run built instead of a
//! release build, through CODESTORAGE_DEMO_BIN_DIR, and the newest git found here.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::emulator::EMULATOR;
use support::git::{new_git, path_with};

#[test]
fn the_demo_pushes_and_clones_through_the_helper_and_cleans_up() {
    let bin_dir = Path::new(EMULATOR).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--demo")
        .env("CODESTORAGE_DEMO_BIN_DIR", bin_dir)
        .env("TMPDIR", tmp.path())
        .env("PATH", path_with(new_git()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("First commit"), "{stdout}");
    assert!(stdout.contains("signature: valid (ES256"), "{stdout}");
    // setup writes proactiveAuth: git 2.46+ asks the helper before its first request, older
    // gits after a 401.
    let asks_first = support::gits::version_of(new_git()) >= support::git::AUTHTYPE;
    assert_eq!(
        stdout.contains("-> 401 no credentials"),
        !asks_first,
        "{stdout}"
    );
    assert!(stdout.contains("org=demo"), "{stdout}");
    assert!(stdout.trim_end().ends_with("demo: ok"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
}

/// Building, the demo lets cargo's progress through and says how long the first build takes:
/// a cargo that records its arguments and fails stands in for the four-minute release build.
#[test]
fn the_demo_build_shows_cargo_and_says_how_long_it_takes() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("cargo");
    let log = tmp.path().join("cargo.args");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" > '{}'\necho '   Compiling ring' >&2\nexit 101\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
        .env_remove("CODESTORAGE_DEMO_BIN_DIR")
        .env("TMPDIR", tmp.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                tmp.path().display(),
                path_with(new_git()).to_string_lossy()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let args = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        args.trim(),
        "build --release --locked --features emulator",
        "no --quiet"
    );
    assert!(
        stdout.contains("about 4 minutes on 2 cores the first time")
            && stderr.contains("   Compiling ring")
            && stderr.contains("demo: the build failed"),
        "{stdout}\n{stderr}"
    );
}
