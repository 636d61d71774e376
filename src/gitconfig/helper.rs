//! What a `credential.helper` value means to git: the value `setup` writes for this binary, the
//! program a value runs, and which values are this helper's or a store's.

use std::ffi::OsStr;
use std::path::Path;

use super::{BINARY_NAME, HELPER_NAME};
use crate::shell::quote as shell_quote;

/// The `credential.helper` value naming this binary, written by git's own rules
/// (`credential.c`): `codestorage` makes git run `git-credential-codestorage` from PATH, so it is
/// used only when that is this very program; else an absolute path that needs no quoting runs
/// as written; anything else (a space, `~`, non-ASCII) becomes a shell snippet `!'<path>'`, as
/// gh writes it. A quoted path without `!` would make git run `git credential-'<path>'`.
pub fn helper_value(current_exe: &Path, path_var: Option<&OsStr>) -> String {
    let on_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .flat_map(|dir| binary_names().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file());
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if on_path.is_some_and(|found| same(&found, current_exe)) {
        return HELPER_NAME.to_owned();
    }
    // git for Windows runs helpers with its POSIX shell, where `\` is an escape.
    let path = current_exe.to_string_lossy().replace('\\', "/");
    if shell_quote(&path) == path && is_absolute_for_git(&path) {
        path
    } else {
        format!("!{}", shell_quote(&path))
    }
}

/// The names PATH is searched for: with `.exe` on Windows, as git for Windows looks.
fn binary_names() -> impl Iterator<Item = String> {
    std::iter::once(BINARY_NAME.to_owned())
        .chain(cfg!(windows).then(|| format!("{BINARY_NAME}.exe")))
}

/// git's `is_absolute_path`: `/x`, or on Windows also `C:/x` and `C:\x`.
pub(super) fn is_absolute_for_git(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with('/')
        || (bytes.len() > 2
            && bytes[0].is_ascii_alphabetic()
            && bytes[1] == b':'
            && matches!(bytes[2], b'/' | b'\\'))
}

/// What git runs for a `credential.helper` value, read by git's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperCommand {
    /// A bare name: git runs `git credential-<name>` (a `git-credential-<name>` on PATH or in
    /// git's exec path).
    Named(String),
    /// An absolute path, run through the shell as written: its first shell word is the program.
    Absolute(String),
    /// `!snippet`: a shell snippet whose first word is the program.
    Shell(String),
}

impl HelperCommand {
    /// Reads a `credential.helper` value.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        if let Some(snippet) = value.strip_prefix('!') {
            Self::Shell(first_shell_word(snippet))
        } else if is_absolute_for_git(value) {
            Self::Absolute(first_shell_word(value))
        } else {
            Self::Named(value.split_whitespace().next().unwrap_or("").to_owned())
        }
    }
}

/// The first word of a shell command line, with quotes and backslashes taken away.
fn first_shell_word(text: &str) -> String {
    let mut word = String::new();
    let mut chars = text.trim_start().chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => break,
            '\'' => word.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => word.extend(chars.next()),
            c => word.push(c),
        }
    }
    word
}

/// Whether a `credential.helper` value runs this helper.
pub fn is_ours(value: &str) -> bool {
    let value = value.trim();
    value == HELPER_NAME || value.starts_with("codestorage ") || value.contains(BINARY_NAME)
}

/// The kind of a configured helper, for `doctor`'s verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperKind {
    /// This helper.
    Ours,
    /// git-credential-store: writes every credential to a plain-text file.
    Store,
    /// git-credential-cache: keeps credentials in memory, honouring expiry.
    Cache,
    /// Anything else (a keychain, Git Credential Manager, a script).
    Other,
}

/// Classifies a `credential.helper` value.
pub fn helper_kind(value: &str) -> HelperKind {
    let value = value.trim();
    let first = value.split_whitespace().next().unwrap_or("");
    if is_ours(value) {
        HelperKind::Ours
    } else if first == "store" || value.contains("credential-store") {
        HelperKind::Store
    } else if first == "cache" || value.contains("credential-cache") {
        HelperKind::Cache
    } else {
        HelperKind::Other
    }
}
