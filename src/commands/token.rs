//! `token`: a token for a repository (or the organisation), with exactly the settings `get` uses.
//! Inside a sandbox (`CODESTORAGE_BROKER`, or `broker =` in the config) the token broker signs
//! it, within the sandbox's policy, as it would for git.

use crate::cli::TokenArgs;
use crate::clock::{format_time, now};
use crate::commands::{CommandError, Usage};
use crate::config;
use crate::env::Env;
use crate::mint::mint;
use crate::resolve::{self, Overrides, Reach, Target};
use crate::token::{Claims, Scope};

/// What `token --json` prints.
#[derive(serde::Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    expires_at: String,
    org: &'a str,
    repo: &'a str,
    scopes: &'a [Scope],
}

/// Why the token broker gave `token` no token.
#[derive(Debug, thiserror::Error)]
pub enum BrokerTokenError {
    /// An option only the broker's config may set.
    #[error(
        "inside a sandbox the token broker ({origin}) decides a token's organisation, scopes, lifetime and subject; run token URL without --org, --org-wide, --scopes, --ttl or --subject"
    )]
    Options {
        /// Where the broker's socket was named.
        origin: String,
    },
    /// A URL whose host, path or protocol holds a control character.
    #[error("the URL holds a control character; write it as https://HOST/REPO.git")]
    Control,
    /// The broker could not be asked.
    #[cfg(unix)]
    #[error(transparent)]
    Client(#[from] crate::broker::client::ClientError),
    /// The broker refused, in its own words (they name the sandbox and why).
    #[error("{0}")]
    Refused(String),
    /// The broker serves no organisation at the URL's host.
    #[error(
        "the token broker at {socket} gets no tokens for host {host}; `doctor` lists the hosts this sandbox may get tokens for"
    )]
    NotServed {
        /// The broker's socket.
        socket: String,
        /// The URL's host.
        host: String,
    },
}

/// Runs `token`, returning what goes to stdout.
pub fn run(args: &TokenArgs, env: &dyn Env) -> Result<String, CommandError> {
    #[cfg(unix)]
    if let Some(socket) = env
        .var(crate::broker::BROKER_ENV)
        .filter(|path| !path.is_empty())
    {
        return via_broker(
            args,
            std::path::Path::new(&socket),
            crate::broker::BROKER_ENV,
        );
    }
    let config = config::load_default(env);
    #[cfg(unix)]
    if let Ok(Some(loaded)) = &config
        && let Some(socket) = &loaded.broker
    {
        let origin = format!("broker in {}", loaded.path.display());
        return via_broker(args, socket, &origin);
    }
    let url;
    let reach = if args.org_wide {
        Reach::Organisation
    } else {
        Reach::Repository
    };
    let target = match (&args.org, args.target.as_deref()) {
        (Some(_), Some(_)) if args.org_wide => return Err(Usage::OrgWideWithRepo.into()),
        (Some(org), Some(repo)) => Target::Org { org, repo },
        (Some(org), None) if args.org_wide => Target::Org { org, repo: "" },
        (Some(_), None) => return Err(Usage::OrgWithoutRepo.into()),
        (None, Some(text)) => {
            url = crate::url::parse(text)?;
            Target::of_url(&url)
        }
        (None, None) => return Err(Usage::NoTarget.into()),
    };
    let scopes = match &args.scopes {
        Some(text) => Some(resolve::parse_scopes(text).map_err(Usage::Scopes)?),
        None => None,
    };
    if let Some(subject) = &args.subject
        && !config::valid_subject(subject)
    {
        return Err(Usage::Subject.into());
    }
    let overrides = Overrides {
        ttl: args.ttl,
        scopes,
        subject: args.subject.clone(),
    };
    let settings = resolve::resolve(
        config.as_ref().map(Option::as_ref),
        target,
        reach,
        env,
        &overrides,
    )?;
    let minted = mint(&settings, env, now())?;
    output(args, minted.token.expose(), &minted.claims)
}

/// The token as `token` prints it: alone, or with `--json` beside what it says.
fn output(args: &TokenArgs, token: &str, claims: &Claims) -> Result<String, CommandError> {
    if args.json {
        let json = TokenJson {
            token,
            expires_at: format_time(claims.exp),
            org: &claims.iss,
            repo: &claims.repo,
            scopes: &claims.scopes,
        };
        let text = serde_json::to_string(&json).map_err(CommandError::Json)?;
        Ok(format!("{text}\n"))
    } else {
        Ok(format!("{token}\n"))
    }
}

/// Asks the broker at `socket` for a token for the URL in `args`, as git's `get` would.
#[cfg(unix)]
fn via_broker(
    args: &TokenArgs,
    socket: &std::path::Path,
    origin: &str,
) -> Result<String, CommandError> {
    use crate::broker::client;
    use crate::protocol::GitAction;

    let overridden = args.org.is_some()
        || args.org_wide
        || args.scopes.is_some()
        || args.ttl.is_some()
        || args.subject.is_some();
    if overridden {
        let origin = origin.to_owned();
        return Err(BrokerTokenError::Options { origin }.into());
    }
    let text = args.target.as_deref().ok_or(Usage::NoTarget)?;
    let url = crate::url::parse(text)?;
    if [&url.protocol, &url.host, &url.path]
        .iter()
        .any(|field| field.chars().any(char::is_control))
    {
        return Err(BrokerTokenError::Control.into());
    }
    let request = crate::protocol::Request {
        protocol: Some(url.protocol.clone()),
        host: Some(url.host.clone()),
        path: Some(url.path.clone()),
        ..Default::default()
    };
    let answer =
        client::ask(socket, origin, GitAction::Get, &request).map_err(BrokerTokenError::Client)?;
    if !answer.errors.is_empty() {
        return Err(BrokerTokenError::Refused(answer.errors.join("; ")).into());
    }
    let git = String::from_utf8_lossy(answer.git.expose());
    let Some(token) = git.lines().find_map(|line| line.strip_prefix("password=")) else {
        let socket = socket.display().to_string();
        let host = url.host.clone();
        return Err(BrokerTokenError::NotServed { socket, host }.into());
    };
    let claims = crate::token::decode_unverified(token)
        .ok()
        .and_then(|u| u.claims)
        .ok_or_else(|| {
            BrokerTokenError::Refused(
                "the token broker answered with no Code Storage token; check its log".into(),
            )
        })?;
    output(args, token, &claims)
}
