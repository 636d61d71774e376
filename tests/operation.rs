//! `operation` on live processes: real git runs a credential helper that first runs this very
//! test binary as a probe (whose `detect` reads its own ancestry, as `get` will), then stops
//! until this test has read the helper's ancestry through `detect_for_pid`, as a broker would.
//! With the emulator, git asks for real fetches and pushes over HTTPS. Linux only: elsewhere the
//! ancestry is unavailable by design.

use crate::support;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use git_credential_codestorage::operation::{self, Detection, Evidence, Operation};

/// Where the probe writes what it detected; set only when git runs this binary as a helper.
const PROBE_OUT: &str = "OPERATION_PROBE_OUT";

/// The test that doubles as the probe (its exact name in this binary, for the helper's command
/// line).
const PROBE_TEST: &str = "operation::detect_from_here_equals_a_walk_from_this_pid";

/// In a normal run: `detect` (which starts at the parent) and `detect_for_pid` on this process
/// (which starts here, at a process that is not git) must read the same ancestors the same way.
/// Run by git as a credential helper (see [`Scene`]), this is the probe: it appends what
/// `detect` says from here, without and with trace2 (where the ancestry still decides), and what
/// trace2 alone says, to `$OPERATION_PROBE_OUT`.
#[test]
fn detect_from_here_equals_a_walk_from_this_pid() {
    if let Some(out) = std::env::var_os(PROBE_OUT) {
        let trace2 = std::env::var("GIT_TRACE2_PARENT_NAME").ok();
        let traced = trace2.as_deref().and_then(operation::classify_trace2);
        let line = format!(
            "{}\t{}\t{}\n",
            summary(&operation::detect(None)),
            summary(&operation::detect(trace2.as_deref())),
            traced.as_ref().map_or_else(|| "none".to_owned(), summary)
        );
        let mut file = OpenOptions::new().append(true).open(out).unwrap();
        file.write_all(line.as_bytes()).unwrap();
        return;
    }
    assert_eq!(operation::available(), Ok(()));
    assert_eq!(
        operation::detect(None),
        operation::detect_for_pid(std::process::id())
    );
}

/// `operation command evidence-kind`, for the probe's record.
fn summary(detection: &Detection) -> String {
    let kind = match detection.evidence {
        Evidence::Trace2(_) => "trace2",
        Evidence::Ancestry(_) => "ancestry",
        Evidence::Unavailable(_) => "unavailable",
        Evidence::NotGit => "not-git",
    };
    format!(
        "{} {} {kind}",
        detection.operation,
        detection.command.as_deref().unwrap_or("-")
    )
}

/// One git and a home for it, whose credential helper probes and then waits for this test.
struct Scene {
    git: &'static str,
    dir: tempfile::TempDir,
    ca: Option<PathBuf>,
}

/// One credential request: what a broker saw of the helper, and what the probe recorded.
#[derive(Debug)]
struct Asked {
    broker: Detection,
    probe: String,
}

