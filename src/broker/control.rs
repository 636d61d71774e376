//! The control API's transport: HTTP/1.1 with JSON bodies over a Unix socket (as Docker's and
//! Firecracker's), one request per connection. Each connection is read on a thread of its own,
//! bounded in size and time; the request goes to the main loop, which alone changes what is
//! served, and its answer comes back here to be written. Only the broker's own user, root and
//! members of `control_group` are served.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::error::BrokerError;
use super::peer::{self, Peer};
use super::policy::Group;
use super::socket::{check_dir, check_path, group_id};
use crate::config::Config;

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// The largest request body: a sandbox's fields are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// How long a control client has to send its whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a control connection waits for the main loop's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One request of the control API, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// `PUT /v1/sandboxes/{name}` and its JSON body.
    Put {
        /// The sandbox.
        name: String,
        /// The body as sent.
        body: Vec<u8>,
    },
    /// `DELETE /v1/sandboxes/{name}`.
    Delete {
        /// The sandbox.
        name: String,
    },
    /// `GET /v1/sandboxes`.
    List,
    /// `GET /v1/sandboxes/{name}`.
    Show {
        /// The sandbox.
        name: String,
    },
    /// `GET /metrics`.
    Metrics,
    /// `GET /v1/health`.
    Health,
}

/// An answer of the control API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body's media type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl ApiAnswer {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: format!("{body}\n"),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }

    /// A body-less answer.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: String::new(),
        }
    }
}

/// A routed request and where its answer goes.
pub struct Command {
    /// The request.
    pub request: ApiRequest,
    /// The connection's thread, waiting for the answer.
    pub reply: mpsc::Sender<ApiAnswer>,
}

/// The control socket and the queue its requests reach the main loop by.
pub struct Listener {
    path: PathBuf,
    socket: UnixListener,
    wake_read: UnixStream,
    wake_write: Arc<Mutex<UnixStream>>,
    sender: mpsc::Sender<Command>,
    receiver: mpsc::Receiver<Command>,
}

impl Listener {
    /// Makes the control socket at `path`, mode 0600 (0660 and group `control_group` when one
    /// is set), in a directory only root or the broker's user may write.
    pub fn bind(path: &Path, config: &Config) -> Result<Self, BrokerError> {
        let problem = |problem: String| BrokerError::Control {
            path: path.to_owned(),
            problem,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        check_dir(dir).map_err(|p| problem(format!("its directory {}: {p}", dir.display())))?;
        check_path(path, &[], false).map_err(problem)?;
        let gid = match &config.broker_settings.control_group {
            Some(group) => Some(group_id(group).ok_or_else(|| {
                problem(format!(
                    "control_group {group} is not in /etc/group; create it or name an existing group"
                ))
            })?),
            None => None,
        };
        let io = |e: io::Error| problem(e.to_string());
        let _ = std::fs::remove_file(path);
        let socket = UnixListener::bind(path).map_err(io)?;
        // control_group's members must be able to connect: the socket is theirs to write too.
        if let Some(gid) = gid {
            rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io(e.into()))?;
        }
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        socket.set_nonblocking(true).map_err(io)?;
        let (wake_read, wake_write) = UnixStream::pair().map_err(io)?;
        wake_read.set_nonblocking(true).map_err(io)?;
        wake_write.set_nonblocking(true).map_err(io)?;
        let (sender, receiver) = mpsc::channel();
        Ok(Self {
            path: path.to_owned(),
            socket,
            wake_read,
            wake_write: Arc::new(Mutex::new(wake_write)),
            sender,
            receiver,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, to poll.
    pub fn socket(&self) -> &UnixListener {
        &self.socket
    }

    /// The end the main loop polls for requests waiting.
    pub fn wake(&self) -> &UnixStream {
        &self.wake_read
    }

    /// Empties the wake pipe.
    pub fn drain_wake(&self) {
        let mut buf = [0u8; 256];
        while matches!((&self.wake_read).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// The requests waiting for the main loop.
    pub fn commands(&self) -> &mpsc::Receiver<Command> {
        &self.receiver
    }

    /// Accepts the connections waiting, each served on a thread of its own.
    pub fn accept(&self, group: Option<&Group>) {
        let gid = group.and_then(group_id);
        for _ in 0..16 {
            let Ok((stream, _)) = self.socket.accept() else {
                return;
            };
            let sender = self.sender.clone();
            let wake = self.wake_write.clone();
            let _ = std::thread::Builder::new()
                .name("broker-control".into())
                .spawn(move || serve(stream, gid, &sender, &wake));
        }
    }
}

/// Whether `peer` may use the control API: the broker's own user, root, or a member of `gid`.
fn allowed(peer: Peer, gid: Option<u32>) -> bool {
    let me = rustix::process::geteuid().as_raw();
    match peer.uid {
        Some(uid) if uid == me || uid == 0 => true,
        Some(_) => gid.is_some_and(|gid| {
            peer.gid == Some(gid) || peer.pid.is_some_and(|pid| in_group(pid, gid))
        }),
        None => false,
    }
}

/// Whether process `pid` has `gid` among its supplementary groups, as the kernel shows them.
fn in_group(pid: u32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status.lines().any(|line| {
            line.strip_prefix("Groups:").is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|g| g.parse::<u32>() == Ok(gid))
            })
        })
    })
}

