//! The edge of git's actions: read the request from stdin, answer on stdout, explain on stderr.

use std::io::{self, Write};
use std::path::Path;

use crate::broker::BROKER_ENV;
use crate::config;
use crate::credential;
use crate::env::{self, Env, vars};
use crate::log::Log;
use crate::operation::Operation;
use crate::protocol::GitAction;
use crate::protocol::{self, Response};

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
    // Inside a sandbox the broker answers: no key, no organisation config here. The variable
    // is looked at first so that a sandbox reads no config file at all.
    if let Some(socket) = env.var(BROKER_ENV).filter(|path| !path.is_empty()) {
        let Some(hint) = broker_hint(action, env, &mut log) else {
            return;
        };
        forward(
            Path::new(&socket),
            BROKER_ENV,
            (action, hint),
            &request,
            &mut log,
        );
        return;
    }
    let config = config::load_default(env);
    if let Ok(Some(loaded)) = &config
        && let Some(socket) = &loaded.broker
    {
        let origin = format!("broker in {}", loaded.path.display());
        let Some(hint) = broker_hint(action, env, &mut log) else {
            return;
        };
        forward(socket, &origin, (action, hint), &request, &mut log);
        return;
    }
    match action {
        GitAction::Get => {
            let response = credential::get(&request, &config, env, crate::clock::now(), &mut log);
            write_response(&response, &mut log);
        }
        GitAction::Erase => {
            // git's config is read only if an expired token must be traced to a remote URL.
            let mut remotes = || crate::gitconfig::Git::default().list().unwrap_or_default();
            credential::erase_tracing(
                &request,
                &config,
                crate::clock::now(),
                &mut log,
                &mut remotes,
            );
        }
        GitAction::Store => {}
    }
}

#[cfg(unix)]
fn forward(
    socket: &Path,
    origin: &str,
    (action, hint): (GitAction, Option<Operation>),
    request: &protocol::Request,
    log: &mut Log<'_>,
) {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    crate::broker::client::forward(socket, origin, (action, hint), request, &mut out, log);
}

#[cfg(not(unix))]
fn forward(
    socket: &Path,
    origin: &str,
    (action, _hint): (GitAction, Option<Operation>),
    _request: &protocol::Request,
    log: &mut Log<'_>,
) {
    log.error(format_args!(
        "{origin} names the token broker at {}, but brokers work over Unix sockets, which this system lacks",
        socket.display()
    ));
    if action == GitAction::Get {
        write_response(&Response::Quit, log);
    }
}

/// The operation a `get` through the broker names (`CODESTORAGE_OPERATION`), which the broker
/// may only narrow with. A value that is no operation stops git, as a local `get` does (none:
/// `quit=1` is written).
fn broker_hint(action: GitAction, env: &dyn Env, log: &mut Log<'_>) -> Option<Option<Operation>> {
    if action != GitAction::Get {
        return Some(None);
    }
    match crate::operation::hint(env) {
        Ok(hint) => Some(hint),
        Err(e) => {
            log.error(e);
            write_response(&Response::Quit, log);
            None
        }
    }
}

fn write_response(response: &Response, log: &mut Log<'_>) {
    // Buffered so that the answer leaves in one write, not one per line.
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if let Err(e) = response.write_to(&mut out).and_then(|()| out.flush()) {
        log.error(format_args!("cannot write the answer to git: {e}"));
    }
}
