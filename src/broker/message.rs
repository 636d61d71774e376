//! The broker's wire format, both ways, and one message off a connection, bounded in size and
//! in time however slowly its bytes come.
//!
//! The client sends an action line (`get`, `store`, `erase`, or `describe` with no request)
//! and git's request as [`Request::write_to`] writes it, ending with a blank line, with one
//! more line before that blank one when the sandbox names its operation
//! (`codestorage_operation=read|write`, from `CODESTORAGE_OPERATION`: a key git's parser
//! ignores, so a broker that predates it reads the request as before); the broker
//! answers with git's answer lines, preceded by `error=<one line>` lines for the user, and
//! closes every answer with a blank line ([`ANSWER_END`]), so that the client tells an answer
//! cut short from an empty one. Both sides use only this module to write and read those.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::describe::DESCRIBE;
use super::{ERROR_PREFIX, MAX_REQUEST, REQUEST_TIMEOUT};
use crate::operation::Operation;
use crate::protocol::GitAction;
use crate::protocol::{self, Request};
use crate::secret::Secret;

/// Why a request could not be read off the wire.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// More than [`MAX_REQUEST`] bytes.
    #[error("the request is larger than {MAX_REQUEST} bytes; git never sends that much")]
    TooLarge,
    /// No blank line before [`REQUEST_TIMEOUT`].
    #[error("no whole request within {}s", REQUEST_TIMEOUT.as_secs())]
    TimedOut,
    /// The connection failed.
    #[error("cannot read the request: {0}")]
    Io(io::Error),
    /// The first line is no action.
    #[error(
        "the request does not start with get, store or erase; is the client a git-credential-codestorage?"
    )]
    NoAction,
    /// git's lines do not parse.
    #[error(transparent)]
    Protocol(#[from] protocol::ParseError),
}

/// What closes every answer: a blank line.
pub const ANSWER_END: &[u8] = b"\n";

/// A request's first line: one of git's actions, or `describe` (what may this sandbox get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `get`, `store` or `erase`, with git's request.
    Git(GitAction),
    /// The sandbox's own policy, with an empty request.
    Describe,
}

impl Action {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Git(action) => action.as_str(),
            Self::Describe => DESCRIBE,
        }
    }
}

/// The request's key for the operation the sandbox names itself.
pub const OPERATION_KEY: &str = "codestorage_operation";

/// A request as the broker reads it.
#[derive(Debug)]
pub struct Incoming {
    /// The action line.
    pub action: Action,
    /// git's request.
    pub request: Request,
    /// The operation the sandbox named, if any: a hint the broker may only narrow with.
    pub hint: Option<Operation>,
}

/// A request as the client sends it: the action line, then git's request, with `hint` (the
/// operation the sandbox names itself) as one more line. Wiped when dropped: on `erase` it
/// holds the refused token.
pub fn encode_request(
    action: GitAction,
    request: &Request,
    hint: Option<Operation>,
) -> Secret<Vec<u8>> {
    let mut message = Secret::new(Vec::with_capacity(512));
    let bytes = message.expose_mut();
    bytes.extend_from_slice(action.as_str().as_bytes());
    bytes.push(b'\n');
    // Writing to a Vec cannot fail.
    let _ = request.write_to(bytes);
    if let Some(operation) = hint.filter(|o| *o != Operation::Unknown) {
        // Before the blank line that ends git's lines.
        bytes.pop();
        bytes.extend_from_slice(format!("{OPERATION_KEY}={}\n\n", operation.as_str()).as_bytes());
    }
    message
}

/// A `describe` request as the client sends it: the action line and an empty request.
pub fn encode_describe() -> Vec<u8> {
    format!("{DESCRIBE}\n\n").into_bytes()
}