/// Serves one control connection: read, route, ask the main loop, answer.
fn serve(
    mut stream: UnixStream,
    gid: Option<u32>,
    sender: &mpsc::Sender<Command>,
    wake: &Mutex<UnixStream>,
) {
    let _ = stream.set_nonblocking(false);
    let answer = if allowed(peer::of(&stream), gid) {
        match read_request(&mut stream).and_then(|(method, path, body)| route(&method, &path, body))
        {
            Ok(request) => ask(request, sender, wake),
            Err(answer) => answer,
        }
    } else {
        // Read (bounded, as any request) before refusing: a socket closed with unread bytes
        // resets its peer, which would then see no answer at all.
        let _ = read_request(&mut stream);
        ApiAnswer::error(
            403,
            "only the broker's own user, root and members of control_group may use the control API",
        )
    };
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let _ = stream.write_all(&response_bytes(&answer));
}

/// Hands `request` to the main loop and waits for its answer.
fn ask(request: ApiRequest, sender: &mpsc::Sender<Command>, wake: &Mutex<UnixStream>) -> ApiAnswer {
    let (reply, answer) = mpsc::channel();
    if sender.send(Command { request, reply }).is_err() {
        return ApiAnswer::error(503, "the broker is stopping");
    }
    if let Ok(wake) = wake.lock() {
        // A full pipe already holds a wake-up.
        let _ = (&*wake).write(&[1]);
    }
    answer.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| {
        ApiAnswer::error(503, "the broker did not answer in time; check its log")
    })
}

/// Reads one request: its method, path and body.
fn read_request(stream: &mut UnixStream) -> Result<(String, String, Vec<u8>), ApiAnswer> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let bad = |message: &str| ApiAnswer::error(400, message);
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(ApiAnswer::error(
                431,
                "the request's headers are larger than 16 KiB",
            ));
        }
        if read_some(stream, &mut buf, deadline)? == 0 {
            return Err(bad("the request ended before its headers did"));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&buf[..head_end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(bad("the request is not HTTP/1.1; send e.g. GET /v1/health"));
        }
    }
    let method = request.method.unwrap_or_default().to_owned();
    let path = request.path.unwrap_or_default().to_owned();
    let length = content_length(request.headers)?;
    if length > MAX_BODY {
        return Err(ApiAnswer::error(413, "the body is larger than 64 KiB"));
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        if read_some(stream, &mut body, deadline)? == 0 {
            return Err(bad("the request ended before its Content-Length"));
        }
    }
    body.truncate(length);
    Ok((method, path, body))
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, ApiAnswer> {
    let mut length = 0;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ApiAnswer::error(
                411,
                "send the body with Content-Length, not chunked",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| ApiAnswer::error(400, "Content-Length is not a number"))?;
        }
    }
    Ok(length)
}

/// Reads what is there into `buf`, waiting until `deadline` at most.
fn read_some(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, ApiAnswer> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ApiAnswer::error(408, "no whole request within 5s"));
    }
    let _ = stream.set_read_timeout(Some(left));
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ApiAnswer::error(408, "no whole request within 5s"))
        }
        Err(e) => Err(ApiAnswer::error(
            400,
            format!("cannot read the request: {e}"),
        )),
    }
}

/// The endpoint `method` and `path` name.
pub fn route(method: &str, path: &str, body: Vec<u8>) -> Result<ApiRequest, ApiAnswer> {
    let path = path.split('?').next().unwrap_or_default();
    let sandbox = path
        .strip_prefix("/v1/sandboxes/")
        .filter(|n| !n.is_empty());
    let request = match (method, path, sandbox) {
        ("GET", "/v1/health", _) => ApiRequest::Health,
        ("GET", "/metrics", _) => ApiRequest::Metrics,
        ("GET", "/v1/sandboxes", _) => ApiRequest::List,
        ("GET", _, Some(name)) => ApiRequest::Show { name: name.into() },
        ("PUT", _, Some(name)) => ApiRequest::Put {
            name: name.into(),
            body,
        },
        ("DELETE", _, Some(name)) => ApiRequest::Delete { name: name.into() },
        (_, "/v1/health" | "/metrics" | "/v1/sandboxes", _) | (_, _, Some(_)) => {
            return Err(ApiAnswer::error(
                405,
                format!("{method} is not served on {path}; see docs/sandboxes.md for the API"),
            ));
        }
        _ => {
            return Err(ApiAnswer::error(
                404,
                format!(
                    "no endpoint {path}; the API serves /v1/sandboxes, /v1/sandboxes/NAME, /v1/health and /metrics"
                ),
            ));
        }
    };
    Ok(request)
}

/// An answer as HTTP/1.1 bytes; the connection closes after it.
fn response_bytes(answer: &ApiAnswer) -> Vec<u8> {
    let reason = match answer.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    )
    .into_bytes();
    out.extend_from_slice(answer.body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_endpoint_or_say_what_is_served() {
        assert_eq!(route("GET", "/v1/health", vec![]), Ok(ApiRequest::Health));
        assert_eq!(
            route("GET", "/v1/sandboxes?x=1", vec![]),
            Ok(ApiRequest::List)
        );
        assert_eq!(
            route("DELETE", "/v1/sandboxes/a", vec![]),
            Ok(ApiRequest::Delete { name: "a".into() })
        );
        assert_eq!(
            route("POST", "/v1/sandboxes/a", vec![]).unwrap_err().status,
            405
        );
        assert_eq!(route("GET", "/v2", vec![]).unwrap_err().status, 404);
        let bytes = response_bytes(&ApiAnswer::error(409, "x"));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 409 Conflict\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"x\"}\n"), "{text}");
    }

    #[test]
    fn only_the_brokers_user_root_and_the_group_are_allowed() {
        let me = rustix::process::geteuid().as_raw();
        let peer = |uid, gid| Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: None,
        };
        assert!(allowed(peer(me, 1), None));
        assert!(allowed(peer(0, 1), None));
        assert!(!allowed(peer(4242, 4242), None));
        assert!(allowed(peer(4242, 77), Some(77)));
        assert!(!allowed(Peer::default(), Some(77)));
    }
}
