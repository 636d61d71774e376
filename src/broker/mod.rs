//! The token broker: a long-running process outside agent sandboxes that signs tokens for them,
//! so that no sandbox ever holds an organisation's key.
//!
//! The design follows ssh-agent and git's `credential-cache--daemon`: one Unix socket per
//! sandbox, created by the broker and mounted into that sandbox alone, so the socket a request
//! arrives on is the sandbox's identity. Inside, `get` forwards git's request over the socket
//! ([`client`]); outside, the broker decides with the sandbox's policy ([`policy`]), reads the
//! peer's credentials from the kernel ([`peer`]), signs with a key it loaded once, answers, and
//! writes one audit line ([`audit`]). [`server`] is the process and its accept loop,
//! [`connection`] serves one connection, `reload` takes a new config, [`socket`] makes sockets.
//!
//! The wire between the two is git's own format with an action line in front, written and read
//! only by [`message`].

pub mod audit;
#[cfg(unix)]
pub mod client;
#[cfg(unix)]
pub mod connection;
#[cfg(unix)]
pub mod control;
#[cfg(unix)]
pub mod control_client;
pub mod describe;
#[cfg(unix)]
pub mod error;
#[cfg(unix)]
pub mod gate;
#[cfg(unix)]
pub mod limits;
#[cfg(unix)]
pub mod load;
#[cfg(unix)]
pub mod message;
#[cfg(unix)]
pub mod metrics;
#[cfg(unix)]
pub mod peer;
pub mod policy;
#[cfg(unix)]
mod registry;
#[cfg(unix)]
mod reload;
pub mod reuse;
#[cfg(unix)]
pub mod server;
#[cfg(unix)]
pub mod socket;
#[cfg(unix)]
mod watch;

use std::time::Duration;

pub use crate::config::Sandbox;

/// The environment variable that points `get` at a broker's socket.
pub const BROKER_ENV: &str = "CODESTORAGE_BROKER";

/// The most bytes of one request: git's own largest request plus the action line.
pub const MAX_REQUEST: usize = crate::protocol::MAX_INPUT + 64;

/// The most bytes of one answer: a token of a few KiB and a few error lines.
pub const MAX_ANSWER: usize = 64 * 1024;

/// How long the broker waits for a whole request on a new connection: git writes it at once.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the client waits for the broker, from connecting to the end of the answer; signing
/// through an agent or a KMS may take a moment, a broker that hangs must not hang git.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The prefix of an answer line meant for the user, not for git.
pub const ERROR_PREFIX: &str = "error=";
