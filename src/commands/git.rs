//! The edge of git's actions: read the request from stdin, answer on stdout, explain on stderr.

use std::io::{self, Write};

use crate::config;
use crate::credential;
use crate::env::{self, Env, vars};
use crate::log::Log;
use crate::protocol::{self, Response};

/// The actions git runs a helper with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAction {
    /// Print a credential for the request.
    Get,
    /// A credential worked; tokens are never stored, so nothing to do.
    Store,
    /// A credential was refused; explain it if it is ours.
    Erase,
}

impl GitAction {
    /// The action git names `word`, if any; git may invent others, which are ignored.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "get" => Some(Self::Get),
            "store" => Some(Self::Store),
            "erase" => Some(Self::Erase),
            _ => None,
        }
    }
}

/// Runs `action` with the process's standard streams. Never fails: git ignores a helper's exit
/// status, and what matters is what is (or is not) printed.
pub fn run(action: GitAction, env: &dyn Env) {
    let stderr = io::stderr();
    let mut stderr = stderr.lock();
    let debug = env::switch(env, vars::DEBUG);
    let mut log = Log::new(
        &mut stderr,
        debug.as_ref().is_ok_and(|on| on == &Some(true)),
    );
    if let Err(e) = debug {
        log.error(e);
    }
    let request = match protocol::read_request(io::stdin().lock()) {
        Ok(request) => request,
        Err(e) => {
            log.error(format_args!("{e}; answering nothing"));
            return;
        }
    };
    match action {
        GitAction::Get => {
            let config = config::load_default(env);
            let response = credential::get(&request, &config, env, crate::clock::now(), &mut log);
            write_response(&response, &mut log);
        }
        GitAction::Erase => {
            let config = config::load_default(env);
            credential::erase(&request, &config, crate::clock::now(), &mut log);
        }
        GitAction::Store => {}
    }
}

fn write_response(response: &Response, log: &mut Log<'_>) {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = response.write_to(&mut out).and_then(|()| out.flush()) {
        log.error(format_args!("cannot write the answer to git: {e}"));
    }
}
