//! Sandboxes registered through the control API: added, replaced, removed, listed, ended by
//! their lease, and kept across restarts in a state file.
//!
//! Each registration is kept as `sandbox_dir/.registrations/NAME.json` (mode 0600 in a 0700
//! directory; a registered name never starts with `.`, so this is no sandbox's directory),
//! written atomically before the change is answered and removed with the registration.
//!
//! What must survive a power cut is what would widen a sandbox's tokens if lost: a replaced
//! policy (the old one must not come back) and a removal (the sandbox must not be served
//! again), so those are synced, file and directory, before the answer. A new registration is
//! not: lost, it takes nothing from a sandbox that, living on the same machine, was lost with
//! it, and a file torn by the cut is dropped at the next start, never served. Two `fsync`s were
//! half a registration's time at 10,000 sandboxes (docs/performance.md). One
//! small file each rather than one state file: a change costs one rename whether 10 or 10,000
//! sandboxes are registered. JSON the broker alone writes rather than `sandboxes.d/NAME.toml`
//! drop-ins: the config file stays the one place operators write by hand, so "defined in the
//! file" (which the API may not change) and "registered" never blur.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use super::control::{ApiAnswer, ApiRequest};
use super::gate::Closed;
use super::load::{Loaded, describe};
use super::metrics::{SandboxView, prometheus};
use super::policy::Sandbox;
use super::server::{Broker, Origin, Served, event};
use super::socket::{bind, set_owner_and_mode};
use crate::config::sandbox::parse_registration;
use crate::ttl::Ttl;

/// The directory of kept registrations inside `sandbox_dir`.
pub const STATE_DIR: &str = ".registrations";

/// One registration as the state file keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Kept {
    fields: Map<String, Value>,
    #[serde(default)]
    lease: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

