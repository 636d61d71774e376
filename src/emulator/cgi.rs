//! Runs `git http-backend` as a CGI program and relays its answer.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::http;
use super::policy::{POLICY_ENV, Policy};

/// One request for `git http-backend`.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// `/<repo>.git/<service path>`.
    pub path_info: String,
    /// The query string, without `?`.
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

/// Runs http-backend for `request` with `body` (length `length`) as its input and writes the
/// HTTP response to `out`. Returns the status sent.
pub fn run(
    root: &Path,
    hooks: &Path,
    request: &Request<'_>,
    body: File,
    length: u64,
    out: &mut impl Write,
) -> io::Result<u16> {
    let mut command = Command::new("git");
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

fn relay(stdout: impl io::Read, out: &mut impl Write) -> io::Result<u16> {
    let mut reader = BufReader::new(stdout);
    let mut status = 200;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
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
    http::write_head(out, status, &headers)?;
    io::copy(&mut reader, out)?;
    out.flush()?;
    Ok(status)
}
