//! The process environment behind a trait, so resolution is a pure function that tests can feed.

use std::collections::HashMap;

/// Read access to environment variables.
pub trait Env {
    /// The value of `name`, if it is set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real environment of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(HashMap<String, String>);

impl<const N: usize> From<[(&str, &str); N]> for MapEnv {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl MapEnv {
    /// Sets one variable.
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), value.to_owned());
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Returns the first of `names` that is set to a non-empty value, with its name.
pub fn first_set(env: &dyn Env, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|&name| env.var(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
}

/// Environment variables, with the official TypeScript helper's names as aliases.
pub mod vars {
    /// PEM text of a key for unconfigured `*.code.storage` hosts.
    pub const PRIVATE_KEY: &[&str] = &["CODESTORAGE_PRIVATE_KEY", "PIERRE_PRIVATE_KEY"];
    /// Path of a key file for unconfigured `*.code.storage` hosts.
    pub const PRIVATE_KEY_FILE: &[&str] =
        &["CODESTORAGE_PRIVATE_KEY_FILE", "PIERRE_PRIVATE_KEY_FILE"];
    /// Token lifetime, overriding the config.
    pub const TTL: &[&str] = &["CODESTORAGE_TTL", "PIERRE_TOKEN_TTL"];
    /// Comma-separated scopes, overriding the config.
    pub const SCOPES: &[&str] = &["CODESTORAGE_SCOPES"];
    /// The `sub` claim, overriding the config.
    pub const SUBJECT: &[&str] = &["CODESTORAGE_SUBJECT"];
    /// Narrow tokens to `git:read` for git commands that only read (default on).
    pub const LEAST_PRIVILEGE: &[&str] = &["CODESTORAGE_LEAST_PRIVILEGE"];
    /// What the program asking will do, `read` or `write`: a hint for glue code that git's
    /// signals cannot classify (docs/clients.md).
    pub const OPERATION: &[&str] = &["CODESTORAGE_OPERATION"];
    /// One stderr line per decision.
    pub const DEBUG: &[&str] = &["CODESTORAGE_DEBUG", "PIERRE_DEBUG"];
    /// Accept key files others may read.
    pub const ALLOW_INSECURE: &[&str] = &["CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS"];
    /// Seconds (or "30s") a key_command may run.
    pub const KEY_COMMAND_TIMEOUT: &[&str] = &["CODESTORAGE_KEY_COMMAND_TIMEOUT"];
}

/// A switch variable with a value that is neither on nor off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name}={}: not a switch; use 1, true, yes or on to turn it on, 0, false, no or off to turn it off",
    crate::log::Shown(.value)
)]
pub struct SwitchError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
}

/// Whether an environment switch such as `CODESTORAGE_DEBUG` is on: `None` when unset or empty.
/// Only 1/true/yes/on and 0/false/no/off are read (any case): `False` or ` 0` is not "on".
pub fn switch(env: &dyn Env, names: &[&'static str]) -> Result<Option<bool>, SwitchError> {
    let Some((name, value)) = first_set(env, names) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(SwitchError { name, value }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_only_what_clearly_says_on_or_off() {
        for (value, expected) in [
            ("1", Some(true)),
            ("TRUE", Some(true)),
            ("On", Some(true)),
            ("yes", Some(true)),
            ("0", Some(false)),
            ("False", Some(false)),
            ("OFF", Some(false)),
            ("no", Some(false)),
            ("", None),
        ] {
            let env = MapEnv::from([("CODESTORAGE_DEBUG", value)]);
            assert_eq!(switch(&env, vars::DEBUG), Ok(expected), "{value:?}");
        }
        for bad in [" 0", "2", "enable", "nope"] {
            let env = MapEnv::from([("CODESTORAGE_DEBUG", bad)]);
            let err = switch(&env, vars::DEBUG).unwrap_err().to_string();
            assert!(
                err.starts_with("CODESTORAGE_DEBUG=") && err.contains("not a switch"),
                "{err}"
            );
        }
    }
}
