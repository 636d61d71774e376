//! `keygen`: a new key written where only its owner reads it, or loaded into the ssh-agent and
//! written nowhere; the public key to register on stdout, the next step on stderr.

use std::io::Write;

use crate::cli::KeygenArgs;
use crate::commands::CommandError;
use crate::env::Env;
use crate::key::NewKey;
use crate::keygen::{self, KeygenError};
use crate::setup::Program;
use crate::signer::agent::agent_at;

/// Runs `keygen`, returning what goes to stdout (the public key).
pub fn run(args: &KeygenArgs, env: &dyn Env) -> Result<String, CommandError> {
    let kind = if args.ed25519 {
        NewKey::Ed25519
    } else {
        NewKey::P256
    };
    if args.ssh_agent {
        let agent = agent_at(None, env).map_err(KeygenError::Agent)?;
        // The comment `ssh-add -l` shows: which organisation the key is for.
        let comment = format!("codestorage {}", args.org);
        let added = keygen::keygen_agent(kind, &agent, &comment)?;
        let program = Program::current()?;
        let next = keygen::agent_next_steps(&args.org, &added, &program.command);
        let _ = writeln!(std::io::stderr(), "{next}");
        return Ok(added.public_pem);
    }
    let path = match &args.out {
        Some(path) => path.clone(),
        None => keygen::default_path(&args.org)?,
    };
    let made = keygen::keygen(kind, &path, args.force)?;
    let program = Program::current()?;
    let next = keygen::next_steps(&args.org, &made, &program.command);
    let _ = writeln!(std::io::stderr(), "{next}");
    Ok(made.public_pem)
}