impl Broker<'_> {
    /// Answers one control API request.
    pub(super) fn control_request(&mut self, request: ApiRequest) -> ApiAnswer {
        match request {
            ApiRequest::Health => ApiAnswer::json(200, &json!({ "status": "serving" })),
            ApiRequest::Metrics => ApiAnswer {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: self.metrics_text(),
            },
            ApiRequest::List => {
                let all: Vec<Value> = self.served.iter().map(view).collect();
                ApiAnswer::json(200, &Value::Array(all))
            }
            ApiRequest::Show { name } => match self.find(&name) {
                Some(index) => ApiAnswer::json(200, &view(&self.served[index])),
                None => unknown(&name),
            },
            ApiRequest::Put { name, body } => self.put(&name, &body),
            ApiRequest::Delete { name } => self.delete(&name),
        }
    }

    fn metrics_text(&self) -> String {
        let views: Vec<SandboxView<'_>> = self
            .served
            .iter()
            .map(|s| SandboxView {
                name: &s.sandbox.name,
                counters: &s.counters,
            })
            .collect();
        let mut text = prometheus(&self.metrics, &views, self.active.load(Ordering::Relaxed));
        text.push_str(&signer_metrics_text(&self.loaded.metrics));
        text
    }

    fn sandbox_dir(&self) -> Option<PathBuf> {
        self.loaded.config.broker_settings.sandbox_dir.clone()
    }

    /// `PUT /v1/sandboxes/{name}`.
    fn put(&mut self, name: &str, body: &[u8]) -> ApiAnswer {
        let existing = self.find(name);
        if let Some(index) = existing
            && self.served[index].origin == Origin::File
        {
            return file_defined(name, &self.config_path);
        }
        // A replaced registration's tokens were signed under the policy it replaces.
        self.loaded.reuse.drop_sandbox(name);
        let Some(dir) = self.sandbox_dir() else {
            return ApiAnswer::error(
                400,
                "the broker's config sets no sandbox_dir; add sandbox_dir = \"DIR\"",
            );
        };
        let (sandbox, kept) = match parse_body(name, body, &self.loaded, &dir) {
            Ok(parsed) => parsed,
            Err(message) => return ApiAnswer::error(400, message),
        };
        if let Err(e) = self.ensure_signers(&sandbox) {
            return ApiAnswer::error(400, e);
        }
        let answer = json!({
            "name": name,
            "socket": sandbox.socket,
            "expires_at": kept.expires_at,
        });
        let origin = Origin::Api {
            fields: kept.fields.clone(),
            lease: kept.lease.clone(),
        };
        match existing {
            Some(index) => {
                let served = &mut self.served[index];
                if (served.sandbox.mode, &served.sandbox.group) != (sandbox.mode, &sandbox.group)
                    && let Err(e) = set_owner_and_mode(&sandbox)
                {
                    return ApiAnswer::error(
                        500,
                        format!("cannot change the socket's mode or group: {e}"),
                    );
                }
                if let Err(e) = keep(&dir, name, &kept, Durable::Synced) {
                    return ApiAnswer::error(500, e);
                }
                let served = &mut self.served[index];
                served.replace(&sandbox, kept.expires_at);
                served.origin = origin;
                if let Some(at) = kept.expires_at {
                    self.lease_ends(at);
                }
                event(
                    &mut *self.events,
                    format_args!("replaced {}", describe(&sandbox)),
                );
                ApiAnswer::json(200, &answer)
            }
            None => self.create(&sandbox, origin, &kept, &dir, &answer),
        }
    }

    /// Makes a new registered sandbox's directory and socket, and serves it.
    fn create(
        &mut self,
        sandbox: &Sandbox,
        origin: Origin,
        kept: &Kept,
        dir: &Path,
        answer: &Value,
    ) -> ApiAnswer {
        let limit = super::limits::open_files();
        if super::limits::needed(self.served.len() + 1) > limit {
            return ApiAnswer::error(
                503,
                format!(
                    "the broker's open-file limit ({limit}) holds no more sandboxes; raise LimitNOFILE= in its unit (or `ulimit -n`) and restart it"
                ),
            );
        }
        let own_dir = sandbox.socket.parent().unwrap_or(dir);
        if let Err(e) = make_dir(own_dir) {
            return ApiAnswer::error(500, format!("cannot make {}: {e}", own_dir.display()));
        }
        let listener = match bind(sandbox) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_dir(own_dir);
                return ApiAnswer::error(500, e);
            }
        };
        let undo = || {
            let _ = std::fs::remove_file(&sandbox.socket);
            let _ = std::fs::remove_dir(own_dir);
        };
        if let Err(e) = keep(dir, &sandbox.name, kept, Durable::Unsynced) {
            undo();
            return ApiAnswer::error(500, e);
        }
        let served = Served::new(sandbox, listener, origin, kept.expires_at);
        if let Err(e) = self.push_served(served) {
            let _ = forget(dir, &sandbox.name);
            undo();
            return ApiAnswer::error(500, format!("cannot watch the new socket: {e}"));
        }
        event(
            &mut *self.events,
            format_args!("registered {}", describe(sandbox)),
        );
        ApiAnswer::json(201, answer)
    }

    /// `DELETE /v1/sandboxes/{name}`.
    fn delete(&mut self, name: &str) -> ApiAnswer {
        let Some(index) = self.find(name) else {
            return unknown(name);
        };
        if self.served[index].origin == Origin::File {
            return file_defined(name, &self.config_path);
        }
        if let Some(dir) = self.sandbox_dir()
            && let Err(e) = forget(&dir, name)
        {
            return ApiAnswer::error(500, e);
        }
        let served = self.remove_served(index);
        served.revoke(Closed::Removed);
        self.loaded.reuse.drop_sandbox(name);
        event(
            &mut *self.events,
            format_args!("removed sandbox {name}: its socket is gone and it gets nothing more"),
        );
        ApiAnswer::empty(204)
    }

    /// Ends every registration whose lease has ended, and notes when the next one ends.
    pub(super) fn expire(&mut self) {
        let now = crate::clock::now();
        let ended: Vec<String> = self
            .served
            .iter()
            .filter(|s| s.expires_at.is_some_and(|at| at <= now))
            .map(|s| s.sandbox.name.clone())
            .collect();
        self.soonest = self
            .served
            .iter()
            .filter_map(|s| s.expires_at)
            .filter(|at| *at > now)
            .min();
        for name in ended {
            let Some(index) = self.find(&name) else {
                continue;
            };
            let served = self.remove_served(index);
            served.revoke(Closed::Expired);
            self.loaded.reuse.drop_sandbox(&name);
            if let Some(dir) = self.sandbox_dir()
                && let Err(e) = forget(&dir, &name)
            {
                event(&mut *self.events, format_args!("{e}"));
            }
            event(
                &mut *self.events,
                format_args!(
                    "sandbox {name}'s lease ended: its socket is gone and it gets nothing more"
                ),
            );
        }
    }

    /// Serves again what the state file kept from the last run; a registration that no longer
    /// checks out against the config is dropped and said so.
    pub(super) fn restore(&mut self) {
        let Some(dir) = self.sandbox_dir() else {
            return;
        };
        let state = match read_state(&dir) {
            Ok((state, torn)) => {
                for (name, e) in torn {
                    let _ = forget(&dir, &name);
                    event(
                        &mut *self.events,
                        format_args!("registration {name} from the last run is dropped: {e}"),
                    );
                }
                state
            }
            Err(e) => {
                event(
                    &mut *self.events,
                    format_args!("{e}; starting with no registrations"),
                );
                return;
            }
        };
        let now = crate::clock::now();
        for (name, kept) in state {
            if kept.expires_at.is_some_and(|at| at <= now) || self.find(&name).is_some() {
                let _ = forget(&dir, &name);
                continue;
            }
            let restored = parse_registration(&name, &kept.fields, &self.loaded.config.orgs, &dir)
                .map_err(|e| e.to_string())
                .and_then(|sandbox| self.ensure_signers(&sandbox).map(|()| sandbox));
            let bound = restored.and_then(|sandbox| {
                let own = sandbox.socket.parent().unwrap_or(&dir).to_owned();
                make_dir(&own).map_err(|e| e.to_string())?;
                let listener = bind(&sandbox).map_err(|e| e.to_string())?;
                Ok((sandbox, listener))
            });
            match bound {
                Ok((sandbox, listener)) => {
                    let origin = Origin::Api {
                        fields: kept.fields,
                        lease: kept.lease,
                    };
                    event(
                        &mut *self.events,
                        format_args!("restored {}", describe(&sandbox)),
                    );
                    let served = Served::new(&sandbox, listener, origin, kept.expires_at);
                    if let Err(e) = self.push_served(served) {
                        let _ = forget(&dir, &name);
                        let _ = std::fs::remove_file(&sandbox.socket);
                        event(
                            &mut *self.events,
                            format_args!(
                                "registration {name} from the last run is dropped: cannot watch its socket: {e}"
                            ),
                        );
                    }
                }
                Err(e) => {
                    let _ = forget(&dir, &name);
                    event(
                        &mut *self.events,
                        format_args!("registration {name} from the last run is dropped: {e}"),
                    );
                }
            }
        }
    }

    /// Loads and probes the key of each of `sandbox`'s organisations not loaded yet.
    pub(super) fn ensure_signers(&mut self, sandbox: &Sandbox) -> Result<(), String> {
        let config = &self.loaded.config;
        let missing: Vec<_> = sandbox
            .orgs
            .iter()
            .filter(|o| !self.loaded.signers.contains_key(o.as_str()))
            .filter_map(|o| config.orgs.values().find(|org| org.name == *o))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut loaded = Loaded {
            config: self.loaded.config.clone(),
            signers: self.loaded.signers.clone(),
            metrics: self.loaded.metrics.clone(),
            reuse: self.loaded.reuse.clone(),
        };
        for org in missing {
            let signer =
                super::load::signer_for(org, self.env.as_ref()).map_err(|e| e.to_string())?;
            loaded.add_signer(org.name.as_str(), signer);
        }
        self.loaded = Arc::new(loaded);
        Ok(())
    }
}

