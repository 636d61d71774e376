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

#[cfg(unix)]
fn serve(args: &BrokerArgs, env: &dyn Env) -> Result<(), String> {
    use std::sync::Arc;

    use crate::broker::audit::Audit;
    use crate::broker::server::{self, BrokerError, Options};
    use crate::env::ProcessEnv;

    let config_path = match &args.config {
        Some(path) => path.clone(),
        None => {
            crate::config::default_path(env).ok_or_else(|| BrokerError::NoConfigPath.to_string())?
        }
    };
    let stderr = io::stderr();
    if args.check {
        let loaded = server::load(&config_path, env).map_err(|e| e.to_string())?;
        server::check_sockets(&loaded).map_err(|e| e.to_string())?;
        let mut out = io::stdout().lock();
        let mut lines = format!("{}: ok\n", config_path.display());
        for sandbox in &loaded.config.sandboxes {
            lines.push_str(&format!("  {}\n", server::describe(sandbox)));
        }
        return out
            .write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"));
    }
    let audit = match &args.audit_log {
        Some(path) => Audit::file(path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", path.display()))?,
        None => Audit::stderr(),
    };
    let options = Options {
        config_path,
        audit,
        env: Arc::new(ProcessEnv),
    };
    server::run(options, &mut stderr.lock()).map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn serve(_args: &BrokerArgs, _env: &dyn Env) -> Result<(), String> {
    Err("the broker serves sandboxes over Unix sockets, which this system lacks".into())
}
