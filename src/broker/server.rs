//! The broker process: one socket per sandbox, one short-lived thread per connection, reload on
//! `SIGHUP`, clean exit on `SIGTERM`/`SIGINT`.
//!
//! The main thread polls the sockets and two signal pipes and only accepts; each connection is
//! read, decided, signed and answered on a thread of its own, so a client that sends nothing
//! holds one thread until [`REQUEST_TIMEOUT`], never the broker. Keys are loaded once per
//! (re)load and shared by every connection; a connection works on the config it was accepted
//! under, but checks that its sandbox was not removed before it answers.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};

use super::audit::{Audit, Decision, Record};
use super::describe::{DESCRIBE, Description};
use super::message::{self, ReadProblem};
use super::peer::{self, Peer};
use super::policy::{self, Group, Sandbox};
use super::{ERROR_PREFIX, MAX_REQUEST, REQUEST_TIMEOUT};
use crate::commands::git::GitAction;
use crate::config::{self, Config, ConfigError};
use crate::env::Env;
use crate::key::{self, KeyError, KeySource};
use crate::log::{Escaped, Log};
use crate::operation::{self, Operation};
use crate::protocol::{self, Response};
use crate::resolve::{Disposition, join};
use crate::secret::Secret;
use crate::signer::{self, ProbeError, Signer};

/// The most connections served at once, over all sandboxes.
pub const MAX_CONNECTIONS: usize = 256;

/// The most connections one sandbox may hold at once, so one cannot starve the others.
pub const MAX_PER_SANDBOX: usize = 32;

/// Why the broker cannot start, or cannot take a new config.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The config file is broken.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No config file where one was named.
    #[error("config file {} does not exist; write one with [org.NAME] and [sandbox.NAME] tables (see docs/sandboxes.md), or name it with --config FILE", .0.display())]
    NoConfig(PathBuf),
    /// No config file could be found at all.
    #[error("no config file: name one with --config FILE or CODESTORAGE_CONFIG")]
    NoConfigPath,
    /// A config with nothing to serve.
    #[error("config file {} has no [sandbox.NAME] table, so the broker has nothing to serve; add one (see docs/sandboxes.md)", .0.display())]
    NoSandboxes(PathBuf),
    /// An organisation's key does not load.
    #[error("organisation \"{org}\": {source}")]
    Key {
        /// The organisation.
        org: String,
        /// Why.
        source: KeyError,
    },
    /// An organisation's key loads but does not sign. The reason names the key source and,
    /// for an agent or a sign_command, the fix (the same line `doctor` and `setup` give).
    #[error("organisation \"{org}\": {}", .source.about(.key))]
    Probe {
        /// The organisation.
        org: String,
        /// Where its key comes from.
        key: Box<KeySource>,
        /// Why.
        source: ProbeError,
    },
    /// A socket's directory is not safe or not there.
    #[error("[sandbox.{sandbox}] socket directory {}: {problem}", .dir.display())]
    SocketDir {
        /// The sandbox.
        sandbox: String,
        /// The directory.
        dir: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The socket path is taken by something else.
    #[error("[sandbox.{sandbox}] socket {}: {problem}", .path.display())]
    SocketPath {
        /// The sandbox.
        sandbox: String,
        /// The socket.
        path: PathBuf,
        /// What is wrong and the fix.
        problem: String,
    },
    /// The socket could not be made.
    #[error("[sandbox.{sandbox}] cannot create socket {}: {source}", .path.display())]
    Bind {
        /// The sandbox.
        sandbox: String,
        /// The socket.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The group a sandbox names is not on this system.
    #[error(
        "[sandbox.{sandbox}] group {group} is not in /etc/group; create it or name an existing group"
    )]
    Group {
        /// The sandbox.
        sandbox: String,
        /// The group.
        group: String,
    },
    /// An environment variable the key settings read holds a bad value.
    #[error(transparent)]
    Env(crate::resolve::ResolveError),
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
}

/// A signer shared by every connection.
pub type SharedSigner = Arc<dyn Signer>;

/// A config and the signers of every organisation its sandboxes name, loaded together so that
/// a reload either takes both or neither.
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// The signers, by organisation name as in the config.
    pub signers: HashMap<String, SharedSigner>,
}

