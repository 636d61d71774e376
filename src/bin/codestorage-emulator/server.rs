//! One connection, one request: route it, check its token, and hand it to http-backend.

use std::cell::Cell;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::auth::{self, Keyring};
use crate::host::{Hosts, Owner};
use crate::limits::{self, Deadline};
use crate::log::{Decision, Record, RequestLog};
use crate::policy::{HOOK_ARG, Policy};
use crate::{EmulatorError, cgi, http, io_error, lfs};

/// How long a connection may stay silent, reading or writing, once its head is in.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The realm git sees in the challenge; any Basic challenge makes git ask its helpers.
const CHALLENGE: &str = "Basic realm=\"Code Storage\"";

/// Shared server state.
#[derive(Debug)]
pub struct Server {
    /// Where the bare repositories are.
    pub root: PathBuf,
    /// Who may sign tokens.
    pub keyring: Keyring,
    /// Which organisation owns each host name.
    pub hosts: Hosts,
    /// Create unknown repositories on push.
    pub create_on_push: bool,
    /// The hooks directory holding our proc-receive hook.
    pub hooks: PathBuf,
    /// How long a client has, from its connection, to send a whole request head.
    pub head_timeout: Duration,
    /// Where every request is recorded as a JSON line (`--log`).
    pub log: Option<RequestLog>,
    /// `https`, or `http` with `--plain-http`: for the links LFS answers give.
    pub scheme: &'static str,
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

/// What a request does: one of the two programs of git's smart HTTP protocol, or a Git LFS
/// transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
    /// An LFS download (batch or object).
    LfsDownload,
    /// An LFS upload (batch or object).
    LfsUpload,
    /// An LFS lock request, made by pushes.
    LfsLocks,
}

impl Service {
    /// The short name the request log uses.
    pub fn short(self) -> &'static str {
        match self {
            Self::UploadPack => "upload-pack",
            Self::ReceivePack => "receive-pack",
            Self::LfsDownload => "lfs-download",
            Self::LfsUpload => "lfs-upload",
            Self::LfsLocks => "lfs-locks",
        }
    }

    /// The program's name, as in `service=` and the POST paths, or the LFS operation's.
    pub fn program(self) -> &'static str {
        match self {
            Self::UploadPack => "git-upload-pack",
            Self::ReceivePack => "git-receive-pack",
            Self::LfsDownload => "LFS download",
            Self::LfsUpload => "LFS upload",
            Self::LfsLocks => "LFS locking",
        }
    }

    /// Whether it writes to the repository (and so needs `git:write`).
    pub fn writes(self) -> bool {
        matches!(self, Self::ReceivePack | Self::LfsUpload | Self::LfsLocks)
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The repository ID (the base one for `+ephemeral` and `+import` remotes).
    pub repo: String,
    /// The service the token must allow, and the only one http-backend is asked to run.
    pub service: Service,
    /// What http-backend is asked for: `/<repo>.git/<suffix>`.
    pub path_info: String,
    /// The query string http-backend gets: rebuilt from [`Target::service`], never the client's,
    /// so that what was authorised is what is served.
    pub query: String,
}

/// The values of every `service` parameter in `query`, with names and values decoded as git
/// http-backend decodes them (`%XX` and `+`): it would see `%73ervice` as `service` too.
fn service_parameters(query: &str) -> Result<Vec<String>, (u16, String)> {
    let mut values = Vec::new();
    for parameter in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let decode = |text: &str| {
            percent_decode(&text.replace('+', " "))
                .ok_or((400, "bad %-escape in the query string".to_owned()))
        };
        if decode(name)? == "service" {
            values.push(decode(value)?);
        }
    }
    Ok(values)
}

