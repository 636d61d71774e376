//! A real OpenSSH `ssh-agent` for one test, on a private socket, stopped when dropped (even
//! when the test fails), with `ssh-add` and `ssh-keygen` run against it.
// Each test crate that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// A running `ssh-agent -D`.
pub struct SshAgent {
    child: Child,
    // Kept open: the agent writes nothing more, but closing it early is no business of ours.
    _stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl SshAgent {
    /// An agent whose confirmation prompts fail at once: no one can answer them in a test.
    pub fn start() -> Self {
        Self::start_with_askpass(Path::new("/bin/false"))
    }

    /// An agent that runs `askpass` to confirm the use of keys added with `ssh-add -c`.
    pub fn start_with_askpass(askpass: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| missing("ssh-agent", e));
        // ssh-agent prints `SSH_AUTH_SOCK=…` only once it listens: that line is the wait.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("SSH_AUTH_SOCK="),
            "ssh-agent did not start: {line:?}"
        );
        assert!(socket.exists());
        Self {
            child,
            _stdout: stdout,
            dir,
            socket,
        }
    }

    /// The agent's socket, what SSH_AUTH_SOCK would hold.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A private scratch directory for key files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `ssh-add args` against this agent, with `stdin` on its standard input.
    pub fn ssh_add(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("ssh-add")
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| missing("ssh-add", e));
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Adds a key file (or `-` for stdin) with extra `ssh-add` options; fails the test otherwise.
    pub fn add(&self, options: &[&str], file: &str, stdin: &[u8]) {
        let args: Vec<&str> = options.iter().copied().chain([file]).collect();
        let output = self.ssh_add(&args, stdin);
        assert!(output.status.success(), "ssh-add {args:?}: {output:?}");
    }

    /// The `SHA256:` fingerprints `ssh-add -l -E sha256` lists, with the rest of each line.
    pub fn listed(&self) -> String {
        let output = self.ssh_add(&["-l", "-E", "sha256"], b"");
        String::from_utf8(output.stdout).unwrap()
    }

    /// The `SHA256:` fingerprint `ssh-add -l -E sha256` lists for the key whose comment is
    /// `comment` (`(stdin)` for a key added with `ssh-add -`, else the file it was added from).
    pub fn fingerprint(&self, comment: &str) -> String {
        let listed = self.listed();
        listed
            .lines()
            .find(|line| line.split_whitespace().nth(2).is_some_and(|c| c == comment))
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no key {comment:?} in the agent: {listed}"))
            .to_owned()
    }

    /// Loads a private key file with `ssh-add`, then deletes the file: from then on the key
    /// exists only in the agent. Returns its fingerprint as the agent lists it.
    pub fn add_and_delete(&self, private: &Path) -> String {
        let name = private.to_str().unwrap();
        self.add(&[], name, b"");
        let fingerprint = self.fingerprint(name);
        std::fs::remove_file(private).unwrap();
        assert!(!private.exists());
        fingerprint
    }

    /// Makes a key with `ssh-keygen -t kind -b bits` and extra options, no passphrase, and
    /// returns the private key's path (the public one is beside it, `.pub`).
    pub fn keygen(&self, name: &str, kind: &str, bits: &str, extra: &[&str]) -> PathBuf {
        let path = self.dir().join(name);
        let output = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-b", bits, "-N", "", "-C", name])
            .args(extra)
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| missing("ssh-keygen", e));
        assert!(output.status.success(), "ssh-keygen: {output:?}");
        path
    }

    /// Stops the agent with SIGKILL, so that it leaves its socket file behind, as a crashed
    /// agent does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fingerprint `ssh-keygen -l -E sha256 -f FILE` prints for a key file.
pub fn ssh_keygen_fingerprint(path: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "ssh-keygen -l: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Fails the test because an OpenSSH `program` could not be run, with the command that installs
/// it (this file is also included by benches/whole_process.rs, so it stands alone).
fn missing(program: &str, error: std::io::Error) -> ! {
    panic!(
        "{program} could not be run ({error}); this test needs OpenSSH's client: run \
         scripts/install-test-deps.sh (as root) to install it"
    )
}