/// Reads the config at `path` and loads (and probes) the key of every organisation a sandbox
/// names. Keys of organisations no sandbox uses are not touched.
pub fn load(path: &Path, env: &dyn Env) -> Result<Loaded, BrokerError> {
    let config = config::load(path)?.ok_or_else(|| BrokerError::NoConfig(path.to_owned()))?;
    if config.sandboxes.is_empty() {
        return Err(BrokerError::NoSandboxes(path.to_owned()));
    }
    let mut signers: HashMap<String, SharedSigner> = HashMap::new();
    for sandbox in &config.sandboxes {
        for name in &sandbox.orgs {
            let Some(org) = config.orgs.values().find(|o| o.name == *name) else {
                continue;
            };
            if signers.contains_key(org.name.as_str()) {
                continue;
            }
            let org_name = org.name.to_string();
            let options = crate::resolve::load_options(Some(org), env).map_err(BrokerError::Env)?;
            let signer = key::load(&org.key, env, options).map_err(|source| BrokerError::Key {
                org: org_name.clone(),
                source: source.for_org(&org_name),
            })?;
            signer::probe(&*signer).map_err(|source| BrokerError::Probe {
                org: org_name.clone(),
                key: Box::new(org.key.clone()),
                source,
            })?;
            signers.insert(org_name, Arc::from(signer));
        }
    }
    Ok(Loaded { config, signers })
}

/// Checks what the broker would need to serve `loaded`: every socket's directory and path, and
/// every group. Nothing is created.
pub fn check_sockets(loaded: &Loaded) -> Result<(), BrokerError> {
    for sandbox in &loaded.config.sandboxes {
        precheck(sandbox, &[])?;
    }
    Ok(())
}

/// One line per sandbox, for `--check` and the start-up log.
pub fn describe(sandbox: &Sandbox) -> String {
    let orgs: Vec<&str> = sandbox.orgs.iter().map(|o| o.as_str()).collect();
    let repos: Vec<&str> = sandbox.repos.iter().map(|g| g.as_str()).collect();
    format!(
        "sandbox {} on {} (mode {:04o}{}): orgs {}, repos {}, scopes at most {}, ttl {}, sub {}",
        sandbox.name,
        sandbox.socket.display(),
        sandbox.mode,
        sandbox
            .group
            .as_ref()
            .map_or_else(String::new, |g| format!(", group {g}")),
        orgs.join(", "),
        repos.join(", "),
        join(&sandbox.scopes),
        sandbox.ttl.map_or_else(
            || "as the config's rules".to_owned(),
            |t| format!("at most {t}")
        ),
        Escaped(&sandbox.subject),
    )
}

/// The group ID `group` names.
fn group_id(sandbox: &Sandbox, group: &Group) -> Result<u32, BrokerError> {
    match group {
        Group::Id(id) => Ok(*id),
        Group::Name(name) => std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let mut fields = line.split(':');
                    (fields.next() == Some(name.as_str()))
                        .then(|| fields.nth(1)?.parse().ok())
                        .flatten()
                })
            })
            .ok_or_else(|| BrokerError::Group {
                sandbox: sandbox.name.clone(),
                group: name.clone(),
            }),
    }
}

