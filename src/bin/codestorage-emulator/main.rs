//! `codestorage-emulator`: a local stand-in for Code Storage, for trying
//! git-credential-codestorage (and a CI setup) with no account and no network, and for the
//! end-to-end tests. See `codestorage-emulator --help`.
//!
//! It serves bare repositories with `git http-backend` behind HTTPS on loopback and checks every
//! request's token as Code Storage does: signature by a registered key of the issuing
//! organisation, lifetime, repository, scopes, and ref policies on push.
//!
//! It shares no code with the helper's library on purpose: it checks the helper's keys, tokens
//! and ref patterns, so it must not check them with the code under test. Its DER reader, ref
//! pattern matcher and token verification are its own.
#![forbid(unsafe_code)]

mod auth;
mod cgi;
mod der;
mod host;
mod http;
mod lfs;
mod limits;
mod log;
mod policy;
mod server;
mod tls;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// Serves bare git repositories over HTTPS on loopback and checks every request's token as
/// Code Storage does.
#[derive(Debug, Parser)]
#[command(
    name = "codestorage-emulator",
    version,
    after_help = "Example:\n  codestorage-emulator --root /tmp/repos --ca-out /tmp/ca.pem --org acme=acme.pub.pem --create-on-push\n  (prints its base URL, e.g. https://127.0.0.1:43127, as the first line)\nThen, for git: export GIT_SSL_CAINFO=/tmp/ca.pem (a GIT_SSL_CAINFO already set beats http.sslCAInfo\nin git's config, so set the variable), and list 127.0.0.1:PORT in the organisation's hosts."
)]
struct Args {
    /// Directory of bare repositories, served as /REPO-ID.git.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Loopback address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Write the CA certificate here; give it to git as GIT_SSL_CAINFO (which beats http.sslCAInfo).
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (debugging only).
    #[arg(long)]
    plain_http: bool,
    /// An organisation and one of its public keys (SPKI PEM); repeat for more keys or orgs.
    #[arg(long = "org", value_name = "NAME=PUBKEY.pem", value_parser = parse_org)]
    orgs: Vec<(String, PathBuf)>,
    /// A host name (as clients send it in `Host`, without port) owned by an organisation, e.g.
    /// localhost=acme; repeat for more. `ORG.code.storage` is ORG's without it; with a single
    /// --org, every other name is that organisation's.
    #[arg(long = "host", value_name = "NAME=ORG", value_parser = parse_host)]
    hosts: Vec<(String, String)>,
    /// Create an unknown repository on its first push with git:write.
    #[arg(long)]
    create_on_push: bool,
    /// Serve at most N connections at once; further clients wait to be accepted.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_connections: u16,
    /// Drop a client that has not sent a whole request head (TLS handshake included) this many
    /// seconds after connecting.
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_seconds)]
    head_timeout: Duration,
    /// Append one JSON object per request to FILE: method, path, service, status, decision,
    /// reason, and the token's claims (never the token).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn parse_org(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((org, path)) if !org.is_empty() && !path.is_empty() => {
            Ok((org.to_owned(), PathBuf::from(path)))
        }
        _ => Err("expected NAME=PUBKEY.pem, e.g. acme=acme.pub.pem".into()),
    }
}

fn parse_host(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, org)) if !name.is_empty() && !org.is_empty() && !name.contains(':') => {
            Ok((name.to_ascii_lowercase(), org.to_owned()))
        }
        _ => Err("expected NAME=ORG without a port, e.g. localhost=acme".into()),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            "expected a number of seconds above 0 and at most 3600, e.g. 10 or 0.5".into()
        })
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
enum EmulatorError {
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

/// Wraps an I/O error with what was being done, for `map_err`.
fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmulatorError {
    let what = what.into();
    move |source| EmulatorError::Io { what, source }
}

fn main() -> ExitCode {
    // git runs this binary as the proc-receive hook of the repositories it serves.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == policy::HOOK_ARG)
    {
        return policy::run_hook();
    }
    match run(Args::parse()) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("codestorage-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the server and serves until the process is stopped. The first line on stdout is the
/// base URL, so that scripts can read the port.
fn run(args: Args) -> Result<std::convert::Infallible, EmulatorError> {
    if !args.listen.ip().is_loopback() {
        return Err(EmulatorError::Usage(format!(
            "--listen {}: the emulator serves loopback only (127.0.0.1, ::1)",
            args.listen
        )));
    }
    let mut keyring = auth::Keyring::default();
    for (org, path) in &args.orgs {
        keyring.add_file(org, path)?;
    }
    let mut orgs: Vec<&str> = args.orgs.iter().map(|(org, _)| org.as_str()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    let hosts = host::Hosts {
        explicit: args.hosts.clone(),
        only_org: match orgs[..] {
            [only] => Some(only.to_owned()),
            _ => None,
        },
    };
    std::fs::create_dir_all(&args.root)
        .map_err(io_error(format!("cannot create {}", args.root.display())))?;
    let root = args
        .root
        .canonicalize()
        .map_err(io_error(format!("cannot resolve {}", args.root.display())))?;
    let hooks = server::install_hooks(&root)?;
    let log = args.log.as_deref().map(log::RequestLog::open).transpose()?;
    let tls = if args.plain_http {
        None
    } else {
        let tls = tls::make()?;
        if let Some(path) = &args.ca_out {
            std::fs::write(path, &tls.ca_pem)
                .map_err(io_error(format!("cannot write {}", path.display())))?;
        }
        Some(tls.config)
    };
    let listener = TcpListener::bind(args.listen)
        .map_err(io_error(format!("cannot listen on {}", args.listen)))?;
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
        hosts,
        create_on_push: args.create_on_push,
        hooks,
        head_timeout: args.head_timeout,
        log,
        scheme,
    });
    let slots = limits::Slots::new(usize::from(args.max_connections));
    loop {
        // A place first, then accept: beyond the cap, clients wait in the listen backlog
        // instead of each getting a thread.
        let slot = slots.acquire();
        let Ok((connection, _)) = listener.accept() else {
            continue;
        };
        let server = Arc::clone(&server);
        let tls = tls.clone();
        // If no thread can be made, the closure is dropped: the connection closes and its
        // place is given back.
        let _ = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            server.serve(connection, tls);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_timeouts_are_positive_seconds_up_to_an_hour() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("3600"), Ok(Duration::from_secs(3600)));
        for bad in ["0", "-1", "3601", "NaN", "inf", "ten", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_connection_cap_is_at_least_one() {
        assert!(Args::try_parse_from(["e", "--root", "r", "--max-connections", "0"]).is_err());
        let args = Args::try_parse_from(["e", "--root", "r"]).unwrap();
        assert_eq!(args.max_connections, 64);
        assert_eq!(args.head_timeout, Duration::from_secs(10));
    }
}
