//! The crate's error: one enum over the modules' own, each message written for the user.

use crate::config::ConfigError;
use crate::gitconfig::GitError;
use crate::key::KeyError;
use crate::keygen::KeygenError;
use crate::resolve::{RepoIdError, ResolveError};
use crate::setup::SetupError;
use crate::token::TokenError;
use crate::url::UrlError;

/// Anything that stops the helper from producing a token or finishing a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Settings could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The request path names no valid repository.
    #[error(transparent)]
    RepoId(#[from] RepoIdError),
    /// An organisation's key could not be loaded.
    #[error("organisation {org:?}: {source}")]
    Key {
        /// The organisation.
        org: String,
        /// Why.
        source: KeyError,
    },
    /// The token could not be made or read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A URL given on the command line cannot be served.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Running `git` failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// `setup` could not finish.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// `keygen` made no key.
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Message(String),
}

impl Error {
    /// An error that is just a sentence.
    pub fn msg(text: impl Into<String>) -> Self {
        Self::Message(text.into())
    }
}
