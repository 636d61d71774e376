//! Real git, run as a user would run it: its own HOME and global config, no system config, no
//! prompts, trusting the emulator's CA, with the helper configured by absolute path. Which git
//! binaries exist here is found by [`super::gits`].

use std::path::{Path, PathBuf};

use super::emulator::Emulator;
use super::home::{HELPER, Home, Run, run};

// Re-exported so callers find git and its users in one place; each test crate uses a part.
#[allow(unused_imports)]
pub use super::gits::{
    AUTHTYPE, describe, each_git, new_git, new_git_at_least, old_git, path_with,
};

/// A user of git with a home of its own.
pub struct User {
    /// The home directory, helper config and keys.
    pub home: Home,
    git: PathBuf,
    ca: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl User {
    /// A user with git at `git` (see [`new_git`], [`old_git`]).
    pub fn new(git: &Path) -> Self {
        let user = Self {
            home: Home::new(),
            git: git.to_owned(),
            ca: None,
            env: Vec::new(),
        };
        user.git_ok(
            user.home.path(),
            &["config", "--global", "user.name", "Test"],
        );
        user.git_ok(
            user.home.path(),
            &["config", "--global", "user.email", "test@example.invalid"],
        );
        user.git_ok(
            user.home.path(),
            &["config", "--global", "init.defaultBranch", "main"],
        );
        user
    }

    /// Trusts `emulator`'s CA (through GIT_SSL_CAINFO, which wins over http.sslCAInfo).
    pub fn trust(mut self, emulator: &Emulator) -> Self {
        self.ca = Some(emulator.ca.clone());
        self
    }

    /// Sets an environment variable for every git run.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Configures the helper for `url_prefix` as `setup` would, by absolute path.
    pub fn use_helper_for(&self, url_prefix: &str) {
        let section = format!("credential.{url_prefix}");
        let home = self.home.path();
        self.git_ok(
            home,
            &["config", "--global", &format!("{section}.helper"), ""],
        );
        self.git_ok(
            home,
            &[
                "config",
                "--global",
                "--add",
                &format!("{section}.helper"),
                HELPER,
            ],
        );
        self.git_ok(
            home,
            &[
                "config",
                "--global",
                &format!("{section}.useHttpPath"),
                "true",
            ],
        );
    }

    /// Runs git with `args` in `dir`.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Run {
        let mut command = self.command(&self.git);
        command.current_dir(dir).args(args);
        run(command, "")
    }

    /// Runs `sh -c script` in `dir` as this user, with this user's git first on PATH: for
    /// several git commands in one shell, as a user types them.
    pub fn shell(&self, dir: &Path, script: &str) -> Run {
        let mut command = self.command("sh");
        command
            .current_dir(dir)
            .args(["-c", script])
            .env("PATH", path_with(&self.git));
        run(command, "")
    }

    /// The git this user runs.
    pub fn git_path(&self) -> &Path {
        &self.git
    }

    /// `program` with this user's environment: its HOME and global config, no system config,
    /// no prompts, the emulator's CA and the extra variables.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut command = self.home.command(program);
        command
            .env("GIT_CONFIG_GLOBAL", self.home.path().join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env_remove("SSH_ASKPASS")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        if let Some(ca) = &self.ca {
            command.env("GIT_SSL_CAINFO", ca);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    /// Runs git and fails the test unless it succeeds.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> Run {
        let run = self.git(dir, args);
        assert_eq!(run.code, Some(0), "git {args:?} failed: {}", run.stderr);
        run
    }

    /// Makes a commit of `file` with `contents` in the work tree `dir`; returns its id.
    pub fn commit(&self, dir: &Path, file: &str, contents: &[u8]) -> String {
        std::fs::write(dir.join(file), contents).unwrap();
        self.git_ok(dir, &["add", file]);
        self.git_ok(dir, &["commit", "-q", "-m", &format!("change {file}")]);
        self.head(dir)
    }

    /// The commit HEAD points at in `dir`.
    pub fn head(&self, dir: &Path) -> String {
        self.git_ok(dir, &["rev-parse", "HEAD"])
            .stdout
            .trim()
            .to_owned()
    }

    /// Commits a file in a new work tree, pushes it to `url`, clones `url` back and checks the
    /// clone holds that commit: a round trip through the helper for a push and then a fetch.
    /// The commit's ID.
    pub fn push_and_clone_back(&self, url: &str) -> String {
        let work = self.init("work");
        let commit = self.commit(&work, "a.txt", b"pushed through the helper\n");
        self.git_ok(&work, &["push", "-q", url, "main"]);
        let clone = self.home.path().join("clone");
        self.git_ok(
            self.home.path(),
            &["clone", "-q", url, clone.to_str().unwrap()],
        );
        assert_eq!(self.head(&clone), commit, "the clone of {url}");
        commit
    }

    /// A new, empty work tree at `~/NAME`.
    pub fn init(&self, name: &str) -> PathBuf {
        let dir = self.home.path().join(name);
        self.git_ok(self.home.path(), &["init", "-q", dir.to_str().unwrap()]);
        dir
    }
}

/// `len` bytes that do not compress (xorshift from `seed`), so that a pack is as large as the file.
pub fn incompressible(len: usize, mut seed: u64) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect();
    data.truncate(len);
    data
}
