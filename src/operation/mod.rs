//! Whether the git command asking for a credential will fetch or push, so that a token can carry
//! only the scopes it needs without any configuration.
//!
//! git's credential request says nothing about it: the same `get` comes for a clone and a push.
//! Two signals do. The helper's process ancestors show the git processes above it (`sh -c` ←
//! `git-remote-https` ← `git remote-https` ← `git push`), read from `/proc` on Linux; they decide
//! where they can be read. Elsewhere `GIT_TRACE2_PARENT_NAME`, set by git when trace2 is on, names
//! them (`push/_run_dashed_/remote-curl`); anyone can set it, so it is only the fallback. [`classify_chain`] and [`classify_trace2`] are the pure rules (see
//! `classify.rs` for them in full); [`detect`] and [`detect_for_pid`] gather the signals.
//!
//! The answer errs one way only: a push is never taken for a read. Anything uncertain (an
//! unknown command, a read command that did not ask through git's transport, no git at all) is
//! [`Operation::Unknown`], which callers treat as "the configured scopes".

mod ancestry;
mod classify;

use std::fmt;

pub use classify::{classify_chain, classify_trace2};

/// How many ancestors of the asking process are read at most: enough for the helper's shell,
/// git's wrapper for it, the transport pair and the command (and `git fetch` under `git pull`).
pub const MAX_ANCESTORS: usize = 6;

/// What the git command asking for a credential will do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// It only fetches: clone, fetch, pull, ls-remote, `remote update`, `submodule update`.
    Read,
    /// It pushes.
    Write,
    /// It could not be told; use the configured scopes.
    Unknown,
}

impl Operation {
    /// `read`, `write` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which signal decided, for `CODESTORAGE_DEBUG` and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The `GIT_TRACE2_PARENT_NAME` value, as git set it.
    Trace2(String),
    /// The processes looked at, nearest first, ending with the git command that decided; each as
    /// its program name or `git <command>`, never with arguments, control characters escaped.
    Ancestry(Vec<String>),
    /// The processes could not be read, and why.
    Unavailable(&'static str),
    /// No git fetch or push command among the [`MAX_ANCESTORS`] nearest ancestors.
    NotGit,
}

/// The answer, with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// What the command will do.
    pub operation: Operation,
    /// Which signal decided.
    pub evidence: Evidence,
    /// The git command word that decided, e.g. `push` (none when no git command did).
    pub command: Option<String>,
}

/// The most characters of a trace2 value shown by [`Detection::describe`].
const SHOWN_TRACE2_CHARS: usize = 200;

/// The most characters of a command word (an alias may be anything) shown by `describe`.
const SHOWN_COMMAND_CHARS: usize = 48;

impl Detection {
    /// One line for debug output: the operation, the command and the evidence, control
    /// characters escaped, e.g. `read (git fetch) from the process ancestry: sh -c < ...`.
    pub fn describe(&self) -> String {
        let command = self
            .command
            .as_deref()
            .map(|word| {
                let shown: String = word.escape_debug().take(SHOWN_COMMAND_CHARS).collect();
                // cargo is the one program, not a git command, that decides.
                let git = if word == "cargo" { "" } else { "git " };
                format!(" ({git}{shown})")
            })
            .unwrap_or_default();
        let why = match (self.operation, self.command.as_deref()) {
            (Operation::Unknown, Some(word)) if classify::is_read_command(word) => {
                ": it did not ask through git's transport, so it may not be a fetch"
            }
            (Operation::Unknown, Some(_)) => ": neither a fetch nor a push",
            _ => "",
        };
        let operation = self.operation;
        match &self.evidence {
            Evidence::Trace2(value) => {
                let shown: String = value.escape_debug().take(SHOWN_TRACE2_CHARS).collect();
                format!("{operation}{command}{why}, from GIT_TRACE2_PARENT_NAME \"{shown}\"")
            }
            Evidence::Ancestry(labels) if self.command.is_none() => format!(
                "{operation}: git with options this helper does not know, from the process ancestry: {}",
                labels.join(" < ")
            ),
            Evidence::Ancestry(labels) => format!(
                "{operation}{command}{why}, from the process ancestry: {}",
                labels.join(" < ")
            ),
            Evidence::Unavailable(reason) => {
                format!("{operation}: the process ancestry is unavailable: {reason}")
            }
            Evidence::NotGit => format!(
                "{operation}: no git fetch or push among the {MAX_ANCESTORS} nearest ancestor processes"
            ),
        }
    }
}