/// Reads one request off `stream` before `deadline`.
pub fn read_request(stream: &mut UnixStream, deadline: Instant) -> Result<Incoming, RequestError> {
    let bytes = read(stream, deadline, MAX_REQUEST, true).map_err(|problem| match problem {
        ReadProblem::TooLarge => RequestError::TooLarge,
        ReadProblem::TimedOut => RequestError::TimedOut,
        ReadProblem::Io(e) => RequestError::Io(e),
    })?;
    decode_request(bytes.expose())
}

/// Splits a request's bytes into its action, git's request and the operation hint.
pub fn decode_request(bytes: &[u8]) -> Result<Incoming, RequestError> {
    let (word, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (bytes, &[][..]),
    };
    let action = match std::str::from_utf8(word).ok() {
        Some(DESCRIBE) => Action::Describe,
        word => word
            .and_then(GitAction::parse)
            .map(Action::Git)
            .ok_or(RequestError::NoAction)?,
    };
    let request = protocol::parse(rest)?;
    Ok(Incoming {
        action,
        request,
        hint: hint_in(rest),
    })
}

/// The operation named by the request's [`OPERATION_KEY`] line, if any. Anything but `read`
/// or `write` is no hint: the broker only ever narrows with it, so ignoring one is safe.
fn hint_in(lines: &[u8]) -> Option<Operation> {
    let prefix = format!("{OPERATION_KEY}=");
    lines
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.strip_prefix(prefix.as_bytes()))
        .last()
        .and_then(|value| match value {
            b"read" => Some(Operation::Read),
            b"write" => Some(Operation::Write),
            _ => None,
        })
}

/// The answer for the user alone: each line as `error=LINE`, control characters dropped.
pub fn error_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Secret<Vec<u8>> {
    let mut answer = Vec::new();
    for line in lines {
        answer.extend_from_slice(ERROR_PREFIX.as_bytes());
        answer.extend(
            line.chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .bytes(),
        );
        answer.push(b'\n');
    }
    Secret::new(answer)
}

/// `error=REASON` and `quit=1`: a refusal, so git stops rather than ask elsewhere.
pub fn error_answer(reason: &str) -> Secret<Vec<u8>> {
    let mut answer = error_lines([reason]);
    answer.expose_mut().extend_from_slice(b"quit=1\n");
    answer
}

/// What the broker answered: lines for git, and lines for the user.
#[derive(Debug, Default)]
pub struct Answer {
    /// Lines for git's stdout, as the broker wrote them (may hold a token).
    pub git: Secret<Vec<u8>>,
    /// One-line messages for the user.
    pub errors: Vec<String>,
}

