//! `SIGHUP`: take a new config whole, or keep the old one and say why. Everything that can
//! fail (the file, its keys, every new socket's directory and path, the registrations checked
//! against the new organisations) is checked, and new sockets are bound, before anything that
//! is served changes.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use super::error::BrokerError;
use super::gate::Closed;
use super::load::{Loaded, describe, load, signer_for};
use super::policy::Sandbox;
use super::server::{Broker, Origin, Served, event};
use super::socket::{bind, precheck, set_owner_and_mode};
use crate::config::sandbox::parse_registration;

/// Whether `a` and `b` are one sandbox on one socket (a kept sandbox keeps its socket).
fn same(a: &Sandbox, b: &Sandbox) -> bool {
    a.name == b.name && a.socket == b.socket
}

impl Broker<'_> {
    /// Re-reads the config; on any error keeps the old one and says why.
    pub(super) fn reload(&mut self) {
        let path = self.config_path.clone();
        let checked = load(&path, self.env.as_ref()).and_then(|loaded| {
            let loaded = self.check(loaded)?;
            let bound = self.bind_new(&loaded)?;
            Ok((loaded, bound))
        });
        match checked {
            Ok((loaded, bound)) => self.apply(loaded, bound),
            Err(e) => event(
                &mut *self.events,
                format_args!("reload failed, still serving the previous config: {e}"),
            ),
        }
    }

    /// Checks `loaded` against what is served, and adds the keys registrations need.
    fn check(&self, mut loaded: Loaded) -> Result<Loaded, BrokerError> {
        if loaded.config.sandboxes.is_empty() && self.control.is_none() {
            return Err(BrokerError::NoSandboxes(self.config_path.clone()));
        }
        let dir = loaded.config.broker_settings.sandbox_dir.clone();
        for served in &self.served {
            let Origin::Api { fields, .. } = &served.origin else {
                continue;
            };
            let name = &served.sandbox.name;
            let registration = match &dir {
                Some(dir) => parse_registration(name, fields, &loaded.config.orgs, dir)
                    .map_err(|e| e.to_string()),
                None => Err("the new config has no sandbox_dir".into()),
            };
            let sandbox = registration.map_err(|problem| BrokerError::Registration {
                sandbox: name.clone(),
                problem,
            })?;
            if loaded.config.sandboxes.iter().any(|s| s.name == *name) {
                return Err(BrokerError::Registration {
                    sandbox: name.clone(),
                    problem: "the new config defines a [sandbox] table of that name; remove the registration first (DELETE) or rename the table".into(),
                });
            }
            for org in &sandbox.orgs {
                if loaded.signers.contains_key(org.as_str()) {
                    continue;
                }
                if let Some(o) = loaded.config.orgs.values().find(|o| o.name == *org) {
                    loaded.add_signer(org.as_str(), signer_for(o, self.env.as_ref())?);
                }
            }
        }
        Ok(loaded)
    }

    /// Binds the sockets of `loaded`'s new sandboxes; on any failure none stays bound.
    fn bind_new(&self, loaded: &Loaded) -> Result<Vec<(Sandbox, UnixListener)>, BrokerError> {
        let served_paths: Vec<&Path> = self
            .served
            .iter()
            .map(|s| s.sandbox.socket.as_path())
            .collect();
        let mut bound: Vec<(Sandbox, UnixListener)> = Vec::new();
        let undo = |bound: &[(Sandbox, UnixListener)]| {
            for (sandbox, _) in bound {
                let _ = std::fs::remove_file(&sandbox.socket);
            }
        };
        for sandbox in &loaded.config.sandboxes {
            let kept = self
                .served
                .iter()
                .any(|s| s.origin == Origin::File && same(&s.sandbox, sandbox));
            if kept {
                continue;
            }
            if served_paths.contains(&sandbox.socket.as_path()) {
                // A removed sandbox's socket taken over by a new one: checked now, bound once
                // the old one is gone.
                if let Err(e) = precheck(sandbox, &served_paths) {
                    undo(&bound);
                    return Err(e);
                }
                continue;
            }
            match bind(sandbox) {
                Ok(listener) => bound.push((sandbox.clone(), listener)),
                Err(e) => {
                    undo(&bound);
                    return Err(e);
                }
            }
        }
        Ok(bound)
    }

    /// Serves `loaded`: removed sandboxes are revoked, kept ones get their new policy (closing
    /// the old one's gate if it changed), new ones their socket.
    fn apply(&mut self, loaded: Loaded, bound: Vec<(Sandbox, UnixListener)>) {
        let mut removed = Vec::new();
        self.served.retain(|s| {
            let keep = s.origin != Origin::File
                || loaded.config.sandboxes.iter().any(|n| same(n, &s.sandbox));
            if !keep {
                s.revoke(Closed::Removed);
                removed.push(s.sandbox.name.clone());
            }
            keep
        });
        self.reindex();
        for name in &removed {
            event(
                &mut *self.events,
                format_args!("removed sandbox {name}: its socket is gone and it gets nothing more"),
            );
        }
        let mut lines = Vec::new();
        for sandbox in &loaded.config.sandboxes {
            if let Some(s) = self
                .served
                .iter_mut()
                .find(|s| s.origin == Origin::File && same(&s.sandbox, sandbox))
            {
                if (s.sandbox.mode, &s.sandbox.group) != (sandbox.mode, &sandbox.group)
                    && let Err(e) = set_owner_and_mode(sandbox)
                {
                    lines.push(format!(
                        "sandbox {}: cannot change its socket's mode or group: {e}",
                        sandbox.name
                    ));
                }
                if *s.sandbox != *sandbox {
                    s.replace(sandbox, None);
                }
                continue;
            }
            let listener = match bound.iter().position(|(b, _)| b.name == sandbox.name) {
                Some(i) => bound[i].1.try_clone().map_err(BrokerError::Signals),
                None => bind(sandbox),
            };
            match listener {
                Ok(listener) => {
                    let served = Served::new(sandbox, listener, Origin::File, None);
                    match self.push_served(served) {
                        Ok(()) => lines.push(format!("serving {}", describe(sandbox))),
                        Err(e) => lines.push(format!(
                            "sandbox {}: cannot watch its socket: {e}; that sandbox is not served",
                            sandbox.name
                        )),
                    }
                }
                Err(e) => lines.push(format!("{e}; that sandbox is not served")),
            }
        }
        for line in &lines {
            event(&mut *self.events, format_args!("{line}"));
        }
        self.loaded = Arc::new(loaded);
        let count = self.served.len();
        let path = self.config_path.display().to_string();
        event(
            &mut *self.events,
            format_args!("reloaded {path}: {count} sandbox(es)"),
        );
    }
}
