//! `keygen`: a new key written where only its owner reads it; the public key to register on
//! stdout, the next step on stderr.

use std::io::Write;

use crate::cli::KeygenArgs;
use crate::commands::CommandError;
use crate::key::NewKey;
use crate::keygen;
use crate::setup::Program;

/// Runs `keygen`, returning what goes to stdout (the public key).
pub fn run(args: &KeygenArgs) -> Result<String, CommandError> {
    let path = match &args.out {
        Some(path) => path.clone(),
        None => keygen::default_path(&args.org)?,
    };
    let kind = if args.ed25519 {
        NewKey::Ed25519
    } else {
        NewKey::P256
    };
    let made = keygen::keygen(kind, &path, args.force)?;
    let program = Program::current()?;
    let next = keygen::next_steps(&args.org, &made, &program.command);
    let _ = writeln!(std::io::stderr(), "{next}");
    Ok(made.public_pem)
}
