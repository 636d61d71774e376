//! The sandbox's side: forward git's request to the broker's socket and relay the answer. It
//! runs inside every sandboxed git, so it stays small: connect, write, read, bounded in size
//! and time. It needs no key and no organisation config.
//!
//! Every answer of the broker ends with a blank line, so that an answer cut short (a broker
//! killed while it signed) is told from a complete one, even from an empty "not ours". `store`
//! and `erase` are forwarded only for a host the sandbox may get tokens for, as the broker's
//! `describe` answer says: what git sends other helpers (a password for another host) stays
//! in the sandbox.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::describe::Description;
use super::message::{self, Answer, ReadProblem};
use super::{CLIENT_TIMEOUT, MAX_ANSWER};
use crate::log::{Escaped, Log};
use crate::operation::Operation;
use crate::protocol::GitAction;
use crate::protocol::Request;

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
    /// The connection ended before the answer's closing blank line: the broker stopped.
    #[error(
        "the token broker at {path} stopped before it answered (killed or restarted mid-request); check that it runs and its log, then retry"
    )]
    Incomplete {
        /// The socket.
        path: String,
    },
    /// A `describe` answer that is not the sandbox's description.
    #[error(
        "the token broker at {path} answered describe with no description of this sandbox ({reason}); is it older than this client? update the broker"
    )]
    Description {
        /// The socket.
        path: String,
        /// What was wrong, or the broker's own message.
        reason: String,
    },
}

/// Sends `action` and `request` to the broker at `socket` and returns its answer. `origin`
/// says where the socket's path came from, for the message when it cannot be reached.
pub fn ask(
    socket: &Path,
    origin: &str,
    action: GitAction,
    request: &Request,
) -> Result<Answer, ClientError> {
    ask_hinted(socket, origin, action, request, None)
}

/// [`ask`], naming the operation (`CODESTORAGE_OPERATION`), which the broker may narrow with.
pub fn ask_hinted(
    socket: &Path,
    origin: &str,
    action: GitAction,
    request: &Request,
    hint: Option<Operation>,
) -> Result<Answer, ClientError> {
    // On erase the request holds the refused token: wiped once sent.
    let message = message::encode_request(action, request, hint);
    exchange(socket, origin, message.expose())
}

/// Asks the broker at `socket` what this sandbox may get.
pub fn describe(socket: &Path, origin: &str) -> Result<Description, ClientError> {
    let answer = exchange(socket, origin, &message::encode_describe())?;
    let path = socket.display().to_string();
    if let Some(message) = answer.errors.first() {
        return Err(ClientError::Description {
            path,
            reason: message.clone(),
        });
    }
    serde_json::from_slice(answer.git.expose()).map_err(|e| ClientError::Description {
        path,
        reason: e.to_string(),
    })
}

