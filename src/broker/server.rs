//! The broker process: one socket per sandbox, one short-lived thread per connection, reload on
//! `SIGHUP`, clean exit on `SIGTERM`/`SIGINT`. This file is the accept loop and its fairness:
//! who gets a connection slot; [`super::connection`] serves a connection, `reload` takes a new
//! config, `registry` applies the control API's requests ([`super::control`] reads them),
//! [`super::socket`] makes sockets, [`super::audit`] writes the log.
//!
//! The main thread waits on the sockets and two signal pipes (`watch`) and only accepts; each
//! connection is read, decided, signed and answered on a thread of its own, so a client that
//! sends nothing holds one thread until [`super::REQUEST_TIMEOUT`], never the broker. Keys are loaded once per
//! (re)load and shared by every connection; a connection works on the config it was accepted
//! under, but checks that its sandbox was not removed before it answers.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rustix::event::Timespec;

use super::audit::{Audit, Throttle};
use super::connection::{Job, busy, handle};
use super::control::{self, Command};
pub use super::error::BrokerError;
use super::gate::{Closed, Gate};
pub use super::load::{Loaded, SharedSigner, describe, load};
use super::metrics::{Counters, Metrics};
use super::policy::Sandbox;
use super::socket::bind;
pub use super::socket::check_sockets;
use super::watch::Watch;
use crate::env::Env;

/// The most connections served at once, over all sandboxes: far more than a few sandboxes'
/// [`MAX_PER_SANDBOX`] together, so that a few cannot lock the others out.
pub const MAX_CONNECTIONS: usize = 1024;

/// The most connections one sandbox may hold at once, so one cannot starve the others.
pub const MAX_PER_SANDBOX: usize = 16;

/// The most connections taken off one socket per turn of the loop, so that a sandbox that
/// connects in a loop waits its turn behind every other socket instead of holding the loop.
const ACCEPTS_PER_TURN: usize = 4;

/// Where a sandbox being served comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A `[sandbox.NAME]` table of the config file: changed only there.
    File,
    /// Registered through the control API, with the fields it was given (kept for restarts).
    Api {
        /// The registration's fields, as the API got them.
        fields: serde_json::Map<String, serde_json::Value>,
        /// The lease, as given.
        lease: Option<String>,
    },
}

/// The tokens of what the loop waits on beside the sandboxes' sockets.
const TERM: u64 = 0;
const HUP: u64 = 1;
const CONTROL: u64 = 2;
const WAKE: u64 = 3;

/// The next sandbox's token: increasing, so `served` (only ever appended to, and thinned in
/// order) stays sorted by it.
static NEXT_ID: AtomicU64 = AtomicU64::new(16);

/// One sandbox being served.
pub(super) struct Served {
    /// Its token in the loop's watch set.
    pub(super) id: u64,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) listener: UnixListener,
    /// Closed on removal, replacement or the lease's end: accepted connections then get nothing.
    pub(super) gate: Arc<Gate>,
    pub(super) expires_at: Option<i64>,
    pub(super) origin: Origin,
    pub(super) counters: Arc<Counters>,
    throttle: Arc<Throttle>,
    active: Arc<AtomicUsize>,
}