impl Scene {
    /// A home for `git`, trusting `ca` when given, with the probing helper configured.
    fn new(git: &'static str, ca: Option<PathBuf>) -> Self {
        let scene = Self {
            git,
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        let fifo = scene.path("go");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        std::fs::write(scene.path("probe.out"), "").unwrap();
        // The helper's shell is the process a broker would be asked about (`detect_for_pid`);
        // the probe is its child, in the place `git-credential-codestorage get` runs.
        let helper = format!(
            "!f() {{ \"$OPERATION_PROBE_EXE\" --exact {PROBE_TEST} --quiet >/dev/null 2>&1; \
             echo \"asked pid=$$\" >&2; read go < \"$OPERATION_FIFO\"; echo quit=1; }}; f"
        );
        for (key, value) in [
            ("user.name", "Test"),
            ("user.email", "test@example.invalid"),
            ("init.defaultBranch", "main"),
            ("credential.helper", helper.as_str()),
        ] {
            scene.git_ok(scene.dir.path(), &["config", "--global", key, value]);
        }
        scene
    }

    /// A file in the home.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// git with `args` in `cwd`, in this scene's home, trace2 on (output discarded).
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(self.git);
        let git_dir = Path::new(self.git).parent().unwrap();
        let path = format!(
            "{}:{}",
            git_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        command
            .current_dir(cwd)
            .args(args)
            .env("HOME", self.dir.path())
            .env("PATH", path)
            .env("GIT_CONFIG_GLOBAL", self.path(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_TRACE2", "/dev/null")
            .env("OPERATION_PROBE_EXE", std::env::current_exe().unwrap())
            .env("OPERATION_FIFO", self.path("go"))
            .env(PROBE_OUT, self.path("probe.out"))
            .env_remove("GIT_TRACE2_PARENT_NAME")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("SSH_ASKPASS");
        if let Some(ca) = &self.ca {
            command.env("GIT_SSL_CAINFO", ca);
        }
        command
    }

    /// Runs git to completion (no credential is ever given) and fails unless it succeeds.
    fn git_ok(&self, cwd: &Path, args: &[&str]) -> String {
        let output = self
            .command(cwd, args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs git with `stdin`; at each credential request, reads the waiting helper's ancestry,
    /// then lets it answer `quit=1`. Returns every request, in order.
    fn asked(&self, cwd: &Path, args: &[&str], stdin: &str) -> Vec<Asked> {
        std::fs::write(self.path("probe.out"), "").unwrap();
        let mut child = self
            .command(cwd, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let mut brokers = Vec::new();
        let mut stderr = String::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            match line.strip_prefix("asked pid=") {
                Some(pid) => {
                    brokers.push(operation::detect_for_pid(pid.parse().unwrap()));
                    // Opening blocks until the helper opens its end to read: it is about to.
                    let mut go = OpenOptions::new()
                        .write(true)
                        .open(self.path("go"))
                        .unwrap();
                    go.write_all(b"go\n").unwrap();
                }
                None => stderr.push_str(&line),
            }
        }
        child.wait().unwrap();
        let probes = std::fs::read_to_string(self.path("probe.out")).unwrap();
        let probes: Vec<&str> = probes.lines().collect();
        assert!(!brokers.is_empty(), "git {args:?} asked nothing: {stderr}");
        assert_eq!(probes.len(), brokers.len(), "{probes:?} {brokers:?}");
        brokers
            .into_iter()
            .zip(probes)
            .map(|(broker, probe)| Asked {
                broker,
                probe: probe.to_owned(),
            })
            .collect()
    }
}

/// Every git version found on this machine (see tests/support/gits.rs).
fn installed() -> impl Iterator<Item = &'static str> {
    support::gits::each_git()
        .into_iter()
        .map(|git| git.to_str().expect("a git path that is text"))
}

#[test]
fn credential_fill_is_unknown_to_the_broker_and_to_the_helper() {
    for git in installed() {
        let scene = Scene::new(git, None);
        let asked = scene.asked(
            scene.dir.path(),
            &["-c", "core.pager=cat", "credential", "fill"],
            "protocol=https\nhost=example.invalid\npath=x.git\n\n",
        );
        assert_eq!(asked.len(), 1, "{asked:?}");
        let request = &asked[0];
        // git credential fill asks for whoever runs it (git-lfs, glue code): here a test
        // program, which is neither a fetch nor a push.
        assert_eq!(request.broker.operation, Operation::Unknown, "{request:?}");
        assert_eq!(request.broker.command, None);
        assert_eq!(request.broker.evidence, Evidence::NotGit);
        // No trace2 here, so the third column (what trace2 alone would say) is empty.
        assert_eq!(request.probe, "unknown - not-git\tunknown - not-git\tnone");
    }
}

#[cfg(feature = "emulator")]
mod with_emulator {
    use super::*;
    use support::emulator::Emulator;
    use support::jwt::TestKey;

    /// Checks that every request of `git args` was seen as `operation` by `command`, the same by a
    /// broker, by the probe's ancestry (with trace2 set too) and by the probe's trace2 alone.
    fn expect(scene: &Scene, cwd: &Path, args: &[&str], operation: Operation, command: &str) {
        let asked = scene.asked(cwd, args, "");
        for request in &asked {
            let at = format!("{} {args:?}: {request:?}", scene.git);
            assert_eq!(request.broker.operation, operation, "{at}");
            assert_eq!(request.broker.command.as_deref(), Some(command), "{at}");
            let Evidence::Ancestry(labels) = &request.broker.evidence else {
                panic!("{at}");
            };
            // The broker starts at the helper's own shell and ends at the command that decided.
            assert_eq!(labels.first().map(String::as_str), Some("sh -c"), "{at}");
            assert_eq!(labels.last(), Some(&format!("git {command}")), "{at}");
            assert!(labels.len() <= operation::MAX_ANCESTORS + 1, "{at}");
            assert_eq!(
                request.probe,
                format!(
                    "{operation} {command} ancestry\t{operation} {command} ancestry\t{operation} {command} trace2"
                ),
                "{at}"
            );
        }
    }

    /// Every command a user runs, against a real HTTPS smart-HTTP server that asks for a
    /// credential, through both gits.
    #[test]
    fn fetches_read_and_pushes_write_as_git_runs_them() {
        let key = TestKey::p256();
        let emulator = Emulator::start(&[("acme", &key.public_pem)]);
        let url = emulator.repo_url("team/app");
        for git in installed() {
            let scene = Scene::new(git, Some(emulator.ca.clone()));
            let home = scene.dir.path().to_owned();
            let work = home.join("work");
            let work_str = work.to_str().unwrap();
            scene.git_ok(&home, &["init", "-q", work_str]);
            scene.git_ok(&work, &["commit", "-q", "--allow-empty", "-m", "one"]);
            scene.git_ok(&work, &["tag", "v1"]);
            scene.git_ok(&work, &["remote", "add", "origin", &url]);
            scene.git_ok(&work, &["remote", "add", "second", &url]);
            let head = scene.git_ok(&work, &["rev-parse", "HEAD"]);
            // A superproject whose submodule lives on the server.
            let sup = home.join("super");
            scene.git_ok(&home, &["init", "-q", sup.to_str().unwrap()]);
            for (key, value) in [
                ("submodule.lib.path", "lib"),
                ("submodule.lib.url", url.as_str()),
            ] {
                scene.git_ok(&sup, &["config", "-f", ".gitmodules", key, value]);
            }
            let gitlink = format!("160000,{head},lib");
            scene.git_ok(&sup, &["update-index", "--add", "--cacheinfo", &gitlink]);
            scene.git_ok(&sup, &["add", ".gitmodules"]);
            scene.git_ok(&sup, &["commit", "-q", "-m", "submodule"]);

            let clone_to = home.join("clone");
            let git_dir = work.join(".git");
            let git_dir = git_dir.to_str().unwrap();
            let work_tree = format!("--work-tree={work_str}");
            for (cwd, args, operation, command) in [
                (
                    &home,
                    &["clone", &url, clone_to.to_str().unwrap()][..],
                    Operation::Read,
                    "clone",
                ),
                (&home, &["ls-remote", &url], Operation::Read, "ls-remote"),
                (&work, &["fetch", "origin"], Operation::Read, "fetch"),
                (&work, &["fetch", "--all"], Operation::Read, "fetch"),
                (&work, &["pull", "origin", "main"], Operation::Read, "fetch"),
                (&work, &["remote", "update"], Operation::Read, "fetch"),
                (
                    &sup,
                    &["submodule", "update", "--init"],
                    Operation::Read,
                    "clone",
                ),
                (&work, &["push", "origin", "main"], Operation::Write, "push"),
                (&work, &["push", "origin", "v1"], Operation::Write, "push"),
                (
                    &work,
                    &["-c", "alias.p=push", "p", "origin", "main"],
                    Operation::Write,
                    "push",
                ),
                (
                    &work,
                    &["-c", "alias.sp=!git push", "sp", "origin", "main"],
                    Operation::Write,
                    "push",
                ),
                (
                    &home,
                    &[
                        "-C",
                        work_str,
                        "-c",
                        "push.default=simple",
                        "--no-pager",
                        "push",
                        "origin",
                        "main",
                    ],
                    Operation::Write,
                    "push",
                ),
                (
                    &home,
                    &["--git-dir", git_dir, &work_tree, "push", "origin", "main"],
                    Operation::Write,
                    "push",
                ),
            ] {
                expect(&scene, cwd, args, operation, command);
            }
        }
    }
}
