//! A config and the keys its sandboxes need, loaded together so that a (re)load takes both or
//! neither; and the one line that describes a sandbox.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::error::BrokerError;
use super::policy::Sandbox;
use super::reuse::Reuse;
use crate::config::{self, Config, Org};
use crate::env::Env;
use crate::log::Escaped;
use crate::resolve::join;
use crate::signer::metered::{Metered, SignerMetrics};
use crate::signer::{self, Signer};

/// A signer shared by every connection.
pub type SharedSigner = Arc<dyn Signer>;

/// A config and the signers of every organisation its sandboxes name, loaded together so that
/// a reload either takes both or neither.
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// The signers, by organisation name as in the config.
    pub signers: HashMap<String, SharedSigner>,
    /// Each signer's counters (calls, errors, time), by organisation.
    pub metrics: HashMap<String, Arc<SignerMetrics>>,
    /// Tokens signed under this config, handed out again while fresh: shared by the `Loaded`
    /// a registration derives, new (so empty) after a reload of the file.
    pub reuse: Arc<Reuse>,
}

impl Loaded {
    /// Adds `org`'s signer and its counters.
    pub fn add_signer(&mut self, org: &str, (signer, metrics): (SharedSigner, Arc<SignerMetrics>)) {
        self.signers.insert(org.to_owned(), signer);
        self.metrics.insert(org.to_owned(), metrics);
    }
}

/// Reads the config at `path` and loads (and probes) the key of every organisation a sandbox
/// names. Keys of organisations no sandbox uses are not touched (a registration through the
/// control API loads the ones it names). A config without sandboxes is the caller's to judge:
/// with a control socket it serves registrations alone.
pub fn load(path: &Path, env: &dyn Env) -> Result<Loaded, BrokerError> {
    let config = config::load(path)?.ok_or_else(|| BrokerError::NoConfig(path.to_owned()))?;
    let mut loaded = Loaded {
        config,
        signers: HashMap::new(),
        metrics: HashMap::new(),
        reuse: Arc::default(),
    };
    let mut wanted: Vec<&Org> = Vec::new();
    for sandbox in &loaded.config.sandboxes {
        for name in &sandbox.orgs {
            if let Some(org) = loaded.config.orgs.values().find(|o| o.name == *name)
                && !wanted.iter().any(|w| w.name == org.name)
            {
                wanted.push(org);
            }
        }
    }
    let signers = wanted
        .into_iter()
        .map(|org| Ok((org.name.to_string(), signer_for(org, env)?)))
        .collect::<Result<Vec<_>, BrokerError>>()?;
    for (org, signer) in signers {
        loaded.add_signer(&org, signer);
    }
    Ok(loaded)
}

/// Loads and probes `org`'s key, counted by the metrics it comes with.
pub fn signer_for(
    org: &Org,
    env: &dyn Env,
) -> Result<(SharedSigner, Arc<SignerMetrics>), BrokerError> {
    let org_name = org.name.to_string();
    let options = crate::resolve::load_options(Some(org), env).map_err(BrokerError::Env)?;
    let signer = signer::open(&org.key, env, options).map_err(|source| BrokerError::Key {
        org: org_name.clone(),
        source: source.for_org(&org_name),
    })?;
    signer::probe(&*signer).map_err(|source| BrokerError::Probe {
        org: org_name,
        key: Box::new(org.key.clone()),
        source,
    })?;
    let (signer, metrics) = Metered::new(signer);
    Ok((Arc::new(signer), metrics))
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

#[cfg(test)]
pub mod testing {
    //! A loaded config for the broker's unit tests.
    use std::io::{self, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::{Loaded, load};
    use crate::broker::audit::Audit;
    use crate::env::MapEnv;

    /// A config with one sandbox `a` and a key, loaded, and an audit log in memory.
    pub struct Fixture {
        /// The config's directory.
        pub dir: tempfile::TempDir,
        /// The loaded config.
        pub loaded: Arc<Loaded>,
        /// The audit log.
        pub audit: Arc<Audit>,
        /// What the audit log holds.
        pub lines: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    /// Collects audit lines in memory.
    pub struct Shared(pub Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The fixture, with `extra` appended to the config.
    pub fn fixture(extra: &str) -> Fixture {
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
}
