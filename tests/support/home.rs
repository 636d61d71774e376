//! A throwaway home directory with a config file and keys, and the helper binary run in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The helper binary under test.
pub const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-codestorage");

/// Environment variables the helper reads; cleared so the developer's own settings never leak in.
const HELPER_VARS: &[&str] = &[
    "CODESTORAGE_CONFIG",
    "CODESTORAGE_PRIVATE_KEY",
    "CODESTORAGE_PRIVATE_KEY_FILE",
    "CODESTORAGE_TTL",
    "CODESTORAGE_SCOPES",
    "CODESTORAGE_SUBJECT",
    "CODESTORAGE_DEBUG",
    "CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS",
    "CODESTORAGE_KEY_COMMAND_TIMEOUT",
    "PIERRE_PRIVATE_KEY",
    "PIERRE_PRIVATE_KEY_FILE",
    "PIERRE_TOKEN_TTL",
    "PIERRE_DEBUG",
    "XDG_CONFIG_HOME",
];

/// A temporary HOME; everything in it is removed on drop.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// An empty home with `~/.config/codestorage/`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".config/codestorage")).unwrap();
        Self { dir }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the helper looks for its config in this home.
    pub fn config_path(&self) -> PathBuf {
        self.path().join(".config/codestorage/config.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Writes a private key beside the config with mode 0600 and returns its path.
    pub fn write_key(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.path().join(".config/codestorage").join(name);
        std::fs::write(&path, pem).unwrap();
        set_mode(&path, 0o600);
        path
    }

    /// A command for `program` with HOME here and no helper settings inherited.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        for var in HELPER_VARS {
            command.env_remove(var);
        }
        command
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env("USER", "tester");
        command
    }

    /// Runs the helper with `args`, `stdin` and extra environment.
    pub fn run(&self, args: &[&str], stdin: impl AsRef<[u8]>, env: &[(&str, &str)]) -> Run {
        let mut command = self.command(HELPER);
        command.args(args).envs(env.iter().copied());
        run(command, stdin)
    }

    /// Runs `git-credential-codestorage get` with a request as git writes it.
    pub fn get(&self, request: impl AsRef<[u8]>, env: &[(&str, &str)]) -> Run {
        self.run(&["get"], request, env)
    }
}

/// What a run printed.
#[derive(Debug)]
pub struct Run {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The exit code.
    pub code: Option<i32>,
}

impl Run {
    /// The value of `key=` in the credential printed on stdout.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    }

    /// The token printed as `password=`, or inside git 2.46+'s `credential=` (base64 of
    /// `t:TOKEN`, with `authtype=Basic`), failing the test if there is none.
    pub fn password(&self) -> String {
        if let Some(password) = self.field("password") {
            return password.to_owned();
        }
        let credential = self
            .field("credential")
            .unwrap_or_else(|| panic!("no password printed; stderr: {}", self.stderr));
        assert_eq!(self.field("authtype"), Some("Basic"), "{}", self.stdout);
        let basic = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, credential)
            .expect("credential= is base64");
        let basic = String::from_utf8(basic).expect("credential= is text");
        basic
            .strip_prefix("t:")
            .unwrap_or_else(|| panic!("credential is not t:TOKEN: {basic}"))
            .to_owned()
    }
}

/// Runs `command` with `stdin`, capturing its output.
pub fn run(mut command: Command, stdin: impl AsRef<[u8]>) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The helper may stop reading early (bounded input); a broken pipe is then expected.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_ref());
    let output = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code(),
    }
}

/// Sets a file's permission bits.
#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Windows has no permission bits: the tests that set them run on Unix only.
#[cfg(not(unix))]
pub fn set_mode(_: &Path, _: u32) {}
