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
    let result = match &args.action {
        #[cfg(unix)]
        Some(crate::cli::BrokerAction::Sandbox(action)) => sandbox(args, action, env),
        #[cfg(not(unix))]
        Some(_) => Err(ServeError::NoUnixSockets),
        None => serve(args, env),
    };
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
    Broker(Box<crate::broker::server::BrokerError>),
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
    /// The control API refused or could not be reached.
    #[cfg(unix)]
    #[error(transparent)]
    Control(#[from] crate::broker::control_client::ControlError),
    /// `broker sandbox` found no control socket to talk to.
    #[cfg(unix)]
    #[error(
        "no control socket: the config {} sets no control_socket; name it with --control-socket PATH",
        .0.display()
    )]
    NoControlSocket(std::path::PathBuf),
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
        if loaded.config.sandboxes.is_empty()
            && args.control_socket.is_none()
            && loaded.config.broker_settings.control_socket.is_none()
        {
            return Err(BrokerError::NoSandboxes(config_path).into());
        }
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
        control_socket: args.control_socket.clone(),
    };
    Ok(server::run(options, &mut stderr.lock())?)
}

/// `broker sandbox ...`: one request to the running broker's control API.
#[cfg(unix)]
fn sandbox(
    args: &BrokerArgs,
    action: &crate::cli::SandboxAction,
    env: &dyn Env,
) -> Result<(), ServeError> {
    use crate::broker::control_client::request;
    use crate::cli::SandboxAction;

    let socket = match &args.control_socket {
        Some(path) => path.clone(),
        None => {
            let path = match &args.config {
                Some(path) => path.clone(),
                None => crate::config::default_path(env)
                    .ok_or(crate::broker::server::BrokerError::NoConfigPath)?,
            };
            let config = crate::config::load(&path)
                .map_err(crate::broker::server::BrokerError::from)?
                .ok_or_else(|| crate::broker::server::BrokerError::NoConfig(path.clone()))?;
            config
                .broker_settings
                .control_socket
                .ok_or(ServeError::NoControlSocket(path))?
        }
    };
    let text = match action {
        SandboxAction::Add(add) => {
            let (status, body) =
                request(&socket, "PUT", &sandbox_path(&add.name), Some(&fields(add)))?;
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let verb = if status == 201 {
                "registered"
            } else {
                "replaced"
            };
            let expires = answer["expires_at"]
                .as_i64()
                .map_or_else(String::new, |at| {
                    format!(", lease ends {}", crate::clock::format_time(at))
                });
            format!(
                "{verb} sandbox {}: socket {}{expires}\n",
                add.name,
                answer["socket"].as_str().unwrap_or_default()
            )
        }
        SandboxAction::Remove { name } => {
            request(&socket, "DELETE", &sandbox_path(name), None)?;
            format!("removed sandbox {name}: its socket is gone and it gets no more tokens\n")
        }
        SandboxAction::List { json } => {
            let (_, body) = request(&socket, "GET", "/v1/sandboxes", None)?;
            if *json { body } else { list_lines(&body) }
        }
        SandboxAction::Show { name } => request(&socket, "GET", &sandbox_path(name), None)?.1,
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ServeError::Stdout)
}

#[cfg(unix)]
fn sandbox_path(name: &str) -> String {
    format!("/v1/sandboxes/{name}")
}

/// The JSON fields of `add`'s table; only what was given, so the broker's defaults apply.
#[cfg(unix)]
fn fields(add: &crate::cli::SandboxAddArgs) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        fields.insert(key.to_owned(), value);
    };
    put("orgs", add.orgs.clone().into());
    put("repos", add.repos.clone().into());
    for (key, list) in [
        ("scopes", &add.scopes),
        ("push_branches", &add.push_branches),
        ("ops", &add.ops),
    ] {
        if !list.is_empty() {
            put(key, list.clone().into());
        }
    }
    for (key, value) in [
        ("ttl", &add.ttl),
        ("subject", &add.subject),
        ("lease", &add.lease),
        ("mode", &add.mode),
        ("group", &add.group),
    ] {
        if let Some(value) = value {
            put(key, value.clone().into());
        }
    }
    serde_json::Value::Object(fields)
}

/// One line per sandbox of a `GET /v1/sandboxes` answer.
#[cfg(unix)]
fn list_lines(body: &str) -> String {
    let all: Vec<serde_json::Value> = serde_json::from_str(body).unwrap_or_default();
    let mut text = String::new();
    for s in &all {
        let expires = s["expires_at"].as_i64().map_or_else(
            || "no lease".to_owned(),
            |at| format!("lease ends {}", crate::clock::format_time(at)),
        );
        text.push_str(&format!(
            "{} ({}) on {}: {expires}, {} token(s) issued, {} refused\n",
            s["name"].as_str().unwrap_or_default(),
            s["origin"].as_str().unwrap_or_default(),
            s["socket"].as_str().unwrap_or_default(),
            s["tokens_issued"],
            s["refused"],
        ));
    }
    text
}

#[cfg(not(unix))]
fn serve(_args: &BrokerArgs, _env: &dyn Env) -> Result<(), ServeError> {
    Err(ServeError::NoUnixSockets)
}

#[cfg(unix)]
impl From<crate::broker::server::BrokerError> for ServeError {
    // Boxed: a broker error carries a config error, several times larger than the others here.
    fn from(e: crate::broker::server::BrokerError) -> Self {
        Self::Broker(Box::new(e))
    }
}