/// Checks that `sandbox`'s socket can be made safely: a directory only its owner (this user or
/// root) may write, and a path that is free, a stale socket, or one of `ours` (served now).
fn precheck(sandbox: &Sandbox, ours: &[&Path]) -> Result<(), BrokerError> {
    let dir = sandbox
        .socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir_problem = |problem: String| BrokerError::SocketDir {
        sandbox: sandbox.name.clone(),
        dir: dir.to_owned(),
        problem,
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        dir_problem(if e.kind() == io::ErrorKind::NotFound {
            format!(
                "it does not exist; create it for the broker's user only: install -d -m 0755 {} (under systemd: RuntimeDirectory=)",
                dir.display()
            )
        } else {
            e.to_string()
        })
    })?;
    if !meta.is_dir() {
        return Err(dir_problem("it is not a directory".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        // Who can write the directory can swap the socket for their own and read requests.
        return Err(dir_problem(format!(
            "group or others may write it (mode {mode:04o}), so they could replace the socket; use a directory of the broker's own: install -d -m 0755 /run/codestorage"
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(dir_problem(format!(
            "it belongs to user {}, not to the broker's user ({me}) or root; use a directory of the broker's own",
            meta.uid()
        )));
    }
    if let Some(group) = &sandbox.group {
        group_id(sandbox, group)?;
    }
    let taken = |problem: String| BrokerError::SocketPath {
        sandbox: sandbox.name.clone(),
        path: sandbox.socket.clone(),
        problem,
    };
    match std::fs::symlink_metadata(&sandbox.socket) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(taken(e.to_string())),
        Ok(_) if ours.contains(&sandbox.socket.as_path()) => Ok(()),
        Ok(m) if !m.file_type().is_socket() => Err(taken(
            "it exists and is not a socket; remove it or choose another path".into(),
        )),
        Ok(_) if UnixStream::connect(&sandbox.socket).is_ok() => Err(taken(
            "another process is serving it (another broker?); stop it or choose another path"
                .into(),
        )),
        // A socket nobody listens on: left by a broker that was killed.
        Ok(_) => Ok(()),
    }
}

/// Makes `sandbox`'s socket: checked, bound, given its mode and group, non-blocking.
fn bind(sandbox: &Sandbox) -> Result<UnixListener, BrokerError> {
    precheck(sandbox, &[])?;
    let failed = |source: io::Error| BrokerError::Bind {
        sandbox: sandbox.name.clone(),
        path: sandbox.socket.clone(),
        source,
    };
    match std::fs::remove_file(&sandbox.socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&sandbox.socket).map_err(failed)?;
    let finish = || -> io::Result<()> {
        set_owner_and_mode(sandbox)?;
        listener.set_nonblocking(true)
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(&sandbox.socket);
        return Err(failed(e));
    }
    Ok(listener)
}

fn set_owner_and_mode(sandbox: &Sandbox) -> io::Result<()> {
    if let Some(group) = &sandbox.group {
        let gid = group_id(sandbox, group).map_err(|e| io::Error::other(e.to_string()))?;
        rustix::fs::chown(&sandbox.socket, None, Some(rustix::fs::Gid::from_raw(gid)))?;
    }
    std::fs::set_permissions(
        &sandbox.socket,
        std::fs::Permissions::from_mode(sandbox.mode),
    )
}

/// One sandbox being served.
struct Served {
    sandbox: Arc<Sandbox>,
    listener: UnixListener,
    /// Set when the sandbox is removed: connections already accepted then get nothing.
    revoked: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
}

impl Served {
    /// `sandbox`, bound to `listener`, with no connection yet.
    fn new(sandbox: &Sandbox, listener: UnixListener) -> Self {
        Self {
            sandbox: Arc::new(sandbox.clone()),
            listener,
            revoked: Arc::default(),
            active: Arc::default(),
        }
    }

    fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.sandbox.socket);
    }
}

/// What a connection's thread needs.
struct Job {
    loaded: Arc<Loaded>,
    sandbox: Arc<Sandbox>,
    revoked: Arc<AtomicBool>,
    audit: Arc<Audit>,
    env: Arc<dyn Env + Send + Sync>,
    _slot: Slot,
}

/// A counted place among the connections served; given back when dropped.
struct Slot {
    counters: [Arc<AtomicUsize>; 2],
}

impl Slot {
    fn take(global: &Arc<AtomicUsize>, sandbox: &Arc<AtomicUsize>) -> Result<Self, &'static str> {
        if global.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            global.fetch_sub(1, Ordering::SeqCst);
            return Err("the broker is serving its most connections");
        }
        if sandbox.fetch_add(1, Ordering::SeqCst) >= MAX_PER_SANDBOX {
            sandbox.fetch_sub(1, Ordering::SeqCst);
            global.fetch_sub(1, Ordering::SeqCst);
            return Err("this sandbox has its most requests in progress");
        }
        Ok(Self {
            counters: [global.clone(), sandbox.clone()],
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        for counter in &self.counters {
            counter.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How the broker runs.
pub struct Options {
    /// The config file, re-read on `SIGHUP`.
    pub config_path: PathBuf,
    /// Where audit lines go.
    pub audit: Audit,
    /// The environment the config's settings and keys are read with.
    pub env: Arc<dyn Env + Send + Sync>,
}

/// The running broker's state, owned by the main thread.
struct Broker<'a> {
    config_path: PathBuf,
    env: Arc<dyn Env + Send + Sync>,
    audit: Arc<Audit>,
    loaded: Arc<Loaded>,
    served: Vec<Served>,
    active: Arc<AtomicUsize>,
    events: &'a mut dyn Write,
}

/// Runs the broker until `SIGTERM` or `SIGINT`, writing what it does (start, reload, removal)
/// to `events`. Returns an error only when it cannot start.
pub fn run(options: Options, events: &mut dyn Write) -> Result<(), BrokerError> {
    // Before any file is made: sockets and the audit log are the broker's alone until their
    // mode is set.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let (hup, hup_writer) = UnixStream::pair().map_err(BrokerError::Signals)?;
    let (term, term_writer) = UnixStream::pair().map_err(BrokerError::Signals)?;
    let register = |signal, writer: UnixStream| {
        signal_hook::low_level::pipe::register(signal, writer).map(drop)
    };
    register(signal_hook::consts::SIGHUP, hup_writer)
        .and_then(|()| register(signal_hook::consts::SIGTERM, term_writer.try_clone()?))
        .and_then(|()| register(signal_hook::consts::SIGINT, term_writer))
        .and_then(|()| hup.set_nonblocking(true))
        .and_then(|()| term.set_nonblocking(true))
        .map_err(BrokerError::Signals)?;

    let loaded = load(&options.config_path, options.env.as_ref())?;
    let mut served = Vec::with_capacity(loaded.config.sandboxes.len());
    for sandbox in &loaded.config.sandboxes {
        match bind(sandbox) {
            Ok(listener) => served.push(Served::new(sandbox, listener)),
            Err(e) => {
                for s in &served {
                    s.revoke();
                }
                return Err(e);
            }
        }
    }
    let Options {
        config_path,
        audit,
        env,
    } = options;
    let mut broker = Broker {
        config_path,
        env,
        audit: Arc::new(audit),
        loaded: Arc::new(loaded),
        served,
        active: Arc::default(),
        events,
    };
    for s in &broker.served {
        let line = describe(&s.sandbox);
        event(&mut *broker.events, format_args!("serving {line}"));
    }
    event(
        &mut *broker.events,
        format_args!(
            "ready: {} sandbox(es) from {}; SIGHUP reloads, SIGTERM stops",
            broker.served.len(),
            broker.config_path.display()
        ),
    );
    broker.serve(&hup, &term);
    for s in &broker.served {
        s.revoke();
    }
    event(
        &mut *broker.events,
        format_args!("stopped; sockets removed"),
    );
    Ok(())
}

/// Reads and discards what a signal pipe holds; true if it held anything.
fn drain(pipe: &UnixStream) -> bool {
    let mut any = false;
    let mut buf = [0u8; 64];
    let mut reader = pipe;
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        any = true;
    }
    any
}

/// One line of what the broker does, for its operator.
fn event(out: &mut dyn Write, message: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{}: broker: {message}", crate::log::PREFIX);
    let _ = out.flush();
}

impl Broker<'_> {
    /// The poll loop; returns on `SIGTERM`/`SIGINT`.
    fn serve(&mut self, hup: &UnixStream, term: &UnixStream) {
        loop {
            let ready: Vec<bool> = {
                let mut fds = Vec::with_capacity(self.served.len() + 2);
                fds.push(PollFd::new(term, PollFlags::IN));
                fds.push(PollFd::new(hup, PollFlags::IN));
                for s in &self.served {
                    fds.push(PollFd::new(&s.listener, PollFlags::IN));
                }
                match rustix::event::poll(&mut fds, None) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        drop(fds);
                        event(
                            &mut *self.events,
                            format_args!("poll failed: {e}; stopping"),
                        );
                        return;
                    }
                }
                fds.iter().map(|fd| !fd.revents().is_empty()).collect()
            };
            if ready[0] && drain(term) {
                event(&mut *self.events, format_args!("stopping on signal"));
                return;
            }
            if ready[1] && drain(hup) {
                self.reload();
                // The set of sockets changed: poll again before accepting on stale indices.
                continue;
            }
            for (index, is_ready) in ready[2..].iter().enumerate() {
                if *is_ready {
                    self.accept_all(index);
                }
            }
        }
    }

    /// Accepts every connection waiting on the `index`th socket.
    fn accept_all(&mut self, index: usize) {
        loop {
            let served = &self.served[index];
            let stream = match served.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let name = served.sandbox.name.clone();
                    event(
                        &mut *self.events,
                        format_args!("sandbox {name}: accept failed: {e}"),
                    );
                    return;
                }
            };
            let slot = match Slot::take(&self.active, &served.active) {
                Ok(slot) => slot,
                Err(why) => {
                    busy(stream, &served.sandbox.name, why, &self.audit);
                    continue;
                }
            };
            let job = Job {
                loaded: self.loaded.clone(),
                sandbox: served.sandbox.clone(),
                revoked: served.revoked.clone(),
                audit: self.audit.clone(),
                env: self.env.clone(),
                _slot: slot,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("broker-{}", served.sandbox.name))
                .spawn(move || handle(stream, job));
            if let Err(e) = spawned {
                let name = served.sandbox.name.clone();
                event(
                    &mut *self.events,
                    format_args!("sandbox {name}: cannot start a thread: {e}"),
                );
            }
        }
    }

    /// Re-reads the config; on any error keeps the old one and says why.
    fn reload(&mut self) {
        let path = self.config_path.clone();
        let loaded = match load(&path, self.env.as_ref()) {
            Ok(loaded) => loaded,
            Err(e) => {
                event(
                    &mut *self.events,
                    format_args!("reload failed, still serving the previous config: {e}"),
                );
                return;
            }
        };
        let same = |a: &Sandbox, b: &Sandbox| a.name == b.name && a.socket == b.socket;
        let kept_paths: Vec<&Path> = self
            .served
            .iter()
            .filter(|s| loaded.config.sandboxes.iter().any(|n| same(n, &s.sandbox)))
            .map(|s| s.sandbox.socket.as_path())
            .collect();
        let served_paths: Vec<&Path> = self
            .served
            .iter()
            .map(|s| s.sandbox.socket.as_path())
            .collect();
        // Everything that can fail is checked before anything changes.
        for sandbox in &loaded.config.sandboxes {
            let ours = if kept_paths.contains(&sandbox.socket.as_path()) {
                &served_paths[..]
            } else {
                &[][..]
            };
            if let Err(e) = precheck(sandbox, ours) {
                // A removed sandbox's socket may be taken over by a new one: it goes first.
                let freed = served_paths.contains(&sandbox.socket.as_path());
                if !freed {
                    event(
                        &mut *self.events,
                        format_args!("reload failed, still serving the previous config: {e}"),
                    );
                    return;
                }
            }
        }
        let mut removed = Vec::new();
        self.served.retain(|s| {
            let keep = loaded.config.sandboxes.iter().any(|n| same(n, &s.sandbox));
            if !keep {
                s.revoke();
                removed.push(s.sandbox.name.clone());
            }
            keep
        });
        for name in &removed {
            event(
                &mut *self.events,
                format_args!("removed sandbox {name}: its socket is gone and it gets nothing more"),
            );
        }
        let mut added = Vec::new();
        for sandbox in &loaded.config.sandboxes {
            if let Some(s) = self.served.iter_mut().find(|s| same(&s.sandbox, sandbox)) {
                if (s.sandbox.mode, &s.sandbox.group) != (sandbox.mode, &sandbox.group)
                    && let Err(e) = set_owner_and_mode(sandbox)
                {
                    let name = sandbox.name.clone();
                    event(
                        &mut *self.events,
                        format_args!(
                            "sandbox {name}: cannot change its socket's mode or group: {e}"
                        ),
                    );
                }
                s.sandbox = Arc::new(sandbox.clone());
                continue;
            }
            match bind(sandbox) {
                Ok(listener) => {
                    added.push(describe(sandbox));
                    self.served.push(Served::new(sandbox, listener));
                }
                Err(e) => event(
                    &mut *self.events,
                    format_args!("{e}; that sandbox is not served"),
                ),
            }
        }
        for line in &added {
            event(&mut *self.events, format_args!("serving {line}"));
        }
        self.loaded = Arc::new(loaded);
        let count = self.served.len();
        event(
            &mut *self.events,
            format_args!("reloaded {}: {count} sandbox(es)", path.display()),
        );
    }
}

