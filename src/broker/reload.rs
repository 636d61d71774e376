//! `SIGHUP`: take a new config whole, or keep the old one and say why.

use std::path::Path;
use std::sync::Arc;

use super::error::BrokerError;
use super::load::describe;
use super::load::{Loaded, load};
use super::policy::Sandbox;
use super::server::{Broker, Served, event};
use super::socket::{bind, precheck, set_owner_and_mode};

/// Whether `a` and `b` are one sandbox on one socket (a kept sandbox keeps its socket).
fn same(a: &Sandbox, b: &Sandbox) -> bool {
    a.name == b.name && a.socket == b.socket
}

impl Broker<'_> {
    /// Re-reads the config; on any error keeps the old one and says why.
    pub(super) fn reload(&mut self) {
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
        if let Err(e) = self.check(&loaded) {
            event(
                &mut *self.events,
                format_args!("reload failed, still serving the previous config: {e}"),
            );
            return;
        }
        self.apply(loaded);
    }

    /// Checks everything that can fail before anything changes.
    fn check(&self, loaded: &Loaded) -> Result<(), BrokerError> {
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
                if !served_paths.contains(&sandbox.socket.as_path()) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Serves `loaded`: removed sandboxes are revoked, kept ones get their new policy, new ones
    /// their socket.
    fn apply(&mut self, loaded: Loaded) {
        let path = self.config_path.clone();
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
