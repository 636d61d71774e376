//! The command line: git's actions (`get`, `store`, `erase`) and the user's subcommands.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::credential::{self, Log, Target};
use crate::env::{Env, ProcessEnv};
use crate::error::Error;
use crate::gitconfig::{self, Git};
use crate::key::{KeySource, NewKey};
use crate::protocol::{self, Response};
use crate::resolve::{self, Overrides};
use crate::setup::{self, KeyChoice};
use crate::token;
use crate::ttl::Ttl;
use crate::{doctor, inspect, keygen};

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
    #[command(
        after_help = "git runs it after a request succeeds. Example:\n  printf 'protocol=https\\nhost=acme.code.storage\\nusername=t\\npassword=TOKEN\\n\\n' | git-credential-codestorage store"
    )]
    Store,
    /// (git) Read a refused credential on stdin and explain, if it is ours, why it may have failed.
    #[command(
        after_help = "git runs it after the server refuses a credential. Example:\n  git-credential-codestorage token --org acme team/x | sed 's/^/protocol=https\\nhost=acme.code.storage\\npassword=/' | git-credential-codestorage erase"
    )]
    Erase,
    /// Make a new signing key (EC P-256, or Ed25519) and print its public key to register.
    #[command(after_help = KEYGEN_HELP)]
    Keygen(KeygenArgs),
    /// Add an organisation to the config and route its hosts to this helper in git's config.
    #[command(after_help = SETUP_HELP)]
    Setup(SetupArgs),
    /// Print a token for a repository, with exactly the settings `get` would use.
    #[command(after_help = TOKEN_HELP)]
    Token(TokenArgs),
    /// Show what a token says (header, claims, expiry) and, with --key, check its signature.
    #[command(after_help = INSPECT_HELP)]
    Inspect(InspectArgs),
    /// Check the config, keys, git and its config, and the clock; exits non-zero on any FAIL.
    #[command(after_help = DOCTOR_HELP)]
    Doctor(DoctorArgs),
}

const KEYGEN_HELP: &str = "\
The private key is written as PKCS#8 PEM with mode 0600 and never overwritten without --force.
The public key (SPKI PEM) goes to stdout: register it in the Code Storage admin panel's public
keys for the organisation. RSA keys are not made here: make one elsewhere, e.g.
`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out acme.pem`, and import it
with `setup --key-file`.

Example:
  git-credential-codestorage keygen --org acme > acme.pub.pem";

const SETUP_HELP: &str = "\
Adds or updates [org.NAME] in the config file (keeping your comments and other settings), checks
that the key loads, and writes, for every host of every organisation, to git's global config (or
the current repository's with --local):
  [credential \"https://*.code.storage\"]
      helper =              # resets helpers configured earlier (credential-store, ...)
      helper = codestorage
      useHttpPath = true
Running it again changes nothing; `setup --remove --org NAME` undoes it.
--key-command takes every argument after it: put it last.

Examples:
  git-credential-codestorage setup --org acme --key-file ~/.config/codestorage/acme.pem
  git-credential-codestorage setup --org acme --key-env ACME_KEY --host git.acme.dev:8443
  git-credential-codestorage setup --org acme --key-command op read op://vault/acme/key
  git-credential-codestorage setup --remove --org acme";

const TOKEN_HELP: &str = "\
The token goes to stdout alone (or as JSON with --json); use it for scripts and API calls as
`Authorization: Bearer TOKEN`. --ttl, --scopes and --subject beat the environment and the config.

Examples:
  git-credential-codestorage token https://acme.code.storage/team/x.git
  git-credential-codestorage token --org acme team/x --scopes git:read --ttl 5m
  git-credential-codestorage token --org acme --org-wide --json";

const INSPECT_HELP: &str = "\
Reads the token from the argument, or from stdin when it is `-` or absent (safer: an argument
is visible to other users of the machine). Also accepts `Bearer TOKEN` and SDK-minted remote URLs
(https://t:TOKEN@ORG.code.storage/REPO.git). Exits 1 if the signature does not verify.

Examples:
  git-credential-codestorage token --org acme team/x | git-credential-codestorage inspect
  git remote get-url origin | git-credential-codestorage inspect --key acme.pub.pem -";

const DOCTOR_HELP: &str = "\
Each check prints one line: ok, warn or FAIL, with the fix. With a URL, also shows which
organisation, repository, rule, scopes and ttl a `get` would use, and the claims of a sample
token (never the token itself).

Examples:
  git-credential-codestorage doctor
  git-credential-codestorage doctor https://acme.code.storage/team/x.git";

/// `keygen`'s options.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The organisation the key is for; names the default key file.
    #[arg(long, value_name = "NAME", value_parser = org_name)]
    pub org: String,
    /// Make an Ed25519 key (EdDSA) instead of EC P-256 (ES256, what the official SDKs use).
    #[arg(long)]
    pub ed25519: bool,
    /// Where to write the private key [default: <config dir>/codestorage/NAME.pem].
    #[allow(rustdoc::invalid_html_tags)] // clap shows this text as is in --help
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Replace an existing key file (the old key stops working once you remove it from Code Storage).
    #[arg(long)]
    pub force: bool,
}

