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
    /// One stderr line per decision.
    pub const DEBUG: &[&str] = &["CODESTORAGE_DEBUG", "PIERRE_DEBUG"];
    /// Accept key files others may read.
    pub const ALLOW_INSECURE: &[&str] = &["CODESTORAGE_ALLOW_INSECURE_KEY_PERMISSIONS"];
    /// Seconds (or "30s") a key_command may run.
    pub const KEY_COMMAND_TIMEOUT: &[&str] = &["CODESTORAGE_KEY_COMMAND_TIMEOUT"];
}

/// Whether an environment switch such as `CODESTORAGE_DEBUG` is on.
pub fn flag(env: &dyn Env, names: &[&'static str]) -> bool {
    first_set(env, names).is_some_and(|(_, v)| !matches!(v.as_str(), "0" | "false" | "no" | "off"))
}