/// Turns a connection away when the broker is at its limit, without a thread.
fn busy(stream: UnixStream, sandbox: &str, why: &str, audit: &Audit) {
    let peer = peer::of(&stream);
    let reason = format!("{why}; try again in a moment");
    // Fresh socket buffers take these few bytes at once; never block the accept loop on it.
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(error_answer(&reason).expose());
    let _ = (&stream).write_all(b"\n");
    let mut record = Record::new(crate::clock::now(), sandbox, Decision::Error);
    record.peer_uid = peer.uid;
    record.peer_pid = peer.pid;
    record.reason = Some(reason);
    let _ = audit.write(&record);
}

/// Serves one connection: read, decide, sign, audit, answer. Never panics on what the client
/// sends; every outcome is one audit line.
fn handle(mut stream: UnixStream, job: Job) {
    let peer = peer::of(&stream);
    let now = crate::clock::now();
    let mut record = Record::new(now, &job.sandbox.name, Decision::Error);
    record.peer_uid = peer.uid;
    record.peer_pid = peer.pid;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let answer = respond(&mut stream, &job, peer, now, deadline, &mut record);
    if job.revoked.load(Ordering::SeqCst) && record.decision == Decision::Granted {
        // Removed while this request was decided: the token is not sent.
        record.decision = Decision::Refused;
        record.reason = Some(removed(&job.sandbox.name));
        record.scopes.clear();
        record.expires = None;
        let _ = job.audit.write(&record);
        send(
            &mut stream,
            &error_answer(&removed(&job.sandbox.name)),
            deadline,
        );
        return;
    }
    if let Err(e) = job.audit.write(&record)
        && record.decision == Decision::Granted
    {
        // A token the audit log does not show is not handed out.
        let reason = format!("the broker cannot write its audit log ({e}); no token is handed out");
        send(&mut stream, &error_answer(&reason), deadline);
        return;
    }
    send(&mut stream, &answer, deadline);
}