/// For `get`: decides by this process's ancestors where they can be read and hold a git
/// command; only where they cannot (no `/proc`, or no git near) by `trace2_parent_name` (the
/// `GIT_TRACE2_PARENT_NAME` value, if set and naming a command). Anyone can set the variable by
/// hand: trusted first, it gave a push a read token and a fetch a write token.
pub fn detect(trace2_parent_name: Option<&str>) -> Detection {
    prefer_ancestry(ancestry::from_parent(), trace2_parent_name)
}

/// The ancestry's answer, unless it rests on no git process: then trace2's, if it has one.
fn prefer_ancestry(ancestry: Detection, trace2_parent_name: Option<&str>) -> Detection {
    match ancestry.evidence {
        Evidence::Unavailable(_) | Evidence::NotGit => trace2_parent_name
            .and_then(classify_trace2)
            .unwrap_or(ancestry),
        Evidence::Ancestry(_) | Evidence::Trace2(_) => ancestry,
    }
}

/// `CODESTORAGE_OPERATION` is neither `read` nor `write`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "CODESTORAGE_OPERATION={}: not an operation; use read (a fetch or clone) or write (a push), or unset it",
    crate::log::Shown(.0)
)]
pub struct HintError(pub String);

/// The operation glue code names itself with `CODESTORAGE_OPERATION=read|write` (any case),
/// for programs whose processes say nothing (a libgit2 or JGit program): `None` when unset or
/// empty. A `get` answering itself honours it both ways; a broker may only narrow with it.
pub fn hint(env: &dyn crate::env::Env) -> Result<Option<Operation>, HintError> {
    let Some((_, value)) = crate::env::first_set(env, crate::env::vars::OPERATION) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "read" => Ok(Some(Operation::Read)),
        "write" => Ok(Some(Operation::Write)),
        _ => Err(HintError(value)),
    }
}

/// For a broker: decides by another process and its ancestors (a peer's pid, as `SO_PEERCRED`
/// reports it). The process itself is looked at first, then [`MAX_ANCESTORS`] above it.
pub fn detect_for_pid(pid: u32) -> Detection {
    ancestry::from_pid(pid)
}

