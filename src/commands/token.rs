//! `token`: a token for a repository (or the organisation), with exactly the settings `get` uses.

use crate::cli::TokenArgs;
use crate::clock::{format_time, now};
use crate::commands::{CommandError, Usage};
use crate::config;
use crate::env::Env;
use crate::mint::mint;
use crate::resolve::{self, Overrides, Reach, Target};
use crate::token::Scope;

/// What `token --json` prints.
#[derive(serde::Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    expires_at: String,
    org: &'a str,
    repo: &'a str,
    scopes: &'a [Scope],
}

/// Runs `token`, returning what goes to stdout.
pub fn run(args: &TokenArgs, env: &dyn Env) -> Result<String, CommandError> {
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
            url.target()
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
    let config = config::load_default(env);
    let settings = resolve::resolve(
        config.as_ref().map(Option::as_ref),
        target,
        reach,
        env,
        &overrides,
    )?;
    let minted = mint(&settings, env, now())?;
    let token = minted.token.expose();
    if args.json {
        let json = TokenJson {
            token,
            expires_at: format_time(minted.claims.exp),
            org: &minted.claims.iss,
            repo: &minted.claims.repo,
            scopes: &minted.claims.scopes,
        };
        let text = serde_json::to_string(&json).map_err(CommandError::Json)?;
        Ok(format!("{text}\n"))
    } else {
        Ok(format!("{token}\n"))
    }
}
