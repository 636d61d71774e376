//! Open files: one per sandbox socket and one per connection served. The broker raises its
//! soft limit to the hard one at start, and says what it needs when even that is too low.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::error::BrokerError;

/// Files beyond the sockets and connections: the config, keys, the audit log, pipes.
const SPARE: u64 = 64;

/// Connections the limit must leave room for, beside the sockets.
const CONNECTIONS: u64 = 256;

/// The open files `sandboxes` sockets need, with room for connections.
pub fn needed(sandboxes: usize) -> u64 {
    sandboxes as u64 + CONNECTIONS + SPARE
}

/// Raises the soft open-file limit to the hard one; fails when the hard one cannot hold
/// `sandboxes` sockets with room for connections.
pub fn raise_open_files(sandboxes: usize) -> Result<u64, BrokerError> {
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft < hard {
        // Failing to raise it is no error by itself: the check below says what is short.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let need = needed(sandboxes);
    if now < need {
        return Err(BrokerError::OpenFiles {
            sandboxes,
            need,
            hard,
        });
    }
    Ok(now)
}

/// The soft open-file limit in force.
pub fn open_files() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
