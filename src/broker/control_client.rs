//! The operator's side of the control API: one HTTP/1.1 request over the Unix socket, its
//! answer read whole and parsed. `broker sandbox ...` uses it; an orchestrator may use curl.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the control API may take to answer (a registration may load a key).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Why the control API gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens there.
    #[error(
        "cannot reach the broker's control API at {}: {source}; start the broker with control_socket in its config (or --control-socket), or name the socket with --control-socket",
        .path.display()
    )]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The exchange broke.
    #[error("the broker's control API at {} broke the connection: {source}", .path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Not an HTTP answer.
    #[error("the broker's control API at {} sent no HTTP answer; is that the control socket?", .path.display())]
    NotHttp {
        /// The socket.
        path: PathBuf,
    },
    /// An error answer, with the API's own words.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's `error`.
        message: String,
    },
}

/// Sends `method path` with `body` to the control socket at `socket`; returns the answer's
/// status and body, or the API's error as [`ControlError::Refused`].
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ControlError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let io = |source| ControlError::Io {
        path: socket.to_owned(),
        source,
    };
    let body = body.map(ToString::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    (&stream)
        .take(1 << 20)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let not_http = || ControlError::NotHttp {
        path: socket.to_owned(),
    };
    let Ok(httparse::Status::Complete(head_len)) = response.parse(&answer) else {
        return Err(not_http());
    };
    let status = response.code.ok_or_else(not_http)?;
    let text = String::from_utf8_lossy(&answer[head_len..]).into_owned();
    if status >= 400 {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("the control API answered {status}: {}", text.trim()));
        return Err(ControlError::Refused { status, message });
    }
    Ok((status, text))
}