/// Maps a smart-HTTP request to a repository and service, or an HTTP status and reason.
pub fn target(method: &str, path: &str, query: &str) -> Result<Target, (u16, String)> {
    let decoded = percent_decode(path).ok_or((400, "bad %-escape in path".to_owned()))?;
    // http-backend serves the LAST service= of a query; authorising any single one of several
    // would let `?service=git-upload-pack&service=git-receive-pack` reach receive-pack with a
    // read-only token. Several are never sent by git: refuse them.
    let services = service_parameters(query)?;
    if services.len() > 1 {
        return Err((
            400,
            format!("{} service= parameters; send exactly one", services.len()),
        ));
    }
    let routes: [(&str, &str, Option<Service>); 3] = [
        ("/info/refs", "GET", None),
        ("/git-upload-pack", "POST", Some(Service::UploadPack)),
        ("/git-receive-pack", "POST", Some(Service::ReceivePack)),
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
    let (service, query) = match fixed {
        // A POST's service is its path; http-backend ignores the query there.
        Some(service) => (*service, String::new()),
        None => {
            let service = match services.first().map(String::as_str) {
                Some("git-upload-pack") => Service::UploadPack,
                Some("git-receive-pack") => Service::ReceivePack,
                _ => {
                    return Err((
                        403,
                        "dumb HTTP is not served; use git 1.6.6 or later".into(),
                    ));
                }
            };
            (service, format!("service={}", service.program()))
        }
    };
    let repo = repository_id(&decoded[..decoded.len() - suffix.len()])?;
    Ok(Target {
        repo: repo.clone(),
        service,
        path_info: format!("/{repo}.git{suffix}"),
        query,
    })
}

/// The repository ID of a decoded `/<repo>[+ephemeral|+import].git` path.
fn repository_id(repo_path: &str) -> Result<String, (u16, String)> {
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
    Ok(repo.to_owned())
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

/// What the server learned about a request, for the logs.
#[derive(Debug, Default)]
struct Seen {
    /// The service the request asked for, once routed.
    service: Option<Service>,
    /// The token's claims: verified, or as a refused token claimed them.
    claims: Option<auth::Claims>,
    /// Whether the token passed every check (signature, lifetime, repository).
    verified: bool,
}

/// How a request ended.
#[derive(Debug)]
enum Verdict {
    /// Answered with this status; the body's final chunk is still to be sent when `Unfinished`.
    Served(u16, String, cgi::Ending),
    /// Refused before http-backend: the reply is still to be written.
    Refused(u16, String),
}

impl Server {
    /// Serves one connection (TLS when `tls` is set) and closes it.
    pub fn serve(&self, tcp: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        // A client that stops reading must not hold a thread (and its http-backend) forever;
        // git never pauses this long mid-request.
        let _ = tcp.set_write_timeout(Some(IDLE_TIMEOUT));
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.ip().to_string());
        // The clock runs from the connection, TLS handshake included: a client sending a byte
        // at a time cannot stretch it.
        let until = Rc::new(Cell::new(Some(Instant::now() + self.head_timeout)));
        let stream = Deadline::new(tcp, Rc::clone(&until), IDLE_TIMEOUT);
        match tls {
            None => self.handle(stream, &peer, &until),
            Some(config) => {
                let Ok(connection) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(connection, stream);
                self.handle(&mut stream, &peer, &until);
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        }
    }

    fn handle(&self, stream: impl Read + Write, peer: &str, until: &Cell<Option<Instant>>) {
        let mut reader = BufReader::new(stream);
        let head = match http::read_head(&mut reader) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                let (status, decision, reason) = if limits::timed_out(&e) {
                    let reason = format!(
                        "no complete request head within {:?} of connecting; dropped",
                        self.head_timeout
                    );
                    (408, Decision::Dropped, reason)
                } else {
                    (400, Decision::Refused, e.to_string())
                };
                self.record(None, status, decision, &reason, &Seen::default());
                let _ = http::write_text(reader.get_mut(), status, &[], &format!("{reason}\n"));
                return;
            }
        };
        until.set(None);
        let mut seen = Seen::default();
        match self.respond(&head, &mut reader, peer, &mut seen) {
            Verdict::Served(status, reason, ending) => {
                self.record(Some(&head), status, Decision::Allowed, &reason, &seen);
                // Only now may the client see the end of the answer: the log holds its request.
                if ending == cgi::Ending::Unfinished {
                    let _ = http::end_chunks(reader.get_mut());
                }
            }
            Verdict::Refused(status, reason) => {
                // Logged before the reply goes out: once a client has its answer, the log
                // already holds the request (tests read it as soon as git returns).
                self.record(Some(&head), status, Decision::Refused, &reason, &seen);
                let challenge = [("WWW-Authenticate".to_owned(), CHALLENGE.to_owned())];
                let extra: &[(String, String)] = if status == 401 { &challenge } else { &[] };
                let _ = http::write_text(reader.get_mut(), status, extra, &format!("{reason}\n"));
            }
        }
    }

    /// Logs one request: a human line on stderr, and a JSON record in the request log. Never
    /// the token or the Authorization header.
    fn record(
        &self,
        head: Option<&http::Head>,
        status: u16,
        decision: Decision,
        reason: &str,
        seen: &Seen,
    ) {
        let lfs = matches!(
            seen.service,
            Some(Service::LfsDownload | Service::LfsUpload | Service::LfsLocks)
        );
        let protocol = match head.map(|h| h.header("git-protocol")) {
            // LFS speaks JSON, not git's wire protocol.
            _ if lfs => "",
            None => "",
            Some(Some(v)) if v.contains("version=2") => "v2",
            Some(_) => "v0",
        };
        let method = head.map_or("", |h| h.method.as_str());
        let path = head.map_or("", |h| h.path());
        // The human line names only a token that passed every check, as it always has.
        let (org, sub, scopes) = match seen.claims.as_ref().filter(|_| seen.verified) {
            Some(c) => (c.iss.as_str(), c.sub.as_str(), c.scopes.join("+")),
            None => ("", "", String::new()),
        };
        eprintln!(
            "codestorage-emulator: {} {} proto={} org={} sub={} scopes={} -> {status} {}",
            printable(or_dash(method)),
            printable(or_dash(path)),
            or_dash(protocol),
            printable(or_dash(org)),
            printable(or_dash(sub)),
            printable(or_dash(&scopes)),
            printable(reason),
        );
        if let Some(log) = &self.log {
            log.write(&Record {
                time: now(),
                method,
                path,
                service: seen.service.map_or("none", Service::short),
                protocol,
                status,
                decision,
                reason,
                verified: seen.verified,
                claims: seen.claims.as_ref(),
            });
        }
    }

    fn respond<S: Read + Write>(
        &self,
        head: &http::Head,
        reader: &mut BufReader<S>,
        peer: &str,
        seen: &mut Seen,
    ) -> Verdict {
        let refuse = |status: u16, reason: String| Verdict::Refused(status, reason);
        if let Some(request) = lfs::route(&head.method, head.path()) {
            return match request {
                Ok(request) => self.respond_lfs(head, reader, &request, seen),
                Err((status, reason)) => refuse(status, reason),
            };
        }
        let target = match target(&head.method, head.path(), head.query()) {
            Ok(target) => target,
            Err((status, reason)) => return refuse(status, reason),
        };
        seen.service = Some(target.service);
        let claims = match self.authorise(head, &target.repo, target.service, seen) {
            Ok(claims) => claims,
            Err(verdict) => return verdict,
        };
        let directory = self.root.join(format!("{}.git", target.repo));
        if !directory.is_dir() {
            if !(self.create_on_push && target.service == Service::ReceivePack) {
                return refuse(404, format!("no repository {:?}", target.repo));
            }
            if let Err(reason) = create_repository(&directory) {
                return refuse(500, reason);
            }
        }
        let body = match head.body() {
            Ok(body) => body,
            Err(e) => return refuse(400, e.to_string()),
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
            Err(reason) => return refuse(400, reason),
        };
        let policy = Policy::from_claims(&claims);
        let request = cgi::Request {
            method: &head.method,
            path_info: target.path_info.clone(),
            query: &target.query,
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
            Ok((status, ending)) => Verdict::Served(
                status,
                format!("{} {}", target.service.program(), target.repo),
                ending,
            ),
            Err(e) => Verdict::Served(500, format!("http-backend: {e}"), cgi::Ending::Complete),
        }
    }

    /// Checks the request's token for `service` on `repo`: the host's organisation, the
    /// signature and claims, and the scope. Notes in `seen` what the token claimed.
    fn authorise(
        &self,
        head: &http::Head,
        repo: &str,
        service: Service,
        seen: &mut Seen,
    ) -> Result<auth::Claims, Verdict> {
        let refuse = |status: u16, reason: String| Err(Verdict::Refused(status, reason));
        let owner = match self.hosts.owner(head.header("host").unwrap_or("")) {
            Owner::Org(org) => org,
            Owner::RestApi(name) => {
                return refuse(
                    404,
                    format!(
                        "{name} is the REST API's host; git is served on the organisation's own host"
                    ),
                );
            }
            Owner::Unknown(name) => {
                return refuse(
                    421,
                    format!(
                        "host {name:?} belongs to no organisation; start the emulator with --host {name}=ORG"
                    ),
                );
            }
        };
        let Some(password) = head.header("authorization").and_then(auth::basic_password) else {
            return refuse(401, "no credentials".into());
        };
        let claims = match auth::verify(&password, &self.keyring, &owner, repo, now()) {
            Ok(claims) => claims,
            Err(refusal) => {
                // What the refused token claimed, for the log: it says which token was sent.
                seen.claims = auth::read_claims(&password);
                return refuse(401, refusal.to_string());
            }
        };
        seen.claims = Some(claims.clone());
        seen.verified = true;
        if !auth::allows(&claims, service) {
            let needs = if service.writes() {
                "git:write"
            } else {
                "git:read or git:write"
            };
            return refuse(403, format!("{} needs {needs}", service.program()));
        }
        Ok(claims)
    }

    /// Serves one Git LFS request (see [`lfs`]) with the same token checks as git's.
    fn respond_lfs<S: Read + Write>(
        &self,
        head: &http::Head,
        reader: &mut BufReader<S>,
        request: &lfs::Request,
        seen: &mut Seen,
    ) -> Verdict {
        let refuse = |status: u16, reason: String| Verdict::Refused(status, reason);
        let repo = match percent_decode(&request.prefix)
            .ok_or((400, "bad %-escape in path".to_owned()))
            .and_then(|decoded| repository_id(&decoded))
        {
            Ok(repo) => repo,
            Err((status, reason)) => return refuse(status, reason),
        };
        let batch = match &request.kind {
            lfs::Kind::Batch => match lfs::read_batch(head, reader) {
                Ok(batch) => Some(batch),
                Err(reason) => return refuse(400, reason),
            },
            _ => None,
        };
        let service = match (&request.kind, &batch) {
            (_, Some(batch)) if batch.operation == "upload" => Service::LfsUpload,
            (lfs::Kind::Upload(_), _) => Service::LfsUpload,
            (lfs::Kind::Locks, _) => Service::LfsLocks,
            _ => Service::LfsDownload,
        };
        seen.service = Some(service);
        if let Err(verdict) = self.authorise(head, &repo, service, seen) {
            return verdict;
        }
        let directory = self.root.join(format!("{repo}.git"));
        if !directory.is_dir() {
            if !(self.create_on_push && service == Service::LfsUpload) {
                return refuse(404, format!("no repository {repo:?}"));
            }
            if let Err(reason) = create_repository(&directory) {
                return refuse(500, reason);
            }
        }
        let out = reader.get_mut();
        match (&request.kind, batch) {
            (lfs::Kind::Locks, _) => refuse(404, "locking is not supported".into()),
            (_, Some(batch)) => {
                let base = format!(
                    "{}://{}{}",
                    self.scheme,
                    head.header("host").unwrap_or(""),
                    request.prefix
                );
                lfs_batch(head, &batch, &directory, &base, &repo, out)
            }
            (lfs::Kind::Download(oid), _) => match lfs::send(&directory, oid, out) {
                Ok(length) => Verdict::Served(
                    200,
                    format!("LFS download of {length} bytes, {repo}"),
                    cgi::Ending::Complete,
                ),
                Err(reason) => refuse(404, reason),
            },
            (lfs::Kind::Upload(oid), _) => match lfs::store(head, reader, &directory, oid) {
                Ok(length) => {
                    let _ = http::write_whole(reader.get_mut(), 200, &[], b"");
                    Verdict::Served(
                        200,
                        format!("LFS upload of {length} bytes, {repo}"),
                        cgi::Ending::Complete,
                    )
                }
                Err(reason) => refuse(422, reason),
            },
            (lfs::Kind::Batch, None) => refuse(500, "a batch without its body".into()),
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

/// Answers an LFS batch request for `repo`, whose objects' links start with `base`.
fn lfs_batch(
    head: &http::Head,
    batch: &lfs::BatchRequest,
    directory: &Path,
    base: &str,
    repo: &str,
    out: &mut impl Write,
) -> Verdict {
    // The links carry the request's own credentials: git-lfs sends them with each transfer.
    let authorization = head.header("authorization").unwrap_or("");
    let answer = lfs::batch_answer(batch, directory, base, authorization);
    let headers = [("Content-Type".to_owned(), lfs::MEDIA_TYPE.to_owned())];
    let _ = http::write_whole(out, 200, &headers, answer.to_string().as_bytes());
    let count = batch.objects.len();
    let reason = format!("LFS batch {} of {count} objects, {repo}", batch.operation);
    Verdict::Served(200, reason, cgi::Ending::Complete)
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
        use Service::{ReceivePack, UploadPack};
        let t = target("GET", "/team/x.git/info/refs", "service=git-upload-pack").unwrap();
        assert_eq!((t.repo.as_str(), t.service), ("team/x", UploadPack));
        assert_eq!(t.path_info, "/team/x.git/info/refs");
        assert_eq!(t.query, "service=git-upload-pack");
        let t = target("POST", "/team/x+ephemeral.git/git-receive-pack", "").unwrap();
        assert_eq!((t.repo.as_str(), t.service), ("team/x", ReceivePack));
        assert_eq!(t.path_info, "/team/x.git/git-receive-pack");
        assert_eq!(t.query, "");
        let t = target("POST", "/a%2Db.git/git-upload-pack", "").unwrap();
        assert_eq!(t.repo, "a-b");
        let t = target(
            "GET",
            "/org/team/deep+import.git/info/refs",
            "x=1&service=git-receive-pack",
        )
        .unwrap();
        assert_eq!((t.repo.as_str(), t.service), ("org/team/deep", ReceivePack));
        assert_eq!(t.path_info, "/org/team/deep.git/info/refs");
        // http-backend gets only the service that was authorised, not the client's extras.
        assert_eq!(t.query, "service=git-receive-pack");
        // Decoded as http-backend decodes it.
        let t = target("GET", "/x.git/info/refs", "%73ervice=git-receive%2Dpack").unwrap();
        assert_eq!(t.service, ReceivePack);
        // A POST's path names its service, whatever the query says.
        let t = target("POST", "/x.git/git-upload-pack", "service=git-receive-pack").unwrap();
        assert_eq!((t.service, t.query.as_str()), (UploadPack, ""));
        // Only a trailing +ephemeral/+import names the base repository.
        let t = target("POST", "/x+import+ephemeral.git/git-upload-pack", "").unwrap();
        assert_eq!(t.repo, "x+import");
        assert_eq!(printable("a\rb\n"), "a?b?");
    }

    #[test]
    fn refuses_more_than_one_service_parameter_however_spelled() {
        for query in [
            "service=git-upload-pack&service=git-receive-pack",
            "service=git-receive-pack&service=git-upload-pack",
            "service=git-upload-pack&%73ervice=git-receive-pack",
            "service=git-upload-pack&service",
            "service=git-upload-pack&x=1&service=git-upload-pack",
        ] {
            for (method, path) in [
                ("GET", "/x.git/info/refs"),
                ("POST", "/x.git/git-upload-pack"),
            ] {
                let (status, reason) = target(method, path, query).unwrap_err();
                assert_eq!(status, 400, "{method} {query}");
                assert!(reason.contains("service= parameters"), "{reason}");
            }
        }
        assert_eq!(
            target("GET", "/x.git/info/refs", "service=git-upload-pack&%zz=1")
                .unwrap_err()
                .0,
            400
        );
        // A name that only looks similar is not a second service.
        let t = target(
            "GET",
            "/x.git/info/refs",
            "service=git-upload-pack&Service=git-receive-pack&services=x",
        )
        .unwrap();
        assert_eq!(t.service, Service::UploadPack);
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
