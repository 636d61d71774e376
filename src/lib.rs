//! git-credential-codestorage: signs short-lived Code Storage tokens for git, on demand.
//!
//! The crate is a small pure core with the I/O at the edge: [`protocol`] reads and writes git's
//! credential lines, [`resolve`] maps host and path to an organisation, a repository and the
//! token's settings (from [`config`] and [`env`](mod@env)), [`key`] loads the private key, [`token`] signs
//! (through [`crypto`], ring behind jsonwebtoken), and [`credential`] ties them into git's
//! `get`/`store`/`erase`. [`cli`] is the command line; the user's subcommands are [`keygen`],
//! [`setup`] (with [`gitconfig`], which runs `git config`), [`inspect`] and [`doctor`], and `token`
//! in [`credential`]; [`url`] reads remote URLs as users type them, and [`fs`] writes every file
//! the tool writes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod credential;
pub mod crypto;
pub mod der;
pub mod doctor;
pub mod env;
pub mod error;
pub mod fs;
pub mod gitconfig;
pub mod glob;
pub mod inspect;
pub mod key;
pub mod keygen;
pub mod protocol;
pub mod resolve;
pub mod setup;
pub mod token;
pub mod ttl;
pub mod url;

#[cfg(feature = "emulator")]
pub mod emulator;
