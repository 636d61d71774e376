//! Runs `git http-backend` as a CGI program and relays its answer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::http;
use crate::policy::{POLICY_ENV, Policy};

/// One request for `git http-backend`.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// `/<repo>.git/<service path>`.
    pub path_info: String,
    /// The query string, without `?`: the one the request was authorised for.
    pub query: &'a str,
    /// `Content-Type` of the body.
    pub content_type: Option<&'a str>,
    /// `Content-Encoding` of the body (http-backend inflates gzip itself).
    pub content_encoding: Option<&'a str>,
    /// The `Git-Protocol` header, for protocol v2.
    pub git_protocol: Option<&'a str>,
    /// Who is pushing: receive-pack refuses anonymous pushes.
    pub remote_user: &'a str,
    /// The client's address.
    pub remote_addr: String,
    /// Ref policies to enforce on push.
    pub policy: Option<&'a Policy>,
}

/// Variables that point git at a repository. Inherited from whoever started the emulator (a
/// hook, a test run inside a repository), they would make http-backend or `git init` act on that
/// repository instead of the one under the root.
const REPOSITORY_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
];

/// A `git` command from `PATH` (tests choose the version that way), with repository-locating
/// variables of the emulator's own environment removed.
pub fn git_command() -> Command {
    let mut command = Command::new("git");
    for name in REPOSITORY_VARS {
        command.env_remove(name);
    }
    command
}

/// Runs http-backend for `request` with `body` (length `length`) as its input and writes the
/// HTTP response to `out`, all but the end of a chunked body: the caller logs the request, then
/// calls [`http::end_chunks`] when the status says `Unfinished`, so that a client never sees the
/// end of an answer whose request is not in the log yet. Returns the status sent.
pub fn run(
    root: &Path,
    hooks: &Path,
    request: &Request<'_>,
    body: File,
    length: u64,
    out: &mut impl Write,
) -> io::Result<(u16, Ending)> {
    let mut command = git_command();
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", request.method)
        .env("PATH_INFO", &request.path_info)
        .env("QUERY_STRING", request.query)
        .env("CONTENT_LENGTH", length.to_string())
        .env("REMOTE_USER", request.remote_user)
        .env("REMOTE_ADDR", &request.remote_addr)
        .stdin(body)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in [
        ("CONTENT_TYPE", request.content_type),
        ("HTTP_CONTENT_ENCODING", request.content_encoding),
        ("GIT_PROTOCOL", request.git_protocol),
    ] {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    if let Some(policy) = request.policy {
        // Route every ref through our proc-receive hook, which enforces the policy.
        let json = serde_json::to_string(policy).map_err(io::Error::other)?;
        command
            .env(POLICY_ENV, json)
            .env("GIT_CONFIG_COUNT", "2")
            .env("GIT_CONFIG_KEY_0", "receive.procReceiveRefs")
            .env("GIT_CONFIG_VALUE_0", "refs/")
            .env("GIT_CONFIG_KEY_1", "core.hooksPath")
            .env("GIT_CONFIG_VALUE_1", hooks);
    }
    let mut child = command.spawn()?;
    let result = relay(child.stdout.take().expect("stdout is piped"), out);
    // Always reap the child, whatever happened to the client.
    let _ = child.wait();
    result
}

/// Whether an answer still needs its final chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Sent whole.
    Complete,
    /// Chunked, all but the final empty chunk.
    Unfinished,
}

fn relay(stdout: impl io::Read, out: &mut impl Write) -> io::Result<(u16, Ending)> {
    let mut reader = BufReader::new(stdout);
    let mut status = 200;
    let mut headers = Vec::new();
    let mut answered = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            if !answered {
                // http-backend died before answering (its reason is on our stderr): say so
                // rather than send an empty 200 that git would misread.
                let text = "git http-backend gave no answer\n";
                http::write_text(out, 502, &[], text)?;
                return Ok((502, Ending::Complete));
            }
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        answered = true;
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split(' ')
                .next()
                .and_then(|code| code.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((name.to_owned(), value));
        }
    }
    // http-backend frames nothing itself (it ends its output by exiting): chunk the body unless
    // it said how long it is.
    if headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        http::write_head(out, status, &headers)?;
        io::copy(&mut reader, out)?;
        out.flush()?;
        Ok((status, Ending::Complete))
    } else {
        headers.push(("Transfer-Encoding".to_owned(), "chunked".to_owned()));
        http::write_head(out, status, &headers)?;
        io::copy(&mut reader, &mut http::Chunked::new(&mut *out))?;
        out.flush()?;
        Ok((status, Ending::Unfinished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(cgi_output: &[u8]) -> (u16, String) {
        let mut out = Vec::new();
        let (status, ending) = relay(cgi_output, &mut out).unwrap();
        if ending == Ending::Unfinished {
            http::end_chunks(&mut out).unwrap();
        }
        (status, String::from_utf8(out).unwrap())
    }

    #[test]
    fn relays_cgi_status_headers_and_body() {
        let (status, text) =
            relayed(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno\n");
        assert_eq!(status, 403);
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Type: text/plain\r\n"), "{text}");
        assert!(!text.contains("Status:"), "{text}");
        assert!(
            text.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n3\r\nno\n\r\n0\r\n\r\n"), "{text}");
        // No Status line means 200; a bare LF ends headers as well as CRLF.
        let (status, text) = relayed(b"Content-Type: application/x-git-upload-pack-result\n\n0000");
        assert_eq!(status, 200);
        assert!(text.ends_with("\r\n\r\n4\r\n0000\r\n0\r\n\r\n"), "{text}");
        // A length http-backend gave is kept, and nothing is chunked.
        let (_, text) = relayed(b"Content-Length: 4\r\n\r\n0000");
        assert!(
            !text.contains("chunked")
                && text.ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n0000"),
            "{text}"
        );
    }

    #[test]
    fn a_backend_that_says_nothing_is_a_502() {
        let (status, text) = relayed(b"");
        assert_eq!(status, 502);
        assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    }

    #[test]
    fn git_commands_ignore_the_callers_repository() {
        let command = git_command();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().any(|n| n == "GIT_DIR"), "{removed:?}");
        assert!(removed.iter().any(|n| n == "GIT_WORK_TREE"), "{removed:?}");
    }
}
