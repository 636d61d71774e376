//! The command line: git's actions (`get`, `store`, `erase`) and the user's subcommands.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::credential::{self, Log};
use crate::env::{Env, ProcessEnv};
use crate::protocol::{self, Response};
use crate::token;

/// Signs short-lived Code Storage tokens for git, on demand.
///
/// Configure git once with `git-credential-codestorage setup`, then clone, fetch and push as
/// usual: git runs this helper, which prints a fresh token for the repository at hand.
#[derive(Debug, Parser)]
#[command(name = "git-credential-codestorage", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// (git) Read a credential request on stdin and print a freshly signed token.
    #[command(
        after_help = "Example:\n  printf 'protocol=https\\nhost=acme.code.storage\\npath=team/x.git\\n\\n' | git-credential-codestorage get"
    )]
    Get,
    /// (git) Read a credential on stdin and do nothing: tokens are minted fresh, never stored.
    Store,
    /// (git) Read a refused credential on stdin and explain, if it is ours, why it may have failed.
    Erase,
}

/// git's own actions; anything else git may invent later is answered with silence.
const GIT_ACTIONS: [&str; 3] = ["get", "store", "erase"];

/// Runs the program with the process's arguments, environment and standard streams.
pub fn run() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // git runs `helper ACTION` for every request: skip building the whole CLI on that path.
    if let [_, action] = args.as_slice() {
        match action.to_str() {
            Some(action) if GIT_ACTIONS.contains(&action) => {
                return git_action(action, &ProcessEnv);
            }
            Some(action) if !action.starts_with('-') && !is_subcommand(action) => {
                return ExitCode::SUCCESS;
            }
            _ => {}
        }
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Get => git_action("get", &ProcessEnv),
        Command::Store => git_action("store", &ProcessEnv),
        Command::Erase => git_action("erase", &ProcessEnv),
    }
}

fn is_subcommand(name: &str) -> bool {
    use clap::CommandFactory;
    Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == name)
        || name == "help"
}

/// Runs one of git's actions with stdin, stdout and stderr. Always exits 0: git ignores the
/// status of helpers, and what matters is what is (or is not) printed.
pub fn git_action(action: &str, env: &dyn Env) -> ExitCode {
    let stderr = io::stderr();
    let mut stderr = stderr.lock();
    let mut log = Log::from_env(&mut stderr, env);
    let request = match protocol::read_request(io::stdin().lock()) {
        Ok(request) => request,
        Err(e) => {
            log.error(format_args!("{e}; answering nothing"));
            return ExitCode::SUCCESS;
        }
    };
    match action {
        "get" => {
            let config = credential::load_config(env);
            let response = credential::get(&request, &config, env, token::now(), &mut log);
            write_response(&response, &mut log);
        }
        "erase" => {
            let config = credential::load_config(env);
            credential::erase(&request, &config, token::now(), &mut log);
        }
        _ => {}
    }
    ExitCode::SUCCESS
}

fn write_response(response: &Response, log: &mut Log<'_>) {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = response.write_to(&mut out).and_then(|()| out.flush()) {
        log.error(format_args!("cannot write the answer to git: {e}"));
    }
}