/// `setup`'s options.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The organisation (the `iss` claim of its tokens).
    #[arg(long, value_name = "NAME", value_parser = org_name)]
    pub org: String,
    /// A PEM private key file (mode 600), checked now and named in the config.
    // Hyphen values reach setup: a pasted `-----BEGIN` key must be refused there, not echoed
    // back whole by clap's "unexpected argument" error.
    #[arg(long, value_name = "PATH", allow_hyphen_values = true, conflicts_with_all = ["key_env", "key_command"])]
    pub key_file: Option<String>,
    /// An environment variable holding the PEM text of the private key (set it before running
    /// setup, which checks that the key loads).
    #[arg(
        long,
        value_name = "VAR",
        allow_hyphen_values = true,
        conflicts_with = "key_command"
    )]
    pub key_env: Option<String>,
    /// A program (and its arguments, run without a shell) that prints the PEM private key; takes
    /// every argument after it.
    #[arg(long, value_name = "PROGRAM", num_args = 1.., allow_hyphen_values = true)]
    pub key_command: Option<Vec<String>>,
    /// A host (`host` or `host:port`) served for the organisation; repeat for several. Replaces
    /// the organisation's hosts [default: NAME.code.storage].
    #[arg(long = "host", value_name = "HOST", value_parser = host_name)]
    pub hosts: Vec<String>,
    /// Write the current repository's git config instead of the global one.
    #[arg(long)]
    pub local: bool,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the organisation from the config and its hosts' entries from git's config.
    #[arg(long, conflicts_with_all = ["key_file", "key_env", "key_command", "hosts"])]
    pub remove: bool,
}

/// `token`'s options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A remote URL (https://ORG.code.storage/REPO.git), or with --org a repository ID.
    #[allow(rustdoc::bare_urls)] // clap shows this text as is in --help
    #[arg(value_name = "URL | REPO")]
    pub target: Option<String>,
    /// The organisation, by name, instead of a URL.
    #[arg(long, value_name = "NAME")]
    pub org: Option<String>,
    /// Comma-separated scopes: git:read, git:write, repo:write, org:read.
    #[arg(long, value_name = "LIST")]
    pub scopes: Option<String>,
    /// Lifetime: whole seconds or 90s, 15m, 1h, 1d (at most a year).
    #[arg(long, value_name = "TTL", value_parser = Ttl::parse)]
    pub ttl: Option<Ttl>,
    /// The `sub` claim.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// Sign for the whole organisation (`repo: "org"`, as the SDK does for org:read); scopes
    /// default to org:read.
    #[arg(long)]
    pub org_wide: bool,
    /// Print {token, expires_at, org, repo, scopes} as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `inspect`'s options.
#[derive(Args)]
pub struct InspectArgs {
    /// The token, or `-` (the default) to read it from stdin.
    #[arg(value_name = "TOKEN | -")]
    pub token: Option<String>,
    /// A public key (PUBLIC KEY PEM) or private key to check the signature with.
    #[arg(long, value_name = "KEY.pem")]
    pub key: Option<PathBuf>,
}

// The argument may be a live token: `{:?}` must not show it.
impl std::fmt::Debug for InspectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("key", &self.key)
            .finish()
    }
}

/// `doctor`'s options.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A remote URL to show the settings and sample claims for.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
}

fn org_name(text: &str) -> Result<String, String> {
    if keygen::valid_org_name(text) {
        Ok(text.to_owned())
    } else {
        Err("an organisation name is letters, digits, '-', '_' or '.', e.g. acme".into())
    }
}

fn host_name(text: &str) -> Result<String, String> {
    crate::config::check_host(text)
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
    let env = ProcessEnv;
    let result = match cli.command {
        Command::Get => return git_action("get", &env),
        Command::Store => return git_action("store", &env),
        Command::Erase => return git_action("erase", &env),
        Command::Keygen(args) => run_keygen(&args),
        Command::Setup(args) => run_setup(args, &env),
        Command::Token(args) => run_token(&args, &env),
        Command::Inspect(args) => run_inspect(&args),
        Command::Doctor(args) => run_doctor(&args, &env),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(subcommand, message)) => {
            let mut command = Cli::command();
            // Built, so that the subcommand's usage line names the program and subcommand.
            command.build();
            let command = command
                .find_subcommand_mut(subcommand)
                .expect("a subcommand of Cli");
            command
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit()
        }
        Err(Failure::Error(e)) => {
            let _ = writeln!(io::stderr(), "{}: {e}", credential::PREFIX);
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}

/// Why a subcommand stopped: a usage error (exit 2, as clap's), an error (exit 1), or problems
/// the command has already printed (exit 1).
enum Failure {
    Usage(&'static str, String),
    Error(Error),
    Reported,
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Error(e.into())
    }
}

type Outcome = Result<(), Failure>;

fn print(text: &str) -> Result<(), Error> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::msg(format!("cannot write to stdout: {e}")))
}

