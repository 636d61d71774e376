//! The sections that route a URL to this helper: what `setup` writes for a host (the wildcard,
//! the exact section libgit2 reads, `useHttpPath`, `proactiveAuth`), and the helpers git would
//! ask for a URL given its config.

use super::helper::is_ours;
use super::urlmatch::{url_matches, url_parts};
use super::{ConfigEntry, Version, command_line};
use crate::host::Host;

/// One git config key and the values `setup` wants it to hold, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The key, e.g. `credential.https://*.code.storage.helper`.
    pub key: String,
    /// Its values.
    pub values: Vec<String>,
}

/// The URL git's credential config uses for `host`: one `https://*.code.storage` entry for every
/// Code Storage organisation, or the host itself (with its port) for a custom domain.
pub fn credential_url(protocol: &str, host: &Host) -> String {
    if protocol == "https" && host.port().is_none() && host.code_storage_org().is_some() {
        "https://*.code.storage".to_owned()
    } else {
        format!("{protocol}://{host}")
    }
}

/// The exact credential URL libgit2 programs (cargo, git2-rs, pygit2 through git2) look up for
/// `host`: they match `credential.https://NAME` by scheme and host name only, with no wildcard
/// and no port, and take no host at all from an IP address (so `None` for one).
pub fn libgit2_url(host: &Host) -> Option<String> {
    let bare = host.name().trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    Some(format!("https://{}", host.name()))
}

/// The git command that turns on `useHttpPath` for `host`, for messages.
pub fn use_http_path_fix(host: &Host) -> String {
    let url = credential_url("https", host);
    // Quoted: zsh refuses an unmatched `*` in `credential.https://*.code.storage...`.
    command_line(&[
        "config",
        "--global",
        &format!("credential.{url}.useHttpPath"),
        "true",
    ])
}

/// The first git that reads `http.<url>.proactiveAuth` (and offers `capability[]=authtype`).
pub const PROACTIVE_AUTH_VERSION: Version = Version(2, 46, 0);

/// The entries that make git ask only this helper for `url`: an empty `helper` that resets the
/// helpers configured before (credential-store would keep our tokens in plain text), then ours,
/// `useHttpPath` so that git sends the repository path, and `http.<url>.proactiveAuth = auto`
/// so that git 2.46+ asks for the token before its first request instead of after a 401 (one
/// round trip fewer; older gits ignore the key).
pub fn wanted(url: &str, helper: &str) -> Vec<Wanted> {
    vec![
        Wanted {
            key: format!("credential.{url}.helper"),
            values: vec![String::new(), helper.to_owned()],
        },
        Wanted {
            key: format!("credential.{url}.useHttpPath"),
            values: vec!["true".to_owned()],
        },
        Wanted {
            key: proactive_auth_key(url),
            values: vec![PROACTIVE_AUTH.to_owned()],
        },
    ]
}

/// The value of `http.<url>.proactiveAuth` that `setup` writes: ask the helper first, and use
/// whatever kind of credential it answers with.
pub const PROACTIVE_AUTH: &str = "auto";

/// The git config key that makes git ask for credentials for `url` before its first request.
pub fn proactive_auth_key(url: &str) -> String {
    format!("http.{url}.proactiveAuth")
}

/// The `proactiveAuth` value git uses for `url`, if any is set: the best-matching
/// `http.proactiveAuth` or `http.<url>.proactiveAuth`, chosen as git's `urlmatch.c` chooses
/// (the longer host, then the longer path, then a named user wins; among equals, the last).
/// `auto` and `basic` make git ask the helpers before its first request; `none` waits for a 401.
pub fn proactive_auth_for(entries: &[ConfigEntry], url: &str) -> Option<String> {
    let mut best: Option<((usize, usize, bool), &ConfigEntry)> = None;
    for entry in entries {
        let Some(rest) = entry.key.strip_prefix("http.") else {
            continue;
        };
        let rank = match rest.rsplit_once('.') {
            None if rest == "proactiveauth" => (0, 0, false),
            Some((pattern, "proactiveauth")) if url_matches(pattern, url) => {
                match url_parts(pattern) {
                    Some(parts) => (
                        parts.host.len() + parts.port.as_ref().map_or(0, |p| p.len() + 1),
                        parts.path.trim_end_matches('/').len(),
                        parts.user.is_some(),
                    ),
                    None => (pattern.len(), 0, false),
                }
            }
            _ => continue,
        };
        if best.is_none_or(|(known, _)| rank >= known) {
            best = Some((rank, entry));
        }
    }
    best.map(|(_, entry)| entry.value.clone().unwrap_or_default())
}

/// The helpers git would run for `url`, in order, as `credential.c` builds the list: every
/// matching `credential.helper` and `credential.<url>.helper` in config order, an empty value
/// clearing those before it.
pub fn helpers_for<'e>(entries: &'e [ConfigEntry], url: &str) -> Vec<&'e ConfigEntry> {
    let mut helpers = Vec::new();
    for entry in matching(entries, url, "helper") {
        match entry.value.as_deref() {
            Some("") => helpers.clear(),
            Some(_) => helpers.push(entry),
            None => {}
        }
    }
    helpers
}

/// Whether a libgit2 program runs this helper, with the repository path, for the exact URL `url`
/// ([`libgit2_url`]): libgit2 reads only the last value of `credential.<url>.helper` (an empty
/// one runs nothing) and the last `useHttpPath` of that section or of `credential`.
pub fn libgit2_routes(entries: &[ConfigEntry], url: &str) -> bool {
    let last = |key: &str| {
        entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    };
    let helper = last(&format!("credential.{url}.helper"))
        .and_then(|e| e.value.as_deref())
        .is_some_and(is_ours);
    let path = last(&format!("credential.{url}.usehttppath"))
        .or_else(|| last("credential.usehttppath"))
        .is_some_and(|e| e.value.as_deref().is_none_or(is_true));
    helper && path
}

/// Whether git sends the path to helpers for `url` (the last matching `useHttpPath` wins).
pub fn use_http_path_for(entries: &[ConfigEntry], url: &str) -> bool {
    matching(entries, url, "usehttppath")
        .into_iter()
        .last()
        .is_some_and(|entry| entry.value.as_deref().is_none_or(is_true))
}

fn is_true(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

fn matching<'e>(entries: &'e [ConfigEntry], url: &str, name: &str) -> Vec<&'e ConfigEntry> {
    entries
        .iter()
        .filter(|entry| {
            let Some(rest) = entry.key.strip_prefix("credential.") else {
                return false;
            };
            match rest.rsplit_once('.') {
                None => rest == name,
                Some((pattern, key)) => key == name && url_matches(pattern, url),
            }
        })
        .collect()
}
