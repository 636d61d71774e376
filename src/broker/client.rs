//! The sandbox's side: forward git's request to the broker's socket and relay the answer. It
//! runs inside every sandboxed git, so it stays small: connect, write, read, bounded in size
//! and time. It needs no key and no organisation config.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::message::{self, ReadProblem};
use super::{CLIENT_TIMEOUT, ERROR_PREFIX, MAX_ANSWER};
use crate::commands::git::GitAction;
use crate::log::{Escaped, Log};
use crate::protocol::Request;
use crate::secret::Secret;

/// Why the broker gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket, or it is not there.
    #[error(
        "cannot reach the token broker at {path} ({origin}): {source}; start the broker, or mount its socket for this sandbox at that path"
    )]
    Connect {
        /// The socket.
        path: String,
        /// Where the path came from.
        origin: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The broker took longer than [`CLIENT_TIMEOUT`].
    #[error("the token broker at {path} did not answer within {}s; check its log", CLIENT_TIMEOUT.as_secs())]
    Timeout {
        /// The socket.
        path: String,
    },
    /// The connection broke.
    #[error("the token broker at {path} broke the connection: {source}; check its log")]
    Io {
        /// The socket.
        path: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An answer larger than any real one.
    #[error("the token broker at {path} sent more than {} KiB; check its log", MAX_ANSWER / 1024)]
    TooLarge {
        /// The socket.
        path: String,
    },
}

/// What the broker answered: lines for git, and lines for the user.
#[derive(Debug, Default)]
pub struct Answer {
    /// Lines for git's stdout, as the broker wrote them (may hold a token).
    pub git: Secret<Vec<u8>>,
    /// One-line messages for the user.
    pub errors: Vec<String>,
}

/// Sends `action` and `request` to the broker at `socket` and returns its answer. `origin`
/// says where the socket's path came from, for the message when it cannot be reached.
pub fn ask(
    socket: &Path,
    origin: &str,
    action: GitAction,
    request: &Request,
) -> Result<Answer, ClientError> {
    let path = socket.display().to_string();
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut stream = connect(socket).map_err(|source| ClientError::Connect {
        path: path.clone(),
        origin: origin.to_owned(),
        source,
    })?;
    let broken = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ClientError::Timeout { path: path.clone() }
        } else {
            ClientError::Io {
                path: path.clone(),
                source,
            }
        }
    };
    // On erase the request holds the refused token: wiped once sent.
    let mut message = Secret::new(Vec::with_capacity(512));
    message
        .expose_mut()
        .extend_from_slice(action.as_str().as_bytes());
    message.expose_mut().push(b'\n');
    request
        .write_to(message.expose_mut())
        .and_then(|()| stream.write_all(message.expose()))
        .map_err(broken)?;
    let answer =
        message::read(&mut stream, deadline, MAX_ANSWER, false).map_err(
            |problem| match problem {
                ReadProblem::TooLarge => ClientError::TooLarge { path: path.clone() },
                ReadProblem::TimedOut => ClientError::Timeout { path: path.clone() },
                ReadProblem::Io(source) => broken(source),
            },
        )?;
    Ok(split(answer.expose()))
}

/// A stream connected to `socket`, with a send timeout set first so that a broker that stopped
/// accepting (its queue full) cannot hang git in `connect`.
fn connect(socket: &Path) -> io::Result<UnixStream> {
    // Apple systems have no SOCK_CLOEXEC; nothing is spawned while the socket is open there.
    #[cfg(not(target_vendor = "apple"))]
    let flags = SocketFlags::CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let flags = SocketFlags::empty();
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    set_socket_timeout(&fd, Timeout::Send, Some(CLIENT_TIMEOUT))?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(socket)?)?;
    Ok(UnixStream::from(fd))
}

/// Splits an answer into the user's `error=` lines and git's lines.
fn split(answer: &[u8]) -> Answer {
    let mut split = Answer::default();
    for line in answer.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(ERROR_PREFIX.as_bytes()) {
            Some(message) => split.errors.push(
                String::from_utf8_lossy(message)
                    .trim_end_matches('\n')
                    .to_owned(),
            ),
            None => split.git.expose_mut().extend_from_slice(line),
        }
    }
    split
}

/// Runs git's `action` through the broker at `socket`: git's lines to `out`, the broker's
/// messages and any failure to `log`. A `get` that fails answers `quit=1`: the host is ours, no
/// other helper or prompt can help.
pub fn forward(
    socket: &Path,
    origin: &str,
    action: GitAction,
    request: &Request,
    out: &mut dyn Write,
    log: &mut Log<'_>,
) {
    let answer = match ask(socket, origin, action, request) {
        Ok(answer) => answer,
        Err(e) => {
            // git ignores what store prints; a broker down is told at the next get.
            if action != GitAction::Store {
                log.error(e);
            }
            if action == GitAction::Get {
                write_out(out, b"quit=1\n", log);
            }
            return;
        }
    };
    for message in &answer.errors {
        log.error(Escaped(message));
    }
    if action == GitAction::Get {
        write_out(out, answer.git.expose(), log);
    }
}

fn write_out(out: &mut dyn Write, bytes: &[u8], log: &mut Log<'_>) {
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        log.error(format_args!("cannot write the answer to git: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    fn request() -> Request {
        crate::protocol::parse(b"protocol=https\nhost=acme.code.storage\npath=x.git\n").unwrap()
    }

    fn run(socket: &Path, action: GitAction) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        forward(
            socket,
            "CODESTORAGE_BROKER",
            action,
            &request(),
            &mut out,
            &mut Log::new(&mut err, false),
        );
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// A one-shot broker stand-in: reads one request, checks it, writes `answer`.
    fn serve_once(
        answer: &'static [u8],
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<Vec<u8>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while !got.ends_with(b"\n\n") {
                stream.read_exact(&mut byte).unwrap();
                got.push(byte[0]);
            }
            stream.write_all(answer).unwrap();
            got
        });
        (dir, path, server)
    }

    #[test]
    fn relays_git_lines_to_stdout_and_error_lines_to_stderr() {
        let (_dir, path, server) = serve_once(b"error=sandbox a may not\nquit=1\n");
        let (out, err) = run(&path, GitAction::Get);
        assert_eq!(out, "quit=1\n");
        assert_eq!(err, "git-credential-codestorage: sandbox a may not\n");
        assert_eq!(
            server.join().unwrap(),
            b"get\nprotocol=https\nhost=acme.code.storage\npath=x.git\n\n"
        );
    }

    #[test]
    fn store_and_erase_print_nothing_for_git() {
        let (_dir, path, server) = serve_once(b"error=refused token\nusername=t\n");
        let (out, err) = run(&path, GitAction::Erase);
        assert_eq!(out, "");
        assert!(err.contains("refused token"), "{err}");
        assert!(server.join().unwrap().starts_with(b"erase\n"));
    }

    #[test]
    fn a_broker_that_is_down_is_one_line_and_quit() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = run(&dir.path().join("absent.sock"), GitAction::Get);
        assert_eq!(out, "quit=1\n");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot reach the token broker at")
                && err.contains("(CODESTORAGE_BROKER)")
                && err.contains("start the broker"),
            "{err}"
        );
        let (out, err) = run(&dir.path().join("absent.sock"), GitAction::Store);
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }
}
