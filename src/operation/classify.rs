//! The pure half: which git command a chain of processes (or a trace2 name) shows, and whether
//! it reads or writes. No I/O here, so every rule is tested on recorded chains.
//!
//! The rules, in the order they apply to each process from the nearest ancestor outward:
//! - Not git (a shell, a wrapper script) and our own `git credential-<name>` wrapper pass the
//!   request along and decide nothing.
//! - A transport (`git remote-https`, `git-remote-https`, any `remote-*`, `http-fetch`) decides
//!   nothing either: git runs the same one for a fetch and a push. It marks the request as made
//!   by a transport, which is what makes a later read command trustworthy.
//! - The first user-level git command decides, and nothing further out is looked at: a
//!   `git fetch` run by a push's hook asked for a fetch. `push`, `send-pack` and `http-push` write,
//!   wherever they are. A read command (`clone`, `fetch`, `pull`, `ls-remote`, `fetch-pack`,
//!   `remote`, `submodule update`/`add`, `submodule--helper update`/`add`/`clone`) reads only when
//!   its transport stands between it and the helper: otherwise something other than git's own
//!   transfer asked (a hook script calling the helper directly) and may well push. Any other
//!   command, or a git command line this module cannot parse, is [`Operation::Unknown`].
//! - `git credential fill`, run by programs that ask git for credentials (git-lfs, the glue of
//!   docs/clients.md), decides nothing and marks the request as asked through git.
//! - git-lfs decides for itself: `pre-push` and `push` write; `filter-process`, `smudge`,
//!   `fetch`, `pull` and `checkout` read, when they asked through `git credential fill` (as
//!   git-lfs does). Any other git-lfs command is [`Operation::Unknown`].
//! - cargo only ever fetches git dependencies (it publishes over HTTP, never with git): it reads
//!   when it asked itself, through `sh -c` (as libgit2 runs helpers) and git's own credential
//!   commands and nothing else; a build
//!   script or any other program in between may push, so that is [`Operation::Unknown`]. Other
//!   programs (gix, which runs helpers as git does, and any libgit2 program) are
//!   [`Operation::Unknown`]: they can push.

use super::{Detection, Evidence, Operation};

/// The most characters of one process's label (its program or git command) kept as evidence.
const LABEL_CHARS: usize = 48;

/// What a git command does with a remote, as far as its name (and first word) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads when git's transport asked on its behalf.
    Read,
    /// Reads when it asked through `git credential fill` (git-lfs).
    ReadThroughFill,
    /// Reads when it asked itself (cargo): no other program stands in between.
    ReadDirectly,
    Write,
    Other,
}

/// How one process bears on the decision.
enum Role {
    /// Passes the request along: our own `git credential-<name>` wrapper.
    Passes,
    /// A shell, which passes the request along (libgit2 runs every helper through `sh -c`).
    Shell,
    /// Passes the request along, but is a program of its own (a build script, an interpreter)
    /// that may do anything with what it gets.
    Foreign,
    /// `git credential fill`: asks the helpers for a program above it.
    Fill,
    /// A transport: runs for fetches and pushes alike, on behalf of the command above it.
    Transport,
    /// A user-level git command (or git with options this module cannot parse: `None`).
    Decides(Option<String>, Kind),
}

/// The decision as it is built, one process at a time from the nearest outward, so that a walk
/// of `/proc` can stop reading as soon as a command decides.
#[derive(Debug, Default)]
pub(super) struct Chain {
    labels: Vec<String>,
    via_transport: bool,
    via_fill: bool,
    via_foreign: bool,
    via_shell: bool,
}

impl Chain {
    /// Takes the next process outward; returns the detection once a command decides.
    pub(super) fn push<S: AsRef<str>>(&mut self, argv: &[S]) -> Option<Detection> {
        let (label, role) = process(argv);
        self.labels.push(label);
        let (command, kind) = match role {
            Role::Passes => return None,
            Role::Shell => {
                self.via_shell = true;
                return None;
            }
            Role::Foreign => {
                self.via_foreign = true;
                return None;
            }
            Role::Fill => {
                self.via_fill = true;
                return None;
            }
            Role::Transport => {
                self.via_transport = true;
                return None;
            }
            Role::Decides(command, kind) => (command, kind),
        };
        let operation = decide(
            kind,
            Via {
                transport: self.via_transport,
                fill: self.via_fill,
                foreign: self.via_foreign,
                shell: self.via_shell,
            },
        );
        if kind == Kind::ReadDirectly && operation == Operation::Unknown {
            // cargo that did not ask itself is just a program that ran the one asking.
            self.via_foreign = true;
            return None;
        }
        Some(Detection {
            operation,
            evidence: Evidence::Ancestry(std::mem::take(&mut self.labels)),
            command,
        })
    }

