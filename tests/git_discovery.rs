//! How the tests find the git binaries they run (tests/support/gits.rs): overrides first, then
//! the newest and oldest distinct versions on PATH and in the usual places. Stand-in gits are
//! small scripts that answer `--version` as a given git would; the last tests use the real ones.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::gits::{
    self, AUTHTYPE, FindError, Git, Gits, NEW_GIT_VAR, OLD_GIT_VAR, Version, new_git, path_with,
};

/// Makes `dir/name`, a program that prints `answer` and exits with `code`. Written by a child
/// shell, so no file handle of this multi-threaded process can keep it busy when it is run.
fn program(dir: &Path, name: &str, answer: &str, code: i32) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!("#!/bin/sh\necho '{answer}'\nexit {code}\n");
    let status = Command::new("sh")
        .args([
            "-c",
            "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
            "sh",
        ])
        .arg(script)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// A stand-in for git `version` at `dir/sub/git`.
fn fake_git(dir: &Path, sub: &str, version: &str) -> PathBuf {
    program(
        dir,
        &format!("{sub}/git"),
        &format!("git version {version}"),
        0,
    )
}

fn version(text: &str) -> Version {
    Version::parse(&format!("git version {text}")).unwrap()
}

#[test]
fn versions_read_as_git_prints_them_on_each_platform() {
    for (output, expected) in [
        ("git version 2.47.3\n", [2, 47, 3]),
        ("git version 2.39.5 (Apple Git-154)", [2, 39, 5]),
        ("git version 2.45.0.windows.1", [2, 45, 0]),
        ("git version 2.48.0.rc1", [2, 48, 0]),
        ("git version 2.50.0-rc2", [2, 50, 0]),
        ("git version 3", [3, 0, 0]),
    ] {
        assert_eq!(
            Version::parse(output),
            Some(Version(expected)),
            "{output:?}"
        );
    }
    for output in [
        "",
        "hub version 2.14.2",
        "git version",
        "git version x.1",
        "2.47.3",
    ] {
        assert_eq!(Version::parse(output), None, "{output:?}");
    }
    assert!(version("2.46.0") >= AUTHTYPE && version("2.45.9") < AUTHTYPE);
    assert!(version("2.100.0") > version("2.47.3"));
    assert_eq!(version("2.47.3").to_string(), "2.47.3");
}

#[test]
fn the_newest_and_the_oldest_distinct_versions_are_chosen_and_non_gits_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = fake_git(dir, "a", "2.30.1");
    let new = fake_git(dir, "b", "2.47.3");
    let middle = fake_git(dir, "c", "2.39.5 (Apple Git-154)");
    let broken = program(dir, "d/git", "git version 9.9.9", 1);
    let other = program(dir, "e/git", "hello", 0);
    std::fs::create_dir_all(dir.join("f")).unwrap();
    std::os::unix::fs::symlink(&new, dir.join("f/git")).unwrap();
    let candidates = [
        dir.join("missing/git"),
        middle.clone(),
        broken,
        other,
        dir.join("f/git"),
        new.clone(),
        old.clone(),
    ];
    let gits = Gits::find(None, None, candidates).unwrap();
    // The link is seen first, and a path found twice counts once: the first name wins.
    assert_eq!(gits.new.path, dir.join("f/git"));
    assert_eq!(gits.new.version, version("2.47.3"));
    assert_eq!(
        gits.old,
        Some(Git {
            path: old,
            version: version("2.30.1")
        })
    );
}

#[test]
fn one_version_found_twice_means_no_old_git() {
    let tmp = tempfile::tempdir().unwrap();
    let first = fake_git(tmp.path(), "a", "2.47.3");
    let second = fake_git(tmp.path(), "b", "2.47.3");
    let gits = Gits::find(None, None, [first.clone(), second]).unwrap();
    assert_eq!(gits.new.path, first, "of equal versions, the first found");
    assert_eq!(gits.old, None);
}

#[test]
fn overrides_win_and_the_other_git_is_still_searched_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = fake_git(dir, "a", "2.30.1");
    let new = fake_git(dir, "b", "2.47.3");
    let custom = fake_git(dir, "c", "2.39.5");
    let found = || [old.clone(), new.clone()];

    let gits = Gits::find(Some(custom.clone()), None, found()).unwrap();
    assert_eq!(
        (&gits.new.path, gits.old.unwrap().path),
        (&custom, old.clone())
    );

    let gits = Gits::find(None, Some(custom.clone()), found()).unwrap();
    assert_eq!(
        (&gits.new.path, gits.old.unwrap().path),
        (&new, custom.clone())
    );

    // An override with nothing else installed is enough on its own.
    let gits = Gits::find(Some(custom.clone()), None, []).unwrap();
    assert_eq!((gits.new.path, gits.old), (custom.clone(), None));

    // The same git named twice is one git, not two versions.
    let gits = Gits::find(Some(custom.clone()), Some(custom.clone()), found()).unwrap();
    assert_eq!(gits.old, None);
}

#[test]
fn an_override_that_is_not_git_or_no_git_at_all_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let not_git = program(tmp.path(), "x/git", "hello", 0);
    let real = fake_git(tmp.path(), "a", "2.47.3");
    for (new, old, var) in [
        (Some(not_git.clone()), None, NEW_GIT_VAR),
        (None, Some(tmp.path().join("nothing")), OLD_GIT_VAR),
    ] {
        let err = Gits::find(new, old, [real.clone()]).unwrap_err();
        assert!(
            matches!(err, FindError::BadOverride { var: v, .. } if v == var),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(var) && message.contains("unset it to search PATH"),
            "{message}"
        );
    }
    let err = Gits::find(None, None, [tmp.path().join("x/nothing")]).unwrap_err();
    assert!(matches!(err, FindError::NoGit { .. }), "{err:?}");
    assert!(err.to_string().contains(NEW_GIT_VAR), "{err}");
}

#[test]
fn a_path_made_for_a_git_runs_that_git_even_under_another_name() {
    let tmp = tempfile::tempdir().unwrap();
    let renamed = program(tmp.path(), "bin/git-2.30", "git version 2.30.1", 0);
    let named = fake_git(tmp.path(), "plain", "2.31.0");
    for (git, expected) in [(renamed, "2.30.1"), (named, "2.31.0")] {
        let output = Command::new("sh")
            .args(["-c", "git --version"])
            .env("PATH", path_with(&git))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("git version {expected}")
        );
    }
}

#[test]
fn the_gits_found_here_are_real_and_ordered() {
    let found = gits::gits();
    for git in std::iter::once(&found.new).chain(&found.old) {
        let output = Command::new(&git.path).arg("--version").output().unwrap();
        let reported = Version::parse(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(reported, Some(git.version), "{git}");
    }
    // The tests meant for an old and a new git have both: this fails, saying what to install,
    // when either is missing.
    let old = gits::old_git();
    let new = gits::new_git_at_least(AUTHTYPE, "the tests of capability[]=authtype");
    assert!(
        gits::version_of(old) < gits::version_of(new),
        "{old:?} vs {new:?}"
    );
    // `git` on this PATH is the new git, as the demo and the emulator's server side rely on.
    let output = Command::new("git")
        .arg("--version")
        .env("PATH", path_with(new_git()))
        .output()
        .unwrap();
    assert_eq!(
        Version::parse(&String::from_utf8_lossy(&output.stdout)),
        Some(found.new.version)
    );
}
