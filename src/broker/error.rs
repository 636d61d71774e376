//! Why the broker cannot start, or cannot take a new config.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::key::{KeyError, KeySource};
use crate::signer::ProbeError;

/// Why the broker cannot start, or cannot take a new config.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The config file is broken.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No config file where one was named.
    #[error("config file {} does not exist; write one with [org.NAME] and [sandbox.NAME] tables (see docs/sandboxes.md), or name it with --config FILE", .0.display())]
    NoConfig(PathBuf),
    /// No config file could be found at all.
    #[error("no config file: name one with --config FILE or CODESTORAGE_CONFIG")]
    NoConfigPath,
    /// A config with nothing to serve.
    #[error("config file {} has no [sandbox.NAME] table, so the broker has nothing to serve; add one (see docs/sandboxes.md)", .0.display())]
    NoSandboxes(PathBuf),
    /// An organisation's key does not load.
    #[error("organisation \"{org}\": {source}")]
    Key {
        /// The organisation.
        org: String,
        /// Why.
        source: KeyError,
    },
    /// An organisation's key loads but does not sign. The reason names the key source and,
    /// for an agent or a sign_command, the fix (the same line `doctor` and `setup` give).
    #[error("organisation \"{org}\": {}", .source.about(.key))]
    Probe {
        /// The organisation.
        org: String,
        /// Where its key comes from.
        key: Box<KeySource>,
        /// Why.
        source: ProbeError,
    },
    /// A socket's directory is not safe or not there.
    #[error("[sandbox.{sandbox}] socket directory {}: {problem}", .dir.display())]
    SocketDir {
        /// The sandbox.
        sandbox: String,
        /// The directory.
        dir: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// `sandbox_dir` is not safe or not there.
    #[error("sandbox_dir {}: {problem}", .dir.display())]
    SandboxDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// A registration does not check out against a new config.
    #[error("registered sandbox {sandbox}: {problem}")]
    Registration {
        /// The sandbox.
        sandbox: String,
        /// What is wrong.
        problem: String,
    },
    /// The socket path is taken by something else.
    #[error("[sandbox.{sandbox}] socket {}: {problem}", .path.display())]
    SocketPath {
        /// The sandbox.
        sandbox: String,
        /// The socket.
        path: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The socket could not be made.
    #[error("[sandbox.{sandbox}] cannot create socket {}: {source}", .path.display())]
    Bind {
        /// The sandbox.
        sandbox: String,
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The group a sandbox names is not on this system.
    #[error(
        "[sandbox.{sandbox}] group {group} is not in /etc/group; create it or name an existing group"
    )]
    Group {
        /// The sandbox.
        sandbox: String,
        /// The group.
        group: String,
    },
    /// An environment variable the key settings read holds a bad value.
    #[error(transparent)]
    Env(crate::resolve::ResolveError),
    /// The open-file limit cannot hold every socket.
    #[error(
        "the broker needs {need} open files for {sandboxes} sandbox socket(s) and their connections, and its hard limit is {hard}; raise it: LimitNOFILE={need} in the broker's systemd unit, or `ulimit -n {need}` in the shell that starts it"
    )]
    OpenFiles {
        /// Sandboxes to serve.
        sandboxes: usize,
        /// Open files needed.
        need: u64,
        /// The hard limit.
        hard: u64,
    },
    /// The control socket cannot be made.
    #[error("control socket {}: {problem}", .path.display())]
    Control {
        /// The socket.
        path: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
}
