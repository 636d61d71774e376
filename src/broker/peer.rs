//! Who is on the other end of a sandbox's socket, as the kernel reports it (`SO_PEERCRED`),
//! never as the client says. A peer in another PID namespace is reported with the pid the
//! broker's namespace sees, so its `/proc` entry and ancestry are the broker's to read.

use std::os::unix::net::UnixStream;

/// The peer's credentials at the time it connected; `None` where the system cannot tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// User ID.
    pub uid: Option<u32>,
    /// Group ID.
    pub gid: Option<u32>,
    /// Process ID, in the broker's PID namespace.
    pub pid: Option<u32>,
}

/// The credentials of the process that connected `stream`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn of(stream: &UnixStream) -> Peer {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => Peer {
            uid: Some(cred.uid.as_raw()),
            gid: Some(cred.gid.as_raw()),
            pid: u32::try_from(cred.pid.as_raw_pid()).ok(),
        },
        Err(_) => Peer::default(),
    }
}

/// The credentials of the process that connected `stream`: not readable here without
/// hand-written FFI (macOS has `getpeereid` but no safe binding in our dependencies).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn of(_stream: &UnixStream) -> Peer {
    Peer::default()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_reports_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = of(&a);
        assert_eq!(peer.pid, Some(std::process::id()));
        assert_eq!(peer.uid, Some(rustix::process::getuid().as_raw()));
        assert_eq!(peer.gid, Some(rustix::process::getgid().as_raw()));
    }
}
