//! `setup`: plan the changes to the helper's config and git's, print them with `--dry-run`, or
//! apply them.

use crate::cli::SetupArgs;
use crate::commands::{CommandError, Usage};
use crate::env::Env;
use crate::gitconfig::{self, Git};
use crate::setup::{self, Context, KeyChoice};

/// Runs `setup`; what it did (or would do) goes to stdout as it goes.
pub fn run(args: SetupArgs, env: &dyn Env) -> Result<(), CommandError> {
    let context = Context::current()?;
    let key = match (
        args.key_file,
        args.key_env,
        args.key_command,
        args.ssh_agent,
    ) {
        (Some(file), _, _, _) => Some(KeyChoice::File(file)),
        (_, Some(var), _, _) => Some(KeyChoice::Env(var)),
        (_, _, Some(argv), _) => Some(KeyChoice::Command(argv)),
        (_, _, _, Some(key)) => Some(KeyChoice::Agent(key)),
        // Without a key, an organisation already in the config keeps its own (setup then
        // re-applies git's settings); for a new one, plan says a key is missing.
        (None, None, None, None) => None,
    };
    let options = setup::Options {
        org: args.org,
        key,
        hosts: args.hosts,
        scope: if args.local {
            gitconfig::Scope::Local
        } else {
            gitconfig::Scope::Global
        },
        dry_run: args.dry_run,
        remove: args.remove,
    };
    let stdout = std::io::stdout();
    match setup::run(&options, &context, env, &Git::default(), &mut stdout.lock()) {
        Err(setup::SetupError::NoKey { org }) => {
            Err(Usage::MissingKey(setup::missing_key(&org, &context.program.command)).into())
        }
        result => Ok(result?),
    }
}
