//! The command line: git's actions (`get`, `store`, `erase`) and the user's subcommands.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::commands::{self, CommandError};
use crate::env::{Env, ProcessEnv};
use crate::gitconfig::Git;
use crate::host::{Host, OrgName};
use crate::log::PREFIX;
use crate::protocol::GitAction;
use crate::ttl::Ttl;

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
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), generated from these very definitions.
    #[command(after_help = MAN_HELP)]
    Man,
    /// Serve tokens to agent sandboxes over one Unix socket each, so no sandbox holds a key.
    #[command(after_help = BROKER_HELP)]
    Broker(BrokerArgs),
}

const COMPLETIONS_HELP: &str = "\
install.sh installs them; by hand:
  git-credential-codestorage completions bash > ~/.local/share/bash-completion/completions/git-credential-codestorage
  git-credential-codestorage completions zsh > ~/.zfunc/_git-credential-codestorage
  git-credential-codestorage completions fish > ~/.config/fish/completions/git-credential-codestorage.fish

Example:
  git-credential-codestorage completions bash";

const MAN_HELP: &str = "\
install.sh installs it as PREFIX/share/man/man1/git-credential-codestorage.1, which
`man git-credential-codestorage` and `git credential-codestorage --help` open.

Example:
  git-credential-codestorage man > git-credential-codestorage.1 && man ./git-credential-codestorage.1";

const KEYGEN_HELP: &str = "\
The private key is written as PKCS#8 PEM with mode 0600 and never overwritten without --force.
The public key (SPKI PEM) goes to stdout: register it in the Code Storage admin panel's public
keys for the organisation. RSA keys are not made here: make one elsewhere, e.g.
`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out acme.pem`, and import it
with `setup --key-file`.

With --ssh-agent the key is made in memory and loaded into the running ssh-agent, never written
anywhere: its fingerprint and the setup command go to stderr. The key lives as long as the agent.

Examples:
  git-credential-codestorage keygen --org acme > acme.pub.pem
  git-credential-codestorage keygen --org acme --ssh-agent > acme.pub.pem";

