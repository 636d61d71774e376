//! `broker`: serve sandboxes their tokens over one Unix socket each (see [`crate::broker`]), or
//! with `--check` validate the config, its keys and its sockets' directories and exit.

use std::io::{self, Write};

use crate::cli::BrokerArgs;
use crate::commands::CommandError;
use crate::env::Env;
use crate::log::PREFIX;

/// Runs `broker` as `args` say; problems are printed here and reported as
/// [`CommandError::Reported`] (exit 1).
pub fn run(args: &BrokerArgs, env: &dyn Env) -> Result<(), CommandError> {
    let result = serve(args, env);
    if let Err(e) = &result {
        let _ = writeln!(io::stderr(), "{PREFIX}: broker: {e}");
    }
    result.map_err(|_| CommandError::Reported)
}

/// Why the broker did not start or stopped.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// The config, a key or a socket is wrong.
    #[cfg(unix)]
    #[error(transparent)]
    Broker(#[from] crate::broker::server::BrokerError),
    /// `--check`'s report could not be written.
    #[cfg(unix)]
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
    /// `--audit-log` names a file that cannot be opened for appending.
    #[cfg(unix)]
    #[error("cannot open the audit log {}: {source}", .path.display())]
    AuditLog {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Not a Unix system.
    #[cfg(not(unix))]
    #[error("the broker serves sandboxes over Unix sockets, which this system lacks")]
    NoUnixSockets,
}

#[cfg(unix)]
fn serve(args: &BrokerArgs, env: &dyn Env) -> Result<(), ServeError> {
    use std::sync::Arc;

    use crate::broker::audit::Audit;
    use crate::broker::server::{self, BrokerError, Options};
    use crate::env::ProcessEnv;

    let config_path = match &args.config {
        Some(path) => path.clone(),
        None => crate::config::default_path(env).ok_or(BrokerError::NoConfigPath)?,
    };
    let stderr = io::stderr();
    if args.check {
        let loaded = server::load(&config_path, env)?;
        server::check_sockets(&loaded)?;
        let mut out = io::stdout().lock();
        let mut lines = format!("{}: ok\n", config_path.display());
        for sandbox in &loaded.config.sandboxes {
            lines.push_str(&format!("  {}\n", server::describe(sandbox)));
        }
        return out
            .write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .map_err(ServeError::Stdout);
    }
    let audit = match &args.audit_log {
        Some(path) => Audit::file(path).map_err(|source| ServeError::AuditLog {
            path: path.clone(),
            source,
        })?,
        None => Audit::stderr(),
    };
    let options = Options {
        config_path,
        audit,
        env: Arc::new(ProcessEnv),
    };
    Ok(server::run(options, &mut stderr.lock())?)
}

#[cfg(not(unix))]
fn serve(_args: &BrokerArgs, _env: &dyn Env) -> Result<(), ServeError> {
    Err(ServeError::NoUnixSockets)
}