/// Writes `message` to the broker at `socket` and reads its whole answer, which must end with
/// the closing blank line (taken off).
fn exchange(socket: &Path, origin: &str, message: &[u8]) -> Result<Answer, ClientError> {
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
    stream.write_all(message).map_err(broken)?;
    let answer =
        message::read(&mut stream, deadline, MAX_ANSWER, false).map_err(
            |problem| match problem {
                ReadProblem::TooLarge => ClientError::TooLarge { path: path.clone() },
                ReadProblem::TimedOut => ClientError::Timeout { path: path.clone() },
                ReadProblem::Io(source) => broken(source),
            },
        )?;
    let bytes = answer.expose();
    let body = bytes
        .strip_suffix(message::ANSWER_END)
        .filter(|body| body.is_empty() || body.ends_with(b"\n"))
        .ok_or(ClientError::Incomplete { path })?;
    Ok(message::split_answer(body))
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

/// Runs git's `action` through the broker at `socket`: git's lines to `out`, the broker's
/// messages and any failure to `log`. A `get` that fails answers `quit=1`: the host is ours, no
/// other helper or prompt can help. `hint` is the operation the sandbox names itself.
pub fn forward(
    socket: &Path,
    origin: &str,
    (action, hint): (GitAction, Option<Operation>),
    request: &Request,
    out: &mut dyn Write,
    log: &mut Log<'_>,
) {
    if action != GitAction::Get && !may_forward(socket, origin, request, log) {
        return;
    }
    let answer = match ask_hinted(socket, origin, action, request, hint) {
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

/// Whether `store` or `erase` for `request` may go to the broker: only for a host the sandbox
/// may get tokens for, so that another host's password never leaves the sandbox. A broker that
/// cannot say keeps it in too; git ignores both actions' output, and the next `get` reports.
fn may_forward(socket: &Path, origin: &str, request: &Request, log: &mut Log<'_>) -> bool {
    let host = request.host.as_deref().unwrap_or_default();
    match describe(socket, origin) {
        Ok(description) if description.serves(host) => true,
        Ok(description) => {
            log.debug(format_args!(
                "not forwarding to the token broker: {} is not a host of sandbox {}",
                Escaped(host),
                description.sandbox
            ));
            false
        }
        Err(e) => {
            log.debug(format_args!("not forwarding to the token broker: {e}"));
            false
        }
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

    fn request(host: &str) -> Request {
        crate::protocol::parse(format!("protocol=https\nhost={host}\npath=x.git\n").as_bytes())
            .unwrap()
    }

    fn run(socket: &Path, action: GitAction, host: &str) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        forward(
            socket,
            "CODESTORAGE_BROKER",
            (action, None),
            &request(host),
            &mut out,
            &mut Log::new(&mut err, false),
        );
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// A broker stand-in: answers one connection per entry of `answers`, in order, and returns
    /// the requests it read.
    fn serve(
        answers: Vec<Vec<u8>>,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<Vec<Vec<u8>>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut got = Vec::new();
                let mut byte = [0u8; 1];
                while !got.ends_with(b"\n\n") {
                    stream.read_exact(&mut byte).unwrap();
                    got.push(byte[0]);
                }
                stream.write_all(&answer).unwrap();
                requests.push(got);
            }
            requests
        });
        (dir, path, server)
    }

    fn description() -> Vec<u8> {
        let d = Description {
            sandbox: "a".into(),
            hosts: vec!["acme.code.storage".into()],
            orgs: vec!["acme".into()],
            repos: vec!["**".into()],
            scopes: vec![crate::token::Scope::GitRead],
            ttl: None,
            subject: "sandbox:a".into(),
            refs: Vec::new(),
            ops: Vec::new(),
            push_branches: Vec::new(),
            least_privilege: true,
        };
        format!("{}\n\n", serde_json::to_string(&d).unwrap()).into_bytes()
    }

    #[test]
    fn relays_git_lines_to_stdout_and_error_lines_to_stderr() {
        let (_dir, path, server) = serve(vec![b"error=sandbox a may not\nquit=1\n\n".to_vec()]);
        let (out, err) = run(&path, GitAction::Get, "acme.code.storage");
        assert_eq!(out, "quit=1\n");
        assert_eq!(err, "git-credential-codestorage: sandbox a may not\n");
        assert_eq!(
            server.join().unwrap(),
            [b"get\nprotocol=https\nhost=acme.code.storage\npath=x.git\n\n"]
        );
    }

    #[test]
    fn an_answer_cut_short_is_one_line_and_quit_not_silence() {
        // Nothing at all, and half a credential: both what a broker killed mid-request leaves.
        for cut in [&b""[..], b"username=t\npassword=eyJ"] {
            let (_dir, path, server) = serve(vec![cut.to_vec()]);
            let (out, err) = run(&path, GitAction::Get, "acme.code.storage");
            assert_eq!(out, "quit=1\n", "{cut:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("stopped before it answered"), "{err}");
            assert!(!err.contains("eyJ"), "{err}");
            server.join().unwrap();
        }
        // A complete "not ours" is the blank line alone: nothing for git, nothing said.
        let (_dir, path, server) = serve(vec![b"\n".to_vec()]);
        assert_eq!(
            run(&path, GitAction::Get, "acme.code.storage"),
            (String::new(), String::new())
        );
        server.join().unwrap();
    }

    #[test]
    fn store_and_erase_go_only_to_a_host_of_the_sandbox() {
        let (_dir, path, server) = serve(vec![
            description(),
            b"error=refused token\nusername=t\n\n".to_vec(),
        ]);
        let (out, err) = run(&path, GitAction::Erase, "ACME.code.storage");
        assert_eq!(out, "");
        assert!(err.contains("refused token"), "{err}");
        let requests = server.join().unwrap();
        assert_eq!(requests[0], b"describe\n\n");
        assert!(requests[1].starts_with(b"erase\n"));

        // Another host's credential is described for, and never sent.
        for action in [GitAction::Store, GitAction::Erase] {
            let (_dir, path, server) = serve(vec![description()]);
            let (out, err) = run(&path, action, "github.com");
            assert_eq!((out.as_str(), err.as_str()), ("", ""));
            assert_eq!(server.join().unwrap(), [b"describe\n\n"]);
        }
    }

    #[test]
    fn describe_reads_the_sandbox_or_says_what_is_wrong() {
        let (_dir, path, server) = serve(vec![
            description(),
            b"error=no such request\nquit=1\n\n".to_vec(),
        ]);
        let d = describe(&path, "CODESTORAGE_BROKER").unwrap();
        assert_eq!(
            (d.sandbox.as_str(), d.serves("acme.code.storage")),
            ("a", true)
        );
        let e = describe(&path, "CODESTORAGE_BROKER")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no description of this sandbox (no such request)"),
            "{e}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_broker_that_is_down_is_one_line_and_quit() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.sock");
        let (out, err) = run(&absent, GitAction::Get, "acme.code.storage");
        assert_eq!(out, "quit=1\n");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot reach the token broker at")
                && err.contains("(CODESTORAGE_BROKER)")
                && err.contains("start the broker"),
            "{err}"
        );
        let (out, err) = run(&absent, GitAction::Store, "acme.code.storage");
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    }
}