fn run_keygen(args: &KeygenArgs) -> Outcome {
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
    print(&made.public_pem)?;
    let program = setup::Program::current()?;
    let next = keygen::next_steps(&args.org, &made, &program.command);
    let _ = writeln!(io::stderr(), "{next}");
    Ok(())
}

fn run_setup(args: SetupArgs, env: &dyn Env) -> Outcome {
    let context = setup::Context::current()?;
    let key = match (args.key_file, args.key_env, args.key_command) {
        (Some(file), _, _) => Some(KeyChoice::File(file)),
        (_, Some(var), _) => Some(KeyChoice::Env(var)),
        (_, _, Some(argv)) => Some(KeyChoice::Command(argv)),
        (None, None, None) if args.remove => None,
        (None, None, None) => {
            let message = setup::missing_key(&args.org, &context.program.command);
            return Err(Failure::Usage("setup", message));
        }
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
    let stdout = io::stdout();
    setup::run(&options, &context, env, &Git::default(), &mut stdout.lock())?;
    Ok(())
}

/// What `token --json` prints.
#[derive(serde::Serialize)]
struct TokenJson<'a> {
    token: &'a str,
    expires_at: String,
    org: &'a str,
    repo: &'a str,
    scopes: &'a [token::Scope],
}

fn run_token(args: &TokenArgs, env: &dyn Env) -> Outcome {
    let url;
    let target =
        match (&args.org, &args.target) {
            (Some(org), repo) => {
                if args.org_wide && repo.is_some() {
                    return Err(Failure::Usage(
                        "token",
                        "--org-wide signs for the whole organisation: drop REPO".into(),
                    ));
                }
                match repo.as_deref() {
                    Some(repo) => Target::Org { org, repo },
                    None if args.org_wide => Target::Org {
                        org,
                        repo: token::ORG_WIDE_REPO,
                    },
                    None => return Err(Failure::Usage(
                        "token",
                        "--org NAME needs the repository: token --org NAME REPO (or --org-wide)"
                            .into(),
                    )),
                }
            }
            (None, Some(text)) => {
                url = crate::url::parse(text)?;
                Target::Url(&url)
            }
            (None, None) => {
                return Err(Failure::Usage(
                    "token",
                    "name the repository: token URL, or token --org NAME REPO".into(),
                ));
            }
        };
    let scopes = match &args.scopes {
        Some(text) => Some(
            resolve::parse_scopes(text)
                .map_err(|e| Failure::Usage("token", format!("--scopes: {e}")))?,
        ),
        None if args.org_wide => Some(vec![token::Scope::OrgRead]),
        None => None,
    };
    if let Some(subject) = &args.subject
        && !crate::config::valid_subject(subject)
    {
        return Err(Failure::Usage(
            "token",
            "--subject must be non-empty and hold no control characters".into(),
        ));
    }
    let overrides = Overrides {
        ttl: args.ttl,
        scopes,
        subject: args.subject.clone(),
    };
    let config = credential::load_config(env)?;
    let settings =
        credential::resolve_target(config.as_ref(), target, args.org_wide, env, &overrides)?;
    let minted = credential::mint(&settings, env, token::now())?;
    if args.json {
        let json = TokenJson {
            token: &minted.token,
            expires_at: credential::format_time(minted.claims.exp),
            org: &minted.claims.iss,
            repo: &minted.claims.repo,
            scopes: &minted.claims.scopes,
        };
        let text = serde_json::to_string(&json).map_err(|e| Error::msg(e.to_string()))?;
        print(&format!("{text}\n"))?;
    } else {
        print(&format!("{}\n", minted.token))?;
    }
    Ok(())
}

fn run_inspect(args: &InspectArgs) -> Outcome {
    let text = match args.token.as_deref() {
        Some(token) if token != "-" => token.to_owned(),
        _ => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                return Err(Failure::Usage(
                    "inspect",
                    "no token given: pass it as an argument or pipe it to stdin".into(),
                ));
            }
            let mut text = String::new();
            // A token is a few KiB; a megabyte is garbage, not a token.
            stdin
                .lock()
                .take(1024 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| Error::msg(format!("cannot read stdin: {e}")))?;
            text
        }
    };
    let token_text = inspect::extract_token(&text)?;
    let key = match &args.key {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| Error::msg(format!("cannot read {}: {e}", path.display())))?;
            Some(inspect::public_key(&text, &KeySource::File(path.clone()))?)
        }
        None => None,
    };
    let shown = args
        .key
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let report = inspect::inspect(
        &token_text,
        key.as_ref().map(|k| (k, shown.as_str())),
        token::now(),
    )?;
    print(&report)?;
    Ok(())
}

fn run_doctor(args: &DoctorArgs, env: &dyn Env) -> Outcome {
    let report = doctor::doctor(env, &Git::default(), args.url.as_deref(), token::now());
    print(&report.to_string())?;
    if report.failed() {
        return Err(Failure::Reported);
    }
    Ok(())
}

fn is_subcommand(name: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_parsed_command_line_never_shows_a_token() {
        let cli =
            Cli::try_parse_from(["git-credential-codestorage", "inspect", "aaa.bbb.ccc"]).unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("aaa.bbb.ccc"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
