//! git-credential-codestorage: signs short-lived Code Storage tokens for git, on demand.
//!
//! The crate is a small pure core with the I/O at the edge. A `get` reads straight down:
//! [`protocol`] reads git's request; [`resolve`] is the one pipeline from host and path to an
//! organisation ([`host`]), a repository and the token's settings (from [`config`] and [`mod@env`]);
//! [`mint`] opens the organisation's [`key`] as a [`signer::Signer`] and signs the [`token`];
//! [`credential`] turns the outcome into git's answer. [`cli`] is the command line and
//! [`commands`] the bodies of the user's subcommands. The modules stand in layers that point
//! one way; ARCHITECTURE.md lists them.
#![forbid(unsafe_code)]

pub mod alg;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod credential;
pub mod crypto;
pub mod der;
pub mod env;
pub mod fs;
pub mod gitconfig;
pub mod glob;
pub mod host;
pub mod key;
pub mod keygen;
pub mod log;
pub mod mint;
pub mod operation;
pub mod paths;
pub mod process;
pub mod protocol;
pub mod refpolicy;
pub mod resolve;
pub mod secret;
pub mod setup;
pub mod shell;
pub mod signature;
pub mod signer;
pub mod sshagent;
pub mod token;
pub mod ttl;
pub mod url;