fn removed(sandbox: &str) -> String {
    format!("sandbox {sandbox} was removed from the broker's config; it gets no more tokens")
}

/// `error=REASON` and `quit=1`.
fn error_answer(reason: &str) -> Secret<Vec<u8>> {
    let line: String = reason.chars().filter(|c| !c.is_control()).collect();
    Secret::new(format!("{ERROR_PREFIX}{line}\nquit=1\n").into_bytes())
}

fn send(stream: &mut UnixStream, answer: &Secret<Vec<u8>>, deadline: Instant) {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(std::time::Duration::from_secs(1));
    let _ = stream.set_write_timeout(Some(left));
    // The closing blank line tells the client the answer is whole (see `client`).
    let _ = stream
        .write_all(answer.expose())
        .and_then(|()| stream.write_all(b"\n"));
}

/// Decides the answer to the request on `stream`, filling in `record`.
fn respond(
    stream: &mut UnixStream,
    job: &Job,
    peer: Peer,
    now: i64,
    deadline: Instant,
    record: &mut Record,
) -> Secret<Vec<u8>> {
    let fail = |record: &mut Record, reason: String| {
        record.reason = Some(reason.clone());
        error_answer(&reason)
    };
    let bytes = match message::read(stream, deadline, MAX_REQUEST, true) {
        Ok(bytes) => bytes,
        Err(ReadProblem::TooLarge) => {
            return fail(
                record,
                format!(
                    "the request is larger than {MAX_REQUEST} bytes; git never sends that much"
                ),
            );
        }
        Err(ReadProblem::TimedOut) => {
            return fail(
                record,
                format!("no whole request within {}s", REQUEST_TIMEOUT.as_secs()),
            );
        }
        Err(ReadProblem::Io(e)) => return fail(record, format!("cannot read the request: {e}")),
    };
    let bytes = bytes.expose();
    let (word, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], &bytes[end + 1..]),
        None => (&bytes[..], &[][..]),
    };
    if word == DESCRIBE.as_bytes() {
        record.action = Some(DESCRIBE);
        if job.revoked.load(Ordering::SeqCst) {
            record.decision = Decision::Refused;
            return fail(record, removed(&job.sandbox.name));
        }
        record.decision = Decision::Noted;
        let description = Description::of(&job.sandbox, &job.loaded.config);
        // A struct of strings always serializes.
        let json = serde_json::to_string(&description).unwrap_or_default();
        return Secret::new(format!("{json}\n").into_bytes());
    }
    let Some(action) = std::str::from_utf8(word).ok().and_then(GitAction::parse) else {
        return fail(
            record,
            "the request does not start with get, store or erase; is the client a git-credential-codestorage?".into(),
        );
    };
    record.action = Some(action.as_str());
    let request = match protocol::parse(rest) {
        Ok(request) => request,
        Err(e) => return fail(record, e.to_string()),
    };
    record.host = request.host.clone();
    if job.revoked.load(Ordering::SeqCst) {
        record.decision = Decision::Refused;
        return fail(record, removed(&job.sandbox.name));
    }
    let config = &job.loaded.config;
    match action {
        GitAction::Store => {
            record.decision = Decision::Noted;
            Secret::new(Vec::new())
        }
        GitAction::Erase => {
            record.decision = Decision::Noted;
            record.reason = Some("the server refused a token".into());
            // `erase` explains a refused token of ours; its lines go to the user.
            let mut explained = Vec::new();
            crate::credential::erase(
                &request,
                &Ok(Some(config.clone())),
                now,
                &mut Log::new(&mut explained, false),
            );
            let prefix = format!("{}: ", crate::log::PREFIX);
            let text = String::from_utf8_lossy(&explained);
            let mut answer = String::new();
            for line in text.lines() {
                answer.push_str(ERROR_PREFIX);
                answer.push_str(line.strip_prefix(&prefix).unwrap_or(line));
                answer.push('\n');
            }
            Secret::new(answer.into_bytes())
        }
        GitAction::Get => {
            let decided = policy::decide(config, &job.sandbox, &request, job.env.as_ref(), || {
                peer.pid.map_or(Operation::Unknown, |pid| {
                    operation::detect_for_pid(pid).operation
                })
            });
            let grant = match decided {
                Ok(grant) => grant,
                Err(denied) => {
                    record.org = denied.org;
                    record.repo = denied.repo;
                    record.reason = Some(denied.reason.clone());
                    return match denied.disposition {
                        Disposition::Decline => {
                            record.decision = Decision::Declined;
                            Secret::new(Vec::new())
                        }
                        Disposition::Quit | Disposition::DeclineWithHint => {
                            record.decision = Decision::Refused;
                            error_answer(&denied.reason)
                        }
                    };
                }
            };
            let settings = &grant.settings;
            record.org = Some(settings.org.to_string());
            record.repo = Some(settings.repo.clone());
            record.operation = Some(grant.operation.as_str());
            let Some(signer) = job.loaded.signers.get(settings.org.as_str()) else {
                return fail(
                    record,
                    format!("no key loaded for organisation \"{}\"", settings.org),
                );
            };
            match crate::mint::sign(settings, signer.as_ref(), now) {
                Ok(minted) => {
                    record.decision = Decision::Granted;
                    record.scopes = minted.claims.scopes.iter().map(|s| s.as_str()).collect();
                    record.expires = Some(minted.claims.exp);
                    let response = Response::Credential {
                        username: "t".into(),
                        expiry: crate::token::reported_expiry(minted.claims.iat, minted.claims.exp),
                        password: minted.token,
                        ephemeral: grant.ephemeral,
                    };
                    let mut answer = Secret::new(Vec::with_capacity(1024));
                    // Writing to a Vec cannot fail.
                    let _ = response.write_to(answer.expose_mut());
                    answer
                }
                // The key lives with the broker, so the fix is its operator's, not the
                // sandbox's: say whose failure it is before what failed.
                Err(e) => fail(record, format!("the token broker could not sign: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    struct Fixture {
        dir: tempfile::TempDir,
        loaded: Arc<Loaded>,
        audit: Arc<Audit>,
        lines: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    /// Collects audit lines in memory.
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn fixture(extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("acme.pem");
        std::fs::write(
            &key,
            crate::key::generate(crate::key::NewKey::P256)
                .unwrap()
                .expose(),
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[org.acme]\nkey_file = \"acme.pem\"\n[sandbox.a]\nsocket = \"a.sock\"\norgs = [\"acme\"]\nrepos = [\"agents/a/**\"]\nttl = \"10m\"\n{extra}"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = load(&config, &MapEnv::default()).unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        Fixture {
            audit: Arc::new(Audit::to_writer(Box::new(Shared(lines.clone())))),
            loaded: Arc::new(loaded),
            lines,
            dir,
        }
    }

    /// Sends `input` on one end of a socket pair served by `handle`; returns the answer and
    /// the audit record.
    fn exchange(f: &Fixture, input: &[u8], revoked: bool) -> (String, serde_json::Value) {
        let (mut client, server) = UnixStream::pair().unwrap();
        let global = Arc::new(AtomicUsize::new(0));
        let per = Arc::new(AtomicUsize::new(0));
        let job = Job {
            loaded: f.loaded.clone(),
            sandbox: Arc::new(f.loaded.config.sandboxes[0].clone()),
            revoked: Arc::new(AtomicBool::new(revoked)),
            audit: f.audit.clone(),
            env: Arc::new(MapEnv::default()),
            _slot: Slot::take(&global, &per).unwrap(),
        };
        // A request larger than the socket's buffer is written while the server reads it.
        let input = input.to_vec();
        let mut writer = client.try_clone().unwrap();
        let writing = std::thread::spawn(move || {
            // The server stops reading after MAX_REQUEST bytes; the rest may meet a closed socket.
            let _ = writer.write_all(&input);
            let _ = writer.shutdown(std::net::Shutdown::Write);
        });
        handle(server, job);
        assert_eq!(global.load(Ordering::SeqCst), 0, "the slot is given back");
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        writing.join().unwrap();
        let lines = f.lines.lock().unwrap();
        let last = String::from_utf8_lossy(&lines)
            .lines()
            .last()
            .unwrap()
            .to_owned();
        (answer, serde_json::from_str(&last).unwrap())
    }

    #[test]
    fn a_get_is_signed_audited_and_never_logged_as_a_token() {
        let f = fixture("");
        let (answer, record) = exchange(
            &f,
            b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n",
            false,
        );
        let token = answer
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap_or_else(|| panic!("{answer}"));
        let claims = crate::token::decode_unverified(token)
            .unwrap()
            .claims
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.repo.as_str()),
            ("sandbox:a", "agents/a/x")
        );
        assert_eq!(claims.exp - claims.iat, 600);
        assert_eq!(record["decision"], "granted");
        assert_eq!(record["peer_pid"], std::process::id());
        assert_eq!(record["expires"], claims.exp);
        assert_eq!(record["action"], "get");
        assert!(!String::from_utf8_lossy(&f.lines.lock().unwrap()).contains(token));
    }

    #[test]
    fn garbage_oversized_and_revoked_requests_get_error_answers() {
        let f = fixture("");
        let cases: Vec<(Vec<u8>, bool, &str)> = vec![
            (b"\xff\xfe\n\n".to_vec(), false, "does not start with get"),
            (b"get\nhost=a\rb\n\n".to_vec(), false, "carriage return"),
            (b"get\nnoequals\n\n".to_vec(), false, "key=value"),
            (vec![b'x'; MAX_REQUEST + 10], false, "larger than"),
            (b"".to_vec(), false, "does not start with get"),
            (
                b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n".to_vec(),
                true,
                "was removed",
            ),
        ];
        for (input, revoked, words) in cases {
            let (answer, record) = exchange(&f, &input, revoked);
            assert!(
                answer.starts_with("error=") && answer.ends_with("quit=1\n\n"),
                "{answer}"
            );
            assert!(answer.contains(words), "{words}: {answer}");
            assert!(
                record["reason"].as_str().unwrap().contains(words),
                "{record}"
            );
        }
    }

    /// An audit log that cannot be written.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_token_is_handed_out_that_the_audit_log_does_not_show() {
        let mut f = fixture("");
        f.audit = Arc::new(Audit::to_writer(Box::new(Broken)));
        let (mut client, server) = UnixStream::pair().unwrap();
        let global = Arc::new(AtomicUsize::new(0));
        let job = Job {
            loaded: f.loaded.clone(),
            sandbox: Arc::new(f.loaded.config.sandboxes[0].clone()),
            revoked: Arc::default(),
            audit: f.audit.clone(),
            env: Arc::new(MapEnv::default()),
            _slot: Slot::take(&global, &Arc::default()).unwrap(),
        };
        client
            .write_all(b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n")
            .unwrap();
        handle(server, job);
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert_eq!(
            answer,
            "error=the broker cannot write its audit log (disk full); no token is handed out\nquit=1\n\n"
        );
    }

    #[test]
    fn describe_answers_the_sandbox_s_own_policy_and_nothing_of_the_key() {
        let f = fixture("push_branches = [\"agents/a/*\"]\n");
        let (answer, record) = exchange(&f, b"describe\n\n", false);
        let json = answer
            .strip_suffix("\n\n")
            .unwrap_or_else(|| panic!("{answer:?}"));
        let d: Description = serde_json::from_str(json).unwrap();
        assert_eq!(
            d,
            Description::of(&f.loaded.config.sandboxes[0], &f.loaded.config)
        );
        assert_eq!(
            (d.sandbox.as_str(), d.hosts.as_slice(), d.ttl.as_deref()),
            ("a", &["acme.code.storage".to_owned()][..], Some("10m"))
        );
        assert_eq!(d.push_branches, ["refs/heads/agents/a/*"]);
        assert!(!answer.contains("acme.pem"), "{answer}");
        assert_eq!(
            (&record["action"], &record["decision"]),
            (&serde_json::json!("describe"), &serde_json::json!("noted"))
        );
        let (answer, _) = exchange(&f, b"describe\n\n", true);
        assert!(answer.contains("was removed"), "{answer}");
    }

    #[test]
    fn store_is_noted_and_erase_explains_a_refused_token() {
        let f = fixture("");
        let (answer, record) = exchange(
            &f,
            b"store\nprotocol=https\nhost=acme.code.storage\n\n",
            false,
        );
        assert_eq!(
            (answer.as_str(), &record["decision"]),
            ("\n", &serde_json::json!("noted"))
        );
        let (granted, _) = exchange(
            &f,
            b"get\nprotocol=https\nhost=acme.code.storage\npath=agents/a/x.git\n\n",
            false,
        );
        let token = granted
            .lines()
            .find_map(|l| l.strip_prefix("password="))
            .unwrap();
        let erase = format!(
            "erase\nprotocol=https\nhost=acme.code.storage\nusername=t\npassword={token}\n\n"
        );
        let (answer, record) = exchange(&f, erase.as_bytes(), false);
        assert!(
            answer.starts_with("error=acme.code.storage refused the token"),
            "{answer}"
        );
        assert!(!answer.contains(token));
        assert_eq!(record["action"], "erase");
    }

    #[test]
    fn sockets_refuse_unsafe_directories_and_foreign_files() {
        let f = fixture("");
        let mut sandbox = f.loaded.config.sandboxes[0].clone();
        let open = f.dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        sandbox.socket = open.join("s.sock");
        let e = bind(&sandbox).unwrap_err().to_string();
        assert!(
            e.contains("group or others may write it (mode 1777)"),
            "{e}"
        );
        sandbox.socket = f.dir.path().join("missing/s.sock");
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        sandbox.socket = f.dir.path().join("config.toml");
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );

        sandbox.socket = f.dir.path().join("s.sock");
        sandbox.mode = 0o660;
        sandbox.group = Some(Group::Id(0));
        let listener = bind(&sandbox).unwrap();
        let meta = std::fs::metadata(&sandbox.socket).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 0);
        let e = bind(&sandbox).unwrap_err().to_string();
        assert!(e.contains("another process is serving it"), "{e}");
        drop(listener);
        // Left behind by a broker that died: taken over.
        bind(&sandbox).unwrap();
        sandbox.group = Some(Group::Name("no-such-group-here".into()));
        assert!(
            bind(&sandbox)
                .unwrap_err()
                .to_string()
                .contains("not in /etc/group")
        );
    }

    #[test]
    fn slots_are_capped_per_sandbox_and_in_all() {
        let global = Arc::new(AtomicUsize::new(0));
        let per = Arc::new(AtomicUsize::new(0));
        let held: Vec<Slot> = (0..MAX_PER_SANDBOX)
            .map(|_| Slot::take(&global, &per).unwrap())
            .collect();
        assert!(Slot::take(&global, &per).is_err());
        let other = Arc::new(AtomicUsize::new(0));
        assert!(
            Slot::take(&global, &other).is_ok(),
            "another sandbox is still served"
        );
        drop(held);
        assert_eq!(global.load(Ordering::SeqCst), 0);
    }
}
