//! `codestorage-emulator`: a local stand-in for Code Storage, for trying the helper (and a CI
//! setup) with no account and no network, and for the end-to-end tests.
//!
//! It serves bare repositories with `git http-backend` behind HTTPS on loopback and checks every
//! request's token as Code Storage does: signature by a registered key of the issuing
//! organisation, lifetime, repository, scopes, and ref policies on push.

pub mod auth;
pub mod cgi;
pub mod der;
pub mod http;
pub mod policy;
pub mod server;
pub mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

/// How the emulator was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where bare repositories live, as `<root>/<repo-id>.git`.
    pub root: PathBuf,
    /// The loopback address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where to write the CA certificate for git's `http.sslCAInfo`.
    pub ca_out: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (debugging only).
    pub plain_http: bool,
    /// Organisations and their public key files (an organisation may appear more than once).
    pub orgs: Vec<(String, PathBuf)>,
    /// Create an unknown repository on its first push with `git:write`.
    pub create_on_push: bool,
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// Making the certificate or TLS configuration failed.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// Files or sockets.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmulatorError {
    let what = what.into();
    move |source| EmulatorError::Io { what, source }
}

/// Starts the server and serves until the process is stopped. The first line on stdout is the
/// base URL, so that scripts can read the port.
pub fn run(options: Options) -> Result<(), EmulatorError> {
    if !options.listen.ip().is_loopback() {
        return Err(EmulatorError::Usage(format!(
            "--listen {}: the emulator serves loopback only (127.0.0.1, ::1)",
            options.listen
        )));
    }
    let mut keyring = auth::Keyring::default();
    for (org, path) in &options.orgs {
        keyring.add_file(org, path)?;
    }
    std::fs::create_dir_all(&options.root).map_err(io_error(format!(
        "cannot create {}",
        options.root.display()
    )))?;
    let root = options.root.canonicalize().map_err(io_error(format!(
        "cannot resolve {}",
        options.root.display()
    )))?;
    let hooks = server::install_hooks(&root)?;
    let tls = if options.plain_http {
        None
    } else {
        let tls = tls::make()?;
        if let Some(path) = &options.ca_out {
            std::fs::write(path, &tls.ca_pem)
                .map_err(io_error(format!("cannot write {}", path.display())))?;
        }
        Some(tls.config)
    };
    let listener = TcpListener::bind(options.listen)
        .map_err(io_error(format!("cannot listen on {}", options.listen)))?;
    let address = listener
        .local_addr()
        .map_err(io_error("cannot read the listening address"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{scheme}://{address}");
    let _ = stdout.flush();
    let server = Arc::new(server::Server {
        root,
        keyring,
        create_on_push: options.create_on_push,
        hooks,
    });
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let server = Arc::clone(&server);
        let tls = tls.clone();
        std::thread::spawn(move || server.serve(connection, tls));
    }
    Ok(())
}
