//! One message off a broker connection, bounded in size and in time however slowly its bytes
//! come: the broker reads requests with it, the sandbox's client reads answers.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::secret::Secret;

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