    /// The detection when no process decided.
    pub(super) fn finish(self) -> Detection {
        Detection {
            operation: Operation::Unknown,
            evidence: Evidence::NotGit,
            command: None,
        }
    }
}

/// Classifies the argv lists of a process's ancestors, nearest first (the asking process's parent,
/// or the asking process itself, then outward). Only the first decisive git command counts; pass
/// no more than [`MAX_ANCESTORS`](super::MAX_ANCESTORS) entries to match what [`detect`](super::detect) reads.
pub fn classify_chain<S: AsRef<str>>(chain: &[Vec<S>]) -> Detection {
    let mut walk = Chain::default();
    for argv in chain {
        if let Some(detection) = walk.push(argv) {
            return detection;
        }
    }
    walk.finish()
}

/// Classifies a `GIT_TRACE2_PARENT_NAME` value such as `pull/fetch/_run_dashed_/remote-curl`
/// (the names of the git processes above, outermost first). `None` when it names no command
/// (empty, or only transports and dashed wrappers): then the caller looks at the processes.
pub fn classify_trace2(value: &str) -> Option<Detection> {
    let mut via_transport = false;
    for name in value.rsplit('/') {
        // `_run_dashed_` is a git that ran `git-<cmd>`; `<cmd>` names itself further in.
        // `credential` is `git credential fill`, run for a program git does not name (git-lfs).
        if name.is_empty()
            || name == "_run_dashed_"
            || name == "credential"
            || name.starts_with("credential-")
        {
            continue;
        }
        if is_transport(name) {
            via_transport = true;
            continue;
        }
        // trace2 names carry no arguments: `submodule--helper` could be `foreach`.
        let kind = match name {
            "submodule" | "submodule--helper" => Kind::Other,
            _ => kind(name, &[] as &[&str]),
        };
        let via = Via {
            transport: via_transport,
            ..Via::default()
        };
        return Some(Detection {
            operation: decide(kind, via),
            evidence: Evidence::Trace2(value.to_owned()),
            command: Some(name.to_owned()),
        });
    }
    None
}

/// What stood between the helper and the command that decides.
#[derive(Debug, Clone, Copy, Default)]
struct Via {
    /// git's transport.
    transport: bool,
    /// `git credential fill`.
    fill: bool,
    /// A program that is neither git nor a shell.
    foreign: bool,
    /// A shell.
    shell: bool,
}

/// A read counts only when it asked the way that command asks: see the module's rules.
fn decide(kind: Kind, via: Via) -> Operation {
    match kind {
        Kind::Write => Operation::Write,
        Kind::Read if via.transport => Operation::Read,
        Kind::ReadThroughFill if via.fill => Operation::Read,
        // libgit2 runs helpers (and `git credential fill`) through `sh -c`: a process cargo ran
        // itself without one (a test binary under `cargo test`) is not cargo's fetch.
        Kind::ReadDirectly if via.shell && !via.foreign => Operation::Read,
        Kind::Read | Kind::ReadThroughFill | Kind::ReadDirectly | Kind::Other => Operation::Unknown,
    }
}

/// Whether `word` names a command that reads without a sub-command (for `describe`).
pub(super) fn is_read_command(word: &str) -> bool {
    kind(word, &["update"]) == Kind::Read
}

/// A git process that only moves objects for the command above it.
fn is_transport(word: &str) -> bool {
    word.starts_with("remote-") || word == "http-fetch"
}

