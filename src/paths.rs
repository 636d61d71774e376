//! Default places: the user's config directory, the directory `keygen` writes keys to, and the
//! key file it makes for an organisation. Every layer that words a fix naming them asks here.

use std::path::{Path, PathBuf};

use crate::env::Env;

/// `codestorage` in the user's config directory: `$XDG_CONFIG_HOME` or `~/.config` on Linux and
/// macOS (where git and gh look too, rather than `~/Library/Application Support`, which is still
/// read when a config is already there), the roaming app-data folder on Windows.
pub fn config_dir(env: &dyn Env) -> Option<PathBuf> {
    let dirs = directories::BaseDirs::new()?;
    if cfg!(target_os = "macos") {
        let xdg = env
            .var("XDG_CONFIG_HOME")
            .filter(|d| Path::new(d).is_absolute())
            .map_or_else(|| dirs.home_dir().join(".config"), PathBuf::from)
            .join("codestorage");
        let old = dirs.config_dir().join("codestorage");
        if !xdg.join("config.toml").exists() && old.join("config.toml").exists() {
            return Some(old);
        }
        return Some(xdg);
    }
    Some(dirs.config_dir().join("codestorage"))
}

/// The directory keys made by `keygen` go to by default: beside the config file, except on
/// Windows, where keys stay in the local (not roaming) app-data folder.
pub fn default_key_dir() -> Option<PathBuf> {
    if cfg!(windows) {
        return directories::BaseDirs::new()
            .map(|dirs| dirs.config_local_dir().join("codestorage"));
    }
    config_dir(&crate::env::ProcessEnv)
}

/// Where `keygen --org ORG` writes `org`'s key: `ORG.pem` in [`default_key_dir`]; `None`
/// without a home directory.
pub fn default_key_file(org: &str) -> Option<PathBuf> {
    default_key_dir().map(|dir| dir.join(format!("{org}.pem")))
}

/// `path` as keygen's `--out` for `org`'s key, or `None` when keygen writes there anyway.
pub fn out_unless_default(org: &str, path: &Path) -> Option<PathBuf> {
    (default_key_file(org).as_deref() != Some(path)).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_is_named_only_where_keygen_would_not_write_anyway() {
        let default = default_key_file("acme").expect("a home directory in the tests");
        assert!(default.ends_with("codestorage/acme.pem"), "{default:?}");
        assert_eq!(out_unless_default("acme", &default), None);
        let elsewhere = Path::new("/keys/acme.pem");
        assert_eq!(
            out_unless_default("acme", elsewhere),
            Some(elsewhere.to_owned())
        );
        assert_eq!(out_unless_default("beta", &default), Some(default.clone()));
    }
}