/// Checks a `PUT` body: a JSON object of a sandbox table's fields, plus `lease`.
fn parse_body(
    name: &str,
    body: &[u8],
    loaded: &Loaded,
    dir: &Path,
) -> Result<(Sandbox, Kept), String> {
    let mut fields: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not a JSON object of the sandbox's fields ({e}); send e.g. {{\"orgs\": [\"acme\"], \"repos\": [\"agents/{name}/**\"]}}")
    })?;
    let lease = match fields.remove("lease") {
        None => None,
        Some(value) => Some(serde_json::from_value::<Ttl>(value).map_err(|e| {
            format!("[sandbox.{name}] lease: {e}; give a duration such as \"4h\" or \"30m\"")
        })?),
    };
    let sandbox =
        parse_registration(name, &fields, &loaded.config.orgs, dir).map_err(|e| e.to_string())?;
    let expires_at =
        lease.map(|l| crate::clock::now() + i64::try_from(l.seconds()).unwrap_or(i64::MAX / 2));
    Ok((
        sandbox,
        Kept {
            fields,
            lease: lease.map(|l| l.to_string()),
            expires_at,
        },
    ))
}

/// What `GET /v1/sandboxes[/NAME]` shows of one sandbox.
fn view(served: &Served) -> Value {
    let s = &served.sandbox;
    let counters = &served.counters;
    let last = counters.last_request.load(Ordering::Relaxed);
    json!({
        "name": s.name,
        "origin": if served.origin == Origin::File { "file" } else { "api" },
        "socket": s.socket,
        "expires_at": served.expires_at,
        "policy": {
            "orgs": s.orgs.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
            "repos": s.repos.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "scopes": s.scopes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "ttl": s.ttl.map(|t| t.to_string()),
            "subject": s.subject,
            "refs": s.refs.iter().map(|r| json!([r.pattern, r.ops])).collect::<Vec<_>>(),
            "ops": s.ops,
            "mode": format!("{:04o}", s.mode),
            "group": s.group.as_ref().map(ToString::to_string),
        },
        "tokens_issued": counters.issued.load(Ordering::Relaxed),
        "refused": counters.refused.load(Ordering::Relaxed),
        "last_request": (last > 0).then_some(last),
    })
}

