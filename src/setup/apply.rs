//! Carrying out a [`Plan`]: the backup, the config file, then git's config, each step said.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::SetupError;
use super::plan::Plan;
use crate::fs::{self, Overwrite};
use crate::gitconfig::Git;

/// Makes the changes `plan` lists, in order: a copy of the old config file if the plan keeps
/// one, the new config file (atomically, mode 0600), then git's config. Says each to `out`.
pub fn apply(plan: &Plan, git: &Git, out: &mut dyn Write) -> Result<(), SetupError> {
    let path = plan.path.display();
    let scope = plan.scope_name();
    let mut say =
        |line: std::fmt::Arguments<'_>| writeln!(out, "{line}").map_err(SetupError::Stdout);
    if plan.remove && plan.removal.is_none() {
        say(format_args!(
            "{path} has no [org.{}]; nothing to remove there",
            plan.org
        ))?;
    }
    if plan.is_empty() {
        return say(format_args!(
            "nothing to change: {path} is up to date, and git config {scope} is up to date"
        ));
    }
    if plan.config_changes() {
        if let Some(backup) = &plan.backup {
            let kept = keep_copy(backup, &plan.before)?;
            say(format_args!(
                "kept a copy of the old {path} as {} (mode 600)",
                kept.display()
            ))?;
        }
        fs::write_atomic(&plan.path, plan.after.as_bytes(), 0o600, Overwrite::Replace).map_err(
            |source| SetupError::Write {
                path: plan.path.clone(),
                source,
            },
        )?;
        match &plan.removal {
            Some(removal) => say(format_args!(
                "removed [org.{}] and {} from {path}",
                removal.org,
                match removal.rules.len() {
                    0 => "its settings".to_owned(),
                    1 => "its repository rule".to_owned(),
                    n => format!("its {n} repository rules"),
                }
            ))?,
            None => say(format_args!("wrote {path}"))?,
        }
    } else {
        say(format_args!("{path} is up to date"))?;
    }
    for change in &plan.git {
        git.replace_all(plan.scope, &change.key, &change.to)?;
        if change.to.is_empty() {
            say(format_args!("git config {scope}: removed {}", change.key))?;
        } else {
            let shown: Vec<&str> = change
                .to
                .iter()
                .map(|v| if v.is_empty() { "(reset)" } else { v.as_str() })
                .collect();
            say(format_args!(
                "git config {scope}: {} = {}",
                change.key,
                shown.join(", ")
            ))?;
        }
    }
    for url in &plan.stale_sections {
        git.remove_section_if_empty(plan.scope, url)?;
    }
    if plan.git.is_empty() {
        say(format_args!("git config {scope} is up to date"))?;
    }
    Ok(())
}

/// Writes `text` to `first`, or to `first-2`, `first-3`... if a copy made in the same second is
/// there already: a backup never replaces another.
fn keep_copy(first: &Path, text: &str) -> Result<PathBuf, SetupError> {
    let mut candidate = first.to_owned();
    let mut n = 1;
    loop {
        match fs::write_atomic(&candidate, text.as_bytes(), 0o600, Overwrite::Refuse) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => {
                n += 1;
                let mut name = first.as_os_str().to_owned();
                name.push(format!("-{n}"));
                candidate = PathBuf::from(name);
            }
            Err(source) => {
                return Err(SetupError::Write {
                    path: candidate,
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_never_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("config.toml.bak-1");
        assert_eq!(keep_copy(&first, "one").unwrap(), first);
        let second = keep_copy(&first, "two").unwrap();
        assert_eq!(second, dir.path().join("config.toml.bak-1-2"));
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "two");
    }
}
