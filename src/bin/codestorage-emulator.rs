//! `codestorage-emulator`: a local Code Storage for trying git-credential-codestorage with no
//! account and no network. See `codestorage-emulator --help`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use git_credential_codestorage::emulator::{self, Options, policy};

/// Serves bare git repositories over HTTPS on loopback and checks every request's token as
/// Code Storage does.
#[derive(Debug, Parser)]
#[command(
    name = "codestorage-emulator",
    version,
    after_help = "Example:\n  codestorage-emulator --root /tmp/repos --ca-out /tmp/ca.pem --org acme=acme.pub.pem --create-on-push\n  (prints its base URL, e.g. https://127.0.0.1:43127, as the first line)"
)]
struct Args {
    /// Directory of bare repositories, served as `/<repo-id>.git`.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Loopback address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Write the CA certificate here, for git's http.sslCAInfo or GIT_SSL_CAINFO.
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (debugging only).
    #[arg(long)]
    plain_http: bool,
    /// An organisation and one of its public keys (SPKI PEM); repeat for more keys or orgs.
    #[arg(long = "org", value_name = "NAME=PUBKEY.pem", value_parser = parse_org)]
    orgs: Vec<(String, PathBuf)>,
    /// Create an unknown repository on its first push with git:write.
    #[arg(long)]
    create_on_push: bool,
}

fn parse_org(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((org, path)) if !org.is_empty() && !path.is_empty() => {
            Ok((org.to_owned(), PathBuf::from(path)))
        }
        _ => Err("expected NAME=PUBKEY.pem, e.g. acme=acme.pub.pem".into()),
    }
}

fn main() -> ExitCode {
    // git runs this binary as the proc-receive hook of the repositories it serves.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == policy::HOOK_ARG)
    {
        return policy::run_hook();
    }
    let args = Args::parse();
    let options = Options {
        root: args.root,
        listen: args.listen,
        ca_out: args.ca_out,
        plain_http: args.plain_http,
        orgs: args.orgs,
        create_on_push: args.create_on_push,
    };
    match emulator::run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codestorage-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
