//! git's matching of a config section's URL (`credential.<url>.*`, `http.<url>.*`) against the
//! URL of a request: scheme, host with `*` labels, port and path prefix, as `urlmatch.c` does.

/// The parts of a URL git's `urlmatch.c` compares, normalised as it normalises them.
pub(super) struct UrlParts {
    /// The scheme, e.g. `https`.
    pub(super) scheme: String,
    /// The user name before `@`, if any.
    pub(super) user: Option<String>,
    /// The host, lower-cased (`*` labels stay in a pattern).
    pub(super) host: String,
    /// The port, when given and not the scheme's default.
    pub(super) port: Option<String>,
    /// The path with its leading `/` (`/` when empty), without a query or fragment.
    pub(super) path: String,
}

pub(super) fn url_parts(url: &str) -> Option<UrlParts> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (
            Some(userinfo.split(':').next().unwrap_or("").to_owned()),
            host,
        ),
        None => (None, authority),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        // [v6]:port
        Some(v6) => match v6.split_once(']') {
            Some((address, after)) => (address, after.strip_prefix(':')),
            None => (host_port, None),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let default_port = match scheme.as_str() {
        "https" => Some("443"),
        "http" => Some("80"),
        _ => None,
    };
    let port = port.filter(|p| !p.is_empty() && Some(*p) != default_port);
    let path = path.split(['?', '#']).next().unwrap_or("");
    Some(UrlParts {
        scheme,
        user,
        host: host.to_ascii_lowercase(),
        port: port.map(str::to_owned),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

/// Whether the URL of a `credential.<pattern>.*` key applies to `url`, as git decides it: same
/// scheme, user (if the pattern names one), port and number of host labels, `*` matching one
/// whole label, and the pattern's path a prefix of the URL's at a `/`. A pattern without `://` is
/// git's "partial URL": a host (and path) compared exactly.
pub fn url_matches(pattern: &str, url: &str) -> bool {
    let Some(target) = url_parts(url) else {
        return false;
    };
    let Some(want) = url_parts(pattern) else {
        let (host, path) = pattern.split_once('/').unwrap_or((pattern, ""));
        let target_host = match &target.port {
            Some(port) => format!("{}:{port}", target.host),
            None => target.host.clone(),
        };
        let path = path.trim_matches('/');
        return host == target_host && (path.is_empty() || path == target.path.trim_matches('/'));
    };
    want.scheme == target.scheme
        && want
            .user
            .as_ref()
            .is_none_or(|u| target.user.as_ref() == Some(u))
        && want.port == target.port
        && host_matches(&want.host, &target.host)
        && path_prefix(&want.path, &target.path)
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), host.split('.').collect());
    pattern.len() == host.len() && pattern.iter().zip(&host).all(|(p, h)| label_matches(p, h))
}

// git (2.39 to 2.47 at least) treats `*` as a whole label only: `a*e.code.storage` matches nothing.
fn label_matches(pattern: &str, label: &str) -> bool {
    pattern == "*" || pattern == label
}

fn path_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}