/// Splits an answer into the user's `error=` lines and git's lines.
pub fn split_answer(answer: &[u8]) -> Answer {
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

/// Why a message could not be read.
#[derive(Debug)]
pub enum ReadProblem {
    /// More than the bound.
    TooLarge,
    /// The deadline passed first.
    TimedOut,
    /// The connection failed.
    Io(io::Error),
}

/// Reads from `stream` until the peer closes it or, with `until_blank_line`, until a blank line
/// ends git's lines: at most `max` bytes, until `deadline`. Both the message and the read
/// buffer are wiped when dropped (a request may carry a refused token, an answer a new one).
pub fn read(
    stream: &mut UnixStream,
    deadline: Instant,
    max: usize,
    until_blank_line: bool,
) -> Result<Secret<Vec<u8>>, ReadProblem> {
    let mut message = Secret::new(Vec::with_capacity(2048));
    let mut chunk = Secret::new([0u8; 4096]);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadProblem::TimedOut);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(ReadProblem::Io)?;
        match stream.read(chunk.expose_mut()) {
            Ok(0) => return Ok(message),
            Ok(n) => {
                // A blank line may straddle two reads: look from the byte before this one.
                let start = message.expose().len().saturating_sub(1);
                message.expose_mut().extend_from_slice(&chunk.expose()[..n]);
                if message.expose().len() > max {
                    return Err(ReadProblem::TooLarge);
                }
                if until_blank_line && message.expose()[start..].windows(2).any(|w| w == b"\n\n") {
                    return Ok(message);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadProblem::TimedOut);
            }
            Err(e) => return Err(ReadProblem::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    /// Reads with `until_blank_line` what `parts` write, one write each, then close.
    fn read_parts(
        parts: &[&[u8]],
        max: usize,
        until_blank_line: bool,
    ) -> Result<Vec<u8>, ReadProblem> {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        for part in parts {
            theirs.write_all(part).unwrap();
        }
        drop(theirs);
        let deadline = Instant::now() + Duration::from_secs(10);
        read(&mut ours, deadline, max, until_blank_line).map(|m| m.expose().clone())
    }

    #[test]
    fn a_blank_line_ends_a_request_even_across_two_writes() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"get\nhost=a\n").unwrap();
        theirs.write_all(b"\n").unwrap();
        // `theirs` stays open: only the blank line can end the read before the deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = read(&mut ours, deadline, 1024, true).unwrap();
        assert_eq!(got.expose(), b"get\nhost=a\n\n");
        drop(theirs);
    }

    #[test]
    fn an_answer_is_read_to_the_end_and_both_are_bounded() {
        assert_eq!(
            read_parts(&[b"username=t\n\n", b"password=x\n"], 1024, false).unwrap(),
            b"username=t\n\npassword=x\n"
        );
        assert_eq!(
            read_parts(&[b"no blank line"], 1024, true).unwrap(),
            b"no blank line"
        );
        assert!(matches!(
            read_parts(&[&[b'a'; 100]], 99, false),
            Err(ReadProblem::TooLarge)
        ));
    }

    #[test]
    fn a_request_and_an_answer_round_trip() {
        let request = protocol::parse(b"protocol=https\nhost=a\n").unwrap();
        let bytes = encode_request(GitAction::Erase, &request, None);
        let back = decode_request(bytes.expose()).unwrap();
        assert_eq!(
            (back.action, back.request.host.as_deref(), back.hint),
            (Action::Git(GitAction::Erase), Some("a"), None)
        );
        let back = decode_request(&encode_describe()).unwrap();
        assert_eq!((back.action, back.request.host), (Action::Describe, None));
        assert!(matches!(
            decode_request(b"\xff\n\n"),
            Err(RequestError::NoAction)
        ));
        let mut answer = error_lines(["one\u{7}", "two"]);
        answer.expose_mut().extend_from_slice(b"quit=1\n");
        let split = split_answer(answer.expose());
        assert_eq!(split.errors, ["one", "two"]);
        assert_eq!(split.git.expose(), b"quit=1\n");
        assert_eq!(error_answer("no").expose(), b"error=no\nquit=1\n");
    }

    #[test]
    fn the_operation_hint_travels_as_a_line_git_s_parser_ignores() {
        let request = protocol::parse(b"protocol=https\nhost=a\n").unwrap();
        let bytes = encode_request(GitAction::Get, &request, Some(Operation::Read));
        assert_eq!(
            bytes.expose(),
            b"get\nprotocol=https\nhost=a\ncodestorage_operation=read\n\n"
        );
        let back = decode_request(bytes.expose()).unwrap();
        assert_eq!(back.hint, Some(Operation::Read));
        assert_eq!(back.request.host.as_deref(), Some("a"));
        let write = encode_request(GitAction::Get, &request, Some(Operation::Write));
        assert_eq!(
            decode_request(write.expose()).unwrap().hint,
            Some(Operation::Write)
        );
        let unknown = encode_request(GitAction::Get, &request, Some(Operation::Unknown));
        assert_eq!(unknown.expose(), b"get\nprotocol=https\nhost=a\n\n");
        let odd = decode_request(b"get\nhost=a\ncodestorage_operation=admin\n\n").unwrap();
        assert_eq!(odd.hint, None);
    }

    #[test]
    fn a_silent_peer_times_out_at_the_deadline() {
        let (mut ours, _theirs) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(matches!(
            read(&mut ours, deadline, 1024, true),
            Err(ReadProblem::TimedOut)
        ));
        assert!(Instant::now() >= deadline);
    }
}
