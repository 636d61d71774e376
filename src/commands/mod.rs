//! The bodies of the user's subcommands, one module each; [`crate::cli`] parses and dispatches.

pub mod broker;
pub mod completions;
pub mod doctor;
pub mod git;
pub mod inspect;
pub mod keygen;
pub mod man;
pub mod setup;
pub mod token;

use crate::resolve::{ResolveError, ScopesError};

/// A command line that parses but asks for something impossible (exit 2, as clap's errors).
#[derive(Debug, thiserror::Error)]
pub enum Usage {
    /// `token --org-wide` with a repository.
    #[error("--org-wide signs for the whole organisation: drop REPO")]
    OrgWideWithRepo,
    /// `token --org NAME` without a repository.
    #[error("--org NAME needs the repository: token --org NAME REPO (or --org-wide)")]
    OrgWithoutRepo,
    /// `token` with nothing to sign for.
    #[error("name the repository: token URL, or token --org NAME REPO")]
    NoTarget,
    /// A bad `--scopes`.
    #[error("--scopes: {0}")]
    Scopes(#[from] ScopesError),
    /// `setup` without a key: the sentence names the key keygen made, or how to make one.
    #[error("{0}")]
    MissingKey(String),
    /// A bad `--subject`.
    #[error("--subject must be non-empty and hold no control characters")]
    Subject,
}

/// Why a subcommand stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A usage error, for the subcommand's usage line.
    #[error(transparent)]
    Usage(#[from] Usage),
    /// No token could be resolved for the target.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The token could not be made.
    #[error(transparent)]
    Mint(#[from] crate::mint::MintError),
    /// A URL on the command line cannot be served.
    #[error(transparent)]
    Url(#[from] crate::url::UrlError),
    /// `inspect` failed or found a bad signature.
    #[error(transparent)]
    Inspect(#[from] inspect::InspectError),
    /// JSON output could not be written.
    #[error("cannot write JSON: {0}")]
    Json(serde_json::Error),
    /// stdout is closed or full.
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    /// `setup` failed. Boxed: its errors carry paths, which are wider on Windows, and every
    /// command's result would grow with them.
    #[error(transparent)]
    Setup(Box<crate::setup::SetupError>),
    /// `keygen` made no key.
    #[error(transparent)]
    Keygen(#[from] crate::keygen::KeygenError),
    /// The token broker gave `token` no token.
    #[error(transparent)]
    Broker(#[from] token::BrokerTokenError),
    /// The problems were printed already (doctor's FAIL lines).
    #[error("problems found")]
    Reported,
}

impl From<crate::setup::SetupError> for CommandError {
    fn from(error: crate::setup::SetupError) -> Self {
        Self::Setup(Box::new(error))
    }
}