/// What `git <word> <rest...>` does with a remote.
fn kind<S: AsRef<str>>(word: &str, rest: &[S]) -> Kind {
    match word {
        "push" | "send-pack" | "http-push" => Kind::Write,
        // No `git remote` sub-command sends anything: update, show, prune, set-head and add -f
        // only fetch or list refs.
        "clone" | "fetch" | "pull" | "ls-remote" | "fetch-pack" | "remote" => Kind::Read,
        // git-lfs, as `git-lfs <sub>` or `git lfs <sub>`.
        "lfs" => match sub_command(rest) {
            Some("pre-push" | "push") => Kind::Write,
            Some("filter-process" | "smudge" | "fetch" | "pull" | "checkout") => {
                Kind::ReadThroughFill
            }
            _ => Kind::Other,
        },
        "submodule" | "submodule--helper" => match sub_command(rest) {
            Some("update" | "add" | "clone") => Kind::Read,
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// The first word that is not an option (`git submodule --quiet update` → `update`).
fn sub_command<S: AsRef<str>>(rest: &[S]) -> Option<&str> {
    rest.iter()
        .map(AsRef::as_ref)
        .find(|arg| !arg.starts_with('-'))
}

/// Git's own sub-command words worth showing after the command (never a user's argument).
const SHOWN_SUB_COMMANDS: &[&str] = &[
    "update",
    "add",
    "clone",
    "init",
    "foreach",
    "sync",
    "status",
    "deinit",
    "absorbgitdirs",
    "show",
    "prune",
    "set-head",
    "set-url",
    "get-url",
    "rename",
    "remove",
    "rm",
    // git-lfs's.
    "pre-push",
    "push",
    "filter-process",
    "smudge",
    "fetch",
    "pull",
    "checkout",
];

/// A short label for the evidence and the process's role. Labels hold program names and git's own
/// words only, never arguments (a URL or a `-c http.extraHeader=...` may hold a secret).
fn process<S: AsRef<str>>(argv: &[S]) -> (String, Role) {
    let Some(program) = argv.first().map(AsRef::as_ref) else {
        return ("?".to_owned(), Role::Passes);
    };
    let name = basename(program);
    let (label, word, rest) = if name == "git" {
        let args = &argv[1..];
        match global_options_end(args) {
            Some(at) => (
                format!("git {}", args[at].as_ref()),
                args[at].as_ref(),
                &args[at + 1..],
            ),
            None => return ("git".to_owned(), Role::Decides(None, Kind::Other)),
        }
    } else if let Some(word) = name.strip_prefix("git-").filter(|w| !w.is_empty()) {
        (name.to_owned(), word, &argv[1..])
    } else if let Some(script) = git_script(name, argv) {
        // `/bin/sh /usr/lib/git-core/git-submodule update`: git's shell-script commands.
        let word = &script["git-".len()..];
        (script.to_owned(), word, &argv[2..])
    } else {
        // A process that set its title (`sshd: runner@pts/0`) has it all in argv[0].
        let first = program.split_whitespace().next().unwrap_or("");
        let mut label = Some(basename(first))
            .filter(|b| !b.is_empty())
            .unwrap_or("?")
            .to_owned();
        if argv.get(1).map(AsRef::as_ref) == Some("-c") {
            label.push_str(" -c");
        }
        let role = match basename(first) {
            "cargo" => Role::Decides(Some("cargo".to_owned()), Kind::ReadDirectly),
            shell if SHELLS.contains(&shell) => Role::Shell,
            _ => Role::Foreign,
        };
        return (shown(&label), role);
    };
    if is_transport(word) {
        return (shown(&label), Role::Transport);
    }
    if word.starts_with("credential-") {
        return (shown(&label), Role::Passes);
    }
    if word == "credential" {
        return (shown(&label), Role::Fill);
    }
    let kind = kind(word, rest);
    let mut label = label;
    if matches!(word, "submodule" | "submodule--helper" | "remote" | "lfs")
        && let Some(sub) = sub_command(rest).filter(|s| SHOWN_SUB_COMMANDS.contains(s))
    {
        label.push(' ');
        label.push_str(sub);
    }
    (shown(&label), Role::Decides(Some(word.to_owned()), kind))
}

/// The shells that may run one of git's `git-<cmd>` scripts by name.
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"];

/// Whether a process whose kernel name (`comm`, at most 15 bytes) is `comm` could decide or be
/// git's transport, so that its arguments must be read: git's programs and the shells that run
/// git's scripts. Any other process passes whatever its arguments say.
pub(super) fn needs_arguments(comm: &str) -> bool {
    comm.starts_with("git") || SHELLS.contains(&comm)
}

/// The script's name when `argv` is a shell running one of git's `git-<cmd>` scripts.
fn git_script<'a, S: AsRef<str>>(name: &str, argv: &'a [S]) -> Option<&'a str> {
    if !SHELLS.contains(&name) {
        return None;
    }
    let script = argv.get(1)?.as_ref();
    if script.starts_with('-') {
        return None;
    }
    Some(basename(script)).filter(|base| base.len() > "git-".len() && base.starts_with("git-"))
}

/// The index of the sub-command after git's global options (git.c's `handle_options`), or `None`
/// when there is none or an option git would refuse or exit on (`--version`, `--exec-path`
/// alone, `--list-cmds=...`): such a git runs no remote command.
fn global_options_end<S: AsRef<str>>(args: &[S]) -> Option<usize> {
    const WITH_VALUE: &[&str] = &[
        "-C",
        "-c",
        "--git-dir",
        "--work-tree",
        "--namespace",
        "--super-prefix",
        "--config-env",
        "--shallow-file",
        "--attr-source",
    ];
    const FLAGS: &[&str] = &[
        "-p",
        "--paginate",
        "-P",
        "--no-pager",
        "--no-replace-objects",
        "--bare",
        "--literal-pathspecs",
        "--no-literal-pathspecs",
        "--glob-pathspecs",
        "--noglob-pathspecs",
        "--icase-pathspecs",
        "--no-optional-locks",
        "--no-advice",
        "--no-lazy-fetch",
    ];
    const WITH_EQUALS: &[&str] = &[
        "--git-dir=",
        "--work-tree=",
        "--namespace=",
        "--super-prefix=",
        "--config-env=",
        "--attr-source=",
        "--exec-path=",
    ];
    let mut at = 0;
    while let Some(arg) = args.get(at).map(AsRef::as_ref) {
        if !arg.starts_with('-') {
            return Some(at);
        }
        if WITH_VALUE.contains(&arg) {
            at += 2;
        } else if FLAGS.contains(&arg) || WITH_EQUALS.iter().any(|p| arg.starts_with(p)) {
            at += 1;
        } else {
            return None;
        }
    }
    None
}

/// The part after the last `/`.
pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `text` with control characters escaped, cut to [`LABEL_CHARS`] characters.
fn shown(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(LABEL_CHARS) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::MAX_ANCESTORS;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    fn chain(lines: &[&str]) -> Detection {
        classify_chain(&lines.iter().map(|l| argv(l)).collect::<Vec<_>>())
    }

    const HELPER: &str = "/bin/sh -c /usr/bin/git-credential-codestorage get";
    const TRANSPORT: [&str; 2] = [
        "/usr/lib/git-core/git-remote-https origin https://h/x.git",
        "/usr/lib/git-core/git remote-https origin https://h/x.git",
    ];

    /// The usual chain: the helper's shell, the transport pair, then `user`.
    fn through_transport(user: &str) -> Detection {
        chain(&[HELPER, TRANSPORT[0], TRANSPORT[1], user])
    }

    #[test]
    fn reads_and_writes_through_a_transport() {
        for (user, operation, command) in [
            ("git clone https://h/x.git", Operation::Read, "clone"),
            ("git fetch origin", Operation::Read, "fetch"),
            ("git pull --ff-only", Operation::Read, "pull"),
            ("git ls-remote origin", Operation::Read, "ls-remote"),
            ("git remote update", Operation::Read, "remote"),
            ("git remote show origin", Operation::Read, "remote"),
            (
                "git fetch-pack https://h/x.git",
                Operation::Read,
                "fetch-pack",
            ),
            ("git push origin main", Operation::Write, "push"),
            ("git push origin v1", Operation::Write, "push"),
            (
                "git send-pack https://h/x.git",
                Operation::Write,
                "send-pack",
            ),
            ("git submodule update --init", Operation::Read, "submodule"),
            (
                "git submodule --quiet add https://h/x.git",
                Operation::Read,
                "submodule",
            ),
            (
                "git submodule--helper clone --path lib",
                Operation::Read,
                "submodule--helper",
            ),
            (
                "git submodule--helper update --init",
                Operation::Read,
                "submodule--helper",
            ),
            ("/usr/bin/git-fetch origin", Operation::Read, "fetch"),
            ("/usr/bin/git-push origin", Operation::Write, "push"),
        ] {
            let detection = through_transport(user);
            assert_eq!(detection.operation, operation, "{user}");
            assert_eq!(detection.command.as_deref(), Some(command), "{user}");
        }
    }

    #[test]
    fn anything_else_is_unknown() {
        for user in [
            "git p origin main",
            "git submodule foreach git push",
            "git submodule--helper foreach --recursive",
            "git submodule",
            "git maintenance run",
            "git rebase -x make",
            "/usr/bin/git-upload-pack /srv/x.git",
            "git-lfs smudge big.bin",
            "git-lfs env",
        ] {
            let detection = through_transport(user);
            assert_eq!(detection.operation, Operation::Unknown, "{user}");
            assert!(
                matches!(detection.evidence, Evidence::Ancestry(_)),
                "{user}: {detection:?}"
            );
        }
    }

    #[test]
    fn git_lfs_reads_through_git_credential_fill_and_writes_on_push() {
        const FILL: &str = "git credential fill";
        for (line, operation, label) in [
            (
                "git-lfs pre-push origin https://h/x.git",
                Operation::Write,
                "git-lfs pre-push",
            ),
            ("git lfs push origin main", Operation::Write, "git lfs push"),
            (
                "git-lfs filter-process",
                Operation::Read,
                "git-lfs filter-process",
            ),
            ("git-lfs smudge big.bin", Operation::Read, "git-lfs smudge"),
            ("git-lfs fetch origin", Operation::Read, "git-lfs fetch"),
            ("git lfs pull", Operation::Read, "git lfs pull"),
            ("git-lfs checkout", Operation::Read, "git-lfs checkout"),
            ("git-lfs env", Operation::Unknown, "git-lfs"),
        ] {
            let detection = chain(&[HELPER, FILL, line, "git clone https://h/x.git"]);
            assert_eq!(detection.operation, operation, "{line}");
            assert_eq!(detection.command.as_deref(), Some("lfs"), "{line}");
            let Evidence::Ancestry(labels) = &detection.evidence else {
                panic!("{detection:?}");
            };
            assert_eq!(labels.last().map(String::as_str), Some(label), "{line}");
        }
        // A read command that did not ask through git credential fill may be anything.
        assert_eq!(
            chain(&[HELPER, "git-lfs filter-process"]).operation,
            Operation::Unknown
        );
        // git credential fill alone, or under a command that reads without the transport,
        // decides nothing more than before.
        assert_eq!(chain(&[HELPER, FILL]).operation, Operation::Unknown);
        assert_eq!(
            chain(&[HELPER, FILL, "/bin/sh hook", "git clone https://h/x.git"]).operation,
            Operation::Unknown
        );
        assert_eq!(
            chain(&[HELPER, FILL, "git push origin main"]).operation,
            Operation::Write
        );
        let traced = classify_trace2("push/credential").unwrap();
        assert_eq!(traced.operation, Operation::Write);
        assert_eq!(classify_trace2("credential"), None);
    }

    #[test]
    fn cargo_reads_only_when_it_asked_itself() {
        for asked in [
            // libgit2 running `git credential fill` (the helper's value is a path).
            vec![
                HELPER,
                "git credential fill",
                "sh -c git credential fill",
                "cargo",
            ],
            // libgit2 running `git credential-codestorage get` (the helper is on PATH).
            vec![
                HELPER,
                "git credential-codestorage get",
                "sh -c git credential-codestorage get",
                "/home/dev/.cargo/bin/cargo",
            ],
        ] {
            let detection = chain(&asked);
            assert_eq!(detection.operation, Operation::Read, "{asked:?}");
            assert_eq!(detection.command.as_deref(), Some("cargo"));
        }
        // A build script (or any program cargo runs) may push with what it gets.
        let script = chain(&[HELPER, "git credential fill", "build-script-build", "cargo"]);
        assert_eq!(script.operation, Operation::Unknown);
        // A git push under cargo is a push; gix, like any libgit2 program, may push.
        assert_eq!(
            through_transport("git push origin main").operation,
            Operation::Write
        );
        assert_eq!(
            chain(&[HELPER, "gix clone https://h/x.git"]).operation,
            Operation::Unknown
        );
        assert_eq!(
            chain(&[HELPER, "python3 glue.py"]).operation,
            Operation::Unknown
        );
    }

    #[test]
    fn global_options_are_skipped_with_their_values() {
        for user in [
            "git -C /work -c push.default=simple push",
            "git -c alias.fetch=x push",
            "git -C fetch push",
            "git --git-dir /x/.git --work-tree /x push",
            "git --git-dir=/x/.git --work-tree=/x push",
            "git --namespace fetch push",
            "git --namespace=fetch push",
            "git --exec-path=/opt/git push",
            "git -p --paginate -P --no-pager --bare push",
            "git --literal-pathspecs --no-literal-pathspecs --glob-pathspecs push",
            "git --noglob-pathspecs --icase-pathspecs --no-optional-locks push",
            "git --no-replace-objects --no-advice --no-lazy-fetch push",
            "git --config-env core.x=FETCH push",
            "git --config-env=core.x=FETCH push",
            "git --super-prefix fetch/ push",
            "git --shallow-file fetch push",
            "git --attr-source fetch push",
            "git --attr-source=HEAD push",
        ] {
            let detection = through_transport(user);
            assert_eq!(detection.operation, Operation::Write, "{user}");
            assert_eq!(detection.command.as_deref(), Some("push"), "{user}");
        }
    }

    #[test]
    fn options_git_refuses_or_exits_on_decide_unknown() {
        for user in [
            "git",
            "git -C",
            "git -c",
            "git --git-dir",
            "git --exec-path fetch",
            "git --version fetch",
            "git --help fetch",
            "git -h fetch",
            "git --list-cmds=main fetch",
            "git --frobnicate fetch",
            "git -Cdir fetch",
            "git -- fetch",
        ] {
            let detection = through_transport(user);
            assert_eq!(detection.operation, Operation::Unknown, "{user}");
            assert_eq!(detection.command, None, "{user}");
        }
    }

    #[test]
    fn the_nearest_decisive_command_wins() {
        // A push's pre-push hook fetching: the credential is for the fetch.
        let fetch_in_push_hook = chain(&[
            HELPER,
            TRANSPORT[0],
            TRANSPORT[1],
            "git fetch -q origin",
            "/bin/sh .git/hooks/pre-push origin https://h/x.git",
            "git push origin main",
        ]);
        assert_eq!(fetch_in_push_hook.operation, Operation::Read);
        // A pull's post-merge hook pushing.
        let push_in_pull_hook = chain(&[
            HELPER,
            TRANSPORT[0],
            TRANSPORT[1],
            "git push origin main",
            "/bin/sh .git/hooks/post-merge 0",
            "git merge FETCH_HEAD",
            "git pull",
        ]);
        assert_eq!(push_in_pull_hook.operation, Operation::Write);
        // git credential fill under a fetch is not the fetch's transport: unknown, not read.
        let fill_under_fetch = chain(&[HELPER, "git credential fill", "git fetch"]);
        assert_eq!(fill_under_fetch.operation, Operation::Unknown);
        assert_eq!(fill_under_fetch.command.as_deref(), Some("fetch"));
    }

    #[test]
    fn a_read_command_without_its_transport_is_unknown_but_a_write_is_still_a_write() {
        // A hook script of a clone calling the helper itself may be about to push anything.
        let script_under_clone = chain(&[
            "/bin/sh .git/hooks/post-checkout",
            "git clone https://h/x.git",
        ]);
        assert_eq!(script_under_clone.operation, Operation::Unknown);
        assert_eq!(script_under_clone.command.as_deref(), Some("clone"));
        let script_under_push = chain(&["/bin/sh .git/hooks/pre-push", "git push"]);
        assert_eq!(script_under_push.operation, Operation::Write);
        // Dumb HTTP: http-push asks for itself, http-fetch is the fetch's transport.
        let dumb_push = chain(&[
            HELPER,
            "git http-push --helper-status",
            TRANSPORT[0],
            "git push",
        ]);
        assert_eq!(dumb_push.operation, Operation::Write);
        let dumb_fetch = chain(&[HELPER, "git http-fetch -a", TRANSPORT[0], "git fetch"]);
        assert_eq!(dumb_fetch.operation, Operation::Read);
    }

    #[test]
    fn wrappers_shells_and_the_helpers_own_git_wrapper_pass_through() {
        let detection = chain(&[
            "git credential-codestorage get",
            "/bin/sh -c git credential-codestorage get",
            TRANSPORT[0],
            TRANSPORT[1],
            "/usr/lib/git-core/git fetch --update-head-ok",
            "git pull",
        ]);
        assert_eq!(detection.operation, Operation::Read);
        assert_eq!(detection.command.as_deref(), Some("fetch"));
        assert_eq!(
            detection.evidence,
            Evidence::Ancestry(
                [
                    "git credential-codestorage",
                    "sh -c",
                    "git-remote-https",
                    "git remote-https",
                    "git fetch"
                ]
                .map(str::to_owned)
                .to_vec()
            )
        );
        // git's shell scripts run as `sh /path/git-<cmd> ...`.
        let script = chain(&[
            HELPER,
            TRANSPORT[0],
            "/bin/sh /usr/lib/git-core/git-submodule update --init",
        ]);
        assert_eq!(script.operation, Operation::Read);
        assert_eq!(script.command.as_deref(), Some("submodule"));
        // ... but `sh -c 'git-foo'` is a shell, not a script.
        let shell = chain(&["sh -c git-fetch", "bash"]);
        assert_eq!(shell.evidence, Evidence::NotGit);
        let titled = classify_chain(&[vec!["sshd: runner@pts/0"], vec!["git", "p"]]);
        assert_eq!(
            titled.evidence,
            Evidence::Ancestry(vec!["sshd:".into(), "git p".into()])
        );
    }

    #[test]
    fn no_git_command_is_not_git() {
        for lines in [
            &[][..],
            &["/bin/bash ./ci.sh", "/usr/bin/make deploy", "sshd: runner"][..],
            &[""][..],
            // A transport alone is not a command.
            &[HELPER, TRANSPORT[0], "bash"][..],
        ] {
            let detection = chain(lines);
            assert_eq!(detection.operation, Operation::Unknown, "{lines:?}");
            assert_eq!(detection.evidence, Evidence::NotGit, "{lines:?}");
            assert_eq!(detection.command, None);
        }
    }

    #[test]
    fn labels_never_hold_arguments_and_escape_control_characters() {
        let detection = chain(&[
            "/bin/sh -c helper get --token=SECRET1",
            "/usr/lib/git-core/git-remote-https origin https://t:SECRET2@h/x.git",
            "git -c http.extraHeader=SECRET3 clone https://t:SECRET4@h/x.git",
        ]);
        let Evidence::Ancestry(labels) = &detection.evidence else {
            panic!("{detection:?}");
        };
        assert!(!labels.join(" ").contains("SECRET"), "{labels:?}");
        assert!(!detection.describe().contains("SECRET"));
        let odd = classify_chain(&[vec!["/tmp/evil\u{1b}[31m", "x"], vec!["git", "p\r\n"]]);
        let shown = odd.describe();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("evil\\u{1b}[31m"), "{shown}");
        assert!(shown.contains("git p\\r\\n"), "{shown}");
        let long = "x".repeat(500);
        let long = classify_chain(&[vec![long.as_str()]]);
        assert_eq!(long.evidence, Evidence::NotGit);
        let long_git = classify_chain(&[vec!["git".to_owned(), "y".repeat(500)]]);
        let Evidence::Ancestry(labels) = &long_git.evidence else {
            panic!("{long_git:?}");
        };
        assert!(labels[0].chars().count() <= LABEL_CHARS + 3, "{labels:?}");
    }

    #[test]
    fn trace2_names_decide_like_the_processes_do() {
        for (value, operation, command) in [
            ("push/_run_dashed_/remote-curl", Operation::Write, "push"),
            (
                "push/_run_dashed_/remote-curl/_run_dashed_",
                Operation::Write,
                "push",
            ),
            (
                "pull/fetch/_run_dashed_/remote-curl",
                Operation::Read,
                "fetch",
            ),
            ("clone/_run_dashed_/remote-curl", Operation::Read, "clone"),
            (
                "remote/fetch/_run_dashed_/remote-curl",
                Operation::Read,
                "fetch",
            ),
            (
                "ls-remote/_run_dashed_/remote-curl",
                Operation::Read,
                "ls-remote",
            ),
            ("remote/_run_dashed_/remote-curl", Operation::Read, "remote"),
            (
                "_run_dashed_/_run_git_alias_/push/_run_dashed_/remote-curl",
                Operation::Write,
                "push",
            ),
            (
                "push/fetch/_run_dashed_/remote-curl",
                Operation::Read,
                "fetch",
            ),
            (
                "pull/merge/push/_run_dashed_/remote-curl",
                Operation::Write,
                "push",
            ),
            (
                "push/_run_dashed_/remote-curl/http-push",
                Operation::Write,
                "http-push",
            ),
            (
                "fetch/_run_dashed_/remote-curl/http-fetch",
                Operation::Read,
                "fetch",
            ),
            // A hook under a push calling the helper itself: still the push's.
            ("push", Operation::Write, "push"),
            // No transport between: not proven a fetch.
            ("clone", Operation::Unknown, "clone"),
            ("fetch/_run_dashed_", Operation::Unknown, "fetch"),
            // git credential fill passes: a push's (hook's) is still the push's.
            ("push/credential", Operation::Write, "push"),
            ("fetch/credential", Operation::Unknown, "fetch"),
            (
                "_run_dashed_/submodule--helper/submodule--helper/_run_dashed_/remote-curl",
                Operation::Unknown,
                "submodule--helper",
            ),
            (
                "_run_dashed_/_run_shell_alias_",
                Operation::Unknown,
                "_run_shell_alias_",
            ),
        ] {
            let detection = classify_trace2(value).expect(value);
            assert_eq!(detection.operation, operation, "{value}");
            assert_eq!(detection.command.as_deref(), Some(command), "{value}");
            assert_eq!(detection.evidence, Evidence::Trace2(value.to_owned()));
        }
    }

    #[test]
    fn trace2_names_without_a_git_command_say_nothing() {
        for value in [
            "",
            "/",
            "credential",
            "_run_dashed_",
            "_run_dashed_/remote-curl",
            "remote-curl/_run_dashed_//",
        ] {
            assert_eq!(classify_trace2(value), None, "{value:?}");
        }
    }

    /// One credential request recorded by `tests/fixtures/ancestry/capture.sh`.
    struct Recorded {
        file: String,
        expect: Vec<String>,
        trace2: Option<String>,
        chain: Vec<Vec<String>>,
    }

    /// Every request in the recorded fixtures (real git 2.47 and 2.39).
    fn recorded() -> Vec<Recorded> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ancestry");
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "txt") {
                continue;
            }
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if let Some(expect) = line.strip_prefix("# expect: ") {
                    all.push(Recorded {
                        file: file.clone(),
                        expect: expect.split(' ').map(str::to_owned).collect(),
                        trace2: None,
                        chain: Vec::new(),
                    });
                } else if let Some(value) = line.strip_prefix("# trace2: ") {
                    let last = all.last_mut().unwrap();
                    last.trace2 = (value != "<unset>").then(|| value.to_owned());
                } else if !line.starts_with('#') {
                    let last = all.last_mut().unwrap();
                    last.chain
                        .push(line.split('\t').map(str::to_owned).collect());
                }
            }
        }
        all.sort_by(|a, b| a.file.cmp(&b.file));
        all
    }

    fn check(recorded: &Recorded, detection: &Detection, what: &str) {
        let at = format!("{} ({what}): {}", recorded.file, detection.describe());
        let operation = match recorded.expect[0].as_str() {
            "read" => Operation::Read,
            "write" => Operation::Write,
            _ => Operation::Unknown,
        };
        assert_eq!(detection.operation, operation, "{at}");
        assert_eq!(
            detection.command.as_deref(),
            recorded.expect.get(1).map(String::as_str),
            "{at}"
        );
    }

    #[test]
    fn every_recorded_chain_is_classified_as_recorded() {
        let all = recorded();
        // Both git versions, every scenario: a missing fixture must not pass silently.
        assert_eq!(
            all.len(),
            44,
            "{:?}",
            all.iter().map(|r| &r.file).collect::<Vec<_>>()
        );
        for version in ["2.47", "2.39"] {
            for name in [
                "clone",
                "fetch",
                "pull",
                "ls-remote",
                "push",
                "push-alias",
                "push-options",
                "push-git-dir",
                "submodule-update",
                "fetch-all",
                "push-tag",
                "remote-update",
                "credential-fill",
                "direct-script",
                "push-hook-fetch",
            ] {
                let file = format!("{version}-{name}.txt");
                assert!(all.iter().any(|r| r.file == file), "{file} missing");
            }
        }
        for recorded in &all {
            // As `get` sees it: from its parent, as far as the walk reads.
            let seen = &recorded.chain[..recorded.chain.len().min(MAX_ANCESTORS)];
            let detection = classify_chain(seen);
            check(recorded, &detection, "ancestry");
            if recorded.expect[0] == "not-git" {
                assert_eq!(detection.evidence, Evidence::NotGit, "{}", recorded.file);
            } else {
                let Evidence::Ancestry(labels) = &detection.evidence else {
                    panic!("{}: {detection:?}", recorded.file);
                };
                assert!(labels.len() <= MAX_ANCESTORS);
            }
            // As a broker sees it: from the helper process itself.
            let mut from_helper = vec![vec![
                "/usr/local/bin/git-credential-codestorage".to_owned(),
                "get".to_owned(),
            ]];
            from_helper.extend(seen.iter().cloned());
            check(recorded, &classify_chain(&from_helper), "from the helper");
            // As trace2 names it, whenever git set it.
            // (`git credential fill` alone names no command: trace2 leaves it to the processes.)
            match recorded.trace2.as_deref().and_then(classify_trace2) {
                Some(traced) => check(recorded, &traced, "trace2"),
                None => assert_eq!(recorded.expect[0], "not-git", "{}", recorded.file),
            }
        }
    }

    #[test]
    fn a_command_beyond_the_bound_is_not_seen() {
        let all = recorded();
        let pull = all.iter().find(|r| r.file == "2.47-pull.txt").unwrap();
        // The `git fetch` that decides is the 4th ancestor; three shells more put it out of reach.
        let mut deep = vec![vec!["sh".to_owned()]; 3];
        deep.extend(pull.chain.iter().cloned());
        assert_eq!(
            classify_chain(&deep[..MAX_ANCESTORS]).evidence,
            Evidence::NotGit
        );
        assert_eq!(
            classify_chain(&deep[..MAX_ANCESTORS + 1]).operation,
            Operation::Read
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Words that matter to the rules, and anything else.
        fn word() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => prop::sample::select(vec![
                    "git", "/usr/lib/git-core/git", "git-remote-https", "/bin/sh", "sh", "bash",
                    "-c", "-C", "--git-dir", "--git-dir=x", "--exec-path", "--bare", "push",
                    "fetch", "clone", "pull", "remote", "update", "remote-https", "http-fetch",
                    "http-push", "credential", "credential-codestorage", "submodule",
                    "submodule--helper", "foreach", "/usr/lib/git-core/git-submodule",
                    "git-push", "git-fetch", "",
                ])
                .prop_map(str::to_owned),
                1 => ".{0,12}",
            ]
        }

        fn chain() -> impl Strategy<Value = Vec<Vec<String>>> {
            prop::collection::vec(prop::collection::vec(word(), 0..6), 0..8)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Never a panic, one printable line, and a read only when a read command decided
            /// after a transport.
            #[test]
            fn reads_need_a_transport_and_every_description_is_one_clean_line(chain in chain()) {
                let detection = classify_chain(&chain);
                let line = detection.describe();
                prop_assert!(!line.chars().any(char::is_control), "{line:?}");
                if let Evidence::Ancestry(labels) = &detection.evidence {
                    prop_assert!(labels.len() <= chain.len());
                }
                if detection.operation == Operation::Read {
                    let Evidence::Ancestry(labels) = &detection.evidence else {
                        panic!("{detection:?}");
                    };
                    let (_, below) = labels.split_last().unwrap();
                    prop_assert!(is_read_command(detection.command.as_deref().unwrap()));
                    prop_assert!(
                        below.iter().any(|l| l.contains("remote-") || l.contains("http-fetch")),
                        "{labels:?}"
                    );
                }
            }

            /// A shell or script between any two processes changes nothing but the evidence.
            #[test]
            fn a_process_that_is_not_git_is_transparent(
                chain in chain(),
                at in any::<prop::sample::Index>(),
                shell in prop::sample::select(vec!["sh -c x", "/bin/bash ./hook", "env", "nice -n 5"]),
            ) {
                let mut longer = chain.clone();
                let at = at.index(chain.len() + 1);
                longer.insert(at, shell.split(' ').map(str::to_owned).collect());
                let (before, after) = (classify_chain(&chain), classify_chain(&longer));
                prop_assert_eq!(before.operation, after.operation);
                prop_assert_eq!(before.command, after.command);
            }
        }
    }
}