const SETUP_HELP: &str = "\
Adds or updates [org.NAME] in the config file (keeping your comments and other settings), checks
that the key loads, and writes, for every host of every organisation, to git's global config (or
the current repository's with --local):
  [credential \"https://*.code.storage\"]
      helper =              # resets helpers configured earlier (credential-store, ...)
      helper = codestorage
      useHttpPath = true
  [http \"https://*.code.storage\"]
      proactiveAuth = auto  # git 2.46+ asks before the first request, not after a 401
  [credential \"https://acme.code.storage\"]  # the same, exact, for each host (libgit2, cargo)
      helper =
      helper = codestorage
      useHttpPath = true
  [http \"https://acme.code.storage\"]
      proactiveAuth = auto
Running it again changes nothing; `setup --org NAME` with no key option keeps the organisation's
key and writes git's config again; `setup --remove --org NAME` undoes it.
--key-command takes every argument after it: put it last.

Examples:
  git-credential-codestorage setup --org acme --key-file ~/.config/codestorage/acme.pem
  git-credential-codestorage setup --org acme --key-env ACME_KEY --host git.acme.dev:8443
  git-credential-codestorage setup --org acme --key-command op read op://vault/acme/key
  git-credential-codestorage setup --org acme --ssh-agent SHA256:g2XQudAvmoDRQMEu9D3lDATInyDyBQtWocL9wb7TI5A
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

const BROKER_HELP: &str = "\
Runs in the foreground (systemd, a container's sidecar) and serves every [sandbox.NAME] table
of the config on its socket; SIGHUP re-reads the config, SIGTERM stops and removes the sockets.
Inside a sandbox, set CODESTORAGE_BROKER to the mounted socket: `get` then asks the broker.
See docs/sandboxes.md.

With control_socket (or --control-socket) it also serves an HTTP/1.1 + JSON control API there,
which `broker sandbox add|remove|list|show` talk to.

Examples:
  git-credential-codestorage broker --config /etc/codestorage/broker.toml --check
  git-credential-codestorage broker --config /etc/codestorage/broker.toml --audit-log /var/log/codestorage-audit.jsonl
  git-credential-codestorage broker sandbox add agent-42 --org acme --repo 'agents/42/**' --lease 4h
  git-credential-codestorage broker sandbox list";

/// `broker`'s options.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The config file with [org.NAME] and [sandbox.NAME] tables (default: as `get` finds it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Append one JSON line per request to FILE (created with mode 0600) instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Check the config, its keys and its sockets' directories, print the sandboxes, and exit.
    #[arg(long)]
    pub check: bool,
    /// Serve (or, with `sandbox`, talk to) the control API on this Unix socket, instead of the
    /// config's control_socket.
    #[arg(long, value_name = "PATH", global = true)]
    pub control_socket: Option<PathBuf>,
    /// Manage sandboxes through a running broker's control API.
    #[command(subcommand)]
    pub action: Option<BrokerAction>,
}

/// `broker`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum BrokerAction {
    /// Register, replace, remove, list or show sandboxes of a running broker.
    #[command(subcommand)]
    Sandbox(SandboxAction),
}

/// `broker sandbox`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Register a sandbox (or replace its policy); prints its socket.
    Add(Box<SandboxAddArgs>),
    /// Remove a registered sandbox: its socket goes and it gets no more tokens.
    Remove {
        /// The sandbox.
        name: String,
    },
    /// List the sandboxes served.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one sandbox's policy, socket, lease and counters as JSON.
    Show {
        /// The sandbox.
        name: String,
    },
}

/// `broker sandbox add`'s options: the fields of a `[sandbox.NAME]` table.
#[derive(Debug, Args)]
pub struct SandboxAddArgs {
    /// The sandbox's name: letters, digits, '.', '_' and '-'.
    pub name: String,
    /// An organisation it may get tokens for (repeat for more).
    #[arg(long = "org", value_name = "ORG", required = true)]
    pub orgs: Vec<String>,
    /// A repository pattern it may get tokens for (repeat for more).
    #[arg(long = "repo", value_name = "PATTERN", required = true)]
    pub repos: Vec<String>,
    /// The most scopes a token may carry (repeat; default git:read and git:write).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// The longest lifetime of a token, e.g. 15m.
    #[arg(long, value_name = "TTL")]
    pub ttl: Option<String>,
    /// The `sub` claim of its tokens (default sandbox:NAME).
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// A branch or ref it may push to (repeat); every other ref is read-only.
    #[arg(long = "push-branch", value_name = "REF")]
    pub push_branches: Vec<String>,
    /// A repository-wide op added to every token, e.g. no-force-push (repeat).
    #[arg(long = "op", value_name = "OP")]
    pub ops: Vec<String>,
    /// The registration ends by itself after this long, e.g. 4h.
    #[arg(long, value_name = "DURATION")]
    pub lease: Option<String>,
    /// The socket's mode, e.g. 0660 (with --group).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// The socket's group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// `keygen`'s options.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The organisation the key is for; names the default key file.
    #[arg(long, value_name = "NAME", value_parser = org_name)]
    pub org: String,
    /// Make an Ed25519 key (EdDSA) instead of EC P-256 (ES256, what the official SDKs use).
    #[arg(long)]
    pub ed25519: bool,
    /// Where to write the private key (default: `<config dir>/codestorage/NAME.pem`).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Replace an existing key file (the old key stops working once you remove it from Code Storage).
    #[arg(long)]
    pub force: bool,
    /// Load the new key into the running ssh-agent (SSH_AUTH_SOCK) instead of writing it to a
    /// file: it exists only in the agent, and is gone when the agent stops.
    #[arg(long, conflicts_with_all = ["out", "force"])]
    pub ssh_agent: bool,
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
    #[arg(long, value_name = "PROGRAM", num_args = 1.., allow_hyphen_values = true, conflicts_with = "ssh_agent")]
    pub key_command: Option<Vec<String>>,
    /// A key held by ssh-agent: its SHA256 fingerprint (`ssh-add -l -E sha256`) or the path of
    /// its public key (`.pub` or PUBLIC KEY PEM); the agent signs, no private key is read.
    #[arg(
        long,
        value_name = "FINGERPRINT | PUBFILE",
        allow_hyphen_values = true,
        conflicts_with_all = ["key_file", "key_env"]
    )]
    pub ssh_agent: Option<String>,
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
    #[arg(long, conflicts_with_all = ["key_file", "key_env", "key_command", "ssh_agent", "hosts"])]
    pub remove: bool,
}

