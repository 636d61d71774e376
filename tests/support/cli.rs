//! A throwaway user for the subcommands (`keygen`, `setup`, `token`, `inspect`, `doctor`):
//! HOME, the helper's config and git's global config all live in one temporary directory, and
//! commands run there, outside any repository, so neither the developer's nor this project's git
//! config is read or written.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::home::{self, Home, Run};

/// Variables that would point git at another repository or add config from outside.
const GIT_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CEILING_DIRECTORIES",
];

/// A user with an empty home, an empty git config and no helper config yet.
pub struct User {
    home: Home,
}

impl User {
    /// A fresh user.
    pub fn new() -> Self {
        Self { home: Home::new() }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.home.path()
    }

    /// The helper's config file (named by CODESTORAGE_CONFIG too).
    pub fn config_path(&self) -> PathBuf {
        self.home.config_path()
    }

    /// The config file's text, or "" if there is none.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap_or_default()
    }

    /// Writes the helper's config file.
    pub fn write_config(&self, text: &str) {
        self.home.write_config(text);
    }

    /// git's global config file (GIT_CONFIG_GLOBAL).
    pub fn gitconfig_path(&self) -> PathBuf {
        self.path().join(".gitconfig")
    }

    /// git's global config file's text, or "" if there is none.
    pub fn gitconfig_text(&self) -> String {
        std::fs::read_to_string(self.gitconfig_path()).unwrap_or_default()
    }

    /// Writes a private key beside the config with mode 0600 and returns its path.
    pub fn write_key(&self, name: &str, pem: &str) -> PathBuf {
        self.home.write_key(name, pem)
    }

    /// `program` with this user's environment, run in the home directory.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = self.home.command(program);
        for var in GIT_VARS {
            command.env_remove(var);
        }
        command
            .current_dir(self.path())
            .env("CODESTORAGE_CONFIG", self.config_path())
            .env("GIT_CONFIG_GLOBAL", self.gitconfig_path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0");
        command
    }

    /// Runs the helper with `args` and `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        self.run_in(self.path(), args, stdin)
    }

    /// Runs the helper with `args` and `stdin` in `dir`.
    pub fn run_in(&self, dir: &Path, args: &[&str], stdin: &str) -> Run {
        let mut command = self.command(home::HELPER);
        command.args(args).current_dir(dir);
        home::run(command, stdin)
    }

    /// Runs the helper and fails the test unless it exits 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args, "");
        assert_eq!(run.code, Some(0), "{args:?} failed: {run:?}");
        run
    }

    /// Runs git with `args` and `stdin`.
    pub fn git(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = self.command("git");
        command.args(args);
        home::run(command, stdin)
    }

    /// The values of one key in git's global config, in order.
    pub fn git_values(&self, key: &str) -> Vec<String> {
        let run = self.git(&["config", "--global", "--get-all", key], "");
        run.stdout.lines().map(str::to_owned).collect()
    }

    /// `git config --global --list`.
    pub fn git_list(&self) -> String {
        self.git(&["config", "--global", "--list"], "").stdout
    }

    /// Makes a key with `keygen --org ORG` and returns the private key's path and the public PEM.
    pub fn keygen(&self, org: &str) -> (PathBuf, String) {
        let run = self.ok(&["keygen", "--org", org]);
        let path = self.path().join(format!(".config/codestorage/{org}.pem"));
        (path, run.stdout)
    }

    /// Runs `setup --org ORG --key-file PATH` and fails the test unless it succeeds.
    pub fn setup(&self, org: &str, key: &Path) -> Run {
        self.ok(&["setup", "--org", org, "--key-file", key.to_str().unwrap()])
    }
}

/// The helper binary's path, as `setup` writes it into git's config when it is not on PATH.
pub fn helper_path() -> String {
    let path = Path::new(home::HELPER).canonicalize().unwrap();
    git_credential_codestorage::gitconfig::shell_quote(&path.to_string_lossy())
}