impl Served {
    /// `sandbox`, bound to `listener`, with no connection yet.
    pub(super) fn new(
        sandbox: &Sandbox,
        listener: UnixListener,
        origin: Origin,
        expires_at: Option<i64>,
    ) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            sandbox: Arc::new(sandbox.clone()),
            listener,
            gate: Arc::new(Gate::open(expires_at)),
            expires_at,
            origin,
            counters: Arc::default(),
            throttle: Arc::default(),
            active: Arc::default(),
        }
    }

    /// Gives the sandbox a new policy: connections accepted under the old one get nothing.
    pub(super) fn replace(&mut self, sandbox: &Sandbox, expires_at: Option<i64>) {
        self.gate.close(Closed::Replaced);
        self.gate = Arc::new(Gate::open(expires_at));
        self.sandbox = Arc::new(sandbox.clone());
        self.expires_at = expires_at;
    }

    /// Stops serving: the gate closes first, then the socket (and a registered sandbox's
    /// directory) is removed.
    pub(super) fn revoke(&self, why: Closed) {
        self.gate.close(why);
        let _ = std::fs::remove_file(&self.sandbox.socket);
        if matches!(self.origin, Origin::Api { .. })
            && let Some(dir) = self.sandbox.socket.parent()
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A counted place among the connections served; given back when dropped.
pub struct Slot {
    counters: [Arc<AtomicUsize>; 2],
}

impl Slot {
    /// A place for one more connection of the sandbox counted by `sandbox`, if any is free.
    pub fn take(
        global: &Arc<AtomicUsize>,
        sandbox: &Arc<AtomicUsize>,
    ) -> Result<Self, &'static str> {
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
    /// The control socket, overriding the config's `control_socket`.
    pub control_socket: Option<PathBuf>,
}

/// The running broker's state, owned by the main thread.
pub(super) struct Broker<'a> {
    pub(super) config_path: PathBuf,
    pub(super) env: Arc<dyn Env + Send + Sync>,
    audit: Arc<Audit>,
    pub(super) loaded: Arc<Loaded>,
    pub(super) served: Vec<Served>,
    /// Each served sandbox's token, by name.
    names: HashMap<String, u64>,
    /// No lease ends before this (an early guess is corrected by the next look).
    pub(super) soonest: Option<i64>,
    watch: Watch,
    pub(super) active: Arc<AtomicUsize>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) events: &'a mut dyn Write,
    /// The control API's socket and where its requests arrive.
    pub(super) control: Option<control::Listener>,
}

/// The pipes signals and control requests wake the loop with.
struct Wakers {
    hup: UnixStream,
    term: UnixStream,
}

/// Routes `SIGHUP`, `SIGTERM` and `SIGINT` into pipes the loop polls.
fn signals() -> Result<Wakers, BrokerError> {
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
    Ok(Wakers { hup, term })
}

/// Binds every file-defined sandbox's socket, or none.
fn bind_all(loaded: &Loaded) -> Result<Vec<Served>, BrokerError> {
    let mut served: Vec<Served> = Vec::with_capacity(loaded.config.sandboxes.len());
    for sandbox in &loaded.config.sandboxes {
        match bind(sandbox) {
            Ok(listener) => served.push(Served::new(sandbox, listener, Origin::File, None)),
            Err(e) => {
                for s in &served {
                    s.revoke(Closed::Removed);
                }
                return Err(e);
            }
        }
    }
    Ok(served)
}