/// `token`'s options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A remote URL (`https://ORG.code.storage/REPO.git`), or with --org a repository ID.
    #[arg(value_name = "URL | REPO")]
    pub target: Option<String>,
    /// The organisation, by name, instead of a URL.
    #[arg(long, value_name = "NAME")]
    pub org: Option<OrgName>,
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
    /// Print the findings as JSON ({ok, problems, findings: [{status, text}]}) for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `completions`' options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

fn org_name(text: &str) -> Result<String, crate::host::OrgNameError> {
    OrgName::parse(text).map(|name| name.to_string())
}

fn host_name(text: &str) -> Result<String, crate::host::HostError> {
    Host::parse(text).map(|host| host.to_string())
}

/// Runs the program with the process's arguments, environment and standard streams.
pub fn run() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // git runs `helper ACTION` for every request: skip building the whole CLI on that path.
    if let [_, action] = args.as_slice()
        && let Some(word) = action.to_str()
    {
        if let Some(action) = GitAction::parse(word) {
            return git(action, &ProcessEnv);
        }
        // git's rule: a helper ignores actions it does not know (git may add some). A person's
        // typo of a subcommand is not one: clap then says "did you mean" and exits 2.
        if !word.starts_with('-') && !is_subcommand(word) && !near_subcommand(word) {
            return ExitCode::SUCCESS;
        }
    }
    let cli = Cli::parse_from(args);
    let env = ProcessEnv;
    let (name, result) = match cli.command {
        Command::Get => return git(GitAction::Get, &env),
        Command::Store => return git(GitAction::Store, &env),
        Command::Erase => return git(GitAction::Erase, &env),
        Command::Keygen(args) => ("keygen", commands::keygen::run(&args, &env).and_then(print)),
        Command::Setup(args) => ("setup", commands::setup::run(args, &env)),
        Command::Token(args) => ("token", commands::token::run(&args, &env).and_then(print)),
        Command::Inspect(args) => (
            "inspect",
            commands::inspect::run(args.token.as_deref(), args.key.as_ref())
                .map_err(CommandError::from)
                .and_then(print),
        ),
        Command::Doctor(args) => ("doctor", run_doctor(&args, &env)),
        Command::Completions(args) => (
            "completions",
            print(commands::completions::script(args.shell)),
        ),
        Command::Man => ("man", commands::man::page().and_then(print)),
        Command::Broker(args) => ("broker", commands::broker::run(&args, &env)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CommandError::Usage(usage)) => {
            let mut command = Cli::command();
            // Built, so that the subcommand's usage line names the program and subcommand.
            command.build();
            let command = command
                .find_subcommand_mut(name)
                .expect("a subcommand of Cli");
            command
                .error(clap::error::ErrorKind::ArgumentConflict, usage)
                .exit()
        }
        Err(CommandError::Reported) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(io::stderr(), "{PREFIX}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn git(action: GitAction, env: &dyn Env) -> ExitCode {
    commands::git::run(action, env);
    ExitCode::SUCCESS
}

fn print(text: String) -> Result<(), CommandError> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CommandError::Stdout)
}

fn run_doctor(args: &DoctorArgs, env: &dyn Env) -> Result<(), CommandError> {
    let report = commands::doctor::doctor(
        env,
        &Git::default(),
        args.url.as_deref(),
        crate::clock::now(),
    );
    print(if args.json {
        report.to_json()
    } else {
        report.to_string()
    })?;
    if report.failed() {
        return Err(CommandError::Reported);
    }
    Ok(())
}

/// Whether `word` is within two edits of a user's subcommand (`doctr`, `setpu`); git's own
/// actions are left out, so a future action of git's is still ignored as git's rule says.
fn near_subcommand(word: &str) -> bool {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name())
        .filter(|name| GitAction::parse(name).is_none())
        .any(|name| strsim::damerau_levenshtein(word, name) <= 2)
}

fn is_subcommand(name: &str) -> bool {
    Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == name)
        || name == "help"
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
