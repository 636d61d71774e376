//! One connection, one request: route it, check its token, and hand it to http-backend.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::{self, Keyring};
use crate::policy::{HOOK_ARG, Policy};
use crate::{EmulatorError, cgi, http, io_error};

/// How long a connection may stay silent, reading or writing, before it is dropped.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The realm git sees in the challenge; any Basic challenge makes git ask its helpers.
const CHALLENGE: &str = "Basic realm=\"Code Storage\"";

/// Shared server state.
#[derive(Debug)]
pub struct Server {
    /// Where the bare repositories are.
    pub root: PathBuf,
    /// Who may sign tokens.
    pub keyring: Keyring,
    /// Create unknown repositories on push.
    pub create_on_push: bool,
    /// The hooks directory holding our proc-receive hook.
    pub hooks: PathBuf,
}

/// Writes the `proc-receive` hook, which runs this same binary, under `root`.
pub fn install_hooks(root: &Path) -> Result<PathBuf, EmulatorError> {
    let hooks = root.join(".codestorage-emulator/hooks");
    std::fs::create_dir_all(&hooks)
        .map_err(io_error(format!("cannot create {}", hooks.display())))?;
    let exe = std::env::current_exe().map_err(io_error("cannot find the emulator's own path"))?;
    let quoted = exe.to_string_lossy().replace('\'', r"'\''");
    let script = format!("#!/bin/sh\nexec '{quoted}' {HOOK_ARG}\n");
    let path = hooks.join("proc-receive");
    std::fs::write(&path, script).map_err(io_error(format!("cannot write {}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(
            io_error(format!("cannot make {} executable", path.display())),
        )?;
    }
    Ok(hooks)
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The repository ID (the base one for `+ephemeral` and `+import` remotes).
    pub repo: String,
    /// `git-upload-pack` or `git-receive-pack`.
    pub service: &'static str,
    /// What http-backend is asked for: `/<repo>.git/<suffix>`.
    pub path_info: String,
}

/// Maps a smart-HTTP request to a repository and service, or an HTTP status and reason.
pub fn target(method: &str, path: &str, query: &str) -> Result<Target, (u16, String)> {
    let decoded = percent_decode(path).ok_or((400, "bad %-escape in path".to_owned()))?;
    let routes: [(&str, &str, Option<&'static str>); 3] = [
        ("/info/refs", "GET", None),
        ("/git-upload-pack", "POST", Some("git-upload-pack")),
        ("/git-receive-pack", "POST", Some("git-receive-pack")),
    ];
    let Some((suffix, expected_method, fixed)) = routes
        .iter()
        .find(|(suffix, _, _)| decoded.ends_with(suffix))
    else {
        return Err((404, "only git's smart HTTP protocol is served".into()));
    };
    if method != *expected_method {
        return Err((405, format!("{method} not allowed here")));
    }
    let service = match fixed {
        Some(service) => service,
        None => match query.split('&').find_map(|p| p.strip_prefix("service=")) {
            Some("git-upload-pack") => "git-upload-pack",
            Some("git-receive-pack") => "git-receive-pack",
            _ => {
                return Err((
                    403,
                    "dumb HTTP is not served; use git 1.6.6 or later".into(),
                ));
            }
        },
    };
    let repo_path = &decoded[..decoded.len() - suffix.len()];
    let Some(with_git) = repo_path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix(".git"))
    else {
        return Err((404, "repository paths end in .git".into()));
    };
    let repo = with_git
        .strip_suffix("+ephemeral")
        .or_else(|| with_git.strip_suffix("+import"))
        .unwrap_or(with_git);
    let bad_segment = repo
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.starts_with('.'));
    let bad_char = repo
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if bad_segment || bad_char {
        return Err((404, "not a valid repository ID".into()));
    }
    Ok(Target {
        repo: repo.to_owned(),
        service,
        path_info: format!("/{repo}.git{suffix}"),
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Who is asking, for the log line.
#[derive(Default)]
struct Who {
    org: String,
    sub: String,
    scopes: String,
}

impl Server {
    /// Serves one connection (TLS when `tls` is set) and closes it.
    pub fn serve(&self, tcp: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        // A client that connects and goes quiet must not hold a thread (and its http-backend)
        // forever; git never pauses this long mid-request.
        let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(IDLE_TIMEOUT));
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.ip().to_string());
        match tls {
            None => self.handle(tcp, &peer),
            Some(config) => {
                let Ok(connection) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(connection, tcp);
                self.handle(&mut stream, &peer);
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        }
    }

    fn handle(&self, stream: impl Read + Write, peer: &str) {
        let mut reader = BufReader::new(stream);
        let head = match http::read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let _ = http::write_text(reader.get_mut(), 400, &[], &format!("{e}\n"));
                return;
            }
        };
        let mut who = Who::default();
        let (status, reason) = self.respond(&head, &mut reader, peer, &mut who);
        // One line per request: never the token or the Authorization header.
        let protocol = match head.header("git-protocol") {
            Some(v) if v.contains("version=2") => "v2",
            _ => "v0",
        };
        eprintln!(
            "codestorage-emulator: {} {} proto={protocol} org={} sub={} scopes={} -> {status} {reason}",
            printable(&head.method),
            printable(head.path()),
            printable(or_dash(&who.org)),
            printable(or_dash(&who.sub)),
            printable(or_dash(&who.scopes)),
        );
    }

    fn respond<S: Read + Write>(
        &self,
        head: &http::Head,
        reader: &mut BufReader<S>,
        peer: &str,
        who: &mut Who,
    ) -> (u16, String) {
        let refuse = |reader: &mut BufReader<S>, status: u16, reason: String| {
            let challenge = [("WWW-Authenticate".to_owned(), CHALLENGE.to_owned())];
            let extra: &[(String, String)] = if status == 401 { &challenge } else { &[] };
            let _ = http::write_text(reader.get_mut(), status, extra, &format!("{reason}\n"));
            (status, reason)
        };
        let target = match target(&head.method, head.path(), head.query()) {
            Ok(target) => target,
            Err((status, reason)) => return refuse(reader, status, reason),
        };
        let Some(password) = head.header("authorization").and_then(auth::basic_password) else {
            return refuse(reader, 401, "no credentials".into());
        };
        let claims = match auth::verify(&password, &self.keyring, &target.repo, now()) {
            Ok(claims) => claims,
            Err(refusal) => return refuse(reader, 401, refusal.to_string()),
        };
        who.org.clone_from(&claims.iss);
        who.sub.clone_from(&claims.sub);
        who.scopes = claims.scopes.join("+");
        if !auth::allows(&claims, target.service) {
            let needs = if target.service == "git-receive-pack" {
                "git:write"
            } else {
                "git:read or git:write"
            };
            return refuse(reader, 403, format!("{} needs {needs}", target.service));
        }
        let directory = self.root.join(format!("{}.git", target.repo));
        if !directory.is_dir() {
            if !(self.create_on_push && target.service == "git-receive-pack") {
                return refuse(reader, 404, format!("no repository {:?}", target.repo));
            }
            if let Err(reason) = create_repository(&directory) {
                return refuse(reader, 500, reason);
            }
        }
        let body = match head.body() {
            Ok(body) => body,
            Err(e) => return refuse(reader, 400, e.to_string()),
        };
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        // Spool the body to disk: a large push never sits in memory, and http-backend gets a
        // plain file with a known length.
        let (file, length) = match self.spool(body, reader) {
            Ok(spooled) => spooled,
            Err(reason) => return refuse(reader, 400, reason),
        };
        let policy = Policy::from_claims(&claims);
        let request = cgi::Request {
            method: &head.method,
            path_info: target.path_info.clone(),
            query: head.query(),
            content_type: head.header("content-type"),
            content_encoding: head.header("content-encoding"),
            git_protocol: head.header("git-protocol"),
            // http-backend refuses pushes when REMOTE_USER is empty, whatever the token says.
            remote_user: or_dash(&claims.sub),
            remote_addr: peer.to_owned(),
            policy: policy.as_ref(),
        };
        match cgi::run(
            &self.root,
            &self.hooks,
            &request,
            file,
            length,
            reader.get_mut(),
        ) {
            Ok(status) => (status, format!("{} {}", target.service, target.repo)),
            Err(e) => (500, format!("http-backend: {e}")),
        }
    }

    fn spool<S: Read>(
        &self,
        body: http::Body,
        reader: &mut BufReader<S>,
    ) -> Result<(std::fs::File, u64), String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.root.join(format!(
            ".codestorage-emulator/body-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| e.to_string())?;
        // Unlinked at once: the open handle keeps the data until http-backend is done.
        let _ = std::fs::remove_file(&path);
        let length = http::copy_body(body, reader, &mut file).map_err(|e| e.to_string())?;
        use std::io::Seek;
        file.rewind().map_err(|e| e.to_string())?;
        Ok((file, length))
    }
}

fn create_repository(directory: &Path) -> Result<(), String> {
    let status = cgi::git_command()
        // HEAD names the branch a client pushes first in practice; git's own default may differ.
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(directory)
        .status()
        .map_err(|e| format!("cannot run git init: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("git init --bare {} failed", directory.display()))
    }
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// `text` with control characters replaced, so that a client cannot forge log lines.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_smart_http_requests_to_repository_and_service() {
        let t = target("GET", "/team/x.git/info/refs", "service=git-upload-pack").unwrap();
        assert_eq!((t.repo.as_str(), t.service), ("team/x", "git-upload-pack"));
        assert_eq!(t.path_info, "/team/x.git/info/refs");
        let t = target("POST", "/team/x+ephemeral.git/git-receive-pack", "").unwrap();
        assert_eq!((t.repo.as_str(), t.service), ("team/x", "git-receive-pack"));
        assert_eq!(t.path_info, "/team/x.git/git-receive-pack");
        let t = target("POST", "/a%2Db.git/git-upload-pack", "").unwrap();
        assert_eq!(t.repo, "a-b");
        let t = target(
            "GET",
            "/org/team/deep+import.git/info/refs",
            "x=1&service=git-receive-pack",
        )
        .unwrap();
        assert_eq!(
            (t.repo.as_str(), t.service),
            ("org/team/deep", "git-receive-pack")
        );
        assert_eq!(t.path_info, "/org/team/deep.git/info/refs");
        // Only a trailing +ephemeral/+import names the base repository.
        let t = target("POST", "/x+import+ephemeral.git/git-upload-pack", "").unwrap();
        assert_eq!(t.repo, "x+import");
        assert_eq!(printable("a\rb\n"), "a?b?");
    }

    #[test]
    fn refuses_traversal_dumb_http_and_wrong_methods() {
        for path in [
            "/../x.git/info/refs",
            "/a/%2e%2e/b.git/info/refs",
            "/a//b.git/info/refs",
            "/.codestorage-emulator.git/info/refs",
            "/a\\b.git/info/refs",
        ] {
            assert_eq!(
                target("GET", path, "service=git-upload-pack")
                    .unwrap_err()
                    .0,
                404,
                "{path}"
            );
        }
        assert_eq!(target("GET", "/x.git/info/refs", "").unwrap_err().0, 403);
        assert_eq!(target("GET", "/x.git/HEAD", "").unwrap_err().0, 404);
        assert_eq!(
            target("GET", "/x.git/git-upload-pack", "").unwrap_err().0,
            405
        );
        assert_eq!(
            target("GET", "/x/info/refs", "service=git-upload-pack")
                .unwrap_err()
                .0,
            404
        );
        assert_eq!(target("GET", "/x%zz.git/info/refs", "").unwrap_err().0, 400);
    }
}