/// Runs the broker until `SIGTERM` or `SIGINT`, writing what it does (start, reload, removal)
/// to `events`. Returns an error only when it cannot start.
pub fn run(options: Options, events: &mut dyn Write) -> Result<(), BrokerError> {
    // Before any file is made: sockets and the audit log are the broker's alone until their
    // mode is set.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let wakers = signals()?;
    let loaded = load(&options.config_path, options.env.as_ref())?;
    let control_path = options
        .control_socket
        .clone()
        .or_else(|| loaded.config.broker_settings.control_socket.clone());
    if loaded.config.sandboxes.is_empty() && control_path.is_none() {
        return Err(BrokerError::NoSandboxes(options.config_path.clone()));
    }
    super::limits::raise_open_files(loaded.config.sandboxes.len())?;
    let served = bind_all(&loaded)?;
    let control = match control_path {
        Some(path) => match control::Listener::bind(&path, &loaded.config) {
            Ok(listener) => Some(listener),
            Err(e) => {
                served.iter().for_each(|s| s.revoke(Closed::Removed));
                return Err(e);
            }
        },
        None => None,
    };
    let Options {
        config_path,
        audit,
        env,
        ..
    } = options;
    let watch = Watch::new().map_err(BrokerError::Signals)?;
    let mut broker = Broker {
        config_path,
        env,
        audit: Arc::new(audit),
        loaded: Arc::new(loaded),
        served: Vec::new(),
        names: HashMap::new(),
        soonest: None,
        watch,
        active: Arc::default(),
        metrics: Arc::default(),
        events,
        control,
    };
    if let Err(e) = broker.watch_fixed(&wakers) {
        served.iter().for_each(|s| s.revoke(Closed::Removed));
        return Err(BrokerError::Signals(e));
    }
    for s in served {
        if let Err(e) = broker.push_served(s) {
            broker.served.iter().for_each(|s| s.revoke(Closed::Removed));
            return Err(BrokerError::Signals(e));
        }
    }
    broker.restore();
    broker.start_events();
    broker.serve(&wakers);
    broker.stop();
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
pub(super) fn event(out: &mut dyn Write, message: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{}: broker: {message}", crate::log::PREFIX);
    let _ = out.flush();
}

/// What woke the loop.
struct Ready {
    term: bool,
    hup: bool,
    control: bool,
    wake: bool,
    /// The tokens of the sandboxes' sockets ready, in increasing order.
    sockets: Vec<u64>,
}

impl Broker<'_> {
    /// Watches the signal pipes and the control socket.
    fn watch_fixed(&self, wakers: &Wakers) -> io::Result<()> {
        self.watch.add(&wakers.term, TERM)?;
        self.watch.add(&wakers.hup, HUP)?;
        if let Some(control) = &self.control {
            self.watch.add(control.socket(), CONTROL)?;
            self.watch.add(control.wake(), WAKE)?;
        }
        Ok(())
    }

    /// Serves `served` from the next turn of the loop on.
    pub(super) fn push_served(&mut self, served: Served) -> io::Result<()> {
        self.watch.add(&served.listener, served.id)?;
        if let Some(at) = served.expires_at {
            self.lease_ends(at);
        }
        self.names.insert(served.sandbox.name.clone(), served.id);
        self.served.push(served);
        Ok(())
    }

    /// Stops serving the `index`th sandbox (its socket leaves the watch set once closed) and
    /// gives it back.
    pub(super) fn remove_served(&mut self, index: usize) -> Served {
        let served = self.served.remove(index);
        self.names.remove(&served.sandbox.name);
        served
    }

    /// Rebuilds the index by name after `served` was thinned in place.
    pub(super) fn reindex(&mut self) {
        self.names = self
            .served
            .iter()
            .map(|s| (s.sandbox.name.clone(), s.id))
            .collect();
    }

    /// Notes a lease that ends at `at`.
    pub(super) fn lease_ends(&mut self, at: i64) {
        self.soonest = Some(self.soonest.map_or(at, |s| s.min(at)));
    }

    /// The index of the sandbox named `name`.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        let id = *self.names.get(name)?;
        self.position(id)
    }

    /// The index of the sandbox whose token is `id`.
    fn position(&self, id: u64) -> Option<usize> {
        self.served.binary_search_by_key(&id, |s| s.id).ok()
    }

    fn start_events(&mut self) {
        for s in &self.served {
            let line = describe(&s.sandbox);
            event(&mut *self.events, format_args!("serving {line}"));
        }
        if let Some(control) = &self.control {
            let path = control.path().display().to_string();
            event(&mut *self.events, format_args!("control API on {path}"));
        }
        event(
            &mut *self.events,
            format_args!(
                "ready: {} sandbox(es) from {}; SIGHUP reloads, SIGTERM stops",
                self.served.len(),
                self.config_path.display()
            ),
        );
    }

    fn stop(&mut self) {
        for s in &self.served {
            // Sockets go; registrations stay in the state file for the next start.
            s.gate.close(Closed::Removed);
            let _ = std::fs::remove_file(&s.sandbox.socket);
        }
        if let Some(control) = &self.control {
            let _ = std::fs::remove_file(control.path());
        }
        event(&mut *self.events, format_args!("stopped; sockets removed"));
    }

    /// Waits for something to do: a signal, a control request, a connection, or a lease's end.
    fn wait(&mut self, wakers: &Wakers) -> io::Result<Ready> {
        // Wake for the next lease's end, and within a second while audit lines wait for their
        // summary.
        let mut seconds = self
            .soonest
            .map(|at| (at - crate::clock::now()).clamp(0, 3600));
        if super::audit::may_hold() {
            seconds = Some(seconds.map_or(1, |s| s.min(1)));
        }
        let timeout = seconds.map(|tv_sec| Timespec { tv_sec, tv_nsec: 0 });
        let fixed: Vec<(BorrowedFd<'_>, u64)> = [
            Some((wakers.term.as_fd(), TERM)),
            Some((wakers.hup.as_fd(), HUP)),
            self.control.as_ref().map(|c| (c.socket().as_fd(), CONTROL)),
            self.control.as_ref().map(|c| (c.wake().as_fd(), WAKE)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let sockets = self.served.iter().map(|s| (s.listener.as_fd(), s.id));
        let mut tokens = self
            .watch
            .wait(fixed.into_iter().chain(sockets), timeout.as_ref())?;
        tokens.sort_unstable();
        let has = |token| tokens.binary_search(&token).is_ok();
        Ok(Ready {
            term: has(TERM),
            hup: has(HUP),
            control: has(CONTROL),
            wake: has(WAKE),
            sockets: tokens.iter().copied().filter(|t| *t > WAKE).collect(),
        })
    }

    /// The accept loop; returns on `SIGTERM`/`SIGINT`.
    fn serve(&mut self, wakers: &Wakers) {
        loop {
            let ready = match self.wait(wakers) {
                Ok(ready) => ready,
                Err(e) => {
                    event(
                        &mut *self.events,
                        format_args!("poll failed: {e}; stopping"),
                    );
                    return;
                }
            };
            if ready.term && drain(&wakers.term) {
                event(&mut *self.events, format_args!("stopping on signal"));
                return;
            }
            if self.soonest.is_some_and(|at| at <= crate::clock::now()) {
                self.expire();
            }
            self.sum_up_audit();
            // Sockets first, by token: reloads and registrations move indices, a removed
            // sandbox's token finds nothing.
            for id in ready.sockets {
                if let Some(index) = self.position(id) {
                    self.accept_some(index);
                }
            }
            if ready.control
                && let Some(control) = &self.control
            {
                control.accept(self.loaded.config.broker_settings.control_group.as_ref());
            }
            if ready.wake {
                self.commands();
            }
            if ready.hup && drain(&wakers.hup) {
                self.reload();
            }
        }
    }

    /// Answers every control request waiting.
    fn commands(&mut self) {
        let Some(control) = &self.control else { return };
        control.drain_wake();
        let waiting: Vec<Command> = control.commands().try_iter().collect();
        for command in waiting {
            let answer = self.control_request(command.request);
            let _ = command.reply.send(answer);
        }
    }

    /// Writes the summary lines of floods that have stopped.
    fn sum_up_audit(&self) {
        if !super::audit::take_held() {
            return;
        }
        let now = crate::clock::now();
        let mut still = false;
        for s in self.served.iter().filter(|s| s.throttle.holds()) {
            let _ = s.throttle.flush(&self.audit, &s.sandbox.name, now);
            still |= s.throttle.holds();
        }
        if still {
            super::audit::raise_held();
        }
    }

    /// Accepts a few connections waiting on the `index`th socket.
    fn accept_some(&mut self, index: usize) {
        for _ in 0..ACCEPTS_PER_TURN {
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
                    served
                        .counters
                        .count(super::audit::Decision::Error, crate::clock::now());
                    busy(
                        stream,
                        &served.sandbox.name,
                        why,
                        &self.audit,
                        &served.throttle,
                    );
                    continue;
                }
            };
            let job = Job {
                loaded: self.loaded.clone(),
                sandbox: served.sandbox.clone(),
                gate: served.gate.clone(),
                counters: served.counters.clone(),
                throttle: served.throttle.clone(),
                metrics: self.metrics.clone(),
                audit: self.audit.clone(),
                env: self.env.clone(),
                slot,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("broker-{}", served.sandbox.name))
                .stack_size(THREAD_STACK)
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
}

/// A connection thread's stack: reading, deciding and signing need far less than the default
/// 2 MiB, and a thousand connections should not reserve 2 GiB.
const THREAD_STACK: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
