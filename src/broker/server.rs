//! The broker process: one socket per sandbox, one short-lived thread per connection, reload on
//! `SIGHUP`, clean exit on `SIGTERM`/`SIGINT`. This file is the accept loop and its fairness:
//! who gets a connection slot; [`super::connection`] serves a connection, [`super::reload`]
//! takes a new config, [`super::socket`] makes sockets, [`super::audit`] writes the log.
//!
//! The main thread polls the sockets and two signal pipes and only accepts; each connection is
//! read, decided, signed and answered on a thread of its own, so a client that sends nothing
//! holds one thread until [`super::REQUEST_TIMEOUT`], never the broker. Keys are loaded once per
//! (re)load and shared by every connection; a connection works on the config it was accepted
//! under, but checks that its sandbox was not removed before it answers.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::event::{PollFd, PollFlags};

use super::audit::Audit;
use super::connection::{Job, busy, handle};
pub use super::error::BrokerError;
pub use super::load::{Loaded, SharedSigner, describe, load};
use super::policy::Sandbox;
use super::socket::bind;
pub use super::socket::check_sockets;
use crate::env::Env;

/// The most connections served at once, over all sandboxes.
pub const MAX_CONNECTIONS: usize = 256;

/// The most connections one sandbox may hold at once, so one cannot starve the others.
pub const MAX_PER_SANDBOX: usize = 32;

/// One sandbox being served.
pub(super) struct Served {
    pub(super) sandbox: Arc<Sandbox>,
    listener: UnixListener,
    /// Set when the sandbox is removed: connections already accepted then get nothing.
    revoked: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
}

impl Served {
    /// `sandbox`, bound to `listener`, with no connection yet.
    pub(super) fn new(sandbox: &Sandbox, listener: UnixListener) -> Self {
        Self {
            sandbox: Arc::new(sandbox.clone()),
            listener,
            revoked: Arc::default(),
            active: Arc::default(),
        }
    }

    pub(super) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.sandbox.socket);
    }
}

/// A counted place among the connections served; given back when dropped.
pub struct Slot {
    counters: [Arc<AtomicUsize>; 2],
}

impl Slot {
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
}

/// The running broker's state, owned by the main thread.
pub(super) struct Broker<'a> {
    pub(super) config_path: PathBuf,
    pub(super) env: Arc<dyn Env + Send + Sync>,
    audit: Arc<Audit>,
    pub(super) loaded: Arc<Loaded>,
    pub(super) served: Vec<Served>,
    active: Arc<AtomicUsize>,
    pub(super) events: &'a mut dyn Write,
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
pub(super) fn event(out: &mut dyn Write, message: std::fmt::Arguments<'_>) {
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
                slot,
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
}

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