fn unknown(name: &str) -> ApiAnswer {
    ApiAnswer::error(404, format!("no sandbox {}", crate::log::Shown(name)))
}

fn file_defined(name: &str, config: &Path) -> ApiAnswer {
    ApiAnswer::error(
        409,
        format!(
            "sandbox {name} is a [sandbox.{name}] table of {}; change or remove it there and reload the broker (SIGHUP)",
            config.display()
        ),
    )
}

/// Makes a registered sandbox's directory, mode 0755 (the sandbox's processes enter it), or
/// takes the one a platform's bind mount kept from an earlier run if it is the broker's.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir)?;
            let me = rustix::process::geteuid().as_raw();
            if meta.is_dir() && meta.uid() == me && meta.mode() & 0o022 == 0 {
                Ok(())
            } else {
                Err(std::io::Error::other(
                    "it exists and is not a directory of the broker's own that only it may write; remove it",
                ))
            }
        }
        Err(e) => Err(e),
    }
}

fn state_dir(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR)
}

/// The registrations kept from the last run, by name, and those whose file does not read (a
/// power cut may tear a new registration's file), with why.
type State = (BTreeMap<String, Kept>, Vec<(String, String)>);

/// The registrations kept from the last run.
fn read_state(dir: &Path) -> Result<State, String> {
    let state = state_dir(dir);
    let entries = match std::fs::read_dir(&state) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", state.display())),
    };
    let mut kept = BTreeMap::new();
    let mut torn = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).map_err(|e| e.to_string()));
        match parsed {
            Ok(registration) => {
                kept.insert(name.to_owned(), registration);
            }
            Err(e) => torn.push((
                name.to_owned(),
                format!(
                    "the kept registration {} does not read ({e})",
                    path.display()
                ),
            )),
        }
    }
    Ok((kept, torn))
}

/// Whether a kept registration is synced to disk before the change is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// A replaced policy: an old one must never come back.
    Synced,
    /// A new registration: may be lost with its sandbox in a power cut, never served torn.
    Unsynced,
}

/// Keeps one registration for the next run, atomically.
fn keep(dir: &Path, name: &str, kept: &Kept, durable: Durable) -> Result<(), String> {
    let state = state_dir(dir);
    let written = match std::fs::create_dir(&state) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)),
    }
    .and_then(|()| {
        let text = serde_json::to_vec_pretty(kept).unwrap_or_default();
        let path = state.join(format!("{name}.json"));
        match durable {
            Durable::Synced => {
                crate::fs::write_atomic(&path, &text, 0o600, crate::fs::Overwrite::Replace)
            }
            Durable::Unsynced => write_unsynced(&path, &text),
        }
    });
    written.map_err(|e| {
        format!(
            "cannot keep the registration in {}: {e}; nothing was changed",
            state.display()
        )
    })
}

/// Writes `text` to `path` whole or not at all (a temporary file renamed into place), mode
/// 0600, without waiting for the disk.
fn write_unsynced(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Forgets one registration, synced: a removed sandbox must not be served again after a
/// power cut.
fn forget(dir: &Path, name: &str) -> Result<(), String> {
    let state = state_dir(dir);
    let path = state.join(format!("{name}.json"));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!(
            "cannot remove the kept registration {}: {e}; nothing was changed",
            path.display()
        )),
        Err(_) => Ok(()),
        Ok(()) => {
            if let Ok(state) = std::fs::File::open(&state) {
                let _ = state.sync_all();
            }
            Ok(())
        }
    }
}

/// Each organisation's signer counters as Prometheus text, under one HELP and TYPE per family.
fn signer_metrics_text(
    metrics: &std::collections::HashMap<String, Arc<crate::signer::metered::SignerMetrics>>,
) -> String {
    let mut orgs: Vec<_> = metrics.iter().collect();
    orgs.sort_by(|a, b| a.0.cmp(b.0));
    let lines: Vec<String> = orgs
        .iter()
        .map(|(org, m)| m.snapshot().prometheus(org))
        .collect();
    let mut text = String::new();
    for (family, kind, help) in [
        (
            "calls_total",
            "counter",
            "Signatures asked of the organisation's signer.",
        ),
        (
            "errors_total",
            "counter",
            "Signatures the organisation's signer failed to give.",
        ),
        (
            "seconds_total",
            "counter",
            "Time spent waiting for the organisation's signer.",
        ),
        (
            "seconds_max",
            "gauge",
            "The longest wait for one signature.",
        ),
    ] {
        let name = format!("codestorage_signer_{family}");
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for line in lines.iter().flat_map(|l| l.lines()) {
            if line.starts_with(&format!("{name}{{")) {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}