/// Whether process ancestry can be read on this machine (for `doctor`), or why not.
pub fn available() -> Result<(), &'static str> {
    ancestry::available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_read_or_write_and_nothing_else() {
        use crate::env::MapEnv;
        let hint_of = |value: &str| hint(&MapEnv::from([("CODESTORAGE_OPERATION", value)]));
        assert_eq!(hint_of("read"), Ok(Some(Operation::Read)));
        assert_eq!(hint_of("WRITE"), Ok(Some(Operation::Write)));
        assert_eq!(hint_of(""), Ok(None));
        assert_eq!(hint(&MapEnv::default()), Ok(None));
        let bad = hint_of("fetch\u{1b}").unwrap_err().to_string();
        assert!(
            bad.contains("use read (a fetch or clone) or write"),
            "{bad}"
        );
        assert!(!bad.contains('\u{1b}'), "{bad}");
    }

    #[test]
    fn describe_names_the_operation_the_command_and_the_evidence() {
        let fetch = classify_trace2("pull/fetch/_run_dashed_/remote-curl").unwrap();
        assert_eq!(
            fetch.describe(),
            "read (git fetch), from GIT_TRACE2_PARENT_NAME \"pull/fetch/_run_dashed_/remote-curl\""
        );
        let push = classify_chain(&[
            vec!["/bin/sh", "-c", "helper get"],
            vec![
                "/usr/lib/git-core/git-remote-https",
                "origin",
                "https://h/x",
            ],
            vec!["git", "-C", "dir", "push", "origin"],
        ]);
        assert_eq!(
            push.describe(),
            "write (git push), from the process ancestry: sh -c < git-remote-https < git push"
        );
        let clone = classify_chain(&[vec!["sh", "hook"], vec!["git", "clone", "u"]]);
        assert_eq!(
            clone.describe(),
            "unknown (git clone): it did not ask through git's transport, so it may not be a fetch, \
             from the process ancestry: sh < git clone"
        );
        let maintenance = classify_chain(&[vec!["git", "maintenance", "run"]]);
        assert_eq!(
            maintenance.describe(),
            "unknown (git maintenance): neither a fetch nor a push, from the process ancestry: git maintenance"
        );
        let cargo = classify_chain(&[
            vec!["git", "credential", "fill"],
            vec!["sh", "-c", "git credential fill"],
            vec!["cargo"],
        ]);
        assert_eq!(
            cargo.describe(),
            "read (cargo), from the process ancestry: git credential < sh -c < cargo"
        );
        let odd = classify_chain(&[vec!["git", "--frobnicate", "push"]]);
        assert_eq!(
            odd.describe(),
            "unknown: git with options this helper does not know, from the process ancestry: git"
        );
        assert_eq!(
            classify_chain::<&str>(&[]).describe(),
            "unknown: no git fetch or push among the 6 nearest ancestor processes"
        );
        let gone = Detection {
            operation: Operation::Unknown,
            evidence: Evidence::Unavailable("no /proc"),
            command: None,
        };
        assert_eq!(
            gone.describe(),
            "unknown: the process ancestry is unavailable: no /proc"
        );
    }

    #[test]
    fn describe_escapes_and_bounds_a_trace2_value() {
        let value = format!("push\n\u{1b}[2J{}", "/x".repeat(1000));
        let detection = Detection {
            operation: Operation::Unknown,
            evidence: Evidence::Trace2(value),
            command: Some(format!("x\r{}", "y".repeat(1000))),
        };
        let line = detection.describe();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("push\\n\\u{1b}[2J"), "{line}");
        assert!(line.contains("(git x\\ryyy"), "{line}");
        assert!(line.len() < 400, "{}", line.len());
    }

    #[test]
    fn the_ancestry_decides_where_it_names_git_and_trace2_only_falls_back() {
        let push = "push/_run_dashed_/remote-curl";
        let fetch_chain = classify_chain(&[
            vec!["sh", "-c", "helper get"],
            vec!["git-remote-https", "origin", "https://h/x"],
            vec!["git", "fetch"],
        ]);
        // A variable set by hand cannot turn a fetch into a push, nor a push into a fetch.
        let decided = prefer_ancestry(fetch_chain.clone(), Some(push));
        assert_eq!(decided, fetch_chain);
        // git credential fill under a fetch: the ancestry names git, so it decides (unknown).
        let unknown = classify_chain(&[vec!["git", "credential", "fill"], vec!["git", "fetch"]]);
        assert!(
            matches!(unknown.evidence, Evidence::Ancestry(_)),
            "{unknown:?}"
        );
        assert_eq!(prefer_ancestry(unknown.clone(), Some(push)), unknown);
        // No git among the ancestors, or no /proc: trace2's answer, if it names a command.
        let not_git = classify_chain::<&str>(&[]);
        let gone = Detection {
            operation: Operation::Unknown,
            evidence: Evidence::Unavailable("no /proc"),
            command: None,
        };
        for fallback in [not_git, gone] {
            let traced = prefer_ancestry(fallback.clone(), Some(push));
            assert_eq!(traced.operation, Operation::Write);
            assert!(matches!(traced.evidence, Evidence::Trace2(_)));
            assert_eq!(
                prefer_ancestry(fallback.clone(), Some("_run_dashed_/remote-curl")),
                fallback
            );
            assert_eq!(prefer_ancestry(fallback.clone(), None), fallback);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_is_available_here_and_a_missing_process_is_reported() {
        assert_eq!(available(), Ok(()));
        let missing = detect_for_pid(u32::MAX);
        assert_eq!(missing.operation, Operation::Unknown);
        assert_eq!(
            missing.evidence,
            Evidence::Unavailable("the process has exited or /proc hides it (hidepid)")
        );
        assert_eq!(detect_for_pid(0).operation, Operation::Unknown);
    }
}
